/* Internal interface of the memplace runtime (libmemplace.so).
 *
 * The runtime is preloaded into an unmodified program. entry.c holds every exported
 * malloc-family symbol; everything else is internal (hidden) and grouped by concern:
 *   next.c      the allocator we forward to ("next"), resolved once, bootstrap on the way
 *   boot_heap.c static area serving allocations made while "next" is being resolved
 *   init.c      process start: environment, status line for `memplace run --verbose`
 */
#ifndef MEMPLACE_H
#define MEMPLACE_H

#include <stddef.h>
#include <stdint.h>

#define MP_HIDDEN __attribute__((visibility("hidden")))
#define MP_EXPORT __attribute__((visibility("default")))
#define MP_COLD __attribute__((noinline, cold))
#define mp_likely(x) __builtin_expect(!!(x), 1)
#define mp_unlikely(x) __builtin_expect(!!(x), 0)
#if defined(__x86_64__) || defined(__i386__)
#define mp_cpu_relax() __builtin_ia32_pause()
#elif defined(__aarch64__)
#define mp_cpu_relax() __asm__ volatile("yield" ::: "memory")
#else
#define mp_cpu_relax() ((void)0)
#endif
/* A spin lock for the runtime's short critical sections (never held across a call into
 * the program or the next allocator, so it cannot deadlock with them). */
static inline void mp_lock(int *l)
{
    while (__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
        mp_cpu_relax();
}
static inline void mp_unlock(int *l) { __atomic_store_n(l, 0, __ATOMIC_RELEASE); }

#define MP_TLS __thread __attribute__((tls_model("initial-exec")))

/* The next allocator's entry points. Before resolution they point at boot_* functions
 * that resolve and then re-dispatch, so the hot path never tests "are we initialised". */
struct mp_allocator {
    void *(*malloc)(size_t);
    void (*free)(void *);
    void *(*calloc)(size_t, size_t);
    void *(*realloc)(void *, size_t);
    void *(*reallocarray)(void *, size_t, size_t);
    int (*posix_memalign)(void **, size_t, size_t);
    void *(*aligned_alloc)(size_t, size_t);
    void *(*memalign)(size_t, size_t);
    void *(*valloc)(size_t);
    void *(*pvalloc)(size_t);
    size_t (*usable_size)(void *);
    void (*free_sized)(void *, size_t);
    void (*free_aligned_sized)(void *, size_t, size_t);
};

MP_HIDDEN extern struct mp_allocator mp_next;

/* What the entry points do beyond forwarding: nothing (transparent), place (a policy is
 * in force) or record (profiling). Set once at start-up. */
enum { MP_TRANSPARENT = 0, MP_PLACING = 1, MP_PROFILING = 2 };
MP_HIDDEN extern int mp_mode;

/* Resolve mp_next (idempotent, thread-safe). Returns 0 when resolved, -1 when this thread
 * is inside the resolution itself (the caller must then use the boot heap). */
MP_HIDDEN int mp_resolve_next(void);
/* Path of the object the next allocator came from ("" before resolution). */
MP_HIDDEN const char *mp_next_provider(void);

/* Boot heap: a static, lock-free bump area; blocks are never reused. */
#define MP_BOOT_AREA_SIZE (256u * 1024u)
MP_HIDDEN extern unsigned char mp_boot_area[MP_BOOT_AREA_SIZE];
static inline int mp_boot_owns(const void *p)
{
    return (uintptr_t)p - (uintptr_t)mp_boot_area < MP_BOOT_AREA_SIZE;
}
MP_HIDDEN void *mp_boot_alloc(size_t size, size_t align);
MP_HIDDEN size_t mp_boot_usable_size(const void *p);
/* A boot block was freed (or moved by realloc); how many are still alive. */
MP_HIDDEN void mp_boot_release(const void *p);
MP_HIDDEN size_t mp_boot_live(void);
/* Point the hot entry points straight at the next allocator where the mode allows. */
MP_HIDDEN void mp_entry_choose(void);

/* Zeroed memory for the runtime's own tables; never from malloc, never freed. */
MP_HIDDEN void *mp_internal_alloc(size_t size);
MP_HIDDEN void mp_internal_fork_prepare(void);
MP_HIDDEN void mp_internal_fork_release(void);

/* Small helpers that never allocate and never touch stdio. */
MP_HIDDEN void mp_write_all(int fd, const char *s, size_t n);
MP_HIDDEN size_t mp_fmt_u64(char *buf, uint64_t v);
MP_HIDDEN int mp_open_for_append(const char *path); /* O_CREAT, O_APPEND, O_CLOEXEC */
MP_HIDDEN size_t mp_page_size(void);

#endif
