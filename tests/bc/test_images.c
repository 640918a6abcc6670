/* Image observations for training (bc_images.c): frames read from a dataset recorded with cameras by the
 * real teleop binary, frames rendered again from the states of the same demos recorded without cameras,
 * the memory check, the refusals, and bc-train's --render-cameras through the binary. Two short lift
 * episodes keep the rendering to a fraction of a second. */
#include <criterion/criterion.h>
#include <sched.h>
#include <stdarg.h>

#include "bc.h"
#include "ds.h"
#include "tk.h"
#include "tt.h"
#include "tt_cli.h"

/* What bc-train says where the image policy will go (bc_train.c's load_data); the integrator changes it. */

static const char *const KEYS2[] = {"agentview_image", "robot0_eye_in_hand_image"};
static const capCamera CAMS2[] = {{"agentview", 84, 84}, {"eye_in_hand", 84, 84}};

TestSuite(images, .fini = tt_pool_free);

typedef struct {
  char dir[4096], cam[4200], low[4200];
} pair;

/* The same two scripted lift episodes (same seeds), once with both cameras at 84x84 and once without. */
static void record_pair(pair *p, int with_low) {
  snprintf(p->dir, sizeof p->dir, "%s", tt_tmpdir());
  snprintf(p->cam, sizeof p->cam, "%s/cam.h5", p->dir);
  snprintf(p->low, sizeof p->low, "%s/low.h5", p->dir);
  tt_record(p->cam, "lift", 2, 0.3, 0, "--camera agentview:84x84 --camera eye_in_hand:84x84");
  if (with_low) tt_record(p->low, "lift", 2, 0.3, 0, NULL);
}

static dsFile *open_ds(const char *path) {
  dsFile *f = NULL;
  cr_assert_eq(ds_open(path, 0, &f), 0, "ds_open %s: %s", path, tk_errmsg());
  return f;
}

static void load_low(dsFile *f, dsLoaded *L) {
  const char *k[] = {"robot0_eef_pos"};
  dsLoadOpts lo = {.obs_keys = k, .nobs_keys = 1};
  cr_assert_eq(ds_load(f, &lo, L), 0, "ds_load: %s", tk_errmsg());
}

/* Frames of key k of im equal to the file's obs/<key>, read episode by episode through ds_read_episode. */
static void expect_file_frames(dsFile *f, const dsLoaded *L, const bcImages *im, int k, const char *what) {
  const dsSchema *s = ds_schema(f);
  int si = ds_schema_find(s, im->key[k]);
  cr_assert(si >= 0, "%s: no %s in the file", what, im->key[k]);
  const size_t frame = (size_t)im->h[k] * im->w[k] * im->c[k];
  cr_assert_eq((int64_t)frame, ds_key_elems(&s->keys[si]), "%s: %s frame size", what, im->key[k]);
  int64_t differ = 0, total = 0;
  int maxd = 0;
  for (int i = 0; i < L->ndemos; i++) {
    dsEpisode e;
    cr_assert_eq(ds_read_episode(f, L->demo_pos[i], &e), 0, "%s", tk_errmsg());
    cr_assert_eq(e.num_samples, L->demo_start[i + 1] - L->demo_start[i]);
    const uint8_t *want = e.obs[si], *got = im->data[k] + (size_t)L->demo_start[i] * frame;
    for (size_t b = 0; b < (size_t)e.num_samples * frame; b++) {
      int d = abs((int)want[b] - (int)got[b]);
      differ += d != 0;
      maxd = TK_MAX(maxd, d);
    }
    total += e.num_samples * (int64_t)frame;
    ds_episode_free(&e);
  }
  printf("%s: %s: %lld of %lld bytes differ, max difference %d\n", what, im->key[k], (long long)differ,
         (long long)total, maxd);
  cr_expect_eq(differ, 0, "%s: %s: %lld of %lld bytes differ (max difference %d)", what, im->key[k],
               (long long)differ, (long long)total, maxd);
}

