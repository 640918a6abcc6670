/* Editing commands: merge, split, filter, delete, trim, convert. Results are reopened with
 * ds_open and compared value by value with the inputs; converted files and mask dtypes are read
 * back with h5py; inputs must keep their bytes; failures must leave no temp file. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds.h"
#include "tk.h"
#include "tt.h"

/* ---- helpers ---- */
/* dir/name in one of 64 rotating buffers (enough for every path one test holds). */
static const char *pj(const char *dir, const char *name) {
  static _Thread_local char buf[64][4200];
  static _Thread_local int k;
  k = (k + 1) % 64;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static uint64_t checksum(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "open %s", path);
  uint64_t h = 1469598103934665603ULL;
  unsigned char buf[1 << 16];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0)
    for (size_t i = 0; i < n; i++)
      h = (h ^ buf[i]) * 1099511628211ULL;
  fclose(f);
  return h;
}

/* No temp file of any kind (nor a staging folder) left in dir. */
static void assert_no_tmp(const char *dir) {
  DIR *d = opendir(dir);
  cr_assert_not_null(d, "open %s", dir);
  struct dirent *e;
  while ((e = readdir(d))) {
    cr_assert(!strstr(e->d_name, ".tmp") && !tk_is_temp_name(e->d_name), "temp file %s left in %s", e->d_name,
              dir);
    cr_assert(!strstr(e->d_name, ".staging"), "staging folder %s left in %s", e->d_name, dir);
  }
  closedir(d);
}

static void synth(const char *path, int demos, int steps, int px, uint64_t seed, const char *task, int gzip) {
  dsSynthOpts o;
  ds_synth_default(&o);
  o.demos = demos;
  o.steps = steps;
  o.image_px = px;
  o.seed = seed;
  o.lowdim_gzip = gzip;
  if (task) o.task = task;
  dsSynthResult r;
  cr_assert_eq(ds_synth(path, &o, &r), 0, "synth %s: %s", path, tk_errmsg());
}

/* Demos of known lengths (8 + 3i) and outcomes (success for even i), through the writer. */
static int64_t mixed_len(int e) { return 8 + 3 * e; }
static void write_mixed2(const char *path, int n, int px, int with_aux) {
  dsWriterOpts o;
  ds_writer_default(&o);
  o.env_name = "mixed_task";
  o.schema.action_dim = 3;
  o.schema.state_dim = 2;
  int64_t three[1] = {3}, two[1] = {2}, sh[3] = {px, px, 3};
  ds_schema_add(&o.schema, "pos", DS_F64, 1, three);
  if (with_aux) ds_schema_add(&o.schema, "aux", DS_F32, 1, two);
  if (px) ds_schema_add(&o.schema, "cam_image", DS_U8, 3, sh);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(path, &o, &w), 0, "%s", tk_errmsg());
  uint8_t *img = px ? malloc((size_t)px * px * 3) : NULL;
  for (int e = 0; e < n; e++) {
    dsEpisodeInfo info = {
        .task = "mixed_task", .seed = e, .operator_name = "t", .device = "scripted", .control_hz = 10};
    cr_assert_eq(ds_writer_begin(w, &info, NULL), 0, "%s", tk_errmsg());
    double act[3], st[2], pos[3];
    float aux[2];
    int64_t T = mixed_len(e);
    for (int64_t t = 0; t <= T; t++) {
      for (int j = 0; j < 3; j++)
        pos[j] = e + 0.01 * (double)t + j;
      for (int j = 0; j < 2; j++)
        aux[j] = (float)(e * 10 + t) + 0.5f * (float)j;
      for (int i = 0; i < px * px * 3; i++)
        img[i] = (uint8_t)((e * 31 + t * 7 + i) & 255);
      const void *obs[3] = {pos, with_aux ? (const void *)aux : img, img};
      if (t == T) {
        cr_assert_eq(ds_writer_end(w, e % 2 == 0 ? DS_SUCCESS : DS_FAILURE, obs, 0), 0, "%s", tk_errmsg());
        break;
      }
      for (int j = 0; j < 3; j++)
        act[j] = sin(e + 0.1 * (double)t + j);
      for (int j = 0; j < 2; j++)
        st[j] = e * 100 + (double)t + j;
      dsStep s = {.action = act,
                  .state = st,
                  .reward = 0.5 * (double)t,
                  .done = 0,
                  .timestamp = 0.1 * (double)t,
                  .intervention = t % 3 == 0};
      for (int k = 0; k < 3; k++)
        s.obs[k] = obs[k];
      cr_assert_eq(ds_writer_add_step(w, &s), 0, "%s", tk_errmsg());
    }
  }
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  free(img);
}
static void write_mixed(const char *path, int n, int px) { write_mixed2(path, n, px, 1); }

static dsFile *open_ok(const char *path) {
  dsFile *f = NULL;
  cr_assert_eq(ds_open(path, 0, &f), 0, "open %s: %s", path, tk_errmsg());
  return f;
}

