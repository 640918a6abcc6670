/* bc/bc_train.c -- behavior cloning: load, split, normalize, train, evaluate by rollouts, save the best. */
#include <cjson/cJSON.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bc.h"
#include "tk_plot.h"

void bc_train_default(bcTrainOpts *o) {
  memset(o, 0, sizeof *o);
  o->out = "policy.h5";
  o->valid_frac = 0.1;
  o->epochs = 200;
  o->batch = 100;
  nn_adam_default(&o->adam);
  o->adam.lr = 1e-4;
  nn_arch_default(&o->arch);
  o->arch.n_hidden = 2;
  o->arch.hidden[0] = o->arch.hidden[1] = 1024;
  o->arch.head = NN_HEAD_MSE; /* robomimic's bc.json: GMM off by default */
  o->arch.tanh = 1;
  o->obs_std_floor = 0.1;
  o->chunk = 1;
  bc_diff_default(&o->dif);
  o->unet = (nnUnetArch){.levels = 3, .down = {32, 64, 128}, .kernel = 5, .groups = 8};
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  o->threads = n > 0 ? (int)n : 1;
  o->eval_every = 20;
  o->eval_episodes = 20;
  o->encoder_width = 32;
}

/* robomimic's low-dim observation keys for its manipulation tasks */
static const char *const robomimic_keys[] = {"object", "robot0_eef_pos", "robot0_eef_quat",
                                             "robot0_gripper_qpos"};

/* The observation keys, split: low-dim ones (ds_load) and image ones (bc_is_image_key: the file's uint8
 * H,W,C keys and the render cameras' keys; bc_images_load). Without --obs-keys: robomimic's low-dim keys
 * when present (else every low-dim key), and the render cameras' keys. */
static int choose_keys(dsFile *f, const bcTrainOpts *o, const char **keys, int *nk, const char **img, int *ni,
                       char (*cam_keys)[BC_KEY_MAX]) {
  const dsSchema *s = ds_schema(f);
  *nk = *ni = 0;
  if (o->obs_keys && o->nobs_keys > 0) {
    if (o->nobs_keys > BC_MAX_KEYS)
      return tk_error(TK_ERANGE, "%d observation keys (at most %d)", o->nobs_keys, BC_MAX_KEYS);
    for (int i = 0; i < o->nobs_keys; i++) {
      if (bc_is_image_key(f, o->obs_keys[i], o->nrender, o->render))
        img[(*ni)++] = o->obs_keys[i];
      else
        keys[(*nk)++] = o->obs_keys[i];
    }
    return 0; /* ds_load checks the low-dim ones and lists what the file has; bc_images_load the others */
  }
  for (int c = 0; c < o->nrender && c < CAP_MAX_CAMS; c++) {
    int rc = cap_camera_key(o->render[c].name, cam_keys[c], BC_KEY_MAX);
    if (rc) return rc;
    img[(*ni)++] = cam_keys[c];
  }
  int all = 1;
  for (size_t i = 0; i < TK_ARRAY_LEN(robomimic_keys); i++)
    if (ds_schema_find(s, robomimic_keys[i]) < 0) all = 0;
  if (all) {
    for (size_t i = 0; i < TK_ARRAY_LEN(robomimic_keys); i++)
      keys[(*nk)++] = robomimic_keys[i];
    return 0;
  }
  for (int k = 0; k < s->nkeys && *nk + *ni < BC_MAX_KEYS; k++)
    if (!ds_key_is_image(&s->keys[k])) keys[(*nk)++] = s->keys[k].name;
  if (*nk == 0) return tk_error(TK_EINVAL, "%s: no low-dim observation keys to train on", ds_path(f));
  return 0;
}

/* Which loaded demos train and which validate: 1 train, 2 valid, 0 neither. */
static int assign_demos(dsFile *f, const dsLoaded *L, const bcTrainOpts *o, uint8_t *role, bcTrainResult *r) {
  int nd = L->ndemos;
  int *vpos = NULL, nv = 0, *tpos = NULL, nt = 0, rc = 0;
  int has_valid = 0;
  for (int m = 0; m < ds_num_masks(f); m++)
    if (!strcmp(ds_mask_name(f, m), "valid")) has_valid = 1;
  if (has_valid && (rc = ds_mask(f, "valid", &vpos, &nv))) return rc;
  if (o->filter_key && o->filter_key[0] && (rc = ds_mask(f, o->filter_key, &tpos, &nt))) {
    free(vpos);
    return rc;
  }
  for (int i = 0; i < nd; i++) {
    int pos = L->demo_pos[i];
    int in_valid = 0, in_train = !tpos;
    for (int j = 0; j < nv; j++)
      if (vpos[j] == pos) in_valid = 1;
    for (int j = 0; j < nt; j++)
      if (tpos[j] == pos) in_train = 1;
    role[i] = in_valid ? 2 : in_train ? 1 : 0;
  }
  free(vpos);
  free(tpos);
  if (!has_valid && o->valid_frac > 0) { /* a seeded split of the training demos */
    int64_t idx[4096];
    int n = 0;
    for (int i = 0; i < nd && n < (int)TK_ARRAY_LEN(idx); i++)
      if (role[i] == 1) idx[n++] = i;
    int nvalid = (int)floor(o->valid_frac * n + 0.5);
    if (n >= 2 && nvalid < 1) nvalid = 1;
    if (nvalid >= n) nvalid = n - 1;
    tkRng rng;
    tk_rng_seed(&rng, o->seed ^ 0x5eed5011ull);
    tk_rng_shuffle(&rng, idx, n);
    for (int i = 0; i < nvalid; i++)
      role[idx[i]] = 2;
  }
  for (int i = 0; i < nd; i++) {
    const dsDemoInfo *d = ds_demo(f, L->demo_pos[i]);
    if (role[i] && d->success == 0 && !o->include_failures) {
      role[i] = 0;
      r->skipped_failures++;
    }
    if (role[i] == 1) r->train_demos++;
    if (role[i] == 2) r->valid_demos++;
  }
  if (r->train_demos == 0)
    return tk_error(TK_EINVAL, "%s: no training demos left (%d demos, %d marked as failures%s)", ds_path(f),
                    nd, r->skipped_failures,
                    r->skipped_failures ? "; --include-failures trains on them" : "");
  return 0;
}

