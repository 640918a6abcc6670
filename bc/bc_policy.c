/* bc/bc_policy.c -- policy objects and policy.h5 files (layout in bc.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bc.h"
#include "ds_h5.h"

/* inputs of one observation step: the network's (a diffusion policy's: one of its obs_horizon steps) */
static int step_inputs(const bcPolicy *p) {
  return p->dif.horizon > 0 ? bc_diff_step_inputs(&p->dif, &p->arch) : p->arch.obs_dim;
}

static int set_keys(bcPolicy *p, int nkeys, const char *const *keys, const int *dims) {
  if (nkeys < (p->nimg ? 0 : 1) || nkeys > BC_MAX_KEYS)
    return tk_error(TK_ERANGE, "%d observation keys (%d..%d allowed)", nkeys, p->nimg ? 0 : 1, BC_MAX_KEYS);
  int sum = 0;
  for (int i = 0; i < nkeys; i++) {
    if (!keys[i] || !keys[i][0] || strlen(keys[i]) >= BC_KEY_MAX)
      return tk_error(TK_EINVAL, "observation key %d: empty or longer than %d characters", i, BC_KEY_MAX - 1);
    if (dims[i] < 1 || dims[i] > NN_MAX_DIM)
      return tk_error(TK_ERANGE, "observation key '%s': size %d", keys[i], dims[i]);
    snprintf(p->keys[i], BC_KEY_MAX, "%s", keys[i]);
    p->key_dim[i] = dims[i];
    sum += dims[i];
  }
  p->nkeys = nkeys;
  if (sum != p->obs_dim)
    return tk_error(TK_EINVAL, "observation keys add up to %d values but the network takes %d%s", sum,
                    p->obs_dim, p->nimg ? " besides the cameras' features" : "");
  return 0;
}

/* The cameras: names, frame and crop sizes checked against the encoders' inputs; the encoders made
 * (to train or to act) unless plan_only. Sets p->nimg and p->feat_dim. */
static int set_images(bcPolicy *p, int nimg, const bcImage *img, uint64_t seed, int trainable,
                      int plan_only) {
  if (nimg < 0 || nimg > BC_MAX_IMAGES)
    return tk_error(TK_ERANGE, "%d cameras (at most %d)", nimg, BC_MAX_IMAGES);
  p->feat_dim = p->base ? p->base->act_dim : 0; /* a residual policy's inputs after its keys */
  for (int i = 0; i < nimg; i++) {
    const bcImage *c = &img[i];
    bcImage *d = &p->img[i];
    if (!c->key[0] || strnlen(c->key, BC_KEY_MAX) >= BC_KEY_MAX)
      return tk_error(TK_EINVAL, "camera %d: empty or overlong key", i);
    for (int j = 0; j < i; j++)
      if (!strcmp(img[j].key, c->key)) return tk_error(TK_EINVAL, "camera key '%s' given twice", c->key);
    if (c->height < 1 || c->width < 1 || c->height > NN_MAX_IMAGE_SIDE || c->width > NN_MAX_IMAGE_SIDE ||
        c->channels < 1 || c->channels > 4)
      return tk_error(TK_ERANGE, "camera '%s': frame %dx%dx%d (sides 1..%d, 1..4 channels)", c->key,
                      c->height, c->width, c->channels, NN_MAX_IMAGE_SIDE);
    if (c->crop_h < 1 || c->crop_w < 1 || c->crop_h > c->height || c->crop_w > c->width)
      return tk_error(TK_ERANGE, "camera '%s': crop %dx%d does not fit its %dx%d frame", c->key, c->crop_h,
                      c->crop_w, c->height, c->width);
    if (c->enc_arch.channels != c->channels || c->enc_arch.height != c->crop_h ||
        c->enc_arch.width != c->crop_w)
      return tk_error(TK_EINVAL, "camera '%s': its encoder reads [%d, %d, %d] but the crop is [%d, %d, %d]",
                      c->key, c->enc_arch.channels, c->enc_arch.height, c->enc_arch.width, c->channels,
                      c->crop_h, c->crop_w);
    if (nn_enc_arch_validate(&c->enc_arch)) return tk_error_wrap(TK_EINVAL, "camera '%s': encoder", c->key);
    *d = *c;
    d->enc = NULL;
    p->feat_dim += nn_enc_out_dim(&c->enc_arch);
  }
  p->nimg = nimg;
  p->obs_dim = step_inputs(p) - p->feat_dim;
  if (p->obs_dim < 0)
    return tk_error(TK_EINVAL, "the cameras' features (%d) are more than the network's %d inputs",
                    p->feat_dim, p->arch.obs_dim);
  for (int i = 0; !plan_only && i < nimg; i++) {
    const nnEncArch *a = &p->img[i].enc_arch;
    p->img[i].enc =
        trainable ? nn_enc_make(a, seed + 1 + (uint64_t)i) : nn_enc_make_acting(a, seed + 1 + (uint64_t)i);
    if (!p->img[i].enc) return tk_error_wrap(TK_ENOMEM, "camera '%s': encoder", p->img[i].key);
  }
  return 0;
}

/* Everything but the networks: statistics in one allocation, for obs_dim low-dim values (the trunk's
 * input is those and feat_dim features from the cameras; a diffusion policy's, obs_horizon steps of them,
 * the noisy actions and the level's embedding). */
static bcPolicy *policy_alloc(const nnArch *arch, int feat_dim, const bcDiffusion *dif) {
  if (nn_arch_validate(arch)) return NULL;
  bcDiffusion d;
  if (dif) {
    d = *dif;
    if (bc_diff_validate(&d, arch)) return NULL;
  }
  const int in = dif ? bc_diff_step_inputs(&d, arch) : arch->obs_dim;
  if (feat_dim < 0 || feat_dim > in) {
    tk_error(TK_EINVAL, "the cameras' features (%d) are more than the network's %d inputs", feat_dim, in);
    return NULL;
  }
  const int obs_dim = in - feat_dim;
  bcPolicy *p = calloc(1, sizeof *p);
  float *stats = calloc((size_t)(2 * obs_dim + 2 * arch->act_dim), sizeof(float));
  char *info = strdup("{}");
  if (!p || !stats || !info) {
    free(p);
    free(stats);
    free(info);
    tk_error(TK_ENOMEM, "out of memory");
    return NULL;
  }
  p->arch = *arch;
  p->obs_dim = obs_dim;
  p->feat_dim = feat_dim;
  p->act_dim = arch->act_dim;
  p->obs_mean = stats;
  p->obs_std = stats + obs_dim;
  p->act_offset = stats + 2 * obs_dim;
  p->act_scale = p->act_offset + arch->act_dim;
  for (int i = 0; i < p->obs_dim; i++)
    p->obs_std[i] = 1.0f;
  for (int i = 0; i < p->act_dim; i++)
    p->act_scale[i] = 1.0f;
  snprintf(p->algo, sizeof p->algo, "bc");
  p->info = info;
  p->chunk = 1;
  if (dif) {
    p->dif = d;
    p->chunk = d.horizon;
    p->act_dim = arch->act_dim / d.horizon;
  }
  return p;
}

