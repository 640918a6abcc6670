/* nn/nn.c -- architecture (validation, JSON), allocation, initialization, named tensors, threads. */
#include <cblas.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"

/* ---- architecture ------------------------------------------------------------------------------ */

void nn_arch_default(nnArch *a) {
  memset(a, 0, sizeof *a);
  a->n_hidden = 2;
  a->hidden[0] = a->hidden[1] = 256;
  a->activation = NN_RELU;
  a->head = NN_HEAD_MSE;
  a->gmm_modes = 5;
  a->gmm_min_std = 1e-4;
  a->log_std_min = -5;
  a->log_std_max = 2;
  a->rnn_layers = 0;
  a->rnn_hidden = 400;
  a->rnn_horizon = 10;
}

const char *nn_activation_name(nnActivation a) {
  switch (a) {
  case NN_RELU: return "relu";
  case NN_ELU: return "elu";
  case NN_TANH: return "tanh";
  }
  return "?";
}

const char *nn_head_name(nnHead h) {
  switch (h) {
  case NN_HEAD_MSE: return "mse";
  case NN_HEAD_GAUSSIAN: return "gaussian";
  case NN_HEAD_GMM: return "gmm";
  }
  return "?";
}

int nn_arch_out_dim(const nnArch *a) {
  switch (a->head) {
  case NN_HEAD_MSE: return a->act_dim;
  case NN_HEAD_GAUSSIAN: return 2 * a->act_dim;
  case NN_HEAD_GMM: return a->gmm_modes * (2 * a->act_dim + 1);
  }
  return 0;
}

static void add_tensor(nnNet *net, int64_t *off, const char *fmt, int l, int ndim, int64_t d0, int64_t d1) {
  nnTensor *t = &net->tensors[net->n_tensors++];
  snprintf(t->name, sizeof t->name, fmt, l);
  t->ndim = ndim;
  t->shape[0] = d0;
  t->shape[1] = ndim == 2 ? d1 : 0;
  t->numel = ndim == 2 ? d0 * d1 : d0;
  t->offset = *off;
  *off += nn_round_up(t->numel);
}

/* the activation's row of the layer table */
static nnLayerKind act_kind(nnActivation a) {
  for (int k = 0; k < NN_LAYER_KINDS; k++)
    if (nn_layer_row((nnLayerKind)k)->act == (int)a) return (nnLayerKind)k;
  return NN_LAYER_RELU; /* not reached for a validated activation */
}

/* one row of the MLP and its tensors */
static void add_row(nnNet *net, int64_t *off, nnLayerKind kind, int l, int in, int out) {
  const nnLayerRow *r = nn_layer_row(kind);
  nnRow *R = &net->rows[net->n_rows++];
  *R = (nnRow){.kind = kind, .layer = l, .in = in, .out = out, .tensor = -1};
  if (r->mlp_params == NN_MLP_PARAMS_NONE) return;
  R->tensor = net->n_tensors;
  if (r->mlp_params == NN_MLP_PARAMS_WEIGHT)
    add_tensor(net, off, r->mlp_names[0], l, 2, out, in);
  else
    add_tensor(net, off, r->mlp_names[0], l, 1, out, 0);
  add_tensor(net, off, r->mlp_names[1], l, 1, out, 0);
}

/* Everything about the network that follows from its architecture, nothing allocated: dims, widths, the
 * tensor table (names, shapes, offsets in parameter order: the LSTM's, then the MLP's, each padded to 64
 * bytes) and n_params. The fields' ranges must be valid (nn_arch_validate's checks before the count). */
