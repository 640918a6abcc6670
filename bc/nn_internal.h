/* bc/nn_internal.h -- shared between the nn_*.c files only. */
#ifndef NN_INTERNAL_H
#define NN_INTERNAL_H

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

/* the activations' float kernels (exported for the accuracy test) */
float nn_expm1_neg(float x); /* expm1 for x <= 0 */
float nn_tanh(float x);

int nn_check_batch(const nnNet *net, const nnWork *w, const float *x, int B);
int nn_check_work(const nnNet *net, const nnWork *w);
/* The head's loss on the rows of the last forward against y [B, A]: returns the SUM of per-row losses
 * and writes dLoss/dout scaled for a mean over B_total rows (a row block of a larger batch). */
double nn_head_loss(const nnNet *net, nnWork *w, const float *y, int B, int B_total);
/* Backward from dout [B, out_dim] through the last forward in w. Parameter gradients go to grads (a
 * block laid out as net->grads; NULL = none), added if accumulate else overwritten; dx [B, obs_dim]
 * gets dLoss/dinput if not NULL. */
void nn_mlp_backward(const nnNet *net, nnWork *w, const float *dout, float *dx, float *grads, int accumulate);

/* Adam constants of the next step (step adam_t + 1; the caller increments adam_t after applying it)
 * and the update of params [lo, hi) */
typedef struct {
  float b1, b2, step, ibc2s, eps, decay;
} nnAdamK;
int nn_adam_prepare(nnNet *net, const nnAdamOpts *o, nnAdamK *k);
/* g2 (NULL or a block laid out as grads): update with grads + g2 (unscaled) and store that sum in grads */
void nn_adam_span(nnNet *net, const nnAdamK *k, int64_t lo, int64_t hi, float gscale, const float *g2);
int nn_adam_check(const nnAdamOpts *o);
double nn_sum_sq(const float *g, int64_t n);

#endif
