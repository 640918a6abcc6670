/* capture/tasks/nut_assembly.c -- task "nut_assembly": pick the square nut up by its handle and fit
 * it over the square peg, down to the peg's base. Model: capture/models/nut_assembly.xml (body `nut`
 * with a free joint, origin at the centre of its hole; mocap body `peg`, the goal body, placed from the
 * seed). */
#include <math.h>
#include <string.h>

#include "cap_task.h"

/* as in the model */
#define NUT_HALF_H 0.01 /* m: half the nut's height */
#define PEG_H 0.06      /* m: the peg's height above the table */
#define GRASP_D 0.058   /* m: the operator grasps the handle this far from the hole's centre (along +x) */
/* placement: the peg's axis this far from the nut's hole and from the handle's grasp point at reset, and
 * this far inside the placement box on the arm's side and at the ends */
#define SEPARATION 0.14
#define PEG_MARGIN 0.04
/* the operator */
#define HOVER 0.08     /* m: the hand comes down from this high above the handle */
#define GRASP_DZ 0.003 /* m: grip_site this far above the nut's middle: fingertips 3 mm above the table */
#define CLEAR 0.012    /* m: the nut's bottom this far above the peg's top before it moves sideways */
/* the hand turns at most this fast (0.25 rad a step): turning faster, the hand's orientation lagged more
 * than the environment lets its target lead (0.5 rad), the target was rebuilt from the lagging, tilted hand,
 * and the tilt stayed (a pad has no roll or pitch to take it out): a nut held 0.1 rad tilted does not go
 * over the peg */
#define YAW_RATE 0.5
/* the nut goes down over the peg's top as its hole's centre comes within 2 * ALIGN_XY of the peg's axis
 * (all the way down within ALIGN_XY) and it turns square to the peg (within ALIGN_YAW) */
#define ALIGN_XY 0.003
#define ALIGN_YAW 0.02
#define DESCEND 0.15 /* near and over the peg's top the hand comes down at most this fast (7.5 mm a step) */
#define ENGAGE 0.006 /* m: the operator lets go once the nut is this far down the peg (it slides on down) */
/* success: the hole's centre this close to the peg's axis (only possible around the peg), its bottom this
 * close to the table, slower than REST_SPEED (m/s), no finger touching it */
#define ON_XY 0.01
#define ON_Z 0.004
#define REST_SPEED 0.05

/* the scripted operator's phases (capExpert.ph) */
enum { PH_APPROACH = 0, PH_CLOSE, PH_CARRY, PH_RELEASE, PH_RETREAT };

static double wrap(double a, double period) {
  while (a > period / 2)
    a -= period;
  while (a < -period / 2)
    a += period;
  return a;
}

/* the handle's grasp point (world) */
static void handle_point(const capEnv *e, double h[3]) {
  const double *p = cap_task_object_pos(e, 0), *R = e->d->xmat + 9 * e->cm->obj_body[0];
  for (int i = 0; i < 3; i++)
    h[i] = p[i] + R[3 * i] * GRASP_D;
}

/* the nut lies at a random spot and yaw; the peg's axis (the goal, on the table top) at least
 * SEPARATION from both its hole and its handle */
static void reset(capEnv *e) {
  const capTaskCfg *c = &e->cm->cfg;
  double nx = tk_rng_range(&e->rng, c->x_lo, c->x_hi), ny = tk_rng_range(&e->rng, c->y_lo, c->y_hi);
  double yaw = tk_rng_range(&e->rng, -M_PI, M_PI);
  cap_task_set_object(e, 0, nx, ny, yaw);
  double hx = nx + GRASP_D * cos(yaw), hy = ny + GRASP_D * sin(yaw);
  for (int tries = 0; tries < 100; tries++) {
    e->goal[0] = tk_rng_range(&e->rng, c->x_lo + PEG_MARGIN, c->x_hi);
    e->goal[1] = tk_rng_range(&e->rng, c->y_lo + PEG_MARGIN, c->y_hi - PEG_MARGIN);
    if (hypot(e->goal[0] - nx, e->goal[1] - ny) > SEPARATION &&
        hypot(e->goal[0] - hx, e->goal[1] - hy) > SEPARATION)
      break;
  }
  e->goal[2] = c->table_z;
}

/* object (19): nut position (3), nut quaternion (4), the peg's base on the table (3), nut - grip_site (3),
 * handle grasp point - grip_site (3), nut - peg (3) */
