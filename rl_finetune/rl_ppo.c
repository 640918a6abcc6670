/* rl_finetune/rl_ppo.c -- PPO from a BC policy (the on-policy algorithm, for many cheap workers).
 *
 * The actor is the network SAC starts from (the BC layers under a Gaussian head; the std starts at
 * init_std and is clamped to max_std by the head's log-std range), but its policy here is a Gaussian
 * around the squashed mean, N(tanh(mu), std), sampled unsquashed and clipped only when acted (see
 * row_log_prob: the tanh-Gaussian's density is useless at saturated commands); the value function is a
 * LayerNorm MLP of the observation. Every iteration the workers run `rollout` steps with the current policy;
 * advantages are GAE(gamma, lambda) with the value bootstrapped at the horizon (a truncation, not a
 * terminal state), normalized over all ranks. The value is fitted first; the actor is not moved for
 * value_warmup_iters iterations (the critic warm-up that keeps a cold value function from unlearning
 * the BC policy), then takes the clipped surrogate with a DAPG-style demo term: minibatches carry as
 * many demo rows, pulling the policy's mean action toward the demo's (squared error, as the BC policy
 * was trained), weighted by bc_weight * 0.5^(updates/bc_halflife).
 * An iteration stops once the mean KL to the rollout policy passes 1.5 target_kl (agreed over ranks),
 * and the actor's learning rate adapts to the KL of each iteration. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rl_internal.h"
#include "rl_mpi.h"

static float *fa(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

int rl_ppo_alloc(rlRun *R) {
  const int D = R->D, A = R->A, B = R->B;
  R->pT = (R->o->rollout + R->nw - 1) / R->nw;
  R->pN = R->pT * R->nw;
  size_t N = (size_t)R->pN;
  R->ps = fa(N * D);
  R->ps2 = fa(N * D);
  R->pa = fa(N * A);
  R->plogp = fa(N);
  R->pr = fa(N);
  R->pv = fa(N);
  R->pv2 = fa(N);
  R->padv = fa(N);
  R->pret = fa(N);
  R->mb_s = fa((size_t)2 * B * D);
  R->mb_a = fa((size_t)2 * B * A);
  R->mb_y = fa((size_t)B);
  R->mb_lp = fa((size_t)2 * B);
  R->mb_dout = fa((size_t)2 * B * (size_t)nn_arch_out_dim(&R->actor->net->arch));
  R->pdone = malloc(N);
  R->pbound = malloc(N);
  R->perm = malloc(sizeof(int) * N);
  R->pgood = malloc(sizeof(int64_t) * (size_t)(R->demo.n + 1));
  R->npgood = 0;
  for (int64_t i = 0; R->pgood && i < R->demo.n; i++)
    if (R->demo.good[i]) R->pgood[R->npgood++] = i;
  if (!R->ps || !R->ps2 || !R->pa || !R->plogp || !R->pr || !R->pv || !R->pv2 || !R->padv || !R->pret ||
      !R->mb_s || !R->mb_a || !R->mb_y || !R->mb_lp || !R->mb_dout || !R->pdone || !R->pbound || !R->perm ||
      !R->pgood)
    return tk_error(TK_ENOMEM, "out of memory (PPO rollout of %d steps)", R->pN);
  return 0;
}

void rl_ppo_free(rlRun *R) {
  float *f[] = {R->ps,   R->ps2,  R->pa,   R->pv,   R->pv2,  R->plogp, R->pr,
                R->padv, R->pret, R->mb_s, R->mb_a, R->mb_y, R->mb_lp, R->mb_dout};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    free(f[i]);
  free(R->pdone);
  free(R->pbound);
  free(R->perm);
  free(R->pgood);
}

void rl_ppo_store(rlRun *R, int i, const rlWorker *w, int bound) {
  size_t k = (size_t)R->pt * (size_t)R->nw + (size_t)i;
  memcpy(R->ps + k * R->D, w->s, sizeof(float) * (size_t)R->D);
  memcpy(R->ps2 + k * R->D, w->s2, sizeof(float) * (size_t)R->D);
  memcpy(R->pa + k * R->A, w->a, sizeof(float) * (size_t)R->A);
  R->pr[k] = w->reward;
  R->pdone[k] = (uint8_t)w->done;
  R->pbound[k] = (uint8_t)(bound || w->done);
}

/* Values (or log-probs) of rows [0, N) in chunks of the work's batch. */
static int values(rlRun *R, const float *s, float *v) {
  nnNet *q = R->q[0];
  nnWork *w = R->lw[0];
  for (int k = 0; k < R->pN; k += R->B) {
    int n = TK_MIN(R->B, R->pN - k);
    int rc = nn_forward(q, w, s + (size_t)k * R->D, n);
    if (rc) return rc;
    memcpy(v + k, w->out, sizeof(float) * (size_t)n);
  }
  return 0;
}

