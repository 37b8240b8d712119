/* Allocations that libc makes on the caller's behalf, each after a deep call chain, and
 * one from a signal handler. Every call that allocates is marked SITE <name>; the call of
 * its function in run_all is marked CALLER <name>. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, noclone))
/* An opaque call after each site keeps the compiler from turning the call into a jump. */
static volatile int sink;
#define KEEP_FRAME() (sink++)

static int cmp(const void *a, const void *b)
{
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

NOINLINE static void sort_big(int *v, size_t n)
{
    qsort(v, n, sizeof *v, cmp); /* SITE qsort */
    KEEP_FRAME();
}

NOINLINE static char *duplicate(const char *s)
{
    char *d = strdup(s); /* SITE strdup */
    KEEP_FRAME();
    return d;
}

NOINLINE static void print_line(const char *s)
{
    printf("%s\n", s); /* SITE printf */
    KEEP_FRAME();
}

NOINLINE static size_t read_lines(const char *path)
{
    FILE *f = fopen(path, "r"); /* SITE fopen */
    KEEP_FRAME();
    if (!f)
        return 0;
    char *line = NULL;
    size_t cap = 0, n = 0;
    while (getline(&line, &cap, f) > 0) /* SITE getline */
        n++;
    KEEP_FRAME();
    free(line);
    fclose(f);
    return n;
}

static void *from_handler;
static void on_signal(int sig)
{
    from_handler = malloc(77); /* SITE handler */
    KEEP_FRAME();
}

NOINLINE static void signal_self(void)
{
    raise(SIGUSR1); /* SITE raise */
    KEEP_FRAME();
}

NOINLINE static void deep(int d, void (*leaf)(void))
{
    if (d)
        deep(d - 1, leaf);
    else
        leaf();
    KEEP_FRAME();
}

static int *values;
static char *copy;
static void run_all(void)
{
    sort_big(values, 300000); /* CALLER qsort */
    copy = duplicate("a string to copy"); /* CALLER strdup */
    print_line(copy); /* CALLER printf */
    read_lines("/proc/self/maps"); /* CALLER fopen */
    signal_self(); /* CALLER raise */
    KEEP_FRAME();
}

int main(void)
{
    signal(SIGUSR1, on_signal);
    values = malloc(300000 * sizeof *values);
    for (int i = 0; i < 300000; i++)
        values[i] = (int)((i * 2654435761u) % 1000003u);
    deep(6, run_all);
    free(copy);
    free(from_handler);
    free(values);
    return 0;
}