#define CMP(field, bytes)                                                                                    \
  do {                                                                                                       \
    if ((ea.field == NULL) != (eb.field == NULL))                                                            \
      bad = snprintf(msg, mn, #field ": present on one side only");                                          \
    else if (ea.field &&                                                                                     \
             memcmp((const char *)ea.field + (size_t)off * (bytes), eb.field, (size_t)n * (bytes)))          \
      bad = snprintf(msg, mn, #field " differs");                                                            \
  } while (0)

/* Demo ib of b must equal steps [off, off + its length) of demo ia of a, field by field. */
static int same_slice(dsFile *a, int ia, int64_t off, dsFile *b, int ib, char *msg, size_t mn) {
  dsEpisode ea, eb;
  if (ds_read_episode(a, ia, &ea)) return snprintf(msg, mn, "read a: %s", tk_errmsg());
  if (ds_read_episode(b, ib, &eb)) {
    ds_episode_free(&ea);
    return snprintf(msg, mn, "read b: %s", tk_errmsg());
  }
  const dsSchema *sa = ds_schema(a), *sb = ds_schema(b);
  int64_t n = eb.num_samples;
  int bad = 0;
  if (off + n > ea.num_samples)
    bad = snprintf(msg, mn, "slice [%lld,%lld) beyond %lld steps", (long long)off, (long long)(off + n),
                   (long long)ea.num_samples);
  if (!bad && ds_schema_compare(sa, sb)) bad = snprintf(msg, mn, "schema: %s", tk_errmsg());
  if (!bad) CMP(actions, sizeof(double) * (size_t)sa->action_dim);
  if (!bad) CMP(rewards, sizeof(double));
  if (!bad) CMP(dones, 1);
  if (!bad) CMP(states, sizeof(double) * (size_t)sa->state_dim);
  if (!bad) CMP(timestamps, sizeof(double));
  if (!bad) CMP(interventions, 1);
  for (int k = 0; k < sa->nkeys && !bad; k++) {
    int kb = ds_schema_find(sb, sa->keys[k].name);
    size_t row = (size_t)ds_key_elems(&sa->keys[k]) * ds_dtype_size(sa->keys[k].dtype);
    if (memcmp((char *)ea.obs[k] + (size_t)off * row, eb.obs[kb], (size_t)n * row))
      bad = snprintf(msg, mn, "obs/%s differs", sa->keys[k].name);
    else if ((ea.next_obs[k] == NULL) != (eb.next_obs[kb] == NULL))
      bad = snprintf(msg, mn, "next_obs/%s on one side only", sa->keys[k].name);
    else if (ea.next_obs[k] &&
             memcmp((char *)ea.next_obs[k] + (size_t)off * row, eb.next_obs[kb], (size_t)n * row))
      bad = snprintf(msg, mn, "next_obs/%s differs", sa->keys[k].name);
  }
  ds_episode_free(&ea);
  ds_episode_free(&eb);
  return bad;
}

static void assert_same_slice(dsFile *a, int ia, int64_t off, dsFile *b, int ib) {
  char msg[512] = "";
  cr_assert_eq(same_slice(a, ia, off, b, ib, msg, sizeof msg), 0, "%s %s vs %s %s: %s", ds_path(a),
               ds_demo(a, ia)->name, ds_path(b), ds_demo(b, ib)->name, msg);
}

/* Mask as a comma-joined list of demo names (in stored order). */
static const char *mask_str(dsFile *f, const char *name) {
  static _Thread_local char buf[4][4096];
  static _Thread_local int k;
  k = (k + 1) % 4;
  int *pos = NULL, n = 0;
  cr_assert_eq(ds_mask(f, name, &pos, &n), 0, "%s", tk_errmsg());
  size_t off = 0;
  buf[k][0] = 0;
  for (int i = 0; i < n; i++)
    off +=
        (size_t)snprintf(buf[k] + off, sizeof buf[k] - off, "%s%s", i ? "," : "", ds_demo(f, pos[i])->name);
  free(pos);
  return buf[k];
}

static const char *python(void) {
  const char *p = getenv("PYTHON");
  return p && p[0] ? p : "/usr/bin/python3";
}

static const char *h5_check(void) {
  if (getenv("DK_SRC")) return tt_src("tests/dataset/h5_check.py");
  static const char *cand[] = {"tests/dataset/h5_check.py", "../tests/dataset/h5_check.py"};
  for (size_t i = 0; i < TK_ARRAY_LEN(cand); i++)
    if (exists(cand[i])) return cand[i];
  return cand[0];
}

/* The robomimic-style outside reader accepts the file. */
static void assert_h5_check(const char *path, int demos) {
  char *out = NULL;
  int st = tt_run(&out, "%s %s %s --native --expect-demos %d", python(), h5_check(), path, demos);
  cr_assert_eq(st, 0, "h5_check %s: %s", path, out ? out : "");
  free(out);
}

/* Run a Python snippet (written to dir) with args; returns its output, asserts exit 0. */
static char *run_py(const char *dir, const char *name, const char *code, const char *args) {
  const char *sp = pj(dir, name);
  FILE *f = fopen(sp, "w");
  cr_assert_not_null(f);
  fputs(code, f);
  fclose(f);
  char *out = NULL;
  int st = tt_run(&out, "%s %s %s", python(), sp, args);
  cr_assert_eq(st, 0, "%s %s failed (%d): %s", name, args, st, out ? out : "");
  return out;
}

static const char *PY_MASKS =
    "import sys, h5py\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "for k in sorted(f['mask']):\n"
    "    d = f['mask'][k]\n"
    "    if d.dtype.kind != 'S' or d.ndim != 1:\n"
    "        print('FAIL mask/%s dtype %s ndim %d' % (k, d.dtype, d.ndim)); sys.exit(1)\n"
    "    names = sorted(e.decode('utf-8') for e in d[:])\n" /* what robomimic does */
    "    print('%s=%s' % (k, ','.join(names)))\n";

/* ---- merge ---- */
Test(edit, merge_renumbers_copies_values_and_merges_masks) {
  const char *dir = tt_tmpdir();
  const char *a = pj(dir, "a.h5"), *b = pj(dir, "b.h5"), *m = pj(dir, "m.h5");
  synth(a, 3, 20, 8, 1, "reach", 0);
  synth(b, 2, 20, 8, 2, "reach", 0);
  cr_assert_eq(ds_split(a, 0.34, 5, NULL, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_split(b, 0.5, 6, NULL, 0), 0, "%s", tk_errmsg());
  dsFilterOpts fo = {.mask_name = "only_b"};
  cr_assert_eq(ds_filter(b, &fo, NULL, 0, NULL), 0, "%s", tk_errmsg());
  uint64_t ca = checksum(a), cb = checksum(b);
  const char *in[2] = {a, b};
  cr_assert_eq(ds_merge(in, 2, m, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(checksum(a), ca, "input a changed");
  cr_assert_eq(checksum(b), cb, "input b changed");
  assert_no_tmp(dir);

  dsFile *fa = open_ok(a), *fb = open_ok(b), *fm = open_ok(m);
  cr_assert_eq(ds_num_demos(fm), 5);
  cr_assert_eq(ds_total_samples(fm), ds_total_samples(fa) + ds_total_samples(fb));
  cr_assert_str_eq(ds_env_name(fm), "reach");
  cr_assert_str_eq(ds_env_args(fm), ds_env_args(fa));
  cr_assert(ds_is_native(fm));
  for (int i = 0; i < 5; i++) {
    char want[32];
    snprintf(want, sizeof want, "demo_%d", i);
    cr_assert_str_eq(ds_demo(fm, i)->name, want);
    dsFile *src = i < 3 ? fa : fb;
    int si = i < 3 ? i : i - 3;
    cr_assert_eq(ds_demo(fm, i)->seed, ds_demo(src, si)->seed, "attributes travel with the demo");
    assert_same_slice(src, si, 0, fm, i);
  }
  /* masks of the same name are merged, entries renamed: b's demo_j is demo_(3+j) now */
  char want[512];
  for (int q = 0; q < 2; q++) {
    const char *mn = q ? "valid" : "train";
    int *pa, na, *pb, nb;
    cr_assert_eq(ds_mask(fa, mn, &pa, &na), 0);
    cr_assert_eq(ds_mask(fb, mn, &pb, &nb), 0);
    size_t off = 0;
    want[0] = 0;
    for (int i = 0; i < na; i++)
      off += (size_t)snprintf(want + off, sizeof want - off, "%sdemo_%d", off ? "," : "", pa[i]);
    for (int i = 0; i < nb; i++)
      off += (size_t)snprintf(want + off, sizeof want - off, "%sdemo_%d", off ? "," : "", 3 + pb[i]);
    cr_assert_str_eq(mask_str(fm, mn), want, "mask %s", mn);
    free(pa);
    free(pb);
  }
  cr_assert_str_eq(mask_str(fm, "only_b"), "demo_3,demo_4", "a mask of one input keeps its renamed demos");
  cr_assert_eq(ds_num_masks(fm), 3);
  ds_close(fa);
  ds_close(fb);
  ds_close(fm);
  assert_h5_check(m, 5);
  char *out = run_py(dir, "masks.py", PY_MASKS, m);
  cr_assert(strstr(out, "only_b=demo_3,demo_4"), "%s", out);
  free(out);
}

Test(edit, merge_refuses_other_task_naming_both_files) {
  const char *dir = tt_tmpdir();
  const char *a = pj(dir, "a.h5"), *b = pj(dir, "b.h5"), *m = pj(dir, "m.h5");
  synth(a, 2, 10, 0, 1, "task_one", 0);
  synth(b, 2, 10, 0, 2, "task_two", 0);
  uint64_t ca = checksum(a), cb = checksum(b);
  const char *in[2] = {a, b};
  int rc = ds_merge(in, 2, m, 0);
  cr_assert_eq(rc, TK_EFORMAT, "rc %d: %s", rc, tk_errmsg());
  const char *e = tk_errmsg();
  cr_assert(strstr(e, a) && strstr(e, b) && strstr(e, "task_one") && strstr(e, "task_two"), "%s", e);
  cr_assert(!exists(m));
  assert_no_tmp(dir);
  cr_assert_eq(checksum(a), ca);
  cr_assert_eq(checksum(b), cb);
}

Test(edit, merge_refuses_other_schema_naming_both_files) {
  const char *dir = tt_tmpdir();
  const char *a = pj(dir, "a.h5"), *b = pj(dir, "b.h5"), *c = pj(dir, "c.h5"), *m = pj(dir, "m.h5");
  synth(a, 2, 10, 8, 1, NULL, 0);
  synth(b, 2, 10, 0, 2, NULL, 0);  /* no image key */
  synth(c, 2, 10, 16, 3, NULL, 0); /* image of another size */
  const char *in[3] = {a, a, b};
  cr_assert_eq(ds_merge(in, 3, m, 0), TK_EFORMAT);
  const char *e = tk_errmsg();
  cr_assert(strstr(e, a) && strstr(e, b) && strstr(e, "agentview_image"), "%s", e);
  const char *in2[2] = {a, c};
  cr_assert_eq(ds_merge(in2, 2, m, 0), TK_EFORMAT);
  e = tk_errmsg();
  cr_assert(strstr(e, a) && strstr(e, c) && strstr(e, "8,8,3") && strstr(e, "16,16,3"), "%s", e);
  cr_assert(!exists(m));
  assert_no_tmp(dir);
}

/* ---- split ---- */
Test(edit, split_is_deterministic_sized_and_replaces_masks) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *s1 = pj(dir, "s1.h5"), *s2 = pj(dir, "s2.h5"), *s3 = pj(dir, "s3.h5");
  synth(p, 10, 8, 0, 1, NULL, 0);
  uint64_t c = checksum(p);
  cr_assert_eq(ds_split(p, 0.3, 7, s1, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_split(p, 0.3, 7, s2, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_split(p, 0.3, 8, s3, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(checksum(p), c, "input changed");
  assert_no_tmp(dir);
  dsFile *f1 = open_ok(s1), *f2 = open_ok(s2), *f3 = open_ok(s3), *fp = open_ok(p);
  cr_assert_eq(ds_num_masks(fp), 0);
  cr_assert_eq(ds_num_masks(f1), 2);
  cr_assert_str_eq(mask_str(f1, "valid"), mask_str(f2, "valid"), "same seed, same split");
  cr_assert_str_eq(mask_str(f1, "train"), mask_str(f2, "train"));
  cr_assert_str_neq(mask_str(f1, "valid"), mask_str(f3, "valid"), "another seed, another split");
  int *tv, nt, *vv, nv;
  cr_assert_eq(ds_mask(f1, "train", &tv, &nt), 0);
  cr_assert_eq(ds_mask(f1, "valid", &vv, &nv), 0);
  cr_assert_eq(nv, 3, "round(0.3 * 10) valid demos");
  cr_assert_eq(nt, 7);
  int seen[10] = {0};
  for (int i = 0; i < nt; i++)
    seen[tv[i]]++;
  for (int i = 0; i < nv; i++)
    seen[vv[i]]++;
  for (int i = 0; i < 10; i++)
    cr_assert_eq(seen[i], 1, "demo %d in %d masks", i, seen[i]);
  free(tv);
  free(vv);
  /* the demos themselves are untouched */
  cr_assert_eq(ds_num_demos(f1), 10);
  for (int i = 0; i < 10; i++)
    assert_same_slice(fp, i, 0, f1, i);
  ds_close(f2);
  ds_close(f3);
  ds_close(fp);

  /* clamping: at least one of each */
  cr_assert_eq(ds_split(p, 0.0, 1, s2, 1), 0, "%s", tk_errmsg());
  f2 = open_ok(s2);
  cr_assert_eq(ds_mask(f2, "valid", &vv, &nv), 0);
  cr_assert_eq(nv, 1);
  free(vv);
  ds_close(f2);
  cr_assert_eq(ds_split(p, 1.0, 1, s2, 1), 0, "%s", tk_errmsg());
  f2 = open_ok(s2);
  cr_assert_eq(ds_mask(f2, "train", &tv, &nt), 0);
  cr_assert_eq(nt, 1);
  free(tv);
  ds_close(f2);
  cr_assert_neq(ds_split(p, NAN, 1, s2, 0), 0);
  cr_assert_neq(ds_split(p, 1.5, 1, s2, 0), 0);

  /* splitting again in place replaces the masks (no duplicates, new content) */
  char before[4096];
  snprintf(before, sizeof before, "%s", mask_str(f1, "valid"));
  ds_close(f1);
  cr_assert_eq(ds_split(s1, 0.5, 99, NULL, 0), 0, "%s", tk_errmsg());
  assert_no_tmp(dir);
  f1 = open_ok(s1);
  cr_assert_eq(ds_num_masks(f1), 2);
  cr_assert_eq(ds_mask(f1, "valid", &vv, &nv), 0);
  cr_assert_eq(nv, 5);
  free(vv);
  ds_close(f1);
  char *out = run_py(dir, "masks.py", PY_MASKS, s1);
  cr_assert(strstr(out, "train=") && strstr(out, "valid="), "%s", out);
  free(out);
  assert_h5_check(s1, 10);
}

Test(edit, split_accepts_h5py_variable_length_masks) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *s = pj(dir, "s.h5");
  synth(p, 4, 8, 0, 1, NULL, 0);
  char *out = run_py(dir, "vlen.py",
                     "import sys, h5py\n"
                     "f = h5py.File(sys.argv[1], 'r+')\n"
                     "g = f.create_group('mask')\n"
                     "dt = h5py.string_dtype()\n"
                     "g.create_dataset('train', data=['demo_0', 'demo_1'], dtype=dt)\n"
                     "g.create_dataset('extra', data=['demo_3', 'demo_2'], dtype=dt)\n"
                     "assert h5py.check_string_dtype(g['extra'].dtype).length is None\n",
                     p);
  free(out);
  dsFile *f = open_ok(p);
  cr_assert_str_eq(mask_str(f, "extra"), "demo_3,demo_2");
  ds_close(f);
  uint64_t c = checksum(p);
  cr_assert_eq(ds_split(p, 0.25, 3, s, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(checksum(p), c);
  f = open_ok(s);
  cr_assert_eq(ds_num_masks(f), 3);
  cr_assert_str_eq(mask_str(f, "extra"), "demo_3,demo_2", "other masks are kept");
  int *pos, n;
  cr_assert_eq(ds_mask(f, "valid", &pos, &n), 0);
  cr_assert_eq(n, 1);
  free(pos);
  ds_close(f);
  out = run_py(dir, "masks.py", PY_MASKS, s);
  cr_assert(strstr(out, "extra=demo_2,demo_3"), "%s", out);
  free(out);
  assert_h5_check(s, 4);
}

/* ---- filter ---- */
Test(edit, filter_by_success_and_length) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *o1 = pj(dir, "succ.h5"), *o2 = pj(dir, "len.h5"),
             *o3 = pj(dir, "mask.h5");
  write_mixed(p, 6, 0);
  cr_assert_eq(ds_split(p, 0.5, 4, NULL, 0), 0, "%s", tk_errmsg());
  uint64_t c = checksum(p);
  dsFile *fp = open_ok(p);

  int kept = -1;
  dsFilterOpts so = {.success_only = 1};
  cr_assert_eq(ds_filter(p, &so, o1, 0, &kept), 0, "%s", tk_errmsg());
  cr_assert_eq(kept, 3);
  dsFile *f = open_ok(o1);
  cr_assert_eq(ds_num_demos(f), 3);
  int64_t tot = 0;
  for (int i = 0; i < 3; i++) {
    char want[32];
    snprintf(want, sizeof want, "demo_%d", 2 * i);
    cr_assert_str_eq(ds_demo(f, i)->name, want, "names are kept");
    cr_assert_eq(ds_demo(f, i)->success, 1);
    assert_same_slice(fp, 2 * i, 0, f, i);
    tot += mixed_len(2 * i);
  }
  cr_assert_eq(ds_total_samples(f), tot);
  /* masks restricted to the kept demos */
  for (int q = 0; q < 2; q++) {
    const char *mn = q ? "valid" : "train";
    int *pos, n;
    cr_assert_eq(ds_mask(fp, mn, &pos, &n), 0);
    char want[256] = "";
    size_t off = 0;
    for (int i = 0; i < n; i++)
      if (ds_demo(fp, pos[i])->success == 1)
        off += (size_t)snprintf(want + off, sizeof want - off, "%s%s", off ? "," : "",
                                ds_demo(fp, pos[i])->name);
    free(pos);
    cr_assert_str_eq(mask_str(f, mn), want, "mask %s", mn);
  }
  ds_close(f);
  assert_h5_check(o1, 3);

  dsFilterOpts lo = {.min_len = 12, .max_len = 20}; /* lengths 8 11 14 17 20 23 */
  cr_assert_eq(ds_filter(p, &lo, o2, 0, &kept), 0, "%s", tk_errmsg());
  cr_assert_eq(kept, 3);
  f = open_ok(o2);
  cr_assert_eq(ds_num_demos(f), 3);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(ds_demo(f, i)->num_samples, mixed_len(i + 2));
    assert_same_slice(fp, i + 2, 0, f, i);
  }
  ds_close(f);

  dsFilterOpts mo = {.success_only = 1, .min_len = 10, .mask_name = "good"};
  cr_assert_eq(ds_filter(p, &mo, o3, 0, &kept), 0, "%s", tk_errmsg());
  cr_assert_eq(kept, 2);
  f = open_ok(o3);
  cr_assert_eq(ds_num_demos(f), 6, "mask mode copies every demo");
  cr_assert_str_eq(mask_str(f, "good"), "demo_2,demo_4");
  cr_assert_str_eq(mask_str(f, "train"), mask_str(fp, "train"));
  for (int i = 0; i < 6; i++)
    assert_same_slice(fp, i, 0, f, i);
  ds_close(f);

  dsFilterOpts bad = {.mask_name = "a/b"};
  cr_assert_eq(ds_filter(p, &bad, o3, 0, &kept), TK_EINVAL);
  dsFilterOpts bad2 = {.min_len = 10, .max_len = 5};
  cr_assert_eq(ds_filter(p, &bad2, o3, 0, &kept), TK_EINVAL);
  ds_close(fp);
  cr_assert_eq(checksum(p), c, "input changed");
  assert_no_tmp(dir);
}

/* ---- delete ---- */
Test(edit, delete_removes_demos_and_their_mask_entries) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *o = pj(dir, "o.h5");
  synth(p, 5, 12, 8, 3, NULL, 0);
  cr_assert_eq(ds_split(p, 0.4, 1, NULL, 0), 0, "%s", tk_errmsg());
  uint64_t c = checksum(p);
  const char *del[2] = {"demo_1", "demo_3"};
  cr_assert_eq(ds_delete(p, del, 2, o, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(checksum(p), c);
  dsFile *fp = open_ok(p), *f = open_ok(o);
  cr_assert_eq(ds_num_demos(f), 3);
  const int left[3] = {0, 2, 4};
  for (int i = 0; i < 3; i++) {
    cr_assert_str_eq(ds_demo(f, i)->name, ds_demo(fp, left[i])->name);
    assert_same_slice(fp, left[i], 0, f, i);
  }
  cr_assert_eq(ds_total_samples(f), 36);
  int total = 0;
  for (int q = 0; q < 2; q++) {
    const char *s = mask_str(f, q ? "valid" : "train");
    cr_assert(!strstr(s, "demo_1") && !strstr(s, "demo_3"), "%s", s);
    int *pos, n;
    cr_assert_eq(ds_mask(f, q ? "valid" : "train", &pos, &n), 0);
    total += n;
    free(pos);
  }
  cr_assert_eq(total, 3, "every remaining demo is still in one mask");
  ds_close(f);
  assert_h5_check(o, 3);

  /* a missing name: error names it, nothing written */
  const char *o2 = pj(dir, "o2.h5");
  const char *del2[2] = {"demo_0", "demo_9"};
  int rc = ds_delete(p, del2, 2, o2, 0);
  cr_assert_eq(rc, TK_ENOTFOUND, "%s", tk_errmsg());
  cr_assert(strstr(tk_errmsg(), "demo_9") && strstr(tk_errmsg(), p), "%s", tk_errmsg());
  cr_assert(!exists(o2));

  /* in place: the file is replaced through temp + rename */
  ds_close(fp);
  const char *del3[1] = {"demo_4"};
  cr_assert_eq(ds_delete(p, del3, 1, NULL, 0), 0, "%s", tk_errmsg());
  cr_assert_neq(checksum(p), c);
  f = open_ok(p);
  cr_assert_eq(ds_num_demos(f), 4);
  cr_assert_eq(ds_find_demo(f, "demo_4"), -1);
  ds_close(f);
  assert_no_tmp(dir);
}

/* ---- trim ---- */
static char *PY_LAYOUT = "import sys, h5py\n"
                         "f = h5py.File(sys.argv[1], 'r')\n"
                         "for p in sys.argv[2:]:\n"
                         "    d = f[p]\n"
                         "    print('%s %s %s %s %s' % (p, d.shape, d.chunks, d.compression, d.dtype))\n";

Test(edit, trim_slices_every_step_dataset_and_keeps_layout) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *o = pj(dir, "o.h5"), *o2 = pj(dir, "o2.h5");
  synth(p, 3, 20, 8, 5, NULL, 3);
  uint64_t c = checksum(p);
  cr_assert_eq(ds_trim(p, "demo_1", 5, 15, o, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(checksum(p), c);
  dsFile *fp = open_ok(p), *f = open_ok(o);
  cr_assert_eq(ds_num_demos(f), 3);
  cr_assert_eq(ds_demo(f, 1)->num_samples, 10);
  cr_assert_eq(ds_total_samples(f), 50);
  assert_same_slice(fp, 1, 5, f, 1);
  assert_same_slice(fp, 0, 0, f, 0);
  assert_same_slice(fp, 2, 0, f, 2);
  cr_assert_eq(ds_demo(f, 1)->seed, ds_demo(fp, 1)->seed);
  cr_assert_str_eq(ds_demo(f, 1)->operator_name, ds_demo(fp, 1)->operator_name);
  ds_close(f);
  assert_h5_check(o, 3);
  char args[4096];
  snprintf(args, sizeof args,
           "%s data/demo_1/actions data/demo_1/obs/agentview_image data/demo_1/next_obs/goal_pos "
           "data/demo_1/timestamps",
           o);
  char *out = run_py(dir, "layout.py", PY_LAYOUT, args);
  cr_assert(strstr(out, "data/demo_1/actions (10, 7) (10, 7) gzip float64"),
            "chunk rows clipped, gzip kept: %s", out);
  cr_assert(strstr(out, "data/demo_1/obs/agentview_image (10, 8, 8, 3) (1, 8, 8, 3) gzip uint8"), "%s", out);
  cr_assert(strstr(out, "data/demo_1/next_obs/goal_pos (10, 3) (10, 3) gzip float64"), "%s", out);
  cr_assert(strstr(out, "data/demo_1/timestamps (10,) (10,) gzip float64"), "%s", out);
  free(out);

  /* end <= 0: to the end */
  cr_assert_eq(ds_trim(p, "demo_2", 12, 0, o2, 0), 0, "%s", tk_errmsg());
  f = open_ok(o2);
  cr_assert_eq(ds_demo(f, 2)->num_samples, 8);
  assert_same_slice(fp, 2, 12, f, 2);
  ds_close(f);

  /* refusals: nothing written, message names the file */
  const char *o3 = pj(dir, "o3.h5");
  struct {
    const char *demo;
    int64_t s, e;
    int rc;
  } bad[] = {{"demo_1", 5, 5, TK_EINVAL},     {"demo_1", 7, 3, TK_EINVAL},  {"demo_1", 0, 21, TK_ERANGE},
             {"demo_1", -1, 4, TK_ERANGE},    {"demo_1", 20, 0, TK_ERANGE}, {"demo_7", 0, 3, TK_ENOTFOUND},
             {"nonsense", 0, 3, TK_ENOTFOUND}};
  for (size_t i = 0; i < TK_ARRAY_LEN(bad); i++) {
    int rc = ds_trim(p, bad[i].demo, bad[i].s, bad[i].e, o3, 0);
    cr_assert_eq(rc, bad[i].rc, "case %zu: rc %d: %s", i, rc, tk_errmsg());
    cr_assert(strstr(tk_errmsg(), p), "case %zu: %s", i, tk_errmsg());
    cr_assert(!exists(o3));
  }
  ds_close(fp);
  cr_assert_eq(checksum(p), c);
  assert_no_tmp(dir);
}

/* ---- convert ---- */
/* Minari's read path (tests/dataset/minari_check.py: metadata.json, the spaces deserialized as
 * minari/serialization.py does, HDF5Storage.get_episodes) over an export, against its source. */
static char *minari_check(const char *out, const char *src, const char *extra) {
  char *o = NULL;
  int st = tt_run(&o, "%s %s %s %s %s", python(), tt_src("tests/dataset/minari_check.py"), out, src, extra);
  cr_assert_eq(st, 0, "minari_check %s (%d): %s", out, st, o ? o : "");
  return o;
}

Test(edit, convert_minari_opens_as_minaris_reader_opens_it) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *o = pj(dir, "mixed"), *s = pj(dir, "s.h5"), *o2 = pj(dir, "single-v3"),
             *b = pj(dir, "big.h5"), *o3 = pj(dir, "big");
  /* aux (float32), pos (float64), cam_image (8x8x3 uint8: no image space to Minari, written raw) */
  write_mixed(p, 5, 8);
  uint64_t c = checksum(p);
  dsConvertResult r;
  cr_assert_eq(ds_convert(p, "minari", o, 0, &r), 0, "%s", tk_errmsg());
  cr_assert_eq(checksum(p), c);
  cr_assert(exists(pj(dir, "mixed/data/main_data.hdf5")) && exists(pj(dir, "mixed/data/metadata.json")));
  assert_no_tmp(dir);
  cr_assert_eq(r.episodes, 5);
  cr_assert_eq(r.steps, 70);
  cr_assert_str_eq(r.keys, "aux,cam_image,pos");
  cr_assert_str_eq(r.skipped, "");
  cr_assert(strstr(r.note, "demokit/mixed_task/mixed-v0"), "%s", r.note);
  char *out = minari_check(o, p,
                           "--expect-keys aux,cam_image,pos --expect-skipped '' --expect-id "
                           "demokit/mixed_task/mixed-v0");
  /* lengths 8 11 .. 20; the odd demos fail: they end truncated */
  cr_assert(strstr(out, "minari_check ok episodes=5 steps=70 keys=aux,cam_image,pos skipped=- truncated=2"),
            "%s", out);
  free(out);
  /* one key: observations is one dataset and the space a Box; a -v<N> name is kept as the id's version */
  write_mixed2(s, 3, 0, 0);
  cr_assert_eq(ds_convert(s, "minari", o2, 0, &r), 0, "%s", tk_errmsg());
  out = minari_check(o2, s, "--expect-keys pos --expect-id demokit/mixed_task/single-v3");
  cr_assert(strstr(out, "minari_check ok episodes=3 steps=33 keys=pos skipped=- truncated=1"), "%s", out);
  free(out);
  /* 32x32 images are image spaces, which Minari 0.5.3 reads only as JPEG: left out, and said so */
  write_mixed2(b, 2, 32, 1);
  cr_assert_eq(ds_convert(b, "minari", o3, 0, &r), 0, "%s", tk_errmsg());
  cr_assert_str_eq(r.keys, "aux,pos");
  cr_assert_str_eq(r.skipped, "cam_image");
  cr_assert(strstr(r.why, "JPEG") && strstr(r.why, "32x32"), "%s", r.why);
  out = minari_check(o3, b, "--expect-keys aux,pos --expect-skipped cam_image");
  free(out);
  assert_no_tmp(dir);
}

/* The checker is not a rubber stamp: what Minari would choke on, it reports. */
Test(edit, minari_checker_catches_what_minari_would_refuse) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *o = pj(dir, "m");
  write_mixed(p, 3, 0);
  cr_assert_eq(ds_convert(p, "minari", o, 0, NULL), 0, "%s", tk_errmsg());
  static const struct {
    const char *damage, *says;
  } cases[] = {
      {"import json; p=sys.argv[1]+'/data/metadata.json'; m=json.load(open(p)); "
       "m['observation_space']=json.loads(m['observation_space']); json.dump(m, open(p,'w'))",
       "not a JSON string"},
      {"import json; p=sys.argv[1]+'/data/metadata.json'; m=json.load(open(p)); del m['data_format']; "
       "json.dump(m, open(p,'w'))",
       "data_format"},
      {"import h5py; f=h5py.File(sys.argv[1]+'/data/main_data.hdf5','a'); g=f['episode_1/observations']; "
       "x=g['pos'][:-1]; del g['pos']; g['pos']=x",
       "rows, expected N+1"},
      {"import h5py; f=h5py.File(sys.argv[1]+'/data/main_data.hdf5','a'); f.create_group('extra')",
       "root links"},
  };
  for (size_t i = 0; i < TK_ARRAY_LEN(cases); i++) {
    const char *copy = pj(dir, "damaged");
    char *out = NULL;
    int st = tt_run(&out, "rm -rf %s && cp -r %s %s && %s -c \"import sys; %s\" %s", copy, o, copy, python(),
                    cases[i].damage, copy);
    cr_assert_eq(st, 0, "damage %zu: %s", i, out);
    free(out);
    st = tt_run(&out, "%s %s %s %s", python(), tt_src("tests/dataset/minari_check.py"), copy, p);
    cr_assert_eq(st, 1, "case %zu passed: %s", i, out);
    cr_assert(strstr(out, cases[i].says), "case %zu: %s", i, out);
    free(out);
  }
}

/* The directory output: whole or nothing; an existing directory only with --force, and never one that
 * is not a Minari export (nor one that holds the input); the id under the Minari datasets root. */
Test(edit, convert_minari_directory_rule) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *q = pj(dir, "q.h5"), *o = pj(dir, "out"), *e = pj(dir, "empty"),
             *u = pj(dir, "user"), *t = pj(dir, "notes.txt");
  write_mixed(p, 3, 0);
  write_mixed(q, 2, 0);
  uint64_t cp = checksum(p);
  /* an empty directory: only with --force */
  cr_assert_eq(mkdir(e, 0755), 0);
  cr_assert_eq(ds_convert(p, "minari", e, 0, NULL), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), e) && strstr(tk_errmsg(), "--force"), "%s", tk_errmsg());
  cr_assert_eq(ds_convert(p, "minari", e, 1, NULL), 0, "%s", tk_errmsg());
  cr_assert(exists(pj(dir, "empty/data/metadata.json")));
  /* an export: only with --force, and then replaced whole */
  cr_assert_eq(ds_convert(p, "minari", o, 0, NULL), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_convert(q, "minari", o, 0, NULL), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "existing export") && strstr(tk_errmsg(), "--force"), "%s", tk_errmsg());
  char *out = minari_check(o, p, "");
  free(out);
  cr_assert_eq(ds_convert(q, "minari", o, 1, NULL), 0, "%s", tk_errmsg());
  out = minari_check(o, q, "");
  cr_assert(strstr(out, "episodes=2"), "%s", out);
  free(out);
  /* a directory of anything else: never, even with --force */
  cr_assert_eq(mkdir(u, 0755), 0);
  FILE *f = fopen(pj(dir, "user/thesis.tex"), "w");
  cr_assert_not_null(f);
  fputs("years of work\n", f);
  fclose(f);
  uint64_t cu = checksum(pj(dir, "user/thesis.tex"));
  cr_assert_eq(ds_convert(p, "minari", u, 1, NULL), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), u) && strstr(tk_errmsg(), "even with --force"), "%s", tk_errmsg());
  cr_assert_eq(checksum(pj(dir, "user/thesis.tex")), cu);
  /* a directory that holds the input (an export dir with the dataset copied into it): never */
  cr_assert_eq(link(p, pj(dir, "out/d.h5")), 0);
  cr_assert_eq(ds_convert(pj(dir, "out/d.h5"), "minari", o, 1, NULL), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "holds the input"), "%s", tk_errmsg());
  cr_assert(exists(pj(dir, "out/d.h5")));
  /* a file of another kind: only with --force (the output rule) */
  f = fopen(t, "w");
  fputs("my notes\n", f);
  fclose(f);
  cr_assert_eq(ds_convert(p, "minari", t, 0, NULL), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "text file"), "%s", tk_errmsg());
  /* OUT/ is OUT (the temp directory goes beside it, not into it) */
  cr_assert_eq(ds_convert(p, "minari", pj(dir, "slash/"), 0, NULL), 0, "%s", tk_errmsg());
  cr_assert(exists(pj(dir, "slash/data/main_data.hdf5")));
  cr_assert_eq(ds_convert(p, "minari", pj(dir, "slash//"), 1, NULL), 0, "%s", tk_errmsg());
  /* the input is never the output */
  cr_assert_eq(ds_convert(p, "minari", p, 1, NULL), TK_EINVAL);
  cr_assert_eq(checksum(p), cp);
  assert_no_tmp(dir);
  /* below the Minari datasets root the directory is the id (load_dataset finds it); it must parse */
  char root[4300];
  snprintf(root, sizeof root, "%s/minari_root", dir);
  cr_assert_eq(mkdir(root, 0755), 0);
  cr_assert_eq(mkdir(pj(root, "lab"), 0755), 0);
  setenv("MINARI_DATASETS_PATH", root, 1);
  dsConvertResult r;
  cr_assert_eq(ds_convert(p, "minari", pj(root, "lab/reach-v2"), 0, &r), 0, "%s", tk_errmsg());
  cr_assert(strstr(r.note, "load_dataset(\"lab/reach-v2\")"), "%s", r.note);
  out = minari_check(pj(root, "lab/reach-v2"), p, "--expect-id lab/reach-v2");
  free(out);
  cr_assert_eq(ds_convert(p, "minari", pj(root, "lab/reach"), 0, NULL), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "Minari id") && strstr(tk_errmsg(), "lab/reach"), "%s", tk_errmsg());
  cr_assert(!exists(pj(root, "lab/reach")));
  unsetenv("MINARI_DATASETS_PATH");
  assert_no_tmp(pj(root, "lab"));
}

