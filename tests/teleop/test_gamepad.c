/* tests/teleop/test_gamepad.c -- `teleop --device gamepad` through the real binary, with a pad the
 * binary finds and reads exactly as it would a real one: an Xbox 360 pad as the kernel's xpad
 * driver presents it (an evdev node /dev/input/eventN under an input device in sysfs, udev's
 * ID_INPUT_JOYSTICK), emulated with umockdev. SDL's Linux joystick backend enumerates it through
 * libudev (umockdev's /sys testbed), asks it what it is with the EVIOCG* ioctls, and reads its
 * input_event stream; all of that, in the teleop process, reaches the handler below (in this test
 * process, through umockdev's preload socket), which answers as evdev does. Nothing in the binary
 * knows: no hook, no driver registered, no SDL virtual joystick.
 *
 * What SDL 2.26 asks of it, in order: libudev enumeration of "input" (the event node's
 * ID_INPUT_JOYSTICK=1 and DEVNAME); JSIOCGNAME (EINVAL: not a js node), EVIOCGID, EVIOCGNAME (with
 * udev, the capability bits are not probed here); its GUID (bus 3, 045e:028e, version 0x0114) is in
 * SDL's controller database, so it is a game controller. Opened O_RDWR: EVIOCGBIT of keys, axes,
 * relative axes; EVIOCGABS of the hat, then of each axis; EVIOCGBIT of force feedback; the state
 * (EVIOCGABS, EVIOCGKEY); then a non-blocking read() on every update. A rumble is EVIOCSFF (upload)
 * and a write() of an EV_FF play event; closing removes the effect (EVIOCRMFF). Unplugged, the open
 * node fails with ENODEV and udev's "remove" uevent (umockdev's netlink emulation) makes SDL drop
 * the pad; the "add" uevent of a pad plugged in again makes SDL take it, as udev's events do.
 *
 * The executable must run inside umockdev-wrapper (its LD_PRELOAD), which teleop inherits;
 * tests/meson.build does that. */
#include <criterion/criterion.h>
#include <errno.h>
#include <linux/input.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <umockdev.h>

#include "ds.h"
#include "tk.h"
#include "tt.h"
#include "tt_proc.h"

/* ---- the pad: what xpad exposes for a wired Xbox 360 pad (045e:028e) ---- */
#define PAD_NAME "Microsoft X-Box 360 pad"
/* the input device of the pad plugged as number n (its evdev node /dev/input/event<n>) */
#define PAD_SYS "/devices/pci0000:00/0000:00:14.0/usb1/1-3/1-3:1.0/input/input%1$d"

static const int pad_keys[] = {BTN_A,      BTN_B,     BTN_X,    BTN_Y,      BTN_TL,    BTN_TR,
                               BTN_SELECT, BTN_START, BTN_MODE, BTN_THUMBL, BTN_THUMBR};
static const int pad_ff[] = {FF_RUMBLE, FF_PERIODIC, FF_SQUARE, FF_TRIANGLE, FF_SINE, FF_GAIN};

