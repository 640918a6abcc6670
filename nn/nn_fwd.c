/* nn/nn_fwd.c -- MLP forward/backward (sgemm + fused bias/LayerNorm/activation passes) and the heads. */
#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "nn_internal.h"

#define LOG_2PI 1.8378770664093453
#define LOG_2 0.6931471805599453

/* ---- elementwise pieces ------------------------------------------------------------------------ */

static inline float expm1_neg(float x) { return nn_expm1_neg_inline(x); }
static inline float tanh_fast(float x) { return nn_tanh_inline(x); }

/* ELU (alpha 1): v > 0 ? v : expm1(v), NaN kept */
static inline float elu(float v) {
  nnBits a = {.f = v}, m0 = {.i = a.i & (a.i >> 31)}; /* min(v, 0) */
  nnBits e = {.f = expm1_neg(m0.f)};
  int32_t neg = a.i >> 31;
  a.i = (e.i & neg) | (a.i & ~neg);
  return a.f;
}

float nn_expm1_neg(float x) { return expm1_neg(x); }
float nn_tanh(float x) { return tanh_fast(x); }
float nn_sigmoid(float x) { return nn_sigmoid_inline(x); }

/* z[B, n] = act(z + b), in place: bias and activation in one pass over the GEMM output */
NN_CLONES static void bias_act(float *restrict z, const float *restrict b, int B, int n, nnActivation act) {
  for (int i = 0; i < B; i++) {
    float *restrict r = z + (size_t)i * n;
    switch (act) {
    case NN_RELU:
      for (int j = 0; j < n; j++) {
        float v = r[j] + b[j];
        r[j] = v <= 0.0f ? 0.0f : v; /* NaN kept */
      }
      break;
    case NN_ELU:
      for (int j = 0; j < n; j++) {
        r[j] = elu(r[j] + b[j]);
      }
      break;
    case NN_TANH:
      for (int j = 0; j < n; j++)
        r[j] = tanh_fast(r[j] + b[j]);
      break;
    }
  }
}

/* z[N] = act(z), in place (an activation row on its own: the arithmetic of bias_act after the bias) */
NN_CLONES static void act_only(float *restrict z, size_t N, nnActivation act) {
  switch (act) {
  case NN_RELU:
    for (size_t i = 0; i < N; i++)
      z[i] = z[i] <= 0.0f ? 0.0f : z[i]; /* NaN kept */
    break;
  case NN_ELU:
    for (size_t i = 0; i < N; i++)
      z[i] = elu(z[i]);
    break;
  case NN_TANH:
    for (size_t i = 0; i < N; i++)
      z[i] = tanh_fast(z[i]);
    break;
  }
}

/* LayerNorm over each row of z + b (pre-activation; b NULL: z), then gain/bias and the activation (act
 * -1: none): xhat = (v - mean) * rstd (kept for backward, in place of z), h = act(xhat * g + beta) */
NN_CLONES static void ln_act(float *restrict z, const float *restrict b, const float *restrict g,
                             const float *restrict beta, float *restrict rstd, float *restrict h, int B,
                             int n, int act) {
  for (int i = 0; i < B; i++) {
    float *restrict r = z + (size_t)i * n;
    float *restrict o = h + (size_t)i * n;
    /* row sums in 8 float lanes: vectorizes, fixed order */
    float acc[8] = {0}, s = 0, s2 = 0;
    int j = 0;
    if (b) {
      for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++) {
          r[j + k] += b[j + k];
          acc[k] += r[j + k];
        }
      for (; j < n; j++) {
        r[j] += b[j];
        s += r[j];
      }
    } else {
      for (; j + 8 <= n; j += 8)
        for (int k = 0; k < 8; k++)
          acc[k] += r[j + k];
      for (; j < n; j++)
        s += r[j];
    }
    for (int k = 0; k < 8; k++)
      s += acc[k], acc[k] = 0;
    float mean = s / (float)n;
    for (j = 0; j + 8 <= n; j += 8)
      for (int k = 0; k < 8; k++)
        acc[k] += (r[j + k] - mean) * (r[j + k] - mean);
    for (; j < n; j++)
      s2 += (r[j] - mean) * (r[j] - mean);
    for (int k = 0; k < 8; k++)
      s2 += acc[k];
    float rs = 1.0f / sqrtf(s2 / (float)n + NN_LN_EPS);
    rstd[i] = rs;
    for (int j = 0; j < n; j++) {
      r[j] = (r[j] - mean) * rs;
      o[j] = r[j] * g[j] + beta[j];
    }
  }
  for (int i = 0; i < B && act >= 0; i++) {
    float *restrict o = h + (size_t)i * n;
    switch (act) {
    case NN_RELU:
      for (int j = 0; j < n; j++)
        o[j] = o[j] <= 0.0f ? 0.0f : o[j];
      break;
    case NN_ELU:
      for (int j = 0; j < n; j++)
        o[j] = elu(o[j]);
      break;
    case NN_TANH:
      for (int j = 0; j < n; j++)
        o[j] = tanh_fast(o[j]);
      break;
    }
  }
}

