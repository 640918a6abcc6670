/* dataset/ds_publish.c -- staging directory, publishing committed episodes into the main
 * file (copy + append + fsync + rename: the main file is replaced atomically, never edited
 * in place), and recovery after a crash. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds_internal.h"

int ds_staging_dir(const char *path, char *dir, size_t n) {
  return tk_snprintf(dir, n, "%s%s", path, DS_STAGING_SUFFIX);
}

int ds_staging_lock(const char *dir, const char *path) {
  char lock[4200];
  snprintf(lock, sizeof lock, "%s/lock", dir);
  int fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return tk_error(TK_EIO, "%s: create %s: %s", path, lock, strerror(errno));
  if (flock(fd, LOCK_EX | LOCK_NB)) {
    int e = errno;
    close(fd);
    if (e == EWOULDBLOCK)
      return tk_error(TK_EBUSY, "%s: another process is writing this dataset (lock %s)", path, lock);
    return tk_error(TK_EIO, "%s: lock %s: %s", path, lock, strerror(e));
  }
  return fd;
}

static int cmp_staged(const void *a, const void *b) {
  int64_t x = ((const dsStaged *)a)->index, y = ((const dsStaged *)b)->index;
  return x < y ? -1 : x > y;
}

int ds_staging_list(const char *dir, dsStaged **out, int *n, int *ntmp_removed, int remove_tmp) {
  *out = NULL;
  *n = 0;
  if (ntmp_removed) *ntmp_removed = 0;
  DIR *d = opendir(dir);
  if (!d) {
    if (errno == ENOENT) return 0;
    return tk_error(TK_EIO, "open %s: %s", dir, strerror(errno));
  }
  int cap = 0;
  dsStaged *v = NULL;
  struct dirent *e;
  int rc = 0;
  while ((e = readdir(d))) {
    const char *nm = e->d_name;
    size_t len = strlen(nm);
    if (len > 4 && !strcmp(nm + len - 4, ".tmp")) {
      /* an episode that never committed (its writer died): it is not data */
      if (remove_tmp) {
        char p[4200];
        snprintf(p, sizeof p, "%s/%s", dir, nm);
        if (unlink(p) == 0 && ntmp_removed) (*ntmp_removed)++;
      }
      continue;
    }
    if (len < 4 || strcmp(nm + len - 3, ".h5")) continue;
    char base[256];
    if (len - 3 >= sizeof base) continue;
    memcpy(base, nm, len - 3);
    base[len - 3] = 0;
    int64_t idx;
    if (ds_parse_demo_name(base, &idx)) continue;
    if (*n == cap) {
      cap = cap ? cap * 2 : 16;
      dsStaged *nv = realloc(v, (size_t)cap * sizeof *v);
      if (!nv) {
        rc = tk_error(TK_ENOMEM, "out of memory");
        break;
      }
      v = nv;
    }
    v[*n].index = idx;
    snprintf(v[*n].path, sizeof v[*n].path, "%s/%s", dir, nm);
    (*n)++;
  }
  closedir(d);
  if (rc) {
    free(v);
    *n = 0;
    return rc;
  }
  if (*n) qsort(v, (size_t)*n, sizeof *v, cmp_staged);
  *out = v;
  return 0;
}

int ds_staged_count(const char *path) {
  char dir[4200];
  if (ds_staging_dir(path, dir, sizeof dir)) return 0;
  dsStaged *v;
  int n;
  if (ds_staging_list(dir, &v, &n, NULL, 0)) return 0;
  free(v);
  return n;
}

typedef struct {
  int64_t total;
  int bad;
} sumCtx;

static herr_t sum_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
  (void)info;
  sumCtx *c = data;
  int64_t idx, ns = 0;
  if (ds_parse_demo_name(name, &idx)) return 0;
  hid_t d = H5Gopen2(g, name, H5P_DEFAULT);
  if (d < 0 || ds_attr_read_i64(d, "num_samples", &ns) || ns < 0)
    c->bad = 1;
  else
    c->total += ns;
  if (d >= 0) H5Gclose(d);
  return 0;
}

