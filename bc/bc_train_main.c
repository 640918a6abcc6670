/* bc/bc_train_main.c -- the `bc-train` command. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bc.h"
#include "tk_plot.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: bc-train DATASET.h5 [-o policy.h5] [options]\n"
      "\n"
      "Behavior cloning on a robomimic-layout dataset (ours or another tool's). Trains an MLP policy,\n"
      "measures success by rollouts when the dataset's task is a built-in one, and saves the epoch\n"
      "with the best rollout success (else the last epoch) as a policy file, with metrics next to it.\n"
      "\n"
      "  -o, --out FILE         policy file (default policy.h5); never the dataset, and an existing file\n"
      "                         that is not a policy (a dataset, a PNG) is replaced only with --force\n"
      "  --force                replace an existing output of another kind (inputs never)\n"
      "  --config FILE.json     options as a JSON object (keys as the long options below, with '_'\n"
      "                         for '-', e.g. {\"epochs\": 300, \"hidden\": [512, 512]}); flags override it\n"
      "  --obs-keys a,b,...     observation keys (default robomimic's: object, robot0_eef_pos,\n"
      "                         robot0_eef_quat, robot0_gripper_qpos when present, else every low-dim key;\n"
      "                         and the --render-cameras keys); image keys (uint8 H,W,3: agentview_image)\n"
      "                         are read from the file or rendered\n"
      "  --render-cameras NAME:WxH[,NAME:WxH]  render these cameras' frames from the demos' stored states\n"
      "                         in the dataset's (built-in) task, as robomimic's dataset_states_to_obs:\n"
      "                         agentview -> agentview_image, eye_in_hand -> robot0_eye_in_hand_image;\n"
      "                         repeatable; a key the file has too is rendered again. Frames are held in\n"
      "                         memory (the size is printed; refused past 3/4 of MemAvailable, or of\n"
      "                         DK_MEM_AVAILABLE bytes when set)\n"
      "  --crop-height H, --crop-width W   cameras: random crop per sample in training, centre crop\n"
      "                         when acting (default: the frame minus 10%%, 84 -> 76, robomimic's)\n"
      "  --encoder-width C      cameras: channels of each camera's conv encoder (C, C, 2C, 2C convs,\n"
      "                         spatial softmax of 32 keypoints, linear 64; default 32)\n"
      "  --filter-key NAME      train on the demos of mask/NAME (default: every demo not in mask/valid)\n"
      "  --valid-frac F         validation demos when the file has no mask/valid (default 0.1)\n"
      "  --include-failures     also train on demos marked success=0 (default: skipped)\n"
      "  --epochs N             passes over the training samples (default 200; with cameras 300)\n"
      "  --batch B              minibatch (default 100, robomimic's)\n"
      "  --lr LR                Adam learning rate (default 1e-4, robomimic's; with cameras 3e-4)\n"
      "  --weight-decay W       AdamW decoupled weight decay (default 0)\n"
      "  --clip-norm C          gradient global-norm clipping (default 0 = off)\n"
      "  --hidden W,W,...|none  hidden layer widths (default 1024,1024, robomimic's; none with --rnn)\n"
      "  --activation relu|elu|tanh   (default relu)\n"
      "  --layer-norm           LayerNorm after each hidden layer\n"
      "  --head mse|gaussian|gmm|diffusion  output head (default mse with tanh, robomimic's default; gmm "
      "has\n"
      "                         5 modes and tanh means, robomimic's choice for human data)\n"
      "  --gmm-modes K          (default 5)\n"
      "  --head diffusion       Diffusion Policy (Chi et al.): the denoiser denoises a chunk of\n"
      "                         --action-horizon actions (16) conditioned on the last --obs-horizon\n"
      "                         observations (2); DDPM training over --diffusion-steps noise levels (100,\n"
      "                         squared cosine); acting samples with --sampler ddim (--sample-steps, 16)\n"
      "                         or ddpm, seeded per episode, and runs --exec-horizon actions (8) before\n"
      "                         planning again; --prediction sample (the clean chunk, the default)\n"
      "                         or epsilon (the noise); with camera keys too\n"
      "  --denoiser mlp|unet    the denoiser (default mlp: --hidden's layers): unet is the paper's 1-D\n"
      "                         temporal conv U-Net with FiLM conditioning (ConditionalUnet1D; --hidden\n"
      "                         unused); --action-horizon must be divisible by 2^(levels - 1)\n"
      "  --unet-dims C,C,...    its channels per level (default 32,64,128; the paper's 256,512,1024)\n"
      "  --unet-kernel K        its convolutions' kernel (odd; default 5, the paper's), GroupNorm 8 groups\n"
      "  --chunk K              predict the next K actions at every step (ACT's action chunking; rollouts\n"
      "                         average what the last K predictions say about the current step); default 1\n"
      "  --rnn                  BC-RNN (robomimic's best on human data): an LSTM of 2 layers x 400\n"
      "                         before the output layer, trained on sequences of --rnn-horizon steps;\n"
      "                         rollouts start its state from zero every --rnn-horizon steps\n"
      "  --rnn-layers N         LSTM layers (0 = none, the default; --rnn alone means 2); with an LSTM\n"
      "                         there are no MLP layers unless --hidden is given (robomimic's BC-RNN)\n"
      "  --rnn-hidden H         LSTM width (default 400)\n"
      "  --rnn-horizon T        training sequence length and rollout state-reset period (default 10)\n"
      "  --obs-noise S          Gaussian noise (std S, in normalized units) on the training observations\n"
      "                         (default 0)\n"
      "  --ema D                rollouts and the saved policy use an exponential moving average of the\n"
      "                         weights with decay D (default 0 = off, the live weights; with cameras "
      "0.995)\n"
      "  --obs-std-floor S      observation normalization: std = max(std, S) (default 0.1)\n"
      "  --seed S               initialization, split and shuffling (default 0)\n"
      "  --threads T            training threads (default: online cores); same seed and threads,\n"
      "                         same policy bit for bit\n"
      "  --eval-every K         rollouts every K epochs and at the last (default 20; 0 = none)\n"
      "  --eval-episodes M      rollouts each time (default 20; seeds 2000000000+, apart from\n"
      "                         bc-eval's held-out seeds)\n"
      "  --metrics PREFIX       PREFIX.csv, PREFIX_loss.png, PREFIX_success.png (default: the policy\n"
      "                         path without .h5)\n"
      "  --quiet                no progress output\n"
      "\n"
      "Exit status: 0 trained and saved, 1 error (one line naming the file and the problem), 2 usage.\n");
}

typedef struct {
  bcTrainOpts o;
  char *keys_buf;
  const char *keys[BC_MAX_KEYS];
  struct cJSON *configs; /* every --config file, kept whole: the options point into it */
  int hidden_given;      /* --hidden was set (else --rnn drops the MLP layers, as robomimic's BC-RNN) */
  int in_config;         /* set_opt is reading a --config file */
  int render_cli;        /* --render-cameras was on the command line (its first one replaces the config's) */
} cliState;

