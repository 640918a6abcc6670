/* The `dataset` program end to end: each command as a user types it. */
#include <criterion/criterion.h>
#include <unistd.h>

#include "ds.h"
#include "tk.h"
#include "tt.h"
#include "tt_cli.h"

TestSuite(cli, .fini = tt_pool_free);

static const char *bin(void) { return tt_build("dataset/dataset"); }
static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

static char *run_ok(const char *fmt, const char *a, const char *b) {
  char cmd[8192], *out = NULL;
  snprintf(cmd, sizeof cmd, fmt, a, b);
  int rc = tt_run(&out, "%s", cmd);
  cr_assert_eq(rc, 0, "%s -> exit %d: %s", cmd, rc, out);
  return out;
}

static int demos_in(const char *p) {
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  int n = ds_num_demos(f);
  ds_close(f);
  return n;
}

Test(cli, synth_info_validate_split_check) {
  const char *d = tt_tmpdir();
  char p[4200], cmd[8400];
  snprintf(p, sizeof p, "%s/s.h5", d);
  snprintf(cmd, sizeof cmd, "%s synth %%s --demos 12 --steps 40 --image 16 --seed 3%%s", bin());
  free(run_ok(cmd, p, ""));
  snprintf(cmd, sizeof cmd, "%s info %%s%%s", bin());
  char *out = run_ok(cmd, p, "");
  cr_assert(strstr(out, "demos: 12") && strstr(out, "steps: 480") && strstr(out, "agentview_image") &&
                strstr(out, "success:") && strstr(out, "recorded rate") && strstr(out, "action_dim: 7") &&
                strstr(out, "length: min 40, mean 40.0, max 40"),
            "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s validate %%s%%s", bin());
  out = run_ok(cmd, p, "");
  cr_assert(strstr(out, "valid"), "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s split %%s --valid 0.25 --seed 1 --in-place%%s", bin());
  free(run_ok(cmd, p, ""));
  snprintf(cmd, sizeof cmd, "%s %s %%s --native --expect-demos 12%%s", py(),
           tt_src("tests/dataset/h5_check.py"));
  free(run_ok(cmd, p, ""));
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0);
  int *pos, n;
  cr_assert_eq(ds_mask(f, "valid", &pos, &n), 0);
  cr_assert_eq(n, 3);
  free(pos);
  ds_close(f);
}

