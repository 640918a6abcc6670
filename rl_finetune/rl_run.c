/* rl_finetune/rl_run.c -- the run driver of rl-finetune: setup (the task and the actor, the learner, the
 * demos and replay buffers, the environment workers, the metrics file; everything allocated once), the
 * loop (the workers act, the learner updates, evaluations on their schedule save the best policy and
 * write the metrics CSV, checkpoints follow them, the run stops at --steps, the target or Ctrl-C) and
 * teardown. The learning itself is SAC's (rl_sac.c) or PPO's (rl_ppo.c); checkpoints are rl_ckpt.c's. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

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
  o->scheme = "auto";
  o->residual_scale = 0.5;
  o->actor_update = "q";
  o->awr_temp = 1;
  o->rollout = 4096;
  o->minibatch = 1024;
  o->ppo_epochs = 5;
  o->clip = 0.2;
  o->gae_lambda = 0.95;
  o->target_kl = 0.05;
  o->max_std = 0.5;
  o->value_warmup_iters = 1;
}

/* ---- setup ---------------------------------------------------------------------------------------- */

/* Checks the options and copies them into oc with what the algorithm and the rank change: PPO has one
 * critic (its value function); MPI ranks beyond 0 neither print nor write (rank 0 alone evaluates and
 * writes the policy, metrics and checkpoints). res starts empty. */
static int run_opts(const rlOpts *o, rlOpts *oc, rlResult *res) {
  memset(res, 0, sizeof *res);
  res->steps_to_target = -1;
  res->best_step = -1;
  res->best_success = -1;
  if (o->ensemble < 1 || o->ensemble > RL_MAX_ENSEMBLE)
    return tk_error(TK_ERANGE, "--ensemble %d: 1..%d", o->ensemble, RL_MAX_ENSEMBLE);
  if (o->workers < 1 || o->workers > RL_MAX_WORKERS)
    return tk_error(TK_ERANGE, "--workers %d: 1..%d", o->workers, RL_MAX_WORKERS);
  if (!o->algo || (strcmp(o->algo, "sac") && strcmp(o->algo, "ppo")))
    return tk_error(TK_EINVAL, "--algo %s: sac or ppo", o->algo ? o->algo : "(none)");
  if (!o->scheme ||
      (strcmp(o->scheme, "auto") && strcmp(o->scheme, "finetune") && strcmp(o->scheme, "residual")))
    return tk_error(TK_EINVAL, "--scheme %s: auto, finetune or residual", o->scheme ? o->scheme : "(none)");
  if (!o->actor_update || (strcmp(o->actor_update, "q") && strcmp(o->actor_update, "awr")))
    return tk_error(TK_EINVAL, "--actor-update %s: q or awr", o->actor_update ? o->actor_update : "(none)");
  if (!(o->residual_scale > 0 && o->residual_scale <= 2))
    return tk_error(TK_ERANGE, "--residual-scale %g: in (0, 2]", o->residual_scale);
  if (!strcmp(o->scheme, "residual") && !strcmp(o->algo, "ppo"))
    return tk_error(TK_EINVAL,
                    "--scheme residual is SAC's; PPO fine-tunes the policy itself (--scheme finetune)");
  *oc = *o;
  if (!strcmp(o->algo, "ppo")) oc->ensemble = 1; /* the value function */
  if (rl_mpi_rank() > 0) {
    oc->out = NULL;
    oc->metrics = NULL;
    oc->checkpoint = NULL;
    oc->quiet = 1;
  }
  return 0;
}

/* Whether this run is residual: --scheme residual, or auto with a policy that cannot start the actor. */
static int use_residual(const rlOpts *o, const bcPolicy *bc) {
  if (!bc || !strcmp(o->scheme, "finetune")) return 0;
  if (!strcmp(o->scheme, "residual")) return 1;
  return !strcmp(o->algo, "sac") && !rl_actor_can_start(o, bc);
}

/* robomimic's low-dim keys the task has (object, robot0_eef_pos, robot0_eef_quat, robot0_gripper_qpos):
 * keys and dims (room for 4), *n of them; returns their values together. */
static int task_low_dim_keys(const capSpec *spec, const char **keys, int *dims, int *n) {
  static const char *const want[] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
  int D = 0;
  *n = 0;
  for (int i = 0; i < 4; i++)
    for (int k = 0; k < spec->nobs; k++)
      if (!strcmp(spec->obs[k].name, want[i])) {
        keys[*n] = want[i];
        dims[(*n)++] = spec->obs[k].shape[0];
        D += spec->obs[k].shape[0];
      }
  return D;
}

