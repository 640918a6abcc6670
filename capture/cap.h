/* capture/cap.h -- environments behind one interface (prefix cap_): built-in MuJoCo
 * manipulation tasks, a user's own MJCF scene, and (later) USB robots; cameras; scripted
 * operators that stand in for a human.
 *
 * One capModel per process (MuJoCo's mj_loadXML takes a global lock and calls srand: load
 * once), shared read-only by any number of capEnv, each with its own simulation data, safe
 * to step from different threads. Nothing here knows about storage.
 */
#ifndef CAP_H
#define CAP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CAP_NAME_MAX 64
#define CAP_MAX_OBS 16
#define CAP_MAX_CAMS 4
#define CAP_MAX_ACT 32
#define CAP_DEFAULT_TASK "lift" /* the built-in task when none is named */

typedef struct capModel capModel;
typedef struct capEnv capEnv;

typedef enum { CAP_F64 = 0, CAP_U8 = 1 } capDtype;

typedef enum {
  CAP_ACT_EEF = 0,       /* 7: end-effector dx dy dz (world), drx dry drz, gripper (-1 open .. 1 closed) */
  CAP_ACT_JOINT = 1,     /* njoints + 1: joint position deltas, gripper */
  CAP_ACT_JOINT_POS = 2, /* njoints: absolute joint targets, -1 .. 1 across each joint's limits (robots) */
} capActionMode;

typedef struct {
  char name[CAP_NAME_MAX]; /* camera in the MJCF: agentview, eye_in_hand */
  int width, height;
} capCamera;

/* The sizes a camera may render at (cap_model_load refuses others). */
#define CAP_CAM_MIN_SIZE 8
#define CAP_CAM_MAX_WIDTH 640
#define CAP_CAM_MAX_HEIGHT 480

/* A camera as the command lines write it, "NAME:WxH" (agentview:84x84), each number whole through
 * tk_opt_int; opt names the option in the message ("--camera agentview:84: expected NAME:WxH"). The
 * name is not looked up and the size not range-checked here: cap_model_load does both. */
int cap_camera_parse(const char *opt, const char *s, capCamera *c);
/* The observation key a camera's frames get: "agentview" -> "agentview_image", "eye_in_hand" ->
 * "robot0_eye_in_hand_image" (robomimic's names). TK_ERANGE when it does not fit n bytes. */
int cap_camera_key(const char *camera, char *key, size_t n);

typedef struct {
  const char *task;       /* a built-in task (cap_task_names()); NULL when model_path is given */
  const char *model_path; /* a user's MJCF: free play over its actuators, no reward */
  double control_hz;      /* default 20 */
  capActionMode action_mode;
  int sparse_reward; /* 0: dense shaped reward (default), 1: 1 on success else 0 */
  int horizon;       /* steps; 0: the task's default */
  int ncams;         /* cameras rendered into observations (off unless asked for) */
  capCamera cams[CAP_MAX_CAMS];
  /* A servo-bus robot instead of a simulation: "dxl:/dev/ttyUSB0" (Dynamixel Protocol 2.0),
   * "fts:/dev/ttyUSB0" (Feetech STS), "simbus" / "simbus:fts" (a simulated chain of servos on a
   * pty, run by this process). robot_config: its joints, calibration, limits and safety (JSON,
   * see capture/README.md; optional for simbus). control_hz then comes from the file (50). */
  const char *robot;
  const char *robot_config;
} capOpts;

typedef struct {
  char name[CAP_NAME_MAX]; /* robomimic names: robot0_eef_pos, object, agentview_image, ... */
  capDtype dtype;          /* CAP_F64 low-dim, CAP_U8 images (H,W,3) */
  int rank;
  int shape[3];
} capObsSpec;

typedef struct {
  char task[CAP_NAME_MAX]; /* task name, or "free" for a user's scene */
  int action_dim;
  double action_low, action_high; /* -1, 1 */
  capActionMode action_mode;
  double control_hz;
  double physics_dt; /* seconds per physics step (0.002 for built-in tasks) */
  int horizon;
  int state_dim; /* flat float64 state (get/set) */
  int has_reward;
  char view_camera[CAP_NAME_MAX]; /* the camera the operator watches (the pad mapping assumes it); "" none */
  int nobs;
  capObsSpec obs[CAP_MAX_OBS];
} capSpec;

