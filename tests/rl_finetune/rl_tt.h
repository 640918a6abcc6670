/* tests/rl_finetune/rl_tt.h -- what the rl-finetune suites share: the binaries, a fixture of demos
 * recorded by teleop's scripted operator with a small BC policy trained on them, and whether
 * rl-finetune was built with OpenMPI. */
#ifndef RL_TT_H
#define RL_TT_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tt.h"
#include "tt_cli.h"

static inline const char *rl_bin(void) { return tt_build("rl_finetune/rl-finetune"); }
static inline const char *train_bin(void) { return tt_build("bc/bc-train"); }
static inline const char *eval_bin(void) { return tt_build("bc/bc-eval"); }

/* A small BC policy (extra: more bc-train options). */
static inline void train_bc(const char *dir, const char *data, const char *pol, const char *extra) {
  char *out, *err;
  int rc = run2(dir, &out, &err, "%s %s -o %s --hidden 32,32 --epochs 20 --eval-every 0 --seed 1 --quiet %s",
                train_bin(), data, pol, extra ? extra : "");
  cr_assert_eq(rc, 0, "bc-train %s -> exit %d\nstdout: %s\nstderr: %s", data, rc, out, err);
}

/* a file of 15 lift demos and a BC policy trained on it, in a fresh temporary directory */
typedef struct {
  char dir[4096], demos[4200], bc[4200];
} fixture;

static inline void make_fixture(fixture *f, const char *bc_extra) {
  snprintf(f->dir, sizeof f->dir, "%s", tt_tmpdir());
  snprintf(f->demos, sizeof f->demos, "%s/lift15.h5", f->dir);
  snprintf(f->bc, sizeof f->bc, "%s/bc.h5", f->dir);
  tt_record(f->demos, "lift", 15, 0.3, 0, NULL);
  train_bc(f->dir, f->demos, f->bc, bc_extra);
}

/* rl-finetune that must succeed; returns its stdout (pooled). */
static inline char *finetune_ok(const char *dir, const char *args) {
  char *out, *err;
  int rc = run2(dir, &out, &err, "%s %s", rl_bin(), args);
  cr_assert_eq(rc, 0, "rl-finetune %s -> exit %d\nstdout: %s\nstderr: %s", args, rc, out, err);
  return out;
}

static inline int built_with_mpi(void) {
  char *out = NULL;
  tt_run(&out, "%s --help", rl_bin());
  int yes = out && strstr(out, "MPI: built with OpenMPI") != NULL;
  free(out);
  return yes;
}

#endif
