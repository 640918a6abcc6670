/* bc-train and bc-eval end to end: the real binaries on recordings made by teleop's scripted operator
 * and on a robomimic-layout file written by h5py, as a user runs them. Small networks, few epochs and
 * few rollouts keep the suite short. */
#include <cjson/cJSON.h>
#include <criterion/criterion.h>
#include <math.h>
#include <stdarg.h>
#include <sys/stat.h>

#include "bc.h"
#include "ds.h"
#include "tk.h"
#include "tt.h"
#include "tt_cli.h"

static const char *train_bin(void) { return tt_build("bc/bc-train"); }
static const char *eval_bin(void) { return tt_build("bc/bc-eval"); }
static const char *dataset_bin(void) { return tt_build("dataset/dataset"); }
static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

/* ---- helpers ----------------------------------------------------------------------------------- */
TestSuite(bc_cli, .fini = tt_pool_free);

/* A robomimic-layout file written by h5py (tests/bc/make_robomimic.py) */
static void make_robomimic(const char *path, const char *args) {
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s %s", py(), tt_src("tests/bc/make_robomimic.py"), path, args);
  keep(out);
  cr_assert_eq(rc, 0, "make_robomimic.py: %s", out);
}

static void train_ok(const char *dir, const char *args) {
  char *out, *err;
  int rc = run2(dir, &out, &err, "%s %s", train_bin(), args);
  cr_assert_eq(rc, 0, "bc-train %s -> exit %d\nstdout: %s\nstderr: %s", args, rc, out, err);
}

/* The metrics CSV, read by column name. */
#define CSV_MAX 512
typedef struct {
  int n;
  int epoch[CSV_MAX];
  long long step[CSV_MAX];
  double train[CSV_MAX], valid[CSV_MAX], succ[CSV_MAX];
} csvRows;

static void csv_load(const char *path, csvRows *c) {
  memset(c, 0, sizeof *c);
  char *text = slurp(path, NULL);
  cr_assert(text, "%s is missing", path);
  char *save = NULL, *line = strtok_r(text, "\n", &save);
  cr_assert(line, "%s is empty", path);
  int col_epoch = -1, col_step = -1, col_train = -1, col_valid = -1, col_succ = -1, ncols = 0;
  {
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "%s", line);
    char *s2 = NULL;
    for (char *t = strtok_r(hdr, ",", &s2); t; t = strtok_r(NULL, ",", &s2), ncols++) {
      if (!strcmp(t, "epoch")) col_epoch = ncols;
      if (!strcmp(t, "step")) col_step = ncols;
      if (!strcmp(t, "train_loss")) col_train = ncols;
      if (!strcmp(t, "valid_loss")) col_valid = ncols;
      if (!strcmp(t, "success_rate")) col_succ = ncols;
    }
  }
  cr_assert(col_epoch >= 0 && col_step >= 0 && col_train >= 0 && col_valid >= 0 && col_succ >= 0,
            "%s: header '%s' lacks a column", path, line);
  while ((line = strtok_r(NULL, "\n", &save))) {
    cr_assert_lt(c->n, CSV_MAX);
    int k = 0;
    const char *p = line;
    while (1) {
      char *end;
      double v = strtod(p, &end);
      cr_assert(end != p, "%s: row %d column %d is not a number: '%s'", path, c->n + 1, k, line);
      if (k == col_epoch) c->epoch[c->n] = (int)v;
      if (k == col_step) c->step[c->n] = (long long)v;
      if (k == col_train) c->train[c->n] = v;
      if (k == col_valid) c->valid[c->n] = v;
      if (k == col_succ) c->succ[c->n] = v;
      k++;
      if (*end != ',') {
        cr_assert(*end == 0 || *end == '\r', "%s: stray text in '%s'", path, line);
        break;
      }
      p = end + 1;
    }
    cr_assert_eq(k, ncols, "%s: row '%s' has %d fields, the header %d", path, line, k, ncols);
    c->n++;
  }
}

/* The epoch bc-train must have kept: the maximal success rate, ties to the later epoch. */
static int best_epoch_of(const csvRows *c, double *best) {
  int ep = 0;
  *best = -1;
  for (int i = 0; i < c->n; i++)
    if (!isnan(c->succ[i]) && c->succ[i] >= *best) {
      *best = c->succ[i];
      ep = c->epoch[i];
    }
  return ep;
}

static bcPolicy *load_policy(const char *path) {
  bcPolicy *p = bc_policy_load(path);
  cr_assert(p, "bc_policy_load: %s", tk_errmsg());
  return p;
}

static double info_num(const bcPolicy *p, const char *key) {
  cJSON *j = cJSON_Parse(p->info);
  cr_assert(j, "info is not JSON: %s", p->info);
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, key);
  cr_assert(cJSON_IsNumber(v), "info has no number '%s': %s", key, p->info);
  double x = v->valuedouble;
  cJSON_Delete(j);
  return x;
}

