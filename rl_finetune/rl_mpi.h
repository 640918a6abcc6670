/* rl_finetune/rl_mpi.h -- the few collective operations rl-finetune needs across MPI ranks. Built with
 * OpenMPI when Meson finds it (-Dmpi=auto); MPI is only initialized when the program was started by
 * mpirun (OMPI_COMM_WORLD_SIZE set), so a plain run never touches it. Without MPI every call is the
 * one-rank identity. */
#ifndef RL_MPI_H
#define RL_MPI_H

#include <stdint.h>

/* No-op unless launched by mpirun; a bad DK_MPI_TIMEOUT (seconds) is refused before MPI starts:
 * TK_EINVAL with the message set. */
int rl_mpi_init(int *argc, char ***argv);
void rl_mpi_finalize(void);
int rl_mpi_rank(void);  /* 0 without MPI */
int rl_mpi_size(void);  /* 1 without MPI */
int rl_mpi_built(void); /* 1 when built with MPI */
/* In-place average over ranks. */
void rl_mpi_mean_f(float *v, int64_t n);
void rl_mpi_mean_d(double *v, int n);
/* Rank 0's values to every rank. */
void rl_mpi_bcast_f(float *v, int64_t n);
void rl_mpi_bcast_d(double *v, int n);
/* 1 on every rank when any rank passes nonzero (errors must stop all ranks, not hang them). */
int rl_mpi_any(int flag);
/* Whether every rank holds the same bits in v (a checksum compared across ranks). */
int rl_mpi_same(const float *v, int64_t n);

#endif