/* d[B, n] *= act'(.) written through the activation's output h: ReLU 1[h>0], ELU h>0 ? 1 : h+1,
 * tanh 1-h^2 */
NN_CLONES static void act_backward(float *restrict d, const float *restrict h, int B, int n,
                                   nnActivation act) {
  size_t N = (size_t)B * n;
  switch (act) {
  case NN_RELU:
    for (size_t i = 0; i < N; i++)
      d[i] = h[i] > 0.0f ? d[i] : 0.0f;
    break;
  case NN_ELU:
    for (size_t i = 0; i < N; i++) {
      /* factor h > 0 ? 1 : h + 1, selected on the bits (a float select here becomes a branch) */
      nnBits one = {.f = 1.0f}, e1 = {.f = h[i] + 1.0f}, f;
      int32_t pos = -(int32_t)(h[i] > 0.0f);
      f.i = (one.i & pos) | (e1.i & ~pos);
      d[i] *= f.f;
    }
    break;
  case NN_TANH:
    for (size_t i = 0; i < N; i++)
      d[i] *= 1.0f - h[i] * h[i];
    break;
  }
}

/* LayerNorm backward in place: d holds dL/dy (y = xhat*g + beta) and becomes dL/dz;
 * dgain += sum dy*xhat, dbeta += sum dy (if param_grads) */
NN_CLONES static void ln_backward(float *restrict d, const float *restrict xhat, const float *restrict rstd,
                                  const float *restrict g, float *restrict dgain, float *restrict dbeta,
                                  int B, int n, int param_grads) {
  for (int i = 0; i < B; i++) {
    float *restrict r = d + (size_t)i * n;
    const float *restrict x = xhat + (size_t)i * n;
    if (param_grads)
      for (int j = 0; j < n; j++) {
        dgain[j] += r[j] * x[j];
        dbeta[j] += r[j];
      }
    float a1[8] = {0}, a2[8] = {0}, s1 = 0, s2 = 0; /* 8 float lanes, fixed order */
    int j = 0;
    for (; j + 8 <= n; j += 8)
      for (int k = 0; k < 8; k++) {
        float dx = r[j + k] * g[j + k];
        a1[k] += dx;
        a2[k] += dx * x[j + k];
      }
    for (; j < n; j++) {
      float dx = r[j] * g[j];
      s1 += dx;
      s2 += dx * x[j];
    }
    for (int k = 0; k < 8; k++)
      s1 += a1[k], s2 += a2[k];
    float m1 = s1 / (float)n, m2 = s2 / (float)n, rs = rstd[i];
    for (j = 0; j < n; j++)
      r[j] = rs * (r[j] * g[j] - m1 - x[j] * m2);
  }
}

/* db[n] += column sums of d[B, n] */
NN_CLONES static void col_sum_add(float *restrict db, const float *restrict d, int B, int n) {
  for (int i = 0; i < B; i++) {
    const float *restrict r = d + (size_t)i * n;
    for (int j = 0; j < n; j++)
      db[j] += r[j];
  }
}

NN_CLONES static void add_bias(float *restrict z, const float *restrict b, int B, int n) {
  for (int i = 0; i < B; i++) {
    float *restrict r = z + (size_t)i * n;
    for (int j = 0; j < n; j++)
      r[j] += b[j];
  }
}

/* ---- MLP --------------------------------------------------------------------------------------- */

int nn_forward(const nnNet *net, nnWork *w, const float *x, int B) {
  int rc = nn_refuse_rnn(net, "nn_forward");
  if (!rc) rc = nn_check_batch(net, w, x, B);
  if (rc) return rc;
  nn_mlp_forward(net, w, x, B);
  return 0;
}

/* ---- the trunk's rows (columns mlp_* of the layer table, nn_layer.c) ------------------------------ */

