/* capture/cap_window.c -- the window of the teleop console and the viewer (declared in cap.h):
 * SDL2 + OpenGL, the MuJoCo scene with a mouse-driven camera, and the HUD drawn with MuJoCo's
 * 2D calls (mjr_overlay, mjr_label, mjr_rectangle): no font library.
 *
 * One GL API for the window and the offscreen renderer. The environment renders camera
 * observations offscreen (capture/cap_render.c: EGL on Mesa's surfaceless platform, OSMesa
 * as fallback) in the same process, often on the same thread. MuJoCo 2.2.2 keeps one
 * process-wide table of GL entry points, reloaded by every mjr_makeContext from the first
 * of eglGetProcAddress / OSMesaGetProcAddress / glXGetProcAddressARB among the global
 * symbols. So:
 *   - The window's context comes from EGL too: SDL_HINT_VIDEO_X11_FORCE_EGL (X11 through
 *     EGL's X11 platform; Wayland is EGL anyway). libEGL is then promoted to RTLD_GLOBAL,
 *     so MuJoCo's loader deterministically takes eglGetProcAddress (glvnd's libGLdispatch
 *     stubs, which call into whatever context is current on the calling thread: the
 *     window's or a surfaceless one). SDL itself opens libEGL RTLD_LOCAL, and without the
 *     promotion MuJoCo would fall back to scanning loaded libraries (libGL.so.1, which SDL
 *     also loads, may come first).
 *   - The default, GLX, also works with glvnd (SDL opens libGL RTLD_GLOBAL, and glvnd's GLX
 *     and EGL share the dispatch layer), but glvnd refuses eglMakeCurrent while a GLX
 *     context is current on the thread (EGL_BAD_ACCESS, measured) -- hence the second rule:
 *   - Every call makes the window's context current on entry and releases it on exit, as
 *     cap_render does, so the two never meet on a thread. (SDL_VIDEO_X11_FORCE_EGL=0 in the
 *     environment overrides our hint and gives GLX; it works under these rules.)
 *   - OSMesa cannot show a window, and its GL entry points do not reach an EGL/GLX context:
 *     if the offscreen renderer already chose OSMesa (DK_GL=osmesa), opening a window is
 *     refused; once a window is open, libEGL (or libGL) is global and cap_render refuses
 *     OSMesa with its own message.
 * On a desktop with a GPU driver (NVIDIA, AMD, Intel; all glvnd vendors): the window runs
 * on the GPU through EGL-on-X11 or Wayland. The offscreen renderer asks for Mesa's
 * surfaceless platform, which glvnd serves from libEGL_mesa (llvmpipe, CPU) when Mesa is
 * installed -- a second vendor in the same process, which glvnd supports; the window still
 * renders on the GPU.
 *
 * Cost. Shadows, reflections and multisampling are off (llvmpipe: a 1280x720 frame with
 * them is several times slower); the window never waits for vsync (swap interval 0), so a
 * draw never holds the control loop beyond its own rendering time.
 */
#include <SDL2/SDL.h>
#include <mujoco/mujoco.h>

#include "cap.h"

#include <dlfcn.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <SDL2/SDL_opengl.h>

#include "tk.h"
#include "tk_plot.h"

enum { API_NONE = 0, API_EGL, API_GLX };

#define COL_MAX 490 /* characters per overlay column (MuJoCo draws at most mjMAXOVERLAY-1) */
#define NAME_MAX 12

typedef void(APIENTRY *PFN_PixelStorei)(GLenum, GLint);
typedef const GLubyte *(APIENTRY *PFN_GetString)(GLenum);
typedef void *(*PFN_eglGetCurrentContext)(void);

/* The HUD as last drawn, owned by the window (so screenshots redraw it exactly). */
typedef struct {
  int on;
  char state[96];
  int tone;
  char stats_l[COL_MAX + 1], stats_r[COL_MAX + 1];
  char legend_l[COL_MAX + 1], legend_r[COL_MAX + 1];
  int nbars;
  double bars[CAP_HUD_MAX_BARS];
  char names[CAP_HUD_MAX_BARS][NAME_MAX];
  char message[256];
  int message_tone;
} hudFrame;

