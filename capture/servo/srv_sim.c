/* capture/servo/srv_sim.c -- a simulated servo bus on a pseudo-terminal.
 *
 * A chain of n servos (ids 1..n) with a control table each: the X-series subset (Dynamixel
 * Protocol 2.0) or the STS3215 one (Feetech). A thread owns the pty master: it parses the
 * requests the program under test writes to the slave (/dev/pts/N, opened like /dev/ttyUSB0),
 * executes them on the tables, records every command, and writes the status packets back.
 * Positions follow a first-order response toward Goal_Position while torque is on,
 * integrated exactly (x += (goal - x)(1 - exp(-dt/tau))) whenever a request arrives.
 *
 * Faults: dropped replies (the servo executes, the status never comes: timeouts), corrupt
 * CRC/checksum, the hardware-error bits, and unplug: the thread closes the master, the kernel
 * hangs the slave up as it does a pulled USB-serial adapter (reads see EOF/POLLHUP, writes
 * EIO, the /dev/pts node goes away).
 *
 * The thread also keeps a descriptor of the slave open, so the master does not see hang-ups
 * while the program reopens the port, and puts the slave in raw mode before handing out its
 * path (no echo: with echo on, a status would come back to the servos as a request).
 *
 * The servo of each family (its factory table, units, write rules: Dynamixel's access and limit
 * errors, Feetech's silently ignored read-only writes) is its codec row's `sim` (srv_dxl.c,
 * srv_fts.c). Error numbers in replies are Protocol 2.0's, sent only by codecs that have error
 * numbers (srvCodec.err_number); the others answer such requests with silence or a plain status.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include "srv.h"

enum { SIM_TABLE = 256, SIM_MAX_SERVOS = 252, SIM_OUT = 8192 };

typedef struct {
  uint8_t table[SIM_TABLE];
  double pos;      /* ticks */
  unsigned faults; /* SRV_FAULT_* */
} simServo;

struct srvSim {
  srvKind kind;
  const srvCodec *codec;
  int n;
  simServo *servo; /* n of them */
  int master, slave_keep, wake[2];
  pthread_t thread;
  int thread_live;
  atomic_int stop, unplug;
  pthread_mutex_t mu; /* servo, log, tau, t_last, bad */
  double tau;         /* s */
  int64_t t_last;     /* ns of the last dynamics update */
  srvSimCmd *log;     /* ring of SRV_SIM_LOG */
  uint64_t nlog, bad;
  char path[128];
  /* thread-only */
  srvParser parser;
  srvPacket req;
  uint8_t out[SIM_OUT];
  size_t nout;
};

/* ---- control tables ---- */
static void put(srvSim *sim, simServo *s, srvRegId reg, int32_t v) {
  const srvReg *r = srv_reg(sim->kind, reg);
  if (srv_encode(sim->kind, v, s->table + r->addr, r->len)) { /* out of range: saturate */
    int32_t lim = r->len == 1 ? 255 : r->len == 2 ? 32767 : INT32_MAX;
    srv_encode(sim->kind, v < 0 ? (r->len == 1 ? 0 : -lim) : lim, s->table + r->addr, r->len);
  }
}
static int32_t get(const srvSim *sim, const simServo *s, srvRegId reg) {
  const srvReg *r = srv_reg(sim->kind, reg);
  return srv_decode(sim->kind, s->table + r->addr, r->len);
}
static void init_servo(srvSim *sim, simServo *s, int id) {
  memset(s, 0, sizeof *s);
  s->pos = 2048 + 100 * id;
  sim->codec->sim->init(s->table); /* the family's factory table */
  put(sim, s, SRV_REG_ID, id);
  put(sim, s, SRV_REG_GOAL_POSITION, (int32_t)s->pos);
  put(sim, s, SRV_REG_PRESENT_POSITION, (int32_t)s->pos);
}

static simServo *find(srvSim *sim, int id) {
  for (int i = 0; i < sim->n; i++)
    if (get(sim, &sim->servo[i], SRV_REG_ID) == id) return &sim->servo[i];
  return NULL;
}

