/* capture/cap_render.c -- offscreen MuJoCo rendering without a GPU or a display.
 *
 * Backends. EGL on Mesa's surfaceless platform (EGL_MESA_platform_surfaceless, no window
 * system, no device files: llvmpipe renders in CPU memory) is tried first, OSMesa second.
 * On this machine (Debian bookworm, Mesa 22.3, no GPU, no X) EGL surfaceless works:
 * libEGL (glvnd) -> libEGL_mesa -> swrast/llvmpipe, GL 4.5 compatibility profile, and
 * eglMakeCurrent with EGL_NO_SURFACE (EGL_KHR_surfaceless_context). OSMesa works too and
 * is kept as the fallback for systems without libEGL_mesa (environment DK_GL=egl or
 * DK_GL=osmesa forces one). Both libraries are dlopen'ed here, not linked: see below.
 *
 * How MuJoCo 2.2.2 finds GL. libmujoco links no GL library; mjr_makeContext runs its
 * internal glad loader, which asks the process for a "get proc address" function:
 * dlsym(dlopen(NULL), ...) for eglGetProcAddress, then OSMesaGetProcAddress, then
 * glXGetProcAddressARB -- i.e. the global symbol scope, first match wins -- and only if none
 * is global, dl_iterate_phdr for an already loaded libEGL/libOSMesa/libGL/libGLX. Every GL
 * entry point then comes from that function and lands in process-wide pointers.
 *   - EGL (glvnd): eglGetProcAddress gives libGLdispatch stubs that call into whichever
 *     context is current on the calling thread, so one table serves every context/thread.
 *   - OSMesa: OSMesaGetProcAddress gives Mesa glapi stubs, same per-thread dispatch, but a
 *     different dispatch layer: glvnd stubs do not see an OSMesa context (tried: with libEGL
 *     linked in and an OSMesa context current, MuJoCo dies in mju_error "gladLoadGL
 *     error"). So OSMesa is only used when neither eglGetProcAddress nor
 *     glXGetProcAddressARB is globally visible (MuJoCo would pick those first); we check
 *     and refuse with an error otherwise.
 * To keep the choice ours, libEGL is opened RTLD_LOCAL for the trial and promoted to
 * RTLD_GLOBAL only once an EGL context works; OSMesa is opened RTLD_GLOBAL. The backend
 * is fixed for the life of the process at the first successful cap_render_make.
 *
 * The EGL display stays initialized until exit, even when no renderer is left: eglTerminate
 * makes Mesa dlclose its driver, after which LeakSanitizer reports the driver's static
 * allocations (now unreachable) as leaks; keeping it also saves re-initialization.
 *
 * Threads. Each capRender owns a GL context. Every call makes it current on the calling
 * thread and releases it before returning, so a renderer may move between threads (GL
 * forbids one context current in two threads; the caller ensures one call at a time).
 * cap_render_make and cap_render_free serialize on a process-wide lock (glad's loader in
 * mjr_makeContext uses static state, and so does backend selection), and so does rendering
 * itself (g_render_lock): concurrent renders in two threads crashed inside Mesa's swrast.
 * Parallel workers still overlap everything else (physics, policies); a render of two 84x84
 * cameras takes about a millisecond.
 *
 * Cost. Shadows, reflections and MSAA are off: the scene flags are ours, and offsamples,
 * shadowsize and the offscreen size, which mjr_makeContext 2.2.2 reads only from the model,
 * are set on a shallow copy of the mjModel struct (the model itself is not touched; the
 * copy is used only during that call). Without this every renderer would allocate a
 * 4096x4096 shadow map and render into a 4x multisampled buffer.
 */
#include "cap_render.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EGL_EGL_PROTOTYPES 0 /* everything through dlsym: no link-time libEGL */
#include <EGL/egl.h>
#include <EGL/eglext.h>
#include <GL/gl.h>
#include <GL/osmesa.h>

