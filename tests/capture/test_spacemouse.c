/* SpaceMouse backend: the pure parsers on byte vectors of both report families, and the
 * libusb path against a device emulated with umockdev (sysfs + /dev/bus/usb node written
 * here by hand, usbdevfs traffic replayed from an ioctl record written here by hand).
 *
 * The umockdev tests need the preload library: run this executable through
 * `umockdev-wrapper` (meson test does). The last test runs the teleop binary in the same
 * emulated world (teleop_records_an_episode). */
#include <criterion/criterion.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <linux/usbdevice_fs.h>
#include <math.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <umockdev.h>

#include "cap.h"
#include "cap_spacemouse.h"
#include "ds.h"
#include "tk.h"
#include "tt.h"
#include "tt_proc.h"

/* ---- report descriptors ---- */

/* Split family (SpaceNavigator / Compact layout): translation in report 1, rotation in
 * report 2 (the rotation collection relies on the global Logical Minimum/Maximum set for
 * the translation), buttons in report 3 with their own 0..1 range, an LED output report
 * and a vendor feature report. +-350. */
static const uint8_t desc_split[] = {
    0x05, 0x01,             /* Usage Page (Generic Desktop) */
    0x09, 0x08,             /* Usage (Multi-axis Controller) */
    0xA1, 0x01,             /* Collection (Application) */
    0xA1, 0x00,             /*  Collection (Physical) */
    0x85, 0x01,             /*   Report ID (1) */
    0x16, 0xA2, 0xFE,       /*   Logical Minimum (-350) */
    0x26, 0x5E, 0x01,       /*   Logical Maximum (350) */
    0x36, 0x88, 0xFA,       /*   Physical Minimum (-1400) */
    0x46, 0x78, 0x05,       /*   Physical Maximum (1400) */
    0x55, 0x0C,             /*   Unit Exponent (-4) */
    0x65, 0x11,             /*   Unit (cm) */
    0x09, 0x30, 0x09, 0x31, /*   Usage (X), Usage (Y) */
    0x09, 0x32,             /*   Usage (Z) */
    0x75, 0x10, 0x95, 0x03, /*   Report Size (16), Report Count (3) */
    0x81, 0x06,             /*   Input (Data, Var, Rel) */
    0xC0,                   /*  End Collection */
    0xA1, 0x00,             /*  Collection (Physical) */
    0x85, 0x02,             /*   Report ID (2) */
    0x09, 0x33, 0x09, 0x34, /*   Usage (Rx), Usage (Ry) */
    0x09, 0x35,             /*   Usage (Rz) */
    0x75, 0x10, 0x95, 0x03, /*   Report Size (16), Report Count (3) */
    0x81, 0x06,             /*   Input (Data, Var, Rel) */
    0xC0,                   /*  End Collection */
    0xA1, 0x02,             /*  Collection (Logical) */
    0x85, 0x03,             /*   Report ID (3) */
    0x05, 0x09,             /*   Usage Page (Button) */
    0x19, 0x01, 0x29, 0x02, /*   Usage Minimum (1), Usage Maximum (2) */
    0x15, 0x00, 0x25, 0x01, /*   Logical Minimum (0), Logical Maximum (1) */
    0x35, 0x00, 0x45, 0x01, /*   Physical Minimum (0), Physical Maximum (1) */
    0x75, 0x01, 0x95, 0x02, /*   Report Size (1), Report Count (2) */
    0x81, 0x02,             /*   Input (Data, Var, Abs) */
    0x95, 0x0E, 0x81, 0x03, /*   Report Count (14), Input (Const) */
    0xC0,                   /*  End Collection */
    0xA1, 0x02,             /*  Collection (Logical) */
    0x85, 0x04,             /*   Report ID (4) */
    0x05, 0x08, 0x09, 0x4B, /*   Usage Page (LED), Usage (Generic Indicator) */
    0x15, 0x00, 0x25, 0x01, /*   Logical 0..1 */
    0x95, 0x01, 0x75, 0x01, /*   Report Count (1), Report Size (1) */
    0x91, 0x02,             /*   Output (Data, Var, Abs) */
    0x95, 0x01, 0x75, 0x07, /*   Report Count (1), Report Size (7) */
    0x91, 0x03,             /*   Output (Const) */
    0xC0,                   /*  End Collection */
    0x06, 0x00, 0xFF,       /*  Usage Page (Vendor 0xFF00) */
    0x09, 0x01,             /*  Usage (1) */
    0xA1, 0x02,             /*  Collection (Logical) */
    0x15, 0x80, 0x25, 0x7F, /*   Logical -128..127 */
    0x75, 0x08, 0x09, 0x3A, /*   Report Size (8), Usage (0x3A) */
    0xA1, 0x02,             /*   Collection (Logical) */
    0x85, 0x05, 0x09, 0x20, /*    Report ID (5), Usage (0x20) */
    0x95, 0x01, 0xB1, 0x02, /*    Report Count (1), Feature (Data, Var, Abs) */
    0xC0,                   /*   End Collection */
    0xC0,                   /*  End Collection */
    0xC0,                   /* End Collection */
};

/* Combined family (Wireless): one report 1 with all six axes, +-350. */
static const uint8_t desc_combined[] = {
    0x05, 0x01, 0x09, 0x08, 0xA1, 0x01,             /* Generic Desktop, Multi-axis Controller, App */
    0xA1, 0x00, 0x85, 0x01,                         /*  Physical, Report ID (1) */
    0x16, 0xA2, 0xFE, 0x26, 0x5E, 0x01,             /*  Logical -350..350 */
    0x09, 0x30, 0x09, 0x31, 0x09, 0x32,             /*  X Y Z */
    0x09, 0x33, 0x09, 0x34, 0x09, 0x35,             /*  Rx Ry Rz */
    0x75, 0x10, 0x95, 0x06, 0x81, 0x02,             /*  16 bits x 6, Input (Data, Var, Abs) */
    0xC0,                                           /*  End Collection */
    0xA1, 0x02, 0x85, 0x03, 0x05, 0x09,             /*  Logical, Report ID (3), Button page */
    0x19, 0x01, 0x29, 0x02, 0x15, 0x00, 0x25, 0x01, /*  buttons 1..2, 0..1 */
    0x75, 0x01, 0x95, 0x02, 0x81, 0x02,             /*  2 bits */
    0x95, 0x0E, 0x81, 0x03, 0xC0,                   /*  padding, End Collection */
    0xC0,                                           /* End Collection */
};

/* +-500 with a Usage Minimum/Maximum range for the axes, 4-byte usages with their own
 * page, and a Push/Pop that must not leak the pushed range. */