/* Rows of the demos with a role, as int64 indices into L. */
static int64_t *rows_of(const dsLoaded *L, const uint8_t *role, int want, int64_t *n) {
  *n = 0;
  for (int i = 0; i < L->ndemos; i++)
    if (role[i] == want) *n += L->demo_start[i + 1] - L->demo_start[i];
  int64_t *v = malloc(sizeof(int64_t) * (size_t)TK_MAX(*n, 1));
  if (!v) return NULL;
  int64_t k = 0;
  for (int i = 0; i < L->ndemos; i++)
    if (role[i] == want)
      for (int64_t j = L->demo_start[i]; j < L->demo_start[i + 1]; j++)
        v[k++] = j;
  return v;
}

/* Statistics from the training rows; x and y are replaced by their normalized values. The arithmetic
 * is in double: float32 values near FLT_MAX overflow in (l + h), (h - l) or (x - mean) otherwise, and a
 * statistic that does not fit a float is refused (the policy file could not be loaded). */
static int normalize(bcPolicy *p, dsLoaded *L, const int64_t *rows, int64_t n, double floor_std,
                     const char *path) {
  const int D = L->obs_dim, A = L->act_dim;
  for (int i = 0; i < D; i++) {
    double s = 0, s2 = 0;
    for (int64_t k = 0; k < n; k++)
      s += L->obs[rows[k] * D + i];
    double mean = s / (double)n;
    for (int64_t k = 0; k < n; k++) {
      double d = L->obs[rows[k] * D + i] - mean;
      s2 += d * d;
    }
    double sd = fmax(sqrt(s2 / (double)n), floor_std);
    if (!(fabs(mean) <= FLT_MAX && sd <= FLT_MAX))
      return tk_error(TK_ERANGE, "%s: observation column %d: mean %g, std %g do not fit float32", path, i,
                      mean, sd);
    p->obs_mean[i] = (float)mean;
    p->obs_std[i] = (float)sd;
  }
  /* actions: robomimic's are in [-1, 1] already and stay as they are; otherwise min-max to [-1, 1]
   * with a 5% margin, so tanh-bounded heads can reach every recorded action */
  double *lo = malloc(sizeof(double) * 2 * (size_t)A), *hi = lo + A;
  if (!lo) return tk_error(TK_ENOMEM, "out of memory");
  for (int i = 0; i < A; i++) {
    lo[i] = INFINITY;
    hi[i] = -INFINITY;
  }
  for (int64_t k = 0; k < n; k++)
    for (int i = 0; i < A; i++) {
      lo[i] = fmin(lo[i], L->actions[rows[k] * A + i]);
      hi[i] = fmax(hi[i], L->actions[rows[k] * A + i]);
    }
  int bounded = 1;
  for (int i = 0; i < A; i++)
    bounded &= lo[i] >= -1.0 && hi[i] <= 1.0;
  for (int i = 0; i < A; i++) {
    if (bounded) {
      p->act_offset[i] = 0;
      p->act_scale[i] = 1;
      continue;
    }
    double l = lo[i], h = hi[i];
    double off = 0.5 * (l + h), sc = fmax(0.5 * (h - l) * 1.05, 1e-3);
    if (!(fabs(off) <= FLT_MAX && sc <= FLT_MAX)) {
      free(lo);
      return tk_error(TK_ERANGE, "%s: action %d spans [%g, %g], too wide to normalize in float32", path, i, l,
                      h);
    }
    p->act_offset[i] = (float)off;
    p->act_scale[i] = (float)sc;
  }
  free(lo);
  for (int64_t k = 0; k < L->n; k++) {
    for (int i = 0; i < D; i++)
      L->obs[k * D + i] = (float)(((double)L->obs[k * D + i] - p->obs_mean[i]) / p->obs_std[i]);
    for (int i = 0; i < A; i++)
      L->actions[k * A + i] = (float)(((double)L->actions[k * A + i] - p->act_offset[i]) / p->act_scale[i]);
  }
  return 0;
}

/* A training sample starts at a row: its input is that row's observation (BC-RNN: a sequence of T rows
 * from it), its target that row's action (action chunking: and the next k-1 of its demo). Past its
 * demo's end the demo's last row repeats (robomimic's sequence padding). last[r]: the last row of r's
 * demo. */
typedef struct {
  int k, T;
  const int64_t *last;
  const int64_t *first;   /* the first row of each row's demo (a diffusion policy's history) */
  int feat;               /* the cameras' features after each step's low-dim keys (the vision trainer
                             fills them; a diffusion row leaves them zero) */
  const bcDiffusion *dif; /* a diffusion policy's settings, else NULL */
} sampling;

/* A diffusion policy's samples: row r's input is [the obs_horizon rows up to r (before the demo's start its
 * first row repeats) | its chunk of k actions noised to a level drawn from rng | the level's embedding],
 * its target the clean chunk ("sample" prediction) or the noise (DDPM's epsilon). */
