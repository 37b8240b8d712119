/* Call-site recognition (see sites.h).
 *
 * Frame 0 is the return address of the malloc-family call. Deeper frames, and the first
 * frame past libc / libstdc++ / libgcc (C++ allocations arrive through operator new), come
 * from a bounded scan of the stack for words that point just after a call instruction in a
 * loaded module: Debian's libraries have no frame pointers, so a frame-pointer walk would
 * read garbage, and an unwinder is 10-1000x slower. The scan never reads past the thread's
 * stack. Rules are translated to absolute ranges per module table generation; a module
 * table is rebuilt (without locks) when the loader's add/remove counters change. A small
 * per-thread cache maps frames to the rules they can match, so the rule scan runs once per
 * site and thread. */
#define _GNU_SOURCE
#include <link.h>
#include <pthread.h>
#include <string.h>
#include "sites.h"
#include "thread.h"

#define MAX_SCAN_WORDS 1024

struct module {
    uintptr_t base, lo, hi; /* load bias; executable range [lo, hi) */
    int skip;               /* libc, libstdc++, libgcc, ld.so, ourselves */
    const char *path;
    char build_id[41];
};

struct abs_frame { uintptr_t lo, hi; int valid; };

struct table {
    unsigned long long adds, subs;
    uint32_t generation;
    int nmodules;
    uintptr_t lo, hi; /* union of executable ranges: quick rejection of data words */
    struct module *modules;
    struct abs_frame *frames; /* nrules x MP_MAX_FRAMES */
};

static const struct mp_policy *policy;
static struct table *current;
static int depth; /* frames the rules need: the largest nframes */
static struct mp_rule_stats *rule_stats;

/* ---- module table ---- */

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

struct collect { struct module *out; int n, cap; unsigned long long adds, subs; };

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
    struct module *m = &c->out[c->n];
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

static const char *basename_of(const char *p)
{
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

/* A build-id, when the policy gives one, alone decides; else the path (""= the main
 * program), else the basename. */
static const struct module *find_spec_module(const struct table *t, const struct mp_module_spec *s)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < t->nmodules; i++) {
            const struct module *m = &t->modules[i];
            if (!m->path)
                continue;
            if (s->build_id) {
                if (pass == 0 && strcmp(s->build_id, m->build_id) == 0)
                    return m;
            } else if (pass == 0) {
                if (s->path[0] ? strcmp(s->path, m->path) == 0 : (i == 0 && m->path[0] == 0))
                    return m;
            } else if (s->path[0] && m->path[0] &&
                       strcmp(basename_of(s->path), basename_of(m->path)) == 0) {
                return m;
            }
        }
    return NULL;
}

static struct table *build_table(uint32_t generation)
{
    struct collect c = {0};
    dl_iterate_phdr(collect_module, &c);
    struct table *t = mp_internal_alloc(sizeof *t);
    if (!t)
        return NULL;
    c.cap = c.n + 8;
    c.n = 0;
    c.out = mp_internal_alloc((size_t)c.cap * sizeof *c.out);
    t->frames = mp_internal_alloc((policy->nrules + 1) * MP_MAX_FRAMES * sizeof *t->frames);
    if (!c.out || !t->frames)
        return NULL;
    dl_iterate_phdr(collect_module, &c);
    t->modules = c.out;
    t->nmodules = c.n;
    t->adds = c.adds;
    t->subs = c.subs;
    t->generation = generation;
    t->lo = UINTPTR_MAX;
    for (int i = 0; i < c.n; i++) {
        if (c.out[i].lo < t->lo) t->lo = c.out[i].lo;
        if (c.out[i].hi > t->hi) t->hi = c.out[i].hi;
    }
    for (uint32_t r = 0; r < policy->nrules; r++)
        for (uint32_t f = 0; f < policy->rules[r].nframes; f++) {
            const struct mp_frame_spec *fs = &policy->rules[r].frame[f];
            const struct module *m = find_spec_module(t, &policy->modules[fs->module]);
            struct abs_frame *a = &t->frames[r * MP_MAX_FRAMES + f];
            if (m) {
                a->lo = m->base + fs->lo;
                a->hi = m->base + fs->hi;
                a->valid = 1;
            }
        }
    return t;
}