static const uint8_t desc_500[] = {
    0x05, 0x01, 0x09, 0x08, 0xA1, 0x01, /* Generic Desktop, Multi-axis Controller, App */
    0x85, 0x01,                         /*  Report ID (1) */
    0x16, 0x0C, 0xFE, 0x26, 0xF4, 0x01, /*  Logical -500..500 */
    0xA4,                               /*  Push */
    0x15, 0x00, 0x26, 0xFF, 0x00,       /*   Logical 0..255 */
    0xB4,                               /*  Pop */
    0x75, 0x10, 0x95, 0x03,             /*  16 bits x 3 */
    0x19, 0x30, 0x29, 0x32,             /*  Usage Minimum (X), Usage Maximum (Z) */
    0x81, 0x02,                         /*  Input */
    0x85, 0x02,                         /*  Report ID (2) */
    0x05, 0x09,                         /*  Usage Page (Button): the next usages carry their own */
    0x0B, 0x33, 0x00, 0x01, 0x00,       /*  Usage (Generic Desktop: Rx), 4 bytes */
    0x0B, 0x34, 0x00, 0x01, 0x00,       /*  Usage (Ry) */
    0x0B, 0x35, 0x00, 0x01, 0x00,       /*  Usage (Rz) */
    0x81, 0x02,                         /*  Input */
    0xC0,                               /* End Collection */
};

static void expect_range(const smRange *r, int lo, int hi) {
  for (int a = 0; a < SM_NAXES; a++) {
    cr_expect_eq(r->lo[a], lo, "axis %d: lo %d, expected %d", a, r->lo[a], lo);
    cr_expect_eq(r->hi[a], hi, "axis %d: hi %d, expected %d", a, r->hi[a], hi);
  }
}

Test(spacemouse_desc, split_350) {
  smRange r;
  cr_assert_eq(sm_parse_report_descriptor(desc_split, sizeof desc_split, &r), 0, "%s", tk_errmsg());
  expect_range(&r, -350, 350);
}

Test(spacemouse_desc, combined_350) {
  smRange r;
  cr_assert_eq(sm_parse_report_descriptor(desc_combined, sizeof desc_combined, &r), 0, "%s", tk_errmsg());
  expect_range(&r, -350, 350);
}

Test(spacemouse_desc, range_500_usage_ranges_push_pop) {
  smRange r;
  cr_assert_eq(sm_parse_report_descriptor(desc_500, sizeof desc_500, &r), 0, "%s", tk_errmsg());
  expect_range(&r, -500, 500);
}

static void expect_desc_error(const uint8_t *d, size_t n, const char *what) {
  smRange r;
  int rc = sm_parse_report_descriptor(d, n, &r);
  cr_expect_eq(rc, TK_EFORMAT, "%s: rc %d", what, rc);
  cr_expect(strstr(tk_errmsg(), "report descriptor") != NULL, "%s: message '%s'", what, tk_errmsg());
  printf("%s -> %s\n", what, tk_errmsg());
}

Test(spacemouse_desc, refusals) {
  expect_desc_error(NULL, 0, "empty");
  /* every truncation before the end of the axes' Input item is refused (cut items or
   * missing axes); a cut inside an item says so */
  for (size_t n = 1; n < 34; n++) {
    smRange r;
    cr_expect_lt(sm_parse_report_descriptor(desc_combined, n, &r), 0, "truncated to %zu bytes was accepted",
                 n);
  }
  expect_desc_error(desc_combined, 12, "cut inside Logical Minimum");
  cr_expect(strstr(tk_errmsg(), "runs past the end"), "%s", tk_errmsg());
  /* axes without any Logical Minimum/Maximum */
  static const uint8_t no_range[] = {0x05, 0x01, 0x09, 0x08, 0xA1, 0x01, 0x85, 0x01, 0x19, 0x30,
                                     0x29, 0x35, 0x75, 0x10, 0x95, 0x06, 0x81, 0x02, 0xC0};
  expect_desc_error(no_range, sizeof no_range, "no logical range");
  /* a range that is not centred on 0 */
  static const uint8_t unsigned_range[] = {0x05, 0x01, 0x09, 0x08, 0xA1, 0x01, 0x85, 0x01,
                                           0x15, 0x00, 0x26, 0xBC, 0x02, 0x19, 0x30, 0x29,
                                           0x35, 0x75, 0x10, 0x95, 0x06, 0x81, 0x02, 0xC0};
  expect_desc_error(unsigned_range, sizeof unsigned_range, "0..700");
  /* translation only */
  static const uint8_t three_axes[] = {0x05, 0x01, 0x09, 0x08, 0xA1, 0x01, 0x85, 0x01, 0x16,
                                       0xA2, 0xFE, 0x26, 0x5E, 0x01, 0x19, 0x30, 0x29, 0x32,
                                       0x75, 0x10, 0x95, 0x03, 0x81, 0x02, 0xC0};
  expect_desc_error(three_axes, sizeof three_axes, "three axes");
  /* 8-bit axes cannot be read as int16 */
  static const uint8_t eight_bit[] = {0x05, 0x01, 0x09, 0x08, 0xA1, 0x01, 0x85, 0x01, 0x15, 0x81, 0x25, 0x7F,
                                      0x19, 0x30, 0x29, 0x35, 0x75, 0x08, 0x95, 0x06, 0x81, 0x02, 0xC0};
  expect_desc_error(eight_bit, sizeof eight_bit, "8-bit axes");
  /* a Pop with nothing pushed */
  static const uint8_t pop_underflow[] = {0xB4, 0xC0};
  expect_desc_error(pop_underflow, sizeof pop_underflow, "pop without push");
}

/* ---- device table ---- */
Test(spacemouse_table, reference_ids) {
  static const struct {
    uint16_t vid, pid;
    smFamily fam;
  } ids[] = {
      {0x046D, 0xC626, SM_SPLIT},    {0x046D, 0xC628, SM_SPLIT},    {0x046D, 0xC627, SM_SPLIT},
      {0x046D, 0xC625, SM_SPLIT},    {0x046D, 0xC629, SM_SPLIT},    {0x046D, 0xC62B, SM_SPLIT},
      {0x256F, 0xC62E, SM_COMBINED}, {0x256F, 0xC62F, SM_COMBINED}, {0x256F, 0xC631, SM_COMBINED},
      {0x256F, 0xC632, SM_COMBINED}, {0x256F, 0xC633, SM_COMBINED}, {0x256F, 0xC635, SM_SPLIT},
      {0x256F, 0xC636, SM_COMBINED}, {0x256F, 0xC638, SM_COMBINED}, {0x256F, 0xC63A, SM_COMBINED},
      {0x256F, 0xC652, SM_COMBINED},
  };
  int n;
  sm_device_table(&n);
  cr_expect_eq(n, (int)(sizeof ids / sizeof ids[0]));
  char list[512];
  sm_device_list(list, sizeof list);
  for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++) {
    const smDevice *d = sm_device_find(ids[i].vid, ids[i].pid);
    cr_assert_not_null(d, "%04x:%04x missing", ids[i].vid, ids[i].pid);
    cr_expect_eq(d->family, ids[i].fam, "%04x:%04x (%s): wrong family", ids[i].vid, ids[i].pid, d->name);
    char id[16];
    snprintf(id, sizeof id, "%04x:%04x", ids[i].vid, ids[i].pid);
    cr_expect(strstr(list, id) != NULL, "%s not in the list '%s'", id, list);
  }
  cr_expect_str_eq(sm_device_find(0x256F, 0xC635)->name, "SpaceMouse Compact");
  cr_expect_str_eq(sm_device_find(0x046D, 0xC626)->name, "SpaceNavigator");
  cr_expect_str_eq(sm_device_find(0x256F, 0xC62F)->name, "SpaceMouse Wireless");
  cr_expect_null(sm_device_find(0x256F, 0x1234));
  cr_expect_null(sm_device_find(0x045E, 0x028E)); /* an Xbox pad */
}

