/* dataset/ds_load.c -- reading an opened file (ds_open checked it, ds_validate.c): accessors, episodes,
 * rows of one dataset, and the training loader, with raw reads of contiguous data where ds_open found
 * them (the raw-read rule is in ds_validate.c). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "ds_internal.h"

int ds_link_kind(hid_t loc, const char *name) {
  if (H5Lexists(loc, name, H5P_DEFAULT) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return 0;
  }
  H5O_info_t oi;
  if (H5Oget_info_by_name2(loc, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0) {
    H5Eclear2(H5E_DEFAULT);
    return -1;
  }
  return oi.type == H5O_TYPE_DATASET ? 1 : oi.type == H5O_TYPE_GROUP ? 2 : -1;
}

/* Rows [r0, r0 + n) of an open dataset, every value of each row, into buf as memtype: HDF5
 * converts from the stored type (byte order, precision, integers, enums of integers). */
herr_t ds_read_rows_h5(hid_t d, int64_t r0, int64_t n, hid_t memtype, void *buf) {
  hid_t fs = H5Dget_space(d);
  if (fs < 0) return -1;
  int rank = H5Sget_simple_extent_ndims(fs);
  hsize_t dims[H5S_MAX_RANK], start[H5S_MAX_RANK] = {0}, count[H5S_MAX_RANK];
  herr_t e = -1;
  if (rank >= 1 && rank <= H5S_MAX_RANK && H5Sget_simple_extent_dims(fs, dims, NULL) == rank && r0 >= 0 &&
      n >= 0 && (hsize_t)(r0 + n) <= dims[0]) {
    hsize_t elems = (hsize_t)n;
    start[0] = (hsize_t)r0;
    count[0] = (hsize_t)n;
    for (int i = 1; i < rank; i++) {
      count[i] = dims[i];
      elems *= dims[i];
    }
    if (elems == 0)
      e = 0;
    else if (H5Sselect_hyperslab(fs, H5S_SELECT_SET, start, NULL, count, NULL) >= 0) {
      hid_t ms = H5Screate_simple(1, &elems, NULL);
      e = ms >= 0 ? H5Dread(d, memtype, ms, fs, H5P_DEFAULT, buf) : -1;
      if (ms >= 0) H5Sclose(ms);
    }
  }
  H5Sclose(fs);
  return e;
}

/* A new dsFile for path: refused when the path does not fit whole (a cut path names another file). */
int ds_file_new(const char *path, dsFile **out) {
  *out = NULL;
  dsFile *f = calloc(1, sizeof *f);
  if (!f) return tk_error(TK_ENOMEM, "out of memory");
  if (tk_snprintf(f->path, sizeof f->path, "%s", path)) {
    free(f);
    return tk_error(TK_ERANGE, "%.80s...: path is longer than %zu bytes", path, sizeof f->path - 1);
  }
  f->file = f->data = -1;
  f->rawfd = -1;
  f->rows_d = -1;
  pthread_mutex_init(&f->rows_mu, NULL);
  *out = f;
  return 0;
}

void ds_close(dsFile *f) {
  if (!f) return;
  if (f->rows_d >= 0) H5Dclose(f->rows_d);
  free(f->rows_name);
  pthread_mutex_destroy(&f->rows_mu);
  if (f->data >= 0) H5Gclose(f->data);
  if (f->file >= 0) H5Fclose(f->file);
  if (f->rawfd >= 0) close(f->rawfd);
  free(f->locs);
  for (int m = 0; m < f->nmasks; m++)
    free(f->mask_pos[m]);
  free(f->mask_pos);
  free(f->mask_n);
  free(f->mask_names);
  free(f->demos);
  free(f->env_args);
  free(f);
}