/* ---- the policy: N(tanh(mu), std), unsquashed ---------------------------------------------------
 * The actor's Gaussian head gives mu and the log-std (lo + (hi - lo)(tanh(raw) + 1)/2, as nn's). The
 * tanh-Gaussian's density needs atanh of the action, which a saturated command (a gripper at +-1, tanh
 * of a large mu in float) turns into +-7 and a log-density hundreds of nats below its neighbours: the
 * ratio and KL of such rows swing with any step, every iteration stopped after one minibatch, and the
 * learning rate shrank to nothing (PPO stayed flat on lift). Sampling around the squashed mean and
 * clipping only when acting keeps the density exact and smooth; the deterministic action (tanh(mu),
 * what bc-eval runs) is the same. */
static double head_log_std(const nnArch *a, double raw, double *dls) {
  double t = tanh(raw), half = 0.5 * (a->log_std_max - a->log_std_min);
  if (dls) *dls = half * (1 - t * t);
  return a->log_std_min + half * (t + 1);
}

/* log p(a | o) of one row (o: the head's outputs [2A]); with d (not NULL), d(-log p)/do [2A] times g. */
static double row_log_prob(const nnArch *ar, const float *o, const float *a, double g, float *d) {
  const int A = ar->act_dim;
  double lp = 0;
  for (int j = 0; j < A; j++) {
    double dls, ls = head_log_std(ar, o[A + j], &dls), m = tanh(o[j]), sd = exp(ls), z = (a[j] - m) / sd;
    lp += -0.5 * z * z - ls - 0.9189385332046727;
    if (d) {
      d[j] = (float)(g * -(z / sd) * (1 - m * m));
      d[A + j] = (float)(g * (1 - z * z) * dls);
    }
  }
  return lp;
}

int rl_ppo_sample(const rlRun *R, nnWork *w, const float *s, const float *eps, float *a) {
  const nnNet *net = R->actor->net;
  int rc = nn_forward(net, w, s, 1);
  if (rc) return rc;
  const nnArch *ar = &net->arch;
  for (int j = 0; j < ar->act_dim; j++)
    a[j] = (float)(tanh(w->out[j]) + exp(head_log_std(ar, w->out[ar->act_dim + j], NULL)) * eps[j]);
  return 0;
}

static int log_probs(rlRun *R, float *lp) {
  const nnNet *net = R->actor->net;
  const int O = nn_arch_out_dim(&net->arch);
  for (int k = 0; k < R->pN; k += R->B) {
    int n = TK_MIN(R->B, R->pN - k);
    int rc = nn_forward(net, R->aw, R->ps + (size_t)k * R->D, n);
    if (rc) return rc;
    for (int b = 0; b < n; b++)
      lp[k + b] = (float)row_log_prob(&net->arch, R->aw->out + (size_t)b * O, R->pa + (size_t)(k + b) * R->A,
                                      0, NULL);
  }
  return 0;
}

static void shuffle(rlRun *R) {
  for (int i = 0; i < R->pN; i++)
    R->perm[i] = i;
  for (int i = R->pN - 1; i > 0; i--) {
    int j = (int)tk_rng_below(&R->rng, (uint64_t)i + 1), t = R->perm[i];
    R->perm[i] = R->perm[j];
    R->perm[j] = t;
  }
}