/* ---- reports and the latched state ---- */
static const smRange r350 = {{-350, -350, -350, -350, -350, -350}, {350, 350, 350, 350, 350, 350}};

static void expect_motion(const capInputState *s, const double want[6], const char *what) {
  double maxd = 0;
  for (int a = 0; a < 6; a++)
    maxd = fmax(maxd, fabs(s->motion[a] - want[a]));
  cr_expect_lt(maxd, 1e-12,
               "%s: motion %.4f %.4f %.4f %.4f %.4f %.4f, expected %.4f %.4f %.4f %.4f %.4f %.4f", what,
               s->motion[0], s->motion[1], s->motion[2], s->motion[3], s->motion[4], s->motion[5], want[0],
               want[1], want[2], want[3], want[4], want[5]);
}

/* x 100, y -350, z 175 / rx -175, ry 350, rz 35 in the HID frame */
static const uint8_t rep_trans[] = {0x01, 0x64, 0x00, 0xA2, 0xFE, 0xAF, 0x00};
static const uint8_t rep_rot[] = {0x02, 0x51, 0xFF, 0x5E, 0x01, 0x23, 0x00};
/* in cap.h's frame: x = X, y = -Y, z = -Z, rx = Rx, ry = -Ry, rz = -Rz */
static const double want_trans[6] = {100.0 / 350, 1.0, -0.5, 0, 0, 0};
static const double want_both[6] = {100.0 / 350, 1.0, -0.5, -0.5, -1.0, -0.1};

Test(spacemouse_report, split_halves_latch) {
  smState st = {0};
  capInputState in;
  sm_state_to_input(&st, &r350, &in);
  cr_expect_eq(in.six_dof, 1);
  expect_motion(&in, (const double[6]){0}, "rest");
  cr_assert_eq(sm_parse_report(&st, rep_trans, sizeof rep_trans), 1);
  sm_state_to_input(&st, &r350, &in);
  expect_motion(&in, want_trans, "translation only");
  cr_assert_eq(sm_parse_report(&st, rep_rot, sizeof rep_rot), 1);
  sm_state_to_input(&st, &r350, &in);
  expect_motion(&in, want_both, "translation then rotation");
  /* a new rotation keeps the translation */
  static const uint8_t rot2[] = {0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  sm_parse_report(&st, rot2, sizeof rot2);
  sm_state_to_input(&st, &r350, &in);
  expect_motion(&in, want_trans, "rotation back to 0");
  cr_expect_eq(in.pad.buttons, 0u);
  for (int a = 0; a < CAP_NAXES; a++)
    cr_expect_eq(in.pad.axis[a], 0.0);
}

Test(spacemouse_report, combined_13_bytes) {
  static const uint8_t rep[] = {0x01, 0x64, 0x00, 0xA2, 0xFE, 0xAF, 0x00, 0x51, 0xFF, 0x5E, 0x01, 0x23, 0x00};
  smState st = {0};
  capInputState in;
  cr_assert_eq(sm_parse_report(&st, rep, sizeof rep), 1);
  sm_state_to_input(&st, &r350, &in);
  expect_motion(&in, want_both, "combined");
}

Test(spacemouse_report, range_500_and_clamping) {
  static const smRange r500 = {{-500, -500, -500, -500, -500, -500}, {500, 500, 500, 500, 500, 500}};
  /* x 250, y 500, z -125, rx 600 (past the range: clamped), ry -500, rz -32768 */
  static const uint8_t rep[] = {0x01, 0xFA, 0x00, 0xF4, 0x01, 0x83, 0xFF, 0x58, 0x02, 0x0C, 0xFE, 0x00, 0x80};
  smState st = {0};
  capInputState in;
  sm_parse_report(&st, rep, sizeof rep);
  sm_state_to_input(&st, &r500, &in);
  expect_motion(&in, (const double[6]){0.5, -1.0, 0.25, 1.0, 1.0, 1.0}, "+-500");
  /* an asymmetric range normalizes each side by its own end */
  smRange ra = r350;
  ra.lo[SM_X] = -700;
  static const uint8_t left[] = {0x01, 0xA2, 0xFE, 0x00, 0x00, 0x00, 0x00};
  sm_parse_report(&st, left, sizeof left);
  sm_state_to_input(&st, &ra, &in);
  cr_expect_float_eq(in.motion[0], -0.5, 1e-12);
}

Test(spacemouse_report, buttons_latched) {
  smState st = {0};
  capInputState in;
  static const uint8_t left[] = {0x03, 0x01}, right[] = {0x03, 0x02}, both[] = {0x03, 0x03},
                       none[] = {0x03, 0x00};
  sm_parse_report(&st, left, sizeof left);
  sm_state_to_input(&st, &r350, &in);
  cr_expect_eq(in.pad.buttons, (unsigned)CAP_BTN_RB, "left held: gripper (RB)");
  /* motion reports do not release the button */
  sm_parse_report(&st, rep_trans, sizeof rep_trans);
  sm_parse_report(&st, rep_rot, sizeof rep_rot);
  sm_state_to_input(&st, &r350, &in);
  cr_expect_eq(in.pad.buttons, (unsigned)CAP_BTN_RB, "still held after motion reports");
  expect_motion(&in, want_both, "motion with a button held");
  sm_parse_report(&st, right, sizeof right);
  sm_state_to_input(&st, &r350, &in);
  cr_expect_eq(in.pad.buttons, (unsigned)CAP_BTN_A, "right: end as success (A)");
  sm_parse_report(&st, both, sizeof both);
  sm_state_to_input(&st, &r350, &in);
  cr_expect_eq(in.pad.buttons, (unsigned)(CAP_BTN_RB | CAP_BTN_A));
  sm_parse_report(&st, none, sizeof none);
  sm_state_to_input(&st, &r350, &in);
  cr_expect_eq(in.pad.buttons, 0u);
  /* the Pro's 4-byte mask: bits 0 and 1 keep their roles, the rest is ignored */
  static const uint8_t pro_menu[] = {0x03, 0x01, 0x00, 0x00, 0x00},
                       pro_other[] = {0x03, 0x00, 0x30, 0x01, 0x80};
  sm_parse_report(&st, pro_menu, sizeof pro_menu);
  sm_state_to_input(&st, &r350, &in);
  cr_expect_eq(in.pad.buttons, (unsigned)CAP_BTN_RB);
  cr_expect_eq(st.buttons, 1u);
  sm_parse_report(&st, pro_other, sizeof pro_other);
  sm_state_to_input(&st, &r350, &in);
  cr_expect_eq(in.pad.buttons, 0u);
  cr_expect_eq(st.buttons, 0x80013000u);
}

Test(spacemouse_report, short_and_foreign_reports) {
  smState st = {0};
  sm_parse_report(&st, rep_trans, sizeof rep_trans);
  smState before = st;
  static const uint8_t short1[] = {0x01, 0x64, 0x00}, short2[] = {0x02, 0x01}, short3[] = {0x03};
  static const uint8_t battery[] = {0x17, 0x64, 0x00};
  cr_expect_eq(sm_parse_report(&st, short1, sizeof short1), TK_EFORMAT);
  cr_expect_eq(sm_parse_report(&st, short2, sizeof short2), TK_EFORMAT);
  cr_expect_eq(sm_parse_report(&st, short3, sizeof short3), TK_EFORMAT);
  cr_expect_eq(sm_parse_report(&st, battery, sizeof battery), 0);
  cr_expect_eq(sm_parse_report(&st, battery, 0), TK_EFORMAT);
  cr_expect_eq(memcmp(&st, &before, sizeof st), 0, "a refused report changed the state");
}

/* ---- the libusb backend against an emulated device ---- */

/* USB descriptors of an emulated SpaceMouse: device (18) + configuration (9) + HID
 * interface (9) + HID class descriptor (9, giving the report descriptor's length) +
 * interrupt IN endpoint 0x81 (7). As sysfs "descriptors" shows them: bus-endian. */
static size_t usb_descriptors(uint8_t *out, uint16_t vid, uint16_t pid, size_t report_desc_len, int ep_len) {
  static const uint8_t d[18 + 34] = {
      0x12, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x08,       /* device: USB 2.0, ep0 8 bytes */
      0x00, 0x00, 0x00, 0x00,                               /* idVendor, idProduct (below) */
      0x37, 0x04, 0x01, 0x02, 0x00, 0x01,                   /* bcdDevice, strings, 1 configuration */
      0x09, 0x02, 0x22, 0x00, 0x01, 0x01, 0x00, 0xA0, 0x32, /* configuration 1, 34 bytes, 1 interface */
      0x09, 0x04, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00, /* interface 0: 1 endpoint, class HID */
      0x09, 0x21, 0x11, 0x01, 0x00, 0x01, 0x22, 0x00, 0x00, /* HID 1.11, one report descriptor (length) */
      0x07, 0x05, 0x81, 0x03, 0x00, 0x00, 0x01,             /* endpoint 0x81, interrupt (size), 1 ms */
  };
  memcpy(out, d, sizeof d);
  out[8] = (uint8_t)vid, out[9] = (uint8_t)(vid >> 8), out[10] = (uint8_t)pid, out[11] = (uint8_t)(pid >> 8);
  out[43] = (uint8_t)report_desc_len, out[44] = (uint8_t)(report_desc_len >> 8);
  out[49] = (uint8_t)ep_len;
  return sizeof d;
}

static void hex(char *out, const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++)
    sprintf(out + 2 * i, "%02X", b[i]);
  out[2 * n] = 0;
}

