/* teleop/tel_main.c -- the `teleop` command. */
#include <SDL2/SDL.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "ds.h"
#include "tel.h"
#include "tk.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: teleop (--task NAME | --model scene.xml) --out FILE.h5 [options]\n"
      "       teleop --robot PORT --robot-config arm.json [--leader PORT [--leader-config leader.json]]\n"
      "              --out FILE.h5 [options]\n"
      "       teleop --robot PORT --robot-config arm.json --leader PORT --calibrate-leader leader.json\n"
      "\n"
      "Drive a simulated or real robot and record demonstrations. Every finished episode is durable\n"
      "in FILE.h5 the moment it ends (crash-safe; see docs/data.md).\n"
      "\n"
      "  --task NAME          built-in task: %s (default %s)\n"
      "  --model FILE.xml     your own MJCF scene (free play over its actuators, no reward)\n"
      "  --out FILE.h5        dataset; an existing one is appended to (same task and schema)\n"
      "  --robot PORT         a servo-bus arm instead of a simulated task: dxl:/dev/ttyUSB0 (Dynamixel\n"
      "                       2.0), fts:/dev/ttyUSB0 (Feetech STS), simbus (simulated servos on a pty)\n"
      "  --robot-config FILE  its joints, calibration, limits and safety (JSON; docs/robots.md)\n"
      "  --leader PORT        the leader arm whose pose the robot follows (same forms); the buttons\n"
      "                       still come from --device (a gamepad; scripted with --leader simbus).\n"
      "                       Without a leader a gamepad jogs the joints: sticks the first four,\n"
      "                       triggers the fifth, bumpers the last (the gripper), up to 0.8 rad/s\n"
      "  --leader-config FILE the leader's ids and calibration (JSON)\n"
      "  --calibrate-leader FILE  pose the leader like the follower, then run this: writes the\n"
      "                       leader's calibration to FILE and exits\n"
      "  --device KIND        the input device (default gamepad; the devices are listed below)\n"
      "  --device-arg ARG     the device's argument (pad index, VID:PID, the input file for replay)\n"
      "  --episodes N         stop after N kept episodes (default: until quit)\n"
      "  --headless           no window\n"
      "  --policy P.h5        intervention mode: the policy drives while recording; hold the left\n"
      "                       trigger (pad) or move (SpaceMouse, keyboard) to take over; those steps\n"
      "                       are flagged in the dataset's interventions. On a --robot every command\n"
      "                       goes through the safety layer; move the --leader arm to take over, let\n"
      "                       go (still for 0.5 s) to hand back; without a leader any jog input takes\n"
      "                       over. The policy's time per tick is printed after each episode\n"
      "  --takeover-after N   scripted operator with --policy: take over after N steps (default 40%%\n"
      "                       of the task's horizon; on a robot of --max-steps)\n"
      "  --fast               devices with no person behind them (%s): run as fast as the\n"
      "                       machine can, unpaced (generating data; the recorded timestamps are then\n"
      "                       wall-clock, not 1/rate)\n"
      "  --camera NAME:WxH    record a camera (agentview, eye_in_hand), repeatable\n"
      "  --rate HZ            control rate (default the task's, 20)\n"
      "  --seed S             first episode's seed (default 0)\n"
      "  --noise X            scripted operator's human-likeness, 0..1 (default 0)\n"
      "  --auto-end N         end as success once the task's success held N steps\n"
      "  --max-steps N        end an episode at this length (default the task's horizon)\n"
      "  --operator NAME      stored with each demo (default $USER)\n"
      "  --mappings FILE      SDL gamecontrollerdb.txt for unusual pads\n"
      "  --map FILE.json      remap pad axes: {\"dx\": \"-left_y\", \"dy\": \"left_x\", \"dz\": "
      "\"right_y\",\n"
      "                       \"drz\": \"-right_x\", \"deadzone\": 0.1, \"sensitivity\": 1.0}\n"
      "  --record-input FILE  also write the raw device input (replay: --device replay --device-arg FILE)\n"
      "  --image-gzip L       gzip level for camera frames, 0..9 (default 4)\n"
      "  --screenshot FILE.png  with the window: save its last frame to FILE.png when teleop ends\n"
      "  --quiet              no per-episode lines\n"
      "  --force              replace an existing --record-input, --screenshot or --calibrate-leader\n"
      "                       file of another kind (no output may be an input; --out is only appended to)\n"
      "\n"
      "Devices (--device):\n",
      cap_task_names(), CAP_DEFAULT_TASK, cap_input_names(CAP_INPUT_UNPACED));
  for (int i = 0; cap_input_drivers[i]; i++)
    fprintf(f, "  %-12s %s\n", cap_input_drivers[i]->name, cap_input_drivers[i]->summary);
  for (int i = 0; cap_input_drivers[i]; i++) { /* the controls, "control\tmeaning" per line */
    const capInputDriver *d = cap_input_drivers[i];
    const char *l = d->legend ? d->legend() : NULL;
    if (!l || !l[0]) continue;
    fprintf(f, "\nControls, %s:\n", d->name);
    while (*l) {
      size_t n = strcspn(l, "\n"), tab = strcspn(l, "\t");
      if (tab < n)
        fprintf(f, "  %-26.*s %.*s\n", (int)tab, l, (int)(n - tab - 1), l + tab + 1);
      else
        fprintf(f, "  %.*s\n", (int)n, l);
      l += n + (l[n] == '\n');
    }
  }
}

