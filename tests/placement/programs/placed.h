/* Where do many blocks live? Asked of the kernel, as where.h does for one block:
 * get_mempolicy(MPOL_F_ADDR) and move_pages for NUMA binding, /proc/self/maps for the file
 * behind a block. Results go to stderr, one line per label,
 *     PLACED <label> <kind>=<count> ...
 * so that stdout stays the same with and without memplace (the tests compare it). Kinds:
 *     bind0            bound to node 0 (MPOL_BIND, mask {0}) and its page is on node 0
 *     file:<dir>       inside a shared mapping of a file in directory <dir>
 *     other            anything else (the next allocator's heap)
 * Blocks must have been written (touched) before they are described. */
#ifndef PLACED_H
#define PLACED_H
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

struct mapping { unsigned long lo, hi; char dir[512]; };
struct maps { int n; struct mapping e[2048]; };

/* The file-backed mappings of this process, now. */
static struct maps *maps_read(void)
{
    struct maps *m = calloc(1, sizeof *m);
    FILE *f = fopen("/proc/self/maps", "r");
    char line[1024];
    while (m && f && fgets(line, sizeof line, f) && m->n < 2048) {
        unsigned long lo, hi;
        char path[512] = "";
        if (sscanf(line, "%lx-%lx %*s %*s %*s %*s %511[^\n]", &lo, &hi, path) < 3 || path[0] != '/')
            continue;
        char *slash = strrchr(path, '/');
        *slash = 0;
        struct mapping *e = &m->e[m->n++];
        e->lo = lo, e->hi = hi;
        snprintf(e->dir, sizeof e->dir, "%s", path[0] ? path : "/");
    }
    if (f)
        fclose(f);
    return m;
}

static void kind_of(const struct maps *m, const void *p, char *out, size_t cap)
{
    for (int i = 0; i < m->n; i++)
        if ((unsigned long)p >= m->e[i].lo && (unsigned long)p < m->e[i].hi) {
            snprintf(out, cap, "file:%s", m->e[i].dir);
            return;
        }
    int mode = -1;
    unsigned long mask[16] = {0};
    syscall(SYS_get_mempolicy, &mode, mask, 1024 + 1, p, 2 /* MPOL_F_ADDR */);
    void *page = (void *)((uintptr_t)p & ~(uintptr_t)4095);
    int node = -1;
    syscall(SYS_move_pages, 0, 1, &page, NULL, &node, 0);
    int only0 = mask[0] == 1;
    for (int w = 1; w < 16; w++)
        only0 &= mask[w] == 0;
    snprintf(out, cap, "%s", mode == 2 /* MPOL_BIND */ && only0 && node == 0 ? "bind0" : "other");
}

/* Counts per kind, for one label. */
struct tally { int n; char kind[8][520]; long count[8]; };

static void tally_add(struct tally *t, const char *kind)
{
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->kind[i], kind) == 0) {
            t->count[i]++;
            return;
        }
    if (t->n < 8) {
        snprintf(t->kind[t->n], sizeof t->kind[0], "%s", kind);
        t->count[t->n++] = 1;
    }
}

static void tally_print(const char *label, const struct tally *t)
{
    char line[4096];
    int n = snprintf(line, sizeof line, "PLACED %s", label);
    for (int i = 0; i < t->n && n < (int)sizeof line; i++)
        n += snprintf(line + n, sizeof line - n, " %s=%ld", t->kind[i], t->count[i]);
    fprintf(stderr, "%s\n", line); /* one write per line: threads' lines do not mix */
}

/* Describe `n` blocks under `label` (NULL entries are skipped). */
static void report_blocks(const char *label, void *const *blocks, long n)
{
    struct maps *m = maps_read();
    struct tally t = {0};
    char kind[520];
    for (long i = 0; i < n; i++)
        if (blocks[i]) {
            kind_of(m, blocks[i], kind, sizeof kind);
            tally_add(&t, kind);
        }
    tally_print(label, &t);
    free(m);
}

/* A byte pattern that differs per block and per offset, and its check. */
static void fill(void *p, size_t n, unsigned seed)
{
    unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        c[i] = (unsigned char)(seed * 131 + i * 7);
}

static int intact(const void *p, size_t n, unsigned seed)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        if (c[i] != (unsigned char)(seed * 131 + i * 7))
            return 0;
    return 1;
}

#endif
