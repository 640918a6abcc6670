/* nn/nn_enc.c -- image encoders: architecture (validation, shapes, JSON), layout and allocation, the work
 * (per-batch-size primitives, buffers), forward and backward through the layer table (nn_layer.c), Adam.
 *
 * Layouts: the input and every activation a plain-input row reads are plain (NCHW / row-major); a conv's
 * output is in the layout oneDNN chose (usually channels blocked by 16), relu works on it in place, and a
 * plain-input row (spatial_softmax, flatten, linear) gets a plain copy made by a reorder (its input
 * gradient is reordered back). Buffers for activations are sized for max_batch with channels padded to
 * 16 (oneDNN's widest f32 block); nn_conv_make checks that the chosen layout fits.
 * Batch sizes: the first call with a batch size makes its primitives (oneDNN's JIT, a few ms per conv)
 * and keeps them; a work holds NN_ENC_MAX_BATCH_SIZES of them, and a call with one more size is refused
 * (TK_ERANGE): nothing is evicted, so a training loop never re-makes primitives or allocates. */
#include <cjson/cJSON.h>
#include <math.h>
#include <omp.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"

#define NN_ENC_MAX_ACT ((int64_t)1 << 26) /* values per image of any activation at most */
#define NN_ENC_MAX_WORK_BATCH 65536

int64_t nn_shape_numel(const nnShape *s) {
  if (!s || s->ndim < 1 || s->ndim > 4) return 0;
  int64_t n = 1;
  for (int k = 0; k < s->ndim; k++)
    n *= s->d[k];
  return n;
}

/* floats per image of a shape in the widest blocked layout (channels of a [C, H, W] padded to 16) */
static int64_t padded_numel(const nnShape *s) {
  if (s->ndim != 3) return nn_shape_numel(s);
  return (s->d[0] + 15) / 16 * 16 * s->d[1] * s->d[2];
}

/* ---- architecture ------------------------------------------------------------------------------------ */

void nn_enc_arch_default(nnEncArch *a, int channels, int height, int width_px, int width) {
  memset(a, 0, sizeof *a);
  a->channels = channels, a->height = height, a->width = width_px;
  const nnLayerSpec L[] = {
      {NN_LAYER_CONV, width, 3, 2, 0},         {NN_LAYER_RELU, 0, 0, 0, 0},
      {NN_LAYER_CONV, width, 3, 1, 0},         {NN_LAYER_RELU, 0, 0, 0, 0},
      {NN_LAYER_CONV, 2 * width, 3, 2, 0},     {NN_LAYER_RELU, 0, 0, 0, 0},
      {NN_LAYER_CONV, 2 * width, 3, 1, 0},     {NN_LAYER_RELU, 0, 0, 0, 0},
      {NN_LAYER_SPATIAL_SOFTMAX, 32, 0, 0, 0}, {NN_LAYER_LINEAR, 64, 0, 0, 0},
  };
  a->nlayers = (int)TK_ARRAY_LEN(L);
  for (int i = 0; i < a->nlayers; i++)
    a->layer[i] = L[i];
}

static const char *field_name(unsigned f) {
  return f == NN_FIELD_OUT      ? "out"
         : f == NN_FIELD_KERNEL ? "kernel"
         : f == NN_FIELD_STRIDE ? "stride"
                                : "pad";
}

static int spec_field(const nnLayerSpec *s, unsigned f) {
  return f == NN_FIELD_OUT      ? s->out
         : f == NN_FIELD_KERNEL ? s->kernel
         : f == NN_FIELD_STRIDE ? s->stride
                                : s->pad;
}

static void set_field(nnLayerSpec *s, unsigned f, int v) {
  if (f == NN_FIELD_OUT)
    s->out = v;
  else if (f == NN_FIELD_KERNEL)
    s->kernel = v;
  else if (f == NN_FIELD_STRIDE)
    s->stride = v;
  else
    s->pad = v;
}

static const unsigned all_fields[] = {NN_FIELD_OUT, NN_FIELD_KERNEL, NN_FIELD_STRIDE, NN_FIELD_PAD};

/* Everything that follows from the architecture, nothing allocated: shapes, tensors (in layer order,
 * weight then bias, each padded to 64 bytes), n_params. The architecture's shapes must be valid. */
static void enc_layout(const nnEncArch *a, const nnShape *shapes, nnEnc *e) {
  memset(e, 0, sizeof *e);
  e->arch = *a;
  for (int i = 0; i <= a->nlayers; i++)
    e->shape[i] = shapes[i];
  e->out_dim = (int)nn_shape_numel(&shapes[a->nlayers]);
  int64_t off = 0;
  for (int i = 0; i < a->nlayers; i++) {
    const nnLayerRow *r = nn_layer_row(a->layer[i].kind);
    if (!r->has_params) continue;
    nnTensor *w = &e->tensors[e->n_tensors++], *b = &e->tensors[e->n_tensors++];
    int64_t fan_in;
    r->params(&a->layer[i], &shapes[i], w, b, &fan_in);
    snprintf(w->name, sizeof w->name, "%s%d.weight", r->name, i);
    snprintf(b->name, sizeof b->name, "%s%d.bias", r->name, i);
    nnTensor *t[2] = {w, b};
    for (int k = 0; k < 2; k++) {
      t[k]->numel = 1;
      for (int d = 0; d < t[k]->ndim; d++)
        t[k]->numel *= t[k]->shape[d];
      t[k]->offset = off;
      off += nn_round_up(t[k]->numel);
    }
  }
  e->n_params = off;
}

