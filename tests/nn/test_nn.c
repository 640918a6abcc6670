/* nn: finite-difference gradient checks of every layer and head, training, Adam, clipping,
 * determinism, GMM modes, tanh-Gaussian density, JSON architecture, tensors, errors, no allocation. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "nn_internal.h" /* the activations' float kernels */
#include "tk.h"
#include "nn_ref.h" /* the double-precision reference, finite differences, arch/make/fill */

/* ---- helpers -------------------------------------------------------------------------------------- */

static nnWork *work(const nnNet *n, int B) {
  nnWork *w = nn_work_make(n, B);
  cr_assert(w, "nn_work_make: %s", tk_errmsg());
  return w;
}

/* What is differentiated: PROBE L = sum(out .* R) through nn_backward_out; LOSS the head's nn_loss;
 * GSAMPLE L = sum(act .* R) + sum(logp .* Rl) of nn_gauss_sample with fixed eps. */
enum { PROBE, LOSS, GSAMPLE };
struct fdCtx {
  int kind, B;
  const float *x;  /* input [B, obs] */
  const float *y;  /* targets [B, A] (LOSS) */
  const float *R;  /* [B, out_dim] (PROBE) or [B, A] (GSAMPLE) */
  const float *Rl; /* [B] (GSAMPLE) */
  const float *eps;
};

/* ---- the reference (nn_ref.h) of the plain network, with the tanh-Gaussian sample ------------------- */

/* tanh-Gaussian sample: a = tanh(mu + std eps), logp with log(1 - tanh^2 u) = 2 (log 2 - u - softplus(-2u))
 */
static void ref_gsample(const nnNet *net, const double *out, const float *eps, int B, double *act,
                        double *logp) {
  const nnArch *a = &net->arch;
  int A = a->act_dim, D = net->out_dim;
  for (int i = 0; i < B; i++) {
    const double *o = out + (size_t)i * D;
    logp[i] = 0;
    for (int j = 0; j < A; j++) {
      double ls = a->log_std_min + (a->log_std_max - a->log_std_min) * (tanh(o[A + j]) + 1) / 2;
      double e = eps[i * A + j], u = o[j] + exp(ls) * e, sp = fmax(-2 * u, 0) + log1p(exp(-fabs(2 * u)));
      act[i * A + j] = tanh(u);
      logp[i] += -0.5 * e * e - ls - 0.5 * log(2 * M_PI) - 2 * (log(2) - u - sp);
    }
  }
}

static double ref_eval(const nnNet *net, const double *P, const double *X, const fdCtx *c) {
  double out[64 * 64], act[1024], lp[64], L = 0;
  int A = net->arch.act_dim;
  cr_assert_leq(c->B * net->max_width, 64 * 64); /* out fits */
  ref_mlp(net, P, X, c->B, out);
  if (c->kind == PROBE) {
    for (int i = 0; i < c->B * net->out_dim; i++)
      L += out[i] * c->R[i];
  } else if (c->kind == LOSS) {
    L = ref_loss(net, out, c->y, c->B);
  } else {
    ref_gsample(net, out, c->eps, c->B, act, lp);
    for (int i = 0; i < c->B; i++) {
      L += lp[i] * c->Rl[i];
      for (int j = 0; j < A; j++)
        L += act[i * A + j] * c->R[i * A + j];
    }
  }
  return L;
}

/* analytic gradients of the library (float) into net->grads, dx if not NULL (PROBE only); also checks
 * the library's forward values against the reference at parameters P and inputs X */
static void analytic(nnNet *net, nnWork *w, const fdCtx *c, const double *P, const double *X, float *dx) {
  int A = net->arch.act_dim;
  double ref = ref_eval(net, P, X, c);
  nn_zero_grad(net);
  double L = 0;
  if (c->kind == PROBE) {
    cr_assert_eq(nn_forward(net, w, c->x, c->B), 0, "%s", tk_errmsg());
    for (int i = 0; i < c->B * net->out_dim; i++)
      L += (double)w->out[i] * c->R[i];
    cr_assert_eq(nn_backward_out(net, w, c->R, dx, 1), 0, "%s", tk_errmsg());
  } else if (c->kind == LOSS) {
    float l;
    cr_assert_eq(nn_loss(net, w, c->x, c->y, c->B, &l), 0, "%s", tk_errmsg());
    L = l;
    cr_assert_eq(nn_backward(net, w), 0, "%s", tk_errmsg());
  } else {
    cr_assert_eq(nn_gauss_sample(net, w, c->x, c->B, c->eps, NULL, NULL), 0, "%s", tk_errmsg());
    for (int i = 0; i < c->B; i++) {
      L += (double)w->logp[i] * c->Rl[i];
      for (int j = 0; j < A; j++)
        L += (double)w->act[i * A + j] * c->R[i * A + j];
    }
    cr_assert_eq(nn_gauss_backward(net, w, c->R, c->Rl), 0, "%s", tk_errmsg());
  }
  cr_assert_float_eq(L, ref, 1e-5 * fabs(ref) + 1e-5, "library forward %.8g vs double reference %.8g", L,
                     ref);
}

/* every parameter (and every input if check_x) by fd_one; corrupt >= 0 scales that analytic entry by 1.05 */
static fdStat fd_check(nnNet *net, nnWork *w, const fdCtx *c, int check_x, int64_t corrupt) {
  int nx = c->B * net->arch.obs_dim;
  float *g = malloc(sizeof(float) * (size_t)net->n_params), *dx = malloc(sizeof(float) * (size_t)nx);
  double *P = to_double(net->params, (size_t)net->n_params), *X = to_double(c->x, (size_t)nx);
  analytic(net, w, c, P, X, check_x ? dx : NULL);
  memcpy(g, net->grads, sizeof(float) * (size_t)net->n_params);
  if (corrupt >= 0) g[corrupt] *= 1.05f;
  fdStat s = {0};
  for (int t = 0; t < net->n_tensors; t++) {
    const nnTensor *T = &net->tensors[t];
    for (int64_t k = 0; k < T->numel; k++)
      fd_one(net, P, X, c, &P[T->offset + k], g[T->offset + k], &s, T->name);
  }
  if (check_x)
    for (int k = 0; k < nx; k++)
      fd_one(net, P, X, c, &X[k], dx[k], &s, "input");
  free(g);
  free(dx);
  free(P);
  free(X);
  return s;
}

/* probe check of a network: random input, random R, params and inputs */
static fdStat probe_check(const nnArch *a, uint64_t seed, int B, int64_t corrupt) {
  nnNet *net = make(a, seed);
  nnWork *w = work(net, B);
  tkRng r;
  tk_rng_seed(&r, seed + 100);
  shake_ln(net, &r);
  float *x = malloc(sizeof(float) * (size_t)B * a->obs_dim),
        *R = malloc(sizeof(float) * (size_t)B * net->out_dim);
  fill(x, (size_t)B * a->obs_dim, &r, -1.5, 1.5);
  fill(R, (size_t)B * net->out_dim, &r, -1, 1);
  fdCtx c = {.kind = PROBE, .B = B, .x = x, .R = R};
  fdStat s = fd_check(net, w, &c, 1, corrupt);
  free(x);
  free(R);
  nn_work_free(w);
  nn_net_free(net);
  return s;
}

/* ---- finite differences ------------------------------------------------------------------------- */

Test(fd, linear) {
  nnArch a = arch(5, 4, 0, NULL, NN_RELU, 0, NN_HEAD_MSE); /* no hidden layer: one Linear */
  report("linear (W, b, x)", probe_check(&a, 1, 3, -1));
}

Test(fd, activations) {
  const int h[1] = {9};
  const char *names[3] = {"linear+relu+linear", "linear+elu+linear", "linear+tanh+linear"};
  for (int f = NN_RELU; f <= NN_TANH; f++) {
    nnArch a = arch(4, 3, 1, h, (nnActivation)f, 0, NN_HEAD_MSE);
    report(names[f], probe_check(&a, 2 + f, 4, -1));
  }
}

Test(fd, layernorm) {
  const int h[1] = {7};
  nnArch a = arch(4, 3, 1, h, NN_TANH, 1, NN_HEAD_MSE);
  report("linear+layernorm+tanh+linear", probe_check(&a, 5, 4, -1));
}

Test(fd, mlp) {
  const int h[3] = {8, 6, 7};
  nnArch a = arch(5, 3, 3, h, NN_ELU, 1, NN_HEAD_MSE);
  report("mlp 5-8-6-7-3 elu layernorm", probe_check(&a, 6, 4, -1));
  nnArch b = arch(5, 3, 3, h, NN_RELU, 0, NN_HEAD_MSE);
  report("mlp 5-8-6-7-3 relu", probe_check(&b, 7, 4, -1));
}

