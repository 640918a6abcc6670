/* bc/bc_images.c -- image observations for training: uint8 frames read from the dataset, or rendered
 * again from each demo's stored states (robomimic's dataset_states_to_obs) in the dataset's task. */
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bc.h"

/* Bounds: a stored frame larger than this is refused (a file declaring a huge image costs nothing). */
#define MAX_SIDE 4096
/* Memory: the frames must fit in what is available less a quarter of it (at least 512 MiB) for the
 * rest of training (the network, its work buffers, HDF5's chunk cache). */
#define HEADROOM_MIN (512.0 * 1024 * 1024)

static void gib(double bytes, char *buf, size_t n) {
  if (bytes >= 1024.0 * 1024 * 1024)
    snprintf(buf, n, "%.1f GiB", bytes / (1024.0 * 1024 * 1024));
  else
    snprintf(buf, n, "%.1f MiB", bytes / (1024.0 * 1024));
}

int bc_is_image_key(dsFile *f, const char *key, int nrender, const capCamera *render) {
  const dsSchema *s = ds_schema(f);
  int k = ds_schema_find(s, key);
  if (k >= 0 && ds_key_is_image(&s->keys[k])) return 1;
  for (int c = 0; c < nrender; c++) {
    char ck[CAP_NAME_MAX + 16];
    if (!cap_camera_key(render[c].name, ck, sizeof ck) && !strcmp(ck, key)) return 1;
  }
  return 0;
}

void bc_images_free(bcImages *im) {
  if (!im) return;
  free(im->block_);
  memset(im, 0, sizeof *im);
}

/* Bytes available for the frames: DK_MEM_AVAILABLE (bytes) when set, else MemAvailable from
 * /proc/meminfo; *src says which. -1 when neither can be read (no check then). */
static int mem_available(double *bytes, const char **src) {
  int64_t v;
  int rc = tk_env_int("DK_MEM_AVAILABLE", 0, INT64_C(1) << 60, -1, &v);
  if (rc) return rc;
  if (v >= 0) {
    *bytes = (double)v;
    *src = "DK_MEM_AVAILABLE";
    return 0;
  }
  *bytes = -1;
  *src = "MemAvailable in /proc/meminfo";
  FILE *fp = fopen("/proc/meminfo", "r");
  if (!fp) return 0;
  char line[256];
  long long kb;
  while (fgets(line, sizeof line, fp))
    if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) {
      *bytes = (double)kb * 1024;
      break;
    }
  fclose(fp);
  return 0;
}

/* ---- rendering from states, in parallel workers (each with its own environment and renderer) ---- */
typedef struct {
  const capModel *m;
  const dsFile *f; /* demo names only (an in-memory table: no HDF5 calls off the main thread) */
  const dsLoaded *L;
  const double *states; /* L->n x S, the demos' stored states in L's row order */
  int S;
  bcImages *out;
  int nslot;
  int obs_index[CAP_MAX_CAMS]; /* the camera's observation in capSpec.obs */
  int key_index[CAP_MAX_CAMS]; /* its block in out */
  const char *path;
  int quiet;
  pthread_mutex_t mu;
  int next;          /* next demo to render */
  int64_t rows_done; /* for the progress bar */
  tkProgress prog;
  int rc;
  char err[TK_ERRMSG_MAX];
} renderJob;

