/* Two threads grow and shrink the heap without pause (a new peak of the heap on many of
 * their mallocs) while the main thread forks FORKS children that each allocate at the
 * same sites and exit: a child must never find a profiler lock held by a thread it does
 * not have.
 *
 *     fork_while_growing FORKS */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile int stop;

static void *grow(void *arg)
{
    (void)arg;
    void *blocks[256] = {0};
    for (unsigned i = 0; !stop; i++) {
        unsigned k = i % 256;
        free(blocks[k]);
        blocks[k] = malloc(64 + (i % 4096));            /* SITE grow */
        if (blocks[k])
            memset(blocks[k], 1, 64);
    }
    for (int k = 0; k < 256; k++)
        free(blocks[k]);
    return NULL;
}

int main(int argc, char **argv)
{
    int forks = argc > 1 ? atoi(argv[1]) : 50, done = 0;
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, grow, NULL);
    for (int n = 0; n < forks; n++) {
        pid_t pid = fork();
        if (pid == 0) {
            for (int i = 0; i < 1000; i++)
                free(malloc(64 + i));                   /* SITE child */
            _exit(0);
        }
        int status;
        if (pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0)
            done++;
    }
    stop = 1;
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    printf("children %d of %d\n", done, forks);
    return 0;
}