static void object_obs(const capEnv *e, const double eef[3], double *ob) {
  const double *p = cap_task_object_pos(e, 0);
  double h[3];
  handle_point(e, h);
  memcpy(ob, p, 3 * sizeof(double));
  memcpy(ob + 3, e->d->xquat + 4 * e->cm->obj_body[0], 4 * sizeof(double));
  memcpy(ob + 7, e->goal, 3 * sizeof(double));
  for (int i = 0; i < 3; i++) {
    ob[10 + i] = p[i] - eef[i];
    ob[13 + i] = h[i] - eef[i];
    ob[16 + i] = p[i] - e->goal[i];
  }
}

/* the nut down on the peg's base: its hole's centre on the peg's axis (it cannot be there but around
 * the peg) and its bottom on the table */
static int on_peg(const capEnv *e) {
  const double *p = cap_task_object_pos(e, 0);
  return hypot(p[0] - e->goal[0], p[1] - e->goal[1]) < ON_XY && p[2] - NUT_HALF_H - e->cm->cfg.table_z < ON_Z;
}

static int success(const capEnv *e) {
  return on_peg(e) && !cap_task_finger_touches(e, 0) && cap_task_object_speed(e, 0) < REST_SPEED;
}

/* reaching the handle, holding it, raising the nut above the peg, bringing it over the peg and down
 * it, down on the base */
static double reward(const capEnv *e) {
  double eef[3], h[3];
  cap_env_eef_pos(e, eef);
  handle_point(e, h);
  const double *p = cap_task_object_pos(e, 0);
  double reach = 1.0 - tanh(10.0 * cap_dist3(eef, h));
  double grasp = cap_dist3(eef, h) < 0.02 && cap_env_gripper(e) > 0.3 ? 1.0 : 0.0;
  double lift = cap_clampd((p[2] - e->rest_z) / (PEG_H + CLEAR), 0, 1);
  double there[3] = {e->goal[0], e->goal[1], e->cm->cfg.table_z + NUT_HALF_H};
  double align = 1.0 - tanh(10.0 * cap_dist3(p, there));
  return 0.2 * reach + 0.15 * grasp + 0.15 * lift + 0.3 * align + (on_peg(e) ? 0.1 : 0.0);
}

/* the gripper's yaw (its x axis, along the pads' width) */
static double grip_yaw(const capEnv *e) {
  const double *R = e->d->site_xmat + 9 * e->cm->site_eef;
  return atan2(R[3], R[0]);
}

/* The turn (rad, about world z) that is err modulo period, within half a turn, that keeps the last wrist
 * joint nearest the middle of its range, counting each radian of turning half as much: with the hand
 * pointing down, turning the hand by d about world z turns that joint by about -d. The nearest turn every
 * time wound the wrist onto its stop after a regrasp or two; the wrist's term alone does not change as
 * the hand turns, so two turns it rated alike swapped from step to step, and the hand shook in place. */
static double turn(const capEnv *e, double err, double period) {
  const capModel *cm = e->cm;
  double q = e->d->qpos[cm->arm_qadr[CAP_ARM_DOF - 1]];
  q -= 0.5 * (cm->arm_lo[CAP_ARM_DOF - 1] + cm->arm_hi[CAP_ARM_DOF - 1]);
  double best = 0, cost = INFINITY;
  for (int k = -2; k <= 2; k++) {
    double d = wrap(err, period) + k * period, c = fabs(q - d) + 0.5 * fabs(d);
    if (fabs(d) <= M_PI && c < cost) {
      best = d;
      cost = c;
    }
  }
  return best;
}

/* Over the handle's grasp point (off by the wrong first grasp on the first attempt), the pads' width
 * turned along the handle, down as the hand lines up, close; up until the nut's bottom clears the peg's
 * top, over the peg while the nut turns square to it (the nut's hole is steered, not the hand), down
 * over the top as the hole lines up with the peg's axis (the peg's rounded top edges guide a hole a few
 * millimetres off onto it), slowly near the top; let go once the nut is 6 mm down the peg: it slides
 * down to the base on its own (holding on, shaky hands jammed it half way down), straight up. The
 * wrist turns at most YAW_RATE, the way that keeps its last joint nearest mid-range. A nut that did not come
 * along, slipped out, or did not end on the peg's base is grasped again. A misjudging operator aims 7-10 cm
 * beside the peg. */
