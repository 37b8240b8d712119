/* The device table and the address space the devices live in, and each device's mimalloc
 * arenas there. At start-up one range is reserved, in proportion to the capacities and
 * within what RLIMIT_AS leaves (a third of the headroom: the rest stays the program's),
 * cut into units as types.h describes; the next allocator's devices take none. A device's
 * units are turned into arenas on demand, at most 16 GiB each (larger exclusive arenas
 * make mimalloc fail early). When they are full, the device grows into an extent (a
 * further reservation, as big as its room so far, while the runtime's reservations stay
 * within a third of what the limit would leave the program without them); a device that
 * cannot grow sends its allocations down the fallback chain (device_heap.c), as a full
 * arena, a failed mbind or a failed file does. The lowest file of heaps/: the others find
 * a device here. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <mimalloc.h>
#include "internal.h"

#define ANON_ARENA (16ull << 30)  /* anonymous memory is only reserved: take big arenas */
#define BACKED_ARENA MP_BACKED_ARENA /* files and huge pages are real resources: grow slowly */
#define UNIT_SHIFT_MIN 25           /* 32 MiB units: mimalloc's smallest arena */
#define UNCAPPED_START (1ull << 30) /* a device without capacity starts here and grows */
#define MAX_EXTENT (64ull << 30)
#define ALIGN (2ull << 20)          /* 2 MiB pages; also what reserving costs on top, briefly */

MP_HIDDEN struct mp_device_heap *mp_device_heaps;
MP_HIDDEN int mp_ndevices;
MP_HIDDEN uintptr_t mp_region_base;
MP_HIDDEN uintptr_t mp_region_size;
MP_HIDDEN unsigned mp_unit_shift;
MP_HIDDEN unsigned char mp_units[MP_MAX_UNITS]; /* zero pages until used: costs no memory */
MP_HIDDEN struct mp_extent mp_extents[MP_MAX_EXTENTS];
MP_HIDDEN int mp_nextents;
MP_HIDDEN int mp_file_forks; /* forks copying file devices (heaps/fork.c) not yet done here */
static int extent_lock;
static int warned[MP_MAX_DEVICES];
static int lock_warned[MP_MAX_DEVICES];

/* Arena room a device starts with: its capacity, and room for mimalloc's per-thread pages
 * and metadata (growing into an extent adds more when that is not enough). */
static uint64_t wanted(uint64_t capacity)
{
    if (!capacity)
        return UNCAPPED_START;
    uint64_t extra = capacity / 4 > (32ull << 20) ? capacity / 4 : (32ull << 20);
    return capacity > UINT64_MAX / 2 ? UINT64_MAX / 2 : capacity + extra;
}

static uint64_t reserved; /* by the runtime for the devices, so far */

/* Address space the runtime may still reserve: in all, a third of what RLIMIT_AS would
 * leave the program without it. */
static uint64_t budget(void)
{
    uint64_t headroom = mp_os_address_headroom();
    if (headroom == UINT64_MAX)
        return headroom;
    uint64_t ours = __atomic_load_n(&reserved, __ATOMIC_RELAXED);
    uint64_t allowed = (headroom + ours) / 3;
    return allowed > ours ? allowed - ours : 0;
}

static uint64_t units_of(uint64_t bytes, unsigned shift)
{
    uint64_t n = (bytes >> shift) + ((bytes & ((1ull << shift) - 1)) != 0);
    return n ? n : 1;
}

/* mimalloc madvises the memory it maps for itself (the parts of its page map, its
 * metadata) for transparent huge pages: the entries of a few arenas then cost two 2 MiB
 * pages, 4 MiB of the program's memory and of a memory cgroup's limit, for a few KiB (a
 * placed empty program used 5.2 MiB more than the bare one, 1.4 MiB without). Its THP
 * option goes off before the first arena; mimalloc has normally started by then (its
 * constructor). One that starts here with the option off sets PR_SET_THP_DISABLE for the
 * whole process, which would take huge pages from the program too: the flag is put back. */
