/* tests/teleop/test_window.c -- the console window (capture/cap_window.c) and the keyboard
 * backend (capture/cap_keyboard.c) under a private X server.
 *
 * Display. The runner starts its own Xvfb before the first test (`Xvfb -displayfd`: the
 * server picks a free display number itself and reports it, so parallel suites never race
 * for one, unlike `xvfb-run -a`), sets DISPLAY for the test processes it spawns, and stops
 * the server at the end (it also dies with the runner: PR_SET_PDEATHSIG). No wrapper is
 * needed in meson. The X11 keyboard test runs its own server (the focus is server-wide).
 * DK_TEST_DISPLAY=1 uses the DISPLAY of the environment instead.
 *
 * Keys. SDL_PushEvent does not move SDL's keyboard state (only its X11 backend does), so
 * real key presses are made on the X server through the XTEST extension (libXtst.so.6,
 * opened at run time), which is what a keyboard does. DK_SHOT=path.png saves the HUD
 * screenshot there too (every run leaves one in its temporary directory). */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <dlfcn.h>
#include <link.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <X11/Xlib.h>
#include <X11/keysym.h>

#include <SDL2/SDL.h>
#include <mujoco/mujoco.h>

#include "cap.h"
#include "cap_keyboard.h"
#include "tk.h"
#include "tt.h"
#include "tt_mujoco.h"
#include "tt_xvfb.h"

/* Sanitizer builds only (plain builds ignore these hooks):
 * - GCC 12's LeakSanitizer and Mesa's dynamic TLS: see tests/capture/test_render.c.
 * - libOSMesa: see test_render.c. libdbus: SDL's video init opens D-Bus, and SDL_Quit
 *   deliberately does not call dbus_shutdown (SDL bug 3950), so libdbus's global state
 *   stays allocated at exit.
 * - SDL terminates its EGL display when the last GL window closes, and Mesa then unloads its
 *   driver: the driver's static allocations lose their roots and, from an unloaded library,
 *   cannot even be named in a suppression. pin_gl_driver keeps the driver loaded instead
 *   (RTLD_NODELETE): nothing of ours is hidden by that. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libOSMesa.so.8\nleak:libdbus-1.so.3\n"; }
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "intercept_tls_get_addr=0"; }

/* ---- the private X server (runner process only): tt_xvfb.h ---- */
static pid_t xvfb_pid;

static int own_display(void) {
  const char *use = getenv("DK_TEST_DISPLAY");
  return !(use && use[0] == '1' && getenv("DISPLAY"));
}

ReportHook(PRE_ALL)(struct criterion_test_set *set) {
  (void)set;
  if (own_display()) xvfb_pid = start_xvfb();
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats) {
  (void)stats;
  stop_xvfb(xvfb_pid);
  xvfb_pid = 0;
}

/* ---- fixtures ---- */
/* A green floor, a red box that the tests move along +x, a light, a camera in front. */
static const char scene_xml[] =
    "<mujoco model=\"windowtest\">\n"
    "  <statistic center=\"0 0 0.2\" extent=\"1.2\"/>\n"
    "  <worldbody>\n"
    "    <light name=\"sun\" pos=\"0 0 3\" dir=\"0 0 -1\" directional=\"true\"/>\n"
    "    <geom name=\"floor\" type=\"plane\" size=\"2 2 0.1\" rgba=\"0.2 0.6 0.2 1\"/>\n"
    "    <body name=\"box\" pos=\"0 0 0.1\">\n"
    "      <freejoint/>\n"
    "      <geom name=\"box\" type=\"box\" size=\"0.1 0.1 0.1\" rgba=\"0.9 0.1 0.1 1\"/>\n"
    "    </body>\n"
    "    <camera name=\"front\" pos=\"0 -1.2 0.6\" xyaxes=\"1 0 0 0 0.45 0.9\"/>\n"
    "  </worldbody>\n"
    "</mujoco>\n";

static mjModel *load_scene(void) { return tt_load_mjcf(scene_xml); }

static int pin_one(struct dl_phdr_info *info, size_t size, void *user) {
  (void)size, (void)user;
  if (info->dlpi_name && strstr(info->dlpi_name, "_dri.so"))
    dlopen(info->dlpi_name, RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE);
  return 0;
}

/* after a GL context exists: see the sanitizer notes at the top */
static void pin_gl_driver(void) { dl_iterate_phdr(pin_one, NULL); }

static capWindow *open_window(const mjModel *m, int width, int height) {
  capWindow *w = NULL;
  cr_assert_eq(cap_window_open(m, width, height, "test", &w), 0, "%s", tk_errmsg());
  pin_gl_driver();
  return w;
}