/* GAE over each worker's stretch of the rollout (rows t * nw + i). */
static void advantages(rlRun *R) {
  const double g = R->o->gamma, lam = R->o->gae_lambda;
  for (int i = 0; i < R->nw; i++) {
    double next_adv = 0;
    for (int t = R->pT - 1; t >= 0; t--) {
      size_t k = (size_t)t * (size_t)R->nw + (size_t)i;
      /* the next state's value: 0 after a terminal state, V(s') otherwise (a truncation at the horizon
       * or the end of the rollout bootstraps) */
      double nv = R->pdone[k] ? 0.0 : R->pv2[k];
      if (R->pbound[k] || t == R->pT - 1) next_adv = 0;
      double delta = R->pr[k] + g * nv - R->pv[k];
      next_adv = delta + g * lam * next_adv;
      R->padv[k] = (float)next_adv;
      R->pret[k] = (float)(next_adv + R->pv[k]);
    }
  }
  /* normalized over every rank's rollout */
  double m[2] = {0, 0};
  for (int k = 0; k < R->pN; k++) {
    m[0] += R->padv[k] / R->pN;
    m[1] += (double)R->padv[k] * R->padv[k] / R->pN;
  }
  rl_mpi_mean_d(m, 2);
  double sd = sqrt(fmax(m[1] - m[0] * m[0], 0)) + 1e-8;
  for (int k = 0; k < R->pN; k++)
    R->padv[k] = (float)((R->padv[k] - m[0]) / sd);
}

static int value_epoch(rlRun *R) {
  nnNet *q = R->q[0];
  nnWork *w = R->lw[0];
  const int B = R->B, D = R->D;
  shuffle(R);
  for (int k = 0; k + B <= R->pN; k += B) {
    for (int b = 0; b < B; b++) {
      int r = R->perm[k + b];
      memcpy(R->mb_s + (size_t)b * D, R->ps + (size_t)r * D, sizeof(float) * (size_t)D);
      R->mb_y[b] = R->pret[r];
    }
    float loss;
    nn_zero_grad(q);
    int rc = nn_loss(q, w, R->mb_s, R->mb_y, B, &loss);
    if (!rc) rc = nn_backward(q, w);
    if (rl_mpi_any(rc))
      return rc ? tk_error_wrap(rc, "value function") : tk_error(TK_ERANGE, "another rank's value loss");
    rl_mpi_mean_f(q->grads, q->n_params);
    if ((rc = nn_adam_step(q, &R->qopt, NULL))) return tk_error_wrap(rc, "value function");
  }
  return 0;
}

