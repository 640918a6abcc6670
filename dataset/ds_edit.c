/* dataset/ds_edit.c -- merge, split, filter, delete and trim (convert: ds_export.c).
 *
 * Every command applies the output rule (ds_output_check) to out, validates its inputs with ds_open,
 * builds its result in a temp file beside dest that is ours alone (tk_temp_beside; dest = out, or the
 * input itself when out is NULL; the file a symbolic link names), closes it, fsyncs it, renames it over
 * dest and fsyncs the directory (docs/architecture.md, convention 7). Inputs are only ever opened
 * read-only. On failure the temp file is removed and the message reads
 * "<dest>: <command>: <step>: <cause>". Demos are copied whole with H5Ocopy, which keeps
 * chunking and compression; trim rebuilds one demo with the source's creation properties.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds_internal.h"

#define ED_BLOCK_BYTES ((size_t)8 << 20) /* bytes per read/write when slicing a dataset */

/* Names of the links in group g (sorted by name); the error names `where`. */
static int list_links(hid_t g, const char *where, dsNames *out) {
  if (ds_list_links(g, out) < 0) return ds_h5_fail(TK_EIO, "list %s", where);
  return 0;
}

static int cmp_int(const void *a, const void *b) {
  int x = *(const int *)a, y = *(const int *)b;
  return x < y ? -1 : x > y;
}

/* ---- copying attributes and links ---- */
typedef struct {
  hid_t dst;
  const char *skip; /* attribute not to copy, or NULL */
  int rc;
} attrCtx;

static herr_t attr_cb(hid_t loc, const char *name, const H5A_info_t *ai, void *data) {
  (void)ai;
  attrCtx *c = data;
  if (c->skip && !strcmp(name, c->skip)) return 0;
  hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
  hid_t at = a >= 0 ? H5Aget_type(a) : -1;
  hid_t ft = at >= 0 ? H5Tcopy(at) : -1; /* transient: a committed type may not cross files */
  hid_t sp = a >= 0 ? H5Aget_space(a) : -1;
  hid_t mt = ft >= 0 ? H5Tget_native_type(ft, H5T_DIR_DEFAULT) : -1;
  hid_t da = -1;
  int ok = 0;
  if (mt >= 0 && sp >= 0) {
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    size_t sz = H5Tget_size(mt);
    void *buf = np >= 0 && sz > 0 ? calloc((size_t)np + 1, sz) : NULL;
    if (buf && H5Aread(a, mt, buf) >= 0) {
      if (H5Aexists(c->dst, name) > 0) H5Adelete(c->dst, name);
      da = H5Acreate2(c->dst, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
      ok = da >= 0 && H5Awrite(da, mt, buf) >= 0;
      if (!ok) c->rc = ds_h5_fail(TK_EIO, "copy attribute %s", name);
      if (H5Tdetect_class(mt, H5T_VLEN) > 0 || H5Tis_variable_str(mt) > 0)
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
    }
    free(buf);
  }
  if (!ok && !c->rc) c->rc = ds_h5_fail(TK_EIO, "copy attribute %s", name);
  if (da >= 0) H5Aclose(da);
  if (mt >= 0) H5Tclose(mt);
  if (sp >= 0) H5Sclose(sp);
  if (ft >= 0) H5Tclose(ft);
  if (at >= 0) H5Tclose(at);
  if (a >= 0) H5Aclose(a);
  return ok ? 0 : -1;
}

/* Copy every attribute of src to dst except `skip`; where names src in messages. */
static int copy_attrs(hid_t src, hid_t dst, const char *skip, const char *where) {
  attrCtx c = {dst, skip, 0};
  hsize_t idx = 0;
  if (H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, &idx, attr_cb, &c) < 0) {
    if (!c.rc) c.rc = ds_h5_fail(TK_EIO, "read attributes");
    return tk_error_wrap(c.rc, "%s", where);
  }
  return 0;
}

/* Copy link `name` of src into dst: objects with H5Ocopy, soft and external links as links. */
static int copy_link(hid_t src, hid_t dst, const char *name, const char *where) {
  H5L_info_t li;
  if (H5Lget_info(src, name, &li, H5P_DEFAULT) < 0)
    return ds_h5_fail(TK_EIO, "%s/%s: read link", where, name);
  if (li.type == H5L_TYPE_HARD) {
    if (H5Ocopy(src, name, dst, name, H5P_DEFAULT, H5P_DEFAULT) < 0)
      return ds_h5_fail(TK_EIO, "copy %s/%s", where, name);
    return 0;
  }
  char *val = malloc(li.u.val_size + 1);
  if (!val) return tk_error(TK_ENOMEM, "out of memory");
  int rc = 0;
  if (H5Lget_val(src, name, val, li.u.val_size, H5P_DEFAULT) < 0) {
    rc = ds_h5_fail(TK_EIO, "%s/%s: read link", where, name);
  } else if (li.type == H5L_TYPE_SOFT) {
    val[li.u.val_size] = 0;
    if (H5Lcreate_soft(val, dst, name, H5P_DEFAULT, H5P_DEFAULT) < 0)
      rc = ds_h5_fail(TK_EIO, "copy soft link %s/%s", where, name);
  } else if (li.type == H5L_TYPE_EXTERNAL) {
    const char *file = NULL, *obj = NULL;
    if (H5Lunpack_elink_val(val, li.u.val_size, NULL, &file, &obj) < 0 ||
        H5Lcreate_external(file, obj, dst, name, H5P_DEFAULT, H5P_DEFAULT) < 0)
      rc = ds_h5_fail(TK_EIO, "copy external link %s/%s", where, name);
  }
  free(val);
  return rc;
}

