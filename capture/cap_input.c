/* capture/cap_input.c -- the table of input drivers, the SDL game-controller backend (real pads
 * and SDL virtual joysticks alike, with hot-plug), the virtual pad the scripted operator
 * drives, and record/replay of raw input.
 *
 * SDL must be initialized by the program (SDL_INIT_GAMECONTROLLER at least), with
 * SDL_HINT_JOYSTICK_ALLOW_BACKGROUND_EVENTS set before SDL_Init: without it, under the dummy
 * video driver, virtual joystick input is silently dropped (docs/reference.md). */
#include <SDL2/SDL.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cap_internal.h"
#include "cap_keyboard.h"
#include "cap_spacemouse.h"

/* ---- the table ---- */
extern const capInputDriver cap_gamepad_driver, cap_replay_driver, cap_scripted_driver;

const capInputDriver *const cap_input_drivers[] = {
    &cap_gamepad_driver,  &cap_keyboard_driver, &cap_spacemouse_driver,
    &cap_scripted_driver, &cap_replay_driver,   NULL,
};

const capInputDriver *cap_input_driver(const char *name) {
  for (int i = 0; name && cap_input_drivers[i]; i++)
    if (!strcmp(cap_input_drivers[i]->name, name)) return cap_input_drivers[i];
  return NULL;
}

const char *cap_input_names(unsigned want) {
  static _Thread_local char buf[256];
  size_t n = 0;
  buf[0] = 0;
  for (int i = 0; cap_input_drivers[i]; i++) {
    if ((cap_input_drivers[i]->caps & want) != want) continue;
    int k = snprintf(buf + n, sizeof buf - n, "%s%s", n ? ", " : "", cap_input_drivers[i]->name);
    if (k < 0 || (size_t)k >= sizeof buf - n) break;
    n += (size_t)k;
  }
  return buf;
}

int cap_input_open(const char *name, const char *arg, capInput **out) {
  *out = NULL;
  const capInputDriver *drv = cap_input_driver(name);
  if (!drv) return tk_error(TK_ENOTFOUND, "unknown input device '%s' (known: %s)", name, cap_input_names(0));
  capInput *in = calloc(1, sizeof *in);
  if (!in) return tk_error(TK_ENOMEM, "out of memory");
  in->drv = drv;
  in->buttons = drv->buttons;
  int rc = drv->open(in, arg);
  if (rc) {
    free(in);
    return rc;
  }
  *out = in;
  return 0;
}

int cap_input_poll(capInput *in, capInputState *st, int *connected) {
  memset(st, 0, sizeof *st);
  *connected = 0;
  int rc = in->drv->poll(in, st, connected);
  if (!*connected) memset(st, 0, sizeof *st); /* a device that is gone says nothing */
  return rc;
}

void cap_input_rumble(capInput *in, double strength, int ms) {
  if (in && in->drv->rumble) in->drv->rumble(in, strength, ms);
}

void cap_input_close(capInput *in) {
  if (!in) return;
  in->drv->close(in);
  free(in);
}

/* ---- SDL game controllers (real pads and virtual joysticks) ---- */
typedef struct {
  SDL_GameController *gc;
  SDL_JoystickID id;
  int want_index; /* -1: any */
} gamepad;

static int gp_try_open(capInput *in, gamepad *g) {
  int n = SDL_NumJoysticks();
  for (int i = 0; i < n; i++) {
    if (g->want_index >= 0 && i != g->want_index) continue;
    if (!SDL_IsGameController(i)) continue;
    SDL_GameController *gc = SDL_GameControllerOpen(i);
    if (!gc) continue;
    g->gc = gc;
    g->id = SDL_JoystickInstanceID(SDL_GameControllerGetJoystick(gc));
    const char *nm = SDL_GameControllerName(gc);
    snprintf(in->desc, sizeof in->desc, "%s", nm ? nm : "game controller");
    return 1;
  }
  return 0;
}

static int gp_open(capInput *in, const char *arg) {
  if (!SDL_WasInit(SDL_INIT_GAMECONTROLLER))
    return tk_error(TK_EINVAL, "gamepad: SDL's game-controller subsystem is not initialized");
  gamepad *g = calloc(1, sizeof *g);
  if (!g) return tk_error(TK_ENOMEM, "out of memory");
  g->want_index = -1;
  if (arg && arg[0]) {
    int64_t v;
    if (tk_opt_int("gamepad: device index", arg, 0, INT_MAX, &v)) {
      free(g);
      return TK_EINVAL;
    }
    g->want_index = (int)v;
  }
  in->impl = g;
  SDL_GameControllerUpdate();
  if (!gp_try_open(in, g)) {
    free(g);
    in->impl = NULL;
    return tk_error(TK_ENOTFOUND,
                    "gamepad: no game controller found (%d joystick(s) seen; is the pad plugged in, "
                    "or does it need a mapping from --mappings gamecontrollerdb.txt?)",
                    SDL_NumJoysticks());
  }
  return 0;
}