/* The umockdev description of a USB device at bus 1, address devnum (what umockdev-record
 * prints for a real one, cut to what libusb reads). */
static char *usb_device_text(int devnum, uint16_t vid, uint16_t pid, const char *product,
                             size_t report_desc_len, int ep_len) {
  uint8_t d[64];
  size_t n = usb_descriptors(d, vid, pid, report_desc_len, ep_len);
  char h[160];
  hex(h, d, n);
  char *s = malloc(4096);
  snprintf(s, 4096,
           "P: /devices/pci0000:00/0000:00:14.0/usb1/1-%d\n"
           "N: bus/usb/001/%03d=%s\n"
           "E: DEVNAME=/dev/bus/usb/001/%03d\n"
           "E: DEVTYPE=usb_device\n"
           "E: DRIVER=usb\n"
           "E: PRODUCT=%x/%x/437\n"
           "E: TYPE=0/0/0\n"
           "E: BUSNUM=001\n"
           "E: DEVNUM=%03d\n"
           "E: MAJOR=189\n"
           "E: MINOR=%d\n"
           "E: SUBSYSTEM=usb\n"
           "A: busnum=1\\n\n"
           "A: devnum=%d\\n\n"
           "A: speed=12\\n\n"
           "A: bConfigurationValue=1\\n\n"
           "A: bNumConfigurations=1\\n\n"
           "A: idVendor=%04x\\n\n"
           "A: idProduct=%04x\\n\n"
           "A: manufacturer=3Dconnexion\\n\n"
           "A: product=%s\\n\n"
           "A: dev=189:%d\\n\n"
           "H: descriptors=%s\n",
           devnum, devnum, h, devnum, vid, pid, devnum, devnum - 1, devnum, vid, pid, product, devnum - 1, h);
  return s;
}

static UMockdevTestbed *testbed(void) {
  UMockdevTestbed *tb = umockdev_testbed_new();
  cr_assert_not_null(tb);
  /* (true only once a testbed exists) */
  cr_assert(umockdev_in_mock_environment(),
            "the umockdev tests need the preload library: run this test through umockdev-wrapper");
  return tb;
}

static void add_device(UMockdevTestbed *tb, const char *text) {
  GError *err = NULL;
  cr_assert(umockdev_testbed_add_from_string(tb, text, &err), "add_from_string: %s",
            err ? err->message : "?");
}

Test(spacemouse_usb, no_device) {
  UMockdevTestbed *tb = testbed();
  capInput in = {0};
  int rc = cap_spacemouse_driver.open(&in, NULL);
  cr_expect_eq(rc, TK_ENOTFOUND, "rc %d: %s", rc, tk_errmsg());
  printf("no device: %s\n", tk_errmsg());
  cr_expect(strstr(tk_errmsg(), "256f:c635") && strstr(tk_errmsg(), "046d:c626"), "%s", tk_errmsg());
  cr_expect_null(in.impl);
  rc = cap_spacemouse_driver.open(&in, "256f:c635");
  cr_expect_eq(rc, TK_ENOTFOUND);
  cr_expect(strstr(tk_errmsg(), "SpaceMouse Compact"), "%s", tk_errmsg());
  cr_expect_eq(cap_spacemouse_driver.open(&in, "bogus"), TK_EINVAL);
  cr_expect_eq(cap_spacemouse_driver.open(&in, "256f:"), TK_EINVAL);
  cr_expect_eq(cap_spacemouse_driver.open(&in, "256f:c635x"), TK_EINVAL);
  cr_expect_eq(cap_spacemouse_driver.open(&in, "1256f:c635"), TK_EINVAL);
  /* whole and in range, each half (strtoul took a sign, blanks and 64-bit wrap-around) */
  const char *bad[] = {"-256f:c635",
                       "256f:-c635",
                       " 256f:c635",
                       "256f: c635",
                       "+256f:c635",
                       "256f:ffffffffffffc635",
                       "ffffffffffff256f:c635",
                       ":c635",
                       "256f:c635:1",
                       "256f:0x"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    cr_expect_eq(cap_spacemouse_driver.open(&in, bad[i]), TK_EINVAL, "'%s' accepted", bad[i]);
    cr_expect(strstr(tk_errmsg(), "VID:PID"), "%s", tk_errmsg());
  }
  cr_expect_eq(cap_spacemouse_driver.open(&in, "0x256F:0xC635"), TK_ENOTFOUND, "hex with 0x: %s",
               tk_errmsg());
  cap_spacemouse_driver.close(&in); /* closing what never opened is fine */
  g_object_unref(tb);
}

