/* tests/common/tt_proc.h -- a real binary run as a user runs it, watched while it runs: its
 * output (stdout and stderr together) is read line by line, so a test can act on what the
 * program says (press a key once it says "recording"), then collect its exit status.
 * Include after tt.h. */
#ifndef TT_PROC_H
#define TT_PROC_H

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
  pid_t pid;
  int fd;          /* read end of the program's output */
  char out[65536]; /* everything it said so far, NUL-terminated */
  size_t n;
  int status; /* exit status once reaped (128+signal), -1 before */
} ttProc;

static inline double tt_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static inline void tt_sleep(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
  }
}

/* Start argv[0] with argv (NULL-terminated), in the environment of this process. 0 on success. */
static inline int tt_proc_start(ttProc *p, char *const argv[]) {
  memset(p, 0, sizeof *p);
  p->status = -1;
  int fds[2];
  if (pipe(fds)) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test never leaves the program running */
    close(fds[0]);
    dup2(fds[1], 1);
    dup2(fds[1], 2);
    close(fds[1]);
    execv(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
  }
  close(fds[1]);
  p->pid = pid;
  p->fd = fds[0];
  return 0;
}

/* Read what the program says for up to secs; returns 1 as soon as its output contains want
 * (NULL: only read), 0 when the time is up or the output ended first. */
static inline int tt_proc_wait_for(ttProc *p, const char *want, double secs) {
  double end = tt_now() + secs;
  for (;;) {
    if (want && strstr(p->out, want)) return 1;
    double left = end - tt_now();
    if (left <= 0 || p->fd < 0) return 0;
    struct pollfd q = {.fd = p->fd, .events = POLLIN};
    int r = poll(&q, 1, (int)(left * 1000) + 1);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) continue;
    ssize_t k = read(p->fd, p->out + p->n, sizeof p->out - 1 - p->n);
    if (k <= 0) {
      close(p->fd);
      p->fd = -1;
      continue;
    }
    p->n += (size_t)k;
    p->out[p->n] = 0;
  }
}

/* Wait up to secs for the program to exit (reading its output meanwhile); then kill it if it is
 * still running. Returns its exit status (128+signal when killed). */
static inline int tt_proc_finish(ttProc *p, double secs) {
  double end = tt_now() + secs;
  int st;
  while (p->status < 0) {
    pid_t r = waitpid(p->pid, &st, WNOHANG);
    if (r == p->pid) {
      p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
      break;
    }
    if (tt_now() > end) {
      kill(p->pid, SIGKILL);
      waitpid(p->pid, &st, 0);
      p->status = 128 + SIGKILL;
      break;
    }
    tt_proc_wait_for(p, NULL, 0.05);
  }
  for (int i = 0; i < 10 && p->fd >= 0; i++) /* the rest of its output */
    tt_proc_wait_for(p, NULL, 0.2);
  return p->status;
}

#endif
