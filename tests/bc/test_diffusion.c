/* bc Diffusion Policy: the schedule and embedding against their closed forms, the policy file round trip
 * with a DDIM plan reproduced by the numpy reader (tests/bc/policy_forward.py) from the same starting noise,
 * seeded sampling, the receding horizon through the acting entry point, malformed diffusion settings
 * refused with a message, and bc-train --head diffusion -> bc-eval through the binaries. */
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

/* A lift-shaped diffusion policy (obs_horizon 2, horizon 6, exec 3, 40 levels, 8 DDIM steps, temb 8),
 * weights and statistics in general position; unet: a U-Net denoiser of 3 levels (8, 16, 16 channels,
 * kernel 5, 4 groups) and horizon 8, exec 4. */
static bcPolicy *make_diffusion_of(uint64_t seed, int ddpm, int unet) {
  bcDiffusion d;
  bc_diff_default(&d);
  d.horizon = unet ? 8 : 6;
  d.exec = unet ? 4 : 3;
  d.train_steps = 40;
  d.sample_steps = 8;
  d.temb = 8;
  d.ddpm = ddpm;
  nnArch a;
  nn_arch_default(&a);
  a.n_hidden = 2;
  a.hidden[0] = 48;
  a.hidden[1] = 33;
  a.head = NN_HEAD_MSE;
  a.tanh = 0;
  a.act_dim = d.horizon * ACT;
  a.obs_dim = d.obs_horizon * OBS + a.act_dim + d.temb;
  if (unet) {
    d.unet = 1;
    a.n_hidden = 0;
    a.unet =
        (nnUnetArch){.levels = 3, .down = {8, 16, 16}, .kernel = 5, .groups = 4, .horizon = 8, .temb = 8};
  }
  bcPolicy *p = bc_policy_make_diffusion(&a, 4, KEYS, DIMS, 0, NULL, &d, seed);
  cr_assert(p, "bc_policy_make_diffusion: %s", tk_errmsg());
  cr_assert_eq(p->chunk, d.horizon);
  cr_assert_eq(p->obs_dim, OBS);
  cr_assert_eq(p->act_dim, ACT);
  tkRng r;
  tk_rng_seed(&r, seed + 3);
  for (int i = 0; i < p->net->n_tensors; i++) {
    nnTensor *t = &p->net->tensors[i];
    double s = t->ndim == 2   ? sqrt(3.0 / (double)t->shape[1])
               : t->ndim == 3 ? sqrt(3.0 / (double)(t->shape[1] * t->shape[2]))
                              : 0.3;
    for (int64_t k = 0; k < t->numel; k++)
      t->data[k] = (float)tk_rng_range(&r, -s, s);
  }
  for (int i = 0; i < OBS; i++) {
    p->obs_mean[i] = (float)tk_rng_range(&r, -1, 1);
    p->obs_std[i] = (float)tk_rng_range(&r, 0.2, 2);
  }
  for (int i = 0; i < ACT; i++) {
    p->act_offset[i] = (float)tk_rng_range(&r, -0.2, 0.2);
    p->act_scale[i] = (float)tk_rng_range(&r, 0.5, 1.5);
  }
  snprintf(p->task, sizeof p->task, "lift");
  p->control_hz = 20;
  return p;
}

static bcPolicy *make_diffusion(uint64_t seed, int ddpm) { return make_diffusion_of(seed, ddpm, 0); }

/* obs [2 OBS] and the noise [n] to files for policy_forward.py; its plan back (n float64) */
static void numpy_plan(const char *path, const float *obs, const float *xT, int n, const char *want,
                       double *ref) {
  const char *ob = tt_tmp_path("dif_obs.bin"), *nz = tt_tmp_path("dif_noise.bin"),
             *out = tt_tmp_path("dif_out.bin");
  FILE *f = fopen(ob, "wb");
  fwrite(obs, sizeof(float), 2 * OBS, f);
  fclose(f);
  f = fopen(nz, "wb");
  fwrite(xT, sizeof(float), (size_t)n, f);
  fclose(f);
  char *txt = NULL;
  int rc = tt_run(&txt, "%s %s %s %s %s %s", py(), tt_src("tests/bc/policy_forward.py"), path, ob, out, nz);
  cr_assert_eq(rc, 0, "%s", txt);
  cr_expect(strstr(txt, want), "%s", txt);
  free(txt);
  f = fopen(out, "rb");
  cr_assert(f);
  cr_assert_eq(fread(ref, sizeof(double), (size_t)n, f), (size_t)n);
  fclose(f);
}