/* the per-sample shapes (shapes[0..nlayers]) with every check of nn_enc_arch_validate but the count */
static int arch_shapes(const nnEncArch *a, nnShape *shapes) {
  if (!a) return tk_error(TK_EINVAL, "nn enc arch: NULL");
  if (a->channels < 1 || a->channels > NN_MAX_DIM)
    return tk_error(TK_ERANGE, "nn enc arch: input channels %d not in 1..%d", a->channels, NN_MAX_DIM);
  if (a->height < 1 || a->height > NN_MAX_IMAGE_SIDE)
    return tk_error(TK_ERANGE, "nn enc arch: input height %d not in 1..%d (NN_MAX_IMAGE_SIDE)", a->height,
                    NN_MAX_IMAGE_SIDE);
  if (a->width < 1 || a->width > NN_MAX_IMAGE_SIDE)
    return tk_error(TK_ERANGE, "nn enc arch: input width %d not in 1..%d (NN_MAX_IMAGE_SIDE)", a->width,
                    NN_MAX_IMAGE_SIDE);
  if (a->nlayers < 1 || a->nlayers > NN_MAX_ENC_LAYERS)
    return tk_error(TK_ERANGE, "nn enc arch: %d layers, not in 1..%d", a->nlayers, NN_MAX_ENC_LAYERS);
  shapes[0] = (nnShape){3, {a->channels, a->height, a->width, 0}};
  for (int i = 0; i < a->nlayers; i++) {
    const nnLayerSpec *s = &a->layer[i];
    const nnLayerRow *r = nn_layer_row(s->kind);
    if (!r) return tk_error(TK_EINVAL, "nn enc arch: layer %d: unknown kind %d", i, (int)s->kind);
    if (!r->forward)
      return tk_error(TK_EINVAL, "nn enc arch: layer %d (%s): a trunk layer, not one of an image encoder", i,
                      r->name);
    for (size_t f = 0; f < TK_ARRAY_LEN(all_fields); f++)
      if (!(r->fields & all_fields[f]) && spec_field(s, all_fields[f]) != 0)
        return tk_error(TK_EINVAL, "nn enc arch: layer %d (%s): %s is %d, but %s has no %s (leave it 0)", i,
                        r->name, field_name(all_fields[f]), spec_field(s, all_fields[f]), r->name,
                        field_name(all_fields[f]));
    int rc = r->shape(s, &shapes[i], &shapes[i + 1], i);
    if (rc) return rc;
    if (nn_shape_numel(&shapes[i + 1]) > NN_ENC_MAX_ACT) {
      char sh[80];
      nn_shape_str(shapes[i + 1].ndim, shapes[i + 1].d, sh, sizeof sh);
      return tk_error(TK_ERANGE, "nn enc arch: layer %d (%s): output %s has more than %lld values per image",
                      i, r->name, sh, (long long)NN_ENC_MAX_ACT);
    }
  }
  if (nn_shape_numel(&shapes[a->nlayers]) > NN_MAX_DIM)
    return tk_error(TK_ERANGE, "nn enc arch: the output has %lld features, more than %d",
                    (long long)nn_shape_numel(&shapes[a->nlayers]), NN_MAX_DIM);
  return 0;
}

int nn_enc_arch_validate(const nnEncArch *a) {
  nnShape shapes[NN_MAX_ENC_LAYERS + 1];
  int rc = arch_shapes(a, shapes);
  if (rc) return rc;
  /* counted tensor by tensor from the layout (nothing allocated): the tensor that passes the bound is named
   */
  nnEnc *plan = malloc(sizeof *plan);
  if (!plan) return tk_error(TK_ENOMEM, "nn enc arch: out of memory");
  enc_layout(a, shapes, plan);
  int64_t total = 0;
  for (int k = 0; k < plan->n_tensors && !rc; k++) {
    const nnTensor *t = &plan->tensors[k];
    total += t->numel;
    if (total > NN_MAX_PARAMS) {
      char sh[80];
      nn_shape_str(t->ndim, t->shape, sh, sizeof sh);
      rc = tk_error(TK_ERANGE,
                    "nn enc arch: tensor %s %s takes the encoder past %lld parameters (NN_MAX_PARAMS)",
                    t->name, sh, (long long)NN_MAX_PARAMS);
    }
  }
  free(plan);
  return rc;
}

int nn_enc_arch_shapes(const nnEncArch *a, nnShape *shapes) {
  if (!shapes) return tk_error(TK_EINVAL, "nn_enc_arch_shapes: NULL output");
  nnShape s[NN_MAX_ENC_LAYERS + 1];
  int rc = nn_enc_arch_validate(a);
  if (!rc) rc = arch_shapes(a, s);
  if (rc) return rc;
  for (int i = 0; i <= a->nlayers; i++)
    shapes[i] = s[i];
  return 0;
}

