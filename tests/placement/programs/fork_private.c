/* fork with blocks on a file device (the policies of test_fork_private.py place every
 * allocation there). stdout is the same with and without memplace unless said otherwise.
 *   fork_private privacy    under an address-space limit (RLIMIT_AS set to what the
 *                           process uses now + 32 MiB): parent and child each write after
 *                           fork; each must see only its own writes and the data of the
 *                           fork time (an arena block, a block grown in place by realloc)
 *   fork_private privacy_Fork   the same with _Fork (no atfork handlers)
 *   fork_private stress     2 threads allocate and free while 2 threads fork 60 times each;
 *                           every child checks a block the forking thread filled, writes
 *                           it, allocates, and exits; the parent checks its block is intact
 *   fork_private freeing    20 times: a 32 MiB block filled, fork, the parent frees it
 *                           and allocates (with MIMALLOC_PURGE_DELAY=0 the freed pages are
 *                           purged at once), then the child checks the block
 *   fork_private nofile     RLIMIT_NOFILE lowered to the descriptors open now, then fork:
 *                           prints what fork returned and whether a child is left
 *   fork_private spawn      fork+exec, vfork+exec and posix_spawn of `sh -c 'exit N'`:
 *                           each child's exit status reaches the parent
 * Where the blocks are goes to stderr (placed.h). */
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include "placed.h"

extern char **environ;
extern pid_t _Fork(void); /* glibc 2.34+, not declared by every unistd.h */

static void set_address_space_limit(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = 0;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kb) == 1)
            break;
    if (f)
        fclose(f);
    struct rlimit r = {(rlim_t)(kb + 32 * 1024) * 1024, (rlim_t)(kb + 32 * 1024) * 1024};
    if (kb == 0 || setrlimit(RLIMIT_AS, &r) != 0)
        printf("cannot limit address space\n");
}

static int privacy(int underscore)
{
    size_t big = 4 << 20;
    char *p = malloc(big);
    char *s = malloc(600);
    for (size_t n = 1024; n <= 64 * 1024; n += 1024) /* grows in place: a growth area */
        s = realloc(s, n);
    memset(p, 'A', big);
    memset(s, 'a', 64 * 1024);
    strcpy(s, "parent");
    void *blocks[] = {p, s};
    report_blocks("privacy", blocks, 2);
    set_address_space_limit();
    int to_parent[2], to_child[2];
    if (pipe(to_parent) || pipe(to_child))
        return 1;
    fflush(stdout);
    pid_t pid = underscore ? _Fork() : fork();
    if (pid < 0) {
        printf("fork failed: %s\n", strerror(errno));
        return 1;
    }
    char c;
    if (pid == 0) {
        int fork_time = p[0] == 'A' && p[big - 1] == 'A' && strcmp(s, "parent") == 0 && s[65535] == 'a';
        p[0] = 'B';
        strcpy(s, "child!");
        if (write(to_parent[1], "w", 1) != 1 || read(to_child[0], &c, 1) != 1)
            _exit(2);
        /* the parent has now written p[1] and p[big-1] */
        printf("child: fork-time data %s, sees p[0]=%c p[1]=%c p[end]=%c s=%s\n",
               fork_time ? "intact" : "CHANGED", p[0], p[1], p[big - 1], s);
        fflush(stdout);
        _exit(0);
    }
    if (read(to_parent[0], &c, 1) != 1)
        return 1;
    /* the child has now written p[0] and s */
    p[1] = 'C';
    p[big - 1] = 'C';
    strcpy(s, "parent2");
    if (write(to_child[1], "w", 1) != 1)
        return 1;
    int st;
    waitpid(pid, &st, 0);
    printf("parent: child status %d, sees p[0]=%c p[1]=%c s=%s\n",
           WIFEXITED(st) ? WEXITSTATUS(st) : -1, p[0], p[1], s);
    return p[0] == 'A' && strcmp(s, "parent2") == 0 ? 0 : 1;
}

#define FORKS 60
static int stop;
static long child_bad, forks_failed;

static void *allocator(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    void *ring[32] = {0};
    for (unsigned i = 0; !__atomic_load_n(&stop, __ATOMIC_ACQUIRE); i++) {
        unsigned k = i % 32;
        free(ring[k]);
        size_t n = 16 + (seed * 977 + i * 131) % 8000;
        ring[k] = malloc(n);
        fill(ring[k], n, i);
        if (!intact(ring[k], n, i))
            __atomic_add_fetch(&child_bad, 1000, __ATOMIC_RELAXED);
    }
    for (int k = 0; k < 32; k++)
        free(ring[k]);
    return NULL;
}

static void *forker(void *arg)
{
    unsigned seed = (unsigned)(uintptr_t)arg;
    for (int i = 0; i < FORKS; i++) {
        size_t n = 1000 + (size_t)i * 97;
        unsigned char *mine = malloc(n);
        fill(mine, n, seed + i);
        pid_t pid = fork();
        if (pid == 0) {
            int ok = intact(mine, n, seed + i);
            memset(mine, 0, n);
            void *more = malloc(3000);
            fill(more, 3000, 7);
            ok &= intact(more, 3000, 7);
            _exit(ok ? 0 : 3);
        }
        if (pid < 0) {
            __atomic_add_fetch(&forks_failed, 1, __ATOMIC_RELAXED);
            continue;
        }
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || !intact(mine, n, seed + i))
            __atomic_add_fetch(&child_bad, 1, __ATOMIC_RELAXED);
        free(mine);
    }
    return NULL;
}

