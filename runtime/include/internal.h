/* Every function and variable one runtime file offers another, grouped under the file
 * that defines it (as mimalloc's internal.h), in layer order from the top:
 *
 *   init.c            constructor, destructor, fork handlers
 *   entry/            exported entry points and mode dispatch
 *   modes/            placement and profiling
 *   sites/, heaps/    site matching; device heaps
 *   thread/           per-thread state
 *   os/               loaded modules, next allocator, boot heap, policy reader, OS memory
 *   util/             signal-safe output and I/O helpers, crc32
 *   include/types.h   shared layouts and macros
 *
 * A file calls only into its own layer or the ones below (tests/runtime/test_layers.py
 * checks it). Declared here bottom-up, so each static inline helper comes after what it
 * uses; those helpers live here because the allocation path uses them from several
 * files (with LTO the rest inlines across files too). */
#ifndef MEMPLACE_INTERNAL_H
#define MEMPLACE_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include "types.h"

/* ======== signal-safe output and I/O helpers ======== */

// "util/crc32.c"
/* zlib's CRC-32 (the one Python's zlib.crc32 computes). */
MP_HIDDEN uint32_t mp_crc32(const unsigned char *p, uint64_t n);

// "util/io.c" -- small helpers that never allocate and never touch stdio
MP_HIDDEN void mp_write_all(int fd, const char *s, size_t n);
MP_HIDDEN size_t mp_fmt_u64(char *buf, uint64_t v);
MP_HIDDEN int mp_open_for_append(const char *path); /* O_CREAT, O_APPEND, O_CLOEXEC */
/* Create "<dir>/<stem>.<pid>.txt", or "<stem>.<pid>.<n>.txt" for the first n that does not
 * exist yet (one file per process image: an exec keeps the pid); the path goes to `path`.
 * A descriptor open for appending, or -1. */
MP_HIDDEN int mp_create_numbered(char *path, size_t cap, const char *dir, const char *stem);
MP_HIDDEN void mp_page_size_init(void);             /* once, at start-up */
MP_HIDDEN size_t mp_page_size(void);

// "util/x86_decode.c" -- the memory operand of an x86_64 instruction (signal-safe)
/* Decode the instruction at c (avail readable bytes); returns its length, 0 if not
 * decoded (invalid, truncated, or a map we do not know). */
MP_HIDDEN int mp_x86_decode(const unsigned char *c, int avail, struct mp_x86_access *out);

// "util/aarch64_decode.c" -- one aarch64 instruction's memory operand and effect on the
// general registers (signal-safe)
/* Decode `insn`; 1 if known, 0 if not (unallocated, or a class not followed). */
MP_HIDDEN int mp_a64_decode(uint32_t insn, struct mp_a64_insn *out);
/* The data address of decoded memory instruction `d` from `r`; 0 if a register it needs
 * is not known (or the base is the pc: a literal). */
MP_HIDDEN int mp_a64_address(const struct mp_a64_insn *d, const struct mp_a64_regs *r, uint64_t *addr);
/* Run `insn` (decoded as `d`) on `r`: integer results computed, everything else it
 * writes marked unknown; pc advanced. */
MP_HIDDEN void mp_a64_step(uint32_t insn, const struct mp_a64_insn *d, struct mp_a64_regs *r);

// "util/writer.c" -- a buffered text writer for the exit files (stats, profiles): no
// malloc, no stdio, no lock, so it also runs in a fatal signal's handler
MP_HIDDEN void mp_put(struct mp_writer *w, const char *s);
MP_HIDDEN void mp_put_u64(struct mp_writer *w, uint64_t v); /* " <decimal>" */
MP_HIDDEN void mp_put_hex(struct mp_writer *w, uint64_t v); /* " 0x<hex>" */
MP_HIDDEN void mp_flush(struct mp_writer *w);

/* ======== modules, next allocator, policy reader, OS memory ======== */

// "os/sampler.c" -- CPU-time sampling of the running threads' data accesses
/* Sample `rate` times per CPU-second of the process; each sample's data access goes to
 * `hook`. 0 when started, else -1 and mp_sampler_state says why. */
MP_HIDDEN int mp_sampler_start(int rate, mp_sampler_hook hook);
/* Do not start: the profile says `sampling failed` and why (the caller's tables failed). */
MP_HIDDEN void mp_sampler_refuse(const char *why);
/* Stop before the profile is written (the handler stays installed, ignoring). */
MP_HIDDEN void mp_sampler_finish(void);
/* After a failed exec that had written the profile: sample again. */
MP_HIDDEN void mp_sampler_resume(void);
/* The program is installing a handler for `sig`: if it is ours, stop sampling for good.
 * Returns 1 when `sig` was the sampling signal (its previous disposition was ours). */
MP_HIDDEN int mp_sampler_yield(int sig);
/* The sampling signal while our handler is installed, else 0. */
MP_HIDDEN int mp_sampler_signal(void);
/* MP_SAMPLER_*; why it is not on; the signal; the rate asked for. */
MP_HIDDEN int mp_sampler_state(const char **why, int *sig, int *rate);
MP_HIDDEN const struct mp_sampler_counts *mp_sampler_counts(void);
/* libc's sigaction itself, for the runtime's own handlers (the exported one in
 * entry/signals.c is the program's). */
struct sigaction;
MP_HIDDEN int mp_sigaction(int sig, const struct sigaction *act, struct sigaction *old);
// "os/exec_target.c" -- can a program about to be executed host the runtime? System calls
// and the caller's buffers only (it runs in vfork children)
/* The verdict for the file open on `fd` / at `path` (openat's dirfd; AT_SYMLINK_NOFOLLOW
 * honoured): 0 when it can host the runtime or cannot be read (then the kernel decides, as
 * without us), else an MP_ASIDE_* reason, also in v->reason. */
MP_HIDDEN int mp_exec_verdict_fd(int fd, struct mp_exec_verdict *v);
MP_HIDDEN int mp_exec_verdict_path(int dirfd, const char *path, int flags, struct mp_exec_verdict *v);
/* The file execvp would run for `file` (into buf), or `file` itself. */
MP_HIDDEN const char *mp_exec_search(const char *file, char *buf, size_t cap);

// "os/internal_alloc.c" -- zeroed memory for the runtime's own tables; never from
// malloc, never freed
MP_HIDDEN void *mp_internal_alloc(size_t size);
MP_HIDDEN void mp_internal_fork_prepare(void);
MP_HIDDEN void mp_internal_fork_release(void);

