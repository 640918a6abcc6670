/* The viewer's headless export end to end: frames of a fresh recording, a file without states, and
 * files it must refuse. The scene is rendered offscreen (EGL surfaceless or OSMesa): no display. */
#include <cairo.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "tk.h"
#include "tk_plot.h"
#include "tt.h"
#include "tt_cli.h"

TestSuite(viewer, .fini = tk_plot_cleanup);

static const char *viewer(void) { return tt_build("viewer/viewer"); }

typedef struct {
  int w, h, stride;
  uint8_t *data;
  cairo_surface_t *s;
} img;

static void load(const char *path, img *im) {
  im->s = cairo_image_surface_create_from_png(path);
  cr_assert_eq(cairo_surface_status(im->s), CAIRO_STATUS_SUCCESS, "%s is not a PNG", path);
  im->w = cairo_image_surface_get_width(im->s);
  im->h = cairo_image_surface_get_height(im->s);
  im->stride = cairo_image_surface_get_stride(im->s);
  im->data = cairo_image_surface_get_data(im->s);
}

static uint32_t px(const img *im, int x, int y) {
  return ((const uint32_t *)(im->data + (size_t)y * im->stride))[x] & 0xffffff;
}

/* distinct colours in a rectangle (capped) */
static int colours(const img *im, int x0, int y0, int x1, int y1) {
  uint32_t seen[64];
  int n = 0;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++) {
      uint32_t p = px(im, x, y);
      int k = 0;
      while (k < n && seen[k] != p)
        k++;
      if (k == n && n < 64) seen[n++] = p;
    }
  return n;
}

static int count_colour(const img *im, int x0, int y0, int x1, int y1, uint32_t c) {
  int n = 0;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++)
      n += px(im, x, y) == c;
  return n;
}

Test(viewer, two_frames_of_a_recording, .timeout = 120) {
  const char *d = tt_tmpdir();
  char data[4200], a[4200], b[4200];
  snprintf(data, sizeof data, "%s/d.h5", d);
  snprintf(a, sizeof a, "%s/a.png", d);
  snprintf(b, sizeof b, "%s/b.png", d);
  tt_record(data, "lift", 2, 0.3, 0, "--camera agentview:84x84");
  char *out = NULL;
  int rc;
  rc = tt_run(&out, "%s %s --demo 1 --frame 0 --export %s && %s %s --demo 1 --frame -1 --export %s", viewer(),
              data, a, viewer(), data, b);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  img ia, ib;
  load(a, &ia);
  load(b, &ib);
  cr_assert_eq(ia.w, 1280);
  cr_assert_eq(ia.h, 720);
  /* the scene (top left) is a picture, not a fill, and it changed between the frames */
  cr_assert_gt(colours(&ia, 0, 40, 640, 480), 20, "the scene is not uniform");
  int diff = 0;
  for (int y = 40; y < 480; y++)
    for (int x = 0; x < 640; x++)
      diff += px(&ia, x, y) != px(&ib, x, y);
  cr_assert_gt(diff, 500, "the scene differs between the first and the last frame (%d pixels)", diff);
  /* the recorded camera frame is shown right of the scene */
  cr_assert_gt(colours(&ia, 650, 40, 950, 340), 5, "the recorded frame is there");
  /* the plots: the action plot's first series colour, in the bottom left */
  int c0 = count_colour(&ia, 0, 480, 640, 720, tk_plot_color(0));
  cr_assert_gt(c0, 100, "the action plot's lines are drawn (%d pixels of its first colour)", c0);
  int r0 = count_colour(&ia, 640, 480, 1280, 720, tk_plot_color(0));
  cr_assert_gt(r0, 100, "the reward plot is drawn (%d pixels)", r0);
  cairo_surface_destroy(ia.s);
  cairo_surface_destroy(ib.s);
  /* chosen observation keys get a plot of their own (the middle third); unknown ones are listed */
  char c[4200];
  snprintf(c, sizeof c, "%s/c.png", d);
  rc = tt_run(&out, "%s %s --demo 1 --frame 5 --plot-keys robot0_eef_pos --export %s", viewer(), data, c);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  img ic;
  load(c, &ic);
  cr_assert_gt(count_colour(&ic, 430, 480, 850, 720, tk_plot_color(0)), 50, "the observation plot is drawn");
  cairo_surface_destroy(ic.s);
  rc = tt_run(&out, "%s %s --plot-keys nope --export %s", viewer(), data, c);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "'nope'") && strstr(out, "robot0_eef_pos"), "%s", out);
  free(out);
}