/* ---- the ioctl record (umockdev-record's text format) ----
 * One line per URB as umockdev-record writes it when libusb reaps with
 * USBDEVFS_REAPURBNDELAY:  NAME ret type endpoint status flags buffer_length actual_length
 * error_count data. A control transfer (type 2) is recorded with its whole buffer: the
 * 8-byte setup packet, then the data stage; an IN interrupt transfer (type 1, endpoint
 * 0x81) with the bytes the device sent. */
typedef struct {
  char s[16384];
  size_t n;
} Text;

static void text_add(Text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(Text *t, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(t->s + t->n, sizeof t->s - t->n, fmt, ap);
  va_end(ap);
  cr_assert(w > 0 && (size_t)w < sizeof t->s - t->n, "record text too long");
  t->n += (size_t)w;
}

static void rec_descriptor(Text *t, const uint8_t *desc, size_t len) {
  uint8_t b[8 + 512];
  const uint8_t setup[8] = {0x81, 0x06, 0x00, 0x22, 0x00, 0x00, (uint8_t)len, (uint8_t)(len >> 8)};
  memcpy(b, setup, 8);
  memcpy(b + 8, desc, len);
  char h[2 * sizeof b + 1];
  hex(h, b, 8 + len);
  text_add(t, "USBDEVFS_REAPURBNDELAY 0 2 0 0 0 %zu %zu 0 %s\n", 8 + len, len, h);
}

static void rec_report(Text *t, int ep_len, const uint8_t *rep, size_t len) {
  char h[130];
  hex(h, rep, len);
  text_add(t, "USBDEVFS_REAPURBNDELAY 0 1 129 0 0 %d %zu 0 %s\n", ep_len, len, h);
}

/* ---- an in-order usbdevfs replayer for that record text ----
 * umockdev 0.17's own replay (umockdev_testbed_load_ioctl) cannot answer a control IN
 * transfer (see tree_replay_stops_at_descriptor), so this handler, attached with
 * umockdev_testbed_attach_ioctl, replays the same lines in recorded order and answers the
 * rest of usbdevfs like the kernel: a kernel driver ("usbhid") bound to interface 0 until
 * USBDEVFS_DISCONNECT, claims refused while it is bound, URBs with no record left stay
 * pending until DISCARDURB (libusb's timeout), and after unplug pending URBs end with
 * -ESHUTDOWN and every ioctl fails with ENODEV. It runs in umockdev's worker thread; the
 * test reads only the atomics. */
typedef struct {
  int type, ep, status, buflen, actual;
  uint8_t data[8 + 512];
} Rec;

typedef struct {
  UMockdevIoctlData *urb, *buf; /* resolved at SUBMITURB, our references */
  int rec;                      /* matched record, -1: none left (stays pending) */
  int discarded;
} Flight;

typedef struct {
  Rec rec[16];
  int nrec, next;
  Flight fl[8];
  int nfl;
  int driver_bound; /* usbhid holds interface 0 */
  atomic_int unplugged, detached, reattached, discards, mismatches, reaped;
  /* gated: records from index `open_to` on are not sent yet (the device is still): a URB
   * submitted meanwhile stays pending until libusb's timeout discards it, as a real idle
   * device's; the test opens the gate record by record, as a hand moves */
  int gated;
  atomic_int open_to;
} Replay;

static void replay_load(Replay *rp, const char *text, int driver_bound) {
  memset(rp, 0, sizeof *rp);
  rp->driver_bound = driver_bound;
  for (const char *l = text; *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : l + strlen(l)) {
    if (*l != 'U') continue; /* @DEV header, comments */
    char name[64];
    int ret, flags, err, off = 0;
    Rec *r = &rp->rec[rp->nrec];
    cr_assert_eq(sscanf(l, "%63s %d %d %d %d %d %d %d %d %n", name, &ret, &r->type, &r->ep, &r->status,
                        &flags, &r->buflen, &r->actual, &err, &off),
                 9, "bad record line: %.60s", l);
    int nb = 0;
    for (const char *p = l + off; p[0] && p[0] != '\n' && nb < (int)sizeof r->data; p += 2) {
      unsigned v;
      cr_assert_eq(sscanf(p, "%2x", &v), 1);
      r->data[nb++] = (uint8_t)v;
    }
    rp->nrec++;
  }
}

static void flight_drop(Replay *rp, int i) {
  g_object_unref(rp->fl[i].urb);
  if (rp->fl[i].buf) g_object_unref(rp->fl[i].buf);
  rp->fl[i] = rp->fl[--rp->nfl];
}

static gboolean replay_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *client, gpointer user) {
  (void)base;
  Replay *rp = user;
  gulong req = umockdev_ioctl_client_get_request(client);
  UMockdevIoctlData *arg = umockdev_ioctl_client_get_arg(client);
  int unplugged = atomic_load(&rp->unplugged);
  GError *err = NULL;

  if (req == USBDEVFS_REAPURB || req == USBDEVFS_REAPURBNDELAY) {
    int pick = -1;
    for (int i = 0; i < rp->nfl && pick < 0; i++)
      if (rp->fl[i].discarded || unplugged) pick = i;
    for (int i = 0; i < rp->nfl && pick < 0; i++)
      if (rp->fl[i].rec >= 0) pick = i;
    if (pick < 0) {
      umockdev_ioctl_client_complete(client, -1, unplugged ? ENODEV : EAGAIN);
      return TRUE;
    }
    Flight *f = &rp->fl[pick];
    struct usbdevfs_urb *u = (struct usbdevfs_urb *)f->urb->data;
    if (f->discarded || unplugged) {
      u->status = f->discarded ? -ENOENT : -ESHUTDOWN;
      u->actual_length = 0;
    } else {
      const Rec *r = &rp->rec[f->rec];
      u->status = r->status;
      u->actual_length = r->actual;
      if (r->type == USBDEVFS_URB_TYPE_CONTROL) /* data stage after the setup packet */
        memcpy(f->buf->data + 8, r->data + 8, (size_t)r->actual);
      else if (r->ep & 0x80)
        memcpy(f->buf->data, r->data, (size_t)r->actual);
      atomic_fetch_add(&rp->reaped, 1);
    }
    UMockdevIoctlData *where = umockdev_ioctl_data_resolve(arg, 0, sizeof(void *), &err);
    cr_assert_not_null(where);
    umockdev_ioctl_data_set_ptr(where, 0, f->urb);
    g_object_unref(where);
    umockdev_ioctl_client_complete(client, 0, 0);
    flight_drop(rp, pick);
    return TRUE;
  }
  if (unplugged) {
    umockdev_ioctl_client_complete(client, -1, ENODEV);
    return TRUE;
  }
  switch (req) {
  case USBDEVFS_SUBMITURB: {
    UMockdevIoctlData *ud = umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_urb), &err);
    cr_assert_not_null(ud);
    struct usbdevfs_urb *u = (struct usbdevfs_urb *)ud->data;
    UMockdevIoctlData *bd =
        umockdev_ioctl_data_resolve(ud, offsetof(struct usbdevfs_urb, buffer), (gsize)u->buffer_length, &err);
    int rec = -1;
    if (rp->gated && rp->next >= atomic_load(&rp->open_to)) {
      /* the device is still: nothing to send yet */
    } else if (rp->next < rp->nrec) {
      const Rec *r = &rp->rec[rp->next];
      int ok = r->type == u->type && r->ep == u->endpoint && r->buflen == u->buffer_length && bd;
      if (ok && r->type == USBDEVFS_URB_TYPE_CONTROL)
        ok = memcmp(bd->data, r->data, 8) == 0; /* the request */
      if (!ok) {
        atomic_fetch_add(&rp->mismatches, 1);
        fprintf(stderr,
                "replay: URB type %d ep 0x%02x len %d does not match record %d (type %d ep 0x%02x len %d)\n",
                u->type, u->endpoint, u->buffer_length, rp->next, r->type, r->ep, r->buflen);
        g_object_unref(ud);
        if (bd) g_object_unref(bd);
        umockdev_ioctl_client_complete(client, -1, EINVAL);
        return TRUE;
      }
      rec = rp->next++;
    } else if (u->type == USBDEVFS_URB_TYPE_CONTROL) {
      atomic_fetch_add(&rp->mismatches, 1);
      fprintf(stderr, "replay: a control URB after the end of the record\n");
    }
    cr_assert_lt(rp->nfl, 8, "too many URBs in flight");
    rp->fl[rp->nfl++] = (Flight){ud, bd, rec, 0};
    umockdev_ioctl_client_complete(client, 0, 0);
    return TRUE;
  }
  case USBDEVFS_DISCARDURB: { /* the argument is the URB's address itself */
    gulong addr = *(gulong *)arg->data;
    for (int i = 0; i < rp->nfl; i++)
      if (rp->fl[i].urb->client_addr == addr && !rp->fl[i].discarded) {
        rp->fl[i].discarded = 1;
        atomic_fetch_add(&rp->discards, 1);
        umockdev_ioctl_client_complete(client, 0, 0);
        return TRUE;
      }
    umockdev_ioctl_client_complete(client, -1, EINVAL);
    return TRUE;
  }
  case USBDEVFS_GETDRIVER: {
    int bound = rp->driver_bound && !atomic_load(&rp->detached);
    if (!bound) {
      umockdev_ioctl_client_complete(client, -1, ENODATA);
      return TRUE;
    }
    UMockdevIoctlData *gd = umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_getdriver), &err);
    cr_assert_not_null(gd);
    snprintf(((struct usbdevfs_getdriver *)gd->data)->driver, USBDEVFS_MAXDRIVERNAME + 1, "usbhid");
    g_object_unref(gd);
    umockdev_ioctl_client_complete(client, 0, 0);
    return TRUE;
  }
  case USBDEVFS_IOCTL: { /* DISCONNECT / CONNECT the kernel driver */
    UMockdevIoctlData *id = umockdev_ioctl_data_resolve(arg, 0, sizeof(struct usbdevfs_ioctl), &err);
    cr_assert_not_null(id);
    int code = ((struct usbdevfs_ioctl *)id->data)->ioctl_code;
    g_object_unref(id);
    int bound = rp->driver_bound && !atomic_load(&rp->detached);
    if (code == USBDEVFS_DISCONNECT && bound) {
      atomic_store(&rp->detached, 1);
      umockdev_ioctl_client_complete(client, 0, 0);
    } else if (code == USBDEVFS_CONNECT && rp->driver_bound && !bound) {
      atomic_store(&rp->detached, 0);
      atomic_fetch_add(&rp->reattached, 1);
      umockdev_ioctl_client_complete(client, 0, 0);
    } else {
      umockdev_ioctl_client_complete(client, -1, code == USBDEVFS_DISCONNECT ? ENODATA : EINVAL);
    }
    return TRUE;
  }
  case USBDEVFS_CLAIMINTERFACE: /* the kernel refuses while usbhid holds the interface */
    umockdev_ioctl_client_complete(client, rp->driver_bound && !atomic_load(&rp->detached) ? -1 : 0, EBUSY);
    return TRUE;
  case USBDEVFS_RELEASEINTERFACE:
  case USBDEVFS_CLEAR_HALT: umockdev_ioctl_client_complete(client, 0, 0); return TRUE;
  default: /* GET_CAPABILITIES, DISCONNECT_CLAIM, ...: as an old kernel */
    umockdev_ioctl_client_complete(client, -1, ENOTTY);
    return TRUE;
  }
}

