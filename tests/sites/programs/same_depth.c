/* One allocating helper called, in alternation and from the same stack depth, by two
 * callers (so the return address, stack and frame pointers at malloc are the same for
 * both, and only the words further up differ), and each caller by two outer functions.
 * A placed run must tell all four chains apart on every call, not reuse the walk of the
 * previous one. HOW: the call that allocates: 0 malloc, 1 realloc of NULL, 2
 * aligned_alloc. DEEP 1: instead, only the chain a-x, called by two top functions in
 * alternation (chains of four frames that differ only in the fourth). Marked lines:
 * TOP p|q here, SITE make, CALLER a|b, OUTER x|y in four_chains.h.
 *
 *   same_depth ROUNDS [HOW [DEEP]]   prints "sum=<n>" */
#include <stdio.h>
#include <stdlib.h>

#include "four_chains.h"

NOINLINE static long top_p(void)
{
    long v = outer_x(24, 0); /* TOP p */
    return 2 * v;
}

NOINLINE static long top_q(void)
{
    long v = outer_x(24, 0); /* TOP q */
    return 2 * v + 1;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    how = argc > 2 ? atoi(argv[2]) : 0;
    long sum = 0;
    if (argc > 3 && atoi(argv[3]) == 1) {
        for (int i = 0; i < rounds; i++)
            sum += i & 1 ? top_q() : top_p();
        printf("sum=%ld\n", sum);
        return 0;
    }
    for (int i = 0; i < rounds; i++)
        for (int k = 0; k < 4; k++) /* x-a, x-b, y-a, y-b, in turn */
            sum += k < 2 ? outer_x(24 + k, k & 1) : outer_y(24 + k, k & 1);
    printf("sum=%ld\n", sum);
    return 0;
}