Test(viewer, refusals, .timeout = 60) {
  const char *d = tt_tmpdir();
  char bad[4200], png[4200];
  snprintf(bad, sizeof bad, "%s/bad.h5", d);
  snprintf(png, sizeof png, "%s/x.png", d);
  FILE *f = fopen(bad, "w");
  fputs("not hdf5 at all\n", f);
  fclose(f);
  char *out = NULL;
  int rc = tt_run(&out, "%s %s --export %s", viewer(), bad, png);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, bad), "names the file: %s", out);
  cr_assert(!tk_file_exists(png));
  free(out);
  /* a synthetic dataset (no simulator behind it): plots only, and a frame out of range */
  char syn[4200];
  snprintf(syn, sizeof syn, "%s/syn.h5", d);
  rc = tt_run(&out, "%s synth %s --demos 2 --steps 10", tt_build("dataset/dataset"), syn);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s %s --demo 0 --frame 3 --export %s", viewer(), syn, png);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "scene") || strstr(out, "no states"), "says why the scene is absent: %s", out);
  free(out);
  img im;
  load(png, &im);
  cr_assert_gt(count_colour(&im, 0, 480, 640, 720, tk_plot_color(0)), 50, "the plots are drawn");
  cairo_surface_destroy(im.s);
  rc = tt_run(&out, "%s %s --demo 0 --frame 99 --export %s", viewer(), syn, png);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "frame 99"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s %s --demo 7 --export %s", viewer(), syn, png);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "demo_7"), "%s", out);
  free(out);
}

/* --seed, --frames, --demo and --frame through tk_opt_int, DK_OPEN_TIMEOUT through tk_env_f64: exit 2,
 * one line naming the option and the value. */
Test(viewer, numeric_options_are_whole_and_in_range, .timeout = 60) {
  const char *bad[][2] = {{"--demo", "1e30"}, {"--demo", "0.5"},  {"--frame", "2.5"},
                          {"--frame", "nan"}, {"--frames", "0"},  {"--frames", "4294967297"},
                          {"--seed", "-1"},   {"--seed", "1e30"}, {"--demo", " 1"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *out = NULL;
    int rc = tt_run(&out, "%s /nonexistent/x.h5 %s '%s' --export /nonexistent/x.png 2>&1 >/dev/null",
                    viewer(), bad[i][0], bad[i][1]);
    cr_expect_eq(rc, 2, "%s %s: exit %d: %s", bad[i][0], bad[i][1], rc, out);
    cr_expect(out && strstr(out, bad[i][0]) && strstr(out, bad[i][1]), "names the option and the value: %s",
              out);
    cr_expect(out && strchr(out, '\n') == out + strlen(out) - 1, "one line: %s", out);
    free(out);
  }
  char *out = NULL;
  int rc = tt_run(&out, "DK_OPEN_TIMEOUT=abc %s /nonexistent/x.h5 --export /nonexistent/x.png", viewer());
  cr_expect_eq(rc, 2, "exit %d: %s", rc, out);
  cr_expect(out && strstr(out, "DK_OPEN_TIMEOUT=abc"), "%s", out);
  free(out);
}

/* Exporting one frame reads that frame's pixels, not the episode's: with the compressed chunks of
 * other frames (and all of next_obs) damaged, frame 2 still exports, byte for byte as from the intact
 * file; frame 10, whose chunk is damaged, is refused naming the file. */
Test(viewer, one_frame_reads_one_frame, .timeout = 120) {
  const char *d = tt_tmpdir();
  char data[4200], bad[4200], a[4200], b[4200];
  snprintf(data, sizeof data, "%s/d.h5", d);
  snprintf(bad, sizeof bad, "%s/bad.h5", d);
  snprintf(a, sizeof a, "%s/a.png", d);
  snprintf(b, sizeof b, "%s/b.png", d);
  tt_record(data, "lift", 1, 0.3, 0, "--camera agentview:84x84");
  char *out = NULL;
  int rc = tt_run(&out,
                  "%s -c \"import h5py, shutil; shutil.copy('%s', '%s'); f = h5py.File('%s', 'r');"
                  "spots = [f['data/demo_0/obs/agentview_image'].id.get_chunk_info_by_coord((10, 0, 0, 0))]"
                  " + [f['data/demo_0/next_obs/agentview_image'].id.get_chunk_info(i) for i in range(12)];"
                  "f.close(); w = open('%s', 'r+b');"
                  "[(w.seek(s.byte_offset), w.write(bytes([0xA5]) * s.size)) for s in spots]; w.close()\"",
                  getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3", data, bad, bad, bad);
  cr_assert_eq(rc, 0, "damaging chunks: %s", out);
  free(out);
  rc = tt_run(&out, "%s %s --frame 2 --plot-keys robot0_eef_pos --export %s", viewer(), data, a);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s %s --frame 2 --plot-keys robot0_eef_pos --export %s", viewer(), bad, b);
  cr_assert_eq(rc, 0, "frame 2 needs none of the damaged chunks: %s", out);
  free(out);
  rc = tt_run(&out, "cmp %s %s", a, b);
  cr_assert_eq(rc, 0, "the same frame from both files differs: %s", out);
  free(out);
  rc = tt_run(&out, "%s %s --frame 10 --export %s", viewer(), bad, b);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, bad) && strstr(out, "obs/agentview_image"), "%s", out);
  free(out);
}

