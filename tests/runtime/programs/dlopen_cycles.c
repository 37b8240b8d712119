/* Threads allocate while the main thread dlopen/dlcloses a library that allocates in its
 * constructor and has thread-local storage. Build: gcc dlopen_cycles.c -ldl -lpthread,
 * with PLUGIN pointing to a library built from the source in the test. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static volatile int stop;

static void *churn(void *arg)
{
    void *keep[16] = {0};
    unsigned n = 0;
    while (!stop) {
        free(keep[n % 16]);
        keep[n % 16] = malloc(16 + n % 4000);
        n++;
    }
    for (int i = 0; i < 16; i++) free(keep[i]);
    return NULL;
}

int main(int argc, char **argv)
{
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, churn, NULL);
    long total = 0;
    for (int i = 0; i < 200; i++) {
        void *h = dlopen(argv[1], RTLD_NOW | (i % 2 ? RTLD_GLOBAL : RTLD_LOCAL));
        if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
        long (*work)(int) = (long (*)(int))dlsym(h, "plugin_work");
        if (!work) { printf("dlsym: %s\n", dlerror()); return 1; }
        total += work(i);
        if (dlclose(h)) { printf("dlclose: %s\n", dlerror()); return 1; }
    }
    stop = 1;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    printf("total=%ld\n", total);
    return 0;
}
