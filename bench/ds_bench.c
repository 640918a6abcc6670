/* bench/ds_bench.c -- dataset figures: writer steps/s (low-dim and with two 84x84 cameras),
 * control-thread cost of add_step, loader MB/s next to h5py on the same file
 * (../shared/anchors/h5_read_bench.py, run here in the same process tree).
 * Prints name=value lines. Usage: ds_bench [--dir DIR] [--demos N] [--steps T] [--anchors DIR] */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ds.h"
#include "tk.h"

#include "bench_util.h"

typedef struct {
  int demos, steps, cams;
} benchCfg;

/* robomimic lift low-dim schema: 5 keys, 26 floats, 32-float states */
static void schema(dsWriterOpts *o, int cams) {
  ds_writer_default(o);
  o->env_name = "bench";
  o->schema.action_dim = 7;
  o->schema.state_dim = 32;
  const char *names[] = {"robot0_eef_pos", "robot0_eef_quat", "robot0_gripper_qpos", "robot0_joint_pos",
                         "object"};
  int64_t dims[] = {3, 4, 2, 7, 10};
  for (int k = 0; k < 5; k++)
    ds_schema_add(&o->schema, names[k], DS_F64, 1, &dims[k]);
  int64_t img[3] = {84, 84, 3};
  if (cams > 0) ds_schema_add(&o->schema, "agentview_image", DS_U8, 3, img);
  if (cams > 1) ds_schema_add(&o->schema, "robot0_eye_in_hand_image", DS_U8, 3, img);
}

static int write_file(const char *path, const benchCfg *c, double *steps_per_s, double *add_ns_mean,
                      double *add_ns_p99) {
  dsWriterOpts o;
  schema(&o, c->cams);
  char cmd[4300];
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s.staging'", path, path);
  if (system(cmd)) return tk_error(TK_EIO, "cannot clear %s", path);
  double act[7], st[32], lo[5][10];
  uint8_t *img = malloc(84 * 84 * 3);
  for (int i = 0; i < 84 * 84 * 3; i++)
    img[i] = (uint8_t)((i * 7) ^ (i >> 5));
  tkRng r;
  tk_rng_seed(&r, 1);
  double *lat = malloc(sizeof(double) * (size_t)c->demos * (size_t)c->steps);
  int64_t nl = 0;
  double t0 = tk_now_s();
  dsWriter *w;
  int rc = ds_writer_open(path, &o, &w);
  if (rc) return rc;
  for (int e = 0; e < c->demos && !rc; e++) {
    dsEpisodeInfo info = {.task = "bench", .seed = e, .device = "bench", .control_hz = 20};
    rc = ds_writer_begin(w, &info, NULL);
    for (int t = 0; t < c->steps && !rc; t++) {
      for (int j = 0; j < 7; j++)
        act[j] = tk_rng_uniform(&r) * 2 - 1;
      for (int j = 0; j < 32; j++)
        st[j] = t + j;
      for (int k = 0; k < 5; k++)
        for (int j = 0; j < 10; j++)
          lo[k][j] = t * 0.01 + j;
      img[t % 1000] = (uint8_t)t;
      dsStep s = {.action = act, .state = st, .reward = 0, .timestamp = t * 0.05};
      for (int k = 0; k < 5; k++)
        s.obs[k] = lo[k];
      for (int k = 0; k < c->cams; k++)
        s.obs[5 + k] = img;
      int64_t a = tk_now_ns();
      rc = ds_writer_add_step(w, &s);
      lat[nl++] = (double)(tk_now_ns() - a);
    }
    if (!rc) rc = ds_writer_end(w, DS_SUCCESS, NULL, 0);
  }
  int crc = ds_writer_close(w);
  if (!rc) rc = crc;
  double el = tk_now_s() - t0;
  *steps_per_s = (double)c->demos * c->steps / el;
  double sum = 0;
  for (int64_t i = 0; i < nl; i++)
    sum += lat[i];
  *add_ns_mean = nl ? sum / (double)nl : 0;
  qsort(lat, (size_t)nl, sizeof(double), cmp_d);
  *add_ns_p99 = nl ? lat[(int64_t)(0.99 * (double)(nl - 1))] : 0;
  free(lat);
  free(img);
  return rc;
}

static double load_only_s[5];
static int load_only_n;

static int load_once(const char *path, int flags, double *secs, double *payload) {
  double t0 = tk_now_s();
  dsFile *f;
  int rc = ds_open(path, flags, &f);
  if (rc) return rc;
  dsLoaded L;
  double t1 = tk_now_s();
  rc = ds_load(f, NULL, &L);
  *secs = tk_now_s() - t0;
  if (flags && load_only_n < 5) load_only_s[load_only_n++] = tk_now_s() - t1;
  if (!rc) *payload = (double)L.n * (L.obs_dim + L.act_dim) * 4.0;
  ds_loaded_free(&L);
  ds_close(f);
  return rc;
}

