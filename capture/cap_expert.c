

/* capture/cap_expert.c -- scripted operators: a proportional "expert" per task that drives
 * the end-effector action the way a competent operator would. noise adds what people do:
 * hesitation, jittery hands, overshoot, a wrong first grasp, and now and then giving up. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cap_internal.h"

typedef enum { PH_APPROACH = 0, PH_DESCEND, PH_CLOSE, PH_LIFT, PH_BEHIND, PH_LOWER, PH_PUSH, PH_HOLD } phase;

struct capExpert {
  const capModel *cm;
  double noise;
  tkRng rng;
  phase ph;
  int wait;            /* steps spent in the current phase */
  int hesitate;        /* steps of doing nothing left */
  int attempts;        /* grasp attempts so far */
  double grasp_off[2]; /* lift: the wrong first grasp's xy offset */
  double gain;         /* overshoot: a gain above 1 for this episode */
  int gives_up_at;     /* step at which this operator gives up (0: never) */
  int misjudge;        /* this episode the operator misjudges the target (depth, position, height) */
  double off[3];       /* ... by this much */
  double low[3];       /* push: where the fingertip goes down, fixed when the descent starts */
  int steps;
  int held; /* steps the task's success has held */
};

int cap_expert_make(const capModel *m, double noise, uint64_t seed, capExpert **out) {
  *out = NULL;
  if (m->task == TASK_FREE) return tk_error(TK_EINVAL, "no scripted operator for a free scene");
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

void cap_expert_reset(capExpert *x, uint64_t seed) {
  tk_rng_seed(&x->rng, seed ^ 0x5DEECE66DULL);
  x->ph = x->cm->task == TASK_PUSH ? PH_BEHIND : PH_APPROACH;
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

static double clampd(double v, double lo, double hi) { return v < lo ? lo : v > hi ? hi : v; }

/* Move toward p (world): proportional, saturating at full stick. */
static void toward(capExpert *x, const double *eef, const double *p, double k, double *a) {
  for (int i = 0; i < 3; i++)
    a[i] = clampd((p[i] - eef[i]) * k * x->gain / 0.05, -1, 1);
}

static double dist(const double *a, const double *b, int n) {
  double s = 0;
  for (int i = 0; i < n; i++)
    s += (a[i] - b[i]) * (a[i] - b[i]);
  return sqrt(s);
}

/* Yaw error between the gripper and the cube, modulo 90 degrees (a cube looks the same). */
static double yaw_error(const capEnv *e) {
  const mjData *d = e->d;
  const capModel *cm = e->cm;
  const double *R = d->site_xmat + 9 * cm->site_eef; /* columns: site x, y, z axes */
  double gyaw = atan2(R[3], R[0]);
  const double *q = d->xquat + 4 * cm->body_cube;
  double cyaw = atan2(2 * (q[0] * q[3] + q[1] * q[2]), 1 - 2 * (q[2] * q[2] + q[3] * q[3]));
  double err = cyaw - gyaw;
  while (err > M_PI / 4)
    err -= M_PI / 2;
  while (err < -M_PI / 4)
    err += M_PI / 2;
  return err;
}

/* Keep the gripper pointing straight down: rotation action from the site's z axis. */
static void keep_down(const capEnv *e, double *a) {
  const double *R = e->d->site_xmat + 9 * e->cm->site_eef;
  double z[3] = {R[2], R[5], R[8]}; /* site z in world */
  /* rotate z toward (0,0,-1): axis = z x down */
  double ax = z[1] * -1 - z[2] * 0, ay = z[2] * 0 - z[0] * -1;
  a[3] = clampd(ax * 4, -1, 1);
  a[4] = clampd(ay * 4, -1, 1);
}

int cap_expert_act(capExpert *x, const capEnv *e, double *a) {
  const capModel *cm = x->cm;
  memset(a, 0, sizeof(double) * (size_t)cm->spec.action_dim);
  x->steps++;
  x->wait++;
  double eef[3], cube[3] = {0, 0, 0}, goal[3];
  cap_env_eef_pos(e, eef);
  cap_env_goal_pos(e, goal);
  if (cm->body_cube >= 0) cap_env_object_pos(e, cube);
  if (x->misjudge && cm->task != TASK_LIFT)
    for (int i = 0; i < (cm->task == TASK_PUSH ? 2 : 3); i++)
      goal[i] += x->off[i];
  double n = x->noise;
  a[6] = -1;                                                  /* open unless a phase closes it */
  if (x->gives_up_at && x->steps >= x->gives_up_at) return 0; /* hands off: this demo fails */
  if (x->hesitate > 0) {
    x->hesitate--;
    if (x->ph >= PH_CLOSE && cm->task == TASK_LIFT) a[6] = 1;
    return 0;
  }
  if (n > 0 && tk_rng_uniform(&x->rng) < 0.04 * n) x->hesitate = (int)tk_rng_range(&x->rng, 2, 2 + 10 * n);
  const double hover = 0.08;
  switch (cm->task) {
  case TASK_REACH: toward(x, eef, goal, 0.6, a); break;
  case TASK_LIFT: {
    double tgt[3] = {cube[0], cube[1], cube[2]};
    if (x->attempts == 0) {
      tgt[0] += x->grasp_off[0];
      tgt[1] += x->grasp_off[1];
    }
    keep_down(e, a);
    a[5] = clampd(yaw_error(e) * 3, -1, 1);
    if (x->ph == PH_APPROACH || x->ph == PH_DESCEND) {
      /* one funnel, as people do it: come down as the hand lines up over the cube, so the
       * action is a smooth function of where the hand is (no hover-then-descend switch that
       * a policy without memory could not see) */
      double xy = dist(eef, tgt, 2), yaw = fabs(yaw_error(e));
      double s = clampd((xy - 0.006) / 0.03, 0, 1);
      s = fmax(s, clampd((yaw - 0.25) / 0.2, 0, 1)); /* fingers close on a cube turned up to ~15 deg */
      double at[3] = {tgt[0], tgt[1], cube[2] + hover * s};
      toward(x, eef, at, 0.6, a);
      if ((fabs(eef[2] - cube[2]) < 0.008 && xy < 0.012) || x->wait > 60) {
        x->ph = PH_CLOSE;
        x->wait = 0;
      }
    } else if (x->ph == PH_CLOSE) {
      a[6] = 1;
      if (x->wait > 6) {
        x->ph = PH_LIFT;
        x->wait = 0;
      }
    } else { /* PH_LIFT */
      a[6] = 1;
      /* a misjudging operator stops lifting short of the mark */
      double up[3] = {eef[0], eef[1],
                      e->rest_z + (x->misjudge ? 0.6 : 1.0) * cm->cfg.lift_height +
                          (x->misjudge ? 0.0 : 0.06)};
      toward(x, eef, up, 0.5, a);
      a[0] = a[1] = 0;
      /* the cube did not come along: open, go back up, try again */
      if (x->wait > 15 && cube[2] < e->rest_z + 0.01) {
        x->attempts++;
        x->ph = PH_APPROACH;
        x->wait = 0;
      }
    }
    break;
  }
  case TASK_PUSH: {
    /* push along the cube-to-goal line from behind the cube */
    double dx = goal[0] - cube[0], dy = goal[1] - cube[1], L = sqrt(dx * dx + dy * dy);
    double ux = L > 1e-6 ? dx / L : 1, uy = L > 1e-6 ? dy / L : 0;
    double half = cm->cfg.cube_half, back = half + 0.05;
    double behind[3] = {cube[0] - ux * back, cube[1] - uy * back, cube[2] + hover};
    keep_down(e, a);
    a[6] = 1; /* a closed gripper pushes better */
    /* where the fingertip is relative to the pushing line decides what to do (no phases), and the
     * action changes smoothly with it: a policy that sees the same state can learn the same action,
     * with no edge where "push" flips to "lift the hand 8 cm" (BC averages such a flip into a hand
     * that drifts up and never comes back) */
    double rx = eef[0] - cube[0], ry = eef[1] - cube[1];
    double nx = -uy, ny = ux, side = nx * rx + ny * ry, along = ux * rx + uy * ry;
    double height = eef[2] - cube[2];
    /* how much the fingertip is in the lane behind the cube: 1 inside, 0 off it, a ramp between */
    double w = clampd((0.035 - fabs(side)) / 0.015, 0, 1) * clampd((-half * 0.5 - along) / 0.01, 0, 1) *
               clampd((back + 0.04 + along) / 0.015, 0, 1) * clampd((0.045 - height) / 0.02, 0, 1);
    /* pushing: along the line at a speed that falls with the distance left (a cube shoved at full
     * speed slides past the goal) and with the height (come down first), steering back onto the line */
    double left = L - cm->cfg.success_dist * 0.3;
    double speed = clampd(left * 3.0, 0.0, 0.3) * x->gain * clampd((0.03 - height) / 0.02, 0, 1);
    double push[3] = {ux * speed - side * nx * 3.0, uy * speed - side * ny * 3.0, (cube[2] - eef[2]) * 10};
    /* getting behind the cube: high while away from the spot, coming down as the hand gets there */
    double xy = dist(eef, behind, 2);
    double s = clampd((xy - 0.006) / 0.03, 0, 1);
    double at[3] = {behind[0], behind[1], cube[2] + hover * s}, go[3];
    toward(x, eef, at, 0.6, go);
    for (int i = 0; i < 3; i++)
      a[i] = clampd(w * push[i] + (1 - w) * go[i], -1, 1);
    break;
  }
  default: break;
  }
  /* shaky hands */
  for (int i = 0; i < 3; i++)
    a[i] = clampd(a[i] + n * 0.3 * tk_rng_normal(&x->rng), -1, 1);
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