/* ---- accessors ---- */
const char *ds_path(const dsFile *f) { return f->path; }
int ds_num_demos(const dsFile *f) { return f->ndemos; }
const dsDemoInfo *ds_demo(const dsFile *f, int i) { return i >= 0 && i < f->ndemos ? &f->demos[i] : NULL; }
const dsSchema *ds_schema(const dsFile *f) { return &f->schema; }
const char *ds_env_name(const dsFile *f) { return f->env_name; }
const char *ds_env_args(const dsFile *f) { return f->env_args ? f->env_args : ""; }
int64_t ds_total_samples(const dsFile *f) { return f->total; }
int ds_is_native(const dsFile *f) { return f->native; }
void ds_demo_stats(const dsFile *f, dsDemoStats *st) {
  memset(st, 0, sizeof *st);
  st->min_len = f->ndemos > 0 ? INT64_MAX : 0;
  for (int i = 0; i < f->ndemos; i++) {
    const dsDemoInfo *d = &f->demos[i];
    st->min_len = TK_MIN(st->min_len, d->num_samples);
    st->max_len = TK_MAX(st->max_len, d->num_samples);
    if (d->success >= 0) {
      st->known++;
      st->successes += d->success;
    }
  }
}
int ds_num_masks(const dsFile *f) { return f->nmasks; }
const char *ds_mask_name(const dsFile *f, int m) { return m >= 0 && m < f->nmasks ? f->mask_names[m] : NULL; }

int ds_find_demo(const dsFile *f, const char *name) {
  int64_t idx;
  if (ds_parse_demo_name(name, &idx)) return -1;
  int lo = 0, hi = f->ndemos - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (f->demos[mid].index == idx) return strcmp(f->demos[mid].name, name) == 0 ? mid : -1;
    if (f->demos[mid].index < idx)
      lo = mid + 1;
    else
      hi = mid - 1;
  }
  return -1;
}

int ds_mask(const dsFile *f, const char *name, int **pos, int *n) {
  for (int m = 0; m < f->nmasks; m++)
    if (!strcmp(f->mask_names[m], name)) {
      *n = f->mask_n[m];
      *pos = malloc(sizeof(int) * (size_t)TK_MAX(*n, 1));
      if (!*pos) return tk_error(TK_ENOMEM, "out of memory");
      memcpy(*pos, f->mask_pos[m], sizeof(int) * (size_t)*n);
      return 0;
    }
  char have[512] = "";
  size_t off = 0;
  for (int m = 0; m < f->nmasks && off < sizeof have; m++)
    off += (size_t)snprintf(have + off, sizeof have - off, "%s%s", m ? ", " : "", f->mask_names[m]);
  return tk_error(TK_ENOTFOUND, "%s: no mask '%s' (masks: %s)", f->path, name, f->nmasks ? have : "none");
}

