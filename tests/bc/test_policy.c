/* bc policies: policy.h5 round trips (tensors, statistics and attributes bit for bit, same actions),
 * an independent numpy reader (tests/bc/policy_forward.py) against the C forward for every head,
 * activation and LayerNorm setting, the loader's validation of malformed files (made with h5py by
 * tests/bc/make_bad_policies.py), binding to the lift task, and atomic saves. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bc.h"
#include "tt.h"

static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

/* The lift task's low-dim layout (a prefix of it): 19 values */
static const char *const LIFT_KEYS[] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
static const int LIFT_DIMS[] = {10, 3, 4, 2};
#define OBS 19
#define ACT 7
#define BATCH 64

static nnArch mkarch(nnHead head, nnActivation f, int ln, int tanh) {
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = OBS;
  a.act_dim = ACT;
  a.n_hidden = 2;
  a.hidden[0] = 40; /* not multiples of 8: the LayerNorm row sums' tails run too */
  a.hidden[1] = 29;
  a.activation = f;
  a.layer_norm = ln;
  a.head = head;
  a.tanh = tanh;
  a.gmm_modes = 4;
  a.gmm_min_std = 0.0123; /* away from the defaults: they must survive the JSON */
  a.log_std_min = -4.5;
  a.log_std_max = 1.75;
  return a;
}

static void fill(float *v, int64_t n, tkRng *r, double lo, double hi) {
  for (int64_t i = 0; i < n; i++)
    v[i] = (float)tk_rng_range(r, lo, hi);
}

/* Weights uniform in +-sqrt(3 / fan_in) (unit-variance pre-activations for unit-variance inputs: no
 * saturation, no vanishing), biases and LayerNorm parameters in general position, non-trivial statistics. */
static void randomize(bcPolicy *p, uint64_t seed) {
  tkRng r;
  tk_rng_seed(&r, seed);
  for (int i = 0; i < p->net->n_tensors; i++) {
    nnTensor *t = &p->net->tensors[i];
    if (t->ndim == 2) {
      double a = sqrt(3.0 / (double)t->shape[1]);
      fill(t->data, t->numel, &r, -a, a);
    } else if (strstr(t->name, "gain")) {
      fill(t->data, t->numel, &r, 0.5, 1.5);
    } else {
      fill(t->data, t->numel, &r, -0.3, 0.3);
    }
  }
  fill(p->obs_mean, p->obs_dim, &r, -2, 2);
  fill(p->obs_std, p->obs_dim, &r, 0.1, 3);
  fill(p->act_offset, p->act_dim, &r, -1, 1);
  fill(p->act_scale, p->act_dim, &r, 0.2, 2);
}

static bcPolicy *make_policy(const nnArch *a, int nkeys, const char *const *keys, const int *dims,
                             uint64_t seed) {
  bcPolicy *p = bc_policy_make(a, nkeys, keys, dims, seed);
  cr_assert(p, "bc_policy_make: %s", tk_errmsg());
  randomize(p, seed + 1);
  snprintf(p->task, sizeof p->task, "lift");
  snprintf(p->algo, sizeof p->algo, "sac");
  p->control_hz = 20;
  cr_assert_eq(bc_policy_set_info(p, "{\"epochs\": 200, \"dataset\": \"d\xc3\xa9mos.h5\", \"loss\": 0.125}"),
               0, "%s", tk_errmsg());
  return p;
}

static bcPolicy *make_lift(const nnArch *a, uint64_t seed) {
  return make_policy(a, 4, LIFT_KEYS, LIFT_DIMS, seed);
}

/* B raw observations around the policy's statistics: obs = mean + std * N(0, 1) */
static float *observations(const bcPolicy *p, int B, uint64_t seed) {
  tkRng r;
  tk_rng_seed(&r, seed);
  float *o = malloc(sizeof(float) * (size_t)B * p->obs_dim);
  cr_assert(o);
  for (int b = 0; b < B; b++)
    for (int i = 0; i < p->obs_dim; i++)
      o[b * p->obs_dim + i] = (float)(p->obs_mean[i] + p->obs_std[i] * tk_rng_normal(&r));
  return o;
}

/* bc_policy_act on B observations; act [B, act_dim] malloc'd. best_modes (GMM, may be NULL) gets the
 * number of distinct modes chosen. */
static double *policy_act(const bcPolicy *p, const float *obs, int B, int *best_modes) {
  nnWork *w = nn_work_make(p->net, B);
  cr_assert(w, "%s", tk_errmsg());
  float *scratch = malloc(sizeof(float) * (size_t)B * (p->obs_dim + p->act_dim));
  double *act = malloc(sizeof(double) * (size_t)B * p->act_dim);
  cr_assert(scratch && act);
  cr_assert_eq(bc_policy_act(p, w, obs, B, scratch, act), 0, "%s", tk_errmsg());
  if (best_modes) {
    int K = p->arch.gmm_modes, A = p->act_dim, seen[NN_MAX_MODES] = {0};
    *best_modes = 0;
    for (int b = 0; b < B; b++) {
      const float *lg = w->out + (size_t)b * p->net->out_dim + 2 * K * A;
      int best = 0;
      for (int k = 1; k < K; k++)
        if (lg[k] > lg[best]) best = k;
      *best_modes += !seen[best];
      seen[best] = 1;
    }
  }
  free(scratch);
  nn_work_free(w);
  return act;
}

static void write_file(const char *path, const void *data, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "%s", path);
  cr_assert_eq(fwrite(data, 1, n, f), n);
  cr_assert_eq(fclose(f), 0);
}

/* the whole file (malloc'd), its size in *n */
static char *read_file(const char *path, size_t *n) {
  FILE *f = fopen(path, "rb");
  cr_assert(f, "%s", path);
  fseek(f, 0, SEEK_END);
  long sz = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *b = malloc((size_t)sz + 1);
  cr_assert(b);
  cr_assert_eq(fread(b, 1, (size_t)sz, f), (size_t)sz);
  fclose(f);
  b[sz] = 0;
  *n = (size_t)sz;
  return b;
}

/* entries of a directory other than . and .. */
static int dir_entries(const char *dir) {
  DIR *d = opendir(dir);
  cr_assert(d, "%s", dir);
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)))
    n += strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
  closedir(d);
  return n;
}

/* ---- save / load round trips ------------------------------------------------------------------- */