/* Advance every servo to now (caller holds mu). */
static void advance(srvSim *sim, int64_t now) {
  const double dt = (double)(now - sim->t_last) / 1e9;
  if (dt <= 0) return;
  sim->t_last = now;
  const double a = exp(-dt / (sim->tau > 1e-6 ? sim->tau : 1e-6));
  const srvSimServo *ss = sim->codec->sim;
  for (int i = 0; i < sim->n; i++) {
    simServo *s = &sim->servo[i];
    const int torque = get(sim, s, SRV_REG_TORQUE_ENABLE) != 0;
    const double goal = get(sim, s, SRV_REG_GOAL_POSITION);
    const double old = s->pos;
    if (torque) s->pos = goal + (s->pos - goal) * a;
    const double vel = (s->pos - old) / dt; /* ticks/s */
    const double err = torque ? goal - s->pos : 0;
    put(sim, s, SRV_REG_PRESENT_POSITION, (int32_t)lround(s->pos));
    put(sim, s, SRV_REG_PRESENT_VELOCITY, (int32_t)lround(ss->velocity(vel)));
    put(sim, s, SRV_REG_PRESENT_CURRENT,
        (int32_t)lround(fmax(-ss->cur_max, fmin(ss->cur_max, ss->cur_per_tick * err))));
    put(sim, s, SRV_REG_HW_ERROR, s->faults & SRV_FAULT_HWERR ? ss->hw_error_value : 0);
    put(sim, s, SRV_REG_MOVING, torque && fabs(goal - s->pos) >= 1.0);
  }
}

static void record(srvSim *sim, uint8_t id, uint8_t inst, uint16_t addr, uint16_t len, const uint8_t *data,
                   int64_t t) {
  srvSimCmd *c = &sim->log[sim->nlog % SRV_SIM_LOG];
  c->t_ns = t;
  c->id = id;
  c->inst = inst;
  c->addr = addr;
  c->len = len;
  c->value = 0;
  if (data && len) {
    int k = len >= 4 ? 4 : len >= 2 ? 2 : 1;
    c->value = srv_decode(sim->kind, data, k);
  }
  sim->nlog++;
}

/* ---- replies ---- */
static uint8_t status_err(const srvSim *sim, const simServo *s, uint8_t err) {
  if (s->faults & SRV_FAULT_HWERR) err |= sim->codec->hw_alert;
  return err;
}

/* The status of servo s, under the id the request used (a servo whose ID register was just
 * written answers that write under its old id). */
static void reply(srvSim *sim, const simServo *s, uint8_t id, uint8_t err, const uint8_t *data, size_t n) {
  if (s->faults & SRV_FAULT_DROP) return;
  err &= sim->codec->err_number; /* a protocol without error numbers (Feetech) has only flags */
  int k = sim->codec->status(sim->out + sim->nout, sizeof sim->out - sim->nout, id, status_err(sim, s, err),
                             data, n);
  if (k < 0) return;
  if (s->faults & SRV_FAULT_CRC) sim->out[sim->nout + (size_t)k - 1] ^= 0x5A;
  sim->nout += (size_t)k;
}

/* 0 or an error number (SRV_DXL_ERR_ACCESS: outside the table). */
static uint8_t check_range(unsigned addr, unsigned len) {
  return !len || addr + len > SIM_TABLE ? SRV_DXL_ERR_ACCESS : 0;
}

/* Apply a write under the family's rules; returns the error number (0 ok or ignored). */
static uint8_t do_write(srvSim *sim, simServo *s, unsigned addr, const uint8_t *data, unsigned len) {
  uint8_t e = check_range(addr, len);
  if (e) return e;
  const unsigned w = sim->codec->sim->write_check(s->table, addr, data, len);
  if (w == SRV_SIM_IGNORED) return 0;
  if (w) return (uint8_t)w;
  memcpy(s->table + addr, data, len);
  const srvReg *id = srv_reg(sim->kind, SRV_REG_ID);
  if (s->table[id->addr] > sim->codec->max_id) s->table[id->addr] = 1;
  return 0;
}

static unsigned param16(const srvSim *sim, const uint8_t *p, int which) {
  return sim->codec->addr_bytes == 2 ? (unsigned)(p[2 * which] | p[2 * which + 1] << 8) : p[which];
}

