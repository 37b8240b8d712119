/* Capacity-tier workload with a known answer: a small hot table updated at random many
 * times, and big cold arrays written once and read back rarely.
 *
 *     hotcold HOT_MIB COLD_MIB ROUNDS
 *
 * Hot: one table (its own call site), HOT_MIB, read-modify-written at random positions,
 * 2^21 updates per round. Cold: COLD_MIB in eight arrays from one call site ("input",
 * read back one slice per round) plus a log of the same size from another ("history",
 * written once, never read). Each cold element read is checked against the value written
 * (the program counts mismatches: must be 0), and the last line is a checksum of the hot
 * table and the cold reads, the same in every run whatever memory holds the data. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define UPDATES_PER_ROUND (1u << 21)
#define COLD_ARRAYS 8

static uint64_t mix(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static uint64_t *cold_array(size_t n, uint64_t seed)
{
    uint64_t *a = malloc(n * sizeof *a);               /* cold: input arrays */
    if (!a)
        abort();
    for (size_t j = 0; j < n; j++)
        a[j] = mix(seed + j);
    return a;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: %s HOT_MIB COLD_MIB ROUNDS\n", argv[0]);
        return 2;
    }
    size_t hot_n = (size_t)atol(argv[1]) << 17;          /* MiB / 8 bytes */
    size_t cold_n = ((size_t)atol(argv[2]) << 17) / 2 / COLD_ARRAYS;
    int rounds = atoi(argv[3]);

    uint64_t *hot = malloc(hot_n * sizeof *hot);         /* hot: the table */
    if (!hot)
        abort();
    for (size_t i = 0; i < hot_n; i++)
        hot[i] = i;

    uint64_t *input[COLD_ARRAYS];
    for (int k = 0; k < COLD_ARRAYS; k++)
        input[k] = cold_array(cold_n, (uint64_t)k << 40);
    uint64_t *history = malloc(cold_n * COLD_ARRAYS * sizeof *history);  /* cold: log */
    if (!history)
        abort();
    for (size_t j = 0; j < cold_n * COLD_ARRAYS; j++)
        history[j] = mix(j) ^ 0x5555;

    uint64_t state = 88172645463325252ull, cold_sum = 0, errors = 0;
    size_t slice = cold_n / 4;
    for (int r = 0; r < rounds; r++) {
        for (unsigned u = 0; u < UPDATES_PER_ROUND; u++) {
            state ^= state << 13, state ^= state >> 7, state ^= state << 17;
            size_t i = state % hot_n;
            hot[i] = hot[i] * 0x9e3779b97f4a7c15ull + (uint64_t)r;
        }
        int k = r % COLD_ARRAYS;                         /* a rare read of cold data */
        size_t from = (size_t)(r / COLD_ARRAYS % 4) * slice;
        for (size_t j = from; j < from + slice; j++) {
            uint64_t v = input[k][j];
            errors += v != mix(((uint64_t)k << 40) + j);
            cold_sum += v;
        }
    }
    uint64_t hot_sum = 0;
    for (size_t i = 0; i < hot_n; i++)
        hot_sum = hot_sum * 31 + hot[i];
    printf("cold read errors %llu\n", (unsigned long long)errors);
    printf("checksum %016llx %016llx %016llx\n", (unsigned long long)hot_sum,
           (unsigned long long)cold_sum, (unsigned long long)history[cold_n]);
    return errors != 0;
}
