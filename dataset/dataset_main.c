/* dataset/dataset_main.c -- the `dataset` command: inspect, validate, repair and edit datasets. */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ds.h"

int cmd_replay(int argc, char **argv); /* ds_replay.c */
#include "tk.h"

static const char *USAGE_HEAD =
    "usage: dataset COMMAND [options]\n"
    "\n"
    "Demonstration datasets in robomimic's HDF5 layout.\n"
    "\n"
    "commands:\n"
    "  info FILE                      demos, steps, lengths, action stats, obs keys, success and rates\n"
    "  validate FILE...               list every problem (exit 1 if any)\n"
    "  recover FILE                   publish episodes a crash left in FILE.staging/ (each checked\n"
    "                                 against FILE first; one that does not belong is moved to\n"
    "                                 FILE.rejected/, never deleted, and the exit status is 1)\n"
    "  merge A B [...] -o OUT [--force]\n"
    "                                 merge datasets (demos renumbered; same task, env_args,\n"
    "                                 schema and control rate)\n"
    "  split FILE --valid F [--seed S] (-o OUT [--force] | --in-place)\n"
    "                                 write mask/train and mask/valid\n"
    "  filter FILE [--success-only] [--min-len N] [--max-len N]\n"
    "         (-o OUT [--force] | --mask NAME (-o OUT [--force] | --in-place) | --in-place)\n"
    "                                 keep matching demos, in a new file or as a mask\n"
    "                                 (--success-only is refused when a demo has no success attribute)\n"
    "  delete FILE DEMO... (-o OUT [--force] | --in-place)\n"
    "                                 remove demos (demo_<i>)\n"
    "  trim FILE DEMO [--start T0] [--end T1] (-o OUT [--force] | --in-place)\n"
    "                                 keep steps [T0, T1) of one demo\n"
    "  convert FILE --to FORMAT -o OUT [--force]\n"
    "                                 write the data in another layout; FORMAT is one of:\n";
/* ... the rows of the export table (ds_export_format), then: */
static const char *USAGE_TAIL =
    "  replay --check FILE [--tolerance T]\n"
    "                                 re-run each demo's actions from its first state in the simulator\n"
    "                                 and report the largest divergence from the recorded states\n"
    "                                 (exit 1 above T, default 1e-9: replays are exact)\n"
    "  synth OUT [--demos N] [--steps T] [--image PX] [--seed S] [--task NAME]\n"
    "                                 record a synthetic point-reaching dataset through the writer\n"
    "\n"
    "Commands that write go through a temporary file and a rename; inputs are never modified\n"
    "unless --in-place is given (through a symbolic link, the file it names is edited). -o OUT is\n"
    "never one of the inputs; an existing dataset, or a file of another kind, is replaced only with\n"
    "--force. An edit that would leave no demos is refused. Errors name the file and the problem;\n"
    "the exit status is non-zero.\n";

static void print_usage(FILE *to) {
  fputs(USAGE_HEAD, to);
  for (int i = 0; ds_export_format(i); i++) {
    const dsExportFormat *x = ds_export_format(i);
    fprintf(to, "                                   %-7s %-16s %s\n", x->name,
            x->out_kind == DS_KIND_DIR ? "(OUT: directory)" : "(OUT: file)", x->help);
  }
  fputs(USAGE_TAIL, to);
}

static int usage_error(const char *fmt, const char *arg) {
  fprintf(stderr, "dataset: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\n(run 'dataset --help' for usage)\n");
  return 2;
}

static int fail(void) {
  tk_die_msg("dataset");
  return 1;
}