#include "tk.h"

enum { BK_NONE = 0, BK_EGL = 1, BK_OSMESA = 2 };

typedef const GLubyte *(*PFN_glGetString)(GLenum);
typedef OSMesaContext (*PFN_OSMesaCreateContextAttribs)(const int *, OSMesaContext);
typedef void (*PFN_OSMesaDestroyContext)(OSMesaContext);
typedef GLboolean (*PFN_OSMesaMakeCurrent)(OSMesaContext, void *, GLenum, GLsizei, GLsizei);
typedef OSMESAproc (*PFN_OSMesaGetProcAddress)(const char *);

struct capRender {
  const mjModel *model; /* the model it was made for */
  int backend;
  int max_w, max_h;
  EGLContext egl;
  OSMesaContext osm;
  uint8_t osm_buf[4 * 4 * 4]; /* OSMesa needs a default framebuffer; MuJoCo draws into its FBO */
  mjvScene scn;
  mjvOption opt;
  mjvCamera cam;
  mjvPerturb pert;
  mjrContext con;
  int scn_made, con_made;
  uint8_t *buf; /* max_w * max_h * 3, bottom-up rows from mjr_readPixels */
};

/* ---- process-wide backend state (under g_lock) ---- */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
/* One render at a time in the process, and none while a context is made or freed: two rollout workers
 * rendering at once crashed inside Mesa's swrast driver (bc-eval with two workers and cameras, every run
 * under MALLOC_PERTURB_=146; with renders under a shared lock and only context changes exclusive it still
 * crashed, with every render exclusive it did not, in 14 runs). */
static pthread_rwlock_t g_render_lock = PTHREAD_RWLOCK_INITIALIZER;
static int g_backend = BK_NONE;

static struct {
  void *lib;
  PFNEGLGETPROCADDRESSPROC GetProcAddress;
  PFNEGLQUERYSTRINGPROC QueryString;
  PFNEGLGETPLATFORMDISPLAYPROC GetPlatformDisplay;
  PFNEGLINITIALIZEPROC Initialize;
  PFNEGLTERMINATEPROC Terminate;
  PFNEGLCHOOSECONFIGPROC ChooseConfig;
  PFNEGLBINDAPIPROC BindAPI;
  PFNEGLCREATECONTEXTPROC CreateContext;
  PFNEGLDESTROYCONTEXTPROC DestroyContext;
  PFNEGLMAKECURRENTPROC MakeCurrent;
  PFNEGLGETERRORPROC GetError;
  EGLDisplay dpy;
  EGLConfig config;
  int initialized;
} egl;

static struct {
  void *lib;
  PFN_OSMesaCreateContextAttribs CreateContextAttribs;
  PFN_OSMesaDestroyContext DestroyContext;
  PFN_OSMesaMakeCurrent MakeCurrent;
  PFN_OSMesaGetProcAddress GetProcAddress;
} osm;

const char *cap_render_backend(void) {
  pthread_mutex_lock(&g_lock);
  int b = g_backend;
  pthread_mutex_unlock(&g_lock);
  return b == BK_EGL ? "egl" : b == BK_OSMESA ? "osmesa" : "none";
}