Test(images, reads_the_stored_frames) {
  pair p;
  record_pair(&p, 0);
  dsFile *f = open_ds(p.cam);
  dsLoaded L;
  load_low(f, &L);
  cr_assert(bc_is_image_key(f, "agentview_image", 0, NULL));
  cr_assert(bc_is_image_key(f, "robot0_eye_in_hand_image", 0, NULL));
  cr_assert(!bc_is_image_key(f, "robot0_eef_pos", 0, NULL));
  cr_assert(!bc_is_image_key(f, "nothing", 0, NULL));
  bcImages im;
  int rc = bc_images_load(f, &L, 2, KEYS2, 0, NULL, 1, &im);
  cr_assert_eq(rc, 0, "%s", tk_errmsg());
  cr_assert_eq(im.nkeys, 2);
  cr_assert_eq(im.n, L.n);
  for (int k = 0; k < 2; k++) {
    cr_expect_str_eq(im.key[k], KEYS2[k]);
    cr_expect(im.h[k] == 84 && im.w[k] == 84 && im.c[k] == 3 && !im.rendered[k]);
    expect_file_frames(f, &L, &im, k, "read");
  }
  bc_images_free(&im);
  bc_images_free(&im); /* zeroed: fine again */
  bc_images_free(NULL);
  ds_loaded_free(&L);
  ds_close(f);
}

/* Rendered from the states of the camera-less recording (same seeds, so the same trajectory: the states
 * are checked equal first) = the frames teleop recorded. */
Test(images, rendered_from_states_equal_the_recorded_frames) {
  pair p;
  record_pair(&p, 1);
  dsFile *fc = open_ds(p.cam), *fl = open_ds(p.low);
  dsLoaded Lc, Ll;
  load_low(fc, &Lc);
  load_low(fl, &Ll);
  cr_assert_eq(Lc.n, Ll.n, "the two recordings differ in length: %lld vs %lld", (long long)Lc.n,
               (long long)Ll.n);
  for (int i = 0; i < Ll.ndemos; i++) {
    dsEpisode a, b;
    cr_assert_eq(ds_read_episode(fc, i, &a), 0);
    cr_assert_eq(ds_read_episode(fl, i, &b), 0);
    int S = ds_schema(fl)->state_dim;
    cr_assert_eq(memcmp(a.states, b.states, sizeof(double) * (size_t)(S * a.num_samples)), 0,
                 "demo %d: the recordings' states differ", i);
    ds_episode_free(&a);
    ds_episode_free(&b);
  }
  cr_assert(!bc_is_image_key(fl, "agentview_image", 0, NULL));
  cr_assert(bc_is_image_key(fl, "agentview_image", 2, CAMS2));
  cr_assert(bc_is_image_key(fl, "robot0_eye_in_hand_image", 2, CAMS2));
  bcImages im;
  double t0 = tk_now_s();
  int rc = bc_images_load(fl, &Ll, 2, KEYS2, 2, CAMS2, 1, &im);
  printf("rendered %lld rows x 2 cameras in %.2f s\n", (long long)Ll.n, tk_now_s() - t0);
  cr_assert_eq(rc, 0, "%s", tk_errmsg());
  for (int k = 0; k < 2; k++) {
    cr_expect(im.rendered[k] && im.h[k] == 84 && im.w[k] == 84 && im.c[k] == 3);
    expect_file_frames(fc, &Lc, &im, k, "rendered");
  }
  bc_images_free(&im);
  /* one worker (this process on one core) renders the same bytes as one per core */
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu() >= 0 ? sched_getcpu() : 0, &one);
  cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
  cr_assert_eq(bc_images_load(fl, &Ll, 2, KEYS2, 2, CAMS2, 1, &im), 0, "%s", tk_errmsg());
  for (int k = 0; k < 2; k++)
    expect_file_frames(fc, &Lc, &im, k, "rendered by one worker");
  bc_images_free(&im);
  ds_loaded_free(&Lc);
  ds_loaded_free(&Ll);
  ds_close(fc);
  ds_close(fl);
}

/* A key the file has and a render camera names is rendered (the explicit request wins): at another size
 * it has that size; at the recorded size it gives the recorded frames. */
Test(images, a_render_camera_wins_over_the_file) {
  pair p;
  record_pair(&p, 0);
  dsFile *f = open_ds(p.cam);
  dsLoaded L;
  load_low(f, &L);
  bcImages im;
  const capCamera small[] = {{"agentview", 32, 24}};
  cr_assert_eq(bc_images_load(f, &L, 2, KEYS2, 1, small, 1, &im), 0, "%s", tk_errmsg());
  cr_expect(im.rendered[0] && im.w[0] == 32 && im.h[0] == 24, "%d %dx%d", im.rendered[0], im.w[0], im.h[0]);
  cr_expect(!im.rendered[1] && im.w[1] == 84);
  expect_file_frames(f, &L, &im, 1, "read beside a rendered key");
  bc_images_free(&im);
  cr_assert_eq(bc_images_load(f, &L, 2, KEYS2, 2, CAMS2, 1, &im), 0, "%s", tk_errmsg());
  expect_file_frames(f, &L, &im, 0, "rendered over the file");
  expect_file_frames(f, &L, &im, 1, "rendered over the file");
  bc_images_free(&im);
  ds_loaded_free(&L);
  ds_close(f);
}

