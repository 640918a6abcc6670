/* capture/cap_robot.c -- a servo-bus arm (Dynamixel 2.0 or Feetech STS on a USB-serial adapter, or
 * the simulated bus on a pty) behind cap_env, and a leader arm as an input device.
 *
 * Step: the action (-1..1 per joint, across its limits) becomes a target, which is cut to the
 * maximum step from the last target and to the limits, in that order (so no command ever leaves
 * the limits), then one sync write of the goals and one sync read of position, velocity and
 * current (one block of registers). Any failed transaction, after read_retries more attempts
 * within the step, or a servo alarm puts the robot in its safe state before the step returns:
 * hold (goals = the last positions read, clipped to the limits) or torque off. An unplugged
 * adapter cannot be told anything: the servos keep their last goal (a held position). The
 * watchdog thread holds position when no step came for watchdog_s. Reset reconnects. */
#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "cap_internal.h"
#include "cap_robot.h"

/* ---- configuration ---- */
int cap_robot_parse_port(const char *spec, capRobotCfg *c) {
  if (!spec || !*spec)
    return tk_error(TK_EINVAL, "robot: empty port (dxl:/dev/ttyUSB0, fts:/dev/ttyUSB0, simbus)");
  c->simbus = 0;
  c->port[0] = 0;
  if (!strncmp(spec, "simbus", 6) && (spec[6] == 0 || spec[6] == ':')) {
    c->simbus = 1;
    c->kind = SRV_DXL;
    if (spec[6] == ':' && srv_kind_parse(spec + 7, &c->kind))
      return tk_error(TK_EINVAL, "robot '%s': simbus takes dxl or fts", spec);
    return 0;
  }
  const char *colon = strchr(spec, ':');
  char kind[16];
  if (!colon || (size_t)(colon - spec) >= sizeof kind || !colon[1])
    return tk_error(TK_EINVAL, "robot '%s': expected dxl:PORT, fts:PORT or simbus", spec);
  memcpy(kind, spec, (size_t)(colon - spec));
  kind[colon - spec] = 0;
  if (srv_kind_parse(kind, &c->kind))
    return tk_error(TK_EINVAL, "robot '%s': bus '%s' is not dxl (Dynamixel 2.0) or fts (Feetech STS)", spec,
                    kind);
  if (strlen(colon + 1) >= sizeof c->port) return tk_error(TK_EINVAL, "robot '%s': port path too long", spec);
  snprintf(c->port, sizeof c->port, "%s", colon + 1);
  return 0;
}

static void builtin_arm(capRobotCfg *c) {
  static const char *names[6] = {"shoulder_pan", "shoulder_lift", "elbow_flex",
                                 "wrist_flex",   "wrist_roll",    "gripper"};
  snprintf(c->name, sizeof c->name, "simbus_arm");
  c->n = 6;
  for (int i = 0; i < 6; i++) {
    capJoint *j = &c->j[i];
    snprintf(j->name, sizeof j->name, "%s", names[i]);
    j->id = i + 1;
    j->offset = 2048;
    j->direction = 1;
    j->lo = i == 5 ? 0.0 : -1.5;
    j->hi = 1.5;
  }
}

/* The robot config's fields: every key a file may hold, its type and its range (a misspelt safety
 * limit is refused, never left at its default). The leader's joints need no limits. */
#define JOINT_FIELDS(limits_required)                                                                        \
  {                                                                                                          \
    {.key = "name", .types = TK_JSON_STRING},                                                                \
        {.key = "id", .types = TK_JSON_INT, .required = 1, .lo = 0, .hi = SRV_FTS_MAX_ID},                   \
        {.key = "offset", .types = TK_JSON_NUMBER, .lo = -65536, .hi = 65536},                               \
        {.key = "direction", .types = TK_JSON_INT, .lo = -1, .hi = 1},                                       \
        {.key = "min",                                                                                       \
         .types = TK_JSON_NUMBER,                                                                            \
         .required = limits_required,                                                                        \
         .lo = -2 * M_PI,                                                                                    \
         .hi = 2 * M_PI},                                                                                    \
        {.key = "max",                                                                                       \
         .types = TK_JSON_NUMBER,                                                                            \
         .required = limits_required,                                                                        \
         .lo = -2 * M_PI,                                                                                    \
         .hi = 2 * M_PI},                                                                                    \
    {                                                                                                        \
      .key = NULL                                                                                            \
    }                                                                                                        \
  }