/* linear: y = x W^T + b; with a fused layernorm (ln_g) y becomes xhat and ln_y its output, with a fused
 * activation (act >= 0) applied to the last output in the same pass */
void nn_mlp_linear_forward(const nnMlpCall *c) {
  const int B = c->B, n_in = c->in, n_out = c->out;
  /* narrow outputs (an action head) in blocks of 128 rows: OpenBLAS 0.3.21 takes its fast small-matrix
   * kernel only up to M*N*K = 64^3 and is 5x slower on B=256 x 7 x 256 than on two halves */
  int rows = n_out < 16 ? 128 : B;
  for (int r0 = 0; r0 < B; r0 += rows)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, TK_MIN(rows, B - r0), n_out, n_in, 1.0f,
                c->x + (size_t)r0 * n_in, n_in, c->W, n_in, 0.0f, c->y + (size_t)r0 * n_out, n_out);
  if (c->ln_g)
    ln_act(c->y, c->b, c->ln_g, c->ln_b, c->ln_rstd, c->ln_y, B, n_out, c->act);
  else if (c->act >= 0)
    bias_act(c->y, c->b, B, n_out, (nnActivation)c->act);
  else
    add_bias(c->y, c->b, B, n_out);
}

/* dW (+)= dy^T x, db (+)= column sums of dy, dx = dy W */
void nn_mlp_linear_backward(const nnMlpCall *c) {
  const int B = c->B, n_in = c->in, n_out = c->out;
  if (c->dW) {
    /* beta 1 accumulates into the gradient block, 0 overwrites it */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, n_out, n_in, B, 1.0f, c->dy, n_out, c->x, n_in,
                c->accumulate ? 1.0f : 0.0f, c->dW, n_in);
    if (!c->accumulate) memset(c->db, 0, sizeof(float) * (size_t)n_out);
    col_sum_add(c->db, c->dy, B, n_out);
  }
  if (c->dx)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, n_in, n_out, 1.0f, c->dy, n_out, c->W, n_in,
                0.0f, c->dx, n_in);
}

/* layernorm on its own (a linear before it added its bias): save (its input buffer) becomes xhat */
void nn_mlp_layernorm_forward(const nnMlpCall *c) {
  ln_act(c->save, NULL, c->W, c->b, c->scratch, c->y, c->B, c->out, c->act);
}

/* in place: dy becomes dLoss/d(its input) (dx == dy); dgain (+)= sum dy*xhat, dbias (+)= sum dy */
void nn_mlp_layernorm_backward(const nnMlpCall *c) {
  if (c->dW && !c->accumulate) {
    memset(c->dW, 0, sizeof(float) * (size_t)c->out);
    memset(c->db, 0, sizeof(float) * (size_t)c->out);
  }
  ln_backward(c->dx, c->save, c->scratch, c->W, c->dW, c->db, c->B, c->out, c->dW != NULL);
}

void nn_mlp_act_forward(const nnMlpCall *c, nnActivation act) { act_only(c->y, (size_t)c->B * c->out, act); }

/* in place (dx == dy), through the output */
void nn_mlp_act_backward(const nnMlpCall *c, nnActivation act) {
  act_backward(c->dx, c->y, c->B, c->out, act);
}

/* ---- the MLP: its rows in order ---------------------------------------------------------------------- */

/* the call for row i of the last forward (buffers, parameters; gradients from the block grads) */
static nnMlpCall mlp_call(const nnNet *net, const nnWork *w, int i, float *grads) {
  const nnRow *R = &net->rows[i];
  nnMlpCall c = {.B = w->batch, .in = R->in, .out = R->out, .act = -1};
  c.x = i ? w->y[i - 1] : w->x;
  c.y = w->y[i];
  c.scratch = w->scratch[i];
  c.save = i ? w->y[i - 1] : NULL;
  if (R->tensor >= 0) { /* weight (or gain) and bias */
    const nnTensor *t = &net->tensors[R->tensor];
    c.W = t[0].data, c.b = t[1].data;
    if (grads) c.dW = grads + t[0].offset, c.db = grads + t[1].offset;
  }
  return c;
}

