/* bc residual policies (rl-finetune's --scheme residual): a frozen base policy of any kind acts first and a
 * small network corrects its action, a = clip(a_base + scale * d, -1, 1) in the normalized action space.
 * Checked here in-process on the real lift environment: the actions against a reference computed from the
 * base's own actor and the residual network's forward, the clip, a zero correction giving the base's
 * action, save/load and clone bit for bit (the base in /base of the same file), the refusals of the batch
 * calls, and files whose residual parts are damaged (made with h5py). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bc.h"
#include "tt.h"

static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

static const char *const KEYS[] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
static const int DIMS[] = {10, 3, 4, 2};
#define OBS 19
#define ACT 7
#define STEPS 40

static void fill(float *v, int64_t n, tkRng *r, double lo, double hi) {
  for (int64_t i = 0; i < n; i++)
    v[i] = (float)tk_rng_range(r, lo, hi);
}

/* weights in +-sqrt(3 / fan_in) * gain, biases small; statistics around lift's */
static void randomize_net(nnNet *net, tkRng *r, double gain) {
  for (int i = 0; i < net->n_tensors; i++) {
    nnTensor *t = &net->tensors[i];
    if (t->ndim == 2) {
      double a = gain * sqrt(3.0 / (double)t->shape[1]);
      fill(t->data, t->numel, r, -a, a);
    } else {
      fill(t->data, t->numel, r, -0.3, 0.3);
    }
  }
}

/* A recurrent base (it has an episode state, which the residual's actor must carry) on lift's keys. */
static bcPolicy *make_base(uint64_t seed) {
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = OBS;
  a.act_dim = ACT;
  a.n_hidden = 1;
  a.hidden[0] = 24;
  a.rnn_layers = 1;
  a.rnn_hidden = 12;
  a.rnn_horizon = 6;
  a.head = NN_HEAD_MSE;
  a.tanh = 1;
  bcPolicy *p = bc_policy_make(&a, 4, KEYS, DIMS, seed);
  cr_assert(p, "%s", tk_errmsg());
  tkRng r;
  tk_rng_seed(&r, seed);
  randomize_net(p->net, &r, 1.5);
  for (int i = 0; i < OBS; i++) {
    p->obs_mean[i] = (float)tk_rng_range(&r, -0.2, 0.2);
    p->obs_std[i] = (float)tk_rng_range(&r, 0.05, 0.5);
  }
  fill(p->act_offset, ACT, &r, -0.1, 0.1);
  fill(p->act_scale, ACT, &r, 0.5, 1.0);
  snprintf(p->task, sizeof p->task, "lift");
  p->control_hz = 20;
  return p;
}

/* A residual on a copy of base: Gaussian head (as rl-finetune's), random weights and statistics. */
static bcPolicy *make_residual(const bcPolicy *base, double scale, uint64_t seed) {
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = OBS + ACT;
  a.act_dim = ACT;
  a.n_hidden = 2;
  a.hidden[0] = 16;
  a.hidden[1] = 16;
  a.head = NN_HEAD_GAUSSIAN;
  bcPolicy *b = bc_policy_clone(base);
  cr_assert(b, "%s", tk_errmsg());
  bcPolicy *p = bc_policy_make_residual(&a, 4, KEYS, DIMS, b, scale, seed);
  cr_assert(p, "%s", tk_errmsg());
  cr_assert_eq(p->obs_dim, OBS, "the keys' values");
  cr_assert_eq(p->arch.obs_dim, OBS + ACT, "and the base's action");
  tkRng r;
  tk_rng_seed(&r, seed + 7);
  randomize_net(p->net, &r, 2.0);
  for (int i = 0; i < OBS; i++) {
    p->obs_mean[i] = (float)tk_rng_range(&r, -0.2, 0.2);
    p->obs_std[i] = (float)tk_rng_range(&r, 0.05, 0.5);
  }
  cr_assert(bc_policy_has_state(p), "a residual on a recurrent base has an episode state");
  return p;
}

typedef struct {
  capModel *m;
  capEnv *env;
} lift;

static void lift_open(lift *l) {
  capOpts co;
  cap_opts_default(&co);
  co.task = "lift";
  cr_assert_eq(cap_model_load(&co, &l->m), 0, "%s", tk_errmsg());
  cr_assert_eq(cap_env_make(l->m, &l->env), 0, "%s", tk_errmsg());
}

static void lift_close(lift *l) {
  cap_env_free(l->env);
  cap_model_free(l->m);
}

/* One episode of STEPS steps acted by p from seed: the actions [STEPS, ACT], and the observations' low-dim
 * keys gathered [STEPS, OBS] (the environment steps with p's own actions). */
