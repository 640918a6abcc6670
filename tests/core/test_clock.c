#include <criterion/criterion.h>

#include "tk.h"

Test(clock, monotonic) {
  int64_t a = tk_now_ns(), b = tk_now_ns();
  cr_assert_geq(b, a);
}

Test(clock, sleep_until_reaches_deadline) {
  int64_t d = tk_now_ns() + 2000000;
  tk_sleep_until_ns(d);
  cr_assert_geq(tk_now_ns(), d);
}

/* Pacing logic, not timing: deadlines advance by whole periods and a missed deadline
 * is counted and skipped rather than bunched up. */
Test(pacer, counts_and_skips_missed_deadlines) {
  tkPacer p;
  tk_pacer_start(&p, 1000.0); /* 1 ms */
  cr_assert_eq(p.period_ns, 1000000);
  int64_t first = p.next_ns;
  tk_pacer_wait(&p);
  cr_assert_eq(p.next_ns, first + p.period_ns);
  cr_assert_geq(tk_now_ns(), first);
  /* stall for 5.5 periods: the next wait reports a miss and lands on a future deadline */
  tk_sleep_until_ns(tk_now_ns() + 5500000);
  int64_t missed_before = p.missed;
  int m = tk_pacer_wait(&p);
  cr_assert_eq(m, 1);
  cr_assert_eq(p.missed, missed_before + 1);
  cr_assert_gt(p.next_ns, tk_now_ns() - p.period_ns);
  cr_assert_eq((p.next_ns - first) % p.period_ns, 0, "the schedule keeps its phase");
  cr_assert_eq(p.ticks, 2);
}
