/* capture/servo/srv_fts.c -- Feetech STS/SMS codec (SCServo protocol, as on the SO-100's
 * STS3215): packet builders, checksum, and the extraction behind srv_parse.
 *
 * Wire format (docs/reference.md "Servo buses"):
 *     FF FF | ID | LEN | INST or ERR | params | CHK      LEN = params + 2
 *     CHK = ~(ID + LEN + INST + params) & 0xFF
 * No stuffing: FF FF may occur inside a packet, so a reader resynchronises by trying the next
 * FF FF after any packet that fails its checks. Addresses and lengths are one byte; multi-byte
 * values are little-endian, signed ones sign-magnitude (srv_encode).
 */
#include <string.h>

#include "srv.h"

uint8_t srv_fts_checksum(const uint8_t *pkt, size_t n) {
  unsigned sum = 0;
  for (size_t i = 2; i < n; i++)
    sum += pkt[i];
  return (uint8_t)(~sum & 0xFF);
}

/* FF FF ID LEN B params CHK, B = the instruction (request) or the error byte (status). */
static int fts_build(uint8_t *out, size_t cap, uint8_t id, uint8_t b, int status, const uint8_t *params,
                     size_t n) {
  if (!out || (n && !params)) return tk_error(TK_EINVAL, "feetech packet: no buffer or no parameters");
  if (id > SRV_FTS_MAX_ID && !(!status && id == SRV_BROADCAST))
    return tk_error(TK_EINVAL, "feetech packet: id %u not allowed (0..253%s)", id,
                    status ? "" : " or 254 broadcast");
  if (n + 2 > SRV_FTS_MAX_LEN)
    return tk_error(TK_ERANGE, "feetech packet: %zu parameters (max %d)", n, SRV_FTS_MAX_LEN - 2);
  if (cap < n + 6)
    return tk_error(TK_ERANGE, "feetech packet: %zu parameters do not fit a %zu-byte buffer", n, cap);
  out[0] = 0xFF;
  out[1] = 0xFF;
  out[2] = id;
  out[3] = (uint8_t)(n + 2);
  out[4] = b;
  if (n) memcpy(out + 5, params, n);
  out[5 + n] = srv_fts_checksum(out, 5 + n);
  return (int)(n + 6);
}

int srv_fts_packet(uint8_t *out, size_t cap, uint8_t id, uint8_t inst, const uint8_t *params, size_t n) {
  return fts_build(out, cap, id, inst, 0, params, n);
}

int srv_fts_status(uint8_t *out, size_t cap, uint8_t id, uint8_t err, const uint8_t *params, size_t n) {
  if (err & 0x80) return tk_error(TK_EINVAL, "feetech status: error byte 0x%02X has bit 7 set", err);
  return fts_build(out, cap, id, err, 1, params, n);
}

int srv_fts_ping(uint8_t *out, size_t cap, uint8_t id) {
  return fts_build(out, cap, id, SRV_PING, 0, NULL, 0);
}

static int check_byte(const char *what, const char *name, unsigned v) {
  if (v > 0xFF) return tk_error(TK_ERANGE, "feetech %s: %s %u does not fit one byte", what, name, v);
  return 0;
}

int srv_fts_read(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, uint16_t len) {
  if (id == SRV_BROADCAST) return tk_error(TK_EINVAL, "feetech read: broadcast has no single answer");
  int rc = check_byte("read", "address", addr);
  if (!rc) rc = check_byte("read", "length", len);
  if (rc) return rc;
  if (!len) return tk_error(TK_EINVAL, "feetech read: zero length");
  const uint8_t prm[2] = {(uint8_t)addr, (uint8_t)len};
  return fts_build(out, cap, id, SRV_READ, 0, prm, 2);
}

int srv_fts_write(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, const uint8_t *data, uint16_t len) {
  uint8_t prm[SRV_FTS_MAX_LEN];
  int rc = check_byte("write", "address", addr);
  if (rc) return rc;
  if (!len || !data) return tk_error(TK_EINVAL, "feetech write: no data");
  if ((size_t)len + 1 + 2 > SRV_FTS_MAX_LEN)
    return tk_error(TK_ERANGE, "feetech write: %u bytes (max %d)", len, SRV_FTS_MAX_LEN - 3);
  prm[0] = (uint8_t)addr;
  memcpy(prm + 1, data, len);
  return fts_build(out, cap, id, SRV_WRITE, 0, prm, (size_t)len + 1);
}