static const tkJsonField follower_joint_fields[] = JOINT_FIELDS(1), leader_joint_fields[] = JOINT_FIELDS(0);
#define ROBOT_FIELDS(joint_fields)                                                                           \
  {                                                                                                          \
    {.key = "name", .types = TK_JSON_STRING},                                                                \
        {.key = "baud", .types = TK_JSON_INT, .lo = 9600, .hi = 4500000},                                    \
        {.key = "control_hz", .types = TK_JSON_NUMBER, .lo = 1, .hi = 1000},                                 \
        {.key = "max_step", .types = TK_JSON_NUMBER, .lo = 1e-4, .hi = 3.2},                                 \
        {.key = "watchdog_ms", .types = TK_JSON_NUMBER, .lo = 5, .hi = 10000},                               \
        {.key = "timeout_ms", .types = TK_JSON_NUMBER, .lo = 0, .hi = 1000},                                 \
        {.key = "read_retries", .types = TK_JSON_INT, .lo = 0, .hi = 5},                                     \
        {.key = "on_fault", .types = TK_JSON_STRING}, {.key = "on_exit", .types = TK_JSON_STRING},           \
        {.key = "joints",                                                                                    \
         .types = TK_JSON_ARRAY,                                                                             \
         .required = 1,                                                                                      \
         .lo = 1,                                                                                            \
         .hi = CAP_MAX_ACT,                                                                                  \
         .items = TK_JSON_OBJECT,                                                                            \
         .sub = joint_fields},                                                                               \
    {                                                                                                        \
      .key = NULL                                                                                            \
    }                                                                                                        \
  }
static const tkJsonField follower_fields[] = ROBOT_FIELDS(follower_joint_fields),
                         leader_fields[] = ROBOT_FIELDS(leader_joint_fields);

static int choice(const cJSON *o, const char *key, const char *dflt, const char *path, int *torque_off) {
  const char *s = tk_json_str(o, key, dflt); /* a string when present (checked) */
  if (!strcmp(s, "hold"))
    *torque_off = 0;
  else if (!strcmp(s, "torque_off"))
    *torque_off = 1;
  else
    return tk_error(TK_EFORMAT, "%s: \"%s\" must be \"hold\" or \"torque_off\"", path, key);
  return 0;
}

int cap_robot_cfg_load(const char *spec, const char *path, int leader, capRobotCfg *c) {
  memset(c, 0, sizeof *c);
  int rc = cap_robot_parse_port(spec, c);
  if (rc) return rc;
  c->baud = 1000000;
  c->control_hz = 50;
  c->max_step = 0.1;
  c->watchdog_s = 0.1;
  c->read_retries = 1;
  c->exit_torque_off = 1;
  if (!path) {
    if (!c->simbus)
      return tk_error(TK_EINVAL,
                      "robot %s: a real arm needs its config (--robot-config arm.json: joints, "
                      "calibration, limits)",
                      spec);
    builtin_arm(c);
    return 0;
  }
  if ((rc = tk_copy_name(c->config, sizeof c->config, path, "robot config path"))) return rc;
  cJSON *j;
  if ((rc = tk_json_load_object(path, leader ? leader_fields : follower_fields, &j))) return rc;
  rc = tk_copy_name(c->name, sizeof c->name, tk_json_str(j, "name", leader ? "leader" : "robot"),
                    "robot name");
  if (rc) rc = tk_error_wrap(rc, "%s", path);
  c->baud = (int)tk_json_num(j, "baud", 1000000);
  c->control_hz = tk_json_num(j, "control_hz", 50);
  c->max_step = tk_json_num(j, "max_step", 0.1);
  c->watchdog_s = tk_json_num(j, "watchdog_ms", 100) / 1000;
  c->timeout_s = tk_json_num(j, "timeout_ms", 0) / 1000;
  c->read_retries = (int)tk_json_num(j, "read_retries", 1);
  if (!rc) rc = choice(j, "on_fault", "hold", path, &c->fault_torque_off);
  if (!rc) rc = choice(j, "on_exit", "torque_off", path, &c->exit_torque_off);
  int k = 0;
  const cJSON *jt;
  cJSON_ArrayForEach(jt, cJSON_GetObjectItemCaseSensitive(j, "joints")) { /* 1..CAP_MAX_ACT objects */
    if (rc) break;
    capJoint *q = &c->j[k];
    char where[48];
    snprintf(where, sizeof where, "joints[%d]", k);
    const char *name = tk_json_str(jt, "name", "");
    if (name[0] && (rc = tk_copy_name(q->name, sizeof q->name, name, "joint name"))) {
      rc = tk_error_wrap(rc, "%s: %s", path, where);
      break;
    }
    if (!q->name[0]) snprintf(q->name, sizeof q->name, "joint%d", k);
    int id = (int)tk_json_num(jt, "id", -1), maxid = srv_codec(c->kind)->max_id;
    double dir = tk_json_num(jt, "direction", 1), lo = tk_json_num(jt, "min", 0),
           hi = tk_json_num(jt, "max", 0);
    if (id > maxid)
      rc = tk_error(TK_EFORMAT, "%s: %s: \"id\" must be an integer in [0, %d] on this bus (not %d)", path,
                    where, maxid, id);
    if (!rc && dir != 1 && dir != -1)
      rc = tk_error(TK_EFORMAT, "%s: %s: \"direction\" must be 1 or -1", path, where);
    if (!rc && !leader && !(lo < hi))
      rc = tk_error(TK_EFORMAT, "%s: %s (%s): \"min\" %g is not below \"max\" %g", path, where, q->name, lo,
                    hi);
    for (int p = 0; p < k && !rc; p++)
      if (c->j[p].id == id)
        rc = tk_error(TK_EFORMAT, "%s: %s: \"id\" %d is also joint '%s'", path, where, id, c->j[p].name);
    q->id = id;
    q->offset = tk_json_num(jt, "offset", 2048);
    q->direction = dir;
    q->lo = leader ? 0 : lo;
    q->hi = leader ? 0 : hi;
    k++;
  }
  c->n = k;
  cJSON_Delete(j);
  return rc;
}

