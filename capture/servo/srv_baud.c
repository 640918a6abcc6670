/* capture/servo/srv_baud.c -- any serial rate through termios2 and BOTHER (TCGETS2/TCSETS2).
 * Kept apart: <asm/termbits.h> defines struct termios and the B* names again, so it cannot
 * share a file with glibc's <termios.h>. */
#include <asm/ioctls.h>
#include <asm/termbits.h>
#include <errno.h>

#include "srv.h"

int ioctl(int fd, unsigned long request, ...); /* <sys/ioctl.h> would pull glibc's termios names */

int srv_termios2_set(int fd, int baud) {
  struct termios2 t;
  if (baud <= 0) return -EINVAL;
  if (ioctl(fd, TCGETS2, &t) < 0) return -errno;
  t.c_cflag &= ~(tcflag_t)(CBAUD | (CBAUD << IBSHIFT));
  t.c_cflag |= BOTHER | (BOTHER << IBSHIFT);
  t.c_ispeed = (speed_t)baud;
  t.c_ospeed = (speed_t)baud;
  if (ioctl(fd, TCSETS2, &t) < 0) return -errno;
  return 0;
}

int srv_termios2_get(int fd) {
  struct termios2 t;
  if (ioctl(fd, TCGETS2, &t) < 0) return -errno;
  return (int)t.c_ospeed;
}