/* One observation: pointers into the env's own buffers, valid until its next step/reset. */
typedef struct {
  int n;
  const void *v[CAP_MAX_OBS]; /* per capSpec.obs, double* or uint8_t* */
} capObs;

enum {                         /* capStep.flags */
       CAP_FLAG_CLIPPED = 1,   /* an action value was outside [-1,1] and was clipped */
       CAP_FLAG_NONFINITE = 2, /* an action value was NaN/Inf and was replaced by 0 */
       CAP_FLAG_UNSTABLE = 4,  /* the simulator diverged (NaN state or MuJoCo warning): episode over */
       CAP_FLAG_FAULT = 8, /* robot: bus error, timeout, unplug or servo alarm: now in the safe state, episode
                              over (cap_env_fault says why; reset reconnects) */
       CAP_FLAG_LIMITED = 16, /* robot: a target was cut to the joint limits or the maximum step */
};

typedef struct {
  capObs obs;
  double reward;
  int success;    /* the task's criterion holds now */
  int terminated; /* success or instability: the episode cannot continue */
  int truncated;  /* the horizon was reached */
  int flags;      /* CAP_FLAG_* for this step */
  /* The action the environment executed (action_dim, normalized as the input): non-finite values
   * replaced and everything clipped to [-1,1]; on a robot, targets cut to the joint limits and the
   * maximum step (CAP_FLAG_LIMITED), a NaN meaning "stay". What a dataset records. */
  double action[CAP_MAX_ACT];
} capStep;

void cap_opts_default(capOpts *o);
/* Load the task's model (or the user's MJCF); errors name the file and give MuJoCo's message;
 * an unknown task lists the known ones. Thread-safe. */
int cap_model_load(const capOpts *o, capModel **out);
void cap_model_free(capModel *m);
const capSpec *cap_spec(const capModel *m);
const char *cap_task_names(void);     /* the built-in tasks: "reach, push, lift, ..." */
int cap_task_known(const char *name); /* 1 when name is one of them */
/* The MJCF text the model came from (for the dataset's model_file attr). */
const char *cap_model_xml(const capModel *m);

int cap_env_make(const capModel *m, capEnv **out);
void cap_env_free(capEnv *e);
const capModel *cap_env_model(const capEnv *e);
/* Reset with a seed: object and goal placement come from it. */
int cap_env_reset(capEnv *e, uint64_t seed, capObs *obs);
/* Step with an action in [-1,1]^action_dim (clipped / NaN replaced, counted in flags). */
int cap_env_step(capEnv *e, const double *action, capStep *out);
int64_t cap_env_steps(const capEnv *e);           /* steps since reset */
int64_t cap_env_action_warnings(const capEnv *e); /* clipped or non-finite actions since reset */
/* Full state as one flat float64 vector (simulation + controller + task): setting a state
 * reproduces the observation and the future exactly. */
int cap_env_get_state(const capEnv *e, double *state);
int cap_env_set_state(capEnv *e, const double *state, capObs *obs);
/* Current observation again (recomputed, cameras rendered). */
int cap_env_observe(capEnv *e, capObs *obs);
/* Render a named camera to RGB (rows top-down), no display needed. */
int cap_env_render(capEnv *e, const char *camera, int width, int height, uint8_t *rgb);
/* The simulator behind a model / an environment, for windows that draw the scene: a
 * `const mjModel *` and an `mjData *` (opaque here so this header needs no MuJoCo). */
const void *cap_model_mujoco(const capModel *m);
void *cap_env_mujoco_data(capEnv *e);

/* Task geometry for experts and tests: end effector, object, goal (world, m). */
void cap_env_eef_pos(const capEnv *e, double pos[3]);
void cap_env_eef_quat(const capEnv *e, double quat[4]);
int cap_env_object_pos(const capEnv *e, double pos[3]); /* TK_ENOTFOUND without an object */
void cap_env_goal_pos(const capEnv *e, double pos[3]);
double cap_env_gripper(const capEnv *e); /* 0 open .. 1 closed (finger opening) */

