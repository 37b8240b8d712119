/* Capacity and accounting of the device heaps. The capacity is a limit on a device's
 * live bytes, checked before each allocation: blocks of MP_EXACT_BYTES or more are
 * counted at once, smaller ones in per-thread batches (mp_add_live, internal.h), so a
 * device can exceed its capacity by at most MP_LIVE_BATCH per thread in small blocks. */
#include "internal.h"

/* Publish a thread's pending live bytes into the device's live total and peak. */
void mp_publish_live(struct mp_device_heap *h, int64_t delta)
{
    uint64_t live = __atomic_add_fetch(&h->stats.live, (uint64_t)delta, __ATOMIC_RELAXED);
    uint64_t peak = __atomic_load_n(&h->stats.peak, __ATOMIC_RELAXED);
    while ((int64_t)live > 0 && live > peak &&
           !__atomic_compare_exchange_n(&h->stats.peak, &peak, live, 1, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
        ;
}

MP_COLD void mp_publish_pending(struct mp_device_heap *h, struct mp_device_counters *c)
{
    mp_publish_live(h, c->live_pending);
    c->live_pending = 0;
}

void mp_device_heap_stats(int dev, struct mp_device_stats *out)
{
    *out = mp_device_heaps[dev].stats;
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

void mp_device_heap_count_next(struct mp_thread *self, int dev, size_t size)
{
    if (dev >= 0)
        mp_count(self, dev, size, 0);
}
