/* rl_finetune/rl_sac.c -- SAC from a BC policy and its demos (RLPD-style), parallel environment workers. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds_h5.h"
#include "rl_internal.h"
#include "rl_mpi.h"

void rl_opts_default(rlOpts *o) {
  memset(o, 0, sizeof *o);
  o->out = "ft.h5";
  o->label = "finetune";
  o->steps = 100000;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  o->workers = n > 0 ? (int)n : 1;
  o->ensemble = 2;
  o->utd = 1;
  o->batch = 256;
  o->hidden = 256;
  o->critic_lr = 3e-4;
  o->gamma = 0.99;
  o->tau = 0.005;
  o->init_alpha = 1e-3;
  o->alpha_lr = 3e-4;
  o->bc_weight = 1.0;
  o->q_coef = 0.1;
  o->actor_eps = 1e-3;
  o->actor_delay = 2500;
  o->bc_halflife = 100000;
  o->init_std = 0.2;
  o->critic_warmup = 2000;
  o->random_steps = 5000;
  o->eval_every = 5000;
  o->eval_episodes = 100;
  o->target = 0.95;
  o->stop_at_target = 1;
  o->algo = "sac";
  o->rollout = 4096;
  o->minibatch = 1024;
  o->ppo_epochs = 5;
  o->clip = 0.2;
  o->gae_lambda = 0.95;
  o->target_kl = 0.05;
  o->max_std = 0.5;
  o->value_warmup_iters = 1;
}

/* ---- replay buffers ------------------------------------------------------------------------------ */

static int buf_make(rlBuf *b, int64_t cap, int D, int A) {
  memset(b, 0, sizeof *b);
  b->cap = cap;
  b->D = D;
  b->A = A;
  b->s = malloc(sizeof(float) * (size_t)(cap * D));
  b->s2 = malloc(sizeof(float) * (size_t)(cap * D));
  b->a = malloc(sizeof(float) * (size_t)(cap * A));
  b->r = malloc(sizeof(float) * (size_t)cap);
  b->d = malloc((size_t)cap);
  if (!b->s || !b->s2 || !b->a || !b->r || !b->d)
    return tk_error(TK_ENOMEM, "out of memory (replay buffer of %lld)", (long long)cap);
  return 0;
}

static void buf_free(rlBuf *b) {
  free(b->s);
  free(b->s2);
  free(b->a);
  free(b->r);
  free(b->d);
}

static void buf_push(rlBuf *b, const float *s, const float *a, float r, const float *s2, int d) {
  int64_t i = b->n < b->cap ? b->n++ : (int64_t)(b->n % b->cap); /* full: overwrite (never at our sizes) */
  memcpy(b->s + i * b->D, s, sizeof(float) * (size_t)b->D);
  memcpy(b->s2 + i * b->D, s2, sizeof(float) * (size_t)b->D);
  memcpy(b->a + i * b->A, a, sizeof(float) * (size_t)b->A);
  b->r[i] = r;
  b->d[i] = (uint8_t)d;
}

