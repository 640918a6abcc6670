/* tests/teleop/test_devices.c -- every input device through the real teleop binary, set up as a
 * user sets it up and nothing more: no driver registered, no hook, no in-process pad.
 *   keyboard:   teleop with its window on a private X server; the keys are pressed on that
 *               server through XTEST (what a keyboard does), after focusing the window as a
 *               click would.
 *   scripted:   the scripted operator (its virtual pad is the driver's own).
 *   replay:     input recorded with --record-input, then replayed: the same demo.
 *   spacemouse: tests/capture/test_spacemouse.c, teleop_records_an_episode (the binary in an
 *               emulated USB world: it needs the umockdev preload that suite runs in); with no
 *               device: the refusal below.
 *   gamepad:    tests/teleop/test_gamepad.c (an Xbox 360 pad emulated as an evdev node with
 *               umockdev, found by SDL through udev and read as a real one: it needs the umockdev
 *               preload that suite runs in; SDL's virtual joysticks live only in the process that
 *               attached them, and /dev/uinput is not available here); with no pad: the refusal
 *               below. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <X11/Xlib.h>
#include <X11/Xutil.h>
#include <X11/keysym.h>

#include "ds.h"
#include "tk.h"
#include "tt.h"
#include "tt_cli.h"
#include "tt_proc.h"
#include "tt_xvfb.h"

TestSuite(devices, .fini = tt_pool_free);

static const char *teleop(void) { return tt_build("teleop/teleop"); }

/* The dataset holds n demos; demo 0 ended as success (1) or not (0), recorded with device, and some
 * step's action component k has |value| >= at_least. Returns the number of steps of demo 0. */
