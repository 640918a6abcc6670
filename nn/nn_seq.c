/* nn/nn_seq.c -- the U-Net's row kernels (rows of the layer table, nn_layer.c): conv1d and
 * conv_transpose1d (im2col + one cblas_sgemm over the whole batch), groupnorm, mish, film, and the linear
 * of the step encoder. Activations are [B, channels, length] (torch's NCL), batch-major; every backward
 * ADDS its dLoss/dx to c->dx (the U-Net zeroes the gradients of its values first), and writes or adds the
 * parameter gradients (c->accumulate). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "nn_internal.h"

#define GN_EPS 1e-5

/* ---- im2col: x [B, C, L] -> col [C k, B Lo], col[(c k + j), b Lo + t] = x[b, c, t s - p + j] (0 outside)
 */
static void im2col(const float *x, int B, int C, int L, int k, int s, int p, int Lo, float *col) {
  const int64_t N = (int64_t)B * Lo;
  for (int c = 0; c < C; c++)
    for (int j = 0; j < k; j++) {
      float *r = col + ((int64_t)c * k + j) * N;
      for (int b = 0; b < B; b++) {
        const float *xr = x + ((int64_t)b * C + c) * L;
        float *rr = r + (int64_t)b * Lo;
        for (int t = 0; t < Lo; t++) {
          int i = t * s - p + j;
          rr[t] = i >= 0 && i < L ? xr[i] : 0.0f;
        }
      }
    }
}

/* the transpose: x[b, c, t s - p + j] += col[(c k + j), b Lo + t] */
static void col2im_add(const float *col, int B, int C, int L, int k, int s, int p, int Lo, float *x) {
  const int64_t N = (int64_t)B * Lo;
  for (int c = 0; c < C; c++)
    for (int j = 0; j < k; j++) {
      const float *r = col + ((int64_t)c * k + j) * N;
      for (int b = 0; b < B; b++) {
        float *xr = x + ((int64_t)b * C + c) * L;
        const float *rr = r + (int64_t)b * Lo;
        for (int t = 0; t < Lo; t++) {
          int i = t * s - p + j;
          if (i >= 0 && i < L) xr[i] += rr[t];
        }
      }
    }
}

/* [B, C, L] -> [C, B L] and back (+= when add) */
static void to_cbl(const float *x, int B, int C, int L, float *out) {
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++)
      memcpy(out + ((int64_t)c * B + b) * L, x + ((int64_t)b * C + c) * L, sizeof(float) * (size_t)L);
}

static void from_cbl_add(const float *in, int B, int C, int L, float *x) {
  for (int b = 0; b < B; b++)
    for (int c = 0; c < C; c++) {
      const float *s = in + ((int64_t)c * B + b) * L;
      float *d = x + ((int64_t)b * C + c) * L;
      for (int t = 0; t < L; t++)
        d[t] += s[t];
    }
}

/* db (+)= sums of dy [B, C, L] over batch and time */
static void bias_grad(const nnSeqCall *c, const float *dy, int C, int L) {
  if (!c->db) return;
  if (!c->accumulate) memset(c->db, 0, sizeof(float) * (size_t)C);
  for (int b = 0; b < c->B; b++)
    for (int o = 0; o < C; o++) {
      const float *r = dy + ((int64_t)b * C + o) * L;
      float s = 0;
      for (int t = 0; t < L; t++)
        s += r[t];
      c->db[o] += s;
    }
}

/* ---- conv1d: weight [cout, cin, k] ------------------------------------------------------------------ */

int64_t nn_conv1d_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp) {
  *scratch = 0;
  *col = (int64_t)c->cin * c->kernel * c->lout;
  *tmp = (int64_t)c->cout * c->lout;
  return (int64_t)c->cin * c->kernel;
}

void nn_conv1d_forward(const nnSeqCall *c) {
  const int B = c->B, K = c->cin * c->kernel, N = B * c->lout, L = c->lout;
  im2col(c->x, B, c->cin, c->lin, c->kernel, c->stride, c->pad, L, c->col);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cout, N, K, 1.0f, c->W, K, c->col, N, 0.0f,
              c->tmp, N);
  for (int b = 0; b < B; b++)
    for (int o = 0; o < c->cout; o++) {
      const float *s = c->tmp + (int64_t)o * N + (int64_t)b * L;
      float *d = c->y + ((int64_t)b * c->cout + o) * L, bo = c->b[o];
      for (int t = 0; t < L; t++)
        d[t] = s[t] + bo;
    }
}