/* ---- train, then evaluate ---------------------------------------------------------------------- */
Test(bc_cli, train_then_eval_end_to_end, .timeout = 300) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], roll[4200], path[4300];
  snprintf(data, sizeof data, "%s/lift20.h5", d);
  snprintf(pol, sizeof pol, "%s/pol.h5", d);
  snprintf(roll, sizeof roll, "%s/rollouts.h5", d);
  tt_record(data, "lift", 20, 0.3, 0, NULL);

  char *out, *err;
  int rc = run2(d, &out, &err,
                "%s %s -o %s --hidden 64,64 --epochs 8 --eval-every 4 --eval-episodes 4 --threads 2 --seed 3",
                train_bin(), data, pol);
  cr_assert_eq(rc, 0, "bc-train -> %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert(strstr(out, "saved") && strstr(out, pol), "stdout names the saved policy: %s", out);

  /* the CSV: a header and one row per epoch */
  snprintf(path, sizeof path, "%s/pol.csv", d);
  csvRows c;
  csv_load(path, &c);
  cr_assert_eq(c.n, 8, "one row per epoch");
  for (int i = 0; i < c.n; i++) {
    cr_assert_eq(c.epoch[i], i + 1);
    cr_assert(i == 0 ? c.step[i] > 0 : c.step[i] > c.step[i - 1], "steps grow: row %d", i + 1);
    cr_assert(isfinite(c.train[i]) && isfinite(c.valid[i]), "epoch %d: losses %g %g", i + 1, c.train[i],
              c.valid[i]);
    int evaluated = (i + 1) % 4 == 0;
    if (evaluated)
      cr_assert(c.succ[i] >= 0 && c.succ[i] <= 1, "epoch %d: success_rate %g", i + 1, c.succ[i]);
    else
      cr_assert(isnan(c.succ[i]), "epoch %d has no rollouts but success_rate %g", i + 1, c.succ[i]);
  }
  snprintf(path, sizeof path, "%s/pol_loss.png", d);
  png_ok(path);
  snprintf(path, sizeof path, "%s/pol_success.png", d);
  png_ok(path);

  bcPolicy *p = load_policy(pol);
  cr_assert_str_eq(p->task, "lift");
  cr_assert_str_eq(p->algo, "bc");
  cr_assert_eq(p->arch.n_hidden, 2);
  cr_assert_eq(p->arch.hidden[0], 64);
  cr_assert_eq(p->arch.hidden[1], 64);
  cr_assert_float_eq(p->control_hz, 20.0, 1e-9);
  bc_policy_free(p);

  /* bc-eval: JSON on stdout (the whole of it), rollouts saved as a dataset */
  rc = run2(d, &out, &err, "%s %s --episodes 6 --workers 2 --json --save %s", eval_bin(), pol, roll);
  cr_assert_eq(rc, 0, "bc-eval -> %d\nstdout: %s\nstderr: %s", rc, out, err);
  const char *end = NULL;
  cJSON *j = cJSON_ParseWithOpts(out, &end, 1);
  cr_assert(j && cJSON_IsObject(j), "bc-eval --json stdout is not one JSON object: '%s'", out);
  const cJSON *sr = cJSON_GetObjectItemCaseSensitive(j, "success_rate");
  const cJSON *ne = cJSON_GetObjectItemCaseSensitive(j, "episodes");
  const cJSON *ns = cJSON_GetObjectItemCaseSensitive(j, "successes");
  cr_assert(cJSON_IsNumber(sr) && sr->valuedouble >= 0 && sr->valuedouble <= 1, "%s", out);
  cr_assert(cJSON_IsNumber(ne) && ne->valueint == 6, "%s", out);
  cr_assert(cJSON_IsNumber(ns) && fabs(ns->valuedouble / 6 - sr->valuedouble) < 1e-3, "%s", out);
  int successes = ns->valueint;
  printf("bc-eval: %s", out);
  cJSON_Delete(j);

  char *vout = NULL;
  rc = tt_run(&vout, "%s validate %s", dataset_bin(), roll);
  keep(vout);
  cr_assert_eq(rc, 0, "dataset validate: %s", vout);
  dsFile *f;
  cr_assert_eq(ds_open(roll, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(f), 6);
  int flagged = 0;
  uint64_t seen = 0;
  for (int i = 0; i < ds_num_demos(f); i++) {
    const dsDemoInfo *di = ds_demo(f, i);
    cr_assert_str_eq(di->device, "policy");
    cr_assert_str_eq(di->task, "lift");
    cr_assert(di->num_samples > 0);
    flagged += di->success == 1;
    int64_t k = di->seed - (int64_t)BC_EVAL_SEED_BASE;
    cr_assert(k >= 0 && k < 6, "demo %d seed %lld is not a held-out seed", i, (long long)di->seed);
    seen |= 1ull << k;
  }
  cr_assert_eq(seen, 0x3full, "every held-out seed once");
  cr_assert_eq(flagged, successes, "the file's success flags match the reported successes");
  ds_close(f);
}

/* ---- determinism -------------------------------------------------------------------------------- */
static void same_policy(const char *a, const char *b, int want_same) {
  bcPolicy *p = load_policy(a), *q = load_policy(b);
  cr_assert_eq(p->net->n_params, q->net->n_params);
  int same_w = !memcmp(p->net->params, q->net->params, sizeof(float) * (size_t)p->net->n_params);
  int same_n = !memcmp(p->obs_mean, q->obs_mean, sizeof(float) * (size_t)(2 * p->obs_dim)) &&
               !memcmp(p->act_offset, q->act_offset, sizeof(float) * (size_t)(2 * p->act_dim));
  if (want_same) {
    cr_assert(same_w, "%s and %s: weights differ", a, b);
    cr_assert(same_n, "%s and %s: normalization differs", a, b);
  } else {
    cr_assert(!same_w, "%s and %s: a different seed gave the same weights", a, b);
  }
  bc_policy_free(p);
  bc_policy_free(q);
}

Test(bc_cli, same_seed_same_weights, .timeout = 300) {
  const char *d = tt_tmpdir();
  char data[4200], args[8192], pa[4200], pb[4200], pc[4200], pd[4200], pe[4200];
  snprintf(data, sizeof data, "%s/lift.h5", d);
  tt_record(data, "lift", 10, 0.3, 5, NULL);
  snprintf(pa, sizeof pa, "%s/a.h5", d);
  snprintf(pb, sizeof pb, "%s/b.h5", d);
  snprintf(pc, sizeof pc, "%s/c.h5", d);
  snprintf(pd, sizeof pd, "%s/d.h5", d);
  snprintf(pe, sizeof pe, "%s/e.h5", d);
  const char *common = "--hidden 64,64 --head gmm --epochs 4 --batch 32 --lr 1e-3 --eval-every 0 --quiet";
  snprintf(args, sizeof args, "%s -o %s %s --seed 7 --threads 1", data, pa, common);
  train_ok(d, args);
  snprintf(args, sizeof args, "%s -o %s %s --seed 7 --threads 1", data, pb, common);
  train_ok(d, args);
  snprintf(args, sizeof args, "%s -o %s %s --seed 8 --threads 1", data, pc, common);
  train_ok(d, args);
  /* 2 threads, and the epoch chosen by rollouts (2 workers) on top */
  snprintf(args, sizeof args, "%s -o %s %s --seed 7 --threads 2 --eval-every 2 --eval-episodes 2", data, pd,
           common);
  train_ok(d, args);
  snprintf(args, sizeof args, "%s -o %s %s --seed 7 --threads 2 --eval-every 2 --eval-episodes 2", data, pe,
           common);
  train_ok(d, args);
  same_policy(pa, pb, 1);
  same_policy(pa, pc, 0);
  same_policy(pd, pe, 1);
  /* and through h5py: the /weights datasets themselves are equal */
  char *out = NULL;
  int rc = tt_run(&out,
                  "%s -c \"import h5py,sys,numpy as np; a=h5py.File(sys.argv[1],'r')['weights']; "
                  "b=h5py.File(sys.argv[2],'r')['weights']; assert sorted(a)==sorted(b); "
                  "assert all(np.array_equal(a[k][()],b[k][()]) for k in a), 'differ'; print(len(a))\" %s %s",
                  py(), pa, pb);
  keep(out);
  cr_assert_eq(rc, 0, "h5py: %s", out);
}

/* ---- the kept epoch is the best by rollout success ------------------------------------------------ */
Test(bc_cli, best_epoch_by_rollout_success, .timeout = 300) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], path[4300], args[8192];
  snprintf(data, sizeof data, "%s/lift20.h5", d);
  snprintf(pol, sizeof pol, "%s/best.h5", d);
  tt_record(data, "lift", 20, 0.3, 0, NULL);
  /* a setting that learns something in a few seconds, so success varies over the epochs */
  snprintf(
      args, sizeof args,
      "%s -o %s --head mse --hidden 64,64 --lr 1e-3 --epochs 30 --eval-every 3 --eval-episodes 6 --threads 2 "
      "--quiet",
      data, pol);
  train_ok(d, args);
  snprintf(path, sizeof path, "%s/best.csv", d);
  csvRows c;
  csv_load(path, &c);
  cr_assert_eq(c.n, 30);
  printf("success by epoch:");
  for (int i = 0; i < c.n; i++) {
    int evaluated = c.epoch[i] % 3 == 0 || c.epoch[i] == 30;
    cr_assert_eq(!isnan(c.succ[i]), evaluated, "epoch %d success_rate %g", c.epoch[i], c.succ[i]);
    if (evaluated) printf(" %d:%.3g", c.epoch[i], c.succ[i]);
  }
  printf("\n");
  double best;
  int want = best_epoch_of(&c, &best);
  bcPolicy *p = load_policy(pol);
  int got = (int)info_num(p, "epoch");
  cr_assert_eq(got, want,
               "saved epoch %d, but the CSV's best success %.3g is last reached at epoch %d (info %s)", got,
               best, want, p->info);
  cr_assert_float_eq(info_num(p, "selection_success"), best, 1e-3);
  bc_policy_free(p);
  /* the file holds that epoch's weights: the selection rollouts give the same success again */
  char *out, *err;
  int rc = run2(d, &out, &err, "%s %s --episodes 6 --seed %llu --workers 2 --json --quiet", eval_bin(), pol,
                (unsigned long long)BC_SELECT_SEED_BASE);
  cr_assert_eq(rc, 0, "%s %s", out, err);
  cJSON *j = cJSON_Parse(out);
  cr_assert(j, "%s", out);
  const cJSON *sr = cJSON_GetObjectItemCaseSensitive(j, "success_rate");
  cr_assert(cJSON_IsNumber(sr));
  cr_assert_float_eq(sr->valuedouble, best, 1e-3, "re-running the selection seeds on the saved policy: %s",
                     out);
  cJSON_Delete(j);
}