/* Rebuild the table if modules were loaded or unloaded since it was made. */
static struct table *fresh_table(void)
{
    struct table *t = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    struct collect c = {0};
    dl_iterate_phdr(counters_only, &c);
    if (c.adds == t->adds && c.subs == t->subs)
        return t;
    struct table *n = build_table(t->generation + 1);
    if (!n)
        return t;
    /* no lock: a concurrent rebuild that wins is just as good */
    __atomic_compare_exchange_n(&current, &t, n, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
    return __atomic_load_n(&current, __ATOMIC_ACQUIRE);
}

static const struct module *module_of(const struct table *t, uintptr_t a)
{
    int lo = 0, hi = t->nmodules - 1;
    /* modules are few and not sorted; a linear pass over a cache-resident array is cheap */
    for (int i = lo; i <= hi; i++)
        if (a - t->modules[i].lo < t->modules[i].hi - t->modules[i].lo)
            return &t->modules[i];
    return NULL;
}

/* Does `ra` follow a call instruction? (x86_64: call rel32 / call r/m; aarch64: bl / blr) */
static int after_call(const struct module *m, uintptr_t ra)
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

static int capture(const struct table *t, uintptr_t ra, const void *sp, uintptr_t top,
                   uintptr_t *out)
{
    int n = 0;
    const struct module *m = ra - t->lo < t->hi - t->lo ? module_of(t, ra) : NULL;
    if (!m || !m->skip)
        out[n++] = ra;
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
        const struct module *am = module_of(t, a);
        if (!am || am->skip || !after_call(am, a))
            continue;
        out[n++] = a;
    }
    return n;
}

static int frames_match(const struct table *t, uint32_t r, const uintptr_t *frames, int n)
{
    const struct mp_rule_spec *rule = &policy->rules[r];
    if ((int)rule->nframes > n)
        return 0;
    for (uint32_t f = 0; f < rule->nframes; f++) {
        const struct abs_frame *a = &t->frames[r * MP_MAX_FRAMES + f];
        if (!a->valid || frames[f] < a->lo || frames[f] > a->hi)
            return 0;
    }
    return 1;
}

static int size_fits(uint32_t r, size_t size)
{
    return size >= policy->rules[r].size_min && size <= policy->rules[r].size_max;
}

static int scan_rules(const struct table *t, const uintptr_t *frames, int n, size_t size)
{
    for (uint32_t r = 0; r < policy->nrules; r++)
        if (size_fits(r, size) && frames_match(t, r, frames, n))
            return (int)r;
    return -1;
}

int mp_sites_init(const struct mp_policy *p, const char **why)
{
    policy = p;
    for (uint32_t r = 0; r < p->nrules; r++)
        if ((int)p->rules[r].nframes > depth)
            depth = (int)p->rules[r].nframes;
    rule_stats = mp_internal_alloc((p->nrules + 1) * sizeof *rule_stats);
    current = build_table(0);
    if (!current || !rule_stats) {
        *why = "out of memory for the call-site tables";
        return -1;
    }
    return 0;
}

static void count(int rule, size_t size)
{
    __atomic_fetch_add(&rule_stats[rule].hits, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&rule_stats[rule].bytes, size, __ATOMIC_RELAXED);
}

/* Move an entry's pending hit counts into the totals (before it is reused, and at exit). */
static void flush_entry(struct mp_site_entry *e)
{
    for (int i = 0; i < e->ncand; i++)
        if (e->hits[i]) {
            __atomic_fetch_add(&rule_stats[e->cand[i]].hits, e->hits[i], __ATOMIC_RELAXED);
            __atomic_fetch_add(&rule_stats[e->cand[i]].bytes, e->bytes[i], __ATOMIC_RELAXED);
            e->hits[i] = e->bytes[i] = 0;
        }
}

