/* A crowded start and another start of the same return address: sixteen callers reach
 * one helper, `make`, through `via` (so their chains part two frames above malloc's
 * caller, at the return address into from_k), and `bulky` calls `make` directly from a
 * frame full of data that changes every round. A crowded start's parting word is found
 * by where the start is (its return address and stack pointer), not by its return
 * address alone: at bulky's start, the offset of the dispatch's parting word lies in
 * bulky's data. Marked lines: SITE make, VIA, CALLER 0..15, BULKY.
 *
 *   crowd_and_bulky ROUNDS   prints "sum=<n>" */
#include <stdio.h>
#include <stdlib.h>

#define CALLEE via /* from_k calls via, which calls make */
#include "callers.h"

static volatile long sink;

NOINLINE static char *make(int n)
{
    char *p = malloc((size_t)n); /* SITE make */
    p[0] = (char)n;
    return p;
}

NOINLINE static char *via(int n)
{
    char *p = make(n); /* VIA */
    sink += p[0];
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

/* a frame of 4 KiB of the round's data around its call of make */
NOINLINE static long bulky(long r)
{
    volatile long data[512];
    for (int i = 0; i < 512; i++)
        data[i] = r * 512 + i;
    char *p = make(24); /* BULKY */
    long v = p[0] + data[r & 511] - (r * 512 + (r & 511));
    free(p);
    return v;
}

NOINLINE static long dispatch(int k)
{
    char *p = callers[k](24);
    long v = p[0];
    free(p);
    return v;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 1000, sum = 0;
    for (long r = 0; r < rounds; r++) {
        for (int k = 0; k < 16; k++)
            sum += dispatch(k);
        sum += bulky(r);
    }
    printf("sum=%ld\n", sum);
    return 0;
}