// "os/shared_page.c" -- counters shared by the processes of a job on this node
/* The file at `path` mapped shared, created (zeroed) if missing and grown to `size`;
 * NULL if it cannot be. */
MP_HIDDEN void *mp_shared_page(const char *path, size_t size);

// "os/os_memory.c" -- every contact with the OS about device memory
/* Reserve `size` bytes of address space aligned to `align` (inaccessible until backed). */
MP_HIDDEN void *mp_os_reserve(size_t size, size_t align);
/* Bytes the process may still map under RLIMIT_AS; UINT64_MAX when unlimited. */
MP_HIDDEN uint64_t mp_os_address_headroom(void);
/* Back [at, at+size) with anonymous memory; huge: 0 none, 1 MAP_HUGETLB, 2 madvise THP,
 * -1 release the memory and leave the range reserved again.
 * Returns 0 or an errno value. */
MP_HIDDEN int mp_os_back_anonymous(void *at, size_t size, int huge, int page_shift);
/* Back [at, at+size) with a new file in `dir`, allocated on disk and already unlinked. */
MP_HIDDEN int mp_os_back_file(void *at, size_t size, const char *dir);
/* Replace the MAP_SHARED file mapping [at, at+size) with a new unlinked file in `dir`
 * holding a copy of its first `used` bytes (only their data extents when the source file
 * can be opened), allocated on disk and mapped at the same place: a forked child's own
 * copy. No address space beyond the range. 0 or an errno value. */
MP_HIDDEN int mp_os_private_file_copy(void *at, size_t size, size_t used, const char *dir);
/* A page shared with children forked after this call (a fork's handshake); NULL if none. */
MP_HIDDEN void *mp_os_shared_page(void);
MP_HIDDEN void mp_os_unmap(void *at, size_t size);
/* Wait (at most `nanoseconds`, < 1 s) while *word == value; wake one waiter. Across
 * processes: the word may be in a shared page. */
MP_HIDDEN void mp_os_wait_word(int *word, int value, long nanoseconds);
MP_HIDDEN void mp_os_wake_word(int *word);
/* mbind [at, at+size) before first touch; mode as in the compiled policy. */
MP_HIDDEN int mp_os_bind(void *at, size_t size, uint32_t mode, const uint64_t *nodemask, int words);
/* The process's "no transparent huge pages" flag (PR_GET_THP_DISABLE: 0, 1, or -1 when
 * the kernel has none); set it (1) or clear it (0). */
MP_HIDDEN int mp_os_thp_disabled(void);
MP_HIDDEN void mp_os_thp_disable(int off);
/* Keep the pages of [at, at+size) resident once touched (mlock2 MLOCK_ONFAULT): 0 or an
 * errno value (EPERM/ENOMEM: RLIMIT_MEMLOCK). */
MP_HIDDEN int mp_os_lock(void *at, size_t size);
/* Unlock [at, at+size) and give its pages back (they read as zeros when touched again):
 * 0 or an errno value. */
MP_HIDDEN int mp_os_unlock_release(void *at, size_t size);
/* Punch [at, at+size) of a shared file mapping out of its file (MADV_REMOVE): 0 or an
 * errno value. */
MP_HIDDEN int mp_os_punch(void *at, size_t size);
/* Unmap the pages of [at, at+size), keeping the range (MADV_DONTNEED). */
MP_HIDDEN void mp_os_drop_mapping(void *at, size_t size);
/* Bytes an unprivileged writer may still use on the filesystem of `dir` (0: unknown). */
MP_HIDDEN uint64_t mp_os_free_bytes(const char *dir);
/* Back [at, at+size) with device `s`'s kind of memory, bind it, lock it (MP_FLAG_LOCK);
 * on failure the range is left reserved-only. 0 or an errno value. */
MP_HIDDEN int mp_os_back_device(const struct mp_device_spec *s, void *at, size_t size);

// "os/policy.c" -- reads and validates the compiled policy (records: policy_format.h)
/* Read and validate the compiled policy at `path`. On any problem, returns NULL and sets
 * *why to a static one-line reason; the runtime then stays transparent. */
MP_HIDDEN struct mp_policy *mp_policy_load(const char *path, const char **why);
/* The same validation over a buffer (for the fuzz harness). */
MP_HIDDEN struct mp_policy *mp_policy_parse(const unsigned char *data, uint64_t size, const char **why);

// "os/boot_heap.c" -- a static, lock-free bump area for allocations made while the next
// allocator is being resolved; blocks are never reused
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

// "os/next.c" -- the allocator we forward to, resolved once
MP_HIDDEN extern struct mp_allocator mp_next;
/* Resolve mp_next (idempotent, thread-safe). Returns 0 when resolved, -1 when this thread
 * is inside the resolution itself (the caller must then use the boot heap). */
MP_HIDDEN int mp_resolve_next(void);
/* Path of the object the next allocator came from ("" before resolution). */
MP_HIDDEN const char *mp_next_provider(void);
/* The next definition of `name` (RTLD_NEXT) of any libc function the runtime wraps,
 * looked up once into *cache; NULL when there is none. */
MP_HIDDEN void *mp_next_symbol(void **cache, const char *name);

// "os/unwind.c" -- unwind tables (mapped from the files Python wrote) and one-frame steps
/* Where the tables are ($MEMPLACE_UNWIND, or memplace's cache); "" leaves every module
 * without one. */
MP_HIDDEN void mp_unwind_init(const char *dir);
/* Map the table of the module with this build-id (hex); NULL when there is none or it is
 * not valid. Makes system calls: for module snapshots, never per allocation. */
MP_HIDDEN const struct mp_unwind_table *mp_unwind_load(const char *build_id);
/* The rule for module-relative address `rel`; NULL outside the table. */
MP_HIDDEN const struct mp_unwind_rule *mp_unwind_find(const struct mp_unwind_table *t,
                                                      uintptr_t rel);
/* The start of the row holding `rel`: an instruction boundary at or below it (rows start
 * where functions start and where their frame changes); UINTPTR_MAX outside the table. */
MP_HIDDEN uintptr_t mp_unwind_row_start(const struct mp_unwind_table *t, uintptr_t rel);
enum { MP_STEP_OK = 0, MP_STEP_END = 1, MP_STEP_UNKNOWN = 2 };
/* Replace `r` by the caller's registers, reading only inside [stack_lo, stack_hi); the
 * words read are added to `trace` (if not NULL). */
MP_HIDDEN int mp_unwind_step(const struct mp_unwind_rule *rule, struct mp_unwind_regs *r,
                             uintptr_t stack_lo, uintptr_t stack_hi, struct mp_unwind_trace *trace);
