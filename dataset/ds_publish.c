/* dataset/ds_publish.c -- staging directory, publishing committed episodes into the main
 * file (copy + append + fsync + rename: the main file is replaced atomically, never edited
 * in place), and recovery after a crash. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
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

/* An unfinished episode in the staging folder (its writer died): a tk_temp_beside name, or the
 * writer's own "demo_<int>.h5.tmp". Nothing else is removed as a temp file. */
static int is_staging_temp(const char *nm) {
  if (tk_is_temp_name(nm)) return 1;
  size_t len = strlen(nm);
  char base[64];
  if (len <= 7 || strcmp(nm + len - 7, ".h5.tmp") || len - 7 >= sizeof base) return 0;
  memcpy(base, nm, len - 7);
  base[len - 7] = 0;
  int64_t idx;
  return ds_parse_demo_name(base, &idx) == 0;
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
    if (is_staging_temp(nm)) {
      /* an episode that never committed (its writer died): it is not data */
      char p[4200];
      if (remove_tmp && !tk_snprintf(p, sizeof p, "%s/%s", dir, nm) && unlink(p) == 0 && ntmp_removed)
        (*ntmp_removed)++;
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
    if ((rc = tk_snprintf(v[*n].path, sizeof v[*n].path, "%s/%s", dir, nm))) {
      rc = tk_error(TK_ERANGE, "staged episode path %s/%s is too long", dir, nm);
      break;
    }
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

int ds_remove_leftover_temps(const char *path) {
  const char *slash = strrchr(path, '/');
  const char *base = slash ? slash + 1 : path;
  char dir[4200];
  if (!slash)
    snprintf(dir, sizeof dir, ".");
  else if (slash == path)
    snprintf(dir, sizeof dir, "/");
  else if (tk_snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path))
    return 0;
  size_t bl = strlen(base);
  if (bl == 0) return 0;
  DIR *d = opendir(dir);
  if (!d) return 0;
  int removed = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    const char *nm = e->d_name;
    /* exactly ".<base>.<8 hex>.<suffix>" (tk_temp_beside(path)): not another file's temp */
    if (nm[0] != '.' || strncmp(nm + 1, base, bl) || nm[1 + bl] != '.' || !tk_is_temp_name(nm)) continue;
    const char *r = nm + 2 + bl;
    int ok = 1;
    for (int i = 0; i < 8 && ok; i++)
      ok = isxdigit((unsigned char)r[i]) != 0;
    if (!ok || r[8] != '.' || strchr(r + 9, '.')) continue;
    char p[4400];
    if (!tk_snprintf(p, sizeof p, "%s/%s", dir, nm) && unlink(p) == 0) removed++;
  }
  closedir(d);
  return removed;
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

/* ---- checking staged episodes before they are published (recovery) ---- */
enum { ST_PUBLISH = 0, ST_PRESENT = 1, ST_REJECT = 2 };
typedef struct {
  int state;      /* ST_*: publish, already in the file (the same episode), set aside */
  int64_t as;     /* index it is published under */
  char why[1024]; /* ST_REJECT: why */
} stPlan;

#define CMP_ARR(field, bytes)                                                                                \
  (((ea.field == NULL) == (eb.field == NULL)) &&                                                             \
   (!ea.field || !memcmp(ea.field, eb.field, (size_t)ea.num_samples * (bytes))))

/* The same episode: attributes and every per-step array equal (so it was published before). */
static int same_episode(dsFile *a, int ia, dsFile *b, int ib) {
  const dsDemoInfo *x = ds_demo(a, ia), *y = ds_demo(b, ib);
  if (x->num_samples != y->num_samples || x->success != y->success || x->seed != y->seed ||
      x->control_hz != y->control_hz || strcmp(x->task, y->task) ||
      strcmp(x->operator_name, y->operator_name) || strcmp(x->device, y->device))
    return 0;
  const dsSchema *s = ds_schema(a);
  dsEpisode ea, eb;
  if (ds_read_episode(a, ia, &ea)) return 0;
  if (ds_read_episode(b, ib, &eb)) {
    ds_episode_free(&ea);
    return 0;
  }
  int same = ea.num_samples == eb.num_samples && CMP_ARR(actions, sizeof(double) * (size_t)s->action_dim) &&
             CMP_ARR(rewards, sizeof(double)) && CMP_ARR(dones, 1) &&
             CMP_ARR(states, sizeof(double) * (size_t)s->state_dim) && CMP_ARR(timestamps, sizeof(double)) &&
             CMP_ARR(interventions, 1);
  for (int k = 0; k < s->nkeys && same; k++) {
    size_t row = (size_t)ds_key_elems(&s->keys[k]) * ds_dtype_size(s->keys[k].dtype);
    same = CMP_ARR(obs[k], row) && CMP_ARR(next_obs[k], row);
  }
  ds_episode_free(&ea);
  ds_episode_free(&eb);
  return same;
}

static void reject(stPlan *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void reject(stPlan *p, const char *fmt, ...) {
  p->state = ST_REJECT;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(p->why, sizeof p->why, fmt, ap);
  va_end(ap);
}

/* Open and validate every staged episode and compare it with the dataset (and with the first
 * staged episode when there is no dataset yet). Fills plan; fails only when path cannot be read. */
static int check_staged(const char *path, const char *dir, const dsStaged *v, int n, stPlan *plan) {
  dsFile *mainf = NULL, *ref = NULL;
  const char *refname = NULL;
  int64_t next = 0;
  if (tk_file_exists(path)) {
    int rc = ds_open(path, DS_OPEN_NO_VALUE_CHECK, &mainf);
    if (rc)
      return tk_error_wrap(rc, "%s: cannot check the staged episodes against the dataset (they stay in %s)",
                           path, dir);
    int nd = ds_num_demos(mainf);
    if (nd) next = ds_demo(mainf, nd - 1)->index + 1;
  }
  for (int i = 0; i < n; i++)
    next = TK_MAX(next, v[i].index + 1);
  for (int i = 0; i < n; i++) {
    stPlan *p = &plan[i];
    p->state = ST_PUBLISH;
    p->as = v[i].index;
    dsFile *sf = NULL;
    if (ds_open(v[i].path, 0, &sf)) {
      reject(p, "unreadable: %s", tk_errmsg());
      continue;
    }
    char want[48];
    snprintf(want, sizeof want, "demo_%lld", (long long)v[i].index);
    if (ds_num_demos(sf) != 1 || strcmp(ds_demo(sf, 0)->name, want)) {
      reject(p, "holds other demos than the one its name says (%s)", want);
    } else if (mainf && ds_compatible(mainf, path, sf, v[i].path)) {
      reject(p, "%s", tk_errmsg());
    } else if (ref && ds_compatible(ref, refname, sf, v[i].path)) {
      reject(p, "%s", tk_errmsg());
    } else {
      int at = mainf ? ds_find_demo(mainf, want) : -1;
      if (at >= 0 && same_episode(mainf, at, sf, 0)) {
        p->state = ST_PRESENT; /* published before a crash stopped the cleanup */
      } else if (at >= 0) {
        p->as = next++;
        tk_warn("%s: staged %s is another episode than the file's %s: published as demo_%lld", path,
                v[i].path, want, (long long)p->as);
      }
      if (!ref && p->state == ST_PUBLISH) {
        ref = sf;
        refname = v[i].path;
        sf = NULL;
      }
    }
    ds_close(sf);
  }
  ds_close(ref);
  ds_close(mainf);
  return 0;
}

/* Move a staged episode that will not be published into <path>.rejected/ (never over another file). */
static int set_aside(const char *path, const dsStaged *st, const char *why) {
  char rdir[4200], dst[4400];
  if (tk_snprintf(rdir, sizeof rdir, "%s%s", path, DS_REJECTED_SUFFIX))
    return tk_error(TK_ERANGE, "%s: path too long", path);
  if (mkdir(rdir, 0755) && errno != EEXIST)
    return tk_error(TK_EIO, "%s: create %s for a staged episode that cannot be published: %s", path, rdir,
                    strerror(errno));
  for (int k = 0; k < 10000; k++) {
    if (k == 0)
      snprintf(dst, sizeof dst, "%s/demo_%lld.h5", rdir, (long long)st->index);
    else
      snprintf(dst, sizeof dst, "%s/demo_%lld.%d.h5", rdir, (long long)st->index, k);
    if (link(st->path, dst) == 0) {
      if (unlink(st->path))
        return tk_error(TK_EIO, "%s: remove %s after moving it to %s: %s", path, st->path, dst,
                        strerror(errno));
      tk_fsync_dir_of(dst);
      tk_fsync_dir_of(st->path);
      tk_warn("%s: staged episode %s not published, set aside as %s: %s", path, st->path, dst, why);
      return 0;
    }
    if (errno == EEXIST) continue;
    /* no hard links on this file system: a rename to a name that does not exist */
    if (!tk_file_exists(dst) && rename(st->path, dst) == 0) {
      tk_fsync_dir_of(dst);
      tk_fsync_dir_of(st->path);
      tk_warn("%s: staged episode %s not published, set aside as %s: %s", path, st->path, dst, why);
      return 0;
    }
    return tk_error(TK_EIO, "%s: move %s to %s: %s", path, st->path, dst, strerror(errno));
  }
  return tk_error(TK_EIO, "%s: no free name in %s", path, rdir);
}

int ds_publish_staged(const char *path, const char *dir, int check, int *published, int *rejected) {
  ds_h5_init();
  if (published) *published = 0;
  if (rejected) *rejected = 0;
  dsStaged *v = NULL;
  int n = 0, rc;
  if ((rc = ds_staging_list(dir, &v, &n, NULL, 0))) return rc;
  if (n == 0) {
    free(v);
    return 0;
  }
  stPlan *plan = calloc((size_t)n, sizeof *plan);
  char tmp[4200] = "";
  int nrej = 0;
  if (!plan) {
    rc = tk_error(TK_ENOMEM, "out of memory");
    goto out;
  }
  for (int i = 0; i < n; i++)
    plan[i].as = v[i].index;
  if (check && (rc = check_staged(path, dir, v, n, plan))) goto out;
  for (int i = 0; i < n && !rc; i++)
    if (plan[i].state == ST_REJECT) {
      rc = set_aside(path, &v[i], plan[i].why);
      nrej += !rc;
    }
  if (rc) goto out;
  int first = -1, todo = 0;
  for (int i = 0; i < n; i++)
    if (plan[i].state == ST_PUBLISH) {
      if (first < 0) first = i;
      todo++;
    }
  int have_main = tk_file_exists(path);
  if (todo == 0) {
    /* nothing new: drop the copies of episodes the file already holds */
    for (int i = 0; i < n; i++)
      if (plan[i].state == ST_PRESENT) unlink(v[i].path);
    tk_fsync_dir_of(v[0].path);
    goto out;
  }
  /* HDF5 1.10.8 can crash inside H5Ocopy when a write fails half-way (seen with EFBIG), so
   * check room first: the new file needs at most the old one plus every staged episode. */
  {
    int64_t need = have_main ? tk_file_size(path) : 0;
    for (int i = 0; i < n; i++)
      if (plan[i].state == ST_PUBLISH) need += tk_file_size(v[i].path);
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
    snprintf(dirbuf, sizeof dirbuf, "%s", path);
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
  /* the new file is a temp file beside path that is ours alone (never "<path>.publish.tmp": a
   * user's file may have that name) */
  int fd = tk_temp_beside(path, tmp, sizeof tmp);
  if (fd < 0) {
    rc = tk_error_wrap(fd, "%s: publish (committed episodes stay safe in %s)", path, dir);
    tmp[0] = 0;
    goto out;
  }
  close(fd);
  /* start from the current file, or from the first episode file (a valid 1-demo dataset) */
  const char *base = have_main ? path : v[first].path;
  if ((rc = tk_copy_file(base, tmp))) {
    tk_error_wrap(rc, "%s: publish (committed episodes stay safe in %s)", path, dir);
    goto out_unlink;
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
    if (plan[i].state != ST_PUBLISH) continue;
    if (!have_main && i == first) {
      added++; /* the copy started from it */
      continue;
    }
    char name[48], srcname[64];
    snprintf(name, sizeof name, "demo_%lld", (long long)plan[i].as);
    snprintf(srcname, sizeof srcname, "data/demo_%lld", (long long)v[i].index);
    if (H5Lexists(data, name, H5P_DEFAULT) > 0) {
      /* not checked (a writer's own episodes are checked when it opens the file): never drop an
       * episode that is not in the file; it is set aside once the file is replaced */
      plan[i].state = ST_REJECT;
      snprintf(plan[i].why, sizeof plan[i].why, "the dataset already holds a %s", name);
      continue;
    }
    hid_t src = H5Fopen(v[i].path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (src < 0) {
      rc = ds_h5_fail(TK_EFORMAT, "%s: publish: open %s", path, v[i].path);
      break;
    }
    if (H5Ocopy(src, srcname, data, name, H5P_DEFAULT, H5P_DEFAULT) < 0)
      rc = ds_h5_fail(TK_EIO, "%s: publish: copy %s from %s", path, srcname, v[i].path);
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
  /* the main file now holds every published episode: drop their staged copies */
  for (int i = 0; i < n; i++)
    if (plan[i].state == ST_PUBLISH || plan[i].state == ST_PRESENT) unlink(v[i].path);
  tk_fsync_dir_of(v[0].path);
  for (int i = 0; i < n && !rc; i++)
    if (plan[i].state == ST_REJECT && tk_file_exists(v[i].path)) {
      rc = set_aside(path, &v[i], plan[i].why);
      nrej += !rc;
    }
  if (published) *published = added;
  goto out;
out_unlink:
  unlink(tmp);
out:
  if (rejected) *rejected = nrej;
  free(plan);
  free(v);
  return rc;
}

int ds_recover_locked(const char *path, const char *dir, int *published, int *dropped, int *rejected) {
  if (published) *published = 0;
  if (dropped) *dropped = 0;
  if (rejected) *rejected = 0;
  ds_remove_leftover_temps(path); /* a publish or an edit that never renamed: the original is intact */
  dsStaged *v;
  int n, nd = 0;
  int rc = ds_staging_list(dir, &v, &n, &nd, 1);
  free(v);
  if (dropped) *dropped = nd;
  if (!rc) rc = ds_publish_staged(path, dir, 1, published, rejected);
  return rc;
}

int ds_recover(const char *path, int *published, int *dropped, int *rejected) {
  if (published) *published = 0;
  if (dropped) *dropped = 0;
  if (rejected) *rejected = 0;
  char dir[4200];
  int rc = ds_staging_dir(path, dir, sizeof dir);
  if (rc) return rc;
  struct stat st;
  if (stat(dir, &st)) return 0; /* no staging folder: no session left anything */
  int fd = ds_staging_lock(dir, path);
  if (fd < 0) return fd;
  rc = ds_recover_locked(path, dir, published, dropped, rejected);
  if (!rc) {
    char lock[4200];
    snprintf(lock, sizeof lock, "%s/lock", dir);
    unlink(lock);
    rmdir(dir);
  }
  close(fd);
  return rc;
}
