/* capture/cap_expert.c -- scripted operators: a proportional "expert" per task that drives the
 * end-effector action the way a competent operator would. Each task's hands are in its own file
 * (capture/tasks/NAME.c, the row's expert); here is what every task's operator shares: noise adds
 * what people do: hesitation, jittery hands, overshoot, a wrong first grasp, misjudging where the
 * target is, and now and then giving up. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cap_task.h"

int cap_expert_make(const capModel *m, double noise, uint64_t seed, capExpert **out) {
  *out = NULL;
  if (!m->task) return tk_error(TK_EINVAL, "no scripted operator for a free scene");
  if (!m->task->expert) return tk_error(TK_EINVAL, "task %s has no scripted operator", m->task->name);
  if (m->opts.action_mode != CAP_ACT_EEF)
    return tk_error(TK_EINVAL, "the scripted operator drives end-effector actions");
  if (!(noise >= 0 && noise <= 1)) return tk_error(TK_EINVAL, "noise %g not in [0,1]", noise);
  capExpert *x = calloc(1, sizeof *x);
  if (!x) return tk_error(TK_ENOMEM, "out of memory");
  x->cm = m;
  x->noise = noise;
  cap_expert_reset(x, seed);
  *out = x;
  return 0;
}

void cap_expert_free(capExpert *x) { free(x); }

/* The person for this episode: every trait is drawn, in this order, whatever the task. */
void cap_expert_reset(capExpert *x, uint64_t seed) {
  tk_rng_seed(&x->rng, seed ^ 0x5DEECE66DULL);
  x->ph = 0;
  x->wait = x->hesitate = x->attempts = x->steps = x->held = 0;
  double n = x->noise;
  x->gain = 1.0 + n * tk_rng_range(&x->rng, 0.0, 1.5);
  /* the wrong first grasp: off by 2-3.5 cm, more often with more noise */
  x->grasp_off[0] = x->grasp_off[1] = 0;
  if (tk_rng_uniform(&x->rng) < 1.2 * n) {
    double ang = tk_rng_range(&x->rng, 0, 2 * M_PI), r = tk_rng_range(&x->rng, 0.02, 0.035);
    x->grasp_off[0] = r * cos(ang);
    x->grasp_off[1] = r * sin(ang);
  }
  /* misjudging where the target is (depth is hard to see on a screen): this demo fails */
  x->misjudge = tk_rng_uniform(&x->rng) < 0.5 * n;
  double th = tk_rng_range(&x->rng, 0, 2 * M_PI), ph = tk_rng_range(&x->rng, -0.5, 0.5),
         r = tk_rng_range(&x->rng, 0.07, 0.1);
  x->off[0] = r * cos(th) * cos(ph);
  x->off[1] = r * sin(th) * cos(ph);
  x->off[2] = r * sin(ph);
  /* some operators give up: a deadline well inside the horizon */
  x->gives_up_at =
      tk_rng_uniform(&x->rng) < 0.3 * n ? (int)(x->cm->cfg.horizon * tk_rng_range(&x->rng, 0.3, 0.7)) : 0;
}

/* ---- motions the tasks' hands share ---- */
void cap_expert_toward(capExpert *x, const double *eef, const double *p, double k, double *a) {
  for (int i = 0; i < 3; i++)
    a[i] = cap_clampd((p[i] - eef[i]) * k * x->gain / 0.05, -1, 1);
}

void cap_expert_try_again(capExpert *x) {
  x->attempts++;
  x->ph = 0;
  x->wait = 0;
}

void cap_expert_retreat(capExpert *x, const double *eef, double z, int done, double *a) {
  const double up[3] = {eef[0], eef[1], z};
  cap_expert_toward(x, eef, up, 0.5, a);
  a[0] = a[1] = 0;
  if (x->wait > 20 && !done) cap_expert_try_again(x);
}

double cap_expert_dist(const double *a, const double *b, int n) {
  double s = 0;
  for (int i = 0; i < n; i++)
    s += (a[i] - b[i]) * (a[i] - b[i]);
  return sqrt(s);
}

double cap_expert_yaw_error(const capEnv *e, int k) {
  const double *R = e->d->site_xmat + 9 * e->cm->site_eef; /* columns: site x, y, z axes */
  double gyaw = atan2(R[3], R[0]);
  double err = cap_task_object_yaw(e, k) - gyaw;
  while (err > M_PI / 4)
    err -= M_PI / 2;
  while (err < -M_PI / 4)
    err += M_PI / 2;
  return err;
}

void cap_expert_keep_down(const capEnv *e, double *a) {
  const double *R = e->d->site_xmat + 9 * e->cm->site_eef;
  double z[3] = {R[2], R[5], R[8]}; /* site z in world */
  /* rotate z toward (0,0,-1): axis = z x down */
  double ax = z[1] * -1 - z[2] * 0, ay = z[2] * 0 - z[0] * -1;
  a[3] = cap_clampd(ax * 4, -1, 1);
  a[4] = cap_clampd(ay * 4, -1, 1);
}

int cap_expert_act(capExpert *x, const capEnv *e, double *a) {
  const capModel *cm = x->cm;
  const capTaskDef *t = cm->task;
  memset(a, 0, sizeof(double) * (size_t)cm->spec.action_dim);
  x->steps++;
  x->wait++;
  double eef[3], cube[3] = {0, 0, 0}, goal[3];
  cap_env_eef_pos(e, eef);
  cap_env_goal_pos(e, goal);
  if (cm->nobj) cap_env_object_pos(e, cube);
  if (x->misjudge)
    for (int i = 0; i < t->misjudge_dims; i++)
      goal[i] += x->off[i];
  double n = x->noise;
  a[6] = -1;                                                  /* open unless the task closes it */
  if (x->gives_up_at && x->steps >= x->gives_up_at) return 0; /* hands off: this demo fails */
  if (x->hesitate > 0) {
    x->hesitate--;
    if (t->expert_idle_grip) a[6] = t->expert_idle_grip(x);
    return 0;
  }
  if (n > 0 && tk_rng_uniform(&x->rng) < 0.04 * n) x->hesitate = (int)tk_rng_range(&x->rng, 2, 2 + 10 * n);
  t->expert(x, e, eef, goal, cube, a);
  /* shaky hands */
  for (int i = 0; i < 3; i++)
    a[i] = cap_clampd(a[i] + n * 0.3 * tk_rng_normal(&x->rng), -1, 1);
  return 0;
}

int cap_expert_wants_end(capExpert *x, const capEnv *e, int *success) {
  x->held = cap_env_success(e) ? x->held + 1 : 0;
  if (x->held >= 5) {
    *success = 1;
    return 1;
  }
  /* a person gives up a while after they stop trying, or when time is nearly out */
  if ((x->gives_up_at && x->steps >= x->gives_up_at + 10) || x->steps >= (int)(0.9 * x->cm->cfg.horizon)) {
    *success = 0;
    return 1;
  }
  return 0;
}