/* ---- robots (cap_robot.c) ----
 * Safety, always on: every command is clipped to the joint limits and to a maximum step from the
 * last one; a watchdog thread holds position when commands stop arriving; a failed transaction
 * (timeout, corrupt answer, unplugged adapter) or a servo alarm brings the arm to the safe state
 * (hold or torque off, from the config) before the step returns, and the step says CAP_FLAG_FAULT. */
int cap_model_is_robot(const capModel *m);
const char *cap_env_fault(const capEnv *e);      /* NULL, or why the robot is in its safe state */
int cap_env_torque(capEnv *e, int on);           /* robots: torque on (holding) / off (limp) */
int64_t cap_env_watchdog_holds(const capEnv *e); /* times the watchdog held position */
struct srvSim *cap_env_robot_sim(capEnv *e);     /* the simulated bus of "simbus" (NULL otherwise) */
/* Joint positions in radians, the robot's order (robots; the last observation). */
int cap_env_joint_pos(const capEnv *e, double *rad);
/* The action that keeps the current targets (what "no input" means for absolute targets). */
int cap_env_hold_action(const capEnv *e, double *action);
/* A robot's joints: names and limits (rad); returns the count (0 for a simulated task). */
int cap_model_joints(const capModel *m, const char **names, double *lo, double *hi);

/* A leader arm as an input device (ALOHA / GELLO): its servos are limp and moved by hand; its
 * joint angles, through its calibration, become the follower's targets. spec as capOpts.robot;
 * config: the leader's JSON (joints by follower order: id, offset, direction; NULL for simbus:
 * the follower's ids and calibration). */
typedef struct capLeader capLeader;
int cap_leader_open(const char *spec, const char *config, const capModel *follower, capLeader **out);
void cap_leader_close(capLeader *l);
/* The leader's joint angles in the follower's frame (radians). */
int cap_leader_read(capLeader *l, double *rad);
/* The follower's action for the leader's pose (CAP_ACT_JOINT_POS, clipped to [-1,1]). */
int cap_leader_action(capLeader *l, double *action);
/* Calibration: with both arms held in the same pose, set the leader's offsets so that it reads
 * the follower's angles, and write the leader's JSON to out_path (durably). */
int cap_leader_calibrate(capLeader *l, const double *follower_rad, const char *out_path);
struct srvSim *cap_leader_sim(capLeader *l); /* the simulated leader of "simbus" (NULL otherwise) */
/* A hand on the simulated leader: its joints to these angles (the follower's frame, radians), through
 * the leader's own ids and calibration. TK_EINVAL for a real leader. */
int cap_leader_sim_pose(capLeader *l, const double *rad);
const char *cap_leader_desc(const capLeader *l);

/* ---- scripted operators ---- */
/* A scripted expert per task, stateful across one episode. noise 0: clean; 0.5: human-like
 * (hesitation, overshoot, a wrong first grasp, occasional failure). */
typedef struct capExpert capExpert;
int cap_expert_make(const capModel *m, double noise, uint64_t seed, capExpert **out);
void cap_expert_free(capExpert *x);
void cap_expert_reset(capExpert *x, uint64_t seed);
/* Direct-action form (for RL tests and pipelines). */
int cap_expert_act(capExpert *x, const capEnv *e, double *action);

/* ---- gamepad mapping (shared by real pads, virtual pads and the scripted operator) ---- */
enum { CAP_AX_LX = 0, CAP_AX_LY, CAP_AX_RX, CAP_AX_RY, CAP_AX_LT, CAP_AX_RT, CAP_NAXES };
enum {                         /* capPadState.buttons bits, named after SDL's game-controller buttons */
       CAP_BTN_A = 1 << 0,     /* end as success */
       CAP_BTN_B = 1 << 1,     /* end as failure */
       CAP_BTN_X = 1 << 2,     /* discard and re-record */
       CAP_BTN_Y = 1 << 3,     /* reset */
       CAP_BTN_BACK = 1 << 4,  /* quit */
       CAP_BTN_START = 1 << 6, /* start / pause */
       CAP_BTN_LB = 1 << 9,    /* gripper open */
       CAP_BTN_RB = 1 << 10,   /* gripper close */
};