static void episode(lift *l, const bcPolicy *p, uint64_t seed, double *acts, float *obs) {
  bcActor *a = bc_actor_make(p, l->m);
  cr_assert(a, "%s", tk_errmsg());
  bcBinding b;
  cr_assert_eq(bc_bind(p, l->m, &b), 0, "%s", tk_errmsg());
  capObs o;
  cr_assert_eq(cap_env_reset(l->env, seed, &o), 0, "%s", tk_errmsg());
  bc_actor_reset(a, seed);
  for (int t = 0; t < STEPS; t++) {
    if (obs) bc_gather(&b, &o, obs + (size_t)t * OBS);
    cr_assert_eq(bc_actor_step(a, &o, acts + (size_t)t * ACT), 0, "%s", tk_errmsg());
    capStep st;
    cr_assert_eq(cap_env_step(l->env, acts + (size_t)t * ACT, &st), 0, "%s", tk_errmsg());
    o = st.obs;
  }
  bc_actor_free(a);
}

/* The reference: the base acted on the same observations with its own state, the residual network's
 * forward on [normalized keys | normalized base action], the clip; counts of clipped and free values. */
static void reference(const bcPolicy *p, const float *obs, double *want, int *clipped, int *free_) {
  const bcPolicy *b = p->base;
  nnWork *wb = nn_work_make(b->net, 1), *wr = nn_work_make(p->net, 1);
  bcEnsemble *e = bc_ensemble_make(b);
  float *scratch = malloc(sizeof(float) * (size_t)bc_policy_scratch(b));
  cr_assert(wb && wr && e && scratch);
  bc_ensemble_reset(e);
  *clipped = *free_ = 0;
  for (int t = 0; t < STEPS; t++) {
    double ab[ACT];
    cr_assert_eq(bc_policy_step(b, wb, e, obs + (size_t)t * OBS, scratch, ab), 0, "%s", tk_errmsg());
    float x[OBS + ACT], d[ACT];
    bc_policy_normalize(p, obs + (size_t)t * OBS, 1, x);
    for (int i = 0; i < ACT; i++)
      x[OBS + i] = (float)((ab[i] - p->act_offset[i]) / p->act_scale[i]);
    cr_assert_eq(nn_act(p->net, wr, x, 1, d), 0, "%s", tk_errmsg());
    for (int i = 0; i < ACT; i++) {
      double v = (double)x[OBS + i] + p->residual_scale * (double)d[i];
      if (v <= -1 || v >= 1)
        ++*clipped;
      else
        ++*free_;
      float n = (float)fmax(-1, fmin(1, v));
      want[t * ACT + i] = ab[i] + (double)p->act_scale[i] * ((double)n - (double)x[OBS + i]);
    }
  }
  free(scratch);
  bc_ensemble_free(e);
  nn_work_free(wb);
  nn_work_free(wr);
}

Test(residual, acts_as_base_plus_clipped_correction_and_round_trips) {
  bcPolicy *base = make_base(11);
  bcPolicy *p = make_residual(base, 0.6, 12);
  lift l;
  lift_open(&l);
  double acts[STEPS * ACT], want[STEPS * ACT];
  float obs[STEPS * OBS];
  episode(&l, p, 5, acts, obs);
  int clipped, free_;
  reference(p, obs, want, &clipped, &free_);
  for (int k = 0; k < STEPS * ACT; k++)
    cr_assert_float_eq(acts[k], want[k], 1e-9, "step %d action %d: %.9g, want %.9g", k / ACT, k % ACT,
                       acts[k], want[k]);
  cr_assert(clipped > 0 && free_ > 0, "the episode has clipped (%d) and free (%d) values", clipped, free_);

  /* the file: the residual with its base in /base; loaded and cloned, the same actions bit for bit */
  char path[4200];
  snprintf(path, sizeof path, "%s/residual.h5", tt_tmpdir());
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  bcPolicy *q = bc_policy_load(path);
  cr_assert(q, "%s", tk_errmsg());
  cr_assert(q->base && q->base->arch.rnn_layers == 1 && q->residual_scale == 0.6);
  bcPolicy *c = bc_policy_clone(q);
  cr_assert(c && c->base, "%s", tk_errmsg());
  double acts_q[STEPS * ACT], acts_c[STEPS * ACT];
  episode(&l, q, 5, acts_q, NULL);
  episode(&l, c, 5, acts_c, NULL);
  cr_assert_eq(memcmp(acts, acts_q, sizeof acts), 0, "loaded: the same actions");
  cr_assert_eq(memcmp(acts, acts_c, sizeof acts), 0, "cloned: the same actions");

  /* the batch calls refuse it: it acts through bc_actor_step, with its base */
  nnWork *w = nn_work_make(q->net, 1);
  float scratch[OBS + ACT + OBS];
  double one[ACT];
  cr_assert_neq(bc_policy_act(q, w, obs, 1, scratch, one), 0);
  cr_assert(strstr(tk_errmsg(), "residual") && strstr(tk_errmsg(), "bc_actor_step"), "%s", tk_errmsg());
  nn_work_free(w);

  bc_policy_free(c);
  bc_policy_free(q);
  bc_policy_free(p);
  bc_policy_free(base);
  lift_close(&l);
}