/* sysfs (and the uevent's EV/KEY/ABS/FF) print a bitmap as longs, the highest first */
/* printf format: 1$ the device number n, 2$ its minor (64 + n) */
static const char pad_sysfs[] =
    "P: " PAD_SYS "/event%1$d\n"
    "N: input/event%1$d\n"
    "E: DEVNAME=/dev/input/event%1$d\n"
    "E: MAJOR=13\n"
    "E: MINOR=%2$d\n"
    "E: SUBSYSTEM=input\n"
    "E: ID_INPUT=1\n"
    "E: ID_INPUT_JOYSTICK=1\n"
    "E: ID_BUS=usb\n"
    "E: ID_VENDOR_ID=045e\n"
    "E: ID_MODEL_ID=028e\n"
    "E: ID_REVISION=0114\n"
    "E: ID_SERIAL=Microsoft_Controller_0000000\n"
    "A: dev=13:%2$d\\n\n"
    "L: device=../../input%1$d\n"
    "\n"
    "P: " PAD_SYS "\n"
    "E: SUBSYSTEM=input\n"
    "E: PRODUCT=3/45e/28e/114\n"
    "E: NAME=\"" PAD_NAME "\"\n"
    "E: PHYS=\"usb-0000:00:14.0-3/input0\"\n"
    "E: EV=20000b\n"
    "E: KEY=7cdb000000000000 0 0 0 0\n"
    "E: ABS=3003f\n"
    "E: FF=107030000 0\n"
    "E: ID_INPUT=1\n"
    "E: ID_INPUT_JOYSTICK=1\n"
    "A: name=" PAD_NAME "\\n\n"
    "A: phys=usb-0000:00:14.0-3/input0\\n\n"
    "A: uniq=\\n\n"
    "A: properties=0\\n\n"
    "A: capabilities/ev=20000b\\n\n"
    "A: capabilities/key=7cdb000000000000 0 0 0 0\\n\n"
    "A: capabilities/abs=3003f\\n\n"
    "A: capabilities/rel=0\\n\n"
    "A: capabilities/msc=0\\n\n"
    "A: capabilities/ff=107030000 0\\n\n"
    "A: capabilities/led=0\\n\n"
    "A: capabilities/snd=0\\n\n"
    "A: capabilities/sw=0\\n\n"
    "A: id/bustype=0003\\n\n"
    "A: id/vendor=045e\\n\n"
    "A: id/product=028e\\n\n"
    "A: id/version=0114\\n\n"
    "A: modalias=input:b0003v045Ep028Ee0114-e0,1,3,15,k130,131,133,134,136,137,13A,13B,13C,13D,13E,ra0,1,2,3,"
    "4,5,10,11,m,l,s,f50,51,58,59,5A,60,w\\n\n";

/* ---- the evdev side, answered in umockdev's worker thread; the test thread queues events ---- */
#define QCAP 256
typedef struct {
  GMutex lock;
  struct input_absinfo abs[ABS_CNT]; /* current values and ranges */
  unsigned long keys[(KEY_CNT + 63) / 64];
  struct input_event q[QCAP]; /* events not read yet */
  int qn;
  atomic_int reads, events_read, ioctls, rumbles, bad_ioctls;
  atomic_int strongest; /* the strongest rumble effect uploaded (EVIOCSFF), 0..65535 */
  atomic_int gone;      /* unplugged: every call on an open node fails with ENODEV, as evdev's */
  int n;                /* plugged as /dev/input/event<n> */
  UMockdevIoctlBase *h;
} Pad;

static void set_bit_(unsigned long *b, int i) { b[i / 64] |= 1ul << (i % 64); }
static int test_bit_(const unsigned long *b, int i) { return (int)((b[i / 64] >> (i % 64)) & 1); }

static void pad_init(Pad *p) {
  memset(p, 0, sizeof *p);
  g_mutex_init(&p->lock);
  for (int a = ABS_X; a <= ABS_RZ; a++)
    p->abs[a] = (struct input_absinfo){.minimum = -32768, .maximum = 32767, .fuzz = 16, .flat = 128};
  p->abs[ABS_Z] = p->abs[ABS_RZ] = (struct input_absinfo){.minimum = 0, .maximum = 255};
  p->abs[ABS_HAT0X] = p->abs[ABS_HAT0Y] = (struct input_absinfo){.minimum = -1, .maximum = 1};
}

/* the capability bitmap of event type ev (0: the types), as the kernel keeps it */
static size_t pad_bits(int ev, unsigned long *b, size_t nlong) {
  memset(b, 0, nlong * sizeof *b);
  switch (ev) {
  case 0:
    set_bit_(b, EV_SYN), set_bit_(b, EV_KEY), set_bit_(b, EV_ABS), set_bit_(b, EV_FF);
    return (EV_MAX + 64) / 64;
  case EV_KEY:
    for (size_t i = 0; i < sizeof pad_keys / sizeof *pad_keys; i++)
      set_bit_(b, pad_keys[i]);
    return (KEY_MAX + 64) / 64;
  case EV_ABS:
    for (int a = ABS_X; a <= ABS_RZ; a++)
      set_bit_(b, a);
    set_bit_(b, ABS_HAT0X), set_bit_(b, ABS_HAT0Y);
    return (ABS_MAX + 64) / 64;
  case EV_FF:
    for (size_t i = 0; i < sizeof pad_ff / sizeof *pad_ff; i++)
      set_bit_(b, pad_ff[i]);
    return (FF_MAX + 64) / 64;
  case EV_REL: return (REL_MAX + 64) / 64;
  case EV_MSC: return (MSC_MAX + 64) / 64;
  case EV_LED: return (LED_MAX + 64) / 64;
  case EV_SND: return (SND_MAX + 64) / 64;
  case EV_SW: return (SW_MAX + 64) / 64;
  default: return 0;
  }
}

