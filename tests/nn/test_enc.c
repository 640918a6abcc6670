/* nn: image encoders (layers as rows of a table; conv on oneDNN). Finite-difference gradients of every
 * layer kind against a double-precision reference, forward against the reference, the anchor encoder's
 * shapes and parameter count, JSON and validation refusals, the batch-size cache, two works in two
 * threads, Adam, determinism, no allocation, a small learning task. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "tk.h"

/* ---- helpers ------------------------------------------------------------------------------------------ */

static nnLayerSpec L_conv(int out, int k, int s, int p) { return (nnLayerSpec){NN_LAYER_CONV, out, k, s, p}; }
static nnLayerSpec L_relu(void) { return (nnLayerSpec){NN_LAYER_RELU, 0, 0, 0, 0}; }
static nnLayerSpec L_ss(int k) { return (nnLayerSpec){NN_LAYER_SPATIAL_SOFTMAX, k, 0, 0, 0}; }
static nnLayerSpec L_flat(void) { return (nnLayerSpec){NN_LAYER_FLATTEN, 0, 0, 0, 0}; }
static nnLayerSpec L_lin(int out) { return (nnLayerSpec){NN_LAYER_LINEAR, out, 0, 0, 0}; }

static nnEncArch mk(int C, int H, int W, int n, const nnLayerSpec *l) {
  nnEncArch a;
  memset(&a, 0, sizeof a);
  a.channels = C, a.height = H, a.width = W, a.nlayers = n;
  for (int i = 0; i < n; i++)
    a.layer[i] = l[i];
  return a;
}

static nnEnc *enc(const nnEncArch *a, uint64_t seed) {
  nnEnc *e = nn_enc_make(a, seed);
  cr_assert(e, "nn_enc_make: %s", tk_errmsg());
  return e;
}

static nnEncWork *ework(const nnEnc *e, int B) {
  nnEncWork *w = nn_enc_work_make(e, B);
  cr_assert(w, "nn_enc_work_make: %s", tk_errmsg());
  return w;
}

static void fill(float *v, size_t n, tkRng *r, double lo, double hi) {
  for (size_t i = 0; i < n; i++)
    v[i] = (float)tk_rng_range(r, lo, hi);
}

static float *fmalloc(size_t n) {
  float *p = calloc(n ? n : 1, sizeof(float));
  cr_assert(p);
  return p;
}

static double *dmalloc(size_t n) {
  double *p = calloc(n ? n : 1, sizeof(double));
  cr_assert(p);
  return p;
}

static size_t in_numel(const nnEnc *e) { return (size_t)nn_shape_numel(&e->shape[0]); }

/* ---- the double-precision reference: a plain forward of every layer kind --------------------------------
 */

static void ref_conv(const nnShape *si, const nnShape *so, const nnLayerSpec *s, const double *W,
                     const double *b, const double *in, double *out) {
  int64_t C = si->d[0], H = si->d[1], Wd = si->d[2], O = so->d[0], Ho = so->d[1], Wo = so->d[2],
          K = s->kernel;
  for (int64_t o = 0; o < O; o++)
    for (int64_t y = 0; y < Ho; y++)
      for (int64_t x = 0; x < Wo; x++) {
        double acc = b[o];
        for (int64_t c = 0; c < C; c++)
          for (int64_t ky = 0; ky < K; ky++) {
            int64_t iy = y * s->stride + ky - s->pad;
            if (iy < 0 || iy >= H) continue;
            for (int64_t kx = 0; kx < K; kx++) {
              int64_t ix = x * s->stride + kx - s->pad;
              if (ix < 0 || ix >= Wd) continue;
              acc += W[((o * C + c) * K + ky) * K + kx] * in[(c * H + iy) * Wd + ix];
            }
          }
        out[(o * Ho + y) * Wo + x] = acc;
      }
}

static double lin(int64_t j, int64_t n) { return n > 1 ? -1.0 + 2.0 * (double)j / (double)(n - 1) : -1.0; }

static void ref_ss(const nnShape *si, int K, const double *W, const double *b, const double *in,
                   double *out) {
  int64_t C = si->d[0], H = si->d[1], Wd = si->d[2], HW = H * Wd;
  double *z = dmalloc((size_t)HW);
  for (int k = 0; k < K; k++) {
    double mx = -INFINITY, sum = 0, ex = 0, ey = 0;
    for (int64_t p = 0; p < HW; p++) {
      double v = b[k];
      for (int64_t c = 0; c < C; c++)
        v += W[k * C + c] * in[c * HW + p];
      z[p] = v;
      mx = fmax(mx, v);
    }
    for (int64_t p = 0; p < HW; p++)
      sum += z[p] = exp(z[p] - mx);
    for (int64_t p = 0; p < HW; p++) {
      ex += z[p] / sum * lin(p % Wd, Wd);
      ey += z[p] / sum * lin(p / Wd, H);
    }
    out[2 * k] = ex, out[2 * k + 1] = ey;
  }
  free(z);
}