int bc_policy_set_chunk(bcPolicy *p, int k) {
  if (k < 1 || k > 64 || p->arch.act_dim % k)
    return tk_error(TK_EINVAL, "chunk %d: must be 1..64 and divide the network's %d outputs", k,
                    p->arch.act_dim);
  if (k > 1 && p->arch.rnn_layers > 0)
    return tk_error(TK_EINVAL, "chunk %d: a recurrent policy predicts one action per step", k);
  p->chunk = k;
  p->act_dim = p->arch.act_dim / k;
  return 0;
}

int bc_policy_scratch(const bcPolicy *p) { return p->arch.obs_dim + p->arch.act_dim; }

int bc_policy_has_state(const bcPolicy *p) {
  if (p->base) return bc_policy_has_state(p->base);
  return p->chunk > 1 || p->arch.rnn_layers > 0 || p->dif.horizon > 0;
}

static int feat_of(int nimg, const bcImage *img) {
  int f = 0;
  for (int i = 0; i < nimg; i++) {
    int d = nn_enc_out_dim(&img[i].enc_arch);
    if (d < 0) return -1;
    f += d;
  }
  return f;
}

static bcPolicy *policy_make(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                             int nimg, const bcImage *img, const bcDiffusion *dif, uint64_t seed,
                             int trainable) {
  if (nimg < 0 || nimg > BC_MAX_IMAGES) {
    tk_error(TK_ERANGE, "%d cameras (at most %d)", nimg, BC_MAX_IMAGES);
    return NULL;
  }
  const int feat = feat_of(nimg, img);
  if (feat < 0) {
    tk_error_wrap(TK_EINVAL, "camera encoder");
    return NULL;
  }
  bcPolicy *p = policy_alloc(arch, feat, dif);
  if (!p) return NULL;
  if (set_images(p, nimg, img, seed, trainable, 0) || set_keys(p, nkeys, keys, dims) ||
      !(p->net = trainable ? nn_net_make(arch, seed) : nn_net_make_acting(arch, seed))) {
    bc_policy_free(p);
    return NULL;
  }
  return p;
}

bcPolicy *bc_policy_make(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                         uint64_t seed) {
  return policy_make(arch, nkeys, keys, dims, 0, NULL, NULL, seed, 1);
}

bcPolicy *bc_policy_make_images(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                                int nimg, const bcImage *img, uint64_t seed) {
  return policy_make(arch, nkeys, keys, dims, nimg, img, NULL, seed, 1);
}

bcPolicy *bc_policy_make_diffusion(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                                   int nimg, const bcImage *img, const bcDiffusion *d, uint64_t seed) {
  return policy_make(arch, nkeys, keys, dims, nimg, img, d, seed, 1);
}

void bc_policy_free(bcPolicy *p) {
  if (!p) return;
  bc_policy_free(p->base);
  for (int i = 0; i < p->nimg; i++)
    nn_enc_free(p->img[i].enc);
  nn_net_free(p->net);
  free(p->obs_mean);
  free(p->info);
  free(p);
}

bcPolicy *bc_policy_clone(const bcPolicy *p) {
  const char *keys[BC_MAX_KEYS];
  for (int i = 0; i < p->nkeys; i++)
    keys[i] = p->keys[i];
  bcPolicy *q;
  if (p->base) { /* a residual policy: its base cloned, its inputs the keys and the base's action */
    bcPolicy *b = bc_policy_clone(p->base);
    q = b ? policy_alloc(&p->arch, p->base->act_dim, NULL) : NULL;
    if (q) q->base = b;
    if (!q || set_keys(q, p->nkeys, keys, p->key_dim) || !(q->net = nn_net_make_acting(&p->arch, 0))) {
      if (!q) bc_policy_free(b);
      bc_policy_free(q);
      return NULL;
    }
  } else {
    q = policy_make(&p->arch, p->nkeys, keys, p->key_dim, p->nimg, p->img,
                    p->dif.horizon > 0 ? &p->dif : NULL, 0, 0); /* to act */
  }
  if (!q) return NULL;
  nn_copy_params(q->net, p->net);
  for (int i = 0; i < p->nimg; i++)
    nn_enc_copy_params(q->img[i].enc, p->img[i].enc);
  bc_policy_set_chunk(q, p->chunk);
  /* the statistics block as allocated (its action part is sized by the network's outputs) */
  memcpy(q->obs_mean, p->obs_mean, sizeof(float) * (size_t)(2 * p->obs_dim + 2 * p->arch.act_dim));
  memcpy(q->task, p->task, sizeof q->task);
  memcpy(q->algo, p->algo, sizeof q->algo);
  q->control_hz = p->control_hz;
  q->residual_scale = p->residual_scale;
  if (bc_policy_set_info(q, p->info)) {
    bc_policy_free(q);
    return NULL;
  }
  return q;
}

bcPolicy *bc_policy_make_residual(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                                  bcPolicy *base, double scale, uint64_t seed) {
  if (!base) {
    tk_error(TK_EINVAL, "a residual policy needs a base policy");
    return NULL;
  }
  if (base->base) {
    bc_policy_free(base);
    tk_error(TK_EINVAL, "the base of a residual policy cannot be a residual policy itself");
    return NULL;
  }
  if (!(scale > 0 && scale <= 2) || arch->act_dim != base->act_dim) {
    tk_error(TK_EINVAL, "residual policy: scale %g (0..2] and %d outputs (the base acts with %d)", scale,
             arch->act_dim, base->act_dim);
    bc_policy_free(base);
    return NULL;
  }
  bcPolicy *p = policy_alloc(arch, base->act_dim, NULL);
  if (!p || set_keys(p, nkeys, keys, dims) || !(p->net = nn_net_make(arch, seed))) {
    bc_policy_free(p);
    bc_policy_free(base);
    return NULL;
  }
  memcpy(p->act_offset, base->act_offset, sizeof(float) * (size_t)base->act_dim);
  memcpy(p->act_scale, base->act_scale, sizeof(float) * (size_t)base->act_dim);
  memcpy(p->task, base->task, sizeof p->task);
  p->control_hz = base->control_hz;
  p->base = base;
  p->residual_scale = scale;
  return p;
}

void bc_residual_apply(double scale, const float *a_base, const float *d, int A, float *a, uint8_t *mask) {
  for (int i = 0; i < A; i++) {
    double v = (double)a_base[i] + scale * (double)d[i];
    int in = v > -1 && v < 1;
    a[i] = (float)(in ? v : v <= -1 ? -1 : 1);
    if (mask) mask[i] = (uint8_t)in;
  }
}

