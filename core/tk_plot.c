/* core/tk_plot.c -- line plots on cairo: nice ticks, grid, legend, gaps, log y. */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cairo.h>
#include <fontconfig/fontconfig.h>

#include "tk.h"
#include "tk_plot.h"

#define MAX_TICKS 24
#define FONT "sans-serif"

static const uint32_t palette[TK_PLOT_NCOLORS] = {0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728,
                                                  0x9467bd, 0x8c564b, 0xe377c2, 0x17becf};

uint32_t tk_plot_color(int i) {
  int k = i % TK_PLOT_NCOLORS;
  return palette[k < 0 ? k + TK_PLOT_NCOLORS : k];
}

typedef struct {
  double lo, hi; /* range in plotted units (log10 of the value on a log axis) */
  int nt;
  double t[MAX_TICKS];
  char lab[MAX_TICKS][32];
} Axis;

static void set_rgb(cairo_t *cr, uint32_t c) {
  cairo_set_source_rgb(cr, ((c >> 16) & 255) / 255.0, ((c >> 8) & 255) / 255.0, (c & 255) / 255.0);
}

/* Point i of s in plotted units; 0 if it is a gap. */
static int point(const tkSeries *s, int i, int log_y, double *px, double *py) {
  double x = s->x ? s->x[i] : (double)i, y = s->y[i];
  if (!isfinite(x) || !isfinite(y) || (log_y && y <= 0)) return 0;
  *px = x;
  *py = log_y ? log10(y) : y;
  return 1;
}

/* Position of v on the axis, 0..1 inside; halves first so that no difference overflows. */
static double to_u(const Axis *a, double v) { return (v * 0.5 - a->lo * 0.5) / (a->hi * 0.5 - a->lo * 0.5); }

/* Widen an empty or numerically degenerate range around its value. */
static void pad_range(double *lo, double *hi) {
  double m = TK_MAX(fabs(*lo), fabs(*hi));
  if (*hi - *lo > m * 1e-9 && *hi - *lo > 1e-290) return; /* (denormals lose precision) */
  double d = m > 0 ? TK_MAX(m * 0.1, 1e-290) : 1;
  *lo = isfinite(*lo - d) ? *lo - d : -DBL_MAX;
  *hi = isfinite(*hi + d) ? *hi + d : DBL_MAX;
}

/* 1, 2 or 5 x 10^k, at least 2 * half / maxt (a half span, so that +-DBL_MAX still fit). */
static double nice_step(double half, int maxt) {
  double raw = half / maxt * 2, mag = pow(10, floor(log10(raw))), f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static void fmt_tick(char *buf, size_t n, double v, double step, double m) {
  if (fabs(v) < step * 1e-6) v = 0; /* no "-0" or 1e-17 */
  if (m < 1e6 && m >= 1e-3 && step >= 1e-6) {
    snprintf(buf, n, "%.*f", step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9), v);
  } else {
    double p = ceil(log10(m / step)) + 1;
    snprintf(buf, n, "%.*g", isfinite(p) ? (int)TK_MAX(1, TK_MIN(p, 15)) : 15, v);
  }
}

/* Ticks at multiples of a nice step; expand widens the range to whole steps. */
static void lin_ticks(Axis *a, int maxt, int expand) {
  a->nt = 0;
  double step = nice_step(a->hi * 0.5 - a->lo * 0.5, maxt);
  if (!isfinite(step) || step <= 0) return;
  if (expand) { /* a margin of 3% so that the extremes do not sit on the frame */
    double m = (a->hi * 0.5 - a->lo * 0.5) * 0.06;
    double lo = floor((a->lo - m) / step) * step, hi = ceil((a->hi + m) / step) * step;
    if (isfinite(lo) && isfinite(hi)) a->lo = lo, a->hi = hi;
  }
  double m = TK_MAX(fabs(a->lo), fabs(a->hi));
  for (double k = ceil(a->lo / step); a->nt < MAX_TICKS; k++) {
    double t = k * step;
    if (!isfinite(t) || t > a->hi + step * 1e-9 || (a->nt && t <= a->t[a->nt - 1])) break;
    a->t[a->nt] = t;
    fmt_tick(a->lab[a->nt], sizeof a->lab[0], t, step, m);
    a->nt++;
  }
}

