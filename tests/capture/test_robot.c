/* The servo-bus robot behind cap_env (capture/cap_robot.c) against the simulated bus (srv_sim on a
 * pty): the JSON configuration (good files load into the spec, bad ones are refused naming the
 * file and the field), tracking and observations through the calibration, the safety of every
 * command (maximum step, joint limits, NaN and out-of-range actions, checked on the simulator's
 * log of what the servos received), the watchdog, each fault (dropped replies, corrupt
 * checksums, servo alarms, unplug: the safe state is commanded before the faulted step returns,
 * nothing is sent afterwards, reset recovers or says why not), the reset's refusal of a joint
 * outside its limits, and the leader arm (limp, read through its calibration, followed, and
 * calibrated against the follower).
 *
 * Both ways to a robot are used: "simbus" / "simbus:fts" (the env runs its own simulated bus)
 * and "dxl:PORT" / "fts:PORT" on a simulator this file starts, with a JSON written here.
 *
 * Ordering against the simulator: a broadcast (sync write) has no answer, so the simulator may
 * parse it after the call that sent it has returned. To know that everything sent before a
 * point has been executed, and to prove that something was sent before that point, the test
 * writes its own marker (a ping to an id nobody has, so nobody answers) on the same port and
 * waits for it in the log: bytes on one tty arrive in the order they were written. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <ctype.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cap.h"
#include "srv.h"
#include "tk.h"
#include "tt.h"

#define TPR (4096.0 / (2.0 * M_PI)) /* ticks per radian, both families */
#define MARK_ID 200                 /* a bus id no simulated servo has: the test's marker pings it */

/* ---- configurations as the test writes them ---- */
typedef struct {
  const char *name;
  int id;
  double offset, dir, lo, hi;
} tJoint;

typedef struct {
  const char *name;
  double hz, max_step, watchdog_ms;
  int retries;
  const char *on_fault;
  int n;
  tJoint j[8];
} tCfg;

static const char *arm_names[6] = {"shoulder_pan", "shoulder_lift", "elbow_flex",
                                   "wrist_flex",   "wrist_roll",    "gripper"};

/* The simulated bus's built-in arm (cap_robot.c builtin_arm), as a file. The control rate in the
 * file only sets the spec and the bus timeout, which cap_robot.c cuts to a fraction of the period
 * (4 ms per attempt at 50 Hz with one retry): a round trip through the pty takes 0.05 ms
 * typically, but tens of ms now and then on a loaded 2-core machine, which would be a fault. The
 * files here say 2 Hz (then the bus's own timeout applies: 34 ms on a pty) and the test paces its
 * steps itself (50 Hz); the built-in arm (50 Hz) is exercised where its timing is the point. */
#define SLOW_HZ 2.0
static tCfg arm_cfg(void) {
  tCfg c = {.name = "test_arm",
            .hz = SLOW_HZ,
            .max_step = 0.1,
            .watchdog_ms = 100,
            .retries = 1,
            .on_fault = "hold",
            .n = 6};
  for (int i = 0; i < 6; i++)
    c.j[i] = (tJoint){arm_names[i], i + 1, 2048, 1, i == 5 ? 0.0 : -1.5, 1.5};
  return c;
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fputs(text, f);
  cr_assert_eq(fclose(f), 0);
}

static void write_cfg(const tCfg *c, const char *path) {
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f, "%s", path);
  fprintf(f,
          "{\"name\": \"%s\", \"control_hz\": %.17g, \"max_step\": %.17g, \"watchdog_ms\": %.17g, "
          "\"read_retries\": %d, \"on_fault\": \"%s\", \"on_exit\": \"torque_off\", \"joints\": [",
          c->name, c->hz, c->max_step, c->watchdog_ms, c->retries, c->on_fault);
  for (int i = 0; i < c->n; i++)
    fprintf(f,
            "%s\n  {\"name\": \"%s\", \"id\": %d, \"offset\": %.17g, \"direction\": %g, \"min\": %.17g, "
            "\"max\": %.17g}",
            i ? "," : "", c->j[i].name, c->j[i].id, c->j[i].offset, c->j[i].dir, c->j[i].lo, c->j[i].hi);
  fprintf(f, "]}\n");
  cr_assert_eq(fclose(f), 0);
}

static const tJoint *joint_by_id(const tCfg *c, int id) {
  for (int i = 0; i < c->n; i++)
    if (c->j[i].id == id) return &c->j[i];
  return NULL;
}
static double t2r(const tJoint *j, double ticks) { return (ticks - j->offset) * j->dir / TPR; }
static double r2t(const tJoint *j, double rad) { return j->offset + j->dir * rad * TPR; }
/* the target an action in [-1,1] means */
static double target_of(const tJoint *j, double a) { return j->lo + 0.5 * (a + 1) * (j->hi - j->lo); }
static double start_ticks(int id) { return 2048 + 100 * id; } /* where the simulator's servos start */

/* ---- a robot on a simulated bus ---- */
typedef struct {
  tCfg cfg;
  srvKind kind;
  char spec[300], cfg_path[4200];
  srvSim *sim;     /* the bus (the env's own for simbus, else own) */
  srvSim *own;     /* started here (the real-port path) */
  int reset_tries; /* the built-in arm's 4 ms timeouts: a reset may retry a ping that timed out */
  capModel *m;
  capEnv *e;
} rig;

/* real_port: start a simulator here and open it as "dxl:PATH" / "fts:PATH" (always with the
 * file); else "simbus" / "simbus:fts", with the file when with_file. */
static void rig_open(rig *r, const tCfg *cfg, srvKind kind, int real_port, int with_file) {
  memset(r, 0, sizeof *r);
  r->cfg = cfg ? *cfg : arm_cfg();
  r->kind = kind;
  if (real_port) {
    cr_assert_eq(srv_sim_start(kind, 6, &r->own), 0, "%s", tk_errmsg());
    snprintf(r->spec, sizeof r->spec, "%s:%s", kind == SRV_DXL ? "dxl" : "fts", srv_sim_path(r->own));
    with_file = 1;
  } else {
    snprintf(r->spec, sizeof r->spec, "%s", kind == SRV_DXL ? "simbus" : "simbus:fts");
  }
  r->reset_tries = with_file ? 1 : 3;
  if (with_file) {
    snprintf(r->cfg_path, sizeof r->cfg_path, "%s/robot.json", tt_tmpdir());
    write_cfg(&r->cfg, r->cfg_path);
  }
  capOpts o;
  cap_opts_default(&o);
  o.robot = r->spec;
  o.robot_config = with_file ? r->cfg_path : NULL;
  cr_assert_eq(cap_model_load(&o, &r->m), 0, "%s: %s", r->spec, tk_errmsg());
  cr_assert(cap_model_is_robot(r->m));
  cr_assert_eq(cap_env_make(r->m, &r->e), 0, "%s: %s", r->spec, tk_errmsg());
  r->sim = r->own ? r->own : cap_env_robot_sim(r->e);
  cr_assert_not_null(r->sim, "simbus: the env's simulator is reachable");
  if (r->own) cr_assert_null(cap_env_robot_sim(r->e), "a real port has no simulator of the env's own");
}

static void rig_close(rig *r) {
  cap_env_free(r->e);
  cap_model_free(r->m);
  srv_sim_stop(r->own);
}

static uint16_t reg_addr(srvKind k, srvRegId g) { return srv_reg(k, g)->addr; }
static int is_write(const srvSimCmd *c) { return c->inst == SRV_WRITE || c->inst == SRV_SYNC_WRITE; }
static int is_goal(const rig *r, const srvSimCmd *c) {
  return is_write(c) && c->addr == reg_addr(r->kind, SRV_REG_GOAL_POSITION);
}
static int is_torque(const rig *r, const srvSimCmd *c) {
  return is_write(c) && c->addr == reg_addr(r->kind, SRV_REG_TORQUE_ENABLE);
}

static int32_t peek(srvSim *s, int id, srvRegId g) {
  int32_t v = 0;
  cr_assert_eq(srv_sim_peek(s, (uint8_t)id, g, &v), 0, "%s", tk_errmsg());
  return v;
}

/* The simulator's log from record `first` on (malloc'd). */
typedef struct {
  srvSimCmd *c;
  size_t n;
} tLog;
static tLog log_get(srvSim *s, uint64_t first) {
  tLog l;
  const uint64_t total = srv_sim_ncommands(s);
  const size_t want = total > first ? (size_t)(total - first) : 0;
  l.c = malloc((want + 1) * sizeof *l.c);
  cr_assert_not_null(l.c);
  l.n = srv_sim_commands(s, first, l.c, want);
  cr_assert_eq(l.n, want, "the log still holds every record from %llu", (unsigned long long)first);
  return l;
}

/* Write the marker on the port and wait until the simulator has parsed it: everything written
 * on the port before has then been executed. Returns the marker's index in the log. */
static uint64_t barrier(const rig *r) {
  const uint64_t from = srv_sim_ncommands(r->sim);
  uint8_t pkt[32];
  const int n = srv_codec(r->kind)->ping(pkt, sizeof pkt, MARK_ID);
  cr_assert_gt(n, 0);
  int fd = open(srv_sim_path(r->sim), O_WRONLY | O_NOCTTY | O_CLOEXEC);
  cr_assert_geq(fd, 0, "open %s", srv_sim_path(r->sim));
  cr_assert_eq(write(fd, pkt, (size_t)n), n);
  close(fd);
  const int64_t deadline = tk_now_ns() + 3000000000LL;
  for (;;) {
    tLog l = log_get(r->sim, from);
    for (size_t i = 0; i < l.n; i++)
      if (l.c[i].id == MARK_ID && l.c[i].inst == SRV_PING) {
        free(l.c);
        return from + i;
      }
    free(l.c);
    cr_assert_lt(tk_now_ns(), deadline, "the simulator never received the marker");
    usleep(500);
  }
}

/* Every goal position the servos received from record `first` on is inside its joint's limits
 * (converted with the calibration): "no command outside the limits is ever sent". Returns how
 * many goal records were checked. */
static int goals_within_limits(const rig *r, uint64_t first) {
  tLog l = log_get(r->sim, first);
  int k = 0;
  for (size_t i = 0; i < l.n; i++) {
    const srvSimCmd *c = &l.c[i];
    if (!is_goal(r, c)) continue;
    const tJoint *j = joint_by_id(&r->cfg, c->id);
    cr_assert_not_null(j, "goal record %zu: id %u is no joint of the robot", i, c->id);
    const double q = t2r(j, c->value);
    cr_assert(q >= j->lo - 1e-9 && q <= j->hi + 1e-9,
              "goal record %zu: %s (id %d) to %d ticks = %.5f rad, outside its limits [%.5f, %.5f]", i,
              j->name, j->id, c->value, q, j->lo, j->hi);
    k++;
  }
  free(l.c);
  return k;
}