static void mimalloc_options(const struct mp_policy *policy)
{
    int before = mp_os_thp_disabled();
    mi_option_set(mi_option_allow_thp, 0);
    /* Freed slices go back to the kernel after 100 ms instead of mimalloc's 1 s (unless
     * MIMALLOC_PURGE_DELAY says otherwise): under a memory limit, memory held for the
     * delay is memory the kernel swaps or takes from the page cache. OpenFOAM with swap
     * at 75% of its peak: 8.9 s -> 6.4 s; unlimited, its peak 270 -> 241 MiB (glibc's
     * 240) in the same time. With a file device, the memory the program does not have
     * room for: after 10 ms. A fast device full of OpenFOAM's temporary fields held 137
     * MiB for 78 MiB of live blocks at 100 ms, 99 MiB at 10 ms; at 50% of OpenFOAM's
     * peak the plan was OOM-killed, and ran in 8.6-9.3 s at 10 ms (every object on the
     * file device: 10.8-11.7 s at 100 ms, 9.4-9.5 s at 10 ms). */
    int file = 0;
    for (uint32_t i = 0; i < policy->ndevices; i++)
        file |= policy->devices[i].kind == MP_FILE;
    if (!getenv("MIMALLOC_PURGE_DELAY"))
        mi_option_set(mi_option_purge_delay, file ? 10 : 100);
    mi_process_init(); /* once: a no-op if mimalloc had started (then its pages stay) */
    if (before == 0 && mp_os_thp_disabled() == 1)
        mp_os_thp_disable(0);
}

int mp_arenas_init(const struct mp_policy *policy, const char **why)
{
    mimalloc_options(policy);
    int n = (int)policy->ndevices, placing = 0;
    struct mp_device_heap *heaps = mp_internal_alloc((size_t)n * sizeof *heaps);
    if (!heaps) {
        *why = "no memory for the device table";
        return -1;
    }
    uint64_t want[MP_MAX_DEVICES] = {0};
    for (int i = 0; i < n; i++) {
        heaps[i].spec = &policy->devices[i];
        heaps[i].capacity = policy->devices[i].capacity;
        heaps[i].limit = heaps[i].capacity ? heaps[i].capacity : UINT64_MAX;
        heaps[i].extent = -1;
        if (policy->devices[i].kind != MP_NEXT_ALLOCATOR) {
            want[i] = wanted(heaps[i].capacity);
            placing++;
        }
    }
    /* units: each placing device's arena units and one special unit */
    unsigned shift = UNIT_SHIFT_MIN;
    uint64_t total;
    for (;; shift++) {
        total = 0;
        for (int i = 0; i < n; i++)
            total += want[i] ? units_of(want[i], shift) + 1 : 0;
        if (total <= MP_MAX_UNITS)
            break;
    }
    uint64_t unit = 1ull << shift, room = budget(), arena_units[MP_MAX_DEVICES] = {0};
    for (int i = 0; i < n; i++)
        arena_units[i] = want[i] ? units_of(want[i], shift) : 0;
    if (room != UINT64_MAX)
        room = room > ALIGN ? room - ALIGN : 0; /* the slack reserving takes to align */
    if (total && total > room / unit) {
        /* scale every device down alike, to what the limit leaves */
        uint64_t fit = room / unit, asked = total - (uint64_t)placing, left;
        if (fit < 2 * (uint64_t)placing) {
            *why = "cannot reserve address space for the devices: ulimit -v (RLIMIT_AS) leaves too little";
            return -1;
        }
        left = fit - (uint64_t)placing;
        total = (uint64_t)placing;
        for (int i = 0; i < n; i++)
            if (want[i]) {
                uint64_t a = arena_units[i] * left / asked;
                arena_units[i] = a ? a : 1;
                total += arena_units[i];
            }
        if (total > fit) {
            *why = "cannot reserve address space for the devices: ulimit -v (RLIMIT_AS) leaves too little";
            return -1;
        }
    }
    unsigned char *base = NULL, *table = mp_units;
    if (total) {
        base = mp_os_reserve((size_t)(total << shift), (size_t)ALIGN);
        reserved = total << shift;
        if (!base) {
            *why = "cannot reserve address space for the devices";
            return -1;
        }
    }
    uint64_t at = 0;
    for (int i = 0; i < n; i++) {
        if (!want[i])
            continue;
        struct mp_device_heap *h = &heaps[i];
        h->slot = base + (at << shift);
        h->span = arena_units[i] << shift;
        h->special = h->span;
        h->special_size = unit;
        memset(table + at, i, (size_t)arena_units[i]);
        table[at + arena_units[i]] = (unsigned char)(i | MP_UNIT_SPECIAL);
        at += arena_units[i] + 1;
    }
    mp_device_heaps = heaps;
    mp_ndevices = n;
    mp_unit_shift = shift;
    mp_region_base = (uintptr_t)base;
    __atomic_store_n(&mp_region_size, (uintptr_t)(total << shift), __ATOMIC_RELEASE);
    return 0;
}