/* The residual actor on bc (taken over): it reads the base's low-dim keys with the base's statistics; a
 * base with cameras gets robomimic's low-dim keys of the task (the simulator's state: the critics need the
 * object), normalized with the demos' statistics (load_demos; identity without demos). */
static bcPolicy *residual_actor(rlRun *R, bcPolicy *bc) {
  const char *keys[BC_MAX_KEYS];
  int dims[BC_MAX_KEYS], n = 0;
  float mean[NN_MAX_DIM], std[NN_MAX_DIM];
  if (bc->nkeys > 0 && bc->nimg == 0) {
    for (int i = 0; i < bc->nkeys; i++) {
      keys[i] = bc->keys[i];
      dims[i] = bc->key_dim[i];
    }
    n = bc->nkeys;
    memcpy(mean, bc->obs_mean, sizeof(float) * (size_t)bc->obs_dim);
    memcpy(std, bc->obs_std, sizeof(float) * (size_t)bc->obs_dim);
  } else {
    int D = task_low_dim_keys(R->spec, keys, dims, &n);
    for (int i = 0; i < D; i++) {
      mean[i] = 0;
      std[i] = 1;
    }
    R->stats_from_demos = 1;
  }
  return rl_residual_make(R->o, bc, n, keys, dims, mean, std);
}

/* The task's model (one per process) and the actor: from the BC policy (its network trained, or frozen
 * under a residual actor), or from scratch on robomimic's low-dim keys of the task with identity
 * statistics; bound to the task's observations. */
static int load_task_and_actor(rlRun *R) {
  const rlOpts *o = R->o;
  bcPolicy *bc = NULL, *stats = NULL;
  int rc = 0;
  if (o->policy && !(bc = bc_policy_load(o->policy))) rc = tk_error_wrap(TK_EFORMAT, "--policy");
  if (!rc && bc && bc->base)
    rc = tk_error(TK_EINVAL, "%s: a residual policy (from rl-finetune); start from its base policy instead",
                  o->policy);
  if (!rc && bc) R->res = use_residual(o, bc);
  const char *task = o->task ? o->task : bc ? bc->task : NULL;
  if (!rc && (!task || !task[0])) rc = tk_error(TK_EINVAL, "no task: pass --task (%s)", cap_task_names());
  capOpts co;
  cap_opts_default(&co);
  co.task = task;
  if (!rc) rc = bc ? bc_policy_model_load(bc, &co, &R->model) : cap_model_load(&co, &R->model);
  if (!rc) R->spec = cap_spec(R->model);
  if (!rc && R->res) { /* the base is the residual actor's from here on */
    if (!(R->actor = residual_actor(R, bc))) rc = tk_error_wrap(TK_EINVAL, "residual actor");
    bc = NULL;
    if (!rc && (rc = bc_bind(R->actor, R->model, &R->bind))) rc = tk_error_wrap(rc, "%s", o->policy);
    if (!rc && !o->quiet)
      printf("%s: residual actor on the frozen %s (corrections up to %g of the action range's half)\n",
             o->label, o->policy, o->residual_scale);
    return rc;
  }
  if (!rc && !bc) { /* from scratch: robomimic's low-dim keys of the task, identity statistics */
    const char *keys[4];
    int dims[4], n = 0, D = task_low_dim_keys(R->spec, keys, dims, &n);
    nnArch a;
    nn_arch_default(&a);
    a.obs_dim = D;
    a.act_dim = R->spec->action_dim;
    if (!(stats = bc_policy_make(&a, n, keys, dims, 0))) rc = tk_error_wrap(TK_EINVAL, "scratch actor");
  }
  if (!rc && !(R->actor = rl_actor_make(o, bc, R->spec, stats))) rc = tk_error_wrap(TK_EINVAL, "actor");
  if (!rc && (rc = bc_bind(R->actor, R->model, &R->bind)))
    rc = tk_error_wrap(rc, "%s", o->policy ? o->policy : "actor");
  bc_policy_free(bc);
  bc_policy_free(stats);
  return rc;
}

/* The sizes everything else is allocated by, and the learner's random stream (each rank its own). */
static void size_run(rlRun *R) {
  const rlOpts *o = R->o;
  R->Ds = R->actor->obs_dim;
  R->D = R->res ? R->actor->arch.obs_dim : R->actor->obs_dim; /* residual: and the base's action */
  R->A = R->actor->act_dim;
  R->B = R->ppo ? o->minibatch : o->batch;
  R->nw = o->workers;
  tk_rng_seed(&R->rng,
              o->seed * 0x9E3779B97F4A7C15ull + 17 + (uint64_t)rl_mpi_rank() * 0x5851F42D4C957F2Dull);
}