/* ---- output: the output rule, lock, temp file, commit, abort (dsOut: ds_internal.h) ---- */
static void out_unlock(dsOut *o) {
  if (o->lock_fd < 0) return;
  if (o->made_sdir) {
    char lock[4300];
    snprintf(lock, sizeof lock, "%s/lock", o->sdir);
    unlink(lock);
    rmdir(o->sdir);
  }
  close(o->lock_fd);
  o->lock_fd = -1;
  o->made_sdir = 0;
}

/* The destination and its lock. out == NULL: edit inputs[0] in place; else the output rule
 * (ds_output_check: out is none of the inputs, and an existing dataset or file of another kind is
 * replaced only with force). Through a symbolic link the file it names is the destination (the temp
 * file goes beside it and is renamed over it), so the link stays a link and its target is edited.
 * The lock is the one a writer recording into dest holds (ds_writer_open): replacing a file a writer
 * publishes into would drop the episodes it publishes meanwhile. */
int ds_out_begin(dsOut *o, const char *cmd, const char *out, dsKind kind, const char *const *inputs,
                 int ninputs, int force) {
  memset(o, 0, sizeof *o);
  o->cmd = cmd;
  o->file = -1;
  o->lock_fd = -1;
  const char *given = out;
  int rc;
  if (!out) {
    if (ninputs != 1 || !inputs[0] || !inputs[0][0])
      return tk_error(TK_EINVAL, "%s: no input file given", cmd);
    given = inputs[0];
  } else if (!out[0]) {
    return tk_error(TK_EINVAL, "%s: no output file given", cmd);
  } else if ((rc = ds_output_check(out, kind, inputs, ninputs, force))) {
    return tk_error_wrap(rc, "%s", cmd);
  }
  const char *dest = given;
  char real[PATH_MAX];
  struct stat lst;
  if (lstat(given, &lst) == 0 && S_ISLNK(lst.st_mode)) {
    if (!realpath(given, real))
      return tk_error(TK_EINVAL, "%s: %s: the symbolic link names no file (%s); refusing to replace the link",
                      given, cmd, strerror(errno));
    dest = real;
  }
  if ((rc = tk_copy_name(o->dest, sizeof o->dest, dest, "output path"))) return tk_error_wrap(rc, "%s", cmd);
  if ((rc = ds_staging_dir(o->dest, o->sdir, sizeof o->sdir)))
    return tk_error(TK_ERANGE, "%s: %s: output path too long", dest, cmd);
  if (mkdir(o->sdir, 0755) == 0)
    o->made_sdir = 1;
  else if (errno != EEXIST)
    return tk_error(TK_EIO, "%s: %s: create %s: %s", dest, cmd, o->sdir, strerror(errno));
  int fd = ds_staging_lock(o->sdir, o->dest);
  if (fd < 0) {
    if (o->made_sdir) rmdir(o->sdir);
    o->made_sdir = 0;
    if (fd == TK_EBUSY)
      return tk_error(TK_EBUSY, "%s: %s: a writer is recording into this file (lock %s/lock); close it first",
                      dest, cmd, o->sdir);
    return tk_error_wrap(fd, "%s", cmd);
  }
  o->lock_fd = fd;
  int staged = ds_staged_count(o->dest);
  if (staged > 0) {
    out_unlock(o);
    return tk_error(TK_EBUSY, "%s: %s: %d committed episode(s) wait in %s; run `dataset recover %s` first",
                    dest, cmd, staged, o->sdir, dest);
  }
  ds_remove_leftover_temps(o->dest); /* ours, left by an interrupted run: never a finished file */
  return 0;
}

/* Give up before the temp file exists: unlock; rc and its message unchanged. */
int ds_out_release(dsOut *o, int rc) {
  out_unlock(o);
  return rc;
}

/* Close and remove the temp file(s), unlock; prefix the message with "<dest>: <cmd>". */
int ds_out_abort(dsOut *o, int rc) {
  if (o->file >= 0) H5Fclose(o->file);
  o->file = -1;
  if (o->tmp[0]) unlink(o->tmp);
  H5Eclear2(H5E_DEFAULT);
  out_unlock(o);
  return tk_error_wrap(rc, "%s: %s", o->dest, o->cmd);
}

int ds_out_create(dsOut *o) {
  /* a temp file beside dest that is ours alone: never "<dest>.tmp", which may be a user's file */
  int fd = tk_temp_beside(o->dest, o->tmp, sizeof o->tmp);
  if (fd < 0) {
    o->tmp[0] = 0;
    return ds_out_abort(o, fd);
  }
  struct stat st;
  if (stat(o->dest, &st) == 0) fchmod(fd, st.st_mode & 07777); /* an edit keeps the file's permissions */
  close(fd);
  hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
  H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG); /* closing the file closes every object in it */
  o->file = H5Fcreate(o->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
  int rc = o->file < 0 ? ds_h5_fail(TK_EIO, "create %s", o->tmp) : 0; /* before any call clears the stack */
  H5Pclose(fapl);
  return rc ? ds_out_abort(o, rc) : 0;
}

/* Close, fsync, rename over dest, fsync the directory, unlock. */
int ds_out_commit(dsOut *o) {
  hid_t f = o->file;
  o->file = -1;
  if (H5Fclose(f) < 0) return ds_out_abort(o, ds_h5_fail(TK_EIO, "close %s", o->tmp));
  int rc = tk_fsync_file(o->tmp);
  if (rc) return ds_out_abort(o, rc);
  if (rename(o->tmp, o->dest))
    return ds_out_abort(o, tk_error(TK_EIO, "rename %s to %s: %s", o->tmp, o->dest, strerror(errno)));
  rc = tk_fsync_dir_of(o->dest);
  out_unlock(o);
  return rc ? tk_error_wrap(rc, "%s: %s", o->dest, o->cmd) : 0;
}

