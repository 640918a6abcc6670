/* rl-finetune under mpirun when a rank dies: the real binaries (teleop's scripted operator records the
 * demos, bc-train makes the starting policy) and `mpirun -np 2 rl-finetune`, one of whose ranks is killed
 * with SIGKILL after rank 0 has written a checkpoint. The job must end (bounded waits; a hang fails the
 * test and kills what is left), say which rank died and how, and the checkpoint must carry the run on with
 * `--resume`, alone and under mpirun again. Skipped when rl-finetune was built without OpenMPI. No timing
 * is asserted. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "bc.h"
#include "tk.h"
#include "rl_tt.h"

/* leak checking off for the ranks (OpenMPI keeps its allocations), as in test_rl's mpi_ranks */
#define MPIRUN "ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" mpirun --allow-run-as-root --oversubscribe"

/* the options of every run here: tiny networks, evaluations (and checkpoints) every 300 env steps */
#define RUN_OPTS                                                                                             \
  "--hidden 32 --batch 32 --eval-every 300 --eval-episodes 4 --critic-warmup 50 --workers 1 "                \
  "--actor-delay 100 --no-stop --seed 5"

/* ---- helpers (copied from test_rl.c, which stays as it is) -------------------------------------- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

/* ---- a background job: mpirun in a session of its own, output to a file -------------------------- */
/* OpenMPI puts each rank in a process group of its own, so the ranks are found through the pid file the
 * wrapper script writes ("RANK PID" lines: the wrapper execs rl-finetune, so the pid is the rank's). */
static struct {
  pid_t pid; /* mpirun's shell (its session and group leader); 0: none running */
  char pids[4300];
} job;

static void job_start(const char *log, const char *cmd) {
  fflush(NULL);
  pid_t p = fork();
  cr_assert(p >= 0, "fork: %s", strerror(errno));
  if (p == 0) {
    setsid();
    int fd = open(log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) _exit(126);
    dup2(fd, 1);
    dup2(fd, 2);
    close(fd);
    execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
    _exit(127);
  }
  job.pid = p;
}

/* the rank's pid from the wrapper's file; 0 if not there (yet) */
static pid_t rank_pid(int rank) {
  FILE *f = fopen(job.pids, "r");
  if (!f) return 0;
  int r;
  long pid;
  pid_t found = 0;
  while (fscanf(f, "%d %ld", &r, &pid) == 2)
    if (r == rank) found = (pid_t)pid;
  fclose(f);
  return found;
}

/* Wait up to timeout seconds for the job; 1 and its wait status if it ended, 0 if it is still running. */
static int job_wait(double timeout, int *status) {
  double end = now_s() + timeout;
  for (;;) {
    pid_t w = waitpid(job.pid, status, WNOHANG);
    if (w == job.pid) {
      job.pid = 0;
      return 1;
    }
    if (now_s() > end) return 0;
    sleep_s(0.05);
  }
}

/* Kill whatever is left of the job: mpirun's session group and every rank's group. */
static void job_kill(void) {
  for (int r = 0; r < 2; r++) {
    pid_t p = rank_pid(r);
    if (p > 0) {
      kill(-p, SIGKILL);
      kill(p, SIGKILL);
    }
  }
  if (job.pid > 0) {
    kill(-job.pid, SIGKILL);
    waitpid(job.pid, NULL, 0);
    job.pid = 0;
  }
}

static void cleanup(void) {
  job_kill();
  tt_pool_free();
}

TestSuite(rl_mpi, .fini = cleanup);

