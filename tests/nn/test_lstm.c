/* nn LSTM (BC-RNN): finite-difference checks of every LSTM and MLP tensor through time, stepwise rollout
 * against the sequence forward, memory and batch independence, JSON architecture, tensors, refusals,
 * a task that needs memory, determinism, no allocation in the loop. */
#include <criterion/criterion.h>
#include <malloc.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"
#include "nn_internal.h" /* the sigmoid kernel */
#include "tk.h"
#include "nn_ref.h" /* the double-precision MLP and heads, finite differences, arch/make/fill */

/* ---- helpers -------------------------------------------------------------------------------------- */

/* arch (nn_ref.h) with an LSTM of `layers` layers of H units in front of the MLP */
static nnArch rarch(int obs, int act, int n_hidden, const int *hidden, nnActivation f, int ln, nnHead head,
                    int layers, int H) {
  nnArch a = arch(obs, act, n_hidden, hidden, f, ln, head);
  a.rnn_layers = layers;
  a.rnn_hidden = H;
  return a;
}

static nnWork *work_seq(const nnNet *n, int B, int T) {
  nnWork *w = nn_work_make_seq(n, B, T);
  cr_assert(w, "nn_work_make_seq: %s", tk_errmsg());
  return w;
}

static float *fmalloc(size_t n) {
  float *p = malloc(sizeof(float) * (n ? n : 1));
  cr_assert(p);
  return p;
}

/* ---- the double-precision reference: an independent LSTM in front of nn_ref.h's MLP and heads -------- */

static double sigm(double x) { return 1 / (1 + exp(-x)); }

/* out [B*T, out_dim] (row b*T + t) of sequences X [B, T, obs], each from a zero state (torch.nn.LSTM) */
static void ref_seq(const nnNet *net, const double *P, const double *X, int B, int T, double *out) {
  const nnArch *a = &net->arch;
  int H = a->rnn_hidden, L = a->rnn_layers, D = a->obs_dim;
  double *top = dmalloc((size_t)B * T * H), *h = dmalloc((size_t)L * H), *c = dmalloc((size_t)L * H),
         *z = dmalloc((size_t)4 * H);
  for (int b = 0; b < B; b++) {
    memset(h, 0, sizeof(double) * (size_t)L * H);
    memset(c, 0, sizeof(double) * (size_t)L * H);
    for (int t = 0; t < T; t++) {
      const double *in = X + ((size_t)b * T + t) * D;
      int n_in = D;
      for (int k = 0; k < L; k++) {
        const double *Wih = P + net->tensors[4 * k].offset, *Whh = P + net->tensors[4 * k + 1].offset,
                     *bih = P + net->tensors[4 * k + 2].offset, *bhh = P + net->tensors[4 * k + 3].offset;
        double *hk = h + (size_t)k * H, *ck = c + (size_t)k * H;
        for (int r = 0; r < 4 * H; r++) {
          z[r] = bih[r] + bhh[r];
          for (int j = 0; j < n_in; j++)
            z[r] += Wih[r * n_in + j] * in[j];
          for (int j = 0; j < H; j++)
            z[r] += Whh[r * H + j] * hk[j];
        }
        for (int j = 0; j < H; j++) {
          double i = sigm(z[j]), f = sigm(z[H + j]), g = tanh(z[2 * H + j]), o = sigm(z[3 * H + j]);
          ck[j] = f * ck[j] + i * g;
          hk[j] = o * tanh(ck[j]);
        }
        in = hk;
        n_in = H;
      }
      memcpy(top + ((size_t)b * T + t) * H, h + (size_t)(L - 1) * H, sizeof(double) * (size_t)H);
    }
  }
  ref_mlp(net, P, top, B * T, out);
  free(top);
  free(h);
  free(c);
  free(z);
}

struct fdCtx {
  int B, T;
  const float *y; /* [B, T, A] */
  double *out;    /* scratch [B*T, out_dim] */
};

static double ref_eval(const nnNet *net, const double *P, const double *X, const fdCtx *c) {
  ref_seq(net, P, X, c->B, c->T, c->out);
  return ref_loss(net, c->out, c->y, c->B * c->T);
}

/* nn_seq_loss + nn_backward on a fresh network against the reference's numeric gradient (fd_one) of every
 * parameter; corrupt >= 0: the largest analytic entry of that tensor is scaled by 1.05 (the checker
 * must notice) */
static fdStat seq_check(const nnArch *a, uint64_t seed, int B, int T, int corrupt, int *n_lstm_checked) {
  nnNet *net = make(a, seed);
  nnWork *w = work_seq(net, B, T);
  tkRng r;
  tk_rng_seed(&r, seed + 100);
  shake_ln(net, &r);
  int N = B * T, A = a->act_dim;
  float *x = fmalloc((size_t)N * a->obs_dim), *y = fmalloc((size_t)N * A);
  fill(x, (size_t)N * a->obs_dim, &r, -1.5, 1.5);
  fill(y, (size_t)N * A, &r, -0.9, 0.9);
  double *P = to_double(net->params, (size_t)net->n_params), *X = to_double(x, (size_t)N * a->obs_dim);
  fdCtx c = {.B = B, .T = T, .y = y, .out = dmalloc((size_t)N * net->out_dim)};
  double ref = ref_eval(net, P, X, &c);
  nn_zero_grad(net);
  float l;
  cr_assert_eq(nn_seq_loss(net, w, x, y, B, T, &l), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_backward(net, w), 0, "%s", tk_errmsg());
  cr_assert_float_eq(l, ref, 1e-5 * fabs(ref) + 1e-5, "library loss %.8g vs double reference %.8g", l, ref);
  float *g = fmalloc((size_t)net->n_params);
  memcpy(g, net->grads, sizeof(float) * (size_t)net->n_params);
  /* dLoss/dx through time (a camera encoder's gradient): nn_backward_out on the loss's dout gives the
   * same parameter gradients, bit for bit, and an input gradient the reference differentiates */
  float *dx = fmalloc((size_t)N * a->obs_dim);
  nn_zero_grad(net);
  cr_assert_eq(nn_backward_out(net, w, w->dout, dx, 1), 0, "%s", tk_errmsg());
  cr_assert_eq(memcmp(net->grads, g, sizeof(float) * (size_t)net->n_params), 0,
               "nn_backward_out's parameter gradients differ from nn_backward's");
  if (corrupt >= 0) {
    const nnTensor *Tc = &net->tensors[corrupt];
    int64_t at = Tc->offset;
    for (int64_t k = Tc->offset; k < Tc->offset + Tc->numel; k++)
      if (fabsf(g[k]) > fabsf(g[at])) at = k;
    g[at] *= 1.05f;
  }
  fdStat s = {0};
  int nl = 0;
  for (int t = 0; t < net->n_tensors; t++) {
    const nnTensor *Tn = &net->tensors[t];
    for (int64_t k = 0; k < Tn->numel; k++) {
      fd_one(net, P, X, &c, &P[Tn->offset + k], g[Tn->offset + k], &s, Tn->name);
      nl += !strncmp(Tn->name, "lstm", 4);
    }
  }
  if (n_lstm_checked) *n_lstm_checked = nl;
  for (int64_t k = 0; k < (int64_t)N * a->obs_dim; k++)
    fd_one(net, P, X, &c, &X[k], dx[k], &s, "input");
  free(dx);
  free(g);
  free(P);
  free(X);
  free(c.out);
  free(x);
  free(y);
  nn_work_free(w);
  nn_net_free(net);
  return s;
}

