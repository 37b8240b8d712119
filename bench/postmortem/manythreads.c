/* argv[1] threads in all (main included) each set 20 `long` TLS variables to tid*100+k, then abort. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define V(k) __thread long v##k;
V(0) V(1) V(2) V(3) V(4) V(5) V(6) V(7) V(8) V(9)
V(10) V(11) V(12) V(13) V(14) V(15) V(16) V(17) V(18) V(19)

static pthread_barrier_t ready, never;

static void fill(void)
{
    long b = syscall(SYS_gettid) * 100;
    v0 = b; v1 = b + 1; v2 = b + 2; v3 = b + 3; v4 = b + 4; v5 = b + 5; v6 = b + 6;
    v7 = b + 7; v8 = b + 8; v9 = b + 9; v10 = b + 10; v11 = b + 11; v12 = b + 12;
    v13 = b + 13; v14 = b + 14; v15 = b + 15; v16 = b + 16; v17 = b + 17; v18 = b + 18; v19 = b + 19;
}

static void *worker(void *arg)
{
    (void)arg;
    fill();
    pthread_barrier_wait(&ready);
    pthread_barrier_wait(&never);
    return NULL;
}

int main(int argc, char **argv)
{
    int n = atoi(argv[1]);
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    pthread_barrier_init(&ready, NULL, n);      /* n - 1 workers + main */
    pthread_barrier_init(&never, NULL, n + 1);  /* never released */
    fill();
    for (int i = 0; i < n - 1; i++) {
        pthread_t t;
        if (pthread_create(&t, &a, worker, NULL) != 0)
            abort();
    }
    pthread_barrier_wait(&ready);
    abort();
}