static fdStat loss_check(const nnArch *a, uint64_t seed, int B, const float *y_fixed, int64_t corrupt) {
  nnNet *net = make(a, seed);
  nnWork *w = work(net, B);
  tkRng r;
  tk_rng_seed(&r, seed + 7);
  float *x = malloc(sizeof(float) * (size_t)B * a->obs_dim),
        *y = malloc(sizeof(float) * (size_t)B * a->act_dim);
  fill(x, (size_t)B * a->obs_dim, &r, -1.5, 1.5);
  fill(y, (size_t)B * a->act_dim, &r, -0.9, 0.9);
  if (y_fixed) memcpy(y, y_fixed, sizeof(float) * (size_t)B * a->act_dim);
  fdCtx c = {.kind = LOSS, .B = B, .x = x, .y = y};
  fdStat s = fd_check(net, w, &c, 0, corrupt);
  free(x);
  free(y);
  nn_work_free(w);
  nn_net_free(net);
  return s;
}

Test(fd, mse_head) {
  const int h[1] = {6};
  nnArch a = arch(4, 3, 1, h, NN_TANH, 0, NN_HEAD_MSE);
  report("mse head", loss_check(&a, 11, 5, NULL, -1));
  a.tanh = 1;
  report("mse head, tanh-bounded", loss_check(&a, 12, 5, NULL, -1));
}

Test(fd, gaussian_nll) {
  const int h[1] = {6};
  nnArch a = arch(4, 2, 1, h, NN_TANH, 0, NN_HEAD_GAUSSIAN);
  /* includes actions at and beyond the +-(1-1e-6) clip */
  const float y[8] = {0.3f, -0.5f, 1.0f, -0.99f, -1.0f, 0.9999999f, 0.0f, 0.7f};
  report("gaussian head nll", loss_check(&a, 13, 4, y, -1));
}

Test(fd, gaussian_sample_backward) {
  const int h[1] = {6};
  nnArch a = arch(4, 3, 1, h, NN_ELU, 1, NN_HEAD_GAUSSIAN);
  int B = 4;
  nnNet *net = make(&a, 14);
  nnWork *w = work(net, B);
  tkRng r;
  tk_rng_seed(&r, 15);
  shake_ln(net, &r);
  float x[16], eps[12], R[12], Rl[4];
  fill(x, 16, &r, -1.5, 1.5);
  for (int i = 0; i < 12; i++)
    eps[i] = (float)tk_rng_normal(&r);
  fill(R, 12, &r, -1, 1);
  fill(Rl, 4, &r, -1, 1);
  fdCtx c = {.kind = GSAMPLE, .B = B, .x = x, .R = R, .Rl = Rl, .eps = eps};
  report("gaussian sample (d act, d logp)", fd_check(net, w, &c, 0, -1));
  /* each part alone */
  float zero[12] = {0};
  c.R = zero;
  report("gaussian sample (d logp only)", fd_check(net, w, &c, 0, -1));
  c.R = R;
  c.Rl = zero;
  report("gaussian sample (d act only)", fd_check(net, w, &c, 0, -1));
  nn_work_free(w);
  nn_net_free(net);
}

Test(fd, gmm_head) {
  const int h[1] = {6};
  nnArch a = arch(3, 2, 1, h, NN_TANH, 0, NN_HEAD_GMM);
  a.gmm_modes = 3;
  report("gmm head nll (3 modes)", loss_check(&a, 16, 4, NULL, -1));
  a.tanh = 1;
  report("gmm head nll, tanh means", loss_check(&a, 17, 4, NULL, -1));
  a.gmm_modes = 5;
  a.layer_norm = 1;
  report("gmm head nll (5 modes, layernorm)", loss_check(&a, 18, 4, NULL, -1));
}

/* the checker itself must fail on a wrong gradient: 5% off in one entry */
Test(fd, checker_catches_a_wrong_gradient) {
  const int h[1] = {6};
  nnArch a = arch(4, 3, 1, h, NN_TANH, 0, NN_HEAD_MSE);
  fdStat s = probe_check(&a, 3, 4, 7);
  printf("fd with one entry corrupted by 5%%: max_rel_err=%.3e\n", s.max_rel);
  cr_assert_gt(s.max_rel, FD_TOL);
  a.head = NN_HEAD_GMM;
  s = loss_check(&a, 16, 4, NULL, 20);
  cr_assert_gt(s.max_rel, FD_TOL);
}

/* the vectorizable expm1/tanh of ELU and tanh layers against double libm, in ulp of the float result */
static double ulp_err(float got, double want) {
  int e;
  frexp(want, &e);
  return fabs(got - want) / ldexp(1.0, e - 24);
}

Test(activations, float_kernels_are_accurate) {
  double me = 0, mt = 0;
  uint32_t n = 0;
  for (uint32_t b = 0; b < 0x42B00000u; b += 4099, n++) { /* floats in [0, 88) */
    float x;
    memcpy(&x, &b, 4);
    if (x > 0) me = fmax(me, ulp_err(nn_expm1_neg(-x), expm1(-(double)x)));
    mt = fmax(mt, fmax(ulp_err(nn_tanh(x), tanh((double)x)), ulp_err(nn_tanh(-x), tanh(-(double)x))));
  }
  printf("float kernels over %u points: expm1 (x <= 0) max %.2f ulp, tanh max %.2f ulp\n", n, me, mt);
  cr_assert_lt(me, 2.0);
  cr_assert_lt(mt, 3.0);
  cr_assert_eq(nn_expm1_neg(-1000.0f), -1.0f);
  cr_assert_eq(nn_tanh(30.0f), 1.0f);
  cr_assert_eq(nn_tanh(-0.0f), 0.0f);
  cr_assert(isnan(nn_tanh(NAN)));
}

/* ---- training and optimizer ---------------------------------------------------------------------- */

static void toy_data(tkRng *r, float *x, float *y, int n) {
  for (int i = 0; i < n; i++) {
    float a = (float)tk_rng_range(r, -1, 1), b = (float)tk_rng_range(r, -1, 1);
    x[2 * i] = a;
    x[2 * i + 1] = b;
    y[2 * i] = sinf(2 * a) * 0.8f + 0.3f * b;
    y[2 * i + 1] = a * b;
  }
}

Test(train, toy_regression_loss_drops_10x) {
  const int h[2] = {64, 64};
  nnArch a = arch(2, 2, 2, h, NN_RELU, 0, NN_HEAD_MSE);
  nnNet *net = make(&a, 1);
  int B = 64, N = 2048;
  nnWork *w = work(net, N);
  float *X = malloc(sizeof(float) * N * 2), *Y = malloc(sizeof(float) * N * 2), xb[128], yb[128];
  tkRng r;
  tk_rng_seed(&r, 2);
  toy_data(&r, X, Y, N);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-3;
  float l0, l1;
  cr_assert_eq(nn_loss(net, w, X, Y, N, &l0), 0);
  for (int s = 0; s < 3000; s++) {
    for (int i = 0; i < B; i++) {
      int k = (int)tk_rng_below(&r, N);
      memcpy(xb + 2 * i, X + 2 * k, 8);
      memcpy(yb + 2 * i, Y + 2 * k, 8);
    }
    float l;
    cr_assert_eq(nn_train_step(net, w, &o, xb, yb, B, &l, NULL), 0, "%s", tk_errmsg());
  }
  cr_assert_eq(nn_loss(net, w, X, Y, N, &l1), 0);
  printf("toy regression: loss %.5f -> %.5f (%.1fx)\n", l0, l1, l0 / l1);
  cr_assert_lt(l1 * 10, l0);
  free(X);
  free(Y);
  nn_work_free(w);
  nn_net_free(net);
}

Test(train, backward_accumulates_and_train_step_matches_manual_steps) {
  const int h[1] = {16};
  nnArch a = arch(2, 2, 1, h, NN_TANH, 1, NN_HEAD_MSE);
  nnNet *n1 = make(&a, 3), *n2 = make(&a, 3);
  nnWork *w = work(n1, 32);
  float X[64], Y[64];
  tkRng r;
  tk_rng_seed(&r, 4);
  toy_data(&r, X, Y, 32);
  nnAdamOpts o;
  nn_adam_default(&o);
  float l1, l2;
  /* two backward passes accumulate: grads of twice the loss */
  nn_zero_grad(n1);
  nn_loss(n1, w, X, Y, 32, &l1);
  nn_backward(n1, w);
  float g1 = n1->grads[3];
  nn_backward(n1, w);
  cr_assert_float_eq(n1->grads[3], 2 * g1, 1e-6 * fabsf(g1) + 1e-12);
  for (int s = 0; s < 5; s++) {
    cr_assert_eq(nn_train_step(n1, w, &o, X, Y, 32, &l1, NULL), 0);
    nn_zero_grad(n2);
    cr_assert_eq(nn_loss(n2, w, X, Y, 32, &l2), 0);
    cr_assert_eq(nn_backward(n2, w), 0);
    cr_assert_eq(nn_adam_step(n2, &o, NULL), 0);
    cr_assert_eq(l1, l2);
  }
  cr_assert_eq(memcmp(n1->params, n2->params, sizeof(float) * (size_t)n1->n_params), 0);
  nn_work_free(w);
  nn_net_free(n1);
  nn_net_free(n2);
}

