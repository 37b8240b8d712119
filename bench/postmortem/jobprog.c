/* One rank of a crashed job: argv[1] = rank, argv[2] = threads in all (main included).
 * Every thread sets t_rank = rank, t_step = 100 and t_state = 3, except thread 1 of a
 * rank that is 17 mod 21 (ranks 17, 38, 59), whose t_state is 7; each thread prints
 * "RANK TID t_state VALUE", then main aborts (one core per rank). */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

__thread int t_state;
__thread long t_rank;
__thread int t_step;

static int rank;
static pthread_barrier_t ready, never;

static void fill(long i)
{
    t_rank = rank;
    t_step = 100;
    t_state = (rank % 21 == 17 && i == 1) ? 7 : 3;
    flockfile(stdout);
    printf("%d %ld t_state %d\n", rank, (long)syscall(SYS_gettid), t_state);
    fflush(stdout);
    funlockfile(stdout);
}

static void *worker(void *arg)
{
    fill((long)arg);
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&never);
    return NULL;
}

int main(int argc, char **argv)
{
    rank = argc > 1 ? atoi(argv[1]) : 0;
    int n = argc > 2 ? atoi(argv[2]) : 4;
    pthread_barrier_init(&ready, NULL, n);      /* n - 1 workers + main */
    pthread_barrier_init(&never, NULL, n + 1);  /* never released */
    fill(0);
    for (long i = 1; i < n; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, (void *)i) != 0)
            abort();
    }
    pthread_barrier_wait(&ready);
    abort();
}
