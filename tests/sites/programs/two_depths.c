/* One allocating helper with eight callers, dispatched in alternation from two stack
 * depths, in PADS steps: each step's two depths are new (16 bytes deeper than the last
 * step's, the second 8 KiB and some more below the first), so in a few steps (1 in 64 each) the two
 * starts (malloc's return address and stack pointer in the helper) pick one walk-cache
 * set. Two crowded starts in one set must each be recorded, rather than keep each other
 * from it and walk on every call. Marked lines: SITE make, CALLER 0..7.
 *
 *   two_depths ROUNDS PADS   prints "sum=<n>" */
#include <alloca.h>
#include <stdio.h>
#include <stdlib.h>

#include "callers.h"

NOINLINE static char *make(int n)
{
    char *p = malloc((size_t)n); /* SITE make */
    p[0] = (char)n;
    return p;
}

CALLER(0) /* CALLER 0 */
CALLER(1) /* CALLER 1 */
CALLER(2) /* CALLER 2 */
CALLER(3) /* CALLER 3 */
CALLER(4) /* CALLER 4 */
CALLER(5) /* CALLER 5 */
CALLER(6) /* CALLER 6 */
CALLER(7) /* CALLER 7 */

static char *(*const callers[8])(int) = {from_0, from_1, from_2, from_3,
                                         from_4, from_5, from_6, from_7};

NOINLINE static long dispatch(int k)
{
    char *p = callers[k](24);
    long v = p[0];
    free(p);
    return v;
}

/* dispatch(k) `pad` bytes deeper */
NOINLINE static long padded(int pad, int k)
{
    volatile char *x = alloca((size_t)pad + 1);
    x[0] = 1;
    long v = dispatch(k);
    __asm__ volatile("" ::"r"(x) : "memory");
    return v;
}

int main(int argc, char **argv)
{
    long rounds = argc > 1 ? atol(argv[1]) : 100, sum = 0;
    int pads = argc > 2 ? atoi(argv[2]) : 600;
    for (int pad = 16; pad <= 16 * pads; pad += 16)
        for (long r = 0; r < rounds; r++)
            for (int k = 0; k < 8; k++)
                sum += padded(pad, k) + padded(pad + 8192 + 16 * (pad * 7919 % 509), k);
    printf("sum=%ld\n", sum);
    return 0;
}