static double axis_norm(Sint16 v) { return v < 0 ? (double)v / 32768.0 : (double)v / 32767.0; }

static int gp_poll(capInput *in, capInputState *st, int *connected) {
  gamepad *g = in->impl;
  SDL_GameControllerUpdate();
  if (g->gc && !SDL_GameControllerGetAttached(g->gc)) {
    SDL_GameControllerClose(g->gc);
    g->gc = NULL;
  }
  if (!g->gc && !gp_try_open(in, g)) { /* hot-plug: any controller that appears is taken */
    *connected = 0;
    return 0;
  }
  SDL_GameController *gc = g->gc;
  st->six_dof = 0;
  /* SDL's stick y axes are positive down; ours are positive up */
  st->pad.axis[CAP_AX_LX] = axis_norm(SDL_GameControllerGetAxis(gc, SDL_CONTROLLER_AXIS_LEFTX));
  st->pad.axis[CAP_AX_LY] = -axis_norm(SDL_GameControllerGetAxis(gc, SDL_CONTROLLER_AXIS_LEFTY));
  st->pad.axis[CAP_AX_RX] = axis_norm(SDL_GameControllerGetAxis(gc, SDL_CONTROLLER_AXIS_RIGHTX));
  st->pad.axis[CAP_AX_RY] = -axis_norm(SDL_GameControllerGetAxis(gc, SDL_CONTROLLER_AXIS_RIGHTY));
  st->pad.axis[CAP_AX_LT] =
      fmax(0, axis_norm(SDL_GameControllerGetAxis(gc, SDL_CONTROLLER_AXIS_TRIGGERLEFT)));
  st->pad.axis[CAP_AX_RT] =
      fmax(0, axis_norm(SDL_GameControllerGetAxis(gc, SDL_CONTROLLER_AXIS_TRIGGERRIGHT)));
  unsigned b = 0;
  for (int i = 0; i <= SDL_CONTROLLER_BUTTON_RIGHTSHOULDER; i++)
    if (SDL_GameControllerGetButton(gc, (SDL_GameControllerButton)i)) b |= 1u << i;
  st->pad.buttons = b;
  *connected = 1;
  return 0;
}

static void gp_rumble(capInput *in, double strength, int ms) {
  gamepad *g = in->impl;
  if (!g->gc) return;
  Uint16 v = (Uint16)(fmin(fmax(strength, 0), 1) * 65535);
  SDL_GameControllerRumble(g->gc, v, v, (Uint32)ms);
}

static void gp_close(capInput *in) {
  gamepad *g = in->impl;
  if (g && g->gc) SDL_GameControllerClose(g->gc);
  free(g);
}

static const char *gp_legend(void) {
  return "left stick\tmove: right / left, away / toward the camera\n"
         "right stick\tup / down, yaw\n"
         "RB close / LB open\tgripper\n"
         "A\tend: success\n"
         "B\tend: failure\n"
         "X\tdiscard\n"
         "Y\treset the scene\n"
         "Start\tstart / pause\n"
         "Back\tquit";
}

const capInputDriver cap_gamepad_driver = {
    .name = "gamepad",
    .summary = "an SDL game controller, hot-plugged (--device-arg: its index; default the first)",
    .caps = 0,
    .buttons = CAP_BTN_A | CAP_BTN_B | CAP_BTN_X | CAP_BTN_Y | CAP_BTN_BACK | CAP_BTN_START | CAP_BTN_LB |
               CAP_BTN_RB,
    .legend = gp_legend,
    .open = gp_open,
    .poll = gp_poll,
    .rumble = gp_rumble,
    .close = gp_close,
};

/* ---- the virtual pad (SDL virtual joystick) ---- */
struct capVpad {
  int attached;
  SDL_Joystick *js;
  int rumbles; /* rumble requests the "device" received */
};

static int SDLCALL vpad_rumble_cb(void *user, Uint16 lo, Uint16 hi) {
  capVpad *v = user;
  if (lo || hi) v->rumbles++;
  return 0;
}

