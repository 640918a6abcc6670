/* bench/vision_bench.c -- image BC training throughput and acting latency, next to the PyTorch anchor.
 *
 * The anchor net of ../shared/anchors/torch_vision_bc_baseline.py, through the code bc-train runs
 * (bc_policy_make_images + bc_vt_step): two cameras of uint8 84x84x3 frames held in memory (2000 each,
 * random), a random 76x76 crop per sample and camera, per camera conv 3->32 k3 s2, conv 32->32 k3, conv
 * 32->64 k3 s2, conv 64->64 k3 (ReLU after each), spatial softmax 32 keypoints, linear 64; the MLP
 * [2 x 64 + 9 proprio] -> 1024 -> 1024 -> 7 (ReLU, tanh output), MSE, Adam lr 1e-4, batch 64 drawn with
 * replacement every step. Timed windows of at least --seconds after 3 warm-up steps; medians and best
 * over --repeats windows, for each thread count (the batch's rows split over the threads).
 * The anchor script runs in the same benchmark at 1 and 2 threads (torch at its best setting is the
 * comparison); the ratio is ours at our best setting over torch at its best.
 *
 * Acting (batch 1, one thread, as bc-eval's workers): the same policy on task lift with both cameras
 * rendered at 84x84 (EGL, offscreen): act_ms = bc_actor_step alone (centre crops, both encoders, the
 * MLP), render_ms = rendering both cameras (cap_env_observe), step_ms = a whole control step
 * (cap_env_step: physics + rendering, then bc_actor_step). torch: its forward pass at batch 1
 * (--forward-only --batch 1), without rendering.
 *
 *   vision_bench [--seconds S] [--repeats R] [--threads 1,2] [--no-anchors] [--anchors DIR] [--no-act]
 * Prints name=value lines.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bc.h"

#include "bench_util.h"

#define N_FRAMES 2000
#define SIDE 84
#define CROP 76
#define PROPRIO 9
#define ACT 7
#define BATCH 64

static double g_seconds = 3.0;
static int g_repeats = 3;

static const char *const g_keys[2] = {"agentview_image", "robot0_eye_in_hand_image"};
static const char *const g_low[3] = {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
static const int g_low_dims[3] = {3, 4, 2};

static bcPolicy *make_policy(uint64_t seed) {
  nnArch a;
  nn_arch_default(&a);
  a.n_hidden = 2;
  a.hidden[0] = a.hidden[1] = 1024;
  a.head = NN_HEAD_MSE;
  a.tanh = 1;
  a.act_dim = ACT;
  bcImage img[2];
  a.obs_dim = PROPRIO;
  for (int i = 0; i < 2; i++) {
    memset(&img[i], 0, sizeof img[i]);
    snprintf(img[i].key, sizeof img[i].key, "%s", g_keys[i]);
    img[i].height = img[i].width = SIDE;
    img[i].channels = 3;
    img[i].crop_h = img[i].crop_w = CROP;
    nn_enc_arch_default(&img[i].enc_arch, 3, CROP, CROP, 32);
    a.obs_dim += nn_enc_out_dim(&img[i].enc_arch);
  }
  return bc_policy_make_images(&a, 3, g_low, g_low_dims, 2, img, seed);
}

/* 2 * multiply-adds of a training step per sample: forward, weight gradients, and data gradients of every
 * layer but the first (the images need none), convolutions and the MLP */
static double train_flops(const bcPolicy *p) {
  double f = 0;
  for (int c = 0; c < p->nimg; c++) {
    const nnEnc *e = p->img[c].enc;
    for (int l = 0; l < e->arch.nlayers; l++) {
      const nnLayerSpec *s = &e->arch.layer[l];
      const nnShape *in = &e->shape[l], *out = &e->shape[l + 1];
      double macs = 0;
      if (s->kind == NN_LAYER_CONV)
        macs = (double)s->out * in->d[0] * s->kernel * s->kernel * out->d[1] * out->d[2];
      else if (s->kind == NN_LAYER_SPATIAL_SOFTMAX)
        macs = (double)s->out * in->d[0] * in->d[1] * in->d[2];
      else if (s->kind == NN_LAYER_LINEAR)
        macs = (double)s->out * nn_shape_numel(in);
      f += 2 * macs * (l == 0 ? 2 : 3);
    }
  }
  const nnNet *n = p->net;
  for (int l = 0; l < n->n_linear; l++)
    f += 2.0 * n->dims[l] * n->dims[l + 1] * 3;
  return f;
}

