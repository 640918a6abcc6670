/* capture/servo/srv_codec.c -- what the codecs share: the stream parser, the codec table (each
 * row is defined in its codec's file), value encodings and error-byte names through the rows. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "srv.h"

/* ---- stream parser ---- */
void srv_parser_init(srvParser *p, srvKind kind, srvDir dir) {
  memset(p, 0, sizeof *p);
  p->kind = kind;
  p->dir = dir;
}

void srv_parser_reset(srvParser *p) { p->n = 0; }

void srv_parser_drop(srvParser *p, size_t k) {
  if (k >= p->n) {
    p->n = 0;
    return;
  }
  memmove(p->buf, p->buf + k, p->n - k);
  p->n -= k;
}

int srv_parser_reject(srvParser *p, srvParseErr why, size_t k, const char *fmt, ...) {
  char msg[256];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  p->bad++;
  p->last_err = why;
  srv_parser_drop(p, k);
  return tk_error(TK_EFORMAT, "%s", msg);
}

int srv_parse(srvParser *p, const uint8_t *data, size_t n, size_t *used, srvPacket *out) {
  size_t u = 0, dummy;
  if (!used) used = &dummy;
  *used = 0;
  if (!p || !out || (n && !data)) return tk_error(TK_EINVAL, "srv_parse: missing parser, output or data");
  const srvCodec *codec = srv_codec(p->kind);
  if (!codec) return tk_error(TK_EINVAL, "srv_parse: servo protocol %d unknown", (int)p->kind);
  for (;;) {
    int rc = codec->extract(p, out);
    if (rc) {
      *used = u;
      return rc;
    }
    if (u == n) {
      *used = u;
      return 0;
    }
    size_t room = sizeof p->buf - p->n;
    if (!room) { /* cannot happen: extract returns 0 only with less than a packet held */
      *used = u;
      return srv_parser_reject(p, SRV_PE_LENGTH, 1, "servo parser: buffer full without a packet");
    }
    size_t k = n - u < room ? n - u : room;
    memcpy(p->buf + p->n, data + u, k);
    p->n += k;
    u += k;
  }
}

uint8_t *srv_parser_tail(srvParser *p, size_t *room) {
  *room = sizeof p->buf - p->n;
  return p->buf + p->n;
}

void srv_parser_commit(srvParser *p, size_t k) {
  size_t room = sizeof p->buf - p->n;
  p->n += k < room ? k : room;
}

/* ---- codec table: one row per codec, indexed by srvKind ---- */
static const srvCodec *const codecs[SRV_NKINDS] = {
    [SRV_DXL] = &srv_codec_dxl,
    [SRV_FTS] = &srv_codec_fts,
};

const srvCodec *srv_codec(srvKind kind) {
  return (int)kind >= 0 && kind < SRV_NKINDS && codecs[kind] && codecs[kind]->kind == kind ? codecs[kind]
                                                                                           : NULL;
}

int srv_kind_parse(const char *s, srvKind *out) {
  char known[256] = "";
  size_t k = 0;
  for (int i = 0; i < SRV_NKINDS; i++) {
    const srvCodec *c = codecs[i];
    const char *a = c->aliases;
    while (s && *a) {
      size_t len = strcspn(a, " ");
      if (len == strlen(s) && !strncasecmp(a, s, len)) {
        *out = c->kind;
        return 0;
      }
      a += len + (a[len] == ' ');
    }
    srv_appendf(known, sizeof known, &k, "%s%s", i ? " or " : "", c->name);
  }
  return tk_error(TK_EINVAL, "unknown servo protocol '%s' (%s)", s ? s : "", known);
}

/* ---- registers: the row's table ---- */
const srvReg *srv_reg(srvKind kind, srvRegId reg) {
  const srvCodec *c = srv_codec(kind);
  if (!c || (int)reg < 0 || reg >= SRV_REG_COUNT) return NULL;
  return &c->regs[reg];
}

/* ---- values ---- */
int srv_sm_encode(int32_t v, int bit, uint32_t *raw) {
  if (bit < 1 || bit > 30) return tk_error(TK_EINVAL, "sign-magnitude: sign bit %d", bit);
  const int64_t mag = v < 0 ? -(int64_t)v : v;
  if (mag >= ((int64_t)1 << bit))
    return tk_error(TK_ERANGE, "sign-magnitude: %d does not fit %d magnitude bits", (int)v, bit);
  *raw = (uint32_t)mag | (v < 0 ? (uint32_t)1 << bit : 0);
  return 0;
}

int32_t srv_sm_decode(uint32_t raw, int bit) {
  if (bit < 1 || bit > 30) return 0;
  const uint32_t mag = raw & (((uint32_t)1 << bit) - 1);
  return (raw >> bit) & 1 ? -(int32_t)mag : (int32_t)mag;
}

int srv_encode(srvKind kind, int32_t v, uint8_t *p, int len) {
  uint32_t raw;
  if (len == 1) {
    if (v < 0 || v > 0xFF) return tk_error(TK_ERANGE, "value %d does not fit a 1-byte register", (int)v);
    p[0] = (uint8_t)v;
    return 0;
  }
  if (len == 2) {
    const srvCodec *c = srv_codec(kind);
    if (!c) return tk_error(TK_EINVAL, "servo protocol %d unknown", (int)kind);
    if (c->sm_bit) {
      int rc = srv_sm_encode(v, c->sm_bit, &raw);
      if (rc) return rc;
    } else {
      if (v < -32768 || v > 0xFFFF)
        return tk_error(TK_ERANGE, "value %d does not fit a 2-byte register", (int)v);
      raw = (uint32_t)v & 0xFFFF;
    }
    p[0] = (uint8_t)(raw & 0xFF);
    p[1] = (uint8_t)(raw >> 8);
    return 0;
  }
  if (len == 4) {
    raw = (uint32_t)v;
    for (int i = 0; i < 4; i++)
      p[i] = (uint8_t)(raw >> (8 * i));
    return 0;
  }
  return tk_error(TK_EINVAL, "register of %d bytes (1, 2 or 4)", len);
}

int32_t srv_decode(srvKind kind, const uint8_t *p, int len) {
  if (len == 1) return p[0];
  if (len == 2) {
    const uint32_t raw = (uint32_t)p[0] | (uint32_t)p[1] << 8;
    const srvCodec *c = srv_codec(kind);
    return c && c->sm_bit ? srv_sm_decode(raw, c->sm_bit) : (int32_t)(int16_t)raw;
  }
  if (len == 4) {
    const uint32_t raw = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return (int32_t)raw;
  }
  return 0;
}

/* ---- error bytes: the row's names ---- */
void srv_appendf(char *buf, size_t n, size_t *k, const char *fmt, ...) {
  if (!n) return;
  va_list ap;
  va_start(ap, fmt);
  int w = vsnprintf(buf + (*k < n ? *k : n - 1), *k < n ? n - *k : 1, fmt, ap);
  va_end(ap);
  if (w > 0) *k += (size_t)w;
}

const char *srv_error_str(srvKind kind, uint8_t err, char *buf, size_t n) {
  if (!n) return buf;
  buf[0] = 0;
  const srvCodec *c = srv_codec(kind);
  if (!err)
    snprintf(buf, n, "ok");
  else if (!c)
    snprintf(buf, n, "error 0x%02X", err);
  else
    c->error_names(err, buf, n);
  return buf;
}

int srv_error_failed(srvKind kind, uint8_t err) {
  const srvCodec *c = srv_codec(kind);
  return c && (err & c->err_number) != 0;
}