static void sdl_up(void) {
  cr_assert(getenv("DISPLAY"), "no DISPLAY: Xvfb did not start and none was given");
  setenv("SDL_VIDEODRIVER", "x11", 1);
  cr_assert_eq(SDL_Init(SDL_INIT_VIDEO | SDL_INIT_GAMECONTROLLER | SDL_INIT_JOYSTICK), 0, "SDL_Init: %s",
               SDL_GetError());
}

static void pump(capWindow *w) {
  SDL_Event ev;
  while (SDL_PollEvent(&ev))
    cap_window_events(w, &ev);
}

typedef struct {
  int w, h;
  uint8_t *px; /* RGB, top-down */
} shot;

static shot take(capWindow *w) {
  shot s = {0};
  cr_assert_eq(cap_window_screenshot(w, NULL, 0, &s.w, &s.h), 0, "%s", tk_errmsg());
  size_t n = (size_t)s.w * s.h * 3;
  s.px = malloc(n);
  cr_assert_eq(cap_window_screenshot(w, s.px, n, &s.w, &s.h), 0, "%s", tk_errmsg());
  return s;
}

/* pixels that differ (any channel by more than 8) in the rectangle x0..x1, y0..y1 (top-down) */
static long diff_px(const shot *a, const shot *b, int x0, int y0, int x1, int y1) {
  long n = 0;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      const uint8_t *p = a->px + ((size_t)y * a->w + x) * 3, *q = b->px + ((size_t)y * b->w + x) * 3;
      if (abs(p[0] - q[0]) > 8 || abs(p[1] - q[1]) > 8 || abs(p[2] - q[2]) > 8) n++;
    }
  return n;
}

static long distinct_colours(const shot *s) { /* coarse: 4 bits per channel */
  static uint8_t seen[4096];
  memset(seen, 0, sizeof seen);
  long n = 0;
  for (size_t i = 0; i < (size_t)s->w * s->h; i++) {
    const uint8_t *p = s->px + i * 3;
    int k = (p[0] >> 4) << 8 | (p[1] >> 4) << 4 | p[2] >> 4;
    if (!seen[k]) seen[k] = 1, n++;
  }
  return n;
}

/* ---- a PNG writer without a library: deflate "stored" blocks, CRC-32, Adler-32 ---- */
static uint32_t crc_table[256];

static uint32_t crc32_update(uint32_t c, const uint8_t *p, size_t n) {
  if (!crc_table[1])
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t v = i;
      for (int k = 0; k < 8; k++)
        v = v & 1 ? 0xEDB88320u ^ (v >> 1) : v >> 1;
      crc_table[i] = v;
    }
  c ^= 0xFFFFFFFFu;
  for (size_t i = 0; i < n; i++)
    c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

static void chunk(FILE *f, const char *type, const uint8_t *data, size_t n) {
  uint8_t hdr[8];
  put32(hdr, (uint32_t)n);
  memcpy(hdr + 4, type, 4);
  fwrite(hdr, 1, 8, f);
  if (n) fwrite(data, 1, n, f);
  uint32_t c = crc32_update(crc32_update(0, hdr + 4, 4), data, n);
  uint8_t t[4];
  put32(t, c);
  fwrite(t, 1, 4, f);
}

static int write_png(const char *path, const shot *s) {
  size_t raw_n = (size_t)s->h * (1 + (size_t)s->w * 3);
  uint8_t *raw = malloc(raw_n);
  for (int y = 0; y < s->h; y++) {
    uint8_t *r = raw + (size_t)y * (1 + (size_t)s->w * 3);
    r[0] = 0; /* filter: none */
    memcpy(r + 1, s->px + (size_t)y * s->w * 3, (size_t)s->w * 3);
  }
  size_t nblk = (raw_n + 65534) / 65535;
  size_t z_n = 2 + raw_n + nblk * 5 + 4;
  uint8_t *z = malloc(z_n), *o = z;
  *o++ = 0x78, *o++ = 0x01; /* zlib header: deflate, 32K window, no dictionary */
  uint32_t a = 1, b = 0;
  for (size_t off = 0; off < raw_n; off += 65535) {
    size_t n = raw_n - off < 65535 ? raw_n - off : 65535;
    *o++ = off + n == raw_n; /* BFINAL, BTYPE 00 (stored) */
    *o++ = (uint8_t)n, *o++ = (uint8_t)(n >> 8), *o++ = (uint8_t)~n, *o++ = (uint8_t)(~n >> 8);
    memcpy(o, raw + off, n);
    o += n;
    for (size_t i = 0; i < n; i++)
      a = (a + raw[off + i]) % 65521, b = (b + a) % 65521;
  }
  put32(o, b << 16 | a);
  FILE *f = fopen(path, "wb");
  if (!f) return -1;
  fwrite("\x89PNG\r\n\x1a\n", 1, 8, f);
  uint8_t ihdr[13];
  put32(ihdr, (uint32_t)s->w);
  put32(ihdr + 4, (uint32_t)s->h);
  ihdr[8] = 8, ihdr[9] = 2, ihdr[10] = ihdr[11] = ihdr[12] = 0; /* 8-bit RGB */
  chunk(f, "IHDR", ihdr, 13);
  chunk(f, "IDAT", z, z_n);
  chunk(f, "IEND", NULL, 0);
  int rc = fclose(f);
  free(raw);
  free(z);
  return rc;
}

