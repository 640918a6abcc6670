/* viewer/vw_frame.c -- one frame of an episode as an image: scene, recorded camera frames, plots. */
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tk_plot.h"
#include "vw.h"

#define SCENE_W 640
#define SCENE_H 480

struct vwEpisode {
  dsFile *f;
  int demo;
  dsDemoInfo info;
  int64_t N; /* steps */
  int S, A;
  capModel *model;
  capEnv *env;
  char why[256];    /* why there is no scene ("" when there is one) */
  double *actions;  /* N x A */
  double *states;   /* N x S, NULL when the file has none */
  int has_interv;   /* the file stores interventions */
  double *x;        /* 0..N-1 */
  double *act_cols; /* A columns of N */
  double *reward;   /* N */
  double *interv;   /* N, NaN when absent */
  uint8_t *scene;   /* SCENE_W x SCENE_H x 3 */
  uint8_t *frame;   /* one recorded camera frame (the largest image key), read when drawn */
  /* chosen observation keys, plotted too (vw_set_plot_keys) */
  int nobs;
  char obs_names[8][DS_NAME_MAX + 8];
  double *obs_cols; /* nobs columns of N */
};

/* An image key the frames show (RGB). */
static int shown_image(const dsKeySpec *ks) { return ds_key_is_image(ks) && ks->shape[2] == 3; }

/* Read what every frame needs, once: actions, rewards, interventions and states (small arrays of the
 * whole episode: the plots and the scene). Camera frames are read one at a time when drawn, and
 * next_obs never: one exported frame reads one frame's pixels, not the whole episode's. */
int vw_episode_open(dsFile *f, int demo, vwEpisode **out) {
  *out = NULL;
  if (demo < 0 || demo >= ds_num_demos(f))
    return tk_error(TK_ERANGE, "%s: no demo at position %d (%d demos)", ds_path(f), demo, ds_num_demos(f));
  vwEpisode *v = calloc(1, sizeof *v);
  if (!v) return tk_error(TK_ENOMEM, "out of memory");
  v->f = f;
  v->demo = demo;
  v->info = *ds_demo(f, demo);
  const dsSchema *sc = ds_schema(f);
  v->S = sc->state_dim;
  v->A = sc->action_dim;
  const int64_t N = v->N = v->info.num_samples;
  size_t frame_bytes = 0;
  for (int k = 0; k < sc->nkeys; k++)
    if (shown_image(&sc->keys[k])) frame_bytes = TK_MAX(frame_bytes, (size_t)ds_key_elems(&sc->keys[k]));
  v->x = malloc(sizeof(double) * (size_t)(N * (3 + 2 * v->A) + 1));
  v->scene = malloc((size_t)SCENE_W * SCENE_H * 3);
  v->frame = malloc(frame_bytes + 1);
  v->states = v->info.has_states ? malloc(sizeof(double) * (size_t)(N * v->S + 1)) : NULL;
  uint8_t *flags = malloc((size_t)N + 1);
  int rc = 0;
  if (!v->x || !v->scene || !v->frame || !flags || (v->info.has_states && !v->states))
    rc = tk_error(TK_ENOMEM, "out of memory");
  if (!rc) {
    v->act_cols = v->x + N;
    v->reward = v->act_cols + N * v->A;
    v->interv = v->reward + N;
    v->actions = v->interv + N;
    rc = ds_read_rows(f, demo, "actions", 0, N, DS_F64, v->actions, N * v->A, NULL);
  }
  if (!rc && v->info.has_rewards) rc = ds_read_rows(f, demo, "rewards", 0, N, DS_F64, v->reward, N, NULL);
  if (!rc && v->info.has_states)
    rc = ds_read_rows(f, demo, "states", 0, N, DS_F64, v->states, N * v->S, NULL);
  v->has_interv = v->info.has_interventions;
  if (!rc && v->has_interv) rc = ds_read_rows(f, demo, "interventions", 0, N, DS_U8, flags, N, NULL);
  if (rc) {
    free(flags);
    vw_episode_free(v);
    return rc;
  }
  for (int64_t t = 0; t < N; t++) {
    v->x[t] = (double)t;
    for (int i = 0; i < v->A; i++)
      v->act_cols[i * N + t] = v->actions[t * v->A + i];
    if (!v->info.has_rewards) v->reward[t] = 0;
    v->interv[t] = v->has_interv ? flags[t] : NAN;
  }
  free(flags);
  /* the scene: stored states of one of our tasks */
  const char *task = ds_env_name(f);
  if (!v->states && ds_schema_find(ds_schema(f), "robot0_joint_pos") >= 0)
    snprintf(v->why, sizeof v->why,
             "a real robot's recording (no simulator states): joint positions plotted");
  else if (!v->states)
    snprintf(v->why, sizeof v->why, "no states stored (a file from another tool?): plots and frames only");
  else {
    capOpts co;
    cap_opts_default(&co);
    co.task = task;
    if (v->info.control_hz > 0) co.control_hz = v->info.control_hz;
    if (!task || cap_model_load(&co, &v->model))
      snprintf(v->why, sizeof v->why, "task '%s' is not a built-in one: no scene to set the states in",
               task ? task : "");
    else if (cap_spec(v->model)->state_dim != v->S)
      snprintf(v->why, sizeof v->why, "states of %d values, task '%s' has %d: scene not shown", v->S, task,
               cap_spec(v->model)->state_dim);
    else if ((rc = cap_env_make(v->model, &v->env)))
      snprintf(v->why, sizeof v->why, "no simulator: %s", tk_errmsg());
  }
  *out = v;
  return 0;
}

