/* The teleop console, headless: the scripted operator through a virtual pad, recording,
 * unplugging, appending, input record/replay, refusals, and SIGKILL at random instants. */
#include <SDL2/SDL.h>
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <string.h>

#include "bc.h"
#include "ds.h"
#include "tel.h"
#include "tk.h"
#include "tt.h"
#include "tt_cli.h"
#include "tt_sdl.h"

static const char *teleop(void) { return tt_build("teleop/teleop"); }
static const char *dataset(void) { return tt_build("dataset/dataset"); }
static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

/* The acceptance run: 10 lift episodes with an 84x84 camera through the real binary. */
Test(teleop, scripted_pad_records_ten_lift_episodes, .timeout = 300) {
  char p[4200];
  snprintf(p, sizeof p, "%s/demos.h5", tt_tmpdir());
  char *out = NULL;
  int rc =
      tt_run(&out,
             "%s --task lift --device scripted --headless --episodes 10 --camera agentview:84x84 --noise 0.3 "
             "--seed 100 --out %s",
             teleop(), p);
  cr_assert_eq(rc, 0, "%s", out);
  int ok = 0, fail = 0;
  cr_assert(sscanf(strstr(out, "teleop: "), "teleop: %d success, %d failure", &ok, &fail) == 2, "%s", out);
  printf("%s", strstr(out, "teleop: "));
  free(out);
  cr_assert_eq(ok + fail, 10);
  rc = tt_run(&out, "%s validate %s", dataset(), p);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s %s %s --native --expect-demos 10 --expect-images agentview_image:84:84", py(),
              tt_src("tests/dataset/h5_check.py"), p);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* the file's success flags are the operator's presses of A and B */
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  int flagged = 0;
  for (int i = 0; i < ds_num_demos(f); i++) {
    flagged += ds_demo(f, i)->success == 1;
    cr_assert_str_eq(ds_demo(f, i)->device, "scripted");
    cr_assert_float_eq(ds_demo(f, i)->control_hz, 20.0, 1e-9);
  }
  cr_assert_eq(flagged, ok, "dataset says %d successes, the operator pressed A %d times", flagged, ok);
  /* measured timestamps at the control rate */
  double ts[1000];
  int64_t n = ds_demo(f, 0)->num_samples;
  cr_assert_eq(ds_read_column(f, 0, "timestamps", ts, 1000, NULL), 0);
  double dt = (ts[n - 1] - ts[0]) / (double)(n - 1);
  printf("mean step interval %.4f s\n", dt);
  /* the loop never runs ahead of its deadlines (a slow machine may fall behind: no upper bound) */
  for (int64_t t = 1; t < n; t++)
    cr_assert_gt(ts[t], ts[t - 1]);
  cr_assert_geq(dt, 0.05 * 0.98);
  ds_close(f);
}

/* Unplug mid-episode: the action is zero from that tick, the episode waits, and resumes
 * when the pad comes back. */
typedef struct {
  int64_t unplug_at;
  int64_t unplugged_ticks;
  int64_t replug_after;
  int done;
} unplugPlan;

static void unplug_hook(telConsole *c, void *user) {
  unplugPlan *u = user;
  capVpad *v = tel_vpad(c);
  if (!u->done && tel_state(c) == TEL_RECORDING && tel_episode_steps(c) == u->unplug_at &&
      cap_vpad_attached(v)) {
    cr_assert_eq(cap_vpad_unplug(v), 0, "%s", tk_errmsg());
  } else if (!cap_vpad_attached(v)) {
    if (++u->unplugged_ticks >= u->replug_after) {
      cr_assert_eq(cap_vpad_plug(v), 0, "%s", tk_errmsg());
      u->done = 1;
    }
  }
}

