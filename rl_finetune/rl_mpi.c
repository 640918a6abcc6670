/* rl_finetune/rl_mpi.c -- see rl_mpi.h. */
#include "rl_mpi.h"

#include <stdlib.h>
#include <string.h>

#include "tk.h"

#ifdef DK_MPI
#include <mpi.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static int on; /* MPI_Init was called */
static int my_rank;

/* A rank that dies ends the job through mpirun; a rank that hangs (stopped, deadlocked, its machine
 * gone without a reset) would leave the others in a collective forever. Every collective notes when it
 * started; a watchdog thread ends this rank with a message once one has waited longer than
 * DK_MPI_TIMEOUT seconds (default 600: rank 0's evaluations and checkpoints happen while the others
 * wait), and mpirun then ends the rest. */
static _Atomic int64_t wait_since; /* ns, 0 outside a collective */
static double timeout_s = 600;

static int64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *watchdog(void *arg) {
  (void)arg;
  for (;;) {
    sleep(1);
    int64_t t = atomic_load(&wait_since);
    if (t && (double)(mono_ns() - t) * 1e-9 > timeout_s) {
      fprintf(stderr,
              "rl-finetune: rank %d: waited %.0f s for the other ranks in a collective operation: a rank "
              "hangs (stopped, deadlocked or unreachable); ending the job (DK_MPI_TIMEOUT=%g s). The last "
              "checkpoint can be resumed.\n",
              my_rank, (double)(mono_ns() - t) * 1e-9, timeout_s);
      fflush(stderr);
      _exit(1); /* mpirun sees a rank fail and ends the others */
    }
  }
  return NULL;
}

static void enter(void) { atomic_store(&wait_since, mono_ns()); }
static void leave(void) { atomic_store(&wait_since, 0); }

int rl_mpi_init(int *argc, char ***argv) {
  int rc = tk_env_f64("DK_MPI_TIMEOUT", 1e-3, 1e7, 600, &timeout_s); /* seconds */
  if (rc || !getenv("OMPI_COMM_WORLD_SIZE")) return rc;
  int provided;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  /* errors end the whole job with MPI's message (a dead rank must not leave the others waiting) */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  on = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
  pthread_t th;
  if (!pthread_create(&th, NULL, watchdog, NULL)) pthread_detach(th);
  return 0;
}

void rl_mpi_finalize(void) {
  if (on) {
    enter(); /* waits for the other ranks too */
    MPI_Finalize();
    leave();
  }
  on = 0;
}

int rl_mpi_rank(void) {
  int r = 0;
  if (on) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}

int rl_mpi_size(void) {
  int n = 1;
  if (on) MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

int rl_mpi_built(void) { return 1; }

/* MPI counts are ints: large buffers go in pieces */
#define CHUNK (1 << 28)

void rl_mpi_mean_f(float *v, int64_t n) {
  int size = rl_mpi_size();
  if (size < 2) return;
  for (int64_t off = 0; off < n; off += CHUNK) {
    int k = (int)(n - off < CHUNK ? n - off : CHUNK);
    enter();
    MPI_Allreduce(MPI_IN_PLACE, v + off, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    leave();
  }
  float s = 1.0f / (float)size;
  for (int64_t i = 0; i < n; i++)
    v[i] *= s;
}

void rl_mpi_mean_d(double *v, int n) {
  int size = rl_mpi_size();
  if (size < 2) return;
  enter();
  MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  leave();
  for (int i = 0; i < n; i++)
    v[i] /= size;
}

void rl_mpi_bcast_f(float *v, int64_t n) {
  if (rl_mpi_size() < 2) return;
  enter();
  for (int64_t off = 0; off < n; off += CHUNK)
    MPI_Bcast(v + off, (int)(n - off < CHUNK ? n - off : CHUNK), MPI_FLOAT, 0, MPI_COMM_WORLD);
  leave();
}

void rl_mpi_bcast_d(double *v, int n) {
  if (rl_mpi_size() < 2) return;
  enter();
  MPI_Bcast(v, n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
  leave();
}

int rl_mpi_any(int flag) {
  if (rl_mpi_size() < 2) return flag != 0;
  int f = flag != 0, out = 0;
  enter();
  MPI_Allreduce(&f, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  leave();
  return out;
}

int rl_mpi_same(const float *v, int64_t n) {
  if (rl_mpi_size() < 2) return 1;
  /* an order-dependent checksum of the bits */
  uint64_t h = 1469598103934665603ull;
  for (int64_t i = 0; i < n; i++) {
    uint32_t b;
    memcpy(&b, v + i, 4);
    h = (h ^ b) * 1099511628211ull;
  }
  uint64_t lo = h, hi = h;
  enter();
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  leave();
  return lo == hi;
}

#else
int rl_mpi_init(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  double t; /* checked here too: a run is one command with or without MPI */
  return tk_env_f64("DK_MPI_TIMEOUT", 1e-3, 1e7, 600, &t);
}
void rl_mpi_finalize(void) {}
int rl_mpi_rank(void) { return 0; }
int rl_mpi_size(void) { return 1; }
int rl_mpi_built(void) { return 0; }
void rl_mpi_mean_f(float *v, int64_t n) {
  (void)v;
  (void)n;
}
void rl_mpi_mean_d(double *v, int n) {
  (void)v;
  (void)n;
}
void rl_mpi_bcast_f(float *v, int64_t n) {
  (void)v;
  (void)n;
}
void rl_mpi_bcast_d(double *v, int n) {
  (void)v;
  (void)n;
}
int rl_mpi_any(int flag) { return flag != 0; }
int rl_mpi_same(const float *v, int64_t n) {
  (void)v;
  (void)n;
  return 1;
}
#endif
