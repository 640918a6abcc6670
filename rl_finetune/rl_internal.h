/* rl_finetune/rl_internal.h -- the run's state and what the files of rl_finetune/ share: the run driver
 * (rl_run.c), SAC (rl_sac.c), PPO (rl_ppo.c) and checkpoints (rl_ckpt.c). */
#ifndef RL_INTERNAL_H
#define RL_INTERNAL_H

#include <pthread.h>
#include <stdlib.h>

#include "rl.h"

/* ---- replay buffers ------------------------------------------------------------------------------ */
typedef struct {
  int64_t cap, n;
  int D, A;
  float *s, *a, *r, *s2;
  uint8_t *d;
  uint8_t *good; /* per row: 1 from a demo that succeeded (the anchor's target), 0 else (online, failures) */
} rlBuf;

/* ---- the learner --------------------------------------------------------------------------------- */
#define RL_MAX_ENSEMBLE 16
#define RL_MAX_WORKERS 64

typedef struct rlRun rlRun;
typedef struct {
  rlRun *run;
  int id;
} rlTeamArg;

typedef struct {
  rlRun *run;
  int id;
  capEnv *env;
  nnWork *w;
  tkRng rng;
  capObs obs;
  float *s, *s2, *a, *raw; /* normalized obs, next obs, action (normalized), raw gathered obs */
  int64_t episodes, ep_len;
  uint64_t seed_base;
  int rc;
  char err[TK_ERRMSG_MAX];
  float reward;
  int done;
  bcActor *base; /* residual: the frozen base policy acting in this worker's environment */
  double ab[CAP_MAX_ACT], ab2[CAP_MAX_ACT]; /* its action at s and at s2 (environment units) */
} rlWorker;

struct rlRun {
  const rlOpts *o;
  capModel *model;
  const capSpec *spec;
  bcBinding bind;
  bcPolicy *actor;
  nnWork *aw;
  nnNet *q[RL_MAX_ENSEMBLE], *qt[RL_MAX_ENSEMBLE];
  nnAdamOpts qopt, aopt;
  double log_alpha, alpha_m, alpha_v;
  int64_t alpha_t;
  double target_entropy;
  tkRng rng;
  rlBuf demo, online;
  int D, A, B;
  float *bs, *ba, *br, *bs2, *x, *y, *eps, *act, *logp, *dact, *dlogp, *dout, *qa, *qb;
  uint8_t *bd, *bgood; /* the batch's done flags, and whether each row's action is an anchor target */
  /* workers */
  int nw;
  rlWorker wk[RL_MAX_WORKERS];
  pthread_t th[RL_MAX_WORKERS];
  pthread_barrier_t go, done;
  int quit;
  int threads_started; /* the barriers exist and workers 1.. run */
  int64_t updates;
  int random_actions;
  /* the learner's critic work split over T threads (critic e on thread e % T; thread 0 is the caller) */
  int T;
  pthread_t lth[RL_MAX_ENSEMBLE];
  rlTeamArg larg[RL_MAX_ENSEMBLE];
  pthread_barrier_t lgo, ldone;
  int ljob, lquit, lstarted;
  int li, lj;                  /* JOB_TARGET: the two target members */
  nnWork *lw[RL_MAX_ENSEMBLE]; /* per thread */
  float *ldx[RL_MAX_ENSEMBLE], *ldact[RL_MAX_ENSEMBLE];
  float *qdata, *qpi; /* awr: the critics' mean Q at the batch's actions and at the policy's mean action */
  double lqabs[RL_MAX_ENSEMBLE];
  int lrc[RL_MAX_ENSEMBLE];
  char lerr[RL_MAX_ENSEMBLE][256];
  bcPolicy *bc; /* the starting policy, frozen (anchor) */
  /* residual (R->actor->base set): each state row is [the actor's keys (Ds) | the base's action (A)], both
   * normalized, and the actor's sample d becomes the action clip(a_base + scale d) (rmask: not clipped) */
  int res, Ds;
  int stats_from_demos; /* residual on a camera base: its keys' statistics come from the demos */
  int awr;
  uint8_t *rmask;
  nnWork *bw;
  float *qa_act;
  /* PPO: the value function is q[0]; one rollout of pT steps of every worker, row t * nw + i */
  int ppo;
  int pT, pN, pt;
  float *ps, *ps2, *pa, *plogp, *pr, *pv, *pv2, *padv, *pret, *mb_s, *mb_a, *mb_y, *mb_lp, *mb_dout;
  uint8_t *pdone, *pbound;
  int *perm;
  int64_t *pgood, npgood; /* the demo term's rows: those of demos that succeeded (as bc-train's) */
};

