/* bc/bc_eval.c -- binding policies to environments and rollout evaluation in parallel workers. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bc.h"
#include "cap.h"
#include "ds.h"

/* ---- binding ------------------------------------------------------------------------------------ */
static void list_policy(const bcPolicy *p, char *buf, size_t n) {
  size_t off = 0;
  buf[0] = 0;
  for (int i = 0; i < p->nkeys && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, "%s%s(%d)", i ? ", " : "", p->keys[i], p->key_dim[i]);
}

static void list_spec(const capSpec *s, char *buf, size_t n) {
  size_t off = 0;
  buf[0] = 0;
  for (int k = 0, first = 1; k < s->nobs && off < n; k++) {
    if (s->obs[k].dtype != CAP_F64) continue;
    off += (size_t)snprintf(buf + off, n - off, "%s%s(%d)", first ? "" : ", ", s->obs[k].name,
                            s->obs[k].shape[0]);
    first = 0;
  }
}

static void list_policy_cams(const bcPolicy *p, char *buf, size_t n) {
  size_t off = 0;
  buf[0] = 0;
  for (int i = 0; i < p->nimg && off < n; i++)
    off += (size_t)snprintf(buf + off, n - off, "%s%s(%dx%dx%d)", i ? ", " : "", p->img[i].key,
                            p->img[i].height, p->img[i].width, p->img[i].channels);
}

static void list_spec_cams(const capSpec *s, char *buf, size_t n) {
  size_t off = 0;
  snprintf(buf, n, "none");
  for (int k = 0, first = 1; k < s->nobs && off < n; k++) {
    if (s->obs[k].dtype != CAP_U8) continue;
    off += (size_t)snprintf(buf + off, n - off, "%s%s(%dx%dx%d)", first ? "" : ", ", s->obs[k].name,
                            s->obs[k].shape[0], s->obs[k].shape[1], s->obs[k].shape[2]);
    first = 0;
  }
}

/* camera name of an image key: robot0_eye_in_hand_image -> eye_in_hand, agentview_image -> agentview */
static int camera_of_key(const char *key, char *cam, size_t n) {
  const char *k = strncmp(key, "robot0_", 7) ? key : key + 7;
  size_t l = strlen(k);
  if (l <= 6 || strcmp(k + l - 6, "_image") || l - 6 >= n) return -1;
  memcpy(cam, k, l - 6);
  cam[l - 6] = 0;
  return 0;
}

int bc_policy_cameras(const bcPolicy *p, capOpts *co) {
  if (p->base) return bc_policy_cameras(p->base, co); /* a residual policy: its base's */
  for (int i = 0; i < p->nimg; i++) {
    const bcImage *c = &p->img[i];
    char cam[CAP_NAME_MAX];
    if (camera_of_key(c->key, cam, sizeof cam))
      return tk_error(TK_EINVAL, "the policy reads '%s', which is not a camera key (NAME_image)", c->key);
    int found = -1;
    for (int j = 0; j < co->ncams; j++)
      if (!strcmp(co->cams[j].name, cam)) found = j;
    if (found >= 0) {
      if (co->cams[found].width != c->width || co->cams[found].height != c->height)
        return tk_error(TK_EINVAL, "camera %s renders %dx%d, but the policy was trained on %dx%d frames", cam,
                        co->cams[found].width, co->cams[found].height, c->width, c->height);
      continue;
    }
    if (co->ncams >= CAP_MAX_CAMS) return tk_error(TK_ERANGE, "more than %d cameras", CAP_MAX_CAMS);
    capCamera *d = &co->cams[co->ncams++];
    snprintf(d->name, sizeof d->name, "%s", cam);
    d->width = c->width;
    d->height = c->height;
  }
  return 0;
}

int bc_policy_model_load(const bcPolicy *p, capOpts *co, capModel **m) {
  if (p->base) p = p->base; /* a residual policy reads the cameras of its base */
  int rc = bc_policy_cameras(p, co);
  if (!rc) rc = cap_model_load(co, m);
  if (rc && p->nimg) {
    char want[1024];
    list_policy_cams(p, want, sizeof want);
    return tk_error_wrap(rc, "the policy reads cameras %s", want);
  }
  return rc;
}