int bc_policy_set_info(bcPolicy *p, const char *json) {
  cJSON *j = cJSON_Parse(json ? json : "");
  int ok = j && cJSON_IsObject(j);
  cJSON_Delete(j);
  if (!ok) return tk_error(TK_EINVAL, "policy info must be a JSON object");
  char *s = strdup(json);
  if (!s) return tk_error(TK_ENOMEM, "out of memory");
  free(p->info);
  p->info = s;
  return 0;
}

void bc_policy_normalize(const bcPolicy *p, const float *obs, int B, float *out) {
  const int D = p->obs_dim;
  for (int b = 0; b < B; b++)
    for (int i = 0; i < D; i++)
      out[(size_t)b * D + i] = (obs[(size_t)b * D + i] - p->obs_mean[i]) / p->obs_std[i];
}

/* One action of the network (A values) in environment units. */
static void to_env(const bcPolicy *p, const float *a, double *act) {
  for (int i = 0; i < p->act_dim; i++)
    act[i] = (double)p->act_offset[i] + (double)p->act_scale[i] * (double)a[i];
}

static int refuse_cameras(const bcPolicy *p) {
  if (p->base) return tk_error(TK_EINVAL, "a residual policy acts through bc_actor_step, with its base");
  if (p->nimg)
    return tk_error(TK_EINVAL,
                    "a policy with cameras (%s%s) acts through bc_actor_step, which reads the frames",
                    p->img[0].key, p->nimg > 1 ? ", ..." : "");
  return 0;
}

/* The first `steps` actions of each row's chunk, from the trunk's inputs x [B, arch.obs_dim]; a [B,
 * arch.act_dim] is scratch. */
static int act_input(const bcPolicy *p, nnWork *w, const float *x, int B, float *a, double *act, int steps) {
  const int A = p->act_dim, O = p->arch.act_dim;
  int rc = nn_run(p->net, w, NULL, x, B, 1, a); /* a plain trunk: B rows */
  if (rc) return rc;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < steps; c++)
      to_env(p, a + (size_t)b * O + (size_t)c * A, act + ((size_t)b * steps + c) * A);
  return 0;
}

/* The first `steps` actions of each row's chunk. */
static int act_rows(const bcPolicy *p, nnWork *w, const float *obs, int B, float *scratch, double *act,
                    int steps) {
  const int D = p->obs_dim;
  if (p->arch.rnn_layers > 0)
    return tk_error(TK_EINVAL, "a recurrent policy acts one step at a time with its state (bc_policy_step)");
  if (p->dif.horizon > 0)
    return tk_error(TK_EINVAL, "a diffusion policy acts one step at a time with its state (bc_policy_step)");
  int rc = refuse_cameras(p);
  if (rc) return rc;
  bc_policy_normalize(p, obs, B, scratch);
  return act_input(p, w, scratch, B, scratch + (size_t)B * D, act, steps);
}

int bc_policy_act(const bcPolicy *p, nnWork *w, const float *obs, int B, float *scratch, double *act) {
  return act_rows(p, w, obs, B, scratch, act, 1);
}

int bc_policy_act_chunk(const bcPolicy *p, nnWork *w, const float *obs, int B, float *scratch, double *act) {
  return act_rows(p, w, obs, B, scratch, act, p->chunk);
}

/* ---- an episode's acting state: temporal ensembling, the LSTM's state -------------------------- */
struct bcEnsemble {
  int k, A;
  int64_t t;    /* steps since the reset */
  double *ring; /* k slots of [k, A]: slot t % k holds the chunk predicted at step t */
  double *pred; /* [k, A]: this step's chunk (bc_policy_step) */
  float *rnn;   /* a recurrent policy's LSTM state (nn_rnn_state_size for one row), else NULL */
  int64_t rnn_n;
  int horizon; /* the state goes back to zero every horizon steps, as in training */
  /* a diffusion policy: the last obs_horizon steps' inputs, the plan being executed, its noise */
  float *hist;  /* [obs_horizon, step inputs], oldest first */
  float *plan;  /* [horizon, act_dim] normalized actions */
  float *dwork; /* bc_diff_scratch */
  int plan_i;   /* the next action of the plan to execute (exec: plan again) */
  tkRng rng;
};

bcEnsemble *bc_ensemble_make(const bcPolicy *p) {
  bcEnsemble *e = calloc(1, sizeof *e);
  const size_t kA = (size_t)p->chunk * (size_t)p->act_dim;
  if (e) e->ring = malloc(sizeof(double) * kA * (size_t)(p->chunk + 1));
  if (!e || !e->ring) {
    free(e);
    tk_error(TK_ENOMEM, "out of memory");
    return NULL;
  }
  e->pred = e->ring + kA * (size_t)p->chunk;
  e->k = p->chunk;
  e->A = p->act_dim;
  if (p->dif.horizon > 0) {
    const int hn = p->dif.obs_horizon * step_inputs(p);
    if (!(e->hist = malloc(sizeof(float) * (size_t)(hn + p->arch.act_dim + bc_diff_scratch(p))))) {
      bc_ensemble_free(e);
      tk_error(TK_ENOMEM, "out of memory");
      return NULL;
    }
    e->plan = e->hist + hn;
    e->dwork = e->plan + p->arch.act_dim;
    tk_rng_seed(&e->rng, 0);
  }
  if (p->arch.rnn_layers > 0) {
    e->rnn_n = nn_rnn_state_size(p->net, 1);
    e->horizon = p->arch.rnn_horizon;
    if (!(e->rnn = calloc((size_t)e->rnn_n, sizeof(float)))) {
      bc_ensemble_free(e);
      tk_error(TK_ENOMEM, "out of memory");
      return NULL;
    }
  }
  return e;
}

void bc_ensemble_reset(bcEnsemble *e) { e->t = 0; }

void bc_ensemble_reset_seed(bcEnsemble *e, uint64_t seed) {
  e->t = 0;
  tk_rng_seed(&e->rng, seed ^ 0x6469666675736e21ull); /* the episode's own noise, apart from other uses */
}

/* One step of a recurrent policy from the trunk's input x: its LSTM state starts from zero every horizon
 * steps (robomimic's BC-RNN rollouts), as every training sequence did. a [arch.act_dim] is scratch. */
static int rnn_step(const bcPolicy *p, nnWork *w, bcEnsemble *e, const float *x, float *a, double *act) {
  if (e->t % e->horizon == 0) memset(e->rnn, 0, sizeof(float) * (size_t)e->rnn_n);
  int rc = nn_run(p->net, w, e->rnn, x, 1, 1, a); /* one step on from the episode's state */
  if (rc) return rc;
  to_env(p, a, act);
  e->t++;
  return 0;
}

void bc_ensemble_step(bcEnsemble *e, const double *pred, double *act) {
  const int k = e->k, A = e->A;
  memcpy(e->ring + (size_t)(e->t % k) * k * A, pred, sizeof(double) * (size_t)k * A);
  int n = (int)TK_MIN((int64_t)k, e->t + 1); /* predictions that cover this step */
  for (int i = 0; i < A; i++) {
    double sum = 0;
    for (int j = 0; j < n; j++) /* the chunk predicted j steps ago, its element j */
      sum += e->ring[(size_t)((e->t - j) % k) * k * A + (size_t)j * A + i];
    act[i] = sum / n;
  }
  e->t++;
}