Test(teleop, unplug_holds_pauses_and_resumes, .timeout = 120) {
  sdl_up();
  char p[4200];
  snprintf(p, sizeof p, "%s/u.h5", tt_tmpdir());
  unplugPlan u = {.unplug_at = 8, .replug_after = 10};
  telOpts o;
  tel_opts_default(&o);
  o.task = "lift"; /* long enough to unplug in the middle */
  o.device = "scripted";
  o.headless = 1;
  o.out = p;
  o.episodes = 1;
  o.quiet = 1;
  o.on_tick = unplug_hook;
  o.user = &u;
  telStats st;
  cr_assert_eq(tel_run(&o, &st), 0, "%s", tk_errmsg());
  cr_assert(u.done, "the pad was never unplugged");
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  dsEpisode e;
  cr_assert_eq(ds_read_episode(f, 0, &e), 0);
  int64_t k = u.unplug_at; /* the step recorded on the tick the pad vanished */
  cr_assert_gt(e.num_samples, k + 2);
  for (int i = 0; i < 6; i++)
    cr_assert_eq(e.actions[k * 7 + i], 0.0, "step %lld action[%d] after the unplug", (long long)k, i);
  cr_assert_eq(e.actions[k * 7 + 6], e.actions[(k - 1) * 7 + 6], "the gripper holds as it was");
  double gap = e.timestamps[k + 1] - e.timestamps[k];
  printf("unplugged for %lld ticks: gap between steps %lld and %lld is %.3f s\n",
         (long long)u.unplugged_ticks, (long long)k, (long long)k + 1, gap);
  cr_assert_gt(gap, 0.05 * (double)(u.replug_after - 1), "the episode waited while the pad was gone");
  int moving = 0;
  for (int64_t t = k + 1; t < e.num_samples; t++)
    for (int i = 0; i < 3; i++)
      moving |= e.actions[t * 7 + i] != 0;
  cr_assert(moving, "after re-plugging the operator drives again");
  ds_episode_free(&e);
  ds_close(f);
  SDL_Quit();
}

Test(teleop, appending_continues_and_other_tasks_are_refused, .timeout = 120) {
  char p[4200];
  snprintf(p, sizeof p, "%s/a.h5", tt_tmpdir());
  char *out = NULL;
  for (int run = 0; run < 2; run++) {
    int rc = tt_run(&out, "%s --task reach --device scripted --headless --episodes 2 --quiet --out %s",
                    teleop(), p);
    cr_assert_eq(rc, 0, "%s", out);
    free(out);
  }
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(f), 4);
  for (int i = 0; i < 4; i++) {
    cr_assert_eq(ds_demo(f, i)->index, i);
    cr_assert_eq(ds_demo(f, i)->seed, i, "seeds continue across sessions");
  }
  ds_close(f);
  int rc = tt_run(&out, "%s --task push --device scripted --headless --episodes 1 --out %s", teleop(), p);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "reach") && strstr(out, "push"), "names both tasks: %s", out);
  free(out);
}

/* Raw input recorded in one session and replayed in another gives the same demos. */
Test(teleop, recorded_input_replays_to_the_same_demo, .timeout = 120) {
  const char *d = tt_tmpdir();
  char *out = NULL;
  int rc = tt_run(&out,
                  "%s --task lift --device scripted --headless --episodes 1 --quiet --record-input %s/in.bin "
                  "--out %s/a.h5",
                  teleop(), d, d);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s --task lift --device replay --device-arg %s/in.bin --headless --quiet --out %s/b.h5",
              teleop(), d, d);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char pa[4200], pb[4200];
  snprintf(pa, sizeof pa, "%s/a.h5", d);
  snprintf(pb, sizeof pb, "%s/b.h5", d);
  dsFile *fa, *fb;
  cr_assert_eq(ds_open(pa, 0, &fa), 0);
  cr_assert_eq(ds_open(pb, 0, &fb), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(fb), 1);
  dsEpisode ea, eb;
  ds_read_episode(fa, 0, &ea);
  ds_read_episode(fb, 0, &eb);
  cr_assert_eq(ea.num_samples, eb.num_samples);
  cr_assert_eq(memcmp(ea.actions, eb.actions, sizeof(double) * 7 * (size_t)ea.num_samples), 0);
  int S = ds_schema(fa)->state_dim;
  cr_assert_eq(memcmp(ea.states, eb.states, sizeof(double) * (size_t)S * (size_t)ea.num_samples), 0);
  cr_assert_eq(ds_demo(fb, 0)->success, ds_demo(fa, 0)->success);
  ds_episode_free(&ea);
  ds_episode_free(&eb);
  ds_close(fa);
  ds_close(fb);
}

