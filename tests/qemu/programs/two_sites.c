/* Three malloc call sites; the test's policy sends site A to node 0 and site B to node 1,
 * and leaves site C to the default device. Prints where each object's pages are.
 *
 * two_sites [PREFER]: with PREFER, the process policy is MPOL_PREFERRED on node PREFER first,
 * so memory that memplace does not bind follows PREFER (a control for the rules). */
#include <string.h>

#include "numa_pages.h"

#define MPOL_PREFERRED 1
#define OBJECT_BYTES (4u << 20)

/* noinline and a use after malloc: each call site stays a real call in its own function. */
__attribute__((noinline)) char *alloc_a(size_t n)
{
    char *p = malloc(n); /* SITE A */
    if (p)
        memset(p, 0xa, n);
    return p;
}

__attribute__((noinline)) char *alloc_b(size_t n)
{
    char *p = malloc(n); /* SITE B */
    if (p)
        memset(p, 0xb, n);
    return p;
}

__attribute__((noinline)) char *alloc_c(size_t n)
{
    char *p = malloc(n); /* SITE C */
    if (p)
        memset(p, 0xc, n);
    return p;
}

int main(int argc, char **argv)
{
    if (argc > 1) {
        unsigned long mask = 1UL << atoi(argv[1]);
        if (syscall(SYS_set_mempolicy, MPOL_PREFERRED, &mask, sizeof mask * 8) != 0) {
            perror("set_mempolicy");
            return 1;
        }
    }
    char *a = alloc_a(OBJECT_BYTES), *b = alloc_b(OBJECT_BYTES), *c = alloc_c(OBJECT_BYTES);
    if (!a || !b || !c) {
        fprintf(stderr, "malloc failed\n");
        return 1;
    }
    if (print_object("A", a, OBJECT_BYTES) || print_object("B", b, OBJECT_BYTES) ||
        print_object("C", c, OBJECT_BYTES))
        return 1;
    free(a);
    free(b);
    free(c);
    return 0;
}