/* ---- finite differences through time --------------------------------------------------------------- */

Test(fd, lstm_mse_head) {
  const int h[1] = {7};
  nnArch a = rarch(5, 3, 1, h, NN_TANH, 0, NN_HEAD_MSE, 2, 6);
  int nl = 0;
  fdStat s = seq_check(&a, 1, 3, 4, -1, &nl);
  report("lstm 2x6 + mlp 7 tanh, mse (B 3, T 4)", s);
  /* every LSTM entry was checked: 2 layers of [24,5]+[24,6]+24+24 and [24,6]+[24,6]+24+24 */
  cr_assert_eq(nl, 24 * 5 + 24 * 6 + 48 + 24 * 6 + 24 * 6 + 48);
}

Test(fd, lstm_mse_tanh_head_no_hidden_layer) {
  /* the MLP is a single Linear [A, H] */
  nnArch a = rarch(5, 3, 0, NULL, NN_RELU, 0, NN_HEAD_MSE, 2, 6);
  a.tanh = 1;
  report("lstm 2x6 + linear, mse tanh-bounded (B 3, T 4)", seq_check(&a, 2, 3, 4, -1, NULL));
}

Test(fd, lstm_gmm_head) {
  const int h[1] = {5};
  nnArch a = rarch(5, 2, 1, h, NN_ELU, 1, NN_HEAD_GMM, 2, 6);
  a.gmm_modes = 3;
  a.tanh = 1;
  report("lstm 2x6 + mlp 5 elu layernorm, gmm 3 modes", seq_check(&a, 3, 3, 4, -1, NULL));
  a.tanh = 0;
  a.layer_norm = 0;
  a.activation = NN_TANH;
  report("lstm 2x6 + mlp 5 tanh, gmm 3 modes, raw means", seq_check(&a, 4, 3, 4, -1, NULL));
}

Test(fd, lstm_gaussian_head_three_layers_and_one_step) {
  const int h[1] = {5};
  nnArch a = rarch(4, 2, 1, h, NN_TANH, 0, NN_HEAD_GAUSSIAN, 3, 5);
  report("lstm 3x5 + mlp 5 tanh, gaussian nll (B 2, T 5)", seq_check(&a, 5, 2, 5, -1, NULL));
  nnArch b = rarch(5, 3, 1, h, NN_TANH, 0, NN_HEAD_MSE, 2, 6);
  /* T = 1: W_hh gets no gradient (zero state); the checker sees zeros on both sides */
  report("lstm 2x6, a single step (T 1)", seq_check(&b, 6, 3, 1, -1, NULL));
}

Test(fd, checker_catches_a_wrong_lstm_gradient) {
  const int h[1] = {7};
  nnArch a = rarch(5, 3, 1, h, NN_TANH, 0, NN_HEAD_MSE, 2, 6);
  nnNet *net = make(&a, 1);
  /* one entry of each LSTM tensor, 5% off */
  for (int q = 0; q < 8; q++) {
    fdStat s = seq_check(&a, 1, 3, 4, q, NULL);
    printf("fd with one entry of %s corrupted by 5%%: max_rel_err=%.3e\n", net->tensors[q].name, s.max_rel);
    cr_assert_gt(s.max_rel, 0.03);
  }
  nn_net_free(net);
}

Test(kernels, sigmoid_is_accurate_and_saturates) {
  double me = 0;
  for (double x = -30; x <= 30; x += 0.0137) {
    float xf = (float)x;
    me = fmax(me, fabs(nn_sigmoid(xf) - 1 / (1 + exp(-(double)xf))));
  }
  printf("sigmoid float kernel: max abs error %.2e over [-30, 30]\n", me);
  cr_assert_lt(me, 2e-7);
  cr_assert_eq(nn_sigmoid(-200.0f), 0.0f);
  cr_assert_eq(nn_sigmoid(200.0f), 1.0f);
  cr_assert_eq(nn_sigmoid(0.0f), 0.5f);
  cr_assert(isnan(nn_sigmoid(NAN)));
}

/* ---- the sequence forward: loss as nn_loss, stepwise rollout, memory, independence ----------------- */

/* the MLP of a recurrent network is nn_loss's MLP on the top layer's h: same loss and MLP gradients */
Test(seq, loss_is_nn_loss_of_the_mlp_on_the_top_h) {
  const int h[2] = {12, 9};
  nnArch a = rarch(6, 3, 2, h, NN_RELU, 1, NN_HEAD_GMM, 2, 10);
  nnArch p = a;
  p.rnn_layers = 0;
  p.obs_dim = 10;
  int B = 4, T = 5, N = B * T;
  nnNet *net = make(&a, 7), *mlp = make(&p, 8);
  for (int i = 0; i < mlp->n_tensors; i++) {
    const nnTensor *src = nn_tensor_find(net, mlp->tensors[i].name);
    cr_assert(src, "%s", mlp->tensors[i].name);
    cr_assert_eq(nn_tensor_load(mlp, src->name, src->ndim, src->shape, src->data), 0, "%s", tk_errmsg());
  }
  nnWork *w = work_seq(net, B, T), *wm = nn_work_make(mlp, N);
  tkRng r;
  tk_rng_seed(&r, 9);
  float x[20 * 6], y[20 * 3], l1, l2;
  fill(x, sizeof x / 4, &r, -1, 1);
  fill(y, sizeof y / 4, &r, -0.9, 0.9);
  nn_zero_grad(net);
  nn_zero_grad(mlp);
  cr_assert_eq(nn_seq_loss(net, w, x, y, B, T, &l1), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_backward(net, w), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_loss(mlp, wm, w->mlp_in, y, N, &l2), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_backward(mlp, wm), 0, "%s", tk_errmsg());
  printf("seq loss %.7f, nn_loss on the top h %.7f\n", l1, l2);
  cr_assert_eq(l1, l2);
  cr_assert_eq(memcmp(w->out, wm->out, sizeof(float) * (size_t)N * net->out_dim), 0);
  for (int i = 0; i < mlp->n_tensors; i++) {
    const nnTensor *gm = &mlp->tensors[i], *gr = nn_tensor_find(net, gm->name);
    cr_assert_eq(memcmp(gm->grad, gr->grad, sizeof(float) * (size_t)gm->numel), 0, "%s", gm->name);
  }
  nn_work_free(w);
  nn_work_free(wm);
  nn_net_free(net);
  nn_net_free(mlp);
}