static const char *PY_D4RL =
    "import sys, h5py, numpy as np\n"
    "def check(c, m):\n"
    "    if not c:\n"
    "        print('FAIL', m); sys.exit(1)\n"
    "x = h5py.File(sys.argv[1], 'r'); s = h5py.File(sys.argv[2], 'r')\n"
    "demos = sorted(s['data'].keys(), key=lambda n: int(n[5:]))\n"
    "o0 = s['data'][demos[0]]['obs']\n"
    "keys = sorted(k for k in o0 if o0[k].ndim == 2)\n"
    "cat = lambda g, d: np.concatenate([np.hstack([s['data'][n][g][k][:].astype(np.float32) for k in keys]) "
    "for n in "
    "d])\n"
    "obs = cat('obs', demos); nobs = cat('next_obs', demos)\n"
    "act = np.concatenate([s['data'][n]['actions'][:] for n in demos]).astype(np.float32)\n"
    "rew = np.concatenate([s['data'][n]['rewards'][:] for n in demos]).astype(np.float32)\n"
    "dones = np.concatenate([s['data'][n]['dones'][:] for n in demos]) != 0\n"
    "tout = np.zeros(len(dones), bool); r = 0\n"
    "for n in demos:\n"
    "    T = s['data'][n].attrs['num_samples']; r += T; tout[r - 1] = s['data'][n]['dones'][T - 1] == 0\n"
    "N = len(dones)\n"
    "for n, ref in (('observations', obs), ('next_observations', nobs), ('actions', act), ('rewards', "
    "rew)):\n"
    "    check(x[n].dtype == np.float32 and x[n].shape == ref.shape, '%s %s %s' % (n, x[n].dtype, "
    "x[n].shape))\n"
    "    check(np.array_equal(x[n][:], ref), n + ' values')\n"
    "for n, ref in (('terminals', dones), ('timeouts', tout)):\n"
    "    check(x[n].dtype == np.bool_ and x[n].shape == (N,), n + ' dtype %s' % x[n].dtype)\n"
    "    check(np.array_equal(x[n][:], ref), n + ' values')\n"
    "check([str(k) for k in x.attrs['obs_keys']] == keys, 'obs_keys %r' % x.attrs['obs_keys'])\n"
    "print('d4rl ok N=%d obs_dim=%d timeouts=%d terminals=%d' % (N, obs.shape[1], tout.sum(), "
    "dones.sum()))\n";

