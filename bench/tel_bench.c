/* bench/tel_bench.c -- the teleop loop at 50 Hz, headless, two 84x84 cameras recorded, the
 * scripted operator through the virtual pad, for 10,000 steps: missed deadlines (goal 0) and
 * the 99th percentile of loop lateness (goal <= 2 ms). Prints name=value lines.
 * Usage: tel_bench [--ticks N] [--dir DIR] */
#include <SDL2/SDL.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tel.h"
#include "tk.h"

int main(int argc, char **argv) {
  int64_t ticks = 10000;
  const char *dir = "/tmp";
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--ticks") && i + 1 < argc)
      ticks = atoll(argv[++i]);
    else if (!strcmp(argv[i], "--dir") && i + 1 < argc)
      dir = argv[++i];
    else {
      fprintf(stderr, "usage: tel_bench [--ticks N] [--dir DIR]\n");
      return 2;
    }
  }
  char out[4200], cmd[4400];
  snprintf(out, sizeof out, "%s/tel_bench.h5", dir);
  snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s.staging'", out, out);
  if (system(cmd)) return 1;
  SDL_SetHint(SDL_HINT_JOYSTICK_ALLOW_BACKGROUND_EVENTS, "1");
  setenv("SDL_VIDEODRIVER", "dummy", 1);
  if (SDL_Init(SDL_INIT_JOYSTICK | SDL_INIT_GAMECONTROLLER | SDL_INIT_EVENTS) < 0) return 1;
  telOpts o;
  tel_opts_default(&o);
  o.task = "lift";
  o.device = "scripted";
  o.headless = 1;
  o.rate = 50;
  o.out = out;
  o.noise = 0.3;
  o.quiet = 1;
  o.max_ticks = ticks;
  o.ncams = 2;
  snprintf(o.cams[0].name, sizeof o.cams[0].name, "agentview");
  snprintf(o.cams[1].name, sizeof o.cams[1].name, "eye_in_hand");
  o.cams[0].width = o.cams[0].height = o.cams[1].width = o.cams[1].height = 84;
  telStats st;
  double t0 = tk_now_s();
  if (tel_run(&o, &st)) {
    tk_die_msg("tel_bench");
    return 1;
  }
  printf("ticks=%lld\nrate_hz_target=50\nrate_hz_achieved=%.2f\nmissed_deadlines=%lld\njitter_p99_ms=%.3f\n"
         "recorded_steps=%lld\nepisodes=%d\ncommitted=%lld\nwall_s=%.1f\n",
         (long long)st.ticks, st.rate, (long long)st.missed, st.jitter_p99_ms, (long long)st.steps,
         st.success + st.failure, (long long)st.committed, tk_now_s() - t0);
  SDL_Quit();
  return 0;
}
