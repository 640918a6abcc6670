/* Crash safety: a child records episodes into one dataset and is SIGKILLed at random
 * instants, again and again on the same file. After every kill the file opens and every
 * episode in it is intact; after recovery every episode the writer reported committed is
 * there, bit for bit. DK_CRASH_ITERS sets the number of kills per test (default 20);
 * tests/dataset/crash_soak.sh runs 100+. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <time.h>

#include "gen.h"
#include "tt.h"

static void report_commit(int64_t idx, dsOutcome o, int64_t n, void *user) {
  (void)o;
  (void)n;
  int fd = *(int *)user;
  if (write(fd, &idx, sizeof idx) != sizeof idx) _exit(5);
}

static void child(const char *p, int px, double ratio, int fd) {
  dsWriterOpts o;
  genOpts g = {.image_px = px, .publish_ratio = ratio};
  gen_schema(&o, &g);
  o.on_commit = report_commit;
  o.user = &fd;
  dsWriter *w;
  if (ds_writer_open(p, &o, &w)) {
    fprintf(stderr, "child: %s\n", tk_errmsg());
    _exit(3);
  }
  int64_t ended = 0;
  dsEpisodeInfo info = {.task = "gen_task", .operator_name = "crash", .device = "scripted", .control_hz = 20};
  for (int64_t k = 0;; k++) {
    int64_t idx;
    info.seed = k;
    if (ds_writer_begin(w, &info, &idx)) _exit(4);
    /* discarded episodes give their index back, so choose outcomes by count, not index */
    dsOutcome out = k % 5 == 4 ? DS_DISCARD : k % 4 == 3 ? DS_FAILURE : DS_SUCCESS;
    if (gen_record(w, idx, px, out)) {
      fprintf(stderr, "child: %s\n", tk_errmsg());
      _exit(4);
    }
    /* a teleop loop is paced; keep the backlog as short as a fast operator's would be */
    if (out != DS_DISCARD) ended++;
    while (ds_writer_committed(w) + 2 < ended)
      usleep(200);
  }
}

static int count_suffix(const char *dir, const char *suffix) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  size_t ls = strlen(suffix);
  while ((e = readdir(d))) {
    size_t l = strlen(e->d_name);
    n += l > ls && !strcmp(e->d_name + l - ls, suffix);
  }
  closedir(d);
  return n;
}

/* Temp files of a publish beside the dataset (tk_temp_beside names: ".<base>.<hex>.<suffix>"). */
static int count_temps(const char *dir, const char *base) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  size_t bl = strlen(base);
  while ((e = readdir(d)))
    n += e->d_name[0] == '.' && !strncmp(e->d_name + 1, base, bl) && tk_is_temp_name(e->d_name);
  closedir(d);
  return n;
}

static void crash_loop(int px, double ratio, int iters_default) {
  const char *env = getenv("DK_CRASH_ITERS");
  int iters = env ? atoi(env) : iters_default;
  const char *dir = tt_tmpdir();
  char p[4200], staging[4300];
  snprintf(p, sizeof p, "%s/crash.h5", dir);
  snprintf(staging, sizeof staging, "%s.staging", p);
  tkRng rng;
  tk_rng_seed(&rng, (uint64_t)time(NULL));
  static int64_t committed[1 << 16];
  int ncommitted = 0, checked = 0, mid_episode = 0, mid_publish = 0, opened_before_recover = 0;
  for (int it = 0; it < iters; it++) {
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
      close(fds[0]);
      child(p, px, ratio, fds[1]);
    }
    close(fds[1]);
    int64_t delay_us = 20000 + (int64_t)tk_rng_below(&rng, 400000);
    usleep((useconds_t)delay_us);
    kill(pid, SIGKILL);
    int status;
    waitpid(pid, &status, 0);
    cr_assert(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
              "iteration %d: the writer ended by itself (status %d)", it, status);
    int64_t idx;
    while (read(fds[0], &idx, sizeof idx) == sizeof idx)
      committed[ncommitted++] = idx;
    close(fds[0]);
    mid_episode += count_suffix(staging, ".h5.tmp") > 0;
    mid_publish += count_temps(dir, "crash.h5") > 0;
    char why[256];
    /* 1: the dataset file, if there is one yet, opens and validates (structure, lengths,
     * NaN scan) right after the kill, before any repair */
    if (tk_file_exists(p)) {
      dsFile *f;
      cr_assert_eq(ds_open(p, 0, &f), 0, "iteration %d: file does not open after SIGKILL: %s", it,
                   tk_errmsg());
      ds_close(f);
      opened_before_recover++;
    }
    /* 2: after recovery every episode committed so far is there; this round's are checked
     * bit for bit now, all of them again at the end */
    int pub = 0, drop = 0, rej = 0;
    cr_assert_eq(ds_recover(p, &pub, &drop, &rej), 0, "iteration %d: recover: %s", it, tk_errmsg());
    cr_assert_eq(rej, 0, "iteration %d: %d committed episode(s) set aside", it, rej);
    cr_assert_eq(count_temps(dir, "crash.h5"), 0, "iteration %d: recover left a publish temp file", it);
    if (ncommitted == 0) continue;
    dsFile *f;
    cr_assert_eq(ds_open(p, 0, &f), 0, "iteration %d: %s", it, tk_errmsg());
    for (int c = 0; c < ncommitted; c++) {
      char name[48];
      snprintf(name, sizeof name, "demo_%lld", (long long)committed[c]);
      int pos = ds_find_demo(f, name);
      cr_assert_geq(pos, 0, "iteration %d: committed %s is missing", it, name);
      if (c >= checked) cr_assert_eq(gen_verify(f, pos, px, why, sizeof why), 0, "iteration %d: %s", it, why);
    }
    checked = ncommitted;
    ds_close(f);
  }
  {
    char why[256];
    dsFile *f;
    cr_assert_eq(ds_open(p, 0, &f), 0, "%s", tk_errmsg());
    for (int i = 0; i < ds_num_demos(f); i++)
      cr_assert_eq(gen_verify(f, i, px, why, sizeof why), 0, "final: %s", why);
    ds_close(f);
  }
  printf("crash test (images %d, publish ratio %.3f): %d kills, %d committed episodes verified, killed "
         "mid-episode %d times, "
         "mid-publish %d times, file opened before recovery %d times\n",
         px, ratio, iters, ncommitted, mid_episode, mid_publish, opened_before_recover);
  cr_assert_gt(ncommitted, 0, "no episode committed in %d runs: the test exercised nothing", iters);
  /* the outside reader agrees */
  char *out = NULL;
  int rc = tt_run(&out, "%s %s %s --native", getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3",
                  tt_src("tests/dataset/h5_check.py"), p);
  cr_assert_eq(rc, 0, "h5_check: %s", out ? out : "");
  free(out);
}

Test(crash, sigkill_lowdim_publish_every_episode, .timeout = 300) { crash_loop(0, 0.0, 20); }
Test(crash, sigkill_images_84, .timeout = 300) { crash_loop(84, 0.125, 20); }
