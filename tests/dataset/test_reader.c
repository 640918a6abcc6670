/* Reader and loader: our files and files other tools wrote. */
#include <criterion/criterion.h>

#include "gen.h"
#include "tt.h"

static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

static const char *foreign(int fixed_masks) {
  static _Thread_local char p[4200];
  snprintf(p, sizeof p, "%s/foreign.h5", tt_tmpdir());
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s %s", py(), tt_src("tests/dataset/make_foreign.py"), p,
                  fixed_masks ? "--fixed-masks" : "");
  cr_assert_eq(rc, 0, "make_foreign.py: %s", out);
  free(out);
  return p;
}

static double f_action(int d, int64_t t, int j) { return (double)((t * 7 + j + 3 * d) % 13) / 13.0 - 0.5; }

static void check_foreign(const char *p) {
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_is_native(f), 0);
  cr_assert_str_eq(ds_env_name(f), "Lift");
  cr_assert_eq(ds_num_demos(f), 3);
  /* sorted by the number, as robomimic sorts them */
  cr_assert_str_eq(ds_demo(f, 0)->name, "demo_1");
  cr_assert_str_eq(ds_demo(f, 1)->name, "demo_2");
  cr_assert_str_eq(ds_demo(f, 2)->name, "demo_10");
  cr_assert_eq(ds_demo(f, 2)->success, -1);
  const dsSchema *s = ds_schema(f);
  cr_assert_eq(s->action_dim, 7);
  cr_assert_eq(s->state_dim, 5);
  cr_assert_eq(s->nkeys, 3);
  int ki = ds_schema_find(s, "img");
  cr_assert(ki >= 0 && ds_key_is_image(&s->keys[ki]));
  cr_assert_eq(s->keys[ds_schema_find(s, "eef")].dtype, DS_F32);
  /* the train mask, default keys (sorted low-dim: eef, joint) */
  dsLoadOpts lo = {.filter_key = "train", .load_next_obs = 1};
  dsLoaded L;
  cr_assert_eq(ds_load(f, &lo, &L), 0, "%s", tk_errmsg());
  cr_assert_eq(L.ndemos, 2);
  cr_assert_eq(L.n, 5 + 4);
  cr_assert_eq(L.obs_dim, 7);
  cr_assert_str_eq(L.key_names[0], "eef");
  cr_assert_str_eq(L.key_names[1], "joint");
  int demos[2] = {1, 10};
  double maxdiff = 0;
  for (int di = 0; di < 2; di++) {
    int d = demos[di];
    for (int64_t t = 0; t < L.demo_start[di + 1] - L.demo_start[di]; t++) {
      int64_t r = L.demo_start[di] + t;
      for (int j = 0; j < 7; j++)
        maxdiff = fmax(maxdiff, fabs(L.actions[r * 7 + j] - f_action(d, t, j)));
      for (int j = 0; j < 3; j++)
        maxdiff = fmax(maxdiff, fabs(L.obs[r * 7 + j] - (float)(d + t / 1000.0 + j / 10.0)));
      for (int j = 0; j < 4; j++)
        maxdiff = fmax(maxdiff, fabs(L.obs[r * 7 + 3 + j] - (float)(-(d + t / 100.0) * (j + 1))));
      maxdiff = fmax(maxdiff, fabs(L.rewards[r] - t / 10.0));
      cr_assert_eq(L.dones[r], t == L.demo_start[di + 1] - L.demo_start[di] - 1);
    }
  }
  printf("foreign load max difference: %g\n", maxdiff);
  cr_assert_lt(maxdiff, 1e-6);
  ds_loaded_free(&L);
  /* an episode with its image */
  dsEpisode e;
  cr_assert_eq(ds_read_episode(f, 2, &e), 0, "%s", tk_errmsg());
  cr_assert_eq(e.num_samples, 4);
  uint8_t *img = e.obs[ki];
  cr_assert_eq(img[3 * 192 + 5], (3 + 10) % 256);
  cr_assert_null(e.timestamps);
  ds_episode_free(&e);
  ds_close(f);
}

Test(reader, h5py_file_with_vlen_masks) { check_foreign(foreign(0)); }
Test(reader, h5py_file_with_fixed_masks) { check_foreign(foreign(1)); }

Test(reader, load_errors_name_the_keys) {
  dsFile *f;
  cr_assert_eq(ds_open(foreign(0), 0, &f), 0, "%s", tk_errmsg());
  const char *keys[] = {"eef", "nope"};
  dsLoadOpts lo = {.obs_keys = keys, .nobs_keys = 2};
  dsLoaded L;
  cr_assert_eq(ds_load(f, &lo, &L), TK_ENOTFOUND);
  cr_assert(strstr(tk_errmsg(), "nope") && strstr(tk_errmsg(), "joint") && strstr(tk_errmsg(), "img"), "%s",
            tk_errmsg());
  const char *ik[] = {"img"};
  lo.obs_keys = ik;
  lo.nobs_keys = 1;
  cr_assert_eq(ds_load(f, &lo, &L), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "image"), "%s", tk_errmsg());
  dsLoadOpts lm = {.filter_key = "test"};
  cr_assert_eq(ds_load(f, &lm, &L), TK_ENOTFOUND);
  cr_assert(strstr(tk_errmsg(), "train") && strstr(tk_errmsg(), "valid"), "%s", tk_errmsg());
  ds_close(f);
}

Test(reader, native_load_matches_episodes) {
  char p[4200];
  snprintf(p, sizeof p, "%s/n.h5", tt_tmpdir());
  dsWriterOpts o;
  gen_schema(&o, NULL);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0);
  for (int i = 0; i < 4; i++) {
    int64_t idx;
    cr_assert_eq(ds_writer_begin(w, &gen_info, &idx), 0);
    cr_assert_eq(gen_record(w, idx, 0, DS_SUCCESS), 0);
  }
  cr_assert_eq(ds_writer_close(w), 0);
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  const char *k[] = {"robot0_eef_pos"};
  dsLoadOpts lo = {.obs_keys = k, .nobs_keys = 1, .load_next_obs = 1};
  dsLoaded L;
  cr_assert_eq(ds_load(f, &lo, &L), 0, "%s", tk_errmsg());
  int64_t total = 0;
  for (int d = 0; d < 4; d++)
    total += gen_len(d);
  cr_assert_eq(L.n, total);
  for (int d = 0; d < 4; d++) {
    cr_assert_eq(L.demo_start[d + 1] - L.demo_start[d], gen_len(d));
    for (int64_t t = 0; t < gen_len(d); t++) {
      int64_t r = L.demo_start[d] + t;
      for (int j = 0; j < 3; j++) {
        cr_assert_eq(L.obs[r * 3 + j], (float)gen_pos(d, t, j));
        cr_assert_eq(L.next_obs[r * 3 + j], (float)gen_pos(d, t + 1, j));
      }
      for (int j = 0; j < GEN_A; j++)
        cr_assert_eq(L.actions[r * GEN_A + j], (float)gen_action(d, t, j));
    }
  }
  ds_loaded_free(&L);
  double col[200 * 3];
  int64_t cols;
  cr_assert_eq(ds_read_column(f, 1, "obs/robot0_eef_pos", col, 600, &cols), 0, "%s", tk_errmsg());
  cr_assert_eq(cols, 3);
  cr_assert_eq(col[5 * 3 + 2], gen_pos(1, 5, 2));
  cr_assert_eq(ds_read_column(f, 1, "obs/none", col, 600, &cols), TK_ENOTFOUND);
  cr_assert_eq(ds_read_column(f, 1, "actions", col, 3, &cols), TK_ERANGE);
  ds_close(f);
}