int bc_bind(const bcPolicy *p, const capModel *m, bcBinding *b) {
  const capSpec *s = cap_spec(m);
  memset(b, 0, sizeof *b);
  char want[1024], have[1024];
  if (p->act_dim != s->action_dim)
    return tk_error(TK_EINVAL, "the policy acts with %d values but task '%s' takes %d", p->act_dim, s->task,
                    s->action_dim);
  for (int i = 0; i < p->nkeys; i++) {
    int found = -1;
    for (int k = 0; k < s->nobs; k++)
      if (!strcmp(s->obs[k].name, p->keys[i])) found = k;
    int dim = 0;
    if (found >= 0 && s->obs[found].dtype == CAP_F64 && s->obs[found].rank == 1) dim = s->obs[found].shape[0];
    if (found < 0 || dim != p->key_dim[i]) {
      list_policy(p, want, sizeof want);
      list_spec(s, have, sizeof have);
      return tk_error(TK_EINVAL,
                      "the policy's observations do not fit task '%s': the policy reads %s; the task has %s",
                      s->task, want, have);
    }
    b->obs_index[i] = found;
    b->dim[i] = dim;
    b->obs_dim += dim;
  }
  b->nkeys = p->nkeys;
  for (int i = 0; i < p->nimg; i++) {
    const bcImage *c = &p->img[i];
    int found = -1;
    for (int k = 0; k < s->nobs; k++)
      if (!strcmp(s->obs[k].name, c->key) && s->obs[k].dtype == CAP_U8 && s->obs[k].rank == 3 &&
          s->obs[k].shape[0] == c->height && s->obs[k].shape[1] == c->width &&
          s->obs[k].shape[2] == c->channels)
        found = k;
    if (found < 0) {
      list_policy_cams(p, want, sizeof want);
      list_spec_cams(s, have, sizeof have);
      return tk_error(TK_EINVAL,
                      "the policy's cameras do not fit task '%s': the policy reads %s; the "
                      "environment renders %s",
                      s->task, want, have);
    }
    b->img_index[i] = found;
  }
  b->nimg = p->nimg;
  return 0;
}

void bc_gather(const bcBinding *b, const void *cap_obs, float *out) {
  const capObs *o = cap_obs;
  for (int i = 0; i < b->nkeys; i++) {
    const double *v = o->v[b->obs_index[i]];
    for (int j = 0; j < b->dim[i]; j++)
      *out++ = (float)v[j];
  }
}

/* ---- dataset options for an environment's observations --------------------------------------- */
int bc_writer_opts(const capModel *m, int ncams, const capCamera *cams, dsWriterOpts *wo, char *kw,
                   size_t kwn) {
  const capSpec *s = cap_spec(m);
  ds_writer_default(wo);
  wo->env_name = s->task;
  wo->schema.action_dim = s->action_dim;
  wo->schema.state_dim = s->state_dim;
  for (int k = 0; k < s->nobs; k++) {
    const capObsSpec *c = &s->obs[k];
    int64_t shape[3] = {c->shape[0], c->shape[1], c->shape[2]};
    if (ds_schema_add(&wo->schema, c->name, c->dtype == CAP_U8 ? DS_U8 : DS_F64, c->rank, shape) < 0)
      return tk_error_wrap(TK_EINVAL, "dataset schema");
  }
  size_t off =
      (size_t)snprintf(kw, kwn, "{\"control_hz\": %g, \"action_mode\": \"%s\", \"cameras\": [", s->control_hz,
                       s->action_mode == CAP_ACT_JOINT       ? "joint"
                       : s->action_mode == CAP_ACT_JOINT_POS ? "joint_pos"
                                                             : "eef");
  for (int c = 0; c < ncams && off < kwn; c++)
    off += (size_t)snprintf(kw + off, kwn - off, "%s\"%s:%dx%d\"", c ? ", " : "", cams[c].name, cams[c].width,
                            cams[c].height);
  if (off < kwn) off += (size_t)snprintf(kw + off, kwn - off, "]");
  /* a robot's joints: what an action of -1 and 1 mean */
  const char *names[CAP_MAX_ACT];
  double lo[CAP_MAX_ACT], hi[CAP_MAX_ACT];
  int nj = cap_model_joints(m, names, lo, hi);
  if (nj && off < kwn) off += (size_t)snprintf(kw + off, kwn - off, ", \"joints\": [");
  for (int j = 0; j < nj && off < kwn; j++)
    off += (size_t)snprintf(kw + off, kwn - off, "%s{\"name\": \"%s\", \"min\": %.17g, \"max\": %.17g}",
                            j ? ", " : "", names[j], lo[j], hi[j]);
  if (nj && off < kwn) off += (size_t)snprintf(kw + off, kwn - off, "]");
  if (off < kwn) snprintf(kw + off, kwn - off, "}");
  if (off >= kwn) return tk_error(TK_ERANGE, "dataset env_kwargs: too long");
  wo->env_kwargs_json = kw;
  return 0;
}

