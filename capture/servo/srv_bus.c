/* capture/servo/srv_bus.c -- a servo bus: one serial port, one codec, one parser, and the
 * buffers of every transaction, allocated once at open (no allocation per call). Not
 * thread-safe: one control loop owns a bus. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "srv.h"

struct srvBus {
  srvKind kind;
  const srvCodec *codec;
  srvSerial *ser;
  int64_t timeout_us;   /* per status packet; 0: automatic */
  int64_t auto_base_us; /* automatic: latency timers + margin, without the bytes' time */
  int low_latency;
  srvFail fail;
  uint8_t servo_err[256];
  srvParser parser;
  srvPacket st;
  uint8_t tx[SRV_RAW_MAX];
  uint8_t scratch[SRV_MAX_PARAMS];
};

void srv_bus_default(srvBusOpts *o) {
  memset(o, 0, sizeof *o);
  o->kind = SRV_DXL;
  o->baud = 1000000;
  o->low_latency = 1;
  o->timeout_us = 0;
}

int srv_bus_open(srvBus **out, const char *path, const srvBusOpts *o) {
  srvBusOpts d;
  *out = NULL;
  if (!o) {
    srv_bus_default(&d);
    o = &d;
  }
  if (o->timeout_us < 0) return tk_error(TK_EINVAL, "servo bus: negative timeout");
  if (!srv_codec(o->kind)) return tk_error(TK_EINVAL, "servo bus: protocol %d unknown", (int)o->kind);
  srvBus *b = calloc(1, sizeof *b);
  if (!b) return tk_error(TK_ENOMEM, "out of memory");
  b->kind = o->kind;
  b->codec = srv_codec(o->kind);
  b->timeout_us = o->timeout_us;
  srv_parser_init(&b->parser, o->kind, SRV_STATUS);
  int rc = srv_serial_open(path, o->baud, &b->ser);
  if (rc) {
    free(b);
    return rc;
  }
  if (o->low_latency) {
    rc = srv_serial_set_low_latency(b->ser);
    if (rc < 0) {
      srv_bus_free(b);
      return rc;
    }
    b->low_latency = rc;
    if (!rc) tk_debug("%s", tk_errmsg());
  }
  /* The DYNAMIXEL SDK's packet timeout: two latency timers + 2 ms + the bytes on the wire. */
  int lat_ms = srv_serial_latency_timer_ms(b->ser);
  if (lat_ms < 0) lat_ms = b->low_latency == 1 ? 1 : 16;
  b->auto_base_us = (int64_t)lat_ms * 2000 + 2000;
  *out = b;
  return 0;
}

void srv_bus_free(srvBus *b) {
  if (!b) return;
  srv_serial_close(b->ser);
  free(b);
}

srvSerial *srv_bus_serial(srvBus *b) { return b->ser; }
srvKind srv_bus_kind(const srvBus *b) { return b->kind; }
int64_t srv_bus_timeout_us(const srvBus *b) { return b->timeout_us ? b->timeout_us : b->auto_base_us; }
void srv_bus_set_timeout_us(srvBus *b, int64_t us) { b->timeout_us = us > 0 ? us : 0; }
int srv_bus_low_latency(const srvBus *b) { return b->low_latency; }
srvFail srv_bus_last_fail(const srvBus *b) { return b->fail; }
uint8_t srv_bus_servo_error(const srvBus *b, uint8_t id) { return b->servo_err[id]; }

/* Timeout for an exchange of `bytes` bytes on the wire (request + answers). */
static int64_t timeout_for(const srvBus *b, size_t bytes) {
  if (b->timeout_us) return b->timeout_us;
  const int baud = srv_serial_baud(b->ser) > 0 ? srv_serial_baud(b->ser) : 1000000;
  return b->auto_base_us + (int64_t)bytes * 10 * 1000000 / baud;
}

/* Status bookkeeping: keep the error byte; a Dynamixel error number fails the call. */
static int check_status(srvBus *b, const char *what) {
  char e[96];
  b->servo_err[b->st.id] = b->st.error;
  if (srv_error_failed(b->kind, b->st.error)) {
    b->fail = SRV_FAIL_SERVO;
    return tk_error(TK_EIO, "%s: servo %u: %s", what, b->st.id,
                    srv_error_str(b->kind, b->st.error, e, sizeof e));
  }
  return 0;
}

static int exchange(srvBus *b, int n, uint8_t id, size_t rx_bytes, const char *what) {
  if (n < 0) return n;
  int rc = srv_txrx(b->ser, &b->parser, b->tx, (size_t)n, id, timeout_for(b, (size_t)n + rx_bytes), &b->st);
  if (rc) {
    b->fail = srv_serial_last_fail(b->ser);
    return tk_error_wrap(rc, "%s id %u", what, id);
  }
  b->fail = SRV_FAIL_NONE;
  return check_status(b, what);
}

