/* nn/nn_lstm.c -- the LSTM of BC-RNN (torch.nn.LSTM semantics, gates i, f, g, o):
 *   i = sig(W_ii x + b_ii + W_hi h + b_hi), f = sig(...), g = tanh(...), o = sig(...)
 *   c' = f c + i g, h' = o tanh(c')
 * Sequence forward: per layer ONE input-projection GEMM over all T*B rows, then per step one GEMM
 * h_{t-1} W_hh^T added into that step's gate rows, then a fused elementwise cell pass. The caches are
 * time-major (row t*B + b) so a step is B contiguous rows and the whole-sequence weight gradients are
 * single GEMMs: dW_ih = dG^T in over T*B rows, dW_hh = dG[1..T-1]^T h[0..T-2] over (T-1)*B rows. The MLP
 * then runs on the top layer's h in batch-major order (row b*T + t, the caller's order). */
#include <cblas.h>
#include <math.h>
#include <string.h>

#include "nn_internal.h"

/* ---- elementwise cell passes --------------------------------------------------------------------- */

/* One step of B rows in place: G [B, 4H] holds the gate pre-activations without biases and gets the
 * gate activations; c = f cp + i g, tc = tanh(c), h = o tc. cp is the previous cell state (cpv is its
 * value, 0 for a zero state: f*0 + i*g is exactly i*g). */
__attribute__((always_inline)) static inline void
cell_fwd_elem(float *restrict gi, float *restrict gf, float *restrict gg, float *restrict go,
              const float *restrict bi, const float *restrict bh, float cpv, float *restrict c,
              float *restrict tc, float *restrict h, int H, int j) {
  float i = nn_sigmoid_inline((gi[j] + bi[j]) + bh[j]);
  float f = nn_sigmoid_inline((gf[j] + bi[H + j]) + bh[H + j]);
  float g = nn_tanh_inline((gg[j] + bi[2 * H + j]) + bh[2 * H + j]);
  float o = nn_sigmoid_inline((go[j] + bi[3 * H + j]) + bh[3 * H + j]);
  gi[j] = i;
  gf[j] = f;
  gg[j] = g;
  go[j] = o;
  float cv = f * cpv + i * g, t = nn_tanh_inline(cv);
  c[j] = cv;
  tc[j] = t;
  h[j] = o * t;
}

NN_CLONES static void cell_fwd(float *restrict G, const float *restrict bi, const float *restrict bh,
                               const float *restrict cp, float *restrict c, float *restrict tc,
                               float *restrict h, int B, int H) {
  for (int r = 0; r < B; r++) {
    float *gi = G + (size_t)r * 4 * H, *gf = gi + H, *gg = gf + H, *go = gg + H;
    size_t o = (size_t)r * H;
    if (cp) {
      const float *cpr = cp + o;
      for (int j = 0; j < H; j++)
        cell_fwd_elem(gi, gf, gg, go, bi, bh, cpr[j], c + o, tc + o, h + o, H, j);
    } else {
      for (int j = 0; j < H; j++)
        cell_fwd_elem(gi, gf, gg, go, bi, bh, 0.0f, c + o, tc + o, h + o, H, j);
    }
  }
}

/* Backward of one step of B rows. G: the step's gate activations [B, 4H]; cpv: c_{t-1} (0 at t = 0);
 * tc: tanh(c_t); dh = dh_ext (from above: the MLP or the next layer) + dh_rec (from step t+1 through
 * W_hh); dc (in: dLoss/dc_t through step t+1's forget gate, out: the same for step t-1); dG [B, 4H] gets
 * dLoss/d(gate pre-activations). */
__attribute__((always_inline)) static inline void
cell_bwd_elem(const float *restrict gi, const float *restrict gf, const float *restrict gg,
              const float *restrict go, float cpv, const float *restrict tc, const float *restrict dhe,
              const float *restrict dhr, float *restrict dc, float *restrict di, float *restrict df,
              float *restrict dg, float *restrict dov, int j) {
  float i = gi[j], f = gf[j], g = gg[j], o = go[j], t = tc[j];
  float dh = dhe[j] + dhr[j];
  float dcv = dh * o * (1.0f - t * t) + dc[j];
  dov[j] = dh * t * (o * (1.0f - o));
  di[j] = dcv * g * (i * (1.0f - i));
  dg[j] = dcv * i * (1.0f - g * g);
  df[j] = dcv * cpv * (f * (1.0f - f));
  dc[j] = dcv * f;
}