static int vpad_attach(capVpad *v) {
  SDL_VirtualJoystickDesc d;
  memset(&d, 0, sizeof d);
  d.version = SDL_VIRTUAL_JOYSTICK_DESC_VERSION;
  d.type = SDL_JOYSTICK_TYPE_GAMECONTROLLER;
  d.naxes = SDL_CONTROLLER_AXIS_MAX;
  d.nbuttons = SDL_CONTROLLER_BUTTON_MAX;
  d.vendor_id = 0x1209; /* pid.codes test vendor: nonzero ids are needed for a mapping */
  d.product_id = 0xD0D0;
  d.name = "demokit virtual pad";
  d.userdata = v;
  d.Rumble = vpad_rumble_cb;
  int idx = SDL_JoystickAttachVirtualEx(&d);
  if (idx < 0) return tk_error(TK_EIO, "virtual pad: %s", SDL_GetError());
  v->js = SDL_JoystickOpen(idx);
  if (!v->js) return tk_error(TK_EIO, "virtual pad: open: %s", SDL_GetError());
  /* triggers rest at the bottom of their raw range */
  SDL_JoystickSetVirtualAxis(v->js, SDL_CONTROLLER_AXIS_TRIGGERLEFT, -32768);
  SDL_JoystickSetVirtualAxis(v->js, SDL_CONTROLLER_AXIS_TRIGGERRIGHT, -32768);
  v->attached = 1;
  return 0;
}

int cap_vpad_make(capVpad **out) {
  *out = NULL;
  if (!SDL_WasInit(SDL_INIT_JOYSTICK))
    return tk_error(TK_EINVAL, "virtual pad: SDL's joystick subsystem is not initialized");
  capVpad *v = calloc(1, sizeof *v);
  if (!v) return tk_error(TK_ENOMEM, "out of memory");
  int rc = vpad_attach(v);
  if (rc) {
    free(v);
    return rc;
  }
  SDL_JoystickUpdate();
  *out = v;
  return 0;
}

static Sint16 to_raw(double x) {
  x = fmin(fmax(x, -1), 1);
  return (Sint16)(x < 0 ? x * 32768.0 : x * 32767.0);
}

int cap_vpad_set(capVpad *v, const capPadState *p) {
  if (!v->attached) return 0; /* unplugged: nothing reaches SDL */
  SDL_JoystickSetVirtualAxis(v->js, SDL_CONTROLLER_AXIS_LEFTX, to_raw(p->axis[CAP_AX_LX]));
  SDL_JoystickSetVirtualAxis(v->js, SDL_CONTROLLER_AXIS_LEFTY, to_raw(-p->axis[CAP_AX_LY]));
  SDL_JoystickSetVirtualAxis(v->js, SDL_CONTROLLER_AXIS_RIGHTX, to_raw(p->axis[CAP_AX_RX]));
  SDL_JoystickSetVirtualAxis(v->js, SDL_CONTROLLER_AXIS_RIGHTY, to_raw(-p->axis[CAP_AX_RY]));
  SDL_JoystickSetVirtualAxis(v->js, SDL_CONTROLLER_AXIS_TRIGGERLEFT, to_raw(p->axis[CAP_AX_LT] * 2 - 1));
  SDL_JoystickSetVirtualAxis(v->js, SDL_CONTROLLER_AXIS_TRIGGERRIGHT, to_raw(p->axis[CAP_AX_RT] * 2 - 1));
  for (int i = 0; i < SDL_CONTROLLER_BUTTON_MAX; i++)
    SDL_JoystickSetVirtualButton(v->js, i, (p->buttons >> i) & 1u ? SDL_PRESSED : SDL_RELEASED);
  return 0;
}

int cap_vpad_unplug(capVpad *v) {
  if (!v->attached) return 0;
  int idx = -1;
  SDL_JoystickID id = SDL_JoystickInstanceID(v->js);
  for (int i = 0; i < SDL_NumJoysticks(); i++)
    if (SDL_JoystickGetDeviceInstanceID(i) == id) idx = i;
  SDL_JoystickClose(v->js);
  v->js = NULL;
  v->attached = 0;
  if (idx >= 0 && SDL_JoystickDetachVirtual(idx) < 0)
    return tk_error(TK_EIO, "virtual pad: detach: %s", SDL_GetError());
  SDL_JoystickUpdate();
  return 0;
}

int cap_vpad_plug(capVpad *v) {
  if (v->attached) return 0;
  int rc = vpad_attach(v);
  SDL_JoystickUpdate();
  return rc;
}

int cap_vpad_rumbles(const capVpad *v) { return v->rumbles; }
int cap_vpad_attached(const capVpad *v) { return v->attached; }

void cap_vpad_free(capVpad *v) {
  if (!v) return;
  cap_vpad_unplug(v);
  free(v);
}

/* ---- raw input recording and replay ---- */
#define REC_MAGIC "DKINPUT1"
typedef struct {
  int32_t connected;
  int32_t six_dof;
  uint32_t buttons;
  uint32_t pad_;
  double axis[CAP_NAXES];
  double motion[6];
} recRow;

struct capInputRecorder {
  FILE *f;
  char path[4096];
};