void vw_episode_free(vwEpisode *v) {
  if (!v) return;
  free(v->obs_cols);
  cap_env_free(v->env);
  cap_model_free(v->model);
  free(v->states);
  free(v->x);
  free(v->scene);
  free(v->frame);
  free(v);
}

int64_t vw_episode_length(const vwEpisode *v) { return v->N; }
const char *vw_why_no_scene(const vwEpisode *v) { return v->why[0] ? v->why : NULL; }

static void text(cairo_t *cr, double x, double y, double size, const char *s) {
  cairo_set_font_size(cr, size);
  cairo_move_to(cr, x, y);
  cairo_show_text(cr, s);
}

/* Paste RGB rows (w x h) into the surface at (x, y), scaled to (dw, dh). */
static void paste_rgb(cairo_t *cr, const uint8_t *rgb, int w, int h, double x, double y, double dw,
                      double dh) {
  cairo_surface_t *img = tk_surface_from_rgb(rgb, w, h);
  if (!img) return;
  cairo_save(cr);
  cairo_translate(cr, x, y);
  cairo_scale(cr, dw / w, dh / h);
  cairo_set_source_surface(cr, img, 0, 0);
  cairo_pattern_set_filter(cairo_get_source(cr), CAIRO_FILTER_NEAREST);
  cairo_paint(cr);
  cairo_restore(cr);
  cairo_surface_destroy(img);
}

/* Up to two recorded camera frames at frame t, in boxes of `box` pixels side by side from (x, y),
 * each labelled with its key; returns how many were drawn, or a negative error. Reads just frame t
 * of each key. */
static int draw_frames(vwEpisode *v, int64_t t, cairo_t *cr, double x, double y, double box, double grey) {
  const dsSchema *sc = ds_schema(v->f);
  int nimg = 0;
  for (int k = 0; k < sc->nkeys && nimg < 2; k++) {
    const dsKeySpec *ks = &sc->keys[k];
    if (!shown_image(ks)) continue;
    int h = (int)ks->shape[0], w = (int)ks->shape[1];
    char name[DS_NAME_MAX + 8];
    snprintf(name, sizeof name, "obs/%s", ks->name);
    int rc = ds_read_rows(v->f, v->demo, name, t, 1, DS_U8, v->frame, ds_key_elems(ks), NULL);
    if (rc) return rc;
    double bx = x + nimg * (box + 10);
    double sc_ = fmin(box / w, box / h);
    paste_rgb(cr, v->frame, w, h, bx, y, w * sc_, h * sc_);
    cairo_set_source_rgb(cr, grey, grey, grey);
    text(cr, bx, y - 6, 12, ks->name);
    nimg++;
  }
  return nimg;
}

