/* node_share MIB DIR RANKS: hold MIB blocks of 1 MiB, all at once, while RANKS copies of this
 * program (MPI ranks, or processes of one job) do the same: each announces it holds its
 * blocks with a file DIR/ready.<pid> and waits for the others before freeing. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int ready(const char *dir)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        n += strncmp(e->d_name, "ready.", 6) == 0;
    if (d)
        closedir(d);
    return n;
}

int main(int argc, char **argv)
{
    int mib = atoi(argv[1]), ranks = atoi(argv[3]);
    char **blocks = malloc(sizeof *blocks * (size_t)mib);
    for (int i = 0; i < mib; i++) {
        blocks[i] = malloc(1 << 20);
        memset(blocks[i], i, 1 << 20);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/ready.%d", argv[2], (int)getpid());
    fclose(fopen(path, "w"));
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int waited = 0; ready(argv[2]) < ranks && waited < 6000; waited++)
        nanosleep(&tick, NULL);
    long sum = 0;
    for (int i = 0; i < mib; i++) {
        sum += blocks[i][i];
        free(blocks[i]);
    }
    free(blocks);
    printf("held %d MiB, checksum %ld\n", mib, sum);
    return 0;
}
