/* bc policies with cameras (bc_policy.c's encoders, bc_vision.c's training step, bcActor): policy.h5
 * round trips with the encoders, the numpy reader (tests/bc/policy_forward.py) against the C forward on
 * frames the lift task really rendered, malformed camera policies refused with a message, a camera the
 * environment lacks refused with both lists, the training step's determinism and its thread split, and a
 * camera policy learning something only its images tell it. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bc.h"
#include "tt.h"

static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

static const char *const LOW[] = {"robot0_eef_pos", "robot0_gripper_qpos"};
static const int LOW_DIMS[] = {3, 2};
#define SIDE 32
#define CROP 28

/* A lift policy reading agentview and eye_in_hand at SIDE x SIDE (crop CROP) and two low-dim keys, its trunk
 * an MLP or (rnn_layers > 0) an LSTM of 24 units with sequences of 4; weights as initialized, statistics in
 * general position. */
static bcPolicy *camera_policy_rnn(uint64_t seed, int width, int rnn_layers) {
  nnArch a;
  nn_arch_default(&a);
  a.n_hidden = 2;
  a.hidden[0] = 48;
  a.hidden[1] = 40;
  if (rnn_layers > 0) {
    a.rnn_layers = rnn_layers;
    a.rnn_hidden = 24;
    a.rnn_horizon = 4;
    a.n_hidden = 1;
  }
  a.head = NN_HEAD_MSE;
  a.tanh = 1;
  a.act_dim = 7;
  a.obs_dim = 5;
  bcImage img[2];
  const char *keys[2] = {"agentview_image", "robot0_eye_in_hand_image"};
  for (int i = 0; i < 2; i++) {
    memset(&img[i], 0, sizeof img[i]);
    snprintf(img[i].key, sizeof img[i].key, "%s", keys[i]);
    img[i].height = img[i].width = SIDE;
    img[i].channels = 3;
    img[i].crop_h = img[i].crop_w = CROP;
    nn_enc_arch_default(&img[i].enc_arch, 3, CROP, CROP, width);
    a.obs_dim += nn_enc_out_dim(&img[i].enc_arch);
  }
  bcPolicy *p = bc_policy_make_images(&a, 2, LOW, LOW_DIMS, 2, img, seed);
  cr_assert(p, "bc_policy_make_images: %s", tk_errmsg());
  tkRng r;
  tk_rng_seed(&r, seed + 7);
  for (int i = 0; i < p->obs_dim; i++) {
    p->obs_mean[i] = (float)tk_rng_range(&r, -0.5, 0.5);
    p->obs_std[i] = (float)tk_rng_range(&r, 0.1, 1);
  }
  for (int i = 0; i < p->act_dim; i++) {
    p->act_offset[i] = (float)tk_rng_range(&r, -0.2, 0.2);
    p->act_scale[i] = (float)tk_rng_range(&r, 0.5, 1.5);
  }
  /* the trunk's weights larger than torch's default, so that the cameras' features move the actions */
  for (int i = 0; i < p->net->n_tensors; i++)
    for (int64_t k = 0; k < p->net->tensors[i].numel; k++)
      p->net->tensors[i].data[k] *= 3;
  snprintf(p->task, sizeof p->task, "lift");
  p->control_hz = 20;
  return p;
}

static bcPolicy *camera_policy(uint64_t seed, int width) { return camera_policy_rnn(seed, width, 0); }

/* an uint8 array as a .npy file */
static void write_npy_u8(const char *path, const uint8_t *v, int B, int H, int W, int C) {
  FILE *f = fopen(path, "wb");
  cr_assert(f);
  char hdr[128];
  int n = snprintf(hdr, sizeof hdr, "{'descr': '|u1', 'fortran_order': False, 'shape': (%d, %d, %d, %d), }",
                   B, H, W, C);
  int total = 10 + n + 1;
  int pad = (64 - total % 64) % 64;
  unsigned short hl = (unsigned short)(n + pad + 1);
  fwrite("\x93NUMPY\x01\x00", 1, 8, f);
  fwrite(&hl, 2, 1, f);
  fwrite(hdr, 1, (size_t)n, f);
  for (int i = 0; i < pad; i++)
    fputc(' ', f);
  fputc('\n', f);
  fwrite(v, 1, (size_t)B * H * W * C, f);
  fclose(f);
}

