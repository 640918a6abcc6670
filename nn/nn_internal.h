/* nn/nn_internal.h -- shared between the nn_*.c files only. */
#ifndef NN_INTERNAL_H
#define NN_INTERNAL_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

#include "nn.h"

/* what the work object holds after the last call (nnWork.stage) */
enum {
  NN_STAGE_NONE = 0,    /* nothing valid */
  NN_STAGE_FORWARD = 1, /* activations of a forward pass */
  NN_STAGE_LOSS = 2,    /* activations + dLoss/dout in w->dout */
  NN_STAGE_SAMPLE = 3,  /* activations + w->act/w->eps of a tanh-Gaussian sample */
};

#define NN_LN_EPS 1e-5f
#define NN_ACT_CLIP 0.999999 /* dataset actions clipped to +-(1-1e-6) for tanh-Gaussian log-probs */
#define NN_ALIGN 16          /* floats: every buffer starts on a 64-byte boundary */

static inline int64_t nn_round_up(int64_t n) { return (n + NN_ALIGN - 1) / NN_ALIGN * NN_ALIGN; }

/* Hot elementwise loops get an AVX2 clone picked at load time (GCC function multi-versioning); the
 * build stays baseline x86-64. Same results either way: no FMA contraction (ISO C mode), no
 * reassociation. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define NN_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define NN_CLONES
#endif

/* ---- the activations' float kernels (inline, so the elementwise loops vectorize) ---------------- */

/* expm1 for x <= 0 in plain float arithmetic, so the activation loops vectorize (libm's expm1f/tanhf
 * are scalar calls that made an ELU or tanh step 2.5x a ReLU step). x = n ln2 + r with |r| <= ln2/2
 * (Cody-Waite split of ln2), expm1(r) by its Taylor polynomial to r^7 (truncation < 1e-8 relative),
 * expm1(x) = 2^n expm1(r) + (2^n - 1); within 2 ulp of expm1 over [-87, 0], -1 below (checked in
 * tests/nn/test_nn.c). Selects are done on the bits: float selects feeding a float->int conversion
 * keep GCC 12 from vectorizing the AVX2 clone. */
typedef union {
  float f;
  int32_t i;
  uint32_t u;
} nnBits;

static inline float nn_expm1_neg_inline(float x) {
  nnBits in = {.f = x}, c = in;
  uint32_t nan = -(uint32_t)((in.u & 0x7fffffffu) > 0x7f800000u); /* all ones for a NaN */
  c.u = c.u > 0xC2AE0000u ? 0xC2AE0000u : c.u; /* x < -87 (bits larger for x <= 0) -> -87 */
  c.u = c.u < 0x80000000u ? 0u : c.u;          /* x >= +0 -> 0 (outside the domain) */
  x = c.f;
  int32_t n = (int32_t)(x * 1.44269504f - 0.5f); /* truncation toward 0 of a negative: nearest */
  float fn = (float)n;
  float r = (x - fn * 0.693359375f) - fn * -2.12194440e-4f;
  float p =
      r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (1.0f / 120 +
                                                                    r * (1.0f / 720 + r * (1.0f / 5040)))))));
  nnBits sc = {.u = (uint32_t)(n + 127) << 23}; /* 2^n, n >= -126 */
  nnBits res = {.f = sc.f * p + (sc.f - 1.0f)};
  res.u = (res.u & ~nan) | (in.u & nan); /* NaN in, NaN out */
  return res.f;
}

/* tanh(x) = -t / (t + 2) with t = expm1(-2|x|), sign restored: accurate for small |x| too */
static inline float nn_tanh_inline(float x) {
  float t = nn_expm1_neg_inline(-2.0f * fabsf(x));
  return copysignf(-t / (t + 2.0f), x);
}

/* logistic sigmoid 1/(1 + e^-x) = (1 + tanh(x/2)) / 2: no overflow, 0 and 1 at the ends, NaN kept */
static inline float nn_sigmoid_inline(float x) { return 0.5f + 0.5f * nn_tanh_inline(0.5f * x); }

/* the same, out of line (the accuracy tests) */
float nn_expm1_neg(float x); /* expm1 for x <= 0 */
float nn_tanh(float x);
float nn_sigmoid(float x);

