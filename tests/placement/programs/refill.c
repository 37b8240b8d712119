/* Fills a device to its capacity, frees most of it, and allocates again: the second
 * round fits in what was freed (its live bytes stay below the first's). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

__attribute__((noinline)) static void *block(size_t n)
{
    void *p = malloc(n); /* SITE refill */
    if (p)
        memset(p, 1, n);
    return p;
}

int main(int argc, char **argv)
{
    int first = atoi(argv[1]), freed = atoi(argv[2]), again = atoi(argv[3]);
    size_t size = (size_t)atol(argv[4]);
    void **p = calloc((size_t)(first + again), sizeof *p);
    for (int i = 0; i < first; i++)
        p[i] = block(size);
    for (int i = 0; i < freed; i++)
        free(p[i]);
    for (int i = 0; i < again; i++)
        p[first + i] = block(size);
    for (int i = freed; i < first + again; i++)
        free(p[i]);
    free(p);
    puts("done");
    return 0;
}