static volatile sig_atomic_t got_sigint;
static void on_sigint(int s) {
  (void)s;
  got_sigint = 1;
}

static void sigint_hook(telConsole *c, void *user) {
  (void)c;
  (void)user;
  if (got_sigint) {
    SDL_Event ev = {.type = SDL_QUIT};
    SDL_PushEvent(&ev);
  }
}

/* The output rule for every file teleop writes: none is one of its inputs; --out is a dataset that is
 * appended to (never replaced), the others are replaced only when of their own kind or with --force. */
static int check_outputs(const telOpts *o, int force) {
  const char *in[] = {o->model_path,   o->device_arg,    o->mappings, o->map_json,
                      o->robot_config, o->leader_config, o->policy};
  const int nin = (int)TK_ARRAY_LEN(in);
  if (o->out) {
    for (int i = 0; i < nin; i++)
      if (in[i] && ds_same_file(o->out, in[i]))
        return tk_error(TK_EINVAL, "--out %s is the input %s: refusing to record into it", o->out, in[i]);
    dsKind k = ds_file_kind(o->out);
    if (k != DS_KIND_NONE && k != DS_KIND_DATASET)
      return tk_error(TK_EINVAL, "--out %s exists and is a %s, not a dataset to append to", o->out,
                      ds_kind_name(k));
  }
  const char *all[TK_ARRAY_LEN(in) + 1];
  for (int i = 0; i < nin; i++)
    all[i] = in[i];
  all[nin] = o->out; /* the dataset being recorded is an input of every other output */
  const char *outs[] = {o->record_input, o->screenshot, o->calibrate_leader};
  const dsKind kinds[] = {DS_KIND_INPUT, DS_KIND_PNG, DS_KIND_TEXT};
  for (int k = 0; k < 3; k++) {
    int rc = outs[k] ? ds_output_check(outs[k], kinds[k], all, nin + 1, force) : 0;
    if (rc) return rc;
  }
  return 0;
}