int nn_enc_out_dim(const nnEncArch *a) {
  nnShape s[NN_MAX_ENC_LAYERS + 1];
  int rc = nn_enc_arch_shapes(a, s);
  return rc ? rc : (int)nn_shape_numel(&s[a->nlayers]);
}

/* ---- JSON form ------------------------------------------------------------------------------------------
 */

int nn_enc_arch_to_json(const nnEncArch *a, char **json) {
  if (!json) return tk_error(TK_EINVAL, "nn_enc_arch_to_json: NULL output");
  *json = NULL;
  int rc = nn_enc_arch_validate(a);
  if (rc) return rc;
  cJSON *root = cJSON_CreateObject(), *in = cJSON_CreateArray(), *layers = cJSON_CreateArray();
  int ok = root && in && layers;
  if (ok) {
    cJSON_AddItemToObject(root, "input", in);
    cJSON_AddItemToObject(root, "layers", layers);
    const int d[3] = {a->channels, a->height, a->width};
    for (int k = 0; k < 3 && ok; k++)
      ok = cJSON_AddItemToArray(in, cJSON_CreateNumber(d[k]));
    for (int i = 0; i < a->nlayers && ok; i++) {
      const nnLayerRow *r = nn_layer_row(a->layer[i].kind);
      cJSON *o = cJSON_CreateObject();
      ok = o && cJSON_AddItemToArray(layers, o) && cJSON_AddStringToObject(o, "type", r->name);
      for (size_t f = 0; f < TK_ARRAY_LEN(all_fields) && ok; f++)
        if (r->fields & all_fields[f])
          ok = cJSON_AddNumberToObject(o, field_name(all_fields[f]),
                                       spec_field(&a->layer[i], all_fields[f])) != NULL;
    }
  } else {
    cJSON_Delete(in);
    cJSON_Delete(layers);
  }
  if (ok) *json = cJSON_PrintUnformatted(root);
  cJSON_Delete(root);
  if (!*json) return tk_error(TK_ENOMEM, "nn_enc_arch_to_json: out of memory");
  return 0;
}

/* an exact int in [lo, hi] */
static int json_int(const cJSON *v, const char *where, const char *key, int lo, int hi, int *out) {
  if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble != floor(v->valuedouble) ||
      v->valuedouble < lo || v->valuedouble > hi)
    return tk_error(TK_EFORMAT, "nn enc arch JSON: %s\"%s\" must be an integer in %d..%d", where, key, lo,
                    hi);
  *out = (int)v->valuedouble;
  return 0;
}

static int duplicate_key(const cJSON *obj, const char *where) {
  for (const cJSON *a = obj->child; a; a = a->next)
    for (const cJSON *b = a->next; b; b = b->next)
      if (!strcmp(a->string, b->string))
        return tk_error(TK_EFORMAT, "nn enc arch JSON: %s\"%s\" is given twice", where, a->string);
  return 0;
}

static int parse_layer(const cJSON *o, int i, nnLayerSpec *s) {
  char where[48];
  snprintf(where, sizeof where, "layers[%d]: ", i);
  if (!cJSON_IsObject(o)) return tk_error(TK_EFORMAT, "nn enc arch JSON: layers[%d] is not an object", i);
  int rc = duplicate_key(o, where);
  if (rc) return rc;
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
  if (!t) return tk_error(TK_EFORMAT, "nn enc arch JSON: layers[%d]: missing \"type\"", i);
  if (!cJSON_IsString(t))
    return tk_error(TK_EFORMAT, "nn enc arch JSON: layers[%d]: \"type\" must be a string", i);
  const nnLayerRow *r = NULL;
  for (int k = 0; k < NN_LAYER_KINDS && !r; k++)
    if (nn_layer_row((nnLayerKind)k)->forward &&
        !strcmp(nn_layer_row((nnLayerKind)k)->name, t->valuestring)) {
      r = nn_layer_row((nnLayerKind)k);
      s->kind = (nnLayerKind)k;
    }
  if (!r)
    return tk_error(
        TK_EFORMAT,
        "nn enc arch JSON: layers[%d]: unknown type \"%s\" (conv, relu, spatial_softmax, flatten, linear)", i,
        t->valuestring);
  snprintf(where, sizeof where, "layers[%d] (%s): ", i, r->name);
  for (const cJSON *v = o->child; v; v = v->next) {
    if (!strcmp(v->string, "type")) continue;
    unsigned f = 0;
    for (size_t k = 0; k < TK_ARRAY_LEN(all_fields); k++)
      if (!strcmp(v->string, field_name(all_fields[k]))) f = all_fields[k];
    if (!f) return tk_error(TK_EFORMAT, "nn enc arch JSON: %sunknown key \"%s\"", where, v->string);
    if (!(r->fields & f)) {
      const char *owner = "another kind";
      for (int k = 0; k < NN_LAYER_KINDS; k++)
        if (nn_layer_row((nnLayerKind)k)->fields & f) {
          owner = nn_layer_row((nnLayerKind)k)->name;
          break;
        }
      return tk_error(TK_EFORMAT, "nn enc arch JSON: %s\"%s\" is a field of %s, not of %s", where, v->string,
                      owner, r->name);
    }
    int val;
    if ((rc = json_int(v, where, v->string, f == NN_FIELD_PAD ? 0 : 1,
                       f == NN_FIELD_OUT ? NN_MAX_DIM : NN_MAX_IMAGE_SIDE, &val)))
      return rc;
    set_field(s, f, val);
  }
  for (size_t k = 0; k < TK_ARRAY_LEN(all_fields); k++)
    if ((r->fields & all_fields[k]) && !cJSON_GetObjectItemCaseSensitive(o, field_name(all_fields[k])))
      return tk_error(TK_EFORMAT, "nn enc arch JSON: %smissing \"%s\"", where, field_name(all_fields[k]));
  return 0;
}