Test(adam, matches_hand_computed_update) {
  nnArch a = arch(3, 2, 0, NULL, NN_RELU, 0, NN_HEAD_MSE);
  for (int wd = 0; wd < 2; wd++) {
    nnNet *net = make(&a, 5);
    nnAdamOpts o;
    nn_adam_default(&o);
    o.lr = 0.01;
    o.weight_decay = wd ? 0.1 : 0;
    const nnTensor *W = nn_tensor_find(net, "l0.weight"), *b = nn_tensor_find(net, "l0.bias");
    cr_assert(W && b);
    /* hand computation in double for W[1] (decayed under AdamW) and b[0] (never decayed) */
    double pw = W->data[1], pb = b->data[0], mw = 0, vw = 0, mb = 0, vb = 0;
    const double gs[4] = {0.5, -0.2, 0.05, 1.5};
    double maxd = 0;
    for (int t = 1; t <= 4; t++) {
      nn_zero_grad(net);
      W->grad[1] = (float)gs[t - 1];
      b->grad[0] = (float)(-gs[t - 1]);
      cr_assert_eq(nn_adam_step(net, &o, NULL), 0);
      double bc1 = 1 - pow(0.9, t), bc2 = 1 - pow(0.999, t);
      pw *= 1 - o.lr * o.weight_decay;
      mw = 0.9 * mw + 0.1 * gs[t - 1];
      vw = 0.999 * vw + 0.001 * gs[t - 1] * gs[t - 1];
      pw -= o.lr / bc1 * mw / (sqrt(vw) / sqrt(bc2) + 1e-8);
      mb = 0.9 * mb - 0.1 * gs[t - 1];
      vb = 0.999 * vb + 0.001 * gs[t - 1] * gs[t - 1];
      pb -= o.lr / bc1 * mb / (sqrt(vb) / sqrt(bc2) + 1e-8);
      maxd = fmax(maxd, fmax(fabs(W->data[1] - pw), fabs(b->data[0] - pb)));
      cr_assert_float_eq(W->data[1], pw, 2e-6, "step %d weight %.9g vs %.9g", t, W->data[1], pw);
      cr_assert_float_eq(b->data[0], pb, 2e-6, "step %d bias %.9g vs %.9g", t, b->data[0], pb);
    }
    printf("adam (weight_decay %.1f): max |ours - hand| over 4 steps = %.2e\n", o.weight_decay, maxd);
    cr_assert_eq(net->adam_t, 4);
    nn_net_free(net);
  }
}

Test(adam, clipping_caps_the_global_norm) {
  const int h[1] = {5};
  nnArch a = arch(3, 2, 1, h, NN_RELU, 1, NN_HEAD_MSE);
  nnNet *net = make(&a, 6);
  tkRng r;
  tk_rng_seed(&r, 7);
  for (int i = 0; i < net->n_tensors; i++)
    fill(net->tensors[i].grad, (size_t)net->tensors[i].numel, &r, -3, 3);
  double n0 = nn_grad_norm(net);
  float g0 = net->grads[2];
  double pre = nn_clip_grad(net, 1.0);
  double n1 = nn_grad_norm(net);
  printf("clip: norm %.4f -> %.6f (max 1)\n", n0, n1);
  cr_assert_float_eq(pre, n0, 1e-9);
  cr_assert_float_eq(n1, 1.0, 1e-5);
  cr_assert_float_eq(net->grads[2], g0 / n0, 1e-6);       /* direction kept */
  cr_assert_float_eq(nn_clip_grad(net, 10.0), n1, 1e-12); /* under the cap: unchanged */
  cr_assert_float_eq(nn_grad_norm(net), n1, 1e-12);
  /* inside Adam: the step reports the pre-clip norm and moves with the clipped gradient */
  nnAdamOpts o;
  nn_adam_default(&o);
  o.clip_norm = 0.5;
  double gn = 0;
  cr_assert_eq(nn_adam_step(net, &o, &gn), 0);
  cr_assert_float_eq(gn, n1, 1e-6);
  cr_assert_float_eq(net->adam_m[2], 0.1f * net->grads[2] * (float)(0.5 / (n1 + 1e-6)), 1e-7);
  nn_net_free(net);
}

/* ---- determinism ----------------------------------------------------------------------------------- */

static void train_n(nnNet *net, nnWork *w, nnTeam *t, int steps, float *loss_out) {
  tkRng r;
  tk_rng_seed(&r, 99);
  float X[64 * 8], Y[64 * 2];
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-3;
  o.clip_norm = 5;
  for (int s = 0; s < steps; s++) {
    fill(X, 64 * 8, &r, -1, 1);
    fill(Y, 64 * 2, &r, -1, 1);
    int rc = t ? nn_team_train_step(net, t, &o, X, Y, 64, &loss_out[s], NULL)
               : nn_train_step(net, w, &o, X, Y, 64, &loss_out[s], NULL);
    cr_assert_eq(rc, 0, "%s", tk_errmsg());
  }
}

Test(determinism, same_seed_same_weights_and_training) {
  const int h[2] = {32, 32};
  nnArch a = arch(8, 2, 2, h, NN_RELU, 1, NN_HEAD_GMM);
  nnNet *n1 = make(&a, 42), *n2 = make(&a, 42), *n3 = make(&a, 43);
  cr_assert_eq(memcmp(n1->params, n2->params, sizeof(float) * (size_t)n1->n_params), 0);
  cr_assert_neq(memcmp(n1->params, n3->params, sizeof(float) * (size_t)n1->n_params), 0);
  /* nn_net_init reproduces nn_net_make */
  nn_net_init(n3, 42);
  cr_assert_eq(memcmp(n1->params, n3->params, sizeof(float) * (size_t)n1->n_params), 0);
  nnWork *w = work(n1, 64);
  float l1[30], l2[30];
  for (int threads = 1; threads <= 2; threads++) {
    nn_set_threads(threads);
    nn_net_init(n1, 42);
    nn_net_init(n2, 42);
    train_n(n1, w, NULL, 30, l1);
    train_n(n2, w, NULL, 30, l2);
    cr_assert_eq(memcmp(l1, l2, sizeof l1), 0, "openblas threads %d: losses differ", threads);
    cr_assert_eq(memcmp(n1->params, n2->params, sizeof(float) * (size_t)n1->n_params), 0);
  }
  /* data-parallel team: same team size, same bits; a 1-thread team equals nn_train_step */
  for (int threads = 1; threads <= 3; threads++) {
    nnTeam *t = nn_team_make(n1, 64, threads);
    cr_assert(t, "%s", tk_errmsg());
    nn_net_init(n1, 42);
    nn_net_init(n2, 42);
    train_n(n1, NULL, t, 30, l1);
    train_n(n2, NULL, t, 30, l2);
    cr_assert_eq(memcmp(n1->params, n2->params, sizeof(float) * (size_t)n1->n_params), 0);
    if (threads == 1) {
      nn_net_init(n2, 42);
      train_n(n2, w, NULL, 30, l2);
      cr_assert_eq(memcmp(n1->params, n2->params, sizeof(float) * (size_t)n1->n_params), 0);
    } else {
      nn_net_init(n2, 42);
      train_n(n2, w, NULL, 30, l2);
      double md = 0;
      for (int s = 0; s < 30; s++)
        md = fmax(md, fabs(l1[s] - l2[s]));
      printf("team of %d vs single thread: max loss difference over 30 steps %.2e\n", threads, md);
      cr_assert_lt(md, 1e-3);
    }
    nn_team_free(t);
  }
  nn_work_free(w);
  nn_net_free(n1);
  nn_net_free(n2);
  nn_net_free(n3);
}