/* ---- rollouts ------------------------------------------------------------------------------------- */
void bc_eval_default(bcEvalOpts *o) {
  memset(o, 0, sizeof *o);
  o->episodes = 50;
  o->seed = BC_EVAL_SEED_BASE;
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  o->workers = n > 0 ? (int)n : 1;
}

typedef struct {
  const bcPolicy *p;
  const capModel *m;
  const bcEvalOpts *o;
  bcEvalResult *r;
  bcBinding bind;
  pthread_mutex_t mu;
  int next;
  int done;
  int rc;
  char err[TK_ERRMSG_MAX];
  dsWriter *w;
  tkProgress prog;
} evalShared;

/* One episode's record, kept until it is written whole (so parallel episodes do not interleave). */
typedef struct {
  int n, cap;
  uint8_t *obs;                  /* n rows of obs_bytes */
  double *act;                   /* n x A */
  double *state;                 /* n x S */
  double *reward;                /* n */
  size_t obs_bytes;              /* one row: every key */
  size_t key_bytes[CAP_MAX_OBS]; /* each key's part of a row */
} evalTrace;

static int trace_push(evalTrace *t, const capSpec *s, const capObs *o, const double *state, const double *a,
                      double reward) {
  if (t->n == t->cap) {
    int cap = t->cap ? 2 * t->cap : 256;
    uint8_t *ob = realloc(t->obs, (size_t)cap * t->obs_bytes);
    if (ob) t->obs = ob;
    double *ac = realloc(t->act, sizeof(double) * (size_t)cap * (size_t)s->action_dim);
    if (ac) t->act = ac;
    double *st = realloc(t->state, sizeof(double) * (size_t)cap * (size_t)s->state_dim);
    if (st) t->state = st;
    double *rw = realloc(t->reward, sizeof(double) * (size_t)cap);
    if (rw) t->reward = rw;
    if (!ob || !ac || !st || !rw) return tk_error(TK_ENOMEM, "out of memory");
    t->cap = cap;
  }
  uint8_t *row = t->obs + (size_t)t->n * t->obs_bytes;
  for (int k = 0; k < s->nobs; k++) {
    memcpy(row, o->v[k], t->key_bytes[k]);
    row += t->key_bytes[k];
  }
  memcpy(t->act + (size_t)t->n * s->action_dim, a, sizeof(double) * (size_t)s->action_dim);
  memcpy(t->state + (size_t)t->n * s->state_dim, state, sizeof(double) * (size_t)s->state_dim);
  t->reward[t->n] = reward;
  t->n++;
  return 0;
}

static size_t obs_row_bytes(const capSpec *s, size_t *key_bytes) {
  size_t total = 0;
  for (int k = 0; k < s->nobs; k++) {
    const capObsSpec *c = &s->obs[k];
    key_bytes[k] = (c->dtype == CAP_U8 ? 1 : 8) * (size_t)c->shape[0] *
                   (size_t)(c->rank > 1 ? c->shape[1] : 1) * (size_t)(c->rank > 2 ? c->shape[2] : 1);
    total += key_bytes[k];
  }
  return total;
}