/* A base with cameras along the demos: each demo's recorded states set in an environment that renders
 * the base's cameras, the base acting on what it sees there with its episode state; after the last row,
 * the demo's last action stepped from its last state. o as demo_base_actions's. */
static int demo_base_actions_replayed(rlRun *R, dsFile *f, const dsLoaded *L, float *o) {
  const bcPolicy *b = R->actor->base;
  const int A = R->A, S = R->spec->state_dim;
  capEnv *env = NULL;
  bcActor *ac = bc_actor_make(b, R->model);
  int64_t longest = 0;
  for (int d = 0; d < L->ndemos; d++)
    longest = TK_MAX(longest, L->demo_start[d + 1] - L->demo_start[d]);
  double *st = malloc(sizeof(double) * (size_t)(TK_MAX(longest, 1) * S));
  int rc = !ac ? tk_error_wrap(TK_EINVAL, "base policy") : !st ? tk_error(TK_ENOMEM, "out of memory") : 0;
  if (!rc) rc = cap_env_make(R->model, &env);
  for (int d = 0; !rc && d < L->ndemos; d++) {
    const int64_t k0 = L->demo_start[d], n = L->demo_start[d + 1] - k0;
    const dsDemoInfo *di = ds_demo(f, L->demo_pos[d]);
    int64_t cols = 0;
    if (n == 0) continue;
    if (!di->has_states)
      rc = tk_error(TK_EINVAL, "%s has no states: a base with cameras is acted on the demos' replayed states",
                    di->name);
    if (!rc && (rc = ds_read_column(f, L->demo_pos[d], "states", st, n * S, &cols)) == 0 && cols != S)
      rc = tk_error(TK_EINVAL, "%s: states of %lld values, task '%s' has %d", di->name, (long long)cols,
                    R->spec->task, S);
    bc_actor_reset(ac, 0x5eed0000ull + (uint64_t)d);
    capObs ob;
    double act[CAP_MAX_ACT];
    for (int64_t t = 0; !rc && t <= n; t++) {
      if (t < n) {
        rc = cap_env_set_state(env, st + t * S, &ob);
      } else { /* the state after the last row: its action stepped from its state */
        capStep sp;
        double a[CAP_MAX_ACT];
        for (int i = 0; i < A; i++)
          a[i] = L->actions[(k0 + n - 1) * A + i];
        if (!(rc = cap_env_set_state(env, st + (n - 1) * S, &ob)) && !(rc = cap_env_step(env, a, &sp)))
          ob = sp.obs;
      }
      if (!rc) rc = bc_actor_step(ac, &ob, act);
      for (int i = 0; !rc && i < A; i++)
        o[(k0 + t + d) * A + i] = (float)((act[i] - b->act_offset[i]) / b->act_scale[i]);
    }
  }
  cap_env_free(env);
  bc_actor_free(ac);
  free(st);
  return rc;
}

/* Residual: what the frozen base does along each demo, acted step by step with its episode state (an
 * LSTM's, a chunk's ensemble, a diffusion plan) on the demo's observations: out [(n + ndemos) * A]
 * normalized, demo d's rows at demo_start[d] + d, each demo followed by the action after its last step.
 * A base with cameras acts on the demos' states replayed (demo_base_actions_replayed). */
static int demo_base_actions(rlRun *R, dsFile *f, const dsLoaded *L, float **out) {
  const bcPolicy *b = R->actor->base;
  const int A = R->A;
  if (b->nimg) {
    float *o = rl_falloc((size_t)(L->n + L->ndemos) * A);
    int rc = o ? demo_base_actions_replayed(R, f, L, o) : tk_error(TK_ENOMEM, "out of memory");
    if (rc)
      free(o);
    else
      *out = o;
    return rc;
  }
  bcEnsemble *e = bc_ensemble_make(b);
  nnWork *w = nn_work_make(b->net, 1);
  float *scratch = rl_falloc((size_t)bc_policy_scratch(b) + (size_t)b->obs_dim);
  float *o = rl_falloc((size_t)(L->n + L->ndemos) * A);
  int rc = e && w && scratch && o ? 0 : tk_error(TK_ENOMEM, "out of memory");
  for (int d = 0; !rc && d < L->ndemos; d++) {
    const int64_t k0 = L->demo_start[d], k1 = d + 1 < L->ndemos ? L->demo_start[d + 1] : L->n;
    bc_ensemble_reset_seed(e, 0x5eed0000ull + (uint64_t)d);
    for (int64_t k = k0; !rc && k <= k1; k++) { /* k1: the state after the last step */
      const float *obs = k < k1 ? L->obs + k * R->Ds : L->next_obs + (k1 - 1) * R->Ds;
      double act[CAP_MAX_ACT];
      if (k1 > k0 && !(rc = bc_policy_step(b, w, e, obs, scratch, act)))
        for (int i = 0; i < A; i++)
          o[(k + d) * A + i] = (float)((act[i] - b->act_offset[i]) / b->act_scale[i]);
    }
  }
  bc_ensemble_free(e);
  nn_work_free(w);
  free(scratch);
  if (rc)
    free(o);
  else
    *out = o;
  return rc;
}