Test(team, batches_smaller_than_the_team_and_clipping) {
  const int h[1] = {16};
  nnArch a = arch(3, 2, 1, h, NN_TANH, 1, NN_HEAD_MSE);
  nnNet *n1 = make(&a, 5), *n2 = make(&a, 5);
  nnWork *w = work(n1, 8);
  nnTeam *t = nn_team_make(n1, 8, 3);
  cr_assert(t, "%s", tk_errmsg());
  cr_assert_eq(nn_team_threads(t), 3);
  float x[24], y[16], l1, l2;
  tkRng r;
  tk_rng_seed(&r, 6);
  fill(x, 24, &r, -1, 1);
  fill(y, 16, &r, -1, 1);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.clip_norm = 0.01; /* clips every step */
  for (int B = 1; B <= 8; B++) {
    double g1, g2;
    cr_assert_eq(nn_team_train_step(n1, t, &o, x, y, B, &l1, &g1), 0, "%s", tk_errmsg());
    cr_assert_eq(nn_train_step(n2, w, &o, x, y, B, &l2, &g2), 0, "%s", tk_errmsg());
    cr_assert_float_eq(l1, l2, 1e-6, "batch %d: loss %g vs %g", B, l1, l2);
    cr_assert_float_eq(g1, g2, 1e-5 * g2, "batch %d: grad norm %g vs %g", B, g1, g2);
  }
  double md = 0;
  for (int64_t i = 0; i < n1->n_params; i++)
    md = fmax(md, fabs(n1->params[i] - n2->params[i]));
  printf("team of 3 on batches 1..8 with clipping: max |param difference| to one thread %.2e\n", md);
  cr_assert_lt(md, 1e-6);
  cr_assert_eq(n1->adam_t, 8);
  nn_team_free(t);
  nn_work_free(w);
  nn_net_free(n1);
  nn_net_free(n2);
}

Test(backward, input_gradient_without_parameter_gradients) {
  /* a critic's dQ/d(input) for the actor update: param_grads 0 leaves the gradient block alone */
  const int h[2] = {8, 8};
  nnArch a = arch(5, 1, 2, h, NN_RELU, 1, NN_HEAD_MSE);
  nnNet *net = make(&a, 9);
  nnWork *w = work(net, 4);
  float x[20], dq[4] = {1, -1, 0.5f, 2}, dx1[20], dx2[20];
  tkRng r;
  tk_rng_seed(&r, 10);
  fill(x, 20, &r, -1, 1);
  nn_zero_grad(net);
  cr_assert_eq(nn_forward(net, w, x, 4), 0);
  cr_assert_eq(nn_backward_out(net, w, dq, dx1, 0), 0);
  for (int64_t i = 0; i < net->n_params; i++)
    cr_assert_eq(net->grads[i], 0.0f);
  cr_assert_eq(nn_backward_out(net, w, dq, dx2, 1), 0);
  cr_assert_eq(memcmp(dx1, dx2, sizeof dx1), 0);
  cr_assert_gt(nn_grad_norm(net), 0);
  nn_work_free(w);
  nn_net_free(net);
}

/* A network made to act has the parameters of a trainable one (same seed, same bits) and acts the same;
 * every gradient or Adam entry point refuses it with a message until nn_net_add_training, after which
 * it trains bit for bit as a network made to train. */
Test(acting, parameters_only_until_training_is_added) {
  const int h[2] = {16, 8};
  nnArch a = arch(5, 3, 2, h, NN_ELU, 1, NN_HEAD_GAUSSIAN);
  nnNet *tr = make(&a, 31);
  nnNet *ac = nn_net_make_acting(&a, 31);
  cr_assert(ac, "%s", tk_errmsg());
  cr_assert_eq(nn_net_trainable(tr), 1);
  cr_assert_eq(nn_net_trainable(ac), 0);
  cr_assert_eq(nn_net_trainable(NULL), 0);
  cr_assert_null(ac->grads);
  cr_assert_null(ac->adam_m);
  cr_assert_null(ac->adam_v);
  cr_assert_eq(ac->n_params, tr->n_params);
  cr_assert_eq(ac->n_tensors, tr->n_tensors);
  for (int i = 0; i < ac->n_tensors; i++) {
    cr_assert_str_eq(ac->tensors[i].name, tr->tensors[i].name);
    cr_assert_null(ac->tensors[i].grad);
    cr_assert_eq(ac->tensors[i].data, ac->params + ac->tensors[i].offset);
  }
  cr_assert_null(ac->layer[0].dw);
  cr_assert_null(ac->layer[0].dgain);
  cr_assert_eq(memcmp(ac->params, tr->params, sizeof(float) * (size_t)tr->n_params), 0);
  /* acting: deterministic actions, samples, dLoss/dinput without parameter gradients */
  enum { B = 6 };
  float x[B * 5], y[B * 3], act1[B * 3], act2[B * 3], dq[B * 6], dx1[B * 5], dx2[B * 5];
  tkRng r;
  tk_rng_seed(&r, 32);
  fill(x, B * 5, &r, -1, 1);
  fill(y, B * 3, &r, -0.9, 0.9);
  fill(dq, B * 6, &r, -1, 1);
  nnWork *wt = work(tr, B), *wa = work(ac, B);
  cr_assert_eq(nn_act(tr, wt, x, B, act1), 0);
  cr_assert_eq(nn_act(ac, wa, x, B, act2), 0, "%s", tk_errmsg());
  cr_assert_eq(memcmp(act1, act2, sizeof act1), 0);
  cr_assert_eq(nn_forward(tr, wt, x, B), 0);
  cr_assert_eq(nn_backward_out(tr, wt, dq, dx1, 0), 0);
  cr_assert_eq(nn_forward(ac, wa, x, B), 0);
  cr_assert_eq(nn_backward_out(ac, wa, dq, dx2, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(memcmp(dx1, dx2, sizeof dx1), 0);
  /* training: refused, each with a message naming the call */
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-3;
  float loss;
  cr_assert_eq(nn_backward_out(ac, wa, dq, dx2, 1), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "nn_backward_out") && strstr(tk_errmsg(), "made to act"), "%s", tk_errmsg());
  cr_assert_eq(nn_loss(ac, wa, x, y, B, &loss), 0);
  cr_assert_eq(nn_backward(ac, wa), TK_EINVAL);
  cr_assert_eq(nn_adam_step(ac, &o, NULL), TK_EINVAL);
  cr_assert_eq(nn_train_step(ac, wa, &o, x, y, B, &loss, NULL), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "nn_train_step"), "%s", tk_errmsg());
  float eps[B * 3], dact[B * 3];
  fill(eps, B * 3, &r, -1, 1);
  fill(dact, B * 3, &r, -1, 1);
  cr_assert_eq(nn_gauss_sample(ac, wa, x, B, eps, act2, NULL), 0);
  cr_assert_eq(nn_gauss_backward(ac, wa, dact, NULL), TK_EINVAL);
  cr_assert_null(nn_team_make(ac, B, 2));
  cr_assert(strstr(tk_errmsg(), "nn_team_make"), "%s", tk_errmsg());
  nn_zero_grad(ac); /* no-ops, never a crash */
  nn_adam_reset(ac);
  cr_assert_eq(nn_grad_norm(ac), 0);
  cr_assert_eq(nn_clip_grad(ac, 1), 0);
  nn_net_init(ac, 31);
  cr_assert_eq(memcmp(ac->params, tr->params, sizeof(float) * (size_t)tr->n_params), 0);
  /* training given on demand: the same steps, the same bits */
  cr_assert_eq(nn_net_add_training(ac), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_net_trainable(ac), 1);
  cr_assert_eq(nn_net_add_training(ac), 0); /* no-op */
  cr_assert_eq(ac->tensors[2].grad, ac->grads + ac->tensors[2].offset);
  cr_assert_eq(ac->layer[1].dgain, nn_tensor_find(ac, "ln1.gain")->grad);
  float l1, l2;
  for (int s = 0; s < 5; s++) {
    cr_assert_eq(nn_train_step(tr, wt, &o, x, y, B, &l1, NULL), 0, "%s", tk_errmsg());
    cr_assert_eq(nn_train_step(ac, wa, &o, x, y, B, &l2, NULL), 0, "%s", tk_errmsg());
    cr_assert_eq(l1, l2);
  }
  cr_assert_eq(memcmp(ac->params, tr->params, sizeof(float) * (size_t)tr->n_params), 0);
  cr_assert_eq(memcmp(ac->adam_v, tr->adam_v, sizeof(float) * (size_t)tr->n_params), 0);
  cr_assert_eq(ac->adam_t, 5);
  nnTeam *t = nn_team_make(ac, B, 2);
  cr_assert(t, "%s", tk_errmsg());
  cr_assert_eq(nn_team_train_step(ac, t, &o, x, y, B, &l2, NULL), 0, "%s", tk_errmsg());
  nn_team_free(t);
  nn_work_free(wt);
  nn_work_free(wa);
  nn_net_free(tr);
  nn_net_free(ac);
  cr_assert_eq(nn_net_add_training(NULL), TK_EINVAL);
}