static int check_ids(const char *what, const uint8_t *ids, int n) {
  if (!ids || n < 1) return tk_error(TK_EINVAL, "feetech %s: no servo ids", what);
  for (int i = 0; i < n; i++)
    if (ids[i] > SRV_FTS_MAX_ID)
      return tk_error(TK_EINVAL, "feetech %s: id %u not allowed (0..253)", what, ids[i]);
  return 0;
}

int srv_fts_sync_read(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n) {
  int rc = check_ids("sync read", ids, n);
  if (!rc) rc = check_byte("sync read", "address", addr);
  if (!rc) rc = check_byte("sync read", "length", len);
  if (rc) return rc;
  if (!len) return tk_error(TK_EINVAL, "feetech sync read: zero length");
  uint8_t prm[SRV_FTS_MAX_LEN];
  if ((size_t)n + 2 + 2 > SRV_FTS_MAX_LEN)
    return tk_error(TK_ERANGE, "feetech sync read: %d servos is too many", n);
  prm[0] = (uint8_t)addr;
  prm[1] = (uint8_t)len;
  memcpy(prm + 2, ids, (size_t)n);
  return fts_build(out, cap, SRV_BROADCAST, SRV_SYNC_READ, 0, prm, (size_t)n + 2);
}

int srv_fts_sync_write(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n,
                       const uint8_t *data) {
  int rc = check_ids("sync write", ids, n);
  if (!rc) rc = check_byte("sync write", "address", addr);
  if (!rc) rc = check_byte("sync write", "length", len);
  if (rc) return rc;
  if (!len || !data) return tk_error(TK_EINVAL, "feetech sync write: no data");
  uint8_t prm[SRV_FTS_MAX_LEN];
  size_t need = 2 + (size_t)n * (1 + (size_t)len);
  if (need + 2 > SRV_FTS_MAX_LEN)
    return tk_error(TK_ERANGE, "feetech sync write: %d servos x %u bytes is over %d parameters", n, len,
                    SRV_FTS_MAX_LEN - 2);
  prm[0] = (uint8_t)addr;
  prm[1] = (uint8_t)len;
  size_t k = 2;
  for (int i = 0; i < n; i++) {
    prm[k++] = ids[i];
    memcpy(prm + k, data + (size_t)i * len, len);
    k += len;
  }
  return fts_build(out, cap, SRV_BROADCAST, SRV_SYNC_WRITE, 0, prm, k);
}

/* ---- extraction for srv_parse ---- */
int srv_fts_extract(srvParser *p, srvPacket *out) {
  const uint8_t *b = p->buf;
  size_t n = p->n, i = 0;
  int found = 0;
  while (i + 1 < n) {
    if (b[i] == 0xFF && b[i + 1] == 0xFF) {
      if (i + 2 >= n) break;  /* FF FF at the end: wait for the id */
      if (b[i + 2] != 0xFF) { /* FF FF FF ...: the header starts one later */
        found = 1;
        break;
      }
    }
    i++;
  }
  if (!found) { /* keep a trailing FF or FF FF, drop the rest */
    size_t from = (i < n && b[i] == 0xFF) ? i : n;
    p->skipped += from;
    srv_parser_drop(p, from);
    return 0;
  }
  p->skipped += i;
  srv_parser_drop(p, i);
  n = p->n;
  if (n < 4) return 0;
  const int status = p->dir == SRV_STATUS;
  const uint8_t id = b[2];
  const size_t len = b[3];
  if (id > SRV_FTS_MAX_ID && (status || id != SRV_BROADCAST))
    return srv_parser_reject(p, SRV_PE_ID, 1, "feetech %s: id %u not allowed", status ? "status" : "request",
                             id);
  if (len < 2 || len > SRV_FTS_MAX_LEN)
    return srv_parser_reject(p, SRV_PE_LENGTH, 1, "feetech %s from id %u: bad length %zu (2..%d)",
                             status ? "status" : "request", id, len, SRV_FTS_MAX_LEN);
  const size_t total = 4 + len;
  if (n < total) return 0;
  const uint8_t want = srv_fts_checksum(b, total - 1);
  if (want != b[total - 1])
    return srv_parser_reject(p, SRV_PE_CHECKSUM, 1,
                             "feetech %s from id %u: bad checksum (packet says 0x%02X, computed 0x%02X)",
                             status ? "status" : "request", id, b[total - 1], want);
  if (status && (b[4] & 0x80))
    return srv_parser_reject(p, SRV_PE_KIND, total,
                             "feetech: expected a status from id %u, got error byte 0x%02X (an instruction?)",
                             id, b[4]);
  out->id = id;
  out->inst = status ? 0 : b[4];
  out->error = status ? b[4] : 0;
  out->nparams = (uint16_t)(len - 2);
  memcpy(out->params, b + 5, len - 2);
  srv_parser_drop(p, total);
  return 1;
}

