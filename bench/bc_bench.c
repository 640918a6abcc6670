/* bench/bc_bench.c -- BC training throughput of the nn library next to its anchors.
 *
 * Ours: MLP 32-256-256-7, ReLU, MSE head, Adam(lr 1e-4), 200000 random samples in memory, random
 * minibatch indices every step (with replacement, as the torch anchor's randint sampler), gather,
 * one training step (forward + loss + backward + Adam). Batches 256 and 100, three ways:
 *   nn_b<B>_t1       nn_train_step, OpenBLAS 1 thread
 *   nn_b<B>_t2_blas  nn_train_step, OpenBLAS 2 threads (nn_set_threads(2))
 *   nn_b<B>_t2_team  nn_team_train_step, 2 threads data-parallel, OpenBLAS 1 thread each
 * GFLOP/s counts the 8 GEMMs of a step as sgemm_peak.c does.
 * Anchors, run here in the same process tree (paths relative to the source root, DK_SRC_ROOT):
 *   /usr/bin/python3 ../shared/anchors/torch_bc_baseline.py --threads 1 --blas-threads 2 --batch 256
 *   /usr/bin/python3 ../shared/anchors/torch_bc_baseline.py --threads 1 --blas-threads 1 --batch 100
 *   and --threads 1 --blas-threads 1 --batch 256 (torch's blas2 mode is bimodal here);
 *   ratios use torch's median and, conservatively, its fastest window;
 *   ../shared/anchors/sgemm_peak.c built with cc and run: its GEMM-only samples/s bound per step.
 * Timings on a shared machine: run it through ../shared/anchors/quiet_run.py.
 * Prints name=value lines. Usage:
 *   bc_bench [--seconds S] [--repeats R] [--threads 1,2] [--no-anchors] [--anchors DIR] [--tmp DIR]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn.h"
#include "tk.h"

#include "bench_util.h"

#ifndef DK_SRC_ROOT
#define DK_SRC_ROOT "."
#endif

#define N_DATA 200000
#define OBS 32
#define ACT 7

static double g_seconds = 2.0;
static int g_repeats = 3;

typedef struct {
  double sps_median, sps_best, gflops_median, us_per_step, loss_first, loss_last;
} runResult;

/* the 8 GEMMs of a step, as sgemm_peak.c: 3 forward, 3 dW, 2 dX */
static double gemm_flops(int B, const int *dims, int n) {
  double f = 0;
  for (int l = 0; l < n; l++)
    f += 2.0 * B * dims[l] * dims[l + 1] * (l == 0 ? 2 : 3);
  return f;
}

/* team = 0: nn_train_step with OpenBLAS at `threads`; team = 1: nn_team_train_step over `threads` threads
 * (data-parallel, OpenBLAS at 1) */
static int run(const float *obs, const float *act, int B, int threads, int team, runResult *res) {
  nn_set_threads(team ? 1 : threads);
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = OBS;
  a.act_dim = ACT;
  nnNet *net = nn_net_make(&a, 0);
  nnWork *w = net ? nn_work_make(net, B) : NULL;
  nnTeam *tm = net && team ? nn_team_make(net, B, threads) : NULL;
  float *xb = malloc(sizeof(float) * (size_t)B * OBS), *yb = malloc(sizeof(float) * (size_t)B * ACT);
  if (!net || !w || (team && !tm) || !xb || !yb) {
    nn_net_free(net), nn_work_free(w), nn_team_free(tm), free(xb), free(yb);
    return TK_ENOMEM;
  }
  nnAdamOpts o;
  nn_adam_default(&o);
  tkRng r;
  tk_rng_seed(&r, 1);
  float loss = 0;
  int rc = 0;
#define STEP()                                                                                               \
  do {                                                                                                       \
    for (int i = 0; i < B; i++) {                                                                            \
      size_t k = (size_t)tk_rng_below(&r, N_DATA);                                                           \
      memcpy(xb + (size_t)i * OBS, obs + k * OBS, sizeof(float) * OBS);                                      \
      memcpy(yb + (size_t)i * ACT, act + k * ACT, sizeof(float) * ACT);                                      \
    }                                                                                                        \
    rc = tm ? nn_team_train_step(net, tm, &o, xb, yb, B, &loss, NULL)                                        \
            : nn_train_step(net, w, &o, xb, yb, B, &loss, NULL);                                             \
  } while (0)
  for (int s = 0; s < 100 && !rc; s++) {
    STEP();
    if (s == 0) res->loss_first = loss;
  }
  double sps[64];
  int nr = g_repeats > 64 ? 64 : g_repeats;
  for (int k = 0; k < nr && !rc; k++) {
    long steps = 0;
    double t0 = tk_now_s(), dt;
    do {
      for (int s = 0; s < 10 && !rc; s++)
        STEP();
      steps += 10;
      dt = tk_now_s() - t0;
    } while (dt < g_seconds && !rc);
    sps[k] = (double)steps * B / dt;
  }
#undef STEP
  res->loss_last = loss;
  nn_team_free(tm);
  nn_net_free(net);
  nn_work_free(w);
  free(xb);
  free(yb);
  if (rc) return rc;
  double best = 0;
  for (int k = 0; k < nr; k++)
    best = sps[k] > best ? sps[k] : best;
  qsort(sps, (size_t)nr, sizeof(double), cmp_d);
  res->sps_median = nr % 2 ? sps[nr / 2] : 0.5 * (sps[nr / 2 - 1] + sps[nr / 2]);
  res->sps_best = best;
  int dims[4] = {OBS, 256, 256, ACT};
  res->gflops_median = gemm_flops(B, dims, 3) * res->sps_median / B / 1e9;
  res->us_per_step = 1e6 * B / res->sps_median;
  return 0;
}