Test(edit, convert_d4rl_reads_back_with_h5py) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *q = pj(dir, "q.h5"), *o = pj(dir, "d4rl.h5");
  write_mixed(p, 4, 8);
  /* a demo that ends without terminating (dones[-1] == 0), as h5py-written files may have */
  char args[8400];
  snprintf(args, sizeof args, "%s %s", p, q);
  char *out = run_py(dir, "untimeout.py",
                     "import sys, shutil, h5py\n"
                     "shutil.copyfile(sys.argv[1], sys.argv[2])\n"
                     "with h5py.File(sys.argv[2], 'r+') as f:\n"
                     "    d = f['data/demo_1/dones']; d[-1] = 0\n",
                     args);
  free(out);
  uint64_t c = checksum(q);
  cr_assert_eq(ds_convert(q, "d4rl", o, 0, NULL), 0, "%s", tk_errmsg());
  cr_assert_eq(checksum(q), c);
  assert_no_tmp(dir);
  snprintf(args, sizeof args, "%s %s", o, q);
  out = run_py(dir, "d4rl.py", PY_D4RL, args);
  /* lengths 8 11 14 17; obs aux(2) + pos(3). The writer marks dones only where a demo ends in
   * success (demos 0 and 2 here; demo 1's end was cleared above): 2 terminals, 2 timeouts */
  cr_assert(strstr(out, "d4rl ok N=50 obs_dim=5 timeouts=2 terminals=2"), "%s", out);
  free(out);
}

