/* Writer: round trip, numbering, outcomes, appends, refusals, locking, write errors. */
#include <criterion/criterion.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "gen.h"
#include "tt.h"

static char *path_in(const char *dir, const char *name) {
  static _Thread_local char buf[4][4200];
  static _Thread_local int k;
  k = (k + 1) % 4;
  snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
  return buf[k];
}

static void record(dsWriter *w, int64_t want_index, int px, dsOutcome out) {
  int64_t idx = -1;
  dsEpisodeInfo info = {
      .task = "gen_task", .seed = 11, .operator_name = "tester", .device = "scripted", .control_hz = 20};
  cr_assert_eq(ds_writer_begin(w, &info, &idx), 0, "%s", tk_errmsg());
  cr_assert_eq(idx, want_index);
  cr_assert_eq(gen_record(w, idx, px, out), 0, "%s", tk_errmsg());
}

static void verify_all(const char *p, int px, int expect_demos) {
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(f), expect_demos);
  char msg[256];
  for (int i = 0; i < ds_num_demos(f); i++)
    cr_assert_eq(gen_verify(f, i, px, msg, sizeof msg), 0, "%s", msg);
  ds_close(f);
}

static int64_t commits[64];
static int ncommits;
static void on_commit(int64_t idx, dsOutcome o, int64_t n, void *u) {
  (void)o;
  (void)n;
  (void)u;
  commits[ncommits++] = idx;
}

Test(writer, round_trip_outcomes_and_discard) {
  const char *p = path_in(tt_tmpdir(), "d.h5");
  dsWriterOpts o;
  genOpts g = {.image_px = 16, .publish_ratio = 0.125};
  gen_schema(&o, &g);
  o.on_commit = on_commit;
  ncommits = 0;
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  record(w, 0, 16, DS_SUCCESS);
  record(w, 1, 16, DS_FAILURE);
  record(w, 2, 16, DS_DISCARD); /* never written; its index is reused */
  record(w, 2, 16, DS_SUCCESS);
  cr_assert_eq(ds_writer_sync(w), 0);
  cr_assert_eq(ds_writer_committed(w), 3);
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  cr_assert_eq(ncommits, 3);
  cr_assert_eq(commits[2], 2);
  verify_all(p, 16, 3);
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0);
  cr_assert_eq(ds_demo(f, 0)->success, 1);
  cr_assert_eq(ds_demo(f, 1)->success, 0);
  cr_assert_str_eq(ds_demo(f, 1)->operator_name, "tester");
  cr_assert_str_eq(ds_demo(f, 1)->device, "scripted");
  cr_assert_float_eq(ds_demo(f, 1)->control_hz, 20.0, 1e-12);
  cr_assert_eq(ds_demo(f, 1)->seed, 11);
  cr_assert(ds_is_native(f));
  cr_assert_str_eq(ds_env_name(f), "gen_task");
  cr_assert_eq(ds_total_samples(f), gen_len(0) + gen_len(1) + gen_len(2));
  ds_close(f);
  struct stat st;
  cr_assert_neq(stat(path_in(tt_tmpdir(), "x"), &st), 0);
  char sd[4300];
  snprintf(sd, sizeof sd, "%s.staging", p);
  cr_assert_neq(stat(sd, &st), 0, "a clean close leaves no staging folder");
}

Test(writer, publishes_every_episode_when_ratio_zero) {
  const char *p = path_in(tt_tmpdir(), "d.h5");
  dsWriterOpts o;
  genOpts g = {.image_px = 0, .publish_ratio = 0};
  gen_schema(&o, &g);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  for (int i = 0; i < 3; i++) {
    record(w, i, 0, DS_SUCCESS);
    cr_assert_eq(ds_writer_sync(w), 0);
    /* while the writer is still open, the main file already holds every committed episode */
    verify_all(p, 0, i + 1);
  }
  cr_assert_eq(ds_writer_close(w), 0);
}

Test(writer, append_continues_numbering) {
  const char *p = path_in(tt_tmpdir(), "d.h5");
  dsWriterOpts o;
  gen_schema(&o, NULL);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0);
  record(w, 0, 0, DS_SUCCESS);
  record(w, 1, 0, DS_SUCCESS);
  cr_assert_eq(ds_writer_close(w), 0);
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_writer_next_index(w), 2);
  record(w, 2, 0, DS_FAILURE);
  cr_assert_eq(ds_writer_close(w), 0);
  verify_all(p, 0, 3);
}