/* The dataset suite's corpus of malformed files (make_malformed.py): the viewer refuses each invalid
 * one with one line naming it and exit 1, draws the valid ones, and never crashes. */
Test(viewer, malformed_corpus, .timeout = 300) {
  const char *d = tt_tmpdir();
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s", getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3",
                  tt_src("tests/dataset/make_malformed.py"), d);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char man[4300], line[1024];
  snprintf(man, sizeof man, "%s/manifest.tsv", d);
  FILE *f = fopen(man, "r");
  cr_assert(f);
  int n = 0, refused = 0;
  while (fgets(line, sizeof line, f)) {
    char *file = strtok(line, "\t\n"), *status = strtok(NULL, "\t\n");
    if (!file || !status) continue;
    char path[4300], png[4400];
    snprintf(path, sizeof path, "%s/%s", d, file);
    snprintf(png, sizeof png, "%s/%s.png", d, file);
    rc = tt_run(&out, "DK_OPEN_TIMEOUT=10 %s %s --export %s", viewer(), path, png);
    cr_assert(rc == 0 || rc == 1, "%s: exit %d (a crash?): %s", file, rc, out);
    if (!strcmp(status, "invalid")) {
      cr_assert_eq(rc, 1, "%s is invalid but the viewer drew it: %s", file, out);
      cr_assert(strstr(out, file), "%s: the message names the file: %s", file, out);
      refused++;
    }
    free(out);
    n++;
  }
  fclose(f);
  cr_assert_gt(n, 50);
  printf("viewer: %d corpus files, %d invalid ones refused\n", n, refused);
}

/* The window under Xvfb: it plays the demo (to its last step), and its last frame shows the scene, the
 * HUD and the plot strip along the bottom. */
Test(viewer, window_plays_and_shows_plots, .timeout = 180) {
  const char *d = tt_tmpdir();
  char data[4200], shot[4200];
  snprintf(data, sizeof data, "%s/d.h5", d);
  snprintf(shot, sizeof shot, "%s/win.png", d);
  tt_record(data, "lift", 1, 0, 0, NULL);
  char *out = NULL;
  int rc;
  rc = tt_run(&out,
              TT_XVFB " %s %s --demo 0 "
                      "--frames 120 --screenshot %s",
              viewer(), data, shot);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  img im;
  load(shot, &im);
  cr_assert_eq(im.w, 1280);
  cr_assert_gt(colours(&im, 0, 0, im.w, im.h - 200), 30, "the scene is a picture");
  /* the plot strip: white background with the first series' colour in the action plot */
  cr_assert_gt(count_colour(&im, 0, im.h - 200, 640, im.h, 0xffffff), 20000, "the strip's background");
  cr_assert_gt(count_colour(&im, 0, im.h - 200, 640, im.h, tk_plot_color(0)), 50, "the action plot's lines");
  cairo_surface_destroy(im.s);
}

/* Watching a policy: a small policy drives lift live under Xvfb; a policy for other observations is
 * refused with both sides named. */