Test(cli, merge_filter_delete_trim_convert) {
  const char *d = tt_tmpdir();
  char a[4200], b[4200], m[4200], cmd[8400];
  snprintf(a, sizeof a, "%s/a.h5", d);
  snprintf(b, sizeof b, "%s/b.h5", d);
  snprintf(m, sizeof m, "%s/m.h5", d);
  snprintf(cmd, sizeof cmd, "%s synth %%s --demos 4 --steps 20%%s", bin());
  free(run_ok(cmd, a, ""));
  snprintf(cmd, sizeof cmd, "%s synth %%s --demos 3 --steps 25 --seed 9%%s", bin());
  free(run_ok(cmd, b, ""));
  snprintf(cmd, sizeof cmd, "%s merge %s %%s -o %%s", bin(), a);
  free(run_ok(cmd, b, m));
  cr_assert_eq(demos_in(m), 7);
  char f2[4200];
  snprintf(f2, sizeof f2, "%s/f.h5", d);
  snprintf(cmd, sizeof cmd, "%s filter %%s --min-len 21 -o %%s", bin());
  free(run_ok(cmd, m, f2));
  cr_assert_eq(demos_in(f2), 3, "only the 25-step demos are at least 21 long");
  snprintf(cmd, sizeof cmd, "%s delete %%s demo_0 demo_6 -o %%s --force", bin());
  free(run_ok(cmd, m, f2));
  cr_assert_eq(demos_in(f2), 5);
  snprintf(cmd, sizeof cmd, "%s trim %%s demo_1 --start 5 --end 15 -o %%s --force", bin());
  free(run_ok(cmd, m, f2));
  dsFile *f;
  cr_assert_eq(ds_open(f2, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_demo(f, 1)->num_samples, 10);
  ds_close(f);
  char c[4200];
  snprintf(c, sizeof c, "%s/c.h5", d);
  snprintf(cmd, sizeof cmd, "%s convert %%s --to d4rl -o %%s", bin());
  free(run_ok(cmd, m, c));
  snprintf(cmd, sizeof cmd,
           "%s -c \"import h5py,sys; f=h5py.File(sys.argv[1]); print(f['observations'].shape)\" %%s%%s",
           py());
  char *out = run_ok(cmd, c, "");
  cr_assert(strstr(out, "(155, 9)"), "4x20 + 3x25 steps, 9 low-dim columns: %s", out);
  free(out);
}

/* convert as a user types it: --help lists every row of the export table; the one line says what was
 * written and, in capitals, what was left out and why; a Minari directory opens as Minari reads it. */
Test(cli, convert_formats_from_the_table_and_says_what_it_left_out) {
  const char *d = tt_tmpdir();
  char *out = NULL;
  int rc = tt_run(&out, "%s --help", bin());
  cr_assert_eq(rc, 0);
  for (int i = 0; ds_export_format(i); i++) {
    const dsExportFormat *x = ds_export_format(i);
    cr_assert(strstr(out, x->name) && strstr(out, x->help), "--help lacks format %s: %s", x->name, out);
  }
  free(out);
  char s[4200], m[4200], m2[4200];
  snprintf(s, sizeof s, "%s/s.h5", d);
  snprintf(m, sizeof m, "%s/lab", d);
  snprintf(m2, sizeof m2, "%s/lab2", d);
  free(run_ok("%s synth %s --demos 3 --steps 9 --image 40", bin(), s));
  rc = tt_run(&out, "%s convert %s --to minari -o %s", bin(), s, m);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "3 episodes, 27 steps") && strstr(out, "robot0_eef_pos") &&
                strstr(out, "LEFT OUT: agentview_image") && strstr(out, "JPEG") &&
                strstr(out, "demokit/synth_reach/lab-v0"),
            "%s", out);
  free(out);
  rc = tt_run(&out, "%s %s %s %s --expect-skipped agentview_image", py(),
              tt_src("tests/dataset/minari_check.py"), m, s);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* an existing export: exit 1 without --force, replaced with it */
  rc = tt_run(&out, "%s convert %s --to minari -o %s", bin(), s, m);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "--force"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s convert %s --to minari -o %s --force", bin(), s, m);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  /* small images are no image spaces to Minari: written, nothing left out */
  snprintf(s, sizeof s, "%s/small.h5", d);
  free(run_ok("%s synth %s --demos 2 --steps 5 --image 8", bin(), s));
  rc = tt_run(&out, "%s convert %s --to minari -o %s", bin(), s, m2);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "agentview_image") && !strstr(out, "LEFT OUT"), "%s", out);
  free(out);
  /* an unknown format names the table's */
  rc = tt_run(&out, "%s convert %s --to rlds -o %s/x", bin(), s, d);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "rlds") && strstr(out, "minari") && strstr(out, "d4rl"), "%s", out);
  free(out);
}