/* The saved policy p and the loaded q plan bit for bit the same from observations and starting noise drawn
 * from seed (n values of noise); the plan moved away from the noise; numpy plans the same from the file at
 * path within 1e-4 (its description line must hold want). plan_q: q's plan, in [-1, 1]. */
static void plans_agree(const bcPolicy *p, const bcPolicy *q, const char *path, uint64_t seed, int n,
                        const char *want, float *plan_q) {
  float obs[2 * OBS], hist[2 * OBS], xT[64 * ACT], plan_p[64 * ACT];
  double ref[64 * ACT];
  cr_assert(n <= 64 * ACT);
  tkRng r;
  tk_rng_seed(&r, seed);
  for (int i = 0; i < 2 * OBS; i++)
    obs[i] = (float)tk_rng_range(&r, -1.5, 1.5);
  for (int i = 0; i < n; i++)
    xT[i] = (float)tk_rng_normal(&r);
  bc_policy_normalize(q, obs, 2, hist);
  nnWork *wp = nn_work_make(p->net, 1), *wq = nn_work_make(q->net, 1);
  float *scratch = malloc(sizeof(float) * (size_t)bc_diff_scratch(q));
  cr_assert(wp && wq && scratch);
  cr_assert_eq(bc_diff_plan(p, wp, hist, NULL, xT, scratch, plan_p), 0, "%s", tk_errmsg());
  cr_assert_eq(bc_diff_plan(q, wq, hist, NULL, xT, scratch, plan_q), 0, "%s", tk_errmsg());
  cr_expect_eq(memcmp(plan_p, plan_q, sizeof(float) * (size_t)n), 0, "the loaded policy plans otherwise");
  double spread = 0, worst = 0;
  for (int i = 0; i < n; i++) {
    cr_expect(isfinite(plan_q[i]) && fabsf(plan_q[i]) <= 1.0f, "plan[%d] = %g", i, plan_q[i]);
    spread = fmax(spread, fabs(plan_q[i] - xT[i]));
  }
  cr_expect(spread > 0.05, "the plan is the noise it started from");
  numpy_plan(path, obs, xT, n, want, ref);
  for (int c = 0; c < n / ACT; c++)
    for (int i = 0; i < ACT; i++)
      worst = fmax(worst,
                   fabs(q->act_offset[i] + q->act_scale[i] * (double)plan_q[c * ACT + i] - ref[c * ACT + i]));
  printf("%s (prediction %s): numpy and C plans differ by %.3g at most\n", want,
         q->dif.sample ? "sample" : "epsilon", worst);
  cr_expect(worst <= 1e-4, "%s, prediction %s: numpy and C plans differ by %g", want,
            q->dif.sample ? "sample" : "epsilon", worst);
  free(scratch);
  nn_work_free(wp);
  nn_work_free(wq);
}

