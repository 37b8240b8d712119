/* Device heaps (see tiers.h). A device's slot is turned into mimalloc arenas on demand,
 * at most 16 GiB each (larger exclusive arenas make mimalloc fail early). The capacity is
 * a limit on the device's live bytes, checked before each allocation: blocks of
 * EXACT_BYTES or more are counted at once, smaller ones in per-thread batches, so a device
 * can exceed its capacity by at most LIVE_BATCH per thread in small blocks. Arenas may
 * span up to twice the capacity, so mimalloc's own overhead (page metadata, rounding of
 * huge blocks) does not eat into what the user asked for; a full arena, or a failed
 * mbind or file, sends the allocation down the fallback chain. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <mimalloc.h>
#include "os_memory.h"
#include "thread.h"
#include "tiers.h"

#define MAX_ARENAS 64
#define ANON_ARENA (16ull << 30)  /* anonymous memory is only reserved: take big arenas */
#define BACKED_ARENA (256ull << 20) /* files and huge pages are real resources: grow slowly */
#define DEFAULT_CAPACITY (64ull << 30)
#define MI_ALIGN_MAX (64u << 10)
#define MAX_DIRECT 256 /* live blocks aligned above MI_ALIGN_MAX, per device */
#define LIVE_BATCH (1ll << 20) /* a thread publishes its live-bytes change in steps this big */
#define EXACT_BYTES (256u << 10) /* blocks this big are counted against capacity at once */
#define GROWTH_AREA (1u << 20)   /* room a growing block gets, and grows in place within */
#define GROWTH_MIN 512           /* below this, realloc copies within mimalloc's classes */
#define MAX_GROWTH 16            /* growth areas per device */
#define MAX_SPARE 4
#define TCACHE_MAX 8             /* freed blocks a thread keeps per device and size class */

enum { UNMAPPED, SPARE, GROWING };

struct tier {
    const struct mp_device_spec *spec;
    unsigned char *slot;
    uint64_t capacity;           /* limit on live bytes; 0 = none */
    uint64_t span, arranged;     /* bytes of the slot usable as arenas; made into arenas */
    int narenas, dead, lock;
    mi_heap_t *heaps[MAX_ARENAS];
    struct direct { uint64_t offset, length; } direct[MAX_DIRECT]; /* in use, by offset */
    int ndirect, nspare;
    struct growth { uint64_t used; int state; } growth[MAX_GROWTH];
    struct mp_tier_stats stats;
} __attribute__((aligned(64)));

MP_HIDDEN uintptr_t mp_region_base;
MP_HIDDEN uintptr_t mp_region_size;
MP_HIDDEN unsigned mp_slot_shift;
static struct tier *tiers;
static int ntiers;
static int system_dev = -1; /* where allocations that reach the end of a chain are counted */
static int warned[MP_MAX_DEVICES];
/* mi_good_size of small sizes, by 8-byte step: the fast path's usable size without a call */
static uint32_t small_usable[MI_SMALL_SIZE_MAX / 8 + 1];
_Static_assert(MP_TCACHE_BINS == MI_SMALL_SIZE_MAX / 8 + 1, "a bin for each small usable size");

/* Address space a device's arenas may use: room beyond the capacity for mimalloc's
 * per-thread pages and metadata (anonymous memory is only reserved; file arenas are
 * added, and their blocks allocated on disk, only when the ones before are full). */
static uint64_t span_of(uint64_t capacity)
{
    if (!capacity)
        return DEFAULT_CAPACITY;
    return capacity + (capacity > (1ull << 30) ? capacity : (1ull << 30));
}

