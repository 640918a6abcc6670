/* nn/nn_team.c -- data-parallel BC training step: row blocks per thread, fixed-order gradient sum,
 * Adam split by parameter ranges. Synchronization: a generation counter to start a step (workers
 * spin for a while, then sleep on a condition variable) and a sense-reversing spin barrier inside it. */
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "nn_internal.h"

#define NN_TEAM_MAX 64
#define SPIN_BEFORE_SLEEP_NS 200000 /* workers spin this long after a step before sleeping */

static inline void cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

struct nnTeam {
  int threads;
  int max_batch;
  int64_t n_params;
  int out_dim;
  nnWork *w[NN_TEAM_MAX]; /* one per thread, ceil(max_batch / threads) rows */
  float *gblock;          /* gradients of threads 1.. ((threads-1) x n_params), one allocation */
  pthread_t th[NN_TEAM_MAX];
  int started;    /* workers running */
  int main_sense; /* barrier sense of the calling thread */
  /* the current step (written by the caller before the generation bump) */
  nnNet *net;
  const float *x, *y;
  int B, nact; /* batch rows; threads with rows */
  int need_norm;
  double clip_norm;
  nnAdamK k;
  double loss_part[NN_TEAM_MAX], sq_part[NN_TEAM_MAX];
  double loss, norm; /* results */
  int updated;       /* 1 if the Adam update ran */
  /* synchronization */
  _Alignas(64) atomic_uint gen;
  _Alignas(64) atomic_int bar_count;
  _Alignas(64) atomic_int bar_sense;
  atomic_int quit;
  pthread_mutex_t mu;
  pthread_cond_t cv;
  int sleepers;
};

static void barrier(nnTeam *T, int *sense) {
  int s = !*sense;
  *sense = s;
  if (atomic_fetch_add(&T->bar_count, 1) == T->threads - 1) {
    atomic_store(&T->bar_count, 0);
    atomic_store(&T->bar_sense, s);
    return;
  }
  unsigned spins = 0;
  while (atomic_load(&T->bar_sense) != s) {
    if (++spins > 2000)
      sched_yield(); /* the other thread may be descheduled: give the cpu back */
    else
      cpu_relax();
  }
}

/* parameter range of thread id, 16-float aligned */
static void chunk(const nnTeam *T, int id, int64_t *lo, int64_t *hi) {
  int64_t n16 = (T->n_params + 15) / 16;
  *lo = TK_MIN(T->n_params, n16 * id / T->threads * 16);
  *hi = TK_MIN(T->n_params, n16 * (id + 1) / T->threads * 16);
}

NN_CLONES static void add_into(float *restrict dst, const float *restrict src, int64_t n) {
  for (int64_t i = 0; i < n; i++)
    dst[i] += src[i];
}

