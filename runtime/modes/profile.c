/* Profiling mode (`memplace profile`, see internal.h).
 *
 * Blocks are remembered in a side table keyed by address (never a header: the blocks are
 * the next allocator's), sharded with one spin lock per shard; sites in a table keyed by
 * their frames, found through a per-thread cache. Per site: allocations, frees, bytes,
 * live and peak live bytes (also as a placed run's device heaps would count them: their
 * size classes, blocks realloc shrinks in place), lifetimes, a power-of-two size histogram and a timeline of
 * peak live bytes in TIMELINE windows whose width doubles as the run grows, with the
 * live bytes at the moment the whole heap peaked in each window (`at_peak`). The writer
 * takes no lock and does not allocate, so it can run in a fatal signal's handler.
 *
 * Access sampling (os/sampler.c) hands each sampled data address to `on_access`, in a
 * signal handler, which finds the live block holding it without a lock. Blocks of BIG bytes
 * or more are named in start maps: per granule of 1 KiB (and 1 MiB, 1 GiB for blocks at
 * least that big), the start of the block that begins in it; at most one block that big
 * can. One word written at allocation (only while sampling), none at free: a stale entry
 * names a block that is gone or no longer starts there, which the side table tells. The
 * handler scans a map backwards from the address to the nearest live start, then probes
 * the side table for smaller blocks' starts at most BIG bytes below (blocks start
 * 16-byte aligned). Per site: samples, their weights and sampled bytes, reads and writes
 * apart, in total and per timeline window. */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>
#include <mimalloc.h>
#include "internal.h"

#define SHARDS 64
#define SHARD_SLOTS (1u << 18)    /* 16M blocks in all; beyond that blocks go untracked */
#define MAX_SITES (1u << 16)
#define SITE_SLOTS (1u << 17)
#define TIMELINE 64
#define BUCKETS 65
#define BIG 1024                  /* blocks found through the start maps from this size */
#define START_MAPS 3              /* granules of 1 KiB (= BIG), 1 MiB, 1 GiB */
#define MAP_SCAN 1024             /* granules scanned back: the next map's granule */
#define LEAF_SHIFT 20             /* entries per map leaf (8 MiB, reserved, touched as used) */
#define ADDRESS_BITS 47           /* user addresses the maps span */
#define DEFAULT_RATE 1000         /* samples per CPU-second asked of the timer */

/* slack: what a placed run's device heap would count beyond size (its size class, or the
 * bigger block a realloc shrank in place), saturated */
struct block { uintptr_t p; uint64_t size, born; uint32_t site, slack; };
struct shard { int lock; uint32_t used; struct block *slots; } __attribute__((aligned(64)));

struct site {
    uintptr_t frames[MP_MAX_FRAMES];
    uint64_t modules; /* which modules the frames lie in (modules_of): with the frames, the
                         site's identity */
    uint32_t era;     /* the loader's unloads (`subs`) when it was first seen: that era's
                         modules name its frames (os/modules.c) */
    int nframes, lock;
    uint64_t allocations, frees, bytes, live, peak;
    uint64_t live_usable, peak_usable; /* as a placed run's device heaps would count them */
    uint64_t life_sum, life_min, life_max;
    uint64_t hist[BUCKETS];
    uint32_t epoch, last_window; /* timeline width = base << epoch */
    uint64_t timeline[TIMELINE];
    /* its live bytes at the heap's peak in each window, and the heap peaks counted by its
     * last change: a later peak (heap_peak_gen above it) saw what it holds now */
    uint64_t at_peak[TIMELINE], gen;
    /* sampled accesses, [0] reads [1] writes: samples, their weights, weight x bytes
     * (weights in 1/MP_SAMPLE_UNIT of a timer expiration) */
    uint64_t samples[2], weights[2], sampled_bytes[2], last_sample[2];
    int access_lock;              /* taken with a try-lock: by signal handlers only */
    uint32_t access_epoch;
    uint64_t access_bytes[2][TIMELINE];
    uint32_t access_samples[2][TIMELINE];
};

/* granule -> start of the block of at least a granule that begins in it; leaves mapped on first use */
struct start_map { unsigned shift; uintptr_t **leaves; };

static struct shard shards[SHARDS];
static struct site **sites;   /* by id */
static uint32_t *site_slots;  /* frames hash -> id + 1 */
static uint32_t nsites;
static int sites_lock;
static uint64_t untracked, t0, window_base = 1000000; /* 1 ms */
/* the process's live bytes over every site, and their peak: what the sites' own peaks,
 * reached at different moments, overstate when summed */
static uint64_t live_total, live_total_peak;
/* The heap's peak in each window and which peak it was (peaks are numbered, ordered with
 * each site's changes by the site's lock): the sites' `at_peak` add up to it, where their
 * own peaks, reached at different moments of the window, add up to up to twice it on a
 * solver's temporaries. `merged_right[e]`: the windows of the widening from epoch e that
 * took the later half's peak. Changed under peak_lock. */