/* feat [B, out_dim] from parameters P (e->params layout) and images X [B, C, H, W] */
static void ref_forward(const nnEnc *e, const double *P, const double *X, int B, double *feat) {
  const nnEncArch *a = &e->arch;
  int64_t maxn = 0;
  for (int i = 0; i <= a->nlayers; i++)
    maxn = TK_MAX(maxn, nn_shape_numel(&e->shape[i]));
  double *buf[2] = {dmalloc((size_t)maxn), dmalloc((size_t)maxn)};
  for (int n = 0; n < B; n++) {
    memcpy(buf[0], X + (size_t)n * in_numel(e), sizeof(double) * in_numel(e));
    int cur = 0, ti = 0;
    for (int i = 0; i < a->nlayers; i++) {
      const nnLayerSpec *s = &a->layer[i];
      const nnShape *si = &e->shape[i], *so = &e->shape[i + 1];
      const double *in = buf[cur];
      double *out = buf[1 - cur];
      int64_t ni = nn_shape_numel(si), no = nn_shape_numel(so);
      const double *W = NULL, *b = NULL;
      if (s->kind == NN_LAYER_CONV || s->kind == NN_LAYER_SPATIAL_SOFTMAX || s->kind == NN_LAYER_LINEAR) {
        W = P + e->tensors[ti].offset, b = P + e->tensors[ti + 1].offset;
        ti += 2;
      }
      switch (s->kind) {
      case NN_LAYER_CONV: ref_conv(si, so, s, W, b, in, out); break;
      case NN_LAYER_RELU:
        for (int64_t j = 0; j < ni; j++)
          out[j] = in[j] > 0 ? in[j] : 0;
        break;
      case NN_LAYER_SPATIAL_SOFTMAX: ref_ss(si, s->out, W, b, in, out); break;
      case NN_LAYER_FLATTEN: memcpy(out, in, sizeof(double) * (size_t)ni); break;
      case NN_LAYER_LINEAR:
        for (int64_t o = 0; o < no; o++) {
          double acc = b[o];
          for (int64_t j = 0; j < ni; j++)
            acc += W[o * ni + j] * in[j];
          out[o] = acc;
        }
        break;
      default: /* the trunk's rows (layernorm, elu, tanh): an encoder refuses them */
        cr_assert_fail("layer %d: kind %d is not an encoder's", i, (int)s->kind);
      }
      cur = 1 - cur;
    }
    memcpy(feat + (size_t)n * e->out_dim, buf[cur], sizeof(double) * (size_t)e->out_dim);
  }
  free(buf[0]), free(buf[1]);
}

/* ---- finite differences of L = sum(feat .* R)
 * -------------------------------------------------------------- */

static double ref_probe(const nnEnc *e, const double *P, const double *X, int B, const float *R) {
  double *f = dmalloc((size_t)B * e->out_dim), L = 0;
  ref_forward(e, P, X, B, f);
  for (int j = 0; j < B * e->out_dim; j++)
    L += f[j] * R[j];
  free(f);
  return L;
}

typedef struct {
  double max_rel;
  int n, skipped;
  char worst[NN_NAME_MAX];
} fdStat;

/* Central differences at h and h/2, Richardson-combined; entries where the two disagree by > 1% sit on a
 * ReLU kink and are skipped (counted). Relative error against max(|analytic|, |numeric|, 1e-4). At most
 * `cap` entries of each tensor, evenly spread. */
static fdStat fd_check(const char *what, const nnEnc *e, const float *x, int B, const float *R,
                       const float *grads, int cap) {
  fdStat s = {0, 0, 0, ""};
  double *P = dmalloc((size_t)e->n_params), *X = dmalloc(in_numel(e) * B);
  for (int64_t j = 0; j < e->n_params; j++)
    P[j] = e->params[j];
  for (size_t j = 0; j < in_numel(e) * B; j++)
    X[j] = x[j];
  for (int t = 0; t < e->n_tensors; t++) {
    const nnTensor *T = &e->tensors[t];
    int64_t step = T->numel > cap ? (T->numel + cap - 1) / cap : 1;
    for (int64_t j = 0; j < T->numel; j += step) {
      double *v = &P[T->offset + j], v0 = *v, d[2];
      for (int k = 0; k < 2; k++) {
        double h = 1e-5 / (1 + k);
        *v = v0 + h;
        double fp = ref_probe(e, P, X, B, R);
        *v = v0 - h;
        d[k] = (fp - ref_probe(e, P, X, B, R)) / (2 * h);
      }
      *v = v0;
      s.n++;
      if (fabs(d[0] - d[1]) > 0.01 * fmax(fmax(fabs(d[0]), fabs(d[1])), 1e-4)) {
        s.skipped++;
        continue;
      }
      double num = (4 * d[1] - d[0]) / 3, an = grads[T->offset + j];
      double rel = fabs(an - num) / fmax(fmax(fabs(an), fabs(num)), 1e-4);
      if (rel > s.max_rel) {
        s.max_rel = rel;
        snprintf(s.worst, sizeof s.worst, "%s", T->name);
      }
    }
  }
  free(P), free(X);
  printf("fd %-40s max_rel_err=%.3e (%s) over %d entries (%d skipped at kinks)\n", what, s.max_rel, s.worst,
         s.n, s.skipped);
  return s;
}

/* forward + backward of R through the library, then the finite differences of the reference */
static void grad_check(const char *what, const nnEncArch *a, int B, uint64_t seed) {
  nnEnc *e = enc(a, seed);
  nnEncWork *w = ework(e, B);
  tkRng r;
  tk_rng_seed(&r, seed + 100);
  float *x = fmalloc(in_numel(e) * B), *R = fmalloc((size_t)B * e->out_dim),
        *f = fmalloc((size_t)B * e->out_dim);
  fill(x, in_numel(e) * B, &r, -1, 1);
  fill(R, (size_t)B * e->out_dim, &r, -1, 1);
  /* biases away from their small init, so ReLUs see both signs */
  for (int t = 1; t < e->n_tensors; t += 2)
    fill(e->tensors[t].data, (size_t)e->tensors[t].numel, &r, -0.3, 0.3);
  cr_assert_eq(nn_enc_forward(e, w, x, B, f), 0, "%s", tk_errmsg());
  nn_enc_zero_grad(e);
  cr_assert_eq(nn_enc_backward(e, w, R, NULL, 0), 0, "%s", tk_errmsg());
  fdStat s = fd_check(what, e, x, B, R, e->grads, 48);
  cr_assert_lt(s.max_rel, 2e-3, "%s: gradient mismatch, max relative error %.3e in %s", what, s.max_rel,
               s.worst);
  cr_assert_leq(s.skipped, s.n / 10 + 1, "%s: %d of %d entries not smooth", what, s.skipped, s.n);
  free(x), free(R), free(f);
  nn_enc_work_free(w);
  nn_enc_free(e);
}