/* Do the traced words still hold the values the walk read? */
static inline int mp_unwind_trace_holds(const struct mp_unwind_trace *t)
{
    if (t->n < 0)
        return 0;
    for (int i = 0; i < t->n; i++)
        if (*t->addr[i] != t->value[i])
            return 0;
    return 1;
}
/* The registers at this point of the calling function: where a walk starts. */
#if defined(__x86_64__)
#define MP_UNWIND_HERE(r)                                                                  \
    do {                                                                                   \
        __asm__ volatile("lea 0(%%rip), %0\n\tmov %%rsp, %1\n\tmov %%rbp, %2"              \
                         : "=r"((r).pc), "=r"((r).sp), "=r"((r).fp));                      \
        (r).exact = 1;                                                                     \
    } while (0)
#define MP_UNWIND_SUPPORTED 1
#elif defined(__aarch64__)
#define MP_UNWIND_HERE(r)                                                                  \
    do {                                                                                   \
        __asm__ volatile("adr %0, .\n\tmov %1, sp\n\tmov %2, x29"                            \
                         : "=r"((r).pc), "=r"((r).sp), "=r"((r).fp));                      \
        (r).exact = 1;                                                                     \
    } while (0)
#define MP_UNWIND_SUPPORTED 1
#else /* no walk: sites are the raw return address */
#define MP_UNWIND_HERE(r) ((r).pc = (r).sp = (r).fp = 0, (void)((r).exact = 1))
#define MP_UNWIND_SUPPORTED 0
#endif

// "os/modules.c" -- the loaded modules and their code ranges; call-site capture
/* The current snapshot (taken on first use). */
MP_HIDDEN struct mp_modules *mp_modules(void);
/* The current snapshot, retaken first if modules were loaded or unloaded since. */
MP_HIDDEN struct mp_modules *mp_modules_fresh(void);
/* How many dlclose calls have succeeded (entry/dlclose.c). A module unloaded leaves its
 * addresses to the next one mapped there, so an address names code only within an era:
 * the loader's count of unloads (a snapshot's `subs`). A dlclose may have unloaded
 * nothing (a reference left); it only says the snapshot must be checked. */
MP_HIDDEN extern uint32_t mp_modules_unloads;
MP_HIDDEN void mp_modules_unloaded(void);
/* The current snapshot, checked against the loader once after each dlclose. */
MP_HIDDEN struct mp_modules *mp_modules_checked(void);
MP_HIDDEN const struct mp_module *mp_module_of(const struct mp_modules *t, uintptr_t address);
/* Why a capture ended before `depth` frames: the thread's first frame, or a frame that
 * could not be unwound (no table for its module, no rule for its address). */
enum { MP_CAPTURE_FULL = 0, MP_CAPTURE_OUTERMOST = 1, MP_CAPTURE_CUT = 2 };
/* Up to `depth` return addresses of the allocation, innermost first, by unwinding real
 * frames from `r` (the registers where unwinding starts: the program's frame, or the
 * capture point inside the runtime; not changed) and leaving
 * out the frames of allocator and runtime libraries. Reads only the thread's stack below
 * `stack_top` (0: unknown, no unwinding); `cache` is the thread's (or NULL). Returns how
 * many were found; `*end` (if not NULL) says why the walk stopped. */
MP_HIDDEN int mp_capture(const struct mp_modules *t, const struct mp_unwind_regs *r,
                         uintptr_t stack_top, struct mp_unwind_cache *cache, int depth,
                         uintptr_t *out, int *end);

/* ======== per-thread state ======== */

// "thread/thread.c" -- created on a thread's first placed or profiled allocation, returned
// to a free list by a pthread key destructor at thread exit
MP_HIDDEN extern MP_TLS struct mp_thread *mp_self;
MP_HIDDEN struct mp_thread *mp_thread_attach(void);
MP_HIDDEN void mp_threads_init(void);
/* What a mode does when a thread ends (before its block is recycled); set once at start. */
MP_HIDDEN void mp_threads_on_exit(void (*hook)(struct mp_thread *));
MP_HIDDEN void mp_threads_fork_prepare(void);
MP_HIDDEN void mp_threads_fork_release(void);
/* Every block ever made (live and recycled), for totals at exit. */
MP_HIDDEN struct mp_thread *mp_threads_all(void);

/* This thread's block, made on first use; NULL while it is being made (allocations the
 * set-up itself makes, e.g. in pthread_getattr_np, then go unplaced). */
static inline struct mp_thread *mp_thread(void)
{
    struct mp_thread *t = mp_self;
    if (mp_likely(t != NULL))
        return t;
    return mp_thread_attach();
}

/* Enter (1) or leave (0) placement on this thread: its site caches, block cache, live
 * bytes and mimalloc heaps are touched only inside. A malloc-family call that finds the
 * thread inside is a signal handler's that interrupted it there (modes/place.c: nested).
 * The fences keep the compiler from moving the thread's state across the flag. */
static inline void mp_set_busy(struct mp_thread *self, int busy)
{
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    self->busy = (uint8_t)busy; /* a byte: another thread may set `stale` beside it */
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
}

/* The top of the stack a walk from `sp` may read up to: the thread's own stack's, or 0
 * (no walk) when sp is on another stack. */
static inline uintptr_t mp_walk_top(const struct mp_thread *t, uintptr_t sp)
{
    return sp - t->stack_lo < t->stack_top - t->stack_lo ? t->stack_top : 0;
}

/* ======== site matching and device heaps ======== */

// "heaps/arena.c" -- the device table, the reserved range and its extents; each device's
// mimalloc arenas
MP_HIDDEN extern struct mp_device_heap *mp_device_heaps;
MP_HIDDEN extern int mp_ndevices;
MP_HIDDEN extern uintptr_t mp_region_base;
MP_HIDDEN extern uintptr_t mp_region_size; /* 0 in transparent mode: nothing is ours */
MP_HIDDEN extern unsigned mp_unit_shift;
MP_HIDDEN extern unsigned char mp_units[MP_MAX_UNITS]; /* per unit of the range: device | MP_UNIT_SPECIAL */
MP_HIDDEN extern struct mp_extent mp_extents[MP_MAX_EXTENTS];
MP_HIDDEN extern int mp_nextents;
/* Forks copying file devices not yet done (heaps/fork.c): a purge punches no hole then. */
MP_HIDDEN extern int mp_file_forks;
/* Reserve address space for the devices of `policy`, in proportion to their capacities
 * and within RLIMIT_AS, and fill the table. 0 on success. */
