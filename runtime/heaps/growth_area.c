/* Growth areas, at the start of a device's special part (types.h): a block that realloc
 * grows past GROWTH_MIN moves, once, to an area of its own and grows in place there (as
 * glibc grows the block at the top of its heap) instead of being copied into a larger
 * size class at every step. Only its size counts as live; the untouched rest of the area
 * costs address space only. A freed area stays mapped as a spare (at most MAX_SPARE per
 * device), so steady growth makes no system call. The area's slot is its address, so
 * growing in place takes no lock: the block is the program's. */
#include "internal.h"

#define GROWTH_MIN 512 /* below this, realloc copies within mimalloc's classes */
#define MAX_SPARE 4

struct mp_growth *mp_growth_of(struct mp_device_heap *h, const void *p)
{
    uint64_t at = mp_offset_in_slot(h, p) - h->special;
    if (at >= (uint64_t)MP_MAX_GROWTH * MP_GROWTH_AREA || at % MP_GROWTH_AREA)
        return NULL;
    struct mp_growth *g = &h->growth[at / MP_GROWTH_AREA];
    return __atomic_load_n(&g->state, __ATOMIC_ACQUIRE) == MP_GROWTH_GROWING ? g : NULL;
}

void *mp_growth_area_alloc(struct mp_thread *self, int dev, size_t n)
{
    struct mp_device_heap *h = &mp_device_heaps[dev];
    if (h->spec->kind == MP_NEXT_ALLOCATOR || h->dead || n < GROWTH_MIN || n > MP_GROWTH_AREA / 2 ||
        mp_device_full(self, dev, n))
        return NULL;
    unsigned char *p = NULL;
    mp_lock(&h->lock);
    int pick = -1;
    for (int i = 0; i < MP_MAX_GROWTH; i++) /* a spare first: no system call */
        if (h->growth[i].state == MP_GROWTH_SPARE || (pick < 0 && h->growth[i].state == MP_GROWTH_UNMAPPED))
            pick = i;
    if (pick >= 0) {
        struct mp_growth *g = &h->growth[pick];
        unsigned char *q = mp_growth_area(h, pick);
        if (g->state == MP_GROWTH_SPARE || mp_os_back_device(h->spec, q, MP_GROWTH_AREA) == 0) {
            h->nspare -= g->state == MP_GROWTH_SPARE;
            g->used = n;
            __atomic_store_n(&g->state, MP_GROWTH_GROWING, __ATOMIC_RELEASE);
            p = q;
        }
    }
    mp_unlock(&h->lock);
    if (p)
        mp_count(self, dev, n, (int64_t)n);
    return p;
}

uint64_t mp_growth_release(struct mp_device_heap *h, struct mp_growth *g, void *p)
{
    mp_lock(&h->lock);
    uint64_t used = g->used;
    int keep = h->nspare < MAX_SPARE;
    __atomic_store_n(&g->state, keep ? MP_GROWTH_SPARE : MP_GROWTH_UNMAPPED, __ATOMIC_RELEASE);
    h->nspare += keep;
    if (!keep)
        mp_os_back_anonymous(p, MP_GROWTH_AREA, -1, 0); /* memory returned, address kept */
    mp_unlock(&h->lock);
    return used;
}
