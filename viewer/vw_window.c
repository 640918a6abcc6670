/* viewer/vw_window.c -- the interactive viewer: the scene set from the stored states in capture's
 * window (mouse orbit, HUD), the plots as a strip along the bottom, keyboard playback controls. */
#include <SDL2/SDL.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vw.h"

#define STRIP_H 200

static const char *LEGEND = "Space\tplay / pause\n"
                            "Left / Right\tstep back / forward\n"
                            "Up / Down\tfaster / slower\n"
                            "Home / End\tfirst / last step\n"
                            "N / P\tnext / previous demo\n"
                            "drag / wheel\torbit, pan / zoom\n"
                            "Q / Esc\tquit";

int vw_window_run(dsFile *f, int pos, const char *plot_keys, const char *screenshot, int frames) {
  if (SDL_Init(SDL_INIT_VIDEO | SDL_INIT_EVENTS) < 0)
    return tk_error(TK_EIO, "no display for the viewer window (%s): use --export", SDL_GetError());
  vwEpisode *v = NULL;
  capWindow *win = NULL;
  uint8_t *strip = NULL;
  int rc = vw_episode_open(f, pos, &v);
  if (!rc) rc = vw_set_plot_keys(v, plot_keys);
  if (!rc && !vw_model(v))
    rc = tk_error(TK_EINVAL, "%s: %s; --export draws the frames and plots", ds_path(f), vw_why_no_scene(v));
  int W = 1280, H = 720;
  if (!rc) {
    char title[300];
    snprintf(title, sizeof title, "demokit viewer: %s", ds_path(f));
    rc = cap_window_open(cap_model_mujoco(vw_model(v)), W, H, title, &win);
    if (!rc) cap_window_camera(win, "agentview");
  }
  if (!rc && !(strip = malloc((size_t)W * STRIP_H * 3))) rc = tk_error(TK_ENOMEM, "out of memory");
  int ns = 0, nf = 0;
  for (int i = 0; i < ds_num_demos(f); i++) {
    ns += ds_demo(f, i)->success == 1;
    nf += ds_demo(f, i)->success == 0;
  }
  double t = 0, speed = 1;
  int playing = 1, quit = 0, drawn = 0, scrubbing = 0;
  double strip_left = vw_strip_plots_left(v, STRIP_H);
  char legend[1024];
  int64_t last_t = -1;
  double last = tk_now_s();
  while (!rc && !quit) {
    SDL_Event ev;
    int next = 0;
    while (SDL_PollEvent(&ev)) {
      /* the strip along the bottom is the timeline: click or drag there to scrub */
      int ww = W, wh = H;
      SDL_GetWindowSize(cap_window_sdl(win), &ww, &wh);
      int mx = -1, my = -1;
      if (ev.type == SDL_MOUSEBUTTONDOWN && ev.button.button == SDL_BUTTON_LEFT)
        mx = ev.button.x, my = ev.button.y;
      if (ev.type == SDL_MOUSEMOTION && (ev.motion.state & SDL_BUTTON_LMASK) && scrubbing)
        mx = ev.motion.x, my = ev.motion.y;
      if (ev.type == SDL_MOUSEBUTTONUP) scrubbing = 0;
      if (mx >= 0 && (scrubbing || my >= wh - STRIP_H * wh / H)) {
        int64_t n = vw_episode_length(v);
        double left = strip_left * ww / W;
        t = fmax(0, fmin(n - 1, (mx - left) / fmax(1, ww - left) * n));
        playing = 0;
        scrubbing = 1;
        continue;
      }
      if (cap_window_events(win, &ev)) quit = 1;
      if (ev.type != SDL_KEYDOWN) continue;
      int64_t n = vw_episode_length(v);
      switch (ev.key.keysym.sym) {
      case SDLK_SPACE: playing = !playing; break;
      case SDLK_RIGHT:
        playing = 0;
        t = fmin(n - 1, floor(t) + 1);
        break;
      case SDLK_LEFT:
        playing = 0;
        t = fmax(0, floor(t) - 1);
        break;
      case SDLK_UP: speed = fmin(16, speed * 2); break;
      case SDLK_DOWN: speed = fmax(1.0 / 16, speed / 2); break;
      case SDLK_HOME: t = 0; break;
      case SDLK_END: t = n - 1; break;
      case SDLK_n: next = 1; break;
      case SDLK_p: next = -1; break;
      case SDLK_q:
      case SDLK_ESCAPE: quit = 1; break;
      default: break;
      }
    }
    if (next) { /* another demo of the same file: same task, same model */
      int np = (pos + next + ds_num_demos(f)) % ds_num_demos(f);
      vwEpisode *nv;
      if ((rc = vw_episode_open(f, np, &nv))) break;
      if ((rc = vw_set_plot_keys(nv, plot_keys))) {
        vw_episode_free(nv);
        break;
      }
      if (!vw_model(nv)) {
        vw_episode_free(nv);
      } else {
        cap_window_close(win);
        win = NULL;
        vw_episode_free(v);
        v = nv;
        pos = np;
        t = 0;
        strip_left = vw_strip_plots_left(v, STRIP_H);
        last_t = -1;
        char title[300];
        snprintf(title, sizeof title, "demokit viewer: %s", ds_path(f));
        if ((rc = cap_window_open(cap_model_mujoco(vw_model(v)), W, H, title, &win))) break;
        cap_window_camera(win, "agentview");
      }
    }
    const dsDemoInfo *di = vw_info(v);
    int64_t n = vw_episode_length(v);
    double now = tk_now_s(), hz = di->control_hz > 0 ? di->control_hz : 20;
    if (playing) t += (now - last) * hz * speed;
    last = now;
    if (t >= n - 1) {
      t = n - 1;
      playing = 0;
    }
    int64_t ti = (int64_t)t;
    if (ti != last_t) {
      if ((rc = vw_set_scene(v, ti)) || (rc = vw_draw_plots(v, ti, W, STRIP_H, strip))) break;
      last_t = ti;
    }
    /* the keys, then the demos around this one with their outcome and length */
    size_t off = (size_t)snprintf(legend, sizeof legend, "%s\n \t \n", LEGEND);
    int nd = ds_num_demos(f), first = pos - 3 < 0 ? 0 : pos - 3;
    for (int i = first; i < nd && i < first + 7 && off < sizeof legend; i++) {
      const dsDemoInfo *e = ds_demo(f, i);
      off += (size_t)snprintf(legend + off, sizeof legend - off, "%s%s\t%s, %lld steps\n",
                              i == pos ? "> " : "", e->name,
                              e->success == 1   ? "success"
                              : e->success == 0 ? "failure"
                                                : "?",
                              (long long)e->num_samples);
    }
    char state[64], msg[200];
    snprintf(state, sizeof state, "%s x%g", playing ? "playing" : "paused", speed);
    snprintf(msg, sizeof msg, "%s  step %lld / %lld  %s", di->name, (long long)ti, (long long)n,
             di->success == 1   ? "success"
             : di->success == 0 ? "failure"
                                : "");
    capHud h = {.state = state,
                .tone = playing ? CAP_TONE_REC : CAP_TONE_IDLE,
                .n_success = ns,
                .n_failure = nf,
                .episode = pos + 1,
                .episode_time = ti / hz,
                .rate_hz = hz * speed,
                .action = vw_action(v, ti),
                .action_dim = ds_schema(f)->action_dim,
                .legend = legend,
                .message = msg,
                .message_tone = CAP_TONE_INFO,
                .strip_rgb = strip,
                .strip_w = W,
                .strip_h = STRIP_H};
    if ((rc = cap_window_draw(win, cap_model_mujoco(vw_model(v)), cap_env_mujoco_data(vw_env(v)), &h))) break;
    drawn++;
    if (frames > 0 && drawn >= frames) quit = 1;
    SDL_Delay(15);
  }
  if (!rc && screenshot && win) rc = cap_window_save_png(win, screenshot);
  free(strip);
  cap_window_close(win);
  vw_episode_free(v);
  SDL_Quit();
  return rc;
}