/* The memory check: the frames must fit in the available memory less max(a quarter, 512 MiB); the
 * boundary is exact, the refusal names the need and the source of the figure. */
Test(images, refuses_what_does_not_fit_in_memory) {
  pair p;
  record_pair(&p, 0);
  dsFile *f = open_ds(p.cam);
  dsLoaded L;
  load_low(f, &L);
  const long long need = (long long)L.n * 2 * 84 * 84 * 3, headroom = 512ll << 20;
  char v[64];
  bcImages im;
  snprintf(v, sizeof v, "%lld", headroom + need);
  setenv("DK_MEM_AVAILABLE", v, 1);
  cr_assert_eq(bc_images_load(f, &L, 2, KEYS2, 0, NULL, 1, &im), 0, "exactly enough: %s", tk_errmsg());
  bc_images_free(&im);
  snprintf(v, sizeof v, "%lld", headroom + need - 1);
  setenv("DK_MEM_AVAILABLE", v, 1);
  int rc = bc_images_load(f, &L, 2, KEYS2, 0, NULL, 1, &im);
  cr_assert_eq(rc, TK_ENOMEM, "one byte short: %d %s", rc, tk_errmsg());
  cr_expect(strstr(tk_errmsg(), "DK_MEM_AVAILABLE") && strstr(tk_errmsg(), "MiB") &&
                strstr(tk_errmsg(), p.cam) && !strchr(tk_errmsg(), '\n'),
            "%s", tk_errmsg());
  cr_expect(im.nkeys == 0 && im.block_ == NULL, "empty after a refusal");
  /* rendering counts the states it holds meanwhile too */
  snprintf(v, sizeof v, "%lld", headroom + need);
  setenv("DK_MEM_AVAILABLE", v, 1);
  cr_expect_eq(bc_images_load(f, &L, 2, KEYS2, 2, CAMS2, 1, &im), TK_ENOMEM, "%s", tk_errmsg());
  setenv("DK_MEM_AVAILABLE", "lots", 1);
  cr_expect_eq(bc_images_load(f, &L, 2, KEYS2, 0, NULL, 1, &im), TK_EINVAL, "a bad value is an error");
  cr_expect(strstr(tk_errmsg(), "DK_MEM_AVAILABLE=lots"), "%s", tk_errmsg());
  unsetenv("DK_MEM_AVAILABLE");
  cr_assert_eq(bc_images_load(f, &L, 2, KEYS2, 0, NULL, 1, &im), 0, "MemAvailable: %s", tk_errmsg());
  bc_images_free(&im);
  ds_loaded_free(&L);
  ds_close(f);
}

static void expect_refusal(dsFile *f, const dsLoaded *L, int nk, const char *const *keys, int nr,
                           const capCamera *cams, const char *a, const char *b) {
  bcImages im;
  int rc = bc_images_load(f, L, nk, keys, nr, cams, 1, &im);
  cr_expect(rc < 0, "refused (%s)", a);
  cr_expect(strstr(tk_errmsg(), a) && (!b || strstr(tk_errmsg(), b)), "'%s'%s%s: %s", a, b ? " and " : "",
            b ? b : "", tk_errmsg());
  cr_expect(!strchr(tk_errmsg(), '\n'), "one line: %s", tk_errmsg());
  cr_expect(im.nkeys == 0 && !im.block_);
  bc_images_free(&im);
}