static inline float *rl_falloc(size_t n) { return malloc(sizeof(float) * (n ? n : 1)); }

/* Replay buffers (rl_sac.c): cap transitions of D-float observations and A-float actions; a push past
 * cap overwrites the oldest (never at our sizes). */
int rl_buf_make(rlBuf *b, int64_t cap, int D, int A);
void rl_buf_free(rlBuf *b);
void rl_buf_push(rlBuf *b, const float *s, const float *a, float r, const float *s2, int d, int good);

/* SAC (rl_sac.c) */
/* The actor: a tanh-Gaussian policy with the BC policy's layers (bc), or fresh ones of the scratch
 * keys and identity statistics (stats); NULL with a message if bc cannot start it. */
bcPolicy *rl_actor_make(const rlOpts *o, const bcPolicy *bc, const capSpec *spec, const bcPolicy *stats);
/* Whether the BC policy can start the tanh-Gaussian actor (0 with the reason in tk_errmsg). */
int rl_actor_can_start(const rlOpts *o, const bcPolicy *bc);
/* The residual actor on base (taken over): a tanh-Gaussian MLP reading [keys | base's action] whose
 * mean starts at zero (the base's action) and whose std starts at init_std in the action space. */
bcPolicy *rl_residual_make(const rlOpts *o, bcPolicy *base, int nkeys, const char *const *keys,
                           const int *dims, const float *mean, const float *std);
/* Rows [B, R->D] with the actor's samples d [B, A] in act: act becomes the residual's action (and
 * R->rmask, when mask is set). Nothing without a residual. */
void rl_residual_rows(rlRun *R, const float *x, float *act, int B, int mask);
/* The learner's networks, threads and buffers, sized by R->D, A, B, nw (rl_learner_free: half-built too). */
int rl_learner_make(rlRun *R);
void rl_learner_free(rlRun *R);
/* One update: a batch (half demos), the critics' step, then (actor_on) the actor's and the temperature's. */
int rl_sac_update(rlRun *R, int actor_on);
void rl_normals(tkRng *rng, float *v, int n); /* n standard normals */

/* Checkpoints (rl_ckpt.c): written to a temp file and renamed; read back with every counter and size
 * checked against the options and each other, a bad one refused naming the file and the field. */
int rl_ckpt_save(rlRun *R, const rlResult *res, int64_t next_eval, const char *path);
int rl_ckpt_load(rlRun *R, rlResult *res, int64_t *next_eval, const char *path);

/* PPO (rl_ppo.c) */
int rl_ppo_alloc(rlRun *R);
void rl_ppo_free(rlRun *R);
void rl_ppo_store(rlRun *R, int i, const rlWorker *w, int bound); /* worker i's step at time R->pt */
/* PPO's policy: a Gaussian around the actor's tanh'd mean, N(tanh(mu), std), sampled unsquashed (a [A], to be
 * clipped to [-1, 1] when acted) so that its log-density is exact; eps [A] standard normals, w made for
 * the actor's network. */
int rl_ppo_sample(const rlRun *R, nnWork *w, const float *s, const float *eps, float *a);
/* Advantages and returns of the rollout, then the value (and, if actor_on, the actor) epochs. */
int rl_ppo_update(rlRun *R, int actor_on, double *kl, int *epochs);

#endif