static void layout(const nnArch *arch, nnNet *net) {
  memset(net, 0, sizeof *net);
  net->arch = *arch;
  if (arch->unet.levels > 0) { /* a U-Net: nodes of its own, no MLP rows (nn_unet.c) */
    net->dims[0] = arch->obs_dim;
    net->out_dim = nn_arch_out_dim(arch);
    net->max_width = TK_MAX(arch->obs_dim, net->out_dim);
    int64_t off = 0;
    nn_unet_layout(arch, net, &off);
    net->n_params = off;
    return;
  }
  net->n_linear = arch->n_hidden + 1;
  net->dims[0] = arch->rnn_layers > 0 ? arch->rnn_hidden : arch->obs_dim; /* the MLP's input */
  for (int i = 0; i < arch->n_hidden; i++)
    net->dims[i + 1] = arch->hidden[i];
  net->out_dim = nn_arch_out_dim(arch);
  net->dims[net->n_linear] = net->out_dim;
  net->max_width = 0;
  for (int i = 0; i <= net->n_linear; i++)
    net->max_width = TK_MAX(net->max_width, net->dims[i]);
  int64_t off = 0;
  int64_t H = arch->rnn_hidden;
  for (int k = 0; k < arch->rnn_layers; k++) {
    int64_t in = k ? H : arch->obs_dim;
    net->lstm[k].in = (int)in;
    add_tensor(net, &off, "lstm%d.weight_ih", k, 2, 4 * H, in);
    add_tensor(net, &off, "lstm%d.weight_hh", k, 2, 4 * H, H);
    add_tensor(net, &off, "lstm%d.bias_ih", k, 1, 4 * H, 0);
    add_tensor(net, &off, "lstm%d.bias_hh", k, 1, 4 * H, 0);
  }
  /* the MLP's rows: linear (+ layernorm) + activation per hidden layer, the output linear; each row's
   * tensors from its row of the layer table */
  for (int l = 0; l < net->n_linear; l++) {
    int hidden = l < arch->n_hidden;
    add_row(net, &off, NN_LAYER_LINEAR, l, net->dims[l], net->dims[l + 1]);
    if (hidden && arch->layer_norm)
      add_row(net, &off, NN_LAYER_LAYERNORM, l, net->dims[l + 1], net->dims[l + 1]);
    if (hidden) add_row(net, &off, act_kind(arch->activation), l, net->dims[l + 1], net->dims[l + 1]);
  }
  /* fused at plan time: a row whose forward can take them runs a following layernorm, then an activation,
   * in its own pass */
  for (int i = 0; i < net->n_rows; i++) {
    if (!nn_layer_row((nnLayerKind)net->rows[i].kind)->mlp_fuse) continue;
    int k = i + 1;
    if (k < net->n_rows && net->rows[k].kind == NN_LAYER_LAYERNORM) k++;
    if (k < net->n_rows && nn_layer_row((nnLayerKind)net->rows[k].kind)->act >= 0) k++;
    net->rows[i].fuse = k - i - 1;
    i = k - 1;
  }
  net->n_params = off;
}

void nn_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
  if (ndim < 1 || ndim > 4) {
    snprintf(buf, n, "(%d dims)", ndim);
    return;
  }
  size_t k = 0;
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? ", " : "[", (long long)shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
}

int nn_arch_validate(const nnArch *a) {
  if (!a) return tk_error(TK_EINVAL, "nn arch: NULL");
  if (a->obs_dim < 1 || a->obs_dim > NN_MAX_DIM)
    return tk_error(TK_ERANGE, "nn arch: obs_dim %d not in 1..%d", a->obs_dim, NN_MAX_DIM);
  if (a->act_dim < 1 || a->act_dim > NN_MAX_DIM)
    return tk_error(TK_ERANGE, "nn arch: act_dim %d not in 1..%d", a->act_dim, NN_MAX_DIM);
  if (a->n_hidden < 0 || a->n_hidden > NN_MAX_HIDDEN)
    return tk_error(TK_ERANGE, "nn arch: %d hidden layers, at most %d", a->n_hidden, NN_MAX_HIDDEN);
  for (int i = 0; i < a->n_hidden; i++)
    if (a->hidden[i] < 1 || a->hidden[i] > NN_MAX_DIM)
      return tk_error(TK_ERANGE, "nn arch: hidden[%d] = %d not in 1..%d", i, a->hidden[i], NN_MAX_DIM);
  if ((unsigned)a->activation > NN_TANH)
    return tk_error(TK_EINVAL, "nn arch: unknown activation %d", (int)a->activation);
  if ((unsigned)a->head > NN_HEAD_GMM) return tk_error(TK_EINVAL, "nn arch: unknown head %d", (int)a->head);
  if (a->layer_norm != 0 && a->layer_norm != 1)
    return tk_error(TK_EINVAL, "nn arch: layer_norm must be 0 or 1, not %d", a->layer_norm);
  if (a->tanh != 0 && a->tanh != 1)
    return tk_error(TK_EINVAL, "nn arch: tanh must be 0 or 1, not %d", a->tanh);
  if (a->head == NN_HEAD_GMM) {
    if (a->gmm_modes < 1 || a->gmm_modes > NN_MAX_MODES)
      return tk_error(TK_ERANGE, "nn arch: gmm_modes %d not in 1..%d", a->gmm_modes, NN_MAX_MODES);
    if (!(a->gmm_min_std > 0 && a->gmm_min_std < 1e3))
      return tk_error(TK_ERANGE, "nn arch: gmm_min_std %g must be in (0, 1000)", a->gmm_min_std);
    if ((int64_t)a->gmm_modes * (2 * a->act_dim + 1) > NN_MAX_DIM)
      return tk_error(TK_ERANGE, "nn arch: GMM output %d x (2 x %d + 1) is wider than %d", a->gmm_modes,
                      a->act_dim, NN_MAX_DIM);
  }
  if (a->head == NN_HEAD_GAUSSIAN) {
    if (!(a->log_std_min >= -20 && a->log_std_max <= 10 && a->log_std_min < a->log_std_max))
      return tk_error(TK_ERANGE, "nn arch: log-std range [%g, %g] must satisfy -20 <= min < max <= 10",
                      a->log_std_min, a->log_std_max);
    if (2 * a->act_dim > NN_MAX_DIM) return tk_error(TK_ERANGE, "nn arch: act_dim %d too large", a->act_dim);
  }
  if (a->rnn_layers < 0 || a->rnn_layers > NN_MAX_RNN_LAYERS)
    return tk_error(TK_ERANGE, "nn arch: rnn_layers %d not in 0..%d", a->rnn_layers, NN_MAX_RNN_LAYERS);
  if (a->unet.levels != 0) {
    int rc = nn_unet_validate(a);
    if (rc) return rc;
  }
  if (a->rnn_layers > 0) {
    if (a->rnn_hidden < 1 || a->rnn_hidden > NN_MAX_DIM)
      return tk_error(TK_ERANGE, "nn arch: rnn_hidden %d not in 1..%d", a->rnn_hidden, NN_MAX_DIM);
    if (a->rnn_horizon < 1 || a->rnn_horizon > NN_MAX_RNN_HORIZON)
      return tk_error(TK_ERANGE, "nn arch: rnn_horizon %d not in 1..%d", a->rnn_horizon, NN_MAX_RNN_HORIZON);
  }
  /* the whole network, counted from the tensor list before anything is allocated: the first tensor
   * that takes it past NN_MAX_PARAMS is named */
  nnNet plan;
  layout(a, &plan);
  int64_t total = 0;
  for (int i = 0; i < plan.n_tensors; i++) {
    const nnTensor *t = &plan.tensors[i];
    total += t->numel;
    if (total > NN_MAX_PARAMS) {
      char shape[64];
      nn_shape_str(t->ndim, t->shape, shape, sizeof shape);
      return tk_error(TK_ERANGE,
                      "nn arch: tensor %s %s takes the network past %lld parameters (NN_MAX_PARAMS, %lld MiB "
                      "of float32)",
                      t->name, shape, (long long)NN_MAX_PARAMS, (long long)(NN_MAX_PARAMS * 4 >> 20));
    }
  }
  return 0;
}