/* ---- gradients
 * ------------------------------------------------------------------------------------------------ */

Test(fd, conv_kernels_strides_pads) {
  /* two convs: the first one's weight gradient goes through the second's input gradient */
  const nnLayerSpec a1[] = {L_conv(5, 3, 2, 1), L_conv(3, 2, 1, 0)};
  nnEncArch a = mk(3, 9, 11, 2, a1);
  grad_check("conv k3 s2 p1 -> k2 s1 p0, 3x9x11", &a, 2, 1);
  const nnLayerSpec a2[] = {L_conv(7, 1, 1, 0), L_conv(4, 5, 3, 2)};
  a = mk(2, 13, 8, 2, a2);
  grad_check("conv k1 -> k5 s3 p2, 2x13x8", &a, 3, 2);
  const nnLayerSpec a3[] = {L_conv(9, 3, 1, 1), L_conv(2, 4, 2, 1), L_conv(3, 3, 1, 0)};
  a = mk(1, 6, 10, 3, a3); /* 6x10 -> 6x10 -> 3x5 -> 1x3 (kernel = padded input's height) */
  grad_check("conv k3 p1 -> k4 s2 p1 -> k3, 1x6x10", &a, 2, 3);
}

Test(fd, relu_between_convs) {
  const nnLayerSpec l[] = {L_conv(6, 3, 1, 0), L_relu(), L_conv(5, 3, 2, 0), L_relu()};
  nnEncArch a = mk(3, 10, 9, 4, l);
  grad_check("conv relu conv relu, 3x10x9", &a, 2, 4);
}

Test(fd, spatial_softmax_weights_and_input) {
  const nnLayerSpec l[] = {L_conv(6, 3, 1, 0), L_ss(5)};
  nnEncArch a = mk(2, 9, 7, 2, l);
  grad_check("conv -> spatial_softmax 5, 2x9x7", &a, 2, 5);
}

Test(fd, linear_and_flatten) {
  const nnLayerSpec l[] = {L_conv(3, 3, 2, 0), L_flat(), L_lin(7), L_relu(), L_lin(4)};
  nnEncArch a = mk(2, 7, 9, 5, l);
  grad_check("conv flatten linear relu linear, 2x7x9", &a, 3, 6);
  const nnLayerSpec l2[] = {L_lin(5), L_relu(), L_lin(3)}; /* linear straight on the image */
  a = mk(2, 3, 4, 3, l2);
  grad_check("linear relu linear on 2x3x4", &a, 2, 7);
}

Test(fd, whole_small_encoder) {
  nnEncArch a;
  nn_enc_arch_default(&a, 3, 28, 26, 4); /* 28x26 -> 13x12 -> 11x10 -> 5x4 -> 3x2 */
  grad_check("default encoder width 4, 3x28x26", &a, 2, 8);
}

/* ---- forward against the reference
 * ---------------------------------------------------------------------------- */

static void forward_check(const nnEncArch *a, int B, uint64_t seed, double tol) {
  nnEnc *e = enc(a, seed);
  nnEncWork *w = ework(e, B);
  tkRng r;
  tk_rng_seed(&r, seed);
  size_t nx = in_numel(e) * B, nf = (size_t)B * e->out_dim;
  float *x = fmalloc(nx), *f = fmalloc(nf);
  fill(x, nx, &r, 0, 1);
  cr_assert_eq(nn_enc_forward(e, w, x, B, f), 0, "%s", tk_errmsg());
  double *P = dmalloc((size_t)e->n_params), *X = dmalloc(nx), *ref = dmalloc(nf), err = 0, scale = 0;
  for (int64_t j = 0; j < e->n_params; j++)
    P[j] = e->params[j];
  for (size_t j = 0; j < nx; j++)
    X[j] = x[j];
  ref_forward(e, P, X, B, ref);
  for (size_t j = 0; j < nf; j++) {
    err = fmax(err, fabs(ref[j] - f[j]));
    scale = fmax(scale, fabs(ref[j]));
  }
  printf("forward %dx%dx%d (%d layers) B=%d: max abs diff %.3g (largest %.3g)\n", a->channels, a->height,
         a->width, a->nlayers, B, err, scale);
  cr_assert_lt(err, tol * fmax(scale, 1), "forward differs from the reference by %g", err);
  free(x), free(f), free(P), free(X), free(ref);
  nn_enc_work_free(w);
  nn_enc_free(e);
}

Test(forward, matches_the_double_reference) {
  nnEncArch a;
  nn_enc_arch_default(&a, 3, 76, 76, 32); /* the anchor encoder */
  forward_check(&a, 2, 11, 1e-4);
  const nnLayerSpec l[] = {L_conv(20, 5, 2, 2), L_relu(), L_conv(13, 3, 1, 1), L_relu(), L_flat(), L_lin(9)};
  a = mk(5, 17, 23, 6, l);
  forward_check(&a, 3, 12, 1e-4);
}

/* ---- the anchor encoder
 * --------------------------------------------------------------------------------------- */