static void expect_same_policy(const bcPolicy *p, const bcPolicy *q) {
  const nnArch *a = &p->arch, *b = &q->arch;
  cr_assert_eq(b->obs_dim, a->obs_dim);
  cr_assert_eq(b->act_dim, a->act_dim);
  cr_assert_eq(b->n_hidden, a->n_hidden);
  for (int i = 0; i < a->n_hidden; i++)
    cr_assert_eq(b->hidden[i], a->hidden[i]);
  cr_assert_eq(b->activation, a->activation);
  cr_assert_eq(b->layer_norm, a->layer_norm);
  cr_assert_eq(b->head, a->head);
  cr_assert_eq(b->tanh, a->tanh);
  cr_assert_eq(b->gmm_modes, a->gmm_modes);
  cr_assert_eq(b->gmm_min_std, a->gmm_min_std);
  cr_assert_eq(b->log_std_min, a->log_std_min);
  cr_assert_eq(b->log_std_max, a->log_std_max);
  cr_assert_eq(q->nkeys, p->nkeys);
  for (int i = 0; i < p->nkeys; i++) {
    cr_assert_str_eq(q->keys[i], p->keys[i]);
    cr_assert_eq(q->key_dim[i], p->key_dim[i]);
  }
  cr_assert_eq(q->obs_dim, p->obs_dim);
  cr_assert_eq(q->act_dim, p->act_dim);
  cr_assert_eq(memcmp(q->obs_mean, p->obs_mean, sizeof(float) * (size_t)p->obs_dim), 0);
  cr_assert_eq(memcmp(q->obs_std, p->obs_std, sizeof(float) * (size_t)p->obs_dim), 0);
  cr_assert_eq(memcmp(q->act_offset, p->act_offset, sizeof(float) * (size_t)p->act_dim), 0);
  cr_assert_eq(memcmp(q->act_scale, p->act_scale, sizeof(float) * (size_t)p->act_dim), 0);
  cr_assert_eq(q->net->n_tensors, p->net->n_tensors);
  for (int i = 0; i < p->net->n_tensors; i++) {
    const nnTensor *s = &p->net->tensors[i], *t = &q->net->tensors[i];
    cr_assert_str_eq(t->name, s->name);
    cr_assert_eq(t->ndim, s->ndim);
    cr_assert_eq(t->shape[0], s->shape[0]);
    cr_assert_eq(t->shape[1], s->shape[1]);
    cr_assert_eq(memcmp(t->data, s->data, sizeof(float) * (size_t)s->numel), 0, "tensor %s differs", s->name);
  }
  cr_assert_str_eq(q->task, p->task);
  cr_assert_str_eq(q->algo, p->algo);
  cr_assert_eq(q->control_hz, p->control_hz);
  cr_assert_str_eq(q->info, p->info);
}

static void round_trip(nnHead head, nnActivation f, int ln, int tanh, uint64_t seed) {
  nnArch a = mkarch(head, f, ln, tanh);
  bcPolicy *p = make_lift(&a, seed);
  const char *dir = tt_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/policy.h5", dir);
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  cr_assert_eq(dir_entries(dir), 1, "a temporary file was left next to %s", path);
  bcPolicy *q = bc_policy_load(path);
  cr_assert(q, "%s %s ln=%d: %s", nn_head_name(head), nn_activation_name(f), ln, tk_errmsg());
  expect_same_policy(p, q);
  cr_assert(nn_net_trainable(p->net) && !nn_net_trainable(q->net), "a loaded policy is made to act");
  float *obs = observations(p, BATCH, seed + 7);
  double *a0 = policy_act(p, obs, BATCH, NULL), *a1 = policy_act(q, obs, BATCH, NULL);
  cr_assert_eq(memcmp(a0, a1, sizeof(double) * BATCH * ACT), 0, "actions differ after the round trip");
  /* and a second generation: saving the loaded policy gives the same policy again */
  cr_assert_eq(bc_policy_save(q, path), 0, "%s", tk_errmsg());
  bcPolicy *r = bc_policy_load(path);
  cr_assert(r, "%s", tk_errmsg());
  expect_same_policy(p, r);
  free(a0);
  free(a1);
  free(obs);
  bc_policy_free(p);
  bc_policy_free(q);
  bc_policy_free(r);
}

Test(policy, round_trip_mse) {
  uint64_t seed = 100;
  for (int ln = 0; ln < 2; ln++)
    for (int f = NN_RELU; f <= NN_TANH; f++)
      round_trip(NN_HEAD_MSE, (nnActivation)f, ln, ln ^ (f == NN_ELU), seed += 10);
}

Test(policy, round_trip_gaussian) {
  uint64_t seed = 200;
  for (int ln = 0; ln < 2; ln++)
    for (int f = NN_RELU; f <= NN_TANH; f++)
      round_trip(NN_HEAD_GAUSSIAN, (nnActivation)f, ln, 0, seed += 10);
}

Test(policy, round_trip_gmm) {
  uint64_t seed = 300;
  for (int ln = 0; ln < 2; ln++)
    for (int f = NN_RELU; f <= NN_TANH; f++)
      round_trip(NN_HEAD_GMM, (nnActivation)f, ln, ln ^ (f == NN_TANH), seed += 10);
}

Test(policy, round_trip_defaults_and_clone) {
  /* identity statistics, empty task, no rate, one key, no hidden layer */
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = 5;
  a.act_dim = 2;
  a.n_hidden = 0;
  const char *keys[] = {"state"};
  int dims[] = {5};
  bcPolicy *p = bc_policy_make(&a, 1, keys, dims, 9);
  cr_assert(p, "%s", tk_errmsg());
  cr_assert_str_eq(p->task, "");
  cr_assert_str_eq(p->algo, "bc");
  cr_assert_str_eq(p->info, "{}");
  char path[4200];
  snprintf(path, sizeof path, "%s/p.h5", tt_tmpdir());
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  bcPolicy *q = bc_policy_load(path);
  cr_assert(q, "%s", tk_errmsg());
  expect_same_policy(p, q);
  bcPolicy *c = bc_policy_clone(q);
  cr_assert(c, "%s", tk_errmsg());
  expect_same_policy(p, c);
  cr_assert(!nn_net_trainable(c->net), "a clone is made to act");
  /* training from a loaded policy: given on demand */
  cr_assert_eq(nn_net_add_training(q->net), 0, "%s", tk_errmsg());
  cr_assert(nn_net_trainable(q->net));
  expect_same_policy(p, q);
  bc_policy_free(p);
  bc_policy_free(q);
  bc_policy_free(c);
}

