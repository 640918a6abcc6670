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

/* ---- data stored where or how the raw fast path must not read it (make_stored.py) ---- */
static const char *stored(void) {
  static _Thread_local char dir[4200];
  snprintf(dir, sizeof dir, "%s", tt_tmpdir());
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s", py(), tt_src("tests/dataset/make_stored.py"), dir);
  cr_assert_eq(rc, 0, "make_stored.py: %s", out);
  free(out);
  return dir;
}

static const int st_len[3] = {6, 9, 5};
static double st_eef(int d, int64_t t, int j) { return d + t / 64.0 + j / 4.0; }
static double st_joint(int d, int64_t t, int j) { return -(d + t / 100.0) * (j + 1); }

static void count_problems(const char *line, void *user) {
  printf("  %s\n", line);
  ++*(int *)user;
}

/* Load everything (obs: eef then joint) and compare with the formulas; returns the max difference. */
static double st_check_load(dsFile *f, int next_obs) {
  dsLoadOpts lo = {.load_next_obs = next_obs};
  dsLoaded L;
  cr_assert_eq(ds_load(f, &lo, &L), 0, "%s", tk_errmsg());
  cr_assert_eq(L.ndemos, 3);
  cr_assert_eq(L.obs_dim, 7);
  double maxdiff = 0;
  for (int d = 0; d < 3; d++) {
    cr_assert_eq(L.demo_start[d + 1] - L.demo_start[d], st_len[d]);
    for (int64_t t = 0; t < st_len[d]; t++) {
      int64_t r = L.demo_start[d] + t;
      for (int j = 0; j < 7; j++)
        maxdiff = fmax(maxdiff, fabs(L.actions[r * 7 + j] - f_action(d, t, j)));
      for (int j = 0; j < 3; j++)
        maxdiff = fmax(maxdiff, fabs(L.obs[r * 7 + j] - st_eef(d, t, j)));
      for (int j = 0; j < 4; j++)
        maxdiff = fmax(maxdiff, fabs(L.obs[r * 7 + 3 + j] - st_joint(d, t, j)));
      for (int j = 0; next_obs && j < 4; j++)
        maxdiff = fmax(maxdiff, fabs(L.next_obs[r * 7 + 3 + j] - st_joint(d, t + 1, j)));
      cr_assert_eq(L.dones[r], t == st_len[d] - 1, "dones of demo %d at %lld", d, (long long)t);
    }
  }
  ds_loaded_free(&L);
  return maxdiff;
}

/* External links (a dataset, a whole obs group, a soft link through a linked group): the values are
 * the linked file's, through the loader, the episode reader and the row reader alike. */
Test(reader, external_links_read_the_linked_file) {
  char p[4300];
  snprintf(p, sizeof p, "%s/linked.h5", stored());
  int problems = 0;
  cr_assert_eq(ds_validate(p, count_problems, &problems), 0);
  for (int flags = 0; flags <= DS_OPEN_NO_VALUE_CHECK; flags += DS_OPEN_NO_VALUE_CHECK) {
    dsFile *f;
    cr_assert_eq(ds_open(p, flags, &f), 0, "%s", tk_errmsg());
    double diff = st_check_load(f, 1);
    printf("linked load max difference (flags %d): %g\n", flags, diff);
    cr_assert_lt(diff, 1e-6);
    dsEpisode e;
    cr_assert_eq(ds_read_episode(f, 2, &e), 0, "%s", tk_errmsg());
    for (int64_t t = 0; t < st_len[2]; t++)
      for (int j = 0; j < 7; j++)
        cr_assert_eq(e.actions[t * 7 + j], f_action(2, t, j));
    ds_episode_free(&e);
    double row[7];
    cr_assert_eq(ds_read_rows(f, 0, "actions", 4, 1, DS_F64, row, 7, NULL), 0, "%s", tk_errmsg());
    for (int j = 0; j < 7; j++)
      cr_assert_eq(row[j], f_action(0, 4, j));
    ds_close(f);
  }
}

/* A NaN that only the linked file holds is found: by ds_open, ds_validate, and ds_load when the scan
 * on open was skipped. */
