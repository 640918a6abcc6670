/* bc/bc_policy.c -- policy objects and policy.h5 files (layout in bc.h). */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bc.h"
#include "ds_h5.h"

static int set_keys(bcPolicy *p, int nkeys, const char *const *keys, const int *dims) {
  if (nkeys < 1 || nkeys > BC_MAX_KEYS)
    return tk_error(TK_ERANGE, "%d observation keys (1..%d allowed)", nkeys, BC_MAX_KEYS);
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
  if (sum != p->arch.obs_dim)
    return tk_error(TK_EINVAL, "observation keys add up to %d values but the network takes %d", sum,
                    p->arch.obs_dim);
  return 0;
}

/* Everything but the network: statistics in one allocation. */
static bcPolicy *policy_alloc(const nnArch *arch) {
  if (nn_arch_validate(arch)) return NULL;
  bcPolicy *p = calloc(1, sizeof *p);
  float *stats = calloc((size_t)(2 * arch->obs_dim + 2 * arch->act_dim), sizeof(float));
  char *info = strdup("{}");
  if (!p || !stats || !info) {
    free(p);
    free(stats);
    free(info);
    tk_error(TK_ENOMEM, "out of memory");
    return NULL;
  }
  p->arch = *arch;
  p->obs_dim = arch->obs_dim;
  p->act_dim = arch->act_dim;
  p->obs_mean = stats;
  p->obs_std = stats + arch->obs_dim;
  p->act_offset = stats + 2 * arch->obs_dim;
  p->act_scale = p->act_offset + arch->act_dim;
  for (int i = 0; i < p->obs_dim; i++)
    p->obs_std[i] = 1.0f;
  for (int i = 0; i < p->act_dim; i++)
    p->act_scale[i] = 1.0f;
  snprintf(p->algo, sizeof p->algo, "bc");
  p->info = info;
  p->chunk = 1;
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

int bc_policy_scratch(const bcPolicy *p) { return p->obs_dim + p->arch.act_dim; }

int bc_policy_has_state(const bcPolicy *p) { return p->chunk > 1 || p->arch.rnn_layers > 0; }

static bcPolicy *policy_make(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                             uint64_t seed, int trainable) {
  bcPolicy *p = policy_alloc(arch);
  if (!p) return NULL;
  if (set_keys(p, nkeys, keys, dims) ||
      !(p->net = trainable ? nn_net_make(arch, seed) : nn_net_make_acting(arch, seed))) {
    bc_policy_free(p);
    return NULL;
  }
  return p;
}

bcPolicy *bc_policy_make(const nnArch *arch, int nkeys, const char *const *keys, const int *dims,
                         uint64_t seed) {
  return policy_make(arch, nkeys, keys, dims, seed, 1);
}

void bc_policy_free(bcPolicy *p) {
  if (!p) return;
  nn_net_free(p->net);
  free(p->obs_mean);
  free(p->info);
  free(p);
}

bcPolicy *bc_policy_clone(const bcPolicy *p) {
  const char *keys[BC_MAX_KEYS];
  for (int i = 0; i < p->nkeys; i++)
    keys[i] = p->keys[i];
  bcPolicy *q = policy_make(&p->arch, p->nkeys, keys, p->key_dim, 0, 0); /* to act */
  if (!q) return NULL;
  nn_copy_params(q->net, p->net);
  bc_policy_set_chunk(q, p->chunk);
  /* the statistics block as allocated (its action part is sized by the network's outputs) */
  memcpy(q->obs_mean, p->obs_mean, sizeof(float) * (size_t)(2 * p->obs_dim + 2 * p->arch.act_dim));
  memcpy(q->task, p->task, sizeof q->task);
  memcpy(q->algo, p->algo, sizeof q->algo);
  q->control_hz = p->control_hz;
  if (bc_policy_set_info(q, p->info)) {
    bc_policy_free(q);
    return NULL;
  }
  return q;
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

/* The first `steps` actions of each row's chunk. */
static int act_rows(const bcPolicy *p, nnWork *w, const float *obs, int B, float *scratch, double *act,
                    int steps) {
  const int D = p->obs_dim, A = p->act_dim, O = p->arch.act_dim;
  if (p->arch.rnn_layers > 0)
    return tk_error(TK_EINVAL, "a recurrent policy acts one step at a time with its state (bc_policy_step)");
  bc_policy_normalize(p, obs, B, scratch);
  float *a = scratch + (size_t)B * D;
  int rc = nn_act(p->net, w, scratch, B, a);
  if (rc) return rc;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < steps; c++)
      to_env(p, a + (size_t)b * O + (size_t)c * A, act + ((size_t)b * steps + c) * A);
  return 0;
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

/* One step of a recurrent policy: its LSTM state starts from zero every horizon steps (robomimic's
 * BC-RNN rollouts), as every training sequence did. */
static int rnn_step(const bcPolicy *p, nnWork *w, bcEnsemble *e, const float *obs, float *scratch,
                    double *act) {
  if (e->t % e->horizon == 0) memset(e->rnn, 0, sizeof(float) * (size_t)e->rnn_n);
  bc_policy_normalize(p, obs, 1, scratch);
  float *a = scratch + p->obs_dim;
  int rc = nn_rnn_step(p->net, w, e->rnn, scratch, 1, a);
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

int bc_policy_step(const bcPolicy *p, nnWork *w, bcEnsemble *e, const float *obs, float *scratch,
                   double *act) {
  if (!e || !bc_policy_has_state(p)) return bc_policy_act(p, w, obs, 1, scratch, act);
  if (p->arch.rnn_layers > 0) return rnn_step(p, w, e, obs, scratch, act);
  int rc = bc_policy_act_chunk(p, w, obs, 1, scratch, e->pred);
  if (!rc) bc_ensemble_step(e, e->pred, act);
  return rc;
}

void bc_ensemble_free(bcEnsemble *e) {
  if (!e) return;
  free(e->ring);
  free(e->rnn);
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

static int write_vec(hid_t g, const char *name, const float *v, int n) {
  return ds_write_whole(g, name, DS_F32, 0, NULL, n, v, 0);
}

static int save_to(const bcPolicy *p, const char *tmp) {
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) return ds_h5_fail(TK_EIO, "%s: cannot create", tmp);
  char *arch = NULL, *keys = json_list_str(p, 0), *dims = json_list_str(p, 1);
  int rc = nn_arch_to_json(&p->arch, &arch);
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
  if (g >= 0) H5Gclose(g);
  if (H5Fclose(f) < 0 && !rc) rc = ds_h5_fail(TK_EIO, "%s: cannot close", tmp);
  return rc;
}

int bc_policy_save(const bcPolicy *p, const char *path) {
  ds_h5_init();
  /* a file that could not be loaded back is never written */
  for (int64_t i = 0; i < p->net->n_params; i++)
    if (!isfinite(p->net->params[i]))
      return tk_error(TK_ERANGE, "%s: policy not saved: parameter %lld is not finite", path, (long long)i);
  char tmp[4200];
  int fd = tk_temp_beside(path, tmp, sizeof tmp); /* a name of ours alone, never a user's file */
  if (fd < 0) return tk_error_wrap(fd, "%s: policy not saved", path);
  close(fd);
  int rc = save_to(p, tmp);
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
static int check_weights(hid_t g, const nnNet *plan, const char *path) {
  int rc = 0;
  for (int i = 0; !rc && i < plan->n_tensors; i++) {
    const nnTensor *t = &plan->tensors[i];
    rc = read_exact(g, t->name, t->ndim, t->shape, NULL, path);
  }
  if (!rc) { /* no extra tensors: a file for another architecture must not half-load */
    dsNames names = {0};
    if (ds_list_links(g, &names) < 0) rc = tk_error(TK_EFORMAT, "%s: /weights cannot be listed", path);
    for (int i = 0; !rc && i < names.n; i++)
      if (!nn_tensor_find(plan, names.v[i]))
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
static int parse_keys(const char *ks, const char *ds, const char *path, int *n, char (*keys)[BC_KEY_MAX],
                      int *dims) {
  cJSON *k = cJSON_Parse(ks), *d = cJSON_Parse(ds);
  int rc = 0;
  if (!cJSON_IsArray(k) || !cJSON_IsArray(d))
    rc = tk_error(TK_EFORMAT, "%s: obs_keys and obs_dims must be JSON lists", path);
  else if ((*n = cJSON_GetArraySize(k)) != cJSON_GetArraySize(d) || *n < 1 || *n > BC_MAX_KEYS)
    rc = tk_error(TK_EFORMAT, "%s: %d obs_keys but %d obs_dims (1..%d keys allowed)", path,
                  cJSON_GetArraySize(k), cJSON_GetArraySize(d), BC_MAX_KEYS);
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

static bcPolicy *load_from(hid_t f, const char *path) {
  char *fmt = NULL, *arch_s = NULL, *keys_s = NULL, *dims_s = NULL, *task = NULL, *algo = NULL, *info = NULL;
  bcPolicy *p = NULL;
  int64_t version = 0;
  nnArch arch;
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
  if (!rc && nn_arch_from_json(arch_s, &arch)) rc = tk_error_wrap(TK_EFORMAT, "%s: attribute 'arch'", path);
  if (!rc) rc = read_str_attr(f, "obs_keys", &keys_s, path);
  if (!rc) rc = read_str_attr(f, "obs_dims", &dims_s, path);
  if (!rc) rc = read_str_attr(f, "task", &task, path);
  if (!rc) rc = read_str_attr(f, "algo", &algo, path);
  if (!rc && ds_attr_exists(f, "info")) rc = read_str_attr(f, "info", &info, path);
  if (!rc && !(p = policy_alloc(&arch))) rc = tk_error_wrap(TK_EFORMAT, "%s", path);
  if (!rc && ds_attr_exists(f, "chunk")) {
    int64_t k = 0;
    if (ds_attr_read_i64(f, "chunk", &k) || k < 1 || k > 64 || bc_policy_set_chunk(p, (int)k))
      rc = tk_error(TK_EFORMAT, "%s: attribute 'chunk' (%lld) is not 1..64 dividing the network's %d outputs",
                    path, (long long)k, arch.act_dim);
  }
  if (!rc) {
    int n = 0, dims[BC_MAX_KEYS];
    char keys[BC_MAX_KEYS][BC_KEY_MAX];
    const char *kp[BC_MAX_KEYS];
    rc = parse_keys(keys_s, dims_s, path, &n, keys, dims);
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
    if (!rc) rc = check_weights(g, &plan, path);
    if (!rc && !(p->net = nn_net_make_acting(&arch, 0))) rc = tk_error_wrap(TK_ENOMEM, "%s", path);
    for (int i = 0; !rc && i < p->net->n_tensors; i++) {
      const nnTensor *t = &p->net->tensors[i];
      rc = read_exact(g, t->name, t->ndim, t->shape, t->data, path);
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
  bcPolicy *p = load_from(f, path);
  H5Fclose(f);
  H5Eclear2(H5E_DEFAULT);
  return p;
}
