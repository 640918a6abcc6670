#include <cairo.h>
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "tk.h"
#include "tk_plot.h"
#include "tt.h"

/* cairo's toy fonts leave fontconfig caches that LeakSanitizer reports: free them per test. */
TestSuite(plot, .fini = tk_plot_cleanup);

/* A PNG written by the library, loaded back. */
typedef struct {
  cairo_surface_t *s;
  int w, h, stride;
  const uint8_t *px;
} Img;

static Img load(const char *path) {
  Img im = {cairo_image_surface_create_from_png(path), 0, 0, 0, NULL};
  cr_assert_eq(cairo_surface_status(im.s), CAIRO_STATUS_SUCCESS, "no valid PNG at %s", path);
  im.w = cairo_image_surface_get_width(im.s);
  im.h = cairo_image_surface_get_height(im.s);
  im.stride = cairo_image_surface_get_stride(im.s);
  im.px = cairo_image_surface_get_data(im.s);
  return im;
}

static uint32_t pixel(const Img *im, int x, int y) {
  return *(const uint32_t *)(im->px + (size_t)y * im->stride + (size_t)x * 4) & 0xffffff;
}

static int near(uint32_t a, uint32_t b, int tol) {
  for (int sh = 0; sh < 24; sh += 8)
    if (abs((int)((a >> sh) & 255) - (int)((b >> sh) & 255)) > tol) return 0;
  return 1;
}

/* Pixels of colour c (within 2 per channel) in columns [x0, x1) and rows [y0, y1). */
static int count(const Img *im, uint32_t c, int x0, int y0, int x1, int y1) {
  int n = 0;
  for (int y = y0; y < y1; y++)
    for (int x = x0; x < x1; x++)
      n += near(pixel(im, x, y), c, 2);
  return n;
}
static int count_all(const Img *im, uint32_t c) { return count(im, c, 0, 0, im->w, im->h); }

static const char *tmp_png(const char *name) {
  static _Thread_local char p[4200];
  snprintf(p, sizeof p, "%s/%s", tt_tmpdir(), name);
  return p;
}

#define N 200
static double xs[N], ys[N], yc[N];
static void fill(void) {
  for (int i = 0; i < N; i++) {
    xs[i] = i * 0.05;
    ys[i] = sin(xs[i]);
    yc[i] = 2 * cos(xs[i]);
  }
}

Test(plot, two_series_png) {
  fill();
  const char *p = tmp_png("two.png");
  tkSeries s[2] = {{"sin", xs, ys, N}, {"2 cos", xs, yc, N}};
  tkPlotOpts o = {.title = "two series", .xlabel = "t [s]", .ylabel = "value"};
  cr_assert_eq(tk_plot_png(p, &o, s, 2), 0, "%s", tk_errmsg());
  Img im = load(p);
  cr_assert_eq(im.w, 800);
  cr_assert_eq(im.h, 500);
  cr_assert_eq(pixel(&im, 0, 0), 0xffffff, "background not white");
  int white = count_all(&im, 0xffffff);
  cr_assert(white > im.w * im.h / 2 && white < im.w * im.h, "white %d of %d", white, im.w * im.h);
  /* a 2px line across the plot, not just the legend swatch (~50 px) */
  int n0 = count_all(&im, tk_plot_color(0)), n1 = count_all(&im, tk_plot_color(1));
  cr_assert_gt(n0, 500, "series 0 colour %06x: %d px", tk_plot_color(0), n0);
  cr_assert_gt(n1, 500, "series 1 colour %06x: %d px", tk_plot_color(1), n1);
  cr_assert_eq(count_all(&im, tk_plot_color(2)), 0, "a third colour with two series");
  char tmp[4300];
  snprintf(tmp, sizeof tmp, "%s.tmp", p);
  cr_assert_eq(tk_file_exists(tmp), 0, "temporary left behind");
  cairo_surface_destroy(im.s);
}

Test(plot, size_and_palette) {
  fill();
  const char *p = tmp_png("small.png");
  tkSeries s = {NULL, NULL, ys, N}; /* x = index, no legend */
  tkPlotOpts o = {.width = 321, .height = 123};
  cr_assert_eq(tk_plot_png(p, &o, &s, 1), 0, "%s", tk_errmsg());
  Img im = load(p);
  cr_assert_eq(im.w, 321);
  cr_assert_eq(im.h, 123);
  cr_assert_gt(count_all(&im, tk_plot_color(0)), 100);
  cairo_surface_destroy(im.s);
  for (int i = 0; i < TK_PLOT_NCOLORS; i++) {
    cr_assert_eq(tk_plot_color(i), tk_plot_color(i + TK_PLOT_NCOLORS));
    for (int j = 0; j < i; j++)
      cr_assert_neq(tk_plot_color(i), tk_plot_color(j));
  }
}