int vw_plot_actions(void *cr, double x, double y, double w, double h, const char *title, int A,
                    const double *cols, int64_t stride, const double *xs, int n, double cursor) {
  static const char *const names7[] = {"dx", "dy", "dz", "drx", "dry", "drz", "grip"};
  char names[16][8];
  tkSeries s[16];
  int na = A < 16 ? A : 16;
  for (int i = 0; i < na; i++) {
    if (A == 7)
      snprintf(names[i], sizeof names[i], "%s", names7[i]);
    else
      snprintf(names[i], sizeof names[i], "a%d", i);
    s[i] = (tkSeries){names[i], xs, cols + (size_t)i * (size_t)stride, n};
  }
  tkPlotOpts o = {.title = title, .xlabel = "step", .ymin = -1.05, .ymax = 1.05, .fixed_y = 1};
  return tk_plot_draw(cr, x, y, w, h, &o, s, na, cursor);
}

/* The plots with a cursor at t, into the rectangle (x, y, w, h) of cr. */
static int draw_plots(vwEpisode *v, int64_t t, cairo_t *cr, double x, double y, double w, double h) {
  const int64_t N = v->N;
  int rc = 0;
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_rectangle(cr, x, y, w, h);
  cairo_fill(cr);
  if (!rc)
    rc = vw_plot_actions(cr, x, y, v->nobs > 0 ? w / 3 : w / 2, h, "actions", v->A, v->act_cols, N, v->x,
                         (int)N, (double)t);
  if (v->nobs > 0) { /* actions | chosen observations | reward and interventions */
    double third = w / 3;
    tkSeries os[8];
    for (int i = 0; i < v->nobs; i++)
      os[i] = (tkSeries){v->obs_names[i], v->x, v->obs_cols + (size_t)i * N, (int)N};
    tkPlotOpts oo = {.title = "observations", .xlabel = "step"};
    if (!rc) rc = tk_plot_draw(cr, x + third, y, third, h, &oo, os, v->nobs, (double)t);
    tkSeries rs3[2] = {{"reward", v->x, v->reward, (int)N}, {"intervention", v->x, v->interv, (int)N}};
    tkPlotOpts ro3 = {.title = "reward and interventions", .xlabel = "step"};
    if (!rc) rc = tk_plot_draw(cr, x + 2 * third, y, third, h, &ro3, rs3, v->has_interv ? 2 : 1, (double)t);
    return rc;
  }
  tkSeries rs[2] = {{"reward", v->x, v->reward, (int)N}, {"intervention", v->x, v->interv, (int)N}};
  tkPlotOpts ro = {.title = "reward and interventions", .xlabel = "step"};
  if (!rc) rc = tk_plot_draw(cr, x + w / 2, y, w / 2, h, &ro, rs, v->has_interv ? 2 : 1, (double)t);
  return rc;
}

