/* dataset/ds_writer.c -- the crash-safe episode writer.
 *
 * Three stages, so no stage waits on the one after it:
 *  1. the control thread copies steps into blocks (no disk, no HDF5);
 *  2. the writer thread turns an episode into <path>.staging/demo_<i>.h5.tmp: camera frames
 *     are streamed as they arrive (chunked per frame), low-dim data is gathered in memory
 *     and written once at the end as contiguous datasets (one write each; fast to read);
 *  3. the committer thread makes it durable (fsync, rename to demo_<i>.h5, fsync the
 *     directory), reports it, and publishes committed episodes into <path> (ds_publish.c).
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds_internal.h"

typedef struct dsBlock {
  struct dsBlock *next;
  int64_t demo_index;
  int begin, end; /* first / last block of an episode */
  dsOutcome outcome;
  int64_t missed;      /* missed deadlines (end block) */
  char *end_reason;    /* why the episode ended (end block; owned; NULL or "" not stored) */
  int final_obs_valid; /* obs row `cap` holds the final observation */
  int64_t t0;          /* episode step of row 0 */
  int64_t n, cap;      /* rows used, rows available */
  char task[DS_NAME_MAX], operator_name[DS_NAME_MAX], device[DS_NAME_MAX];
  int64_t seed;
  double control_hz;
  char *model_file, *ep_meta; /* owned, begin block only */
  uint8_t *field[DS_NFIELDS]; /* cap rows each */
  uint8_t *obs[DS_MAX_KEYS];  /* cap + 1 rows each */
} dsBlock;

typedef struct {
  uint8_t *p;
  size_t len, cap; /* bytes */
} dsBuf;

typedef struct {
  int open;
  int64_t index;
  hid_t file, data, demo, obsg, nobsg;
  hid_t o[DS_MAX_KEYS], no[DS_MAX_KEYS]; /* streamed keys only */
  int64_t rows, nrows;                   /* steps so far, rows in streamed next_obs */
  dsBuf fb[DS_NFIELDS];                  /* gathered per-step fields */
  dsBuf kb[DS_MAX_KEYS];                 /* gathered low-dim keys (one spare row for the final obs) */
  char tmp[4096], fin[4096];
} dsEpFile;

typedef struct dsCommit {
  struct dsCommit *next;
  int64_t demo_index, rows;
  dsOutcome outcome;
  char tmp[4096], fin[4096];
} dsCommit;

struct dsWriter {
  char path[4096], dir[4096];
  dsWriterOpts o;
  char env_name[DS_NAME_MAX];
  char *env_kwargs;
  double file_hz; /* the nominal control rate of the demos already in the file (0: none recorded) */
  int lock_fd;
  size_t field_row[DS_NFIELDS]; /* bytes per row */
  size_t obs_row[DS_MAX_KEYS];
  int64_t block_cap;
  /* control thread */
  dsBlock *cur;
  int in_episode;
  int64_t ep_steps;
  int64_t next_index;
  /* shared, under mu */
  pthread_mutex_t mu, pub_mu;
  pthread_cond_t cv_work, cv_done;
  dsBlock *qhead, *qtail, *pool;
  int64_t enqueued, processed, committed;
  int stop;
  int err;
  char errmsg[TK_ERRMSG_MAX];
  pthread_t th;
  int th_started;
  /* committer thread, under mu */
  pthread_cond_t cv_commit;
  dsCommit *chead, *ctail;
  int64_t cqueued, cdone;
  pthread_t cth;
  int cth_started;
  /* writer thread */
  dsEpFile ep;
  uint8_t *last_obs[DS_MAX_KEYS];
  void *last_obs_mem;
  int streamed[DS_MAX_KEYS]; /* 1: key streamed to disk as it arrives (camera frames) */
  /* committer thread */
  int64_t staged_bytes;
  double last_publish;
};

static const int ENV_TYPE_DEMOKIT = 4;

void ds_writer_default(dsWriterOpts *o) {
  memset(o, 0, sizeof *o);
  o->env_type = ENV_TYPE_DEMOKIT;
  o->env_kwargs_json = "{}";
  o->store_next_obs = 1;
  o->image_gzip = 4;
  o->lowdim_gzip = 0;
  o->block_steps = 64;
  o->publish_ratio = 1.0;
  o->publish_interval_s = 30.0;
}

const char *ds_writer_path(const dsWriter *w) { return w->path; }
int64_t ds_writer_next_index(const dsWriter *w) { return w->next_index; }

/* ---- blocks ---- */
static dsBlock *block_new(dsWriter *w) {
  size_t total = 0;
  for (int f = 0; f < DS_NFIELDS; f++)
    total += (w->field_row[f] * (size_t)w->block_cap + 63) & ~(size_t)63;
  for (int k = 0; k < w->o.schema.nkeys; k++)
    total += (w->obs_row[k] * (size_t)(w->block_cap + 1) + 63) & ~(size_t)63;
  size_t head = (sizeof(dsBlock) + 63) & ~(size_t)63;
  uint8_t *mem = aligned_alloc(64, head + total + 64);
  if (!mem) return NULL;
  dsBlock *b = (dsBlock *)mem;
  memset(b, 0, sizeof *b);
  uint8_t *p = mem + head;
  for (int f = 0; f < DS_NFIELDS; f++) {
    b->field[f] = p;
    p += (w->field_row[f] * (size_t)w->block_cap + 63) & ~(size_t)63;
  }
  for (int k = 0; k < w->o.schema.nkeys; k++) {
    b->obs[k] = p;
    p += (w->obs_row[k] * (size_t)(w->block_cap + 1) + 63) & ~(size_t)63;
  }
  b->cap = w->block_cap;
  return b;
}

