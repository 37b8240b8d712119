/* Loads plugin A (argv[1]) and allocates through it from the main thread and a worker,
 * unloads it and loads plugin B (argv[2], A's code under another name), which the
 * loader maps where A was: B's malloc call returns to the very address A's did, now
 * another module's. Both threads allocate through B. Where each plugin's blocks are
 * goes to stderr (placed.h); stdout says whether B took A's place. */
#include <dlfcn.h>
#include "placed.h"

#define PER 64

static void *(*plug_alloc)(size_t);
static void *blocks[2][2][PER]; /* [plugin][thread][i] */
static pthread_barrier_t step;

static void allocate(int plugin, int thread)
{
    for (int i = 0; i < PER; i++) {
        blocks[plugin][thread][i] = plug_alloc(200);                     /* SITE host_call */
        memset(blocks[plugin][thread][i], plugin + 1, 200);
    }
}

static void *worker(void *arg)
{
    (void)arg;
    pthread_barrier_wait(&step); /* A is loaded */
    allocate(0, 1);
    pthread_barrier_wait(&step);
    pthread_barrier_wait(&step); /* B is loaded */
    allocate(1, 1);
    return NULL;
}

static void *load(const char *path)
{
    void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    plug_alloc = h ? (void *(*)(size_t))dlsym(h, "plug_alloc") : NULL;
    if (!plug_alloc)
        printf("dlopen %s failed: %s\n", path, dlerror());
    return plug_alloc ? h : NULL;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        return 1;
    pthread_t th;
    pthread_barrier_init(&step, NULL, 2);
    pthread_create(&th, NULL, worker, NULL);
    void *h = load(argv[1]);
    if (!h)
        return 1;
    void *a_at = (void *)plug_alloc;
    pthread_barrier_wait(&step);
    allocate(0, 0);
    pthread_barrier_wait(&step);
    dlclose(h);
    if (!(h = load(argv[2])))
        return 1;
    printf("B where A was: %s\n", (void *)plug_alloc == a_at ? "yes" : "no");
    pthread_barrier_wait(&step);
    allocate(1, 0);
    pthread_join(th, NULL);
    report_blocks("a", &blocks[0][0][0], PER);
    report_blocks("a", &blocks[0][1][0], PER);
    report_blocks("b_main", &blocks[1][0][0], PER);
    report_blocks("b_worker", &blocks[1][1][0], PER);
    for (int p = 0; p < 2; p++)
        for (int t = 0; t < 2; t++)
            for (int i = 0; i < PER; i++)
                free(blocks[p][t][i]);
    return 0;
}
