/* teleop/tel_console.c -- the console: one loop paced on absolute deadlines; each tick reads
 * the device, maps it to an action, runs the episode state machine, steps the environment
 * and hands the step to the dataset writer (whose thread does the HDF5 work).
 *
 * States: idle -(Start)-> recording -(A: success | B: failure | X: discard | auto-end |
 * max length)-> reset -> idle. Start while recording pauses. The device going away while
 * recording: the action is zero (hold) from that tick, one held step is recorded, and the
 * episode waits (unplugged) until the device is back. Y resets the scene (discarding an open
 * episode); Back quits (an open episode is kept as a failure: nothing recorded is lost). */
#include <SDL2/SDL.h>
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cairo.h>
#include <mujoco/mujoco.h>

#include "ds.h"
#include "bc.h"
#include "tel.h"
#include "tk.h"

struct telConsole {
  const telOpts *o;
  telState state;
  int64_t ticks, ep_steps;
  capVpad *vpad;
};

telState tel_state(const telConsole *c) { return c->state; }
int64_t tel_ticks(const telConsole *c) { return c->ticks; }
int64_t tel_episode_steps(const telConsole *c) { return c->ep_steps; }
capVpad *tel_vpad(telConsole *c) { return c->vpad; }

void tel_opts_default(telOpts *o) {
  memset(o, 0, sizeof *o);
  o->task = CAP_DEFAULT_TASK;
  o->device = "gamepad";
  o->image_gzip = 4;
}

/* ---- pad remapping from JSON ---- */
static int axis_by_name(const char *s, int *ax, double *sign) {
  *sign = 1;
  if (*s == '-') {
    *sign = -1;
    s++;
  }
  const char *names[CAP_NAXES] = {"left_x", "left_y", "right_x", "right_y", "left_trigger", "right_trigger"};
  for (int i = 0; i < CAP_NAXES; i++)
    if (!strcmp(s, names[i])) {
      *ax = i;
      return 0;
    }
  if (!strcmp(s, "none")) {
    *ax = -1;
    *sign = 0;
    return 0;
  }
  return -1;
}

/* The gamepad map file (--map): its keys, with the types and ranges they take. */
static const tkJsonField map_fields[] = {
    {.key = "dx", .types = TK_JSON_STRING},
    {.key = "dy", .types = TK_JSON_STRING},
    {.key = "dz", .types = TK_JSON_STRING},
    {.key = "drx", .types = TK_JSON_STRING},
    {.key = "dry", .types = TK_JSON_STRING},
    {.key = "drz", .types = TK_JSON_STRING},
    {.key = "deadzone", .types = TK_JSON_NUMBER, .lo = 0, .hi = 0.9},   /* and below 0.9 */
    {.key = "sensitivity", .types = TK_JSON_NUMBER, .lo = 0, .hi = 10}, /* and above 0 */
    {.key = NULL},
};

static int load_map(const char *path, capPadMap *m) {
  cJSON *j;
  int rc = tk_json_load_object(path, map_fields, &j);
  if (rc) return rc;
  for (int i = 0; i < 6 && !rc; i++) {
    const char *v = tk_json_str(j, map_fields[i].key, NULL);
    if (!v) continue;
    if (axis_by_name(v, &m->src[i], &m->sign[i]))
      rc = tk_error(TK_EFORMAT,
                    "%s: \"%s\": '%s' is not an axis (left_x, left_y, right_x, right_y, left_trigger, "
                    "right_trigger, none; a leading - flips it)",
                    path, map_fields[i].key, v);
  }
  double dz = tk_json_num(j, "deadzone", m->deadzone), sens = tk_json_num(j, "sensitivity", m->sensitivity);
  if (!rc && !(dz >= 0 && dz < 0.9))
    rc = tk_error(TK_EFORMAT, "%s: \"deadzone\" %g not in [0,0.9)", path, dz);
  if (!rc && !(sens > 0 && sens <= 10))
    rc = tk_error(TK_EFORMAT, "%s: \"sensitivity\" %g not in (0,10]", path, sens);
  m->deadzone = dz;
  m->sensitivity = sens;
  cJSON_Delete(j);
  return rc;
}

/* Six-dof devices report in their own frame (x right, y away from the user, z up). The user
 * looks at the scene through the agentview camera, which faces the robot: image right is
 * world +y and "away" is world -x. */
static void six_dof_action(const capInputState *st, double *gripper, double *a) {
  a[0] = -st->motion[1];
  a[1] = st->motion[0];
  a[2] = st->motion[2];
  a[3] = -st->motion[4];
  a[4] = st->motion[3];
  a[5] = st->motion[5];
  for (int i = 0; i < 6; i++)
    a[i] = fmax(-1, fmin(1, a[i]));
  a[6] = *gripper;
}

/* ---- the dataset schema from the environment's spec ---- */
static void on_commit(int64_t idx, dsOutcome out, int64_t n, void *user);