/* ---- window ---- */
static const double act[7] = {0.8, -0.4, 0.0, 0.25, -1.0, 0.5, 1.0};

static capHud sample_hud(void) {
  capHud h = {0};
  h.state = "RECORDING";
  h.tone = CAP_TONE_REC;
  h.episode = 13;
  h.n_success = 12, h.n_failure = 2, h.n_discarded = 3;
  h.episode_time = 7.35;
  h.rate_hz = 19.96, h.target_hz = 20;
  h.missed = 1;
  h.device = "keyboard";
  h.action = act;
  h.action_dim = 7;
  h.legend = cap_keyboard_legend();
  h.message = "saved demo_12 (87 steps)";
  h.message_tone = CAP_TONE_GOOD;
  return h;
}

/* A picture, a HUD where the HUD is drawn, and a scene that follows the box. */
Test(window, draw_hud_screenshot, .timeout = 120) {
  sdl_up();
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  capWindow *w = open_window(m, 1280, 720);
  const char *force = getenv("SDL_VIDEO_X11_FORCE_EGL"); /* the environment may override us */
  cr_assert_str_eq(cap_window_gl_api(w), force && force[0] == '0' ? "glx" : "egl");
  pump(w);
  tt_set_box_x(m, d, 0);
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  shot bare = take(w);
  cr_assert_eq(bare.w, 1280);
  cr_assert_eq(bare.h, 720);
  /* not one colour: the green floor and the red box are there */
  long green = 0, red = 0;
  for (size_t i = 0; i < (size_t)bare.w * bare.h; i++) {
    const uint8_t *q = bare.px + i * 3;
    green += q[1] > 120 && q[0] < 100 && q[2] < 100;
    red += q[0] > 150 && q[1] < 60 && q[2] < 60;
  }
  cr_assert(green > bare.w * bare.h / 4 && red > 1000, "floor %ld, box %ld pixels: not the scene", green,
            red);

  capHud h = sample_hud();
  double t0 = tk_now_s();
  cr_assert_eq(cap_window_draw(w, m, d, &h), 0, "%s", tk_errmsg());
  double t_draw = tk_now_s() - t0;
  shot hud = take(w);
  /* the banner and counters (top left), legend (top right), bars (bottom left) */
  long tl = diff_px(&bare, &hud, 0, 0, 300, 200), tr = diff_px(&bare, &hud, 1280 - 300, 0, 1280, 200);
  long bl = diff_px(&bare, &hud, 0, 720 - 150, 300, 720);
  cr_log_info("HUD changed %ld / %ld / %ld pixels (top left, top right, bottom left); draw %.1f ms", tl, tr,
              bl, t_draw * 1e3);
  cr_assert_gt(tl, 2000, "top left: %ld pixels changed by the HUD", tl);
  cr_assert_gt(tr, 2000, "top right: %ld pixels changed by the HUD", tr);
  cr_assert_gt(bl, 2000, "bottom left: %ld pixels changed by the HUD", bl);
  /* the middle of the scene is not covered */
  long mid = diff_px(&bare, &hud, 440, 260, 840, 460);
  cr_assert_lt(mid, 200, "the HUD covers the middle of the scene (%ld pixels)", mid);
  /* the banner is red (CAP_TONE_REC) near its top-left corner */
  const uint8_t *p = hud.px + ((size_t)14 * hud.w + 14) * 3;
  cr_assert(p[0] > 150 && p[1] < 80 && p[2] < 80, "banner pixel %d,%d,%d is not red", p[0], p[1], p[2]);

  char path[4200];
  snprintf(path, sizeof path, "%s/window.png", tt_tmpdir());
  cr_assert_eq(write_png(path, &hud), 0, "cannot write %s", path);
  const char *extra = getenv("DK_SHOT");
  if (extra && extra[0]) cr_assert_eq(write_png(extra, &hud), 0, "cannot write %s", extra);
  cr_log_info("screenshot: %s", path);

  tt_set_box_x(m, d, 0.5);
  cr_assert_eq(cap_window_draw(w, m, d, &h), 0, "%s", tk_errmsg());
  shot moved = take(w);
  long scene = diff_px(&hud, &moved, 300, 200, 980, 560);
  cr_assert_gt(scene, 500, "moving the box changed %ld pixels of the scene", scene);
  /* the screenshot is the last drawn frame: taking it twice gives the same pixels */
  shot again = take(w);
  cr_assert_eq(memcmp(moved.px, again.px, (size_t)moved.w * moved.h * 3), 0);

  free(bare.px), free(hud.px), free(moved.px), free(again.px);
  cap_window_close(w);
  mj_deleteData(d);
  mj_deleteModel(m);
  SDL_Quit();
}

