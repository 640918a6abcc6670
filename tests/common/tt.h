/* tests/common/tt.h -- small helpers shared by the Criterion suites. */
#ifndef TT_H
#define TT_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* A fresh temporary directory per call (under $TMPDIR or /tmp); never removed on failure
 * so a failing test leaves its files to look at. */
static inline const char *tt_tmpdir(void) {
  static _Thread_local char buf[4096];
  const char *base = getenv("TMPDIR");
  snprintf(buf, sizeof buf, "%s/dktest.XXXXXX", base && base[0] ? base : "/tmp");
  if (!mkdtemp(buf)) {
    perror("mkdtemp");
    abort();
  }
  return buf;
}

/* A file name in a fresh temporary directory (tt_tmpdir); the last 8 names stay valid. */
static inline char *tt_tmp_path(const char *name) {
  static _Thread_local char buf[8][4096];
  static _Thread_local int k;
  char *b = buf[k++ % 8];
  snprintf(b, 4096, "%s/%s", tt_tmpdir(), name);
  return b;
}

/* Path of a file under the build or source tree (env DK_BUILD / DK_SRC set by meson). */
static inline const char *tt_build(const char *rel) {
  static _Thread_local char buf[2][4096];
  static _Thread_local int k;
  k ^= 1;
  const char *b = getenv("DK_BUILD");
  snprintf(buf[k], sizeof buf[k], "%s/%s", b ? b : DK_BUILD_DEFAULT, rel);
  return buf[k];
}
static inline const char *tt_src(const char *rel) {
  static _Thread_local char buf[2][4096];
  static _Thread_local int k;
  k ^= 1;
  const char *b = getenv("DK_SRC");
  snprintf(buf[k], sizeof buf[k], "%s/%s", b ? b : DK_SRC_DEFAULT, rel);
  return buf[k];
}

/* Run a shell command; returns its exit status (or 128+signal). Output to *out if given
 * (malloc'd, NUL-terminated), else inherited. */
static inline int tt_run(char **out, const char *fmt, ...) {
  char cmd[8192];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  if (len < 0 || (size_t)len >= sizeof cmd) { /* a cut command would run something else */
    fprintf(stderr, "tt_run: command of %d bytes is longer than %zu\n", len, sizeof cmd - 1);
    abort();
  }
  if (!out) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  }
  char full[8300];
  snprintf(full, sizeof full, "(%s) 2>&1", cmd);
  FILE *p = popen(full, "r");
  if (!p) return -1;
  size_t cap = 4096, n = 0;
  char *b = malloc(cap);
  size_t r;
  while (b && (r = fread(b + n, 1, cap - n - 1, p)) > 0) {
    n += r;
    if (cap - n < 1024) {
      cap *= 2;
      b = realloc(b, cap);
    }
  }
  if (b) b[n] = 0;
  int st = pclose(p);
  *out = b;
  return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
}

#endif