/* ---- the robot at run time ---- */
typedef struct capRobot {
  const capRobotCfg *c;
  srvSim *sim; /* owned (simbus) */
  srvBus *bus;
  pthread_mutex_t mu; /* everything below, and the bus */
  pthread_cond_t cv;
  pthread_t wd;
  int wd_live, stop;
  int torque, held, faulted, connected;
  int ready; /* a reset succeeded: the targets are where the arm is (steps before that send nothing) */
  int64_t last_cmd_ns, holds;
  char fault[256];
  uint8_t ids[CAP_MAX_ACT];
  int32_t present[CAP_MAX_ACT]; /* ticks, last good read */
  double target[CAP_MAX_ACT];   /* rad, last commanded */
  double *low;                  /* obs: pos, vel, current (n each) */
  uint16_t blk_addr, blk_len;   /* one sync read covering the three registers */
  uint8_t *blk;
} capRobot;

static double ticks_to_rad(const capJoint *j, double t) {
  return (t - j->offset) * j->direction / CAP_ROBOT_TICKS_PER_RAD;
}
static int32_t rad_to_ticks(const capJoint *j, double r) {
  return (int32_t)lround(j->offset + j->direction * r * CAP_ROBOT_TICKS_PER_RAD);
}
static double clampd(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }

/* A target in ticks that is inside the joint's limits whatever rounding does. */
static int32_t safe_ticks(const capJoint *j, double rad) {
  int32_t t = rad_to_ticks(j, clampd(rad, j->lo, j->hi));
  double r = ticks_to_rad(j, t);
  if (r < j->lo) t += (int32_t)j->direction;
  if (r > j->hi) t -= (int32_t)j->direction;
  return t;
}

int cap_robot_model_init(const capOpts *o, capModel *cm) {
  capRobotCfg *c = calloc(1, sizeof *c);
  if (!c) return tk_error(TK_ENOMEM, "out of memory");
  cm->robot = c;
  cm->site_eef = cm->mocap_goal = cm->key_home = -1;
  int rc = cap_robot_cfg_load(o->robot, o->robot_config, 0, c);
  if (rc) return rc;
  capSpec *s = &cm->spec;
  snprintf(s->task, sizeof s->task, "%s", c->name);
  s->action_dim = c->n;
  s->action_low = -1;
  s->action_high = 1;
  s->action_mode = CAP_ACT_JOINT_POS;
  s->control_hz = c->control_hz;
  s->physics_dt = 0;
  s->horizon = o->horizon > 0 ? o->horizon : 0;
  s->state_dim = 0; /* the dataset's states are a simulator's: a real arm has none to restore */
  s->has_reward = 0;
  const char *keys[3] = {"robot0_joint_pos", "robot0_joint_vel", "robot0_joint_current"};
  s->nobs = 3;
  for (int k = 0; k < 3; k++) {
    snprintf(s->obs[k].name, sizeof s->obs[k].name, "%s", keys[k]);
    s->obs[k].dtype = CAP_F64;
    s->obs[k].rank = 1;
    s->obs[k].shape[0] = c->n;
  }
  if (o->ncams && !c->simbus)
    return tk_error(
        TK_EINVAL,
        "robot %s: cameras on a real arm come from USB (V4L2) devices, which are not supported yet "
        "(the simulated bus renders its cameras)",
        o->robot);
  for (int k = 0; k < o->ncams; k++) { /* rendered from the arm's model, posed from the servos */
    capObsSpec *os = &s->obs[s->nobs++];
    if (cap_camera_key(o->cams[k].name, os->name, sizeof os->name)) return TK_ERANGE;
    os->dtype = CAP_U8;
    os->rank = 3;
    os->shape[0] = o->cams[k].height;
    os->shape[1] = o->cams[k].width;
    os->shape[2] = 3;
  }
  return 0;
}

int cap_model_is_robot(const capModel *m) { return m->robot != NULL; }

/* The bus is open and its adapter still there (caller holds mu). */
static int linked(const capRobot *r) {
  return r->bus && r->connected && srv_serial_connected(srv_bus_serial(r->bus));
}