/* Mouse: a left drag orbits, the wheel zooms; close events end the session. */
Test(window, mouse_and_close, .timeout = 120) {
  sdl_up();
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  mj_forward(m, d);
  capWindow *w = open_window(m, 320, 240);
  Uint32 id = SDL_GetWindowID(cap_window_sdl(w));
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  shot a = take(w);

  SDL_Event ev = {0};
  ev.type = SDL_MOUSEBUTTONDOWN;
  ev.button.windowID = id;
  ev.button.button = SDL_BUTTON_LEFT;
  cr_assert_eq(cap_window_events(w, &ev), 0);
  memset(&ev, 0, sizeof ev);
  ev.type = SDL_MOUSEMOTION;
  ev.motion.windowID = id;
  ev.motion.xrel = 40;
  cr_assert_eq(cap_window_events(w, &ev), 0);
  ev.type = SDL_MOUSEBUTTONUP;
  ev.button.windowID = id;
  ev.button.button = SDL_BUTTON_LEFT;
  cap_window_events(w, &ev);
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  shot b = take(w);
  long orbit = diff_px(&a, &b, 0, 0, a.w, a.h);
  cr_assert_gt(orbit, 1000, "a drag changed only %ld pixels", orbit);
  /* motion without a button held does nothing */
  memset(&ev, 0, sizeof ev);
  ev.type = SDL_MOUSEMOTION;
  ev.motion.windowID = id;
  ev.motion.xrel = 40;
  cap_window_events(w, &ev);
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  shot c = take(w);
  cr_assert_eq(diff_px(&b, &c, 0, 0, b.w, b.h), 0);

  memset(&ev, 0, sizeof ev);
  ev.type = SDL_MOUSEWHEEL;
  ev.wheel.windowID = id;
  ev.wheel.y = 5;
  cap_window_events(w, &ev);
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  shot z = take(w);
  cr_assert_gt(diff_px(&c, &z, 0, 0, c.w, c.h), 1000, "the wheel did not zoom");

  memset(&ev, 0, sizeof ev);
  ev.type = SDL_WINDOWEVENT;
  ev.window.windowID = id + 1000; /* another window's close */
  ev.window.event = SDL_WINDOWEVENT_CLOSE;
  cr_assert_eq(cap_window_events(w, &ev), 0);
  ev.window.windowID = id;
  cr_assert_eq(cap_window_events(w, &ev), 1);
  ev.type = SDL_QUIT;
  cr_assert_eq(cap_window_events(w, &ev), 1);

  free(a.px), free(b.px), free(c.px), free(z.px);
  cap_window_close(w);
  mj_deleteData(d);
  mj_deleteModel(m);
  SDL_Quit();
}