static int stress(void)
{
    void *held[24]; /* 3 MiB live throughout: the small device overflows onto the file */
    for (int i = 0; i < 24; i++)
        fill(held[i] = malloc(128 << 10), 128 << 10, i);
    pthread_t a[2], f[2];
    for (long t = 0; t < 2; t++)
        pthread_create(&a[t], NULL, allocator, (void *)t);
    for (long t = 0; t < 2; t++)
        pthread_create(&f[t], NULL, forker, (void *)(t + 10));
    for (int t = 0; t < 2; t++)
        pthread_join(f[t], NULL);
    __atomic_store_n(&stop, 1, __ATOMIC_RELEASE);
    for (int t = 0; t < 2; t++)
        pthread_join(a[t], NULL);
    for (int i = 0; i < 24; i++)
        child_bad += !intact(held[i], 128 << 10, i);
    report_blocks("held", held, 24);
    printf("forks=%d failed=%ld bad=%ld\n", 2 * FORKS, forks_failed, child_bad);
    return child_bad != 0 || forks_failed != 0;
}

/* The parent frees the block once fork has returned, and allocates and frees for a while
 * (mimalloc purges then: a file device punches the freed pages out of its file); only
 * then does the child look. */
static int freeing(void)
{
    size_t big = 32 << 20;
    long bad = 0;
    for (int i = 0; i < 20; i++) {
        char *block = malloc(big);
        memset(block, 'A' + i, big);
        if (i == 0)
            report_blocks("freeing", (void **)&block, 1);
        int go[2];
        if (pipe(go))
            return 1;
        fflush(stdout);
        pid_t pid = fork();
        if (pid == 0) {
            char c;
            int ok = read(go[0], &c, 1) == 1;
            for (size_t k = 0; k < big; k += 4096)
                ok &= block[k] == 'A' + i;
            _exit(ok ? 0 : 3);
        }
        free(block);
        for (int k = 0; k < 2000; k++)
            free(malloc(4096 + (size_t)(k % 64) * 4096));
        int st = 0;
        if (pid > 0 && write(go[1], "g", 1) == 1)
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
                ;
        close(go[0]);
        close(go[1]);
        bad += pid < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0;
    }
    printf("freeing: %ld of 20 children saw the block changed\n", bad);
    return bad != 0;
}

static int nofile(void)
{
    char *p = malloc(1 << 20);
    memset(p, 'A', 1 << 20);
    void *blocks[] = {p};
    report_blocks("nofile", blocks, 1);
    int lowest_free = dup(0);
    close(lowest_free);
    struct rlimit r;
    getrlimit(RLIMIT_NOFILE, &r);
    r.rlim_cur = (rlim_t)lowest_free;
    setrlimit(RLIMIT_NOFILE, &r);
    fflush(stdout);
    errno = 0;
    pid_t pid = fork();
    if (pid == 0)
        _exit(p[0] == 'A' ? 0 : 1);
    int e = errno, st = -1;
    if (pid > 0)
        waitpid(pid, &st, 0);
    pid_t left = waitpid(-1, NULL, WNOHANG);
    printf("fork %s errno=%s exit=%d; children left: %s\n", pid > 0 ? "ok" : pid == 0 ? "?" : "-1",
           e == ENOMEM ? "ENOMEM" : e == 0 ? "0" : strerror(e), WIFEXITED(st) ? WEXITSTATUS(st) : -1,
           left < 0 && errno == ECHILD ? "none" : "SOME");
    return 0;
}

static int status_of(pid_t pid)
{
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int spawn(void)
{
    char *p = malloc(8 << 20);
    memset(p, 'A', 8 << 20);
    void *blocks[] = {p};
    report_blocks("spawn", blocks, 1);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "exit 7", (char *)NULL);
        _exit(100);
    }
    printf("fork+exec: %d\n", status_of(pid));
    pid = vfork();
    if (pid == 0) {
        execl("/bin/sh", "sh", "-c", "exit 3", (char *)NULL);
        _exit(100);
    }
    printf("vfork+exec: %d\n", status_of(pid));
    char *argv[] = {"sh", "-c", "exit 5", NULL};
    if (posix_spawn(&pid, "/bin/sh", NULL, NULL, argv, environ) != 0)
        pid = -1;
    printf("posix_spawn: %d\n", status_of(pid));
    printf("system: %d\n", WEXITSTATUS(system("exit 9")));
    printf("data intact: %d\n", p[0] == 'A' && p[(8 << 20) - 1] == 'A');
    return 0;
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "";
    if (strcmp(mode, "privacy") == 0)
        return privacy(0);
    if (strcmp(mode, "privacy_Fork") == 0)
        return privacy(1);
    if (strcmp(mode, "stress") == 0)
        return stress();
    if (strcmp(mode, "nofile") == 0)
        return nofile();
    if (strcmp(mode, "freeing") == 0)
        return freeing();
    if (strcmp(mode, "spawn") == 0)
        return spawn();
    fprintf(stderr, "usage: fork_private privacy|privacy_Fork|stress|freeing|nofile|spawn\n");
    return 2;
}
