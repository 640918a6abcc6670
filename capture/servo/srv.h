/* capture/servo/srv.h -- servo buses for leader-follower arms (internal to capture/, prefix srv_).
 *
 * Four layers, each usable alone:
 *   codecs     srv_dxl.c  Dynamixel Protocol 2.0 (byte stuffing, CRC-16/UMTS)
 *              srv_fts.c  Feetech STS/SMS (one-byte ~sum checksum, sign-magnitude values)
 *              Builders for ping, read, write, sync read, sync write (and status packets, for the
 *              simulator), and one incremental parser for both that takes a byte stream (split
 *              reads, garbage before a header, stuffed bytes) and returns validated packets.
 *              srvCodec is the table over them: one row per codec, defined in its file.
 *   transport  srv_serial.c  POSIX serial port (termios raw, any baud via termios2/BOTHER,
 *              ASYNC_LOW_LATENCY), reads with a microsecond timeout, hangup detection, and the
 *              transaction srv_txrx (write a request, read one status packet or time out).
 *   bus        srv_bus.c  a port + a codec + a parser + buffers, allocated once at open: ping, read,
 *              write, sync read, sync write by register, without allocating per call.
 *   simulator  srv_sim.c  a chain of simulated servos (X-series or STS3215 control tables, first
 *              order position dynamics) served on a pseudo-terminal by a thread; records every
 *              command; injects dropped replies, corrupt checksums, hardware error bits, unplug.
 *
 * Errors follow core/tk.h: 0 or a count on success, a negative TK_E* code with tk_error()'s
 * message otherwise. Wire facts are in docs/reference.md, "Servo buses".
 */
#ifndef SRV_H
#define SRV_H

#include <stddef.h>
#include <stdint.h>

#include "tk.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- protocol constants ---- */
/* Dynamixel Protocol 2.0, Feetech STS: the index of the codec's row (srv_codec). */
typedef enum { SRV_DXL = 0, SRV_FTS = 1, SRV_NKINDS } srvKind;

enum {
  SRV_PING = 0x01,
  SRV_READ = 0x02,
  SRV_WRITE = 0x03,
  SRV_SYNC_READ = 0x82,
  SRV_SYNC_WRITE = 0x83,
  SRV_DXL_STATUS = 0x55, /* instruction byte of every Dynamixel status packet */
};
enum { SRV_BROADCAST = 0xFE, SRV_DXL_MAX_ID = 0xFC, SRV_FTS_MAX_ID = 0xFD };

/* Bounds. Parameters of one packet (after destuffing) never exceed SRV_MAX_PARAMS; the length
 * fields are checked against these bounds before anything is read from them. */
enum {
  SRV_MAX_PARAMS = 512,
  SRV_DXL_MAX_LEN = SRV_MAX_PARAMS + 3, /* LEN field: INST + stuffed params + CRC */
  SRV_FTS_MAX_LEN = 250,                /* LEN field: INST/ERR + params + CHK (SCServo SDK bound) */
  SRV_RAW_MAX = 7 + SRV_DXL_MAX_LEN,    /* largest packet on the wire, bytes */
};

/* Dynamixel status error byte: bit 7 is the hardware alert (the instruction still ran; read
 * Hardware_Error_Status 70), bits 0-6 an error number (the instruction failed). */
enum {
  SRV_DXL_ALERT = 0x80,
  SRV_DXL_ERR_RESULT = 1,      /* result fail */
  SRV_DXL_ERR_INSTRUCTION = 2, /* undefined instruction, or action without reg write */
  SRV_DXL_ERR_CRC = 3,         /* the instruction packet's CRC did not match */
  SRV_DXL_ERR_RANGE = 4,       /* data out of the register's range */
  SRV_DXL_ERR_LENGTH = 5,      /* data shorter than the register */
  SRV_DXL_ERR_LIMIT = 6,       /* data over a limit register */
  SRV_DXL_ERR_ACCESS = 7,      /* read-only or EEPROM with torque on, or no such address */
};
/* Feetech status error byte: flags, the instruction still ran. Bit 7 is never set (a packet
 * with it is rejected as not a status, as the SCServo SDK does). */
