/* rl_finetune/rl_ckpt.c -- rl-finetune checkpoints: everything a run needs to go on (networks with their
 * Adam moments, temperature, RNG streams, counters, the evaluation history, the online replay buffer),
 * written durably, and read back with every counter and size checked against the run's options. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds_h5.h"
#include "rl_internal.h"
#include "rl_mpi.h"

#define RL_CKPT_FORMAT "demokit.rl_checkpoint"

static int put_f32(hid_t g, const char *name, const float *v, int64_t n) {
  return ds_write_whole(g, name, DS_F32, 0, NULL, n, v, 0);
}

static int put_net(hid_t f, const char *name, const nnNet *net) {
  hid_t g = H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (g < 0) return ds_h5_fail(TK_EIO, "checkpoint: group %s", name);
  int rc = put_f32(g, "params", net->params, net->n_params);
  if (!rc) rc = put_f32(g, "adam_m", net->adam_m, net->n_params);
  if (!rc) rc = put_f32(g, "adam_v", net->adam_v, net->n_params);
  if (!rc) rc = ds_attr_write_i64(g, "adam_t", net->adam_t);
  H5Gclose(g);
  return rc;
}

/* ---- reading a checkpoint back: every counter and size is checked against the options and the other
 * counters before it is used (a checkpoint is a file: a negative env-step count ran for ever, an all-zero
 * random stream hangs its first draw, a longer online/d overflowed the replay buffer) --------------- */

/* an integer field in lo..hi, else a one-line message naming the file and the field */
static int ck_int(const char *path, const char *field, int64_t v, int64_t lo, int64_t hi, const char *what) {
  if (v >= lo && v <= hi) return 0;
  return tk_error(TK_EFORMAT, "%s: checkpoint field '%s' = %lld is not in %lld..%lld (%s)", path, field,
                  (long long)v, (long long)lo, (long long)hi, what);
}

/* a real field in [lo, hi] (finite) */
static int ck_real(const char *path, const char *field, double v, double lo, double hi, const char *what) {
  if (isfinite(v) && v >= lo && v <= hi) return 0;
  return tk_error(TK_EFORMAT, "%s: checkpoint field '%s' = %g is not in [%g, %g] (%s)", path, field, v, lo,
                  hi, what);
}

static int ck_attr_i64(hid_t f, const char *name, int64_t *v, const char *path) {
  if (ds_attr_read_i64(f, name, v))
    return tk_error(TK_EFORMAT, "%s: checkpoint field '%s' is missing or not an integer", path, name);
  return 0;
}

static int ck_attr_f64(hid_t f, const char *name, double *v, const char *path) {
  if (ds_attr_read_f64(f, name, v))
    return tk_error(TK_EFORMAT, "%s: checkpoint field '%s' is missing or not a number", path, name);
  return 0;
}

/* Elements of dataset g/name (-1 with a message naming it if it is missing or not a simple dataset). */
static int64_t ck_npoints(hid_t g, const char *group, const char *name, const char *path) {
  hid_t d = H5Lexists(g, name, H5P_DEFAULT) > 0 ? H5Dopen2(g, name, H5P_DEFAULT) : -1;
  if (d < 0) {
    H5Eclear2(H5E_DEFAULT);
    tk_error(TK_EFORMAT, "%s: checkpoint field '%s%s' is missing", path, group, name);
    return -1;
  }
  hid_t sp = H5Dget_space(d);
  hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
  if (sp >= 0) H5Sclose(sp);
  H5Dclose(d);
  H5Eclear2(H5E_DEFAULT);
  if (np < 0) tk_error(TK_EFORMAT, "%s: checkpoint field '%s%s' is not an array", path, group, name);
  return np;
}

/* Read n floats of exactly that length, every one finite. */
static int get_f32(hid_t g, const char *group, const char *name, float *v, int64_t n, const char *path) {
  int64_t np = ck_npoints(g, group, name, path);
  if (np < 0) return TK_EFORMAT;
  if (np != n)
    return tk_error(
        TK_EFORMAT,
        "%s: checkpoint field '%s%s' has %lld values, this run needs %lld (other options than the "
        "run that wrote it?)",
        path, group, name, (long long)np, (long long)n);
  return ds_h5_read_exact(g, name, DS_F32, 1, &n, v, path, "this run");
}