int mp_tiers_init(const struct mp_policy *policy, const char **why)
{
    uint64_t largest = 0, align = mi_arena_min_alignment();
    for (uint32_t i = 0; i < policy->ndevices; i++) {
        uint64_t c = span_of(policy->devices[i].capacity);
        if (c > largest)
            largest = c;
    }
    unsigned shift = 27; /* at least 128 MiB per slot: arenas below half, own mappings above */
    while ((1ull << (shift - 1)) < largest)
        shift++;
    if (shift > 45) {
        *why = "a device capacity is larger than 16 TiB";
        return -1;
    }
    size_t size = (size_t)policy->ndevices << shift;
    void *base = mp_os_reserve(size, align > (1u << 26) ? align : (1u << 26));
    tiers = mp_internal_alloc(policy->ndevices * sizeof *tiers);
    if (!base || !tiers) {
        *why = "cannot reserve address space for the devices";
        return -1;
    }
    for (uint32_t i = 0; i < policy->ndevices; i++) {
        struct tier *t = &tiers[i];
        t->spec = &policy->devices[i];
        t->slot = (unsigned char *)base + ((size_t)i << shift);
        t->capacity = t->spec->capacity;
        t->span = span_of(t->capacity) & ~(uint64_t)(align - 1);
    }
    ntiers = (int)policy->ndevices;
    for (int i = ntiers - 1; i >= 0; i--)
        if (policy->devices[i].kind == MP_SYSTEM)
            system_dev = i;
    for (size_t i = 0; i < sizeof small_usable / sizeof small_usable[0]; i++)
        small_usable[i] = (uint32_t)mi_good_size(i * 8);
    mp_slot_shift = shift;
    mp_region_base = (uintptr_t)base;
    __atomic_store_n(&mp_region_size, size, __ATOMIC_RELEASE);
    return 0;
}

static const char *reason_text(int reason)
{
    switch (reason) {
    case MP_BIND_FAILED: return "mbind failed";
    case MP_BACKING_FAILED: return "could not map memory for it";
    default: return "";
    }
}

/* A device that cannot be set up is passed over from now on; say so once. */
static void kill_tier(struct tier *t, int idx, int reason, int err)
{
    t->dead = reason;
    if (!__atomic_exchange_n(&warned[idx], 1, __ATOMIC_RELAXED)) {
        const char *parts[] = {"memplace: device '", t->spec->name, "': ", reason_text(reason),
                               " (", err == EINVAL ? "EINVAL" : err == ENOSPC ? "ENOSPC" :
                               err == ENOMEM ? "ENOMEM" : err == EPERM ? "EPERM" : "error",
                               "); its allocations go to the next device\n"};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            mp_write_all(2, parts[i], strlen(parts[i]));
    }
}

/* Turn the next part of the slot into an arena. Called with the tier's lock held. */
static int grow(struct tier *t, int idx)
{
    if (t->dead || t->narenas == MAX_ARENAS || t->arranged >= t->span)
        return 0;
    const struct mp_device_spec *s = t->spec;
    int backed = s->kind == MP_FILE || (s->flags & MP_FLAG_HUGETLB);
    uint64_t chunk = t->span - t->arranged;
    uint64_t max = backed ? BACKED_ARENA : ANON_ARENA;
    if (chunk > max)
        chunk = max;
    if (chunk < mi_arena_min_size())
        return 0;
    unsigned char *at = t->slot + t->arranged;
    int err;
    if (s->kind == MP_FILE)
        err = mp_os_back_file(at, chunk, s->path);
    else
        err = mp_os_back_anonymous(at, chunk, (s->flags & MP_FLAG_HUGETLB) ? 1 :
                                   (s->flags & MP_FLAG_THP) ? 2 : 0, (int)((s->flags >> 8) & 0xff));
    if (err) {
        /* a first arena that cannot be backed kills the device; a later one just ends growth */
        if (t->narenas == 0)
            kill_tier(t, idx, MP_BACKING_FAILED, err);
        return 0;
    }
    if (s->kind == MP_NUMA || (s->kind == MP_HUGEPAGES && s->nodemask[0] | s->nodemask[1])) {
        err = mp_os_bind(at, chunk, s->mode, s->nodemask, MP_NODEMASK_WORDS);
        if (err) {
            kill_tier(t, idx, MP_BIND_FAILED, err);
            return 0;
        }
    }
    mi_arena_id_t id;
    if (!mi_manage_os_memory_ex(at, chunk, true, false, true, -1, true, &id))
        return 0;
    mi_heap_t *h = mi_heap_new_in_arena(id);
    if (!h)
        return 0;
    t->arranged += chunk;
    __atomic_store_n(&t->heaps[t->narenas], h, __ATOMIC_RELEASE);
    __atomic_store_n(&t->narenas, t->narenas + 1, __ATOMIC_RELEASE);
    return 1;
}

