/* bc/bc_train_main.c -- the `bc-train` command. */
#include <cjson/cJSON.h>
#include <math.h>
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
      "                         robot0_eef_quat, robot0_gripper_qpos when present, else every low-dim key)\n"
      "  --filter-key NAME      train on the demos of mask/NAME (default: every demo not in mask/valid)\n"
      "  --valid-frac F         validation demos when the file has no mask/valid (default 0.1)\n"
      "  --include-failures     also train on demos marked success=0 (default: skipped)\n"
      "  --epochs N             passes over the training samples (default 200)\n"
      "  --batch B              minibatch (default 100, robomimic's)\n"
      "  --lr LR                Adam learning rate (default 1e-4, robomimic's)\n"
      "  --weight-decay W       AdamW decoupled weight decay (default 0)\n"
      "  --clip-norm C          gradient global-norm clipping (default 0 = off)\n"
      "  --hidden W,W,...|none  hidden layer widths (default 1024,1024, robomimic's; none with --rnn)\n"
      "  --activation relu|elu|tanh   (default relu)\n"
      "  --layer-norm           LayerNorm after each hidden layer\n"
      "  --head mse|gaussian|gmm      output head (default mse with tanh, robomimic's default; gmm has\n"
      "                         5 modes and tanh means, robomimic's choice for human data)\n"
      "  --gmm-modes K          (default 5)\n"
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
  char *strs[8];
  int nstrs;
  int hidden_given; /* --hidden was set (else --rnn drops the MLP layers, as robomimic's BC-RNN) */
} cliState;

static const char *keep(cliState *c, const char *s) {
  if (c->nstrs >= (int)TK_ARRAY_LEN(c->strs)) return s;
  return c->strs[c->nstrs++] = strdup(s);
}

static int num(const char *name, const char *v, double lo, double hi, double *x) {
  if (tk_parse_f64(v, x) || !(*x >= lo && *x <= hi))
    return tk_error(TK_EINVAL, "--%s %s: expected a number in [%g, %g]", name, v, lo, hi);
  return 0;
}

static int is_flag(const char *name) {
  return !strcmp(name, "include-failures") || !strcmp(name, "layer-norm") || !strcmp(name, "quiet") ||
         !strcmp(name, "rnn") || !strcmp(name, "force");
}