/* ---- shared internals ------------------------------------------------------------------------ */

int nn_check_batch(const nnNet *net, const nnWork *w, const float *x, int B);
/* TK_EINVAL naming fn if net was made to act (no gradients or Adam state), else 0 */
int nn_need_training(const nnNet *net, const char *fn);
/* "[a]", "[a, b]" .. "[a, b, c, d]" (ranks 1..4), else "(n dims)" */
void nn_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
int nn_check_work(const nnNet *net, const nnWork *w);
/* TK_EINVAL naming fn if net is recurrent (the plain MLP entry points refuse it), else 0 */
int nn_refuse_rnn(const nnNet *net, const char *fn);
/* MLP forward of in [B, dims[0]] (no checks); w->x = in, w->batch = B, stage FORWARD */
void nn_mlp_forward(const nnNet *net, nnWork *w, const float *in, int B);
/* deterministic actions [B, A] from the output rows in w->out (nn_act's rule) */
void nn_head_act(const nnNet *net, const nnWork *w, int B, float *act);
/* The head's loss on the rows of the last forward against y [B, A]: returns the SUM of per-row losses
 * and writes dLoss/dout scaled for a mean over B_total rows (a row block of a larger batch). */
double nn_head_loss(const nnNet *net, nnWork *w, const float *y, int B, int B_total);
/* Backward from dout [B, out_dim] through the last forward in w. Parameter gradients go to grads (a
 * block laid out as net->grads; NULL = none), added if accumulate else overwritten; dx [B, obs_dim]
 * gets dLoss/dinput if not NULL. */
void nn_mlp_backward(const nnNet *net, nnWork *w, const float *dout, float *dx, float *grads, int accumulate);
/* Backpropagation through time of the last nn_seq_loss (w->dout): the MLP, then the LSTM layers.
 * Gradients go to net->grads, added if accumulate else overwritten. */
void nn_seq_backward(nnNet *net, nnWork *w, int accumulate);
/* The mean head loss over the N rows of the last forward against y [N, A]: *loss (if not NULL), dLoss/dout
 * kept for the backward pass (stage LOSS); TK_ERANGE naming fn when it is not finite. */
int nn_mean_loss(const nnNet *net, nnWork *w, const float *y, int N, float *loss, const char *fn);
/* Backpropagate the last loss (the MLP's, or the sequence's through time) into net->grads, added if
 * accumulate else overwritten. */
void nn_loss_backward(nnNet *net, nnWork *w, int accumulate);
/* The rest of a training step after the forward pass: mean loss, backward (overwriting the gradients),
 * (clip +) Adam. */
int nn_fit_rows(nnNet *net, nnWork *w, const nnAdamOpts *o, const float *y, int N, float *loss,
                double *grad_norm, const char *fn);
/* Work with the LSTM buffers for max_batch sequences of max_T steps (recurrent networks) */
nnWork *nn_work_alloc(const nnNet *net, int max_batch, int max_T);

/* Adam constants of the next step (step adam_t + 1; the caller increments adam_t after applying it)
 * and the update of params [lo, hi) */
typedef struct {
  float b1, b2, step, ibc2s, eps, decay;
} nnAdamK;
int nn_adam_prepare(nnNet *net, const nnAdamOpts *o, nnAdamK *k);
int nn_adam_prepare_t(int64_t adam_t, const nnAdamOpts *o, nnAdamK *k); /* the same from the step count */
/* g2 (NULL or a block laid out as grads): update with grads + g2 (unscaled) and store that sum in grads */
void nn_adam_span(nnNet *net, const nnAdamK *k, int64_t lo, int64_t hi, float gscale, const float *g2);
/* what an Adam step updates, whichever object owns it (nnNet, nnEnc): the tensor table (offsets, ranks:
 * rank >= 2 gets the weight decay) and the four parameter-sized sections */
typedef struct {
  const nnTensor *tensors;
  int n_tensors;
  float *params, *grads, *m, *v;
} nnAdamBlock;
void nn_adam_block_span(const nnAdamBlock *b, const nnAdamK *k, int64_t lo, int64_t hi, float gscale,
                        const float *g2);
int nn_adam_check(const nnAdamOpts *o);
double nn_sum_sq(const float *g, int64_t n);

#endif
