/* dataset/ds_h5.c -- HDF5 helpers (ds_h5.h): quiet errors with messages, exact tensor reads, attributes,
 * extendible datasets. */
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "ds_internal.h"

static pthread_once_t h5_once = PTHREAD_ONCE_INIT;
static void h5_init_once(void) { H5open(); }

void ds_h5_init(void) {
  pthread_once(&h5_once, h5_init_once);
  /* the automatic printer is per thread in thread-safe builds: turn it off here too */
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static _Thread_local char h5_msg[512];

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
  (void)n;
  (void)data;
  if (e->desc && e->desc[0]) snprintf(h5_msg, sizeof h5_msg, "%s", e->desc);
  return 0;
}

const char *ds_h5_errmsg(void) {
  h5_msg[0] = 0;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, NULL);
  H5Eclear2(H5E_DEFAULT);
  /* low-level write errors carry a timestamp, addresses and a newline: keep the OS reason */
  const char *em = strstr(h5_msg, "error message = '");
  if (em && strstr(h5_msg, "file write failed")) {
    char reason[128];
    snprintf(reason, sizeof reason, "%s", em + 17);
    char *q = strchr(reason, '\'');
    if (q) *q = 0;
    snprintf(h5_msg, sizeof h5_msg, "file write failed: %s", reason);
  }
  for (char *p = h5_msg; *p; p++)
    if (*p == '\n' || *p == '\r') *p = ' ';
  return h5_msg;
}

int ds_h5_fail(int code, const char *fmt, ...) {
  char what[TK_ERRMSG_MAX];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(what, sizeof what, fmt, ap);
  va_end(ap);
  const char *m = ds_h5_errmsg();
  if (m[0]) return tk_error(code, "%s: %s", what, m);
  return tk_error(code, "%s", what);
}

size_t ds_dtype_size(dsDtype t) { return t == DS_F64 ? 8 : t == DS_F32 ? 4 : 1; }
const char *ds_dtype_name(dsDtype t) { return t == DS_F64 ? "float64" : t == DS_F32 ? "float32" : "uint8"; }

hid_t ds_h5_memtype(dsDtype t) {
  return t == DS_F64 ? H5T_NATIVE_DOUBLE : t == DS_F32 ? H5T_NATIVE_FLOAT : H5T_NATIVE_UINT8;
}

int ds_h5_dtype_of(hid_t type, dsDtype *out) {
  H5T_class_t c = H5Tget_class(type);
  size_t sz = H5Tget_size(type);
  if (c == H5T_FLOAT && sz == 8)
    *out = DS_F64;
  else if (c == H5T_FLOAT && sz == 4)
    *out = DS_F32;
  else if (c == H5T_INTEGER && sz == 1 && H5Tget_sign(type) == H5T_SGN_NONE)
    *out = DS_U8;
  else
    return TK_EFORMAT;
  return 0;
}

/* ---- opening datasets to read their values ---- */
#define CHUNK_CACHE_DEFAULT ((size_t)1 << 20) /* HDF5's default chunk cache, bytes */
#define CHUNK_CACHE_MAX ((size_t)256 << 20)   /* the most one open dataset keeps inflated, bytes */

/* How a chunked dataset is cut: bytes of one band of chunk rows (every chunk that one row of the
 * dataset crosses, inflated), chunks in such a band, rows of a chunk. All 0 when not chunked. */
typedef struct {
  double band_bytes;
  double band_chunks;
  hsize_t rows;
} chunkCut;

/* dcpl: the dataset's creation property list (the caller's: copying one is a large part of the
 * per-dataset cost of opening a file) */
