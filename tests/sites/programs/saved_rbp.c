/* A call chain through code without frame pointers in which rbp holds the program's own
 * data and is saved by the frames between malloc and the program's outer function: a
 * walk reads those saved words, but no frame depends on them. Marked lines: SITE make,
 * CALLER mid, OUTER outer.
 *
 *   saved_rbp ROUNDS   prints "sum=<n>" */
#include <stdio.h>
#include <stdlib.h>

#define NOINLINE __attribute__((noinline))

NOINLINE static char *make(int n)
{
    /* rbp is this function's to use: its caller's value (data) is saved on entry */
    __asm__ volatile("" ::: "rbp");
    char *p = malloc((size_t)n); /* SITE make */
    p[0] = (char)n;
    return p;
}

NOINLINE static char *mid(int n)
{
    /* rbp holds data when make is called: a value that changes with every call */
    __asm__ volatile("mov %0, %%rbp" ::"r"((long)n * 7919) : "rbp");
    char *p = make(n); /* CALLER mid */
    p[0] ^= 'm';
    return p;
}

NOINLINE static long outer(int n)
{
    char *p = mid(n); /* OUTER outer */
    long v = p[0];
    free(p);
    return v;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1000;
    long sum = 0;
    for (int i = 0; i < rounds; i++)
        sum += outer(16 + i % 64);
    printf("sum=%ld\n", sum);
    return 0;
}
