/* A thread allocates ROUNDS times through a two-frame chain and ends; with REUSE, a second
 * thread then starts (taking over the first one's runtime block) and allocates once
 * elsewhere. Every hit of the chain's rule must be in the totals either way.
 * Marked lines: SITE make, CALLER c.
 *
 *   thread_reuse ROUNDS REUSE */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

NOINLINE static char *make(size_t n)
{
    char *p = malloc(n); /* SITE make */
    p[0] = 1;
    return p;
}

NOINLINE static char *caller(size_t n)
{
    char *p = make(n); /* CALLER c */
    p[1] = 2;
    return p;
}

static int rounds;

static void *worker(void *arg)
{
    for (int i = 0; i < rounds; i++)
        free(caller(48));
    return arg;
}

static void *volatile sink;

static void *other(void *arg)
{
    sink = malloc(100); /* (a malloc freed at once may be compiled away) */
    free(sink);
    return arg;
}

int main(int argc, char **argv)
{
    rounds = atoi(argv[1]);
    pthread_t t;
    pthread_create(&t, NULL, worker, NULL);
    pthread_join(t, NULL);
    if (atoi(argv[2])) {
        pthread_create(&t, NULL, other, NULL);
        pthread_join(t, NULL);
    }
    puts("done");
    return 0;
}