static void block_reset(dsBlock *b) {
  free(b->model_file);
  free(b->ep_meta);
  b->model_file = b->ep_meta = NULL;
  b->next = NULL;
  b->begin = b->end = 0;
  b->final_obs_valid = 0;
  b->n = 0;
  b->missed = 0;
  free(b->end_reason);
  b->end_reason = NULL;
}

static dsBlock *block_get(dsWriter *w) {
  pthread_mutex_lock(&w->mu);
  dsBlock *b = w->pool;
  if (b) w->pool = b->next;
  pthread_mutex_unlock(&w->mu);
  if (!b) b = block_new(w); /* only when the writer thread lags behind */
  if (b) block_reset(b);
  return b;
}

static void block_put_locked(dsWriter *w, dsBlock *b) {
  block_reset(b);
  b->next = w->pool;
  w->pool = b;
}

static void enqueue(dsWriter *w, dsBlock *b) {
  b->next = NULL;
  pthread_mutex_lock(&w->mu);
  if (w->qtail)
    w->qtail->next = b;
  else
    w->qhead = b;
  w->qtail = b;
  w->enqueued++;
  pthread_cond_signal(&w->cv_work);
  pthread_mutex_unlock(&w->mu);
}

static int sticky_error(dsWriter *w) {
  pthread_mutex_lock(&w->mu);
  int e = w->err;
  char msg[TK_ERRMSG_MAX];
  if (e) memcpy(msg, w->errmsg, sizeof msg);
  pthread_mutex_unlock(&w->mu);
  if (e) return tk_error(e, "%s", msg);
  return 0;
}

/* ---- writer thread: one episode file ---- */
static int buf_append(dsBuf *b, const void *src, size_t n) {
  if (b->len + n > b->cap) {
    size_t nc = b->cap ? b->cap : 4096;
    while (nc < b->len + n)
      nc *= 2;
    uint8_t *np = realloc(b->p, nc);
    if (!np) return tk_error(TK_ENOMEM, "out of memory gathering an episode (%zu bytes)", nc);
    b->p = np;
    b->cap = nc;
  }
  memcpy(b->p + b->len, src, n);
  b->len += n;
  return 0;
}

/* Close everything; returns -1 if any close failed (HDF5 flushes caches on close, so a
 * write error such as a full disk often shows up only here). */
static int ep_close_handles(dsEpFile *ep) {
  int bad = 0;
  for (int k = 0; k < DS_MAX_KEYS; k++) {
    if (ep->o[k] > 0) bad |= H5Dclose(ep->o[k]) < 0;
    if (ep->no[k] > 0) bad |= H5Dclose(ep->no[k]) < 0;
  }
  if (ep->obsg > 0) bad |= H5Gclose(ep->obsg) < 0;
  if (ep->nobsg > 0) bad |= H5Gclose(ep->nobsg) < 0;
  if (ep->demo > 0) bad |= H5Gclose(ep->demo) < 0;
  if (ep->data > 0) bad |= H5Gclose(ep->data) < 0;
  if (ep->file > 0) bad |= H5Fclose(ep->file) < 0;
  memset(ep->o, 0, sizeof ep->o);
  memset(ep->no, 0, sizeof ep->no);
  ep->file = ep->data = ep->demo = ep->obsg = ep->nobsg = 0;
  return bad ? -1 : 0;
}

static void ep_abort(dsWriter *w) {
  dsEpFile *ep = &w->ep;
  if (!ep->open) return;
  ep_close_handles(ep);
  unlink(ep->tmp);
  ep->open = 0;
}