Test(vision, round_trip) {
  bcPolicy *p = camera_policy(3, 8);
  const char *path = tt_tmp_path("vision_rt.h5");
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  bcPolicy *q = bc_policy_load(path);
  cr_assert(q, "%s", tk_errmsg());
  cr_expect_eq(q->nimg, 2);
  cr_expect_eq(q->obs_dim, 5);
  cr_expect_eq(q->feat_dim, p->feat_dim);
  cr_expect_eq(q->arch.obs_dim, p->arch.obs_dim);
  for (int i = 0; i < 2; i++) {
    cr_expect_str_eq(q->img[i].key, p->img[i].key);
    cr_expect(q->img[i].height == SIDE && q->img[i].width == SIDE && q->img[i].crop_h == CROP);
    cr_expect_eq(memcmp(&q->img[i].enc_arch, &p->img[i].enc_arch, sizeof(nnEncArch)), 0);
    cr_assert_eq(q->img[i].enc->n_params, p->img[i].enc->n_params);
    cr_expect_eq(
        memcmp(q->img[i].enc->params, p->img[i].enc->params, sizeof(float) * p->img[i].enc->n_params), 0,
        "camera %d's weights", i);
    /* torch's Conv2d layout in the file */
    const nnTensor *t = nn_enc_tensor_find(q->img[i].enc, "conv0.weight");
    cr_assert(t);
    cr_expect(t->ndim == 4 && t->shape[0] == 8 && t->shape[1] == 3 && t->shape[2] == 3 && t->shape[3] == 3);
  }
  cr_expect_eq(memcmp(q->net->params, p->net->params, sizeof(float) * p->net->n_params), 0);
  /* a clone acts like its source: the same parameters */
  bcPolicy *c = bc_policy_clone(q);
  cr_assert(c, "%s", tk_errmsg());
  cr_expect_eq(memcmp(c->img[1].enc->params, q->img[1].enc->params, sizeof(float) * q->img[1].enc->n_params),
               0);
  /* the low-dim entry points refuse a camera policy: it needs its frames */
  nnWork *w = nn_work_make(q->net, 1);
  float obs[5] = {0}, scratch[512];
  double act[7];
  cr_expect_neq(bc_policy_act(q, w, obs, 1, scratch, act), 0);
  cr_expect(strstr(tk_errmsg(), "bc_actor"), "%s", tk_errmsg());
  nn_work_free(w);
  bc_policy_free(c);
  bc_policy_free(q);
  bc_policy_free(p);
}

/* The lift task with the cameras a policy reads, an environment and the policy's actor. */
typedef struct {
  capModel *m;
  capEnv *env;
  bcActor *a;
  int ncams; /* cameras the model renders */
} liftActor;

static void lift_actor_open(const bcPolicy *p, liftActor *la) {
  capOpts co;
  cap_opts_default(&co);
  co.task = "lift";
  memset(la, 0, sizeof *la);
  cr_assert_eq(bc_policy_model_load(p, &co, &la->m), 0, "%s", tk_errmsg());
  la->ncams = co.ncams;
  cr_assert_eq(cap_env_make(la->m, &la->env), 0, "%s", tk_errmsg());
  la->a = bc_actor_make(p, la->m);
  cr_assert(la->a, "%s", tk_errmsg());
}

static void lift_actor_close(liftActor *la) {
  bc_actor_free(la->a);
  cap_env_free(la->env);
  cap_model_free(la->m);
}

/* The C actor on frames the lift task rendered against the numpy reader on the same frames (a recurrent
 * policy: the steps of one episode, its state carried between them). */
