/* Loads a plugin (argv[1], an absolute path) with dlopen after start-up, once the runtime
 * has seen the program's modules, and allocates through it from the main thread and from
 * 8 threads; then unloads it, loads it again and allocates once more. Where the plugin's
 * blocks are goes to stderr (placed.h); stdout is the same with and without memplace. */
#include <dlfcn.h>
#include "placed.h"

#define NTHREADS 8
#define PER 50

static void *(*plug_alloc)(size_t);
static void *blocks[NTHREADS + 1][PER];

static void *worker(void *arg)
{
    long t = (long)arg;
    for (int i = 0; i < PER; i++) {
        blocks[t][i] = plug_alloc(4096 + (size_t)i * 64);
        fill(blocks[t][i], 4096 + (size_t)i * 64, (unsigned)(t * PER + i));
    }
    return NULL;
}

static int load(const char *path, void **handle)
{
    *handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!*handle) {
        printf("dlopen failed: %s\n", dlerror());
        return -1;
    }
    plug_alloc = (void *(*)(size_t))dlsym(*handle, "plug_alloc");
    return plug_alloc ? 0 : -1;
}

int main(int argc, char **argv)
{
    char *early = malloc(100);                                 /* SITE host_early */
    memset(early, 1, 100);
    void *handle;
    if (argc < 2 || load(argv[1], &handle))
        return 1;
    pthread_t th[NTHREADS];
    for (long t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    worker((void *)(long)NTHREADS); /* the main thread too */
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    report_blocks("plugin", &blocks[0][0], (NTHREADS + 1) * PER);
    report_blocks("host_early", (void **)&early, 1);
    dlclose(handle); /* the plugin's blocks stay: memory does not belong to a module */
    if (load(argv[1], &handle)) /* loaded again, perhaps at another address */
        return 1;
    void *again[PER];
    for (int i = 0; i < PER; i++) {
        again[i] = plug_alloc(1000);
        memset(again[i], 2, 1000);
    }
    report_blocks("plugin_reloaded", again, PER);
    for (int i = 0; i < PER; i++)
        free(again[i]);
    int ok = 1;
    for (int t = 0; t <= NTHREADS; t++)
        for (int i = 0; i < PER; i++) {
            ok &= intact(blocks[t][i], 4096 + (size_t)i * 64, (unsigned)(t * PER + i));
            free(blocks[t][i]);
        }
    free(early);
    printf("plugin blocks=%d reloaded=%d intact=%d\n", (NTHREADS + 1) * PER, PER, ok);
    return 0;
}