/* Decade ticks on a log10 axis; 1-2-5 ticks on a short range, else its two ends. */
static void log_ticks(Axis *a, int maxt, int expand) {
  if (expand) {
    a->lo = floor(a->lo), a->hi = ceil(a->hi);
    if (a->hi <= a->lo) a->lo -= 1, a->hi += 1;
  }
  double step = TK_MAX(1, ceil((a->hi - a->lo) / maxt));
  a->nt = 0;
  for (double e = ceil(a->lo / step) * step; e <= a->hi + 1e-9 && a->nt < MAX_TICKS; e += step) {
    a->t[a->nt] = e;
    if (e >= -3 && e <= 4)
      snprintf(a->lab[a->nt], sizeof a->lab[0], "%g", pow(10, e));
    else
      snprintf(a->lab[a->nt], sizeof a->lab[0], "1e%d", (int)e);
    a->nt++;
  }
  if (a->nt < 2 && a->hi - a->lo < 2) { /* under a decade: 1, 2, 5 x 10^k */
    a->nt = 0;
    for (double k = floor(a->lo); k <= a->hi && a->nt < MAX_TICKS; k++)
      for (int m = 1; m <= 5; m += m == 1 ? 1 : 3) {
        double e = k + log10(m);
        if (e < a->lo - 1e-9 || e > a->hi + 1e-9 || a->nt >= MAX_TICKS) continue;
        a->t[a->nt] = e;
        snprintf(a->lab[a->nt++], sizeof a->lab[0], "%g", m * pow(10, k));
      }
  }
  if (a->nt < 2) {
    a->nt = 2, a->t[0] = a->lo, a->t[1] = a->hi;
    snprintf(a->lab[0], sizeof a->lab[0], "%.3g", pow(10, a->lo));
    snprintf(a->lab[1], sizeof a->lab[0], "%.3g", pow(10, a->hi));
  }
}

/* Copy s into buf as valid UTF-8 (cairo puts the context in an error state otherwise):
 * bytes that do not start a valid character become '?'. */
static const char *utf8_clean(char *buf, size_t n, const char *s) {
  size_t o = 0;
  const unsigned char *p = (const unsigned char *)s;
  while (*p && o + 5 < n) {
    int len = *p < 0x80 ? 1 : (*p & 0xe0) == 0xc0 ? 2 : (*p & 0xf0) == 0xe0 ? 3 : (*p & 0xf8) == 0xf0 ? 4 : 0;
    uint32_t c = len == 1 ? *p : len == 2 ? *p & 0x1f : len == 3 ? *p & 0x0f : *p & 0x07;
    int ok = len > 0;
    for (int i = 1; ok && i < len; i++) {
      ok = (p[i] & 0xc0) == 0x80;
      c = (c << 6) | (p[i] & 0x3f);
    }
    static const uint32_t min_cp[5] = {0, 0, 0x80, 0x800, 0x10000};
    ok = ok && c >= min_cp[len] && c < 0x110000 && (c & 0xfffff800) != 0xd800 && (c < 0xfdd0 || c > 0xfdef) &&
         (c & 0xfffe) != 0xfffe;
    if (!ok) len = 1;
    memcpy(buf + o, ok ? (const char *)p : "?", (size_t)len);
    o += (size_t)len, p += len;
  }
  buf[o] = 0;
  return buf;
}

/* Show s with its advance box anchored at (x, y): ax, ay in 0..1 (0 = left/top). */
static double text(cairo_t *cr, const char *s, double x, double y, double ax, double ay) {
  char buf[256];
  cairo_text_extents_t e;
  cairo_font_extents_t fe;
  utf8_clean(buf, sizeof buf, s);
  cairo_text_extents(cr, buf, &e);
  cairo_font_extents(cr, &fe);
  cairo_move_to(cr, x - ax * e.x_advance, y + 0.72 * fe.ascent * (1 - ay));
  cairo_show_text(cr, buf);
  return e.x_advance;
}

static double text_width(cairo_t *cr, const char *s) {
  char buf[256];
  cairo_text_extents_t e;
  cairo_text_extents(cr, utf8_clean(buf, sizeof buf, s), &e);
  return e.x_advance;
}