/* copy n bytes of src to the client's buffer at arg (the ioctl's pointer argument) */
static int give(UMockdevIoctlClient *c, const void *src, size_t n) {
  GError *err = NULL;
  UMockdevIoctlData *d = umockdev_ioctl_data_resolve(umockdev_ioctl_client_get_arg(c), 0, n, &err);
  if (!d) {
    g_clear_error(&err);
    umockdev_ioctl_client_complete(c, -1, EFAULT);
    return 0;
  }
  memcpy(d->data, src, n);
  g_object_unref(d);
  return 1;
}

static gboolean pad_ioctl(UMockdevIoctlBase *base, UMockdevIoctlClient *c, gpointer user) {
  (void)base;
  Pad *p = user;
  atomic_fetch_add(&p->ioctls, 1);
  if (atomic_load(&p->gone)) {
    umockdev_ioctl_client_complete(c, -1, ENODEV);
    return TRUE;
  }
  gulong req = umockdev_ioctl_client_get_request(c);
  size_t len = _IOC_SIZE(req);
  unsigned nr = _IOC_NR(req);
  if (_IOC_TYPE(req) != 'E') { /* evdev answers every other family (JSIOC*, TC*, ...) with EINVAL */
    umockdev_ioctl_client_complete(c, -1, EINVAL);
    return TRUE;
  }
  g_mutex_lock(&p->lock);
  long ret = 0;
  int e = 0;
  if (req == EVIOCGVERSION) {
    int v = EV_VERSION;
    if (!give(c, &v, sizeof v)) goto done;
  } else if (req == EVIOCGID) {
    struct input_id id = {.bustype = BUS_USB, .vendor = 0x045e, .product = 0x028e, .version = 0x0114};
    if (!give(c, &id, sizeof id)) goto done;
  } else if (_IOC_DIR(req) == _IOC_READ && (nr == _IOC_NR(EVIOCGNAME(0)) || nr == _IOC_NR(EVIOCGPHYS(0)))) {
    const char *s = nr == _IOC_NR(EVIOCGNAME(0)) ? PAD_NAME : "usb-0000:00:14.0-3/input0";
    size_t n = strlen(s) + 1 < len ? strlen(s) + 1 : len;
    if (!give(c, s, n)) goto done;
    ret = (long)n;
  } else if (_IOC_DIR(req) == _IOC_READ && nr == _IOC_NR(EVIOCGUNIQ(0))) {
    ret = -1, e = ENOENT; /* xpad sets no serial */
  } else if (_IOC_DIR(req) == _IOC_READ &&
             (nr == _IOC_NR(EVIOCGPROP(0)) || nr == _IOC_NR(EVIOCGKEY(0)) || nr == _IOC_NR(EVIOCGLED(0)) ||
              nr == _IOC_NR(EVIOCGSND(0)) || nr == _IOC_NR(EVIOCGSW(0)) ||
              (nr >= 0x20 && nr < 0x20 + EV_CNT))) {
    unsigned long b[(KEY_CNT + 63) / 64];
    size_t nlong;
    if (nr == _IOC_NR(EVIOCGKEY(0))) {
      memcpy(b, p->keys, sizeof b);
      nlong = (KEY_MAX + 64) / 64;
    } else if (nr >= 0x20) {
      nlong = pad_bits((int)nr - 0x20, b, sizeof b / sizeof *b);
    } else {
      memset(b, 0, sizeof b);
      nlong = 1;
    }
    if (nr >= 0x20 && !nlong) {
      ret = -1, e = EINVAL;
    } else {
      size_t n = nlong * sizeof(long) < len ? nlong * sizeof(long) : len;
      if (!give(c, b, n)) goto done;
      ret = (long)n;
    }
  } else if (_IOC_DIR(req) == _IOC_READ && nr >= 0x40 && nr < 0x40 + ABS_CNT) { /* EVIOCGABS */
    unsigned long b[1];
    pad_bits(EV_ABS, b, 1);
    if (!test_bit_(b, (int)nr - 0x40)) {
      ret = -1, e = EINVAL;
    } else if (!give(c, &p->abs[nr - 0x40], sizeof(struct input_absinfo))) {
      goto done;
    }
  } else if (req == EVIOCSFF) { /* upload an effect: the kernel gives it a slot */
    GError *err = NULL;
    UMockdevIoctlData *d =
        umockdev_ioctl_data_resolve(umockdev_ioctl_client_get_arg(c), 0, sizeof(struct ff_effect), &err);
    if (!d) {
      g_clear_error(&err);
      umockdev_ioctl_client_complete(c, -1, EFAULT);
      goto done;
    }
    struct ff_effect *fx = (struct ff_effect *)d->data;
    if (fx->type != FF_RUMBLE && fx->type != FF_PERIODIC)
      ret = -1, e = EINVAL;
    else if (fx->id == -1)
      fx->id = 0;
    if (fx->type == FF_RUMBLE && fx->u.rumble.strong_magnitude > atomic_load(&p->strongest))
      atomic_store(&p->strongest, fx->u.rumble.strong_magnitude);
    g_object_unref(d);
  } else if (req == EVIOCRMFF || req == EVIOCGRAB || req == EVIOCSCLOCKID) {
    ret = 0;
  } else if (req == EVIOCGEFFECTS) {
    int n = 16; /* ff-memless */
    if (!give(c, &n, sizeof n)) goto done;
  } else {
    atomic_fetch_add(&p->bad_ioctls, 1);
    fprintf(stderr, "pad: unexpected evdev ioctl 0x%lx (nr 0x%x size %zu)\n", req, nr, len);
    ret = -1, e = EINVAL;
  }
  umockdev_ioctl_client_complete(c, ret, e);
done:
  g_mutex_unlock(&p->lock);
  return TRUE;
}