/* ---- info ---- */
static int cmd_info(int argc, char **argv) {
  if (argc != 1) return usage_error("info takes one FILE%s", "");
  dsFile *f;
  if (ds_open(argv[0], 0, &f)) return fail();
  const dsSchema *s = ds_schema(f);
  int nd = ds_num_demos(f);
  printf("file: %s\n", argv[0]);
  printf("format: %s\n",
         ds_is_native(f) ? DS_FORMAT_NAME " v1" : "robomimic layout (written by another tool)");
  printf("task: %s\n", ds_env_name(f));
  printf("env_args: %s\n", ds_env_args(f));
  printf("demos: %d\nsteps: %lld\n", nd, (long long)ds_total_samples(f));
  if (nd > 0) {
    dsDemoStats st;
    ds_demo_stats(f, &st);
    printf("length: min %lld, mean %.1f, max %lld\n", (long long)st.min_len, (double)ds_total_samples(f) / nd,
           (long long)st.max_len);
    if (st.known)
      printf("success: %d/%d (%.1f%%)\n", st.successes, st.known, 100.0 * st.successes / st.known);
    else
      printf("success: not recorded\n");
  }
  printf("action_dim: %d\nstate_dim: %d\n", s->action_dim, s->state_dim);
  printf("obs keys:\n");
  for (int k = 0; k < s->nkeys; k++) {
    const dsKeySpec *key = &s->keys[k];
    printf("  %-28s %s (", key->name, ds_dtype_name(key->dtype));
    for (int i = 0; i < key->rank; i++)
      printf(i ? ",%lld" : "%lld", (long long)key->shape[i]);
    printf(")%s\n", ds_key_is_image(key) ? " image" : "");
  }
  /* action statistics and recorded rate */
  int A = s->action_dim;
  int64_t maxn = 0;
  for (int i = 0; i < nd; i++)
    maxn = TK_MAX(maxn, ds_demo(f, i)->num_samples);
  double *buf = malloc((size_t)TK_MAX(maxn * A, 1) * sizeof(double));
  double *mean = calloc((size_t)A, sizeof(double)), *m2 = calloc((size_t)A, sizeof(double));
  double *amin = malloc((size_t)A * sizeof(double)), *amax = malloc((size_t)A * sizeof(double));
  if (!buf || !mean || !m2 || !amin || !amax) {
    tk_error(TK_ENOMEM, "out of memory");
    return fail();
  }
  for (int j = 0; j < A; j++) {
    amin[j] = INFINITY;
    amax[j] = -INFINITY;
  }
  int64_t cnt = 0;
  double dt_sum = 0, hz_sum = 0;
  int64_t dt_n = 0, missed = 0, hz_n = 0;
  int rc = 0;
  for (int i = 0; i < nd && !rc; i++) {
    const dsDemoInfo *d = ds_demo(f, i);
    if ((rc = ds_read_column(f, i, "actions", buf, maxn * A, NULL))) break;
    for (int64_t t = 0; t < d->num_samples; t++) {
      cnt++;
      for (int j = 0; j < A; j++) {
        double x = buf[t * A + j], dl = x - mean[j];
        mean[j] += dl / (double)cnt;
        m2[j] += dl * (x - mean[j]);
        amin[j] = fmin(amin[j], x);
        amax[j] = fmax(amax[j], x);
      }
    }
    if (d->has_timestamps && d->num_samples > 1) {
      if ((rc = ds_read_column(f, i, "timestamps", buf, maxn * A, NULL))) break;
      dt_sum += buf[d->num_samples - 1] - buf[0];
      dt_n += d->num_samples - 1;
    }
    if (d->missed_deadlines > 0) missed += d->missed_deadlines;
    if (d->control_hz > 0) {
      hz_sum += d->control_hz;
      hz_n++;
    }
  }
  if (rc) return fail();
  if (cnt > 0) {
    printf("actions (mean std min max):\n");
    for (int j = 0; j < A; j++)
      printf("  [%d] %8.4f %8.4f %8.4f %8.4f\n", j, mean[j], sqrt(m2[j] / (double)cnt), amin[j], amax[j]);
  }
  if (hz_n) printf("control rate: %.2f Hz nominal\n", hz_sum / (double)hz_n);
  if (dt_n > 0 && dt_sum > 0)
    printf("recorded rate: %.2f Hz measured, %lld missed deadlines\n", (double)dt_n / dt_sum,
           (long long)missed);
  if (ds_num_masks(f)) {
    printf("masks:\n");
    for (int m = 0; m < ds_num_masks(f); m++) {
      int *pos, n;
      if (!ds_mask(f, ds_mask_name(f, m), &pos, &n)) {
        printf("  %-12s %d demos\n", ds_mask_name(f, m), n);
        free(pos);
      }
    }
  }
  free(buf);
  free(mean);
  free(m2);
  free(amin);
  free(amax);
  ds_close(f);
  return 0;
}

