/* memplace-measure: idle latency and single-thread bandwidth of one memory device.
 *
 *   memplace-measure [--quick] [--size BYTES] DEVICE
 *   DEVICE: numa:N | file:DIR | hugepages[:SIZE|:transparent] | anonymous
 *
 * The memory is set up as the runtime sets up a device (runtime/os/os_memory.c): anonymous
 * pages bound with mbind (raw system call, no libnuma), an unlinked file in DIR mapped
 * MAP_SHARED (kernel read-around on), MAP_HUGETLB pages, or madvise(MADV_HUGEPAGE). Latency is a
 * pointer chase over a randomly permuted cycle of cache lines in a buffer far larger than
 * the last-level cache (ns per dependent load, median of passes); bandwidth is read, write
 * and copy by one thread (GB/s = 1e9 bytes/s, median of passes). A file device is measured
 * twice: with its pages in the page cache, and cold, after they were written back and
 * dropped (msync, munmap, posix_fadvise DONTNEED): what a capacity tier costs.
 *
 * One JSON document on stdout; a device that cannot be set up: one line on stderr, exit 2.
 * Not part of libmemplace.so: a separate program in the wheel (memplace/_runtime/).
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <time.h>
#include <unistd.h>

#define LINE 64
#define MPOL_BIND_MODE 2
#define MiB (1024UL * 1024)

struct settings {
    size_t size;            /* buffer bytes (latency and bandwidth) */
    long loads;             /* dependent loads per latency pass */
    int passes;             /* passes per figure; the median is reported */
    double cold_seconds;    /* time bound of one cold pass */
    int cold_passes;
    size_t cold_size;       /* file bytes measured cold */
};

struct device {
    const char *text;       /* as given */
    char kind[16];          /* numa | file | hugepages | thp | anonymous */
    int node;
    const char *dir;
    size_t huge_size;       /* MAP_HUGETLB page size, 0: the default */
    int fd;                 /* file devices */
    const char *pages;      /* what backs the buffer, for the report */
};

static const char *device_text = "";

static void refuse(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "memplace-measure: %s: ", device_text);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(2);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, by_value);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

static uint64_t rng(void) /* xorshift64*: reproducible, good enough for a permutation */
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545f4914f6cdd1dULL;
}

/* ---- parsing ---------------------------------------------------------------------------- */

static size_t parse_size(const char *s, const char *what)
{
    char *end;
    double v = strtod(s, &end);
    size_t unit = 1;
    if (*end == 'k' || *end == 'K') unit = 1024, end++;
    else if (*end == 'm' || *end == 'M') unit = MiB, end++;
    else if (*end == 'g' || *end == 'G') unit = 1024 * MiB, end++;
    if (*end == 'i') end++;
    if (*end == 'B' || *end == 'b') end++;
    if (end == s || *end || v <= 0) {
        device_text = what;
        refuse("%s is not a size (examples: 2MiB, 64M, 1GiB)", s);
    }
    return (size_t)(v * (double)unit);
}

static void parse_device(const char *text, struct device *d)
{
    memset(d, 0, sizeof *d);
    d->text = text;
    d->fd = -1;
    const char *arg = strchr(text, ':');
    size_t n = arg ? (size_t)(arg - text) : strlen(text);
    if (n >= sizeof d->kind)
        refuse("unknown device (numa:N, file:DIR, hugepages[:SIZE|:transparent], anonymous)");
    memcpy(d->kind, text, n);
    arg = arg ? arg + 1 : "";
    if (!strcmp(d->kind, "numa")) {
        char *end;
        long node = strtol(arg, &end, 10);
        if (!*arg || *end || node < 0 || node > 4095)
            refuse("numa:N needs one node number");
        d->node = (int)node;
    } else if (!strcmp(d->kind, "file")) {
        if (arg[0] != '/')
            refuse("file:DIR needs an absolute directory");
        d->dir = arg;
    } else if (!strcmp(d->kind, "hugepages")) {
        if (!strcmp(arg, "transparent"))
            strcpy(d->kind, "thp");
        else if (*arg)
            d->huge_size = parse_size(arg, text);
    } else if (strcmp(d->kind, "anonymous") || *arg) {
        refuse("unknown device (numa:N, file:DIR, hugepages[:SIZE|:transparent], anonymous)");
    }
}

/* ---- setting the memory up ------------------------------------------------------------------ */

