/* The classic interposer crash conditions: many threads make dlsym fail (dlerror state
 * is allocated per thread, under a pthread key that libc creates) while a library keeps
 * per-thread data under pthread keys of its own. Every value must read back intact. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define THREADS 16
#define ROUNDS 2000

static pthread_key_t keys[4];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void make_keys(void)
{
    for (int i = 0; i < 4; i++) pthread_key_create(&keys[i], free);
}

static void *worker(void *arg)
{
    long id = (long)arg, bad = 0;
    pthread_once(&once, make_keys);
    for (int r = 0; r < ROUNDS; r++) {
        char name[64];
        snprintf(name, sizeof name, "no_such_symbol_%ld_%d", id, r);
        if (dlsym(RTLD_NEXT, name) != NULL) bad++;
        const char *err = dlerror();
        if (err == NULL || strstr(err, name) == NULL) bad++;
        long *v = malloc(sizeof *v);
        *v = id * 100000 + r;
        free(pthread_getspecific(keys[r % 4]));
        pthread_setspecific(keys[r % 4], v);
        long *back = pthread_getspecific(keys[r % 4]);
        if (back != v || *back != id * 100000 + r) bad++;
    }
    return (void *)bad;
}

int main(void)
{
    pthread_t t[THREADS];
    for (long i = 0; i < THREADS; i++) pthread_create(&t[i], NULL, worker, (void *)i);
    long bad = 0;
    for (int i = 0; i < THREADS; i++) { void *r; pthread_join(t[i], &r); bad += (long)r; }
    printf("threads=%d rounds=%d bad=%ld\n", THREADS, ROUNDS, bad);
    return bad != 0;
}