static int exit_code(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

/* the env step a resumed run says it started from ("resumed from DIR/checkpoint.h5 at N env steps") */
static long long resumed_at(const char *out) {
  const char *s = strstr(out, "resumed from ");
  const char *at = s ? strstr(s, " at ") : NULL;
  long long n = -1;
  if (!at || sscanf(at, " at %lld env steps", &n) != 1) return -1;
  return n;
}

/* ---- a two-rank run to interfere with ------------------------------------------------------------ */
typedef struct {
  char log[4300], out_h5[4300], run_dir[4300], ck[4400];
} twoRanks;

/* Start `mpirun -np 2 rl-finetune` (env: variables for mpirun and the ranks, may be "") through a wrapper
 * that records each rank's pid, and wait until rank 0 has written its first checkpoint. */
static void start_two_ranks(const fixture *f, const char *name, const char *env, twoRanks *t) {
  char wrapper[4300], cmd[16384];
  snprintf(wrapper, sizeof wrapper, "%s/%s_rank.sh", f->dir, name);
  snprintf(job.pids, sizeof job.pids, "%s/%s.pids", f->dir, name);
  snprintf(t->log, sizeof t->log, "%s/%s.log", f->dir, name);
  snprintf(t->out_h5, sizeof t->out_h5, "%s/%s.h5", f->dir, name);
  snprintf(t->run_dir, sizeof t->run_dir, "%s/%s_run", f->dir, name);
  snprintf(t->ck, sizeof t->ck, "%s/checkpoint.h5", t->run_dir);
  FILE *w = fopen(wrapper, "w");
  cr_assert(w, "%s: %s", wrapper, strerror(errno));
  fprintf(w, "#!/bin/sh\necho \"$OMPI_COMM_WORLD_RANK $$\" >> '%s'\nexec \"$@\"\n", job.pids);
  fclose(w);
  cr_assert_eq(chmod(wrapper, 0755), 0);
  /* long enough that it is still running when the test interferes (it would take minutes to finish) */
  snprintf(cmd, sizeof cmd, "%s %s -np 2 %s %s --policy %s --demos %s --out %s --steps 100000 " RUN_OPTS, env,
           MPIRUN, wrapper, rl_bin(), f->bc, f->demos, t->out_h5);
  job_start(t->log, cmd);
  int status = 0, ended = 0;
  double end = now_s() + 180;
  while (!tk_file_exists(t->ck) && !(ended = job_wait(0, &status)) && now_s() < end)
    sleep_s(0.05);
  if (ended)
    cr_assert_fail("mpirun ended (exit %d) before the first checkpoint:\n%s", exit_code(status),
                   slurp(t->log, NULL));
  if (!tk_file_exists(t->ck)) {
    job_kill();
    cr_assert_fail("no %s within 180 s:\n%s", t->ck, slurp(t->log, NULL));
  }
}

/* ---- a rank killed partway ----------------------------------------------------------------------- */
/* mpirun -np 2 with checkpoints every 300 env steps; rank 1 gets SIGKILL once rank 0 has written
 * OUT_run/checkpoint.h5. mpirun must end the job (rank 0 included) with a non-zero status and a message
 * naming rank 1 and the signal; then --resume goes on from the checkpoint, plain and under mpirun. */
Test(rl_mpi, killed_rank_ends_job_and_resume_goes_on, .timeout = 400) {
  if (!built_with_mpi()) cr_skip_test("rl-finetune was built without OpenMPI");
  fixture f;
  make_fixture(&f, NULL);
  twoRanks t;
  start_two_ranks(&f, "kill", "", &t);
  const char *log = t.log, *out_h5 = t.out_h5, *run_dir = t.run_dir;
  int status = 0;
  pid_t r0 = rank_pid(0), r1 = rank_pid(1);
  if (r0 <= 0 || r1 <= 0 || kill(r1, 0)) {
    job_kill();
    cr_assert_fail("the ranks' pids (%s): rank 0 %d, rank 1 %d (alive: %s)", job.pids, (int)r0, (int)r1,
                   r1 > 0 && !kill(r1, 0) ? "yes" : "no");
  }
  cr_assert_eq(kill(r1, SIGKILL), 0, "kill rank 1 (pid %d): %s", (int)r1, strerror(errno));

  /* the job ends by itself: no rank left waiting in a collective */
  if (!job_wait(60, &status)) {
    char *text = slurp(log, NULL);
    int r0_alive = kill(r0, 0) == 0;
    job_kill();
    cr_assert_fail("mpirun did not end within 60 s of rank 1's death (rank 0 %s):\n%s",
                   r0_alive ? "still running" : "gone", text);
  }
  char *text = slurp(log, NULL);
  cr_assert(text, "%s", log);
  int rc = exit_code(status);
  cr_assert_neq(rc, 0, "mpirun exits non-zero when a rank dies:\n%s", text);
  /* OpenMPI 4.1: "mpirun noticed that process rank 1 with PID 0 on node N exited on signal 9 (Killed)." */
  cr_assert(strstr(text, "rank 1") && (strstr(text, "signal 9") || strstr(text, "Killed")),
            "the output names rank 1 and its signal (exit %d):\n%s", rc, text);
  /* and rank 0 did not outlive the job */
  double gone = now_s() + 10;
  while (kill(r0, 0) == 0 && now_s() < gone)
    sleep_s(0.05);
  cr_assert(kill(r0, 0) == -1 && errno == ESRCH, "rank 0 (pid %d) still runs after mpirun ended", (int)r0);

  /* the policy the killed run kept (its best: the step-0 evaluation at least) is whole */
  bcPolicy *p = bc_policy_load(out_h5);
  cr_assert(p, "the killed run's policy %s: %s", out_h5, tk_errmsg());
  bc_policy_free(p);
  /* a copy of the run (directory and policy) for the resume under mpirun: the plain resume rewrites them.
   * A resumed run keeps OUT as its best policy so far and rewrites it only when an evaluation beats the
   * checkpoint's best, so the copy goes under its own OUT too. */
  char *o = NULL, *e = NULL;
  rc = run2(f.dir, &o, &e, "cp -r %s %s/kill2_run && cp %s %s/kill2.h5", run_dir, f.dir, out_h5, f.dir);
  cr_assert_eq(rc, 0, "cp: %s", e);

  /* plain --resume: same options, a short budget */
  rc = run2(f.dir, &o, &e, "%s --policy %s --demos %s --out %s --steps 1200 " RUN_OPTS " --resume %s",
            rl_bin(), f.bc, f.demos, out_h5, run_dir);
  cr_assert_eq(rc, 0, "rl-finetune --resume -> exit %d\nstdout: %s\nstderr: %s", rc, o, e);
  long long at = resumed_at(o);
  cr_assert(at > 0 && at < 1200 && at % 300 == 0, "resumed from a checkpoint at env step %lld:\n%s", at, o);
  cr_assert(strstr(o, "finetune: 1200 env steps: success"), "went on to 1200 env steps:\n%s", o);
  cr_assert(strstr(o, "finetune: checkpoint"), "a new checkpoint at the end:\n%s", o);
  char csv[4300];
  snprintf(csv, sizeof csv, "%s/kill.csv", f.dir);
  char *rows = slurp(csv, NULL);
  cr_assert(rows, "%s", csv);
  cr_assert(strstr(rows, "\nfinetune,0,") && strstr(rows, "\nfinetune,1200,"),
            "the metrics go on in the same CSV, from step 0 to 1200:\n%s", rows);
  p = bc_policy_load(out_h5);
  cr_assert(p, "the policy %s: %s", out_h5, tk_errmsg());
  cr_assert_str_eq(p->algo, "sac");
  bc_policy_free(p);

  /* --resume under mpirun -np 2, from the same checkpoint */
  char out2[4300];
  snprintf(out2, sizeof out2, "%s/kill2.h5", f.dir);
  rc = run2(f.dir, &o, &e,
            "%s -np 2 %s --policy %s --demos %s --out %s --steps 1200 " RUN_OPTS " --resume %s/kill2_run",
            MPIRUN, rl_bin(), f.bc, f.demos, out2, f.dir);
  cr_assert_eq(rc, 0, "mpirun -np 2 rl-finetune --resume -> exit %d\nstdout: %s\nstderr: %s", rc, o, e);
  cr_assert_eq(resumed_at(o), at, "the same checkpoint:\n%s", o);
  cr_assert(strstr(o, "2 MPI ranks; actor and critic parameters identical on every rank"), "%s", o);
  p = bc_policy_load(out2);
  cr_assert(p, "the policy %s: %s", out2, tk_errmsg());
  bc_policy_free(p);
}

/* ---- a rank that hangs instead of dying ------------------------------------------------------------ */
/* Rank 1 is stopped (SIGSTOP) mid-run: mpirun alone would wait forever, with rank 0 in an allreduce.
 * Rank 0's watchdog (DK_MPI_TIMEOUT, here 5 s) ends it with a message naming the wait, and mpirun then
 * ends the job, the stopped rank included. */
Test(rl_mpi, hung_rank_ends_job_with_a_message, .timeout = 300) {
  if (!built_with_mpi()) cr_skip_test("rl-finetune was built without OpenMPI");
  fixture f;
  make_fixture(&f, NULL);
  twoRanks t;
  start_two_ranks(&f, "hang", "DK_MPI_TIMEOUT=5", &t);
  const char *log = t.log, *out_h5 = t.out_h5, *run_dir = t.run_dir;
  int status = 0;
  pid_t r1 = rank_pid(1);
  if (r1 <= 0) {
    job_kill();
    cr_assert_fail("no rank 1 pid:\n%s", slurp(log, NULL));
  }
  cr_assert_eq(kill(r1, SIGSTOP), 0, "stop rank 1 (pid %d): %s", (int)r1, strerror(errno));
  if (!job_wait(120, &status)) {
    char *text = slurp(log, NULL);
    job_kill();
    cr_assert_fail("the job still runs 120 s after rank 1 stopped:\n%s", text);
  }
  char *text = slurp(log, NULL);
  cr_assert_neq(exit_code(status), 0, "%s", text);
  cr_assert(strstr(text, "rank 0: waited") && strstr(text, "a rank hangs"), "rank 0 says why it ended:\n%s",
            text);
  kill(r1, SIGKILL); /* mpirun has killed it already; in case it has not */
  /* the checkpoint it left resumes */
  char *o = NULL, *e = NULL;
  int rc = run2(f.dir, &o, &e, "%s --policy %s --demos %s --out %s --steps 900 " RUN_OPTS " --resume %s",
                rl_bin(), f.bc, f.demos, out_h5, run_dir);
  cr_assert_eq(rc, 0, "resume -> exit %d\nstdout: %s\nstderr: %s", rc, o, e);
  cr_assert_gt(resumed_at(o), 0, "%s", o);
}
