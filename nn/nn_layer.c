/* nn/nn_layer.c -- the layer kinds, one row each. For an image encoder: JSON name and fields, output
 * shape, parameter shapes, forward and backward (conv runs on oneDNN (nn_conv.c); spatial_softmax and
 * linear on cblas_sgemm over plain data; relu on whatever layout its input has; flatten is a view). For the
 * trunk (nnNet's MLP): tensor names, initialization, whether it fuses the rows after it, and the
 * batch-major forward and backward (linear, layernorm, relu, elu, tanh; their kernels are in nn_fwd.c). For
 * a U-Net (nn_unet.c): parameter ranks, sizes, forward and backward on [B, channels, length] (conv1d,
 * conv_transpose1d, groupnorm, mish, film, linear; their kernels are in nn_seq.c). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "nn_internal.h"

#define ERR_LAYER(code, i, kind, fmt, ...)                                                                   \
  tk_error(code, "nn enc arch: layer %d (%s): " fmt, i, kind, __VA_ARGS__)

static void shape_str(const nnShape *s, char *buf, size_t n) { nn_shape_str(s->ndim, s->d, buf, n); }

static int need_image(const nnShape *in, int i, const char *kind) {
  if (in->ndim == 3) return 0;
  char sh[64];
  shape_str(in, sh, sizeof sh);
  return ERR_LAYER(TK_EINVAL, i, kind, "input %s is not an image [C, H, W]", sh);
}

static int check_out(const nnLayerSpec *s, int i, const char *kind) {
  if (s->out < 1 || s->out > NN_MAX_DIM)
    return ERR_LAYER(TK_ERANGE, i, kind, "out %d not in 1..%d", s->out, NN_MAX_DIM);
  return 0;
}

/* ---- conv ------------------------------------------------------------------------------------------ */

static int conv_shape(const nnLayerSpec *s, const nnShape *in, nnShape *out, int i) {
  int rc = need_image(in, i, "conv");
  if (!rc) rc = check_out(s, i, "conv");
  if (rc) return rc;
  if (s->kernel < 1 || s->kernel > NN_MAX_IMAGE_SIDE)
    return ERR_LAYER(TK_ERANGE, i, "conv", "kernel %d not in 1..%d", s->kernel, NN_MAX_IMAGE_SIDE);
  if (s->stride < 1 || s->stride > NN_MAX_IMAGE_SIDE)
    return ERR_LAYER(TK_ERANGE, i, "conv", "stride %d not in 1..%d", s->stride, NN_MAX_IMAGE_SIDE);
  if (s->pad < 0 || s->pad >= s->kernel)
    return ERR_LAYER(TK_ERANGE, i, "conv", "pad %d not in 0..%d (kernel - 1)", s->pad, s->kernel - 1);
  int64_t hp = in->d[1] + 2 * s->pad, wp = in->d[2] + 2 * s->pad;
  if (s->kernel > hp || s->kernel > wp)
    return ERR_LAYER(
        TK_EINVAL, i, "conv", "kernel %d is larger than its padded input %lldx%lld (input %lldx%lld, pad %d)",
        s->kernel, (long long)hp, (long long)wp, (long long)in->d[1], (long long)in->d[2], s->pad);
  out->ndim = 3;
  out->d[0] = s->out;
  out->d[1] = (hp - s->kernel) / s->stride + 1;
  out->d[2] = (wp - s->kernel) / s->stride + 1;
  out->d[3] = 0;
  return 0;
}

static void conv_params(const nnLayerSpec *s, const nnShape *in, nnTensor *w, nnTensor *b, int64_t *fan_in) {
  w->ndim = 4;
  w->shape[0] = s->out, w->shape[1] = in->d[0], w->shape[2] = s->kernel, w->shape[3] = s->kernel;
  b->ndim = 1;
  b->shape[0] = s->out;
  *fan_in = in->d[0] * s->kernel * s->kernel;
}

/* ---- relu (any layout: blocked layouts pad channels with zeros, which stay zero) -------------------- */

static int same_shape(const nnLayerSpec *s, const nnShape *in, nnShape *out, int i) {
  (void)s, (void)i;
  *out = *in;
  return 0;
}