enum {
  SRV_FTS_ERR_VOLTAGE = 0x01,
  SRV_FTS_ERR_ANGLE = 0x02,
  SRV_FTS_ERR_OVERHEAT = 0x04,
  SRV_FTS_ERR_CURRENT = 0x08,
  SRV_FTS_ERR_OVERLOAD = 0x20,
};
/* "overheat, overload" / "access error" / "ok" into buf; returns buf. */
const char *srv_error_str(srvKind kind, uint8_t err, char *buf, size_t n);
/* 1 when err means the instruction failed (Dynamixel error number), 0 for warnings or none. */
int srv_error_failed(srvKind kind, uint8_t err);

/* ---- registers ---- */
typedef enum {
  SRV_REG_MODEL = 0,     /* model number */
  SRV_REG_ID,            /* bus id (EEPROM) */
  SRV_REG_TORQUE_ENABLE, /* 0/1 */
  SRV_REG_GOAL_POSITION, /* ticks (4096 per turn on both families) */
  SRV_REG_PRESENT_POSITION,
  SRV_REG_PRESENT_VELOCITY, /* Dynamixel 0.229 rpm, Feetech steps/s */
  SRV_REG_PRESENT_CURRENT,  /* Dynamixel 2.69 mA, Feetech 6.5 mA */
  SRV_REG_MOVING,           /* 0/1 */
  SRV_REG_HW_ERROR,         /* Dynamixel Hardware_Error_Status; Feetech Status */
  SRV_REG_COUNT
} srvRegId;
typedef struct {
  const char *name;
  uint16_t addr;
  uint16_t len; /* bytes */
} srvReg;
/* X-series (XL430/XM430) and STS3215 addresses. */
const srvReg *srv_reg(srvKind kind, srvRegId reg);

/* Register values on the wire, little-endian. Dynamixel: two's complement (1-byte registers
 * are unsigned). Feetech: 2-byte registers are sign-magnitude with the sign in bit 15, 1-byte
 * registers unsigned. srv_encode returns TK_ERANGE when v does not fit. */
int srv_encode(srvKind kind, int32_t v, uint8_t *p, int len);
int32_t srv_decode(srvKind kind, const uint8_t *p, int len);
/* Sign-magnitude with the sign in bit `bit` (15 for STS 16-bit values, 11 for Homing_Offset). */
int srv_sm_encode(int32_t v, int bit, uint32_t *raw);
int32_t srv_sm_decode(uint32_t raw, int bit);

/* ---- packets and the stream parser ---- */
typedef struct {
  uint8_t id;
  uint8_t inst;     /* requests: the instruction; Dynamixel status: SRV_DXL_STATUS; Feetech status: 0 */
  uint8_t error;    /* status error byte (0 in requests) */
  uint16_t nparams; /* <= SRV_MAX_PARAMS */
  uint8_t params[SRV_MAX_PARAMS]; /* destuffed parameters (status: the data, after the error byte) */
} srvPacket;

typedef enum { SRV_STATUS = 0, SRV_REQUEST = 1 } srvDir; /* what the parser accepts */

/* Why the last malformed candidate was dropped (for tests and counters). */
typedef enum {
  SRV_PE_NONE = 0,
  SRV_PE_CHECKSUM, /* CRC (Dynamixel) or ~sum (Feetech) mismatch */
  SRV_PE_LENGTH,   /* LEN under the minimum or over the bound */
  SRV_PE_ID,       /* id not allowed in this direction */
  SRV_PE_STUFFING, /* FF FF FD not followed by the stuffing FD */
  SRV_PE_KIND,     /* wrong instruction: a request where a status was expected or the reverse */
} srvParseErr;

typedef struct {
  srvKind kind;
  srvDir dir;
  size_t n;                 /* bytes held in buf */
  uint64_t skipped;         /* bytes dropped while looking for a header */
  uint64_t bad;             /* malformed candidates dropped */
  srvParseErr last_err;     /* reason for the last one */
  uint8_t buf[SRV_RAW_MAX]; /* the current candidate (plus what follows it) */
} srvParser;

void srv_parser_init(srvParser *p, srvKind kind, srvDir dir);
void srv_parser_reset(srvParser *p); /* forget held bytes; keep kind, dir and counters */