Test(anchor, shapes_tensors_and_parameter_count) {
  nnEncArch a;
  nn_enc_arch_default(&a, 3, 76, 76, 32);
  nnShape s[NN_MAX_ENC_LAYERS + 1];
  cr_assert_eq(nn_enc_arch_shapes(&a, s), 0, "%s", tk_errmsg());
  const int64_t sides[] = {76, 37, 37, 35, 35, 17, 17, 15, 15};
  const int64_t chans[] = {3, 32, 32, 32, 32, 64, 64, 64, 64};
  for (int i = 0; i < 9; i++) {
    cr_assert_eq(s[i].ndim, 3);
    cr_assert_eq(s[i].d[0], chans[i]);
    cr_assert_eq(s[i].d[1], sides[i]);
    cr_assert_eq(s[i].d[2], sides[i]);
  }
  cr_assert_eq(s[9].ndim, 2);
  cr_assert_eq(s[9].d[0], 32);
  cr_assert_eq(s[9].d[1], 2);
  cr_assert_eq(s[10].ndim, 1);
  cr_assert_eq(s[10].d[0], 64);
  cr_assert_eq(nn_enc_out_dim(&a), 64);
  nnEnc plan;
  cr_assert_eq(nn_enc_plan(&a, &plan), 0);
  cr_assert_null(plan.params);
  cr_assert_null(plan.grads);
  int64_t total = 0;
  for (int t = 0; t < plan.n_tensors; t++)
    total += plan.tensors[t].numel;
  /* torch: sum(p.numel() for p in Encoder().parameters()) = 896 + 9248 + 18496 + 36928 + 2080 + 4160 */
  cr_assert_eq(total, 71808, "parameters %lld", (long long)total);
  cr_assert_geq(plan.n_params, total);
  const char *names[] = {"conv0.weight",
                         "conv0.bias",
                         "conv2.weight",
                         "conv2.bias",
                         "conv4.weight",
                         "conv4.bias",
                         "conv6.weight",
                         "conv6.bias",
                         "spatial_softmax8.weight",
                         "spatial_softmax8.bias",
                         "linear9.weight",
                         "linear9.bias"};
  cr_assert_eq(plan.n_tensors, 12);
  for (int t = 0; t < 12; t++)
    cr_assert_str_eq(plan.tensors[t].name, names[t]);
  cr_assert_eq(plan.tensors[6].ndim, 4);
  cr_assert_eq(plan.tensors[6].shape[0], 64);
  cr_assert_eq(plan.tensors[6].shape[1], 64);
  cr_assert_eq(plan.tensors[6].shape[2], 3);
  cr_assert_eq(plan.tensors[8].shape[1], 64);
  cr_assert_eq(plan.tensors[8].shape[3], 1);
  cr_assert_eq(plan.tensors[10].ndim, 2);
  cr_assert_eq(plan.tensors[10].shape[1], 64);
  /* initialization bound 1/sqrt(fan_in): conv6 fan_in 576 */
  nnEnc *e = enc(&a, 3);
  const nnTensor *t = nn_enc_tensor_find(e, "conv6.weight");
  cr_assert(t);
  float mx = 0;
  for (int64_t j = 0; j < t->numel; j++)
    mx = fmaxf(mx, fabsf(t->data[j]));
  cr_assert(mx <= 1 / sqrtf(576.f) && mx > 0.9f / sqrtf(576.f), "conv6 init max %g", mx);
  cr_assert_null(nn_enc_tensor_find(e, "conv1.weight"));
  nn_enc_free(e);
}

/* ---- JSON and validation
 * ----------------------------------------------------------------------------------------- */

Test(arch, json_round_trip) {
  nnEncArch a, b;
  nn_enc_arch_default(&a, 3, 76, 76, 32);
  a.layer[0].pad = 1;
  char *js = NULL;
  cr_assert_eq(nn_enc_arch_to_json(&a, &js), 0, "%s", tk_errmsg());
  printf("%s\n", js);
  cr_assert_eq(nn_enc_arch_from_json(js, &b), 0, "%s", tk_errmsg());
  cr_assert_eq(memcmp(&a, &b, sizeof a), 0);
  free(js);
  const char *hand =
      "{\"input\":[1,24,20],\"layers\":[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"stride\":1,"
      "\"pad\":0},{\"type\":\"relu\"},{\"type\":\"flatten\"},{\"type\":\"linear\",\"out\":2}]}";
  cr_assert_eq(nn_enc_arch_from_json(hand, &b), 0, "%s", tk_errmsg());
  cr_assert_eq(b.nlayers, 4);
  cr_assert_eq(b.layer[3].kind, NN_LAYER_LINEAR);
  cr_assert_eq(nn_enc_out_dim(&b), 2);
}

Test(arch, malformed_json_is_refused_naming_the_problem) {
  const char *C = "{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"stride\":1,\"pad\":0}";
  char buf[512];
  struct {
    const char *layers, *want;
  } cases[] = {
      {"[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"stride\":1,\"pad\":0,\"padding\":1}]",
       "unknown key \"padding\""},
      {"[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"stride\":1}]", "missing \"pad\""},
      {"[{\"type\":\"conv\",\"out\":\"4\",\"kernel\":3,\"stride\":1,\"pad\":0}]",
       "\"out\" must be an integer"},
      {"[{\"type\":\"conv\",\"out\":4.5,\"kernel\":3,\"stride\":1,\"pad\":0}]", "\"out\" must be an integer"},
      {"[{\"type\":\"conv\",\"out\":4,\"kernel\":3,\"stride\":0,\"pad\":0}]",
       "\"stride\" must be an integer in 1"},
      {"[{\"type\":\"relu\",\"kernel\":3}]", "\"kernel\" is a field of conv, not of relu"},
      {"[{\"type\":\"spatial_softmax\",\"out\":3,\"stride\":1}]", "\"stride\" is a field of conv"},
      {"[{\"type\":\"pool\"}]", "unknown type \"pool\""},
      {"[{\"out\":3}]", "missing \"type\""},
      {"[{\"type\":3}]", "\"type\" must be a string"},
      {"[{\"type\":\"relu\",\"type\":\"relu\"}]", "given twice"},
      {"[3]", "layers[0] is not an object"},
      {"[]", "0 layers"},
      {"{}", "\"layers\" must be an array"},
      {"[{\"type\":\"linear\"}]", "missing \"out\""},
  };
  nnEncArch a;
  for (size_t k = 0; k < TK_ARRAY_LEN(cases); k++) {
    snprintf(buf, sizeof buf, "{\"input\":[3,16,16],\"layers\":%s}", cases[k].layers);
    cr_assert_neq(nn_enc_arch_from_json(buf, &a), 0, "accepted %s", buf);
    printf("refused %-60s %s\n", cases[k].layers, tk_errmsg());
    cr_assert(strstr(tk_errmsg(), cases[k].want), "%s: message \"%s\" lacks \"%s\"", buf, tk_errmsg(),
              cases[k].want);
  }
  struct {
    const char *js, *want;
  } top[] = {
      {"[1]", "not an object"},
      {"{\"input\":[3,16,16]}", "missing \"layers\""},
      {"{\"layers\":[{\"type\":\"relu\"}]}", "missing \"input\""},
      {"{\"input\":[3,16],\"layers\":[{\"type\":\"relu\"}]}", "\"input\" must be [channels, height, width]"},
      {"{\"input\":[3,16,2000],\"layers\":[{\"type\":\"relu\"}]}", "input[2] (width)"},
      {"{\"input\":[3,16,16],\"layers\":[{\"type\":\"relu\"}],\"format\":1}", "unknown key \"format\""},
      {"{\"input\":[3,16,16],\"layers\":[{\"type\":\"relu\"}]", "invalid JSON"},
      {"{\"input\":[3,4,4],\"layers\":[{\"type\":\"conv\",\"out\":4,\"kernel\":5,\"stride\":1,\"pad\":0}]}",
       "kernel 5 is larger than its padded input 4x4"},
  };
  for (size_t k = 0; k < TK_ARRAY_LEN(top); k++) {
    cr_assert_neq(nn_enc_arch_from_json(top[k].js, &a), 0, "accepted %s", top[k].js);
    printf("refused %-60s %s\n", top[k].js, tk_errmsg());
    cr_assert(strstr(tk_errmsg(), top[k].want), "%s: message \"%s\" lacks \"%s\"", top[k].js, tk_errmsg(),
              top[k].want);
  }
  (void)C;
}