/* A network's parameters, Adam moments (v >= 0) and step count (0..max_t). */
static int get_net(hid_t f, const char *name, nnNet *net, int64_t max_t, const char *path) {
  hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
  if (g < 0) return ds_h5_fail(TK_EFORMAT, "%s: group %s is missing", path, name);
  char grp[48], field[64];
  snprintf(grp, sizeof grp, "%s/", name);
  int rc = get_f32(g, grp, "params", net->params, net->n_params, path);
  if (!rc) rc = get_f32(g, grp, "adam_m", net->adam_m, net->n_params, path);
  if (!rc) rc = get_f32(g, grp, "adam_v", net->adam_v, net->n_params, path);
  for (int64_t i = 0; !rc && i < net->n_params; i++)
    if (net->adam_v[i] < 0)
      rc = tk_error(TK_EFORMAT, "%s: checkpoint field '%sadam_v' has a negative value at %lld", path, grp,
                    (long long)i);
  snprintf(field, sizeof field, "%sadam_t", grp);
  if (!rc && ds_attr_read_i64(g, "adam_t", &net->adam_t))
    rc = tk_error(TK_EFORMAT, "%s: checkpoint field '%s' is missing or not an integer", path, field);
  if (!rc) rc = ck_int(path, field, net->adam_t, 0, max_t, "Adam steps: at most the updates and warm-up");
  H5Gclose(g);
  H5Eclear2(H5E_DEFAULT);
  return rc;
}

/* Everything a run needs to go on: networks with their Adam moments, temperature, RNG streams,
 * counters, the evaluation history and the online replay buffer. Written to a temp file and renamed. */
int rl_ckpt_save(rlRun *R, const rlResult *res, int64_t next_eval, const char *path) {
  ds_h5_init();
  char tmp[4200], name[32];
  int fd = tk_temp_beside(path, tmp, sizeof tmp); /* a name of ours alone, never a user's file */
  if (fd < 0) return tk_error_wrap(fd, "%s: checkpoint not written", path);
  close(fd);
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0) {
    unlink(tmp);
    return ds_h5_fail(TK_EIO, "%s: cannot create the checkpoint", tmp);
  }
  int rc =
      ds_attr_write_str(f, "format", RL_CKPT_FORMAT) || ds_attr_write_i64(f, "version", 1) ||
              ds_attr_write_str(f, "algo", R->o->algo) || ds_attr_write_f64(f, "actor_lr", R->aopt.lr) ||
              ds_attr_write_str(f, "task", R->spec->task) ||
              ds_attr_write_i64(f, "env_steps", res->env_steps) ||
              ds_attr_write_i64(f, "updates", R->updates) || ds_attr_write_i64(f, "next_eval", next_eval) ||
              ds_attr_write_i64(f, "best_step", res->best_step) ||
              ds_attr_write_i64(f, "steps_to_target", res->steps_to_target) ||
              ds_attr_write_f64(f, "best_success", res->best_success) ||
              ds_attr_write_f64(f, "initial_success", res->initial_success) ||
              ds_attr_write_f64(f, "log_alpha", R->log_alpha) ||
              ds_attr_write_f64(f, "alpha_m", R->alpha_m) || ds_attr_write_f64(f, "alpha_v", R->alpha_v) ||
              ds_attr_write_i64(f, "alpha_t", R->alpha_t) || ds_attr_write_i64(f, "workers", R->nw)
          ? ds_h5_fail(TK_EIO, "%s: checkpoint attributes", tmp)
          : 0;
  if (!rc) rc = put_net(f, "actor", R->actor->net);
  for (int e = 0; !rc && e < R->o->ensemble; e++) {
    snprintf(name, sizeof name, "critic%d", e);
    rc = put_net(f, name, R->q[e]);
    snprintf(name, sizeof name, "target%d", e);
    if (!rc) rc = put_net(f, name, R->qt[e]);
  }
  /* RNG streams: the learner's, then each worker's, as raw bytes */
  uint8_t rng[(1 + RL_MAX_WORKERS) * sizeof(tkRng)];
  memcpy(rng, &R->rng, sizeof(tkRng));
  for (int i = 0; i < R->nw; i++)
    memcpy(rng + (1 + i) * sizeof(tkRng), &R->wk[i].rng, sizeof(tkRng));
  if (!rc) rc = ds_write_whole(f, "rng", DS_U8, 0, NULL, (int64_t)((1 + R->nw) * sizeof(tkRng)), rng, 0);
  double ev[2 * 512];
  for (int i = 0; i < res->n_evals; i++) {
    ev[2 * i] = (double)res->eval_step[i];
    ev[2 * i + 1] = res->eval_success[i];
  }
  int64_t two = 2;
  if (!rc) rc = ds_write_whole(f, "evals", DS_F64, 1, &two, res->n_evals, ev, 0);
  hid_t g = rc ? -1 : H5Gcreate2(f, "online", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  if (!rc && g < 0) rc = ds_h5_fail(TK_EIO, "%s: group online", tmp);
  const rlBuf *b = &R->online;
  if (!rc) rc = put_f32(g, "s", b->s, b->n * b->D);
  if (!rc) rc = put_f32(g, "s2", b->s2, b->n * b->D);
  if (!rc) rc = put_f32(g, "a", b->a, b->n * b->A);
  if (!rc) rc = put_f32(g, "r", b->r, b->n);
  if (!rc) rc = ds_write_whole(g, "d", DS_U8, 0, NULL, b->n, b->d, 0);
  if (g >= 0) H5Gclose(g);
  if (H5Fclose(f) < 0 && !rc) rc = ds_h5_fail(TK_EIO, "%s: close", tmp);
  if (!rc) rc = tk_durable_rename(tmp, path); /* fsyncs the file, renames, fsyncs the directory */
  if (rc) {
    remove(tmp);
    return tk_error_wrap(rc, "%s: checkpoint not written", path);
  }
  return 0;
}