/* Feed up to n bytes of a stream and take at most one packet out.
 *   1          a validated packet is in *out; *used bytes of data were taken. Call again with
 *              data + *used (n = 0 is fine: held bytes may hold more packets).
 *   0          every byte was taken (*used == n), no complete packet yet.
 *   TK_EFORMAT a malformed candidate was dropped (message says why; p->last_err too); the
 *              parser has resynchronised one byte past its header. Call again with the rest.
 * Reads only data[0..n) and its own buffer, whatever the input. */
int srv_parse(srvParser *p, const uint8_t *data, size_t n, size_t *used, srvPacket *out);
/* Zero-copy feeding for transports: read at most *room bytes into the returned pointer, then
 * commit them, then call srv_parse(p, NULL, 0, ...). *room > 0 whenever srv_parse returned 0. */
uint8_t *srv_parser_tail(srvParser *p, size_t *room);
void srv_parser_commit(srvParser *p, size_t k);

/* ---- Dynamixel Protocol 2.0 (srv_dxl.c) ---- */
/* CRC-16/UMTS (poly 0x8005, init 0, not reflected, no final xor), table driven; pass 0 first. */
uint16_t srv_crc16(uint16_t crc, const uint8_t *p, size_t n);
/* Builders write one packet into out[0..cap) and return its length, or TK_EINVAL (bad id or
 * arguments) / TK_ERANGE (does not fit cap or the LEN bound). Parameters are stuffed. */
int srv_dxl_packet(uint8_t *out, size_t cap, uint8_t id, uint8_t inst, const uint8_t *params, size_t n);
int srv_dxl_status(uint8_t *out, size_t cap, uint8_t id, uint8_t err, const uint8_t *params, size_t n);
int srv_dxl_ping(uint8_t *out, size_t cap, uint8_t id);
int srv_dxl_read(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, uint16_t len);
int srv_dxl_write(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, const uint8_t *data, uint16_t len);
/* Broadcast; each listed servo answers with its own status packet, in list order. */
int srv_dxl_sync_read(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n);
/* Broadcast, no answer; data holds n * len bytes, servo i's at data + i * len. */
int srv_dxl_sync_write(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n,
                       const uint8_t *data);

/* ---- Feetech STS (srv_fts.c): addresses and lengths are one byte ---- */
uint8_t srv_fts_checksum(const uint8_t *pkt, size_t n); /* ~(ID + LEN + ...) over pkt[2..n) */
int srv_fts_packet(uint8_t *out, size_t cap, uint8_t id, uint8_t inst, const uint8_t *params, size_t n);
int srv_fts_status(uint8_t *out, size_t cap, uint8_t id, uint8_t err, const uint8_t *params, size_t n);
int srv_fts_ping(uint8_t *out, size_t cap, uint8_t id);
int srv_fts_read(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, uint16_t len);
int srv_fts_write(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, const uint8_t *data, uint16_t len);
int srv_fts_sync_read(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n);
int srv_fts_sync_write(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n,
                       const uint8_t *data);

/* The codecs as rows of one table (what the bus, the robot and the simulator use): a protocol's
 * builders, its stream extraction and its servos' capabilities, one row per codec, defined in the
 * codec's file (srv_dxl.c: srv_codec_dxl, srv_fts.c: srv_codec_fts) and listed in srv_codec.c.
 * Nothing outside a codec's file branches on which codec it is: it asks the row. */
