/* capture/tasks/pick_place.c -- task "pick_place": pick the can up and put it in the bin.
 * Model: capture/models/pick_place.xml (body `can` with a free joint; mocap body `bin`, the goal
 * body: four walls around a square, placed from the seed). */
#include <math.h>
#include <string.h>

#include "cap_task.h"

#define BIN_INNER 0.07  /* m: half the inside of the bin (the walls' inner faces), as in the model */
#define BIN_WALL 0.05   /* m: the walls' height */
#define SEPARATION 0.16 /* m: the can at least this far from the bin's centre at reset */
#define HOVER 0.08      /* m: the operator's hand comes down from this high */
#define CLEAR 0.015     /* m: the can's bottom this far above the walls before it moves sideways */
#define RELEASE 0.008   /* m: the operator lets go with the can's bottom this high above the table */
#define REST_SPEED 0.05 /* m/s: success: the can slower than this */
/* the bin's centre stays inside the placement box by this much (m): near the box's corners close to
 * the arm, the arm wobbled while lowering the can into a bin there and knocked it against a wall */
#define BIN_MARGIN 0.04

/* the scripted operator's phases (capExpert.ph) */
enum { PH_APPROACH = 0, PH_CLOSE, PH_CARRY, PH_RELEASE, PH_RETREAT };

/* the can's half height (cylinder: size = radius, half height) */
static double can_half(const capEnv *e) {
  return e->cm->m->geom_size[3 * e->cm->m->body_geomadr[e->cm->obj_body[0]] + 1];
}

/* the can stands at a random spot; the bin's centre (the goal, on the table top) at least SEPARATION
 * from it */
static void reset(capEnv *e) {
  const capTaskCfg *c = &e->cm->cfg;
  double cx = tk_rng_range(&e->rng, c->x_lo, c->x_hi), cy = tk_rng_range(&e->rng, c->y_lo, c->y_hi);
  cap_task_set_object(e, 0, cx, cy, tk_rng_range(&e->rng, -M_PI, M_PI));
  for (int tries = 0; tries < 100; tries++) {
    e->goal[0] = tk_rng_range(&e->rng, c->x_lo + BIN_MARGIN, c->x_hi);
    e->goal[1] = tk_rng_range(&e->rng, c->y_lo + BIN_MARGIN, c->y_hi - BIN_MARGIN);
    if (hypot(e->goal[0] - cx, e->goal[1] - cy) > SEPARATION) break;
  }
  e->goal[2] = c->table_z;
}

/* object (16): can position (3), can quaternion (4), bin centre on the table (3), can - grip_site (3),
 * bin - can (3) */
static void object_obs(const capEnv *e, const double eef[3], double *ob) {
  const double *p = cap_task_object_pos(e, 0);
  memcpy(ob, p, 3 * sizeof(double));
  memcpy(ob + 3, e->d->xquat + 4 * e->cm->obj_body[0], 4 * sizeof(double));
  memcpy(ob + 7, e->goal, 3 * sizeof(double));
  for (int i = 0; i < 3; i++) {
    ob[10 + i] = p[i] - eef[i];
    ob[13 + i] = e->goal[i] - p[i];
  }
}

/* the can's centre inside the walls, below their top (not lying on one) */
static int in_bin(const capEnv *e) {
  const double *p = cap_task_object_pos(e, 0);
  return fabs(p[0] - e->goal[0]) < BIN_INNER && fabs(p[1] - e->goal[1]) < BIN_INNER &&
         p[2] < e->cm->cfg.table_z + BIN_WALL;
}

static int success(const capEnv *e) {
  return in_bin(e) && !cap_task_finger_touches(e, 0) && cap_task_object_speed(e, 0) < REST_SPEED;
}

/* reaching the can, holding it, raising it above the walls, bringing it over the bin, in the bin */
static double reward(const capEnv *e) {
  double eef[3];
  cap_env_eef_pos(e, eef);
  const double *p = cap_task_object_pos(e, 0);
  double reach = 1.0 - tanh(10.0 * cap_dist3(eef, p));
  double grasp = cap_dist3(eef, p) < 0.02 && cap_env_gripper(e) > 0.3 ? 1.0 : 0.0;
  double lift = cap_clampd((p[2] - e->rest_z) / (BIN_WALL + CLEAR), 0, 1);
  double there[3] = {e->goal[0], e->goal[1], e->rest_z};
  double align = 1.0 - tanh(10.0 * cap_dist3(p, there));
  return 0.2 * reach + 0.15 * grasp + 0.15 * lift + 0.3 * align + (in_bin(e) ? 0.1 : 0.0);
}

