/* Capacity and accounting of the device heaps. The capacity is a limit on a device's
 * live bytes, checked before each allocation: blocks of MP_EXACT_BYTES or more are
 * counted at once, smaller ones in per-thread batches (mp_add_live, internal.h), so a
 * device can exceed its capacity by at most MP_LIVE_BATCH per thread in small blocks.
 * A device of node scope counts against the live bytes of every process of the job on
 * this node (struct mp_node_counters), besides its own. */
#include <string.h>
#include "internal.h"

static struct mp_node_counters *node;
static int in_node; /* this image's live bytes are in the node's (leave and join flip it once) */

static void add_peak(uint64_t *peak_at, uint64_t live)
{
    uint64_t peak = __atomic_load_n(peak_at, __ATOMIC_RELAXED);
    while ((int64_t)live > 0 && live > peak &&
           !__atomic_compare_exchange_n(peak_at, &peak, live, 1, __ATOMIC_RELAXED, __ATOMIC_RELAXED))
        ;
}

static int node_scoped(int dev)
{
    return mp_device_heaps[dev].limit_live != &mp_device_heaps[dev].stats.live;
}

void mp_accounting_init(const char *shared)
{
    int wanted = 0;
    for (int i = 0; i < mp_ndevices; i++) {
        struct mp_device_heap *h = &mp_device_heaps[i];
        h->limit_live = &h->stats.live;
        wanted |= h->capacity && (h->spec->flags & MP_FLAG_NODE_SCOPE);
    }
    if (!wanted)
        return;
    node = shared && *shared ? mp_shared_page(shared, sizeof *node) : NULL;
    if (!node) {
        const char *parts[] = {"memplace: cannot share device capacities with the job's other "
                               "processes (", shared && *shared ? shared : "MEMPLACE_SHARED unset",
                               "); each capacity of scope \"node\" applies to this process alone\n"};
        for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
            mp_write_all(2, parts[i], strlen(parts[i]));
        return;
    }
    __atomic_fetch_add(&node->users, 1, __ATOMIC_RELAXED);
    in_node = 1;
    for (int i = 0; i < mp_ndevices; i++) {
        struct mp_device_heap *h = &mp_device_heaps[i];
        if (h->capacity && (h->spec->flags & MP_FLAG_NODE_SCOPE))
            h->limit_live = &node->device[i].live;
    }
}

/* Move this process's published live bytes into (+1) or out of (-1) the node's. */
static void node_share(int sign)
{
    if (!node)
        return;
    for (int i = 0; i < mp_ndevices; i++)
        if (node_scoped(i)) {
            uint64_t mine = __atomic_load_n(&mp_device_heaps[i].stats.live, __ATOMIC_RELAXED);
            uint64_t live = __atomic_add_fetch(&node->device[i].live, (uint64_t)sign * mine, __ATOMIC_RELAXED);
            add_peak(&node->device[i].peak, live);
        }
    __atomic_fetch_add(&node->users, (uint64_t)(int64_t)sign, __ATOMIC_RELAXED);
}

/* Once each way: quick_exit whose handler calls _exit, or exit racing _exit in another
 * thread, must not take the image's bytes out twice. */
void mp_accounting_leave(void)
{
    if (node && __atomic_exchange_n(&in_node, 0, __ATOMIC_ACQ_REL))
        node_share(-1);
}

void mp_accounting_join(void)
{
    if (node && !__atomic_exchange_n(&in_node, 1, __ATOMIC_ACQ_REL))
        node_share(1);
}

/* A forked child's copies of its parent's blocks are its own: it joins as a new image. */
void mp_accounting_forked(void)
{
    __atomic_store_n(&in_node, 0, __ATOMIC_RELEASE);
    mp_accounting_join();
}

/* Publish a thread's pending live bytes into the device's live total and peak. */
void mp_publish_live(struct mp_device_heap *h, int64_t delta)
{
    add_peak(&h->stats.peak, __atomic_add_fetch(&h->stats.live, (uint64_t)delta, __ATOMIC_RELAXED));
    /* not while the image is out of the node: another thread's frees during an exec, which
     * took the image's bytes out already */
    if (h->limit_live != &h->stats.live && __atomic_load_n(&in_node, __ATOMIC_ACQUIRE)) {
        uint64_t live = __atomic_add_fetch(h->limit_live, (uint64_t)delta, __ATOMIC_RELAXED);
        add_peak(&node->device[h - mp_device_heaps].peak, live);
    }
}

static int64_t room(struct mp_device_heap *h)
{
    if (h->dead)
        return INT64_MIN / 2; /* no pop passes, whatever the thread freed */
    int64_t live = (int64_t)__atomic_load_n(h->limit_live, __ATOMIC_RELAXED);
    uint64_t used = live > 0 ? (uint64_t)live : 0;
    uint64_t left = h->limit > used ? h->limit - used : 0;
    /* a thread's unpublished bytes are not in the peaks: at most a 32nd of a capacity */
    uint64_t step = h->limit / 32 < (uint64_t)MP_LIVE_BATCH - 1 ? h->limit / 32 : MP_LIVE_BATCH - 1;
    return (int64_t)(left < step ? left : step);
}

/* Also gives the thread a new credit: the device's room now, at most a batch (none for a
 * dead device). A credit is relative to pending bytes of zero, so it is renewed whenever
 * they are published. */
MP_COLD void mp_publish_pending(struct mp_device_heap *h, struct mp_device_counters *c)
{
    mp_publish_live(h, c->live_pending);
    c->live_pending = 0;
    c->credit = room(h);
}

int mp_over_capacity_now(struct mp_thread *self, int dev, size_t size)
{
    struct mp_device_heap *h = &mp_device_heaps[dev];
    if (self && self->devices[dev].live_pending < 0)
        mp_publish_pending(h, &self->devices[dev]);
    return mp_over_capacity(h, size);
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