/* The actor's key statistics from the demos' observations: mean, std floored at 0.1 (bc-train's default
 * --obs-std-floor). */
static int demo_stats(bcPolicy *p, const dsLoaded *L) {
  const int D = p->obs_dim;
  for (int i = 0; i < D; i++) {
    double m = 0, v = 0;
    for (int64_t k = 0; k < L->n; k++)
      m += L->obs[k * D + i] / (double)L->n;
    for (int64_t k = 0; k < L->n; k++)
      v += pow(L->obs[k * D + i] - m, 2) / (double)L->n;
    p->obs_mean[i] = (float)m;
    p->obs_std[i] = (float)fmax(sqrt(v), 0.1);
  }
  return 0;
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
  float *base_act = NULL; /* residual: the base's action at every demo row and after its last */
  if (L.obs_dim != R->Ds || L.act_dim != R->A) {
    rc = tk_error(TK_EINVAL, "%s: observations %d and actions %d, the policy takes %d and %d", o->demos,
                  L.obs_dim, L.act_dim, R->Ds, R->A);
  } else if (R->res && (rc = demo_base_actions(R, f, &L, &base_act))) {
    rc = tk_error_wrap(rc, "%s", o->demos);
  } else if (R->stats_from_demos && L.n > 0 && (rc = demo_stats(R->actor, &L))) {
    rc = tk_error_wrap(rc, "%s", o->demos);
  } else if (!(rc = rl_buf_make(&R->demo, TK_MAX(L.n, 1), R->D, R->A))) {
    float *s = rl_falloc((size_t)R->D), *s2 = rl_falloc((size_t)R->D), *a = rl_falloc((size_t)R->A);
    int demo = 0;
    for (int64_t k = 0; s && s2 && a && k < L.n; k++) {
      while (demo + 1 < L.ndemos && k >= L.demo_start[demo + 1])
        demo++;
      /* a demo that failed (or does not say) trains the critics but is no target for the actor's anchor */
      const int good = ds_demo(f, L.demo_pos[demo])->success == 1;
      bc_policy_normalize(R->actor, L.obs + k * R->Ds, 1, s);
      bc_policy_normalize(R->actor, L.next_obs + k * R->Ds, 1, s2);
      if (R->res) { /* row k's base action; the next row's is k + 1's (k + demo + 1 with one extra per demo)
                     */
        memcpy(s + R->Ds, base_act + (k + demo) * R->A, sizeof(float) * (size_t)R->A);
        memcpy(s2 + R->Ds, base_act + (k + demo + 1) * R->A, sizeof(float) * (size_t)R->A);
      }
      for (int i = 0; i < R->A; i++) {
        double v = (L.actions[k * R->A + i] - R->actor->act_offset[i]) / R->actor->act_scale[i];
        a[i] = (float)fmax(-1 + 1e-6, fmin(1 - 1e-6, v));
      }
      rl_buf_push(&R->demo, s, a, L.dones[k] ? 1.0f : 0.0f, s2, L.dones[k], good);
    }
    if (!s || !s2 || !a) rc = tk_error(TK_ENOMEM, "out of memory");
    free(s);
    free(s2);
    free(a);
  }
  free(base_act);
  ds_loaded_free(&L);
  ds_close(f);
  return rc;
}

/* The data: the demos, the online replay buffer (SAC: room for every step of the run) and PPO's rollout. */
static int load_data(rlRun *R) {
  const rlOpts *o = R->o;
  int rc = 0;
  if ((rc = rl_buf_make(&R->online, R->ppo ? 1 : o->steps + R->nw, R->D, R->A))) return rc;
  if (R->ppo && (rc = rl_ppo_alloc(R))) return rc;
  return 0;
}