Test(plot, odd_series_give_valid_pngs) {
  double c[5] = {3, 3, 3, 3, 3}, nan5[5] = {1, NAN, 2, INFINITY, -INFINITY}, allnan[3] = {NAN, NAN, NAN};
  double big[3] = {DBL_MAX, -DBL_MAX, DBL_MAX}, tiny[3] = {1e-300, 1e-300 * (1 + 1e-12), 1e-300};
  double zero[1] = {0}, xdup[5] = {1, 1, 1, 1, 1}, xnan[5] = {NAN, 1, 2, NAN, 4};
  struct {
    const char *name;
    tkSeries s;
    int log_y;
  } cases[] = {
      {"constant", {"c", NULL, c, 5}, 0},      {"nan_inf", {"n", NULL, nan5, 5}, 0},
      {"empty", {"e", NULL, NULL, 0}, 0},      {"all_nan", {"a", NULL, allnan, 3}, 0},
      {"single", {"one", NULL, zero, 1}, 0},   {"huge", {"h", NULL, big, 3}, 0},
      {"tiny_range", {"t", NULL, tiny, 3}, 0}, {"same_x", {"x", xdup, c, 5}, 0},
      {"nan_x", {"x", xnan, c, 5}, 0},         {"log_nonpos", {"l", NULL, nan5, 5}, 1},
      {"log_zero", {"z", NULL, zero, 1}, 1},   {"log_huge", {"h", NULL, big, 3}, 1},
  };
  const char *d = tt_tmpdir();
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s/%s.png", d, cases[i].name);
    tkPlotOpts o = {.title = cases[i].name, .log_y = cases[i].log_y};
    cr_assert_eq(tk_plot_png(p, &o, &cases[i].s, 1), 0, "%s: %s", cases[i].name, tk_errmsg());
    Img im = load(p);
    cr_assert_eq(im.w, 800, "%s", cases[i].name);
    cr_assert_neq(count_all(&im, 0xffffff), im.w * im.h, "%s: blank image", cases[i].name);
    cairo_surface_destroy(im.s);
  }
  /* no series at all */
  const char *p = tmp_png("none.png");
  cr_assert_eq(tk_plot_png(p, NULL, NULL, 0), 0, "%s", tk_errmsg());
  Img im = load(p);
  cairo_surface_destroy(im.s);
}

Test(plot, constant_series_is_visible) {
  double c[50];
  for (int i = 0; i < 50; i++)
    c[i] = -7.25;
  const char *p = tmp_png("const.png");
  tkSeries s = {NULL, NULL, c, 50};
  cr_assert_eq(tk_plot_png(p, NULL, &s, 1), 0, "%s", tk_errmsg());
  Img im = load(p);
  cr_assert_gt(count_all(&im, tk_plot_color(0)), 500);
  cairo_surface_destroy(im.s);
}

/* Find the columns spanned by colour c. */
static void extent(const Img *im, uint32_t c, int *x0, int *x1) {
  *x0 = im->w, *x1 = -1;
  for (int x = 0; x < im->w; x++)
    if (count(im, c, x, 0, x + 1, im->h)) *x0 = x < *x0 ? x : *x0, *x1 = x;
}

Test(plot, nan_is_a_gap) {
  double y[100];
  for (int i = 0; i < 100; i++)
    y[i] = (i >= 40 && i < 60) ? NAN : 0.5 + 0.001 * i;
  const char *p = tmp_png("gap.png");
  tkSeries s = {NULL, NULL, y, 100};
  cr_assert_eq(tk_plot_png(p, NULL, &s, 1), 0, "%s", tk_errmsg());
  Img im = load(p);
  int x0, x1;
  uint32_t c = tk_plot_color(0);
  extent(&im, c, &x0, &x1);
  cr_assert_gt(x1 - x0, 400, "line spans %d..%d", x0, x1);
  int at = x0 + (x1 - x0) / 5, mid = x0 + (x1 - x0) / 2;
  cr_assert_gt(count(&im, c, at, 0, at + 1, im.h), 0, "no line at column %d", at);
  cr_assert_eq(count(&im, c, mid - 20, 0, mid + 20, im.h), 0, "line through the NaN gap at %d", mid);
  cairo_surface_destroy(im.s);
}