/* ---- validate ---- */
static void print_line(const char *line, void *user) {
  (void)user;
  printf("%s\n", line);
}

static int cmd_validate(int argc, char **argv) {
  if (argc < 1) return usage_error("validate needs a FILE%s", "");
  int bad = 0;
  for (int i = 0; i < argc; i++) {
    int n = ds_validate(argv[i], print_line, NULL);
    if (n < 0) {
      tk_die_msg("dataset");
      bad = 1;
    } else if (n > 0) {
      printf("%s: %d problem%s\n", argv[i], n, n == 1 ? "" : "s");
      bad = 1;
    } else {
      int st = ds_staged_count(argv[i]);
      printf("%s: valid%s\n", argv[i],
             st ? " (committed episodes wait in the staging folder: run dataset recover)" : "");
    }
  }
  return bad;
}

static int cmd_recover(int argc, char **argv) {
  if (argc != 1) return usage_error("recover takes one FILE%s", "");
  int pub = 0, drop = 0, rej = 0;
  if (ds_recover(argv[0], &pub, &drop, &rej)) return fail();
  printf("%s: %d committed episode(s) published, %d unfinished episode(s) dropped\n", argv[0], pub, drop);
  if (tk_file_exists(argv[0])) {
    dsFile *f;
    if (ds_open(argv[0], 0, &f)) return fail();
    printf("%s: valid, %d demos, %lld steps\n", argv[0], ds_num_demos(f), (long long)ds_total_samples(f));
    ds_close(f);
  }
  if (rej) {
    fprintf(stderr,
            "dataset: %s: %d staged episode(s) could not be published and were set aside in %s.rejected/ "
            "(why: the warnings above)\n",
            argv[0], rej, argv[0]);
    return 1;
  }
  return 0;
}

/* ---- shared option parsing for the editing commands ---- */
typedef struct {
  const char *out;
  int in_place, force;
  const char **pos; /* argc entries: every positional argument fits */
  int npos;
} outArgs;

static const char **pos_block; /* the one command's positional arguments, freed by main */

/* Room for every positional argument (never a fixed count that drops the rest). */
static int out_args(outArgs *o, int argc) {
  memset(o, 0, sizeof *o);
  free(pos_block);
  o->pos = pos_block = calloc((size_t)argc + 1, sizeof *o->pos);
  if (!o->pos) {
    tk_error(TK_ENOMEM, "out of memory for %d arguments", argc);
    return -1;
  }
  return 0;
}

static int take_out(outArgs *o, int *i, int argc, char **argv) {
  if (!strcmp(argv[*i], "-o") || !strcmp(argv[*i], "--out")) {
    if (*i + 1 >= argc) return -1;
    o->out = argv[++*i];
    return 1;
  }
  if (!strcmp(argv[*i], "--in-place")) {
    o->in_place = 1;
    return 1;
  }
  if (!strcmp(argv[*i], "--force")) {
    o->force = 1;
    return 1;
  }
  return 0;
}

static int need_out(const outArgs *o, const char *cmd) {
  if (!o->out && !o->in_place) return usage_error("%s: give -o OUT or --in-place", cmd);
  if (o->out && o->in_place) return usage_error("%s: -o and --in-place exclude each other", cmd);
  if (o->force && o->in_place)
    return usage_error("%s: --force goes with -o OUT (--in-place edits the input)", cmd);
  return 0;
}

