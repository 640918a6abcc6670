/* teleop/tel_window.h -- internal: the teleop console's window (SDL2 + OpenGL), the MuJoCo
 * scene as the operator sees it, and the HUD drawn over it with MuJoCo's own 2D calls.
 *
 * The caller owns SDL: it calls SDL_Init(SDL_INIT_VIDEO | ...) before tel_window_open and
 * SDL_Quit after tel_window_close, and it owns the event loop (SDL_PollEvent), handing each
 * event to tel_window_events. All calls on the thread that opened the window (SDL/X11).
 *
 * GL. The window's context is created through EGL (SDL_HINT_VIDEO_X11_FORCE_EGL) so that the
 * window and the offscreen camera renderer (capture/cap_render.c, EGL surfaceless) use one GL
 * API and one set of MuJoCo GL entry points (see tel_window.c). Every call makes the window's
 * context current on entry and releases it before returning, so offscreen rendering may run
 * between calls on the same thread. Not public: include only from teleop's sources and tests.
 * Errors follow core/tk.h (0 or TK_E*, message through tk_error).
 */
#ifndef TEL_WINDOW_H
#define TEL_WINDOW_H

#include <stddef.h>
#include <stdint.h>

#include <SDL2/SDL.h>
#include <mujoco/mujoco.h>

typedef struct telWindow telWindow;

enum {                    /* telHud.tone, telHud.message_tone: colour of the state banner / message */
       TEL_TONE_IDLE = 0, /* grey: idle, waiting */
       TEL_TONE_REC,      /* red: recording */
       TEL_TONE_WARN,     /* amber: paused, device unplugged, missed deadlines */
       TEL_TONE_GOOD,     /* green: ended as success, saved */
       TEL_TONE_BAD,      /* dark red: ended as failure, errors */
       TEL_TONE_INFO,     /* blue: discarded, resetting, intervention */
};

#define TEL_HUD_MAX_BARS 16

/* What the HUD shows; every pointer may be NULL (the field is then not drawn). Strings are
 * copied at tel_window_draw, so they may change afterwards. */
typedef struct {
  const char *state;                     /* "idle", "recording", "paused: pad unplugged", "ended: success" */
  int tone;                              /* TEL_TONE_* for the state banner */
  int n_success, n_failure, n_discarded; /* episodes this session */
  int episode;                           /* number of the current episode (0: none yet) */
  double episode_time;                   /* s since the episode started */
  double rate_hz;                        /* achieved control rate, Hz */
  double target_hz;                      /* requested rate, Hz (0: not shown) */
  int64_t missed;                        /* missed deadlines this episode */
  const char *device;                    /* "Xbox Controller", "keyboard", "SpaceMouse Compact" */
  const double *action;                  /* action_dim values in [-1,1], drawn as bars */
  int action_dim;                        /* at most TEL_HUD_MAX_BARS are drawn */
  const char *const *action_names;       /* NULL: "dx dy dz drx dry drz grip" (7) or a0.. */
  /* Key/button legend, one binding per line: "key\tmeaning\n..." (a line without a tab is
   * drawn across both columns). At most about 490 characters per column are shown. */
  const char *legend;
  const char *message; /* one line at the bottom: errors, "saved demo_12" */
  int message_tone;    /* TEL_TONE_* */
  /* An RGB image (rows top-down, strip_w x strip_h) drawn across the bottom of the window, under
   * the rest of the HUD (the viewer's plots); copied at tel_window_draw. NULL: none. */
  const uint8_t *strip_rgb;
  int strip_w, strip_h;
} telHud;

/* Open a width x height window titled title, with an OpenGL context and MuJoCo's rendering
 * context for m (m must outlive the window). The view starts as MuJoCo's free camera on the
 * whole model. Errors: SDL video not initialized, no GL (message names the GL API tried). */
int tel_window_open(const mjModel *m, int width, int height, const char *title, telWindow **out);

/* Look through the model camera `name` (NULL: the free camera). A mouse drag on a fixed
 * camera continues from its view with the free camera. TK_ENOTFOUND for an unknown name. */
int tel_window_camera(telWindow *w, const char *name);

/* One event from the caller's SDL_PollEvent loop: left drag orbits, right drag pans
 * (Shift: in the horizontal plane), wheel zooms; events of other windows are ignored.
 * Returns 1 when the user closed the window (or SDL_QUIT), else 0. NULL-safe. */
int tel_window_events(telWindow *w, const SDL_Event *ev);

/* Draw the scene of (m, d) (m: the model the window was opened with) and the HUD (NULL:
 * no HUD), then swap buffers. Never waits for vertical sync. */
int tel_window_draw(telWindow *w, const mjModel *m, mjData *d, const telHud *hud);

/* The last drawn frame (scene and HUD as drawn; re-rendered on demand, so it costs nothing
 * per frame), RGB with rows top-down, into rgb (cap bytes). rgb NULL: only the size.
 * TK_ERANGE if cap < width*height*3, TK_EINVAL before the first draw. */
int tel_window_screenshot(telWindow *w, uint8_t *rgb, size_t cap, int *width, int *height);
/* The last frame as a PNG file (written to "<path>.tmp", then renamed). */
int tel_window_save_png(telWindow *w, const char *path);

/* Size of the drawable in pixels (may differ from the window size on HiDPI screens). */
void tel_window_size(const telWindow *w, int *width, int *height);

/* "egl" or "glx": the API the window's context came from (for logs and tests). */
const char *tel_window_gl_api(const telWindow *w);

SDL_Window *tel_window_sdl(telWindow *w); /* for SDL calls the caller needs (title, focus) */

void tel_window_close(telWindow *w); /* NULL-safe; does not call SDL_Quit */

#endif