/* The metrics CSV, appended to (a --compare run's two runs share it); the header once. */
static int open_metrics(const rlOpts *o, FILE **csv) {
  *csv = NULL;
  if (!o->metrics) return 0;
  int exists = tk_file_exists(o->metrics);
  if (!(*csv = fopen(o->metrics, "a")))
    return tk_error(TK_EIO, "%s: cannot write the metrics file", o->metrics);
  if (!exists) fprintf(*csv, "run,env_steps,success_rate,mean_return,updates,seconds,alpha\n");
  return 0;
}

/* Go on from a checkpoint (every rank loads it; it holds rank 0's random streams, from which the other
 * ranks fork their own). */
static int resume(rlRun *R, rlResult *res, int64_t *next_eval) {
  const rlOpts *o = R->o;
  const int rank = rl_mpi_rank();
  int rc = rl_ckpt_load(R, res, next_eval, o->resume);
  if (rl_mpi_any(rc)) return rc ? rc : tk_error(TK_EIO, "another rank could not load %s", o->resume);
  if (rank > 0) { /* the checkpoint holds rank 0's streams: the others go their own way from there */
    tkRng base = R->rng;
    tk_rng_fork(&base, 7000 + (uint64_t)rank, &R->rng);
    for (int i = 0; i < R->nw; i++)
      tk_rng_fork(&base, 8000 + (uint64_t)rank * 100 + (uint64_t)i, &R->wk[i].rng);
  }
  if (!o->quiet)
    printf("%s: resumed from %s at %lld env steps, %lld updates (best %.0f%% at %lld)\n", o->label, o->resume,
           (long long)res->env_steps, (long long)res->updates, 100 * res->best_success,
           (long long)res->best_step);
  return 0;
}

/* SAC: critic warm-up on the demos, with the actor fixed (PPO warms its value function up on rollouts). */
static int warm_up_critics(rlRun *R) {
  const rlOpts *o = R->o;
  if (R->ppo || R->demo.n == 0 || o->critic_warmup <= 0) return 0;
  if (!o->quiet)
    printf("%s: warming the critics up on %lld demo transitions (%d updates)\n", o->label,
           (long long)R->demo.n, o->critic_warmup);
  int rc = 0;
  for (int u = 0; u < o->critic_warmup && !rc; u++)
    rc = rl_sac_update(R, 0);
  return rc;
}

/* ---- workers ------------------------------------------------------------------------------------- */

/* The actor's input for an observation: its keys normalized, and (residual) what the base does there. */
static int worker_state(rlWorker *w, const capObs *o, float *s, double *act) {
  rlRun *R = w->run;
  bc_gather(&R->bind, o, w->raw);
  bc_policy_normalize(R->actor, w->raw, 1, s);
  if (!R->res) return 0;
  int rc = bc_actor_step(w->base, o, act);
  for (int i = 0; !rc && i < R->A; i++)
    s[R->Ds + i] = (float)((act[i] - R->actor->act_offset[i]) / R->actor->act_scale[i]);
  return rc;
}

static int worker_reset(rlWorker *w) {
  uint64_t seed = w->seed_base + (uint64_t)w->episodes++;
  w->ep_len = 0;
  int rc = cap_env_reset(w->env, seed, &w->obs);
  if (rc) return rc;
  if (w->base) bc_actor_reset(w->base, seed);
  return worker_state(w, &w->obs, w->s, w->ab);
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
    rl_normals(&w->rng, eps, A);
    int rc = R->ppo ? rl_ppo_sample(R, w->w, w->s, eps, w->a) /* unsquashed: clipped below */
                    : nn_gauss_sample(R->actor->net, w->w, w->s, 1, eps, w->a, NULL);
    if (rc) return rc;
    rl_residual_rows(R, w->s, w->a, 1, 0);
  }
  double act[CAP_MAX_ACT];
  for (int i = 0; i < A; i++) /* residual: as the saved policy acts (bc.h), the base's action + correction */
    act[i] = fmax(
        -1, fmin(1, R->res ? w->ab[i] + R->actor->act_scale[i] * ((double)w->a[i] - w->s[R->Ds + i])
                           : R->actor->act_offset[i] + R->actor->act_scale[i] * fmax(-1, fmin(1, w->a[i]))));
  capStep st;
  int rc = cap_env_step(w->env, act, &st);
  if (rc) return rc;
  w->ep_len++;
  if ((rc = worker_state(w, &st.obs, w->s2, w->ab2))) return rc;
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
      rl_buf_push(&R->online, w->s, w->a, w->reward, w->s2, w->done, 0);
    if (w->done || w->ep_len >= horizon) {
      int rc = worker_reset(w);
      if (rc) return rc;
    } else {
      memcpy(w->s, w->s2, sizeof(float) * (size_t)R->D);
      memcpy(w->ab, w->ab2, sizeof w->ab);
    }
  }
  return 0;
}

