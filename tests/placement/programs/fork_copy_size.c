/* How much of a file device a forked child copies: the parent writes one small block
 * (the kernel reads around its first fault, so megabytes of zero pages of the device's
 * file are in the page cache), forks, and the child prints how many bytes its own file
 * behind that block holds on disk ("child_file_bytes=N") and whether it sees the block's
 * contents ("intact=1"). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

static long file_bytes_behind(const void *p)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    unsigned long lo, hi, at = (unsigned long)p;
    long bytes = -1;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2 && lo <= at && at < hi) {
            char name[128];
            snprintf(name, sizeof name, "/proc/self/map_files/%lx-%lx", lo, hi);
            struct stat st;
            if (stat(name, &st) == 0)
                bytes = (long)st.st_blocks * 512;
            break;
        }
    if (f)
        fclose(f);
    return bytes;
}

int main(void)
{
    char *p = malloc(100);
    strcpy(p, "parent data");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return perror("fork"), 1;
    if (pid == 0) {
        printf("child_file_bytes=%ld intact=%d\n", file_bytes_behind(p), strcmp(p, "parent data") == 0);
        fflush(stdout);
        _exit(0);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 1;
}
