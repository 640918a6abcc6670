/* core/tk_clock.c -- monotonic clock and fixed-rate pacing on absolute deadlines. */
#include <errno.h>
#include <time.h>

#include "tk.h"

int64_t tk_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

double tk_now_s(void) { return (double)tk_now_ns() * 1e-9; }

void tk_sleep_until_ns(int64_t deadline_ns) {
  struct timespec ts = {.tv_sec = deadline_ns / 1000000000LL, .tv_nsec = deadline_ns % 1000000000LL};
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
  }
}

void tk_pacer_start(tkPacer *p, double hz) {
  p->period_ns = hz > 0 ? (int64_t)(1e9 / hz + 0.5) : 0;
  p->start_ns = tk_now_ns();
  p->next_ns = p->start_ns + p->period_ns;
  p->ticks = 0;
  p->missed = 0;
  p->last_late_ns = 0;
}

int tk_pacer_wait(tkPacer *p) {
  int missed = 0;
  int64_t now = tk_now_ns();
  if (p->period_ns <= 0) {
    p->ticks++;
    return 0;
  }
  if (now > p->next_ns) {
    missed = 1;
    p->missed++;
    p->last_late_ns = now - p->next_ns;
    /* skip the deadlines that are gone; keep the phase of the schedule */
    int64_t behind = (now - p->next_ns) / p->period_ns + 1;
    p->next_ns += behind * p->period_ns;
  } else {
    tk_sleep_until_ns(p->next_ns);
    p->last_late_ns = tk_now_ns() - p->next_ns;
    p->next_ns += p->period_ns;
  }
  p->ticks++;
  return missed;
}

double tk_pacer_rate(const tkPacer *p) {
  double el = (double)(tk_now_ns() - p->start_ns) * 1e-9;
  return el > 0 ? (double)p->ticks / el : 0.0;
}