/* Set one option by its long name (without "--", '-' or '_'); value NULL for flags. */
static int set_opt(cliState *c, const char *name_in, const char *v) {
  char name[64];
  snprintf(name, sizeof name, "%s", name_in);
  for (char *q = name; *q; q++)
    if (*q == '_') *q = '-';
  bcTrainOpts *o = &c->o;
  double x;
  int rc = 0;
  if (is_flag(name)) {
    int on = !v || !strcmp(v, "true") || !strcmp(v, "1");
    if (v && !on && strcmp(v, "false") && strcmp(v, "0"))
      return tk_error(TK_EINVAL, "--%s: expected true or false", name);
    if (name[0] == 'i') o->include_failures = on;
    if (name[0] == 'l') o->arch.layer_norm = on;
    if (name[0] == 'q') o->quiet = on;
    if (name[0] == 'f') o->force = on;
    if (name[0] == 'r') /* 2 layers unless --rnn-layers says otherwise, before or after */
      o->arch.rnn_layers = on ? (o->arch.rnn_layers > 0 ? o->arch.rnn_layers : 2) : 0;
    return 0;
  }
  if (!v) return tk_error(TK_EINVAL, "--%s needs a value", name);
  if (!strcmp(name, "out") || !strcmp(name, "o"))
    o->out = keep(c, v);
  else if (!strcmp(name, "metrics"))
    o->metrics_prefix = keep(c, v);
  else if (!strcmp(name, "filter-key"))
    o->filter_key = keep(c, v);
  else if (!strcmp(name, "obs-keys")) {
    free(c->keys_buf);
    c->keys_buf = strdup(v);
    o->nobs_keys = 0;
    for (char *save = NULL, *t = strtok_r(c->keys_buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      if (o->nobs_keys >= BC_MAX_KEYS) return tk_error(TK_ERANGE, "--obs-keys: at most %d keys", BC_MAX_KEYS);
      c->keys[o->nobs_keys++] = t;
    }
    if (!o->nobs_keys) return tk_error(TK_EINVAL, "--obs-keys: no keys given");
    o->obs_keys = c->keys;
  } else if (!strcmp(name, "hidden")) {
    int n = 0;
    const char *s = v;
    c->hidden_given = 1;
    if (!strcmp(v, "none")) {
      o->arch.n_hidden = 0;
      return 0;
    }
    while (*s) {
      char *end;
      long w = strtol(s, &end, 10);
      if (end == s || w < 1 || w > NN_MAX_DIM || n >= NN_MAX_HIDDEN)
        return tk_error(TK_EINVAL, "--hidden %s: expected up to %d widths like 1024,1024", v, NN_MAX_HIDDEN);
      o->arch.hidden[n++] = (int)w;
      s = *end == ',' ? end + 1 : end;
      if (*end && *end != ',') return tk_error(TK_EINVAL, "--hidden %s: expected widths like 1024,1024", v);
    }
    if (!n) return tk_error(TK_EINVAL, "--hidden: no widths given");
    o->arch.n_hidden = n;
  } else if (!strcmp(name, "head")) {
    if (!strcmp(v, "mse"))
      o->arch.head = NN_HEAD_MSE, o->arch.tanh = 1;
    else if (!strcmp(v, "gaussian"))
      o->arch.head = NN_HEAD_GAUSSIAN;
    else if (!strcmp(v, "gmm"))
      o->arch.head = NN_HEAD_GMM, o->arch.tanh = 1;
    else
      return tk_error(TK_EINVAL, "--head %s: expected mse, gaussian or gmm", v);
  } else if (!strcmp(name, "activation")) {
    if (!strcmp(v, "relu"))
      o->arch.activation = NN_RELU;
    else if (!strcmp(v, "elu"))
      o->arch.activation = NN_ELU;
    else if (!strcmp(v, "tanh"))
      o->arch.activation = NN_TANH;
    else
      return tk_error(TK_EINVAL, "--activation %s: expected relu, elu or tanh", v);
  } else if (!strcmp(name, "epochs")) {
    if (!(rc = num(name, v, 1, 1e7, &x))) o->epochs = (int)x;
  } else if (!strcmp(name, "batch")) {
    if (!(rc = num(name, v, 1, 65536, &x))) o->batch = (int)x;
  } else if (!strcmp(name, "lr")) {
    if (!(rc = num(name, v, 1e-12, 10, &x))) o->adam.lr = x;
  } else if (!strcmp(name, "weight-decay")) {
    if (!(rc = num(name, v, 0, 10, &x))) o->adam.weight_decay = x;
  } else if (!strcmp(name, "clip-norm")) {
    if (!(rc = num(name, v, 0, 1e9, &x))) o->adam.clip_norm = x;
  } else if (!strcmp(name, "gmm-modes")) {
    if (!(rc = num(name, v, 1, NN_MAX_MODES, &x))) o->arch.gmm_modes = (int)x;
  } else if (!strcmp(name, "valid-frac")) {
    if (!(rc = num(name, v, 0, 0.9, &x))) o->valid_frac = x;
  } else if (!strcmp(name, "chunk")) {
    if (!(rc = num(name, v, 1, 64, &x))) o->chunk = (int)x;
  } else if (!strcmp(name, "rnn-layers")) {
    if (!(rc = num(name, v, 0, NN_MAX_RNN_LAYERS, &x))) o->arch.rnn_layers = (int)x;
  } else if (!strcmp(name, "rnn-hidden")) {
    if (!(rc = num(name, v, 1, NN_MAX_DIM, &x))) o->arch.rnn_hidden = (int)x;
  } else if (!strcmp(name, "rnn-horizon")) {
    if (!(rc = num(name, v, 1, NN_MAX_RNN_HORIZON, &x))) o->arch.rnn_horizon = (int)x;
  } else if (!strcmp(name, "obs-noise")) {
    if (!(rc = num(name, v, 0, 10, &x))) o->obs_noise = x;
  } else if (!strcmp(name, "obs-std-floor")) {
    if (!(rc = num(name, v, 1e-8, 1e6, &x))) o->obs_std_floor = x;
  } else if (!strcmp(name, "seed")) {
    if (!(rc = num(name, v, 0, 9e15, &x))) o->seed = (uint64_t)x;
  } else if (!strcmp(name, "threads")) {
    if (!(rc = num(name, v, 1, 256, &x))) o->threads = (int)x;
  } else if (!strcmp(name, "eval-every")) {
    if (!(rc = num(name, v, 0, 1e7, &x))) o->eval_every = (int)x;
  } else if (!strcmp(name, "eval-episodes")) {
    if (!(rc = num(name, v, 0, 1e6, &x))) o->eval_episodes = (int)x;
  } else {
    return tk_error(TK_EINVAL, "unknown option --%s (bc-train --help lists them)", name);
  }
  return rc;
}

static int load_config(cliState *c, const char *path) {
  cJSON *j;
  int rc = tk_json_load(path, &j);
  if (rc) return rc;
  if (!cJSON_IsObject(j)) {
    cJSON_Delete(j);
    return tk_error(TK_EFORMAT, "%s: expected a JSON object of options", path);
  }
  for (cJSON *it = j->child; it && !rc; it = it->next) {
    char v[1024] = "";
    if (cJSON_IsBool(it))
      snprintf(v, sizeof v, "%s", cJSON_IsTrue(it) ? "true" : "false");
    else if (cJSON_IsNumber(it))
      snprintf(v, sizeof v, "%.17g", it->valuedouble);
    else if (cJSON_IsString(it))
      snprintf(v, sizeof v, "%s", it->valuestring);
    else if (cJSON_IsArray(it) && !it->child)
      snprintf(v, sizeof v, "none"); /* "hidden": [] as a policy's arch JSON writes it */
    else if (cJSON_IsArray(it)) {
      size_t off = 0;
      for (cJSON *e = it->child; e && off < sizeof v; e = e->next) {
        if (cJSON_IsNumber(e))
          off += (size_t)snprintf(v + off, sizeof v - off, "%s%d", off ? "," : "", e->valueint);
        else if (cJSON_IsString(e))
          off += (size_t)snprintf(v + off, sizeof v - off, "%s%s", off ? "," : "", e->valuestring);
        else
          rc = tk_error(TK_EFORMAT, "%s: \"%s\": list items must be numbers or strings", path, it->string);
      }
    } else {
      rc = tk_error(TK_EFORMAT, "%s: \"%s\": unsupported value", path, it->string);
    }
    if (!rc && (!strcmp(it->string, "config") || !strcmp(it->string, "dataset")))
      rc = tk_error(TK_EFORMAT, "%s: \"%s\" cannot be set in a config file", path, it->string);
    if (!rc && (rc = set_opt(c, it->string, v))) rc = tk_error_wrap(TK_EFORMAT, "%s", path);
  }
  cJSON_Delete(j);
  return rc;
}

/* Everything but the cleanup, so every way out of it (usage errors included) frees the same things. */
static int cli(cliState *cs, int argc, char **argv) {
  bc_train_default(&cs->o);
  const char *dataset = NULL;
  int rc = 0;
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
    int flag = is_flag(name);
    const char *v = flag ? NULL : (i + 1 < argc ? argv[++i] : NULL);
    if (set_opt(cs, name, v)) {
      tk_die_msg("bc-train");
      usage(stderr);
      return 2;
    }
  }
  if (!dataset) {
    usage(stderr);
    return 2;
  }
  cs->o.dataset = dataset;
  if (cs->o.arch.rnn_layers > 0 && !cs->hidden_given) cs->o.arch.n_hidden = 0;
  const char *to = getenv("DK_OPEN_TIMEOUT");
  ds_set_open_timeout(to ? atof(to) : 30);
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
  for (int i = 0; i < c.nstrs; i++)
    free(c.strs[i]);
  tk_plot_cleanup(); /* cairo's and fontconfig's font caches (the plots), which leak checkers report */
  return status;
}