static void gather_diffusion(const dsLoaded *L, const sampling *sm, const int64_t *rows, int n, float *x,
                             float *y, int64_t *fr, tkRng *rng) {
  const bcDiffusion *d = sm->dif;
  const int D = L->obs_dim, I = D + sm->feat, A = L->act_dim, k = sm->k, H = d->obs_horizon;
  const int in = H * I + k * A + d->temb;
  for (int b = 0; b < n; b++) {
    const int64_t r = rows[b];
    float *xr = x + (size_t)b * in, *yr = y + (size_t)b * k * A;
    for (int j = 0; j < H; j++) {
      const int64_t src = TK_MAX(r - (H - 1) + j, sm->first[r]);
      memcpy(xr + (size_t)j * I, L->obs + src * D, sizeof(float) * (size_t)D);
      memset(xr + (size_t)j * I + D, 0, sizeof(float) * (size_t)sm->feat);
      if (fr) fr[(size_t)b * H + j] = src; /* the frame row a camera reads for this step */
    }
    const int lvl = (int)tk_rng_below(rng, (uint64_t)d->train_steps);
    const double sa = sqrt(d->abar[lvl]), sb = sqrt(1.0 - d->abar[lvl]);
    float *xt = xr + (size_t)H * I;
    for (int c = 0; c < k; c++) {
      const float *a0 = L->actions + TK_MIN(r + c, sm->last[r]) * A;
      for (int i = 0; i < A; i++) {
        const float e = (float)tk_rng_normal(rng);
        yr[c * A + i] = d->sample ? a0[i] : e;
        xt[c * A + i] = (float)(sa * a0[i] + sb * e);
      }
    }
    bc_diff_embed(d->temb, lvl, xt + (size_t)k * A);
  }
}

static void gather(const dsLoaded *L, const sampling *sm, const int64_t *rows, int n, float *x, float *y,
                   int64_t *fr, tkRng *rng) {
  if (sm->dif) {
    gather_diffusion(L, sm, rows, n, x, y, fr, rng);
    return;
  }
  const int D = L->obs_dim, A = L->act_dim, k = sm->k, T = sm->T;
  for (int b = 0; b < n; b++)
    for (int t = 0; t < T; t++) {
      const int64_t r = TK_MIN(rows[b] + t, sm->last[rows[b]]);
      const size_t row = (size_t)b * T + t;
      if (fr) fr[row] = r; /* the frame row a camera reads */
      memcpy(x + row * D, L->obs + r * D, sizeof(float) * (size_t)D);
      for (int c = 0; c < k; c++) {
        int64_t src = TK_MIN(r + c, sm->last[r]);
        memcpy(y + (row * k + c) * A, L->actions + src * A, sizeof(float) * (size_t)A);
      }
    }
}

/* Mean loss over the samples starting at rows (in blocks of the work's batch; a policy with cameras: of
 * the vision trainer's, centre crops; fr its frame rows). */
static double mean_loss(const bcPolicy *p, nnWork *w, bcVisionTrainer *vt, int vt_batch, const dsLoaded *L,
                        const sampling *sm, const int64_t *rows, int64_t n, float *x, float *y, int64_t *fr) {
  double sum = 0;
  const int mb = vt ? vt_batch : w->max_batch;
  tkRng rng; /* a diffusion policy's noise: the same every time, so that epochs compare */
  tk_rng_seed(&rng, 12345);
  for (int64_t k = 0; k < n; k += mb) {
    int b = (int)TK_MIN(mb, n - k);
    gather(L, sm, rows + k, b, x, y, vt ? fr : NULL, &rng);
    float l;
    if (vt                       ? bc_vt_loss(vt, x, y, fr, b, &l)
        : p->arch.rnn_layers > 0 ? nn_seq_loss(p->net, w, x, y, b, sm->T, &l)
                                 : nn_loss(p->net, w, x, y, b, &l))
      return NAN;
    sum += (double)l * b;
  }
  return sum / (double)n;
}

/* Per-epoch curves; the epoch count is known, so one block holds them all from the start. */
typedef struct {
  int n;
  double *epoch, *train, *valid, *succ_epoch, *succ; /* each `epochs` long */
  int nsucc;
} curves;

static int curves_make(curves *c, int epochs) {
  double *a = malloc(sizeof(double) * 5 * (size_t)epochs);
  if (!a) return tk_error(TK_ENOMEM, "out of memory");
  c->epoch = a;
  c->train = a + epochs;
  c->valid = a + 2 * epochs;
  c->succ_epoch = a + 3 * epochs;
  c->succ = a + 4 * epochs;
  return 0;
}

static void curves_push(curves *c, double ep, double tr, double va) {
  c->epoch[c->n] = ep;
  c->train[c->n] = tr;
  c->valid[c->n] = va;
  c->n++;
}

/* The plots are outputs like the policy: one that cannot be written is an error, not a warning. */
static int write_plots(const curves *c, const char *prefix, const char *title) {
  char path[4200];
  int rc;
  tkSeries s[2] = {{"train", c->epoch, c->train, c->n}, {"validation", c->epoch, c->valid, c->n}};
  tkPlotOpts po = {.title = title, .xlabel = "epoch", .ylabel = "loss"};
  snprintf(path, sizeof path, "%s_loss.png", prefix);
  if ((rc = tk_plot_png(path, &po, s, 2))) return rc;
  if (c->nsucc > 0) {
    tkSeries ss = {"success rate", c->succ_epoch, c->succ, c->nsucc};
    tkPlotOpts so = {
        .title = title, .xlabel = "epoch", .ylabel = "success rate", .ymin = 0, .ymax = 1, .fixed_y = 1};
    snprintf(path, sizeof path, "%s_success.png", prefix);
    if ((rc = tk_plot_png(path, &so, &ss, 1))) return rc;
  }
  return 0;
}