static void numpy_forward_check(bcPolicy *p, const char *path) {
  cr_assert_eq(bc_policy_save(p, path), 0, "%s", tk_errmsg());
  bcPolicy *q = bc_policy_load(path);
  cr_assert(q, "%s", tk_errmsg());
  liftActor la;
  lift_actor_open(q, &la);
  cr_expect_eq(la.ncams, 2, "the policy's cameras are rendered");
  capModel *m = la.m;
  capEnv *env = la.env;
  bcActor *a = la.a;
  bcBinding b;
  cr_assert_eq(bc_bind(q, m, &b), 0, "%s", tk_errmsg());
  enum { B = 6 };
  uint8_t *fr[2];
  for (int i = 0; i < 2; i++)
    fr[i] = malloc((size_t)B * SIDE * SIDE * 3);
  float low[B * 5];
  double act[B * 7];
  capObs o;
  cr_assert_eq(cap_env_reset(env, 11, &o), 0, "%s", tk_errmsg());
  for (int s = 0; s < B; s++) { /* steps of an episode: the scene changes */
    for (int i = 0; i < 2; i++)
      memcpy(fr[i] + (size_t)s * SIDE * SIDE * 3, o.v[b.img_index[i]], SIDE * SIDE * 3);
    bc_gather(&b, &o, low + s * 5);
    cr_assert_eq(bc_actor_step(a, &o, act + s * 7), 0, "%s", tk_errmsg());
    double push[7] = {0.8, -0.5, -0.6, 0, 0, 0, s % 2 ? 1 : -1};
    capStep st;
    cr_assert_eq(cap_env_step(env, push, &st), 0);
    o = st.obs;
  }
  /* the frames differ between steps (the arm moves in both views) */
  cr_expect_neq(memcmp(fr[0], fr[0] + (size_t)(B - 1) * SIDE * SIDE * 3, SIDE * SIDE * 3), 0);
  cr_expect_neq(memcmp(fr[1], fr[1] + (size_t)(B - 1) * SIDE * SIDE * 3, SIDE * SIDE * 3), 0);
  const char *f0 = tt_tmp_path("vision_f0.npy"), *f1 = tt_tmp_path("vision_f1.npy"),
             *lo = tt_tmp_path("vision_low.bin"), *out = tt_tmp_path("vision_out.bin");
  write_npy_u8(f0, fr[0], B, SIDE, SIDE, 3);
  write_npy_u8(f1, fr[1], B, SIDE, SIDE, 3);
  FILE *f = fopen(lo, "wb");
  fwrite(low, sizeof(float), B * 5, f);
  fclose(f);
  char *txt = NULL;
  int rc = tt_run(&txt, "%s %s %s %s %s agentview_image=%s robot0_eye_in_hand_image=%s", py(),
                  tt_src("tests/bc/policy_forward.py"), path, lo, out, f0, f1);
  cr_assert_eq(rc, 0, "%s", txt);
  cr_expect(strstr(txt, "cameras=agentview_image(32x32->28x28)"), "%s", txt);
  free(txt);
  double ref[B * 7];
  f = fopen(out, "rb");
  cr_assert(f, "%s: %s", out, txt);
  cr_assert_eq(fread(ref, sizeof(double), B * 7, f), (size_t)B * 7);
  fclose(f);
  double worst = 0, spread = 0;
  for (int i = 0; i < B * 7; i++) {
    worst = fmax(worst, fabs(ref[i] - act[i]));
    spread = fmax(spread, fabs(act[i] - act[i % 7]));
  }
  cr_expect(worst <= 1e-4, "numpy and C differ by %g", worst);
  cr_expect(spread > 1e-3, "the actions do not depend on what the cameras see (spread %g)", spread);
  /* a camera missing from the reader's arguments is an error, not a guess */
  rc = tt_run(&txt, "%s %s %s %s %s agentview_image=%s", py(), tt_src("tests/bc/policy_forward.py"), path, lo,
              out, f0);
  cr_expect_eq(rc, 1, "%s", txt);
  free(txt);
  for (int i = 0; i < 2; i++)
    free(fr[i]);
  lift_actor_close(&la);
  bc_policy_free(q);
  bc_policy_free(p);
}

Test(vision, numpy_forward_matches_on_rendered_frames) {
  numpy_forward_check(camera_policy(5, 8), tt_tmp_path("vision_np.h5"));
}

Test(vision, numpy_forward_matches_a_recurrent_camera_policy) {
  numpy_forward_check(camera_policy_rnn(6, 8, 2), tt_tmp_path("vision_np_rnn.h5"));
}

/* A policy naming a camera the task does not have, and an environment that does not render the policy's
 * cameras: refused with both lists. */
Test(vision, missing_cameras_refused_with_both_lists) {
  bcPolicy *p = camera_policy(9, 8);
  snprintf(p->img[1].key, sizeof p->img[1].key, "sideview_image");
  capOpts co;
  cap_opts_default(&co);
  co.task = "lift";
  capModel *m = NULL;
  cr_expect_neq(bc_policy_model_load(p, &co, &m), 0);
  const char *e = tk_errmsg();
  cr_expect(strstr(e, "sideview") && strstr(e, "agentview_image(32x32x3)") && strstr(e, "eye_in_hand"), "%s",
            e);
  /* no cameras rendered: bc_bind lists the policy's cameras and "none" */
  cap_opts_default(&co);
  co.task = "lift";
  cr_assert_eq(cap_model_load(&co, &m), 0);
  bcBinding b;
  cr_expect_neq(bc_bind(p, m, &b), 0);
  e = tk_errmsg();
  cr_expect(strstr(e, "sideview_image(32x32x3)") && strstr(e, "renders none"), "%s", e);
  cap_model_free(m);
  /* rendered at another size than the policy's frames */
  snprintf(p->img[1].key, sizeof p->img[1].key, "robot0_eye_in_hand_image");
  cap_opts_default(&co);
  co.task = "lift";
  co.ncams = 1;
  snprintf(co.cams[0].name, sizeof co.cams[0].name, "agentview");
  co.cams[0].width = co.cams[0].height = 64;
  cr_expect_neq(bc_policy_cameras(p, &co), 0);
  cr_expect(strstr(tk_errmsg(), "64x64") && strstr(tk_errmsg(), "32x32"), "%s", tk_errmsg());
  bc_policy_free(p);
}

