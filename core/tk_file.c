/* core/tk_file.c -- durable file helpers: fsync of directories, file copy, whole-file reads. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>

#include "tk.h"

int tk_fsync_dir_of(const char *path) {
  char buf[4096];
  if (tk_snprintf(buf, sizeof buf, "%s", path)) return TK_ERANGE;
  const char *dir = dirname(buf);
  int fd = open(dir, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return tk_error(TK_EIO, "open directory %s: %s", dir, strerror(errno));
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc) return tk_error(TK_EIO, "fsync directory %s: %s", dir, strerror(e));
  return 0;
}

int tk_fsync_file(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return tk_error(TK_EIO, "fsync %s: open: %s", path, strerror(errno));
  int rc = fsync(fd);
  int e = errno;
  close(fd);
  if (rc) return tk_error(TK_EIO, "fsync %s: %s", path, strerror(e));
  return 0;
}

int tk_durable_rename(const char *tmp, const char *dst) {
  int rc = tk_fsync_file(tmp);
  if (rc) return rc;
  if (rename(tmp, dst)) return tk_error(TK_EIO, "rename %s to %s: %s", tmp, dst, strerror(errno));
  return tk_fsync_dir_of(dst);
}

int tk_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

int64_t tk_file_size(const char *path) {
  struct stat st;
  if (stat(path, &st)) return tk_error(TK_EIO, "stat %s: %s", path, strerror(errno));
  return (int64_t)st.st_size;
}

int tk_copy_file(const char *src, const char *dst) {
  int in = open(src, O_RDONLY);
  if (in < 0) return tk_error(TK_EIO, "open %s: %s", src, strerror(errno));
  int out = open(dst, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out < 0) {
    int e = errno;
    close(in);
    return tk_error(TK_EIO, "create %s: %s", dst, strerror(e));
  }
  struct stat st;
  int rc = 0;
  if (fstat(in, &st)) {
    rc = tk_error(TK_EIO, "stat %s: %s", src, strerror(errno));
    goto done;
  }
  off_t left = st.st_size;
  int use_cfr = 1;
  while (left > 0) {
    ssize_t n = -1;
    if (use_cfr) {
      n = copy_file_range(in, NULL, out, NULL, (size_t)TK_MIN(left, (off_t)1 << 30), 0);
      if (n < 0 && (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
        use_cfr = 0;
        continue;
      }
    } else {
      static _Thread_local char buf[1 << 16];
      ssize_t r = read(in, buf, sizeof buf);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) {
        rc = tk_error(TK_EIO, "read %s: %s", src, r < 0 ? strerror(errno) : "unexpected end of file");
        goto done;
      }
      ssize_t off = 0;
      while (off < r) {
        ssize_t w = write(out, buf + off, (size_t)(r - off));
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) {
          rc = tk_error(TK_EIO, "write %s: %s", dst, strerror(errno));
          goto done;
        }
        off += w;
      }
      n = r;
    }
    if (n < 0) {
      if (errno == EINTR) continue;
      rc = tk_error(TK_EIO, "copy %s to %s: %s", src, dst, strerror(errno));
      goto done;
    }
    if (n == 0) {
      rc = tk_error(TK_EIO, "copy %s to %s: source shrank while copying", src, dst);
      goto done;
    }
    left -= n;
  }
  if (fsync(out)) rc = tk_error(TK_EIO, "fsync %s: %s", dst, strerror(errno));
done:
  close(in);
  if (close(out) && !rc) rc = tk_error(TK_EIO, "close %s: %s", dst, strerror(errno));
  return rc;
}

int tk_read_text_max(const char *path, size_t max, char **out, size_t *len) {
  *out = NULL;
  FILE *f = fopen(path, "rb");
  if (!f) return tk_error(TK_EIO, "open %s: %s", path, strerror(errno));
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  if (!buf) {
    fclose(f);
    return tk_error(TK_ENOMEM, "read %s: out of memory", path);
  }
  for (;;) {
    if (n + 4096 + 1 > cap) {
      char *nb = realloc(buf, cap * 2);
      if (!nb) {
        free(buf);
        fclose(f);
        return tk_error(TK_ENOMEM, "read %s: out of memory", path);
      }
      buf = nb;
      cap *= 2;
    }
    size_t r = fread(buf + n, 1, 4096, f);
    n += r;
    if (n > max) { /* refused as soon as it is known: the rest is never read */
      free(buf);
      fclose(f);
      return tk_error(TK_ERANGE, "read %s: file larger than %zu bytes", path, max);
    }
    if (r < 4096) break;
  }
  int err = ferror(f);
  fclose(f);
  if (err) {
    free(buf);
    return tk_error(TK_EIO, "read %s: read error", path);
  }
  buf[n] = 0;
  *out = buf;
  if (len) *len = n;
  return 0;
}

