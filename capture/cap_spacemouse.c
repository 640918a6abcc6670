/* capture/cap_spacemouse.c -- 3Dconnexion SpaceMouse over libusb: pure parsers for the
 * device table, the HID report descriptor and the input reports, and the "spacemouse"
 * capInputDriver (reader thread, latched state under a mutex, hot re-plug).
 *
 * Axes. The device reports its six axes in the USB HID frame: +x right, +y toward the
 * user, +z down (right-handed), and rotations Rx Ry Rz about those axes (HID Usage Tables,
 * section 4.2 "Axis Usages"). PySpaceMouse documents exactly this for 3Dconnexion devices
 * (docs/mouseApi/index.md, "Axis Conventions": AxisConvention.HID = "+x right, +y toward the
 * user, +z down, right-handed"; AxisConvention.HID_Z_UP = "HID frame, rotated -180 degrees
 * about +X so Z points up": +x right, +y away from the user, +z up), and its legacy device
 * table (pyspacemouse/devices.toml) negates the raw y and z translation bytes of every
 * device for the same reason. cap.h's device frame is that Z-up frame, so we turn the HID
 * frame by 180 degrees about x: a proper rotation, applied alike to the translation and the
 * rotation (axial) vector:
 *     x = +X   y = -Y   z = -Z   rx = +Rx   ry = -Ry   rz = -Rz
 * (push the cap away from you: y > 0; lift it: z > 0; twist it counter-clockwise seen from
 * above: rz > 0).
 *
 * Buttons (report 3, a bit mask): the two-button devices put the left button in bit 0 and
 * the right one in bit 1; the Pro family sends 4 bytes, whose bits 0 and 1 are its Menu and
 * Fit keys and play the same roles. Meanings, as the teleop console uses them:
 *     left  held -> CAP_BTN_RB  ("gripper": the teleop mapping latches the gripper on the
 *                                press, so one click toggles it)
 *     right held -> CAP_BTN_A   (end the episode as a success; with no Start button on the
 *                                device, the console also starts an episode with it)
 * Every other bit is ignored.
 */
#include "cap_spacemouse.h"

#include <errno.h>
#include <libusb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "tk.h"

/* ---- device table (docs/reference.md "SpaceMouse") ---- */
/* The Wireless family (and the newer 0x256F receivers and Bluetooth editions) send all six
 * axes in one 13-byte report 1; the older 0x046D devices, the Compact and the Pro send
 * translation and rotation in reports 1 and 2. The parser goes by the report's length, so
 * a device whose firmware does the other thing still works; the family is what we expect. */
static const smDevice sm_devices[] = {
    {0x046D, 0xC625, SM_SPLIT, "SpacePilot"},
    {0x046D, 0xC626, SM_SPLIT, "SpaceNavigator"},
    {0x046D, 0xC627, SM_SPLIT, "SpaceExplorer"},
    {0x046D, 0xC628, SM_SPLIT, "SpaceNavigator for Notebooks"},
    {0x046D, 0xC629, SM_SPLIT, "SpacePilot Pro"},
    {0x046D, 0xC62B, SM_SPLIT, "SpaceMouse Pro"},
    {0x256F, 0xC62E, SM_COMBINED, "SpaceMouse Wireless (cabled)"},
    {0x256F, 0xC62F, SM_COMBINED, "SpaceMouse Wireless"},
    {0x256F, 0xC631, SM_COMBINED, "SpaceMouse Pro Wireless (cabled)"},
    {0x256F, 0xC632, SM_COMBINED, "SpaceMouse Pro Wireless"},
    {0x256F, 0xC633, SM_COMBINED, "SpaceMouse Enterprise"},
    {0x256F, 0xC635, SM_SPLIT, "SpaceMouse Compact"},
    {0x256F, 0xC636, SM_COMBINED, "SpaceMouse Module"},
    {0x256F, 0xC638, SM_COMBINED, "SpaceMouse Pro Wireless Bluetooth"},
    {0x256F, 0xC63A, SM_COMBINED, "SpaceMouse Wireless Bluetooth"},
    {0x256F, 0xC652, SM_COMBINED, "3Dconnexion Universal Receiver"},
};

const smDevice *sm_device_table(int *n) {
  if (n) *n = (int)TK_ARRAY_LEN(sm_devices);
  return sm_devices;
}