/* Over the can (off by the wrong first grasp on the first attempt), down as the hand lines up, close;
 * up until the can's bottom clears the walls, over the bin while coming down as the can lines up with
 * its centre (the can's position is steered, not the hand's), let go just above the table, straight
 * up. A can that did not come along, slipped out or missed the bin is grasped again. A misjudging
 * operator aims 7-10 cm off the bin's centre: the can lands on or beyond a wall. */
static void expert(capExpert *x, const capEnv *e, const double eef[3], const double goal[3],
                   const double can[3], double *a) {
  double h = can_half(e), tz = e->cm->cfg.table_z;
  cap_expert_keep_down(e, a);
  if (x->ph == PH_APPROACH || x->ph == PH_CLOSE) {
    double tgt[3] = {can[0], can[1], can[2]};
    if (x->attempts == 0) {
      tgt[0] += x->grasp_off[0];
      tgt[1] += x->grasp_off[1];
    }
    if (x->ph == PH_APPROACH) {
      double xy = cap_expert_dist(eef, tgt, 2);
      /* a narrower funnel than lift's: the can is taller than the cube, and the fingertips must be
       * above its top until they are on either side of it */
      double s = cap_clampd((xy - 0.005) / 0.02, 0, 1);
      double at[3] = {tgt[0], tgt[1], can[2] + HOVER * s};
      cap_expert_toward(x, eef, at, 0.6, a);
      if ((fabs(eef[2] - can[2]) < 0.008 && xy < 0.01) || x->wait > 60) {
        x->ph = PH_CLOSE;
        x->wait = 0;
      }
    } else {
      a[6] = 1;
      if (x->wait > 6) {
        x->ph = PH_CARRY;
        x->wait = 0;
      }
    }
    return;
  }
  double T[3] = {goal[0], goal[1], tz + h + RELEASE};
  double dxy = cap_expert_dist(can, T, 2);
  if (x->ph == PH_CARRY) {
    a[6] = 1;
    double s = cap_clampd((dxy - 0.005) / 0.03, 0, 1);
    double at[3] = {T[0], T[1], T[2] + HOVER * s}, p[3];
    for (int i = 0; i < 3; i++)
      p[i] = eef[i] + at[i] - can[i];
    cap_expert_toward(x, eef, p, 0.6, a);
    /* sideways only once the can's bottom clears the walls (or it is already inside them) */
    double clear = cap_clampd((can[2] - h - (tz + BIN_WALL) - CLEAR * 0.5) / CLEAR, 0, 1);
    double g = fmax(clear, cap_clampd((BIN_INNER - 0.03 - dxy) / 0.01, 0, 1));
    a[0] *= g;
    a[1] *= g;
    if (x->wait > 15 && !cap_task_finger_touches(e, 0)) { /* it did not come along, or slipped out: again */
      cap_expert_try_again(x);
    } else if ((dxy < 0.008 && fabs(can[2] - T[2]) < 0.006) || x->wait > 120) {
      x->ph = PH_RELEASE;
      x->wait = 0;
    }
  } else if (x->ph == PH_RELEASE) { /* open where it is */
    if (x->wait > 5) {
      x->ph = PH_RETREAT;
      x->wait = 0;
    }
  } else { /* PH_RETREAT: straight up, then see (it missed the bin: pick it up again) */
    cap_expert_retreat(x, eef, tz + h + BIN_WALL + HOVER, in_bin(e), a);
  }
}

/* a hesitating operator keeps a grasp closed */
static double expert_idle_grip(const capExpert *x) { return x->ph == PH_CLOSE || x->ph == PH_CARRY ? 1 : -1; }

const capTaskDef cap_task_pick_place = {
    .name = "pick_place",
    .model = "pick_place.xml",
    .horizon = 300,
    .view_camera = "agentview",
    .objects = {"can"},
    .goal_body = "bin",
    .place_lo = {-0.05, -0.22},
    .place_hi = {0.25, 0.22},
    .object_dim = 16,
    .reset = reset,
    .object_obs = object_obs,
    .success = success,
    .reward = reward,
    .expert = expert,
    .expert_idle_grip = expert_idle_grip,
    .misjudge_dims = 2,
};