static char *info_json(const bcTrainOpts *o, const bcTrainResult *r, int epoch, double success) {
  cJSON *j = cJSON_CreateObject();
  cJSON_AddStringToObject(j, "trainer", "bc-train");
  cJSON_AddStringToObject(j, "dataset", o->dataset);
  cJSON_AddNumberToObject(j, "epoch", epoch);
  cJSON_AddNumberToObject(j, "epochs", o->epochs);
  cJSON_AddNumberToObject(j, "batch", o->batch);
  cJSON_AddNumberToObject(j, "lr", o->adam.lr);
  cJSON_AddNumberToObject(j, "seed", (double)o->seed);
  cJSON_AddNumberToObject(j, "threads", o->threads);
  if (o->ema > 0) cJSON_AddNumberToObject(j, "ema", o->ema);
  cJSON_AddNumberToObject(j, "train_demos", r->train_demos);
  cJSON_AddNumberToObject(j, "valid_demos", r->valid_demos);
  cJSON_AddNumberToObject(j, "skipped_failures", r->skipped_failures);
  cJSON_AddStringToObject(j, "selection", isnan(success) ? "last epoch" : "rollout success");
  if (!isnan(success)) cJSON_AddNumberToObject(j, "selection_success", success);
  char *s = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  return s;
}

/* PREFIX of PREFIX.csv, PREFIX_loss.png, PREFIX_success.png: --metrics, else the policy path without .h5 */
static int metrics_prefix(const bcTrainOpts *o, char *prefix, size_t n) {
  if (tk_snprintf(prefix, n, "%s", o->metrics_prefix ? o->metrics_prefix : o->out))
    return tk_error(TK_ERANGE, "metrics path too long: %.200s",
                    o->metrics_prefix ? o->metrics_prefix : o->out);
  size_t l = strlen(prefix);
  if (!o->metrics_prefix && l > 3 && !strcmp(prefix + l - 3, ".h5")) prefix[l - 3] = 0;
  return 0;
}

/* Every file bc-train writes passes the output rule before a minute is spent training. */
static int check_outputs(const bcTrainOpts *o, const char *prefix) {
  const char *in[] = {o->dataset, o->config};
  static const char *const suffix[] = {".csv", "_loss.png", "_success.png"};
  static const dsKind kind[] = {DS_KIND_TEXT, DS_KIND_PNG, DS_KIND_PNG};
  int rc = ds_output_check(o->out, DS_KIND_HDF5, in, 2, o->force);
  for (int i = 0; i < 3 && !rc; i++) {
    char path[4200];
    if (tk_snprintf(path, sizeof path, "%s%s", prefix, suffix[i]))
      return tk_error(TK_ERANGE, "metrics path too long");
    const char *all[] = {o->dataset, o->config, o->out};
    rc = ds_output_check(path, kind[i], all, 3, o->force);
  }
  return rc;
}

/* ---- the trainer: what setup loads and allocates once, and the loop uses ------------------------------ */
typedef struct {
  dsFile *f;
  dsLoaded L;             /* the loaded demos; obs and actions normalized in place */
  bcImages img;           /* image observation keys of the same rows (uint8, as stored; none: nkeys 0) */
  uint8_t *role;          /* (L.ndemos) 1 train, 2 valid, 0 neither */
  int64_t *train, *valid; /* rows of L that start training / validation samples (ntrain, nvalid) */
  int64_t ntrain, nvalid;
  int64_t *last_row;  /* (L.n) the last row of each row's demo */
  int64_t *first_row; /* (L.n) the first (in last_row's allocation) */
  sampling sm;        /* chunk and sequence length of a sample */
  bcPolicy *p;        /* the policy being trained */
  capModel *model;    /* the task's model for rollouts (can_eval) */
  int can_eval;
  int B, threads, rnn; /* batch, training threads, BC-RNN */
  nnTeam *team;        /* MLP: data-parallel training team */
  bcVisionTrainer *vt; /* a policy with cameras: its training step */
  nnWork *tw, *vw;     /* training work (nn_step; a plain trunk's carries the team); validation work */
  float *x, *y;        /* a batch: inputs (B T obs_dim) and targets (B T act_dim K) */
  int64_t *fr;         /* a batch's frame rows (B T), for the cameras */
  float *last_good;    /* (n_params) the parameters at the epoch's start */
  float *ema, *live;   /* --ema: the weights' moving average, and the live weights while it is swapped in */
  curves cv;
  FILE *csv;
  tkRng rng; /* shuffling and observation noise */
  tkProgress prog;
  double t0, t_train; /* start of the loop; seconds spent in training steps */
  int64_t samples;    /* training samples so far */
  double best;        /* best rollout success so far (-1: none yet) */
} trainer;

static void trainer_free(trainer *t) {
  if (t->csv) fclose(t->csv);
  free(t->cv.epoch);
  free(t->last_good);
  free(t->ema);
  free(t->last_row);
  free(t->x);
  free(t->y);
  free(t->fr);
  free(t->role);
  free(t->train);
  free(t->valid);
  nn_work_free(t->vw);
  nn_work_free(t->tw);
  nn_team_free(t->team);
  bc_vt_free(t->vt);
  cap_model_free(t->model);
  bc_policy_free(t->p);
  bc_images_free(&t->img);
  ds_loaded_free(&t->L);
  ds_close(t->f);
}

/* ---- setup ------------------------------------------------------------------------------------------ */