/* Numeric options through the one parser: tk_opt_int for counts, steps and seeds (the whole string, an
 * exact integer in range: "--min-len 1e30" is refused, never cast), tk_opt_f64 for the rest. */
static int int_arg(int *i, int argc, char **argv, int64_t lo, int64_t hi, int64_t *v) {
  if (*i + 1 >= argc) return usage_error("%s needs a value", argv[*i]);
  if (tk_opt_int(argv[*i], argv[*i + 1], lo, hi, v)) return usage_error("%s", tk_errmsg());
  ++*i;
  return 0;
}

static int f64_arg(int *i, int argc, char **argv, double lo, double hi, double *v) {
  if (*i + 1 >= argc) return usage_error("%s needs a value", argv[*i]);
  if (tk_opt_f64(argv[*i], argv[*i + 1], lo, hi, v)) return usage_error("%s", tk_errmsg());
  ++*i;
  return 0;
}

static int cmd_merge(int argc, char **argv) {
  outArgs o;
  if (out_args(&o, argc)) return fail();
  for (int i = 0; i < argc; i++) {
    int t = take_out(&o, &i, argc, argv);
    if (t < 0) return usage_error("-o needs a file%s", "");
    if (t) continue;
    if (argv[i][0] == '-') return usage_error("merge: unknown option %s", argv[i]);
    o.pos[o.npos++] = argv[i];
  }
  if (o.npos < 2) return usage_error("merge needs at least two inputs%s", "");
  if (!o.out || o.in_place) return usage_error("merge: give -o OUT%s", "");
  if (ds_merge(o.pos, o.npos, o.out, o.force)) return fail();
  printf("%s: merged %d files\n", o.out, o.npos);
  return 0;
}

static int cmd_split(int argc, char **argv) {
  outArgs o;
  if (out_args(&o, argc)) return fail();
  double valid = -1;
  int64_t seed = 0;
  for (int i = 0; i < argc; i++) {
    int t = take_out(&o, &i, argc, argv);
    if (t < 0) return usage_error("-o needs a file%s", "");
    if (t) continue;
    if (!strcmp(argv[i], "--valid")) {
      if (f64_arg(&i, argc, argv, 0, 1, &valid)) return 2;
    } else if (!strcmp(argv[i], "--seed")) {
      if (int_arg(&i, argc, argv, 0, INT64_MAX, &seed)) return 2;
    } else if (argv[i][0] == '-')
      return usage_error("split: unknown option %s", argv[i]);
    else
      o.pos[o.npos++] = argv[i];
  }
  if (o.npos != 1) return usage_error("split takes one FILE%s", "");
  if (!(valid > 0 && valid < 1)) return usage_error("split: --valid must be a fraction in (0,1)%s", "");
  if (need_out(&o, "split")) return 2;
  if (ds_split(o.pos[0], valid, (uint64_t)seed, o.out, o.force)) return fail();
  printf("%s: wrote mask/train and mask/valid\n", o.out ? o.out : o.pos[0]);
  return 0;
}

static int cmd_filter(int argc, char **argv) {
  outArgs o;
  if (out_args(&o, argc)) return fail();
  dsFilterOpts fo = {0};
  for (int i = 0; i < argc; i++) {
    int t = take_out(&o, &i, argc, argv);
    if (t < 0) return usage_error("-o needs a file%s", "");
    if (t) continue;
    if (!strcmp(argv[i], "--success-only"))
      fo.success_only = 1;
    else if (!strcmp(argv[i], "--min-len")) {
      if (int_arg(&i, argc, argv, 0, INT64_MAX, &fo.min_len)) return 2;
    } else if (!strcmp(argv[i], "--max-len")) {
      if (int_arg(&i, argc, argv, 0, INT64_MAX, &fo.max_len)) return 2;
    } else if (!strcmp(argv[i], "--mask")) {
      if (i + 1 >= argc) return usage_error("--mask needs a name%s", "");
      fo.mask_name = argv[++i];
    } else if (argv[i][0] == '-')
      return usage_error("filter: unknown option %s", argv[i]);
    else
      o.pos[o.npos++] = argv[i];
  }
  if (o.npos != 1) return usage_error("filter takes one FILE%s", "");
  if (need_out(&o, "filter")) return 2;
  int kept = 0;
  if (ds_filter(o.pos[0], &fo, o.out, o.force, &kept)) return fail();
  printf("%s: %d demos kept%s%s\n", o.out ? o.out : o.pos[0], kept, fo.mask_name ? " in mask/" : "",
         fo.mask_name ? fo.mask_name : "");
  return 0;
}