static void *render_worker(void *arg) {
  renderJob *j = arg;
  const dsLoaded *L = j->L;
  capEnv *env = NULL;
  int rc = cap_env_make(j->m, &env);
  while (!rc) {
    pthread_mutex_lock(&j->mu);
    int d = j->rc ? L->ndemos : j->next++;
    pthread_mutex_unlock(&j->mu);
    if (d >= L->ndemos) break;
    for (int64_t r = L->demo_start[d]; r < L->demo_start[d + 1] && !rc; r++) {
      capObs obs;
      if ((rc = cap_env_set_state(env, j->states + r * j->S, &obs))) {
        rc = tk_error_wrap(rc, "%s: %s step %" PRId64, j->path, ds_demo(j->f, L->demo_pos[d])->name,
                           r - L->demo_start[d]);
        break;
      }
      for (int c = 0; c < j->nslot; c++) {
        const int k = j->key_index[c];
        const size_t frame = (size_t)j->out->h[k] * j->out->w[k] * j->out->c[k];
        memcpy(j->out->data[k] + (size_t)r * frame, obs.v[j->obs_index[c]], frame);
      }
    }
    pthread_mutex_lock(&j->mu);
    j->rows_done += L->demo_start[d + 1] - L->demo_start[d];
    if (!j->quiet) tk_progress_update(&j->prog, j->rows_done, NULL);
    pthread_mutex_unlock(&j->mu);
  }
  if (rc) {
    pthread_mutex_lock(&j->mu);
    if (!j->rc) {
      j->rc = rc;
      snprintf(j->err, sizeof j->err, "%s", tk_errmsg());
    }
    pthread_mutex_unlock(&j->mu);
  }
  cap_env_free(env);
  return NULL;
}