Test(writer, refuses_other_task_and_schema) {
  const char *p = path_in(tt_tmpdir(), "d.h5");
  dsWriterOpts o;
  gen_schema(&o, NULL);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0);
  record(w, 0, 0, DS_SUCCESS);
  cr_assert_eq(ds_writer_close(w), 0);

  dsWriterOpts o2 = o;
  o2.env_name = "other_task";
  cr_assert_neq(ds_writer_open(p, &o2, &w), 0);
  cr_assert(strstr(tk_errmsg(), "gen_task") && strstr(tk_errmsg(), "other_task"), "%s", tk_errmsg());

  dsWriterOpts o3 = o;
  int64_t four[1] = {4};
  ds_schema_add(&o3.schema, "extra", DS_F64, 1, four);
  cr_assert_neq(ds_writer_open(p, &o3, &w), 0);
  cr_assert(strstr(tk_errmsg(), "extra"), "%s", tk_errmsg());

  dsWriterOpts o4 = o;
  o4.schema.action_dim = 6;
  cr_assert_neq(ds_writer_open(p, &o4, &w), 0);
  cr_assert(strstr(tk_errmsg(), "action size"), "%s", tk_errmsg());
  verify_all(p, 0, 1);
}

Test(writer, refuses_bad_steps_and_keeps_going) {
  const char *p = path_in(tt_tmpdir(), "d.h5");
  dsWriterOpts o;
  gen_schema(&o, NULL);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0);
  int64_t idx;
  cr_assert_eq(ds_writer_begin(w, NULL, &idx), TK_EINVAL, "no control rate, no episode");
  cr_assert(strstr(tk_errmsg(), "control_hz"), "%s", tk_errmsg());
  cr_assert_eq(ds_writer_begin(w, &gen_info, &idx), 0);
  double act[GEN_A] = {0}, st[GEN_S] = {0}, pos[3] = {0};
  dsStep s = {.action = act, .state = st};
  s.obs[0] = pos;
  act[2] = NAN;
  cr_assert_eq(ds_writer_add_step(w, &s), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "action[2]"), "%s", tk_errmsg());
  act[2] = 1.5;
  cr_assert_eq(ds_writer_add_step(w, &s), TK_ERANGE);
  act[2] = 0.5;
  s.obs[0] = NULL;
  cr_assert_eq(ds_writer_add_step(w, &s), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "robot0_eef_pos"), "%s", tk_errmsg());
  s.obs[0] = pos;
  cr_assert_eq(ds_writer_add_step(w, &s), 0);
  cr_assert_eq(ds_writer_end(w, DS_SUCCESS, NULL, 0), 0);
  /* an episode with no steps is not recorded */
  cr_assert_eq(ds_writer_begin(w, &gen_info, &idx), 0);
  cr_assert_eq(idx, 1);
  cr_assert_eq(ds_writer_end(w, DS_SUCCESS, NULL, 0), 0);
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(f), 1);
  cr_assert_eq(ds_demo(f, 0)->num_samples, 1);
  ds_close(f);
}

Test(writer, second_writer_is_refused) {
  const char *p = path_in(tt_tmpdir(), "d.h5");
  dsWriterOpts o;
  gen_schema(&o, NULL);
  dsWriter *w, *w2;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0);
  cr_assert_eq(ds_writer_open(p, &o, &w2), TK_EBUSY);
  cr_assert(strstr(tk_errmsg(), "another process"), "%s", tk_errmsg());
  record(w, 0, 0, DS_SUCCESS);
  cr_assert_eq(ds_writer_close(w), 0);
  verify_all(p, 0, 1);
}

Test(writer, bad_options_are_refused) {
  dsWriterOpts o;
  gen_schema(&o, NULL);
  dsWriter *w;
  o.env_name = "bad name/with slash";
  cr_assert_eq(ds_writer_open("/tmp/never.h5", &o, &w), TK_EINVAL);
  cr_assert(strstr(tk_errmsg(), "task name"), "%s", tk_errmsg());
  gen_schema(&o, NULL);
  o.schema.action_dim = 0;
  cr_assert_eq(ds_writer_open("/tmp/never.h5", &o, &w), TK_EINVAL);
  cr_assert_eq(ds_writer_close(NULL), 0);
}