NN_CLONES static void relu_fwd(const float *restrict x, float *y, int64_t n) {
  for (int64_t k = 0; k < n; k++)
    y[k] = x[k] > 0 ? x[k] : 0.0f;
}

/* dx may be dy (in place) */
NN_CLONES static void relu_bwd(const float *restrict y, const float *dy, float *dx, int64_t n) {
  for (int64_t k = 0; k < n; k++)
    dx[k] = y[k] > 0 ? dy[k] : 0.0f;
}

static void relu_forward(const nnLayerCall *c) { relu_fwd(c->x, c->y, c->sz->act[c->i].floats); }

/* in place (dx == dy, the encoder's case): restrict pointers, so the loop vectorizes without the overlap
 * check's scalar fallback that relu_bwd takes on aliased buffers */
NN_CLONES static void relu_bwd_inplace(const float *restrict y, float *restrict d, int64_t n) {
  for (int64_t k = 0; k < n; k++)
    d[k] = y[k] > 0 ? d[k] : 0.0f;
}

static void relu_backward(const nnLayerCall *c) {
  if (!c->dx) return;
  if (c->dx == c->dy)
    relu_bwd_inplace(c->y, c->dx, c->sz->act[c->i].floats);
  else
    relu_bwd(c->y, c->dy, c->dx, c->sz->act[c->i].floats);
}

/* ---- spatial softmax: 1x1 conv C -> K, softmax over the H*W positions, expected (x, y) --------------- */

static int ss_shape(const nnLayerSpec *s, const nnShape *in, nnShape *out, int i) {
  int rc = need_image(in, i, "spatial_softmax");
  if (!rc) rc = check_out(s, i, "spatial_softmax");
  if (rc) return rc;
  out->ndim = 2;
  out->d[0] = s->out, out->d[1] = 2, out->d[2] = out->d[3] = 0;
  return 0;
}

static void ss_params(const nnLayerSpec *s, const nnShape *in, nnTensor *w, nnTensor *b, int64_t *fan_in) {
  w->ndim = 4;
  w->shape[0] = s->out, w->shape[1] = in->d[0], w->shape[2] = 1, w->shape[3] = 1;
  b->ndim = 1;
  b->shape[0] = s->out;
  *fan_in = in->d[0];
}

/* the softmax maps of every sample [K, H*W], and one more map set for the backward pass's dZ */
static int64_t ss_scratch(const nnLayerSpec *s, const nnShape *in, const nnShape *out) {
  (void)out;
  return (int64_t)s->out * in->d[1] * in->d[2];
}

/* torch.linspace(-1, 1, n)[j] */
static float lin(int64_t j, int64_t n) {
  return n > 1 ? (float)(-1.0 + 2.0 * (double)j / (double)(n - 1)) : -1.0f;
}

/* expected (x, y) of one softmax map a [H*W] */
static void ss_expect(const float *a, const float *px, const float *py, int64_t H, int64_t W, float *ex,
                      float *ey) {
  float sx = 0, sy = 0;
  for (int64_t r = 0; r < H; r++) {
    float row = 0;
    for (int64_t q = 0; q < W; q++) {
      float v = a[r * W + q];
      row += v;
      sx += v * px[q];
    }
    sy += row * py[r];
  }
  *ex = sx, *ey = sy;
}

