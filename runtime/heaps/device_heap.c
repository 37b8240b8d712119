/* Device heaps: allocation on a device or along its fallback chain, the fast path, free,
 * usable size and in-place resize. The top file of heaps/: it routes a block to the
 * device's arenas (arena.c), a growth area (growth_area.c) or a direct mapping
 * (direct_map.c), keeps freed small blocks in the thread's cache (block_cache.c) and
 * counts live bytes against the capacity (accounting.c). */
#define _GNU_SOURCE
#include <mimalloc.h>
#include "internal.h"

#define MI_ALIGN_MAX (64u << 10)

static int next_dev = -1; /* the next allocator's device: where allocations that reach the
                             end of a chain are counted */
/* mi_good_size of small sizes, by 8-byte step: the fast path's usable size without a call */
MP_HIDDEN uint32_t mp_small_usable[MP_SMALL_SIZES];
MP_HIDDEN uint16_t *mp_slice_class; /* per 64 KiB of the reserved range (internal.h) */
_Static_assert(MP_TCACHE_BINS == MI_SMALL_SIZE_MAX / 8, "a bin for each small usable size but 0");
_Static_assert(MP_TCACHE_SMALL == MI_SMALL_SIZE_MAX, "the block cache's sizes are mimalloc's small ones");

int mp_device_heaps_init(const struct mp_policy *policy, const char **why)
{
    if (mp_arenas_init(policy, why))
        return -1;
    for (int i = mp_ndevices - 1; i >= 0; i--)
        if (policy->devices[i].kind == MP_NEXT_ALLOCATOR)
            next_dev = i;
    for (size_t i = 0; i < MP_SMALL_SIZES; i++) {
        size_t usable = mi_good_size(i * 8);
        mp_small_usable[i] = (uint32_t)(usable < 8 ? 8 : usable); /* the block cache has no bin for 0 */
    }
    mp_slice_class = mp_internal_alloc(((mp_region_size >> MP_SLICE_SHIFT) + 1) * sizeof *mp_slice_class);
    if (!mp_slice_class) {
        *why = "cannot map the table of block sizes";
        return -1;
    }
    return 0;
}

/* Count an allocation served on device `dev`; past the thread's credit, publish its
 * pending bytes (so the device's peak is seen within its step) and take a new credit,
 * so the next allocations take the fast path. */
static inline void count(struct mp_thread *self, struct mp_device_heap *h, int dev, size_t size,
                         size_t usable)
{
    mp_count(self, dev, size, (int64_t)usable);
    struct mp_device_counters *c = self ? &self->devices[dev] : NULL;
    if (c && mp_unlikely(c->live_pending + MP_TCACHE_SMALL > c->credit))
        mp_publish_pending(h, c);
}

/* The common case: a plain allocation from this thread's theap of the newest arena. */
static inline void *theap_alloc(struct mp_thread *self, struct mp_device_heap *h, int dev, size_t size)
{
    int n = __atomic_load_n(&h->narenas, __ATOMIC_ACQUIRE);
    if (!self || n == 0)
        return NULL;
    if (mp_unlikely(self->theap_of[dev] != n)) {
        self->theaps[dev] = mi_heap_theap(h->heaps[n - 1]);
        self->theap_of[dev] = n;
    }
    mi_theap_t *th = self->theaps[dev];
    if (!th)
        return NULL;
    void *p = size <= MI_SMALL_SIZE_MAX ? mi_theap_malloc_small(th, size) : mi_theap_malloc(th, size);
    if (p)
        mp_slice_note(p, size, 0);
    return p;
}

/* The common case, kept short: a plain block below MP_EXACT_BYTES from this thread's theap
 * of the device's newest arena, ready since an earlier allocation; NULL for anything else
 * (mp_device_heap_alloc then decides, falls back and counts). */
void *mp_device_heap_alloc_fast(struct mp_thread *self, int dev, size_t size, int zero)
{
    struct mp_device_heap *h = &mp_device_heaps[dev];
    mi_theap_t *th = self->theaps[dev];
    if (mp_unlikely(!th || self->theap_of[dev] != __atomic_load_n(&h->narenas, __ATOMIC_RELAXED) ||
                    h->dead || size >= MP_EXACT_BYTES || mp_device_full(self, dev, size)))
        return NULL;
    void *p;
    size_t usable;
    if (size <= MI_SMALL_SIZE_MAX) {
        usable = mp_small_usable[(size + 7) / 8];
        p = !zero && dev < MP_TCACHE_DEVICES ? mp_block_cache_pop(self, dev, usable) : NULL;
        if (!p && (p = zero ? mi_theap_zalloc_small(th, size) : mi_theap_malloc_small(th, size)))
            mp_slice_note(p, size, 0);
    } else {
        p = zero ? mi_theap_zalloc(th, size) : mi_theap_malloc(th, size);
        usable = mi_good_size(size);
        if (p)
            mp_slice_note(p, size, 0);
    }
    if (mp_unlikely(!p))
        return NULL;
    count(self, h, dev, size, usable);
    return p;
}