void nn_conv1d_backward(const nnSeqCall *c) {
  const int B = c->B, K = c->cin * c->kernel, N = B * c->lout, L = c->lout;
  to_cbl(c->dy, B, c->cout, L, c->tmp); /* dY [cout, B L] */
  bias_grad(c, c->dy, c->cout, L);
  if (c->dW) {
    im2col(c->x, B, c->cin, c->lin, c->kernel, c->stride, c->pad, L, c->col);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->cout, K, N, 1.0f, c->tmp, N, c->col, N,
                c->accumulate ? 1.0f : 0.0f, c->dW, K);
  }
  if (c->dx) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, c->cout, 1.0f, c->W, K, c->tmp, N, 0.0f,
                c->col, N);
    col2im_add(c->col, B, c->cin, c->lin, c->kernel, c->stride, c->pad, L, c->dx);
  }
}

/* ---- conv_transpose1d: weight [cin, cout, k]; y[b, o, t s - p + j] += x[b, i, t] W[i, o, j] --------- */

int64_t nn_convt1d_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp) {
  *scratch = 0;
  *col = (int64_t)c->cin * c->lin;
  *tmp = (int64_t)c->cout * c->kernel * c->lin;
  return (int64_t)c->cout * c->kernel; /* torch: fan_in from the weight's dimension 1 */
}

void nn_convt1d_forward(const nnSeqCall *c) {
  const int B = c->B, K = c->cout * c->kernel, N = B * c->lin;
  to_cbl(c->x, B, c->cin, c->lin, c->col); /* X [cin, B lin] */
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, N, c->cin, 1.0f, c->W, K, c->col, N, 0.0f, c->tmp,
              N);
  for (int b = 0; b < B; b++)
    for (int o = 0; o < c->cout; o++) {
      float *d = c->y + ((int64_t)b * c->cout + o) * c->lout;
      for (int t = 0; t < c->lout; t++)
        d[t] = c->b[o];
    }
  col2im_add(c->tmp, B, c->cout, c->lout, c->kernel, c->stride, c->pad, c->lin, c->y);
}

void nn_convt1d_backward(const nnSeqCall *c) {
  const int B = c->B, K = c->cout * c->kernel, N = B * c->lin;
  im2col(c->dy, B, c->cout, c->lout, c->kernel, c->stride, c->pad, c->lin, c->tmp); /* dcol [cout k, B lin] */
  bias_grad(c, c->dy, c->cout, c->lout);
  to_cbl(c->x, B, c->cin, c->lin, c->col);
  if (c->dW)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->cin, K, N, 1.0f, c->col, N, c->tmp, N,
                c->accumulate ? 1.0f : 0.0f, c->dW, K);
  if (c->dx) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->cin, N, K, 1.0f, c->W, K, c->tmp, N, 0.0f,
                c->col, N);
    from_cbl_add(c->col, B, c->cin, c->lin, c->dx);
  }
}

/* ---- groupnorm: each sample's group g (channels g C/G .. (g+1) C/G - 1, every step) is contiguous ------ */

int64_t nn_groupnorm_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp) {
  *scratch = 2 * (int64_t)c->groups; /* mean, rstd per group */
  *col = *tmp = 0;
  return 0;
}

void nn_groupnorm_forward(const nnSeqCall *c) {
  const int G = c->groups, cpg = c->cout / G, L = c->lout;
  const int64_t n = (int64_t)cpg * L;
  for (int b = 0; b < c->B; b++)
    for (int g = 0; g < G; g++) {
      const int64_t base = ((int64_t)b * c->cout + (int64_t)g * cpg) * L;
      const float *x = c->x + base;
      float *y = c->y + base;
      double s = 0, ss = 0;
      for (int64_t i = 0; i < n; i++)
        s += x[i];
      const double mean = s / (double)n;
      for (int64_t i = 0; i < n; i++)
        ss += ((double)x[i] - mean) * ((double)x[i] - mean);
      const float m = (float)mean, r = (float)(1.0 / sqrt(ss / (double)n + GN_EPS));
      c->scratch[((int64_t)b * G + g) * 2] = m;
      c->scratch[((int64_t)b * G + g) * 2 + 1] = r;
      for (int q = 0; q < cpg; q++) {
        const int ch = g * cpg + q;
        const float gw = c->W[ch], gb = c->b[ch];
        for (int t = 0; t < L; t++)
          y[q * L + t] = (x[q * L + t] - m) * r * gw + gb;
      }
    }
}