static void ss_forward(const nnLayerCall *c) {
  const int64_t C = c->in->d[0], H = c->in->d[1], W = c->in->d[2], K = c->spec->out, HW = H * W;
  float px[NN_MAX_IMAGE_SIDE], py[NN_MAX_IMAGE_SIDE];
  for (int64_t q = 0; q < W; q++)
    px[q] = lin(q, W);
  for (int64_t r = 0; r < H; r++)
    py[r] = lin(r, H);
  for (int b = 0; b < c->B; b++) {
    const float *X = c->x + (size_t)b * C * HW;
    float *Z = c->scratch + (size_t)b * K * HW;
    for (int64_t k = 0; k < K; k++)
      for (int64_t p = 0; p < HW; p++)
        Z[k * HW + p] = c->b[k];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)K, (int)HW, (int)C, 1.0f, c->W, (int)C, X,
                (int)HW, 1.0f, Z, (int)HW);
    for (int64_t k = 0; k < K; k++) {
      float *z = Z + k * HW, mx = z[0], sum = 0;
      for (int64_t p = 1; p < HW; p++)
        mx = z[p] > mx ? z[p] : mx;
      for (int64_t p = 0; p < HW; p++) {
        z[p] = expf(z[p] - mx);
        sum += z[p];
      }
      float inv = 1.0f / sum;
      for (int64_t p = 0; p < HW; p++)
        z[p] *= inv;
      float *o = c->y + (size_t)b * 2 * K + 2 * k;
      ss_expect(z, px, py, H, W, &o[0], &o[1]);
    }
  }
}

static void ss_backward(const nnLayerCall *c) {
  const int64_t C = c->in->d[0], H = c->in->d[1], W = c->in->d[2], K = c->spec->out, HW = H * W;
  float px[NN_MAX_IMAGE_SIDE], py[NN_MAX_IMAGE_SIDE];
  for (int64_t q = 0; q < W; q++)
    px[q] = lin(q, W);
  for (int64_t r = 0; r < H; r++)
    py[r] = lin(r, H);
  float *dZ = c->scratch + (size_t)c->w->max_batch * K * HW;
  if (!c->accumulate) memset(c->db, 0, sizeof(float) * (size_t)K);
  for (int b = 0; b < c->B; b++) {
    const float *X = c->x + (size_t)b * C * HW, *A = c->scratch + (size_t)b * K * HW;
    for (int64_t k = 0; k < K; k++) {
      const float *a = A + k * HW;
      float ex, ey, dex = c->dy[(size_t)b * 2 * K + 2 * k], dey = c->dy[(size_t)b * 2 * K + 2 * k + 1], s = 0;
      ss_expect(a, px, py, H, W, &ex, &ey);
      float *d = dZ + k * HW;
      for (int64_t r = 0; r < H; r++)
        for (int64_t q = 0; q < W; q++) {
          float v = a[r * W + q] * ((px[q] - ex) * dex + (py[r] - ey) * dey);
          d[r * W + q] = v;
          s += v;
        }
      c->db[k] += s;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)K, (int)C, (int)HW, 1.0f, dZ, (int)HW, X,
                (int)HW, (b == 0 && !c->accumulate) ? 0.0f : 1.0f, c->dW, (int)C);
    if (c->dx)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)HW, (int)K, 1.0f, c->W, (int)C, dZ,
                  (int)HW, 0.0f, c->dx + (size_t)b * C * HW, (int)HW);
  }
}

/* ---- flatten: a view --------------------------------------------------------------------------------- */

static int flatten_shape(const nnLayerSpec *s, const nnShape *in, nnShape *out, int i) {
  (void)s, (void)i;
  out->ndim = 1;
  out->d[0] = nn_shape_numel(in), out->d[1] = out->d[2] = out->d[3] = 0;
  return 0;
}

static void flatten_forward(const nnLayerCall *c) {
  if (c->y != c->x) memcpy(c->y, c->x, sizeof(float) * (size_t)c->B * (size_t)nn_shape_numel(c->in));
}

static void flatten_backward(const nnLayerCall *c) {
  if (c->dx && c->dx != c->dy)
    memcpy(c->dx, c->dy, sizeof(float) * (size_t)c->B * (size_t)nn_shape_numel(c->in));
}

/* ---- linear: y = x W^T + b over the flattened input -----------------------------------------------------
 */

static int linear_shape(const nnLayerSpec *s, const nnShape *in, nnShape *out, int i) {
  (void)in;
  int rc = check_out(s, i, "linear");
  if (rc) return rc;
  out->ndim = 1;
  out->d[0] = s->out, out->d[1] = out->d[2] = out->d[3] = 0;
  return 0;
}

