/* bc/bc_internal.h -- shared between the bc_*.c files only. */
#ifndef BC_INTERNAL_H
#define BC_INTERNAL_H

#include "bc.h"

/* Training a policy with cameras: the camera encoders run data-parallel (the batch's rows split over
 * `threads` threads, each with its own encoder works and gradient blocks, summed in a fixed order), the
 * trunk (an MLP; chunked or not) on the calling thread, then one Adam step over every network with the
 * gradient norm taken over all of them (clipping as torch's clip_grad_norm_ over every parameter).
 * Everything is allocated in bc_vt_make for batches of up to max_batch rows. */
typedef struct bcVisionTrainer bcVisionTrainer;
/* frames[i]: camera i's frames (p->img[i]'s size), row r at frames[i] + r * frame bytes */
bcVisionTrainer *bc_vt_make(bcPolicy *p, const uint8_t *const *frames, int max_batch, int threads);
void bc_vt_free(bcVisionTrainer *vt);
/* One training step on B samples: x [B, obs_dim] the normalized low-dim inputs, y [B, arch.act_dim] the
 * targets, rows[b] the frame row of sample b. Crops are drawn from rng (one per sample and camera).
 * Asking for the gradient norm refuses non-finite gradients (nonzero: nothing updated). */
int bc_vt_step(bcVisionTrainer *vt, const nnAdamOpts *o, const float *x, const float *y, const int64_t *rows,
               int B, tkRng *rng, float *loss, double *grad_norm);
/* The loss on B samples with centre crops, nothing updated. */
int bc_vt_loss(bcVisionTrainer *vt, const float *x, const float *y, const int64_t *rows, int B, float *loss);
/* Every parameter of the policy (trunk, then each encoder) into / out of buf (bc_vt_nparams floats): the
 * epoch's fallback when a step goes non-finite. */
int64_t bc_vt_nparams(const bcPolicy *p);
void bc_vt_save_params(const bcPolicy *p, float *buf);
void bc_vt_load_params(bcPolicy *p, const float *buf);

#endif
