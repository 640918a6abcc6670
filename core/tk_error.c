/* core/tk_error.c -- thread-local error messages and logging. */
#include <ctype.h>
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
  case TK_ETIMEOUT: return "timed out";
  default: return "error";
  }
}

static int tk_level = -1;

/* TK_LOG's value as a level, -1 for anything else (unset is INFO) */
static int log_level_of(const char *e) {
  static const char *names[] = {"debug", "info", "warn", "error", "off"};
  if (!e || !*e) return TK_LOG_INFO;
  for (int i = 0; i < (int)TK_ARRAY_LEN(names); i++)
    if (!strcasecmp(e, names[i])) return i;
  return -1;
}

static void tk_log_init(void) {
  int l = log_level_of(getenv("TK_LOG"));
  tk_level = l < 0 ? TK_LOG_INFO : l; /* a bad value is refused by tk_env_check in main */
}

int tk_env_check(void) {
  const char *e = getenv("TK_LOG");
  if (log_level_of(e) < 0)
    return tk_error(TK_EINVAL, "environment variable TK_LOG=%s: expected debug, info, warn, error or off", e);
  int64_t k;
  return tk_env_int("TK_PROGRESS", 0, 1, 0, &k);
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

/* A number a user types is the whole string: strtoll/strtod would skip leading white space. */
static int blank_or_spaced(const char *s) { return !s || !*s || isspace((unsigned char)s[0]); }

int tk_parse_i64(const char *s, int64_t *out) {
  if (blank_or_spaced(s)) return tk_error(TK_EINVAL, "'%s' is not an integer", s ? s : "");
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (errno == ERANGE) return tk_error(TK_EINVAL, "'%s' is out of the 64-bit integer range", s);
  if (errno || *end || end == s) return tk_error(TK_EINVAL, "'%s' is not an integer", s);
  *out = v;
  return 0;
}

int tk_parse_f64(const char *s, double *out) {
  if (blank_or_spaced(s)) return tk_error(TK_EINVAL, "'%s' is not a number", s ? s : "");
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end || end == s) return tk_error(TK_EINVAL, "'%s' is not a number", s);
  /* ERANGE on underflow gives a usable (tiny or zero) value; overflow gives +-HUGE_VAL */
  if (!isfinite(v)) return tk_error(TK_EINVAL, "'%s' is not a finite number", s);
  *out = v;
  return 0;
}

/* The checks behind tk_opt_* and tk_env_*: 1 when v is a finite number in [lo, hi] (an exact integer
 * for the integer form), else 0. */
static int f64_ok(const char *v, double lo, double hi, double *out) {
  double x;
  if (!v || tk_parse_f64(v, &x) || !(x >= lo && x <= hi)) return 0;
  *out = x;
  return 1;
}

static int int_ok(const char *v, int64_t lo, int64_t hi, int64_t *out) {
  int64_t k;
  double x;
  if (v && !tk_parse_i64(v, &k)) {
  } else if (v && !tk_parse_f64(v, &x) && x == floor(x) && x >= -9223372036854775808.0 &&
             x < 9223372036854775808.0) { /* "1e6", exact; the cast is defined inside these bounds */
    errno = 0;
    if (strtod(v, NULL) == 0 && errno == ERANGE) return 0; /* "1e-400" is no integer, not 0 */
    k = (int64_t)x;
  } else {
    return 0;
  }
  if (k < lo || k > hi) return 0;
  *out = k;
  return 1;
}

int tk_opt_f64(const char *name, const char *v, double lo, double hi, double *out) {
  if (!f64_ok(v, lo, hi, out))
    return tk_error(TK_EINVAL, "%s %s: expected a number in [%g, %g]", name, v ? v : "(missing)", lo, hi);
  return 0;
}

int tk_opt_int(const char *name, const char *v, int64_t lo, int64_t hi, int64_t *out) {
  if (!int_ok(v, lo, hi, out))
    return tk_error(TK_EINVAL, "%s %s: expected an integer in [%lld, %lld]", name, v ? v : "(missing)",
                    (long long)lo, (long long)hi);
  return 0;
}

int tk_opt_hex(const char *name, const char *v, uint64_t hi, uint64_t *out) {
  uint64_t k = 0;
  const char *s = v;
  if (s && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) s += 2;
  int n = 0, ok = s && *s;
  for (; ok && *s; s++, n++) {
    int d = isdigit((unsigned char)*s) ? *s - '0' : isxdigit((unsigned char)*s) ? tolower(*s) - 'a' + 10 : -1;
    if (d < 0 || k > (UINT64_MAX >> 4)) {
      ok = 0;
      break;
    }
    k = k << 4 | (uint64_t)d;
  }
  if (!ok || k > hi)
    return tk_error(TK_EINVAL, "%s %s: expected a hexadecimal number in [0, %llx]", name, v ? v : "(missing)",
                    (unsigned long long)hi);
  *out = k;
  return 0;
}

int tk_env_f64(const char *name, double lo, double hi, double dflt, double *out) {
  const char *v = getenv(name);
  *out = dflt;
  if (!v || !*v) return 0;
  if (!f64_ok(v, lo, hi, out))
    return tk_error(TK_EINVAL, "environment variable %s=%s: expected a number in [%g, %g]", name, v, lo, hi);
  return 0;
}

int tk_env_int(const char *name, int64_t lo, int64_t hi, int64_t dflt, int64_t *out) {
  const char *v = getenv(name);
  *out = dflt;
  if (!v || !*v) return 0;
  if (!int_ok(v, lo, hi, out))
    return tk_error(TK_EINVAL, "environment variable %s=%s: expected an integer in [%lld, %lld]", name, v,
                    (long long)lo, (long long)hi);
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
