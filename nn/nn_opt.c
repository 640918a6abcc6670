/* nn/nn_opt.c -- gradients (zero, norm, clip), Adam/AdamW, the fused BC training step. */
#include <math.h>
#include <string.h>

#include "nn_internal.h"

void nn_adam_default(nnAdamOpts *o) {
  o->lr = 1e-4;
  o->beta1 = 0.9;
  o->beta2 = 0.999;
  o->eps = 1e-8;
  o->weight_decay = 0;
  o->clip_norm = 0;
}

void nn_zero_grad(nnNet *net) {
  if (net && net->grads) memset(net->grads, 0, (size_t)net->n_params * sizeof(float));
}

/* sum of squares: 16 float lanes (vectorizes, fixed order), combined in double */
NN_CLONES double nn_sum_sq(const float *restrict g, int64_t n) {
  float acc[16] = {0};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int k = 0; k < 16; k++)
      acc[k] += g[i + k] * g[i + k];
  double s = 0;
  for (; i < n; i++)
    s += (double)g[i] * g[i];
  for (int k = 0; k < 16; k++)
    s += acc[k];
  return s;
}

double nn_grad_norm(const nnNet *net) {
  return net && net->grads ? sqrt(nn_sum_sq(net->grads, net->n_params)) : 0;
}

NN_CLONES static void scale_range(float *restrict g, int64_t n, float s) {
  for (int64_t i = 0; i < n; i++)
    g[i] *= s;
}

double nn_clip_grad(nnNet *net, double max_norm) {
  if (!net || !net->grads) return 0;
  double norm = nn_grad_norm(net);
  if (max_norm > 0 && norm > max_norm)
    scale_range(net->grads, net->n_params, (float)(max_norm / (norm + 1e-6)));
  return norm; /* the scale is torch.nn.utils.clip_grad_norm_'s max_norm / (norm + 1e-6) */
}

void nn_adam_reset(nnNet *net) {
  if (!net) return;
  if (net->adam_m) memset(net->adam_m, 0, (size_t)net->n_params * 2 * sizeof(float)); /* m, then v */
  net->adam_t = 0;
}

int nn_adam_check(const nnAdamOpts *o) {
  if (!o) return tk_error(TK_EINVAL, "nn adam: NULL options");
  if (!(o->lr >= 0 && o->lr < 1e3)) return tk_error(TK_ERANGE, "nn adam: lr %g out of range", o->lr);
  if (!(o->beta1 >= 0 && o->beta1 < 1 && o->beta2 >= 0 && o->beta2 < 1))
    return tk_error(TK_ERANGE, "nn adam: betas (%g, %g) must be in [0, 1)", o->beta1, o->beta2);
  if (!(o->eps > 0)) return tk_error(TK_ERANGE, "nn adam: eps %g must be > 0", o->eps);
  if (!(o->weight_decay >= 0 && o->lr * o->weight_decay < 1))
    return tk_error(TK_ERANGE, "nn adam: weight_decay %g must be >= 0 with lr*weight_decay < 1",
                    o->weight_decay);
  if (!(o->clip_norm >= 0)) return tk_error(TK_ERANGE, "nn adam: clip_norm %g < 0", o->clip_norm);
  return 0;
}

/* The update of n elements, torch.optim.Adam arithmetic:
 *   m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2; p -= (lr/bc1) m / (sqrt(v)/sqrt(bc2) + eps)
 * with AdamW's p *= 1 - lr*wd first when decay applies (decay = 1 otherwise). */
NN_CLONES static void adam_range(float *restrict p, const float *restrict g, float *restrict m,
                                 float *restrict v, int64_t n, float gs, float b1, float b2, float step,
                                 float ibc2s, float eps, float decay) {
  float c1 = 1.0f - b1, c2 = 1.0f - b2;
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] * gs;
    float mi = b1 * m[i] + c1 * gi;
    float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step * mi / (sqrtf(vi) * ibc2s + eps);
  }
}

/* the same with the gradient g + g2 (a data-parallel partial sum folded in), stored back to g */
NN_CLONES static void adam_range2(float *restrict p, float *restrict g, const float *restrict g2,
                                  float *restrict m, float *restrict v, int64_t n, float b1, float b2,
                                  float step, float ibc2s, float eps, float decay) {
  float c1 = 1.0f - b1, c2 = 1.0f - b2;
  for (int64_t i = 0; i < n; i++) {
    float gi = g[i] + g2[i];
    g[i] = gi;
    float mi = b1 * m[i] + c1 * gi;
    float vi = b2 * v[i] + c2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step * mi / (sqrtf(vi) * ibc2s + eps);
  }
}

int nn_adam_prepare(nnNet *net, const nnAdamOpts *o, nnAdamK *k) {
  return nn_adam_prepare_t(net->adam_t, o, k);
}