Test(images, refusals_name_the_file_and_the_problem) {
  pair p;
  record_pair(&p, 0);
  dsFile *f = open_ds(p.cam);
  dsLoaded L;
  load_low(f, &L);
  const char *eef[] = {"robot0_eef_pos"}, *none[] = {"frontview_image"}, *side[] = {"sideview_image"};
  expect_refusal(f, &L, 1, eef, 0, NULL, "robot0_eef_pos is float64", "not an image");
  expect_refusal(f, &L, 1, none, 0, NULL, "no observation key frontview_image", "agentview_image");
  /* an unknown camera: the task's cameras are listed */
  const capCamera sidecam[] = {{"sideview", 84, 84}};
  expect_refusal(f, &L, 1, side, 1, sidecam, "no camera 'sideview'", "agentview, eye_in_hand");
  /* sizes the renderer does not make */
  const capCamera tiny[] = {{"agentview", 4, 84}}, huge[] = {{"agentview", 84, 4800}};
  expect_refusal(f, &L, 1, KEYS2, 1, tiny, "4x84", "8x8..640x480");
  expect_refusal(f, &L, 1, KEYS2, 1, huge, "84x4800", "8x8..640x480");
  /* a render camera whose key is not asked for, a camera twice */
  expect_refusal(f, &L, 1, KEYS2 + 1, 1, CAMS2, "agentview_image, which is not among", NULL);
  const capCamera twice[] = {{"agentview", 84, 84}, {"agentview", 64, 64}};
  expect_refusal(f, &L, 1, KEYS2, 2, twice, "agentview given twice", NULL);
  ds_loaded_free(&L);
  ds_close(f);

  /* files the frames cannot be rendered from: another tool's task, states of another model */
  char rm[4200], rm2[4200], *out = NULL;
  snprintf(rm, sizeof rm, "%s/robosuite.h5", p.dir);
  snprintf(rm2, sizeof rm2, "%s/lift32.h5", p.dir);
  const char *py = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
  int rc = tt_run(&out, "%s %s %s --demos 2 --steps 5 && %s %s %s --demos 2 --steps 5 --env lift", py,
                  tt_src("tests/bc/make_robomimic.py"), rm, py, tt_src("tests/bc/make_robomimic.py"), rm2);
  cr_assert_eq(rc, 0, "make_robomimic.py: %s", out);
  free(out);
  f = open_ds(rm);
  load_low(f, &L);
  const capCamera av[] = {{"agentview", 84, 84}};
  expect_refusal(f, &L, 1, KEYS2, 1, av, "task 'Lift' is not a built-in task", "lift");
  ds_loaded_free(&L);
  ds_close(f);
  f = open_ds(rm2);
  load_low(f, &L);
  expect_refusal(f, &L, 1, KEYS2, 1, av, "states of 32 values", "67");
  ds_loaded_free(&L);
  ds_close(f);
}

/* The camera strings of --render-cameras (and teleop's --camera): NAME:WxH, whole numbers. */
Test(images, camera_strings) {
  capCamera c;
  cr_assert_eq(cap_camera_parse("--render-cameras", "eye_in_hand:64x48", &c), 0, "%s", tk_errmsg());
  cr_expect(!strcmp(c.name, "eye_in_hand") && c.width == 64 && c.height == 48);
  const char *bad[] = {"agentview",     "agentview:84",     "agentview:84x",     ":84x84",
                       "agentview:x84", "agentview:84x84x", "agentview:1e30x84", "agentview:8.5x84",
                       "agentview:0x84"};
  for (size_t i = 0; i < TK_ARRAY_LEN(bad); i++) {
    cr_expect_neq(cap_camera_parse("--render-cameras", bad[i], &c), 0, "%s accepted", bad[i]);
    cr_expect(strstr(tk_errmsg(), "--render-cameras") && strstr(tk_errmsg(), bad[i]), "%s", tk_errmsg());
  }
  char key[80];
  cr_assert_eq(cap_camera_key("agentview", key, sizeof key), 0);
  cr_expect_str_eq(key, "agentview_image");
  cr_assert_eq(cap_camera_key("eye_in_hand", key, sizeof key), 0);
  cr_expect_str_eq(key, "robot0_eye_in_hand_image");
  cr_expect_eq(cap_camera_key("agentview", key, 10), TK_ERANGE);
}

/* The shipped binaries end to end: bc-train on image keys (read from the file, or rendered from a
 * camera-less recording's states) trains a policy with cameras (an MLP or BC-RNN's LSTM after them),
 * selecting it by rollouts that render them; bc-eval rolls it out rendering the cameras it names; bad camera
 * strings are usage errors naming the option. */