/* Torque on or off on every joint (caller holds mu). */
static int send_torque(capRobot *r, int on) {
  int32_t v[CAP_MAX_ACT];
  for (int i = 0; i < r->c->n; i++)
    v[i] = on ? 1 : 0;
  int rc = srv_bus_sync_write_reg(r->bus, SRV_REG_TORQUE_ENABLE, r->ids, r->c->n, v);
  if (!rc) r->torque = on;
  return rc;
}

/* Hold where the arm is: the targets become the positions last read (inside the limits), sent as the
 * goals. Never a jump to an old goal (caller holds mu). */
static int send_hold(capRobot *r) {
  int32_t v[CAP_MAX_ACT];
  for (int i = 0; i < r->c->n; i++) {
    const capJoint *j = &r->c->j[i];
    r->target[i] = clampd(ticks_to_rad(j, r->present[i]), j->lo, j->hi);
    v[i] = safe_ticks(j, r->target[i]);
  }
  return srv_bus_sync_write_reg(r->bus, SRV_REG_GOAL_POSITION, r->ids, r->c->n, v);
}

/* The safe state (caller holds mu). */
static void safe_state(capRobot *r) {
  if (!srv_serial_connected(srv_bus_serial(r->bus))) {
    r->connected = 0;
    return; /* nothing can be sent: the servos keep their last goal */
  }
  if (r->c->fault_torque_off)
    send_torque(r, 0);
  else
    send_hold(r);
}

/* One read of position, velocity and current for every joint, with retries (caller holds mu). */
static int read_present(capRobot *r) {
  const capRobotCfg *c = r->c;
  const srvKind k = c->kind;
  int rc = 0;
  for (int attempt = 0; attempt <= c->read_retries; attempt++) {
    rc = srv_bus_sync_read(r->bus, r->blk_addr, r->blk_len, r->ids, c->n, r->blk, NULL);
    if (!rc || srv_bus_last_fail(r->bus) == SRV_FAIL_HANGUP) break;
  }
  if (rc) return rc;
  const srvReg *pos = srv_reg(k, SRV_REG_PRESENT_POSITION), *vel = srv_reg(k, SRV_REG_PRESENT_VELOCITY),
               *cur = srv_reg(k, SRV_REG_PRESENT_CURRENT);
  /* units per the codec's row (Dynamixel 0.229 rpm and 2.69 mA, Feetech steps/s and 6.5 mA) */
  const double vel_unit = srv_codec(k)->vel_unit, cur_unit = srv_codec(k)->cur_unit;
  for (int i = 0; i < c->n; i++) {
    const uint8_t *b = r->blk + (size_t)i * r->blk_len;
    const capJoint *j = &c->j[i];
    r->present[i] = srv_decode(k, b + pos->addr - r->blk_addr, pos->len);
    r->low[i] = ticks_to_rad(j, r->present[i]);
    r->low[c->n + i] = srv_decode(k, b + vel->addr - r->blk_addr, vel->len) * vel_unit * j->direction;
    r->low[2 * c->n + i] = srv_decode(k, b + cur->addr - r->blk_addr, cur->len) * cur_unit * j->direction;
    uint8_t err = srv_bus_servo_error(r->bus, r->ids[i]);
    if (err) {
      char e[96], msg[160];
      srv_error_str(k, err, e, sizeof e);
      snprintf(msg, sizeof msg, "servo %d (%s) reports %s", r->ids[i], j->name, e);
      return tk_error(TK_EIO, "%s", msg);
    }
  }
  return 0;
}

/* A failed transaction: remember why (the first cause) and go to the safe state. */
static void fault_from_bus(capRobot *r, const char *what) {
  if (!r->faulted) snprintf(r->fault, sizeof r->fault, "%s: %s", what, tk_errmsg());
  r->faulted = 1;
  safe_state(r);
}

static void *watchdog(void *arg) {
  capRobot *r = arg;
  pthread_mutex_lock(&r->mu);
  while (!r->stop) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + (int64_t)(r->c->watchdog_s * 0.25e9);
    ts.tv_sec = ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    pthread_cond_timedwait(&r->cv, &r->mu, &ts);
    if (r->stop) break;
    if (r->faulted || !r->torque || r->held || !r->connected) continue;
    if (tk_now_ns() - r->last_cmd_ns < (int64_t)(r->c->watchdog_s * 1e9)) continue;
    /* commands stopped: hold where the arm is now */
    if (read_present(r) || send_hold(r)) {
      fault_from_bus(r, "watchdog");
      continue;
    }
    r->held = 1;
    r->holds++;
    tk_debug("robot: no command for %.0f ms: holding position", r->c->watchdog_s * 1e3);
  }
  pthread_mutex_unlock(&r->mu);
  return NULL;
}