/* ---- options --------------------------------------------------------------------------------------- */
Test(bc_cli, obs_keys_missing_key, .timeout = 120) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200];
  snprintf(data, sizeof data, "%s/lift.h5", d);
  snprintf(pol, sizeof pol, "%s/k.h5", d);
  tt_record(data, "lift", 4, 0.3, 0, NULL);
  char *out, *err;
  int rc = run2(d, &out, &err, "%s %s -o %s --obs-keys object,robot0_nope --epochs 1 --quiet", train_bin(),
                data, pol);
  cr_assert_eq(rc, 1, "exit %d: %s %s", rc, out, err);
  cr_assert_eq(count_lines(err), 1, "one line: '%s'", err);
  cr_assert(strstr(err, "robot0_nope") && strstr(err, data), "names the key and the file: %s", err);
  cr_assert(strstr(err, "robot0_eef_pos") && strstr(err, "object") && strstr(err, "robot0_joint_vel"),
            "lists the keys the file has: %s", err);
  cr_assert_eq(file_size(pol), -1, "no policy written");
  /* the keys that are there are used, in the given order */
  char args[8192];
  snprintf(args, sizeof args,
           "%s -o %s --obs-keys robot0_joint_pos,object --hidden 16 --epochs 1 --eval-every 0 --quiet", data,
           pol);
  train_ok(d, args);
  bcPolicy *p = load_policy(pol);
  cr_assert_eq(p->nkeys, 2);
  cr_assert_str_eq(p->keys[0], "robot0_joint_pos");
  cr_assert_str_eq(p->keys[1], "object");
  cr_assert_eq(p->key_dim[0], 7);
  cr_assert_eq(p->obs_dim, p->key_dim[0] + p->key_dim[1]);
  bc_policy_free(p);
}

static void write_text(const char *path, const char *text) {
  FILE *f = fopen(path, "w");
  cr_assert(f, "%s", path);
  fputs(text, f);
  fclose(f);
}