Test(edit, convert_refusals) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5");
  synth(p, 2, 8, 0, 1, NULL, 0);
  uint64_t c = checksum(p);
  cr_assert_eq(ds_convert(p, "rlds", pj(dir, "o.h5"), 0, NULL), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "rlds"), "%s", tk_errmsg());
  cr_assert_eq(ds_convert(p, "d4rl", p, 0, NULL), TK_EINVAL, "the output may not be the input");
  cr_assert(strstr(tk_errmsg(), p), "%s", tk_errmsg());
  cr_assert_eq(ds_convert(p, "d4rl", NULL, 0, NULL), TK_EINVAL);
  cr_assert_eq(checksum(p), c);
  cr_assert(!exists(pj(dir, "o.h5")));
  assert_no_tmp(dir);
}

/* ---- failures ---- */
typedef enum { C_MERGE, C_SPLIT, C_FILTER, C_DELETE, C_TRIM, C_MINARI, C_D4RL, C_N } cmdId;
static const char *cmd_name[C_N] = {"merge", "split", "filter", "delete", "trim", "convert", "convert"};

static int run_cmd(cmdId c, const char *in, const char *out) {
  const char *ins[2] = {in, in};
  const char *del[1] = {"demo_0"};
  dsFilterOpts fo = {.success_only = 1};
  switch (c) {
  case C_MERGE: return ds_merge(ins, 2, out, 0);
  case C_SPLIT: return ds_split(in, 0.5, 1, out, 0);
  case C_FILTER: return ds_filter(in, &fo, out, 0, NULL);
  case C_DELETE: return ds_delete(in, del, 1, out, 0);
  case C_TRIM: return ds_trim(in, "demo_0", 1, 4, out, 0);
  case C_MINARI: return ds_convert(in, "minari", out, 0, NULL);
  case C_D4RL: return ds_convert(in, "d4rl", out, 0, NULL);
  default: return 0;
  }
}