static void linear_params(const nnLayerSpec *s, const nnShape *in, nnTensor *w, nnTensor *b,
                          int64_t *fan_in) {
  w->ndim = 2;
  w->shape[0] = s->out, w->shape[1] = nn_shape_numel(in);
  b->ndim = 1;
  b->shape[0] = s->out;
  *fan_in = nn_shape_numel(in);
}

static void linear_forward(const nnLayerCall *c) {
  const int in = (int)nn_shape_numel(c->in), out = c->spec->out;
  for (int b = 0; b < c->B; b++)
    memcpy(c->y + (size_t)b * out, c->b, sizeof(float) * (size_t)out);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->B, out, in, 1.0f, c->x, in, c->W, in, 1.0f, c->y,
              out);
}

static void linear_backward(const nnLayerCall *c) {
  const int in = (int)nn_shape_numel(c->in), out = c->spec->out;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, out, in, c->B, 1.0f, c->dy, out, c->x, in,
              c->accumulate ? 1.0f : 0.0f, c->dW, in);
  if (!c->accumulate) memset(c->db, 0, sizeof(float) * (size_t)out);
  for (int b = 0; b < c->B; b++)
    for (int o = 0; o < out; o++)
      c->db[o] += c->dy[(size_t)b * out + o];
  if (c->dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->B, in, out, 1.0f, c->dy, out, c->W, in, 0.0f,
                c->dx, in);
}

/* ---- the table ------------------------------------------------------------------------------------------
 */

/* ---- the trunk's activation rows (nnNet's MLP; arithmetic in nn_fwd.c) ---------------------------------
 * The trunk's relu keeps a NaN (the encoder's relu_fwd gives 0); its backward is the same select as the
 * encoder's relu_bwd, but through nn_fwd.c's in-place kernel: relu_bwd's dy and dx may alias, and called
 * in place its vectorized loop's overlap check sends it to the scalar loop (measured ~30 us against 7 us
 * on 256x256 floats: ~5% of the benchmark MLP's b256 training step). */

static void relu_mlp_forward(const nnMlpCall *c) { nn_mlp_act_forward(c, NN_RELU); }
static void relu_mlp_backward(const nnMlpCall *c) { nn_mlp_act_backward(c, NN_RELU); }
static void elu_mlp_forward(const nnMlpCall *c) { nn_mlp_act_forward(c, NN_ELU); }
static void elu_mlp_backward(const nnMlpCall *c) { nn_mlp_act_backward(c, NN_ELU); }
static void tanh_mlp_forward(const nnMlpCall *c) { nn_mlp_act_forward(c, NN_TANH); }
static void tanh_mlp_backward(const nnMlpCall *c) { nn_mlp_act_backward(c, NN_TANH); }

/* ---- the table ------------------------------------------------------------------------------------------
 * Encoder columns: name, fields, has_params, plain_in, in_place, shape, params, scratch, forward, backward.
 * Trunk columns: act, mlp_fuse, mlp_in_place, mlp_dx_in_place, mlp_scratch, mlp_params, mlp_names,
 * mlp_forward, mlp_backward. */