int main(int argc, char **argv) {
  telOpts o;
  tel_opts_default(&o);
  int force = 0;
  if (tk_env_check()) {
    tk_die_msg("teleop");
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    double x;
    int64_t k;
#define NEED()                                                                                               \
  do {                                                                                                       \
    if (!v) {                                                                                                \
      fprintf(stderr, "teleop: %s needs a value\n", a);                                                      \
      return 2;                                                                                              \
    }                                                                                                        \
    i++;                                                                                                     \
  } while (0)
/* integer options through tk_opt_int, the rest through tk_opt_f64 (k, x: the value) */
#define INT(lo, hi)                                                                                          \
  do {                                                                                                       \
    NEED();                                                                                                  \
    if (tk_opt_int(a, v, (lo), (hi), &k)) {                                                                  \
      tk_die_msg("teleop");                                                                                  \
      return 2;                                                                                              \
    }                                                                                                        \
  } while (0)
#define NUM(lo, hi)                                                                                          \
  do {                                                                                                       \
    NEED();                                                                                                  \
    if (tk_opt_f64(a, v, (lo), (hi), &x)) {                                                                  \
      tk_die_msg("teleop");                                                                                  \
      return 2;                                                                                              \
    }                                                                                                        \
  } while (0)
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--task")) {
      NEED();
      o.task = v;
    } else if (!strcmp(a, "--model")) {
      NEED();
      o.model_path = v;
    } else if (!strcmp(a, "--out")) {
      NEED();
      o.out = v;
    } else if (!strcmp(a, "--robot")) {
      NEED();
      o.robot = v;
    } else if (!strcmp(a, "--robot-config")) {
      NEED();
      o.robot_config = v;
    } else if (!strcmp(a, "--leader")) {
      NEED();
      o.leader = v;
    } else if (!strcmp(a, "--leader-config")) {
      NEED();
      o.leader_config = v;
    } else if (!strcmp(a, "--calibrate-leader")) {
      NEED();
      o.calibrate_leader = v;
    } else if (!strcmp(a, "--device")) {
      NEED();
      o.device = v;
    } else if (!strcmp(a, "--device-arg")) {
      NEED();
      o.device_arg = v;
    } else if (!strcmp(a, "--operator")) {
      NEED();
      o.operator_name = v;
    } else if (!strcmp(a, "--mappings")) {
      NEED();
      o.mappings = v;
    } else if (!strcmp(a, "--map")) {
      NEED();
      o.map_json = v;
    } else if (!strcmp(a, "--record-input")) {
      NEED();
      o.record_input = v;
    } else if (!strcmp(a, "--episodes")) {
      INT(0, 1000000000);
      o.episodes = (int)k;
    } else if (!strcmp(a, "--rate")) {
      NUM(1, 1000);
      o.rate = x;
    } else if (!strcmp(a, "--seed")) {
      INT(0, 1000000000000000);
      o.seed = (uint64_t)k;
    } else if (!strcmp(a, "--noise")) {
      NUM(0, 1);
      o.noise = x;
    } else if (!strcmp(a, "--auto-end")) {
      INT(0, 1000000);
      o.auto_end = (int)k;
    } else if (!strcmp(a, "--max-steps")) {
      INT(0, 1000000000);
      o.max_steps = (int)k;
    } else if (!strcmp(a, "--image-gzip")) {
      INT(0, 9);
      o.image_gzip = (int)k;
    } else if (!strcmp(a, "--camera")) {
      NEED();
      if (o.ncams >= CAP_MAX_CAMS) {
        fprintf(stderr, "teleop: --camera %s: at most %d cameras\n", v, CAP_MAX_CAMS);
        return 2;
      }
      if (cap_camera_parse("--camera", v, &o.cams[o.ncams])) {
        tk_die_msg("teleop");
        return 2;
      }
      o.ncams++;
    } else if (!strcmp(a, "--screenshot")) {
      NEED();
      o.screenshot = v;
    } else if (!strcmp(a, "--headless")) {
      o.headless = 1;
    } else if (!strcmp(a, "--policy")) {
      NEED();
      o.policy = v;
    } else if (!strcmp(a, "--takeover-after")) {
      INT(1, 1000000000);
      o.takeover_after = (int)k;
    } else if (!strcmp(a, "--fast")) {
      o.fast = 1;
    } else if (!strcmp(a, "--quiet")) {
      o.quiet = 1;
    } else if (!strcmp(a, "--force")) {
      force = 1;
    } else {
      fprintf(stderr, "teleop: unknown option %s (see teleop --help)\n", a);
      return 2;
    }
  }
  if (!o.out && !o.calibrate_leader) {
    fprintf(stderr, "teleop: --out FILE.h5 is required (see teleop --help)\n");
    return 2;
  }
  if (check_outputs(&o, force)) {
    tk_die_msg("teleop");
    return 1;
  }

  /* a virtual pad's input only arrives with background events allowed (docs/reference.md) */
  SDL_SetHint(SDL_HINT_JOYSTICK_ALLOW_BACKGROUND_EVENTS, "1");
  if (o.headless && !getenv("SDL_VIDEODRIVER")) setenv("SDL_VIDEODRIVER", "dummy", 1);
  if (SDL_Init(SDL_INIT_JOYSTICK | SDL_INIT_GAMECONTROLLER | SDL_INIT_EVENTS |
               (o.headless ? 0 : SDL_INIT_VIDEO)) < 0) {
    fprintf(stderr, "teleop: SDL: %s%s\n", SDL_GetError(),
            o.headless ? "" : " (no display? run with --headless)");
    return 1;
  }
  signal(SIGINT, on_sigint);
  o.on_tick = sigint_hook;
  telStats st;
  int rc = tel_run(&o, &st);
  SDL_Quit();
  if (rc) {
    tk_die_msg("teleop");
    return 1;
  }
  if (o.calibrate_leader) return 0;
  printf("teleop: %d success, %d failure, %d discarded; %lld committed to %s; %.1f Hz achieved, %lld missed "
         "deadlines, p99 lateness %.2f ms\n",
         st.success, st.failure, st.discarded, (long long)st.committed, o.out, st.rate, (long long)st.missed,
         st.jitter_p99_ms);
  if (o.policy)
    printf(
        "teleop: %s drove %lld of %lld steps; the operator took over for %lld (flagged in interventions)\n",
        o.policy, (long long)(st.steps - st.intervention_steps), (long long)st.steps,
        (long long)st.intervention_steps);
  return 0;
}
