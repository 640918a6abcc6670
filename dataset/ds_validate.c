/* dataset/ds_validate.c -- checking a file: ds_open (stop at the first problem) and ds_validate (report
 * every problem), with the watchdog against HDF5 loops. Every problem is one line naming the file, the
 * demo and the dataset. Checking also fills the dsFile ds_load.c reads through (demos, schema, masks,
 * where contiguous datasets sit for raw reads). */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <time.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "ds_internal.h"

#define MAX_ROWS ((int64_t)1 << 36)  /* samples in one demo */
#define MAX_BYTES ((int64_t)1 << 40) /* logical bytes of one dataset */

/* ---- problem collection ---- */
typedef struct {
  const char *path;
  int count;
  int first_only; /* ds_open: stop at the first problem */
  int native;     /* written by this toolkit: the strict rules apply */
  int value_check;
  struct dsLoc *loc;    /* where the current demo's datasets are, for the loader */
  int rawfd;            /* the file opened plainly, for reading contiguous data without HDF5 */
  unsigned long fileno; /* the opened file's number (see raw_place) */
  int has_fileno;
  dsWatch *watch; /* with the watchdog on (the check runs in a child process): its progress */
  void (*report)(const char *line, void *user);
  void *user;
  char first[TK_ERRMSG_MAX]; /* the first problem, "<path>: <problem>" (the error message at the end) */
} vctx;

