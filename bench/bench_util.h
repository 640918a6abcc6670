/* bench/bench_util.h -- small helpers the benchmark programs share (header only). */
#ifndef BENCH_UTIL_H
#define BENCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* qsort order of doubles */
static inline int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Run a command; the value of key= on the first output line that has it (and line_has, if not NULL),
 * that line copied to line_out (if not NULL); < 0 when none. */
static inline double run_value(const char *cmd, const char *key, const char *line_has, char *line_out,
                               size_t n) {
  FILE *p = popen(cmd, "r");
  if (!p) return -1;
  char line[4096];
  double v = -1;
  size_t kl = strlen(key);
  while (fgets(line, sizeof line, p)) {
    if (line_has && !strstr(line, line_has)) continue;
    for (char *m = strstr(line, key); m; m = strstr(m + 1, key))
      if ((m == line || m[-1] == ' ') && m[kl] == '=') {
        v = atof(m + kl + 1);
        if (line_out) snprintf(line_out, n, "%s", line);
        break;
      }
    if (v >= 0) break;
  }
  pclose(p);
  return v;
}

#endif