/* Consecutive goals of each servo in records [first, end) differ by at most the maximum step
 * (+1 tick for rounding). Returns the largest difference seen, ticks. */
static double goal_steps_bounded(const rig *r, uint64_t first, uint64_t end) {
  tLog l = log_get(r->sim, first);
  if (end > first && end - first < l.n) l.n = (size_t)(end - first);
  int32_t last[256];
  int have[256] = {0};
  double worst = 0;
  const double bound = r->cfg.max_step * TPR + 1;
  for (size_t i = 0; i < l.n; i++) {
    const srvSimCmd *c = &l.c[i];
    if (!is_goal(r, c)) continue;
    if (have[c->id]) {
      const double d = fabs((double)c->value - last[c->id]);
      cr_assert_leq(d, bound, "goal record %zu: id %u jumps %d -> %d ticks (%.1f > max step %.1f ticks)", i,
                    c->id, last[c->id], c->value, d, bound);
      worst = fmax(worst, d);
    }
    have[c->id] = 1;
    last[c->id] = c->value;
  }
  free(l.c);
  return worst;
}

/* The current targets (rad), through the action that keeps them. */
static void targets(const rig *r, double *t) {
  double a[CAP_MAX_ACT];
  cr_assert_eq(cap_env_hold_action(r->e, a), 0, "%s", tk_errmsg());
  for (int i = 0; i < r->cfg.n; i++) {
    cr_assert(a[i] >= -1 && a[i] <= 1, "hold action %d = %g", i, a[i]);
    t[i] = target_of(&r->cfg.j[i], a[i]);
  }
}

static capStep step_ok(rig *r, const double *a) {
  capStep st;
  cr_assert_eq(cap_env_step(r->e, a, &st), 0, "%s", tk_errmsg());
  cr_assert_eq(st.flags & CAP_FLAG_FAULT, 0, "step fault: %s", cap_env_fault(r->e));
  cr_assert_eq(st.terminated, 0);
  cr_assert_eq(st.obs.n, 3);
  return st;
}

static void reset_ok(rig *r, capObs *obs) {
  int rc = cap_env_reset(r->e, 0, obs);
  for (int k = 1; k < r->reset_tries && rc && strstr(tk_errmsg(), "timeout"); k++) {
    printf("[robot] %s: reset retried after: %s\n", r->spec, tk_errmsg());
    rc = cap_env_reset(r->e, 0, obs);
  }
  cr_assert_eq(rc, 0, "%s: reset: %s", r->spec, tk_errmsg());
  cr_assert_null(cap_env_fault(r->e));
}

/* A step that only sets the scene up for what is tested. With the built-in arm's 4 ms timeouts a
 * loaded machine can make both attempts of a read time out (a fault, by design): then say so,
 * reset and go on. Other robots here have 34 ms timeouts: any fault fails the test. */
static capStep step_setup(rig *r, const double *a, capObs *obs) {
  capStep st;
  cr_assert_eq(cap_env_step(r->e, a, &st), 0, "%s", tk_errmsg());
  const char *why = cap_env_fault(r->e);
  if ((st.flags & CAP_FLAG_FAULT) && r->reset_tries > 1 && why && strstr(why, "timeout")) {
    printf("[robot] %s: a step timed out on a loaded machine (%s): reset\n", r->spec, why);
    reset_ok(r, obs);
    return step_ok(r, a);
  }
  cr_assert_eq(st.flags & CAP_FLAG_FAULT, 0, "step fault: %s", why);
  return st;
}

static int contains_ci(const char *hay, const char *needle) {
  for (const char *h = hay; *h; h++) {
    size_t i = 0;
    while (needle[i] && h[i] && tolower((unsigned char)h[i]) == tolower((unsigned char)needle[i]))
      i++;
    if (!needle[i]) return 1;
  }
  return 0;
}

/* ==== 1. configuration ==== */
Test(robot_config, good_file_loads_into_the_spec) {
  const char *dir = tt_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/koch.json", dir);
  write_text(
      path,
      "{\"name\": \"koch_test\", \"baud\": 57600, \"control_hz\": 40, \"max_step\": 0.2,\n"
      " \"watchdog_ms\": 250, \"timeout_ms\": 5, \"read_retries\": 2, \"on_fault\": \"torque_off\",\n"
      " \"on_exit\": \"hold\", \"joints\": [\n"
      "  {\"name\": \"pan\", \"id\": 1, \"offset\": 2048, \"direction\": 1, \"min\": -1, \"max\": 1},\n"
      "  {\"name\": \"lift\", \"id\": 7, \"offset\": 1000.5, \"direction\": -1, \"min\": -2, \"max\": 0.5},\n"
      "  {\"name\": \"elbow\", \"id\": 3, \"min\": -0.5, \"max\": 2.5},\n"
      "  {\"id\": 4, \"min\": 0, \"max\": 1.2}]}\n");
  capOpts o;
  cap_opts_default(&o);
  o.robot = "dxl:/nonexistent/ttyUSB0"; /* the model does not open the port; the env does */
  o.robot_config = path;
  capModel *m = NULL;
  cr_assert_eq(cap_model_load(&o, &m), 0, "%s", tk_errmsg());
  cr_assert(cap_model_is_robot(m));
  const capSpec *s = cap_spec(m);
  cr_assert_str_eq(s->task, "koch_test");
  cr_assert_eq(s->action_dim, 4, "one action per joint");
  cr_assert_eq(s->action_mode, CAP_ACT_JOINT_POS);
  cr_assert_float_eq(s->action_low, -1.0, 0);
  cr_assert_float_eq(s->action_high, 1.0, 0);
  cr_assert_eq(s->has_reward, 0);
  cr_assert_float_eq(s->control_hz, 40.0, 1e-12, "control_hz from the file");
  const char *names[4];
  double jlo[4], jhi[4];
  cr_assert_eq(cap_model_joints(m, names, jlo, jhi), 4);
  const char *want_names[4] = {"pan", "lift", "elbow", "joint3"};
  const double want_lo[4] = {-1, -2, -0.5, 0}, want_hi[4] = {1, 0.5, 2.5, 1.2};
  for (int i = 0; i < 4; i++) {
    cr_assert_str_eq(names[i], want_names[i]);
    cr_assert_float_eq(jlo[i], want_lo[i], 0);
    cr_assert_float_eq(jhi[i], want_hi[i], 0);
  }
  cr_assert_eq(s->nobs, 3);
  const char *keys[3] = {"robot0_joint_pos", "robot0_joint_vel", "robot0_joint_current"};
  for (int k = 0; k < 3; k++) {
    cr_assert_str_eq(s->obs[k].name, keys[k]);
    cr_assert_eq(s->obs[k].dtype, CAP_F64);
    cr_assert_eq(s->obs[k].rank, 1);
    cr_assert_eq(s->obs[k].shape[0], 4);
  }
  /* the port is opened by the env, and its absence is reported naming it */
  capEnv *e = NULL;
  cr_assert_neq(cap_env_make(m, &e), 0, "a port that does not exist");
  cr_assert_null(e);
  cr_assert(strstr(tk_errmsg(), "/nonexistent/ttyUSB0"), "names the port: %s", tk_errmsg());
  cap_model_free(m);

  /* the simulated bus's built-in arm, both families */
  const char *specs[2] = {"simbus", "simbus:fts"};
  for (int k = 0; k < 2; k++) {
    o.robot = specs[k];
    o.robot_config = NULL;
    cr_assert_eq(cap_model_load(&o, &m), 0, "%s: %s", specs[k], tk_errmsg());
    cr_assert_eq(cap_spec(m)->action_dim, 6);
    cr_assert_float_eq(cap_spec(m)->control_hz, 50.0, 1e-12);
    cr_assert_eq(cap_spec(m)->action_mode, CAP_ACT_JOINT_POS);
    cap_model_free(m);
  }
}

/* Load `text` (or a missing file when text is NULL) as the config of a real port: refused, with
 * one line naming the file and (when given) the field. */
static void expect_refused(const char *dir, const char *file, const char *text, const char *key,
                           const char *key2) {
  char path[4200];
  snprintf(path, sizeof path, "%s/%s", dir, file);
  if (text) write_text(path, text);
  capOpts o;
  cap_opts_default(&o);
  o.robot = "dxl:/dev/ttyUSB0";
  o.robot_config = path;
  capModel *m = NULL;
  const int rc = cap_model_load(&o, &m);
  const char *msg = tk_errmsg();
  cr_expect_lt(rc, 0, "%s was accepted", file);
  cr_expect(strstr(msg, path) != NULL, "%s: the message names the file: %s", file, msg);
  if (key) cr_expect(strstr(msg, key) != NULL, "%s: the message names '%s': %s", file, key, msg);
  if (key2) cr_expect(strstr(msg, key2) != NULL, "%s: the message names '%s': %s", file, key2, msg);
  cr_expect_null(strchr(msg, '\n'), "%s: one line: %s", file, msg);
  cr_log_info("%s -> %s", file, msg);
  if (!rc) cap_model_free(m);
}

