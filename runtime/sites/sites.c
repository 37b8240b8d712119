/* Rule matching (see internal.h): which rule an allocation's call site and size select.
 *
 * Rules name module-relative return-address ranges; they are translated to absolute
 * ranges for each snapshot of the loaded modules (os/modules.c), so modules dlopen'ed later
 * are matched too. A per-thread cache (types.h) maps a site's frames to the rules they can
 * match, so the rule scan runs once per site and thread; an entry whose device does not
 * depend on the size is "fixed" and serves the fast path (modes/place.c). For one-frame
 * policies the cache is keyed by the raw return address and frames are unwound only for
 * calls that return into libc or libstdc++ (operator new); for deeper ones by the frames
 * unwound from the program's frame. */
#define _GNU_SOURCE
#include <string.h>
#include "internal.h"

struct abs_frame { uintptr_t lo, hi; int valid; };

/* A rule's innermost frame, absolute: the index that finds a site's rules. */
struct span { uintptr_t lo, hi; uint32_t rule; };

/* The rules' frames made absolute for one modules snapshot. */
struct view {
    struct mp_modules *modules;
    uint32_t generation;
    struct abs_frame *frames; /* nrules x MP_MAX_FRAMES */
    struct span *spans;       /* by lo */
    uint32_t nspans;
    uintptr_t widest;         /* the largest hi - lo among the spans */
    uint32_t *frameless;      /* rules with no frames (size only): candidates everywhere */
    uint32_t nframeless;
};

MP_HIDDEN uint32_t mp_sites_generation;
static const struct mp_policy *policy;
static struct view *current;
MP_HIDDEN int mp_sites_depth; /* frames the rules need: the largest nframes */
#define depth mp_sites_depth
static struct mp_rule_stats *rule_stats;

static const char *basename_of(const char *p)
{
    const char *b = strrchr(p, '/');
    return b ? b + 1 : p;
}

/* A build-id, when the policy gives one, alone decides; else the path ("" = the main
 * program), else the basename. */
