/* Where does a block live? Asked of the kernel, not of memplace:
 * get_mempolicy(MPOL_F_ADDR) for the binding, move_pages for the node of the page,
 * /proc/self/maps for the file that backs it. Prints "policy=<mode>:<nodes> node=<n> file=<path|->". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *mode_name(int m)
{
    static const char *names[] = {"default", "preferred", "bind", "interleave", "local",
                                  "preferred-many", "weighted-interleave"};
    return m >= 0 && m < 7 ? names[m] : "?";
}

static void describe(const char *label, void *p)
{
    int mode = -1;
    unsigned long mask[16] = {0};
    syscall(SYS_get_mempolicy, &mode, mask, 1024 + 1, p, 2 /* MPOL_F_ADDR */);
    void *page = (void *)((unsigned long)p & ~4095ul);
    int node = -99;
    syscall(SYS_move_pages, 0, 1, &page, NULL, &node, 0);
    char file[512] = "-";
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        char path[512] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %511[^\n]", &lo, &hi, path) >= 2 &&
            (unsigned long)p >= lo && (unsigned long)p < hi && path[0] == '/')
            snprintf(file, sizeof file, "%s", path);
    }
    if (f) fclose(f);
    char nodes[64] = "";
    for (int n = 0; n < 64; n++)
        if (mask[0] >> n & 1)
            snprintf(nodes + strlen(nodes), sizeof nodes - strlen(nodes), "%s%d", nodes[0] ? "," : "", n);
    printf("%s policy=%s:%s node=%d file=%s\n", label, mode_name(mode), nodes, node, file);
}