static void expert(capExpert *x, const capEnv *e, const double eef[3], const double goal[3],
                   const double nut[3], double *a) {
  double tz = e->cm->cfg.table_z, h[3];
  handle_point(e, h);
  double yaw = cap_task_object_yaw(e, 0);
  cap_expert_keep_down(e, a);
  if (x->ph == PH_APPROACH || x->ph == PH_CLOSE) {
    double tgt[3] = {h[0], h[1], h[2] + GRASP_DZ};
    if (x->attempts == 0) {
      tgt[0] += x->grasp_off[0];
      tgt[1] += x->grasp_off[1];
    }
    double yerr = turn(e, yaw - grip_yaw(e), M_PI); /* the handle lies across the pads either way round */
    a[5] = cap_clampd(yerr * 3, -YAW_RATE, YAW_RATE);
    if (x->ph == PH_APPROACH) {
      double xy = cap_expert_dist(eef, tgt, 2);
      double s = cap_clampd((xy - 0.005) / 0.03, 0, 1);
      s = fmax(s, cap_clampd((fabs(yerr) - 0.05) / 0.15, 0, 1));
      double at[3] = {tgt[0], tgt[1], tgt[2] + HOVER * s};
      cap_expert_toward(x, eef, at, 0.6, a);
      if ((fabs(eef[2] - tgt[2]) < 0.006 && xy < 0.01) || x->wait > 60) {
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
  /* where the nut's centre should end: around the peg, down on its base */
  double T[3] = {goal[0], goal[1], tz + NUT_HALF_H};
  if (x->misjudge) {
    T[0] += x->off[0];
    T[1] += x->off[1];
  }
  double dxy = cap_expert_dist(nut, T, 2);
  double yerr = -turn(e, -yaw, M_PI / 2); /* the peg stands square to the world */
  double bottom = nut[2] - NUT_HALF_H, top = tz + PEG_H;
  if (x->ph == PH_CARRY) {
    a[6] = 1;
    a[5] = cap_clampd(-yerr * 3, -YAW_RATE, YAW_RATE);
    /* down over the top as it lines up; once the nut is on the peg, on down whatever the reading */
    double s = cap_clampd((dxy - ALIGN_XY) / ALIGN_XY, 0, 1);
    s = fmax(s, cap_clampd((fabs(yerr) - ALIGN_YAW) / ALIGN_YAW, 0, 1));
    double on = cap_clampd((top - 0.002 - bottom) / 0.004, 0, 1) * cap_clampd((0.004 - dxy) / 0.002, 0, 1);
    s *= 1 - on;
    double at[3] = {T[0], T[1], T[2] + (PEG_H + CLEAR) * s}, p[3];
    for (int i = 0; i < 3; i++)
      p[i] = eef[i] + at[i] - nut[i];
    cap_expert_toward(x, eef, p, 0.6, a);
    /* slowly near and over the peg's top: a hand coming down fast lags sideways */
    if (dxy < 0.01 && bottom < top + CLEAR + 0.01) a[2] = fmax(a[2], -DESCEND);
    /* sideways only once the nut's bottom clears the peg's top (or the nut is over it already) */
    double clear = cap_clampd((bottom - top - CLEAR * 0.5) / CLEAR, 0, 1);
    double g = fmax(clear, cap_clampd((0.006 - dxy) / 0.003, 0, 1));
    a[0] *= g;
    a[1] *= g;
    if (x->wait > 15 && !cap_task_finger_touches(e, 0)) { /* it did not come along, or slipped out: again */
      cap_expert_try_again(x);
    } else if ((dxy < 0.004 && bottom < top - ENGAGE) || x->wait > 150) {
      x->ph = PH_RELEASE;
      x->wait = 0;
    }
  } else if (x->ph == PH_RELEASE) { /* open where it is */
    if (x->wait > 5) {
      x->ph = PH_RETREAT;
      x->wait = 0;
    }
  } else { /* PH_RETREAT: straight up, then see (not down on the base: pick it up again) */
    cap_expert_retreat(x, eef, top + HOVER, on_peg(e), a);
  }
}

/* a hesitating operator keeps a grasp closed */
static double expert_idle_grip(const capExpert *x) { return x->ph == PH_CLOSE || x->ph == PH_CARRY ? 1 : -1; }

const capTaskDef cap_task_nut_assembly = {
    .name = "nut_assembly",
    .model = "nut_assembly.xml",
    .horizon = 400,
    .view_camera = "agentview",
    .objects = {"nut"},
    .goal_body = "peg",
    .place_lo = {-0.05, -0.22},
    .place_hi = {0.25, 0.22},
    .object_dim = 19,
    .reset = reset,
    .object_obs = object_obs,
    .success = success,
    .reward = reward,
    .expert = expert,
    .expert_idle_grip = expert_idle_grip,
    .misjudge_dims = 0,
};