int nn_arch_to_json(const nnArch *a, char **json) {
  if (!json) return tk_error(TK_EINVAL, "nn_arch_to_json: NULL output");
  *json = NULL;
  int rc = nn_arch_validate(a);
  if (rc) return rc;
  cJSON *o = cJSON_CreateObject();
  if (!o) return tk_error(TK_ENOMEM, "nn_arch_to_json: out of memory");
  int ok = 1;
  ok &= cJSON_AddStringToObject(o, "format", NN_ARCH_FORMAT) != NULL;
  ok &= cJSON_AddNumberToObject(o, "version", NN_ARCH_VERSION) != NULL;
  ok &= cJSON_AddNumberToObject(o, "obs_dim", a->obs_dim) != NULL;
  ok &= cJSON_AddNumberToObject(o, "act_dim", a->act_dim) != NULL;
  cJSON *h = cJSON_AddArrayToObject(o, "hidden");
  ok &= h != NULL;
  for (int i = 0; ok && i < a->n_hidden; i++) {
    cJSON *n = cJSON_CreateNumber(a->hidden[i]);
    ok &= n != NULL && cJSON_AddItemToArray(h, n);
  }
  ok &= cJSON_AddStringToObject(o, "activation", nn_activation_name(a->activation)) != NULL;
  ok &= cJSON_AddBoolToObject(o, "layer_norm", a->layer_norm) != NULL;
  ok &= cJSON_AddStringToObject(o, "head", nn_head_name(a->head)) != NULL;
  ok &= cJSON_AddBoolToObject(o, "tanh", a->tanh) != NULL;
  ok &= cJSON_AddNumberToObject(o, "gmm_modes", a->gmm_modes) != NULL;
  ok &= cJSON_AddNumberToObject(o, "gmm_min_std", a->gmm_min_std) != NULL;
  ok &= cJSON_AddNumberToObject(o, "log_std_min", a->log_std_min) != NULL;
  ok &= cJSON_AddNumberToObject(o, "log_std_max", a->log_std_max) != NULL;
  if (a->rnn_layers > 0) {
    ok &= cJSON_AddNumberToObject(o, "rnn_layers", a->rnn_layers) != NULL;
    ok &= cJSON_AddNumberToObject(o, "rnn_hidden", a->rnn_hidden) != NULL;
    ok &= cJSON_AddNumberToObject(o, "rnn_horizon", a->rnn_horizon) != NULL;
  }
  if (a->unet.levels > 0) {
    const nnUnetArch *u = &a->unet;
    cJSON *uj = cJSON_AddObjectToObject(o, "unet");
    ok &= uj != NULL && cJSON_AddItemToObject(uj, "down_dims", cJSON_CreateIntArray(u->down, u->levels)) &&
          cJSON_AddNumberToObject(uj, "kernel", u->kernel) &&
          cJSON_AddNumberToObject(uj, "groups", u->groups) &&
          cJSON_AddNumberToObject(uj, "horizon", u->horizon) && cJSON_AddNumberToObject(uj, "temb", u->temb);
  }
  char *s = ok ? cJSON_PrintUnformatted(o) : NULL;
  cJSON_Delete(o);
  if (!s) return tk_error(TK_ENOMEM, "nn_arch_to_json: out of memory");
  *json = s;
  return 0;
}