void nn_groupnorm_backward(const nnSeqCall *c) {
  const int G = c->groups, cpg = c->cout / G, L = c->lout;
  const int64_t n = (int64_t)cpg * L;
  if (c->dW && !c->accumulate) {
    memset(c->dW, 0, sizeof(float) * (size_t)c->cout);
    memset(c->db, 0, sizeof(float) * (size_t)c->cout);
  }
  for (int b = 0; b < c->B; b++)
    for (int g = 0; g < G; g++) {
      const int64_t base = ((int64_t)b * c->cout + (int64_t)g * cpg) * L;
      const float *x = c->x + base, *dy = c->dy + base;
      const float m = c->scratch[((int64_t)b * G + g) * 2], r = c->scratch[((int64_t)b * G + g) * 2 + 1];
      double s1 = 0, s2 = 0;
      for (int q = 0; q < cpg; q++) {
        const int ch = g * cpg + q;
        float dgw = 0, dgb = 0;
        for (int t = 0; t < L; t++) {
          const float xh = (x[q * L + t] - m) * r, d = dy[q * L + t];
          dgw += d * xh;
          dgb += d;
          const double gi = (double)d * c->W[ch];
          s1 += gi;
          s2 += gi * xh;
        }
        if (c->dW) c->dW[ch] += dgw, c->db[ch] += dgb;
      }
      if (!c->dx) continue;
      float *dx = c->dx + base;
      const float a1 = (float)(s1 / (double)n), a2 = (float)(s2 / (double)n);
      for (int q = 0; q < cpg; q++) {
        const float gw = c->W[g * cpg + q];
        for (int t = 0; t < L; t++) {
          const float xh = (x[q * L + t] - m) * r;
          dx[q * L + t] += r * (dy[q * L + t] * gw - a1 - xh * a2);
        }
      }
    }
}

/* ---- mish: x tanh(softplus(x)) ---------------------------------------------------------------------
 * With m = e^-|x| (one expm1 of a non-positive argument, the vectorizable kernel of nn_internal.h):
 * tanh(softplus(x)) = (n^2 + 2n) / (n^2 + 2n + 2) for n = e^x, i.e. (1 + 2m) / (1 + 2m + 2m^2) for x > 0
 * and (m^2 + 2m) / (m^2 + 2m + 2) for x <= 0 (no cancellation either way); sigmoid(x) = 1 / (1 + m) or
 * m / (1 + m). d mish / dx = t + x sigmoid(x) (1 - t^2). */

static inline void mish_parts(float x, float *t, float *sg) {
  const float m = nn_expm1_neg_inline(-fabsf(x)) + 1.0f;
  const float p = x > 0 ? 1.0f + 2.0f * m : m * (m + 2.0f), q = x > 0 ? 2.0f * m * m : 2.0f;
  *t = p / (p + q);
  *sg = (x > 0 ? 1.0f : m) / (1.0f + m);
}

static inline float mish(float x) {
  float t, sg;
  mish_parts(x, &t, &sg);
  return x * t;
}

static inline float mish_grad(float x) {
  float t, sg;
  mish_parts(x, &t, &sg);
  return t + x * sg * (1.0f - t * t);
}

NN_CLONES static void mish_fwd(const float *restrict x, float *restrict y, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    y[i] = mish(x[i]);
}

NN_CLONES static void mish_bwd(const float *restrict x, const float *restrict dy, float *restrict dx,
                               int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dx[i] += dy[i] * mish_grad(x[i]);
}

int64_t nn_mish_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp) {
  (void)c;
  *scratch = *col = *tmp = 0;
  return 0;
}

void nn_mish_forward(const nnSeqCall *c) { mish_fwd(c->x, c->y, (int64_t)c->B * c->cout * c->lout); }

void nn_mish_backward(const nnSeqCall *c) {
  if (!c->dx) return;
  mish_bwd(c->x, c->dy, c->dx, (int64_t)c->B * c->cout * c->lout);
}

/* ---- film: e = Mish(cond) W^T + b [B, 2C] (W [2C, cdim]); y = e[:C] x + e[C:] per channel ------------ */

