/* core/tk_progress.c -- a one-line progress bar on stderr (terminal only, or TK_PROGRESS=1). */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tk.h"

void tk_progress_begin(tkProgress *p, const char *label, int64_t total) {
  memset(p, 0, sizeof *p);
  p->label = label;
  p->total = total;
  p->t0 = tk_now_s();
  int64_t f; /* TK_PROGRESS=0|1, else a terminal; a bad value is refused by tk_env_check in main */
  p->enabled = !tk_env_int("TK_PROGRESS", 0, 1, -1, &f) && f >= 0 ? (int)f : isatty(STDERR_FILENO);
}

static void draw(tkProgress *p, int final) {
  double el = tk_now_s() - p->t0;
  double rate = el > 0 ? (double)p->done / el : 0;
  double frac = p->total > 0 ? (double)p->done / (double)p->total : 0;
  if (frac > 1) frac = 1;
  char bar[31];
  int fill = (int)(frac * 30);
  for (int i = 0; i < 30; i++)
    bar[i] = i < fill ? '#' : '.';
  bar[30] = 0;
  double eta = rate > 0 && p->total > p->done ? (double)(p->total - p->done) / rate : 0;
  fprintf(stderr, "\r%s [%s] %lld/%lld %.0f/s eta %.0fs %s\033[K%s", p->label ? p->label : "", bar,
          (long long)p->done, (long long)p->total, rate, eta, p->extra, final ? "\n" : "");
  fflush(stderr);
}

void tk_progress_update(tkProgress *p, int64_t done, const char *extra_fmt, ...) {
  p->done = done;
  if (extra_fmt) {
    va_list ap;
    va_start(ap, extra_fmt);
    vsnprintf(p->extra, sizeof p->extra, extra_fmt, ap);
    va_end(ap);
  }
  if (!p->enabled) return;
  double now = tk_now_s();
  if (now - p->last_draw < 0.1 && done < p->total) return;
  p->last_draw = now;
  draw(p, 0);
}

void tk_progress_end(tkProgress *p) {
  if (p->enabled) draw(p, 1);
}
