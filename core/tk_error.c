/* core/tk_error.c -- thread-local error messages and logging. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tk.h"

static _Thread_local char tk_msg[TK_ERRMSG_MAX];

int tk_error(int code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(tk_msg, sizeof tk_msg, fmt, ap);
  va_end(ap);
  return code;
}

int tk_error_wrap(int code, const char *fmt, ...) {
  char prefix[TK_ERRMSG_MAX], old[TK_ERRMSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(prefix, sizeof prefix, fmt, ap);
  va_end(ap);
  memcpy(old, tk_msg, sizeof old);
  if (old[0])
    snprintf(tk_msg, sizeof tk_msg, "%s: %s", prefix, old);
  else
    snprintf(tk_msg, sizeof tk_msg, "%s", prefix);
  return code;
}

const char *tk_errmsg(void) { return tk_msg; }
void tk_error_clear(void) { tk_msg[0] = 0; }

const char *tk_strerror(int code) {
  switch (code) {
  case TK_OK: return "ok";
  case TK_EINVAL: return "invalid argument";
  case TK_EIO: return "I/O error";
  case TK_ENOMEM: return "out of memory";
  case TK_EFORMAT: return "malformed file";
  case TK_ENOTFOUND: return "not found";
  case TK_ERANGE: return "out of range";
  case TK_EBUSY: return "busy";
  case TK_EVERSION: return "unsupported version";
  case TK_EINTR: return "interrupted";
  default: return "error";
  }
}

static int tk_level = -1;

static void tk_log_init(void) {
  const char *e = getenv("TK_LOG");
  tk_level = TK_LOG_INFO;
  if (!e) return;
  if (!strcasecmp(e, "debug"))
    tk_level = TK_LOG_DEBUG;
  else if (!strcasecmp(e, "info"))
    tk_level = TK_LOG_INFO;
  else if (!strcasecmp(e, "warn"))
    tk_level = TK_LOG_WARN;
  else if (!strcasecmp(e, "error"))
    tk_level = TK_LOG_ERROR;
  else if (!strcasecmp(e, "off"))
    tk_level = TK_LOG_OFF;
}

void tk_log_set_level(tkLogLevel level) { tk_level = (int)level; }
tkLogLevel tk_log_level(void) {
  if (tk_level < 0) tk_log_init();
  return (tkLogLevel)tk_level;
}

void tk_log(tkLogLevel level, const char *fmt, ...) {
  static const char *names[] = {"debug", "info", "warning", "error"};
  if ((int)level < (int)tk_log_level() || level >= TK_LOG_OFF) return;
  char line[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(line, sizeof line, fmt, ap);
  va_end(ap);
  if (level == TK_LOG_INFO)
    fprintf(stderr, "%s\n", line);
  else
    fprintf(stderr, "%s: %s\n", names[level], line);
}

void tk_die_msg(const char *prog) { fprintf(stderr, "%s: %s\n", prog, tk_msg[0] ? tk_msg : "unknown error"); }

int tk_snprintf(char *buf, size_t n, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf, n, fmt, ap);
  va_end(ap);
  if (k < 0 || (size_t)k >= n) return tk_error(TK_ERANGE, "string too long (%d bytes, limit %zu)", k, n);
  return 0;
}

int tk_parse_i64(const char *s, int64_t *out) {
  if (!s || !*s) return tk_error(TK_EINVAL, "empty number");
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno == ERANGE) return tk_error(TK_EINVAL, "'%s' is out of the 64-bit integer range", s);
  if (errno || *end || end == s) return tk_error(TK_EINVAL, "'%s' is not an integer", s);
  *out = v;
  return 0;
}

int tk_parse_f64(const char *s, double *out) {
  if (!s || !*s) return tk_error(TK_EINVAL, "empty number");
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end || end == s) return tk_error(TK_EINVAL, "'%s' is not a number", s);
  /* ERANGE on underflow gives a usable (tiny or zero) value; overflow gives +-HUGE_VAL */
  if (!isfinite(v)) return tk_error(TK_EINVAL, "'%s' is not a finite number", s);
  *out = v;
  return 0;
}

int tk_opt_f64(const char *name, const char *v, double lo, double hi, double *out) {
  double x;
  if (!v || tk_parse_f64(v, &x) || !(x >= lo && x <= hi))
    return tk_error(TK_EINVAL, "%s %s: expected a number in [%g, %g]", name, v ? v : "(missing)", lo, hi);
  *out = x;
  return 0;
}

int tk_opt_int(const char *name, const char *v, int64_t lo, int64_t hi, int64_t *out) {
  int64_t k;
  double x;
  int ok = 0;
  if (v && !tk_parse_i64(v, &k))
    ok = 1;
  else if (v && !tk_parse_f64(v, &x) && x == floor(x) && x >= -9223372036854775808.0 &&
           x < 9223372036854775808.0) /* "1e6", exact; the cast is defined inside these bounds */
    ok = 1, k = (int64_t)x;
  if (!ok || k < lo || k > hi)
    return tk_error(TK_EINVAL, "%s %s: expected an integer in [%lld, %lld]", name, v ? v : "(missing)",
                    (long long)lo, (long long)hi);
  *out = k;
  return 0;
}

int tk_copy_name(char *dst, size_t n, const char *src, const char *what) {
  size_t len = strlen(src);
  if (len >= n) {
    if (n) dst[0] = 0;
    return tk_error(TK_ERANGE, "%s '%.40s...' is longer than %zu bytes", what, src, n - 1);
  }
  memcpy(dst, src, len + 1);
  return 0;
}
