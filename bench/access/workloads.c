/* Workloads for bench/access/run.py: the program's own run time with and without access
 * sampling.
 *   compute SCALE  a Jacobi stencil over two 16 MiB grids plus random lookups in a 4 MiB
 *                  table: memory- and compute-bound, few allocations
 *   alloc SCALE    malloc/free churn of 16 B .. 64 KiB blocks (a quarter >= 1 KiB, which
 *                  sampling also enters in its start maps), each block written once
 *   sites SCALE    five sites of known, very different access intensity: a 1 MiB table hit
 *                  at random, pointer-chased 48-byte nodes, a streamed array, a buffer
 *                  written once by memset, a buffer never touched (as the ranking test) */
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

#define SITE(name) __attribute__((noinline)) static void *name(size_t n) { void *p = malloc(n); __asm__ volatile("" ::: "memory"); return p; }
SITE(make_table) SITE(make_node) SITE(make_stream) SITE(make_once) SITE(make_never)
struct node { struct node *next; long value, pad[4]; };

static double sites(double scale)
{
    long n = (long)(4000000 * scale);
    size_t nt = (1u << 20) / 8, nn = 4096;
    long *table = make_table(nt * 8), *stream = make_stream((size_t)n / 2 * 8);
    char *once = make_once((size_t)n), *never = make_never(8 << 20);
    struct node **nodes = calloc(nn, sizeof *nodes);
    for (size_t i = 0; i < nn; i++) nodes[i] = make_node(sizeof(struct node));
    for (size_t i = nn - 1; i > 0; i--) { size_t j = next() % (i + 1); struct node *x = nodes[i]; nodes[i] = nodes[j]; nodes[j] = x; }
    for (size_t i = 0; i < nn; i++) { nodes[i]->next = nodes[(i + 1) % nn]; nodes[i]->value = (long)i; }
    for (size_t i = 0; i < nt; i++) table[i] = (long)i;
    long s = 0;
    for (long k = 0; k < 64 * n; k++) s += table[next() % nt];           /* 512n bytes read */
    struct node *x = nodes[0];
    for (long k = 0; k < 2 * n; k++) { s += x->value; x = x->next; }     /* 32n */
    for (long k = 0; k < n / 2; k++) stream[k] = k;                       /* 4n, written */
    memset(once, 7, (size_t)n);                                           /* n, written once */
    double r = (double)(s & 0xffff) + (double)stream[n / 4] + once[n / 2] + (never != NULL);
    for (size_t i = 0; i < nn; i++) free(nodes[i]);
    free(nodes), free(table), free(stream), free(once), free(never);
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: workloads compute|alloc|sites SCALE\n");
        return 2;
    }
    double scale = atof(argv[2]);
    double r = argv[1][0] == 'c' ? compute(scale) : argv[1][0] == 's' ? sites(scale) : churn(scale);
    printf("%.1f\n", r);
    return 0;
}
