/* Fuzz harness for the runtime's compiled-policy reader (runtime/os/policy.c).
 *
 * Built with the reader, the runtime's crc32 and runtime/os/internal_alloc.c under
 * ASan/UBSan:
 *     gcc -fsanitize=address,undefined -fno-sanitize-recover=all -g -I runtime/include \
 *         policy_fuzz.c runtime/os/policy.c runtime/util/crc32.c runtime/os/internal_alloc.c
 *
 * Reads file paths, one per line, on stdin (many per run: the test feeds thousands),
 * copies each file into a heap buffer of exactly its size (so ASan sees any read past
 * the end) and prints one line per file:
 *     <path> reject <why>
 *     <path> accept <default> D <kind>,<mode>,<capacity>,<fallback>,<flags>,<name>,<path>,<nodemask> ...
 *                             M <path>,<build_id> ... R <device>,<min>,<max>,<name>,<module>:<lo>:<hi>... ...
 * Strings are printed as hex of their bytes ("-" for none), numbers in decimal, so the test
 * can compare every decoded field with Python's decode().
 * With -l, files are read through mp_policy_load (open + mmap) instead.
 *
 * -DHARNESS_HEAP_ALLOC replaces runtime/os/internal_alloc.c (a bump allocator over mmap, whose
 * neighbouring tables would hide an overflow) by one heap block per table, freed after
 * each file, so ASan also guards the reader's writes into its tables.
 *
 * -DLIBFUZZER makes a libFuzzer target (clang -fsanitize=fuzzer,address,undefined): each
 * input is parsed as it is and once more with file_size and crc32 fixed up, so that the
 * fuzzer's mutations reach the checks behind the checksum (with the runtime's own crc32
 * and the header layout of runtime/include/policy_format.h). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#ifdef HARNESS_HEAP_ALLOC
static void *tables[16];
static int ntables;

void *mp_internal_alloc(size_t size)
{
    void *p = calloc(1, size);
    if (p && ntables < 16)
        tables[ntables++] = p;
    return p;
}
static void free_tables(void)
{
    while (ntables)
        free(tables[--ntables]);
}
#else
static void free_tables(void) {} /* runtime/os/internal_alloc.c never frees */
#endif

static void put_hex(const char *s)
{
    if (!s) {
        fputs("-", stdout);
        return;
    }
    if (!*s)
        fputs("_", stdout); /* the empty string, distinct from "none" */
    for (; *s; s++)
        printf("%02x", (unsigned char)*s);
}

static void print_policy(const struct mp_policy *p)
{
    printf("accept %u", p->default_device);
    for (uint32_t i = 0; i < p->ndevices; i++) {
        const struct mp_device_spec *d = &p->devices[i];
        printf(" D %u,%u,%llu,%d,%u,", d->kind, d->mode, (unsigned long long)d->capacity,
               d->fallback, d->flags);
        put_hex(d->name);
        putchar(',');
        put_hex(d->path);
        putchar(',');
        for (int w = 0; w < MP_NODEMASK_WORDS; w++)
            printf("%s%llx", w ? ":" : "", (unsigned long long)d->nodemask[w]);
    }
    for (uint32_t i = 0; i < p->nmodules; i++) {
        fputs(" M ", stdout);
        put_hex(p->modules[i].path);
        putchar(',');
        put_hex(p->modules[i].build_id);
    }
    for (uint32_t i = 0; i < p->nrules; i++) {
        const struct mp_rule_spec *r = &p->rules[i];
        printf(" R %u,%llu,%llu,", r->device, (unsigned long long)r->size_min,
               (unsigned long long)r->size_max);
        put_hex(r->name);
        for (uint32_t f = 0; f < r->nframes; f++)
            printf(",%u:%llu:%llu", r->frame[f].module, (unsigned long long)r->frame[f].lo,
                   (unsigned long long)r->frame[f].hi);
    }
    putchar('\n');
}

#ifdef LIBFUZZER

/* Read every field the runtime will use: ASan checks each string pointer. */
static void touch(const struct mp_policy *p)
{
    size_t sum = 0;
    if (p->default_device >= p->ndevices)
        abort();
    for (uint32_t i = 0; i < p->ndevices; i++) {
        sum += strlen(p->devices[i].name) + (p->devices[i].path ? strlen(p->devices[i].path) : 0);
        if (p->devices[i].fallback < -1 || p->devices[i].fallback >= (int32_t)p->ndevices)
            abort();
    }
    for (uint32_t i = 0; i < p->nmodules; i++)
        sum += strlen(p->modules[i].path) + (p->modules[i].build_id ? strlen(p->modules[i].build_id) : 0);
    for (uint32_t i = 0; i < p->nrules; i++) {
        const struct mp_rule_spec *r = &p->rules[i];
        sum += strlen(r->name);
        if (r->device >= p->ndevices || r->nframes > MP_MAX_FRAMES)
            abort();
        for (uint32_t f = 0; f < r->nframes; f++)
            if (r->frame[f].module >= p->nmodules || r->frame[f].lo > r->frame[f].hi)
                abort();
    }
    __asm__ volatile("" : : "r"(sum));
}

static void parse_one(const unsigned char *data, size_t size)
{
    const char *why = NULL;
    struct mp_policy *p = mp_policy_parse(data, size, &why);
    if (p)
        touch(p);
    else if (!why || !*why)
        abort(); /* a refusal must say why */
    free_tables();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size)
{
    unsigned char *copy = malloc(size ? size : 1);
    memcpy(copy, data, size);
    parse_one(copy, size);
    const size_t header = sizeof(struct mp_policy_header);
    if (size >= header) {
        uint64_t n = size;
        memcpy(copy + offsetof(struct mp_policy_header, file_size), &n, sizeof n);
        uint32_t c = mp_crc32(copy + header, size - header);
        memcpy(copy + offsetof(struct mp_policy_header, crc32), &c, sizeof c);
        parse_one(copy, size);
    }
    free(copy);
    return 0;
}
#else
static unsigned char *read_file(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    /* exactly n bytes (1 for an empty file, whose size stays 0): ASan guards the end */
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && n > 0 && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    *size = n > 0 ? (size_t)n : 0;
    return buf;
}

static void report(const char *path, const struct mp_policy *p, const char *why)
{
    printf("%s ", path);
    if (p)
        print_policy(p);
    else
        printf("reject %s\n", why && *why ? why : "(no reason given)");
}

int main(int argc, char **argv)
{
    int load = argc > 1 && strcmp(argv[1], "-l") == 0;
    char path[4096];
    unsigned long accepted = 0, rejected = 0;
    while (fgets(path, sizeof path, stdin)) {
        path[strcspn(path, "\n")] = 0;
        if (!*path)
            continue;
        const char *why = NULL;
        struct mp_policy *p;
        if (load) {
            p = mp_policy_load(path, &why);
            report(path, p, why);
            free_tables();
        } else {
            size_t size;
            unsigned char *data = read_file(path, &size);
            if (!data) {
                fprintf(stderr, "policy_fuzz: cannot read %s\n", path);
                return 3;
            }
            p = mp_policy_parse(data, size, &why);
            report(path, p, why); /* before free: the policy's strings point into the data */
            free(data);
            free_tables();
        }
        p ? accepted++ : rejected++;
    }
    printf("total accepted %lu rejected %lu\n", accepted, rejected);
    return 0;
}
#endif