typedef struct srvCodec {
  const char *name;    /* "dynamixel2", "feetech" */
  srvKind kind;        /* its index in the table */
  const char *aliases; /* what srv_kind_parse takes for it, space separated ("dxl dynamixel dynamixel2") */
  int (*packet)(uint8_t *out, size_t cap, uint8_t id, uint8_t inst, const uint8_t *params, size_t n);
  int (*status)(uint8_t *out, size_t cap, uint8_t id, uint8_t err, const uint8_t *params, size_t n);
  int (*ping)(uint8_t *out, size_t cap, uint8_t id);
  int (*read)(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, uint16_t len);
  int (*write)(uint8_t *out, size_t cap, uint8_t id, uint16_t addr, const uint8_t *data, uint16_t len);
  int (*sync_read)(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n);
  int (*sync_write)(uint8_t *out, size_t cap, uint16_t addr, uint16_t len, const uint8_t *ids, int n,
                    const uint8_t *data);
  /* srv_parse's step: take at most one packet out of the parser's held bytes (p->dir says status or
   * request). 1 a packet in *out, 0 need more bytes, TK_EFORMAT a malformed candidate was dropped
   * (srv_parser_reject). */
  int (*extract)(srvParser *p, srvPacket *out);
  int addr_bytes;     /* width of addresses and lengths in read/sync parameters: 2 or 1 */
  int max_id;         /* largest id a servo can have (SRV_BROADCAST aside) */
  const srvReg *regs; /* SRV_REG_COUNT register addresses of its servos' control table */
  int sm_bit;         /* 2-byte registers: 0 two's complement, else sign-magnitude with the sign here */
  uint8_t err_number; /* status error bits that are an error number (the instruction failed); 0: none */
  uint8_t hw_alert;   /* status error bits a servo sets on a hardware error (the simulator's HWERR) */
  int ping_model;     /* 1: a ping's status carries the model number; 0: read Model_Number */
  double vel_unit;    /* rad/s per Present_Velocity unit */
  double cur_unit;    /* A per Present_Current unit */
  /* the status error byte's meaning, e.g. "overheat, overload", into buf (err != 0; n > 0) */
  void (*error_names)(uint8_t err, char *buf, size_t n);
  const struct srvSimServo *sim; /* the simulated servo of this family (srv_sim.c) */
} srvCodec;
/* The row of kind (NULL for a kind that is not in the table). */
const srvCodec *srv_codec(srvKind kind);
/* A codec by any of its names ("dxl", "dynamixel", "fts", "feetech", "sts", ...); TK_EINVAL otherwise. */
int srv_kind_parse(const char *s, srvKind *out);

/* ---- serial transport (srv_serial.c) ---- */
typedef struct srvSerial srvSerial;

/* Why the last transport call failed. */
typedef enum {
  SRV_FAIL_NONE = 0,
  SRV_FAIL_TIMEOUT, /* no (complete) answer in time: TK_EIO */
  SRV_FAIL_CORRUPT, /* a malformed answer (checksum, length, ...): TK_EFORMAT */
  SRV_FAIL_HANGUP,  /* the port went away (USB adapter pulled, pty master closed): TK_EIO */
  SRV_FAIL_SERVO,   /* the servo answered with an error number (Dynamixel): TK_EIO */
  SRV_FAIL_OS,      /* another system call failure: TK_EIO */
} srvFail;

/* Open a tty raw (8N1, no flow control, no echo, non-blocking) at baud bits per second: the
 * standard B* rates through cfsetspeed, any other through termios2/BOTHER. */
int srv_serial_open(const char *path, int baud, srvSerial **out);
void srv_serial_close(srvSerial *s);
/* Ask for ASYNC_LOW_LATENCY (TIOCGSERIAL/TIOCSSERIAL; on ftdi_sio this sets the 16 ms latency
 * timer to 1 ms). 1 set, 0 unsupported by this driver (a pty, some adapters; the reason is in
 * tk_errmsg()), negative on another error. */
int srv_serial_set_low_latency(srvSerial *s);
/* The adapter's latency timer in ms from sysfs (ftdi_sio: .../device/latency_timer), or -1. */
int srv_serial_latency_timer_ms(const srvSerial *s);
int srv_serial_baud(const srvSerial *s); /* the rate the driver reports back */
int srv_serial_fd(const srvSerial *s);
const char *srv_serial_path(const srvSerial *s);
int srv_serial_connected(const srvSerial *s); /* 0 after a hangup */
srvFail srv_serial_last_fail(const srvSerial *s);
int srv_serial_write(srvSerial *s, const uint8_t *buf, size_t n);
/* Wait at most timeout_us for bytes; returns the count read (> 0), 0 on timeout, TK_EIO on a
 * hangup or error. */
int srv_serial_read(srvSerial *s, uint8_t *buf, size_t cap, int64_t timeout_us);
int srv_serial_flush_input(srvSerial *s); /* drop unread input (stale answers) */