/* A write error (here: the file size limit) is reported with the file's name, and every
 * episode committed before it stays intact. */
Test(writer, file_size_limit_names_file_and_keeps_earlier_episodes) {
  const char *d = tt_tmpdir();
  const char *p = path_in(d, "d.h5");
  int fds[2];
  cr_assert_eq(pipe(fds), 0);
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    dsWriterOpts o;
    genOpts g = {.image_px = 64, .publish_ratio = -1};
    gen_schema(&o, &g);
    dsWriter *w;
    if (ds_writer_open(p, &o, &w)) _exit(10);
    int64_t idx;
    if (ds_writer_begin(w, &gen_info, &idx) || gen_record(w, idx, 64, DS_SUCCESS) || ds_writer_publish(w)) {
      const char *m = tk_errmsg();
      if (write(fds[1], m, strlen(m)) < 0) _exit(12);
      _exit(11);
    }
    struct stat st;
    stat(p, &st);
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {(rlim_t)st.st_size + 100000, (rlim_t)st.st_size + 100000};
    setrlimit(RLIMIT_FSIZE, &rl);
    int rc = 0;
    for (int i = 0; i < 20 && !rc; i++) {
      rc = ds_writer_begin(w, &gen_info, &idx);
      if (!rc) rc = gen_record(w, idx, 64, DS_SUCCESS);
      if (!rc) rc = ds_writer_sync(w);
    }
    if (!rc)
      rc = ds_writer_close(w);
    else
      ds_writer_close(w);
    const char *m = tk_errmsg();
    if (write(fds[1], m, strlen(m)) < 0) _exit(12);
    _exit(rc ? 0 : 13);
  }
  close(fds[1]);
  char msg[2048] = {0};
  ssize_t n = read(fds[0], msg, sizeof msg - 1);
  (void)n;
  close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d, message: %s", status, msg);
  printf("write error reported: %s\n", msg);
  cr_assert(strstr(msg, ".h5"), "the message names the file: %s", msg);
  /* whatever committed is intact: recover publishes it, the rest is absent, never half */
  int pub = 0, drop = 0, rej = 0;
  cr_assert_eq(ds_recover(p, &pub, &drop, &rej), 0, "%s", tk_errmsg());
  cr_assert_eq(rej, 0, "nothing set aside");
  dsFile *f;
  cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
  cr_assert_geq(ds_num_demos(f), 1);
  char why[256];
  for (int i = 0; i < ds_num_demos(f); i++)
    cr_assert_eq(gen_verify(f, i, 64, why, sizeof why), 0, "%s", why);
  ds_close(f);
}

/* A full disk (a real 3 MB tmpfs): the error names the file, and everything committed
 * before it stays intact: the main file opens, and each staged episode is a whole dataset. */
static char tfs[4200];
static void umount_tfs(void) {
  if (tfs[0]) {
    char cmd[4300];
    snprintf(cmd, sizeof cmd, "umount %s", tfs);
    if (system(cmd)) fprintf(stderr, "could not unmount %s\n", tfs);
  }
}

