/* capture/cap_render.h -- internal: offscreen MuJoCo rendering without a GPU or a display.
 *
 * One capRender per environment (or per thread): its own OpenGL context (EGL surfaceless,
 * OSMesa as fallback), mjrContext and mjvScene. Different capRender may render concurrently
 * from different threads; one capRender is used by one thread at a time, but any thread
 * (the GL context is made current on entry and released on exit of every call).
 *
 * Not public: include only from the capture module's sources. Errors follow core/tk.h (0 or TK_E*, message
 * through tk_error).
 */
#ifndef CAP_RENDER_H
#define CAP_RENDER_H

#include <stdint.h>

#include <mujoco/mujoco.h>

typedef struct capRender capRender;

/* Create an offscreen GL context, build mjrContext/mjvScene for m with a framebuffer of
 * max_w x max_h (at most the model's <visual><global offwidth/offheight>, TK_ERANGE if
 * larger). Shadows, reflections and multisampling are off (cost, see docs/reference.md). */
int cap_render_make(const mjModel *m, int max_w, int max_h, capRender **out);

/* Render the model's camera `camera` for state d into rgb (w*h*3 bytes, rows top-down).
 * 1 <= w <= max_w, 1 <= h <= max_h. An unknown camera gives TK_ENOTFOUND listing the
 * model's cameras. m must be the model the renderer was made for. */
int cap_render_camera(capRender *r, const mjModel *m, mjData *d, const char *camera, int w, int h,
                      uint8_t *rgb);

/* Segmentation of the same view: geom[y*w + x] = the model's geom id seen at that pixel (rows
 * top-down), -1 where no geom is (sky, or a decoration). Uses MuJoCo's mjRND_SEGMENT +
 * mjRND_IDCOLOR (flat colours, no lighting; occlusion as in the RGB image). For analysis tools
 * (capture/cam_visibility.c), not for observations. */
int cap_render_segment(capRender *r, const mjModel *m, mjData *d, const char *camera, int w, int h,
                       int32_t *geom);

void cap_render_free(capRender *r); /* NULL-safe; any thread */

/* "egl" or "osmesa" once a renderer was made, else "none" (for logs and tests). */
const char *cap_render_backend(void);

#endif