/* One pass of the actor over the rollout; *kl gets the mean KL estimate over its minibatches. */
static int actor_epoch(rlRun *R, double *kl, int *stop) {
  const int B = R->B, D = R->D, A = R->A;
  /* demo rows appended to every minibatch: of demos that succeeded only (a failed demo's actions are no
   * target; on push its 7 failures ran to the horizon and made half the demo rows) */
  const int nd = R->npgood > 0 ? B : 0;
  const double clip = R->o->clip;
  double kl_sum = 0;
  int nmb = 0;
  shuffle(R);
  for (int k = 0; k + B <= R->pN; k += B) {
    for (int b = 0; b < B; b++) {
      int r = R->perm[k + b];
      memcpy(R->mb_s + (size_t)b * D, R->ps + (size_t)r * D, sizeof(float) * (size_t)D);
      memcpy(R->mb_a + (size_t)b * A, R->pa + (size_t)r * A, sizeof(float) * (size_t)A);
    }
    for (int b = 0; b < nd; b++) {
      int64_t r = R->pgood[tk_rng_below(&R->rng, (uint64_t)R->npgood)];
      memcpy(R->mb_s + (size_t)(B + b) * D, R->demo.s + r * D, sizeof(float) * (size_t)D);
      memcpy(R->mb_a + (size_t)(B + b) * A, R->demo.a + r * A, sizeof(float) * (size_t)A);
    }
    nnNet *net = R->actor->net;
    const int O = nn_arch_out_dim(&net->arch);
    int rc = nn_forward(net, R->aw, R->mb_s, B + nd);
    for (int b = 0; !rc && b < B; b++)
      R->mb_lp[b] =
          (float)row_log_prob(&net->arch, R->aw->out + (size_t)b * O, R->mb_a + (size_t)b * A, 0, NULL);
    /* stop this iteration once the policy has moved too far from the one that collected the rollout
     * (decided on every rank's mean, so every rank stops at the same minibatch) */
    double now_kl = 0; /* Schulman's k3 estimator, (r - 1) - log r: never negative, low variance */
    for (int b = 0; b < B; b++) {
      double lr = fmin((double)R->mb_lp[b] - R->plogp[R->perm[k + b]], 20.0);
      now_kl += (exp(lr) - 1 - lr) / B;
    }
    rl_mpi_mean_d(&now_kl, 1);
    if (rl_mpi_any(rc))
      return rc ? tk_error_wrap(rc, "actor") : tk_error(TK_ERANGE, "another rank's actor loss");
    if (now_kl > 1.5 * R->o->target_kl) {
      *stop = 1;
      break;
    }
    double w_demo = R->o->bc_weight * pow(0.5, (double)R->updates / fmax(R->o->bc_halflife, 1));
    for (int b = 0; b < B; b++) {
      int r = R->perm[k + b];
      double d = (double)R->mb_lp[b] - R->plogp[r], ratio = exp(fmin(d, 20.0)), adv = R->padv[r];
      /* loss_b = -min(ratio adv, clip(ratio) adv) / B; its gradient (adv ratio d(-log p_b)/dout / B) flows
       * only while unclipped */
      int active = adv >= 0 ? ratio < 1 + clip : ratio > 1 - clip;
      row_log_prob(&net->arch, R->aw->out + (size_t)b * O, R->mb_a + (size_t)b * A,
                   active ? adv * ratio / B : 0, R->mb_dout + (size_t)b * O);
    }
    /* the DAPG-style demo term on the policy's mean action: w * mean ||tanh(mu) - a_demo||^2. (The
     * demos' negative log-likelihood, DAPG's own term, explodes on demo actions saturated at +-1: a
     * gripper command of 1 is atanh(1 - 1e-6) = 7.3 before the squash, tens of stds from any mean.) */
    for (int b = B; b < B + nd; b++) {
      const float *o = R->aw->out + (size_t)b * O, *ad = R->mb_a + (size_t)b * A;
      float *d = R->mb_dout + (size_t)b * O;
      for (int j = 0; j < O; j++)
        d[j] = 0;
      for (int j = 0; j < A; j++) {
        double t = tanh(o[j]);
        d[j] = (float)(w_demo * 2 * (t - ad[j]) * (1 - t * t) / ((double)nd * A));
      }
    }
    nn_zero_grad(net);
    rc = nn_backward_out(net, R->aw, R->mb_dout, NULL, 1);
    if (rl_mpi_any(rc))
      return rc ? tk_error_wrap(rc, "actor") : tk_error(TK_ERANGE, "another rank's actor update");
    rl_mpi_mean_f(net->grads, net->n_params);
    if ((rc = nn_adam_step(net, &R->aopt, NULL))) return tk_error_wrap(rc, "actor");
    R->updates++;
    kl_sum += now_kl; /* before this minibatch's step, already the mean over ranks */
    nmb++;
  }
  *kl = nmb ? kl_sum / nmb : 0;
  return 0;
}

int rl_ppo_update(rlRun *R, int actor_on, double *kl, int *epochs) {
  int rc = log_probs(R, R->plogp);
  if (!rc) rc = values(R, R->ps, R->pv);
  if (!rc) rc = values(R, R->ps2, R->pv2);
  if (rl_mpi_any(rc)) return rc ? rc : tk_error(TK_EIO, "another rank failed");
  advantages(R);
  *kl = 0;
  *epochs = 0;
  /* the value function: more passes while it warms up on the BC policy's own rollouts */
  int vep = actor_on ? R->o->ppo_epochs : 4 * R->o->ppo_epochs;
  for (int e = 0; e < vep && !rc; e++)
    rc = value_epoch(R);
  int stop = 0;
  double first_kl = -1;
  for (int e = 0; actor_on && e < R->o->ppo_epochs && !rc && !stop; e++) {
    rc = actor_epoch(R, kl, &stop);
    if (first_kl < 0) first_kl = *kl;
    (*epochs)++;
  }
  /* the step size follows the KL (Schulman et al.'s adaptive penalty, applied to the learning rate as
   * rl_games does): Adam moves every weight by about lr whatever the gradient's scale, so a fixed lr
   * is either too timid or far too bold for a policy whose std is 0.2 */
  if (actor_on && !rc && first_kl >= 0) {
    double lr0 = R->o->actor_lr > 0 ? R->o->actor_lr : R->o->policy ? 1e-5 : 3e-4;
    if (first_kl > 2 * R->o->target_kl || stop)
      R->aopt.lr = fmax(R->aopt.lr / 1.5, lr0 / 100);
    else if (first_kl < 0.5 * R->o->target_kl)
      R->aopt.lr = fmin(R->aopt.lr * 1.5, lr0 * 10);
  }
  return rc;
}