Test(writer, disk_full_names_file_and_keeps_committed, .fini = umount_tfs) {
  snprintf(tfs, sizeof tfs, "%s", tt_tmpdir());
  char *out = NULL;
  int rc = tt_run(&out, "mount -t tmpfs -o size=3m tmpfs %s", tfs);
  cr_assert_eq(rc, 0, "this test needs root to mount a small tmpfs: %s", out);
  free(out);
  const char *p = path_in(tfs, "d.h5");
  dsWriterOpts o;
  genOpts g = {.image_px = 64, .publish_ratio = 1.0};
  gen_schema(&o, &g);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  int64_t idx;
  rc = 0;
  int episodes = 0;
  for (int i = 0; i < 200 && !rc; i++) {
    rc = ds_writer_begin(w, &gen_info, &idx);
    if (!rc) rc = gen_record(w, idx, 64, DS_SUCCESS);
    if (!rc) rc = ds_writer_sync(w);
    if (!rc) episodes++;
  }
  char msg[2048];
  snprintf(msg, sizeof msg, "%s", tk_errmsg());
  int64_t committed = ds_writer_committed(w);
  ds_writer_close(w);
  printf("disk full after %d episodes (%lld committed): %s\n", episodes, (long long)committed, msg);
  cr_assert_neq(rc, 0, "a 3 MB disk never filled up");
  cr_assert(strstr(msg, tfs), "the message names the file: %s", msg);
  cr_assert_gt(committed, 0);
  /* the main file, if published, is whole; staged episodes are whole one-demo datasets */
  int seen = 0;
  char why[256];
  if (tk_file_exists(p)) {
    dsFile *f;
    cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
    for (int i = 0; i < ds_num_demos(f); i++)
      cr_assert_eq(gen_verify(f, i, 64, why, sizeof why), 0, "%s", why);
    seen += ds_num_demos(f);
    ds_close(f);
  }
  for (int64_t k = 0; k < committed + 2; k++) {
    char sp[4400];
    snprintf(sp, sizeof sp, "%s.staging/demo_%lld.h5", p, (long long)k);
    if (!tk_file_exists(sp)) continue;
    dsFile *f;
    cr_assert_eq(ds_open(sp, 0, &f), 0, "%s", tk_errmsg());
    cr_assert_eq(gen_verify(f, 0, 64, why, sizeof why), 0, "%s", why);
    ds_close(f);
    seen++;
  }
  cr_assert_geq(seen, committed, "every committed episode is either in the main file or staged");
}

/* Names that do not fit are refused, never cut: two task names that differ after byte 63 must not
 * become one, and an operator's long name is not stored shortened. */
Test(writer, long_names_are_refused_not_cut) {
  const char *p = path_in(tt_tmpdir(), "d.h5");
  char longname[80];
  memset(longname, 'a', 70);
  longname[70] = 0;
  dsWriterOpts o;
  gen_schema(&o, NULL);
  o.env_name = longname;
  dsWriter *w;
  cr_assert_neq(ds_writer_open(p, &o, &w), 0, "a 70-byte task name was accepted");
  cr_assert(strstr(tk_errmsg(), "task name"), "%s", tk_errmsg());
  gen_schema(&o, NULL);
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  int64_t idx;
  dsEpisodeInfo info = {
      .task = "gen_task", .operator_name = longname, .device = "scripted", .control_hz = 20};
  cr_assert_neq(ds_writer_begin(w, &info, &idx), 0, "a 70-byte operator name was accepted");
  cr_assert(strstr(tk_errmsg(), "operator"), "%s", tk_errmsg());
  record(w, 0, 0, DS_SUCCESS); /* the writer goes on: nothing was started */
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  verify_all(p, 0, 1);
}

/* A committed episode file as a crash leaves it: <scratch>.staging/demo_<index>.h5 holding episode
 * `content` of the generator (image_px 0: the usual schema; else one with a camera), copied to dst. */
static void stage_episode(const char *dir, int64_t index, int64_t content, int px, const char *dst) {
  char scratch[4200], staged[4400];
  static int made;
  snprintf(scratch, sizeof scratch, "%s/scratch_%d.h5", dir, made++);
  dsWriterOpts o;
  genOpts g = {.image_px = px, .publish_ratio = -1};
  gen_schema(&o, &g);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(scratch, &o, &w), 0, "%s", tk_errmsg());
  for (int64_t i = 0; i <= index; i++) {
    int64_t idx;
    dsEpisodeInfo info = {
        .task = "gen_task", .seed = 11, .operator_name = "tester", .device = "scripted", .control_hz = 20};
    cr_assert_eq(ds_writer_begin(w, &info, &idx), 0, "%s", tk_errmsg());
    cr_assert_eq(gen_record(w, i == index ? content : i, px, DS_SUCCESS), 0, "%s", tk_errmsg());
  }
  cr_assert_eq(ds_writer_sync(w), 0, "%s", tk_errmsg());
  snprintf(staged, sizeof staged, "%s.staging/demo_%lld.h5", scratch, (long long)index);
  cr_assert_eq(tk_copy_file(staged, dst), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
}