Test(robot_config, bad_files_are_refused_naming_file_and_field) {
  const char *d = tt_tmpdir();
#define J1 "{\"name\": \"a\", \"id\": 1, \"min\": -1, \"max\": 1}"
  expect_refused(d, "no_joints.json", "{\"name\": \"x\", \"control_hz\": 50}", "joints", NULL);
  expect_refused(d, "empty_joints.json", "{\"joints\": []}", "joints", NULL);
  expect_refused(d, "joints_not_array.json", "{\"joints\": {\"id\": 1}}", "joints", NULL);
  expect_refused(d, "min_eq_max.json",
                 "{\"joints\": [{\"name\": \"elbow\", \"id\": 1, \"min\": 1, \"max\": 1}]}", "min", "elbow");
  expect_refused(d, "min_gt_max.json",
                 "{\"joints\": [" J1 ", {\"name\": \"wrist\", \"id\": 2, \"min\": 1.5, \"max\": -1.5}]}",
                 "min", "joints[1]");
  expect_refused(d, "dup_id.json",
                 "{\"joints\": [" J1 ", {\"name\": \"b\", \"id\": 1, \"min\": 0, \"max\": 1}]}", "id",
                 "joints[1]");
  expect_refused(d, "id_string.json", "{\"joints\": [{\"id\": \"one\", \"min\": -1, \"max\": 1}]}", "\"id\"",
                 "joints[0]");
  expect_refused(d, "id_fraction.json", "{\"joints\": [{\"id\": 1.5, \"min\": -1, \"max\": 1}]}", "\"id\"",
                 NULL);
  expect_refused(d, "id_missing.json", "{\"joints\": [{\"name\": \"a\", \"min\": -1, \"max\": 1}]}", "\"id\"",
                 NULL);
  expect_refused(d, "id_too_big.json", "{\"joints\": [{\"id\": 300, \"min\": -1, \"max\": 1}]}", "\"id\"",
                 NULL);
  expect_refused(d, "min_missing.json", "{\"joints\": [{\"id\": 1, \"max\": 1}]}", "\"min\"", NULL);
  expect_refused(d, "direction.json",
                 "{\"joints\": [{\"id\": 1, \"direction\": 0.5, \"min\": -1, \"max\": 1}]}", "\"direction\"",
                 NULL);
  expect_refused(d, "joint_not_object.json", "{\"joints\": [3]}", "joints[0]", NULL);
  expect_refused(d, "on_fault.json", "{\"on_fault\": \"explode\", \"joints\": [" J1 "]}", "\"on_fault\"",
                 NULL);
  expect_refused(d, "on_fault_number.json", "{\"on_fault\": 1, \"joints\": [" J1 "]}", "\"on_fault\"", NULL);
  expect_refused(d, "on_exit.json", "{\"on_exit\": \"sleep\", \"joints\": [" J1 "]}", "\"on_exit\"", NULL);
  expect_refused(d, "hz_string.json", "{\"control_hz\": \"fast\", \"joints\": [" J1 "]}", "\"control_hz\"",
                 NULL);
  expect_refused(d, "max_step_zero.json", "{\"max_step\": 0, \"joints\": [" J1 "]}", "\"max_step\"", NULL);
  expect_refused(d, "watchdog_neg.json", "{\"watchdog_ms\": -5, \"joints\": [" J1 "]}", "\"watchdog_ms\"",
                 NULL);
  expect_refused(d, "invalid.json", "{\"joints\": [{\"id\": 1, \"min\": -1, \"max\": 1}", NULL, NULL);
  expect_refused(d, "trailing_comma.json", "{\"joints\": [" J1 ",]}", NULL, NULL);
  expect_refused(d, "array.json", "[" J1 "]", "object", NULL);
  expect_refused(d, "missing.json", NULL, NULL, NULL);
#undef J1
}

/* The one strict reader (tk_json_load_object) behind the robot and leader configs: a misspelt or
 * mistyped key, at the top or in a joint, is refused naming the file and the key (a misspelt safety
 * limit never leaves its default in force); so are a key given twice, a name too long for its field
 * (never cut) and a file past the 8 MiB limit (refused before it is read). */
Test(robot_config, unknown_and_mistyped_keys_are_refused) {
  const char *d = tt_tmpdir();
#define J1 "{\"name\": \"a\", \"id\": 1, \"min\": -1, \"max\": 1}"
  expect_refused(d, "maxstep.json", "{\"maxstep\": 0.01, \"joints\": [" J1 "]}", "unknown key",
                 "\"maxstep\"");
  expect_refused(d, "Max_Step.json", "{\"Max_Step\": 0.01, \"joints\": [" J1 "]}", "unknown key",
                 "\"Max_Step\"");
  expect_refused(d, "joint_mn.json", "{\"joints\": [{\"id\": 1, \"mn\": -1, \"min\": -1, \"max\": 1}]}",
                 "joints[0]: unknown key", "\"mn\"");
  expect_refused(d, "max_step_string.json", "{\"max_step\": \"0.01\", \"joints\": [" J1 "]}",
                 "\"max_step\" must be a number", NULL);
  expect_refused(d, "retries_bool.json", "{\"read_retries\": true, \"joints\": [" J1 "]}",
                 "\"read_retries\" must be an integer", NULL);
  expect_refused(d, "name_number.json", "{\"name\": 7, \"joints\": [" J1 "]}", "\"name\" must be a string",
                 NULL);
  expect_refused(d, "max_step_twice.json", "{\"max_step\": 0.05, \"max_step\": 3, \"joints\": [" J1 "]}",
                 "\"max_step\"", "twice");
  expect_refused(d, "top_number.json", "3", "object", NULL);
  expect_refused(d, "top_string.json", "\"joints\"", "object", NULL);
  char text[512];
  snprintf(text, sizeof text, "{\"name\": \"%0100d\", \"joints\": [" J1 "]}", 0);
  expect_refused(d, "long_name.json", text, "name", "longer");
  snprintf(text, sizeof text, "{\"joints\": [{\"name\": \"%040d\", \"id\": 1, \"min\": -1, \"max\": 1}]}", 0);
  expect_refused(d, "long_joint_name.json", text, "joints[0]", "longer");
  /* past the limit: refused at once, without reading it all */
  char big[4200];
  snprintf(big, sizeof big, "%s/huge.json", d);
  FILE *f = fopen(big, "w");
  cr_assert(f);
  fputs("{\"name\": \"", f);
  for (int i = 0; i < 9 * 1024; i++)
    fprintf(f, "%01024d", 0);
  fputs("\", \"joints\": [" J1 "]}", f);
  fclose(f);
  double t0 = tk_now_s();
  expect_refused(d, "huge.json", NULL, "larger than", NULL);
  cr_expect_lt(tk_now_s() - t0, 1.0, "a 9 MiB config is refused quickly");
  /* the leader's file follows the same table (without the limits) */
  capOpts o;
  cap_opts_default(&o);
  o.robot = "simbus";
  capModel *m = NULL;
  cr_assert_eq(cap_model_load(&o, &m), 0, "%s", tk_errmsg());
  char lpath[4200];
  snprintf(lpath, sizeof lpath, "%s/leader_typo.json", d);
  write_text(lpath, "{\"joints\": [{\"id\": 1, \"ofset\": 1800}]}");
  capLeader *l = NULL;
  cr_assert_neq(cap_leader_open("dxl:/nonexistent/ttyUSB9", lpath, m, &l), 0);
  cr_assert(strstr(tk_errmsg(), lpath) && strstr(tk_errmsg(), "\"ofset\""), "%s", tk_errmsg());
  cap_model_free(m);
#undef J1
}

Test(robot_config, ports) {
  capOpts o;
  cap_opts_default(&o);
  capModel *m = NULL;
  /* a real arm needs its config */
  const char *real[2] = {"dxl:/dev/ttyUSB0", "fts:/dev/ttyACM0"};
  for (int k = 0; k < 2; k++) {
    o.robot = real[k];
    o.robot_config = NULL;
    m = NULL;
    cr_expect_lt(cap_model_load(&o, &m), 0, "%s without a config", real[k]);
    cr_expect(strstr(tk_errmsg(), real[k]) && strstr(tk_errmsg(), "config"), "%s", tk_errmsg());
    cr_expect_null(strchr(tk_errmsg(), '\n'));
  }
  /* malformed port strings, with or without a config */
  char cfg[4200];
  snprintf(cfg, sizeof cfg, "%s/arm.json", tt_tmpdir());
  tCfg c = arm_cfg();
  write_cfg(&c, cfg);
  const char *bad[] = {"", "usb:/dev/ttyUSB0", "dxl:", "/dev/ttyUSB0", "simbus:can", "simbusx", "dxl"};
  for (size_t k = 0; k < sizeof bad / sizeof *bad; k++)
    for (int with = 0; with < 2; with++) {
      o.robot = bad[k];
      o.robot_config = with ? cfg : NULL;
      m = NULL;
      const int rc = cap_model_load(&o, &m);
      cr_expect_lt(rc, 0, "robot '%s' was accepted", bad[k]);
      if (bad[k][0])
        cr_expect(strstr(tk_errmsg(), bad[k]) != NULL, "'%s': the message quotes it: %s", bad[k],
                  tk_errmsg());
      cr_log_info("'%s' -> %s", bad[k], tk_errmsg());
      if (!rc) cap_model_free(m);
    }
  /* the simulated bus takes a config too */
  o.robot = "simbus:fts";
  o.robot_config = cfg;
  cr_assert_eq(cap_model_load(&o, &m), 0, "%s", tk_errmsg());
  cr_assert_str_eq(cap_spec(m)->task, "test_arm");
  cap_model_free(m);
}

/* ==== 2. tracking and observations ==== */
/* Reset: torque on for the robot's servos, goal == present (no motion), and nothing sent to
 * servos that are not its joints; the goal is written before the torque. */
static void check_reset(const rig *r, const capObs *obs, uint64_t before_reset) {
  const uint64_t mk = barrier(r);
  for (int i = 0; i < r->cfg.n; i++) {
    const tJoint *j = &r->cfg.j[i];
    cr_assert_eq(peek(r->sim, j->id, SRV_REG_TORQUE_ENABLE), 1, "%s: torque on after reset", j->name);
    const int32_t goal = peek(r->sim, j->id, SRV_REG_GOAL_POSITION);
    const int32_t pres = peek(r->sim, j->id, SRV_REG_PRESENT_POSITION);
    cr_assert_leq(abs(goal - pres), 1, "%s: reset does not move the joint (goal %d, present %d)", j->name,
                  goal, pres);
    cr_assert_float_eq(((const double *)obs->v[0])[i], t2r(j, pres), 1.0 / TPR,
                       "%s: robot0_joint_pos at reset through the calibration", j->name);
  }
  tLog l = log_get(r->sim, before_reset);
  long first_goal = -1, first_torque = -1;
  for (size_t i = 0; i < l.n && before_reset + i < mk; i++) {
    if (is_goal(r, &l.c[i]) && first_goal < 0) first_goal = (long)i;
    if (is_torque(r, &l.c[i]) && first_torque < 0) first_torque = (long)i;
    if (l.c[i].id != MARK_ID)
      cr_assert_not_null(joint_by_id(&r->cfg, l.c[i].id), "reset addressed id %u, which is no joint",
                         l.c[i].id);
  }
  free(l.c);
  cr_assert_geq(first_goal, 0, "reset writes the goals");
  cr_assert_geq(first_torque, 0, "reset turns the torque on");
  cr_assert_lt(first_goal, first_torque, "the goals (= where the arm is) are written before the torque");
}

