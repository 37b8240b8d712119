/* The aligned allocation family and malloc_usable_size, from 8 threads at once.
 * Every thread makes the same calls and writes the same report; thread 0's goes to stdout
 * (the same with and without memplace), with a line saying whether all threads agree.
 * Every block is filled up to malloc_usable_size and checked after all are allocated: a
 * usable size that overlaps another block shows up as a broken pattern. */
#include <malloc.h>
#include <stdarg.h>
#include "placed.h"

#define NTHREADS 8
#define NALIGN 19 /* 8 B .. 2 MiB */
#define NSIZES 4
#define BIG (64u << 10)
static const size_t sizes[NSIZES] = {1, 100, 5000, 70000};

enum { PM_SMALL, PM_BIG, AA_SMALL, AA_BIG, MA_SMALL, MA_BIG, VA, PV, NLABELS };
static const char *const label[NLABELS] = {"pm-small", "pm-big", "aa-small", "aa-big",
                                           "ma-small", "ma-big", "va", "pv"};
#define MAXB (NALIGN * NSIZES)
static void *blocks[NLABELS][NTHREADS][MAXB]; /* per label: every thread's blocks */
static char report[NTHREADS][16384];

struct out { char *buf; size_t n; };
static void say(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    o->n += (size_t)vsnprintf(o->buf + o->n, sizeof report[0] - o->n, fmt, ap);
    va_end(ap);
}

struct kept { void *p; size_t usable; unsigned seed; };

static void *exercise(void *arg)
{
    int t = (int)(long)arg;
    struct out o = {report[t], 0};
    static __thread struct kept kept[NLABELS * MAXB];
    int nkept = 0, count[NLABELS] = {0}, usable_ok = 1;
#define KEEP(lab, q, n)                                                         \
    do {                                                                        \
        size_t u = malloc_usable_size(q);                                       \
        usable_ok &= u >= (n);                                                  \
        fill(q, u, (unsigned)nkept);                                            \
        kept[nkept] = (struct kept){q, u, (unsigned)nkept};                     \
        nkept++;                                                                \
        blocks[lab][t][count[lab]++] = q;                                       \
    } while (0)
    for (int a = 0; a < NALIGN; a++) {
        size_t align = (size_t)8 << a;
        for (int s = 0; s < NSIZES; s++) {
            size_t n = sizes[s];
            void *p = NULL;
            int r = posix_memalign(&p, align, n);                   /* SITE pm */
            say(&o, "posix_memalign(%zu, %zu) = %d aligned=%d\n", align, n, r, r == 0 && (uintptr_t)p % align == 0);
            if (r == 0)
                KEEP(align <= BIG ? PM_SMALL : PM_BIG, p, n);
            void *q = aligned_alloc(align, n);                      /* SITE aa */
            say(&o, "aligned_alloc(%zu, %zu) %s aligned=%d\n", align, n, q ? "ok" : "NULL", q && (uintptr_t)q % align == 0);
            if (q)
                KEEP(align <= BIG ? AA_SMALL : AA_BIG, q, n);
            void *m = memalign(align, n);                           /* SITE ma */
            say(&o, "memalign(%zu, %zu) %s aligned=%d\n", align, n, m ? "ok" : "NULL", m && (uintptr_t)m % align == 0);
            if (m)
                KEEP(align <= BIG ? MA_SMALL : MA_BIG, m, n);
        }
    }
    long page = sysconf(_SC_PAGESIZE);
    for (int s = 0; s < NSIZES; s++) {
        void *v = valloc(sizes[s]);                                 /* SITE va */
        say(&o, "valloc(%zu) %s page-aligned=%d\n", sizes[s], v ? "ok" : "NULL", v && (uintptr_t)v % page == 0);
        if (v)
            KEEP(VA, v, sizes[s]);
        void *w = pvalloc(sizes[s]);                                /* SITE pv */
        size_t rounded = (sizes[s] + page - 1) / page * page;
        say(&o, "pvalloc(%zu) %s page-aligned=%d\n", sizes[s], w ? "ok" : "NULL", w && (uintptr_t)w % page == 0);
        if (w)
            KEEP(PV, w, rounded);
    }
    /* Invalid alignments: EINVAL, *out untouched, errno unchanged. */
    static const size_t invalid[] = {0, 1, 2, 3, 4, 12, 24, 48, 4097, (SIZE_MAX >> 1) + 2};
    for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        void *sentinel = (void *)0x1234;
        errno = 42;
        int r = posix_memalign(&sentinel, invalid[i], 16);          /* SITE pm_einval */
        say(&o, "posix_memalign(%zu) = %s untouched=%d errno=%d\n", invalid[i], r == EINVAL ? "EINVAL" : "?",
            sentinel == (void *)0x1234, errno);
    }
    errno = 0;
    void *e1 = memalign((SIZE_MAX >> 1) + 2, 8);                    /* SITE ma_einval */
    say(&o, "memalign(huge) %s errno=%s\n", e1 ? "ok" : "NULL", errno == EINVAL ? "EINVAL" : "other");
    errno = 0;
    void *e2 = aligned_alloc((SIZE_MAX >> 1) + 2, 8);               /* SITE aa_einval */
    say(&o, "aligned_alloc(huge) %s errno=%s\n", e2 ? "ok" : "NULL", errno == EINVAL ? "EINVAL" : "other");
    /* Not a power of two: memalign and aligned_alloc round it up (glibc 2.36). */
    void *r3 = memalign(48, 10), *r4 = aligned_alloc(24, 10);
    say(&o, "memalign(48) aligned64=%d aligned_alloc(24) aligned32=%d\n", r3 && (uintptr_t)r3 % 64 == 0,
        r4 && (uintptr_t)r4 % 32 == 0);
    free(r3), free(r4);
    void *big = NULL;
    say(&o, "posix_memalign(64, SIZE_MAX-100) = %s\n", posix_memalign(&big, 64, SIZE_MAX - 100) == ENOMEM ? "ENOMEM" : "?");
    say(&o, "malloc_usable_size(NULL) = %zu\n", malloc_usable_size(NULL));
    int patterns = 1;
    for (int i = 0; i < nkept; i++)
        patterns &= intact(kept[i].p, kept[i].usable, kept[i].seed);
    say(&o, "usable>=requested=%d patterns intact=%d blocks=%d\n", usable_ok, patterns, nkept);
    return NULL;
}

int main(void)
{
    pthread_t th[NTHREADS];
    for (long t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, exercise, (void *)t);
    for (int t = 0; t < NTHREADS; t++)
        pthread_join(th[t], NULL);
    int agree = 1;
    for (int t = 1; t < NTHREADS; t++)
        agree &= strcmp(report[t], report[0]) == 0;
    fputs(report[0], stdout);
    printf("threads agree=%d\n", agree);
    for (int l = 0; l < NLABELS; l++)
        report_blocks(label[l], (void **)blocks[l], (long)NTHREADS * MAXB);
    for (int l = 0; l < NLABELS; l++)
        for (int t = 0; t < NTHREADS; t++)
            for (int i = 0; i < MAXB; i++)
                free(blocks[l][t][i]);
    return 0;
}
