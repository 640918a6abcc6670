/* capture/cam_visibility.c -- how well the task cameras see the object and the goal.
 *
 *   cam_visibility --task lift --states S.f64 [--size 84] [--min-px 10]
 *                  [--cam NAME=px,py,pz,xx,xy,xz,yx,yy,yz,fovy]...
 *
 * S.f64: recorded states (the dataset's `states` rows, float64, native byte order, concatenated
 * over demos; scripts/cam_visibility.sh extracts them). For every state and every camera of the
 * model it renders a segmentation image (MuJoCo's mjRND_SEGMENT, so occlusion by the arm and the
 * image border count as in the RGB image) and counts the pixels of each of the task's objects and of
 * its goal body (the row's `objects` and `goal_body`: every geom of the body). A thing is "visible" in a step
 * when it covers at least --min-px pixels. --cam overrides a camera's pose in its body frame (pos, xyaxes as
 * in MJCF) and fovy, to try placements without rebuilding the embedded models. Prints one line per camera and
 * thing: steps visible / steps, median and minimum pixel count. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mujoco/mujoco.h>

#include "cap_render.h"
#include "cap_task.h"
#include "tk.h"

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int override_cam(mjModel *m, const char *arg) {
  char name[64];
  double v[10];
  const char *eq = strchr(arg, '=');
  if (!eq || (size_t)(eq - arg) >= sizeof name) return -1;
  memcpy(name, arg, (size_t)(eq - arg));
  name[eq - arg] = 0;
  if (sscanf(eq + 1, "%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf,%lf", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5],
             &v[6], &v[7], &v[8], &v[9]) != 10)
    return -1;
  int id = mj_name2id(m, mjOBJ_CAMERA, name);
  if (id < 0) return -1;
  /* xyaxes -> rotation (columns x, y, z = x cross y), as MuJoCo's compiler does */
  double x[3] = {v[3], v[4], v[5]}, y[3] = {v[6], v[7], v[8]}, z[3], mat[9];
  mju_normalize3(x);
  double d = mju_dot3(x, y);
  for (int i = 0; i < 3; i++)
    y[i] -= d * x[i];
  mju_normalize3(y);
  mju_cross(z, x, y);
  for (int i = 0; i < 3; i++) {
    mat[3 * i + 0] = x[i];
    mat[3 * i + 1] = y[i];
    mat[3 * i + 2] = z[i];
  }
  mju_copy3(m->cam_pos + 3 * id, v);
  mju_mat2Quat(m->cam_quat + 4 * id, mat);
  m->cam_fovy[id] = v[9];
  return 0;
}

