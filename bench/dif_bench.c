/* bench/dif_bench.c -- Diffusion Policy's costs next to the MLP policy's, on lift's shapes (19 observation
 * values, 7 actions) with bc-train's defaults (hidden 1024,1024; diffusion: 2 observation steps, 16 actions,
 * 8 run per plan, 16 DDIM steps):
 *   training samples/s at batch 100 (the denoiser's MLP and the MSE policy's, data-parallel over --threads);
 *   acting at batch 1, one thread: the MLP's action, one diffusion plan, and the diffusion policy's mean
 *   cost per control step (a plan every 8 steps).
 * With --unet C,C,...: the diffusion policy's denoiser is the 1-D U-Net of those channels (kernel 5, 8
 * groups; bc-train --denoiser unet) instead of the MLP.
 * Prints name=value lines (meson test --benchmark diffusion).
 *   dif_bench [--seconds S] [--threads T] [--unet C,C,...] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bc.h"

#define OBS 19
#define ACT 7
#define B 100

static const char *const KEYS[] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
static const int DIMS[] = {10, 3, 4, 2};

static nnUnetArch g_unet; /* levels 0: the MLP denoiser */

static bcPolicy *make(int diffusion) {
  nnArch a;
  nn_arch_default(&a); /* hidden 1024,1024, relu, mse */
  bcDiffusion d;
  bc_diff_default(&d);
  a.obs_dim = OBS;
  a.act_dim = ACT;
  if (!diffusion) return bc_policy_make(&a, 4, KEYS, DIMS, 1);
  a.tanh = 0;
  a.act_dim = d.horizon * ACT;
  a.obs_dim = d.obs_horizon * OBS + a.act_dim + d.temb;
  if (g_unet.levels > 0) {
    d.unet = 1;
    a.n_hidden = 0;
    a.unet = g_unet;
    a.unet.horizon = d.horizon;
    a.unet.temb = d.temb;
  }
  return bc_policy_make_diffusion(&a, 4, KEYS, DIMS, 0, NULL, &d, 1);
}

/* samples/s of training steps on random rows for `seconds` */
static double train_rate(bcPolicy *p, int threads, double seconds) {
  const int in = p->arch.obs_dim, out = p->arch.act_dim;
  nnTeam *tm = nn_team_make(p->net, B, threads);
  float *x = malloc(sizeof(float) * B * (size_t)in), *y = malloc(sizeof(float) * B * (size_t)out);
  if (!tm || !x || !y) return -1;
  tkRng r;
  tk_rng_seed(&r, 2);
  for (int i = 0; i < B * in; i++)
    x[i] = (float)tk_rng_normal(&r);
  for (int i = 0; i < B * out; i++)
    y[i] = (float)tk_rng_range(&r, -1, 1);
  nnAdamOpts o;
  nn_adam_default(&o);
  float loss;
  long steps = 0;
  int rc = 0;
  for (int s = 0; s < 5 && !rc; s++)
    rc = nn_team_train_step(p->net, tm, &o, x, y, B, &loss, NULL);
  double t0 = tk_now_s(), dt = 0;
  while (!rc && dt < seconds) {
    rc = nn_team_train_step(p->net, tm, &o, x, y, B, &loss, NULL);
    steps++;
    dt = tk_now_s() - t0;
  }
  nn_team_free(tm);
  free(x);
  free(y);
  return rc ? -1 : (double)steps * B / dt;
}

int main(int argc, char **argv) {
  double seconds = 3;
  int threads = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      seconds = strtod(argv[++i], NULL);
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
      threads = (int)strtol(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--unet") && i + 1 < argc) {
      g_unet = (nnUnetArch){.kernel = 5, .groups = 8};
      for (char *s = argv[++i], *e; *s && g_unet.levels < NN_UNET_MAX_LEVELS; s = *e ? e + 1 : e)
        g_unet.down[g_unet.levels++] = (int)strtol(s, &e, 10);
    } else {
      fprintf(stderr, "usage: %s [--seconds S] [--threads T] [--unet C,C,...]\n", argv[0]);
      return 2;
    }
  }
  if (!(seconds > 0) || threads < 1 || threads > 64) {
    fprintf(stderr, "dif_bench: --seconds must be > 0 and --threads 1..64\n");
    return 2;
  }
  nn_set_threads(1);
  bcPolicy *mlp = make(0), *dif = make(1);
  if (!mlp || !dif) {
    fprintf(stderr, "dif_bench: %s\n", tk_errmsg());
    return 1;
  }
  printf("model=lift obs %d act %d hidden 1024,1024; diffusion (%s denoiser, %lld parameters) obs_horizon %d "
         "horizon %d exec %d ddim %d steps; batch %d threads %d\n",
         OBS, ACT, g_unet.levels ? "U-Net" : "MLP", (long long)dif->net->n_params, dif->dif.obs_horizon,
         dif->dif.horizon, dif->dif.exec, dif->dif.sample_steps, B, threads);
  double rm = train_rate(mlp, threads, seconds), rd = train_rate(dif, threads, seconds);
  if (rm < 0 || rd < 0) {
    fprintf(stderr, "dif_bench: training: %s\n", tk_errmsg());
    return 1;
  }
  printf("mlp_train_samples_per_s=%.0f\ndiffusion_train_samples_per_s=%.0f\nratio_diffusion_over_mlp_train=%."
         "2f\n",
         rm, rd, rd / rm);
  /* acting, batch 1 */
  nnWork *wm = nn_work_make(mlp->net, 1), *wd = nn_work_make(dif->net, 1);
  float obs[OBS], sc[4096], hist[2 * OBS], plan[16 * ACT];
  float *dsc = malloc(sizeof(float) * (size_t)bc_diff_scratch(dif));
  double act[ACT];
  tkRng r;
  tk_rng_seed(&r, 3);
  for (int i = 0; i < OBS; i++)
    obs[i] = (float)tk_rng_normal(&r);
  bc_policy_normalize(dif, obs, 1, hist);
  memcpy(hist + OBS, hist, sizeof(float) * OBS);
  int rc = !wm || !wd || !dsc;
  long n = 0;
  double t0 = tk_now_s(), tm = 0, td = 0;
  while (!rc && (tm = tk_now_s() - t0) < seconds / 2) {
    rc = bc_policy_act(mlp, wm, obs, 1, sc, act);
    n++;
  }
  const double mlp_ms = 1e3 * tm / (double)n;
  long np = 0;
  t0 = tk_now_s();
  while (!rc && (td = tk_now_s() - t0) < seconds / 2) {
    rc = bc_diff_plan(dif, wd, hist, &r, NULL, dsc, plan);
    np++;
  }
  if (rc) {
    fprintf(stderr, "dif_bench: acting: %s\n", tk_errmsg());
    return 1;
  }
  const double plan_ms = 1e3 * td / (double)np;
  printf("mlp_act_b1_ms=%.3f\ndiffusion_plan_b1_ms=%.3f\ndiffusion_per_step_b1_ms=%.3f\n", mlp_ms, plan_ms,
         plan_ms / dif->dif.exec);
  free(dsc);
  nn_work_free(wm);
  nn_work_free(wd);
  bc_policy_free(mlp);
  bc_policy_free(dif);
  return 0;
}