/* One step of a diffusion policy from this step's inputs x: into the history (the first step fills it),
 * a new plan when the last one's exec actions are spent, the plan's next action. */
static int diffusion_step(const bcPolicy *p, nnWork *w, bcEnsemble *e, const float *x, double *act) {
  const bcDiffusion *d = &p->dif;
  const int I = step_inputs(p);
  if (e->t == 0)
    for (int k = 0; k < d->obs_horizon; k++)
      memcpy(e->hist + (size_t)k * I, x, sizeof(float) * (size_t)I);
  else {
    memmove(e->hist, e->hist + I, sizeof(float) * (size_t)(d->obs_horizon - 1) * I);
    memcpy(e->hist + (size_t)(d->obs_horizon - 1) * I, x, sizeof(float) * (size_t)I);
  }
  if (e->t == 0 || e->plan_i >= d->exec) {
    int rc = bc_diff_plan(p, w, e->hist, &e->rng, NULL, e->dwork, e->plan);
    if (rc) return rc;
    e->plan_i = 0;
  }
  to_env(p, e->plan + (size_t)e->plan_i * p->act_dim, act);
  e->plan_i++;
  e->t++;
  return 0;
}

/* One step from the trunk's input x [arch.obs_dim] (a [arch.act_dim] scratch): every kind of trunk. */
static int trunk_step(const bcPolicy *p, nnWork *w, bcEnsemble *e, const float *x, float *a, double *act) {
  if (p->dif.horizon > 0) {
    if (!e) return tk_error(TK_EINVAL, "a diffusion policy acts with its episode state (bc_actor_step)");
    return diffusion_step(p, w, e, x, act);
  }
  if (!e || !bc_policy_has_state(p)) return act_input(p, w, x, 1, a, act, 1);
  if (p->arch.rnn_layers > 0) return rnn_step(p, w, e, x, a, act);
  int rc = act_input(p, w, x, 1, a, e->pred, p->chunk);
  if (!rc) bc_ensemble_step(e, e->pred, act);
  return rc;
}

int bc_policy_step(const bcPolicy *p, nnWork *w, bcEnsemble *e, const float *obs, float *scratch,
                   double *act) {
  if (!e || !bc_policy_has_state(p)) return bc_policy_act(p, w, obs, 1, scratch, act);
  int rc = refuse_cameras(p);
  if (rc) return rc;
  bc_policy_normalize(p, obs, 1, scratch);
  return trunk_step(p, w, e, scratch, scratch + p->obs_dim, act);
}

/* ---- acting in an environment ---------------------------------------------------------------- */
struct bcActor {
  const bcPolicy *p;
  bcActor *base; /* a residual policy's base, acting first */
  double *abase; /* [act_dim] its action */
  bcBinding b;
  nnWork *w;
  bcEnsemble *e;
  nnEncWork *ew[BC_MAX_IMAGES];
  float *raw;  /* [obs_dim] the low-dim keys */
  float *x;    /* [arch.obs_dim] the trunk's input */
  float *a;    /* [arch.act_dim] */
  float *crop; /* the largest camera crop, CHW float */
};

bcActor *bc_actor_make(const bcPolicy *p, const capModel *m) {
  bcActor *a = calloc(1, sizeof *a);
  if (!a) {
    tk_error(TK_ENOMEM, "out of memory");
    return NULL;
  }
  a->p = p;
  if (bc_bind(p, m, &a->b)) {
    free(a);
    return NULL;
  }
  if (p->base && !(a->base = bc_actor_make(p->base, m))) {
    free(a);
    return NULL;
  }
  int64_t crop = 1;
  for (int i = 0; i < p->nimg; i++)
    crop = TK_MAX(crop, (int64_t)p->img[i].channels * p->img[i].crop_h * p->img[i].crop_w);
  a->w = nn_work_make(p->net, 1);
  a->e = bc_ensemble_make(p);
  a->abase = malloc(sizeof(double) * (size_t)p->act_dim);
  a->raw = malloc(sizeof(float) * (size_t)(TK_MAX(1, p->obs_dim) + p->arch.obs_dim + p->arch.act_dim + crop));
  int ok = a->w && a->e && a->raw && a->abase;
  for (int i = 0; ok && i < p->nimg; i++)
    ok = (a->ew[i] = nn_enc_work_make(p->img[i].enc, 1)) != NULL;
  if (!ok) {
    bc_actor_free(a);
    tk_error(TK_ENOMEM, "out of memory");
    return NULL;
  }
  a->x = a->raw + TK_MAX(1, p->obs_dim);
  a->a = a->x + p->arch.obs_dim;
  a->crop = a->a + p->arch.act_dim;
  return a;
}

void bc_actor_reset(bcActor *a, uint64_t seed) {
  bc_ensemble_reset_seed(a->e, seed);
  if (a->base) bc_actor_reset(a->base, seed);
}

/* A residual policy's step: the base acts, then the correction from [keys | base action] */
static int residual_step(bcActor *a, const capObs *o, double *act) {
  const bcPolicy *p = a->p;
  const int A = p->act_dim, D = p->obs_dim;
  int rc = bc_actor_step(a->base, o, a->abase);
  if (rc) return rc;
  bc_gather(&a->b, o, a->raw);
  bc_policy_normalize(p, a->raw, 1, a->x);
  for (int i = 0; i < A; i++)
    a->x[D + i] = (float)((a->abase[i] - p->act_offset[i]) / p->act_scale[i]);
  if ((rc = nn_run(p->net, a->w, NULL, a->x, 1, 1, a->a))) return rc;
  float n[CAP_MAX_ACT];
  bc_residual_apply(p->residual_scale, a->x + D, a->a, A, n, NULL);
  /* the base's action plus the correction in environment units: no correction is the base's action bit
   * for bit (not its round trip through the normalization) */
  for (int i = 0; i < A; i++)
    act[i] = a->abase[i] + (double)p->act_scale[i] * ((double)n[i] - (double)a->x[D + i]);
  return 0;
}

int bc_actor_step(bcActor *a, const void *cap_obs, double *act) {
  const bcPolicy *p = a->p;
  const capObs *o = cap_obs;
  if (p->base) return residual_step(a, o, act);
  bc_gather(&a->b, o, a->raw);
  bc_policy_normalize(p, a->raw, 1, a->x);
  float *feat = a->x + p->obs_dim;
  for (int i = 0; i < p->nimg; i++) { /* the centre crop, as every frame was cropped at random in training */
    const bcImage *c = &p->img[i];
    nn_image_crop(o->v[a->b.img_index[i]], c->height, c->width, c->channels, (c->height - c->crop_h) / 2,
                  (c->width - c->crop_w) / 2, c->crop_h, c->crop_w, a->crop);
    int rc = nn_enc_forward(c->enc, a->ew[i], a->crop, 1, feat);
    if (rc) return rc;
    feat += nn_enc_out_dim(&c->enc_arch);
  }
  return trunk_step(p, a->w, a->e, a->x, a->a, act);
}