Test(bc_cli, config_file, .timeout = 120) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], cfg[4200], bad[4200], csv[4300];
  snprintf(data, sizeof data, "%s/lift.h5", d);
  snprintf(pol, sizeof pol, "%s/cfg.h5", d);
  snprintf(cfg, sizeof cfg, "%s/opts.json", d);
  snprintf(bad, sizeof bad, "%s/typo.json", d);
  snprintf(csv, sizeof csv, "%s/cfg.csv", d);
  tt_record(data, "lift", 6, 0.3, 0, NULL);
  write_text(cfg, "{\"epochs\": 2, \"hidden\": [32], \"head\": \"mse\", \"eval_every\": 0, \"quiet\": true,\n"
                  " \"obs_keys\": [\"object\", \"robot0_eef_pos\"], \"lr\": 0.001, \"layer_norm\": true}\n");
  char args[8192];
  csvRows c;
  snprintf(args, sizeof args, "%s -o %s --config %s", data, pol, cfg);
  train_ok(d, args);
  csv_load(csv, &c);
  cr_assert_eq(c.n, 2, "epochs 2 from the config");
  bcPolicy *p = load_policy(pol);
  cr_assert_eq(p->arch.n_hidden, 1);
  cr_assert_eq(p->arch.hidden[0], 32);
  cr_assert_eq(p->arch.head, NN_HEAD_MSE);
  cr_assert(p->arch.layer_norm);
  cr_assert_eq(p->nkeys, 2);
  cr_assert_str_eq(p->keys[1], "robot0_eef_pos");
  cr_assert_float_eq(info_num(p, "lr"), 1e-3, 1e-12);
  bc_policy_free(p);

  /* flags override the config (after it, and before it too) */
  snprintf(args, sizeof args, "%s -o %s --config %s --epochs 3 --hidden 16,16", data, pol, cfg);
  train_ok(d, args);
  csv_load(csv, &c);
  cr_assert_eq(c.n, 3, "--epochs 3 after --config wins");
  p = load_policy(pol);
  cr_assert_eq(p->arch.n_hidden, 2);
  cr_assert_eq(p->arch.hidden[1], 16);
  bc_policy_free(p);
  snprintf(args, sizeof args, "%s --epochs 4 -o %s --config %s", data, pol, cfg);
  train_ok(d, args);
  csv_load(csv, &c);
  cr_assert_eq(c.n, 4, "a flag before --config wins too (help: flags override it)");

  /* an unknown key names the file and the key */
  write_text(bad, "{\"epochs\": 2, \"hiden\": [32]}");
  char *out, *err;
  int rc = run2(d, &out, &err, "%s %s -o %s/x.h5 --config %s", train_bin(), data, d, bad);
  cr_assert_eq(rc, 1, "exit %d: %s %s", rc, out, err);
  cr_assert_eq(count_lines(err), 1, "one line: '%s'", err);
  cr_assert(strstr(err, bad) && strstr(err, "hiden"), "names the file and the key: %s", err);
  /* and so do a value of the wrong kind and broken JSON */
  write_text(bad, "{\"epochs\": {\"n\": 2}}");
  rc = run2(d, &out, &err, "%s %s -o %s/x.h5 --config %s", train_bin(), data, d, bad);
  cr_assert_eq(rc, 1, "exit %d: %s %s", rc, out, err);
  cr_assert(strstr(err, bad) && strstr(err, "epochs"), "%s", err);
  write_text(bad, "{\"epochs\": 2,");
  rc = run2(d, &out, &err, "%s %s -o %s/x.h5 --config %s", train_bin(), data, d, bad);
  cr_assert_eq(rc, 1, "exit %d: %s %s", rc, out, err);
  cr_assert(strstr(err, bad), "%s", err);

  /* the strict reader: every key of the option table, every value of its type and range, the top level
   * an object; one line naming the file and the key (these were read as strings, cut or ignored) */
  const char *refused[][2] = {
      {"{\"epochs\": 2.5}", "\"epochs\""},
      {"{\"epochs\": \"2\"}", "\"epochs\""},
      {"{\"seed\": 1e30}", "\"seed\""},
      {"{\"lr\": \"nan\"}", "\"lr\""},
      {"{\"quiet\": 1}", "\"quiet\""},
      {"{\"quiet\": \"yes\"}", "\"quiet\""},
      {"{\"hidden\": [16, \"x\"]}", "hidden[1]"},
      {"{\"hidden\": [16, 2.5]}", "hidden[1]"},
      {"{\"hidden\": [16, 1e30]}", "hidden[1]"},
      {"{\"hidden\": [16, 100000]}", "--hidden"},
      {"{\"obs_keys\": [\"object\", 3]}", "obs_keys[1]"},
      {"{\"obs_keys\": [\"object,robot0_eef_pos\"]}", "obs_keys"},
      {"{\"obs_keys\": []}", "--obs-keys"},
      {"{\"out\": 3}", "\"out\""},
      {"{\"eval-every\": 0}", "\"eval-every\""},
      {"{\"epochs\": 2, \"epochs\": 3}", "twice"},
      {"[{\"epochs\": 2}]", "object"},
      {"{\"dataset\": \"other.h5\"}", "\"dataset\""},
  };
  for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
    write_text(bad, refused[i][0]);
    rc = run2(d, &out, &err, "%s %s -o %s/x.h5 --config %s", train_bin(), data, d, bad);
    cr_expect_eq(rc, 1, "%s: exit %d: %s %s", refused[i][0], rc, out, err);
    cr_expect_eq(count_lines(err), 1, "one line: '%s'", err);
    cr_expect(strstr(err, bad) && strstr(err, refused[i][1]), "%s: names the file and '%s': %s",
              refused[i][0], refused[i][1], err);
  }
  char x[4300];
  snprintf(x, sizeof x, "%s/x.h5", d);
  cr_expect_eq(file_size(x), -1, "no policy from a refused config");

  /* past the 8 MiB limit: refused before it is read */
  FILE *f = fopen(bad, "w");
  cr_assert(f);
  fputs("{\"out\": \"", f);
  for (int i = 0; i < 9 * 1024; i++)
    fprintf(f, "%01024d", 0);
  fputs("\"}", f);
  fclose(f);
  double t0 = tk_now_s();
  rc = run2(d, &out, &err, "%s %s -o %s/x.h5 --config %s", train_bin(), data, d, bad);
  cr_expect_eq(rc, 1, "exit %d: %s", rc, err);
  cr_expect(strstr(err, bad) && strstr(err, "larger than"), "%s", err);
  cr_expect_lt(tk_now_s() - t0, 5.0, "refused quickly");

  /* a 2000-byte "out" (it went through a 1024-byte buffer: the policy was written to a cut path) */
  char longdir[2200], longout[2300];
  int n = snprintf(longdir, sizeof longdir, "%s", d);
  while (n < 1800) { /* components of 100 bytes (a name is at most 255) */
    n += snprintf(longdir + n, sizeof longdir - (size_t)n, "/%0100d", 0);
    mkdir(longdir, 0755);
  }
  snprintf(longout, sizeof longout, "%s/%0*d.h5", longdir, 2000 - n - 4, 0);
  cr_assert_eq(strlen(longout), 2000);
  char *cfgtext = malloc(4096);
  snprintf(cfgtext, 4096,
           "{\"out\": \"%s\", \"epochs\": 1, \"eval_every\": 0, \"quiet\": true, \"hidden\": [8]}", longout);
  write_text(cfg, keep(cfgtext));
  snprintf(args, sizeof args, "%s --config %s", data, cfg);
  train_ok(d, args);
  p = load_policy(longout);
  cr_assert_eq(p->arch.hidden[0], 8, "the policy is at the 2000-byte path");
  bc_policy_free(p);
}

/* Every numeric option of bc-train and bc-eval through tk_opt_int / tk_opt_f64, and DK_OPEN_TIMEOUT
 * through tk_env_f64: exit 2 with one line naming the option and the value, before any file is read. */
