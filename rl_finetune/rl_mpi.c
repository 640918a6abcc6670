/* rl_finetune/rl_mpi.c -- see rl_mpi.h. */
#include "rl_mpi.h"

#include <stdlib.h>
#include <string.h>

#ifdef DK_MPI
#include <mpi.h>

static int on; /* MPI_Init was called */

void rl_mpi_init(int *argc, char ***argv) {
  if (!getenv("OMPI_COMM_WORLD_SIZE")) return;
  int provided;
  MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
  /* errors end the whole job with MPI's message (a dead rank must not leave the others waiting) */
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  on = 1;
}

void rl_mpi_finalize(void) {
  if (on) MPI_Finalize();
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
    MPI_Allreduce(MPI_IN_PLACE, v + off, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  }
  float s = 1.0f / (float)size;
  for (int64_t i = 0; i < n; i++)
    v[i] *= s;
}

void rl_mpi_mean_d(double *v, int n) {
  int size = rl_mpi_size();
  if (size < 2) return;
  MPI_Allreduce(MPI_IN_PLACE, v, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  for (int i = 0; i < n; i++)
    v[i] /= size;
}

void rl_mpi_bcast_f(float *v, int64_t n) {
  if (rl_mpi_size() < 2) return;
  for (int64_t off = 0; off < n; off += CHUNK)
    MPI_Bcast(v + off, (int)(n - off < CHUNK ? n - off : CHUNK), MPI_FLOAT, 0, MPI_COMM_WORLD);
}

void rl_mpi_bcast_d(double *v, int n) {
  if (rl_mpi_size() < 2) return;
  MPI_Bcast(v, n, MPI_DOUBLE, 0, MPI_COMM_WORLD);
}

int rl_mpi_any(int flag) {
  if (rl_mpi_size() < 2) return flag != 0;
  int f = flag != 0, out = 0;
  MPI_Allreduce(&f, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
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
  MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
  MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
  return lo == hi;
}

#else
void rl_mpi_init(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
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
