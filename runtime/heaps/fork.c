/* fork and the device heaps: no device lock held across it, and the child gets its own
 * copy of file devices. */
#define _GNU_SOURCE
#include <string.h>
#include <sys/mman.h>
#include "internal.h"

void mp_device_heaps_fork_prepare(void)
{
    for (int i = 0; i < mp_ndevices; i++)
        mp_lock(&mp_device_heaps[i].lock);
}

void mp_device_heaps_fork_parent(void)
{
    for (int i = mp_ndevices - 1; i >= 0; i--)
        mp_unlock(&mp_device_heaps[i].lock);
}

/* MAP_SHARED file memory would stay shared with the parent after fork, unlike every other
 * kind of memory: the child copies it into private memory of its own (a forked child's
 * file-device blocks live in ordinary memory). */
static void privatize(unsigned char *at, size_t length)
{
    void *copy = mmap(NULL, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (copy == MAP_FAILED)
        return;
    memcpy(copy, at, length);
    if (mremap(copy, length, length, MREMAP_MAYMOVE | MREMAP_FIXED, at) == MAP_FAILED)
        munmap(copy, length);
}

void mp_device_heaps_fork_child(void)
{
    for (int i = 0; i < mp_ndevices; i++) {
        struct mp_device_heap *h = &mp_device_heaps[i];
        if (h->spec->kind == MP_FILE) {
            if (h->arranged)
                privatize(h->slot, h->arranged);
            for (int e = 0; e < mp_nextents; e++)
                if (mp_extents[e].dev == i && mp_extents[e].arranged)
                    privatize((unsigned char *)mp_extents[e].base, mp_extents[e].arranged);
            for (int d = 0; d < h->ndirect; d++)
                privatize(h->slot + h->direct[d].offset, h->direct[d].length);
            for (int g = 0; g < MP_MAX_GROWTH; g++)
                if (h->growth[g].state != MP_GROWTH_UNMAPPED)
                    privatize(mp_growth_area(h, g), MP_GROWTH_AREA);
        }
    }
    mp_device_heaps_fork_parent();
}