static int trace_write(evalShared *sh, const evalTrace *t, uint64_t seed, int success, const capObs *fin) {
  const capSpec *s = cap_spec(sh->m);
  dsEpisodeInfo info = {.task = s->task,
                        .seed = (int64_t)seed,
                        .operator_name = sh->p->algo,
                        .device = "policy",
                        .control_hz = s->control_hz,
                        .model_file = cap_model_xml(sh->m)};
  int64_t idx;
  int rc = ds_writer_begin(sh->w, &info, &idx);
  for (int i = 0; !rc && i < t->n; i++) {
    dsStep d = {.action = t->act + (size_t)i * s->action_dim,
                .reward = t->reward[i],
                .state = t->state + (size_t)i * s->state_dim,
                .timestamp = i / s->control_hz};
    const uint8_t *row = t->obs + (size_t)i * t->obs_bytes;
    for (int k = 0; k < s->nobs; k++) {
      d.obs[k] = row;
      row += t->key_bytes[k];
    }
    rc = ds_writer_add_step(sh->w, &d);
  }
  if (!rc) rc = ds_writer_end(sh->w, success ? DS_SUCCESS : DS_FAILURE, fin->v, 0);
  return rc;
}

static void *eval_worker(void *arg) {
  evalShared *sh = arg;
  const capSpec *s = cap_spec(sh->m);
  capEnv *env = NULL;
  bcActor *actor = bc_actor_make(sh->p, sh->m);
  double *state = malloc(sizeof(double) * (size_t)TK_MAX(1, s->state_dim));
  evalTrace tr = {0};
  tr.obs_bytes = obs_row_bytes(s, tr.key_bytes);
  int rc = !actor   ? tk_error_wrap(TK_ENOMEM, "policy")
           : !state ? tk_error(TK_ENOMEM, "out of memory")
                    : cap_env_make(sh->m, &env);
  int horizon = sh->o->horizon > 0 ? sh->o->horizon : s->horizon;
  while (!rc) {
    pthread_mutex_lock(&sh->mu);
    int ep = sh->rc ? sh->o->episodes : sh->next++;
    pthread_mutex_unlock(&sh->mu);
    if (ep >= sh->o->episodes) break;
    uint64_t seed = sh->o->seed + (uint64_t)ep;
    capObs o;
    capStep st = {0};
    double ret = 0, act[CAP_MAX_ACT];
    int len = 0, success = 0;
    tr.n = 0;
    rc = cap_env_reset(env, seed, &o);
    bc_actor_reset(actor, seed);
    while (!rc && len < horizon) {
      if ((rc = bc_actor_step(actor, &o, act))) break;
      for (int i = 0; i < s->action_dim; i++)
        act[i] = isfinite(act[i]) ? fmax(-1, fmin(1, act[i])) : 0;
      if (sh->w) {
        cap_env_get_state(env, state);
        if ((rc = trace_push(&tr, s, &o, state, act, 0))) break;
      }
      if ((rc = cap_env_step(env, act, &st))) break;
      if (sh->w) tr.reward[tr.n - 1] = st.reward;
      ret += st.reward;
      len++;
      o = st.obs;
      if (st.success) success = 1;
      if (st.success || st.terminated) break; /* robomimic's rollouts end at success too */
    }
    if (rc) break;
    pthread_mutex_lock(&sh->mu);
    if (sh->w && len > 0) rc = trace_write(sh, &tr, seed, success, &o);
    sh->r->returns[ep] = ret;
    sh->r->lengths[ep] = len;
    sh->r->success[ep] = (uint8_t)success;
    sh->r->env_steps += len;
    sh->done++;
    if (!sh->o->quiet) {
      int succ = 0;
      for (int i = 0; i < sh->o->episodes; i++)
        succ += sh->r->success[i];
      tk_progress_update(&sh->prog, sh->done, "success %d/%d", succ, sh->done);
    }
    pthread_mutex_unlock(&sh->mu);
  }
  if (rc) {
    pthread_mutex_lock(&sh->mu);
    if (!sh->rc) {
      sh->rc = rc;
      snprintf(sh->err, sizeof sh->err, "%s", tk_errmsg());
    }
    pthread_mutex_unlock(&sh->mu);
  }
  free(tr.obs);
  free(tr.act);
  free(tr.state);
  free(tr.reward);
  free(state);
  bc_actor_free(actor);
  cap_env_free(env);
  return NULL;
}

