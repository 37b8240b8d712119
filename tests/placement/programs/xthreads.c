/* Eight threads allocating from placed call sites at once. Modes:
 *   cross    each thread fills blocks from two sites; after a barrier every thread checks
 *            and frees the blocks of its neighbour (cross-thread frees), for ROUNDS rounds
 *   realloc  each thread moves blocks between devices with realloc/reallocarray at sites
 *            with different rules, checking the contents at every step; the last block is
 *            freed by the neighbour thread
 *   calloc   each thread dirties blocks from one site, frees them, and asks calloc at
 *            another site of the same device for zeroed blocks of the same sizes
 * stdout is the same with and without memplace; where the blocks are goes to stderr. */
#include "placed.h"

#define NTHREADS 8
#define PER 400
#define ROUNDS 3
#define STEPS 60

static pthread_barrier_t barrier;
static unsigned char *hot[NTHREADS][PER], *cold[NTHREADS][PER];
static long bad[NTHREADS];

static size_t size_at(int t, int i, int round) { return 16 + (size_t)((t * 7919 + i * 104729 + round * 31) % 16384); }

static void *cross(void *arg)
{
    int t = (int)(long)arg, next = (t + 1) % NTHREADS;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < PER; i++) {
            size_t n = size_at(t, i, round);
            hot[t][i] = malloc(n);                         /* SITE x_hot */
            cold[t][i] = malloc(n);                        /* SITE x_cold */
            fill(hot[t][i], n, t * PER + i);
            fill(cold[t][i], n, ~(t * PER + i));
        }
        pthread_barrier_wait(&barrier);
        if (t == 0 && round == 0) {
            report_blocks("x_hot", (void **)hot, NTHREADS * PER);
            report_blocks("x_cold", (void **)cold, NTHREADS * PER);
        }
        pthread_barrier_wait(&barrier);
        for (int i = 0; i < PER; i++) {
            size_t n = size_at(next, i, round);
            bad[t] += !intact(hot[next][i], n, next * PER + i) + !intact(cold[next][i], n, ~(next * PER + i));
            free(hot[next][i]);
            free(cold[next][i]);
        }
        pthread_barrier_wait(&barrier); /* the arrays are refilled next round */
    }
    return NULL;
}

/* realloc: where each step's block went, summed over threads. */
enum { R_START, R_TO_PMEM, R_TO_FAST, R_SHRINK, R_BACK, R_STEPS };
static const char *const step_name[R_STEPS] = {"r_start", "r_to_pmem", "r_to_fast", "r_shrink", "r_back"};
static struct tally step_tally[R_STEPS];
static pthread_mutex_t tally_lock = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *last[NTHREADS];
static size_t last_n[NTHREADS];

static void note(int step, const void *p)
{
    struct maps *m = maps_read();
    char kind[520];
    kind_of(m, p, kind, sizeof kind);
    free(m);
    pthread_mutex_lock(&tally_lock);
    tally_add(&step_tally[step], kind);
    pthread_mutex_unlock(&tally_lock);
}

static void *moves(void *arg)
{
    int t = (int)(long)arg, next = (t + 1) % NTHREADS;
    for (int i = 0; i < STEPS; i++) {
        unsigned seed = t * STEPS + i;
        size_t n = 1000 + (size_t)((t * 131 + i * 977) % 60000);
        unsigned char *p = malloc(n);                      /* SITE r_start */
        fill(p, n, seed);
        note(R_START, p);
        p = realloc(p, 2 * n);                             /* SITE r_to_pmem */
        bad[t] += !intact(p, n, seed);
        fill(p, 2 * n, seed);
        note(R_TO_PMEM, p);
        p = reallocarray(p, n, 3);                         /* SITE r_to_fast */
        bad[t] += !intact(p, 2 * n, seed);
        fill(p, 3 * n, seed);
        note(R_TO_FAST, p);
        p = realloc(p, n / 2);                             /* SITE r_shrink */
        bad[t] += !intact(p, n / 2, seed);
        note(R_SHRINK, p);
        p = realloc(p, 4 * n);                             /* SITE r_back */
        bad[t] += !intact(p, n / 2, seed);
        fill(p, 4 * n, seed);
        note(R_BACK, p);
        if (i < STEPS - 1) {
            free(p);
        } else {
            last[t] = p;
            last_n[t] = 4 * n;
        }
    }
    pthread_barrier_wait(&barrier);
    bad[t] += !intact(last[next], last_n[next], next * STEPS + STEPS - 1);
    free(last[next]); /* a block that moved between devices, freed by another thread */
    return NULL;
}

/* calloc: zeroed blocks where freed, dirty blocks of the same device were just released. */
static const size_t csizes[] = {8, 24, 100, 1000, 4096, 10000, 65536, 100000, 262144, 1 << 20};
#define NC (sizeof csizes / sizeof csizes[0])
static unsigned char *zfast[NTHREADS][NC], *zpmem[NTHREADS][NC];

static long nonzero(const unsigned char *p, size_t n)
{
    long k = 0;
    for (size_t i = 0; i < n; i++)
        k += p[i] != 0;
    return k;
}

static void *zeroes(void *arg)
{
    int t = (int)(long)arg;
    for (int round = 0; round < 4; round++)
        for (size_t k = 0; k < NC; k++) {
            size_t s = csizes[k];
            unsigned char *d = malloc(s);                  /* SITE c_dirty_fast */
            memset(d, 0xA5, s);
            __asm__ volatile("" : : "r"(d) : "memory"); /* keep the dirty block and its bytes */
            free(d);
            unsigned char *z = calloc(s % 8 ? s : s / 8, s % 8 ? 1 : 8); /* SITE c_zero_fast */
            bad[t] += nonzero(z, s);
            memset(z, 0x5A, s); /* dirty again for the next round's calloc */
            d = malloc(s);                                 /* SITE c_dirty_pmem */
            memset(d, 0xA5, s);
            __asm__ volatile("" : : "r"(d) : "memory");
            free(d);
            unsigned char *y = calloc(1, s);               /* SITE c_zero_pmem */
            bad[t] += nonzero(y, s);
            memset(y, 0x5A, s);
            if (round == 3) {
                zfast[t][k] = z, zpmem[t][k] = y;
            } else {
                free(z), free(y);
            }
        }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "cross";
    void *(*fn)(void *) = strcmp(mode, "realloc") == 0 ? moves : strcmp(mode, "calloc") == 0 ? zeroes : cross;
    pthread_barrier_init(&barrier, NULL, NTHREADS);
    pthread_t th[NTHREADS];
    for (long t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, fn, (void *)t);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    long total = 0;
    for (int t = 0; t < NTHREADS; t++)
        total += bad[t];
    if (fn == moves)
        for (int s = 0; s < R_STEPS; s++)
            tally_print(step_name[s], &step_tally[s]);
    if (fn == zeroes) {
        report_blocks("c_zero_fast", (void **)zfast, NTHREADS * NC);
        report_blocks("c_zero_pmem", (void **)zpmem, NTHREADS * NC);
        for (int t = 0; t < NTHREADS; t++)
            for (size_t k = 0; k < NC; k++)
                free(zfast[t][k]), free(zpmem[t][k]);
        volatile size_t many = SIZE_MAX / 2; /* n * size overflows: ENOMEM, nothing placed */
        errno = 0;
        void *huge = calloc(many, 4);                      /* SITE c_overflow */
        printf("calloc overflow: %s errno=%s\n", huge ? "non-NULL" : "NULL", errno == ENOMEM ? "ENOMEM" : "other");
    }
    printf("%s threads=%d bad=%ld\n", mode, NTHREADS, total);
    return total != 0;
}
