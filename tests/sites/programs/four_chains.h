/* Four call chains to one allocating helper, for same_depth.c and depths.c: `make`,
 * called by two callers (a, b), each called by two outer functions (x, y); the chains
 * x-a, x-b, y-a, y-b. `how`, the program's: the call that allocates, 0 malloc, 1 realloc
 * of NULL, 2 aligned_alloc. Marked lines: SITE make, CALLER a|b, OUTER x|y. */
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

static int how;

NOINLINE static char *make(int n)
{
    char *p = how == 0 ? malloc((size_t)n) : how == 1 ? realloc(NULL, (size_t)n) : aligned_alloc(16, 32); /* SITE make */
    p[0] = (char)n;
    return p;
}

NOINLINE static char *from_a(int n)
{
    char *p = make(n); /* CALLER a */
    p[0] ^= 'a';
    return p;
}

NOINLINE static char *from_b(int n)
{
    char *p = make(n); /* CALLER b */
    p[0] ^= 'b';
    return p;
}

NOINLINE static long outer_x(int n, int b)
{
    char *p = b ? from_b(n) : from_a(n); /* OUTER x */
    long v = p[0];
    free(p);
    return v;
}

NOINLINE static long outer_y(int n, int b)
{
    char *p = b ? from_b(n) : from_a(n); /* OUTER y */
    long v = p[0] + 1;
    free(p);
    return v;
}
