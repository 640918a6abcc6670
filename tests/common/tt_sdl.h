/* tests/common/tt_sdl.h -- SDL for in-process teleop tests: joystick events in the background (a
 * virtual pad's input only arrives with them) and no display. */
#ifndef TT_SDL_H
#define TT_SDL_H

#include <SDL2/SDL.h>
#include <criterion/criterion.h>
#include <stdlib.h>

static inline void sdl_up(void) {
  SDL_SetHint(SDL_HINT_JOYSTICK_ALLOW_BACKGROUND_EVENTS, "1");
  setenv("SDL_VIDEODRIVER", "dummy", 1);
  cr_assert_eq(SDL_Init(SDL_INIT_JOYSTICK | SDL_INIT_GAMECONTROLLER | SDL_INIT_EVENTS), 0, "%s",
               SDL_GetError());
}

#endif
