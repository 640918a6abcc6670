/* capture/cap_env.c -- one environment: reset from a seed, step with a normalized action,
 * observations, rewards and success, the flat state, cameras.
 *
 * Control: the end-effector action moves a desired pose (kept in the task state, so zero
 * action holds still and nothing drifts); damped least squares on the site Jacobian, run on
 * a scratch copy of the kinematics, turns the desired pose into joint targets for the
 * position actuators; gravity is compensated on the arm joints as a real arm's controller
 * does. Physics steps at the model's timestep (2 ms), control at control_hz (20 Hz).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cap_task.h"
#include "cap_robot.h"
#include "cap_render.h"

#define MAX_DPOS 0.05 /* m per control step at full stick */
#define MAX_DROT 0.5  /* rad per control step at full stick */
#define MAX_DQ 0.1    /* rad per control step, joint mode */
#define IK_DAMPING 0.05
#define IK_ITERS 3
#define IK_MAX_POS_ERR 0.05 /* m: error clipped per iteration */
#define IK_MAX_ROT_ERR 0.3  /* rad */
#define IK_MAX_DQ 0.2       /* rad per iteration */
#define IK_NULL_GAIN 0.1    /* pull toward the home pose in the null space (keeps the elbow sane) */
#define MAX_LEAD 0.15       /* rad: joint targets stay this close to the measured joints */
#define MAX_POSE_LEAD 0.08  /* m: the desired pose stays this close to the actual one ... */
#define MAX_ROT_LEAD 0.5    /* rad: ... so a blocked or lagging arm does not wind up */

static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

const capModel *cap_env_model(const capEnv *e) { return e->cm; }
int64_t cap_env_steps(const capEnv *e) { return e->steps; }
int64_t cap_env_action_warnings(const capEnv *e) { return e->warnings; }

int cap_env_make(const capModel *cm, capEnv **out) {
  *out = NULL;
  capEnv *e = calloc(1, sizeof *e);
  if (!e) return tk_error(TK_ENOMEM, "out of memory");
  e->cm = cm;
  if (cm->robot) {
    int rrc = cap_robot_env_make(e);
    if (!rrc && cm->m && !(e->d = mj_makeData(cm->m))) rrc = tk_error(TK_ENOMEM, "out of memory");
    if (!rrc && e->d) mj_forward(cm->m, e->d);
    const capRobotCfg *rc = cm->robot;
    for (int i = 0; i < rc->n; i++) { /* the arm model's joints of the config's names */
      int j = cm->m ? mj_name2id(cm->m, mjOBJ_JOINT, rc->j[i].name) : -1;
      e->robot_qadr[i] = j >= 0 ? cm->m->jnt_qposadr[j] : -1;
    }
    for (int c = 0; c < cm->opts.ncams && !rrc; c++)
      if (!(e->img[c] = malloc((size_t)cm->opts.cams[c].width * (size_t)cm->opts.cams[c].height * 3)))
        rrc = tk_error(TK_ENOMEM, "out of memory for camera images");
    if (rrc) {
      cap_env_free(e);
      return rrc;
    }
    *out = e;
    return 0;
  }
  e->d = mj_makeData(cm->m);
  e->scratch = cm->narm ? mj_makeData(cm->m) : NULL;
  e->low = calloc((size_t)cm->nlow + 1, sizeof(double));
  int rc = 0;
  if (!e->d || (cm->narm && !e->scratch) || !e->low)
    rc = tk_error(TK_ENOMEM, "out of memory for the simulation");
  for (int c = 0; c < cm->opts.ncams && !rc; c++) {
    e->img[c] = malloc((size_t)cm->opts.cams[c].width * (size_t)cm->opts.cams[c].height * 3);
    if (!e->img[c]) rc = tk_error(TK_ENOMEM, "out of memory for camera images");
  }
  if (rc) {
    cap_env_free(e);
    return rc;
  }
  tk_rng_seed(&e->rng, 0);
  *out = e;
  return 0;
}

void cap_env_free(capEnv *e) {
  if (!e) return;
  cap_robot_env_free(e);
  cap_render_free(e->render);
  if (e->d) mj_deleteData(e->d);
  if (e->scratch) mj_deleteData(e->scratch);
  free(e->low);
  for (int c = 0; c < CAP_MAX_CAMS; c++)
    free(e->img[c]);
  free(e);
}