/* run a command, return the value of key= on the first line that has it (<0 if none) */

int main(int argc, char **argv) {
  const char *anchors = NULL, *tmp = "/tmp";
  int no_anchors = 0, tl[8] = {1, 2}, ntl = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      g_seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
      g_repeats = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--no-anchors"))
      no_anchors = 1;
    else if (!strcmp(argv[i], "--anchors") && i + 1 < argc)
      anchors = argv[++i];
    else if (!strcmp(argv[i], "--tmp") && i + 1 < argc)
      tmp = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      ntl = 0;
      for (char *s = strtok(argv[++i], ","); s && ntl < 8; s = strtok(NULL, ","))
        tl[ntl++] = atoi(s);
    } else {
      fprintf(stderr,
              "usage: %s [--seconds S] [--repeats R] [--threads 1,2] [--no-anchors] [--anchors DIR] "
              "[--tmp DIR]\n",
              argv[0]);
      return 2;
    }
  }
  if (g_repeats < 1) g_repeats = 1;
  char adir[4096];
  snprintf(adir, sizeof adir, "%s", anchors ? anchors : DK_SRC_ROOT "/../shared/anchors");

  /* data as the torch anchor: obs ~ N(0,1), actions tanh(N(0,1)) */
  float *obs = malloc(sizeof(float) * (size_t)N_DATA * OBS),
        *act = malloc(sizeof(float) * (size_t)N_DATA * ACT);
  if (!obs || !act) return 1;
  tkRng r;
  tk_rng_seed(&r, 0);
  for (size_t i = 0; i < (size_t)N_DATA * OBS; i++)
    obs[i] = (float)tk_rng_normal(&r);
  for (size_t i = 0; i < (size_t)N_DATA * ACT; i++)
    act[i] = (float)tanh(tk_rng_normal(&r));

  printf("model=mlp_32_256_256_7_relu_mse_adam n=%d seconds_per_window=%.2f repeats=%d\n", N_DATA, g_seconds,
         g_repeats);
  const int batches[2] = {256, 100};
  double ours_best[2] = {0, 0}, t1_sps[2] = {0, 0};
  for (int bi = 0; bi < 2; bi++)
    for (int ti = 0; ti < ntl; ti++)
      for (int team = 0; team < (tl[ti] > 1 ? 2 : 1); team++) {
        runResult res;
        int rc = run(obs, act, batches[bi], tl[ti], team, &res);
        if (rc) {
          fprintf(stderr, "bc_bench: %s\n", tk_errmsg());
          return 1;
        }
        char p[64];
        snprintf(p, sizeof p, "nn_b%d_t%d%s", batches[bi], tl[ti],
                 tl[ti] == 1 ? ""
                 : team      ? "_team"
                             : "_blas");
        printf("%s_samples_per_s=%.0f\n%s_samples_per_s_best=%.0f\n%s_us_per_step=%.1f\n%s_gemm_gflops=%.1f\n"
               "%s_loss_first=%.4f\n%s_loss_after=%.4f\n",
               p, res.sps_median, p, res.sps_best, p, res.us_per_step, p, res.gflops_median, p,
               res.loss_first, p, res.loss_last);
        fflush(stdout);
        if (res.sps_median > ours_best[bi]) ours_best[bi] = res.sps_median;
        if (tl[ti] == 1) t1_sps[bi] = res.sps_median;
      }
  for (int bi = 0; bi < 2; bi++)
    printf("nn_b%d_best_samples_per_s=%.0f\n", batches[bi], ours_best[bi]);
  free(obs);
  free(act);
  if (no_anchors) return 0;

  /* torch anchors */
  char script[4200], cmd[9000];
  snprintf(script, sizeof script, "%s/torch_bc_baseline.py", adir);
  double torch_best[2] = {0, 0};
  int have_torch = tk_file_exists(script) && !system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1");
  if (!have_torch) {
    printf("torch_anchor=missing\n");
  } else {
    /* {batch, blas threads}: the two named anchors, then torch's faster setting at batch 256 */
    const int cfg[3][2] = {{256, 2}, {100, 1}, {256, 1}};
    double torch_max[2] = {0, 0}; /* fastest single window: the conservative comparison */
    for (int c = 0; c < 3; c++) {
      snprintf(cmd, sizeof cmd,
               "/usr/bin/python3 '%s' --threads 1 --blas-threads %d --batch %d --seconds %g --repeats %d "
               "2>/dev/null",
               script, cfg[c][1], cfg[c][0], g_seconds, g_repeats);
      char line[4096] = "";
      double v = run_value(cmd, "samples_per_s", "torch_bc", line, sizeof line);
      char *mx = strstr(line, "samples_per_s_max=");
      double vmax = mx ? atof(mx + 18) : v;
      int bi = cfg[c][0] == 256 ? 0 : 1;
      if (v > 0)
        printf("torch_b%d_t1_blas%d_samples_per_s=%.0f\ntorch_b%d_t1_blas%d_samples_per_s_max_window=%.0f\n"
               "ratio_nn_best_over_torch_b%d_t1_blas%d=%.2f\n",
               cfg[c][0], cfg[c][1], v, cfg[c][0], cfg[c][1], vmax, cfg[c][0], cfg[c][1], ours_best[bi] / v);
      else
        printf("torch_b%d_t1_blas%d_samples_per_s=failed\n", cfg[c][0], cfg[c][1]);
      fflush(stdout);
      if (v > torch_best[bi]) torch_best[bi] = v;
      if (vmax > torch_max[bi]) torch_max[bi] = vmax;
    }
    for (int bi = 0; bi < 2; bi++)
      if (torch_best[bi] > 0)
        printf("torch_b%d_best_samples_per_s=%.0f\nratio_nn_over_torch_best_b%d=%.2f\n"
               "ratio_nn_over_torch_fastest_window_b%d=%.2f\n",
               batches[bi], torch_best[bi], batches[bi], ours_best[bi] / torch_best[bi], batches[bi],
               ours_best[bi] / torch_max[bi]);
  }

  /* sgemm_peak: the GEMM-only bound of the same 8 GEMMs */
  char src[4200], exe[4200];
  snprintf(src, sizeof src, "%s/sgemm_peak.c", adir);
  snprintf(exe, sizeof exe, "%s/bc_bench_sgemm_peak.%d", tmp, (int)getpid());
  if (!tk_file_exists(src)) {
    printf("sgemm_peak=missing\n");
    return 0;
  }
  snprintf(cmd, sizeof cmd,
           "cc -O2 -mavx2 -mfma -o '%s' '%s' -I/usr/include/x86_64-linux-gnu/openblas-pthread -lopenblas "
           "-lpthread -lm >/dev/null 2>&1",
           exe, src);
  if (system(cmd)) {
    printf("sgemm_peak=build_failed\n");
    return 0;
  }
  char tls[64] = "";
  for (int ti = 0; ti < ntl; ti++)
    snprintf(tls + strlen(tls), sizeof tls - strlen(tls), "%s%d", ti ? "," : "", tl[ti]);
  snprintf(cmd, sizeof cmd, "'%s' 0.25 3 %s 2>/dev/null", exe, tls);
  FILE *p = popen(cmd, "r");
  char line[4096];
  while (p && fgets(line, sizeof line, p)) {
    char *b = strstr(line, "batch="), *t = strstr(line, "threads="),
         *v = strstr(line, "gemm_only_samples_per_s_median="), *g = strstr(line, "gflops_median=");
    if (!strncmp(line, "mlp_step ", 9) && b && t && v && g) {
      int bb = atoi(b + 6), tt = atoi(t + 8);
      printf("sgemm_peak_b%d_t%d_gemm_only_samples_per_s=%.0f\nsgemm_peak_b%d_t%d_gflops=%.1f\n", bb, tt,
             atof(v + 31), bb, tt, atof(g + 14));
      if (tt == 1 && (bb == 256 || bb == 100))
        printf("nn_b%d_t1_fraction_of_gemm_only_bound=%.2f\n", bb, t1_sps[bb == 256 ? 0 : 1] / atof(v + 31));
    } else if (!strncmp(line, "sgemm shape=256x256.256x256 ", 28) && t && g)
      printf("sgemm_peak_256cube_t%d_gflops=%.1f\n", atoi(t + 8), atof(g + 14));
    else if (!strncmp(line, "fma_peak ", 9) && t && (g = strstr(line, "gflops_best=")))
      printf("sgemm_peak_fma_t%d_gflops=%.1f\n", atoi(t + 8), atof(g + 12));
    fflush(stdout);
  }
  if (p) pclose(p);
  unlink(exe);
  return 0;
}