/* Every option once: the command line, the --config keys (the names with '_' for '-') and their JSON
 * types all come from this table. */
typedef enum { OPT_FLAG, OPT_STR, OPT_CHOICE, OPT_LIST, OPT_INT, OPT_U64, OPT_F64 } optKind;
typedef struct {
  const char *name; /* long option without "--" (under 32 bytes) */
  optKind kind;
  size_t off;     /* its field in bcTrainOpts (OPT_CHOICE, OPT_LIST and "rnn" are set by name) */
  double lo, hi;  /* OPT_INT, OPT_U64, OPT_F64: the range */
  unsigned items; /* OPT_LIST in a config: a string, or an array of these */
} optRow;

#define F(field) offsetof(bcTrainOpts, field)
static const optRow opt_rows[] = {
    {"out", OPT_STR, F(out), 0, 0, 0},
    {"metrics", OPT_STR, F(metrics_prefix), 0, 0, 0},
    {"filter-key", OPT_STR, F(filter_key), 0, 0, 0},
    {"obs-keys", OPT_LIST, 0, 0, 0, TK_JSON_STRING},
    {"render-cameras", OPT_LIST, 0, 0, 0, TK_JSON_STRING},
    {"hidden", OPT_LIST, 0, 0, 0, TK_JSON_INT},
    {"head", OPT_CHOICE, 0, 0, 0, 0},
    {"activation", OPT_CHOICE, 0, 0, 0, 0},
    {"include-failures", OPT_FLAG, F(include_failures), 0, 0, 0},
    {"layer-norm", OPT_FLAG, F(arch.layer_norm), 0, 0, 0},
    {"quiet", OPT_FLAG, F(quiet), 0, 0, 0},
    {"force", OPT_FLAG, F(force), 0, 0, 0},
    {"rnn", OPT_FLAG, 0, 0, 0, 0},
    {"epochs", OPT_INT, F(epochs), 1, 1e7, 0},
    {"batch", OPT_INT, F(batch), 1, 65536, 0},
    {"lr", OPT_F64, F(adam.lr), 1e-12, 10, 0},
    {"weight-decay", OPT_F64, F(adam.weight_decay), 0, 10, 0},
    {"clip-norm", OPT_F64, F(adam.clip_norm), 0, 1e9, 0},
    {"gmm-modes", OPT_INT, F(arch.gmm_modes), 1, NN_MAX_MODES, 0},
    {"valid-frac", OPT_F64, F(valid_frac), 0, 0.9, 0},
    {"chunk", OPT_INT, F(chunk), 1, 64, 0},
    {"obs-horizon", OPT_INT, F(dif.obs_horizon), 1, 16, 0},
    {"action-horizon", OPT_INT, F(dif.horizon), 1, 64, 0},
    {"exec-horizon", OPT_INT, F(dif.exec), 1, 64, 0},
    {"diffusion-steps", OPT_INT, F(dif.train_steps), 2, BC_DIFF_MAX_STEPS, 0},
    {"sample-steps", OPT_INT, F(dif.sample_steps), 1, BC_DIFF_MAX_STEPS, 0},
    {"sampler", OPT_CHOICE, 0, 0, 0, 0},
    {"prediction", OPT_CHOICE, 0, 0, 0, 0},
    {"denoiser", OPT_CHOICE, 0, 0, 0, 0},
    {"unet-dims", OPT_LIST, 0, 0, 0, TK_JSON_INT},
    {"unet-kernel", OPT_INT, F(unet.kernel), 1, 15, 0},
    {"rnn-layers", OPT_INT, F(arch.rnn_layers), 0, NN_MAX_RNN_LAYERS, 0},
    {"rnn-hidden", OPT_INT, F(arch.rnn_hidden), 1, NN_MAX_DIM, 0},
    {"rnn-horizon", OPT_INT, F(arch.rnn_horizon), 1, NN_MAX_RNN_HORIZON, 0},
    {"obs-noise", OPT_F64, F(obs_noise), 0, 10, 0},
    {"ema", OPT_F64, F(ema), 0, 0.999999, 0},
    {"crop-height", OPT_INT, F(crop_h), 1, NN_MAX_IMAGE_SIDE, 0},
    {"crop-width", OPT_INT, F(crop_w), 1, NN_MAX_IMAGE_SIDE, 0},
    {"encoder-width", OPT_INT, F(encoder_width), 1, 1024, 0},
    {"obs-std-floor", OPT_F64, F(obs_std_floor), 1e-8, 1e6, 0},
    {"seed", OPT_U64, F(seed), 0, 9e15, 0}, /* exact in the metadata's JSON numbers */
    {"threads", OPT_INT, F(threads), 1, 256, 0},
    {"eval-every", OPT_INT, F(eval_every), 0, 1e7, 0},
    {"eval-episodes", OPT_INT, F(eval_episodes), 0, 1e6, 0},
};
#undef F

