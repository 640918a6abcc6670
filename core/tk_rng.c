/* core/tk_rng.c -- xoshiro256** seeded by splitmix64; same seed, same stream everywhere. */
#include <math.h>

#include "tk.h"

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void tk_rng_seed(tkRng *r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++)
    r->s[i] = splitmix64(&x);
}

uint64_t tk_rng_u64(tkRng *r) {
  uint64_t *s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double tk_rng_uniform(tkRng *r) { return (double)(tk_rng_u64(r) >> 11) * 0x1.0p-53; }

double tk_rng_range(tkRng *r, double lo, double hi) { return lo + (hi - lo) * tk_rng_uniform(r); }

double tk_rng_normal(tkRng *r) {
  /* Box-Muller; draws two uniforms per call so the stream position is fixed */
  double u1 = tk_rng_uniform(r), u2 = tk_rng_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t tk_rng_below(tkRng *r, uint64_t n) {
  /* Lemire's nearly-divisionless method with rejection */
  uint64_t x = tk_rng_u64(r);
  __uint128_t m = (__uint128_t)x * n;
  uint64_t l = (uint64_t)m;
  if (l < n) {
    uint64_t t = -n % n;
    while (l < t) {
      x = tk_rng_u64(r);
      m = (__uint128_t)x * n;
      l = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}

void tk_rng_shuffle(tkRng *r, int64_t *v, int64_t n) {
  for (int64_t i = n - 1; i > 0; i--) {
    int64_t j = (int64_t)tk_rng_below(r, (uint64_t)i + 1);
    int64_t t = v[i];
    v[i] = v[j];
    v[j] = t;
  }
}

void tk_rng_fork(const tkRng *parent, uint64_t stream, tkRng *child) {
  uint64_t x = parent->s[0] ^ rotl(parent->s[1], 13) ^ rotl(parent->s[2], 29) ^ rotl(parent->s[3], 47);
  x ^= splitmix64(&stream);
  tk_rng_seed(child, x);
}
