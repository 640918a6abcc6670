/* dataset/ds_replay.c -- `dataset replay --check FILE`: re-run each demo's recorded actions from its
 * first recorded state in the simulator and report how far the states drift from the recorded ones.
 * Part of the dataset command only (the library itself knows nothing of simulators). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap.h"
#include "ds.h"
#include "tk.h"

int cmd_replay(int argc, char **argv);

typedef struct {
  double max_div;
  int64_t at_step;
  int at_elem;
} replayResult;

/* Replay demo position i: reads its actions and states only (not its observations: camera frames
 * are most of a file and the replay does not look at them). */
static int replay_demo(capEnv *env, dsFile *f, int i, int S, int A, replayResult *r) {
  memset(r, 0, sizeof *r);
  const int64_t N = ds_demo(f, i)->num_samples;
  double *st = malloc(sizeof(double) * (size_t)S);
  double *states = malloc(sizeof(double) * (size_t)(N * S + 1));
  double *actions = malloc(sizeof(double) * (size_t)(N * A + 1));
  int rc = 0;
  if (!st || !states || !actions) rc = tk_error(TK_ENOMEM, "out of memory");
  if (!rc) rc = ds_read_rows(f, i, "states", 0, N, DS_F64, states, N * S, NULL);
  if (!rc) rc = ds_read_rows(f, i, "actions", 0, N, DS_F64, actions, N * A, NULL);
  capObs o;
  if (!rc) rc = cap_env_set_state(env, states, &o);
  for (int64_t t = 0; !rc && t + 1 < N; t++) {
    capStep s;
    if ((rc = cap_env_step(env, actions + t * A, &s))) break;
    cap_env_get_state(env, st);
    const double *want = states + (t + 1) * S;
    for (int k = 0; k < S; k++) {
      double d = fabs(st[k] - want[k]);
      if (!(d <= r->max_div)) { /* NaN counts as the largest */
        r->max_div = isnan(d) ? INFINITY : d;
        r->at_step = t + 1;
        r->at_elem = k;
      }
    }
  }
  free(st);
  free(states);
  free(actions);
  return rc;
}

int cmd_replay(int argc, char **argv) {
  const char *path = NULL;
  int check = 0;
  double tol = 1e-9;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--check")) {
      check = 1;
    } else if (!strcmp(argv[i], "--tolerance")) {
      if (tk_opt_f64("--tolerance", i + 1 < argc ? argv[i + 1] : NULL, 0, DBL_MAX, &tol)) {
        fprintf(stderr, "dataset: replay: %s\n", tk_errmsg());
        return 2;
      }
      i++;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "dataset: replay: unknown option %s\n", argv[i]);
      return 2;
    } else if (path) {
      fprintf(stderr, "dataset: replay takes one FILE\n");
      return 2;
    } else {
      path = argv[i];
    }
  }
  if (!path || !check) {
    fprintf(stderr, "dataset: usage: dataset replay --check FILE [--tolerance T]\n");
    return 2;
  }
  dsFile *f;
  if (ds_open(path, 0, &f)) {
    tk_die_msg("dataset");
    return 1;
  }
  const dsSchema *sc = ds_schema(f);
  const char *task = ds_env_name(f);
  capModel *m = NULL;
  capEnv *env = NULL;
  double hz = ds_num_demos(f) > 0 ? ds_demo(f, 0)->control_hz : 0;
  capOpts co;
  cap_opts_default(&co);
  co.task = task;
  if (hz > 0) co.control_hz = hz;
  int rc = 0;
  if (!task || !task[0] || cap_model_load(&co, &m)) {
    fprintf(stderr, "dataset: %s: task '%s' is not a built-in one (%s): nothing to replay it in\n", path,
            task ? task : "", cap_task_names());
    ds_close(f);
    return 1;
  }
  const capSpec *spec = cap_spec(m);
  if (spec->state_dim != sc->state_dim || spec->action_dim != sc->action_dim) {
    fprintf(stderr, "dataset: %s: states of %d and actions of %d values, task '%s' has %d and %d\n", path,
            sc->state_dim, sc->action_dim, task, spec->state_dim, spec->action_dim);
    cap_model_free(m);
    ds_close(f);
    return 1;
  }
  if ((rc = cap_env_make(m, &env))) {
    tk_die_msg("dataset");
    cap_model_free(m);
    ds_close(f);
    return 1;
  }
  int bad = 0, skipped = 0;
  double worst = 0;
  for (int i = 0; i < ds_num_demos(f) && !rc; i++) {
    const dsDemoInfo *d = ds_demo(f, i);
    if (!d->has_states) {
      printf("%s: no states stored: skipped\n", d->name);
      skipped++;
      continue;
    }
    if (d->control_hz > 0 && fabs(d->control_hz - spec->control_hz) > 1e-9) {
      printf("%s: recorded at %g Hz, the file's first demo at %g Hz: skipped\n", d->name, d->control_hz,
             spec->control_hz);
      skipped++;
      continue;
    }
    replayResult r;
    rc = replay_demo(env, f, i, sc->state_dim, sc->action_dim, &r);
    if (!rc) {
      int ok = r.max_div <= tol;
      bad += !ok;
      worst = fmax(worst, r.max_div);
      printf("%s: %lld steps, largest divergence %.3g", d->name, (long long)d->num_samples, r.max_div);
      if (r.max_div > 0) printf(" (step %lld, state element %d)", (long long)r.at_step, r.at_elem);
      printf("%s\n", ok ? "" : "  <- above the tolerance");
    }
  }
  if (rc) {
    tk_die_msg("dataset");
  } else {
    printf("replay: %d demos, %d above the tolerance %g, %d skipped; largest divergence %.3g\n",
           ds_num_demos(f), bad, tol, skipped, worst);
  }
  cap_env_free(env);
  cap_model_free(m);
  ds_close(f);
  return rc ? 1 : bad ? 1 : 0;
}