static const struct mp_module *find_spec_module(const struct mp_modules *t,
                                                const struct mp_module_spec *s)
{
    for (int pass = 0; pass < 2; pass++)
        for (int i = 0; i < t->n; i++) {
            const struct mp_module *m = &t->modules[i];
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

/* Shell sort by lo (no qsort: it may call malloc, and we are inside it). */
static void sort_spans(struct span *a, uint32_t n)
{
    static const uint32_t gaps[] = {1750, 701, 301, 132, 57, 23, 10, 4, 1};
    for (size_t g = 0; g < sizeof gaps / sizeof gaps[0]; g++)
        for (uint32_t i = gaps[g]; i < n; i++) {
            struct span x = a[i];
            uint32_t j = i;
            for (; j >= gaps[g] && a[j - gaps[g]].lo > x.lo; j -= gaps[g])
                a[j] = a[j - gaps[g]];
            a[j] = x;
        }
}

static int index_view(struct view *v)
{
    v->spans = mp_internal_alloc((policy->nrules + 1) * sizeof *v->spans);
    v->frameless = mp_internal_alloc((policy->nrules + 1) * sizeof *v->frameless);
    if (!v->spans || !v->frameless)
        return -1;
    for (uint32_t r = 0; r < policy->nrules; r++) {
        const struct abs_frame *a = &v->frames[r * MP_MAX_FRAMES];
        if (policy->rules[r].nframes == 0) {
            v->frameless[v->nframeless++] = r;
        } else if (a->valid) {
            v->spans[v->nspans++] = (struct span){a->lo, a->hi, r};
            if (a->hi - a->lo > v->widest)
                v->widest = a->hi - a->lo;
        }
    }
    sort_spans(v->spans, v->nspans);
    return 0;
}

static struct view *make_view(struct mp_modules *mods)
{
    struct view *v = mp_internal_alloc(sizeof *v);
    if (!v || !mods)
        return NULL;
    v->modules = mods;
    v->generation = mods->generation;
    v->frames = mp_internal_alloc((policy->nrules + 1) * MP_MAX_FRAMES * sizeof *v->frames);
    if (!v->frames)
        return NULL;
    for (uint32_t r = 0; r < policy->nrules; r++)
        for (uint32_t f = 0; f < policy->rules[r].nframes; f++) {
            const struct mp_frame_spec *fs = &policy->rules[r].frame[f];
            const struct mp_module *m = find_spec_module(mods, &policy->modules[fs->module]);
            struct abs_frame *a = &v->frames[r * MP_MAX_FRAMES + f];
            if (m) {
                a->lo = m->base + fs->lo;
                a->hi = m->base + fs->hi;
                a->valid = 1;
            }
        }
    return index_view(v) ? NULL : v;
}

/* The view for the current modules, remade if modules came or went. */
static struct view *fresh_view(void)
{
    struct view *v = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    struct mp_modules *mods = mp_modules_fresh();
    if (mods == v->modules)
        return v;
    struct view *n = make_view(mods);
    if (!n)
        return v;
    if (__atomic_compare_exchange_n(&current, &v, n, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
        /* never backwards: a publisher of an older view may store after a newer one's */
        uint32_t g = __atomic_load_n(&mp_sites_generation, __ATOMIC_RELAXED);
        while (g < n->generation &&
               !__atomic_compare_exchange_n(&mp_sites_generation, &g, n->generation, 1,
                                            __ATOMIC_RELEASE, __ATOMIC_RELAXED))
            ;
        /* every thread's fast path: leave your caches to the slow path until forgotten */
        for (struct mp_thread *t = mp_threads_all(); t; t = t->next_all)
            __atomic_store_n(&t->stale, 1, __ATOMIC_RELEASE);
    }
    return __atomic_load_n(&current, __ATOMIC_ACQUIRE);
}

static int frames_match(const struct view *v, uint32_t r, const uintptr_t *frames, int n)
{
    const struct mp_rule_spec *rule = &policy->rules[r];
    if ((int)rule->nframes > n)
        return 0;
    for (uint32_t f = 0; f < rule->nframes; f++) {
        const struct abs_frame *a = &v->frames[r * MP_MAX_FRAMES + f];
        if (!a->valid || frames[f] < a->lo || frames[f] > a->hi)
            return 0;
    }
    return 1;
}

/* The index of the first span starting above pc: the spans that can hold pc are below it. */
static uint32_t spans_above(const struct view *v, uintptr_t pc)
{
    uint32_t lo = 0, hi = v->nspans;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (v->spans[mid].lo <= pc)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The rules whose frames match, in priority order, into out[MP_MAX_CANDIDATES]; -1 when
 * there are more. A binary search over the spans, not a pass over every rule. */
static int matching_rules(const struct view *v, const uintptr_t *frames, int n, uint16_t *out)
{
    uint32_t found[MP_MAX_CANDIDATES + 1];
    int count = 0;
    for (uint32_t i = 0; i < v->nframeless && count <= MP_MAX_CANDIDATES; i++)
        found[count++] = v->frameless[i];
    for (uint32_t j = spans_above(v, frames[0]);
         j-- > 0 && frames[0] - v->spans[j].lo <= v->widest && count <= MP_MAX_CANDIDATES;)
        if (frames[0] <= v->spans[j].hi && frames_match(v, v->spans[j].rule, frames, n))
            found[count++] = v->spans[j].rule;
    if (count > MP_MAX_CANDIDATES)
        return -1;
    for (int i = 1; i < count; i++) /* priority: the policy's order */
        for (int j = i; j > 0 && found[j - 1] > found[j]; j--) {
            uint32_t t = found[j];
            found[j] = found[j - 1];
            found[j - 1] = t;
        }
    for (int i = 0; i < count; i++)
        out[i] = (uint16_t)found[i];
    return count;
}

/* Does a rule of several frames begin with frame pc? Then pc alone does not decide. */
static int longer_rule_begins(const struct view *v, uintptr_t pc)
{
    for (uint32_t j = spans_above(v, pc); j-- > 0 && pc - v->spans[j].lo <= v->widest;)
        if (pc <= v->spans[j].hi && policy->rules[v->spans[j].rule].nframes > 1)
            return 1;
    return 0;
}

static int size_fits(uint32_t r, size_t size)
{
    return size >= policy->rules[r].size_min && size <= policy->rules[r].size_max;
}

static int scan_rules(const struct view *v, const uintptr_t *frames, int n, size_t size)
{
    for (uint32_t r = 0; r < policy->nrules; r++)
        if (size_fits(r, size) && frames_match(v, r, frames, n))
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
    current = make_view(mp_modules());
    if (current)
        mp_sites_generation = current->generation;
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
        if (e->count[i].hits) {
            __atomic_fetch_add(&rule_stats[e->cand[i]].hits, e->count[i].hits, __ATOMIC_RELAXED);
            __atomic_fetch_add(&rule_stats[e->cand[i]].bytes, e->count[i].bytes, __ATOMIC_RELAXED);
            e->count[i].hits = e->count[i].bytes = 0;
        }
}

/* Move a walk's hits into its rule's totals. */
static void flush_walk(struct mp_walk_entry *w)
{
    if (w->count.hits && w->rule >= 0) {
        __atomic_fetch_add(&rule_stats[w->rule].hits, w->count.hits, __ATOMIC_RELAXED);
        __atomic_fetch_add(&rule_stats[w->rule].bytes, w->count.bytes, __ATOMIC_RELAXED);
    }
    w->count.hits = w->count.bytes = 0;
}

static struct mp_site_entry *slot(struct mp_thread *self, const uintptr_t *frames)
{
    return &self->cache[mp_sites_slot(frames[0], frames[1], frames[2], frames[3])];
}

/* (Re)fill a cache entry: the rules whose frames match, in priority order. With `raw`,
 * frames[0] is an unchecked return address: mark the entry if the site's frames must be
 * unwound (a return address into libc or libstdc++, or one a rule of several frames
 * begins with); else the frames are a whole walk's. The caller has marked the thread
 * busy; the entry is empty (generation 0) while it is filled, so a signal handler's
 * lookup misses it rather than read it half made. */
static struct view *fill(struct mp_site_entry *e, const uintptr_t *frames, int n, int raw)
{
    e->generation = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    flush_entry(e);
    memset(e->count, 0, sizeof e->count); /* a fixed entry without rules counted in count[0] */
    struct view *v = fresh_view();
    memcpy(e->frames, frames, sizeof e->frames);
    e->ncand = 0;
    e->needs_scan = 0;
    e->walked = !raw;
    e->fixed = MP_FIXED_NOT;
    if (raw) {
        const struct mp_module *m = mp_module_of(v->modules, frames[0]);
        e->needs_scan = (m && m->skip) || (depth > 1 && longer_rule_begins(v, frames[0]));
    }
    if (!e->needs_scan) {
        e->ncand = (int16_t)matching_rules(v, frames, n, e->cand);
        /* the fast path's case: the site's frames decide, and the first candidate takes
         * every size */
        if ((e->ncand == 0 || (e->ncand > 0 && policy->rules[e->cand[0]].size_min == 0 &&
                                              policy->rules[e->cand[0]].size_max >= SIZE_MAX))) {
            e->device = e->ncand ? (int)policy->rules[e->cand[0]].device : (int)policy->default_device;
            e->fixed = policy->devices[e->device].kind == MP_NEXT_ALLOCATOR ? MP_FIXED_NEXT
                       : e->device < MP_TCACHE_DEVICES                      ? MP_FIXED_CACHED
                                                                            : MP_FIXED_ARENA;
        }
    }
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    e->generation = v->generation;
    return v;
}

/* The first candidate rule whose size range fits; its hit is counted in the entry. */
static int choose(struct view *v, struct mp_site_entry *e, const uintptr_t *frames, int n,
                  size_t size)
{
    if (e->ncand < 0) {
        int r = scan_rules(v, frames, n, size);
        if (r >= 0)
            count(r, size);
        return r;
    }
    for (int i = 0; i < e->ncand; i++)
        if (size_fits(e->cand[i], size)) {
            e->count[i].hits++;
            e->count[i].bytes += size;
            return e->cand[i];
        }
    return -1;
}

/* The return address as the site's one frame when it is the program's (not in libc or
 * libstdc++, where the allocation is made on the caller's behalf); 0 frames else. For
 * when nothing can be unwound. */
static int return_address_only(const struct view *v, uintptr_t ra, uintptr_t *frames)
{
    const struct mp_module *m = mp_module_of(v->modules, ra);
    if (m && m->skip)
        return 0;
    frames[0] = ra;
    return 1;
}

/* The site's frames, by unwinding from the program's frame (or from here, through the
 * runtime's own frames, when the entry point could not say where it was); frame 0 is `ra`
 * when nothing can be unwound (no unwind tables) and `ra` is the program's own return
 * address. `cache`: the thread's unwind cache, or NULL. */
static int capture(struct mp_thread *self, const struct view *v, uintptr_t ra, uintptr_t sp,
                   uintptr_t fp, uintptr_t *frames, struct mp_unwind_cache *cache)
{
    struct mp_unwind_regs r;
    if (sp) {
        r.pc = ra, r.sp = sp, r.fp = fp, r.exact = 0;
    } else {
        MP_UNWIND_HERE(r);
    }
    int n = mp_capture(v->modules, &r, mp_walk_top(self, r.sp), cache, depth, frames, NULL);
    return n ? n : return_address_only(v, ra, frames);
}

/* The cached entry of the site whose frames are unwound from (ra, sp, fp) into frames[]
 * (*n of them), filled on a miss; *v becomes the view it was filled under. */
static struct mp_site_entry *unwound_entry(struct mp_thread *self, struct view **v, uintptr_t ra,
                                           uintptr_t sp, uintptr_t fp, uintptr_t *frames, int *n)
{
    self->unwinds++; /* the site took a whole walk: the caches did not know it */
    frames[0] = 0; /* no frames found: no frames, not `ra` (that is the return address's entry) */
    *n = capture(self, *v, ra, sp, fp, frames, &self->unwind);
    struct mp_site_entry *e = slot(self, frames);
    if (e->generation != (*v)->generation || !e->walked ||
        memcmp(e->frames, frames, MP_MAX_FRAMES * sizeof *frames) != 0)
        *v = fill(e, frames, *n, 0);
    return e;
}

/* The entry of the return address `ra` alone, filled if stale; *v becomes its view. */
static struct mp_site_entry *root(struct mp_thread *self, struct view **v, uintptr_t ra)
{
    const uintptr_t frames[MP_MAX_FRAMES] = {ra, 0, 0, 0};
    struct mp_site_entry *e = slot(self, frames);
    if (mp_unlikely(e->generation != (*v)->generation || e->frames[0] != ra || e->walked))
        *v = fill(e, frames, 1, 1);
    return e;
}

static void remember_walk(struct mp_thread *self, struct mp_site_entry *e, uintptr_t ra,
                          uintptr_t sp, uintptr_t fp);
static struct mp_walk_entry *relative_walk(struct mp_thread *self, uintptr_t ra, uintptr_t sp,
                                           uintptr_t fp);

int mp_sites_match(struct mp_thread *self, uintptr_t ra, uintptr_t sp, uintptr_t fp, size_t size)
{
    if (policy->nrules == 0 && !self)
        return -1;
    struct view *v = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    /* size rules only, or a thread being set up; without rules every site is the default
     * device's, and its entry (fixed) serves the fast path like any one-frame site */
    if ((depth == 0 && policy->nrules) || !self) {
        int r = scan_rules(v, NULL, 0, size);
        if (r >= 0)
            count(r, size);
        return r;
    }
    uintptr_t frames[MP_MAX_FRAMES] = {ra, 0, 0, 0};
    struct mp_site_entry *e = root(self, &v, ra);
    int n = 1;
    if (e->needs_scan) {
        struct mp_walk_entry *w = relative_walk(self, ra, sp, fp); /* a fixed site's */
        if (w) {
            mp_sites_count(&w->count, size);
            return w->rule;
        }
        e = unwound_entry(self, &v, ra, sp, fp, frames, &n);
        remember_walk(self, e, ra, sp, fp); /* a fixed site's next call finds it in the cache */
    }
    return choose(v, e, frames, n, size);
}

int mp_sites_match_uncached(struct mp_thread *self, uintptr_t ra, uintptr_t sp, uintptr_t fp,
                            size_t size)
{
    struct view *v = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    uintptr_t frames[MP_MAX_FRAMES] = {ra, 0, 0, 0};
    /* without a thread block (a signal handler's allocation while its thread makes one:
     * rules of one frame still know it) no walk: its stack's bounds are the block's */
    int n = depth == 0 ? 0 : self ? capture(self, v, ra, sp, fp, frames, NULL)
                                  : return_address_only(v, ra, frames);
    int r = scan_rules(v, frames, n, size);
    if (r >= 0)
        count(r, size);
    return r;
}

const uintptr_t mp_walk_pad = 0;

/* The first words a walk of fewer than MP_WALK_FIRST leaves unused: pointing at the pad,
 * which holds what they expect. */
static void pad_words(struct mp_walk_entry *w)
{
    for (int i = w->n; i < MP_WALK_FIRST; i++)
        w->word[i] = (struct mp_walk_word){&mp_walk_pad, mp_walk_pad};
}

/* Copy a walk entry; the key last (see remember_walk). */
static void copy_walk(struct mp_walk_entry *to, const struct mp_walk_entry *from)
{
    to->ra = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    for (int i = 0; i < from->n || i < MP_WALK_FIRST; i++)
        to->word[i] = from->word[i];
    to->n = from->n, to->rule = from->rule, to->device = from->device, to->fixed = from->fixed;
    to->generation = from->generation, to->count = from->count;
    to->sp = from->sp, to->fp = from->fp, to->fp_mask = from->fp_mask;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    to->ra = from->ra;
}

/* Does walk w start where a walk from (ra, sp, fp) starts? */
static int same_start(const struct mp_walk_entry *w, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    return w->ra == ra && w->sp == sp && (fp & w->fp_mask) == w->fp;
}

/* Put walk w first in `set`, the others moving down one, the oldest out (its hits into its
 * rule's totals). */
static void insert_walk(struct mp_walk_entry *set, const struct mp_walk_entry *w)
{
    flush_walk(&set[MP_WALK_WAYS - 1]);
    for (int i = MP_WALK_WAYS - 1; i > 0; i--) /* empty ones too: a walk is never in two ways */
        copy_walk(&set[i], &set[i - 1]);
    copy_walk(&set[0], w);
}

/* Make fresh's start crowded (types.h) when the set s its walks use holds no free way and holds
 * walks from fresh's start (at least two: fresh is at least its third; the others may be
 * other starts' walks: two dispatches that pick one set and call in turn must not keep
 * each other from being crowded): the first word that fresh and the newest of them read
 * at one address and found different is where its walks part. The hint takes the start's slot;
 * the start's walks leave the set (their hits counted). 1 if crowded. */
static int crowd(struct mp_thread *self, unsigned s, const struct mp_walk_entry *fresh,
                 uintptr_t fp)
{
    struct mp_walk_entry *set = self->walks[s];
    const struct mp_walk_entry *newest = NULL;
    int mine = 0;
    for (int i = 0; i < MP_WALK_WAYS; i++) {
        if (!set[i].ra)
            return 0; /* room left */
        if (same_start(&set[i], fresh->ra, fresh->sp, fp)) {
            mine++;
            if (!newest)
                newest = &set[i];
        }
    }
    if (mine < 2)
        return 0;
    const uintptr_t *split = NULL;
    for (int k = 0; newest && k < newest->n && k < fresh->n && !split; k++)
        if (newest->word[k].addr == fresh->word[k].addr &&
            newest->word[k].value != fresh->word[k].value)
            split = newest->word[k].addr;
    if (!split)
        return 0; /* nothing tells them apart */
    struct mp_crowd_hint *h = &self->crowd_hints[mp_crowd_slot_of(mp_walk_hash(fresh->ra, fresh->sp))];
    h->ra = 0; /* a signal handler's lookup finds no hint, not half of one */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    h->sp = fresh->sp, h->split = split;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    h->ra = fresh->ra;
    for (int i = 0; i < MP_WALK_WAYS; i++)
        if (same_start(&set[i], fresh->ra, fresh->sp, fp)) {
            flush_walk(&set[i]);
            set[i].ra = 0;
        }
    return 1;
}

/* Keep walk w (from its ra, sp and the start's fp) for mp_sites_fixed_walked: first in the
 * set of its key (mp_walk_key), the others moving down one, the oldest out; where it
 * went. The caller has marked the thread busy; keys are written last, so a signal
 * handler's lookup finds an entry empty, not half made. */
static struct mp_walk_entry *keep_walk(struct mp_thread *self, struct mp_walk_entry *w,
                                       uintptr_t fp)
{
    uintptr_t ra = w->ra, sp = w->sp;
    unsigned s;
    uintptr_t key = mp_walk_key(self, ra, sp, &s);
    if (key == ra && crowd(self, s, w, fp))
        key = mp_walk_key(self, ra, sp, &s);
    w->ra = key;
    insert_walk(self->walks[s], w);
    return &self->walks[s][0];
}

/* The walk from (ra, sp, fp) kept by its offsets from another depth whose words hold
 * here, made as remember_walk would make it and kept (where it went); else NULL. */
static struct mp_walk_entry *relative_walk(struct mp_thread *self, uintptr_t ra, uintptr_t sp,
                                           uintptr_t fp)
{
    struct mp_walk_entry w;
    if (!sp || !mp_rel_walks_find(self, ra, sp, fp,
                                  __atomic_load_n(&mp_sites_generation, __ATOMIC_RELAXED), &w))
        return NULL;
    pad_words(&w);
    self->relative_finds++;
    return keep_walk(self, &w, fp);
}

/* Remember the walk just made from (ra, sp, fp) (its words: the thread's last walk,
 * os/modules.c) as leading to entry e: kept, and by its words' offsets from sp too when
 * they hold at any depth. */
static void remember_walk(struct mp_thread *self, struct mp_site_entry *e, uintptr_t ra,
                          uintptr_t sp, uintptr_t fp)
{
    const struct mp_unwind_trace *t = &self->unwind.last.trace;
    if (!e->fixed || t->n < 0 || t->n > MP_WALK_WORDS ||
        self->unwind.last.pc != ra || self->unwind.last.sp != sp || self->unwind.last.fp != fp)
        return;
    uintptr_t fp_mask = t->fp_used ? ~(uintptr_t)0 : 0;
    struct mp_walk_entry fresh = {.ra = ra, .sp = sp, .fp = fp & fp_mask, .fp_mask = fp_mask,
                                  .generation = e->generation, .device = e->device,
                                  .fixed = e->fixed, .n = (uint8_t)t->n,
                                  .rule = e->ncand > 0 ? e->cand[0] : -1};
    for (int i = 0; i < t->n; i++)
        fresh.word[i] = (struct mp_walk_word){t->addr[i], t->value[i]};
    pad_words(&fresh);
    if (t->relative)
        mp_rel_walks_remember(self, &fresh, t->fp_words);
    keep_walk(self, &fresh, fp);
}

int mp_sites_fixed_slow(struct mp_thread *self, uintptr_t ra, uintptr_t sp, uintptr_t fp,
                        struct mp_site_hit *hit)
{
    if (mp_sites_fixed_walked(self, ra, sp, fp, hit, 0))
        return 1;
    struct mp_walk_entry *w = relative_walk(self, ra, sp, fp); /* made from another depth */
    if (w) {
        *hit = (struct mp_site_hit){&w->count, w->device, w->fixed};
        return 1;
    }
    struct view *v = __atomic_load_n(&current, __ATOMIC_ACQUIRE);
    struct mp_site_entry *e = root(self, &v, ra);
    /* a return address into libc or libstdc++, or one a rule of several frames begins
     * with: the walk from the program's frame decides, remembered */
    if (e->needs_scan && sp) {
        uintptr_t frames[MP_MAX_FRAMES] = {0};
        int n;
        e = unwound_entry(self, &v, ra, sp, fp, frames, &n);
        remember_walk(self, e, ra, sp, fp);
    }
    if (e->needs_scan || !e->fixed)
        return 0;
    *hit = (struct mp_site_hit){&e->count[0], e->device, e->fixed};
    return 1;
}

uint64_t mp_sites_unwinds(void)
{
    uint64_t n = 0;
    for (struct mp_thread *t = mp_threads_all(); t; t = t->next_all)
        n += t->unwinds;
    return n;
}

uint64_t mp_sites_relative_finds(void)
{
    uint64_t n = 0;
    for (struct mp_thread *t = mp_threads_all(); t; t = t->next_all)
        n += t->relative_finds;
    return n;
}

const struct mp_rule_stats *mp_sites_rule_stats(uint32_t rule) { return &rule_stats[rule]; }

static void flush_walks(struct mp_thread *t)
{
    for (int s = 0; s < MP_WALK_SETS; s++)
        for (int i = 0; i < MP_WALK_WAYS; i++)
            flush_walk(&t->walks[s][i]);
}

void mp_sites_forget_walks(struct mp_thread *t)
{
    flush_walks(t);
    memset(t->walks, 0, sizeof t->walks);
    memset(t->crowd_hints, 0, sizeof t->crowd_hints);
}

void mp_sites_modules_changed(void) { fresh_view(); }

void mp_sites_forget_stale(struct mp_thread *self)
{
    /* an exchange: a change made after it sets the flag again, one made before it is
     * seen (its view) by whatever this thread caches from now on */
    if (!__atomic_exchange_n(&self->stale, 0, __ATOMIC_ACQ_REL))
        return;
    mp_sites_forget_walks(self);
    for (int i = 0; i < MP_SITE_CACHE; i++) {
        flush_entry(&self->cache[i]);
        self->cache[i].generation = 0;
        self->cache[i].fixed = MP_FIXED_NOT; /* what the fast path tests */
    }
}

void mp_sites_flush(void)
{
    for (struct mp_thread *t = mp_threads_all(); t; t = t->next_all) {
        flush_walks(t);
        for (int i = 0; i < MP_SITE_CACHE; i++)
            flush_entry(&t->cache[i]);
    }
}