static void rollout_matches(nnArch *a, uint64_t seed, int B, int T) {
  nnNet *net = make(a, seed);
  nnWork *ws = work_seq(net, B, T), *w1 = nn_work_make(net, B);
  cr_assert(w1, "%s", tk_errmsg());
  cr_assert_eq(w1->max_T, 1);
  int D = a->obs_dim, A = a->act_dim;
  float *x = fmalloc((size_t)B * T * D), *seq = fmalloc((size_t)B * T * A), *xs = fmalloc((size_t)B * D),
        *act = fmalloc((size_t)B * A);
  tkRng r;
  tk_rng_seed(&r, seed + 1);
  fill(x, (size_t)B * T * D, &r, -2, 2);
  cr_assert_eq(nn_seq_act(net, ws, x, B, T, seq), 0, "%s", tk_errmsg());
  int64_t ns = nn_rnn_state_size(net, B);
  cr_assert_eq(ns, (int64_t)a->rnn_layers * 2 * B * a->rnn_hidden);
  float *state = calloc((size_t)ns, sizeof(float));
  double md = 0, mo = 0;
  for (int t = 0; t < T; t++) {
    for (int b = 0; b < B; b++)
      memcpy(xs + (size_t)b * D, x + ((size_t)b * T + t) * D, sizeof(float) * (size_t)D);
    cr_assert_eq(nn_rnn_step(net, w1, state, xs, B, act), 0, "%s", tk_errmsg());
    for (int b = 0; b < B; b++) {
      for (int j = 0; j < A; j++)
        md = fmax(md, fabs(act[b * A + j] - seq[((size_t)b * T + t) * A + j]));
      for (int j = 0; j < net->out_dim; j++)
        mo = fmax(mo, fabs(w1->out[b * net->out_dim + j] - ws->out[((size_t)b * T + t) * net->out_dim + j]));
    }
  }
  printf("%s head: %d steps of nn_rnn_step vs nn_seq_act: max |action diff| %.2e, max |output diff| %.2e\n",
         nn_head_name(a->head), T, md, mo);
  cr_assert_lt(md, 1e-5);
  cr_assert_lt(mo, 1e-5);
  /* a rollout step leaves nothing to backpropagate */
  cr_assert_eq(nn_backward(net, w1), TK_EINVAL);
  free(state);
  free(x);
  free(seq);
  free(xs);
  free(act);
  nn_work_free(ws);
  nn_work_free(w1);
  nn_net_free(net);
}

Test(seq, rnn_step_matches_seq_act) {
  const int h[1] = {32};
  nnArch a = rarch(7, 3, 1, h, NN_RELU, 0, NN_HEAD_MSE, 2, 16);
  a.tanh = 1;
  rollout_matches(&a, 11, 5, 12);
  a.head = NN_HEAD_GMM;
  a.gmm_modes = 4;
  rollout_matches(&a, 12, 5, 12);
  nnArch b = rarch(7, 2, 0, NULL, NN_RELU, 0, NN_HEAD_GAUSSIAN, 1, 40);
  rollout_matches(&b, 13, 3, 20);
}

Test(seq, memory_causality_and_independent_sequences) {
  const int h[1] = {16};
  nnArch a = rarch(4, 2, 1, h, NN_TANH, 0, NN_HEAD_MSE, 2, 12);
  int B = 3, T = 6, D = 4, D_out = 2;
  nnNet *net = make(&a, 21);
  nnWork *w = work_seq(net, B, T);
  float x[3 * 6 * 4], x2[3 * 6 * 4], o1[3 * 6 * 2], o2[3 * 6 * 2];
  tkRng r;
  tk_rng_seed(&r, 22);
  fill(x, sizeof x / 4, &r, -1, 1);
  cr_assert_eq(nn_seq_forward(net, w, x, B, T), 0, "%s", tk_errmsg());
  memcpy(o1, w->out, sizeof o1);
  /* 1. change the first step of sequence 0: its later outputs change (memory), the others do not */
  memcpy(x2, x, sizeof x);
  for (int j = 0; j < D; j++)
    x2[j] += 0.5f;
  cr_assert_eq(nn_seq_forward(net, w, x2, B, T), 0);
  memcpy(o2, w->out, sizeof o2);
  for (int t = 1; t < T; t++) {
    double d = 0;
    for (int j = 0; j < D_out; j++)
      d = fmax(d, fabs(o1[t * D_out + j] - o2[t * D_out + j]));
    printf("sequence 0, step %d: |output change| %.2e after changing step 0\n", t, d);
    cr_assert_gt(d, 1e-6, "step %d does not remember step 0", t);
  }
  cr_assert_eq(memcmp(o1 + T * D_out, o2 + T * D_out, sizeof(float) * (size_t)(B - 1) * T * D_out), 0,
               "sequences 1.. changed when only sequence 0 did");
  /* 2. change sequence 1 everywhere: sequences 0 and 2 keep their outputs bit for bit */
  memcpy(x2, x, sizeof x);
  for (int i = T * D; i < 2 * T * D; i++)
    x2[i] = -x2[i];
  cr_assert_eq(nn_seq_forward(net, w, x2, B, T), 0);
  cr_assert_eq(memcmp(w->out, o1, sizeof(float) * (size_t)T * D_out), 0);
  cr_assert_eq(memcmp(w->out + 2 * T * D_out, o1 + 2 * T * D_out, sizeof(float) * (size_t)T * D_out), 0);
  cr_assert_neq(memcmp(w->out + T * D_out, o1 + T * D_out, sizeof(float) * (size_t)T * D_out), 0);
  /* 3. causality: changing step 3 of every sequence leaves steps 0..2 alone */
  memcpy(x2, x, sizeof x);
  for (int b = 0; b < B; b++)
    for (int j = 0; j < D; j++)
      x2[(b * T + 3) * D + j] += 1.0f;
  cr_assert_eq(nn_seq_forward(net, w, x2, B, T), 0);
  for (int b = 0; b < B; b++) {
    cr_assert_eq(memcmp(w->out + b * T * D_out, o1 + b * T * D_out, sizeof(float) * 3 * D_out), 0);
    cr_assert_neq(memcmp(w->out + (b * T + 3) * D_out, o1 + (b * T + 3) * D_out, sizeof(float) * D_out), 0);
  }
  /* 4. a shorter sequence is the prefix of a longer one (each starts from zero) */
  float xp[3 * 3 * 4];
  for (int b = 0; b < B; b++)
    memcpy(xp + b * 3 * D, x + b * T * D, sizeof(float) * 3 * D);
  cr_assert_eq(nn_seq_forward(net, w, xp, B, 3), 0);
  double md = 0;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < 3; t++)
      for (int j = 0; j < D_out; j++)
        md = fmax(md, fabs(w->out[(b * 3 + t) * D_out + j] - o1[(b * T + t) * D_out + j]));
  printf("T 3 vs the first 3 steps of T 6: max |output diff| %.2e\n", md);
  cr_assert_lt(md, 1e-6);
  nn_work_free(w);
  nn_net_free(net);
}