/* Open the dataset, load the chosen keys, and split its demos into training and validation rows. */
static int load_data(trainer *t, const bcTrainOpts *o, bcTrainResult *r) {
  int rc = ds_open(o->dataset, 0, &t->f);
  if (rc) return rc;
  const char *keys[BC_MAX_KEYS], *img[BC_MAX_KEYS];
  char cam_keys[CAP_MAX_CAMS][BC_KEY_MAX];
  int nk = 0, ni = 0;
  if ((rc = choose_keys(t->f, o, keys, &nk, img, &ni, cam_keys))) return rc;
  if (nk == 0) /* ds_load reads every low-dim key when given none */
    return tk_error(TK_EINVAL,
                    "%s: only image observation keys (%s%s): add a low-dim key (robot0_eef_pos, ...)",
                    o->dataset, img[0], ni > 1 ? ", ..." : "");
  dsLoadOpts lo = {.obs_keys = keys, .nobs_keys = nk};
  if ((rc = ds_load(t->f, &lo, &t->L))) return rc;
  if ((ni > 0 || o->nrender > 0) &&
      (rc = bc_images_load(t->f, &t->L, ni, img, o->nrender, o->render, o->quiet, &t->img)))
    return rc;
  if (!(t->role = calloc((size_t)TK_MAX(t->L.ndemos, 1), 1))) return tk_error(TK_ENOMEM, "out of memory");
  if ((rc = assign_demos(t->f, &t->L, o, t->role, r))) return rc;
  t->train = rows_of(&t->L, t->role, 1, &t->ntrain);
  t->valid = rows_of(&t->L, t->role, 2, &t->nvalid);
  if (!t->train || !t->valid) return tk_error(TK_ENOMEM, "out of memory");
  r->train_samples = t->ntrain;
  r->valid_samples = t->nvalid;
  return 0;
}

/* The policy for the loaded keys (actions of K steps with chunking), its statistics from the training
 * rows (the data normalized in place), the task and control rate it was recorded at. */
static int build_policy(trainer *t, const bcTrainOpts *o) {
  dsLoaded *L = &t->L;
  const int K = o->diffusion ? o->dif.horizon : o->chunk > 0 ? o->chunk : 1; /* checked when made */
  if (!(t->last_row = malloc(sizeof(int64_t) * 2 * (size_t)TK_MAX(L->n, 1))))
    return tk_error(TK_ENOMEM, "out of memory");
  t->first_row = t->last_row + TK_MAX(L->n, 1);
  for (int d = 0; d < L->ndemos; d++)
    for (int64_t i = L->demo_start[d]; i < L->demo_start[d + 1]; i++) {
      t->last_row[i] = L->demo_start[d + 1] - 1;
      t->first_row[i] = L->demo_start[d];
    }
  nnArch arch = o->arch;
  t->rnn = arch.rnn_layers > 0;
  t->sm = (sampling){.k = K, .T = t->rnn ? arch.rnn_horizon : 1, .last = t->last_row, .first = t->first_row};
  arch.obs_dim = L->obs_dim;
  arch.act_dim = L->act_dim * K;
  if (o->diffusion) { /* the denoiser: [obs_horizon steps | noisy chunk | level embedding] -> clean chunk or
                         noise */
    if (t->rnn || o->chunk > 1)
      return tk_error(TK_EINVAL,
                      "--head diffusion predicts its own chunk (--action-horizon): no --rnn or --chunk");
    if (o->obs_noise > 0) return tk_error(TK_EINVAL, "--head diffusion: --obs-noise is not supported");
    arch.head = NN_HEAD_MSE;
    arch.tanh = 0;
    arch.obs_dim = o->dif.obs_horizon * L->obs_dim + arch.act_dim + o->dif.temb;
    if (o->dif.unet) { /* the U-Net: its shape from the options, its horizon and embedding the policy's */
      arch.unet = o->unet;
      arch.unet.horizon = o->dif.horizon;
      arch.unet.temb = o->dif.temb;
      arch.n_hidden = 0;
      arch.layer_norm = 0;
    }
  }
  int dims[BC_MAX_KEYS];
  const char *names[BC_MAX_KEYS];
  for (int i = 0; i < L->nkeys; i++) {
    names[i] = L->key_names[i];
    dims[i] = L->key_offset[i + 1] - L->key_offset[i];
  }
  /* the cameras: robomimic's crop (84 -> 76 unless --crop) and encoder (nn_enc_arch_default) */
  bcImage img[BC_MAX_IMAGES];
  const bcImages *im = &t->img;
  if (im->nkeys > BC_MAX_IMAGES)
    return tk_error(TK_ERANGE, "%d camera keys (at most %d)", im->nkeys, BC_MAX_IMAGES);
  for (int i = 0; i < im->nkeys; i++) {
    bcImage *c = &img[i];
    memset(c, 0, sizeof *c);
    snprintf(c->key, sizeof c->key, "%s", im->key[i]);
    c->height = im->h[i];
    c->width = im->w[i];
    c->channels = im->c[i];
    c->crop_h = o->crop_h > 0 ? o->crop_h : c->height - (c->height * 8 + 41) / 84; /* 84 -> 76 */
    c->crop_w = o->crop_w > 0 ? o->crop_w : c->width - (c->width * 8 + 41) / 84;
    if (c->crop_h > c->height || c->crop_w > c->width)
      return tk_error(TK_EINVAL, "--crop %dx%d is larger than %s's %dx%d frames", c->crop_h, c->crop_w,
                      c->key, c->height, c->width);
    nn_enc_arch_default(&c->enc_arch, c->channels, c->crop_h, c->crop_w, o->encoder_width);
    int f = nn_enc_out_dim(&c->enc_arch);
    if (f < 0) return tk_error_wrap(TK_EINVAL, "%s: encoder for %dx%d crops", c->key, c->crop_h, c->crop_w);
    arch.obs_dim += f * (o->diffusion ? o->dif.obs_horizon : 1); /* diffusion: every observation step */
  }
  if (!(t->p = o->diffusion
                   ? bc_policy_make_diffusion(&arch, L->nkeys, names, dims, im->nkeys, img, &o->dif, o->seed)
                   : bc_policy_make_images(&arch, L->nkeys, names, dims, im->nkeys, img, o->seed)) ||
      bc_policy_set_chunk(t->p, K))
    return tk_error_wrap(TK_EINVAL, "bc-train");
  if (o->diffusion) t->sm.dif = &t->p->dif;
  t->sm.feat = t->p->feat_dim;
  int rc = normalize(t->p, L, t->train, t->ntrain, o->obs_std_floor, o->dataset);
  if (rc) return rc;
  const char *task = ds_env_name(t->f);
  snprintf(t->p->task, sizeof t->p->task, "%s", task ? task : "");
  if (ds_num_demos(t->f) > 0) t->p->control_hz = ds_demo(t->f, 0)->control_hz;
  return 0;
}

