/* bench/cap_bench.c -- environment cost against raw physics on the same model, same motion.
 *
 * 1. The env runs the scripted lift expert for N control steps; only cap_env_step is timed.
 *    Every control step's ctrl is recorded, with the state at each reset.
 * 2. Raw: the same model, the same starting states, the same ctrl sequence, plain mj_step
 *    (nsub per control step, gravity compensation done the same way) -- what the physics
 *    alone costs for that motion.
 * 3. The env loop in two threads on one model.
 * Prints name=value lines. Usage: cap_bench [--steps N] [--task NAME | --all-tasks]
 * (--all-tasks: every built-in task in turn, each block starting with its task=NAME line) */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap.h"
#include "cap_internal.h"
#include "tk.h"

typedef struct {
  const capModel *m;
  int steps;
  uint64_t seed;
  double env_seconds; /* time inside cap_env_step */
  double *ctrl;       /* steps x nu, recorded */
  double *starts;     /* per episode: state at reset */
  int *start_step;    /* control step at which each episode starts */
  int episodes;
} runArg;

static void *run_env(void *p) {
  runArg *r = p;
  const capModel *cm = r->m;
  const capSpec *s = cap_spec(cm);
  capEnv *e;
  capExpert *x;
  if (cap_env_make(cm, &e) || cap_expert_make(cm, 0.0, r->seed, &x)) return NULL;
  int nu = cm->m->nu;
  r->episodes = 0;
  r->env_seconds = 0;
  int t = 0;
  uint64_t ep = r->seed * 1000;
  while (t < r->steps) {
    capObs o;
    cap_env_reset(e, ep, &o);
    cap_expert_reset(x, ep);
    if (r->starts) {
      cap_env_get_state(e, r->starts + (size_t)r->episodes * (size_t)s->state_dim);
      r->start_step[r->episodes] = t;
    }
    r->episodes++;
    ep++;
    for (int k = 0; k < s->horizon && t < r->steps; k++, t++) {
      double a[8];
      capStep st;
      cap_expert_act(x, e, a);
      double t0 = tk_now_s();
      cap_env_step(e, a, &st);
      r->env_seconds += tk_now_s() - t0;
      if (r->ctrl) memcpy(r->ctrl + (size_t)t * (size_t)nu, e->d->ctrl, sizeof(double) * (size_t)nu);
    }
  }
  cap_expert_free(x);
  cap_env_free(e);
  return NULL;
}

/* The same motion with nothing but the physics. */
static double run_raw(const capModel *cm, const runArg *r) {
  const mjModel *m = cm->m;
  mjData *d = mj_makeData(m);
  capEnv *e;
  cap_env_make(cm, &e); /* only to unpack the recorded start states */
  int nu = m->nu;
  double secs = 0;
  for (int ep = 0; ep < r->episodes; ep++) {
    capObs o;
    cap_env_set_state(e, r->starts + (size_t)ep * (size_t)cap_spec(cm)->state_dim, &o);
    mj_copyData(d, m, e->d);
    int end = ep + 1 < r->episodes ? r->start_step[ep + 1] : r->steps;
    double t0 = tk_now_s();
    for (int t = r->start_step[ep]; t < end; t++) {
      memcpy(d->ctrl, r->ctrl + (size_t)t * (size_t)nu, sizeof(double) * (size_t)nu);
      for (int k = 0; k < cm->nsub; k++) {
        mj_step1(m, d);
        for (int i = 0; i < cm->narm; i++)
          d->qfrc_applied[cm->arm_dadr[i]] = d->qfrc_bias[cm->arm_dadr[i]];
        mj_step2(m, d);
      }
    }
    secs += tk_now_s() - t0;
  }
  cap_env_free(e);
  mj_deleteData(d);
  return secs;
}

static int bench_task(const char *task, int steps) {
  capOpts o;
  cap_opts_default(&o);
  o.task = task;
  capModel *cm;
  if (cap_model_load(&o, &cm)) {
    tk_die_msg("cap_bench");
    return 1;
  }
  const capSpec *s = cap_spec(cm);
  runArg r = {.m = cm, .steps = steps, .seed = 1};
  r.ctrl = malloc(sizeof(double) * (size_t)steps * (size_t)cm->m->nu);
  int maxep = steps / 1 + 1;
  r.starts = malloc(sizeof(double) * (size_t)maxep * (size_t)s->state_dim);
  r.start_step = malloc(sizeof(int) * (size_t)maxep);
  run_env(&r); /* warm-up and recording */
  run_env(&r);
  double raw = run_raw(cm, &r);
  double env = r.env_seconds;
  int64_t phys = (int64_t)steps * cm->nsub;
  printf("task=%s\ncontrol_hz=%.0f\nphysics_steps_per_control_step=%d\n", task, s->control_hz, cm->nsub);
  printf("raw_mj_step_per_s=%.0f\nenv_physics_steps_per_s_1thread=%.0f\nenv_steps_per_s_1thread=%.0f\n",
         (double)phys / raw, (double)phys / env, (double)steps / env);
  printf("env_overhead_pct=%.2f\n", 100.0 * (env - raw) / raw);

  /* two threads, one model */
  runArg t2[2] = {{.m = cm, .steps = steps, .seed = 2}, {.m = cm, .steps = steps, .seed = 3}};
  pthread_t th[2];
  double w0 = tk_now_s();
  for (int i = 0; i < 2; i++)
    pthread_create(&th[i], NULL, run_env, &t2[i]);
  for (int i = 0; i < 2; i++)
    pthread_join(th[i], NULL);
  double wall2 = tk_now_s() - w0;
  runArg t1 = {.m = cm, .steps = steps, .seed = 2};
  w0 = tk_now_s();
  run_env(&t1);
  double wall1 = tk_now_s() - w0;
  printf("env_steps_per_s_1thread_wall=%.0f\nenv_steps_per_s_2threads_wall=%.0f\nscaling_2threads=%.2f\n",
         steps / wall1, 2 * steps / wall2, (2 * steps / wall2) / (steps / wall1));
  free(r.ctrl);
  free(r.starts);
  free(r.start_step);
  cap_model_free(cm);
  return 0;
}

int main(int argc, char **argv) {
  int steps = 3000, all = 0;
  const char *task = "lift";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--steps") && i + 1 < argc)
      steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--task") && i + 1 < argc)
      task = argv[++i];
    else if (!strcmp(argv[i], "--all-tasks"))
      all = 1;
    else {
      fprintf(stderr, "usage: cap_bench [--steps N] [--task NAME | --all-tasks]\n");
      return 2;
    }
  }
  if (!all) return bench_task(task, steps);
  char names[512];
  snprintf(names, sizeof names, "%s", cap_task_names());
  int rc = 0;
  for (char *save = NULL, *t = strtok_r(names, ", ", &save); t && !rc; t = strtok_r(NULL, ", ", &save))
    rc = bench_task(t, steps);
  return rc;
}