/* ---- architecture JSON and tensors ----------------------------------------------------------------- */

Test(arch, rnn_json_round_trip_and_errors) {
  const int h[1] = {1024};
  nnArch a = rarch(19, 7, 1, h, NN_RELU, 0, NN_HEAD_GMM, 2, 400), b;
  a.rnn_horizon = 10;
  a.tanh = 1;
  char *js;
  cr_assert_eq(nn_arch_to_json(&a, &js), 0, "%s", tk_errmsg());
  printf("rnn arch json: %s\n", js);
  cr_assert(strstr(js, "\"rnn_layers\":2") && strstr(js, "\"rnn_hidden\":400") &&
                strstr(js, "\"rnn_horizon\":10"),
            "%s", js);
  cr_assert_eq(nn_arch_from_json(js, &b), 0, "%s", tk_errmsg());
  cr_assert_eq(memcmp(&a, &b, sizeof a), 0);
  free(js);
  /* a plain network writes no rnn keys, and reads back with rnn_layers 0 */
  a.rnn_layers = 0;
  cr_assert_eq(nn_arch_to_json(&a, &js), 0, "%s", tk_errmsg());
  cr_assert_null(strstr(js, "rnn"), "%s", js);
  cr_assert_eq(nn_arch_from_json(js, &b), 0, "%s", tk_errmsg());
  cr_assert_eq(b.rnn_layers, 0);
  cr_assert_eq(memcmp(&a, &b, sizeof a), 0);
  free(js);
#define PRE                                                                                                  \
  "{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":3,\"act_dim\":2,\"hidden\":[4],\"head\":"       \
  "\"mse\","
  struct {
    const char *json;
    int code;
    const char *msg;
  } bad[] = {
      {PRE "\"rnn_layers\":-1}", TK_ERANGE, "\"rnn_layers\""},
      {PRE "\"rnn_layers\":5}", TK_ERANGE, "\"rnn_layers\""},
      {PRE "\"rnn_layers\":1.5}", TK_ERANGE, "\"rnn_layers\""},
      {PRE "\"rnn_layers\":\"2\"}", TK_EFORMAT, "\"rnn_layers\""},
      {PRE "\"rnn_layers\":2,\"rnn_horizon\":0}", TK_ERANGE, "\"rnn_horizon\""},
      {PRE "\"rnn_layers\":2,\"rnn_horizon\":1001}", TK_ERANGE, "\"rnn_horizon\""},
      {PRE "\"rnn_layers\":2,\"rnn_hidden\":0}", TK_ERANGE, "\"rnn_hidden\""},
      {PRE "\"rnn_layers\":2,\"rnn_hiden\":40}", TK_EFORMAT, "unknown key \"rnn_hiden\""},
  };
#undef PRE
  for (size_t i = 0; i < TK_ARRAY_LEN(bad); i++) {
    nn_arch_default(&b);
    int rc = nn_arch_from_json(bad[i].json, &b);
    cr_assert_eq(rc, bad[i].code, "case %zu: rc %d (%s)", i, rc, tk_errmsg());
    cr_assert(strstr(tk_errmsg(), bad[i].msg), "case %zu: message \"%s\" lacks %s", i, tk_errmsg(),
              bad[i].msg);
  }
  /* optional keys: defaults */
  cr_assert_eq(nn_arch_from_json("{\"format\":\"demokit.nn_arch\",\"version\":1,\"obs_dim\":3,\"act_dim\":2,"
                                 "\"hidden\":[],\"head\":\"mse\",\"rnn_layers\":1}",
                                 &b),
               0, "%s", tk_errmsg());
  cr_assert_eq(b.rnn_layers, 1);
  cr_assert_eq(b.rnn_hidden, 400);
  cr_assert_eq(b.rnn_horizon, 10);
  /* nn_arch_validate names the field */
  nn_arch_default(&b);
  cr_assert_eq(b.rnn_layers, 0);
  b.obs_dim = 3;
  b.act_dim = 2;
  b.rnn_hidden = 0; /* not looked at without an LSTM */
  cr_assert_eq(nn_arch_validate(&b), 0, "%s", tk_errmsg());
  b.rnn_layers = 1;
  cr_assert_eq(nn_arch_validate(&b), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "rnn_hidden"), "%s", tk_errmsg());
  b.rnn_hidden = 8;
  b.rnn_horizon = 0;
  cr_assert_eq(nn_arch_validate(&b), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "rnn_horizon"), "%s", tk_errmsg());
  b.rnn_horizon = 10;
  b.rnn_layers = NN_MAX_RNN_LAYERS + 1;
  cr_assert_eq(nn_arch_validate(&b), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "rnn_layers"), "%s", tk_errmsg());
  b.rnn_layers = -1;
  cr_assert_eq(nn_arch_validate(&b), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "rnn_layers"), "%s", tk_errmsg());
  cr_assert_null(nn_net_make(&b, 1));
}

