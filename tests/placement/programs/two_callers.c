/* One allocation site reached from two callers whose frames are alike, so both calls
 * leave the stack pointer at the same place: only the second frame tells them apart.
 * Calls alternate, ROUNDS each; every block is kept until the end. */
#include <stdio.h>
#include <stdlib.h>

#define ROUNDS 5000

__attribute__((noinline)) static void *allocate(size_t n)
{
    void *p = malloc(n);                                       /* SITE tc_alloc */
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

__attribute__((noinline)) static void *first(size_t n)
{
    void *p = allocate(n);                                     /* SITE tc_first */
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

__attribute__((noinline)) static void *second(size_t n)
{
    void *p = allocate(n);                                     /* SITE tc_second */
    __asm__ volatile("" : : "r"(p) : "memory");
    return p;
}

int main(void)
{
    static void *kept[2 * ROUNDS];
    for (int i = 0; i < ROUNDS; i++) {
        kept[2 * i] = first(64);
        kept[2 * i + 1] = second(64);
    }
    for (int i = 0; i < 2 * ROUNDS; i++)
        free(kept[i]);
    puts("done");
    return 0;
}