const smDevice *sm_device_find(uint16_t vid, uint16_t pid) {
  for (size_t i = 0; i < TK_ARRAY_LEN(sm_devices); i++)
    if (sm_devices[i].vid == vid && sm_devices[i].pid == pid) return &sm_devices[i];
  return NULL;
}

void sm_device_list(char *buf, size_t n) {
  if (!n) return;
  buf[0] = 0;
  size_t used = 0;
  for (size_t i = 0; i < TK_ARRAY_LEN(sm_devices) && used < n; i++) {
    int w = snprintf(buf + used, n - used, "%s%04x:%04x", i ? " " : "", sm_devices[i].vid, sm_devices[i].pid);
    if (w < 0) break;
    used += (size_t)w;
  }
}

/* ---- HID report descriptor ---- */
static const char *const sm_axis_names[SM_NAXES] = {"X", "Y", "Z", "Rx", "Ry", "Rz"};

typedef struct {
  uint32_t usage_page;
  int32_t lmin, lmax;       /* as signed values */
  uint32_t lmax_u;          /* Logical Maximum read unsigned (the min >= 0 case) */
  uint32_t report_size;     /* bits per field */
  int have_lmin, have_lmax; /* seen since the start (global items persist) */
} smGlobal;

#define SM_MAX_USAGES 64
#define SM_MAX_PUSH 8

static uint32_t item_u(const uint8_t *d, int size) {
  switch (size) {
  case 1: return d[0];
  case 2: return (uint32_t)d[0] | (uint32_t)d[1] << 8;
  case 4: return (uint32_t)d[0] | (uint32_t)d[1] << 8 | (uint32_t)d[2] << 16 | (uint32_t)d[3] << 24;
  default: return 0;
  }
}

static int32_t item_s(const uint8_t *d, int size) {
  switch (size) {
  case 1: return (int8_t)d[0];
  case 2: return (int16_t)(uint16_t)item_u(d, 2);
  case 4: return (int32_t)item_u(d, 4);
  default: return 0;
  }
}

