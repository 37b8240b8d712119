/* Loaded modules and call-site capture (see internal.h).
 *
 * A site's frames come from unwinding real frames, from the capture point inside the
 * runtime outwards, one table lookup per frame (os/unwind.c); the frames of the runtime,
 * libc, libstdc++, libgcc and ld.so are walked through but left out of the site. A frame
 * that cannot be unwound (its module has no table, or no rule covers its address) ends
 * the site there: it is never completed from stack words that merely look like return
 * addresses. A snapshot is retaken (without locks) when the loader's counters change,
 * and maps the unwind tables of modules it has not seen before. */
#define _GNU_SOURCE
#include <link.h>
#include <string.h>
#include "internal.h"

#define MAX_STEPS 64 /* frames walked at most, runtime and libc ones included */

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
    m->unwind = NULL; /* loaded in take(), outside the loader's lock */
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

/* A module's unwind table: the one an earlier snapshot mapped for it, or mapped now. */
static const struct mp_unwind_table *unwind_table_of(const struct mp_module *m,
                                                     const struct mp_modules *previous)
{
    for (const struct mp_modules *p = previous; p; p = p->previous)
        for (int i = 0; i < p->n; i++)
            if (p->modules[i].base == m->base && strcmp(p->modules[i].build_id, m->build_id) == 0)
                return p->modules[i].unwind;
    return mp_unwind_load(m->build_id);
}

MP_HIDDEN uint32_t mp_modules_unloads;

void mp_modules_unloaded(void) { __atomic_fetch_add(&mp_modules_unloads, 1, __ATOMIC_RELEASE); }

static uint64_t string_hash(uint64_t h, const char *s)
{
    for (; s && *s; s++)
        h = h * 31 + (unsigned char)*s;
    return h;
}

