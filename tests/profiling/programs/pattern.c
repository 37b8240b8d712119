/* Known allocation pattern: site A makes 10 blocks of 1000 bytes, all live at once;
 * site B makes 100 blocks of 64 bytes, one live at a time; site C one 1 MiB block that is
 * never freed; then, with argument "crash", the program dies of SIGSEGV. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

char *volatile keep;

__attribute__((noinline)) void site_a(void)
{
    char *blocks[10];
    for (int i = 0; i < 10; i++) {
        blocks[i] = malloc(1000);            /* SITE A */
        memset(blocks[i], i, 1000);
    }
    for (int i = 0; i < 10; i++)
        free(blocks[i]);
}

__attribute__((noinline)) void site_b(void)
{
    for (int i = 0; i < 100; i++) {
        char *p = malloc(64);                /* SITE B */
        keep = p;
        free(keep);
    }
}

int main(int argc, char **argv)
{
    site_a();
    site_b();
    keep = calloc(1, 1 << 20);               /* SITE C */
    if (argc > 1 && strcmp(argv[1], "crash") == 0)
        raise(SIGSEGV);
    return 0;
}