/* The workers: one environment (own mjData), work buffer and random stream each; worker 0 runs on the
 * caller's thread, the others wait at the barrier for each step. */
static int start_workers(rlRun *R) {
  const rlOpts *o = R->o;
  const int D = R->D, A = R->A;
  const uint64_t rank = (uint64_t)rl_mpi_rank();
  nn_set_threads(1);
  for (int i = 0; i < R->nw; i++) {
    rlWorker *w = &R->wk[i];
    w->run = R;
    w->id = i;
    tk_rng_fork(&R->rng, 1000 + (uint64_t)i, &w->rng);
    w->seed_base = 3000000000ull + (uint64_t)i * 10000000ull + o->seed * 100000ull + rank * 100000000000ull;
    w->s = rl_falloc((size_t)(3 * D + A));
    if (!w->s) return tk_error(TK_ENOMEM, "out of memory");
    w->s2 = w->s + D;
    w->raw = w->s2 + D;
    w->a = w->raw + D;
    int rc = 0;
    if (R->res && !(w->base = bc_actor_make(R->actor->base, R->model)))
      return tk_error_wrap(TK_EINVAL, "worker");
    if ((rc = cap_env_make(R->model, &w->env)) || !(w->w = nn_work_make(R->actor->net, 1)) ||
        (rc = worker_reset(w)))
      return rc ? rc : tk_error_wrap(TK_ENOMEM, "worker");
  }
  if (R->nw > 1) {
    pthread_barrier_init(&R->go, NULL, (unsigned)R->nw);
    pthread_barrier_init(&R->done, NULL, (unsigned)R->nw);
    for (int i = 1; i < R->nw; i++)
      pthread_create(&R->th[i], NULL, worker_main, &R->wk[i]);
    R->threads_started = 1;
  }
  return 0;
}

static void stop_workers(rlRun *R) {
  if (R->threads_started) {
    R->quit = 1;
    pthread_barrier_wait(&R->go);
    for (int i = 1; i < R->nw; i++)
      pthread_join(R->th[i], NULL);
    pthread_barrier_destroy(&R->go);
    pthread_barrier_destroy(&R->done);
    R->threads_started = 0;
  }
  for (int i = 0; i < R->nw; i++) {
    rlWorker *w = &R->wk[i];
    cap_env_free(w->env);
    bc_actor_free(w->base);
    nn_work_free(w->w);
    free(w->s);
  }
}

/* ---- the loop's steps ----------------------------------------------------------------------------- */

/* A non-finite loss or parameter stops the run, naming where (the best policy so far is on disk). */
static int diverged(rlRun *R, rlResult *res, int rc) {
  const rlOpts *o = R->o;
  res->diverged = 1;
  return tk_error_wrap(
      rc, "%s: training diverged at %lld env steps, %lld updates; %s keeps the best policy so far", o->label,
      (long long)res->env_steps, (long long)res->updates, o->out ? o->out : "-");
}

/* Every worker of every rank takes one step (transitions stored in worker order). */
static int act(rlRun *R, rlResult *res) {
  int rc = step_all(R, R->spec->horizon);
  if (rl_mpi_any(rc))
    return rc ? rc : tk_error(TK_EIO, "another rank failed while stepping its environments");
  res->env_steps += (int64_t)R->nw * rl_mpi_size();
  return 0;
}

/* SAC: every worker takes one step, then utd updates per env step (once a batch can be drawn); the actor
 * moves from the start from scratch, past actor_delay env steps from a policy. */
static int sac_iteration(rlRun *R, rlResult *res) {
  const rlOpts *o = R->o;
  R->random_actions = !o->policy && res->env_steps < o->random_steps;
  double t = tk_now_s();
  int rc = act(R, res);
  res->act_seconds += tk_now_s() - t;
  if (rc) return rc;
  if (R->online.n < R->B / 2 && R->demo.n == 0) return 0;
  const int actor_on = !o->policy || res->env_steps > o->actor_delay;
  t = tk_now_s();
  for (int u = 0; u < o->utd * R->nw && !rc; u++) {
    rc = rl_sac_update(R, actor_on);
    res->updates = ++R->updates;
  }
  res->learn_seconds += tk_now_s() - t;
  return rc ? diverged(R, res, rc) : 0;
}