Test(edit, failures_name_the_file_and_leave_no_temp_file) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *bad = pj(dir, "bad.h5"), *isdir = pj(dir, "isdir.h5");
  synth(p, 3, 10, 8, 1, NULL, 0);
  FILE *f = fopen(bad, "w");
  cr_assert_not_null(f);
  fputs("this is not an HDF5 file\n", f);
  fclose(f);
  cr_assert_eq(mkdir(isdir, 0755), 0);
  uint64_t c = checksum(p);
  char missing[4200];
  snprintf(missing, sizeof missing, "%s/no/such/dir/o.h5", dir);
  const char *o = pj(dir, "o.h5");
  for (int k = 0; k < C_N; k++) {
    cmdId id = (cmdId)k;
    /* the output directory does not exist */
    int rc = run_cmd(id, p, missing);
    cr_assert_lt(rc, 0, "%s into a missing directory", cmd_name[k]);
    cr_assert(strstr(tk_errmsg(), missing) && strstr(tk_errmsg(), cmd_name[k]) &&
                  strstr(tk_errmsg(), "create"),
              "%s: %s", cmd_name[k], tk_errmsg());
    /* the input is not a dataset */
    rc = run_cmd(id, bad, o);
    cr_assert_lt(rc, 0, "%s of a bad input", cmd_name[k]);
    cr_assert(strstr(tk_errmsg(), bad) && strstr(tk_errmsg(), "not an HDF5 file"), "%s: %s", cmd_name[k],
              tk_errmsg());
    cr_assert(!exists(o), "%s wrote an output for a bad input", cmd_name[k]);
    /* the destination is a directory: refused before anything is written */
    rc = run_cmd(id, p, isdir);
    cr_assert_lt(rc, 0, "%s onto a directory", cmd_name[k]);
    cr_assert(strstr(tk_errmsg(), isdir) && strstr(tk_errmsg(), "directory"), "%s: %s", cmd_name[k],
              tk_errmsg());
    struct stat st;
    cr_assert(stat(isdir, &st) == 0 && S_ISDIR(st.st_mode));
    assert_no_tmp(dir);
    cr_assert_eq(checksum(p), c, "%s changed its input", cmd_name[k]);
  }
  cr_assert(!exists(pj(dir, "isdir.h5.metadata.json")));
  /* a leftover temp file of ours from an interrupted run is removed; a user's o.h5.tmp is no temp file */
  f = fopen(pj(dir, "o.h5.tmp"), "w");
  cr_assert_not_null(f);
  fputs("stale", f);
  fclose(f);
  char ours[4300];
  int fd = tk_temp_beside(o, ours, sizeof ours);
  cr_assert_geq(fd, 0, "%s", tk_errmsg());
  close(fd);
  cr_assert_eq(ds_split(p, 0.5, 1, o, 0), 0, "%s", tk_errmsg());
  cr_assert(!exists(ours), "a leftover temp file of ours stays: %s", ours);
  cr_assert(exists(pj(dir, "o.h5.tmp")), "the user's o.h5.tmp was removed");
  unlink(pj(dir, "o.h5.tmp"));
  assert_no_tmp(dir);
  dsFile *fo = open_ok(o);
  cr_assert_eq(ds_num_masks(fo), 2);
  ds_close(fo);
}

/* Replacing a file a writer publishes into would lose the episodes it publishes meanwhile. */
Test(edit, refuses_to_replace_a_file_a_writer_records_into) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *o = pj(dir, "copy.h5");
  dsWriterOpts wo;
  ds_writer_default(&wo);
  wo.env_name = "lock_task";
  wo.schema.action_dim = 2;
  wo.schema.state_dim = 1;
  wo.publish_ratio = 0; /* the main file holds every committed episode */
  int64_t three[1] = {3};
  ds_schema_add(&wo.schema, "pos", DS_F64, 1, three);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &wo, &w), 0, "%s", tk_errmsg());
  for (int e = 0; e < 3; e++) {
    dsEpisodeInfo info = {
        .task = "lock_task", .seed = e, .operator_name = "t", .device = "scripted", .control_hz = 10};
    cr_assert_eq(ds_writer_begin(w, &info, NULL), 0, "%s", tk_errmsg());
    double act[2] = {0.1 * e, -0.2}, pos[3] = {1, 2, 3}, state[1] = {e};
    for (int t = 0; t < 5; t++) {
      dsStep st = {.action = act, .state = state, .timestamp = 0.1 * t};
      st.obs[0] = pos;
      cr_assert_eq(ds_writer_add_step(w, &st), 0, "%s", tk_errmsg());
    }
    cr_assert_eq(ds_writer_end(w, DS_SUCCESS, NULL, 0), 0, "%s", tk_errmsg());
  }
  cr_assert_eq(ds_writer_sync(w), 0, "%s", tk_errmsg());
  uint64_t c = checksum(p);
  cr_assert_eq(ds_split(p, 0.5, 1, NULL, 0), TK_EBUSY, "%s", tk_errmsg());
  cr_assert(strstr(tk_errmsg(), p) && strstr(tk_errmsg(), "writer"), "%s", tk_errmsg());
  const char *del[1] = {"demo_0"};
  cr_assert_eq(ds_delete(p, del, 1, NULL, 0), TK_EBUSY, "%s", tk_errmsg());
  cr_assert_eq(ds_trim(p, "demo_0", 1, 3, NULL, 0), TK_EBUSY, "%s", tk_errmsg());
  /* reading it into another file is fine meanwhile */
  cr_assert_eq(ds_split(p, 0.5, 1, o, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(checksum(p), c);
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_delete(p, del, 1, NULL, 0), 0, "%s", tk_errmsg());
  dsFile *f = open_ok(p);
  cr_assert_eq(ds_num_demos(f), 2);
  ds_close(f);
  assert_no_tmp(dir);
}