int ds_publish_staged(const char *path, const char *dir, int *published) {
  ds_h5_init();
  if (published) *published = 0;
  dsStaged *v = NULL;
  int n = 0, rc;
  if ((rc = ds_staging_list(dir, &v, &n, NULL, 0))) return rc;
  if (n == 0) {
    free(v);
    return 0;
  }
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.publish.tmp", path);
  unlink(tmp);
  /* HDF5 1.10.8 can crash inside H5Ocopy when a write fails half-way (seen with EFBIG), so
   * check room first: the new file needs at most the old one plus every staged episode. */
  {
    int64_t need = tk_file_exists(path) ? tk_file_size(path) : 0;
    for (int i = 0; i < n; i++)
      need += tk_file_size(v[i].path);
    need += need / 16 + (1 << 20); /* metadata and slack */
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (uint64_t)need > (uint64_t)rl.rlim_cur) {
      rc = tk_error(TK_EIO,
                    "%s: publish needs a file of about %lld bytes but the file size limit is %llu; "
                    "committed episodes stay safe in %s",
                    path, (long long)need, (unsigned long long)rl.rlim_cur, dir);
      goto out;
    }
    struct statvfs vfs;
    char dirbuf[4200];
    snprintf(dirbuf, sizeof dirbuf, "%s", tmp);
    char *slash = strrchr(dirbuf, '/');
    if (slash)
      *slash = 0;
    else
      snprintf(dirbuf, sizeof dirbuf, ".");
    if (statvfs(dirbuf[0] ? dirbuf : "/", &vfs) == 0 &&
        (uint64_t)vfs.f_bavail * vfs.f_frsize < (uint64_t)need) {
      rc = tk_error(TK_EIO,
                    "%s: publish needs about %lld bytes free but the disk has %llu; committed episodes stay "
                    "safe in %s",
                    path, (long long)need, (unsigned long long)vfs.f_bavail * vfs.f_frsize, dir);
      goto out;
    }
  }
  /* start from the current file, or from the first episode file (a valid 1-demo dataset) */
  const char *base = tk_file_exists(path) ? path : v[0].path;
  if ((rc = tk_copy_file(base, tmp))) {
    tk_error_wrap(rc, "%s: publish (committed episodes stay safe in %s)", path, dir);
    goto out;
  }
  hid_t f = H5Fopen(tmp, H5F_ACC_RDWR, H5P_DEFAULT);
  if (f < 0) {
    rc = ds_h5_fail(TK_EIO, "%s: publish: reopen copy %s", path, tmp);
    goto out_unlink;
  }
  hid_t data = H5Gopen2(f, "data", H5P_DEFAULT);
  if (data < 0) {
    rc = ds_h5_fail(TK_EFORMAT, "%s: publish: no group data", path);
    H5Fclose(f);
    goto out_unlink;
  }
  int added = 0;
  for (int i = 0; i < n && !rc; i++) {
    char name[48];
    snprintf(name, sizeof name, "demo_%lld", (long long)v[i].index);
    if (H5Lexists(data, name, H5P_DEFAULT) > 0) continue; /* published before a crash hit the cleanup */
    hid_t src = H5Fopen(v[i].path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (src < 0) {
      rc = ds_h5_fail(TK_EFORMAT, "%s: publish: open %s", path, v[i].path);
      break;
    }
    char srcname[64];
    snprintf(srcname, sizeof srcname, "data/%s", name);
    if (H5Ocopy(src, srcname, data, name, H5P_DEFAULT, H5P_DEFAULT) < 0)
      rc = ds_h5_fail(TK_EIO, "%s: publish: copy %s from %s", path, name, v[i].path);
    else
      added++;
    H5Fclose(src);
  }
  if (!rc) {
    sumCtx c = {0, 0};
    hsize_t idx = 0;
    H5Literate(data, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, sum_cb, &c);
    rc = ds_attr_write_i64(data, "total", c.total);
    if (rc) tk_error_wrap(rc, "%s: publish", path);
  }
  H5Gclose(data);
  if (H5Fclose(f) < 0 && !rc) rc = ds_h5_fail(TK_EIO, "%s: publish: close %s", path, tmp);
  if (rc) goto out_unlink;
  if ((rc = tk_durable_rename(tmp, path))) {
    tk_error_wrap(rc, "%s: publish", path);
    goto out_unlink;
  }
  /* the main file now holds every staged episode: drop the staged copies */
  for (int i = 0; i < n; i++)
    unlink(v[i].path);
  tk_fsync_dir_of(v[0].path);
  if (published) *published = added;
  goto out;
out_unlink:
  unlink(tmp);
out:
  free(v);
  return rc;
}

int ds_recover(const char *path, int *published, int *dropped) {
  if (published) *published = 0;
  if (dropped) *dropped = 0;
  char dir[4200];
  int rc = ds_staging_dir(path, dir, sizeof dir);
  if (rc) return rc;
  char ptmp[4200];
  snprintf(ptmp, sizeof ptmp, "%s.publish.tmp", path);
  struct stat st;
  if (stat(dir, &st)) {
    if (tk_file_exists(ptmp)) unlink(ptmp); /* a publish that never renamed: the original is intact */
    return 0;
  }
  int fd = ds_staging_lock(dir, path);
  if (fd < 0) return fd;
  unlink(ptmp);
  dsStaged *v;
  int n, nd = 0;
  rc = ds_staging_list(dir, &v, &n, &nd, 1);
  free(v);
  if (dropped) *dropped = nd;
  if (!rc) rc = ds_publish_staged(path, dir, published);
  if (!rc) {
    char lock[4200];
    snprintf(lock, sizeof lock, "%s/lock", dir);
    unlink(lock);
    rmdir(dir);
  }
  close(fd);
  return rc;
}