/* samples/s of training at `threads`, median and best over the windows */
static int train(const uint8_t *const *frames, const float *proprio, const float *act, int threads,
                 double *med, double *best, double *flops) {
  bcPolicy *p = make_policy(1);
  bcVisionTrainer *vt = p ? bc_vt_make(p, frames, BATCH, threads) : NULL;
  if (!vt) {
    bc_policy_free(p);
    return -1;
  }
  *flops = train_flops(p);
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-4;
  tkRng r;
  tk_rng_seed(&r, 7);
  int64_t rows[BATCH];
  float x[BATCH * PROPRIO], y[BATCH * ACT], loss = 0;
  double sps[64];
  int rc = 0, nr = g_repeats > 64 ? 64 : g_repeats;
#define STEP()                                                                                               \
  do {                                                                                                       \
    for (int b = 0; b < BATCH; b++) {                                                                        \
      rows[b] = (int64_t)tk_rng_below(&r, N_FRAMES);                                                         \
      memcpy(x + b * PROPRIO, proprio + rows[b] * PROPRIO, sizeof(float) * PROPRIO);                         \
      memcpy(y + b * ACT, act + rows[b] * ACT, sizeof(float) * ACT);                                         \
    }                                                                                                        \
    rc = rc ? rc : bc_vt_step(vt, &o, x, y, rows, BATCH, &r, &loss, NULL);                                   \
  } while (0)
  for (int i = 0; i < 3; i++)
    STEP();
  for (int k = 0; k < nr && !rc; k++) {
    double t0 = tk_now_s(), dt;
    int64_t steps = 0;
    do {
      STEP();
      steps++;
      dt = tk_now_s() - t0;
    } while (dt < g_seconds && !rc);
    sps[k] = (double)steps * BATCH / dt;
  }
#undef STEP
  bc_vt_free(vt);
  bc_policy_free(p);
  if (rc) return rc;
  *best = 0;
  for (int k = 0; k < nr; k++)
    *best = sps[k] > *best ? sps[k] : *best;
  qsort(sps, (size_t)nr, sizeof(double), cmp_d);
  *med = nr % 2 ? sps[nr / 2] : 0.5 * (sps[nr / 2 - 1] + sps[nr / 2]);
  return 0;
}

/* acting latency on lift with both cameras rendered */
static int acting(void) {
  bcPolicy *p = make_policy(2);
  capOpts co;
  cap_opts_default(&co);
  co.task = "lift";
  capModel *m = NULL;
  capEnv *env = NULL;
  bcActor *a = NULL;
  int rc = p ? bc_policy_model_load(p, &co, &m) : -1;
  if (!rc) rc = cap_env_make(m, &env);
  if (!rc && !(a = bc_actor_make(p, m))) rc = -1;
  nn_set_threads(1);
  capObs o;
  capStep st;
  double act[CAP_MAX_ACT];
  if (!rc) rc = cap_env_reset(env, 1, &o);
  const int n = 200;
  double t_act = 0, t_render = 0, t_step = 0;
  for (int i = 0; i < 5 && !rc; i++)
    rc = bc_actor_step(a, &o, act);
  for (int i = 0; i < n && !rc; i++) { /* the policy alone */
    double t0 = tk_now_s();
    rc = bc_actor_step(a, &o, act);
    t_act += tk_now_s() - t0;
  }
  for (int i = 0; i < n && !rc; i++) { /* rendering both cameras */
    double t0 = tk_now_s();
    rc = cap_env_observe(env, &o);
    t_render += tk_now_s() - t0;
  }
  bc_actor_reset(a, 1);
  for (int i = 0; i < n && !rc; i++) { /* a control step: physics and rendering, then the policy */
    double t0 = tk_now_s();
    rc = cap_env_step(env, act, &st);
    if (!rc) rc = bc_actor_step(a, &st.obs, act);
    t_step += tk_now_s() - t0;
    if (!rc && (st.terminated || st.truncated)) {
      rc = cap_env_reset(env, (uint64_t)i + 2, &o);
      bc_actor_reset(a, (uint64_t)i + 2);
    }
  }
  if (!rc)
    printf("act_b1_ms=%.2f\nrender_2cams_ms=%.2f\ncontrol_step_ms=%.2f\n", 1e3 * t_act / n,
           1e3 * t_render / n, 1e3 * t_step / n);
  else
    fprintf(stderr, "vision_bench: acting: %s\n", tk_errmsg());
  bc_actor_free(a);
  cap_env_free(env);
  cap_model_free(m);
  bc_policy_free(p);
  return rc;
}

