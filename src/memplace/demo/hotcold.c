/* memplace's built-in example: a small "solver" with hot and cold data.
 *
 * Hot: the grid and the two vectors of an iterative stencil, touched on every sweep.
 * Cold: an input buffer read once and a history log written once. Small bookkeeping
 * allocations churn in between. At the end each array reports where the kernel says its
 * memory is: the NUMA policy of its mapping (get_mempolicy), the node of its first page
 * (move_pages) and the file behind it (/proc/self/maps) - checked, not assumed. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define HOT (2u << 20)   /* doubles per hot array: 16 MiB each */
#define COLD (8u << 20)  /* doubles per cold array: 64 MiB each */

static void where(const char *name, void *p)
{
    int mode = -1;
    unsigned long mask[16] = {0};
    syscall(SYS_get_mempolicy, &mode, mask, 1025, p, 2 /* MPOL_F_ADDR */);
    void *page = (void *)((unsigned long)p & ~4095ul);
    int node = -1;
    syscall(SYS_move_pages, 0, 1, &page, NULL, &node, 0);
    char file[600] = "-", line[1024];
    FILE *maps = fopen("/proc/self/maps", "r");
    while (maps && fgets(line, sizeof line, maps)) {
        unsigned long lo, hi;
        char path[512] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %511[^\n]", &lo, &hi, path) >= 2 &&
            (unsigned long)p >= lo && (unsigned long)p < hi && path[0] == '/')
            snprintf(file, sizeof file, "%s", path);
    }
    if (maps)
        fclose(maps);
    static const char *modes[] = {"default", "preferred", "bind", "interleave", "local"};
    printf("where %-8s policy=%s nodemask=0x%lx node=%d file=%s\n", name,
           mode >= 0 && mode < 5 ? modes[mode] : "?", mask[0], node, file);
}

static double *vector(size_t n, double value)
{
    double *v = malloc(n * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = value;
    return v;
}

int main(void)
{
    double *input = malloc(COLD * sizeof *input);       /* cold: read once */
    for (size_t i = 0; i < COLD; i++)
        input[i] = (double)(i % 1000) / 1000.0;

    double *grid = malloc(HOT * sizeof *grid);          /* hot */
    double *next = malloc(HOT * sizeof *next);          /* hot */
    double *rhs = vector(HOT, 0.5);                     /* hot, through a helper */
    for (size_t i = 0; i < HOT; i++)
        grid[i] = input[i * (COLD / HOT)];

    double *history = malloc(COLD * sizeof *history);   /* cold: written once */
    double residual = 0;
    for (int sweep = 0; sweep < 100; sweep++) { /* enough CPU time for ~100 access samples */
        residual = 0;
        for (size_t i = 1; i + 1 < HOT; i++) {
            next[i] = 0.25 * (grid[i - 1] + 2 * grid[i] + grid[i + 1]) + 1e-3 * rhs[i];
            residual += (next[i] - grid[i]) * (next[i] - grid[i]);
        }
        double *t = grid;
        grid = next;
        next = t;
        char *note = malloc(64);                        /* small bookkeeping churn */
        snprintf(note, 64, "sweep %d residual %.3e", sweep, residual);
        free(note);
    }
    for (size_t i = 0; i < COLD; i++)
        history[i] = input[i] * 0.5;

    printf("residual %.6e\n", residual);
    where("grid", grid);
    where("next", next);
    where("rhs", rhs);
    where("input", input);
    where("history", history);
    free(input), free(grid), free(next), free(rhs), free(history);
    return 0;
}