Test(teleop, refusals) {
  char *out = NULL;
  int rc = tt_run(&out, "%s --task lift --headless --device theremin --out /tmp/never.h5", teleop());
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "theremin") && strstr(out, "gamepad"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s --task lift --headless --camera agentview --out /tmp/never.h5", teleop());
  cr_assert_eq(rc, 2, "%s", out);
  free(out);
  rc = tt_run(&out, "%s --task lift --headless", teleop());
  cr_assert_eq(rc, 2, "%s", out);
  cr_assert(strstr(out, "--out"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s --task juggle --headless --device scripted --out /tmp/never.h5", teleop());
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "juggle") && strstr(out, "lift"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s --help", teleop());
  cr_assert_eq(rc, 0);
  cr_assert(strstr(out, "RB close") && strstr(out, "Start"), "--help shows the controls: %s", out);
  free(out);
}

/* Every numeric option through tk_opt_int / tk_opt_f64: NaN, fractions for counts and values past the
 * type are usage errors (exit 2, one line naming the option), before anything is opened or written. */
Test(teleop, numeric_options_are_whole_finite_and_in_range) {
  const char *d = tt_tmpdir();
  char never[4200];
  snprintf(never, sizeof never, "%s/never.h5", d);
  const char *bad[][2] = {{"--rate", "nan"},
                          {"--rate", "inf"},
                          {"--rate", "0"},
                          {"--max-steps", "nan"},
                          {"--max-steps", "1e30"},
                          {"--episodes", "2.5"},
                          {"--episodes", "-1"},
                          {"--seed", "1e30"},
                          {"--seed", "-1"},
                          {"--noise", "nan"},
                          {"--auto-end", "3.5"},
                          {"--image-gzip", "10"},
                          {"--takeover-after", "0"},
                          {"--camera", "agentview:64x64x"},
                          {"--camera", "agentview:1e30x64"},
                          {"--camera", "agentview:64x"},
                          {"--rate", "20Hz"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *out, *err;
    int rc = run2(d, &out, &err, "%s --task lift --headless --device scripted --out %s %s '%s'", teleop(),
                  never, bad[i][0], bad[i][1]);
    cr_expect_eq(rc, 2, "%s %s: exit %d: %s", bad[i][0], bad[i][1], rc, err);
    cr_expect_eq(count_lines(err), 1, "one line: %s", err);
    cr_expect(strstr(err, bad[i][0]) && strstr(err, bad[i][1]), "names the option and the value: %s", err);
  }
  char *out, *err;
  int rc = run2(d, &out, &err, "TK_PROGRESS=yes %s --task lift --headless --device scripted --out %s",
                teleop(), never);
  cr_expect_eq(rc, 2, "exit %d: %s", rc, err);
  cr_expect(strstr(err, "TK_PROGRESS=yes"), "%s", err);
  /* a pad index past int was cast to another pad (4294967296 was pad 0) */
  rc = run2(d, &out, &err, "%s --task lift --headless --device gamepad --device-arg 4294967296 --out %s",
            teleop(), never);
  cr_expect_eq(rc, 1, "exit %d: %s", rc, err);
  cr_expect(strstr(err, "4294967296") && strstr(err, "index"), "%s", err);
  cr_expect_eq(file_size(never), -1, "nothing written");
}

/* The gamepad map (--map) through the strict reader: a misspelt key, a value of the wrong type and a
 * top-level array are refused naming the file and the key (they were ignored: the default map drove). */
Test(teleop, map_file_is_checked) {
  const char *d = tt_tmpdir();
  char never[4200], map[4200];
  snprintf(never, sizeof never, "%s/never.h5", d);
  snprintf(map, sizeof map, "%s/pad.json", d);
  const char *bad[][2] = {{"{\"deadzone\": 0.2, \"sensitivty\": 2}", "\"sensitivty\""},
                          {"{\"dx\": \"left_y\", \"dz\": 3}", "\"dz\""},
                          {"{\"deadzone\": \"0.2\"}", "\"deadzone\""},
                          {"{\"deadzone\": 0.95}", "\"deadzone\""},
                          {"{\"dx\": \"left_q\"}", "left_q"},
                          {"[{\"dx\": \"left_y\"}]", "object"},
                          {"{\"dx\": \"left_y\", \"dx\": \"right_y\"}", "twice"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    FILE *f = fopen(map, "w");
    cr_assert(f);
    fputs(bad[i][0], f);
    fclose(f);
    char *out, *err;
    int rc = run2(
        d, &out, &err,
        "%s --task lift --headless --device scripted --fast --episodes 1 --max-steps 5 --map %s --out %s",
        teleop(), map, never);
    cr_expect_eq(rc, 1, "%s: exit %d: %s", bad[i][0], rc, err);
    cr_expect_eq(count_lines(err), 1, "one line: %s", err);
    cr_expect(strstr(err, map) && strstr(err, bad[i][1]), "%s: names the file and '%s': %s", bad[i][0],
              bad[i][1], err);
  }
  cr_expect_eq(file_size(never), -1, "nothing written");
}

/* SIGKILL of teleop at random instants: every episode it reported committed is in the file
 * after recovery, whole and valid. DK_TELEOP_KILLS sets the count (tests/teleop/kill_soak.sh
 * runs 50+). */
Test(teleop, sigkill_keeps_committed_episodes, .timeout = 600) {
  const char *env = getenv("DK_TELEOP_KILLS");
  int kills = env ? atoi(env) : 10;
  const char *d = tt_tmpdir();
  char p[4200];
  snprintf(p, sizeof p, "%s/k.h5", d);
  tkRng rng;
  tk_rng_seed(&rng, (uint64_t)time(NULL));
  int64_t committed_total = 0;
  static int64_t expect_len[100000];
  for (int i = 0; i < 100000; i++)
    expect_len[i] = -1;
  for (int k = 0; k < kills; k++) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
      dup2(fds[1], 1);
      close(fds[0]);
      execl(teleop(), "teleop", "--task", "reach", "--device", "scripted", "--headless", "--rate", "100",
            "--camera", "agentview:32x32", "--out", p, (char *)NULL);
      _exit(127);
    }
    close(fds[1]);
    usleep((useconds_t)(200000 + tk_rng_below(&rng, 2500000)));
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status), "kill %d: teleop ended by itself (status %d)", k, status);
    /* read what it said it committed */
    char buf[65536];
    ssize_t n, len = 0;
    while ((n = read(fds[0], buf + len, sizeof buf - 1 - (size_t)len)) > 0)
      len += n;
    buf[len] = 0;
    close(fds[0]);
    for (char *q = strstr(buf, "committed demo_"); q; q = strstr(q + 1, "committed demo_")) {
      long long idx, steps;
      if (sscanf(q, "committed demo_%lld (%lld steps)", &idx, &steps) == 2 && idx < 100000) {
        expect_len[idx] = steps;
        committed_total++;
      }
    }
    char *out = NULL;
    int rc = tt_run(&out, "%s recover %s", dataset(), p);
    cr_assert_eq(rc, 0, "kill %d: recover: %s", k, out);
    free(out);
    if (!tk_file_exists(p)) continue;
    dsFile *f;
    cr_assert_eq(ds_open(p, 0, &f), 0, "kill %d: %s", k, tk_errmsg());
    for (int i = 0; i < 100000; i++) {
      if (expect_len[i] < 0) continue;
      char name[32];
      snprintf(name, sizeof name, "demo_%d", i);
      int pos = ds_find_demo(f, name);
      cr_assert_geq(pos, 0, "kill %d: committed %s is missing", k, name);
      cr_assert_eq(ds_demo(f, pos)->num_samples, expect_len[i], "kill %d: %s has the wrong length", k, name);
    }
    ds_close(f);
  }
  printf("%d kills of teleop, %lld committed episodes all present after recovery\n", kills,
         (long long)committed_total);
  cr_assert_gt(committed_total, 0);
  char *out = NULL;
  cr_assert_eq(tt_run(&out, "%s validate %s", dataset(), p), 0, "%s", out);
  free(out);
}