static void step_body(nnTeam *T, int id, int *sense) {
  nnNet *net = T->net;
  int B = T->B, n = T->nact;
  if (id < n) {
    int lo = (int)((int64_t)B * id / n), hi = (int)((int64_t)B * (id + 1) / n);
    nnWork *w = T->w[id];
    nn_forward(net, w, T->x + (size_t)lo * net->dims[0], hi - lo); /* checked by the caller: cannot fail */
    T->loss_part[id] = nn_head_loss(net, w, T->y + (size_t)lo * net->arch.act_dim, hi - lo, B);
    w->stage = NN_STAGE_LOSS;
    float *g = id == 0 ? net->grads : T->gblock + (size_t)(id - 1) * (size_t)T->n_params;
    nn_mlp_backward(net, w, w->dout, NULL, g, 0);
  }
  barrier(T, sense);
  /* every thread derives the same decisions from the same partials in the same order */
  double loss = 0;
  for (int i = 0; i < n; i++)
    loss += T->loss_part[i];
  loss /= B;
  int64_t lo, hi;
  chunk(T, id, &lo, &hi);
  if (isfinite(loss)) {
    /* g0 + g1 + ... in this order; without a norm to take, the last term is folded into the Adam pass */
    int fold = !T->need_norm && n > 1;
    for (int i = 1; i < n - fold; i++)
      add_into(net->grads + lo, T->gblock + (size_t)(i - 1) * (size_t)T->n_params + lo, hi - lo);
    const float *g2 = fold ? T->gblock + (size_t)(n - 2) * (size_t)T->n_params : NULL;
    float gs = 1.0f;
    int ok = 1;
    double norm = 0;
    if (T->need_norm) {
      T->sq_part[id] = nn_sum_sq(net->grads + lo, hi - lo);
      barrier(T, sense);
      double sq = 0;
      for (int i = 0; i < T->threads; i++)
        sq += T->sq_part[i];
      norm = sqrt(sq);
      ok = isfinite(norm);
      if (T->clip_norm > 0 && norm > T->clip_norm) gs = (float)(T->clip_norm / (norm + 1e-6));
    }
    if (ok) nn_adam_span(net, &T->k, lo, hi, gs, g2);
    if (id == 0) {
      T->norm = norm;
      T->updated = ok;
    }
  } else if (id == 0) {
    T->updated = 0;
  }
  if (id == 0) T->loss = loss;
  barrier(T, sense);
}

static void *worker(void *arg) {
  nnTeam *T = ((void **)arg)[0];
  int id = (int)(intptr_t)((void **)arg)[1];
  free(arg);
  unsigned seen = 0; /* gen starts at 0 and is bumped only after all workers exist */
  int sense = 0;
  for (;;) {
    int64_t t0 = tk_now_ns();
    unsigned spins = 0;
    while (atomic_load_explicit(&T->gen, memory_order_acquire) == seen) {
      if ((++spins & 255) == 0 && tk_now_ns() - t0 > SPIN_BEFORE_SLEEP_NS) {
        pthread_mutex_lock(&T->mu);
        T->sleepers++;
        while (atomic_load(&T->gen) == seen)
          pthread_cond_wait(&T->cv, &T->mu);
        T->sleepers--;
        pthread_mutex_unlock(&T->mu);
        break;
      }
      cpu_relax();
    }
    seen = atomic_load(&T->gen);
    if (atomic_load(&T->quit)) break;
    step_body(T, id, &sense);
  }
  return NULL;
}

static void wake(nnTeam *T) {
  atomic_fetch_add_explicit(&T->gen, 1, memory_order_release);
  pthread_mutex_lock(&T->mu);
  if (T->sleepers) pthread_cond_broadcast(&T->cv);
  pthread_mutex_unlock(&T->mu);
}

void nn_team_free(nnTeam *T) {
  if (!T) return;
  if (T->started) {
    atomic_store(&T->quit, 1);
    wake(T);
    for (int i = 1; i <= T->started; i++)
      pthread_join(T->th[i], NULL);
  }
  pthread_cond_destroy(&T->cv);
  pthread_mutex_destroy(&T->mu);
  for (int i = 0; i < T->threads; i++)
    nn_work_free(T->w[i]);
  free(T->gblock);
  free(T);
}

