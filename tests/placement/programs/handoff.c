/* Blocks handed from threads to the main thread: 8 threads each allocate BLOCKS blocks of
 * 8 KiB from a placed site and exit; the main thread checks and frees them all, then
 * allocates AGAIN more blocks from the same site. Where the later blocks are goes to
 * stderr (placed.h); stdout is the same with and without memplace. */
#include "placed.h"

#define NTHREADS 8
#define BLOCKS 100
#define SIZE 8192
#define AGAIN 20

static void *blocks[NTHREADS][BLOCKS];

static void *worker(void *arg)
{
    long t = (long)arg;
    for (int i = 0; i < BLOCKS; i++) {
        blocks[t][i] = malloc(SIZE);                           /* SITE handoff */
        fill(blocks[t][i], SIZE, (unsigned)(t * BLOCKS + i));
    }
    return NULL;
}

int main(void)
{
    pthread_t th[NTHREADS];
    for (long t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    report_blocks("handed", &blocks[0][0], NTHREADS * BLOCKS);
    int ok = 1;
    for (int t = 0; t < NTHREADS; t++)
        for (int i = 0; i < BLOCKS; i++) {
            ok &= intact(blocks[t][i], SIZE, (unsigned)(t * BLOCKS + i));
            free(blocks[t][i]);
        }
    void *again[AGAIN];
    for (int i = 0; i < AGAIN; i++)
        again[i] = malloc(SIZE);                               /* SITE handoff_again */
    for (int i = 0; i < AGAIN; i++)
        memset(again[i], 1, SIZE);
    report_blocks("again", again, AGAIN);
    for (int i = 0; i < AGAIN; i++)
        free(again[i]);
    printf("handed=%d intact=%d again=%d\n", NTHREADS * BLOCKS, ok, AGAIN);
    return 0;
}