/* Step a constant action at 50 Hz until converged; check position, calibration, targets. */
static void track_constant(rig *r, const double *a, int steps, double *max_err) {
  tkPacer p;
  tk_pacer_start(&p, 50);
  capStep st;
  int limited = 0;
  for (int t = 0; t < steps; t++) {
    st = step_ok(r, a);
    limited |= st.flags & CAP_FLAG_LIMITED;
    cr_assert_eq(st.flags & (CAP_FLAG_CLIPPED | CAP_FLAG_NONFINITE), 0);
    tk_pacer_wait(&p);
  }
  cr_assert(limited, "a far target is approached in maximum steps (CAP_FLAG_LIMITED)");
  const int n = r->cfg.n;
  const double *pos = st.obs.v[0], *vel = st.obs.v[1], *cur = st.obs.v[2];
  double tg[CAP_MAX_ACT], jp[CAP_MAX_ACT];
  targets(r, tg);
  cr_assert_eq(cap_env_joint_pos(r->e, jp), 0);
  *max_err = 0;
  for (int i = 0; i < n; i++) {
    const tJoint *j = &r->cfg.j[i];
    const double want = target_of(j, a[i]);
    const double err = fabs(pos[i] - want);
    *max_err = fmax(*max_err, err);
    cr_assert_lt(err, 0.01, "%s: at %.4f rad, commanded %.4f", j->name, pos[i], want);
    const double sim_rad = t2r(j, peek(r->sim, j->id, SRV_REG_PRESENT_POSITION));
    cr_assert_float_eq(pos[i], sim_rad, 2.0 / TPR, "%s: observation %.5f vs the servo's own %.5f rad",
                       j->name, pos[i], sim_rad);
    cr_assert_lt(fabs(vel[i]), 0.1, "%s: settled, velocity %g rad/s", j->name, vel[i]);
    cr_assert(isfinite(cur[i]));
    cr_assert_float_eq(tg[i], want, 1e-9, "%s: the target is the action's", j->name);
    cr_assert_float_eq(jp[i], pos[i], 1e-12);
  }
  cr_assert_eq(cap_env_steps(r->e), steps);
}

Test(robot_track, dxl_port_custom_calibration, .timeout = 30) {
  /* four joints on a six-servo bus, out of id order, two with direction -1, offsets not 2048
   * (one fractional); servos 2 and 4 are not the robot's */
  tCfg c = {.name = "track_arm",
            .hz = SLOW_HZ,
            .max_step = 0.1,
            .watchdog_ms = 100,
            .retries = 1,
            .on_fault = "hold",
            .n = 4,
            .j = {{"base", 3, 2600, -1, -1.0, 1.2},
                  {"shoulder", 1, 1900.25, 1, -0.8, 1.0},
                  {"elbow", 5, 2048, 1, -1.5, 1.5},
                  {"wrist", 6, 3000, -1, 0.2, 1.4}}};
  rig r;
  rig_open(&r, &c, SRV_DXL, 1, 1);
  for (int id = 1; id <= 6; id++)
    cr_assert_eq(peek(r.sim, id, SRV_REG_TORQUE_ENABLE), 0, "the servos start limp");
  const uint64_t i0 = srv_sim_ncommands(r.sim);
  capObs obs;
  reset_ok(&r, &obs);
  cr_assert_eq(obs.n, 3);
  check_reset(&r, &obs, i0);
  for (int i = 0; i < c.n; i++)
    cr_assert_eq(peek(r.sim, c.j[i].id, SRV_REG_PRESENT_POSITION), (int32_t)start_ticks(c.j[i].id),
                 "%s has not moved", c.j[i].name);
  const double a[4] = {0.5, -0.6, -0.9, 0.1};
  double err;
  track_constant(&r, a, 50, &err);
  printf(
      "[robot] tracking, dxl port, custom calibration: max |pos - target| after 50 steps at 50 Hz = %.5f rad "
      "(%.2f ticks)\n",
      err, err * TPR);
  /* the servos that are not the robot's were never addressed */
  tLog l = log_get(r.sim, 0);
  for (size_t i = 0; i < l.n; i++)
    cr_assert(l.c[i].id != 2 && l.c[i].id != 4, "record %zu addresses servo %u, not a joint", i, l.c[i].id);
  free(l.c);
  cr_assert_eq(peek(r.sim, 2, SRV_REG_TORQUE_ENABLE), 0);
  cr_assert_eq(peek(r.sim, 4, SRV_REG_PRESENT_POSITION), (int32_t)start_ticks(4));
  cr_assert_gt(goals_within_limits(&r, 0), 50 * 4);
  rig_close(&r);
}

Test(robot_track, fts_simbus, .timeout = 30) {
  rig r;
  rig_open(&r, NULL, SRV_FTS, 0, 1);
  const uint64_t i0 = srv_sim_ncommands(r.sim);
  capObs obs;
  reset_ok(&r, &obs);
  check_reset(&r, &obs, i0);
  const double a[6] = {0.2, -0.3, 0.4, -0.5, 0.6, 0.5};
  double err;
  track_constant(&r, a, 45, &err);
  printf("[robot] tracking, simbus:fts: max |pos - target| after 45 steps at 50 Hz = %.5f rad\n", err);
  cr_assert_gt(goals_within_limits(&r, 0), 45 * 6);
  rig_close(&r);
}

/* ==== 3. safety of commands ==== */
Test(robot_safety, jumps_are_cut_to_max_step, .timeout = 30) {
  tCfg c = arm_cfg();
  c.max_step = 0.05;
  rig r;
  rig_open(&r, &c, SRV_DXL, 0, 1);
  const uint64_t i0 = srv_sim_ncommands(r.sim);
  capObs obs;
  reset_ok(&r, &obs);
  double lo[6], hi[6];
  for (int i = 0; i < 6; i++) {
    lo[i] = -1;
    hi[i] = 1;
  }
  tkPacer p;
  tk_pacer_start(&p, 200);
  for (int t = 0; t < 40; t++) { /* to the lower limits (from up to 0.92 rad: <= 49 steps) */
    step_ok(&r, lo);
    tk_pacer_wait(&p);
  }
  int limited = 0, cut = 0;
  for (int t = 0; t < 75; t++) { /* jump to +1: 3 rad in 0.05 rad steps */
    capStep st = step_ok(&r, hi);
    if (t < 55) cr_assert(st.flags & CAP_FLAG_LIMITED, "step %d: the target was cut", t);
    limited += !!(st.flags & CAP_FLAG_LIMITED);
    /* the executed action is the cut target (what a dataset records), not the +1 asked for */
    double tg[6];
    targets(&r, tg);
    for (int i = 0; i < 6; i++) {
      const double want = 2 * (tg[i] - c.j[i].lo) / (c.j[i].hi - c.j[i].lo) - 1;
      cr_assert_float_eq(st.action[i], want, 1e-12, "step %d %s: executed %g, target %g", t, c.j[i].name,
                         st.action[i], want);
      if (st.action[i] < 1) cut++;
    }
    tk_pacer_wait(&p);
  }
  cr_assert_geq(cut, 6 * 20, "the executed actions show the cut (%d joint-steps below +1)", cut);
  double tg[6];
  targets(&r, tg);
  for (int i = 0; i < 6; i++)
    cr_assert_float_eq(tg[i], c.j[i].hi, 1e-9, "%s reached its upper limit", c.j[i].name);
  const double worst = goal_steps_bounded(&r, i0, UINT64_MAX);
  cr_assert_geq(worst, c.max_step * TPR - 1, "the jump was really cut at the maximum step (%.1f ticks)",
                worst);
  cr_assert_gt(goals_within_limits(&r, 0), 6 * 115);
  printf("[robot] max step %.3f rad = %.1f ticks: largest goal change seen %.0f ticks, %d limited steps\n",
         c.max_step, c.max_step * TPR, worst, limited);
  rig_close(&r);
}

Test(robot_safety, nan_and_out_of_range_actions, .timeout = 30) {
  rig r;
  rig_open(&r, NULL, SRV_DXL, 0, 1);
  capObs obs;
  reset_ok(&r, &obs);
  double zero[6] = {0};
  for (int t = 0; t < 12; t++)
    step_ok(&r, zero);
  cr_assert_eq(cap_env_action_warnings(r.e), 0);
  double before[6], after[6];
  targets(&r, before);
  const tCfg c = arm_cfg();
  /* the goals this step sends, as the servos receive them */
  uint64_t i0 = srv_sim_ncommands(r.sim);
  const double bad[6] = {NAN, 2.0, -5.0, INFINITY, -INFINITY, 0.3};
  capStep st = step_ok(&r, bad);
  cr_assert(st.flags & CAP_FLAG_NONFINITE, "NaN/Inf flagged");
  cr_assert(st.flags & CAP_FLAG_CLIPPED, "2 and -5 flagged");
  cr_assert_eq(cap_env_action_warnings(r.e), 1);
  targets(&r, after);
  for (int i = 0; i < 6; i++) {
    const double t = after[i], t0 = before[i];
    if (i == 0 || i == 3 || i == 4)
      cr_assert_float_eq(t, t0, 1e-12, "%s: a non-finite action holds the previous target", c.j[i].name);
    else if (i == 1)
      cr_assert_float_eq(t, fmin(t0 + c.max_step, c.j[i].hi), 1e-9, "2 means the upper limit, cut to a step");
    else if (i == 2)
      cr_assert_float_eq(t, fmax(t0 - c.max_step, c.j[i].lo), 1e-9,
                         "-5 means the lower limit, cut to a step");
    cr_assert(isfinite(t));
    /* executed: the target each joint now has, as an action (a NaN ran as "stay") */
    const double want = 2 * (t - c.j[i].lo) / (c.j[i].hi - c.j[i].lo) - 1;
    cr_assert(isfinite(st.action[i]), "%s: the executed action is finite", c.j[i].name);
    cr_assert_float_eq(st.action[i], want, 1e-12, "%s: executed %g, target %g", c.j[i].name, st.action[i],
                       want);
  }
  barrier(&r);
  tLog l = log_get(r.sim, i0);
  int goals = 0;
  for (size_t k = 0; k < l.n; k++)
    if (is_goal(&r, &l.c[k])) {
      const tJoint *j = joint_by_id(&c, l.c[k].id);
      cr_assert_float_eq(t2r(j, l.c[k].value), after[j->id - 1], 1.0 / TPR, "%s: the goal sent is the target",
                         j->name);
      goals++;
    }
  free(l.c);
  cr_assert_eq(goals, 6, "one goal per servo, NaN or not");
  /* in range again: no flags */
  const double ok[6] = {1, -1, 0.5, -0.5, 0, 1};
  st = step_ok(&r, ok);
  cr_assert_eq(st.flags & (CAP_FLAG_NONFINITE | CAP_FLAG_CLIPPED), 0);
  for (int i = 0; i < 6; i++) /* cut or not, never beyond what was asked and never out of [-1, 1] */
    cr_assert(isfinite(st.action[i]) && fabs(st.action[i]) <= 1, "%s: %g", c.j[i].name, st.action[i]);
  cr_assert_eq(cap_env_action_warnings(r.e), 1);
  rig_close(&r);
}