static int parse_enc(const cJSON *root, nnEncArch *a) {
  if (!cJSON_IsObject(root)) return tk_error(TK_EFORMAT, "nn enc arch JSON: not an object");
  int rc = duplicate_key(root, "");
  if (rc) return rc;
  for (const cJSON *v = root->child; v; v = v->next)
    if (strcmp(v->string, "input") && strcmp(v->string, "layers"))
      return tk_error(TK_EFORMAT, "nn enc arch JSON: unknown key \"%s\" (known: input, layers)", v->string);
  const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "input");
  const cJSON *layers = cJSON_GetObjectItemCaseSensitive(root, "layers");
  if (!in) return tk_error(TK_EFORMAT, "nn enc arch JSON: missing \"input\"");
  if (!layers) return tk_error(TK_EFORMAT, "nn enc arch JSON: missing \"layers\"");
  if (!cJSON_IsArray(in) || cJSON_GetArraySize(in) != 3)
    return tk_error(TK_EFORMAT, "nn enc arch JSON: \"input\" must be [channels, height, width]");
  int *d[3] = {&a->channels, &a->height, &a->width};
  const int hi[3] = {NN_MAX_DIM, NN_MAX_IMAGE_SIDE, NN_MAX_IMAGE_SIDE};
  for (int k = 0; k < 3; k++)
    if ((rc = json_int(cJSON_GetArrayItem(in, k), "",
                       k == 0   ? "input[0] (channels)"
                       : k == 1 ? "input[1] (height)"
                                : "input[2] (width)",
                       1, hi[k], d[k])))
      return rc;
  if (!cJSON_IsArray(layers)) return tk_error(TK_EFORMAT, "nn enc arch JSON: \"layers\" must be an array");
  int n = cJSON_GetArraySize(layers);
  if (n < 1 || n > NN_MAX_ENC_LAYERS)
    return tk_error(TK_ERANGE, "nn enc arch JSON: %d layers, not in 1..%d", n, NN_MAX_ENC_LAYERS);
  a->nlayers = n;
  for (int i = 0; i < n; i++)
    if ((rc = parse_layer(cJSON_GetArrayItem(layers, i), i, &a->layer[i]))) return rc;
  return nn_enc_arch_validate(a);
}

int nn_enc_arch_from_json(const char *json, nnEncArch *out) {
  if (!json || !out) return tk_error(TK_EINVAL, "nn_enc_arch_from_json: NULL argument");
  cJSON *root = nn_json_parse(json, "nn enc arch JSON");
  if (!root) return TK_EFORMAT;
  nnEncArch a;
  memset(&a, 0, sizeof a);
  int rc = parse_enc(root, &a);
  cJSON_Delete(root);
  if (!rc) *out = a;
  return rc;
}

/* ---- the encoder: layout, allocation, initialization ------------------------------------------------- */

int nn_enc_plan(const nnEncArch *a, nnEnc *plan) {
  if (!plan) return tk_error(TK_EINVAL, "nn_enc_plan: NULL output");
  nnShape shapes[NN_MAX_ENC_LAYERS + 1];
  int rc = nn_enc_arch_validate(a);
  if (!rc) rc = arch_shapes(a, shapes);
  if (rc) return rc;
  enc_layout(a, shapes, plan);
  return 0;
}

static void point_training(nnEnc *e, float *base) {
  const int64_t n = e->n_params;
  e->grads = base, e->adam_m = base + n, e->adam_v = base + 2 * n;
  for (int k = 0; k < e->n_tensors; k++)
    e->tensors[k].grad = e->grads + e->tensors[k].offset;
}

static void enc_init(nnEnc *e, uint64_t seed) {
  tkRng r;
  tk_rng_seed(&r, seed);
  memset(e->params, 0, sizeof(float) * (size_t)e->n_params);
  int ti = 0;
  for (int i = 0; i < e->arch.nlayers; i++) {
    const nnLayerRow *row = nn_layer_row(e->arch.layer[i].kind);
    if (!row->has_params) continue;
    nnTensor w, b;
    int64_t fan_in;
    row->params(&e->arch.layer[i], &e->shape[i], &w, &b, &fan_in);
    /* torch's Conv2d / Linear reset_parameters: kaiming_uniform_(a=sqrt(5)) -> bound 1/sqrt(fan_in), bias
     * same */
    double bound = 1.0 / sqrt((double)fan_in);
    for (int k = 0; k < 2; k++, ti++) {
      const nnTensor *t = &e->tensors[ti];
      for (int64_t j = 0; j < t->numel; j++)
        t->data[j] = (float)tk_rng_range(&r, -bound, bound);
    }
  }
  e->adam_t = 0;
}