int tk_read_text(const char *path, char **out, size_t *len) {
  return tk_read_text_max(path, (size_t)1 << 30, out, len);
}

#define TK_TEMP_SUFFIX ".demokit-tmp"

int tk_temp_beside(const char *dst, char *buf, size_t n) {
  const char *slash = strrchr(dst, '/');
  const char *base = slash ? slash + 1 : dst;
  int dirlen = slash ? (int)(slash - dst + 1) : 0;
  static _Atomic unsigned long counter;
  for (int attempt = 0; attempt < 100; attempt++) {
    unsigned long r =
        (unsigned long)tk_now_ns() ^ ((unsigned long)getpid() << 20) ^ (counter++ * 2654435761ul);
    if (tk_snprintf(buf, n, "%.*s.%s.%08lx%s", dirlen, dst, base, r & 0xfffffffful, TK_TEMP_SUFFIX))
      return tk_error(TK_ERANGE, "path too long for a temp file beside %.200s", dst);
    int fd = open(buf, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd >= 0) return fd;
    if (errno != EEXIST) return tk_error(TK_EIO, "create a temp file beside %s: %s", dst, strerror(errno));
  }
  return tk_error(TK_EIO, "create a temp file beside %s: no free name", dst);
}

int tk_resolve_link(const char *path, char *buf, size_t n) {
  struct stat st;
  if (lstat(path, &st) || !S_ISLNK(st.st_mode)) {
    if (tk_snprintf(buf, n, "%s", path)) return tk_error(TK_ERANGE, "path too long: %.200s", path);
    return 0;
  }
  char *real = realpath(path, NULL);
  if (!real) return tk_error(TK_EIO, "%s: a symlink to a missing file (%s)", path, strerror(errno));
  int rc = tk_snprintf(buf, n, "%s", real) ? tk_error(TK_ERANGE, "path too long: %.200s", real) : 0;
  free(real);
  return rc;
}

int tk_is_temp_name(const char *base) {
  size_t l = strlen(base), s = strlen(TK_TEMP_SUFFIX);
  return base[0] == '.' && l > s + 10 && !strcmp(base + l - s, TK_TEMP_SUFFIX);
}

int tk_json_load(const char *path, cJSON **out) {
  char *text;
  size_t n;
  *out = NULL;
  /* a JSON config has no need for more than a few MB; refuse before reading a huge file */
  int rc = tk_read_text_max(path, (size_t)8 << 20, &text, &n);
  if (rc) return rc;
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithLengthOpts(text, n, &end, 0);
  if (!j) {
    size_t off = end ? (size_t)(end - text) : 0;
    free(text);
    return tk_error(TK_EFORMAT, "%s: invalid JSON near byte %zu", path, off);
  }
  free(text);
  *out = j;
  return 0;
}

double tk_json_num(const cJSON *obj, const char *key, double dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsNumber(v) ? v->valuedouble : dflt;
}

const char *tk_json_str(const cJSON *obj, const char *key, const char *dflt) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
  return cJSON_IsString(v) ? v->valuestring : dflt;
}