Test(diffusion, schedule_and_embedding_match_their_closed_forms) {
  bcDiffusion d;
  bc_diff_default(&d);
  nnArch a;
  nn_arch_default(&a);
  a.head = NN_HEAD_MSE;
  a.tanh = 0;
  a.act_dim = 16 * 7;
  a.obs_dim = 2 * 10 + a.act_dim + d.temb;
  cr_assert_eq(bc_diff_validate(&d, &a), 0, "%s", tk_errmsg());
  /* unclipped betas telescope: abar_i = f((i+1)/T) / f(0) */
  const int T = d.train_steps;
  double f0 = pow(cos(0.008 / 1.008 * M_PI / 2), 2);
  for (int i = 0; i < T - 1; i++) {
    double f = pow(cos(((double)(i + 1) / T + 0.008) / 1.008 * M_PI / 2), 2);
    cr_expect(fabs(d.abar[i] - f / f0) < 1e-9, "abar[%d] = %.12g, closed form %.12g", i, d.abar[i], f / f0);
    if (i) cr_expect(d.abar[i] < d.abar[i - 1]);
  }
  cr_expect(d.abar[0] > 0.999 && d.abar[T - 1] < 1e-4, "abar from %g to %g", d.abar[0], d.abar[T - 1]);
  float e[8];
  bc_diff_embed(8, 3, e);
  for (int j = 0; j < 4; j++) {
    double f = exp(-log(10000.0) * j / 3.0);
    cr_expect(fabs(e[j] - sin(3 * f)) < 1e-6 && fabs(e[4 + j] - cos(3 * f)) < 1e-6, "embedding %d", j);
  }
  /* the network must fit the settings */
  a.obs_dim += 1;
  cr_expect_neq(bc_diff_validate(&d, &a), 0);
  cr_expect(strstr(tk_errmsg(), "observation steps"), "%s", tk_errmsg());
  a.obs_dim -= 1;
  a.tanh = 1;
  cr_expect_neq(bc_diff_validate(&d, &a), 0);
  cr_expect(strstr(tk_errmsg(), "without tanh"), "%s", tk_errmsg());
}

/* The file keeps the settings; the loaded policy plans bit for bit as the one saved; numpy plans the same
 * from the same observations and starting noise within 1e-4. */
static void round_trip_plan(int sample) {
  bcPolicy *p = make_diffusion(7, 0);
  p->dif.sample = sample; /* the network predicts the clean chunk, or the noise */
  const char *path = tt_tmp_path(sample ? "dif_sample.h5" : "dif_eps.h5");
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  bcPolicy *q = bc_policy_load(path);
  cr_assert(q, "%s", tk_errmsg());
  cr_expect(q->dif.horizon == 6 && q->dif.exec == 3 && q->dif.train_steps == 40 && q->dif.sample_steps == 8 &&
            q->dif.temb == 8 && q->dif.obs_horizon == 2 && !q->dif.ddpm && q->dif.clip == 1.0 &&
            q->chunk == 6 && q->dif.sample == sample);
  cr_expect_eq(memcmp(q->dif.abar, p->dif.abar, sizeof(double) * 40), 0);
  float plan_q[6 * ACT];
  plans_agree(p, q, path, 99, 6 * ACT, "diffusion=ddim(2 obs, 6 actions, 40 levels, 8 steps)", plan_q);
  bc_policy_free(q);
  bc_policy_free(p);
}

Test(diffusion, round_trip_and_numpy_plan) {
  round_trip_plan(1);
  round_trip_plan(0);
}

/* A U-Net denoiser: the file names it ("denoiser": "unet", arch "unet", ConditionalUnet1D's tensor names);
 * the loaded policy plans bit for bit as the one saved; numpy plans the same within 1e-4; the acting path
 * (bc_policy_step) runs its plans. A file written before the denoiser was recorded (no "denoiser") loads as
 * the MLP it is and plans bit for bit the same. */
