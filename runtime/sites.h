/* Call sites: which rule an allocation matches, from its return addresses. */
#ifndef MEMPLACE_SITES_H
#define MEMPLACE_SITES_H

#include <stddef.h>
#include <stdint.h>
#include "memplace.h"
#include "policy.h"
#include "thread.h"

/* Prepare rule matching for `policy` (module table, absolute ranges, thread caches). */
int mp_sites_init(const struct mp_policy *policy, const char **why);
/* The rule index for an allocation of `size` whose malloc-family call returns to `ra`,
 * or -1 when no rule matches; counts the hit. `sp` is where the stack scan starts. */
int mp_sites_match(struct mp_thread *self, uintptr_t ra, const void *sp, size_t size);
/* The generation of the rules' absolute addresses; cache entries of another are stale. */
MP_HIDDEN extern uint32_t mp_sites_generation;

/* A thread's cache slot for a site's frames. */
static inline unsigned mp_sites_slot(uintptr_t f0, uintptr_t f1, uintptr_t f2, uintptr_t f3)
{
    uintptr_t h = f0 ^ (f1 * 31) ^ (f2 * 1009) ^ (f3 * 65537);
    return (unsigned)((h ^ (h >> 12)) % MP_SITE_CACHE);
}

/* The fast path's lookup: the cached entry of a site whose one frame is `ra` and whose
 * device does not depend on the size (e->device), or NULL: then mp_sites_match decides.
 * The caller counts the hit with mp_sites_count once the allocation succeeded. */
static inline struct mp_site_entry *mp_sites_fixed(struct mp_thread *self, uintptr_t ra)
{
    struct mp_site_entry *e = &self->cache[mp_sites_slot(ra, 0, 0, 0)];
    if (mp_likely(e->frames[0] == ra && e->fixed &&
                  e->generation == __atomic_load_n(&mp_sites_generation, __ATOMIC_RELAXED)))
        return e;
    return NULL;
}

static inline void mp_sites_count(struct mp_site_entry *e, size_t size)
{
    e->count[0].hits++; /* a fixed entry's rule is cand[0], or none */
    e->count[0].bytes += size;
}

/* Per-rule hit counters: call mp_sites_flush() first to include every thread's. */
struct mp_rule_stats { uint64_t hits, bytes; };
const struct mp_rule_stats *mp_sites_rule_stats(uint32_t rule);
void mp_sites_flush(void);

#endif
