/* capture/cap_scripted.c -- the "scripted" input device: the program's scripted operator (its
 * hands: cap_expert_pad) on a virtual game controller (capVpad), read back through the
 * "gamepad" backend, so the scripted path drives exactly the code a person's pad does.
 *
 * The driver owns the virtual pad and hands it to the program in capInput.vpad: the program
 * sets the pad's sticks and buttons each tick (teleop: from cap_expert_pad), then polls the
 * device as any other. SDL's joystick and game-controller subsystems must be initialized
 * (with SDL_HINT_JOYSTICK_ALLOW_BACKGROUND_EVENTS, see cap_input.c). */
#include <SDL2/SDL.h>
#include <stdio.h>
#include <stdlib.h>

#include "cap.h"
#include "tk.h"

typedef struct {
  capVpad *vpad;
  capInput *pad; /* the "gamepad" backend on the virtual pad */
} scripted;

static void sc_close(capInput *in) {
  scripted *s = in->impl;
  if (!s) return;
  cap_input_close(s->pad);
  cap_vpad_free(s->vpad);
  free(s);
  in->impl = NULL;
  in->vpad = NULL;
}

static int sc_open(capInput *in, const char *arg) {
  if (arg && arg[0]) return tk_error(TK_EINVAL, "scripted: takes no device argument (got '%s')", arg);
  scripted *s = calloc(1, sizeof *s);
  if (!s) return tk_error(TK_ENOMEM, "out of memory");
  in->impl = s;
  int rc = cap_vpad_make(&s->vpad);
  if (rc) goto fail;
  char idx[16] = ""; /* the virtual joystick just attached: the last one */
  for (int i = 0; i < SDL_NumJoysticks(); i++)
    if (SDL_JoystickIsVirtual(i)) snprintf(idx, sizeof idx, "%d", i);
  if ((rc = cap_input_open("gamepad", idx, &s->pad))) goto fail;
  in->vpad = s->vpad;
  snprintf(in->desc, sizeof in->desc, "scripted operator (%s)", s->pad->desc);
  return 0;
fail:
  sc_close(in);
  return rc;
}

static int sc_poll(capInput *in, capInputState *st, int *connected) {
  scripted *s = in->impl;
  return cap_input_poll(s->pad, st, connected);
}

static void sc_rumble(capInput *in, double strength, int ms) {
  scripted *s = in->impl;
  cap_input_rumble(s->pad, strength, ms);
}

static const char *sc_legend(void) {
  return "scripted operator\tpresses Start, does the task on a virtual pad, ends with A (success) or "
         "B (gives up)\n"
         "close the window, Ctrl-C\tquit";
}

const capInputDriver cap_scripted_driver = {
    .name = "scripted",
    .summary = "the scripted operator on a virtual pad (--noise: how human; with --robot: --leader simbus)",
    .caps = CAP_INPUT_UNPACED | CAP_INPUT_SCRIPTED,
    .buttons = CAP_BTN_A | CAP_BTN_B | CAP_BTN_X | CAP_BTN_Y | CAP_BTN_BACK | CAP_BTN_START | CAP_BTN_LB |
               CAP_BTN_RB,
    .legend = sc_legend,
    .open = sc_open,
    .poll = sc_poll,
    .rumble = sc_rumble,
    .close = sc_close,
};
