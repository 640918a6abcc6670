/* tests/dataset/gen.h -- deterministic episodes: every value is a function of (episode, step,
 * element), so a reader can check any stored episode exactly without keeping a copy. */
#ifndef GEN_H
#define GEN_H

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ds.h"
#include "tk.h"

#define GEN_A 7
#define GEN_S 12

static inline int64_t gen_len(int64_t ep) { return 20 + (ep * 37) % 90; }
static inline double gen_action(int64_t ep, int64_t t, int j) {
  return sin(0.37 * (double)ep + 0.05 * (double)t + j);
}
static inline double gen_state(int64_t ep, int64_t t, int j) {
  return (double)ep * 100.0 + (double)t + 0.001 * j;
}
static inline double gen_pos(int64_t ep, int64_t t, int j) {
  return cos(0.1 * (double)ep + 0.01 * (double)t * (j + 1));
}
static inline uint8_t gen_px(int64_t ep, int64_t t, int64_t i) {
  return (uint8_t)((ep * 31 + t * 7 + i * 13 + (i >> 7)) & 255);
}

static const dsEpisodeInfo gen_info = {
    .task = "gen_task", .operator_name = "gen", .device = "scripted", .control_hz = 20};

typedef struct {
  int image_px; /* 0: low-dim only */
  double publish_ratio;
} genOpts;

static inline void gen_schema(dsWriterOpts *o, const genOpts *g) {
  ds_writer_default(o);
  o->env_name = "gen_task";
  o->schema.action_dim = GEN_A;
  o->schema.state_dim = GEN_S;
  int64_t three[1] = {3};
  ds_schema_add(&o->schema, "robot0_eef_pos", DS_F64, 1, three);
  if (g && g->image_px > 0) {
    int64_t sh[3] = {g->image_px, g->image_px, 3};
    ds_schema_add(&o->schema, "agentview_image", DS_U8, 3, sh);
  }
  if (g) o->publish_ratio = g->publish_ratio;
}

/* Record episode ep (already begun) fully; returns 0 or the writer's error. */
static inline int gen_record(dsWriter *w, int64_t ep, int image_px, dsOutcome outcome) {
  int64_t n = gen_len(ep);
  double act[GEN_A], st[GEN_S], pos[3];
  size_t npx = (size_t)image_px * image_px * 3;
  uint8_t *img = image_px ? malloc(npx) : NULL;
  int rc = 0;
  for (int64_t t = 0; t <= n && !rc; t++) {
    for (int j = 0; j < 3; j++)
      pos[j] = gen_pos(ep, t, j);
    for (size_t i = 0; i < npx; i++)
      img[i] = gen_px(ep, t, (int64_t)i);
    if (t == n) {
      const void *fin[2] = {pos, img};
      rc = ds_writer_end(w, outcome, fin, ep % 3);
      break;
    }
    for (int j = 0; j < GEN_A; j++)
      act[j] = gen_action(ep, t, j);
    for (int j = 0; j < GEN_S; j++)
      st[j] = gen_state(ep, t, j);
    dsStep s = {.action = act,
                .state = st,
                .reward = (double)t * 0.5,
                .done = 0,
                .timestamp = 0.05 * (double)t,
                .intervention = (int)((t / 10) % 2)};
    s.obs[0] = pos;
    s.obs[1] = img;
    rc = ds_writer_add_step(w, &s);
  }
  free(img);
  return rc;
}

/* Check demo at position i of f against the generator; returns 0 or writes why into msg. */
static inline int gen_verify(dsFile *f, int i, int image_px, char *msg, size_t msgn) {
  const dsDemoInfo *d = ds_demo(f, i);
  int64_t ep = d->index, n = gen_len(ep);
  if (d->num_samples != n)
    return snprintf(msg, msgn, "%s: %lld samples, expected %lld", d->name, (long long)d->num_samples,
                    (long long)n),
           1;
  dsEpisode e;
  if (ds_read_episode(f, i, &e)) return snprintf(msg, msgn, "%s: read: %s", d->name, tk_errmsg()), 1;
  int bad = 0;
  int ki = ds_schema_find(ds_schema(f), "agentview_image"),
      kp = ds_schema_find(ds_schema(f), "robot0_eef_pos");
  for (int64_t t = 0; t < n && !bad; t++) {
    for (int j = 0; j < GEN_A && !bad; j++)
      if (e.actions[t * GEN_A + j] != gen_action(ep, t, j))
        bad = snprintf(msg, msgn, "%s: action %lld,%d", d->name, (long long)t, j);
    for (int j = 0; j < GEN_S && !bad; j++)
      if (e.states[t * GEN_S + j] != gen_state(ep, t, j))
        bad = snprintf(msg, msgn, "%s: state %lld,%d", d->name, (long long)t, j);
    for (int j = 0; j < 3 && !bad; j++) {
      if (((double *)e.obs[kp])[t * 3 + j] != gen_pos(ep, t, j))
        bad = snprintf(msg, msgn, "%s: obs %lld", d->name, (long long)t);
      if (((double *)e.next_obs[kp])[t * 3 + j] != gen_pos(ep, t + 1, j))
        bad = snprintf(msg, msgn, "%s: next_obs %lld", d->name, (long long)t);
    }
    if (e.rewards[t] != (double)t * 0.5) bad = snprintf(msg, msgn, "%s: reward %lld", d->name, (long long)t);
    if (e.dones[t] != (t == n - 1 && d->success == 1))
      bad = snprintf(msg, msgn, "%s: done %lld", d->name, (long long)t);
    if (!e.timestamps || e.timestamps[t] != 0.05 * (double)t)
      bad = snprintf(msg, msgn, "%s: timestamp %lld", d->name, (long long)t);
    if (!e.interventions || e.interventions[t] != (t / 10) % 2)
      bad = snprintf(msg, msgn, "%s: intervention %lld", d->name, (long long)t);
    if (image_px && !bad) {
      if (ki < 0) bad = snprintf(msg, msgn, "no image key");
      size_t npx = (size_t)image_px * image_px * 3;
      for (size_t q = 0; q < npx && !bad; q++) {
        if (((uint8_t *)e.obs[ki])[(size_t)t * npx + q] != gen_px(ep, t, (int64_t)q))
          bad = snprintf(msg, msgn, "%s: image %lld", d->name, (long long)t);
        if (((uint8_t *)e.next_obs[ki])[(size_t)t * npx + q] != gen_px(ep, t + 1, (int64_t)q))
          bad = snprintf(msg, msgn, "%s: next image %lld", d->name, (long long)t);
      }
    }
  }
  ds_episode_free(&e);
  if (!bad && d->missed_deadlines != ep % 3) bad = snprintf(msg, msgn, "%s: missed_deadlines", d->name);
  return bad ? 1 : 0;
}

#endif