void *mp_device_heap_alloc(struct mp_thread *self, int dev, size_t size, size_t align, int zero,
                           int *served)
{
    for (int hops = 0; dev >= 0 && hops <= mp_ndevices; hops++) {
        struct mp_device_heap *h = &mp_device_heaps[dev];
        if (h->spec->kind == MP_NEXT_ALLOCATOR)
            break;
        int reason = MP_FULL;
        if (mp_device_full(self, dev, size)) {
            reason = MP_FULL;
        } else if (!h->dead && align > MI_ALIGN_MAX) {
            void *p = mp_direct_map(h, size, align); /* fresh mapping: already zero */
            if (p) {
                mp_count(self, dev, size, (int64_t)mp_direct_length(h, p, 0));
                *served = dev;
                return p;
            }
            reason = MP_ALIGNMENT;
        } else if (!h->dead) {
            void *p = !align && !zero ? theap_alloc(self, h, dev, size) : NULL;
            if (!p && (p = mp_arena_alloc(h, dev, size, align, zero)))
                mp_slice_note(p, size, align);
            if (p) {
                /* below 512 KiB mimalloc's size classes give the usable size without asking
                 * the block's page (checked against mi_usable_size for mimalloc 3.4) */
                size_t usable = !align && size < MP_EXACT_BYTES ? mi_good_size(size) : mi_usable_size(p);
                count(self, h, dev, size, usable);
                *served = dev;
                return p;
            }
        }
        if (h->dead)
            reason = h->dead;
        __atomic_fetch_add(&h->stats.fallbacks[reason], 1, __ATOMIC_RELAXED);
        dev = h->spec->fallback;
    }
    *served = dev >= 0 ? dev : next_dev; /* the next allocator serves */
    return NULL;
}

/* A growth area's block or a direct one. */
static void free_special(struct mp_thread *self, void *p, unsigned unit)
{
    int dev = (int)(unit & MP_UNIT_DEVICE);
    struct mp_device_heap *h = &mp_device_heaps[dev];
    struct mp_growth *g = mp_growth_of(h, p);
    uint64_t gone = g ? mp_growth_release(h, g, p) : mp_direct_length(h, p, 1);
    if (gone && !g)
        mp_os_back_anonymous(p, gone, -1, 0); /* memory returned, address kept */
    mp_add_live(self, dev, -(int64_t)gone); /* 0: not a live block of ours, ignored */
}

/* Free a block of `block` usable bytes: into the thread's cache when small and there is
 * room, else back to mimalloc. */
static void release(struct mp_thread *self, int dev, void *p, size_t block)
{
    if (block <= MP_TCACHE_SMALL) {
        mp_add_live_small(self, dev, -(int64_t)block);
        if (mp_block_cache_push(self, dev, p, block))
            return;
    } else {
        mp_add_live(self, dev, -(int64_t)block);
    }
    mi_free(p);
}

/* A block of a device beyond the block cache's, or freed by a thread without a block. */
static void free_uncached(struct mp_thread *self, void *p, int dev)
{
    size_t block;
    mi_ufree(p, &block); /* frees and tells the usable size: one page lookup, not two */
    mp_add_live(self, dev, -(int64_t)block);
}

/* A block's unit (its device, with MP_UNIT_SPECIAL in the special part) and, for a small
 * block, its usable size from its slice (internal.h); else 0: ask mimalloc's page. */
static inline unsigned unit_of_block(const void *p, size_t *block)
{
    uintptr_t off = (uintptr_t)p - mp_region_base;
    if (mp_likely(off < mp_region_size)) {
        *block = (size_t)(mp_slice_class[off >> MP_SLICE_SHIFT] & 0xffu) * 8;
        return mp_units[off >> mp_unit_shift];
    }
    *block = 0;
    return (unsigned)mp_extent_of(p);
}

void mp_device_heap_free_inside(struct mp_thread *self, void *p)
{
    size_t block;
    unsigned unit = unit_of_block(p, &block);
    if (unit & MP_UNIT_SPECIAL)
        free_special(self, p, unit);
    else if (!self || unit >= MP_TCACHE_DEVICES)
        free_uncached(self, p, (int)unit);
    else /* a size the slice does not give: mimalloc's page does */
        release(self, (int)unit, p, mp_block_cache_size(block) ? block : mi_usable_size(p));
}

void mp_device_heap_defer_free(struct mp_thread *self, void *p)
{
    void *head = __atomic_load_n(&self->deferred, __ATOMIC_RELAXED);
    do /* a handler nested in this one may push between the load and the exchange */
        *(void **)p = head;
    while (!__atomic_compare_exchange_n(&self->deferred, &head, p, 1, __ATOMIC_RELEASE,
                                        __ATOMIC_RELAXED));
}

