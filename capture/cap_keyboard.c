/* capture/cap_keyboard.c -- the "keyboard" input backend: a six-dof device made of keys.
 * Layout and semantics: cap_keyboard.h.
 *
 * Held keys come from SDL_GetKeyboardState, which SDL updates while the program pumps
 * events. A tap shorter than one control tick (press and release between two polls, e.g.
 * Enter at 10 Hz) would be invisible there, so an SDL event watch also records button key
 * presses as they are pumped, and the next poll reports them once. */
#include <SDL2/SDL.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap_keyboard.h"
#include "tk.h"

static const struct {
  SDL_Scancode key;
  int axis; /* motion[] index */
  double sign;
} motion_keys[] = {
    {SDL_SCANCODE_D, 0, +1}, {SDL_SCANCODE_A, 0, -1}, /* x: right / left */
    {SDL_SCANCODE_W, 1, +1}, {SDL_SCANCODE_S, 1, -1}, /* y: forward / back */
    {SDL_SCANCODE_R, 2, +1}, {SDL_SCANCODE_F, 2, -1}, /* z: up / down */
    {SDL_SCANCODE_T, 3, +1}, {SDL_SCANCODE_G, 3, -1}, /* rx: pitch up / down */
    {SDL_SCANCODE_X, 4, +1}, {SDL_SCANCODE_Z, 4, -1}, /* ry: roll right / left */
    {SDL_SCANCODE_C, 5, +1}, {SDL_SCANCODE_V, 5, -1}, /* rz: yaw left / right */
};

static const struct {
  SDL_Scancode key;
  unsigned button;
} button_keys[] = {
    {SDL_SCANCODE_SPACE, CAP_BTN_RB},   {SDL_SCANCODE_RETURN, CAP_BTN_A},
    {SDL_SCANCODE_KP_ENTER, CAP_BTN_A}, {SDL_SCANCODE_BACKSPACE, CAP_BTN_B},
    {SDL_SCANCODE_DELETE, CAP_BTN_X},   {SDL_SCANCODE_HOME, CAP_BTN_Y},
    {SDL_SCANCODE_P, CAP_BTN_START},    {SDL_SCANCODE_ESCAPE, CAP_BTN_BACK},
};

static int held(const uint8_t *keys, int nkeys, SDL_Scancode k) { return (int)k < nkeys && keys[k]; }

void cap_keyboard_map(const uint8_t *keys, int nkeys, capInputState *st) {
  memset(st, 0, sizeof *st);
  st->six_dof = 1;
  if (!keys) return;
  double speed = held(keys, nkeys, SDL_SCANCODE_LSHIFT) || held(keys, nkeys, SDL_SCANCODE_RSHIFT) ? 0.5 : 1.0;
  for (size_t i = 0; i < TK_ARRAY_LEN(motion_keys); i++)
    if (held(keys, nkeys, motion_keys[i].key)) st->motion[motion_keys[i].axis] += motion_keys[i].sign * speed;
  for (size_t i = 0; i < TK_ARRAY_LEN(button_keys); i++)
    if (held(keys, nkeys, button_keys[i].key)) st->pad.buttons |= button_keys[i].button;
}

/* ---- the driver ---- */
typedef struct {
  atomic_uint pressed; /* button presses seen by the event watch since the last poll */
} keyboard;

static int SDLCALL kb_watch(void *user, SDL_Event *ev) {
  keyboard *k = user;
  if (ev->type != SDL_KEYDOWN || ev->key.repeat) return 1;
  for (size_t i = 0; i < TK_ARRAY_LEN(button_keys); i++)
    if (ev->key.keysym.scancode == button_keys[i].key) atomic_fetch_or(&k->pressed, button_keys[i].button);
  return 1; /* ignored for watches */
}

static int kb_open(capInput *in, const char *arg) {
  if (arg && arg[0]) return tk_error(TK_EINVAL, "keyboard: takes no device argument (got '%s')", arg);
  if (!SDL_WasInit(SDL_INIT_VIDEO))
    return tk_error(TK_EINVAL,
                    "keyboard: SDL video is not initialized (keys are read through the teleop window; "
                    "not available headless)");
  keyboard *k = calloc(1, sizeof *k);
  if (!k) return tk_error(TK_ENOMEM, "out of memory");
  atomic_init(&k->pressed, 0u);
  in->impl = k;
  snprintf(in->desc, sizeof in->desc, "keyboard");
  SDL_AddEventWatch(kb_watch, k);
  return 0;
}

