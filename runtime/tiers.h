/* One heap per memory device, on mimalloc exclusive arenas over memory memplace maps and
 * binds itself. All devices live in one reserved address range, one equal-sized slot per
 * device, so "is this block ours, and whose" is a subtraction and a shift. */
#ifndef MEMPLACE_TIERS_H
#define MEMPLACE_TIERS_H

#include <stddef.h>
#include <stdint.h>
#include "memplace.h"
#include "policy.h"

enum mp_fallback_reason { MP_FULL, MP_BIND_FAILED, MP_BACKING_FAILED, MP_ALIGNMENT, MP_REASONS };

struct mp_tier_stats {
    uint64_t allocations, bytes, live, peak;
    uint64_t fallbacks[MP_REASONS]; /* allocations this device passed on, by reason */
};

MP_HIDDEN extern uintptr_t mp_region_base;
MP_HIDDEN extern uintptr_t mp_region_size; /* 0 in transparent mode: nothing is ours */
MP_HIDDEN extern unsigned mp_slot_shift;

static inline int mp_tiers_own(const void *p)
{
    return (uintptr_t)p - mp_region_base < mp_region_size;
}

/* Set up the devices of `policy` (no memory is touched yet). 0 on success. */
int mp_tiers_init(const struct mp_policy *policy, const char **why);
struct mp_thread;
/* Allocate on device `dev`, or along its fallback chain. Returns NULL when the chain
 * ends at the next allocator (*served = the "system" device, or -1); counts in `self`. */
void *mp_tiers_alloc(struct mp_thread *self, int dev, size_t size, size_t align, int zero,
                     int *served);
/* The fast path: `dev` itself, plain or zeroed blocks of common sizes; NULL means "ask
 * mp_tiers_alloc" (nothing was counted). */
void *mp_tiers_alloc_fast(struct mp_thread *self, int dev, size_t size, int zero);
void mp_tiers_free(void *p);
size_t mp_tiers_usable_size(const void *p);
/* Resize block p in place to n bytes if it has the room; 1 if done. */
int mp_tiers_resize(struct mp_thread *self, void *p, size_t n);
/* A block that realloc grows to n bytes, given room to keep growing in place, on device
 * `dev` itself; NULL if the device cannot take it (mp_tiers_alloc then decides). */
void *mp_tiers_alloc_growing(struct mp_thread *self, int dev, size_t n);
int mp_tiers_device_of(const void *p);
/* Stats of device `dev`, summed over every thread (at exit). */
void mp_tiers_stats(int dev, struct mp_tier_stats *out);
/* Count an allocation the next allocator served on behalf of device `dev`. */
void mp_tiers_count_system(struct mp_thread *self, int dev, size_t size);

void mp_tiers_thread_exit(struct mp_thread *self);
/* pthread_atfork handlers (registered by init.c). */
void mp_tiers_fork_prepare(void);
void mp_tiers_fork_parent(void);
void mp_tiers_fork_child(void);

#endif
