/* rl_finetune/rl_sac.c -- SAC from a BC policy and its demos (RLPD-style): the replay buffers, the actor made
 * from the BC policy, the critic ensemble with its target networks, the temperature, and one update
 * (a batch half of demos, the critics' TD step on the threaded learner team, the actor's step with its
 * decaying anchor, the temperature's step). The run around it (workers, evaluations, checkpoints) is
 * rl_run.c's. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rl_internal.h"
#include "rl_mpi.h"

/* ---- replay buffers ------------------------------------------------------------------------------ */

int rl_buf_make(rlBuf *b, int64_t cap, int D, int A) {
  memset(b, 0, sizeof *b);
  b->cap = cap;
  b->D = D;
  b->A = A;
  b->s = malloc(sizeof(float) * (size_t)(cap * D));
  b->s2 = malloc(sizeof(float) * (size_t)(cap * D));
  b->a = malloc(sizeof(float) * (size_t)(cap * A));
  b->r = malloc(sizeof(float) * (size_t)cap);
  b->d = malloc((size_t)cap);
  b->good = calloc((size_t)cap, 1);
  if (!b->s || !b->s2 || !b->a || !b->r || !b->d || !b->good)
    return tk_error(TK_ENOMEM, "out of memory (replay buffer of %lld)", (long long)cap);
  return 0;
}

void rl_buf_free(rlBuf *b) {
  free(b->s);
  free(b->s2);
  free(b->a);
  free(b->r);
  free(b->d);
  free(b->good);
}

void rl_buf_push(rlBuf *b, const float *s, const float *a, float r, const float *s2, int d, int good) {
  int64_t i = b->n < b->cap ? b->n++ : (int64_t)(b->n % b->cap); /* full: overwrite (never at our sizes) */
  memcpy(b->s + i * b->D, s, sizeof(float) * (size_t)b->D);
  memcpy(b->s2 + i * b->D, s2, sizeof(float) * (size_t)b->D);
  memcpy(b->a + i * b->A, a, sizeof(float) * (size_t)b->A);
  b->r[i] = r;
  b->d[i] = (uint8_t)d;
  b->good[i] = (uint8_t)good;
}

/* ---- the actor: the BC policy's layers under a tanh-Gaussian head, and the critics' shape -------- */

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

int rl_actor_can_start(const rlOpts *o, const bcPolicy *bc) {
  const nnArch *a = &bc->arch;
  const char *why = bc->nimg > 0             ? "a policy with cameras"
                    : bc->dif.horizon > 0    ? "a diffusion policy (a denoiser)"
                    : bc->chunk > 1          ? "a chunked policy"
                    : a->rnn_layers > 0      ? "a recurrent (BC-RNN) policy, which acts with memory,"
                    : a->head == NN_HEAD_GMM ? "a GMM policy"
                    : a->head == NN_HEAD_MSE && !a->tanh ? "an MSE policy without tanh"
                                                         : NULL;
  if (!why) return 1;
  tk_error(TK_EINVAL,
           "%s: %s cannot start the tanh-Gaussian actor of --scheme finetune; use --scheme residual",
           o->policy, why);
  return 0;
}

