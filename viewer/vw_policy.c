/* viewer/vw_policy.c -- watching a policy act live in the viewer window: the policy drives the task
 * at its control rate, episode after episode, with its actions plotted along the bottom. */
#include <SDL2/SDL.h>
#include <cairo.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bc.h"
#include "vw.h"

#define STRIP_H 200

/* The actions so far (A columns of cap) as a strip image. */
static int action_strip(int A, const double *cols, int cap, int n, int w, int h, uint8_t *rgb,
                        const double *x) {
  cairo_surface_t *sf = cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h);
  if (cairo_surface_status(sf) != CAIRO_STATUS_SUCCESS) return tk_error(TK_ENOMEM, "cairo surface");
  cairo_t *cr = cairo_create(sf);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  int rc = vw_plot_actions(cr, 0, 0, w, h, "the policy's actions", A, cols, cap, x, n, n > 0 ? n - 1 : NAN);
  cairo_destroy(cr);
  cairo_surface_flush(sf);
  vw_surface_rgb(sf, w, h, rgb);
  cairo_surface_destroy(sf);
  return rc;
}

int vw_watch_policy(const char *policy, const char *task, uint64_t seed, const char *screenshot, int frames) {
  bcPolicy *p = bc_policy_load(policy);
  if (!p) return tk_error_wrap(TK_EFORMAT, "--policy");
  if (!task || !task[0]) task = p->task;
  capOpts co;
  cap_opts_default(&co);
  co.task = task;
  capModel *m = NULL;
  capEnv *env = NULL;
  capWindow *win = NULL;
  bcActor *actor = NULL;
  uint8_t *strip = NULL;
  double *cols = NULL, *x = NULL;
  int rc = 0;
  if (!task || !task[0])
    rc = tk_error(TK_EINVAL, "%s: the policy names no task: pass --task (%s)", policy, cap_task_names());
  if (!rc && (rc = bc_policy_model_load(p, &co, &m))) rc = tk_error_wrap(rc, "%s", policy);
  if (!rc && !(actor = bc_actor_make(p, m))) rc = tk_error_wrap(TK_EINVAL, "%s", policy);
  const capSpec *spec = m ? cap_spec(m) : NULL;
  int W = 1280, H = 720, A = p->act_dim, cap = spec ? spec->horizon : 1;
  if (!rc && SDL_Init(SDL_INIT_VIDEO | SDL_INIT_EVENTS) < 0)
    rc = tk_error(TK_EIO, "no display for the viewer window (%s)", SDL_GetError());
  if (!rc && !(rc = cap_env_make(m, &env))) {
    char title[300];
    snprintf(title, sizeof title, "demokit viewer: %s on %s", policy, task);
    rc = cap_window_open(cap_model_mujoco(m), W, H, title, &win);
    if (!rc) cap_window_camera(win, "agentview");
  }
  if (!rc) {
    nn_set_threads(1); /* one row per step: the same bits as bc-eval's workers, whatever the cores */
    strip = malloc((size_t)W * STRIP_H * 3);
    cols = calloc((size_t)A * (size_t)cap, sizeof(double));
    x = malloc(sizeof(double) * (size_t)cap);
    if (!strip || !cols || !x) rc = tk_error(TK_ENOMEM, "out of memory");
    for (int i = 0; !rc && i < cap; i++)
      x[i] = i;
  }
  int episodes = 0, successes = 0, drawn = 0, quit = 0, paused = 0;
  int64_t t = 0;
  capObs obs;
  double act[CAP_MAX_ACT] = {0};
  char msg[200] = "";
  if (!rc) rc = cap_env_reset(env, seed, &obs);
  if (!rc) bc_actor_reset(actor, seed);
  double next = tk_now_s();
  while (!rc && !quit) {
    SDL_Event ev;
    while (SDL_PollEvent(&ev)) {
      if (cap_window_events(win, &ev)) quit = 1;
      if (ev.type == SDL_KEYDOWN && (ev.key.keysym.sym == SDLK_q || ev.key.keysym.sym == SDLK_ESCAPE))
        quit = 1;
      if (ev.type == SDL_KEYDOWN && ev.key.keysym.sym == SDLK_SPACE) paused = !paused;
    }
    if (!paused && tk_now_s() >= next) {
      next += 1.0 / spec->control_hz;
      if ((rc = bc_actor_step(actor, &obs, act))) break;
      for (int i = 0; i < A; i++)
        act[i] = isfinite(act[i]) ? fmax(-1, fmin(1, act[i])) : 0;
      capStep st;
      if ((rc = cap_env_step(env, act, &st))) break;
      obs = st.obs;
      for (int i = 0; i < A; i++)
        cols[(size_t)i * cap + t] = act[i];
      t++;
      if (st.success || st.terminated || t >= cap) {
        episodes++;
        successes += st.success;
        snprintf(msg, sizeof msg, "episode %d: %s after %lld steps (seed %llu)", episodes,
                 st.success ? "success" : "failure", (long long)t, (unsigned long long)(seed + episodes - 1));
        if ((rc = cap_env_reset(env, seed + (uint64_t)episodes, &obs))) break;
        bc_actor_reset(actor, seed + (uint64_t)episodes);
        t = 0;
      }
      if ((rc = action_strip(A, cols, cap, (int)t, W, STRIP_H, strip, x))) break;
    }
    char state[64];
    snprintf(state, sizeof state, "%s: %s", p->algo, paused ? "paused" : "acting");
    capHud h = {.state = state,
                .tone = paused ? CAP_TONE_IDLE : CAP_TONE_INFO,
                .n_success = successes,
                .n_failure = episodes - successes,
                .episode = episodes + 1,
                .episode_time = t / spec->control_hz,
                .rate_hz = spec->control_hz,
                .action = act,
                .action_dim = A,
                .legend = "Space\tpause\ndrag / wheel\torbit, pan / zoom\nQ / Esc\tquit",
                .message = msg[0] ? msg : NULL,
                .message_tone = CAP_TONE_INFO,
                .strip_rgb = strip,
                .strip_w = W,
                .strip_h = STRIP_H};
    if ((rc = cap_window_draw(win, cap_model_mujoco(m), cap_env_mujoco_data(env), &h))) break;
    if (frames > 0 && ++drawn >= frames) quit = 1;
    SDL_Delay(10);
  }
  if (!rc && screenshot && win) rc = cap_window_save_png(win, screenshot);
  if (!rc && episodes > 0) printf("viewer: %s: %d of %d episodes succeeded\n", policy, successes, episodes);
  bc_actor_free(actor);
  free(x);
  free(cols);
  free(strip);
  cap_window_close(win);
  cap_env_free(env);
  cap_model_free(m);
  bc_policy_free(p);
  if (SDL_WasInit(SDL_INIT_VIDEO)) SDL_Quit();
  return rc;
}