/* The layout without allocation, and the bound on the whole network's size (naming the tensor) */
Test(acting, plan_and_parameter_bound) {
  const int h[3] = {40, 29, 7};
  nnArch a = arch(19, 7, 3, h, NN_RELU, 1, NN_HEAD_GMM);
  a.rnn_layers = 2;
  a.rnn_hidden = 12;
  nnNet plan;
  cr_assert_eq(nn_net_plan(&a, &plan), 0, "%s", tk_errmsg());
  nnNet *net = make(&a, 1);
  cr_assert_eq(plan.n_params, net->n_params);
  cr_assert_eq(plan.n_tensors, net->n_tensors);
  cr_assert_eq(plan.out_dim, net->out_dim);
  for (int i = 0; i < net->n_tensors; i++) {
    cr_assert_str_eq(plan.tensors[i].name, net->tensors[i].name);
    cr_assert_eq(plan.tensors[i].offset, net->tensors[i].offset);
    cr_assert_eq(plan.tensors[i].numel, net->tensors[i].numel);
    cr_assert_null(plan.tensors[i].data);
  }
  cr_assert_null(plan.params);
  cr_assert_eq(nn_tensor_find(&plan, "lstm1.weight_hh")->shape[0], 48);
  nn_net_free(net);
  /* 16000-wide layers: refused by validation (and so by make, plan and JSON), the tensor named */
  nnArch b = arch(19, 7, 2, (const int[]){16000, 16000}, NN_RELU, 0, NN_HEAD_MSE);
  cr_assert_eq(nn_arch_validate(&b), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "l1.weight [16000, 16000]") && strstr(tk_errmsg(), "NN_MAX_PARAMS"), "%s",
            tk_errmsg());
  cr_assert_null(nn_net_make(&b, 1));
  cr_assert_null(nn_net_make_acting(&b, 1));
  cr_assert_eq(nn_net_plan(&b, &plan), TK_ERANGE);
  /* an LSTM past it: its first tensor that passes is named */
  nnArch c = arch(19, 7, 1, (const int[]){8}, NN_RELU, 0, NN_HEAD_MSE);
  c.rnn_layers = 3;
  c.rnn_hidden = 2048;
  cr_assert_eq(nn_arch_validate(&c), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "lstm2.weight_ih [8192, 2048]"), "%s", tk_errmsg());
  /* a width past NN_MAX_DIM is refused as such; a large network under the bound is accepted (planned only) */
  nnArch d = arch(1, 1, 1, (const int[]){1 << 24}, NN_RELU, 0, NN_HEAD_MSE);
  cr_assert_eq(nn_arch_validate(&d), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "hidden[0]"), "%s", tk_errmsg());
  d.n_hidden = 8;
  for (int i = 0; i < 8; i++)
    d.hidden[i] = 2048;
  cr_assert_eq(nn_net_plan(&d, &plan), 0, "%s", tk_errmsg());
  cr_assert_leq(plan.n_params, NN_MAX_PARAMS);
  cr_assert_gt(plan.n_params, 7 * 2048 * 2048);
}

/* the benchmark's network at batch 256, where OpenBLAS really splits the GEMMs over 2 threads */
static void train_big(int threads, float *params, float *losses) {
  nn_set_threads(threads);
  nnArch a = arch(32, 7, 0, NULL, NN_RELU, 0, NN_HEAD_MSE);
  a.n_hidden = 2;
  a.hidden[0] = a.hidden[1] = 256;
  nnNet *net = make(&a, 77);
  nnWork *w = work(net, 256);
  float *x = malloc(sizeof(float) * 256 * 32), *y = malloc(sizeof(float) * 256 * 7);
  tkRng r;
  tk_rng_seed(&r, 78);
  nnAdamOpts o;
  nn_adam_default(&o);
  for (int s = 0; s < 20; s++) {
    fill(x, 256 * 32, &r, -2, 2);
    fill(y, 256 * 7, &r, -1, 1);
    cr_assert_eq(nn_train_step(net, w, &o, x, y, 256, &losses[s], NULL), 0, "%s", tk_errmsg());
  }
  memcpy(params, net->params, sizeof(float) * (size_t)net->n_params);
  free(x);
  free(y);
  nn_work_free(w);
  nn_net_free(net);
}

Test(determinism, openblas_threads_same_bits) {
  static float p[3][80000];
  float l[3][20];
  train_big(2, p[0], l[0]);
  train_big(2, p[1], l[1]);
  train_big(1, p[2], l[2]);
  cr_assert_eq(memcmp(p[0], p[1], sizeof p[0]), 0, "OpenBLAS 2 threads: two runs differ");
  cr_assert_eq(memcmp(l[0], l[1], sizeof l[0]), 0);
  /* observed with OpenBLAS 0.3.21 (no K split), not promised */
  printf("32-256-256-7, batch 256, 20 steps: OpenBLAS 1 vs 2 threads bit-identical: %s\n",
         memcmp(p[0], p[2], sizeof p[0]) ? "no" : "yes");
}

/* ---- heads ------------------------------------------------------------------------------------------ */

Test(gmm, picks_the_right_mode_on_a_bimodal_problem) {
  /* obs s in [-1, 1]; action +0.6 with probability 0.7 (s > 0) or 0.3 (s < 0), else -0.6. The mean
   * (what MSE learns) is +-0.24; the most likely mode is +-0.6. */
  const int h[2] = {64, 64};
  nnArch a = arch(1, 1, 2, h, NN_RELU, 0, NN_HEAD_GMM);
  a.gmm_modes = 5;
  a.tanh = 1;
  nnNet *net = make(&a, 8);
  int B = 128;
  nnWork *w = work(net, 1000);
  tkRng r;
  tk_rng_seed(&r, 9);
  float x[128], y[128];
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-3;
  float l = 0;
  for (int s = 0; s < 3000; s++) {
    for (int i = 0; i < B; i++) {
      x[i] = (float)tk_rng_range(&r, -1, 1);
      int up = tk_rng_uniform(&r) < (x[i] > 0 ? 0.7 : 0.3);
      y[i] = (float)((up ? 0.6 : -0.6) + 0.02 * tk_rng_normal(&r));
    }
    cr_assert_eq(nn_train_step(net, w, &o, x, y, B, &l, NULL), 0, "%s", tk_errmsg());
  }
  float xs[2] = {0.5f, -0.5f}, act[2];
  cr_assert_eq(nn_act(net, w, xs, 2, act), 0);
  printf("gmm bimodal: nll %.3f; action(s=+0.5) = %.3f (want 0.6), action(s=-0.5) = %.3f (want -0.6)\n", l,
         act[0], act[1]);
  cr_assert_float_eq(act[0], 0.6, 0.08);
  cr_assert_float_eq(act[1], -0.6, 0.08);
  /* sampling reproduces the mode weights */
  float xr[1000], ar[1000];
  for (int i = 0; i < 1000; i++)
    xr[i] = 0.5f;
  cr_assert_eq(nn_sample(net, w, xr, 1000, &r, ar), 0);
  int up = 0, near = 0;
  for (int i = 0; i < 1000; i++) {
    up += ar[i] > 0;
    near += fabsf(fabsf(ar[i]) - 0.6f) < 0.15f;
  }
  printf("gmm bimodal: samples at s=0.5: %.1f%% positive (want 70%%), %.1f%% near a mode\n", up / 10.0,
         near / 10.0);
  cr_assert_float_eq(up / 1000.0, 0.7, 0.06);
  cr_assert_gt(near, 900);
  nn_work_free(w);
  nn_net_free(net);
}