static UMockdevIoctlBase *attach_replay(UMockdevTestbed *tb, const char *devnode, Replay *rp) {
  UMockdevIoctlBase *h = umockdev_ioctl_base_new();
  g_signal_connect(h, "handle-ioctl", G_CALLBACK(replay_ioctl), rp);
  GError *err = NULL;
  cr_assert(umockdev_testbed_attach_ioctl(tb, devnode, h, &err), "attach_ioctl: %s",
            err ? err->message : "?");
  return h;
}

static void replay_free(Replay *rp) {
  while (rp->nfl)
    flight_drop(rp, 0);
}

/* Device A: a SpaceMouse Compact (split reports, +-350) at bus 1 address 2, usbhid bound.
 * It answers the descriptor request, sends translation, rotation and the left button,
 * then nothing more. */
#define SYS_A "/sys/devices/pci0000:00/0000:00:14.0/usb1/1-2" /* usb_device_text's path for address 2 */
static void record_a(Text *t) {
  static const uint8_t left[] = {0x03, 0x01};
  text_add(t, "@DEV /dev/bus/usb/001/002\n");
  rec_descriptor(t, desc_split, sizeof desc_split);
  rec_report(t, 8, rep_trans, sizeof rep_trans);
  rec_report(t, 8, rep_rot, sizeof rep_rot);
  rec_report(t, 8, left, sizeof left);
}
static void add_a(UMockdevTestbed *tb) {
  char *dev = usb_device_text(2, 0x256F, 0xC635, "SpaceMouse Compact", sizeof desc_split, 8);
  add_device(tb, dev);
  free(dev);
}

/* Device B: a SpaceMouse Wireless on its cable (combined 13-byte reports, +-500) at bus 1
 * address 3: x 250, y 500, z -125, rz 100, then the right button. */
