/* bc/bc_vision.c -- training a policy with cameras (bc.h, bc_vt_*): encoders data-parallel, the trunk (MLP or
 * LSTM) after. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "bc.h"

#define VT_MAX_THREADS 16

typedef enum { JOB_FORWARD = 0, JOB_BACKWARD = 1, JOB_QUIT = 2 } vtJob;

struct bcVisionTrainer {
  bcPolicy *p;
  const uint8_t *frames[BC_MAX_IMAGES];
  size_t frame_bytes[BC_MAX_IMAGES];
  int chw[BC_MAX_IMAGES];  /* floats of one crop */
  int fdim[BC_MAX_IMAGES]; /* encoder outputs */
  int max_batch, threads;  /* samples */
  int T, max_rows; /* frame rows a sample has (an LSTM's sequence length, a diffusion policy's observation
                      steps, else 1); max_batch * T */
  int dif;         /* a diffusion policy: a sample's T frame rows are the steps of one trunk row */
  nnEncWork *ew[VT_MAX_THREADS][BC_MAX_IMAGES];
  float
      *gblk[VT_MAX_THREADS][BC_MAX_IMAGES]; /* gradient blocks of threads 1.. (thread 0: the encoder's own) */
  float *crops[BC_MAX_IMAGES];              /* [max_rows, C, h, w] */
  float *feat[BC_MAX_IMAGES];               /* [max_rows, F] */
  float *dfeat[BC_MAX_IMAGES];              /* [max_rows, F] */
  int *oy, *ox;                             /* [BC_MAX_IMAGES * max_rows] crop offsets of this step */
  float *X, *dX; /* the trunk's input and its gradient [max_rows, arch.obs_dim] (diffusion: max_batch rows) */
  nnWork *tw;    /* the trunk's work */
  /* the step the workers run: B input rows */
  const int64_t *rows;
  int B;
  vtJob job;
  int rc[VT_MAX_THREADS];
  char err[TK_ERRMSG_MAX];
  pthread_barrier_t start, done;
  pthread_t th[VT_MAX_THREADS];
  int started; /* workers running */
};

/* Thread t's part of the step: its rows of every camera, forward (crop + encoder) or backward. */
static int run_part(bcVisionTrainer *vt, int t) {
  const bcPolicy *p = vt->p;
  const int lo = (int)((int64_t)vt->B * t / vt->threads), hi = (int)((int64_t)vt->B * (t + 1) / vt->threads);
  const int n = hi - lo;
  if (n <= 0) return 0;
  for (int i = 0; i < p->nimg; i++) {
    const bcImage *c = &p->img[i];
    int rc;
    if (vt->job == JOB_FORWARD) {
      for (int b = lo; b < hi; b++)
        nn_image_crop(vt->frames[i] + (size_t)vt->rows[b] * vt->frame_bytes[i], c->height, c->width,
                      c->channels, vt->oy[i * vt->max_rows + b], vt->ox[i * vt->max_rows + b], c->crop_h,
                      c->crop_w, vt->crops[i] + (size_t)b * vt->chw[i]);
      rc = nn_enc_forward(c->enc, vt->ew[t][i], vt->crops[i] + (size_t)lo * vt->chw[i], n,
                          vt->feat[i] + (size_t)lo * vt->fdim[i]);
    } else {
      rc = nn_enc_backward(c->enc, vt->ew[t][i], vt->dfeat[i] + (size_t)lo * vt->fdim[i],
                           t == 0 ? NULL : vt->gblk[t][i], 0);
    }
    if (rc) return rc;
  }
  return 0;
}

typedef struct {
  bcVisionTrainer *vt;
  int t;
} workerArg;

static void *worker(void *arg) {
  workerArg *a = arg;
  bcVisionTrainer *vt = a->vt;
  const int t = a->t;
  free(a);
  for (;;) {
    pthread_barrier_wait(&vt->start);
    if (vt->job == JOB_QUIT) break;
    vt->rc[t] = run_part(vt, t);
    if (vt->rc[t]) snprintf(vt->err, sizeof vt->err, "%s", tk_errmsg());
    pthread_barrier_wait(&vt->done);
  }
  return NULL;
}