static struct mp_modules *take(uint32_t generation, struct mp_modules *previous)
{
    /* read first: a dlclose after it makes the snapshot be checked again */
    uint32_t unloads = __atomic_load_n(&mp_modules_unloads, __ATOMIC_ACQUIRE);
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
    t->checked = unloads;
    t->previous = previous;
    t->lo = UINTPTR_MAX;
    for (int i = 0; i < c.n; i++) {
        if (c.out[i].lo < t->lo) t->lo = c.out[i].lo;
        if (c.out[i].hi > t->hi) t->hi = c.out[i].hi;
        c.out[i].unwind = unwind_table_of(&c.out[i], previous);
        c.out[i].id = string_hash(string_hash(c.out[i].base, c.out[i].build_id), c.out[i].path);
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

struct mp_modules *mp_modules_checked(void)
{
    struct mp_modules *t = mp_modules();
    uint32_t unloads = __atomic_load_n(&mp_modules_unloads, __ATOMIC_ACQUIRE);
    if (!t || __atomic_load_n(&t->checked, __ATOMIC_RELAXED) == unloads)
        return t;
    t = mp_modules_fresh(); /* a new snapshot only if the loader unloaded something */
    if (t)
        __atomic_store_n(&t->checked, unloads, __ATOMIC_RELAXED);
    return t;
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

/* The rule for the frame at `r` and whether its module is left out of sites, through the
 * thread's cache; NULL rule: the frame cannot be unwound (*skip still set if known). */
static const struct mp_unwind_rule *rule_at(const struct mp_modules *t, const struct mp_unwind_regs *r,
                                            struct mp_unwind_cache *cache, int *skip)
{
    /* a return address belongs to the call before it: look up the call's last byte */
    uintptr_t pc = r->pc - (r->exact ? 0 : 1);
    unsigned slot = (unsigned)((pc ^ (pc >> 7)) % MP_UNWIND_CACHE);
    if (cache && cache->e[slot].pc == pc) { /* mp_capture keeps it to this snapshot */
        *skip = cache->e[slot].skip;
        return cache->e[slot].rule;
    }
    const struct mp_module *m = mp_module_of(t, r->pc);
    if (!m) {
        *skip = -1; /* code outside every module (generated code) */
        return NULL;
    }
    *skip = m->skip;
    const struct mp_unwind_rule *rule = m->unwind ? mp_unwind_find(m->unwind, pc - m->base) : NULL;
    if (cache) {
        cache->e[slot].pc = pc, cache->e[slot].rule = rule, cache->e[slot].skip = m->skip;
    }
    return rule;
}

/* Frames are copied one word at a time: a call to memcpy for a few words costs more than
 * the copy. */
static void copy_frames(uintptr_t *to, const uintptr_t *from, int n)
{
    for (int i = 0; i < n; i++)
        to[i] = from[i];
}

/* A walk depends on a saved frame pointer it read only if a later step used it (as the
 * base of its frame): drop the others from the trace, so that a walk through code
 * without frame pointers, where they are the program's data, is not redone each time
 * that data changes. */
static void drop_unused_fp_words(struct mp_unwind_trace *t)
{
    int k = 0;
    uint32_t kept_fp = 0;
    for (int i = 0; i < t->n; i++)
        if (!(t->fp_words >> i & 1) || (t->fp_needed >> i & 1)) {
            kept_fp |= (t->fp_words >> i & 1) << k;
            t->addr[k] = t->addr[i], t->value[k++] = t->value[i];
        }
    if (t->n > 0)
        t->n = k;
    t->fp_words = kept_fp;
}

int mp_capture(const struct mp_modules *t, const struct mp_unwind_regs *at, uintptr_t top,
               struct mp_unwind_cache *cache, int depth, uintptr_t *out, int *end)
{
    /* The caller has just stored *at word by word: read it back the same way, as one wide
     * load would wait for the stores to reach the cache (a failed store forwarding). */
    struct mp_unwind_regs regs = {__atomic_load_n(&at->pc, __ATOMIC_RELAXED),
                                  __atomic_load_n(&at->sp, __ATOMIC_RELAXED),
                                  __atomic_load_n(&at->fp, __ATOMIC_RELAXED),
                                  __atomic_load_n(&at->exact, __ATOMIC_RELAXED)};
    struct mp_unwind_regs *r = &regs;
    if (!MP_UNWIND_SUPPORTED)
        return 0; /* no walk here (MP_UNWIND_HERE gives pc 0): the caller's raw return address */
    if (depth > MP_UNWIND_FRAMES)
        depth = MP_UNWIND_FRAMES;
    struct mp_unwind_trace *trace = NULL;
    if (cache) {
        if (cache->modules != t) {
            memset(cache, 0, sizeof *cache);
            cache->modules = t;
        }
        if (cache->last.pc == r->pc && cache->last.sp == r->sp && cache->last.fp == r->fp &&
            cache->last.depth == depth && mp_unwind_trace_holds(&cache->last.trace)) {
            copy_frames(out, cache->last.frames, cache->last.n);
            if (end)
                *end = cache->last.end;
            return cache->last.n;
        }
        cache->last.pc = r->pc, cache->last.sp = r->sp, cache->last.fp = r->fp;
        cache->last.depth = depth;
        trace = &cache->last.trace;
        trace->n = 0, trace->fp_used = 0, trace->fp_words = trace->fp_needed = 0;
        trace->relative = 1;
    }
    int fp_from = -1; /* where r->fp comes from: -1 the start, -2 no word, else a trace word */
    int n = 0, why = MP_CAPTURE_CUT;
    const uintptr_t lo = r->sp;
    for (int step = 0; step < MAX_STEPS && top; step++) {
        int skip;
        const struct mp_unwind_rule *rule = rule_at(t, r, cache, &skip);
        if (skip < 0)
            break;
        if (!skip)
            out[n++] = r->pc;
        if (n == depth) {
            why = MP_CAPTURE_FULL;
            break;
        }
        if (rule && trace && rule->cfa_base == MP_CFA_FP) { /* this step reads fp */
            if (fp_from == -1)
                trace->fp_used = 1;
            else if (fp_from >= 0)
                trace->fp_needed |= 1u << fp_from;
        }
        int s = rule ? mp_unwind_step(rule, r, lo, top, trace) : MP_STEP_UNKNOWN;
        /* a signal frame (its words are absolute stack addresses), or a step that failed
         * (maybe at the stack's bounds): the walk is not the same at another depth */
        if (trace && rule && (rule->cfa_base == MP_CFA_SIGNAL ||
                              ((rule->cfa_base == MP_CFA_SP || rule->cfa_base == MP_CFA_FP) &&
                               s == MP_STEP_UNKNOWN)))
            trace->relative = 0;
        if (s != MP_STEP_OK) {
            why = s == MP_STEP_END ? MP_CAPTURE_OUTERMOST : MP_CAPTURE_CUT;
            break;
        }
        if (trace && (rule->fp_rule == MP_FP_SAVED || rule->cfa_base == MP_CFA_SIGNAL))
            fp_from = trace->n > 0 ? trace->n - 1 : -2;
        else if (rule->fp_rule == MP_FP_LOST)
            fp_from = -2;
    }
    if (trace)
        drop_unused_fp_words(trace);
    if (cache) {
        copy_frames(cache->last.frames, out, n);
        cache->last.n = n, cache->last.end = why;
    }
    if (end)
        *end = why;
    return n;
}