static int kb_poll(capInput *in, capInputState *st, int *connected) {
  keyboard *k = in->impl;
  if (!SDL_WasInit(SDL_INIT_VIDEO)) {
    memset(st, 0, sizeof *st);
    *connected = 0;
    return 0;
  }
  int n = 0;
  const Uint8 *keys = SDL_GetKeyboardState(&n);
  cap_keyboard_map(keys, n, st);
  st->pad.buttons |= atomic_exchange(&k->pressed, 0u);
  *connected = 1;
  return 0;
}

static void kb_close(capInput *in) {
  keyboard *k = in->impl;
  if (!k) return;
  SDL_DelEventWatch(kb_watch, k);
  free(k);
  in->impl = NULL;
}

/* ---- legend ---- */
/* SDL_GetKeyName answers in a static buffer: copy it out */
static const char *key_name(SDL_Scancode sc, const char *us, char *out, size_t cap) {
  const char *n = SDL_WasInit(SDL_INIT_VIDEO) ? SDL_GetKeyName(SDL_GetKeyFromScancode(sc)) : NULL;
  snprintf(out, cap, "%s", n && n[0] ? n : us);
  return out;
}

const char *cap_keyboard_legend(void) {
  static const struct {
    SDL_Scancode a, b; /* b: SDL_SCANCODE_UNKNOWN for a single key */
    const char *us_a, *us_b, *meaning;
  } rows[] = {
      {SDL_SCANCODE_W, SDL_SCANCODE_S, "W", "S", "forward / back"},
      {SDL_SCANCODE_A, SDL_SCANCODE_D, "A", "D", "left / right"},
      {SDL_SCANCODE_R, SDL_SCANCODE_F, "R", "F", "up / down"},
      {SDL_SCANCODE_Z, SDL_SCANCODE_X, "Z", "X", "roll left / right"},
      {SDL_SCANCODE_T, SDL_SCANCODE_G, "T", "G", "pitch up / down"},
      {SDL_SCANCODE_C, SDL_SCANCODE_V, "C", "V", "yaw left / right"},
      {SDL_SCANCODE_LSHIFT, SDL_SCANCODE_UNKNOWN, "Shift", NULL, "+ move: half speed"},
      {SDL_SCANCODE_SPACE, SDL_SCANCODE_UNKNOWN, "Space", NULL, "gripper open / close"},
      {SDL_SCANCODE_P, SDL_SCANCODE_UNKNOWN, "P", NULL, "start / pause"},
      {SDL_SCANCODE_RETURN, SDL_SCANCODE_UNKNOWN, "Return", NULL, "end: success"},
      {SDL_SCANCODE_BACKSPACE, SDL_SCANCODE_UNKNOWN, "Backspace", NULL, "end: failure"},
      {SDL_SCANCODE_DELETE, SDL_SCANCODE_UNKNOWN, "Delete", NULL, "discard"},
      {SDL_SCANCODE_HOME, SDL_SCANCODE_UNKNOWN, "Home", NULL, "reset the scene"},
      {SDL_SCANCODE_ESCAPE, SDL_SCANCODE_UNKNOWN, "Escape", NULL, "quit"},
  };
  static char buf[1024];
  size_t n = 0;
  buf[0] = 0;
  for (size_t i = 0; i < TK_ARRAY_LEN(rows) && n < sizeof buf; i++) {
    char a[32], b[32];
    key_name(rows[i].a, rows[i].us_a, a, sizeof a);
    int k;
    if (rows[i].b != SDL_SCANCODE_UNKNOWN)
      k = snprintf(buf + n, sizeof buf - n, "%s%s / %s\t%s", i ? "\n" : "", a,
                   key_name(rows[i].b, rows[i].us_b, b, sizeof b), rows[i].meaning);
    else
      k = snprintf(buf + n, sizeof buf - n, "%s%s\t%s", i ? "\n" : "", a, rows[i].meaning);
    if (k < 0) break;
    n += (size_t)k;
  }
  return buf;
}

const capInputDriver cap_keyboard_driver = {
    .name = "keyboard",
    .summary = "keys, read through the console window (not with --headless; no --device-arg)",
    .caps = CAP_INPUT_SIX_DOF | CAP_INPUT_WINDOW,
    .buttons = CAP_BTN_RB | CAP_BTN_A | CAP_BTN_B | CAP_BTN_X | CAP_BTN_Y | CAP_BTN_START | CAP_BTN_BACK,
    .legend = cap_keyboard_legend,
    .open = kb_open,
    .poll = kb_poll,
    .rumble = NULL,
    .close = kb_close,
};