#include "bc.h"
Test(viewer, watch_a_policy, .timeout = 180) {
  const char *d = tt_tmpdir();
  char pol[4200], bad[4200], shot[4200];
  snprintf(pol, sizeof pol, "%s/p.h5", d);
  snprintf(bad, sizeof bad, "%s/bad.h5", d);
  snprintf(shot, sizeof shot, "%s/pol.png", d);
  const char *keys[] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
  int dims[] = {10, 3, 4, 2}, bdims[] = {16, 3, 4, 2};
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = 19;
  a.act_dim = 7;
  a.n_hidden = 1;
  a.hidden[0] = 16;
  a.tanh = 1;
  bcPolicy *p = bc_policy_make(&a, 4, keys, dims, 3);
  cr_assert(p, "%s", tk_errmsg());
  snprintf(p->task, sizeof p->task, "lift");
  cr_assert_eq(bc_policy_save(p, pol), 0, "%s", tk_errmsg());
  bc_policy_free(p);
  a.obs_dim = 25;
  p = bc_policy_make(&a, 4, keys, bdims, 3);
  snprintf(p->task, sizeof p->task, "lift");
  cr_assert_eq(bc_policy_save(p, bad), 0, "%s", tk_errmsg());
  bc_policy_free(p);
  char *out = NULL;
  int rc = tt_run(&out,
                  TT_XVFB " %s --policy %s "
                          "--frames 40 --screenshot %s",
                  viewer(), pol, shot);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  img im;
  load(shot, &im);
  cr_assert_gt(colours(&im, 0, 0, im.w, im.h - 200), 30, "the scene is a picture");
  cr_assert_gt(count_colour(&im, 0, im.h - 200, im.w, im.h, tk_plot_color(0)), 20, "the actions are plotted");
  cairo_surface_destroy(im.s);
  rc = tt_run(&out, "%s --policy %s --frames 5", viewer(), bad);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "object(16)") && strstr(out, "object(10)"), "%s", out);
  free(out);
  /* a policy with cameras: the viewer renders what it reads, and a camera the task lacks is refused with
   * both lists */
  bcImage ci;
  memset(&ci, 0, sizeof ci);
  snprintf(ci.key, sizeof ci.key, "robot0_eye_in_hand_image");
  ci.height = ci.width = 24;
  ci.channels = 3;
  ci.crop_h = ci.crop_w = 20;
  nn_enc_arch_default(&ci.enc_arch, 3, 20, 20, 4);
  a.obs_dim = 19 + nn_enc_out_dim(&ci.enc_arch);
  p = bc_policy_make_images(&a, 4, keys, dims, 1, &ci, 5);
  cr_assert(p, "%s", tk_errmsg());
  snprintf(p->task, sizeof p->task, "lift");
  cr_assert_eq(bc_policy_save(p, pol), 0, "%s", tk_errmsg());
  snprintf(p->img[0].key, sizeof p->img[0].key, "sideview_image");
  cr_assert_eq(bc_policy_save(p, bad), 0, "%s", tk_errmsg());
  bc_policy_free(p);
  rc = tt_run(&out, TT_XVFB " %s --policy %s --frames 20 --screenshot %s", viewer(), pol, shot);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s --policy %s --frames 5", viewer(), bad);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "sideview") && strstr(out, "agentview, eye_in_hand"), "%s", out);
  free(out);
}

/* pixels of the scene (top left, 640x440 from y 40) whose colour is dominated by channel ch (0 red,
 * 1 green, 2 blue) by more than 60 over both others; their mean row in *row (and column in *col) */
static int dominant_at(const img *im, int ch, double *row, double *col) {
  int n = 0;
  double sy = 0, sx = 0;
  for (int y = 40; y < 480; y++)
    for (int x = 0; x < 640; x++) {
      uint32_t p = px(im, x, y);
      int c[3] = {(int)(p >> 16) & 255, (int)(p >> 8) & 255, (int)p & 255};
      if (c[ch] > c[(ch + 1) % 3] + 60 && c[ch] > c[(ch + 2) % 3] + 60) {
        n++;
        sy += y;
        sx += x;
      }
    }
  *row = n ? sy / n : 0;
  if (col) *col = n ? sx / n : 0;
  return n;
}

static int dominant(const img *im, int ch, double *row) { return dominant_at(im, ch, row, NULL); }

/* One scripted demo of task (noise 0, an 84x84 agentview camera) recorded, its first and last frames exported
 * by the viewer and loaded. */
