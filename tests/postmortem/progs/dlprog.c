/* dlopen a library with TLS, dlclose it, dlopen another that reuses its module id.
 * Workers 1 and 2 touch the second library's TLS; worker 3 and main never do,
 * so their DTVs are older than the slot: "not allocated in this thread". */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static pthread_barrier_t b1, b2, b3, never;
static void (*a_set)(long), (*b_set)(long);

static void *worker(void *arg)
{
    long i = (long)arg, tid = syscall(SYS_gettid);
    a_set(100 + i);
    pthread_barrier_wait(&b1);   /* main: dlclose(a), dlopen(b) */
    pthread_barrier_wait(&b2);
    if (i != 3) {
        b_set(200 + i);
        printf("%ld b_val %ld\n%ld b_arr {%ld, %ld}\n", tid, 200 + i, tid, 200 + i, -(200 + i));
    } else {
        printf("%ld b_val none\n", tid);
    }
    fflush(stdout);
    pthread_barrier_wait(&b3);
    pthread_barrier_wait(&never);
    return NULL;
}

int main(int argc, char **argv)
{
    char path[4096];
    pthread_t th[3];
    snprintf(path, sizeof path, "%s/libdyn_a.so", argv[1]);
    void *a = dlopen(path, RTLD_NOW);
    if (!a) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    a_set = (void (*)(long))dlsym(a, "a_set");
    pthread_barrier_init(&b1, NULL, 4); pthread_barrier_init(&b2, NULL, 4);
    pthread_barrier_init(&b3, NULL, 4); pthread_barrier_init(&never, NULL, 5);
    for (long i = 0; i < 3; i++)
        pthread_create(&th[i], NULL, worker, (void *)(i + 1));
    pthread_barrier_wait(&b1);
    dlclose(a);
    snprintf(path, sizeof path, "%s/libdyn_b.so", argv[1]);
    void *b = dlopen(path, RTLD_NOW);
    if (!b) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    b_set = (void (*)(long))dlsym(b, "b_set");
    pthread_barrier_wait(&b2);
    pthread_barrier_wait(&b3);
    printf("%ld b_val none\n", (long)syscall(SYS_gettid));
    fflush(stdout);
    abort();
}