static int json_int(const cJSON *v, const char *key, int lo, int hi, int *out) {
  if (!cJSON_IsNumber(v)) return tk_error(TK_EFORMAT, "nn arch JSON: \"%s\" must be a number", key);
  double d = v->valuedouble;
  if (d != floor(d) || d < lo || d > hi)
    return tk_error(TK_ERANGE, "nn arch JSON: \"%s\" = %g must be an integer in %d..%d", key, d, lo, hi);
  *out = (int)d;
  return 0;
}

static int json_bool(const cJSON *v, const char *key, int *out) {
  if (cJSON_IsBool(v)) {
    *out = cJSON_IsTrue(v);
    return 0;
  }
  if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1)) {
    *out = (int)v->valuedouble;
    return 0;
  }
  return tk_error(TK_EFORMAT, "nn arch JSON: \"%s\" must be true or false", key);
}

static int json_num(const cJSON *v, const char *key, double *out) {
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble))
    return tk_error(TK_EFORMAT, "nn arch JSON: \"%s\" must be a finite number", key);
  *out = v->valuedouble;
  return 0;
}

/* "unet": exactly down_dims, kernel, groups, horizon, temb (sizes checked by nn_arch_validate) */
static int parse_unet(const cJSON *v, nnUnetArch *u) {
  static const char *keys[] = {"down_dims", "kernel", "groups", "horizon", "temb"};
  if (!cJSON_IsObject(v) || cJSON_GetArraySize(v) != (int)TK_ARRAY_LEN(keys))
    return tk_error(TK_EFORMAT,
                    "nn arch JSON: \"unet\" must be an object of exactly down_dims, kernel, groups, "
                    "horizon, temb");
  for (size_t i = 0; i < TK_ARRAY_LEN(keys); i++)
    if (!cJSON_GetObjectItemCaseSensitive(v, keys[i]))
      return tk_error(TK_EFORMAT, "nn arch JSON: \"unet\" has no \"%s\"", keys[i]);
  const cJSON *d = cJSON_GetObjectItemCaseSensitive(v, "down_dims");
  if (!cJSON_IsArray(d) || cJSON_GetArraySize(d) < 1 || cJSON_GetArraySize(d) > NN_UNET_MAX_LEVELS)
    return tk_error(TK_EFORMAT, "nn arch JSON: unet \"down_dims\" must be a list of 1..%d channel counts",
                    NN_UNET_MAX_LEVELS);
  u->levels = cJSON_GetArraySize(d);
  int rc = 0;
  for (int i = 0; i < u->levels && !rc; i++)
    rc = json_int(cJSON_GetArrayItem(d, i), "unet down_dims[]", 1, 4096, &u->down[i]);
  if (!rc) rc = json_int(cJSON_GetObjectItemCaseSensitive(v, "kernel"), "unet kernel", 1, 15, &u->kernel);
  if (!rc) rc = json_int(cJSON_GetObjectItemCaseSensitive(v, "groups"), "unet groups", 1, 4096, &u->groups);
  if (!rc)
    rc = json_int(cJSON_GetObjectItemCaseSensitive(v, "horizon"), "unet horizon", 1, 1024, &u->horizon);
  if (!rc) rc = json_int(cJSON_GetObjectItemCaseSensitive(v, "temb"), "unet temb", 2, 1024, &u->temb);
  return rc;
}

