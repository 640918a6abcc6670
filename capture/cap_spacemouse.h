/* capture/cap_spacemouse.h -- 3Dconnexion SpaceMouse over libusb (internal to capture/).
 *
 * Two layers: pure parsers (device table, HID report descriptor, input reports, latched
 * state -> capInputState), testable on byte vectors without USB; and the libusb backend
 * cap_spacemouse_driver, a capInputDriver named "spacemouse" with a reader thread.
 */
#ifndef CAP_SPACEMOUSE_H
#define CAP_SPACEMOUSE_H

#include <stddef.h>
#include <stdint.h>

#include "cap.h"

/* The libusb backend. open's arg: NULL or "" for the first supported device, or "VID:PID"
 * in hex ("256f:c635") for that one. */
extern const capInputDriver cap_spacemouse_driver;

/* ---- device table ---- */
typedef enum {
  SM_SPLIT = 0,    /* report 1 = x y z, report 2 = rx ry rz (int16 LE each): older devices, Compact, Pro */
  SM_COMBINED = 1, /* report 1 = x y z rx ry rz in one 13-byte report: the Wireless family */
} smFamily;

typedef struct {
  uint16_t vid, pid;
  smFamily family;
  const char *name; /* for the HUD: "SpaceMouse Compact" */
} smDevice;

/* The table entry for vid:pid, or NULL when it is not a supported device. */
const smDevice *sm_device_find(uint16_t vid, uint16_t pid);
const smDevice *sm_device_table(int *n);
/* "046d:c626 046d:c628 ..." (every supported VID:PID, space separated) into buf. */
void sm_device_list(char *buf, size_t n);

/* ---- HID report descriptor ---- */
enum { SM_X = 0, SM_Y, SM_Z, SM_RX, SM_RY, SM_RZ, SM_NAXES };

/* Logical range of each raw axis (HID Generic Desktop X Y Z Rx Ry Rz), as the device's
 * report descriptor declares it: typically -350..350, -500..500 seen. */
typedef struct {
  int32_t lo[SM_NAXES], hi[SM_NAXES];
} smRange;

/* Walk the descriptor's items (global state with push/pop, local usages and usage ranges)
 * and take the Logical Minimum/Maximum in force at the Input item that carries each of the
 * six axis usages. TK_EFORMAT (with the reason) when the descriptor is malformed or does
 * not give all six axes a usable range (lo < 0 < hi). */
int sm_parse_report_descriptor(const uint8_t *desc, size_t len, smRange *out);

/* ---- input reports and the latched state ---- */
typedef struct {
  int16_t raw[SM_NAXES]; /* the device's own axes (raw HID frame), last value of each */
  uint32_t buttons;      /* report 3 bits: bit0 left (Pro: menu), bit1 right (Pro: fit), ... */
} smState;

/* Latch one input report (buf[0] is the report ID) into st; a zeroed smState is the rest
 * state. Report 1 of 13 bytes carries all six axes (combined family), of 7 bytes the
 * translation half (split family; report 2 is the rotation half): each half keeps its last
 * value until its next report. Buttons (report 3, 1 to 4 mask bytes) hold until the next
 * button report. Returns 1 when the report was latched, 0 for reports of no interest
 * (other IDs: battery, LEDs), TK_EFORMAT for a short report (state unchanged). */
int sm_parse_report(smState *st, const uint8_t *buf, size_t len);

/* The latched state as the console sees it: motion normalized to [-1,1] by the range, in
 * cap.h's device frame (x right, y forward, z up), buttons with CAP_BTN_* meanings. */
void sm_state_to_input(const smState *st, const smRange *r, capInputState *out);

#endif
