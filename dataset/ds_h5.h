/* dataset/ds_h5.h -- the HDF5 helpers of the toolkit's files (prefix ds_h5_, ds_attr_).
 *
 * The dataset module's second public header. ds.h is the dataset API and names no HDF5 type, so its
 * users (viewer, teleop, ...) need no HDF5 headers; this one is for code that writes and reads HDF5
 * files of its own: policies (bc/bc_policy.c), checkpoints (rl_finetune/rl_sac.c), and the dataset
 * module itself. It includes <hdf5.h>.
 *
 * Errors follow the toolkit's convention: int functions return 0 or a negative TK_E* code and set the
 * tk error message; HDF5's own message (ds_h5_errmsg) is appended where it says more. Nothing here
 * prints: ds_h5_init turns HDF5's automatic error printing off (call it once per thread before any
 * other HDF5 call; it is cheap).
 */
#ifndef DS_H5_H
#define DS_H5_H

#include <hdf5.h>
#include <stdint.h>

#include "ds.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---- */
/* Silence HDF5's automatic error printing (once per process, and for the calling thread). */
void ds_h5_init(void);
/* The innermost message on HDF5's error stack ("" if none); clears the stack. */
const char *ds_h5_errmsg(void);
/* Set a tk error "<what>: <hdf5 message>" (just "<what>" when HDF5 has none) and return code. */
int ds_h5_fail(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- types ---- */
hid_t ds_h5_memtype(dsDtype t);               /* H5T_NATIVE_FLOAT, _DOUBLE or _UINT8 */
int ds_h5_dtype_of(hid_t type, dsDtype *out); /* 0, or TK_EFORMAT for any other stored type */

/* ---- reading ---- */
/* Open a dataset to read its values, with a chunk cache that holds a band of its chunk rows (up to
 * 256 MiB): each compressed chunk is inflated once per open, however the rows are read (HDF5's 1 MiB
 * default re-inflates a larger chunk on every block read and every 1 MiB conversion piece). */
hid_t ds_h5_open_read(hid_t loc, const char *name);
/* The same, also handing over the dataset's creation property list (*dcpl: the caller closes it;
 * -1 on failure), so a caller that inspects the layout does not copy it again. */
hid_t ds_h5_open_read_dcpl(hid_t loc, const char *name, hid_t *dcpl);
/* Rows per block when reading about target values at a time, rows of cols values: whole bands of
 * chunk rows when a band is larger than that cache holds. */
int64_t ds_h5_block_rows(hid_t d, int64_t cols, int64_t target);

/* Read one tensor of exactly the expected type and shape: the dataset `name` under loc must exist, be
 * a dataset of stored class float (t DS_F32 or DS_F64; any float size, HDF5 converts) or of 8-bit
 * unsigned integers (t DS_U8), of rank `rank` and shape shape[0..rank-1] exactly, with all its data
 * written (a declared but unwritten dataset would read as fill values). It is then read as t into out,
 * and float values must all be finite. out NULL: check only, nothing of the tensor's size is read or
 * allocated (check a whole file before allocating for it).
 * Refusals are TK_EFORMAT with one line naming the file and the tensor by its path in the file:
 *   "<file>: /weights/l0.weight has shape (19, 40), <needer> needs (40, 19)"
 * (also "... is missing", "is not a dataset", "is not floating point", "is not uint8", "has no data
 * written", "has data written for only part of it", "has a non-finite value at flat index <i>").
 * needer names who expects the shape ("the architecture", "this run"); NULL: "the reader". */
int ds_h5_read_exact(hid_t loc, const char *name, dsDtype t, int rank, const int64_t *shape, void *out,
                     const char *file, const char *needer);

/* ---- attributes (scalars on a file, group or dataset) ---- */
int ds_attr_write_i64(hid_t obj, const char *name, int64_t v);
int ds_attr_write_f64(hid_t obj, const char *name, double v);
int ds_attr_write_str(hid_t obj, const char *name, const char *s); /* variable-length UTF-8, as h5py */
int ds_attr_exists(hid_t obj, const char *name);
/* 0 ok, TK_ENOTFOUND absent, TK_EFORMAT wrong type/shape (no message set: callers name the file). */
int ds_attr_read_i64(hid_t obj, const char *name, int64_t *v);
int ds_attr_read_f64(hid_t obj, const char *name, double *v);
/* malloc'd string (fixed or variable length). */
int ds_attr_read_str(hid_t obj, const char *name, char **out);

/* ---- listing ---- */
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

/* ---- writing ---- */
/* Create an extendible (0, shape...) chunked dataset (gzip level 0..9, 0: none). */
hid_t ds_create_ext(hid_t loc, const char *name, dsDtype t, int rank, const int64_t *shape, int gzip,
                    int64_t chunk_rows);
/* Create a (n, shape...) dataset and write all of it: contiguous, or chunked when gzip > 0. */
int ds_write_whole(hid_t loc, const char *name, dsDtype t, int rank, const int64_t *shape, int64_t n,
                   const void *buf, int gzip);
/* Append n rows (each of shape...) at row `at` of a dataset made by ds_create_ext. */
int ds_append_rows(hid_t dset, dsDtype t, int rank, const int64_t *shape, int64_t at, int64_t n,
                   const void *buf);

#ifdef __cplusplus
}
#endif
#endif