static size_t node_free_bytes(int node)
{
    char path[128], line[256];
    snprintf(path, sizeof path, "/sys/devices/system/node/node%d/meminfo", node);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    unsigned long kb = 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Node %*d MemFree: %lu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

static int open_unlinked(const char *dir)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    char path[4200];
    snprintf(path, sizeof path, "%s/.memplace-measure-%d", dir, (int)getpid());
    fd = open(path, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        unlink(path);
    return fd;
}

/* Checks what can be checked before the buffers are made; refuses with one line. */
static void prepare(struct device *d, struct settings *s)
{
    if (!strcmp(d->kind, "numa")) {
        char path[96];
        snprintf(path, sizeof path, "/sys/devices/system/node/node%d", d->node);
        if (access(path, F_OK))
            refuse("no NUMA node %d on this machine (%s)", d->node, path);
        size_t avail = node_free_bytes(d->node);
        if (avail < 64 * MiB)
            refuse("node %d has %zu MiB free: too little to measure", d->node, avail / MiB);
        if (s->size > avail / 4)
            s->size = avail / 4;
        d->pages = "4 KiB pages, mbind MPOL_BIND";
    } else if (!strcmp(d->kind, "file")) {
        struct stat st;
        if (stat(d->dir, &st))
            refuse("%s: %s", d->dir, strerror(errno));
        if (!S_ISDIR(st.st_mode))
            refuse("%s: not a directory", d->dir);
        struct statvfs v;
        if (statvfs(d->dir, &v) == 0 && (size_t)v.f_bavail * v.f_frsize < 2 * s->size)
            refuse("%s: %zu MiB free, measuring needs %zu MiB", d->dir,
                   (size_t)v.f_bavail * v.f_frsize / MiB, 2 * s->size / MiB);
        d->fd = open_unlinked(d->dir);
        if (d->fd < 0)
            refuse("%s: cannot create a file there: %s", d->dir, strerror(errno));
        int e = posix_fallocate(d->fd, 0, (off_t)s->size);
        if (e)
            refuse("%s: cannot allocate %zu MiB: %s", d->dir, s->size / MiB, strerror(e));
        d->pages = "MAP_SHARED file pages, kernel read-around";
    } else if (!strcmp(d->kind, "thp")) {
        char mode[128] = "";
        FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
        if (f) {
            if (!fgets(mode, sizeof mode, f))
                mode[0] = 0;
            fclose(f);
        }
        if (!strstr(mode, "[always]") && !strstr(mode, "[madvise]"))
            refuse("transparent huge pages are not enabled (/sys/kernel/mm/transparent_hugepage/enabled)");
        d->pages = "madvise(MADV_HUGEPAGE)";
    } else if (!strcmp(d->kind, "hugepages")) {
        d->pages = "MAP_HUGETLB pages";
    } else {
        d->pages = "4 KiB pages, no binding";
    }
    s->size &= ~(2 * MiB - 1);
    if (s->cold_size > s->size)
        s->cold_size = s->size;
}

static int huge_shift(size_t size)
{
    int shift = 0;
    while (((size_t)1 << shift) < size)
        shift++;
    return shift;
}

static char *map_buffer(struct device *d, size_t size)
{
    void *p;
    if (!strcmp(d->kind, "file")) {
        p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, d->fd, 0);
        if (p == MAP_FAILED)
            refuse("%s: mmap: %s", d->dir, strerror(errno));
        /* as the runtime maps a file device: the kernel's read-around on */
        return p;
    }
    int flags = MAP_PRIVATE | MAP_ANONYMOUS;
    if (!strcmp(d->kind, "hugepages"))
        flags |= MAP_HUGETLB | (d->huge_size ? huge_shift(d->huge_size) << MAP_HUGE_SHIFT : 0);
    p = mmap(NULL, size, PROT_READ | PROT_WRITE, flags, -1, 0);
    if (p == MAP_FAILED) {
        if (flags & MAP_HUGETLB)
            refuse("no %zu MiB of free huge pages%s (see HugePages_Free in /proc/meminfo)", size / MiB,
                   d->huge_size ? " of that size" : "");
        refuse("mmap of %zu MiB: %s", size / MiB, strerror(errno));
    }
    if (!strcmp(d->kind, "thp"))
        madvise(p, size, MADV_HUGEPAGE);
    if (!strcmp(d->kind, "numa")) {
        unsigned long mask[4096 / 64] = {0};
        mask[d->node / 64] |= 1UL << (d->node % 64);
        if (syscall(SYS_mbind, p, size, MPOL_BIND_MODE, mask, 4096UL + 1, 0))
            refuse("mbind to node %d: %s", d->node, strerror(errno));
    }
    return p;
}