/* ---- geometry ---- */
void cap_env_eef_pos(const capEnv *e, double pos[3]) {
  if (e->cm->site_eef < 0) {
    pos[0] = pos[1] = pos[2] = 0;
    return;
  }
  memcpy(pos, e->d->site_xpos + 3 * e->cm->site_eef, 3 * sizeof(double));
}

void cap_env_eef_quat(const capEnv *e, double quat[4]) {
  if (e->cm->site_eef < 0) {
    quat[0] = 1;
    quat[1] = quat[2] = quat[3] = 0;
    return;
  }
  mju_mat2Quat(quat, e->d->site_xmat + 9 * e->cm->site_eef);
}

int cap_env_object_pos(const capEnv *e, double pos[3]) {
  if (!e->cm->nobj) return tk_error(TK_ENOTFOUND, "task %s has no object", e->cm->spec.task);
  memcpy(pos, e->d->xpos + 3 * e->cm->obj_body[0], 3 * sizeof(double));
  return 0;
}

void cap_env_goal_pos(const capEnv *e, double pos[3]) { memcpy(pos, e->goal, sizeof e->goal); }

double cap_env_gripper(const capEnv *e) {
  const capModel *cm = e->cm;
  if (!cm->narm) return 0;
  double span = cm->finger_closed - cm->finger_open;
  if (span == 0) return 0;
  return clampd((e->d->qpos[cm->finger_qadr[0]] - cm->finger_open) / span, 0, 1); /* 0 open .. 1 closed */
}

/* ---- observations ---- */
static int render_cams(capEnv *e) {
  const capModel *cm = e->cm;
  for (int c = 0; c < cm->opts.ncams; c++) {
    const capCamera *cam = &cm->opts.cams[c];
    int rc = cap_env_render(e, cam->name, cam->width, cam->height, e->img[c]);
    if (rc) return rc;
  }
  return 0;
}

static void fill_obs(capEnv *e, capObs *obs) {
  const capModel *cm = e->cm;
  const mjData *d = e->d;
  double *o = e->low;
  if (!cm->task) { /* a user's scene */
    memcpy(o, d->qpos, (size_t)cm->m->nq * sizeof(double));
    memcpy(o + cm->m->nq, d->qvel, (size_t)cm->m->nv * sizeof(double));
  } else {
    double eef[3], q[4];
    cap_env_eef_pos(e, eef);
    cap_env_eef_quat(e, q);
    memcpy(o, eef, sizeof eef);
    memcpy(o + 3, q, sizeof q);
    o[7] = d->qpos[cm->finger_qadr[0]];
    o[8] = d->qpos[cm->finger_qadr[1]];
    for (int i = 0; i < CAP_ARM_DOF; i++) {
      o[9 + i] = d->qpos[cm->arm_qadr[i]];
      o[16 + i] = d->qvel[cm->arm_dadr[i]];
    }
    cm->task->object_obs(e, eef, o + 23); /* "object": the task's */
  }
  if (!obs) return;
  obs->n = cm->spec.nobs;
  for (int k = 0; k < cm->spec.nobs; k++)
    obs->v[k] = cm->spec.obs[k].dtype == CAP_F64 ? (const void *)(e->low + cm->obs_off[k])
                                                 : (const void *)e->img[k - (cm->spec.nobs - cm->opts.ncams)];
}

/* A robot's view: the arm model posed from the joint positions just read (obs->v[0]), kinematics, and
 * the simulated bus's cameras rendered from it, after the three low-dim keys. */
static int robot_view(capEnv *e, int rc, capObs *obs) {
  const capModel *cm = e->cm;
  if (rc || !obs || !e->d) return rc;
  const double *q = obs->v[0];
  for (int i = 0; i < cm->robot->n; i++)
    if (e->robot_qadr[i] >= 0) e->d->qpos[e->robot_qadr[i]] = q[i];
  mj_forward(cm->m, e->d);
  if ((rc = render_cams(e))) return tk_error_wrap(rc, "robot camera");
  for (int c = 0; c < cm->opts.ncams; c++)
    obs->v[obs->n + c] = e->img[c];
  obs->n += cm->opts.ncams;
  return 0;
}

int cap_env_observe(capEnv *e, capObs *obs) {
  if (e->robot) return robot_view(e, cap_robot_observe(e, obs), obs);
  int rc = render_cams(e);
  fill_obs(e, obs);
  return rc;
}

/* ---- task: the row's (capture/tasks/NAME.c) ---- */
static int success_now(const capEnv *e) { return e->cm->task ? e->cm->task->success(e) : 0; }

int cap_env_success(const capEnv *e) { return success_now(e); }

