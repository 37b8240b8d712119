/* Where pages are: move_pages(2) and mbind(2) through syscall(2), so no libnuma is needed. */
#ifndef NUMA_PAGES_H
#define NUMA_PAGES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_NODES 8

/* Counts of the pages of [p, p+n) per node; counts[MAX_NODES] collects errors (negative status). */
static int pages_per_node(const void *p, size_t n, long counts[MAX_NODES + 1])
{
    long ps = sysconf(_SC_PAGESIZE);
    uintptr_t first = ((uintptr_t)p + ps - 1) & ~(uintptr_t)(ps - 1); /* whole pages of the object only */
    uintptr_t end = ((uintptr_t)p + n) & ~(uintptr_t)(ps - 1);
    size_t npages = end > first ? (end - first) / ps : 0;
    void **pages = malloc(npages * sizeof *pages);
    int *status = malloc(npages * sizeof *status);
    if (!pages || !status)
        return -1;
    for (size_t i = 0; i < npages; i++)
        pages[i] = (void *)(first + i * ps);
    for (int i = 0; i <= MAX_NODES; i++)
        counts[i] = 0;
    /* nodes == NULL: only report each page's node in status[]. */
    long r = syscall(SYS_move_pages, 0, npages, pages, NULL, status, 0);
    if (r != 0) {
        perror("move_pages");
        return -1;
    }
    for (size_t i = 0; i < npages; i++)
        counts[status[i] >= 0 && status[i] < MAX_NODES ? status[i] : MAX_NODES]++;
    free(pages);
    free(status);
    return (int)npages;
}

/* "NAME pages=N node0=.. node1=.. other=..": one line per object, parsed by the test. */
static int print_object(const char *name, const void *p, size_t n)
{
    long counts[MAX_NODES + 1];
    int npages = pages_per_node(p, n, counts);
    if (npages < 0)
        return -1;
    printf("object %s addr=%p pages=%d node0=%ld node1=%ld other=%ld\n", name, p, npages, counts[0],
           counts[1], npages - counts[0] - counts[1]);
    return 0;
}

#endif