Test(robot_safety, random_actions_never_leave_the_limits, .timeout = 30) {
  /* Feetech on a port, calibrations with both directions and odd offsets */
  tCfg c = {.name = "fuzz_arm",
            .hz = SLOW_HZ,
            .max_step = 0.15,
            .watchdog_ms = 200,
            .retries = 1,
            .on_fault = "hold",
            .n = 6,
            .j = {{"j1", 1, 2048, 1, -0.9, 1.1},
                  {"j2", 2, 2500, -1, -0.5, 0.6},
                  {"j3", 3, 1800.5, 1, -1.0, 1.0},
                  {"j4", 4, 3000, -1, 0.3, 1.6},
                  {"j5", 5, 2048, -1, -1.4, 0.2},
                  {"j6", 6, 2600, 1, -0.05, 0.9}}};
  rig r;
  rig_open(&r, &c, SRV_FTS, 1, 1);
  capObs obs;
  reset_ok(&r, &obs);
  tkRng rng;
  tk_rng_seed(&rng, 12345);
  const int steps = 400;
  int nonfinite = 0, clipped = 0;
  for (int t = 0; t < steps; t++) {
    double a[6];
    int want_nf = 0, want_clip = 0;
    for (int i = 0; i < 6; i++) {
      const double u = tk_rng_uniform(&rng), s = tk_rng_uniform(&rng) < 0.5 ? -1 : 1;
      if (u < 0.08)
        a[i] = NAN;
      else if (u < 0.12)
        a[i] = s * INFINITY;
      else if (u < 0.18)
        a[i] = s * 1e300;
      else if (u < 0.28)
        a[i] = s * (1 + 1e-9 + 5 * tk_rng_uniform(&rng));
      else
        a[i] = tk_rng_range(&rng, -1, 1);
      want_nf |= !isfinite(a[i]);
      want_clip |= isfinite(a[i]) && fabs(a[i]) > 1;
    }
    if (t % 37 == 5)
      for (int i = 0; i < 6; i++)
        a[i] = NAN;
    if (t % 37 == 5) want_nf = 1, want_clip = 0;
    capStep st = step_ok(&r, a);
    cr_assert_eq(!!(st.flags & CAP_FLAG_NONFINITE), want_nf, "step %d", t);
    cr_assert_eq(!!(st.flags & CAP_FLAG_CLIPPED), want_clip, "step %d", t);
    nonfinite += want_nf;
    clipped += want_clip;
  }
  const int goals = goals_within_limits(&r, 0);
  cr_assert_eq(goals, 6 * (steps + 1), "every goal (reset + each step) was checked");
  const double worst = goal_steps_bounded(&r, 0, UINT64_MAX);
  barrier(&r);
  for (int i = 0; i < 6; i++) { /* the servos themselves stayed inside */
    const double q = t2r(&c.j[i], peek(r.sim, c.j[i].id, SRV_REG_PRESENT_POSITION));
    cr_assert(q >= c.j[i].lo - 1.0 / TPR && q <= c.j[i].hi + 1.0 / TPR, "%s at %.4f rad", c.j[i].name, q);
  }
  printf("[robot] random run: %d steps (%d with NaN/Inf, %d clipped), %d goal commands all within limits, "
         "largest goal change %.0f ticks (max step %.1f)\n",
         steps, nonfinite, clipped, goals, worst, c.max_step * TPR);
  rig_close(&r);
}

/* ==== 4. watchdog ==== */
/* The goal group of the robot's servos in l (from index k on); returns its first index or -1. */
static long find_goal_group(const rig *r, const tLog *l, size_t k) {
  for (; k < l->n; k++)
    if (is_goal(r, &l->c[k])) return (long)k;
  return -1;
}

Test(robot_watchdog, holds_when_commands_stop_and_resumes, .timeout = 30) {
  tCfg c = arm_cfg();
  c.max_step = 1.0;
  rig r;
  rig_open(&r, &c, SRV_DXL, 0, 1);
  srv_sim_set_tau(r.sim, 0.5); /* slow servos: still far from their goal when the commands stop */
  capObs obs;
  reset_ok(&r, &obs);
  const int n = c.n;
  double a[6];
  for (int i = 0; i < n; i++)
    a[i] = -1;
  tkPacer p;
  tk_pacer_start(&p, 50);
  for (int t = 0; t < 5; t++) {
    step_ok(&r, a);
    cr_assert_eq(cap_env_watchdog_holds(r.e), 0, "no hold while steps come at 50 Hz");
    tk_pacer_wait(&p);
  }
  /* the last goals sent by a step */
  const uint64_t i_stop = srv_sim_ncommands(r.sim);
  tLog l = log_get(r.sim, 0);
  int32_t last_goal[6];
  int64_t last_goal_t = 0;
  for (size_t k = 0; k < l.n; k++)
    if (is_goal(&r, &l.c[k])) {
      last_goal[l.c[k].id - 1] = l.c[k].value;
      last_goal_t = l.c[k].t_ns;
    }
  free(l.c);
  usleep((useconds_t)(4 * c.watchdog_ms * 1000)); /* > 3x watchdog_ms without a step */
  cr_assert_eq(cap_env_watchdog_holds(r.e), 1, "the watchdog held position once");
  barrier(&r);
  l = log_get(r.sim, i_stop);
  const long g = find_goal_group(&r, &l, 0);
  cr_assert_geq(g, 0, "the watchdog wrote goals");
  cr_assert_eq(find_goal_group(&r, &l, (size_t)g + (size_t)n), -1, "one hold, not one per watchdog tick");
  cr_assert_geq(g, n, "the watchdog read the positions first");
  cr_assert_eq(l.c[g - 1].inst, SRV_SYNC_READ);
  double jp[6];
  cap_env_joint_pos(r.e, jp); /* the positions the watchdog read */
  int32_t hold[6];
  for (int i = 0; i < n; i++) {
    const srvSimCmd *w = &l.c[(size_t)g + (size_t)i];
    cr_assert(is_goal(&r, w));
    cr_assert_eq(w->id, c.j[i].id);
    hold[i] = w->value;
    cr_assert_float_eq((double)w->value, r2t(&c.j[i], jp[i]), 0.5 + 1e-6,
                       "%s: the hold goal %d is the position read then (%.1f ticks)", c.j[i].name, w->value,
                       r2t(&c.j[i], jp[i]));
    cr_assert_gt(abs(hold[i] - last_goal[i]), 100,
                 "%s: the arm was still moving (hold %d, last goal %d): the test means something",
                 c.j[i].name, hold[i], last_goal[i]);
  }
  const double after_ms = (double)(l.c[g].t_ns - last_goal_t) / 1e6;
  cr_assert_geq(after_ms, 0.9 * c.watchdog_ms, "not before watchdog_ms (%.1f ms)", after_ms);
  free(l.c);
  printf("[robot] watchdog (%.0f ms): held %.1f ms after the last command\n", c.watchdog_ms, after_ms);
  /* the servos stop where they were, not at the last goal */
  int32_t p1[6], p2[6];
  for (int i = 0; i < n; i++)
    p1[i] = peek(r.sim, c.j[i].id, SRV_REG_PRESENT_POSITION);
  usleep(100000);
  for (int i = 0; i < n; i++) {
    p2[i] = peek(r.sim, c.j[i].id, SRV_REG_PRESENT_POSITION);
    cr_assert_leq(abs(p2[i] - p1[i]), 2, "%s stopped (%d -> %d)", c.j[i].name, p1[i], p2[i]);
    cr_assert_leq(abs(p2[i] - hold[i]), 8, "%s stays at the hold position %d (at %d)", c.j[i].name, hold[i],
                  p2[i]);
  }
  cr_assert_eq(cap_env_watchdog_holds(r.e), 1);
  /* stepping resumes from the held position, a maximum step at a time */
  const uint64_t i_resume = srv_sim_ncommands(r.sim);
  for (int i = 0; i < n; i++)
    a[i] = 1;
  tk_pacer_start(&p, 50);
  for (int t = 0; t < 5; t++) {
    step_ok(&r, a);
    tk_pacer_wait(&p);
  }
  l = log_get(r.sim, i_resume);
  const long g2 = find_goal_group(&r, &l, 0);
  cr_assert_geq(g2, 0);
  for (int i = 0; i < n; i++) {
    const double want = fmin(t2r(&c.j[i], hold[i]) + c.max_step, c.j[i].hi);
    cr_assert_float_eq((double)l.c[(size_t)g2 + (size_t)i].value, r2t(&c.j[i], want), 1.0,
                       "%s: the first goal after the hold is one maximum step from it", c.j[i].name);
  }
  free(l.c);
  for (int i = 0; i < n; i++) {
    const int32_t q = peek(r.sim, c.j[i].id, SRV_REG_PRESENT_POSITION);
    cr_assert_gt(q - hold[i], 20, "%s moves again (%d -> %d)", c.j[i].name, hold[i], q);
  }
  cr_assert_eq(cap_env_watchdog_holds(r.e), 1);
  /* the resumed goals move a maximum step at a time (the next hold may jump back to where the
   * lagging arm is: that is a stop, not a step) */
  goal_steps_bounded(&r, i_resume, srv_sim_ncommands(r.sim));
  usleep((useconds_t)(4 * c.watchdog_ms * 1000));
  cr_assert_eq(cap_env_watchdog_holds(r.e), 2, "and holds again when the steps stop again");
  cr_assert_gt(goals_within_limits(&r, 0), 0);
  rig_close(&r);
}

/* ==== 5. faults ==== */
typedef enum { F_DROP, F_CRC, F_HWERR, F_UNPLUG } fKind;
static const char *fname[] = {"drop", "crc", "hwerr", "unplug"};