static int ep_begin(dsWriter *w, const dsBlock *b) {
  dsEpFile *ep = &w->ep;
  const dsSchema *s = &w->o.schema;
  /* keep the gathering buffers from the last episode: no reallocation in steady state */
  dsBuf fb[DS_NFIELDS], kb[DS_MAX_KEYS];
  memcpy(fb, ep->fb, sizeof fb);
  memcpy(kb, ep->kb, sizeof kb);
  memset(ep, 0, sizeof *ep);
  memcpy(ep->fb, fb, sizeof fb);
  memcpy(ep->kb, kb, sizeof kb);
  for (int f = 0; f < DS_NFIELDS; f++)
    ep->fb[f].len = 0;
  for (int k = 0; k < DS_MAX_KEYS; k++)
    ep->kb[k].len = 0;
  ep->index = b->demo_index;
  snprintf(ep->fin, sizeof ep->fin, "%s/demo_%lld.h5", w->dir, (long long)b->demo_index);
  snprintf(ep->tmp, sizeof ep->tmp, "%s.tmp", ep->fin);
  ep->file = H5Fcreate(ep->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (ep->file < 0) return ds_h5_fail(TK_EIO, "create %s", ep->tmp);
  ep->open = 1;
  char name[48];
  snprintf(name, sizeof name, "demo_%lld", (long long)b->demo_index);
  ep->data = H5Gcreate2(ep->file, "data", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (ep->data < 0) return ds_h5_fail(TK_EIO, "%s: create group data", ep->tmp);
  int rc = ds_write_data_attrs(ep->data, w->env_name, w->o.env_type, w->env_kwargs);
  if (rc) return tk_error_wrap(rc, "%s", ep->tmp);
  ep->demo = H5Gcreate2(ep->data, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (ep->demo < 0) return ds_h5_fail(TK_EIO, "%s: create group %s", ep->tmp, name);
  ep->obsg = H5Gcreate2(ep->demo, "obs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (ep->obsg < 0) return ds_h5_fail(TK_EIO, "%s: create group obs", ep->tmp);
  if (w->o.store_next_obs) {
    ep->nobsg = H5Gcreate2(ep->demo, "next_obs", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (ep->nobsg < 0) return ds_h5_fail(TK_EIO, "%s: create group next_obs", ep->tmp);
  }
  for (int k = 0; k < s->nkeys; k++) {
    if (!w->streamed[k]) continue;
    const dsKeySpec *key = &s->keys[k];
    int gz = ds_key_is_image(key) ? w->o.image_gzip : w->o.lowdim_gzip;
    ep->o[k] = ds_create_ext(ep->obsg, key->name, key->dtype, key->rank, key->shape, gz, 1);
    if (ep->o[k] < 0) return tk_error_wrap(TK_EIO, "%s: obs", ep->tmp);
    if (w->o.store_next_obs) {
      ep->no[k] = ds_create_ext(ep->nobsg, key->name, key->dtype, key->rank, key->shape, gz, 1);
      if (ep->no[k] < 0) return tk_error_wrap(TK_EIO, "%s: next_obs", ep->tmp);
    }
  }
  /* episode attributes known at the start */
  rc = ds_attr_write_str(ep->demo, "task", b->task);
  if (!rc) rc = ds_attr_write_i64(ep->demo, "seed", b->seed);
  if (!rc) rc = ds_attr_write_str(ep->demo, "operator", b->operator_name);
  if (!rc) rc = ds_attr_write_str(ep->demo, "device", b->device);
  if (!rc) rc = ds_attr_write_f64(ep->demo, "control_hz", b->control_hz);
  if (!rc && b->model_file) rc = ds_attr_write_str(ep->demo, "model_file", b->model_file);
  if (!rc && b->ep_meta) rc = ds_attr_write_str(ep->demo, "ep_meta", b->ep_meta);
  if (rc) return tk_error_wrap(rc, "%s", ep->tmp);
  return 0;
}

static int ep_write(dsWriter *w, dsBlock *b) {
  dsEpFile *ep = &w->ep;
  const dsSchema *s = &w->o.schema;
  if (b->n == 0) return 0;
  int rc = 0;
  for (int f = 0; f < DS_NFIELDS && !rc; f++)
    if (w->field_row[f]) rc = buf_append(&ep->fb[f], b->field[f], (size_t)b->n * w->field_row[f]);
  for (int k = 0; k < s->nkeys && !rc; k++) {
    const dsKeySpec *key = &s->keys[k];
    if (!w->streamed[k]) {
      rc = buf_append(&ep->kb[k], b->obs[k], (size_t)b->n * w->obs_row[k]);
      continue;
    }
    rc = ds_append_rows(ep->o[k], key->dtype, key->rank, key->shape, ep->rows, b->n, b->obs[k]);
    if (rc) return tk_error_wrap(rc, "%s: obs/%s", ep->tmp, key->name);
    if (w->o.store_next_obs) {
      /* next_obs lags one row: the first row of the episode is nobody's next_obs */
      int64_t skip = ep->rows == 0 ? 1 : 0;
      rc = ds_append_rows(ep->no[k], key->dtype, key->rank, key->shape, ep->nrows, b->n - skip,
                          b->obs[k] + (size_t)skip * w->obs_row[k]);
      if (rc) return tk_error_wrap(rc, "%s: next_obs/%s", ep->tmp, key->name);
    }
    memcpy(w->last_obs[k], b->obs[k] + (size_t)(b->n - 1) * w->obs_row[k], w->obs_row[k]);
  }
  if (rc) return tk_error_wrap(rc, "%s", ep->tmp);
  if (w->o.store_next_obs) ep->nrows += b->n - (ep->rows == 0 ? 1 : 0);
  ep->rows += b->n;
  return 0;
}

static int ep_end(dsWriter *w, dsBlock *b) {
  dsEpFile *ep = &w->ep;
  const dsSchema *s = &w->o.schema;
  int rc = 0;
  int64_t N = ep->rows;
  /* gathered per-step fields: one contiguous dataset each */
  for (int f = 0; f < DS_NFIELDS && !rc; f++) {
    int64_t cols = ds_field_cols(f, s);
    if (cols == 0) continue; /* no states */
    rc = ds_write_whole(ep->demo, ds_fields[f].name, ds_fields[f].dtype, ds_fields[f].rank - 1, &cols, N,
                        ep->fb[f].p, w->o.lowdim_gzip);
    if (rc) return tk_error_wrap(rc, "%s", ep->tmp);
  }
  for (int k = 0; k < s->nkeys; k++) {
    const dsKeySpec *key = &s->keys[k];
    const void *final = b->final_obs_valid ? b->obs[k] + (size_t)b->cap * w->obs_row[k] : NULL;
    if (w->streamed[k]) {
      if (!w->o.store_next_obs) continue;
      rc = ds_append_rows(ep->no[k], key->dtype, key->rank, key->shape, ep->nrows, 1,
                          final ? final : w->last_obs[k]);
      if (rc) return tk_error_wrap(rc, "%s: next_obs/%s", ep->tmp, key->name);
      continue;
    }
    dsBuf *kb = &ep->kb[k];
    rc = ds_write_whole(ep->obsg, key->name, key->dtype, key->rank, key->shape, N, kb->p, w->o.lowdim_gzip);
    if (rc) return tk_error_wrap(rc, "%s: obs", ep->tmp);
    if (w->o.store_next_obs) {
      /* next_obs = obs shifted by one, then the final observation (or the last one again) */
      rc = buf_append(kb, final ? final : kb->p + (size_t)(N - 1) * w->obs_row[k], w->obs_row[k]);
      if (!rc)
        rc = ds_write_whole(ep->nobsg, key->name, key->dtype, key->rank, key->shape, N, kb->p + w->obs_row[k],
                            w->o.lowdim_gzip);
      if (rc) return tk_error_wrap(rc, "%s: next_obs", ep->tmp);
    }
  }
  if (w->o.store_next_obs) ep->nrows++;
  rc = ds_attr_write_i64(ep->demo, "num_samples", N);
  if (!rc) rc = ds_attr_write_i64(ep->demo, "success", b->outcome == DS_SUCCESS);
  if (!rc) rc = ds_attr_write_i64(ep->demo, "missed_deadlines", b->missed);
  if (!rc && b->end_reason && b->end_reason[0]) rc = ds_attr_write_str(ep->demo, "end_reason", b->end_reason);
  if (!rc) rc = ds_attr_write_i64(ep->data, "total", N);
  if (rc) return tk_error_wrap(rc, "%s", ep->tmp);
  if (ep_close_handles(ep)) return ds_h5_fail(TK_EIO, "%s: close (data not fully written)", ep->tmp);
  return 0;
}

static void set_error(dsWriter *w, int rc) {
  pthread_mutex_lock(&w->mu);
  if (!w->err) {
    w->err = rc;
    snprintf(w->errmsg, sizeof w->errmsg, "%s", tk_errmsg());
  }
  pthread_mutex_unlock(&w->mu);
}

static int process_block(dsWriter *w, dsBlock *b) {
  int rc = 0;
  if (b->begin && (rc = ep_begin(w, b))) return rc;
  if (!w->ep.open) return 0;
  if (b->end && b->outcome == DS_DISCARD) {
    ep_abort(w);
    return 0;
  }
  /* a successful end is a terminal state; a failure or a stop at the horizon is a truncation */
  if (b->end && b->n > 0 && b->outcome == DS_SUCCESS) b->field[DS_FIELD_dones][b->n - 1] = 1;
  if ((rc = ep_write(w, b))) return rc;
  if (!b->end) return 0;
  if ((rc = ep_end(w, b))) return rc;
  /* hand the closed file to the committer; the next episode starts at once */
  dsCommit *c = malloc(sizeof *c);
  if (!c) return tk_error(TK_ENOMEM, "out of memory");
  memset(c, 0, sizeof *c);
  c->demo_index = b->demo_index;
  c->rows = w->ep.rows;
  c->outcome = b->outcome;
  snprintf(c->tmp, sizeof c->tmp, "%s", w->ep.tmp);
  snprintf(c->fin, sizeof c->fin, "%s", w->ep.fin);
  w->ep.open = 0;
  pthread_mutex_lock(&w->mu);
  if (w->ctail)
    w->ctail->next = c;
  else
    w->chead = c;
  w->ctail = c;
  w->cqueued++;
  pthread_cond_signal(&w->cv_commit);
  pthread_mutex_unlock(&w->mu);
  return 0;
}

static void *writer_main(void *arg) {
  dsWriter *w = arg;
  ds_h5_init();
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->qhead && !w->stop)
      pthread_cond_wait(&w->cv_work, &w->mu);
    if (!w->qhead) break;
    dsBlock *b = w->qhead;
    w->qhead = b->next;
    if (!w->qhead) w->qtail = NULL;
    int failed = w->err;
    pthread_mutex_unlock(&w->mu);
    int rc = 0;
    if (!failed) rc = process_block(w, b);
    if (rc || failed) ep_abort(w);
    if (rc) set_error(w, rc);
    pthread_mutex_lock(&w->mu);
    block_put_locked(w, b);
    w->processed++;
    pthread_cond_broadcast(&w->cv_done);
  }
  w->stop = 2; /* tells the committer that nothing more will come */
  pthread_cond_broadcast(&w->cv_commit);
  pthread_mutex_unlock(&w->mu);
  for (int f = 0; f < DS_NFIELDS; f++)
    free(w->ep.fb[f].p);
  for (int k = 0; k < DS_MAX_KEYS; k++)
    free(w->ep.kb[k].p);
  return NULL;
}

/* ---- committer thread ---- */
static int maybe_publish(dsWriter *w) {
  if (w->o.publish_ratio < 0) return 0;
  struct stat st;
  int64_t main_bytes = stat(w->path, &st) == 0 ? (int64_t)st.st_size : 0;
  int due = main_bytes == 0 || (double)w->staged_bytes >= w->o.publish_ratio * (double)main_bytes ||
            (w->o.publish_interval_s > 0 && tk_now_s() - w->last_publish >= w->o.publish_interval_s);
  if (!due) return 0;
  pthread_mutex_lock(&w->pub_mu);
  int rc = ds_publish_staged(w->path, w->dir, 0, NULL, NULL);
  pthread_mutex_unlock(&w->pub_mu);
  if (!rc) {
    w->staged_bytes = 0;
    w->last_publish = tk_now_s();
  }
  return rc;
}

/* Make a batch of closed episode files durable: the data is on disk before the names say
 * so. One episode: fsync it. Several (the writer got ahead): one syncfs for all of them. */
static int commit_batch(dsWriter *w, dsCommit **v, int n) {
  int rc = 0;
  if (n == 1) {
    if ((rc = tk_fsync_file(v[0]->tmp))) return rc;
  } else {
    int fd = open(w->dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0) return tk_error(TK_EIO, "open %s: %s", w->dir, strerror(errno));
    int e = syncfs(fd) ? errno : 0;
    close(fd);
    if (e) return tk_error(TK_EIO, "syncfs %s: %s", w->dir, strerror(e));
  }
  for (int i = 0; i < n; i++)
    if (rename(v[i]->tmp, v[i]->fin)) return tk_error(TK_EIO, "rename %s: %s", v[i]->tmp, strerror(errno));
  if ((rc = tk_fsync_dir_of(v[0]->fin))) return rc;
  for (int i = 0; i < n; i++) {
    struct stat st;
    if (stat(v[i]->fin, &st) == 0) w->staged_bytes += (int64_t)st.st_size;
    pthread_mutex_lock(&w->mu);
    w->committed++;
    pthread_mutex_unlock(&w->mu);
    if (w->o.on_commit) w->o.on_commit(v[i]->demo_index, v[i]->outcome, v[i]->rows, w->o.user);
  }
  return maybe_publish(w);
}

static void *committer_main(void *arg) {
  dsWriter *w = arg;
  ds_h5_init();
  dsCommit *batch[64];
  pthread_mutex_lock(&w->mu);
  for (;;) {
    while (!w->chead && w->stop != 2)
      pthread_cond_wait(&w->cv_commit, &w->mu);
    if (!w->chead) break;
    int n = 0;
    while (w->chead && n < 64) {
      batch[n++] = w->chead;
      w->chead = w->chead->next;
    }
    if (!w->chead) w->ctail = NULL;
    pthread_mutex_unlock(&w->mu);
    /* a closed, complete episode is committed even after a later error elsewhere */
    int rc = commit_batch(w, batch, n);
    if (rc) set_error(w, rc);
    for (int i = 0; i < n; i++) {
      if (rc) unlink(batch[i]->tmp);
      free(batch[i]);
    }
    pthread_mutex_lock(&w->mu);
    w->cdone += n;
    pthread_cond_broadcast(&w->cv_done);
  }
  pthread_mutex_unlock(&w->mu);
  return NULL;
}

/* ---- control-thread API ---- */
static int valid_env_name(const char *s) {
  if (!s || !s[0] || strlen(s) >= DS_NAME_MAX) return 0;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
          *s == '-' || *s == '.'))
      return 0;
  return 1;
}

static void writer_free(dsWriter *w) {
  if (!w) return;
  if (w->cth_started) { /* only on a failed open: the writer thread never ran */
    pthread_mutex_lock(&w->mu);
    w->stop = 2;
    pthread_cond_broadcast(&w->cv_commit);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->cth, NULL);
  }
  while (w->pool) {
    dsBlock *b = w->pool;
    w->pool = b->next;
    block_reset(b);
    free(b);
  }
  if (w->cur) {
    block_reset(w->cur);
    free(w->cur);
  }
  free(w->last_obs_mem);
  free(w->env_kwargs);
  if (w->lock_fd >= 0) close(w->lock_fd);
  pthread_mutex_destroy(&w->mu);
  pthread_mutex_destroy(&w->pub_mu);
  pthread_cond_destroy(&w->cv_work);
  pthread_cond_destroy(&w->cv_done);
  pthread_cond_destroy(&w->cv_commit);
  free(w);
}