Test(arch, validation_refusals_name_layer_and_field) {
  typedef struct {
    nnEncArch a;
    const char *want;
  } Case;
  Case cases[8];
  int n = 0;
  const nnLayerSpec big[] = {L_conv(4, 5, 1, 0)};
  cases[n++] = (Case){mk(3, 4, 9, 1, big), "layer 0 (conv): kernel 5 is larger than its padded input 4x9"};
  const nnLayerSpec ssflat[] = {L_flat(), L_ss(4)};
  cases[n++] = (Case){mk(3, 8, 8, 2, ssflat), "layer 1 (spatial_softmax): input [192] is not an image"};
  const nnLayerSpec zero[] = {L_conv(0, 3, 1, 0)};
  cases[n++] = (Case){mk(3, 8, 8, 1, zero), "layer 0 (conv): out 0 not in 1.."};
  const nnLayerSpec neg[] = {L_relu(), L_lin(-2)};
  cases[n++] = (Case){mk(3, 8, 8, 2, neg), "layer 1 (linear): out -2"};
  const nnLayerSpec huge[] = {L_flat(), L_lin(65536), L_lin(65536)};
  cases[n++] = (Case){mk(1, 8, 8, 3, huge), "tensor linear2.weight [65536, 65536] takes the encoder past"};
  const nnLayerSpec ok[] = {L_relu()};
  cases[n++] = (Case){mk(3, 2000, 8, 1, ok), "input height 2000 not in 1..1024"};
  const nnLayerSpec stray[] = {L_conv(4, 3, 1, 0), {NN_LAYER_RELU, 0, 3, 0, 0}};
  cases[n++] = (Case){mk(3, 8, 8, 2, stray), "layer 1 (relu): kernel is 3, but relu has no kernel"};
  const nnLayerSpec pad[] = {L_conv(4, 3, 1, 3)};
  cases[n++] = (Case){mk(3, 8, 8, 1, pad), "layer 0 (conv): pad 3 not in 0..2"};
  for (int k = 0; k < n; k++) {
    cr_assert_neq(nn_enc_arch_validate(&cases[k].a), 0, "case %d accepted", k);
    printf("refused: %s\n", tk_errmsg());
    cr_assert(strstr(tk_errmsg(), cases[k].want), "case %d: message \"%s\" lacks \"%s\"", k, tk_errmsg(),
              cases[k].want);
    cr_assert_null(nn_enc_make(&cases[k].a, 1));
  }
  nnEncArch a = mk(3, 8, 8, 0, ok);
  cr_assert_neq(nn_enc_arch_validate(&a), 0);
  a = mk(3, 8, 8, 1, ok);
  a.layer[0].kind = (nnLayerKind)99;
  cr_assert_neq(nn_enc_arch_validate(&a), 0);
  cr_assert(strstr(tk_errmsg(), "unknown kind 99"), "%s", tk_errmsg());
  cr_assert_str_eq(nn_layer_kind_name(NN_LAYER_SPATIAL_SOFTMAX), "spatial_softmax");
}

/* ---- batch sizes, threads, accumulation
 * ----------------------------------------------------------------------- */

Test(work, batch_sizes_are_cached_up_to_the_limit) {
  nnEncArch a;
  nn_enc_arch_default(&a, 3, 24, 24, 8);
  nnEnc *e = enc(&a, 5);
  nnEncWork *w = ework(e, 64);
  tkRng r;
  tk_rng_seed(&r, 5);
  size_t nx = in_numel(e);
  float *x = fmalloc(nx * 64), *f = fmalloc(64 * 64), *f1 = fmalloc(64), *R = fmalloc(64 * 64);
  fill(x, nx * 64, &r, 0, 1);
  fill(R, 64 * 64, &r, -1, 1);
  const int sizes[] = {1, 64, 32, 1, 7, 64, 32, 7};
  for (size_t k = 0; k < TK_ARRAY_LEN(sizes); k++) {
    cr_assert_eq(nn_enc_forward(e, w, x, sizes[k], f), 0, "B=%d: %s", sizes[k], tk_errmsg());
    cr_assert_eq(nn_enc_backward(e, w, R, NULL, 0), 0, "B=%d: %s", sizes[k], tk_errmsg());
    if (k == 0) memcpy(f1, f, 64 * sizeof(float));
    for (int j = 0; j < 64; j++) /* image 0's features whatever the batch size */
      cr_assert(fabsf(f[j] - f1[j]) <= 1e-5f * (1 + fabsf(f1[j])), "B=%d feature %d: %g vs %g", sizes[k], j,
                f[j], f1[j]);
  }
  cr_assert_neq(nn_enc_forward(e, w, x, 5, f), 0);
  printf("refused: %s\n", tk_errmsg());
  cr_assert(strstr(tk_errmsg(), "batch 5 would be this work's 5th batch size"), "%s", tk_errmsg());
  cr_assert(strstr(tk_errmsg(), "1, 64, 32, 7"), "%s", tk_errmsg());
  cr_assert_neq(nn_enc_forward(e, w, x, 65, f), 0);
  cr_assert(strstr(tk_errmsg(), "max_batch"), "%s", tk_errmsg());
  cr_assert_eq(nn_enc_forward(e, w, x, 32, f), 0, "a cached size still works: %s", tk_errmsg());
  free(x), free(f), free(f1), free(R);
  nn_enc_work_free(w);
  nn_enc_free(e);
}

