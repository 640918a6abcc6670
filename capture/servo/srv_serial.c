/* capture/servo/srv_serial.c -- POSIX serial transport for servo buses (/dev/ttyUSB*,
 * /dev/ttyACM*, a pty from the simulator), and the request/status transaction.
 *
 * The port is raw 8N1 without flow control, non-blocking, VMIN 1 / VTIME 0: with VMIN 0 a
 * read that finds nothing returns 0, which is also what a hung-up tty returns; with VMIN 1
 * and O_NONBLOCK "nothing yet" is EAGAIN, so 0 (or EIO) means the port went away. Waiting is
 * ppoll with a microsecond timeout. When a USB-serial adapter is pulled the kernel hangs the
 * tty up (usb_serial_disconnect -> tty_vhangup): poll reports POLLHUP, reads return 0, writes
 * EIO. The simulator reproduces this by closing the pty master.
 *
 * Latency: FTDI adapters hold received bytes up to their latency timer (16 ms by default)
 * before sending them to the host, which caps a read-after-write loop near 30 Hz. ALOHA and
 * GELLO set it to 1 ms; the ASYNC_LOW_LATENCY flag does that through the ftdi_sio driver.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/serial.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include "srv.h"

struct srvSerial {
  int fd;
  int connected;
  srvFail fail;
  int baud; /* as the driver reports it */
  char path[256];
};

static const struct {
  int rate;
  speed_t code;
} std_rates[] = {
    {9600, B9600},       {19200, B19200},     {38400, B38400},     {57600, B57600},     {115200, B115200},
    {230400, B230400},   {460800, B460800},   {500000, B500000},   {576000, B576000},   {921600, B921600},
    {1000000, B1000000}, {1152000, B1152000}, {1500000, B1500000}, {2000000, B2000000}, {2500000, B2500000},
    {3000000, B3000000}, {3500000, B3500000}, {4000000, B4000000},
};

static int fail(srvSerial *s, srvFail why, int code, const char *what) {
  s->fail = why;
  if (why == SRV_FAIL_HANGUP) {
    s->connected = 0;
    return tk_error(code, "%s: %s: port hung up (adapter unplugged?)", s->path, what);
  }
  return tk_error(code, "%s: %s: %s", s->path, what, strerror(errno));
}

int srv_serial_open(const char *path, int baud, srvSerial **out) {
  *out = NULL;
  if (!path || !path[0]) return tk_error(TK_EINVAL, "serial: no port path");
  if (baud <= 0) return tk_error(TK_EINVAL, "serial %s: bad baud rate %d", path, baud);
  int fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0)
    return tk_error(errno == ENOENT  ? TK_ENOTFOUND
                    : errno == EBUSY ? TK_EBUSY
                                     : TK_EIO,
                    "open %s: %s", path, strerror(errno));
  struct termios t;
  if (!isatty(fd) || tcgetattr(fd, &t) < 0) {
    int e = errno;
    close(fd);
    return tk_error(TK_EINVAL, "%s is not a serial port: %s", path, strerror(e));
  }
  cfmakeraw(&t);
  t.c_cflag &= ~(tcflag_t)(CSIZE | CSTOPB | PARENB | CRTSCTS);
  t.c_cflag |= CS8 | CLOCAL | CREAD;
  t.c_iflag &= ~(tcflag_t)(IXON | IXOFF | IXANY);
  t.c_cc[VMIN] = 1;
  t.c_cc[VTIME] = 0;
  int std = 0;
  for (size_t i = 0; i < TK_ARRAY_LEN(std_rates); i++)
    if (std_rates[i].rate == baud) {
      cfsetispeed(&t, std_rates[i].code);
      cfsetospeed(&t, std_rates[i].code);
      std = 1;
    }
  if (tcsetattr(fd, TCSANOW, &t) < 0) {
    int e = errno;
    close(fd);
    return tk_error(TK_EIO, "%s: tcsetattr: %s", path, strerror(e));
  }
  if (!std) {
    int rc = srv_termios2_set(fd, baud);
    if (rc < 0) {
      close(fd);
      return tk_error(TK_EIO, "%s: %d baud through termios2/BOTHER: %s", path, baud, strerror(-rc));
    }
  }
  tcflush(fd, TCIOFLUSH);
  srvSerial *s = calloc(1, sizeof *s);
  if (!s) {
    close(fd);
    return tk_error(TK_ENOMEM, "out of memory");
  }
  s->fd = fd;
  s->connected = 1;
  int got = srv_termios2_get(fd);
  s->baud = got > 0 ? got : baud;
  snprintf(s->path, sizeof s->path, "%s", path);
  *out = s;
  return 0;
}

