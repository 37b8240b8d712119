/* The allocation symbols the runtime exports: the malloc family, C++ operator new, and
 * memplace's own API. With entry/process.c (exit, _exit, quick_exit), entry/exec.c (the
 * exec family, posix_spawn) and entry/fork.c (fork, _Fork) this is the whole public
 * surface (runtime/exports.map).
 *
 * malloc, free, calloc and realloc are one indirect jump through `mp_hot`, chosen once at
 * start-up (mp_entry_choose): in transparent mode straight to the next allocator (free
 * and realloc keep a boot-area check only if boot blocks are still alive), in placement
 * mode straight to placement, otherwise (and until start-up is done) to the general
 * versions below, which dispatch on the mode. The exported function hands the target the
 * program's return address (the call site) and jumps rather than calls, so placement's
 * own function is the target: no hop between. The other entry points test the mode. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include "internal.h"

#define CALLER ((uintptr_t)__builtin_return_address(0))

/* The mode lives here, where it is dispatched on; init.c sets it once at start-up. */
MP_HIDDEN int mp_mode;

/* malloc, calloc and realloc hand the target the program's return address, stack pointer
 * (as it will be after the call returns) and frame pointer, in argument registers their
 * C signatures leave unused: unwinding for a multi-frame rule then starts at the
 * program's frame instead of walking the runtime's own frames first. The next allocator,
 * reached by the same jump in transparent mode, ignores them. */
static void *general_malloc(size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp);
static void general_free(void *p);
static void *general_calloc(size_t n, size_t size, uintptr_t ra, uintptr_t sp, uintptr_t fp);
static void *general_realloc(void *p, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp);

/* Called only from the exported functions below (assembly on x86_64), whatever the
 * pointers' C types: the next allocator's functions take fewer arguments. */
MP_HIDDEN __attribute__((used)) struct {
    void *malloc, *free, *calloc, *realloc;
} mp_hot __asm__("mp_hot") = {general_malloc, general_free, general_calloc, general_realloc};

#if defined(__x86_64__)
#ifdef __CET__
#define ENDBR "endbr64\n\t"
#else
#define ENDBR ""
#endif
/* name: ra = the return address, sp = rsp + 8 (it popped), fp = rbp, then jump through
 * the table */
/* (.cfi_startproc gives the entry's unwind rule, CFA = rsp + 8, to debuggers and profilers
 * that stop inside it; pushsection leaves the compiler's idea of the section intact) */
