/* rl_finetune/rl_main.c -- the `rl-finetune` command. */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rl.h"
#include "rl_mpi.h"
#include "tk_plot.h"

static volatile int interrupted;
static void on_sigint(int sig) {
  (void)sig;
  interrupted = 1;
}

static void usage(FILE *f);
static void usage_mpi(FILE *f) {
  fprintf(f, "MPI: %s\n",
          rl_mpi_built() ? "built with OpenMPI" : "not built (OpenMPI was not found at build time)");
}

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: rl-finetune --policy BC.h5 --demos DEMOS.h5 [--task NAME] [options]\n"
      "       rl-finetune --scratch --task NAME [options]\n"
      "\n"
      "RL fine-tuning that starts from a BC policy and its demos (SAC, RLPD-style, by default; PPO with a\n"
      "DAPG demo term for many cheap workers), and measures what that saves: --compare runs the same\n"
      "algorithm from scratch beside it and reports the env steps each needed to reach the target success.\n"
      "\n"
      "  --policy FILE        BC policy to start from (any bc-train makes; see --scheme)\n"
      "  --scheme S           finetune: the actor is the BC policy's network, trained (MLP policies with\n"
      "                       an MSE-tanh or Gaussian head); residual: the BC policy stays frozen and acts\n"
      "                       first, a small actor adds a bounded correction (any policy: BC-RNN, chunked,\n"
      "                       GMM, diffusion, cameras); OUT then holds both; auto (default): finetune\n"
      "                       where the head allows, else residual\n"
      "  --residual-scale X   residual: the largest correction, in [-1, 1] action units (default 0.5)\n"
      "  --actor-update U     q: the actor ascends the critics' Q (TD3+BC-normalized, with SAC's entropy\n"
      "                       term); awr: advantage-weighted regression of the mean action onto the\n"
      "                       batch's actions, weights exp(standardized advantage / --awr-temp) (no\n"
      "                       gradient of Q in the action; the std stays at its start) (default q)\n"
      "  --awr-temp T         (default 1)\n"
      "  --init-std S         the actor's exploration std at the start, in [-1, 1] action units (0.2)\n"
      "  --demos FILE         demonstrations: half of every batch (failures and interventions included)\n"
      "  --task NAME          task (default: the policy's)\n"
      "  --algo sac|ppo       the algorithm (default sac, the sample-efficient one)\n"
      "  --steps N            environment steps (default 100000)\n"
      "  --workers N          environment worker threads (default: online cores); 1 reproduces a run\n"
      "  --seed S             (default 0)\n"
      "  --out FILE           best policy, policy.h5 format (default ft.h5); bc-eval and teleop read it.\n"
      "                       No output may be an input; one of another kind (a dataset) is replaced\n"
      "                       only with --force\n"
      "  --force              replace existing outputs of another kind (inputs never)\n"
      "  --metrics FILE       evaluations as CSV (default: OUT without .h5 + .csv)\n"
      "  --scratch            no BC start and no demos (the same algorithm)\n"
      "  --resume DIR         go on from DIR/checkpoint.h5 (written after every evaluation, at the end\n"
      "                       and on Ctrl-C into OUT_run/; same options as the run that wrote it)\n"
      "  --compare            fine-tune, then scratch with the same seed until it reaches the target or\n"
      "                       spends 10x the fine-tune's steps to it (the fine-tune's budget when that\n"
      "                       did not arrive): OUT_compare.csv, OUT_compare.png (success against env\n"
      "                       steps) and a summary line with the ratio, or its floor\n"
      "  --scratch-steps N    --compare: the scratch run's budget instead (the floor then is N over the\n"
      "                       fine-tune's steps)\n"
      "  --ensemble E         critics (default 2, sized for a 2-core machine; RLPD uses 10)\n"
      "  --utd U              updates per environment step (default 1)\n"
      "  --batch B            (default 256: half demos, half online)\n"
      "  --hidden W           critic width, two layers with LayerNorm (default 256)\n"
      "  --critic-lr LR       (default 3e-4)\n"
      "  --actor-lr LR        (default 1e-4 from a policy, 3e-4 from scratch)\n"
      "  --critic-warmup N    critic updates on the demos before the actor moves (default 2000)\n"
      "  --actor-delay N       from a policy: env steps of critic-only learning before the actor moves\n"
      "                        (default 2500)\n"
      "  --q-coef C            actor: weight of Q, normalized by mean |Q| as TD3+BC (default 0.1)\n"
      "  --actor-eps E         the actor's Adam epsilon (default 1e-3, so that tiny gradients stay tiny)\n"
      "  --bc-weight W         actor anchor: ||a - a_demo||^2 on demo rows, ||a - a_bc(s)||^2 on online\n"
      "                        rows (the starting policy, frozen) (default 1)\n"
      "  --bc-halflife N       updates over which that weight halves (default 100000)\n"
      "  --alpha-lr LR         temperature learning rate (default 3e-4; 0 keeps it fixed)\n"
      "  --init-alpha A        starting entropy temperature (default 0.001; auto-tuned to entropy -A)\n"
      "PPO (--algo ppo; --bc-weight and --bc-halflife weight its DAPG demo term, --hidden sizes V(s)):\n"
      "  --rollout N          env steps per iteration and rank (default 4096)\n"
      "  --ppo-epochs N       passes over each rollout (default 5)\n"
      "  --minibatch M        rows per update (default 1024)\n"
      "  --clip C             ratio clip (default 0.2)\n"
      "  --gae-lambda L       (default 0.95)\n"
      "  --target-kl K        stop an iteration past 1.5 K of mean KL; the actor's learning rate\n"
      "                       follows the KL (default 0.05)\n"
      "  --max-std S          the actor's std is clamped to at most S (default 0.5)\n"
      "  --value-warmup N     iterations fitting only V(s) before the actor moves (default 1)\n"
      "                       (the actor's learning rate starts at 1e-5 from a policy)\n"
      "\n"
      "  --eval-every N       env steps between evaluations (default 5000)\n"
      "  --eval-episodes M    held-out seeds per evaluation (default 100: fewer flatter the best)\n"
      "  --target X           success rate that counts as arrived (default 0.95)\n"
      "  --no-stop            keep training after reaching the target\n"
      "  --quiet\n"
      "\n"
      "Under mpirun (when built with OpenMPI): every rank runs its own workers and learner on its own\n"
      "data; gradients are averaged over the ranks at every update, rank 0 evaluates and writes, and\n"
      "--steps counts all ranks' env steps: mpirun -np K [--hostfile H] rl-finetune ...\n"
      "\n"
      "Ctrl-C stops after the current step and writes a checkpoint; the best policy so far is already "
      "saved.\n"
      "Exit status: 0 done, 1 error (one line naming the file and the problem), 2 usage.\n");
}

