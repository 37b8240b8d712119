/* depths.c's four chains (make <- from_a|from_b <- outer_x|outer_y) met at many depths,
 * with frames whose size changes from call to call: variable-length arrays in the
 * allocating function, in its callers or in the recursion's frames between, so that
 * fp - sp and the offsets of the chain's words differ; and the chain left by longjmp,
 * run in threads (new stacks, blocks reused) or on a coroutine whose stack lies inside
 * the thread's own. Prints each chain's count, which the placed run's rule hits must equal.
 * HOW: 0 malloc, 1 calloc, 2 realloc of NULL, 3 aligned_alloc.
 * MODE bits: 1 VLA in make, 2 VLA in the callers, 4 VLA in the recursion, 8 longjmp out
 * of the recursion, 16 three waves of 4 threads, 32 a coroutine on a stack in main's frame,
 * 64 a 37 us timer whose handler calls the chains in turn (at whatever depth it lands; the
 * thread's first allocation is made before it starts: a handler's allocation while the
 * thread's block is being made is matched by its return address alone).
 * Marked lines: SITE make, CALLER a|b, OUTER x|y.
 *
 *   vla_depths ROUNDS DEPTHS HOW MODE   prints "sum=<n>" and "counts <ax> <bx> <ay> <by>" */
#define _GNU_SOURCE
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/time.h>
#include <ucontext.h>

#define NOINLINE __attribute__((noinline))

static int how, mode;
static void *volatile none; /* a NULL gcc cannot see: realloc(NULL) stays a realloc */
static long counts[2][2];   /* [outer][caller] */
static volatile long handled[4]; /* the handler's calls of each chain */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static __thread unsigned long seed = 1;

/* 1..249 bytes, a different length on most calls */
static unsigned length(void)
{
    seed = seed * 6364136223846793005ul + 1442695040888963407ul;
    return (unsigned)(seed >> 59) * 8 + 1;
}

NOINLINE static char *make(int n)
{
    volatile char pad[(mode & 1) ? length() : 1];
    pad[0] = 0;
    char *p = how == 1 ? calloc(1, (size_t)n) : how == 2 ? realloc(none, (size_t)n) : how == 3 ? aligned_alloc(16, 32) : malloc((size_t)n); /* SITE make */
    p[0] = (char)(n + pad[0]);
    return p;
}

NOINLINE static char *from_a(int n)
{
    volatile char pad[(mode & 2) ? length() : 1];
    pad[0] = 0;
    char *p = make(n); /* CALLER a */
    p[0] ^= (char)('a' + pad[0]);
    return p;
}

NOINLINE static char *from_b(int n)
{
    volatile char pad[(mode & 2) ? length() : 1];
    pad[0] = 0;
    char *p = make(n); /* CALLER b */
    p[0] ^= (char)('b' + pad[0]);
    return p;
}

NOINLINE static long outer_x(int n, int b)
{
    char *p = b ? from_b(n) : from_a(n); /* OUTER x */
    long v = p[0];
    free(p);
    return v;
}

NOINLINE static long outer_y(int n, int b)
{
    char *p = b ? from_b(n) : from_a(n); /* OUTER y */
    long v = p[0] + 1;
    free(p);
    return v;
}

static __thread jmp_buf out;

NOINLINE static long descend(int d, int k)
{
    if (d == 0) {
        pthread_mutex_lock(&lock);
        counts[k >> 1][k & 1]++;
        pthread_mutex_unlock(&lock);
        long v = k < 2 ? outer_x(24 + k, k & 1) : outer_y(24 + k, k & 1);
        if (mode & 8)
            longjmp(out, (int)v + 1000);
        return v;
    }
    volatile char pad[(mode & 4) ? (unsigned)(d % 7) * 16 + 1 : 1];
    pad[0] = (char)d;
    return descend(d - 1, k) + pad[0] - (char)d;
}

static void on_timer(int sig)
{
    static volatile int next;
    int k = next++ & 3;
    (void)sig;
    handled[k] += (k < 2 ? outer_x(24 + k, k & 1) : outer_y(24 + k, k & 1)) > -1000;
}

static int rounds, depths;

static long run(void)
{
    long sum = 0;
    for (int i = 0; i < rounds; i++)
        for (int d = 0; d < depths; d++)
            for (int k = 0; k < 4; k++) {
                if (mode & 8) {
                    int r = setjmp(out);
                    if (r) {
                        sum += r - 1000;
                        continue;
                    }
                }
                sum += descend(d, k);
            }
    return sum;
}

static void *thread_run(void *arg)
{
    *(long *)arg = run();
    return NULL;
}

static ucontext_t back, co;
static long co_sum;
static void co_run(void) { co_sum = run(); }

int main(int argc, char **argv)
{
    rounds = atoi(argv[1]), depths = atoi(argv[2]), how = atoi(argv[3]), mode = atoi(argv[4]);
    long sum = 0;
    struct itimerval every = {{0, 37}, {0, 37}}, off = {{0, 0}, {0, 0}};
    if (mode & 64) {
        void *volatile first = malloc(1); /* the thread's block, before any handler */
        free(first);
        struct sigaction sa = {0};
        sa.sa_handler = on_timer;
        sa.sa_flags = SA_RESTART;
        sigaction(SIGALRM, &sa, NULL);
        setitimer(ITIMER_REAL, &every, NULL);
    }
    if (mode & 16) {
        for (int wave = 0; wave < 3; wave++) { /* later waves reuse the ended threads' blocks */
            pthread_t t[4];
            long s[4];
            for (int i = 0; i < 4; i++)
                pthread_create(&t[i], NULL, thread_run, &s[i]);
            for (int i = 0; i < 4; i++)
                pthread_join(t[i], NULL), sum += s[i];
        }
    } else if (mode & 32) {
        static char unused;
        char stack[1 << 19]; /* inside the thread's own stack: walks are made there */
        getcontext(&co);
        co.uc_stack.ss_sp = stack, co.uc_stack.ss_size = sizeof stack, co.uc_link = &back;
        makecontext(&co, co_run, 0);
        swapcontext(&back, &co);
        sum = co_sum + run() + unused;
    } else {
        sum = run();
    }
    setitimer(ITIMER_REAL, &off, NULL);
    printf("sum=%ld\ncounts %ld %ld %ld %ld\n", sum, counts[0][0] + handled[0],
           counts[0][1] + handled[1], counts[1][0] + handled[2], counts[1][1] + handled[3]);
    return 0;
}
