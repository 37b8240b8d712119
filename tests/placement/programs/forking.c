/* fork() under placement.
 *   forking.c threads   8 threads allocate from placed sites; two of them fork 20 times each
 *                       meanwhile. Each child allocates from placed sites (describing where
 *                       the blocks are on stderr), then execs this program ("exec-child"),
 *                       which allocates from a placed site again and exits 42.
 *   forking.c cow fast|pmem
 *                       the parent fills a block from the device's site and forks; the child
 *                       overwrites its copy, frees it, allocates and writes new blocks there;
 *                       the parent's block must be unchanged (fork gives the child a copy).
 * stdout is the same with and without memplace. */
#include <sys/wait.h>
#include "placed.h"

#define NTHREADS 8
#define FORKERS 2
#define FORKS 20
#define CHILD_BLOCKS 50

static const char *self;
static int forkers_done;
static long bad[NTHREADS], forked_ok[NTHREADS];

static void child(void)
{
    alarm(30); /* a deadlock in the child ends it with SIGALRM, which the parent reports */
    void *fast[CHILD_BLOCKS], *pmem[CHILD_BLOCKS];
    int broken = 0;
    for (int i = 0; i < CHILD_BLOCKS; i++) {
        size_t n = 64 + (size_t)i * 300;
        fast[i] = malloc(n);                                   /* SITE f_child_fast */
        pmem[i] = malloc(n);                                   /* SITE f_child_pmem */
        fill(fast[i], n, i), fill(pmem[i], n, ~i);
    }
    for (int i = 0; i < CHILD_BLOCKS; i++)
        broken += !intact(fast[i], 64 + (size_t)i * 300, i) + !intact(pmem[i], 64 + (size_t)i * 300, ~i);
    report_blocks("child_fast", fast, CHILD_BLOCKS);
    report_blocks("child_pmem", pmem, CHILD_BLOCKS);
    for (int i = 0; i < CHILD_BLOCKS; i += 2)
        free(fast[i]), free(pmem[i]);
    if (broken)
        _exit(3);
    execl(self, self, "exec-child", (char *)NULL);
    _exit(4);
}

static void *worker(void *arg)
{
    long t = (long)arg;
    void *ring[64] = {0};
    for (unsigned i = 0;; i++) {
        int done = __atomic_load_n(&forkers_done, __ATOMIC_ACQUIRE) == FORKERS;
        if (t >= FORKERS && done)
            break;
        if (t < FORKERS && i % 50 == 0) {
            if (forked_ok[t] + bad[t] == FORKS) {
                __atomic_add_fetch(&forkers_done, 1, __ATOMIC_RELEASE);
                break;
            }
            pid_t pid = fork();
            if (pid == 0)
                child();
            int status = 0;
            waitpid(pid, &status, 0);
            if (WIFEXITED(status) && WEXITSTATUS(status) == 42)
                forked_ok[t]++;
            else
                bad[t]++, fprintf(stderr, "child status %#x\n", status);
        }
        size_t n = 16 + (i * 7919u + (unsigned)t * 131u) % 20000;
        unsigned slot = i % 64;
        if (ring[slot]) {
            size_t old = 16 + ((i - 64) * 7919u + (unsigned)t * 131u) % 20000;
            bad[t] += !intact(ring[slot], old, i - 64);
            free(ring[slot]);
        }
        ring[slot] = malloc(n);                                 /* SITE f_work */
        fill(ring[slot], n, i);
    }
    for (int s = 0; s < 64; s++)
        free(ring[s]);
    return NULL;
}

static int cow(int pmem)
{
    size_t n = 1 << 20;
    unsigned char *a = pmem ? malloc(n) : NULL;                 /* SITE cow_pmem */
    if (!pmem)
        a = malloc(n);                                          /* SITE cow_fast */
    fill(a, n, 1);
    report_blocks(pmem ? "cow_pmem" : "cow_fast", (void **)&a, 1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        memset(a, 'C', n); /* the child's copy */
        free(a);
        for (int i = 0; i < 8; i++) {
            void *b = pmem ? malloc(n) : NULL;                  /* SITE cow_child_pmem */
            if (!pmem)
                b = malloc(n);                                  /* SITE cow_child_fast */
            memset(b, 'X', n);
        }
        _exit(0);
    }
    int status;
    waitpid(pid, &status, 0);
    printf("cow %s: child exit=%d parent block intact=%d\n", pmem ? "pmem" : "fast",
           WIFEXITED(status) ? WEXITSTATUS(status) : -1, intact(a, n, 1));
    free(a);
    return 0;
}

int main(int argc, char **argv)
{
    self = argv[0];
    const char *mode = argc > 1 ? argv[1] : "threads";
    if (strcmp(mode, "exec-child") == 0) {
        void *p = malloc(4096);                                 /* SITE f_exec */
        memset(p, 1, 4096);
        report_blocks("exec_child", &p, 1);
        free(p);
        return 42;
    }
    if (strcmp(mode, "cow") == 0)
        return cow(argc > 2 && strcmp(argv[2], "pmem") == 0);
    pthread_t th[NTHREADS];
    for (long t = 0; t < NTHREADS; t++)
        pthread_create(&th[t], NULL, worker, (void *)t);
    long ok = 0, total_bad = 0;
    for (int t = 0; t < NTHREADS; t++) {
        pthread_join(th[t], NULL);
        ok += forked_ok[t];
        total_bad += bad[t];
    }
    printf("forks=%d children ok=%ld bad=%ld\n", FORKERS * FORKS, ok, total_bad);
    return total_bad != 0;
}