void mp_device_heap_free_deferred_now(struct mp_thread *self)
{
    void *p = __atomic_exchange_n(&self->deferred, NULL, __ATOMIC_ACQUIRE);
    while (p) {
        void *next = *(void **)p;
        mp_device_heap_free_inside(self, p);
        p = next;
    }
}

/* free() of what the common case below leaves: a signal handler's (deferred), a thread
 * without a block, a block outside the block cache; inside placement for the time. */
MP_COLD __attribute__((noinline)) static void free_rare(struct mp_thread *self, void *p)
{
    if (self && self->busy) {
        mp_device_heap_defer_free(self, p);
        return;
    }
    if (self)
        mp_set_busy(self, 1);
    mp_device_heap_free_inside(self, p);
    if (self) {
        mp_device_heap_free_deferred(self);
        mp_set_busy(self, 0);
    }
}

/* release_small()'s rare case: a batch of live bytes to publish, a full cache. Out of
 * line, so the common case saves no registers; leaves placement. */
MP_COLD __attribute__((noinline)) static void release_slow(struct mp_thread *self, int dev,
                                                           void *p, size_t block)
{
    release(self, dev, p, block);
    mp_device_heap_free_deferred(self);
    mp_set_busy(self, 0);
}

/* The common case of release() for a small block, inline, the thread inside placement:
 * into the thread's cache while the live bytes stay within their batch (anything else is
 * one tail call); then leaves placement. */
static inline void release_small(struct mp_thread *self, int dev, void *p, size_t block)
{
    struct mp_device_counters *c = &self->devices[dev];
    int64_t live = c->live_pending - (int64_t)block;
    if (mp_unlikely(!mp_live_in_batch(live) || mp_block_cache_full(self, dev, block))) {
        release_slow(self, dev, p, block);
        return;
    }
    c->live_pending = live;
    mp_block_cache_push(self, dev, p, block);
    mp_set_busy(self, 0);
}

/* A pointer outside the reserved range: a block of a device's extent, of the boot area,
 * or of the next allocator. */
MP_COLD __attribute__((noinline)) static void free_beyond_range(void *p)
{
    if (mp_device_heap_owns(p))
        free_rare(mp_self, p);
    else if (mp_boot_owns(p))
        mp_boot_release(p);
    else
        mp_next.free(p);
}

/* Without a call on the common case: a small block of a cached device, freed by a thread
 * not inside placement already, into its block cache; anything else is free_rare(), or
 * free_beyond_range() for what the reserved range does not hold. The range is tested
 * once, here: free() in placement mode jumps straight to this. */
void mp_device_heap_free(void *p)
{
    uintptr_t off = (uintptr_t)p - mp_region_base;
    if (mp_unlikely(off >= mp_region_size)) {
        free_beyond_range(p);
        return;
    }
    struct mp_thread *self = mp_self;
    unsigned slice = mp_slice_class[off >> MP_SLICE_SHIFT];
    if (mp_unlikely(!self || self->busy || slice < MP_SLICE_CACHED)) {
        free_rare(self, p);
        return;
    }
    mp_set_busy(self, 1);
    release_small(self, (int)(slice >> 8) - 1, p, (slice & 0xffu) * 8);
}

void mp_device_heap_count_nested(size_t size)
{
    mp_device_heap_count_next(NULL, next_dev, size);
}

size_t mp_device_heap_usable_size(const void *p)
{
    unsigned unit = mp_unit_of(p);
    if (mp_unlikely(unit & MP_UNIT_SPECIAL)) {
        struct mp_device_heap *h = &mp_device_heaps[unit & MP_UNIT_DEVICE];
        struct mp_growth *g = mp_growth_of(h, p);
        return g ? (size_t)g->used : (size_t)mp_direct_length(h, p, 0);
    }
    return mi_usable_size(p);
}

int mp_device_heap_resize(struct mp_thread *self, void *p, size_t n)
{
    unsigned unit = mp_unit_of(p);
    if (mp_unlikely(unit & MP_UNIT_SPECIAL)) {
        int dev = (int)(unit & MP_UNIT_DEVICE);
        struct mp_device_heap *h = &mp_device_heaps[dev];
        struct mp_growth *g = mp_growth_of(h, p);
        if (!g) {
            uint64_t length = mp_direct_length(h, p, 0);
            return n <= length && n >= length / 2;
        }
        if (n > MP_GROWTH_AREA || (n > g->used && mp_device_full(self, dev, n - g->used)))
            return 0;
        mp_add_live(self, dev, (int64_t)n - (int64_t)g->used);
        g->used = n;
        return 1;
    }
    size_t usable = mi_usable_size(p);
    return n <= usable && n >= usable / 2;
}

void mp_device_heaps_thread_exit(struct mp_thread *self)
{
    mp_device_heap_free_deferred_now(self);
    mp_block_cache_drain(self);
    for (int i = 0; i < mp_ndevices; i++) {
        if (self->devices[i].live_pending)
            mp_publish_pending(&mp_device_heaps[i], &self->devices[i]);
        self->devices[i].credit = 0; /* the block's next thread asks the device first */
    }
}