/* ---- error byte: flags (the instruction still ran) ---- */
static void fts_error_names(uint8_t err, char *buf, size_t n) {
  static const struct {
    uint8_t bit;
    const char *name;
  } bits[] = {{SRV_FTS_ERR_VOLTAGE, "voltage"},
              {SRV_FTS_ERR_ANGLE, "angle sensor"},
              {SRV_FTS_ERR_OVERHEAT, "overheat"},
              {SRV_FTS_ERR_CURRENT, "overcurrent"},
              {SRV_FTS_ERR_OVERLOAD, "overload"}};
  size_t k = 0;
  uint8_t rest = err;
  for (size_t i = 0; i < TK_ARRAY_LEN(bits); i++)
    if (err & bits[i].bit) {
      srv_appendf(buf, n, &k, "%s%s", k ? ", " : "", bits[i].name);
      rest &= (uint8_t)~bits[i].bit;
    }
  if (rest) srv_appendf(buf, n, &k, "%sflags 0x%02X", k ? ", " : "", rest);
}

/* ---- the simulated STS3215 (srv_sim.c) ---- */
static void sim_init(uint8_t *t) {
  t[0] = 3; /* firmware 3.10 */
  t[1] = 10;
  t[3] = 777 & 0xFF; /* model: STS3215 (Model_Number, 2 bytes at 3) */
  t[4] = 777 >> 8;
  t[6] = 0;            /* baud: 1 Mbps */
  t[11] = 4095 & 0xFF; /* max angle limit */
  t[12] = 4095 >> 8;
  t[62] = 120; /* voltage, 0.1 V */
  t[63] = 30;  /* temperature, C */
}

/* no error codes: writes to the present-state block (56..70) are ignored */
static unsigned sim_write_check(const uint8_t *t, unsigned addr, const uint8_t *data, unsigned len) {
  (void)t;
  (void)data;
  return addr < 71 && addr + len > 56 ? SRV_SIM_IGNORED : 0;
}

static double sim_velocity(double ticks_per_s) { return ticks_per_s; } /* steps/s */

static const srvSimServo sim_servo = {
    .model = "STS3215",
    .init = sim_init,
    .velocity = sim_velocity,
    .cur_per_tick = 0.2,
    .cur_max = 500,
    .hw_error_value = SRV_FTS_ERR_OVERHEAT, /* Status */
    .write_check = sim_write_check,
};

/* ---- the row: STS3215 (LeRobot's table) ---- */
static const srvReg regs[SRV_REG_COUNT] = {
    [SRV_REG_MODEL] = {"Model_Number", 3, 2},
    [SRV_REG_ID] = {"ID", 5, 1},
    [SRV_REG_TORQUE_ENABLE] = {"Torque_Enable", 40, 1},
    [SRV_REG_GOAL_POSITION] = {"Goal_Position", 42, 2},
    [SRV_REG_PRESENT_POSITION] = {"Present_Position", 56, 2},
    [SRV_REG_PRESENT_VELOCITY] = {"Present_Velocity", 58, 2},
    [SRV_REG_PRESENT_CURRENT] = {"Present_Current", 69, 2},
    [SRV_REG_MOVING] = {"Moving", 66, 1},
    [SRV_REG_HW_ERROR] = {"Status", 65, 1},
};

const srvCodec srv_codec_fts = {
    .name = "feetech",
    .kind = SRV_FTS,
    .aliases = "fts feetech sts",
    .packet = srv_fts_packet,
    .status = srv_fts_status,
    .ping = srv_fts_ping,
    .read = srv_fts_read,
    .write = srv_fts_write,
    .sync_read = srv_fts_sync_read,
    .sync_write = srv_fts_sync_write,
    .extract = srv_fts_extract,
    .addr_bytes = 1,
    .max_id = SRV_FTS_MAX_ID,
    .regs = regs,
    .sm_bit = 15, /* 2-byte values: sign-magnitude, sign in bit 15 */
    .err_number = 0,
    .hw_alert = SRV_FTS_ERR_OVERHEAT,
    .ping_model = 0,
    .vel_unit = 1.0 / (4096.0 / (2.0 * 3.14159265358979323846)), /* one step (of 4096 per turn) per s */
    .cur_unit = 6.5e-3,                                          /* 6.5 mA */
    .error_names = fts_error_names,
    .sim = &sim_servo,
};
