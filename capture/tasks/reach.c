/* capture/tasks/reach.c -- task "reach": move the gripper (grip_site) to a target marker in the air
 * above the table. Model: capture/models/reach.xml (mocap body `target`, no objects). */
#include <math.h>
#include <string.h>

#include "cap_task.h"

#define SUCCESS_DIST 0.05 /* m: grip_site this close to the target */

static void reset(capEnv *e) {
  const capTaskCfg *c = &e->cm->cfg;
  e->goal[0] = tk_rng_range(&e->rng, c->x_lo, c->x_hi);
  e->goal[1] = tk_rng_range(&e->rng, c->y_lo, c->y_hi);
  e->goal[2] = c->table_z + tk_rng_range(&e->rng, 0.03, 0.25);
}

/* object (6): the target (3), target - grip_site (3) */
static void object_obs(const capEnv *e, const double eef[3], double *ob) {
  memcpy(ob, e->goal, 3 * sizeof(double));
  for (int i = 0; i < 3; i++)
    ob[3 + i] = e->goal[i] - eef[i];
}

static int success(const capEnv *e) {
  double eef[3];
  cap_env_eef_pos(e, eef);
  return cap_dist3(eef, e->goal) < SUCCESS_DIST;
}

static double reward(const capEnv *e) {
  double eef[3];
  cap_env_eef_pos(e, eef);
  return 0.9 * (1.0 - tanh(10.0 * cap_dist3(eef, e->goal)));
}

/* straight at the target; a misjudging operator aims at a point 7-10 cm off in 3-D (depth is hard
 * to see on a screen) */
static void expert(capExpert *x, const capEnv *e, const double eef[3], const double goal[3],
                   const double cube[3], double *a) {
  (void)e;
  (void)cube;
  cap_expert_toward(x, eef, goal, 0.6, a);
}

const capTaskDef cap_task_reach = {
    .name = "reach",
    .model = "reach.xml",
    .horizon = 100,
    .view_camera = "agentview",
    .goal_body = "target",
    .place_lo = {-0.05, -0.25},
    .place_hi = {0.25, 0.25},
    .object_dim = 6,
    .reset = reset,
    .object_obs = object_obs,
    .success = success,
    .reward = reward,
    .expert = expert,
    .misjudge_dims = 3,
};