static int bus_open(capRobot *r) {
  const capRobotCfg *c = r->c;
  srvBusOpts bo;
  srv_bus_default(&bo);
  bo.kind = c->kind;
  bo.baud = c->baud;
  const char *port = c->simbus ? srv_sim_path(r->sim) : c->port;
  int rc = srv_bus_open(&r->bus, port, &bo);
  if (rc) return tk_error_wrap(rc, "robot %s", port);
  /* a fault must be seen, and the safe state sent, within the control period: every attempt of a
   * read (1 + read_retries) must time out within less than half of it */
  const int64_t cap_us = (int64_t)(1e6 / c->control_hz / (2 * (1 + c->read_retries) + 1));
  int64_t us = c->timeout_s > 0 ? (int64_t)(c->timeout_s * 1e6) : srv_bus_timeout_us(r->bus);
  if (us > cap_us) {
    if (c->timeout_s <= 0 && srv_serial_latency_timer_ms(srv_bus_serial(r->bus)) > 2)
      tk_warn("robot %s: the adapter's latency timer is %d ms; at %g Hz set it to 1 ms (docs/robots.md)",
              port, srv_serial_latency_timer_ms(srv_bus_serial(r->bus)), c->control_hz);
    us = cap_us;
  }
  srv_bus_set_timeout_us(r->bus, us);
  r->connected = 1;
  return 0;
}

int cap_robot_env_make(capEnv *e) {
  const capRobotCfg *c = e->cm->robot;
  capRobot *r = calloc(1, sizeof *r);
  if (!r) return tk_error(TK_ENOMEM, "out of memory");
  e->robot = r;
  r->c = c;
  pthread_mutex_init(&r->mu, NULL);
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&r->cv, &ca);
  pthread_condattr_destroy(&ca);
  for (int i = 0; i < c->n; i++)
    r->ids[i] = (uint8_t)c->j[i].id;
  /* the smallest block of registers holding position, velocity and current */
  srvRegId regs[3] = {SRV_REG_PRESENT_POSITION, SRV_REG_PRESENT_VELOCITY, SRV_REG_PRESENT_CURRENT};
  int lo = 1 << 16, hi = 0;
  for (int k = 0; k < 3; k++) {
    const srvReg *g = srv_reg(c->kind, regs[k]);
    lo = TK_MIN(lo, g->addr);
    hi = TK_MAX(hi, g->addr + g->len);
  }
  r->blk_addr = (uint16_t)lo;
  r->blk_len = (uint16_t)(hi - lo);
  r->blk = malloc((size_t)c->n * r->blk_len);
  r->low = calloc((size_t)c->n * 3 + 1, sizeof(double));
  if (!r->blk || !r->low) return tk_error(TK_ENOMEM, "out of memory");
  int rc = 0;
  if (c->simbus && (rc = srv_sim_start(c->kind, c->n, &r->sim))) return rc;
  if ((rc = bus_open(r))) return rc;
  if (pthread_create(&r->wd, NULL, watchdog, r))
    return tk_error(TK_ENOMEM, "robot: cannot start the watchdog");
  r->wd_live = 1;
  return 0;
}

void cap_robot_env_free(capEnv *e) {
  capRobot *r = e->robot;
  if (!r) return;
  if (r->wd_live) {
    pthread_mutex_lock(&r->mu);
    r->stop = 1;
    pthread_cond_signal(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->wd, NULL);
  }
  if (linked(r) && r->torque) {
    if (r->c->exit_torque_off)
      send_torque(r, 0);
    else if (!read_present(r))
      send_hold(r);
  }
  srv_bus_free(r->bus);
  srv_sim_stop(r->sim);
  pthread_cond_destroy(&r->cv);
  pthread_mutex_destroy(&r->mu);
  free(r->blk);
  free(r->low);
  free(r);
  e->robot = NULL;
}

static void fill(capRobot *r, capObs *obs) {
  if (!obs) return;
  int n = r->c->n;
  obs->n = 3;
  for (int k = 0; k < 3; k++)
    obs->v[k] = r->low + (size_t)k * (size_t)n;
}