Test(tensors, lstm_names_shapes_init_load_copy) {
  const int h[1] = {16};
  nnArch a = rarch(5, 3, 1, h, NN_RELU, 1, NN_HEAD_MSE, 2, 8);
  nnNet *net = make(&a, 30);
  const char *names[] = {"lstm0.weight_ih", "lstm0.weight_hh", "lstm0.bias_ih", "lstm0.bias_hh",
                         "lstm1.weight_ih", "lstm1.weight_hh", "lstm1.bias_ih", "lstm1.bias_hh",
                         "l0.weight",       "l0.bias",         "ln0.gain",      "ln0.bias",
                         "l1.weight",       "l1.bias"};
  const int64_t shapes[][2] = {{32, 5}, {32, 8}, {32, 0}, {32, 0}, {32, 8}, {32, 8}, {32, 0},
                               {32, 0}, {16, 8}, {16, 0}, {16, 0}, {16, 0}, {3, 16}, {3, 0}};
  cr_assert_eq(net->n_tensors, 14);
  int64_t total = 0, prev_end = 0;
  for (int i = 0; i < 14; i++) {
    const nnTensor *t = &net->tensors[i];
    cr_assert_str_eq(t->name, names[i]);
    cr_assert_eq(t->shape[0], shapes[i][0], "%s", t->name);
    cr_assert_eq(t->shape[1], shapes[i][1], "%s", t->name);
    cr_assert_eq(t->ndim, shapes[i][1] ? 2 : 1);
    cr_assert_eq(t->data, net->params + t->offset);
    cr_assert_eq(t->grad, net->grads + t->offset);
    cr_assert_eq(((uintptr_t)t->data) % 64, 0);
    cr_assert_geq(t->offset, prev_end); /* in parameter order, not overlapping */
    prev_end = t->offset + t->numel;
    total += t->numel;
  }
  cr_assert_leq(prev_end, net->n_params);
  cr_assert_eq(net->dims[0], 8); /* the MLP reads h */
  cr_assert_eq(net->lstm[0].w_ih, net->tensors[0].data);
  cr_assert_eq(net->lstm[1].db_hh, net->tensors[7].grad);
  cr_assert_eq(net->lstm[0].in, 5);
  cr_assert_eq(net->lstm[1].in, 8);
  /* init: torch.nn.LSTM's uniform(+-1/sqrt(H)) for every LSTM tensor, torch.nn.Linear for the MLP */
  double bound = 1 / sqrt(8.0);
  for (int i = 0; i < 8; i++) {
    const nnTensor *t = &net->tensors[i];
    double s2 = 0;
    for (int64_t k = 0; k < t->numel; k++) {
      cr_assert_leq(fabsf(t->data[k]), bound, "%s", t->name);
      s2 += (double)t->data[k] * t->data[k];
    }
    cr_assert_float_eq(s2 / t->numel, bound * bound / 3, 0.45 * bound * bound / 3, "%s var %g", t->name,
                       s2 / t->numel);
  }
  const nnTensor *l0 = nn_tensor_find(net, "l0.weight");
  for (int64_t k = 0; k < l0->numel; k++)
    cr_assert_leq(fabsf(l0->data[k]), 1 / sqrt(8.0));
  /* no hidden layer: the output Linear is [A, H] */
  nnArch z = rarch(5, 3, 0, NULL, NN_RELU, 0, NN_HEAD_MSE, 1, 8);
  nnNet *zn = make(&z, 1);
  cr_assert_eq(nn_tensor_find(zn, "l0.weight")->shape[0], 3);
  cr_assert_eq(nn_tensor_find(zn, "l0.weight")->shape[1], 8);
  nn_net_free(zn);
  /* load, copy, polyak, Adam over the whole block */
  float buf[32 * 8];
  for (int i = 0; i < 32 * 8; i++)
    buf[i] = (float)i / 256;
  int64_t good[2] = {32, 8}, wrong[2] = {32, 5};
  cr_assert_eq(nn_tensor_load(net, "lstm1.weight_hh", 2, good, buf), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_tensor_find(net, "lstm1.weight_hh")->data[9], 9.0f / 256);
  cr_assert_eq(nn_tensor_load(net, "lstm1.weight_hh", 2, wrong, buf), TK_EFORMAT);
  nnNet *other = make(&a, 31);
  cr_assert_eq(nn_copy_params(other, net), 0);
  cr_assert_eq(memcmp(other->params, net->params, sizeof(float) * (size_t)net->n_params), 0);
  float before = other->lstm[0].w_hh[3];
  net->lstm[0].w_hh[3] = before + 1;
  cr_assert_eq(nn_polyak(other, net, 0.5f), 0);
  cr_assert_float_eq(other->lstm[0].w_hh[3], before + 0.5f, 1e-6);
  nnArch c = a;
  c.rnn_hidden = 9;
  nnNet *diff = make(&c, 1);
  cr_assert_eq(nn_copy_params(diff, net), TK_EINVAL);
  nn_net_free(diff);
  nnArch plain = a;
  plain.rnn_layers = 0;
  nnNet *pn = make(&plain, 1);
  cr_assert_eq(nn_copy_params(pn, net), TK_EINVAL);
  nn_net_free(pn);
  /* nn_net_init reproduces nn_net_make */
  nn_net_init(other, 30);
  nnNet *again = make(&a, 30);
  cr_assert_eq(memcmp(other->params, again->params, sizeof(float) * (size_t)net->n_params), 0);
  nn_net_free(again);
  nn_net_free(other);
  nn_net_free(net);
}

/* ---- refusals ------------------------------------------------------------------------------------- */

