/* Every symbol the runtime exports: the malloc family and memplace's own API.
 * This file is the whole public surface; `nm -D libmemplace.so` lists exactly these.
 *
 * Transparent mode (no policy): each entry point is a test of the boot-heap range (for
 * the pointer-taking ones) and a tail call into the next allocator. */
#define _GNU_SOURCE
#include <errno.h>
#include <string.h>
#include "memplace.h"

MP_EXPORT void *malloc(size_t n) { return mp_next.malloc(n); }

MP_EXPORT void free(void *p)
{
    if (mp_unlikely(mp_boot_owns(p)))
        return; /* boot blocks are never reused */
    mp_next.free(p);
}

MP_EXPORT void *calloc(size_t n, size_t size) { return mp_next.calloc(n, size); }

/* A boot block moves to the next allocator on its first realloc. */
MP_COLD static void *realloc_boot_block(void *p, size_t n)
{
    if (n == 0)
        return NULL; /* as glibc: realloc(p, 0) frees p and returns NULL */
    void *q = malloc(n);
    if (q) {
        size_t old = mp_boot_usable_size(p);
        memcpy(q, p, old < n ? old : n);
    }
    return q;
}

MP_EXPORT void *realloc(void *p, size_t n)
{
    if (mp_unlikely(mp_boot_owns(p)))
        return realloc_boot_block(p, n);
    return mp_next.realloc(p, n);
}

MP_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    if (mp_unlikely(mp_boot_owns(p))) {
        size_t total;
        if (__builtin_mul_overflow(n, size, &total)) {
            errno = ENOMEM;
            return NULL;
        }
        return realloc_boot_block(p, total);
    }
    return mp_next.reallocarray(p, n, size);
}

MP_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    return mp_next.posix_memalign(out, align, n);
}

MP_EXPORT void *aligned_alloc(size_t align, size_t n) { return mp_next.aligned_alloc(align, n); }
MP_EXPORT void *memalign(size_t align, size_t n) { return mp_next.memalign(align, n); }
MP_EXPORT void *valloc(size_t n) { return mp_next.valloc(n); }
MP_EXPORT void *pvalloc(size_t n) { return mp_next.pvalloc(n); }

MP_EXPORT size_t malloc_usable_size(void *p)
{
    if (mp_unlikely(mp_boot_owns(p)))
        return mp_boot_usable_size(p);
    return mp_next.usable_size(p);
}

MP_EXPORT void free_sized(void *p, size_t n)
{
    if (mp_unlikely(mp_boot_owns(p)))
        return;
    mp_next.free_sized(p, n);
}

MP_EXPORT void free_aligned_sized(void *p, size_t align, size_t n)
{
    if (mp_unlikely(mp_boot_owns(p)))
        return;
    mp_next.free_aligned_sized(p, align, n);
}

/* ---- memplace's own API ---- */

MP_EXPORT const char *memplace_version(void) { return MEMPLACE_VERSION; }

/* Which allocator memplace forwards to: the path of the object providing "malloc". */
MP_EXPORT const char *memplace_next_allocator(void)
{
    mp_resolve_next();
    return mp_next_provider();
}