/* Recovery publishes only what belongs: a staged episode of another schema, or one that cannot be
 * read, is moved to <path>.rejected/ (never deleted); a staged demo_<i> that clashes with another
 * episode of that name is published under the next free index (after every name in the file and in
 * the staging folder); a copy of an episode the file holds
 * (a crash between publish and cleanup) is dropped. */
Test(writer, recover_sets_aside_what_does_not_belong_and_renumbers_clashes) {
  const char *dir = tt_tmpdir();
  char p[4200], sdir[4300], rdir[4300], dst[4400];
  snprintf(p, sizeof p, "%s/d.h5", dir);
  snprintf(sdir, sizeof sdir, "%s.staging", p);
  snprintf(rdir, sizeof rdir, "%s.rejected", p);
  dsWriterOpts o;
  gen_schema(&o, NULL);
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  for (int i = 0; i < 3; i++)
    record(w, i, 0, DS_SUCCESS);
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  cr_assert_eq(mkdir(sdir, 0755), 0);
  snprintf(dst, sizeof dst, "%s/demo_3.h5", sdir);
  stage_episode(dir, 3, 3, 0, dst); /* belongs: published as demo_3 */
  snprintf(dst, sizeof dst, "%s/demo_4.h5", sdir);
  stage_episode(dir, 4, 4, 8, dst); /* another schema (a camera): set aside */
  snprintf(dst, sizeof dst, "%s/demo_1.h5", sdir);
  stage_episode(dir, 1, 9, 0, dst); /* another episode named demo_1: published as demo_7 */
  snprintf(dst, sizeof dst, "%s/demo_2.h5", sdir);
  stage_episode(dir, 2, 2, 0, dst); /* the file's own demo_2 again: dropped */
  snprintf(dst, sizeof dst, "%s/demo_6.h5", sdir);
  FILE *f = fopen(dst, "w"); /* committed but unreadable: set aside */
  fputs("not an episode", f);
  fclose(f);
  int pub = -1, drop = -1, rej = -1;
  cr_assert_eq(ds_recover(p, &pub, &drop, &rej), 0, "%s", tk_errmsg());
  cr_assert_eq(pub, 2, "published %d", pub);
  cr_assert_eq(rej, 2, "set aside %d", rej);
  dsFile *df;
  cr_assert_eq(ds_open(p, 0, &df), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_num_demos(df), 5);
  const char *want[5] = {"demo_0", "demo_1", "demo_2", "demo_3", "demo_7"}; /* after every staged name */
  char msg[256];
  for (int i = 0; i < 5; i++) {
    cr_assert_str_eq(ds_demo(df, i)->name, want[i]);
    if (i < 4) cr_assert_eq(gen_verify(df, i, 0, msg, sizeof msg), 0, "%s", msg);
  }
  /* demo_7 is the clashing episode (generator episode 9), whole */
  dsEpisode e;
  cr_assert_eq(ds_read_episode(df, 4, &e), 0, "%s", tk_errmsg());
  cr_assert_eq(e.num_samples, gen_len(9));
  for (int64_t t = 0; t < e.num_samples; t++)
    cr_assert_eq(e.actions[t * GEN_A], gen_action(9, t, 0));
  ds_episode_free(&e);
  ds_close(df);
  snprintf(dst, sizeof dst, "%s/demo_4.h5", rdir);
  cr_assert(tk_file_exists(dst), "the other schema's episode is kept in %s", rdir);
  dsFile *rf;
  cr_assert_eq(ds_open(dst, 0, &rf), 0, "set aside whole: %s", tk_errmsg());
  ds_close(rf);
  snprintf(dst, sizeof dst, "%s/demo_6.h5", rdir);
  cr_assert(tk_file_exists(dst));
  cr_assert(!tk_file_exists(sdir), "the staging folder is gone once everything is handled");
  /* a second session: the writer's own recovery does the same, and numbering goes on after demo_7 */
  cr_assert_eq(mkdir(sdir, 0755), 0);
  snprintf(dst, sizeof dst, "%s/demo_4.h5", sdir);
  stage_episode(dir, 4, 4, 8, dst);
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_writer_next_index(w), 8);
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  snprintf(dst, sizeof dst, "%s/demo_4.1.h5", rdir);
  cr_assert(tk_file_exists(dst), "a second set-aside episode of the same name does not replace the first");
}