/* A model camera, and a drag that continues from its view with the free camera. */
Test(window, fixed_camera_then_free, .timeout = 120) {
  sdl_up();
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  mj_forward(m, d);
  capWindow *w = open_window(m, 320, 240);
  cr_assert_eq(cap_window_camera(w, "nope"), TK_ENOTFOUND);
  cr_assert(strstr(tk_errmsg(), "nope"), "%s", tk_errmsg());
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  shot freecam = take(w);
  cr_assert_eq(cap_window_camera(w, "front"), 0, "%s", tk_errmsg());
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  shot fixed = take(w);
  cr_assert_gt(diff_px(&freecam, &fixed, 0, 0, fixed.w, fixed.h), 1000, "the fixed camera shows the same");

  SDL_Event ev = {0};
  ev.type = SDL_MOUSEBUTTONDOWN;
  ev.button.windowID = SDL_GetWindowID(cap_window_sdl(w));
  ev.button.button = SDL_BUTTON_RIGHT;
  cap_window_events(w, &ev); /* free camera now, same view */
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  shot conv = take(w);
  long nd = diff_px(&fixed, &conv, 0, 0, fixed.w, fixed.h);
  cr_assert_lt(nd, fixed.w * fixed.h / 50, "the free camera jumped away from the fixed view (%ld pixels)",
               nd);

  free(freecam.px), free(fixed.px), free(conv.px);
  cap_window_close(w);
  mj_deleteData(d);
  mj_deleteModel(m);
  SDL_Quit();
}

Test(window, bad_arguments, .timeout = 120) {
  sdl_up();
  mjModel *m = load_scene(), *m2 = load_scene();
  mjData *d = mj_makeData(m);
  mj_forward(m, d);
  capWindow *w = (capWindow *)1;
  cr_assert_eq(cap_window_open(NULL, 320, 240, "t", &w), TK_EINVAL);
  cr_assert_null(w);
  cr_assert_eq(cap_window_open(m, 10, 240, "t", &w), TK_ERANGE);
  cr_assert_eq(cap_window_open(m, 320, 240, "t", &w), 0, "%s", tk_errmsg());
  pin_gl_driver();
  uint8_t px[16];
  int ww, wh;
  cr_assert_eq(cap_window_screenshot(w, px, sizeof px, &ww, &wh), TK_EINVAL, "screenshot before a draw");
  cr_assert_eq(cap_window_draw(w, m2, d, NULL), TK_EINVAL);
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  cr_assert_eq(cap_window_screenshot(w, px, sizeof px, &ww, &wh), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "320x240"), "%s", tk_errmsg());
  /* a HUD with odd content: long, non-ASCII, NaN, more bars than drawn */
  double many[20];
  for (int i = 0; i < 20; i++)
    many[i] = i == 3 ? NAN : i == 4 ? INFINITY : (i - 10) / 5.0;
  char longmsg[2000];
  memset(longmsg, 'x', sizeof longmsg - 1);
  longmsg[sizeof longmsg - 1] = 0;
  capHud h = {.state = "paused: pad unplugged \xc3\xa9",
              .tone = 99,
              .action = many,
              .action_dim = 20,
              .legend = longmsg,
              .message = longmsg,
              .device = longmsg};
  cr_assert_eq(cap_window_draw(w, m, d, &h), 0, "%s", tk_errmsg());
  cap_window_close(w);
  cap_window_close(NULL);
  SDL_Quit();
  /* without SDL video */
  cr_assert_eq(cap_window_open(m, 320, 240, "t", &w), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "SDL"), "%s", tk_errmsg());
  mj_deleteData(d);
  mj_deleteModel(m);
  mj_deleteModel(m2);
}

/* ---- the window and the environment's offscreen cameras in one process, one thread ---- */
static void window_and_env(int env_first) {
  sdl_up();
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  tt_set_box_x(m, d, 0.2);
  capOpts o;
  cap_opts_default(&o);
  o.task = "reach";
  capModel *cm = NULL;
  cr_assert_eq(cap_model_load(&o, &cm), 0, "%s", tk_errmsg());
  capEnv *e = NULL;
  cr_assert_eq(cap_env_make(cm, &e), 0, "%s", tk_errmsg());
  capObs obs;
  cr_assert_eq(cap_env_reset(e, 7, &obs), 0, "%s", tk_errmsg());
  enum { CW = 64, CH = 64 };
  uint8_t cam0[CW * CH * 3], cam[CW * CH * 3];
  if (env_first) cr_assert_eq(cap_env_render(e, "agentview", CW, CH, cam0), 0, "%s", tk_errmsg());
  capWindow *w = open_window(m, 320, 240);
  capHud h = sample_hud();
  shot first = {0};
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(cap_window_draw(w, m, d, &h), 0, "round %d: %s", i, tk_errmsg());
    cr_assert_eq(cap_env_render(e, "agentview", CW, CH, i || env_first ? cam : cam0), 0, "round %d: %s", i,
                 tk_errmsg());
    if (i || env_first)
      cr_assert_eq(memcmp(cam0, cam, sizeof cam), 0, "round %d: the camera image changed", i);
    shot s = take(w);
    if (!i)
      first = s;
    else {
      cr_assert_eq(memcmp(first.px, s.px, (size_t)s.w * s.h * 3), 0, "round %d: the window changed", i);
      free(s.px);
    }
  }
  shot one = {.w = CW, .h = CH, .px = cam0};
  cr_assert_gt(distinct_colours(&one), 4, "the camera image is flat");
  cr_assert_gt(distinct_colours(&first), 8, "the window image is flat");
  free(first.px);
  cap_window_close(w);
  /* the environment renders on after the window is gone */
  cr_assert_eq(cap_env_render(e, "agentview", CW, CH, cam), 0, "%s", tk_errmsg());
  cr_assert_eq(memcmp(cam0, cam, sizeof cam), 0);
  cap_env_free(e);
  cap_model_free(cm);
  mj_deleteData(d);
  mj_deleteModel(m);
  SDL_Quit();
}

