/* COUNT blocks of 4000 bytes, each then shrunk by realloc to 2100 (a placed run keeps a
 * block that is still at least half used where it is), all live together, then freed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    int count = atoi(argv[1]);
    char **p = calloc((size_t)count, sizeof *p);
    for (int i = 0; i < count; i++) {
        p[i] = malloc(4000); /* SITE grow */
        memset(p[i], i, 4000);
    }
    for (int i = 0; i < count; i++)
        p[i] = realloc(p[i], 2100); /* SITE shrink */
    long sum = 0;
    for (int i = 0; i < count; i++)
        sum += p[i][2099];
    for (int i = 0; i < count; i++)
        free(p[i]);
    free(p);
    printf("sum=%ld\n", sum);
    return 0;
}