/* Every thread's part of the job; the first error. */
static int run_job(bcVisionTrainer *vt, vtJob job) {
  vt->job = job;
  if (vt->started) pthread_barrier_wait(&vt->start);
  vt->rc[0] = run_part(vt, 0);
  if (vt->started) pthread_barrier_wait(&vt->done);
  for (int t = 0; t < vt->threads; t++)
    if (vt->rc[t]) return t == 0 ? vt->rc[0] : tk_error(vt->rc[t], "%s", vt->err);
  return 0;
}

bcVisionTrainer *bc_vt_make(bcPolicy *p, const uint8_t *const *frames, int max_batch, int threads) {
  if (p->nimg < 1 || max_batch < 1) {
    tk_error(TK_EINVAL, "bc_vt_make: no cameras or no batch");
    return NULL;
  }
  bcVisionTrainer *vt = calloc(1, sizeof *vt);
  if (!vt) {
    tk_error(TK_ENOMEM, "out of memory");
    return NULL;
  }
  vt->p = p;
  vt->max_batch = max_batch;
  vt->dif = p->dif.horizon > 0;
  vt->T = p->arch.rnn_layers > 0 ? p->arch.rnn_horizon : vt->dif ? p->dif.obs_horizon : 1;
  vt->max_rows = max_batch * vt->T;
  const int R = vt->max_rows;
  vt->threads = TK_MAX(1, TK_MIN(threads, TK_MIN(VT_MAX_THREADS, R)));
  int ok = 1;
  for (int i = 0; i < p->nimg && ok; i++) {
    const bcImage *c = &p->img[i];
    vt->frames[i] = frames[i];
    vt->frame_bytes[i] = (size_t)c->height * c->width * c->channels;
    vt->chw[i] = c->channels * c->crop_h * c->crop_w;
    vt->fdim[i] = nn_enc_out_dim(&c->enc_arch);
    ok = (vt->crops[i] = malloc(sizeof(float) * (size_t)R * vt->chw[i])) &&
         (vt->feat[i] = malloc(sizeof(float) * (size_t)R * vt->fdim[i])) &&
         (vt->dfeat[i] = malloc(sizeof(float) * (size_t)R * vt->fdim[i]));
    for (int t = 0; t < vt->threads && ok; t++) {
      const int rows_t = (R + vt->threads - 1) / vt->threads;
      ok = (vt->ew[t][i] = nn_enc_work_make(c->enc, rows_t)) != NULL;
      /* zeroed: the backward pass writes the tensors, never the alignment gaps between them, which the
       * sum and the norm read */
      if (ok && t > 0) ok = (vt->gblk[t][i] = calloc((size_t)c->enc->n_params, sizeof(float))) != NULL;
    }
  }
  if (ok)
    ok = (vt->oy = malloc(sizeof(int) * 2 * BC_MAX_IMAGES * (size_t)R)) &&
         (vt->X = malloc(sizeof(float) * 2 * (size_t)R * p->arch.obs_dim)) &&
         (vt->tw = p->arch.rnn_layers > 0 ? nn_work_make_seq(p->net, max_batch, vt->T)
                                          : nn_work_make(p->net, max_batch));
  if (!ok) {
    bc_vt_free(vt);
    tk_error(TK_ENOMEM, "out of memory (training a policy with cameras, batch %d)", max_batch);
    return NULL;
  }
  vt->ox = vt->oy + BC_MAX_IMAGES * R;
  vt->dX = vt->X + (size_t)R * p->arch.obs_dim;
  if (vt->threads > 1) {
    pthread_barrier_init(&vt->start, NULL, (unsigned)vt->threads);
    pthread_barrier_init(&vt->done, NULL, (unsigned)vt->threads);
    for (int t = 1; t < vt->threads; t++) {
      workerArg *a = malloc(sizeof *a);
      if (!a) break;
      *a = (workerArg){vt, t};
      if (pthread_create(&vt->th[t], NULL, worker, a)) {
        free(a);
        break;
      }
      vt->started = t;
    }
    if (vt->started != vt->threads - 1) { /* the barriers count every thread: all or none */
      bc_vt_free(vt);
      tk_error(TK_ENOMEM, "cannot start the training threads");
      return NULL;
    }
  }
  return vt;
}