static uint64_t heap_peak[TIMELINE], heap_peak_gen[TIMELINE], peak_gen;
static uint32_t merged_right[64];
_Static_assert(TIMELINE / 2 <= 32, "merged_right: one bit per merged window");
static int peak_lock;
static uint32_t epoch;
static int depth = 3;
static char dir[3072];
static char rank[32];
static int written;
static int sampling; /* the sampler started: big blocks go into the start maps */
static struct start_map start_maps[START_MAPS] = {{10, NULL}, {20, NULL}, {30, NULL}};
static uint64_t access_outside, access_unplaced, timeline_missed;
static char profile_path[4096]; /* the file written: "<dir>/profile.<pid>[.<n>].txt" */

static uint64_t now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t mix(uintptr_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* ---- sites ---- */

/* The modules a site's frames lie in, as one number: after a module is unloaded and
 * another loaded at its addresses the same frames give another; frames in modules that
 * stay give the same in every era, so their sites are not split at each dlclose. */
static uint64_t modules_of(const struct mp_modules *mods, const uintptr_t *frames, int n)
{
    uint64_t h = 0;
    for (int i = 0; i < n; i++) {
        const struct mp_module *m = mp_module_of(mods, frames[i]);
        h = mix(h ^ (m ? m->id : 0));
    }
    return h;
}

static uint32_t site_id(const uintptr_t *frames, int n, uint64_t modules, uint32_t era)
{
    uint64_t h = mix(frames[0] ^ mix(frames[1] ^ mix(frames[2] ^ mix(frames[3] ^ modules))));
    uint32_t id = UINT32_MAX;
    mp_lock(&sites_lock);
    for (uint32_t i = 0; i < SITE_SLOTS; i++) {
        uint32_t *slot = &site_slots[(h + i) & (SITE_SLOTS - 1)];
        if (*slot == 0) {
            if (nsites == MAX_SITES)
                break;
            struct site *s = mp_internal_alloc(sizeof *s);
            if (!s)
                break;
            memcpy(s->frames, frames, sizeof s->frames);
            s->modules = modules;
            s->era = era;
            s->nframes = n;
            s->life_min = UINT64_MAX;
            s->epoch = __atomic_load_n(&epoch, __ATOMIC_RELAXED);
            __atomic_store_n(&sites[nsites], s, __ATOMIC_RELEASE);
            id = nsites;
            __atomic_store_n(&nsites, nsites + 1, __ATOMIC_RELEASE);
            *slot = id + 1;
            break;
        }
        if (sites[*slot - 1]->modules == modules &&
            memcmp(sites[*slot - 1]->frames, frames, MP_MAX_FRAMES * sizeof(uintptr_t)) == 0) {
            id = *slot - 1;
            break;
        }
    }
    mp_unlock(&sites_lock);
    return id;
}

/* The site of an allocation returning to `ra`, through this thread's cache. */
static uint32_t site_of(uintptr_t ra)
{
    struct mp_thread *self = mp_thread();
    uintptr_t frames[MP_MAX_FRAMES] = {0};
    struct mp_modules *mods = mp_modules_checked(); /* after a dlclose, an address may
                                                        name another module's code */
    if (!self || !mods)
        return UINT32_MAX;
    struct mp_unwind_regs r;
    MP_UNWIND_HERE(r);
    int end = MP_CAPTURE_FULL;
    int n = mp_capture(mods, &r, mp_walk_top(self, r.sp), &self->unwind, depth, frames, &end);
    if (n == 0) { /* nothing unwound (no tables): the raw caller stands for the site */
        frames[0] = ra;
        n = 1;
    }
    uint64_t h = mix(frames[0] ^ mix(frames[1] ^ mix(frames[2])));
    struct mp_profile_entry *e = &self->profile_cache[h % MP_PROFILE_CACHE];
    uint32_t era = (uint32_t)mods->subs;
    if (e->site_plus_one && e->era == era && memcmp(e->frames, frames, sizeof frames) == 0)
        return e->site_plus_one - 1;
    if ((mp_module_of(mods, ra) == NULL || end == MP_CAPTURE_CUT) && mp_modules_fresh() != mods) {
        /* a new site in a module loaded since the snapshot (the caller's, or one the walk
         * met: a library's constructor calling strdup): capture again with it */
        mods = mp_modules();
        era = (uint32_t)mods->subs;
        memset(frames, 0, sizeof frames);
        MP_UNWIND_HERE(r);
        n = mp_capture(mods, &r, mp_walk_top(self, r.sp), &self->unwind, depth, frames, NULL);
        if (n == 0)
            frames[0] = ra, n = 1;
    }
    uint32_t id = site_id(frames, n, modules_of(mods, frames, n), era);
    if (id != UINT32_MAX) {
        memcpy(e->frames, frames, sizeof frames);
        e->era = era;
        e->site_plus_one = id + 1;
    }
    return id;
}

static unsigned bucket(uint64_t n) { return n ? 64 - (unsigned)__builtin_clzll(n) : 0; }

/* The window of time t at the width of epoch e (the last one if the run outgrew them). */
static uint32_t window_at(uint64_t t, uint32_t e)
{
    uint64_t w = (t - t0) / (window_base << e);
    return w < TIMELINE ? (uint32_t)w : TIMELINE - 1;
}

/* Bring a site's timeline to the current width (merging windows pairwise) and fill the
 * windows since its last event with the live bytes it had then; the window of time t at
 * that width. Under the site's lock. */
static uint32_t advance(struct site *s, uint64_t t)
{
    uint32_t e = __atomic_load_n(&epoch, __ATOMIC_ACQUIRE), window = window_at(t, e);
    while (s->epoch < e) {
        /* all past now: the windows after its last event saw what it holds */
        for (uint32_t w = s->last_window + 1; w < TIMELINE; w++)
            s->timeline[w] = s->at_peak[w] = s->live;
        uint32_t right = merged_right[s->epoch];
        for (int i = 0; i < TIMELINE / 2; i++) {
            s->timeline[i] = s->timeline[2 * i] > s->timeline[2 * i + 1] ? s->timeline[2 * i]
                                                                         : s->timeline[2 * i + 1];
            s->at_peak[i] = s->at_peak[2 * i + (right >> i & 1)];
        }
        memset(&s->timeline[TIMELINE / 2], 0, sizeof s->timeline / 2);
        memset(&s->at_peak[TIMELINE / 2], 0, sizeof s->at_peak / 2);
        s->last_window /= 2;
        s->epoch++;
    }
    /* the heap peaked after its last change (and no widening came between: the index
     * would be of the old width) */
    if (__atomic_load_n(&heap_peak_gen[s->last_window], __ATOMIC_ACQUIRE) > s->gen &&
        __atomic_load_n(&epoch, __ATOMIC_ACQUIRE) == e)
        s->at_peak[s->last_window] = s->live;
    for (uint32_t w = s->last_window + 1; w <= window; w++)
        s->timeline[w] = s->at_peak[w] = s->live;
    if (window > s->last_window)
        s->last_window = window;
    return window;
}

/* The heap's live bytes were `total`, and site s's `mine`, at the high point of a change
 * of s in window w (epoch e): a new peak of the window? Under s's lock; then s's change
 * is counted among the peaks. */
static void heap_high(struct site *s, uint32_t w, uint32_t e, uint64_t total, uint64_t mine)
{
    if (total > __atomic_load_n(&heap_peak[w], __ATOMIC_RELAXED)) {
        mp_lock(&peak_lock);
        if (total > heap_peak[w] && __atomic_load_n(&epoch, __ATOMIC_RELAXED) == e) {
            heap_peak[w] = total;
            __atomic_store_n(&heap_peak_gen[w], ++peak_gen, __ATOMIC_RELAXED);
            s->at_peak[w] = mine;
        }
        mp_unlock(&peak_lock);
    }
    s->gen = __atomic_load_n(&peak_gen, __ATOMIC_RELAXED);
}

/* Double the windows' width from epoch e: each pair of the heap's windows keeps its higher
 * peak, and says which (the sites merge theirs lazily). Under peak_lock. */
static void widen(uint32_t e)
{
    uint32_t right = 0;
    for (int i = 0; i < TIMELINE / 2; i++) {
        unsigned r = heap_peak[2 * i + 1] > heap_peak[2 * i];
        right |= (uint32_t)r << i;
        heap_peak[i] = heap_peak[2 * i + r];
        heap_peak_gen[i] = heap_peak_gen[2 * i + r];
    }
    memset(&heap_peak[TIMELINE / 2], 0, sizeof heap_peak / 2);
    memset(&heap_peak_gen[TIMELINE / 2], 0, sizeof heap_peak_gen / 2);
    merged_right[e] = right;
    __atomic_store_n(&epoch, e + 1, __ATOMIC_RELEASE);
}

/* The current window. `wait`: 0 in a signal handler, which must not wait for peak_lock
 * (the thread it interrupted may hold it): the last window then, until a malloc widens. */
static uint32_t window_now(uint64_t t, int wait)
{
    for (;;) {
        uint32_t e = __atomic_load_n(&epoch, __ATOMIC_ACQUIRE);
        uint64_t w = (t - t0) / (window_base << e);
        if (w < TIMELINE)
            return (uint32_t)w;
        if (e + 1 >= 64)
            return TIMELINE - 1;
        /* the run outgrew the timeline: double the width (sites catch up lazily) */
        if (__atomic_exchange_n(&peak_lock, 1, __ATOMIC_ACQUIRE)) {
            if (!wait)
                return TIMELINE - 1;
            continue;
        }
        if (__atomic_load_n(&epoch, __ATOMIC_RELAXED) == e)
            widen(e);
        mp_unlock(&peak_lock);
    }
}

/* ---- big blocks by the granule they start in ---- */

static size_t map_top_entries(const struct start_map *m)
{
    return m->shift + LEAF_SHIFT >= ADDRESS_BITS ? 1 : (size_t)1 << (ADDRESS_BITS - m->shift - LEAF_SHIFT);
}

/* A block of BIG bytes or more at p: its start in the map of each granule size it reaches. */
static void note_big_block(uintptr_t p, uint64_t size)
{
    if ((p + size) >> ADDRESS_BITS) {
        __atomic_fetch_add(&access_unplaced, 1, __ATOMIC_RELAXED);
        return;
    }
    for (int i = 0; i < START_MAPS && size >> start_maps[i].shift; i++) {
        uintptr_t g = p >> start_maps[i].shift;
        uintptr_t **slot = &start_maps[i].leaves[g >> LEAF_SHIFT];
        uintptr_t *leaf = __atomic_load_n(slot, __ATOMIC_ACQUIRE);
        if (!leaf) {
            void *fresh = mmap(NULL, sizeof(uintptr_t) << LEAF_SHIFT, PROT_READ | PROT_WRITE,
                               MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (fresh == MAP_FAILED) {
                __atomic_fetch_add(&access_unplaced, 1, __ATOMIC_RELAXED);
                return;
            }
            if (__atomic_compare_exchange_n(slot, &leaf, fresh, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
                leaf = fresh;
            else
                munmap(fresh, sizeof(uintptr_t) << LEAF_SHIFT); /* another thread's leaf won */
        }
        __atomic_store_n(&leaf[g & (((uintptr_t)1 << LEAF_SHIFT) - 1)], p, __ATOMIC_RELAXED);
    }
}

/* The start map i names for granule g, or 0. */
static uintptr_t map_get(int i, uintptr_t g)
{
    const uintptr_t *leaf = __atomic_load_n(&start_maps[i].leaves[g >> LEAF_SHIFT], __ATOMIC_ACQUIRE);
    return leaf ? __atomic_load_n(&leaf[g & (((uintptr_t)1 << LEAF_SHIFT) - 1)], __ATOMIC_RELAXED) : 0;
}

/* Is a live block starting at p in the side table? Its size and site, read without a lock. */
static int block_starting(uintptr_t p, uint64_t *size, uint32_t *site)
{
    const struct shard *sh = &shards[mix(p) % SHARDS];
    uint32_t j = (uint32_t)(mix(p) >> 20) & (SHARD_SLOTS - 1);
    for (int n = 0; n < 64; n++, j = (j + 1) & (SHARD_SLOTS - 1)) {
        uintptr_t q = __atomic_load_n(&sh->slots[j].p, __ATOMIC_ACQUIRE);
        if (!q)
            return 0;
        if (q == p) {
            *size = sh->slots[j].size;
            *site = sh->slots[j].site;
            return 1;
        }
    }
    return 0;
}

/* The site of the live block holding address a, or UINT32_MAX. Lock-free reads of tables
 * other threads may be changing: an entry read half-written is checked (the address must
 * lie in it, the site must exist), so at worst a sample is lost or, during a concurrent
 * free, counted to the block just freed. */
static uint32_t site_at(uintptr_t a)
{
    uint32_t count = __atomic_load_n(&nsites, __ATOMIC_ACQUIRE), site;
    uint64_t size;
    uintptr_t floor = 0; /* no block holding a starts below this */
    /* the nearest live big block starting at or below a: a's block, or no big block holds a
     * (another would overlap it); a map's scan reaches the next map's granule */
    for (int i = 0; i < START_MAPS && !floor && !(a >> ADDRESS_BITS); i++) {
        uintptr_t g = a >> start_maps[i].shift;
        for (int k = 0; k < MAP_SCAN && !floor; k++, g--) {
            uintptr_t p = map_get(i, g);
            if (p && p <= a && block_starting(p, &size, &site)) {
                if (a < p + size)
                    return site < count ? site : UINT32_MAX;
                floor = p + size;
            }
            if (g == 0)
                break;
        }
    }
    /* a smaller block: the nearest start at or below a within BIG bytes */
    for (uintptr_t p = a & ~(uintptr_t)15, k = 0; k < BIG / 16 && p >= floor && p; k++, p -= 16)
        if (block_starting(p, &size, &site))
            return a < p + size && site < count ? site : UINT32_MAX;
    return UINT32_MAX;
}

/* Bring a site's access timeline to the current width; under its access lock. */
static void advance_access(struct site *s, uint32_t e)
{
    while (s->access_epoch < e) {
        for (int k = 0; k < 2; k++) {
            for (int i = 0; i < TIMELINE / 2; i++) {
                s->access_bytes[k][i] = s->access_bytes[k][2 * i] + s->access_bytes[k][2 * i + 1];
                s->access_samples[k][i] = s->access_samples[k][2 * i] + s->access_samples[k][2 * i + 1];
            }
            memset(&s->access_bytes[k][TIMELINE / 2], 0, sizeof s->access_bytes[k] / 2);
            memset(&s->access_samples[k][TIMELINE / 2], 0, sizeof s->access_samples[k] / 2);
        }
        s->access_epoch++;
    }
}

/* The sampler's hook, in a signal handler: no lock waited for, no allocation. */
static void on_access(uintptr_t address, int access, unsigned size, uint32_t weight, uint64_t sample)
{
    uint32_t id = site_at(address);
    if (id == UINT32_MAX) {
        __atomic_fetch_add(&access_outside, 1, __ATOMIC_RELAXED);
        return;
    }
    struct site *s = sites[id];
    uint64_t t = now();
    window_now(t, 0); /* widens the windows first if the run outgrew them */
    uint32_t e = __atomic_load_n(&epoch, __ATOMIC_ACQUIRE), w = window_at(t, e);
    int fresh[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        if (!(access & (k ? MP_ACCESS_WRITE : MP_ACCESS_READ)))
            continue;
        /* a sample counts once per site however many of its accesses it credits there */
        fresh[k] = __atomic_exchange_n(&s->last_sample[k], sample, __ATOMIC_RELAXED) != sample;
        if (fresh[k])
            __atomic_fetch_add(&s->samples[k], 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->weights[k], weight, __ATOMIC_RELAXED);
        __atomic_fetch_add(&s->sampled_bytes[k], (uint64_t)weight * size, __ATOMIC_RELAXED);
    }
    if (__atomic_exchange_n(&s->access_lock, 1, __ATOMIC_ACQUIRE)) {
        __atomic_fetch_add(&timeline_missed, 1, __ATOMIC_RELAXED); /* another thread's sample of this site, this instant */
        return;
    }
    advance_access(s, e);
    for (int k = 0; k < 2; k++)
        if (access & (k ? MP_ACCESS_WRITE : MP_ACCESS_READ)) {
            s->access_bytes[k][w] += (uint64_t)weight * size;
            s->access_samples[k][w] += (uint32_t)fresh[k];
        }
    mp_unlock(&s->access_lock);
}

static void record(void *p, size_t size, uint64_t usable, uintptr_t ra)
{
    if (!p)
        return;
    uint32_t id = site_of(ra);
    if (id == UINT32_MAX) {
        __atomic_fetch_add(&untracked, 1, __ATOMIC_RELAXED);
        return;
    }
    uint64_t t = now();
    struct shard *sh = &shards[mix((uintptr_t)p) % SHARDS];
    mp_lock(&sh->lock);
    int stored = 0;
    if (sh->used < SHARD_SLOTS - SHARD_SLOTS / 8) {
        uint32_t i = (uint32_t)(mix((uintptr_t)p) >> 20) & (SHARD_SLOTS - 1);
        while (sh->slots[i].p && sh->slots[i].p != (uintptr_t)p)
            i = (i + 1) & (SHARD_SLOTS - 1);
        if (!sh->slots[i].p)
            sh->used++;
        uint64_t slack = usable - size < UINT32_MAX ? usable - size : UINT32_MAX;
        usable = size + slack; /* what forget() will take back */
        sh->slots[i] = (struct block){(uintptr_t)p, size, t, id, (uint32_t)slack};
        stored = 1;
    }
    mp_unlock(&sh->lock);
    if (!stored)
        __atomic_fetch_add(&untracked, 1, __ATOMIC_RELAXED);
    else if (size >= BIG && __atomic_load_n(&sampling, __ATOMIC_RELAXED))
        note_big_block((uintptr_t)p, size);
    struct site *s = sites[id];
    window_now(t, 1); /* widens the windows first if the run outgrew them */
    mp_lock(&s->lock);
    uint32_t w = advance(s, t);
    s->allocations++;
    s->bytes += size;
    s->hist[bucket(size)]++;
    if (stored) {
        s->live += size;
        if (s->live > s->peak)
            s->peak = s->live;
        s->live_usable += usable;
        if (s->live_usable > s->peak_usable)
            s->peak_usable = s->live_usable;
        if (s->live > s->timeline[w])
            s->timeline[w] = s->live;
        uint64_t live = __atomic_add_fetch(&live_total, size, __ATOMIC_RELAXED);
        heap_high(s, w, s->epoch, live, s->live);
        uint64_t peak = __atomic_load_n(&live_total_peak, __ATOMIC_RELAXED);
        while (live > peak && !__atomic_compare_exchange_n(&live_total_peak, &peak, live, 1,
                                                            __ATOMIC_RELAXED, __ATOMIC_RELAXED))
            ;
    }
    mp_unlock(&s->lock);
}

/* Remove p from its shard (linear probing, backward-shift deletion); 0 if unknown. */
static int take(uintptr_t p, struct block *out)
{
    struct shard *sh = &shards[mix(p) % SHARDS];
    mp_lock(&sh->lock);
    uint32_t i = (uint32_t)(mix(p) >> 20) & (SHARD_SLOTS - 1);
    while (sh->slots[i].p && sh->slots[i].p != p)
        i = (i + 1) & (SHARD_SLOTS - 1);
    if (!sh->slots[i].p) {
        mp_unlock(&sh->lock);
        return 0;
    }
    *out = sh->slots[i];
    uint32_t hole = i;
    for (uint32_t j = (i + 1) & (SHARD_SLOTS - 1); sh->slots[j].p; j = (j + 1) & (SHARD_SLOTS - 1)) {
        uint32_t home = (uint32_t)(mix(sh->slots[j].p) >> 20) & (SHARD_SLOTS - 1);
        /* move j into the hole unless its home lies cyclically in (hole, j] */
        int stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            sh->slots[hole] = sh->slots[j];
            hole = j;
        }
    }
    sh->slots[hole].p = 0;
    sh->used--;
    mp_unlock(&sh->lock);
    return 1;
}

/* Forget block p; its usable size as a placed run would count it, or 0 if unknown. */
static uint64_t forget(void *p)
{
    struct block b;
    if (!p || !take((uintptr_t)p, &b))
        return 0;
    uint64_t t = now();
    uint64_t life = t - b.born;
    struct site *s = sites[b.site];
    window_now(t, 1);
    mp_lock(&s->lock);
    uint32_t w = advance(s, t);
    s->frees++;
    /* the heap's high point of a free is just before it */
    heap_high(s, w, s->epoch, __atomic_fetch_sub(&live_total, b.size, __ATOMIC_RELAXED), s->live);
    s->live -= b.size;
    s->live_usable -= b.size + b.slack;
    s->life_sum += life;
    if (life < s->life_min) s->life_min = life;
    if (life > s->life_max) s->life_max = life;
    mp_unlock(&s->lock);
    return b.size + b.slack;
}

void mp_profile_forget(void *p) { forget(p); }

void *mp_profile_malloc(size_t n, uintptr_t ra)
{
    void *p = mp_next.malloc(n);
    record(p, n, mi_good_size(n), ra);
    return p;
}

void *mp_profile_calloc(size_t n, size_t size, uintptr_t ra)
{
    void *p = mp_next.calloc(n, size);
    record(p, n * size, mi_good_size(n * size), ra); /* no overflow: calloc succeeded */
    return p;
}

void *mp_profile_aligned(size_t align, size_t n, uintptr_t ra)
{
    void *p = mp_next.memalign(align, n);
    record(p, n, mi_good_size(n), ra);
    return p;
}

/* A realloc is the end of one block and the start of another, at realloc's call site. */
void *mp_profile_realloc(void *p, size_t n, uintptr_t ra)
{
    void *q = mp_next.realloc(p, n);
    uint64_t old = p && (q || n == 0) ? forget(p) : 0;
    /* a placed run keeps a block that still fits at least half used where it is */
    record(q, n, n <= old && n >= old / 2 ? old : mi_good_size(n), ra);
    return q;
}

/* ---- output: "<dir>/profile.<pid>.txt" (".<pid>.<n>.txt" for a later image of the pid,
 * after exec), written without locks or malloc ---- */

/* "sampling STATE rate R signal S cpu_ns N samples N expirations N in_kernel N
 * not_decoded N no_memory N credited N memory N not_heap N clobbered N outside N unplaced N timeline_missed N
 * handler_ns N"
 * and "sampling_why TEXT" when it is not "on" */
static void put_sampling(struct mp_writer *o)
{
    static const char *names[] = {"off", "on", "failed", "stopped", "on"};
    const char *why;
    int sig, rate;
    int st = mp_sampler_state(&why, &sig, &rate);
    const struct mp_sampler_counts *c = mp_sampler_counts();
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    mp_put(o, "\nsampling "), mp_put(o, names[st]);
    mp_put(o, " rate"), mp_put_u64(o, (uint64_t)rate);
    mp_put(o, " signal"), mp_put_u64(o, (uint64_t)sig);
    mp_put(o, " cpu_ns"), mp_put_u64(o, (uint64_t)cpu.tv_sec * 1000000000ull + (uint64_t)cpu.tv_nsec);
    mp_put(o, " samples"), mp_put_u64(o, c->samples);
    mp_put(o, " expirations"), mp_put_u64(o, c->expirations);
    mp_put(o, " in_kernel"), mp_put_u64(o, c->in_kernel);
    mp_put(o, " not_decoded"), mp_put_u64(o, c->not_decoded);
    mp_put(o, " no_memory"), mp_put_u64(o, c->no_memory);
    mp_put(o, " credited"), mp_put_u64(o, c->credited);
    mp_put(o, " memory"), mp_put_u64(o, c->memory);
    mp_put(o, " not_heap"), mp_put_u64(o, c->not_heap);
    mp_put(o, " clobbered"), mp_put_u64(o, c->clobbered);
    mp_put(o, " outside"), mp_put_u64(o, access_outside);
    mp_put(o, " unplaced"), mp_put_u64(o, access_unplaced);
    mp_put(o, " timeline_missed"), mp_put_u64(o, timeline_missed);
    mp_put(o, " handler_ns"), mp_put_u64(o, c->handler_ns);
    if (st != MP_SAMPLER_ON && st != MP_SAMPLER_FINISHED)
        mp_put(o, "\nsampling_why "), mp_put(o, why);
}

/* " access N_R N_W WEIGHT_R WEIGHT_W BYTES_R BYTES_W" and the four timelines */
static void put_accesses(struct mp_writer *o, struct site *s, uint32_t w)
{
    advance_access(s, __atomic_load_n(&epoch, __ATOMIC_ACQUIRE)); /* unlocked: the sampler is stopped */
    mp_put(o, " access");
    mp_put_u64(o, s->samples[0]), mp_put_u64(o, s->samples[1]);
    mp_put_u64(o, s->weights[0]), mp_put_u64(o, s->weights[1]);
    mp_put_u64(o, s->sampled_bytes[0]), mp_put_u64(o, s->sampled_bytes[1]);
    static const char *names[2][2] = {{" read_bytes", " write_bytes"}, {" read_samples", " write_samples"}};
    for (int k = 0; k < 2; k++) {
        mp_put(o, names[0][k]);
        for (uint32_t i = 0; i <= w && i < TIMELINE; i++)
            mp_put_u64(o, s->access_bytes[k][i]);
        mp_put(o, names[1][k]);
        for (uint32_t i = 0; i <= w && i < TIMELINE; i++)
            mp_put_u64(o, s->access_samples[k][i]);
    }
}

void mp_profile_write(void)
{
    if (__atomic_exchange_n(&written, 1, __ATOMIC_ACQ_REL))
        return;
    int saved = errno;
    mp_sampler_finish();
    static struct mp_writer o; /* static: a signal handler's stack may be small */
    o.n = 0;
    o.fd = mp_create_numbered(profile_path, sizeof profile_path, dir, "profile");
    if (o.fd < 0) {
        profile_path[0] = 0;
        errno = saved;
        return;
    }
    uint64_t t = now();
    uint32_t w = window_now(t, 0), e = __atomic_load_n(&epoch, __ATOMIC_ACQUIRE);
    mp_put(&o, "memplace-profile 1\npid");
    mp_put_u64(&o, (uint64_t)getpid());
    mp_put(&o, "\nrank "), mp_put(&o, rank[0] ? rank : "-");
    mp_put(&o, "\nclock_ns"), mp_put_u64(&o, t - t0);
    mp_put(&o, "\nwindow_ns"), mp_put_u64(&o, window_base << e);
    mp_put(&o, "\nwindows"), mp_put_u64(&o, w + 1);
    mp_put(&o, "\nuntracked"), mp_put_u64(&o, untracked);
    mp_put(&o, "\npeak_live_total"), mp_put_u64(&o, __atomic_load_n(&live_total_peak, __ATOMIC_RELAXED));
    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = 0;
    mp_put(&o, "\nexe "), mp_put(&o, exe);
    put_sampling(&o);
    mp_put(&o, "\n");
    /* every module ever seen, by snapshot: "modules ERA", then "module BASE LO HI
     * BUILD_ID|- PATH" for each of its modules */
    for (struct mp_modules *m = mp_modules(); m; m = m->previous) {
        mp_put(&o, "modules"), mp_put_u64(&o, (uint32_t)m->subs), mp_put(&o, "\n");
        for (int i = 0; i < m->n; i++) {
            mp_put(&o, "module"), mp_put_hex(&o, m->modules[i].base), mp_put_hex(&o, m->modules[i].lo),
                mp_put_hex(&o, m->modules[i].hi);
            mp_put(&o, " "), mp_put(&o, m->modules[i].build_id[0] ? m->modules[i].build_id : "-");
            mp_put(&o, " "), mp_put(&o, m->modules[i].path ? m->modules[i].path : ""), mp_put(&o, "\n");
        }
    }
    uint32_t count = __atomic_load_n(&nsites, __ATOMIC_ACQUIRE);
    for (uint32_t id = 0; id < count; id++) {
        struct site *s = sites[id];
        advance(s, t); /* unlocked: the program is ending */
        mp_put(&o, "site"), mp_put_u64(&o, id), mp_put_u64(&o, (uint64_t)s->nframes);
        for (int f = 0; f < s->nframes; f++)
            mp_put_hex(&o, s->frames[f]);
        mp_put(&o, " counts"), mp_put_u64(&o, s->allocations), mp_put_u64(&o, s->frees), mp_put_u64(&o, s->bytes),
            mp_put_u64(&o, s->live), mp_put_u64(&o, s->peak);
        mp_put(&o, " usable"), mp_put_u64(&o, s->peak_usable);
        mp_put(&o, " life"), mp_put_u64(&o, s->life_sum), mp_put_u64(&o, s->frees ? s->life_min : 0),
            mp_put_u64(&o, s->life_max);
        mp_put(&o, " hist");
        for (int b = 0; b < BUCKETS; b++)
            if (s->hist[b])
                mp_put_u64(&o, (uint64_t)b), mp_put_u64(&o, s->hist[b]);
        mp_put(&o, " timeline");
        int apart = 0; /* at_peak only where it says more than timeline (temporaries) */
        for (uint32_t i = 0; i <= w && i < TIMELINE; i++)
            mp_put_u64(&o, s->timeline[i]), apart |= s->at_peak[i] != s->timeline[i];
        if (apart) {
            mp_put(&o, " at_peak");
            for (uint32_t i = 0; i <= w && i < TIMELINE; i++)
                mp_put_u64(&o, s->at_peak[i]);
        }
        if (sampling)
            put_accesses(&o, s, w);
        if (s->era) /* the modules of its era name its frames */
            mp_put(&o, " era"), mp_put_u64(&o, s->era);
        mp_put(&o, "\n");
    }
    mp_put(&o, "end\n");
    mp_flush(&o);
    close(o.fd);
    errno = saved;
}

/* An exec that wrote the profile failed: the process goes on, and writes it again at its end. */
void mp_profile_rollback(void)
{
    int saved = errno;
    if (profile_path[0])
        unlink(profile_path);
    profile_path[0] = 0;
    __atomic_store_n(&written, 0, __ATOMIC_RELEASE);
    mp_sampler_resume(); /* writing the profile stopped the sampling */
    errno = saved;
}

/* ---- death by signal: write the profile, then die the same way ---- */

static const int fatal[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT, SIGTERM, SIGINT,
                            SIGQUIT, SIGHUP, SIGXCPU, SIGXFSZ};

static void on_fatal(int sig)
{
    mp_profile_write();
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    mp_sigaction(sig, &dfl, NULL);
    raise(sig);
}

static void catch_fatal_signals(void)
{
    for (size_t i = 0; i < sizeof fatal / sizeof fatal[0]; i++) {
        struct sigaction old;
        if (mp_sigaction(fatal[i], NULL, &old) == 0 && old.sa_handler == SIG_DFL &&
            !(old.sa_flags & SA_SIGINFO)) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_fatal;
            sa.sa_flags = SA_RESETHAND | SA_NODEFER;
            sigemptyset(&sa.sa_mask);
            mp_sigaction(fatal[i], &sa, NULL); /* only where the program kept the default */
        }
    }
}

/* MEMPLACE_SAMPLE_RATE samples per CPU-second (0: none; unset: DEFAULT_RATE). A sampler
 * that cannot start leaves the profile saying why (put_sampling), never zeros. */
static void start_sampling(void)
{
    const char *r = getenv("MEMPLACE_SAMPLE_RATE");
    long rate = DEFAULT_RATE;
    if (r && *r) {
        rate = 0;
        for (const char *c = r; *c >= '0' && *c <= '9' && rate < 1000000; c++)
            rate = rate * 10 + (*c - '0');
    }
    if (rate > 0) {
        for (int i = 0; i < START_MAPS; i++) {
            void *m = mmap(NULL, map_top_entries(&start_maps[i]) * sizeof(uintptr_t *), PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (m == MAP_FAILED) {
                for (int j = 0; j < i; j++) /* give the address space back to the program */
                    munmap(start_maps[j].leaves, map_top_entries(&start_maps[j]) * sizeof(uintptr_t *));
                mp_sampler_refuse("cannot map the start maps of big blocks");
                return;
            }
            start_maps[i].leaves = m;
        }
        __atomic_store_n(&sampling, 1, __ATOMIC_RELEASE);
    }
    mp_sampler_start((int)rate, on_access); /* on failure the profile carries the reason */
}

static const char *rank_variables[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK",
                                       "SLURM_PROCID", "MV2_COMM_WORLD_RANK"};

int mp_profile_start(const char *d, const char **why)
{
    size_t len = strlen(d);
    if (len + 64 > sizeof dir) {
        *why = "profile directory path too long";
        return -1;
    }
    memcpy(dir, d, len + 1);
    const char *ds = getenv("MEMPLACE_PROFILE_DEPTH");
    if (ds && *ds >= '1' && *ds <= '4' && ds[1] == 0)
        depth = *ds - '0';
    for (size_t i = 0; i < sizeof rank_variables / sizeof rank_variables[0]; i++) {
        const char *r = getenv(rank_variables[i]);
        if (r && *r && strlen(r) < sizeof rank) {
            memcpy(rank, r, strlen(r) + 1);
            break;
        }
    }
    sites = mp_internal_alloc(MAX_SITES * sizeof *sites);
    site_slots = mp_internal_alloc(SITE_SLOTS * sizeof *site_slots);
    for (int i = 0; i < SHARDS && sites && site_slots; i++) {
        void *m = mmap(NULL, SHARD_SLOTS * sizeof(struct block), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED)
            break;
        shards[i].slots = m;
    }
    if (!sites || !site_slots || !shards[SHARDS - 1].slots) {
        /* give the address space back: under `ulimit -v` the program needs it (its malloc
         * returned NULL when the shards mapped so far stayed) */
        for (int i = 0; i < SHARDS && shards[i].slots; i++) {
            munmap(shards[i].slots, SHARD_SLOTS * sizeof(struct block));
            shards[i].slots = NULL;
        }
        *why = "cannot map the profile tables";
        return -1;
    }
    if (!mp_modules()) {
        *why = "cannot read the loaded modules";
        return -1;
    }
    mp_threads_init();
    t0 = now();
    catch_fatal_signals();
    start_sampling();
    return 0;
}

void mp_profile_fork_prepare(void)
{
    mp_lock(&sites_lock);
    for (int i = 0; i < SHARDS; i++)
        mp_lock(&shards[i].lock);
    /* the sites too: a change waits for peak_lock holding its site's lock, which the child
     * would find taken by a thread it does not have */
    for (uint32_t id = 0; id < nsites; id++)
        mp_lock(&sites[id]->lock);
    mp_lock(&peak_lock);
}

void mp_profile_fork_release(void)
{
    mp_unlock(&peak_lock);
    for (uint32_t id = nsites; id-- > 0;)
        mp_unlock(&sites[id]->lock);
    for (int i = SHARDS - 1; i >= 0; i--)
        mp_unlock(&shards[i].lock);
    mp_unlock(&sites_lock);
}
