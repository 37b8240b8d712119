/* The next allocator: the malloc family the program would have used without memplace
 * (libc's, or a library in between such as libOpenFOAM.so, jemalloc, an MPI hook).
 *
 * Each entry point is the definition that follows libmemplace.so in the lookup order
 * (RTLD_NEXT): exactly what the program would have bound to without us, so a block is
 * always freed by the allocator that made it. The provider named to the user is the
 * object that defines "malloc". Until resolution completes the
 * table points at boot_* functions, and allocations made during resolution (dlsym and
 * dlerror allocate) come from the boot heap. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include "internal.h"

enum { UNRESOLVED, RESOLVING, RESOLVED };
static int state = UNRESOLVED;
static MP_TLS int resolving_here;
static const char *provider = "";
static void (*provider_free)(void *);

static void *boot_malloc(size_t n);
static void boot_free(void *p);
static void *boot_calloc(size_t n, size_t size);
static void *boot_realloc(void *p, size_t n);
static void *boot_reallocarray(void *p, size_t n, size_t size);
static int boot_posix_memalign(void **out, size_t align, size_t n);
static void *boot_aligned_alloc(size_t align, size_t n);
static void *boot_memalign(size_t align, size_t n);
static void *boot_valloc(size_t n);
static void *boot_pvalloc(size_t n);
static size_t boot_usable_size(void *p);
static void boot_free_sized(void *p, size_t n);
static void boot_free_aligned_sized(void *p, size_t a, size_t n);

MP_HIDDEN struct mp_allocator mp_next = {
    boot_malloc, boot_free, boot_calloc, boot_realloc, boot_reallocarray,
    boot_posix_memalign, boot_aligned_alloc, boot_memalign, boot_valloc, boot_pvalloc,
    boot_usable_size, boot_free_sized, boot_free_aligned_sized,
};

const char *mp_next_provider(void) { return provider; }

/* free must keep errno; glibc's does since 2.33, an allocator in between may not. */
static void free_keeping_errno(void *p)
{
    int saved = errno;
    provider_free(p);
    errno = saved;
}

static void *reallocarray_by_realloc(void *p, size_t n, size_t size)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return mp_next.realloc(p, total);
}

static void free_sized_by_free(void *p, size_t n) { (void)n; mp_next.free(p); }
static void free_aligned_sized_by_free(void *p, size_t a, size_t n)
{
    (void)a, (void)n;
    mp_next.free(p);
}
static void *aligned_alloc_by_memalign(size_t a, size_t n) { return mp_next.memalign(a, n); }

static int is_glibc(const char *path)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    return strncmp(base, "libc.so", 7) == 0;
}

static void resolve(void)
{
    struct mp_allocator t;
    Dl_info info;
    t.malloc = dlsym(RTLD_NEXT, "malloc");
    if (t.malloc && dladdr(t.malloc, &info) && info.dli_fname)
        provider = info.dli_fname;
    t.free = dlsym(RTLD_NEXT, "free");
    t.calloc = dlsym(RTLD_NEXT, "calloc");
    t.realloc = dlsym(RTLD_NEXT, "realloc");
    t.reallocarray = dlsym(RTLD_NEXT, "reallocarray");
    t.posix_memalign = dlsym(RTLD_NEXT, "posix_memalign");
    t.aligned_alloc = dlsym(RTLD_NEXT, "aligned_alloc");
    t.memalign = dlsym(RTLD_NEXT, "memalign");
    t.valloc = dlsym(RTLD_NEXT, "valloc");
    t.pvalloc = dlsym(RTLD_NEXT, "pvalloc");
    t.usable_size = dlsym(RTLD_NEXT, "malloc_usable_size");
    /* free_sized and free_aligned_sized are free with a hint (C23 lets them be exactly
     * free). Not looking them up keeps dlsym from failing, and a failing dlsym leaves
     * boot blocks alive (dlerror's state) that would keep a range check in every free. */
    t.free_sized = NULL;
    t.free_aligned_sized = NULL;
    if (!t.malloc || !t.free || !t.calloc || !t.realloc || !t.memalign ||
        !t.posix_memalign || !t.usable_size || !t.valloc) {
        static const char msg[] =
            "memplace: cannot find the next allocator's malloc family; aborting\n";
        mp_write_all(2, msg, sizeof msg - 1);
        _exit(127);
    }
    if (!(t.free && dladdr(t.free, &info) && info.dli_fname && is_glibc(info.dli_fname))) {
        provider_free = t.free;
        t.free = free_keeping_errno;
    }
    if (!t.reallocarray)
        t.reallocarray = reallocarray_by_realloc;
    if (!t.aligned_alloc)
        t.aligned_alloc = aligned_alloc_by_memalign;
    if (!t.free_sized)
        t.free_sized = free_sized_by_free;
    if (!t.free_aligned_sized)
        t.free_aligned_sized = free_aligned_sized_by_free;
    if (!t.pvalloc)
        t.pvalloc = t.valloc;
    /* Publish entry by entry; each store is a single aligned pointer write. */
    void **dst = (void **)&mp_next, **src = (void **)&t;
    for (size_t i = 0; i < sizeof t / sizeof(void *); i++)
        __atomic_store_n(&dst[i], src[i], __ATOMIC_RELEASE);
}