Test(bc_cli, numeric_options_are_whole_finite_and_in_range, .timeout = 60) {
  const char *d = tt_tmpdir();
  const char *bad[][2] = {{"--epochs", "2.5"},       {"--epochs", "nan"},       {"--seed", "1e30"},
                          {"--seed", "-1"},          {"--batch", "1e30"},       {"--lr", "nan"},
                          {"--lr", "inf"},           {"--threads", "2.5"},      {"--valid-frac", "nan"},
                          {"--hidden", "16,2.5"},    {"--hidden", "16,,16"},    {"--hidden", "1e30"},
                          {"--eval-every", "1e300"}, {"--gmm-modes", "0x1p2x"}, {"--rnn-horizon", " 5"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *out, *err;
    int rc = run2(d, &out, &err, "%s %s/none.h5 -o %s/p.h5 %s '%s'", train_bin(), d, d, bad[i][0], bad[i][1]);
    cr_expect_eq(rc, 2, "bc-train %s %s: exit %d: %s", bad[i][0], bad[i][1], rc, err);
    cr_expect_eq(count_lines(err), 1, "one line: '%s'", err);
    cr_expect(strstr(err, bad[i][0]) && strstr(err, bad[i][1]), "names the option and the value: %s", err);
  }
  const char *ebad[][2] = {
      {"--episodes", "2.5"}, {"--seed", "1e30"}, {"--workers", "nan"}, {"--horizon", "-1"}};
  for (size_t i = 0; i < sizeof ebad / sizeof *ebad; i++) {
    char *out, *err;
    int rc = run2(d, &out, &err, "%s %s/none.h5 %s '%s'", eval_bin(), d, ebad[i][0], ebad[i][1]);
    cr_expect_eq(rc, 2, "bc-eval %s %s: exit %d: %s", ebad[i][0], ebad[i][1], rc, err);
    cr_expect_eq(count_lines(err), 1, "one line: '%s'", err);
    cr_expect(strstr(err, ebad[i][0]) && strstr(err, ebad[i][1]), "%s", err);
  }
  char *out, *err;
  int rc = run2(d, &out, &err, "DK_OPEN_TIMEOUT=abc %s %s/none.h5 -o %s/p.h5", train_bin(), d, d);
  cr_expect_eq(rc, 2, "exit %d: %s", rc, err);
  cr_expect(strstr(err, "DK_OPEN_TIMEOUT=abc"), "%s", err);
  rc = run2(d, &out, &err, "TK_LOG=chatty %s %s/none.h5", eval_bin(), d);
  cr_expect_eq(rc, 2, "exit %d: %s", rc, err);
  cr_expect(strstr(err, "TK_LOG=chatty"), "%s", err);
}

/* ---- another tool's file ------------------------------------------------------------------------- */
Test(bc_cli, robomimic_file_from_h5py, .timeout = 120) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], csv[4300];
  snprintf(data, sizeof data, "%s/robomimic_lift.h5", d);
  snprintf(pol, sizeof pol, "%s/rm.h5", d);
  snprintf(csv, sizeof csv, "%s/rm.csv", d);
  make_robomimic(data, "--demos 12 --steps 40 --env Lift");
  char *out, *err;
  int rc = run2(d, &out, &err, "%s %s -o %s --hidden 64,64 --epochs 3 --eval-every 1 --threads 2",
                train_bin(), data, pol);
  cr_assert_eq(rc, 0, "exit %d\nstdout: %s\nstderr: %s", rc, out, err);
  cr_assert(strstr(err, "no rollouts") || strstr(out, "no rollouts"), "says there are no rollouts: %s %s",
            out, err);
  cr_assert(strstr(err, "Lift") || strstr(out, "Lift"), "names the foreign env: %s %s", out, err);
  csvRows c;
  csv_load(csv, &c);
  cr_assert_eq(c.n, 3);
  for (int i = 0; i < c.n; i++) {
    cr_assert(isfinite(c.train[i]) && isfinite(c.valid[i]));
    cr_assert(isnan(c.succ[i]), "no rollouts, no success rate: epoch %d %g", c.epoch[i], c.succ[i]);
  }
  bcPolicy *p = load_policy(pol);
  cr_assert_str_eq(p->task, "Lift");
  cr_assert_eq(p->act_dim, 7);
  cr_assert_eq(p->nkeys, 4, "robomimic's low-dim keys by default");
  cr_assert_str_eq(p->keys[0], "object");
  cr_assert_str_eq(p->keys[3], "robot0_gripper_qpos");
  /* actions already in [-1, 1] are left as they are */
  for (int i = 0; i < p->act_dim; i++) {
    cr_assert_eq(p->act_offset[i], 0.0f);
    cr_assert_eq(p->act_scale[i], 1.0f);
  }
  cr_assert_eq((int)info_num(p, "epoch"), 3, "the last epoch without rollouts");
  cr_assert_eq((int)info_num(p, "valid_demos"), 1, "the file's mask/valid");
  cr_assert_eq((int)info_num(p, "train_demos"), 11);
  bc_policy_free(p);
  /* bc-eval cannot guess a task for it */
  rc = run2(d, &out, &err, "%s %s --episodes 1 --quiet", eval_bin(), pol);
  cr_assert_eq(rc, 1, "exit %d: %s %s", rc, out, err);
  cr_assert(strstr(err, pol) && count_lines(err) == 1, "%s", err);
}

/* ---- a diverging run ---------------------------------------------------------------------------- */
/* lr 10 on a deep ReLU tanh-Gaussian: every Adam step moves every weight by about lr, so after a few
 * steps the pre-squash mean overflows and the loss is not finite. One step per epoch (batch larger than
 * the training set) and rollouts every epoch, so a policy has been saved before it blows up. */
static void diverge(const char *d, const char *data, const char *pol, const char *extra, int *nan_epoch,
                    long long *nan_step, long long *nan_batch) {
  char *out, *err;
  int rc = run2(d, &out, &err,
                "%s %s -o %s --head gaussian --hidden 256,256,256,256,256,256 --lr 10 --epochs 12 "
                "--threads 2 --quiet %s",
                train_bin(), data, pol, extra);
  cr_assert_eq(rc, 1, "a diverged run exits 1, got %d\nstdout: %s\nstderr: %s", rc, out, err);
  const char *at = strstr(err, "at epoch ");
  cr_assert(at, "stderr names the epoch: %s", err);
  cr_assert_eq(sscanf(at, "at epoch %d, step %lld (batch %lld", nan_epoch, nan_step, nan_batch), 3,
               "stderr names the epoch, step and batch: %s", err);
  cr_assert(strstr(err, "loss") && strstr(err, pol), "%s", err);
  cr_assert_eq(count_lines(err), 1, "one line: '%s'", err);
}

Test(bc_cli, nan_loss_stops_and_keeps_last_good, .timeout = 300) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], csv[4300];
  snprintf(data, sizeof data, "%s/lift.h5", d);
  snprintf(pol, sizeof pol, "%s/nan.h5", d);
  snprintf(csv, sizeof csv, "%s/nan.csv", d);
  tt_record(data, "lift", 10, 0.3, 0, NULL);

  int ep;
  long long step, batch;
  diverge(d, data, pol, "--batch 4096 --eval-every 1 --eval-episodes 1", &ep, &step, &batch);
  printf("diverged at epoch %d, step %lld, batch %lld\n", ep, step, batch);
  cr_assert(ep >= 2 && ep <= 12, "epoch %d (one step per epoch: a couple of epochs run first)", ep);
  cr_assert_eq(batch, 1, "one batch per epoch");
  cr_assert_eq(step, ep, "one step per epoch");
  csvRows c;
  csv_load(csv, &c);
  cr_assert_eq(c.n, ep - 1, "the completed epochs are in the CSV");
  double best;
  int want = best_epoch_of(&c, &best);
  bcPolicy *p = load_policy(pol); /* loads: weights finite */
  int got = (int)info_num(p, "epoch");
  cr_assert(got >= 1 && got < ep, "the kept policy is from epoch %d, before the divergence at %d", got, ep);
  cr_assert_eq(got, want, "the best evaluated epoch before the divergence");
  bc_policy_free(p);

  /* without rollouts nothing was saved before the divergence: the last good parameters are */
  char pol2[4200];
  snprintf(pol2, sizeof pol2, "%s/nan2.h5", d);
  diverge(d, data, pol2, "--batch 20 --eval-every 0", &ep, &step, &batch);
  cr_assert(step >= 1 && batch >= 1 && batch <= step);
  p = load_policy(pol2);
  cr_assert_eq((int)info_num(p, "epoch"), ep - 1, "the last completed epoch (%d) is kept", ep - 1);
  for (int64_t i = 0; i < p->net->n_params; i++)
    cr_assert(isfinite(p->net->params[i]));
  bc_policy_free(p);
}