int srv_bus_ping(srvBus *b, uint8_t id, uint16_t *model) {
  int rc = exchange(b, b->codec->ping(b->tx, sizeof b->tx, id), id, 14, "ping");
  if (rc || !model) return rc;
  if (b->codec->ping_model) { /* the ping's status carries model and firmware */
    if (b->st.nparams < 3) {
      b->fail = SRV_FAIL_CORRUPT;
      return tk_error(TK_EFORMAT, "ping id %u: status carries %u bytes, not model and firmware", id,
                      b->st.nparams);
    }
    *model = (uint16_t)(b->st.params[0] | b->st.params[1] << 8);
    return 0;
  }
  int32_t v = 0;
  rc = srv_bus_read_reg(b, id, SRV_REG_MODEL, &v);
  if (!rc) *model = (uint16_t)v;
  return rc;
}

int srv_bus_read(srvBus *b, uint8_t id, uint16_t addr, uint16_t len, uint8_t *data) {
  int rc = exchange(b, b->codec->read(b->tx, sizeof b->tx, id, addr, len), id, (size_t)len + 11, "read");
  if (rc) return rc;
  if (b->st.nparams != len) {
    b->fail = SRV_FAIL_CORRUPT;
    return tk_error(TK_EFORMAT, "read id %u: %u bytes answered for a %u-byte read at %u", id, b->st.nparams,
                    len, addr);
  }
  memcpy(data, b->st.params, len);
  return 0;
}

int srv_bus_write(srvBus *b, uint8_t id, uint16_t addr, const uint8_t *data, uint16_t len) {
  int n = b->codec->write(b->tx, sizeof b->tx, id, addr, data, len);
  if (n < 0) return n;
  if (id == SRV_BROADCAST) { /* nobody answers a broadcast write */
    int rc = srv_serial_write(b->ser, b->tx, (size_t)n);
    b->fail = rc ? srv_serial_last_fail(b->ser) : SRV_FAIL_NONE;
    return rc;
  }
  return exchange(b, n, id, 11, "write");
}

int srv_bus_read_reg(srvBus *b, uint8_t id, srvRegId reg, int32_t *value) {
  const srvReg *r = srv_reg(b->kind, reg);
  if (!r) return tk_error(TK_EINVAL, "servo register %d unknown", (int)reg);
  uint8_t d[4];
  int rc = srv_bus_read(b, id, r->addr, r->len, d);
  if (rc) return tk_error_wrap(rc, "%s", r->name);
  *value = srv_decode(b->kind, d, r->len);
  return 0;
}

int srv_bus_write_reg(srvBus *b, uint8_t id, srvRegId reg, int32_t value) {
  const srvReg *r = srv_reg(b->kind, reg);
  if (!r) return tk_error(TK_EINVAL, "servo register %d unknown", (int)reg);
  uint8_t d[4];
  int rc = srv_encode(b->kind, value, d, r->len);
  if (!rc) rc = srv_bus_write(b, id, r->addr, d, r->len);
  if (rc) return tk_error_wrap(rc, "%s", r->name);
  return 0;
}

