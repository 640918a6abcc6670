/* tests/common/tt_mujoco.h -- loading a small test scene from MJCF text (for the render and
 * window suites). */
#ifndef TT_MUJOCO_H
#define TT_MUJOCO_H

#include <criterion/criterion.h>
#include <mujoco/mujoco.h>
#include <stdio.h>
#include <stdlib.h>

#include "tt.h"

/* MuJoCo's default mju_error prints and then waits for Enter: fail fast instead. */
static inline void tt_mj_fatal(const char *msg) {
  fprintf(stderr, "MuJoCo fatal error: %s\n", msg);
  abort();
}

/* Write the MJCF text to a fresh temporary file and load it. */
static inline mjModel *tt_load_mjcf(const char *xml) {
  mju_user_error = tt_mj_fatal;
  char path[4200], err[512] = "";
  snprintf(path, sizeof path, "%s/scene.xml", tt_tmpdir());
  FILE *f = fopen(path, "w");
  cr_assert(f, "cannot write %s", path);
  fputs(xml, f);
  fclose(f);
  mjModel *m = mj_loadXML(path, NULL, err, sizeof err);
  cr_assert(m, "mj_loadXML: %s", err);
  return m;
}

/* Move the scene's free-floating box (its free joint comes first) along x. */
static inline void tt_set_box_x(const mjModel *m, mjData *d, double x) {
  d->qpos[0] = x; /* free joint: x y z, quaternion */
  mj_forward(m, d);
}

#endif