/* The one nominal control rate of the file's demos (0 when none is recorded); mixed rates are refused. */
static int file_rate(dsFile *f, double *hz) {
  *hz = 0;
  for (int i = 0; i < ds_num_demos(f); i++) {
    double r = ds_demo(f, i)->control_hz;
    if (r > 0 && *hz > 0 && r != *hz)
      return tk_error(TK_EFORMAT, "%s: its demos were recorded at %g and %g Hz; append to a file of one rate",
                      ds_path(f), *hz, r);
    if (r > 0) *hz = r;
  }
  return 0;
}

int ds_writer_open(const char *path, const dsWriterOpts *o, dsWriter **out) {
  *out = NULL;
  ds_h5_init();
  const dsSchema *s = &o->schema;
  if (!valid_env_name(o->env_name))
    return tk_error(TK_EINVAL, "%s: task name '%s' must be 1-63 characters of [A-Za-z0-9_.-]", path,
                    o->env_name ? o->env_name : "");
  if (s->action_dim < 1 || s->action_dim > 4096)
    return tk_error(TK_EINVAL, "%s: action size %d out of range", path, s->action_dim);
  if (s->state_dim < 0 || s->state_dim > (1 << 20))
    return tk_error(TK_EINVAL, "%s: state size %d out of range", path, s->state_dim);
  if (s->nkeys < 0 || s->nkeys > DS_MAX_KEYS)
    return tk_error(TK_EINVAL, "%s: %d observation keys", path, s->nkeys);
  if (o->image_gzip < 0 || o->image_gzip > 9 || o->lowdim_gzip < 0 || o->lowdim_gzip > 9)
    return tk_error(TK_EINVAL, "%s: gzip level must be 0..9", path);

  dsWriter *w = calloc(1, sizeof *w);
  if (!w) return tk_error(TK_ENOMEM, "out of memory");
  w->lock_fd = -1;
  pthread_mutex_init(&w->mu, NULL);
  pthread_mutex_init(&w->pub_mu, NULL);
  pthread_cond_init(&w->cv_work, NULL);
  pthread_cond_init(&w->cv_done, NULL);
  pthread_cond_init(&w->cv_commit, NULL);
  w->o = *o;
  if (w->o.block_steps < 1) w->o.block_steps = 64;
  tk_copy_name(w->env_name, sizeof w->env_name, o->env_name, "task name"); /* valid_env_name: it fits */
  int rc = 0;
  w->o.env_name = w->env_name;
  w->env_kwargs = strdup(o->env_kwargs_json && o->env_kwargs_json[0] ? o->env_kwargs_json : "{}");
  if (!w->env_kwargs) {
    rc = tk_error(TK_ENOMEM, "out of memory");
    goto fail;
  }
  w->o.env_kwargs_json = w->env_kwargs;
  /* publishing renames over the path: through a symlink, the target is the dataset (the link stays) */
  if ((rc = tk_resolve_link(path, w->path, sizeof w->path))) goto fail;
  path = w->path;
  if ((rc = ds_staging_dir(path, w->dir, sizeof w->dir))) goto fail;
  if (mkdir(w->dir, 0755) && errno != EEXIST) {
    rc = tk_error(TK_EIO, "%s: create %s: %s", path, w->dir, strerror(errno));
    goto fail;
  }
  if ((w->lock_fd = ds_staging_lock(w->dir, path)) < 0) {
    rc = w->lock_fd;
    goto fail;
  }
  /* repair what an earlier crash left: drop unfinished episodes, publish committed ones */
  int dropped = 0, published = 0, rejected = 0;
  if ((rc = ds_recover_locked(path, w->dir, &published, &dropped, &rejected))) goto fail;
  if (dropped || published || rejected)
    tk_warn("%s: recovered after an earlier crash: %d committed episode(s) published, %d unfinished dropped, "
            "%d set aside in %s%s/",
            path, published, dropped, rejected, path, DS_REJECTED_SUFFIX);

  if (tk_file_exists(path)) {
    dsFile *f = NULL;
    if ((rc = ds_open(path, DS_OPEN_NO_VALUE_CHECK, &f))) {
      tk_error_wrap(rc, "cannot append");
      goto fail;
    }
    if (strcmp(ds_env_name(f), w->env_name)) {
      rc = tk_error(TK_EFORMAT, "%s: is a dataset of task '%s', not '%s'", path, ds_env_name(f), w->env_name);
      ds_close(f);
      goto fail;
    }
    if (ds_num_demos(f) > 0 && (rc = ds_schema_compare(ds_schema(f), s))) {
      tk_error_wrap(rc, "%s: different schema (file vs this recording)", path);
      ds_close(f);
      goto fail;
    }
    if ((rc = ds_env_kwargs_compatible(f, w->env_kwargs)) || (rc = file_rate(f, &w->file_hz))) {
      ds_close(f);
      goto fail;
    }
    int nd = ds_num_demos(f);
    w->next_index = nd ? ds_demo(f, nd - 1)->index + 1 : 0;
    ds_close(f);
  }

  size_t row_total = 0;
  for (int f = 0; f < DS_NFIELDS; f++) {
    w->field_row[f] = (size_t)ds_field_cols(f, s) * ds_dtype_size(ds_fields[f].dtype);
    row_total += w->field_row[f];
  }
  size_t obs_total = 0;
  for (int k = 0; k < s->nkeys; k++) {
    if (s->keys[k].rank < 1 || s->keys[k].rank > DS_MAX_RANK || ds_key_elems(&s->keys[k]) < 1) {
      rc = tk_error(TK_EINVAL, "%s: observation key %s has a bad shape", path, s->keys[k].name);
      goto fail;
    }
    w->obs_row[k] = (size_t)ds_key_elems(&s->keys[k]) * ds_dtype_size(s->keys[k].dtype);
    obs_total += w->obs_row[k];
    /* large rows (camera frames) go to disk as they come; small ones are gathered */
    w->streamed[k] = ds_key_is_image(&s->keys[k]) || w->obs_row[k] >= 4096;
  }
  row_total += obs_total;
  /* a block holds at most ~8 MiB so camera frames do not pile up in memory */
  w->block_cap =
      TK_MAX(1, TK_MIN((int64_t)w->o.block_steps, (int64_t)((8u << 20) / (row_total ? row_total : 1))));
  w->last_obs_mem = calloc(1, obs_total + 1);
  if (!w->last_obs_mem) {
    rc = tk_error(TK_ENOMEM, "out of memory");
    goto fail;
  }
  uint8_t *p = w->last_obs_mem;
  for (int k = 0; k < s->nkeys; k++) {
    w->last_obs[k] = p;
    p += w->obs_row[k];
  }
  for (int i = 0; i < 4; i++) {
    dsBlock *b = block_new(w);
    if (!b) {
      rc = tk_error(TK_ENOMEM, "out of memory for episode buffers");
      goto fail;
    }
    b->next = w->pool;
    w->pool = b;
  }
  if (pthread_create(&w->cth, NULL, committer_main, w)) {
    rc = tk_error(TK_EIO, "start committer thread: %s", strerror(errno));
    goto fail;
  }
  w->cth_started = 1;
  if (pthread_create(&w->th, NULL, writer_main, w)) {
    rc = tk_error(TK_EIO, "start writer thread: %s", strerror(errno));
    goto fail;
  }
  w->th_started = 1;
  w->last_publish = tk_now_s();
  *out = w;
  return 0;
fail:
  writer_free(w);
  return rc;
}