static struct mp_site_entry *slot(struct mp_thread *self, const uintptr_t *frames);
static struct table *fill(struct mp_site_entry *e, struct table *t, const uintptr_t *frames,
                          int n, int raw);
static int choose(struct table *t, struct mp_site_entry *e, const uintptr_t *frames, int n,
                  size_t size);

int mp_sites_match(struct mp_thread *self, uintptr_t ra, const void *sp, size_t size)
{
    if (policy->nrules == 0)
        return -1;
    struct table *t = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    if (depth == 0 || !self) { /* size rules only, or a thread being set up */
        int r = scan_rules(t, NULL, 0, size);
        if (r >= 0)
            count(r, size);
        return r;
    }
    uint32_t generation = t->generation + 1; /* 0 marks an empty entry */
    uintptr_t frames[MP_MAX_FRAMES] = {ra, 0, 0, 0};
    int n = 1;
    struct mp_site_entry *e;
    if (depth == 1) {
        /* Fast path: keyed by the raw return address, no stack scan unless it points into
         * libc/libstdc++ (then the entry says so and the scan finds the real frame). */
        e = slot(self, frames);
        if (mp_unlikely(e->generation != generation || e->frames[0] != ra || e->frames[1])) {
            t = fill(e, t, frames, 1, 1);
            generation = t->generation + 1;
        }
        if (!e->needs_scan)
            return choose(t, e, frames, n, size);
    }
    n = capture(t, ra, sp, self->stack_top, frames);
    e = slot(self, frames);
    if (e->generation != generation || memcmp(e->frames, frames, sizeof frames) != 0)
        t = fill(e, t, frames, n, 0);
    return choose(t, e, frames, n, size);
}

static struct mp_site_entry *slot(struct mp_thread *self, const uintptr_t *frames)
{
    uintptr_t h = frames[0] ^ (frames[1] * 31) ^ (frames[2] * 1009) ^ (frames[3] * 65537);
    return &self->cache[(h ^ (h >> 12)) % MP_SITE_CACHE];
}

/* (Re)fill a cache entry: the rules whose frames match, in priority order. With `raw`,
 * frames[0] is an unchecked return address: mark the entry if it needs the scan. */
static struct table *fill(struct mp_site_entry *e, struct table *t, const uintptr_t *frames,
                          int n, int raw)
{
    flush_entry(e);
    t = fresh_table();
    memcpy(e->frames, frames, sizeof e->frames);
    e->generation = t->generation + 1;
    e->ncand = 0;
    e->needs_scan = 0;
    if (raw) {
        const struct module *m = frames[0] - t->lo < t->hi - t->lo ? module_of(t, frames[0]) : NULL;
        if (m && m->skip) {
            e->needs_scan = 1;
            return t;
        }
    }
    for (uint32_t r = 0; r < policy->nrules; r++)
        if (frames_match(t, r, frames, n)) {
            if (e->ncand == MP_MAX_CANDIDATES) {
                e->ncand = -1;
                break;
            }
            e->cand[e->ncand++] = (uint16_t)r;
        }
    return t;
}

/* The first candidate rule whose size range fits; its hit is counted in the entry. */
static int choose(struct table *t, struct mp_site_entry *e, const uintptr_t *frames, int n,
                  size_t size)
{
    if (e->ncand < 0) {
        int r = scan_rules(t, frames, n, size);
        if (r >= 0)
            count(r, size);
        return r;
    }
    for (int i = 0; i < e->ncand; i++)
        if (size_fits(e->cand[i], size)) {
            e->hits[i]++;
            e->bytes[i] += size;
            return e->cand[i];
        }
    return -1;
}

const struct mp_rule_stats *mp_sites_rule_stats(uint32_t rule) { return &rule_stats[rule]; }

void mp_sites_flush(void)
{
    for (struct mp_thread *t = mp_threads_all(); t; t = t->next_all)
        for (int i = 0; i < MP_SITE_CACHE; i++)
            flush_entry(&t->cache[i]);
}