static void first_and_last(const char *task, img *first, img *last) {
  const char *d = tt_tmpdir();
  char data[4200], a[4200], b[4200];
  snprintf(data, sizeof data, "%s/%s.h5", d, task);
  snprintf(a, sizeof a, "%s/a.png", d);
  snprintf(b, sizeof b, "%s/b.png", d);
  tt_record(data, task, 1, 0, 0, "--camera agentview:84x84");
  char *out = NULL;
  int rc = tt_run(&out, "%s %s --demo 0 --frame 0 --export %s && %s %s --demo 0 --frame -1 --export %s",
                  viewer(), data, a, viewer(), data, b);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  load(a, first);
  load(b, last);
}

/* The viewer replays stack: at the first frame the red cube lies on the table apart from the green
 * one; at the last (the operator has stacked it) the red cube sits right above the green one. */
Test(viewer, replays_stack, .timeout = 120) {
  img ia, ib;
  first_and_last("stack", &ia, &ib);
  double ra, ga, rb, gb;
  int nra = dominant(&ia, 0, &ra), nga = dominant(&ia, 1, &ga), nrb = dominant(&ib, 0, &rb),
      ngb = dominant(&ib, 1, &gb);
  printf("stack: first frame red %d px (row %.0f), green %d px (row %.0f); last frame red %d (row %.0f), "
         "green %d "
         "(row %.0f)\n",
         nra, ra, nga, ga, nrb, rb, ngb, gb);
  cr_assert_gt(nra, 50, "the red cube is drawn");
  cr_assert_gt(nga, 50, "the green cube is drawn");
  cr_assert_gt(nrb, 50);
  cr_assert_gt(ngb, 50);
  cr_assert_lt(rb, gb - 5, "at the end the red cube is above the green one (rows %.0f, %.0f)", rb, gb);
  cr_assert_gt(colours(&ia, 650, 40, 950, 340), 5, "the recorded frame is there");
  cairo_surface_destroy(ia.s);
  cairo_surface_destroy(ib.s);
}

/* The viewer replays pick_place: the blue can is drawn at the first frame and at the last, where the
 * operator has carried it into the bin, well away from where it stood. */
Test(viewer, replays_pick_place, .timeout = 120) {
  img ia, ib;
  first_and_last("pick_place", &ia, &ib);
  double ya, xa, yb, xb;
  int na = dominant_at(&ia, 2, &ya, &xa), nb = dominant_at(&ib, 2, &yb, &xb);
  printf("pick_place: the can %d px at (%.0f, %.0f) first, %d px at (%.0f, %.0f) last\n", na, xa, ya, nb, xb,
         yb);
  cr_assert_gt(na, 50, "the can is drawn");
  cr_assert_gt(nb, 20, "the can is drawn in the bin");
  cr_assert_gt(hypot(xb - xa, yb - ya), 40, "the can moved in the replay");
  cairo_surface_destroy(ia.s);
  cairo_surface_destroy(ib.s);
}

/* The viewer replays nut_assembly: the orange nut and the blue peg are drawn at the first frame, apart;
 * at the last (the operator has fitted the nut over the peg) the nut is drawn around the peg's foot. */
Test(viewer, replays_nut_assembly, .timeout = 120) {
  img ia, ib;
  first_and_last("nut_assembly", &ia, &ib);
  double nya, nxa, nyb, nxb, pya, pxa, pyb, pxb;
  int nna = dominant_at(&ia, 0, &nya, &nxa), nnb = dominant_at(&ib, 0, &nyb, &nxb),
      npa = dominant_at(&ia, 2, &pya, &pxa), npb = dominant_at(&ib, 2, &pyb, &pxb);
  double da = hypot(nxa - pxa, nya - pya), db = hypot(nxb - pxb, nyb - pyb);
  printf(
      "nut_assembly: first frame nut %d px at (%.0f, %.0f), peg %d px at (%.0f, %.0f); last frame nut %d px "
      "at (%.0f, %.0f), peg %d px at (%.0f, %.0f)\n",
      nna, nxa, nya, npa, pxa, pya, nnb, nxb, nyb, npb, pxb, pyb);
  cr_assert_gt(nna, 50, "the nut is drawn");
  cr_assert_gt(npa, 50, "the peg is drawn");
  cr_assert_gt(nnb, 30, "the nut is drawn on the peg");
  cr_assert_gt(npb, 50);
  cr_assert_gt(da, 40, "at the first frame the nut lies away from the peg (%.0f px)", da);
  cr_assert_lt(db, 25, "at the last frame the nut is around the peg (%.0f px)", db);
  cairo_surface_destroy(ia.s);
  cairo_surface_destroy(ib.s);
}
