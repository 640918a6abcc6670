/* dataset/ds_watch.c -- the open watchdog: a check that may never return runs in a child process.
 *
 * Some damage sends libhdf5 into an endless loop, and nothing interrupts a thread inside the library
 * (a thread left looping there would also hold HDF5's global lock for ever: every later HDF5 call of the
 * process would wait on it). So with a timeout set, ds_open and ds_validate fork a child that does the
 * risky reads (the whole check) and sends its findings back through a pipe, while the calling thread
 * watches a progress counter the child bumps in shared memory at every step. No progress for the timeout:
 * the child is killed (SIGKILL), and the call returns TK_ETIMEOUT with a message naming the file and what
 * was being read. The host process and its HDF5 state are untouched; a crash of the library in the child
 * (SIGSEGV on a damaged file) becomes an error too. Every open has its own child, pipe and counter.
 *
 * Forking a threaded process: only the calling thread lives on in the child. If another thread was inside
 * HDF5 at the fork, the child inherits HDF5's lock held by a thread that does not exist there, and its first
 * HDF5 call never returns; the child says when it got past that call, and a child that does not within
 * a short wait is killed and forked again. The child ends with _exit: no atexit handler runs, so HDF5 never
 * flushes or closes the parent's files from there. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ds_internal.h"

static _Atomic double open_timeout; /* seconds, 0: no watchdog */

void ds_set_open_timeout(double seconds) {
  atomic_store(&open_timeout, seconds > 0 && isfinite(seconds) ? seconds : 0);
}
double ds_open_timeout(void) { return atomic_load(&open_timeout); }

/* One open's watch, in memory shared (MAP_SHARED) by the parent and its child. */
struct dsWatch {
  _Atomic uint64_t ticks; /* bumped by the child at every step */
  _Atomic int ready;      /* the child got through its first HDF5 call */
  int fd;                 /* child: the write end of the pipe */
  char what[512];         /* child: what it reads now; the parent reads it once the child is stopped */
};

void ds_watch_note(dsWatch *w, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(w->what, sizeof w->what, fmt, ap);
  va_end(ap);
  atomic_fetch_add(&w->ticks, 1);
}

typedef struct {
  uint32_t type;
  uint32_t pad;
  uint64_t n;
} recHead;