static int64_t check_demo(const char *path, int n, int success, const char *device, int k, double at_least) {
  dsFile *f;
  cr_assert_eq(ds_open(path, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(f), n, "%s has %d demos", path, ds_num_demos(f));
  cr_assert_eq(ds_demo(f, 0)->success, success);
  cr_assert_str_eq(ds_demo(f, 0)->device, device);
  dsEpisode e;
  cr_assert_eq(ds_read_episode(f, 0, &e), 0, "%s", tk_errmsg());
  double most = 0;
  for (int64_t t = 0; t < e.num_samples; t++)
    if (fabs(e.actions[t * 7 + k]) > most) most = fabs(e.actions[t * 7 + k]);
  printf("%s: %lld steps, largest |action[%d]| %.3f\n", device, (long long)e.num_samples, k, most);
  cr_assert_geq(most, at_least, "the operator's motion is not in the actions");
  int64_t steps = e.num_samples;
  ds_episode_free(&e);
  ds_close(f);
  return steps;
}

/* ---- keyboard ---- */
/* The top-level window whose name starts with prefix (depth-first under root), or 0. */
static Window find_window(Display *d, Window w, const char *prefix) {
  char *name = NULL;
  if (XFetchName(d, w, &name) && name) {
    int hit = !strncmp(name, prefix, strlen(prefix));
    XFree(name);
    if (hit) return w;
  }
  Window root, parent, *kids = NULL;
  unsigned n = 0;
  if (!XQueryTree(d, w, &root, &parent, &kids, &n)) return 0;
  Window found = 0;
  for (unsigned i = 0; i < n && !found; i++)
    found = find_window(d, kids[i], prefix);
  if (kids) XFree(kids);
  return found;
}

static void tap(xkeys *x, KeySym k) {
  xkey(x, k, 1);
  tt_sleep(0.15); /* three ticks at 20 Hz */
  xkey(x, k, 0);
}

Test(devices, keyboard_in_the_window, .timeout = 180) {
  pid_t server = start_xvfb();
  cr_assert(server > 0, "no Xvfb");
  const char *d = tt_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/k.h5", d);
  char *argv[] = {(char *)teleop(), "--task", "reach", "--device", "keyboard", "--out", path, NULL};
  /* as for every windowed program in the suite (TT_XVFB): no leak check in that process, whose X and
   * D-Bus client libraries keep allocations of their own */
  char asan[1024];
  snprintf(asan, sizeof asan, "%s:detect_leaks=0", getenv("ASAN_OPTIONS") ? getenv("ASAN_OPTIONS") : "");
  setenv("ASAN_OPTIONS", asan, 1);
  ttProc p;
  cr_assert_eq(tt_proc_start(&p, argv), 0);

  /* the window appears; focus it as a click would (no window manager on this server) */
  xkeys x = xkeys_open();
  Window w = 0;
  for (double t0 = tt_now(); !w && tt_now() - t0 < 60; tt_sleep(0.1)) {
    w = find_window(x.dpy, DefaultRootWindow(x.dpy), "demokit teleop");
    XWindowAttributes a;
    if (w && (!XGetWindowAttributes(x.dpy, w, &a) || a.map_state != IsViewable)) w = 0;
    tt_proc_wait_for(&p, NULL, 0);
    cr_assert(p.fd >= 0 || w, "teleop ended before its window showed: %s", p.out);
  }
  cr_assert(w, "no teleop window after 60 s: %s", p.out);

  /* P starts an episode (pressed again until the window has the focus) */
  int recording = 0;
  for (int i = 0; i < 20 && !recording; i++) {
    XSetInputFocus(x.dpy, w, RevertToPointerRoot, CurrentTime);
    XWarpPointer(x.dpy, None, w, 0, 0, 0, 0, 100, 100);
    XSync(x.dpy, False);
    tt_sleep(0.2);
    tap(&x, XK_p);
    recording = tt_proc_wait_for(&p, "recording demo_0", 1.0);
  }
  cr_assert(recording, "P never started an episode: %s", p.out);
  /* W (forward: away from the camera, world -x) and R (up) held for a second, then Return: success */
  xkey(&x, XK_w, 1);
  xkey(&x, XK_r, 1);
  tt_sleep(1.0);
  xkey(&x, XK_r, 0);
  xkey(&x, XK_w, 0);
  tt_sleep(0.2);
  tap(&x, XK_Return);
  cr_assert(tt_proc_wait_for(&p, "ended: success", 10), "Return did not end the episode: %s", p.out);
  /* Escape quits */
  tap(&x, XK_Escape);
  int rc = tt_proc_finish(&p, 30);
  xkeys_close(&x);
  stop_xvfb(server);
  cr_assert_eq(rc, 0, "teleop: %s", p.out);
  cr_assert(strstr(p.out, "teleop: 1 success, 0 failure"), "%s", p.out);
  int64_t n = check_demo(path, 1, 1, "keyboard", 0, 0.9);
  cr_assert_geq(n, 10, "a second of W held should record about 20 steps");
}

/* ---- scripted, replay ---- */
Test(devices, scripted_records_and_replay_repeats_it, .timeout = 180) {
  const char *d = tt_tmpdir();
  char *out = NULL;
  int rc =
      tt_run(&out,
             "%s --task reach --device scripted --headless --episodes 1 --seed 3 --record-input %s/in.bin "
             "--out %s/a.h5",
             teleop(), d, d);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char pa[4200], pb[4200];
  snprintf(pa, sizeof pa, "%s/a.h5", d);
  snprintf(pb, sizeof pb, "%s/b.h5", d);
  check_demo(pa, 1, 1, "scripted", 0, 0.05);
  rc = tt_run(&out,
              "%s --task reach --device replay --device-arg %s/in.bin --seed 3 --headless --fast --out %s",
              teleop(), d, pb);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  check_demo(pb, 1, 1, "replay", 0, 0.05);
  dsFile *fa, *fb;
  cr_assert_eq(ds_open(pa, 0, &fa), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_open(pb, 0, &fb), 0, "%s", tk_errmsg());
  dsEpisode ea, eb;
  cr_assert_eq(ds_read_episode(fa, 0, &ea), 0);
  cr_assert_eq(ds_read_episode(fb, 0, &eb), 0);
  cr_assert_eq(ea.num_samples, eb.num_samples);
  double diff = 0;
  for (int64_t i = 0; i < 7 * ea.num_samples; i++)
    diff = fmax(diff, fabs(ea.actions[i] - eb.actions[i]));
  printf("replay: max action difference %g over %lld steps\n", diff, (long long)ea.num_samples);
  cr_assert_eq(diff, 0.0);
  ds_episode_free(&ea);
  ds_episode_free(&eb);
  ds_close(fa);
  ds_close(fb);
}

/* ---- absent devices: refused at once, with what was looked for ---- */
Test(devices, absent_devices_are_named, .timeout = 60) {
  const char *d = tt_tmpdir();
  char *out, *err;
  int rc = run2(d, &out, &err, "%s --task reach --device spacemouse --headless --out %s/s.h5", teleop(), d);
  cr_assert_eq(rc, 1, "%s%s", out, err);
  cr_assert(strstr(err, "no SpaceMouse found") && strstr(err, "256f:c635") && strstr(err, "046d:c626"), "%s",
            err);
  char s[4200];
  snprintf(s, sizeof s, "%s/s.h5", d);
  cr_assert_eq(file_size(s), -1, "a refused device wrote %s", s);
  rc = run2(d, &out, &err, "%s --task reach --device gamepad --headless --out %s/g.h5", teleop(), d);
  cr_assert_eq(rc, 1, "%s%s", out, err);
  cr_assert(strstr(err, "no game controller found"), "%s", err);
  /* the keyboard needs the window */
  rc = run2(d, &out, &err, "%s --task reach --device keyboard --headless --out %s/k.h5", teleop(), d);
  cr_assert_eq(rc, 1, "%s%s", out, err);
  cr_assert(strstr(err, "drop --headless"), "%s", err);
  /* --help lists every device of the table */
  rc = run2(d, &out, &err, "%s --help", teleop());
  cr_assert_eq(rc, 0);
  const char *names[] = {"gamepad", "keyboard", "spacemouse", "scripted", "replay"};
  for (int i = 0; i < 5; i++) {
    char line[64];
    snprintf(line, sizeof line, "\n  %s ", names[i]);
    cr_assert(strstr(out, line), "--help does not list %s: %s", names[i], out);
  }
}
