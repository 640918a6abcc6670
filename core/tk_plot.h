/* core/tk_plot.h -- line plots on cairo, to a PNG file or into a cairo_t (prefix tk_plot_).
 *
 * Errors follow tk.h: 0 or a negative TK_E* code with the message in tk_errmsg().
 * Thread-safe: no global mutable state (each call uses its own surface / the caller's cairo_t).
 */
#ifndef TK_PLOT_H
#define TK_PLOT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One line. x may be NULL (then x = 0..n-1). Points with a non-finite x or y are gaps, and
 * so are y <= 0 on a log axis; a point with no drawable neighbour is drawn as a dot.
 * name NULL or "" keeps the series out of the legend. */
typedef struct {
  const char *name;
  const double *x;
  const double *y;
  int n;
} tkSeries;

typedef struct {
  const char *title, *xlabel, *ylabel; /* NULL or "" -> none */
  int width, height;                   /* tk_plot_png only; 0 -> 800x500 */
  double ymin, ymax;                   /* the y range when fixed_y (ymin < ymax, > 0 on log_y) */
  int fixed_y;
  int log_y; /* log10 y axis with decade ticks */
} tkPlotOpts;

#define TK_PLOT_NCOLORS 8
/* Colour of series i as 0xRRGGBB (a fixed palette of TK_PLOT_NCOLORS, cycled). */
uint32_t tk_plot_color(int i);

/* Render at o->width x o->height to path (written to "<path>.tmp", then renamed).
 * o may be NULL (defaults). */
int tk_plot_png(const char *path, const tkPlotOpts *o, const tkSeries *s, int nseries);

/* Draw into the rectangle (x, y, w, h) of the cairo_t *cr (user units); o->width and
 * o->height are ignored. cursor_x (NaN: none) draws a vertical line at that x value.
 * The cairo state is saved and restored. */
int tk_plot_draw(void *cr, double x, double y, double w, double h, const tkPlotOpts *o, const tkSeries *s,
                 int nseries, double cursor_x);

/* Images (the viewer's frames, window screenshots): RGB rows (w x h, top-down) as a new cairo RGB24
 * surface (a cairo_surface_t *; NULL when cairo cannot make one) ... */
void *tk_surface_from_rgb(const uint8_t *rgb, int w, int h);
/* ... a cairo surface written as a PNG file (to "<path>.tmp", then renamed: never half a file) ... */
int tk_png_write_surface(void *surface, const char *path);
/* ... and RGB rows straight to a PNG file, the same way. */
int tk_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h);

/* Free cairo's and fontconfig's process-wide font caches, which leak checkers report as
 * leaks. Only at exit (or at the end of a test), when no thread uses cairo any more. */
void tk_plot_cleanup(void);

#ifdef __cplusplus
}
#endif
#endif
