/* Allocation-heavy workloads for bench/overhead/run.py. Usage: workloads NAME [SCALE].
 * Each prints a checksum so the work cannot be optimised away and runs identically
 * with and without the runtime. */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rng(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Single thread: a sliding window of live blocks, sizes drawn from [lo, hi). */
static uint64_t churn(long rounds, size_t lo, size_t hi, int window)
{
    char **slot = calloc(window, sizeof *slot);
    uint64_t s = 88172645463325252ull, sum = 0;
    for (long r = 0; r < rounds; r++) {
        int i = rng(&s) % window;
        free(slot[i]);
        size_t n = lo + rng(&s) % (hi - lo);
        slot[i] = malloc(n);
        slot[i][0] = (char)r;
        slot[i][n - 1] = (char)n;
        sum += (unsigned char)slot[i][0];
    }
    for (int i = 0; i < window; i++) free(slot[i]);
    free(slot);
    return sum;
}

/* Buffers grown by realloc in small steps, as string builders and vectors do. */
static uint64_t realloc_growth(long rounds)
{
    uint64_t s = 1, sum = 0;
    for (long r = 0; r < rounds; r++) {
        size_t cap = 16, len = 0, target = 256 + rng(&s) % 65536;
        char *buf = malloc(cap);
        while (len < target) {
            size_t step = 1 + rng(&s) % 512;
            if (len + step > cap) {
                cap = (len + step) * 3 / 2;
                buf = realloc(buf, cap);
            }
            memset(buf + len, (int)step, step);
            len += step;
        }
        sum += (unsigned char)buf[len / 2];
        free(buf);
    }
    return sum;
}

/* Producer/consumer: blocks are allocated in one thread and freed in another, handed
 * over in batches through a mutex-protected queue (no spinning: fair on a busy machine). */
#define BATCH 256
#define QUEUE 16
struct handoff {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    char **batch[QUEUE];
    int head, tail;
    long batches;
    uint64_t sum;
};

static void *producer(void *arg)
{
    struct handoff *h = arg;
    uint64_t s = 12345;
    for (long b = 0; b < h->batches; b++) {
        char **batch = malloc(BATCH * sizeof *batch);
        for (int i = 0; i < BATCH; i++) {
            size_t n = 16 + rng(&s) % 2048;
            batch[i] = malloc(n);
            batch[i][0] = (char)i;
        }
        pthread_mutex_lock(&h->lock);
        while (h->tail - h->head == QUEUE)
            pthread_cond_wait(&h->changed, &h->lock);
        h->batch[h->tail++ % QUEUE] = batch;
        pthread_cond_broadcast(&h->changed);
        pthread_mutex_unlock(&h->lock);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct handoff *h = arg;
    for (long b = 0; b < h->batches; b++) {
        pthread_mutex_lock(&h->lock);
        while (h->tail == h->head)
            pthread_cond_wait(&h->changed, &h->lock);
        char **batch = h->batch[h->head++ % QUEUE];
        pthread_cond_broadcast(&h->changed);
        pthread_mutex_unlock(&h->lock);
        for (int i = 0; i < BATCH; i++) {
            h->sum += (unsigned char)batch[i][0];
            free(batch[i]);
        }
        free(batch);
    }
    return NULL;
}

static uint64_t cross_thread(long count)
{
    struct handoff *h = calloc(1, sizeof *h);
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->changed, NULL);
    h->batches = count / BATCH;
    pthread_t a, b;
    pthread_create(&a, NULL, producer, h);
    pthread_create(&b, NULL, consumer, h);
    pthread_join(a, NULL);
    pthread_join(b, NULL);
    uint64_t sum = h->sum;
    free(h);
    return sum;
}

/* Larson-style server: worker threads replace random blocks of a shared pool, so a block
 * is often freed by a different thread than the one that allocated it. */
#define POOL 4096
static char *volatile pool[POOL];
struct larson_arg { long rounds; uint64_t seed; uint64_t sum; };

static void *larson_worker(void *argp)
{
    struct larson_arg *a = argp;
    for (long r = 0; r < a->rounds; r++) {
        int i = rng(&a->seed) % POOL;
        size_t n = 8 + rng(&a->seed) % 1000;
        char *fresh = malloc(n);
        fresh[0] = (char)n;
        char *old = __atomic_exchange_n(&pool[i], fresh, __ATOMIC_ACQ_REL);
        a->sum += n; /* deterministic, whatever the interleaving */
        free(old);
    }
    return NULL;
}

static uint64_t larson(long rounds, int threads)
{
    pthread_t t[16];
    struct larson_arg a[16];
    for (int i = 0; i < threads; i++) {
        a[i] = (struct larson_arg){rounds, 0x9E3779B97F4A7C15ull * (i + 1), 0};
        pthread_create(&t[i], NULL, larson_worker, &a[i]);
    }
    uint64_t sum = 0;
    for (int i = 0; i < threads; i++) {
        pthread_join(t[i], NULL);
        sum += a[i].sum;
    }
    for (int i = 0; i < POOL; i++) free(pool[i]);
    return sum;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s churn-small|churn-medium|realloc-growth|cross-thread|larson [SCALE]\n", argv[0]);
        return 2;
    }
    double scale = argc > 2 ? atof(argv[2]) : 1.0;
    const char *w = argv[1];
    uint64_t sum;
    if (!strcmp(w, "churn-small")) sum = churn((long)(20e6 * scale), 8, 256, 10000);
    else if (!strcmp(w, "churn-medium")) sum = churn((long)(2e6 * scale), 1024, 65536, 2000);
    else if (!strcmp(w, "realloc-growth")) sum = realloc_growth((long)(100e3 * scale));
    else if (!strcmp(w, "cross-thread")) sum = cross_thread((long)(2e6 * scale));
    else if (!strcmp(w, "larson")) sum = larson((long)(5e6 * scale), 2);
    else { fprintf(stderr, "unknown workload %s\n", w); return 2; }
    printf("%s %llu\n", w, (unsigned long long)sum);
    return 0;
}