void nn_mlp_forward(const nnNet *net, nnWork *w, const float *x, int B) {
  if (net->arch.unet.levels > 0) {
    nn_unet_forward(net, w, x, B);
    return;
  }
  w->x = x;
  w->batch = B;
  for (int i = 0; i < net->n_rows;) {
    const nnRow *R = &net->rows[i];
    const nnLayerRow *row = nn_layer_row((nnLayerKind)R->kind);
    nnMlpCall c = mlp_call(net, w, i, NULL);
    /* the rows this one runs in its pass: a layernorm, then an activation */
    for (int k = 1; k <= R->fuse; k++) {
      const nnRow *F = &net->rows[i + k];
      const nnLayerRow *fr = nn_layer_row((nnLayerKind)F->kind);
      if (fr->act >= 0) {
        c.act = fr->act;
      } else { /* a layernorm */
        nnMlpCall lc = mlp_call(net, w, i + k, NULL);
        c.ln_g = lc.W, c.ln_b = lc.b, c.ln_y = lc.y, c.ln_rstd = lc.scratch;
      }
    }
    row->mlp_forward(&c);
    i += 1 + R->fuse;
  }
  w->stage = NN_STAGE_FORWARD;
}

void nn_mlp_backward(const nnNet *net, nnWork *w, const float *dout, float *dx, float *grads,
                     int accumulate) {
  if (net->arch.unet.levels > 0) {
    nn_unet_backward(net, w, dout, dx, grads, accumulate);
    return;
  }
  int pp = 0;
  const float *d = dout;
  for (int i = net->n_rows - 1; i >= 0; i--) {
    const nnLayerRow *row = nn_layer_row((nnLayerKind)net->rows[i].kind);
    nnMlpCall c = mlp_call(net, w, i, grads);
    c.accumulate = accumulate;
    c.dy = d;
    if (row->mlp_dx_in_place) {
      c.dx = (float *)d; /* a work buffer (dbuf) here: the output row is a linear */
    } else if (i == 0) {
      c.dx = dx;
    } else {
      c.dx = w->dbuf[pp];
      pp ^= 1;
    }
    row->mlp_backward(&c);
    d = c.dx;
  }
}

int nn_check_work(const nnNet *net, const nnWork *w) {
  if (!net || !w) return tk_error(TK_EINVAL, "nn: NULL network or work");
  if (w->out_dim != net->out_dim || w->n_params != net->n_params)
    return tk_error(TK_EINVAL, "nn: the work was made for another network");
  return 0;
}

int nn_backward_out(nnNet *net, nnWork *w, const float *dout, float *dx, int param_grads) {
  int rc = nn_check_work(net, w);
  if (!rc && param_grads) rc = nn_need_training(net, "nn_backward_out");
  if (rc) return rc;
  if (!dout) return tk_error(TK_EINVAL, "nn_backward_out: NULL dout");
  if (net->arch.rnn_layers > 0) {
    if (w->T < 1 || w->stage == NN_STAGE_NONE)
      return tk_error(TK_EINVAL, "nn_backward_out: call nn_seq_forward first (a recurrent network)");
    if (!param_grads)
      return tk_error(TK_EINVAL, "nn_backward_out: a recurrent network's backward adds parameter gradients");
    if (dout != w->dout) memcpy(w->dout, dout, sizeof(float) * (size_t)w->batch * net->out_dim);
    nn_seq_backward(net, w, 1, dx);
    return 0;
  }
  if (w->stage == NN_STAGE_NONE)
    return tk_error(TK_EINVAL, "nn_backward_out: no forward pass to differentiate");
  nn_mlp_backward(net, w, dout, dx, param_grads ? net->grads : NULL, 1);
  return 0;
}

int nn_backward(nnNet *net, nnWork *w) {
  int rc = nn_check_work(net, w);
  if (!rc) rc = nn_need_training(net, "nn_backward");
  if (rc) return rc;
  if (net->arch.rnn_layers > 0 && (w->stage != NN_STAGE_LOSS || w->T < 1))
    return tk_error(TK_EINVAL, "nn_backward: call nn_seq_loss first (a recurrent network)");
  if (w->stage != NN_STAGE_LOSS) return tk_error(TK_EINVAL, "nn_backward: call nn_loss first");
  nn_loss_backward(net, w, 1);
  return 0;
}

void nn_loss_backward(nnNet *net, nnWork *w, int accumulate) {
  if (net->arch.rnn_layers > 0)
    nn_seq_backward(net, w, accumulate, NULL);
  else
    nn_mlp_backward(net, w, w->dout, NULL, net->grads, accumulate);
}

/* ---- head math (double precision: B x A elements, cheap next to the GEMMs) ---------------------- */

