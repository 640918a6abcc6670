/* dataset/ds_export.c -- `dataset convert`: the table of export formats, and the output every format
 * goes through.
 *
 * A format is one row of ds_export_formats (name, output kind, writer, marker, help line) and one file,
 * ds_export_<name>.c, holding its writer. ds_convert opens and validates the input, applies the output
 * rule to OUT with the row's kind and builds the export beside OUT:
 *   DS_KIND_HDF5  one file: the temp file, lock and commit of the editing commands (dsOut, ds_edit.c);
 *   DS_KIND_DIR   a directory: an empty temp directory beside OUT that the writer fills; every file and
 *                 directory in it is fsynced, then it is renamed to OUT (exchanged with an existing
 *                 OUT, which is then removed) and OUT's parent fsynced. OUT appears whole or not at all.
 * An existing directory is replaced only with force, and then only when it is empty or holds the row's
 * marker file (an export of the same format): a directory of anything else is never removed. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds_internal.h"

/* The export formats: one row each. Adding a format is a file with its writer plus a row here. */
static const dsExportFormat ds_export_formats[] = {
    {"minari", DS_KIND_DIR, ds_export_minari, "data/metadata.json",
     "a Minari dataset: OUT/data/main_data.hdf5 + metadata.json"},
    {"d4rl", DS_KIND_HDF5, ds_export_d4rl, NULL,
     "D4RL's flat float32 arrays (observations, actions, rewards, ...)"},
};

const dsExportFormat *ds_export_format(int i) {
  return i >= 0 && i < (int)TK_ARRAY_LEN(ds_export_formats) ? &ds_export_formats[i] : NULL;
}

const dsExportFormat *ds_export_find(const char *name) {
  for (int i = 0; name && i < (int)TK_ARRAY_LEN(ds_export_formats); i++)
    if (!strcmp(ds_export_formats[i].name, name)) return &ds_export_formats[i];
  return NULL;
}

/* ---- helpers shared by the writers ---- */
hid_t ds_h5_bool_type(void) {
  hid_t t = H5Tenum_create(H5T_NATIVE_INT8);
  int8_t v = 0;
  H5Tenum_insert(t, "FALSE", &v);
  v = 1;
  H5Tenum_insert(t, "TRUE", &v);
  return t;
}

int ds_write_array(hid_t loc, const char *name, hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                   const void *buf) {
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t d = sp >= 0 ? H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
  hsize_t elems = 1;
  for (int i = 0; i < rank; i++)
    elems *= dims[i];
  int rc = 0;
  if (d < 0 || (elems > 0 && H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0))
    rc = ds_h5_fail(TK_EIO, "write %s", name);
  if (d >= 0) H5Dclose(d);
  if (sp >= 0) H5Sclose(sp);
  return rc;
}

hid_t ds_h5_filetype(dsDtype t) {
  return t == DS_F64 ? H5T_IEEE_F64LE : t == DS_F32 ? H5T_IEEE_F32LE : H5T_STD_U8LE;
}

void ds_list_add(char *list, size_t n, const char *name) {
  size_t off = strlen(list);
  if (off < n) snprintf(list + off, n - off, "%s%s", off ? "," : "", name);
}

int ds_write_text_file(const char *path, const char *text) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) return tk_error(TK_EIO, "create %s: %s", path, strerror(errno));
  size_t len = strlen(text), done = 0;
  while (done < len) {
    ssize_t w = write(fd, text + done, len - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int e = errno;
      close(fd);
      return tk_error(TK_EIO, "write %s: %s", path, strerror(e));
    }
    done += (size_t)w;
  }
  if (fsync(fd)) {
    int e = errno;
    close(fd);
    return tk_error(TK_EIO, "fsync %s: %s", path, strerror(e));
  }
  if (close(fd)) return tk_error(TK_EIO, "close %s: %s", path, strerror(errno));
  return 0;
}

/* ---- directory outputs ---- */
static int rm_cb(const char *p, const struct stat *st, int type, struct FTW *ftw) {
  (void)st, (void)ftw;
  return (type == FTW_DP ? rmdir(p) : unlink(p)) ? -1 : 0;
}

