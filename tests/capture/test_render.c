/* tests/capture/test_render.c -- offscreen rendering (capture/cap_render.c) without a GPU.
 *
 * Criterion runs each test in its own process, so the GL backend (chosen once per process)
 * can differ between tests: `osmesa_backend` forces OSMesa through DK_GL. */
#include <criterion/criterion.h>
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap_render.h"
#include "tk.h"
#include "tt.h"
#include "tt_mujoco.h"

/* Sanitizer builds only (the runtimes read these hooks; plain builds ignore them):
 * - Mesa's OSMesa never frees the framebuffer records it makes in OSMesaMakeCurrent (three
 *   small blocks per context): not ours.
 * - GCC 12's LeakSanitizer tracks dynamic TLS through its __tls_get_addr interceptor and
 *   keeps a stale DTV once glibc grows it: a Criterion binary already has many TLS modules,
 *   Mesa's driver (LLVM) adds more, and the exit-time leak scan dies ("Tracer caught signal
 *   11", "DTLS ... at 0x80a"). Without the interceptor, dynamic TLS is simply not a root:
 *   that can only add reports, never hide a leak. */
const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) { return "leak:libOSMesa.so.8\n"; }
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "intercept_tls_get_addr=0"; }

/* A green floor, a red box that the tests move along +x, a light, two cameras. The
 * front camera looks along +y and down: the floor fills the bottom of its image and the
 * black background the top; +x is image right. */
static const char scene_xml[] =
    "<mujoco model=\"rendertest\">\n"
    "  <visual><global offwidth=\"640\" offheight=\"480\"/></visual>\n"
    "  <worldbody>\n"
    "    <light name=\"sun\" pos=\"0 0 3\" dir=\"0 0 -1\" directional=\"true\"/>\n"
    "    <geom name=\"floor\" type=\"plane\" size=\"2 2 0.1\" rgba=\"0.2 0.6 0.2 1\"/>\n"
    "    <body name=\"box\" pos=\"0 0 0.1\">\n"
    "      <freejoint/>\n"
    "      <geom name=\"box\" type=\"box\" size=\"0.1 0.1 0.1\" rgba=\"0.9 0.1 0.1 1\"/>\n"
    "    </body>\n"
    "    <camera name=\"agentview\" pos=\"0 -1.2 0.6\" xyaxes=\"1 0 0 0 0.45 0.9\"/>\n"
    "    <camera name=\"top\" pos=\"0 0 2\" xyaxes=\"1 0 0 0 1 0\"/>\n"
    "  </worldbody>\n"
    "</mujoco>\n";

static mjModel *load_scene(void) { return tt_load_mjcf(scene_xml); }

static double mean_green(const uint8_t *rgb, int w, int y0, int y1) {
  double s = 0;
  for (int y = y0; y < y1; y++)
    for (int x = 0; x < w; x++)
      s += rgb[((size_t)y * w + x) * 3 + 1];
  return s / ((double)(y1 - y0) * w);
}

/* x of the red pixels' centroid, -1 without red */
static double red_x(const uint8_t *rgb, int w, int h) {
  double n = 0, sx = 0;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const uint8_t *p = rgb + ((size_t)y * w + x) * 3;
      if (p[0] > 120 && p[1] < 80 && p[2] < 80) n++, sx += x;
    }
  return n ? sx / n : -1;
}

/* Two frames with the box moved between them: a picture (not uniform), different frames,
 * rows top-down (the floor at the bottom), and the box moving right. */
static void check_two_frames(int w, int h) {
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  capRender *r = NULL;
  cr_assert_eq(cap_render_make(m, 640, 480, &r), 0, "%s", tk_errmsg());
  uint8_t *a = malloc((size_t)w * h * 3), *b = malloc((size_t)w * h * 3);
  tt_set_box_x(m, d, 0);
  cr_assert_eq(cap_render_camera(r, m, d, "agentview", w, h, a), 0, "%s", tk_errmsg());
  tt_set_box_x(m, d, 0.4);
  cr_assert_eq(cap_render_camera(r, m, d, "agentview", w, h, b), 0, "%s", tk_errmsg());

  int uniform = 1;
  for (size_t i = 3; i < (size_t)w * h * 3 && uniform; i++)
    uniform = a[i] == a[i % 3];
  cr_assert(!uniform, "the image is one colour");
  size_t diff = 0;
  for (size_t i = 0; i < (size_t)w * h * 3; i++)
    diff += a[i] != b[i];
  cr_assert_gt(diff, 30, "moving the box changed only %zu bytes", diff);
  double top = mean_green(a, w, 0, h / 8), bottom = mean_green(a, w, h - h / 8, h);
  cr_assert_gt(bottom, top + 40, "floor not at the bottom (green top %.1f, bottom %.1f): rows bottom-up?",
               top, bottom);
  double xa = red_x(a, w, h), xb = red_x(b, w, h);
  cr_assert(xa > 0 && xb > xa + w / 16.0, "box at x %.1f then %.1f: expected a move to the right", xa, xb);
  cr_log_info("backend %s, %dx%d: %zu bytes differ", cap_render_backend(), w, h, diff);

  free(a);
  free(b);
  cap_render_free(r);
  mj_deleteData(d);
  mj_deleteModel(m);
}

