/* capture/servo/srv_dxl.c -- Dynamixel Protocol 2.0 codec: CRC-16/UMTS, byte stuffing, packet
 * builders, and the status/request extraction behind srv_parse.
 *
 * Wire format (docs/reference.md "Servo buses"):
 *     FF FF FD 00 | ID | LEN_L LEN_H | INST | params | CRC_L CRC_H
 * LEN counts INST, the stuffed params and the CRC (a status packet's params begin with the
 * error byte). Stuffing: wherever FF FF FD occurs in INST..params, an FD is inserted after it,
 * so the header FF FF FD 00 never appears inside a packet and a reader can resynchronise on it.
 * The CRC covers the packet from the header through the last stuffed parameter.
 */
#include <math.h>
#include <string.h>

#include "srv.h"

/* CRC-16/UMTS: poly 0x8005, init 0, not reflected, no final xor (what ROBOTIS' update_crc
 * computes). crc_table[i] is the CRC register after shifting byte i through from zero. */
static const uint16_t crc_table[256] = {
    0x0000, 0x8005, 0x800F, 0x000A, 0x801B, 0x001E, 0x0014, 0x8011, 0x8033, 0x0036, 0x003C, 0x8039, 0x0028,
    0x802D, 0x8027, 0x0022, 0x8063, 0x0066, 0x006C, 0x8069, 0x0078, 0x807D, 0x8077, 0x0072, 0x0050, 0x8055,
    0x805F, 0x005A, 0x804B, 0x004E, 0x0044, 0x8041, 0x80C3, 0x00C6, 0x00CC, 0x80C9, 0x00D8, 0x80DD, 0x80D7,
    0x00D2, 0x00F0, 0x80F5, 0x80FF, 0x00FA, 0x80EB, 0x00EE, 0x00E4, 0x80E1, 0x00A0, 0x80A5, 0x80AF, 0x00AA,
    0x80BB, 0x00BE, 0x00B4, 0x80B1, 0x8093, 0x0096, 0x009C, 0x8099, 0x0088, 0x808D, 0x8087, 0x0082, 0x8183,
    0x0186, 0x018C, 0x8189, 0x0198, 0x819D, 0x8197, 0x0192, 0x01B0, 0x81B5, 0x81BF, 0x01BA, 0x81AB, 0x01AE,
    0x01A4, 0x81A1, 0x01E0, 0x81E5, 0x81EF, 0x01EA, 0x81FB, 0x01FE, 0x01F4, 0x81F1, 0x81D3, 0x01D6, 0x01DC,
    0x81D9, 0x01C8, 0x81CD, 0x81C7, 0x01C2, 0x0140, 0x8145, 0x814F, 0x014A, 0x815B, 0x015E, 0x0154, 0x8151,
    0x8173, 0x0176, 0x017C, 0x8179, 0x0168, 0x816D, 0x8167, 0x0162, 0x8123, 0x0126, 0x012C, 0x8129, 0x0138,
    0x813D, 0x8137, 0x0132, 0x0110, 0x8115, 0x811F, 0x011A, 0x810B, 0x010E, 0x0104, 0x8101, 0x8303, 0x0306,
    0x030C, 0x8309, 0x0318, 0x831D, 0x8317, 0x0312, 0x0330, 0x8335, 0x833F, 0x033A, 0x832B, 0x032E, 0x0324,
    0x8321, 0x0360, 0x8365, 0x836F, 0x036A, 0x837B, 0x037E, 0x0374, 0x8371, 0x8353, 0x0356, 0x035C, 0x8359,
    0x0348, 0x834D, 0x8347, 0x0342, 0x03C0, 0x83C5, 0x83CF, 0x03CA, 0x83DB, 0x03DE, 0x03D4, 0x83D1, 0x83F3,
    0x03F6, 0x03FC, 0x83F9, 0x03E8, 0x83ED, 0x83E7, 0x03E2, 0x83A3, 0x03A6, 0x03AC, 0x83A9, 0x03B8, 0x83BD,
    0x83B7, 0x03B2, 0x0390, 0x8395, 0x839F, 0x039A, 0x838B, 0x038E, 0x0384, 0x8381, 0x0280, 0x8285, 0x828F,
    0x028A, 0x829B, 0x029E, 0x0294, 0x8291, 0x82B3, 0x02B6, 0x02BC, 0x82B9, 0x02A8, 0x82AD, 0x82A7, 0x02A2,
    0x82E3, 0x02E6, 0x02EC, 0x82E9, 0x02F8, 0x82FD, 0x82F7, 0x02F2, 0x02D0, 0x82D5, 0x82DF, 0x02DA, 0x82CB,
    0x02CE, 0x02C4, 0x82C1, 0x8243, 0x0246, 0x024C, 0x8249, 0x0258, 0x825D, 0x8257, 0x0252, 0x0270, 0x8275,
    0x827F, 0x027A, 0x826B, 0x026E, 0x0264, 0x8261, 0x0220, 0x8225, 0x822F, 0x022A, 0x823B, 0x023E, 0x0234,
    0x8231, 0x8213, 0x0216, 0x021C, 0x8219, 0x0208, 0x820D, 0x8207, 0x0202,
};