/* The cores this process may run on (taskset and cpusets included). */
static int usable_cores(void) {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return TK_MAX(1, CPU_COUNT(&set));
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

static int render_all(dsFile *f, const dsLoaded *L, const capModel *m, const double *states, int S,
                      bcImages *out, int nslot, const int *obs_index, const int *key_index, int quiet,
                      double *seconds) {
  renderJob j = {.m = m,
                 .f = f,
                 .L = L,
                 .states = states,
                 .S = S,
                 .out = out,
                 .nslot = nslot,
                 .path = ds_path(f),
                 .quiet = quiet};
  memcpy(j.obs_index, obs_index, sizeof(int) * (size_t)nslot);
  memcpy(j.key_index, key_index, sizeof(int) * (size_t)nslot);
  pthread_mutex_init(&j.mu, NULL);
  pthread_t th[16];
  int nw = TK_MAX(1, TK_MIN(TK_MIN(usable_cores(), L->ndemos), (int)TK_ARRAY_LEN(th)));
  /* renders are serialized in the process (capture/cap_render.c: concurrent ones crashed inside Mesa), so
   * the workers overlap only setting states and copying: 2675 rows of two 84x84 cameras took 4.8 s with two
   * workers and 4.6 s pinned to one core */
  double t0 = tk_now_s();
  if (!quiet) tk_progress_begin(&j.prog, "rendering", L->n);
  int started = 0;
  for (int i = 1; i < nw; i++)
    if (!pthread_create(&th[i], NULL, render_worker, &j)) started = i;
  render_worker(&j);
  for (int i = 1; i <= started; i++)
    pthread_join(th[i], NULL);
  if (!quiet) tk_progress_end(&j.prog);
  pthread_mutex_destroy(&j.mu);
  *seconds = tk_now_s() - t0;
  if (j.rc) return tk_error(j.rc, "%s", j.err);
  return 0;
}

/* ---- loading ---- */

/* The rows of demo i of L: its sample count in the file must be what L holds (ds_load reads every step). */
static int demo_rows(dsFile *f, const dsLoaded *L, int i, int64_t *count) {
  const dsDemoInfo *d = ds_demo(f, L->demo_pos[i]);
  *count = L->demo_start[i + 1] - L->demo_start[i];
  if (d->num_samples != *count)
    return tk_error(TK_EINVAL,
                    "%s: %s has %" PRId64 " steps, the loaded demos %" PRId64 " (not loaded from this file?)",
                    ds_path(f), d->name, d->num_samples, *count);
  return 0;
}

static int images_load(dsFile *f, const dsLoaded *L, int nkeys, const char *const *keys, int nrender,
                       const capCamera *render, int quiet, bcImages *out) {
  const char *path = ds_path(f);
  const dsSchema *s = ds_schema(f);
  if (nkeys < 0 || nkeys > BC_MAX_KEYS)
    return tk_error(TK_ERANGE, "%s: %d image keys (at most %d)", path, nkeys, BC_MAX_KEYS);
  if (nrender < 0 || nrender > CAP_MAX_CAMS)
    return tk_error(TK_ERANGE, "%d render cameras (at most %d)", nrender, CAP_MAX_CAMS);
  if (nkeys == 0 && nrender == 0) return 0;

  /* every render camera: a size it can render at, once, and its key among the keys asked for */
  int cam_key[CAP_MAX_CAMS];
  for (int c = 0; c < nrender; c++) {
    const capCamera *cm = &render[c];
    char ck[CAP_NAME_MAX + 16];
    int rc = cap_camera_key(cm->name, ck, sizeof ck);
    if (rc) return tk_error_wrap(rc, "%s", path);
    if (cm->width < CAP_CAM_MIN_SIZE || cm->height < CAP_CAM_MIN_SIZE || cm->width > CAP_CAM_MAX_WIDTH ||
        cm->height > CAP_CAM_MAX_HEIGHT)
      return tk_error(TK_ERANGE, "%s: render camera %s: size %dx%d not in %dx%d..%dx%d", path, cm->name,
                      cm->width, cm->height, CAP_CAM_MIN_SIZE, CAP_CAM_MIN_SIZE, CAP_CAM_MAX_WIDTH,
                      CAP_CAM_MAX_HEIGHT);
    for (int d = 0; d < c; d++)
      if (!strcmp(render[d].name, cm->name))
        return tk_error(TK_EINVAL, "%s: render camera %s given twice", path, cm->name);
    cam_key[c] = -1;
    for (int k = 0; k < nkeys; k++)
      if (!strcmp(keys[k], ck)) cam_key[c] = k;
    if (cam_key[c] < 0)
      return tk_error(TK_EINVAL,
                      "%s: render camera %s gives the key %s, which is not among the observation keys asked "
                      "for",
                      path, cm->name, ck);
  }

  /* every key: rendered (a render camera names it) or read (a uint8 H,W,3 dataset of the file) */
  bcImages *im = out;
  int schema_index[BC_MAX_KEYS], need_render = 0;
  char files_too[512] = "";
  for (int k = 0; k < nkeys; k++) {
    for (int q = 0; q < k; q++)
      if (!strcmp(keys[q], keys[k]))
        return tk_error(TK_EINVAL, "%s: image key %s given twice", path, keys[k]);
    if (tk_copy_name(im->key[k], BC_KEY_MAX, keys[k], "image key"))
      return tk_error_wrap(TK_ERANGE, "%s", path);
    int cam = -1;
    for (int c = 0; c < nrender; c++)
      if (cam_key[c] == k) cam = c;
    int si = schema_index[k] = ds_schema_find(s, keys[k]);
    if (cam >= 0) {
      im->h[k] = render[cam].height;
      im->w[k] = render[cam].width;
      im->c[k] = 3;
      im->rendered[k] = 1;
      need_render = 1;
      if (si >= 0) { /* the explicit request wins: rendered again from the states (say so) */
        size_t l = strlen(files_too);
        snprintf(files_too + l, sizeof files_too - l, "%s%s", l ? ", " : "", keys[k]);
      }
      continue;
    }
    if (si < 0) {
      char have[DS_MAX_KEYS * (DS_NAME_MAX + 2)] = "";
      size_t off = 0;
      for (int i = 0; i < s->nkeys; i++)
        if (ds_key_is_image(&s->keys[i]))
          off += (size_t)snprintf(have + off, sizeof have - off, "%s%s", off ? ", " : "", s->keys[i].name);
      return tk_error(TK_ENOTFOUND,
                      "%s: no observation key %s (image keys in the file: %s); a camera's frames can be "
                      "rendered from the demos' states with --render-cameras NAME:WxH",
                      path, keys[k], off ? have : "none");
    }
    const dsKeySpec *ks = &s->keys[si];
    if (ks->dtype != DS_U8)
      return tk_error(TK_EFORMAT, "%s: observation key %s is %s, not an image (uint8 H,W,3)", path, keys[k],
                      ds_dtype_name(ks->dtype));
    if (ks->rank != 3)
      return tk_error(TK_EFORMAT, "%s: observation key %s is uint8 of rank %d per step, not an image (H,W,3)",
                      path, keys[k], ks->rank);
    if (ks->shape[2] != 3)
      return tk_error(TK_EFORMAT, "%s: image key %s has %" PRId64 " channels (RGB, 3, expected)", path,
                      keys[k], ks->shape[2]);
    if (ks->shape[0] < 1 || ks->shape[1] < 1 || ks->shape[0] > MAX_SIDE || ks->shape[1] > MAX_SIDE)
      return tk_error(TK_ERANGE, "%s: image key %s is %" PRId64 "x%" PRId64 " (at most %dx%d)", path, keys[k],
                      ks->shape[1], ks->shape[0], MAX_SIDE, MAX_SIDE);
    im->h[k] = (int)ks->shape[0];
    im->w[k] = (int)ks->shape[1];
    im->c[k] = 3;
  }
  im->nkeys = nkeys;
  im->n = L->n;

  /* rendering: a built-in task with these cameras, and states of its size in every demo */
  const char *task = ds_env_name(f);
  capModel *model = NULL;
  int S = 0;
  if (need_render) {
    if (!cap_task_known(task))
      return tk_error(TK_EINVAL,
                      "%s: task '%s' is not a built-in task (%s): its frames cannot be rendered from the "
                      "states",
                      path, task ? task : "", cap_task_names());
    capOpts co;
    cap_opts_default(&co);
    co.task = task;
    co.ncams = nrender;
    memcpy(co.cams, render, sizeof(capCamera) * (size_t)nrender);
    int rc = cap_model_load(&co, &model);
    if (rc) return tk_error_wrap(rc, "%s: rendering in task %s", path, task);
    S = cap_spec(model)->state_dim;
    rc = 0;
    if (s->state_dim == 0)
      rc = tk_error(TK_EFORMAT, "%s: the demos store no states: their frames cannot be rendered", path);
    else if (s->state_dim != S)
      rc = tk_error(TK_EFORMAT,
                    "%s: states of %d values, task %s's state has %d: recorded with another model or "
                    "version, cannot render from them",
                    path, s->state_dim, task, S);
    for (int i = 0; i < L->ndemos && !rc; i++)
      if (!ds_demo(f, L->demo_pos[i])->has_states)
        rc = tk_error(TK_EFORMAT, "%s: %s has no states: its frames cannot be rendered", path,
                      ds_demo(f, L->demo_pos[i])->name);
    if (rc) {
      cap_model_free(model);
      return rc;
    }
  }

  /* memory: say what the frames take, refuse what will not fit */
  double row_bytes = 0;
  for (int k = 0; k < nkeys; k++)
    row_bytes += (double)im->h[k] * im->w[k] * im->c[k];
  const double need = row_bytes * (double)L->n, states_bytes = need_render ? 8.0 * S * (double)L->n : 0;
  double avail = -1;
  const char *src = "";
  int rc = mem_available(&avail, &src);
  char sneed[32], savail[32], slimit[32], desc[BC_MAX_KEYS * (BC_KEY_MAX + 40)] = "";
  size_t off = 0;
  for (int k = 0; k < nkeys && off < sizeof desc; k++)
    off += (size_t)snprintf(desc + off, sizeof desc - off, "%s%s %dx%dx%d%s", k ? ", " : "", im->key[k],
                            im->h[k], im->w[k], im->c[k], im->rendered[k] ? " rendered" : "");
  gib(need, sneed, sizeof sneed);
  gib(avail, savail, sizeof savail);
  const double limit = avail - TK_MAX(avail / 4, HEADROOM_MIN);
  gib(TK_MAX(limit, 0), slimit, sizeof slimit);
  if (!rc && !quiet)
    printf("%s: image observations: %s for %" PRId64 " rows (%s); %s available (%s)\n", path, sneed, L->n,
           desc, avail >= 0 ? savail : "unknown", src);
  if (!rc && avail >= 0 && need + states_bytes > limit)
    rc = tk_error(TK_ENOMEM,
                  "%s: image observations need %s (%" PRId64
                  " rows of %s), more than fits: %s available (%s), "
                  "of which %s may be used (a quarter, at least 512 MiB, is left for the rest of training)",
                  path, sneed, L->n, desc, savail, src, slimit);
  if (!rc && need > (double)SIZE_MAX / 2)
    rc = tk_error(TK_ERANGE, "%s: image observations of %s", path, sneed);
  if (!rc && !(im->block_ = malloc((size_t)TK_MAX(need, 1))))
    rc = tk_error(TK_ENOMEM, "%s: image observations: out of memory for %s", path, sneed);
  if (rc) {
    cap_model_free(model);
    return rc;
  }
  size_t at = 0;
  for (int k = 0; k < nkeys; k++) {
    im->data[k] = (uint8_t *)im->block_ + at;
    at += (size_t)L->n * im->h[k] * im->w[k] * im->c[k];
  }

  /* the file's frames, demo by demo */
  for (int k = 0; k < nkeys && !rc; k++) {
    if (im->rendered[k]) continue;
    char ds[DS_NAME_MAX + 8];
    snprintf(ds, sizeof ds, "obs/%s", im->key[k]);
    const int64_t frame = (int64_t)im->h[k] * im->w[k] * im->c[k];
    for (int i = 0; i < L->ndemos && !rc; i++) {
      int64_t count, cols = 0;
      if ((rc = demo_rows(f, L, i, &count))) break;
      rc = ds_read_rows(f, L->demo_pos[i], ds, 0, count, DS_U8, im->data[k] + L->demo_start[i] * frame,
                        count * frame, &cols);
      if (!rc && cols != frame)
        rc = tk_error(TK_EFORMAT, "%s: %s/%s has %" PRId64 " values per step, %" PRId64 " expected", path,
                      ds_demo(f, L->demo_pos[i])->name, ds, cols, frame);
    }
  }

  /* the rendered ones: the states first (HDF5 stays on this thread), then the workers */
  if (!rc && need_render) {
    if (files_too[0] && !quiet)
      printf("%s: %s: in the file and asked to render: rendered again from the states\n", path, files_too);
    double *states = malloc(sizeof(double) * (size_t)TK_MAX(L->n * S, 1));
    if (!states) rc = tk_error(TK_ENOMEM, "%s: out of memory for the states", path);
    for (int i = 0; i < L->ndemos && !rc; i++) {
      int64_t count, cols = 0;
      if ((rc = demo_rows(f, L, i, &count))) break;
      rc = ds_read_rows(f, L->demo_pos[i], "states", 0, count, DS_F64, states + L->demo_start[i] * S,
                        count * S, &cols);
      if (!rc && cols != S)
        rc = tk_error(TK_EFORMAT, "%s: %s/states has %" PRId64 " values per step, task %s's state %d", path,
                      ds_demo(f, L->demo_pos[i])->name, cols, task, S);
    }
    int nslot = 0, obs_index[CAP_MAX_CAMS], key_index[CAP_MAX_CAMS];
    const capSpec *sp = cap_spec(model);
    for (int c = 0; c < nrender && !rc; c++) {
      key_index[nslot] = cam_key[c];
      obs_index[nslot] = -1;
      for (int o = 0; o < sp->nobs; o++)
        if (!strcmp(sp->obs[o].name, im->key[cam_key[c]])) obs_index[nslot] = o;
      if (obs_index[nslot] < 0)
        rc = tk_error(TK_EINVAL, "%s: task %s gives no observation %s", path, task, im->key[cam_key[c]]);
      nslot++;
    }
    double secs = 0;
    if (!rc) rc = render_all(f, L, model, states, S, im, nslot, obs_index, key_index, quiet, &secs);
    if (!rc && !quiet)
      printf("%s: rendered %" PRId64 " rows x %d camera%s in %.1f s (%.0f frames/s)\n", path, L->n, nslot,
             nslot == 1 ? "" : "s", secs, secs > 0 ? (double)L->n * nslot / secs : 0);
    free(states);
  }
  cap_model_free(model);
  return rc;
}

int bc_images_load(dsFile *f, const dsLoaded *L, int nkeys, const char *const *keys, int nrender,
                   const capCamera *render, int quiet, bcImages *out) {
  memset(out, 0, sizeof *out);
  int rc = images_load(f, L, nkeys, keys, nrender, render, quiet, out);
  if (rc) bc_images_free(out); /* on error: empty */
  return rc;
}