static inline double softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }
static inline double sigmoid(double x) {
  if (x >= 0) return 1 / (1 + exp(-x));
  double e = exp(x);
  return e / (1 + e);
}
/* log(1 - tanh(u)^2), stable for large |u| */
static inline double log1m_tanh2(double u) { return 2 * (LOG_2 - u - softplus(-2 * u)); }
static inline double clip_act(double y) {
  return y > NN_ACT_CLIP ? NN_ACT_CLIP : y < -NN_ACT_CLIP ? -NN_ACT_CLIP : y;
}

/* Gaussian smooth clamp: log_std = lo + (hi - lo)(tanh(raw) + 1)/2; *dls = d log_std / d raw */
static inline double gauss_log_std(const nnArch *a, double raw, double *dls) {
  double t = tanh(raw), half = 0.5 * (a->log_std_max - a->log_std_min);
  if (dls) *dls = half * (1 - t * t);
  return a->log_std_min + half * (t + 1);
}

/* GMM per-mode, per-dim parameters from raw outputs */
static inline double gmm_mean(const nnArch *a, double raw) { return a->tanh ? tanh(raw) : raw; }
static inline double gmm_std(const nnArch *a, double raw) { return softplus(raw) + a->gmm_min_std; }

/* log softmax of the K logits into lp[K] */
static void log_softmax(const float *logits, int K, double *lp) {
  double mx = logits[0];
  for (int k = 1; k < K; k++)
    mx = logits[k] > mx ? logits[k] : mx;
  double s = 0;
  for (int k = 0; k < K; k++)
    s += exp(logits[k] - mx);
  double lse = mx + log(s);
  for (int k = 0; k < K; k++)
    lp[k] = logits[k] - lse;
}

static double logsumexp(const double *c, int K) {
  double mx = c[0];
  for (int k = 1; k < K; k++)
    mx = c[k] > mx ? c[k] : mx;
  if (!isfinite(mx)) return mx;
  double s = 0;
  for (int k = 0; k < K; k++)
    s += exp(c[k] - mx);
  return mx + log(s);
}

/* GMM: per-mode log(pi_k N_k(y)) into c[K], returns log p(y) */
static double gmm_logp_row(const nnArch *a, const float *o, const float *y, double *c) {
  int K = a->gmm_modes, A = a->act_dim;
  const float *m = o, *s = o + K * A, *lg = o + 2 * K * A;
  log_softmax(lg, K, c);
  for (int k = 0; k < K; k++) {
    double ln = 0;
    for (int j = 0; j < A; j++) {
      double sd = gmm_std(a, s[k * A + j]), z = (y[j] - gmm_mean(a, m[k * A + j])) / sd;
      ln += -0.5 * z * z - log(sd) - 0.5 * LOG_2PI;
    }
    c[k] += ln;
  }
  return logsumexp(c, K);
}

/* Gaussian: log p(y) of a (clipped) action row */
static double gauss_logp_row(const nnArch *a, const float *o, const float *y) {
  int A = a->act_dim;
  double lp = 0;
  for (int j = 0; j < A; j++) {
    double yc = clip_act(y[j]), u = atanh(yc), ls = gauss_log_std(a, o[A + j], NULL);
    double z = (u - o[j]) * exp(-ls);
    lp += -0.5 * z * z - ls - 0.5 * LOG_2PI - (log1p(-yc) + log1p(yc));
  }
  return lp;
}

/* ---- losses ------------------------------------------------------------------------------------ */

/* MSE: per-row loss mean_j e^2; dout = 2 e / (A B_total) (times 1 - t^2 through tanh) */
NN_CLONES static double mse_rows(const float *restrict out, const float *restrict y, float *restrict dout,
                                 size_t N, float scale) {
  float acc[8] = {0}; /* 8 float lanes (vectorizes, fixed order), then double */
  size_t i = 0;
  for (; i + 8 <= N; i += 8)
    for (int k = 0; k < 8; k++) {
      float e = out[i + k] - y[i + k];
      acc[k] += e * e;
      dout[i + k] = scale * e;
    }
  double total = 0;
  for (; i < N; i++) {
    float e = out[i] - y[i];
    total += (double)e * e;
    dout[i] = scale * e;
  }
  for (int k = 0; k < 8; k++)
    total += acc[k];
  return total;
}