int ds_writer_begin(dsWriter *w, const dsEpisodeInfo *info, int64_t *demo_index) {
  int rc = sticky_error(w);
  if (rc) return rc;
  if (w->in_episode) return tk_error(TK_EINVAL, "%s: an episode is already open", w->path);
  if (!info || !(info->control_hz > 0) || !isfinite(info->control_hz))
    return tk_error(TK_EINVAL, "%s: begin episode: control_hz (the nominal control rate) must be > 0",
                    w->path);
  if (w->file_hz > 0 && info->control_hz != w->file_hz)
    return tk_error(
        TK_EINVAL,
        "%s: its demos were recorded at %g Hz; this episode is at %g Hz (record into another file)", w->path,
        w->file_hz, info->control_hz);
  /* names are stored whole or refused here, before anything is recorded (the reader refuses names
   * past DS_NAME_MAX - 1 bytes too: never cut) */
  char task[DS_NAME_MAX], op[DS_NAME_MAX], dev[DS_NAME_MAX];
  if ((rc = tk_copy_name(task, sizeof task, info->task ? info->task : w->env_name, "task")) ||
      (rc = tk_copy_name(op, sizeof op, info->operator_name ? info->operator_name : "", "operator")) ||
      (rc = tk_copy_name(dev, sizeof dev, info->device ? info->device : "", "device")))
    return tk_error_wrap(rc, "%s: begin episode", w->path);
  dsBlock *b = block_get(w);
  if (!b) return tk_error(TK_ENOMEM, "out of memory");
  b->begin = 1;
  b->demo_index = w->next_index;
  b->t0 = 0;
  memcpy(b->task, task, sizeof task);
  memcpy(b->operator_name, op, sizeof op);
  memcpy(b->device, dev, sizeof dev);
  b->seed = info->seed;
  b->control_hz = info->control_hz;
  if (info->model_file) b->model_file = strdup(info->model_file);
  if (info->ep_meta_json) b->ep_meta = strdup(info->ep_meta_json);
  w->cur = b;
  w->in_episode = 1;
  w->ep_steps = 0;
  if (demo_index) *demo_index = w->next_index;
  w->next_index++;
  return 0;
}