int cap_robot_reset(capEnv *e, capObs *obs) {
  capRobot *r = e->robot;
  const capRobotCfg *c = r->c;
  const char *port = c->simbus ? srv_sim_path(r->sim) : c->port;
  pthread_mutex_lock(&r->mu);
  int rc = 0;
  r->ready = 0;
  if (!linked(r)) { /* reconnect */
    srv_bus_free(r->bus);
    r->bus = NULL;
    r->connected = 0;
    rc = bus_open(r);
  }
  /* a reset is not time-critical: a patient timeout and a few attempts (a loaded machine can be late) */
  const int64_t step_timeout = rc ? 0 : srv_bus_timeout_us(r->bus);
  if (!rc) srv_bus_set_timeout_us(r->bus, 100000);
  for (int i = 0; i < c->n && !rc; i++) {
    for (int attempt = 0; attempt < 3; attempt++)
      if (!(rc = srv_bus_ping(r->bus, r->ids[i], NULL)) || srv_bus_last_fail(r->bus) == SRV_FAIL_HANGUP)
        break;
    if (rc) rc = tk_error_wrap(rc, "robot %s: servo %d (%s) does not answer", port, r->ids[i], c->j[i].name);
  }
  if (!rc && (rc = read_present(r))) rc = tk_error_wrap(rc, "robot %s", port);
  for (int i = 0; i < c->n && !rc; i++) {
    const capJoint *j = &c->j[i];
    double q = r->low[i], tol = 0.02;
    if (q < j->lo - tol || q > j->hi + tol)
      rc = tk_error(
          TK_ERANGE,
          "robot %s: joint %s is at %.3f rad, outside its limits [%.3f, %.3f]: move it inside by hand "
          "(or fix the calibration in %s)",
          port, j->name, q, j->lo, j->hi, c->config[0] ? c->config : "the config");
  }
  /* goals where the arm is, then torque: no jump */
  if (!rc && ((rc = send_hold(r)) || (rc = send_torque(r, 1))))
    rc = tk_error_wrap(rc, "robot %s: torque on", port);
  if (r->bus && step_timeout) srv_bus_set_timeout_us(r->bus, step_timeout);
  if (!rc) {
    r->ready = 1;
    r->faulted = 0;
    r->fault[0] = 0;
    r->held = 0;
    r->last_cmd_ns = tk_now_ns();
    e->steps = 0;
    e->warnings = 0;
  }
  fill(r, obs);
  pthread_mutex_unlock(&r->mu);
  return rc;
}

/* A joint target (rad) as the absolute-target action that commands it (-1 .. 1 across the limits). */
static double target_action(const capJoint *j, double rad) {
  return clampd(2 * (rad - j->lo) / (j->hi - j->lo) - 1, -1, 1);
}

int cap_robot_step(capEnv *e, const double *action, capStep *out) {
  capRobot *r = e->robot;
  const capRobotCfg *c = r->c;
  memset(out, 0, sizeof *out);
  pthread_mutex_lock(&r->mu);
  if (!r->ready && !r->faulted) { /* never send targets that were not set from where the arm is */
    pthread_mutex_unlock(&r->mu);
    return tk_error(TK_EINVAL, "robot: step before a successful reset (nothing sent)");
  }
  if (!r->faulted) {
    int32_t v[CAP_MAX_ACT];
    for (int i = 0; i < c->n; i++) {
      const capJoint *j = &c->j[i];
      double a = action[i], t;
      if (!isfinite(a)) {
        out->flags |= CAP_FLAG_NONFINITE;
        t = r->target[i]; /* a NaN means nothing: stay */
      } else {
        if (a < -1 || a > 1) out->flags |= CAP_FLAG_CLIPPED;
        a = clampd(a, -1, 1);
        t = j->lo + 0.5 * (a + 1) * (j->hi - j->lo);
      }
      double d = clampd(t - r->target[i], -c->max_step, c->max_step);
      double t2 = clampd(r->target[i] + d, j->lo, j->hi);
      if (fabs(t2 - t) > 1e-12) out->flags |= CAP_FLAG_LIMITED;
      r->target[i] = t2;
      v[i] = safe_ticks(j, t2);
      /* executed: the clipped action itself when nothing cut it, else the target sent, normalized */
      out->action[i] = isfinite(a) && t2 == t ? a : target_action(j, t2);
    }
    if (out->flags & (CAP_FLAG_NONFINITE | CAP_FLAG_CLIPPED)) e->warnings++;
    if (srv_bus_sync_write_reg(r->bus, SRV_REG_GOAL_POSITION, r->ids, c->n, v)) {
      fault_from_bus(r, "sending goals");
    } else {
      r->last_cmd_ns = tk_now_ns();
      r->held = 0;
      if (read_present(r)) fault_from_bus(r, "reading positions");
    }
  }
  if (r->faulted) { /* the safe state: the targets it holds (or left standing with torque off) */
    out->flags |= CAP_FLAG_FAULT;
    out->terminated = 1;
    for (int i = 0; i < c->n; i++)
      out->action[i] = target_action(&c->j[i], r->target[i]);
  }
  e->steps++;
  out->truncated = e->cm->spec.horizon > 0 && e->steps >= e->cm->spec.horizon;
  fill(r, &out->obs);
  pthread_mutex_unlock(&r->mu);
  return 0;
}

int cap_robot_get_state(const capEnv *e, double *s) {
  (void)e; /* state_dim is 0: nothing to write */
  (void)s;
  return 0;
}

int cap_env_hold_action(const capEnv *e, double *action) {
  capRobot *r = e->robot;
  if (!r) return tk_error(TK_EINVAL, "hold action: not a robot");
  pthread_mutex_lock(&r->mu);
  for (int i = 0; i < r->c->n; i++)
    action[i] = target_action(&r->c->j[i], r->target[i]);
  pthread_mutex_unlock(&r->mu);
  return 0;
}

