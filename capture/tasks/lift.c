/* capture/tasks/lift.c -- task "lift": grasp the cube and lift it 4 cm off the table.
 * Model: capture/models/lift.xml (body `cube` with a free joint; no goal marker). */
#include <math.h>
#include <string.h>

#include "cap_task.h"

#define LIFT_HEIGHT 0.04 /* m: success once the cube is this far above its resting height */
#define HOVER 0.08       /* m: the operator's hand comes down from this high above the cube */

/* the scripted operator's phases (capExpert.ph) */
enum { PH_APPROACH = 0, PH_DESCEND, PH_CLOSE, PH_LIFT };

/* the goal (for cap_env_goal_pos and the state) is the cube's spot raised by the lift height */
static void reset(capEnv *e) {
  const capModel *cm = e->cm;
  cap_task_place_cube(e);
  int qa = cm->m->jnt_qposadr[cm->obj_jnt[0]];
  e->goal[0] = e->d->qpos[qa];
  e->goal[1] = e->d->qpos[qa + 1];
  e->goal[2] = e->d->qpos[qa + 2] + LIFT_HEIGHT;
}

/* object (10): cube position (3), cube quaternion (4), cube - grip_site (3) */
static void object_obs(const capEnv *e, const double eef[3], double *ob) {
  const capModel *cm = e->cm;
  const double *cp = e->d->xpos + 3 * cm->obj_body[0], *cq = e->d->xquat + 4 * cm->obj_body[0];
  memcpy(ob, cp, 3 * sizeof(double));
  memcpy(ob + 3, cq, 4 * sizeof(double));
  for (int i = 0; i < 3; i++)
    ob[7 + i] = cp[i] - eef[i];
}

static int success(const capEnv *e) {
  return e->d->xpos[3 * e->cm->obj_body[0] + 2] > e->rest_z + LIFT_HEIGHT;
}

/* reaching the cube, holding it between the fingers, raising it */
static double reward(const capEnv *e) {
  double eef[3];
  cap_env_eef_pos(e, eef);
  const double *cp = e->d->xpos + 3 * e->cm->obj_body[0];
  double reach = 1.0 - tanh(10.0 * cap_dist3(eef, cp));
  double grasp = cap_dist3(eef, cp) < 0.02 && cap_env_gripper(e) > 0.3 ? 0.25 : 0.0;
  double lift = cap_clampd((cp[2] - e->rest_z) / LIFT_HEIGHT, 0, 1);
  return 0.25 * reach + grasp + 0.4 * lift;
}

/* Over the cube (off by the wrong first grasp on the first attempt), turned to its yaw, down, close,
 * up; when the cube does not come along, open and try again. A misjudging operator stops lifting
 * short of the mark (the goal itself is not used). */
static void expert(capExpert *x, const capEnv *e, const double eef[3], const double goal[3],
                   const double cube[3], double *a) {
  (void)goal;
  double tgt[3] = {cube[0], cube[1], cube[2]};
  if (x->attempts == 0) {
    tgt[0] += x->grasp_off[0];
    tgt[1] += x->grasp_off[1];
  }
  cap_expert_keep_down(e, a);
  a[5] = cap_clampd(cap_expert_yaw_error(e, 0) * 3, -1, 1);
  if (x->ph == PH_APPROACH || x->ph == PH_DESCEND) {
    /* one funnel, as people do it: come down as the hand lines up over the cube, so the
     * action is a smooth function of where the hand is (no hover-then-descend switch that
     * a policy without memory could not see) */
    double xy = cap_expert_dist(eef, tgt, 2), yaw = fabs(cap_expert_yaw_error(e, 0));
    double s = cap_clampd((xy - 0.006) / 0.03, 0, 1);
    s = fmax(s, cap_clampd((yaw - 0.25) / 0.2, 0, 1)); /* fingers close on a cube turned up to ~15 deg */
    double at[3] = {tgt[0], tgt[1], cube[2] + HOVER * s};
    cap_expert_toward(x, eef, at, 0.6, a);
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
                    e->rest_z + (x->misjudge ? 0.6 : 1.0) * LIFT_HEIGHT + (x->misjudge ? 0.0 : 0.06)};
    cap_expert_toward(x, eef, up, 0.5, a);
    a[0] = a[1] = 0;
    /* the cube did not come along: open, go back up, try again */
    if (x->wait > 15 && cube[2] < e->rest_z + 0.01) {
      cap_expert_try_again(x);
    }
  }
}

/* a hesitating operator keeps a grasp closed */
static double expert_idle_grip(const capExpert *x) { return x->ph >= PH_CLOSE ? 1 : -1; }

const capTaskDef cap_task_lift = {
    .name = "lift",
    .model = "lift.xml",
    .horizon = 150,
    .view_camera = "agentview",
    .objects = {"cube"},
    .place_lo = {-0.05, -0.25},
    .place_hi = {0.25, 0.25},
    .object_dim = 10,
    .reset = reset,
    .object_obs = object_obs,
    .success = success,
    .reward = reward,
    .expert = expert,
    .expert_idle_grip = expert_idle_grip,
    .misjudge_dims = 0,
};