/* Remove a tree we made (our temp directory, or the output it replaced), links not followed. */
static int remove_tree(const char *path) {
  struct stat st;
  if (lstat(path, &st)) return errno == ENOENT ? 0 : -1;
  if (!S_ISDIR(st.st_mode)) return unlink(path);
  return nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

static int fsync_cb(const char *p, const struct stat *st, int type, struct FTW *ftw) {
  (void)ftw;
  if (type != FTW_F && type != FTW_DP) return 0;
  if (type == FTW_F && !S_ISREG(st->st_mode)) return 0;
  int fd = open(p, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fsync(fd)) {
    int e = errno;
    if (fd >= 0) close(fd);
    tk_error(TK_EIO, "fsync %s: %s", p, strerror(e));
    return 1;
  }
  close(fd);
  return 0;
}

/* fsync every file and directory under path (depth first: a directory after what it holds). */
static int fsync_tree(const char *path) {
  int r = nftw(path, fsync_cb, 16, FTW_DEPTH | FTW_PHYS);
  if (r == 1) return TK_EIO; /* message set by the callback */
  if (r) return tk_error(TK_EIO, "fsync %s: %s", path, strerror(errno));
  return 0;
}

/* An empty directory beside dest that is ours alone (a tk_temp_beside name). */
static int make_temp_dir(const char *dest, char *buf, size_t n) {
  for (int attempt = 0; attempt < 100; attempt++) {
    int fd = tk_temp_beside(dest, buf, n);
    if (fd < 0) return fd;
    close(fd);
    unlink(buf);
    if (mkdir(buf, 0755) == 0) return 0;
    if (errno != EEXIST) return tk_error(TK_EIO, "create %s: %s", buf, strerror(errno));
  }
  return tk_error(TK_EIO, "create a temp directory beside %s: no free name", dest);
}

static int dir_is_empty(const char *path) {
  DIR *d = opendir(path);
  if (!d) return 0;
  struct dirent *e;
  int empty = 1;
  while (empty && (e = readdir(d)))
    empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
  closedir(d);
  return empty;
}

/* The directory rule on top of the output rule: an existing directory only with force, and then only
 * an empty one or an export of the same format; never a directory that holds the input. */
static int dir_replace_check(const dsExportFormat *fmt, const char *dest, const char *src, int force) {
  struct stat st;
  if (stat(dest, &st) || !S_ISDIR(st.st_mode)) return 0;
  char rd[PATH_MAX], rs[PATH_MAX];
  if (realpath(dest, rd) && realpath(src, rs)) {
    size_t l = strlen(rd);
    if (!strncmp(rs, rd, l) && (rs[l] == '/' || l == 1))
      return tk_error(TK_EINVAL,
                      "output %s holds the input %s: refusing to replace it (choose another output)", dest,
                      src);
  }
  int empty = dir_is_empty(dest), ours = 0;
  char marker[4400];
  if (fmt->dir_marker && !tk_snprintf(marker, sizeof marker, "%s/%s", dest, fmt->dir_marker)) {
    struct stat ms;
    ours = lstat(marker, &ms) == 0 && S_ISREG(ms.st_mode);
  }
  if (!empty && !ours)
    return tk_error(
        TK_EINVAL,
        "output %s is a directory without %s (not a %s export): refusing to replace it, even with "
        "--force (choose another output, or remove it yourself)",
        dest, fmt->dir_marker ? fmt->dir_marker : "a marker", fmt->name);
  if (!force)
    return tk_error(TK_EINVAL,
                    "output %s is an existing %s: refusing to replace it (pass --force to replace it)", dest,
                    empty ? "empty directory" : "export");
  return 0;
}

/* Put the finished temp directory at dest: a rename, or an exchange with what is there (then removed). */
static int dir_commit(const char *tmp, const char *dest) {
  struct stat st;
  if (lstat(dest, &st) != 0) {
    if (errno != ENOENT) return tk_error(TK_EIO, "examine %s: %s", dest, strerror(errno));
    if (rename(tmp, dest)) return tk_error(TK_EIO, "rename %s to %s: %s", tmp, dest, strerror(errno));
  } else if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dest, RENAME_EXCHANGE) == 0) {
    /* tmp now names the old output */
    if (remove_tree(tmp)) tk_warn("convert: could not remove the replaced output, now at %s", tmp);
  } else if (errno == EINVAL || errno == ENOSYS || errno == ENOTSUP) {
    /* no atomic exchange on this file system: move the old aside, the new in, remove the old */
    char aside[4200];
    int rc = make_temp_dir(dest, aside, sizeof aside);
    if (rc) return rc;
    rmdir(aside);
    if (rename(dest, aside)) return tk_error(TK_EIO, "move %s aside: %s", dest, strerror(errno));
    if (rename(tmp, dest)) {
      int e = errno;
      rename(aside, dest);
      return tk_error(TK_EIO, "rename %s to %s: %s", tmp, dest, strerror(e));
    }
    if (remove_tree(aside)) tk_warn("convert: could not remove the replaced output, now at %s", aside);
  } else {
    return tk_error(TK_EIO, "exchange %s with %s: %s", tmp, dest, strerror(errno));
  }
  return tk_fsync_dir_of(dest);
}