int sm_parse_report_descriptor(const uint8_t *desc, size_t len, smRange *out) {
  smGlobal g = {0}, stack[SM_MAX_PUSH];
  int depth = 0;
  /* local state: usages as (page << 16 | id); a 1- or 2-byte usage takes the page in force
   * at the main item, so remember whether the page was given */
  uint32_t usages[SM_MAX_USAGES];
  int usage_has_page[SM_MAX_USAGES];
  int nusages = 0;
  uint32_t umin = 0, umax = 0;
  int umin_set = 0, umax_set = 0, umin_page = 0, umax_page = 0;
  int found[SM_NAXES] = {0};
  smRange r;
  memset(&r, 0, sizeof r);
  if (!desc || !len) return tk_error(TK_EFORMAT, "HID report descriptor is empty");

  size_t i = 0;
  while (i < len) {
    uint8_t b = desc[i];
    if (b == 0xFE) { /* long item: bDataSize, bLongItemTag, data */
      if (i + 2 >= len) return tk_error(TK_EFORMAT, "HID report descriptor: long item cut at byte %zu", i);
      i += 3 + (size_t)desc[i + 1];
      continue;
    }
    int size = (b & 3) == 3 ? 4 : (b & 3);
    int type = (b >> 2) & 3, tag = b >> 4;
    if (i + 1 + (size_t)size > len)
      return tk_error(TK_EFORMAT,
                      "HID report descriptor: item 0x%02x at byte %zu runs past the end (%zu bytes)", b, i,
                      len);
    const uint8_t *d = desc + i + 1;
    if (type == 1) { /* global */
      switch (tag) {
      case 0x0: g.usage_page = item_u(d, size); break;
      case 0x1:
        g.lmin = item_s(d, size);
        g.have_lmin = 1;
        break;
      case 0x2:
        g.lmax = item_s(d, size);
        g.lmax_u = item_u(d, size);
        g.have_lmax = 1;
        break;
      case 0x7: g.report_size = item_u(d, size); break;
      case 0xA: /* push */
        if (depth >= SM_MAX_PUSH) return tk_error(TK_EFORMAT, "HID report descriptor: Push nested too deep");
        stack[depth++] = g;
        break;
      case 0xB: /* pop */
        if (depth == 0) return tk_error(TK_EFORMAT, "HID report descriptor: Pop without Push at byte %zu", i);
        g = stack[--depth];
        break;
      default: break;
      }
    } else if (type == 2) { /* local */
      switch (tag) {
      case 0x0:
        if (nusages < SM_MAX_USAGES) {
          usages[nusages] = item_u(d, size);
          usage_has_page[nusages++] = size == 4;
        }
        break;
      case 0x1:
        umin = item_u(d, size);
        umin_set = 1;
        umin_page = size == 4;
        break;
      case 0x2:
        umax = item_u(d, size);
        umax_set = 1;
        umax_page = size == 4;
        break;
      default: break;
      }
    } else if (type == 0) {                      /* main */
      if (tag == 0x8 && !(size && (d[0] & 1))) { /* Input, not Constant */
        uint32_t list[SM_MAX_USAGES + 8];
        int n = 0;
        for (int k = 0; k < nusages; k++)
          list[n++] = usage_has_page[k] ? usages[k] : (g.usage_page << 16 | (usages[k] & 0xFFFF));
        if (umin_set && umax_set) {
          uint32_t lo = umin_page ? umin : (g.usage_page << 16 | (umin & 0xFFFF));
          uint32_t hi = umax_page ? umax : (g.usage_page << 16 | (umax & 0xFFFF));
          for (uint32_t u = lo; u <= hi && n < (int)TK_ARRAY_LEN(list); u++)
            list[n++] = u;
        }
        for (int k = 0; k < n; k++) {
          if (list[k] < 0x10030 || list[k] > 0x10035) continue; /* Generic Desktop X..Rz */
          int a = (int)(list[k] - 0x10030);
          if (!g.have_lmin || !g.have_lmax)
            return tk_error(TK_EFORMAT, "HID report descriptor: axis %s has no Logical Minimum/Maximum",
                            sm_axis_names[a]);
          if (g.report_size != 16)
            return tk_error(TK_EFORMAT, "HID report descriptor: axis %s is %u bits, expected 16",
                            sm_axis_names[a], g.report_size);
          int64_t lmax = g.lmax;
          if (lmax < g.lmin) lmax = g.lmax_u; /* a positive maximum written without a sign bit */
          r.lo[a] = g.lmin;
          r.hi[a] = (int32_t)lmax;
          found[a] = 1;
        }
      }
      if (tag == 0x8 || tag == 0x9 || tag == 0xB || tag == 0xA || tag == 0xC) {
        nusages = 0; /* main items end the local state */
        umin_set = umax_set = 0;
      }
    }
    i += 1 + (size_t)size;
  }
  for (int a = 0; a < SM_NAXES; a++) {
    if (!found[a])
      return tk_error(TK_EFORMAT,
                      "HID report descriptor: no multi-axis input for axis %s (not a SpaceMouse?)",
                      sm_axis_names[a]);
    if (!(r.lo[a] < 0 && r.hi[a] > 0))
      return tk_error(TK_EFORMAT,
                      "HID report descriptor: axis %s has no usable range (%d..%d, need min < 0 < max)",
                      sm_axis_names[a], r.lo[a], r.hi[a]);
  }
  *out = r;
  return 0;
}

/* ---- input reports ---- */
static int16_t le16(const uint8_t *p) { return (int16_t)(uint16_t)(p[0] | p[1] << 8); }

int sm_parse_report(smState *st, const uint8_t *buf, size_t len) {
  if (!len) return tk_error(TK_EFORMAT, "empty SpaceMouse report");
  switch (buf[0]) {
  case 1:
    if (len >= 13) { /* combined: x y z rx ry rz */
      for (int a = 0; a < SM_NAXES; a++)
        st->raw[a] = le16(buf + 1 + 2 * a);
      return 1;
    }
    if (len >= 7) { /* split: translation half */
      for (int a = 0; a < 3; a++)
        st->raw[SM_X + a] = le16(buf + 1 + 2 * a);
      return 1;
    }
    return tk_error(TK_EFORMAT, "SpaceMouse report 1 has %zu bytes (need 7 or 13)", len);
  case 2:
    if (len >= 7) { /* split: rotation half */
      for (int a = 0; a < 3; a++)
        st->raw[SM_RX + a] = le16(buf + 1 + 2 * a);
      return 1;
    }
    return tk_error(TK_EFORMAT, "SpaceMouse report 2 has %zu bytes (need 7)", len);
  case 3: {
    if (len < 2) return tk_error(TK_EFORMAT, "SpaceMouse report 3 has no button bytes");
    uint32_t m = 0;
    for (size_t k = 1; k < len && k <= 4; k++)
      m |= (uint32_t)buf[k] << (8 * (k - 1));
    st->buttons = m;
    return 1;
  }
  default: return 0; /* battery (0x17), LED echo, vendor reports: not input we use */
  }
}