Test(cli, refusals_and_usage) {
  const char *d = tt_tmpdir();
  char *out = NULL;
  int rc = tt_run(&out, "%s", bin());
  cr_assert_eq(rc, 2);
  free(out);
  rc = tt_run(&out, "%s --help", bin());
  cr_assert_eq(rc, 0);
  cr_assert(strstr(out, "recover") && strstr(out, "convert"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s frobnicate x", bin());
  cr_assert_eq(rc, 2);
  cr_assert(strstr(out, "frobnicate"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s info %s/none.h5", bin(), d);
  cr_assert_eq(rc, 1);
  cr_assert(strstr(out, "none.h5"), "%s", out);
  free(out);
  rc = tt_run(&out, "%s split %s/none.h5 --valid 0.1", bin(), d);
  cr_assert_eq(rc, 2, "split without -o or --in-place is a usage error: %s", out);
  free(out);
  char a[4200], b[4200];
  snprintf(a, sizeof a, "%s/a.h5", d);
  snprintf(b, sizeof b, "%s/b.h5", d);
  free(run_ok("%s synth %s --demos 2 --steps 5 --task one", bin(), a));
  free(run_ok("%s synth %s --demos 2 --steps 5 --task two", bin(), b));
  rc = tt_run(&out, "%s merge %s %s -o %s/m.h5", bin(), a, b, d);
  cr_assert_eq(rc, 1);
  cr_assert(strstr(out, "one") && strstr(out, "two"), "names both tasks: %s", out);
  free(out);
}

/* Every numeric option through tk_opt_int / tk_opt_f64: "--min-len 1e30" was cast to int64 (undefined;
 * here INT64_MIN: every demo kept), "--start 2.5" was 2, NaN got past "x < lo". Each is a usage error
 * (exit 2) whose first line names the option and the value; nothing is written. */
Test(cli, numeric_options_are_whole_finite_and_in_range) {
  const char *d = tt_tmpdir();
  char a[4200], o[4200];
  snprintf(a, sizeof a, "%s/a.h5", d);
  snprintf(o, sizeof o, "%s/o.h5", d);
  free(run_ok("%s synth %s --demos 3 --steps 10", bin(), a));
  const char *bad[][3] = {{"filter", "--min-len", "1e30"},
                          {"filter", "--min-len", "nan"},
                          {"filter", "--max-len", "2.5"},
                          {"filter", "--min-len", "-1"},
                          {"filter", "--max-len", "1e19"},
                          {"trim demo_0", "--start", "2.5"},
                          {"trim demo_0", "--end", "inf"},
                          {"split", "--valid", "nan"},
                          {"split", "--seed", "1e30"},
                          {"synth", "--demos", "2.5"},
                          {"synth", "--steps", "1e30"},
                          {"synth", "--image", "16.5"},
                          {"synth", "--seed", "-1"},
                          {"replay --check", "--tolerance", "nan"},
                          {"replay --check", "--tolerance", "-1"}};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    char *out, *err;
    int rc = run2(d, &out, &err, "%s %s %s %s '%s' -o %s", bin(), bad[i][0], a, bad[i][1], bad[i][2], o);
    cr_expect_eq(rc, 2, "%s %s %s: exit %d: %s", bad[i][0], bad[i][1], bad[i][2], rc, err);
    const char *nl = strchr(err, '\n');
    cr_expect(nl && strstr(err, bad[i][1]) && strstr(err, bad[i][2]) && strstr(err, bad[i][1]) < nl,
              "the first line names the option and the value: %s", err);
    cr_expect_eq(file_size(o), -1, "%s %s %s wrote %s", bad[i][0], bad[i][1], bad[i][2], o);
  }
  cr_expect_eq(demos_in(a), 3, "the input is untouched");
  char *out, *err;
  int rc = run2(d, &out, &err, "DK_OPEN_TIMEOUT=abc %s info %s", bin(), a);
  cr_expect_eq(rc, 2, "exit %d: %s", rc, err);
  cr_expect(strstr(err, "DK_OPEN_TIMEOUT=abc"), "%s", err);
  /* and what is right still works: an exact integer written with an exponent */
  free(run_ok("%s filter %s --min-len 1e1 --mask ten --in-place", bin(), a));
}

/* What a crash leaves (a committed episode in staging, an unfinished one) is repaired by
 * `dataset recover`; validate says so before. */
Test(cli, recover_after_crash) {
  const char *d = tt_tmpdir();
  char p[4200], cmd[8400];
  snprintf(p, sizeof p, "%s/r.h5", d);
  free(run_ok("%s synth %s --demos 3 --steps 10", bin(), p));
  /* simulate a crashed session: one committed episode file, one unfinished */
  char *out = NULL;
  char script[4300];
  snprintf(script, sizeof script, "%s/rename.py", d);
  FILE *sf = fopen(script, "w");
  fputs("import sys, h5py\nwith h5py.File(sys.argv[1], 'a') as f:\n    f['data'].move('demo_0', 'demo_3')\n",
        sf);
  fclose(sf);
  int rc = tt_run(
      &out,
      "mkdir -p %s.staging && %s synth %s/one.h5 --demos 1 --steps 7 && %s %s %s/one.h5 && "
      "mv %s/one.h5 %s.staging/demo_3.h5 && head -c 1000 %s.staging/demo_3.h5 > %s.staging/demo_4.h5.tmp",
      p, bin(), d, py(), script, d, d, p, p, p);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s validate %%s%%s", bin());
  out = run_ok(cmd, p, "");
  cr_assert(strstr(out, "recover"), "validate mentions the staged episodes: %s", out);
  free(out);
  snprintf(cmd, sizeof cmd, "%s recover %%s%%s", bin());
  out = run_ok(cmd, p, "");
  cr_assert(strstr(out, "1 committed episode(s) published, 1 unfinished"), "%s", out);
  free(out);
  cr_assert_eq(demos_in(p), 4);
  cr_assert_eq(ds_staged_count(p), 0);
}

/* replay --check: a fresh teleop recording replays within the tolerance; a tampered state is found and
 * named; a file of a task we do not simulate is refused with a message. */
Test(cli, replay_check, .timeout = 120) {
  const char *d = tt_tmpdir();
  char p[4200], t[4200], x[4200];
  snprintf(p, sizeof p, "%s/rec.h5", d);
  snprintf(t, sizeof t, "%s/tampered.h5", d);
  snprintf(x, sizeof x, "%s/synth.h5", d);
  tt_record(p, "lift", 4, 0.3, 0, NULL);
  char *out = NULL;
  int rc;
  rc = tt_run(&out, "%s replay --check %s", bin(), p);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "replay: 4 demos, 0 above the tolerance"), "%s", out);
  printf("%s", out);
  free(out);
  /* change one recorded state in the middle of demo_1 */
  rc = tt_run(&out,
              "cp %s %s && %s -c \"import h5py; f = h5py.File('%s', 'r+'); s = f['data/demo_1/states']; "
              "v = s[5]; v[3] += 0.01; s[5] = v\"",
              p, t, py(), t);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s replay --check %s", bin(), t);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "demo_1:") && strstr(out, "above the tolerance") &&
                strstr(out, "step 5, state element 3"),
            "%s", out);
  free(out);
  /* the synthetic point-reaching task is not one of the simulator's */
  rc = tt_run(&out, "%s synth %s --demos 2 --steps 10", bin(), x);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s replay --check %s", bin(), x);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, x) && strstr(out, "not a built-in"), "%s", out);
  free(out);
}