static int parse_arch(const cJSON *root, nnArch *a) {
  if (!cJSON_IsObject(root)) return tk_error(TK_EFORMAT, "nn arch JSON: top level must be an object");
  const char *fmt = tk_json_str(root, "format", NULL);
  if (!fmt) return tk_error(TK_EFORMAT, "nn arch JSON: missing \"format\" (want \"%s\")", NN_ARCH_FORMAT);
  if (strcmp(fmt, NN_ARCH_FORMAT))
    return tk_error(TK_EFORMAT, "nn arch JSON: format \"%s\" is not \"%s\"", fmt, NN_ARCH_FORMAT);
  const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
  if (!cJSON_IsNumber(ver)) return tk_error(TK_EFORMAT, "nn arch JSON: missing numeric \"version\"");
  if (ver->valuedouble != NN_ARCH_VERSION)
    return tk_error(TK_EVERSION, "nn arch JSON: version %g not supported (this build reads %d)",
                    ver->valuedouble, NN_ARCH_VERSION);
  static const char *required[] = {"obs_dim", "act_dim", "hidden", "head"};
  for (size_t i = 0; i < TK_ARRAY_LEN(required); i++)
    if (!cJSON_GetObjectItemCaseSensitive(root, required[i]))
      return tk_error(TK_EFORMAT, "nn arch JSON: missing \"%s\"", required[i]);
  int rc = 0;
  const cJSON *v;
  cJSON_ArrayForEach(v, root) {
    const char *k = v->string;
    if (!strcmp(k, "format") || !strcmp(k, "version")) continue;
    if (!strcmp(k, "obs_dim"))
      rc = json_int(v, k, 1, NN_MAX_DIM, &a->obs_dim);
    else if (!strcmp(k, "act_dim"))
      rc = json_int(v, k, 1, NN_MAX_DIM, &a->act_dim);
    else if (!strcmp(k, "hidden")) {
      if (!cJSON_IsArray(v))
        return tk_error(TK_EFORMAT, "nn arch JSON: \"hidden\" must be an array of widths");
      int n = cJSON_GetArraySize(v);
      if (n > NN_MAX_HIDDEN)
        return tk_error(TK_ERANGE, "nn arch JSON: %d hidden layers, at most %d", n, NN_MAX_HIDDEN);
      a->n_hidden = n;
      for (int i = 0; i < n && !rc; i++)
        rc = json_int(cJSON_GetArrayItem(v, i), "hidden[]", 1, NN_MAX_DIM, &a->hidden[i]);
    } else if (!strcmp(k, "activation") || !strcmp(k, "head")) {
      if (!cJSON_IsString(v)) return tk_error(TK_EFORMAT, "nn arch JSON: \"%s\" must be a string", k);
      const char *s = v->valuestring;
      int found = 0;
      if (k[0] == 'a') {
        for (int i = 0; i <= NN_TANH && !found; i++)
          if (!strcmp(s, nn_activation_name((nnActivation)i))) a->activation = (nnActivation)i, found = 1;
        if (!found)
          return tk_error(TK_EFORMAT, "nn arch JSON: activation \"%s\" is not relu, elu or tanh", s);
      } else {
        for (int i = 0; i <= NN_HEAD_GMM && !found; i++)
          if (!strcmp(s, nn_head_name((nnHead)i))) a->head = (nnHead)i, found = 1;
        if (!found) return tk_error(TK_EFORMAT, "nn arch JSON: head \"%s\" is not mse, gaussian or gmm", s);
      }
    } else if (!strcmp(k, "layer_norm"))
      rc = json_bool(v, k, &a->layer_norm);
    else if (!strcmp(k, "tanh"))
      rc = json_bool(v, k, &a->tanh);
    else if (!strcmp(k, "gmm_modes"))
      rc = json_int(v, k, 1, NN_MAX_MODES, &a->gmm_modes);
    else if (!strcmp(k, "gmm_min_std"))
      rc = json_num(v, k, &a->gmm_min_std);
    else if (!strcmp(k, "log_std_min"))
      rc = json_num(v, k, &a->log_std_min);
    else if (!strcmp(k, "log_std_max"))
      rc = json_num(v, k, &a->log_std_max);
    else if (!strcmp(k, "rnn_layers"))
      rc = json_int(v, k, 0, NN_MAX_RNN_LAYERS, &a->rnn_layers);
    else if (!strcmp(k, "rnn_hidden"))
      rc = json_int(v, k, 1, NN_MAX_DIM, &a->rnn_hidden);
    else if (!strcmp(k, "rnn_horizon"))
      rc = json_int(v, k, 1, NN_MAX_RNN_HORIZON, &a->rnn_horizon);
    else if (!strcmp(k, "unet"))
      rc = parse_unet(v, &a->unet);
    else
      return tk_error(TK_EFORMAT, "nn arch JSON: unknown key \"%s\"", k);
    if (rc) return rc;
  }
  return nn_arch_validate(a);
}

struct cJSON *nn_json_parse(const char *json, const char *what) {
  const char *end = NULL;
  cJSON *root = cJSON_ParseWithOpts(json, &end, 1);
  if (!root)
    tk_error(TK_EFORMAT, "%s: invalid JSON near byte %zu", what, end ? (size_t)(end - json) : (size_t)0);
  return root;
}

int nn_arch_from_json(const char *json, nnArch *out) {
  if (!json || !out) return tk_error(TK_EINVAL, "nn_arch_from_json: NULL argument");
  cJSON *root = nn_json_parse(json, "nn arch JSON");
  if (!root) return TK_EFORMAT;
  nnArch a;
  nn_arch_default(&a);
  int rc = parse_arch(root, &a);
  cJSON_Delete(root);
  if (!rc) *out = a;
  return rc;
}

/* ---- allocation and initialization ------------------------------------------------------------- */

static int g_threads = 0;

void nn_set_threads(int n) {
  if (n < 1) n = 1;
  g_threads = n;
  openblas_set_num_threads(n);
}

int nn_get_threads(void) { return g_threads > 0 ? g_threads : openblas_get_num_threads(); }

int nn_net_plan(const nnArch *arch, nnNet *plan) {
  if (!plan) return tk_error(TK_EINVAL, "nn_net_plan: NULL output");
  int rc = nn_arch_validate(arch);
  if (rc) return rc;
  layout(arch, plan);
  return 0;
}