void bc_vt_free(bcVisionTrainer *vt) {
  if (!vt) return;
  if (vt->started) {
    vt->job = JOB_QUIT;
    pthread_barrier_wait(&vt->start);
    for (int t = 1; t <= vt->started; t++)
      pthread_join(vt->th[t], NULL);
  }
  if (vt->threads > 1) {
    pthread_barrier_destroy(&vt->start);
    pthread_barrier_destroy(&vt->done);
  }
  for (int i = 0; i < BC_MAX_IMAGES; i++) {
    free(vt->crops[i]);
    free(vt->feat[i]);
    free(vt->dfeat[i]);
    for (int t = 0; t < VT_MAX_THREADS; t++) {
      nn_enc_work_free(vt->ew[t][i]);
      free(vt->gblk[t][i]);
    }
  }
  free(vt->oy);
  free(vt->X);
  nn_work_free(vt->tw);
  free(vt);
}

/* Where frame row n's camera features go in the trunk's input (or its gradient) base: after its low-dim keys
 * in its own row, or (diffusion) in observation step n % T of trunk row n / T. */
static float *feat_slot(const bcVisionTrainer *vt, float *base, int n) {
  const bcPolicy *p = vt->p;
  const int I = p->arch.obs_dim;
  if (!vt->dif) return base + (size_t)n * I + p->obs_dim;
  return base + (size_t)(n / vt->T) * I + (size_t)(n % vt->T) * (p->obs_dim + p->feat_dim) + p->obs_dim;
}

/* Crops (random from rng, else centred), the encoders, and the trunk's input X, for B samples (B*T rows). */
static int forward(bcVisionTrainer *vt, const float *x, const int64_t *rows, int B, tkRng *rng) {
  const bcPolicy *p = vt->p;
  if (B < 1 || B > vt->max_batch) return tk_error(TK_EINVAL, "batch %d (1..%d)", B, vt->max_batch);
  const int N = B * vt->T;
  for (int i = 0; i < p->nimg; i++) {
    const bcImage *c = &p->img[i];
    for (int b = 0; b < N; b++) {
      int *oy = &vt->oy[i * vt->max_rows + b], *ox = &vt->ox[i * vt->max_rows + b];
      if (rng) {
        *oy = (int)tk_rng_below(rng, (uint64_t)(c->height - c->crop_h + 1));
        *ox = (int)tk_rng_below(rng, (uint64_t)(c->width - c->crop_w + 1));
      } else {
        *oy = (c->height - c->crop_h) / 2;
        *ox = (c->width - c->crop_w) / 2;
      }
    }
  }
  vt->rows = rows;
  vt->B = N;
  int rc = run_job(vt, JOB_FORWARD);
  if (rc) return rc;
  const int D = p->obs_dim, I = p->arch.obs_dim;
  if (vt->dif) /* x holds whole trunk rows; the cameras' slots get the features */
    memcpy(vt->X, x, sizeof(float) * (size_t)B * I);
  for (int b = 0; b < N; b++) {
    if (!vt->dif) memcpy(vt->X + (size_t)b * I, x + (size_t)b * D, sizeof(float) * (size_t)D);
    float *r = feat_slot(vt, vt->X, b);
    for (int i = 0; i < p->nimg; i++) {
      memcpy(r, vt->feat[i] + (size_t)b * vt->fdim[i], sizeof(float) * (size_t)vt->fdim[i]);
      r += vt->fdim[i];
    }
  }
  return 0;
}

/* the trunk's loss on X: B sequences of T steps, or B rows */
static int trunk_loss(bcVisionTrainer *vt, const float *y, int B, float *loss) {
  const nnNet *net = vt->p->net;
  return net->arch.rnn_layers > 0 ? nn_seq_loss(net, vt->tw, vt->X, y, B, vt->T, loss)
                                  : nn_loss(net, vt->tw, vt->X, y, B, loss);
}

int bc_vt_loss(bcVisionTrainer *vt, const float *x, const float *y, const int64_t *rows, int B, float *loss) {
  int rc = forward(vt, x, rows, B, NULL);
  return rc ? rc : trunk_loss(vt, y, B, loss);
}

