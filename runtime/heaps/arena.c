/* The device table and the region (one slot per device, reserved at start-up), and each
 * device's mimalloc arenas in the lower half of its slot. A device's slot is turned into
 * arenas on demand, at most 16 GiB each (larger exclusive arenas make mimalloc fail
 * early). Arenas may span up to twice the capacity, so mimalloc's own overhead (page
 * metadata, rounding of huge blocks) does not eat into what the user asked for; a full
 * arena, or a failed mbind or file, sends the allocation down the fallback chain
 * (device_heap.c). The lowest file of heaps/: the others find a device here. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include <mimalloc.h>
#include "internal.h"

#define ANON_ARENA (16ull << 30)  /* anonymous memory is only reserved: take big arenas */
#define BACKED_ARENA MP_BACKED_ARENA /* files and huge pages are real resources: grow slowly */
#define DEFAULT_CAPACITY (64ull << 30)

MP_HIDDEN struct mp_device_heap *mp_device_heaps;
MP_HIDDEN int mp_ndevices;
MP_HIDDEN uintptr_t mp_region_base;
MP_HIDDEN uintptr_t mp_region_size;
MP_HIDDEN unsigned mp_slot_shift;
static int warned[MP_MAX_DEVICES];

/* Address space a device's arenas may use: room beyond the capacity for mimalloc's
 * per-thread pages and metadata (anonymous memory is only reserved; file arenas are
 * added, and their blocks allocated on disk, only when the ones before are full). */
static uint64_t span_of(uint64_t capacity)
{
    if (!capacity)
        return DEFAULT_CAPACITY;
    return capacity + (capacity > (1ull << 30) ? capacity : (1ull << 30));
}

int mp_arenas_init(const struct mp_policy *policy, const char **why)
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
    struct mp_device_heap *heaps = mp_internal_alloc(policy->ndevices * sizeof *heaps);
    if (!base || !heaps) {
        *why = "cannot reserve address space for the devices";
        return -1;
    }
    for (uint32_t i = 0; i < policy->ndevices; i++) {
        struct mp_device_heap *h = &heaps[i];
        h->spec = &policy->devices[i];
        h->slot = (unsigned char *)base + ((size_t)i << shift);
        h->capacity = h->spec->capacity;
        h->span = span_of(h->capacity) & ~(uint64_t)(align - 1);
    }
    mp_device_heaps = heaps;
    mp_ndevices = (int)policy->ndevices;
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
static void kill_device(struct mp_device_heap *h, int idx, int reason, int err)
{
    h->dead = reason;
    if (!__atomic_exchange_n(&warned[idx], 1, __ATOMIC_RELAXED)) {
        const char *parts[] = {"memplace: device '", h->spec->name, "': ", reason_text(reason),
                               " (", err == EINVAL ? "EINVAL" : err == ENOSPC ? "ENOSPC" :
                               err == ENOMEM ? "ENOMEM" : err == EPERM ? "EPERM" : "error",
                               "); its allocations go to the next device\n"};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            mp_write_all(2, parts[i], strlen(parts[i]));
    }
}

/* Turn the next part of the slot into an arena. Called with the device's lock held. */
static int grow(struct mp_device_heap *h, int idx)
{
    if (h->dead || h->narenas == MP_MAX_ARENAS || h->arranged >= h->span)
        return 0;
    const struct mp_device_spec *s = h->spec;
    int backed = s->kind == MP_FILE || (s->flags & MP_FLAG_HUGETLB);
    uint64_t chunk = h->span - h->arranged;
    uint64_t max = backed ? BACKED_ARENA : ANON_ARENA;
    if (chunk > max)
        chunk = max;
    if (chunk < mi_arena_min_size())
        return 0;
    unsigned char *at = h->slot + h->arranged;
    int err;
    if (s->kind == MP_FILE)
        err = mp_os_back_file(at, chunk, s->path);
    else
        err = mp_os_back_anonymous(at, chunk, (s->flags & MP_FLAG_HUGETLB) ? 1 :
                                   (s->flags & MP_FLAG_THP) ? 2 : 0, (int)((s->flags >> 8) & 0xff));
    if (err) {
        /* a first arena that cannot be backed kills the device; a later one just ends growth */
        if (h->narenas == 0)
            kill_device(h, idx, MP_BACKING_FAILED, err);
        return 0;
    }
    if (s->kind == MP_NUMA || (s->kind == MP_HUGEPAGES && s->nodemask[0] | s->nodemask[1])) {
        err = mp_os_bind(at, chunk, s->mode, s->nodemask, MP_NODEMASK_WORDS);
        if (err) {
            kill_device(h, idx, MP_BIND_FAILED, err);
            return 0;
        }
    }
    mi_arena_id_t id;
    if (!mi_manage_os_memory_ex(at, chunk, true, false, true, -1, true, &id))
        return 0;
    mi_heap_t *mh = mi_heap_new_in_arena(id);
    if (!mh)
        return 0;
    h->arranged += chunk;
    __atomic_store_n(&h->heaps[h->narenas], mh, __ATOMIC_RELEASE);
    __atomic_store_n(&h->narenas, h->narenas + 1, __ATOMIC_RELEASE);
    return 1;
}

static void *heap_alloc(mi_heap_t *h, size_t size, size_t align, int zero)
{
    if (align)
        return zero ? mi_heap_zalloc_aligned(h, size, align) : mi_heap_malloc_aligned(h, size, align);
    return zero ? mi_heap_zalloc(h, size) : mi_heap_malloc(h, size);
}

void *mp_arena_alloc(struct mp_device_heap *h, int idx, size_t size, size_t align, int zero)
{
    int n = __atomic_load_n(&h->narenas, __ATOMIC_ACQUIRE);
    for (int i = n - 1; i >= 0; i--) { /* newest arena first: it has the most room */
        void *p = heap_alloc(h->heaps[i], size, align, zero);
        if (p)
            return p;
    }
    void *p = NULL;
    mp_lock(&h->lock);
    if (h->narenas != n) /* another thread grew it meanwhile */
        p = heap_alloc(h->heaps[h->narenas - 1], size, align, zero);
    while (!p && grow(h, idx))
        p = heap_alloc(h->heaps[h->narenas - 1], size, align, zero);
    mp_unlock(&h->lock);
    return p;
}