Test(window, with_env_window_first, .timeout = 120) { window_and_env(0); }
Test(window, with_env_env_first, .timeout = 120) { window_and_env(1); }

/* OSMesa (forced for the offscreen renderer) and a window do not mix: whichever comes
 * second says so instead of rendering garbage or dying in MuJoCo. */
Test(window, osmesa_then_window_refused, .timeout = 120) {
  setenv("DK_GL", "osmesa", 1);
  sdl_up();
  capOpts o;
  cap_opts_default(&o);
  o.task = "reach";
  capModel *cm = NULL;
  cr_assert_eq(cap_model_load(&o, &cm), 0, "%s", tk_errmsg());
  capEnv *e = NULL;
  cr_assert_eq(cap_env_make(cm, &e), 0, "%s", tk_errmsg());
  capObs obs;
  cr_assert_eq(cap_env_reset(e, 7, &obs), 0, "%s", tk_errmsg());
  uint8_t cam[32 * 32 * 3];
  cr_assert_eq(cap_env_render(e, "agentview", 32, 32, cam), 0, "%s", tk_errmsg());
  mjModel *m = load_scene();
  capWindow *w = NULL;
  cr_assert_eq(cap_window_open(m, 320, 240, "t", &w), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "OSMesa"), "%s", tk_errmsg());
  cr_assert_null(w);
  cap_env_free(e);
  cap_model_free(cm);
  mj_deleteModel(m);
  SDL_Quit();
}

Test(window, window_then_osmesa_refused, .timeout = 120) {
  setenv("DK_GL", "osmesa", 1);
  sdl_up();
  mjModel *m = load_scene();
  capWindow *w = open_window(m, 320, 240);
  capOpts o;
  cap_opts_default(&o);
  o.task = "reach";
  capModel *cm = NULL;
  cr_assert_eq(cap_model_load(&o, &cm), 0, "%s", tk_errmsg());
  capEnv *e = NULL;
  cr_assert_eq(cap_env_make(cm, &e), 0, "%s", tk_errmsg());
  capObs obs;
  cr_assert_eq(cap_env_reset(e, 7, &obs), 0, "%s", tk_errmsg());
  uint8_t cam[32 * 32 * 3];
  int rc = cap_env_render(e, "agentview", 32, 32, cam);
  cr_assert_neq(rc, 0, "OSMesa rendered next to an EGL window");
  cr_assert(strstr(tk_errmsg(), "OSMesa"), "%s", tk_errmsg());
  cap_env_free(e);
  cap_model_free(cm);
  cap_window_close(w);
  mj_deleteModel(m);
  SDL_Quit();
}

/* ---- keyboard: the mapping ---- */
static capInputState map_keys(const SDL_Scancode *down, int n) {
  uint8_t keys[SDL_NUM_SCANCODES] = {0};
  for (int i = 0; i < n; i++)
    keys[down[i]] = 1;
  capInputState st;
  cap_keyboard_map(keys, SDL_NUM_SCANCODES, &st);
  return st;
}

static void expect_motion(const capInputState *st, const double want[6], const char *what) {
  cr_assert_eq(st->six_dof, 1, "%s: not six-dof", what);
  for (int i = 0; i < 6; i++)
    cr_assert_float_eq(st->motion[i], want[i], 1e-12, "%s: motion[%d] = %g, want %g", what, i, st->motion[i],
                       want[i]);
}