void bc_actor_free(bcActor *a) {
  if (!a) return;
  bc_actor_free(a->base);
  free(a->abase);
  for (int i = 0; i < BC_MAX_IMAGES; i++)
    nn_enc_work_free(a->ew[i]);
  nn_work_free(a->w);
  bc_ensemble_free(a->e);
  free(a->raw);
  free(a);
}

void bc_ensemble_free(bcEnsemble *e) {
  if (!e) return;
  free(e->ring);
  free(e->rnn);
  free(e->hist);
  free(e);
}

/* ---- saving ---------------------------------------------------------------------------------- */
static char *json_list_str(const bcPolicy *p, int dims) {
  cJSON *l = cJSON_CreateArray();
  for (int i = 0; l && i < p->nkeys; i++)
    cJSON_AddItemToArray(l, dims ? cJSON_CreateNumber(p->key_dim[i]) : cJSON_CreateString(p->keys[i]));
  char *s = l ? cJSON_PrintUnformatted(l) : NULL;
  cJSON_Delete(l);
  return s;
}

/* The arch attribute: the trunk's JSON, plus "encoders" for a policy with cameras and "diffusion" for a
 * diffusion policy. */
static int arch_json(const bcPolicy *p, char **out) {
  int rc = nn_arch_to_json(&p->arch, out);
  if (rc || (p->nimg == 0 && p->dif.horizon == 0)) return rc;
  cJSON *j = cJSON_Parse(*out), *list = p->nimg ? cJSON_CreateArray() : NULL;
  free(*out);
  *out = NULL;
  if (j && p->dif.horizon > 0) {
    cJSON *dj = bc_diff_to_json(&p->dif);
    if (!dj) {
      cJSON_Delete(j);
      cJSON_Delete(list);
      return tk_error(TK_ENOMEM, "out of memory");
    }
    cJSON_AddItemToObject(j, "diffusion", dj);
  }
  if (j && list)
    cJSON_AddItemToObject(j, "encoders", list);
  else
    cJSON_Delete(list);
  for (int i = 0; j && !rc && i < p->nimg; i++) {
    const bcImage *c = &p->img[i];
    char *es = NULL;
    if ((rc = nn_enc_arch_to_json(&c->enc_arch, &es))) break;
    cJSON *e = cJSON_CreateObject(), *enc = cJSON_Parse(es);
    free(es);
    int frame[3] = {c->height, c->width, c->channels}, crop[2] = {c->crop_h, c->crop_w};
    if (!e || !enc) {
      cJSON_Delete(e);
      cJSON_Delete(enc);
      break;
    }
    cJSON_AddStringToObject(e, "key", c->key);
    cJSON_AddItemToObject(e, "frame", cJSON_CreateIntArray(frame, 3));
    cJSON_AddItemToObject(e, "crop", cJSON_CreateIntArray(crop, 2));
    cJSON_AddItemToObject(e, "encoder", enc);
    cJSON_AddItemToArray(list, e);
  }
  if (!rc && j && (p->nimg == 0 || cJSON_GetArraySize(list) == p->nimg)) *out = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!rc && !*out) rc = tk_error(TK_ENOMEM, "out of memory");
  return rc;
}

/* An int list of n values in lo..hi. */
static int int_list(const cJSON *a, int n, int lo, int hi, int *v) {
  if (!cJSON_IsArray(a) || cJSON_GetArraySize(a) != n) return -1;
  for (int i = 0; i < n; i++) {
    const cJSON *x = cJSON_GetArrayItem(a, i);
    /* the range first: casting a number outside int's range is undefined */
    if (!cJSON_IsNumber(x) || !(x->valuedouble >= lo && x->valuedouble <= hi) ||
        x->valuedouble != floor(x->valuedouble))
      return -1;
    v[i] = (int)x->valuedouble;
  }
  return 0;
}

/* The arch attribute back: the trunk (nn_arch_from_json, strict), the cameras of "encoders" (each entry
 * exactly key, frame, crop, encoder) and a diffusion policy's "diffusion" (dif->horizon 0 without). */
static int parse_arch(const char *s, nnArch *arch, int *nimg, bcImage *img, bcDiffusion *dif,
                      const char *path) {
  *nimg = 0;
  memset(dif, 0, sizeof *dif);
  cJSON *j = cJSON_Parse(s);
  cJSON *list = j ? cJSON_DetachItemFromObjectCaseSensitive(j, "encoders") : NULL;
  cJSON *dj = j ? cJSON_DetachItemFromObjectCaseSensitive(j, "diffusion") : NULL;
  int rc = 0;
  if (!list && !dj) { /* a low-dim policy: the attribute as written */
    cJSON_Delete(j);
    return nn_arch_from_json(s, arch) ? tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch'", path) : 0;
  }
  char *trunk = cJSON_PrintUnformatted(j);
  cJSON_Delete(j);
  if (!trunk) rc = tk_error(TK_ENOMEM, "out of memory");
  if (!rc && nn_arch_from_json(trunk, arch)) rc = tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch'", path);
  free(trunk);
  if (!rc && dj && bc_diff_from_json(dj, dif)) rc = tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch'", path);
  cJSON_Delete(dj);
  if (!list) return rc;
  if (!rc &&
      (!cJSON_IsArray(list) || cJSON_GetArraySize(list) < 1 || cJSON_GetArraySize(list) > BC_MAX_IMAGES))
    rc = tk_error(TK_EFORMAT, "%s: attribute 'arch': \"encoders\" must be a list of 1..%d cameras", path,
                  BC_MAX_IMAGES);
  for (int i = 0; !rc && i < cJSON_GetArraySize(list); i++) {
    const cJSON *e = cJSON_GetArrayItem(list, i);
    const cJSON *key = cJSON_GetObjectItemCaseSensitive(e, "key");
    const cJSON *enc = cJSON_GetObjectItemCaseSensitive(e, "encoder");
    int frame[3], crop[2];
    bcImage *c = &img[i];
    memset(c, 0, sizeof *c);
    if (!cJSON_IsObject(e) || cJSON_GetArraySize(e) != 4 || !cJSON_IsString(key) || !key->valuestring[0] ||
        strlen(key->valuestring) >= BC_KEY_MAX ||
        int_list(cJSON_GetObjectItemCaseSensitive(e, "frame"), 3, 1, NN_MAX_IMAGE_SIDE, frame) ||
        int_list(cJSON_GetObjectItemCaseSensitive(e, "crop"), 2, 1, NN_MAX_IMAGE_SIDE, crop) ||
        !cJSON_IsObject(enc)) {
      rc = tk_error(TK_EFORMAT,
                    "%s: attribute 'arch': encoders[%d] must be {\"key\": name, \"frame\": [H, W, C], "
                    "\"crop\": [h, w], \"encoder\": {...}} with sizes 1..%d",
                    path, i, NN_MAX_IMAGE_SIDE);
      break;
    }
    snprintf(c->key, sizeof c->key, "%s", key->valuestring);
    c->height = frame[0];
    c->width = frame[1];
    c->channels = frame[2];
    c->crop_h = crop[0];
    c->crop_w = crop[1];
    char *es = cJSON_PrintUnformatted(enc);
    if (!es)
      rc = tk_error(TK_ENOMEM, "out of memory");
    else if (nn_enc_arch_from_json(es, &c->enc_arch))
      rc = tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch': encoders[%d] ('%s')", path, i, c->key);
    free(es);
    (*nimg)++;
  }
  cJSON_Delete(list);
  return rc;
}