NN_CLONES static void cell_bwd(const float *restrict G, const float *restrict cp, const float *restrict tc,
                               const float *restrict dh_ext, size_t ext_stride, const float *restrict dh_rec,
                               float *restrict dc, float *restrict dG, int B, int H) {
  for (int r = 0; r < B; r++) {
    const float *gi = G + (size_t)r * 4 * H, *gf = gi + H, *gg = gf + H, *go = gg + H;
    float *di = dG + (size_t)r * 4 * H, *df = di + H, *dg = df + H, *dov = dg + H;
    size_t o = (size_t)r * H;
    const float *dhe = dh_ext + (size_t)r * ext_stride;
    if (cp) {
      const float *cpr = cp + o;
      for (int j = 0; j < H; j++)
        cell_bwd_elem(gi, gf, gg, go, cpr[j], tc + o, dhe, dh_rec + o, dc + o, di, df, dg, dov, j);
    } else {
      for (int j = 0; j < H; j++)
        cell_bwd_elem(gi, gf, gg, go, 0.0f, tc + o, dhe, dh_rec + o, dc + o, di, df, dg, dov, j);
    }
  }
}

/* s[n] = column sums of d[rows, n] (fixed row order) */
NN_CLONES static void col_sum(float *restrict s, const float *restrict d, int64_t rows, int n) {
  memset(s, 0, sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < rows; i++) {
    const float *restrict r = d + (size_t)i * n;
    for (int j = 0; j < n; j++)
      s[j] += r[j];
  }
}

/* db (+)= s */
NN_CLONES static void add_vec(float *restrict db, const float *restrict s, int n, int accumulate) {
  if (accumulate)
    for (int j = 0; j < n; j++)
      db[j] += s[j];
  else
    memcpy(db, s, sizeof(float) * (size_t)n);
}

/* ---- checks ---------------------------------------------------------------------------------------- */

static int check_rnn(const nnNet *net, const nnWork *w, const char *fn) {
  if (!net || !w) return tk_error(TK_EINVAL, "%s: NULL network or work", fn);
  if (net->arch.rnn_layers < 1)
    return tk_error(TK_EINVAL, "%s: the network is not recurrent (rnn_layers 0): use the plain nn_ calls",
                    fn);
  if (w->out_dim != net->out_dim || w->n_params != net->n_params || !w->xt)
    return tk_error(TK_EINVAL, "%s: the work was made for another network", fn);
  return 0;
}

static int check_seq(const nnNet *net, const nnWork *w, const float *x, int B, int T, const char *fn) {
  int rc = check_rnn(net, w, fn);
  if (rc) return rc;
  if (!x) return tk_error(TK_EINVAL, "%s: NULL input", fn);
  if (B < 1 || B > w->max_batch)
    return tk_error(TK_ERANGE, "%s: %d sequences not in 1..%d (the work's max_batch)", fn, B, w->max_batch);
  if (T < 1 || T > w->max_T)
    return tk_error(TK_ERANGE, "%s: sequence length %d not in 1..%d (the work's max_T)", fn, T, w->max_T);
  return 0;
}

/* ---- work ---------------------------------------------------------------------------------------- */

nnWork *nn_work_make_seq(const nnNet *net, int max_batch, int max_T) {
  if (!net) {
    tk_error(TK_EINVAL, "nn_work_make_seq: NULL network");
    return NULL;
  }
  if (net->arch.rnn_layers < 1) {
    tk_error(TK_EINVAL, "nn_work_make_seq: the network is not recurrent (rnn_layers 0): use nn_work_make");
    return NULL;
  }
  if (max_batch < 1 || max_T < 1 || (int64_t)max_batch * max_T > (1 << 24)) {
    tk_error(TK_ERANGE, "nn_work_make_seq: max_batch %d x max_T %d must be >= 1 each and at most %d rows",
             max_batch, max_T, 1 << 24);
    return NULL;
  }
  return nn_work_alloc(net, max_batch, max_T);
}

/* ---- forward ------------------------------------------------------------------------------------- */