/* ---- the numpy reader agrees with the C forward --------------------------------------------------- */

static void numpy_matches(nnHead head, nnActivation f, int ln, int tanh, uint64_t seed) {
  nnArch a = mkarch(head, f, ln, tanh);
  bcPolicy *p = make_lift(&a, seed);
  const char *dir = tt_tmpdir();
  char path[4200], obs_path[4200], out_path[4200];
  snprintf(path, sizeof path, "%s/policy.h5", dir);
  snprintf(obs_path, sizeof obs_path, "%s/obs.f32", dir);
  snprintf(out_path, sizeof out_path, "%s/act.f64", dir);
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  float *obs = observations(p, BATCH, seed + 3);
  write_file(obs_path, obs, sizeof(float) * BATCH * OBS);
  int modes = 0;
  double *act = policy_act(p, obs, BATCH, head == NN_HEAD_GMM ? &modes : NULL);

  char *out = NULL;
  int rc =
      tt_run(&out, "%s %s %s %s %s", py(), tt_src("tests/bc/policy_forward.py"), path, obs_path, out_path);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "policy_forward ok"), "%s", out);
  cr_assert(strstr(out, "B=64"), "%s", out);
  free(out);
  size_t n = 0;
  double *ref = (double *)read_file(out_path, &n);
  cr_assert_eq(n, sizeof(double) * BATCH * ACT);

  double max_diff = 0, saturated = 0, spread = 0;
  for (int i = 0; i < BATCH * ACT; i++) {
    max_diff = fmax(max_diff, fabs(act[i] - ref[i]));
    int j = i % ACT;
    double net = (act[i] - p->act_offset[j]) / p->act_scale[j]; /* the head's action */
    saturated += fabs(net) > 0.99;
    spread += fabs(act[i] - act[j]) / (BATCH * ACT); /* differs from row 0's */
  }
  printf("numpy vs C: %-8s %-4s ln=%d tanh=%d  max |diff| %.3g  (saturated %.0f of %d, modes %d)\n",
         nn_head_name(head), nn_activation_name(f), ln, tanh, max_diff, saturated, BATCH * ACT, modes);
  cr_assert_lt(max_diff, 1e-5, "%s %s ln=%d tanh=%d: numpy and C actions differ by %g", nn_head_name(head),
               nn_activation_name(f), ln, tanh, max_diff);
  /* the comparison means something: actions vary, are not pinned at the tanh bounds, GMM modes vary */
  cr_assert_gt(spread, 0.1);
  if (head == NN_HEAD_GAUSSIAN || tanh) cr_assert_lt(saturated, 0.1 * BATCH * ACT);
  if (head == NN_HEAD_GMM) cr_assert_geq(modes, 2);
  free(ref);
  free(act);
  free(obs);
  bc_policy_free(p);
}

Test(policy, numpy_forward_mse) {
  uint64_t seed = 1000;
  for (int ln = 0; ln < 2; ln++)
    for (int f = NN_RELU; f <= NN_TANH; f++)
      for (int tanh = 0; tanh < 2; tanh++)
        numpy_matches(NN_HEAD_MSE, (nnActivation)f, ln, tanh, seed += 10);
}

Test(policy, numpy_forward_gaussian) {
  uint64_t seed = 2000;
  for (int ln = 0; ln < 2; ln++)
    for (int f = NN_RELU; f <= NN_TANH; f++)
      numpy_matches(NN_HEAD_GAUSSIAN, (nnActivation)f, ln, 0, seed += 10);
}

Test(policy, numpy_forward_gmm) {
  uint64_t seed = 3000;
  for (int ln = 0; ln < 2; ln++)
    for (int f = NN_RELU; f <= NN_TANH; f++)
      for (int tanh = 0; tanh < 2; tanh++)
        numpy_matches(NN_HEAD_GMM, (nnActivation)f, ln, tanh, seed += 10);
}

/* .npy in and out, the check-only mode's summary, and the attributes as h5py sees them */
Test(policy, numpy_reader_npy_and_attrs) {
  nnArch a = mkarch(NN_HEAD_GMM, NN_ELU, 1, 1);
  bcPolicy *p = make_lift(&a, 77);
  const char *dir = tt_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/policy.h5", dir);
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  float *obs = observations(p, BATCH, 78);
  char f32[4200];
  snprintf(f32, sizeof f32, "%s/obs.f32", dir);
  write_file(f32, obs, sizeof(float) * BATCH * OBS);
  double *act = policy_act(p, obs, BATCH, NULL);
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s", py(), tt_src("tests/bc/policy_forward.py"), path);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "policy_forward ok obs_dim=19 act_dim=7 hidden=[40, 29] activation=elu layer_norm=1 "
                        "head=gmm tanh=1 keys=object(10),robot0_eef_pos(3),robot0_eef_quat(4),"
                        "robot0_gripper_qpos(2) task=lift algo=sac"),
            "%s", out);
  free(out);
  rc = tt_run(&out,
              "cd %s && %s -c \"import numpy as np; np.save('obs.npy', np.fromfile('obs.f32', "
              "'<f4').reshape(-1, 19))\""
              " && %s %s %s obs.npy act.npy && %s -c \"import numpy as np; a = np.load('act.npy'); "
              "print(a.dtype, a.shape, ' '.join(repr(float(v)) for v in a.ravel()))\"",
              dir, py(), py(), tt_src("tests/bc/policy_forward.py"), path, py());
  cr_assert_eq(rc, 0, "%s", out);
  const char *s = strstr(out, "float64 (64, 7) ");
  cr_assert(s, "%s", out);
  s += strlen("float64 (64, 7) ");
  for (int i = 0; i < BATCH * ACT; i++) {
    char *end;
    double v = strtod(s, &end);
    cr_assert(end != s, "value %d missing: %s", i, out);
    cr_assert_lt(fabs(v - act[i]), 1e-5, "value %d: numpy %g, C %g", i, v, act[i]);
    s = end;
  }
  free(out);
  /* attribute types as an outside reader sees them */
  rc = tt_run(
      &out,
      "%s -c \"import h5py, json; f = h5py.File('%s', 'r'); a = f.attrs; "
      "print(type(a['format']).__name__, a['format'], a['version'].dtype, int(a['version']), "
      "json.loads(a['arch'])['head'], json.loads(a['obs_dims']), float(a['control_hz']), a['task'], "
      "a['algo'], "
      "json.loads(a['info'])['dataset'].encode('unicode_escape').decode(), "
      "f['weights/l0.weight'].shape, f['weights/l0.weight'].dtype, f['normalization/obs_std'].shape)\"",
      py(), path);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(
      strstr(
          out,
          "str demokit.policy int64 1 gmm [10, 3, 4, 2] 20.0 lift sac d\\xe9mos.h5 (40, 19) float32 (19,)"),
      "%s", out);
  free(out);
  free(act);
  free(obs);
  bc_policy_free(p);
}