int cap_model_joints(const capModel *m, const char **names, double *lo, double *hi) {
  const capRobotCfg *c = m->robot;
  if (!c) return 0;
  for (int i = 0; i < c->n; i++) {
    if (names) names[i] = c->j[i].name;
    if (lo) lo[i] = c->j[i].lo;
    if (hi) hi[i] = c->j[i].hi;
  }
  return c->n;
}

int cap_robot_observe(capEnv *e, capObs *obs) {
  capRobot *r = e->robot;
  pthread_mutex_lock(&r->mu);
  fill(r, obs);
  pthread_mutex_unlock(&r->mu);
  return 0;
}

const char *cap_env_fault(const capEnv *e) {
  capRobot *r = e->robot;
  if (!r) return NULL;
  pthread_mutex_lock(&r->mu);
  const char *f = r->faulted ? r->fault : NULL;
  pthread_mutex_unlock(&r->mu);
  return f;
}

int cap_env_torque(capEnv *e, int on) {
  capRobot *r = e->robot;
  if (!r) return tk_error(TK_EINVAL, "torque: not a robot");
  pthread_mutex_lock(&r->mu);
  if (!linked(r)) {
    pthread_mutex_unlock(&r->mu);
    return tk_error(TK_EIO, "robot: not connected (reset reconnects)");
  }
  int rc = 0;
  if (on && !(rc = read_present(r))) rc = send_hold(r); /* hold where the arm is first */
  if (!rc) rc = send_torque(r, on);
  if (!rc) r->last_cmd_ns = tk_now_ns();
  pthread_mutex_unlock(&r->mu);
  return rc ? tk_error_wrap(rc, "robot: torque %s", on ? "on" : "off") : 0;
}

int64_t cap_env_watchdog_holds(const capEnv *e) {
  capRobot *r = e->robot;
  if (!r) return 0;
  pthread_mutex_lock(&r->mu);
  int64_t h = r->holds;
  pthread_mutex_unlock(&r->mu);
  return h;
}

struct srvSim *cap_env_robot_sim(capEnv *e) {
  return e->robot ? e->robot->sim : NULL;
}

int cap_env_joint_pos(const capEnv *e, double *rad) {
  capRobot *r = e->robot;
  if (!r) return tk_error(TK_EINVAL, "joint positions: not a robot");
  pthread_mutex_lock(&r->mu);
  memcpy(rad, r->low, sizeof(double) * (size_t)r->c->n);
  pthread_mutex_unlock(&r->mu);
  return 0;
}

/* ---- the leader arm ---- */
struct capLeader {
  capRobotCfg c; /* the leader's ids and calibration, in the follower's joint order */
  const capRobotCfg *follower;
  srvSim *sim;
  srvBus *bus;
  uint8_t ids[CAP_MAX_ACT];
  char desc[128];
};

int cap_leader_open(const char *spec, const char *config, const capModel *follower, capLeader **out) {
  *out = NULL;
  if (!follower->robot)
    return tk_error(TK_EINVAL, "a leader arm drives a robot (--robot), not a simulated task");
  const capRobotCfg *f = follower->robot;
  capLeader *l = calloc(1, sizeof *l);
  if (!l) return tk_error(TK_ENOMEM, "out of memory");
  l->follower = f;
  int rc = 0;
  if (config) {
    rc = cap_robot_cfg_load(spec, config, 1, &l->c);
  } else if (!(rc = cap_robot_parse_port(spec, &l->c))) {
    if (!l->c.simbus)
      rc = tk_error(TK_EINVAL,
                    "leader %s: a real leader arm needs its config (--leader-config: ids and calibration; "
                    "--calibrate-leader writes it)",
                    spec);
    else { /* the simulated leader: the follower's joints, the same calibration */
      capRobotCfg keep = l->c;
      l->c = *f;
      l->c.simbus = 1;
      l->c.kind = keep.kind;
      l->c.port[0] = 0;
      l->c.config[0] = 0;
      snprintf(l->c.name, sizeof l->c.name, "simbus_leader");
    }
  }
  if (!rc && l->c.n != f->n)
    rc = tk_error(TK_EINVAL, "leader %s: %d joints, the follower (%s) has %d", config ? config : spec, l->c.n,
                  f->config[0] ? f->config : f->name, f->n);
  if (!rc && l->c.simbus) rc = srv_sim_start(l->c.kind, l->c.n, &l->sim);
  if (!rc) {
    srvBusOpts bo;
    srv_bus_default(&bo);
    bo.kind = l->c.kind;
    bo.baud = l->c.baud;
    const char *port = l->sim ? srv_sim_path(l->sim) : l->c.port;
    if ((rc = srv_bus_open(&l->bus, port, &bo))) rc = tk_error_wrap(rc, "leader %s", port);
    snprintf(l->desc, sizeof l->desc, "leader arm %s (%s)", l->c.name, l->sim ? "simulated bus" : port);
  }
  for (int i = 0; i < l->c.n && !rc; i++) {
    l->ids[i] = (uint8_t)l->c.j[i].id;
    if ((rc = srv_bus_ping(l->bus, l->ids[i], NULL)))
      rc = tk_error_wrap(rc, "leader: servo %d (%s) does not answer", l->ids[i], l->c.j[i].name);
  }
  if (!rc) { /* limp: the operator moves it */
    int32_t v[CAP_MAX_ACT] = {0};
    rc = srv_bus_sync_write_reg(l->bus, SRV_REG_TORQUE_ENABLE, l->ids, l->c.n, v);
    if (rc) rc = tk_error_wrap(rc, "leader: torque off");
  }
  if (rc) {
    cap_leader_close(l);
    return rc;
  }
  *out = l;
  return 0;
}