static double sm_norm(int v, int32_t lo, int32_t hi) {
  double x = v >= 0 ? (double)v / hi : (double)v / -(double)lo;
  return x > 1 ? 1 : x < -1 ? -1 : x;
}

void sm_state_to_input(const smState *st, const smRange *r, capInputState *out) {
  static const double sign[SM_NAXES] = {1, -1, -1, 1, -1, -1}; /* HID frame -> x right, y forward, z up */
  memset(out, 0, sizeof *out);
  out->six_dof = 1;
  for (int a = 0; a < SM_NAXES; a++)
    out->motion[a] = sign[a] * sm_norm(st->raw[a], r->lo[a], r->hi[a]);
  if (st->buttons & 1u) out->pad.buttons |= CAP_BTN_RB;
  if (st->buttons & 2u) out->pad.buttons |= CAP_BTN_A;
}

/* ---- the libusb backend ---- */
#define SM_READ_TIMEOUT_MS 50 /* interrupt-transfer timeout: how soon the reader sees a stop */
#define SM_RETRY_MS 200       /* between attempts to find the device again after an unplug */
#define SM_MAX_DESC 4096
#define SM_UDEV_RULE "/etc/udev/rules.d/99-spacemouse.rules"

typedef struct {
  libusb_context *ctx;
  int want_vid, want_pid; /* -1: any supported device */
  /* the reader thread's (and open's, before the thread starts) */
  libusb_device_handle *h;
  int iface;
  uint8_t ep_in;
  int ep_len;
  const smDevice *dev;
  smRange range;
  pthread_t thread;
  int thread_started;
  atomic_int stop;
  /* shared with poll, under mu */
  pthread_mutex_t mu;
  int connected;
  smState st;
  smRange shared_range;
  const smDevice *shared_dev;
} smImpl;

static void sm_sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

static int sm_usb_error(int code, const smDevice *d, libusb_device *dev, const char *what, int r) {
  return tk_error(code, "spacemouse: %s (%04x:%04x, bus %u device %u): %s: %s", d->name, d->vid, d->pid,
                  libusb_get_bus_number(dev), libusb_get_device_address(dev), what, libusb_strerror(r));
}

static int sm_permission_error(const smDevice *d, libusb_device *dev, const char *what) {
  return tk_error(
      TK_EIO,
      "spacemouse: %s (%04x:%04x, bus %u device %u): %s: permission denied; a udev rule is needed: "
      "write " SM_UDEV_RULE " with SUBSYSTEM==\"usb\", ATTRS{idVendor}==\"%04x\", "
      "ATTRS{idProduct}==\"%04x\", MODE=\"0660\", TAG+=\"uaccess\" and replug the device",
      d->name, d->vid, d->pid, libusb_get_bus_number(dev), libusb_get_device_address(dev), what, d->vid,
      d->pid);
}

/* Find the HID interface with an interrupt IN endpoint; its report descriptor's length
 * from the HID class descriptor (0x21) that follows the interface descriptor. */
