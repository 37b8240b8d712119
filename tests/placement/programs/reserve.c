/* Allocate COUNT blocks of SIZE bytes from one site, touching one byte of each (so a big
 * COUNT costs address space, not memory); with a third argument, first create that file,
 * to show the program ran. Prints where the first and last block live and "ok ...". */
#include "where.h"

int main(int argc, char **argv)
{
    if (argc > 3) {
        FILE *f = fopen(argv[3], "w");
        if (!f)
            return 3;
        fputs("ran\n", f);
        fclose(f);
    }
    long count = strtol(argv[1], NULL, 0);
    size_t size = strtoul(argv[2], NULL, 0);
    char **blocks = calloc(count, sizeof *blocks);
    for (long i = 0; i < count; i++) {
        blocks[i] = malloc(size);                /* SITE block */
        if (!blocks[i]) { printf("NULL at %ld\n", i); return 1; }
        blocks[i][0] = (char)(i % 100);
    }
    long sum = 0;
    for (long i = 0; i < count; i++)
        sum += blocks[i][0];
    describe("first", blocks[0]);
    describe("last", blocks[count - 1]);
    for (long i = 0; i < count; i++) free(blocks[i]);
    free(blocks);
    printf("ok %ld sum %ld\n", count, sum);
    return 0;
}