/* With a window (under Xvfb): a screenshot of the console shows the scene and the HUD. */
#include <cairo.h>
Test(teleop, window_screenshot_shows_scene_and_hud, .timeout = 180) {
  const char *d = tt_tmpdir();
  char *out = NULL;
  /* Leak checking is off for this one process: with a window, D-Bus (SDL video) and the
   * Mesa driver (unloaded at exit, so its frames have no names) leak at exit. Our own code
   * is leak-checked in the headless runs above and in test_window, which keeps the driver
   * loaded. */
  int rc = tt_run(&out,
                  TT_XVFB " %s --task lift "
                          "--device scripted --episodes 1 --quiet --screenshot %s/shot.png --out %s/w.h5",
                  teleop(), d, d);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  char png[4200];
  snprintf(png, sizeof png, "%s/shot.png", d);
  cairo_surface_t *s = cairo_image_surface_create_from_png(png);
  cr_assert_eq(cairo_surface_status(s), CAIRO_STATUS_SUCCESS, "no PNG at %s", png);
  int W = cairo_image_surface_get_width(s), H = cairo_image_surface_get_height(s),
      stride = cairo_image_surface_get_stride(s);
  const uint8_t *px = cairo_image_surface_get_data(s);
  cr_assert_eq(W, 1280);
  cr_assert_eq(H, 720);
  /* the scene: many distinct colours across the middle of the image */
  int seen[64] = {0}, distinct = 0;
  for (int y = H / 3; y < 2 * H / 3; y += 7)
    for (int x = W / 3; x < 2 * W / 3; x += 7) {
      uint32_t v;
      memcpy(&v, px + y * stride + x * 4, 4);
      int bucket = (int)(((v >> 18) & 3) << 4 | ((v >> 10) & 3) << 2 | ((v >> 2) & 3));
      if (!seen[bucket]++) distinct++;
    }
  printf("screenshot %dx%d: %d colour buckets in the scene region\n", W, H, distinct);
  cr_assert_geq(distinct, 4, "the scene looks blank");
  /* the HUD: the state banner at the top left has light text on a solid block, so that region
   * holds both very dark-or-saturated and very light pixels */
  int light = 0, dark = 0;
  for (int y = 15; y < 80; y++)
    for (int x = 15; x < 250; x++) {
      uint32_t v;
      memcpy(&v, px + y * stride + x * 4, 4);
      int lum = (int)(((v >> 16) & 255) + ((v >> 8) & 255) + (v & 255)) / 3;
      light += lum > 200;
      dark += lum < 120;
    }
  printf("HUD banner region: %d light, %d dark pixels\n", light, dark);
  cr_assert_gt(light, 200, "no HUD text");
  cr_assert_gt(dark, 2000, "no HUD banner");
  cairo_surface_destroy(s);
}

