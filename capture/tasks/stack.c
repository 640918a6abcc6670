/* capture/tasks/stack.c -- task "stack": pick cube A (red, 4 cm) and set it down on cube B (green,
 * 5 cm), then let go. Model: capture/models/stack.xml (bodies `cubeA` and `cubeB`, free joints; no goal
 * marker: cube B is the target). */
#include <math.h>
#include <string.h>

#include "cap_task.h"

#define SEPARATION 0.11 /* m: the cubes' centres at least this far apart at reset, in the table's plane */
#define HOVER 0.08      /* m: the operator's hand comes down from this high above a cube */
#define CLEAR 0.012     /* m: cube A's bottom this far above B's top before it moves sideways over B */
#define ON_XY 0.02      /* m: success: A's centre this close to B's vertical axis, ... */
#define ON_Z 0.008      /* m: ... its height this close to resting on B's top, ... */
#define REST_SPEED 0.05 /* m/s: ... A slower than this, no finger touching it, B on the table */

enum { A = 0, B = 1 }; /* the row's objects */
/* the scripted operator's phases (capExpert.ph) */
enum { PH_APPROACH = 0, PH_CLOSE, PH_CARRY, PH_RELEASE, PH_RETREAT };

static double half(const capEnv *e, int k) {
  return e->cm->m->geom_size[3 * e->cm->m->body_geomadr[e->cm->obj_body[k]]];
}

/* resting height of a cube on the table */
static double table_z(const capEnv *e, int k) { return e->cm->cfg.table_z + half(e, k); }

/* A at a random spot and yaw, B at least SEPARATION from it; the goal is A's centre resting on B */
static void reset(capEnv *e) {
  const capTaskCfg *c = &e->cm->cfg;
  cap_task_place_cube(e);
  const double *qa = e->d->qpos + e->cm->m->jnt_qposadr[e->cm->obj_jnt[A]];
  double bx = 0, by = 0;
  for (int tries = 0; tries < 100; tries++) {
    bx = tk_rng_range(&e->rng, c->x_lo, c->x_hi);
    by = tk_rng_range(&e->rng, c->y_lo, c->y_hi);
    if (hypot(bx - qa[0], by - qa[1]) > SEPARATION) break;
  }
  cap_task_set_object(e, B, bx, by, tk_rng_range(&e->rng, -M_PI / 4, M_PI / 4));
  e->goal[0] = bx;
  e->goal[1] = by;
  e->goal[2] = table_z(e, B) + half(e, B) + half(e, A);
}

/* object (23), as robomimic's stack: cube A position (3), quaternion (4), cube B position (3),
 * quaternion (4), A - grip_site (3), B - grip_site (3), A - B (3) */
static void object_obs(const capEnv *e, const double eef[3], double *ob) {
  const capModel *cm = e->cm;
  const double *pa = e->d->xpos + 3 * cm->obj_body[A], *pb = e->d->xpos + 3 * cm->obj_body[B];
  memcpy(ob, pa, 3 * sizeof(double));
  memcpy(ob + 3, e->d->xquat + 4 * cm->obj_body[A], 4 * sizeof(double));
  memcpy(ob + 7, pb, 3 * sizeof(double));
  memcpy(ob + 10, e->d->xquat + 4 * cm->obj_body[B], 4 * sizeof(double));
  for (int i = 0; i < 3; i++) {
    ob[14 + i] = pa[i] - eef[i];
    ob[17 + i] = pb[i] - eef[i];
    ob[20 + i] = pa[i] - pb[i];
  }
}

/* A rests on B: over B's top, at B's top, touching B, still, let go; B still on the table */
static int on_b(const capEnv *e) {
  const double *pa = cap_task_object_pos(e, A), *pb = cap_task_object_pos(e, B);
  return hypot(pa[0] - pb[0], pa[1] - pb[1]) < ON_XY &&
         fabs(pa[2] - pb[2] - half(e, A) - half(e, B)) < ON_Z &&
         cap_task_bodies_touch(e, e->cm->obj_body[A], e->cm->obj_body[B]);
}

static int success(const capEnv *e) {
  return on_b(e) && cap_task_object_pos(e, B)[2] < table_z(e, B) + 0.005 && !cap_task_finger_touches(e, A) &&
         cap_task_object_speed(e, A) < REST_SPEED;
}