Test(diffusion, unet_round_trip_and_numpy_plan) {
  enum { N = 8 * ACT };
  for (int sample = 1; sample >= 0; sample--) {
    bcPolicy *p = make_diffusion_of(21, 0, 1);
    p->dif.sample = sample;
    const char *path = tt_tmp_path("dif_unet.h5");
    cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
    bcPolicy *q = bc_policy_load(path);
    cr_assert(q, "%s", tk_errmsg());
    cr_expect(q->dif.unet == 1 && q->arch.unet.levels == 3 && q->arch.unet.down[2] == 16 && q->chunk == 8);
    cr_expect(nn_tensor_find(q->net, "up_modules.1.2.conv.weight") &&
              nn_tensor_find(q->net, "down_modules.0.0.cond_encoder.1.weight"));
    float plan_q[N], obs[2 * OBS];
    plans_agree(p, q, path, 98, N, "unet=8,16,16(k5, 4 groups)", plan_q);
    for (int i = 0; i < 2 * OBS; i++)
      obs[i] = (float)(0.05 * i - 0.7);
    /* the acting path runs its plans */
    bcEnsemble *e = bc_ensemble_make(q);
    nnWork *wq = nn_work_make(q->net, 1);
    cr_assert(e && wq, "%s", tk_errmsg());
    float sc[4096];
    double act[ACT];
    for (int t = 0; t < 5; t++)
      cr_assert_eq(bc_policy_step(q, wq, e, obs, sc, act), 0, "%s", tk_errmsg());
    for (int i = 0; i < ACT; i++)
      cr_expect(isfinite(act[i]));
    bc_ensemble_free(e);
    nn_work_free(wq);
    bc_policy_free(q);
    bc_policy_free(p);
  }
  /* an MLP policy's file without "denoiser" (as written before it existed) */
  bcPolicy *p = make_diffusion(23, 0);
  const char *path = tt_tmp_path("dif_old.h5");
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  char *out = NULL;
  int rc =
      tt_run(&out,
             "%s -c \"import h5py, json; f = h5py.File('%s', 'r+'); a = json.loads(f.attrs['arch']); "
             "assert a['diffusion'].pop('denoiser') == 'mlp'; f.attrs['arch'] = json.dumps(a); f.close()\"",
             py(), path);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  bcPolicy *q = bc_policy_load(path);
  cr_assert(q, "%s", tk_errmsg());
  cr_expect(q->dif.unet == 0 && q->arch.unet.levels == 0);
  float hist[2 * OBS], xT[6 * ACT], a1[6 * ACT], a2[6 * ACT];
  for (int i = 0; i < 2 * OBS; i++)
    hist[i] = (float)(0.07 * i - 1);
  for (int i = 0; i < 6 * ACT; i++)
    xT[i] = (float)(0.03 * i - 0.5);
  nnWork *w = nn_work_make(p->net, 1);
  float *scratch = malloc(sizeof(float) * (size_t)bc_diff_scratch(q));
  cr_assert_eq(bc_diff_plan(p, w, hist, NULL, xT, scratch, a1), 0);
  cr_assert_eq(bc_diff_plan(q, w, hist, NULL, xT, scratch, a2), 0);
  cr_expect_eq(memcmp(a1, a2, sizeof a1), 0, "the file without \"denoiser\" plans otherwise");
  free(scratch);
  nn_work_free(w);
  bc_policy_free(q);
  bc_policy_free(p);
}

/* The same generator state gives the same plan, another seed another; DDPM plans stay finite and within
 * the clip; the acting entry point runs `exec` actions of each plan, then plans again. */
