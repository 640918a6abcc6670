/* The output rule (dataset/ds_output.c) and every tool that writes files: no output replaces an input
 * (the same file through a symlink, a hard link or ".."), and no existing file of another kind, or a
 * dataset, is replaced without --force. The end-to-end tests run the shipped binaries on a recording
 * made by teleop and check that every refused command left the inputs byte for byte as they were. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <hdf5.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ds.h"
#include "tk.h"
#include "tt.h"
#include "tt_cli.h"

TestSuite(output, .fini = tt_pool_free);

static void write_bytes(const char *path, const void *b, size_t n) {
  FILE *f = fopen(path, "wb");
  cr_assert(f, "create %s", path);
  cr_assert_eq(fwrite(b, 1, n, f), n);
  fclose(f);
}

/* tt_build keeps two paths at a time: the tests hold several */
static const char *bin(const char *rel) { return keep(strdup(tt_build(rel))); }

static const char *at(const char *dir, const char *name) {
  char *p = malloc(strlen(dir) + strlen(name) + 2);
  sprintf(p, "%s/%s", dir, name);
  return keep(p);
}

/* An HDF5 file that is not a dataset (as a policy or a checkpoint is). */
static void make_plain_h5(const char *path) {
  hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  cr_assert(f >= 0);
  hid_t g = H5Gcreate2(f, "weights", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Gclose(g);
  H5Fclose(f);
}

static void make_dataset(const char *path) {
  dsSynthOpts o;
  ds_synth_default(&o);
  o.demos = 2;
  o.steps = 10;
  dsSynthResult r;
  cr_assert_eq(ds_synth(path, &o, &r), 0, "%s", tk_errmsg());
}

Test(output, kinds_from_content_not_names) {
  const char *d = tt_tmpdir();
  cr_assert_eq(ds_file_kind(at(d, "none")), DS_KIND_NONE);
  write_bytes(at(d, "empty.h5"), "", 0);
  cr_assert_eq(ds_file_kind(at(d, "empty.h5")), DS_KIND_EMPTY);
  cr_assert_eq(ds_file_kind(d), DS_KIND_DIR);
  make_dataset(at(d, "data.png"));
  cr_assert_eq(ds_file_kind(at(d, "data.png")), DS_KIND_DATASET);
  make_plain_h5(at(d, "policy.csv"));
  cr_assert_eq(ds_file_kind(at(d, "policy.csv")), DS_KIND_HDF5);
  write_bytes(at(d, "image.h5"), "\x89PNG\r\n\x1a\nrest", 12);
  cr_assert_eq(ds_file_kind(at(d, "image.h5")), DS_KIND_PNG);
  write_bytes(at(d, "notes.h5"), "epoch,loss\n1,2\n", 15);
  cr_assert_eq(ds_file_kind(at(d, "notes.h5")), DS_KIND_TEXT);
  write_bytes(at(d, "input.bin"), "DKINPUT1 gamepad\0\0", 18);
  cr_assert_eq(ds_file_kind(at(d, "input.bin")), DS_KIND_INPUT);
  write_bytes(at(d, "blob"), "\x01\x00\x02\x03", 4);
  cr_assert_eq(ds_file_kind(at(d, "blob")), DS_KIND_OTHER);
  /* a damaged HDF5 file (the signature, then garbage) is of unknown kind: never replaced without force */
  write_bytes(at(d, "broken.h5"), "\x89HDF\r\n\x1a\n\xff\xff\xff\xff\xff\xff\xff\xff", 16);
  cr_assert_eq(ds_file_kind(at(d, "broken.h5")), DS_KIND_OTHER);
}

Test(output, an_input_is_never_an_output) {
  const char *d = tt_tmpdir();
  const char *data = at(d, "d.h5");
  make_dataset(data);
  mkdir(at(d, "sub"), 0755);
  cr_assert_eq(symlink("d.h5", at(d, "link.h5")), 0);
  cr_assert_eq(link(data, at(d, "hard.h5")), 0);
  const char *in[] = {data};
  const char *same[] = {data, at(d, "link.h5"), at(d, "hard.h5"), at(d, "sub/../d.h5"),
                        at(d, "./sub/.././d.h5")};
  for (int i = 0; i < (int)TK_ARRAY_LEN(same); i++)
    for (int force = 0; force < 2; force++) { /* --force never lets an input be replaced */
      int rc = ds_output_check(same[i], DS_KIND_HDF5, in, 1, force);
      cr_assert_neq(rc, 0, "%s was accepted as an output over the input %s", same[i], data);
      cr_assert(strstr(tk_errmsg(), "is the input"), "%s", tk_errmsg());
    }
  /* NULL inputs (an option not given) are skipped */
  const char *in2[] = {NULL, data};
  cr_assert_neq(ds_output_check(at(d, "link.h5"), DS_KIND_DATASET, in2, 2, 1), 0);
  cr_assert_eq(ds_output_check(at(d, "new.h5"), DS_KIND_HDF5, in2, 2, 0), 0, "%s", tk_errmsg());
}

Test(output, kinds_and_force) {
  const char *d = tt_tmpdir();
  make_dataset(at(d, "demos.h5"));
  make_plain_h5(at(d, "p.h5"));
  write_bytes(at(d, "a.png"), "\x89PNG\r\n\x1a\nrest", 12);
  write_bytes(at(d, "m.csv"), "a,b\n", 4);
  struct {
    const char *name;
    dsKind writes;
    int ok_without_force;
  } cases[] = {
      {"p.h5", DS_KIND_HDF5, 1},        /* a policy over a policy: retraining */
      {"a.png", DS_KIND_PNG, 1},        /* a PNG over a PNG */
      {"m.csv", DS_KIND_TEXT, 1},       /* metrics over metrics */
      {"demos.h5", DS_KIND_HDF5, 0},    /* a policy over a dataset */
      {"demos.h5", DS_KIND_PNG, 0},     /* a PNG over a dataset */
      {"demos.h5", DS_KIND_DATASET, 0}, /* a dataset over another dataset */
      {"p.h5", DS_KIND_PNG, 0},         /* a PNG over a policy */
      {"a.png", DS_KIND_HDF5, 0},       /* a policy over a PNG */
      {"m.csv", DS_KIND_PNG, 0},
  };
  for (int i = 0; i < (int)TK_ARRAY_LEN(cases); i++) {
    int rc = ds_output_check(at(d, cases[i].name), cases[i].writes, NULL, 0, 0);
    cr_assert_eq(rc == 0, cases[i].ok_without_force, "case %d (%s as %s): rc %d: %s", i, cases[i].name,
                 ds_kind_name(cases[i].writes), rc, tk_errmsg());
    if (rc)
      cr_assert(strstr(tk_errmsg(), "--force"), "case %d: the message names --force: %s", i, tk_errmsg());
    cr_assert_eq(ds_output_check(at(d, cases[i].name), cases[i].writes, NULL, 0, 1), 0, "case %d with force",
                 i);
  }
  cr_assert_neq(ds_output_check(d, DS_KIND_PNG, NULL, 0, 1), 0, "a directory is never replaced by a file");
}

/* ---- end to end: the shipped binaries --------------------------------------------------------------- */
typedef struct {
  const char *dir, *data, *policy;
  char *data_bytes, *policy_bytes;
  size_t data_n, policy_n;
} fixture;

static void setup(fixture *fx) {
  fx->dir = keep(strdup(tt_tmpdir()));
  fx->data = at(fx->dir, "d.h5");
  fx->policy = at(fx->dir, "p.h5");
  tt_record(fx->data, "reach", 3, 0, 0, NULL);
  char *out, *err;
  int rc = run2(fx->dir, &out, &err, "%s %s -o %s --epochs 1 --eval-every 0 --hidden 8 --quiet",
                tt_build("bc/bc-train"), fx->data, fx->policy);
  cr_assert_eq(rc, 0, "bc-train: %s", err);
  fx->data_bytes = slurp(fx->data, &fx->data_n);
  fx->policy_bytes = slurp(fx->policy, &fx->policy_n);
}

static void unchanged(const fixture *fx, const char *what) {
  size_t n = 0;
  char *b = slurp(fx->data, &n);
  cr_assert(b && n == fx->data_n && !memcmp(b, fx->data_bytes, n), "%s changed the dataset", what);
  b = slurp(fx->policy, &n);
  cr_assert(b && n == fx->policy_n && !memcmp(b, fx->policy_bytes, n), "%s changed the policy", what);
  struct stat st;
  cr_assert(!lstat(fx->data, &st) && S_ISREG(st.st_mode), "%s replaced the dataset's file", what);
}

/* Run a command that must be refused with exit 1, a one-line message naming wants, and nothing changed. */
static void refused(const fixture *fx, const char *wants, const char *cmd) {
  char *out, *err;
  int rc = run2(fx->dir, &out, &err, "cd %s && %s", fx->dir, cmd);
  cr_assert_eq(rc, 1, "%s -> exit %d (want 1)\nstdout: %s\nstderr: %s", cmd, rc, out, err);
  cr_assert(strstr(err, wants), "%s: the message does not say '%s': %s", cmd, wants, err);
  cr_assert_eq(count_lines(err), 1, "%s: one line, got: %s", cmd, err);
  unchanged(fx, cmd);
}

Test(output, no_tool_writes_over_its_inputs, .timeout = 300) {
  fixture fx;
  setup(&fx);
  const char *train = bin("bc/bc-train"), *eval = bin("bc/bc-eval"), *rl = bin("rl_finetune/rl-finetune"),
             *viewer = bin("viewer/viewer"), *teleop = bin("teleop/teleop");
  cr_assert_eq(symlink("d.h5", at(fx.dir, "link.h5")), 0);
  cr_assert_eq(symlink("p.h5", at(fx.dir, "plink.h5")), 0);
  mkdir(at(fx.dir, "sub"), 0755);
  char cmd[8192];
  const char *as_data[] = {"d.h5", "link.h5", "sub/../d.h5", "./d.h5"};
  for (int i = 0; i < 4; i++) {
    snprintf(cmd, sizeof cmd, "%s d.h5 -o %s --epochs 1 --eval-every 0 --hidden 8 --quiet --force", train,
             as_data[i]);
    refused(&fx, "is the input", cmd);
    snprintf(cmd, sizeof cmd, "%s --policy p.h5 --demos d.h5 --out %s --steps 100 --quiet --force", rl,
             as_data[i]);
    refused(&fx, "is the input", cmd);
    snprintf(cmd, sizeof cmd, "%s d.h5 --export %s --force", viewer, as_data[i]);
    refused(&fx, "is the input", cmd);
    snprintf(cmd, sizeof cmd, "%s p.h5 --episodes 1 --save %s --quiet --force", eval,
             i ? "plink.h5" : "p.h5");
    refused(&fx, "is the input", cmd);
    snprintf(cmd, sizeof cmd,
             "%s --task reach --device scripted --headless --episodes 1 --fast --quiet --out d.h5 "
             "--record-input %s "
             "--force",
             teleop, as_data[i]);
    refused(&fx, "is the input", cmd);
  }
  /* the starting policy is an input of rl-finetune too, and the metrics are outputs */
  snprintf(cmd, sizeof cmd, "%s --policy p.h5 --demos d.h5 --out plink.h5 --steps 100 --quiet", rl);
  refused(&fx, "is the input", cmd);
  snprintf(cmd, sizeof cmd, "%s --policy p.h5 --demos d.h5 --out ft.h5 --metrics link.h5 --steps 100 --quiet",
           rl);
  refused(&fx, "is the input", cmd);
  snprintf(cmd, sizeof cmd, "%s d.h5 -o q.h5 --metrics sub/../d --epochs 1 --eval-every 0 --quiet", train);
  cr_assert_eq(tt_run(NULL, "cd %s && cp d.h5 d.csv", fx.dir),
               0); /* a dataset under the metrics CSV's name */
  refused(&fx, "--force", cmd);
  cr_assert(access(at(fx.dir, "q.h5"), F_OK), "a refused bc-train wrote its policy");
}

Test(output, another_kind_needs_force, .timeout = 300) {
  fixture fx;
  setup(&fx);
  const char *train = bin("bc/bc-train"), *eval = bin("bc/bc-eval"), *viewer = bin("viewer/viewer"),
             *teleop = bin("teleop/teleop");
  /* a second dataset, not an input of the command: still never replaced by a policy, a PNG or rollouts */
  char cmd[8192];
  snprintf(cmd, sizeof cmd, "cp d.h5 other.h5");
  cr_assert_eq(tt_run(NULL, "cd %s && %s", fx.dir, cmd), 0);
  size_t n0 = 0;
  char *other = slurp(at(fx.dir, "other.h5"), &n0);
  snprintf(cmd, sizeof cmd, "%s d.h5 -o other.h5 --epochs 1 --eval-every 0 --hidden 8 --quiet", train);
  refused(&fx, "--force", cmd);
  snprintf(cmd, sizeof cmd, "%s d.h5 --export other.h5", viewer);
  refused(&fx, "--force", cmd);
  snprintf(cmd, sizeof cmd, "%s p.h5 --episodes 1 --save other.h5 --quiet", eval);
  refused(&fx, "--force", cmd);
  snprintf(cmd, sizeof cmd,
           "%s --task reach --device scripted --headless --episodes 1 --fast --quiet --out p.h5", teleop);
  refused(&fx, "not a dataset", cmd);
  size_t n1 = 0;
  char *now = slurp(at(fx.dir, "other.h5"), &n1);
  cr_assert(n0 == n1 && !memcmp(other, now, n0), "a refused command changed other.h5");
  /* bc-eval --save --force replaces the file with the rollouts alone: never appended to the demos */
  char *out, *err;
  int rc =
      run2(fx.dir, &out, &err, "cd %s && %s p.h5 --episodes 2 --save other.h5 --quiet --force", fx.dir, eval);
  cr_assert_eq(rc, 0, "%s", err);
  dsFile *f;
  cr_assert_eq(ds_open(at(fx.dir, "other.h5"), 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(f), 2, "--save --force: %d demos, want the 2 rollouts alone", ds_num_demos(f));
  ds_close(f);
  /* a PNG over a PNG needs no force; over the policy it does */
  rc = run2(fx.dir, &out, &err, "cd %s && %s d.h5 --export a.png && %s d.h5 --export a.png", fx.dir, viewer,
            viewer);
  cr_assert_eq(rc, 0, "%s", err);
  png_ok(at(fx.dir, "a.png"));
  snprintf(cmd, sizeof cmd, "%s d.h5 --export p.h5", viewer);
  refused(&fx, "--force", cmd);
}

Test(output, temp_names_are_ours_alone, .timeout = 300) {
  fixture fx;
  setup(&fx);
  /* a user's own files named like the temp files tools used to make */
  const char *mine[] = {"q.h5.tmp", "a.png.tmp", "r.h5.tmp", "q.csv.tmp", "q_loss.png.tmp"};
  for (int i = 0; i < 5; i++)
    write_bytes(at(fx.dir, mine[i]), "mine\n", 5);
  char *out, *err;
  int rc = run2(
      fx.dir, &out, &err,
      "cd %s && %s d.h5 -o q.h5 --epochs 1 --eval-every 0 --hidden 8 --quiet && %s d.h5 --export a.png && "
      "%s q.h5 --episodes 1 --save r.h5 --quiet",
      fx.dir, bin("bc/bc-train"), bin("viewer/viewer"), bin("bc/bc-eval"));
  cr_assert_eq(rc, 0, "%s", err);
  for (int i = 0; i < 5; i++) {
    size_t n;
    char *b = slurp(at(fx.dir, mine[i]), &n);
    cr_assert(b && n == 5 && !memcmp(b, "mine\n", 5), "%s was touched", mine[i]);
  }
  /* and no temp file of ours is left behind */
  rc = tt_run(&out, "ls -a %s | grep -c demokit-tmp", fx.dir);
  keep(out);
  cr_assert(out && atoi(out) == 0, "temp files left: %s", out);
}

Test(output, recording_through_a_symlink_appends_to_its_target, .timeout = 120) {
  const char *d = tt_tmpdir();
  const char *real = at(d, "real.h5"), *link_path = at(d, "link.h5");
  tt_record(real, "reach", 2, 0, 0, NULL);
  cr_assert_eq(symlink("real.h5", link_path), 0);
  tt_record(link_path, "reach", 1, 0, 5, NULL);
  struct stat st;
  cr_assert(!lstat(link_path, &st) && S_ISLNK(st.st_mode), "the link was replaced by a file");
  dsFile *f;
  cr_assert_eq(ds_open(real, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(f), 3, "the target has %d demos, want 2 + 1", ds_num_demos(f));
  ds_close(f);
}