/* read(): whole events from the queue; none queued is EAGAIN (SDL reads with O_NONBLOCK) */
static gboolean pad_read(UMockdevIoctlBase *base, UMockdevIoctlClient *c, gpointer user) {
  (void)base;
  Pad *p = user;
  UMockdevIoctlData *buf = umockdev_ioctl_client_get_arg(c);
  size_t room = (size_t)buf->data_len / sizeof(struct input_event);
  atomic_fetch_add(&p->reads, 1);
  if (atomic_load(&p->gone)) {
    umockdev_ioctl_client_complete(c, -1, ENODEV);
    return TRUE;
  }
  if (!room) {
    umockdev_ioctl_client_complete(c, -1, EINVAL);
    return TRUE;
  }
  g_mutex_lock(&p->lock);
  size_t n = (size_t)p->qn < room ? (size_t)p->qn : room;
  if (n) {
    memcpy(buf->data, p->q, n * sizeof *p->q);
    memmove(p->q, p->q + n, (size_t)(p->qn - (int)n) * sizeof *p->q);
    p->qn -= (int)n;
    atomic_fetch_add(&p->events_read, (int)n);
  }
  g_mutex_unlock(&p->lock);
  if (n)
    umockdev_ioctl_client_complete(c, (long)(n * sizeof(struct input_event)), 0);
  else
    umockdev_ioctl_client_complete(c, -1, EAGAIN);
  return TRUE;
}