uint16_t srv_crc16(uint16_t crc, const uint8_t *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    crc = (uint16_t)((crc << 8) ^ crc_table[((crc >> 8) ^ p[i]) & 0xFF]);
  return crc;
}

static const uint8_t dxl_header[4] = {0xFF, 0xFF, 0xFD, 0x00};

/* Header, id, LEN, then INST [ERR] params stuffed, then the CRC. err < 0: a request. */
static int dxl_build(uint8_t *out, size_t cap, uint8_t id, uint8_t inst, int err, const uint8_t *params,
                     size_t n) {
  if (!out || (n && !params)) return tk_error(TK_EINVAL, "dynamixel packet: no buffer or no parameters");
  if (id > SRV_DXL_MAX_ID && !(err < 0 && id == SRV_BROADCAST))
    return tk_error(TK_EINVAL, "dynamixel packet: id %u not allowed (0..252%s)", id,
                    err < 0 ? " or 254 broadcast" : "");
  if (n > SRV_MAX_PARAMS)
    return tk_error(TK_ERANGE, "dynamixel packet: %zu parameters (max %d)", n, SRV_MAX_PARAMS);
  if (cap < 10) return tk_error(TK_ERANGE, "dynamixel packet: buffer of %zu bytes is too small", cap);
  memcpy(out, dxl_header, 4);
  out[4] = id;
  size_t k = 7;
  const size_t body_end = cap - 2; /* room for the CRC */
  uint8_t prev2 = 0, prev1 = 0;    /* the last two unstuffed bytes */
  size_t total = n + 1 + (err >= 0);
  for (size_t i = 0; i < total; i++) {
    uint8_t c = i == 0 ? inst : (err >= 0 && i == 1) ? (uint8_t)err : params[i - 1 - (err >= 0)];
    if (k >= body_end) goto too_big;
    out[k++] = c;
    if (prev2 == 0xFF && prev1 == 0xFF && c == 0xFD) {
      if (k >= body_end) goto too_big;
      out[k++] = 0xFD;
    }
    prev2 = prev1;
    prev1 = c;
  }
  size_t len = k - 7 + 2;
  if (len > SRV_DXL_MAX_LEN)
    return tk_error(TK_ERANGE, "dynamixel packet: length %zu after stuffing is over the bound %d", len,
                    SRV_DXL_MAX_LEN);
  out[5] = (uint8_t)(len & 0xFF);
  out[6] = (uint8_t)(len >> 8);
  uint16_t crc = srv_crc16(0, out, k);
  out[k++] = (uint8_t)(crc & 0xFF);
  out[k++] = (uint8_t)(crc >> 8);
  return (int)k;
too_big:
  return tk_error(TK_ERANGE, "dynamixel packet: %zu parameters do not fit a %zu-byte buffer", n, cap);
}

int srv_dxl_packet(uint8_t *out, size_t cap, uint8_t id, uint8_t inst, const uint8_t *params, size_t n) {
  if (inst == SRV_DXL_STATUS) return tk_error(TK_EINVAL, "dynamixel packet: use srv_dxl_status for a status");
  return dxl_build(out, cap, id, inst, -1, params, n);
}