/* ---- loading validation ------------------------------------------------------------------------- */

static void expect_load_fails(const char *path, const char *what) {
  tk_error_clear();
  bcPolicy *p = bc_policy_load(path);
  const char *m = tk_errmsg();
  cr_expect_null(p, "%s loaded", path);
  bc_policy_free(p);
  cr_expect(strstr(m, path), "message does not name the file: %s", m);
  cr_expect(strstr(m, what), "message for %s does not say \"%s\": %s", path, what, m);
  cr_expect_null(strchr(m, '\n'), "message is not one line: %s", m);
}

static const struct {
  const char *name, *what;
} BAD[] = {
    {"wrong_format", "not a policy file (format 'demokit.dataset', expected 'demokit.policy')"},
    {"version_2", "policy format version 2; this build reads version 1"},
    {"version_string", "attribute 'version' is missing or not an integer"},
    {"missing_arch", "attribute 'arch' is missing"},
    {"arch_garbage", "attribute 'arch': nn arch JSON: invalid JSON"},
    {"arch_unknown_key", "unknown key \"hiden\""},
    {"dims_sum", "observation keys add up to 20 values but the network takes 19"},
    {"dims_huge", "obs_dims[0] is not a size"},
    {"keys_not_list", "obs_keys and obs_dims must be JSON lists"},
    {"keys_dims_count", "5 obs_keys but 4 obs_dims"},
    {"missing_task", "attribute 'task' is missing"},
    {"control_hz_negative", "control_hz -20 is not a rate"},
    {"info_not_object", "attribute 'info' is not a JSON object"},
    {"missing_tensor", "/weights/l1.bias is missing"},
    {"wrong_shape", "/weights/l0.weight has shape (19, 40), the architecture needs (40, 19)"},
    {"wrong_rank", "/weights/l0.bias has shape (1, 40), the architecture needs (40,)"},
    {"int_tensor", "/weights/l1.bias is not floating point"},
    {"nan_weight", "/weights/l1.weight has a non-finite value at flat index 42"},
    {"inf_mean", "/normalization/obs_mean has a non-finite value at flat index 2"},
    {"std_zero", "/normalization/obs_std[3] = 0, must be > 0"},
    {"scale_negative", "/normalization/act_scale[1] = -0.5, must be > 0"},
    {"stats_short", "/normalization/act_offset has shape (6,), the architecture needs (7,)"},
    {"extra_tensor", "/weights/l9.weight is not a tensor of the architecture in 'arch'"},
    {"missing_normalization", "group /normalization is missing"},
    {"missing_weights", "group /weights is missing"},
    {"chunk_not_dividing", "attribute 'chunk' (4) is not 1..64 dividing the network's 7 outputs"},
    {"chunk_zero", "attribute 'chunk' (0) is not 1..64 dividing the network's 7 outputs"},
    {"huge_layers", "attribute 'arch': nn arch: tensor l1.weight [16000, 16000] takes the network past"},
    {"big_layers", "/weights/l0.weight has shape (40, 19), the architecture needs (4000, 19)"},
    {"unwritten_tensor", "/weights/l1.weight has no data written"},
    {"big_unwritten", "/weights/l0.weight has no data written"},
    {"partly_written", "/weights/l1.weight has data written for only part of it"},
};

/* a valid file and its malformed copies in dir/bad */
static void make_bad_files(const char *dir, char *good, size_t n) {
  nnArch a = mkarch(NN_HEAD_GMM, NN_RELU, 1, 1);
  bcPolicy *p = make_lift(&a, 5);
  snprintf(good, n, "%s/good.h5", dir);
  cr_assert_eq(bc_policy_save(p, good), 0, "%s", tk_errmsg());
  bc_policy_free(p);
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s %s/bad", py(), tt_src("tests/bc/make_bad_policies.py"), good, dir);
  cr_assert_eq(rc, 0, "%s", out);
  char want[64];
  snprintf(want, sizeof want, "made %zu", sizeof BAD / sizeof BAD[0]);
  cr_assert(strstr(out, want), "%s (the case lists differ)", out);
  free(out);
}

Test(policy, load_rejects_malformed_files) {
  const char *dir = tt_tmpdir();
  char good[4200], path[4300];
  make_bad_files(dir, good, sizeof good);
  bcPolicy *p = bc_policy_load(good);
  cr_assert(p, "%s", tk_errmsg());
  bc_policy_free(p);
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    snprintf(path, sizeof path, "%s/bad/%s.h5", dir, BAD[i].name);
    expect_load_fails(path, BAD[i].what);
  }
}