/* Read until one packet the parser accepts (from expect_id, or any id when expect_id < 0;
 * packets from other ids are skipped) or until the absolute deadline (tk_now_ns clock).
 * TK_EIO on timeout or hangup, TK_EFORMAT on a malformed packet; srv_serial_last_fail says. */
int srv_recv(srvSerial *s, srvParser *p, int expect_id, int64_t deadline_ns, srvPacket *st);
/* One transaction: drop stale input, reset the parser, write req[0..n), srv_recv within
 * timeout_us of the write. */
int srv_txrx(srvSerial *s, srvParser *p, const uint8_t *req, size_t n, int expect_id, int64_t timeout_us,
             srvPacket *st);

/* ---- bus (srv_bus.c) ---- */
typedef struct srvBus srvBus;
typedef struct {
  srvKind kind;
  int baud;           /* bits per second (1000000) */
  int low_latency;    /* 1: ask the driver for its low-latency mode (default) */
  int64_t timeout_us; /* per status packet; 0: 2 latency timers + 2 ms + the bytes' wire time */
} srvBusOpts;
void srv_bus_default(srvBusOpts *o);
int srv_bus_open(srvBus **out, const char *path, const srvBusOpts *o);
void srv_bus_free(srvBus *b);
srvSerial *srv_bus_serial(srvBus *b);
srvKind srv_bus_kind(const srvBus *b);
int64_t srv_bus_timeout_us(const srvBus *b);
void srv_bus_set_timeout_us(srvBus *b, int64_t us);
int srv_bus_low_latency(const srvBus *b); /* what srv_serial_set_low_latency returned at open */
srvFail srv_bus_last_fail(const srvBus *b);
/* Error byte of the last status from id (alert / Feetech flags are kept here, not failed). */
uint8_t srv_bus_servo_error(const srvBus *b, uint8_t id);

/* model: Dynamixel from the ping status; Feetech by a read of Model_Number (NULL: skip). */
int srv_bus_ping(srvBus *b, uint8_t id, uint16_t *model);
int srv_bus_read(srvBus *b, uint8_t id, uint16_t addr, uint16_t len, uint8_t *data);
int srv_bus_write(srvBus *b, uint8_t id, uint16_t addr, const uint8_t *data, uint16_t len);
int srv_bus_read_reg(srvBus *b, uint8_t id, srvRegId reg, int32_t *value);
int srv_bus_write_reg(srvBus *b, uint8_t id, srvRegId reg, int32_t value);
/* data gets n * len bytes; ok (optional) gets 1 per servo that answered in time. Every answer
 * is waited for; TK_EIO naming the missing ids if any did not answer. */
int srv_bus_sync_read(srvBus *b, uint16_t addr, uint16_t len, const uint8_t *ids, int n, uint8_t *data,
                      uint8_t *ok);
int srv_bus_sync_write(srvBus *b, uint16_t addr, uint16_t len, const uint8_t *ids, int n,
                       const uint8_t *data);
/* The same over a named register with int32 values (n <= SRV_BUS_MAX_SERVOS). */
enum { SRV_BUS_MAX_SERVOS = 64 };
int srv_bus_sync_read_reg(srvBus *b, srvRegId reg, const uint8_t *ids, int n, int32_t *values, uint8_t *ok);
int srv_bus_sync_write_reg(srvBus *b, srvRegId reg, const uint8_t *ids, int n, const int32_t *values);

/* ---- simulated bus (srv_sim.c) ---- */
typedef struct srvSim srvSim;

/* One command as a servo received it: one record per addressed servo (a sync write to four
 * servos makes four records). value: the written register value decoded (srv_decode of the
 * first min(len, 4) bytes), 0 for ping and reads. */
typedef struct {
  int64_t t_ns;  /* tk_now_ns() when the request was parsed */
  uint8_t id;    /* the servo (not SRV_BROADCAST) */
  uint8_t inst;  /* SRV_PING, SRV_READ, SRV_WRITE, SRV_SYNC_READ, SRV_SYNC_WRITE, or other */
  uint16_t addr; /* register address (0 for ping) */
  uint16_t len;  /* bytes read or written */
  int32_t value;
} srvSimCmd;