/* the LSTM over B sequences of T steps (checked), then the MLP on the top layer's h */
static void seq_forward(const nnNet *net, nnWork *w, const float *x, int B, int T) {
  const nnArch *a = &net->arch;
  int H = a->rnn_hidden, D = a->obs_dim, L = a->rnn_layers;
  size_t BH = (size_t)B * H, BG = (size_t)B * 4 * H;
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      memcpy(w->xt + ((size_t)t * B + b) * D, x + ((size_t)b * T + t) * D, sizeof(float) * (size_t)D);
  const float *in = w->xt;
  for (int k = 0; k < L; k++) {
    const nnLstmLayer *R = &net->lstm[k];
    int n_in = R->in;
    float *G = w->gates[k], *c = w->c[k], *tc = w->tc[k], *h = w->hs[k];
    /* input projection of every step at once: G[T*B, 4H] = in W_ih^T */
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T * B, 4 * H, n_in, 1.0f, in, n_in, R->w_ih, n_in,
                0.0f, G, 4 * H);
    for (int t = 0; t < T; t++) {
      float *Gt = G + t * BG;
      if (t) /* the recurrent term (zero at t = 0) */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, 4 * H, H, 1.0f, h + (t - 1) * BH, H, R->w_hh,
                    H, 1.0f, Gt, 4 * H);
      cell_fwd(Gt, R->b_ih, R->b_hh, t ? c + (t - 1) * BH : NULL, c + t * BH, tc + t * BH, h + t * BH, B, H);
    }
    in = h;
  }
  const float *top = w->hs[L - 1];
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      memcpy(w->mlp_in + ((size_t)b * T + t) * H, top + ((size_t)t * B + b) * H, sizeof(float) * (size_t)H);
  nn_mlp_forward(net, w, w->mlp_in, B * T);
  w->T = T;
}

int nn_seq_forward(const nnNet *net, nnWork *w, const float *x, int B, int T) {
  int rc = check_seq(net, w, x, B, T, "nn_seq_forward");
  if (rc) return rc;
  seq_forward(net, w, x, B, T);
  return 0;
}

int nn_seq_loss(const nnNet *net, nnWork *w, const float *x, const float *y, int B, int T, float *loss) {
  int rc = check_seq(net, w, x, B, T, "nn_seq_loss");
  if (rc) return rc;
  if (!y || !loss) return tk_error(TK_EINVAL, "nn_seq_loss: NULL target or loss");
  seq_forward(net, w, x, B, T);
  return nn_mean_loss(net, w, y, B * T, loss, "nn_seq_loss");
}

int nn_seq_act(const nnNet *net, nnWork *w, const float *x, int B, int T, float *act) {
  int rc = check_seq(net, w, x, B, T, "nn_seq_act");
  if (rc) return rc;
  if (!act) return tk_error(TK_EINVAL, "nn_seq_act: NULL output");
  seq_forward(net, w, x, B, T);
  nn_head_act(net, w, B * T, act);
  return 0;
}

/* ---- backpropagation through time ---------------------------------------------------------------- */

void nn_seq_backward(nnNet *net, nnWork *w, int accumulate, float *dx) {
  const nnArch *a = &net->arch;
  int H = a->rnn_hidden, L = a->rnn_layers, T = w->T, B = w->batch / T;
  size_t BH = (size_t)B * H, BG = (size_t)B * 4 * H;
  float beta = accumulate ? 1.0f : 0.0f;
  /* the MLP: its parameter gradients and dLoss/d(top h), batch-major */
  nn_mlp_backward(net, w, w->dout, w->dmlp_in, net->grads, accumulate);
  for (int k = L - 1; k >= 0; k--) {
    const nnLstmLayer *R = &net->lstm[k];
    int n_in = R->in;
    const float *G = w->gates[k], *c = w->c[k], *tc = w->tc[k], *h = w->hs[k];
    const float *in = k ? w->hs[k - 1] : w->xt;
    float *dG = w->dgates;
    memset(w->dh_rec, 0, sizeof(float) * BH);
    memset(w->dc, 0, sizeof(float) * BH);
    for (int t = T - 1; t >= 0; t--) {
      /* dLoss/dh_t from above: the MLP's rows b*T + t, or the next layer's time-major rows */
      const float *ext = k == L - 1 ? w->dmlp_in + (size_t)t * H : w->dh_low + t * BH;
      size_t stride = k == L - 1 ? (size_t)T * H : (size_t)H;
      cell_bwd(G + t * BG, t ? c + (t - 1) * BH : NULL, tc + t * BH, ext, stride, w->dh_rec, w->dc,
               dG + t * BG, B, H);
      if (t) /* dLoss/dh_{t-1} through W_hh */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, 4 * H, 1.0f, dG + t * BG, 4 * H, R->w_hh,
                    H, 0.0f, w->dh_rec, H);
    }
    /* whole-sequence weight gradients */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, 4 * H, n_in, T * B, 1.0f, dG, 4 * H, in, n_in, beta,
                R->dw_ih, n_in);
    if (T > 1)
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, 4 * H, H, (T - 1) * B, 1.0f, dG + BG, 4 * H, h, H,
                  beta, R->dw_hh, H);
    else if (!accumulate)
      memset(R->dw_hh, 0, sizeof(float) * (size_t)4 * H * H);
    col_sum(w->dbias, dG, (int64_t)T * B, 4 * H);
    add_vec(R->db_ih, w->dbias, 4 * H, accumulate);
    add_vec(R->db_hh, w->dbias, 4 * H, accumulate);
    /* dLoss/d(the layer below's h) for every step at once (dh_low is read above only for k < L-1,
     * and that reading is done) */
    if (k)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T * B, H, 4 * H, 1.0f, dG, 4 * H, R->w_ih, n_in,
                  0.0f, w->dh_low, H);
    else if (dx) { /* dLoss/d input, time-major, then batch-major as the input came */
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T * B, n_in, 4 * H, 1.0f, dG, 4 * H, R->w_ih,
                  n_in, 0.0f, w->dxt, n_in);
      for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++)
          memcpy(dx + ((size_t)b * T + t) * n_in, w->dxt + ((size_t)t * B + b) * n_in,
                 sizeof(float) * (size_t)n_in);
    }
  }
}