Test(diffusion, seeded_sampling_and_receding_horizon) {
  for (int ddpm = 0; ddpm < 2; ddpm++) {
    bcPolicy *p = make_diffusion(11, ddpm);
    nnWork *w = nn_work_make(p->net, 1);
    float *scratch = malloc(sizeof(float) * (size_t)bc_diff_scratch(p));
    float hist[2 * OBS] = {0}, a[6 * ACT], b[6 * ACT], c[6 * ACT];
    for (int i = 0; i < 2 * OBS; i++)
      hist[i] = (float)(0.1 * i - 1);
    tkRng r1, r2, r3;
    tk_rng_seed(&r1, 5);
    tk_rng_seed(&r2, 5);
    tk_rng_seed(&r3, 6);
    cr_assert_eq(bc_diff_plan(p, w, hist, &r1, NULL, scratch, a), 0, "%s", tk_errmsg());
    cr_assert_eq(bc_diff_plan(p, w, hist, &r2, NULL, scratch, b), 0, "%s", tk_errmsg());
    cr_assert_eq(bc_diff_plan(p, w, hist, &r3, NULL, scratch, c), 0, "%s", tk_errmsg());
    cr_expect_eq(memcmp(a, b, sizeof a), 0, "ddpm %d: the same seed planned otherwise", ddpm);
    cr_expect_neq(memcmp(a, c, sizeof a), 0, "ddpm %d: another seed planned the same", ddpm);
    for (int i = 0; i < 6 * ACT; i++)
      cr_expect(isfinite(a[i]) && fabsf(a[i]) <= 1.0f);
    /* DDPM without a generator: refused (it draws noise at every step) */
    if (ddpm) cr_expect_neq(bc_diff_plan(p, w, hist, NULL, a, scratch, b), 0);
    /* the low-dim entry points refuse it: it acts with its episode state */
    float obs[OBS] = {0}, sc[512];
    double act[ACT];
    cr_expect_neq(bc_policy_act(p, w, obs, 1, sc, act), 0);
    cr_expect(strstr(tk_errmsg(), "diffusion"), "%s", tk_errmsg());
    free(scratch);
    nn_work_free(w);
    bc_policy_free(p);
  }
  /* receding horizon: a constant observation, plans at steps 0, 3, 6 (exec 3); the actions of steps 0..2 are
   * the first plan's first three, the rest differ (a new plan from new noise) */
  bcPolicy *p = make_diffusion(13, 0);
  nnWork *w = nn_work_make(p->net, 1);
  bcEnsemble *e = bc_ensemble_make(p);
  cr_assert(e, "%s", tk_errmsg());
  float obs[OBS], sc[4096], hist[2 * OBS], plan[6 * ACT];
  for (int i = 0; i < OBS; i++)
    obs[i] = (float)(0.05 * i);
  bc_policy_normalize(p, obs, 1, hist);
  memcpy(hist + OBS, hist, sizeof(float) * OBS);
  float *scratch = malloc(sizeof(float) * (size_t)bc_diff_scratch(p));
  tkRng r;
  tk_rng_seed(&r, 0); /* a fresh episode state's generator */
  cr_assert_eq(bc_diff_plan(p, w, hist, &r, NULL, scratch, plan), 0);
  double act[9][ACT];
  for (int t = 0; t < 9; t++)
    cr_assert_eq(bc_policy_step(p, w, e, obs, sc, act[t]), 0, "%s", tk_errmsg());
  for (int t = 0; t < 3; t++)
    for (int i = 0; i < ACT; i++)
      cr_expect(fabs(act[t][i] - (p->act_offset[i] + p->act_scale[i] * (double)plan[t * ACT + i])) < 1e-6,
                "step %d action %d: not the plan's", t, i);
  cr_expect(memcmp(act[3], act[0], sizeof act[0]) != 0 && memcmp(act[6], act[3], sizeof act[0]) != 0,
            "no new plan after exec steps");
  /* an episode reset with its seed acts the same whatever ran before */
  double again[2][3][ACT];
  for (int round = 0; round < 2; round++) {
    bc_ensemble_reset_seed(e, 77);
    for (int t = 0; t < 3; t++)
      cr_assert_eq(bc_policy_step(p, w, e, obs, sc, again[round][t]), 0, "%s", tk_errmsg());
    if (!round) /* more steps in between: the generator moves on */
      for (int t = 0; t < 5; t++)
        cr_assert_eq(bc_policy_step(p, w, e, obs, sc, act[0]), 0);
  }
  cr_expect_eq(memcmp(again[0], again[1], sizeof again[0]), 0, "the same episode seed acted otherwise");
  free(scratch);
  bc_ensemble_free(e);
  nn_work_free(w);
  bc_policy_free(p);
}

/* Malformed diffusion settings in a policy file: refused naming the file and the problem. */
typedef struct {
  const char *name, *edit, *want;
} badCase;

/* each edit of good's arch (a: the arch, d: its diffusion) refused by the loader naming the file, and by the
 * numpy reader */
