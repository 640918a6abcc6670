/* SpaceMouse backend: the pure parsers on byte vectors of both report families, and the
 * libusb path against a device emulated with umockdev (sysfs + /dev/bus/usb node written
 * here by hand, usbdevfs traffic replayed from an ioctl record written here by hand).
 *
 * The umockdev tests need the preload library: run this executable through
 * `umockdev-wrapper` (meson test does). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <umockdev.h>

#include "cap.h"
#include "cap_spacemouse.h"
#include "tk.h"
#include "tt.h"

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
    0x05, 0x01, 0x09, 0x08, 0xA1, 0x01,       /* Generic Desktop, Multi-axis Controller, App */
    0x85, 0x01,                               /*  Report ID (1) */
    0x16, 0x0C, 0xFE, 0x26, 0xF4, 0x01,       /*  Logical -500..500 */
    0xA4,                                     /*  Push */
    0x15, 0x00, 0x26, 0xFF, 0x00,             /*   Logical 0..255 */
    0xB4,                                     /*  Pop */
    0x75, 0x10, 0x95, 0x03,                   /*  16 bits x 3 */
    0x19, 0x30, 0x29, 0x32,                   /*  Usage Minimum (X), Usage Maximum (Z) */
    0x81, 0x02,                               /*  Input */
    0x85, 0x02,                               /*  Report ID (2) */
    0x05, 0x09,                               /*  Usage Page (Button): the next usages carry their own */
    0x0B, 0x33, 0x00, 0x01, 0x00,             /*  Usage (Generic Desktop: Rx), 4 bytes */
    0x0B, 0x34, 0x00, 0x01, 0x00,             /*  Usage (Ry) */
    0x0B, 0x35, 0x00, 0x01, 0x00,             /*  Usage (Rz) */
    0x81, 0x02,                               /*  Input */
    0xC0,                                     /* End Collection */
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
    cr_expect_lt(sm_parse_report_descriptor(desc_combined, n, &r), 0, "truncated to %zu bytes was accepted", n);
  }
  expect_desc_error(desc_combined, 12, "cut inside Logical Minimum");
  cr_expect(strstr(tk_errmsg(), "runs past the end"), "%s", tk_errmsg());
  /* axes without any Logical Minimum/Maximum */
  static const uint8_t no_range[] = {0x05, 0x01, 0x09, 0x08, 0xA1, 0x01, 0x85, 0x01, 0x19, 0x30, 0x29,
                                     0x35, 0x75, 0x10, 0x95, 0x06, 0x81, 0x02, 0xC0};
  expect_desc_error(no_range, sizeof no_range, "no logical range");
  /* a range that is not centred on 0 */
  static const uint8_t unsigned_range[] = {0x05, 0x01, 0x09, 0x08, 0xA1, 0x01, 0x85, 0x01, 0x15, 0x00, 0x26, 0xBC,
                                           0x02, 0x19, 0x30, 0x29, 0x35, 0x75, 0x10, 0x95, 0x06, 0x81, 0x02, 0xC0};
  expect_desc_error(unsigned_range, sizeof unsigned_range, "0..700");
  /* translation only */
  static const uint8_t three_axes[] = {0x05, 0x01, 0x09, 0x08, 0xA1, 0x01, 0x85, 0x01, 0x16, 0xA2, 0xFE, 0x26,
                                       0x5E, 0x01, 0x19, 0x30, 0x29, 0x32, 0x75, 0x10, 0x95, 0x03, 0x81, 0x02, 0xC0};
  expect_desc_error(three_axes, sizeof three_axes, "three axes");
  /* 8-bit axes cannot be read as int16 */
  static const uint8_t eight_bit[] = {0x05, 0x01, 0x09, 0x08, 0xA1, 0x01, 0x85, 0x01, 0x15, 0x81, 0x25,
                                      0x7F, 0x19, 0x30, 0x29, 0x35, 0x75, 0x08, 0x95, 0x06, 0x81, 0x02, 0xC0};
  expect_desc_error(eight_bit, sizeof eight_bit, "8-bit axes");
  /* a mouse: X/Y on a different collection usage, relative 8-bit */
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
  for (int a = 0; a < 6; a++) maxd = fmax(maxd, fabs(s->motion[a] - want[a]));
  cr_expect_lt(maxd, 1e-12, "%s: motion %.4f %.4f %.4f %.4f %.4f %.4f, expected %.4f %.4f %.4f %.4f %.4f %.4f", what,
               s->motion[0], s->motion[1], s->motion[2], s->motion[3], s->motion[4], s->motion[5], want[0], want[1],
               want[2], want[3], want[4], want[5]);
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
  for (int a = 0; a < CAP_NAXES; a++) cr_expect_eq(in.pad.axis[a], 0.0);
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
  static const uint8_t left[] = {0x03, 0x01}, right[] = {0x03, 0x02}, both[] = {0x03, 0x03}, none[] = {0x03, 0x00};
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
  static const uint8_t pro_menu[] = {0x03, 0x01, 0x00, 0x00, 0x00}, pro_other[] = {0x03, 0x00, 0x30, 0x01, 0x80};
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
  const uint8_t dev[18] = {0x12, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x08, (uint8_t)vid, (uint8_t)(vid >> 8),
                           (uint8_t)pid, (uint8_t)(pid >> 8), 0x37, 0x04, 0x01, 0x02, 0x00, 0x01};
  const uint8_t cfg[34] = {
      0x09, 0x02, 34, 0x00, 0x01, 0x01, 0x00, 0xA0, 0x32,                          /* configuration 1 */
      0x09, 0x04, 0x00, 0x00, 0x01, 0x03, 0x00, 0x00, 0x00,                        /* interface 0, HID */
      0x09, 0x21, 0x11, 0x01, 0x00, 0x01, 0x22, (uint8_t)report_desc_len,          /* HID 1.11, */
      (uint8_t)(report_desc_len >> 8),                                             /* report desc length */
      0x07, 0x05, 0x81, 0x03, (uint8_t)ep_len, 0x00, 0x01,                         /* EP 0x81 interrupt */
  };
  memcpy(out, dev, sizeof dev);
  memcpy(out + sizeof dev, cfg, sizeof cfg);
  return sizeof dev + sizeof cfg;
}

static void hex(char *out, const uint8_t *b, size_t n) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02X", b[i]);
  out[2 * n] = 0;
}

/* The umockdev description of a USB device at bus 1, address devnum (what umockdev-record
 * prints for a real one, cut to what libusb reads). */
static char *usb_device_text(int devnum, uint16_t vid, uint16_t pid, const char *product, size_t report_desc_len,
                             int ep_len) {
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
  cr_assert(umockdev_testbed_add_from_string(tb, text, &err), "add_from_string: %s", err ? err->message : "?");
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
  cap_spacemouse_driver.close(&in); /* closing what never opened is fine */
  g_object_unref(tb);
}