/* Clip the segment to the unit square (Liang-Barsky); 0 if nothing is left. */
static int clip_unit(double *x0, double *y0, double *x1, double *y1) {
  double t0 = 0, t1 = 1, dx = *x1 - *x0, dy = *y1 - *y0;
  double p[4] = {-dx, dx, -dy, dy}, q[4] = {*x0, 1 - *x0, *y0, 1 - *y0};
  for (int i = 0; i < 4; i++) {
    if (p[i] == 0) {
      if (q[i] < 0) return 0;
      continue;
    }
    double r = q[i] / p[i];
    if (p[i] < 0 && r > t0) t0 = r;
    if (p[i] > 0 && r < t1) t1 = r;
    if (t0 > t1) return 0;
  }
  double ax = *x0 + t0 * dx, ay = *y0 + t0 * dy;
  *x1 = *x0 + t1 * dx, *y1 = *y0 + t1 * dy, *x0 = ax, *y0 = ay;
  return isfinite(*x0) && isfinite(*y0) && isfinite(*x1) && isfinite(*y1);
}

static int check_args(const tkPlotOpts *o, const tkSeries *s, int nseries) {
  if (nseries < 0 || (nseries > 0 && !s))
    return tk_error(TK_EINVAL, "plot: bad series list (%d, %s)", nseries, s ? "set" : "NULL");
  for (int i = 0; i < nseries; i++) {
    if (s[i].n < 0) return tk_error(TK_EINVAL, "plot: series %d has negative length %d", i, s[i].n);
    if (s[i].n > 0 && !s[i].y) return tk_error(TK_EINVAL, "plot: series %d has no y values", i);
  }
  if (o && o->fixed_y &&
      !(isfinite(o->ymin) && isfinite(o->ymax) && o->ymin < o->ymax && (!o->log_y || o->ymin > 0)))
    return tk_error(TK_EINVAL, "plot: bad fixed y range [%g, %g]%s", o->ymin, o->ymax,
                    o->log_y ? " (log)" : "");
  return 0;
}

/* One series as a polyline in the plot area (px0, py0, pw, ph), clipped to it. */
static void draw_series(cairo_t *cr, const tkSeries *s, int log_y, const Axis *ax, const Axis *ay, double px0,
                        double py0, double pw, double ph) {
  double pu = 0, pv = 0, ex = 0, ey = 0, u, v;
  int have_prev = 0, pen = 0;
  for (int i = 0; i < s->n; i++) {
    int ok = point(s, i, log_y, &u, &v);
    if (ok) u = to_u(ax, u), v = to_u(ay, v), ok = isfinite(u) && isfinite(v);
    if (!ok) {
      have_prev = pen = 0;
      continue;
    }
    double nx, ny;
    if (have_prev) {
      double x0 = pu, y0 = pv, x1 = u, y1 = v;
      if (clip_unit(&x0, &y0, &x1, &y1)) {
        if (!pen || x0 != ex || y0 != ey) cairo_move_to(cr, px0 + x0 * pw, py0 + (1 - y0) * ph);
        cairo_line_to(cr, px0 + x1 * pw, py0 + (1 - y1) * ph);
        ex = x1, ey = y1, pen = 1;
      } else {
        pen = 0;
      }
    } else if (!(i + 1 < s->n && point(s, i + 1, log_y, &nx, &ny)) && u >= 0 && u <= 1 && v >= 0 && v <= 1) {
      cairo_stroke(cr); /* isolated point: a dot */
      cairo_arc(cr, px0 + u * pw, py0 + (1 - v) * ph, 2.5, 0, 2 * M_PI);
      cairo_fill(cr);
    }
    have_prev = 1, pu = u, pv = v;
  }
  cairo_stroke(cr);
}