static void refuse_edits(const char *good, const badCase *cases, size_t n) {
  for (size_t i = 0; i < n; i++) {
    const char *bad = tt_tmp_path("dif_bad.h5");
    char *out = NULL;
    int rc = tt_run(
        &out,
        "cp %s %s && %s -c \"import h5py, json; f = h5py.File('%s', 'r+'); a = json.loads(f.attrs['arch']); "
        "d = a['diffusion']; %s; f.attrs['arch'] = json.dumps(a); f.close()\"",
        good, bad, py(), bad, cases[i].edit);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
    bcPolicy *q = bc_policy_load(bad);
    cr_expect_null(q, "%s: loaded", cases[i].name);
    bc_policy_free(q);
    cr_expect(strstr(tk_errmsg(), bad) && strstr(tk_errmsg(), cases[i].want) && !strchr(tk_errmsg(), '\n'),
              "%s: %s", cases[i].name, tk_errmsg());
    /* the numpy reader refuses it too */
    rc = tt_run(&out, "%s %s %s", py(), tt_src("tests/bc/policy_forward.py"), bad);
    cr_expect_eq(rc, 1, "%s: the numpy reader: %s", cases[i].name, out);
    free(out);
  }
}

Test(diffusion, malformed_settings_refused) {
  bcPolicy *p = make_diffusion(17, 0);
  char good[4096];
  snprintf(good, sizeof good, "%s", tt_tmp_path("dif_good.h5"));
  cr_assert_eq(bc_policy_save(p, good), 0, "%s", tk_errmsg());
  bc_policy_free(p);
  static const badCase cases[] = {
      {"schedule", "d['schedule'] = 'linear'", "\"schedule\" must be \"squaredcos_cap_v2\""},
      {"prediction", "d['prediction'] = 'v'", "\"prediction\" must be \"epsilon\" or \"sample\""},
      {"sampler", "d['sampler'] = 'euler'", "\"sampler\" must be \"ddim\" or \"ddpm\""},
      {"missing", "del d['temb']", "must be an object of exactly"},
      {"extra", "d['eta'] = 0", "must be an object of exactly"},
      {"horizon", "d['horizon'] = 5", "outputs are not 5 actions"},
      {"steps", "d['sample_steps'] = 41", "sample_steps 41 not in 1..train_steps (40)"},
      {"exec", "d['exec'] = 7", "exec 7 not in 1..horizon (6)"},
      {"obs", "d['obs_horizon'] = 3", "inputs are not 3 observation steps"},
      {"levels", "d['train_steps'] = 1", "train_steps 1 not in 2..1000"},
      {"clip", "d['clip'] = -1", "clip -1 not in (0, 1e6]"},
      {"not_object", "a['diffusion'] = [1]", "must be an object of exactly"},
      {"denoiser", "d['denoiser'] = 'transformer'", "\"denoiser\" must be \"mlp\" or \"unet\""},
      {"denoiser_net", "d['denoiser'] = 'unet'", "the denoiser is \"unet\" but the network is an MLP"},
  };
  refuse_edits(good, cases, sizeof cases / sizeof cases[0]);
  /* a U-Net policy's */
  p = make_diffusion_of(19, 0, 1);
  snprintf(good, sizeof good, "%s", tt_tmp_path("dif_good_unet.h5"));
  cr_assert_eq(bc_policy_save(p, good), 0, "%s", tk_errmsg());
  bc_policy_free(p);
  static const badCase ucases[] = {
      {"mlp", "d['denoiser'] = 'mlp'", "the denoiser is \"mlp\" but the network is a U-Net"},
      {"kernel", "a['unet']['kernel'] = 4", "unet kernel 4 is not odd"},
      {"extra", "a['unet']['n_groups'] = 8", "exactly down_dims, kernel, groups, horizon, temb"},
      {"dims", "a['unet']['down_dims'] = [8, 16]", "/weights/"},
  };
  refuse_edits(good, ucases, sizeof ucases / sizeof ucases[0]);
}
