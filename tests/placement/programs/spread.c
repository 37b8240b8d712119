/* Usage: spread THREADS SIZES. THREADS threads each allocate one block of each of SIZES sizes (40 KB, 49 KB, ... every
 * one in a different size class) from one call site, write it, and keep it; then where the
 * blocks are is printed on stderr (placed.h). Used to check that a device serves its
 * capacity, not a fraction of it, when several threads allocate. */
#include "placed.h"

static int sizes_per_thread;
static void *blocks[64][256];

static void *worker(void *arg)
{
    long t = (long)arg;
    for (int i = 0; i < sizes_per_thread; i++) {
        size_t n = 40000 + (size_t)i * 9000;
        void *p = malloc(n);                             /* SITE spread */
        memset(p, (int)t, n);
        blocks[t][i] = p;
    }
    return NULL;
}

int main(int argc, char **argv)
{
    int threads = atoi(argv[1]);
    sizes_per_thread = atoi(argv[2]);
    if (threads > 64 || sizes_per_thread > 256)
        return 2;
    pthread_t th[64];
    size_t total = 0;
    for (long t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    for (int i = 0; i < sizes_per_thread; i++)
        total += (40000 + (size_t)i * 9000) * threads;
    report_blocks("spread", &blocks[0][0], 64 * 256);
    printf("blocks=%d bytes=%zu\n", threads * sizes_per_thread, total);
    return 0;
}