static int sm_find_interface(smImpl *s, libusb_device *dev, int *desc_len) {
  struct libusb_config_descriptor *cfg;
  int r = libusb_get_active_config_descriptor(dev, &cfg);
  if (r < 0) return sm_usb_error(TK_EIO, s->dev, dev, "reading the configuration descriptor", r);
  int ok = 0;
  *desc_len = 0;
  for (int i = 0; i < cfg->bNumInterfaces && !ok; i++) {
    if (cfg->interface[i].num_altsetting < 1) continue;
    const struct libusb_interface_descriptor *alt = &cfg->interface[i].altsetting[0];
    if (alt->bInterfaceClass != LIBUSB_CLASS_HID) continue;
    for (int e = 0; e < alt->bNumEndpoints && !ok; e++) {
      const struct libusb_endpoint_descriptor *ep = &alt->endpoint[e];
      if ((ep->bEndpointAddress & LIBUSB_ENDPOINT_IN) &&
          (ep->bmAttributes & 3) == LIBUSB_TRANSFER_TYPE_INTERRUPT) {
        s->iface = alt->bInterfaceNumber;
        s->ep_in = ep->bEndpointAddress;
        s->ep_len = ep->wMaxPacketSize ? ep->wMaxPacketSize : 64;
        ok = 1;
      }
    }
    /* HID descriptor: bLength, 0x21, bcdHID, country, count, then 0x22 and its length */
    for (int k = 0; ok && k + 9 <= alt->extra_length && alt->extra[k] >= 2; k += alt->extra[k]) {
      const unsigned char *x = alt->extra + k;
      if (x[1] == 0x21 && x[0] >= 9 && x[6] == 0x22) {
        *desc_len = x[7] | x[8] << 8;
        break;
      }
    }
  }
  libusb_free_config_descriptor(cfg);
  if (!ok)
    return tk_error(TK_EFORMAT, "spacemouse: %s has no HID interface with an interrupt IN endpoint",
                    s->dev->name);
  if (*desc_len <= 0 || *desc_len > SM_MAX_DESC) *desc_len = SM_MAX_DESC;
  if (s->ep_len > 64) s->ep_len = 64;
  return 0;
}

/* Open one device, claim its HID interface, read the report descriptor for the range. */
static int sm_setup(smImpl *s, libusb_device *dev, const smDevice *d) {
  int r = libusb_open(dev, &s->h);
  if (r == LIBUSB_ERROR_ACCESS) return sm_permission_error(d, dev, "open");
  if (r < 0) return sm_usb_error(TK_EIO, d, dev, "open", r);
  s->dev = d;
  int desc_len = 0;
  int rc = sm_find_interface(s, dev, &desc_len);
  if (rc < 0) goto fail;
  /* The kernel's usbhid driver holds the interface: with auto-detach libusb detaches it on
   * claim and attaches it again on release (close). Only asked for when a driver is bound:
   * with none, libusb's detach expects the kernel's ENODATA, and an emulated usbfs (umockdev
   * 0.17 answers USBDEVFS_IOCTL with ENOTTY) would make the claim fail. */
  if (libusb_kernel_driver_active(s->h, s->iface) == 1) {
    r = libusb_set_auto_detach_kernel_driver(s->h, 1);
    if (r < 0 && r != LIBUSB_ERROR_NOT_SUPPORTED) {
      rc = sm_usb_error(TK_EIO, d, dev, "enabling kernel-driver auto-detach", r);
      goto fail;
    }
  }
  r = libusb_claim_interface(s->h, s->iface);
  if (r == LIBUSB_ERROR_ACCESS) {
    rc = sm_permission_error(d, dev, "claiming the HID interface");
    goto fail;
  }
  if (r == LIBUSB_ERROR_BUSY) {
    rc = tk_error(TK_EBUSY,
                  "spacemouse: %s (%04x:%04x): interface %d is busy: another program (spacenavd?) holds it",
                  d->name, d->vid, d->pid, s->iface);
    goto fail;
  }
  if (r < 0) {
    rc = sm_usb_error(TK_EIO, d, dev, "claiming the HID interface", r);
    goto fail;
  }
  unsigned char *buf = calloc(1, (size_t)desc_len);
  if (!buf) {
    libusb_release_interface(s->h, s->iface);
    rc = tk_error(TK_ENOMEM, "spacemouse: out of memory");
    goto fail;
  }
  /* GET_DESCRIPTOR (standard, to the interface), type 0x22 = HID report descriptor */
  r = libusb_control_transfer(
      s->h, LIBUSB_ENDPOINT_IN | LIBUSB_REQUEST_TYPE_STANDARD | LIBUSB_RECIPIENT_INTERFACE,
      LIBUSB_REQUEST_GET_DESCRIPTOR, 0x22 << 8, (uint16_t)s->iface, buf, (uint16_t)desc_len, 1000);
  if (r < 0) {
    free(buf);
    libusb_release_interface(s->h, s->iface);
    rc = sm_usb_error(TK_EIO, d, dev, "reading the HID report descriptor", r);
    goto fail;
  }
  rc = sm_parse_report_descriptor(buf, (size_t)r, &s->range);
  free(buf);
  if (rc < 0) {
    libusb_release_interface(s->h, s->iface);
    tk_error_wrap(rc, "spacemouse: %s (%04x:%04x)", d->name, d->vid, d->pid);
    goto fail;
  }
  return 0;
fail:
  libusb_close(s->h);
  s->h = NULL;
  return rc;
}

