/* A short, bounded, deterministic fuzz pass over the servo stream parsers, for every build of
 * the suite (gcc included): the libFuzzer harness (fuzz/srv_fuzz.h) on random byte strings and
 * on mutations of valid packet streams, each input in an exact-size heap copy so the
 * sanitizers see any read past it. The open-ended run is fuzz/run_fuzz.sh (clang, libFuzzer).
 *
 * SRV_FUZZ_ITERS (environment) scales the pass: inputs per part, default 100000 (about 1-2 s
 * each under ASan+UBSan here). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz/srv_fuzz.h"
#include "srv.h"
#include "tk.h"

enum { MAX_INPUT = 2048 };

static int iters(void) {
  const char *e = getenv("SRV_FUZZ_ITERS");
  int64_t v;
  return e && !tk_parse_i64(e, &v) && v > 0 && v < 100000000 ? (int)v : 100000;
}

/* Run the harness on an exact-size copy; fail the test with the input in hex on a broken property. */
static void run_one(const uint8_t *in, size_t n, int *packets) {
  uint8_t *copy = malloc(n ? n : 1);
  cr_assert_not_null(copy);
  if (n) memcpy(copy, in, n);
  int rc = srv_fuzz_one(copy, n, packets);
  if (rc) {
    char hex[3 * 64 + 1] = "";
    for (size_t i = 0; i < n && i < 64; i++)
      snprintf(hex + 3 * i, 4, "%02X ", in[i]);
    cr_assert_fail("property %d broken on a %zu-byte input: %s%s", rc, n, hex, n > 64 ? "..." : "");
  }
  free(copy);
}

/* A byte from a distribution that finds headers: FF, FD, 00, 55 often. */
static uint8_t biased(tkRng *r) {
  switch (tk_rng_below(r, 8)) {
  case 0:
  case 1: return 0xFF;
  case 2: return 0xFD;
  case 3: return 0x00;
  case 4: return 0x55;
  default: return (uint8_t)tk_rng_below(r, 256);
  }
}

Test(servo_fuzz, random_streams, .timeout = 300) {
  tkRng r;
  tk_rng_seed(&r, 0x5e2f0);
  static uint8_t in[MAX_INPUT];
  const int n_in = iters();
  int packets = 0;
  const double t0 = tk_now_s();
  for (int it = 0; it < n_in; it++) {
    size_t n = (size_t)tk_rng_below(&r, it % 10 == 0 ? MAX_INPUT : 64);
    const int mode = (int)tk_rng_below(&r, 3);
    for (size_t i = 0; i < n; i++)
      in[i] = mode == 0 ? (uint8_t)tk_rng_below(&r, 256) : biased(&r);
    run_one(in, n, &packets);
  }
  const double dt = tk_now_s() - t0;
  fprintf(stderr, "servo fuzz: %d random inputs in %.2f s (%.0f/s), %d packets accepted\n", n_in, dt,
          n_in / dt, packets);
}

/* A stream of 1..4 valid packets of random kinds and directions, with random parameters. */
static size_t valid_stream(tkRng *r, uint8_t *out, size_t cap) {
  size_t n = 0;
  int k = 1 + (int)tk_rng_below(r, 4);
  uint8_t prm[96];
  for (int i = 0; i < k; i++) {
    const srvKind kind = tk_rng_below(r, 2) ? SRV_FTS : SRV_DXL;
    const srvCodec *c = srv_codec(kind);
    size_t np = (size_t)tk_rng_below(r, sizeof prm);
    for (size_t j = 0; j < np; j++)
      prm[j] = biased(r);
    const uint8_t id = (uint8_t)tk_rng_below(r, 253);
    int m;
    switch (tk_rng_below(r, 4)) {
    case 0: m = c->status(out + n, cap - n, id, (uint8_t)tk_rng_below(r, 128), prm, np); break;
    case 1:
      m = c->write(out + n, cap - n, id, (uint16_t)tk_rng_below(r, 256), prm, (uint16_t)(np ? np : 1));
      break;
    case 2: m = c->sync_read(out + n, cap - n, 132, 4, prm, 1 + (int)tk_rng_below(r, 8)); break;
    default: m = c->ping(out + n, cap - n, id); break;
    }
    if (m > 0) n += (size_t)m;
  }
  return n;
}