/* Every input is merged (no fixed-size list that drops the rest), and a 70-byte mask name is refused
 * rather than cut. */
Test(cli, merge_of_300_inputs_and_a_70_byte_mask_name, .timeout = 120) {
  const char *d = tt_tmpdir();
  char one[4200], m[4200];
  snprintf(one, sizeof one, "%s/in_0.h5", d);
  snprintf(m, sizeof m, "%s/m.h5", d);
  free(run_ok("%s synth %s --demos 1 --steps 2", bin(), one));
  /* names relative to the folder: tt_run's command buffer holds 8 KB */
  size_t cap = 8192, off = 0;
  char *cmd = malloc(cap);
  off += (size_t)snprintf(cmd + off, cap - off, "cd %s && %s merge", d, bin());
  for (int i = 0; i < 300; i++) {
    char p[4200];
    snprintf(p, sizeof p, "%s/in_%d.h5", d, i);
    if (i) cr_assert_eq(tk_copy_file(one, p), 0, "%s", tk_errmsg());
    off += (size_t)snprintf(cmd + off, cap - off, " in_%d.h5", i);
  }
  off += (size_t)snprintf(cmd + off, cap - off, " -o m.h5");
  cr_assert_lt(off, cap - 100, "command fits");
  char *out = NULL;
  int rc = tt_run(&out, "%s", cmd);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "merged 300 files"), "%s", out);
  free(out);
  free(cmd);
  cr_assert_eq(demos_in(m), 300, "every input merged");
  char name[71];
  memset(name, 'x', 70);
  name[70] = 0;
  rc = tt_run(&out, "%s filter %s --min-len 1 --mask %s --in-place", bin(), m, name);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "mask name") && strstr(out, "longer than 63"), "%s", out);
  free(out);
}