int srv_bus_sync_read(srvBus *b, uint16_t addr, uint16_t len, const uint8_t *ids, int n, uint8_t *data,
                      uint8_t *ok) {
  uint8_t got[256] = {0};
  int rc = b->codec->sync_read(b->tx, sizeof b->tx, addr, len, ids, n);
  if (rc < 0) return rc;
  const size_t ntx = (size_t)rc;
  for (int i = 0; i < n; i++) {
    if (got[ids[i]]) return tk_error(TK_EINVAL, "sync read: id %u listed twice", ids[i]);
    got[ids[i]] = 1;
  }
  memset(got, 0, sizeof got);
  if (ok) memset(ok, 0, (size_t)n);
  rc = srv_serial_flush_input(b->ser);
  if (!rc) {
    srv_parser_reset(&b->parser);
    rc = srv_serial_write(b->ser, b->tx, ntx);
  }
  if (rc) {
    b->fail = srv_serial_last_fail(b->ser);
    return tk_error_wrap(rc, "sync read");
  }
  const int64_t deadline = tk_now_ns() + timeout_for(b, ntx + (size_t)n * ((size_t)len + 11)) * 1000;
  int have = 0, corrupt = 0, failed = 0;
  char why[TK_ERRMSG_MAX] = "";
  while (have < n) {
    rc = srv_recv(b->ser, &b->parser, -1, deadline, &b->st);
    if (rc) {
      srvFail f = srv_serial_last_fail(b->ser);
      if (f == SRV_FAIL_CORRUPT) { /* keep reading: the others may still answer */
        if (!corrupt++) snprintf(why, sizeof why, "%s", tk_errmsg());
        continue;
      }
      if (f == SRV_FAIL_HANGUP || f == SRV_FAIL_OS) {
        b->fail = f;
        return tk_error_wrap(rc, "sync read");
      }
      break; /* timeout */
    }
    int k = -1;
    for (int i = 0; i < n && k < 0; i++)
      if (ids[i] == b->st.id) k = i;
    if (k < 0 || got[b->st.id]) continue; /* not ours, or a duplicate */
    got[b->st.id] = 1;
    have++;
    b->servo_err[b->st.id] = b->st.error;
    if (srv_error_failed(b->kind, b->st.error) || b->st.nparams != len) {
      if (!failed++) {
        char e[96];
        snprintf(why, sizeof why, "id %u: %s", b->st.id,
                 b->st.nparams != len ? "wrong data length"
                                      : srv_error_str(b->kind, b->st.error, e, sizeof e));
      }
      continue;
    }
    memcpy(data + (size_t)k * len, b->st.params, len);
    if (ok) ok[k] = 1;
  }
  if (have == n && !failed) {
    b->fail = SRV_FAIL_NONE;
    return 0;
  }
  char missing[512] = "";
  size_t m = 0;
  for (int i = 0; i < n; i++)
    if (!got[ids[i]] && m < sizeof missing - 8)
      m += (size_t)snprintf(missing + m, sizeof missing - m, " %u", ids[i]);
  if (corrupt) {
    b->fail = SRV_FAIL_CORRUPT;
    return tk_error(TK_EFORMAT, "sync read: %d of %d answers, %d malformed (%s)%s%s", have - failed, n,
                    corrupt, why, m ? "; missing:" : "", missing);
  }
  if (failed) {
    b->fail = SRV_FAIL_SERVO;
    return tk_error(TK_EIO, "sync read: servo error, %s", why);
  }
  b->fail = SRV_FAIL_TIMEOUT;
  return tk_error(TK_EIO, "%s: sync read: timeout, no status from id%s", srv_serial_path(b->ser), missing);
}

int srv_bus_sync_write(srvBus *b, uint16_t addr, uint16_t len, const uint8_t *ids, int n,
                       const uint8_t *data) {
  int rc = b->codec->sync_write(b->tx, sizeof b->tx, addr, len, ids, n, data);
  if (rc < 0) return rc;
  rc = srv_serial_write(b->ser, b->tx, (size_t)rc);
  b->fail = rc ? srv_serial_last_fail(b->ser) : SRV_FAIL_NONE;
  return rc ? tk_error_wrap(rc, "sync write") : 0;
}

int srv_bus_sync_read_reg(srvBus *b, srvRegId reg, const uint8_t *ids, int n, int32_t *values, uint8_t *ok) {
  const srvReg *r = srv_reg(b->kind, reg);
  if (!r) return tk_error(TK_EINVAL, "servo register %d unknown", (int)reg);
  if (n < 1 || n > SRV_BUS_MAX_SERVOS)
    return tk_error(TK_EINVAL, "sync read: %d servos (1..%d)", n, SRV_BUS_MAX_SERVOS);
  uint8_t okk[SRV_BUS_MAX_SERVOS] = {0};
  int rc = srv_bus_sync_read(b, r->addr, r->len, ids, n, b->scratch, okk);
  for (int i = 0; i < n; i++)
    if (okk[i]) values[i] = srv_decode(b->kind, b->scratch + (size_t)i * r->len, r->len);
  if (ok) memcpy(ok, okk, (size_t)n);
  return rc ? tk_error_wrap(rc, "%s", r->name) : 0;
}

int srv_bus_sync_write_reg(srvBus *b, srvRegId reg, const uint8_t *ids, int n, const int32_t *values) {
  const srvReg *r = srv_reg(b->kind, reg);
  if (!r) return tk_error(TK_EINVAL, "servo register %d unknown", (int)reg);
  if (n < 1 || n > SRV_BUS_MAX_SERVOS)
    return tk_error(TK_EINVAL, "sync write: %d servos (1..%d)", n, SRV_BUS_MAX_SERVOS);
  for (int i = 0; i < n; i++) {
    int rc = srv_encode(b->kind, values[i], b->scratch + (size_t)i * r->len, r->len);
    if (rc) return tk_error_wrap(rc, "%s of id %u", r->name, ids[i]);
  }
  int rc = srv_bus_sync_write(b, r->addr, r->len, ids, n, b->scratch);
  return rc ? tk_error_wrap(rc, "%s", r->name) : 0;
}
