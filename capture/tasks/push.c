/* capture/tasks/push.c -- task "push": push the cube across the table onto a goal marker.
 * Model: capture/models/push.xml (body `cube` with a free joint, mocap body `goal`). */
#include <math.h>
#include <string.h>

#include "cap_task.h"

#define SUCCESS_DIST 0.05 /* m: the cube's centre this close to the goal, in the table's plane */
#define HOVER 0.08        /* m: the operator's hand travels this high above the cube */

static void reset(capEnv *e) {
  const capModel *cm = e->cm;
  const capTaskCfg *c = &cm->cfg;
  const mjData *d = e->d;
  cap_task_place_cube(e);
  int qa = cm->m->jnt_qposadr[cm->obj_jnt[0]];
  for (int tries = 0; tries < 100; tries++) { /* a goal at least 12 cm from the cube */
    e->goal[0] = tk_rng_range(&e->rng, c->x_lo, c->x_hi);
    e->goal[1] = tk_rng_range(&e->rng, c->y_lo, c->y_hi);
    double dx = e->goal[0] - d->qpos[qa], dy = e->goal[1] - d->qpos[qa + 1];
    if (sqrt(dx * dx + dy * dy) > 0.12) break;
  }
  e->goal[2] = c->table_z + 0.001;
}

/* object (16): cube position (3), cube quaternion (4), goal (3), goal - cube (3), cube - grip_site (3) */
static void object_obs(const capEnv *e, const double eef[3], double *ob) {
  const capModel *cm = e->cm;
  const double *cp = e->d->xpos + 3 * cm->obj_body[0], *cq = e->d->xquat + 4 * cm->obj_body[0];
  memcpy(ob, cp, 3 * sizeof(double));
  memcpy(ob + 3, cq, 4 * sizeof(double));
  memcpy(ob + 7, e->goal, 3 * sizeof(double));
  for (int i = 0; i < 3; i++)
    ob[10 + i] = e->goal[i] - cp[i];
  for (int i = 0; i < 3; i++)
    ob[13 + i] = cp[i] - eef[i];
}

static int success(const capEnv *e) {
  const double *cp = e->d->xpos + 3 * e->cm->obj_body[0];
  double dx = cp[0] - e->goal[0], dy = cp[1] - e->goal[1];
  return sqrt(dx * dx + dy * dy) < SUCCESS_DIST;
}

/* reaching the cube, then moving it toward the goal */
static double reward(const capEnv *e) {
  double eef[3];
  cap_env_eef_pos(e, eef);
  const double *cp = e->d->xpos + 3 * e->cm->obj_body[0];
  double dx = cp[0] - e->goal[0], dy = cp[1] - e->goal[1];
  double reach = 1.0 - tanh(10.0 * cap_dist3(eef, cp));
  double push = 1.0 - tanh(5.0 * sqrt(dx * dx + dy * dy));
  return 0.3 * reach + 0.6 * push;
}

/* Push along the cube-to-goal line from behind the cube, gripper closed (a closed gripper pushes
 * better). A misjudging operator pushes toward a point 7-10 cm off the goal in the table's plane. */
static void expert(capExpert *x, const capEnv *e, const double eef[3], const double goal[3],
                   const double cube[3], double *a) {
  const capModel *cm = e->cm;
  double dx = goal[0] - cube[0], dy = goal[1] - cube[1], L = sqrt(dx * dx + dy * dy);
  double ux = L > 1e-6 ? dx / L : 1, uy = L > 1e-6 ? dy / L : 0;
  double half = cm->cfg.obj_half, back = half + 0.05;
  double behind[3] = {cube[0] - ux * back, cube[1] - uy * back, cube[2] + HOVER};
  cap_expert_keep_down(e, a);
  a[6] = 1;
  /* where the fingertip is relative to the pushing line decides what to do (no phases), and the
   * action changes smoothly with it: a policy that sees the same state can learn the same action,
   * with no edge where "push" flips to "lift the hand 8 cm" (BC averages such a flip into a hand
   * that drifts up and never comes back) */
  double rx = eef[0] - cube[0], ry = eef[1] - cube[1];
  double nx = -uy, ny = ux, side = nx * rx + ny * ry, along = ux * rx + uy * ry;
  double height = eef[2] - cube[2];
  /* how much the fingertip is in the lane behind the cube: 1 inside, 0 off it, a ramp between */
  double w = cap_clampd((0.035 - fabs(side)) / 0.015, 0, 1) * cap_clampd((-half * 0.5 - along) / 0.01, 0, 1) *
             cap_clampd((back + 0.04 + along) / 0.015, 0, 1) * cap_clampd((0.045 - height) / 0.02, 0, 1);
  /* pushing: along the line at a speed that falls with the distance left (a cube shoved at full
   * speed slides past the goal) and with the height (come down first), steering back onto the line */
  double left = L - SUCCESS_DIST * 0.3;
  double speed = cap_clampd(left * 3.0, 0.0, 0.3) * x->gain * cap_clampd((0.03 - height) / 0.02, 0, 1);
  double push[3] = {ux * speed - side * nx * 3.0, uy * speed - side * ny * 3.0, (cube[2] - eef[2]) * 10};
  /* getting behind the cube: high while away from the spot, coming down as the hand gets there */
  double xy = cap_expert_dist(eef, behind, 2);
  double s = cap_clampd((xy - 0.006) / 0.03, 0, 1);
  double at[3] = {behind[0], behind[1], cube[2] + HOVER * s}, go[3];
  cap_expert_toward(x, eef, at, 0.6, go);
  for (int i = 0; i < 3; i++)
    a[i] = cap_clampd(w * push[i] + (1 - w) * go[i], -1, 1);
}

const capTaskDef cap_task_push = {
    .name = "push",
    .model = "push.xml",
    .horizon = 200,
    .view_camera = "agentview",
    .objects = {"cube"},
    .goal_body = "goal",
    /* pushing needs room behind the cube, and the arm cannot reach close to its base */
    .place_lo = {0.03, -0.20},
    .place_hi = {0.22, 0.20},
    .object_dim = 16,
    .reset = reset,
    .object_obs = object_obs,
    .success = success,
    .reward = reward,
    .expert = expert,
    .misjudge_dims = 2,
};
