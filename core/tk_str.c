/* core/tk_str.c -- growing strings (tk.h). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tk.h"

char *tk_str_reserve(tkStr *b, size_t more) {
  if (b->oom) return NULL;
  if (b->n + more + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 65536;
    while (cap < b->n + more + 1)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) {
      b->oom = 1;
      return NULL;
    }
    b->p = q;
    b->cap = cap;
  }
  return b->p + b->n;
}

void tk_str_put(tkStr *b, const char *s, size_t n) {
  char *o = tk_str_reserve(b, n);
  if (!o) return;
  memcpy(o, s, n);
  b->n += n;
  b->p[b->n] = 0;
}

void tk_str_puts(tkStr *b, const char *s) { tk_str_put(b, s, strlen(s)); }

void tk_str_printf(tkStr *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (k < 0) {
    b->oom = 1;
    return;
  }
  char *o = tk_str_reserve(b, (size_t)k);
  if (!o) return;
  va_start(ap, fmt);
  vsnprintf(o, (size_t)k + 1, fmt, ap);
  va_end(ap);
  b->n += (size_t)k;
}

tkStr *tk_str_reset(tkStr *b) {
  b->n = 0;
  if (b->p) b->p[0] = 0;
  return b;
}

const char *tk_str_get(const tkStr *b) { return b->p && !b->oom ? b->p : ""; }

void tk_str_free(tkStr *b) {
  free(b->p);
  memset(b, 0, sizeof *b);
}