Test(render, two_frames_small) { check_two_frames(84, 84); }
Test(render, two_frames_full) { check_two_frames(640, 480); }

Test(render, osmesa_backend) {
  setenv("DK_GL", "osmesa", 1); /* this test's process only */
  if (dlsym(RTLD_DEFAULT, "eglGetProcAddress") || dlsym(RTLD_DEFAULT, "glXGetProcAddressARB")) {
    /* libEGL/libGL linked into the binary: MuJoCo would load GL through it, so OSMesa must
     * be refused with a message rather than render black frames */
    mjModel *m = load_scene();
    capRender *r = NULL;
    cr_assert_eq(cap_render_make(m, 84, 84, &r), TK_EINVAL, "%s", tk_errmsg());
    cr_assert(strstr(tk_errmsg(), "OSMesa"), "%s", tk_errmsg());
    cr_assert_null(r);
    mj_deleteModel(m);
    return;
  }
  check_two_frames(84, 84);
  cr_assert_str_eq(cap_render_backend(), "osmesa");
}

Test(render, unknown_camera_lists_cameras) {
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  mj_forward(m, d);
  capRender *r = NULL;
  cr_assert_eq(cap_render_make(m, 84, 84, &r), 0, "%s", tk_errmsg());
  uint8_t img[84 * 84 * 3];
  cr_assert_eq(cap_render_camera(r, m, d, "wrist", 84, 84, img), TK_ENOTFOUND);
  const char *msg = tk_errmsg();
  cr_assert(strstr(msg, "wrist") && strstr(msg, "agentview") && strstr(msg, "top"), "%s", msg);
  cr_assert_eq(cap_render_camera(r, m, d, NULL, 84, 84, img), TK_ENOTFOUND);
  cap_render_free(r);
  mj_deleteData(d);
  mj_deleteModel(m);
}

Test(render, sizes_are_bounded) {
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  mj_forward(m, d);
  capRender *r = (capRender *)1;
  cr_assert_eq(cap_render_make(m, 641, 480, &r), TK_ERANGE);
  cr_assert_null(r);
  cr_assert(strstr(tk_errmsg(), "640x480"), "%s", tk_errmsg());
  cr_assert_eq(cap_render_make(m, 0, 10, &r), TK_ERANGE);
  cr_assert_eq(cap_render_make(NULL, 10, 10, &r), TK_EINVAL);

  cr_assert_eq(cap_render_make(m, 100, 50, &r), 0, "%s", tk_errmsg());
  uint8_t *img = malloc(640 * 480 * 3);
  cr_assert_eq(cap_render_camera(r, m, d, "agentview", 100, 50, img), 0, "%s", tk_errmsg());
  cr_assert_eq(cap_render_camera(r, m, d, "agentview", 101, 50, img), TK_ERANGE);
  cr_assert_eq(cap_render_camera(r, m, d, "agentview", 100, 51, img), TK_ERANGE);
  cr_assert_eq(cap_render_camera(r, m, d, "agentview", 0, 10, img), TK_ERANGE);
  cr_assert_eq(cap_render_camera(r, m, d, "agentview", 1, 1, img), 0, "%s", tk_errmsg());

  /* another model (even one with the same content) is not what the renderer was made for */
  mjModel *m2 = load_scene();
  cr_assert_eq(cap_render_camera(r, m2, d, "agentview", 10, 10, img), TK_EINVAL);
  mj_deleteModel(m2);

  free(img);
  cap_render_free(r);
  cap_render_free(NULL);
  mj_deleteData(d);
  mj_deleteModel(m);
}

/* ---- threads ---- */
typedef struct {
  const mjModel *m;
  capRender *r; /* made here when NULL */
  int w, h, frames;
  uint8_t *img; /* last frame */
  int rc;
  char msg[TK_ERRMSG_MAX];
} worker;

static void *work(void *arg) {
  worker *k = arg;
  mjData *d = mj_makeData(k->m);
  k->rc = k->r ? 0 : cap_render_make(k->m, k->w, k->h, &k->r);
  for (int i = 0; i < k->frames && !k->rc; i++) {
    tt_set_box_x(k->m, d, 0.3 * i / k->frames); /* the same states in every worker */
    k->rc = cap_render_camera(k->r, k->m, d, "agentview", k->w, k->h, k->img);
  }
  if (k->rc) snprintf(k->msg, sizeof k->msg, "%s", tk_errmsg());
  mj_deleteData(d);
  return NULL;
}

