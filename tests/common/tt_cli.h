/* tests/common/tt_cli.h -- helpers for end-to-end suites that drive the real binaries: a pool of
 * buffers freed when the suite ends (so a failed assertion leaks nothing), whole-file reads, and
 * commands with stdout and stderr captured apart. Include after criterion.h and tt.h; each suite
 * declares TestSuite(name, .fini = tt_pool_free). */
#ifndef TT_CLI_H
#define TT_CLI_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void *tt_pool[512];
static int tt_npool;

/* Keep a malloc'd buffer until the suite ends; returns it. */
static inline void *keep(void *s) {
  if (s && tt_npool < (int)(sizeof tt_pool / sizeof tt_pool[0])) tt_pool[tt_npool++] = s;
  return s;
}

static inline void tt_pool_free(void) {
  for (int i = 0; i < tt_npool; i++)
    free(tt_pool[i]);
  tt_npool = 0;
}

/* A whole file, NUL-terminated (pooled); NULL if it cannot be read. */
static inline char *slurp(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, len = 0, r;
  char *b = malloc(cap);
  while (b && (r = fread(b + len, 1, cap - len - 1, f)) > 0) {
    len += r;
    if (cap - len < 1024) b = realloc(b, cap *= 2);
  }
  fclose(f);
  if (b) b[len] = 0;
  if (n) *n = len;
  return keep(b);
}

static inline long file_size(const char *path) {
  struct stat st;
  return stat(path, &st) ? -1 : (long)st.st_size;
}

/* Run a shell command with stdout and stderr captured apart (files under dir); returns the exit
 * status like tt_run. *out and *err belong to the pool. */
static inline int run2(const char *dir, char **out, char **err, const char *fmt, ...) {
  static int seq;
  char cmd[8192], po[4200], pe[4200];
  va_list ap;
  va_start(ap, fmt);
  int len = vsnprintf(cmd, sizeof cmd, fmt, ap);
  va_end(ap);
  cr_assert(len >= 0 && (size_t)len < sizeof cmd - 100, "run2: a command of %d bytes is too long", len);
  seq++;
  snprintf(po, sizeof po, "%s/.stdout.%d", dir, seq);
  snprintf(pe, sizeof pe, "%s/.stderr.%d", dir, seq);
  int rc = tt_run(NULL, "%s >%s 2>%s", cmd, po, pe);
  *out = slurp(po, NULL);
  *err = slurp(pe, NULL);
  cr_assert(*out && *err, "cannot read the output of %s", cmd);
  return rc;
}

static inline int count_lines(const char *s) {
  int n = 0;
  for (; *s; s++)
    n += *s == '\n';
  return n;
}

/* A whole, plausible PNG: signature, IHDR first with a sane size, IEND last. */
static inline void png_ok(const char *path) {
  size_t n = 0;
  char *b = slurp(path, &n);
  cr_assert(b, "%s was not written", path);
  static const unsigned char sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  cr_assert(n > 1000, "%s: only %zu bytes", path, n);
  cr_assert_eq(memcmp(b, sig, 8), 0, "%s: no PNG signature", path);
  cr_assert_eq(memcmp(b + 12, "IHDR", 4), 0, "%s: no IHDR chunk first", path);
  const unsigned char *u = (const unsigned char *)b;
  unsigned w = (unsigned)u[16] << 24 | (unsigned)u[17] << 16 | (unsigned)u[18] << 8 | u[19];
  unsigned h = (unsigned)u[20] << 24 | (unsigned)u[21] << 16 | (unsigned)u[22] << 8 | u[23];
  cr_assert(w >= 100 && h >= 100 && w < 10000 && h < 10000, "%s: %ux%u", path, w, h);
  cr_assert(!memcmp(b + n - 8, "IEND", 4), "%s: does not end with the IEND chunk (truncated?)", path);
}

/* Record demos through the real teleop binary with the scripted operator, unpaced; extra: more
 * teleop options (NULL: none). */
static inline void tt_record(const char *path, const char *task, int episodes, double noise, int seed,
                             const char *extra) {
  char *out = NULL, msg[1024];
  int rc =
      tt_run(&out,
             "%s --task %s --device scripted --headless --episodes %d --noise %g --seed %d --fast --quiet %s "
             "--out %s",
             tt_build("teleop/teleop"), task, episodes, noise, seed, extra ? extra : "", path);
  snprintf(msg, sizeof msg, "%s", out ? out : "");
  free(out);
  cr_assert_eq(rc, 0, "teleop: %s", msg);
}

/* Prefix of a command that runs a windowed program under a private X server; leak checking is off for
 * that process only (the X server's GL stack keeps its allocations). */
#define TT_XVFB "ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" xvfb-run -a -s '-screen 0 1280x720x24'"

#endif