static chunkCut chunk_cut_dcpl(hid_t d, hid_t dcpl) {
  chunkCut cc = {0, 0, 0};
  if (dcpl >= 0 && H5Pget_layout(dcpl) == H5D_CHUNKED) {
    hsize_t cd[H5S_MAX_RANK], dims[H5S_MAX_RANK];
    int cr = H5Pget_chunk(dcpl, H5S_MAX_RANK, cd);
    hid_t sp = H5Dget_space(d), t = H5Dget_type(d);
    int r = H5Sget_simple_extent_ndims(sp);
    if (cr >= 1 && r == cr && H5Sget_simple_extent_dims(sp, dims, NULL) == r) {
      double chunk = (double)H5Tget_size(t), across = 1;
      for (int i = 0; i < cr; i++)
        chunk *= (double)cd[i];
      for (int i = 1; i < cr; i++)
        across *= cd[i] ? (double)((dims[i] + cd[i] - 1) / cd[i]) : 0;
      cc = (chunkCut){chunk * across, across, cd[0]};
    }
    if (sp >= 0) H5Sclose(sp);
    if (t >= 0) H5Tclose(t);
  }
  H5Eclear2(H5E_DEFAULT);
  return cc;
}

static chunkCut chunk_cut(hid_t d) {
  hid_t dcpl = H5Dget_create_plist(d);
  chunkCut cc = chunk_cut_dcpl(d, dcpl);
  if (dcpl >= 0) H5Pclose(dcpl);
  return cc;
}

/* Open a dataset whose values will be read. A compressed chunk is inflated whole on every access
 * that finds it outside the chunk cache, and HDF5's default cache (1 MiB) is smaller than one
 * chunk of a dataset h5py stored as a single chunk: reading such a dataset in blocks of rows (or
 * with a type conversion, which HDF5 does in 1 MiB pieces) inflated the same chunk again and again.
 * So the cache is sized to hold a band of chunk rows (up to CHUNK_CACHE_MAX): every chunk is
 * inflated once per open. The one way the dataset module opens a dataset to read its values. */
hid_t ds_h5_open_read_dcpl(hid_t loc, const char *name, hid_t *dcpl_out) {
  *dcpl_out = -1;
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  if (d < 0) return d;
  hid_t dcpl = H5Dget_create_plist(d); /* a copy: it stays valid across the reopen below */
  chunkCut cc = chunk_cut_dcpl(d, dcpl);
  if (cc.band_bytes > (double)CHUNK_CACHE_DEFAULT) {
    H5Dclose(d);
    size_t nbytes = cc.band_bytes < (double)CHUNK_CACHE_MAX ? (size_t)cc.band_bytes : CHUNK_CACHE_MAX;
    /* slots: a prime well above the chunks in a band, so consecutive chunks never share one */
    size_t nslots = cc.band_chunks < 200 ? 521 : cc.band_chunks < 30000 ? 65521 : 1048573;
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    if (dapl >= 0) H5Pset_chunk_cache(dapl, nslots, nbytes, H5D_CHUNK_CACHE_W0_DEFAULT);
    d = H5Dopen2(loc, name, dapl >= 0 ? dapl : H5P_DEFAULT);
    if (dapl >= 0) H5Pclose(dapl);
  }
  if (d < 0 && dcpl >= 0) H5Pclose(dcpl), dcpl = -1;
  *dcpl_out = dcpl;
  return d;
}

hid_t ds_h5_open_read(hid_t loc, const char *name) {
  hid_t dcpl;
  hid_t d = ds_h5_open_read_dcpl(loc, name, &dcpl);
  if (dcpl >= 0) H5Pclose(dcpl);
  return d;
}

/* Rows per read when going through a dataset in blocks of about `target` values. When a band of
 * chunk rows is more than the cache holds, blocks are whole bands: each read then covers every
 * chunk it touches, so each is still inflated once. */
int64_t ds_h5_block_rows(hid_t d, int64_t cols, int64_t target) {
  int64_t b = TK_MAX(1, target / TK_MAX(cols, 1));
  chunkCut cc = chunk_cut(d);
  if (cc.band_bytes > (double)CHUNK_CACHE_MAX && cc.rows > 0 && cc.rows < ((hsize_t)1 << 40))
    b = (b + (int64_t)cc.rows - 1) / (int64_t)cc.rows * (int64_t)cc.rows;
  return b;
}

