/* Capacity-tier workload: power iteration with a generated sparse matrix (CSR).
 *
 *     spmv ROWS_K NNZ_PER_ROW ITERATIONS
 *
 * The matrix (row pointers, column indices, values: each its own call site) is big and
 * streamed once per iteration; the two vectors are small and read at random (x[col]),
 * the hot data. Columns are half near the diagonal, half spread over the whole matrix
 * (a graph with local and long-range edges). Prints the eigenvalue estimate and a
 * checksum of the vector, the same in every run whatever memory holds the data. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s ROWS_K NNZ_PER_ROW ITERATIONS\n", argv[0]);
        return 2;
    }
    size_t n = (size_t)atol(argv[1]) * 1024, per_row = (size_t)atol(argv[2]);
    int iterations = atoi(argv[3]);
    size_t nnz = n * per_row;

    size_t *row = malloc((n + 1) * sizeof *row);        /* matrix: row pointers */
    uint32_t *col = malloc(nnz * sizeof *col);          /* matrix: column indices */
    double *val = malloc(nnz * sizeof *val);            /* matrix: values */
    double *x = malloc(n * sizeof *x);                  /* hot: the vector read at random */
    double *y = malloc(n * sizeof *y);                  /* hot: the result */
    if (!row || !col || !val || !x || !y)
        abort();
    uint64_t s = 0x2545f4914f6cdd1dull;
    for (size_t i = 0; i <= n; i++)
        row[i] = i * per_row;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < per_row; k++) {
            size_t j = row[i] + k;
            uint64_t r = next(&s);
            col[j] = k % 2 ? (uint32_t)(r % n) : (uint32_t)((i + n + (r % 64) - 32) % n);
            val[j] = 1.0 + (double)(r >> 40) / (double)(1ull << 24);
        }
    for (size_t i = 0; i < n; i++)
        x[i] = 1.0;

    double lambda = 0;
    for (int it = 0; it < iterations; it++) {
        double norm = 0;
        for (size_t i = 0; i < n; i++) {
            double sum = 0;
            for (size_t j = row[i]; j < row[i + 1]; j++)
                sum += val[j] * x[col[j]];
            y[i] = sum;
            norm += sum * sum;
        }
        norm = sqrt(norm);
        lambda = norm / sqrt((double)n);
        for (size_t i = 0; i < n; i++)
            x[i] = y[i] / norm * sqrt((double)n);
    }
    double check = 0;
    for (size_t i = 0; i < n; i++)
        check += x[i] * (double)(i % 7 + 1);
    printf("lambda %.17g\nchecksum %.17g\n", lambda, check);
    return 0;
}
