/* teleop/tel.h -- the teleop console (prefix tel_): input -> action mapping, the paced loop,
 * the episode state machine, recording through the crash-safe writer, the HUD. */
#ifndef TEL_H
#define TEL_H

#include <stdint.h>

#include "cap.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  TEL_IDLE = 0,  /* waiting for Start */
  TEL_RECORDING, /* stepping and recording */
  TEL_PAUSED,    /* Start pressed while recording: the scene and the clock of the demo wait */
  TEL_UNPLUGGED, /* the device went away mid-episode: holding, waiting for it to come back */
  TEL_QUIT,
} telState;

typedef struct telConsole telConsole;

typedef struct {
  const char *task;          /* built-in task, or NULL with model_path */
  const char *model_path;    /* a user's MJCF (free play) */
  const char *out;           /* dataset file (appended to if it exists) */
  const char *device;        /* a row of cap_input_drivers: gamepad, keyboard, spacemouse, scripted, replay */
  const char *device_arg;    /* backend argument (pad index, VID:PID, input file) */
  const char *operator_name; /* stored per demo; default $USER */
  const char *mappings;      /* gamecontrollerdb.txt for SDL */
  const char *map_json;      /* remapping of pad axes (JSON) */
  const char *record_input;  /* write raw device input here (replay with --device replay) */
  int episodes; /* stop after this many finished (kept or discarded not counted) demos; 0: until quit */
  int headless;
  int ncams;
  capCamera cams[CAP_MAX_CAMS];
  double rate; /* control rate, Hz (default: the task's 20 Hz) */
  int fast;    /* devices with CAP_INPUT_UNPACED (scripted, replay): ticks back to back (data generation) */
  const char
      *policy; /* intervention mode: this policy file drives; the operator holds a button to take over */
  int takeover_after; /* scripted operator with a policy: take over after this many steps without success
                         (0: 40% of the horizon) */
  /* a servo-bus robot instead of a simulated task (capOpts.robot), driven by a leader arm */
  const char *robot;         /* dxl:/dev/ttyUSB0, fts:/dev/ttyUSB0, simbus */
  const char *robot_config;  /* the follower's joints, calibration, limits, safety (JSON) */
  const char *leader;        /* the leader arm's port, same forms */
  const char *leader_config; /* the leader's ids and calibration (JSON; simbus: optional) */
  const char
      *calibrate_leader;     /* write the leader's calibration here (both arms in the same pose), then stop */
  uint64_t seed;             /* first episode's seed; each reset takes the next */
  double noise;              /* scripted operator */
  int auto_end;              /* end as success once the task's success has held this many steps (0: off) */
  int max_steps;             /* end an episode at this length (0: the task's horizon) */
  int64_t max_ticks;         /* stop the loop after this many ticks (0: no limit) */
  int image_gzip;            /* camera frames in the dataset, gzip level (default 4) */
  int quiet;                 /* no per-episode lines on stdout */
  const char *screenshot;    /* save the window's last frame here (PNG) when the console ends */
  int win_width, win_height; /* window size (default 1280x720) */
  /* called once per loop tick, before input is read (tests drive unplugging from here) */
  void (*on_tick)(telConsole *c, void *user);
  void *user;
} telOpts;

typedef struct {
  int success, failure, discarded; /* episodes ended each way */
  int64_t committed;               /* episodes durable on disk */
  int64_t ticks;                   /* loop ticks */
  int64_t missed;                  /* missed deadlines over the run */
  double rate;                     /* achieved loop rate, Hz */
  double jitter_p99_ms;            /* 99th percentile of wake-up lateness */
  int64_t steps;                   /* recorded steps */
  int64_t intervention_steps;      /* of them, steps the operator drove while a policy was loaded */
} telStats;

void tel_opts_default(telOpts *o);
int tel_run(const telOpts *o, telStats *stats);

/* For hooks (tests): */
telState tel_state(const telConsole *c);
int64_t tel_ticks(const telConsole *c);
int64_t tel_episode_steps(const telConsole *c);
capVpad *tel_vpad(telConsole *c); /* the scripted device's virtual pad (capInput.vpad), or NULL */

#ifdef __cplusplus
}
#endif
#endif