static void *heap_alloc(mi_heap_t *h, size_t size, size_t align, int zero)
{
    if (align)
        return zero ? mi_heap_zalloc_aligned(h, size, align) : mi_heap_malloc_aligned(h, size, align);
    return zero ? mi_heap_zalloc(h, size) : mi_heap_malloc(h, size);
}

/* The common case: a plain allocation from this thread's theap of the newest arena. */
static inline void *theap_alloc(struct mp_thread *self, struct tier *t, int dev, size_t size)
{
    int n = __atomic_load_n(&t->narenas, __ATOMIC_ACQUIRE);
    if (!self || n == 0)
        return NULL;
    if (mp_unlikely(self->theap_of[dev] != n)) {
        self->theaps[dev] = mi_heap_theap(t->heaps[n - 1]);
        self->theap_of[dev] = n;
    }
    mi_theap_t *h = self->theaps[dev];
    if (!h)
        return NULL;
    return size <= MI_SMALL_SIZE_MAX ? mi_theap_malloc_small(h, size) : mi_theap_malloc(h, size);
}

static void *tier_alloc(struct tier *t, int idx, size_t size, size_t align, int zero)
{
    int n = __atomic_load_n(&t->narenas, __ATOMIC_ACQUIRE);
    for (int i = n - 1; i >= 0; i--) { /* newest arena first: it has the most room */
        void *p = heap_alloc(t->heaps[i], size, align, zero);
        if (p)
            return p;
    }
    void *p = NULL;
    mp_lock(&t->lock);
    if (t->narenas != n) /* another thread grew it meanwhile */
        p = heap_alloc(t->heaps[t->narenas - 1], size, align, zero);
    while (!p && grow(t, idx))
        p = heap_alloc(t->heaps[t->narenas - 1], size, align, zero);
    mp_unlock(&t->lock);
    return p;
}

