/* An allocation-heavy workload in the manner of cfrac: arbitrary-precision integers
 * whose every intermediate result is a fresh heap block, reached through a few layers of
 * helpers (so call sites have 1-4 frames that matter), with real arithmetic between the
 * allocations. Written for memplace's benchmarks.
 *
 *   bignum ITERATIONS [WAYS]   prints a checksum of the work
 *
 * With WAYS (1-32), num_mod's additions and subtractions go, in turn, through WAYS
 * wrappers from a table of functions, as an interpreter's or a solver's dispatch does: up
 * to 64 more call chains, which part only at the wrapper's frame (the walk cache's worst
 * case). The checksum is the same.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { int n; uint32_t d[]; } num; /* little-endian base 2^32 digits */

#define NOINLINE __attribute__((noinline))

NOINLINE static num *num_alloc(int n)
{
    num *x = malloc(sizeof(num) + (size_t)(n ? n : 1) * sizeof(uint32_t));
    x->n = n;
    return x;
}

static num *trim(num *x)
{
    while (x->n > 0 && x->d[x->n - 1] == 0)
        x->n--;
    return x;
}

NOINLINE static num *num_from(uint64_t v)
{
    num *x = num_alloc(2);
    x->d[0] = (uint32_t)v, x->d[1] = (uint32_t)(v >> 32);
    return trim(x);
}

NOINLINE static num *num_copy(const num *a)
{
    num *x = num_alloc(a->n);
    memcpy(x->d, a->d, (size_t)a->n * sizeof(uint32_t));
    return x;
}

NOINLINE static num *num_add(const num *a, const num *b)
{
    int n = (a->n > b->n ? a->n : b->n) + 1;
    num *x = num_alloc(n);
    uint64_t c = 0;
    for (int i = 0; i < n; i++) {
        c += (uint64_t)(i < a->n ? a->d[i] : 0) + (i < b->n ? b->d[i] : 0);
        x->d[i] = (uint32_t)c;
        c >>= 32;
    }
    return trim(x);
}

/* a - b, a >= b */
NOINLINE static num *num_sub(const num *a, const num *b)
{
    num *x = num_alloc(a->n);
    int64_t c = 0;
    for (int i = 0; i < a->n; i++) {
        c += (int64_t)a->d[i] - (i < b->n ? b->d[i] : 0);
        x->d[i] = (uint32_t)c;
        c = c < 0 ? -1 : 0;
    }
    return trim(x);
}

NOINLINE static num *num_mul(const num *a, const num *b)
{
    num *x = num_alloc(a->n + b->n);
    memset(x->d, 0, (size_t)x->n * sizeof(uint32_t));
    for (int i = 0; i < a->n; i++) {
        uint64_t c = 0;
        for (int j = 0; j < b->n; j++) {
            c += (uint64_t)a->d[i] * b->d[j] + x->d[i + j];
            x->d[i + j] = (uint32_t)c;
            c >>= 32;
        }
        x->d[i + b->n] = (uint32_t)c;
    }
    return trim(x);
}

/* The dispatch: wrappers that keep their frame (not tail calls), one per chain. */
static unsigned long wrapped;
#define WRAPPERS(k)                                                                       \
    NOINLINE static num *add_##k(const num *a, const num *b)                             \
    {                                                                                     \
        num *x = num_add(a, b);                                                           \
        wrapped += (unsigned)x->n;                                                        \
        return x;                                                                         \
    }                                                                                     \
    NOINLINE static num *sub_##k(const num *a, const num *b)                             \
    {                                                                                     \
        num *x = num_sub(a, b);                                                           \
        wrapped += (unsigned)x->n;                                                        \
        return x;                                                                         \
    }
