/* dataset/ds_internal.h -- shared internals of the dataset module (not a public header). */
#ifndef DS_INTERNAL_H
#define DS_INTERNAL_H

#include <hdf5.h>

#include "ds.h"
#include "tk.h"

#define DS_STAGING_SUFFIX ".staging"
#define DS_REJECTED_SUFFIX ".rejected" /* staged episodes recovery would not publish */

/* One list of the per-step arrays besides observations: X(name, dtype, hdf5 memtype, columns-from-schema).
 * Used by the writer (datasets to create and append) and the reader (datasets to read). */
#define DS_STEP_FIELDS(X)                                                                                    \
  X(actions, DS_F64, 2)      /* (N,A) normalized action in [-1,1] */                                         \
  X(rewards, DS_F64, 1)      /* (N,) reward */                                                               \
  X(dones, DS_U8, 1)         /* (N,) 1 at the end of a trajectory */                                         \
  X(states, DS_F64, 2)       /* (N,S) flat simulator state */                                                \
  X(timestamps, DS_F64, 1)   /* (N,) seconds, measured */                                                    \
  X(interventions, DS_U8, 1) /* (N,) 1 where a human took over */

enum {
#define X(n, t, r) DS_FIELD_##n,
  DS_STEP_FIELDS(X)
#undef X
      DS_NFIELDS
};
typedef struct {
  const char *name;
  dsDtype dtype;
  int rank; /* 1: (N,), 2: (N, cols) */
} dsFieldDesc;
extern const dsFieldDesc ds_fields[DS_NFIELDS];
/* Columns of a rank-2 field under a schema (A for actions, S for states), 1 for rank 1. */
int64_t ds_field_cols(int field, const dsSchema *s);

/* Silence HDF5's automatic error printing (once per process and thread). */
void ds_h5_init(void);
/* The innermost message on HDF5's error stack, "" if none. */
const char *ds_h5_errmsg(void);
/* Set a tk error "what: <hdf5 message>" and return code. */
int ds_h5_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

hid_t ds_h5_memtype(dsDtype t);
int ds_h5_dtype_of(hid_t type, dsDtype *out); /* 0 or TK_EFORMAT */

/* Open a dataset to read its values, with a chunk cache that holds a band of its chunk rows (up to
 * 256 MiB): each compressed chunk is inflated once per open, however the rows are read (HDF5's 1 MiB
 * default re-inflates a larger chunk on every block read and every 1 MiB conversion piece). */
hid_t ds_h5_open_read(hid_t loc, const char *name);
/* Rows per block when reading about target values at a time, rows of cols values: whole bands of
 * chunk rows when a band is larger than that cache holds. */
int64_t ds_h5_block_rows(hid_t d, int64_t cols, int64_t target);

/* attributes */
int ds_attr_write_i64(hid_t obj, const char *name, int64_t v);
int ds_attr_write_f64(hid_t obj, const char *name, double v);
int ds_attr_write_str(hid_t obj, const char *name, const char *s);
int ds_attr_exists(hid_t obj, const char *name);
/* 0 ok, TK_ENOTFOUND absent, TK_EFORMAT wrong type/shape. */
int ds_attr_read_i64(hid_t obj, const char *name, int64_t *v);
int ds_attr_read_f64(hid_t obj, const char *name, double *v);
/* malloc'd string (fixed or variable length). */
int ds_attr_read_str(hid_t obj, const char *name, char **out);

/* A growable list of names (malloc'd strings). */
typedef struct {
  char **v;
  int n, cap;
} dsNames;
int ds_names_push(dsNames *l, const char *s);
void ds_names_free(dsNames *l);
int ds_names_find(const dsNames *l, const char *s); /* index or -1 */
/* The link names of group g, sorted by name; -1 (and an empty list) on failure. */
int ds_list_links(hid_t g, dsNames *out);

/* Parse "demo_<int>" -> index; returns 0 or -1 when the name is not of that form. */
int ds_parse_demo_name(const char *name, int64_t *index);

/* Create an extendible (0, shape...) chunked dataset. */
hid_t ds_create_ext(hid_t loc, const char *name, dsDtype t, int rank, const int64_t *shape, int gzip,
                    int64_t chunk_rows);
/* Create a (N, shape...) dataset and write all of it: contiguous, or chunked when gzip > 0. */
int ds_write_whole(hid_t loc, const char *name, dsDtype t, int rank, const int64_t *shape, int64_t n,
                   const void *buf, int gzip);