int srv_dxl_status(uint8_t *out, size_t cap, uint8_t id, uint8_t err, const uint8_t *params, size_t n) {
  if (n > SRV_MAX_PARAMS - 1)
    return tk_error(TK_ERANGE, "dynamixel status: %zu parameters (max %d)", n, SRV_MAX_PARAMS - 1);
  return dxl_build(out, cap, id, SRV_DXL_STATUS, err, params, n);
}

int srv_dxl_ping(uint8_t *out, size_t cap, uint8_t id) {
  return dxl_build(out, cap, id, SRV_PING, -1, NULL, 0);
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v & 0xFF);
  p[1] = (uint8_t)(v >> 8);
}

int srv_dxl_read(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, uint16_t len) {
  if (id == SRV_BROADCAST) return tk_error(TK_EINVAL, "dynamixel read: broadcast has no single answer");
  uint8_t prm[4];
  put16(prm, addr);
  put16(prm + 2, len);
  return dxl_build(out, cap, id, SRV_READ, -1, prm, 4);
}

int srv_dxl_write(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, const uint8_t *data, uint16_t len) {
  uint8_t prm[SRV_MAX_PARAMS];
  if (!len || !data) return tk_error(TK_EINVAL, "dynamixel write: no data");
  if ((size_t)len + 2 > sizeof prm)
    return tk_error(TK_ERANGE, "dynamixel write: %u bytes (max %d)", len, SRV_MAX_PARAMS - 2);
  put16(prm, addr);
  memcpy(prm + 2, data, len);
  return dxl_build(out, cap, id, SRV_WRITE, -1, prm, (size_t)len + 2);
}

static int check_ids(const char *what, const uint8_t *ids, int n, int max_id) {
  if (!ids || n < 1) return tk_error(TK_EINVAL, "%s: no servo ids", what);
  for (int i = 0; i < n; i++)
    if (ids[i] > max_id) return tk_error(TK_EINVAL, "%s: id %u not allowed (0..%d)", what, ids[i], max_id);
  return 0;
}

int srv_dxl_sync_read(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n) {
  int rc = check_ids("dynamixel sync read", ids, n, SRV_DXL_MAX_ID);
  if (rc) return rc;
  if (!len) return tk_error(TK_EINVAL, "dynamixel sync read: zero length");
  uint8_t prm[SRV_MAX_PARAMS];
  if ((size_t)n + 4 > sizeof prm) return tk_error(TK_ERANGE, "dynamixel sync read: %d servos is too many", n);
  put16(prm, addr);
  put16(prm + 2, len);
  memcpy(prm + 4, ids, (size_t)n);
  return dxl_build(out, cap, SRV_BROADCAST, SRV_SYNC_READ, -1, prm, (size_t)n + 4);
}

int srv_dxl_sync_write(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n,
                       const uint8_t *data) {
  int rc = check_ids("dynamixel sync write", ids, n, SRV_DXL_MAX_ID);
  if (rc) return rc;
  if (!len || !data) return tk_error(TK_EINVAL, "dynamixel sync write: no data");
  uint8_t prm[SRV_MAX_PARAMS];
  size_t need = 4 + (size_t)n * (1 + (size_t)len);
  if (need > sizeof prm)
    return tk_error(TK_ERANGE, "dynamixel sync write: %d servos x %u bytes is over %d parameters", n, len,
                    SRV_MAX_PARAMS);
  put16(prm, addr);
  put16(prm + 2, len);
  size_t k = 4;
  for (int i = 0; i < n; i++) {
    prm[k++] = ids[i];
    memcpy(prm + k, data + (size_t)i * len, len);
    k += len;
  }
  return dxl_build(out, cap, SRV_BROADCAST, SRV_SYNC_WRITE, -1, prm, k);
}