static nnEnc *enc_alloc(const nnEncArch *a, uint64_t seed, int sections, const char *fn) {
  nnEnc *e = calloc(1, sizeof *e);
  if (!e) {
    tk_error(TK_ENOMEM, "%s: out of memory", fn);
    return NULL;
  }
  if (nn_enc_plan(a, e)) {
    free(e);
    return NULL;
  }
  size_t bytes = (size_t)e->n_params * (size_t)sections * sizeof(float);
  e->block_ = aligned_alloc(64, bytes ? bytes : 64);
  if (!e->block_) {
    tk_error(TK_ENOMEM, "%s: cannot allocate %zu bytes for %lld parameters", fn, bytes,
             (long long)e->n_params);
    free(e);
    return NULL;
  }
  memset(e->block_, 0, bytes);
  e->params = e->block_;
  for (int k = 0; k < e->n_tensors; k++)
    e->tensors[k].data = e->params + e->tensors[k].offset;
  if (sections == 4) point_training(e, e->params + e->n_params);
  enc_init(e, seed);
  return e;
}

nnEnc *nn_enc_make(const nnEncArch *a, uint64_t seed) { return enc_alloc(a, seed, 4, "nn_enc_make"); }
nnEnc *nn_enc_make_acting(const nnEncArch *a, uint64_t seed) {
  return enc_alloc(a, seed, 1, "nn_enc_make_acting");
}

int nn_enc_add_training(nnEnc *e) {
  if (!e) return tk_error(TK_EINVAL, "nn_enc_add_training: NULL encoder");
  if (e->grads) return 0;
  size_t bytes = (size_t)e->n_params * 3 * sizeof(float);
  e->train_block_ = aligned_alloc(64, bytes ? bytes : 64);
  if (!e->train_block_)
    return tk_error(TK_ENOMEM, "nn_enc_add_training: cannot allocate %zu bytes for %lld parameters", bytes,
                    (long long)e->n_params);
  memset(e->train_block_, 0, bytes);
  point_training(e, e->train_block_);
  e->adam_t = 0;
  return 0;
}

void nn_enc_free(nnEnc *e) {
  if (!e) return;
  free(e->block_);
  free(e->train_block_);
  free(e);
}

const nnTensor *nn_enc_tensor_find(const nnEnc *e, const char *name) {
  if (!e || !name) return NULL;
  for (int k = 0; k < e->n_tensors; k++)
    if (!strcmp(e->tensors[k].name, name)) return &e->tensors[k];
  return NULL;
}

static int same_arch(const nnEncArch *a, const nnEncArch *b) {
  if (a->channels != b->channels || a->height != b->height || a->width != b->width ||
      a->nlayers != b->nlayers)
    return 0;
  for (int i = 0; i < a->nlayers; i++) {
    const nnLayerSpec *x = &a->layer[i], *y = &b->layer[i];
    if (x->kind != y->kind || x->out != y->out || x->kernel != y->kernel || x->stride != y->stride ||
        x->pad != y->pad)
      return 0;
  }
  return 1;
}

int nn_enc_copy_params(nnEnc *dst, const nnEnc *src) {
  if (!dst || !src) return tk_error(TK_EINVAL, "nn_enc_copy_params: NULL encoder");
  if (!same_arch(&dst->arch, &src->arch))
    return tk_error(TK_EINVAL, "nn_enc_copy_params: architectures differ");
  memcpy(dst->params, src->params, sizeof(float) * (size_t)src->n_params);
  return 0;
}

/* ---- the work
 * ----------------------------------------------------------------------------------------------- */

/* may activation i arrive in a blocked layout? (a conv's output, through in-place rows) */
static void maybe_blocked(const nnEncArch *a, int *mb) {
  mb[0] = 0;
  for (int i = 0; i < a->nlayers; i++) {
    const nnLayerRow *r = nn_layer_row(a->layer[i].kind);
    mb[i + 1] = a->layer[i].kind == NN_LAYER_CONV ? 1 : (r->in_place && !r->plain_in) ? mb[i] : 0;
  }
}

/* capacity in floats of layer i's own output buffer */
static int64_t obuf_floats(const nnEnc *e, int i, int max_batch) {
  const nnShape *s = &e->shape[i + 1];
  return (int64_t)max_batch * (e->arch.layer[i].kind == NN_LAYER_CONV ? padded_numel(s) : nn_shape_numel(s));
}

