/* capture/servo/srv_codec.c -- what the two codecs share: the stream parser, the codec table,
 * register addresses, value encodings and error-byte names. */
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
  for (;;) {
    int rc = p->kind == SRV_DXL ? srv_dxl_extract(p, out) : srv_fts_extract(p, out);
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

/* ---- codec table ---- */
static const srvCodec codecs[2] = {
    {"dynamixel2", SRV_DXL, srv_dxl_packet, srv_dxl_status, srv_dxl_ping, srv_dxl_read, srv_dxl_write,
     srv_dxl_sync_read, srv_dxl_sync_write, 2},
    {"feetech", SRV_FTS, srv_fts_packet, srv_fts_status, srv_fts_ping, srv_fts_read, srv_fts_write,
     srv_fts_sync_read, srv_fts_sync_write, 1},
};

const srvCodec *srv_codec(srvKind kind) { return &codecs[kind == SRV_FTS]; }

int srv_kind_parse(const char *s, srvKind *out) {
  if (s && (!strcasecmp(s, "dxl") || !strcasecmp(s, "dynamixel") || !strcasecmp(s, "dynamixel2"))) {
    *out = SRV_DXL;
    return 0;
  }
  if (s && (!strcasecmp(s, "fts") || !strcasecmp(s, "feetech") || !strcasecmp(s, "sts"))) {
    *out = SRV_FTS;
    return 0;
  }
  return tk_error(TK_EINVAL, "unknown servo protocol '%s' (dynamixel or feetech)", s ? s : "");
}

/* ---- registers: X-series (XL430/XM430) e-manual, STS3215 (LeRobot's table) ---- */
static const srvReg regs[2][SRV_REG_COUNT] = {
    {
        {"Model_Number", 0, 2},
        {"ID", 7, 1},
        {"Torque_Enable", 64, 1},
        {"Goal_Position", 116, 4},
        {"Present_Position", 132, 4},
        {"Present_Velocity", 128, 4},
        {"Present_Current", 126, 2},
        {"Moving", 122, 1},
        {"Hardware_Error_Status", 70, 1},
    },
    {
        {"Model_Number", 3, 2},
        {"ID", 5, 1},
        {"Torque_Enable", 40, 1},
        {"Goal_Position", 42, 2},
        {"Present_Position", 56, 2},
        {"Present_Velocity", 58, 2},
        {"Present_Current", 69, 2},
        {"Moving", 66, 1},
        {"Status", 65, 1},
    },
};

const srvReg *srv_reg(srvKind kind, srvRegId reg) {
  if ((int)reg < 0 || reg >= SRV_REG_COUNT) return NULL;
  return &regs[kind == SRV_FTS][reg];
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
    if (kind == SRV_FTS) {
      int rc = srv_sm_encode(v, 15, &raw);
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
    return kind == SRV_FTS ? srv_sm_decode(raw, 15) : (int32_t)(int16_t)raw;
  }
  if (len == 4) {
    const uint32_t raw = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return (int32_t)raw;
  }
  return 0;
}

/* ---- error bytes ---- */
const char *srv_error_str(srvKind kind, uint8_t err, char *buf, size_t n) {
  static const char *dxl_num[8] = {"",
                                   "result fail",
                                   "instruction error",
                                   "CRC error",
                                   "data range error",
                                   "data length error",
                                   "data limit error",
                                   "access error"};
  static const struct {
    uint8_t bit;
    const char *name;
  } fts_bits[] = {{SRV_FTS_ERR_VOLTAGE, "voltage"},
                  {SRV_FTS_ERR_ANGLE, "angle sensor"},
                  {SRV_FTS_ERR_OVERHEAT, "overheat"},
                  {SRV_FTS_ERR_CURRENT, "overcurrent"},
                  {SRV_FTS_ERR_OVERLOAD, "overload"}};
  if (!n) return buf;
  buf[0] = 0;
  if (!err) {
    snprintf(buf, n, "ok");
    return buf;
  }
  size_t k = 0;
#define SRV_APPEND(...) (k += (size_t)snprintf(buf + (k < n ? k : n - 1), k < n ? n - k : 1, __VA_ARGS__))
  if (kind == SRV_DXL) {
    const unsigned num = err & 0x7F;
    if (num) SRV_APPEND("%s", num < 8 ? dxl_num[num] : "unknown error");
    if (num >= 8) SRV_APPEND(" %u", num);
    if (err & SRV_DXL_ALERT) SRV_APPEND("%shardware alert", num ? ", " : "");
  } else {
    uint8_t rest = err;
    for (size_t i = 0; i < TK_ARRAY_LEN(fts_bits); i++)
      if (err & fts_bits[i].bit) {
        SRV_APPEND("%s%s", k ? ", " : "", fts_bits[i].name);
        rest &= (uint8_t)~fts_bits[i].bit;
      }
    if (rest) SRV_APPEND("%sflags 0x%02X", k ? ", " : "", rest);
  }
#undef SRV_APPEND
  return buf;
}

int srv_error_failed(srvKind kind, uint8_t err) { return kind == SRV_DXL && (err & 0x7F) != 0; }