int main(int argc, char **argv) {
  const char *task = NULL, *states = NULL, *cams[8];
  const char *per_step = getenv("CAMVIS_STEPS"); /* debugging: a camera name: its counts per step */
  const char *dump = getenv("CAMVIS_DUMP"); /* debugging: "STEP:FILE.pgm" writes that step's segmentation */
  int ncam_over = 0, size = 84, min_px = 10;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--task") && i + 1 < argc)
      task = argv[++i];
    else if (!strcmp(argv[i], "--states") && i + 1 < argc)
      states = argv[++i];
    else if (!strcmp(argv[i], "--size") && i + 1 < argc)
      size = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--min-px") && i + 1 < argc)
      min_px = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--cam") && i + 1 < argc && ncam_over < 8)
      cams[ncam_over++] = argv[++i];
    else {
      fprintf(stderr,
              "usage: cam_visibility --task T --states S.f64 [--size 84] [--min-px 10] [--cam ...]\n");
      return 2;
    }
  }
  if (!task || !states || size < 1 || size > 480) {
    fprintf(stderr, "cam_visibility: --task and --states are needed (size 1..480)\n");
    return 2;
  }
  capOpts o;
  cap_opts_default(&o);
  o.task = task;
  capModel *cm = NULL;
  capEnv *env = NULL;
  capRender *r = NULL;
  if (cap_model_load(&o, &cm) || cap_env_make(cm, &env)) {
    fprintf(stderr, "cam_visibility: %s\n", tk_errmsg());
    return 1;
  }
  mjModel *m = (mjModel *)cap_model_mujoco(cm); /* a tool: the pose overrides write into the model */
  mjData *d = cap_env_mujoco_data(env);
  for (int i = 0; i < ncam_over; i++)
    if (override_cam(m, cams[i])) {
      fprintf(stderr, "cam_visibility: bad --cam %s (NAME=px,py,pz,xx,xy,xz,yx,yy,yz,fovy)\n", cams[i]);
      return 2;
    }
  if (cap_render_make(m, size, size, &r)) {
    fprintf(stderr, "cam_visibility: %s\n", tk_errmsg());
    return 1;
  }
  int sd = cap_spec(cm)->state_dim;
  FILE *f = fopen(states, "rb");
  if (!f) {
    perror(states);
    return 1;
  }
  fseek(f, 0, SEEK_END);
  long nbytes = ftell(f);
  fseek(f, 0, SEEK_SET);
  long n = nbytes / (long)(sizeof(double) * (size_t)sd);
  double *s = malloc((size_t)n * (size_t)sd * sizeof(double));
  if (!s || fread(s, sizeof(double) * (size_t)sd, (size_t)n, f) != (size_t)n) {
    fprintf(stderr, "cam_visibility: cannot read %ld states of %d from %s\n", n, sd, states);
    return 1;
  }
  fclose(f);

  /* the things: the task's objects, then its goal body (bodies: all their geoms count) */
  enum { MAXT = CAP_MAX_OBJECTS + 1 };
  const char *things[MAXT];
  int bid[MAXT], nt = 0;
  for (int k = 0; k < cm->nobj; k++) {
    things[nt] = cm->task->objects[k];
    bid[nt++] = cm->obj_body[k];
  }
  if (cm->task->goal_body) {
    things[nt] = cm->task->goal_body;
    bid[nt++] = mj_name2id(m, mjOBJ_BODY, cm->task->goal_body);
  }
  int32_t *seg = malloc((size_t)size * (size_t)size * sizeof *seg);
  int *cnt = malloc((size_t)n * sizeof *cnt * MAXT);
  capObs obs;
  for (int c = 0; c < m->ncam; c++) {
    const char *cname = m->names + m->name_camadr[c];
    for (long t = 0; t < n; t++) {
      if (cap_env_set_state(env, s + t * sd, &obs) || cap_render_segment(r, m, d, cname, size, size, seg)) {
        fprintf(stderr, "cam_visibility: %s\n", tk_errmsg());
        return 1;
      }
      if (dump && atol(dump) == t) {
        char path[512];
        snprintf(path, sizeof path, "%s_%s.pgm", strchr(dump, ':') ? strchr(dump, ':') + 1 : "seg", cname);
        FILE *pf = fopen(path, "wb");
        if (pf) {
          fprintf(pf, "P5 %d %d 255\n", size, size);
          for (int p = 0; p < size * size; p++)
            fputc(seg[p] < 0 ? 0 : 40 + (seg[p] * 37) % 215, pf);
          fclose(pf);
        }
      }
      for (int k = 0; k < nt; k++)
        cnt[MAXT * t + k] = 0;
      for (int p = 0; p < size * size; p++)
        for (int k = 0; k < nt; k++)
          if (seg[p] >= 0 && seg[p] < m->ngeom && m->geom_bodyid[seg[p]] == bid[k]) cnt[MAXT * t + k]++;
      if (per_step && !strcmp(per_step, cname)) {
        printf("step %ld", t);
        for (int k = 0; k < nt; k++)
          printf(" %d", cnt[MAXT * t + k]);
        printf("\n");
      }
    }
    for (int k = 0; k < nt; k++) {
      int *v = malloc((size_t)n * sizeof *v), vis = 0;
      for (long t = 0; t < n; t++) {
        v[t] = cnt[MAXT * t + k];
        vis += v[t] >= min_px;
      }
      qsort(v, (size_t)n, sizeof *v, cmp_int);
      printf("%-6s %-12s %-12s visible %4d/%-4ld = %5.1f%%  px median %5d min %5d max %5d\n", task, cname,
             things[k], vis, n, 100.0 * vis / (double)n, v[n / 2], v[0], v[n - 1]);
      free(v);
    }
  }
  free(cnt);
  free(seg);
  free(s);
  cap_render_free(r);
  cap_env_free(env);
  cap_model_free(cm);
  return 0;
}