static int cmd_delete(int argc, char **argv) {
  outArgs o;
  if (out_args(&o, argc)) return fail();
  for (int i = 0; i < argc; i++) {
    int t = take_out(&o, &i, argc, argv);
    if (t < 0) return usage_error("-o needs a file%s", "");
    if (t) continue;
    if (argv[i][0] == '-') return usage_error("delete: unknown option %s", argv[i]);
    o.pos[o.npos++] = argv[i];
  }
  if (o.npos < 2) return usage_error("delete needs FILE and at least one DEMO%s", "");
  if (need_out(&o, "delete")) return 2;
  if (ds_delete(o.pos[0], o.pos + 1, o.npos - 1, o.out, o.force)) return fail();
  printf("%s: deleted %d demo(s)\n", o.out ? o.out : o.pos[0], o.npos - 1);
  return 0;
}

static int cmd_trim(int argc, char **argv) {
  outArgs o;
  if (out_args(&o, argc)) return fail();
  int64_t start = 0, end = 0; /* end 0: to the end */
  for (int i = 0; i < argc; i++) {
    int t = take_out(&o, &i, argc, argv);
    if (t < 0) return usage_error("-o needs a file%s", "");
    if (t) continue;
    if (!strcmp(argv[i], "--start")) {
      if (int_arg(&i, argc, argv, 0, INT64_MAX, &start)) return 2;
    } else if (!strcmp(argv[i], "--end")) {
      if (int_arg(&i, argc, argv, 0, INT64_MAX, &end)) return 2;
    } else if (argv[i][0] == '-')
      return usage_error("trim: unknown option %s", argv[i]);
    else
      o.pos[o.npos++] = argv[i];
  }
  if (o.npos != 2) return usage_error("trim takes FILE and DEMO%s", "");
  if (need_out(&o, "trim")) return 2;
  if (ds_trim(o.pos[0], o.pos[1], start, end, o.out, o.force)) return fail();
  printf("%s: trimmed %s\n", o.out ? o.out : o.pos[0], o.pos[1]);
  return 0;
}

static int cmd_convert(int argc, char **argv) {
  outArgs o;
  if (out_args(&o, argc)) return fail();
  const char *to = NULL;
  for (int i = 0; i < argc; i++) {
    int t = take_out(&o, &i, argc, argv);
    if (t < 0) return usage_error("-o needs a file%s", "");
    if (t) continue;
    if (!strcmp(argv[i], "--to")) {
      if (i + 1 >= argc) return usage_error("--to needs a format (see dataset --help)%s", "");
      to = argv[++i];
    } else if (argv[i][0] == '-')
      return usage_error("convert: unknown option %s", argv[i]);
    else
      o.pos[o.npos++] = argv[i];
  }
  if (o.npos != 1) return usage_error("convert takes one FILE%s", "");
  if (!to) return usage_error("convert: give --to FORMAT (see dataset --help)%s", "");
  if (!o.out || o.in_place) return usage_error("convert: give -o OUT%s", "");
  dsConvertResult r;
  if (ds_convert(o.pos[0], to, o.out, o.force, &r)) return fail();
  /* one line: what was written and, when something was left out, what and why */
  printf("%s: written in %s layout: %lld episodes, %lld steps; observation keys %s", o.out, to,
         (long long)r.episodes, (long long)r.steps, r.keys);
  if (r.skipped[0]) printf("; LEFT OUT: %s (%s)", r.skipped, r.why);
  if (r.note[0]) printf("; %s", r.note);
  printf("\n");
  return 0;
}