/* ---- exact tensors ---- */
/* "(a, b)", "(a,)" or "()" */
static void shape_str(char *buf, size_t n, int rank, const hsize_t *dims) {
  size_t off = (size_t)snprintf(buf, n, "(");
  for (int i = 0; i < rank && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, "%s%llu", i ? ", " : "", (unsigned long long)dims[i]);
  if (off < n) snprintf(buf + off, n - off, rank == 1 ? ",)" : ")");
}

int ds_h5_read_exact(hid_t loc, const char *name, dsDtype t, int rank, const int64_t *shape, void *out,
                     const char *file, const char *needer) {
  if (!needer) needer = "the reader";
  if (rank < 0 || rank > H5S_MAX_RANK || (rank && !shape) || t < DS_F32 || t > DS_U8)
    return tk_error(TK_EINVAL, "%s: %s: ds_h5_read_exact: bad arguments", file, name);
  /* the tensor by its path in the file: "/<group>/<name>" */
  char where[512], at[400] = "";
  ssize_t ln = H5Iget_name(loc, at, sizeof at);
  if (ln < 0) at[0] = 0;
  snprintf(where, sizeof where, "%s/%s", strcmp(at, "/") ? at : "", name);
  H5Eclear2(H5E_DEFAULT);
  if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return tk_error(TK_EFORMAT, "%s: %s is missing", file, where);
  }
  hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
  if (d < 0) return ds_h5_fail(TK_EFORMAT, "%s: %s is not a dataset", file, where);
  hid_t sp = H5Dget_space(d), ft = H5Dget_type(d);
  hsize_t dims[H5S_MAX_RANK] = {0};
  int r = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
  if (r < 0 || r > H5S_MAX_RANK || H5Sget_simple_extent_dims(sp, dims, NULL) < 0) r = -1;
  int same = r == rank;
  int64_t elems = 1;
  for (int i = 0; same && i < rank; i++) {
    same = shape[i] >= 0 && (hsize_t)shape[i] == dims[i];
    elems *= shape[i];
  }
  H5D_space_status_t st = H5D_SPACE_STATUS_ERROR;
  H5T_class_t cls = ft < 0 ? H5T_NO_CLASS : H5Tget_class(ft);
  int rc = 0;
  if (t != DS_U8 && cls != H5T_FLOAT)
    rc = tk_error(TK_EFORMAT, "%s: %s is not floating point", file, where);
  else if (t == DS_U8 && !(cls == H5T_INTEGER && H5Tget_size(ft) == 1 && H5Tget_sign(ft) == H5T_SGN_NONE))
    rc = tk_error(TK_EFORMAT, "%s: %s is not uint8", file, where);
  else if (!same) {
    char want[256], got[256] = "";
    hsize_t w[H5S_MAX_RANK];
    for (int i = 0; i < rank; i++)
      w[i] = (hsize_t)shape[i];
    shape_str(want, sizeof want, rank, w);
    if (r >= 0)
      shape_str(got, sizeof got, r, dims);
    else
      snprintf(got, sizeof got, "an unreadable shape");
    rc = tk_error(TK_EFORMAT, "%s: %s has shape %s, %s needs %s", file, where, got, needer, want);
  } else if (elems > 0 && (H5Dget_space_status(d, &st) < 0 || st != H5D_SPACE_STATUS_ALLOCATED)) {
    /* declared but (partly) never written: HDF5 would read its fill value there */
    rc = tk_error(TK_EFORMAT, "%s: %s has %s", file, where,
                  st == H5D_SPACE_STATUS_PART_ALLOCATED ? "data written for only part of it"
                                                        : "no data written");
  }
  if (ft >= 0) H5Tclose(ft);
  if (sp >= 0) H5Sclose(sp);
  if (!rc && out && elems > 0) {
    if (H5Dread(d, ds_h5_memtype(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
      rc = ds_h5_fail(TK_EFORMAT, "%s: %s cannot be read", file, where);
    for (int64_t i = 0; !rc && t != DS_U8 && i < elems; i++)
      if (!isfinite(t == DS_F32 ? (double)((float *)out)[i] : ((double *)out)[i]))
        rc = tk_error(TK_EFORMAT, "%s: %s has a non-finite value at flat index %lld", file, where,
                      (long long)i);
  }
  H5Dclose(d);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

/* ---- attributes ---- */
static int attr_write(hid_t obj, const char *name, hid_t ftype, hid_t mtype, const void *v) {
  if (H5Aexists(obj, name) > 0 && H5Adelete(obj, name) < 0)
    return ds_h5_fail(TK_EIO, "replace attribute %s", name);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
  int rc = 0;
  if (a < 0 || H5Awrite(a, mtype, v) < 0) rc = ds_h5_fail(TK_EIO, "write attribute %s", name);
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return rc;
}

int ds_attr_write_i64(hid_t obj, const char *name, int64_t v) {
  return attr_write(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
int ds_attr_write_f64(hid_t obj, const char *name, double v) {
  return attr_write(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}
int ds_attr_write_str(hid_t obj, const char *name, const char *s) {
  /* variable-length UTF-8 string: what h5py writes for a Python str */
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  int rc = attr_write(obj, name, t, t, &s);
  H5Tclose(t);
  return rc;
}

int ds_attr_exists(hid_t obj, const char *name) { return H5Aexists(obj, name) > 0; }

static hid_t attr_open_scalar(hid_t obj, const char *name, int *rc) {
  if (H5Aexists(obj, name) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    *rc = TK_ENOTFOUND;
    return -1;
  }
  hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
  if (a < 0) {
    *rc = TK_EFORMAT;
    return -1;
  }
  hid_t sp = H5Aget_space(a);
  hssize_t np = H5Sget_simple_extent_npoints(sp);
  H5Sclose(sp);
  if (np != 1) {
    H5Aclose(a);
    *rc = TK_EFORMAT;
    return -1;
  }
  *rc = 0;
  return a;
}

int ds_attr_read_i64(hid_t obj, const char *name, int64_t *v) {
  int rc;
  hid_t a = attr_open_scalar(obj, name, &rc);
  if (a < 0) return rc;
  hid_t t = H5Aget_type(a);
  H5T_class_t c = H5Tget_class(t);
  rc = 0;
  if (c == H5T_INTEGER) {
    if (H5Aread(a, H5T_NATIVE_INT64, v) < 0) rc = TK_EFORMAT;
  } else if (c == H5T_FLOAT) {
    double d;
    if (H5Aread(a, H5T_NATIVE_DOUBLE, &d) < 0 || d != d || d < -9.2e18 || d > 9.2e18 ||
        d != (double)(int64_t)d)
      rc = TK_EFORMAT;
    else
      *v = (int64_t)d;
  } else {
    rc = TK_EFORMAT;
  }
  H5Tclose(t);
  H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

int ds_attr_read_f64(hid_t obj, const char *name, double *v) {
  int rc;
  hid_t a = attr_open_scalar(obj, name, &rc);
  if (a < 0) return rc;
  hid_t t = H5Aget_type(a);
  H5T_class_t c = H5Tget_class(t);
  rc = (c == H5T_INTEGER || c == H5T_FLOAT) && H5Aread(a, H5T_NATIVE_DOUBLE, v) >= 0 ? 0 : TK_EFORMAT;
  H5Tclose(t);
  H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

int ds_attr_read_str(hid_t obj, const char *name, char **out) {
  *out = NULL;
  int rc;
  hid_t a = attr_open_scalar(obj, name, &rc);
  if (a < 0) return rc;
  hid_t t = H5Aget_type(a);
  rc = TK_EFORMAT;
  if (H5Tget_class(t) == H5T_STRING) {
    if (H5Tis_variable_str(t) > 0) {
      hid_t m = H5Tcopy(H5T_C_S1);
      H5Tset_size(m, H5T_VARIABLE);
      H5Tset_cset(m, H5Tget_cset(t));
      char *s = NULL;
      if (H5Aread(a, m, &s) >= 0 && s) {
        *out = strdup(s);
        H5free_memory(s);
        rc = *out ? 0 : TK_ENOMEM;
      }
      H5Tclose(m);
    } else {
      size_t sz = H5Tget_size(t);
      if (sz < ((size_t)64 << 20)) {
        char *s = calloc(sz + 1, 1);
        hid_t m = H5Tcopy(t);
        if (s && H5Aread(a, m, s) >= 0) {
          *out = s;
          rc = 0;
        } else {
          free(s);
        }
        H5Tclose(m);
      }
    }
  }
  H5Tclose(t);
  H5Aclose(a);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

int ds_names_push(dsNames *l, const char *s) {
  if (l->n == l->cap) {
    int nc = l->cap ? l->cap * 2 : 16;
    char **nv = realloc(l->v, (size_t)nc * sizeof *nv);
    if (!nv) return tk_error(TK_ENOMEM, "out of memory");
    l->v = nv;
    l->cap = nc;
  }
  if (!(l->v[l->n] = strdup(s))) return tk_error(TK_ENOMEM, "out of memory");
  l->n++;
  return 0;
}

void ds_names_free(dsNames *l) {
  for (int i = 0; i < l->n; i++)
    free(l->v[i]);
  free(l->v);
  memset(l, 0, sizeof *l);
}

int ds_names_find(const dsNames *l, const char *s) {
  for (int i = 0; i < l->n; i++)
    if (!strcmp(l->v[i], s)) return i;
  return -1;
}

static herr_t names_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)g;
  (void)info;
  return ds_names_push(data, name) ? -1 : 0;
}

int ds_list_links(hid_t g, dsNames *out) {
  memset(out, 0, sizeof *out);
  hsize_t idx = 0;
  if (H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, names_cb, out) < 0) {
    ds_names_free(out);
    return -1;
  }
  return 0;
}

int ds_parse_demo_name(const char *name, int64_t *index) {
  if (strncmp(name, "demo_", 5) != 0) return -1;
  const char *p = name + 5;
  if (!*p || strlen(p) > 18) return -1;
  int64_t v = 0;
  for (; *p; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (*p - '0');
  }
  *index = v;
  return 0;
}

/* ---- extendible datasets ---- */
hid_t ds_create_ext(hid_t loc, const char *name, dsDtype t, int rank, const int64_t *shape, int gzip,
                    int64_t chunk_rows) {
  hsize_t dims[DS_MAX_RANK + 1], maxd[DS_MAX_RANK + 1], chunk[DS_MAX_RANK + 1];
  dims[0] = 0;
  maxd[0] = H5S_UNLIMITED;
  chunk[0] = (hsize_t)chunk_rows;
  for (int i = 0; i < rank; i++)
    dims[i + 1] = maxd[i + 1] = chunk[i + 1] = (hsize_t)shape[i];
  hid_t sp = H5Screate_simple(rank + 1, dims, maxd);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(dcpl, rank + 1, chunk);
  if (gzip > 0) {
    if (t != DS_U8) H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, (unsigned)gzip);
  }
  H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
  hid_t ft = t == DS_F64 ? H5T_IEEE_F64LE : t == DS_F32 ? H5T_IEEE_F32LE : H5T_STD_U8LE;
  hid_t d = H5Dcreate2(loc, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  if (d < 0) ds_h5_fail(TK_EIO, "create dataset %s", name); /* before the closes clear the error stack */
  H5Pclose(dcpl);
  H5Sclose(sp);
  return d;
}

int ds_write_whole(hid_t loc, const char *name, dsDtype t, int rank, const int64_t *shape, int64_t n,
                   const void *buf, int gzip) {
  hsize_t dims[DS_MAX_RANK + 1], chunk[DS_MAX_RANK + 1];
  dims[0] = (hsize_t)n;
  size_t row = ds_dtype_size(t);
  for (int i = 0; i < rank; i++) {
    dims[i + 1] = chunk[i + 1] = (hsize_t)shape[i];
    row *= (size_t)shape[i];
  }
  hid_t sp = H5Screate_simple(rank + 1, dims, NULL);
  hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
  if (gzip > 0 && n > 0) {
    int64_t cr = (int64_t)((256 * 1024) / (row ? row : 1));
    chunk[0] = (hsize_t)TK_MAX(1, TK_MIN(n, TK_MIN(4096, cr)));
    H5Pset_chunk(dcpl, rank + 1, chunk);
    if (t != DS_U8) H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, (unsigned)gzip);
  }
  hid_t ft = t == DS_F64 ? H5T_IEEE_F64LE : t == DS_F32 ? H5T_IEEE_F32LE : H5T_STD_U8LE;
  hid_t d = H5Dcreate2(loc, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
  int rc = d < 0 ? ds_h5_fail(TK_EIO, "create dataset %s", name) : 0; /* before the closes clear the stack */
  H5Pclose(dcpl);
  H5Sclose(sp);
  if (rc) return rc;
  if (n > 0 && H5Dwrite(d, ds_h5_memtype(t), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
    rc = ds_h5_fail(TK_EIO, "write dataset %s", name);
  if (H5Dclose(d) < 0 && !rc) rc = ds_h5_fail(TK_EIO, "close dataset %s", name);
  return rc;
}

int ds_append_rows(hid_t dset, dsDtype t, int rank, const int64_t *shape, int64_t at, int64_t n,
                   const void *buf) {
  if (n <= 0) return 0;
  hsize_t dims[DS_MAX_RANK + 1], start[DS_MAX_RANK + 1], count[DS_MAX_RANK + 1];
  dims[0] = (hsize_t)(at + n);
  start[0] = (hsize_t)at;
  count[0] = (hsize_t)n;
  for (int i = 0; i < rank; i++) {
    dims[i + 1] = count[i + 1] = (hsize_t)shape[i];
    start[i + 1] = 0;
  }
  if (H5Dset_extent(dset, dims) < 0) return ds_h5_fail(TK_EIO, "extend dataset");
  hid_t fs = H5Dget_space(dset);
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL);
  hid_t ms = H5Screate_simple(rank + 1, count, NULL);
  herr_t e = H5Dwrite(dset, ds_h5_memtype(t), ms, fs, H5P_DEFAULT, buf);
  int rc = e < 0 ? ds_h5_fail(TK_EIO, "write rows") : 0;
  H5Sclose(ms);
  H5Sclose(fs);
  return rc;
}

int ds_write_data_attrs(hid_t data, const char *env_name, int env_type, const char *env_kwargs_json) {
  char *args = NULL;
  const char *kw = env_kwargs_json && env_kwargs_json[0] ? env_kwargs_json : "{}";
  size_t need = strlen(kw) + strlen(env_name) * 2 + 128;
  args = malloc(need);
  if (!args) return tk_error(TK_ENOMEM, "out of memory");
  /* env_name is validated to [A-Za-z0-9_.-] by the writer, so no escaping is needed */
  snprintf(args, need,
           "{\"env_name\": \"%s\", \"type\": %d, \"env_kwargs\": %s, \"env_version\": \"demokit-%d\"}",
           env_name, env_type, kw, DS_FORMAT_VERSION);
  int rc = ds_attr_write_str(data, "env_args", args);
  free(args);
  if (!rc) rc = ds_attr_write_i64(data, "total", 0);
  if (!rc) rc = ds_attr_write_str(data, "demokit_format", DS_FORMAT_NAME);
  if (!rc) rc = ds_attr_write_i64(data, "demokit_version", DS_FORMAT_VERSION);
  return rc;
}
