/* COUNT live blocks of SIZE bytes from one site, allocated by one call of the malloc
 * family (HOW: 0 malloc, 1 aligned_alloc, 2 realloc of NULL, 3 calloc), touched, then freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void *block(int how, size_t size)
{
    return how == 0 ? malloc(size) : how == 1 ? aligned_alloc(64, size) : how == 2 ? realloc(NULL, size) : calloc(1, size); /* SITE block */
}

int main(int argc, char **argv)
{
    int how = atoi(argv[1]), count = atoi(argv[2]);
    size_t size = (size_t)atol(argv[3]);
    void **v = calloc((size_t)count, sizeof *v);
    for (int i = 0; i < count; i++) {
        v[i] = block(how, size);
        memset(v[i], 1, size);
    }
    for (int i = 0; i < count; i++)
        free(v[i]);
    free(v);
    puts("ok");
    return 0;
}
