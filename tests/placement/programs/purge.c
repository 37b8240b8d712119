/* Free a big block on a device, wait WAIT_MS, allocate and free small blocks for a while
 * (mimalloc purges freed memory on its allocation paths, once its delay is over), then
 * print the resident memory before the free and at the end (kB, /proc/self/statm), and how
 * much of the freed block is still in memory (kB, mincore: for a file mapping, the page
 * cache's pages of it, mapped or not). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

static long rss_kb(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f && fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = 0;
    if (f)
        fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static long cached_kb(char *at, size_t size)
{
    long page = sysconf(_SC_PAGESIZE), n = 0;
    char *from = (char *)((unsigned long)at & ~(unsigned long)(page - 1));
    size_t pages = (size_t)(at + size - from) / (size_t)page;
    unsigned char *in = malloc(pages);
    if (!in || mincore(from, pages * (size_t)page, in) != 0)
        return -1;
    for (size_t i = 0; i < pages; i++)
        n += in[i] & 1;
    free(in);
    return n * (page / 1024);
}

int main(int argc, char **argv)
{
    size_t size = 32u << 20;
    long wait_ms = strtol(argv[1], NULL, 0);
    char *big = malloc(size);                    /* SITE big */
    if (!big)
        return 1;
    memset(big, 1, size);
    __asm__ volatile("" : : "r"(big) : "memory"); /* the stores are kept */
    long before = rss_kb();
    free(big);
    struct timespec t = {wait_ms / 1000, (wait_ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
    for (int i = 0; i < 20000; i++) {
        void *p = malloc(4096 + (size_t)(i % 64) * 4096);  /* SITE small */
        memset(p, 0, 64);
        __asm__ volatile("" : : "r"(p) : "memory");
        free(p);
    }
    printf("before %ld kB after %ld kB cached %ld kB\n", before, rss_kb(), cached_kb(big, size));
    return 0;
}