Test(policy, load_rejects_non_policies) {
  const char *dir = tt_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/policy.txt", dir);
  const char *text = "this is not a policy\n";
  write_file(path, text, strlen(text));
  expect_load_fails(path, "not an HDF5 file");
  snprintf(path, sizeof path, "%s/empty.h5", dir);
  write_file(path, "", 0);
  expect_load_fails(path, "not an HDF5 file");
  snprintf(path, sizeof path, "%s/missing.h5", dir);
  expect_load_fails(path, "no such file");
  snprintf(path, sizeof path, "%s/no/such/dir/policy.h5", dir);
  expect_load_fails(path, "no such file");
  /* a directory */
  expect_load_fails(dir, "not an HDF5 file");

  /* an HDF5 file of another kind (a dataset), and truncated policies: refused, never a crash */
  nnArch a = mkarch(NN_HEAD_MSE, NN_TANH, 1, 1);
  bcPolicy *p = make_lift(&a, 11);
  snprintf(path, sizeof path, "%s/good.h5", dir);
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  bc_policy_free(p);
  size_t n = 0;
  char *bytes = read_file(path, &n);
  char *out = NULL;
  char other[4200];
  snprintf(other, sizeof other, "%s/other.h5", dir);
  int rc =
      tt_run(&out, "%s -c \"import h5py; f = h5py.File('%s', 'w'); f['data/x'] = [1.0, 2.0]\"", py(), other);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  expect_load_fails(other, "attribute 'format' is missing");
  size_t cuts[] = {8, 100, 800, n / 2, n - 1};
  for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
    snprintf(path, sizeof path, "%s/cut%zu.h5", dir, cuts[i]);
    write_file(path, bytes, cuts[i]);
    expect_load_fails(path, ""); /* any message, naming the file */
    printf("truncated to %zu of %zu bytes: %s\n", cuts[i], n, tk_errmsg());
  }
  /* bytes overwritten inside the file (same size): loaded or refused with the file named, never a crash */
  int refused = 0, tried = 0;
  for (size_t at = 512; at + 48 < n; at += 700, tried++) {
    char *c = malloc(n);
    cr_assert(c);
    memcpy(c, bytes, n);
    memset(c + at, 0xA5, 48);
    snprintf(path, sizeof path, "%s/corrupt%zu.h5", dir, at);
    write_file(path, c, n);
    free(c);
    tk_error_clear();
    bcPolicy *q = bc_policy_load(path);
    if (!q) {
      refused++;
      cr_expect(strstr(tk_errmsg(), path), "%s", tk_errmsg());
    }
    bc_policy_free(q);
  }
  printf("corrupted files: %d of %d refused\n", refused, tried);
  free(bytes);
}

/* kB of a /proc/self/status line ("VmHWM:", "VmSize:"), -1 if absent */
static long status_kb(const char *key) {
  FILE *f = fopen("/proc/self/status", "r");
  char line[256];
  long v = -1;
  while (f && fgets(line, sizeof line, f))
    if (!strncmp(line, key, strlen(key))) v = atol(line + strlen(key));
  if (f) fclose(f);
  return v;
}

/* A small file that declares a huge network is refused from what it declares, before anything of that
 * size is allocated: the peak memory of a fresh process that loads each such file stays small (the
 * loader used to allocate the declared network with its training state first: 4 GB and 10 s for the
 * 16000-wide one). Measured in a child process (its address space capped, so a regression fails fast
 * instead of taking the machine's memory); the time is printed, not asserted. */
Test(policy, huge_declared_networks_cost_no_memory) {
  const char *dir = tt_tmpdir();
  char good[4200];
  make_bad_files(dir, good, sizeof good);
  static const struct {
    const char *name, *tensor; /* the file, the tensor its message names */
  } cases[] = {{"huge_layers", "l1.weight"}, {"big_layers", "l0.weight"}, {"big_unwritten", "l0.weight"}};
  const size_t nc = sizeof cases / sizeof cases[0];
  int fd[2];
  cr_assert_eq(pipe(fd), 0);
  fflush(stdout);
  pid_t pid = fork();
  cr_assert_geq(pid, 0);
  if (pid == 0) {
    close(fd[0]);
    long vm = status_kb("VmSize:");
    struct rlimit lim = {.rlim_cur = (rlim_t)(vm + 1024 * 1024) * 1024, .rlim_max = RLIM_INFINITY};
    setrlimit(RLIMIT_AS, &lim); /* best effort: 1 GiB more than the process maps now */
    char out[4096] = "", path[4300];
    size_t at = 0;
    for (size_t i = 0; i < nc; i++) {
      snprintf(path, sizeof path, "%s/bad/%s.h5", dir, cases[i].name);
      struct stat st;
      stat(path, &st);
      double t0 = tk_now_s();
      tk_error_clear();
      bcPolicy *p = bc_policy_load(path);
      double ms = 1e3 * (tk_now_s() - t0);
      at += (size_t)snprintf(out + at, sizeof out - at, "%s %lld %.2f %d %s\n", cases[i].name,
                             (long long)st.st_size, ms, p == NULL, tk_errmsg());
      bc_policy_free(p);
    }
    snprintf(out + at, sizeof out - at, "VmHWM %ld\n", status_kb("VmHWM:"));
    if (write(fd[1], out, strlen(out)) < 0) _exit(2);
    _exit(0);
  }
  close(fd[1]);
  char buf[4096];
  size_t n = 0;
  ssize_t k;
  while (n < sizeof buf - 1 && (k = read(fd[0], buf + n, sizeof buf - 1 - n)) > 0)
    n += (size_t)k;
  buf[n] = 0;
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child failed (status %d): %s", status, buf);
  printf("%s", buf);
  for (size_t i = 0; i < nc; i++) {
    char want[64];
    snprintf(want, sizeof want, "%s ", cases[i].name);
    const char *line = strstr(buf, want);
    cr_assert(line, "%s", buf);
    long long size = 0;
    double ms = 0;
    int refused = 0;
    cr_assert_eq(sscanf(line + strlen(want), "%lld %lf %d", &size, &ms, &refused), 3, "%s", line);
    cr_expect(refused, "%s was loaded", cases[i].name);
    cr_expect_lt(size, 64 * 1024, "%s is not a small file (%lld bytes)", cases[i].name, size);
    const char *eol = strchr(line, '\n');
    char msg[1024];
    snprintf(msg, sizeof msg, "%.*s", (int)(eol - line), line);
    cr_expect(strstr(msg, cases[i].tensor), "the message does not name %s: %s", cases[i].tensor, msg);
  }
  const char *h = strstr(buf, "VmHWM ");
  cr_assert(h, "%s", buf);
  long hwm = atol(h + 6);
  printf("peak resident memory of the process that loaded them: %.1f MB\n", hwm / 1024.0);
  cr_assert_gt(hwm, 0);
  cr_assert_lt(hwm, 200 * 1024, "peak memory %ld kB loading small files that declare huge networks", hwm);
}