Test(errors, plain_calls_refuse_a_recurrent_network_and_vice_versa) {
  const int h[1] = {8};
  nnArch ra = rarch(3, 2, 1, h, NN_RELU, 0, NN_HEAD_GAUSSIAN, 1, 6), pa = ra;
  pa.rnn_layers = 0;
  nnNet *rn = make(&ra, 1), *pn = make(&pa, 1);
  nnWork *rw = nn_work_make(rn, 4), *pw = nn_work_make(pn, 4);
  cr_assert(rw && pw, "%s", tk_errmsg());
  cr_assert_eq(rw->max_T, 1);
  float x[4 * 5 * 3] = {0}, y[4 * 5 * 2] = {0}, act[40], lp[20], eps[40] = {0}, dx[12], l;
  tkRng r;
  tk_rng_seed(&r, 1);
  nnAdamOpts o;
  nn_adam_default(&o);
#define REFUSED(call)                                                                                        \
  do {                                                                                                       \
    int rc_ = (call);                                                                                        \
    cr_assert_eq(rc_, TK_EINVAL, "%s: rc %d", #call, rc_);                                                   \
    cr_assert(strstr(tk_errmsg(), "recurrent"), "%s: %s", #call, tk_errmsg());                               \
  } while (0)
  /* a recurrent network in the plain calls */
  REFUSED(nn_forward(rn, rw, x, 2));
  REFUSED(nn_loss(rn, rw, x, y, 2, &l));
  REFUSED(nn_act(rn, rw, x, 2, act));
  REFUSED(nn_sample(rn, rw, x, 2, &r, act));
  REFUSED(nn_log_prob(rn, rw, x, y, 2, lp));
  REFUSED(nn_gauss_sample(rn, rw, x, 2, eps, act, lp));
  REFUSED(nn_gauss_backward(rn, rw, act, lp));
  REFUSED(nn_backward_out(rn, rw, y, dx, 1));
  REFUSED(nn_train_step(rn, rw, &o, x, y, 2, &l, NULL));
  cr_assert_null(nn_team_make(rn, 4, 2));
  cr_assert(strstr(tk_errmsg(), "recurrent"), "%s", tk_errmsg());
  cr_assert_eq(nn_backward(rn, rw), TK_EINVAL); /* nothing to backpropagate */
  /* a plain network in the recurrent calls */
  REFUSED(nn_seq_forward(pn, pw, x, 2, 1));
  REFUSED(nn_seq_loss(pn, pw, x, y, 2, 1, &l));
  REFUSED(nn_seq_act(pn, pw, x, 2, 1, act));
  REFUSED(nn_seq_train_step(pn, pw, &o, x, y, 2, 1, &l, NULL));
  float state[64] = {0};
  REFUSED(nn_rnn_step(pn, pw, state, x, 2, act));
  cr_assert_null(nn_work_make_seq(pn, 4, 5));
  cr_assert(strstr(tk_errmsg(), "recurrent"), "%s", tk_errmsg());
  cr_assert_eq(nn_rnn_state_size(pn, 4), 0);
#undef REFUSED
  /* sizes against the work */
  nnWork *sw = work_seq(rn, 4, 5);
  cr_assert_eq(nn_seq_forward(rn, sw, x, 5, 5), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "max_batch"), "%s", tk_errmsg());
  cr_assert_eq(nn_seq_forward(rn, sw, x, 4, 6), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "max_T"), "%s", tk_errmsg());
  cr_assert_eq(nn_seq_loss(rn, sw, x, y, 4, 0, &l), TK_ERANGE);
  cr_assert_eq(nn_seq_act(rn, sw, x, 0, 5, act), TK_ERANGE);
  cr_assert_eq(nn_seq_forward(rn, sw, NULL, 4, 5), TK_EINVAL);
  cr_assert_eq(nn_seq_forward(rn, rw, x, 2, 2), TK_ERANGE); /* nn_work_make: one step */
  cr_assert_eq(nn_seq_forward(rn, rw, x, 4, 1), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_rnn_step(rn, sw, state, x, 5, act), TK_ERANGE);
  cr_assert_eq(nn_rnn_step(rn, sw, NULL, x, 2, act), TK_EINVAL);
  cr_assert_null(nn_work_make_seq(rn, 0, 5));
  cr_assert_null(nn_work_make_seq(rn, 4, 0));
  /* the work of another network */
  nnArch ob = ra;
  ob.rnn_hidden = 7;
  nnNet *on = make(&ob, 2);
  cr_assert_eq(nn_seq_forward(on, sw, x, 2, 2), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "another network"), "%s", tk_errmsg());
  /* backward only after nn_seq_loss */
  cr_assert_eq(nn_seq_forward(rn, sw, x, 2, 3), 0);
  cr_assert_eq(nn_backward(rn, sw), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "nn_seq_loss"), "%s", tk_errmsg());
  cr_assert_eq(nn_seq_loss(rn, sw, x, y, 2, 3, &l), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_backward(rn, sw), 0, "%s", tk_errmsg());
  cr_assert_eq(nn_seq_act(rn, sw, x, 2, 3, act), 0);
  cr_assert_eq(nn_backward(rn, sw), TK_EINVAL);
  /* a non-finite loss: reported, and the step leaves the parameters alone */
  y[0] = NAN;
  float p0 = rn->params[0];
  cr_assert_eq(nn_seq_loss(rn, sw, x, y, 2, 3, &l), TK_ERANGE);
  cr_assert_eq(nn_seq_train_step(rn, sw, &o, x, y, 2, 3, &l, NULL), TK_ERANGE);
  cr_assert_eq(rn->params[0], p0);
  cr_assert_eq(rn->adam_t, 0);
  nn_work_free(sw);
  nn_work_free(rw);
  nn_work_free(pw);
  nn_net_free(on);
  nn_net_free(rn);
  nn_net_free(pn);
}

/* ---- training ---------------------------------------------------------------------------------------- */

/* obs (u, noise) per step, target at step t = u at step t-2 (0 for t < 2): only memory predicts it */
#define MEM_T 10
#define MEM_LAG 2
static void memory_batch(tkRng *r, float *x, float *y, int B) {
  for (int b = 0; b < B; b++)
    for (int t = 0; t < MEM_T; t++) {
      float *xr = x + ((size_t)b * MEM_T + t) * 2;
      xr[0] = (float)tk_rng_range(r, -1, 1);
      xr[1] = (float)tk_rng_range(r, -1, 1);
      y[(size_t)b * MEM_T + t] = t >= MEM_LAG ? x[((size_t)b * MEM_T + t - MEM_LAG) * 2] : 0.0f;
    }
}

