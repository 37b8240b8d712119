/* mbind_node NODE MIB: map MIB MiB, bind it to NODE before the first touch, touch it, and
 * report with move_pages where its pages are. Exit 0 when all are on NODE. */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>

#include "numa_pages.h"

#define MPOL_BIND 2

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: mbind_node NODE MIB\n");
        return 2;
    }
    int node = atoi(argv[1]);
    size_t n = (size_t)atol(argv[2]) << 20;
    char *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    unsigned long mask = 1UL << node;
    if (syscall(SYS_mbind, p, n, MPOL_BIND, &mask, sizeof mask * 8, 0) != 0) {
        printf("mbind node %d: %s\n", node, strerror(errno));
        return 1;
    }
    memset(p, 0x5a, n);
    long counts[MAX_NODES + 1];
    if (print_object("mapping", p, n) != 0 || pages_per_node(p, n, counts) < 0)
        return 1;
    return counts[node] == (long)(n / sysconf(_SC_PAGESIZE)) ? 0 : 1;
}
