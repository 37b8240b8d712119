/* forkloop LIVE_MIB FORKS exit|touch: allocates LIVE_MIB MiB in 64 KiB blocks and writes
 * them, then forks FORKS times; each child _exits at once (exit) or first writes one byte
 * in every page of the data (touch); the parent waits for it. Prints the forks per second
 * of the loop alone (allocation excluded). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>

#define BLOCK (64 << 10)

int main(int argc, char **argv)
{
    if (argc != 4)
        return 2;
    long blocks = atol(argv[1]) * 16, forks = atol(argv[2]);
    int touch = strcmp(argv[3], "touch") == 0;
    char **b = malloc(sizeof *b * (blocks ? blocks : 1));
    for (long i = 0; i < blocks; i++) {
        b[i] = malloc(BLOCK);
        memset(b[i], (int)i, BLOCK);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long f = 0; f < forks; f++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            if (touch)
                for (long i = 0; i < blocks; i++)
                    for (long o = 0; o < BLOCK; o += 4096)
                        b[i][o]++;
            _exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("%.3f\n", (double)forks / s);
    return 0;
}