/* The actor: a tanh-Gaussian policy with the BC policy's layers (or fresh ones). */
bcPolicy *rl_actor_make(const rlOpts *o, const bcPolicy *bc, const capSpec *spec, const bcPolicy *stats) {
  nnArch a;
  const int ppo = !strcmp(o->algo, "ppo");
  if (bc) {
    a = bc->arch;
    if (!rl_actor_can_start(o, bc)) return NULL;
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

bcPolicy *rl_residual_make(const rlOpts *o, bcPolicy *base, int nkeys, const char *const *keys,
                           const int *dims, const float *mean, const float *std) {
  const int A = base->act_dim;
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = A;
  for (int i = 0; i < nkeys; i++)
    a.obs_dim += dims[i];
  a.act_dim = A;
  a.n_hidden = 2;
  a.hidden[0] = a.hidden[1] = o->hidden;
  a.head = NN_HEAD_GAUSSIAN;
  bcPolicy *p = bc_policy_make_residual(&a, nkeys, keys, dims, base, o->residual_scale, o->seed ^ 0x7e51ull);
  if (!p) return NULL;
  memcpy(p->obs_mean, mean, sizeof(float) * (size_t)p->obs_dim);
  memcpy(p->obs_std, std, sizeof(float) * (size_t)p->obs_dim);
  snprintf(p->algo, sizeof p->algo, "%s", o->algo);
  /* the mean's rows start at zero (the base's action exactly); the std gives init_std in the action */
  nnLayer *dl = &p->net->layer[p->net->n_linear - 1];
  const int in = p->net->dims[p->net->n_linear - 1];
  memset(dl->w, 0, sizeof(float) * (size_t)A * (size_t)in);
  memset(dl->b, 0, sizeof(float) * (size_t)A);
  init_log_std(p->net, fmin(0.9, o->init_std / o->residual_scale));
  return p;
}

void rl_residual_rows(rlRun *R, const float *x, float *act, int B, int mask) {
  if (!R->res) return;
  const int A = R->A;
  for (int b = 0; b < B; b++)
    bc_residual_apply(R->o->residual_scale, x + (size_t)b * R->D + R->Ds, act + (size_t)b * A, A,
                      act + (size_t)b * A, mask ? R->rmask + (size_t)b * A : NULL);
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

/* ---- the update's steps: a batch, the critics on the learner team, the actor and temperature ---- */

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
    R->bgood[b] = src->good[i];
  }
}

static void concat(const rlRun *R, const float *s, const float *a, float *x) {
  for (int b = 0; b < R->B; b++) {
    memcpy(x + (size_t)b * (R->D + R->A), s + (size_t)b * R->D, sizeof(float) * (size_t)R->D);
    memcpy(x + (size_t)b * (R->D + R->A) + R->D, a + (size_t)b * R->A, sizeof(float) * (size_t)R->A);
  }
}

void rl_normals(tkRng *rng, float *v, int n) {
  for (int i = 0; i < n; i++)
    v[i] = (float)tk_rng_normal(rng);
}

enum { JOB_TARGET = 1, JOB_GRAD = 2, JOB_STEP = 4, JOB_ACTOR_Q = 3, JOB_QMEAN = 5 };

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
  } else if (R->ljob == JOB_QMEAN) { /* thread k's members' Q at R->x, summed over them / E, in ldact[k] */
    memset(R->ldact[k], 0, sizeof(float) * (size_t)B);
    for (int e = k; e < E && !rc; e += R->T)
      if (!(rc = nn_forward(R->q[e], w, R->x, B)))
        for (int b = 0; b < B; b++)
          R->ldact[k][b] += w->out[b] / (float)E;
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
  rl_normals(&R->rng, R->eps, B * R->A);
  int rc = nn_gauss_sample(R->actor->net, R->aw, R->bs2, B, R->eps, R->act, R->logp);
  if (rc) return rc;
  rl_residual_rows(R, R->bs2, R->act, B, 0);
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

/* The ensemble's mean Q at R->x into q [B] (the threads' shares summed in a fixed order). */
static int q_mean(rlRun *R, float *q) {
  int rc = team_run(R, JOB_QMEAN);
  if (rc) return rc;
  for (int b = 0; b < R->B; b++) {
    float s = 0;
    for (int k = 0; k < R->T; k++)
      s += R->ldact[k][b];
    q[b] = s;
  }
  return 0;
}

/* The decaying anchor's gradient added to R->dact (dLoss/da at the actions in R->act): demo rows toward
 * the demo's action, online rows toward what the BC policy does there, so the actor leaves BC only where
 * the critic is sure (rows of demos that failed are online rows here: bc-train skips them too). */
static int add_anchor(rlRun *R) {
  const int B = R->B, A = R->A;
  double w = R->o->bc_weight * pow(0.5, (double)R->updates / fmax(R->o->bc_halflife, 1));
  if (!(w > 1e-6) || !(R->bc || R->res)) return 0;
  /* the BC policy's action: the frozen clone's, or a residual's base action in the row */
  int rc;
  if (!R->res && (rc = nn_act(R->bc->net, R->bw, R->bs, B, R->qa_act))) return rc;
  for (int b = 0; b < B; b++) {
    const float *t = R->bgood[b] ? R->ba + (size_t)b * A
                     : R->res    ? R->bs + (size_t)b * R->D + R->Ds
                                 : R->qa_act + (size_t)b * A;
    for (int k = 0; k < A; k++)
      R->dact[b * A + k] += (float)(2 * w * (R->act[b * A + k] - t[k]) / (B * A));
  }
  return 0;
}

/* AWR: loss = mean_b w_b ||a_mean(s_b) - a_b||^2 / A + anchor, w_b = exp(min(z_b / temp, log 20)) with z
 * the batch's standardized advantages Q(s_b, a_b) - Q(s_b, a_mean(s_b)), normalized to mean 1. The
 * policy's mean action (noise zero) moves; its std does not. */
static int update_actor_awr(rlRun *R) {
  const int B = R->B, A = R->A;
  memset(R->eps, 0, sizeof(float) * (size_t)(B * A));
  int rc = nn_gauss_sample(R->actor->net, R->aw, R->bs, B, R->eps, R->act, R->logp);
  if (rc) return rc;
  rl_residual_rows(R, R->bs, R->act, B, 1);
  concat(R, R->bs, R->act, R->x);
  if ((rc = q_mean(R, R->qpi))) return rc;
  concat(R, R->bs, R->ba, R->x);
  if ((rc = q_mean(R, R->qdata))) return rc;
  double m = 0, v = 0;
  for (int b = 0; b < B; b++)
    m += (double)(R->qdata[b] - R->qpi[b]) / B;
  for (int b = 0; b < B; b++)
    v += pow(R->qdata[b] - R->qpi[b] - m, 2) / B;
  double sd = sqrt(v) + 1e-6, wsum = 0;
  for (int b = 0; b < B; b++) {
    double z = (R->qdata[b] - R->qpi[b] - m) / sd;
    R->qa[b] = (float)exp(fmin(z / R->o->awr_temp, log(20.0)));
    wsum += R->qa[b];
  }
  if (R->updates % 500 == 0)
    tk_debug("update %lld: awr advantage mean %.4g std %.4g", (long long)R->updates, m, sd);
  for (int b = 0; b < B; b++) {
    double wb = R->qa[b] * B / wsum;
    for (int k = 0; k < A; k++)
      R->dact[b * A + k] = (float)(2 * wb * (R->act[b * A + k] - R->ba[b * A + k]) / (B * A));
  }
  if ((rc = add_anchor(R))) return rc;
  if (R->res)
    for (int i = 0; i < B * A; i++)
      R->dact[i] *= R->rmask[i] ? (float)R->o->residual_scale : 0.0f;
  nn_zero_grad(R->actor->net);
  rc = nn_gauss_backward(R->actor->net, R->aw, R->dact, NULL);
  if (rl_mpi_any(rc)) return rc ? rc : tk_error(TK_ERANGE, "another rank's actor update failed");
  rl_mpi_mean_f(R->actor->net->grads, R->actor->net->n_params);
  double gn;
  if ((rc = nn_adam_step(R->actor->net, &R->aopt, &gn))) return tk_error_wrap(rc, "actor");
  return 0;
}

static int update_actor(rlRun *R) {
  if (R->awr) return update_actor_awr(R);
  const int B = R->B, E = R->o->ensemble, A = R->A;
  double alpha = exp(R->log_alpha);
  rl_normals(&R->rng, R->eps, B * A);
  int rc = nn_gauss_sample(R->actor->net, R->aw, R->bs, B, R->eps, R->act, R->logp);
  if (rc) return rc;
  rl_residual_rows(R, R->bs, R->act, B, 1);
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
  if (R->updates % 500 == 0)
    tk_debug("update %lld: mean |Q| %.4f, lambda %.3f", (long long)R->updates, qabs, lambda);
  for (int i = 0; i < B * A; i++)
    R->dact[i] = (float)(R->dact[i] * lambda);
  if ((rc = add_anchor(R))) return rc;
  if (R->res) /* the gradient through a = clip(a_base + scale d) */
    for (int i = 0; i < B * A; i++)
      R->dact[i] *= R->rmask[i] ? (float)R->o->residual_scale : 0.0f;
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

/* ---- the learner: its networks and buffers, sized once ------------------------------------------- */

/* The frozen anchor, the temperature, the optimizers, the critics and their targets (every rank starts
 * from rank 0's networks), the learner's threads and every batch buffer of an update. PPO learns with
 * the same actor, optimizers and actor buffers; its value function is critic 0. */
int rl_learner_make(rlRun *R) {
  const rlOpts *o = R->o;
  const int B = R->B, D = R->D, A = R->A;
  /* the anchor is frozen: its clone is made to act (parameters only) */
  if (o->policy && !R->res &&
      (!(R->bc = bc_policy_clone(R->actor)) || !(R->bw = nn_work_make(R->bc->net, o->batch))))
    return tk_error_wrap(TK_ENOMEM, "anchor policy");
  if (!(R->rmask = malloc((size_t)B * (size_t)A))) return tk_error(TK_ENOMEM, "out of memory");
  R->awr = !R->ppo && !strcmp(o->actor_update, "awr");
  if (!(R->qdata = rl_falloc((size_t)B)) || !(R->qpi = rl_falloc((size_t)B)))
    return tk_error(TK_ENOMEM, "out of memory");
  R->qa_act = rl_falloc((size_t)o->batch * (size_t)A);
  R->log_alpha = log(o->init_alpha);
  R->target_entropy = -A;
  nn_adam_default(&R->qopt);
  R->qopt.lr = o->critic_lr;
  nn_adam_default(&R->aopt);
  R->aopt.lr = o->actor_lr > 0 ? o->actor_lr : o->policy ? (R->ppo ? 1e-5 : 1e-4) : 3e-4;
  R->aopt.eps = o->actor_eps;
  if (R->ppo) R->aopt.clip_norm = 0.5; /* PPO's usual max gradient norm */
  nnArch ca;
  int rc = critic_arch(R, &ca);
  if (rc) return rc;
  for (int e = 0; e < o->ensemble; e++) {
    if (!(R->q[e] = nn_net_make(&ca, o->seed * 131 + (uint64_t)e + 1)) || !(R->qt[e] = nn_net_make(&ca, 0)))
      return tk_error_wrap(TK_ENOMEM, "critics");
    rl_mpi_bcast_f(R->q[e]->params, R->q[e]->n_params); /* every rank starts from rank 0's networks */
    nn_copy_params(R->qt[e], R->q[e]);
  }
  rl_mpi_bcast_f(R->actor->net->params, R->actor->net->n_params);
  /* the learner's threads: as many as there are workers (cores), at most one per critic */
  R->T = R->ppo ? 1 : TK_MAX(1, TK_MIN(R->nw, o->ensemble));
  for (int k = 0; k < R->T; k++) {
    R->lw[k] = nn_work_make(R->q[0], B);
    R->ldx[k] = rl_falloc((size_t)B * (D + A));
    R->ldact[k] = rl_falloc((size_t)B * A);
    if (!R->lw[k] || !R->ldx[k] || !R->ldact[k]) return tk_error(TK_ENOMEM, "out of memory");
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
  R->bs = rl_falloc((size_t)B * D);
  R->bs2 = rl_falloc((size_t)B * D);
  R->ba = rl_falloc((size_t)B * A);
  R->br = rl_falloc((size_t)B);
  R->bd = malloc((size_t)B);
  R->bgood = malloc((size_t)B);
  R->x = rl_falloc((size_t)B * (D + A));
  R->y = rl_falloc((size_t)B);
  R->eps = rl_falloc((size_t)B * A);
  R->act = rl_falloc((size_t)B * A);
  R->dact = rl_falloc((size_t)B * A);
  R->logp = rl_falloc((size_t)B);
  R->dlogp = rl_falloc((size_t)B);
  R->dout = rl_falloc((size_t)B);
  R->qa = rl_falloc((size_t)B);
  R->qb = rl_falloc((size_t)B);
  if (!R->qa_act || !R->aw || !R->bs || !R->bs2 || !R->ba || !R->br || !R->bd || !R->x || !R->y || !R->eps ||
      !R->act || !R->dact || !R->logp || !R->dlogp || !R->dout || !R->qa || !R->qb || !R->bgood)
    return tk_error(TK_ENOMEM, "out of memory");
  return 0;
}

/* What rl_learner_make made, half-built or whole (the learner's threads stopped first). */
void rl_learner_free(rlRun *R) {
  if (R->lstarted) {
    R->lquit = 1;
    pthread_barrier_wait(&R->lgo);
    for (int k = 1; k < R->T; k++)
      pthread_join(R->lth[k], NULL);
    pthread_barrier_destroy(&R->lgo);
    pthread_barrier_destroy(&R->ldone);
    R->lstarted = 0;
  }
  for (int e = 0; e < RL_MAX_ENSEMBLE; e++) {
    nn_net_free(R->q[e]);
    nn_net_free(R->qt[e]);
  }
  for (int k = 0; k < RL_MAX_ENSEMBLE; k++) {
    nn_work_free(R->lw[k]);
    free(R->ldx[k]);
    free(R->ldact[k]);
  }
  nn_work_free(R->aw);
  bc_policy_free(R->bc);
  nn_work_free(R->bw);
  free(R->qa_act);
  float *bufs[] = {R->bs,  R->ba,   R->br,   R->bs2,   R->x,    R->y,  R->eps,
                   R->act, R->logp, R->dact, R->dlogp, R->dout, R->qa, R->qb};
  for (size_t i = 0; i < TK_ARRAY_LEN(bufs); i++)
    free(bufs[i]);
  free(R->bd);
  free(R->bgood);
  free(R->rmask);
  free(R->qdata);
  free(R->qpi);
}

/* ---- one update ----------------------------------------------------------------------------------- */

/* Sample a batch, then the critics' step and (actor_on) the actor's and the temperature's. */
int rl_sac_update(rlRun *R, int actor_on) {
  sample(R);
  int rc = update_critics(R);
  if (!rc && actor_on) rc = update_actor(R);
  return rc;
}
