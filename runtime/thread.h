/* Per-thread state of the runtime: the call-site cache and the device counters, kept per
 * thread so the allocation path takes no lock and no atomic. Blocks are never freed: a
 * block of an exited thread is reused by a new thread, counters and cache intact (both
 * stay valid), so summing every block ever made gives the process totals at exit. */
#ifndef MEMPLACE_THREAD_H
#define MEMPLACE_THREAD_H

#include <stdint.h>
#include "memplace.h"
#include "policy.h"

#define MP_SITE_CACHE 256
#define MP_MAX_CANDIDATES 4
enum { MP_FIXED_NOT = 0, MP_FIXED_ARENA = 1, MP_FIXED_SYSTEM = 2 };

/* 128 bytes, so the fast path (frames[0] .. count[0].hits) reads one cache line. */
struct mp_site_entry {
    uintptr_t frames[MP_MAX_FRAMES];
    uint32_t generation;              /* 0 = empty */
    int16_t ncand;                    /* -1: too many candidates, scan the rules */
    uint8_t needs_scan;               /* keyed by a return address into libc/libstdc++:
                                         the site's frames come from the stack scan */
    uint8_t fixed;                    /* one-frame policy, and the size does not matter:
                                         every allocation here goes to `device`, an arena
                                         (MP_FIXED_ARENA) or the next allocator (_SYSTEM) */
    int32_t device;                   /* when fixed: cand[0]'s device, or the default */
    struct { uint64_t hits, bytes; } count[MP_MAX_CANDIDATES]; /* of cand[i], not yet in
                                                                  the totals */
    uint16_t cand[MP_MAX_CANDIDATES]; /* rules these frames can match, in priority order */
} __attribute__((aligned(64)));

struct mp_device_counters {
    uint64_t allocations, bytes;
    int64_t live_pending; /* usable bytes allocated minus freed, not yet in the device's live */
};

/* Freed small blocks a thread keeps for reuse, per device (the first few) and size class */
#define MP_TCACHE_DEVICES 4
#define MP_TCACHE_BINS (1024 / 8 + 1) /* by usable size / 8, up to mimalloc's small blocks */
struct mp_tcache_bin { void *head; uint32_t count; };

#define MP_PROFILE_CACHE 64
struct mp_profile_entry { uintptr_t frames[MP_MAX_FRAMES]; uint32_t site_plus_one; };

/* The last stack scan: an allocation from the same return address with the same stack
 * pointer has the same callers, as long as the stack words they were found in still hold
 * them (checked on use). Loops allocate this way, and skip the scan. */
struct mp_scan_memo {
    uintptr_t ra;
    const void *sp, *modules;
    int n;
    uintptr_t frames[MP_MAX_FRAMES];
    const uintptr_t *slots[MP_MAX_FRAMES];
};

struct mp_thread {
    struct mp_thread *next_all, *next_free;
    uintptr_t stack_top; /* 0: unknown, do not scan the stack */
    struct mp_device_counters devices[MP_MAX_DEVICES];
    /* mimalloc's thread-local heap of each device's newest arena heap, for this thread
     * (allocating through it skips mimalloc's own lookup); reset when the block is reused */
    void *theaps[MP_MAX_DEVICES];
    int theap_of[MP_MAX_DEVICES]; /* which arena heap the cached theap belongs to, + 1 */
    struct mp_site_entry cache[MP_SITE_CACHE];
    struct mp_scan_memo scan;
    struct mp_tcache_bin tcache[MP_TCACHE_DEVICES][MP_TCACHE_BINS];
    struct mp_profile_entry profile_cache[MP_PROFILE_CACHE];
};

MP_HIDDEN extern MP_TLS struct mp_thread *mp_self;
MP_HIDDEN struct mp_thread *mp_thread_attach(const void *sp);

/* This thread's block, made on first use; NULL while it is being made (allocations the
 * set-up itself makes, e.g. in pthread_getattr_np, then go unplaced). */
static inline struct mp_thread *mp_thread(const void *sp)
{
    struct mp_thread *t = mp_self;
    if (mp_likely(t != NULL))
        return t;
    return mp_thread_attach(sp);
}

MP_HIDDEN void mp_threads_init(void);
MP_HIDDEN void mp_threads_fork_prepare(void);
MP_HIDDEN void mp_threads_fork_release(void);
/* Every block ever made (live and recycled), for totals at exit. */
MP_HIDDEN struct mp_thread *mp_threads_all(void);

#endif