static int writer_open(const telOpts *o, const capModel *m, void *run, dsWriter **w) {
  dsWriterOpts wo;
  char kw[4096];
  int rc = bc_writer_opts(m, o->ncams, o->cams, &wo, kw, sizeof kw);
  if (rc) return rc;
  wo.image_gzip = o->image_gzip;
  wo.on_commit = on_commit;
  wo.user = run;
  return ds_writer_open(o->out, &wo, w);
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* ---- the run ---- */
typedef struct {
  const telOpts *o;
  capModel *model;
  capEnv *env;
  capInput *in;
  capExpert *expert;
  capInputRecorder *rec;
  dsWriter *w;
  const capSpec *spec;
  capPadMap map;
  double gripper;
  /* current observation and state, copied (the env's buffers change when it steps) */
  uint8_t *obs_mem;
  uint8_t *preview; /* the HUD's camera strip: every camera's latest frame side by side, 2x up to 128 px */
  int preview_w, preview_h;
  void *obs[CAP_MAX_OBS];
  size_t obs_bytes[CAP_MAX_OBS];
  double *state;
  uint64_t next_seed;
  uint64_t ep_seed;
  double ep_t0;
  int64_t ep_missed;
  int success_held;
  unsigned prev_buttons;
  telStats *st;
  telConsole con;
  int scripted_start_phase;
  capWindow *win;
  double draw_cost; /* s, running estimate of one window draw */
  int draws;        /* frames drawn */
  int64_t last_draw_tick;
  int64_t last_saved; /* index of the last committed demo (set by the writer thread) */
  char message[160];
  int message_tone;
  double last_action[CAP_MAX_ACT];
  /* intervention mode */
  bcPolicy *pol;
  bcActor *pol_actor; /* the policy's work and episode state: chunk ensemble, LSTM state (restarted at a
                         takeover) */
  int takeover;       /* the operator drives this tick */
  /* on a robot with a leader arm: the operator takes over by moving the leader away from where it rested
   * while the policy drove, and hands back by letting go (the leader still for half a second) */
  double leader_rest[CAP_MAX_ACT], leader_prev[CAP_MAX_ACT];
  int leader_still;        /* ticks the leader has not moved */
  double act_s, act_max_s; /* the policy's acting time this episode: total and longest tick */
  int64_t act_n;
  /* robots */
  capLeader *leader;
  int need_reset; /* a robot fault ended the episode: reset (torque on) only when the operator asks */
  double leader_q0[CAP_MAX_ACT]; /* scripted operator: the leader's pose at the episode's start */
  char *ep_meta;                 /* attr ep_meta (JSON through cJSON: paths escaped, sized to fit), or NULL */
} telRun;

static void copy_obs(telRun *r, const capObs *o) {
  for (int k = 0; k < r->spec->nobs; k++)
    memcpy(r->obs[k], o->v[k], r->obs_bytes[k]);
}

static int reset_scene(telRun *r) {
  capObs o;
  r->ep_seed = r->next_seed++;
  int rc = cap_env_reset(r->env, r->ep_seed, &o);
  if (rc) return rc;
  copy_obs(r, &o);
  cap_env_get_state(r->env, r->state);
  if (r->expert) cap_expert_reset(r->expert, r->ep_seed);
  if (r->leader && cap_leader_sim(r->leader)) cap_leader_read(r->leader, r->leader_q0);
  r->gripper = -1;
  r->success_held = 0;
  r->need_reset = 0;
  if (cap_model_is_robot(r->model)) cap_env_hold_action(r->env, r->last_action);
  return 0;
}

static int begin_episode(telRun *r) {
  const telOpts *o = r->o;
  const char *opname = o->operator_name ? o->operator_name : getenv("USER");
  dsEpisodeInfo info = {.task = r->spec->task,
                        .seed = (int64_t)r->ep_seed,
                        .operator_name = opname ? opname : "",
                        .device = o->device,
                        .control_hz = r->spec->control_hz,
                        .model_file = cap_model_xml(r->model),
                        .ep_meta_json = r->ep_meta};
  int64_t idx;
  int rc = ds_writer_begin(r->w, &info, &idx);
  if (rc) return rc;
  r->ep_t0 = tk_now_s();
  r->ep_missed = 0;
  if (r->pol_actor) bc_actor_reset(r->pol_actor, r->ep_seed);
  r->takeover = 0;
  r->leader_still = 0;
  r->act_s = r->act_max_s = 0;
  r->act_n = 0;
  if (r->leader && cap_leader_action(r->leader, r->leader_rest) == 0)
    memcpy(r->leader_prev, r->leader_rest, sizeof r->leader_prev);
  r->con.ep_steps = 0;
  r->con.state = TEL_RECORDING;
  if (!o->quiet) printf("recording demo_%lld (seed %llu)\n", (long long)idx, (unsigned long long)r->ep_seed);
  fflush(stdout);
  return 0;
}

static int end_episode(telRun *r, dsOutcome out, const char *why) {
  const void *fin[CAP_MAX_OBS];
  for (int k = 0; k < r->spec->nobs; k++)
    fin[k] = r->obs[k];
  int rc = ds_writer_end_why(r->w, out, fin, r->ep_missed, why);
  if (out == DS_SUCCESS)
    r->st->success++;
  else if (out == DS_FAILURE)
    r->st->failure++;
  else
    r->st->discarded++;
  cap_input_rumble(r->in,
                   out == DS_SUCCESS   ? 0.4
                   : out == DS_FAILURE ? 0.8
                                       : 0.2,
                   out == DS_SUCCESS ? 150 : 400);
  if (!r->o->quiet && r->act_n > 0) /* what the policy costs the control loop */
    printf("policy: %.2f ms per tick on average, %.2f ms at most, of the %.1f ms control period\n",
           1e3 * r->act_s / (double)r->act_n, 1e3 * r->act_max_s, 1e3 / r->spec->control_hz);
  if (!r->o->quiet)
    printf("ended: %s (%s, %lld steps, %lld missed deadlines)\n",
           out == DS_SUCCESS   ? "success"
           : out == DS_FAILURE ? "failure"
                               : "discarded",
           why, (long long)r->con.ep_steps, (long long)r->ep_missed);
  fflush(stdout);
  snprintf(r->message, sizeof r->message, "ended: %s (%s)",
           out == DS_SUCCESS   ? "success"
           : out == DS_FAILURE ? "failure"
                               : "discarded",
           why);
  r->message_tone = out == DS_SUCCESS ? CAP_TONE_GOOD : out == DS_FAILURE ? CAP_TONE_BAD : CAP_TONE_INFO;
  r->con.state = TEL_IDLE;
  if (rc) return rc;
  if (r->need_reset) { /* after a robot fault the arm stays safe until the operator resets */
    snprintf(r->message, sizeof r->message, "robot fault: Start or Y resets (torque on where the arm is)");
    r->message_tone = CAP_TONE_BAD;
    return 0;
  }
  return reset_scene(r);
}

static int record_step(telRun *r, const double *action, int intervention) {
  capStep s;
  double t = tk_now_s() - r->ep_t0;
  int rc = cap_env_step(r->env, action, &s);
  if (rc) return rc;
  dsStep d = {.action = s.action, /* what the environment executed (clipped, limited) */
              .reward = s.reward,
              .done = 0,
              .state = r->spec->state_dim ? r->state : NULL,
              .timestamp = t,
              .intervention = intervention};
  if (intervention) r->st->intervention_steps++;
  for (int k = 0; k < r->spec->nobs; k++)
    d.obs[k] = r->obs[k];
  if ((rc = ds_writer_add_step(r->w, &d))) return rc;
  copy_obs(r, &s.obs);
  cap_env_get_state(r->env, r->state);
  r->con.ep_steps++;
  r->st->steps++;
  r->success_held = s.success ? r->success_held + 1 : 0;
  int max = r->o->max_steps > 0 ? r->o->max_steps : r->spec->horizon;
  if (s.flags & CAP_FLAG_UNSTABLE) return end_episode(r, DS_FAILURE, "the simulation diverged");
  if (s.flags & CAP_FLAG_FAULT) { /* the robot is already in its safe state */
    char why[300];
    snprintf(why, sizeof why, "robot fault: %s", cap_env_fault(r->env));
    if (!r->o->quiet) printf("%s: the robot is in its safe state\n", why);
    r->need_reset = 1;
    return end_episode(r, DS_FAILURE, why);
  }
  if (r->o->auto_end > 0 && r->success_held >= r->o->auto_end) return end_episode(r, DS_SUCCESS, "auto-end");
  if (max > 0 && r->con.ep_steps >= max)
    return end_episode(r, s.success ? DS_SUCCESS : DS_FAILURE, "maximum length");
  return 0;
}

/* The policy's action for the current observation (intervention mode). */
static int policy_action(telRun *r, double *a) {
  capObs o = {.n = r->spec->nobs};
  for (int k = 0; k < r->spec->nobs; k++)
    o.v[k] = r->obs[k];
  double t0 = tk_now_s();
  int rc = bc_actor_step(r->pol_actor, &o, a);
  double dt = tk_now_s() - t0;
  r->act_s += dt;
  r->act_max_s = fmax(r->act_max_s, dt);
  r->act_n++;
  if (rc) return tk_error_wrap(rc, "%s: policy action", r->o->policy);
  if (cap_model_is_robot(r->model)) /* a non-finite target holds the arm where it is */
    for (int i = 0; i < r->spec->action_dim; i++)
      if (!isfinite(a[i])) return cap_env_hold_action(r->env, a);
  for (int i = 0; i < r->spec->action_dim; i++)
    a[i] = isfinite(a[i]) ? fmax(-1, fmin(1, a[i])) : 0;
  return 0;
}

/* Whether the operator drives this tick (intervention mode). a: what the device (or the leader arm) asks
 * for. A leader arm takes over once it is moved more than 0.05 rad from where it rested while the policy
 * drove, and hands back once still (under 0.002 rad per tick) for half a second; without one, the left
 * trigger of a pad (on a robot: any jog input), any motion of a six-dof device or the keyboard. */
static int operator_drives(telRun *r, const capInputState *in, const double *a) {
  if (r->leader) {
    const int n = r->spec->action_dim;
    double away = 0, moved = 0;
    for (int i = 0; i < n; i++) {
      away = fmax(away, fabs(a[i] - r->leader_rest[i]));
      moved = fmax(moved, fabs(a[i] - r->leader_prev[i]));
    }
    memcpy(r->leader_prev, a, sizeof(double) * (size_t)n);
    r->leader_still = moved < 0.002 ? r->leader_still + 1 : 0;
    if (r->takeover && r->leader_still >= (int)(0.5 * r->spec->control_hz)) {
      memcpy(r->leader_rest, a, sizeof(double) * (size_t)n); /* handed back: it rests here now */
      return 0;
    }
    return r->takeover || away > 0.05;
  }
  double m = 0;
  for (int i = 0; i < 6; i++)
    m = fmax(m, fabs(in->motion[i]));
  if (in->six_dof) return m > 0.05;
  if (!cap_model_is_robot(r->model)) return in->pad.axis[CAP_AX_LT] > 0.5;
  const double dz = r->map.deadzone;
  for (int k = 0; k < CAP_NAXES; k++)
    if (fabs(in->pad.axis[k]) >= dz) return 1;
  return (in->pad.buttons & (CAP_BTN_LB | CAP_BTN_RB)) != 0;
}

/* The policy was loaded before the model (its cameras are rendered): bind it. */
static int policy_open(telRun *r) {
  nn_set_threads(1); /* one row per step: the same bits as bc-eval's workers, whatever the cores */
  if (!(r->pol_actor = bc_actor_make(r->pol, r->model))) return tk_error_wrap(TK_EINVAL, "%s", r->o->policy);
  return 0;
}

/* The scripted operator on a robot: moves the simulated leader arm by hand, smooth motions
 * around where it was at the episode's start, and presses A at the episode's length. */
static void scripted_leader(telRun *r, capPadState *p) {
  double lo[CAP_MAX_ACT], hi[CAP_MAX_ACT], q[CAP_MAX_ACT];
  int n = cap_model_joints(r->model, NULL, lo, hi);
  int len = r->o->max_steps > 0 ? r->o->max_steps : 100;
  /* with a policy: hands off the leader (the policy drives), then take over by moving it */
  int after = !r->pol ? 0 : r->o->takeover_after > 0 ? r->o->takeover_after : (int)(0.4 * len);
  double t = (double)TK_MAX(0, r->con.ep_steps - after) / r->spec->control_hz;
  for (int i = 0; i < n; i++) {
    q[i] = r->leader_q0[i] + 0.3 * sin(2 * M_PI * 0.3 * t + 0.9 * i) - 0.3 * sin(0.9 * i);
    q[i] = fmax(lo[i] + 0.05, fmin(hi[i] - 0.05, q[i]));
  }
  cap_leader_sim_pose(r->leader, q);
  if (r->con.ep_steps >= len - 1) p->buttons = CAP_BTN_A;
}

/* Without a leader arm the device jogs a robot's joints, at up to 0.8 rad/s from where the arm is.
 * A pad: left stick x / y the first two joints, right stick y / x the next two, the triggers the fifth
 * (RT +, LT -), the bumpers the last (RB +, LB -: the gripper on the usual arms). A six-dof device or
 * the keyboard: its six motions the first joints, its gripper toggle drives the last to a limit. */
static void jog_action(telRun *r, const capInputState *in, int connected, double *a) {
  double lo[CAP_MAX_ACT], hi[CAP_MAX_ACT], v[CAP_MAX_ACT] = {0};
  const int n = cap_model_joints(r->model, NULL, lo, hi);
  cap_env_hold_action(r->env, a);
  if (!connected) return;
  const capPadState *p = &in->pad;
  const double dz = r->map.deadzone;
  const int ax[4] = {CAP_AX_LX, CAP_AX_LY, CAP_AX_RY, CAP_AX_RX};
  if (in->six_dof) { /* SpaceMouse, keyboard: the six motions jog the first joints, the gripper toggle the
                        last */
    for (int i = 0; i < 6 && i < n - 1; i++)
      v[i] = in->motion[i];
    if (n > 1) v[n - 1] = r->gripper;
  } else {
    for (int i = 0; i < 4 && i < n; i++)
      v[i] = fabs(p->axis[ax[i]]) < dz ? 0 : p->axis[ax[i]];
    if (n > 5) v[4] = p->axis[CAP_AX_RT] - p->axis[CAP_AX_LT];
    if (n > 4) v[n - 1] = ((p->buttons & CAP_BTN_RB) ? 1 : 0) - ((p->buttons & CAP_BTN_LB) ? 1 : 0);
  }
  for (int i = 0; i < n; i++)
    a[i] = fmax(-1, fmin(1, a[i] + v[i] * 0.8 / r->spec->control_hz * 2 / (hi[i] - lo[i])));
}

/* The scripted operator's hands: press Start when idle, otherwise do the task. */
static void scripted_hands(telRun *r) {
  capPadState p;
  memset(&p, 0, sizeof p);
  if (r->con.state == TEL_IDLE) {
    /* press and release Start */
    r->scripted_start_phase ^= 1;
    if (r->scripted_start_phase) p.buttons = CAP_BTN_START;
  } else if (r->con.state == TEL_RECORDING && r->leader) {
    scripted_leader(r, &p);
  } else if (r->con.state == TEL_RECORDING) {
    int after = r->o->takeover_after > 0 ? r->o->takeover_after : (int)(0.4 * r->spec->horizon);
    if (!r->pol || r->con.ep_steps >= after) { /* with a policy: watch, then take over */
      cap_expert_pad(r->expert, r->env, &r->map, &p);
      if (r->pol) p.axis[CAP_AX_LT] = 1;
    } else {
      int success;
      if (cap_expert_wants_end(r->expert, r->env, &success)) p.buttons = success ? CAP_BTN_A : CAP_BTN_B;
    }
  }
  cap_vpad_set(r->con.vpad, &p);
}

static void on_commit(int64_t idx, dsOutcome out, int64_t n, void *user) {
  telRun *r = user;
  (void)out;
  __atomic_add_fetch(&r->st->committed, 1, __ATOMIC_SEQ_CST);
  __atomic_store_n(&r->last_saved, idx, __ATOMIC_SEQ_CST);
  if (!r->o->quiet) {
    printf("committed demo_%lld (%lld steps)\n", (long long)idx, (long long)n);
    fflush(stdout);
  }
}

static const char *state_text(const telRun *r, int *tone) {
  switch (r->con.state) {
  case TEL_RECORDING:
    *tone = r->pol && r->takeover ? CAP_TONE_INFO : CAP_TONE_REC;
    return !r->pol       ? "recording"
           : r->takeover ? "recording: operator took over"
                         : "recording: policy driving";
  case TEL_PAUSED: *tone = CAP_TONE_WARN; return "paused (Start resumes)";
  case TEL_UNPLUGGED: *tone = CAP_TONE_WARN; return "paused: device unplugged";
  default: *tone = CAP_TONE_IDLE; return "idle (Start records)";
  }
}

static int in_six_dof(const telRun *r) { return (r->in->drv->caps & CAP_INPUT_SIX_DOF) != 0; }

static int draw(telRun *r, double rate, int64_t missed) {
  capHud h;
  memset(&h, 0, sizeof h);
  h.state = state_text(r, &h.tone);
  h.n_success = r->st->success;
  h.n_failure = r->st->failure;
  h.n_discarded = r->st->discarded;
  h.episode = (int)ds_writer_next_index(r->w);
  int open_episode =
      r->con.state == TEL_RECORDING || r->con.state == TEL_PAUSED || r->con.state == TEL_UNPLUGGED;
  h.episode_time = open_episode ? tk_now_s() - r->ep_t0 : 0;
  h.rate_hz = rate;
  h.target_hz = r->spec->control_hz;
  h.missed = missed;
  h.device = r->in ? r->in->desc : "";
  h.action = r->last_action;
  h.action_dim = r->spec->action_dim;
  h.legend = r->in->drv->legend ? r->in->drv->legend() : NULL;
  const char *joint_names[CAP_MAX_ACT];
  if (cap_model_joints(r->model, joint_names, NULL, NULL) > 0) { /* a robot: its joints, its controls */
    h.action_names = joint_names;
    h.legend = r->leader ? "move the leader arm: the robot follows | A success | B failure | X discard | "
                           "Y reset | Start start/pause | Back quit"
               : in_six_dof(r)
                   ? "the six motions: the first joints | gripper toggle: the last joint | A success | "
                     "B failure | X discard | Y reset | Start start/pause | Back quit"
                   : "left stick x/y: joints 1-2 | right stick y/x: joints 3-4 | triggers: joint 5 | "
                     "RB + / LB -: last joint | A success | B failure | X discard | Y reset | "
                     "Start start/pause | Back quit";
  }
  if (r->preview) { /* what the cameras see (and the recording stores) now */
    int x0 = 0;
    memset(r->preview, 0, (size_t)r->preview_w * (size_t)r->preview_h * 3);
    for (int k = 0; k < r->spec->nobs; k++) {
      const capObsSpec *c = &r->spec->obs[k];
      if (c->dtype != CAP_U8) continue;
      const int H = c->shape[0], W = c->shape[1], z = H <= 128 && W <= 128 ? 2 : 1;
      const uint8_t *src = r->obs[k];
      for (int y = 0; y < H * z && y < r->preview_h; y++)
        for (int x = 0; x < W * z; x++)
          memcpy(r->preview + ((size_t)y * r->preview_w + (size_t)(x0 + x)) * 3,
                 src + ((size_t)(y / z) * W + (size_t)(x / z)) * 3, 3);
      x0 += W * z + 4;
    }
    h.strip_rgb = r->preview;
    h.strip_w = r->preview_w;
    h.strip_h = r->preview_h;
  }
  int64_t saved = __atomic_load_n(&r->last_saved, __ATOMIC_SEQ_CST);
  char msg[64];
  if (r->message[0]) { /* the HUD copies its strings: the run's own buffer can be shown as is */
    h.message = r->message;
    h.message_tone = r->message_tone;
  } else if (saved >= 0) {
    snprintf(msg, sizeof msg, "saved demo_%lld", (long long)saved);
    h.message = msg;
    h.message_tone = CAP_TONE_GOOD;
  }
  double t0 = tk_now_s();
  int rc = cap_window_draw(r->win, cap_model_mujoco(r->model), cap_env_mujoco_data(r->env), &h);
  double dt = tk_now_s() - t0;
  /* the first frame pays for shader and buffer setup: it says nothing about the next ones */
  if (r->draws++ > 0) r->draw_cost = r->draw_cost > 0 ? 0.8 * r->draw_cost + 0.2 * dt : dt;
  r->last_draw_tick = r->con.ticks;
  return rc;
}

static int setup(telRun *r) {
  const telOpts *o = r->o;
  const capInputDriver *drv = cap_input_driver(o->device);
  if (!drv)
    return tk_error(TK_ENOTFOUND, "unknown input device '%s' (known: %s)", o->device, cap_input_names(0));
  if (o->fast && !(drv->caps & CAP_INPUT_UNPACED))
    return tk_error(TK_EINVAL,
                    "--fast is for devices with no person behind them (%s): a person needs the real rate",
                    cap_input_names(CAP_INPUT_UNPACED));
  if (o->headless && (drv->caps & CAP_INPUT_WINDOW))
    return tk_error(TK_EINVAL, "%s input comes from the console window: drop --headless", drv->name);
  if (o->robot && o->fast) return tk_error(TK_EINVAL, "--fast: a robot moves in real time");
  if (o->leader && !o->robot) return tk_error(TK_EINVAL, "--leader drives a --robot");
  if (o->robot && (drv->caps & CAP_INPUT_SCRIPTED) &&
      (!o->leader || strncmp(o->leader, "simbus", 6) || o->leader_config))
    return tk_error(TK_EINVAL, "the scripted operator moves a simulated leader arm: --leader simbus");
  capOpts co;
  cap_opts_default(&co);
  co.task = o->model_path ? NULL : o->task;
  co.model_path = o->model_path;
  co.robot = o->robot;
  co.robot_config = o->robot_config;
  if (o->rate > 0) co.control_hz = o->rate;
  co.ncams = o->ncams;
  memcpy(co.cams, o->cams, sizeof co.cams);
  int rc = 0;
  if (o->policy) { /* its cameras are rendered too (and recorded: what the policy saw) */
    if (!(r->pol = bc_policy_load(o->policy))) return tk_error_wrap(TK_EFORMAT, "--policy");
    rc = bc_policy_model_load(r->pol, &co, &r->model);
    if (rc) return tk_error_wrap(rc, "%s", o->policy);
  } else if ((rc = cap_model_load(&co, &r->model))) {
    return rc;
  }
  r->spec = cap_spec(r->model);
  if ((rc = cap_env_make(r->model, &r->env))) return rc;
  cap_pad_map_default(&r->map);
  if (o->map_json && (rc = load_map(o->map_json, &r->map))) return rc;
  if (o->mappings && SDL_GameControllerAddMappingsFromFile(o->mappings) < 0)
    return tk_error(TK_EFORMAT, "%s: SDL cannot read the controller mappings: %s", o->mappings,
                    SDL_GetError());
  if (o->leader) {
    if ((rc = cap_leader_open(o->leader, o->leader_config, r->model, &r->leader))) return rc;
    cJSON *m = cJSON_CreateObject();
    if (m && cJSON_AddStringToObject(m, "robot", o->robot) &&
        cJSON_AddStringToObject(m, "robot_config", o->robot_config ? o->robot_config : "") &&
        cJSON_AddStringToObject(m, "leader", cap_leader_desc(r->leader)))
      r->ep_meta = cJSON_PrintUnformatted(m);
    cJSON_Delete(m);
    if (!r->ep_meta) return tk_error(TK_ENOMEM, "out of memory");
  }
  if (o->calibrate_leader) { /* both arms in the same pose: the follower holds, the leader is read */
    capObs ob;
    double q[CAP_MAX_ACT];
    if (!r->leader) return tk_error(TK_EINVAL, "--calibrate-leader needs --robot and --leader");
    if ((rc = cap_env_reset(r->env, 0, &ob)) || (rc = cap_env_joint_pos(r->env, q))) return rc;
    if ((rc = cap_leader_calibrate(r->leader, q, o->calibrate_leader))) return rc;
    printf("teleop: wrote the leader's calibration to %s (use it with --leader-config)\n",
           o->calibrate_leader);
    return 1; /* done: not an error */
  }
  if (drv->caps & CAP_INPUT_SCRIPTED) { /* the scripted operator's hands on the device's virtual pad */
    if (!o->robot && r->spec->has_reward == 0)
      return tk_error(TK_EINVAL, "the scripted operator needs a built-in task, not a free scene");
    /* on a robot it moves the simulated leader arm by hand instead of acting on a task */
    if (!o->robot && (rc = cap_expert_make(r->model, o->noise, o->seed, &r->expert))) return rc;
  }
  if ((rc = cap_input_open(drv->name, o->device_arg, &r->in))) return rc;
  r->con.vpad = r->in->vpad;
  if (o->record_input && (rc = cap_input_record_open(o->record_input, o->device, &r->rec))) return rc;
  /* buffers for the current observation and state */
  size_t total = 0;
  for (int k = 0; k < r->spec->nobs; k++) {
    const capObsSpec *c = &r->spec->obs[k];
    size_t n = c->dtype == CAP_F64 ? 8 : 1;
    for (int i = 0; i < c->rank; i++)
      n *= (size_t)c->shape[i];
    r->obs_bytes[k] = n;
    total += (n + 63) & ~(size_t)63;
  }
  r->obs_mem = aligned_alloc(64, total + 64);
  r->state = malloc(sizeof(double) * (size_t)(r->spec->state_dim + 1));
  if (!r->obs_mem || !r->state) return tk_error(TK_ENOMEM, "out of memory");
  uint8_t *p = r->obs_mem;
  for (int k = 0; k < r->spec->nobs; k++) { /* the window's camera strip: sized for every camera, once */
    const capObsSpec *c = &r->spec->obs[k];
    if (c->dtype != CAP_U8 || o->headless) continue;
    const int z = c->shape[0] <= 128 && c->shape[1] <= 128 ? 2 : 1;
    r->preview_w += (r->preview_w ? 4 : 0) + c->shape[1] * z;
    r->preview_h = TK_MAX(r->preview_h, c->shape[0] * z);
  }
  if (r->preview_w > 0 && !(r->preview = malloc((size_t)r->preview_w * (size_t)r->preview_h * 3 + 12)))
    return tk_error(TK_ENOMEM, "out of memory");
  for (int k = 0; k < r->spec->nobs; k++) {
    r->obs[k] = p;
    p += (r->obs_bytes[k] + 63) & ~(size_t)63;
  }
  if (!o->headless) {
    char title[160];
    snprintf(title, sizeof title, "demokit teleop: %s -> %s", r->spec->task, o->out);
    rc = cap_window_open(cap_model_mujoco(r->model), o->win_width > 0 ? o->win_width : 1280,
                         o->win_height > 0 ? o->win_height : 720, title, &r->win);
    if (rc) return tk_error_wrap(rc, "console window (run with --headless where there is no display)");
    /* the operator sees the scene the way the default mapping assumes: through the task's camera */
    if (r->spec->view_camera[0]) cap_window_camera(r->win, r->spec->view_camera);
  }
  if (o->policy && (rc = policy_open(r))) return rc; /* before the dataset: a refusal writes nothing */
  if ((rc = writer_open(o, r->model, r, &r->w))) return rc;
  r->next_seed = o->seed + (uint64_t)ds_writer_next_index(r->w); /* appending continues the seeds too */
  return reset_scene(r);
}

int tel_run(const telOpts *o, telStats *stats) {
  telStats dummy;
  if (!stats) stats = &dummy;
  memset(stats, 0, sizeof *stats);
  if (!o->out && !o->calibrate_leader) return tk_error(TK_EINVAL, "no output dataset (--out FILE.h5)");
  telRun r;
  memset(&r, 0, sizeof r);
  r.o = o;
  r.st = stats;
  r.con.o = o;
  r.last_saved = -1;
  int rc = setup(&r);
  if (rc == 1) { /* --calibrate-leader finished */
    rc = 0;
    goto done;
  }
  if (rc) goto done;
  int64_t cap_ticks = o->max_ticks;
  double *late = malloc(sizeof(double) * 100000);
  int64_t nlate = 0;
  tkPacer pacer;
  tk_pacer_start(&pacer, o->fast ? 0 : r.spec->control_hz);
  int episodes_done = 0;
  /* a device without Start (a two-button SpaceMouse) starts an episode with A */
  const unsigned start_button = (r.in->buttons & CAP_BTN_START) ? CAP_BTN_START : CAP_BTN_A;
  r.con.state = TEL_IDLE;
  while (r.con.state != TEL_QUIT && !rc) {
    if (cap_ticks > 0 && r.con.ticks >= cap_ticks) break;
    if (o->on_tick) o->on_tick(&r.con, o->user);
    SDL_Event ev;
    while (SDL_PollEvent(&ev)) {
      if (ev.type == SDL_QUIT) r.con.state = TEL_QUIT;
      if (r.win && cap_window_events(r.win, &ev)) r.con.state = TEL_QUIT;
    }
    if (r.con.vpad) scripted_hands(&r);
    capInputState in;
    int connected;
    if ((rc = cap_input_poll(r.in, &in, &connected))) break;
    if (r.rec && (rc = cap_input_record(r.rec, &in, connected))) break;
    unsigned pressed = in.pad.buttons & ~r.prev_buttons;
    r.prev_buttons = in.pad.buttons;
    double a[CAP_MAX_ACT] = {0};
    if (connected) {
      if (in.six_dof) {
        if (pressed & CAP_BTN_RB) r.gripper = -r.gripper; /* a six-dof device's button toggles */
        six_dof_action(&in, &r.gripper, a);
      } else {
        cap_pad_to_action(&r.map, &in.pad, &r.gripper, a);
      }
    } else {
      a[r.spec->action_dim - 1] = r.gripper; /* hold: no motion, the gripper as it was */
    }
    if (cap_model_is_robot(r.model) && !r.leader) jog_action(&r, &in, connected, a);
    if (r.leader) { /* the leader arm's pose is the follower's target; buttons come from the device */
      if (!connected || cap_leader_action(r.leader, a)) {
        if (connected && r.con.state == TEL_RECORDING && !o->quiet)
          printf("leader arm: %s: holding\n", tk_errmsg());
        connected = 0; /* hold: the follower keeps its targets */
      }
      if (!connected) cap_env_hold_action(r.env, a);
    }
    if (r.pol && r.con.state == TEL_RECORDING && connected) {
      /* intervention mode: the policy drives unless the operator holds the takeover control
       * (left trigger on a pad, any motion on a six-dof device or the keyboard) */
      r.takeover = operator_drives(&r, &in, a);
      if (r.takeover && r.pol_actor) /* its chunks (or plan) were about another path */
        bc_actor_reset(r.pol_actor, r.ep_seed + (uint64_t)r.con.ep_steps);
      if (!r.takeover) {
        if ((rc = policy_action(&r, a))) break;
        r.gripper = a[r.spec->action_dim - 1] > 0 ? 1 : -1; /* a takeover starts from the policy's grip */
      }
    }
    memcpy(r.last_action, a, sizeof r.last_action);
    if (pressed) r.message[0] = 0; /* a new command: the old message has been read */
    /* the state machine */
    telState s = r.con.state;
    if (s == TEL_RECORDING && !connected) {
      rc = record_step(&r, a,
                       r.pol != NULL); /* this tick holds still; then the episode waits for the device */
      if (!rc && r.con.state == TEL_RECORDING) r.con.state = TEL_UNPLUGGED;
      if (!o->quiet) printf("device unplugged: holding, episode paused\n");
      fflush(stdout);
    } else if (s == TEL_UNPLUGGED) {
      if (connected) {
        r.con.state = TEL_RECORDING;
        if (!o->quiet) printf("device back: resuming\n");
        fflush(stdout);
      } else if (pressed & CAP_BTN_BACK) { /* a leader arm can vanish while the pad still works */
        rc = end_episode(&r, DS_FAILURE, "quit");
        r.con.state = TEL_QUIT;
      } else if (pressed & CAP_BTN_B) {
        rc = end_episode(&r, DS_FAILURE, "operator");
      } else if (pressed & CAP_BTN_X) {
        rc = end_episode(&r, DS_DISCARD, "operator");
      }
    } else if (pressed & CAP_BTN_BACK) {
      if (s == TEL_RECORDING || s == TEL_PAUSED) rc = end_episode(&r, DS_FAILURE, "quit");
      r.con.state = TEL_QUIT;
    } else if (s == TEL_IDLE) {
      if (pressed & CAP_BTN_Y)
        rc = reset_scene(&r);
      else if (pressed & start_button) {
        if (r.need_reset) rc = reset_scene(&r);
        if (!rc) rc = begin_episode(&r);
      }
    } else if (s == TEL_PAUSED) {
      if (pressed & CAP_BTN_START)
        r.con.state = TEL_RECORDING;
      else if (pressed & CAP_BTN_A)
        rc = end_episode(&r, DS_SUCCESS, "operator");
      else if (pressed & CAP_BTN_B)
        rc = end_episode(&r, DS_FAILURE, "operator");
      else if (pressed & (CAP_BTN_X | CAP_BTN_Y))
        rc = end_episode(&r, DS_DISCARD, "operator");
    } else if (s == TEL_RECORDING) {
      if (pressed & CAP_BTN_A)
        rc = end_episode(&r, DS_SUCCESS, "operator");
      else if (pressed & CAP_BTN_B)
        rc = end_episode(&r, DS_FAILURE, "operator");
      else if (pressed & (CAP_BTN_X | CAP_BTN_Y))
        rc = end_episode(&r, DS_DISCARD, "operator");
      else if (pressed & CAP_BTN_START)
        r.con.state = TEL_PAUSED;
      else
        rc = record_step(&r, a, r.pol && r.takeover);
    }
    if (s != TEL_IDLE && r.con.state == TEL_IDLE) {
      episodes_done = stats->success + stats->failure;
      if (o->episodes > 0 && episodes_done >= o->episodes) r.con.state = TEL_QUIT;
    }
    r.con.ticks++;
    /* the window is drawn when the tick has room for it, so the control loop keeps its rate;
     * on a machine without a GPU that is not every tick, but at least every 5th (4 fps at
     * 20 Hz) so the operator always sees the scene */
    if (r.win && !rc) {
      double slack = (double)(pacer.next_ns - tk_now_ns()) * 1e-9;
      if (slack > 1.3 * r.draw_cost || r.con.ticks - r.last_draw_tick >= 5)
        rc = draw(&r, tk_pacer_rate(&pacer), r.ep_missed);
    }
    int missed = tk_pacer_wait(&pacer);
    if (missed && (r.con.state == TEL_RECORDING)) r.ep_missed++;
    if (late && nlate < 100000) late[nlate++] = (double)pacer.last_late_ns * 1e-6;
  }
  stats->ticks = r.con.ticks;
  stats->missed = pacer.missed;
  stats->rate = tk_pacer_rate(&pacer);
  if (late && nlate) {
    qsort(late, (size_t)nlate, sizeof(double), cmp_d);
    stats->jitter_p99_ms = late[(int64_t)(0.99 * (double)(nlate - 1))];
  }
  free(late);
done:;
  if (r.win && o->screenshot && !rc) rc = cap_window_save_png(r.win, o->screenshot);
  char saved[TK_ERRMSG_MAX];
  snprintf(saved, sizeof saved, "%s", tk_errmsg());
  int crc = ds_writer_close(r.w); /* publishes; an open episode (none when quitting normally) is dropped */
  if (!rc && crc)
    rc = crc;
  else if (rc)
    tk_error(rc, "%s", saved);
  if (r.rec) {
    int rrc = cap_input_record_close(r.rec);
    if (!rc) rc = rrc;
  }
  cap_window_close(r.win);
  cap_input_close(r.in); /* and the scripted operator's virtual pad with it */
  cap_expert_free(r.expert);
  cap_leader_close(r.leader);
  cap_env_free(r.env);
  cap_model_free(r.model);
  bc_policy_free(r.pol);
  bc_actor_free(r.pol_actor);
  free(r.obs_mem);
  free(r.preview);
  free(r.state);
  cJSON_free(r.ep_meta);
  return rc;
}
