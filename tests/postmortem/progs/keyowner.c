/* pthread keys for the report's wording: key 0 with a destructor, key 1 created with a
 * destructor and deleted, key 2 without a destructor whose number a static named
 * `worker_state_key` holds. A worker crashes; each thread prints "TID key2 VALUE". */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

void kept_destroy(void *p) { (void)p; }
void gone_destroy(void *p) { (void)p; }

static pthread_key_t kept, gone;
pthread_key_t worker_state_key;
static pthread_barrier_t ready;

static void *worker(void *arg)
{
    pthread_setspecific(worker_state_key, arg);
    printf("%ld key2 %lu\n", (long)syscall(SYS_gettid), (unsigned long)arg);
    fflush(stdout);
    pthread_barrier_wait(&ready);
    if (arg == (void *)0x2)
        raise(SIGSEGV);
    pause();
    return NULL;
}

int main(void)
{
    pthread_t th[2];
    pthread_key_create(&kept, kept_destroy);
    pthread_key_create(&gone, gone_destroy);
    pthread_key_create(&worker_state_key, NULL);
    pthread_key_delete(gone);
    pthread_setspecific(kept, &kept);
    pthread_barrier_init(&ready, NULL, 3);
    for (long i = 0; i < 2; i++)
        pthread_create(&th[i], NULL, worker, (void *)(i + 1));
    pthread_barrier_wait(&ready);
    pause();
    return 0;
}