static const nnLayerRow rows[NN_LAYER_KINDS] = {
    [NN_LAYER_CONV] = {.name = "conv",
                       .fields = NN_FIELD_OUT | NN_FIELD_KERNEL | NN_FIELD_STRIDE | NN_FIELD_PAD,
                       .has_params = 1,
                       .shape = conv_shape,
                       .params = conv_params,
                       .forward = nn_conv_forward,
                       .backward = nn_conv_backward,
                       .act = -1},
    [NN_LAYER_RELU] = {.name = "relu",
                       .in_place = 1,
                       .shape = same_shape,
                       .forward = relu_forward,
                       .backward = relu_backward,
                       .act = NN_RELU,
                       .mlp_in_place = 1,
                       .mlp_dx_in_place = 1,
                       .mlp_forward = relu_mlp_forward,
                       .mlp_backward = relu_mlp_backward},
    [NN_LAYER_SPATIAL_SOFTMAX] = {.name = "spatial_softmax",
                                  .fields = NN_FIELD_OUT,
                                  .has_params = 1,
                                  .plain_in = 1,
                                  .shape = ss_shape,
                                  .params = ss_params,
                                  .scratch = ss_scratch,
                                  .forward = ss_forward,
                                  .backward = ss_backward,
                                  .act = -1},
    [NN_LAYER_FLATTEN] = {.name = "flatten",
                          .plain_in = 1,
                          .in_place = 1,
                          .shape = flatten_shape,
                          .forward = flatten_forward,
                          .backward = flatten_backward,
                          .act = -1},
    [NN_LAYER_LINEAR] = {.name = "linear",
                         .fields = NN_FIELD_OUT,
                         .has_params = 1,
                         .plain_in = 1,
                         .shape = linear_shape,
                         .params = linear_params,
                         .forward = linear_forward,
                         .backward = linear_backward,
                         .act = -1,
                         .mlp_fuse = 1,
                         .mlp_params = NN_MLP_PARAMS_WEIGHT,
                         .mlp_names = {"l%d.weight", "l%d.bias"},
                         .mlp_forward = nn_mlp_linear_forward,
                         .mlp_backward = nn_mlp_linear_backward,
                         .seq_weight_rank = 2,
                         .seq_sizes = nn_seq_linear_sizes,
                         .seq_forward = nn_seq_linear_forward,
                         .seq_backward = nn_seq_linear_backward},
    [NN_LAYER_LAYERNORM] = {.name = "layernorm",
                            .act = -1,
                            .mlp_dx_in_place = 1,
                            .mlp_scratch = 1,
                            .mlp_params = NN_MLP_PARAMS_GAIN,
                            .mlp_names = {"ln%d.gain", "ln%d.bias"},
                            .mlp_forward = nn_mlp_layernorm_forward,
                            .mlp_backward = nn_mlp_layernorm_backward},
    [NN_LAYER_ELU] = {.name = "elu",
                      .act = NN_ELU,
                      .mlp_in_place = 1,
                      .mlp_dx_in_place = 1,
                      .mlp_forward = elu_mlp_forward,
                      .mlp_backward = elu_mlp_backward},
    [NN_LAYER_TANH] = {.name = "tanh",
                       .act = NN_TANH,
                       .mlp_in_place = 1,
                       .mlp_dx_in_place = 1,
                       .mlp_forward = tanh_mlp_forward,
                       .mlp_backward = tanh_mlp_backward},
    /* the U-Net's rows (nn_seq.c) */
    [NN_LAYER_CONV1D] = {.name = "conv1d",
                         .act = -1,
                         .seq_weight_rank = 3,
                         .seq_sizes = nn_conv1d_sizes,
                         .seq_forward = nn_conv1d_forward,
                         .seq_backward = nn_conv1d_backward},
    [NN_LAYER_CONV_TRANSPOSE1D] = {.name = "conv_transpose1d",
                                   .act = -1,
                                   .seq_weight_rank = 3,
                                   .seq_sizes = nn_convt1d_sizes,
                                   .seq_forward = nn_convt1d_forward,
                                   .seq_backward = nn_convt1d_backward},
    [NN_LAYER_GROUPNORM] = {.name = "groupnorm",
                            .act = -1,
                            .seq_weight_rank = 1,
                            .seq_gain = 1,
                            .seq_sizes = nn_groupnorm_sizes,
                            .seq_forward = nn_groupnorm_forward,
                            .seq_backward = nn_groupnorm_backward},
    [NN_LAYER_MISH] = {.name = "mish",
                       .act = -1,
                       .seq_sizes = nn_mish_sizes,
                       .seq_forward = nn_mish_forward,
                       .seq_backward = nn_mish_backward},
    [NN_LAYER_FILM] = {.name = "film",
                       .act = -1,
                       .seq_weight_rank = 2,
                       .seq_sizes = nn_film_sizes,
                       .seq_forward = nn_film_forward,
                       .seq_backward = nn_film_backward},
};

const nnLayerRow *nn_layer_row(nnLayerKind k) { return (unsigned)k < NN_LAYER_KINDS ? &rows[k] : NULL; }

const char *nn_layer_kind_name(nnLayerKind k) {
  const nnLayerRow *r = nn_layer_row(k);
  return r ? r->name : "?";
}