/* Point the gradient and Adam views into base: three sections of n_params (grads, adam_m, adam_v). */
static void point_training(nnNet *net, float *base) {
  const int64_t n = net->n_params;
  net->grads = base;
  net->adam_m = base + n;
  net->adam_v = base + 2 * n;
  for (int i = 0; i < net->n_tensors; i++)
    net->tensors[i].grad = net->grads + net->tensors[i].offset;
  int ti = 0;
  for (int k = 0; k < net->arch.rnn_layers; k++, ti += 4) {
    nnLstmLayer *R = &net->lstm[k];
    const nnTensor *t = &net->tensors[ti];
    R->dw_ih = t[0].grad, R->dw_hh = t[1].grad, R->db_ih = t[2].grad, R->db_hh = t[3].grad;
  }
  for (int l = 0; l < net->n_linear; l++) {
    nnLayer *L = &net->layer[l];
    const nnTensor *t = &net->tensors[ti];
    L->dw = t[0].grad, L->db = t[1].grad;
    ti += 2;
    if (L->gain) {
      L->dgain = t[2].grad, L->dbeta = t[3].grad;
      ti += 2;
    }
  }
}

/* sections: 1 (parameters: a network to act) or 4 (and gradients, Adam's moments: to train) */
static nnNet *net_alloc(const nnArch *arch, uint64_t seed, int sections, const char *fn) {
  nnNet *net = calloc(1, sizeof *net);
  if (!net) {
    tk_error(TK_ENOMEM, "%s: out of memory", fn);
    return NULL;
  }
  if (nn_net_plan(arch, net)) {
    free(net);
    return NULL;
  }
  const int64_t off = net->n_params;
  size_t bytes = (size_t)off * (size_t)sections * sizeof(float);
  net->block_ = aligned_alloc(64, bytes);
  if (!net->block_) {
    tk_error(TK_ENOMEM, "%s: cannot allocate %zu bytes for %lld parameters", fn, bytes, (long long)off);
    nn_net_free(net);
    return NULL;
  }
  memset(net->block_, 0, bytes);
  net->params = net->block_;
  for (int i = 0; i < net->n_tensors; i++)
    net->tensors[i].data = net->params + net->tensors[i].offset;
  int ti = 0;
  for (int k = 0; k < arch->rnn_layers; k++, ti += 4) {
    nnLstmLayer *R = &net->lstm[k];
    const nnTensor *t = &net->tensors[ti];
    R->w_ih = t[0].data, R->w_hh = t[1].data, R->b_ih = t[2].data, R->b_hh = t[3].data;
  }
  for (int l = 0; l < net->n_linear; l++) {
    nnLayer *L = &net->layer[l];
    const nnTensor *t = &net->tensors[ti];
    L->w = t[0].data, L->b = t[1].data;
    ti += 2;
    if (arch->layer_norm && l < arch->n_hidden) {
      L->gain = t[2].data, L->beta = t[3].data;
      ti += 2;
    }
  }
  if (sections == 4) point_training(net, net->params + off);
  nn_net_init(net, seed);
  return net;
}

nnNet *nn_net_make(const nnArch *arch, uint64_t seed) { return net_alloc(arch, seed, 4, "nn_net_make"); }

nnNet *nn_net_make_acting(const nnArch *arch, uint64_t seed) {
  return net_alloc(arch, seed, 1, "nn_net_make_acting");
}

int nn_net_trainable(const nnNet *net) { return net && net->grads != NULL; }

int nn_net_add_training(nnNet *net) {
  if (!net) return tk_error(TK_EINVAL, "nn_net_add_training: NULL network");
  if (net->grads) return 0;
  size_t bytes = (size_t)net->n_params * 3 * sizeof(float);
  net->train_block_ = aligned_alloc(64, bytes);
  if (!net->train_block_)
    return tk_error(TK_ENOMEM, "nn_net_add_training: cannot allocate %zu bytes for %lld parameters", bytes,
                    (long long)net->n_params);
  memset(net->train_block_, 0, bytes);
  point_training(net, net->train_block_);
  net->adam_t = 0;
  return 0;
}

int nn_need_training(const nnNet *net, const char *fn) {
  if (net && !net->grads)
    return tk_error(TK_EINVAL,
                    "%s: the network was made to act (no gradients or Adam state): nn_net_add_training first",
                    fn);
  return 0;
}

void nn_net_free(nnNet *net) {
  if (!net) return;
  free(net->block_);
  free(net->train_block_);
  free(net);
}

