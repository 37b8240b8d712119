/* Blocks of every small size, plain and aligned, allocated and freed in rounds so that
 * mimalloc's pages are emptied and reused for other sizes: every block keeps its whole
 * usable size to itself (a wrong size on free would hand two blocks the same bytes), and
 * `free` gives every byte back (the stats' live bytes return to zero).
 * Prints "bad=<blocks whose bytes changed>" and the number of blocks. */
#include <malloc.h>
#include "placed.h"

#define N 20000
#define ROUNDS 6

static void *block[N];
static size_t length[N];

int main(void)
{
    setvbuf(stdout, NULL, _IONBF, 0); /* no stdio buffer left live at exit */
    long bad = 0, made = 0;
    unsigned seed = 12345;
    for (int round = 0; round < ROUNDS; round++) {
        for (int i = 0; i < N; i++) {
            seed = seed * 1103515245u + 12345u;
            size_t n = 1 + (seed >> 8) % (round % 2 ? 1100 : 300);
            void *p;
            if ((seed >> 4) % 7 == 0 && posix_memalign(&p, (size_t)32 << (seed % 4), n) == 0)
                ;
            else if ((seed >> 4) % 7 == 1)
                p = calloc(1, n);
            else
                p = malloc(n);                          /* SITE size_mix_malloc */
            block[i] = p;
            length[i] = malloc_usable_size(p);
            fill(p, length[i], (unsigned)i + round);
            made++;
        }
        for (int i = 0; i < N; i++)
            bad += !intact(block[i], length[i], (unsigned)i + round);
        /* free most in a scattered order, so pages empty and are reused next round */
        for (int i = 0; i < N; i++) {
            int j = (int)(((long)i * 7919) % N);
            if (block[j] && (round == ROUNDS - 1 || j % 10)) {
                free(block[j]);
                block[j] = NULL;
            }
        }
        for (int i = 0; i < N; i++)
            if (block[i]) {
                bad += !intact(block[i], length[i], (unsigned)i + round);
                free(block[i]);
                block[i] = NULL;
            }
    }
    printf("bad=%ld blocks=%ld\n", bad, made);
    return bad != 0;
}