static int write_vec(hid_t g, const char *name, const float *v, int n) {
  return ds_write_whole(g, name, DS_F32, 0, NULL, n, v, 0);
}

/* The policy's attributes and groups into f (the file, or a residual policy's /base group). */
static int write_policy(hid_t f, const bcPolicy *p, const char *tmp) {
  char *arch = NULL, *keys = json_list_str(p, 0), *dims = json_list_str(p, 1);
  int rc = arch_json(p, &arch);
  if (!rc && (!keys || !dims)) rc = tk_error(TK_ENOMEM, "out of memory");
  if (!rc)
    rc = ds_attr_write_str(f, "format", BC_POLICY_FORMAT) ||
                 ds_attr_write_i64(f, "version", BC_POLICY_VERSION) || ds_attr_write_str(f, "arch", arch) ||
                 ds_attr_write_str(f, "obs_keys", keys) || ds_attr_write_str(f, "obs_dims", dims) ||
                 ds_attr_write_str(f, "task", p->task) || ds_attr_write_f64(f, "control_hz", p->control_hz) ||
                 ds_attr_write_str(f, "algo", p->algo) || ds_attr_write_str(f, "info", p->info) ||
                 (p->chunk > 1 && ds_attr_write_i64(f, "chunk", p->chunk))
             ? ds_h5_fail(TK_EIO, "%s: cannot write attributes", tmp)
             : 0;
  free(arch);
  free(keys);
  free(dims);
  hid_t g = rc ? -1 : H5Gcreate2(f, "normalization", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (!rc && g < 0) rc = ds_h5_fail(TK_EIO, "%s: cannot create /normalization", tmp);
  if (!rc) rc = write_vec(g, "obs_mean", p->obs_mean, p->obs_dim);
  if (!rc) rc = write_vec(g, "obs_std", p->obs_std, p->obs_dim);
  if (!rc) rc = write_vec(g, "act_offset", p->act_offset, p->act_dim);
  if (!rc) rc = write_vec(g, "act_scale", p->act_scale, p->act_dim);
  if (g >= 0) H5Gclose(g);
  g = rc ? -1 : H5Gcreate2(f, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (!rc && g < 0) rc = ds_h5_fail(TK_EIO, "%s: cannot create /weights", tmp);
  for (int i = 0; !rc && i < p->net->n_tensors; i++) {
    const nnTensor *t = &p->net->tensors[i];
    rc = ds_write_whole(g, t->name, DS_F32, t->ndim - 1, t->shape + 1, t->shape[0], t->data, 0);
  }
  for (int c = 0; !rc && c < p->nimg; c++)
    for (int i = 0; !rc && i < p->img[c].enc->n_tensors; i++) {
      const nnTensor *t = &p->img[c].enc->tensors[i];
      char name[64];
      snprintf(name, sizeof name, "enc%d.%s", c, t->name);
      rc = ds_write_whole(g, name, DS_F32, t->ndim - 1, t->shape + 1, t->shape[0], t->data, 0);
    }
  if (g >= 0) H5Gclose(g);
  if (!rc && p->base) {
    if (ds_attr_write_f64(f, "residual_scale", p->residual_scale))
      rc = ds_h5_fail(TK_EIO, "%s: cannot write attributes", tmp);
    g = rc ? -1 : H5Gcreate2(f, "base", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (!rc && g < 0) rc = ds_h5_fail(TK_EIO, "%s: cannot create /base", tmp);
    if (!rc) rc = write_policy(g, p->base, tmp);
    if (g >= 0) H5Gclose(g);
  }
  return rc;
}

static int save_to(const bcPolicy *p, const char *tmp) {
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return ds_h5_fail(TK_EIO, "%s: cannot create", tmp);
  int rc = write_policy(f, p, tmp);
  if (H5Fclose(f) < 0 && !rc) rc = ds_h5_fail(TK_EIO, "%s: cannot close", tmp);
  return rc;
}

/* A file that could not be loaded back is never written: every parameter finite. */
static int params_finite(const bcPolicy *p, const char *path) {
  if (p->base && params_finite(p->base, path)) return tk_error_wrap(TK_ERANGE, "base policy");
  for (int64_t i = 0; i < p->net->n_params; i++)
    if (!isfinite(p->net->params[i]))
      return tk_error(TK_ERANGE, "%s: policy not saved: parameter %lld is not finite", path, (long long)i);
  for (int c = 0; c < p->nimg; c++)
    for (int64_t i = 0; i < p->img[c].enc->n_params; i++)
      if (!isfinite(p->img[c].enc->params[i]))
        return tk_error(TK_ERANGE, "%s: policy not saved: camera '%s' parameter %lld is not finite", path,
                        p->img[c].key, (long long)i);
  return 0;
}

int bc_policy_save(const bcPolicy *p, const char *path) {
  ds_h5_init();
  int rc = params_finite(p, path);
  if (rc) return rc;
  char tmp[4200];
  int fd = tk_temp_beside(path, tmp, sizeof tmp); /* a name of ours alone, never a user's file */
  if (fd < 0) return tk_error_wrap(fd, "%s: policy not saved", path);
  close(fd);
  rc = save_to(p, tmp);
  if (!rc) rc = tk_durable_rename(tmp, path); /* fsyncs the file, renames, fsyncs the directory */
  if (rc) {
    unlink(tmp);
    return tk_error_wrap(rc, "%s: policy not saved", path);
  }
  return 0;
}

/* ---- loading --------------------------------------------------------------------------------- */
/* A float tensor of exactly the given shape (every value finite); out NULL: checked from what the file
 * declares, nothing of its size allocated or read. */
static int read_exact(hid_t g, const char *name, int ndim, const int64_t *shape, float *out,
                      const char *path) {
  return ds_h5_read_exact(g, name, DS_F32, ndim, shape, out, path, "the architecture");
}

/* Every tensor the architecture declares (plan) is in /weights with its shape and data, and nothing else
 * is: checked from what the file declares, before the network is allocated. */
/* encoder c's tensor name in /weights, or -1 for a name that is not one */
static int enc_tensor_of(const char *name, int nimg, const nnEnc *plans, const char **rest) {
  int c = -1, n = 0;
  if (sscanf(name, "enc%d.%n", &c, &n) != 1 || n == 0 || c < 0 || c >= nimg) return -1;
  char canon[32];
  snprintf(canon, sizeof canon, "enc%d.", c);
  if (strncmp(name, canon, strlen(canon))) return -1; /* "enc01." is not encoder 1's */
  *rest = name + n;
  return nn_enc_tensor_find(&plans[c], *rest) ? c : -1;
}

static int check_weights(hid_t g, const nnNet *plan, int nimg, const nnEnc *plans, const char *path) {
  int rc = 0;
  for (int i = 0; !rc && i < plan->n_tensors; i++) {
    const nnTensor *t = &plan->tensors[i];
    rc = read_exact(g, t->name, t->ndim, t->shape, NULL, path);
  }
  for (int c = 0; !rc && c < nimg; c++)
    for (int i = 0; !rc && i < plans[c].n_tensors; i++) {
      const nnTensor *t = &plans[c].tensors[i];
      char name[64];
      snprintf(name, sizeof name, "enc%d.%s", c, t->name);
      rc = read_exact(g, name, t->ndim, t->shape, NULL, path);
    }
  if (!rc) { /* no extra tensors: a file for another architecture must not half-load */
    dsNames names = {0};
    if (ds_list_links(g, &names) < 0) rc = tk_error(TK_EFORMAT, "%s: /weights cannot be listed", path);
    const char *rest;
    for (int i = 0; !rc && i < names.n; i++)
      if (!nn_tensor_find(plan, names.v[i]) && enc_tensor_of(names.v[i], nimg, plans, &rest) < 0)
        rc = tk_error(TK_EFORMAT, "%s: /weights/%s is not a tensor of the architecture in 'arch'", path,
                      names.v[i]);
    ds_names_free(&names);
  }
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

static int read_str_attr(hid_t f, const char *name, char **out, const char *path) {
  int rc = ds_attr_read_str(f, name, out);
  if (rc == TK_ENOTFOUND) return tk_error(TK_EFORMAT, "%s: attribute '%s' is missing", path, name);
  if (rc) return tk_error(TK_EFORMAT, "%s: attribute '%s' is not a string", path, name);
  return 0;
}

/* obs_keys / obs_dims: JSON lists of the same length. */
static int parse_keys(const char *ks, const char *ds, const char *path, int min, int *n,
                      char (*keys)[BC_KEY_MAX], int *dims) {
  cJSON *k = cJSON_Parse(ks), *d = cJSON_Parse(ds);
  int rc = 0;
  if (!cJSON_IsArray(k) || !cJSON_IsArray(d))
    rc = tk_error(TK_EFORMAT, "%s: obs_keys and obs_dims must be JSON lists", path);
  else if ((*n = cJSON_GetArraySize(k)) != cJSON_GetArraySize(d) || *n < min || *n > BC_MAX_KEYS)
    rc = tk_error(TK_EFORMAT, "%s: %d obs_keys but %d obs_dims (%d..%d keys allowed)", path,
                  cJSON_GetArraySize(k), cJSON_GetArraySize(d), min, BC_MAX_KEYS);
  for (int i = 0; !rc && i < *n; i++) {
    cJSON *ki = cJSON_GetArrayItem(k, i), *di = cJSON_GetArrayItem(d, i);
    if (!cJSON_IsString(ki) || !ki->valuestring[0] || strlen(ki->valuestring) >= BC_KEY_MAX)
      rc = tk_error(TK_EFORMAT, "%s: obs_keys[%d] is not a key name", path, i);
    else if (!cJSON_IsNumber(di) || !(di->valuedouble >= 1 && di->valuedouble <= NN_MAX_DIM) ||
             di->valuedouble != (int)di->valuedouble)
      rc = tk_error(TK_EFORMAT, "%s: obs_dims[%d] is not a size", path, i);
    else {
      snprintf(keys[i], BC_KEY_MAX, "%s", ki->valuestring);
      dims[i] = (int)di->valuedouble;
    }
  }
  cJSON_Delete(k);
  cJSON_Delete(d);
  return rc;
}

static bcPolicy *load_from(hid_t f, const char *path, int depth) {
  char *fmt = NULL, *arch_s = NULL, *keys_s = NULL, *dims_s = NULL, *task = NULL, *algo = NULL, *info = NULL;
  bcPolicy *p = NULL;
  int64_t version = 0;
  nnArch arch;
  int nimg = 0;
  bcImage img[BC_MAX_IMAGES];
  nnEnc plans[BC_MAX_IMAGES];
  bcDiffusion dif;
  int rc = read_str_attr(f, "format", &fmt, path);
  if (!rc && strcmp(fmt, BC_POLICY_FORMAT))
    rc = tk_error(TK_EFORMAT, "%s: not a policy file (format '%s', expected '%s')", path, fmt,
                  BC_POLICY_FORMAT);
  if (!rc && ds_attr_read_i64(f, "version", &version))
    rc = tk_error(TK_EFORMAT, "%s: attribute 'version' is missing or not an integer", path);
  if (!rc && version != BC_POLICY_VERSION)
    rc = tk_error(TK_EFORMAT, "%s: policy format version %lld; this build reads version %d", path,
                  (long long)version, BC_POLICY_VERSION);
  if (!rc) rc = read_str_attr(f, "arch", &arch_s, path);
  if (!rc) rc = parse_arch(arch_s, &arch, &nimg, img, &dif, path);
  if (!rc) rc = read_str_attr(f, "obs_keys", &keys_s, path);
  if (!rc) rc = read_str_attr(f, "obs_dims", &dims_s, path);
  if (!rc) rc = read_str_attr(f, "task", &task, path);
  if (!rc) rc = read_str_attr(f, "algo", &algo, path);
  if (!rc && ds_attr_exists(f, "info")) rc = read_str_attr(f, "info", &info, path);
  int feat = rc ? 0 : feat_of(nimg, img);
  if (!rc && feat < 0) rc = tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch': encoders", path);
  /* a residual policy: its base in /base (one level), its inputs the keys and the base's action */
  bcPolicy *base = NULL;
  double rscale = 0;
  if (!rc && H5Lexists(f, "base", H5P_DEFAULT) > 0) {
    char bpath[4200];
    snprintf(bpath, sizeof bpath, "%s (/base)", path);
    hid_t g = H5Gopen2(f, "base", H5P_DEFAULT);
    if (depth > 0)
      rc = tk_error(TK_EFORMAT, "%s: a residual policy's base is a residual policy itself", path);
    else if (g < 0)
      rc = tk_error(TK_EFORMAT, "%s: /base is not a group", path);
    else if (!(base = load_from(g, bpath, depth + 1)))
      rc = TK_EFORMAT;
    if (g >= 0) H5Gclose(g);
    if (!rc && (ds_attr_read_f64(f, "residual_scale", &rscale) || !(rscale > 0 && rscale <= 2)))
      rc = tk_error(TK_EFORMAT, "%s: attribute 'residual_scale' is missing or not in (0, 2]", path);
    if (!rc && nimg)
      rc = tk_error(TK_EFORMAT, "%s: a residual policy reads no cameras itself (its base does)", path);
    if (!rc && arch.act_dim != base->act_dim)
      rc = tk_error(TK_EFORMAT, "%s: the residual acts with %d values, its base with %d", path, arch.act_dim,
                    base->act_dim);
    if (!rc) feat = base->act_dim;
  }
  if (!rc && !(p = policy_alloc(&arch, feat, dif.horizon > 0 ? &dif : NULL)))
    rc = tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch'", path);
  if (p) {
    p->base = base;
    p->residual_scale = rscale;
  } else {
    bc_policy_free(base);
  }
  if (!rc && set_images(p, nimg, img, 0, 0, 1)) rc = tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch'", path);
  for (int i = 0; !rc && i < nimg; i++)
    if (nn_enc_plan(&p->img[i].enc_arch, &plans[i]))
      rc = tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch': encoders[%d]", path, i);
  if (!rc && ds_attr_exists(f, "chunk")) {
    int64_t k = 0;
    if (ds_attr_read_i64(f, "chunk", &k) || k < 1 || k > 64 || bc_policy_set_chunk(p, (int)k))
      rc = tk_error(TK_EFORMAT, "%s: attribute 'chunk' (%lld) is not 1..64 dividing the network's %d outputs",
                    path, (long long)k, arch.act_dim);
  }
  if (!rc && p->dif.horizon > 0 && p->chunk != p->dif.horizon)
    rc = tk_error(TK_EFORMAT, "%s: attribute 'chunk' (%d) is not the diffusion horizon (%d)", path, p->chunk,
                  p->dif.horizon);
  if (!rc) {
    int n = 0, dims[BC_MAX_KEYS];
    char keys[BC_MAX_KEYS][BC_KEY_MAX];
    const char *kp[BC_MAX_KEYS];
    rc = parse_keys(keys_s, dims_s, path, nimg ? 0 : 1, &n, keys, dims);
    for (int i = 0; !rc && i < n; i++)
      kp[i] = keys[i];
    if (!rc && set_keys(p, n, kp, dims)) rc = tk_error_wrap(TK_EFORMAT, "%s", path);
  }
  if (!rc) {
    if (strlen(task) >= sizeof p->task || strlen(algo) >= sizeof p->algo)
      rc = tk_error(TK_EFORMAT, "%s: attribute 'task' or 'algo' is too long", path);
    else {
      snprintf(p->task, sizeof p->task, "%s", task);
      snprintf(p->algo, sizeof p->algo, "%s", algo);
    }
  }
  if (!rc && ds_attr_read_f64(f, "control_hz", &p->control_hz))
    rc = tk_error(TK_EFORMAT, "%s: attribute 'control_hz' is missing or not a number", path);
  if (!rc && (!isfinite(p->control_hz) || p->control_hz < 0))
    rc = tk_error(TK_EFORMAT, "%s: control_hz %g is not a rate", path, p->control_hz);
  if (!rc && info && bc_policy_set_info(p, info))
    rc = tk_error(TK_EFORMAT, "%s: attribute 'info' is not a JSON object", path);
  /* statistics */
  if (!rc) {
    hid_t g = H5Gopen2(f, "normalization", H5P_DEFAULT);
    if (g < 0) rc = tk_error(TK_EFORMAT, "%s: group /normalization is missing", path);
    int64_t od = p->obs_dim, ad = p->act_dim;
    if (!rc) rc = read_exact(g, "obs_mean", 1, &od, p->obs_mean, path);
    if (!rc) rc = read_exact(g, "obs_std", 1, &od, p->obs_std, path);
    if (!rc) rc = read_exact(g, "act_offset", 1, &ad, p->act_offset, path);
    if (!rc) rc = read_exact(g, "act_scale", 1, &ad, p->act_scale, path);
    for (int i = 0; !rc && i < p->obs_dim; i++)
      if (!(p->obs_std[i] > 0))
        rc = tk_error(TK_EFORMAT, "%s: /normalization/obs_std[%d] = %g, must be > 0", path, i, p->obs_std[i]);
    for (int i = 0; !rc && i < p->act_dim; i++)
      if (!(p->act_scale[i] > 0))
        rc = tk_error(TK_EFORMAT, "%s: /normalization/act_scale[%d] = %g, must be > 0", path, i,
                      p->act_scale[i]);
    if (g >= 0) H5Gclose(g);
  }
  /* weights: the file's tensors are checked against the architecture before the network is allocated,
   * and the network is made to act (parameters only) */
  if (!rc) {
    hid_t g = H5Gopen2(f, "weights", H5P_DEFAULT);
    if (g < 0) rc = tk_error(TK_EFORMAT, "%s: group /weights is missing", path);
    nnNet plan;
    if (!rc && nn_net_plan(&arch, &plan)) rc = tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch'", path);
    if (!rc) rc = check_weights(g, &plan, nimg, plans, path);
    if (!rc && !(p->net = nn_net_make_acting(&arch, 0))) rc = tk_error_wrap(TK_ENOMEM, "%s", path);
    for (int i = 0; !rc && i < p->net->n_tensors; i++) {
      const nnTensor *t = &p->net->tensors[i];
      rc = read_exact(g, t->name, t->ndim, t->shape, t->data, path);
    }
    for (int c = 0; !rc && c < nimg; c++) {
      if (!(p->img[c].enc = nn_enc_make_acting(&p->img[c].enc_arch, 0)))
        rc = tk_error_wrap(TK_ENOMEM, "%s", path);
      for (int i = 0; !rc && i < p->img[c].enc->n_tensors; i++) {
        const nnTensor *t = &p->img[c].enc->tensors[i];
        char name[64];
        snprintf(name, sizeof name, "enc%d.%s", c, t->name);
        rc = read_exact(g, name, t->ndim, t->shape, t->data, path);
      }
    }
    if (g >= 0) H5Gclose(g);
  }
  H5Eclear2(H5E_DEFAULT);
  free(fmt);
  free(arch_s);
  free(keys_s);
  free(dims_s);
  free(task);
  free(algo);
  free(info);
  if (rc) {
    bc_policy_free(p);
    return NULL;
  }
  return p;
}

bcPolicy *bc_policy_load(const char *path) {
  ds_h5_init();
  if (!tk_file_exists(path)) {
    tk_error(TK_ENOTFOUND, "%s: no such file", path);
    return NULL;
  }
  if (H5Fis_hdf5(path) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    tk_error(TK_EFORMAT, "%s: not an HDF5 file", path);
    return NULL;
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    ds_h5_fail(TK_EFORMAT, "%s: cannot open", path);
    return NULL;
  }
  bcPolicy *p = load_from(f, path, 0);
  H5Fclose(f);
  H5Eclear2(H5E_DEFAULT);
  return p;
}
