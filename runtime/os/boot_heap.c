/* Boot heap: serves the few allocations that arrive while the next allocator is being
 * resolved (dlsym and dlerror allocate). Lock-free bump allocation over a static area;
 * a block stores its size in the 16 bytes before it so realloc and malloc_usable_size work.
 * Blocks are never reused: free of a boot block is a no-op, forever. */
#include <errno.h>
#include "internal.h"

#define BOOT_AREA_SIZE MP_BOOT_AREA_SIZE
#define BOOT_HEADER 16u

MP_HIDDEN unsigned char mp_boot_area[BOOT_AREA_SIZE] __attribute__((aligned(4096)));
static size_t boot_used;
static size_t boot_live; /* blocks handed out and not yet freed or moved by realloc */

void *mp_boot_alloc(size_t size, size_t align)
{
    if (align < BOOT_HEADER)
        align = BOOT_HEADER;
    if (size > BOOT_AREA_SIZE || align > BOOT_AREA_SIZE / 4) {
        errno = ENOMEM;
        return NULL;
    }
    size_t used = __atomic_load_n(&boot_used, __ATOMIC_RELAXED);
    for (;;) {
        size_t start = (used + BOOT_HEADER + align - 1) & ~(align - 1);
        size_t end = (start + size + BOOT_HEADER - 1) & ~(size_t)(BOOT_HEADER - 1);
        if (end > BOOT_AREA_SIZE) {
            errno = ENOMEM;
            return NULL;
        }
        if (__atomic_compare_exchange_n(&boot_used, &used, end, 1, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED)) {
            unsigned char *p = mp_boot_area + start;
            *(size_t *)(p - BOOT_HEADER) = size;
            __atomic_fetch_add(&boot_live, 1, __ATOMIC_RELAXED);
            return p; /* static storage: already zero, so calloc needs no memset */
        }
    }
}

size_t mp_boot_usable_size(const void *p)
{
    return *(const size_t *)((const unsigned char *)p - BOOT_HEADER);
}

void mp_boot_release(const void *p)
{
    (void)p;
    __atomic_fetch_sub(&boot_live, 1, __ATOMIC_RELAXED);
}

size_t mp_boot_live(void) { return __atomic_load_n(&boot_live, __ATOMIC_ACQUIRE); }