/* ---- the output rule, empty results, names, links, temp names (issue "data safety") ---- */
static void write_rate(const char *path, double hz, const char *kwargs, int n) {
  dsWriterOpts o;
  ds_writer_default(&o);
  o.env_name = "rate_task";
  o.env_kwargs_json = kwargs;
  o.schema.action_dim = 2;
  o.schema.state_dim = 1;
  int64_t three[1] = {3};
  ds_schema_add(&o.schema, "pos", DS_F64, 1, three);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(path, &o, &w), 0, "%s", tk_errmsg());
  for (int e = 0; e < n; e++) {
    dsEpisodeInfo info = {
        .task = "rate_task", .seed = e, .operator_name = "t", .device = "scripted", .control_hz = hz};
    cr_assert_eq(ds_writer_begin(w, &info, NULL), 0, "%s", tk_errmsg());
    double act[2] = {0.1 * e, -0.2}, pos[3] = {1, 2, 3}, state[1] = {e};
    for (int t = 0; t < 5; t++) {
      dsStep st = {.action = act, .state = state, .timestamp = (double)t / hz};
      st.obs[0] = pos;
      cr_assert_eq(ds_writer_add_step(w, &st), 0, "%s", tk_errmsg());
    }
    cr_assert_eq(ds_writer_end(w, DS_SUCCESS, NULL, 0), 0, "%s", tk_errmsg());
  }
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
}

Test(edit, merge_refuses_other_control_rate_and_env_kwargs_naming_both_files) {
  const char *dir = tt_tmpdir();
  const char *a = pj(dir, "hz5.h5"), *b = pj(dir, "hz20.h5"), *c = pj(dir, "front.h5"),
             *d = pj(dir, "side.h5"), *m = pj(dir, "m.h5");
  write_rate(a, 5, "{}", 2);
  write_rate(b, 20, "{}", 2);
  write_rate(c, 20, "{\"camera\": \"front\", \"control_freq\": 20}", 2);
  write_rate(d, 20, "{\"camera\": \"side\", \"control_freq\": 20}", 2);
  const char *in[2] = {a, b};
  cr_assert_eq(ds_merge(in, 2, m, 0), TK_EFORMAT, "5 Hz and 20 Hz recordings merged");
  const char *e = tk_errmsg();
  cr_assert(strstr(e, a) && strstr(e, b) && strstr(e, "5 Hz") && strstr(e, "20 Hz"), "%s", e);
  const char *in2[2] = {c, d};
  cr_assert_eq(ds_merge(in2, 2, m, 0), TK_EFORMAT, "differing env_kwargs merged");
  e = tk_errmsg();
  cr_assert(strstr(e, c) && strstr(e, d) && strstr(e, "env_kwargs.camera") && strstr(e, "\"front\"") &&
                strstr(e, "\"side\""),
            "%s", e);
  const char *in3[2] = {b, c}; /* {} vs a camera: a key on one side only */
  cr_assert_eq(ds_merge(in3, 2, m, 0), TK_EFORMAT);
  cr_assert(strstr(tk_errmsg(), "env_kwargs.camera") && strstr(tk_errmsg(), "absent"), "%s", tk_errmsg());
  cr_assert(!exists(m));
  assert_no_tmp(dir);
  /* the same rate and env_args merge */
  const char *in4[2] = {c, c};
  cr_assert_eq(ds_merge(in4, 2, m, 0), 0, "%s", tk_errmsg());
  dsFile *f = open_ok(m);
  cr_assert_eq(ds_num_demos(f), 4);
  ds_close(f);
}

Test(edit, output_rule_refuses_inputs_and_replaces_datasets_only_with_force) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *q = pj(dir, "q.h5"), *txt = pj(dir, "notes.txt"),
             *hl = pj(dir, "hard.h5"), *c = pj(dir, "c.h5");
  synth(p, 4, 8, 0, 1, NULL, 0);
  synth(q, 3, 8, 0, 2, NULL, 0);
  FILE *f = fopen(txt, "w");
  fputs("my notes\n", f);
  fclose(f);
  cr_assert_eq(link(p, hl), 0);
  uint64_t cp = checksum(p), cq = checksum(q), ct = checksum(txt);
  const char *in[2] = {p, q};
  /* an input is never the output, with or without force (by inode: a hard link too) */
  cr_assert_eq(ds_merge(in, 2, q, 1), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "is the input"), "%s", tk_errmsg());
  cr_assert_eq(ds_split(p, 0.5, 1, hl, 1), TK_EINVAL, "a hard link of the input");
  cr_assert_eq(ds_convert(p, "d4rl", hl, 1, NULL), TK_EINVAL);
  /* an existing dataset or a file of another kind: only with force */
  const char *del[1] = {"demo_0"};
  cr_assert_eq(ds_delete(p, del, 1, q, 0), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), q) && strstr(tk_errmsg(), "--force"), "%s", tk_errmsg());
  cr_assert_eq(ds_trim(p, "demo_0", 1, 3, txt, 0), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "text file"), "%s", tk_errmsg());
  dsFilterOpts fo = {.min_len = 1};
  cr_assert_eq(ds_filter(p, &fo, txt, 0, NULL), TK_EINVAL);
  cr_assert_eq(ds_convert(p, "d4rl", q, 0, NULL), TK_EINVAL, "a dataset under a converted file's name");
  cr_assert_eq(checksum(p), cp);
  cr_assert_eq(checksum(q), cq);
  cr_assert_eq(checksum(txt), ct);
  /* a converted file over a converted file is fine; a directory export over it only with force */
  cr_assert_eq(ds_convert(p, "d4rl", c, 0, NULL), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_convert(p, "d4rl", c, 0, NULL), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_convert(p, "minari", c, 0, NULL), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "not a directory") && strstr(tk_errmsg(), "--force"), "%s", tk_errmsg());
  cr_assert_eq(ds_convert(p, "minari", c, 1, NULL), 0, "%s", tk_errmsg());
  cr_assert(exists(pj(dir, "c.h5/data/metadata.json")));
  /* with force a dataset is replaced */
  cr_assert_eq(ds_delete(p, del, 1, q, 1), 0, "%s", tk_errmsg());
  dsFile *fq = open_ok(q);
  cr_assert_eq(ds_num_demos(fq), 3);
  cr_assert_eq(ds_find_demo(fq, "demo_0"), -1);
  ds_close(fq);
  cr_assert_eq(checksum(p), cp);
  assert_no_tmp(dir);
}