int ds_writer_add_step(dsWriter *w, const dsStep *st) {
  int rc = sticky_error(w);
  if (rc) return rc;
  if (!w->in_episode) return tk_error(TK_EINVAL, "%s: add_step outside an episode", w->path);
  const dsSchema *s = &w->o.schema;
  if (!st->action) return tk_error(TK_EINVAL, "%s: step %lld has no action", w->path, (long long)w->ep_steps);
  for (int i = 0; i < s->action_dim; i++) {
    double a = st->action[i];
    if (!isfinite(a) || a < -1.000001 || a > 1.000001)
      return tk_error(TK_ERANGE, "%s: step %lld: action[%d] = %g is not in [-1,1]; step refused", w->path,
                      (long long)w->ep_steps, i, a);
  }
  if (s->state_dim > 0 && !st->state)
    return tk_error(TK_EINVAL, "%s: step %lld has no state", w->path, (long long)w->ep_steps);
  for (int k = 0; k < s->nkeys; k++)
    if (!st->obs[k])
      return tk_error(TK_EINVAL, "%s: step %lld: observation %s missing", w->path, (long long)w->ep_steps,
                      s->keys[k].name);
  dsBlock *b = w->cur;
  if (b->n == b->cap) {
    dsBlock *nb = block_get(w);
    if (!nb) return tk_error(TK_ENOMEM, "out of memory");
    nb->demo_index = b->demo_index;
    nb->t0 = w->ep_steps;
    enqueue(w, b);
    w->cur = b = nb;
  }
  int64_t r = b->n;
  memcpy(b->field[DS_FIELD_actions] + (size_t)r * w->field_row[DS_FIELD_actions], st->action,
         w->field_row[DS_FIELD_actions]);
  ((double *)b->field[DS_FIELD_rewards])[r] = st->reward;
  b->field[DS_FIELD_dones][r] = st->done ? 1 : 0;
  if (s->state_dim > 0)
    memcpy(b->field[DS_FIELD_states] + (size_t)r * w->field_row[DS_FIELD_states], st->state,
           w->field_row[DS_FIELD_states]);
  ((double *)b->field[DS_FIELD_timestamps])[r] = st->timestamp;
  b->field[DS_FIELD_interventions][r] = st->intervention ? 1 : 0;
  for (int k = 0; k < s->nkeys; k++)
    memcpy(b->obs[k] + (size_t)r * w->obs_row[k], st->obs[k], w->obs_row[k]);
  b->n++;
  w->ep_steps++;
  return 0;
}

