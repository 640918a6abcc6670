/* tests/common/tt_xvfb.h -- a private X server for the windowed tests, and key presses on it
 * through the XTEST extension, which is what a keyboard does. Include after criterion.h.
 *
 * Display. start_xvfb starts its own Xvfb (`Xvfb -displayfd`: the server picks a free
 * display number itself and reports it, so parallel suites never race for one, unlike
 * `xvfb-run -a`) and points DISPLAY at it, for this process and the ones it spawns; the
 * server dies with the process that started it (PR_SET_PDEATHSIG). Keys: libXtst.so.6
 * (package libxtst6), opened at run time. */
#ifndef TT_XVFB_H
#define TT_XVFB_H

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <X11/Xlib.h>

/* Start an Xvfb on a display number of its choosing and point DISPLAY at it; returns its
 * pid, or 0 (DISPLAY left as it was) when it could not start. */
static inline pid_t start_xvfb(void) {
  int fds[2];
  if (pipe(fds)) return 0;
  pid_t pid = fork();
  if (pid < 0) return 0;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    close(fds[0]);
    int null = open("/dev/null", O_WRONLY);
    if (null >= 0) dup2(null, 1), dup2(null, 2);
    char fd[16];
    snprintf(fd, sizeof fd, "%d", fds[1]);
    execlp("Xvfb", "Xvfb", "-displayfd", fd, "-screen", "0", "1600x1000x24", "-nolisten", "tcp", "-noreset",
           (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  char buf[32] = "";
  size_t n = 0;
  struct pollfd p = {.fd = fds[0], .events = POLLIN};
  while (n < sizeof buf - 1 && !strchr(buf, '\n') && poll(&p, 1, 20000) > 0) {
    ssize_t k = read(fds[0], buf + n, sizeof buf - 1 - n);
    if (k <= 0) break;
    n += (size_t)k;
    buf[n] = 0;
  }
  close(fds[0]);
  int disp = -1;
  if (sscanf(buf, "%d", &disp) == 1 && disp >= 0) {
    char d[32];
    snprintf(d, sizeof d, ":%d", disp);
    setenv("DISPLAY", d, 1);
    return pid;
  }
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
  fprintf(stderr, "could not start Xvfb (is the xvfb package installed?)%s\n",
          getenv("DISPLAY") ? "; using $DISPLAY" : "");
  return 0;
}

static inline void stop_xvfb(pid_t pid) {
  if (pid <= 0) return;
  kill(pid, SIGTERM);
  waitpid(pid, NULL, 0);
}

/* ---- key presses through XTEST ---- */
typedef int (*PFN_XTestFakeKeyEvent)(Display *, unsigned int, Bool, unsigned long);

typedef struct {
  Display *dpy;
  void *lib;
  PFN_XTestFakeKeyEvent fake;
} xkeys;

static inline xkeys xkeys_open(void) {
  xkeys x = {0};
  x.dpy = XOpenDisplay(NULL);
  cr_assert(x.dpy, "XOpenDisplay(%s) failed", getenv("DISPLAY"));
  x.lib = dlopen("libXtst.so.6", RTLD_NOW | RTLD_LOCAL);
  cr_assert(x.lib, "libXtst.so.6 (package libxtst6) is needed to press keys on the X server: %s", dlerror());
  x.fake = (PFN_XTestFakeKeyEvent)dlsym(x.lib, "XTestFakeKeyEvent");
  cr_assert(x.fake);
  return x;
}

static inline void xkey(xkeys *x, KeySym sym, int down) {
  KeyCode kc = XKeysymToKeycode(x->dpy, sym);
  cr_assert(kc, "no keycode for keysym 0x%lx", (unsigned long)sym);
  x->fake(x->dpy, kc, down ? True : False, CurrentTime);
  XSync(x->dpy, False);
}

static inline void xkeys_close(xkeys *x) {
  XCloseDisplay(x->dpy);
  dlclose(x->lib);
}

#endif