void srv_serial_close(srvSerial *s) {
  if (!s) return;
  if (s->fd >= 0) close(s->fd);
  free(s);
}

int srv_serial_set_low_latency(srvSerial *s) {
  struct serial_struct ss;
  memset(&ss, 0, sizeof ss);
  if (ioctl(s->fd, TIOCGSERIAL, &ss) < 0) {
    if (errno == EIO) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "TIOCGSERIAL");
    return tk_error(0, "%s: low-latency mode unsupported by this driver (TIOCGSERIAL: %s)", s->path,
                    strerror(errno));
  }
  if (ss.flags & ASYNC_LOW_LATENCY) return 1;
  ss.flags |= ASYNC_LOW_LATENCY;
  if (ioctl(s->fd, TIOCSSERIAL, &ss) < 0) {
    if (errno == EIO) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "TIOCSSERIAL");
    return tk_error(0, "%s: low-latency mode unsupported by this driver (TIOCSSERIAL: %s)", s->path,
                    strerror(errno));
  }
  if (ioctl(s->fd, TIOCGSERIAL, &ss) < 0 || !(ss.flags & ASYNC_LOW_LATENCY))
    return tk_error(0, "%s: low-latency flag did not stick", s->path);
  return 1;
}

int srv_serial_latency_timer_ms(const srvSerial *s) {
  char real[PATH_MAX], sys[PATH_MAX + 64];
  if (!realpath(s->path, real)) return -1;
  snprintf(sys, sizeof sys, "/sys/class/tty/%s/device/latency_timer", basename(real));
  FILE *f = fopen(sys, "r");
  if (!f) return -1;
  int ms = -1;
  if (fscanf(f, "%d", &ms) != 1) ms = -1;
  fclose(f);
  return ms;
}

int srv_serial_baud(const srvSerial *s) { return s->baud; }
int srv_serial_fd(const srvSerial *s) { return s->fd; }
const char *srv_serial_path(const srvSerial *s) { return s->path; }
int srv_serial_connected(const srvSerial *s) { return s->connected; }
srvFail srv_serial_last_fail(const srvSerial *s) { return s->fail; }

/* ppoll for events with a timeout in microseconds: 1 ready (revents in *rev), 0 timed out. */
static int wait_fd(int fd, short events, int64_t timeout_us, short *rev) {
  if (timeout_us < 0) timeout_us = 0;
  struct pollfd pf = {.fd = fd, .events = events};
  struct timespec ts = {.tv_sec = (time_t)(timeout_us / 1000000),
                        .tv_nsec = (long)(timeout_us % 1000000) * 1000};
  int r = ppoll(&pf, 1, &ts, NULL);
  if (r < 0) return errno == EINTR ? 0 : -errno;
  *rev = pf.revents;
  return r;
}

int srv_serial_write(srvSerial *s, const uint8_t *buf, size_t n) {
  if (!s->connected) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "write");
  /* generous: a write only waits when the driver's buffer is full */
  const int64_t deadline =
      tk_now_ns() + 100000000 + (int64_t)n * 10 * 1000000000 / (s->baud > 0 ? s->baud : 9600);
  size_t done = 0;
  while (done < n) {
    ssize_t w = write(s->fd, buf + done, n - done);
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && errno != EAGAIN) {
      if (errno == EIO || errno == EPIPE || errno == ENODEV || errno == ENXIO)
        return fail(s, SRV_FAIL_HANGUP, TK_EIO, "write");
      return fail(s, SRV_FAIL_OS, TK_EIO, "write");
    }
    short rev = 0;
    int r = wait_fd(s->fd, POLLOUT, (deadline - tk_now_ns()) / 1000, &rev);
    if (r < 0) return fail(s, SRV_FAIL_OS, TK_EIO, "poll");
    if (r == 0 && tk_now_ns() >= deadline) {
      s->fail = SRV_FAIL_TIMEOUT;
      return tk_error(TK_EIO, "%s: write timed out (%zu of %zu bytes sent)", s->path, done, n);
    }
    if (rev & (POLLHUP | POLLERR | POLLNVAL)) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "write");
  }
  return 0;
}