static int cmd_synth(int argc, char **argv) {
  dsSynthOpts so;
  ds_synth_default(&so);
  const char *out = NULL;
  int64_t v;
  for (int i = 0; i < argc; i++) {
    if (!strcmp(argv[i], "--demos")) {
      if (int_arg(&i, argc, argv, 1, INT_MAX, &v)) return 2;
      so.demos = (int)v;
    } else if (!strcmp(argv[i], "--steps")) {
      if (int_arg(&i, argc, argv, 1, INT_MAX, &v)) return 2;
      so.steps = (int)v;
    } else if (!strcmp(argv[i], "--image")) {
      if (int_arg(&i, argc, argv, 0, 1024, &v)) return 2;
      so.image_px = (int)v;
    } else if (!strcmp(argv[i], "--seed")) {
      if (int_arg(&i, argc, argv, 0, INT64_MAX, &v)) return 2;
      so.seed = (uint64_t)v;
    } else if (!strcmp(argv[i], "--task")) {
      if (i + 1 >= argc) return usage_error("--task needs a name%s", "");
      so.task = argv[++i];
    } else if (argv[i][0] == '-')
      return usage_error("synth: unknown option %s", argv[i]);
    else if (!out)
      out = argv[i];
    else
      return usage_error("synth takes one OUT file%s", "");
  }
  if (!out) return usage_error("synth needs an OUT file%s", "");
  if (so.demos < 1 || so.steps < 1 || so.image_px < 0 || so.image_px > 1024)
    return usage_error("synth: --demos and --steps must be >= 1, --image 0..1024%s", "");
  dsSynthResult r;
  if (ds_synth(out, &so, &r)) return fail();
  printf("%s: recorded %d demos (%d successful), %lld steps\n", out, r.demos, r.successes,
         (long long)r.steps);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    print_usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  /* a damaged file can send libhdf5 into a loop: give up with a message instead of hanging */
  double open_timeout;
  if (tk_env_check() || tk_env_f64("DK_OPEN_TIMEOUT", 0, 1e6, 30, &open_timeout)) {
    tk_die_msg("dataset");
    return 2;
  }
  ds_set_open_timeout(open_timeout);
  const char *cmd = argv[1];
  int n = argc - 2;
  char **a = argv + 2;
  for (int i = 0; i < n; i++)
    if (!strcmp(a[i], "--help") || !strcmp(a[i], "-h")) {
      print_usage(stdout);
      return 0;
    }
  int rc;
  if (!strcmp(cmd, "info"))
    rc = cmd_info(n, a);
  else if (!strcmp(cmd, "validate"))
    rc = cmd_validate(n, a);
  else if (!strcmp(cmd, "recover"))
    rc = cmd_recover(n, a);
  else if (!strcmp(cmd, "merge"))
    rc = cmd_merge(n, a);
  else if (!strcmp(cmd, "split"))
    rc = cmd_split(n, a);
  else if (!strcmp(cmd, "filter"))
    rc = cmd_filter(n, a);
  else if (!strcmp(cmd, "delete"))
    rc = cmd_delete(n, a);
  else if (!strcmp(cmd, "trim"))
    rc = cmd_trim(n, a);
  else if (!strcmp(cmd, "convert"))
    rc = cmd_convert(n, a);
  else if (!strcmp(cmd, "synth"))
    rc = cmd_synth(n, a);
  else if (!strcmp(cmd, "replay"))
    rc = cmd_replay(n, a);
  else
    rc = usage_error("unknown command '%s'", cmd);
  free(pos_block);
  return rc;
}
