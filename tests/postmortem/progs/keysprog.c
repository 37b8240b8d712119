/* pthread keys: keys created by the program, a stale value (key deleted and
 * re-created), and libbad.so's misuse of a never-created key (key 0's slot).
 * Each thread prints "TID key K VALUE" as pthread_getspecific returns it.
 * argv[1] = "wait": print "ready" and stay alive (for --pid) instead of aborting. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

void bad_init(void);             /* libbad.so */
void exe_key_destroy(void *p) { (void)p; }
void other_destroy(void *p) { free(p); }

static pthread_key_t k0, k1, k2, k3;
static pthread_barrier_t set_done, recreated, printed_b, never;

/* pthread_getspecific clears a stale value, so workers do not ask for k3. */
static void print_keys(int n)
{
    long tid = syscall(SYS_gettid);
    pthread_key_t ks[4] = {k0, k1, k2, k3};
    flockfile(stdout);
    for (int i = 0; i < n; i++)
        printf("%ld key%u %lu\n", tid, ks[i], (unsigned long)pthread_getspecific(ks[i]));
    fflush(stdout);
    funlockfile(stdout);
}

static void *worker(void *arg)
{
    long i = (long)arg;
    pthread_setspecific(k1, malloc(16));
    pthread_setspecific(k2, (void *)(0x1000 + i));
    pthread_setspecific(k3, (void *)(0x2000 + i));   /* becomes stale below */
    if (i == 2)
        bad_init();                                   /* stores into key 0's slot */
    pthread_barrier_wait(&set_done);
    pthread_barrier_wait(&recreated);
    print_keys(3);
    pthread_barrier_wait(&printed_b);
    pthread_barrier_wait(&never);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t th[3];
    pthread_key_create(&k0, exe_key_destroy);   /* key 0, like dlerror's key in old glibc */
    pthread_key_create(&k1, other_destroy);
    pthread_key_create(&k2, NULL);
    pthread_key_create(&k3, NULL);
    pthread_barrier_init(&set_done, NULL, 4);
    pthread_barrier_init(&recreated, NULL, 4);
    pthread_barrier_init(&printed_b, NULL, 4);
    pthread_barrier_init(&never, NULL, 5);
    pthread_setspecific(k0, (void *)&k0);
    for (long i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, worker, (void *)(i + 1));
    pthread_barrier_wait(&set_done);
    pthread_key_delete(k3);
    pthread_key_create(&k3, NULL);                /* same slot, new sequence */
    pthread_barrier_wait(&recreated);
    print_keys(4);
    pthread_barrier_wait(&printed_b);
    if (argc > 1 && argv[1][0] == 'w') {
        printf("ready\n");
        fflush(stdout);
        for (;;)
            pause();
    }
    printf("%ld crashing\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    abort();
}