/* The pad rumbles when an episode ends (the virtual pad counts the requests it gets). */
static void count_rumbles(telConsole *c, void *user) { *(int *)user = cap_vpad_rumbles(tel_vpad(c)); }

Test(teleop, rumble_on_episode_end, .timeout = 120) {
  sdl_up();
  char p[4200];
  snprintf(p, sizeof p, "%s/r.h5", tt_tmpdir());
  int rumbles = 0;
  telOpts o;
  tel_opts_default(&o);
  o.task = "reach";
  o.device = "scripted";
  o.headless = 1;
  o.out = p;
  o.episodes = 2;
  o.quiet = 1;
  o.on_tick = count_rumbles;
  o.user = &rumbles;
  telStats st;
  cr_assert_eq(tel_run(&o, &st), 0, "%s", tk_errmsg());
  printf("rumbles seen before the last tick: %d\n", rumbles);
  cr_assert_geq(rumbles, 1, "the first episode's end made the pad rumble");
  SDL_Quit();
}

/* Intervention mode: a policy drives; the scripted operator takes over after 20 steps. The steps the
 * policy drove carry exactly the policy's actions for the recorded observations; the rest are flagged. */
/* A policy with a camera drives: teleop renders (and records) the camera the policy names at its frame
 * size, and every step the policy drove carries exactly the action its actor gives for the recorded frame
 * and low-dim values. */