Test(train, learns_a_task_that_needs_memory) {
  const int h[1] = {32};
  int B = 32, steps = 1500, BE = 256;
  nnArch a = rarch(2, 1, 1, h, NN_TANH, 0, NN_HEAD_MSE, 1, 32), p = a;
  p.rnn_layers = 0;
  nnNet *rn = make(&a, 40), *pn = make(&p, 40);
  nnWork *rw = work_seq(rn, BE, MEM_T), *pw = nn_work_make(pn, BE * MEM_T);
  cr_assert(pw);
  float *x = fmalloc((size_t)BE * MEM_T * 2), *y = fmalloc((size_t)BE * MEM_T), l;
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 3e-3;
  o.clip_norm = 1;
  tkRng r;
  tk_rng_seed(&r, 41);
  for (int s = 0; s < steps; s++) {
    memory_batch(&r, x, y, B);
    cr_assert_eq(nn_seq_train_step(rn, rw, &o, x, y, B, MEM_T, &l, NULL), 0, "%s", tk_errmsg());
    /* the plain MLP sees the same rows one step at a time */
    cr_assert_eq(nn_train_step(pn, pw, &o, x, y, B * MEM_T, &l, NULL), 0, "%s", tk_errmsg());
  }
  /* held-out sequences */
  memory_batch(&r, x, y, BE);
  float lr, lp;
  cr_assert_eq(nn_seq_loss(rn, rw, x, y, BE, MEM_T, &lr), 0);
  cr_assert_eq(nn_loss(pn, pw, x, y, BE * MEM_T, &lp), 0);
  /* the target is independent of the current observation: the best memoryless prediction is E[y] = 0,
   * with mean squared error E[y^2] = (T - lag)/T * Var(U(-1, 1)) */
  double bound = (double)(MEM_T - MEM_LAG) / MEM_T / 3;
  printf("memory task (y_t = u_{t-%d}): lstm mse %.5f, plain mlp mse %.5f, best memoryless %.5f\n", MEM_LAG,
         lr, lp, bound);
  cr_assert_gt(lp, 0.9 * bound, "a memoryless network beat the bound: the task is broken");
  cr_assert_lt(lr, 0.1 * bound, "the LSTM did not learn to remember");
  free(x);
  free(y);
  nn_work_free(rw);
  nn_work_free(pw);
  nn_net_free(rn);
  nn_net_free(pn);
}

Test(train, backward_accumulates_and_train_step_matches_manual_steps) {
  const int h[1] = {16};
  nnArch a = rarch(3, 2, 1, h, NN_TANH, 1, NN_HEAD_MSE, 2, 8);
  nnNet *n1 = make(&a, 3), *n2 = make(&a, 3);
  int B = 6, T = 4;
  nnWork *w = work_seq(n1, B, T);
  float x[6 * 4 * 3], y[6 * 4 * 2], l1, l2;
  tkRng r;
  tk_rng_seed(&r, 4);
  fill(x, sizeof x / 4, &r, -1, 1);
  fill(y, sizeof y / 4, &r, -1, 1);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.clip_norm = 0.5;
  nn_zero_grad(n1);
  cr_assert_eq(nn_seq_loss(n1, w, x, y, B, T, &l1), 0);
  cr_assert_eq(nn_backward(n1, w), 0);
  const nnTensor *whh = nn_tensor_find(n1, "lstm0.weight_hh");
  float g1 = whh->grad[5], gb = n1->lstm[1].db_ih[2];
  cr_assert_neq(g1, 0.0f);
  cr_assert_eq(nn_backward(n1, w), 0);
  cr_assert_float_eq(whh->grad[5], 2 * g1, 1e-6 * fabsf(g1) + 1e-12);
  cr_assert_float_eq(n1->lstm[1].db_ih[2], 2 * gb, 1e-6 * fabsf(gb) + 1e-12);
  cr_assert_eq(n1->lstm[1].db_ih[2], n1->lstm[1].db_hh[2]);
  for (int s = 0; s < 5; s++) {
    double gn1, gn2;
    cr_assert_eq(nn_seq_train_step(n1, w, &o, x, y, B, T, &l1, &gn1), 0, "%s", tk_errmsg());
    nn_zero_grad(n2);
    cr_assert_eq(nn_seq_loss(n2, w, x, y, B, T, &l2), 0);
    cr_assert_eq(nn_backward(n2, w), 0);
    cr_assert_eq(nn_adam_step(n2, &o, &gn2), 0);
    cr_assert_eq(l1, l2);
    cr_assert_eq(gn1, gn2);
  }
  cr_assert_eq(memcmp(n1->params, n2->params, sizeof(float) * (size_t)n1->n_params), 0);
  cr_assert_eq(n1->adam_t, 5);
  nn_work_free(w);
  nn_net_free(n1);
  nn_net_free(n2);
}

/* ---- determinism and memory ----------------------------------------------------------------------- */

static void train_seq(int threads, float *params, float *losses, int64_t *n_params) {
  nn_set_threads(threads);
  const int h[1] = {64};
  nnArch a = rarch(10, 4, 1, h, NN_RELU, 0, NN_HEAD_GMM, 2, 64);
  nnNet *net = make(&a, 77);
  int B = 16, T = 10;
  nnWork *w = work_seq(net, B, T);
  float *x = fmalloc((size_t)B * T * 10), *y = fmalloc((size_t)B * T * 4);
  tkRng r;
  tk_rng_seed(&r, 78);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-3;
  o.clip_norm = 5;
  for (int s = 0; s < 20; s++) {
    fill(x, (size_t)B * T * 10, &r, -2, 2);
    fill(y, (size_t)B * T * 4, &r, -1, 1);
    cr_assert_eq(nn_seq_train_step(net, w, &o, x, y, B, T, &losses[s], NULL), 0, "%s", tk_errmsg());
  }
  memcpy(params, net->params, sizeof(float) * (size_t)net->n_params);
  *n_params = net->n_params;
  free(x);
  free(y);
  nn_work_free(w);
  nn_net_free(net);
}

Test(determinism, same_seed_same_data_same_bits) {
  static float p[3][200000];
  float l[3][20];
  int64_t n[3];
  train_seq(1, p[0], l[0], &n[0]);
  train_seq(1, p[1], l[1], &n[1]);
  cr_assert_leq(n[0], 200000);
  cr_assert_eq(memcmp(p[0], p[1], sizeof(float) * (size_t)n[0]), 0, "two runs differ");
  cr_assert_eq(memcmp(l[0], l[1], sizeof l[0]), 0);
  train_seq(2, p[1], l[1], &n[1]);
  train_seq(2, p[2], l[2], &n[2]);
  cr_assert_eq(memcmp(p[1], p[2], sizeof(float) * (size_t)n[1]), 0, "OpenBLAS 2 threads: two runs differ");
  printf("lstm 2x64, 20 steps: loss %.4f -> %.4f; OpenBLAS 1 vs 2 threads bit-identical: %s\n", l[0][0],
         l[0][19], memcmp(p[0], p[1], sizeof(float) * (size_t)n[0]) ? "no" : "yes");
  cr_assert_lt(l[0][19], l[0][0]);
}