Test(gaussian, tanh_log_prob_is_a_density) {
  /* 1-D: integrate p(a) over (-1, 1) through a = tanh(u): int p(tanh u) (1 - tanh^2 u) du = 1 */
  const int h[1] = {4};
  nnArch a = arch(2, 1, 1, h, NN_TANH, 0, NN_HEAD_GAUSSIAN);
  nnNet *net = make(&a, 10);
  /* mu around 0.6; log-std exactly -0.3 (its output row zeroed, raw = atanh((ls + 5)/3.5 - 1)) */
  const nnTensor *b = nn_tensor_find(net, "l1.bias"), *W = nn_tensor_find(net, "l1.weight");
  b->data[0] = 0.6f;
  b->data[1] = (float)atanh(4.7 / 3.5 - 1);
  for (int k = 0; k < 4; k++)
    W->data[4 + k] = 0;
  int N = 20001;
  nnWork *w = work(net, N);
  float *x = malloc(sizeof(float) * 2 * N), *act = malloc(sizeof(float) * N), *lp = malloc(sizeof(float) * N);
  for (int i = 0; i < N; i++)
    x[2 * i] = 0.3f, x[2 * i + 1] = -0.2f;
  double du = 16.0 / (N - 1), integral = 0, maxd = 0;
  for (int i = 0; i < N; i++)
    act[i] = (float)tanh(-8 + du * i);
  cr_assert_eq(nn_log_prob(net, w, x, act, N, lp), 0);
  /* closed form from the raw outputs */
  double mu = w->out[0], raw = w->out[1], ls = -5 + 3.5 * (tanh(raw) + 1), sd = exp(ls);
  for (int i = 0; i < N; i++) {
    double u = -8 + du * i, t = tanh(u);
    double p = exp(lp[i]) * (1 - t * t);
    integral += (i == 0 || i == N - 1 ? 0.5 : 1) * p * du;
    if (fabs(u) < 5) {
      double ref = -0.5 * pow((atanh((double)act[i]) - mu) / sd, 2) - ls - 0.5 * log(2 * M_PI) -
                   log(1 - (double)act[i] * act[i]);
      maxd = fmax(maxd, fabs(lp[i] - ref));
    }
  }
  printf("tanh-gaussian: mu %.3f std %.3f, integral of the density %.6f, max |logp - closed form| %.2e\n", mu,
         sd, integral, maxd);
  cr_assert_float_eq(integral, 1.0, 2e-3);
  cr_assert_lt(maxd, 1e-3);
  /* the log-prob of a reparameterized sample equals nn_log_prob of that action */
  float eps[64], sa[64], sl[64], ll[64];
  tkRng r;
  tk_rng_seed(&r, 11);
  for (int i = 0; i < 64; i++)
    eps[i] = (float)tk_rng_normal(&r);
  cr_assert_eq(nn_gauss_sample(net, w, x, 64, eps, sa, sl), 0);
  cr_assert_eq(nn_log_prob(net, w, x, sa, 64, ll), 0);
  double md = 0;
  for (int i = 0; i < 64; i++)
    md = fmax(md, fabs(sl[i] - ll[i]));
  printf("tanh-gaussian: max |sample logp - log_prob(sample)| = %.2e\n", md);
  cr_assert_lt(md, 2e-3);
  /* the stable correction survives saturation: finite logp for |u| large */
  for (int i = 0; i < 64; i++)
    eps[i] = 40.0f * (i % 2 ? 1 : -1);
  cr_assert_eq(nn_gauss_sample(net, w, x, 64, eps, sa, sl), 0);
  for (int i = 0; i < 64; i++)
    cr_assert(isfinite(sl[i]) && fabsf(sa[i]) <= 1.0f);
  free(x);
  free(act);
  free(lp);
  nn_work_free(w);
  nn_net_free(net);
}

Test(gaussian, bc_training_learns_the_mean_and_sac_sampling_runs) {
  const int h[2] = {32, 32};
  nnArch a = arch(2, 2, 2, h, NN_RELU, 0, NN_HEAD_GAUSSIAN);
  nnNet *net = make(&a, 12);
  nnWork *w = work(net, 64);
  tkRng r;
  tk_rng_seed(&r, 13);
  float x[128], y[128], l0 = 0, l = 0;
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-3;
  for (int s = 0; s < 2000; s++) {
    for (int i = 0; i < 64; i++) {
      x[2 * i] = (float)tk_rng_range(&r, -1, 1);
      x[2 * i + 1] = (float)tk_rng_range(&r, -1, 1);
      y[2 * i] = tanhf(x[2 * i]) * 0.8f + 0.05f * (float)tk_rng_normal(&r);
      y[2 * i + 1] = -0.5f * x[2 * i + 1] + 0.05f * (float)tk_rng_normal(&r);
    }
    cr_assert_eq(nn_train_step(net, w, &o, x, y, 64, &l, NULL), 0, "%s", tk_errmsg());
    if (!s) l0 = l;
  }
  float xs[2] = {0.5f, 0.5f}, act[2];
  cr_assert_eq(nn_act(net, w, xs, 1, act), 0);
  printf("gaussian bc: nll %.3f -> %.3f, action (%.3f, %.3f) want (%.3f, %.3f)\n", l0, l, act[0], act[1],
         tanh(0.5) * 0.8, -0.25);
  cr_assert_float_eq(act[0], tanh(0.5) * 0.8, 0.05);
  cr_assert_float_eq(act[1], -0.25, 0.05);
  cr_assert_lt(l, l0 - 2);
  /* nn_sample draws around the mean */
  float xr[128], ar[128];
  for (int i = 0; i < 64; i++)
    xr[2 * i] = 0.5f, xr[2 * i + 1] = 0.5f;
  cr_assert_eq(nn_sample(net, w, xr, 64, &r, ar), 0);
  double m = 0;
  for (int i = 0; i < 64; i++)
    m += ar[2 * i] / 64;
  cr_assert_float_eq(m, act[0], 0.05);
  nn_work_free(w);
  nn_net_free(net);
}

/* ---- architecture JSON, tensors, errors ------------------------------------------------------------- */

Test(arch, json_round_trip_and_errors) {
  const int h[3] = {1024, 1024, 7};
  nnArch a = arch(19, 7, 3, h, NN_ELU, 1, NN_HEAD_GMM), b;
  a.tanh = 1;
  a.gmm_min_std = 1e-4;
  char *js;
  cr_assert_eq(nn_arch_to_json(&a, &js), 0, "%s", tk_errmsg());
  printf("arch json: %s\n", js);
  cr_assert_eq(nn_arch_from_json(js, &b), 0, "%s", tk_errmsg());
  cr_assert_eq(memcmp(&a, &b, sizeof a), 0);
  free(js);
  struct {
    const char *json;
    int code;
    const char *msg;
  } bad[] = {
      {"{", TK_EFORMAT, "invalid JSON"},
      {"[]", TK_EFORMAT, "object"},
      {"{\"version\":1,\"obs_dim\":3,\"act_dim\":2,\"hidden\":[4],\"head\":\"mse\"}", TK_EFORMAT, "format"},
      {"{\"format\":\"demokit.nn_arch\",\"version\":2,\"obs_dim\":3,\"act_dim\":2,\"hidden\":[4],\"head\":"
       "\"mse\"}",
       TK_EVERSION, "version 2"},
      {"{\"format\":\"demokit.nn_arch\",\"version\":1,\"act_dim\":2,\"hidden\":[4],\"head\":\"mse\"}",
       TK_EFORMAT, "obs_dim"},
      {"{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":3,\"act_dim\":2,\"hidden\":[4],\"head\":"
       "\"mse\","
       "\"hiden\":[3]}",
       TK_EFORMAT, "unknown key \"hiden\""},
      {"{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":3,\"act_dim\":2,\"hidden\":[4],\"head\":"
       "\"vae\"}",
       TK_EFORMAT, "head \"vae\""},
      {"{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":3,\"act_dim\":2,\"hidden\":[4.5],\"head\":"
       "\"mse\"}",
       TK_ERANGE, "hidden"},
      {"{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":0,\"act_dim\":2,\"hidden\":[4],\"head\":"
       "\"mse\"}",
       TK_ERANGE, "obs_dim"},
      {"{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":3,\"act_dim\":2,\"hidden\":[4],\"head\":"
       "\"gmm\","
       "\"gmm_modes\":0}",
       TK_ERANGE, "gmm_modes"},
      {"{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":3,\"act_dim\":2,\"hidden\":[4],"
       "\"head\":\"gaussian\",\"log_std_min\":3,\"log_std_max\":2}",
       TK_ERANGE, "log-std"},
      {"{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":3,\"act_dim\":2,\"hidden\":[4],\"head\":"
       "\"mse\","
       "\"activation\":\"gelu\"}",
       TK_EFORMAT, "activation \"gelu\""},
  };
  for (size_t i = 0; i < TK_ARRAY_LEN(bad); i++) {
    nn_arch_default(&b);
    int rc = nn_arch_from_json(bad[i].json, &b);
    cr_assert_eq(rc, bad[i].code, "case %zu: rc %d (%s)", i, rc, tk_errmsg());
    cr_assert(strstr(tk_errmsg(), bad[i].msg), "case %zu: message \"%s\" lacks \"%s\"", i, tk_errmsg(),
              bad[i].msg);
  }
  /* minimal: defaults fill the rest */
  cr_assert_eq(nn_arch_from_json("{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":3,\"act_dim\":2,"
                                 "\"hidden\":[],\"head\":\"gaussian\"}",
                                 &b),
               0, "%s", tk_errmsg());
  cr_assert_eq(b.n_hidden, 0);
  cr_assert_eq(b.log_std_min, -5);
}