/* Rollouts when the dataset's task is one of ours (else, with a message, the last epoch is saved). */
static void setup_rollouts(trainer *t, const bcTrainOpts *o) {
  const char *task = ds_env_name(t->f);
  if (o->eval_every > 0 && o->eval_episodes > 0 && cap_task_known(task)) {
    capOpts co;
    cap_opts_default(&co);
    co.task = task;
    if (bc_policy_model_load(t->p, &co, &t->model) == 0 && bc_bind(t->p, t->model, &(bcBinding){0}) == 0)
      t->can_eval = 1;
    else if (!o->quiet)
      fprintf(stderr, "bc-train: no rollouts: %s\n", tk_errmsg());
  } else if (!o->quiet && o->eval_every > 0) {
    fprintf(stderr, "bc-train: task '%s' is not a built-in task (%s): no rollouts; the last epoch is saved\n",
            task ? task : "", cap_task_names());
  }
}

/* Everything the loop uses, allocated once: the training team (an MLP trains data-parallel; BC-RNN with
 * OpenBLAS's threads, its sequential steps leave no row blocks to split), the validation work, the
 * batch, the epoch's fallback parameters and the curves. */
static int alloc_training(trainer *t, const bcTrainOpts *o) {
  const nnNet *net = t->p->net;
  const int T = t->sm.T, K = t->sm.k;
  t->B = o->batch;
  t->threads = TK_MAX(1, o->threads);
  const int vb = t->rnn ? TK_MAX(1, 256 / T) : 256;
  if (t->p->nimg) { /* cameras: encoders on the threads by rows, the trunk with one OpenBLAS thread */
    nn_set_threads(1);
    if (!(t->vt = bc_vt_make(t->p, (const uint8_t *const *)t->img.data, t->B, t->threads)))
      return tk_error_wrap(TK_ENOMEM, "bc-train");
  } else if (t->rnn) {
    nn_set_threads(t->threads);
    t->tw = nn_work_make_seq(net, t->B, T);
  } else { /* the team trains through a work that carries it (nn_step) */
    if ((t->team = nn_team_make(net, t->B, t->threads)) && (t->tw = nn_work_make(net, 1)))
      nn_work_set_team(t->tw, t->team);
  }
  if ((!t->tw && !t->vt) ||
      (!t->vt && !(t->vw = t->rnn ? nn_work_make_seq(net, vb, T) : nn_work_make(net, vb))))
    return tk_error_wrap(TK_ENOMEM, "bc-train");
  int64_t xb = (int64_t)TK_MAX(t->B, vb) * T;
  t->x = malloc(sizeof(float) * (size_t)(xb * TK_MAX(TK_MAX(1, t->L.obs_dim), t->p->arch.obs_dim)));
  t->y = malloc(sizeof(float) * (size_t)(xb * t->L.act_dim * K));
  const int64_t np = bc_vt_nparams(t->p);
  t->last_good = malloc(sizeof(float) * (size_t)np);
  t->fr = malloc(sizeof(int64_t) * (size_t)xb * (size_t)(t->p->dif.horizon > 0 ? t->p->dif.obs_horizon : 1));
  if (!t->x || !t->y || !t->fr || !t->last_good) return tk_error(TK_ENOMEM, "out of memory");
  if (o->ema > 0) {
    if (!(t->ema = malloc(sizeof(float) * 2 * (size_t)np))) return tk_error(TK_ENOMEM, "out of memory");
    t->live = t->ema + np;
    bc_vt_save_params(t->p, t->ema);
  }
  return curves_make(&t->cv, o->epochs);
}

static int open_metrics(trainer *t, const char *prefix) {
  char csv_path[4200];
  snprintf(csv_path, sizeof csv_path, "%s.csv", prefix);
  if (!(t->csv = fopen(csv_path, "w")))
    return tk_error(TK_EIO, "%s: cannot write the metrics file", csv_path);
  fprintf(t->csv, "epoch,step,train_loss,valid_loss,success_rate,mean_return,samples_per_s,seconds\n");
  return 0;
}

static void print_setup(const trainer *t, const bcTrainOpts *o, const bcTrainResult *r) {
  if (o->quiet) return;
  const nnArch *a = &t->p->arch;
  char rnn_desc[256] = "";
  if (t->rnn)
    snprintf(rnn_desc, sizeof rnn_desc, ", LSTM %d x %d, sequences of %d", a->rnn_layers, a->rnn_hidden,
             t->sm.T);
  const bcDiffusion *d = &t->p->dif;
  char unet[96] = "";
  if (a->unet.levels > 0) {
    int n = snprintf(unet, sizeof unet, " U-Net denoiser, channels");
    for (int i = 0; i < a->unet.levels; i++)
      n += snprintf(unet + n, sizeof unet - (size_t)n, "%s%d", i ? "," : " ", a->unet.down[i]);
    snprintf(unet + n, sizeof unet - (size_t)n, " kernel %d, %lld parameters", a->unet.kernel,
             (long long)t->p->net->n_params);
  }
  if (d->horizon > 0)
    snprintf(rnn_desc, sizeof rnn_desc,
             ", diffusion:%s %d obs steps, %d actions (%d run), %d levels, %s %d steps", unet, d->obs_horizon,
             d->horizon, d->exec, d->train_steps, d->ddpm ? "ddpm" : "ddim",
             d->ddpm ? d->train_steps : d->sample_steps);
  printf("bc-train: %s: %d train demos (%lld samples), %d validation demos (%lld samples), %d failures "
         "skipped; obs %d (%d keys), actions %d; %s head, hidden %d layers%s; %d threads\n",
         o->dataset, r->train_demos, (long long)t->ntrain, r->valid_demos, (long long)t->nvalid,
         r->skipped_failures, t->L.obs_dim, t->L.nkeys, t->L.act_dim, nn_head_name(a->head), a->n_hidden,
         rnn_desc, t->threads);
  for (int i = 0; i < t->p->nimg; i++) {
    const bcImage *c = &t->p->img[i];
    printf("bc-train: camera %s: %dx%d frames, random %dx%d crops (centre when acting), encoder of %lld "
           "parameters -> %d features\n",
           c->key, c->height, c->width, c->crop_h, c->crop_w, (long long)c->enc->n_params,
           nn_enc_out_dim(&c->enc_arch));
  }
}