Test(images, bc_train_and_bc_eval_with_cameras) {
  pair p;
  record_pair(&p, 1);
  const char *train = tt_build("bc/bc-train"), *eval = tt_build("bc/bc-eval");
  char *out, *err;
  const char *runs[][3] = {
      {p.low, "--obs-keys agentview_image,robot0_eef_pos --render-cameras agentview:84x84",
       "agentview_image"},
      {p.low, "--render-cameras agentview:84x84 --render-cameras eye_in_hand:84x84",
       "robot0_eye_in_hand_image"},
      {p.cam, "--obs-keys agentview_image,robot0_eye_in_hand_image,robot0_eef_pos",
       "robot0_eye_in_hand_image"},
      {p.cam, "--obs-keys agentview_image,robot0_eef_pos --rnn --rnn-hidden 16 --rnn-horizon 3",
       "agentview_image"},
      {p.cam,
       "--obs-keys agentview_image,robot0_eef_pos --head diffusion --action-horizon 4 --exec-horizon 2 "
       "--sample-steps 3",
       "agentview_image"}};
  for (size_t i = 0; i < TK_ARRAY_LEN(runs); i++) {
    int rc = run2(p.dir, &out, &err,
                  "%s %s %s -o %s/p%zu.h5 --epochs 2 --batch 16 --encoder-width 4 --hidden 16 --eval-every 1 "
                  "--eval-episodes 1",
                  train, runs[i][0], runs[i][1], p.dir, i);
    cr_expect_eq(rc, 0, "%s: exit %d\n%s%s", runs[i][1], rc, out, err);
    cr_expect(strstr(out, "image observations:") && strstr(out, "MiB"), "the memory line: %s", out);
    cr_expect(strstr(out, "camera agentview_image: 84x84 frames, random 76x76 crops"), "%s", out);
    char pol[4200];
    snprintf(pol, sizeof pol, "%s/p%zu.h5", p.dir, i);
    bcPolicy *q = bc_policy_load(pol);
    cr_assert(q, "%s", tk_errmsg());
    int found = 0;
    for (int c = 0; c < q->nimg; c++)
      found |= !strcmp(q->img[c].key, runs[i][2]);
    cr_expect(found && q->img[0].crop_h == 76, "%s: the policy's cameras", runs[i][1]);
    cr_expect_eq(q->arch.rnn_layers, strstr(runs[i][1], "--rnn") ? 2 : 0, "%s: the trunk", runs[i][1]);
    cr_expect_eq(q->dif.horizon, strstr(runs[i][1], "diffusion") ? 4 : 0, "%s: the head", runs[i][1]);
    bc_policy_free(q);
    /* Leak checking off for this child: under the sanitizers LeakSanitizer's stop-the-world tracer once
     * crashed (SIGSEGV inside the tracer at exit, "Tracer caught signal 11") in a bc-eval that had rendered
     * cameras in two workers, with Mesa's threads alive; 30 runs outside CI did not repeat it. The camera
     * acting path's leaks are checked in-process by test_vision.c, and bc-eval's own by test_bc_cli.c. */
    rc = run2(p.dir, &out, &err, "ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 %s %s --episodes 2 --json",
              eval, pol);
    cr_expect_eq(rc, 0, "bc-eval %s: %s%s", runs[i][1], out, err);
    cr_expect(strstr(out, "\"episodes\": 2") || strstr(out, "\"episodes\":2"), "%s", out);
  }
  const char *bad[] = {"agentview:84", "agentview:84xabc", "agentview:-1x84",
                       "agentview:84x84,agentview:84x84"};
  for (size_t i = 0; i < TK_ARRAY_LEN(bad); i++) {
    int rc = run2(p.dir, &out, &err, "%s %s --render-cameras '%s' -o %s/p.h5", train, p.low, bad[i], p.dir);
    cr_expect_eq(rc, 2, "%s: exit %d: %s", bad[i], rc, err);
    cr_expect(strstr(err, "--render-cameras") && strstr(err, bad[i]) && count_lines(err) == 1, "%s", err);
  }
  /* and an unknown camera, from the model: exit 1 listing the task's cameras */
  int rc = run2(p.dir, &out, &err, "%s %s --render-cameras sideview:84x84 -o %s/p.h5", train, p.low, p.dir);
  cr_expect_eq(rc, 1, "%s", err);
  cr_expect(strstr(err, "sideview") && strstr(err, "agentview, eye_in_hand"), "%s", err);
  /* --help documents the option */
  rc = run2(p.dir, &out, &err, "%s --help", train);
  cr_expect(rc == 0 && strstr(out, "--render-cameras"), "%s", out);
}