Test(plot, fixed_y_clips_out_of_range) {
  double y[20];
  for (int i = 0; i < 20; i++)
    y[i] = 5 + i;
  const char *p = tmp_png("clip.png");
  tkSeries s = {NULL, NULL, y, 20};
  tkPlotOpts o = {.fixed_y = 1, .ymin = 0, .ymax = 1};
  cr_assert_eq(tk_plot_png(p, &o, &s, 1), 0, "%s", tk_errmsg());
  Img im = load(p);
  cr_assert_eq(count_all(&im, tk_plot_color(0)), 0, "data above ymax drawn");
  cairo_surface_destroy(im.s);
}

Test(plot, log_y_skips_nonpositive) {
  double y[60];
  for (int i = 0; i < 60; i++)
    y[i] = i % 7 == 3 ? -1 : (i % 11 == 5 ? 0 : pow(10, i / 10.0));
  const char *p = tmp_png("log.png");
  tkSeries s = {"pow", NULL, y, 60};
  tkPlotOpts o = {.log_y = 1, .ylabel = "log"};
  cr_assert_eq(tk_plot_png(p, &o, &s, 1), 0, "%s", tk_errmsg());
  Img im = load(p);
  cr_assert_gt(count_all(&im, tk_plot_color(0)), 200);
  cairo_surface_destroy(im.s);
}

Test(plot, bad_path_names_it) {
  double y[3] = {1, 2, 3};
  tkSeries s = {"a", NULL, y, 3};
  int rc = tk_plot_png("/nonexistent/dir/p.png", NULL, &s, 1);
  cr_assert_eq(rc, TK_EIO);
  cr_assert(strstr(tk_errmsg(), "/nonexistent/dir/p.png"), "%s", tk_errmsg());
}

Test(plot, bad_arguments) {
  double y[3] = {1, 2, 3};
  tkSeries s = {"a", NULL, y, 3}, neg = {"n", NULL, y, -1}, noy = {"y", NULL, NULL, 3};
  const char *p = tmp_png("bad.png");
  cr_assert_eq(tk_plot_png(NULL, NULL, &s, 1), TK_EINVAL);
  cr_assert_eq(tk_plot_png(p, &(tkPlotOpts){.width = -5}, &s, 1), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "-5"), "%s", tk_errmsg());
  cr_assert_eq(tk_plot_png(p, &(tkPlotOpts){.height = 100000}, &s, 1), TK_ERANGE);
  cr_assert_eq(tk_plot_png(p, NULL, &neg, 1), TK_EINVAL);
  cr_assert_eq(tk_plot_png(p, NULL, &noy, 1), TK_EINVAL);
  cr_assert_eq(tk_plot_png(p, NULL, NULL, 2), TK_EINVAL);
  cr_assert_eq(tk_plot_png(p, NULL, &s, -1), TK_EINVAL);
  cr_assert_eq(tk_plot_png(p, &(tkPlotOpts){.fixed_y = 1, .ymin = 1, .ymax = 1}, &s, 1), TK_EINVAL);
  cr_assert_eq(tk_plot_png(p, &(tkPlotOpts){.fixed_y = 1, .ymin = 0, .ymax = 1, .log_y = 1}, &s, 1),
               TK_EINVAL);
  cr_assert_eq(tk_file_exists(p), 0);
  cr_assert_eq(tk_plot_draw(NULL, 0, 0, 10, 10, NULL, &s, 1, NAN), TK_EINVAL);
}

Test(plot, draw_into_part_of_a_surface) {
  fill();
  cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 1000, 400);
  cairo_t *cr = cairo_create(surf);
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_paint(cr);
  tkSeries s[2] = {{"sin", xs, ys, N}, {"2 cos", xs, yc, N}};
  tkPlotOpts o = {.title = "left", .xlabel = "t"};
  cr_assert_eq(tk_plot_draw(cr, 20, 20, 460, 360, &o, s, 1, 3.0), 0, "%s", tk_errmsg());
  o.title = "right \xff\xfe bad utf-8"; /* must not put cr in an error state */
  cr_assert_eq(tk_plot_draw(cr, 520, 20, 460, 360, &o, s, 2, NAN), 0, "%s", tk_errmsg());
  cr_assert_eq(cairo_status(cr), CAIRO_STATUS_SUCCESS);
  cr_assert_eq(tk_plot_draw(cr, 0, 0, -1, 10, &o, s, 2, NAN), TK_EINVAL);
  cr_assert_eq(tk_plot_draw(cr, 0, 0, 10, NAN, &o, s, 2, NAN), TK_EINVAL);
  cr_assert_eq(tk_plot_draw(cr, 0, 0, 5, 5, &o, s, 2, NAN), 0, "tiny rectangle: %s", tk_errmsg());
  cairo_destroy(cr);
  cairo_surface_flush(surf);
  Img im = {surf, 1000, 400, cairo_image_surface_get_stride(surf), cairo_image_surface_get_data(surf)};
  cr_assert_eq(pixel(&im, 10, 200), 0, "drawn outside the rectangle");
  cr_assert_eq(pixel(&im, 500, 200), 0, "drawn outside the rectangle");
  cr_assert_eq(pixel(&im, 990, 390), 0, "drawn outside the rectangle");
  cr_assert_eq(pixel(&im, 25, 25), 0xffffff);
  cr_assert_gt(count(&im, tk_plot_color(0), 20, 20, 480, 380), 300);
  cr_assert_eq(count(&im, tk_plot_color(1), 20, 20, 480, 380), 0, "one series on the left");
  cr_assert_gt(count(&im, tk_plot_color(1), 520, 20, 980, 380), 300);
  cairo_surface_destroy(surf);
}

