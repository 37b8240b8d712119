/* Callers of one allocating helper, `make(int)` (or CALLEE, defined before), each a
 * function of its own: CALLER(k) defines from_k, which calls it and keeps its frame on
 * the stack (not a tail call), so that each caller's chain is told apart by its return
 * address. */
#define NOINLINE __attribute__((noinline))
#ifndef CALLEE
#define CALLEE make
#endif

#define CALLER(k)                                                                         \
    NOINLINE static char *from_##k(int n)                                                 \
    {                                                                                     \
        char *p = CALLEE(n + k);                                                          \
        p[0] ^= (char)(k + 1);                                                            \
        return p;                                                                         \
    }
