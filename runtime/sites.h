/* Call sites: which rule an allocation matches, from its return addresses. */
#ifndef MEMPLACE_SITES_H
#define MEMPLACE_SITES_H

#include <stddef.h>
#include <stdint.h>
#include "memplace.h"
#include "policy.h"

/* Prepare rule matching for `policy` (module table, absolute ranges, thread caches). */
int mp_sites_init(const struct mp_policy *policy, const char **why);
struct mp_thread;
/* The rule index for an allocation of `size` whose malloc-family call returns to `ra`,
 * or -1 when no rule matches; counts the hit. `sp` is where the stack scan starts. */
int mp_sites_match(struct mp_thread *self, uintptr_t ra, const void *sp, size_t size);
/* Per-rule hit counters: call mp_sites_flush() first to include every thread's. */
struct mp_rule_stats { uint64_t hits, bytes; };
const struct mp_rule_stats *mp_sites_rule_stats(uint32_t rule);
void mp_sites_flush(void);

#endif
