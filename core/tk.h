/* core/tk.h -- shared helpers for every module of the toolkit (prefix tk_).
 *
 * Errors: functions return int (0 ok, negative TK_E* code) or NULL, and set a
 * thread-local message with tk_error(). Only main() prints and exits.
 */
#ifndef TK_H
#define TK_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---------------------------------------------------------------- */
enum {
  TK_OK = 0,
  TK_EINVAL = -1,    /* bad argument or option */
  TK_EIO = -2,       /* operating-system or library I/O failure */
  TK_ENOMEM = -3,    /* allocation failed */
  TK_EFORMAT = -4,   /* a file's content is malformed or of another format */
  TK_ENOTFOUND = -5, /* a named thing does not exist */
  TK_ERANGE = -6,    /* a value is out of its allowed range (NaN, huge dims) */
  TK_EBUSY = -7,     /* resource locked by someone else */
  TK_EVERSION = -8,  /* format version not supported */
  TK_EINTR = -9,     /* interrupted by the user */
  TK_ETIMEOUT = -10, /* no progress within a time limit */
};

#define TK_ERRMSG_MAX 1024

/* Set the thread-local message (printf format) and return code. */
int tk_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefix the current message with "prefix: " and return code (for adding context). */
int tk_error_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *tk_errmsg(void); /* the message, "" if none */
void tk_error_clear(void);
const char *tk_strerror(int code); /* short name for a code */