nnEncWork *nn_enc_work_make(const nnEnc *e, int max_batch) {
  if (!e) {
    tk_error(TK_EINVAL, "nn_enc_work_make: NULL encoder");
    return NULL;
  }
  if (max_batch < 1 || max_batch > NN_ENC_MAX_WORK_BATCH) {
    tk_error(TK_ERANGE, "nn_enc_work_make: max_batch %d not in 1..%d", max_batch, NN_ENC_MAX_WORK_BATCH);
    return NULL;
  }
  nnEncWork *w = calloc(1, sizeof *w);
  if (!w) {
    tk_error(TK_ENOMEM, "nn_enc_work_make: out of memory");
    return NULL;
  }
  w->max_batch = max_batch;
  w->n_params = e->n_params;
  w->arch = e->arch;
  if (nn_dnn_status(dnnl_engine_create(&w->eng, dnnl_cpu, 0), "engine") ||
      nn_dnn_status(dnnl_stream_create(&w->st, w->eng, dnnl_stream_default_flags), "stream")) {
    nn_enc_work_free(w);
    return NULL;
  }
  const nnEncArch *a = &e->arch;
  const int L = a->nlayers;
  int mb[NN_MAX_ENC_LAYERS + 1];
  maybe_blocked(a, mb);
  int64_t gmax = 0, gplain = 0, wmax = 0, B = max_batch;
  for (int i = 1; i <= L; i++)
    gmax = TK_MAX(gmax, B * (mb[i] ? padded_numel(&e->shape[i]) : nn_shape_numel(&e->shape[i])));
  for (int i = 0; i < L; i++) {
    const nnLayerRow *r = nn_layer_row(a->layer[i].kind);
    if (i > 0 && r->plain_in && mb[i]) gplain = TK_MAX(gplain, B * nn_shape_numel(&e->shape[i]));
    if (a->layer[i].kind == NN_LAYER_CONV)
      wmax =
          TK_MAX(wmax, (int64_t)a->layer[i].out * e->shape[i].d[0] * a->layer[i].kernel * a->layer[i].kernel);
  }
  /* size first, then point: two passes over the same list */
  for (int pass = 0; pass < 2; pass++) {
    int64_t off = 0;
    float *base = w->block_;
#define TAKE(ptr, n)                                                                                         \
  do {                                                                                                       \
    if (pass) (ptr) = base + off;                                                                            \
    off += nn_round_up(n);                                                                                   \
  } while (0)
    for (int i = 0; i < L; i++) {
      const nnLayerRow *r = nn_layer_row(a->layer[i].kind);
      if (!r->in_place || i == 0) TAKE(w->obuf[i], obuf_floats(e, i, max_batch));
      if (r->plain_in && mb[i]) TAKE(w->pin[i], B * nn_shape_numel(&e->shape[i]));
      if (r->scratch) TAKE(w->scratch[i], (B + 1) * r->scratch(&a->layer[i], &e->shape[i], &e->shape[i + 1]));
    }
    TAKE(w->g[0], gmax);
    TAKE(w->g[1], gmax);
    if (gplain) TAKE(w->gplain, gplain);
    if (wmax) TAKE(w->tmpw, wmax);
#undef TAKE
    if (!pass) {
      size_t bytes = (size_t)off * sizeof(float);
      w->block_ = aligned_alloc(64, bytes ? bytes : 64);
      if (!w->block_) {
        tk_error(TK_ENOMEM, "nn_enc_work_make: cannot allocate %zu bytes for %d images", bytes, max_batch);
        nn_enc_work_free(w);
        return NULL;
      }
      memset(w->block_, 0, bytes);
    }
  }
  return w;
}

static void size_free(nnEncSize *z) {
  for (int i = 0; i < NN_MAX_ENC_LAYERS; i++) {
    nn_conv_free(z->conv[i]);
    z->conv[i] = NULL;
  }
  for (int i = 0; i <= NN_MAX_ENC_LAYERS; i++) {
    nn_dnn_op_free(&z->to_plain[i]);
    nn_dnn_op_free(&z->from_plain[i]);
  }
}

void nn_enc_work_free(nnEncWork *w) {
  if (!w) return;
  for (int k = 0; k < w->nsizes; k++)
    size_free(&w->size[k]);
  if (w->st) dnnl_stream_destroy(w->st);
  if (w->eng) dnnl_engine_destroy(w->eng);
  free(w->block_);
  free(w);
}

static void plain_layout(nnActLayout *l, int B, const nnShape *s) {
  l->plain = 1;
  l->floats = (int64_t)B * nn_shape_numel(s);
  if (s->ndim == 3) nn_dnn_plain_md(&l->md, B, s);
}

/* the reorders between act i's blocked layout and plain, both ways */
static int boundary(nnEncWork *w, nnEncSize *z, int i, const nnShape *s) {
  dnnl_memory_desc_t plain;
  int rc = nn_dnn_plain_md(&plain, z->B, s);
  if (!rc) rc = nn_dnn_reorder_make(w, &z->act[i].md, &plain, &z->to_plain[i]);
  if (!rc) rc = nn_dnn_reorder_make(w, &plain, &z->act[i].md, &z->from_plain[i]);
  return rc;
}