void nn_net_init(nnNet *net, uint64_t seed) {
  tkRng r;
  tk_rng_seed(&r, seed);
  memset(net->params, 0, (size_t)net->n_params * sizeof(float));
  if (net->grads) {
    memset(net->grads, 0, (size_t)net->n_params * sizeof(float));
    memset(net->adam_m, 0, (size_t)net->n_params * 2 * sizeof(float)); /* m and v: one section pair */
  }
  /* torch.nn.LSTM.reset_parameters: every tensor uniform in +-1/sqrt(hidden_size), in parameter order */
  const nnArch *a = &net->arch;
  for (int k = 0; k < a->rnn_layers; k++) {
    double bound = 1.0 / sqrt((double)a->rnn_hidden);
    for (int q = 0; q < 4; q++) {
      const nnTensor *t = &net->tensors[4 * k + q];
      for (int64_t i = 0; i < t->numel; i++)
        t->data[i] = (float)tk_rng_range(&r, -bound, bound);
    }
  }
  for (int i = 0; i < net->n_rows; i++) {
    const nnRow *R = &net->rows[i];
    if (R->tensor < 0) continue;
    const nnTensor *t = &net->tensors[R->tensor];
    if (nn_layer_row((nnLayerKind)R->kind)->mlp_params == NN_MLP_PARAMS_GAIN) {
      for (int64_t j = 0; j < t[0].numel; j++) /* LayerNorm: gain 1, bias 0 */
        t[0].data[j] = 1.0f;
      continue;
    }
    /* torch.nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) -> bound 1/sqrt(fan_in); bias same */
    double bound = 1.0 / sqrt((double)R->in);
    for (int q = 0; q < 2; q++)
      for (int64_t j = 0; j < t[q].numel; j++)
        t[q].data[j] = (float)tk_rng_range(&r, -bound, bound);
  }
  if (a->unet.levels > 0) nn_unet_init(net, &r);
  net->adam_t = 0;
}

const nnTensor *nn_tensor_find(const nnNet *net, const char *name) {
  if (!net || !name) return NULL;
  for (int i = 0; i < net->n_tensors; i++)
    if (!strcmp(net->tensors[i].name, name)) return &net->tensors[i];
  return NULL;
}

int nn_tensor_load(nnNet *net, const char *name, int ndim, const int64_t *shape, const float *data) {
  if (!net || !name || !shape || !data) return tk_error(TK_EINVAL, "nn_tensor_load: NULL argument");
  const nnTensor *t = nn_tensor_find(net, name);
  if (!t) return tk_error(TK_ENOTFOUND, "nn: no tensor named \"%s\" in this network", name);
  if (ndim != t->ndim || shape[0] != t->shape[0] || (ndim == 2 && shape[1] != t->shape[1])) {
    char have[64], want[64];
    nn_shape_str(t->ndim, t->shape, want, sizeof want);
    nn_shape_str(ndim, shape, have, sizeof have);
    return tk_error(TK_EFORMAT, "nn: tensor \"%s\" has shape %s, the network expects %s", name, have, want);
  }
  for (int64_t i = 0; i < t->numel; i++)
    if (!isfinite(data[i]))
      return tk_error(TK_ERANGE, "nn: tensor \"%s\" element %lld is not finite", name, (long long)i);
  memcpy(t->data, data, (size_t)t->numel * sizeof(float));
  return 0;
}