static void *plot_thread(void *arg) {
  const char *d = arg;
  char p[4300];
  snprintf(p, sizeof p, "%s/t%lu.png", d, (unsigned long)pthread_self());
  tkSeries s = {"sin", xs, ys, N};
  tkPlotOpts o = {.title = "thread", .width = 400, .height = 300};
  intptr_t bad = 0;
  for (int i = 0; i < 5; i++)
    bad += tk_plot_png(p, &o, &s, 1) != 0;
  return (void *)bad;
}

Test(plot, concurrent_threads) {
  fill();
  char d[4200];
  snprintf(d, sizeof d, "%s", tt_tmpdir());
  pthread_t t[4];
  for (int i = 0; i < 4; i++)
    cr_assert_eq(pthread_create(&t[i], NULL, plot_thread, d), 0);
  for (int i = 0; i < 4; i++) {
    void *r;
    pthread_join(t[i], &r);
    cr_assert_eq((intptr_t)r, 0, "thread %d failed", i);
  }
}

/* Random series with special values, random options and rectangles: never crash, never
 * leave the cairo_t in an error state. */
Test(plot, random_inputs_do_not_crash) {
  static const double special[] = {NAN, INFINITY, -INFINITY, 0, -0.0, DBL_MAX, -DBL_MAX, DBL_MIN, 1e-300, 1};
  tkRng r;
  tk_rng_seed(&r, 42);
  cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, 300, 200);
  cairo_t *cr = cairo_create(surf);
  double x[3][40], y[3][40];
  for (int it = 0; it < 300; it++) {
    tkSeries s[3];
    for (int k = 0; k < 3; k++) {
      int n = (int)tk_rng_below(&r, 41);
      double scale = pow(10, tk_rng_range(&r, -300, 300));
      for (int i = 0; i < n; i++) {
        x[k][i] = tk_rng_below(&r, 8) ? i * scale : special[tk_rng_below(&r, 10)];
        y[k][i] = tk_rng_below(&r, 5) ? tk_rng_normal(&r) * scale : special[tk_rng_below(&r, 10)];
      }
      s[k] = (tkSeries){k ? "series" : NULL, tk_rng_below(&r, 2) ? x[k] : NULL, y[k], n};
    }
    tkPlotOpts o = {.title = "t", .ylabel = "y", .log_y = (int)tk_rng_below(&r, 2)};
    if (tk_rng_below(&r, 3) == 0) {
      o.fixed_y = 1, o.ymin = special[tk_rng_below(&r, 10)], o.ymax = tk_rng_normal(&r) * 1e3;
    }
    double w = tk_rng_range(&r, 1, 300), h = tk_rng_range(&r, 1, 200);
    int rc = tk_plot_draw(cr, 0, 0, w, h, &o, s, (int)tk_rng_below(&r, 4), tk_rng_normal(&r));
    cr_assert(rc == 0 || rc == TK_EINVAL, "iteration %d: %d %s", it, rc, tk_errmsg());
    cr_assert_eq(rc == TK_EINVAL,
                 o.fixed_y &&
                     !(isfinite(o.ymin) && isfinite(o.ymax) && o.ymin < o.ymax && (!o.log_y || o.ymin > 0)),
                 "iteration %d: %s", it, tk_errmsg());
    cr_assert_eq(cairo_status(cr), CAIRO_STATUS_SUCCESS, "iteration %d", it);
  }
  cairo_destroy(cr);
  cairo_surface_destroy(surf);
}
