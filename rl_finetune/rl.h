/* rl_finetune/rl.h -- RL fine-tuning from a BC policy and its demos (prefix rl_).
 *
 * Two algorithms share the workers, evaluation, checkpoints and MPI plumbing: SAC (the default,
 * sample-efficient) and PPO (rl_ppo.c: on-policy, DAPG-style demo term).
 *
 * SAC in the RLPD style: the actor is a tanh-Gaussian policy that starts from the BC policy (an MSE
 * head with tanh becomes the Gaussian's mean exactly; a Gaussian head is taken as is), the critics are
 * an ensemble of LayerNorm MLPs whose TD target uses the minimum of two members drawn at random, each
 * batch is half demos and half online data, and the critics are warmed up on the demos before the
 * actor moves so the BC policy is not unlearned at the start. Rewards are sparse: 1 when the task
 * succeeds, which ends the episode (demos: 1 on the last step of a successful demo).
 *
 * Workers are threads, each with its own environment; every iteration each worker takes one step with
 * the current actor (in parallel), the transitions are stored in worker order, and the learner makes
 * `utd` updates per environment step. With one worker a seed reproduces a run bit for bit.
 */
#ifndef RL_H
#define RL_H

/* --compare: the scratch run goes on until it reaches the target or spends this many times the fine-tune's
 * env steps to it (so the ratio is measured, or an honest floor of this factor) */
#define RL_COMPARE_FACTOR 10
/* Seeds of rl-finetune's evaluations: its own, apart from bc-train's selection seeds (BC_SELECT_SEED_BASE,
 * on which the BC policy's epoch was chosen, so its success there is flattered) and bc-eval's held-out
 * ones (BC_EVAL_SEED_BASE) */
#define RL_EVAL_SEED_BASE 4000000000ull

#include <stdint.h>