int main(int argc, char **argv) {
  const char *anchors = NULL;
  int no_anchors = 0, no_act = 0, tl[8] = {1, 2}, ntl = 2;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
      g_seconds = atof(argv[++i]);
    else if (!strcmp(argv[i], "--repeats") && i + 1 < argc)
      g_repeats = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--no-anchors"))
      no_anchors = 1;
    else if (!strcmp(argv[i], "--no-act"))
      no_act = 1;
    else if (!strcmp(argv[i], "--anchors") && i + 1 < argc)
      anchors = argv[++i];
    else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
      ntl = 0;
      for (char *s = strtok(argv[++i], ","); s && ntl < 8; s = strtok(NULL, ","))
        tl[ntl++] = atoi(s);
    } else {
      fprintf(
          stderr,
          "usage: %s [--seconds S] [--repeats R] [--threads 1,2] [--no-anchors] [--anchors DIR] [--no-act]\n",
          argv[0]);
      return 2;
    }
  }
  if (g_repeats < 1) g_repeats = 1;
  uint8_t *frames[2];
  float *proprio = malloc(sizeof(float) * N_FRAMES * PROPRIO), *act = malloc(sizeof(float) * N_FRAMES * ACT);
  tkRng r;
  tk_rng_seed(&r, 0);
  for (int c = 0; c < 2; c++) {
    frames[c] = malloc((size_t)N_FRAMES * SIDE * SIDE * 3);
    if (!frames[c]) return 1;
    for (size_t i = 0; i < (size_t)N_FRAMES * SIDE * SIDE * 3; i++)
      frames[c][i] = (uint8_t)tk_rng_below(&r, 256);
  }
  if (!proprio || !act) return 1;
  for (int i = 0; i < N_FRAMES * PROPRIO; i++)
    proprio[i] = (float)tk_rng_normal(&r);
  for (int i = 0; i < N_FRAMES * ACT; i++)
    act[i] = (float)tk_rng_range(&r, -1, 1);
  printf("model=vision_anchor_2cams_84_crop76_conv4_ssm32_lin64_mlp1024x2 batch=%d seconds_per_window=%.2f "
         "repeats=%d\n",
         BATCH, g_seconds, g_repeats);
  double ours = 0;
  for (int i = 0; i < ntl; i++) {
    double med, best, flops;
    if (train((const uint8_t *const *)frames, proprio, act, tl[i], &med, &best, &flops)) {
      fprintf(stderr, "vision_bench: %s\n", tk_errmsg());
      return 1;
    }
    printf("ours_t%d_samples_per_s=%.1f\nours_t%d_samples_per_s_best=%.1f\nours_t%d_gflops=%.1f\n", tl[i],
           med, tl[i], best, tl[i], med * flops / 1e9);
    if (i == 0) printf("train_mflop_per_sample=%.1f\n", flops / 1e6);
    fflush(stdout);
    if (med > ours) ours = med;
  }
  printf("ours_best_samples_per_s=%.1f\n", ours);
  if (!no_act && acting()) return 1;
  if (no_anchors) return 0;
  char script[4200], cmd[9000];
  snprintf(script, sizeof script, "%s/torch_vision_bc_baseline.py",
           anchors ? anchors : DK_SRC_ROOT "/../shared/anchors");
  if (!tk_file_exists(script) || system("/usr/bin/python3 -c 'import torch' >/dev/null 2>&1")) {
    printf("torch_anchor=missing\n");
    return 0;
  }
  double torch_best = 0;
  for (int t = 1; t <= 2; t++) {
    snprintf(cmd, sizeof cmd,
             "/usr/bin/python3 '%s' --threads %d --batch %d --seconds %g --repeats %d 2>/dev/null", script, t,
             BATCH, g_seconds, g_repeats);
    double v = run_value(cmd, "samples_per_s", NULL, NULL, 0);
    printf("torch_t%d_samples_per_s=%.1f\n", t, v);
    fflush(stdout);
    if (v > torch_best) torch_best = v;
  }
  if (torch_best > 0) printf("ratio_ours_best_over_torch_best=%.2f\n", ours / torch_best);
  if (!no_act) {
    snprintf(
        cmd, sizeof cmd,
        "/usr/bin/python3 '%s' --threads 1 --batch 1 --forward-only --seconds %g --repeats %d 2>/dev/null",
        script, g_seconds, g_repeats);
    double v = run_value(cmd, "samples_per_s", NULL, NULL, 0);
    if (v > 0) printf("torch_act_b1_ms=%.2f\n", 1e3 / v);
  }
  for (int c = 0; c < 2; c++)
    free(frames[c]);
  free(proprio);
  free(act);
  return 0;
}