/* one per line: a site is a line */
WRAPPERS(0)
WRAPPERS(1)
WRAPPERS(2)
WRAPPERS(3)
WRAPPERS(4)
WRAPPERS(5)
WRAPPERS(6)
WRAPPERS(7)
WRAPPERS(8)
WRAPPERS(9)
WRAPPERS(10)
WRAPPERS(11)
WRAPPERS(12)
WRAPPERS(13)
WRAPPERS(14)
WRAPPERS(15)
WRAPPERS(16)
WRAPPERS(17)
WRAPPERS(18)
WRAPPERS(19)
WRAPPERS(20)
WRAPPERS(21)
WRAPPERS(22)
WRAPPERS(23)
WRAPPERS(24)
WRAPPERS(25)
WRAPPERS(26)
WRAPPERS(27)
WRAPPERS(28)
WRAPPERS(29)
WRAPPERS(30)
WRAPPERS(31)
#define MAX_WAYS 32
#define W(k) add_##k
static num *(*const adders[MAX_WAYS])(const num *, const num *) = {
    W(0),  W(1),  W(2),  W(3),  W(4),  W(5),  W(6),  W(7),  W(8),  W(9),  W(10),
    W(11), W(12), W(13), W(14), W(15), W(16), W(17), W(18), W(19), W(20), W(21),
    W(22), W(23), W(24), W(25), W(26), W(27), W(28), W(29), W(30), W(31)};
#undef W
#define W(k) sub_##k
static num *(*const subtractors[MAX_WAYS])(const num *, const num *) = {
    W(0),  W(1),  W(2),  W(3),  W(4),  W(5),  W(6),  W(7),  W(8),  W(9),  W(10),
    W(11), W(12), W(13), W(14), W(15), W(16), W(17), W(18), W(19), W(20), W(21),
    W(22), W(23), W(24), W(25), W(26), W(27), W(28), W(29), W(30), W(31)};
#undef W
static unsigned ways, turn; /* ways 0: no dispatch */

static num *dispatch_add(const num *a, const num *b)
{
    return ways ? adders[turn++ % ways](a, b) : num_add(a, b);
}

static num *dispatch_sub(const num *a, const num *b)
{
    return ways ? subtractors[turn++ % ways](a, b) : num_sub(a, b);
}

static int num_cmp(const num *a, const num *b)
{
    if (a->n != b->n)
        return a->n < b->n ? -1 : 1;
    for (int i = a->n - 1; i >= 0; i--)
        if (a->d[i] != b->d[i])
            return a->d[i] < b->d[i] ? -1 : 1;
    return 0;
}

/* a mod m by shift-and-subtract over small multiples: many short-lived temporaries */
NOINLINE static num *num_mod(const num *a, const num *m)
{
    num *r = num_copy(a);
    while (num_cmp(r, m) >= 0) {
        num *t = num_copy(m), *prev = NULL;
        for (;;) {
            num *t2 = dispatch_add(t, t);
            if (num_cmp(t2, r) > 0) {
                free(t2);
                break;
            }
            free(prev);
            prev = t;
            t = t2;
        }
        free(prev);
        num *r2 = dispatch_sub(r, t);
        free(r);
        free(t);
        r = r2;
    }
    return r;
}

/* (a * b) mod m */
NOINLINE static num *mulmod(const num *a, const num *b, const num *m)
{
    num *p = num_mul(a, b);
    num *r = num_mod(p, m);
    free(p);
    return r;
}

/* x^e mod m by squaring */
NOINLINE static num *powmod(const num *x, uint64_t e, const num *m)
{
    num *r = num_from(1), *b = num_mod(x, m);
    while (e) {
        if (e & 1) {
            num *t = mulmod(r, b, m);
            free(r);
            r = t;
        }
        num *t = mulmod(b, b, m);
        free(b);
        b = t;
        e >>= 1;
    }
    free(b);
    return r;
}

/* Fermat tests of consecutive odd numbers around 2^61: mostly powmod's temporaries */
int main(int argc, char **argv)
{
    long iterations = argc > 1 ? atol(argv[1]) : 200;
    ways = argc > 2 ? (unsigned)atoi(argv[2]) : 0;
    if (ways > MAX_WAYS) {
        fprintf(stderr, "bignum: WAYS %u is more than %d\n", ways, MAX_WAYS);
        return 2;
    }
    uint64_t checksum = 0, candidate = (1ull << 61) + 1;
    int primes = 0;
    for (long i = 0; i < iterations; i++, candidate += 2) {
        num *m = num_from(candidate);
        num *base = num_from(3 + (uint64_t)i % 5);
        num *r = powmod(base, candidate - 1, m);
        primes += r->n == 1 && r->d[0] == 1;
        for (int k = 0; k < r->n; k++)
            checksum = checksum * 1000003u + r->d[k];
        free(r);
        free(base);
        free(m);
    }
    printf("%d probable primes, checksum %llu\n", primes, (unsigned long long)checksum);
    return 0;
}