typedef struct {
  const nnEnc *e;
  nnEncWork *w;
  const float *x, *R;
  float *feat, *grads;
  int B, rc;
} Half;

static void *half_run(void *p) {
  Half *h = p;
  for (int rep = 0; rep < 3 && !h->rc; rep++) {
    h->rc = nn_enc_forward(h->e, h->w, h->x, h->B, h->feat);
    if (!h->rc) h->rc = nn_enc_backward(h->e, h->w, h->R, h->grads, 0);
  }
  return NULL;
}

Test(threads, two_works_on_halves_sum_to_the_whole_batch) {
  nnEncArch a;
  nn_enc_arch_default(&a, 3, 36, 36, 16);
  nnEnc *e = enc(&a, 9);
  const int B = 16, D = e->out_dim;
  size_t nx = in_numel(e);
  tkRng r;
  tk_rng_seed(&r, 9);
  float *x = fmalloc(nx * B), *R = fmalloc((size_t)B * D), *f = fmalloc((size_t)B * D),
        *fh = fmalloc((size_t)B * D);
  fill(x, nx * B, &r, 0, 1);
  fill(R, (size_t)B * D, &r, -1, 1);
  nnEncWork *whole = ework(e, B), *w0 = ework(e, B / 2), *w1 = ework(e, B / 2);
  cr_assert_eq(nn_enc_forward(e, whole, x, B, f), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_enc_backward(e, whole, R, NULL, 0), 0, "%s", tk_errmsg());
  float *g0 = fmalloc((size_t)e->n_params), *g1 = fmalloc((size_t)e->n_params);
  Half h[2] = {{e, w0, x, R, fh, g0, B / 2, 0},
               {e, w1, x + nx * (B / 2), R + (size_t)(B / 2) * D, fh + (B / 2) * D, g1, B / 2, 0}};
  pthread_t th[2];
  for (int k = 0; k < 2; k++)
    cr_assert_eq(pthread_create(&th[k], NULL, half_run, &h[k]), 0);
  for (int k = 0; k < 2; k++)
    pthread_join(th[k], NULL);
  cr_assert_eq(h[0].rc, 0, "thread 0: %s", tk_errmsg());
  cr_assert_eq(h[1].rc, 0, "thread 1");
  double fe = 0, ge = 0, gs = 0;
  for (int j = 0; j < B * D; j++)
    fe = fmax(fe, fabs((double)f[j] - fh[j]));
  for (int64_t j = 0; j < e->n_params; j++) {
    ge = fmax(ge, fabs((double)e->grads[j] - (g0[j] + g1[j])));
    gs = fmax(gs, fabs((double)e->grads[j]));
  }
  printf("two threads: features max diff %.3g, gradients max diff %.3g (largest %.3g)\n", fe, ge, gs);
  cr_assert_lt(fe, 1e-5);
  cr_assert_lt(ge, 1e-4 * fmax(gs, 1));
  free(x), free(R), free(f), free(fh), free(g0), free(g1);
  nn_enc_work_free(whole), nn_enc_work_free(w0), nn_enc_work_free(w1);
  nn_enc_free(e);
}

Test(backward, accumulates_or_overwrites) {
  const nnLayerSpec l[] = {L_conv(4, 3, 2, 1), L_relu(), L_conv(6, 3, 1, 0), L_relu(), L_ss(3), L_lin(5)};
  nnEncArch a = mk(2, 15, 13, 6, l);
  nnEnc *e = enc(&a, 13);
  nnEncWork *w = ework(e, 4);
  tkRng r;
  tk_rng_seed(&r, 13);
  size_t nx = in_numel(e) * 4;
  float *x = fmalloc(nx), *f = fmalloc(20), *R = fmalloc(20), *g = fmalloc((size_t)e->n_params);
  fill(x, nx, &r, 0, 1);
  fill(R, 20, &r, -1, 1);
  fill(e->grads, (size_t)e->n_params, &r, -1, 1); /* garbage to be overwritten */
  cr_assert_eq(nn_enc_forward(e, w, x, 4, f), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_enc_backward(e, w, R, NULL, 0), 0);
  for (int t = 0; t < e->n_tensors; t++)
    memcpy(g + e->tensors[t].offset, e->tensors[t].grad, sizeof(float) * (size_t)e->tensors[t].numel);
  cr_assert_eq(nn_enc_backward(e, w, R, NULL, 1), 0);
  for (int t = 0; t < e->n_tensors; t++)
    for (int64_t j = 0; j < e->tensors[t].numel; j++) {
      float a1 = g[e->tensors[t].offset + j], a2 = e->tensors[t].grad[j];
      cr_assert(fabsf(a2 - 2 * a1) <= 1e-6f * (1 + fabsf(a1)), "%s[%lld]: %g vs 2 x %g", e->tensors[t].name,
                (long long)j, a2, a1);
    }
  free(x), free(f), free(R), free(g);
  nn_enc_work_free(w);
  nn_enc_free(e);
}