static int write_all(int fd, const void *buf, size_t n) {
  const char *p = buf;
  while (n > 0) {
    ssize_t r = write(fd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    p += r;
    n -= (size_t)r;
  }
  return 0;
}

int ds_watch_send(dsWatch *w, int type, const void *buf, size_t n) {
  recHead h = {(uint32_t)type, 0, n};
  atomic_fetch_add(&w->ticks, 1);
  return write_all(w->fd, &h, sizeof h) || write_all(w->fd, buf, n) ? -1 : 0;
}

#define WATCH_END 0      /* sent by the runner after child() returned */
#define BUSY_TRIES 5     /* forks that inherited a held HDF5 lock, before giving up */
#define READY_WAIT_S 2.0 /* how long a child may take to get through its first HDF5 call */

/* Records received so far (buf[0..len)), delivered from buf[done]. */
typedef struct {
  char *buf;
  size_t len, cap, done;
  int ended;
} recv_t;

/* Deliver every complete record; on_record's error when it refused one. */
static int deliver(recv_t *r, dsWatchRecord on_record, void *user) {
  while (r->len - r->done >= sizeof(recHead)) {
    recHead h;
    memcpy(&h, r->buf + r->done, sizeof h);
    if (r->len - r->done - sizeof h < h.n) break;
    const char *payload = r->buf + r->done + sizeof h;
    r->done += sizeof h + h.n;
    if (h.type == WATCH_END)
      r->ended = 1;
    else {
      int rc = on_record((int)h.type, payload, (size_t)h.n, user);
      if (rc) return rc;
    }
  }
  if (r->done == r->len) r->len = r->done = 0;
  return 0;
}

/* Read what the pipe holds now (non-blocking). 1: got bytes, 0: nothing, -1: out of memory. */
static int slurp(int fd, recv_t *r) {
  int got = 0;
  for (;;) {
    if (r->cap - r->len < 65536) {
      size_t nc = r->cap ? r->cap * 2 : 131072;
      char *nb = realloc(r->buf, nc);
      if (!nb) return -1;
      r->buf = nb;
      r->cap = nc;
    }
    ssize_t n = read(fd, r->buf + r->len, r->cap - r->len);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return got;
    r->len += (size_t)n;
    got = 1;
  }
}

/* One fork. *busy: the child never got through its first HDF5 call (retry). */
static int run_once(const char *path, double timeout, dsWatchChild child, void *arg, dsWatchRecord on_record,
                    void *user, int *busy) {
  *busy = 0;
  dsWatch *w = mmap(NULL, sizeof *w, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (w == MAP_FAILED) return tk_error(TK_EIO, "%s: open watchdog: shared memory: %s", path, strerror(errno));
  memset(w, 0, sizeof *w);
  int p[2];
  if (pipe2(p, O_CLOEXEC)) {
    int e = errno;
    munmap(w, sizeof *w);
    return tk_error(TK_EIO, "%s: open watchdog: pipe: %s", path, strerror(e));
  }
  pid_t pid = fork();
  if (pid < 0) {
    int e = errno;
    close(p[0]);
    close(p[1]);
    munmap(w, sizeof *w);
    return tk_error(TK_EIO, "%s: open watchdog: fork: %s", path, strerror(e));
  }
  if (pid == 0) { /* the child: check, report, _exit (never return into the caller's code) */
    close(p[0]);
    w->fd = p[1];
    ds_h5_init(); /* the first HDF5 call: waits for ever on a lock another thread held at the fork */
    atomic_store(&w->ready, 1);
    int st = child(w, arg);
    recHead end = {WATCH_END, 0, 0};
    if (!st) st = write_all(p[1], &end, sizeof end);
    _exit(st ? 1 : 0);
  }
  close(p[1]);
  fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
  recv_t r = {0};
  int rc = 0, status = 0, reaped = 0;
  uint64_t last = 0;
  double since = tk_now_s();
  /* The child's end is its END record, not end of file: a child forked meanwhile by another thread of
   * this process may hold a copy of the pipe's write end. */
  while (!rc) {
    struct pollfd pf = {p[0], POLLIN, 0};
    poll(&pf, 1, 100);
    int got = slurp(p[0], &r);
    if (got < 0) rc = tk_error(TK_ENOMEM, "%s: out of memory", path);
    if (!rc) rc = deliver(&r, on_record, user);
    if (rc) break;
    if (r.ended) {
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      reaped = 1;
      break;
    }
    pid_t wr = waitpid(pid, &status, WNOHANG);
    if (wr == pid || (wr < 0 && errno == ECHILD)) { /* ended without its END record */
      reaped = 1;
      if (slurp(p[0], &r) > 0 && !deliver(&r, on_record, user) && r.ended) break;
      if (wr == pid && WIFSIGNALED(status))
        rc = tk_error(TK_EFORMAT,
                      "%s: the HDF5 library crashed (signal %d) while reading %s: the file is damaged", path,
                      WTERMSIG(status), w->what[0] ? w->what : "the file");
      else
        rc = tk_error(TK_EIO, "%s: the check of the file ended without a result (while reading %s)", path,
                      w->what[0] ? w->what : "the file");
      break;
    }
    uint64_t t = atomic_load(&w->ticks);
    double now = tk_now_s();
    if (t != last || got) {
      last = t;
      since = now;
    } else if (!atomic_load(&w->ready) && now - since > READY_WAIT_S) { /* not the file: the lock */
      *busy = 1;
      rc = tk_error(TK_EBUSY, "%s: the HDF5 library was in use by another thread at each of %d tries", path,
                    BUSY_TRIES);
    } else if (now - since > timeout) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
      }
      reaped = 1;
      rc = tk_error(
          TK_ETIMEOUT,
          "%s: no progress for %.0f s while reading %s: the file is damaged in a way the HDF5 library "
          "does not detect (it loops); giving up",
          path, timeout, w->what[0] ? w->what : "the file");
    }
  }
  if (!reaped) {
    kill(pid, SIGKILL);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
  }
  close(p[0]);
  free(r.buf);
  munmap(w, sizeof *w);
  return rc;
}

int ds_watch_run(const char *path, double timeout, dsWatchChild child, void *arg, dsWatchRecord on_record,
                 void *user) {
  int busy = 0, rc = 0;
  for (int i = 0; i < BUSY_TRIES; i++) {
    rc = run_once(path, timeout, child, arg, on_record, user, &busy);
    if (!busy) break;
  }
  return rc;
}