double nn_head_loss(const nnNet *net, nnWork *w, const float *y, int B, int B_total) {
  const nnArch *a = &net->arch;
  int A = a->act_dim, D = net->out_dim;
  double total = 0;
  switch (a->head) {
  case NN_HEAD_MSE: {
    float scale = 2.0f / ((float)B_total * (float)A);
    size_t N = (size_t)B * A;
    if (a->tanh) {
      for (size_t i = 0; i < N; i++) {
        float t = tanhf(w->out[i]), e = t - y[i];
        total += (double)e * e;
        w->dout[i] = scale * e * (1.0f - t * t);
      }
    } else {
      total = mse_rows(w->out, y, w->dout, N, scale);
    }
    total /= A;
    break;
  }
  case NN_HEAD_GAUSSIAN:
    for (int i = 0; i < B; i++) {
      const float *o = w->out + (size_t)i * D, *yr = y + (size_t)i * A;
      float *d = w->dout + (size_t)i * D;
      for (int j = 0; j < A; j++) {
        double dls_draw, yc = clip_act(yr[j]), u = atanh(yc), ls = gauss_log_std(a, o[A + j], &dls_draw);
        double istd = exp(-ls), z = (u - o[j]) * istd;
        total += 0.5 * z * z + ls + 0.5 * LOG_2PI + (log1p(-yc) + log1p(yc));
        /* d(-log p)/dmu = -z/std, d(-log p)/dlog_std = 1 - z^2 */
        d[j] = (float)(-z * istd / B_total);
        d[A + j] = (float)((1 - z * z) * dls_draw / B_total);
      }
    }
    break;
  case NN_HEAD_GMM: {
    int K = a->gmm_modes;
    double c[NN_MAX_MODES], lpi[NN_MAX_MODES];
    for (int i = 0; i < B; i++) {
      const float *o = w->out + (size_t)i * D, *yr = y + (size_t)i * A;
      float *d = w->dout + (size_t)i * D;
      double lp = gmm_logp_row(a, o, yr, c);
      total -= lp;
      log_softmax(o + 2 * K * A, K, lpi);
      for (int k = 0; k < K; k++) {
        double r = isfinite(lp) ? exp(c[k] - lp) : 0; /* posterior responsibility of mode k */
        d[2 * K * A + k] = (float)((exp(lpi[k]) - r) / B_total);
        for (int j = 0; j < A; j++) {
          int q = k * A + j;
          double rm = o[q], rs = o[K * A + q], m = gmm_mean(a, rm), sd = gmm_std(a, rs), z = (yr[j] - m) / sd;
          double dm = -r * z / sd, dsd = r * (1 - z * z) / sd;
          d[q] = (float)(dm * (a->tanh ? 1 - m * m : 1) / B_total);
          d[K * A + q] = (float)(dsd * sigmoid(rs) / B_total);
        }
      }
    }
    break;
  }
  }
  return total;
}

int nn_loss(const nnNet *net, nnWork *w, const float *x, const float *y, int B, float *loss) {
  int rc = nn_refuse_rnn(net, "nn_loss");
  if (rc) return rc;
  if (!y || !loss) return tk_error(TK_EINVAL, "nn_loss: NULL target or loss");
  rc = nn_forward(net, w, x, B);
  return rc ? rc : nn_mean_loss(net, w, y, B, loss, "nn_loss");
}

int nn_mean_loss(const nnNet *net, nnWork *w, const float *y, int N, float *loss, const char *fn) {
  double total = nn_head_loss(net, w, y, N, N) / N;
  if (loss) *loss = (float)total;
  w->stage = NN_STAGE_LOSS;
  if (!isfinite(total)) return tk_error(TK_ERANGE, "%s: loss is not finite (%g)", fn, total);
  return 0;
}

/* ---- actions ----------------------------------------------------------------------------------- */

int nn_act(const nnNet *net, nnWork *w, const float *x, int B, float *act) {
  int rc = nn_refuse_rnn(net, "nn_act");
  if (rc) return rc;
  if (!act) return tk_error(TK_EINVAL, "nn_act: NULL output");
  rc = nn_forward(net, w, x, B);
  if (rc) return rc;
  nn_head_act(net, w, B, act);
  return 0;
}

/* every trunk: a plain network's B*T rows; a recurrent network's sequences from zero, or T steps on from
 * the episode's state */