/* ---- the loop's steps ------------------------------------------------------------------------------- */

/* The b samples of the epoch's rows k0.. into x and y, with observation noise if asked for. */
static void next_batch(trainer *t, const bcTrainOpts *o, int64_t k0, int b) {
  gather(&t->L, &t->sm, t->train + k0, b, t->x, t->y, t->fr, &t->rng);
  if (o->obs_noise > 0)
    for (int64_t i = 0; i < (int64_t)b * t->sm.T * t->L.obs_dim; i++)
      t->x[i] += (float)(o->obs_noise * tk_rng_normal(&t->rng));
}

/* Forward, loss, backward and Adam on the batch next_batch gathered; asking for the gradient norm
 * makes the step refuse non-finite gradients (nonzero: the parameters were not updated). */
static int train_step(trainer *t, const bcTrainOpts *o, int b, float *loss, double *gnorm) {
  if (t->vt) return bc_vt_step(t->vt, &o->adam, t->x, t->y, t->fr, b, &t->rng, loss, gnorm);
  return nn_step(t->p->net, t->tw, &o->adam, t->x, t->y, b, t->rnn ? t->sm.T : 1, loss, gnorm);
}

/* One pass over the shuffled training rows; the mean training loss. A non-finite loss stops the epoch
 * with the parameters of its start back in place (r->stopped_nan). */
static double train_epoch(trainer *t, const bcTrainOpts *o, bcTrainResult *r, int ep) {
  const int B = t->B;
  const int64_t steps_per_epoch = (t->ntrain + B - 1) / B;
  tk_rng_shuffle(&t->rng, t->train, t->ntrain);
  double sum = 0;
  double te = tk_now_s();
  bc_vt_save_params(t->p, t->last_good);
  for (int64_t s = 0; s < steps_per_epoch; s++) {
    int64_t k0 = s * B;
    int b = (int)TK_MIN(B, t->ntrain - k0);
    next_batch(t, o, k0, b);
    float loss;
    double gnorm = NAN;
    if (train_step(t, o, b, &loss, &gnorm)) {
      /* parameters were not updated by the failed step; go back to the epoch's start to be safe */
      bc_vt_load_params(t->p, t->last_good);
      r->stopped_nan = 1;
      fprintf(stderr,
              "bc-train: the loss became %g (gradient norm %g) at epoch %d, step %lld (batch %lld of the "
              "epoch, rows "
              "%lld..%lld of the shuffled training set): stopping; %s keeps the last good policy\n",
              (double)loss, gnorm, ep, (long long)(r->steps + 1), (long long)(s + 1), (long long)k0,
              (long long)(k0 + b - 1), o->out);
      break;
    }
    sum += (double)loss * b;
    t->samples += b;
    r->steps++;
    if (t->ema) {
      double d = fmin(o->ema, (1.0 + (double)r->steps) / (10.0 + (double)r->steps));
      bc_vt_ema_update(t->p, t->ema, (float)d);
    }
  }
  t->t_train += tk_now_s() - te;
  return sum / (double)t->ntrain;
}

/* The policy's info (how it was trained and selected) and the policy file; epoch becomes the best. */
static int save_policy(trainer *t, const bcTrainOpts *o, bcTrainResult *r, int epoch, double success) {
  r->best_epoch = epoch;
  char *info = info_json(o, r, epoch, success);
  if (info) bc_policy_set_info(t->p, info);
  free(info);
  return bc_policy_save(t->p, o->out);
}

/* Rollouts on the selection seeds; the best success so far is saved (ties go to the later epoch: more
 * training, same success). */
static int evaluate(trainer *t, const bcTrainOpts *o, bcTrainResult *r, int ep, double *succ, double *ret) {
  bcEvalOpts eo;
  bc_eval_default(&eo);
  eo.episodes = o->eval_episodes;
  eo.seed = BC_SELECT_SEED_BASE;
  eo.workers = t->threads;
  eo.quiet = 1;
  bcEvalResult er;
  int rc = bc_evaluate(t->p, t->model, &eo, &er);
  if (rc) return rc;
  *succ = er.success_rate;
  *ret = er.mean_return;
  bc_eval_result_free(&er);
  t->cv.succ_epoch[t->cv.nsucc] = ep;
  t->cv.succ[t->cv.nsucc++] = *succ;
  r->evaluated = 1;
  if (*succ >= t->best) {
    t->best = *succ;
    r->best_success = *succ;
    return save_policy(t, o, r, ep, *succ);
  }
  return 0;
}