/* Legend in the inner corner of the plot area that covers the fewest data points. */
static void draw_legend(cairo_t *cr, const tkSeries *s, int nseries, int log_y, const Axis *ax,
                        const Axis *ay, double px0, double py0, double pw, double ph) {
  int ne = 0;
  double tw = 0, rowh = 16;
  for (int i = 0; i < nseries; i++)
    if (s[i].name && s[i].name[0]) ne++, tw = TK_MAX(tw, text_width(cr, s[i].name));
  ne = (int)TK_MIN(ne, floor((ph - 24) / rowh));
  if (ne <= 0) return;
  double bw = TK_MIN(tw + 40, pw - 16), bh = ne * rowh + 8, bx = 0, by = 0, best = INFINITY;
  if (bw < 40) return;
  for (int c = 0; c < 4; c++) {
    double cx = c & 1 ? px0 + 8 : px0 + pw - bw - 8, cy = c & 2 ? py0 + ph - bh - 8 : py0 + 8, hits = 0, u, v;
    for (int k = 0; k < nseries; k++)
      for (int i = 0; i < s[k].n; i++)
        if (point(&s[k], i, log_y, &u, &v)) {
          u = px0 + to_u(ax, u) * pw, v = py0 + (1 - to_u(ay, v)) * ph;
          hits += u >= cx && u <= cx + bw && v >= cy && v <= cy + bh;
        }
    if (hits < best) best = hits, bx = cx, by = cy;
  }
  cairo_save(cr);
  cairo_rectangle(cr, bx, by, bw, bh);
  cairo_set_source_rgba(cr, 1, 1, 1, 0.85);
  cairo_fill_preserve(cr);
  cairo_set_source_rgb(cr, 0.75, 0.75, 0.75);
  cairo_set_line_width(cr, 1);
  cairo_stroke(cr);
  cairo_rectangle(cr, bx, by, bw, bh);
  cairo_clip(cr);
  for (int i = 0, row = 0; i < nseries && row < ne; i++) {
    if (!s[i].name || !s[i].name[0]) continue;
    double cy = by + 4 + rowh * (row++ + 0.5);
    set_rgb(cr, tk_plot_color(i));
    cairo_set_line_width(cr, 2);
    cairo_move_to(cr, bx + 6, cy);
    cairo_line_to(cr, bx + 28, cy);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    text(cr, s[i].name, bx + 34, cy, 0, 0.5);
  }
  cairo_restore(cr);
}