static void strip_h5(const char *path, char *out, size_t n) {
  snprintf(out, n, "%s", path);
  size_t l = strlen(out);
  if (l > 3 && !strcmp(out + l - 3, ".h5")) out[l - 3] = 0;
}

static void summary_line(const char *label, const rlResult *r, const rlOpts *o) {
  if (r->steps_to_target >= 0)
    printf("%s: reached %.0f%% success after %lld env steps (start %.0f%%, best %.0f%%)\n", label,
           100 * o->target, (long long)r->steps_to_target, 100 * r->initial_success, 100 * r->best_success);
  else
    printf("%s: did not reach %.0f%% within %lld env steps (start %.0f%%, best %.0f%% at %lld)\n", label,
           100 * o->target, (long long)r->env_steps, 100 * r->initial_success, 100 * r->best_success,
           (long long)r->best_step);
  printf("%s: %.0f env steps/s, %.0f updates/s, %.1f s", label, r->env_steps_per_s, r->updates_per_s,
         r->seconds);
  if (r->seconds > 0)
    printf(" (acting %.0f%%, learning %.0f%%, evaluations and checkpoints %.0f%%, critic warm-up %.0f%%)",
           100 * r->act_seconds / r->seconds, 100 * r->learn_seconds / r->seconds,
           100 * r->eval_seconds / r->seconds, 100 * r->warmup_seconds / r->seconds);
  printf("\n");
}