/* ---- reading ---- */
static int read_all(hid_t g, const char *name, hid_t memtype, void *buf, const char *path, const char *demo) {
  hid_t d = ds_h5_open_read(g, name);
  if (d < 0) return ds_h5_fail(TK_EFORMAT, "%s: %s/%s: open", path, demo, name);
  herr_t e = H5Dread(d, memtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
  H5Dclose(d);
  if (e < 0) return ds_h5_fail(TK_EIO, "%s: %s/%s: read", path, demo, name);
  return 0;
}

void ds_episode_free(dsEpisode *e) {
  if (!e) return;
  free(e->actions);
  free(e->rewards);
  free(e->dones);
  free(e->states);
  free(e->timestamps);
  free(e->interventions);
  for (int k = 0; k < DS_MAX_KEYS; k++) {
    free(e->obs[k]);
    free(e->next_obs[k]);
  }
  memset(e, 0, sizeof *e);
}

int ds_read_episode(dsFile *f, int i, dsEpisode *e) {
  memset(e, 0, sizeof *e);
  const dsDemoInfo *di = ds_demo(f, i);
  if (!di) return tk_error(TK_EINVAL, "%s: no demo at position %d (%d demos)", f->path, i, f->ndemos);
  const dsSchema *s = &f->schema;
  int64_t N = di->num_samples;
  size_t n1 = (size_t)TK_MAX(N, 1);
  hid_t g = H5Gopen2(f->data, di->name, H5P_DEFAULT);
  if (g < 0) return ds_h5_fail(TK_EFORMAT, "%s: %s: open", f->path, di->name);
  int rc = 0;
  e->num_samples = N;
  e->actions = malloc(n1 * (size_t)s->action_dim * sizeof(double));
  e->rewards = calloc(n1, sizeof(double));
  e->dones = calloc(n1, 1);
  if (!e->actions || !e->rewards || !e->dones) rc = tk_error(TK_ENOMEM, "out of memory");
  if (!rc && N > 0) rc = read_all(g, "actions", H5T_NATIVE_DOUBLE, e->actions, f->path, di->name);
  if (!rc && N > 0 && di->has_rewards)
    rc = read_all(g, "rewards", H5T_NATIVE_DOUBLE, e->rewards, f->path, di->name);
  if (!rc && N > 0 && di->has_dones) rc = read_all(g, "dones", H5T_NATIVE_UINT8, e->dones, f->path, di->name);
  if (!rc && di->has_states) {
    e->states = malloc(n1 * (size_t)s->state_dim * sizeof(double));
    if (!e->states)
      rc = tk_error(TK_ENOMEM, "out of memory");
    else if (N > 0)
      rc = read_all(g, "states", H5T_NATIVE_DOUBLE, e->states, f->path, di->name);
  }
  if (!rc && di->has_timestamps) {
    e->timestamps = malloc(n1 * sizeof(double));
    if (!e->timestamps)
      rc = tk_error(TK_ENOMEM, "out of memory");
    else if (N > 0)
      rc = read_all(g, "timestamps", H5T_NATIVE_DOUBLE, e->timestamps, f->path, di->name);
  }
  if (!rc && di->has_interventions) {
    e->interventions = malloc(n1);
    if (!e->interventions)
      rc = tk_error(TK_ENOMEM, "out of memory");
    else if (N > 0)
      rc = read_all(g, "interventions", H5T_NATIVE_UINT8, e->interventions, f->path, di->name);
  }
  for (int k = 0; k < s->nkeys && !rc; k++) {
    const dsKeySpec *key = &s->keys[k];
    size_t bytes = n1 * (size_t)ds_key_elems(key) * ds_dtype_size(key->dtype);
    char nm[DS_NAME_MAX + 16];
    e->obs[k] = malloc(bytes);
    if (!e->obs[k])
      rc = tk_error(TK_ENOMEM, "%s: %s: out of memory for obs/%s", f->path, di->name, key->name);
    snprintf(nm, sizeof nm, "obs/%s", key->name);
    if (!rc && N > 0) rc = read_all(g, nm, ds_h5_memtype(key->dtype), e->obs[k], f->path, di->name);
    if (!rc && di->has_next_obs) {
      e->next_obs[k] = malloc(bytes);
      if (!e->next_obs[k]) rc = tk_error(TK_ENOMEM, "out of memory");
      snprintf(nm, sizeof nm, "next_obs/%s", key->name);
      if (!rc && N > 0) rc = read_all(g, nm, ds_h5_memtype(key->dtype), e->next_obs[k], f->path, di->name);
    }
  }
  H5Gclose(g);
  if (rc) ds_episode_free(e);
  return rc;
}

/* The open dataset `dataset` of demo position i, kept open in f (with its chunk cache) until another
 * is asked for. Called with f->rows_mu held. */
static int rows_dataset(dsFile *f, int i, const char *dataset, hid_t *out) {
  const dsDemoInfo *di = &f->demos[i];
  if (f->rows_d >= 0 && f->rows_demo == i && !strcmp(f->rows_name, dataset)) {
    *out = f->rows_d;
    return 0;
  }
  if (f->rows_d >= 0) H5Dclose(f->rows_d);
  free(f->rows_name);
  f->rows_d = -1;
  f->rows_name = NULL;
  hid_t g = H5Gopen2(f->data, di->name, H5P_DEFAULT);
  if (g < 0) return ds_h5_fail(TK_EFORMAT, "%s: %s: open", f->path, di->name);
  hid_t d = ds_link_kind(g, dataset) == 1 ? ds_h5_open_read(g, dataset) : -1;
  H5Gclose(g);
  H5Eclear2(H5E_DEFAULT);
  if (d < 0) return tk_error(TK_ENOTFOUND, "%s: %s/%s: no such dataset", f->path, di->name, dataset);
  f->rows_name = strdup(dataset);
  if (!f->rows_name) {
    H5Dclose(d);
    return tk_error(TK_ENOMEM, "out of memory");
  }
  f->rows_d = d;
  f->rows_demo = i;
  *out = d;
  return 0;
}

/* Rows [start, start + count) of a demo's dataset (count < 0: to the end) as type t. */
static int read_rows_named(dsFile *f, int i, const char *dataset, int64_t start, int64_t count, dsDtype t,
                           void *out, int64_t capacity, int64_t *cols) {
  const dsDemoInfo *di = ds_demo(f, i);
  if (!di) return tk_error(TK_EINVAL, "%s: no demo at position %d (%d demos)", f->path, i, f->ndemos);
  if (!dataset || t < DS_F32 || t > DS_U8) return tk_error(TK_EINVAL, "ds_read_rows: bad arguments");
  pthread_mutex_lock(&f->rows_mu);
  hid_t d = -1;
  int rc = rows_dataset(f, i, dataset, &d);
  hsize_t dims[H5S_MAX_RANK];
  int rank = -1;
  if (!rc) {
    hid_t sp = H5Dget_space(d);
    rank = H5Sget_simple_extent_ndims(sp);
    if (rank < 1 || rank > H5S_MAX_RANK || H5Sget_simple_extent_dims(sp, dims, NULL) != rank)
      rc = tk_error(TK_EFORMAT, "%s: %s/%s: not an array of steps", f->path, di->name, dataset);
    H5Sclose(sp);
  }
  if (!rc) {
    int64_t c = 1, rows = (int64_t)dims[0];
    for (int k = 1; k < rank; k++)
      c *= (int64_t)dims[k];
    if (cols) *cols = c;
    if (count < 0) count = start <= rows ? rows - start : 0;
    if (start < 0 || start > rows || count > rows - start)
      rc = tk_error(TK_ERANGE, "%s: %s/%s: rows %lld..%lld are outside its %lld rows", f->path, di->name,
                    dataset, (long long)start, (long long)(start + count - 1), (long long)rows);
    else if (count * c > capacity)
      rc = tk_error(TK_ERANGE, "%s: %s/%s: %lld values do not fit in %lld", f->path, di->name, dataset,
                    (long long)(count * c), (long long)capacity);
    else if (ds_read_rows_h5(d, start, count, ds_h5_memtype(t), out) < 0)
      rc = ds_h5_fail(TK_EIO, "%s: %s/%s: read", f->path, di->name, dataset);
  }
  pthread_mutex_unlock(&f->rows_mu);
  return rc;
}

int ds_read_rows(dsFile *f, int i, const char *dataset, int64_t start, int64_t count, dsDtype t, void *out,
                 int64_t capacity, int64_t *cols) {
  if (count < 0) return tk_error(TK_EINVAL, "%s: ds_read_rows: count %lld < 0", f->path, (long long)count);
  return read_rows_named(f, i, dataset, start, count, t, out, capacity, cols);
}

int ds_read_column(dsFile *f, int i, const char *dataset, double *out, int64_t capacity, int64_t *cols) {
  return read_rows_named(f, i, dataset, 0, -1, DS_F64, out, capacity, cols);
}

/* ---- training loader ---- */
/* Read a whole float dataset as float32. HDF5's own conversion allocates a large buffer on
 * every read; read the stored type into scratch and convert here instead. */
static int read_f32(hid_t g, const char *name, float *out, int64_t count, double **scratch, int64_t *scap,
                    const char *path, const char *demo) {
  hid_t d = ds_h5_open_read(g, name);
  if (d < 0) return ds_h5_fail(TK_EFORMAT, "%s: %s/%s: open", path, demo, name);
  hid_t t = H5Dget_type(d);
  int is_f32 = H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 4;
  int is_f64 = H5Tget_class(t) == H5T_FLOAT && H5Tget_size(t) == 8;
  H5Tclose(t);
  herr_t e;
  if (is_f32) {
    e = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out);
  } else if (is_f64) {
    if (count > *scap) {
      double *n = realloc(*scratch, (size_t)count * sizeof(double));
      if (!n) {
        H5Dclose(d);
        return tk_error(TK_ENOMEM, "out of memory");
      }
      *scratch = n;
      *scap = count;
    }
    e = H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, *scratch);
    if (e >= 0)
      for (int64_t i = 0; i < count; i++)
        out[i] = (float)(*scratch)[i];
  } else {
    e = H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out); /* integers: let HDF5 convert */
  }
  H5Dclose(d);
  if (e < 0) return ds_h5_fail(TK_EIO, "%s: %s/%s: read", path, demo, name);
  return 0;
}