/* Finite actions whose range is beyond float32's (|a| up to 3e38): bc-train must either refuse with the
 * file's name or write a policy that loads -- never exit 0 (or "keep") a policy bc-eval cannot read. */
Test(bc_cli, enormous_actions_never_leave_an_unloadable_policy, .timeout = 120) {
  const char *d = tt_tmpdir();
  const char *cases[] = {"--act-scale 3e38", "--act-scale 1e38 --act-offset 2.3e38", "--act-scale 1e30"};
  for (size_t k = 0; k < TK_ARRAY_LEN(cases); k++) {
    char data[4200], pol[4200];
    snprintf(data, sizeof data, "%s/big%zu.h5", d, k);
    snprintf(pol, sizeof pol, "%s/big%zu_policy.h5", d, k);
    make_robomimic(data, cases[k]);
    char *out, *err;
    int rc =
        run2(d, &out, &err, "%s %s -o %s --hidden 32 --epochs 2 --threads 2 --quiet", train_bin(), data, pol);
    cr_assert(rc == 0 || rc == 1, "%s: exit %d: %s", cases[k], rc, err);
    if (rc == 1) cr_assert(strstr(err, data) || strstr(err, pol), "%s: %s", cases[k], err);
    if (rc == 0 || file_size(pol) >= 0) {
      bcPolicy *p = bc_policy_load(pol);
      cr_assert(
          p, "actions made with %s: bc-train exited %d and left a policy that does not load: %s (stderr: %s)",
          cases[k], rc, tk_errmsg(), err);
      bc_policy_free(p);
    }
  }
}

/* ---- refusals ------------------------------------------------------------------------------------ */
Test(bc_cli, eval_refuses_other_task_and_corrupt_files, .timeout = 120) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], junk[4200], half[4200];
  snprintf(data, sizeof data, "%s/lift.h5", d);
  snprintf(pol, sizeof pol, "%s/lift_policy.h5", d);
  snprintf(junk, sizeof junk, "%s/junk.h5", d);
  snprintf(half, sizeof half, "%s/half.h5", d);
  tt_record(data, "lift", 4, 0.3, 0, NULL);
  char args[8192];
  snprintf(args, sizeof args, "%s -o %s --hidden 16 --epochs 1 --eval-every 0 --quiet", data, pol);
  train_ok(d, args);
  char *out, *err;
  const char *tasks[] = {"reach", "push"};
  for (int t = 0; t < 2; t++) {
    int rc = run2(d, &out, &err, "%s %s --task %s --episodes 2 --quiet", eval_bin(), pol, tasks[t]);
    cr_assert_eq(rc, 1, "--task %s: exit %d: %s %s", tasks[t], rc, out, err);
    cr_assert_eq(count_lines(err), 1, "one line: '%s'", err);
    cr_assert(strstr(err, pol) && strstr(err, tasks[t]), "names the policy and the task: %s", err);
    /* both sides: the policy reads object(10) (lift's), the task has joint velocities the policy lacks */
    cr_assert(strstr(err, "object(10)") && strstr(err, "robot0_joint_vel"), "lists both sides: %s", err);
  }
  /* random bytes, a truncated policy, a dataset instead of a policy */
  char *o2 = NULL;
  int rc = tt_run(&o2, "head -c 20000 /dev/urandom > %s && head -c %ld %s > %s", junk, file_size(pol) / 2,
                  pol, half);
  keep(o2);
  cr_assert_eq(rc, 0, "%s", o2);
  const char *bad[] = {junk, half, data};
  for (int i = 0; i < 3; i++) {
    rc = run2(d, &out, &err, "%s %s --episodes 2 --quiet", eval_bin(), bad[i]);
    cr_assert_eq(rc, 1, "%s: exit %d (no crash): %s %s", bad[i], rc, out, err);
    cr_assert_eq(count_lines(err), 1, "one line: '%s'", err);
    cr_assert(strstr(err, bad[i]), "names the file: %s", err);
  }
  rc = run2(d, &out, &err, "%s %s/none.h5", eval_bin(), d);
  cr_assert_eq(rc, 1, "%s", err);
  cr_assert(strstr(err, "none.h5"), "%s", err);
}

Test(bc_cli, train_refuses_missing_and_non_hdf5, .timeout = 60) {
  const char *d = tt_tmpdir();
  char junk[4200], missing[4200], text[4200];
  snprintf(junk, sizeof junk, "%s/random.h5", d);
  snprintf(missing, sizeof missing, "%s/missing.h5", d);
  snprintf(text, sizeof text, "%s/notes.txt", d);
  char *o2 = NULL;
  int rc0 = tt_run(&o2, "head -c 8192 /dev/urandom > %s", junk);
  keep(o2);
  cr_assert_eq(rc0, 0, "%s", o2);
  write_text(text, "epoch,loss\n1,0.5\n");
  const char *bad[] = {missing, junk, text};
  for (int i = 0; i < 3; i++) {
    char *out, *err;
    int rc = run2(d, &out, &err, "%s %s -o %s/p%d.h5 --epochs 1 --quiet", train_bin(), bad[i], d, i);
    cr_assert_eq(rc, 1, "%s: exit %d: %s %s", bad[i], rc, out, err);
    cr_assert_eq(count_lines(err), 1, "one line: '%s'", err);
    cr_assert(strstr(err, bad[i]), "names the file: %s", err);
    char p[4300];
    snprintf(p, sizeof p, "%s/p%d.h5", d, i);
    cr_assert_eq(file_size(p), -1, "no policy for a file that cannot be read");
  }
  /* usage */
  char *out, *err;
  int rc = run2(d, &out, &err, "%s", train_bin());
  cr_assert_eq(rc, 2);
  rc = run2(d, &out, &err, "%s %s --frobnicate 3", train_bin(), missing);
  cr_assert_eq(rc, 2);
  cr_assert(strstr(err, "frobnicate"), "%s", err);
  rc = run2(d, &out, &err, "%s --help", train_bin());
  cr_assert_eq(rc, 0);
  cr_assert(strstr(out, "--obs-keys") && strstr(out, "--config"), "%s", out);
  rc = run2(d, &out, &err, "%s --help", eval_bin());
  cr_assert_eq(rc, 0);
  cr_assert(strstr(out, "--json") && strstr(out, "--save"), "%s", out);
}

/* bc-eval rolls the policy out; rl-finetune --scheme finetune, whose actor is the policy's own network
 * acting one step at a time without memory, refuses it with a message that says why (why), names the
 * file and points to --scheme residual (which the default, auto, takes: tests/rl_finetune). */