MP_HIDDEN int mp_arenas_init(const struct mp_policy *policy, const char **why);
/* A block from the device's arenas, made bigger when full; NULL when it cannot grow. */
MP_HIDDEN void *mp_arena_alloc(struct mp_device_heap *h, int dev, size_t size, size_t align,
                               int zero);
/* The device whose extent holds p, or -1 (pointers outside the reserved range). */
MP_HIDDEN int mp_extent_of(const void *p);
/* Address space device `dev` holds (its units and extents); *grown: extents it made. */
MP_HIDDEN uint64_t mp_arena_reserved(int dev, int *grown);

static inline int mp_device_heap_owns(const void *p)
{
    if ((uintptr_t)p - mp_region_base < mp_region_size)
        return 1;
    return mp_unlikely(__atomic_load_n(&mp_nextents, __ATOMIC_ACQUIRE) != 0) && mp_extent_of(p) >= 0;
}

/* For a block we own: its device, with MP_UNIT_SPECIAL when it is in the special part. */
static inline unsigned mp_unit_of(const void *p)
{
    uintptr_t off = (uintptr_t)p - mp_region_base;
    if (mp_likely(off < mp_region_size))
        return mp_units[off >> mp_unit_shift];
    return (unsigned)mp_extent_of(p);
}

static inline int mp_device_of(const void *p) { return (int)(mp_unit_of(p) & MP_UNIT_DEVICE); }

static inline uint64_t mp_offset_in_slot(const struct mp_device_heap *h, const void *p)
{
    return (uint64_t)((const unsigned char *)p - h->slot);
}

static inline unsigned char *mp_growth_area(const struct mp_device_heap *h, int i)
{
    return h->slot + h->special + (uint64_t)i * MP_GROWTH_AREA;
}

// "heaps/accounting.c" -- capacity, live bytes, peaks and stats
/* Point each device's capacity at its live bytes: the process's, or for a device of node
 * scope the counters shared at `shared` (MEMPLACE_SHARED; NULL or unusable: the process's,
 * said once on stderr). */
MP_HIDDEN void mp_accounting_init(const char *shared);
/* The image ends (leave: also before an exec) or is a new fork child, or goes on after a
 * failed exec (join): take its live bytes out of the node's counters, or add them. */
MP_HIDDEN void mp_accounting_leave(void);
MP_HIDDEN void mp_accounting_join(void);
MP_HIDDEN void mp_accounting_forked(void); /* in a fork child: join as a new image */
MP_HIDDEN void mp_publish_live(struct mp_device_heap *h, int64_t delta);
/* Publish a thread's pending live bytes of a device and give the thread a new credit there:
 * the device's room now, at most MP_LIVE_BATCH - 1 (none for a dead device), so the fast
 * path's capacity check stays a compare of two thread fields. */
MP_HIDDEN MP_COLD void mp_publish_pending(struct mp_device_heap *h, struct mp_device_counters *c);
/* Stats of device `dev`, summed over every thread (at exit). */
MP_HIDDEN void mp_device_heap_stats(int dev, struct mp_device_stats *out);
/* Count an allocation the next allocator served on behalf of device `dev`. */
MP_HIDDEN void mp_device_heap_count_next(struct mp_thread *self, int dev, size_t size);

/* A change of a device's live bytes: at once for big blocks (or without a thread block),
 * else in the thread's batch, so the allocation path takes no atomic. */
static inline void mp_add_live(struct mp_thread *self, int dev, int64_t delta)
{
    if (!self || delta >= (int64_t)MP_EXACT_BYTES || delta <= -(int64_t)MP_EXACT_BYTES) {
        if (delta)
            mp_publish_live(&mp_device_heaps[dev], delta);
        return;
    }
    struct mp_device_counters *c = &self->devices[dev];
    c->live_pending += delta;
    if (mp_unlikely(c->live_pending >= MP_LIVE_BATCH || c->live_pending <= -MP_LIVE_BATCH))
        mp_publish_pending(&mp_device_heaps[dev], c);
}

/* Do a thread's pending live bytes stay within one batch (else they are published)? */
static inline int mp_live_in_batch(int64_t pending)
{
    return (uint64_t)(pending + MP_LIVE_BATCH - 1) <= 2 * MP_LIVE_BATCH - 2;
}

/* mp_add_live for a thread's block smaller than MP_EXACT_BYTES. */
static inline void mp_add_live_small(struct mp_thread *self, int dev, int64_t delta)
{
    struct mp_device_counters *c = &self->devices[dev];
    c->live_pending += delta;
    if (mp_unlikely(!mp_live_in_batch(c->live_pending)))
        mp_publish_pending(&mp_device_heaps[dev], c);
}

/* An allocation of `size` bytes in a thread's counters of its device. */
static inline void mp_count_in(struct mp_device_counters *c, size_t size)
{
    c->allocations++;
    c->bytes += size;
}

/* An allocation of `size` bytes (`usable` of them live) served for device `dev`. */
static inline void mp_count(struct mp_thread *self, int dev, size_t size, int64_t usable)
{
    if (self) {
        mp_count_in(&self->devices[dev], size);
    } else {
        __atomic_fetch_add(&mp_device_heaps[dev].stats.allocations, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&mp_device_heaps[dev].stats.bytes, size, __ATOMIC_RELAXED);
    }
    mp_add_live(self, dev, usable);
}

/* Live bytes are signed: a thread that frees blocks another thread allocated may publish
 * its decrease before the other publishes the increase. */
static inline int mp_over_capacity(struct mp_device_heap *h, size_t size)
{
    int64_t live = (int64_t)__atomic_load_n(h->limit_live, __ATOMIC_RELAXED);
    return (live > 0 ? (uint64_t)live : 0) + size > h->capacity;
}

/* mp_over_capacity once the thread's own frees not yet published are: a thread publishes
 * in batches, and its unpublished frees must not make a device it emptied look full. */
MP_HIDDEN MP_COLD int mp_over_capacity_now(struct mp_thread *self, int dev, size_t size);

/* Has device `dev` no room for `size` more bytes? (Always room without a capacity.) */
static inline int mp_device_full(struct mp_thread *self, int dev, size_t size)
{
    struct mp_device_heap *h = &mp_device_heaps[dev];
    return h->capacity && mp_over_capacity(h, size) && mp_over_capacity_now(self, dev, size);
}

