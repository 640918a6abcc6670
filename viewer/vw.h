/* viewer/vw.h -- looking at episodes (prefix vw_): one frame of a demo as an image -- the scene set
 * from the stored state, the recorded camera frames, and plots of the actions, rewards and
 * interventions with a cursor at the frame. Used by the headless export and the window; also watching
 * a policy, and the report page of a run (vw_report).
 */
#ifndef VW_H
#define VW_H

#include <stdint.h>

#include "cap.h"
#include "ds.h"
#include "tk.h"

#ifdef __cplusplus
extern "C" {
#endif

#define VW_WIDTH 1280
#define VW_HEIGHT 720

typedef struct vwEpisode vwEpisode;

/* Open demo `demo` (position in the file) for viewing: reads it, and when the file has states of a
 * built-in task, makes a simulator to show the scene (otherwise *why_no_scene says why). */
int vw_episode_open(dsFile *f, int demo, vwEpisode **out);
void vw_episode_free(vwEpisode *v);
int64_t vw_episode_length(const vwEpisode *v);
const char *vw_why_no_scene(const vwEpisode *v); /* NULL when the scene is shown */

/* Draw frame t (0..length-1) into an RGB24 buffer of VW_WIDTH x VW_HEIGHT (rows top-down, 3 bytes per
 * pixel). */
int vw_draw_frame(vwEpisode *v, int64_t t, uint8_t *rgb);
/* The same, written as a PNG. */
int vw_export_png(vwEpisode *v, int64_t t, const char *path);
/* The strip the window shows: the recorded camera frames at t (if any), then the plots (actions;
 * reward and interventions) with the cursor at t; w x h RGB rows. */
int vw_draw_plots(vwEpisode *v, int64_t t, int w, int h, uint8_t *rgb);
/* Also plot these low-dim observation keys (comma-separated; at most 8 series in all). NULL/"": none.
 * An unknown or image key is TK_ENOTFOUND with the keys the file has. */
int vw_set_plot_keys(vwEpisode *v, const char *keys);
/* Where the plots start in that strip (after the camera frames), in pixels. */
double vw_strip_plots_left(vwEpisode *v, int h);
/* Set the simulator to the stored state of frame t (TK_EINVAL without a scene). */
int vw_set_scene(vwEpisode *v, int64_t t);
capModel *vw_model(vwEpisode *v); /* NULL without a scene */
capEnv *vw_env(vwEpisode *v);
const dsDemoInfo *vw_info(const vwEpisode *v);
const double *vw_action(const vwEpisode *v, int64_t t);
/* An RGB24 cairo surface (cairo_surface_t *) of w x h as RGB rows. */
void vw_surface_rgb(void *surface, int w, int h, uint8_t *rgb);
/* The action plot (fixed [-1, 1] axis, series named dx..grip for 7 actions, else a0..): A columns of
 * cols, column i at cols + i * stride, n points at xs; a cursor at x = cursor (NaN: none). cr is a
 * cairo_t *. */
int vw_plot_actions(void *cr, double x, double y, double w, double h, const char *title, int A,
                    const double *cols, int64_t stride, const double *xs, int n, double cursor);

/* The interactive window on demo position pos (needs a display and the scene). screenshot: save the
 * last frame there when the window closes; frames > 0: close after that many frames (tests). */

int vw_window_run(dsFile *f, int pos, const char *plot_keys, const char *screenshot, int frames);
/* Watch a policy file act on a task (NULL: the policy's) in the window, episode after episode from
 * seed, seed + 1, ... (same screenshot/frames as vw_window_run). */
int vw_watch_policy(const char *policy, const char *task, uint64_t seed, const char *screenshot, int frames);

/* ---- the report page of a run (vw_report.c) ----
 * One self-contained HTML page (the plots inline as base64 data: URIs: it can be mailed or opened
 * anywhere) from the files the tools wrote into a folder: the dataset's summary (through ds.h), bc-train's
 * policy, training log and plots, bc-eval's JSON, rl-finetune's comparison (CSV and plot) and a legend.
 * A piece that is not there is a line saying so; a piece that is there but damaged is an error naming the
 * file, and then nothing is written. Every string read from a file is HTML-escaped. */
typedef struct {
  const char *dir;      /* the folder (scripts/demo.sh's OUT); the names below default into it (NULL: ".") */
  const char *demos;    /* the dataset (NULL: DIR/demos.h5) */
  const char *policy;   /* bc-train's policy (NULL: DIR/policy.h5); its PREFIX.csv, PREFIX_loss.png and
                           PREFIX_success.png beside it (PREFIX: the path without .h5) */
  const char *bc_eval;  /* bc-eval --json's output (NULL: DIR/bc_eval.json) */
  const char *finetune; /* rl-finetune's --out (NULL: DIR/ft.h5); its FT_compare.csv and FT_compare.png
                           (--compare), else FT.csv, and FT_eval.json (bc-eval FT.h5 --json's output) */
  const char *out;      /* the page (NULL: DIR/report.html); through the output rule (ds_output_check) */
  double target;        /* success rate that counts as arrived: rl-finetune's --target (0.95) */
  int force;            /* replace an existing output of another kind */
} vwReportOpts;
typedef struct {
  char out[4200]; /* the page written */
  int missing;    /* pieces that were not there (each a line on the page) */
} vwReportResult;
void vw_report_default(vwReportOpts *o);
int vw_report(const vwReportOpts *o, vwReportResult *res);

#ifdef __cplusplus
}
#endif
#endif