/* With the correction's mean rows at zero (rl-finetune's start) the residual acts as its base, bit for bit
 * (and so the episode is the same episode). */
Test(residual, zero_correction_is_the_base) {
  bcPolicy *base = make_base(21);
  bcPolicy *p = make_residual(base, 0.5, 22);
  nnLayer *out = &p->net->layer[p->net->n_linear - 1];
  const int in = p->net->dims[p->net->n_linear - 1];
  memset(out->w, 0, sizeof(float) * (size_t)ACT * (size_t)in);
  memset(out->b, 0, sizeof(float) * ACT);
  lift l;
  lift_open(&l);
  double a[STEPS * ACT], b[STEPS * ACT];
  episode(&l, p, 9, a, NULL);
  episode(&l, base, 9, b, NULL);
  cr_assert_eq(memcmp(a, b, sizeof a), 0, "the base's actions bit for bit");
  bc_policy_free(p);
  bc_policy_free(base);
  lift_close(&l);
}

Test(residual, make_refuses_bad_parts) {
  bcPolicy *base = make_base(31);
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = OBS + ACT;
  a.act_dim = ACT;
  a.head = NN_HEAD_GAUSSIAN;
  bcPolicy *b = bc_policy_clone(base);
  cr_assert_null(bc_policy_make_residual(&a, 4, KEYS, DIMS, b, 3.0, 1), "scale 3 is out of range");
  cr_assert(strstr(tk_errmsg(), "scale"), "%s", tk_errmsg());
  a.obs_dim = OBS;
  b = bc_policy_clone(base);
  cr_assert_null(bc_policy_make_residual(&a, 4, KEYS, DIMS, b, 0.5, 1),
                 "the inputs must hold the base action");
  bcPolicy *r = make_residual(base, 0.5, 32);
  a.obs_dim = OBS + ACT;
  cr_assert_null(bc_policy_make_residual(&a, 4, KEYS, DIMS, r, 0.5, 1), "no residual of a residual");
  cr_assert(strstr(tk_errmsg(), "residual"), "%s", tk_errmsg());
  bc_policy_free(base);
}

/* Damaged residual files (h5py): each refused with one message naming the file and the part. */
Test(residual, load_refuses_damaged_files) {
  bcPolicy *base = make_base(41);
  bcPolicy *p = make_residual(base, 0.5, 42);
  const char *dir = tt_tmpdir();
  static const struct {
    const char *name, *edit, *want;
  } cases[] = {
      {"scale_big", "f.attrs['residual_scale'] = 5.0", "residual_scale"},
      {"scale_nan", "f.attrs['residual_scale'] = float('nan')", "residual_scale"},
      {"scale_gone", "del f.attrs['residual_scale']", "residual_scale"},
      {"nested", "f.copy(f['base'], f, 'b2'); f.move('b2', 'base/base')", "residual policy itself"},
      {"base_weight_gone", "del f['base/weights/l0.bias']", "(/base)"},
      {"base_not_group", "del f['base']; f['base'] = [1.0]", "/base"},
      {"act_mismatch", "del f['base']; f.copy(g['/'], f, 'base')", "acts with"},
  };
  /* a base acting with 3 values, for act_mismatch */
  char other[4200];
  snprintf(other, sizeof other, "%s/other.h5", dir);
  {
    nnArch a;
    nn_arch_default(&a);
    a.obs_dim = OBS;
    a.act_dim = 3;
    bcPolicy *o = bc_policy_make(&a, 4, KEYS, DIMS, 1);
    cr_assert(o);
    cr_assert_eq(bc_policy_save(o, other), 0, "%s", tk_errmsg());
    bc_policy_free(o);
  }
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char path[4300];
    snprintf(path, sizeof path, "%s/%s.h5", dir, cases[i].name);
    cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
    char *out = NULL;
    int rc = tt_run(&out, "%s -c \"import h5py; f = h5py.File('%s', 'r+'); g = h5py.File('%s', 'r'); %s\"",
                    py(), path, other, cases[i].edit);
    cr_assert_eq(rc, 0, "%s: h5py: %s", cases[i].name, out);
    free(out);
    tk_error_clear();
    bcPolicy *q = bc_policy_load(path);
    cr_expect_null(q, "%s: loaded", cases[i].name);
    bc_policy_free(q);
    const char *msg = tk_errmsg();
    cr_expect(strstr(msg, path) && strstr(msg, cases[i].want), "%s: '%s' names the file and '%s'",
              cases[i].name, msg, cases[i].want);
    cr_expect(!strchr(msg, '\n'), "%s: one line", cases[i].name);
  }
  bc_policy_free(p);
  bc_policy_free(base);
}
