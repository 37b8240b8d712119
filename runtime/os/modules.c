/* Loaded modules and call-site capture (see internal.h).
 *
 * Frame 0 is the return address of the malloc-family call. Deeper frames, and the first
 * frame past libc / libstdc++ / libgcc (C++ allocations arrive through operator new), come
 * from a bounded scan of the stack for words that point just after a call instruction in a
 * loaded module: Debian's libraries have no frame pointers, so a frame-pointer walk would
 * read garbage, and an unwinder is 10-1000x slower. The scan never reads past the thread's
 * stack. A snapshot is retaken (without locks) when the loader's counters change. */
#define _GNU_SOURCE
#include <link.h>
#include <string.h>
#include "internal.h"

#define MAX_SCAN_WORDS 1024

static struct mp_modules *current;

static int is_skipped(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    static const char *const names[] = {"libc.so", "libstdc++.so", "libgcc_s.so", "ld-linux",
                                        "libmemplace.so", "libc++.so", "libc++abi.so"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strncmp(base, names[i], strlen(names[i])) == 0)
            return 1;
    return 0;
}

static void read_build_id(struct dl_phdr_info *info, char *out)
{
    static const char hex[] = "0123456789abcdef";
    out[0] = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE)
            continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr);
        const unsigned char *end = p + ph->p_memsz;
        while (p + 12 <= end) {
            uint32_t namesz, descsz, type;
            memcpy(&namesz, p, 4), memcpy(&descsz, p + 4, 4), memcpy(&type, p + 8, 4);
            const unsigned char *name = p + 12, *desc = name + ((namesz + 3) & ~3u);
            if (desc + descsz > end)
                break;
            if (type == 3 && namesz == 4 && memcmp(name, "GNU", 4) == 0 && descsz <= 20) {
                for (uint32_t k = 0; k < descsz; k++) {
                    out[2 * k] = hex[desc[k] >> 4];
                    out[2 * k + 1] = hex[desc[k] & 15];
                }
                out[2 * descsz] = 0;
                return;
            }
            p = desc + ((descsz + 3) & ~3u);
        }
    }
}

struct collect { struct mp_module *out; int n, cap; unsigned long long adds, subs; };

static char *copy_string(const char *s)
{
    size_t n = strlen(s) + 1;
    char *c = mp_internal_alloc(n);
    if (c)
        memcpy(c, s, n);
    return c;
}

static int collect_module(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct collect *c = arg;
    c->adds = info->dlpi_adds;
    c->subs = info->dlpi_subs;
    if (!c->out) /* counting pass */
        return (c->n++, 0);
    if (c->n == c->cap)
        return 1;
    struct mp_module *m = &c->out[c->n];
    uintptr_t lo = UINTPTR_MAX, hi = 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
            uintptr_t s = info->dlpi_addr + ph->p_vaddr;
            if (s < lo) lo = s;
            if (s + ph->p_memsz > hi) hi = s + ph->p_memsz;
        }
    }
    if (hi == 0)
        return 0; /* nothing executable: the vDSO's data, say */
    m->base = info->dlpi_addr;
    m->lo = lo;
    m->hi = hi;
    m->path = copy_string(info->dlpi_name ? info->dlpi_name : "");
    m->skip = m->path ? is_skipped(m->path) : 0;
    read_build_id(info, m->build_id);
    c->n++;
    return 0;
}

static int counters_only(struct dl_phdr_info *info, size_t size, void *arg)
{
    struct collect *c = arg;
    c->adds = info->dlpi_adds;
    c->subs = info->dlpi_subs;
    return 1;
}

