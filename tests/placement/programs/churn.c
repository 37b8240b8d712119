/* Thread churn: TOTAL short-lived threads, 8 at a time, each allocating from placed sites.
 * Each thread also frees the block its predecessor in the same slot left behind (a block
 * whose allocating thread has exited). VmRSS is read after the first sixth of the threads
 * and at the end, and printed on stderr: "RSS warm=<kB> end=<kB>". */
#include "placed.h"

#define BATCH 8
#define PER_THREAD 20

static void *left[BATCH];
static size_t left_n[BATCH];
static unsigned left_seed[BATCH];
static long bad[BATCH];

static void *worker(void *arg)
{
    long slot = (long)arg;
    for (int i = 0; i < PER_THREAD; i++) {
        size_t n = 32 + (size_t)((slot * 977 + i * 7919) % 6000);
        unsigned char *a = malloc(n);                          /* SITE churn_fast */
        unsigned char *b = malloc(n);                          /* SITE churn_pmem */
        fill(a, n, i), fill(b, n, ~i);
        bad[slot] += !intact(a, n, i) + !intact(b, n, ~i);
        free(a);
        if (i == PER_THREAD - 1) {
            if (left[slot]) {
                bad[slot] += !intact(left[slot], left_n[slot], left_seed[slot]);
                free(left[slot]);
            }
            left[slot] = b, left_n[slot] = n, left_seed[slot] = ~i;
        } else {
            free(b);
        }
    }
    return NULL;
}

static long vm_rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmRSS: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    return kb;
}

int main(int argc, char **argv)
{
    long total = argc > 1 ? atol(argv[1]) : 6000, warm_rss = 0;
    for (long started = 0; started < total; started += BATCH) {
        pthread_t th[BATCH];
        for (long s = 0; s < BATCH; s++)
            if (pthread_create(&th[s], NULL, worker, (void *)s) != 0)
                return 5;
        for (int s = 0; s < BATCH; s++)
            pthread_join(th[s], NULL);
        if (started + BATCH == total / 6 / BATCH * BATCH)
            warm_rss = vm_rss_kb();
    }
    long end_rss = vm_rss_kb(), sum = 0;
    for (int s = 0; s < BATCH; s++) {
        sum += bad[s];
        free(left[s]);
    }
    fprintf(stderr, "RSS warm=%ld end=%ld\n", warm_rss, end_rss);
    printf("threads=%ld bad=%ld\n", total, sum);
    return sum != 0;
}
