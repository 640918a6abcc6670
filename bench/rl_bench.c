/* bench/rl_bench.c -- RL fine-tuning throughput on lift, and the raw environment speed under it.
 *
 *   env_t1_steps_per_s    cap_env_step with uniform random actions, one thread, one environment
 *   env_t2_steps_per_s    two threads, each with its own environment (total over both)
 *   rl_w<N>_*             rl_run with learning on (SAC, one update per env step, default batch 256,
 *                         ensemble 2, hidden 256) from a BC policy made here in-process (lift's robomimic
 *                         keys object(10), robot0_eef_pos(3), robot0_eef_quat(4), robot0_gripper_qpos(2);
 *                         hidden 256,256; MSE head with tanh; saved to a temp file), no demos, actor_delay 0,
 *                         one 1-episode evaluation at step 0 (outside the timed loop), for N = 1, 2 workers
 * Prints name=value lines. Usage:
 *   rl_bench [--env-steps N] [--steps N] [--workers 1,2] [--dir DIR]
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rl.h"

typedef struct {
  const capModel *m;
  int64_t steps;
  uint64_t seed;
  double seconds;
  int rc;
} envJob;

/* steps with uniform random actions, resetting at the end of every episode */
static void *env_job(void *arg) {
  envJob *j = arg;
  const capSpec *sp = cap_spec(j->m);
  capEnv *e = NULL;
  capObs obs;
  capStep st;
  tkRng r;
  tk_rng_seed(&r, j->seed);
  if ((j->rc = cap_env_make(j->m, &e)) || (j->rc = cap_env_reset(e, j->seed, &obs))) {
    cap_env_free(e);
    return NULL;
  }
  double a[CAP_MAX_ACT];
  uint64_t ep = 0;
  double t0 = tk_now_s();
  for (int64_t s = 0; s < j->steps && !j->rc; s++) {
    for (int i = 0; i < sp->action_dim; i++)
      a[i] = tk_rng_range(&r, -1, 1);
    if ((j->rc = cap_env_step(e, a, &st))) break;
    if (st.terminated || st.truncated) j->rc = cap_env_reset(e, j->seed + ++ep, &obs);
  }
  j->seconds = tk_now_s() - t0;
  cap_env_free(e);
  return NULL;
}

/* total env steps/s over `threads` threads, each with its own environment and `steps` steps */
static int env_rate(const capModel *m, int threads, int64_t steps, double *rate) {
  envJob jobs[8];
  pthread_t th[8];
  for (int i = 0; i < threads; i++) {
    jobs[i] = (envJob){.m = m, .steps = steps, .seed = 100 + 1000 * (uint64_t)i};
    if (i && pthread_create(&th[i], NULL, env_job, &jobs[i])) return tk_error(TK_EIO, "pthread_create");
  }
  double t0 = tk_now_s();
  env_job(&jobs[0]);
  for (int i = 1; i < threads; i++)
    pthread_join(th[i], NULL);
  double wall = tk_now_s() - t0;
  for (int i = 0; i < threads; i++)
    if (jobs[i].rc) return jobs[i].rc;
  *rate = (double)steps * threads / wall;
  return 0;
}

/* the BC policy rl_run starts from: lift's robomimic keys, 256,256, MSE with tanh, fresh weights */
static int make_policy(const capModel *m, const char *path) {
  const capSpec *sp = cap_spec(m);
  const char *keys[4] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
  const int dims[4] = {10, 3, 4, 2};
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = 19;
  a.act_dim = sp->action_dim;
  a.n_hidden = 2;
  a.hidden[0] = a.hidden[1] = 256;
  a.head = NN_HEAD_MSE;
  a.tanh = 1;
  bcPolicy *p = bc_policy_make(&a, 4, keys, dims, 1);
  if (!p) return tk_error_wrap(TK_EINVAL, "bc_policy_make");
  snprintf(p->task, sizeof p->task, "%s", sp->task);
  p->control_hz = sp->control_hz;
  int rc = bc_policy_save(p, path);
  bc_policy_free(p);
  return rc;
}