static int draw(vwEpisode *v, int64_t t, cairo_surface_t *s) {
  const int64_t N = v->N;
  if (t < 0 || t >= N)
    return tk_error(TK_ERANGE, "%s: %s has %lld steps; frame %lld is outside 0..%lld", ds_path(v->f),
                    v->info.name, (long long)N, (long long)t, (long long)(N - 1));
  cairo_t *cr = cairo_create(s);
  cairo_set_source_rgb(cr, 0.12, 0.12, 0.14);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  /* the scene */
  int rc = 0;
  if (v->env) {
    capObs o;
    if (!(rc = cap_env_set_state(v->env, v->states + t * v->S, &o)) &&
        !(rc = cap_env_render(v->env, "agentview", SCENE_W, SCENE_H, v->scene)))
      paste_rgb(cr, v->scene, SCENE_W, SCENE_H, 0, 0, SCENE_W, SCENE_H);
  } else {
    cairo_set_source_rgb(cr, 0.85, 0.75, 0.4);
    text(cr, 20, SCENE_H / 2.0, 15, "scene not shown:");
    text(cr, 20, SCENE_H / 2.0 + 22, 13, v->why);
  }
  /* what is shown, over the scene */
  char head[256];
  snprintf(head, sizeof head, "%s  step %lld / %lld  %s", v->info.name, (long long)t, (long long)N,
           v->info.success == 1   ? "success"
           : v->info.success == 0 ? "failure"
                                  : "");
  cairo_set_source_rgba(cr, 0, 0, 0, 0.55);
  cairo_rectangle(cr, 0, 0, SCENE_W, 28);
  cairo_fill(cr);
  cairo_set_source_rgb(cr, 1, 1, 1);
  text(cr, 10, 19, 15, head);
  /* recorded camera frames, right of the scene */
  int nimg = rc ? 0 : draw_frames(v, t, cr, SCENE_W + 10, 40, 300, 0.9);
  if (nimg < 0) rc = nimg;
  if (!rc && !nimg) {
    cairo_set_source_rgb(cr, 0.6, 0.6, 0.6);
    text(cr, SCENE_W + 20, 60, 13, "no camera frames recorded");
  }
  if (!rc) rc = draw_plots(v, t, cr, 0, SCENE_H, VW_WIDTH, VW_HEIGHT - SCENE_H);
  cairo_destroy(cr);
  cairo_surface_flush(s);
  return rc;
}

int vw_draw_frame(vwEpisode *v, int64_t t, uint8_t *rgb) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, VW_WIDTH, VW_HEIGHT);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return tk_error(TK_ENOMEM, "cairo surface");
  int rc = draw(v, t, s);
  if (!rc) vw_surface_rgb(s, VW_WIDTH, VW_HEIGHT, rgb);
  cairo_surface_destroy(s);
  return rc;
}

int vw_export_png(vwEpisode *v, int64_t t, const char *path) {
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, VW_WIDTH, VW_HEIGHT);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return tk_error(TK_ENOMEM, "cairo surface");
  int rc = draw(v, t, s);
  if (!rc) rc = tk_png_write_surface(s, path);
  cairo_surface_destroy(s);
  return rc;
}

void vw_surface_rgb(void *surface, int w, int h, uint8_t *rgb) {
  cairo_surface_t *s = surface;
  const uint8_t *d = cairo_image_surface_get_data(s);
  int stride = cairo_image_surface_get_stride(s);
  for (int r = 0; r < h; r++)
    for (int c = 0; c < w; c++) {
      uint32_t p = ((const uint32_t *)(d + (size_t)r * stride))[c];
      uint8_t *o = rgb + ((size_t)r * w + c) * 3;
      o[0] = (uint8_t)(p >> 16);
      o[1] = (uint8_t)(p >> 8);
      o[2] = (uint8_t)p;
    }
}

int vw_draw_plots(vwEpisode *v, int64_t t, int w, int h, uint8_t *rgb) {
  if (t < 0 || t >= v->N) return tk_error(TK_ERANGE, "frame %lld outside the episode", (long long)t);
  cairo_surface_t *s = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status(s) != CAIRO_STATUS_SUCCESS) return tk_error(TK_ENOMEM, "cairo surface");
  cairo_t *cr = cairo_create(s);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);
  /* the recorded camera frames first (when there are any), then the plots */
  double box = h - 30;
  int n = draw_frames(v, t, cr, 10, 22, box, 0.2), rc = n < 0 ? n : 0;
  double left = n > 0 ? 10 + n * (box + 10) : 0;
  if (!rc) rc = draw_plots(v, t, cr, left, 0, w - left, h);
  cairo_destroy(cr);
  cairo_surface_flush(s);
  if (!rc) vw_surface_rgb(s, w, h, rgb);
  cairo_surface_destroy(s);
  return rc;
}