// "heaps/block_cache.c" -- a thread's freed small blocks, per device and size class
MP_HIDDEN void mp_block_cache_drain(struct mp_thread *self);

/* A thread's cache of freed small blocks, as glibc's tcache: a block one thread frees is
 * reused by that thread's next allocation of its size class, instead of going back to its
 * mimalloc page, which takes an atomic operation when another thread allocated it. */
/* The bin of blocks of `usable` bytes (a multiple of 8, 8..MP_TCACHE_SMALL) of device dev:
 * usable * 2 - 16 bytes into the device's row, not the index usable / 8 - 1, which is a
 * shift right and back left on every call. */
static inline struct mp_tcache_bin *mp_block_cache_bin(struct mp_thread *self, int dev,
                                                       size_t usable)
{
    _Static_assert(sizeof(struct mp_tcache_bin) == 16, "a bin's offset is usable * 2 - 16");
    return (struct mp_tcache_bin *)((char *)self->tcache[dev] + usable * 2 - 16);
}

static inline void *mp_block_cache_pop(struct mp_thread *self, int dev, size_t usable)
{
    struct mp_tcache_bin *b = mp_block_cache_bin(self, dev, usable);
    void *p = b->head;
    if (p) {
        b->head = *(void **)p;
        b->count--;
    }
    return p;
}

/* Does the slice table give this block's usable size (`block`: its entry * 8), one the
 * block cache keeps? 0 and MP_SLICE_ALIGNED's do not. */
static inline int mp_block_cache_size(size_t block)
{
    return block - 1 < (size_t)MP_TCACHE_SMALL;
}

static inline int mp_block_cache_full(struct mp_thread *self, int dev, size_t usable)
{
    return mp_block_cache_bin(self, dev, usable)->count >= MP_TCACHE_MAX;
}

static inline int mp_block_cache_push(struct mp_thread *self, int dev, void *p, size_t usable)
{
    struct mp_tcache_bin *b = mp_block_cache_bin(self, dev, usable);
    if (b->count >= MP_TCACHE_MAX)
        return 0;
    *(void **)p = b->head;
    b->head = p;
    b->count++;
    return 1;
}

// "heaps/direct_map.c" -- blocks aligned above what mimalloc's arenas can do
MP_HIDDEN void *mp_direct_map(struct mp_device_heap *h, size_t size, size_t align);
/* Length of the direct block at p (0: none), and forget it (forget=1). */
MP_HIDDEN uint64_t mp_direct_length(struct mp_device_heap *h, const void *p, int forget);

// "heaps/growth_area.c" -- areas where a block realloc grows keeps growing in place
/* A block that realloc grows to n bytes, given room to keep growing in place, on device
 * `dev` itself; NULL if the device cannot take it (mp_device_heap_alloc then decides). */
MP_HIDDEN void *mp_growth_area_alloc(struct mp_thread *self, int dev, size_t n);
/* The growth area whose block is p, or NULL. */
MP_HIDDEN struct mp_growth *mp_growth_of(struct mp_device_heap *h, const void *p);
/* Free a growth area's block; returns its size. */
MP_HIDDEN uint64_t mp_growth_release(struct mp_device_heap *h, struct mp_growth *g, void *p);

// "heaps/fork.c" -- pthread_atfork handlers (registered by init.c) and the handshake
// by which entry/fork.c learns whether the child's copy of file devices is private
/* Before asking the kernel for a fork: a page the child reports on; -1 if none could be
 * had while file devices exist (fork must then fail with ENOMEM). */
MP_HIDDEN int mp_fork_talk_open(void);
/* After it, in the parent (child = its pid, or -1 if the fork failed) and in the child
 * (child = 0): waits for the child's report; -1 when its copy could not be made private
 * (the child has then exited with status 127 and awaits reaping). `gone` says whether
 * the child has ended without reporting. */
MP_HIDDEN int mp_fork_talk_close(pid_t child, int (*gone)(pid_t));
MP_HIDDEN void mp_device_heaps_fork_prepare(void);
MP_HIDDEN void mp_device_heaps_fork_parent(void);
MP_HIDDEN void mp_device_heaps_fork_child(void);

// "heaps/device_heap.c" -- a device heap's allocation, free and resize; the fallback chain
/* Set up the devices of `policy` (no memory is touched yet). 0 on success. */
MP_HIDDEN int mp_device_heaps_init(const struct mp_policy *policy, const char **why);
/* Allocate on device `dev`, or along its fallback chain. Returns NULL when the chain
 * ends at the next allocator (*served = the next allocator's device, or -1); counts in
 * `self`. */
MP_HIDDEN void *mp_device_heap_alloc(struct mp_thread *self, int dev, size_t size, size_t align,
                                     int zero, int *served);
/* The fast path: `dev` itself, plain or zeroed blocks of common sizes; NULL means "ask
 * mp_device_heap_alloc" (nothing was counted). */
MP_HIDDEN void *mp_device_heap_alloc_fast(struct mp_thread *self, int dev, size_t size, int zero);
/* mi_good_size of the block cache's sizes, by 8-byte step */
MP_HIDDEN extern uint32_t mp_small_usable[MP_SMALL_SIZES];
/* mimalloc's small pages are one slice each (64 KiB; 32 KiB on 32-bit) and hold blocks of one size (mimalloc
 * 3.4: MI_ARENA_SLICE_SIZE, MI_SMALL_PAGE_SIZE). Each slice of the reserved range keeps
 * in its entry's low byte the usable size / 8 of the blocks allocated in it from
 * mimalloc, so free knows a small block's size without asking mimalloc's page map. A
 * block's own allocation wrote its slice's entry, and its page cannot be reused while it
 * lives, so the entry is its size. 0: ask mimalloc (bigger blocks); MP_SLICE_ALIGNED:
 * aligned blocks were made there, whose pointers may lie inside a block, so always ask.
 * The high byte: for blocks the block cache keeps (a size it has, a device below
 * MP_TCACHE_DEVICES), the device + 1, else 0; so free's common case reads one entry, not
 * the slice's and its unit's. */
#define MP_SLICE_SHIFT (13 + (sizeof(void *) == 8 ? 3 : 2)) /* MI_ARENA_SLICE_SHIFT */
#define MP_SLICE_ALIGNED 0xffu
#define MP_SLICE_CACHED 0x100u /* entries from here up: the block cache's (device + 1) << 8 */
MP_HIDDEN extern uint16_t *mp_slice_class;