Test(reader, nan_behind_an_external_link_is_refused) {
  char p[4300];
  snprintf(p, sizeof p, "%s/linked_nan.h5", stored());
  dsFile *f;
  cr_assert_neq(ds_open(p, 0, &f), 0, "opened a file with a NaN behind an external link");
  cr_assert(strstr(tk_errmsg(), "demo_0/actions") && strstr(tk_errmsg(), "NaN at step 3"), "%s", tk_errmsg());
  int problems = 0;
  cr_assert_eq(ds_validate(p, count_problems, &problems), 1);
  cr_assert_eq(ds_open(p, DS_OPEN_NO_VALUE_CHECK, &f), 0, "%s", tk_errmsg());
  dsLoaded L;
  cr_assert_eq(ds_load(f, NULL, &L), TK_ERANGE, "the loader took the NaN");
  cr_assert(strstr(tk_errmsg(), "demo_0/actions") && strstr(tk_errmsg(), "step 3"), "%s", tk_errmsg());
  ds_close(f);
}

/* Big-endian float64, float16 and a non-IEEE 32-bit float as actions, float16 and big-endian
 * observations, numpy-bool dones: HDF5 converts them, the reader never takes their bytes as native. */
Test(reader, stored_types_are_converted) {
  const char *dir = stored();
  char p[4300];
  snprintf(p, sizeof p, "%s/types.h5", dir);
  int problems = 0;
  cr_assert_eq(ds_validate(p, count_problems, &problems), 0);
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_schema(f)->keys[ds_schema_find(ds_schema(f), "eef")].dtype, DS_F32);
  double diff = st_check_load(f, 1);
  printf("stored types load max difference: %g\n", diff);
  cr_assert_lt(diff, 1e-3); /* float16 and the 24-bit-mantissa float round */
  for (int d = 0; d < 3; d++) {
    dsEpisode e;
    cr_assert_eq(ds_read_episode(f, d, &e), 0, "%s", tk_errmsg());
    double ad = 0;
    for (int64_t t = 0; t < st_len[d]; t++) {
      for (int j = 0; j < 7; j++)
        ad = fmax(ad, fabs(e.actions[t * 7 + j] - f_action(d, t, j)));
      cr_assert_eq(e.dones[t], t == st_len[d] - 1);
      cr_assert_eq(((float *)e.obs[ds_schema_find(ds_schema(f), "eef")])[t * 3 + 1], (float)st_eef(d, t, 1));
    }
    cr_assert_lt(ad, d == 0 ? 1e-15 : 1e-3, "demo %d actions differ by %g", d, ad);
    ds_episode_free(&e);
  }
  uint8_t dn[9];
  cr_assert_eq(ds_read_rows(f, 1, "dones", 0, 9, DS_U8, dn, 9, NULL), 0, "%s", tk_errmsg());
  cr_assert(dn[8] == 1 && dn[7] == 0);
  ds_close(f);
  /* a bool enum holding 2 is a bad flag, named */
  snprintf(p, sizeof p, "%s/bool_values.h5", dir);
  cr_assert_neq(ds_open(p, 0, &f), 0);
  cr_assert(strstr(tk_errmsg(), "demo_1/dones") && strstr(tk_errmsg(), "value 2 at step 4"), "%s",
            tk_errmsg());
}

/* One gzip chunk of 3000 x 400 values (h5py's chunks=arr.shape): validated, scanned and loaded right;
 * the chunk cache (open_read) keeps it from being inflated once per block of rows. */