struct capWindow {
  SDL_Window *win;
  SDL_GLContext ctx;
  Uint32 win_id;
  SDL_threadID thread;
  int api;
  const mjModel *m;
  mjvScene scn;
  mjvCamera cam;
  mjvOption opt;
  mjvPerturb pert;
  mjrContext con;
  int scn_made, con_made, drawn;
  int drag; /* SDL_BUTTON_LEFT / SDL_BUTTON_RIGHT while dragging, else 0 */
  PFN_PixelStorei PixelStorei;
  hudFrame hud;
  uint8_t *strip; /* capHud.strip_rgb as last drawn, rows bottom-up (GL's order) */
  int strip_w, strip_h;
  size_t strip_cap;
};

/* ---- GL context: current on entry, released on exit ---- */
static int ctx_on(capWindow *w) {
  if (SDL_ThreadID() != w->thread)
    return tk_error(TK_EINVAL, "the teleop window is used from another thread than the one that opened it");
  if (SDL_GL_MakeCurrent(w->win, w->ctx))
    return tk_error(TK_EIO, "cannot make the window's GL context current: %s", SDL_GetError());
  return 0;
}

static void ctx_off(capWindow *w) { SDL_GL_MakeCurrent(w->win, NULL); }

/* Which API SDL used: an EGL context current on this thread means EGL. */
static int detect_api(void) {
  void *lib = dlopen("libEGL.so.1", RTLD_NOW | RTLD_NOLOAD | RTLD_LOCAL);
  if (!lib) return API_GLX;
  PFN_eglGetCurrentContext cur = (PFN_eglGetCurrentContext)dlsym(lib, "eglGetCurrentContext");
  int egl = cur && cur() != NULL;
  dlclose(lib);
  return egl ? API_EGL : API_GLX;
}

/* See the top of the file: make MuJoCo's GL loader take eglGetProcAddress. The reference is
 * kept until exit (as cap_render keeps its own): SDL unloads libEGL when its last GL window
 * closes, and MuJoCo's process-wide GL entry points lead into glvnd's dispatch library,
 * which libEGL holds. */