/* Renderers made and used in their own threads, concurrently: each finishes, and the same
 * state gives the same image in every context. */
Test(render, concurrent_renderers_agree) {
  mjModel *m = load_scene();
  enum { N = 3, W = 96, H = 72 };
  worker k[N];
  pthread_t t[N];
  for (int i = 0; i < N; i++) {
    k[i] = (worker){.m = m, .w = W, .h = H, .frames = 40, .img = malloc(W * H * 3)};
    cr_assert_eq(pthread_create(&t[i], NULL, work, &k[i]), 0);
  }
  for (int i = 0; i < N; i++)
    pthread_join(t[i], NULL);
  for (int i = 0; i < N; i++)
    cr_assert_eq(k[i].rc, 0, "worker %d: %s", i, k[i].msg);
  for (int i = 1; i < N; i++)
    cr_assert_eq(memcmp(k[0].img, k[i].img, W * H * 3), 0, "workers 0 and %d rendered different images", i);
  for (int i = 0; i < N; i++) {
    cap_render_free(k[i].r); /* freed on another thread than the one that made it */
    free(k[i].img);
  }
  mj_deleteModel(m);
}

/* One renderer handed from thread to thread (one at a time), and back. */
Test(render, renderer_moves_between_threads) {
  mjModel *m = load_scene();
  capRender *r = NULL;
  cr_assert_eq(cap_render_make(m, 64, 64, &r), 0, "%s", tk_errmsg());
  uint8_t ref[64 * 64 * 3], img[64 * 64 * 3];
  worker k = {.m = m, .r = r, .w = 64, .h = 64, .frames = 5, .img = img};
  for (int round = 0; round < 3; round++) {
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, work, &k), 0);
    pthread_join(t, NULL);
    cr_assert_eq(k.rc, 0, "round %d: %s", round, k.msg);
  }
  mjData *d = mj_makeData(m);
  tt_set_box_x(m, d, 0.3 * 4 / 5); /* the worker's last state */
  cr_assert_eq(cap_render_camera(r, m, d, "agentview", 64, 64, ref), 0, "%s", tk_errmsg());
  cr_assert_eq(memcmp(ref, img, sizeof ref), 0, "same state, different image on another thread");
  cap_render_free(r);
  mj_deleteData(d);
  mj_deleteModel(m);
}

Test(render, make_free_cycles) {
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  mj_forward(m, d);
  uint8_t img[32 * 32 * 3];
  for (int i = 0; i < 20; i++) {
    capRender *r = NULL;
    cr_assert_eq(cap_render_make(m, 32, 32, &r), 0, "cycle %d: %s", i, tk_errmsg());
    cr_assert_eq(cap_render_camera(r, m, d, "top", 32, 32, img), 0, "cycle %d: %s", i, tk_errmsg());
    cap_render_free(r);
  }
  mj_deleteData(d);
  mj_deleteModel(m);
}

/* Segmentation (the analysis tools' view): each pixel holds the id of the geom it shows, and the box's
 * pixels follow it to the right as in the RGB image; -1 where nothing is. */
Test(render, segmentation_names_the_geom_of_each_pixel) {
  mjModel *m = load_scene();
  mjData *d = mj_makeData(m);
  capRender *r = NULL;
  cr_assert_eq(cap_render_make(m, 84, 84, &r), 0, "%s", tk_errmsg());
  int box = mj_name2id(m, mjOBJ_GEOM, "box"), floor_id = mj_name2id(m, mjOBJ_GEOM, "floor");
  int32_t seg[84 * 84];
  double cx[2];
  for (int k = 0; k < 2; k++) {
    tt_set_box_x(m, d, k ? 0.4 : 0);
    cr_assert_eq(cap_render_segment(r, m, d, "agentview", 84, 84, seg), 0, "%s", tk_errmsg());
    int nbox = 0, nfloor = 0, other = 0;
    double sx = 0;
    for (int i = 0; i < 84 * 84; i++) {
      if (seg[i] == box)
        nbox++, sx += i % 84;
      else if (seg[i] == floor_id)
        nfloor++;
      else if (seg[i] != -1)
        other++;
    }
    cr_assert_gt(nbox, 10, "the box covers %d pixels", nbox);
    cr_assert_gt(nfloor, 84 * 84 / 8, "the floor covers %d pixels", nfloor);
    cr_assert_eq(other, 0, "%d pixels name a geom that is not in the scene", other);
    cx[k] = sx / nbox;
  }
  cr_assert_gt(cx[1], cx[0] + 84 / 16.0, "the box's pixels at x %.1f then %.1f: expected a move right", cx[0],
               cx[1]);
  cap_render_free(r);
  mj_deleteData(d);
  mj_deleteModel(m);
}