nnTeam *nn_team_make(const nnNet *net, int max_batch, int threads) {
  if (!net) {
    tk_error(TK_EINVAL, "nn_team_make: NULL network");
    return NULL;
  }
  if (nn_refuse_rnn(net, "nn_team_make") || nn_need_training(net, "nn_team_make")) return NULL;
  if (threads < 1 || threads > NN_TEAM_MAX) {
    tk_error(TK_ERANGE, "nn_team_make: %d threads not in 1..%d", threads, NN_TEAM_MAX);
    return NULL;
  }
  if (max_batch < 1) {
    tk_error(TK_ERANGE, "nn_team_make: max_batch %d < 1", max_batch);
    return NULL;
  }
  nnTeam *T = calloc(1, sizeof *T);
  if (!T) {
    tk_error(TK_ENOMEM, "nn_team_make: out of memory");
    return NULL;
  }
  T->threads = threads;
  T->max_batch = max_batch;
  T->n_params = net->n_params;
  T->out_dim = net->out_dim;
  pthread_mutex_init(&T->mu, NULL);
  pthread_cond_init(&T->cv, NULL);
  int rows = (max_batch + threads - 1) / threads;
  for (int i = 0; i < threads; i++)
    if (!(T->w[i] = nn_work_make(net, rows))) {
      nn_team_free(T);
      return NULL;
    }
  if (threads > 1) {
    size_t bytes = (size_t)(threads - 1) * (size_t)net->n_params * sizeof(float);
    T->gblock = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!T->gblock) {
      tk_error(TK_ENOMEM, "nn_team_make: cannot allocate %zu bytes of gradients", bytes);
      nn_team_free(T);
      return NULL;
    }
    memset(T->gblock, 0, bytes);
  }
  nn_set_threads(1);
  for (int i = 1; i < threads; i++) {
    void **arg = malloc(2 * sizeof(void *));
    if (!arg) {
      tk_error(TK_ENOMEM, "nn_team_make: out of memory");
      nn_team_free(T);
      return NULL;
    }
    arg[0] = T;
    arg[1] = (void *)(intptr_t)i;
    int e = pthread_create(&T->th[i], NULL, worker, arg);
    if (e) {
      free(arg);
      tk_error(TK_EIO, "nn_team_make: cannot start thread %d: %s", i, strerror(e));
      nn_team_free(T);
      return NULL;
    }
    T->started = i;
  }
  return T;
}

int nn_team_threads(const nnTeam *t) { return t ? t->threads : 0; }

int nn_work_set_team(nnWork *w, nnTeam *t) {
  if (!w) return tk_error(TK_EINVAL, "nn_work_set_team: NULL work");
  if (t && (t->n_params != w->n_params || t->out_dim != w->out_dim))
    return tk_error(TK_EINVAL, "nn_work_set_team: the team was made for another network than the work");
  w->team = t;
  return 0;
}

int nn_team_train_step(nnNet *net, nnTeam *T, const nnAdamOpts *o, const float *x, const float *y, int B,
                       float *loss, double *grad_norm) {
  return nn_team_step(net, T, o, x, y, B, loss, grad_norm, "nn_team_train_step");
}

int nn_team_step(nnNet *net, nnTeam *T, const nnAdamOpts *o, const float *x, const float *y, int B,
                 float *loss, double *grad_norm, const char *fn) {
  if (!net || !T || !x || !y) return tk_error(TK_EINVAL, "%s: NULL argument", fn);
  int rc = nn_refuse_rnn(net, fn);
  if (!rc) rc = nn_need_training(net, fn);
  if (rc) return rc;
  if (T->n_params != net->n_params || T->out_dim != net->out_dim)
    return tk_error(TK_EINVAL, "%s: the team was made for another network", fn);
  if (B < 1 || B > T->max_batch)
    return tk_error(TK_ERANGE, "%s: batch %d not in 1..%d (the team's max_batch)", fn, B, T->max_batch);
  rc = nn_adam_check(o);
  if (rc) return rc;
  T->net = net;
  T->x = x;
  T->y = y;
  T->B = B;
  T->nact = TK_MIN(T->threads, B);
  T->need_norm = o->clip_norm > 0 || grad_norm != NULL;
  T->clip_norm = o->clip_norm;
  nn_adam_prepare(net, o, &T->k);
  if (T->threads > 1) wake(T);
  step_body(T, 0, &T->main_sense);
  if (loss) *loss = (float)T->loss;
  if (grad_norm) *grad_norm = T->norm;
  if (!isfinite(T->loss)) return tk_error(TK_ERANGE, "%s: loss is not finite (%g)", fn, T->loss);
  if (!T->updated) return tk_error(TK_ERANGE, "%s: gradient norm is not finite", fn);
  net->adam_t++;
  return 0;
}