int64_t nn_film_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp) {
  *scratch = 2 * (int64_t)c->cout; /* e */
  *col = c->cdim;                  /* Mish(cond), then dLoss/dMish(cond) */
  *tmp = 2 * (int64_t)c->cout;     /* dLoss/de */
  return c->cdim;
}

void nn_film_forward(const nnSeqCall *c) {
  const int B = c->B, C = c->cout, L = c->lout, D = c->cdim;
  float *e = c->scratch;
  mish_fwd(c->cond, c->col, (int64_t)B * D);
  for (int b = 0; b < B; b++)
    memcpy(e + (int64_t)b * 2 * C, c->b, sizeof(float) * 2 * (size_t)C);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, 2 * C, D, 1.0f, c->col, D, c->W, D, 1.0f, e, 2 * C);
  for (int b = 0; b < B; b++)
    for (int o = 0; o < C; o++) {
      const float sc = e[(int64_t)b * 2 * C + o], bi = e[(int64_t)b * 2 * C + C + o];
      const float *x = c->x + ((int64_t)b * C + o) * L;
      float *y = c->y + ((int64_t)b * C + o) * L;
      for (int t = 0; t < L; t++)
        y[t] = sc * x[t] + bi;
    }
}

void nn_film_backward(const nnSeqCall *c) {
  const int B = c->B, C = c->cout, L = c->lout, D = c->cdim;
  const float *e = c->scratch;
  float *de = c->tmp;
  for (int b = 0; b < B; b++)
    for (int o = 0; o < C; o++) {
      const float *x = c->x + ((int64_t)b * C + o) * L, *dy = c->dy + ((int64_t)b * C + o) * L;
      const float sc = e[(int64_t)b * 2 * C + o];
      float ds = 0, dbi = 0;
      for (int t = 0; t < L; t++) {
        ds += dy[t] * x[t];
        dbi += dy[t];
      }
      de[(int64_t)b * 2 * C + o] = ds;
      de[(int64_t)b * 2 * C + C + o] = dbi;
      if (c->dx) {
        float *dx = c->dx + ((int64_t)b * C + o) * L;
        for (int t = 0; t < L; t++)
          dx[t] += sc * dy[t];
      }
    }
  if (c->dW) {
    mish_fwd(c->cond, c->col, (int64_t)B * D);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, 2 * C, D, B, 1.0f, de, 2 * C, c->col, D,
                c->accumulate ? 1.0f : 0.0f, c->dW, D);
    if (!c->accumulate) memset(c->db, 0, sizeof(float) * 2 * (size_t)C);
    for (int b = 0; b < B; b++)
      for (int o = 0; o < 2 * C; o++)
        c->db[o] += de[(int64_t)b * 2 * C + o];
  }
  if (c->dcond) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, D, 2 * C, 1.0f, de, 2 * C, c->W, D, 0.0f,
                c->col, D);
    for (int64_t i = 0; i < (int64_t)B * D; i++)
      c->dcond[i] += c->col[i] * mish_grad(c->cond[i]);
  }
}

/* ---- linear (the step encoder's): y = x W^T + b, W [cout, cin] --------------------------------------- */

int64_t nn_seq_linear_sizes(const nnSeqCall *c, int64_t *scratch, int64_t *col, int64_t *tmp) {
  *scratch = *tmp = 0;
  *col = c->cin; /* dLoss/dx before it is added */
  return c->cin;
}

void nn_seq_linear_forward(const nnSeqCall *c) {
  for (int b = 0; b < c->B; b++)
    memcpy(c->y + (int64_t)b * c->cout, c->b, sizeof(float) * (size_t)c->cout);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, c->B, c->cout, c->cin, 1.0f, c->x, c->cin, c->W,
              c->cin, 1.0f, c->y, c->cout);
}

void nn_seq_linear_backward(const nnSeqCall *c) {
  if (c->dW) {
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, c->cout, c->cin, c->B, 1.0f, c->dy, c->cout, c->x,
                c->cin, c->accumulate ? 1.0f : 0.0f, c->dW, c->cin);
    bias_grad(c, c->dy, c->cout, 1);
  }
  if (c->dx) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, c->B, c->cin, c->cout, 1.0f, c->dy, c->cout, c->W,
                c->cin, 0.0f, c->col, c->cin);
    for (int64_t i = 0; i < (int64_t)c->B * c->cin; i++)
      c->dx[i] += c->col[i];
  }
}