static int run(int argc, char **argv) {
  rlOpts o;
  rl_opts_default(&o);
  int compare = 0, scratch = 0, force = 0;
  int64_t scratch_steps = 0; /* --scratch-steps; 0: 10x the fine-tune's steps to the target */
  const char *resume_dir = NULL;
  const char *metrics = NULL;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      usage_mpi(stdout);
      return 0;
    } else if (!strcmp(a, "--compare")) {
      compare = 1;
    } else if (!strcmp(a, "--scratch")) {
      scratch = 1;
    } else if (!strcmp(a, "--no-stop")) {
      o.stop_at_target = 0;
    } else if (!strcmp(a, "--quiet")) {
      o.quiet = 1;
    } else if (!strcmp(a, "--force")) {
      force = 1;
    } else if (!v) {
      fprintf(stderr, "rl-finetune: %s needs a value (or is unknown)\n", a);
      return 2;
    } else if (!strcmp(a, "--policy") || !strcmp(a, "--demos") || !strcmp(a, "--task") ||
               !strcmp(a, "--out") || !strcmp(a, "--metrics") || !strcmp(a, "--algo") ||
               !strcmp(a, "--resume") || !strcmp(a, "--scheme") || !strcmp(a, "--actor-update")) {
      i++;
      if (!strcmp(a, "--policy")) o.policy = v;
      if (!strcmp(a, "--demos")) o.demos = v;
      if (!strcmp(a, "--task")) o.task = v;
      if (!strcmp(a, "--out")) o.out = v;
      if (!strcmp(a, "--metrics")) metrics = v;
      if (!strcmp(a, "--algo")) {
        if (strcmp(v, "sac") && strcmp(v, "ppo")) {
          fprintf(stderr, "rl-finetune: --algo %s: sac or ppo\n", v);
          return 2;
        }
        o.algo = v;
      }
      if (!strcmp(a, "--resume")) resume_dir = v;
      if (!strcmp(a, "--actor-update")) {
        if (strcmp(v, "q") && strcmp(v, "awr")) {
          fprintf(stderr, "rl-finetune: --actor-update %s: q or awr\n", v);
          return 2;
        }
        o.actor_update = v;
      }
      if (!strcmp(a, "--scheme")) {
        if (strcmp(v, "auto") && strcmp(v, "finetune") && strcmp(v, "residual")) {
          fprintf(stderr, "rl-finetune: --scheme %s: auto, finetune or residual\n", v);
          return 2;
        }
        o.scheme = v;
      }
    } else {
      /* every numeric option: integers (is_int) through tk_opt_int, the rest through tk_opt_f64 */
      struct {
        const char *name;
        int is_int;
        double lo, hi;
      } nums[] = {
          {"--steps", 1, 1, 1e9},         {"--workers", 1, 1, 64},        {"--seed", 1, 0, 1e15},
          {"--ensemble", 1, 1, 16},       {"--utd", 1, 1, 100},           {"--batch", 1, 2, 65536},
          {"--hidden", 1, 1, 65536},      {"--critic-lr", 0, 1e-9, 1},    {"--actor-lr", 0, 1e-9, 1},
          {"--critic-warmup", 1, 0, 1e7}, {"--eval-every", 1, 1, 1e9},    {"--eval-episodes", 1, 1, 10000},
          {"--target", 0, 0, 1},          {"--bc-weight", 0, 0, 1e6},     {"--bc-halflife", 0, 1, 1e12},
          {"--init-alpha", 0, 1e-9, 10},  {"--actor-delay", 1, 0, 1e9},   {"--alpha-lr", 0, 0, 1},
          {"--q-coef", 0, 0, 1e6},        {"--actor-eps", 0, 1e-12, 1},   {"--rollout", 1, 64, 1e7},
          {"--ppo-epochs", 1, 1, 100},    {"--clip", 0, 0.01, 1},         {"--gae-lambda", 0, 0, 1},
          {"--target-kl", 0, 1e-6, 10},   {"--max-std", 0, 1e-3, 10},     {"--value-warmup", 1, 0, 1e6},
          {"--minibatch", 1, 2, 1e6},     {"--scratch-steps", 1, 1, 1e9}, {"--residual-scale", 0, 1e-3, 2},
          {"--awr-temp", 0, 1e-3, 1e3},   {"--init-std", 0, 1e-3, 1}};
      int k = -1;
      for (int j = 0; j < (int)TK_ARRAY_LEN(nums); j++)
        if (!strcmp(a, nums[j].name)) k = j;
      if (k < 0) {
        fprintf(stderr, "rl-finetune: unknown option %s\n", a);
        usage(stderr);
        return 2;
      }
      int64_t n = 0;
      double x = 0;
      if (nums[k].is_int ? tk_opt_int(a, v, (int64_t)nums[k].lo, (int64_t)nums[k].hi, &n)
                         : tk_opt_f64(a, v, nums[k].lo, nums[k].hi, &x)) {
        tk_die_msg("rl-finetune");
        return 2;
      }
      i++;
      switch (k) {
      case 0: o.steps = n; break;
      case 1: o.workers = (int)n; break;
      case 2: o.seed = (uint64_t)n; break;
      case 3: o.ensemble = (int)n; break;
      case 4: o.utd = (int)n; break;
      case 5: o.batch = (int)n; break;
      case 6: o.hidden = (int)n; break;
      case 7: o.critic_lr = x; break;
      case 8: o.actor_lr = x; break;
      case 9: o.critic_warmup = (int)n; break;
      case 10: o.eval_every = n; break;
      case 11: o.eval_episodes = (int)n; break;
      case 12: o.target = x; break;
      case 13: o.bc_weight = x; break;
      case 14: o.bc_halflife = x; break;
      case 15: o.init_alpha = x; break;
      case 16: o.actor_delay = n; break;
      case 17: o.alpha_lr = x; break;
      case 18: o.q_coef = x; break;
      case 19: o.actor_eps = x; break;
      case 20: o.rollout = (int)n; break;
      case 21: o.ppo_epochs = (int)n; break;
      case 22: o.clip = x; break;
      case 23: o.gae_lambda = x; break;
      case 24: o.target_kl = x; break;
      case 25: o.max_std = x; break;
      case 26: o.value_warmup_iters = (int)n; break;
      case 27: o.minibatch = (int)n; break;
      case 28: scratch_steps = n; break;
      case 29: o.residual_scale = x; break;
      case 30: o.awr_temp = x; break;
      case 31: o.init_std = x; break;
      }
    }
  }
  if (!scratch && !o.policy) {
    fprintf(stderr, "rl-finetune: --policy is needed (or --scratch)\n");
    usage(stderr);
    return 2;
  }
  if (scratch_steps && !compare) {
    fprintf(stderr, "rl-finetune: --scratch-steps sizes --compare's scratch run; add --compare\n");
    return 2;
  }
  if (scratch && compare) {
    fprintf(stderr, "rl-finetune: --compare runs the scratch run itself; drop --scratch\n");
    return 2;
  }
  if (scratch && !o.task) {
    fprintf(stderr, "rl-finetune: --scratch needs --task (%s)\n", cap_task_names());
    return 2;
  }
  if (resume_dir && compare) {
    fprintf(
        stderr,
        "rl-finetune: --resume goes on with one run; resume the fine-tune or the scratch run by itself\n");
    return 2;
  }
  double open_timeout;
  if (tk_env_f64("DK_OPEN_TIMEOUT", 0, 1e6, 30, &open_timeout)) {
    tk_die_msg("rl-finetune");
    return 2;
  }
  ds_set_open_timeout(open_timeout);
  signal(SIGINT, on_sigint);
  o.interrupt = &interrupted;
  char stem[4096], csv[4200], scratch_out[4200], png[4200];
  strip_h5(o.out, stem, sizeof stem);
  snprintf(csv, sizeof csv, "%s%s", stem, compare ? "_compare.csv" : ".csv");
  o.metrics = metrics ? metrics : csv;
  /* the run directory holds the checkpoint: OUT_run/ (OUT_scratch_run/ for --compare's scratch run) */
  char run_dir[4200], ckpt[4300], scratch_dir[4200], scratch_ckpt[4300];
  snprintf(run_dir, sizeof run_dir, "%s", resume_dir ? resume_dir : "");
  if (!resume_dir) snprintf(run_dir, sizeof run_dir, "%s%s_run", stem, scratch ? "_scratch" : "");
  snprintf(ckpt, sizeof ckpt, "%s/checkpoint.h5", run_dir);
  o.checkpoint = ckpt;
  if (resume_dir) o.resume = ckpt;
  snprintf(scratch_out, sizeof scratch_out, "%s_scratch.h5", stem);
  snprintf(scratch_dir, sizeof scratch_dir, "%s_scratch_run", stem);
  snprintf(scratch_ckpt, sizeof scratch_ckpt, "%s/checkpoint.h5", scratch_dir);
  snprintf(png, sizeof png, "%s_compare.png", stem);
  { /* every file the run writes passes the output rule before the run starts */
    const char *in[] = {o.policy, o.demos, o.resume};
    const char *outs[] = {o.out,
                          o.metrics,
                          resume_dir ? NULL : ckpt,
                          compare ? scratch_out : NULL,
                          compare ? scratch_ckpt : NULL,
                          compare ? png : NULL};
    const dsKind kinds[] = {DS_KIND_HDF5, DS_KIND_TEXT, DS_KIND_HDF5,
                            DS_KIND_HDF5, DS_KIND_HDF5, DS_KIND_PNG};
    for (int k = 0; k < (int)TK_ARRAY_LEN(outs); k++)
      if (outs[k] && ds_output_check(outs[k], kinds[k], in, 3, force)) {
        tk_die_msg("rl-finetune");
        return 1;
      }
  }
  if (!resume_dir && mkdir(run_dir, 0777) && errno != EEXIST) {
    fprintf(stderr, "rl-finetune: %s: cannot create the run directory: %s\n", run_dir, strerror(errno));
    return 1;
  }
  if (compare && rl_mpi_rank() == 0) remove(o.metrics); /* one comparison per file */
  rlResult r, rs;
  int rc;
  if (scratch) {
    o.label = "scratch";
    o.demos = NULL;
    const char *p = o.policy;
    o.policy = NULL;
    rc = rl_run(&o, &r);
    o.policy = p;
  } else {
    rc = rl_run(&o, &r);
  }
  if (rc) {
    tk_die_msg("rl-finetune");
    tk_plot_cleanup();
    return 1;
  }
  if (!o.quiet || compare) summary_line(o.label, &r, &o);
  if (compare && !interrupted) {
    rlOpts so = o;
    so.label = "scratch";
    so.policy = NULL;
    so.demos = NULL;
    /* the scratch run uses the fine-tuned run's task */
    if (!so.task) {
      bcPolicy *p = bc_policy_load(o.policy);
      static char task[BC_KEY_MAX];
      if (p) snprintf(task, sizeof task, "%s", p->task);
      bc_policy_free(p);
      so.task = task;
    }
    so.out = scratch_out;
    if (mkdir(scratch_dir, 0777) && errno != EEXIST) {
      fprintf(stderr, "rl-finetune: %s: cannot create the run directory: %s\n", scratch_dir, strerror(errno));
      return 1;
    }
    so.checkpoint = scratch_ckpt;
    so.resume = NULL;
    /* scratch's budget: until it arrives, or 10x what the fine-tune needed (an honest floor of 10x);
     * the fine-tune's own budget when it did not arrive */
    so.steps = scratch_steps > 0        ? scratch_steps
               : r.steps_to_target >= 0 ? RL_COMPARE_FACTOR * TK_MAX(r.steps_to_target, o.eval_every)
                                        : o.steps;
    if ((rc = rl_run(&so, &rs))) {
      tk_die_msg("rl-finetune");
      tk_plot_cleanup();
      return 1;
    }
    summary_line("scratch", &rs, &so);
    double fx[512], fy[512], sx[512], sy[512];
    for (int i = 0; i < r.n_evals; i++) {
      fx[i] = (double)r.eval_step[i];
      fy[i] = r.eval_success[i];
    }
    for (int i = 0; i < rs.n_evals; i++) {
      sx[i] = (double)rs.eval_step[i];
      sy[i] = rs.eval_success[i];
    }
    tkSeries s[2] = {{"fine-tune from BC + demos", fx, fy, r.n_evals}, {"scratch", sx, sy, rs.n_evals}};
    char title[256];
    snprintf(title, sizeof title, "%s on %s: success rate on %d evaluation seeds (%llu+)",
             strcmp(o.algo, "ppo") ? "SAC" : "PPO", so.task, o.eval_episodes,
             (unsigned long long)RL_EVAL_SEED_BASE);
    tkPlotOpts po = {.title = title,
                     .xlabel = "environment steps",
                     .ylabel = "success rate",
                     .ymin = 0,
                     .ymax = 1,
                     .fixed_y = 1};
    if (rl_mpi_rank() == 0 && tk_plot_png(png, &po, s, 2)) {
      tk_die_msg("rl-finetune");
      tk_plot_cleanup();
      return 1;
    }
    rlCurve cf = {r.eval_step, r.eval_success, r.n_evals}, cs = {rs.eval_step, rs.eval_success, rs.n_evals};
    char line[512];
    rl_compare_line(o.target, &cf, &cs, line, sizeof line);
    printf("compare: %s\n", line);
    printf("compare: %s, %s\n", o.metrics, png);
  }
  tk_plot_cleanup();
  return interrupted ? 130 : 0;
}

int main(int argc, char **argv) {
  /* the environment first: DK_MPI_TIMEOUT is read before MPI starts */
  if (tk_env_check() || rl_mpi_init(&argc, &argv)) {
    tk_die_msg("rl-finetune");
    return 2;
  }
  /* under mpirun, rank 0 speaks for the job (errors still come from every rank, on stderr) */
  if (rl_mpi_rank() > 0 && !freopen("/dev/null", "w", stdout)) return 1;
  int rc = run(argc, argv);
  rl_mpi_finalize();
  return rc;
}