/* The row of a long name, '_' matching '-' ("eval_every" is --eval-every); NULL if none. */
static const optRow *find_opt(const char *name) {
  for (size_t i = 0; i < TK_ARRAY_LEN(opt_rows); i++) {
    const char *r = opt_rows[i].name, *q = name;
    while (*r && (*q == *r || (*q == '_' && *r == '-')))
      r++, q++;
    if (!*r && !*q) return &opt_rows[i];
  }
  return NULL;
}

/* --unet-dims C,C,...: 1..NN_UNET_MAX_LEVELS channel counts */
static int set_unet_dims(nnUnetArch *u, const char *v) {
  char *buf = strdup(v);
  if (!buf) return tk_error(TK_ENOMEM, "--unet-dims: out of memory");
  int n = 0, rc = 0;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
    int64_t w;
    if (n >= NN_UNET_MAX_LEVELS || tk_opt_int("--unet-dims", t, 1, 4096, &w))
      rc = tk_error(TK_EINVAL, "--unet-dims %s: expected 1..%d channel counts in [1, 4096] like 64,128,256",
                    v, NN_UNET_MAX_LEVELS);
    else
      u->down[n++] = (int)w;
  }
  free(buf);
  if (!rc && !n) rc = tk_error(TK_EINVAL, "--unet-dims: no channel counts given");
  if (!rc) u->levels = n;
  return rc;
}

