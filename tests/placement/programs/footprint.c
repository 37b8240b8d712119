/* Allocate one small block, then print the process's resident memory, its transparent
 * huge pages (sums of /proc/self/smaps "Rss:" and "AnonHugePages:", kB) and whether THP is
 * allowed for it (/proc/self/status "THP_enabled:", -1 when the kernel does not say). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void)
{
    char *p = malloc(64);                        /* SITE small */
    if (!p)
        return 1;
    memset(p, 1, 64);
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    long rss = 0, huge = 0, kb, thp = -1;
    while (f && fgets(line, sizeof line, f)) {
        if (sscanf(line, "Rss: %ld kB", &kb) == 1)
            rss += kb;
        else if (sscanf(line, "AnonHugePages: %ld kB", &kb) == 1)
            huge += kb;
    }
    FILE *s = fopen("/proc/self/status", "r");
    while (s && fgets(line, sizeof line, s))
        sscanf(line, "THP_enabled: %ld", &thp);
    printf("rss %ld kB huge %ld kB thp %ld\n", rss, huge, thp);
    free(p);
    return 0;
}
