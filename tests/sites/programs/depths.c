/* The four chains of same_depth.c (an allocating helper, two callers, two outer
 * functions), each called at the bottom of a recursion DEPTHS calls deep, for every depth
 * in turn: the same call chain met from many depths of the stack, as an interpreter's or
 * a recursive solver's allocations are. A placed run must count every chain's rule
 * exactly, and (without frame pointers) walk each chain about once, not once per depth.
 * HOW: 0 malloc, 1 realloc of NULL (four_chains.h: the chains and their marked lines).
 *
 *   depths ROUNDS DEPTHS [HOW]   prints "sum=<n>" */
#include <stdio.h>
#include <stdlib.h>

#include "four_chains.h"

/* d frames of its own above the chain; the addition after the call keeps each frame */
NOINLINE static long descend(int d, int k)
{
    if (d == 0)
        return k < 2 ? outer_x(24 + k, k & 1) : outer_y(24 + k, k & 1);
    volatile int pad = d;
    return descend(d - 1, k) + pad - d;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 10;
    int depths = argc > 2 ? atoi(argv[2]) : 100;
    how = argc > 3 ? atoi(argv[3]) : 0;
    long sum = 0;
    for (int i = 0; i < rounds; i++)
        for (int d = 0; d < depths; d++)
            for (int k = 0; k < 4; k++) /* x-a, x-b, y-a, y-b, in turn */
                sum += descend(d, k);
    printf("sum=%ld\n", sum);
    return 0;
}