/* ---- input: the validated file plus a second read-only handle for copying ---- */
typedef struct {
  dsFile *f;
  hid_t h, root, data;
  const char *path;
} edIn;

static void in_close(edIn *in) {
  if (in->data >= 0) H5Gclose(in->data);
  if (in->root >= 0) H5Gclose(in->root);
  if (in->h >= 0) H5Fclose(in->h);
  ds_close(in->f);
  in->f = NULL;
  in->h = in->root = in->data = -1;
}

static int in_open(edIn *in, const char *cmd, const char *path) {
  memset(in, 0, sizeof *in);
  in->h = in->root = in->data = -1;
  in->path = path;
  if (!path || !path[0]) return tk_error(TK_EINVAL, "%s: no input file given", cmd);
  int rc = ds_open(path, 0, &in->f); /* its one-line message names the file and the problem */
  if (rc) return rc;
  in->h = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (in->h < 0)
    rc = ds_h5_fail(TK_EIO, "%s: %s: reopen for copying", path, cmd);
  else if ((in->root = H5Gopen2(in->h, "/", H5P_DEFAULT)) < 0)
    rc = ds_h5_fail(TK_EIO, "%s: %s: open root group", path, cmd);
  else if ((in->data = H5Gopen2(in->h, "data", H5P_DEFAULT)) < 0)
    rc = ds_h5_fail(TK_EFORMAT, "%s: %s: open group data", path, cmd);
  if (rc) in_close(in);
  return rc;
}

/* Every mask name of the input must fit the reader's names (DS_NAME_MAX): a longer one would come back
 * cut, and two names that differ past the cut would become one mask. Refused, never cut. */
