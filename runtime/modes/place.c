/* Placement mode (see internal.h): pick the device from the call site and size, allocate
 * there or along the device's fallback chain, and end at the next allocator, so the
 * program never sees NULL while any device or the next allocator can serve. */
#include <errno.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

static struct mp_policy *policy;

int mp_place_start(const char *path, const char **why)
{
    policy = mp_policy_load(path, why);
    if (!policy || mp_device_heaps_init(policy, why) || mp_sites_init(policy, why))
        return -1;
    mp_threads_init();
    mp_threads_on_exit(mp_device_heaps_thread_exit);
    return 0;
}

/* The device for an allocation of `n` bytes returning to `ra`: a fixed site's cached
 * device, else the rules'; counts the rule's hit. */
static inline int device_for(struct mp_thread *self, size_t n, uintptr_t ra)
{
    struct mp_site_entry *e = self ? mp_sites_fixed(self, ra) : NULL;
    if (e) {
        mp_sites_count(e, n);
        return e->device;
    }
    int rule = mp_sites_match(self, ra, n);
    return rule < 0 ? (int)policy->default_device : (int)policy->rules[rule].device;
}

enum how { PLAIN, ZEROED, ALIGNED };

/* The general path: any site, size, alignment or device state. */
__attribute__((noinline)) static void *place(size_t n, size_t align, enum how how, uintptr_t ra)
{
    const void *sp = __builtin_frame_address(0);
    struct mp_thread *self = mp_thread(sp);
    int served;
    void *p = mp_device_heap_alloc(self, device_for(self, n, ra), n, align, how == ZEROED, &served);
    if (p)
        return p;
    mp_device_heap_count_next(self, served, n);
    switch (how) {
    case ZEROED: return mp_next.calloc(1, n);
    case ALIGNED: return mp_next.memalign(align, n);
    default: return mp_next.malloc(n);
    }
}

/* The fast path: a site seen before on this thread, whose device does not depend on the
 * size, served by the next allocator or that device's theap. No unwinding, no rule scan,
 * no fallback: NULL sends the allocation to place(). */
static inline void *place_fast(size_t n, int zero, uintptr_t ra)
{
    struct mp_thread *self = mp_self;
    if (mp_unlikely(!self))
        return NULL;
    struct mp_site_entry *e = mp_sites_fixed(self, ra);
    if (mp_unlikely(!e))
        return NULL;
    void *p;
    if (e->fixed == MP_FIXED_NEXT) {
        p = zero ? mp_next.calloc(1, n) : mp_next.malloc(n);
        if (mp_likely(p != NULL))
            mp_device_heap_count_next(self, e->device, n);
    } else {
        p = mp_device_heap_alloc_fast(self, e->device, n, zero);
    }
    if (mp_likely(p != NULL))
        mp_sites_count(e, n);
    return p;
}

void *mp_place_malloc(size_t n, uintptr_t ra)
{
    void *p = place_fast(n, 0, ra);
    return mp_likely(p != NULL) ? p : place(n, 0, PLAIN, ra);
}

void *mp_place_calloc(size_t n, size_t size, uintptr_t ra)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = place_fast(total, 1, ra);
    return mp_likely(p != NULL) ? p : place(total, 0, ZEROED, ra);
}

void *mp_place_aligned(size_t align, size_t n, uintptr_t ra) { return place(n, align, ALIGNED, ra); }

static void place_free(void *p)
{
    if (mp_device_heap_owns(p))
        mp_device_heap_free(p);
    else
        mp_next.free(p);
}

/* realloc's call site decides where the block goes; across devices it is moved by copy.
 * A block that grows moves to a growth area (heaps/growth_area.c), where it can keep growing in place. */
void *mp_place_realloc(void *p, size_t n, uintptr_t ra)
{
    if (p == NULL)
        return place(n, 0, PLAIN, ra);
    if (n == 0) { /* as glibc: free and return NULL */
        place_free(p);
        return NULL;
    }
    const void *sp = __builtin_frame_address(0);
    struct mp_thread *self = mp_thread(sp);
    int dev = device_for(self, n, ra), served;
    int mine = mp_device_heap_owns(p);
    if (mine && mp_device_of(p) == dev && mp_device_heap_resize(self, p, n))
        return p; /* fits where it is */
    size_t old = mine ? mp_device_heap_usable_size(p) : mp_next.usable_size(p);
    void *q = n > old ? mp_growth_area_alloc(self, dev, n) : NULL;
    if (!q)
        q = mp_device_heap_alloc(self, dev, n, 0, 0, &served);
    if (!q) {
        mp_device_heap_count_next(self, served, n);
        if (!mine)
            return mp_next.realloc(p, n); /* stays with the next allocator */
        q = mp_next.malloc(n);
        if (!q)
            return NULL; /* p is left untouched, as realloc must */
    }
    memcpy(q, p, old < n ? old : n);
    place_free(p);
    return q;
}