#define TRAMPOLINE(name, slot, ra_reg, sp_reg, fp_reg)                                            \
    __asm__(".pushsection .text\n\t.globl " #name "\n\t.type " #name ", @function\n"         \
            "\t.p2align 4\n" #name ":\n\t.cfi_startproc\n\t" ENDBR "mov (%rsp), %" #ra_reg    \
            "\n\tlea 8(%rsp), %" #sp_reg "\n\tmov %rbp, %" #fp_reg "\n\tjmp *mp_hot+" #slot  \
            "(%rip)\n\t.cfi_endproc\n\t.size " #name ", .-" #name "\n\t.popsection\n")
/* name: the same, then jump to target, whose C signature takes sp and fp after the
 * function's own arguments (CALLER stays the program's: a jump, not a call) */
#define ARG_TRAMPOLINE(name, target, sp_reg, fp_reg)                                            \
    __asm__(".pushsection .text\n\t.globl " #name "\n\t.type " #name ", @function\n"         \
            "\t.p2align 4\n" #name ":\n\t.cfi_startproc\n\t" ENDBR "lea 8(%rsp), %" #sp_reg   \
            "\n\tmov %rbp, %" #fp_reg "\n\tjmp " #target "\n\t.cfi_endproc\n"                 \
            "\t.size " #name ", .-" #name "\n\t.popsection\n")
TRAMPOLINE(malloc, 0, rsi, rdx, rcx);
TRAMPOLINE(calloc, 16, rdx, rcx, r8);
TRAMPOLINE(realloc, 24, rdx, rcx, r8);
#else /* no unwinding from the program's frame: sp 0 */
MP_EXPORT void *malloc(size_t n)
{
    return ((void *(*)(size_t, uintptr_t, uintptr_t, uintptr_t))mp_hot.malloc)(n, CALLER, 0, 0);
}
MP_EXPORT void *calloc(size_t n, size_t size)
{
    return ((void *(*)(size_t, size_t, uintptr_t, uintptr_t, uintptr_t))mp_hot.calloc)(n, size, CALLER, 0, 0);
}
MP_EXPORT void *realloc(void *p, size_t n)
{
    return ((void *(*)(void *, size_t, uintptr_t, uintptr_t, uintptr_t))mp_hot.realloc)(p, n, CALLER, 0, 0);
}
#endif
MP_EXPORT void free(void *p) { ((void (*)(void *))mp_hot.free)(p); }

/* Once the mode is known: in transparent mode, jump straight to the next allocator; in
 * placement mode, straight to placement. */
void mp_entry_choose(void)
{
    if (mp_resolve_next() != 0)
        return;
    if (mp_mode == MP_PLACING) {
        __atomic_store_n(&mp_hot.malloc, (void *)mp_place_malloc, __ATOMIC_RELEASE);
        __atomic_store_n(&mp_hot.calloc, (void *)mp_place_calloc, __ATOMIC_RELEASE);
        __atomic_store_n(&mp_hot.free, (void *)mp_device_heap_free, __ATOMIC_RELEASE);
        return;
    }
    if (mp_mode != MP_TRANSPARENT)
        return;
    __atomic_store_n(&mp_hot.malloc, (void *)mp_next.malloc, __ATOMIC_RELEASE);
    __atomic_store_n(&mp_hot.calloc, (void *)mp_next.calloc, __ATOMIC_RELEASE);
    if (mp_boot_live() == 0) { /* no boot block can ever reach free or realloc */
        __atomic_store_n(&mp_hot.free, (void *)mp_next.free, __ATOMIC_RELEASE);
        __atomic_store_n(&mp_hot.realloc, (void *)mp_next.realloc, __ATOMIC_RELEASE);
    }
}

#define SPECIAL mp_unlikely(mp_mode)    /* placing or profiling */
#define PLACING (mp_mode == MP_PLACING)

static void *general_malloc(size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    if (SPECIAL)
        return PLACING ? mp_place_malloc(n, ra, sp, fp) : mp_profile_malloc(n, ra);
    return mp_next.malloc(n);
}

MP_COLD static void free_special(void *p)
{
    if (mp_device_heap_owns(p))
        mp_device_heap_free(p);
    else if (!mp_boot_owns(p)) {
        if (mp_mode == MP_PROFILING)
            mp_profile_forget(p);
        mp_next.free(p);
    }
}

static void general_free(void *p)
{
    if (SPECIAL) {
        free_special(p);
        return;
    }
    if (mp_unlikely(mp_boot_owns(p))) {
        mp_boot_release(p); /* boot blocks are never reused */
        return;
    }
    mp_next.free(p);
}

static void *general_calloc(size_t n, size_t size, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    if (SPECIAL)
        return PLACING ? mp_place_calloc(n, size, ra, sp, fp) : mp_profile_calloc(n, size, ra);
    return mp_next.calloc(n, size);
}

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
    if (q || n == 0)
        mp_boot_release(p);
    return q;
}

static void *general_realloc(void *p, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    if (mp_unlikely(mp_boot_owns(p)))
        return realloc_boot_block(p, n);
    if (SPECIAL)
        return PLACING ? mp_place_realloc(p, n, ra, sp, fp) : mp_profile_realloc(p, n, ra);
    return mp_next.realloc(p, n);
}

MP_EXPORT void *reallocarray(void *p, size_t n, size_t size)
{
    size_t total;
    if (mp_unlikely(mp_boot_owns(p) || mp_mode)) {
        if (__builtin_mul_overflow(n, size, &total)) {
            errno = ENOMEM;
            return NULL;
        }
        if (mp_boot_owns(p))
            return realloc_boot_block(p, total);
        return PLACING ? mp_place_realloc(p, total, CALLER, 0, 0) : mp_profile_realloc(p, total, CALLER);
    }
    return mp_next.reallocarray(p, n, size);
}

static int power_of_two(size_t a) { return a != 0 && (a & (a - 1)) == 0; }

static void *aligned(size_t align, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    return PLACING ? mp_place_aligned(align, n, ra, sp, fp) : mp_profile_aligned(align, n, ra);
}

static inline int do_posix_memalign(void **out, size_t align, size_t n, uintptr_t ra, uintptr_t sp,
                                    uintptr_t fp)
{
    if (SPECIAL) {
        if (!power_of_two(align) || align % sizeof(void *))
            return EINVAL; /* *out untouched */
        int saved = errno;
        void *p = aligned(align, n, ra, sp, fp);
        if (!p)
            return ENOMEM;
        errno = saved;
        *out = p;
        return 0;
    }
    return mp_next.posix_memalign(out, align, n);
}

/* memalign and aligned_alloc as glibc does them: a non-power-of-two alignment is rounded
 * up, one too large for that is EINVAL. */
static void *rounded_aligned(size_t align, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    if (align > (SIZE_MAX >> 1) + 1) {
        errno = EINVAL;
        return NULL;
    }
    size_t a = 16;
    while (a < align)
        a <<= 1;
    return aligned(a, n, ra, sp, fp);
}

static inline void *do_aligned_alloc(size_t align, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    if (SPECIAL)
        return rounded_aligned(align, n, ra, sp, fp);
    return mp_next.aligned_alloc(align, n);
}

static inline void *do_memalign(size_t align, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    if (SPECIAL)
        return rounded_aligned(align, n, ra, sp, fp);
    return mp_next.memalign(align, n);
}

#if defined(__x86_64__)
/* As malloc's, the common aligned entry points hand the program's stack and frame
 * pointers on: aligned allocations of multi-frame sites are then found from the
 * program's frame, and their walks remembered, as malloc's are. */
MP_HIDDEN __attribute__((used)) int mp_posix_memalign(void **out, size_t align, size_t n,
                                                      uintptr_t sp, uintptr_t fp)
{
    return do_posix_memalign(out, align, n, CALLER, sp, fp);
}
MP_HIDDEN __attribute__((used)) void *mp_aligned_alloc(size_t align, size_t n, uintptr_t sp, uintptr_t fp)
{
    return do_aligned_alloc(align, n, CALLER, sp, fp);
}
MP_HIDDEN __attribute__((used)) void *mp_memalign(size_t align, size_t n, uintptr_t sp, uintptr_t fp)
{
    return do_memalign(align, n, CALLER, sp, fp);
}
ARG_TRAMPOLINE(posix_memalign, mp_posix_memalign, rcx, r8);
ARG_TRAMPOLINE(aligned_alloc, mp_aligned_alloc, rdx, rcx);
ARG_TRAMPOLINE(memalign, mp_memalign, rdx, rcx);
#else /* no unwinding from the program's frame: sp 0 */
MP_EXPORT int posix_memalign(void **out, size_t align, size_t n)
{
    return do_posix_memalign(out, align, n, CALLER, 0, 0);
}
MP_EXPORT void *aligned_alloc(size_t align, size_t n) { return do_aligned_alloc(align, n, CALLER, 0, 0); }
MP_EXPORT void *memalign(size_t align, size_t n) { return do_memalign(align, n, CALLER, 0, 0); }
#endif

MP_EXPORT void *valloc(size_t n)
{
    if (SPECIAL)
        return aligned(mp_page_size(), n, CALLER, 0, 0);
    return mp_next.valloc(n);
}

MP_EXPORT void *pvalloc(size_t n)
{
    if (SPECIAL) {
        size_t page = mp_page_size(), rounded;
        if (__builtin_add_overflow(n, page - 1, &rounded)) {
            errno = ENOMEM;
            return NULL;
        }
        rounded &= ~(page - 1);
        return aligned(page, rounded ? rounded : page, CALLER, 0, 0);
    }
    return mp_next.pvalloc(n);
}

MP_EXPORT size_t malloc_usable_size(void *p)
{
    if (mp_unlikely(mp_device_heap_owns(p)))
        return mp_device_heap_usable_size(p);
    if (mp_unlikely(mp_boot_owns(p)))
        return mp_boot_usable_size(p);
    return mp_next.usable_size(p);
}

MP_EXPORT void free_sized(void *p, size_t n)
{
    if (mp_unlikely(mp_device_heap_owns(p) || mp_boot_owns(p) || mp_mode)) {
        free(p);
        return;
    }
    mp_next.free_sized(p, n);
}

MP_EXPORT void free_aligned_sized(void *p, size_t align, size_t n)
{
    if (mp_unlikely(mp_device_heap_owns(p) || mp_boot_owns(p) || mp_mode)) {
        free(p);
        return;
    }
    mp_next.free_aligned_sized(p, align, n);
}

/* ---- C++ operator new (plain and array, throwing and nothrow) ----
 * Interposed so that the return address is the program's own call site: without this,
 * malloc is called from libstdc++ and every C++ allocation pays for a stack scan. What
 * placement cannot serve, and everything in transparent mode, goes to the next
 * definition (the C++ runtime's), which calls malloc itself and runs the new-handler or
 * throws std::bad_alloc as the language requires. A program that replaces operator new
 * keeps its own: the executable comes before a preloaded library in symbol lookup. */

enum { NEW, NEW_ARRAY, NEW_NOTHROW, NEW_ARRAY_NOTHROW };
typedef void *(*new_fn)(size_t, const void *);
static new_fn next_new[4];

MP_COLD static new_fn resolve_new(int which)
{
    static const char *const names[] = {"_Znwm", "_Znam", "_ZnwmRKSt9nothrow_t",
                                        "_ZnamRKSt9nothrow_t"};
    new_fn f = (new_fn)dlsym(RTLD_NEXT, names[which]); /* found: its caller is C++ code */
    __atomic_store_n(&next_new[which], f, __ATOMIC_RELEASE);
    return f;
}

static inline void *cxx_new(int which, size_t n, const void *nothrow, uintptr_t ra, uintptr_t sp,
                            uintptr_t fp)
{
    if (SPECIAL) {
        void *p = PLACING ? mp_place_malloc(n, ra, sp, fp) : mp_profile_malloc(n, ra);
        if (mp_likely(p != NULL))
            return p;
    }
    new_fn f = __atomic_load_n(&next_new[which], __ATOMIC_ACQUIRE);
    if (mp_unlikely(!f) && !(f = resolve_new(which))) {
        void *p = mp_next.malloc(n ? n : 1); /* no C++ runtime after us: nothing to throw */
        if (!p && which < NEW_NOTHROW)
            abort();
        return p;
    }
    return f(n, nothrow);
}

#if defined(__x86_64__)
/* As malloc's, the entry points hand the program's stack and frame pointers on (in the
 * third and fourth argument registers: the nothrow forms use the second), so a
 * multi-frame site is found from the program's frame and its walk remembered. */
#define NEW_ENTRY(fn, which, nothrow)                                                      \
    MP_HIDDEN __attribute__((used)) void *fn(size_t n, const void *nt, uintptr_t sp,        \
                                             uintptr_t fp)                                 \
    {                                                                                      \
        return cxx_new(which, n, nothrow, CALLER, sp, fp);                                 \
    }
NEW_ENTRY(mp_new, NEW, NULL)
NEW_ENTRY(mp_new_array, NEW_ARRAY, NULL)
NEW_ENTRY(mp_new_nothrow, NEW_NOTHROW, nt)
NEW_ENTRY(mp_new_array_nothrow, NEW_ARRAY_NOTHROW, nt)
ARG_TRAMPOLINE(_Znwm, mp_new, rdx, rcx);
ARG_TRAMPOLINE(_Znam, mp_new_array, rdx, rcx);
ARG_TRAMPOLINE(_ZnwmRKSt9nothrow_t, mp_new_nothrow, rdx, rcx);
ARG_TRAMPOLINE(_ZnamRKSt9nothrow_t, mp_new_array_nothrow, rdx, rcx);
#else /* no unwinding from the program's frame: sp 0 */
MP_EXPORT void *_Znwm(size_t n) { return cxx_new(NEW, n, NULL, CALLER, 0, 0); }
MP_EXPORT void *_Znam(size_t n) { return cxx_new(NEW_ARRAY, n, NULL, CALLER, 0, 0); }
MP_EXPORT void *_ZnwmRKSt9nothrow_t(size_t n, const void *nt) { return cxx_new(NEW_NOTHROW, n, nt, CALLER, 0, 0); }
MP_EXPORT void *_ZnamRKSt9nothrow_t(size_t n, const void *nt) { return cxx_new(NEW_ARRAY_NOTHROW, n, nt, CALLER, 0, 0); }
#endif

/* ---- memplace's own API ---- */

MP_EXPORT const char *memplace_version(void) { return MEMPLACE_VERSION; }

/* Which allocator memplace forwards to: the path of the object providing "malloc". */
MP_EXPORT const char *memplace_next_allocator(void)
{
    mp_resolve_next();
    return mp_next_provider();
}