static void problem(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void problem(vctx *c, const char *fmt, ...) {
  char msg[TK_ERRMSG_MAX - 64];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  c->count++;
  if (c->count == 1) {
    tk_error(TK_EFORMAT, "%s: %s", c->path, msg);
    snprintf(c->first, sizeof c->first, "%s", tk_errmsg());
  }
  if (c->report) {
    char line[TK_ERRMSG_MAX];
    snprintf(line, sizeof line, "%s: %s", c->path, msg);
    c->report(line, c->user);
  }
}
#define STOP(c) ((c)->first_only && (c)->count > 0)

/* A step of the check: what the watchdog names if the next one never comes. */
static void progress(vctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress(vctx *c, const char *fmt, ...) {
  if (!c->watch) return;
  char what[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  ds_watch_note(c->watch, "%s", what);
}

/* ---- dataset inspection ---- */
typedef struct {
  int exists;
  int rank;
  hsize_t dims[8];
  dsDtype dtype;
  int dtype_ok;
  H5T_class_t cls;
  int enum_int; /* an enum over an integer type: how h5py stores numpy bools (0/1 flags) */
  size_t tsize;
  int64_t raw_off; /* where raw_place allows reading the bytes without HDF5 (else -1) */
  int raw_kind;    /* RAW_F32, RAW_F64, RAW_U8, or RAW_NONE */
} dinfo;

/* ---- reading values: the raw-read rule, and reads that convert ---- */
/* The raw-read rule, decided here and nowhere else. The NaN/Inf scan, the value checks and the
 * loader read a dataset's bytes with pread at H5Dget_offset in the opened file only when
 *  - the dataset object lives in that file: its file number is the opened file's (a dataset
 *    reached through an external link, directly or through a linked group, lives in another
 *    file, and its offset means nothing in ours; hard and soft links within the file are fine);
 *  - its stored type is exactly the native type the bytes are used as (H5Tequal with
 *    H5T_NATIVE_DOUBLE, _FLOAT or _UINT8: no byte order, precision, bit offset or enum to convert);
 *  - its layout is contiguous, without filters or external storage, and all of it is written.
 * Anything else is read through H5Dread, which converts. Returns RAW_* and sets *off. */
static int raw_place(hid_t d, hid_t dcpl, const unsigned long *fileno, int64_t *off) {
  *off = -1;
  H5O_info_t oi;
  if (!fileno || H5Oget_info2(d, &oi, H5O_INFO_BASIC) < 0 || oi.fileno != *fileno) {
    H5Eclear2(H5E_DEFAULT);
    return RAW_NONE;
  }
  hid_t t = H5Dget_type(d);
  if (t < 0) {
    H5Eclear2(H5E_DEFAULT);
    return RAW_NONE;
  }
  int kind = H5Tequal(t, H5T_NATIVE_DOUBLE) > 0  ? RAW_F64
             : H5Tequal(t, H5T_NATIVE_FLOAT) > 0 ? RAW_F32
             : H5Tequal(t, H5T_NATIVE_UINT8) > 0 ? RAW_U8
                                                 : RAW_NONE;
  size_t esz = H5Tget_size(t);
  H5Tclose(t);
  if (kind == RAW_NONE) return RAW_NONE;
  hid_t sp = H5Dget_space(d);
  hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  int ok = dcpl >= 0 && np > 0 && H5Pget_layout(dcpl) == H5D_CONTIGUOUS && H5Pget_nfilters(dcpl) == 0 &&
           H5Pget_external_count(dcpl) == 0 && H5Dget_storage_size(d) == (hsize_t)np * esz;
  haddr_t a = ok ? H5Dget_offset(d) : HADDR_UNDEF;
  if (sp >= 0) H5Sclose(sp);
  H5Eclear2(H5E_DEFAULT);
  if (a == HADDR_UNDEF || a > (haddr_t)INT64_MAX) return RAW_NONE;
  *off = (int64_t)a;
  return kind;
}

/* Open and describe a dataset; *keep (optional) receives the open id on success. */
/* keep (optional) receives the open dataset and keep_dcpl its creation property list (the caller
 * closes both); without keep both are closed here. */
static int inspect_keep(vctx *c, hid_t loc, const char *name, dinfo *di, hid_t *keep, hid_t *keep_dcpl);
static int inspect(vctx *c, hid_t loc, const char *name, dinfo *di) {
  return inspect_keep(c, loc, name, di, NULL, NULL);
}
static int inspect_keep(vctx *c, hid_t loc, const char *name, dinfo *di, hid_t *keep, hid_t *keep_dcpl) {
  memset(di, 0, sizeof *di);
  di->raw_off = -1;
  progress(c, "dataset %s", name);
  hid_t dcpl = -1;
  hid_t d = ds_h5_open_read_dcpl(loc, name, &dcpl);
  if (d < 0) {
    H5Eclear2(H5E_DEFAULT);
    return -1;
  }
  di->exists = 1;
  hid_t sp = H5Dget_space(d);
  int r = H5Sget_simple_extent_ndims(sp);
  if (r < 0 || r > 8)
    r = -1;
  else
    H5Sget_simple_extent_dims(sp, di->dims, NULL);
  di->rank = r;
  H5Sclose(sp);
  hid_t t = H5Dget_type(d);
  di->cls = H5Tget_class(t);
  di->tsize = H5Tget_size(t);
  di->dtype_ok = ds_h5_dtype_of(t, &di->dtype) == 0;
  if (di->cls == H5T_ENUM) {
    hid_t base = H5Tget_super(t);
    di->enum_int = base >= 0 && H5Tget_class(base) == H5T_INTEGER;
    if (base >= 0) H5Tclose(base);
  }
  H5Tclose(t);
  /* refuse declared extents with no storage behind them (huge dims from an unwritten dataset) */
  int64_t elems = 1;
  for (int i = 0; i < r; i++) {
    if (di->dims[i] > (hsize_t)MAX_BYTES)
      elems = MAX_BYTES + 1;
    else
      elems = elems * (int64_t)di->dims[i] > MAX_BYTES ? MAX_BYTES + 1 : elems * (int64_t)di->dims[i];
  }
  if (elems > 0 && r > 0 && elems <= MAX_BYTES) {
    /* every chunk a reader would touch must exist: declared extents with no storage behind
     * them read as fill values (a huge-dims file, or an unwritten dataset) */
    H5D_layout_t lay = H5Pget_layout(dcpl);
    int missing = 0;
    if (lay == H5D_CHUNKED) {
      hsize_t cd[8];
      int cr = H5Pget_chunk(dcpl, 8, cd);
      uint64_t need = 1;
      for (int i = 0; i < cr && i < r; i++)
        need *= (di->dims[i] + cd[i] - 1) / (cd[i] ? cd[i] : 1);
      hid_t sp2 = H5Dget_space(d);
      hsize_t have = 0;
      if (H5Dget_num_chunks(d, sp2, &have) < 0 || have < need) missing = 1;
      H5Sclose(sp2);
    } else if (lay == H5D_CONTIGUOUS) {
      hsize_t have = H5Dget_storage_size(d);
      missing = have < (hsize_t)elems * di->tsize;
    }
    if (missing) {
      H5Pclose(dcpl);
      H5Dclose(d);
      H5Eclear2(H5E_DEFAULT);
      return -2;
    }
  }
  if (elems > MAX_BYTES) {
    if (dcpl >= 0) H5Pclose(dcpl);
    H5Dclose(d);
    return -3;
  }
  if (keep && keep_dcpl) {
    *keep = d;
    *keep_dcpl = dcpl;
  } else {
    if (dcpl >= 0) H5Pclose(dcpl);
    if (keep)
      *keep = d;
    else
      H5Dclose(d);
  }
  return 0;
}

static const char *cls_name(const dinfo *di) {
  switch (di->cls) {
  case H5T_INTEGER: return di->tsize == 1 ? "int8" : "integer";
  case H5T_FLOAT: return "float";
  case H5T_STRING: return "string";
  case H5T_ENUM: return di->enum_int ? "enum (bool)" : "enum";
  default: return "non-numeric";
  }
}

/* Scan float data for NaN/Inf in row blocks; returns the first bad row or -1. */
/* The same scan over plain bytes at a known file offset (float32 or float64, native). */
static int64_t scan_finite_raw(vctx *c, int fd, int64_t off, int kind, int64_t rows, int64_t cols,
                               int64_t *badcol, int *isnan_out) {
  size_t esz = kind == RAW_F64 ? 8 : 4;
  int64_t block = TK_MAX(1, (1 << 18) / TK_MAX(cols, 1));
  uint8_t *buf = malloc((size_t)(block * cols) * esz);
  if (!buf) return -2;
  int64_t bad = -1;
  for (int64_t r0 = 0; r0 < rows && bad < 0; r0 += block) {
    int64_t n = TK_MIN(block, rows - r0);
    progress(c, "values at row %lld", (long long)r0);
    size_t bytes = (size_t)(n * cols) * esz, done = 0;
    while (done < bytes) {
      ssize_t r =
          pread(fd, buf + done, bytes - done, (off_t)(off + (r0 * cols) * (int64_t)esz + (int64_t)done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        free(buf);
        return -2;
      }
      done += (size_t)r;
    }
    for (int64_t i = 0; i < n * cols; i++) {
      double v = kind == RAW_F64 ? ((double *)buf)[i] : (double)((float *)buf)[i];
      if (!isfinite(v)) {
        bad = r0 + i / cols;
        *badcol = i % cols;
        *isnan_out = isnan(v);
        break;
      }
    }
  }
  free(buf);
  return bad;
}

static int64_t scan_finite(vctx *c, hid_t d, int64_t rows, int64_t cols, int64_t *badcol, int *isnan_out) {
  int64_t block = TK_MIN(ds_h5_block_rows(d, cols, 1 << 18), TK_MAX(rows, 1));
  double *buf = malloc((size_t)(block * cols) * sizeof(double));
  if (!buf) return -2;
  int64_t bad = -1;
  for (int64_t r0 = 0; r0 < rows && bad < 0; r0 += block) {
    int64_t n = TK_MIN(block, rows - r0);
    progress(c, "values at row %lld", (long long)r0);
    if (ds_read_rows_h5(d, r0, n, H5T_NATIVE_DOUBLE, buf) < 0) {
      bad = -2;
      break;
    }
    for (int64_t i = 0; i < n * cols; i++)
      if (!isfinite(buf[i])) {
        bad = r0 + i / cols;
        *badcol = i % cols;
        *isnan_out = isnan(buf[i]);
        break;
      }
  }
  free(buf);
  H5Eclear2(H5E_DEFAULT);
  return bad;
}

enum {
  ALLOW_INT = 1,  /* integers (read as the field's type) */
  ALLOW_BOOL = 2, /* enums over an integer type: numpy bools as h5py and `dataset convert` store them */
};

/* Check one per-step dataset. want_rank: exact rank, or 0 for 2..4 (observations); rank-1
 * fields may also be (N,1), as h5py users often store rewards and dones. allow: ALLOW_* besides
 * floats. Where raw_place allows it, the scan reads the bytes itself, and slot (>= 0) records
 * where they are for the loader. */
static int check_step_dataset(vctx *c, hid_t g, const char *demo, const char *prefix, const char *name,
                              int64_t N, int want_rank, int allow, int value_check, dinfo *out, int slot) {
  dinfo di;
  hid_t d = -1, dcpl = -1;
  int rc = inspect_keep(c, g, name, &di, &d, &dcpl);
  if (out) *out = di;
  if (rc == -1) {
    int kind = ds_link_kind(g, name);
    problem(c, "%s/%s%s: %s", demo, prefix, name,
            kind == 0   ? "missing"
            : kind == 2 ? "is a group, not a dataset"
                        : "cannot be read as a dataset");
    return -1;
  }
  if (rc == -2) {
    problem(c, "%s/%s%s: declared shape has no data written behind it", demo, prefix, name);
    return -1;
  }
  if (rc == -3) {
    problem(c, "%s/%s%s: implausibly large shape", demo, prefix, name);
    return -1;
  }
  int ret = -1;
  if (want_rank == 1 && di.rank == 2 && di.dims[1] == 1) want_rank = 2;
  if (di.rank < 1) {
    problem(c, "%s/%s%s: scalar, expected rank %d", demo, prefix, name, want_rank ? want_rank : 2);
    goto done;
  }
  if (want_rank ? di.rank != want_rank : (di.rank < 2 || di.rank > 4)) {
    if (want_rank)
      problem(c, "%s/%s%s: rank %d, expected %d", demo, prefix, name, di.rank, want_rank);
    else
      problem(c, "%s/%s%s: rank %d, expected 2 to 4", demo, prefix, name, di.rank);
    goto done;
  }
  if ((int64_t)di.dims[0] != N) {
    problem(c, "%s/%s%s: %lld rows but num_samples is %lld", demo, prefix, name, (long long)di.dims[0],
            (long long)N);
    goto done;
  }
  int numeric = di.cls == H5T_FLOAT || ((allow & ALLOW_INT) && di.cls == H5T_INTEGER && di.tsize <= 8) ||
                ((allow & ALLOW_BOOL) && di.enum_int && di.tsize <= 8);
  if (!numeric) {
    problem(c, "%s/%s%s: dtype %s (%zu bytes) not supported", demo, prefix, name, cls_name(&di), di.tsize);
    goto done;
  }
  int64_t elems = 1;
  for (int i = 1; i < di.rank; i++)
    elems *= (int64_t)di.dims[i];
  if (elems > (1 << 26) || (di.rank > 1 && elems < 1)) {
    problem(c, "%s/%s%s: %lld elements per step is out of range", demo, prefix, name, (long long)elems);
    goto done;
  }
  di.raw_kind = raw_place(d, dcpl, c->has_fileno ? &c->fileno : NULL, &di.raw_off);
  if (value_check && di.cls == H5T_FLOAT && N > 0) {
    int64_t col = 0;
    int isn = 0;
    int64_t bad = c->rawfd >= 0 && di.raw_off >= 0 && (di.raw_kind == RAW_F32 || di.raw_kind == RAW_F64)
                      ? scan_finite_raw(c, c->rawfd, di.raw_off, di.raw_kind, N, elems, &col, &isn)
                      : scan_finite(c, d, N, elems, &col, &isn);
    if (bad == -2) {
      problem(c, "%s/%s%s: read failed: %s", demo, prefix, name, ds_h5_errmsg());
      goto done;
    }
    if (bad >= 0) {
      problem(c, "%s/%s%s: %s at step %lld, element %lld", demo, prefix, name, isn ? "NaN" : "Inf",
              (long long)bad, (long long)col);
      goto done;
    }
  }
  ret = 0;
  if (c->loc && slot >= 0 && slot < NSLOTS && di.raw_off >= 0 && di.raw_kind != RAW_NONE) {
    c->loc[slot].off = di.raw_off;
    c->loc[slot].kind = di.raw_kind;
  }
done:
  if (dcpl >= 0) H5Pclose(dcpl);
  H5Dclose(d);
  if (out) *out = di;
  return ret;
}

static int cmp_demo(const void *a, const void *b) {
  int64_t x = ((const dsDemoInfo *)a)->index, y = ((const dsDemoInfo *)b)->index;
  return x < y ? -1 : x > y;
}

/* The per-demo attributes, read once: what dsDemoInfo reports, and how each read went. */
typedef struct {
  int rc_success, rc_task, rc_hz, rc_missed; /* 0, TK_ENOTFOUND, TK_EFORMAT (TK_ERANGE: reported) */
  int64_t success_raw;
} attrReads;

/* A string attribute into a name buffer: whole, or a problem naming the demo and the attribute,
 * never cut (two names that differ only past the cut would read as one). */
static void str_attr_rc(vctx *c, hid_t g, const char *demo, const char *attr, char *dst, size_t n, int *rc) {
  char *s = NULL;
  dst[0] = 0;
  *rc = ds_attr_read_str(g, attr, &s);
  if (*rc == 0) {
    char what[96];
    snprintf(what, sizeof what, "%s: attribute %s", demo, attr);
    if (tk_copy_name(dst, n, s, what)) {
      problem(c, "%s", tk_errmsg());
      *rc = TK_ERANGE;
    }
  }
  free(s);
}

static void read_demo_attrs(vctx *c, hid_t g, const char *demo, dsDemoInfo *di, attrReads *a) {
  int64_t v;
  double hz;
  a->rc_success = ds_attr_read_i64(g, "success", &v);
  a->success_raw = a->rc_success == 0 ? v : 0;
  di->success = a->rc_success == 0 ? (v != 0) : -1;
  di->seed = ds_attr_read_i64(g, "seed", &v) == 0 ? v : -1;
  a->rc_missed = ds_attr_read_i64(g, "missed_deadlines", &v);
  di->missed_deadlines = a->rc_missed == 0 ? v : -1;
  a->rc_hz = ds_attr_read_f64(g, "control_hz", &hz);
  di->control_hz = a->rc_hz == 0 ? hz : 0;
  str_attr_rc(c, g, demo, "task", di->task, sizeof di->task, &a->rc_task);
  int ignore;
  str_attr_rc(c, g, demo, "operator", di->operator_name, sizeof di->operator_name, &ignore);
  str_attr_rc(c, g, demo, "device", di->device, sizeof di->device, &ignore);
}

/* Optional attrs every file may have, and the ones our own files must have. */
static void check_demo_attrs(vctx *c, hid_t g, const char *name, const dsDemoInfo *di, const attrReads *a) {
  progress(c, "attributes of data/%s", name);
  char *str = NULL;
  int rc = ds_attr_read_str(g, "model_file", &str);
  if (rc == TK_EFORMAT) problem(c, "%s: attribute model_file is not a string", name);
  free(str);
  str = NULL;
  rc = ds_attr_read_str(g, "ep_meta", &str);
  if (rc == TK_EFORMAT)
    problem(c, "%s: attribute ep_meta is not a string", name);
  else if (rc == 0) {
    cJSON *j = cJSON_Parse(str);
    if (!cJSON_IsObject(j)) problem(c, "%s: attribute ep_meta is not a JSON object", name);
    cJSON_Delete(j);
  }
  free(str);
  if (!c->native) return;
  if (a->rc_success)
    problem(c, "%s: attribute success %s", name,
            a->rc_success == TK_ENOTFOUND ? "missing" : "is not an integer");
  else if (a->success_raw != 0 && a->success_raw != 1)
    problem(c, "%s: attribute success is %lld, expected 0 or 1", name, (long long)a->success_raw);
  if (a->rc_task && a->rc_task != TK_ERANGE)
    problem(c, "%s: attribute task %s", name, a->rc_task == TK_ENOTFOUND ? "missing" : "is not a string");
  if (a->rc_hz || !(di->control_hz > 0) || !isfinite(di->control_hz))
    problem(c, "%s: attribute control_hz missing or not a positive number", name);
  if (a->rc_missed || di->missed_deadlines < 0)
    problem(c, "%s: attribute missed_deadlines missing or negative", name);
}

/* Read a per-step dataset fully as float64 (malloc'd): from the plain bytes when the demo's
 * location table has them, else through HDF5. NULL on failure. */
static double *read_doubles(vctx *c, hid_t g, const char *nm, int64_t count, int slot) {
  double *b = malloc(sizeof(double) * (size_t)TK_MAX(count, 1));
  if (!b) return NULL;
  const dsLoc *l = c->loc && slot >= 0 ? &c->loc[slot] : NULL;
  if (c->rawfd >= 0 && l && l->off >= 0 && l->kind != RAW_NONE) {
    size_t esz = l->kind == RAW_F64 ? 8 : l->kind == RAW_F32 ? 4 : 1, bytes = (size_t)count * esz;
    uint8_t *raw = l->kind == RAW_F64 ? (uint8_t *)b : malloc(bytes + 1);
    size_t done = 0;
    while (raw && done < bytes) {
      ssize_t r = pread(c->rawfd, raw + done, bytes - done, (off_t)(l->off + (int64_t)done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      done += (size_t)r;
    }
    int ok = raw && done == bytes;
    if (ok && l->kind == RAW_F32)
      for (int64_t i = 0; i < count; i++)
        b[i] = ((float *)raw)[i];
    if (ok && l->kind == RAW_U8)
      for (int64_t i = 0; i < count; i++)
        b[i] = raw[i];
    if ((uint8_t *)b != raw) free(raw);
    if (ok) return b;
    free(b);
    return NULL;
  }
  hid_t d = ds_h5_open_read(g, nm);
  if (d < 0 || H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, b) < 0) {
    free(b);
    b = NULL;
  }
  if (d >= 0) H5Dclose(d);
  H5Eclear2(H5E_DEFAULT);
  return b;
}

/* Value rules: dones and interventions are 0/1; our own files also keep actions in [-1,1],
 * timestamps non-decreasing, and next_obs equal to obs shifted by one step. */
static void check_demo_values(vctx *c, hid_t g, const char *name, const dsDemoInfo *di, const dsSchema *sch) {
  int64_t N = di->num_samples;
  const char *flags[2] = {"dones", "interventions"};
  int present[2] = {di->has_dones, di->has_interventions};
  for (int i = 0; i < 2 && !STOP(c); i++) {
    if (!present[i]) continue;
    double *b = read_doubles(c, g, flags[i], N, i ? DS_FIELD_interventions : DS_FIELD_dones);
    if (!b) {
      problem(c, "%s/%s: read failed", name, flags[i]);
      continue;
    }
    for (int64_t t = 0; t < N; t++)
      if (b[t] != 0 && b[t] != 1) {
        problem(c, "%s/%s: value %g at step %lld, expected 0 or 1", name, flags[i], b[t], (long long)t);
        break;
      }
    free(b);
  }
  if (!c->native || STOP(c)) return;
  double *a = read_doubles(c, g, "actions", N * sch->action_dim, DS_FIELD_actions);
  if (a) {
    for (int64_t i = 0; i < N * sch->action_dim; i++)
      if (a[i] < -1.000001 || a[i] > 1.000001) {
        problem(c, "%s/actions: %g at step %lld is outside [-1,1]", name, a[i],
                (long long)(i / sch->action_dim));
        break;
      }
    free(a);
  }
  if (di->has_timestamps && !STOP(c)) {
    double *ts = read_doubles(c, g, "timestamps", N, DS_FIELD_timestamps);
    for (int64_t t = 1; ts && t < N; t++)
      if (ts[t] < ts[t - 1]) {
        problem(c, "%s/timestamps: decrease at step %lld", name, (long long)t);
        break;
      }
    free(ts);
  }
  if (!di->has_next_obs) return;
  for (int k = 0; k < sch->nkeys && !STOP(c); k++) {
    const dsKeySpec *key = &sch->keys[k];
    if (ds_key_is_image(key)) continue; /* frames are large; the low-dim keys tell the same story */
    int64_t e = ds_key_elems(key);
    char on[DS_NAME_MAX + 16], nn[DS_NAME_MAX + 16];
    snprintf(on, sizeof on, "obs/%s", key->name);
    snprintf(nn, sizeof nn, "next_obs/%s", key->name);
    double *o = read_doubles(c, g, on, N * e, DS_NFIELDS + k);
    double *no = read_doubles(c, g, nn, N * e, DS_NFIELDS + DS_MAX_KEYS + k);
    if (o && no)
      for (int64_t t = 0; t + 1 < N; t++)
        if (memcmp(no + t * e, o + (t + 1) * e, (size_t)e * sizeof(double))) {
          problem(c, "%s/next_obs/%s: step %lld is not obs step %lld", name, key->name, (long long)t,
                  (long long)t + 1);
          break;
        }
    free(o);
    free(no);
  }
}

/* Check one demo and derive its schema. */
static void check_demo(vctx *c, hid_t data, const char *name, dsDemoInfo *di, dsSchema *sch,
                       int value_check) {
  progress(c, "data/%s", name);
  hid_t g = H5Gopen2(data, name, H5P_DEFAULT);
  if (g < 0) {
    int kind = ds_link_kind(data, name);
    problem(c, "data/%s: %s", name, kind == 1 ? "is not a group" : "cannot be opened as a group");
    return;
  }
  memset(sch, 0, sizeof *sch);
  int64_t N = -1;
  int rc = ds_attr_read_i64(g, "num_samples", &N);
  if (rc == TK_ENOTFOUND)
    problem(c, "%s: attribute num_samples missing", name);
  else if (rc)
    problem(c, "%s: attribute num_samples is not an integer", name);
  else if (N < 0 || N > MAX_ROWS)
    problem(c, "%s: num_samples %lld out of range", name, (long long)N);
  if (STOP(c) || N < 0 || N > MAX_ROWS) goto out;
  di->num_samples = N;
  if (N == 0) {
    problem(c, "%s: num_samples is 0 (an empty demo)", name);
    goto out;
  }
  attrReads ar;
  read_demo_attrs(c, g, name, di, &ar);
  check_demo_attrs(c, g, name, di, &ar);
  if (STOP(c)) goto out;

  /* per-step fields: one listing of the demo group says which optional ones exist */
  dsNames kids;
  if (ds_list_links(g, &kids)) {
    problem(c, "%s: cannot list its members", name);
    goto out;
  }
  int has[DS_NFIELDS] = {0}, has_obs = 0, has_next = 0;
  for (int i = 0; i < kids.n; i++) {
    for (int f = 0; f < DS_NFIELDS; f++)
      if (!strcmp(kids.v[i], ds_fields[f].name)) has[f] = 1;
    if (!strcmp(kids.v[i], "obs")) has_obs = 1;
    if (!strcmp(kids.v[i], "next_obs")) has_next = 1;
  }
  ds_names_free(&kids);
  dinfo d;
  if (check_step_dataset(c, g, name, "", "actions", N, 2, 0, value_check, &d, DS_FIELD_actions)) goto out;
  if (d.dims[1] < 1 || d.dims[1] > 4096) {
    problem(c, "%s/actions: %llu columns is out of range", name, (unsigned long long)d.dims[1]);
    goto out;
  }
  sch->action_dim = (int)d.dims[1];
  for (int f = 1; f < DS_NFIELDS; f++) {
    const char *fn = ds_fields[f].name;
    if (!has[f]) continue;
    int allow = ds_fields[f].dtype == DS_U8 ? ALLOW_INT | ALLOW_BOOL : f == DS_FIELD_rewards ? ALLOW_INT : 0;
    if (check_step_dataset(c, g, name, "", fn, N, ds_fields[f].rank, allow, value_check, &d, f)) goto out;
    if (f == DS_FIELD_states) {
      if (d.dims[1] < 1 || d.dims[1] > (1 << 20)) {
        problem(c, "%s/states: %llu columns is out of range", name, (unsigned long long)d.dims[1]);
        goto out;
      }
      sch->state_dim = (int)d.dims[1];
      di->has_states = 1;
    }
    if (f == DS_FIELD_rewards) di->has_rewards = 1;
    if (f == DS_FIELD_dones) di->has_dones = 1;
    if (f == DS_FIELD_timestamps) di->has_timestamps = 1;
    if (f == DS_FIELD_interventions) di->has_interventions = 1;
  }

  /* observations */
  if (!has_obs) {
    problem(c, "%s/obs: group missing", name);
    goto out;
  }
  for (int pass = 0; pass < 2; pass++) {
    const char *gname = pass ? "next_obs" : "obs";
    if (pass && !has_next) break;
    hid_t og = H5Gopen2(g, gname, H5P_DEFAULT);
    if (og < 0) {
      int kind = ds_link_kind(g, gname);
      problem(c, "%s/%s: %s", name, gname, kind == 1 ? "is not a group" : "cannot be opened");
      goto out;
    }
    dsNames keys;
    if (ds_list_links(og, &keys)) {
      problem(c, "%s/%s: cannot list keys", name, gname);
      H5Gclose(og);
      goto out;
    }
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%s/", gname);
    for (int k = 0; k < keys.n && !STOP(c); k++) {
      const char *kn = keys.v[k];
      /* slot: the key's index in this demo's schema (keys come sorted by name in every demo) */
      int kslot = pass ? ds_schema_find(sch, kn) : sch->nkeys;
      if (kslot >= 0) kslot += DS_NFIELDS + (pass ? DS_MAX_KEYS : 0);
      if (check_step_dataset(c, og, name, prefix, kn, N, 0, ALLOW_INT, value_check, &d, kslot)) break;
      int img = d.rank == 4;
      if (img && !(d.dtype_ok && d.dtype == DS_U8)) {
        problem(c, "%s/%s%s: image (rank 4) of dtype %s, expected uint8", name, prefix, kn, cls_name(&d));
        break;
      }
      if (img && d.dims[3] != 3) {
        problem(c, "%s/%s%s: image with %llu channels, expected 3 (RGB)", name, prefix, kn,
                (unsigned long long)d.dims[3]);
        break;
      }
      if (!d.dtype_ok) {
        /* integer low-dim observations are read as float64, floats of other sizes (float16, or
         * wider than float64) as the nearer of float32 and float64: HDF5 converts them */
        if (d.cls == H5T_INTEGER)
          d.dtype = DS_F64;
        else if (d.cls == H5T_FLOAT)
          d.dtype = d.tsize <= 4 ? DS_F32 : DS_F64;
        else {
          problem(c, "%s/%s%s: dtype not supported", name, prefix, kn);
          break;
        }
      }
      int64_t shape[DS_MAX_RANK];
      for (int i = 1; i < d.rank; i++)
        shape[i - 1] = (int64_t)d.dims[i];
      if (!pass) {
        if (ds_schema_add(sch, kn, d.dtype, d.rank - 1, shape) < 0) {
          problem(c, "%s/obs/%s: %s", name, kn, tk_errmsg());
          break;
        }
      } else {
        int j = ds_schema_find(sch, kn);
        int same = j >= 0 && sch->keys[j].dtype == d.dtype && sch->keys[j].rank == d.rank - 1;
        for (int i = 0; same && i < d.rank - 1; i++)
          same = sch->keys[j].shape[i] == shape[i];
        if (!same) {
          problem(c, "%s/next_obs/%s: %s", name, kn,
                  j < 0 ? "has no obs/ counterpart" : "shape or dtype differs from obs/");
          break;
        }
      }
    }
    if (pass && !STOP(c) && keys.n != sch->nkeys) problem(c, "%s/next_obs: keys differ from obs/", name);
    if (pass && !STOP(c)) di->has_next_obs = 1;
    if (c->native && !pass && di->has_states && !STOP(c)) {
      dinfo st;
      if (inspect(c, g, "states", &st) == 0 && !(st.dtype_ok && st.dtype == DS_F64))
        problem(c, "%s/states: stored as %s, expected float64", name, cls_name(&st));
    }
    if (c->native && !pass && !STOP(c) && (!di->has_timestamps || !di->has_interventions))
      problem(c, "%s/%s: missing", name, di->has_timestamps ? "interventions" : "timestamps");
    ds_names_free(&keys);
    H5Gclose(og);
    if (STOP(c)) goto out;
  }
  if (value_check && !STOP(c)) {
    check_demo_values(c, g, name, di, sch);
  }
out:
  H5Gclose(g);
  H5Eclear2(H5E_DEFAULT);
}

static void check_masks(vctx *c, dsFile *f) {
  progress(c, "mask");
  int kind = ds_link_kind(f->file, "mask");
  if (kind == 0) return;
  if (kind != 2) {
    problem(c, "mask: is not a group");
    return;
  }
  hid_t mg = H5Gopen2(f->file, "mask", H5P_DEFAULT);
  dsNames names;
  if (mg < 0 || ds_list_links(mg, &names)) {
    problem(c, "mask: cannot list");
    if (mg >= 0) H5Gclose(mg);
    return;
  }
  f->mask_names = calloc((size_t)names.n + 1, sizeof *f->mask_names);
  f->mask_pos = calloc((size_t)names.n + 1, sizeof *f->mask_pos);
  f->mask_n = calloc((size_t)names.n + 1, sizeof *f->mask_n);
  if (!f->mask_names || !f->mask_pos || !f->mask_n) {
    problem(c, "mask: out of memory");
    goto done;
  }
  for (int m = 0; m < names.n && !STOP(c); m++) {
    const char *mn = names.v[m];
    dinfo di;
    if (ds_link_kind(mg, mn) != 1 || inspect(c, mg, mn, &di) != 0) {
      problem(c, "mask/%s: not a readable dataset", mn);
      break;
    }
    if (di.rank != 1) {
      problem(c, "mask/%s: rank %d, expected a 1-D array of demo names", mn, di.rank);
      break;
    }
    if (di.cls != H5T_STRING) {
      problem(c, "mask/%s: holds %s values, expected demo names (strings)", mn, cls_name(&di));
      break;
    }
    int64_t n = (int64_t)di.dims[0];
    if (n > 10000000) {
      problem(c, "mask/%s: %lld entries is implausible", mn, (long long)n);
      break;
    }
    hid_t d = H5Dopen2(mg, mn, H5P_DEFAULT);
    hid_t ft = H5Dget_type(d);
    int vlen = H5Tis_variable_str(ft) > 0;
    size_t sz = vlen ? sizeof(char *) : H5Tget_size(ft);
    hid_t mt = H5Tcopy(H5T_C_S1);
    if (vlen)
      H5Tset_size(mt, H5T_VARIABLE);
    else
      H5Tset_size(mt, sz + 1);
    size_t stride = vlen ? sizeof(char *) : sz + 1;
    char *buf = calloc((size_t)TK_MAX(n, 1), stride);
    int *pos = malloc(sizeof(int) * (size_t)TK_MAX(n, 1));
    if (!buf || !pos || (n > 0 && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)) {
      problem(c, "mask/%s: cannot read: %s", mn, ds_h5_errmsg());
      free(buf);
      free(pos);
      H5Tclose(mt);
      H5Tclose(ft);
      H5Dclose(d);
      break;
    }
    for (int64_t i = 0; i < n; i++) {
      const char *s = vlen ? ((char **)buf)[i] : buf + (size_t)i * stride;
      int p = s ? ds_find_demo(f, s) : -1;
      if (p < 0 && !STOP(c))
        problem(c, "mask/%s: names %s, which is not a demo in the file", mn, s ? s : "(null)");
      pos[i] = p;
    }
    if (vlen && n > 0) {
      hid_t sp = H5Dget_space(d);
      H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
      H5Sclose(sp);
    }
    free(buf);
    H5Tclose(mt);
    H5Tclose(ft);
    H5Dclose(d);
    if (tk_copy_name(f->mask_names[f->nmasks], DS_NAME_MAX, mn, "mask: name")) {
      problem(c, "%s", tk_errmsg());
      free(pos);
      break;
    }
    f->mask_pos[f->nmasks] = pos;
    f->mask_n[f->nmasks] = (int)n;
    f->nmasks++;
  }
done:
  ds_names_free(&names);
  H5Gclose(mg);
}

/* Open f->path read-only into f->file, and note its file number. */
static hid_t open_h5(dsFile *f) {
  /* small sieve buffer: demo datasets are small, and the default 64 KiB sieve makes every
   * read allocate and fill 64 KiB (measured: ~15% of load time) */
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_sieve_buf_size(fapl, 4096);
  f->file = H5Fopen(f->path, H5F_ACC_RDONLY, fapl);
  H5Pclose(fapl);
  if (f->file < 0) return -1;
  /* the opened file's number: a dataset with another lives in another file (raw_place) */
  H5O_info_t root;
  if (H5Oget_info2(f->file, &root, H5O_INFO_BASIC) >= 0) {
    f->fileno = root.fileno;
    f->has_fileno = 1;
  }
  H5Eclear2(H5E_DEFAULT);
  return f->file;
}

static int check_file(dsFile *f, vctx *c, int flags) {
  int value_check = !(flags & DS_OPEN_NO_VALUE_CHECK);
  progress(c, "superblock");
  htri_t is = H5Fis_hdf5(f->path);
  if (is <= 0) {
    FILE *fp = fopen(f->path, "rb");
    if (!fp) {
      problem(c, "cannot open: %s", strerror(errno));
      return -1;
    }
    fclose(fp);
    H5Eclear2(H5E_DEFAULT);
    problem(c, "not an HDF5 file (no HDF5 signature)");
    return -1;
  }
  if (open_h5(f) < 0) {
    problem(c, "cannot open as HDF5 (truncated or damaged?): %s", ds_h5_errmsg());
    return -1;
  }
  c->fileno = f->fileno;
  c->has_fileno = f->has_fileno;
  int kind = ds_link_kind(f->file, "data");
  if (kind != 2) {
    problem(c, "data: %s", kind == 0 ? "group missing (not a robomimic-layout dataset)" : "is not a group");
    return -1;
  }
  f->data = H5Gopen2(f->file, "data", H5P_DEFAULT);
  if (f->data < 0) {
    problem(c, "data: cannot open: %s", ds_h5_errmsg());
    return -1;
  }
  /* format name and version */
  char *fmt = NULL;
  int rc = ds_attr_read_str(f->data, "demokit_format", &fmt);
  if (rc == 0) {
    if (strcmp(fmt, DS_FORMAT_NAME))
      problem(c, "data: demokit_format is '%s', expected '%s'", fmt, DS_FORMAT_NAME);
    free(fmt);
    f->native = 1;
    c->native = 1;
    int64_t ver;
    rc = ds_attr_read_i64(f->data, "demokit_version", &ver);
    if (rc)
      problem(c, "data: demokit_version missing or not an integer");
    else if (ver > DS_FORMAT_VERSION || ver < 1)
      problem(c, "data: format version %lld is not supported (this build reads version 1 to %d)",
              (long long)ver, DS_FORMAT_VERSION);
  } else if (rc == TK_EFORMAT) {
    problem(c, "data: demokit_format is not a string");
  }
  if (STOP(c)) return -1;
  /* env_args */
  progress(c, "data attribute env_args");
  char *args = NULL;
  rc = ds_attr_read_str(f->data, "env_args", &args);
  if (rc == TK_ENOTFOUND)
    problem(c, "data: attribute env_args missing (robomimic requires it)");
  else if (rc)
    problem(c, "data: attribute env_args is not a string");
  else {
    cJSON *j = cJSON_Parse(args);
    if (!j)
      problem(c, "data: env_args is not valid JSON");
    else if (!cJSON_IsObject(j))
      problem(c, "data: env_args is not a JSON object");
    else {
      const cJSON *en = cJSON_GetObjectItemCaseSensitive(j, "env_name");
      if (!cJSON_IsString(en))
        problem(c, "data: env_args has no env_name string");
      else if (tk_copy_name(f->env_name, sizeof f->env_name, en->valuestring, "data: env_args env_name"))
        problem(c, "%s", tk_errmsg());
      const cJSON *ty = cJSON_GetObjectItemCaseSensitive(j, "type");
      if (ty && !cJSON_IsNumber(ty)) problem(c, "data: env_args.type is not a number");
      const cJSON *kw = cJSON_GetObjectItemCaseSensitive(j, "env_kwargs");
      if (kw && !cJSON_IsObject(kw)) problem(c, "data: env_args.env_kwargs is not an object");
    }
    cJSON_Delete(j);
    f->env_args = args;
    args = NULL;
  }
  free(args);
  if (STOP(c)) return -1;

  /* demos */
  dsNames names;
  if (ds_list_links(f->data, &names)) {
    problem(c, "data: cannot list children: %s", ds_h5_errmsg());
    return -1;
  }
  progress(c, "the list of demos");
  f->demos = calloc((size_t)names.n + 1, sizeof *f->demos);
  f->locs = malloc(((size_t)names.n + 1) * NSLOTS * sizeof *f->locs);
  if (!f->locs) {
    ds_names_free(&names);
    problem(c, "out of memory");
    return -1;
  }
  if (!f->demos) {
    ds_names_free(&names);
    problem(c, "out of memory");
    return -1;
  }
  int first_schema = 1;
  int64_t sum = 0;
  for (int i = 0; i < names.n && !STOP(c); i++) {
    const char *nm = names.v[i];
    int64_t idx;
    if (ds_parse_demo_name(nm, &idx) || strlen(nm) >= sizeof f->demos[0].name) {
      problem(c, "data/%s: child name is not demo_<int>", nm);
      continue;
    }
    dsDemoInfo *di = &f->demos[f->ndemos];
    memset(di, 0, sizeof *di);
    snprintf(di->name, sizeof di->name, "%s", nm);
    di->index = idx;
    dsSchema s;
    int before = c->count;
    c->loc = f->locs + (size_t)f->ndemos * NSLOTS;
    for (int k = 0; k < NSLOTS; k++)
      c->loc[k] = (dsLoc){-1, RAW_NONE};
    check_demo(c, f->data, nm, di, &s, value_check);
    c->loc = NULL;
    if (c->count != before) {
      f->ndemos++; /* reported already; keep its name so masks naming it stay quiet */
      continue;
    }
    if (first_schema) {
      f->schema = s;
      first_schema = 0;
    } else if (ds_schema_compare(&f->schema, &s)) {
      problem(c, "%s: differs from %s: %s", nm, f->demos[0].name, tk_errmsg());
      continue;
    }
    sum += di->num_samples;
    f->ndemos++;
  }
  ds_names_free(&names);
  if (STOP(c)) return -1;
  /* sort demos by index, and their dataset locations with them */
  {
    int nd = f->ndemos;
    dsDemoInfo *sd = malloc(sizeof *sd * (size_t)(nd + 1));
    dsLoc *sl = malloc(sizeof *sl * (size_t)(nd + 1) * NSLOTS);
    int *ord = malloc(sizeof *ord * (size_t)(nd + 1));
    if (!sd || !sl || !ord) {
      free(sd);
      free(sl);
      free(ord);
      problem(c, "out of memory");
      return -1;
    }
    for (int i = 0; i < nd; i++)
      ord[i] = i;
    for (int i = 1; i < nd; i++) /* insertion sort is fine: files list demos nearly sorted */
      for (int j = i; j > 0 && cmp_demo(&f->demos[ord[j - 1]], &f->demos[ord[j]]) > 0; j--) {
        int t = ord[j];
        ord[j] = ord[j - 1];
        ord[j - 1] = t;
      }
    for (int i = 0; i < nd; i++) {
      sd[i] = f->demos[ord[i]];
      memcpy(sl + (size_t)i * NSLOTS, f->locs + (size_t)ord[i] * NSLOTS, sizeof *sl * NSLOTS);
    }
    free(f->demos);
    free(f->locs);
    free(ord);
    f->demos = sd;
    f->locs = sl;
  }
  for (int i = 1; i < f->ndemos; i++)
    if (f->demos[i].index == f->demos[i - 1].index)
      problem(c, "data: %s and %s have the same index", f->demos[i - 1].name, f->demos[i].name);
  f->total = sum;
  int64_t total;
  rc = ds_attr_read_i64(f->data, "total", &total);
  if (rc == TK_EFORMAT)
    problem(c, "data: attribute total is not an integer");
  else if (rc == 0 && total != sum && c->count == 0)
    problem(c, "data: attribute total is %lld but the demos' num_samples add up to %lld", (long long)total,
            (long long)sum);
  if (STOP(c)) return -1;
  check_masks(c, f);
  return c->count ? -1 : 0;
}

/* ---- running the check: here, or in a child process under the watchdog (ds_watch.c) ---- */
enum { REC_PROBLEM = 1, REC_FILE = 2, REC_END = 3 };

typedef struct {
  int count;
  char first[TK_ERRMSG_MAX];
} checkEnd;

/* What ds_open keeps of a checked file, flattened for the pipe: this header, then demos[ndemos],
 * locs[ndemos x NSLOTS], mask_names[nmasks], mask_n[nmasks], each mask's positions, env_args. */
typedef struct {
  int ndemos, nmasks, native, has_env_args;
  int64_t total;
  uint64_t env_args_len;
  dsSchema schema;
  char env_name[DS_NAME_MAX];
} fileHead;

static int send_file(dsWatch *w, const dsFile *f) {
  fileHead h = {f->ndemos,           f->nmasks, f->native,
                f->env_args != NULL, f->total,  f->env_args ? strlen(f->env_args) : 0,
                f->schema,           {0}};
  memcpy(h.env_name, f->env_name, sizeof h.env_name);
  size_t nd = (size_t)f->ndemos, nm = (size_t)f->nmasks, npos = 0;
  for (size_t m = 0; m < nm; m++)
    npos += (size_t)f->mask_n[m];
  size_t n = sizeof h + nd * sizeof *f->demos + nd * NSLOTS * sizeof *f->locs + nm * DS_NAME_MAX +
             nm * sizeof(int) + npos * sizeof(int) + h.env_args_len;
  char *buf = malloc(n ? n : 1), *p = buf;
  if (!buf) return -1;
#define PUT(src, bytes)                                                                                      \
  do {                                                                                                       \
    size_t b_ = (bytes);                                                                                     \
    if (b_) memcpy(p, (src), b_);                                                                            \
    p += b_;                                                                                                 \
  } while (0)
  PUT(&h, sizeof h);
  PUT(f->demos, nd * sizeof *f->demos);
  PUT(f->locs, nd * NSLOTS * sizeof *f->locs);
  PUT(f->mask_names, nm * DS_NAME_MAX);
  PUT(f->mask_n, nm * sizeof(int));
  for (size_t m = 0; m < nm; m++)
    PUT(f->mask_pos[m], (size_t)f->mask_n[m] * sizeof(int));
  PUT(f->env_args, h.env_args_len);
#undef PUT
  int rc = ds_watch_send(w, REC_FILE, buf, n);
  free(buf);
  return rc;
}

/* The parent's side of send_file: fill f (fresh from ds_file_new). */
static int recv_file(dsFile *f, const char *buf, size_t n) {
  const char *p = buf, *end = buf + n;
  fileHead h;
  int bad = n < sizeof h;
#define TAKE(dst, bytes)                                                                                     \
  do {                                                                                                       \
    size_t b_ = (bytes);                                                                                     \
    if (bad || (size_t)(end - p) < b_) {                                                                     \
      bad = 1;                                                                                               \
      break;                                                                                                 \
    }                                                                                                        \
    if (b_) memcpy((dst), p, b_);                                                                            \
    p += b_;                                                                                                 \
  } while (0)
  TAKE(&h, sizeof h);
  if (bad || h.ndemos < 0 || h.nmasks < 0 || h.env_args_len > n) goto fail;
  size_t nd = (size_t)h.ndemos, nm = (size_t)h.nmasks;
  f->demos = calloc(nd + 1, sizeof *f->demos);
  f->locs = malloc((nd + 1) * NSLOTS * sizeof *f->locs);
  f->mask_names = calloc(nm + 1, sizeof *f->mask_names);
  f->mask_pos = calloc(nm + 1, sizeof *f->mask_pos);
  f->mask_n = calloc(nm + 1, sizeof *f->mask_n);
  f->env_args = h.has_env_args ? calloc(h.env_args_len + 1, 1) : NULL;
  if (!f->demos || !f->locs || !f->mask_names || !f->mask_pos || !f->mask_n ||
      (h.has_env_args && !f->env_args))
    return tk_error(TK_ENOMEM, "%s: out of memory", f->path);
  f->ndemos = h.ndemos;
  f->native = h.native;
  f->total = h.total;
  f->schema = h.schema;
  memcpy(f->env_name, h.env_name, sizeof f->env_name);
  f->env_name[DS_NAME_MAX - 1] = 0;
  TAKE(f->demos, nd * sizeof *f->demos);
  TAKE(f->locs, nd * NSLOTS * sizeof *f->locs);
  TAKE(f->mask_names, nm * DS_NAME_MAX);
  TAKE(f->mask_n, nm * sizeof(int));
  for (size_t m = 0; m < nm && !bad; m++) {
    if (f->mask_n[m] < 0 || !(f->mask_pos[m] = malloc(sizeof(int) * (size_t)TK_MAX(f->mask_n[m], 1))))
      goto fail;
    f->nmasks++;
    TAKE(f->mask_pos[m], (size_t)f->mask_n[m] * sizeof(int));
  }
  if (h.has_env_args) TAKE(f->env_args, h.env_args_len);
#undef TAKE
  if (!bad && p == end) return 0;
fail:
  return tk_error(TK_EIO, "%s: the check of the file sent back a garbled result", f->path);
}

/* One check of a file, here or in the child. */
typedef struct {
  dsFile *f;
  vctx *c;
  int flags;
  /* the parent's view of the child's records */
  checkEnd end;
  int got_end, got_file;
} checkJob;

static void child_report(const char *line, void *user) {
  ds_watch_send(user, REC_PROBLEM, line, strlen(line));
}

/* In the child: check, and send the problems (ds_validate), the opened file (ds_open) and the end. */
static int check_child(dsWatch *w, void *arg) {
  checkJob *j = arg;
  j->c->watch = w;
  if (j->c->report) {
    j->c->report = child_report;
    j->c->user = w;
  }
  int bad = check_file(j->f, j->c, j->flags);
  if (!bad && j->c->first_only && send_file(w, j->f)) return -1;
  checkEnd e = {j->c->count, {0}};
  memcpy(e.first, j->c->first, sizeof e.first);
  return ds_watch_send(w, REC_END, &e, sizeof e);
}

/* In the parent: the child's records. */
static int check_record(int type, const void *buf, size_t n, void *user) {
  checkJob *j = user;
  if (type == REC_PROBLEM) {
    if (j->c->report) {
      char line[TK_ERRMSG_MAX];
      snprintf(line, sizeof line, "%.*s", (int)TK_MIN(n, sizeof line - 1), (const char *)buf);
      j->c->report(line, j->c->user);
    }
    return 0;
  }
  if (type == REC_FILE) {
    j->got_file = 1;
    return recv_file(j->f, buf, n);
  }
  if (type == REC_END && n == sizeof j->end) {
    memcpy(&j->end, buf, n);
    j->end.first[sizeof j->end.first - 1] = 0;
    j->got_end = 1;
    return 0;
  }
  return tk_error(TK_EIO, "%s: the check of the file sent back a garbled result", j->f->path);
}

/* Check f: here (no watchdog), or in a child process. Returns 0 when the check ran to its end (c->count
 * and c->first say what it found; with first_only and no problem, f is filled and open), or an error
 * when the file could not be examined at all (the watchdog gave up: TK_ETIMEOUT). */
static int run_check(dsFile *f, vctx *c, int flags) {
  double timeout = ds_open_timeout();
  if (timeout <= 0) {
    check_file(f, c, flags);
    return 0;
  }
  checkJob j = {.f = f, .c = c, .flags = flags};
  int rc = ds_watch_run(f->path, timeout, check_child, &j, check_record, &j);
  if (!rc && !j.got_end) rc = tk_error(TK_EIO, "%s: the check of the file ended without a result", f->path);
  if (rc) return rc;
  c->count = j.end.count;
  memcpy(c->first, j.end.first, sizeof c->first);
  if (c->count || !c->first_only) return 0;
  /* the child found the file fine: open it here too (what the check read, without its loops) */
  if (!j.got_file) return tk_error(TK_EIO, "%s: the check of the file ended without a result", f->path);
  if (open_h5(f) < 0 || (f->data = H5Gopen2(f->file, "data", H5P_DEFAULT)) < 0)
    return ds_h5_fail(TK_EFORMAT, "%s: cannot open as HDF5 after checking it (did it change?)", f->path);
  return 0;
}

int ds_open(const char *path, int flags, dsFile **out) {
  *out = NULL;
  ds_h5_init();
  dsFile *f;
  int rc = ds_file_new(path, &f);
  if (rc) return rc;
  vctx c = {.path = path, .first_only = 1};
  f->rawfd = open(path, O_RDONLY | O_CLOEXEC); /* -1 is fine: HDF5 then reads everything */
  c.rawfd = f->rawfd;
  rc = run_check(f, &c, flags);
  if (rc || c.count) {
    ds_close(f);
    H5Eclear2(H5E_DEFAULT);
    if (rc) return rc;
    int code = TK_EFORMAT;
    if (!c.first[0]) snprintf(c.first, sizeof c.first, "%s: cannot be read", path);
    if (strstr(c.first, "format version")) code = TK_EVERSION;
    return tk_error(code, "%s", c.first);
  }
  int staged = ds_staged_count(path);
  if (staged > 0)
    tk_warn("%s: %d committed episode(s) wait in %s%s (a writer is running, or run `dataset recover %s`)",
            path, staged, path, DS_STAGING_SUFFIX, path);
  *out = f;
  return 0;
}

int ds_validate(const char *path, void (*report)(const char *line, void *user), void *user) {
  ds_h5_init();
  dsFile *f;
  int rc = ds_file_new(path, &f);
  if (rc) return rc;
  vctx c = {.path = path, .first_only = 0, .report = report, .user = user};
  f->rawfd = open(path, O_RDONLY | O_CLOEXEC);
  c.rawfd = f->rawfd;
  rc = run_check(f, &c, 0);
  ds_close(f);
  H5Eclear2(H5E_DEFAULT);
  if (rc) return rc;
  if (c.count) tk_error(TK_EFORMAT, "%s", c.first); /* later reads may have set other messages */
  return c.count;
}