static int same_arch(const nnNet *a, const nnNet *b) {
  if (a->n_params != b->n_params || a->n_linear != b->n_linear || a->arch.layer_norm != b->arch.layer_norm)
    return 0;
  if (a->arch.rnn_layers != b->arch.rnn_layers || a->arch.obs_dim != b->arch.obs_dim ||
      (a->arch.rnn_layers > 0 && a->arch.rnn_hidden != b->arch.rnn_hidden))
    return 0;
  for (int i = 0; i <= a->n_linear; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

int nn_copy_params(nnNet *dst, const nnNet *src) {
  if (!dst || !src) return tk_error(TK_EINVAL, "nn_copy_params: NULL network");
  if (!same_arch(dst, src)) return tk_error(TK_EINVAL, "nn_copy_params: architectures differ");
  memcpy(dst->params, src->params, (size_t)src->n_params * sizeof(float));
  return 0;
}

int nn_polyak(nnNet *dst, const nnNet *src, float tau) {
  if (!dst || !src) return tk_error(TK_EINVAL, "nn_polyak: NULL network");
  if (!same_arch(dst, src)) return tk_error(TK_EINVAL, "nn_polyak: architectures differ");
  if (!(tau >= 0 && tau <= 1)) return tk_error(TK_ERANGE, "nn_polyak: tau %g not in [0, 1]", (double)tau);
  float *d = dst->params;
  const float *s = src->params;
  for (int64_t i = 0; i < dst->n_params; i++)
    d[i] += tau * (s[i] - d[i]);
  return 0;
}

/* ---- work -------------------------------------------------------------------------------------- */

nnWork *nn_work_make(const nnNet *net, int max_batch) {
  if (!net) {
    tk_error(TK_EINVAL, "nn_work_make: NULL network");
    return NULL;
  }
  if (max_batch < 1 || max_batch > (1 << 24)) {
    tk_error(TK_ERANGE, "nn_work_make: max_batch %d not in 1..%d", max_batch, 1 << 24);
    return NULL;
  }
  return nn_work_alloc(net, max_batch, 1);
}

nnWork *nn_work_alloc(const nnNet *net, int max_batch, int max_T) {
  nnWork *w = calloc(1, sizeof *w);
  if (!w) {
    tk_error(TK_ENOMEM, "nn_work_make: out of memory");
    return NULL;
  }
  w->max_batch = max_batch;
  w->max_T = max_T;
  w->out_dim = net->out_dim;
  w->n_params = net->n_params;
  const nnArch *a = &net->arch;
  /* the MLP runs on B*T rows; the LSTM keeps per-step caches for T steps of B rows */
  int64_t B = (int64_t)max_batch * max_T, A = a->act_dim, Bs = max_batch, H = a->rnn_hidden;
  /* size first, then point: two passes over the same list */
  for (int pass = 0; pass < 2; pass++) {
    int64_t off = 0;
    float *base = w->block_;
#define TAKE(ptr, n)                                                                                         \
  do {                                                                                                       \
    if (pass) (ptr) = base + off;                                                                            \
    off += nn_round_up(n);                                                                                   \
  } while (0)
    /* the MLP's rows: an output each (an in-place row's is its input's, the last row's is out), their
     * scratch */
    for (int i = 0; i < net->n_rows; i++) {
      const nnRow *R = &net->rows[i];
      const nnLayerRow *r = nn_layer_row((nnLayerKind)R->kind);
      if (i == net->n_rows - 1) {
        TAKE(w->out, B * net->out_dim);
        if (pass) w->y[i] = w->out;
      } else if (r->mlp_in_place) {
        if (pass) w->y[i] = w->y[i - 1];
      } else {
        TAKE(w->y[i], B * R->out);
      }
      if (r->mlp_scratch) TAKE(w->scratch[i], B * r->mlp_scratch);
      /* the per-layer views: h after the activation, xhat and rstd of a LayerNorm */
      if (pass && R->layer < a->n_hidden) {
        w->h[R->layer] = w->y[i];
        if (R->kind == NN_LAYER_LAYERNORM) {
          w->xhat[R->layer] = w->y[i - 1];
          w->rstd[R->layer] = w->scratch[i];
        }
      }
    }
    if (a->unet.levels > 0) {
      TAKE(w->out, B * net->out_dim);
      TAKE(w->unet, nn_unet_work_floats(net, (int)B));
    }
    TAKE(w->dout, B * net->out_dim);
    TAKE(w->dbuf[0], B * net->max_width);
    TAKE(w->dbuf[1], B * net->max_width);
    TAKE(w->act, B * A);
    TAKE(w->eps, B * A);
    TAKE(w->logp, B);
    if (a->rnn_layers > 0) {
      TAKE(w->xt, B * a->obs_dim);
      for (int k = 0; k < a->rnn_layers; k++) {
        TAKE(w->gates[k], B * 4 * H);
        TAKE(w->c[k], B * H);
        TAKE(w->tc[k], B * H);
        TAKE(w->hs[k], B * H);
      }
      TAKE(w->mlp_in, B * H);
      TAKE(w->dmlp_in, B * H);
      TAKE(w->dgates, B * 4 * H);
      if (a->rnn_layers > 1) TAKE(w->dh_low, B * H);
      TAKE(w->dxt, B * a->obs_dim);
      TAKE(w->dh_rec, Bs * H);
      TAKE(w->dc, Bs * H);
      TAKE(w->dbias, 4 * H);
    }
#undef TAKE
    if (!pass) {
      size_t bytes = (size_t)off * sizeof(float);
      w->block_ = aligned_alloc(64, bytes);
      if (!w->block_) {
        tk_error(TK_ENOMEM, "nn_work_make: cannot allocate %zu bytes for %d x %d rows", bytes, max_batch,
                 max_T);
        nn_work_free(w);
        return NULL;
      }
      memset(w->block_, 0, bytes);
    }
  }
  return w;
}

void nn_work_free(nnWork *w) {
  if (!w) return;
  free(w->block_);
  free(w);
}

int nn_refuse_rnn(const nnNet *net, const char *fn) {
  if (net && net->arch.rnn_layers > 0)
    return tk_error(TK_EINVAL,
                    "%s: the network is recurrent (rnn_layers %d): use nn_seq_forward/nn_seq_loss/"
                    "nn_seq_act/nn_seq_train_step or nn_rnn_step",
                    fn, net->arch.rnn_layers);
  return 0;
}

int nn_check_batch(const nnNet *net, const nnWork *w, const float *x, int B) {
  if (!net || !w || !x) return tk_error(TK_EINVAL, "nn: NULL network, work or input");
  if (w->out_dim != net->out_dim || w->n_params != net->n_params)
    return tk_error(TK_EINVAL, "nn: the work was made for another network");
  if (B < 1 || B > w->max_batch)
    return tk_error(TK_ERANGE, "nn: batch %d not in 1..%d (the work's max_batch)", B, w->max_batch);
  return 0;
}
