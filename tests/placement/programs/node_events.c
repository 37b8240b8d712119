/* node_events MODE: the ways an image can leave or rejoin a node's shared capacity.
 *   quick  2 MiB held; quick_exit, whose handler calls _exit (the image ends twice)
 *   exec   a thread allocating and freeing 1 MiB blocks while main makes 3000 failed execs
 *   _fork  3 MiB held; a _Fork child frees its copy and leaves; then 3 MiB more are asked */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1 << 20)

static void leave_now(void) { _exit(0); }

static volatile int stop;

static void *churn(void *arg)
{
    (void)arg;
    while (!stop) {
        char *p = malloc(MIB);
        p[0] = 1;
        free(p);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return 2;
    if (strcmp(argv[1], "quick") == 0) {
        char *p = malloc(2 * MIB);
        memset(p, 1, 2 * MIB);
        at_quick_exit(leave_now);
        puts("quick");
        fflush(stdout);
        quick_exit(0);
    }
    if (strcmp(argv[1], "exec") == 0) {
        pthread_t t;
        pthread_create(&t, NULL, churn, NULL);
        char *const args[] = {"/nonexistent/program", NULL};
        for (int i = 0; i < 3000; i++)
            execv(args[0], args);
        stop = 1;
        pthread_join(t, NULL);
        puts("exec");
        return 0;
    }
    if (strcmp(argv[1], "_fork") == 0) {
        char *a = malloc(3 * MIB);
        memset(a, 1, 3 * MIB);
        pid_t pid = _Fork();
        if (pid == 0) {
            free(a);
            _exit(0);
        }
        waitpid(pid, NULL, 0);
        char *b = malloc(3 * MIB);
        memset(b, 2, 3 * MIB);
        printf("_fork %d\n", a[5] + b[5]);
        return 0;
    }
    return 2;
}
