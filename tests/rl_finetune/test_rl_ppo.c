/* rl-finetune --algo ppo through the real binaries: teleop's scripted operator records the demos, bc-train
 * makes the starting policy. The start is the BC policy exactly, the value function warms up before the
 * actor moves, the std is clamped, the policy and CSV are written like SAC's, one worker and a seed give
 * the same bits, checkpoints resume (and refuse the other algorithm's), and under mpirun -np 2 the ranks
 * keep identical parameters. No timing and no learning progress is asserted (a short run proves nothing
 * about either). */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "bc.h"
#include "tk.h"
#include "rl.h"
#include "rl_tt.h"

/* 900 env steps in iterations of 300 (2 workers x 150), evaluations at 0, 300, 600, 900 */
#define PPO_SMALL                                                                                            \
  "--algo ppo --hidden 32 --rollout 300 --minibatch 64 --steps 900 --eval-every 300 --eval-episodes 4 "      \
  "--workers 2 --no-stop"

TestSuite(ppo, .fini = tt_pool_free);

/* CSV rows: env_steps, success, updates */
typedef struct {
  int n;
  long long step[16], updates[16];
  double succ[16];
} rows;

static void load_rows(const char *path, rows *r) {
  char *text = slurp(path, NULL);
  cr_assert(text, "%s", path);
  memset(r, 0, sizeof *r);
  for (char *line = strtok(text, "\n"); line && r->n < 16; line = strtok(NULL, "\n")) {
    char run[32];
    double ret, sec, alpha;
    if (sscanf(line, "%31[^,],%lld,%lf,%lf,%lld,%lf,%lf", run, &r->step[r->n], &r->succ[r->n], &ret,
               &r->updates[r->n], &sec, &alpha) == 7)
      r->n++;
  }
}

static double eval_success(const char *dir, const char *pol, unsigned long long seed, int episodes) {
  char *out, *err;
  int rc = run2(dir, &out, &err, "%s %s --episodes %d --seed %llu --workers 2 --json", eval_bin(), pol,
                episodes, seed);
  cr_assert_eq(rc, 0, "bc-eval: %s", err);
  const char *s = strstr(out, "\"success_rate\":");
  cr_assert(s, "%s", out);
  return atof(s + strlen("\"success_rate\":"));
}

Test(ppo, from_bc_end_to_end, .timeout = 180) {
  fixture f;
  make_fixture(&f, NULL);
  char ft[4200], csv[4300], args[16384];
  snprintf(ft, sizeof ft, "%s/ppo.h5", f.dir);
  snprintf(csv, sizeof csv, "%s/ppo.csv", f.dir);
  snprintf(args, sizeof args, "--policy %s --demos %s --out %s " PPO_SMALL " --seed 2", f.bc, f.demos, ft);
  finetune_ok(f.dir, args);
  rows r;
  load_rows(csv, &r);
  cr_assert_eq(r.n, 4, "%s: %d evaluations", csv, r.n);
  for (int i = 0; i < 4; i++)
    cr_assert_eq(r.step[i], 300 * i);
  /* the first iteration only fits V(s): no actor update until the second */
  cr_assert_eq(r.updates[1], 0, "actor updates after the warm-up iteration: %lld", r.updates[1]);
  cr_assert_gt(r.updates[3], 0, "the actor moved afterwards");
  /* the start is the BC policy exactly: the step-0 evaluation is bc-eval's on the same seeds */
  double bc0 = eval_success(f.dir, f.bc, RL_EVAL_SEED_BASE, 4);
  cr_assert_float_eq(r.succ[0], bc0, 1e-9, "PPO's start %g, the BC policy %g", r.succ[0], bc0);
  /* the kept policy: algo ppo, a Gaussian head with the std clamped, the BC layers */
  bcPolicy *p = bc_policy_load(ft);
  cr_assert(p, "%s", tk_errmsg());
  cr_assert_str_eq(p->algo, "ppo");
  cr_assert_eq(p->arch.head, NN_HEAD_GAUSSIAN);
  cr_assert_float_eq(p->arch.log_std_max, log(0.5), 1e-9, "log_std_max %g", p->arch.log_std_max);
  cr_assert_eq(p->arch.hidden[0], 32);
  cr_assert(strstr(p->info, "\"algo\":\"ppo\""), "%s", p->info);
  bc_policy_free(p);
  double s = eval_success(f.dir, ft, BC_EVAL_SEED_BASE, 2);
  cr_assert(s >= 0 && s <= 1);
}

