/* viewer/viewer_main.c -- the `viewer` command: the window, headless exports, watching a policy, and the
 * report page of a run. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "tk_plot.h"
#include "vw.h"

static void usage(FILE *f) {
  fputs(
      "usage: viewer DATASET.h5 [--demo N]                       the window\n"
      "       viewer DATASET.h5 --demo N --frame T --export OUT.png  one frame, headless\n"
      "       viewer DATASET.h5 --demo N --export-all DIR            every frame, headless\n"
      "\n"
      "Look at a recorded episode: the MuJoCo scene set exactly from the stored state (agentview camera),\n"
      "the actions, rewards and interventions plotted over the episode with a cursor at the frame, and\n"
      "(exports) the recorded camera frames. Files without states (other tools') export frames and\n"
      "plots, with a line saying why the scene is absent.\n"
      "\n"
      "  --demo N          demo_N (default: the first demo)\n"
      "  --frame T         step (default 0; negative counts from the end)\n"
      "  --export OUT.png  write that frame as a 1280x720 PNG (no display needed)\n"
      "  --export-all DIR  write every frame of the demo as DIR/frame_00000.png, ...\n"
      "  --plot-keys a,b   also plot these low-dim observation keys (at most 8 series)\n"
      "  --screenshot F    window: save the last frame shown to F when it closes\n"
      "  --frames K        window: close after K frames (scripts and tests)\n"
      "  --force           replace an existing output of another kind (not a PNG, not a page; inputs never)\n"
      "\n"
      "Window keys: Space play/pause, Left/Right step, Up/Down speed, Home/End, N/P next/previous demo,\n"
      "Q or Esc quit; drag to orbit (right button pans), wheel zooms.\n"
      "\n"
      "       viewer --policy P.h5 [--task NAME] [--seed S]          watch a policy act live\n"
      "A policy file (bc-train's or rl-finetune's) drives the task at its control rate, episode after\n"
      "episode from seed S (default 1000000000, bc-eval's held-out seeds), its actions plotted below.\n"
      "\n"
      "       viewer --report DIR [--out FILE]                        the report page of a run\n"
      "One self-contained HTML page (the plots inline: mail it, open it anywhere) from the files\n"
      "scripts/demo.sh writes into DIR: the dataset's summary (task, demos, successes, steps, keys,\n"
      "cameras, size), bc-train's plots and the epoch it chose, bc-eval's success on held-out seeds,\n"
      "rl-finetune's comparison with scratch (the compare line and plot), and what each number is.\n"
      "A file that is not there is a line on the page; a damaged one is an error and nothing is written.\n"
      "  --out FILE        the page (default DIR/report.html)\n"
      "  --demos FILE      the dataset (default DIR/demos.h5)\n"
      "  --bc FILE         bc-train's policy (default DIR/policy.h5) with PREFIX.csv, PREFIX_loss.png,\n"
      "                    PREFIX_success.png beside it (PREFIX: FILE without .h5)\n"
      "  --bc-eval FILE    bc-eval --json's output (default DIR/bc_eval.json)\n"
      "  --ft FILE         rl-finetune's --out (default DIR/ft.h5) with FT_compare.csv and\n"
      "                    FT_compare.png beside it (without --compare: FT.csv), and FT_eval.json\n"
      "                    (bc-eval FT.h5 --json: the fine-tuned policy on the held-out seeds)\n"
      "  --target X        the success rate that counts as arrived: rl-finetune's --target (0.95)\n"
      "\n"
      "Exit status: 0 done, 1 error (one line naming the file and the problem), 2 usage.\n",
      f);
}

int main(int argc, char **argv) {
  const char *path = NULL, *out = NULL, *dir = NULL, *shot = NULL, *policy = NULL, *task = NULL,
             *plot_keys = NULL, *report = NULL;
  vwReportOpts ro;
  vw_report_default(&ro);
  int report_opt = 0;            /* a report option given (usage error without --report) */
  uint64_t seed = 1000000000ull; /* bc-eval's held-out seeds */
  int frames = 0, force = 0;
  long long demo = -1, frame = 0;
  if (tk_env_check()) {
    tk_die_msg("viewer");
    return 2;
  }
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    int64_t x;
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else if (a[0] != '-' && !path) {
      path = a;
    } else if (!strcmp(a, "--force")) {
      force = 1;
    } else if (!v) {
      fprintf(stderr, "viewer: %s needs a value (or is unknown)\n", a);
      return 2;
    } else if (!strcmp(a, "--export")) {
      out = argv[++i];
    } else if (!strcmp(a, "--export-all")) {
      dir = argv[++i];
    } else if (!strcmp(a, "--policy")) {
      policy = argv[++i];
    } else if (!strcmp(a, "--task")) {
      task = argv[++i];
    } else if (!strcmp(a, "--report")) {
      report = argv[++i];
    } else if (!strcmp(a, "--out") || !strcmp(a, "--demos") || !strcmp(a, "--bc") ||
               !strcmp(a, "--bc-eval") || !strcmp(a, "--ft")) {
      const char **dst = !strcmp(a, "--out")     ? &ro.out
                         : !strcmp(a, "--demos") ? &ro.demos
                         : !strcmp(a, "--bc")    ? &ro.policy
                         : !strcmp(a, "--ft")    ? &ro.finetune
                                                 : &ro.bc_eval;
      *dst = argv[++i];
      report_opt = 1;
    } else if (!strcmp(a, "--target")) {
      if (tk_opt_f64(a, v, 1e-6, 1, &ro.target)) {
        tk_die_msg("viewer");
        return 2;
      }
      i++;
      report_opt = 1;
    } else if (!strcmp(a, "--seed")) {
      if (tk_opt_int(a, v, 0, INT64_MAX, &x)) {
        tk_die_msg("viewer");
        return 2;
      }
      i++;
      seed = (uint64_t)x;
    } else if (!strcmp(a, "--plot-keys")) {
      plot_keys = argv[++i];
    } else if (!strcmp(a, "--screenshot")) {
      shot = argv[++i];
    } else if (!strcmp(a, "--frames")) {
      if (tk_opt_int(a, v, 1, INT_MAX, &x)) {
        tk_die_msg("viewer");
        return 2;
      }
      i++;
      frames = (int)x;
    } else if (!strcmp(a, "--demo") || !strcmp(a, "--frame")) {
      /* --frame counts from the end when negative */
      if (tk_opt_int(a, v, !strcmp(a, "--demo") ? 0 : -INT64_MAX, INT64_MAX, &x)) {
        tk_die_msg("viewer");
        return 2;
      }
      i++;
      if (!strcmp(a, "--demo"))
        demo = x;
      else
        frame = x;
    } else {
      fprintf(stderr, "viewer: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
  }
  if (report_opt && !report) {
    fprintf(stderr, "viewer: --out, --demos, --bc, --bc-eval, --ft and --target go with --report DIR\n");
    return 2;
  }
  double open_timeout; /* how long a damaged file may keep HDF5 busy (the dataset and the report read one) */
  if (tk_env_f64("DK_OPEN_TIMEOUT", 0, 1e6, 30, &open_timeout)) {
    tk_die_msg("viewer");
    return 2;
  }
  ds_set_open_timeout(open_timeout);
  if (report) { /* the report page of a run */
    if (path || out || dir || policy || shot) {
      fprintf(stderr, "viewer: --report DIR writes the report page; it takes no dataset, export or policy\n");
      return 2;
    }
    ro.dir = report;
    ro.force = force;
    vwReportResult res;
    int rc = vw_report(&ro, &res);
    if (rc)
      tk_die_msg("viewer");
    else if (res.missing)
      printf("viewer: report %s (%d piece%s not found: said on the page)\n", res.out, res.missing,
             res.missing == 1 ? "" : "s");
    else
      printf("viewer: report %s\n", res.out);
    tk_plot_cleanup();
    return rc ? 1 : 0;
  }
  { /* the output rule: no PNG is written over an input, or over a file of another kind without --force */
    const char *in[] = {path, policy};
    const char *outs[] = {out, shot};
    for (int k = 0; k < 2; k++)
      if (outs[k] && ds_output_check(outs[k], DS_KIND_PNG, in, 2, force)) {
        tk_die_msg("viewer");
        return 1;
      }
    if (dir && ds_output_check(dir, DS_KIND_DIR, in, 2, force)) {
      tk_die_msg("viewer");
      return 1;
    }
  }
  if (policy) { /* watch a policy act live */
    if (path || out || dir) {
      fprintf(stderr, "viewer: --policy shows a policy acting live; it takes no dataset or export\n");
      return 2;
    }
    int rc = vw_watch_policy(policy, task, seed, shot, frames);
    if (rc) tk_die_msg("viewer");
    tk_plot_cleanup();
    return rc ? 1 : 0;
  }
  if (!path) {
    usage(stderr);
    return 2;
  }
  dsFile *f;
  if (ds_open(path, 0, &f)) {
    tk_die_msg("viewer");
    return 1;
  }
  int pos = 0;
  if (demo >= 0) {
    char name[32];
    snprintf(name, sizeof name, "demo_%lld", demo);
    pos = ds_find_demo(f, name);
    if (pos < 0) {
      fprintf(stderr, "viewer: %s: no %s (%d demos)\n", path, name, ds_num_demos(f));
      ds_close(f);
      return 1;
    }
  } else if (ds_num_demos(f) == 0) {
    fprintf(stderr, "viewer: %s: no demos\n", path);
    ds_close(f);
    return 1;
  }
  if (!out && !dir) { /* the window */
    int rc = vw_window_run(f, pos, plot_keys, shot, frames);
    if (rc) tk_die_msg("viewer");
    ds_close(f);
    tk_plot_cleanup();
    return rc ? 1 : 0;
  }
  vwEpisode *v;
  int rc = vw_episode_open(f, pos, &v);
  if (!rc && (rc = vw_set_plot_keys(v, plot_keys))) vw_episode_free(v);
  if (!rc) {
    if (vw_why_no_scene(v)) fprintf(stderr, "viewer: %s: %s\n", path, vw_why_no_scene(v));
    int64_t n = vw_episode_length(v);
    if (out) {
      int64_t t = frame < 0 ? n + frame : frame;
      rc = vw_export_png(v, t, out);
      if (!rc) printf("viewer: %s\n", out);
    }
    if (!rc && dir) {
      if (mkdir(dir, 0777) && errno != EEXIST)
        rc = tk_error(TK_EIO, "%s: cannot create: %s", dir, strerror(errno));
      char p[4200];
      for (int64_t t = 0; !rc && t < n; t++) {
        snprintf(p, sizeof p, "%s/frame_%05lld.png", dir, (long long)t);
        const char *in[] = {path};
        if (!(rc = ds_output_check(p, DS_KIND_PNG, in, 1, force))) rc = vw_export_png(v, t, p);
      }
      if (!rc) printf("viewer: %lld frames in %s\n", (long long)n, dir);
    }
    vw_episode_free(v);
  }
  if (rc) tk_die_msg("viewer");
  ds_close(f);
  tk_plot_cleanup();
  return rc ? 1 : 0;
}