/* --hidden W,W,... (or none): every width through tk_opt_int */
static int set_hidden(nnArch *a, const char *v) {
  if (!strcmp(v, "none")) {
    a->n_hidden = 0;
    return 0;
  }
  char *buf = strdup(v);
  if (!buf) return tk_error(TK_ENOMEM, "--hidden: out of memory");
  int n = 0, rc = 0;
  for (char *t = buf, *end; t && !rc; t = end ? end + 1 : NULL) {
    int64_t w;
    if ((end = strchr(t, ','))) *end = 0;
    if (n >= NN_MAX_HIDDEN || tk_opt_int("--hidden", t, 1, NN_MAX_DIM, &w))
      rc = tk_error(TK_EINVAL, "--hidden %s: expected none or up to %d widths in [1, %d] like 1024,1024", v,
                    NN_MAX_HIDDEN, NN_MAX_DIM);
    else
      a->hidden[n++] = (int)w;
  }
  free(buf);
  if (!rc) a->n_hidden = n;
  return rc;
}

/* --render-cameras NAME:WxH[,NAME:WxH...]: repeatable on the command line (the cameras add up), the
 * first one there replacing a config's list; each camera through cap_camera_parse as teleop's --camera */
static int set_render(cliState *c, const char *v) {
  bcTrainOpts *o = &c->o;
  if (!c->in_config && !c->render_cli) {
    c->render_cli = 1;
    o->nrender = 0;
  }
  if (c->in_config) o->nrender = 0;
  char *buf = strdup(v);
  if (!buf) return tk_error(TK_ENOMEM, "--render-cameras: out of memory");
  int rc = 0, any = 0;
  for (char *save = NULL, *t = strtok_r(buf, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
    any = 1;
    capCamera cam;
    if ((rc = cap_camera_parse("--render-cameras", t, &cam))) break;
    for (int i = 0; i < o->nrender && !rc; i++)
      if (!strcmp(o->render[i].name, cam.name))
        rc = tk_error(TK_EINVAL, "--render-cameras %s: camera %s given twice", v, cam.name);
    if (!rc && o->nrender >= CAP_MAX_CAMS)
      rc = tk_error(TK_ERANGE, "--render-cameras %s: at most %d cameras", v, CAP_MAX_CAMS);
    if (!rc) o->render[o->nrender++] = cam;
  }
  if (!rc && !any && !c->in_config)
    rc = tk_error(TK_EINVAL, "--render-cameras: no cameras given (NAME:WxH, e.g. agentview:84x84)");
  free(buf);
  return rc;
}

/* Set one option; v NULL for a flag on the command line, else its value ("true"/"false" for a flag). */
static int set_opt(cliState *c, const optRow *r, const char *v) {
  bcTrainOpts *o = &c->o;
  o->given |= !strcmp(r->name, "lr")       ? BC_GIVEN_LR
              : !strcmp(r->name, "epochs") ? BC_GIVEN_EPOCHS
              : !strcmp(r->name, "ema")    ? BC_GIVEN_EMA
                                           : 0u;
  if (r->off >= offsetof(bcTrainOpts, dif) && r->off < offsetof(bcTrainOpts, dif) + sizeof(bcDiffusion))
    o->given |= BC_GIVEN_DIFFUSION;
  if (!strcmp(r->name, "sampler") || !strcmp(r->name, "prediction") || !strcmp(r->name, "denoiser") ||
      !strncmp(r->name, "unet-", 5))
    o->given |= BC_GIVEN_DIFFUSION;
  if (!strcmp(r->name, "exec-horizon")) o->given |= BC_GIVEN_EXEC;
  if (!strcmp(r->name, "sample-steps")) o->given |= BC_GIVEN_SAMPLE_STEPS;
  char *field = (char *)o + r->off;
  char flag[48];
  snprintf(flag, sizeof flag, "--%s", r->name); /* our names: short */
  if (r->kind == OPT_FLAG) {
    int on = !v || !strcmp(v, "true");
    if (v && !on && strcmp(v, "false")) return tk_error(TK_EINVAL, "%s: expected true or false", flag);
    if (!strcmp(r->name, "rnn")) /* 2 layers unless --rnn-layers says otherwise, before or after */
      o->arch.rnn_layers = on ? (o->arch.rnn_layers > 0 ? o->arch.rnn_layers : 2) : 0;
    else
      *(int *)field = on;
    return 0;
  }
  if (!v) return tk_error(TK_EINVAL, "%s needs a value", flag);
  int64_t k;
  double x;
  int rc = 0;
  switch (r->kind) {
  case OPT_STR: *(const char **)field = v; break; /* argv or the kept config */
  case OPT_INT:
    if (!(rc = tk_opt_int(flag, v, (int64_t)r->lo, (int64_t)r->hi, &k))) *(int *)field = (int)k;
    break;
  case OPT_U64:
    if (!(rc = tk_opt_int(flag, v, (int64_t)r->lo, (int64_t)r->hi, &k))) *(uint64_t *)field = (uint64_t)k;
    break;
  case OPT_F64:
    if (!(rc = tk_opt_f64(flag, v, r->lo, r->hi, &x))) *(double *)field = x;
    break;
  case OPT_LIST:
    if (!strcmp(r->name, "hidden")) {
      c->hidden_given = 1;
      return set_hidden(&o->arch, v);
    }
    if (!strcmp(r->name, "render-cameras")) return set_render(c, v);
    if (!strcmp(r->name, "unet-dims")) return set_unet_dims(&o->unet, v);
    free(c->keys_buf);
    if (!(c->keys_buf = strdup(v))) return tk_error(TK_ENOMEM, "--obs-keys: out of memory");
    o->nobs_keys = 0;
    for (char *save = NULL, *t = strtok_r(c->keys_buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (o->nobs_keys >= BC_MAX_KEYS) return tk_error(TK_ERANGE, "--obs-keys: at most %d keys", BC_MAX_KEYS);
      c->keys[o->nobs_keys++] = t;
    }
    if (!o->nobs_keys) return tk_error(TK_EINVAL, "--obs-keys: no keys given");
    o->obs_keys = c->keys;
    break;
  case OPT_CHOICE:
    if (!strcmp(r->name, "head")) {
      o->diffusion = !strcmp(v, "diffusion");
      if (!strcmp(v, "mse") || o->diffusion)
        o->arch.head = NN_HEAD_MSE, o->arch.tanh = !o->diffusion;
      else if (!strcmp(v, "gaussian"))
        o->arch.head = NN_HEAD_GAUSSIAN;
      else if (!strcmp(v, "gmm"))
        o->arch.head = NN_HEAD_GMM, o->arch.tanh = 1;
      else
        return tk_error(TK_EINVAL, "--head %s: expected mse, gaussian, gmm or diffusion", v);
    } else if (!strcmp(r->name, "prediction")) {
      if (strcmp(v, "sample") && strcmp(v, "epsilon"))
        return tk_error(TK_EINVAL, "--prediction %s: expected sample or epsilon", v);
      o->dif.sample = !strcmp(v, "sample");
    } else if (!strcmp(r->name, "denoiser")) {
      if (strcmp(v, "mlp") && strcmp(v, "unet"))
        return tk_error(TK_EINVAL, "--denoiser %s: expected mlp or unet", v);
      o->dif.unet = !strcmp(v, "unet");
    } else if (!strcmp(r->name, "sampler")) {
      if (strcmp(v, "ddim") && strcmp(v, "ddpm"))
        return tk_error(TK_EINVAL, "--sampler %s: expected ddim or ddpm", v);
      o->dif.ddpm = !strcmp(v, "ddpm");
    } else {
      if (!strcmp(v, "relu"))
        o->arch.activation = NN_RELU;
      else if (!strcmp(v, "elu"))
        o->arch.activation = NN_ELU;
      else if (!strcmp(v, "tanh"))
        o->arch.activation = NN_TANH;
      else
        return tk_error(TK_EINVAL, "--activation %s: expected relu, elu or tanh", v);
    }
    break;
  case OPT_FLAG: break;
  }
  return rc;
}

/* A list option's JSON array as the command line's "a,b,c" (sized to fit). */
static int join_list(const cJSON *arr, const char *path, const char *key, char **out) {
  size_t n = 1;
  const cJSON *e;
  cJSON_ArrayForEach(e, arr) n += (cJSON_IsString(e) ? strlen(e->valuestring) : 24) + 1;
  char *s = malloc(n), *p = s;
  if (!s) return tk_error(TK_ENOMEM, "%s: out of memory", path);
  *p = 0;
  cJSON_ArrayForEach(e, arr) {
    if (cJSON_IsString(e) && (!e->valuestring[0] || strchr(e->valuestring, ','))) {
      free(s);
      return tk_error(TK_EFORMAT, "%s: \"%s\": '%s' is not a name", path, key, e->valuestring);
    }
    if (p != s) *p++ = ',';
    if (cJSON_IsString(e))
      p += sprintf(p, "%s", e->valuestring);
    else /* an exact integer (checked), the width range is --hidden's */
      p += sprintf(p, "%lld", (long long)e->valuedouble);
  }
  *out = s;
  return 0;
}

/* --config FILE: a JSON object of options, checked against the option table (unknown keys and
 * values of the wrong type are refused naming the key), then set as the flags would be. */
static int load_config(cliState *c, const char *path) {
  enum { NOPT = (int)TK_ARRAY_LEN(opt_rows) };
  tkJsonField fields[NOPT + 1];
  char keys[NOPT][32];
  memset(fields, 0, sizeof fields);
  for (int i = 0; i < NOPT; i++) {
    const optRow *r = &opt_rows[i];
    snprintf(keys[i], sizeof keys[i], "%s", r->name);
    for (char *q = keys[i]; *q; q++)
      if (*q == '-') *q = '_';
    tkJsonField *f = &fields[i];
    f->key = keys[i];
    f->types = r->kind == OPT_FLAG                           ? TK_JSON_BOOL
               : r->kind == OPT_STR || r->kind == OPT_CHOICE ? TK_JSON_STRING
               : r->kind == OPT_LIST                         ? TK_JSON_STRING | TK_JSON_ARRAY
               : r->kind == OPT_F64                          ? TK_JSON_NUMBER
                                                             : TK_JSON_INT;
    f->lo = r->lo;
    f->hi = r->hi;
    f->items = r->items;
  }
  cJSON *j;
  int rc = tk_json_load_object(path, fields, &j);
  if (rc) return rc;
  if ((!c->configs && !(c->configs = cJSON_CreateArray())) || !cJSON_AddItemToArray(c->configs, j)) {
    cJSON_Delete(j);
    return tk_error(TK_ENOMEM, "%s: out of memory", path);
  }
  c->in_config = 1;
  for (cJSON *it = j->child; it && !rc; it = it->next) {
    const optRow *r = find_opt(it->string);
    char num[32], *list = NULL;
    const char *v = num;
    if (cJSON_IsBool(it))
      v = cJSON_IsTrue(it) ? "true" : "false";
    else if (cJSON_IsNumber(it))
      snprintf(num, sizeof num, "%.17g", it->valuedouble); /* at most 24 characters */
    else if (cJSON_IsString(it))
      v = it->valuestring; /* kept with the config: no copy, no limit */
    else if (!it->child)   /* "hidden": [] as a policy's arch JSON writes it; "obs_keys": [] names none */
      v = !strcmp(r->name, "hidden") ? "none" : "";
    else if (!(rc = join_list(it, path, it->string, &list)))
      v = list;
    if (!rc && (rc = set_opt(c, r, v))) rc = tk_error_wrap(TK_EFORMAT, "%s", path);
    free(list);
  }
  c->in_config = 0;
  return rc;
}

/* Everything but the cleanup, so every way out of it (usage errors included) frees the same things. */
static int cli(cliState *cs, int argc, char **argv) {
  bc_train_default(&cs->o);
  const char *dataset = NULL;
  int rc = 0;
  if (tk_env_check()) {
    tk_die_msg("bc-train");
    return 2;
  }
  /* the config first, so flags override it */
  for (int i = 1; i < argc && !rc; i++)
    if (!strcmp(argv[i], "--config")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "bc-train: --config needs a value\n");
        return 2;
      }
      cs->o.config = argv[i + 1];
      rc = load_config(cs, argv[++i]);
    }
  if (rc) {
    tk_die_msg("bc-train");
    return 1;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    }
    if (!strcmp(a, "--config")) {
      i++;
      continue;
    }
    if (a[0] != '-') {
      if (dataset) {
        fprintf(stderr, "bc-train: one dataset only (got %s and %s)\n", dataset, a);
        return 2;
      }
      dataset = a;
      continue;
    }
    const char *name = a[1] == '-' ? a + 2 : a + 1;
    const optRow *r = find_opt(!strcmp(name, "o") ? "out" : name);
    if (!r) {
      fprintf(stderr, "bc-train: unknown option %s (bc-train --help lists them)\n", a);
      return 2;
    }
    const char *v = r->kind == OPT_FLAG ? NULL : (i + 1 < argc ? argv[++i] : NULL);
    if (set_opt(cs, r, v)) {
      tk_die_msg("bc-train");
      return 2;
    }
  }
  if (!dataset) {
    usage(stderr);
    return 2;
  }
  cs->o.dataset = dataset;
  if (cs->o.arch.rnn_layers > 0 && !cs->hidden_given) cs->o.arch.n_hidden = 0;
  if ((cs->o.given & BC_GIVEN_DIFFUSION) && !cs->o.diffusion) {
    fprintf(stderr, "bc-train: the diffusion settings (--obs-horizon, --action-horizon, --exec-horizon, "
                    "--diffusion-steps, --sample-steps, --sampler, --prediction, --denoiser, --unet-dims, "
                    "--unet-kernel) need --head diffusion\n");
    return 2;
  }
  /* settings left at their defaults follow the ones given: at most the action horizon run per plan, at
   * most --diffusion-steps sampling steps */
  bcDiffusion *d = &cs->o.dif;
  if (!(cs->o.given & BC_GIVEN_EXEC) && d->exec > d->horizon) d->exec = d->horizon;
  if (!(cs->o.given & BC_GIVEN_SAMPLE_STEPS) && d->sample_steps > d->train_steps)
    d->sample_steps = d->train_steps;
  double open_timeout;
  if (tk_env_f64("DK_OPEN_TIMEOUT", 0, 1e6, 30, &open_timeout)) {
    tk_die_msg("bc-train");
    return 2;
  }
  ds_set_open_timeout(open_timeout);
  bcTrainResult r;
  rc = bc_train(&cs->o, &r);
  if (rc) {
    tk_die_msg("bc-train");
  } else if (!cs->o.quiet) {
    printf("bc-train: %d epochs, %lld steps, %.0f samples/s, %.1f s; final loss %.4g, validation %.4g\n",
           r.epochs_run, (long long)r.steps, r.samples_per_s, r.seconds, r.final_train_loss,
           r.final_valid_loss);
    if (r.evaluated)
      printf("bc-train: saved %s: epoch %d, rollout success %.0f%% on %d selection seeds\n", cs->o.out,
             r.best_epoch, 100 * r.best_success, cs->o.eval_episodes);
    else
      printf("bc-train: saved %s: epoch %d (no rollouts)\n", cs->o.out, r.best_epoch);
  }
  return rc ? 1 : (r.stopped_nan ? 1 : 0);
}

int main(int argc, char **argv) {
  cliState c = {0};
  int status = cli(&c, argc, argv);
  free(c.keys_buf);
  cJSON_Delete(c.configs);
  tk_plot_cleanup(); /* cairo's and fontconfig's font caches (the plots), which leak checkers report */
  return status;
}