/* ---- extraction for srv_parse ---- */
int srv_dxl_extract(srvParser *p, srvPacket *out) {
  const uint8_t *b = p->buf;
  size_t n = p->n, i;
  for (i = 0; i + 4 <= n; i++)
    if (b[i] == 0xFF && b[i + 1] == 0xFF && b[i + 2] == 0xFD && b[i + 3] == 0x00) break;
  if (i + 4 > n) { /* no header: keep the longest tail that may begin one */
    size_t keep = 0;
    for (size_t k = n < 3 ? n : 3; k > 0 && !keep; k--)
      if (!memcmp(b + n - k, dxl_header, k)) keep = k;
    p->skipped += n - keep;
    srv_parser_drop(p, n - keep);
    return 0;
  }
  p->skipped += i;
  srv_parser_drop(p, i);
  n = p->n;
  if (n < 7) return 0;
  const int status = p->dir == SRV_STATUS;
  const uint8_t id = b[4];
  const size_t len = (size_t)b[5] | (size_t)b[6] << 8;
  if (id > SRV_DXL_MAX_ID && (status || id != SRV_BROADCAST))
    return srv_parser_reject(p, SRV_PE_ID, 1, "dynamixel %s: id %u not allowed",
                             status ? "status" : "request", id);
  const size_t min_len = status ? 4 : 3; /* INST [ERR] CRC_L CRC_H */
  if (len < min_len || len > SRV_DXL_MAX_LEN)
    return srv_parser_reject(p, SRV_PE_LENGTH, 1, "dynamixel %s from id %u: bad length %zu (%zu..%d)",
                             status ? "status" : "request", id, len, min_len, SRV_DXL_MAX_LEN);
  const size_t total = 7 + len;
  if (n < total) return 0;
  const uint16_t want = srv_crc16(0, b, total - 2);
  const uint16_t got = (uint16_t)(b[total - 2] | b[total - 1] << 8);
  if (want != got)
    return srv_parser_reject(p, SRV_PE_CHECKSUM, 1,
                             "dynamixel %s from id %u: bad CRC (packet says 0x%04X, computed 0x%04X)",
                             status ? "status" : "request", id, got, want);
  /* destuff INST..params */
  uint8_t body[SRV_DXL_MAX_LEN];
  size_t m = 0;
  int ff = 0; /* consecutive FF data bytes, up to 2 */
  for (size_t q = 7; q < total - 2; q++) {
    const uint8_t c = b[q];
    body[m++] = c;
    if (ff == 2 && c == 0xFD) {
      if (q + 1 >= total - 2 || b[q + 1] != 0xFD)
        return srv_parser_reject(p, SRV_PE_STUFFING, total,
                                 "dynamixel packet from id %u: FF FF FD without the stuffing FD at byte %zu",
                                 id, q + 1);
      q++;
      ff = 0;
      continue;
    }
    ff = c == 0xFF ? (ff < 2 ? ff + 1 : 2) : 0;
  }
  const uint8_t inst = body[0];
  if (status && inst != SRV_DXL_STATUS)
    return srv_parser_reject(p, SRV_PE_KIND, total,
                             "dynamixel: expected a status (0x55) from id %u, got instruction 0x%02X", id,
                             inst);
  if (!status && inst == SRV_DXL_STATUS)
    return srv_parser_reject(p, SRV_PE_KIND, total, "dynamixel: expected a request, got a status from id %u",
                             id);
  const size_t skip = status ? 2 : 1;
  if (m < skip) /* cannot happen: LEN >= min_len and destuffing leaves >= 3 of 4 bytes */
    return srv_parser_reject(p, SRV_PE_LENGTH, total, "dynamixel status from id %u: no error byte", id);
  out->id = id;
  out->inst = inst;
  out->error = status ? body[1] : 0;
  out->nparams = (uint16_t)(m - skip);
  memcpy(out->params, body + skip, m - skip);
  srv_parser_drop(p, total);
  return 1;
}

/* ---- error byte: bit 7 the hardware alert, bits 0-6 an error number ---- */
static void dxl_error_names(uint8_t err, char *buf, size_t n) {
  static const char *num_names[8] = {"",
                                     "result fail",
                                     "instruction error",
                                     "CRC error",
                                     "data range error",
                                     "data length error",
                                     "data limit error",
                                     "access error"};
  size_t k = 0;
  const unsigned num = err & 0x7F;
  if (num) srv_appendf(buf, n, &k, "%s", num < 8 ? num_names[num] : "unknown error");
  if (num >= 8) srv_appendf(buf, n, &k, " %u", num);
  if (err & SRV_DXL_ALERT) srv_appendf(buf, n, &k, "%shardware alert", num ? ", " : "");
}

/* ---- the simulated X-series servo (srv_sim.c) ---- */
static void put_le(uint8_t *p, uint32_t v, int len) {
  for (int i = 0; i < len; i++)
    p[i] = (uint8_t)(v >> (8 * i));
}