/* Dense rewards shaped like robosuite's (reaching, then the task), 1 at success. */
static double reward_now(const capEnv *e, int success) {
  const capModel *cm = e->cm;
  if (!cm->task) return 0;
  if (cm->opts.sparse_reward || success) return success ? 1.0 : 0.0;
  return cm->task->reward(e);
}

/* Object and goal placement from the seed (independent of the policy's RNG use). */
static void place(capEnv *e, uint64_t seed) {
  const capModel *cm = e->cm;
  tk_rng_seed(&e->rng, seed);
  cm->task->reset(e);
  if (cm->mocap_goal >= 0) memcpy(e->d->mocap_pos + 3 * cm->mocap_goal, e->goal, 3 * sizeof(double));
}

int cap_env_reset(capEnv *e, uint64_t seed, capObs *obs) {
  if (e->robot) return robot_view(e, cap_robot_reset(e, obs), obs); /* a real arm starts where it is */
  const capModel *cm = e->cm;
  mjData *d = e->d;
  if (cm->key_home >= 0)
    mj_resetDataKeyframe(cm->m, d, cm->key_home);
  else
    mj_resetData(cm->m, d);
  e->steps = 0;
  e->warnings = 0;
  e->unstable = 0;
  memset(e->goal, 0, sizeof e->goal);
  if (cm->task)
    place(e, seed);
  else
    tk_rng_seed(&e->rng, seed);
  mj_forward(cm->m, d);
  if (cm->narm) {
    for (int i = 0; i < CAP_ARM_DOF; i++)
      d->ctrl[cm->arm_act[i]] = d->qpos[cm->arm_qadr[i]];
    d->ctrl[cm->act_gripper] = cm->grip_open;
    cap_env_eef_pos(e, e->des_pos);
    cap_env_eef_quat(e, e->des_quat);
  }
  if (cm->nobj) e->rest_z = d->xpos[3 * cm->obj_body[0] + 2];
  return cap_env_observe(e, obs);
}

/* ---- control ---- */
/* Joint targets that put grip_site at the desired pose: damped least squares from the
 * current targets, on scratch data (the real state is untouched). */
static void ik(capEnv *e, double *qt) {
  const capModel *cm = e->cm;
  const mjModel *m = cm->m;
  mjData *s = e->scratch;
  double jacp[3 * 64], jacr[3 * 64];
  if (m->nv > 64) return; /* our arm models are far smaller */
  memcpy(s->qpos, e->d->qpos, (size_t)m->nq * sizeof(double));
  for (int it = 0; it < IK_ITERS; it++) {
    for (int i = 0; i < CAP_ARM_DOF; i++)
      s->qpos[cm->arm_qadr[i]] = qt[i];
    mj_kinematics(m, s);
    mj_comPos(m, s);
    const double *p = s->site_xpos + 3 * cm->site_eef;
    double err[6], cq[4], qerr[4], neg[4];
    for (int i = 0; i < 3; i++)
      err[i] = e->des_pos[i] - p[i];
    mju_mat2Quat(cq, s->site_xmat + 9 * cm->site_eef);
    mju_negQuat(neg, cq);
    mju_mulQuat(qerr, e->des_quat, neg);
    mju_quat2Vel(err + 3, qerr, 1.0);
    double pe = sqrt(err[0] * err[0] + err[1] * err[1] + err[2] * err[2]);
    double re = sqrt(err[3] * err[3] + err[4] * err[4] + err[5] * err[5]);
    for (int i = 0; i < 3; i++) {
      if (pe > IK_MAX_POS_ERR) err[i] *= IK_MAX_POS_ERR / pe;
      if (re > IK_MAX_ROT_ERR) err[3 + i] *= IK_MAX_ROT_ERR / re;
    }
    mj_jacSite(m, s, jacp, jacr, cm->site_eef);
    /* J: 6 x 7 on the arm's dofs */
    double J[6][CAP_ARM_DOF], A[36], L[36], y[6];
    for (int i = 0; i < CAP_ARM_DOF; i++) {
      int dof = cm->arm_dadr[i];
      for (int r = 0; r < 3; r++) {
        J[r][i] = jacp[r * m->nv + dof];
        J[3 + r][i] = jacr[r * m->nv + dof];
      }
    }
    for (int r = 0; r < 6; r++)
      for (int c = 0; c < 6; c++) {
        double sum = r == c ? IK_DAMPING * IK_DAMPING : 0;
        for (int k = 0; k < CAP_ARM_DOF; k++)
          sum += J[r][k] * J[c][k];
        A[r * 6 + c] = sum;
      }
    mju_cholFactor(A, 6, 1e-10);
    memcpy(L, A, sizeof L);
    mju_cholSolve(y, L, err, 6);
    /* primary: dq = J^T (J J^T + l^2 I)^-1 e; secondary: the home pull projected onto what
     * the primary task leaves free, (I - J^T (J J^T + l^2 I)^-1 J) z */
    double z[CAP_ARM_DOF], Jz[6], w[6], dq[CAP_ARM_DOF];
    for (int i = 0; i < CAP_ARM_DOF; i++)
      z[i] = IK_NULL_GAIN * (cm->arm_home[i] - qt[i]);
    for (int r = 0; r < 6; r++) {
      Jz[r] = 0;
      for (int k = 0; k < CAP_ARM_DOF; k++)
        Jz[r] += J[r][k] * z[k];
    }
    mju_cholSolve(w, L, Jz, 6);
    for (int i = 0; i < CAP_ARM_DOF; i++) {
      dq[i] = z[i];
      for (int r = 0; r < 6; r++)
        dq[i] += J[r][i] * (y[r] - w[r]);
      dq[i] = clampd(dq[i], -IK_MAX_DQ, IK_MAX_DQ);
      double q = e->d->qpos[cm->arm_qadr[i]];
      qt[i] = clampd(qt[i] + dq[i], TK_MAX(cm->arm_lo[i], q - MAX_LEAD), TK_MIN(cm->arm_hi[i], q + MAX_LEAD));
    }
  }
}