/* ---- stats: one text file per process, turned into JSON by `memplace run --stats` ---- */

void mp_place_write_stats(const char *dir)
{
    if (!policy)
        return;
    char path[4096];
    size_t d = strlen(dir);
    if (d + 40 > sizeof path)
        return;
    memcpy(path, dir, d);
    memcpy(path + d, "/stats.", 7);
    d += 7;
    d += mp_fmt_u64(path + d, (uint64_t)getpid());
    memcpy(path + d, ".txt", 5);
    static struct mp_writer o; /* 16 KiB: not on the stack of an exiting program */
    o.n = 0;
    int saved = errno;
    o.fd = mp_open_for_append(path);
    if (o.fd < 0) {
        errno = saved;
        return;
    }
    mp_put(&o, "memplace-stats 1\npid");
    mp_put_u64(&o, (uint64_t)getpid());
    mp_put(&o, "\n");
    /* device IDX allocations bytes live peak full bind backing alignment NAME */
    mp_sites_flush();
    for (uint32_t i = 0; i < policy->ndevices; i++) {
        struct mp_device_stats st;
        const struct mp_device_stats *s = &st;
        mp_device_heap_stats((int)i, &st);
        mp_put(&o, "device");
        mp_put_u64(&o, i);
        mp_put_u64(&o, s->allocations), mp_put_u64(&o, s->bytes), mp_put_u64(&o, s->live), mp_put_u64(&o, s->peak);
        for (int r = 0; r < MP_REASONS; r++)
            mp_put_u64(&o, s->fallbacks[r]);
        mp_put(&o, " "), mp_put(&o, policy->devices[i].name), mp_put(&o, "\n");
    }
    /* reserve IDX BYTES GROWN: address space the device holds, extents it grew into */
    for (uint32_t i = 0; i < policy->ndevices; i++) {
        int grown;
        uint64_t bytes = mp_arena_reserved((int)i, &grown);
        mp_put(&o, "reserve");
        mp_put_u64(&o, i), mp_put_u64(&o, bytes), mp_put_u64(&o, (uint64_t)grown);
        mp_put(&o, "\n");
    }
    /* rule IDX hits bytes NAME */
    for (uint32_t i = 0; i < policy->nrules; i++) {
        const struct mp_rule_stats *s = mp_sites_rule_stats(i);
        mp_put(&o, "rule");
        mp_put_u64(&o, i), mp_put_u64(&o, s->hits), mp_put_u64(&o, s->bytes);
        mp_put(&o, " "), mp_put(&o, policy->rules[i].name), mp_put(&o, "\n");
    }
    mp_put(&o, "end\n");
    mp_flush(&o);
    close(o.fd);
    errno = saved;
}

/* A process whose placement could not start: "unplaced RAN WHY" (RAN 1: it ran transparent,
 * 0: it was stopped before main), so the run's stats list it and say why. */
void mp_place_write_unplaced(const char *dir, const char *why, int ran)
{
    char path[4096];
    size_t d = strlen(dir);
    if (d + 40 > sizeof path)
        return;
    memcpy(path, dir, d);
    memcpy(path + d, "/stats.", 7);
    d += 7;
    d += mp_fmt_u64(path + d, (uint64_t)getpid());
    memcpy(path + d, ".txt", 5);
    static struct mp_writer o;
    o.n = 0;
    int saved = errno;
    o.fd = mp_open_for_append(path);
    if (o.fd >= 0) {
        mp_put(&o, "memplace-stats 1\npid");
        mp_put_u64(&o, (uint64_t)getpid());
        mp_put(&o, "\nunplaced");
        mp_put_u64(&o, (uint64_t)ran);
        mp_put(&o, " "), mp_put(&o, why), mp_put(&o, "\nend\n");
        mp_flush(&o);
        close(o.fd);
    }
    errno = saved;
}