/* Malformed camera policies (made with h5py from a good one) are refused with a message naming the
 * problem, before anything of their declared size is allocated. */
Test(vision, malformed_camera_policies_refused) {
  bcPolicy *p = camera_policy(13, 8);
  const char *good = tt_tmp_path("vision_good.h5");
  cr_assert_eq(bc_policy_save(p, good), 0, "%s", tk_errmsg());
  bc_policy_free(p);
  const char *dir = tt_tmp_path("vision_bad");
  mkdir(dir, 0755);
  /* name, python statements on f (h5py.File in r+), a fragment the message must have */
  static const char *const cases[][3] = {
      {"conv_rank",
       "w = f['weights/enc0.conv0.weight'][()]; del f['weights/enc0.conv0.weight']; "
       "f['weights/enc0.conv0.weight'] = w.reshape(8, 3, 9)",
       "enc0.conv0.weight"},
      {"conv_in",
       "w = f['weights/enc1.conv2.weight'][()]; del f['weights/enc1.conv2.weight']; "
       "f['weights/enc1.conv2.weight'] = np.zeros((16, 9, 3, 3), 'f4')",
       "enc1.conv2.weight"},
      {"conv_missing", "del f['weights/enc0.linear9.weight']", "enc0.linear9.weight"},
      {"extra_tensor", "f['weights/enc2.conv0.weight'] = np.zeros((8, 3, 3, 3), 'f4')", "enc2.conv0.weight"},
      {"nan_weight", "w = f['weights/enc0.conv0.bias']; w[0] = np.nan", "enc0.conv0.bias"},
      {"kernel_too_big",
       "a = json.loads(f.attrs['arch']); a['encoders'][0]['encoder']['layers'][0]['kernel'] = 99; "
       "f.attrs['arch'] = json.dumps(a)",
       "kernel"},
      {"unknown_layer",
       "a = json.loads(f.attrs['arch']); a['encoders'][0]['encoder']['layers'][1]['type'] = 'pool'; "
       "f.attrs['arch'] = json.dumps(a)",
       "pool"},
      {"crop_mismatch",
       "a = json.loads(f.attrs['arch']); a['encoders'][1]['crop'] = [20, 20]; "
       "f.attrs['arch'] = json.dumps(a)",
       "crop"},
      {"frame_huge",
       "a = json.loads(f.attrs['arch']); a['encoders'][1]['frame'] = [100000, 32, 3]; "
       "f.attrs['arch'] = json.dumps(a)",
       "encoders[1]"},
      {"frame_beyond_int", /* 1e20 does not fit an int: refused before any cast (UBSan's float-cast) */
       "a = json.loads(f.attrs['arch']); a['encoders'][1]['frame'] = [1e20, 32, 3]; "
       "f.attrs['arch'] = json.dumps(a)",
       "encoders[1]"},
      {"encoders_not_list",
       "a = json.loads(f.attrs['arch']); a['encoders'] = {}; f.attrs['arch'] = json.dumps(a)", "encoders"},
      {"huge_channels",
       "a = json.loads(f.attrs['arch']); a['encoders'][0]['encoder']['layers'][2]['out'] = 1000000; "
       "f.attrs['arch'] = json.dumps(a)",
       "encoders[0]"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char bad[4200], *out = NULL;
    snprintf(bad, sizeof bad, "%s/%s.h5", dir, cases[i][0]);
    int rc = tt_run(
        &out,
        "cp %s %s && %s -c \"import h5py, json, numpy as np\nf = h5py.File('%s', 'r+')\n%s\nf.close()\"",
        good, bad, py(), bad, cases[i][1]);
    cr_assert_eq(rc, 0, "%s: %s", cases[i][0], out);
    free(out);
    bcPolicy *q = bc_policy_load(bad);
    cr_expect(!q, "%s was loaded", cases[i][0]);
    const char *e = tk_errmsg();
    cr_expect(strstr(e, bad) && strstr(e, cases[i][2]) && !strchr(e, '\n'), "%s: %s", cases[i][0], e);
    bc_policy_free(q);
    /* the numpy reader refuses it too */
    rc = tt_run(&out, "%s %s %s", py(), tt_src("tests/bc/policy_forward.py"), bad);
    cr_expect_eq(rc, 1, "policy_forward.py accepted %s: %s", cases[i][0], out);
    free(out);
  }
}

/* One step on one thread and on two: the same encoder gradients within rounding (the threads' blocks are
 * summed in another order), and not all zero. */
static void expect_same_encoder_grads(const bcPolicy *a, const bcPolicy *b) {
  for (int c = 0; c < a->nimg; c++) {
    const nnEnc *e1 = a->img[c].enc, *e2 = b->img[c].enc;
    double dmax = 0, gmax = 0;
    for (int64_t k = 0; k < e1->n_params; k++) {
      dmax = fmax(dmax, fabs(e1->grads[k] - e2->grads[k]));
      gmax = fmax(gmax, fabs(e1->grads[k]));
    }
    cr_expect(gmax > 0 && dmax <= 1e-4 * gmax,
              "camera %d, 1 vs 2 threads: gradients differ by %g (largest %g)", c, dmax, gmax);
  }
}

/* Frames of a dot in one of two places, the action the dot's side: only the camera tells it. */
static void dot_frames(uint8_t *fr, float *y, int n, uint64_t seed) {
  tkRng r;
  tk_rng_seed(&r, seed);
  for (int k = 0; k < n; k++) {
    uint8_t *f = fr + (size_t)k * SIDE * SIDE * 3;
    for (int i = 0; i < SIDE * SIDE * 3; i++)
      f[i] = (uint8_t)(20 + tk_rng_below(&r, 30));
    int side = (int)tk_rng_below(&r, 2);
    int cx = side ? 22 : 9, cy = 8 + (int)tk_rng_below(&r, 16);
    for (int dy = -3; dy <= 3; dy++)
      for (int dx = -3; dx <= 3; dx++) {
        uint8_t *px = f + ((size_t)(cy + dy) * SIDE + (cx + dx)) * 3;
        px[0] = 250;
        px[1] = 240;
        px[2] = 30;
      }
    for (int a = 0; a < 7; a++)
      y[k * 7 + a] = a == 0 ? (side ? 0.8f : -0.8f) : 0.0f;
  }
}

/* The training step learns what only the images tell (the loss falls well below the 0.64/7 of a policy
 * blind to them); the same seed gives the same bits; two threads give one thread's step within rounding. */
Test(vision, training_step_learns_from_images_deterministically) {
  enum { N = 256, Bt = 32 };
  uint8_t *fr = malloc((size_t)N * SIDE * SIDE * 3), *fr2 = malloc((size_t)N * SIDE * SIDE * 3);
  float *y = malloc(sizeof(float) * N * 7), *y2 = malloc(sizeof(float) * N * 7);
  dot_frames(fr, y, N, 1);
  dot_frames(fr2, y2, N, 2); /* the second camera sees noise unrelated to the action */
  const uint8_t *frames[2] = {fr, fr2};
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 1e-3;
  float x[Bt * 5] = {0};
  int64_t rows[Bt];
  float yb[Bt * 7];
  bcPolicy *pol[3];
  double final[3] = {0};
  const int threads[3] = {1, 1, 2};
  for (int run = 0; run < 3; run++) {
    nn_set_threads(1);
    pol[run] = camera_policy(21, 8);
    bcVisionTrainer *vt = bc_vt_make(pol[run], frames, Bt, threads[run]);
    cr_assert(vt, "%s", tk_errmsg());
    tkRng r;
    tk_rng_seed(&r, 4);
    double sum = 0;
    const int steps = run == 0 ? 300 : 1;
    for (int s = 0; s < steps; s++) {
      for (int b = 0; b < Bt; b++) {
        rows[b] = (int64_t)tk_rng_below(&r, N);
        memcpy(yb + b * 7, y + rows[b] * 7, sizeof(float) * 7);
      }
      float loss;
      double gn;
      cr_assert_eq(bc_vt_step(vt, &o, x, yb, rows, Bt, &r, &loss, &gn), 0, "run %d step %d loss %g: %s", run,
                   s, loss, tk_errmsg());
      cr_assert(isfinite(gn));
      if (s >= steps - 10) sum += loss / TK_MIN(10, steps);
    }
    final[run] = sum;
    if (run == 0) { /* held-out frames, centre crops */
      uint8_t *hf = malloc((size_t)N * SIDE * SIDE * 3);
      float *hy = malloc(sizeof(float) * N * 7);
      dot_frames(hf, hy, Bt, 99);
      bc_vt_free(vt);
      const uint8_t *hfr[2] = {hf, fr2};
      vt = bc_vt_make(pol[run], hfr, Bt, 1);
      cr_assert(vt);
      for (int b = 0; b < Bt; b++)
        rows[b] = b;
      float loss;
      cr_assert_eq(bc_vt_loss(vt, x, hy, rows, Bt, &loss), 0, "%s", tk_errmsg());
      cr_expect(loss < 0.02, "held-out loss %g (blind: ~%g)", loss, 0.64 / 7);
      free(hf);
      free(hy);
    }
    bc_vt_free(vt);
  }
  cr_expect(final[0] < 0.02, "training loss %g", final[0]);
  /* runs 1 and 2: the same step on 1 and 2 threads gives the same gradients within rounding (the threads'
   * blocks are summed in another order) */
  expect_same_encoder_grads(pol[1], pol[2]);
  double tmax = 0;
  for (int64_t k = 0; k < pol[1]->net->n_params; k++)
    tmax = fmax(tmax, fabs(pol[1]->net->grads[k] - pol[2]->net->grads[k]));
  cr_expect(tmax <= 1e-5, "the trunk's gradients differ by %g", tmax);
  nnEnc *e1 = pol[1]->img[0].enc;
  /* and the same seed on the same threads: the same bits */
  bcPolicy *again = camera_policy(21, 8);
  {
    bcVisionTrainer *vt = bc_vt_make(again, frames, Bt, 1);
    tkRng r;
    tk_rng_seed(&r, 4);
    for (int s = 0; s < 1; s++) {
      for (int b = 0; b < Bt; b++) {
        rows[b] = (int64_t)tk_rng_below(&r, N);
        memcpy(yb + b * 7, y + rows[b] * 7, sizeof(float) * 7);
      }
      float loss;
      cr_assert_eq(bc_vt_step(vt, &o, x, yb, rows, Bt, &r, &loss, NULL), 0);
    }
    bc_vt_free(vt);
  }
  cr_expect_eq(memcmp(again->img[0].enc->params, e1->params, sizeof(float) * e1->n_params), 0);
  cr_expect_eq(memcmp(again->net->params, pol[1]->net->params, sizeof(float) * again->net->n_params), 0);
  bc_policy_free(again);
  for (int run = 0; run < 3; run++)
    bc_policy_free(pol[run]);
  free(fr);
  free(fr2);
  free(y);
  free(y2);
}

/* BC-RNN from cameras: the dot shows only in a sequence's first frame and the action is its side at every
 * step, so the policy must see it (the encoder learns through the LSTM's input gradient) and remember it
 * (a policy without memory is blind at 3 of 4 steps: loss >= 3/4 of 0.64/7). One and two threads give the
 * same step within rounding. */
Test(vision, recurrent_camera_policy_remembers_what_it_saw) {
  enum { NS = 128, T = 4, Bs = 16, N = NS * T };
  uint8_t *fr = malloc((size_t)N * SIDE * SIDE * 3), *fr2 = malloc((size_t)N * SIDE * SIDE * 3);
  float *y = malloc(sizeof(float) * N * 7), *y2 = malloc(sizeof(float) * N * 7);
  dot_frames(fr, y, N, 5);
  dot_frames(fr2, y2, N, 6); /* the second camera: unrelated */
  for (int n = 0; n < NS; n++)
    for (int t = 1; t < T;
         t++) { /* later frames: the noise of another frame without its dot; the first's side */
      const int64_t r = (int64_t)n * T + t;
      uint8_t *f = fr + (size_t)r * SIDE * SIDE * 3;
      for (int i = 0; i < SIDE * SIDE * 3; i++)
        if (f[i] >= 50) f[i] = (uint8_t)(20 + (i * 7 + r) % 30);
      memcpy(y + r * 7, y + (size_t)n * T * 7, sizeof(float) * 7);
    }
  const uint8_t *frames[2] = {fr, fr2};
  nnAdamOpts o;
  nn_adam_default(&o);
  o.lr = 2e-3;
  float x[Bs * T * 5] = {0}, yb[Bs * T * 7];
  int64_t rows[Bs * T];
  bcPolicy *pol[3];
  const int threads[3] = {1, 1, 2};
  double loss_end = 0;
  for (int run = 0; run < 3; run++) {
    nn_set_threads(1);
    pol[run] = camera_policy_rnn(31, 8, 1);
    bcVisionTrainer *vt = bc_vt_make(pol[run], frames, Bs, threads[run]);
    cr_assert(vt, "%s", tk_errmsg());
    tkRng r;
    tk_rng_seed(&r, 8);
    const int steps = run == 0 ? 400 : 1;
    for (int s = 0; s < steps; s++) {
      for (int b = 0; b < Bs; b++) {
        const int64_t n = (int64_t)tk_rng_below(&r, NS - 16); /* the last 16 sequences are held out */
        for (int t = 0; t < T; t++) {
          rows[b * T + t] = n * T + t;
          memcpy(yb + (b * T + t) * 7, y + (n * T + t) * 7, sizeof(float) * 7);
        }
      }
      float loss;
      double gn;
      cr_assert_eq(bc_vt_step(vt, &o, x, yb, rows, Bs, &r, &loss, &gn), 0, "run %d step %d: %s", run, s,
                   tk_errmsg());
      cr_assert(isfinite(gn));
    }
    if (run == 0) { /* the held-out sequences, centre crops */
      for (int b = 0; b < Bs; b++)
        for (int t = 0; t < T; t++) {
          const int64_t n = NS - 16 + b;
          rows[b * T + t] = n * T + t;
          memcpy(yb + (b * T + t) * 7, y + (n * T + t) * 7, sizeof(float) * 7);
        }
      float loss;
      cr_assert_eq(bc_vt_loss(vt, x, yb, rows, Bs, &loss), 0, "%s", tk_errmsg());
      loss_end = loss;
    }
    bc_vt_free(vt);
  }
  printf("recurrent camera policy: held-out loss %.4g after 400 steps (without memory: >= %.4g)\n", loss_end,
         0.75 * 0.64 / 7);
  cr_expect(loss_end < 0.02, "held-out loss %g (without memory: >= %g)", loss_end, 0.75 * 0.64 / 7);
  expect_same_encoder_grads(pol[1], pol[2]);
  for (int run = 0; run < 3; run++)
    bc_policy_free(pol[run]);
  free(fr);
  free(fr2);
  free(y);
  free(y2);
}

/* A diffusion policy with cameras: the vision trainer puts each observation step's features in that step's
 * slot of the denoiser's row (its loss equals one assembled by hand from the encoders on the centre crops),
 * the gradient reaches both encoders, one and two threads agree, and the actor plans from rendered frames. */
Test(vision, diffusion_camera_policy_assembles_its_steps) {
  enum { N = 64, Bs = 8, H = 2, K = 4 };
  nnArch a;
  nn_arch_default(&a);
  a.n_hidden = 1;
  a.hidden[0] = 32;
  a.head = NN_HEAD_MSE;
  a.tanh = 0;
  bcDiffusion d;
  bc_diff_default(&d);
  d.horizon = K;
  d.exec = 2;
  d.train_steps = 20;
  d.sample_steps = 4;
  d.temb = 8;
  bcImage img[2];
  const char *keys[2] = {"agentview_image", "robot0_eye_in_hand_image"};
  int feat = 0;
  for (int i = 0; i < 2; i++) {
    memset(&img[i], 0, sizeof img[i]);
    snprintf(img[i].key, sizeof img[i].key, "%s", keys[i]);
    img[i].height = img[i].width = SIDE;
    img[i].channels = 3;
    img[i].crop_h = img[i].crop_w = CROP;
    nn_enc_arch_default(&img[i].enc_arch, 3, CROP, CROP, 4);
    feat += nn_enc_out_dim(&img[i].enc_arch);
  }
  a.act_dim = K * 7;
  a.obs_dim = H * (5 + feat) + a.act_dim + d.temb;
  uint8_t *fr = malloc((size_t)N * SIDE * SIDE * 3), *fr2 = malloc((size_t)N * SIDE * SIDE * 3);
  float *yy = malloc(sizeof(float) * N * 7);
  dot_frames(fr, yy, N, 3);
  dot_frames(fr2, yy, N, 4);
  const uint8_t *frames[2] = {fr, fr2};
  tkRng r;
  tk_rng_seed(&r, 1);
  float *x = malloc(sizeof(float) * Bs * (size_t)a.obs_dim), y[Bs * K * 7];
  int64_t rows[Bs * H];
  for (int b = 0; b < Bs; b++) {
    for (int k = 0; k < a.obs_dim; k++)
      x[b * a.obs_dim + k] = (float)tk_rng_range(&r, -1, 1);
    for (int j = 0; j < H; j++)
      rows[b * H + j] = (int64_t)tk_rng_below(&r, N);
  }
  for (int k = 0; k < Bs * K * 7; k++)
    y[k] = (float)tk_rng_range(&r, -1, 1);
  bcPolicy *pol[3];
  nnAdamOpts o;
  nn_adam_default(&o);
  for (int run = 0; run < 3; run++) {
    nn_set_threads(1);
    pol[run] = bc_policy_make_diffusion(&a, 2, LOW, LOW_DIMS, 2, img, &d, 41);
    cr_assert(pol[run], "%s", tk_errmsg());
    bcVisionTrainer *vt = bc_vt_make(pol[run], frames, Bs, run == 2 ? 2 : 1);
    cr_assert(vt, "%s", tk_errmsg());
    float loss;
    if (run == 0) { /* the loss against one assembled by hand */
      cr_assert_eq(bc_vt_loss(vt, x, y, rows, Bs, &loss), 0, "%s", tk_errmsg());
      const bcPolicy *p = pol[0];
      float *X = malloc(sizeof(float) * Bs * (size_t)a.obs_dim), crop[3 * CROP * CROP], f[64];
      memcpy(X, x, sizeof(float) * Bs * (size_t)a.obs_dim);
      for (int i = 0; i < 2; i++) {
        nnEncWork *ew = nn_enc_work_make(p->img[i].enc, 1);
        const int off = i == 0 ? 0 : nn_enc_out_dim(&p->img[0].enc_arch),
                  F = nn_enc_out_dim(&p->img[i].enc_arch);
        for (int b = 0; b < Bs; b++)
          for (int j = 0; j < H; j++) {
            nn_image_crop(frames[i] + (size_t)rows[b * H + j] * SIDE * SIDE * 3, SIDE, SIDE, 3,
                          (SIDE - CROP) / 2, (SIDE - CROP) / 2, CROP, CROP, crop);
            cr_assert_eq(nn_enc_forward(p->img[i].enc, ew, crop, 1, f), 0);
            memcpy(X + (size_t)b * a.obs_dim + j * (5 + feat) + 5 + off, f, sizeof(float) * (size_t)F);
          }
        nn_enc_work_free(ew);
      }
      nnWork *w = nn_work_make(p->net, Bs);
      float ref;
      cr_assert_eq(nn_loss(p->net, w, X, y, Bs, &ref), 0, "%s", tk_errmsg());
      cr_expect(fabsf(loss - ref) <= 1e-6f * fmaxf(1, fabsf(ref)), "trainer loss %g, by hand %g", loss, ref);
      nn_work_free(w);
      free(X);
    }
    double gn;
    cr_assert_eq(bc_vt_step(vt, &o, x, y, rows, Bs, NULL, &loss, &gn), 0, "%s", tk_errmsg());
    bc_vt_free(vt);
  }
  expect_same_encoder_grads(pol[1], pol[2]);
  /* the actor plans from what lift renders, the same seed the same actions */
  bcPolicy *p = pol[0];
  snprintf(p->task, sizeof p->task, "lift");
  liftActor la;
  lift_actor_open(p, &la);
  capEnv *env = la.env;
  bcActor *ac = la.a;
  double act[2][5][7];
  for (int round = 0; round < 2; round++) {
    capObs ob;
    cr_assert_eq(cap_env_reset(env, 3, &ob), 0);
    bc_actor_reset(ac, 3);
    for (int t = 0; t < 5; t++) {
      cr_assert_eq(bc_actor_step(ac, &ob, act[round][t]), 0, "%s", tk_errmsg());
      capStep st;
      cr_assert_eq(cap_env_step(env, act[round][t], &st), 0);
      ob = st.obs;
    }
  }
  cr_expect_eq(memcmp(act[0], act[1], sizeof act[0]), 0, "the same episode seed acted otherwise");
  lift_actor_close(&la);
  for (int run = 0; run < 3; run++)
    bc_policy_free(pol[run]);
  free(x);
  free(fr);
  free(fr2);
  free(yy);
}