/* write(): force-feedback play requests (EV_FF, effect id, count) */
static gboolean pad_write(UMockdevIoctlBase *base, UMockdevIoctlClient *c, gpointer user) {
  (void)base;
  Pad *p = user;
  UMockdevIoctlData *buf = umockdev_ioctl_client_get_arg(c);
  size_t n = (size_t)buf->data_len / sizeof(struct input_event);
  const struct input_event *ev = (const struct input_event *)buf->data;
  if (atomic_load(&p->gone)) {
    umockdev_ioctl_client_complete(c, -1, ENODEV);
    return TRUE;
  }
  for (size_t i = 0; i < n; i++)
    if (ev[i].type == EV_FF && ev[i].value > 0) atomic_fetch_add(&p->rumbles, 1);
  umockdev_ioctl_client_complete(c, n ? (long)(n * sizeof *ev) : -1, n ? 0 : EINVAL);
  return TRUE;
}

/* the driver reports: the events of one report, then SYN_REPORT; the state changes as it reports */
static void pad_report(Pad *p, int n, const int (*ev)[3]) {
  g_mutex_lock(&p->lock);
  cr_assert_leq(p->qn + n + 1, QCAP, "event queue full");
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  for (int i = 0; i <= n; i++) {
    struct input_event *e = &p->q[p->qn++];
    memset(e, 0, sizeof *e);
    e->input_event_sec = ts.tv_sec;
    e->input_event_usec = ts.tv_nsec / 1000;
    if (i == n) { /* SYN_REPORT */
      e->type = EV_SYN;
      break;
    }
    e->type = (unsigned short)ev[i][0];
    e->code = (unsigned short)ev[i][1];
    e->value = ev[i][2];
    if (e->type == EV_ABS) p->abs[e->code].value = e->value;
    if (e->type == EV_KEY) {
      if (e->value)
        set_bit_(p->keys, e->code);
      else
        p->keys[e->code / 64] &= ~(1ul << (e->code % 64));
    }
  }
  g_mutex_unlock(&p->lock);
}

static void pad_button(Pad *p, int code, int down) {
  pad_report(p, 1, (const int[][3]){{EV_KEY, code, down}});
}

/* wait until the reader has taken every queued event */
static void pad_drain(Pad *p, ttProc *proc, const char *what) {
  for (double t0 = tt_now(); tt_now() - t0 < 20;) {
    g_mutex_lock(&p->lock);
    int left = p->qn;
    g_mutex_unlock(&p->lock);
    if (!left) return;
    tt_proc_wait_for(proc, NULL, 0.01);
  }
  cr_assert_fail("teleop never read %s: %s", what, proc->out);
}

/* plug the pad in as /dev/input/event<n>: its sysfs devices (umockdev sends their "add" uevents)
 * and its node, answered by the handler above */
static void pad_plug(UMockdevTestbed *tb, Pad *p, int n) {
  pad_init(p);
  p->n = n;
  char *text = g_strdup_printf(pad_sysfs, n, 64 + n);
  GError *err = NULL;
  cr_assert(umockdev_testbed_add_from_string(tb, text, &err), "add_from_string: %s",
            err ? err->message : "?");
  g_free(text);
  p->h = umockdev_ioctl_base_new();
  g_signal_connect(p->h, "handle-ioctl", G_CALLBACK(pad_ioctl), p);
  g_signal_connect(p->h, "handle-read", G_CALLBACK(pad_read), p);
  g_signal_connect(p->h, "handle-write", G_CALLBACK(pad_write), p);
  char node[64];
  snprintf(node, sizeof node, "/dev/input/event%d", n);
  cr_assert(umockdev_testbed_attach_ioctl(tb, node, p->h, &err), "attach_ioctl: %s",
            err ? err->message : "?");
}

/* pull the cable: the open node fails with ENODEV, then udev says "remove" for the event node and
 * its input device, and they leave sysfs and /dev */
static void pad_unplug(UMockdevTestbed *tb, Pad *p) {
  atomic_store(&p->gone, 1);
  char *input = g_strdup_printf("/sys" PAD_SYS, p->n); /* sysfs paths, as uevents name them */
  char *event = g_strdup_printf("%s/event%d", input, p->n);
  umockdev_testbed_uevent(tb, event, "remove");
  umockdev_testbed_uevent(tb, input, "remove");
  umockdev_testbed_remove_device(tb, event);
  umockdev_testbed_remove_device(tb, input);
  g_free(event);
  g_free(input);
}