/* Read count values of a demo's dataset into float32: straight from the file's bytes when
 * validation found them contiguous and unfiltered, else through HDF5. */
static int load_f32(dsFile *f, int pos, int slot, hid_t *g, const char *name, float *out, int64_t count,
                    double **scratch, int64_t *scap) {
  const dsLoc *l = &f->locs[(size_t)pos * NSLOTS + slot];
  const dsDemoInfo *dm = &f->demos[pos];
  if (f->rawfd >= 0 && l->off >= 0 && (l->kind == RAW_F32 || l->kind == RAW_F64)) {
    size_t bytes = (size_t)count * (l->kind == RAW_F64 ? 8 : 4);
    void *dst = out;
    if (l->kind == RAW_F64) {
      if (count > *scap) {
        double *n = realloc(*scratch, (size_t)count * sizeof(double));
        if (!n) return tk_error(TK_ENOMEM, "out of memory");
        *scratch = n;
        *scap = count;
      }
      dst = *scratch;
    }
    size_t done = 0;
    while (done < bytes) {
      ssize_t r = pread(f->rawfd, (char *)dst + done, bytes - done, (off_t)(l->off + (int64_t)done));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0)
        return tk_error(TK_EIO, "%s: %s/%s: read: %s", f->path, dm->name, name,
                        r < 0 ? strerror(errno) : "file shrank");
      done += (size_t)r;
    }
    if (l->kind == RAW_F64)
      for (int64_t i = 0; i < count; i++)
        out[i] = (float)(*scratch)[i];
    return 0;
  }
  if (*g < 0 && (*g = H5Gopen2(f->data, dm->name, H5P_DEFAULT)) < 0)
    return ds_h5_fail(TK_EFORMAT, "%s: %s: open", f->path, dm->name);
  return read_f32(*g, name, out, count, scratch, scap, f->path, dm->name);
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(const char *const *)a, *(const char *const *)b);
}