int mp_extent_of(const void *p)
{
    int n = __atomic_load_n(&mp_nextents, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if ((uintptr_t)p - mp_extents[i].base < mp_extents[i].size)
            return mp_extents[i].dev;
    return -1;
}

uint64_t mp_arena_reserved(int dev, int *grown)
{
    const struct mp_device_heap *h = &mp_device_heaps[dev];
    uint64_t bytes = h->slot ? h->span + h->special_size : 0;
    int n = __atomic_load_n(&mp_nextents, __ATOMIC_ACQUIRE);
    for (int i = 0; i < n; i++)
        if (mp_extents[i].dev == dev)
            bytes += mp_extents[i].size;
    *grown = h->grown;
    return bytes;
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

/* A device that has used its address space and cannot reserve more: its allocations go
 * down the fallback chain from now on; say so once. */
static int out_of_room(struct mp_device_heap *h)
{
    if (!h->out_of_room) {
        h->out_of_room = 1;
        const char *parts[] = {"memplace: device '", h->spec->name, "': no more address space "
                               "for it (ulimit -v); its allocations go to the next device\n"};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            mp_write_all(2, parts[i], strlen(parts[i]));
    }
    return 0;
}

/* Reserve an extent for device `idx` as big as all its room so far (within the budget),
 * and grow there from now on. Called with the device's lock held. */
static int new_extent(struct mp_device_heap *h, int idx)
{
    uint64_t unit = 1ull << mp_unit_shift, have = h->span;
    int n = __atomic_load_n(&mp_nextents, __ATOMIC_ACQUIRE); /* other devices may add some */
    for (int i = 0; i < n; i++)
        if (mp_extents[i].dev == idx)
            have += mp_extents[i].size;
    uint64_t size = have < MAX_EXTENT ? have : MAX_EXTENT, room = budget();
    if (room != UINT64_MAX)
        room = room > ALIGN ? room - ALIGN : 0; /* the slack reserving takes to align */
    if (size > room)
        size = room & ~(unit - 1);
    if (size < mi_arena_min_size())
        return out_of_room(h);
    mp_lock(&extent_lock);
    void *base = mp_nextents < MP_MAX_EXTENTS ? mp_os_reserve((size_t)size, (size_t)ALIGN) : NULL;
    if (base) {
        mp_extents[mp_nextents] = (struct mp_extent){(uintptr_t)base, size, idx, 0};
        __atomic_fetch_add(&reserved, size, __ATOMIC_RELAXED);
        h->extent = mp_nextents;
        h->grown++;
        __atomic_store_n(&mp_nextents, mp_nextents + 1, __ATOMIC_RELEASE);
    }
    mp_unlock(&extent_lock);
    return base ? 1 : out_of_room(h);
}

/* mlock a new arena of device `idx` (on fault); say once when the limit refuses. */
static int lock(struct mp_device_heap *h, int idx, void *at, uint64_t size)
{
    int err = mp_os_lock(at, (size_t)size);
    if (err && !__atomic_exchange_n(&lock_warned[idx], 1, __ATOMIC_RELAXED)) {
        const char *parts[] = {"memplace: device '", h->spec->name, "': cannot lock its memory (",
                               err == EPERM ? "EPERM" : err == ENOMEM ? "ENOMEM" : err == EAGAIN ? "EAGAIN" : "error",
                               ": ulimit -l, RLIMIT_MEMLOCK); it stays swappable\n"};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            mp_write_all(2, parts[i], strlen(parts[i]));
    }
    return err == 0;
}

/* mimalloc's commit and purge on a locked arena: a purge (freed slices, after mimalloc's
 * delay) unlocks the range and gives its pages back, a commit before reuse locks it
 * again, so what stays locked is what the program holds, not every page the arena ever
 * touched (OpenFOAM at 75% of its peak: 122 MiB locked for a device whose live peak was
 * 34 MiB, and the run 3.6x slower than unlocked). mimalloc's own purge cannot: a locked
 * range refuses MADV_DONTNEED. */
static bool locked_commit(bool commit, void *start, size_t size, bool *is_zero, void *arg)
{
    (void)arg;
    if (!commit)
        return mp_os_unlock_release(start, size) == 0; /* released: zeros, committed again before reuse */
    if (is_zero)
        *is_zero = false; /* a range mimalloc commits may hold slices it never purged */
    mp_os_lock(start, size); /* refused (RLIMIT_MEMLOCK): the memory serves unlocked */
    return true;
}

/* Has the filesystem of file device `h` twice its arena files free? Asked at most every
 * 100 ms (statfs is a round trip to the server on a network filesystem). Called with the
 * device's punch lock held. */
static int roomy(struct mp_device_heap *h)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &now);
    int64_t ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (h->room_checked == 0 || ms - h->room_checked >= 100) {
        h->roomy = mp_os_free_bytes(h->spec->path) / 2 > __atomic_load_n(&h->backed, __ATOMIC_RELAXED);
        h->room_checked = ms ? ms : 1;
    }
    return h->roomy;
}