static void handle(srvSim *sim, const srvPacket *rq, int64_t t) {
  const int ab = sim->codec->addr_bytes;
  const int bcast = rq->id == SRV_BROADCAST;
  const int numbers = sim->codec->err_number != 0; /* errors are answered with a status (Dynamixel) */
  simServo *s = bcast ? NULL : find(sim, rq->id);
  advance(sim, t);
  switch (rq->inst) {
  case SRV_PING:
    if (!bcast && !s) record(sim, rq->id, SRV_PING, 0, 0, NULL, t); /* nobody there: no answer */
    for (int i = 0; i < sim->n; i++) {
      simServo *x = bcast ? &sim->servo[i] : s;
      if (!x) break;
      const uint8_t id = (uint8_t)get(sim, x, SRV_REG_ID);
      record(sim, id, SRV_PING, 0, 0, NULL, t);
      uint8_t info[3];
      info[0] = x->table[0];
      info[1] = x->table[1];
      info[2] = x->table[6];
      reply(sim, x, id, 0, info, sim->codec->ping_model ? 3 : 0);
      if (!bcast) break;
    }
    return;
  case SRV_READ: {
    if (rq->nparams != 2 * ab) {
      record(sim, rq->id, SRV_READ, 0, 0, NULL, t);
      if (s && numbers) reply(sim, s, rq->id, SRV_DXL_ERR_LENGTH, NULL, 0);
      return;
    }
    const unsigned addr = param16(sim, rq->params, 0), len = param16(sim, rq->params, 1);
    record(sim, rq->id, SRV_READ, (uint16_t)addr, (uint16_t)len, NULL, t);
    if (!s) return;
    uint8_t e = check_range(addr, len);
    if (e) {
      if (numbers) reply(sim, s, rq->id, e, NULL, 0);
      return;
    }
    reply(sim, s, rq->id, 0, s->table + addr, len);
    return;
  }
  case SRV_WRITE: {
    if (rq->nparams < ab + 1) {
      record(sim, rq->id, SRV_WRITE, 0, 0, NULL, t);
      if (s && numbers) reply(sim, s, rq->id, SRV_DXL_ERR_LENGTH, NULL, 0);
      return;
    }
    const unsigned addr = param16(sim, rq->params, 0), len = rq->nparams - (unsigned)ab;
    const uint8_t *data = rq->params + ab;
    if (!bcast) {
      record(sim, rq->id, SRV_WRITE, (uint16_t)addr, (uint16_t)len, data, t);
      if (s) reply(sim, s, rq->id, do_write(sim, s, addr, data, len), NULL, 0);
    } else {
      for (int i = 0; i < sim->n; i++) {
        record(sim, (uint8_t)get(sim, &sim->servo[i], SRV_REG_ID), SRV_WRITE, (uint16_t)addr, (uint16_t)len,
               data, t);
        do_write(sim, &sim->servo[i], addr, data, len);
      }
    }
    advance(sim, t); /* refresh derived registers (moving, errors) */
    return;
  }
  case SRV_SYNC_READ: {
    if (rq->nparams < 2 * ab + 1) {
      sim->bad++;
      return;
    }
    const unsigned addr = param16(sim, rq->params, 0), len = param16(sim, rq->params, 1);
    for (int i = 2 * ab; i < rq->nparams; i++) {
      simServo *x = find(sim, rq->params[i]);
      record(sim, rq->params[i], SRV_SYNC_READ, (uint16_t)addr, (uint16_t)len, NULL, t);
      if (!x) continue;
      uint8_t e = check_range(addr, len);
      if (e)
        reply(sim, x, rq->params[i], e, NULL, 0);
      else
        reply(sim, x, rq->params[i], 0, x->table + addr, len);
    }
    return;
  }
  case SRV_SYNC_WRITE: {
    if (rq->nparams < 2 * ab) {
      sim->bad++;
      return;
    }
    const unsigned addr = param16(sim, rq->params, 0), len = param16(sim, rq->params, 1);
    if (!len || (rq->nparams - 2 * ab) % (len + 1)) {
      sim->bad++;
      return;
    }
    for (unsigned k = 2 * (unsigned)ab; k + len + 1 <= rq->nparams; k += len + 1) {
      const uint8_t *data = rq->params + k + 1;
      record(sim, rq->params[k], SRV_SYNC_WRITE, (uint16_t)addr, (uint16_t)len, data, t);
      simServo *x = find(sim, rq->params[k]);
      if (x) do_write(sim, x, addr, data, len);
    }
    advance(sim, t);
    return;
  }
  default:
    record(sim, rq->id, rq->inst, 0, 0, NULL, t);
    if (s && numbers) reply(sim, s, rq->id, SRV_DXL_ERR_INSTRUCTION, NULL, 0);
    return;
  }
}

/* ---- serving thread ---- */
static void send_out(srvSim *sim) {
  size_t done = 0;
  while (done < sim->nout) {
    ssize_t w = write(sim->master, sim->out + done, sim->nout - done);
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno == EAGAIN) {
      struct pollfd pf = {.fd = sim->master, .events = POLLOUT};
      if (poll(&pf, 1, 100) > 0) continue;
    }
    break; /* nobody reads: the bytes are lost, as on a wire */
  }
  sim->nout = 0;
}

