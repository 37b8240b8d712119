/* A signal handler that allocates and frees blocks of the size class the interrupted
 * loop allocates and frees (calloc(2, 24) and malloc(48) are both 48 bytes), sent by
 * another thread every few microseconds: the handler lands inside the runtime's
 * allocation and free paths over and over. Written for memplace's tests.
 *
 *   signal_same_class ROUNDS   prints how many signals the handler ran */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static void *volatile sink;
static volatile long handled;
static volatile int done;
static pthread_t main_thread;

static void on_usr1(int s)
{
    (void)s;
    void *p = malloc(48); /* SITE handler */
    memset(p, 0x5a, 48);
    sink = p;
    free(p);
    handled++;
}

static void *sender(void *arg)
{
    (void)arg;
    struct timespec pause = {0, 2000};
    while (!done) {
        pthread_kill(main_thread, SIGUSR1);
        nanosleep(&pause, 0);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 1000000;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGUSR1, &sa, 0);
    main_thread = pthread_self();
    pthread_t t;
    pthread_create(&t, 0, sender, 0);
    for (long i = 0; i < rounds; i++) {
        char *q = calloc(2, 24); /* SITE loop */
        for (int j = 0; j < 48; j++)
            if (q[j]) /* a block handed out twice would show the handler's bytes */
                abort();
        sink = q;
        free(q);
    }
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &usr1, 0);
    done = 1;
    pthread_join(t, 0);
    printf("handled=%ld\n", handled);
    return 0;
}