int main(int argc, char **argv) {
  const char *dir = "/tmp";
  const char *anchors = NULL;
  benchCfg lowdim = {.demos = 200, .steps = 500, .cams = 0};
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dir") && i + 1 < argc)
      dir = argv[++i];
    else if (!strcmp(argv[i], "--demos") && i + 1 < argc)
      lowdim.demos = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
      lowdim.steps = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--anchors") && i + 1 < argc)
      anchors = argv[++i];
    else {
      fprintf(stderr, "usage: ds_bench [--dir DIR] [--demos N] [--steps T] [--anchors DIR]\n");
      return 2;
    }
  }
  char p1[4200], p2[4200];
  snprintf(p1, sizeof p1, "%s/ds_bench_lowdim.h5", dir);
  snprintf(p2, sizeof p2, "%s/ds_bench_cams.h5", dir);
  double sps, mean, p99;
  if (write_file(p1, &lowdim, &sps, &mean, &p99)) {
    tk_die_msg("ds_bench");
    return 1;
  }
  printf("writer_lowdim_steps=%d\nwriter_lowdim_steps_per_s=%.0f\nwriter_add_step_ns_mean=%.0f\nwriter_add_"
         "step_ns_p99=%.0f\n",
         lowdim.demos * lowdim.steps, sps, mean, p99);
  benchCfg cams = {.demos = 20, .steps = 200, .cams = 2};
  if (write_file(p2, &cams, &sps, &mean, &p99)) {
    tk_die_msg("ds_bench");
    return 1;
  }
  printf("writer_2cam84_steps_per_s=%.0f\nwriter_2cam84_add_step_ns_p99=%.0f\n", sps, p99);

  double best_v = 1e30, best_n = 1e30, payload = 0, ts_v[5], ts_n[5];
  for (int r = 0; r < 5; r++) {
    double s;
    if (load_once(p1, 0, &s, &payload)) {
      tk_die_msg("ds_bench");
      return 1;
    }
    ts_v[r] = s;
    best_v = fmin(best_v, s);
    if (load_once(p1, DS_OPEN_NO_VALUE_CHECK, &s, &payload)) {
      tk_die_msg("ds_bench");
      return 1;
    }
    ts_n[r] = s;
    best_n = fmin(best_n, s);
  }
  qsort(ts_v, 5, sizeof(double), cmp_d);
  qsort(ts_n, 5, sizeof(double), cmp_d);
  double mbps_v = payload / ts_v[2] / 1e6, mbps_n = payload / ts_n[2] / 1e6;
  printf("loader_payload_bytes=%.0f\nloader_open_structure_load_s_median=%.4f\nloader_open_full_validation_"
         "load_s_median=%.4f\n"
         "loader_MBps_median=%.1f\nloader_validated_MBps_median=%.1f\n",
         payload, ts_n[2], ts_v[2], mbps_n, mbps_v);

  /* the h5py anchor on the same file */
  char script[4300];
  if (anchors)
    snprintf(script, sizeof script, "%s/h5_read_bench.py", anchors);
  else
    snprintf(script, sizeof script, "%s/../shared/anchors/h5_read_bench.py", DK_SRC_ROOT);
  if (!tk_file_exists(script)) {
    printf("h5py_anchor=missing (%s)\n", script);
    return 0;
  }
  char cmd[9000];
  snprintf(cmd, sizeof cmd, "/usr/bin/python3 '%s' '%s' --repeats 5 2>/dev/null", script, p1);
  FILE *pp = popen(cmd, "r");
  char line[4096] = {0};
  double h5py_s = 0;
  while (pp && fgets(line, sizeof line, pp)) {
    char *m = strstr(line, "read_s_median=");
    if (m) h5py_s = atof(m + 14);
  }
  if (pp) pclose(pp);
  if (h5py_s <= 0) {
    printf("h5py_anchor=failed\n");
    return 0;
  }
  /* compared by time on the same file: the anchor keeps float64 (its MB/s counts 8-byte
   * values) while we deliver float32, so MB/s figures are not comparable */
  qsort(load_only_s, (size_t)load_only_n, sizeof(double), cmp_d);
  printf("loader_load_step_only_s_median=%.4f\n", load_only_s[load_only_n / 2]);
  printf("h5py_read_s_median=%.4f\nloader_speedup_vs_h5py=%.2f\nloader_validated_speedup_vs_h5py=%.2f\n",
         h5py_s, h5py_s / ts_n[2], h5py_s / ts_v[2]);
  unlink(p2);
  return 0;
}