static void pad_free(Pad *p) {
  if (p->h) g_object_unref(p->h);
  g_mutex_clear(&p->lock);
}

static UMockdevTestbed *testbed(void) {
  UMockdevTestbed *tb = umockdev_testbed_new();
  cr_assert(umockdev_in_mock_environment(), "run this test through umockdev-wrapper");
  return tb;
}

static void start_teleop(ttProc *p, const char *path) {
  char *argv[] = {(char *)tt_build("teleop/teleop"),
                  "--task",
                  "reach",
                  "--device",
                  "gamepad",
                  "--headless",
                  "--episodes",
                  "1",
                  "--out",
                  (char *)path,
                  NULL};
  cr_assert_eq(tt_proc_start(p, argv), 0);
}

/* teleop has the pad open once SDL reads it (every tick) */
static void wait_reading(Pad *pad, ttProc *p) {
  for (double t0 = tt_now(); atomic_load(&pad->reads) == 0 && tt_now() - t0 < 30;)
    tt_proc_wait_for(p, NULL, 0.02);
  cr_assert_gt(atomic_load(&pad->reads), 0, "teleop never read the pad on event%d (%d ioctls): %s", pad->n,
               atomic_load(&pad->ioctls), p->out);
}

/* the left stick (evdev: -32768..32767, y positive down) */
static void left_stick(Pad *pad, ttProc *p, int x, int y) {
  pad_report(pad, 2, (const int[][3]){{EV_ABS, ABS_X, x}, {EV_ABS, ABS_Y, y}});
  pad_drain(pad, p, "the stick");
}

/* the button held until teleop says what it did, then let go */
static void press_until(Pad *pad, ttProc *p, int code, const char *says, const char *what) {
  pad_button(pad, code, 1);
  cr_assert(tt_proc_wait_for(p, says, 30), "%s: teleop never said \"%s\": %s", what, says, p->out);
  pad_button(pad, code, 0);
}

/* the one demo of path: a success recorded with the gamepad; the number of its steps whose action
 * 0 (-left y: world -x, away from the camera) and 1 (left x: right) are near x0 and x1 */