static int egl_promote(void) {
  static void *held; /* main thread only (as every SDL window call) */
  if (held) return 0;
  held = dlopen("libEGL.so.1", RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
  if (!held) return tk_error(TK_EIO, "cannot make libEGL.so.1 global: %s", dlerror());
  return 0;
}

static int check_gl(capWindow *w) {
  PFN_GetString get = (PFN_GetString)SDL_GL_GetProcAddress("glGetString");
  w->PixelStorei = (PFN_PixelStorei)SDL_GL_GetProcAddress("glPixelStorei");
  const char *ver = get ? (const char *)get(GL_VERSION) : NULL;
  if (!ver || !w->PixelStorei) return tk_error(TK_EIO, "the window's GL context answers no GL_VERSION");
  int major = 0, minor = 0;
  if (sscanf(ver, "%d.%d", &major, &minor) != 2 || major * 10 + minor < 15)
    return tk_error(TK_EVERSION, "MuJoCo needs OpenGL 1.5 or later, the window has \"%s\"", ver);
  const char *ren = (const char *)get(GL_RENDERER);
  tk_debug("teleop window: %s, GL %s, %s", w->api == API_EGL ? "EGL" : "GLX", ver, ren ? ren : "?");
  return 0;
}

int cap_window_open(const mjModel *m, int width, int height, const char *title, capWindow **out) {
  if (!out) return tk_error(TK_EINVAL, "cap_window_open: no output pointer");
  *out = NULL;
  if (!m) return tk_error(TK_EINVAL, "cap_window_open: no model");
  if (width < 64 || height < 64 || width > 16384 || height > 16384)
    return tk_error(TK_ERANGE, "window size %dx%d: expected 64..16384 pixels each way", width, height);
  if (!SDL_WasInit(SDL_INIT_VIDEO))
    return tk_error(TK_EINVAL,
                    "cap_window_open: SDL video is not initialized (SDL_Init(SDL_INIT_VIDEO) first)");
  if (dlsym(RTLD_DEFAULT, "OSMesaGetProcAddress"))
    return tk_error(TK_EINVAL, "the offscreen renderer uses OSMesa (DK_GL=osmesa?), whose GL cannot drive a "
                               "window in the same process: unset DK_GL to render offscreen through EGL");

  capWindow *w = calloc(1, sizeof *w);
  if (!w) return tk_error(TK_ENOMEM, "out of memory for the teleop window");
  w->m = m;
  w->thread = SDL_ThreadID();
  mjv_defaultScene(&w->scn);
  mjv_defaultOption(&w->opt);
  mjv_defaultPerturb(&w->pert);
  mjr_defaultContext(&w->con);
  mjv_defaultFreeCamera(m, &w->cam);

  /* Takes effect when SDL loads its GL library (the first GL window); an environment
   * variable SDL_VIDEO_X11_FORCE_EGL wins over it. */
  SDL_SetHint(SDL_HINT_VIDEO_X11_FORCE_EGL, "1");
  SDL_GL_SetAttribute(SDL_GL_RED_SIZE, 8);
  SDL_GL_SetAttribute(SDL_GL_GREEN_SIZE, 8);
  SDL_GL_SetAttribute(SDL_GL_BLUE_SIZE, 8);
  SDL_GL_SetAttribute(SDL_GL_DEPTH_SIZE, 24);
  SDL_GL_SetAttribute(SDL_GL_STENCIL_SIZE, 8);
  SDL_GL_SetAttribute(SDL_GL_DOUBLEBUFFER, 1);
  SDL_GL_SetAttribute(SDL_GL_MULTISAMPLEBUFFERS, 0);
  SDL_GL_SetAttribute(SDL_GL_MULTISAMPLESAMPLES, 0);
  SDL_GL_SetAttribute(SDL_GL_CONTEXT_PROFILE_MASK, 0); /* compatibility: MuJoCo 2.2 is fixed-function */
  SDL_GL_SetAttribute(SDL_GL_CONTEXT_MAJOR_VERSION, 2);
  SDL_GL_SetAttribute(SDL_GL_CONTEXT_MINOR_VERSION, 1);

  int rc = 0;
  w->win =
      SDL_CreateWindow(title ? title : "demokit teleop", SDL_WINDOWPOS_CENTERED, SDL_WINDOWPOS_CENTERED,
                       width, height, SDL_WINDOW_OPENGL | SDL_WINDOW_RESIZABLE | SDL_WINDOW_ALLOW_HIGHDPI);
  if (!w->win) {
    rc = tk_error(TK_EIO, "cannot open a %dx%d OpenGL window: %s", width, height, SDL_GetError());
    goto fail;
  }
  w->win_id = SDL_GetWindowID(w->win);
  w->ctx = SDL_GL_CreateContext(w->win); /* and makes it current */
  if (!w->ctx) {
    rc = tk_error(TK_EIO, "cannot create the window's OpenGL context: %s", SDL_GetError());
    goto fail;
  }
  w->api = detect_api();
  if (w->api == API_EGL && (rc = egl_promote())) goto fail;
  if ((rc = check_gl(w))) goto fail;
  SDL_GL_SetSwapInterval(0);

  /* the scene: the model's geoms plus room for decorations (mjv_updateScene drops extras) */
  mjv_makeScene(m, &w->scn, TK_MAX(1000, 2 * m->ngeom + 100));
  w->scn_made = 1;
  w->scn.flags[mjRND_SHADOW] = 0;
  w->scn.flags[mjRND_REFLECTION] = 0;

  int dw = 0, dh = 0;
  SDL_GL_GetDrawableSize(w->win, &dw, &dh);
  int fontscale = dh < 600 ? mjFONTSCALE_100 : dh < 1000 ? mjFONTSCALE_150 : mjFONTSCALE_200;
  /* shallow copy: mjr_makeContext reads these only from the model; the window does not use
   * MuJoCo's offscreen buffer, so keep it tiny, and no shadow map */
  mjModel *mc = malloc(sizeof *mc);
  if (!mc) {
    rc = tk_error(TK_ENOMEM, "out of memory for the teleop window");
    goto fail;
  }
  *mc = *m;
  mc->vis.global.offwidth = 64;
  mc->vis.global.offheight = 64;
  mc->vis.quality.offsamples = 0;
  mc->vis.quality.shadowsize = 0;
  mjr_makeContext(mc, &w->con, fontscale);
  free(mc);
  w->con_made = 1;
  if (!w->con.windowAvailable) {
    rc = tk_error(TK_EIO, "MuJoCo sees no window framebuffer in the window's GL context");
    goto fail;
  }
  mjr_setBuffer(mjFB_WINDOW, &w->con);
  ctx_off(w);
  *out = w;
  return 0;

fail:;
  char msg[TK_ERRMSG_MAX];
  snprintf(msg, sizeof msg, "%s", tk_errmsg());
  cap_window_close(w);
  return tk_error(rc, "%s", msg);
}

void cap_window_close(capWindow *w) {
  if (!w) return;
  if (w->ctx && w->con_made && SDL_GL_MakeCurrent(w->win, w->ctx) == 0) {
    mjr_freeContext(&w->con); /* GL objects: needs the context */
    ctx_off(w);
  }
  if (w->ctx) SDL_GL_DeleteContext(w->ctx);
  if (w->win) SDL_DestroyWindow(w->win);
  if (w->scn_made) mjv_freeScene(&w->scn);
  free(w->strip);
  free(w);
}

SDL_Window *cap_window_sdl(capWindow *w) { return w ? w->win : NULL; }

const char *cap_window_gl_api(const capWindow *w) { return !w ? "none" : w->api == API_EGL ? "egl" : "glx"; }

void cap_window_size(const capWindow *w, int *width, int *height) {
  int dw = 0, dh = 0;
  if (w) SDL_GL_GetDrawableSize(w->win, &dw, &dh);
  if (width) *width = dw;
  if (height) *height = dh;
}

int cap_window_camera(capWindow *w, const char *name) {
  if (!w) return tk_error(TK_EINVAL, "cap_window_camera: no window");
  if (!name) {
    w->cam.type = mjCAMERA_FREE;
    return 0;
  }
  int id = mj_name2id(w->m, mjOBJ_CAMERA, name);
  if (id < 0) return tk_error(TK_ENOTFOUND, "no camera \"%s\" in the model", name);
  w->cam.type = mjCAMERA_FIXED;
  w->cam.fixedcamid = id;
  return 0;
}

/* A drag on a fixed camera: continue with the free camera from the same view. */
static void free_from_view(capWindow *w) {
  if (w->cam.type == mjCAMERA_FREE) return;
  w->cam.type = mjCAMERA_FREE;
  if (!w->drawn) return;
  const mjvGLCamera *c = &w->scn.camera[0];
  double f[3] = {c->forward[0], c->forward[1], c->forward[2]};
  double n = sqrt(f[0] * f[0] + f[1] * f[1] + f[2] * f[2]);
  if (!(n > 0)) return;
  for (int i = 0; i < 3; i++)
    f[i] /= n;
  /* look at the point along the view that is closest to the model's centre */
  double dist = 0;
  for (int i = 0; i < 3; i++)
    dist += (w->m->stat.center[i] - c->pos[i]) * f[i];
  if (dist < 0.1 * w->m->stat.extent) dist = w->m->stat.extent;
  for (int i = 0; i < 3; i++)
    w->cam.lookat[i] = c->pos[i] + dist * f[i];
  w->cam.distance = dist;
  w->cam.azimuth = atan2(f[1], f[0]) * 180 / mjPI;
  w->cam.elevation = asin(TK_MAX(-1.0, TK_MIN(1.0, f[2]))) * 180 / mjPI;
}

int cap_window_events(capWindow *w, const SDL_Event *ev) {
  if (!w || !ev) return 0;
  int ww = 1, wh = 1;
  switch (ev->type) {
  case SDL_QUIT: return 1;
  case SDL_WINDOWEVENT:
    if (ev->window.windowID != w->win_id) return 0;
    if (ev->window.event == SDL_WINDOWEVENT_CLOSE) return 1;
    if (ev->window.event == SDL_WINDOWEVENT_FOCUS_LOST) w->drag = 0;
    return 0;
  case SDL_MOUSEBUTTONDOWN:
    if (ev->button.windowID != w->win_id) return 0;
    if (ev->button.button == SDL_BUTTON_LEFT || ev->button.button == SDL_BUTTON_RIGHT) {
      w->drag = ev->button.button;
      free_from_view(w);
    }
    return 0;
  case SDL_MOUSEBUTTONUP:
    if (ev->button.windowID == w->win_id && ev->button.button == w->drag) w->drag = 0;
    return 0;
  case SDL_MOUSEMOTION: {
    if (ev->motion.windowID != w->win_id || !w->drag) return 0;
    SDL_GetWindowSize(w->win, &ww, &wh);
    int shift = (SDL_GetModState() & KMOD_SHIFT) != 0;
    int action = w->drag == SDL_BUTTON_LEFT ? (shift ? mjMOUSE_ROTATE_H : mjMOUSE_ROTATE_V)
                                            : (shift ? mjMOUSE_MOVE_H : mjMOUSE_MOVE_V);
    mjv_moveCamera(w->m, action, (double)ev->motion.xrel / TK_MAX(wh, 1),
                   (double)ev->motion.yrel / TK_MAX(wh, 1), &w->scn, &w->cam);
    return 0;
  }
  case SDL_MOUSEWHEEL: {
    if (ev->wheel.windowID != w->win_id) return 0;
    double y = ev->wheel.direction == SDL_MOUSEWHEEL_FLIPPED ? -ev->wheel.y : ev->wheel.y;
    free_from_view(w);
    mjv_moveCamera(w->m, mjMOUSE_ZOOM, 0, -0.05 * y, &w->scn, &w->cam);
    return 0;
  }
  default: return 0;
  }
}

/* ---- HUD ---- */
static const float tones[][3] = {
    [CAP_TONE_IDLE] = {0.35f, 0.35f, 0.38f}, [CAP_TONE_REC] = {0.80f, 0.08f, 0.08f},
    [CAP_TONE_WARN] = {0.85f, 0.55f, 0.05f}, [CAP_TONE_GOOD] = {0.10f, 0.55f, 0.20f},
    [CAP_TONE_BAD] = {0.50f, 0.05f, 0.10f},  [CAP_TONE_INFO] = {0.15f, 0.35f, 0.75f},
};

static const float *tone_rgb(int tone) {
  return tone >= 0 && tone < (int)TK_ARRAY_LEN(tones) ? tones[tone] : tones[CAP_TONE_IDLE];
}

/* Append printf text to a bounded column; silently stops at its end. */
static void col_add(char *col, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void col_add(char *col, const char *fmt, ...) {
  size_t n = strlen(col);
  if (n >= COL_MAX) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(col + n, COL_MAX + 1 - n, fmt, ap);
  va_end(ap);
}

/* One line of text for MuJoCo's fonts, which cover ASCII 32..126: tabs and line breaks
 * become spaces, anything else outside the range '?'. */
static void copy_text(char *dst, size_t cap, const char *src) {
  size_t i = 0;
  for (; src && src[i] && i + 1 < cap; i++) {
    unsigned char c = (unsigned char)src[i];
    dst[i] = c == '\n' || c == '\t' ? ' ' : c >= 32 && c < 127 ? (char)c : '?';
  }
  dst[i] = 0;
}

/* Split "key\tmeaning\n..." into the two overlay columns, line by line (" | " also ends a
 * line, as in one-line legends written for a terminal). */
static void split_legend(const char *legend, char *left, char *right) {
  left[0] = right[0] = 0;
  int tabs = legend && strchr(legend, '\t');
  const char *p = legend;
  int first = 1;
  while (p && *p) {
    const char *nl = strchr(p, '\n'), *bar = strstr(p, " | ");
    const char *eol = nl && (!bar || nl < bar) ? nl : bar;
    size_t len = eol ? (size_t)(eol - p) : strlen(p);
    const char *tab = memchr(p, '\t', len);
    char a[256], b[256];
    size_t la = tab ? (size_t)(tab - p) : len, lb = tab ? len - la - 1 : 0;
    copy_text(a, TK_MIN(sizeof a, la + 1), p);
    copy_text(b, TK_MIN(sizeof b, lb + 1), tab ? tab + 1 : "");
    if (strlen(left) + strlen(a) + 2 > COL_MAX || strlen(right) + strlen(b) + 2 > COL_MAX) break;
    col_add(left, "%s%s", first ? "" : "\n", a[0] ? a : " ");
    if (tabs) col_add(right, "%s%s", first ? "" : "\n", b[0] ? b : " ");
    first = 0;
    p = !eol ? NULL : eol == nl ? eol + 1 : eol + 3;
  }
}

static void hud_capture(hudFrame *f, const capHud *h) {
  static const char *const eef_names[7] = {"dx", "dy", "dz", "drx", "dry", "drz", "grip"};
  memset(f, 0, sizeof *f);
  if (!h) return;
  f->on = 1;
  copy_text(f->state, sizeof f->state, h->state ? h->state : "");
  f->tone = h->tone;
  col_add(f->stats_l, "Episode\nTime\nRate\nMissed\nDemos");
  if (h->episode > 0)
    col_add(f->stats_r, "%d\n", h->episode);
  else
    col_add(f->stats_r, "-\n");
  col_add(f->stats_r, "%.1f s\n", h->episode_time);
  if (h->target_hz > 0)
    col_add(f->stats_r, "%.1f / %.0f Hz\n", h->rate_hz, h->target_hz);
  else
    col_add(f->stats_r, "%.1f Hz\n", h->rate_hz);
  col_add(f->stats_r, "%lld\n", (long long)h->missed);
  col_add(f->stats_r, "%d success  %d failure  %d discarded", h->n_success, h->n_failure, h->n_discarded);
  if (h->device) {
    char dev[128];
    copy_text(dev, sizeof dev, h->device);
    col_add(f->stats_l, "\nDevice");
    col_add(f->stats_r, "\n%s", dev);
  }
  split_legend(h->legend, f->legend_l, f->legend_r);
  if (h->action && h->action_dim > 0) {
    f->nbars = TK_MIN(h->action_dim, CAP_HUD_MAX_BARS);
    for (int i = 0; i < f->nbars; i++) {
      f->bars[i] = h->action[i];
      if (h->action_names && h->action_names[i])
        copy_text(f->names[i], NAME_MAX, h->action_names[i]);
      else if (h->action_dim == 7)
        snprintf(f->names[i], NAME_MAX, "%s", eef_names[i]);
      else
        snprintf(f->names[i], NAME_MAX, "a%d", i);
    }
  }
  copy_text(f->message, sizeof f->message, h->message ? h->message : "");
  f->message_tone = h->message_tone;
}

static int text_width(const mjrContext *con, const char *s, int big) {
  int n = 0;
  for (; *s; s++)
    n += big ? con->charWidthBig[(unsigned char)*s] : con->charWidth[(unsigned char)*s];
  return n;
}

/* pixels mjr_overlay takes from the top of its viewport for a column of text */
static int overlay_height(const mjrContext *con, const char *col) {
  int lines = 1;
  for (; *col; col++)
    lines += *col == '\n';
  return 5 + 5 + lines * con->charHeight + (lines - 1) * 5;
}

static void hud_draw(capWindow *w, mjrRect vp, const hudFrame *f) {
  const mjrContext *con = &w->con;
  const int pad = TK_MAX(6, con->charHeight / 2);
  int top = vp.bottom + vp.height; /* y of the top edge */

  /* state banner, top left, big font */
  int banner_h = 0;
  if (f->state[0]) {
    const float *c = tone_rgb(f->tone);
    int bw = text_width(con, f->state, 1) + 4 * pad;
    banner_h = con->charHeightBig + pad;
    mjrRect r = {vp.left + pad, top - pad - banner_h, bw, banner_h};
    mjr_label(r, mjFONT_BIG, f->state, c[0], c[1], c[2], 0.9f, 1, 1, 1, con);
  }
  /* counters below the banner (mjr_overlay keeps 5 pixels from the edges: align with it) */
  mjrRect below = {vp.left + pad - 5, vp.bottom, vp.width - pad + 5,
                   vp.height - (banner_h ? banner_h + pad : 0)};
  mjr_overlay(mjFONT_NORMAL, mjGRID_TOPLEFT, below, f->stats_l, f->stats_r, con);
  /* legend, top right */
  if (f->legend_l[0]) mjr_overlay(mjFONT_NORMAL, mjGRID_TOPRIGHT, vp, f->legend_l, f->legend_r, con);

  /* heights of the top blocks (mjr_overlay: 5 px margin and 5 px between lines) */
  int left_h = (banner_h ? pad + banner_h + pad : 0) + overlay_height(con, f->stats_l);
  int right_h = f->legend_l[0] ? overlay_height(con, f->legend_l) : 0;

  /* action bars, bottom left (bottom right when the window is too low for both blocks on
   * the left): name | bar from -1 to 1 around a centre tick | value */
  int free_left = vp.left, free_right = vp.left + vp.width; /* room left for the message */
  if (f->nbars > 0) {
    /* the first arrangement that fits: roomy rows left, right, compact rows left, right */
    int rh = 0, right = 0;
    for (int k = 0; k < 4 && !rh; k++) {
      int h = con->charHeight + (k < 2 ? pad / 2 + 2 : 2);
      if (f->nbars * h + 2 * pad + 2 * pad + (k % 2 ? right_h : left_h) <= vp.height) rh = h, right = k % 2;
    }
    if (!rh) rh = con->charHeight + 2; /* too small a window: overlap on the left */
    int lw = 0;
    for (int i = 0; i < f->nbars; i++)
      lw = TK_MAX(lw, text_width(con, f->names[i], 0));
    lw += 2 * pad;
    int vw = text_width(con, "+0.00", 0) + 2 * pad;
    int bw = TK_MAX(120, TK_MIN(360, vp.width / 5));
    int bh = TK_MAX(4, rh / 2);
    mjrRect panel = {vp.left + pad, vp.bottom + pad, lw + bw + vw + pad, f->nbars * rh + 2 * pad};
    if (right) {
      panel.left = vp.left + vp.width - pad - panel.width;
      free_right = panel.left;
    } else {
      free_left = panel.left + panel.width;
    }
    mjr_rectangle(panel, 0, 0, 0, 0.55f);
    for (int i = 0; i < f->nbars; i++) {
      int y = panel.bottom + pad + (f->nbars - 1 - i) * rh;
      int x = panel.left;
      double v = f->bars[i];
      int finite = isfinite(v);
      double vc = finite ? TK_MAX(-1.0, TK_MIN(1.0, v)) : 0;
      mjr_label((mjrRect){x, y, lw, rh}, mjFONT_NORMAL, f->names[i], 0, 0, 0, 0, 0.8f, 0.8f, 0.8f, con);
      int cx = x + lw + bw / 2, by = y + (rh - bh) / 2;
      if (finite)
        mjr_rectangle((mjrRect){x + lw, by, bw, bh}, 0.3f, 0.3f, 0.3f, 0.9f);
      else
        mjr_rectangle((mjrRect){x + lw, by, bw, bh}, 0.6f, 0.0f, 0.0f, 0.9f);
      int len = (int)lround(fabs(vc) * (bw / 2));
      if (vc > 0) mjr_rectangle((mjrRect){cx, by, len, bh}, 0.25f, 0.85f, 0.35f, 1);
      if (vc < 0) mjr_rectangle((mjrRect){cx - len, by, len, bh}, 1.0f, 0.55f, 0.1f, 1);
      mjr_rectangle((mjrRect){cx - 1, y + 1, 2, rh - 2}, 1, 1, 1, 0.9f);
      char val[16];
      if (finite)
        snprintf(val, sizeof val, "%+.2f", v);
      else
        snprintf(val, sizeof val, "%s", isnan(v) ? "nan" : "inf");
      mjr_label((mjrRect){x + lw + bw, y, vw, rh}, mjFONT_NORMAL, val, 0, 0, 0, 0, 1, 1, 1, con);
    }
  }

  /* message, bottom, centred, beside the bars */
  if (f->message[0]) {
    const float *c = tone_rgb(f->message_tone);
    int mw = text_width(con, f->message, 0) + 4 * pad, mh = con->charHeight + pad;
    int left = vp.left + (vp.width - mw) / 2;
    if (left + mw > free_right - pad) left = free_right - pad - mw;
    if (left < free_left + pad) left = free_left + pad;
    mjr_label((mjrRect){left, vp.bottom + pad, mw, mh}, mjFONT_NORMAL, f->message, c[0], c[1], c[2], 0.9f, 1,
              1, 1, con);
  }
}

/* Render the scene as last updated, and the HUD as last captured, into the back buffer. */
static void render_frame(capWindow *w, mjrRect vp) {
  mjr_setBuffer(mjFB_WINDOW, &w->con);
  mjr_render(vp, &w->scn, &w->con);
  int sh = 0;
  if (w->strip_h > 0) {
    sh = TK_MIN(w->strip_h, vp.height);
    w->PixelStorei(GL_UNPACK_ALIGNMENT, 1);
    mjr_drawPixels(w->strip, NULL, (mjrRect){vp.left, vp.bottom, TK_MIN(w->strip_w, vp.width), sh}, &w->con);
  }
  if (w->hud.on) hud_draw(w, (mjrRect){vp.left, vp.bottom + sh, vp.width, vp.height - sh}, &w->hud);
}

/* Keep a copy of the HUD's strip image, flipped to GL's bottom-up rows. */
static int strip_capture(capWindow *w, const capHud *h) {
  w->strip_w = w->strip_h = 0;
  if (!h || !h->strip_rgb || h->strip_w <= 0 || h->strip_h <= 0) return 0;
  size_t row = (size_t)h->strip_w * 3, need = row * (size_t)h->strip_h;
  if (need > w->strip_cap) {
    uint8_t *p = realloc(w->strip, need);
    if (!p) return tk_error(TK_ENOMEM, "out of memory");
    w->strip = p;
    w->strip_cap = need;
  }
  for (int y = 0; y < h->strip_h; y++)
    memcpy(w->strip + (size_t)(h->strip_h - 1 - y) * row, h->strip_rgb + (size_t)y * row, row);
  w->strip_w = h->strip_w;
  w->strip_h = h->strip_h;
  return 0;
}

int cap_window_draw(capWindow *w, const mjModel *m, mjData *d, const capHud *hud) {
  if (!w || !m || !d) return tk_error(TK_EINVAL, "cap_window_draw: null argument");
  if (m != w->m) return tk_error(TK_EINVAL, "cap_window_draw: the window was opened for another model");
  mjv_updateScene(m, d, &w->opt, &w->pert, &w->cam, mjCAT_ALL, &w->scn); /* no GL */
  hud_capture(&w->hud, hud);
  int rc = strip_capture(w, hud);
  if (!rc) rc = ctx_on(w);
  if (rc) return rc;
  int dw = 0, dh = 0;
  SDL_GL_GetDrawableSize(w->win, &dw, &dh);
  render_frame(w, (mjrRect){0, 0, dw, dh});
  SDL_GL_SwapWindow(w->win);
  ctx_off(w);
  w->drawn = 1;
  return 0;
}

int cap_window_screenshot(capWindow *w, uint8_t *rgb, size_t cap, int *width, int *height) {
  if (!w) return tk_error(TK_EINVAL, "cap_window_screenshot: no window");
  int dw = 0, dh = 0;
  SDL_GL_GetDrawableSize(w->win, &dw, &dh);
  if (width) *width = dw;
  if (height) *height = dh;
  if (!rgb) return 0;
  if (!w->drawn) return tk_error(TK_EINVAL, "cap_window_screenshot: nothing drawn yet");
  size_t row = (size_t)dw * 3;
  if (cap < row * (size_t)dh)
    return tk_error(TK_ERANGE, "screenshot of %dx%d needs %zu bytes, the buffer has %zu", dw, dh,
                    row * (size_t)dh, cap);
  int rc = ctx_on(w);
  if (rc) return rc;
  mjrRect vp = {0, 0, dw, dh};
  render_frame(w, vp); /* the same scene and HUD again, into the back buffer (not swapped) */
  w->PixelStorei(GL_PACK_ALIGNMENT, 1);
  mjr_readPixels(rgb, NULL, vp, &w->con); /* rows bottom-up */
  ctx_off(w);
  /* flip in place, through a small stack buffer */
  uint8_t tmp[1024];
  for (int y = 0; y < dh / 2; y++) {
    uint8_t *a = rgb + (size_t)y * row, *b = rgb + (size_t)(dh - 1 - y) * row;
    for (size_t off = 0; off < row; off += sizeof tmp) {
      size_t n = TK_MIN(sizeof tmp, row - off);
      memcpy(tmp, a + off, n);
      memcpy(a + off, b + off, n);
      memcpy(b + off, tmp, n);
    }
  }
  return 0;
}

int cap_window_save_png(capWindow *w, const char *path) {
  int W = 0, H = 0;
  if (cap_window_screenshot(w, NULL, 0, &W, &H)) return tk_error_wrap(TK_EINVAL, "%s: screenshot", path);
  uint8_t *rgb = malloc((size_t)W * (size_t)H * 3);
  if (!rgb) return tk_error(TK_ENOMEM, "out of memory");
  int rc = cap_window_screenshot(w, rgb, (size_t)W * (size_t)H * 3, &W, &H);
  if (!rc) rc = tk_png_write_rgb(path, rgb, W, H);
  free(rgb);
  return rc;
}