/* the primitives and layouts for batch B (the caller has set one OpenMP thread) */
static int size_make(const nnEnc *e, nnEncWork *w, int B, const char *fn, nnEncSize **res) {
  if (w->nsizes == NN_ENC_MAX_BATCH_SIZES) {
    char have[64] = "";
    for (int k = 0; k < w->nsizes; k++)
      snprintf(have + strlen(have), sizeof have - strlen(have), "%s%d", k ? ", " : "", w->size[k].B);
    return tk_error(TK_ERANGE,
                    "%s: batch %d would be this work's %dth batch size (it has primitives for %s; at most "
                    "NN_ENC_MAX_BATCH_SIZES = %d): use fewer batch sizes or another work",
                    fn, B, w->nsizes + 1, have, NN_ENC_MAX_BATCH_SIZES);
  }
  nnEncSize *z = &w->size[w->nsizes];
  memset(z, 0, sizeof *z);
  z->B = B;
  const nnEncArch *a = &e->arch;
  const int L = a->nlayers;
  int rc = 0;
  plain_layout(&z->act[0], B, &e->shape[0]);
  for (int i = 0; i < L && !rc; i++) {
    const nnLayerRow *r = nn_layer_row(a->layer[i].kind);
    nnActLayout in = z->act[i], *out = &z->act[i + 1];
    if (r->plain_in && !in.plain) {
      if ((rc = boundary(w, z, i, &e->shape[i]))) break;
      plain_layout(&in, B, &e->shape[i]);
    }
    if (a->layer[i].kind == NN_LAYER_CONV)
      rc = nn_conv_make(w, e, i, B, &in, out, obuf_floats(e, i, w->max_batch), i > 0, &z->conv[i]);
    else if (r->in_place && e->shape[i + 1].ndim == e->shape[i].ndim)
      *out = in;
    else
      plain_layout(out, B, &e->shape[i + 1]);
  }
  if (!rc && !z->act[L].plain) rc = boundary(w, z, L, &e->shape[L]);
  if (rc) {
    size_free(z);
    return rc;
  }
  w->nsizes++;
  *res = z;
  return 0;
}

/* ---- forward and backward ------------------------------------------------------------------------------ */

static int check_work(const nnEnc *e, const nnEncWork *w, const char *fn) {
  if (!e || !w) return tk_error(TK_EINVAL, "%s: NULL encoder or work", fn);
  if (w->n_params != e->n_params || !same_arch(&w->arch, &e->arch))
    return tk_error(TK_EINVAL, "%s: the work was made for another encoder architecture", fn);
  return 0;
}

/* oneDNN runs on one OpenMP thread of the calling thread; the caller's setting is put back after */
static int omp_one(void) {
  int prev = omp_get_max_threads();
  if (prev != 1) omp_set_num_threads(1);
  return prev;
}

static void omp_back(int prev) {
  if (prev != 1) omp_set_num_threads(prev);
}

static int dnn_result(nnEncWork *w, const char *fn) {
  dnnl_status_t st = dnnl_stream_wait(w->st);
  if (w->err != dnnl_success) st = w->err;
  if (st != dnnl_success) {
    w->stage = NN_STAGE_NONE;
    return tk_error(TK_EIO, "%s: oneDNN failed: %s", fn, dnnl_status2str(st));
  }
  return 0;
}

/* the tensor index of layer i's weight (layers with parameters only) */
static int layer_tensor(const nnEnc *e, int i) {
  int t = 0;
  for (int k = 0; k < i; k++)
    if (nn_layer_row(e->arch.layer[k].kind)->has_params) t += 2;
  return t;
}

int nn_enc_forward(const nnEnc *e, nnEncWork *w, const float *x, int B, float *feat) {
  const char *fn = "nn_enc_forward";
  int rc = check_work(e, w, fn);
  if (rc) return rc;
  if (!x || !feat) return tk_error(TK_EINVAL, "%s: NULL input or output", fn);
  if (B < 1 || B > w->max_batch)
    return tk_error(TK_ERANGE, "%s: batch %d not in 1..%d (the work's max_batch)", fn, B, w->max_batch);
  w->stage = NN_STAGE_NONE;
  int prev = omp_one();
  nnEncSize *z = NULL;
  for (int k = 0; k < w->nsizes && !z; k++)
    if (w->size[k].B == B) z = &w->size[k];
  if (!z && (rc = size_make(e, w, B, fn, &z))) {
    omp_back(prev);
    return rc;
  }
  w->err = dnnl_success;
  const int L = e->arch.nlayers;
  const float *cur = x;
  for (int i = 0; i < L; i++) {
    const nnLayerRow *r = nn_layer_row(e->arch.layer[i].kind);
    const float *in = cur;
    if (r->plain_in && !z->act[i].plain) {
      nn_dnn_reorder_run(w, &z->to_plain[i], cur, w->pin[i]);
      in = w->pin[i];
    }
    /* after layer 0 every activation is the work's own (an in-place row never writes the caller's x) */
    float *out = (r->in_place && i > 0) ? (float *)in : w->obuf[i];
    nnLayerCall c = {.e = e,
                     .w = w,
                     .sz = z,
                     .i = i,
                     .B = B,
                     .spec = &e->arch.layer[i],
                     .in = &e->shape[i],
                     .out = &e->shape[i + 1],
                     .x = in,
                     .y = out,
                     .scratch = w->scratch[i]};
    if (r->has_params) {
      const nnTensor *t = &e->tensors[layer_tensor(e, i)];
      c.W = t[0].data, c.b = t[1].data;
    }
    r->forward(&c);
    w->in[i] = in;
    w->out[i] = out;
    cur = out;
  }
  if (!z->act[L].plain)
    nn_dnn_reorder_run(w, &z->to_plain[L], cur, feat);
  else
    memcpy(feat, cur, sizeof(float) * (size_t)B * (size_t)e->out_dim);
  rc = dnn_result(w, fn);
  omp_back(prev);
  if (rc) return rc;
  w->stage = NN_STAGE_FORWARD;
  w->cur = z;
  w->B = B;
  return 0;
}