/* Publish a thread's pending live bytes into the device's live total and peak. */
static void publish_live(struct tier *t, int64_t delta)
{
    uint64_t live = __atomic_add_fetch(&t->stats.live, (uint64_t)delta, __ATOMIC_RELAXED);
    uint64_t peak = __atomic_load_n(&t->stats.peak, __ATOMIC_RELAXED);
    while ((int64_t)live > 0 && live > peak &&
           !__atomic_compare_exchange_n(&t->stats.peak, &peak, live, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        ;
}

MP_COLD static void publish_pending(struct tier *t, struct mp_device_counters *c)
{
    publish_live(t, c->live_pending);
    c->live_pending = 0;
}

/* A change of a device's live bytes: at once for big blocks (or without a thread block),
 * else in the thread's batch, so the allocation path takes no atomic. */
static inline void add_live(struct mp_thread *self, int dev, int64_t delta)
{
    if (!self || delta >= (int64_t)EXACT_BYTES || delta <= -(int64_t)EXACT_BYTES) {
        if (delta)
            publish_live(&tiers[dev], delta);
        return;
    }
    struct mp_device_counters *c = &self->devices[dev];
    c->live_pending += delta;
    if (mp_unlikely(c->live_pending >= LIVE_BATCH || c->live_pending <= -LIVE_BATCH))
        publish_pending(&tiers[dev], c);
}

/* An allocation of `size` bytes (`usable` of them live) served for device `dev`. */
static inline void count(struct mp_thread *self, int dev, size_t size, int64_t usable)
{
    if (self) {
        self->devices[dev].allocations++;
        self->devices[dev].bytes += size;
    } else {
        __atomic_fetch_add(&tiers[dev].stats.allocations, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&tiers[dev].stats.bytes, size, __ATOMIC_RELAXED);
    }
    add_live(self, dev, usable);
}

/* Live bytes are signed: a thread that frees blocks another thread allocated may publish
 * its decrease before the other publishes the increase. */
static int over_capacity(struct tier *t, size_t size)
{
    int64_t live = (int64_t)__atomic_load_n(&t->stats.live, __ATOMIC_RELAXED);
    return (live > 0 ? (uint64_t)live : 0) + size > t->capacity;
}

/* A thread's cache of freed small blocks, as glibc's tcache: a block one thread frees is
 * reused by that thread's next allocation of its size class, instead of going back to its
 * mimalloc page, which takes an atomic operation when another thread allocated it. */
static inline void *tcache_pop(struct mp_thread *self, int dev, size_t usable)
{
    struct mp_tcache_bin *b = &self->tcache[dev][usable / 8];
    void *p = b->head;
    if (p) {
        b->head = *(void **)p;
        b->count--;
    }
    return p;
}

static inline int tcache_push(struct mp_thread *self, int dev, void *p, size_t usable)
{
    struct mp_tcache_bin *b = &self->tcache[dev][usable / 8];
    if (b->count >= TCACHE_MAX)
        return 0;
    *(void **)p = b->head;
    b->head = p;
    b->count++;
    return 1;
}

/* The common case, kept short: a plain block below EXACT_BYTES from this thread's theap of
 * the device's newest arena, ready since an earlier allocation; NULL for anything else
 * (mp_tiers_alloc then decides, falls back and counts). */
void *mp_tiers_alloc_fast(struct mp_thread *self, int dev, size_t size, int zero)
{
    struct tier *t = &tiers[dev];
    mi_theap_t *h = self->theaps[dev];
    if (mp_unlikely(!h || self->theap_of[dev] != __atomic_load_n(&t->narenas, __ATOMIC_RELAXED) ||
                    t->dead || size >= EXACT_BYTES || (t->capacity && over_capacity(t, size))))
        return NULL;
    void *p;
    size_t usable;
    if (size <= MI_SMALL_SIZE_MAX) {
        usable = small_usable[(size + 7) / 8];
        p = !zero && dev < MP_TCACHE_DEVICES ? tcache_pop(self, dev, usable) : NULL;
        if (!p)
            p = zero ? mi_theap_zalloc_small(h, size) : mi_theap_malloc_small(h, size);
    } else {
        p = zero ? mi_theap_zalloc(h, size) : mi_theap_malloc(h, size);
        usable = mi_good_size(size);
    }
    if (mp_unlikely(!p))
        return NULL;
    count(self, dev, size, (int64_t)usable);
    return p;
}

/* ---- the upper half of a device's slot: mappings of their own, backed and bound like an
 * arena, for what mimalloc's arenas cannot do. It starts with MAX_GROWTH growth areas of
 * GROWTH_AREA bytes each; direct blocks (aligned above 64 KiB) take the rest. ---- */

static uint64_t half_slot(void) { return 1ull << (mp_slot_shift - 1); }

static int in_upper_half(const void *p)
{
    return (((uintptr_t)p - mp_region_base) >> (mp_slot_shift - 1)) & 1;
}

static uint64_t offset_in_slot(const struct tier *t, const void *p)
{
    return (uint64_t)((const unsigned char *)p - t->slot);
}

static unsigned char *growth_area(const struct tier *t, int i)
{
    return t->slot + half_slot() + (uint64_t)i * GROWTH_AREA;
}

/* Back [q, q+length) with the device's kind of memory and bind it; 0 or an errno value. */
static int back(struct tier *t, unsigned char *q, uint64_t length)
{
    const struct mp_device_spec *s = t->spec;
    int err = s->kind == MP_FILE ? mp_os_back_file(q, length, s->path)
                                 : mp_os_back_anonymous(q, length, (s->flags & MP_FLAG_HUGETLB) ? 1 :
                                                        (s->flags & MP_FLAG_THP) ? 2 : 0,
                                                        (int)((s->flags >> 8) & 0xff));
    if (!err && (s->kind == MP_NUMA || (s->kind == MP_HUGEPAGES && (s->nodemask[0] | s->nodemask[1]))))
        err = mp_os_bind(q, length, s->mode, s->nodemask, MP_NODEMASK_WORDS);
    if (err)
        mp_os_back_anonymous(q, length, -1, 0); /* back to reserved-only */
    return err;
}

/* Growth areas: a block that realloc grows past GROWTH_MIN moves, once, to an area of its
 * own and grows in place there (as glibc grows the block at the top of its heap) instead of
 * being copied into a larger size class at every step. Only its size counts as live; the
 * untouched rest of the area costs address space only. A freed area stays mapped as a spare
 * (at most MAX_SPARE per device), so steady growth makes no system call. The area's slot
 * is its address, so growing in place takes no lock: the block is the program's. */

static struct growth *growth_of(struct tier *t, const void *p)
{
    uint64_t at = offset_in_slot(t, p) - half_slot();
    if (at >= (uint64_t)MAX_GROWTH * GROWTH_AREA || at % GROWTH_AREA)
        return NULL;
    struct growth *g = &t->growth[at / GROWTH_AREA];
    return __atomic_load_n(&g->state, __ATOMIC_ACQUIRE) == GROWING ? g : NULL;
}

void *mp_tiers_alloc_growing(struct mp_thread *self, int dev, size_t n)
{
    struct tier *t = &tiers[dev];
    if (t->spec->kind == MP_SYSTEM || t->dead || n < GROWTH_MIN || n > GROWTH_AREA / 2 ||
        (t->capacity && over_capacity(t, n)))
        return NULL;
    unsigned char *p = NULL;
    mp_lock(&t->lock);
    int pick = -1;
    for (int i = 0; i < MAX_GROWTH; i++) /* a spare first: no system call */
        if (t->growth[i].state == SPARE || (pick < 0 && t->growth[i].state == UNMAPPED))
            pick = i;
    if (pick >= 0) {
        struct growth *g = &t->growth[pick];
        unsigned char *q = growth_area(t, pick);
        if (g->state == SPARE || back(t, q, GROWTH_AREA) == 0) {
            t->nspare -= g->state == SPARE;
            g->used = n;
            __atomic_store_n(&g->state, GROWING, __ATOMIC_RELEASE);
            p = q;
        }
    }
    mp_unlock(&t->lock);
    if (p)
        count(self, dev, n, (int64_t)n);
    return p;
}

/* Free a growth area's block; returns its size. */
static uint64_t growth_release(struct tier *t, struct growth *g, void *p)
{
    mp_lock(&t->lock);
    uint64_t used = g->used;
    int keep = t->nspare < MAX_SPARE;
    __atomic_store_n(&g->state, keep ? SPARE : UNMAPPED, __ATOMIC_RELEASE);
    t->nspare += keep;
    if (!keep)
        mp_os_back_anonymous(p, GROWTH_AREA, -1, 0); /* memory returned, address kept */
    mp_unlock(&t->lock);
    return used;
}

/* Direct blocks: first fit by offset after the growth areas, under the tier's lock. */
static void *direct_map(struct tier *t, size_t size, size_t align)
{
    uint64_t half = half_slot(), page = mp_page_size();
    uint64_t length = (size + page - 1) & ~(page - 1);
    uint64_t first = half + (uint64_t)MAX_GROWTH * GROWTH_AREA;
    if (length == 0 || length > 2 * half - first)
        return NULL;
    void *p = NULL;
    mp_lock(&t->lock);
    if (t->ndirect < MAX_DIRECT) {
        uint64_t at = first; /* offsets within the slot */
        int i = 0;
        for (;; i++) {
            uint64_t start = (((uint64_t)(uintptr_t)t->slot + at + align - 1) & ~(uint64_t)(align - 1)) -
                             (uint64_t)(uintptr_t)t->slot;
            uint64_t limit = i < t->ndirect ? t->direct[i].offset : 2 * half;
            if (start + length <= limit) {
                at = start;
                break;
            }
            if (i == t->ndirect) {
                at = 0;
                break;
            }
            at = t->direct[i].offset + t->direct[i].length;
        }
        if (at && back(t, t->slot + at, length) == 0) {
            memmove(&t->direct[i + 1], &t->direct[i], (size_t)(t->ndirect - i) * sizeof t->direct[0]);
            t->direct[i] = (struct direct){at, length};
            t->ndirect++;
            p = t->slot + at;
        }
    }
    mp_unlock(&t->lock);
    return p;
}

/* Length of the direct block at p (0: none), and forget it (forget=1). */
static uint64_t direct_length(struct tier *t, const void *p, int forget)
{
    uint64_t offset = offset_in_slot(t, p), length = 0;
    mp_lock(&t->lock);
    for (int i = 0; i < t->ndirect; i++)
        if (t->direct[i].offset == offset) {
            length = t->direct[i].length;
            if (forget) {
                memmove(&t->direct[i], &t->direct[i + 1], (size_t)(t->ndirect - i - 1) * sizeof t->direct[0]);
                t->ndirect--;
            }
            break;
        }
    mp_unlock(&t->lock);
    return length;
}

void *mp_tiers_alloc(struct mp_thread *self, int dev, size_t size, size_t align, int zero,
                     int *served)
{
    for (int hops = 0; dev >= 0 && hops <= ntiers; hops++) {
        struct tier *t = &tiers[dev];
        if (t->spec->kind == MP_SYSTEM)
            break;
        int reason = MP_FULL;
        if (t->capacity && over_capacity(t, size)) {
            reason = MP_FULL;
        } else if (!t->dead && align > MI_ALIGN_MAX) {
            void *p = direct_map(t, size, align); /* fresh mapping: already zero */
            if (p) {
                count(self, dev, size, (int64_t)direct_length(t, p, 0));
                *served = dev;
                return p;
            }
            reason = MP_ALIGNMENT;
        } else if (!t->dead) {
            void *p = !align && !zero ? theap_alloc(self, t, dev, size) : NULL;
            if (!p)
                p = tier_alloc(t, dev, size, align, zero);
            if (p) {
                /* below 512 KiB mimalloc's size classes give the usable size without asking
                 * the block's page (checked against mi_usable_size for mimalloc 3.4) */
                size_t usable = !align && size < EXACT_BYTES ? mi_good_size(size) : mi_usable_size(p);
                count(self, dev, size, (int64_t)usable);
                *served = dev;
                return p;
            }
        }
        if (t->dead)
            reason = t->dead;
        __atomic_fetch_add(&t->stats.fallbacks[reason], 1, __ATOMIC_RELAXED);
        dev = t->spec->fallback;
    }
    *served = dev >= 0 ? dev : system_dev; /* the next allocator serves */
    return NULL;
}

int mp_tiers_device_of(const void *p)
{
    return (int)(((uintptr_t)p - mp_region_base) >> mp_slot_shift);
}

void mp_tiers_free(void *p)
{
    int dev = mp_tiers_device_of(p);
    if (mp_unlikely(in_upper_half(p))) {
        struct tier *t = &tiers[dev];
        struct growth *g = growth_of(t, p);
        uint64_t gone = g ? growth_release(t, g, p) : direct_length(t, p, 1);
        if (gone && !g)
            mp_os_back_anonymous(p, gone, -1, 0); /* memory returned, address kept */
        add_live(mp_self, dev, -(int64_t)gone); /* 0: not a live block of ours, ignored */
        return;
    }
    struct mp_thread *self = mp_self;
    size_t block;
    if (self && dev < MP_TCACHE_DEVICES) {
        block = mi_usable_size(p);
        if (block > MI_SMALL_SIZE_MAX || !tcache_push(self, dev, p, block))
            mi_free(p);
    } else {
        mi_ufree(p, &block); /* frees and tells the usable size: one page lookup, not two */
    }
    add_live(self, dev, -(int64_t)block);
}

size_t mp_tiers_usable_size(const void *p)
{
    if (mp_unlikely(in_upper_half(p))) {
        struct tier *t = &tiers[mp_tiers_device_of(p)];
        struct growth *g = growth_of(t, p);
        return g ? (size_t)g->used : (size_t)direct_length(t, p, 0);
    }
    return mi_usable_size(p);
}

int mp_tiers_resize(struct mp_thread *self, void *p, size_t n)
{
    if (mp_unlikely(in_upper_half(p))) {
        int dev = mp_tiers_device_of(p);
        struct tier *t = &tiers[dev];
        struct growth *g = growth_of(t, p);
        if (!g) {
            uint64_t length = direct_length(t, p, 0);
            return n <= length && n >= length / 2;
        }
        if (n > GROWTH_AREA || (n > g->used && t->capacity && over_capacity(t, n - g->used)))
            return 0;
        add_live(self, dev, (int64_t)n - (int64_t)g->used);
        g->used = n;
        return 1;
    }
    size_t usable = mi_usable_size(p);
    return n <= usable && n >= usable / 2;
}

/* A thread ends: its pending live bytes become the devices' (so peaks see them). */
void mp_tiers_thread_exit(struct mp_thread *self)
{
    for (int d = 0; d < MP_TCACHE_DEVICES; d++) /* cached blocks go back to mimalloc */
        for (int b = 0; b < MP_TCACHE_BINS; b++) {
            struct mp_tcache_bin *bin = &self->tcache[d][b];
            while (bin->head) {
                void *p = bin->head;
                bin->head = *(void **)p;
                mi_free(p);
            }
            bin->count = 0;
        }
    for (int i = 0; i < ntiers; i++)
        if (self->devices[i].live_pending)
            publish_pending(&tiers[i], &self->devices[i]);
}

void mp_tiers_stats(int dev, struct mp_tier_stats *out)
{
    *out = tiers[dev].stats;
    int64_t pending = 0;
    for (struct mp_thread *t = mp_threads_all(); t; t = t->next_all) {
        out->allocations += t->devices[dev].allocations;
        out->bytes += t->devices[dev].bytes;
        pending += t->devices[dev].live_pending;
    }
    out->live += (uint64_t)pending;
    if ((int64_t)out->live > 0 && out->live > out->peak)
        out->peak = out->live;
}

void mp_tiers_count_system(struct mp_thread *self, int dev, size_t size)
{
    if (dev >= 0)
        count(self, dev, size, 0);
}

/* ---- fork: no lock held across it, and the child gets its own copy of file devices ---- */

void mp_tiers_fork_prepare(void)
{
    for (int i = 0; i < ntiers; i++)
        mp_lock(&tiers[i].lock);
}

void mp_tiers_fork_parent(void)
{
    for (int i = ntiers - 1; i >= 0; i--)
        mp_unlock(&tiers[i].lock);
}

/* MAP_SHARED file memory would stay shared with the parent after fork, unlike every other
 * kind of memory: the child copies it into private memory of its own (a forked child's
 * file-device blocks live in ordinary memory). */
static void privatize(unsigned char *at, size_t length)
{
    void *copy = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED)
        return;
    memcpy(copy, at, length);
    if (mremap(copy, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, at) == MAP_FAILED)
        munmap(copy, length);
}

void mp_tiers_fork_child(void)
{
    for (int i = 0; i < ntiers; i++) {
        struct tier *t = &tiers[i];
        if (t->spec->kind == MP_FILE) {
            if (t->arranged)
                privatize(t->slot, t->arranged);
            for (int d = 0; d < t->ndirect; d++)
                privatize(t->slot + t->direct[d].offset, t->direct[d].length);
            for (int g = 0; g < MAX_GROWTH; g++)
                if (t->growth[g].state != UNMAPPED)
                    privatize(growth_area(t, g), GROWTH_AREA);
        }
    }
    mp_tiers_fork_parent();
}
