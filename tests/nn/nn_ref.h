/* Shared by the nn tests (tests/nn/test_nn.c, tests/nn/test_lstm.c): the double-precision reference of the
 * network and its heads (an independent forward of the MLP and the heads' losses), the finite-difference
 * helpers that check the library's gradients against it, and the small constructors both use.
 *
 * fd_one differentiates the including file's own reference: that file defines struct fdCtx (what is
 * differentiated) and ref_eval (the scalar it computes), declared below. */
#ifndef NN_REF_H
#define NN_REF_H

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "tk.h"

/* ---- helpers -------------------------------------------------------------------------------------- */

static inline nnArch arch(int obs, int act, int n_hidden, const int *hidden, nnActivation f, int ln,
                          nnHead head) {
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = obs;
  a.act_dim = act;
  a.n_hidden = n_hidden;
  for (int i = 0; i < n_hidden; i++)
    a.hidden[i] = hidden[i];
  a.activation = f;
  a.layer_norm = ln;
  a.head = head;
  return a;
}

static inline nnNet *make(const nnArch *a, uint64_t seed) {
  nnNet *n = nn_net_make(a, seed);
  cr_assert(n, "nn_net_make: %s", tk_errmsg());
  return n;
}

static inline void fill(float *v, size_t n, tkRng *r, double lo, double hi) {
  for (size_t i = 0; i < n; i++)
    v[i] = (float)tk_rng_range(r, lo, hi);
}

static inline double *dmalloc(size_t n) {
  double *p = calloc(n ? n : 1, sizeof(double));
  cr_assert(p);
  return p;
}

/* a double copy of n floats (parameters or inputs for the reference); free() it */
static inline double *to_double(const float *v, size_t n) {
  double *d = dmalloc(n);
  for (size_t i = 0; i < n; i++)
    d[i] = v[i];
  return d;
}

/* LayerNorm gains away from 1 and biases away from 0, so their gradients are tested in general position */
static inline void shake_ln(nnNet *net, tkRng *r) {
  for (int i = 0; i < net->n_tensors; i++) {
    nnTensor *t = &net->tensors[i];
    if (!strncmp(t->name, "ln", 2))
      for (int64_t k = 0; k < t->numel; k++)
        t->data[k] =
            (float)(strstr(t->name, "gain") ? tk_rng_range(r, 0.5, 1.5) : tk_rng_range(r, -0.3, 0.3));
  }
}

/* ---- the double-precision reference: an independent forward of the MLP and the heads ----------------- */

static inline double ref_act(nnActivation f, double v) {
  return f == NN_RELU ? (v > 0 ? v : 0) : f == NN_ELU ? (v > 0 ? v : expm1(v)) : tanh(v);
}

/* the MLP: out [N, out_dim] from parameters P (net->params layout) and input rows X [N, dims[0]] */
static inline void ref_mlp(const nnNet *net, const double *P, const double *X, int N, double *out) {
  const nnArch *a = &net->arch;
  double *cur = dmalloc((size_t)N * net->max_width), *nxt = dmalloc((size_t)N * net->max_width);
  int din = net->dims[0];
  memcpy(cur, X, sizeof(double) * (size_t)N * din);
  for (int l = 0; l < net->n_linear; l++) {
    const nnLayer *L = &net->layer[l];
    const double *W = P + (L->w - net->params), *b = P + (L->b - net->params);
    int dout = net->dims[l + 1], last = l == net->n_linear - 1;
    for (int i = 0; i < N; i++) {
      double *z = nxt + (size_t)i * dout;
      for (int o = 0; o < dout; o++) {
        z[o] = b[o];
        for (int k = 0; k < din; k++)
          z[o] += cur[(size_t)i * din + k] * W[o * din + k];
      }
      if (last) continue;
      if (a->layer_norm) {
        const double *g = P + (L->gain - net->params), *be = P + (L->beta - net->params);
        double m = 0, v = 0;
        for (int o = 0; o < dout; o++)
          m += z[o] / dout;
        for (int o = 0; o < dout; o++)
          v += (z[o] - m) * (z[o] - m) / dout;
        for (int o = 0; o < dout; o++)
          z[o] = (z[o] - m) / sqrt(v + 1e-5) * g[o] + be[o];
      }
      for (int o = 0; o < dout; o++)
        z[o] = ref_act(a->activation, z[o]);
    }
    memcpy(last ? out : cur, nxt, sizeof(double) * (size_t)N * dout);
    din = dout;
  }
  free(cur);
  free(nxt);
}

/* The heads' losses from the network output (mean over rows): MSE, tanh-Gaussian NLL of the clipped
 * action, GMM NLL by log-sum-exp */
