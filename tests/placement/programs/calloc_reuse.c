/* calloc must return zeros on memory a device heap took back and gave out again: blocks of
 * 64 KiB-4 MiB allocated, filled with 0xab and freed at random, with pauses (mimalloc
 * purges freed ranges once its delay is over, so later blocks span purged and unpurged
 * ranges); every calloc'd block is checked. Prints the callocs and how many were not zero;
 * exits 1 when any was not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SLOTS 64

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 1500;
    unsigned seed = 7;
    char *block[SLOTS] = {0};
    long callocs = 0, not_zero = 0;
    for (int r = 0; r < rounds; r++) {
        int i = rand_r(&seed) % SLOTS;
        free(block[i]);
        size_t size = (64u << 10) + (size_t)(rand_r(&seed) % (4 << 20));
        if (rand_r(&seed) & 1) {
            block[i] = calloc(1, size);
            callocs++;
            for (size_t k = 0; k < size; k += 256)
                if (block[i][k]) {
                    not_zero++;
                    break;
                }
        } else {
            block[i] = malloc(size);
        }
        memset(block[i], 0xab, size);
        if (r % 40 == 0)
            nanosleep(&(struct timespec){0, 30000000}, NULL);
    }
    printf("callocs %ld not zero %ld\n", callocs, not_zero);
    return not_zero != 0;
}