int tk_plot_draw(void *cr_ptr, double x, double y, double w, double h, const tkPlotOpts *o, const tkSeries *s,
                 int nseries, double cursor_x) {
  cairo_t *cr = cr_ptr;
  static const tkPlotOpts dflt;
  if (!o) o = &dflt;
  if (!cr) return tk_error(TK_EINVAL, "plot: no cairo context");
  if (cairo_status(cr) != CAIRO_STATUS_SUCCESS)
    return tk_error(TK_EINVAL, "plot: cairo context in error: %s", cairo_status_to_string(cairo_status(cr)));
  if (!(isfinite(x) && isfinite(y) && isfinite(w) && isfinite(h) && w > 0 && h > 0))
    return tk_error(TK_EINVAL, "plot: bad rectangle %gx%g at (%g, %g)", w, h, x, y);
  int rc = check_args(o, s, nseries);
  if (rc) return rc;

  /* data ranges */
  Axis ax = {.lo = INFINITY, .hi = -INFINITY}, ay = {.lo = INFINITY, .hi = -INFINITY};
  for (int k = 0; k < nseries; k++)
    for (int i = 0; i < s[k].n; i++) {
      double px, py;
      if (!point(&s[k], i, o->log_y, &px, &py)) continue;
      ax.lo = TK_MIN(ax.lo, px), ax.hi = TK_MAX(ax.hi, px);
      ay.lo = TK_MIN(ay.lo, py), ay.hi = TK_MAX(ay.hi, py);
    }
  if (ax.lo > ax.hi) ax.lo = 0, ax.hi = 1, ay.lo = 0, ay.hi = 1; /* nothing to draw */
  if (o->fixed_y) ay.lo = o->log_y ? log10(o->ymin) : o->ymin, ay.hi = o->log_y ? log10(o->ymax) : o->ymax;
  pad_range(&ax.lo, &ax.hi);
  if (!o->log_y) pad_range(&ay.lo, &ay.hi);

  cairo_save(cr);
  cairo_rectangle(cr, x, y, w, h);
  cairo_clip(cr);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, 12);

  /* layout: y ticks first, their labels' width sets the left margin */
  int has_title = o->title && o->title[0], has_xl = o->xlabel && o->xlabel[0],
      has_yl = o->ylabel && o->ylabel[0];
  double top = has_title ? 34 : 14, bottom = 26 + (has_xl ? 20 : 0), right = 18;
  double ph = h - top - bottom;
  int ymaxt = (int)TK_MAX(2, TK_MIN(10, ph / 45));
  if (o->log_y)
    log_ticks(&ay, ymaxt, !o->fixed_y);
  else
    lin_ticks(&ay, ymaxt, !o->fixed_y);
  double lw = 0;
  for (int i = 0; i < ay.nt; i++)
    lw = TK_MAX(lw, text_width(cr, ay.lab[i]));
  double left = 14 + lw + (has_yl ? 22 : 0);
  double px0 = x + left, py0 = y + top, pw = w - left - right;
  lin_ticks(&ax, (int)TK_MAX(2, TK_MIN(10, pw / 90)), 0);

  if (pw >= 8 && ph >= 8) {
    /* grid */
    cairo_set_line_width(cr, 1);
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    for (int i = 0; i < ax.nt; i++) {
      double gx = floor(px0 + to_u(&ax, ax.t[i]) * pw) + 0.5;
      cairo_move_to(cr, gx, py0);
      cairo_line_to(cr, gx, py0 + ph);
    }
    for (int i = 0; i < ay.nt; i++) {
      double gy = floor(py0 + (1 - to_u(&ay, ay.t[i])) * ph) + 0.5;
      cairo_move_to(cr, px0, gy);
      cairo_line_to(cr, px0 + pw, gy);
    }
    cairo_stroke(cr);

    /* series, clipped to the plot area (plus a dot's radius so edge values show whole) */
    cairo_save(cr);
    cairo_rectangle(cr, px0 - 3, py0 - 3, pw + 6, ph + 6);
    cairo_clip(cr);
    cairo_set_line_width(cr, 2);
    cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
    cairo_set_line_cap(cr, CAIRO_LINE_CAP_ROUND);
    for (int k = 0; k < nseries; k++) {
      set_rgb(cr, tk_plot_color(k));
      draw_series(cr, &s[k], o->log_y, &ax, &ay, px0, py0, pw, ph);
    }
    double cu = isfinite(cursor_x) ? to_u(&ax, cursor_x) : NAN;
    if (cu >= 0 && cu <= 1) {
      cairo_set_source_rgba(cr, 0.1, 0.1, 0.1, 0.7);
      cairo_set_line_width(cr, 1.5);
      cairo_move_to(cr, px0 + cu * pw, py0);
      cairo_line_to(cr, px0 + cu * pw, py0 + ph);
      cairo_stroke(cr);
    }
    cairo_restore(cr);

    /* frame, tick marks and labels */
    cairo_set_source_rgb(cr, 0.3, 0.3, 0.3);
    cairo_set_line_width(cr, 1);
    cairo_rectangle(cr, floor(px0) + 0.5, floor(py0) + 0.5, floor(pw), floor(ph));
    for (int i = 0; i < ax.nt; i++) {
      double gx = floor(px0 + to_u(&ax, ax.t[i]) * pw) + 0.5;
      cairo_move_to(cr, gx, py0 + ph);
      cairo_line_to(cr, gx, py0 + ph + 4);
    }
    for (int i = 0; i < ay.nt; i++) {
      double gy = floor(py0 + (1 - to_u(&ay, ay.t[i])) * ph) + 0.5;
      cairo_move_to(cr, px0 - 4, gy);
      cairo_line_to(cr, px0, gy);
    }
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.15, 0.15, 0.15);
    for (int i = 0; i < ax.nt; i++)
      text(cr, ax.lab[i], px0 + to_u(&ax, ax.t[i]) * pw, py0 + ph + 7, 0.5, 0);
    for (int i = 0; i < ay.nt; i++)
      text(cr, ay.lab[i], px0 - 7, py0 + (1 - to_u(&ay, ay.t[i])) * ph, 1, 0.5);
    if (has_xl) text(cr, o->xlabel, px0 + pw / 2, y + h - 6, 0.5, 1);
    if (has_yl) {
      cairo_save(cr);
      cairo_translate(cr, x + 6, py0 + ph / 2);
      cairo_rotate(cr, -M_PI / 2);
      text(cr, o->ylabel, 0, 0, 0.5, 0);
      cairo_restore(cr);
    }
    draw_legend(cr, s, nseries, o->log_y, &ax, &ay, px0, py0, pw, ph);
  }
  if (has_title) {
    cairo_select_font_face(cr, FONT, CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_BOLD);
    cairo_set_font_size(cr, 15);
    cairo_set_source_rgb(cr, 0.1, 0.1, 0.1);
    text(cr, o->title, x + w / 2, y + 10, 0.5, 0);
  }
  cairo_restore(cr);
  if (cairo_status(cr) != CAIRO_STATUS_SUCCESS)
    return tk_error(TK_EIO, "plot: cairo: %s", cairo_status_to_string(cairo_status(cr)));
  return 0;
}