/* Bytes of this process's anonymous memory in transparent huge pages. */
static size_t thp_bytes(void)
{
    char line[256];
    unsigned long kb = 0;
    FILE *f = fopen("/proc/self/smaps_rollup", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
            break;
    fclose(f);
    return kb * 1024;
}

/* ---- latency ---------------------------------------------------------------------------- */

/* Links `count` slots (`stride` bytes apart; within a page-sized stride, at a line scattered
 * by a multiplicative hash, so successive pages do not share a cache set) into one random
 * cycle (Sattolo's algorithm); returns the first slot. */
static void **link_cycle(char *buf, size_t count, size_t stride)
{
    uint32_t *order = malloc(count * sizeof *order);
    if (!order)
        refuse("out of memory for a permutation of %zu entries", count);
    for (size_t i = 0; i < count; i++)
        order[i] = (uint32_t)i;
    for (size_t i = count - 1; i > 0; i--) {
        size_t j = rng() % i;
        uint32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    size_t lines = stride / LINE;
#define SLOT(i) ((void **)(buf + (size_t)(i) * stride + (lines > 1 ? ((i) * 2654435761u % lines) * LINE : 0)))
    for (size_t i = 0; i < count; i++)
        *SLOT(i) = SLOT(order[i]);
    void **first = SLOT(0);
#undef SLOT
    free(order);
    return first;
}

static void *volatile sink;

/* ns per dependent load over `loads` loads, or until `seconds` have passed (checked every
 * 256 loads); *done receives the number of loads made. */
static double chase(void **p, long loads, double seconds, long *done)
{
    double t0 = now(), t = t0;
    long n = 0;
    while (n < loads) {
        for (int k = 0; k < 256; k++)
            p = (void **)*p;
        n += 256;
        if (seconds > 0 && (t = now()) - t0 > seconds)
            break;
    }
    if (seconds <= 0)
        t = now();
    sink = p;
    *done = n;
    return (t - t0) * 1e9 / (double)n;
}

/* ---- bandwidth ------------------------------------------------------------------------------ */

enum op { READ, WRITE, COPY };
static const char *op_name[] = {"read", "write", "copy"};

/* GB/s of one pass over `size` bytes (copy: the first half into the second, counted as
 * bytes read plus bytes written, as STREAM does), stopping early after `seconds`; a file
 * device's written pages are synced to disk within the timed pass when `sync`. */
static double pass(char *buf, size_t size, enum op op, double seconds, int sync)
{
    const size_t chunk = MiB;
    size_t span = op == COPY ? size / 2 : size, moved = 0;
    uint64_t sum = 0;
    double t0 = now();
    for (size_t off = 0; off < span; off += chunk) {
        uint64_t *a = (uint64_t *)(buf + off);
        if (op == READ) {
            uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
            for (size_t i = 0; i < chunk / 8; i += 4)
                s0 += a[i], s1 += a[i + 1], s2 += a[i + 2], s3 += a[i + 3];
            sum += s0 + s1 + s2 + s3;
            moved += chunk;
        } else if (op == WRITE) {
            for (size_t i = 0; i < chunk / 8; i++)
                a[i] = i + off;
            moved += chunk;
        } else {
            memcpy(buf + span + off, buf + off, chunk);
            moved += 2 * chunk;
        }
        if (seconds > 0 && now() - t0 > seconds)
            break;
    }
    if (sync && op != READ)
        msync(buf, size, MS_SYNC);
    double t = now() - t0;
    sink = (void *)(uintptr_t)sum;
    return (double)moved / t / 1e9;
}

/* ---- the cold file -------------------------------------------------------------------------- */

/* Writes the mapping's pages back and drops them from the page cache (the mapping stays,
 * at the same address); returns the share of its pages still resident (mincore). */
static double evict(struct device *d, char *buf, size_t size)
{
    msync(buf, size, MS_SYNC);
    madvise(buf, size, MADV_DONTNEED); /* unmapped from us: fadvise may then drop them */
    fdatasync(d->fd);
    posix_fadvise(d->fd, 0, (off_t)size, POSIX_FADV_DONTNEED);
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = size / page, in = 0;
    unsigned char *vec = malloc(pages);
    if (!vec || mincore(buf, size, vec))
        in = pages;
    else
        for (size_t i = 0; i < pages; i++)
            in += vec[i] & 1;
    free(vec);
    return (double)in / (double)pages;
}

/* ---- output ------------------------------------------------------------------------------- */

static void json_string(const char *s)
{
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            printf("\\u%04x", *s);
        else
            putchar(*s);
    }
    putchar('"');
}

static void json_array(const double *v, int n)
{
    putchar('[');
    for (int i = 0; i < n; i++)
        printf("%s%.4g", i ? ", " : "", v[i]);
    putchar(']');
}

#define MAX_PASSES 16

/* "latency_ns", each pass's latency and the median bandwidths, as JSON members at `indent`. */
static void print_figures(const char *indent, const double *lat, double bw[3][MAX_PASSES], int passes)
{
    double sorted[MAX_PASSES];
    memcpy(sorted, lat, sizeof sorted);
    printf("%s\"latency_ns\": %.4g,\n%s\"latency_passes_ns\": ", indent, median(sorted, passes), indent);
    json_array(lat, passes);
    printf(",\n%s\"bandwidth_gbps\": {", indent);
    for (int op = 0; op < 3; op++) {
        memcpy(sorted, bw[op], sizeof sorted);
        printf("%s\"%s\": %.4g", op ? ", " : "", op_name[op], median(sorted, passes));
    }
    printf("}");
}


int main(int argc, char **argv)
{
    struct settings s = {.size = 256 * MiB, .loads = 1000000, .passes = 5,
                         .cold_seconds = 0.3, .cold_passes = 3, .cold_size = 64 * MiB};
    const char *text = NULL;
    size_t size_given = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick"))
            s = (struct settings){.size = 64 * MiB, .loads = 200000, .passes = 3,
                                  .cold_seconds = 0.1, .cold_passes = 2, .cold_size = 16 * MiB};
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size_given = parse_size(argv[++i], "--size");
        else if (argv[i][0] == '-' || text) {
            fprintf(stderr, "usage: memplace-measure [--quick] [--size BYTES] "
                            "numa:N|file:DIR|hugepages[:SIZE|:transparent]|anonymous\n");
            return 2;
        } else
            text = argv[i];
    }
    if (!text) {
        fprintf(stderr, "usage: memplace-measure [--quick] [--size BYTES] DEVICE\n");
        return 2;
    }
    if (size_given)
        s.size = size_given < 8 * MiB ? 8 * MiB : size_given;
    device_text = text;
    struct device d;
    parse_device(text, &d);
    prepare(&d, &s);
    double t_start = now();
    char *buf = map_buffer(&d, s.size);
    int is_file = !strcmp(d.kind, "file");

    /* Every page touched (and bound) before anything is timed. */
    pass(buf, s.size, WRITE, 0, 0);
    size_t huge = !strcmp(d.kind, "thp") ? thp_bytes() : 0;

    double lat[MAX_PASSES], bw[3][MAX_PASSES];
    long done;
    void **start = link_cycle(buf, s.size / LINE, LINE);
    chase(start, s.loads / 4, 0, &done); /* warm the caches and TLB of the path */
    for (int p = 0; p < s.passes; p++)
        lat[p] = chase(start, s.loads, 0, &done);
    for (int p = 0; p < s.passes; p++)
        for (int op = 0; op < 3; op++)
            bw[op][p] = pass(buf, s.size, (enum op)op, 0, 0);

    printf("{\n  \"device\": ");
    json_string(text);
    printf(",\n  \"kind\": ");
    json_string(d.kind);
    printf(",\n  \"pages\": ");
    json_string(d.pages);
    if (!strcmp(d.kind, "thp"))
        printf(",\n  \"thp_bytes\": %zu", huge);
    printf(",\n  \"threads\": 1,\n  \"buffer_bytes\": %zu,\n  \"passes\": %d,\n", s.size, s.passes);
    printf("  \"loads_per_pass\": %ld,\n", s.loads);
    print_figures("  ", lat, bw, s.passes);

    if (is_file) {
        /* Cold: one line per page, pages in random order, each pass after an eviction. */
        size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = s.cold_size / page;
        struct statfs fs;
        int in_memory = fstatfs(d.fd, &fs) == 0 && (fs.f_type == TMPFS_MAGIC || fs.f_type == RAMFS_MAGIC);
        start = link_cycle(buf, pages, page);
        double cold_lat[MAX_PASSES], cold_bw[3][MAX_PASSES], resident, worst = 0;
        long loads = 0;
        for (int p = 0; p < s.cold_passes; p++) {
            resident = evict(&d, buf, s.size);
            worst = resident > worst ? resident : worst;
            cold_lat[p] = chase(start, (long)pages, s.cold_seconds, &done);
            loads += done;
        }
        for (int p = 0; p < s.cold_passes; p++)
            for (int op = 0; op < 3; op++) {
                resident = evict(&d, buf, s.size);
                worst = resident > worst ? resident : worst;
                cold_bw[op][p] = pass(buf, s.cold_size, (enum op)op, s.cold_seconds, 1);
            }
        printf(",\n  \"cold\": ");
        if (in_memory) {
            printf("null,\n  \"cold_unavailable\": \"the directory is on a memory filesystem (tmpfs): "
                   "its pages cannot be evicted\"");
        } else {
            printf("{\n    \"how\": \"pages written back and dropped (msync, MADV_DONTNEED, "
                   "posix_fadvise DONTNEED) before each pass; writes include msync to disk\",\n");
            printf("    \"resident_after_eviction\": %.3g,\n", worst);
            printf("    \"buffer_bytes\": %zu,\n    \"passes\": %d,\n    \"loads\": %ld,\n",
                   s.cold_size, s.cold_passes, loads);
            print_figures("    ", cold_lat, cold_bw, s.cold_passes);
            printf("\n  }");
        }
    }
    printf(",\n  \"seconds\": %.3g\n}\n", now() - t_start);
    return 0;
}
