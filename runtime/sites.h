/* Call sites: which rule an allocation matches, from its return addresses. */
#ifndef MEMPLACE_SITES_H
#define MEMPLACE_SITES_H

#include <stddef.h>
#include <stdint.h>
#include "memplace.h"
#include "policy.h"

/* Prepare rule matching for `policy` (module table, absolute ranges, thread caches). */
int mp_sites_init(const struct mp_policy *policy, const char **why);
/* The rule index for an allocation of `size` whose malloc-family call returns to `ra`,
 * or -1 when no rule matches. `sp` is the allocator's stack pointer (start of the scan). */
int mp_sites_match(uintptr_t ra, const void *sp, size_t size);
/* Per-rule hit counters, read at exit. */
struct mp_rule_stats { uint64_t hits, bytes; };
const struct mp_rule_stats *mp_sites_rule_stats(uint32_t rule);
void mp_sites_count(int rule, size_t size);

#endif
