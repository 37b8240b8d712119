/* Allocate SIZE bytes from one site, touch them, and print how much of the process's
 * memory is locked (the sum of /proc/self/smaps "Locked:", kB). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
    size_t size = strtoul(argv[1], NULL, 0);
    char *p = malloc(size);                      /* SITE locked */
    if (!p)
        return 1;
    memset(p, 1, size);
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[256];
    long locked = 0, kb;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Locked: %ld kB", &kb) == 1)
            locked += kb;
    printf("locked %ld kB\n", locked);
    free(p);
    return 0;
}