Test(keyboard, layout) {
  static const struct {
    SDL_Scancode key;
    double motion[6];
  } cases[] = {
      {SDL_SCANCODE_W, {0, 1, 0, 0, 0, 0}}, {SDL_SCANCODE_S, {0, -1, 0, 0, 0, 0}},
      {SDL_SCANCODE_D, {1, 0, 0, 0, 0, 0}}, {SDL_SCANCODE_A, {-1, 0, 0, 0, 0, 0}},
      {SDL_SCANCODE_R, {0, 0, 1, 0, 0, 0}}, {SDL_SCANCODE_F, {0, 0, -1, 0, 0, 0}},
      {SDL_SCANCODE_T, {0, 0, 0, 1, 0, 0}}, {SDL_SCANCODE_G, {0, 0, 0, -1, 0, 0}},
      {SDL_SCANCODE_X, {0, 0, 0, 0, 1, 0}}, {SDL_SCANCODE_Z, {0, 0, 0, 0, -1, 0}},
      {SDL_SCANCODE_C, {0, 0, 0, 0, 0, 1}}, {SDL_SCANCODE_V, {0, 0, 0, 0, 0, -1}},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    capInputState st = map_keys(&cases[i].key, 1);
    expect_motion(&st, cases[i].motion, SDL_GetScancodeName(cases[i].key));
    cr_assert_eq(st.pad.buttons, 0u);
  }
  SDL_Scancode fine[] = {SDL_SCANCODE_W, SDL_SCANCODE_D, SDL_SCANCODE_LSHIFT};
  capInputState st = map_keys(fine, 3);
  expect_motion(&st, (double[6]){0.5, 0.5, 0, 0, 0, 0}, "W+D+Shift");
  SDL_Scancode both[] = {SDL_SCANCODE_W, SDL_SCANCODE_S, SDL_SCANCODE_RSHIFT};
  st = map_keys(both, 3);
  expect_motion(&st, (double[6]){0}, "W+S cancel");

  static const struct {
    SDL_Scancode key;
    unsigned button;
  } buttons[] = {
      {SDL_SCANCODE_SPACE, CAP_BTN_RB},   {SDL_SCANCODE_RETURN, CAP_BTN_A},
      {SDL_SCANCODE_KP_ENTER, CAP_BTN_A}, {SDL_SCANCODE_BACKSPACE, CAP_BTN_B},
      {SDL_SCANCODE_DELETE, CAP_BTN_X},   {SDL_SCANCODE_HOME, CAP_BTN_Y},
      {SDL_SCANCODE_P, CAP_BTN_START},    {SDL_SCANCODE_ESCAPE, CAP_BTN_BACK},
  };
  for (size_t i = 0; i < sizeof buttons / sizeof buttons[0]; i++) {
    st = map_keys(&buttons[i].key, 1);
    cr_assert_eq(st.pad.buttons, buttons[i].button, "%s", SDL_GetScancodeName(buttons[i].key));
    expect_motion(&st, (double[6]){0}, "a button key");
  }
  /* a short state array (older SDL) is read only as far as it goes */
  uint8_t few[4] = {1, 1, 1, 1};
  cap_keyboard_map(few, 4, &st);
  cr_assert_eq(st.pad.buttons, 0u);
  cap_keyboard_map(NULL, 0, &st);
  cr_assert_eq(st.six_dof, 1);
}

Test(keyboard, legend) {
  const char *l = cap_keyboard_legend(); /* before SDL: US names */
  cr_assert(strstr(l, "W / S\tforward / back"), "%s", l);
  cr_assert(strstr(l, "Space\tgripper"), "%s", l);
  cr_assert(strstr(l, "Escape\tquit"), "%s", l);
}

/* ---- keyboard: through the X server ---- */
/* pump until the keyboard's state satisfies want() or a second passes */
static capInputState poll_until(capWindow *w, capInput *in, int (*want)(const capInputState *)) {
  capInputState st = {0};
  int connected = 0;
  for (int i = 0; i < 200; i++) {
    pump(w);
    cr_assert_eq(cap_input_poll(in, &st, &connected), 0, "%s", tk_errmsg());
    cr_assert_eq(connected, 1);
    if (want(&st)) break;
    SDL_Delay(5);
  }
  return st;
}

static int want_fwd(const capInputState *s) { return s->motion[1] != 0; }
static int want_fine(const capInputState *s) { return s->motion[1] != 0 && s->motion[1] != 1; }
static int want_still(const capInputState *s) { return s->motion[1] == 0 && s->pad.buttons == 0; }
static int want_rb(const capInputState *s) { return s->pad.buttons != 0; }

/* Its own X server: the keyboard focus is server-wide, and a window that another test (run
 * in parallel) maps could take it. */