void ds_loaded_free(dsLoaded *l) {
  if (!l) return;
  free(l->block_);
  memset(l, 0, sizeof *l);
}

int ds_load(dsFile *f, const dsLoadOpts *o, dsLoaded *out) {
  memset(out, 0, sizeof *out);
  const dsSchema *s = &f->schema;
  dsLoadOpts dflt = {0};
  if (!o) o = &dflt;
  /* choose keys */
  const char *keys[DS_MAX_KEYS];
  int nk = 0;
  if (o->obs_keys && o->nobs_keys > 0) {
    for (int i = 0; i < o->nobs_keys; i++) {
      int j = ds_schema_find(s, o->obs_keys[i]);
      if (j < 0) {
        char have[1024] = "";
        size_t off = 0;
        for (int k = 0; k < s->nkeys && off < sizeof have; k++)
          off += (size_t)snprintf(have + off, sizeof have - off, "%s%s", k ? ", " : "", s->keys[k].name);
        return tk_error(TK_ENOTFOUND, "%s: observation key '%s' not in the file (it has: %s)", f->path,
                        o->obs_keys[i], s->nkeys ? have : "none");
      }
      if (ds_key_is_image(&s->keys[j]))
        return tk_error(TK_EINVAL, "%s: observation key '%s' is an image; low-dim keys only here", f->path,
                        o->obs_keys[i]);
      if (nk >= DS_MAX_KEYS) return tk_error(TK_ERANGE, "too many keys");
      keys[nk++] = s->keys[j].name;
    }
  } else {
    for (int k = 0; k < s->nkeys; k++)
      if (!ds_key_is_image(&s->keys[k])) keys[nk++] = s->keys[k].name;
    qsort(keys, (size_t)nk, sizeof keys[0], cmp_str);
  }
  /* choose demos */
  int *pos = NULL, nd = 0;
  if (o->filter_key && o->filter_key[0]) {
    int rc = ds_mask(f, o->filter_key, &pos, &nd);
    if (rc) return rc;
  } else {
    nd = f->ndemos;
    pos = malloc(sizeof(int) * (size_t)TK_MAX(nd, 1));
    if (!pos) return tk_error(TK_ENOMEM, "out of memory");
    for (int i = 0; i < nd; i++)
      pos[i] = i;
  }
  int64_t N = 0, maxN = 0;
  for (int i = 0; i < nd; i++) {
    N += f->demos[pos[i]].num_samples;
    maxN = TK_MAX(maxN, f->demos[pos[i]].num_samples);
  }
  int obs_dim = 0, kidx[DS_MAX_KEYS], kdim[DS_MAX_KEYS];
  for (int i = 0; i < nk; i++) {
    kidx[i] = ds_schema_find(s, keys[i]);
    kdim[i] = (int)ds_key_elems(&s->keys[kidx[i]]);
    obs_dim += kdim[i];
  }
  int A = s->action_dim;
  int want_next = o->load_next_obs;
  if (want_next)
    for (int i = 0; i < nd; i++)
      if (!f->demos[pos[i]].has_next_obs) {
        free(pos);
        return tk_error(TK_ENOTFOUND, "%s: %s has no next_obs", f->path, f->demos[pos[i]].name);
      }
  /* one allocation (llm.c style): sizes first, then point into the block */
  size_t sz[9] = {(size_t)N * (size_t)obs_dim * 4,
                  want_next ? (size_t)N * (size_t)obs_dim * 4 : 0,
                  (size_t)N * (size_t)A * 4,
                  (size_t)N * 4,
                  (size_t)N,
                  (size_t)(nd + 1) * 8,
                  (size_t)TK_MAX(nd, 1) * 4,
                  (size_t)TK_MAX(nk, 1) * DS_NAME_MAX,
                  (size_t)(nk + 1) * 4};
  size_t total = 0;
  for (int i = 0; i < 9; i++)
    total += (sz[i] + 63) & ~(size_t)63;
  uint8_t *mem = aligned_alloc(64, total + 64);
  size_t tmp_elems = (size_t)TK_MAX(maxN, 1) * (size_t)TK_MAX(obs_dim, A);
  float *tmp = malloc(tmp_elems * sizeof(float));
  if (!mem || !tmp) {
    free(mem);
    free(tmp);
    free(pos);
    return tk_error(TK_ENOMEM, "%s: out of memory loading %lld samples", f->path, (long long)N);
  }
  void *ptr[9];
  uint8_t *p = mem;
  for (int i = 0; i < 9; i++) {
    ptr[i] = p;
    p += (sz[i] + 63) & ~(size_t)63;
  }
  out->block_ = mem;
  out->obs = ptr[0];
  out->next_obs = want_next ? ptr[1] : NULL;
  out->actions = ptr[2];
  out->rewards = ptr[3];
  out->dones = ptr[4];
  out->demo_start = ptr[5];
  out->demo_pos = ptr[6];
  out->key_names = ptr[7];
  out->key_offset = ptr[8];
  out->n = N;
  out->obs_dim = obs_dim;
  out->act_dim = A;
  out->ndemos = nd;
  out->nkeys = nk;
  out->key_offset[0] = 0;
  int rc = 0;
  for (int i = 0; i < nk && !rc; i++) {
    rc = tk_copy_name(out->key_names[i], DS_NAME_MAX, keys[i], "observation key"); /* schema names fit */
    out->key_offset[i + 1] = out->key_offset[i] + kdim[i];
  }
  int64_t row = 0, scap = 0;
  double *scratch = NULL;
  for (int di = 0; di < nd && !rc; di++) {
    const dsDemoInfo *dm = &f->demos[pos[di]];
    int64_t n = dm->num_samples;
    out->demo_start[di] = row;
    out->demo_pos[di] = pos[di];
    if (n == 0) continue;
    hid_t g = -1; /* opened only if something must go through HDF5 */
    int p = pos[di];
    rc = load_f32(f, p, DS_FIELD_actions, &g, "actions", out->actions + row * A, n * A, &scratch, &scap);
    if (!rc && dm->has_rewards)
      rc = load_f32(f, p, DS_FIELD_rewards, &g, "rewards", out->rewards + row, n, &scratch, &scap);
    else if (!rc)
      memset(out->rewards + row, 0, (size_t)n * 4);
    if (!rc && dm->has_dones) {
      const dsLoc *l = &f->locs[(size_t)p * NSLOTS + DS_FIELD_dones];
      if (f->rawfd >= 0 && l->off >= 0 && l->kind == RAW_U8 &&
          pread(f->rawfd, out->dones + row, (size_t)n, l->off) == n) {
      } else {
        if (g < 0 && (g = H5Gopen2(f->data, dm->name, H5P_DEFAULT)) < 0)
          rc = ds_h5_fail(TK_EFORMAT, "%s: %s: open", f->path, dm->name);
        else
          rc = read_all(g, "dones", H5T_NATIVE_UINT8, out->dones + row, f->path, dm->name);
      }
    } else if (!rc)
      memset(out->dones + row, 0, (size_t)n);
    for (int pass = 0; pass < (want_next ? 2 : 1) && !rc; pass++) {
      float *dst = pass ? out->next_obs : out->obs;
      for (int k = 0; k < nk && !rc; k++) {
        char nm[DS_NAME_MAX + 16];
        snprintf(nm, sizeof nm, "%s/%s", pass ? "next_obs" : "obs", keys[k]);
        int d = kdim[k], off = out->key_offset[k];
        int slot = DS_NFIELDS + (pass ? DS_MAX_KEYS : 0) + kidx[k];
        if (nk == 1) {
          rc = load_f32(f, p, slot, &g, nm, dst + row * obs_dim, n * d, &scratch, &scap);
          continue;
        }
        rc = load_f32(f, p, slot, &g, nm, tmp, n * d, &scratch, &scap);
        if (rc) break;
        float *o0 = dst + row * obs_dim + off;
        for (int64_t t = 0; t < n; t++)
          memcpy(o0 + t * obs_dim, tmp + t * d, (size_t)d * 4);
      }
    }
    if (g >= 0) H5Gclose(g);
    /* the values are used for training: refuse NaN/Inf here even when open skipped the scan */
    for (int64_t i = 0; !rc && i < n * A; i++)
      if (!isfinite(out->actions[row * A + i]))
        rc = tk_error(TK_ERANGE, "%s: %s/actions: NaN or Inf at step %lld", f->path, dm->name,
                      (long long)(i / A));
    for (int64_t i = 0; !rc && i < n * obs_dim; i++)
      if (!isfinite(out->obs[row * obs_dim + i]))
        rc = tk_error(TK_ERANGE, "%s: %s/obs: NaN or Inf at step %lld", f->path, dm->name,
                      (long long)(i / obs_dim));
    row += n;
  }
  if (!rc) out->demo_start[nd] = row;
  free(scratch);
  free(tmp);
  free(pos);
  if (rc) ds_loaded_free(out);
  return rc;
}
