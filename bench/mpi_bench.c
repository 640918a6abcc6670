/* bench/mpi_bench.c -- what MPI costs rl-finetune on this machine, and what a second rank brings.
 *
 * Started by mpirun (OMPI_COMM_WORLD_SIZE set, 2 ranks or more): times MPI_Allreduce(MPI_IN_PLACE, float,
 * MPI_SUM) between the ranks over a range of sizes, and the collectives of one rl-finetune update at its
 * default size. Rank 0 prints:
 *   allreduce_<N>f_bytes, allreduce_<N>f_us, allreduce_<N>f_us_p90
 *                       N floats in one call: the median and 90th percentile over the repetitions (each
 *                       repetition starts after a barrier; its time is the slower rank's)
 *   update_actor_floats, update_critic_floats, update_ensemble, update_floats, update_bytes
 *                       the gradients one update averages: the actor rl_sac.c makes from the BC policy
 *                       (--policy FILE: its layers with the Gaussian head; without one, lift's robomimic
 *                       low-dim keys and bc-train's layers, --actor-hidden, default 256,256) and
 *                       --ensemble critics (obs+action in, two --hidden layers with LayerNorm, one out),
 *                       counted by building those networks with nn_net_make
 *   update_allreduce_us the median of one MPI_Allreduce of update_floats
 *   update_collectives_us   the median of one update's collectives exactly as rl_sac.c calls them
 *                       (rl_mpi_any, rl_mpi_mean_f per critic, rl_mpi_any, rl_mpi_mean_f of the actor,
 *                       rl_mpi_mean_d of the temperature's gradient)
 *
 * Started without mpirun: runs itself under `mpirun --allow-run-as-root --oversubscribe -np 2` for the
 * above (mpirun from PATH; without it prints a skip line and exits 0), then, given --rl-finetune, records
 * demos (teleop's scripted operator) and trains a 256,256 BC policy (bc-train) in a temporary directory
 * under --dir and runs rl-finetune on lift for --steps env steps (one worker per rank, hidden 256, batch
 * 256, ensemble 2, UTD 1, the actor learning from the first step: --actor-delay 0, 100 critic warm-up
 * updates and a 1-episode evaluation at step 0 before the timed loop) with 1 rank and with 2 ranks, and
 * prints rl_np<K>_env_steps_per_s, rl_np<K>_updates_per_s (per rank: each update averages every rank's
 * gradients), rl_np<K>_seconds (rl-finetune's summary line) and rl_np2_over_np1 (env steps/s).
 *
 * Usage: mpi_bench [--rl-finetune PATH] [--dir DIR] [--steps N] [--reps N] [--build DIR]
 *        (under mpirun: [--policy FILE] [--reps N] [--hidden W] [--ensemble E])
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef DK_MPI
int main(void) {
  printf("mpi_bench: built without OpenMPI\n");
  return 0;
}
#else
#include <mpi.h>
#include <sys/wait.h>

#include "rl.h"
#include "rl_mpi.h"

/* ---- under mpirun: the allreduce timings ------------------------------------------------------- */

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* times[] (per repetition, this rank) -> the slower rank's, sorted */
static void slowest_sorted(double *t, int n) {
  MPI_Allreduce(MPI_IN_PLACE, t, n, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
  qsort(t, (size_t)n, sizeof *t, cmp_d);
}

/* one timed operation: item < nsizes: one MPI_Allreduce of sizes[item] floats; nsizes: one of the
 * update's total; nsizes + 1: the update's collectives as rl_sac.c's update_critics and update_actor make
 * them, in order */
static void one_op(float *buf, const int *sizes, int nsizes, int item, int64_t na, int64_t nc, int ensemble) {
  if (item <= nsizes) {
    int n = item < nsizes ? sizes[item] : (int)(na + ensemble * nc);
    MPI_Allreduce(MPI_IN_PLACE, buf, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    return;
  }
  float *actor = buf, *critic = buf + na;
  rl_mpi_any(0);
  for (int e = 0; e < ensemble; e++)
    rl_mpi_mean_f(critic + e * nc, nc);
  rl_mpi_any(0);
  rl_mpi_mean_f(actor, na);
  double g = 0.5;
  rl_mpi_mean_d(&g, 1);
}

/* The networks whose gradients one update averages, built as rl_sac.c builds them (rl_actor_make,
 * critic_arch): the actor takes the BC policy's layers with a Gaussian head (2A outputs); the critics
 * take obs+action, two `hidden` layers with LayerNorm and one output. Without a policy: lift's robomimic
 * low-dim keys (the ones rl_run.c takes from scratch) and bc-train's layers actor_hidden,actor_hidden. */
static int count_update_floats(const char *policy, int hidden, int actor_hidden, int64_t *actor,
                               int64_t *critic) {
  nnArch a;
  int D = 0, A = 0;
  if (policy) {
    bcPolicy *p = bc_policy_load(policy);
    if (!p) return tk_error_wrap(TK_EFORMAT, "--policy");
    a = p->arch;
    D = p->obs_dim;
    A = p->act_dim;
    bc_policy_free(p);
  } else {
    capOpts co;
    cap_opts_default(&co);
    co.task = "lift";
    capModel *m = NULL;
    int rc = cap_model_load(&co, &m);
    if (rc) return rc;
    const capSpec *sp = cap_spec(m);
    const char *want[] = {"object", "robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos"};
    for (int i = 0; i < 4; i++)
      for (int k = 0; k < sp->nobs; k++)
        if (!strcmp(sp->obs[k].name, want[i])) D += sp->obs[k].shape[0];
    A = sp->action_dim;
    cap_model_free(m);
    nn_arch_default(&a);
    a.obs_dim = D;
    a.act_dim = A;
    a.n_hidden = 2;
    a.hidden[0] = a.hidden[1] = actor_hidden;
    a.tanh = 1;
  }
  a.head = NN_HEAD_GAUSSIAN;
  nnArch c;
  nn_arch_default(&c);
  c.obs_dim = D + A;
  c.act_dim = 1;
  c.n_hidden = 2;
  c.hidden[0] = c.hidden[1] = hidden;
  c.layer_norm = 1;
  c.head = NN_HEAD_MSE;
  c.tanh = 0;
  nnNet *na = nn_net_make(&a, 1), *nc = nn_net_make(&c, 1);
  int rc = na && nc ? 0 : tk_error_wrap(TK_EINVAL, "the update's networks");
  if (!rc) {
    *actor = na->n_params;
    *critic = nc->n_params;
  }
  nn_net_free(na);
  nn_net_free(nc);
  return rc;
}

static int ranks_main(int argc, char **argv) {
  const char *policy = NULL;
  int reps = 200, hidden = 256, actor_hidden = 256, ensemble = 2;
  for (int i = 1; i + 1 < argc; i++) {
    if (!strcmp(argv[i], "--policy"))
      policy = argv[++i];
    else if (!strcmp(argv[i], "--reps"))
      reps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--hidden"))
      hidden = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--actor-hidden"))
      actor_hidden = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--ensemble"))
      ensemble = atoi(argv[++i]);
  }
  if (reps < 10) reps = 10;
  if (ensemble < 1) ensemble = 1;
  rl_mpi_init(&argc, &argv);
  int rank = rl_mpi_rank(), size = rl_mpi_size();
  if (size < 2) {
    if (rank == 0) printf("mpi_bench: skipped: the allreduce needs 2 ranks or more (mpirun -np 2)\n");
    rl_mpi_finalize();
    return 0;
  }
  /* rank 0 counts, every rank uses its numbers */
  int64_t na = 0, nc = 0;
  double cnt[3] = {0, 0, 0};
  if (rank == 0) {
    int rc = count_update_floats(policy, hidden, actor_hidden, &na, &nc);
    if (rc) tk_die_msg("mpi_bench");
    cnt[0] = rc ? 1 : 0;
    cnt[1] = (double)na;
    cnt[2] = (double)nc;
  }
  rl_mpi_bcast_d(cnt, 3);
  if (cnt[0]) {
    rl_mpi_finalize();
    return 1;
  }
  na = (int64_t)cnt[1];
  nc = (int64_t)cnt[2];
  int64_t total = na + ensemble * nc;
  if (rank == 0) printf("ranks=%d reps=%d\n", size, reps);
  static const int sizes[] = {25000, 100000, 225000, 400000, 1000000, 2000000};
  int64_t maxn = TK_MAX(total, (int64_t)sizes[TK_ARRAY_LEN(sizes) - 1]);
  float *buf = malloc(sizeof(float) * (size_t)maxn);
  if (!buf) MPI_Abort(MPI_COMM_WORLD, 1);
  for (int64_t i = 0; i < maxn; i++)
    buf[i] = 1e-3f;
  /* the sizes take turns within every repetition, so a busy moment of the machine falls on all of them
   * alike (a third busy process on 2 cores makes these several times slower) */
  const int ns = (int)TK_ARRAY_LEN(sizes), items = ns + 2;
  double *t = malloc(sizeof(double) * (size_t)reps * (size_t)items);
  if (!t) MPI_Abort(MPI_COMM_WORLD, 1);
  for (int r = -10; r < reps; r++) {
    for (int k = 0; k < items; k++) {
      MPI_Barrier(MPI_COMM_WORLD);
      double t0 = MPI_Wtime();
      one_op(buf, sizes, ns, k, na, nc, ensemble);
      if (r >= 0) t[(size_t)k * (size_t)reps + (size_t)r] = MPI_Wtime() - t0;
    }
    if (r % 16 == 0) /* keep the values bounded: every sum doubles them */
      for (int64_t i = 0; i < maxn; i++)
        buf[i] = 1e-3f;
  }
  double med[16], p90[16], mn[16];
  for (int k = 0; k < items; k++) {
    double *tk = t + (size_t)k * (size_t)reps;
    slowest_sorted(tk, reps);
    med[k] = 1e6 * tk[reps / 2];
    p90[k] = 1e6 * tk[(reps * 9) / 10];
    mn[k] = 1e6 * tk[0];
  }
  free(t);
  if (rank == 0) {
    for (int k = 0; k < ns; k++)
      printf("allreduce_%df_bytes=%lld\nallreduce_%df_us=%.1f\nallreduce_%df_us_p90=%.1f\n"
             "allreduce_%df_us_min=%.1f\n",
             sizes[k], 4LL * sizes[k], sizes[k], med[k], sizes[k], p90[k], sizes[k], mn[k]);
    printf("update_actor_floats=%lld\nupdate_critic_floats=%lld\nupdate_ensemble=%d\nupdate_floats=%lld\n"
           "update_bytes=%lld\nupdate_source=%s\nupdate_allreduce_us=%.1f\nupdate_allreduce_us_p90=%.1f\n"
           "update_allreduce_us_min=%.1f\nupdate_collectives_us=%.1f\nupdate_collectives_us_p90=%.1f\n"
           "update_collectives_us_min=%.1f\n",
           (long long)na, (long long)nc, ensemble, (long long)total, 4LL * total,
           policy ? policy : "lift robomimic keys, bc-train layers", med[ns], p90[ns], mn[ns], med[ns + 1],
           p90[ns + 1], mn[ns + 1]);
    fflush(stdout);
  }
  free(buf);
  rl_mpi_finalize();
  return 0;
}

/* ---- without mpirun: the driver ---------------------------------------------------------------- */

/* mpirun's full path from PATH into out; 0 if found */
static int find_in_path(const char *name, char *out, size_t n) {
  const char *path = getenv("PATH");
  if (!path) return -1;
  char *copy = strdup(path), *save = NULL;
  int found = -1;
  for (char *d = strtok_r(copy, ":", &save); d && found; d = strtok_r(NULL, ":", &save)) {
    snprintf(out, n, "%s/%s", d[0] ? d : ".", name);
    if (access(out, X_OK) == 0) found = 0;
  }
  free(copy);
  return found;
}

/* A shell command's output (malloc'd) and exit status. */
static char *capture(const char *cmd, int *status) {
  char full[16384];
  snprintf(full, sizeof full, "(%s) 2>&1", cmd);
  FILE *p = popen(full, "r");
  if (!p) {
    *status = -1;
    return strdup("");
  }
  size_t cap = 65536, n = 0, r;
  char *b = malloc(cap);
  while (b && (r = fread(b + n, 1, cap - n - 1, p)) > 0)
    if ((n += r) + 1024 > cap) b = realloc(b, cap *= 2);
  if (b) b[n] = 0;
  int st = pclose(p);
  *status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + (WIFSIGNALED(st) ? WTERMSIG(st) : 0);
  return b ? b : strdup("");
}

/* run a setup command; prints its output and returns nonzero on failure */
static int step(const char *what, const char *cmd) {
  int st;
  char *out = capture(cmd, &st);
  if (st) fprintf(stderr, "mpi_bench: %s failed (exit %d): %s\n%s", what, st, cmd, out);
  free(out);
  return st;
}

/* rl-finetune's summary line: "<label>: X env steps/s, Y updates/s, Z s" */
static int parse_rates(const char *out, double *env, double *upd, double *secs) {
  for (const char *l = out; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
    const char *c = strstr(l, ": ");
    const char *nl = strchr(l, '\n');
    if (!c || (nl && c > nl)) continue;
    if (sscanf(c + 2, "%lf env steps/s, %lf updates/s, %lf s", env, upd, secs) == 3) return 0;
  }
  return -1;
}

int main(int argc, char **argv) {
  if (getenv("OMPI_COMM_WORLD_SIZE")) return ranks_main(argc, argv);
  const char *rl = NULL, *dir = "/tmp", *build = NULL;
  long steps = 3000, reps = 200;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--rl-finetune") && i + 1 < argc)
      rl = argv[++i];
    else if ((!strcmp(argv[i], "--dir") || !strcmp(argv[i], "--tmp")) && i + 1 < argc)
      dir = argv[++i];
    else if (!strcmp(argv[i], "--build") && i + 1 < argc)
      build = argv[++i];
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
      steps = atol(argv[++i]);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = atol(argv[++i]);
    else {
      fprintf(stderr,
              "usage: mpi_bench [--rl-finetune PATH] [--dir DIR] [--steps N] [--reps N] [--build DIR]\n");
      return 2;
    }
  }
  if (steps < 100 || reps < 10) {
    fprintf(stderr, "mpi_bench: --steps at least 100, --reps at least 10\n");
    return 2;
  }
  char mpirun[4096], self[4096];
  if (find_in_path("mpirun", mpirun, sizeof mpirun)) {
    printf("mpi_bench: skipped: mpirun is not in PATH\n");
    return 0;
  }
  ssize_t sl = readlink("/proc/self/exe", self, sizeof self - 1);
  if (sl <= 0) {
    fprintf(stderr, "mpi_bench: cannot find its own executable\n");
    return 1;
  }
  self[sl] = 0;
  long cores = sysconf(_SC_NPROCESSORS_ONLN);
  printf("cores=%ld mpirun=%s rl_steps=%ld\n", cores, mpirun, rl ? steps : 0L);
  fflush(stdout);
  const char *mpi = "--allow-run-as-root --oversubscribe";
  char tmp[4200], demos[4300], pol[4300], cmd[16384];
  snprintf(tmp, sizeof tmp, "%s/mpi_bench.XXXXXX", dir);
  if (!mkdtemp(tmp)) {
    perror("mpi_bench: mkdtemp");
    return 1;
  }
  snprintf(demos, sizeof demos, "%s/lift15.h5", tmp);
  snprintf(pol, sizeof pol, "%s/bc.h5", tmp);
  /* the BC policy and demos as tests/rl_finetune/test_rl.c makes them (256,256 layers here) */
  char root[4096] = "", teleop[4400], train[4400];
  if (build)
    snprintf(root, sizeof root, "%s", build);
  else if (rl) { /* BUILD/rl_finetune/rl-finetune */
    snprintf(root, sizeof root, "%s", rl);
    for (int k = 0; k < 2; k++) {
      char *s = strrchr(root, '/');
      if (s)
        *s = 0;
      else
        snprintf(root, sizeof root, "..");
    }
  }
  snprintf(teleop, sizeof teleop, "%s/teleop/teleop", root);
  snprintf(train, sizeof train, "%s/bc/bc-train", root);
  int have_policy = 0;
  if (rl) {
    snprintf(
        cmd, sizeof cmd,
        "'%s' --task lift --device scripted --headless --episodes 15 --noise 0.3 --seed 0 --fast --quiet "
        "--out '%s'",
        teleop, demos);
    if (step("teleop (demos)", cmd)) return 1;
    snprintf(cmd, sizeof cmd,
             "'%s' '%s' -o '%s' --hidden 256,256 --epochs 20 --eval-every 0 --seed 1 --quiet", train, demos,
             pol);
    if (step("bc-train (policy)", cmd)) return 1;
    have_policy = 1;
  }

  /* (a) the allreduce under 2 ranks (this program again) */
  snprintf(cmd, sizeof cmd, "'%s' %s -np 2 '%s' --reps %ld %s%s%s", mpirun, mpi, self, reps,
           have_policy ? "--policy '" : "", have_policy ? pol : "", have_policy ? "'" : "");
  fflush(stdout);
  int st = system(cmd);
  if (!WIFEXITED(st) || WEXITSTATUS(st)) {
    fprintf(stderr, "mpi_bench: %s failed\n", cmd);
    return 1;
  }
  if (!rl) {
    printf("rl_skipped=no --rl-finetune given\n");
    return 0;
  }

  /* (b) rl-finetune with 1 rank and with 2 */
  int st_help;
  snprintf(cmd, sizeof cmd, "'%s' --help", rl);
  char *help = capture(cmd, &st_help);
  int rl_mpi = strstr(help, "MPI: built with OpenMPI") != NULL;
  free(help);
  double env[3] = {0}, upd[3] = {0}, secs[3] = {0};
  for (int np = 1; np <= 2; np++) {
    if (np == 2 && !rl_mpi) {
      printf("rl_np2_skipped=rl-finetune was built without OpenMPI\n");
      break;
    }
    char pre[4400] = "";
    if (np == 2) snprintf(pre, sizeof pre, "'%s' %s -np 2 ", mpirun, mpi);
    snprintf(cmd, sizeof cmd,
             "%s'%s' --policy '%s' --demos '%s' --out '%s/np%d.h5' --task lift --steps %ld --workers 1 "
             "--hidden 256 --batch 256 --ensemble 2 --utd 1 --actor-delay 0 --critic-warmup 100 "
             "--eval-every 100000000 --eval-episodes 1 --no-stop --seed 0",
             pre, rl, pol, demos, tmp, np, steps);
    char *out = capture(cmd, &st);
    if (st || parse_rates(out, &env[np], &upd[np], &secs[np])) {
      fprintf(stderr, "mpi_bench: %s -> exit %d\n%s", cmd, st, out);
      free(out);
      return 1;
    }
    free(out);
    printf("rl_np%d_env_steps_per_s=%.0f\nrl_np%d_updates_per_s=%.0f\nrl_np%d_seconds=%.1f\n", np, env[np],
           np, upd[np], np, secs[np]);
    fflush(stdout);
  }
  if (env[1] > 0 && env[2] > 0) printf("rl_np2_over_np1=%.2f\n", env[2] / env[1]);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
  if (system(cmd)) fprintf(stderr, "mpi_bench: could not remove %s\n", tmp);
  return 0;
}
#endif