/* The reference reader refuses the same files, with a message rather than a traceback. */
Test(policy, numpy_reader_rejects_malformed_files) {
  const char *dir = tt_tmpdir();
  char good[4200];
  make_bad_files(dir, good, sizeof good);
  char *out = NULL;
  int rc = tt_run(&out,
                  "%s -B -c \"import sys, glob; sys.path.insert(0, '%s'); import policy_forward as pf\n"
                  "pf.load('%s')\n"
                  "for path in sorted(glob.glob('%s/bad/*.h5')):\n"
                  "    try:\n"
                  "        pf.load(path)\n"
                  "        print('ACCEPTED', path)\n"
                  "    except pf.PolicyError as e:\n"
                  "        print('refused', path.split('/')[-1], e)\n\"",
                  py(), tt_src("tests/bc"), good, dir);
  cr_assert_eq(rc, 0, "%s", out);
  printf("%s", out);
  cr_assert_null(strstr(out, "ACCEPTED"), "%s", out);
  for (size_t i = 0; i < sizeof BAD / sizeof BAD[0]; i++) {
    char want[128];
    snprintf(want, sizeof want, "refused %s.h5 ", BAD[i].name);
    cr_expect(strstr(out, want), "%s not refused by the numpy reader:\n%s", BAD[i].name, out);
  }
  free(out);
}

/* ---- binding to a task ---------------------------------------------------------------------------- */

static capModel *lift_model(void) {
  capOpts o;
  cap_opts_default(&o);
  o.task = "lift";
  capModel *m = NULL;
  cr_assert_eq(cap_model_load(&o, &m), 0, "%s", tk_errmsg());
  return m;
}

static int bind_keys(const capModel *m, int nkeys, const char *const *keys, const int *dims, int act_dim,
                     bcBinding *b) {
  nnArch a = mkarch(NN_HEAD_MSE, NN_RELU, 0, 0);
  a.obs_dim = 0;
  for (int i = 0; i < nkeys; i++)
    a.obs_dim += dims[i];
  a.act_dim = act_dim;
  bcPolicy *p = bc_policy_make(&a, nkeys, keys, dims, 1);
  cr_assert(p, "%s", tk_errmsg());
  tk_error_clear();
  int rc = bc_bind(p, m, b);
  bc_policy_free(p);
  return rc;
}

Test(policy, bind_fits_lift) {
  capModel *m = lift_model();
  const capSpec *s = cap_spec(m);
  bcBinding b;
  cr_assert_eq(bind_keys(m, 4, LIFT_KEYS, LIFT_DIMS, 7, &b), 0, "%s", tk_errmsg());
  cr_assert_eq(b.nkeys, 4);
  cr_assert_eq(b.obs_dim, 19);
  for (int i = 0; i < 4; i++) {
    cr_assert_str_eq(s->obs[b.obs_index[i]].name, LIFT_KEYS[i]);
    cr_assert_eq(b.dim[i], LIFT_DIMS[i]);
  }
  /* every low-dim key, in another order than the task's; gathered values are the env's */
  const char *keys[] = {"robot0_joint_vel", "robot0_eef_pos",      "object",
                        "robot0_joint_pos", "robot0_gripper_qpos", "robot0_eef_quat"};
  int dims[] = {7, 3, 10, 7, 2, 4};
  cr_assert_eq(bind_keys(m, 6, keys, dims, 7, &b), 0, "%s", tk_errmsg());
  cr_assert_eq(b.obs_dim, 33);
  capEnv *e = NULL;
  cr_assert_eq(cap_env_make(m, &e), 0, "%s", tk_errmsg());
  capObs o;
  cr_assert_eq(cap_env_reset(e, 3, &o), 0, "%s", tk_errmsg());
  float x[33];
  bc_gather(&b, &o, x);
  double eef[3];
  cap_env_eef_pos(e, eef);
  for (int j = 0; j < 3; j++)
    cr_assert_eq(x[7 + j], (float)eef[j]);
  int off = 0;
  for (int i = 0; i < 6; i++) {
    const double *v = o.v[b.obs_index[i]];
    for (int j = 0; j < dims[i]; j++)
      cr_assert_eq(x[off + j], (float)v[j], "%s[%d]", keys[i], j);
    off += dims[i];
  }
  cap_env_free(e);
  cap_model_free(m);
}

Test(policy, bind_refuses_mismatches) {
  capModel *m = lift_model();
  bcBinding b;
  static const char *task_side[] = {"object(10)",          "robot0_eef_pos(3)",
                                    "robot0_eef_quat(4)",  "robot0_gripper_qpos(2)",
                                    "robot0_joint_pos(7)", "robot0_joint_vel(7)"};
  /* a key of the wrong size */
  const char *k1[] = {"object", "robot0_eef_pos"};
  int d1[] = {10, 4};
  cr_assert_eq(bind_keys(m, 2, k1, d1, 7, &b), TK_EINVAL);
  const char *msg = tk_errmsg();
  cr_assert(strstr(msg, "do not fit task 'lift'"), "%s", msg);
  cr_assert(strstr(msg, "the policy reads object(10), robot0_eef_pos(4)"), "%s", msg);
  for (size_t i = 0; i < sizeof task_side / sizeof task_side[0]; i++)
    cr_assert(strstr(msg, task_side[i]), "the task's %s is not listed: %s", task_side[i], msg);
  printf("%s\n", msg);
  /* a key the task does not have */
  const char *k2[] = {"robot0_eef_pos", "cube_pos"};
  int d2[] = {3, 3};
  cr_assert_eq(bind_keys(m, 2, k2, d2, 7, &b), TK_EINVAL);
  msg = tk_errmsg();
  cr_assert(strstr(msg, "the policy reads robot0_eef_pos(3), cube_pos(3)"), "%s", msg);
  for (size_t i = 0; i < sizeof task_side / sizeof task_side[0]; i++)
    cr_assert(strstr(msg, task_side[i]), "the task's %s is not listed: %s", task_side[i], msg);
  /* the right keys, the wrong action size */
  cr_assert_eq(bind_keys(m, 4, LIFT_KEYS, LIFT_DIMS, 6, &b), TK_EINVAL);
  msg = tk_errmsg();
  cr_assert(strstr(msg, "acts with 6 values but task 'lift' takes 7"), "%s", msg);
  cap_model_free(m);
}

/* ---- atomic saves ------------------------------------------------------------------------------- */