static void *serve(void *arg) {
  srvSim *sim = arg;
  while (!atomic_load(&sim->stop) && !atomic_load(&sim->unplug)) {
    struct pollfd pf[2] = {{.fd = sim->master, .events = POLLIN}, {.fd = sim->wake[0], .events = POLLIN}};
    int r = poll(pf, 2, 100);
    if (r < 0 && errno != EINTR) break;
    if (r <= 0) continue;
    if (pf[1].revents) {
      char junk[16];
      while (read(sim->wake[0], junk, sizeof junk) > 0) {
      }
      continue;
    }
    if (pf[0].revents & POLLIN) {
      size_t room;
      uint8_t *tail = srv_parser_tail(&sim->parser, &room);
      ssize_t k = read(sim->master, tail, room);
      if (k > 0) {
        srv_parser_commit(&sim->parser, (size_t)k);
        const int64_t t = tk_now_ns();
        int rc;
        while ((rc = srv_parse(&sim->parser, NULL, 0, NULL, &sim->req)) != 0) {
          pthread_mutex_lock(&sim->mu);
          if (rc == 1)
            handle(sim, &sim->req, t);
          else
            sim->bad++;
          pthread_mutex_unlock(&sim->mu);
        }
        send_out(sim);
        continue;
      }
    }
    if (pf[0].revents & (POLLHUP | POLLERR)) usleep(2000); /* no slave open (cannot happen: we hold one) */
  }
  if (atomic_load(&sim->unplug)) { /* pull the adapter: the slave end hangs up */
    close(sim->slave_keep);
    close(sim->master);
    sim->slave_keep = sim->master = -1;
  }
  return NULL;
}

/* ---- API ---- */
int srv_sim_start(srvKind kind, int n, srvSim **out) {
  *out = NULL;
  if (n < 1 || n > SIM_MAX_SERVOS)
    return tk_error(TK_EINVAL, "servo simulator: %d servos (1..%d)", n, SIM_MAX_SERVOS);
  if (!srv_codec(kind) || !srv_codec(kind)->sim)
    return tk_error(TK_EINVAL, "servo simulator: no simulated servo for protocol %d", (int)kind);
  srvSim *sim = calloc(1, sizeof *sim);
  if (!sim) return tk_error(TK_ENOMEM, "out of memory");
  sim->master = sim->slave_keep = sim->wake[0] = sim->wake[1] = -1;
  sim->kind = kind;
  sim->codec = srv_codec(kind);
  sim->n = n;
  sim->tau = 0.05;
  pthread_mutex_init(&sim->mu, NULL);
  srv_parser_init(&sim->parser, kind, SRV_REQUEST);
  sim->servo = calloc((size_t)n, sizeof *sim->servo);
  sim->log = calloc(SRV_SIM_LOG, sizeof *sim->log);
  if (!sim->servo || !sim->log) {
    srv_sim_stop(sim);
    return tk_error(TK_ENOMEM, "out of memory");
  }
  for (int i = 0; i < n; i++)
    init_servo(sim, &sim->servo[i], i + 1);
  sim->t_last = tk_now_ns();
  int rc = 0;
  const char *step = "posix_openpt";
  sim->master = posix_openpt(O_RDWR | O_NOCTTY);
  if (sim->master < 0) goto os_fail;
  step = "grantpt";
  if (grantpt(sim->master) < 0) goto os_fail;
  step = "unlockpt";
  if (unlockpt(sim->master) < 0) goto os_fail;
  step = "ptsname";
  if (ptsname_r(sim->master, sim->path, sizeof sim->path)) goto os_fail;
  step = "open slave";
  sim->slave_keep = open(sim->path, O_RDWR | O_NOCTTY | O_CLOEXEC);
  if (sim->slave_keep < 0) goto os_fail;
  struct termios t;
  step = "tcgetattr";
  if (tcgetattr(sim->slave_keep, &t) < 0) goto os_fail;
  cfmakeraw(&t);
  step = "tcsetattr";
  if (tcsetattr(sim->slave_keep, TCSANOW, &t) < 0) goto os_fail;
  step = "fcntl";
  if (fcntl(sim->master, F_SETFL, fcntl(sim->master, F_GETFL) | O_NONBLOCK) < 0 ||
      fcntl(sim->master, F_SETFD, FD_CLOEXEC) < 0)
    goto os_fail;
  step = "pipe";
  if (pipe2(sim->wake, O_CLOEXEC | O_NONBLOCK) < 0) goto os_fail;
  rc = pthread_create(&sim->thread, NULL, serve, sim);
  if (rc) {
    errno = rc;
    step = "pthread_create";
    goto os_fail;
  }
  sim->thread_live = 1;
  *out = sim;
  return 0;
os_fail:
  rc = tk_error(TK_EIO, "servo simulator: %s: %s", step, strerror(errno));
  srv_sim_stop(sim);
  return rc;
}

