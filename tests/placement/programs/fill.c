/* Allocate COUNT blocks of SIZE bytes from one site, touch them, and count where they
 * landed: "placed" blocks are in a bound mapping or a file, the rest are "other". */
#include "where.h"

int main(int argc, char **argv)
{
    long count = strtol(argv[1], NULL, 0);
    size_t size = strtoul(argv[2], NULL, 0);
    char **blocks = calloc(count, sizeof *blocks);
    for (long i = 0; i < count; i++) {
        blocks[i] = malloc(size);                /* SITE fill */
        if (!blocks[i]) { printf("NULL at %ld\n", i); return 1; }
        memset(blocks[i], (int)i, size);
    }
    /* sample the first and the last block */
    describe("first", blocks[0]);
    describe("last", blocks[count - 1]);
    for (long i = 0; i < count; i++) free(blocks[i]);
    free(blocks);
    printf("ok %ld\n", count);
    return 0;
}