enum {
  SRV_FAULT_DROP = 1,  /* the servo executes but its status never arrives (timeouts) */
  SRV_FAULT_CRC = 2,   /* status packets leave with a corrupt CRC / checksum */
  SRV_FAULT_HWERR = 4, /* hardware error: Dynamixel alert bit + overheating, Feetech overheat flag */
};

/* Start n servos, ids 1..n, on a new pty; the port to open is srv_sim_path(). Positions start
 * at 2048 + 100 * id ticks, torque off. */
int srv_sim_start(srvKind kind, int n, srvSim **out);
const char *srv_sim_path(const srvSim *sim); /* "/dev/pts/N" */
/* Time constant of the first-order position response, seconds (default 0.05). */
void srv_sim_set_tau(srvSim *sim, double tau_s);
/* Set the SRV_FAULT_* flags of servo id (0: every servo), replacing the previous ones. */
int srv_sim_set_fault(srvSim *sim, int id, unsigned faults);
/* Pull the adapter: the serving thread closes the pty master, so the port end hangs up (reads
 * see a hangup, writes fail with EIO) and the /dev/pts node disappears. Final. */
void srv_sim_unplug(srvSim *sim);
/* Commands received so far (every record ever made, numbered from 0). */
uint64_t srv_sim_ncommands(srvSim *sim);
/* Copy records first, first+1, ... (at most max) into out; returns how many. Only the last
 * SRV_SIM_LOG records are kept: older ones are skipped. */
enum { SRV_SIM_LOG = 1 << 16 };
size_t srv_sim_commands(srvSim *sim, uint64_t first, srvSimCmd *out, size_t max);
uint64_t srv_sim_bad_requests(srvSim *sim); /* malformed requests seen */
/* A register of servo id straight from its control table (dynamics advanced to now). */
int srv_sim_peek(srvSim *sim, uint8_t id, srvRegId reg, int32_t *value);
/* A hand moves servo id to ticks (a leader arm's operator; the servo must have torque off, as
 * a leader arm's servos do: with torque on the motor holds its goal, TK_EINVAL). */
int srv_sim_move(srvSim *sim, uint8_t id, int32_t ticks);
void srv_sim_stop(srvSim *sim); /* NULL fine */

/* ---- internals shared by the codec files ---- */
extern const srvCodec srv_codec_dxl, srv_codec_fts; /* the rows (srv_codec.c lists them) */
int srv_dxl_extract(srvParser *p, srvPacket *out);  /* 1 packet, 0 need more, TK_EFORMAT dropped */
int srv_fts_extract(srvParser *p, srvPacket *out);
/* snprintf at buf + *k (bounded by n, *k advanced by what would have been written) */
void srv_appendf(char *buf, size_t n, size_t *k, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* The simulated servo of a codec's family (srv_sim.c asks it; defined in the codec's file). */
enum { SRV_SIM_IGNORED = 0x100 }; /* write_check: the write is silently ignored (read-only, no error code) */
typedef struct srvSimServo {
  const char *model;            /* "XL430-W250", "STS3215" */
  void (*init)(uint8_t *table); /* its factory control table (id, goal and present position come after) */
  double (*velocity)(double ticks_per_s); /* Present_Velocity's units for a speed (before rounding) */
  double cur_per_tick, cur_max; /* Present_Current units per tick of position error, and its bound */
  int32_t hw_error_value;       /* SRV_REG_HW_ERROR's value while the servo has a hardware error */
  /* 0 ok, an error number (err_number bits), or SRV_SIM_IGNORED, for a write of len bytes at addr;
   * table: the servo's control table before the write */
  unsigned (*write_check)(const uint8_t *table, unsigned addr, const uint8_t *data, unsigned len);
} srvSimServo;
void srv_parser_drop(srvParser *p, size_t k); /* forget the first k held bytes */
/* Count a malformed candidate, drop k bytes, set the message; returns TK_EFORMAT. */
int srv_parser_reject(srvParser *p, srvParseErr why, size_t k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* termios2 (srv_baud.c, apart because <asm/termbits.h> clashes with <termios.h>): set any
 * rate with BOTHER / read the output rate back. 0 or the rate on success, -errno on failure. */
int srv_termios2_set(int fd, int baud);
int srv_termios2_get(int fd);

#ifdef __cplusplus
}
#endif
#endif
