/* Buffers grown by realloc in small steps, as string builders do.
 *   grow one      one buffer from 16 bytes to 3 MiB: prints the sizes at which realloc moved
 *                 it, and where its blocks live (at 4 KiB, 512 KiB and 3 MiB)
 *   grow many     40 buffers grown round-robin to 200 KiB each, by 4 threads, each freeing
 *                 its neighbour's buffers: contents checked at every step
 * Contents are checked after every realloc; "bad=0" means every byte survived. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <malloc.h>
#include "where.h"

static long bad;

static void fill_from(unsigned char *p, size_t from, size_t to, unsigned seed)
{
    for (size_t i = from; i < to; i++)
        p[i] = (unsigned char)(i * 31 + seed);
}

static long check(const unsigned char *p, size_t n, unsigned seed)
{
    long b = 0;
    for (size_t i = 0; i < n; i++)
        b += p[i] != (unsigned char)(i * 31 + seed);
    return b;
}

static void one(void)
{
    size_t n = 16;
    unsigned char *p = malloc(n);
    fill_from(p, 0, n, 7);
    while (n < (3u << 20)) {
        size_t m = n + 1 + n / 8;
        unsigned char *q = realloc(p, m);                      /* SITE grow_one */
        if (q != p && n >= 4096)
            printf("moved at %zu\n", n);
        if (malloc_usable_size(q) < m)
            bad++;
        p = q;
        bad += check(p, n, 7);
        fill_from(p, n, m, 7);
        if (n < 4096 && m >= 4096) describe("at4k", p);
        if (n < (512u << 10) && m >= (512u << 10)) describe("at512k", p);
        n = m;
    }
    describe("at3m", p);
    bad += check(p, n, 7);
    free(p);
}

#define BUFS 40
#define THREADS 4
static unsigned char *bufs[BUFS];
static size_t lens[BUFS];
static long bad_of[THREADS];

static void *grower(void *arg)
{
    long t = (long)arg;
    for (int round = 0; round < 300; round++)
        for (int b = (int)t; b < BUFS; b += THREADS) {
            size_t n = lens[b], m = n + 1 + (size_t)((b * 977 + round * 131) % 1024);
            if (m > (200u << 10))
                continue;
            unsigned char *q = realloc(bufs[b], m);            /* SITE grow_many */
            bad_of[t] += check(q, n, (unsigned)b);
            fill_from(q, n, m, (unsigned)b);
            bufs[b] = q, lens[b] = m;
        }
    return NULL;
}

static void *freer(void *arg)
{
    long t = (long)arg;
    for (int b = ((int)t + 1) % THREADS; b < BUFS; b += THREADS) {
        bad_of[t] += check(bufs[b], lens[b], (unsigned)b);
        free(bufs[b]);
    }
    return NULL;
}

static void many(void)
{
    pthread_t th[THREADS];
    for (long t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, grower, (void *)t);
    for (long t = 0; t < THREADS; t++)
        pthread_join(th[t], NULL);
    for (long t = 0; t < THREADS; t++)
        pthread_create(&th[t], NULL, freer, (void *)t);
    for (long t = 0; t < THREADS; t++) {
        pthread_join(th[t], NULL);
        bad += bad_of[t];
    }
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "one"))
        one();
    else
        many();
    printf("bad=%ld\n", bad);
    return 0;
}
