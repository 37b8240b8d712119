/* One allocating helper called by sixteen callers from the same stack depth, through a
 * table of functions (as an interpreter's or a solver's dispatch does), in turn: sixteen
 * chains that share malloc's return address, stack and frame pointers and part only at
 * the caller's return address, more than a set of the walk cache keeps side by side.
 * Each caller's chain must hit its own rule on every call, from the cache. Marked lines:
 * SITE make, CALLER 0..15, DISPATCH. HOW: the call that allocates: 0 malloc, 1 realloc of
 * NULL (the general path, which finds sites in the same caches).
 *
 *   dispatch ROUNDS [HOW]   prints "sum=<n>" */
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

static int how;

NOINLINE static char *make(int n)
{
    char *p = how ? realloc(NULL, (size_t)n) : malloc((size_t)n); /* SITE make */
    p[0] = (char)n;
    return p;
}

/* not a tail call: the caller's frame stays on the stack */
#define CALLER(k)                                                                         \
    NOINLINE static char *from_##k(int n)                                                 \
    {                                                                                     \
        char *p = make(n + k);                                                            \
        p[0] ^= (char)(k + 1);                                                            \
        return p;                                                                         \
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
    for (long r = 0; r < rounds; r++)
        for (int k = 0; k < 16; k++)
            sum += dispatch(k);
    printf("sum=%ld\n", sum);
    return 0;
}
