/* Workloads for bench/access/run.py: the program's own run time with and without access
 * sampling.
 *   compute SCALE  a Jacobi stencil over two 16 MiB grids plus random lookups in a 4 MiB
 *                  table: memory- and compute-bound, few allocations
 *   alloc SCALE    malloc/free churn of 16 B .. 64 KiB blocks (a quarter >= 1 KiB, which
 *                  sampling also enters in its chunk table), each block written once */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng = 88172645463325252ull;
static inline uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static double compute(double scale)
{
    const int n = 1448; /* 1448^2 doubles = 16 MiB */
    double *a = malloc(sizeof(double) * n * n), *b = malloc(sizeof(double) * n * n);
    size_t nt = (4u << 20) / 8;
    long *table = malloc(nt * 8);
    for (int i = 0; i < n * n; i++) a[i] = b[i] = (double)(i % 97);
    for (size_t i = 0; i < nt; i++) table[i] = (long)i;
    int sweeps = (int)(30 * scale);
    long hits = 0;
    for (int s = 0; s < sweeps; s++) {
        for (int i = 1; i < n - 1; i++)
            for (int j = 1; j < n - 1; j++)
                b[i * n + j] = 0.25 * (a[(i - 1) * n + j] + a[(i + 1) * n + j] + a[i * n + j - 1] + a[i * n + j + 1]);
        double *t = a; a = b; b = t;
        for (long k = 0; k < 2000000; k++)
            hits += table[next() % nt];
    }
    double r = a[n * n / 2] + (double)(hits & 1023);
    free(a), free(b), free(table);
    return r;
}

static double churn(double scale)
{
    enum { SLOTS = 4096 };
    static void *slot[SLOTS];
    long rounds = (long)(4000000 * scale), sum = 0;
    for (long k = 0; k < rounds; k++) {
        uint64_t x = next();
        int i = (int)(x % SLOTS);
        free(slot[i]);
        size_t size = (x >> 20) % 4 == 0 ? 1024 + (x >> 32) % (63 * 1024) : 16 + (x >> 32) % 496;
        char *p = malloc(size);
        memset(p, (int)k, size < 256 ? size : 256);
        sum += p[(size < 256 ? size : 256) / 2];
        slot[i] = p;
    }
    for (int i = 0; i < SLOTS; i++) free(slot[i]);
    return (double)sum;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: workloads compute|alloc SCALE\n");
        return 2;
    }
    double scale = atof(argv[2]);
    double r = argv[1][0] == 'c' ? compute(scale) : churn(scale);
    printf("%.1f\n", r);
    return 0;
}