/* PPO: a rollout of pT steps on every worker and rank, then the value and actor epochs (the actor's once
 * value_warmup_iters iterations are done). */
static int ppo_iteration(rlRun *R, rlResult *res) {
  const rlOpts *o = R->o;
  int rc = 0;
  double t = tk_now_s();
  for (R->pt = 0; R->pt < R->pT; R->pt++)
    if ((rc = act(R, res))) return rc;
  res->act_seconds += tk_now_s() - t;
  t = tk_now_s();
  int64_t iter = res->env_steps / ((int64_t)R->pN * rl_mpi_size()); /* iterations done, this one included */
  double kl;
  int epochs;
  rc = rl_ppo_update(R, iter > o->value_warmup_iters, &kl, &epochs);
  res->learn_seconds += tk_now_s() - t;
  res->updates = R->updates;
  if (rc) return diverged(R, res, rc);
  if (epochs) tk_debug("%s: iteration %lld: %d actor epochs, KL %.4f", o->label, (long long)iter, epochs, kl);
  return 0;
}

/* The run ends at --steps, at the target (with stop_at_target) or on an interrupt (every rank at the same
 * step). */
static int should_stop(const rlRun *R, const rlResult *res) {
  const rlOpts *o = R->o;
  if (res->env_steps >= o->steps) return 1;
  if (rl_mpi_any(o->interrupt && *o->interrupt)) return 1;
  return o->stop_at_target && res->steps_to_target >= 0;
}

/* ---- evaluations: the success rate on held-out seeds, the metrics row, the best policy saved ------- */

/* The actor's info in the policy file; cJSON escapes the path and label (a '"' or '\\' in them made the
 * hand-built JSON invalid, and the unchecked bc_policy_set_info left info "{}") */
static int save_best(rlRun *R, int64_t step, double s) {
  const rlOpts *o = R->o;
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
  int rc = info ? bc_policy_set_info(R->actor, info) : tk_error(TK_ENOMEM, "out of memory (policy info)");
  free(info);
  if (rc) return rc;
  if (o->out && (rc = bc_policy_save(R->actor, o->out))) return rc;
  return 0;
}