static void evaluates_and_rl_refuses(const char *d, const char *pol, const char *data, const char *why) {
  char *out, *err;
  int rc = run2(d, &out, &err, "%s %s --episodes 3 --workers 2 --json", eval_bin(), pol);
  cr_assert_eq(rc, 0, "bc-eval: %s", err);
  cr_assert(strstr(out, "\"success_rate\""), "%s", out);
  rc = run2(d, &out, &err, "%s --policy %s --demos %s --steps 100 --scheme finetune --out %s/ft.h5",
            tt_build("rl_finetune/rl-finetune"), pol, data, d);
  cr_assert_eq(rc, 1, "rl-finetune: exit %d\n%s", rc, err);
  cr_assert(strstr(err, why) && strstr(err, pol) && strstr(err, "--scheme residual"), "%s", err);
}

/* --chunk K: the policy predicts K actions per step (saved as attr chunk), bc-eval rolls it out with
 * temporal ensembling, and rl-finetune's finetune scheme, whose actor acts one step at a time, refuses it. */
Test(bc_cli, chunked_policy_trains_evaluates_and_rl_refuses_it, .timeout = 180) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], args[16384];
  snprintf(data, sizeof data, "%s/lift.h5", d);
  snprintf(pol, sizeof pol, "%s/chunk.h5", d);
  tt_record(data, "lift", 6, 0.3, 0, NULL);
  snprintf(args, sizeof args,
           "%s -o %s --hidden 32,32 --epochs 4 --eval-every 2 --eval-episodes 2 --chunk 4 --quiet", data,
           pol);
  train_ok(d, args);
  bcPolicy *p = load_policy(pol);
  cr_assert_eq(p->chunk, 4);
  cr_assert_eq(p->act_dim, 7);
  cr_assert_eq(p->arch.act_dim, 28, "the network predicts 4 actions of 7");
  bc_policy_free(p);
  evaluates_and_rl_refuses(d, pol, data, "chunked policy");
  char *out, *err;
  int rc = run2(d, &out, &err, "%s %s -o %s/x.h5 --chunk 0", train_bin(), data, d);
  cr_assert_eq(rc, 2, "--chunk 0 is a usage error: %s", err);
}

/* --head diffusion: the file holds the denoiser and its settings, bc-eval's rollouts are the same with one
 * worker or two (each episode's noise comes from its seed), rl-finetune --scheme finetune refuses it, and
 * settings that do not fit are refused. */
Test(bc_cli, diffusion_policy_trains_evaluates_and_rl_refuses_it, .timeout = 240) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], args[16384];
  snprintf(data, sizeof data, "%s/lift.h5", d);
  snprintf(pol, sizeof pol, "%s/dif.h5", d);
  tt_record(data, "lift", 6, 0.3, 0, NULL);
  snprintf(args, sizeof args,
           "%s -o %s --hidden 32,32 --epochs 4 --eval-every 2 --eval-episodes 2 --head diffusion "
           "--action-horizon 8 --exec-horizon 4 --sample-steps 5 --diffusion-steps 50 --quiet",
           data, pol);
  train_ok(d, args);
  bcPolicy *p = load_policy(pol);
  cr_expect(p->dif.horizon == 8 && p->dif.exec == 4 && p->dif.sample_steps == 5 && p->dif.train_steps == 50 &&
            p->dif.obs_horizon == 2 && p->chunk == 8 && p->act_dim == 7);
  cr_expect_eq(p->arch.obs_dim, 2 * p->obs_dim + 8 * 7 + 32, "the denoiser's inputs");
  bc_policy_free(p);
  char *out1, *out2, *err;
  int rc = run2(d, &out1, &err, "%s %s --episodes 4 --workers 1 --json", eval_bin(), pol);
  cr_assert_eq(rc, 0, "bc-eval: %s", err);
  rc = run2(d, &out2, &err, "%s %s --episodes 4 --workers 2 --json", eval_bin(), pol);
  cr_assert_eq(rc, 0, "bc-eval: %s", err);
  /* the same returns and lengths, to the last digit printed */
  const char *r1 = strstr(out1, "\"mean_return\""), *r2 = strstr(out2, "\"mean_return\"");
  const char *e1 = r1 ? strstr(r1, "\"seed\"") : NULL, *e2 = r2 ? strstr(r2, "\"seed\"") : NULL;
  cr_assert(e1 && e2, "%s", out1);
  cr_expect(e1 - r1 == e2 - r2 && !strncmp(r1, r2, (size_t)(e1 - r1)),
            "one worker and two roll out otherwise:\n%s\n%s", out1, out2);
  evaluates_and_rl_refuses(d, pol, data, "diffusion policy");
  /* settings left at their defaults follow the ones given: 4 actions run at most 4 per plan */
  snprintf(args, sizeof args,
           "%s -o %s/h4.h5 --hidden 16 --epochs 1 --eval-every 0 --head diffusion --action-horizon 4 "
           "--diffusion-steps 10 --quiet",
           data, d);
  train_ok(d, args);
  snprintf(args, sizeof args, "%s/h4.h5", d);
  p = load_policy(args);
  cr_expect(p->dif.horizon == 4 && p->dif.exec == 4 && p->dif.train_steps == 10 && p->dif.sample_steps == 10,
            "exec %d, sample_steps %d", p->dif.exec, p->dif.sample_steps);
  bc_policy_free(p);
  /* --denoiser unet: a small U-Net trains, its file says so, bc-eval rolls it out */
  snprintf(
      args, sizeof args,
      "%s -o %s/unet.h5 --epochs 1 --eval-every 0 --head diffusion --denoiser unet --unet-dims 8,16 "
      "--unet-kernel 3 --action-horizon 8 --exec-horizon 4 --sample-steps 4 --diffusion-steps 20 --quiet",
      data, d);
  train_ok(d, args);
  snprintf(args, sizeof args, "%s/unet.h5", d);
  p = load_policy(args);
  cr_expect(p->dif.unet == 1 && p->arch.unet.levels == 2 && p->arch.unet.down[1] == 16 &&
                p->arch.unet.kernel == 3 && p->arch.unet.horizon == 8 && p->arch.n_hidden == 0,
            "the U-Net's description");
  bc_policy_free(p);
  rc = run2(d, &out1, &err, "%s %s/unet.h5 --episodes 2 --json", eval_bin(), d);
  cr_expect_eq(rc, 0, "bc-eval of a U-Net policy: %s", err);
  rc = run2(d, &out1, &err, "%s %s -o %s/x.h5 --head diffusion --denoiser cnn", train_bin(), data, d);
  cr_expect(rc == 2 && strstr(err, "expected mlp or unet"), "exit %d: %s", rc, err);
  rc = run2(d, &out1, &err, "%s %s -o %s/x.h5 --denoiser unet", train_bin(), data, d);
  cr_expect(rc == 2 && strstr(err, "need --head diffusion"), "exit %d: %s", rc, err);
  /* diffusion settings without the head: a usage error, not silently ignored */
  rc = run2(d, &out1, &err, "%s %s -o %s/x.h5 --action-horizon 4", train_bin(), data, d);
  cr_expect_eq(rc, 2, "exit %d: %s", rc, err);
  cr_expect(strstr(err, "need --head diffusion"), "%s", err);
  const char *bad[][2] = {{"--rnn", "no --rnn or --chunk"},
                          {"--exec-horizon 20", "exec 20 not in 1..horizon (16)"},
                          {"--sample-steps 200", "sample_steps 200 not in 1..train_steps (100)"},
                          {"--denoiser unet --action-horizon 6", "divisible by 2^(levels - 1) = 4"}};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    rc = run2(d, &out1, &err, "%s %s -o %s/x.h5 --head diffusion --epochs 1 %s", train_bin(), data, d,
              bad[i][0]);
    cr_expect_eq(rc, 1, "%s: exit %d: %s", bad[i][0], rc, err);
    cr_expect(strstr(err, bad[i][1]), "%s: %s", bad[i][0], err);
  }
}

