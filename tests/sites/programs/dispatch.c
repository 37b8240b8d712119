/* One allocating helper called by sixteen callers from the same stack depth, through a
 * table of functions (as an interpreter's or a solver's dispatch does), in turn: sixteen
 * chains that share malloc's return address, stack and frame pointers and part only at
 * the caller's return address, more than a set of the walk cache keeps side by side.
 * Each caller's chain must hit its own rule on every call, from the cache. Marked lines:
 * SITE make, CALLER 0..15, DISPATCH. HOW: the call that allocates: 0 malloc, 1 realloc of
 * NULL, 2 aligned_alloc (the general path, which finds sites in the same caches; the NULL
 * is one the compiler does not know, as it makes realloc of a known NULL a malloc).
 * RELOAD: at that round, load a library (modules change) and allocate from a new site, so
 * the rules' addresses are made anew (the walks made before no longer count).
 *
 *   dispatch ROUNDS [HOW [RELOAD]]   prints "sum=<n>" */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>

#include "callers.h"

static int how;
static char *volatile nothing; /* NULL */

NOINLINE static char *make(int n)
{
    size_t z = (size_t)n; /* one line: the three calls are one site */
    char *p = how == 0 ? malloc(z) : how == 1 ? realloc(nothing, z) : aligned_alloc(16, z); /* SITE make */
    p[0] = (char)n;
    return p;
}

CALLER(0)  /* CALLER 0 */
CALLER(1)  /* CALLER 1 */
CALLER(2)  /* CALLER 2 */
CALLER(3)  /* CALLER 3 */
CALLER(4)  /* CALLER 4 */
CALLER(5)  /* CALLER 5 */
CALLER(6)  /* CALLER 6 */
CALLER(7)  /* CALLER 7 */
CALLER(8)  /* CALLER 8 */
CALLER(9)  /* CALLER 9 */
CALLER(10) /* CALLER 10 */
CALLER(11) /* CALLER 11 */
CALLER(12) /* CALLER 12 */
CALLER(13) /* CALLER 13 */
CALLER(14) /* CALLER 14 */
CALLER(15) /* CALLER 15 */

static char *(*const callers[16])(int) = {
    from_0, from_1, from_2,  from_3,  from_4,  from_5,  from_6,  from_7,
    from_8, from_9, from_10, from_11, from_12, from_13, from_14, from_15};

NOINLINE static long dispatch(int k)
{
    char *p = callers[k](24); /* DISPATCH */
    long v = p[0];
    free(p);
    return v;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 1000, sum = 0;
    how = argc > 2 ? atoi(argv[2]) : 0;
    long reload = argc > 3 ? atol(argv[3]) : -1;
    for (long r = 0; r < rounds; r++) {
        if (r == reload) {
            if (!dlopen("libm.so.6", RTLD_NOW))
                return 1;
            free(malloc(1));
        }
        for (int k = 0; k < 16; k++)
            sum += dispatch(k);
    }
    printf("sum=%ld\n", sum);
    return 0;
}