Test(memory, no_allocation_in_seq_steps_and_rollout) {
  const int h[1] = {32};
  nnArch a = rarch(6, 3, 1, h, NN_ELU, 1, NN_HEAD_GMM, 2, 24);
  nnNet *net = make(&a, 1);
  int B = 8, T = 5;
  nnWork *w = work_seq(net, B, T), *w1 = nn_work_make(net, B);
  float x[8 * 5 * 6], y[8 * 5 * 3], act[8 * 5 * 3], l, state[2 * 2 * 8 * 24] = {0};
  tkRng r;
  tk_rng_seed(&r, 3);
  fill(x, sizeof x / 4, &r, -1, 1);
  fill(y, sizeof y / 4, &r, -0.9, 0.9);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.clip_norm = 1;
  size_t used = 0;
  for (int s = 0; s < 20; s++) {
    if (s == 5) used = mallinfo2().uordblks; /* after warm-up (OpenBLAS sets up on first use) */
    cr_assert_eq(nn_seq_train_step(net, w, &o, x, y, B, T, &l, NULL), 0);
    cr_assert_eq(nn_seq_loss(net, w, x, y, B, T, &l), 0);
    cr_assert_eq(nn_backward(net, w), 0);
    cr_assert_eq(nn_seq_act(net, w, x, B, T, act), 0);
    cr_assert_eq(nn_rnn_step(net, w1, state, x, B, act), 0);
  }
  size_t after = mallinfo2().uordblks;
  printf("heap in use before/after 15 sequence steps: %zu / %zu bytes\n", used, after);
  cr_assert_eq(after, used);
  nn_work_free(w);
  nn_work_free(w1);
  nn_net_free(net);
}

/* nn_step and nn_run on a recurrent network: nn_seq_train_step's and nn_seq_act's / nn_rnn_step's bits;
 * B rows of T steps on from a state (gathered step by step) equal each row stepped alone. */
Test(entry, nn_step_and_nn_run_are_the_sequence_calls) {
  const int h[1] = {16};
  nnArch a = rarch(5, 2, 1, h, NN_ELU, 1, NN_HEAD_GMM, 2, 12);
  nnNet *n1 = make(&a, 8), *n2 = make(&a, 8);
  const int B = 6, T = 4, A = 2, D = 5;
  nnWork *w1 = work_seq(n1, B, T), *w2 = work_seq(n2, B, T);
  tkRng r;
  tk_rng_seed(&r, 4);
  float *x = fmalloc((size_t)B * T * D), *y = fmalloc((size_t)B * T * A);
  fill(x, (size_t)B * T * D, &r, -1, 1);
  fill(y, (size_t)B * T * A, &r, -0.9, 0.9);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.clip_norm = 1;
  for (int s = 0; s < 4; s++) {
    float l1, l2;
    double g1, g2;
    cr_assert_eq(nn_seq_train_step(n1, w1, &o, x, y, B, T, &l1, &g1), 0, "%s", tk_errmsg());
    cr_assert_eq(nn_step(n2, w2, &o, x, y, B, T, &l2, &g2), 0, "%s", tk_errmsg());
    cr_assert(l1 == l2 && g1 == g2);
  }
  cr_assert_eq(memcmp(n1->params, n2->params, sizeof(float) * (size_t)n1->n_params), 0);
  float *a1 = fmalloc((size_t)B * T * A), *a2 = fmalloc((size_t)B * T * A);
  cr_assert_eq(nn_seq_act(n1, w1, x, B, T, a1), 0);
  cr_assert_eq(nn_run(n1, w2, NULL, x, B, T, a2), 0);
  cr_assert_eq(memcmp(a1, a2, sizeof(float) * (size_t)B * T * A), 0);
  /* with a state: every row alone through nn_rnn_step, then all rows at once through nn_run */
  int64_t ns1 = nn_rnn_state_size(n1, 1), nsB = nn_rnn_state_size(n1, B);
  float *st1 = calloc((size_t)ns1, sizeof(float)), *stB = calloc((size_t)nsB, sizeof(float));
  for (int b = 0; b < B; b++) {
    memset(st1, 0, sizeof(float) * (size_t)ns1);
    for (int t = 0; t < T; t++)
      cr_assert_eq(nn_rnn_step(n1, w1, st1, x + ((size_t)b * T + t) * D, 1, a1 + ((size_t)b * T + t) * A), 0);
  }
  cr_assert_eq(nn_run(n1, w2, stB, x, B, T, a2), 0, "%s", tk_errmsg());
  double md = 0;
  for (int i = 0; i < B * T * A; i++)
    md = fmax(md, fabs(a1[i] - a2[i]));
  printf("nn_run of %d rows x %d steps vs each row alone: max difference %.2e\n", B, T, md);
  cr_assert_lt(md, 1e-5); /* a batch of B rows may round differently in sgemm than one row */
  /* one row: nn_run continues the state exactly as nn_rnn_step */
  memset(st1, 0, sizeof(float) * (size_t)ns1);
  float *s2 = calloc((size_t)ns1, sizeof(float));
  for (int t = 0; t < T; t++)
    cr_assert_eq(nn_rnn_step(n1, w1, st1, x + (size_t)t * D, 1, a1 + (size_t)t * A), 0);
  cr_assert_eq(nn_run(n1, w2, s2, x, 1, T, a2), 0);
  cr_assert_eq(memcmp(a1, a2, sizeof(float) * (size_t)T * A), 0);
  cr_assert_eq(memcmp(st1, s2, sizeof(float) * (size_t)ns1), 0);
  cr_assert_neq(nn_run(n1, w2, s2, x, 1, 0, a2), 0);
  cr_assert(strstr(tk_errmsg(), "nn_run"), "%s", tk_errmsg());
  free(s2);
  free(st1);
  free(stB);
  free(a1);
  free(a2);
  free(x);
  free(y);
  nn_work_free(w1);
  nn_work_free(w2);
  nn_net_free(n1);
  nn_net_free(n2);
}