int nn_run(const nnNet *net, nnWork *w, float *state, const float *x, int B, int T, float *act) {
  if (!net || !w || !x || !act) return tk_error(TK_EINVAL, "nn_run: NULL network, work, input or output");
  if (T < 1 || B < 1 || (int64_t)B * T > (1 << 24))
    return tk_error(TK_ERANGE, "nn_run: %d rows x %d steps (each >= 1, B*T at most %d)", B, T, 1 << 24);
  if (net->arch.rnn_layers < 1) return nn_act(net, w, x, B * T, act);
  if (!state) return nn_seq_act(net, w, x, B, T, act);
  const int D = net->arch.obs_dim, A = net->arch.act_dim;
  if (B == 1 || T == 1) { /* step t of every row is contiguous */
    for (int t = 0; t < T; t++) {
      int rc = nn_rnn_step(net, w, state, x + (size_t)t * D, B, act + (size_t)t * A);
      if (rc) return rc;
    }
    return 0;
  }
  /* B rows of T steps: step t gathered (rows b*T + t) into xt, its actions scattered from w->act */
  if (B > w->max_batch)
    return tk_error(TK_ERANGE, "nn_run: batch %d not in 1..%d (the work's max_batch)", B, w->max_batch);
  if (!w->xt) return tk_error(TK_EINVAL, "nn_run: the work was made for another network");
  for (int t = 0; t < T; t++) {
    for (int b = 0; b < B; b++)
      memcpy(w->xt + (size_t)b * D, x + ((size_t)b * T + t) * D, sizeof(float) * (size_t)D);
    int rc = nn_rnn_step(net, w, state, w->xt, B, w->act);
    if (rc) return rc;
    for (int b = 0; b < B; b++)
      memcpy(act + ((size_t)b * T + t) * A, w->act + (size_t)b * A, sizeof(float) * (size_t)A);
  }
  return 0;
}

void nn_head_act(const nnNet *net, const nnWork *w, int B, float *act) {
  const nnArch *a = &net->arch;
  int A = a->act_dim, D = net->out_dim;
  for (int i = 0; i < B; i++) {
    const float *o = w->out + (size_t)i * D;
    float *r = act + (size_t)i * A;
    switch (a->head) {
    case NN_HEAD_MSE:
      for (int j = 0; j < A; j++)
        r[j] = a->tanh ? tanhf(o[j]) : o[j];
      break;
    case NN_HEAD_GAUSSIAN:
      for (int j = 0; j < A; j++)
        r[j] = tanhf(o[j]);
      break;
    case NN_HEAD_GMM: {
      int K = a->gmm_modes, best = 0;
      const float *lg = o + 2 * K * A;
      for (int k = 1; k < K; k++)
        if (lg[k] > lg[best]) best = k;
      for (int j = 0; j < A; j++)
        r[j] = (float)gmm_mean(a, o[best * A + j]);
      break;
    }
    }
  }
}

int nn_sample(const nnNet *net, nnWork *w, const float *x, int B, tkRng *rng, float *act) {
  int rc0 = nn_refuse_rnn(net, "nn_sample");
  if (rc0) return rc0;
  if (!act || !rng) return tk_error(TK_EINVAL, "nn_sample: NULL rng or output");
  const nnArch *a = &net->arch;
  if (a->head == NN_HEAD_MSE) return nn_act(net, w, x, B, act);
  int A = a->act_dim, D = net->out_dim;
  if (a->head == NN_HEAD_GAUSSIAN) {
    int rc = nn_check_batch(net, w, x, B);
    if (rc) return rc;
    for (size_t i = 0; i < (size_t)B * A; i++)
      w->eps[i] = (float)tk_rng_normal(rng);
    return nn_gauss_sample(net, w, x, B, w->eps, act, NULL);
  }
  int rc = nn_forward(net, w, x, B);
  if (rc) return rc;
  int K = a->gmm_modes;
  double lp[NN_MAX_MODES];
  for (int i = 0; i < B; i++) {
    const float *o = w->out + (size_t)i * D;
    log_softmax(o + 2 * K * A, K, lp);
    double u = tk_rng_uniform(rng), cum = 0;
    int k = 0;
    for (; k < K - 1; k++) {
      cum += exp(lp[k]);
      if (u < cum) break;
    }
    for (int j = 0; j < A; j++)
      act[(size_t)i * A + j] =
          (float)(gmm_mean(a, o[k * A + j]) + gmm_std(a, o[K * A + k * A + j]) * tk_rng_normal(rng));
  }
  return 0;
}