/* Find the first supported device (or the wanted one) and set it up. */
static int sm_connect(smImpl *s) {
  libusb_device **list;
  ssize_t n = libusb_get_device_list(s->ctx, &list);
  if (n < 0) return tk_error(TK_EIO, "spacemouse: listing USB devices: %s", libusb_strerror((int)n));
  int rc = 1; /* 1: nothing matched */
  for (ssize_t i = 0; i < n; i++) {
    struct libusb_device_descriptor dd;
    if (libusb_get_device_descriptor(list[i], &dd) < 0) continue;
    if (s->want_vid >= 0 && (dd.idVendor != s->want_vid || dd.idProduct != s->want_pid)) continue;
    const smDevice *d = sm_device_find(dd.idVendor, dd.idProduct);
    if (!d) continue;
    int r = sm_setup(s, list[i], d);
    if (r == 0) {
      rc = 0;
      break;
    }
    if (rc == 1) rc = r; /* keep the first device's error; try the next one */
  }
  libusb_free_device_list(list, 1);
  if (rc == 1) {
    if (s->want_vid >= 0) {
      const smDevice *d = sm_device_find((uint16_t)s->want_vid, (uint16_t)s->want_pid);
      return tk_error(TK_ENOTFOUND, "spacemouse: no %s (%04x:%04x) found", d ? d->name : "device",
                      s->want_vid, s->want_pid);
    }
    char ids[512];
    sm_device_list(ids, sizeof ids);
    return tk_error(TK_ENOTFOUND,
                    "spacemouse: no SpaceMouse found (looked for %s; is it plugged in? lsusb lists "
                    "what is)",
                    ids);
  }
  if (rc == 0) {
    pthread_mutex_lock(&s->mu);
    memset(&s->st, 0, sizeof s->st);
    s->shared_range = s->range;
    s->shared_dev = s->dev;
    s->connected = 1;
    pthread_mutex_unlock(&s->mu);
  }
  return rc;
}

static void sm_disconnect(smImpl *s) {
  pthread_mutex_lock(&s->mu);
  s->connected = 0;
  memset(&s->st, 0, sizeof s->st);
  pthread_mutex_unlock(&s->mu);
  if (s->h) {
    libusb_release_interface(s->h, s->iface); /* gives the interface back to usbhid */
    libusb_close(s->h);
    s->h = NULL;
  }
}

static void *sm_reader(void *arg) {
  smImpl *s = arg;
  unsigned char buf[64];
  int errors = 0;
  while (!atomic_load(&s->stop)) {
    if (!s->h) { /* unplugged: look for the device again, without hurry */
      for (int t = 0; t < SM_RETRY_MS && !atomic_load(&s->stop); t += 20)
        sm_sleep_ms(20);
      if (atomic_load(&s->stop)) break;
      if (sm_connect(s) == 0) {
        tk_debug("spacemouse: %s connected again", s->dev->name);
        errors = 0;
      }
      continue;
    }
    int got = 0;
    int r = libusb_interrupt_transfer(s->h, s->ep_in, buf, s->ep_len, &got, SM_READ_TIMEOUT_MS);
    if (r == 0) {
      errors = 0;
      pthread_mutex_lock(&s->mu);
      sm_parse_report(&s->st, buf, (size_t)got); /* a malformed report changes nothing */
      pthread_mutex_unlock(&s->mu);
    } else if (r == LIBUSB_ERROR_TIMEOUT) {
      errors = 0; /* no motion: the device only reports changes */
    } else if (r == LIBUSB_ERROR_NO_DEVICE || ++errors >= 10) {
      tk_debug("spacemouse: %s lost (%s)", s->dev->name, libusb_strerror(r));
      sm_disconnect(s);
    } else if (r == LIBUSB_ERROR_PIPE) {
      libusb_clear_halt(s->h, s->ep_in);
    } else {
      sm_sleep_ms(5);
    }
  }
  return NULL;
}

