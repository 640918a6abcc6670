#include <criterion/criterion.h>
#include <math.h>

#include "tk.h"

Test(rng, same_seed_same_stream) {
  tkRng a, b;
  tk_rng_seed(&a, 123);
  tk_rng_seed(&b, 123);
  for (int i = 0; i < 1000; i++)
    cr_assert_eq(tk_rng_u64(&a), tk_rng_u64(&b));
  tk_rng_seed(&b, 124);
  int same = 0;
  for (int i = 0; i < 100; i++)
    same += tk_rng_u64(&a) == tk_rng_u64(&b);
  cr_assert_lt(same, 2);
}

Test(rng, uniform_and_normal_moments) {
  tkRng r;
  tk_rng_seed(&r, 7);
  double s = 0, s2 = 0, n1 = 0, n2 = 0;
  const int N = 200000;
  for (int i = 0; i < N; i++) {
    double u = tk_rng_uniform(&r);
    cr_assert(u >= 0 && u < 1);
    s += u;
    s2 += u * u;
    double z = tk_rng_normal(&r);
    n1 += z;
    n2 += z * z;
  }
  printf("uniform mean %.4f var %.4f; normal mean %.4f var %.4f\n", s / N, s2 / N - (s / N) * (s / N), n1 / N,
         n2 / N);
  cr_assert_float_eq(s / N, 0.5, 0.01);
  cr_assert_float_eq(s2 / N - (s / N) * (s / N), 1.0 / 12, 0.005);
  cr_assert_float_eq(n1 / N, 0.0, 0.01);
  cr_assert_float_eq(n2 / N, 1.0, 0.02);
}

Test(rng, below_is_in_range_and_covers) {
  tkRng r;
  tk_rng_seed(&r, 1);
  int hits[7] = {0};
  for (int i = 0; i < 7000; i++) {
    uint64_t v = tk_rng_below(&r, 7);
    cr_assert_lt(v, 7);
    hits[v]++;
  }
  for (int i = 0; i < 7; i++)
    cr_assert_gt(hits[i], 800);
}

Test(rng, shuffle_is_permutation) {
  tkRng r;
  tk_rng_seed(&r, 3);
  int64_t v[50];
  for (int i = 0; i < 50; i++)
    v[i] = i;
  tk_rng_shuffle(&r, v, 50);
  int seen[50] = {0}, moved = 0;
  for (int i = 0; i < 50; i++) {
    seen[v[i]]++;
    moved += v[i] != i;
  }
  for (int i = 0; i < 50; i++)
    cr_assert_eq(seen[i], 1);
  cr_assert_gt(moved, 30);
}

Test(rng, forked_streams_differ) {
  tkRng p, a, b;
  tk_rng_seed(&p, 9);
  tk_rng_fork(&p, 0, &a);
  tk_rng_fork(&p, 1, &b);
  cr_assert_neq(tk_rng_u64(&a), tk_rng_u64(&b));
}