static int sanitize(capEnv *e, const double *a, double *out, int n) {
  int flags = 0;
  for (int i = 0; i < n; i++) {
    double v = a ? a[i] : 0;
    if (!isfinite(v)) {
      v = 0;
      flags |= CAP_FLAG_NONFINITE;
    } else if (v < -1 || v > 1) {
      v = clampd(v, -1, 1);
      flags |= CAP_FLAG_CLIPPED;
    }
    out[i] = v;
  }
  if (flags) e->warnings++;
  return flags;
}

static void apply_action(capEnv *e, const double *a) {
  const capModel *cm = e->cm;
  mjData *d = e->d;
  if (!cm->task) { /* a user's scene: actions are the actuators' controls */
    for (int i = 0; i < cm->m->nu; i++) {
      double lo = cm->m->actuator_ctrlrange[2 * i], hi = cm->m->actuator_ctrlrange[2 * i + 1];
      if (!cm->m->actuator_ctrllimited[i]) lo = -1, hi = 1;
      d->ctrl[i] = lo + (a[i] + 1) * 0.5 * (hi - lo);
    }
    return;
  }
  double qt[CAP_ARM_DOF];
  for (int i = 0; i < CAP_ARM_DOF; i++)
    qt[i] = d->ctrl[cm->arm_act[i]];
  if (cm->opts.action_mode == CAP_ACT_JOINT) {
    for (int i = 0; i < CAP_ARM_DOF; i++)
      qt[i] = clampd(qt[i] + a[i] * MAX_DQ, cm->arm_lo[i], cm->arm_hi[i]);
  } else {
    double lo[3] = {cm->cfg.x_lo - 0.15, cm->cfg.y_lo - 0.15, cm->cfg.table_z + 0.005};
    double hi[3] = {cm->cfg.x_hi + 0.15, cm->cfg.y_hi + 0.15, cm->cfg.table_z + 0.6};
    for (int i = 0; i < 3; i++)
      e->des_pos[i] = clampd(e->des_pos[i] + a[i] * MAX_DPOS, lo[i], hi[i]);
    double rv[3] = {a[3] * MAX_DROT, a[4] * MAX_DROT, a[5] * MAX_DROT};
    double ang = sqrt(rv[0] * rv[0] + rv[1] * rv[1] + rv[2] * rv[2]);
    if (ang > 1e-12) {
      double axis[3] = {rv[0] / ang, rv[1] / ang, rv[2] / ang}, dq[4], nq[4];
      mju_axisAngle2Quat(dq, axis, ang);
      mju_mulQuat(nq, dq, e->des_quat); /* world-frame rotation */
      mju_normalize4(nq);
      memcpy(e->des_quat, nq, sizeof nq);
    }
    /* no windup: the desired pose leads the actual one by a bounded amount */
    double cur[3], cq[4];
    cap_env_eef_pos(e, cur);
    cap_env_eef_quat(e, cq);
    double lead[3], ll = 0;
    for (int i = 0; i < 3; i++) {
      lead[i] = e->des_pos[i] - cur[i];
      ll += lead[i] * lead[i];
    }
    ll = sqrt(ll);
    if (ll > MAX_POSE_LEAD)
      for (int i = 0; i < 3; i++)
        e->des_pos[i] = cur[i] + lead[i] * MAX_POSE_LEAD / ll;
    double neg[4], qd[4], rv2[3];
    mju_negQuat(neg, cq);
    mju_mulQuat(qd, e->des_quat, neg);
    mju_quat2Vel(rv2, qd, 1.0);
    double ra = sqrt(rv2[0] * rv2[0] + rv2[1] * rv2[1] + rv2[2] * rv2[2]);
    if (ra > MAX_ROT_LEAD) {
      double ax2[3] = {rv2[0] / ra, rv2[1] / ra, rv2[2] / ra}, lim[4], nq2[4];
      mju_axisAngle2Quat(lim, ax2, MAX_ROT_LEAD);
      mju_mulQuat(nq2, lim, cq);
      mju_normalize4(nq2);
      memcpy(e->des_quat, nq2, sizeof nq2);
    }
    ik(e, qt);
  }
  for (int i = 0; i < CAP_ARM_DOF; i++)
    d->ctrl[cm->arm_act[i]] = qt[i];
  double g = a[cm->spec.action_dim - 1];
  d->ctrl[cm->act_gripper] = cm->grip_open + (g + 1) * 0.5 * (cm->grip_closed - cm->grip_open);
}

