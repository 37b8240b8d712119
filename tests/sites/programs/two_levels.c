/* A dispatch under a dispatch: sixteen callers of one allocating helper, each called by
 * five outer functions, all from one stack depth (80 chains that share malloc's return
 * address, stack and frame pointers). The walk cache parts a crowded start's walks at one
 * word, but here many walks share that word's value (the outer function's return address,
 * or the caller's): a placed run must still tell the 80 chains apart, by two words, and
 * not walk on every call. ORDER: 0 loops callers outside, outer functions inside; 1 the
 * other way (which word parts the first walks depends on it). Marked lines: SITE make,
 * CALLER 0..15, OUTER 0..4.
 *
 *   two_levels ROUNDS ORDER   prints "sum=<n>" */
#include <stdio.h>
#include <stdlib.h>

#include "callers.h"

NOINLINE static char *make(int n)
{
    char *p = malloc((size_t)n); /* SITE make */
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

#define OUTER(d)                                                                          \
    NOINLINE static long outer_##d(int k)                                                 \
    {                                                                                     \
        char *p = callers[k](24);                                                         \
        long v = p[0];                                                                    \
        free(p);                                                                          \
        return v + d;                                                                     \
    }
OUTER(0) /* OUTER 0 */
OUTER(1) /* OUTER 1 */
OUTER(2) /* OUTER 2 */
OUTER(3) /* OUTER 3 */
OUTER(4) /* OUTER 4 */

static long (*const outers[5])(int) = {outer_0, outer_1, outer_2, outer_3, outer_4};

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 1000, sum = 0;
    int order = argc > 2 ? atoi(argv[2]) : 0;
    for (long r = 0; r < rounds; r++)
        for (int i = 0; i < 16 * 5; i++) {
            int k = order ? i % 16 : i / 5, d = order ? i / 16 : i % 5;
            sum += outers[d](k);
        }
    printf("sum=%ld\n", sum);
    return 0;
}