static inline double ref_loss(const nnNet *net, const double *out, const float *y, int N) {
  const nnArch *a = &net->arch;
  int A = a->act_dim, D = net->out_dim, K = a->gmm_modes;
  double L = 0;
  for (int i = 0; i < N; i++) {
    const double *o = out + (size_t)i * D;
    const float *yr = y + (size_t)i * A;
    if (a->head == NN_HEAD_MSE) {
      for (int j = 0; j < A; j++) {
        double p = a->tanh ? tanh(o[j]) : o[j];
        L += (p - yr[j]) * (p - yr[j]) / A;
      }
    } else if (a->head == NN_HEAD_GAUSSIAN) {
      for (int j = 0; j < A; j++) {
        double yc = fmin(fmax(yr[j], -0.999999), 0.999999), u = atanh(yc);
        double ls = a->log_std_min + (a->log_std_max - a->log_std_min) * (tanh(o[A + j]) + 1) / 2;
        double z = (u - o[j]) / exp(ls);
        L -= -0.5 * z * z - ls - 0.5 * log(2 * M_PI) - log(1 - yc * yc);
      }
    } else {
      double lw = -INFINITY, c[64];
      for (int k = 0; k < K; k++) {
        double lg = o[2 * K * A + k];
        lw = lw > lg ? lw + log1p(exp(lg - lw)) : lg + log1p(exp(lw - lg)); /* logsumexp of the logits */
      }
      double mx = -INFINITY, s = 0;
      for (int k = 0; k < K; k++) {
        c[k] = o[2 * K * A + k] - lw;
        for (int j = 0; j < A; j++) {
          double m = a->tanh ? tanh(o[k * A + j]) : o[k * A + j];
          double sd = log1p(exp(o[K * A + k * A + j])) + a->gmm_min_std, z = (yr[j] - m) / sd;
          c[k] += -0.5 * z * z - log(sd) - 0.5 * log(2 * M_PI);
        }
        mx = fmax(mx, c[k]);
      }
      for (int k = 0; k < K; k++)
        s += exp(c[k] - mx);
      L -= mx + log(s);
    }
  }
  return L / N;
}

/* ---- finite differences ------------------------------------------------------------------------------ */

/* Defined by the including test: what is differentiated, and the reference scalar of parameters P and
 * inputs X (both double, perturbed in place by fd_one). */
typedef struct fdCtx fdCtx;
static double ref_eval(const nnNet *net, const double *P, const double *X, const fdCtx *c);

/* Numeric derivative of the reference: central differences at h and h/2 combined by Richardson
 * extrapolation (4 D(h/2) - D(h)) / 3. If D(h) and D(h/2) disagree by > 1% the function is not smooth
 * within h (a ReLU kink): the entry is skipped and counted. Relative errors are taken against
 * max(|analytic|, |numeric|, FD_FLOOR); worst names the tensor of the largest. */
typedef struct {
  double max_rel;
  int n, skipped;
  char worst[NN_NAME_MAX];
} fdStat;

#define FD_H 1e-5
#define FD_FLOOR 1e-4
#define FD_TOL 1e-3

/* one entry *v (inside P or X) of tensor `name` against its analytic derivative */
static inline void fd_one(const nnNet *net, const double *P, const double *X, const fdCtx *c, double *v,
                          double analytic_g, fdStat *s, const char *name) {
  double v0 = *v, d[2];
  for (int k = 0; k < 2; k++) {
    double h = FD_H / (1 + k);
    *v = v0 + h;
    double fp = ref_eval(net, P, X, c);
    *v = v0 - h;
    d[k] = (fp - ref_eval(net, P, X, c)) / (2 * h);
  }
  *v = v0;
  s->n++;
  if (fabs(d[0] - d[1]) > 0.01 * fmax(fmax(fabs(d[0]), fabs(d[1])), FD_FLOOR)) {
    s->skipped++;
    return;
  }
  double num = (4 * d[1] - d[0]) / 3;
  double rel = fabs(analytic_g - num) / fmax(fmax(fabs(analytic_g), fabs(num)), FD_FLOOR);
  if (rel > s->max_rel) {
    s->max_rel = rel;
    snprintf(s->worst, sizeof s->worst, "%s", name);
  }
}

static inline void report(const char *what, fdStat s) {
  printf("fd %-44s max_rel_err=%.3e (%s) over %d entries (%d skipped at kinks)\n", what, s.max_rel, s.worst,
         s.n, s.skipped);
  cr_assert_lt(s.max_rel, FD_TOL, "%s: gradient mismatch, max relative error %.3e in %s", what, s.max_rel,
               s.worst);
  cr_assert_leq(s.skipped, s.n / 20, "%s: %d of %d entries not smooth", what, s.skipped, s.n);
}

#endif
