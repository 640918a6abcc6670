/* dataset/ds_internal.h -- shared internals of the dataset module (not a public header). */
#ifndef DS_INTERNAL_H
#define DS_INTERNAL_H

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
/* Exclusive lock on the staging dir; returns fd or negative error. */
int ds_staging_lock(const char *dir, const char *path);

#endif