int bc_vt_step(bcVisionTrainer *vt, const nnAdamOpts *o, const float *x, const float *y, const int64_t *rows,
               int B, tkRng *rng, float *loss, double *grad_norm) {
  bcPolicy *p = vt->p;
  nnNet *net = p->net;
  int rc = forward(vt, x, rows, B, rng);
  if (rc) return rc;
  nn_zero_grad(net);
  if ((rc = trunk_loss(vt, y, B, loss))) return rc;
  if ((rc = nn_backward_out(net, vt->tw, vt->tw->dout, vt->dX, 1))) return rc;
  for (int b = 0; b < vt->B; b++) {
    const float *r = feat_slot(vt, vt->dX, b);
    for (int i = 0; i < p->nimg; i++) {
      memcpy(vt->dfeat[i] + (size_t)b * vt->fdim[i], r, sizeof(float) * (size_t)vt->fdim[i]);
      r += vt->fdim[i];
    }
  }
  if ((rc = run_job(vt, JOB_BACKWARD))) return rc;
  /* the threads' gradients, summed in thread order */
  for (int i = 0; i < p->nimg; i++) {
    nnEnc *e = p->img[i].enc;
    for (int t = 1; t < vt->threads; t++)
      if ((int64_t)vt->B * t / vt->threads < (int64_t)vt->B * (t + 1) / vt->threads)
        for (int64_t k = 0; k < e->n_params; k++)
          e->grads[k] += vt->gblk[t][i][k];
  }
  /* one norm over every parameter: clipping and the non-finite check see the whole policy */
  double sq = nn_grad_norm(net);
  sq *= sq;
  for (int i = 0; i < p->nimg; i++)
    sq += nn_enc_grad_sq(p->img[i].enc);
  const double norm = sqrt(sq);
  if (grad_norm) {
    *grad_norm = norm;
    if (!isfinite(norm)) return tk_error(TK_ERANGE, "the gradient norm is %g: step not taken", norm);
  }
  float scale = 1.0f;
  if (o->clip_norm > 0 && norm > o->clip_norm) scale = (float)(o->clip_norm / (norm + 1e-6));
  if (scale != 1.0f)
    for (int64_t k = 0; k < net->n_params; k++)
      net->grads[k] *= scale;
  nnAdamOpts oo = *o;
  oo.clip_norm = 0;
  if ((rc = nn_adam_step(net, &oo, NULL))) return rc;
  for (int i = 0; i < p->nimg; i++)
    if ((rc = nn_enc_adam_step(p->img[i].enc, &oo, scale))) return rc;
  return 0;
}

int64_t bc_vt_nparams(const bcPolicy *p) {
  int64_t n = p->net->n_params;
  for (int i = 0; i < p->nimg; i++)
    n += p->img[i].enc->n_params;
  return n;
}

void bc_vt_save_params(const bcPolicy *p, float *buf) {
  memcpy(buf, p->net->params, sizeof(float) * (size_t)p->net->n_params);
  buf += p->net->n_params;
  for (int i = 0; i < p->nimg; i++) {
    memcpy(buf, p->img[i].enc->params, sizeof(float) * (size_t)p->img[i].enc->n_params);
    buf += p->img[i].enc->n_params;
  }
}

void bc_vt_load_params(bcPolicy *p, const float *buf) {
  memcpy(p->net->params, buf, sizeof(float) * (size_t)p->net->n_params);
  buf += p->net->n_params;
  for (int i = 0; i < p->nimg; i++) {
    memcpy(p->img[i].enc->params, buf, sizeof(float) * (size_t)p->img[i].enc->n_params);
    buf += p->img[i].enc->n_params;
  }
}

void bc_vt_ema_update(const bcPolicy *p, float *ema, float d) {
  const float c = 1.0f - d;
  const float *src = p->net->params;
  int64_t n = p->net->n_params;
  for (int i = -1; i < p->nimg; i++) {
    if (i >= 0) {
      src = p->img[i].enc->params;
      n = p->img[i].enc->n_params;
    }
    for (int64_t k = 0; k < n; k++)
      ema[k] = d * ema[k] + c * src[k];
    ema += n;
  }
}