Test(ppo, one_worker_same_seed_same_bits_and_resume, .timeout = 240) {
  fixture f;
  make_fixture(&f, NULL);
  char a[4200], b[4200], args[16384];
  const char *opts = "--algo ppo --hidden 32 --rollout 200 --minibatch 50 --steps 600 --eval-every 200 "
                     "--eval-episodes 2 --workers 1 --no-stop --seed 9";
  snprintf(a, sizeof a, "%s/pa.h5", f.dir);
  snprintf(b, sizeof b, "%s/pb.h5", f.dir);
  snprintf(args, sizeof args, "--policy %s --demos %s --out %s %s", f.bc, f.demos, a, opts);
  finetune_ok(f.dir, args);
  snprintf(args, sizeof args, "--policy %s --demos %s --out %s %s", f.bc, f.demos, b, opts);
  finetune_ok(f.dir, args);
  /* the final checkpoints hold the final actors: compare them bit for bit */
  char *out = NULL;
  int rc = tt_run(&out,
                  "%s -c \"import h5py, numpy as np; a = h5py.File('%s/pa_run/checkpoint.h5'); b = "
                  "h5py.File('%s/pb_run/checkpoint.h5'); print(np.array_equal(a['actor/params'][:], "
                  "b['actor/params'][:]), a.attrs['algo'], a.attrs['env_steps'])\"",
                  getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3", f.dir, f.dir);
  cr_assert_eq(rc, 0, "%s", out);
  cr_assert(strstr(out, "True ppo 600"), "same seed, one worker: the same actor (%s)", out);
  free(out);
  /* resume: on to 1000 steps from pa's checkpoint */
  snprintf(args, sizeof args,
           "--policy %s --demos %s --out %s --algo ppo --hidden 32 --rollout 200 --minibatch 50 --steps 1000 "
           "--eval-every 200 --eval-episodes 2 --workers 1 --no-stop --seed 9 --resume %s/pa_run",
           f.bc, f.demos, a, f.dir);
  char *o = finetune_ok(f.dir, args);
  cr_assert(strstr(o, "resumed from") && strstr(o, "at 600 env steps"), "%s", o);
  rows r;
  char csv[4300];
  snprintf(csv, sizeof csv, "%s/pa.csv", f.dir);
  load_rows(csv, &r);
  cr_assert_eq(r.n, 6, "evaluations 0..1000 in one CSV: %d", r.n);
  cr_assert_eq(r.step[5], 1000);
  /* a SAC run cannot go on from a PPO checkpoint */
  char *err;
  snprintf(args, sizeof args,
           "%s --policy %s --demos %s --out %s/x.h5 --hidden 32 --steps 1000 --workers 1 --ensemble 1 "
           "--resume %s/pa_run",
           rl_bin(), f.bc, f.demos, f.dir, f.dir);
  rc = run2(f.dir, &o, &err, "%s", args);
  cr_assert_eq(rc, 1, "exit %d: %s", rc, err);
  cr_assert(strstr(err, "--algo ppo") && strstr(err, "--algo sac"), "names both algorithms: %s", err);
  cr_assert_eq(count_lines(err), 1, "%s", err);
}

Test(ppo, mpi_ranks_keep_identical_parameters, .timeout = 240) {
  if (!built_with_mpi()) cr_skip_test("rl-finetune was built without OpenMPI");
  fixture f;
  make_fixture(&f, NULL);
  char args[16384], *out, *err;
  snprintf(
      args, sizeof args,
      "ASAN_OPTIONS=\"$ASAN_OPTIONS:detect_leaks=0\" mpirun --allow-run-as-root --oversubscribe -np 2 %s "
      "--policy %s --demos %s --out %s/m.h5 --algo ppo --hidden 32 --rollout 200 --minibatch 50 --steps 800 "
      "--eval-every 400 --eval-episodes 2 --workers 1 --no-stop --seed 4",
      rl_bin(), f.bc, f.demos, f.dir);
  int rc = run2(f.dir, &out, &err, "%s", args);
  cr_assert_eq(rc, 0, "mpirun: exit %d\n%s\n%s", rc, out, err);
  cr_assert(strstr(out, "2 MPI ranks; actor and critic parameters identical on every rank"), "%s", out);
  rows r;
  char csv[4300];
  snprintf(csv, sizeof csv, "%s/m.csv", f.dir);
  load_rows(csv, &r);
  cr_assert_eq(r.n, 3, "rank 0 alone writes the CSV: %d rows", r.n);
  cr_assert_eq(r.step[2], 800, "--steps counts both ranks' steps");
}