/* ---- EGL ---- */
static int egl_open(void) {
  if (egl.initialized) return 0;
  if (!egl.lib) {
    /* RTLD_LOCAL: not visible to MuJoCo's loader until it proved to work (egl_promote) */
    void *lib = dlopen("libEGL.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) return tk_error(TK_ENOTFOUND, "cannot load libEGL.so.1: %s", dlerror());
    egl.lib = lib;
  }
#define EGL_SYM(field, name)                                                                                 \
  do {                                                                                                       \
    egl.field = (__typeof__(egl.field))dlsym(egl.lib, name);                                                 \
    if (!egl.field) return tk_error(TK_ENOTFOUND, "libEGL.so.1 lacks %s", name);                             \
  } while (0)
  EGL_SYM(GetProcAddress, "eglGetProcAddress");
  EGL_SYM(QueryString, "eglQueryString");
  EGL_SYM(GetPlatformDisplay, "eglGetPlatformDisplay");
  EGL_SYM(Initialize, "eglInitialize");
  EGL_SYM(Terminate, "eglTerminate");
  EGL_SYM(ChooseConfig, "eglChooseConfig");
  EGL_SYM(BindAPI, "eglBindAPI");
  EGL_SYM(CreateContext, "eglCreateContext");
  EGL_SYM(DestroyContext, "eglDestroyContext");
  EGL_SYM(MakeCurrent, "eglMakeCurrent");
  EGL_SYM(GetError, "eglGetError");
#undef EGL_SYM
  const char *cext = egl.QueryString(EGL_NO_DISPLAY, EGL_EXTENSIONS);
  if (!cext || !strstr(cext, "EGL_MESA_platform_surfaceless"))
    return tk_error(TK_ENOTFOUND, "EGL has no surfaceless platform (EGL_MESA_platform_surfaceless)");
  egl.dpy = egl.GetPlatformDisplay(EGL_PLATFORM_SURFACELESS_MESA, EGL_DEFAULT_DISPLAY, NULL);
  if (egl.dpy == EGL_NO_DISPLAY)
    return tk_error(TK_EIO, "eglGetPlatformDisplay(surfaceless) failed: EGL error 0x%x", egl.GetError());
  EGLint major = 0, minor = 0;
  if (!egl.Initialize(egl.dpy, &major, &minor))
    return tk_error(TK_EIO, "eglInitialize(surfaceless) failed: EGL error 0x%x", egl.GetError());
  egl.initialized = 1;
  const char *ext = egl.QueryString(egl.dpy, EGL_EXTENSIONS);
  if (!ext || !strstr(ext, "EGL_KHR_surfaceless_context")) {
    egl.Terminate(egl.dpy);
    egl.initialized = 0;
    return tk_error(TK_ENOTFOUND, "EGL %d.%d lacks EGL_KHR_surfaceless_context", major, minor);
  }
  /* RGBA8, depth 24, stencil 8, desktop GL. Nothing is drawn into a surface (MuJoCo draws
   * into its own framebuffer object), the config only selects the driver's GL. */
  const EGLint attrs[] = {
      EGL_RED_SIZE,   8,  EGL_GREEN_SIZE,   8, EGL_BLUE_SIZE,    8, EGL_ALPHA_SIZE,      8,
      EGL_DEPTH_SIZE, 24, EGL_STENCIL_SIZE, 8, EGL_SURFACE_TYPE, 0, EGL_RENDERABLE_TYPE, EGL_OPENGL_BIT,
      EGL_NONE};
  EGLint n = 0;
  if (!egl.ChooseConfig(egl.dpy, attrs, &egl.config, 1, &n) || n < 1) {
    egl.Terminate(egl.dpy);
    egl.initialized = 0;
    return tk_error(TK_ENOTFOUND, "EGL %d.%d has no desktop-OpenGL config with depth 24, stencil 8", major,
                    minor);
  }
  return 0;
}

/* eglBindAPI is per thread, and eglMakeCurrent(EGL_NO_CONTEXT) releases the context of the
 * thread's bound API: bind desktop GL on every thread before touching the context. */
static int egl_current(capRender *r, int on) {
  egl.BindAPI(EGL_OPENGL_API);
  if (!egl.MakeCurrent(egl.dpy, EGL_NO_SURFACE, EGL_NO_SURFACE, on ? r->egl : EGL_NO_CONTEXT))
    return tk_error(TK_EIO, "eglMakeCurrent(%s) failed: EGL error 0x%x%s", on ? "context" : "none",
                    egl.GetError(), on ? " (is this renderer in use by another thread?)" : "");
  return 0;
}

static int egl_context(capRender *r) {
  if (!egl.BindAPI(EGL_OPENGL_API))
    return tk_error(TK_EIO, "eglBindAPI(EGL_OPENGL_API) failed: EGL error 0x%x", egl.GetError());
  /* no profile or version attributes: the default is a compatibility context, which
   * MuJoCo 2.2.2's fixed-function renderer needs (a core profile would not work) */
  r->egl = egl.CreateContext(egl.dpy, egl.config, EGL_NO_CONTEXT, NULL);
  if (r->egl == EGL_NO_CONTEXT)
    return tk_error(TK_EIO, "eglCreateContext(OpenGL) failed: EGL error 0x%x", egl.GetError());
  r->backend = BK_EGL;
  return 0;
}

/* Make eglGetProcAddress visible to MuJoCo's loader (see the top of the file). */
static int egl_promote(void) {
  void *h = dlopen("libEGL.so.1", RTLD_NOW | RTLD_NOLOAD | RTLD_GLOBAL);
  if (!h) return tk_error(TK_EIO, "cannot make libEGL.so.1 global: %s", dlerror());
  dlclose(h); /* drops the extra reference; the library stays loaded and global */
  return 0;
}

/* ---- OSMesa ---- */
static int osm_open(void) {
  if (!osm.lib) {
    void *lib = dlopen("libOSMesa.so.8", RTLD_NOW | RTLD_GLOBAL);
    if (!lib) return tk_error(TK_ENOTFOUND, "cannot load libOSMesa.so.8: %s", dlerror());
    osm.lib = lib;
  }
#define OSM_SYM(field, name)                                                                                 \
  do {                                                                                                       \
    osm.field = (__typeof__(osm.field))dlsym(osm.lib, name);                                                 \
    if (!osm.field) return tk_error(TK_ENOTFOUND, "libOSMesa.so.8 lacks %s", name);                          \
  } while (0)
  OSM_SYM(CreateContextAttribs, "OSMesaCreateContextAttribs");
  OSM_SYM(DestroyContext, "OSMesaDestroyContext");
  OSM_SYM(MakeCurrent, "OSMesaMakeCurrent");
  OSM_SYM(GetProcAddress, "OSMesaGetProcAddress");
#undef OSM_SYM
  /* MuJoCo's loader takes the first of these it finds globally: with any of them present
   * it would fetch glvnd stubs, which do not reach an OSMesa context (fatal mju_error). */
  static const char *const rivals[] = {"eglGetProcAddress", "glXGetProcAddressARB"};
  for (size_t i = 0; i < TK_ARRAY_LEN(rivals); i++)
    if (dlsym(RTLD_DEFAULT, rivals[i]))
      return tk_error(TK_EINVAL,
                      "OSMesa cannot serve MuJoCo in this process: %s is linked in (libEGL/libGL), and "
                      "MuJoCo would load GL through it",
                      rivals[i]);
  return 0;
}

static int osm_current(capRender *r, int on) {
  GLboolean ok =
      on ? osm.MakeCurrent(r->osm, r->osm_buf, GL_UNSIGNED_BYTE, 4, 4) : osm.MakeCurrent(NULL, NULL, 0, 0, 0);
  if (!ok) return tk_error(TK_EIO, "OSMesaMakeCurrent(%s) failed", on ? "context" : "none");
  return 0;
}

static int osm_context(capRender *r) {
  const int attrs[] = {OSMESA_FORMAT,
                       OSMESA_RGBA,
                       OSMESA_DEPTH_BITS,
                       24,
                       OSMESA_STENCIL_BITS,
                       8,
                       OSMESA_PROFILE,
                       OSMESA_COMPAT_PROFILE,
                       0};
  r->osm = osm.CreateContextAttribs(attrs, NULL);
  if (!r->osm) return tk_error(TK_EIO, "OSMesaCreateContextAttribs(RGBA, compatibility profile) failed");
  r->backend = BK_OSMESA;
  return 0;
}

/* ---- per renderer ---- */
static int ctx_current(capRender *r, int on) {
  return r->backend == BK_EGL ? egl_current(r, on) : osm_current(r, on);
}

static void ctx_destroy(capRender *r) {
  if (r->backend == BK_EGL && r->egl != EGL_NO_CONTEXT) egl.DestroyContext(egl.dpy, r->egl);
  if (r->backend == BK_OSMESA && r->osm) osm.DestroyContext(r->osm);
  r->egl = EGL_NO_CONTEXT;
  r->osm = NULL;
  r->backend = BK_NONE;
}

/* The context is current: check what mjr_makeContext would otherwise die on (mju_error). */
static int check_gl(int backend) {
  PFN_glGetString get = backend == BK_EGL
                            ? (PFN_glGetString)egl.GetProcAddress("glGetString")
                            : (PFN_glGetString)(void (*)(void))osm.GetProcAddress("glGetString");
  const char *ver = get ? (const char *)get(GL_VERSION) : NULL;
  if (!ver) return tk_error(TK_EIO, "the new GL context answers no GL_VERSION");
  int major = 0, minor = 0;
  if (sscanf(ver, "%d.%d", &major, &minor) != 2 || major * 10 + minor < 15)
    return tk_error(TK_EVERSION, "MuJoCo needs OpenGL 1.5 or later, the context has \"%s\"", ver);
  return 0;
}

/* Create r's context with the process backend, or choose the backend (first call). Under
 * g_lock. Leaves the context current on success. */
static int make_context(capRender *r) {
  if (g_backend == BK_EGL) {
    int rc = egl_context(r);
    if (!rc) rc = ctx_current(r, 1);
    return rc;
  }
  if (g_backend == BK_OSMESA) {
    int rc = osm_context(r);
    if (!rc) rc = ctx_current(r, 1);
    return rc;
  }
  const char *force = getenv("DK_GL");
  int try_egl = !force || !force[0] || !strcmp(force, "egl");
  int try_osm = !force || !force[0] || !strcmp(force, "osmesa");
  if (!try_egl && !try_osm) return tk_error(TK_EINVAL, "DK_GL=%s: expected egl or osmesa", force);
  char egl_msg[512] = "not tried";
  if (try_egl) {
    int rc = egl_open();
    if (!rc) rc = egl_context(r);
    if (!rc) rc = ctx_current(r, 1);
    if (!rc) rc = check_gl(BK_EGL);
    if (!rc) rc = egl_promote();
    if (!rc) {
      g_backend = BK_EGL;
      return 0;
    }
    snprintf(egl_msg, sizeof egl_msg, "%s", tk_errmsg());
    if (r->egl != EGL_NO_CONTEXT) {
      egl.MakeCurrent(egl.dpy, EGL_NO_SURFACE, EGL_NO_SURFACE, EGL_NO_CONTEXT);
      ctx_destroy(r);
    }
    if (egl.initialized) {
      egl.Terminate(egl.dpy);
      egl.initialized = 0;
    }
    if (!try_osm) return tk_error(rc, "no offscreen OpenGL: EGL: %s", egl_msg);
  }
  int rc = osm_open();
  if (!rc) rc = osm_context(r);
  if (!rc) rc = ctx_current(r, 1);
  if (!rc) rc = check_gl(BK_OSMESA);
  if (!rc) {
    g_backend = BK_OSMESA;
    return 0;
  }
  if (r->osm) {
    osm.MakeCurrent(NULL, NULL, 0, 0, 0);
    ctx_destroy(r);
  }
  return tk_error_wrap(rc, "no offscreen OpenGL: EGL: %s; OSMesa", egl_msg);
}

int cap_render_make(const mjModel *m, int max_w, int max_h, capRender **out) {
  if (!out) return tk_error(TK_EINVAL, "cap_render_make: no output pointer");
  *out = NULL;
  if (!m) return tk_error(TK_EINVAL, "cap_render_make: no model");
  int offw = m->vis.global.offwidth, offh = m->vis.global.offheight;
  if (max_w < 1 || max_h < 1)
    return tk_error(TK_ERANGE, "render size %dx%d: width and height must be positive", max_w, max_h);
  if (max_w > offw || max_h > offh)
    return tk_error(TK_ERANGE,
                    "render size %dx%d exceeds the model's offscreen buffer %dx%d (raise <visual><global "
                    "offwidth=\"..\" offheight=\"..\"/> in the MJCF)",
                    max_w, max_h, offw, offh);
  capRender *r = calloc(1, sizeof *r);
  mjModel *mc = malloc(sizeof *mc);
  if (r) r->buf = malloc((size_t)max_w * (size_t)max_h * 3);
  if (!r || !mc || !r->buf) {
    free(mc);
    if (r) free(r->buf);
    free(r);
    return tk_error(TK_ENOMEM, "out of memory for a %dx%d renderer", max_w, max_h);
  }
  r->model = m;
  r->max_w = max_w;
  r->max_h = max_h;
  r->egl = EGL_NO_CONTEXT;

  mjv_defaultOption(&r->opt);
  mjv_defaultCamera(&r->cam);
  mjv_defaultPerturb(&r->pert);
  mjv_defaultScene(&r->scn);
  mjr_defaultContext(&r->con);
  /* the model's geoms plus room for decorations (mjv_updateScene drops what does not fit) */
  mjv_makeScene(m, &r->scn, TK_MAX(1000, 2 * m->ngeom + 100));
  r->scn_made = 1;
  r->scn.flags[mjRND_SHADOW] = 0;
  r->scn.flags[mjRND_REFLECTION] = 0;

  /* shallow copy: mjr_makeContext reads these only from the model */
  *mc = *m;
  mc->vis.global.offwidth = max_w;
  mc->vis.global.offheight = max_h;
  mc->vis.quality.offsamples = 0;
  mc->vis.quality.shadowsize = 0;

  pthread_rwlock_wrlock(&g_render_lock);
  pthread_mutex_lock(&g_lock);
  int rc = make_context(r);
  if (!rc) {
    mjr_makeContext(mc, &r->con, mjFONTSCALE_50);
    r->con_made = 1;
    mjr_setBuffer(mjFB_OFFSCREEN, &r->con);
    if (!r->con.offFBO || r->con.currentBuffer != mjFB_OFFSCREEN)
      rc = tk_error(TK_EIO, "MuJoCo could not create its %dx%d offscreen framebuffer", max_w, max_h);
    int rc2 = ctx_current(r, 0);
    if (!rc) rc = rc2;
  }
  pthread_mutex_unlock(&g_lock);
  pthread_rwlock_unlock(&g_render_lock);
  free(mc);
  if (rc) {
    char msg[TK_ERRMSG_MAX];
    snprintf(msg, sizeof msg, "%s", tk_errmsg());
    cap_render_free(r);
    return tk_error(rc, "%s", msg);
  }
  *out = r;
  return 0;
}

static int camera_error(const mjModel *m, const char *camera) {
  char list[768] = "";
  size_t n = 0;
  for (int i = 0; i < m->ncam && n < sizeof list; i++) {
    int k = snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", m->names + m->name_camadr[i]);
    if (k < 0) break;
    n += (size_t)k;
  }
  return tk_error(TK_ENOTFOUND, "no camera \"%s\" in the model (cameras: %s)", camera ? camera : "(null)",
                  m->ncam ? list : "none");
}

/* Render camera into r->buf (bottom-up rows), with or without segmentation colours. */
static int render_buf(capRender *r, const mjModel *m, mjData *d, const char *camera, int w, int h,
                      int segment) {
  if (m != r->model) return tk_error(TK_EINVAL, "cap_render_camera: the renderer was made for another model");
  if (w < 1 || h < 1 || w > r->max_w || h > r->max_h)
    return tk_error(TK_ERANGE, "render size %dx%d is outside 1x1..%dx%d of this renderer", w, h, r->max_w,
                    r->max_h);
  int cam = camera ? mj_name2id(m, mjOBJ_CAMERA, camera) : -1;
  if (cam < 0) return camera_error(m, camera);

  r->cam.type = mjCAMERA_FIXED;
  r->cam.fixedcamid = cam;
  mjv_updateScene(m, d, &r->opt, &r->pert, &r->cam, mjCAT_ALL, &r->scn); /* no GL */

  pthread_rwlock_wrlock(&g_render_lock); /* exclusive: see g_render_lock */
  int rc = ctx_current(r, 1);
  if (rc) {
    pthread_rwlock_unlock(&g_render_lock);
    return rc;
  }
  mjrRect vp = {0, 0, w, h};
  mjr_setBuffer(mjFB_OFFSCREEN, &r->con);
  r->scn.flags[mjRND_SEGMENT] = (mjtByte)segment;
  r->scn.flags[mjRND_IDCOLOR] = (mjtByte)segment;
  mjr_render(vp, &r->scn, &r->con);
  r->scn.flags[mjRND_SEGMENT] = 0;
  r->scn.flags[mjRND_IDCOLOR] = 0;
  mjr_readPixels(r->buf, NULL, vp, &r->con); /* glReadPixels: waits for the rasterizer */
  rc = ctx_current(r, 0);
  pthread_rwlock_unlock(&g_render_lock);
  return rc;
}

int cap_render_camera(capRender *r, const mjModel *m, mjData *d, const char *camera, int w, int h,
                      uint8_t *rgb) {
  if (!r || !m || !d || !rgb) return tk_error(TK_EINVAL, "cap_render_camera: null argument");
  int rc = render_buf(r, m, d, camera, w, h, 0);
  if (rc) return rc;

  size_t row = (size_t)w * 3;
  for (int y = 0; y < h; y++)
    memcpy(rgb + (size_t)y * row, r->buf + (size_t)(h - 1 - y) * row, row);
  return 0;
}

int cap_render_segment(capRender *r, const mjModel *m, mjData *d, const char *camera, int w, int h,
                       int32_t *geom) {
  if (!r || !m || !d || !geom) return tk_error(TK_EINVAL, "cap_render_segment: null argument");
  int rc = render_buf(r, m, d, camera, w, h, 1);
  if (rc) return rc;
  /* mjRND_IDCOLOR: colour (r, g, b) = segid + 1 as r + 256 g + 65536 b; 0 is the background */
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      const uint8_t *p = r->buf + ((size_t)(h - 1 - y) * (size_t)w + (size_t)x) * 3;
      int id = (int)p[0] + ((int)p[1] << 8) + ((int)p[2] << 16) - 1;
      int g = -1;
      if (id >= 0 && id < r->scn.ngeom && r->scn.geoms[id].objtype == mjOBJ_GEOM) g = r->scn.geoms[id].objid;
      geom[(size_t)y * (size_t)w + (size_t)x] = g;
    }
  return 0;
}

void cap_render_free(capRender *r) {
  if (!r) return;
  pthread_rwlock_wrlock(&g_render_lock);
  pthread_mutex_lock(&g_lock);
  if (r->backend != BK_NONE) {
    int cur = ctx_current(r, 1) == 0;
    if (cur && r->con_made) mjr_freeContext(&r->con); /* GL objects: needs the context */
    if (cur) ctx_current(r, 0);
    ctx_destroy(r);
  }
  pthread_mutex_unlock(&g_lock);
  pthread_rwlock_unlock(&g_render_lock);
  if (r->scn_made) mjv_freeScene(&r->scn);
  free(r->buf);
  free(r);
}