static int check_stable(capEnv *e) {
  const mjModel *m = e->cm->m;
  const mjData *d = e->d;
  for (int i = 0; i < mjNWARNING; i++)
    if (d->warning[i].number > 0 && i != mjWARN_CONTACTFULL && i != mjWARN_CNSTRFULL) return 0;
  for (int i = 0; i < m->nq; i++)
    if (!isfinite(d->qpos[i])) return 0;
  for (int i = 0; i < m->nv; i++)
    if (!isfinite(d->qvel[i]) || fabs(d->qvel[i]) > 1e4) return 0;
  return 1;
}

int cap_env_step(capEnv *e, const double *action, capStep *out) {
  if (e->robot) return robot_view(e, cap_robot_step(e, action, out), &out->obs);
  const capModel *cm = e->cm;
  const mjModel *m = cm->m;
  mjData *d = e->d;
  memset(out, 0, sizeof *out);
  if (e->unstable) return tk_error(TK_EINVAL, "the simulation diverged; reset the environment");
  out->flags = sanitize(e, action, out->action, cm->spec.action_dim); /* what runs, and what is recorded */
  apply_action(e, out->action);
  for (int k = 0; k < cm->nsub; k++) {
    /* step1 computes the bias forces of the current state; gravity compensation on the arm
     * (as a real arm's controller provides) uses them; step2 integrates */
    mj_step1(m, d);
    for (int i = 0; i < cm->narm; i++)
      d->qfrc_applied[cm->arm_dadr[i]] = d->qfrc_bias[cm->arm_dadr[i]];
    mj_step2(m, d);
  }
  /* positions of bodies and sites for the new state (mj_step leaves them one substep behind), and of
   * cameras and lights (mj_camlight, after the centres of mass it reads for tracking cameras): a camera
   * on the arm (eye_in_hand) would otherwise render from one substep back. Observations, frames
   * included, are then a function of the state alone, as after set_state's mj_forward. The next step's
   * mj_step1 recomputes all of this, so the physics is unchanged. */
  mj_kinematics(m, d);
  mj_comPos(m, d);
  mj_camlight(m, d);
  e->steps++;
  int stable = check_stable(e);
  if (!stable) {
    e->unstable = 1;
    out->flags |= CAP_FLAG_UNSTABLE;
    out->terminated = 1;
    fill_obs(e, &out->obs);
    return 0;
  }
  int rc = cap_env_observe(e, &out->obs);
  out->success = success_now(e);
  out->reward = reward_now(e, out->success);
  out->terminated = 0; /* success does not end an episode by itself: teleop and RL decide */
  out->truncated = cm->cfg.horizon > 0 && e->steps >= cm->cfg.horizon;
  return rc;
}