void cap_leader_close(capLeader *l) {
  if (!l) return;
  srv_bus_free(l->bus);
  srv_sim_stop(l->sim);
  free(l);
}

int cap_leader_read(capLeader *l, double *rad) {
  int32_t v[CAP_MAX_ACT];
  int rc = 0;
  for (int attempt = 0; attempt <= l->c.read_retries; attempt++) /* one corrupt answer is not a lost leader */
    if (!(rc = srv_bus_sync_read_reg(l->bus, SRV_REG_PRESENT_POSITION, l->ids, l->c.n, v, NULL)) ||
        srv_bus_last_fail(l->bus) == SRV_FAIL_HANGUP)
      break;
  if (rc) return tk_error_wrap(rc, "leader");
  for (int i = 0; i < l->c.n; i++)
    rad[i] = ticks_to_rad(&l->c.j[i], v[i]);
  return 0;
}

int cap_leader_action(capLeader *l, double *action) {
  double q[CAP_MAX_ACT];
  int rc = cap_leader_read(l, q);
  if (rc) return rc;
  for (int i = 0; i < l->c.n; i++) {
    const capJoint *j = &l->follower->j[i];
    action[i] = clampd(2 * (q[i] - j->lo) / (j->hi - j->lo) - 1, -1, 1);
  }
  return 0;
}

int cap_leader_calibrate(capLeader *l, const double *follower_rad, const char *out_path) {
  int32_t v[CAP_MAX_ACT];
  int rc = srv_bus_sync_read_reg(l->bus, SRV_REG_PRESENT_POSITION, l->ids, l->c.n, v, NULL);
  if (rc) return tk_error_wrap(rc, "leader calibration");
  cJSON *root = cJSON_CreateObject(), *joints = cJSON_AddArrayToObject(root, "joints");
  cJSON_AddStringToObject(root, "name", l->c.name);
  cJSON_AddNumberToObject(root, "baud", l->c.baud);
  for (int i = 0; i < l->c.n; i++) {
    capJoint *j = &l->c.j[i];
    /* ticks = offset + direction * rad * k  at the follower's angle */
    j->offset = v[i] - j->direction * follower_rad[i] * CAP_ROBOT_TICKS_PER_RAD;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "name", l->follower->j[i].name);
    cJSON_AddNumberToObject(o, "id", j->id);
    cJSON_AddNumberToObject(o, "offset", round(j->offset * 1000) / 1000);
    cJSON_AddNumberToObject(o, "direction", j->direction);
    cJSON_AddItemToArray(joints, o);
  }
  char *text = cJSON_Print(root);
  cJSON_Delete(root);
  if (!text) return tk_error(TK_ENOMEM, "out of memory");
  char tmp[4200];
  int fd = tk_temp_beside(out_path, tmp, sizeof tmp); /* a name of ours alone: never a user's <path>.tmp */
  FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
  rc = fd < 0 ? fd : f ? 0 : tk_error(TK_EIO, "%s: cannot write", tmp);
  if (fd >= 0 && !f) close(fd);
  if (f) {
    if (fprintf(f, "%s\n", text) < 0) rc = tk_error(TK_EIO, "%s: write failed", tmp);
    if (fclose(f) && !rc) rc = tk_error(TK_EIO, "%s: write failed", tmp);
  }
  free(text);
  if (!rc) rc = tk_durable_rename(tmp, out_path);
  if (rc && fd >= 0) unlink(tmp);
  return rc;
}

struct srvSim *cap_leader_sim(capLeader *l) {
  return l->sim;
}

int cap_leader_sim_pose(capLeader *l, const double *rad) {
  if (!l->sim) return tk_error(TK_EINVAL, "leader %s: not a simulated arm", l->desc);
  for (int i = 0; i < l->c.n; i++) {
    int rc = srv_sim_move(l->sim, l->ids[i], rad_to_ticks(&l->c.j[i], rad[i]));
    if (rc) return rc;
  }
  return 0;
}
const char *cap_leader_desc(const capLeader *l) { return l->desc; }