int bc_evaluate(const bcPolicy *p, const capModel *m, const bcEvalOpts *o, bcEvalResult *r) {
  memset(r, 0, sizeof *r);
  bcEvalOpts dflt;
  bc_eval_default(&dflt);
  if (!o) o = &dflt;
  if (o->episodes < 1) return tk_error(TK_EINVAL, "bc_evaluate: %d episodes", o->episodes);
  evalShared sh = {.p = p, .m = m, .o = o, .r = r};
  int rc = bc_bind(p, m, &sh.bind);
  if (rc) return rc;
  int n = o->episodes;
  r->episodes = n;
  r->returns = calloc((size_t)n, sizeof(double));
  r->lengths = calloc((size_t)n, sizeof(int));
  r->success = calloc((size_t)n, 1);
  if (!r->returns || !r->lengths || !r->success) {
    bc_eval_result_free(r);
    return tk_error(TK_ENOMEM, "out of memory");
  }
  /* the rollouts go to a temp file beside o->save, renamed over it once complete: a new dataset, never
   * appended to an existing one (a human's demos), and no half-written file under the user's name */
  char save_tmp[4200] = "";
  if (o->save) {
    const char *in[] = {o->policy_path};
    dsWriterOpts wo;
    char kw[1024];
    int fd = -1;
    if (!(rc = ds_output_check(o->save, DS_KIND_DATASET, in, 1, o->force)) &&
        (fd = rc = tk_temp_beside(o->save, save_tmp, sizeof save_tmp)) >= 0) {
      close(fd);
      unlink(save_tmp); /* the writer creates it: the name stays ours (no one else makes our temp names) */
      rc = 0;
    }
    if (rc || (rc = bc_writer_opts(m, 0, NULL, &wo, kw, sizeof kw)) ||
        (rc = ds_writer_open(save_tmp, &wo, &sh.w))) {
      bc_eval_result_free(r);
      return rc;
    }
  }
  pthread_mutex_init(&sh.mu, NULL);
  int nw = TK_MAX(1, TK_MIN(o->workers, n));
  pthread_t th[64];
  nw = TK_MIN(nw, (int)TK_ARRAY_LEN(th));
  double t0 = tk_now_s();
  if (!o->quiet) tk_progress_begin(&sh.prog, "rollouts", n);
  int started = 0;
  /* the workers are the parallelism: each acts with one OpenBLAS thread, so a rollout's actions do not
   * depend on the machine's core count (a recurrent policy's GEMMs give other bits on other thread
   * counts) and workers do not oversubscribe the cores */
  const int blas_threads = nn_get_threads();
  nn_set_threads(1);
  for (int i = 1; i < nw; i++)
    if (!pthread_create(&th[i], NULL, eval_worker, &sh)) started = i;
  eval_worker(&sh);
  for (int i = 1; i <= started; i++)
    pthread_join(th[i], NULL);
  nn_set_threads(blas_threads);
  if (!o->quiet) tk_progress_end(&sh.prog);
  pthread_mutex_destroy(&sh.mu);
  r->seconds = tk_now_s() - t0;
  if (sh.w) {
    int crc = ds_writer_close(sh.w);
    if (!crc && !sh.rc) crc = tk_durable_rename(save_tmp, o->save);
    if (!sh.rc && crc) {
      sh.rc = crc;
      snprintf(sh.err, sizeof sh.err, "%s", tk_errmsg());
    }
    if (sh.rc) unlink(save_tmp);
  }
  if (sh.rc) {
    bc_eval_result_free(r);
    return tk_error(sh.rc, "%s", sh.err);
  }
  for (int i = 0; i < n; i++) {
    r->successes += r->success[i];
    r->mean_return += r->returns[i] / n;
    r->mean_length += (double)r->lengths[i] / n;
  }
  r->success_rate = (double)r->successes / n;
  return 0;
}

void bc_eval_result_free(bcEvalResult *r) {
  free(r->returns);
  free(r->lengths);
  free(r->success);
  r->returns = NULL;
  r->lengths = NULL;
  r->success = NULL;
}