const char *srv_sim_path(const srvSim *sim) { return sim->path; }

void srv_sim_set_tau(srvSim *sim, double tau_s) {
  pthread_mutex_lock(&sim->mu);
  advance(sim, tk_now_ns());
  sim->tau = tau_s > 0 ? tau_s : 0.05;
  pthread_mutex_unlock(&sim->mu);
}

int srv_sim_set_fault(srvSim *sim, int id, unsigned faults) {
  int hit = 0;
  pthread_mutex_lock(&sim->mu);
  for (int i = 0; i < sim->n; i++)
    if (id == 0 || get(sim, &sim->servo[i], SRV_REG_ID) == id) {
      sim->servo[i].faults = faults;
      hit++;
    }
  advance(sim, tk_now_ns());
  pthread_mutex_unlock(&sim->mu);
  return hit ? 0 : tk_error(TK_ENOTFOUND, "servo simulator: no servo with id %d", id);
}

static void join(srvSim *sim) {
  if (!sim->thread_live) return;
  if (sim->wake[1] >= 0) {
    ssize_t w = write(sim->wake[1], "x", 1);
    (void)w;
  }
  pthread_join(sim->thread, NULL);
  sim->thread_live = 0;
}

void srv_sim_unplug(srvSim *sim) {
  if (!sim) return;
  atomic_store(&sim->unplug, 1);
  join(sim);
}

uint64_t srv_sim_ncommands(srvSim *sim) {
  pthread_mutex_lock(&sim->mu);
  uint64_t n = sim->nlog;
  pthread_mutex_unlock(&sim->mu);
  return n;
}

size_t srv_sim_commands(srvSim *sim, uint64_t first, srvSimCmd *out, size_t max) {
  size_t k = 0;
  pthread_mutex_lock(&sim->mu);
  if (sim->nlog > SRV_SIM_LOG && first < sim->nlog - SRV_SIM_LOG) first = sim->nlog - SRV_SIM_LOG;
  for (uint64_t i = first; i < sim->nlog && k < max; i++)
    out[k++] = sim->log[i % SRV_SIM_LOG];
  pthread_mutex_unlock(&sim->mu);
  return k;
}

uint64_t srv_sim_bad_requests(srvSim *sim) {
  pthread_mutex_lock(&sim->mu);
  uint64_t n = sim->bad;
  pthread_mutex_unlock(&sim->mu);
  return n;
}

int srv_sim_peek(srvSim *sim, uint8_t id, srvRegId reg, int32_t *value) {
  if (!srv_reg(sim->kind, reg)) return tk_error(TK_EINVAL, "servo register %d unknown", (int)reg);
  pthread_mutex_lock(&sim->mu);
  advance(sim, tk_now_ns());
  simServo *s = find(sim, id);
  if (s) *value = get(sim, s, reg);
  pthread_mutex_unlock(&sim->mu);
  return s ? 0 : tk_error(TK_ENOTFOUND, "servo simulator: no servo with id %u", id);
}

int srv_sim_move(srvSim *sim, uint8_t id, int32_t ticks) {
  pthread_mutex_lock(&sim->mu);
  advance(sim, tk_now_ns());
  simServo *s = find(sim, id);
  int torque = s && get(sim, s, SRV_REG_TORQUE_ENABLE) != 0;
  if (s && !torque) {
    s->pos = ticks;
    put(sim, s, SRV_REG_PRESENT_POSITION, ticks);
  }
  pthread_mutex_unlock(&sim->mu);
  if (!s) return tk_error(TK_ENOTFOUND, "servo simulator: no servo with id %u", id);
  return torque ? tk_error(TK_EINVAL, "servo simulator: servo %u has torque on: it holds its goal", id) : 0;
}

void srv_sim_stop(srvSim *sim) {
  if (!sim) return;
  atomic_store(&sim->stop, 1);
  join(sim);
  if (sim->slave_keep >= 0) close(sim->slave_keep);
  if (sim->master >= 0) close(sim->master);
  for (int i = 0; i < 2; i++)
    if (sim->wake[i] >= 0) close(sim->wake[i]);
  pthread_mutex_destroy(&sim->mu);
  free(sim->servo);
  free(sim->log);
  free(sim);
}