/* -o OUT never replaces an input nor, without --force, an existing dataset; --in-place through a
 * symbolic link edits the file it names; recordings at other control rates do not merge. */
Test(cli, force_symlinks_and_rates) {
  const char *d = tt_tmpdir();
  char a[4200], b[4200], l[4200];
  snprintf(a, sizeof a, "%s/a.h5", d);
  snprintf(b, sizeof b, "%s/b.h5", d);
  snprintf(l, sizeof l, "%s/l.h5", d);
  free(run_ok("%s synth %s --demos 4 --steps 5", bin(), a));
  free(run_ok("%s synth %s --demos 3 --steps 5 --seed 2", bin(), b));
  char *out = NULL;
  int rc = tt_run(&out, "%s split %s --valid 0.5 -o %s", bin(), a, b);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, b) && strstr(out, "--force"), "%s", out);
  free(out);
  cr_assert_eq(demos_in(b), 3, "b untouched");
  rc = tt_run(&out, "%s merge %s %s -o %s --force", bin(), a, b, b);
  cr_assert_eq(rc, 1, "an input is never the output: %s", out);
  free(out);
  rc = tt_run(&out, "%s split %s --valid 0.5 -o %s --force", bin(), a, b);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  cr_assert_eq(demos_in(b), 4);
  rc = tt_run(&out, "%s trim %s demo_0 --end 2 --in-place --force", bin(), a);
  cr_assert_eq(rc, 2, "--force with --in-place is a usage error: %s", out);
  free(out);
  /* in place through a link */
  cr_assert_eq(symlink("a.h5", l), 0);
  free(run_ok("%s delete %s demo_1 --in-place", bin(), l));
  struct stat st;
  cr_assert(lstat(l, &st) == 0 && S_ISLNK(st.st_mode), "the link stays a link");
  cr_assert_eq(demos_in(a), 3, "the file the link names is edited");
  /* the same task at 5 Hz and at 20 Hz */
  rc = tt_run(&out,
              "%s -c \"import h5py, sys; f = h5py.File(sys.argv[1], 'r+'); "
              "[f['data'][k].attrs.__setitem__('control_hz', 5.0) for k in f['data']]\" %s",
              py(), b);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s merge %s %s -o %s/m.h5", bin(), a, b, d);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, a) && strstr(out, b) && strstr(out, "5 Hz") && strstr(out, "20 Hz"), "%s", out);
  free(out);
}

/* recover sets aside a staged episode of another schema in FILE.rejected/ and exits 1 saying so. */
Test(cli, recover_sets_aside_and_exits_1) {
  const char *d = tt_tmpdir();
  char p[4200], script[4300];
  snprintf(p, sizeof p, "%s/r.h5", d);
  free(run_ok("%s synth %s --demos 3 --steps 10", bin(), p));
  snprintf(script, sizeof script, "%s/rename.py", d);
  FILE *sf = fopen(script, "w");
  fputs("import sys, h5py\nwith h5py.File(sys.argv[1], 'a') as f:\n    f['data'].move('demo_0', 'demo_3')\n",
        sf);
  fclose(sf);
  char *out = NULL;
  int rc =
      tt_run(&out,
             "mkdir -p %s.staging && %s synth %s/img.h5 --demos 1 --steps 7 --image 8 && %s %s %s/img.h5 && "
             "mv %s/img.h5 %s.staging/demo_3.h5",
             p, bin(), d, py(), script, d, d, p);
  cr_assert_eq(rc, 0, "%s", out);
  free(out);
  rc = tt_run(&out, "%s recover %s", bin(), p);
  cr_assert_eq(rc, 1, "%s", out);
  cr_assert(strstr(out, "1 staged episode(s)") && strstr(out, ".rejected/") && strstr(out, "agentview_image"),
            "%s", out);
  free(out);
  cr_assert_eq(demos_in(p), 3, "the dataset keeps its demos and stays readable");
  char kept[4400];
  snprintf(kept, sizeof kept, "%s.rejected/demo_3.h5", p);
  cr_assert(tk_file_exists(kept), "the episode is kept, not deleted");
}