Test(tensors, names_shapes_load_copy_and_init) {
  const int h[2] = {16, 8};
  nnArch a = arch(5, 3, 2, h, NN_RELU, 1, NN_HEAD_GAUSSIAN);
  nnNet *net = make(&a, 20);
  const char *names[] = {"l0.weight", "l0.bias",  "ln0.gain", "ln0.bias",  "l1.weight",
                         "l1.bias",   "ln1.gain", "ln1.bias", "l2.weight", "l2.bias"};
  const int64_t shapes[][2] = {{16, 5}, {16, 0}, {16, 0}, {16, 0}, {8, 16},
                               {8, 0},  {8, 0},  {8, 0},  {6, 8},  {6, 0}};
  cr_assert_eq(net->n_tensors, 10);
  int64_t total = 0;
  for (int i = 0; i < 10; i++) {
    const nnTensor *t = &net->tensors[i];
    cr_assert_str_eq(t->name, names[i]);
    cr_assert_eq(t->shape[0], shapes[i][0]);
    cr_assert_eq(t->shape[1], shapes[i][1]);
    cr_assert_eq(t->ndim, shapes[i][1] ? 2 : 1);
    cr_assert_eq(t->data, net->params + t->offset);
    cr_assert_eq(t->grad, net->grads + t->offset);
    cr_assert_eq(((uintptr_t)t->data) % 64, 0);
    total += t->numel;
  }
  cr_assert_leq(total, net->n_params);
  /* init: torch.nn.Linear bounds, LayerNorm identity */
  const nnTensor *w0 = nn_tensor_find(net, "l1.weight");
  double bound = 1 / sqrt(16.0), s2 = 0;
  for (int64_t k = 0; k < w0->numel; k++) {
    cr_assert_leq(fabsf(w0->data[k]), bound);
    s2 += (double)w0->data[k] * w0->data[k];
  }
  printf("init l1.weight: var %.5f, uniform(+-1/sqrt(16)) var %.5f\n", s2 / w0->numel, bound * bound / 3);
  cr_assert_float_eq(s2 / w0->numel, bound * bound / 3, 0.3 * bound * bound / 3);
  cr_assert_eq(nn_tensor_find(net, "ln1.gain")->data[3], 1.0f);
  cr_assert_eq(nn_tensor_find(net, "ln1.bias")->data[3], 0.0f);
  cr_assert_null(nn_tensor_find(net, "l3.weight"));
  /* load checks the shape and finiteness */
  float buf[16 * 5];
  for (int i = 0; i < 80; i++)
    buf[i] = (float)i;
  int64_t good[2] = {16, 5}, wrong[2] = {5, 16};
  cr_assert_eq(nn_tensor_load(net, "l0.weight", 2, good, buf), 0);
  cr_assert_eq(nn_tensor_find(net, "l0.weight")->data[7], 7.0f);
  cr_assert_eq(nn_tensor_load(net, "l0.weight", 2, wrong, buf), TK_EFORMAT);
  cr_assert(strstr(tk_errmsg(), "[5, 16]") && strstr(tk_errmsg(), "[16, 5]"), "%s", tk_errmsg());
  cr_assert_eq(nn_tensor_load(net, "l9.weight", 2, good, buf), TK_ENOTFOUND);
  buf[3] = NAN;
  cr_assert_eq(nn_tensor_load(net, "l0.weight", 2, good, buf), TK_ERANGE);
  /* copy and polyak */
  nnNet *other = make(&a, 21);
  cr_assert_eq(nn_copy_params(other, net), 0);
  cr_assert_eq(memcmp(other->params, net->params, sizeof(float) * (size_t)net->n_params), 0);
  float before = other->params[0];
  net->params[0] = before + 1;
  cr_assert_eq(nn_polyak(other, net, 0.25f), 0);
  cr_assert_float_eq(other->params[0], before + 0.25f, 1e-6);
  nnArch c = a;
  c.hidden[1] = 9;
  nnNet *diff = make(&c, 1);
  cr_assert_eq(nn_copy_params(diff, net), TK_EINVAL);
  nn_net_free(diff);
  nn_net_free(other);
  nn_net_free(net);
  nn_net_free(NULL);
  nn_work_free(NULL);
  nn_team_free(NULL);
}

Test(errors, bad_calls_are_refused_with_messages) {
  const int h[1] = {4};
  nnArch a = arch(3, 2, 1, h, NN_RELU, 0, NN_HEAD_MSE);
  nnNet *net = make(&a, 1), *gnet;
  nnWork *w = work(net, 4);
  float x[30] = {0}, y[20] = {0}, l, lpb[4];
  cr_assert_eq(nn_forward(net, w, x, 5), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "max_batch"), "%s", tk_errmsg());
  cr_assert_eq(nn_forward(net, w, x, 0), TK_ERANGE);
  cr_assert_eq(nn_forward(net, w, NULL, 2), TK_EINVAL);
  nnWork *w2 = work(net, 4);
  cr_assert_eq(nn_backward(net, w2), TK_EINVAL); /* no loss yet */
  cr_assert_eq(nn_forward(net, w2, x, 2), 0);
  cr_assert_eq(nn_backward(net, w2), TK_EINVAL); /* a forward is not a loss */
  cr_assert_eq(nn_log_prob(net, w, x, y, 2, lpb), TK_EINVAL);
  float eps[4] = {0};
  cr_assert_eq(nn_gauss_sample(net, w, x, 2, eps, NULL, NULL), TK_EINVAL);
  nnArch g = a;
  g.head = NN_HEAD_GAUSSIAN;
  gnet = make(&g, 1);
  cr_assert_eq(nn_forward(gnet, w, x, 2), TK_EINVAL); /* work of another network */
  cr_assert(strstr(tk_errmsg(), "another network"), "%s", tk_errmsg());
  nnWork *gw = work(gnet, 4);
  cr_assert_eq(nn_gauss_backward(gnet, gw, NULL, NULL), TK_EINVAL);
  /* non-finite loss is reported, and Adam refuses a non-finite gradient */
  y[0] = NAN;
  cr_assert_eq(nn_loss(net, w, x, y, 2, &l), TK_ERANGE);
  nnAdamOpts o;
  nn_adam_default(&o);
  float p0 = net->params[0];
  cr_assert_eq(nn_train_step(net, w, &o, x, y, 2, &l, NULL), TK_ERANGE);
  cr_assert_eq(net->params[0], p0);
  nnTeam *t = nn_team_make(net, 4, 2);
  cr_assert(t);
  cr_assert_eq(nn_team_train_step(net, t, &o, x, y, 2, &l, NULL), TK_ERANGE);
  cr_assert_eq(net->params[0], p0);
  cr_assert_eq(net->adam_t, 0);
  cr_assert_eq(nn_team_train_step(net, t, &o, x, y, 5, &l, NULL), TK_ERANGE);
  nn_team_free(t);
  o.lr = -1;
  cr_assert_eq(nn_adam_step(net, &o, NULL), TK_ERANGE);
  a.n_hidden = NN_MAX_HIDDEN + 1;
  cr_assert_null(nn_net_make(&a, 1));
  cr_assert(strstr(tk_errmsg(), "hidden layers"), "%s", tk_errmsg());
  cr_assert_null(nn_work_make(net, 0));
  nn_work_free(w);
  nn_work_free(w2);
  nn_work_free(gw);
  nn_net_free(net);
  nn_net_free(gnet);
}

/* ---- nothing allocates in the loop ------------------------------------------------------------------ */