/* Record the block p that mimalloc just gave for `size` bytes (align: 0 if plain). */
static inline void mp_slice_note(const void *p, size_t size, size_t align)
{
    uintptr_t off = (uintptr_t)p - mp_region_base;
    if (mp_unlikely(off >= mp_region_size))
        return;
    uint16_t *entry = &mp_slice_class[off >> MP_SLICE_SHIFT];
    unsigned v = align ? MP_SLICE_ALIGNED : size <= MP_TCACHE_SMALL ? mp_small_usable[(size + 7) / 8] / 8 : 0;
    unsigned was = *entry & 0xffu;
    if (was == v || was == MP_SLICE_ALIGNED)
        return;
    unsigned unit = mp_units[off >> mp_unit_shift]; /* a slice lies in one unit */
    unsigned cached = v - 1 < MP_TCACHE_SMALL / 8 && unit < MP_TCACHE_DEVICES ? unit + 1 : 0;
    *entry = (uint16_t)(v | cached << 8);
}

/* The fastest path, inline and without a call: a plain block of `size` bytes from the
 * thread's cache of freed blocks of device `dev` (< MP_TCACHE_DEVICES), counted; NULL: ask
 * mp_device_heap_alloc_fast (nothing was counted). The capacity is checked against the
 * thread's credit (mp_publish_pending), so nothing of the device is read here. */
static inline void *mp_device_heap_pop(struct mp_thread *self, int dev, size_t size)
{
    struct mp_device_counters *c = &self->devices[dev];
    if (mp_unlikely(size > MP_TCACHE_SMALL || c->live_pending + (int64_t)size > c->credit))
        return NULL;
    size_t usable = mp_small_usable[(size + 7) / 8];
    void *p = mp_block_cache_pop(self, dev, usable);
    if (mp_likely(p != NULL)) {
        mp_count_in(c, size);
        c->live_pending += (int64_t)usable; /* below the credit, itself below a batch */
    }
    return p;
}
/* free() in placement mode (entry/entry.c): a block of ours enters placement for the
 * time, or, in a signal handler that interrupted this thread inside placement, is
 * deferred; anything else goes to the boot area or the next allocator. */
MP_HIDDEN void mp_device_heap_free(void *p);
/* Free a block of ours, the thread inside placement (or without a thread block). */
MP_HIDDEN void mp_device_heap_free_inside(struct mp_thread *self, void *p);
/* A block of ours a signal handler frees while its thread is inside placement: kept on
 * the thread's list (a push a nested handler may interrupt), freed by the thread. */
MP_HIDDEN void mp_device_heap_defer_free(struct mp_thread *self, void *p);
/* Free the thread's deferred blocks; it is inside placement. */
MP_HIDDEN void mp_device_heap_free_deferred_now(struct mp_thread *self);
static inline void mp_device_heap_free_deferred(struct mp_thread *self)
{
    if (mp_unlikely(__atomic_load_n(&self->deferred, __ATOMIC_RELAXED) != NULL))
        mp_device_heap_free_deferred_now(self);
}
/* Count an allocation the next allocator served for a signal handler (atomically: the
 * thread's counters may be half updated under it). */
MP_HIDDEN void mp_device_heap_count_nested(size_t size);
MP_HIDDEN size_t mp_device_heap_usable_size(const void *p);
/* Resize block p in place to n bytes if it has the room; 1 if done. */
MP_HIDDEN int mp_device_heap_resize(struct mp_thread *self, void *p, size_t n);
/* A thread ends (the hook placement registers with thread.c): its cached blocks go back
 * to mimalloc, its pending live bytes become the devices' (so peaks see them). */
MP_HIDDEN void mp_device_heaps_thread_exit(struct mp_thread *self);

// "sites/sites.c" -- which rule an allocation matches, from its return addresses
/* Prepare rule matching for `policy` (module table, absolute ranges, thread caches). */
MP_HIDDEN int mp_sites_init(const struct mp_policy *policy, const char **why);
/* The rule index for an allocation of `size` whose malloc-family call returns to `ra`,
 * or -1 when no rule matches; counts the hit. Deeper frames come from unwinding, from the
 * program's frame (sp, fp) when known, else from here. */
MP_HIDDEN int mp_sites_match(struct mp_thread *self, uintptr_t ra, uintptr_t sp, uintptr_t fp,
                             size_t size);
/* The same without the thread's caches (neither read nor filled): for an allocation made
 * while the thread holds one of their entries (modes/place.c, `busy`), or no thread. */
MP_HIDDEN int mp_sites_match_uncached(struct mp_thread *self, uintptr_t ra, uintptr_t sp,
                                      uintptr_t fp, size_t size);
/* The generation of the rules' absolute addresses; cache entries of another are stale. */
MP_HIDDEN extern uint32_t mp_sites_generation;
/* Per-rule hit counters: call mp_sites_flush() first to include every thread's. */
MP_HIDDEN const struct mp_rule_stats *mp_sites_rule_stats(uint32_t rule);
MP_HIDDEN void mp_sites_flush(void);
/* Empty a thread's walks (it ends, and its block will be reused): their hits go into the
 * rules' totals first. */
MP_HIDDEN void mp_sites_forget_walks(struct mp_thread *t);
/* Modules may have come or gone (a dlclose): a new view if they did, and then every
 * thread's site and walk caches stale (types.h: stale), at once rather than at the next
 * allocation that fills an entry. */
MP_HIDDEN void mp_sites_modules_changed(void);
/* The thread's stale flag is set (types.h): empty its walks and site entries (their hits
 * into the rules' totals) and clear it. The thread is inside placement. */
MP_HIDDEN void mp_sites_forget_stale(struct mp_thread *self);

/* Frames the policy's rules look at (the most any rule has); 1: the return address
 * alone decides. */
MP_HIDDEN extern int mp_sites_depth;
/* The fast path's lookup when the inline ones (below) missed: the site's entry into *hit
 * when it is fixed, else 0; filled or unwound (from the program's frame: sp, fp as for
 * mp_sites_match) as needed, and the walk remembered. */
MP_HIDDEN int mp_sites_fixed_slow(struct mp_thread *self, uintptr_t ra, uintptr_t sp, uintptr_t fp,
                                  struct mp_site_hit *hit);
/* How many allocations' sites were found by a whole walk, the caches not knowing them. */
MP_HIDDEN uint64_t mp_sites_unwinds(void);
/* How many allocations' sites came from a walk made at another depth, the walk cache
 * missing (a whole walk avoided, but not the out-of-line lookup). */
MP_HIDDEN uint64_t mp_sites_relative_finds(void);