int cap_input_record_open(const char *path, const char *device, capInputRecorder **out) {
  *out = NULL;
  capInputRecorder *r = calloc(1, sizeof *r);
  if (!r) return tk_error(TK_ENOMEM, "out of memory");
  snprintf(r->path, sizeof r->path, "%s", path);
  r->f = fopen(path, "wb");
  if (!r->f) {
    int e = errno;
    free(r);
    return tk_error(TK_EIO, "%s: cannot create: %s", path, strerror(e));
  }
  char head[64] = {0};
  snprintf(head, sizeof head, "%s %s", REC_MAGIC, device ? device : "");
  fwrite(head, 1, sizeof head, r->f);
  *out = r;
  return 0;
}

int cap_input_record(capInputRecorder *r, const capInputState *st, int connected) {
  recRow row;
  memset(&row, 0, sizeof row);
  row.connected = connected;
  row.six_dof = st->six_dof;
  row.buttons = st->pad.buttons;
  memcpy(row.axis, st->pad.axis, sizeof row.axis);
  memcpy(row.motion, st->motion, sizeof row.motion);
  if (fwrite(&row, sizeof row, 1, r->f) != 1)
    return tk_error(TK_EIO, "%s: write failed: %s", r->path, strerror(errno));
  return 0;
}

int cap_input_record_close(capInputRecorder *r) {
  if (!r) return 0;
  int rc = 0;
  if (fclose(r->f)) rc = tk_error(TK_EIO, "%s: close failed: %s", r->path, strerror(errno));
  free(r);
  return rc;
}

typedef struct {
  FILE *f;
  char path[4096];
  int64_t rows, at;
} replay;

static int rp_open(capInput *in, const char *arg) {
  if (!arg || !arg[0]) return tk_error(TK_EINVAL, "replay: give the recorded input file");
  replay *r = calloc(1, sizeof *r);
  if (!r) return tk_error(TK_ENOMEM, "out of memory");
  snprintf(r->path, sizeof r->path, "%s", arg);
  r->f = fopen(arg, "rb");
  char head[64];
  int rc = 0;
  if (!r->f)
    rc = tk_error(TK_EIO, "%s: cannot open: %s", arg, strerror(errno));
  else if (fread(head, 1, sizeof head, r->f) != sizeof head || memcmp(head, REC_MAGIC, strlen(REC_MAGIC)))
    rc = tk_error(TK_EFORMAT, "%s: not a recorded input file (no %s header)", arg, REC_MAGIC);
  else {
    fseek(r->f, 0, SEEK_END);
    long sz = ftell(r->f);
    if ((sz - (long)sizeof head) % (long)sizeof(recRow))
      rc = tk_error(TK_EFORMAT, "%s: truncated (%ld bytes is not a whole number of records)", arg, sz);
    r->rows = (sz - (long)sizeof head) / (long)sizeof(recRow);
    fseek(r->f, (long)sizeof head, SEEK_SET);
    head[63] = 0;
    const char *dev = head[8] == ' ' ? head + 9 : "";
    snprintf(in->desc, sizeof in->desc, "replay of %s", dev[0] ? dev : "input");
    const capInputDriver *recorded = cap_input_driver(dev);
    if (recorded && recorded != in->drv) in->buttons = recorded->buttons; /* its buttons, as recorded */
  }
  if (rc) {
    if (r->f) fclose(r->f);
    free(r);
    return rc;
  }
  in->impl = r;
  return 0;
}

static int rp_poll(capInput *in, capInputState *st, int *connected) {
  replay *r = in->impl;
  recRow row;
  if (r->at >= r->rows || fread(&row, sizeof row, 1, r->f) != 1) {
    /* the recording is over: the operator lets go and presses Back (quit) */
    *connected = 1;
    st->pad.buttons = CAP_BTN_BACK;
    return 0;
  }
  r->at++;
  *connected = row.connected;
  st->six_dof = row.six_dof;
  st->pad.buttons = row.buttons;
  memcpy(st->pad.axis, row.axis, sizeof row.axis);
  memcpy(st->motion, row.motion, sizeof row.motion);
  for (int i = 0; i < CAP_NAXES; i++)
    if (!isfinite(st->pad.axis[i])) st->pad.axis[i] = 0;
  for (int i = 0; i < 6; i++)
    if (!isfinite(st->motion[i])) st->motion[i] = 0;
  return 0;
}

static void rp_close(capInput *in) {
  replay *r = in->impl;
  if (r && r->f) fclose(r->f);
  free(r);
}

static const char *rp_legend(void) {
  return "recorded input\tplayed back tick by tick, as it was recorded\n"
         "its end\tquit (an open episode is kept as a failure)";
}

const capInputDriver cap_replay_driver = {
    .name = "replay",
    .summary = "input recorded with --record-input, played back (--device-arg: the file)",
    .caps = CAP_INPUT_UNPACED | CAP_INPUT_RECORDING,
    .buttons = ~0u,
    .legend = rp_legend,
    .open = rp_open,
    .poll = rp_poll,
    .rumble = NULL,
    .close = rp_close,
};