int nn_seq_train(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *x, const float *y, int B, int T,
                 float *loss, double *grad_norm, const char *fn) {
  int rc = check_seq(net, w, x, B, T, fn);
  if (!rc) rc = nn_need_training(net, fn);
  if (!rc) rc = nn_adam_check(o);
  if (rc) return rc;
  if (!y) return tk_error(TK_EINVAL, "%s: NULL target", fn);
  seq_forward(net, w, x, B, T);
  return nn_fit_rows(net, w, o, y, B * T, loss, grad_norm, fn);
}

int nn_seq_train_step(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *x, const float *y, int B,
                      int T, float *loss, double *grad_norm) {
  return nn_seq_train(net, w, o, x, y, B, T, loss, grad_norm, "nn_seq_train_step");
}

/* ---- stepwise rollout ---------------------------------------------------------------------------- */

int64_t nn_rnn_state_size(const nnNet *net, int B) {
  if (!net || net->arch.rnn_layers < 1 || B < 1) return 0;
  return (int64_t)net->arch.rnn_layers * 2 * B * net->arch.rnn_hidden;
}

int nn_rnn_step(const nnNet *net, nnWork *w, float *state, const float *x, int B, float *act) {
  int rc = check_rnn(net, w, "nn_rnn_step");
  if (rc) return rc;
  if (!state || !x || !act) return tk_error(TK_EINVAL, "nn_rnn_step: NULL state, input or output");
  if (B < 1 || B > w->max_batch)
    return tk_error(TK_ERANGE, "nn_rnn_step: batch %d not in 1..%d (the work's max_batch)", B, w->max_batch);
  const nnArch *a = &net->arch;
  int H = a->rnn_hidden, L = a->rnn_layers;
  size_t BH = (size_t)B * H;
  /* the caches hold one step, not a sequence: nothing to backpropagate afterwards */
  w->T = 0;
  const float *in = x;
  for (int k = 0; k < L; k++) {
    const nnLstmLayer *R = &net->lstm[k];
    int n_in = R->in;
    float *h = state + 2 * k * BH, *c = h + BH, *G = w->gates[k];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, 4 * H, n_in, 1.0f, in, n_in, R->w_ih, n_in, 0.0f,
                G, 4 * H);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, 4 * H, H, 1.0f, h, H, R->w_hh, H, 1.0f, G, 4 * H);
    cell_fwd(G, R->b_ih, R->b_hh, c, w->c[k], w->tc[k], w->hs[k], B, H);
    memcpy(h, w->hs[k], sizeof(float) * BH);
    memcpy(c, w->c[k], sizeof(float) * BH);
    in = w->hs[k];
  }
  nn_mlp_forward(net, w, w->hs[L - 1], B);
  nn_head_act(net, w, B, act);
  w->stage = NN_STAGE_NONE;
  return 0;
}