static size_t mutate(tkRng *r, uint8_t *b, size_t n, size_t cap) {
  const int rounds = 1 + (int)tk_rng_below(r, 4);
  for (int k = 0; k < rounds; k++) {
    switch (tk_rng_below(r, 7)) {
    case 0: /* flip a bit */
      if (n) b[tk_rng_below(r, n)] ^= (uint8_t)(1u << tk_rng_below(r, 8));
      break;
    case 1: /* set a byte to an interesting value */
      if (n) b[tk_rng_below(r, n)] = biased(r);
      break;
    case 2: /* insert a byte */
      if (n < cap) {
        size_t at = (size_t)tk_rng_below(r, n + 1);
        memmove(b + at + 1, b + at, n - at);
        b[at] = biased(r);
        n++;
      }
      break;
    case 3: /* delete a run */
      if (n) {
        size_t at = (size_t)tk_rng_below(r, n), len = 1 + (size_t)tk_rng_below(r, 8);
        if (len > n - at) len = n - at;
        memmove(b + at, b + at + len, n - at - len);
        n -= len;
      }
      break;
    case 4: /* truncate */
      if (n) n = (size_t)tk_rng_below(r, n);
      break;
    case 5: /* duplicate a run (two copies of a packet, overlapping headers) */
      if (n) {
        size_t at = (size_t)tk_rng_below(r, n), len = 1 + (size_t)tk_rng_below(r, 16);
        if (len > n - at) len = n - at;
        if (n + len <= cap) {
          memmove(b + at + len, b + at, n - at);
          n += len;
        }
      }
      break;
    default: /* huge or tiny length fields where a header is */
      for (size_t i = 0; i + 6 < n; i++)
        if (b[i] == 0xFF && b[i + 1] == 0xFF) {
          b[i + 3 + tk_rng_below(r, 3)] = (uint8_t)(tk_rng_below(r, 2) ? 0xFF : tk_rng_below(r, 4));
          break;
        }
      break;
    }
  }
  return n;
}

Test(servo_fuzz, mutated_packets, .timeout = 300) {
  tkRng r;
  tk_rng_seed(&r, 0xF0221);
  static uint8_t in[MAX_INPUT];
  const int n_in = iters();
  int packets = 0, clean = 0;
  const double t0 = tk_now_s();
  for (int it = 0; it < n_in; it++) {
    size_t n = valid_stream(&r, in, MAX_INPUT - 64);
    if (tk_rng_below(&r, 8))
      n = mutate(&r, in, n, MAX_INPUT);
    else
      clean++;
    run_one(in, n, &packets);
  }
  const double dt = tk_now_s() - t0;
  fprintf(stderr, "servo fuzz: %d mutated inputs in %.2f s (%.0f/s), %d packets accepted\n", n_in, dt,
          n_in / dt, packets);
  /* the accept path was exercised: unmutated streams alone give at least one packet each */
  cr_assert_geq(packets, clean, "%d packets from %d inputs (%d unmutated)", packets, n_in, clean);
}

/* The seeds run_fuzz.sh starts from, and inputs that once broke a property, stay here. */
Test(servo_fuzz, seeds) {
  static const uint8_t s1[] = {0x00, 0xFF, 0xFF, 0xFD, 0x00, 0x01, 0x07, 0x00,
                               0x55, 0x00, 0x06, 0x04, 0x26, 0x65, 0x5D};
  static const uint8_t s2[] = {0xFF, 0xFF, 0x01, 0x02, 0x01, 0xFB};
  static const uint8_t s3[] = {0x90, 0xFF, 0xFF, 0x01, 0x04, 0x00, 0x00, 0x08, 0xF2,
                               0xFF, 0xFF, 0x02, 0x04, 0x00, 0x00, 0x08, 0xF1};
  static const uint8_t s4[] = {0xFF, 0xFF, 0xFD, 0x00, 0x01, 0xFF, 0xFF, 0xFD, 0x00};
  static const uint8_t s5[] = {0x81, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01, 0x02};
  int packets = 0;
  run_one(s1, sizeof s1, &packets);
  run_one(s2, sizeof s2, &packets);
  run_one(s3, sizeof s3, &packets);
  run_one(s4, sizeof s4, &packets);
  run_one(s5, sizeof s5, &packets);
  run_one(NULL, 0, &packets);
  cr_assert_geq(packets, 1 + 1 + 2);
}