/* A thread's cache slot for a site's frames. */
static inline unsigned mp_sites_slot(uintptr_t f0, uintptr_t f1, uintptr_t f2, uintptr_t f3)
{
    uintptr_t h = f0 ^ (f1 * 31) ^ (f2 * 1009) ^ (f3 * 65537);
    return (unsigned)((h ^ (h >> 12)) % MP_SITE_CACHE);
}

/* The fast path's lookup: the cached entry of a site whose one frame is `ra` and whose
 * device does not depend on the size, into *hit; else 0: then mp_sites_match decides.
 * The caller counts the hit with mp_sites_count once the allocation succeeded. `fast`:
 * the caller found the thread's stale flag clear (types.h), so the entry's generation
 * need not be tested. */
static inline int mp_sites_fixed(struct mp_thread *self, uintptr_t ra, struct mp_site_hit *hit,
                                 int fast)
{
    struct mp_site_entry *e = &self->cache[mp_sites_slot(ra, 0, 0, 0)];
    if (mp_likely(e->frames[0] == ra && !e->walked && e->fixed &&
                  (fast || e->generation == __atomic_load_n(&mp_sites_generation,
                                                            __ATOMIC_RELAXED)))) {
        *hit = (struct mp_site_hit){&e->count[0], e->device, e->fixed};
        return 1;
    }
    return 0;
}

/* What the unused first words of a walk point at, holding the value they expect (0). */
extern MP_HIDDEN const uintptr_t mp_walk_pad;
_Static_assert(MP_WALK_FIRST == 4, "mp_sites_walk_hit compares four words without a loop");

/* The hash of a walk's start (ra, sp): its top bits pick the start's walk-cache set, the
 * bits below them its crowd hint slot. */
#define MP_WALK_HASH 0x9e3779b97f4a7c15ull
static inline uint64_t mp_walk_hash(uintptr_t ra, uintptr_t sp) { return (ra ^ sp) * MP_WALK_HASH; }
static inline unsigned mp_walk_set_of(uint64_t h) { return (unsigned)(h >> (64 - MP_WALK_SET_BITS)); }
static inline unsigned mp_crowd_slot_of(uint64_t h) { return (unsigned)((h >> 50) % MP_CROWD_HINTS); }
_Static_assert(MP_CROWD_HINTS <= 256 && 64 - MP_WALK_SET_BITS >= 58,
               "a start's hint slot and walk set take different bits of one hash");

/* The fast path's lookup for multi-frame policies: the fixed site entry an earlier walk
 * from the same (ra, sp, fp) led to, when every stack word that walk read still holds the
 * value it read (so unwinding again would find the same frames) and the rules' addresses
 * are unchanged (generation): into *hit;
 * else 0: mp_sites_fixed_slow unwinds. The words lie in [sp, stack top) of this thread's
 * stack. `fast` (as for mp_sites_fixed): no generation test, and walks of more than
 * MP_WALK_FIRST words are left to the slow path (their loop would cost the fast path
 * registers). */
static inline int mp_sites_walk_hit(struct mp_walk_entry *w, uintptr_t ra, uintptr_t sp,
                                    uintptr_t fp, struct mp_site_hit *hit, int fast)
{
    if (w->ra != ra || w->sp != sp || (fp & w->fp_mask) != w->fp)
        return 0;
    /* The first words without a branch each: walks differ in length from site to site,
     * and a loop's exit mispredicted on most hits. Every word lies on this thread's stack
     * (or is mp_walk_pad), so all can be read whatever the others hold. */
    const struct mp_walk_word *x = w->word;
    if (fast && mp_unlikely(w->n > MP_WALK_FIRST))
        return 0;
    uintptr_t differ = (*x[0].addr ^ x[0].value) | (*x[1].addr ^ x[1].value) |
                       (*x[2].addr ^ x[2].value) | (*x[3].addr ^ x[3].value);
    for (int i = MP_WALK_FIRST; !fast && i < w->n; i++)
        differ |= *x[i].addr ^ x[i].value;
    if (differ)
        return 0;
    /* only fixed sites are remembered: the walk alone tells the device */
    if (mp_likely(fast ||
                  w->generation == __atomic_load_n(&mp_sites_generation, __ATOMIC_RELAXED))) {
        *hit = (struct mp_site_hit){&w->count, w->device, w->fixed};
        return 1;
    }
    return 0;
}

/* A walk of `set` from (ra, sp, fp) whose words still hold: into *hit. */
static inline int mp_sites_walk_set_hit(struct mp_walk_entry *set, uintptr_t ra, uintptr_t sp,
                                        uintptr_t fp, struct mp_site_hit *hit, int fast)
{
    for (int i = 0; i < MP_WALK_WAYS; i++)
        if (mp_sites_walk_hit(&set[i], ra, sp, fp, hit, fast))
            return 1;
    return 0;
}

/* The key of walks from (ra, sp): ra, or for a crowded start (its hint) ra xor the value
 * of the word where its walks part (types.h), which picks their set (the set's hash mixes
 * it) and tells them from each other at the first compare; into *set, the key's set. */
static inline uintptr_t mp_walk_key(const struct mp_thread *self, uintptr_t ra, uintptr_t sp,
                                    unsigned *set)
{
    uint64_t h = mp_walk_hash(ra, sp);
    const struct mp_crowd_hint *c = &self->crowd_hints[mp_crowd_slot_of(h)];
    if (mp_likely(c->ra != ra || c->sp != sp)) {
        *set = mp_walk_set_of(h);
        return ra;
    }
    uintptr_t key = ra ^ *c->split;
    *set = mp_walk_set_of(mp_walk_hash(key, sp));
    return key;
}

/* The fast path's walk lookup: the set of the start's key (mp_walk_key). */
static inline int mp_sites_fixed_walked(struct mp_thread *self, uintptr_t ra, uintptr_t sp,
                                        uintptr_t fp, struct mp_site_hit *hit, int fast)
{
    unsigned set;
    uintptr_t key = mp_walk_key(self, ra, sp, &set);
    return mp_sites_walk_set_hit(self->walks[set], key, sp, fp, hit, fast);
}

/* The fast path's lookup: for one-frame policies the return address's entry; for deeper
 * ones the walk from the program's frame, else the return address's entry when no rule
 * of several frames begins with it (most sites of a program, which need no walk). */
static inline int mp_sites_find(struct mp_thread *self, uintptr_t ra, uintptr_t sp, uintptr_t fp,
                                struct mp_site_hit *hit)
{
    if (mp_likely(mp_sites_depth <= 1))
        return mp_sites_fixed(self, ra, hit, 0);
    return mp_sites_fixed_walked(self, ra, sp, fp, hit, 0) || mp_sites_fixed(self, ra, hit, 0);
}