/* ---- Adam, acting encoders, errors
 * ----------------------------------------------------------------------------- */

Test(adam, matches_hand_computed_update) {
  const nnLayerSpec l[] = {L_conv(3, 3, 1, 0), L_ss(2), L_lin(3)};
  nnEncArch a = mk(2, 6, 6, 3, l);
  nnEnc *e = enc(&a, 21);
  tkRng r;
  tk_rng_seed(&r, 21);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-2;
  o.weight_decay = 0.1;
  const int64_t n = e->n_params;
  double *p = dmalloc((size_t)n), *m = dmalloc((size_t)n), *v = dmalloc((size_t)n);
  for (int64_t j = 0; j < n; j++)
    p[j] = e->params[j];
  const float gs[3] = {1.0f, 0.5f, 2.0f};
  for (int step = 1; step <= 3; step++) {
    fill(e->grads, (size_t)n, &r, -1, 1);
    for (int t = 0; t < e->n_tensors; t++) { /* the padding between tensors carries no gradient */
      int64_t end = t + 1 < e->n_tensors ? e->tensors[t + 1].offset : n;
      for (int64_t j = e->tensors[t].offset + e->tensors[t].numel; j < end; j++)
        e->grads[j] = 0;
    }
    for (int t = 0; t < e->n_tensors; t++) {
      const nnTensor *T = &e->tensors[t];
      double decay = T->ndim >= 2 ? 1 - o.lr * o.weight_decay : 1;
      for (int64_t j = T->offset; j < T->offset + T->numel; j++) {
        double g = (double)e->grads[j] * gs[step - 1];
        m[j] = o.beta1 * m[j] + (1 - o.beta1) * g;
        v[j] = o.beta2 * v[j] + (1 - o.beta2) * g * g;
        double mh = m[j] / (1 - pow(o.beta1, step)), vh = v[j] / (1 - pow(o.beta2, step));
        p[j] = p[j] * decay - o.lr * mh / (sqrt(vh) + o.eps);
      }
    }
    cr_assert_eq(nn_enc_adam_step(e, &o, gs[step - 1]), 0, "%s", tk_errmsg());
  }
  cr_assert_eq(e->adam_t, 3);
  double err = 0;
  for (int64_t j = 0; j < n; j++)
    err = fmax(err, fabs(p[j] - e->params[j]));
  printf("adam: max abs diff from the hand-computed update %.3g\n", err);
  cr_assert_lt(err, 1e-6);
  double sq = 0;
  for (int64_t j = 0; j < n; j++)
    sq += (double)e->grads[j] * e->grads[j];
  cr_assert(fabs(nn_enc_grad_sq(e) - sq) <= 1e-6 * sq, "%g vs %g", nn_enc_grad_sq(e), sq);
  nn_enc_zero_grad(e);
  cr_assert_eq(nn_enc_grad_sq(e), 0);
  cr_assert_neq(nn_enc_adam_step(e, &o, NAN), 0);
  o.beta1 = 1;
  cr_assert_neq(nn_enc_adam_step(e, &o, 1), 0);
  free(p), free(m), free(v);
  nn_enc_free(e);
}