int main(int argc, char **argv) {
  int64_t env_steps = 3000, rl_steps = 3000;
  const char *dir = "/tmp";
  int wl[8] = {1, 2}, nwl = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--env-steps") && i + 1 < argc)
      env_steps = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
      rl_steps = atoll(argv[++i]);
    else if ((!strcmp(argv[i], "--dir") || !strcmp(argv[i], "--tmp")) && i + 1 < argc)
      dir = argv[++i];
    else if (!strcmp(argv[i], "--workers") && i + 1 < argc) {
      nwl = 0;
      for (char *s = strtok(argv[++i], ","); s && nwl < 8; s = strtok(NULL, ","))
        wl[nwl++] = atoi(s);
    } else {
      fprintf(stderr, "usage: rl_bench [--env-steps N] [--steps N] [--workers 1,2] [--dir DIR]\n");
      return 2;
    }
  }
  if (env_steps < 1 || rl_steps < 1) {
    fprintf(stderr, "rl_bench: --env-steps and --steps must be at least 1\n");
    return 2;
  }
  for (int k = 0; k < nwl; k++)
    if (wl[k] < 1 || wl[k] > 64) {
      fprintf(stderr, "rl_bench: --workers: 1..64 each\n");
      return 2;
    }
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  printf("task=lift cores=%ld env_steps=%lld rl_steps=%lld\n", cores, (long long)env_steps,
         (long long)rl_steps);
  fflush(stdout);

  /* the raw environment */
  capOpts co;
  cap_opts_default(&co);
  co.task = "lift";
  capModel *m = NULL;
  if (cap_model_load(&co, &m)) {
    tk_die_msg("rl_bench");
    return 1;
  }
  double r1 = 0, r2 = 0;
  if (env_rate(m, 1, env_steps, &r1) || env_rate(m, 2, env_steps, &r2)) {
    tk_die_msg("rl_bench");
    cap_model_free(m);
    return 1;
  }
  printf("env_t1_steps_per_s=%.0f\nenv_t1_us_per_step=%.1f\nenv_t2_steps_per_s=%.0f\nenv_t2_speedup=%.2f\n",
         r1, 1e6 / r1, r2, r2 / r1);
  fflush(stdout);

  /* rl_run with learning on */
  char pol[4200], out[4200];
  snprintf(pol, sizeof pol, "%s/rl_bench_bc.%d.h5", dir, (int)getpid());
  snprintf(out, sizeof out, "%s/rl_bench_ft.%d.h5", dir, (int)getpid());
  if (make_policy(m, pol)) {
    tk_die_msg("rl_bench");
    cap_model_free(m);
    return 1;
  }
  cap_model_free(m);
  int rc = 0;
  double w1_env = 0;
  for (int k = 0; k < nwl && !rc; k++) {
    rlOpts o;
    rl_opts_default(&o);
    o.policy = pol;
    o.out = out;
    o.metrics = NULL;
    o.label = "bench";
    o.steps = rl_steps;
    o.workers = wl[k];
    o.eval_every = rl_steps * 10 + 1000000;
    o.eval_episodes = 1;
    o.actor_delay = 0;
    o.stop_at_target = 0;
    o.quiet = 1;
    rlResult r;
    if ((rc = rl_run(&o, &r))) break;
    if (wl[k] == 1) w1_env = r.env_steps_per_s;
    printf(
        "rl_w%d_env_steps=%lld\nrl_w%d_updates=%lld\nrl_w%d_env_steps_per_s=%.0f\nrl_w%d_updates_per_s=%.0f\n"
        "rl_w%d_seconds=%.2f\n",
        wl[k], (long long)r.env_steps, wl[k], (long long)r.updates, wl[k], r.env_steps_per_s, wl[k],
        r.updates_per_s, wl[k], r.seconds);
    if (wl[k] > 1 && w1_env > 0) printf("rl_w%d_speedup_over_w1=%.2f\n", wl[k], r.env_steps_per_s / w1_env);
    const double loop = r.act_seconds + r.learn_seconds;
    if (loop > 0) /* of the loop's time (acting and learning; this run's one evaluation left out) */
      printf("rl_w%d_learner_fraction=%.2f\nrl_w%d_acting_fraction=%.2f\n", wl[k], r.learn_seconds / loop,
             wl[k], r.act_seconds / loop);
    if (r.diverged) printf("rl_w%d_diverged=1\n", wl[k]);
    fflush(stdout);
  }
  unlink(pol);
  unlink(out);
  if (rc) {
    tk_die_msg("rl_bench");
    return 1;
  }
  return 0;
}