/* Count a hit found by the fast path's lookups: in the fixed entry's count[0] (its rule
 * is cand[0], or none), or in the walk that found it (into the rule's totals when the walk
 * is evicted, and at exit). */
static inline void mp_sites_count(struct mp_site_count *c, size_t size)
{
    c->hits++;
    c->bytes += size;
}

// "sites/relative_walks.c" -- walks kept by their words' offsets from sp (types.h)
/* Keep walk w (from its ra, sp and fp; its trace relative) by its offsets; fp_values: which
 * of its words are saved frame pointers (the trace's fp_words). */
MP_HIDDEN void mp_rel_walks_remember(struct mp_thread *self, const struct mp_walk_entry *w,
                                     uint32_t fp_values);
/* A walk kept from ra under the rules' addresses of `generation` whose words hold at (sp,
 * fp): as the walk entry of (ra, sp, fp) into *out (its words, not the unused ones after
 * them). */
MP_HIDDEN int mp_rel_walks_find(struct mp_thread *self, uintptr_t ra, uintptr_t sp, uintptr_t fp,
                                uint32_t generation, struct mp_walk_entry *out);

/* ======== modes ======== */

// "modes/profile.c" -- `memplace profile`: every allocation is forwarded to the next
// allocator and recorded against its call site; one text file per process at exit, or
// when the program dies of a signal.
/* Start profiling into directory `dir`; 0 on success, else *why says why not. */
MP_HIDDEN int mp_profile_start(const char *dir, const char **why);
MP_HIDDEN void mp_profile_write(void);
MP_HIDDEN void mp_profile_rollback(void); /* an exec after mp_profile_write failed */
MP_HIDDEN void *mp_profile_malloc(size_t n, uintptr_t ra);
MP_HIDDEN void *mp_profile_calloc(size_t n, size_t size, uintptr_t ra);
MP_HIDDEN void *mp_profile_realloc(void *p, size_t n, uintptr_t ra);
MP_HIDDEN void *mp_profile_aligned(size_t align, size_t n, uintptr_t ra);
MP_HIDDEN void mp_profile_forget(void *p); /* p is being freed */
MP_HIDDEN void mp_profile_fork_prepare(void);
MP_HIDDEN void mp_profile_fork_release(void);

// "modes/place.c" -- the malloc family when a policy is in force (entry.c dispatches here)
/* Start placing with the compiled policy at `path`; 0 on success, else *why says why not.
 * The caller then sets mp_mode to MP_PLACING. */
MP_HIDDEN int mp_place_start(const char *path, const char **why);
/* Stats (when MEMPLACE_STATS names a directory): one file per process image. begin: at
 * start (dir given) or in a forked child (dir NULL: the same one); began = "start"|"fork". */
MP_HIDDEN void mp_place_stats_begin(const char *dir, const char *began);
/* A line naming a program the runtime stepped aside for (callable in a vfork child). */
MP_HIDDEN void mp_place_stats_aside(int pid, const struct mp_exec_verdict *v, const char *path);
/* Before an exec: remember the file's length; if the exec fails, cut back to it. */
MP_HIDDEN off_t mp_place_stats_checkpoint(void); /* the stats file's size before an exec */
MP_HIDDEN void mp_place_stats_rollback(off_t mark);
/* The final counts and how the image ended ("exit", "_exit", "quick_exit" with status, or
 * -1 when unknown; "exec" with the target); once per image, only in its own process. */
MP_HIDDEN void mp_place_write_stats(const char *how, int status, const char *target);
/* `ra` is the call site; `sp` and `fp` the program's stack and frame pointers at the call
 * (sp: as after the call returns), where unwinding starts; sp 0: unwind from here. */
/* malloc's, chosen for the policy by mp_place_start (rules of one frame look the return
 * address up alone, deeper ones walks first), so that no call tests which. */
typedef void *mp_place_malloc_fn(size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp);
MP_HIDDEN extern mp_place_malloc_fn *mp_place_malloc;
MP_HIDDEN void *mp_place_calloc(size_t n, size_t size, uintptr_t ra, uintptr_t sp, uintptr_t fp);
MP_HIDDEN void *mp_place_realloc(void *p, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp);
/* The stats file of a process that runs (ran=1) or stops (ran=0) without placement, and why. */
MP_HIDDEN void mp_place_write_unplaced(const char *dir, const char *why, int ran);
MP_HIDDEN void *mp_place_aligned(size_t align, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp); /* align: a valid power of two */

/* ======== entry ======== */

// "entry/process.c" -- how an image ends: exit, _exit, _Exit, quick_exit, exec; the one
// hook that writes the mode's exit file (stats or profile) first
/* At start-up (after the mode is set) and in a forked child (init.c's fork handler). */
MP_HIDDEN void mp_process_start(const char *stats_dir);
MP_HIDDEN void mp_process_forked(void);
/* The image ends: how ("exit", "_exit", "quick_exit", "exec"), its status (-1: unknown),
 * the exec's target. Nothing in a vfork child or after the first call. */
MP_HIDDEN void mp_process_ends(const char *how, int status, const char *target);
MP_HIDDEN void mp_process_exits(void); /* the destructor's call */
/* An exec is about to replace the image (aside: the verdict when we stepped aside for the
 * target, else NULL); it failed; a posix_spawn child we stepped aside for. */
MP_HIDDEN off_t mp_process_exec_begins(const char *target, const struct mp_exec_verdict *aside);
MP_HIDDEN void mp_process_exec_failed(off_t mark);
MP_HIDDEN void mp_process_spawned(int pid, const struct mp_exec_verdict *aside, const char *target);

// "entry/exec.c" -- the exec family and posix_spawn: programs that cannot host the runtime
// start without it
/* Resolve the next exec functions and our own file name (at start-up: not in a vfork child). */
MP_HIDDEN void mp_exec_init(void);

// "entry/entry.c"
/* The mode (MP_TRANSPARENT, MP_PLACING, MP_PROFILING), set once by init.c. */
MP_HIDDEN extern int mp_mode;
/* Point the hot entry points straight at the next allocator or placement, as the mode
 * allows. */
MP_HIDDEN void mp_entry_choose(void);

// "entry/fork.c" -- fork and _Fork: fail with ENOMEM rather than give a child that shares
// file-device memory with its parent (no internal callers)

#endif