static int evaluate(rlRun *R, rlResult *res, int64_t step, FILE *csv, double t0) {
  const rlOpts *o = R->o;
  bcEvalOpts eo;
  bc_eval_default(&eo);
  eo.episodes = o->eval_episodes;
  eo.seed = RL_EVAL_SEED_BASE;
  eo.workers = R->nw;
  eo.quiet = 1;
  bcEvalResult er;
  int rc = bc_evaluate(R->actor, R->model, &eo, &er);
  if (rc) return rc;
  const double s = er.success_rate, mean_return = er.mean_return;
  bc_eval_result_free(&er);
  if (res->n_evals < (int)TK_ARRAY_LEN(res->eval_step)) {
    res->eval_step[res->n_evals] = step;
    res->eval_success[res->n_evals++] = s;
  }
  if (step == 0) res->initial_success = s;
  if (csv) {
    fprintf(csv, "%s,%lld,%.4f,%.4f,%lld,%.1f,%.4g\n", o->label, (long long)step, s, mean_return,
            (long long)res->updates, tk_now_s() - t0, exp(R->log_alpha));
    fflush(csv);
  }
  if (s > res->best_success || res->best_step < 0) {
    res->best_success = s;
    res->best_step = step;
    if ((rc = save_best(R, step, s))) return rc;
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

/* ---- progress and rates --------------------------------------------------------------------------- */
typedef struct {
  tkProgress prog;
  double t_loop;            /* when the loop started */
  int64_t steps0, updates0; /* env steps and updates then (a resumed run's are not this run's) */
} runClock;

static void clock_start(const rlRun *R, const rlResult *res, runClock *c) {
  memset(c, 0, sizeof *c);
  if (!R->o->quiet) tk_progress_begin(&c->prog, R->o->label, R->o->steps);
  c->t_loop = tk_now_s();
  c->steps0 = res->env_steps;
  c->updates0 = res->updates;
}

static void clock_show(const rlRun *R, const rlResult *res, runClock *c) {
  if (R->o->quiet) return;
  double el = tk_now_s() - c->t_loop;
  tk_progress_update(&c->prog, res->env_steps, "%.0f env steps/s, %.0f updates/s, best %.0f%%",
                     el > 0 ? (res->env_steps - c->steps0) / el : 0,
                     el > 0 ? (res->updates - c->updates0) / el : 0, 100 * res->best_success);
}

static void clock_end(const rlRun *R, runClock *c) {
  if (!R->o->quiet) tk_progress_end(&c->prog);
}

static void record_rates(rlResult *res, const runClock *c, double t0) {
  double el = tk_now_s() - c->t_loop;
  res->env_steps_per_s = el > 0 ? (res->env_steps - c->steps0) / el : 0;
  res->updates_per_s = el > 0 ? (res->updates - c->updates0) / el : 0;
  res->seconds = tk_now_s() - t0;
}

/* ---- teardown ------------------------------------------------------------------------------------- */

/* With MPI ranks, their actors and critics must have stayed identical. */
static int ranks_agree(rlRun *R) {
  const rlOpts *o = R->o;
  const int nranks = rl_mpi_size();
  if (nranks < 2) return 0;
  int same = rl_mpi_same(R->actor->net->params, R->actor->net->n_params);
  for (int e = 0; e < o->ensemble; e++)
    same &= rl_mpi_same(R->q[e]->params, R->q[e]->n_params);
  if (!same) return tk_error(TK_EINVAL, "%s: the ranks' parameters differ at the end", o->label);
  if (rl_mpi_rank() == 0)
    printf("%s: %d MPI ranks; actor and critic parameters identical on every rank\n", o->label, nranks);
  return 0;
}

static void run_free(rlRun *R) {
  stop_workers(R);
  rl_learner_free(R);
  bc_policy_free(R->actor);
  rl_buf_free(&R->demo);
  rl_buf_free(&R->online);
  rl_ppo_free(R);
  cap_model_free(R->model);
}

/* ---- the run -------------------------------------------------------------------------------------- */

int rl_run(const rlOpts *opts, rlResult *res) {
  rlOpts oc;
  int rc = run_opts(opts, &oc, res);
  if (rc) return rc;
  const rlOpts *o = &oc;
  rlRun *R = calloc(1, sizeof *R);
  if (!R) return tk_error(TK_ENOMEM, "out of memory");
  R->o = o;
  R->ppo = !strcmp(o->algo, "ppo");
  FILE *csv = NULL;

  /* setup: the task and the actor, sizes, the learner, the data, the workers, the metrics file (every
   * buffer the loop uses is allocated here, once); then a checkpoint to go on from, or the critics'
   * warm-up and the first evaluation */
  if ((rc = load_task_and_actor(R))) goto done;
  size_run(R);
  /* the demos first: opening a file may fork its watchdog's child, which is safest while this process
   * has no threads of its own yet (the learner's team starts in rl_learner_make) */
  if ((R->o->demos && (rc = load_demos(R))) || (rc = rl_learner_make(R)) || (rc = load_data(R)) ||
      (rc = start_workers(R)) || (rc = open_metrics(o, &csv)))
    goto done;
  const double t0 = tk_now_s();
  int64_t next_eval = o->eval_every;
  if (o->resume) {
    rc = resume(R, res, &next_eval);
  } else {
    double t = tk_now_s();
    rc = warm_up_critics(R);
    res->warmup_seconds += tk_now_s() - t;
    t = tk_now_s();
    if (!rc) rc = evaluate_all(R, res, 0, csv, t0);
    res->eval_seconds += tk_now_s() - t;
  }
  if (rc) goto done;

  /* the loop: the workers act and the learner updates (SAC: utd updates per env step; PPO: a rollout,
   * then its epochs); every eval_every env steps an evaluation (the best policy saved) and a checkpoint */
  runClock clk;
  clock_start(R, res, &clk);
  while (!should_stop(R, res)) {
    if ((rc = R->ppo ? ppo_iteration(R, res) : sac_iteration(R, res))) break;
    if (res->env_steps >= next_eval) {
      next_eval += o->eval_every;
      double t = tk_now_s();
      rc = evaluate_all(R, res, res->env_steps, csv, t0);
      if (!rc && o->checkpoint) rc = rl_ckpt_save(R, res, next_eval, o->checkpoint);
      res->eval_seconds += tk_now_s() - t;
      if (rc) break;
    }
    clock_show(R, res, &clk);
  }
  clock_end(R, &clk);

  /* teardown: the ranks agree, the last checkpoint, the rates */
  if (!rc) rc = ranks_agree(R);
  if (!rc && o->checkpoint && (rc = rl_ckpt_save(R, res, next_eval, o->checkpoint))) goto done;
  if (!rc && o->checkpoint && !o->quiet) printf("%s: checkpoint %s\n", o->label, o->checkpoint);
  record_rates(res, &clk, t0);
done:
  if (csv) fclose(csv);
  run_free(R);
  free(R);
  return rc;
}