/* builtin: "simbus" without a file (hold, 50 Hz: the timeouts and latencies of a real setup). */
static void fault_case(srvKind kind, int real_port, fKind f, int bad_id, int torque_off, int builtin) {
  tCfg c = arm_cfg();
  c.on_fault = torque_off ? "torque_off" : "hold";
  c.retries = 1;
  if (builtin) c.hz = 50;
  rig r;
  rig_open(&r, &c, kind, real_port, !builtin);
  const int n = c.n;
  const tJoint *bad = joint_by_id(&c, bad_id);
  char label[96];
  snprintf(label, sizeof label, "%s on servo %d, %s, %s%s, %g Hz", fname[f], bad_id, c.on_fault,
           kind == SRV_DXL ? "dxl" : "fts", real_port ? " port" : " simbus", c.hz);
  capObs obs;
  reset_ok(&r, &obs);
  double a[6];
  tkPacer p;
  tk_pacer_start(&p, 50);
  for (int t = 0; t < 10; t++) {
    for (int i = 0; i < n; i++)
      a[i] = 0.6 * sin(0.4 * t + i);
    step_setup(&r, a, &obs);
    tk_pacer_wait(&p);
  }
  double before[6];
  cap_env_joint_pos(r.e, before);
  const uint64_t i0 = srv_sim_ncommands(r.sim);
  switch (f) {
  case F_DROP: srv_sim_set_fault(r.sim, bad_id, SRV_FAULT_DROP); break;
  case F_CRC: srv_sim_set_fault(r.sim, bad_id, SRV_FAULT_CRC); break;
  case F_HWERR: srv_sim_set_fault(r.sim, bad_id, SRV_FAULT_HWERR); break;
  case F_UNPLUG: srv_sim_unplug(r.sim); break;
  }
  for (int i = 0; i < n; i++)
    a[i] = 0.6 * sin(0.4 * 10 + i);
  capStep st;
  const int64_t t0 = tk_now_ns();
  cr_assert_eq(cap_env_step(r.e, a, &st), 0, "%s", tk_errmsg());
  const int64_t t_ret = tk_now_ns();
  cr_assert(st.flags & CAP_FLAG_FAULT, "%s: the very step says FAULT", label);
  cr_assert_eq(st.terminated, 1, "%s: the episode is over", label);
  const char *why = cap_env_fault(r.e);
  cr_assert_not_null(why, "%s: cap_env_fault says why", label);
  char idstr[16];
  snprintf(idstr, sizeof idstr, " %d", bad_id);
  switch (f) {
  case F_DROP: cr_assert(contains_ci(why, "timeout") && strstr(why, idstr), "%s: %s", label, why); break;
  case F_CRC:
    cr_assert(contains_ci(why, kind == SRV_DXL ? "crc" : "checksum") && strstr(why, idstr), "%s: %s", label,
              why);
    break;
  case F_HWERR:
    cr_assert(strstr(why, idstr) && contains_ci(why, kind == SRV_DXL ? "alert" : "overheat"), "%s: %s", label,
              why);
    break;
  case F_UNPLUG: cr_assert(contains_ci(why, "hung up"), "%s: %s", label, why); break;
  }
  printf("[robot] %s: fault \"%s\"\n", label, why);

  if (f == F_UNPLUG) {
    /* nothing can reach the servos: they keep their last goal; nothing else is logged */
    cr_assert_eq(srv_sim_ncommands(r.sim), i0, "%s: nothing reached the unplugged bus", label);
    printf("[robot] %s: the faulted step returned %.3f ms after it started\n", label, (t_ret - t0) / 1e6);
    for (int k = 0; k < 3; k++) {
      cr_assert_eq(cap_env_step(r.e, a, &st), 0);
      cr_assert(st.flags & CAP_FLAG_FAULT);
      cr_assert_eq(st.terminated, 1);
    }
    const char *port = srv_sim_path(r.sim);
    cr_assert_neq(cap_env_reset(r.e, 0, &obs), 0, "%s: reset cannot reconnect", label);
    cr_assert(strstr(tk_errmsg(), port) != NULL, "%s: the message names the port %s: %s", label, port,
              tk_errmsg());
    printf("[robot] %s: reset refused: %s\n", label, tk_errmsg());
    cr_assert_not_null(cap_env_fault(r.e), "still faulted");
    cr_assert_eq(cap_env_step(r.e, a, &st), 0);
    cr_assert(st.flags & CAP_FLAG_FAULT, "still faulted after the failed reset");
    cr_assert_gt(goals_within_limits(&r, 0), 0);
    rig_close(&r);
    return;
  }

  /* the log: the step's goals, the failed read attempts (every one of them for a dropped or
   * corrupt answer; an alarm fails the first read that gets through), the safe state, then our
   * marker */
  const uint64_t mk = barrier(&r);
  tLog l = log_get(r.sim, i0);
  cr_assert_geq(l.n, (size_t)(mk - i0));
  for (int i = 0; i < n; i++)
    cr_assert(is_goal(&r, &l.c[i]) && l.c[i].id == c.j[i].id, "%s: the step's goals first", label);
  int attempts = 0;
  while ((size_t)n * (size_t)(2 + attempts) <= (size_t)(mk - i0) &&
         l.c[(size_t)n * (size_t)(1 + attempts)].inst == SRV_SYNC_READ) {
    for (int i = 0; i < n; i++) {
      const srvSimCmd *q = &l.c[(size_t)n * (size_t)(1 + attempts) + (size_t)i];
      cr_assert_eq(q->inst, SRV_SYNC_READ, "%s: read attempt %d", label, attempts);
      cr_assert_eq(q->id, c.j[i].id);
    }
    attempts++;
  }
  if (f == F_HWERR)
    cr_assert(attempts >= 1 && attempts <= c.retries + 1, "%s: %d read attempts", label, attempts);
  else
    cr_assert_eq(attempts, c.retries + 1, "%s: every read attempt failed", label);
  const size_t want = (size_t)n * (size_t)(2 + attempts);
  cr_assert_eq(mk - i0, want, "%s: %zu records between the fault and the marker, want %zu", label,
               (size_t)(mk - i0), want);
  srvSimCmd safe[6];
  memcpy(safe, &l.c[(size_t)n * (size_t)(1 + attempts)], sizeof safe);
  const int64_t fail_first_t = l.c[(size_t)n + (size_t)(bad_id - 1)].t_ns;
  const int64_t fail_last_t = l.c[(size_t)n * (size_t)attempts + (size_t)(bad_id - 1)].t_ns;
  const double *pos = st.obs.v[0];
  for (int i = 0; i < n; i++) {
    const srvSimCmd *s = &safe[i];
    cr_assert_eq(s->id, c.j[i].id);
    cr_assert_eq(s->inst, SRV_SYNC_WRITE, "%s: the safe state right after the failed request", label);
    if (torque_off) {
      cr_assert(is_torque(&r, s), "%s: torque off", label);
      cr_assert_eq(s->value, 0);
    } else {
      cr_assert(is_goal(&r, s), "%s: hold", label);
      cr_assert_float_eq((double)s->value, r2t(&c.j[i], pos[i]), 0.5 + 1e-6,
                         "%s: %s held at the last position read (%.4f rad), got %d ticks", label, c.j[i].name,
                         pos[i], s->value);
      if (f != F_HWERR) /* a failed read changes nothing: the last position read is the previous step's */
        cr_assert_float_eq(pos[i], before[i], 1e-12);
    }
  }
  free(l.c);
  /* ordering: the safe command came before the marker, written after the step returned */
  cr_assert_gt(mk, i0 + want - 1);
  const double lat_first = (safe[0].t_ns - fail_first_t) / 1e6, lat_last = (safe[0].t_ns - fail_last_t) / 1e6;
  printf(
      "[robot] %s: step %.3f ms; failing request -> safe command %.3f ms (from the first attempt), %.3f ms "
      "(from the last); safe command parsed %+.3f ms relative to the step's return\n",
      label, (t_ret - t0) / 1e6, lat_first, lat_last, (safe[0].t_ns - t_ret) / 1e6);
  for (int i = 0; i < n; i++) {
    if (torque_off)
      cr_assert_eq(peek(r.sim, c.j[i].id, SRV_REG_TORQUE_ENABLE), 0, "%s: %s limp", label, c.j[i].name);
    else
      cr_assert_eq(peek(r.sim, c.j[i].id, SRV_REG_GOAL_POSITION), safe[i].value);
  }
  /* while faulted nothing is sent, whatever the steps and the watchdog */
  for (int k = 0; k < 3; k++) {
    cr_assert_eq(cap_env_step(r.e, a, &st), 0);
    cr_assert(st.flags & CAP_FLAG_FAULT, "%s: still FAULT", label);
    cr_assert_eq(st.terminated, 1);
    tk_pacer_wait(&p);
  }
  usleep((useconds_t)(3.5 * c.watchdog_ms * 1000));
  cr_assert_eq(srv_sim_ncommands(r.sim), mk + 1, "%s: no command after the safe state while faulted", label);
  cr_assert_eq(cap_env_watchdog_holds(r.e), 0);
  /* reset while the fault persists: refused naming the servo, and nothing written */
  uint64_t i1 = srv_sim_ncommands(r.sim);
  cr_assert_neq(cap_env_reset(r.e, 0, &obs), 0, "%s: reset with the fault still there", label);
  if (!builtin) /* (with 4 ms timeouts another servo's ping may time out first on a loaded machine) */
    cr_assert(strstr(tk_errmsg(), bad->name) != NULL, "%s: names the joint: %s", label, tk_errmsg());
  printf("[robot] %s: reset during the fault refused: %s\n", label, tk_errmsg());
  barrier(&r);
  l = log_get(r.sim, i1);
  for (size_t k = 0; k < l.n; k++)
    cr_assert(!is_write(&l.c[k]), "%s: a refused reset writes nothing (record %zu)", label, k);
  free(l.c);
  cr_assert_not_null(cap_env_fault(r.e));
  /* cleared: reset recovers */
  srv_sim_set_fault(r.sim, 0, 0);
  i1 = srv_sim_ncommands(r.sim);
  reset_ok(&r, &obs);
  check_reset(&r, &obs, i1);
  double q0[6];
  memcpy(q0, obs.v[0], sizeof q0);
  for (int i = 0; i < n; i++)
    a[i] = 0.2;
  tk_pacer_start(&p, 50);
  capStep s2;
  for (int t = 0; t < 15; t++) {
    s2 = step_setup(&r, a, &obs);
    tk_pacer_wait(&p);
  }
  const double *q = s2.obs.v[0];
  for (int i = 0; i < n; i++) {
    const double tgt = target_of(&c.j[i], 0.2);
    cr_assert_lt(fabs(q[i] - tgt), fmax(0.05, 0.5 * fabs(q0[i] - tgt)),
                 "%s: tracks again after the reset (%.3f -> %.3f, target %.3f)", c.j[i].name, q0[i], q[i],
                 tgt);
  }
  cr_assert_gt(goals_within_limits(&r, 0), 0);
  rig_close(&r);
}

