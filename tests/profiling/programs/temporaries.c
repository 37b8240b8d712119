/* A solver's step in miniature: each thread keeps a state block for the whole run and, in
 * every step, makes and frees two temporaries from two sites one after the other. The
 * sites' own peaks add up to more than the heap ever holds at once.
 *
 *     temporaries THREADS STEPS        (state 2 MiB, temporaries 4 MiB each, per thread) */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MIB (1 << 20)

static int steps;

static void work_on(char *p, size_t n, int v)
{
    memset(p, v, n);
    struct timespec pause = {0, 100000}; /* 0.1 ms: steps span many profile windows */
    nanosleep(&pause, NULL);
}

static void *solve(void *arg)
{
    (void)arg;
    char *state = malloc(2 * MIB);                          /* SITE state */
    if (!state)
        abort();
    work_on(state, 2 * MIB, 1);
    for (int i = 0; i < steps; i++) {
        char *a = malloc(4 * MIB);                          /* SITE temporary A */
        if (!a)
            abort();
        work_on(a, 4 * MIB, 2);
        state[i % (2 * MIB)] += a[i];
        free(a);
        char *b = malloc(4 * MIB);                          /* SITE temporary B */
        if (!b)
            abort();
        work_on(b, 4 * MIB, 3);
        state[i % (2 * MIB)] += b[i];
        free(b);
    }
    long sum = 0;
    for (int j = 0; j < 2 * MIB; j++)
        sum += state[j];
    free(state);
    return (void *)sum;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s THREADS STEPS\n", argv[0]);
        return 2;
    }
    int threads = atoi(argv[1]);
    steps = atoi(argv[2]);
    pthread_t t[64];
    if (threads < 1 || threads > 64)
        return 2;
    for (int i = 0; i < threads; i++)
        pthread_create(&t[i], NULL, solve, NULL);
    long total = 0;
    for (int i = 0; i < threads; i++) {
        void *r;
        pthread_join(t[i], &r);
        total += (long)r;
    }
    printf("checksum %ld\n", total);
    return 0;
}