/* Append n rows (each row_elems elements) at row `at`. */
int ds_append_rows(hid_t dset, dsDtype t, int rank, const int64_t *shape, int64_t at, int64_t n,
                   const void *buf);

/* Write data-group attrs for a new file. */
int ds_write_data_attrs(hid_t data, const char *env_name, int env_type, const char *env_kwargs_json);

/* Staging: list committed episode files "demo_<k>.h5" in dir (sorted by k). */
typedef struct {
  int64_t index;
  char path[4096];
} dsStaged;
int ds_staging_dir(const char *path, char *dir, size_t n);
int ds_staging_list(const char *dir, dsStaged **out, int *n, int *ntmp_removed, int remove_tmp);
/* Merge staged episodes into path (copy + append + fsync + rename), then remove them.
 * With check (recovery: episodes a crash left, maybe by another session or tool), every staged episode
 * is first opened and validated, and compared with the dataset (ds_compatible); one that fails is moved
 * to <path>.rejected/ (DS_REJECTED_SUFFIX), never deleted, and counted in *rejected. A staged
 * demo_<i> whose name the file already holds is dropped only when it is the same episode (published
 * before a crash stopped the cleanup); another episode is published under the next free index. */
int ds_publish_staged(const char *path, const char *dir, int check, int *published, int *rejected);
/* Remove temp files (tk_temp_beside names) made for path itself: "<dir>/.<base>.<8 hex>.<suffix>", left
 * by a crashed publish or edit. Call with path's staging lock held. Returns how many were removed. */
int ds_remove_leftover_temps(const char *path);
/* ds_recover with the staging lock held (ds_writer_open runs it too): remove leftover temps, drop
 * unfinished episodes, check and publish committed ones. */
int ds_recover_locked(const char *path, const char *dir, int *published, int *dropped, int *rejected);
/* 0 when the episodes of a and b belong in one file (ds_compat.c): same task, env_args, schema and
 * control rate; else TK_EFORMAT with a message naming an and bn and the first difference. */
int ds_compatible(dsFile *a, const char *an, dsFile *b, const char *bn);
/* Exclusive lock on the staging dir; returns fd or negative error. */
int ds_staging_lock(const char *dir, const char *path);

/* ---- the output of the editing commands and of file exports (ds_edit.c) ----
 * ds_out_begin applies the output rule to out (NULL: edit inputs[0] in place) and takes the writer lock
 * of the destination; ds_out_create makes a temp file beside it that is ours alone (o->tmp, open as
 * o->file); ds_out_commit closes, fsyncs, renames it over dest and fsyncs the directory; ds_out_abort
 * removes it and prefixes the message with "<dest>: <cmd>"; ds_out_release gives up before the temp
 * file exists. Each returns rc or the first error. */
typedef struct {
  const char *cmd;
  char dest[4096], tmp[4200];
  char sdir[4200]; /* dest's staging folder: its writer lock is held while dest is replaced */
  int lock_fd, made_sdir;
  hid_t file;
} dsOut;
int ds_out_begin(dsOut *o, const char *cmd, const char *out, dsKind kind, const char *const *inputs,
                 int ninputs, int force);
int ds_out_release(dsOut *o, int rc);
int ds_out_create(dsOut *o);
int ds_out_abort(dsOut *o, int rc);
int ds_out_commit(dsOut *o);

/* ---- export formats (ds_export.c: the table and the output; ds_export_<format>.c: the writers) ---- */
struct dsExportJob {
  dsFile *f;            /* the validated input */
  const char *src;      /* its path as given */
  const char *dest;     /* the final output (names and ids come from it) */
  const char *tmp;      /* where to write: the temp file (open as file) or the empty temp directory */
  hid_t file;           /* DS_KIND_HDF5 rows: the temp file; -1 for directories */
  dsConvertResult *res; /* episodes, steps, keys written and left out, a note */
};
int ds_export_minari(dsExportJob *j); /* ds_export_minari.c */
int ds_export_d4rl(dsExportJob *j);   /* ds_export_d4rl.c */
/* helpers shared by the writers (ds_export.c) */
hid_t ds_h5_bool_type(void); /* what h5py writes for numpy bool: an int8 enum FALSE=0, TRUE=1 */
/* Create a contiguous dataset of the given file type and shape and write all of buf (memory type mtype). */
int ds_write_array(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                   const void *buf);
hid_t ds_h5_filetype(dsDtype t);                          /* little-endian file type of t */
void ds_list_add(char *list, size_t n, const char *name); /* append ",name" (or "name") to list */
/* Write text to path durably: create, write, fsync, close; the message names path. */
int ds_write_text_file(const char *path, const char *text);

#endif