Test(acting, parameters_only_until_training_is_added) {
  nnEncArch a;
  nn_enc_arch_default(&a, 3, 24, 24, 4);
  nnEnc *t = enc(&a, 7), *e = nn_enc_make_acting(&a, 7);
  cr_assert(e, "%s", tk_errmsg());
  cr_assert_null(e->grads);
  cr_assert_eq(memcmp(e->params, t->params, sizeof(float) * (size_t)e->n_params), 0,
               "same init as the trainable one");
  nnEncWork *w = ework(e, 2);
  float x[2 * 3 * 24 * 24], f[128], R[128] = {0};
  tkRng r;
  tk_rng_seed(&r, 7);
  fill(x, TK_ARRAY_LEN(x), &r, 0, 1);
  cr_assert_neq(nn_enc_backward(e, w, R, NULL, 0), 0, "backward before any forward");
  cr_assert(strstr(tk_errmsg(), "no forward pass"), "%s", tk_errmsg());
  cr_assert_eq(nn_enc_forward(e, w, x, 2, f), 0, "%s", tk_errmsg());
  cr_assert_neq(nn_enc_backward(e, w, R, NULL, 0), 0);
  cr_assert(strstr(tk_errmsg(), "made to act"), "%s", tk_errmsg());
  nnAdamOpts o;
  nn_adam_default(&o);
  cr_assert_neq(nn_enc_adam_step(e, &o, 1), 0);
  float *g = fmalloc((size_t)e->n_params);
  cr_assert_eq(nn_enc_backward(e, w, R, g, 0), 0, "into a gradient block of the caller's: %s", tk_errmsg());
  cr_assert_eq(nn_enc_add_training(e), 0);
  cr_assert_eq(nn_enc_backward(e, w, R, NULL, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_enc_adam_step(e, &o, 1), 0);
  /* a work made for another architecture is refused */
  nnEncArch b = a;
  b.layer[9].out = 32;
  nnEnc *other = enc(&b, 1);
  cr_assert_neq(nn_enc_forward(other, w, x, 2, f), 0);
  cr_assert(strstr(tk_errmsg(), "another encoder"), "%s", tk_errmsg());
  cr_assert_neq(nn_enc_copy_params(other, t), 0);
  cr_assert_eq(nn_enc_copy_params(e, t), 0);
  cr_assert_eq(memcmp(e->params, t->params, sizeof(float) * (size_t)e->n_params), 0);
  cr_assert_null(nn_enc_work_make(e, 0));
  free(g);
  nn_enc_work_free(w);
  nn_enc_free(e), nn_enc_free(t), nn_enc_free(other);
  nn_enc_free(NULL);
  nn_enc_work_free(NULL);
}

Test(images, crop_hwc_uint8_to_chw_float) {
  enum { H = 5, W = 7, C = 3 };
  uint8_t img[H * W * C];
  for (int i = 0; i < H * W * C; i++)
    img[i] = (uint8_t)(i * 7 % 256);
  float out[C * 3 * 4];
  nn_image_crop(img, H, W, C, 1, 2, 3, 4, out);
  for (int c = 0; c < C; c++)
    for (int y = 0; y < 3; y++)
      for (int x = 0; x < 4; x++)
        cr_assert_eq(out[(c * 3 + y) * 4 + x], (float)img[((1 + y) * W + 2 + x) * C + c] / 255.0f);
}

/* ---- determinism, allocation, learning
 * ----------------------------------------------------------------------- */

/* images of one bright dot (a 3x3 blob on noise) at a random place; target its (x, y) in [-1, 1] */
static void dots(tkRng *r, int B, int S, float *x, float *y) {
  for (int b = 0; b < B; b++) {
    float *im = x + (size_t)b * S * S;
    for (int j = 0; j < S * S; j++)
      im[j] = (float)tk_rng_range(r, 0, 0.1);
    int cx = 1 + (int)tk_rng_below(r, (uint64_t)(S - 2)), cy = 1 + (int)tk_rng_below(r, (uint64_t)(S - 2));
    for (int dy = -1; dy <= 1; dy++)
      for (int dx = -1; dx <= 1; dx++)
        im[(cy + dy) * S + cx + dx] = dx || dy ? 0.5f : 1.0f;
    y[2 * b] = (float)(-1.0 + 2.0 * cx / (S - 1));
    y[2 * b + 1] = (float)(-1.0 + 2.0 * cy / (S - 1));
  }
}

/* steps of Adam on the dot task; returns the mean loss of the first and last 10 steps */
static void train_dots(nnEnc *e, nnEncWork *w, int steps, uint64_t seed, double *first, double *last) {
  enum { B = 16, S = 24 };
  float x[B * S * S], y[2 * B], f[2 * B], d[2 * B];
  tkRng r;
  tk_rng_seed(&r, seed);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 3e-3;
  *first = *last = 0;
  for (int s = 0; s < steps; s++) {
    dots(&r, B, S, x, y);
    cr_assert_eq(nn_enc_forward(e, w, x, B, f), 0, "%s", tk_errmsg());
    double loss = 0;
    for (int j = 0; j < 2 * B; j++) {
      double diff = f[j] - y[j];
      loss += diff * diff / (2 * B);
      d[j] = (float)(2 * diff / (2 * B));
    }
    if (s < 10) *first += loss / 10;
    if (s >= steps - 10) *last += loss / 10;
    cr_assert_eq(nn_enc_backward(e, w, d, NULL, 0), 0, "%s", tk_errmsg());
    cr_assert_eq(nn_enc_adam_step(e, &o, 1), 0, "%s", tk_errmsg());
  }
}

static nnEncArch dot_arch(void) {
  const nnLayerSpec l[] = {L_conv(8, 3, 1, 1), L_relu(), L_conv(8, 3, 1, 1), L_ss(8), L_lin(2)};
  return mk(1, 24, 24, 5, l);
}

Test(train, learns_where_the_dot_is) {
  nnEncArch a = dot_arch();
  nnEnc *e = enc(&a, 31);
  nnEncWork *w = ework(e, 16);
  double first, last;
  train_dots(e, w, 300, 32, &first, &last);
  printf("dot regression: mse %.4f over the first 10 steps, %.4f over the last 10\n", first, last);
  cr_assert_lt(last, first / 10, "loss %.4f -> %.4f", first, last);
  nn_enc_work_free(w);
  nn_enc_free(e);
}

Test(determinism, same_seed_same_bits) {
  nnEncArch a = dot_arch();
  nnEnc *e1 = enc(&a, 41), *e2 = enc(&a, 41);
  nnEncWork *w1 = ework(e1, 16), *w2 = ework(e2, 16);
  double f1, l1, f2, l2;
  train_dots(e1, w1, 20, 42, &f1, &l1);
  train_dots(e2, w2, 20, 42, &f2, &l2);
  cr_assert_eq(memcmp(e1->params, e2->params, sizeof(float) * (size_t)e1->n_params), 0);
  cr_assert_eq(memcmp(e1->adam_v, e2->adam_v, sizeof(float) * (size_t)e1->n_params), 0);
  cr_assert_eq(l1, l2);
  nn_enc_work_free(w1), nn_enc_work_free(w2);
  nn_enc_free(e1), nn_enc_free(e2);
}

Test(memory, no_allocation_in_forward_backward_step) {
  nnEncArch a;
  nn_enc_arch_default(&a, 3, 40, 40, 8);
  nnEnc *e = enc(&a, 51);
  nnEncWork *w = ework(e, 8);
  tkRng r;
  tk_rng_seed(&r, 51);
  float *x = fmalloc(in_numel(e) * 8), f[8 * 64], R[8 * 64];
  fill(x, in_numel(e) * 8, &r, 0, 1);
  fill(R, 8 * 64, &r, -1, 1);
  nnAdamOpts o;
  nn_adam_default(&o);
  size_t used = 0;
  for (int s = 0; s < 12; s++) {
    if (s == 4) used = mallinfo2().uordblks; /* after the primitives for batch 8 and 3 are made */
    cr_assert_eq(nn_enc_forward(e, w, x, 8, f), 0, "%s", tk_errmsg());
    cr_assert_eq(nn_enc_backward(e, w, R, NULL, 0), 0);
    cr_assert_eq(nn_enc_adam_step(e, &o, 1), 0);
    cr_assert_eq(nn_enc_forward(e, w, x, 3, f), 0);
  }
  size_t after = mallinfo2().uordblks;
  printf("heap in use before/after 8 steps: %zu / %zu bytes\n", used, after);
  cr_assert_eq(after, used);
  free(x);
  nn_enc_work_free(w);
  nn_enc_free(e);
}
