/* Two call sites in main (one per line, so FILE:LINE rules can tell them apart), a third
 * in a helper, and one C-library allocation (strdup). Each block is touched, then
 * described by the kernel. */
#include "where.h"

__attribute__((noinline)) static char *helper_alloc(size_t n)
{
    char *p = malloc(n);
    __asm__ volatile("" ::: "memory"); /* keep the call a call, not a tail jump */
    return p;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 0) : (1u << 20);
    char *hot = malloc(n);                 /* SITE hot */
    char *cold = malloc(n);                /* SITE cold */
    char *helped = helper_alloc(n);
    char *dup = strdup("duplicated by libc");
    memset(hot, 1, n), memset(cold, 2, n), memset(helped, 3, n);
    describe("hot", hot);
    describe("cold", cold);
    describe("helper", helped);
    describe("strdup", dup);
    free(hot), free(cold), free(helped), free(dup);
    return 0;
}