Test(robot_fault, drop_hold_dxl_simbus, .timeout = 30) { fault_case(SRV_DXL, 0, F_DROP, 3, 0, 0); }
Test(robot_fault, drop_torque_off_fts_port, .timeout = 30) { fault_case(SRV_FTS, 1, F_DROP, 5, 1, 0); }
Test(robot_fault, crc_hold_fts_simbus, .timeout = 30) { fault_case(SRV_FTS, 0, F_CRC, 2, 0, 0); }
Test(robot_fault, crc_torque_off_dxl_port, .timeout = 30) { fault_case(SRV_DXL, 1, F_CRC, 6, 1, 0); }
Test(robot_fault, hwerr_hold_dxl_port, .timeout = 30) { fault_case(SRV_DXL, 1, F_HWERR, 4, 0, 0); }
Test(robot_fault, hwerr_torque_off_fts_simbus, .timeout = 30) { fault_case(SRV_FTS, 0, F_HWERR, 1, 1, 0); }
Test(robot_fault, unplug_hold_dxl_simbus, .timeout = 30) { fault_case(SRV_DXL, 0, F_UNPLUG, 1, 0, 0); }
Test(robot_fault, unplug_torque_off_fts_port, .timeout = 30) { fault_case(SRV_FTS, 1, F_UNPLUG, 1, 1, 0); }
/* the built-in arm at its 50 Hz: realistic timeouts (4 ms per attempt) and latencies */
Test(robot_fault, builtin_50hz_drop_dxl, .timeout = 30) { fault_case(SRV_DXL, 0, F_DROP, 2, 0, 1); }
Test(robot_fault, builtin_50hz_crc_fts, .timeout = 30) { fault_case(SRV_FTS, 0, F_CRC, 4, 0, 1); }
Test(robot_fault, builtin_50hz_hwerr_dxl, .timeout = 30) { fault_case(SRV_DXL, 0, F_HWERR, 6, 0, 1); }

/* ==== 6. reset refuses a joint outside its limits ==== */
Test(robot_reset, refuses_a_joint_outside_its_limits, .timeout = 30) {
  tCfg c = arm_cfg();
  c.j[2].lo = -1.0; /* elbow_flex starts at 300 ticks = 0.46 rad */
  c.j[2].hi = 0.2;
  rig r;
  rig_open(&r, &c, SRV_DXL, 0, 1);
  const uint64_t i0 = srv_sim_ncommands(r.sim);
  capObs obs;
  cr_assert_neq(cap_env_reset(r.e, 0, &obs), 0, "the elbow is outside [-1, 0.2]");
  const char *msg = tk_errmsg();
  cr_assert(strstr(msg, "elbow_flex") && strstr(msg, "outside"), "%s", msg);
  cr_assert_null(strchr(msg, '\n'));
  printf("[robot] reset refused: %s\n", msg);
  barrier(&r);
  tLog l = log_get(r.sim, i0);
  for (size_t k = 0; k < l.n; k++)
    cr_assert(!is_write(&l.c[k]), "record %zu: a refused reset sends no goal or torque", k);
  free(l.c);
  for (int i = 0; i < c.n; i++)
    cr_assert_eq(peek(r.sim, c.j[i].id, SRV_REG_TORQUE_ENABLE), 0);
  rig_close(&r);
}

/* A step before any successful reset would have no targets taken from where the arm is (a
 * regression once sent goals up to max_step from 0 rad; with torque left on by a previous process
 * whose on_exit was "hold", the arm jumped): it must be refused, so that no goal further than
 * max_step from the arm is ever sent. */
Test(robot_reset, step_before_reset_never_jumps, .timeout = 30) {
  tCfg c = arm_cfg();
  rig r;
  memset(&r, 0, sizeof r);
  /* a previous session left the arm holding where it is */
  srvSim *sim;
  cr_assert_eq(srv_sim_start(SRV_DXL, 6, &sim), 0);
  srvBus *bus;
  srvBusOpts bo;
  srv_bus_default(&bo);
  bo.timeout_us = 200000;
  cr_assert_eq(srv_bus_open(&bus, srv_sim_path(sim), &bo), 0, "%s", tk_errmsg());
  for (int id = 1; id <= 6; id++)
    cr_assert_eq(srv_bus_write_reg(bus, (uint8_t)id, SRV_REG_TORQUE_ENABLE, 1), 0, "%s", tk_errmsg());
  srv_bus_free(bus);
  r.cfg = c;
  r.kind = SRV_DXL;
  r.sim = sim;
  snprintf(r.spec, sizeof r.spec, "dxl:%s", srv_sim_path(sim));
  snprintf(r.cfg_path, sizeof r.cfg_path, "%s/robot.json", tt_tmpdir());
  write_cfg(&c, r.cfg_path);
  capOpts o;
  cap_opts_default(&o);
  o.robot = r.spec;
  o.robot_config = r.cfg_path;
  cr_assert_eq(cap_model_load(&o, &r.m), 0, "%s", tk_errmsg());
  cr_assert_eq(cap_env_make(r.m, &r.e), 0, "%s", tk_errmsg());
  const uint64_t i0 = srv_sim_ncommands(sim);
  double a[6] = {0, 0, 0, 0, 0, 0};
  capStep st;
  const int rc = cap_env_step(r.e, a, &st);
  barrier(&r);
  tLog l = log_get(sim, i0);
  for (size_t k = 0; k < l.n; k++)
    if (is_goal(&r, &l.c[k])) {
      const double d = fabs((double)l.c[k].value - start_ticks(l.c[k].id));
      cr_expect_leq(
          d, c.max_step * TPR + 1,
          "step before reset (rc %d): servo %u sent to %d ticks, %.0f ticks from where it is (max step "
          "%.0f)",
          rc, l.c[k].id, l.c[k].value, d, c.max_step * TPR);
    }
  free(l.c);
  usleep(200000); /* and the arm, with its torque on, did not jump */
  for (int id = 1; id <= 6; id++) {
    const int32_t q = peek(sim, id, SRV_REG_PRESENT_POSITION);
    cr_expect_leq(fabs(q - start_ticks(id)), c.max_step * TPR + 1, "servo %d moved from %.0f to %d ticks", id,
                  start_ticks(id), q);
  }
  cap_env_free(r.e);
  cap_model_free(r.m);
  srv_sim_stop(sim);
}

/* The same after a refused reset, which leaves the targets half set (the out-of-range joint at its
 * limit, the joints after it unset): a step without a successful reset sends nothing. */
Test(robot_reset, step_after_refused_reset_never_jumps, .timeout = 30) {
  tCfg c = arm_cfg();
  c.j[2].lo = -1.0; /* elbow_flex starts at 0.46 rad: outside */
  c.j[2].hi = 0.2;
  rig r;
  rig_open(&r, &c, SRV_DXL, 0, 1);
  capObs obs;
  cr_assert_neq(cap_env_reset(r.e, 0, &obs), 0);
  const uint64_t i0 = srv_sim_ncommands(r.sim);
  double a[6] = {0, 0, 0, 0, 0, 0};
  capStep st;
  const int rc = cap_env_step(r.e, a, &st);
  barrier(&r);
  tLog l = log_get(r.sim, i0);
  for (size_t k = 0; k < l.n; k++)
    if (is_goal(&r, &l.c[k])) {
      const double d = fabs((double)l.c[k].value - start_ticks(l.c[k].id));
      cr_expect_leq(
          d, c.max_step * TPR + 1,
          "step after a refused reset (rc %d, flags %d): servo %u sent to %d ticks, %.0f ticks from "
          "where it is (max step %.0f)",
          rc, st.flags, l.c[k].id, l.c[k].value, d, c.max_step * TPR);
    }
  free(l.c);
  goals_within_limits(&r, 0);
  rig_close(&r);
}

/* After an unplug, cap_env_reset's reconnect fails and leaves no bus; cap_env_torque must then
 * be an error ("not connected"), not a crash on the missing bus (a regression once). */
Test(robot_reset, torque_after_failed_reconnect_is_an_error, .timeout = 30) {
  rig r;
  rig_open(&r, NULL, SRV_DXL, 1, 1);
  capObs obs;
  reset_ok(&r, &obs);
  srv_sim_unplug(r.sim);
  double a[6] = {0};
  capStep st;
  cr_assert_eq(cap_env_step(r.e, a, &st), 0);
  cr_assert(st.flags & CAP_FLAG_FAULT);
  cr_assert_neq(cap_env_reset(r.e, 0, &obs), 0);
  cr_expect_neq(cap_env_torque(r.e, 0), 0, "torque off without a bus is an error");
  cr_expect_neq(cap_env_torque(r.e, 1), 0, "torque on without a bus is an error");
  rig_close(&r);
}