int ds_writer_end(dsWriter *w, dsOutcome outcome, const void *const *final_obs, int64_t missed_deadlines) {
  return ds_writer_end_why(w, outcome, final_obs, missed_deadlines, NULL);
}

int ds_writer_end_why(dsWriter *w, dsOutcome outcome, const void *const *final_obs, int64_t missed_deadlines,
                      const char *why) {
  if (!w->in_episode) return tk_error(TK_EINVAL, "%s: end outside an episode", w->path);
  char *reason = why && why[0] ? strdup(why) : NULL; /* whole: the reason is never cut */
  if (why && why[0] && !reason) return tk_error(TK_ENOMEM, "%s: end episode: out of memory", w->path);
  dsBlock *b = w->cur;
  w->cur = NULL;
  w->in_episode = 0;
  int rc = sticky_error(w);
  if (rc || w->ep_steps == 0 || (outcome == DS_DISCARD && b->begin)) {
    /* nothing reached the writer thread yet: nothing to write or undo */
    if (w->ep_steps == 0 && !rc && outcome != DS_DISCARD)
      tk_warn("%s: episode with no steps not recorded", w->path);
    free(reason);
    pthread_mutex_lock(&w->mu);
    block_put_locked(w, b);
    pthread_mutex_unlock(&w->mu);
    w->next_index--; /* the index was never used */
    return rc;
  }
  b->end = 1;
  b->outcome = outcome;
  b->missed = missed_deadlines;
  free(b->end_reason);
  b->end_reason = reason;
  if (final_obs) {
    const dsSchema *s = &w->o.schema;
    int ok = 1;
    for (int k = 0; k < s->nkeys; k++)
      ok = ok && final_obs[k];
    if (ok) {
      for (int k = 0; k < s->nkeys; k++)
        memcpy(b->obs[k] + (size_t)b->cap * w->obs_row[k], final_obs[k], w->obs_row[k]);
      b->final_obs_valid = 1;
    }
  }
  if (outcome == DS_DISCARD) w->next_index--; /* the writer thread deletes the file; reuse the index */
  enqueue(w, b);
  return 0;
}