/* ---- logging --------------------------------------------------------------- */
typedef enum {
  TK_LOG_DEBUG = 0,
  TK_LOG_INFO = 1,
  TK_LOG_WARN = 2,
  TK_LOG_ERROR = 3,
  TK_LOG_OFF = 4
} tkLogLevel;
void tk_log_set_level(tkLogLevel level); /* default INFO, or from env TK_LOG=debug|info|warn|error|off */
tkLogLevel tk_log_level(void);
void tk_log(tkLogLevel level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define tk_debug(...) tk_log(TK_LOG_DEBUG, __VA_ARGS__)
#define tk_info(...) tk_log(TK_LOG_INFO, __VA_ARGS__)
#define tk_warn(...) tk_log(TK_LOG_WARN, __VA_ARGS__)
/* Print "prog: <message>" for the current error to stderr (used by main()). */
void tk_die_msg(const char *prog);

/* ---- monotonic clock and loop pacing -------------------------------------- */
int64_t tk_now_ns(void);                     /* CLOCK_MONOTONIC, nanoseconds */
double tk_now_s(void);                       /* CLOCK_MONOTONIC, seconds */
void tk_sleep_until_ns(int64_t deadline_ns); /* absolute deadline, EINTR-safe */

/* Fixed-rate loop on absolute deadlines: no drift, missed deadlines counted. */
typedef struct {
  int64_t period_ns;    /* loop period, ns */
  int64_t start_ns;     /* time of tk_pacer_start, ns */
  int64_t next_ns;      /* next absolute deadline, ns */
  int64_t ticks;        /* completed waits */
  int64_t missed;       /* waits that found the deadline already passed */
  int64_t last_late_ns; /* lateness of the last wake-up vs its deadline, ns */
} tkPacer;
void tk_pacer_start(tkPacer *p, double hz);
/* Sleep until the next deadline; returns 1 if it was already missed (the
 * schedule then skips ahead to the next future deadline), else 0. */
int tk_pacer_wait(tkPacer *p);
double tk_pacer_rate(const tkPacer *p); /* achieved ticks per second so far */

/* ---- seeded RNG (xoshiro256**, seeded through splitmix64) ------------------ */
typedef struct {
  uint64_t s[4];
} tkRng;
void tk_rng_seed(tkRng *r, uint64_t seed);
uint64_t tk_rng_u64(tkRng *r);
double tk_rng_uniform(tkRng *r); /* [0,1) */
double tk_rng_range(tkRng *r, double lo, double hi);
double tk_rng_normal(tkRng *r);              /* standard normal */
uint64_t tk_rng_below(tkRng *r, uint64_t n); /* uniform in [0,n), unbiased; n>0 */
void tk_rng_shuffle(tkRng *r, int64_t *v, int64_t n);
/* Independent stream for worker i (jump-free: reseeds from (seed, i)). */
void tk_rng_fork(const tkRng *parent, uint64_t stream, tkRng *child);

/* ---- progress bar ------------------------------------------------------------ */
typedef struct {
  const char *label;
  int64_t total;
  int64_t done;
  double t0, last_draw;
  int enabled; /* draws only to a terminal unless forced */
  char extra[160];
} tkProgress;
void tk_progress_begin(tkProgress *p, const char *label, int64_t total);
void tk_progress_update(tkProgress *p, int64_t done, const char *extra_fmt, ...)
    __attribute__((format(printf, 3, 4)));
void tk_progress_end(tkProgress *p);

/* ---- files ------------------------------------------------------------------ */
/* fsync the directory containing path (after a rename). */
int tk_fsync_dir_of(const char *path);
/* fsync a file by name. */
int tk_fsync_file(const char *path);
/* The durable replace: fsync tmp, rename it to dst, fsync dst's directory. */
int tk_durable_rename(const char *tmp, const char *dst);
/* Copy a file (copy_file_range, falling back to read/write), then fsync dst. */
int tk_copy_file(const char *src, const char *dst);
int tk_file_exists(const char *path);
int64_t tk_file_size(const char *path); /* <0 on error */
/* Read a whole file into a NUL-terminated malloc'd buffer (refused past 1 GiB). */
int tk_read_text(const char *path, char **out, size_t *len);
/* The same with a limit of max bytes: a larger file is refused naming the limit. */
int tk_read_text_max(const char *path, size_t max, char **out, size_t *len);
/* A temp file next to dst that is ours alone: created with O_EXCL as "<dir>/.<base>.<random>.tmp"
 * (never "<dst>.tmp", which may be a user's file). The name goes to buf; returns an open fd
 * (the caller closes it, or reopens the name with HDF5) or a negative error. */
int tk_temp_beside(const char *dst, char *buf, size_t n);
/* The file a path names, for writing it by temp + rename: a symlink is followed to its target (so
 * the link stays a link and the target is what changes); any other path is copied as it is. A
 * dangling link is refused. */
int tk_resolve_link(const char *path, char *buf, size_t n);
/* True for a name made by tk_temp_beside (so a leftover can be recognized and removed). */
int tk_is_temp_name(const char *base);

/* ---- JSON helpers over cJSON (opaque to avoid leaking cJSON into headers) --- */
struct cJSON;
/* Parse a JSON file (a config: refused past 8 MiB); the error names the file and position. */
int tk_json_load(const char *path, struct cJSON **out);
double tk_json_num(const struct cJSON *obj, const char *key, double dflt);
const char *tk_json_str(const struct cJSON *obj, const char *key, const char *dflt);
int tk_json_bool(const struct cJSON *obj, const char *key, int dflt);

/* The one strict config reader. A config is a JSON object whose keys and value types a table of
 * fields states; tk_json_check refuses, naming where (the file) and the key:
 *   a top-level value that is not an object      "arm.json: expected a JSON object {...}, not an array"
 *   a key not in the table (a misspelt setting)   "arm.json: unknown key \"maxstep\" (known: ...)"
 *   a value of another type or out of its range   "arm.json: \"max_step\" must be a number in [0.0001, 3.2]"
 *   a key given twice, a required key missing.
 * Nested objects (and arrays of objects) are checked against their field's sub-table, the place
 * named as "arm.json: joints[2]". Tables end with a row whose key is NULL. */
enum {
  TK_JSON_NUMBER = 1 << 0, /* a finite number */
  TK_JSON_INT = 1 << 1,    /* an exact integer (|x| <= 2^53) */
  TK_JSON_BOOL = 1 << 2,
  TK_JSON_STRING = 1 << 3,
  TK_JSON_ARRAY = 1 << 4,
  TK_JSON_OBJECT = 1 << 5,
  TK_JSON_NULL = 1 << 6,
};
typedef struct tkJsonField {
  const char *key;
  unsigned types; /* TK_JSON_* bits the value may be */
  int required;
  double lo, hi;                 /* unless both 0: a number's range, or an array's item count */
  unsigned items;                /* an array's items must be of these types (0: any) */
  const struct tkJsonField *sub; /* an object value, or an array's object items, follow this table */
} tkJsonField;
int tk_json_check(const struct cJSON *obj, const tkJsonField *fields, const char *where);
/* tk_json_load (8 MiB limit) and tk_json_check with the path as the place: every config file goes
 * through here. */
int tk_json_load_object(const char *path, const tkJsonField *fields, struct cJSON **out);

/* ---- small utils ------------------------------------------------------------ */
#define TK_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define TK_MIN(a, b) ((a) < (b) ? (a) : (b))
#define TK_MAX(a, b) ((a) > (b) ? (a) : (b))
/* snprintf into a fixed buffer; returns TK_ERANGE on truncation. */
int tk_snprintf(char *buf, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Parse helpers: whole-string number parses; TK_EINVAL for anything else (NaN, infinities and
 * out-of-range values included: every number a user types is finite). */
int tk_parse_i64(const char *s, int64_t *out);
int tk_parse_f64(const char *s, double *out);
/* The one parser for every numeric option (command line, config file, environment variable):
 * the whole string, finite, within [lo, hi]; for tk_opt_int an exact integer ("3", "1e3"; not
 * "2.5", not past int64). On failure the message is "<name> <value>: expected ...". */
int tk_opt_f64(const char *name, const char *v, double lo, double hi, double *out);
int tk_opt_int(const char *name, const char *v, int64_t lo, int64_t hi, int64_t *out);
/* A hexadecimal option (a USB VID:PID half): the whole string of hex digits ("0x" allowed), <= hi. */
int tk_opt_hex(const char *name, const char *v, uint64_t hi, uint64_t *out);
/* Environment variables through the same checks: unset or empty gives dflt; anything else must parse
 * ("environment variable DK_OPEN_TIMEOUT=abc: expected a number in [0, 1e+06]"). */
int tk_env_f64(const char *name, double lo, double hi, double dflt, double *out);
int tk_env_int(const char *name, int64_t lo, int64_t hi, int64_t dflt, int64_t *out);
/* The core's own variables (TK_LOG, TK_PROGRESS), checked once by every main before any work;
 * a bad value is a usage error there, never silently the default. */
int tk_env_check(void);

/* ---- growing strings ---------------------------------------------------------- */
/* Zero-initialized: empty. p is NUL-terminated once anything was added. A failed allocation sets oom,
 * after which every call adds nothing (check oom once at the end). */
typedef struct {
  char *p;
  size_t n, cap;
  int oom;
} tkStr;
/* Room for `more` bytes and the NUL: where they go (p + n), NULL after a failed allocation. The caller
 * writes them, then adds them to n and terminates. */
char *tk_str_reserve(tkStr *b, size_t more);
void tk_str_put(tkStr *b, const char *s, size_t n);
void tk_str_puts(tkStr *b, const char *s);
void tk_str_printf(tkStr *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
tkStr *tk_str_reset(tkStr *b);          /* empty again, keeping its memory */
const char *tk_str_get(const tkStr *b); /* its text, "" when empty or after a failed allocation */
void tk_str_free(tkStr *b);             /* and empty */

/* ---- names and strings that must fit --------------------------------------- */
/* Copy src into dst[n] whole, or refuse: TK_ERANGE "<what> '<src...>' is longer than <n-1> bytes".
 * The one rule for every fixed-size name buffer: never cut silently. */
int tk_copy_name(char *dst, size_t n, const char *src, const char *what);

#ifdef __cplusplus
}
#endif
#endif