Test(teleop, camera_policy_drives_with_the_frames_it_names, .timeout = 120) {
  sdl_up();
  const char *d = tt_tmpdir();
  char pol[4200], p[4200];
  snprintf(pol, sizeof pol, "%s/campol.h5", d);
  snprintf(p, sizeof p, "%s/civ.h5", d);
  const char *keys[] = {"robot0_eef_pos"};
  int dims[] = {3};
  nnArch a;
  nn_arch_default(&a);
  a.act_dim = 7;
  a.n_hidden = 1;
  a.hidden[0] = 32;
  a.tanh = 1;
  bcImage img;
  memset(&img, 0, sizeof img);
  snprintf(img.key, sizeof img.key, "agentview_image");
  img.height = 24;
  img.width = 32;
  img.channels = 3;
  img.crop_h = 20;
  img.crop_w = 28;
  nn_enc_arch_default(&img.enc_arch, 3, 20, 28, 4);
  a.obs_dim = 3 + nn_enc_out_dim(&img.enc_arch);
  bcPolicy *pl = bc_policy_make_images(&a, 1, keys, dims, 1, &img, 7);
  cr_assert(pl, "%s", tk_errmsg());
  snprintf(pl->task, sizeof pl->task, "lift");
  cr_assert_eq(bc_policy_save(pl, pol), 0, "%s", tk_errmsg());
  telOpts o;
  tel_opts_default(&o);
  o.task = "lift";
  o.device = "scripted";
  o.headless = 1;
  o.fast = 1;
  o.out = p;
  o.episodes = 1;
  o.quiet = 1;
  o.policy = pol;
  o.takeover_after = 15;
  telStats st;
  cr_assert_eq(tel_run(&o, &st), 0, "%s", tk_errmsg());
  /* the environment the actor acts in: lift with the policy's camera */
  capOpts co;
  cap_opts_default(&co);
  co.task = "lift";
  capModel *m = NULL;
  cr_assert_eq(bc_policy_model_load(pl, &co, &m), 0, "%s", tk_errmsg());
  const capSpec *spec = cap_spec(m);
  bcActor *actor = bc_actor_make(pl, m);
  cr_assert(actor, "%s", tk_errmsg());
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  const dsSchema *s = ds_schema(f);
  int si[CAP_MAX_OBS];
  for (int k = 0; k < spec->nobs; k++)
    cr_assert_geq(si[k] = ds_schema_find(s, spec->obs[k].name), 0, "%s recorded", spec->obs[k].name);
  int ai = ds_schema_find(s, "agentview_image");
  cr_assert(s->keys[ai].rank == 3 && s->keys[ai].shape[0] == 24 && s->keys[ai].shape[1] == 32,
            "the camera is recorded at the policy's frame size");
  dsEpisode e;
  cr_assert_eq(ds_read_episode(f, 0, &e), 0, "%s", tk_errmsg());
  for (int64_t t = 0; t < 15 && t < e.num_samples; t++) {
    cr_assert_eq(e.interventions[t], 0);
    capObs ob = {.n = spec->nobs};
    for (int k = 0; k < spec->nobs; k++) {
      size_t esz = spec->obs[k].dtype == CAP_U8 ? 1 : 8;
      ob.v[k] = (const uint8_t *)e.obs[si[k]] + (size_t)t * (size_t)ds_key_elems(&s->keys[si[k]]) * esz;
    }
    double act[7];
    cr_assert_eq(bc_actor_step(actor, &ob, act), 0, "%s", tk_errmsg());
    for (int j = 0; j < 7; j++) {
      double want = act[j] > 1 ? 1 : act[j] < -1 ? -1 : act[j];
      cr_assert_float_eq(e.actions[t * 7 + j], want, 1e-9, "step %lld action %d", (long long)t, j);
    }
  }
  ds_episode_free(&e);
  ds_close(f);
  bc_actor_free(actor);
  cap_model_free(m);
  bc_policy_free(pl);
  SDL_Quit();
}