static int check_mask_names(edIn *in, const char *cmd) {
  if (H5Lexists(in->root, "mask", H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return 0;
  }
  hid_t mg = H5Gopen2(in->root, "mask", H5P_DEFAULT);
  if (mg < 0) return ds_h5_fail(TK_EIO, "%s: %s: open group mask", in->path, cmd);
  dsNames names;
  int rc = list_links(mg, "mask", &names);
  H5Gclose(mg);
  if (rc) return tk_error_wrap(rc, "%s: %s", in->path, cmd);
  char buf[DS_NAME_MAX];
  for (int i = 0; i < names.n && !rc; i++)
    if ((rc = tk_copy_name(buf, sizeof buf, names.v[i], "mask name")))
      tk_error_wrap(rc, "%s: %s", in->path, cmd);
  ds_names_free(&names);
  return rc;
}

/* ---- masks ---- */
/* mask/<name>: 1-D fixed-length null-padded ASCII strings (h5py dtype S<len>, as robomimic). */
static int write_mask(hid_t mg, const char *name, const char *const *names, int n) {
  size_t len = 1;
  for (int i = 0; i < n; i++)
    len = TK_MAX(len, strlen(names[i]));
  char *buf = calloc((size_t)TK_MAX(n, 1), len);
  if (!buf) return tk_error(TK_ENOMEM, "out of memory");
  for (int i = 0; i < n; i++)
    memcpy(buf + (size_t)i * len, names[i], strlen(names[i]));
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, len);
  H5Tset_strpad(t, H5T_STR_NULLPAD);
  H5Tset_cset(t, H5T_CSET_ASCII);
  hsize_t dim = (hsize_t)n;
  hid_t sp = H5Screate_simple(1, &dim, NULL);
  int rc = 0;
  if (H5Lexists(mg, name, H5P_DEFAULT) > 0 && H5Ldelete(mg, name, H5P_DEFAULT) < 0)
    rc = ds_h5_fail(TK_EIO, "replace mask/%s", name);
  hid_t d = rc ? -1 : H5Dcreate2(mg, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (!rc && (d < 0 || (n > 0 && H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)))
    rc = ds_h5_fail(TK_EIO, "write mask/%s", name);
  if (d >= 0) H5Dclose(d);
  H5Sclose(sp);
  H5Tclose(t);
  free(buf);
  return rc;
}

/* ---- plans over one input: which demos, which one sliced, which masks ---- */
typedef struct {
  const char *name;
  const int *pos; /* demo positions in the input */
  int n;
} edMask;

typedef struct {
  const uint8_t *keep; /* keep[i] for demo position i; NULL keeps every demo */
  int trim_pos;        /* demo position to slice to [t0, t1), -1 for none */
  int64_t t0, t1;
  const edMask *masks; /* written after the existing ones, replacing masks of the same name */
  int nmasks;
} edPlan;

/* Slice one per-step dataset to rows [t0, t0+n), keeping type, attributes, filters and chunking
 * (the first chunk dimension clipped to n). */
static int slice_dataset(hid_t sg, hid_t dg, const char *name, int64_t t0, int64_t n, const char *where) {
  int rc = 0;
  hid_t s = -1, ft = -1, ftc = -1, mt = -1, fsp = -1, dsp = -1, dcpl = -1, d = -1, ms = -1;
  void *buf = NULL;
  hsize_t dims[H5S_MAX_RANK], maxd[H5S_MAX_RANK], nd[H5S_MAX_RANK], nmax[H5S_MAX_RANK];
  if ((s = H5Dopen2(sg, name, H5P_DEFAULT)) < 0 || (ft = H5Dget_type(s)) < 0 || (fsp = H5Dget_space(s)) < 0 ||
      (dcpl = H5Dget_create_plist(s)) < 0) {
    rc = ds_h5_fail(TK_EIO, "%s/%s: open", where, name);
    goto out;
  }
  int rank = H5Sget_simple_extent_ndims(fsp);
  if (rank < 1 || rank > H5S_MAX_RANK || H5Sget_simple_extent_dims(fsp, dims, maxd) < 0) {
    rc = ds_h5_fail(TK_EFORMAT, "%s/%s: read shape", where, name);
    goto out;
  }
  if (H5Pget_layout(dcpl) == H5D_CHUNKED) {
    hsize_t cd[H5S_MAX_RANK];
    int cr = H5Pget_chunk(dcpl, H5S_MAX_RANK, cd);
    if (cr >= 1) {
      cd[0] = TK_MAX((hsize_t)1, TK_MIN(cd[0], (hsize_t)n));
      if (H5Pset_chunk(dcpl, cr, cd) < 0) {
        rc = ds_h5_fail(TK_EIO, "%s/%s: set chunk shape", where, name);
        goto out;
      }
    }
  }
  for (int i = 0; i < rank; i++) {
    nd[i] = dims[i];
    nmax[i] = maxd[i];
  }
  nd[0] = (hsize_t)n;
  if (nmax[0] != H5S_UNLIMITED) nmax[0] = (hsize_t)n;
  dsp = H5Screate_simple(rank, nd, nmax);
  ftc = H5Tcopy(ft);
  mt = H5Tget_native_type(ft, H5T_DIR_DEFAULT);
  if (dsp < 0 || ftc < 0 || mt < 0 ||
      (d = H5Dcreate2(dg, name, ftc, dsp, H5P_DEFAULT, dcpl, H5P_DEFAULT)) < 0) {
    rc = ds_h5_fail(TK_EIO, "%s/%s: create sliced copy", where, name);
    goto out;
  }
  char w2[512];
  snprintf(w2, sizeof w2, "%s/%s", where, name);
  if ((rc = copy_attrs(s, d, NULL, w2))) goto out;
  size_t row = H5Tget_size(mt);
  for (int i = 1; i < rank; i++)
    row *= (size_t)dims[i];
  int64_t block = (int64_t)TK_MAX((size_t)1, ED_BLOCK_BYTES / TK_MAX(row, (size_t)1));
  block = TK_MIN(block, n);
  buf = malloc((size_t)block * TK_MAX(row, (size_t)1));
  if (!buf) {
    rc = tk_error(TK_ENOMEM, "%s/%s: out of memory", where, name);
    goto out;
  }
  int vlen = H5Tdetect_class(mt, H5T_VLEN) > 0 || H5Tis_variable_str(mt) > 0;
  for (int64_t r = 0; r < n && !rc; r += block) {
    hsize_t start[H5S_MAX_RANK] = {0}, dstart[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
    int64_t cnt = TK_MIN(block, n - r);
    start[0] = (hsize_t)(t0 + r);
    dstart[0] = (hsize_t)r;
    count[0] = (hsize_t)cnt;
    for (int i = 1; i < rank; i++)
      count[i] = dims[i];
    ms = H5Screate_simple(rank, count, NULL);
    if (ms < 0 || H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL) < 0 ||
        H5Sselect_hyperslab(dsp, H5S_SELECT_SET, dstart, NULL, count, NULL) < 0 ||
        H5Dread(s, mt, ms, fsp, H5P_DEFAULT, buf) < 0) {
      rc = ds_h5_fail(TK_EIO, "%s/%s: read rows %lld..%lld", where, name, (long long)(t0 + r),
                      (long long)(t0 + r + cnt));
    } else {
      if (H5Dwrite(d, mt, ms, dsp, H5P_DEFAULT, buf) < 0)
        rc = ds_h5_fail(TK_EIO, "%s/%s: write", where, name);
      if (vlen) H5Dvlen_reclaim(mt, ms, H5P_DEFAULT, buf);
    }
    if (ms >= 0) H5Sclose(ms);
    ms = -1;
  }
out:
  free(buf);
  if (d >= 0) H5Dclose(d);
  if (dsp >= 0) H5Sclose(dsp);
  if (mt >= 0) H5Tclose(mt);
  if (ftc >= 0) H5Tclose(ftc);
  if (dcpl >= 0) H5Pclose(dcpl);
  if (fsp >= 0) H5Sclose(fsp);
  if (ft >= 0) H5Tclose(ft);
  if (s >= 0) H5Dclose(s);
  return rc;
}

/* Rebuild group sg into dg: datasets with N rows (per-step data: actions, rewards, dones, states,
 * timestamps, interventions, obs/<key>, next_obs/<key>, ...) are sliced, everything else copied. */
static int trim_group(hid_t sg, hid_t dg, int64_t N, int64_t t0, int64_t n, const char *where, int depth) {
  dsNames names;
  int rc = list_links(sg, where, &names);
  if (rc) return rc;
  for (int i = 0; i < names.n && !rc; i++) {
    const char *nm = names.v[i];
    H5L_info_t li;
    H5O_info_t oi;
    if (H5Lget_info(sg, nm, &li, H5P_DEFAULT) < 0) {
      rc = ds_h5_fail(TK_EIO, "%s/%s: read link", where, nm);
      break;
    }
    if (li.type != H5L_TYPE_HARD || H5Oget_info_by_name2(sg, nm, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
      H5Eclear2(H5E_DEFAULT);
      rc = copy_link(sg, dg, nm, where);
      continue;
    }
    char w2[512];
    snprintf(w2, sizeof w2, "%s/%s", where, nm);
    if (oi.type == H5O_TYPE_GROUP && depth < 8) {
      hid_t s = H5Gopen2(sg, nm, H5P_DEFAULT);
      hid_t gcpl = s >= 0 ? H5Gget_create_plist(s) : -1;
      hid_t d = gcpl >= 0 ? H5Gcreate2(dg, nm, H5P_DEFAULT, gcpl, H5P_DEFAULT) : -1;
      if (d < 0) rc = ds_h5_fail(TK_EIO, "%s: create group", w2);
      if (!rc) rc = copy_attrs(s, d, NULL, w2);
      if (!rc) rc = trim_group(s, d, N, t0, n, w2, depth + 1);
      if (d >= 0) H5Gclose(d);
      if (gcpl >= 0) H5Pclose(gcpl);
      if (s >= 0) H5Gclose(s);
      continue;
    }
    int per_step = 0;
    if (oi.type == H5O_TYPE_DATASET) {
      hid_t s = H5Dopen2(sg, nm, H5P_DEFAULT);
      hid_t sp = s >= 0 ? H5Dget_space(s) : -1;
      hsize_t dims[H5S_MAX_RANK];
      int r = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
      if (r >= 1 && r <= H5S_MAX_RANK && H5Sget_simple_extent_dims(sp, dims, NULL) >= 0)
        per_step = dims[0] == (hsize_t)N;
      if (sp >= 0) H5Sclose(sp);
      if (s >= 0) H5Dclose(s);
      H5Eclear2(H5E_DEFAULT);
    }
    if (per_step)
      rc = slice_dataset(sg, dg, nm, t0, n, where);
    else
      rc = copy_link(sg, dg, nm, where);
  }
  ds_names_free(&names);
  return rc;
}

static int trim_demo(edIn *in, const dsDemoInfo *di, hid_t data_out, int64_t t0, int64_t t1) {
  char where[64];
  snprintf(where, sizeof where, "data/%s", di->name);
  hid_t sg = H5Gopen2(in->data, di->name, H5P_DEFAULT);
  hid_t gcpl = sg >= 0 ? H5Gget_create_plist(sg) : -1;
  hid_t dg = gcpl >= 0 ? H5Gcreate2(data_out, di->name, H5P_DEFAULT, gcpl, H5P_DEFAULT) : -1;
  int rc = 0;
  if (dg < 0) rc = ds_h5_fail(TK_EIO, "%s: create trimmed copy", where);
  if (!rc) rc = copy_attrs(sg, dg, "num_samples", where);
  if (!rc) rc = ds_attr_write_i64(dg, "num_samples", t1 - t0);
  if (!rc) rc = trim_group(sg, dg, di->num_samples, t0, t1 - t0, where, 0);
  if (dg >= 0) H5Gclose(dg);
  if (gcpl >= 0) H5Pclose(gcpl);
  if (sg >= 0) H5Gclose(sg);
  return rc;
}

static int plan_has_mask(const edPlan *p, const char *name) {
  for (int m = 0; m < p->nmasks; m++)
    if (!strcmp(p->masks[m].name, name)) return 1;
  return 0;
}

/* Write the masks of a single-input plan: existing masks restricted to the kept demos, then the
 * plan's own masks. */
static int rebuild_masks(edIn *in, hid_t out_root, const edPlan *p) {
  dsFile *f = in->f;
  int has_group = H5Lexists(in->root, "mask", H5P_DEFAULT) > 0;
  H5Eclear2(H5E_DEFAULT);
  if (!has_group && p->nmasks == 0) return 0;
  hid_t mg = H5Gcreate2(out_root, "mask", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (mg < 0) return ds_h5_fail(TK_EIO, "create group mask");
  int rc = 0;
  if (has_group) {
    hid_t sm = H5Gopen2(in->root, "mask", H5P_DEFAULT);
    if (sm < 0)
      rc = ds_h5_fail(TK_EIO, "open group mask");
    else {
      rc = copy_attrs(sm, mg, NULL, "mask");
      H5Gclose(sm);
    }
  }
  int nd = ds_num_demos(f);
  const char **names = malloc(sizeof(char *) * (size_t)TK_MAX(nd, 1));
  if (!names && !rc) rc = tk_error(TK_ENOMEM, "out of memory");
  int total = ds_num_masks(f) + p->nmasks;
  for (int m = 0; m < total && !rc; m++) {
    const char *mn;
    int *pos = NULL, n = 0;
    const int *pp;
    if (m < ds_num_masks(f)) {
      mn = ds_mask_name(f, m);
      if (plan_has_mask(p, mn)) continue;
      if ((rc = ds_mask(f, mn, &pos, &n))) break;
      pp = pos;
    } else {
      mn = p->masks[m - ds_num_masks(f)].name;
      pp = p->masks[m - ds_num_masks(f)].pos;
      n = p->masks[m - ds_num_masks(f)].n;
    }
    int k = 0;
    for (int i = 0; i < n; i++)
      if (pp[i] >= 0 && pp[i] < nd && (!p->keep || p->keep[pp[i]])) names[k++] = ds_demo(f, pp[i])->name;
    rc = write_mask(mg, mn, names, k);
    free(pos);
  }
  free(names);
  H5Gclose(mg);
  return rc;
}

/* Build the output of a single-input plan into o (root attributes and objects besides data
 * and mask, data attributes, demos, masks). */
static int rebuild(edIn *in, dsOut *o, const edPlan *p) {
  dsFile *f = in->f;
  hid_t root = H5Gopen2(o->file, "/", H5P_DEFAULT), data = -1;
  if (root < 0) return ds_h5_fail(TK_EIO, "open root group of %s", o->tmp);
  int rc = copy_attrs(in->root, root, NULL, "root attributes");
  dsNames links = {0};
  if (!rc) rc = list_links(in->root, "/", &links);
  for (int i = 0; i < links.n && !rc; i++)
    if (strcmp(links.v[i], "data") && strcmp(links.v[i], "mask"))
      rc = copy_link(in->root, root, links.v[i], "");
  ds_names_free(&links);
  if (!rc && (data = H5Gcreate2(root, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
    rc = ds_h5_fail(TK_EIO, "create group data");
  if (!rc) rc = copy_attrs(in->data, data, "total", "data");
  int64_t total = 0;
  for (int i = 0; i < ds_num_demos(f) && !rc; i++) {
    if (p->keep && !p->keep[i]) continue;
    const dsDemoInfo *di = ds_demo(f, i);
    if (i == p->trim_pos) {
      rc = trim_demo(in, di, data, p->t0, p->t1);
      total += p->t1 - p->t0;
    } else {
      if (H5Ocopy(in->data, di->name, data, di->name, H5P_DEFAULT, H5P_DEFAULT) < 0)
        rc = ds_h5_fail(TK_EIO, "copy data/%s from %s", di->name, in->path);
      total += di->num_samples;
    }
  }
  if (!rc) rc = ds_attr_write_i64(data, "total", total);
  if (!rc) rc = rebuild_masks(in, root, p);
  if (data >= 0) H5Gclose(data);
  H5Gclose(root);
  return rc;
}

/* Run a plan: build a temp file beside dest from the input, close the input, commit. Closes in. */
static int run_plan(dsOut *o, edIn *in, const edPlan *p) {
  int rc = check_mask_names(in, o->cmd);
  if (rc) {
    in_close(in);
    return ds_out_release(o, rc);
  }
  rc = ds_out_create(o);
  if (rc) {
    in_close(in);
    return rc;
  }
  rc = rebuild(in, o, p);
  in_close(in);
  return rc ? ds_out_abort(o, rc) : ds_out_commit(o);
}

/* ---- merge ---- */
static int merge_build(edIn *in, int n, dsOut *o) {
  hid_t root = H5Gopen2(o->file, "/", H5P_DEFAULT), data = -1, mg = -1;
  int rc = root < 0 ? ds_h5_fail(TK_EIO, "open root group of %s", o->tmp) : 0;
  if (!rc) rc = copy_attrs(in[0].root, root, NULL, "root attributes");
  if (!rc && (data = H5Gcreate2(root, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
    rc = ds_h5_fail(TK_EIO, "create group data");
  if (!rc) rc = copy_attrs(in[0].data, data, "total", "data");
  int64_t total = 0, k = 0;
  for (int i = 0; i < n && !rc; i++)
    for (int j = 0; j < ds_num_demos(in[i].f) && !rc; j++, k++) {
      const dsDemoInfo *di = ds_demo(in[i].f, j);
      char name[48];
      snprintf(name, sizeof name, "demo_%lld", (long long)k);
      if (H5Ocopy(in[i].data, di->name, data, name, H5P_DEFAULT, H5P_DEFAULT) < 0)
        rc = ds_h5_fail(TK_EIO, "copy data/%s from %s as %s", di->name, in[i].path, name);
      total += di->num_samples;
    }
  if (!rc) rc = ds_attr_write_i64(data, "total", total);
  /* masks: one per name; entries renamed to the new demo names (position p of input i is
   * demo_<base_i + p>, base_i = demos in the inputs before i) */
  dsNames mnames = {0}, entries = {0};
  for (int i = 0; i < n && !rc; i++)
    for (int m = 0; m < ds_num_masks(in[i].f) && !rc; m++)
      if (ds_names_find(&mnames, ds_mask_name(in[i].f, m)) < 0)
        rc = ds_names_push(&mnames, ds_mask_name(in[i].f, m));
  if (!rc && mnames.n > 0 && (mg = H5Gcreate2(root, "mask", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
    rc = ds_h5_fail(TK_EIO, "create group mask");
  for (int m = 0; m < mnames.n && !rc; m++) {
    int64_t base = 0;
    for (int i = 0; i < n && !rc; i++) {
      int has = 0;
      for (int q = 0; q < ds_num_masks(in[i].f); q++)
        has = has || !strcmp(ds_mask_name(in[i].f, q), mnames.v[m]);
      if (has) {
        int *pos = NULL, np = 0;
        rc = ds_mask(in[i].f, mnames.v[m], &pos, &np);
        for (int e = 0; e < np && !rc; e++) {
          char name[48];
          snprintf(name, sizeof name, "demo_%lld", (long long)(base + pos[e]));
          rc = ds_names_push(&entries, name);
        }
        free(pos);
      }
      base += ds_num_demos(in[i].f);
    }
    if (!rc) rc = write_mask(mg, mnames.v[m], (const char *const *)entries.v, entries.n);
    ds_names_free(&entries);
  }
  ds_names_free(&mnames);
  if (mg >= 0) H5Gclose(mg);
  if (data >= 0) H5Gclose(data);
  if (root >= 0) H5Gclose(root);
  return rc;
}

int ds_merge(const char *const *inputs, int n, const char *out, int force) {
  ds_h5_init();
  if (!inputs || n < 1) return tk_error(TK_EINVAL, "merge: no input files");
  if (!out || !out[0]) return tk_error(TK_EINVAL, "merge: no output file given");
  dsOut o;
  int rc = ds_out_begin(&o, "merge", out, DS_KIND_DATASET, inputs, n, force);
  if (rc) return rc;
  edIn *in = calloc((size_t)n, sizeof *in);
  if (!in) return ds_out_release(&o, tk_error(TK_ENOMEM, "out of memory"));
  for (int i = 0; i < n; i++)
    in[i].h = in[i].root = in[i].data = -1;
  for (int i = 0; i < n && !rc; i++)
    rc = in_open(&in[i], "merge", inputs[i]);
  for (int i = 0; i < n && !rc; i++)
    rc = check_mask_names(&in[i], "merge");
  /* every input against the first (task, env_args) and against the first with demos (schema, rate) */
  int ref = -1, total = 0, crc = 0;
  for (int i = 0; i < n && !rc && !crc; i++) {
    if (i > 0 && (crc = ds_compatible(in[0].f, inputs[0], in[i].f, inputs[i]))) break;
    if (ds_num_demos(in[i].f) == 0) continue;
    total += ds_num_demos(in[i].f);
    if (ref < 0)
      ref = i;
    else if (ref != 0)
      crc = ds_compatible(in[ref].f, inputs[ref], in[i].f, inputs[i]);
  }
  if (crc) rc = tk_error_wrap(crc, "merge");
  if (!rc && total == 0) rc = tk_error(TK_EINVAL, "merge: the inputs hold no demos; nothing written");
  if (rc) {
    ds_out_release(&o, rc);
  } else if (!(rc = ds_out_create(&o))) {
    rc = merge_build(in, n, &o);
    for (int i = 0; i < n; i++)
      in_close(&in[i]);
    rc = rc ? ds_out_abort(&o, rc) : ds_out_commit(&o);
  }
  for (int i = 0; i < n; i++)
    in_close(&in[i]);
  free(in);
  return rc;
}

/* ---- split ---- */
int ds_split(const char *path, double valid_frac, uint64_t seed, const char *out, int force) {
  ds_h5_init();
  if (!(valid_frac >= 0 && valid_frac <= 1))
    return tk_error(TK_EINVAL, "split: validation fraction %g is not in [0, 1]", valid_frac);
  dsOut o;
  edIn in;
  int rc = ds_out_begin(&o, "split", out, DS_KIND_DATASET, &path, 1, force);
  if (rc) return rc;
  if ((rc = in_open(&in, "split", path))) return ds_out_release(&o, rc);
  int n = ds_num_demos(in.f);
  if (n < 2) {
    in_close(&in);
    return ds_out_release(&o,
                          tk_error(TK_EINVAL,
                                   "%s: split: %d demo%s: a train and a validation set need at least two; "
                                   "nothing written",
                                   path, n, n == 1 ? "" : "s"));
  }
  int nv = (int)TK_MAX(1, TK_MIN((long long)n - 1, llround(valid_frac * n))); /* round(frac n) in [1, n-1] */
  int64_t *perm = malloc(sizeof *perm * (size_t)TK_MAX(n, 1));
  int *vpos = malloc(sizeof(int) * (size_t)TK_MAX(n, 1)), *tpos = malloc(sizeof(int) * (size_t)TK_MAX(n, 1));
  if (!perm || !vpos || !tpos) {
    in_close(&in);
    rc = ds_out_release(&o, tk_error(TK_ENOMEM, "out of memory"));
  } else {
    for (int i = 0; i < n; i++)
      perm[i] = i;
    tkRng r;
    tk_rng_seed(&r, seed);
    tk_rng_shuffle(&r, perm, n);
    for (int i = 0; i < nv; i++)
      vpos[i] = (int)perm[i];
    for (int i = nv; i < n; i++)
      tpos[i - nv] = (int)perm[i];
    qsort(vpos, (size_t)nv, sizeof(int), cmp_int);
    qsort(tpos, (size_t)(n - nv), sizeof(int), cmp_int);
    edMask m[2] = {{"train", tpos, n - nv}, {"valid", vpos, nv}};
    edPlan p = {.keep = NULL, .trim_pos = -1, .masks = m, .nmasks = 2};
    rc = run_plan(&o, &in, &p);
  }
  free(perm);
  free(vpos);
  free(tpos);
  return rc;
}

/* ---- filter ---- */
static int valid_mask_name(const char *s) {
  if (!s || !s[0] || strlen(s) >= DS_NAME_MAX || !strcmp(s, ".") || !strcmp(s, "..")) return 0;
  for (; *s; s++)
    if (*s == '/' || (unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e) return 0;
  return 1;
}

int ds_filter(const char *path, const dsFilterOpts *fo, const char *out, int force, int *kept) {
  ds_h5_init();
  if (kept) *kept = 0;
  dsFilterOpts none = {0};
  if (!fo) fo = &none;
  char mname[DS_NAME_MAX];
  int rc;
  if (fo->mask_name && (rc = tk_copy_name(mname, sizeof mname, fo->mask_name, "mask name")))
    return tk_error_wrap(rc, "filter");
  if (fo->mask_name && !valid_mask_name(mname))
    return tk_error(TK_EINVAL, "filter: mask name '%s' must be 1-%d printable ASCII characters without '/'",
                    fo->mask_name, DS_NAME_MAX - 1);
  if (fo->max_len > 0 && fo->max_len < fo->min_len)
    return tk_error(TK_EINVAL, "filter: max length %lld is below min length %lld", (long long)fo->max_len,
                    (long long)fo->min_len);
  dsOut o;
  edIn in;
  if ((rc = ds_out_begin(&o, "filter", out, DS_KIND_DATASET, &path, 1, force))) return rc;
  if ((rc = in_open(&in, "filter", path))) return ds_out_release(&o, rc);
  int n = ds_num_demos(in.f), k = 0, unknown = 0;
  for (int i = 0; i < n; i++)
    unknown += ds_demo(in.f, i)->success < 0;
  /* unknown is not failure: a file from another tool may not say; --success-only cannot decide */
  if (fo->success_only && unknown > 0) {
    in_close(&in);
    return ds_out_release(
        &o, tk_error(TK_EINVAL,
                     "%s: filter: %d of %d demos have no success attribute; --success-only cannot "
                     "tell success from failure (nothing written)",
                     path, unknown, n));
  }
  uint8_t *keep = calloc((size_t)TK_MAX(n, 1), 1);
  int *pos = malloc(sizeof(int) * (size_t)TK_MAX(n, 1));
  if (!keep || !pos) {
    in_close(&in);
    rc = ds_out_release(&o, tk_error(TK_ENOMEM, "out of memory"));
  } else {
    for (int i = 0; i < n; i++) {
      const dsDemoInfo *d = ds_demo(in.f, i);
      int ok = (!fo->success_only || d->success == 1) && d->num_samples >= fo->min_len &&
               (fo->max_len <= 0 || d->num_samples <= fo->max_len);
      keep[i] = (uint8_t)ok;
      if (ok) pos[k++] = i;
    }
    if (k == 0) {
      in_close(&in);
      rc = ds_out_release(
          &o, tk_error(TK_EINVAL, "%s: filter: none of the %d demos matches; %s (nothing written)", path, n,
                       fo->mask_name ? "the mask would be empty" : "no demo would be left"));
    } else {
      edMask m = {mname, pos, k};
      edPlan p = {
          .keep = fo->mask_name ? NULL : keep, .trim_pos = -1, .masks = &m, .nmasks = fo->mask_name ? 1 : 0};
      rc = run_plan(&o, &in, &p);
      if (!rc && kept) *kept = k;
    }
  }
  free(keep);
  free(pos);
  return rc;
}

/* ---- delete ---- */
/* "(N demos: demo_a .. demo_b)" for messages about a missing demo. */
static void demo_range(dsFile *f, char *buf, size_t n) {
  int nd = ds_num_demos(f);
  if (nd == 0)
    snprintf(buf, n, "(the file has no demos)");
  else if (nd == 1)
    snprintf(buf, n, "(1 demo: %s)", ds_demo(f, 0)->name);
  else
    snprintf(buf, n, "(%d demos: %s .. %s)", nd, ds_demo(f, 0)->name, ds_demo(f, nd - 1)->name);
}

int ds_delete(const char *path, const char *const *demos, int n, const char *out, int force) {
  ds_h5_init();
  if (!demos || n < 1) return tk_error(TK_EINVAL, "delete: no demos named");
  dsOut o;
  edIn in;
  int rc = ds_out_begin(&o, "delete", out, DS_KIND_DATASET, &path, 1, force);
  if (rc) return rc;
  if ((rc = in_open(&in, "delete", path))) return ds_out_release(&o, rc);
  int nd = ds_num_demos(in.f);
  uint8_t *keep = malloc((size_t)TK_MAX(nd, 1));
  if (!keep)
    rc = tk_error(TK_ENOMEM, "out of memory");
  else
    memset(keep, 1, (size_t)TK_MAX(nd, 1));
  for (int i = 0; i < n && !rc; i++) {
    int p = demos[i] ? ds_find_demo(in.f, demos[i]) : -1;
    if (p >= 0 && !keep[p]) {
      rc = tk_error(TK_EINVAL, "%s: delete: %s is named twice", path, demos[i]);
      break;
    }
    if (p >= 0) {
      keep[p] = 0;
      continue;
    }
    char have[160];
    demo_range(in.f, have, sizeof have);
    rc = tk_error(TK_ENOTFOUND, "%s: delete: no demo '%s' in the file %s", path,
                  demos[i] ? demos[i] : "(null)", have);
  }
  if (!rc && n >= nd)
    rc =
        tk_error(TK_EINVAL, "%s: delete: deleting all %d demos would leave none (nothing written)", path, nd);
  if (rc) {
    in_close(&in);
    rc = ds_out_release(&o, rc);
  } else {
    edPlan p = {.keep = keep, .trim_pos = -1};
    rc = run_plan(&o, &in, &p);
  }
  free(keep);
  return rc;
}

/* ---- trim ---- */
int ds_trim(const char *path, const char *demo, int64_t start, int64_t end, const char *out, int force) {
  ds_h5_init();
  if (!demo || !demo[0]) return tk_error(TK_EINVAL, "trim: no demo named");
  dsOut o;
  edIn in;
  int rc = ds_out_begin(&o, "trim", out, DS_KIND_DATASET, &path, 1, force);
  if (rc) return rc;
  if ((rc = in_open(&in, "trim", path))) return ds_out_release(&o, rc);
  int pos = ds_find_demo(in.f, demo);
  int64_t N = pos >= 0 ? ds_demo(in.f, pos)->num_samples : 0;
  if (end <= 0) end = N;
  if (pos < 0) {
    char have[160];
    demo_range(in.f, have, sizeof have);
    rc = tk_error(TK_ENOTFOUND, "%s: trim: no demo '%s' in the file %s", path, demo, have);
  } else if (start < 0 || start >= N || end > N) {
    rc = tk_error(TK_ERANGE, "%s: trim: steps [%lld, %lld) of %s are out of range (it has %lld steps)", path,
                  (long long)start, (long long)end, demo, (long long)N);
  } else if (start >= end) {
    rc = tk_error(TK_EINVAL, "%s: trim: steps [%lld, %lld) of %s are an empty range", path, (long long)start,
                  (long long)end, demo);
  }
  if (rc) {
    in_close(&in);
    return ds_out_release(&o, rc);
  }
  edPlan p = {.keep = NULL, .trim_pos = pos, .t0 = start, .t1 = end};
  return run_plan(&o, &in, &p);
}