static int steps_with(const char *path, double x0, double x1, int64_t *steps) {
  dsFile *f;
  cr_assert_eq(ds_open(path, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(f), 1);
  cr_assert_eq(ds_demo(f, 0)->success, 1);
  cr_assert_str_eq(ds_demo(f, 0)->device, "gamepad");
  dsEpisode e;
  cr_assert_eq(ds_read_episode(f, 0, &e), 0, "%s", tk_errmsg());
  int n = 0;
  for (int64_t s = 0; s < e.num_samples; s++)
    n += fabs(e.actions[s * 7] - x0) < 0.01 && fabs(e.actions[s * 7 + 1] - x1) < 0.01;
  *steps = e.num_samples;
  ds_episode_free(&e);
  ds_close(f);
  return n;
}

TestSuite(gamepad);

/* Start begins an episode; the left stick pushed fully away and half right for a second; A ends it
 * as a success, which the pad feels */
Test(gamepad, teleop_records_an_episode, .timeout = 120) {
  UMockdevTestbed *tb = testbed();
  static Pad pad;
  pad_plug(tb, &pad, 20);
  char path[4200];
  snprintf(path, sizeof path, "%s/pad.h5", tt_tmpdir());
  double t_start = tt_now();
  ttProc p;
  start_teleop(&p, path);
  wait_reading(&pad, &p);
  double t_open = tt_now();
  press_until(&pad, &p, BTN_START, "recording demo_0", "Start");
  left_stick(&pad, &p, 16384, -32768);
  tt_proc_wait_for(&p, NULL, 1.0);
  left_stick(&pad, &p, 0, 0);
  tt_proc_wait_for(&p, NULL, 0.3);
  press_until(&pad, &p, BTN_A, "ended: success", "A");
  int rc = tt_proc_finish(&p, 30);
  printf("%s", p.out);
  printf(
      "pad: opened after %.2f s; %d ioctls, %d reads, %d events read, %d rumbles (strongest %d); whole run "
      "%.2f s\n",
      t_open - t_start, atomic_load(&pad.ioctls), atomic_load(&pad.reads), atomic_load(&pad.events_read),
      atomic_load(&pad.rumbles), atomic_load(&pad.strongest), tt_now() - t_start);
  cr_assert_eq(rc, 0, "teleop: %s", p.out);
  cr_assert(strstr(p.out, "teleop: 1 success, 0 failure"), "%s", p.out);
  cr_expect_eq(atomic_load(&pad.bad_ioctls), 0, "SDL asked the pad something evdev was not taught here");
  /* the success is felt: teleop rumbles at 0.4 for a success, which SDL uploads as an FF_RUMBLE effect
   * and plays */
  cr_expect_geq(atomic_load(&pad.rumbles), 1, "no force-feedback play written");
  cr_expect_eq(atomic_load(&pad.strongest), (int)(0.4 * 65535), "rumble strength %d",
               atomic_load(&pad.strongest));
  /* fully away: -1 (SDL's -32767 after its axis scaling, within 0.01); half right past the 0.1
   * deadzone: (0.5 - 0.1) / 0.9 */
  int64_t steps;
  int pushed = steps_with(path, -1, 0.4 / 0.9, &steps);
  printf("gamepad: %lld steps, %d with the stick pushed away and right\n", (long long)steps, pushed);
  cr_assert_geq(pushed, 10, "a second of pushing should give about 20 such steps");
  g_object_unref(tb);
  pad_free(&pad);
}

/* Unplugged mid-episode and plugged in again (as the next input device, event21): teleop holds the
 * episode while the pad is gone, takes the pad back when udev announces it, and the demo goes on */
Test(gamepad, unplugged_and_back_mid_episode, .timeout = 120) {
  UMockdevTestbed *tb = testbed();
  static Pad a, b;
  pad_plug(tb, &a, 20);
  char path[4200];
  snprintf(path, sizeof path, "%s/pad.h5", tt_tmpdir());
  ttProc p;
  start_teleop(&p, path);
  wait_reading(&a, &p);
  press_until(&a, &p, BTN_START, "recording demo_0", "Start");
  left_stick(&a, &p, 0, -32768); /* away */
  tt_proc_wait_for(&p, NULL, 0.6);
  pad_unplug(tb, &a); /* with the stick still pushed */
  cr_assert(tt_proc_wait_for(&p, "device unplugged", 10), "the unplug was not noticed: %s", p.out);
  tt_proc_wait_for(&p, NULL, 0.3);
  /* the next input device number, as the kernel gives (umockdev 0.17 also keeps a removed node's
   * pty, so the same node cannot be added again) */
  pad_plug(tb, &b, 21);
  cr_assert(tt_proc_wait_for(&p, "device back: resuming", 10), "the pad plugged in again was not taken: %s",
            p.out);
  wait_reading(&b, &p);
  left_stick(&b, &p, 32767, 0); /* right */
  tt_proc_wait_for(&p, NULL, 0.6);
  left_stick(&b, &p, 0, 0);
  press_until(&b, &p, BTN_A, "ended: success", "A");
  int rc = tt_proc_finish(&p, 30);
  printf("%s", p.out);
  cr_assert_eq(rc, 0, "teleop: %s", p.out);
  cr_assert(strstr(p.out, "teleop: 1 success, 0 failure"), "%s", p.out);
  cr_expect_eq(atomic_load(&a.bad_ioctls) + atomic_load(&b.bad_ioctls), 0);
  int64_t steps;
  int away = steps_with(path, -1, 0, &steps), right = steps_with(path, 0, 1, &steps);
  printf("gamepad: %lld steps, %d pushed away before the unplug, %d pushed right after\n", (long long)steps,
         away, right);
  cr_assert_geq(away, 5, "0.6 s of pushing should give about 12 steps");
  cr_assert_geq(right, 5, "0.6 s of pushing should give about 12 steps");
  g_object_unref(tb);
  pad_free(&a);
  pad_free(&b);
}
