/* bc/bc_eval_main.c -- the `bc-eval` command. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bc.h"

static void usage(FILE *f) {
  fprintf(
      f,
      "usage: bc-eval POLICY.h5 [--task NAME] [--episodes 50] [--seed S] [--workers N] [--save ROLLOUTS.h5]\n"
      "\n"
      "Roll a policy out on held-out seeds and report its success rate, returns and lengths.\n"
      "Works on every policy file (bc-train's and rl-finetune's).\n"
      "\n"
      "  --task NAME        task (default: the one the policy was trained for)\n"
      "  --episodes N       episodes (default 50)\n"
      "  --seed S           episode i starts from seed S + i (default %llu: apart from the seeds\n"
      "                     demos are recorded with, and from bc-train's selection rollouts)\n"
      "  --workers N        parallel workers, each with its own simulation (default: online cores)\n"
      "  --horizon H        steps per episode (default: the task's)\n"
      "  --save FILE.h5     also write the rollouts as a new dataset (the viewer replays it); an existing\n"
      "                     file is never appended to, and is replaced only with --force\n"
      "  --force            replace an existing --save file\n"
      "  --json             print the result as one JSON object\n"
      "  --quiet            no progress bar\n"
      "\n"
      "Exit status: 0 evaluated, 1 error (one line naming the file and the problem), 2 usage.\n",
      (unsigned long long)BC_EVAL_SEED_BASE);
}

int main(int argc, char **argv) {
  bcEvalOpts eo;
  bc_eval_default(&eo);
  if (tk_env_check()) {
    tk_die_msg("bc-eval");
    return 2;
  }
  const char *path = NULL, *task = NULL;
  int json = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (!strcmp(a, "--json")) {
      json = 1;
    } else if (!strcmp(a, "--quiet")) {
      eo.quiet = 1;
    } else if (!strcmp(a, "--force")) {
      eo.force = 1;
    } else if (a[0] != '-') {
      if (path) {
        fprintf(stderr, "bc-eval: one policy only (got %s and %s)\n", path, a);
        return 2;
      }
      path = a;
    } else if (!v) {
      fprintf(stderr, "bc-eval: %s needs a value\n", a);
      return 2;
    } else if (!strcmp(a, "--task")) {
      task = argv[++i];
    } else if (!strcmp(a, "--save")) {
      eo.save = argv[++i];
    } else if (!strcmp(a, "--episodes") || !strcmp(a, "--seed") || !strcmp(a, "--workers") ||
               !strcmp(a, "--horizon")) {
      int64_t hi = !strcmp(a, "--seed") ? 9000000000000000 : !strcmp(a, "--workers") ? 64 : 10000000;
      int64_t lo = !strcmp(a, "--seed") || !strcmp(a, "--horizon") ? 0 : 1, x;
      if (tk_opt_int(a, v, lo, hi, &x)) {
        tk_die_msg("bc-eval");
        return 2;
      }
      i++;
      if (!strcmp(a, "--episodes")) eo.episodes = (int)x;
      if (!strcmp(a, "--seed")) eo.seed = (uint64_t)x;
      if (!strcmp(a, "--workers")) eo.workers = (int)x;
      if (!strcmp(a, "--horizon")) eo.horizon = (int)x;
    } else {
      fprintf(stderr, "bc-eval: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (!path) {
    usage(stderr);
    return 2;
  }
  eo.policy_path = path;
  bcPolicy *p = bc_policy_load(path);
  if (!p) {
    tk_die_msg("bc-eval");
    return 1;
  }
  if (!task) task = p->task;
  if (!task[0]) {
    fprintf(stderr, "bc-eval: %s: the policy names no task; pass --task (%s)\n", path, cap_task_names());
    bc_policy_free(p);
    return 1;
  }
  capOpts co;
  cap_opts_default(&co);
  co.task = task;
  capModel *m = NULL;
  bcEvalResult r;
  int rc = bc_policy_model_load(p, &co, &m);
  if (rc || (rc = bc_evaluate(p, m, &eo, &r))) tk_error_wrap(rc, "%s", path);
  if (rc) {
    tk_die_msg("bc-eval");
  } else {
    double ls = 0, rs = 0;
    for (int i = 0; i < r.episodes; i++) {
      ls += (r.lengths[i] - r.mean_length) * (r.lengths[i] - r.mean_length);
      rs += (r.returns[i] - r.mean_return) * (r.returns[i] - r.mean_return);
    }
    ls = r.episodes > 1 ? sqrt(ls / (r.episodes - 1)) : 0;
    rs = r.episodes > 1 ? sqrt(rs / (r.episodes - 1)) : 0;
    if (json) {
      cJSON *j = cJSON_CreateObject();
      cJSON_AddStringToObject(j, "policy", path);
      cJSON_AddStringToObject(j, "task", task);
      cJSON_AddNumberToObject(j, "episodes", r.episodes);
      cJSON_AddNumberToObject(j, "successes", r.successes);
      cJSON_AddNumberToObject(j, "success_rate", r.success_rate);
      cJSON_AddNumberToObject(j, "mean_return", r.mean_return);
      cJSON_AddNumberToObject(j, "std_return", rs);
      cJSON_AddNumberToObject(j, "mean_length", r.mean_length);
      cJSON_AddNumberToObject(j, "std_length", ls);
      cJSON_AddNumberToObject(j, "seed", (double)eo.seed);
      cJSON_AddNumberToObject(j, "env_steps", (double)r.env_steps);
      cJSON_AddNumberToObject(j, "seconds", r.seconds);
      char *txt = cJSON_PrintUnformatted(j);
      printf("%s\n", txt ? txt : "{}");
      free(txt);
      cJSON_Delete(j);
    } else
      printf("bc-eval: %s on %s: success %d/%d (%.0f%%), return %.2f +- %.2f, length %.1f +- %.1f "
             "(seeds %llu..%llu; %lld env steps in %.1f s)\n",
             path, task, r.successes, r.episodes, 100 * r.success_rate, r.mean_return, rs, r.mean_length, ls,
             (unsigned long long)eo.seed, (unsigned long long)(eo.seed + (uint64_t)r.episodes - 1),
             (long long)r.env_steps, r.seconds);
    if (eo.save && !json) printf("bc-eval: rollouts saved to %s\n", eo.save);
    bc_eval_result_free(&r);
  }
  cap_model_free(m);
  bc_policy_free(p);
  return rc ? 1 : 0;
}