/* reaching A, holding it, raising it above B's top, bringing it over B, setting it down */
static double reward(const capEnv *e) {
  double eef[3];
  cap_env_eef_pos(e, eef);
  const double *pa = cap_task_object_pos(e, A), *pb = cap_task_object_pos(e, B);
  double reach = 1.0 - tanh(10.0 * cap_dist3(eef, pa));
  double grasp = cap_dist3(eef, pa) < 0.02 && cap_env_gripper(e) > 0.3 ? 1.0 : 0.0;
  double lift = cap_clampd((pa[2] - e->rest_z) / (2 * half(e, B) + CLEAR), 0, 1);
  double above[3] = {pb[0], pb[1], pb[2] + half(e, A) + half(e, B)};
  double align = 1.0 - tanh(10.0 * cap_dist3(pa, above));
  return 0.2 * reach + 0.15 * grasp + 0.15 * lift + 0.3 * align + (on_b(e) ? 0.1 : 0.0);
}

/* Cube A as lift grasps it (over it, turned to its yaw, down, close); up until its bottom clears B's
 * top, over B while coming down as it lines up (A's position is steered, not the hand's, so a grasp off
 * centre still lands A on B), open when it sits, up and away. A cube that did not come along or fell is
 * grasped again. A misjudging operator sets A down 7-10 cm off B. */
static void expert(capExpert *x, const capEnv *e, const double eef[3], const double goal[3],
                   const double cube[3], double *a) {
  (void)goal;
  const double *pb = cap_task_object_pos(e, B);
  double ha = half(e, A), hb = half(e, B);
  cap_expert_keep_down(e, a);
  if (x->ph == PH_APPROACH || x->ph == PH_CLOSE) {
    double tgt[3] = {cube[0], cube[1], cube[2]};
    if (x->attempts == 0) {
      tgt[0] += x->grasp_off[0];
      tgt[1] += x->grasp_off[1];
    }
    a[5] = cap_clampd(cap_expert_yaw_error(e, A) * 3, -1, 1);
    if (x->ph == PH_APPROACH) {
      double xy = cap_expert_dist(eef, tgt, 2), yaw = fabs(cap_expert_yaw_error(e, A));
      double s = cap_clampd((xy - 0.006) / 0.03, 0, 1);
      s = fmax(s, cap_clampd((yaw - 0.25) / 0.2, 0, 1));
      double at[3] = {tgt[0], tgt[1], cube[2] + HOVER * s};
      cap_expert_toward(x, eef, at, 0.6, a);
      if ((fabs(eef[2] - cube[2]) < 0.008 && xy < 0.012) || x->wait > 60) {
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
  /* where A should end: resting on B (or, misjudged, beside it) */
  double T[3] = {pb[0], pb[1], pb[2] + ha + hb + 0.004};
  if (x->misjudge) {
    T[0] += x->off[0];
    T[1] += x->off[1];
  }
  double dxy = cap_expert_dist(cube, T, 2);
  if (x->ph == PH_CARRY) {
    a[6] = 1;
    double s = cap_clampd((dxy - 0.004) / 0.03, 0, 1);
    double at[3] = {T[0], T[1], T[2] + HOVER * s}, p[3];
    for (int i = 0; i < 3; i++)
      p[i] = eef[i] + at[i] - cube[i];
    cap_expert_toward(x, eef, p, 0.6, a);
    /* sideways only once A's bottom clears B's top (or A is already over B) */
    double clear = cap_clampd((cube[2] - ha - (pb[2] + hb) - CLEAR * 0.5) / CLEAR, 0, 1);
    double g = fmax(clear, cap_clampd((ha + hb + 0.01 - dxy) / 0.01, 0, 1));
    a[0] *= g;
    a[1] *= g;
    if (x->wait > 15 && !cap_task_finger_touches(e, A)) { /* it did not come along, or fell: again */
      cap_expert_try_again(x);
    } else if ((dxy < 0.006 && fabs(cube[2] - T[2]) < 0.005) || x->wait > 120) {
      x->ph = PH_RELEASE;
      x->wait = 0;
    }
  } else if (x->ph == PH_RELEASE) { /* open where it is */
    if (x->wait > 5) {
      x->ph = PH_RETREAT;
      x->wait = 0;
    }
  } else { /* PH_RETREAT: straight up, then see (it fell off: pick it up again) */
    cap_expert_retreat(x, eef, T[2] + HOVER, on_b(e), a);
  }
}

/* a hesitating operator keeps a grasp closed */
static double expert_idle_grip(const capExpert *x) { return x->ph == PH_CLOSE || x->ph == PH_CARRY ? 1 : -1; }

const capTaskDef cap_task_stack = {
    .name = "stack",
    .model = "stack.xml",
    .horizon = 250,
    .view_camera = "agentview",
    .objects = {"cubeA", "cubeB"},
    .place_lo = {-0.05, -0.22},
    .place_hi = {0.25, 0.22},
    .object_dim = 23,
    .reset = reset,
    .object_obs = object_obs,
    .success = success,
    .reward = reward,
    .expert = expert,
    .expert_idle_grip = expert_idle_grip,
    .misjudge_dims = 0,
};