static float *falloc(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

/* A Gaussian head's log-std rows: zero weights and the bias that gives std (the same for every state).
 * log_std = lo + (hi - lo) (tanh(raw) + 1) / 2  ->  raw = atanh(2 (log_std - lo) / (hi - lo) - 1) */
static void init_log_std(nnNet *net, double std) {
  nnLayer *dl = &net->layer[net->n_linear - 1];
  const int A = net->arch.act_dim, in = net->dims[net->n_linear - 1];
  double ls = log(std), lo = net->arch.log_std_min, hi = net->arch.log_std_max;
  double raw = atanh(fmax(-0.999, fmin(0.999, 2 * (ls - lo) / (hi - lo) - 1)));
  memset(dl->w + (size_t)A * in, 0, sizeof(float) * (size_t)A * (size_t)in);
  for (int i = 0; i < A; i++)
    dl->b[A + i] = (float)raw;
}

/* The actor: a tanh-Gaussian policy with the BC policy's layers (or fresh ones). */
static bcPolicy *make_actor(const rlOpts *o, const bcPolicy *bc, const capSpec *spec, const bcPolicy *stats) {
  nnArch a;
  const int ppo = !strcmp(o->algo, "ppo");
  if (bc) {
    a = bc->arch;
    if (bc->chunk > 1) {
      tk_error(TK_EINVAL,
               "%s: a chunked policy (%d actions per step) cannot start the actor; train with --chunk 1",
               o->policy, bc->chunk);
      return NULL;
    }
    if (a.rnn_layers > 0) {
      tk_error(TK_EINVAL,
               "%s: a recurrent (BC-RNN) policy cannot start the actor, which acts without memory; "
               "train without --rnn",
               o->policy);
      return NULL;
    }
    if (a.head == NN_HEAD_GMM) {
      tk_error(TK_EINVAL,
               "%s: a GMM policy cannot start SAC's Gaussian actor; train with --head mse or gaussian",
               o->policy);
      return NULL;
    }
    if (a.head == NN_HEAD_MSE && !a.tanh) {
      tk_error(TK_EINVAL, "%s: an MSE policy without tanh cannot start the tanh-Gaussian actor", o->policy);
      return NULL;
    }
    a.head = NN_HEAD_GAUSSIAN;
    if (ppo && bc->arch.head == NN_HEAD_MSE) a.log_std_max = log(o->max_std); /* PPO's clamped std */
  } else {
    nn_arch_default(&a);
    if (ppo) a.log_std_max = log(o->max_std);
    a.obs_dim = stats->obs_dim;
    a.act_dim = spec->action_dim;
    a.n_hidden = 2;
    a.hidden[0] = a.hidden[1] = o->hidden;
    a.head = NN_HEAD_GAUSSIAN;
  }
  const bcPolicy *src = bc ? bc : stats;
  const char *keys[BC_MAX_KEYS];
  for (int i = 0; i < src->nkeys; i++)
    keys[i] = src->keys[i];
  /* the actor is trained: a network with gradients and Adam state, into which the loaded policy (made
   * to act) is copied below */
  bcPolicy *p = bc_policy_make(&a, src->nkeys, keys, src->key_dim, o->seed ^ 0xac70ull);
  if (!p) return NULL;
  memcpy(p->obs_mean, src->obs_mean, sizeof(float) * (size_t)src->obs_dim);
  memcpy(p->obs_std, src->obs_std, sizeof(float) * (size_t)src->obs_dim);
  memcpy(p->act_offset, src->act_offset, sizeof(float) * (size_t)src->act_dim);
  memcpy(p->act_scale, src->act_scale, sizeof(float) * (size_t)src->act_dim);
  snprintf(p->task, sizeof p->task, "%s", spec->task);
  p->control_hz = spec->control_hz;
  snprintf(p->algo, sizeof p->algo, "%s", o->algo);
  /* PPO from scratch explores with init_std too (SAC's entropy term finds its own) */
  if (ppo && !bc) init_log_std(p->net, o->init_std);
  if (bc) {
    /* copy every layer; the output layer's first A rows are the mean (MSE-tanh: the same action), the
     * log-std rows get zero weights and a bias that gives init_std */
    const nnNet *s = bc->net;
    nnNet *d = p->net;
    int A = a.act_dim;
    for (int l = 0; l < s->n_linear; l++) {
      const nnLayer *sl = &s->layer[l];
      nnLayer *dl = &d->layer[l];
      int in = s->dims[l], out = s->dims[l + 1];
      if (l < s->n_linear - 1) {
        memcpy(dl->w, sl->w, sizeof(float) * (size_t)in * (size_t)out);
        memcpy(dl->b, sl->b, sizeof(float) * (size_t)out);
        if (sl->gain) {
          memcpy(dl->gain, sl->gain, sizeof(float) * (size_t)out);
          memcpy(dl->beta, sl->beta, sizeof(float) * (size_t)out);
        }
      } else {
        int rows = bc->arch.head == NN_HEAD_GAUSSIAN ? 2 * A : A;
        memcpy(dl->w, sl->w, sizeof(float) * (size_t)in * (size_t)rows);
        memcpy(dl->b, sl->b, sizeof(float) * (size_t)rows);
        if (rows == A) init_log_std(d, o->init_std);
      }
    }
  }
  return p;
}

static int critic_arch(const rlRun *R, nnArch *c) {
  nn_arch_default(c);
  c->obs_dim = R->ppo ? R->D : R->D + R->A; /* PPO: the value function V(s) */
  c->act_dim = 1;
  c->n_hidden = 2;
  c->hidden[0] = c->hidden[1] = R->o->hidden;
  c->layer_norm = 1;
  c->head = NN_HEAD_MSE;
  c->tanh = 0;
  return nn_arch_validate(c);
}

/* Load the demos into the demo buffer: normalized with the actor's statistics, sparse rewards. */
static int load_demos(rlRun *R) {
  const rlOpts *o = R->o;
  dsFile *f = NULL;
  int rc = ds_open(o->demos, 0, &f);
  if (rc) return rc;
  const char *env = ds_env_name(f);
  if (!env || strcmp(env, R->spec->task)) {
    rc = tk_error(TK_EINVAL, "%s: demos of task '%s', but this run is on task '%s'", o->demos,
                  env ? env : "?", R->spec->task);
    ds_close(f);
    return rc;
  }
  const char *keys[BC_MAX_KEYS];
  for (int i = 0; i < R->actor->nkeys; i++)
    keys[i] = R->actor->keys[i];
  dsLoadOpts lo = {.obs_keys = keys, .nobs_keys = R->actor->nkeys, .load_next_obs = 1};
  dsLoaded L;
  if ((rc = ds_load(f, &lo, &L))) {
    ds_close(f);
    return rc;
  }
  if (L.obs_dim != R->D || L.act_dim != R->A) {
    rc = tk_error(TK_EINVAL, "%s: observations %d and actions %d, the policy takes %d and %d", o->demos,
                  L.obs_dim, L.act_dim, R->D, R->A);
  } else if (!(rc = buf_make(&R->demo, TK_MAX(L.n, 1), R->D, R->A))) {
    float *s = falloc((size_t)R->D), *s2 = falloc((size_t)R->D), *a = falloc((size_t)R->A);
    for (int64_t k = 0; s && s2 && a && k < L.n; k++) {
      bc_policy_normalize(R->actor, L.obs + k * R->D, 1, s);
      bc_policy_normalize(R->actor, L.next_obs + k * R->D, 1, s2);
      for (int i = 0; i < R->A; i++) {
        double v = (L.actions[k * R->A + i] - R->actor->act_offset[i]) / R->actor->act_scale[i];
        a[i] = (float)fmax(-1 + 1e-6, fmin(1 - 1e-6, v));
      }
      buf_push(&R->demo, s, a, L.dones[k] ? 1.0f : 0.0f, s2, L.dones[k]);
    }
    if (!s || !s2 || !a) rc = tk_error(TK_ENOMEM, "out of memory");
    free(s);
    free(s2);
    free(a);
  }
  ds_loaded_free(&L);
  ds_close(f);
  return rc;
}

/* A batch: half demos, half online (all online without demos, all demos before any online data). */
static void sample(rlRun *R) {
  int B = R->B, nd = R->demo.n > 0 ? (R->online.n > 0 ? B / 2 : B) : 0;
  for (int b = 0; b < B; b++) {
    const rlBuf *src = b < nd ? &R->demo : &R->online;
    int64_t i = (int64_t)tk_rng_below(&R->rng, (uint64_t)src->n);
    memcpy(R->bs + (size_t)b * R->D, src->s + i * R->D, sizeof(float) * (size_t)R->D);
    memcpy(R->bs2 + (size_t)b * R->D, src->s2 + i * R->D, sizeof(float) * (size_t)R->D);
    memcpy(R->ba + (size_t)b * R->A, src->a + i * R->A, sizeof(float) * (size_t)R->A);
    R->br[b] = src->r[i];
    R->bd[b] = src->d[i];
  }
}

static void concat(const rlRun *R, const float *s, const float *a, float *x) {
  for (int b = 0; b < R->B; b++) {
    memcpy(x + (size_t)b * (R->D + R->A), s + (size_t)b * R->D, sizeof(float) * (size_t)R->D);
    memcpy(x + (size_t)b * (R->D + R->A) + R->D, a + (size_t)b * R->A, sizeof(float) * (size_t)R->A);
  }
}

static void normals(tkRng *rng, float *v, int n) {
  for (int i = 0; i < n; i++)
    v[i] = (float)tk_rng_normal(rng);
}

enum { JOB_TARGET = 1, JOB_GRAD = 2, JOB_STEP = 4, JOB_ACTOR_Q = 3 };

/* Thread k's share of a learner job. */
static int team_job(rlRun *R, int k) {
  const int B = R->B, E = R->o->ensemble, D = R->D, A = R->A;
  nnWork *w = R->lw[k];
  int rc = 0;
  if (R->ljob == JOB_TARGET) {
    /* member li on thread 0, lj on thread 1 (or 0 when alone) */
    if (k == 0 && (rc = nn_forward(R->qt[R->li], w, R->x, B)) == 0)
      memcpy(R->qa, w->out, sizeof(float) * (size_t)B);
    if (!rc && k == (R->T > 1 ? 1 : 0) && (rc = nn_forward(R->qt[R->lj], w, R->x, B)) == 0)
      memcpy(R->qb, w->out, sizeof(float) * (size_t)B);
  } else if (R->ljob == JOB_GRAD) { /* the critics' gradients (averaged over ranks before the step) */
    for (int e = k; e < E && !rc; e += R->T) {
      float loss;
      nn_zero_grad(R->q[e]);
      if ((rc = nn_loss(R->q[e], w, R->x, R->y, B, &loss)) || (rc = nn_backward(R->q[e], w)))
        rc = tk_error_wrap(rc, "critic %d", e);
    }
  } else if (R->ljob == JOB_STEP) {
    for (int e = k; e < E && !rc; e += R->T) {
      double gn;
      if ((rc = nn_adam_step(R->q[e], &R->qopt, &gn)))
        rc = tk_error_wrap(rc, "critic %d", e);
      else
        nn_polyak(R->qt[e], R->q[e], (float)R->o->tau);
    }
  } else if (R->ljob == JOB_ACTOR_Q) {
    R->lqabs[k] = 0;
    memset(R->ldact[k], 0, sizeof(float) * (size_t)(B * A));
    for (int e = k; e < E && !rc; e += R->T) {
      if ((rc = nn_forward(R->q[e], w, R->x, B))) break;
      for (int b = 0; b < B; b++)
        R->lqabs[k] += fabs(w->out[b]) / (B * E);
      if ((rc = nn_backward_out(R->q[e], w, R->dout, R->ldx[k], 0))) break;
      for (int b = 0; b < B; b++)
        for (int n = 0; n < A; n++)
          R->ldact[k][b * A + n] += R->ldx[k][(size_t)b * (D + A) + D + n];
    }
  }
  return rc;
}

static void *team_main(void *arg) {
  rlRun *R = ((rlTeamArg *)arg)->run;
  int k = ((rlTeamArg *)arg)->id;
  for (;;) {
    pthread_barrier_wait(&R->lgo);
    if (R->lquit) break;
    if ((R->lrc[k] = team_job(R, k))) snprintf(R->lerr[k], sizeof R->lerr[k], "%s", tk_errmsg());
    pthread_barrier_wait(&R->ldone);
  }
  return NULL;
}

static int team_run(rlRun *R, int job) {
  R->ljob = job;
  if (R->T > 1) pthread_barrier_wait(&R->lgo);
  if ((R->lrc[0] = team_job(R, 0))) snprintf(R->lerr[0], sizeof R->lerr[0], "%s", tk_errmsg());
  if (R->T > 1) pthread_barrier_wait(&R->ldone);
  for (int k = 0; k < R->T; k++)
    if (R->lrc[k]) return tk_error(R->lrc[k], "%s", R->lerr[k]);
  return 0;
}

static int update_critics(rlRun *R) {
  const int B = R->B, E = R->o->ensemble;
  double alpha = exp(R->log_alpha);
  normals(&R->rng, R->eps, B * R->A);
  int rc = nn_gauss_sample(R->actor->net, R->aw, R->bs2, B, R->eps, R->act, R->logp);
  if (rc) return rc;
  concat(R, R->bs2, R->act, R->x);
  int i = 0, j = E > 1 ? 1 : 0;
  if (E > 2) { /* two distinct members at random (RLPD) */
    i = (int)tk_rng_below(&R->rng, (uint64_t)E);
    j = (int)tk_rng_below(&R->rng, (uint64_t)(E - 1));
    if (j >= i) j++;
  }
  R->li = i;
  R->lj = j;
  if ((rc = team_run(R, JOB_TARGET))) return rc;
  for (int b = 0; b < B; b++) {
    double next = fmin(R->qa[b], R->qb[b]) - alpha * R->logp[b];
    R->y[b] = (float)(R->br[b] + R->o->gamma * (R->bd[b] ? 0.0 : next));
  }
  concat(R, R->bs, R->ba, R->x);
  rc = team_run(R, JOB_GRAD);
  if (rl_mpi_any(rc)) return rc ? rc : tk_error(TK_ERANGE, "another rank's critic loss is not finite");
  for (int e = 0; e < E; e++)
    rl_mpi_mean_f(R->q[e]->grads, R->q[e]->n_params);
  return team_run(R, JOB_STEP);
}

static int update_actor(rlRun *R) {
  const int B = R->B, E = R->o->ensemble, D = R->D, A = R->A;
  double alpha = exp(R->log_alpha);
  normals(&R->rng, R->eps, B * A);
  int rc = nn_gauss_sample(R->actor->net, R->aw, R->bs, B, R->eps, R->act, R->logp);
  if (rc) return rc;
  concat(R, R->bs, R->act, R->x);
  memset(R->dact, 0, sizeof(float) * (size_t)(B * A));
  for (int b = 0; b < B; b++)
    R->dout[b] = -1.0f / (float)(B * E); /* loss = mean_b (alpha logp - lambda mean_e Q_e) + anchor */
  if ((rc = team_run(R, JOB_ACTOR_Q))) return rc;
  double qabs = 0;
  for (int k = 0; k < R->T; k++) { /* a fixed order: the same bits for the same thread count */
    qabs += R->lqabs[k];
    for (int n = 0; n < B * A; n++)
      R->dact[n] += R->ldact[k][n];
  }
  /* TD3+BC's normalization: the Q term has the same weight whatever the scale of Q */
  double lambda = R->o->q_coef / fmax(qabs, 1e-2);
  for (int i = 0; i < B * A; i++)
    R->dact[i] = (float)(R->dact[i] * lambda);
  /* the decaying anchor: demo rows (the first nd) toward the demo's action, online rows toward what
   * the BC policy does there, so the actor leaves BC only where the critic is sure */
  int nd = R->demo.n > 0 ? (R->online.n > 0 ? B / 2 : B) : 0;
  double w = R->o->bc_weight * pow(0.5, (double)R->updates / fmax(R->o->bc_halflife, 1));
  if (w > 1e-6 && R->bc) {
    if (nd < B &&
        (rc = nn_act(R->bc->net, R->bw, R->bs + (size_t)nd * D, B - nd, R->qa_act + (size_t)nd * A)))
      return rc;
    for (int b = 0; b < B; b++) {
      const float *t = b < nd ? R->ba + (size_t)b * A : R->qa_act + (size_t)b * A;
      for (int k = 0; k < A; k++)
        R->dact[b * A + k] += (float)(2 * w * (R->act[b * A + k] - t[k]) / (B * A));
    }
  }
  double mean_logp = 0;
  for (int b = 0; b < B; b++) {
    R->dlogp[b] = (float)(alpha / B);
    mean_logp += R->logp[b] / B;
  }
  nn_zero_grad(R->actor->net);
  rc = nn_gauss_backward(R->actor->net, R->aw, R->dact, R->dlogp);
  if (rl_mpi_any(rc)) return rc ? rc : tk_error(TK_ERANGE, "another rank's actor update failed");
  rl_mpi_mean_f(R->actor->net->grads, R->actor->net->n_params);
  double gn;
  if ((rc = nn_adam_step(R->actor->net, &R->aopt, &gn))) return tk_error_wrap(rc, "actor");
  /* temperature: loss = -log_alpha (logp + target entropy), Adam on the scalar */
  double g = -(mean_logp + R->target_entropy);
  rl_mpi_mean_d(&g, 1);
  R->alpha_t++;
  R->alpha_m = 0.9 * R->alpha_m + 0.1 * g;
  R->alpha_v = 0.999 * R->alpha_v + 0.001 * g * g;
  double mh = R->alpha_m / (1 - pow(0.9, (double)R->alpha_t)),
         vh = R->alpha_v / (1 - pow(0.999, (double)R->alpha_t));
  R->log_alpha -= R->o->alpha_lr * mh / (sqrt(vh) + 1e-8);
  return 0;
}

/* ---- workers ------------------------------------------------------------------------------------- */
static int worker_reset(rlWorker *w) {
  uint64_t seed = w->seed_base + (uint64_t)w->episodes++;
  w->ep_len = 0;
  int rc = cap_env_reset(w->env, seed, &w->obs);
  if (rc) return rc;
  bc_gather(&w->run->bind, &w->obs, w->raw);
  bc_policy_normalize(w->run->actor, w->raw, 1, w->s);
  return 0;
}

/* One environment step with the current actor; the transition is left in the worker. */
static int worker_step(rlWorker *w) {
  rlRun *R = w->run;
  const int A = R->A;
  if (R->random_actions) {
    for (int i = 0; i < A; i++)
      w->a[i] = (float)tk_rng_range(&w->rng, -1, 1);
  } else {
    float eps[CAP_MAX_ACT];
    normals(&w->rng, eps, A);
    int rc = nn_gauss_sample(R->actor->net, w->w, w->s, 1, eps, w->a, NULL);
    if (rc) return rc;
  }
  double act[CAP_MAX_ACT];
  for (int i = 0; i < A; i++)
    act[i] = fmax(-1, fmin(1, R->actor->act_offset[i] + R->actor->act_scale[i] * w->a[i]));
  capStep st;
  int rc = cap_env_step(w->env, act, &st);
  if (rc) return rc;
  w->ep_len++;
  bc_gather(&R->bind, &st.obs, w->raw);
  bc_policy_normalize(R->actor, w->raw, 1, w->s2);
  w->reward = st.success ? 1.0f : 0.0f;
  w->done = st.success || st.terminated;
  return 0;
}

static void *worker_main(void *arg) {
  rlWorker *w = arg;
  rlRun *R = w->run;
  for (;;) {
    pthread_barrier_wait(&R->go);
    if (R->quit) break;
    if (!w->rc && (w->rc = worker_step(w))) snprintf(w->err, sizeof w->err, "%s", tk_errmsg());
    pthread_barrier_wait(&R->done);
  }
  return NULL;
}

/* All workers take one step in parallel (worker 0 on this thread); transitions stored in worker order. */
static int step_all(rlRun *R, int horizon) {
  if (R->nw > 1) pthread_barrier_wait(&R->go);
  rlWorker *w0 = &R->wk[0];
  if (!w0->rc && (w0->rc = worker_step(w0))) snprintf(w0->err, sizeof w0->err, "%s", tk_errmsg());
  if (R->nw > 1) pthread_barrier_wait(&R->done);
  for (int i = 0; i < R->nw; i++) {
    rlWorker *w = &R->wk[i];
    if (w->rc) return tk_error(w->rc, "worker %d: %s", i, w->err);
    if (R->ppo)
      rl_ppo_store(R, i, w, w->ep_len >= horizon);
    else
      buf_push(&R->online, w->s, w->a, w->reward, w->s2, w->done);
    if (w->done || w->ep_len >= horizon) {
      int rc = worker_reset(w);
      if (rc) return rc;
    } else {
      memcpy(w->s, w->s2, sizeof(float) * (size_t)R->D);
    }
  }
  return 0;
}

/* ---- checkpoints --------------------------------------------------------------------------------- */
#define RL_CKPT_FORMAT "demokit.rl_checkpoint"

static int put_f32(hid_t g, const char *name, const float *v, int64_t n) {
  return ds_write_whole(g, name, DS_F32, 0, NULL, n, v, 0);
}

static int put_net(hid_t f, const char *name, const nnNet *net) {
  hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return ds_h5_fail(TK_EIO, "checkpoint: group %s", name);
  int rc = put_f32(g, "params", net->params, net->n_params);
  if (!rc) rc = put_f32(g, "adam_m", net->adam_m, net->n_params);
  if (!rc) rc = put_f32(g, "adam_v", net->adam_v, net->n_params);
  if (!rc) rc = ds_attr_write_i64(g, "adam_t", net->adam_t);
  H5Gclose(g);
  return rc;
}

/* ---- reading a checkpoint back: every counter and size is checked against the options and the other
 * counters before it is used (a checkpoint is a file: a negative env-step count ran for ever, an all-zero
 * random stream hangs its first draw, a longer online/d overflowed the replay buffer) --------------- */

/* an integer field in lo..hi, else a one-line message naming the file and the field */
static int ck_int(const char *path, const char *field, int64_t v, int64_t lo, int64_t hi, const char *what) {
  if (v >= lo && v <= hi) return 0;
  return tk_error(TK_EFORMAT, "%s: checkpoint field '%s' = %lld is not in %lld..%lld (%s)", path, field,
                  (long long)v, (long long)lo, (long long)hi, what);
}

/* a real field in [lo, hi] (finite) */
static int ck_real(const char *path, const char *field, double v, double lo, double hi, const char *what) {
  if (isfinite(v) && v >= lo && v <= hi) return 0;
  return tk_error(TK_EFORMAT, "%s: checkpoint field '%s' = %g is not in [%g, %g] (%s)", path, field, v, lo,
                  hi, what);
}

static int ck_attr_i64(hid_t f, const char *name, int64_t *v, const char *path) {
  if (ds_attr_read_i64(f, name, v))
    return tk_error(TK_EFORMAT, "%s: checkpoint field '%s' is missing or not an integer", path, name);
  return 0;
}

static int ck_attr_f64(hid_t f, const char *name, double *v, const char *path) {
  if (ds_attr_read_f64(f, name, v))
    return tk_error(TK_EFORMAT, "%s: checkpoint field '%s' is missing or not a number", path, name);
  return 0;
}

/* Elements of dataset g/name (-1 with a message naming it if it is missing or not a simple dataset). */
static int64_t ck_npoints(hid_t g, const char *group, const char *name, const char *path) {
  hid_t d = H5Lexists(g, name, H5P_DEFAULT) > 0 ? H5Dopen2(g, name, H5P_DEFAULT) : -1;
  if (d < 0) {
    H5Eclear2(H5E_DEFAULT);
    tk_error(TK_EFORMAT, "%s: checkpoint field '%s%s' is missing", path, group, name);
    return -1;
  }
  hid_t sp = H5Dget_space(d);
  hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(d);
  H5Eclear2(H5E_DEFAULT);
  if (np < 0) tk_error(TK_EFORMAT, "%s: checkpoint field '%s%s' is not an array", path, group, name);
  return np;
}

/* Read n floats of exactly that length, every one finite. */
static int get_f32(hid_t g, const char *group, const char *name, float *v, int64_t n, const char *path) {
  int64_t np = ck_npoints(g, group, name, path);
  if (np < 0) return TK_EFORMAT;
  if (np != n)
    return tk_error(
        TK_EFORMAT,
        "%s: checkpoint field '%s%s' has %lld values, this run needs %lld (other options than the "
        "run that wrote it?)",
        path, group, name, (long long)np, (long long)n);
  return ds_h5_read_exact(g, name, DS_F32, 1, &n, v, path, "this run");
}

/* A network's parameters, Adam moments (v >= 0) and step count (0..max_t). */
static int get_net(hid_t f, const char *name, nnNet *net, int64_t max_t, const char *path) {
  hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
  if (g < 0) return ds_h5_fail(TK_EFORMAT, "%s: group %s is missing", path, name);
  char grp[48], field[64];
  snprintf(grp, sizeof grp, "%s/", name);
  int rc = get_f32(g, grp, "params", net->params, net->n_params, path);
  if (!rc) rc = get_f32(g, grp, "adam_m", net->adam_m, net->n_params, path);
  if (!rc) rc = get_f32(g, grp, "adam_v", net->adam_v, net->n_params, path);
  for (int64_t i = 0; !rc && i < net->n_params; i++)
    if (net->adam_v[i] < 0)
      rc = tk_error(TK_EFORMAT, "%s: checkpoint field '%sadam_v' has a negative value at %lld", path, grp,
                    (long long)i);
  snprintf(field, sizeof field, "%sadam_t", grp);
  if (!rc && ds_attr_read_i64(g, "adam_t", &net->adam_t))
    rc = tk_error(TK_EFORMAT, "%s: checkpoint field '%s' is missing or not an integer", path, field);
  if (!rc) rc = ck_int(path, field, net->adam_t, 0, max_t, "Adam steps: at most the updates and warm-up");
  H5Gclose(g);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

/* Everything a run needs to go on: networks with their Adam moments, temperature, RNG streams,
 * counters, the evaluation history and the online replay buffer. Written to a temp file and renamed. */
static int ckpt_save(rlRun *R, const rlResult *res, int64_t next_eval, const char *path) {
  ds_h5_init();
  char tmp[4200], name[32];
  int fd = tk_temp_beside(path, tmp, sizeof tmp); /* a name of ours alone, never a user's file */
  if (fd < 0) return tk_error_wrap(fd, "%s: checkpoint not written", path);
  close(fd);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) {
    unlink(tmp);
    return ds_h5_fail(TK_EIO, "%s: cannot create the checkpoint", tmp);
  }
  int rc =
      ds_attr_write_str(f, "format", RL_CKPT_FORMAT) || ds_attr_write_i64(f, "version", 1) ||
              ds_attr_write_str(f, "algo", R->o->algo) || ds_attr_write_f64(f, "actor_lr", R->aopt.lr) ||
              ds_attr_write_str(f, "task", R->spec->task) ||
              ds_attr_write_i64(f, "env_steps", res->env_steps) ||
              ds_attr_write_i64(f, "updates", R->updates) || ds_attr_write_i64(f, "next_eval", next_eval) ||
              ds_attr_write_i64(f, "best_step", res->best_step) ||
              ds_attr_write_i64(f, "steps_to_target", res->steps_to_target) ||
              ds_attr_write_f64(f, "best_success", res->best_success) ||
              ds_attr_write_f64(f, "initial_success", res->initial_success) ||
              ds_attr_write_f64(f, "log_alpha", R->log_alpha) ||
              ds_attr_write_f64(f, "alpha_m", R->alpha_m) || ds_attr_write_f64(f, "alpha_v", R->alpha_v) ||
              ds_attr_write_i64(f, "alpha_t", R->alpha_t) || ds_attr_write_i64(f, "workers", R->nw)
          ? ds_h5_fail(TK_EIO, "%s: checkpoint attributes", tmp)
          : 0;
  if (!rc) rc = put_net(f, "actor", R->actor->net);
  for (int e = 0; !rc && e < R->o->ensemble; e++) {
    snprintf(name, sizeof name, "critic%d", e);
    rc = put_net(f, name, R->q[e]);
    snprintf(name, sizeof name, "target%d", e);
    if (!rc) rc = put_net(f, name, R->qt[e]);
  }
  /* RNG streams: the learner's, then each worker's, as raw bytes */
  uint8_t rng[(1 + RL_MAX_WORKERS) * sizeof(tkRng)];
  memcpy(rng, &R->rng, sizeof(tkRng));
  for (int i = 0; i < R->nw; i++)
    memcpy(rng + (1 + i) * sizeof(tkRng), &R->wk[i].rng, sizeof(tkRng));
  if (!rc) rc = ds_write_whole(f, "rng", DS_U8, 0, NULL, (int64_t)((1 + R->nw) * sizeof(tkRng)), rng, 0);
  double ev[2 * 512];
  for (int i = 0; i < res->n_evals; i++) {
    ev[2 * i] = (double)res->eval_step[i];
    ev[2 * i + 1] = res->eval_success[i];
  }
  int64_t two = 2;
  if (!rc) rc = ds_write_whole(f, "evals", DS_F64, 1, &two, res->n_evals, ev, 0);
  hid_t g = rc ? -1 : H5Gcreate2(f, "online", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (!rc && g < 0) rc = ds_h5_fail(TK_EIO, "%s: group online", tmp);
  const rlBuf *b = &R->online;
  if (!rc) rc = put_f32(g, "s", b->s, b->n * b->D);
  if (!rc) rc = put_f32(g, "s2", b->s2, b->n * b->D);
  if (!rc) rc = put_f32(g, "a", b->a, b->n * b->A);
  if (!rc) rc = put_f32(g, "r", b->r, b->n);
  if (!rc) rc = ds_write_whole(g, "d", DS_U8, 0, NULL, b->n, b->d, 0);
  if (g >= 0) H5Gclose(g);
  if (H5Fclose(f) < 0 && !rc) rc = ds_h5_fail(TK_EIO, "%s: close", tmp);
  if (!rc) rc = tk_durable_rename(tmp, path); /* fsyncs the file, renames, fsyncs the directory */
  if (rc) {
    remove(tmp);
    return tk_error_wrap(rc, "%s: checkpoint not written", path);
  }
  return 0;
}

static int ckpt_load(rlRun *R, rlResult *res, int64_t *next_eval, const char *path) {
  ds_h5_init();
  const rlOpts *o = R->o;
  if (!tk_file_exists(path)) return tk_error(TK_ENOTFOUND, "%s: no checkpoint to resume from", path);
  if (H5Fis_hdf5(path) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return tk_error(TK_EFORMAT, "%s: not a checkpoint (not an HDF5 file)", path);
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return ds_h5_fail(TK_EFORMAT, "%s: not a checkpoint", path);
  char *fmt = NULL, *task = NULL, name[32];
  int64_t version = 0, workers = 0, upd = 0;
  int rc = 0;
  if (ds_attr_read_str(f, "format", &fmt) || strcmp(fmt, RL_CKPT_FORMAT) ||
      ds_attr_read_i64(f, "version", &version) || version != 1)
    rc = tk_error(TK_EFORMAT, "%s: not an rl-finetune checkpoint (version 1)", path);
  char *algo = NULL;
  if (!rc && H5Aexists(f, "algo") > 0 && (ds_attr_read_str(f, "algo", &algo) || strcmp(algo, o->algo)))
    rc = tk_error(TK_EINVAL, "%s: a checkpoint of --algo %s, this run is --algo %s", path, algo ? algo : "?",
                  o->algo);
  free(algo);
  if (!rc && (ds_attr_read_str(f, "task", &task) || strcmp(task, R->spec->task)))
    rc = tk_error(TK_EINVAL, "%s: a checkpoint of task '%s', this run is on '%s'", path, task ? task : "?",
                  R->spec->task);
  /* the counters, each against the options and the others. One iteration adds nw x ranks env steps
   * (PPO: its rollout), and a run stops at the first iteration end at or past --steps. */
  const int64_t iter = (int64_t)(R->ppo ? R->pN : R->nw) * rl_mpi_size();
  const int64_t max_env = o->steps + iter;
  if (!rc) rc = ck_attr_i64(f, "env_steps", &res->env_steps, path);
  if (!rc)
    rc = ck_int(path, "env_steps", res->env_steps, 0, max_env, "this run's --steps plus one iteration");
  /* SAC: utd x workers updates per iteration of workers x ranks env steps; PPO: up to ppo_epochs passes of
   * minibatches over each rollout */
  const int64_t per_step = R->ppo ? o->ppo_epochs : o->utd;
  if (!rc) rc = ck_attr_i64(f, "updates", &upd, path);
  if (!rc) rc = ck_int(path, "updates", upd, 0, res->env_steps * per_step, "at most env_steps x --utd");
  if (!rc) rc = ck_attr_i64(f, "next_eval", next_eval, path);
  if (!rc)
    rc = ck_int(path, "next_eval", *next_eval, 1, res->env_steps + o->eval_every,
                "the next evaluation: at most env_steps plus --eval-every");
  if (!rc) rc = ck_attr_i64(f, "best_step", &res->best_step, path);
  if (!rc) rc = ck_int(path, "best_step", res->best_step, -1, res->env_steps, "-1 or an evaluated env step");
  if (!rc) rc = ck_attr_i64(f, "steps_to_target", &res->steps_to_target, path);
  if (!rc)
    rc = ck_int(path, "steps_to_target", res->steps_to_target, -1, res->env_steps,
                "-1 or an evaluated env step");
  if (!rc) rc = ck_attr_f64(f, "best_success", &res->best_success, path);
  if (!rc && res->best_success != -1)
    rc = ck_real(path, "best_success", res->best_success, 0, 1, "-1 or a success rate");
  if (!rc) rc = ck_attr_f64(f, "initial_success", &res->initial_success, path);
  if (!rc) rc = ck_real(path, "initial_success", res->initial_success, 0, 1, "a success rate");
  if (!rc) rc = ck_attr_f64(f, "log_alpha", &R->log_alpha, path);
  if (!rc) rc = ck_real(path, "log_alpha", R->log_alpha, -700, 700, "the log of a finite temperature");
  if (!rc) rc = ck_attr_f64(f, "alpha_m", &R->alpha_m, path);
  if (!rc) rc = ck_real(path, "alpha_m", R->alpha_m, -1e30, 1e30, "a finite moment");
  if (!rc) rc = ck_attr_f64(f, "alpha_v", &R->alpha_v, path);
  if (!rc) rc = ck_real(path, "alpha_v", R->alpha_v, 0, 1e30, "a finite second moment");
  if (!rc) rc = ck_attr_i64(f, "alpha_t", &R->alpha_t, path);
  if (!rc) rc = ck_int(path, "alpha_t", R->alpha_t, 0, upd, "temperature steps: at most the updates");
  if (!rc) rc = ck_attr_i64(f, "workers", &workers, path);
  if (!rc) rc = ck_int(path, "workers", workers, 1, RL_MAX_WORKERS, "workers of the run that wrote it");
  if (!rc && H5Aexists(f, "actor_lr") > 0) { /* PPO adapts it within [lr/100, 10 lr] of this run's lr */
    double lr0 = R->aopt.lr, lr = 0;
    rc = ck_attr_f64(f, "actor_lr", &lr, path);
    if (!rc)
      rc = ck_real(path, "actor_lr", lr, lr0 / 100 * (1 - 1e-9), lr0 * 10 * (1 + 1e-9),
                   "within [lr/100, 10 lr] of this run's actor lr");
    if (!rc) R->aopt.lr = lr;
  }
  H5Eclear2(H5E_DEFAULT);
  R->updates = res->updates = upd;
  /* networks: the actor and critics take at most one Adam step per update (PPO's value function up to
   * 4 ppo_epochs passes per rollout, the critics the warm-up besides); targets are never stepped */
  const int64_t max_t = upd + o->critic_warmup + (R->ppo ? 4 * (int64_t)o->ppo_epochs * res->env_steps : 0);
  if (!rc) rc = get_net(f, "actor", R->actor->net, max_t, path);
  for (int e = 0; !rc && e < o->ensemble; e++) {
    snprintf(name, sizeof name, "critic%d", e);
    rc = get_net(f, name, R->q[e], max_t, path);
    snprintf(name, sizeof name, "target%d", e);
    if (!rc) rc = get_net(f, name, R->qt[e], max_t, path);
  }
  snprintf(name, sizeof name, "critic%d", o->ensemble);
  if (!rc && H5Lexists(f, name, H5P_DEFAULT) > 0)
    rc = tk_error(TK_EINVAL, "%s: written with a larger --ensemble than %d", path, o->ensemble);
  H5Eclear2(H5E_DEFAULT);
  /* RNG streams (workers beyond the saved ones keep their fresh streams); an all-zero xoshiro state
   * draws zeros for ever (and tk_rng_below never returns) */
  uint8_t rng[(1 + RL_MAX_WORKERS) * sizeof(tkRng)];
  if (!rc) {
    int64_t np = ck_npoints(f, "", "rng", path);
    if (np < 0) rc = TK_EFORMAT;
    if (!rc)
      rc = ck_int(path, "rng", np, (1 + workers) * (int64_t)sizeof(tkRng),
                  (1 + workers) * (int64_t)sizeof(tkRng), "bytes: one state per worker and the learner's");
    if (!rc) rc = ds_h5_read_exact(f, "rng", DS_U8, 1, &np, rng, path, "this run");
    for (int64_t i = 0; !rc && i <= workers; i++) {
      tkRng z;
      memcpy(&z, rng + i * (int64_t)sizeof(tkRng), sizeof z);
      if (!(z.s[0] | z.s[1] | z.s[2] | z.s[3]))
        rc = tk_error(TK_EFORMAT, "%s: checkpoint field 'rng' holds an all-zero state (stream %lld)", path,
                      (long long)i);
    }
  }
  if (!rc) {
    memcpy(&R->rng, rng, sizeof(tkRng));
    for (int i = 0; i < R->nw && i < workers; i++)
      memcpy(&R->wk[i].rng, rng + (1 + i) * sizeof(tkRng), sizeof(tkRng));
  }
  /* evaluation history: [n, 2] rows (env step, success rate), steps in order up to env_steps */
  if (!rc && H5Lexists(f, "evals", H5P_DEFAULT) > 0) {
    double ev[2 * 512];
    int64_t np = ck_npoints(f, "", "evals", path);
    if (np < 0) rc = TK_EFORMAT;
    if (!rc && (np % 2 || np > 2 * 512))
      rc = tk_error(TK_EFORMAT,
                    "%s: checkpoint field 'evals' has %lld values, not 2 per evaluation (at most 512)", path,
                    (long long)np);
    int64_t shape[2] = {np / 2, 2};
    if (!rc) rc = ds_h5_read_exact(f, "evals", DS_F64, 2, shape, ev, path, "this run");
    for (int i = 0; !rc && i < np / 2; i++) {
      double st = ev[2 * i], lo = i ? ev[2 * i - 2] : 0;
      if (!(st >= lo && st <= (double)res->env_steps && st == floor(st)))
        rc = tk_error(TK_EFORMAT, "%s: checkpoint field 'evals' row %d: env step %g is not in %g..%lld", path,
                      i, st, lo, (long long)res->env_steps);
      else if (!(ev[2 * i + 1] >= 0 && ev[2 * i + 1] <= 1))
        rc = tk_error(TK_EFORMAT, "%s: checkpoint field 'evals' row %d: success rate %g is not in [0, 1]",
                      path, i, ev[2 * i + 1]);
      else {
        res->eval_step[i] = (int64_t)st;
        res->eval_success[i] = ev[2 * i + 1];
      }
    }
    if (!rc) res->n_evals = (int)(np / 2);
  }
  H5Eclear2(H5E_DEFAULT);
  /* the online buffer: n transitions, n within the buffer and the env steps, every array n long */
  hid_t g = rc ? -1 : H5Gopen2(f, "online", H5P_DEFAULT);
  if (!rc && g < 0) rc = ds_h5_fail(TK_EFORMAT, "%s: online is missing", path);
  if (g >= 0) {
    rlBuf *b = &R->online;
    int64_t n = ck_npoints(g, "online/", "r", path);
    if (n < 0) rc = TK_EFORMAT;
    if (!rc)
      rc = ck_int(path, "online/r", n, 0, TK_MIN(b->cap, R->ppo ? 0 : res->env_steps),
                  "transitions: at most this run's replay buffer and the env steps");
    if (!rc) rc = get_f32(g, "online/", "s", b->s, n * b->D, path);
    if (!rc) rc = get_f32(g, "online/", "s2", b->s2, n * b->D, path);
    if (!rc) rc = get_f32(g, "online/", "a", b->a, n * b->A, path);
    if (!rc) rc = get_f32(g, "online/", "r", b->r, n, path);
    if (!rc) {
      int64_t nd = ck_npoints(g, "online/", "d", path);
      if (nd < 0) rc = TK_EFORMAT;
      if (!rc) rc = ck_int(path, "online/d", nd, n, n, "values: one per transition");
      if (!rc) rc = ds_h5_read_exact(g, "d", DS_U8, 1, &n, b->d, path, "this run");
    }
    if (!rc) b->n = n;
    H5Gclose(g);
  }
  H5Eclear2(H5E_DEFAULT);
  H5Fclose(f);
  free(fmt);
  free(task);
  return rc;
}

/* ---- the run -------------------------------------------------------------------------------------- */
static int evaluate(rlRun *R, rlResult *res, int64_t step, FILE *csv, double t0) {
  const rlOpts *o = R->o;
  bcEvalOpts eo;
  bc_eval_default(&eo);
  eo.episodes = o->eval_episodes;
  eo.seed = BC_SELECT_SEED_BASE;
  eo.workers = R->nw;
  eo.quiet = 1;
  bcEvalResult er;
  int rc = bc_evaluate(R->actor, R->model, &eo, &er);
  if (rc) return rc;
  double s = er.success_rate;
  if (res->n_evals < (int)TK_ARRAY_LEN(res->eval_step)) {
    res->eval_step[res->n_evals] = step;
    res->eval_success[res->n_evals++] = s;
  }
  if (step == 0) res->initial_success = s;
  if (csv) {
    fprintf(csv, "%s,%lld,%.4f,%.4f,%lld,%.1f,%.4g\n", o->label, (long long)step, s, er.mean_return,
            (long long)res->updates, tk_now_s() - t0, exp(R->log_alpha));
    fflush(csv);
  }
  bc_eval_result_free(&er); /* before any return below */
  if (s > res->best_success || res->best_step < 0) {
    res->best_success = s;
    res->best_step = step;
    /* cJSON escapes the path and label (a '"' or '\\' in them made the hand-built JSON invalid, and the
     * unchecked bc_policy_set_info left info "{}") */
    cJSON *j = cJSON_CreateObject();
    char *info = NULL;
    if (j && cJSON_AddStringToObject(j, "trainer", "rl-finetune") &&
        cJSON_AddStringToObject(j, "algo", o->algo) && cJSON_AddStringToObject(j, "run", o->label) &&
        cJSON_AddNumberToObject(j, "env_steps", (double)step) &&
        cJSON_AddNumberToObject(j, "selection_success", s) &&
        (o->policy ? cJSON_AddStringToObject(j, "from_policy", o->policy) != NULL
                   : cJSON_AddNullToObject(j, "from_policy") != NULL) &&
        cJSON_AddNumberToObject(j, "seed", (double)o->seed))
      info = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    rc = info ? bc_policy_set_info(R->actor, info) : tk_error(TK_ENOMEM, "out of memory (policy info)");
    free(info);
    if (rc) return rc;
    if (o->out && (rc = bc_policy_save(R->actor, o->out))) return rc;
  }
  if (s >= o->target && res->steps_to_target < 0) res->steps_to_target = step;
  if (!o->quiet && R->ppo)
    printf("%s: %lld env steps: success %.0f%% (%d evaluation seeds), actor lr %.3g\n", o->label,
           (long long)step, 100 * s, o->eval_episodes, R->aopt.lr);
  else if (!o->quiet)
    printf("%s: %lld env steps: success %.0f%% (%d evaluation seeds), alpha %.3g\n", o->label,
           (long long)step, 100 * s, o->eval_episodes, exp(R->log_alpha));
  return 0;
}

/* Rank 0 evaluates (and saves); every rank learns the outcome, and the parameters are checked for
 * drift between ranks. */
static int evaluate_all(rlRun *R, rlResult *res, int64_t step, FILE *csv, double t0) {
  int rc = rl_mpi_rank() == 0 ? evaluate(R, res, step, csv, t0) : 0;
  if (rl_mpi_size() < 2) return rc;
  if (rl_mpi_any(rc)) return rc ? rc : tk_error(TK_EIO, "rank 0's evaluation failed");
  double b[4] = {(double)res->steps_to_target, res->best_success, (double)res->best_step,
                 res->initial_success};
  rl_mpi_bcast_d(b, 4);
  res->steps_to_target = (int64_t)b[0];
  res->best_success = b[1];
  res->best_step = (int64_t)b[2];
  res->initial_success = b[3];
  if (!rl_mpi_same(R->actor->net->params, R->actor->net->n_params))
    return tk_error(TK_EINVAL, "the actor's parameters drifted apart between MPI ranks at %lld env steps",
                    (long long)step);
  return 0;
}

static void run_free(rlRun *R) {
  if (R->threads_started) {
    R->quit = 1;
    pthread_barrier_wait(&R->go);
    for (int i = 1; i < R->nw; i++)
      pthread_join(R->th[i], NULL);
    pthread_barrier_destroy(&R->go);
    pthread_barrier_destroy(&R->done);
  }
  for (int i = 0; i < R->nw; i++) {
    rlWorker *w = &R->wk[i];
    cap_env_free(w->env);
    nn_work_free(w->w);
    free(w->s);
  }
  for (int e = 0; e < RL_MAX_ENSEMBLE; e++) {
    nn_net_free(R->q[e]);
    nn_net_free(R->qt[e]);
  }
  if (R->lstarted) {
    R->lquit = 1;
    pthread_barrier_wait(&R->lgo);
    for (int k = 1; k < R->T; k++)
      pthread_join(R->lth[k], NULL);
    pthread_barrier_destroy(&R->lgo);
    pthread_barrier_destroy(&R->ldone);
  }
  for (int k = 0; k < RL_MAX_ENSEMBLE; k++) {
    nn_work_free(R->lw[k]);
    free(R->ldx[k]);
    free(R->ldact[k]);
  }
  nn_work_free(R->aw);
  bc_policy_free(R->actor);
  bc_policy_free(R->bc);
  nn_work_free(R->bw);
  free(R->qa_act);
  buf_free(&R->demo);
  buf_free(&R->online);
  rl_ppo_free(R);
  float *bufs[] = {R->bs,  R->ba,   R->br,   R->bs2,   R->x,    R->y,  R->eps,
                   R->act, R->logp, R->dact, R->dlogp, R->dout, R->qa, R->qb};
  for (size_t i = 0; i < TK_ARRAY_LEN(bufs); i++)
    free(bufs[i]);
  free(R->bd);
  cap_model_free(R->model);
}

/* A non-finite loss or parameter stops the run, naming where (the best policy so far is on disk). */
static int diverged(rlRun *R, rlResult *res, int rc) {
  const rlOpts *o = R->o;
  res->diverged = 1;
  return tk_error_wrap(
      rc, "%s: training diverged at %lld env steps, %lld updates; %s keeps the best policy so far", o->label,
      (long long)res->env_steps, (long long)res->updates, o->out ? o->out : "-");
}

/* SAC: every worker takes one step, then utd updates per env step. */
static int sac_iteration(rlRun *R, rlResult *res, int horizon) {
  const rlOpts *o = R->o;
  R->random_actions = !o->policy && res->env_steps < o->random_steps;
  int rc = step_all(R, horizon);
  if (rl_mpi_any(rc))
    return rc ? rc : tk_error(TK_EIO, "another rank failed while stepping its environments");
  res->env_steps += (int64_t)R->nw * rl_mpi_size();
  if (R->online.n < R->B / 2 && R->demo.n == 0) return 0;
  for (int u = 0; u < o->utd * R->nw && !rc; u++) {
    sample(R);
    rc = update_critics(R);
    if (!rc && (!o->policy || res->env_steps > o->actor_delay)) rc = update_actor(R);
    res->updates = ++R->updates;
  }
  return rc ? diverged(R, res, rc) : 0;
}

/* PPO: a rollout of pT steps on every worker and rank, then the value and actor epochs. */
static int ppo_iteration(rlRun *R, rlResult *res, int horizon) {
  const rlOpts *o = R->o;
  const int nranks = rl_mpi_size();
  int rc = 0;
  for (R->pt = 0; R->pt < R->pT; R->pt++) {
    rc = step_all(R, horizon);
    if (rl_mpi_any(rc))
      return rc ? rc : tk_error(TK_EIO, "another rank failed while stepping its environments");
    res->env_steps += (int64_t)R->nw * nranks;
  }
  int64_t iter = res->env_steps / ((int64_t)R->pN * nranks); /* iterations done, this one included */
  double kl;
  int epochs;
  rc = rl_ppo_update(R, iter > o->value_warmup_iters, &kl, &epochs);
  res->updates = R->updates;
  if (rc) return diverged(R, res, rc);
  if (epochs) tk_debug("%s: iteration %lld: %d actor epochs, KL %.4f", o->label, (long long)iter, epochs, kl);
  return 0;
}

int rl_run(const rlOpts *o, rlResult *res) {
  memset(res, 0, sizeof *res);
  res->steps_to_target = -1;
  res->best_step = -1;
  res->best_success = -1;
  if (o->ensemble < 1 || o->ensemble > RL_MAX_ENSEMBLE)
    return tk_error(TK_ERANGE, "--ensemble %d: 1..%d", o->ensemble, RL_MAX_ENSEMBLE);
  if (o->workers < 1 || o->workers > RL_MAX_WORKERS)
    return tk_error(TK_ERANGE, "--workers %d: 1..%d", o->workers, RL_MAX_WORKERS);
  /* MPI ranks: rank 0 alone evaluates and writes (policy, metrics, checkpoints) and prints */
  const int rank = rl_mpi_rank(), nranks = rl_mpi_size();
  if (!o->algo || (strcmp(o->algo, "sac") && strcmp(o->algo, "ppo")))
    return tk_error(TK_EINVAL, "--algo %s: sac or ppo", o->algo ? o->algo : "(none)");
  rlOpts oc = *o;
  if (!strcmp(o->algo, "ppo")) oc.ensemble = 1; /* the value function */
  if (rank > 0) {
    oc.out = NULL;
    oc.metrics = NULL;
    oc.checkpoint = NULL;
    oc.quiet = 1;
  }
  o = &oc;
  rlRun *R = calloc(1, sizeof *R);
  if (!R) return tk_error(TK_ENOMEM, "out of memory");
  R->o = o;
  R->ppo = !strcmp(o->algo, "ppo");
  bcPolicy *bc = NULL, *stats = NULL;
  int rc = 0;
  if (o->policy && !(bc = bc_policy_load(o->policy))) rc = tk_error_wrap(TK_EFORMAT, "--policy");
  const char *task = o->task ? o->task : bc ? bc->task : NULL;
  if (!rc && (!task || !task[0])) rc = tk_error(TK_EINVAL, "no task: pass --task (%s)", cap_task_names());
  capOpts co;
  cap_opts_default(&co);
  co.task = task;
  if (!rc) rc = cap_model_load(&co, &R->model);
  if (!rc) R->spec = cap_spec(R->model);
  if (!rc && !bc) { /* from scratch: robomimic's low-dim keys of the task, identity statistics */
    const char *want[] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
    const char *keys[4];
    int dims[4], n = 0, D = 0;
    for (int i = 0; i < 4; i++)
      for (int k = 0; k < R->spec->nobs; k++)
        if (!strcmp(R->spec->obs[k].name, want[i])) {
          keys[n] = want[i];
          dims[n++] = R->spec->obs[k].shape[0];
          D += R->spec->obs[k].shape[0];
        }
    nnArch a;
    nn_arch_default(&a);
    a.obs_dim = D;
    a.act_dim = R->spec->action_dim;
    if (!(stats = bc_policy_make(&a, n, keys, dims, 0))) rc = tk_error_wrap(TK_EINVAL, "scratch actor");
  }
  if (!rc && !(R->actor = make_actor(o, bc, R->spec, stats))) rc = tk_error_wrap(TK_EINVAL, "actor");
  if (!rc && (rc = bc_bind(R->actor, R->model, &R->bind)))
    rc = tk_error_wrap(rc, "%s", o->policy ? o->policy : "actor");
  bc_policy_free(bc);
  bc_policy_free(stats);
  if (rc) goto fail;
  /* the anchor is frozen: its clone is made to act (parameters only) */
  if (o->policy && (!(R->bc = bc_policy_clone(R->actor)) || !(R->bw = nn_work_make(R->bc->net, o->batch)))) {
    rc = tk_error_wrap(TK_ENOMEM, "anchor policy");
    goto fail;
  }
  R->qa_act = falloc((size_t)o->batch * (size_t)R->actor->act_dim);
  R->D = R->actor->obs_dim;
  R->A = R->actor->act_dim;
  R->B = R->ppo ? o->minibatch : o->batch;
  R->nw = o->workers;
  tk_rng_seed(&R->rng, o->seed * 0x9E3779B97F4A7C15ull + 17 + (uint64_t)rank * 0x5851F42D4C957F2Dull);
  R->log_alpha = log(o->init_alpha);
  R->target_entropy = -R->A;
  nn_adam_default(&R->qopt);
  R->qopt.lr = o->critic_lr;
  nn_adam_default(&R->aopt);
  R->aopt.lr = o->actor_lr > 0 ? o->actor_lr : o->policy ? (R->ppo ? 1e-5 : 1e-4) : 3e-4;
  R->aopt.eps = o->actor_eps;
  if (R->ppo) R->aopt.clip_norm = 0.5; /* PPO's usual max gradient norm */
  nnArch ca;
  if ((rc = critic_arch(R, &ca))) goto fail;
  for (int e = 0; e < o->ensemble; e++) {
    if (!(R->q[e] = nn_net_make(&ca, o->seed * 131 + (uint64_t)e + 1)) || !(R->qt[e] = nn_net_make(&ca, 0))) {
      rc = tk_error_wrap(TK_ENOMEM, "critics");
      goto fail;
    }
    rl_mpi_bcast_f(R->q[e]->params, R->q[e]->n_params); /* every rank starts from rank 0's networks */
    nn_copy_params(R->qt[e], R->q[e]);
  }
  rl_mpi_bcast_f(R->actor->net->params, R->actor->net->n_params);
  int B = R->B, D = R->D, A = R->A;
  /* the learner's threads: as many as there are workers (cores), at most one per critic */
  R->T = R->ppo ? 1 : TK_MAX(1, TK_MIN(R->nw, o->ensemble));
  for (int k = 0; k < R->T; k++) {
    R->lw[k] = nn_work_make(R->q[0], B);
    R->ldx[k] = falloc((size_t)B * (D + A));
    R->ldact[k] = falloc((size_t)B * A);
    if (!R->lw[k] || !R->ldx[k] || !R->ldact[k]) {
      rc = tk_error(TK_ENOMEM, "out of memory");
      goto fail;
    }
  }
  if (R->T > 1) {
    pthread_barrier_init(&R->lgo, NULL, (unsigned)R->T);
    pthread_barrier_init(&R->ldone, NULL, (unsigned)R->T);
    for (int k = 1; k < R->T; k++) {
      R->larg[k].run = R;
      R->larg[k].id = k;
      pthread_create(&R->lth[k], NULL, team_main, &R->larg[k]);
    }
    R->lstarted = 1;
  }
  R->aw = nn_work_make(R->actor->net, R->ppo ? 2 * B : B);
  R->bs = falloc((size_t)B * D);
  R->bs2 = falloc((size_t)B * D);
  R->ba = falloc((size_t)B * A);
  R->br = falloc((size_t)B);
  R->bd = malloc((size_t)B);
  R->x = falloc((size_t)B * (D + A));
  R->y = falloc((size_t)B);
  R->eps = falloc((size_t)B * A);
  R->act = falloc((size_t)B * A);
  R->dact = falloc((size_t)B * A);
  R->logp = falloc((size_t)B);
  R->dlogp = falloc((size_t)B);
  R->dout = falloc((size_t)B);
  R->qa = falloc((size_t)B);
  R->qb = falloc((size_t)B);
  if (!R->aw || !R->bs || !R->bs2 || !R->ba || !R->br || !R->bd || !R->x || !R->y || !R->eps || !R->act ||
      !R->dact || !R->logp || !R->dlogp || !R->dout || !R->qa || !R->qb) {
    rc = tk_error(TK_ENOMEM, "out of memory");
    goto fail;
  }
  if (o->demos && (rc = load_demos(R))) goto fail;
  if ((rc = buf_make(&R->online, R->ppo ? 1 : o->steps + R->nw, D, A))) goto fail;
  if (R->ppo && (rc = rl_ppo_alloc(R))) goto fail;
  nn_set_threads(1);
  /* workers */
  for (int i = 0; i < R->nw; i++) {
    rlWorker *w = &R->wk[i];
    w->run = R;
    w->id = i;
    tk_rng_fork(&R->rng, 1000 + (uint64_t)i, &w->rng);
    w->seed_base =
        3000000000ull + (uint64_t)i * 10000000ull + o->seed * 100000ull + (uint64_t)rank * 100000000000ull;
    w->s = falloc((size_t)(3 * D + A));
    if (!w->s) {
      rc = tk_error(TK_ENOMEM, "out of memory");
      goto fail;
    }
    w->s2 = w->s + D;
    w->raw = w->s2 + D;
    w->a = w->raw + D;
    if ((rc = cap_env_make(R->model, &w->env)) || !(w->w = nn_work_make(R->actor->net, 1)) ||
        (rc = worker_reset(w))) {
      if (!rc) rc = tk_error_wrap(TK_ENOMEM, "worker");
      goto fail;
    }
  }
  if (R->nw > 1) {
    pthread_barrier_init(&R->go, NULL, (unsigned)R->nw);
    pthread_barrier_init(&R->done, NULL, (unsigned)R->nw);
    for (int i = 1; i < R->nw; i++)
      pthread_create(&R->th[i], NULL, worker_main, &R->wk[i]);
    R->threads_started = 1;
  }
  FILE *csv = NULL;
  if (o->metrics) {
    int exists = tk_file_exists(o->metrics);
    csv = fopen(o->metrics, "a");
    if (!csv) {
      rc = tk_error(TK_EIO, "%s: cannot write the metrics file", o->metrics);
      goto fail;
    }
    if (!exists) fprintf(csv, "run,env_steps,success_rate,mean_return,updates,seconds,alpha\n");
  }
  double t0 = tk_now_s();
  int64_t next_eval = o->eval_every;
  int resumed = 0;
  if (o->resume) {
    rc = ckpt_load(R, res, &next_eval, o->resume);
    if (rl_mpi_any(rc)) {
      if (!rc) rc = tk_error(TK_EIO, "another rank could not load %s", o->resume);
      goto fail_csv;
    }
    if (rank > 0) { /* the checkpoint holds rank 0's streams: the others go their own way from there */
      tkRng base = R->rng;
      tk_rng_fork(&base, 7000 + (uint64_t)rank, &R->rng);
      for (int i = 0; i < R->nw; i++)
        tk_rng_fork(&base, 8000 + (uint64_t)rank * 100 + (uint64_t)i, &R->wk[i].rng);
    }
    resumed = 1;
    if (!o->quiet)
      printf("%s: resumed from %s at %lld env steps, %lld updates (best %.0f%% at %lld)\n", o->label,
             o->resume, (long long)res->env_steps, (long long)res->updates, 100 * res->best_success,
             (long long)res->best_step);
  }
  /* critic warm-up on the demos, with the actor fixed (PPO warms its value function up on rollouts) */
  if (!resumed && !R->ppo && R->demo.n > 0 && o->critic_warmup > 0) {
    if (!o->quiet)
      printf("%s: warming the critics up on %lld demo transitions (%d updates)\n", o->label,
             (long long)R->demo.n, o->critic_warmup);
    for (int u = 0; u < o->critic_warmup && !rc; u++) {
      sample(R);
      rc = update_critics(R);
    }
    if (rc) goto fail_csv;
  }
  if (!resumed && (rc = evaluate_all(R, res, 0, csv, t0))) goto fail_csv;
  int horizon = R->spec->horizon;
  tkProgress prog = {0};
  if (!o->quiet) tk_progress_begin(&prog, o->label, o->steps);
  double t_loop = tk_now_s();
  int64_t steps0 = res->env_steps, updates0 = res->updates;
  while (res->env_steps < o->steps) {
    if (rl_mpi_any(o->interrupt && *o->interrupt)) break; /* every rank stops at the same step */
    if (o->stop_at_target && res->steps_to_target >= 0) break;
    rc = R->ppo ? ppo_iteration(R, res, horizon) : sac_iteration(R, res, horizon);
    if (rc) break;
    if (res->env_steps >= next_eval) {
      next_eval += o->eval_every;
      if ((rc = evaluate_all(R, res, res->env_steps, csv, t0))) break;
      if (o->checkpoint && (rc = ckpt_save(R, res, next_eval, o->checkpoint))) break;
    }
    if (!o->quiet) {
      double el = tk_now_s() - t_loop;
      tk_progress_update(&prog, res->env_steps, "%.0f env steps/s, %.0f updates/s, best %.0f%%",
                         el > 0 ? (res->env_steps - steps0) / el : 0,
                         el > 0 ? (res->updates - updates0) / el : 0, 100 * res->best_success);
    }
  }
  if (!o->quiet) tk_progress_end(&prog);
  if (!rc && nranks > 1) {
    int same = rl_mpi_same(R->actor->net->params, R->actor->net->n_params);
    for (int e = 0; e < o->ensemble; e++)
      same &= rl_mpi_same(R->q[e]->params, R->q[e]->n_params);
    if (!same)
      rc = tk_error(TK_EINVAL, "%s: the ranks' parameters differ at the end", o->label);
    else if (rank == 0)
      printf("%s: %d MPI ranks; actor and critic parameters identical on every rank\n", o->label, nranks);
  }
  if (!rc && o->checkpoint && (rc = ckpt_save(R, res, next_eval, o->checkpoint))) goto fail_csv;
  if (!rc && o->checkpoint && !o->quiet) printf("%s: checkpoint %s\n", o->label, o->checkpoint);
  double el = tk_now_s() - t_loop;
  res->env_steps_per_s = el > 0 ? (res->env_steps - steps0) / el : 0;
  res->updates_per_s = el > 0 ? (res->updates - updates0) / el : 0;
  res->seconds = tk_now_s() - t0;
fail_csv:
  if (csv) fclose(csv);
fail:
  run_free(R);
  free(R);
  return rc;
}