/* What the operator's hands do this tick. Axes in [-1,1] with up = +1 (SDL's y axes are
 * inverted before they get here), triggers in [0,1]. */
typedef struct {
  double axis[CAP_NAXES];
  unsigned buttons;
} capPadState;

/* Which axis drives each end-effector action component, with sign, and the feel. */
typedef struct {
  int src[6]; /* per action component dx dy dz drx dry drz: a CAP_AX_* or -1 */
  double sign[6];
  double deadzone;    /* fraction of the stick's travel ignored around the centre (0.1) */
  double sensitivity; /* action per unit of stick past the dead zone (1.0) */
} capPadMap;

/* Default layout, as the teleop HUD shows it: the agentview camera looks at the robot, so
 * left stick right = world +y (image right), left stick up = away from the camera (-x);
 * right stick up = +z, right stick right = yaw clockwise seen from above; bumpers latch the
 * gripper (RB close, LB open); A success, B failure, X discard, Y reset, Start pause. */
void cap_pad_map_default(capPadMap *m);
/* Turn pad state into a 7-D end-effector action. *gripper carries the latched gripper
 * command between calls (-1 open, 1 closed); start it at -1. */
void cap_pad_to_action(const capPadMap *m, const capPadState *p, double *gripper, double *action);

/* ---- input devices: one table of drivers (as SDL's joystick drivers) ----
 * Every driver is a row of cap_input_drivers, built into this library: a program that opens
 * input has them all, with nothing to register. Adding a device is a new file with its
 * capInputDriver and one row in the table (cap_input.c). */
/* What a device says this tick. Pads fill pad (axes and buttons); six-degree-of-freedom
 * devices (SpaceMouse) fill motion and pad.buttons. */
typedef struct {
  int six_dof;      /* 1: motion[] is the device's reading */
  capPadState pad;  /* axes (pads) and buttons (every device, CAP_BTN_* meanings) */
  double motion[6]; /* six-dof: x y z (translation) and rx ry rz (rotation), each in [-1,1],
                       the device's own frame: x right, y forward (away from the user), z up */
} capInputState;

enum {                               /* capInputDriver.caps: what a program needs to know about a device */
       CAP_INPUT_SIX_DOF = 1 << 0,   /* reports motion[] (SpaceMouse, keys); else a pad's axes */
       CAP_INPUT_WINDOW = 1 << 1,    /* read through the program's own window (SDL video): not headless */
       CAP_INPUT_UNPACED = 1 << 2,   /* no person behind it: may run unpaced (teleop --fast) */
       CAP_INPUT_SCRIPTED = 1 << 3,  /* the program's scripted operator moves it (capInput.vpad) */
       CAP_INPUT_RECORDING = 1 << 4, /* plays back a recording (cap_input_record_open's file) */
};

typedef struct capInput capInput;
typedef struct capVpad capVpad;
typedef struct {
  const char *name;    /* "gamepad", "keyboard", "spacemouse", "scripted", "replay" */
  const char *summary; /* one line for --help: what it is and what its argument is */
  unsigned caps;       /* CAP_INPUT_* */
  unsigned buttons;    /* the CAP_BTN_* meanings it can give (a device without Start starts with A) */
  /* Its controls, one binding per line, "control\tmeaning" (the HUD's legend format). The
   * string may be rebuilt on each call (key names of the current layout): call from the
   * thread that runs SDL, and copy it before the next call. */
  const char *(*legend)(void);
  /* arg: backend-specific (a device index, a file). Errors name the device. */
  int (*open)(capInput *in, const char *arg);
  /* The latest (latched) state; *connected becomes 0 while the device is unplugged, and
   * the state is then all zero. Never blocks. */
  int (*poll)(capInput *in, capInputState *st, int *connected);
  void (*rumble)(capInput *in, double strength, int ms); /* may be NULL */
  void (*close)(capInput *in);
} capInputDriver;