Test(keyboard, keys_through_x11, .timeout = 120) {
  pid_t server = own_display() ? start_xvfb() : 0;
  sdl_up();
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  mj_forward(m, d);
  capWindow *w = open_window(m, 320, 240);
  cr_assert_eq(cap_window_draw(w, m, d, NULL), 0, "%s", tk_errmsg());
  SDL_Window *sw = cap_window_sdl(w);
  SDL_RaiseWindow(sw);
  SDL_SetWindowInputFocus(sw);
  for (int i = 0; i < 200 && SDL_GetKeyboardFocus() != sw; i++) {
    pump(w);
    SDL_Delay(5);
  }
  cr_assert_eq(SDL_GetKeyboardFocus(), sw, "the window never got the keyboard focus");

  capInput *in = NULL;
  cr_assert_eq(cap_input_open("keyboard", NULL, &in), 0, "%s", tk_errmsg());
  cr_assert_str_eq(in->desc, "keyboard");
  xkeys x = xkeys_open();

  xkey(&x, XK_w, 1);
  capInputState st = poll_until(w, in, want_fwd);
  expect_motion(&st, (double[6]){0, 1, 0, 0, 0, 0}, "W held");
  xkey(&x, XK_Shift_L, 1);
  st = poll_until(w, in, want_fine);
  expect_motion(&st, (double[6]){0, 0.5, 0, 0, 0, 0}, "Shift+W held");
  xkey(&x, XK_Shift_L, 0);
  xkey(&x, XK_w, 0);
  st = poll_until(w, in, want_still);
  expect_motion(&st, (double[6]){0}, "W released");

  xkey(&x, XK_space, 1);
  st = poll_until(w, in, want_rb);
  cr_assert_eq(st.pad.buttons, (unsigned)CAP_BTN_RB, "Space gives 0x%x", st.pad.buttons);
  xkey(&x, XK_space, 0);
  st = poll_until(w, in, want_still);
  cr_assert_eq(st.pad.buttons, 0u);

  /* a tap between two polls: reported once */
  xkey(&x, XK_Return, 1);
  xkey(&x, XK_Return, 0);
  for (int i = 0; i < 20; i++) {
    pump(w);
    SDL_Delay(5);
  }
  int connected;
  cr_assert_eq(cap_input_poll(in, &st, &connected), 0);
  cr_assert_eq(st.pad.buttons, (unsigned)CAP_BTN_A, "a tapped Return gives 0x%x", st.pad.buttons);
  cr_assert_eq(cap_input_poll(in, &st, &connected), 0);
  cr_assert_eq(st.pad.buttons, 0u, "the tap was reported twice");

  /* the legend names keys of the server's layout (US here) */
  const char *l = cap_keyboard_legend();
  cr_assert(strstr(l, "W / S\tforward / back"), "%s", l);

  xkeys_close(&x);
  cap_input_close(in);
  cap_window_close(w);
  mj_deleteData(d);
  mj_deleteModel(m);
  SDL_Quit();
  stop_xvfb(server);
}

/* Events pushed by the program (not the keyboard) still count as button taps. */
Test(keyboard, pushed_event_tap, .timeout = 60) {
  sdl_up();
  capInput *in = NULL;
  cr_assert_eq(cap_input_open("keyboard", NULL, &in), 0, "%s", tk_errmsg());
  SDL_Event ev = {0};
  ev.type = SDL_KEYDOWN;
  ev.key.state = SDL_PRESSED;
  ev.key.keysym.scancode = SDL_SCANCODE_DELETE;
  cr_assert_eq(SDL_PushEvent(&ev), 1, "%s", SDL_GetError());
  ev.key.repeat = 1; /* auto-repeat: not a new press */
  ev.key.keysym.scancode = SDL_SCANCODE_HOME;
  cr_assert_eq(SDL_PushEvent(&ev), 1, "%s", SDL_GetError());
  capInputState st;
  int connected;
  cr_assert_eq(cap_input_poll(in, &st, &connected), 0);
  cr_assert_eq(connected, 1);
  cr_assert_eq(st.pad.buttons, (unsigned)CAP_BTN_X, "buttons 0x%x", st.pad.buttons);
  cr_assert_eq(cap_input_poll(in, &st, &connected), 0);
  cr_assert_eq(st.pad.buttons, 0u);
  capInput *bad = NULL;
  cr_assert_eq(cap_input_open("keyboard", "0", &bad), TK_EINVAL);
  cr_assert_null(bad);
  cap_input_close(in);
  SDL_Quit();
  /* no SDL video: no keyboard */
  capInput *none = NULL;
  cr_assert_eq(cap_input_open("keyboard", NULL, &none), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "SDL video"), "%s", tk_errmsg());
}