/* --rnn: BC-RNN. The policy file holds the LSTM (arch rnn_layers/rnn_hidden/rnn_horizon, no MLP layers
 * unless --hidden is given), training on sequences lowers the loss, the same seed gives the same
 * weights, bc-eval rolls it out with its state, and rl-finetune and --chunk refuse it. */
Test(bc_cli, recurrent_policy_trains_evaluates_and_rl_refuses_it, .timeout = 300) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], pol2[4200], args[16384];
  snprintf(data, sizeof data, "%s/lift.h5", d);
  snprintf(pol, sizeof pol, "%s/rnn.h5", d);
  snprintf(pol2, sizeof pol2, "%s/rnn2.h5", d);
  tt_record(data, "lift", 6, 0.3, 0, NULL);
  const char *opts =
      "--rnn --rnn-hidden 24 --rnn-horizon 5 --epochs 6 --eval-every 3 --eval-episodes 2 --quiet";
  snprintf(args, sizeof args, "%s -o %s %s", data, pol, opts);
  train_ok(d, args);
  snprintf(args, sizeof args, "%s -o %s %s", data, pol2, opts);
  train_ok(d, args);
  same_policy(pol, pol2, 1);
  bcPolicy *p = load_policy(pol);
  cr_assert(p->arch.rnn_layers == 2 && p->arch.rnn_hidden == 24 && p->arch.rnn_horizon == 5);
  cr_assert_eq(p->arch.n_hidden, 0, "robomimic's BC-RNN: the LSTM feeds the output layer");
  cr_assert_eq(p->act_dim, 7);
  bc_policy_free(p);
  char csv[4300];
  snprintf(csv, sizeof csv, "%s/rnn.csv", d);
  csvRows c;
  csv_load(csv, &c);
  cr_assert_eq(c.n, 6);
  cr_assert_lt(c.train[5], c.train[0], "training on sequences lowers the loss: %g -> %g", c.train[0],
               c.train[5]);
  evaluates_and_rl_refuses(d, pol, data, "recurrent");
  char *out, *err;
  int rc = run2(d, &out, &err, "%s %s -o %s/x.h5 --rnn --chunk 2 --epochs 1 --quiet", train_bin(), data, d);
  cr_assert_eq(rc, 1, "--rnn with --chunk: exit %d\n%s", rc, err);
  cr_assert(strstr(err, "recurrent"), "%s", err);
  rc = run2(d, &out, &err, "%s %s -o %s/x.h5 --rnn-layers 9", train_bin(), data, d);
  cr_assert_eq(rc, 2, "--rnn-layers 9 is a usage error: %s", err);
}

/* A recurrent policy's rollouts give the same bits whatever OpenBLAS's thread count (the eval workers
 * act with one thread each): at robomimic's width, 400, two BLAS threads used to change the LSTM's
 * GEMM results in the last bits, and trajectories then diverged. Config files set the LSTM too:
 * "rnn": true keeps a given "rnn_layers", and "hidden": [] (as an arch JSON writes it) means none. */
Test(bc_cli, recurrent_rollouts_do_not_depend_on_blas_threads_and_config, .timeout = 300) {
  const char *d = tt_tmpdir();
  char data[4200], pol[4200], cfg[4200], args[16384];
  snprintf(data, sizeof data, "%s/lift.h5", d);
  snprintf(pol, sizeof pol, "%s/rnn400.h5", d);
  snprintf(cfg, sizeof cfg, "%s/rnn.json", d);
  tt_record(data, "lift", 4, 0.3, 0, NULL);
  snprintf(args, sizeof args, "%s -o %s --rnn --epochs 1 --eval-every 0 --quiet", data, pol);
  train_ok(d, args);
  char *out[2], *err;
  for (int t = 0; t < 2; t++) {
    int rc = run2(d, &out[t], &err, "OPENBLAS_NUM_THREADS=%d %s %s --episodes 2 --workers 1 --json", t + 1,
                  eval_bin(), pol);
    cr_assert_eq(rc, 0, "bc-eval: %s", err);
  }
  const char *r0 = strstr(out[0], "\"mean_return\""), *r1 = strstr(out[1], "\"mean_return\"");
  cr_assert(r0 && r1, "%s\n%s", out[0], out[1]);
  cr_assert_eq(strncmp(r0, r1, 40), 0, "1 and 2 BLAS threads: %.40s vs %.40s", r0, r1);

  write_text(cfg, "{\"rnn_layers\": 1, \"rnn\": true, \"rnn_hidden\": 8, \"hidden\": [], \"epochs\": 1, "
                  "\"eval_every\": 0, \"quiet\": true}");
  snprintf(args, sizeof args, "%s -o %s/cfg.h5 --config %s", data, d, cfg);
  train_ok(d, args);
  snprintf(pol, sizeof pol, "%s/cfg.h5", d);
  bcPolicy *p = load_policy(pol);
  cr_assert(p->arch.rnn_layers == 1 && p->arch.rnn_hidden == 8 && p->arch.n_hidden == 0,
            "config: %d layers of %d, %d MLP layers", p->arch.rnn_layers, p->arch.rnn_hidden,
            p->arch.n_hidden);
  bc_policy_free(p);
  snprintf(args, sizeof args,
           "%s -o %s --rnn-layers 3 --rnn --rnn-hidden 8 --epochs 1 --eval-every 0 --quiet", data, pol);
  train_ok(d, args);
  p = load_policy(pol);
  cr_assert_eq(p->arch.rnn_layers, 3, "--rnn after --rnn-layers 3 keeps 3");
  bc_policy_free(p);
}