struct capInput {
  const capInputDriver *drv;
  void *impl;       /* the backend's own state */
  char desc[128];   /* what the HUD shows: "Xbox Controller", "SpaceMouse Compact", ... */
  capVpad *vpad;    /* CAP_INPUT_SCRIPTED: the virtual pad the program's operator moves (the driver's) */
  unsigned buttons; /* the CAP_BTN_* it can give: the row's, or for a replay the recorded device's */
};

/* The drivers, in the order --help lists them; NULL-terminated. */
extern const capInputDriver *const cap_input_drivers[];
/* The driver of that name, or NULL. */
const capInputDriver *cap_input_driver(const char *name);
/* "gamepad, keyboard, spacemouse, scripted, replay": the names of the drivers whose caps include
 * all of want (0: every driver). */
const char *cap_input_names(unsigned want);

/* Open a device by name (arg as the backend takes it). Unknown names list the known ones.
 * SDL must be initialized as the device needs it: the game-controller subsystem for pads
 * (and the scripted operator's virtual pad), video for CAP_INPUT_WINDOW devices. */
int cap_input_open(const char *name, const char *arg, capInput **out);
int cap_input_poll(capInput *in, capInputState *st, int *connected);
void cap_input_rumble(capInput *in, double strength, int ms);
void cap_input_close(capInput *in);

/* A virtual game controller (an SDL virtual joystick): what the scripted operator's hands
 * do goes in here and comes out of the "gamepad" backend exactly as a real pad's would. */
int cap_vpad_make(capVpad **out);
int cap_vpad_set(capVpad *v, const capPadState *p);
int cap_vpad_unplug(capVpad *v); /* as if the cable were pulled */
int cap_vpad_plug(capVpad *v);
int cap_vpad_attached(const capVpad *v);
int cap_vpad_rumbles(const capVpad *v); /* rumble requests the pad received */
void cap_vpad_free(capVpad *v);

/* Raw input recording (replay it with the "replay" device). */
typedef struct capInputRecorder capInputRecorder;
int cap_input_record_open(const char *path, const char *device, capInputRecorder **out);
int cap_input_record(capInputRecorder *r, const capInputState *st, int connected);
int cap_input_record_close(capInputRecorder *r);

/* The scripted operator as a person with a pad: the stick deflections and buttons that,
 * through the map, produce what cap_expert_act would; A when the task has held for a
 * moment, B when this operator gives up. */
int cap_expert_pad(capExpert *x, const capEnv *e, const capPadMap *m, capPadState *p);
/* Whether the scripted operator would end the episode now (success held for a few steps, or it
 * gives up); *success says which. Call once per step (it counts how long success has held). */
int cap_expert_wants_end(capExpert *x, const capEnv *e, int *success);

/* ---- the window (cap_window.c): the teleop console's and the viewer's ----
 * SDL2 + OpenGL, the MuJoCo scene as the operator sees it, and the HUD drawn over it with
 * MuJoCo's own 2D calls. The caller owns SDL: it calls SDL_Init(SDL_INIT_VIDEO | ...) before
 * cap_window_open and SDL_Quit after cap_window_close, and it owns the event loop
 * (SDL_PollEvent), handing each event to cap_window_events. All calls on the thread that
 * opened the window (SDL/X11).
 *
 * GL. The window's context is created through EGL (SDL_HINT_VIDEO_X11_FORCE_EGL) so that the
 * window and the offscreen camera renderer (cap_render.c, EGL surfaceless) use one GL API and
 * one set of MuJoCo GL entry points (see cap_window.c). Every call makes the window's context
 * current on entry and releases it before returning, so offscreen rendering may run between
 * calls on the same thread. The MuJoCo and SDL types are declared, not included: pass a
 * `const mjModel *`, an `mjData *`, an `SDL_Event *` as they are. */
struct mjModel_;
struct mjData_;
union SDL_Event;
struct SDL_Window;

typedef struct capWindow capWindow;

enum {                    /* capHud.tone, capHud.message_tone: colour of the state banner / message */
       CAP_TONE_IDLE = 0, /* grey: idle, waiting */
       CAP_TONE_REC,      /* red: recording */
       CAP_TONE_WARN,     /* amber: paused, device unplugged, missed deadlines */
       CAP_TONE_GOOD,     /* green: ended as success, saved */
       CAP_TONE_BAD,      /* dark red: ended as failure, errors */
       CAP_TONE_INFO,     /* blue: discarded, resetting, intervention */
};