/* Names are stored whole or refused, never cut (two that differ past byte 63 would become one);
 * an end reason of any length is stored whole. */
Test(writer, long_names_are_refused_and_reasons_kept_whole) {
  const char *d = tt_tmpdir();
  char long_name[80], reason[400];
  memset(long_name, 'k', sizeof long_name - 1);
  long_name[sizeof long_name - 1] = 0;
  dsSchema s = {0};
  int64_t three[1] = {3};
  cr_assert_eq(ds_schema_add(&s, long_name, DS_F64, 1, three), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "observation key") && strstr(tk_errmsg(), "longer than 63"), "%s",
            tk_errmsg());
  cr_assert_eq(s.nkeys, 0);
  dsWriterOpts o;
  gen_schema(&o, NULL);
  dsWriter *w;
  const char *p = path_in(d, "n.h5");
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  dsEpisodeInfo info = gen_info;
  int64_t idx;
  info.task = long_name;
  cr_assert_eq(ds_writer_begin(w, &info, &idx), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), p) && strstr(tk_errmsg(), "task"), "%s", tk_errmsg());
  info = gen_info;
  info.operator_name = long_name;
  cr_assert_eq(ds_writer_begin(w, &info, &idx), TK_ERANGE);
  cr_assert(strstr(tk_errmsg(), "operator"), "%s", tk_errmsg());
  /* nothing was begun: a good episode still records as demo_0, with a long end reason whole */
  cr_assert_eq(ds_writer_begin(w, &gen_info, &idx), 0, "%s", tk_errmsg());
  cr_assert_eq(idx, 0);
  double act[GEN_A] = {0}, st[GEN_S] = {0}, pos[3] = {0};
  const void *obs[1] = {pos};
  dsStep step = {.obs = {pos}, .action = act, .state = st};
  for (int t = 0; t < 3; t++)
    cr_assert_eq(ds_writer_add_step(w, &step), 0, "%s", tk_errmsg());
  for (size_t i = 0; i + 1 < sizeof reason; i++)
    reason[i] = (char)('a' + i % 26);
  reason[sizeof reason - 1] = 0;
  cr_assert_eq(ds_writer_end_why(w, DS_FAILURE, obs, 0, reason), 0, "%s", tk_errmsg());
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  char *out = NULL;
  int rc = tt_run(&out,
                  "/usr/bin/python3 -c \"import h5py; "
                  "print(len(h5py.File('%s','r')['data/demo_0'].attrs['end_reason']))\"",
                  p);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert_eq(atoi(out), (int)sizeof reason - 1, "end_reason stored with %s characters", out);
  free(out);
}

/* Appending holds the same rule as merging (ds_compatible): episodes at another control rate or under
 * other env_kwargs (a controller, a camera list) never join a file. */
Test(writer, appends_at_another_rate_or_env_are_refused) {
  const char *p = path_in(tt_tmpdir(), "d.h5");
  dsWriterOpts o;
  gen_schema(&o, NULL);
  o.env_kwargs_json = "{\"control_hz\": 20}";
  dsWriter *w;
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  record(w, 0, 0, DS_SUCCESS);
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  dsWriterOpts o2 = o;
  o2.env_kwargs_json = "{\"control_hz\": 5}";
  cr_assert_neq(ds_writer_open(p, &o2, &w), 0, "other env_kwargs were appended");
  cr_assert(strstr(tk_errmsg(), "env_kwargs"), "%s", tk_errmsg());
  /* the same env_kwargs, but an episode at another nominal rate */
  cr_assert_eq(ds_writer_open(p, &o, &w), 0, "%s", tk_errmsg());
  int64_t idx;
  dsEpisodeInfo info = {.task = "gen_task", .operator_name = "t", .device = "scripted", .control_hz = 5};
  cr_assert_neq(ds_writer_begin(w, &info, &idx), 0, "a 5 Hz episode joined a 20 Hz file");
  cr_assert(strstr(tk_errmsg(), "20 Hz") && strstr(tk_errmsg(), "5 Hz"), "%s", tk_errmsg());
  record(w, 1, 0, DS_SUCCESS);
  cr_assert_eq(ds_writer_close(w), 0, "%s", tk_errmsg());
  verify_all(p, 0, 2);
}
