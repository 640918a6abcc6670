/* capture/cap_pad.c -- the gamepad-to-action mapping and its inverse for the scripted
 * operator, so the headless path drives exactly the code a real pad does. */
#include <math.h>
#include <string.h>

#include "cap_internal.h"

void cap_pad_map_default(capPadMap *m) {
  memset(m, 0, sizeof *m);
  int src[6] = {CAP_AX_LY, CAP_AX_LX, CAP_AX_RY, -1, -1, CAP_AX_RX};
  double sign[6] = {-1, 1, 1, 0, 0, -1};
  memcpy(m->src, src, sizeof src);
  memcpy(m->sign, sign, sizeof sign);
  m->deadzone = 0.1;
  m->sensitivity = 1.0;
}

static double shape(const capPadMap *m, double v) {
  double a = fabs(v);
  if (!(a > m->deadzone)) return 0; /* also catches NaN from a broken device */
  double out = (a - m->deadzone) / (1 - m->deadzone) * m->sensitivity;
  if (out > 1) out = 1;
  return v < 0 ? -out : out;
}

void cap_pad_to_action(const capPadMap *m, const capPadState *p, double *gripper, double *a) {
  for (int i = 0; i < 6; i++) {
    int s = m->src[i];
    a[i] = s >= 0 && s < CAP_NAXES ? m->sign[i] * shape(m, p->axis[s]) : 0;
  }
  if (p->buttons & CAP_BTN_RB)
    *gripper = 1;
  else if (p->buttons & CAP_BTN_LB)
    *gripper = -1;
  a[6] = *gripper;
}

/* the stick deflection that the map turns into value v (inverse of shape) */
static double unshape(const capPadMap *m, double v) {
  if (v == 0) return 0;
  double a = fabs(v) / (m->sensitivity > 0 ? m->sensitivity : 1);
  if (a > 1) a = 1;
  double stick = m->deadzone + a * (1 - m->deadzone);
  return v < 0 ? -stick : stick;
}

int cap_expert_pad(capExpert *x, const capEnv *e, const capPadMap *m, capPadState *p) {
  double a[CAP_MAX_ACT];
  int rc = cap_expert_act(x, e, a);
  if (rc) return rc;
  memset(p, 0, sizeof *p);
  for (int i = 0; i < 6; i++) {
    int s = m->src[i];
    if (s < 0 || s >= CAP_NAXES || m->sign[i] == 0) continue; /* not on the pad: the hand holds */
    p->axis[s] = unshape(m, a[i] / m->sign[i]);
  }
  p->buttons = a[6] > 0 ? CAP_BTN_RB : CAP_BTN_LB;
  if (cap_expert_wants_end(x, e, &rc)) p->buttons |= rc ? CAP_BTN_A : CAP_BTN_B;
  return 0;
}