int nn_enc_backward(const nnEnc *e, nnEncWork *w, const float *dfeat, float *grads, int accumulate) {
  const char *fn = "nn_enc_backward";
  int rc = check_work(e, w, fn);
  if (rc) return rc;
  if (!dfeat) return tk_error(TK_EINVAL, "%s: NULL dLoss/dfeat", fn);
  if (w->stage != NN_STAGE_FORWARD)
    return tk_error(TK_EINVAL, "%s: no forward pass to backpropagate (nn_enc_forward first)", fn);
  if (!grads) grads = e->grads;
  if (!grads)
    return tk_error(TK_EINVAL,
                    "%s: the encoder was made to act (no gradients): nn_enc_add_training, or pass a "
                    "gradient block",
                    fn);
  int prev = omp_one();
  nnEncSize *z = w->cur;
  const int L = e->arch.nlayers, B = w->B;
  w->err = dnnl_success;
  int k = 0; /* w->g[k] holds dLoss/d(the current layer's output) */
  if (!z->act[L].plain)
    nn_dnn_reorder_run(w, &z->from_plain[L], dfeat, w->g[0]);
  else
    memcpy(w->g[0], dfeat, sizeof(float) * (size_t)B * (size_t)e->out_dim);
  for (int i = L - 1; i >= 0; i--) {
    const nnLayerRow *r = nn_layer_row(e->arch.layer[i].kind);
    const int reordered = r->plain_in && !z->act[i].plain;
    float *dy = w->g[k], *dx = NULL;
    if (i > 0) dx = r->in_place ? dy : reordered ? w->gplain : w->g[1 - k];
    nnLayerCall c = {.e = e,
                     .w = w,
                     .sz = z,
                     .i = i,
                     .B = B,
                     .spec = &e->arch.layer[i],
                     .in = &e->shape[i],
                     .out = &e->shape[i + 1],
                     .x = w->in[i],
                     .y = w->out[i],
                     .dy = dy,
                     .dx = dx,
                     .accumulate = accumulate,
                     .scratch = w->scratch[i]};
    if (r->has_params) {
      const nnTensor *t = &e->tensors[layer_tensor(e, i)];
      c.W = t[0].data, c.b = t[1].data;
      c.dW = grads + t[0].offset, c.db = grads + t[1].offset;
    }
    r->backward(&c);
    if (i > 0) {
      if (reordered) {
        nn_dnn_reorder_run(w, &z->from_plain[i], dx, w->g[1 - k]);
        k = 1 - k;
      } else if (!r->in_place) {
        k = 1 - k;
      }
    }
  }
  rc = dnn_result(w, fn);
  omp_back(prev);
  return rc;
}

/* ---- optimizer -------------------------------------------------------------------------------------------
 */

int nn_enc_adam_step(nnEnc *e, const nnAdamOpts *o, float gscale) {
  if (!e) return tk_error(TK_EINVAL, "nn_enc_adam_step: NULL encoder");
  if (!e->grads)
    return tk_error(TK_EINVAL, "nn_enc_adam_step: the encoder was made to act (nn_enc_add_training first)");
  int rc = nn_adam_check(o);
  if (rc) return rc;
  if (!(gscale >= 0 && isfinite(gscale)))
    return tk_error(TK_ERANGE, "nn_enc_adam_step: gradient scale %g is not a finite number >= 0",
                    (double)gscale);
  nnAdamK k;
  nn_adam_prepare_t(e->adam_t, o, &k);
  const nnAdamBlock b = {e->tensors, e->n_tensors, e->params, e->grads, e->adam_m, e->adam_v};
  nn_adam_block_span(&b, &k, 0, e->n_params, gscale, NULL);
  e->adam_t++;
  return 0;
}

double nn_enc_grad_sq(const nnEnc *e) { return e && e->grads ? nn_sum_sq(e->grads, e->n_params) : 0; }

void nn_enc_zero_grad(nnEnc *e) {
  if (e && e->grads) memset(e->grads, 0, sizeof(float) * (size_t)e->n_params);
}

/* ---- images
 * ------------------------------------------------------------------------------------------------- */

void nn_image_crop(const uint8_t *hwc, int H, int W, int C, int oy, int ox, int ch, int cw, float *chw) {
  (void)H;
  for (int c = 0; c < C; c++)
    for (int y = 0; y < ch; y++) {
      const uint8_t *src = hwc + ((size_t)(oy + y) * W + ox) * C + c;
      float *dst = chw + ((size_t)c * ch + y) * cw;
      for (int x = 0; x < cw; x++)
        dst[x] = (float)src[(size_t)x * C] / 255.0f;
    }
}