int mp_resolve_next(void)
{
    int s = __atomic_load_n(&state, __ATOMIC_ACQUIRE);
    if (mp_likely(s == RESOLVED))
        return 0;
    if (resolving_here)
        return -1;
    s = UNRESOLVED;
    if (__atomic_compare_exchange_n(&state, &s, RESOLVING, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        resolving_here = 1;
        resolve();
        resolving_here = 0;
        __atomic_store_n(&state, RESOLVED, __ATOMIC_RELEASE);
        return 0;
    }
    /* Another thread is resolving: it holds none of our locks and never waits for us. */
    while (__atomic_load_n(&state, __ATOMIC_ACQUIRE) != RESOLVED)
        mp_cpu_relax();
    return 0;
}

/* ---- boot_* : resolve, then re-dispatch; inside the resolution, serve from the boot heap */

static void *boot_malloc(size_t n)
{
    if (mp_resolve_next() == 0)
        return mp_next.malloc(n);
    return mp_boot_alloc(n, 16);
}

static void boot_free(void *p)
{
    if (p == NULL)
        return;
    if (mp_boot_owns(p)) {
        mp_boot_release(p);
        return;
    }
    if (mp_resolve_next() == 0)
        mp_next.free(p);
    /* else: a foreign block freed by the resolver itself; leaking it is the safe choice */
}

static void *boot_calloc(size_t n, size_t size)
{
    if (mp_resolve_next() == 0)
        return mp_next.calloc(n, size);
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return mp_boot_alloc(total, 16);
}

static void *boot_realloc(void *p, size_t n)
{
    if (mp_resolve_next() == 0)
        return mp_next.realloc(p, n);
    void *q = mp_boot_alloc(n, 16);
    if (q && p)
        memcpy(q, p, mp_boot_owns(p) && mp_boot_usable_size(p) < n ? mp_boot_usable_size(p) : n);
    return q;
}

static void *boot_reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (mp_resolve_next() == 0)
        return mp_next.reallocarray(p, n, size);
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return boot_realloc(p, total);
}

static int valid_alignment(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

static int boot_posix_memalign(void **out, size_t align, size_t n)
{
    if (mp_resolve_next() == 0)
        return mp_next.posix_memalign(out, align, n);
    if (!valid_alignment(align) || align % sizeof(void *))
        return EINVAL;
    void *p = mp_boot_alloc(n, align);
    if (!p)
        return ENOMEM;
    *out = p;
    return 0;
}

static void *boot_aligned_alloc(size_t align, size_t n)
{
    if (mp_resolve_next() == 0)
        return mp_next.aligned_alloc(align, n);
    if (!valid_alignment(align)) {
        errno = EINVAL;
        return NULL;
    }
    return mp_boot_alloc(n, align);
}

static void *boot_memalign(size_t align, size_t n)
{
    if (mp_resolve_next() == 0)
        return mp_next.memalign(align, n);
    return boot_aligned_alloc(align, n);
}

static void *boot_valloc(size_t n)
{
    if (mp_resolve_next() == 0)
        return mp_next.valloc(n);
    return mp_boot_alloc(n, 4096);
}

static void *boot_pvalloc(size_t n)
{
    if (mp_resolve_next() == 0)
        return mp_next.pvalloc(n);
    return mp_boot_alloc((n + 4095) & ~(size_t)4095, 4096);
}

static size_t boot_usable_size(void *p)
{
    if (p == NULL)
        return 0;
    if (mp_resolve_next() == 0)
        return mp_next.usable_size(p);
    return 0;
}

static void boot_free_sized(void *p, size_t n)
{
    (void)n;
    boot_free(p);
}

static void boot_free_aligned_sized(void *p, size_t a, size_t n)
{
    (void)a, (void)n;
    boot_free(p);
}

void *mp_next_symbol(void **cache, const char *name)
{
    void *f = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (!f) {
        f = dlsym(RTLD_NEXT, name);
        __atomic_store_n(cache, f, __ATOMIC_RELEASE);
    }
    return f;
}