#define CAP_HUD_MAX_BARS 16

/* What the HUD shows; every pointer may be NULL (the field is then not drawn). Strings are
 * copied at cap_window_draw, so they may change afterwards. */
typedef struct {
  const char *state;                     /* "idle", "recording", "paused: pad unplugged", "ended: success" */
  int tone;                              /* CAP_TONE_* for the state banner */
  int n_success, n_failure, n_discarded; /* episodes this session */
  int episode;                           /* number of the current episode (0: none yet) */
  double episode_time;                   /* s since the episode started */
  double rate_hz;                        /* achieved control rate, Hz */
  double target_hz;                      /* requested rate, Hz (0: not shown) */
  int64_t missed;                        /* missed deadlines this episode */
  const char *device;                    /* "Xbox Controller", "keyboard", "SpaceMouse Compact" */
  const double *action;                  /* action_dim values in [-1,1], drawn as bars */
  int action_dim;                        /* at most CAP_HUD_MAX_BARS are drawn */
  const char *const *action_names;       /* NULL: "dx dy dz drx dry drz grip" (7) or a0.. */
  /* Key/button legend, one binding per line: "key\tmeaning\n..." (a line without a tab is
   * drawn across both columns). At most about 490 characters per column are shown. */
  const char *legend;
  const char *message; /* one line at the bottom: errors, "saved demo_12" */
  int message_tone;    /* CAP_TONE_* */
  /* An RGB image (rows top-down, strip_w x strip_h) drawn across the bottom of the window, under
   * the rest of the HUD (the viewer's plots); copied at cap_window_draw. NULL: none. */
  const uint8_t *strip_rgb;
  int strip_w, strip_h;
} capHud;

/* Open a width x height window titled title, with an OpenGL context and MuJoCo's rendering
 * context for m (m must outlive the window). The view starts as MuJoCo's free camera on the
 * whole model. Errors: SDL video not initialized, no GL (message names the GL API tried). */
int cap_window_open(const struct mjModel_ *m, int width, int height, const char *title, capWindow **out);

/* Look through the model camera `name` (NULL: the free camera). A mouse drag on a fixed
 * camera continues from its view with the free camera. TK_ENOTFOUND for an unknown name. */
int cap_window_camera(capWindow *w, const char *name);

/* One event from the caller's SDL_PollEvent loop: left drag orbits, right drag pans
 * (Shift: in the horizontal plane), wheel zooms; events of other windows are ignored.
 * Returns 1 when the user closed the window (or SDL_QUIT), else 0. NULL-safe. */
int cap_window_events(capWindow *w, const union SDL_Event *ev);

/* Draw the scene of (m, d) (m: the model the window was opened with) and the HUD (NULL:
 * no HUD), then swap buffers. Never waits for vertical sync. */
int cap_window_draw(capWindow *w, const struct mjModel_ *m, struct mjData_ *d, const capHud *hud);

/* The last drawn frame (scene and HUD as drawn; re-rendered on demand, so it costs nothing
 * per frame), RGB with rows top-down, into rgb (cap bytes). rgb NULL: only the size.
 * TK_ERANGE if cap < width*height*3, TK_EINVAL before the first draw. */
int cap_window_screenshot(capWindow *w, uint8_t *rgb, size_t cap, int *width, int *height);
/* The last frame as a PNG file (written to "<path>.tmp", then renamed). */
int cap_window_save_png(capWindow *w, const char *path);

/* Size of the drawable in pixels (may differ from the window size on HiDPI screens). */
void cap_window_size(const capWindow *w, int *width, int *height);

/* "egl" or "glx": the API the window's context came from (for logs and tests). */
const char *cap_window_gl_api(const capWindow *w);

struct SDL_Window *cap_window_sdl(capWindow *w); /* for SDL calls the caller needs (title, focus) */

void cap_window_close(capWindow *w); /* NULL-safe; does not call SDL_Quit */

#ifdef __cplusplus
}
#endif
#endif