int nn_adam_prepare_t(int64_t adam_t, const nnAdamOpts *o, nnAdamK *k) {
  double t = (double)(adam_t + 1); /* the caller counts the step once it is applied */
  double bc1 = 1 - pow(o->beta1, t), bc2 = 1 - pow(o->beta2, t);
  k->b1 = (float)o->beta1;
  k->b2 = (float)o->beta2;
  k->step = (float)(o->lr / bc1);
  k->ibc2s = (float)(1 / sqrt(bc2));
  k->eps = (float)o->eps;
  k->decay = (float)(1 - o->lr * o->weight_decay);
  return 0;
}

/* params [lo, hi): decoupled weight decay on weight matrices only (Linear and LSTM weights; not biases, not
 * LayerNorm) */
void nn_adam_span(nnNet *net, const nnAdamK *k, int64_t lo, int64_t hi, float gs, const float *g2) {
  const nnAdamBlock b = {net->tensors, net->n_tensors, net->params, net->grads, net->adam_m, net->adam_v};
  nn_adam_block_span(&b, k, lo, hi, gs, g2);
}

/* weights (rank 2: Linear, LSTM; rank 4: conv) decay, vectors (biases, LayerNorm) do not */
void nn_adam_block_span(const nnAdamBlock *B, const nnAdamK *k, int64_t lo, int64_t hi, float gs,
                        const float *g2) {
  for (int i = 0; i < B->n_tensors; i++) {
    const nnTensor *T = &B->tensors[i];
    int64_t a = TK_MAX(lo, T->offset), b = TK_MIN(hi, T->offset + T->numel);
    if (a >= b) continue;
    float decay = T->ndim >= 2 ? k->decay : 1.0f;
    if (g2)
      adam_range2(B->params + a, B->grads + a, g2 + a, B->m + a, B->v + a, b - a, k->b1, k->b2, k->step,
                  k->ibc2s, k->eps, decay);
    else
      adam_range(B->params + a, B->grads + a, B->m + a, B->v + a, b - a, gs, k->b1, k->b2, k->step, k->ibc2s,
                 k->eps, decay);
  }
}

int nn_adam_step(nnNet *net, const nnAdamOpts *o, double *grad_norm) {
  if (!net) return tk_error(TK_EINVAL, "nn_adam_step: NULL network");
  int rc = nn_need_training(net, "nn_adam_step");
  if (!rc) rc = nn_adam_check(o);
  if (rc) return rc;
  float gs = 1.0f;
  if (o->clip_norm > 0 || grad_norm) {
    double norm = nn_grad_norm(net);
    if (grad_norm) *grad_norm = norm;
    if (!isfinite(norm)) return tk_error(TK_ERANGE, "nn_adam_step: gradient norm is not finite");
    if (o->clip_norm > 0 && norm > o->clip_norm) gs = (float)(o->clip_norm / (norm + 1e-6));
  }
  nnAdamK k;
  nn_adam_prepare(net, o, &k);
  nn_adam_span(net, &k, 0, net->n_params, gs, NULL);
  net->adam_t++;
  return 0;
}

/* a plain network's step on B rows of one work, errors naming fn */
static int train_rows(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *x, const float *y, int B,
                      float *loss, double *grad_norm, const char *fn) {
  int rc = nn_refuse_rnn(net, fn);
  if (!rc) rc = nn_need_training(net, fn);
  if (!rc) rc = nn_adam_check(o);
  if (rc) return rc;
  if (!y) return tk_error(TK_EINVAL, "%s: NULL target", fn);
  rc = nn_check_batch(net, w, x, B);
  if (rc) return rc;
  nn_mlp_forward(net, w, x, B);
  return nn_fit_rows(net, w, o, y, B, loss, grad_norm, fn);
}

int nn_train_step(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *x, const float *y, int B,
                  float *loss, double *grad_norm) {
  return train_rows(net, w, o, x, y, B, loss, grad_norm, "nn_train_step");
}

/* every trunk: a recurrent network's sequences, a plain network's B*T rows (on the work's team if it
 * has one) */
int nn_step(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *x, const float *y, int B, int T,
            float *loss, double *grad_norm) {
  if (!net || !w) return tk_error(TK_EINVAL, "nn_step: NULL network or work");
  if (net->arch.rnn_layers > 0) return nn_seq_train(net, w, o, x, y, B, T, loss, grad_norm, "nn_step");
  if (T < 1 || (int64_t)B * T > (1 << 24))
    return tk_error(TK_ERANGE, "nn_step: %d rows x %d steps (T >= 1, B*T at most %d)", B, T, 1 << 24);
  if (w->team) return nn_team_step(net, w->team, o, x, y, B * T, loss, grad_norm, "nn_step");
  return train_rows(net, w, o, x, y, B * T, loss, grad_norm, "nn_step");
}

int nn_fit_rows(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *y, int N, float *loss,
                double *grad_norm, const char *fn) {
  int rc = nn_mean_loss(net, w, y, N, loss, fn);
  if (rc) return rc;
  nn_loss_backward(net, w, 0); /* gradients overwrite the block (GEMM beta 0): the zero_grad is free */
  return nn_adam_step(net, o, grad_norm);
}