static struct mp_modules *take(uint32_t generation, struct mp_modules *previous)
{
    struct collect c = {0};
    dl_iterate_phdr(collect_module, &c);
    struct mp_modules *t = mp_internal_alloc(sizeof *t);
    if (!t)
        return NULL;
    c.cap = c.n + 8;
    c.n = 0;
    c.out = mp_internal_alloc((size_t)c.cap * sizeof *c.out);
    if (!c.out)
        return NULL;
    dl_iterate_phdr(collect_module, &c);
    t->modules = c.out;
    t->n = c.n;
    t->adds = c.adds;
    t->subs = c.subs;
    t->generation = generation;
    t->previous = previous;
    t->lo = UINTPTR_MAX;
    for (int i = 0; i < c.n; i++) {
        if (c.out[i].lo < t->lo) t->lo = c.out[i].lo;
        if (c.out[i].hi > t->hi) t->hi = c.out[i].hi;
    }
    return t;
}

struct mp_modules *mp_modules(void)
{
    struct mp_modules *t = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    if (mp_likely(t != NULL))
        return t;
    struct mp_modules *first = take(1, NULL), *none = NULL;
    if (first)
        __atomic_compare_exchange_n(&current, &none, first, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&current, __ATOMIC_ACQUIRE);
}

struct mp_modules *mp_modules_fresh(void)
{
    struct mp_modules *t = mp_modules();
    struct collect c = {0};
    dl_iterate_phdr(counters_only, &c);
    if (!t || (c.adds == t->adds && c.subs == t->subs))
        return t;
    struct mp_modules *n = take(t->generation + 1, t);
    if (!n)
        return t;
    /* no lock: a concurrent retake that wins is just as good */
    __atomic_compare_exchange_n(&current, &t, n, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&current, __ATOMIC_ACQUIRE);
}

const struct mp_module *mp_module_of(const struct mp_modules *t, uintptr_t a)
{
    if (a - t->lo >= t->hi - t->lo)
        return NULL;
    /* modules are few: a linear pass over a cache-resident array */
    for (int i = 0; i < t->n; i++)
        if (a - t->modules[i].lo < t->modules[i].hi - t->modules[i].lo)
            return &t->modules[i];
    return NULL;
}

/* Does `ra` follow a call instruction? (x86_64: call rel32 / call r/m; aarch64: bl / blr) */
static int after_call(const struct mp_module *m, uintptr_t ra)
{
#if defined(__x86_64__)
    if (ra < m->lo + 7)
        return 0;
    const unsigned char *c = (const unsigned char *)ra;
    if (c[-5] == 0xE8)
        return 1;
    for (int len = 2; len <= 7; len++)
        if (c[-len] == 0xFF && ((c[-len + 1] >> 3) & 7) == 2)
            return 1;
    return 0;
#elif defined(__aarch64__)
    if (ra < m->lo + 4 || ra & 3)
        return 0;
    uint32_t insn;
    memcpy(&insn, (const void *)(ra - 4), 4);
    return (insn & 0xFC000000u) == 0x94000000u || (insn & 0xFFFFFC1Fu) == 0xD63F0000u;
#else
    return 0;
#endif
}

int mp_capture(const struct mp_modules *t, uintptr_t ra, const void *sp, uintptr_t top,
               int depth, uintptr_t *out, const uintptr_t **slots)
{
    int n = 0;
    const struct mp_module *m = mp_module_of(t, ra);
    if (!m || !m->skip) {
        if (slots)
            slots[n] = NULL;
        out[n++] = ra;
    }
    if (n >= depth || !top)
        return n;
    const uintptr_t *w = (const uintptr_t *)(((uintptr_t)sp + 7) & ~(uintptr_t)7);
    const uintptr_t *end = (const uintptr_t *)top;
    if (end - w > MAX_SCAN_WORDS)
        end = w + MAX_SCAN_WORDS;
    for (; w < end && n < depth; w++) {
        uintptr_t a = *w;
        if (a - t->lo >= t->hi - t->lo || a == ra || (n && a == out[n - 1]))
            continue;
        const struct mp_module *am = mp_module_of(t, a);
        if (!am || am->skip || !after_call(am, a))
            continue;
        if (slots)
            slots[n] = w;
        out[n++] = a;
    }
    return n;
}
