/* tests/capture/fuzz/srv_fuzz.h -- the fuzz harness for the servo stream parsers, shared by the
 * libFuzzer target (fuzz_status.c, clang) and the bounded pass in the Criterion suite
 * (test_servo_fuzz.c, any compiler).
 *
 * One input drives all four parsers (Dynamixel and Feetech, status and request direction):
 *   - fed whole, then fed in chunks whose sizes come from the input's first byte: both must
 *     give the same sequence of packets and rejections (the parser may not depend on how the
 *     stream was split into reads);
 *   - srv_parse never takes more than it was given, never returns anything but 1, 0 or
 *     TK_EFORMAT, and returns 0 only when it took every byte;
 *   - every packet it returns re-encodes with the matching builder and parses back to itself.
 * Out-of-bounds reads are the sanitizer's job (libFuzzer hands over an exact-size heap copy;
 * the Criterion pass does the same). */
#ifndef SRV_FUZZ_H
#define SRV_FUZZ_H

#include <stdint.h>
#include <string.h>

#include "srv.h"

enum { SRV_FUZZ_MAX_EVENTS = 256 };

typedef struct {
  int n;                             /* events recorded (capped) */
  int total;                         /* events seen */
  uint64_t sig[SRV_FUZZ_MAX_EVENTS]; /* per event: a packet's hash, or the rejection reason */
} srvFuzzTrace;

static inline uint64_t srv_fuzz_hash(const srvPacket *pk) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  const uint8_t head[5] = {pk->id, pk->inst, pk->error, (uint8_t)(pk->nparams & 0xFF),
                           (uint8_t)(pk->nparams >> 8)};
  for (size_t i = 0; i < sizeof head; i++)
    h = (h ^ head[i]) * 1099511628211ull;
  for (size_t i = 0; i < pk->nparams; i++)
    h = (h ^ pk->params[i]) * 1099511628211ull;
  return h | 1; /* odd: never equal to a rejection code */
}

static inline void srv_fuzz_note(srvFuzzTrace *t, uint64_t sig) {
  if (t->n < SRV_FUZZ_MAX_EVENTS) t->sig[t->n++] = sig;
  t->total++;
}

/* A packet the parser returned must survive encode -> parse unchanged. */
static inline int srv_fuzz_roundtrip(const srvPacket *pk, srvKind kind, srvDir dir) {
  static _Thread_local uint8_t raw[SRV_RAW_MAX];
  static _Thread_local srvParser p;
  static _Thread_local srvPacket q;
  if (pk->nparams > SRV_MAX_PARAMS) return -10;
  const srvCodec *c = srv_codec(kind);
  int n = dir == SRV_STATUS ? c->status(raw, sizeof raw, pk->id, pk->error, pk->params, pk->nparams)
                            : c->packet(raw, sizeof raw, pk->id, pk->inst, pk->params, pk->nparams);
  if (n < 0) return -11;
  srv_parser_init(&p, kind, dir);
  size_t used = 0;
  int rc = srv_parse(&p, raw, (size_t)n, &used, &q);
  if (rc != 1 || used != (size_t)n || p.n != 0) return -12;
  if (q.id != pk->id || q.inst != pk->inst || q.error != pk->error || q.nparams != pk->nparams ||
      memcmp(q.params, pk->params, pk->nparams))
    return -13;
  return 0;
}

/* Feed data[0..size) in chunks (chunk == 0: all at once); record the events. */
static inline int srv_fuzz_feed(srvKind kind, srvDir dir, const uint8_t *data, size_t size,
                                unsigned chunk_seed, int chunked, srvFuzzTrace *t, int *packets) {
  static _Thread_local srvParser p;
  static _Thread_local srvPacket pk;
  srv_parser_init(&p, kind, dir);
  memset(t, 0, sizeof *t);
  size_t off = 0;
  unsigned s = chunk_seed * 2654435761u + 1;
  while (off < size || !chunked) {
    size_t chunk = size - off;
    if (chunked) {
      s = s * 1103515245u + 12345u;
      size_t want = 1 + (s >> 16) % (chunk_seed & 0x80 ? 700 : 17);
      if (want < chunk) chunk = want;
    }
    const uint8_t *c = data + off;
    size_t left = chunk;
    for (;;) {
      size_t used = (size_t)-1;
      int rc = srv_parse(&p, c, left, &used, &pk);
      if (used > left) return -1;
      c += used;
      left -= used;
      if (p.n > sizeof p.buf) return -2;
      if (rc == 1) {
        if (srv_fuzz_roundtrip(&pk, kind, dir)) return -3;
        srv_fuzz_note(t, srv_fuzz_hash(&pk));
        ++*packets;
      } else if (rc == 0) {
        if (left) return -4;
        break;
      } else if (rc == TK_EFORMAT) {
        if (p.last_err == SRV_PE_NONE) return -5;
        srv_fuzz_note(t, (uint64_t)p.last_err << 1);
      } else {
        return -6;
      }
    }
    off += chunk;
    if (!chunked) break;
  }
  return 0;
}

/* The harness: 0 when every property holds, else a negative code naming the broken one.
 * *packets (optional) gets how many packets the four parsers returned. */
static inline int srv_fuzz_one(const uint8_t *data, size_t size, int *packets) {
  static _Thread_local srvFuzzTrace whole, split;
  int dummy = 0;
  if (!packets) packets = &dummy;
  if (!size) return 0;
  const unsigned seed = data[0]; /* the chunk schedule; the byte is part of the stream too */
  for (int kind = 0; kind < SRV_NKINDS; kind++)
    for (int dir = 0; dir < 2; dir++) {
      int a = 0, b = 0;
      int rc = srv_fuzz_feed((srvKind)kind, (srvDir)dir, data, size, seed, 0, &whole, &a);
      if (rc) return rc - 100 * (2 * kind + dir);
      rc = srv_fuzz_feed((srvKind)kind, (srvDir)dir, data, size, seed, 1, &split, &b);
      if (rc) return rc - 100 * (2 * kind + dir);
      if (whole.total != split.total || whole.n != split.n ||
          memcmp(whole.sig, split.sig, (size_t)whole.n * sizeof whole.sig[0]))
        return -7 - 100 * (2 * kind + dir);
      *packets += a;
    }
  return 0;
}

#endif
