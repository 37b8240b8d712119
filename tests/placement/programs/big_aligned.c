/* Blocks aligned above 64 KiB (2 MiB, 1 MiB) from one site, freed and made again, and a
 * realloc of one: each must be aligned, bound where the rule says, and usable. */
#include "where.h"
#include <malloc.h>
#include <stdint.h>

int main(void)
{
    int bad = 0;
    for (int round = 0; round < 50; round++) {
        void *p = NULL;
        if (posix_memalign(&p, 2u << 20, 3u << 20) != 0) return 2;   /* SITE big */
        void *q = aligned_alloc(1u << 20, 1u << 20);                  /* SITE big2 */
        bad += ((uintptr_t)p & ((2u << 20) - 1)) != 0 || ((uintptr_t)q & ((1u << 20) - 1)) != 0;
        bad += malloc_usable_size(p) < (3u << 20);
        memset(p, 7, 3u << 20);
        memset(q, 8, 1u << 20);
        if (round == 49) {
            describe("big", p);
            describe("big2", q);
            p = realloc(p, 5u << 20);
            bad += ((char *)p)[(3u << 20) - 1] != 7;
        }
        free(p);
        free(q);
    }
    printf("bad=%d\n", bad);
    return bad != 0;
}