Test(reader, one_big_gzip_chunk) {
  const char *dir = stored();
  char p[4300];
  snprintf(p, sizeof p, "%s/big.h5", dir);
  int problems = 0;
  double t0 = tk_now_s();
  cr_assert_eq(ds_validate(p, count_problems, &problems), 0);
  printf("validate of one 3000x400 gzip chunk: %.2f s\n", tk_now_s() - t0);
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  const char *k[] = {"wide", "wide32"};
  dsLoadOpts lo = {.obs_keys = k, .nobs_keys = 2};
  dsLoaded L;
  cr_assert_eq(ds_load(f, &lo, &L), 0, "%s", tk_errmsg());
  cr_assert_eq(L.n, 3000);
  cr_assert_eq(L.obs_dim, 800);
  for (int64_t t = 0; t < 3000; t++)
    for (int j = 0; j < 400; j++) {
      float want = (float)((double)((t * 31 + j * 7) % 101) / 101.0);
      cr_assert_eq(L.obs[t * 800 + j], want, "wide %lld %d", (long long)t, j);
      cr_assert_eq(L.obs[t * 800 + 400 + j], want, "wide32 %lld %d", (long long)t, j);
    }
  ds_loaded_free(&L);
  double row[400];
  cr_assert_eq(ds_read_rows(f, 0, "obs/wide", 2999, 1, DS_F64, row, 400, NULL), 0, "%s", tk_errmsg());
  cr_assert_eq(row[5], (double)((2999 * 31 + 5 * 7) % 101) / 101.0);
  ds_close(f);
  snprintf(p, sizeof p, "%s/big_nan.h5", dir);
  problems = 0;
  cr_assert_eq(ds_validate(p, count_problems, &problems), 1);
  cr_assert_neq(ds_open(p, 0, &f), 0);
  cr_assert(strstr(tk_errmsg(), "obs/wide: NaN at step 2500, element 123"), "%s", tk_errmsg());
}

/* The row reader: a range of rows in any of the three types, refusals named. */
Test(reader, read_rows_of_one_step) {
  char p[4200];
  snprintf(p, sizeof p, "%s/r.h5", tt_tmpdir());
  dsWriterOpts o;
  genOpts g = {.image_px = 16};
  gen_schema(&o, &g);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0);
  for (int i = 0; i < 2; i++) {
    int64_t idx;
    cr_assert_eq(ds_writer_begin(w, &gen_info, &idx), 0);
    cr_assert_eq(gen_record(w, idx, 16, DS_SUCCESS), 0);
  }
  cr_assert_eq(ds_writer_close(w), 0);
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  dsEpisode e;
  cr_assert_eq(ds_read_episode(f, 1, &e), 0, "%s", tk_errmsg());
  const dsSchema *s = ds_schema(f);
  int ki = ds_schema_find(s, "agentview_image");
  cr_assert_geq(ki, 0);
  int64_t fe = ds_key_elems(&s->keys[ki]), cols = 0;
  uint8_t *fr = malloc((size_t)fe * 2);
  for (int64_t t = 0; t + 1 < e.num_samples; t += 7) {
    cr_assert_eq(ds_read_rows(f, 1, "obs/agentview_image", t, 2, DS_U8, fr, fe * 2, &cols), 0, "%s",
                 tk_errmsg());
    cr_assert_eq(cols, fe);
    cr_assert_eq(memcmp(fr, (uint8_t *)e.obs[ki] + t * fe, (size_t)fe * 2), 0, "frames %lld..", (long long)t);
  }
  float a32[GEN_A];
  cr_assert_eq(ds_read_rows(f, 1, "actions", 3, 1, DS_F32, a32, GEN_A, NULL), 0, "%s", tk_errmsg());
  for (int j = 0; j < GEN_A; j++)
    cr_assert_eq(a32[j], (float)e.actions[3 * GEN_A + j]);
  cr_assert_eq(ds_read_rows(f, 1, "actions", e.num_samples, 1, DS_F64, a32, GEN_A, NULL), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "demo_1/actions") && strstr(tk_errmsg(), "outside"), "%s", tk_errmsg());
  cr_assert_eq(ds_read_rows(f, 1, "actions", 0, 2, DS_F64, a32, GEN_A, NULL), TK_ERANGE);
  cr_assert_eq(ds_read_rows(f, 1, "obs/nope", 0, 1, DS_F64, a32, GEN_A, NULL), TK_ENOTFOUND);
  cr_assert_eq(ds_read_rows(f, 1, "obs", 0, 1, DS_F64, a32, GEN_A, NULL), TK_ENOTFOUND);
  free(fr);
  ds_episode_free(&e);
  ds_close(f);
}