int srv_serial_read(srvSerial *s, uint8_t *buf, size_t cap, int64_t timeout_us) {
  if (!s->connected) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "read");
  if (!cap) return 0;
  const int64_t deadline = tk_now_ns() + timeout_us * 1000;
  int hup = 0; /* poll said hang-up or error */
  for (;;) {
    ssize_t r = read(s->fd, buf, cap);
    if (r > 0) return (int)r;
    if (r == 0) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "read"); /* EOF on a tty: hung up */
    if (errno == EINTR) continue;
    if (errno != EAGAIN) {
      if (errno == EIO || errno == ENODEV || errno == ENXIO) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "read");
      return fail(s, SRV_FAIL_OS, TK_EIO, "read");
    }
    if (hup) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "read");
    const int64_t left = deadline - tk_now_ns();
    if (left <= 0) return 0;
    short rev = 0;
    int w = wait_fd(s->fd, POLLIN, (left + 999) / 1000, &rev);
    if (w < 0) return fail(s, SRV_FAIL_OS, TK_EIO, "poll");
    if (w > 0 && (rev & (POLLHUP | POLLERR | POLLNVAL))) hup = 1; /* read once more: data first */
  }
}

int srv_serial_flush_input(srvSerial *s) {
  if (!s->connected) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "flush");
  if (tcflush(s->fd, TCIFLUSH) < 0) {
    if (errno == EIO || errno == ENODEV || errno == ENXIO) return fail(s, SRV_FAIL_HANGUP, TK_EIO, "flush");
    return fail(s, SRV_FAIL_OS, TK_EIO, "tcflush");
  }
  return 0;
}

int srv_recv(srvSerial *s, srvParser *p, int expect_id, int64_t deadline_ns, srvPacket *st) {
  const int64_t t0 = tk_now_ns();
  for (;;) {
    int rc = srv_parse(p, NULL, 0, NULL, st);
    if (rc == 1) {
      if (expect_id < 0 || st->id == expect_id) {
        s->fail = SRV_FAIL_NONE;
        return 0;
      }
      continue; /* a late answer from another servo */
    }
    if (rc < 0) {
      s->fail = SRV_FAIL_CORRUPT;
      return tk_error_wrap(rc, "%s", s->path);
    }
    const int64_t left = deadline_ns - tk_now_ns();
    if (left <= 0) {
      s->fail = SRV_FAIL_TIMEOUT;
      char who[32] = "any servo";
      if (expect_id >= 0) snprintf(who, sizeof who, "id %d", expect_id);
      return tk_error(TK_EIO, "%s: timeout: no status from %s within %.1f ms", s->path, who,
                      (double)(deadline_ns - t0) / 1e6);
    }
    size_t room;
    uint8_t *tail = srv_parser_tail(p, &room);
    int k = srv_serial_read(s, tail, room, (left + 999) / 1000);
    if (k < 0) return k;
    srv_parser_commit(p, (size_t)k);
  }
}

int srv_txrx(srvSerial *s, srvParser *p, const uint8_t *req, size_t n, int expect_id, int64_t timeout_us,
             srvPacket *st) {
  int rc = srv_serial_flush_input(s);
  if (rc) return rc;
  srv_parser_reset(p);
  rc = srv_serial_write(s, req, n);
  if (rc) return rc;
  return srv_recv(s, p, expect_id, tk_now_ns() + timeout_us * 1000, st);
}