/* mimalloc's commit and purge on a file device. mimalloc's own purge (MADV_DONTNEED) only
 * unmaps: the freed pages stay in the page cache, dirty, and the kernel writes them to
 * disk when it needs the memory and reads them back when the block is reused. A purge
 * here punches them out of the file instead (MADV_REMOVE: on ext4 and tmpfs dropped
 * unwritten; a hole reads as zeros without a read). OpenFOAM x4 with every object on the
 * file device at 50% of its peak: 1.42M -> 1.02M pages written, 510k -> 270k file
 * refaults (medians of 6 interleaved runs; wall time alike, 16.7 and 16.6 s). A hole
 * takes disk blocks again when written, so it is punched only while the
 * filesystem has twice the device's arena files free (as a fork's sparse copy,
 * os_memory.c); else the pages stay. Never while a fork copies the files (heaps/fork.c):
 * a range the child sees in use may be free here, and the reverse. */
static bool file_commit(bool commit, void *start, size_t size, bool *is_zero, void *arg)
{
    struct mp_device_heap *h = arg;
    if (commit) {
        if (is_zero)
            *is_zero = false; /* a range mimalloc commits may hold slices it never purged */
        return true;
    }
    int saved = errno, punched = 0;
    /* a try: held by a fork (or by a purge in an atfork handler run before ours) */
    if (!__atomic_exchange_n(&h->punch_lock, 1, __ATOMIC_ACQUIRE)) {
        if (!__atomic_load_n(&mp_file_forks, __ATOMIC_ACQUIRE) && !h->cannot_punch && roomy(h)) {
            int err = mp_os_punch(start, size);
            punched = err == 0;
            if (err == EOPNOTSUPP) /* the filesystem cannot punch holes (EINVAL: a range the program locked) */
                h->cannot_punch = 1;
        }
        mp_unlock(&h->punch_lock);
    }
    if (!punched)
        mp_os_drop_mapping(start, size);
    errno = saved; /* a purge runs inside the program's free() */
    return punched; /* punched: mimalloc commits it again before reuse (a no-op) */
}

/* Turn the next part of the device's room into an arena. Called with the device's lock
 * held. */
static int grow(struct mp_device_heap *h, int idx)
{
    if (h->dead || h->out_of_room || h->narenas == MP_MAX_ARENAS)
        return 0;
    uint64_t left = h->extent < 0 ? h->span - h->arranged
                                  : mp_extents[h->extent].size - mp_extents[h->extent].arranged;
    if (left < mi_arena_min_size() && !new_extent(h, idx))
        return 0;
    struct mp_extent *e = h->extent < 0 ? NULL : &mp_extents[h->extent];
    unsigned char *area = e ? (unsigned char *)e->base : h->slot;
    uint64_t *arranged = e ? &e->arranged : &h->arranged;
    const struct mp_device_spec *s = h->spec;
    int backed = s->kind == MP_FILE || (s->flags & MP_FLAG_HUGETLB);
    uint64_t chunk = (e ? e->size : h->span) - *arranged;
    uint64_t max = backed ? BACKED_ARENA : ANON_ARENA;
    if (chunk > max)
        chunk = max;
    if (chunk < mi_arena_min_size())
        return 0;
    unsigned char *at = area + *arranged;
    int err;
    if (s->kind == MP_FILE) {
        if (!(err = mp_os_back_file(at, chunk, s->path)))
            __atomic_store_n(&h->backed, h->backed + chunk, __ATOMIC_RELAXED);
    } else
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
    /* a locked device: its pages stay resident (never swapped) while the program holds
     * them; unlocked if RLIMIT_MEMLOCK says no. Huge pages (MAP_HUGETLB) are never swapped
     * anyway: locked, they are left pinned, as mimalloc leaves them. */
    int locked = (s->flags & MP_FLAG_LOCK) && lock(h, idx, at, chunk);
    int hugetlb = (s->flags & MP_FLAG_HUGETLB) != 0;
    mi_arena_id_t id;
    if (!mi_manage_memory(at, chunk, true, locked && hugetlb, true, -1, true,
                          locked && !hugetlb ? locked_commit : s->kind == MP_FILE ? file_commit : NULL, h, &id))
        return 0;
    mi_heap_t *mh = mi_heap_new_in_arena(id);
    if (!mh)
        return 0;
    *arranged += chunk;
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
    /* two fresh arenas at most: a block that fits in neither will not fit in a third */
    for (int fresh = 0; !p && fresh < 2 && grow(h, idx); fresh++)
        p = heap_alloc(h->heaps[h->narenas - 1], size, align, zero);
    mp_unlock(&h->lock);
    return p;
}