Test(teleop, policy_drives_and_takeovers_are_flagged, .timeout = 120) {
  sdl_up();
  const char *d = tt_tmpdir();
  char pol[4200], p[4200];
  snprintf(pol, sizeof pol, "%s/pol.h5", d);
  snprintf(p, sizeof p, "%s/iv.h5", d);
  const char *keys[] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
  int dims[] = {10, 3, 4, 2};
  nnArch a;
  nn_arch_default(&a);
  a.obs_dim = 19;
  a.act_dim = 7;
  a.n_hidden = 1;
  a.hidden[0] = 32;
  a.tanh = 1;
  bcPolicy *pl = bc_policy_make(&a, 4, keys, dims, 7);
  cr_assert(pl, "%s", tk_errmsg());
  snprintf(pl->task, sizeof pl->task, "lift");
  cr_assert_eq(bc_policy_save(pl, pol), 0, "%s", tk_errmsg());
  telOpts o;
  tel_opts_default(&o);
  o.task = "lift";
  o.device = "scripted";
  o.headless = 1;
  o.fast = 1;
  o.out = p;
  o.episodes = 2;
  o.quiet = 1;
  o.policy = pol;
  o.takeover_after = 20;
  telStats st;
  cr_assert_eq(tel_run(&o, &st), 0, "%s", tk_errmsg());
  cr_assert_gt(st.intervention_steps, 0);
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  const dsSchema *s = ds_schema(f);
  int kidx[4];
  for (int k = 0; k < 4; k++)
    cr_assert_geq(kidx[k] = ds_schema_find(s, keys[k]), 0);
  nnWork *w = nn_work_make(pl->net, 1);
  float x[19], scratch[19 + 7];
  int64_t flagged = 0;
  for (int i = 0; i < ds_num_demos(f); i++) {
    dsEpisode e;
    cr_assert_eq(ds_read_episode(f, i, &e), 0, "%s", tk_errmsg());
    cr_assert(e.interventions, "intervention flags are stored");
    for (int64_t t = 0; t < e.num_samples; t++) {
      if (t >= 20) {
        cr_assert_eq(e.interventions[t], 1, "demo %d step %lld: the operator drove", i, (long long)t);
        flagged++;
        continue;
      }
      cr_assert_eq(e.interventions[t], 0, "demo %d step %lld: the policy drove", i, (long long)t);
      int c = 0;
      for (int k = 0; k < 4; k++)
        for (int j = 0; j < dims[k]; j++)
          x[c++] = (float)((const double *)e.obs[kidx[k]])[t * dims[k] + j];
      double act[7];
      cr_assert_eq(bc_policy_act(pl, w, x, 1, scratch, act), 0);
      for (int j = 0; j < 7; j++) {
        double want = act[j];
        want = want > 1 ? 1 : want < -1 ? -1 : want;
        cr_assert_float_eq(e.actions[t * 7 + j], want, 1e-9, "demo %d step %lld action %d: %g, policy %g", i,
                           (long long)t, j, e.actions[t * 7 + j], want);
      }
    }
    ds_episode_free(&e);
  }
  cr_assert_eq(flagged, st.intervention_steps);
  nn_work_free(w);
  ds_close(f);

  /* a policy for other observations is refused before anything is written */
  char bad[4200], p2[4200];
  snprintf(bad, sizeof bad, "%s/bad.h5", d);
  snprintf(p2, sizeof p2, "%s/never.h5", d);
  const char *bkeys[] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
  int bdims[] = {16, 3, 4, 2}; /* push's object size */
  a.obs_dim = 25;
  bcPolicy *bp = bc_policy_make(&a, 4, bkeys, bdims, 7);
  cr_assert_eq(bc_policy_save(bp, bad), 0, "%s", tk_errmsg());
  o.policy = bad;
  o.out = p2;
  cr_assert_neq(tel_run(&o, &st), 0);
  cr_assert(strstr(tk_errmsg(), "object(16)") && strstr(tk_errmsg(), "object(10)"), "%s", tk_errmsg());
  cr_assert(!tk_file_exists(p2), "nothing written on a refusal");
  bc_policy_free(bp);
  bc_policy_free(pl);
  SDL_Quit();
}