Test(edit, unknown_success_and_edits_that_leave_no_demos_are_refused) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "foreign.h5"), *o = pj(dir, "o.h5"), *one = pj(dir, "one.h5");
  write_mixed(p, 5, 0);
  /* another tool's file: three demos without a success attribute */
  free(run_py(dir, "nosucc.py",
              "import sys, h5py\n"
              "with h5py.File(sys.argv[1], 'r+') as f:\n"
              "    for a in ('demokit_format', 'demokit_version'):\n"
              "        del f['data'].attrs[a]\n"
              "    for d in ('demo_0', 'demo_1', 'demo_3'):\n"
              "        del f['data'][d].attrs['success']\n",
              p));
  uint64_t c = checksum(p);
  dsFilterOpts so = {.success_only = 1};
  int kept = -1;
  int rc = ds_filter(p, &so, NULL, 0, &kept);
  cr_assert_eq(rc, TK_EINVAL, "unknown success deleted as failure: %d %s", rc, tk_errmsg());
  cr_assert(strstr(tk_errmsg(), "3 of 5 demos have no success attribute") && strstr(tk_errmsg(), p), "%s",
            tk_errmsg());
  dsFilterOpts som = {.success_only = 1, .mask_name = "good"};
  cr_assert_eq(ds_filter(p, &som, NULL, 0, &kept), TK_EINVAL);
  cr_assert_eq(checksum(p), c, "nothing written");
  /* nothing matches: no empty file, no empty mask */
  dsFilterOpts lo = {.min_len = 1000};
  cr_assert_eq(ds_filter(p, &lo, NULL, 0, &kept), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "none of the 5 demos"), "%s", tk_errmsg());
  cr_assert_eq(ds_filter(p, &lo, o, 0, &kept), TK_EINVAL);
  dsFilterOpts lom = {.min_len = 1000, .mask_name = "long"};
  cr_assert_eq(ds_filter(p, &lom, NULL, 0, &kept), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "mask would be empty"), "%s", tk_errmsg());
  /* deleting every demo */
  const char *all[5] = {"demo_0", "demo_1", "demo_2", "demo_3", "demo_4"};
  cr_assert_eq(ds_delete(p, all, 5, NULL, 0), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "leave none"), "%s", tk_errmsg());
  const char *twice[2] = {"demo_1", "demo_1"};
  cr_assert_eq(ds_delete(p, twice, 2, NULL, 0), TK_EINVAL, "a demo named twice");
  cr_assert_eq(checksum(p), c, "nothing written");
  cr_assert(!exists(o));
  /* a split of one demo has no validation set */
  write_mixed(one, 1, 0);
  cr_assert_eq(ds_split(one, 0.5, 1, NULL, 0), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "at least two"), "%s", tk_errmsg());
  assert_no_tmp(dir);
}

Test(edit, long_mask_names_are_refused_never_cut) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *o = pj(dir, "o.h5"), *m = pj(dir, "m.h5");
  synth(p, 4, 8, 0, 1, NULL, 0);
  uint64_t c = checksum(p);
  char name70[71];
  memset(name70, 'k', 70);
  name70[70] = 0;
  dsFilterOpts fo = {.min_len = 1, .mask_name = name70};
  cr_assert_eq(ds_filter(p, &fo, NULL, 0, NULL), TK_ERANGE, "%s", tk_errmsg());
  cr_assert(strstr(tk_errmsg(), "mask name") && strstr(tk_errmsg(), "longer than 63"), "%s", tk_errmsg());
  cr_assert_eq(checksum(p), c);
  /* two masks (from h5py) that differ only after byte 63 must not become one */
  free(run_py(dir, "longmask.py",
              "import sys, h5py\n"
              "with h5py.File(sys.argv[1], 'r+') as f:\n"
              "    g = f.create_group('mask')\n"
              "    g.create_dataset('m' * 64 + '_a', data=[b'demo_0'])\n"
              "    g.create_dataset('m' * 64 + '_b', data=[b'demo_1', b'demo_2'])\n",
              p));
  c = checksum(p);
  /* the reader refuses the file (it would otherwise hold one mask where there are two) */
  cr_assert_neq(ds_split(p, 0.5, 1, o, 0), 0);
  cr_assert(strstr(tk_errmsg(), p) && strstr(tk_errmsg(), "mask") && strstr(tk_errmsg(), "longer than 63"),
            "%s", tk_errmsg());
  const char *del[1] = {"demo_3"};
  cr_assert_neq(ds_delete(p, del, 1, NULL, 0), 0);
  const char *in[2] = {p, p};
  cr_assert_neq(ds_merge(in, 2, m, 0), 0);
  cr_assert_eq(checksum(p), c);
  cr_assert(!exists(o) && !exists(m));
  assert_no_tmp(dir);
}

Test(edit, in_place_through_a_symlink_edits_the_target_and_keeps_the_link) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "real.h5"), *l = pj(dir, "link.h5"), *q = pj(dir, "other.h5"),
             *ol = pj(dir, "out.h5");
  synth(p, 4, 8, 0, 1, NULL, 0);
  synth(q, 2, 8, 0, 2, NULL, 0);
  cr_assert_eq(symlink("real.h5", l), 0);
  const char *del[1] = {"demo_2"};
  cr_assert_eq(ds_delete(l, del, 1, NULL, 0), 0, "%s", tk_errmsg());
  struct stat st;
  cr_assert(lstat(l, &st) == 0 && S_ISLNK(st.st_mode), "the link was replaced by a copy");
  char target[256] = "";
  cr_assert_gt(readlink(l, target, sizeof target - 1), 0);
  cr_assert_str_eq(target, "real.h5");
  dsFile *f = open_ok(p);
  cr_assert_eq(ds_num_demos(f), 3, "the target was not edited");
  cr_assert_eq(ds_find_demo(f, "demo_2"), -1);
  ds_close(f);
  cr_assert_eq(ds_split(l, 0.5, 3, NULL, 0), 0, "%s", tk_errmsg());
  cr_assert(lstat(l, &st) == 0 && S_ISLNK(st.st_mode));
  f = open_ok(p);
  cr_assert_eq(ds_num_masks(f), 2);
  ds_close(f);
  /* -o through a link: the file it names is replaced (with --force), the link stays */
  cr_assert_eq(symlink("other.h5", ol), 0);
  cr_assert_eq(ds_filter(p, &(dsFilterOpts){.min_len = 1}, ol, 0, NULL), TK_EINVAL,
               "a dataset without force");
  cr_assert_eq(ds_filter(p, &(dsFilterOpts){.min_len = 1}, ol, 1, NULL), 0, "%s", tk_errmsg());
  cr_assert(lstat(ol, &st) == 0 && S_ISLNK(st.st_mode));
  f = open_ok(q);
  cr_assert_eq(ds_num_demos(f), 3);
  ds_close(f);
  assert_no_tmp(dir);
}

/* A user's own OUT.tmp, OUT.publish.tmp, OUT.metadata.json.tmp are files like any other: no edit, no
 * recording, no publish and no recovery may remove or change them. */
Test(edit, user_files_named_like_temp_files_are_never_touched) {
  const char *dir = tt_tmpdir();
  const char *p = pj(dir, "d.h5"), *m = pj(dir, "m.h5"), *c = pj(dir, "c.h5"), *r = pj(dir, "r.h5");
  const char *names[] = {"d.h5.tmp", "d.h5.publish.tmp",       "m.h5.tmp", "m.h5.publish.tmp",
                         "c.h5.tmp", "c.h5.metadata.json.tmp", "r.h5.tmp", "r.h5.publish.tmp"};
  for (size_t i = 0; i < TK_ARRAY_LEN(names); i++) {
    FILE *f = fopen(pj(dir, names[i]), "w");
    cr_assert_not_null(f);
    fprintf(f, "user data %zu\n", i);
    fclose(f);
  }
  uint64_t sum[TK_ARRAY_LEN(names)];
  for (size_t i = 0; i < TK_ARRAY_LEN(names); i++)
    sum[i] = checksum(pj(dir, names[i]));
  synth(p, 6, 10, 0, 1, NULL, 0);
  synth(r, 3, 10, 0, 2, NULL, 0); /* a recording: writer, staging, publish */
  cr_assert_eq(ds_split(p, 0.5, 1, NULL, 0), 0, "%s", tk_errmsg());
  dsFilterOpts fo = {.min_len = 1, .mask_name = "all"};
  cr_assert_eq(ds_filter(p, &fo, NULL, 0, NULL), 0, "%s", tk_errmsg());
  const char *del[1] = {"demo_5"};
  cr_assert_eq(ds_delete(p, del, 1, NULL, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_trim(p, "demo_0", 1, 5, NULL, 0), 0, "%s", tk_errmsg());
  const char *in[2] = {p, r};
  cr_assert_eq(ds_merge(in, 2, m, 0), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_convert(p, "minari", pj(dir, "cm"), 0, NULL), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_convert(p, "d4rl", c, 0, NULL), 0, "%s", tk_errmsg());
  /* a crash's leftovers: a staged episode and the recovery that publishes it */
  char sdir[4300];
  snprintf(sdir, sizeof sdir, "%s.staging", r);
  cr_assert_eq(mkdir(sdir, 0755), 0);
  int pub = -1, drop = -1, rej = -1;
  cr_assert_eq(ds_recover(r, &pub, &drop, &rej), 0, "%s", tk_errmsg());
  for (size_t i = 0; i < TK_ARRAY_LEN(names); i++) {
    cr_assert(exists(pj(dir, names[i])), "%s was removed", names[i]);
    cr_assert_eq(checksum(pj(dir, names[i])), sum[i], "%s was changed", names[i]);
  }
  DIR *d = opendir(dir);
  struct dirent *e;
  while ((e = readdir(d)))
    cr_assert(!tk_is_temp_name(e->d_name), "temp file %s left", e->d_name);
  closedir(d);
}