/* ---- state ---- */
int cap_env_get_state(const capEnv *e, double *s) {
  if (e->robot) return cap_robot_get_state(e, s);
  const capModel *cm = e->cm;
  const mjModel *m = cm->m;
  const mjData *d = e->d;
  s[cm->st_time] = d->time;
  memcpy(s + cm->st_qpos, d->qpos, (size_t)m->nq * sizeof(double));
  memcpy(s + cm->st_qvel, d->qvel, (size_t)m->nv * sizeof(double));
  memcpy(s + cm->st_act, d->act, (size_t)m->na * sizeof(double));
  memcpy(s + cm->st_warm, d->qacc_warmstart, (size_t)m->nv * sizeof(double));
  memcpy(s + cm->st_mpos, d->mocap_pos, (size_t)m->nmocap * 3 * sizeof(double));
  memcpy(s + cm->st_mquat, d->mocap_quat, (size_t)m->nmocap * 4 * sizeof(double));
  memcpy(s + cm->st_ctrl, d->ctrl, (size_t)m->nu * sizeof(double));
  double *t = s + cm->st_task;
  memcpy(t, e->des_pos, 3 * sizeof(double));
  memcpy(t + 3, e->des_quat, 4 * sizeof(double));
  memcpy(t + 7, e->goal, 3 * sizeof(double));
  t[10] = (double)e->steps;
  t[11] = e->rest_z;
  return 0;
}

int cap_env_set_state(capEnv *e, const double *s, capObs *obs) {
  if (e->robot)
    return tk_error(TK_EINVAL, "a real robot cannot be set to a recorded state (replay its actions)");
  const capModel *cm = e->cm;
  const mjModel *m = cm->m;
  mjData *d = e->d;
  for (int i = 0; i < cm->spec.state_dim; i++)
    if (!isfinite(s[i])) return tk_error(TK_ERANGE, "state[%d] is not finite", i);
  d->time = s[cm->st_time];
  memcpy(d->qpos, s + cm->st_qpos, (size_t)m->nq * sizeof(double));
  memcpy(d->qvel, s + cm->st_qvel, (size_t)m->nv * sizeof(double));
  memcpy(d->act, s + cm->st_act, (size_t)m->na * sizeof(double));
  memcpy(d->qacc_warmstart, s + cm->st_warm, (size_t)m->nv * sizeof(double));
  memcpy(d->mocap_pos, s + cm->st_mpos, (size_t)m->nmocap * 3 * sizeof(double));
  memcpy(d->mocap_quat, s + cm->st_mquat, (size_t)m->nmocap * 4 * sizeof(double));
  memcpy(d->ctrl, s + cm->st_ctrl, (size_t)m->nu * sizeof(double));
  const double *t = s + cm->st_task;
  memcpy(e->des_pos, t, 3 * sizeof(double));
  memcpy(e->des_quat, t + 3, 4 * sizeof(double));
  memcpy(e->goal, t + 7, 3 * sizeof(double));
  e->steps = (int64_t)t[10];
  e->rest_z = t[11];
  e->unstable = 0;
  mj_forward(m, d);
  /* MuJoCo 2.2.2's mj_forward leaves two things of the state changed: mj_kinematics normalizes the
   * free joints' quaternions in qpos in place (not idempotent in the last bit: a normalized quaternion
   * normalized again can change), and the constraint solver writes its result to qacc_warmstart. The
   * recorded run's next step starts from the recorded bits of both, so they are put back (measured:
   * without this a third of stack's teleop recordings replayed 1e-9..1e-3 off, lift's up to 3.5e-10). */
  memcpy(d->qpos, s + cm->st_qpos, (size_t)m->nq * sizeof(double));
  memcpy(d->qacc_warmstart, s + cm->st_warm, (size_t)m->nv * sizeof(double));
  return cap_env_observe(e, obs);
}
/* note: mj_forward's extra results (forces, contacts) are recomputed by the next step's
 * mj_step1 from the restored state, so the future matches the recorded run bit for bit */

/* ---- cameras ---- */
int cap_env_render(capEnv *e, const char *camera, int width, int height, uint8_t *rgb) {
  if (e->robot && !e->cm->opts.ncams)
    return tk_error(TK_EINVAL, "camera %s: this robot has no rendered cameras", camera);
  if (!e->render) {
    int mw = TK_MAX(e->cm->m->vis.global.offwidth, width),
        mh = TK_MAX(e->cm->m->vis.global.offheight, height);
    int rc = cap_render_make(e->cm->m, mw, mh, &e->render);
    if (rc) return rc;
  }
  return cap_render_camera(e->render, e->cm->m, e->d, camera, width, height, rgb);
}

void *cap_env_mujoco_data(capEnv *e) { return e->d; }