int64_t ds_writer_committed(dsWriter *w) {
  pthread_mutex_lock(&w->mu);
  int64_t c = w->committed;
  pthread_mutex_unlock(&w->mu);
  return c;
}

int ds_writer_sync(dsWriter *w) {
  pthread_mutex_lock(&w->mu);
  while (w->processed < w->enqueued || w->cdone < w->cqueued)
    pthread_cond_wait(&w->cv_done, &w->mu);
  pthread_mutex_unlock(&w->mu);
  return sticky_error(w);
}

int ds_writer_publish(dsWriter *w) {
  int rc = ds_writer_sync(w);
  if (rc) return rc;
  pthread_mutex_lock(&w->pub_mu);
  rc = ds_publish_staged(w->path, w->dir, 0, NULL, NULL);
  pthread_mutex_unlock(&w->pub_mu);
  return rc;
}

int ds_writer_close(dsWriter *w) {
  if (!w) return 0;
  if (w->in_episode) ds_writer_end(w, DS_DISCARD, NULL, 0); /* an unfinished episode is not kept */
  int rc = 0;
  if (w->th_started) {
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_signal(&w->cv_work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->th, NULL);
    w->th_started = 0;
  }
  if (w->cth_started) {
    pthread_join(w->cth, NULL); /* the writer thread's exit tells it to finish the queue */
    w->cth_started = 0;
  }
  rc = sticky_error(w);
  char saved[TK_ERRMSG_MAX];
  snprintf(saved, sizeof saved, "%s", tk_errmsg());
  /* publish what is committed even after an error: those episodes are complete */
  int prc = ds_publish_staged(w->path, w->dir, 0, NULL, NULL);
  if (!prc) {
    char lock[4200];
    snprintf(lock, sizeof lock, "%s/lock", w->dir);
    unlink(lock);
    rmdir(w->dir); /* fails harmlessly when something is left */
  }
  if (rc)
    tk_error(rc, "%s", saved);
  else
    rc = prc;
  writer_free(w);
  return rc;
}
