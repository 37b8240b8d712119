"""The small MPI program of the MPICH and Slurm tests (test_mpich.py, test_slurm.py): each
rank allocates from two sites, rank 1 more often than rank 0, and all sum one number."""

from __future__ import annotations

import sys

SOURCE = r"""
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static double *field(size_t n) {
    double *f = malloc(n * sizeof *f); /* FIELD */
    for (size_t i = 0; i < n; i++) f[i] = (double)i;
    return f;
}

__attribute__((noinline)) static char *label(int rank) {
    char *s = malloc(64); /* LABEL */
    snprintf(s, 64, "rank-%d", rank);
    return s;
}

int main(int argc, char **argv) {
    int rank, size;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    double local = 0, total = 0;
    for (int step = 0; step < 4 + 2 * rank; step++) {  /* rank 1 allocates more than rank 0 */
        double *f = field(1 << 16);
        char *s = label(rank);
        local += f[(1 << 16) - 1] + (double)strlen(s);
        free(s);
        free(f);
    }
    MPI_Allreduce(&local, &total, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    printf("rank %d of %d: total %.1f\n", rank, size, total);
    MPI_Finalize();
    return 0;
}
"""

MEMPLACE = [sys.executable, "-m", "memplace"]


def line(marker: str) -> int:
    return next(i for i, text in enumerate(SOURCE.splitlines(), 1) if marker in text)