Test(policy, failed_save_keeps_the_old_file) {
  nnArch a = mkarch(NN_HEAD_GAUSSIAN, NN_ELU, 1, 0);
  bcPolicy *p = make_lift(&a, 21), *q = make_lift(&a, 22);
  const char *dir = tt_tmpdir();
  char path[4200];
  snprintf(path, sizeof path, "%s/policy.h5", dir);
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  size_t n0 = 0, n1 = 0;
  char *before = read_file(path, &n0);

  /* the new file cannot be written whole: a read-only directory for a normal user; root writes there
   * anyway, so for root a file size limit far below the policy's size makes the write fail. The save
   * runs in a child that ends with _exit: libhdf5 keeps a file whose writes failed open and trips over
   * it in its exit handler, which is no concern of the saved file's */
  int root = geteuid() == 0, fds[2];
  cr_assert_eq(pipe(fds), 0);
  cr_assert_eq(chmod(dir, 0555), 0);
  pid_t pid = fork();
  if (pid == 0) {
    struct rlimit lim;
    signal(SIGXFSZ, SIG_IGN);
    if (root && (getrlimit(RLIMIT_FSIZE, &lim) || (lim.rlim_cur = 2048, setrlimit(RLIMIT_FSIZE, &lim))))
      _exit(3);
    tk_error_clear();
    int crc = bc_policy_save(q, path);
    dprintf(fds[1], "%d %s", crc, tk_errmsg());
    _exit(0);
  }
  close(fds[1]);
  static char reply[TK_ERRMSG_MAX + 32];
  ssize_t got = 0, k;
  while ((k = read(fds[0], reply + got, sizeof reply - 1 - (size_t)got)) > 0)
    got += k;
  reply[got > 0 ? got : 0] = 0;
  close(fds[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  chmod(dir, 0755);
  cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "the saving child failed (status %d)", st);
  int rc = atoi(reply);
  const char *msg = strchr(reply, ' ') ? strchr(reply, ' ') + 1 : "";
  cr_assert_neq(rc, 0, "saved although the file could not be written");
  cr_assert(strstr(msg, path), "%s", msg);
  cr_assert(strstr(msg, "policy not saved"), "%s", msg);
  printf("%s\n", msg);
  char *after = read_file(path, &n1);
  cr_assert(n1 == n0 && !memcmp(before, after, n0), "the old file changed");
  cr_assert_eq(dir_entries(dir), 1, "a temporary file was left behind");
  bcPolicy *r = bc_policy_load(path);
  cr_assert(r, "%s", tk_errmsg());
  expect_same_policy(p, r);
  bc_policy_free(r);
  free(after);

  /* the rename fails (the path is a directory): the temporary file is removed */
  char sub[4300];
  snprintf(sub, sizeof sub, "%s/sub.h5", dir);
  cr_assert_eq(mkdir(sub, 0755), 0);
  tk_error_clear();
  cr_assert_neq(bc_policy_save(q, sub), 0);
  cr_assert(strstr(tk_errmsg(), sub), "%s", tk_errmsg());
  cr_assert_eq(dir_entries(dir), 2, "a temporary file was left behind");
  /* a directory that does not exist */
  char nodir[4300];
  snprintf(nodir, sizeof nodir, "%s/no/such/policy.h5", dir);
  tk_error_clear();
  cr_assert_neq(bc_policy_save(q, nodir), 0);
  cr_assert(strstr(tk_errmsg(), nodir), "%s", tk_errmsg());

  /* and a save that works replaces the file */
  cr_assert_eq(bc_policy_save(q, path), 0, "%s", tk_errmsg());
  r = bc_policy_load(path);
  cr_assert(r, "%s", tk_errmsg());
  expect_same_policy(q, r);
  bc_policy_free(r);
  free(before);
  bc_policy_free(p);
  bc_policy_free(q);
}

/* ---- action chunking ------------------------------------------------------------------------------ */
/* A chunked policy saves and loads with its chunk; bc_policy_act gives the first action of the chunk,
 * bc_policy_act_chunk all of them; the numpy reader agrees. */
Test(policy, chunk_round_trip_and_numpy) {
  nnArch a = mkarch(NN_HEAD_MSE, NN_RELU, 0, 1);
  a.act_dim = 3 * 7;
  bcPolicy *p = make_lift(&a, 11);
  cr_assert_eq(bc_policy_set_chunk(p, 3), 0, "%s", tk_errmsg());
  cr_assert_eq(p->act_dim, 7);
  cr_assert_neq(bc_policy_set_chunk(p, 4), 0, "4 does not divide 21");
  char path[4200];
  snprintf(path, sizeof path, "%s/chunk.h5", tt_tmpdir());
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  bcPolicy *q = bc_policy_load(path);
  cr_assert(q, "%s", tk_errmsg());
  cr_assert_eq(q->chunk, 3);
  cr_assert_eq(q->act_dim, 7);
  bcPolicy *c = bc_policy_clone(q);
  cr_assert(c && c->chunk == 3 && c->act_dim == 7);
  float *obs = observations(p, 4, 3);
  nnWork *w = nn_work_make(q->net, 4);
  float *scratch = malloc(sizeof(float) * 4 * (size_t)bc_policy_scratch(q));
  double first[4 * 7], all[4 * 3 * 7], cfirst[4 * 7];
  cr_assert_eq(bc_policy_act(q, w, obs, 4, scratch, first), 0);
  cr_assert_eq(bc_policy_act_chunk(q, w, obs, 4, scratch, all), 0);
  cr_assert_eq(bc_policy_act(c, w, obs, 4, scratch, cfirst), 0);
  for (int b = 0; b < 4; b++)
    for (int i = 0; i < 7; i++) {
      cr_assert_eq(first[b * 7 + i], all[b * 21 + i], "row %d action %d: the chunk's first", b, i);
      cr_assert_eq(first[b * 7 + i], cfirst[b * 7 + i], "the clone acts the same");
    }
  /* the numpy reference reads the chunk and gives the first action */
  char obs_path[4300];
  snprintf(obs_path, sizeof obs_path, "%s/chunk_obs.f32", tt_tmpdir());
  write_file(obs_path, obs, sizeof(float) * 4 * (size_t)q->obs_dim);
  char *out = NULL;
  int rc =
      tt_run(&out,
             "%s -B -c \"import sys, numpy as np; sys.path.insert(0, '%s'); import policy_forward as pf\n"
             "p = pf.load('%s'); o = np.fromfile('%s', dtype='<f4').reshape(4, -1)\n"
             "print(p['attrs']['chunk']); print(' '.join('%%.9g' %% v for v in pf.act(p, o).ravel()))\"",
             py(), tt_src("tests/bc"), path, obs_path);
  cr_assert_eq(rc, 0, "%s", out);
  int k = 0;
  char *line2 = strchr(out, '\n');
  cr_assert(sscanf(out, "%d", &k) == 1 && k == 3 && line2, "%s", out);
  char *s = line2 + 1;
  for (int j = 0; j < 4 * 7; j++) {
    double v = strtod(s, &s);
    cr_assert_float_eq(v, first[j], 1e-5, "numpy %g, C %g at %d", v, first[j], j);
  }
  free(out);
  free(scratch);
  free(obs);
  nn_work_free(w);
  bc_policy_free(c);
  bc_policy_free(q);
  bc_policy_free(p);
}

/* Temporal ensembling: the action for step t is the mean of what the chunks predicted at t, t-1, ...,
 * t-k+1 said about step t. */
Test(policy, ensemble_averages_overlapping_chunks) {
  nnArch a = mkarch(NN_HEAD_MSE, NN_RELU, 0, 1);
  a.act_dim = 3 * 7;
  bcPolicy *p = make_lift(&a, 2);
  cr_assert_eq(bc_policy_set_chunk(p, 3), 0);
  bcEnsemble *e = bc_ensemble_make(p);
  cr_assert(e);
  /* the chunk predicted at step t says 100 t + 10 j + i about step t + j, action i */
  double pred[3 * 7], act[7];
  for (int round = 0; round < 2; round++) { /* a reset starts over */
    bc_ensemble_reset(e);
    for (int t = 0; t < 6; t++) {
      for (int j = 0; j < 3; j++)
        for (int i = 0; i < 7; i++)
          pred[j * 7 + i] = 100.0 * t + 10.0 * j + i;
      bc_ensemble_step(e, pred, act);
      int n = t + 1 < 3 ? t + 1 : 3;
      for (int i = 0; i < 7; i++) {
        double want = 0;
        for (int j = 0; j < n; j++) /* made at t - j, its element j */
          want += 100.0 * (t - j) + 10.0 * j + i;
        want /= n;
        cr_assert_float_eq(act[i], want, 1e-9, "step %d action %d: %g, want %g", t, i, act[i], want);
      }
    }
  }
  bc_ensemble_free(e);
  bc_policy_free(p);
}

/* ---- recurrent policies (BC-RNN) ---------------------------------------------------------------- */
/* A recurrent policy saves and loads with its LSTM; it acts one step at a time through its episode
 * state, whose LSTM state goes back to zero every rnn_horizon steps and at a reset; the numpy reader,
 * given the episode's steps, computes the same actions; the batch calls refuse it. */
Test(policy, recurrent_round_trip_steps_and_numpy) {
  nnArch a = mkarch(NN_HEAD_GMM, NN_ELU, 1, 1);
  a.rnn_layers = 2;
  a.rnn_hidden = 9;
  a.rnn_horizon = 4;
  bcPolicy *p = make_lift(&a, 21);
  cr_assert_neq(bc_policy_set_chunk(p, 7), 0, "a recurrent policy predicts one action per step");
  cr_assert(bc_policy_has_state(p));
  char path[4200];
  snprintf(path, sizeof path, "%s/rnn.h5", tt_tmpdir());
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  bcPolicy *q = bc_policy_load(path);
  cr_assert(q, "%s", tk_errmsg());
  cr_assert(q->arch.rnn_layers == 2 && q->arch.rnn_hidden == 9 && q->arch.rnn_horizon == 4);
  expect_same_policy(p, q);

  enum { N = 11 };
  float *obs = observations(q, N, 5);
  memcpy(obs + 4 * OBS, obs, sizeof(float) * OBS); /* step 4 sees step 0's observation after a reset */
  nnWork *w = nn_work_make(q->net, 1);
  float *scratch = malloc(sizeof(float) * (size_t)bc_policy_scratch(q));
  cr_assert(w && scratch);
  double batch[ACT];
  cr_assert_neq(bc_policy_act(q, w, obs, 1, scratch, batch), 0, "bc_policy_act refuses a recurrent policy");
  cr_assert(strstr(tk_errmsg(), "recurrent"), "%s", tk_errmsg());
  bcEnsemble *e = bc_ensemble_make(q);
  cr_assert(e, "%s", tk_errmsg());
  double act[2][N * ACT];
  for (int round = 0; round < 2; round++) { /* a reset starts the episode over */
    bc_ensemble_reset(e);
    for (int t = 0; t < N; t++)
      cr_assert_eq(bc_policy_step(q, w, e, obs + t * OBS, scratch, act[round] + t * ACT), 0, "%s",
                   tk_errmsg());
  }
  int differs = 0;
  for (int i = 0; i < ACT; i++) {
    cr_assert_eq(act[0][4 * ACT + i], act[0][i], "step 4 starts from a zero state, as step 0 did");
    differs |= act[0][5 * ACT + i] != act[0][1 * ACT + i];
  }
  cr_assert(differs || memcmp(obs + 5 * OBS, obs + OBS, sizeof(float) * OBS) == 0);
  cr_assert_eq(memcmp(act[0], act[1], sizeof act[0]), 0, "the same episode after a reset");

  char obs_path[4300];
  snprintf(obs_path, sizeof obs_path, "%s/rnn_obs.f32", tt_tmpdir());
  write_file(obs_path, obs, sizeof(float) * N * OBS);
  char *out = NULL;
  int rc =
      tt_run(&out,
             "%s -B -c \"import sys, numpy as np; sys.path.insert(0, '%s'); import policy_forward as pf\n"
             "p = pf.load('%s'); o = np.fromfile('%s', dtype='<f4').reshape(%d, -1)\n"
             "print(' '.join('%%.9g' %% v for v in pf.act(p, o).ravel()))\"",
             py(), tt_src("tests/bc"), path, obs_path, N);
  cr_assert_eq(rc, 0, "%s", out);
  char *s = out;
  for (int j = 0; j < N * ACT; j++) {
    char *end;
    double v = strtod(s, &end);
    cr_assert(end != s, "numpy printed %d of %d actions: %s", j, N * ACT, out);
    s = end;
    cr_assert_float_eq(v, act[0][j], 1e-5, "numpy %g, C %g at step %d action %d", v, act[0][j], j / ACT,
                       j % ACT);
  }
  free(out);
  rc = tt_run(&out, "%s %s %s", py(), tt_src("tests/bc/policy_forward.py"), path);
  cr_assert(rc == 0 && strstr(out, "lstm=2x9 horizon=4"), "%s", out);
  free(out);
  bc_ensemble_free(e);
  free(scratch);
  free(obs);
  nn_work_free(w);
  bc_policy_free(q);
  bc_policy_free(p);
}