int rl_ckpt_load(rlRun *R, rlResult *res, int64_t *next_eval, const char *path) {
  ds_h5_init();
  const rlOpts *o = R->o;
  if (!tk_file_exists(path)) return tk_error(TK_ENOTFOUND, "%s: no checkpoint to resume from", path);
  if (H5Fis_hdf5(path) <= 0) {
    H5Eclear2(H5E_DEFAULT);
    return tk_error(TK_EFORMAT, "%s: not a checkpoint (not an HDF5 file)", path);
  }
  hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) return ds_h5_fail(TK_EFORMAT, "%s: not a checkpoint", path);
  char *fmt = NULL, *task = NULL, name[32];
  int64_t version = 0, workers = 0, upd = 0;
  int rc = 0;
  if (ds_attr_read_str(f, "format", &fmt) || strcmp(fmt, RL_CKPT_FORMAT) ||
      ds_attr_read_i64(f, "version", &version) || version != 1)
    rc = tk_error(TK_EFORMAT, "%s: not an rl-finetune checkpoint (version 1)", path);
  char *algo = NULL;
  if (!rc && H5Aexists(f, "algo") > 0 && (ds_attr_read_str(f, "algo", &algo) || strcmp(algo, o->algo)))
    rc = tk_error(TK_EINVAL, "%s: a checkpoint of --algo %s, this run is --algo %s", path, algo ? algo : "?",
                  o->algo);
  free(algo);
  if (!rc && (ds_attr_read_str(f, "task", &task) || strcmp(task, R->spec->task)))
    rc = tk_error(TK_EINVAL, "%s: a checkpoint of task '%s', this run is on '%s'", path, task ? task : "?",
                  R->spec->task);
  /* the counters, each against the options and the others. One iteration adds nw x ranks env steps
   * (PPO: its rollout), and a run stops at the first iteration end at or past --steps. */
  const int64_t iter = (int64_t)(R->ppo ? R->pN : R->nw) * rl_mpi_size();
  const int64_t max_env = o->steps + iter;
  if (!rc) rc = ck_attr_i64(f, "env_steps", &res->env_steps, path);
  if (!rc)
    rc = ck_int(path, "env_steps", res->env_steps, 0, max_env, "this run's --steps plus one iteration");
  /* SAC: utd x workers updates per iteration of workers x ranks env steps; PPO: up to ppo_epochs passes of
   * minibatches over each rollout */
  const int64_t per_step = R->ppo ? o->ppo_epochs : o->utd;
  if (!rc) rc = ck_attr_i64(f, "updates", &upd, path);
  if (!rc) rc = ck_int(path, "updates", upd, 0, res->env_steps * per_step, "at most env_steps x --utd");
  if (!rc) rc = ck_attr_i64(f, "next_eval", next_eval, path);
  if (!rc)
    rc = ck_int(path, "next_eval", *next_eval, 1, res->env_steps + o->eval_every,
                "the next evaluation: at most env_steps plus --eval-every");
  if (!rc) rc = ck_attr_i64(f, "best_step", &res->best_step, path);
  if (!rc) rc = ck_int(path, "best_step", res->best_step, -1, res->env_steps, "-1 or an evaluated env step");
  if (!rc) rc = ck_attr_i64(f, "steps_to_target", &res->steps_to_target, path);
  if (!rc)
    rc = ck_int(path, "steps_to_target", res->steps_to_target, -1, res->env_steps,
                "-1 or an evaluated env step");
  if (!rc) rc = ck_attr_f64(f, "best_success", &res->best_success, path);
  if (!rc && res->best_success != -1)
    rc = ck_real(path, "best_success", res->best_success, 0, 1, "-1 or a success rate");
  if (!rc) rc = ck_attr_f64(f, "initial_success", &res->initial_success, path);
  if (!rc) rc = ck_real(path, "initial_success", res->initial_success, 0, 1, "a success rate");
  if (!rc) rc = ck_attr_f64(f, "log_alpha", &R->log_alpha, path);
  if (!rc) rc = ck_real(path, "log_alpha", R->log_alpha, -700, 700, "the log of a finite temperature");
  if (!rc) rc = ck_attr_f64(f, "alpha_m", &R->alpha_m, path);
  if (!rc) rc = ck_real(path, "alpha_m", R->alpha_m, -1e30, 1e30, "a finite moment");
  if (!rc) rc = ck_attr_f64(f, "alpha_v", &R->alpha_v, path);
  if (!rc) rc = ck_real(path, "alpha_v", R->alpha_v, 0, 1e30, "a finite second moment");
  if (!rc) rc = ck_attr_i64(f, "alpha_t", &R->alpha_t, path);
  if (!rc) rc = ck_int(path, "alpha_t", R->alpha_t, 0, upd, "temperature steps: at most the updates");
  if (!rc) rc = ck_attr_i64(f, "workers", &workers, path);
  if (!rc) rc = ck_int(path, "workers", workers, 1, RL_MAX_WORKERS, "workers of the run that wrote it");
  if (!rc && H5Aexists(f, "actor_lr") > 0) { /* PPO adapts it within [lr/100, 10 lr] of this run's lr */
    double lr0 = R->aopt.lr, lr = 0;
    rc = ck_attr_f64(f, "actor_lr", &lr, path);
    if (!rc)
      rc = ck_real(path, "actor_lr", lr, lr0 / 100 * (1 - 1e-9), lr0 * 10 * (1 + 1e-9),
                   "within [lr/100, 10 lr] of this run's actor lr");
    if (!rc) R->aopt.lr = lr;
  }
  H5Eclear2(H5E_DEFAULT);
  R->updates = res->updates = upd;
  /* networks: the actor and critics take at most one Adam step per update (PPO's value function up to
   * 4 ppo_epochs passes per rollout, the critics the warm-up besides); targets are never stepped */
  const int64_t max_t = upd + o->critic_warmup + (R->ppo ? 4 * (int64_t)o->ppo_epochs * res->env_steps : 0);
  if (!rc) rc = get_net(f, "actor", R->actor->net, max_t, path);
  for (int e = 0; !rc && e < o->ensemble; e++) {
    snprintf(name, sizeof name, "critic%d", e);
    rc = get_net(f, name, R->q[e], max_t, path);
    snprintf(name, sizeof name, "target%d", e);
    if (!rc) rc = get_net(f, name, R->qt[e], max_t, path);
  }
  snprintf(name, sizeof name, "critic%d", o->ensemble);
  if (!rc && H5Lexists(f, name, H5P_DEFAULT) > 0)
    rc = tk_error(TK_EINVAL, "%s: written with a larger --ensemble than %d", path, o->ensemble);
  H5Eclear2(H5E_DEFAULT);
  /* RNG streams (workers beyond the saved ones keep their fresh streams); an all-zero xoshiro state
   * draws zeros for ever (and tk_rng_below never returns) */
  uint8_t rng[(1 + RL_MAX_WORKERS) * sizeof(tkRng)];
  if (!rc) {
    int64_t np = ck_npoints(f, "", "rng", path);
    if (np < 0) rc = TK_EFORMAT;
    if (!rc)
      rc = ck_int(path, "rng", np, (1 + workers) * (int64_t)sizeof(tkRng),
                  (1 + workers) * (int64_t)sizeof(tkRng), "bytes: one state per worker and the learner's");
    if (!rc) rc = ds_h5_read_exact(f, "rng", DS_U8, 1, &np, rng, path, "this run");
    for (int64_t i = 0; !rc && i <= workers; i++) {
      tkRng z;
      memcpy(&z, rng + i * (int64_t)sizeof(tkRng), sizeof z);
      if (!(z.s[0] | z.s[1] | z.s[2] | z.s[3]))
        rc = tk_error(TK_EFORMAT, "%s: checkpoint field 'rng' holds an all-zero state (stream %lld)", path,
                      (long long)i);
    }
  }
  if (!rc) {
    memcpy(&R->rng, rng, sizeof(tkRng));
    for (int i = 0; i < R->nw && i < workers; i++)
      memcpy(&R->wk[i].rng, rng + (1 + i) * sizeof(tkRng), sizeof(tkRng));
  }
  /* evaluation history: [n, 2] rows (env step, success rate), steps in order up to env_steps */
  if (!rc && H5Lexists(f, "evals", H5P_DEFAULT) > 0) {
    double ev[2 * 512];
    int64_t np = ck_npoints(f, "", "evals", path);
    if (np < 0) rc = TK_EFORMAT;
    if (!rc && (np % 2 || np > 2 * 512))
      rc = tk_error(TK_EFORMAT,
                    "%s: checkpoint field 'evals' has %lld values, not 2 per evaluation (at most 512)", path,
                    (long long)np);
    int64_t shape[2] = {np / 2, 2};
    if (!rc) rc = ds_h5_read_exact(f, "evals", DS_F64, 2, shape, ev, path, "this run");
    for (int i = 0; !rc && i < np / 2; i++) {
      double st = ev[2 * i], lo = i ? ev[2 * i - 2] : 0;
      if (!(st >= lo && st <= (double)res->env_steps && st == floor(st)))
        rc = tk_error(TK_EFORMAT, "%s: checkpoint field 'evals' row %d: env step %g is not in %g..%lld", path,
                      i, st, lo, (long long)res->env_steps);
      else if (!(ev[2 * i + 1] >= 0 && ev[2 * i + 1] <= 1))
        rc = tk_error(TK_EFORMAT, "%s: checkpoint field 'evals' row %d: success rate %g is not in [0, 1]",
                      path, i, ev[2 * i + 1]);
      else {
        res->eval_step[i] = (int64_t)st;
        res->eval_success[i] = ev[2 * i + 1];
      }
    }
    if (!rc) res->n_evals = (int)(np / 2);
  }
  H5Eclear2(H5E_DEFAULT);
  /* the online buffer: n transitions, n within the buffer and the env steps, every array n long */
  hid_t g = rc ? -1 : H5Gopen2(f, "online", H5P_DEFAULT);
  if (!rc && g < 0) rc = ds_h5_fail(TK_EFORMAT, "%s: online is missing", path);
  if (g >= 0) {
    rlBuf *b = &R->online;
    int64_t n = ck_npoints(g, "online/", "r", path);
    if (n < 0) rc = TK_EFORMAT;
    if (!rc)
      rc = ck_int(path, "online/r", n, 0, TK_MIN(b->cap, R->ppo ? 0 : res->env_steps),
                  "transitions: at most this run's replay buffer and the env steps");
    if (!rc) rc = get_f32(g, "online/", "s", b->s, n * b->D, path);
    if (!rc) rc = get_f32(g, "online/", "s2", b->s2, n * b->D, path);
    if (!rc) rc = get_f32(g, "online/", "a", b->a, n * b->A, path);
    if (!rc) rc = get_f32(g, "online/", "r", b->r, n, path);
    if (!rc) {
      int64_t nd = ck_npoints(g, "online/", "d", path);
      if (nd < 0) rc = TK_EFORMAT;
      if (!rc) rc = ck_int(path, "online/d", nd, n, n, "values: one per transition");
      if (!rc) rc = ds_h5_read_exact(g, "d", DS_U8, 1, &n, b->d, path, "this run");
    }
    if (!rc) b->n = n;
    H5Gclose(g);
  }
  H5Eclear2(H5E_DEFAULT);
  H5Fclose(f);
  free(fmt);
  free(task);
  return rc;
}