static void sm_close(capInput *in) {
  if (!in || !in->impl) return;
  smImpl *s = in->impl;
  if (s->thread_started) {
    atomic_store(&s->stop, 1);
    pthread_join(s->thread, NULL);
  }
  sm_disconnect(s);
  if (s->ctx) libusb_exit(s->ctx);
  pthread_mutex_destroy(&s->mu);
  free(s);
  in->impl = NULL;
}

/* "VID:PID" in hex, each half whole and at most ffff (tk_opt_hex); "" or NULL: any SpaceMouse */
static int sm_parse_arg(const char *arg, int *vid, int *pid) {
  *vid = *pid = -1;
  if (!arg || !arg[0]) return 0;
  const char *colon = strchr(arg, ':');
  char v[8];
  uint64_t a, b;
  if (!colon || (size_t)(colon - arg) >= sizeof v) goto bad;
  memcpy(v, arg, (size_t)(colon - arg));
  v[colon - arg] = 0;
  if (tk_opt_hex("VID", v, 0xFFFF, &a) || tk_opt_hex("PID", colon + 1, 0xFFFF, &b)) goto bad;
  *vid = (int)a;
  *pid = (int)b;
  return 0;
bad:
  return tk_error(TK_EINVAL, "spacemouse: bad device '%s' (expected VID:PID in hex, e.g. 256f:c635)", arg);
}

static int sm_open(capInput *in, const char *arg) {
  if (!in) return tk_error(TK_EINVAL, "spacemouse: no input");
  in->impl = NULL;
  smImpl *s = calloc(1, sizeof *s);
  if (!s) return tk_error(TK_ENOMEM, "spacemouse: out of memory");
  pthread_mutex_init(&s->mu, NULL);
  atomic_init(&s->stop, 0);
  in->impl = s;
  int rc = sm_parse_arg(arg, &s->want_vid, &s->want_pid);
  if (rc < 0) goto fail;
  int r = libusb_init(&s->ctx);
  if (r < 0) {
    s->ctx = NULL;
    rc = tk_error(TK_EIO, "spacemouse: libusb_init: %s", libusb_strerror(r));
    goto fail;
  }
  rc = sm_connect(s);
  if (rc < 0) goto fail;
  if (pthread_create(&s->thread, NULL, sm_reader, s) != 0) {
    rc = tk_error(TK_EIO, "spacemouse: cannot start the reader thread");
    goto fail;
  }
  s->thread_started = 1;
  if (!in->drv) in->drv = &cap_spacemouse_driver;
  snprintf(in->desc, sizeof in->desc, "%s", s->dev->name);
  return 0;
fail:
  sm_close(in);
  return rc;
}

static int sm_poll(capInput *in, capInputState *st, int *connected) {
  if (!in || !in->impl || !st) return tk_error(TK_EINVAL, "spacemouse: poll on a closed device");
  smImpl *s = in->impl;
  smState raw;
  smRange range;
  const smDevice *dev;
  int conn;
  pthread_mutex_lock(&s->mu); /* held by the reader only to latch one report */
  raw = s->st;
  range = s->shared_range;
  dev = s->shared_dev;
  conn = s->connected;
  pthread_mutex_unlock(&s->mu);
  if (conn) {
    sm_state_to_input(&raw, &range, st);
    if (dev && strcmp(in->desc, dev->name) != 0) snprintf(in->desc, sizeof in->desc, "%s", dev->name);
  } else {
    memset(st, 0, sizeof *st);
    st->six_dof = 1;
  }
  if (connected) *connected = conn;
  return 0;
}

static const char *sm_legend(void) {
  return "push / pull / lift the cap\tmove (away from you: away from the camera)\n"
         "tilt / twist the cap\tturn\n"
         "left button\tgripper open / close\n"
         "right button\tstart; while recording: end as success\n"
         "close the window, Ctrl-C\tquit";
}

const capInputDriver cap_spacemouse_driver = {
    .name = "spacemouse",
    .summary = "a 3Dconnexion SpaceMouse over USB (--device-arg: VID:PID; default the first found)",
    .caps = CAP_INPUT_SIX_DOF,
    .buttons = CAP_BTN_RB | CAP_BTN_A, /* no Start: the right button (A) starts */
    .legend = sm_legend,
    .open = sm_open,
    .poll = sm_poll,
    .rumble = NULL,
    .close = sm_close,
};
