/* rl_finetune/rl_compare.c -- the `compare:` line of a fine-tune against scratch (rl.h), from the two runs'
 * evaluations; rl-finetune --compare prints it and viewer --report shows it, in the same words. */
#include <math.h>
#include <stdio.h>

#include "rl.h"

int64_t rl_curve_arrival(const rlCurve *c, double target) {
  for (int i = 0; i < c->n; i++)
    if (c->success[i] >= target) return c->step[i];
  return -1;
}

static double best_of(const rlCurve *c) {
  double b = 0;
  for (int i = 0; i < c->n; i++)
    b = fmax(b, c->success[i]);
  return b;
}

void rl_compare_line(double target, const rlCurve *ft, const rlCurve *sc, char *out, size_t n) {
  const int64_t a = rl_curve_arrival(ft, target), s = rl_curve_arrival(sc, target);
  const int64_t ft_last = ft->n > 0 ? ft->step[ft->n - 1] : 0, sc_last = sc->n > 0 ? sc->step[sc->n - 1] : 0;
  const double pct = 100 * target;
  if (a == 0 && s >= 0) /* the BC policy was there before any RL: no ratio to speak of */
    snprintf(out, n,
             "the BC policy was at %.0f%% before any RL step; scratch reached it after %lld env steps", pct,
             (long long)s);
  else if (a == 0)
    snprintf(
        out, n,
        "the BC policy was at %.0f%% before any RL step; scratch never arrived within %lld (best %.0f%%)",
        pct, (long long)sc_last, 100 * best_of(sc));
  else if (a >= 0 && s >= 0)
    snprintf(out, n, "%.0f%% success after %lld env steps fine-tuned, %lld from scratch: %.1fx fewer samples",
             pct, (long long)a, (long long)s, (double)s / (double)(a > 1 ? a : 1));
  else if (a >= 0)
    snprintf(out, n,
             "%.0f%% success after %lld env steps fine-tuned; scratch never arrived within %lld (ratio > "
             "%.1fx; scratch's best %.0f%%)",
             pct, (long long)a, (long long)sc_last, (double)sc_last / (double)(a > 1 ? a : 1),
             100 * best_of(sc));
  else if (s >= 0)
    snprintf(out, n,
             "scratch reached %.0f%% after %lld env steps; the fine-tune did not within %lld (best %.0f%%)",
             pct, (long long)s, (long long)ft_last, 100 * best_of(ft));
  else
    snprintf(
        out, n,
        "neither run reached %.0f%% (fine-tune: %lld env steps, best %.0f%%; scratch: %lld, best %.0f%%)",
        pct, (long long)ft_last, 100 * best_of(ft), (long long)sc_last, 100 * best_of(sc));
}