typedef struct {
  FILE *f;
  int err;
} PngOut;

static cairo_status_t png_write(void *closure, const unsigned char *data, unsigned int len) {
  PngOut *out = closure;
  if (fwrite(data, 1, len, out->f) == len) return CAIRO_STATUS_SUCCESS;
  out->err = errno ? errno : EIO;
  return CAIRO_STATUS_WRITE_ERROR;
}

int tk_plot_png(const char *path, const tkPlotOpts *o, const tkSeries *s, int nseries) {
  if (!path || !path[0]) return tk_error(TK_EINVAL, "plot: no output path");
  int w = o ? o->width : 0, h = o ? o->height : 0;
  if (w < 0 || h < 0) return tk_error(TK_EINVAL, "plot %s: negative size %dx%d", path, w, h);
  w = w ? w : 800, h = h ? h : 500;
  if (w > 32767 || h > 32767) return tk_error(TK_ERANGE, "plot %s: size %dx%d over 32767", path, w, h);
  int rc = check_args(o, s, nseries);
  if (rc) return tk_error_wrap(rc, "%s", path);

  cairo_surface_t *surf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status(surf) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(surf);
    return tk_error(TK_ENOMEM, "plot %s: %dx%d image: %s", path, w, h,
                    cairo_status_to_string(cairo_surface_status(surf)));
  }
  cairo_t *cr = cairo_create(surf);
  rc = tk_plot_draw(cr, 0, 0, w, h, o, s, nseries, NAN);
  cairo_destroy(cr);
  if (rc)
    rc = tk_error_wrap(rc, "%s", path);
  else if ((rc = tk_png_write_surface(surf, path)))
    rc = tk_error_wrap(rc, "plot");
  cairo_surface_destroy(surf);
  return rc;
}

int tk_png_write_surface(void *surface, const char *path) {
  char tmp[4200];
  int fd = tk_temp_beside(path, tmp, sizeof tmp); /* a name of ours alone: never a user's <path>.tmp */
  if (fd < 0) return tk_error_wrap(fd, "%s", path);
  int rc = 0;
  PngOut out = {fdopen(fd, "wb"), 0};
  if (!out.f) {
    rc = tk_error(TK_EIO, "%s: open %s: %s", path, tmp, strerror(errno));
    close(fd);
  } else {
    errno = 0;
    cairo_status_t st = cairo_surface_write_to_png_stream(surface, png_write, &out);
    if (!out.err && ferror(out.f)) out.err = errno ? errno : EIO;
    if (fclose(out.f) && !out.err) out.err = errno;
    if (st != CAIRO_STATUS_SUCCESS || out.err)
      rc = tk_error(TK_EIO, "%s: write %s: %s", path, tmp,
                    out.err ? strerror(out.err) : cairo_status_to_string(st));
    else if ((rc = tk_durable_rename(tmp, path)))
      rc = tk_error_wrap(rc, "%s", path);
  }
  if (rc) unlink(tmp);
  return rc;
}

void *tk_surface_from_rgb(const uint8_t *rgb, int w, int h) {
  cairo_surface_t *img = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status(img) != CAIRO_STATUS_SUCCESS) {
    cairo_surface_destroy(img);
    return NULL;
  }
  cairo_surface_flush(img);
  uint8_t *d = cairo_image_surface_get_data(img);
  int stride = cairo_image_surface_get_stride(img);
  for (int r = 0; r < h; r++)
    for (int c = 0; c < w; c++) {
      const uint8_t *p = rgb + ((size_t)r * w + c) * 3;
      ((uint32_t *)(d + (size_t)r * stride))[c] = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
    }
  cairo_surface_mark_dirty(img);
  return img;
}

int tk_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h) {
  cairo_surface_t *s = tk_surface_from_rgb(rgb, w, h);
  if (!s) return tk_error(TK_ENOMEM, "%s: a %dx%d image", path, w, h);
  int rc = tk_png_write_surface(s, path);
  cairo_surface_destroy(s);
  return rc;
}

void tk_plot_cleanup(void) {
  cairo_debug_reset_static_data();
  FcFini();
}