int vw_set_scene(vwEpisode *v, int64_t t) {
  if (!v->env) return tk_error(TK_EINVAL, "%s", v->why);
  if (t < 0 || t >= v->N) return tk_error(TK_ERANGE, "frame %lld outside the episode", (long long)t);
  capObs o;
  return cap_env_set_state(v->env, v->states + t * v->S, &o);
}

capModel *vw_model(vwEpisode *v) { return v->model; }
capEnv *vw_env(vwEpisode *v) { return v->env; }
const dsDemoInfo *vw_info(const vwEpisode *v) { return &v->info; }
const double *vw_action(const vwEpisode *v, int64_t t) { return v->actions + t * v->A; }

double vw_strip_plots_left(vwEpisode *v, int h) {
  const dsSchema *sc = ds_schema(v->f);
  int n = 0;
  for (int k = 0; k < sc->nkeys && n < 2; k++)
    n += shown_image(&sc->keys[k]);
  return n ? 10 + n * (h - 30 + 10) : 0;
}

int vw_set_plot_keys(vwEpisode *v, const char *keys) {
  free(v->obs_cols);
  v->obs_cols = NULL;
  v->nobs = 0;
  const dsSchema *sc = ds_schema(v->f);
  /* a robot's recording has no scene: its joint positions are what there is to see */
  if ((!keys || !keys[0]) && !v->states && ds_schema_find(sc, "robot0_joint_pos") >= 0)
    keys = "robot0_joint_pos";
  if (!keys || !keys[0]) return 0;
  const int64_t N = v->N;
  char buf[1024];
  snprintf(buf, sizeof buf, "%s", keys);
  int k[8], nk = 0, nseries = 0;
  for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    int j = ds_schema_find(sc, tok);
    if (j < 0 || ds_key_is_image(&sc->keys[j]) || sc->keys[j].dtype == DS_U8) {
      char have[1024] = "";
      size_t off = 0;
      for (int i = 0; i < sc->nkeys && off < sizeof have; i++)
        if (!ds_key_is_image(&sc->keys[i]))
          off += (size_t)snprintf(have + off, sizeof have - off, "%s%s", off ? ", " : "", sc->keys[i].name);
      return tk_error(TK_ENOTFOUND, "%s: '%s' is not a low-dim observation key (it has: %s)", ds_path(v->f),
                      tok, have);
    }
    if (nk < 8) k[nk++] = j;
  }
  for (int i = 0; i < nk; i++)
    nseries += (int)ds_key_elems(&sc->keys[k[i]]);
  nseries = nseries > 8 ? 8 : nseries;
  v->obs_cols = malloc(sizeof(double) * (size_t)(nseries * N + 1));
  if (!v->obs_cols) return tk_error(TK_ENOMEM, "out of memory");
  int rc = 0;
  for (int i = 0; i < nk && v->nobs < nseries && !rc; i++) {
    const dsKeySpec *ks = &sc->keys[k[i]];
    int64_t el = ds_key_elems(ks);
    /* this key only, as float64 (float32 values convert exactly) */
    double *vals = malloc(sizeof(double) * (size_t)(N * el + 1));
    char name[DS_NAME_MAX + 8];
    snprintf(name, sizeof name, "obs/%s", ks->name);
    if (!vals)
      rc = tk_error(TK_ENOMEM, "out of memory");
    else
      rc = ds_read_rows(v->f, v->demo, name, 0, N, DS_F64, vals, N * el, NULL);
    for (int64_t c = 0; c < el && v->nobs < nseries && !rc; c++) {
      snprintf(v->obs_names[v->nobs], sizeof v->obs_names[v->nobs], el > 1 ? "%s[%lld]" : "%s", ks->name,
               (long long)c);
      double *col = v->obs_cols + (size_t)v->nobs * N;
      for (int64_t t = 0; t < N; t++)
        col[t] = vals[t * el + c];
      v->nobs++;
    }
    free(vals);
  }
  if (rc) {
    free(v->obs_cols);
    v->obs_cols = NULL;
    v->nobs = 0;
  }
  return rc;
}