#include "bc.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  const char *algo;         /* "sac" (default) or "ppo" */
  const char *scheme;       /* how the BC policy is fine-tuned (SAC): "finetune" (the actor is the BC policy's
                               network, trained; MLP policies with an MSE-tanh or Gaussian head), "residual" (the
                               BC policy is frozen and acts first; a small actor adds a bounded correction to its
                               action: any policy bc-train makes), or "auto" (the default: finetune where the
                               policy's head allows, residual for the others) */
  double residual_scale;    /* residual: the largest correction, in the normalized action space (0.5) */
  const char *actor_update; /* SAC's actor step: "q" (ascend the critics' Q, normalized by mean |Q| as
                               TD3+BC, plus the entropy term) or "awr" (advantage-weighted regression: the
                               mean action is pulled toward the batch's own actions, each weighted by
                               exp of its standardized advantage Q(s, a) - Q(s, mean action) (at most 20);
                               no gradient of Q with respect to the action, so the critics' errors there
                               cannot be climbed; the std stays at init_std) */
  double awr_temp;          /* awr: the standardized advantage is divided by this (1) */
  const char *task;         /* built-in task (default: the policy's) */
  const char *policy;       /* BC policy to start from (NULL: from scratch) */
  const char *demos;        /* demos for the demo half of each batch (NULL: none) */
  const char *out;          /* best policy (policy.h5 format, algo "sac") */
  const char *metrics;      /* CSV of evaluations (NULL: none) */
  const char *label;        /* name of this run in messages and the CSV ("finetune", "scratch") */
  int64_t steps;            /* environment steps (default 100000) */
  int workers;              /* default: online cores */
  uint64_t seed;
  int ensemble;         /* critics (default 2: a 2-core machine; RLPD uses 10) */
  int utd;              /* updates per environment step (default 1) */
  int batch;            /* 256 */
  int hidden;           /* critic (and scratch actor) width, two layers (256) */
  double critic_lr;     /* 3e-4 */
  double actor_lr;      /* 1e-4 from a BC policy, 3e-4 from scratch (0: that default) */
  double gamma;         /* 0.99 */
  double tau;           /* 0.005 */
  double init_alpha;    /* entropy temperature at the start (1e-3: with sparse rewards a larger one
                           outweighs the task and unlearns the BC policy) */
  double alpha_lr;      /* temperature learning rate (3e-4; 0 = fixed at init_alpha) */
  double init_std;      /* the BC actor's starting std (0.2) */
  int critic_warmup;    /* critic-only updates on the demos before acting (default 2000 with demos) */
  int64_t actor_delay;  /* from a policy: env steps of critic-only learning on the BC actor's own data before
                           the actor moves (default 2500) */
  double q_coef;        /* actor: weight of Q, normalized by mean |Q| as TD3+BC (0.1: with sparse rewards
                           |Q| is small and TD3+BC's 2.5 lets the critic's errors unlearn the policy) */
  double actor_eps;     /* the actor's Adam epsilon (1e-3): with torch's 1e-8, Adam turns even vanishing
                           but consistent gradients into full-size steps on every weight of a row, and the
                           BC policy drifts away while nothing asks it to */
  double bc_weight;     /* actor anchor: + w ||a - a_demo||^2 on demo rows and + w ||a - a_bc(s)||^2 on
                           online rows (a_bc: the starting policy, frozen); w halves every */
  double bc_halflife;   /* bc_halflife updates (DAPG-style decaying demo term; defaults 1.0 and 100000: with
                           20000 the fine-tune fell apart past 35k steps) */
  int64_t random_steps; /* from scratch: uniform random actions for the first steps (5000) */
  int64_t eval_every;   /* environment steps between evaluations (5000) */
  int eval_episodes;    /* held-out seeds per evaluation (100) */
  double target;        /* success rate that counts as arrived (0.95) */
  int stop_at_target;   /* end the run once the target is reached (default 1) */
  const char *checkpoint; /* write a checkpoint here after every evaluation and at the end (NULL: none) */
  const char *resume;     /* go on from this checkpoint (same options as the run that wrote it; every
                             counter and size in it is checked against the options and the others, a bad
                             one refused naming the file and the field) */
  /* PPO (on-policy, for many cheap workers): from the BC policy, a decaying DAPG demo term (bc_weight,
   * bc_halflife), value warm-up before the actor moves, a small actor learning rate, clamped std */
  int rollout;       /* env steps per iteration and rank (default 4096) */
  int minibatch;     /* rows per PPO update (default 1024: few, large steps keep the KL small) */
  int ppo_epochs;    /* passes over each rollout (default 5; stopped early past target_kl) */
  double clip;       /* ratio clip (0.2) */
  double gae_lambda; /* 0.95 */
  double target_kl;  /* stop an iteration once the mean KL to the rollout policy passes 1.5x this (0.05) */
  double max_std;    /* the actor's std is clamped to at most this (0.5) */
  int value_warmup_iters; /* iterations that fit only the value function before the actor moves (1) */
  int quiet;
  volatile int *interrupt; /* set to 1 (by a signal handler) to stop after the current iteration */
} rlOpts;

typedef struct {
  int64_t env_steps, updates;
  int64_t steps_to_target; /* env steps at the first evaluation at or above the target; -1: never */
  double best_success;     /* best evaluation success rate */
  int64_t best_step;
  double initial_success; /* evaluation before any RL step */
  double seconds;
  double env_steps_per_s, updates_per_s;
  /* where the wall time went (s): the workers' env steps and acting, the learner's updates, the
   * evaluations (with the checkpoints after them) and, for SAC, the critics' warm-up on the demos */
  double act_seconds, learn_seconds, eval_seconds, warmup_seconds;
  int n_evals;
  int64_t eval_step[512];
  double eval_success[512];
  int diverged; /* stopped on a non-finite loss or parameter */
} rlResult;

/* A run's evaluations: success[i] at env step step[i] (increasing). */
typedef struct {
  const int64_t *step;
  const double *success;
  int n;
} rlCurve;

/* The env step of the first evaluation at or above target; -1: none. */
int64_t rl_curve_arrival(const rlCurve *c, double target);

/* The comparison's summary, without the "compare: " prefix: the env steps each run needed to reach the
 * target and their ratio, or its floor when scratch never arrived within its last evaluation (out: n
 * bytes, always terminated). */
void rl_compare_line(double target, const rlCurve *ft, const rlCurve *scratch, char *out, size_t n);

void rl_opts_default(rlOpts *o);
int rl_run(const rlOpts *o, rlResult *r);

#ifdef __cplusplus
}
#endif
#endif
