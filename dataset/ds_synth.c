/* dataset/ds_synth.c -- synthetic point-reaching recordings through the real writer. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ds_internal.h"

void ds_synth_default(dsSynthOpts *o) {
  memset(o, 0, sizeof *o);
  o->demos = 10;
  o->steps = 100;
  o->seed = 1;
  o->task = "synth_reach";
  o->noise = 0.3;
  o->publish_ratio = 1.0;
}

static double clamp1(double x) { return x < -1 ? -1 : x > 1 ? 1 : x; }

static void draw(uint8_t *img, int px, const double *p, const double *g) {
  memset(img, 40, (size_t)px * px * 3);
  for (int pass = 0; pass < 2; pass++) {
    const double *c = pass ? p : g;
    int cx = (int)((c[0] + 1) * 0.5 * (px - 1)), cy = (int)((c[1] + 1) * 0.5 * (px - 1));
    int r = TK_MAX(1, px / 16);
    for (int y = cy - r; y <= cy + r; y++)
      for (int x = cx - r; x <= cx + r; x++) {
        if (x < 0 || y < 0 || x >= px || y >= px) continue;
        uint8_t *q = img + ((size_t)y * px + x) * 3;
        q[0] = pass ? 230 : 40;
        q[1] = pass ? 60 : 200;
        q[2] = (uint8_t)(120 + 100 * c[2]);
      }
  }
}

int ds_synth(const char *path, const dsSynthOpts *so, dsSynthResult *res) {
  memset(res, 0, sizeof *res);
  dsWriterOpts o;
  ds_writer_default(&o);
  o.env_name = so->task ? so->task : "synth_reach";
  o.env_kwargs_json = "{\"generator\": \"dataset synth\"}";
  o.publish_ratio = so->publish_ratio;
  o.lowdim_gzip = so->lowdim_gzip;
  o.schema.action_dim = 7;
  o.schema.state_dim = 6;
  int64_t three[1] = {3};
  ds_schema_add(&o.schema, "robot0_eef_pos", DS_F64, 1, three);
  ds_schema_add(&o.schema, "goal_pos", DS_F64, 1, three);
  ds_schema_add(&o.schema, "robot0_eef_vel", DS_F64, 1, three);
  int px = so->image_px;
  uint8_t *img = NULL;
  if (px > 0) {
    int64_t shape[3] = {px, px, 3};
    ds_schema_add(&o.schema, "agentview_image", DS_U8, 3, shape);
    img = malloc((size_t)px * px * 3);
    if (!img) return tk_error(TK_ENOMEM, "out of memory");
  }
  double t0 = tk_now_s();
  dsWriter *w;
  int rc = ds_writer_open(path, &o, &w);
  if (rc) {
    free(img);
    return rc;
  }
  tkRng rng;
  tk_rng_seed(&rng, so->seed);
  const double dt = 0.05, gain = 0.08;
  for (int e = 0; e < so->demos && !rc; e++) {
    double p[3], v[3] = {0, 0, 0}, g[3], state[6];
    for (int i = 0; i < 3; i++) {
      p[i] = tk_rng_range(&rng, -0.8, 0.8);
      g[i] = tk_rng_range(&rng, -0.8, 0.8);
    }
    dsEpisodeInfo info = {.task = o.env_name,
                          .seed = (int64_t)(so->seed * 1000 + (uint64_t)e),
                          .operator_name = "synth",
                          .device = "synthetic",
                          .control_hz = 1.0 / dt};
    if ((rc = ds_writer_begin(w, &info, NULL))) break;
    int success = 0;
    for (int t = 0; t < so->steps; t++) {
      double act[7] = {0};
      for (int i = 0; i < 3; i++)
        act[i] = clamp1((g[i] - p[i]) * 4 + so->noise * tk_rng_normal(&rng) * 0.3);
      act[6] = -1;
      memcpy(state, p, sizeof p);
      memcpy(state + 3, v, sizeof v);
      if (img) draw(img, px, p, g);
      dsStep st = {.action = act, .state = state, .timestamp = t * dt};
      st.obs[0] = p;
      st.obs[1] = g;
      st.obs[2] = v;
      if (img) st.obs[3] = img;
      double d2 = 0;
      for (int i = 0; i < 3; i++) {
        double np = p[i] + gain * act[i];
        v[i] = (np - p[i]) / dt;
        p[i] = np;
        d2 += (g[i] - p[i]) * (g[i] - p[i]);
      }
      success = sqrt(d2) < 0.05;
      st.reward = success ? 1.0 : -sqrt(d2);
      if ((rc = ds_writer_add_step(w, &st))) break;
      res->steps++;
    }
    if (rc) break;
    const void *fin[4] = {p, g, v, img};
    if (img) draw(img, px, p, g);
    if ((rc = ds_writer_end(w, success ? DS_SUCCESS : DS_FAILURE, fin, 0))) break;
    res->demos++;
    res->successes += success;
  }
  int crc = ds_writer_close(w);
  if (!rc) rc = crc;
  res->seconds = tk_now_s() - t0;
  free(img);
  return rc;
}