/* The epoch's metrics row and progress line. */
static void log_epoch(trainer *t, const bcTrainOpts *o, const bcTrainResult *r, int ep, double succ,
                      double ret, int evaluated) {
  double sps = t->t_train > 0 ? (double)t->samples / t->t_train : 0;
  fprintf(t->csv, "%d,%lld,%.6g,%.6g,%.4g,%.6g,%.1f,%.2f\n", ep, (long long)r->steps, r->final_train_loss,
          r->final_valid_loss, succ, ret, sps, tk_now_s() - t->t0);
  fflush(t->csv);
  if (o->quiet) return;
  char sbuf[48] = "";
  if (!isnan(t->best) && t->best >= 0)
    snprintf(sbuf, sizeof sbuf, " best success %.0f%% (ep %d)", 100 * t->best, r->best_epoch);
  tk_progress_update(&t->prog, ep, "loss %.4g valid %.4g %.0f samples/s%s", r->final_train_loss,
                     r->final_valid_loss, sps, sbuf);
  if (evaluated && !t->prog.enabled)
    printf("epoch %d: loss %.4g, valid %.4g, success %.0f%% (%d rollouts)\n", ep, r->final_train_loss,
           r->final_valid_loss, 100 * succ, o->eval_episodes);
}

/* ---- teardown --------------------------------------------------------------------------------------- */

static int close_metrics(trainer *t, const char *prefix) {
  int bad = ferror(t->csv);
  int closed = fclose(t->csv);
  t->csv = NULL;
  if (closed || bad) return tk_error(TK_EIO, "%s.csv: cannot write the metrics file", prefix);
  return 0;
}

/* ---- the training run ------------------------------------------------------------------------------- */

int bc_train(const bcTrainOpts *o, bcTrainResult *r) {
  memset(r, 0, sizeof *r);
  r->final_valid_loss = NAN;
  r->best_success = NAN;
  if (o->epochs < 1 || o->batch < 1) return tk_error(TK_EINVAL, "epochs and batch must be at least 1");
  char prefix[4096];
  int rc = metrics_prefix(o, prefix, sizeof prefix);
  if (rc || (rc = check_outputs(o, prefix))) return rc;
  trainer t = {.best = -1};

  /* setup: load and split the data, build and normalize the policy, rollouts, allocate once */
  bcTrainOpts co;
  if ((rc = load_data(&t, o, r))) goto done;
  if (t.img.nkeys > 0) { /* the camera defaults, for what the user left unset */
    co = *o;
    if (!(o->given & BC_GIVEN_LR)) co.adam.lr = BC_CAMERA_LR;
    if (!(o->given & BC_GIVEN_EPOCHS)) co.epochs = BC_CAMERA_EPOCHS;
    if (!(o->given & BC_GIVEN_EMA)) co.ema = BC_CAMERA_EMA;
    if (!o->quiet && co.given != (BC_GIVEN_LR | BC_GIVEN_EPOCHS | BC_GIVEN_EMA))
      printf("bc-train: a policy with cameras: lr %g, %d epochs, weight average (ema) %g%s\n", co.adam.lr,
             co.epochs, co.ema, " (--lr, --epochs, --ema change them)");
    o = &co;
  }
  if ((rc = build_policy(&t, o))) goto done;
  setup_rollouts(&t, o);
  if ((rc = alloc_training(&t, o)) || (rc = open_metrics(&t, prefix))) goto done;
  print_setup(&t, o, r);
  tk_rng_seed(&t.rng, o->seed + 1);
  if (!o->quiet) tk_progress_begin(&t.prog, "epochs", o->epochs);
  t.t0 = tk_now_s();

  /* the loop: an epoch of training steps (batch, forward, backward, Adam), the validation loss,
   * rollouts every eval_every epochs saving the best policy (without rollouts the last epoch), the log */
  for (int ep = 1; ep <= o->epochs && !rc; ep++) {
    const double train_loss = train_epoch(&t, o, r, ep);
    if (r->stopped_nan) break;
    r->epochs_run = ep;
    r->final_train_loss = train_loss;
    r->final_valid_loss =
        t.nvalid ? mean_loss(t.p, t.vw, t.vt, t.B, &t.L, &t.sm, t.valid, t.nvalid, t.x, t.y, t.fr) : NAN;
    curves_push(&t.cv, ep, r->final_train_loss, r->final_valid_loss);
    double succ = NAN, ret = NAN;
    const int eval_now = t.can_eval && (ep % o->eval_every == 0 || ep == o->epochs);
    if (t.ema && (eval_now || (!t.can_eval && ep == o->epochs))) { /* the average acts and is saved */
      bc_vt_save_params(t.p, t.live);
      bc_vt_load_params(t.p, t.ema);
    }
    if (eval_now)
      rc = evaluate(&t, o, r, ep, &succ, &ret);
    else if (!t.can_eval && ep == o->epochs)
      rc = save_policy(&t, o, r, ep, NAN);
    if (t.ema && (eval_now || (!t.can_eval && ep == o->epochs))) bc_vt_load_params(t.p, t.live);
    if (rc) break;
    log_epoch(&t, o, r, ep, succ, ret, eval_now);
  }
  if (!o->quiet) tk_progress_end(&t.prog);

  /* teardown: a non-finite loss before anything was saved saves the last good parameters; the rates,
   * the metrics file and the plots */
  if (!rc && r->stopped_nan && r->best_epoch == 0) rc = save_policy(&t, o, r, r->epochs_run, NAN);
  r->seconds = tk_now_s() - t.t0;
  r->samples_per_s = t.t_train > 0 ? (double)t.samples / t.t_train : 0;
  if (!rc) rc = close_metrics(&t, prefix);
  if (!rc) rc = write_plots(&t.cv, prefix, o->dataset);
  if (rc && r->best_epoch > 0) tk_error_wrap(rc, "the policy is saved in %s, but", o->out);
done:
  trainer_free(&t);
  return rc;
}
