/* capture/cap_keyboard.h -- internal: the "keyboard" input backend (six-dof from keys).
 *
 * A row of cap_input_drivers (CAP_INPUT_WINDOW: it opens where SDL video is up, the console
 * window); the keys are read from SDL's keyboard state, which the program's own event loop
 * (SDL_PollEvent/SDL_PumpEvents) keeps current: the driver never pumps events.
 *
 * Layout (SDL scancodes, i.e. key positions; named for a US layout, cap_keyboard_legend
 * names them for the current one). Motion in the device frame of cap.h (x right, y forward
 * = away from the user, z up; rotations about those axes, right-handed), 1 while held,
 * 0.5 with Shift held (fine control), opposite keys cancel:
 *   W / S  +y / -y  forward / back        T / G  +rx / -rx  pitch up / down
 *   D / A  +x / -x  right / left          X / Z  +ry / -ry  roll right / left
 *   R / F  +z / -z  up / down             C / V  +rz / -rz  yaw left / right (seen from above)
 * Buttons (CAP_BTN_*), reported while held, and also for one poll after a press that was
 * released before the poll saw it (a quick tap is never lost):
 *   Space RB (the teleop loop toggles the gripper on its press edge)   P Start (start/pause)
 *   Enter A (success)   Backspace B (failure)   Delete X (discard)   Home Y (reset)
 *   Escape Back (quit)
 * connected is 1 while SDL video is initialized. Keys only reach SDL while its window has
 * the keyboard focus; when the focus goes, SDL releases every key (all motion stops).
 */
#ifndef CAP_KEYBOARD_H
#define CAP_KEYBOARD_H

#include <stdint.h>

#include "cap.h"

extern const capInputDriver cap_keyboard_driver;

/* The bindings, one per line, "keys\tmeaning" (the HUD's legend format), with key names of
 * the current keyboard layout once SDL video is initialized (US names before). The string
 * is rebuilt on every call in a static buffer: call from the thread that runs SDL. */
const char *cap_keyboard_legend(void);

/* The mapping alone: keys indexed by SDL scancode (nkeys entries, as SDL_GetKeyboardState
 * gives them) to a six-dof state (buttons from held keys only). */
void cap_keyboard_map(const uint8_t *keys, int nkeys, capInputState *st);

#endif
