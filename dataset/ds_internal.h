/* dataset/ds_internal.h -- shared internals of the dataset module (not a public header). */
#ifndef DS_INTERNAL_H
#define DS_INTERNAL_H

#include <pthread.h>

#include "ds.h"
#include "ds_h5.h"
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

/* Parse "demo_<int>" -> index; returns 0 or -1 when the name is not of that form. */
int ds_parse_demo_name(const char *name, int64_t *index);

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
/* Appending a recording to f (the writer): f's env_args.env_kwargs must be kwargs_json (a controller,
 * an action mode, a camera list or a control rate there changes what an action means); the message
 * names the first differing key, as ds_compatible's does. */
int ds_env_kwargs_compatible(dsFile *f, const char *kwargs_json);
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

/* ---- the opened file: ds_validate.c checks a file and fills it, ds_load.c reads through it ---- */
/* Where a demo's per-step datasets sit in the file, when they are plain contiguous bytes:
 * the loader then reads them with pread, without HDF5. Slots: fields, obs keys, next_obs keys. */
#define NSLOTS (DS_NFIELDS + 2 * DS_MAX_KEYS)
typedef struct dsLoc {
  int64_t off; /* -1: read through HDF5 */
  int kind;
} dsLoc;

struct dsFile {
  char path[4096];
  int rawfd;
  unsigned long fileno; /* HDF5's number for the opened file: objects with another live elsewhere */
  int has_fileno;
  dsLoc *locs; /* ndemos x NSLOTS, same order as demos */
  hid_t file, data;
  int ndemos;
  dsDemoInfo *demos;
  dsSchema schema;
  char env_name[DS_NAME_MAX];
  char *env_args;
  int64_t total;
  int native;
  int nmasks;
  char (*mask_names)[DS_NAME_MAX];
  int **mask_pos;
  int *mask_n;
  /* ds_read_rows keeps the dataset it read last open (and its chunk cache with it), so reading a
   * long episode a few rows at a time inflates each compressed chunk once */
  pthread_mutex_t rows_mu;
  hid_t rows_d;
  int rows_demo;
  char *rows_name;
};

/* How the loader may read a dataset's bytes without HDF5 (ds_validate.c's raw_place decides). */
enum { RAW_NONE = 0, RAW_F32 = 1, RAW_F64 = 2, RAW_U8 = 3 };

/* A new dsFile for path (nothing open): refused when the path does not fit whole. */
int ds_file_new(const char *path, dsFile **out);
/* What name is under loc: 0 nothing, 1 a dataset, 2 a group, -1 anything else or unreadable. */
int ds_link_kind(hid_t loc, const char *name);
/* Rows [r0, r0 + n) of an open dataset, every value of each row, into buf as memtype: HDF5
 * converts from the stored type (byte order, precision, integers, enums of integers). */
herr_t ds_read_rows_h5(hid_t d, int64_t r0, int64_t n, hid_t memtype, void *buf);

/* ---- the open watchdog (ds_watch.c): a check run in a child process, killed when it makes no progress ----
 */
typedef struct dsWatch dsWatch; /* one open's progress, shared with its child */
double ds_open_timeout(void);   /* ds_set_open_timeout's value, 0: no watchdog */
/* Child: note what it reads now (a step of progress; no system call). */
void ds_watch_note(dsWatch *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Child: send one record (type > 0) to the parent. 0 or -1. */
int ds_watch_send(dsWatch *w, int type, const void *buf, size_t n);
typedef int (*dsWatchChild)(dsWatch *w, void *arg);                            /* 0, or the child failed */
typedef int (*dsWatchRecord)(int type, const void *buf, size_t n, void *user); /* 0 or an error code */
/* Run child(w, arg) in a forked child, handing its records to on_record in the calling thread as they come.
 * 0 when the child ran to its end; TK_ETIMEOUT (no progress for timeout seconds: the child was killed; the
 * message names path and what was being read), TK_EFORMAT (the child crashed), TK_EBUSY, TK_EIO, or
 * on_record's error. */
int ds_watch_run(const char *path, double timeout, dsWatchChild child, void *arg, dsWatchRecord on_record,
                 void *user);

#endif