static void sim_init(uint8_t *t) {
  put_le(t + 0, 1060, 2);  /* model: XL430-W250 */
  t[6] = 45;               /* firmware */
  t[8] = 3;                /* baud: 1 Mbps */
  t[9] = 250;              /* return delay: 500 us */
  t[11] = 3;               /* operating mode: position */
  put_le(t + 48, 4095, 4); /* max position limit */
  put_le(t + 52, 0, 4);    /* min position limit */
  t[68] = 2;               /* status return level: all */
  put_le(t + 144, 120, 2); /* input voltage, 0.1 V */
  t[146] = 30;             /* temperature, C */
}

/* e-manual access rules: model and firmware (0..6) and the present-state block (120..147) are
 * read-only, EEPROM (0..63) is writable only with torque off: access error; a Goal Position
 * outside the position limits (48, 52): data limit error, ignored. */
static unsigned sim_write_check(const uint8_t *t, unsigned addr, const uint8_t *data, unsigned len) {
  const int torque = t[64] != 0;
  if (addr < 7 || (addr < 148 && addr + len > 120)) return SRV_DXL_ERR_ACCESS; /* read-only */
  if (addr < 64 && torque) return SRV_DXL_ERR_ACCESS;                          /* EEPROM locked */
  const srvReg *g = &srv_codec_dxl.regs[SRV_REG_GOAL_POSITION];
  if (addr <= g->addr && addr + len >= (unsigned)g->addr + g->len) {
    int32_t v = srv_decode(SRV_DXL, data + (g->addr - addr), g->len);
    if (v > srv_decode(SRV_DXL, t + 48, 4) || v < srv_decode(SRV_DXL, t + 52, 4)) return SRV_DXL_ERR_LIMIT;
  }
  return 0;
}

static double sim_velocity(double ticks_per_s) { return ticks_per_s / 4096.0 * 60.0 / 0.229; } /* 0.229 rpm */

static const srvSimServo sim_servo = {
    .model = "XL430-W250",
    .init = sim_init,
    .velocity = sim_velocity,
    .cur_per_tick = 0.5,
    .cur_max = 1193,
    .hw_error_value = 0x04, /* Hardware_Error_Status: overheating */
    .write_check = sim_write_check,
};

/* ---- the row: X-series (XL430/XM430) e-manual ---- */
static const srvReg regs[SRV_REG_COUNT] = {
    [SRV_REG_MODEL] = {"Model_Number", 0, 2},
    [SRV_REG_ID] = {"ID", 7, 1},
    [SRV_REG_TORQUE_ENABLE] = {"Torque_Enable", 64, 1},
    [SRV_REG_GOAL_POSITION] = {"Goal_Position", 116, 4},
    [SRV_REG_PRESENT_POSITION] = {"Present_Position", 132, 4},
    [SRV_REG_PRESENT_VELOCITY] = {"Present_Velocity", 128, 4},
    [SRV_REG_PRESENT_CURRENT] = {"Present_Current", 126, 2},
    [SRV_REG_MOVING] = {"Moving", 122, 1},
    [SRV_REG_HW_ERROR] = {"Hardware_Error_Status", 70, 1},
};

const srvCodec srv_codec_dxl = {
    .name = "dynamixel2",
    .kind = SRV_DXL,
    .aliases = "dxl dynamixel dynamixel2",
    .packet = srv_dxl_packet,
    .status = srv_dxl_status,
    .ping = srv_dxl_ping,
    .read = srv_dxl_read,
    .write = srv_dxl_write,
    .sync_read = srv_dxl_sync_read,
    .sync_write = srv_dxl_sync_write,
    .extract = srv_dxl_extract,
    .addr_bytes = 2,
    .max_id = SRV_DXL_MAX_ID,
    .regs = regs,
    .sm_bit = 0, /* two's complement */
    .err_number = 0x7F,
    .hw_alert = SRV_DXL_ALERT,
    .ping_model = 1,
    .vel_unit = 0.229 * 2 * M_PI / 60, /* 0.229 rpm */
    .cur_unit = 2.69e-3,               /* 2.69 mA */
    .error_names = dxl_error_names,
    .sim = &sim_servo,
};