static int open_input(const char *path, dsFile **f) {
  if (!path || !path[0]) return tk_error(TK_EINVAL, "convert: no input file given");
  int rc = ds_open(path, 0, f); /* its one-line message names the file and the problem */
  if (rc) return rc;
  if (ds_num_demos(*f) == 0) {
    ds_close(*f);
    *f = NULL;
    return tk_error(TK_EINVAL, "%s: convert: the file holds no demos (nothing written)", path);
  }
  return 0;
}

static int convert_dir(const dsExportFormat *fmt, dsExportJob *j, const char *path, const char *out,
                       int force) {
  char dest[4096], tmp[4200];
  int rc = ds_output_check(out, DS_KIND_DIR, &path, 1, force);
  if (rc) return tk_error_wrap(rc, "convert");
  if ((rc = tk_resolve_link(out, dest, sizeof dest))) return tk_error_wrap(rc, "convert");
  for (size_t l = strlen(dest); l > 1 && dest[l - 1] == '/'; l--) /* OUT/ names OUT, not a name inside it */
    dest[l - 1] = 0;
  if ((rc = dir_replace_check(fmt, dest, path, force))) return tk_error_wrap(rc, "convert");
  if ((rc = open_input(path, &j->f))) return rc;
  if ((rc = make_temp_dir(dest, tmp, sizeof tmp))) {
    ds_close(j->f);
    return tk_error_wrap(rc, "%s: convert", dest);
  }
  j->dest = dest;
  j->tmp = tmp;
  rc = fmt->write(j);
  ds_close(j->f);
  j->f = NULL;
  if (!rc) rc = fsync_tree(tmp);
  if (!rc) rc = dir_commit(tmp, dest);
  if (rc) {
    remove_tree(tmp);
    H5Eclear2(H5E_DEFAULT);
    return tk_error_wrap(rc, "%s: convert", dest);
  }
  return 0;
}

int ds_convert(const char *path, const char *to, const char *out, int force, dsConvertResult *res) {
  ds_h5_init();
  dsConvertResult local;
  if (!res) res = &local;
  memset(res, 0, sizeof *res);
  const dsExportFormat *fmt = ds_export_find(to);
  if (!fmt) {
    char names[256] = "";
    for (int i = 0; ds_export_format(i); i++)
      ds_list_add(names, sizeof names, ds_export_format(i)->name);
    return tk_error(TK_EINVAL, "convert: unknown format '%s' (one of: %s)", to ? to : "", names);
  }
  if (!out || !out[0])
    return tk_error(TK_EINVAL, "convert: give an output (a conversion never replaces its input)");
  dsExportJob j = {.src = path, .file = -1, .res = res};
  if (fmt->out_kind == DS_KIND_DIR) return convert_dir(fmt, &j, path, out, force);
  dsOut o;
  int rc = ds_out_begin(&o, "convert", out, fmt->out_kind, &path, 1, force);
  if (rc) return rc;
  if ((rc = open_input(path, &j.f))) return ds_out_release(&o, rc);
  if ((rc = ds_out_create(&o))) {
    ds_close(j.f);
    return rc;
  }
  j.dest = o.dest;
  j.tmp = o.tmp;
  j.file = o.file;
  rc = fmt->write(&j);
  ds_close(j.f);
  return rc ? ds_out_abort(&o, rc) : ds_out_commit(&o);
}