static uint8_t desc_b[sizeof desc_combined];
static const double want_b[6] = {0.5, -1.0, 0.25, 0, 0, -0.2};
static void record_b(Text *t) {
  memcpy(desc_b, desc_combined, sizeof desc_b);
  static const uint8_t range500[] = {0x16, 0x0C, 0xFE, 0x26, 0xF4, 0x01}; /* Logical -500..500 */
  memcpy(desc_b + 10, range500, sizeof range500);
  static const uint8_t motion[] = {0x01, 0xFA, 0x00, 0xF4, 0x01, 0x83, 0xFF,
                                   0x00, 0x00, 0x00, 0x00, 0x64, 0x00};
  static const uint8_t right[] = {0x03, 0x02};
  text_add(t, "@DEV /dev/bus/usb/001/003\n");
  rec_descriptor(t, desc_b, sizeof desc_b);
  rec_report(t, 16, motion, sizeof motion);
  rec_report(t, 16, right, sizeof right);
}
static void add_b(UMockdevTestbed *tb) {
  char *dev = usb_device_text(3, 0x256F, 0xC62E, "SpaceMouse Wireless", sizeof desc_combined, 16);
  add_device(tb, dev);
  free(dev);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int motion_is(const capInputState *s, const double want[6]) {
  for (int a = 0; a < 6; a++)
    if (fabs(s->motion[a] - want[a]) > 1e-12) return 0;
  return 1;
}

/* Poll (as the console does, every millisecond) until the state is the wanted one or the
 * time is up; the slowest poll is kept: poll must never block on the USB side. */
static int poll_until(capInput *in, int want_conn, const double want[6], unsigned want_buttons, double secs,
                      capInputState *last, double *slowest) {
  double t_end = now_s() + secs;
  int conn = -1;
  while (now_s() < t_end) {
    double t0 = now_s();
    cr_assert_eq(cap_spacemouse_driver.poll(in, last, &conn), 0, "%s", tk_errmsg());
    *slowest = fmax(*slowest, now_s() - t0);
    if (conn == want_conn && motion_is(last, want) && last->pad.buttons == want_buttons) return 1;
    sleep_ms(1);
  }
  return 0;
}

Test(spacemouse_usb, replay_open_motion_unplug_replug, .timeout = 60) {
  UMockdevTestbed *tb = testbed();
  Replay ra, rb;
  Text ta = {.n = 0}, tbx = {.n = 0};
  record_a(&ta);
  replay_load(&ra, ta.s, 1);
  add_a(tb);
  UMockdevIoctlBase *ha = attach_replay(tb, "/dev/bus/usb/001/002", &ra);

  capInput in = {0};
  int rc = cap_spacemouse_driver.open(&in, NULL);
  cr_assert_eq(rc, 0, "open: %s", tk_errmsg());
  cr_expect_str_eq(in.desc, "SpaceMouse Compact");
  cr_expect_eq(atomic_load(&ra.detached), 1, "usbhid was not detached from the interface (auto-detach)");

  /* the three reports, latched: translation and rotation from different reports, and the
   * left button held -> RB */
  capInputState st;
  double slowest = 0;
  int ok = poll_until(&in, 1, want_both, CAP_BTN_RB, 10, &st, &slowest);
  cr_assert(ok, "state never became the recorded one: %.3f %.3f %.3f %.3f %.3f %.3f buttons %x", st.motion[0],
            st.motion[1], st.motion[2], st.motion[3], st.motion[4], st.motion[5], st.pad.buttons);
  cr_expect_eq(st.six_dof, 1);
  /* the device says nothing more: reads time out (libusb discards the URB), the state holds */
  double t_end = now_s() + 0.3;
  while (now_s() < t_end) {
    int conn;
    double t0 = now_s();
    cap_spacemouse_driver.poll(&in, &st, &conn);
    slowest = fmax(slowest, now_s() - t0);
    cr_assert(conn == 1 && motion_is(&st, want_both) && st.pad.buttons == CAP_BTN_RB, "latched state lost");
    sleep_ms(1);
  }
  cr_expect_gt(atomic_load(&ra.discards), 0, "no read ever timed out");
  cr_expect_eq(atomic_load(&ra.reaped), 4, "descriptor + 3 reports");

  /* unplug: pending URBs end with -ESHUTDOWN, then ENODEV; the device leaves sysfs */
  atomic_store(&ra.unplugged, 1);
  ok = poll_until(&in, 0, (const double[6]){0}, 0, 5, &st, &slowest);
  cr_assert(ok, "unplug not seen");
  umockdev_testbed_uevent(tb, SYS_A, "remove");
  umockdev_testbed_remove_device(tb, SYS_A);
  t_end = now_s() + 0.6; /* several re-plug attempts find nothing */
  while (now_s() < t_end) {
    int conn;
    cap_spacemouse_driver.poll(&in, &st, &conn);
    cr_assert_eq(conn, 0, "connected again without a device");
    cr_assert(motion_is(&st, (const double[6]){0}) && st.pad.buttons == 0, "state not zero while unplugged");
    sleep_ms(5);
  }

  /* re-plug, as another model at a new address: found again without a new open, the range
   * re-read from its descriptor (+-500), its combined reports parsed */
  record_b(&tbx);
  replay_load(&rb, tbx.s, 1);
  add_b(tb);
  UMockdevIoctlBase *hb = attach_replay(tb, "/dev/bus/usb/001/003", &rb);
  ok = poll_until(&in, 1, want_b, CAP_BTN_A, 10, &st, &slowest);
  cr_assert(ok, "re-plug not seen: %.3f %.3f %.3f %.3f %.3f %.3f buttons %x", st.motion[0], st.motion[1],
            st.motion[2], st.motion[3], st.motion[4], st.motion[5], st.pad.buttons);
  cr_expect_str_eq(in.desc, "SpaceMouse Wireless (cabled)");
  cr_expect_eq(atomic_load(&rb.detached), 1);
  printf("slowest poll %.3f ms\n", slowest * 1e3);
  cr_expect_lt(slowest, 0.05, "poll took %.1f ms", slowest * 1e3);

  cap_spacemouse_driver.close(&in);
  cr_expect_null(in.impl);
  cr_expect_eq(atomic_load(&rb.reattached), 1, "usbhid not given back on close");
  cr_expect_eq(atomic_load(&rb.detached), 0);
  cr_expect_eq(atomic_load(&ra.mismatches) + atomic_load(&rb.mismatches), 0,
               "URBs out of the recorded order");
  g_object_unref(tb);
  g_object_unref(ha);
  g_object_unref(hb);
  replay_free(&ra);
  replay_free(&rb);
}

Test(spacemouse_usb, open_by_vid_pid) {
  UMockdevTestbed *tb = testbed();
  Replay ra, rb;
  Text ta = {.n = 0}, tbx = {.n = 0};
  record_a(&ta);
  record_b(&tbx);
  replay_load(&ra, ta.s, 0); /* no kernel driver bound: nothing to detach or give back */
  replay_load(&rb, tbx.s, 0);
  add_a(tb);
  add_b(tb);
  UMockdevIoctlBase *ha = attach_replay(tb, "/dev/bus/usb/001/002", &ra);
  UMockdevIoctlBase *hb = attach_replay(tb, "/dev/bus/usb/001/003", &rb);
  capInput in = {0};
  cr_assert_eq(cap_spacemouse_driver.open(&in, "256F:C62E"), 0, "%s", tk_errmsg());
  cr_expect_str_eq(in.desc, "SpaceMouse Wireless (cabled)");
  capInputState st;
  double slowest = 0;
  cr_expect(poll_until(&in, 1, want_b, CAP_BTN_A, 10, &st, &slowest));
  cap_spacemouse_driver.close(&in);
  cr_expect_eq(atomic_load(&ra.reaped), 0, "the other device was touched");
  cr_expect_eq(atomic_load(&rb.reattached), 0);
  g_object_unref(tb);
  g_object_unref(ha);
  g_object_unref(hb);
  replay_free(&ra);
  replay_free(&rb);
}

/* umockdev 0.17's own replay of the same record (umockdev_testbed_load_ioctl, its ioctl
 * tree) gets libusb through enumeration (sysfs + /dev/bus/usb), open, GETDRIVER (ENODATA:
 * no driver to detach) and CLAIMINTERFACE, and stops at the HID report descriptor: the
 * tree takes a control URB for an OUT transfer, because libusb submits every control
 * transfer on endpoint 0 without the direction bit. It then insists that the whole buffer
 * (setup and the not yet filled data stage) equals the record, and a reap copies no data
 * back (a control IN would need endpoint 0x80 and an actual_length counting the setup
 * packet, which neither libusb nor a kernel recording produces). Separately, the tree's
 * USBDEVFS_IOCTL is fixed to ENOTTY, so libusb's kernel-driver detach cannot work there. */
Test(spacemouse_usb, tree_replay_stops_at_descriptor) {
  UMockdevTestbed *tb = testbed();
  Text t = {.n = 0};
  record_a(&t);
  add_a(tb);
  char path[4200];
  snprintf(path, sizeof path, "%s/a.ioctl", tt_tmpdir());
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(t.s, f);
  fclose(f);
  GError *err = NULL;
  cr_assert(umockdev_testbed_load_ioctl(tb, "/dev/bus/usb/001/002", path, &err), "%s",
            err ? err->message : "?");
  capInput in = {0};
  int rc = cap_spacemouse_driver.open(&in, NULL);
  printf("tree replay: %s\n", tk_errmsg());
  cr_expect_eq(rc, TK_EIO, "rc %d: %s", rc, tk_errmsg());
  cr_expect(strstr(tk_errmsg(),
                   "SpaceMouse Compact (256f:c635, bus 1 device 2): reading the HID report descriptor"),
            "%s", tk_errmsg());
  cap_spacemouse_driver.close(&in);
  g_object_unref(tb);
}

/* ---- the SpaceMouse through the real teleop binary ----
 * teleop runs as a user runs it, in this suite's emulated USB world (it inherits umockdev's
 * preload and testbed; its usbdevfs calls come to the replayer here): nothing registered,
 * nothing set up that the binary does not do itself. A SpaceMouse Compact: the right button
 * starts an episode (the device has no Start), the cap pushed away and lifted for a second,
 * the right button again ends it as a success; --episodes 1 then stops teleop. */
static void record_session(Text *t) {
  static const uint8_t right[] = {0x03, 0x02}, none[] = {0x03, 0x00};
  /* HID frame: y -350 (away from the user), z -175 (up) */
  static const uint8_t push[] = {0x01, 0x00, 0x00, 0xA2, 0xFE, 0x51, 0xFF};
  static const uint8_t rest[] = {0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00};
  text_add(t, "@DEV /dev/bus/usb/001/002\n");
  rec_descriptor(t, desc_split, sizeof desc_split); /* 0 */
  rec_report(t, 8, right, sizeof right);            /* 1: start */
  rec_report(t, 8, none, sizeof none);              /* 2 */
  rec_report(t, 8, push, sizeof push);              /* 3 */
  rec_report(t, 8, rest, sizeof rest);              /* 4 */
  rec_report(t, 8, right, sizeof right);            /* 5: success */
  rec_report(t, 8, none, sizeof none);              /* 6 */
}

/* let the device send records up to (not including) n, and wait until they are taken */
static void send_to(Replay *rp, int n, ttProc *p) {
  atomic_store(&rp->open_to, n);
  for (double t0 = now_s(); atomic_load(&rp->reaped) < n && now_s() - t0 < 20;)
    tt_proc_wait_for(p, NULL, 0.02);
  cr_assert_geq(atomic_load(&rp->reaped), n, "teleop never read record %d: %s", n - 1, p->out);
}

Test(spacemouse_usb, teleop_records_an_episode, .timeout = 120) {
  UMockdevTestbed *tb = testbed();
  Replay r;
  Text t = {.n = 0};
  record_session(&t);
  replay_load(&r, t.s, 1);
  r.gated = 1;
  add_a(tb);
  UMockdevIoctlBase *h = attach_replay(tb, "/dev/bus/usb/001/002", &r);
  char path[4200];
  snprintf(path, sizeof path, "%s/sm.h5", tt_tmpdir());
  char *argv[] = {(char *)tt_build("teleop/teleop"),
                  "--task",
                  "reach",
                  "--device",
                  "spacemouse",
                  "--headless",
                  "--episodes",
                  "1",
                  "--out",
                  path,
                  NULL};
  ttProc p;
  cr_assert_eq(tt_proc_start(&p, argv), 0);
  send_to(&r, 1, &p); /* the report descriptor: teleop has opened the device */
  send_to(&r, 2, &p); /* right button down */
  cr_assert(tt_proc_wait_for(&p, "recording demo_0", 30), "the right button did not start an episode: %s",
            p.out);
  send_to(&r, 3, &p);
  send_to(&r, 4, &p); /* the cap pushed away and lifted */
  tt_proc_wait_for(&p, NULL, 1.0);
  send_to(&r, 5, &p); /* let go */
  tt_proc_wait_for(&p, NULL, 0.3);
  send_to(&r, 6, &p); /* right button down */
  cr_assert(tt_proc_wait_for(&p, "ended: success", 10), "the right button did not end the episode: %s",
            p.out);
  send_to(&r, 7, &p);
  int rc = tt_proc_finish(&p, 30);
  printf("%s", p.out);
  cr_assert_eq(rc, 0, "teleop: %s", p.out);
  cr_expect_eq(atomic_load(&r.mismatches), 0, "URBs out of the recorded order");
  cr_expect_eq(atomic_load(&r.reattached), 1, "usbhid not given back when teleop closed the device");

  dsFile *f;
  cr_assert_eq(ds_open(path, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(f), 1);
  cr_assert_eq(ds_demo(f, 0)->success, 1);
  cr_assert_str_eq(ds_demo(f, 0)->device, "spacemouse");
  dsEpisode e;
  cr_assert_eq(ds_read_episode(f, 0, &e), 0, "%s", tk_errmsg());
  /* away from the user is away from the camera: world -x; lifted: +z (half way) */
  int pushed = 0;
  for (int64_t s = 0; s < e.num_samples; s++)
    pushed += e.actions[s * 7 + 0] == -1.0 && fabs(e.actions[s * 7 + 2] - 0.5) < 1e-9;
  printf("spacemouse: %lld steps, %d with the cap pushed and lifted\n", (long long)e.num_samples, pushed);
  cr_assert_geq(pushed, 10, "a second of pushing should give about 20 such steps");
  ds_episode_free(&e);
  ds_close(f);
  g_object_unref(tb);
  g_object_unref(h);
  replay_free(&r);
}