/* ==== 7. leader arm ==== */
Test(robot_leader, simbus_leader_drives_the_follower, .timeout = 30) {
  rig r;
  rig_open(&r, NULL, SRV_DXL, 0, 1);
  const tCfg c = arm_cfg(); /* the built-in arm's joints */
  capObs obs;
  reset_ok(&r, &obs);
  capLeader *l = NULL;
  cr_assert_eq(cap_leader_open("simbus", NULL, r.m, &l), 0, "%s", tk_errmsg());
  cr_assert_not_null(l);
  srvSim *ls = cap_leader_sim(l);
  cr_assert_not_null(ls);
  cr_assert(strlen(cap_leader_desc(l)) > 0);
  for (int id = 1; id <= 6; id++)
    cr_assert_eq(peek(ls, id, SRV_REG_TORQUE_ENABLE), 0, "leader servo %d is limp", id);
  /* read through the calibration (the follower's: offset 2048, direction 1) */
  const int32_t at[6] = {2048 - 500, 2048 + 300, 2048 + 900, 2048 - 977, 2048, 2048 + 700};
  for (int i = 0; i < 6; i++)
    cr_assert_eq(srv_sim_move(ls, (uint8_t)(i + 1), at[i]), 0, "%s", tk_errmsg());
  double q[6], act[6];
  cr_assert_eq(cap_leader_read(l, q), 0, "%s", tk_errmsg());
  for (int i = 0; i < 6; i++)
    cr_assert_float_eq(q[i], (at[i] - 2048) / TPR, 1e-9, "leader joint %d", i);
  cr_assert_eq(cap_leader_action(l, act), 0);
  for (int i = 0; i < 6; i++) {
    cr_assert_float_eq(act[i], 2 * (q[i] - c.j[i].lo) / (c.j[i].hi - c.j[i].lo) - 1, 1e-9);
    cr_assert(act[i] >= -1 && act[i] <= 1);
  }
  /* beyond the follower's limits: clipped to [-1, 1] */
  srv_sim_move(ls, 1, 2048 + 1500);
  srv_sim_move(ls, 6, 2048 - 300);
  cr_assert_eq(cap_leader_action(l, act), 0);
  cr_assert_float_eq(act[0], 1.0, 0);
  cr_assert_float_eq(act[5], -1.0, 0);
  /* a moving leader, followed at 50 Hz */
  const double centre[6] = {0.2, -0.3, 0.1, 0.4, -0.2, 0.75}, amp = 0.4, freq = 0.4;
  tkPacer p;
  tk_pacer_start(&p, 50);
  double max_dyn = 0, sum2 = 0;
  int nd = 0, misses = 0;
  capStep st;
  const int moving = 120, still = 30;
  for (int t = 0; t < moving + still; t++) {
    const double tt = (t < moving ? t : moving) / 50.0;
    double want[6];
    for (int i = 0; i < 6; i++) {
      want[i] = centre[i] + amp * sin(2 * M_PI * freq * tt + i);
      if (i == 5) want[i] = centre[i] + 0.5 * amp * sin(2 * M_PI * freq * tt);
      cr_assert_eq(srv_sim_move(ls, (uint8_t)(i + 1), (int32_t)lround(2048 + want[i] * TPR)), 0);
    }
    /* the leader's bus has the bus's own timeout (34 ms on a pty): on a loaded machine a read
     * may time out now and then; a teleop loop keeps the previous action for that tick */
    if (cap_leader_action(l, act)) {
      misses++;
      printf("[robot] leader read missed at step %d: %s\n", t, tk_errmsg());
    }
    st = step_ok(&r, act);
    const double *pos = st.obs.v[0];
    if (t >= 50 && t < moving) /* after a second of warm-up */
      for (int i = 0; i < 6; i++) {
        const double e = fabs(pos[i] - want[i]);
        max_dyn = fmax(max_dyn, e);
        sum2 += e * e;
        nd++;
      }
    if (t == moving + still - 1) {
      double max_static = 0;
      for (int i = 0; i < 6; i++)
        max_static = fmax(max_static, fabs(pos[i] - want[i]));
      printf(
          "[robot] leader tracking at 50 Hz (leader %.1f rad at %.1f Hz, peak %.2f rad/s; servo tau 0.05 s): "
          "max error %.4f rad, rms %.4f rad while moving; %.5f rad after %d still steps\n",
          amp, freq, 2 * M_PI * freq * amp, max_dyn, sqrt(sum2 / nd), max_static, still);
      cr_assert_lt(max_static, 0.01, "the follower settles on the leader");
    }
    tk_pacer_wait(&p);
  }
  /* lag of a first-order servo (tau 0.05 s) plus one control period at 1 rad/s: ~0.07 rad */
  cr_assert_lt(max_dyn, 0.15, "the follower tracks the moving leader (max error %.4f rad)", max_dyn);
  cr_assert_leq(misses, 5, "leader reads that timed out: %d of %d", misses, moving + still);
  cap_leader_close(l);

  /* a leader with another number of joints is refused */
  char path[4200];
  snprintf(path, sizeof path, "%s/leader5.json", tt_tmpdir());
  write_text(path, "{\"joints\": [{\"id\": 1}, {\"id\": 2}, {\"id\": 3}, {\"id\": 4}, {\"id\": 5}]}");
  srvSim *ls2;
  cr_assert_eq(srv_sim_start(SRV_DXL, 6, &ls2), 0);
  char spec[300];
  snprintf(spec, sizeof spec, "dxl:%s", srv_sim_path(ls2));
  l = (capLeader *)1;
  cr_assert_neq(cap_leader_open(spec, path, r.m, &l), 0, "5 leader joints for a 6-joint follower");
  cr_assert_null(l);
  cr_assert(strstr(tk_errmsg(), "5") && strstr(tk_errmsg(), "6"), "%s", tk_errmsg());
  printf("[robot] leader refused: %s\n", tk_errmsg());
  /* a real leader needs its config */
  cr_assert_neq(cap_leader_open(spec, NULL, r.m, &l), 0);
  cr_assert(strstr(tk_errmsg(), "config"), "%s", tk_errmsg());
  srv_sim_stop(ls2);
  rig_close(&r);
}

Test(robot_leader, calibration_matches_the_follower, .timeout = 30) {
  rig r;
  rig_open(&r, NULL, SRV_DXL, 0, 1);
  capObs obs;
  reset_ok(&r, &obs);
  /* move the follower somewhere */
  const double a[6] = {0.3, -0.4, 0.5, -0.2, 0.1, 0.6};
  tkPacer p;
  tk_pacer_start(&p, 50);
  for (int t = 0; t < 30; t++) {
    step_ok(&r, a);
    tk_pacer_wait(&p);
  }
  double fq[6];
  cap_env_joint_pos(r.e, fq);
  /* a leader arm of our own, on a port: held in torque by a previous user */
  srvSim *ls;
  cr_assert_eq(srv_sim_start(SRV_DXL, 6, &ls), 0);
  srvBus *bus;
  srvBusOpts bo;
  srv_bus_default(&bo);
  bo.timeout_us = 200000;
  cr_assert_eq(srv_bus_open(&bus, srv_sim_path(ls), &bo), 0, "%s", tk_errmsg());
  for (int id = 1; id <= 6; id++)
    cr_assert_eq(srv_bus_write_reg(bus, (uint8_t)id, SRV_REG_TORQUE_ENABLE, 1), 0);
  srv_bus_free(bus);
  const char *dir = tt_tmpdir();
  char cfg1[4200], out[4200], spec[300];
  snprintf(cfg1, sizeof cfg1, "%s/leader.json", dir);
  snprintf(out, sizeof out, "%s/leader_calibrated.json", dir);
  snprintf(spec, sizeof spec, "dxl:%s", srv_sim_path(ls));
  const double dirs[6] = {1, -1, 1, -1, 1, 1};
  write_text(cfg1, "{\"name\": \"my_leader\", \"joints\": [\n"
                   " {\"id\": 1, \"offset\": 1800}, {\"id\": 2, \"offset\": 1800, \"direction\": -1},\n"
                   " {\"id\": 3, \"offset\": 1800}, {\"id\": 4, \"offset\": 1800, \"direction\": -1},\n"
                   " {\"id\": 5, \"offset\": 1800}, {\"id\": 6, \"offset\": 1800}]}\n");
  capLeader *l = NULL;
  cr_assert_eq(cap_leader_open(spec, cfg1, r.m, &l), 0, "%s", tk_errmsg());
  /* limp: torque off reached the servos (the marker orders it) */
  rig lr = {.kind = SRV_DXL, .sim = ls};
  barrier(&lr);
  for (int id = 1; id <= 6; id++)
    cr_assert_eq(peek(ls, id, SRV_REG_TORQUE_ENABLE), 0, "leader servo %d limp after open", id);
  /* the leader is moved away from the follower's pose, then both are "the same pose" */
  int32_t lt[6];
  for (int i = 0; i < 6; i++) {
    lt[i] = 1000 + 250 * (i + 1);
    cr_assert_eq(srv_sim_move(ls, (uint8_t)(i + 1), lt[i]), 0, "%s", tk_errmsg());
  }
  double q[6];
  cr_assert_eq(cap_leader_read(l, q), 0);
  double off_before = 0;
  for (int i = 0; i < 6; i++)
    off_before = fmax(off_before, fabs(q[i] - fq[i]));
  cr_assert_gt(off_before, 0.1, "before calibration the leader disagrees with the follower");
  cr_assert_eq(cap_leader_calibrate(l, fq, out), 0, "%s", tk_errmsg());
  cap_leader_close(l);
  /* the file: valid JSON, one joint per follower joint with its id, offset and direction */
  cJSON *j = NULL;
  cr_assert_eq(tk_json_load(out, &j), 0, "%s", tk_errmsg());
  const cJSON *joints = cJSON_GetObjectItemCaseSensitive(j, "joints");
  cr_assert(cJSON_IsArray(joints));
  cr_assert_eq(cJSON_GetArraySize(joints), 6);
  for (int i = 0; i < 6; i++) {
    const cJSON *o = cJSON_GetArrayItem(joints, i);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(o, "id"),
                *off = cJSON_GetObjectItemCaseSensitive(o, "offset"),
                *dr = cJSON_GetObjectItemCaseSensitive(o, "direction");
    cr_assert(cJSON_IsNumber(id) && cJSON_IsNumber(off) && cJSON_IsNumber(dr), "joint %d", i);
    cr_assert_eq(id->valueint, i + 1);
    cr_assert_float_eq(dr->valuedouble, dirs[i], 0);
    cr_assert_float_eq(off->valuedouble, lt[i] - dirs[i] * fq[i] * TPR, 0.001, "joint %d offset", i);
  }
  cJSON_Delete(j);
  /* a leader opened with it reads the follower's angles */
  cr_assert_eq(cap_leader_open(spec, out, r.m, &l), 0, "%s", tk_errmsg());
  cr_assert_eq(cap_leader_read(l, q), 0);
  double worst = 0;
  for (int i = 0; i < 6; i++) {
    worst = fmax(worst, fabs(q[i] - fq[i]));
    cr_assert_float_eq(q[i], fq[i], 1.0 / TPR, "joint %d: leader %.5f, follower %.5f rad", i, q[i], fq[i]);
  }
  printf("[robot] leader calibration: %.4f rad off before, %.2e rad (%.3f ticks) after\n", off_before, worst,
         worst * TPR);
  /* and its action keeps the follower where it is */
  double act[6], tg[6];
  cr_assert_eq(cap_leader_action(l, act), 0);
  step_ok(&r, act);
  targets(&r, tg);
  for (int i = 0; i < 6; i++)
    cr_assert_float_eq(tg[i], fq[i], 1.0 / TPR);
  cap_leader_close(l);
  srv_sim_stop(ls);
  rig_close(&r);
}