Test(memory, no_allocation_in_forward_backward_step) {
  const int h[2] = {64, 64};
  nnArch a = arch(8, 3, 2, h, NN_ELU, 1, NN_HEAD_GAUSSIAN), m = a;
  m.head = NN_HEAD_GMM;
  nnNet *net = make(&a, 1), *gm = make(&m, 2);
  nnWork *w = work(net, 32), *wg = work(gm, 32);
  nnTeam *t = nn_team_make(gm, 32, 2);
  cr_assert(t);
  float x[256], y[96], act[96], lp[32], eps[96] = {0}, l;
  tkRng r;
  tk_rng_seed(&r, 3);
  fill(x, 256, &r, -1, 1);
  fill(y, 96, &r, -0.9, 0.9);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.clip_norm = 1;
  size_t used = 0;
  for (int s = 0; s < 20; s++) {
    if (s == 5) used = mallinfo2().uordblks; /* after warm-up (OpenBLAS sets up on first use) */
    cr_assert_eq(nn_train_step(net, w, &o, x, y, 32, &l, NULL), 0);
    cr_assert_eq(nn_gauss_sample(net, w, x, 32, eps, act, lp), 0);
    cr_assert_eq(nn_gauss_backward(net, w, act, lp), 0);
    cr_assert_eq(nn_sample(net, w, x, 32, &r, act), 0);
    cr_assert_eq(nn_team_train_step(gm, t, &o, x, y, 32, &l, NULL), 0);
    cr_assert_eq(nn_sample(gm, wg, x, 32, &r, act), 0);
    cr_assert_eq(nn_act(gm, wg, x, 32, act), 0);
  }
  size_t after = mallinfo2().uordblks;
  printf("heap in use before/after 15 steps: %zu / %zu bytes\n", used, after);
  cr_assert_eq(after, used);
  nn_team_free(t);
  nn_work_free(w);
  nn_work_free(wg);
  nn_net_free(net);
  nn_net_free(gm);
}

/* The MLP is a list of rows of the layer table: linear (+ layernorm) + activation per hidden layer and the
 * output linear; the forward pass fuses a linear with the layernorm and activation after it. Run row by
 * row (no fusion), forward, backward and training give the same bits. */
Test(rows, the_mlp_is_rows_and_fusion_changes_no_bit) {
  const int h[2] = {24, 17};
  const nnActivation acts[3] = {NN_RELU, NN_ELU, NN_TANH};
  const nnLayerKind act_rows[3] = {NN_LAYER_RELU, NN_LAYER_ELU, NN_LAYER_TANH};
  for (int ai = 0; ai < 3; ai++)
    for (int ln = 0; ln <= 1; ln++) {
      nnArch a = arch(9, 3, 2, h, acts[ai], ln, NN_HEAD_GMM);
      nnNet *n1 = make(&a, 5), *n2 = make(&a, 5);
      cr_assert_eq(n1->n_rows, 2 * (2 + ln) + 1);
      int i = 0;
      for (int l = 0; l < 2; l++) {
        cr_assert_eq(n1->rows[i].kind, NN_LAYER_LINEAR);
        cr_assert_eq(n1->rows[i].fuse, 1 + ln, "a linear runs its layernorm and activation");
        cr_assert_str_eq(n1->tensors[n1->rows[i++].tensor].name, l ? "l1.weight" : "l0.weight");
        if (ln) cr_assert_str_eq(n1->tensors[n1->rows[i++].tensor].name, l ? "ln1.gain" : "ln0.gain");
        cr_assert_eq(n1->rows[i].kind, act_rows[ai]);
        cr_assert_eq(n1->rows[i++].tensor, -1);
      }
      cr_assert_eq(n1->rows[i].kind, NN_LAYER_LINEAR);
      cr_assert_eq(n1->rows[i].fuse, 0);
      for (int k = 0; k < n2->n_rows; k++) /* row by row */
        n2->rows[k].fuse = 0;
      tkRng r;
      tk_rng_seed(&r, 3);
      if (ln) {
        shake_ln(n1, &r);
        nn_copy_params(n2, n1);
      }
      nnWork *w1 = work(n1, 40), *w2 = work(n2, 40);
      float X[40 * 9], Y[40 * 3], dx1[40 * 9], dx2[40 * 9], l1, l2;
      fill(X, 40 * 9, &r, -2, 2);
      fill(Y, 40 * 3, &r, -0.9, 0.9);
      cr_assert_eq(nn_forward(n1, w1, X, 40), 0);
      cr_assert_eq(nn_forward(n2, w2, X, 40), 0);
      size_t no = sizeof(float) * 40 * (size_t)n1->out_dim;
      cr_assert_eq(memcmp(w1->out, w2->out, no), 0, "%s ln %d: forward differs", nn_activation_name(acts[ai]),
                   ln);
      float dout[40 * 35];
      fill(dout, 40 * (size_t)n1->out_dim, &r, -1, 1);
      nn_zero_grad(n1);
      nn_zero_grad(n2);
      cr_assert_eq(nn_backward_out(n1, w1, dout, dx1, 1), 0);
      cr_assert_eq(nn_backward_out(n2, w2, dout, dx2, 1), 0);
      cr_assert_eq(memcmp(dx1, dx2, sizeof dx1), 0);
      cr_assert_eq(memcmp(n1->grads, n2->grads, sizeof(float) * (size_t)n1->n_params), 0);
      nnAdamOpts o;
      nn_adam_default(&o);
      o.lr = 1e-3;
      for (int s = 0; s < 5; s++) {
        cr_assert_eq(nn_train_step(n1, w1, &o, X, Y, 40, &l1, NULL), 0, "%s", tk_errmsg());
        cr_assert_eq(nn_train_step(n2, w2, &o, X, Y, 40, &l2, NULL), 0, "%s", tk_errmsg());
        cr_assert_eq(memcmp(&l1, &l2, sizeof l1), 0);
      }
      cr_assert_eq(memcmp(n1->params, n2->params, sizeof(float) * (size_t)n1->n_params), 0);
      nn_work_free(w1);
      nn_work_free(w2);
      nn_net_free(n1);
      nn_net_free(n2);
    }
  /* the trunk's rows are not an encoder's: refused by name */
  nnEncArch e;
  nn_enc_arch_default(&e, 3, 16, 16, 8);
  e.layer[1].kind = NN_LAYER_ELU;
  cr_assert_neq(nn_enc_arch_validate(&e), 0);
  cr_assert(strstr(tk_errmsg(), "layer 1 (elu)"), "%s", tk_errmsg());
  cr_assert_str_eq(nn_layer_kind_name(NN_LAYER_LAYERNORM), "layernorm");
}

/* nn_step and nn_run on a plain network: nn_train_step's and nn_act's bits; with a team on the work,
 * nn_team_train_step's; B rows x T steps are B*T rows. */
Test(entry, nn_step_and_nn_run_are_the_plain_and_team_calls) {
  const int h[2] = {32, 32};
  nnArch a = arch(8, 2, 2, h, NN_TANH, 1, NN_HEAD_GAUSSIAN);
  nnNet *n1 = make(&a, 42), *n2 = make(&a, 42);
  nnWork *w1 = work(n1, 64), *w2 = work(n2, 64);
  nnTeam *t1 = nn_team_make(n1, 64, 2), *t2 = nn_team_make(n2, 64, 2);
  cr_assert(t1 && t2, "%s", tk_errmsg());
  tkRng r;
  tk_rng_seed(&r, 1);
  float X[64 * 8], Y[64 * 2], A1[64 * 2], A2[64 * 2];
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-3;
  for (int s = 0; s < 6; s++) {
    fill(X, 64 * 8, &r, -1, 1);
    fill(Y, 64 * 2, &r, -0.9, 0.9);
    float l1, l2;
    double g1, g2;
    int team = s >= 3;
    cr_assert_eq(nn_work_set_team(w2, team ? t2 : NULL), 0);
    cr_assert_eq(team ? nn_team_train_step(n1, t1, &o, X, Y, 64, &l1, &g1)
                      : nn_train_step(n1, w1, &o, X, Y, 64, &l1, &g1),
                 0, "%s", tk_errmsg());
    cr_assert_eq(nn_step(n2, w2, &o, X, Y, 16, 4, &l2, &g2), 0, "%s", tk_errmsg());
    cr_assert(l1 == l2 && g1 == g2, "step %d (team %d): loss %g vs %g", s, team, l1, l2);
  }
  cr_assert_eq(memcmp(n1->params, n2->params, sizeof(float) * (size_t)n1->n_params), 0);
  float st = 0;
  cr_assert_eq(nn_act(n1, w1, X, 64, A1), 0);
  cr_assert_eq(nn_run(n2, w2, &st, X, 8, 8, A2), 0); /* state ignored: a plain network has none */
  cr_assert_eq(memcmp(A1, A2, sizeof A1), 0);
  /* a team made for another network is refused */
  nnArch b = a;
  b.hidden[0] = 16;
  nnNet *n3 = make(&b, 1);
  nnWork *w3 = work(n3, 8);
  cr_assert_neq(nn_work_set_team(w3, t1), 0);
  cr_assert_neq(nn_step(n2, w2, &o, X, Y, 64, 0, NULL, NULL), 0);
  cr_assert(strstr(tk_errmsg(), "nn_step"), "%s", tk_errmsg());
  nn_work_free(w3);
  nn_net_free(n3);
  nn_team_free(t1);
  nn_team_free(t2);
  nn_work_free(w1);
  nn_work_free(w2);
  nn_net_free(n1);
  nn_net_free(n2);
}