int nn_log_prob(const nnNet *net, nnWork *w, const float *x, const float *act, int B, float *logp) {
  int rc0 = nn_refuse_rnn(net, "nn_log_prob");
  if (rc0) return rc0;
  if (!act || !logp) return tk_error(TK_EINVAL, "nn_log_prob: NULL action or output");
  if (net && net->arch.head == NN_HEAD_MSE)
    return tk_error(TK_EINVAL, "nn_log_prob: the MSE head has no density");
  int rc = nn_forward(net, w, x, B);
  if (rc) return rc;
  const nnArch *a = &net->arch;
  int A = a->act_dim, D = net->out_dim;
  double c[NN_MAX_MODES];
  for (int i = 0; i < B; i++) {
    const float *o = w->out + (size_t)i * D, *y = act + (size_t)i * A;
    logp[i] = (float)(a->head == NN_HEAD_GMM ? gmm_logp_row(a, o, y, c) : gauss_logp_row(a, o, y));
  }
  return 0;
}

/* ---- SAC: reparameterized tanh-Gaussian ---------------------------------------------------------- */

int nn_gauss_sample(const nnNet *net, nnWork *w, const float *x, int B, const float *eps, float *act,
                    float *logp) {
  int rc0 = nn_refuse_rnn(net, "nn_gauss_sample");
  if (rc0) return rc0;
  if (!eps) return tk_error(TK_EINVAL, "nn_gauss_sample: NULL noise");
  if (net && net->arch.head != NN_HEAD_GAUSSIAN)
    return tk_error(TK_EINVAL, "nn_gauss_sample: the network's head is %s, not gaussian",
                    nn_head_name(net->arch.head));
  int rc = nn_forward(net, w, x, B);
  if (rc) return rc;
  const nnArch *a = &net->arch;
  int A = a->act_dim, D = net->out_dim;
  if (eps != w->eps) memcpy(w->eps, eps, sizeof(float) * (size_t)B * A);
  for (int i = 0; i < B; i++) {
    const float *o = w->out + (size_t)i * D, *e = w->eps + (size_t)i * A;
    float *ar = w->act + (size_t)i * A;
    double lp = 0;
    for (int j = 0; j < A; j++) {
      double ls = gauss_log_std(a, o[A + j], NULL), u = o[j] + exp(ls) * e[j];
      ar[j] = (float)tanh(u);
      lp += -0.5 * (double)e[j] * e[j] - ls - 0.5 * LOG_2PI - log1m_tanh2(u);
    }
    w->logp[i] = (float)lp;
  }
  if (act) memcpy(act, w->act, sizeof(float) * (size_t)B * A);
  if (logp) memcpy(logp, w->logp, sizeof(float) * (size_t)B);
  w->stage = NN_STAGE_SAMPLE;
  return 0;
}

int nn_gauss_backward(nnNet *net, nnWork *w, const float *dact, const float *dlogp) {
  int rc = nn_refuse_rnn(net, "nn_gauss_backward");
  if (!rc) rc = nn_check_work(net, w);
  if (!rc) rc = nn_need_training(net, "nn_gauss_backward");
  if (rc) return rc;
  if (w->stage != NN_STAGE_SAMPLE)
    return tk_error(TK_EINVAL, "nn_gauss_backward: call nn_gauss_sample first");
  const nnArch *a = &net->arch;
  int A = a->act_dim, D = net->out_dim, B = w->batch;
  for (int i = 0; i < B; i++) {
    const float *o = w->out + (size_t)i * D, *e = w->eps + (size_t)i * A;
    float *d = w->dout + (size_t)i * D;
    double gl = dlogp ? dlogp[i] : 0;
    for (int j = 0; j < A; j++) {
      double dls_draw, ls = gauss_log_std(a, o[A + j], &dls_draw), sd = exp(ls), u = o[j] + sd * e[j];
      /* a = tanh(u): da/du = 1 - tanh^2 = exp(log1m_tanh2) (accurate when tanh rounds to 1);
       * logp = sum(-eps^2/2 - ls - log(2pi)/2 - log(1 - tanh(u)^2)): dlogp/du = 2 tanh(u), dlogp/dls = -1 */
      double ga = dact ? dact[(size_t)i * A + j] : 0;
      double du = ga * exp(log1m_tanh2(u)) + gl * 2 * tanh(u);
      d[j] = (float)du;
      d[A + j] = (float)((du * sd * e[j] - gl) * dls_draw);
    }
  }
  nn_mlp_backward(net, w, w->dout, NULL, net->grads, 1);
  return 0;
}
