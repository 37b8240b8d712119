/* Layouts and macros shared by the runtime's files (as mimalloc's types.h): no function
 * is declared here (see internal.h). The lowest layer: it includes nothing of ours but
 * the compiled policy's file format. */
#ifndef MEMPLACE_TYPES_H
#define MEMPLACE_TYPES_H

#include <stddef.h>
#include <stdint.h>
#include "policy_format.h"

/* ---- macros ---- */

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

/* What the entry points do beyond forwarding: nothing (transparent), place (a policy is
 * in force) or record (profiling). Set once at start-up. */
enum { MP_TRANSPARENT = 0, MP_PLACING = 1, MP_PROFILING = 2 };

/* ---- the next allocator (os/next.c) ---- */

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

#define MP_BOOT_AREA_SIZE (256u * 1024u)

/* ---- the compiled policy, as read (os/policy.c; the file's records: policy_format.h) ---- */

struct mp_device_spec {
    uint32_t kind, mode;
    uint64_t capacity;           /* bytes; 0 = no limit */
    int32_t fallback;            /* device index, -1 = the next allocator */
    uint32_t flags;
    const char *name, *path;     /* path: directory of a file device, else NULL */
    uint64_t nodemask[MP_NODEMASK_WORDS];
};

struct mp_module_spec {
    const char *path;            /* "" = the main executable */
    const char *build_id;        /* lowercase hex, or NULL */
};

struct mp_frame_spec {
    uint32_t module;
    uint64_t lo, hi;             /* module-relative return-address range, inclusive */
};

struct mp_rule_spec {
    uint32_t device, nframes;
    uint64_t size_min, size_max;
    struct mp_frame_spec frame[MP_MAX_FRAMES];
    const char *name;
};

struct mp_policy {
    uint32_t ndevices, nmodules, nrules, default_device;
    struct mp_device_spec *devices;
    struct mp_module_spec *modules;
    struct mp_rule_spec *rules;
};

/* ---- unwind tables (os/unwind.c) ----
 * Written by Python (launch/unwind_tables.py) from a module's .eh_frame, one file per
 * build-id: for every code address, how to find the caller's registers. */

/* How to find the caller's registers at one address (12 bytes; Python's RULE struct). */
struct mp_unwind_rule {
    int32_t cfa_off;
    int16_t fp_off, ra_off;
    uint8_t cfa_base, fp_rule, ra_rule, reserved;
};
_Static_assert(sizeof(struct mp_unwind_rule) == 12, "unwind rule layout");
enum { MP_CFA_UNKNOWN = 0, MP_CFA_SP = 1, MP_CFA_FP = 2, MP_CFA_OUTERMOST = 3, MP_CFA_SIGNAL = 4 };
enum { MP_FP_SAME = 0, MP_FP_SAVED = 1, MP_FP_LOST = 2 };
enum { MP_RA_SAVED = 1, MP_RA_IN_REGISTER = 2 };

/* A module's table, mapped read-only from its file. */
struct mp_unwind_table {
    uint32_t nrows, nrules;
    const uint32_t *pcs;   /* sorted module-relative addresses where rows start */
    const uint32_t *index; /* each row's rule */
    const struct mp_unwind_rule *rules;
};

/* The registers a walk needs. `exact`: pc is the current instruction (the first frame,
 * or one a signal interrupted), not a return address. */
struct mp_unwind_regs {
    uintptr_t pc, sp, fp;
    int exact;
};

/* The stack words a walk read. A walk is a function of its starting registers and of
 * these words: when both are unchanged, so are the frames it found. */
#define MP_UNWIND_TRACE 32
struct mp_unwind_trace {
    int n; /* -1: more words than fit, the walk cannot be replayed */
    int fp_used; /* a step used the starting frame pointer (else the walk does not depend
                    on it: in code without frame pointers it is any value) */
    int relative; /* every frame's CFA came from sp, from the starting frame pointer or
                     from a saved one, and no read met the stack's bounds: moved with the
                     stack (sp, the frame pointers and the saved ones all by one amount),
                     the walk reads the same words (sites/relative_walks.c) */
    uint32_t fp_words;  /* which words are saved frame pointers ... */
    uint32_t fp_needed; /* ... and which of those a later step used: the others, in code
                           without frame pointers the program's data in rbp, are dropped
                           when the walk ends (the frames do not depend on them); then
                           fp_words says which of the words kept are */
    const uintptr_t *addr[MP_UNWIND_TRACE];
    uintptr_t value[MP_UNWIND_TRACE];
};

/* A thread's unwinding memory: the rules it used last, by address (most steps skip the
 * module search and the binary search), and its last walk (a loop allocating from one
 * call chain repeats it exactly, and only re-reads the words it depended on). */
#define MP_UNWIND_CACHE 64
#define MP_UNWIND_FRAMES 8
struct mp_unwind_cache {
    const void *modules; /* the snapshot the entries and the last walk belong to */
    struct { uintptr_t pc; const struct mp_unwind_rule *rule; int skip; } e[MP_UNWIND_CACHE];
    struct {
        uintptr_t pc, sp, fp;
        int depth, n, end;
        uintptr_t frames[MP_UNWIND_FRAMES];
        struct mp_unwind_trace trace;
    } last;
};

/* ---- loaded modules (os/modules.c) ---- */

struct mp_module {
    uintptr_t base, lo, hi; /* load bias; executable range [lo, hi) */
    uint64_t id;            /* a hash of base, build-id and path: which module this is */
    int skip;               /* libc, libstdc++, libgcc, ld.so, ourselves: not a call site */
    const char *path;       /* "" for the main program */
    char build_id[41];
    const struct mp_unwind_table *unwind; /* NULL: no table, a walk stops in this module */
};

/* A snapshot of the loaded modules. Snapshots are never freed (readers need no lock);
 * each keeps a link to the one it replaced, so every module ever seen stays known. */
struct mp_modules {
    unsigned long long adds, subs; /* the loader's counters when it was taken */
    uint32_t generation;
    uint32_t checked; /* the dlclose count (mp_modules_unloads) it was last found current
                         at: a profile retakes no snapshot until another dlclose */
    int n;
    uintptr_t lo, hi; /* union of the executable ranges: quick rejection of data words */
    struct mp_module *modules;
    struct mp_modules *previous;
};

/* ---- per-thread state (thread/thread.c) ----
 * The call-site cache and the device counters, kept per thread so the allocation path
 * takes no lock and no atomic. Blocks are never freed: a block of an exited thread is
 * reused by a new thread, counters and cache intact (both stay valid), so summing every
 * block ever made gives the process totals at exit. */

#define MP_SITE_CACHE 256
#define MP_MAX_CANDIDATES 4
/* A site's kind when its device does not depend on the size: an arena whose freed small
 * blocks the thread caches (device < MP_TCACHE_DEVICES: the fast path pops them without
 * testing the device), another arena, or the next allocator. */
enum { MP_FIXED_NOT = 0, MP_FIXED_CACHED = 1, MP_FIXED_ARENA = 2, MP_FIXED_NEXT = 3 };

/* 128 bytes, so the fast path (frames[0] .. count[0].hits) reads one cache line. */
/* Hits of a rule not yet in its totals (sites/sites.c). */
struct mp_site_count { uint64_t hits, bytes; };

struct mp_site_entry {
    uintptr_t frames[MP_MAX_FRAMES];
    uint32_t generation;              /* 0 = empty */
    int16_t ncand;                    /* -1: too many candidates, scan the rules */
    uint8_t needs_scan;               /* keyed by a return address that does not decide
                                         alone (into libc/libstdc++, or one a rule of
                                         several frames begins with): frames from unwinding */
    uint8_t walked;                   /* keyed by the frames of a whole walk, not by a
                                         return address (a walk may find `ra` alone) */
    uint8_t fixed;                    /* one-frame policy, and the size does not matter:
                                         every allocation here goes to `device`, an arena
                                         (MP_FIXED_CACHED, _ARENA) or the next allocator
                                         (_NEXT) */
    int32_t device;                   /* when fixed: cand[0]'s device, or the default */
    struct mp_site_count count[MP_MAX_CANDIDATES]; /* of cand[i], not yet in the totals */
    uint16_t cand[MP_MAX_CANDIDATES]; /* rules these frames can match, in priority order */
} __attribute__((aligned(64)));

/* A thread's memory of the walks that led to multi-frame sites, keyed by where the walk
 * started (the program's return address, stack and frame pointers): a walk is a function
 * of those and of the stack words it read, so when the words still hold, the site is the
 * one the walk found, without unwinding again. Only walks that read at most
 * MP_WALK_WORDS words are kept. Sets of MP_WALK_WAYS walks: callers of one function from
 * one stack depth start their walks alike (same ra, sp and fp) and differ in the words,
 * from the first word on, so a set keeps that many of them side by side. A start with
 * more callers than that (a dispatch through many functions) is crowded: a hint (struct
 * mp_crowd_hint) records the stack word at which its walks part, and its walks are keyed
 * by the return address xor that word's value, so each caller's walk has a set of its
 * own and the fast path still takes one set lookup. */
#define MP_WALK_SET_BITS 6
#define MP_WALK_SETS (1 << MP_WALK_SET_BITS)
#define MP_WALK_WAYS 4
#define MP_WALK_WORDS 8
#define MP_WALK_FIRST 4 /* words compared without a branch each (walks of more: slow path) */
struct mp_walk_entry {
    uintptr_t ra, sp, fp;             /* ra 0: empty (written last, so a signal handler
                                         never sees a half-made entry as valid) */
    uintptr_t fp_mask;                /* 0 when the walk did not use fp (fp is then 0) */
    struct mp_site_count count;       /* hits through this walk, not yet in the entry's count[0] */
    uint32_t generation;              /* of the rules' addresses the walk was made under */
    int32_t device;                   /* the site's device, kind and rule (-1: none), as its */
    int32_t rule;                     /* entry had them: a walk needs no site entry, so the */
    uint8_t fixed;                    /* site cache can reuse that entry for another site */
    uint8_t n;                        /* words the walk read */
    /* (a hit reads and counts in the line above; the words are read after it, the first
     * MP_WALK_FIRST from the next line, unused ones pointing at mp_walk_pad) */
    struct mp_walk_word { const uintptr_t *addr; uintptr_t value; } word[MP_WALK_WORDS];
} __attribute__((aligned(64)));
_Static_assert(offsetof(struct mp_walk_entry, n) < 64, "a walk's hit reads and counts in one line");
/* A crowded start (ra 0: none) and the word at which its walks part: on the thread's
 * stack above sp, readable whenever sp is. Direct-mapped by ra and sp: two dispatches
 * share a slot 1 time in MP_CROWD_HINTS. */
#define MP_CROWD_HINTS 256
/* 32 bytes, not 24: a slot's offset is then a mask of the hash, not a multiply */
struct mp_crowd_hint { uintptr_t ra, sp; const uintptr_t *split; } __attribute__((aligned(32)));
/* A walk is the same walk at any depth of the stack, as long as its words are read at the
 * same offsets from sp and hold the same values, saved frame pointers the same offsets
 * from sp (trace relative: no signal frame): a call chain met again deeper or shallower
 * (an interpreter's or a solver's recursion) need not be unwound again. The thread keeps
 * such walks by offsets, in sets picked by the start's return address and the walk's
 * first two return addresses, so that the callers of one function (a dispatch) do not
 * crowd one set. Where those two lie is kept apart: the first's offset by the start's
 * return address, the second's by that and the first. On a miss of the walk cache, a
 * relative walk whose words hold there becomes the walk entry of the new start. */
#define MP_REL_SET_BITS 7
#define MP_REL_SETS (1 << MP_REL_SET_BITS)
#define MP_REL_WAYS 8 /* 80 walks in 128 sets: more than 8 in one, about 3 in a million */
#define MP_REL_OFFSET_SETS 64
#define MP_REL_NONE UINT32_MAX /* a walk of one return address: no second */
struct mp_rel_walk {
    uintptr_t ra;                     /* 0: empty */
    intptr_t fp_off;                  /* fp - sp at the start, when the walk used fp */
    uint32_t generation;
    int32_t device, rule;
    uint8_t fixed, n;                 /* n >= 1 */
    uint8_t fp_used;                  /* the walk used the starting frame pointer */
    uint8_t fp_values;                /* word i a saved frame pointer (bit i): its value
                                         is kept as an offset from sp */
    uint32_t end;                     /* the highest word's offset + 8 (a saved frame
                                         pointer lies below its frame's return address) */
    uint32_t off[MP_WALK_WORDS];      /* word i at sp + off[i] */
    uintptr_t value[MP_WALK_WORDS];
};
/* Where walks from ra read their first return address, or (rel_seconds) their second
 * after the first (`first`): an offset from sp. */
struct mp_rel_offset { uintptr_t ra, first; uint32_t off; };

struct mp_device_counters {
    uint64_t allocations, bytes;
    int64_t live_pending; /* usable bytes allocated minus freed, not yet in the device's live */
    /* the most live_pending may reach before the thread asks the device again: its room
     * (capacity minus live) when pending was last published, at most a batch; so the
     * allocation path checks the capacity against the thread's own line */
    int64_t credit;
} __attribute__((aligned(32))); /* within one cache line: the allocation path updates
                                    allocations and bytes as one 16-byte pair, and a pair
                                    split across lines stalls every next load of it */

/* Freed small blocks a thread keeps for reuse, per device (the first few) and size class */
#define MP_TCACHE_DEVICES 4
#define MP_TCACHE_SMALL ((int)(128 * sizeof(void *))) /* mimalloc's small blocks: MI_SMALL_SIZE_MAX */
#define MP_TCACHE_BINS (MP_TCACHE_SMALL / 8) /* by usable size / 8 - 1 (usable 8..1024): a row
                                           of 2 KiB, so a device's row is a shift */
#define MP_SMALL_SIZES (MP_TCACHE_SMALL / 8 + 1) /* small request sizes, by 8-byte step */
#define MP_TCACHE_MAX 8               /* freed blocks kept per device and size class */
struct mp_tcache_bin { void *head; uint32_t count; };

#define MP_PROFILE_CACHE 64
struct mp_profile_entry { uintptr_t frames[MP_MAX_FRAMES]; uint32_t site_plus_one, era; };

struct mp_thread {
    struct mp_thread *next_all, *next_free;
    uintptr_t stack_lo, stack_top; /* the thread's own stack (0: unknown, do not unwind);
                                      a walk starting elsewhere (a coroutine's or signal
                                      stack) is not made */
    struct mp_device_counters devices[MP_MAX_DEVICES];
    /* mimalloc's thread-local heap of each device's newest arena heap, for this thread
     * (allocating through it skips mimalloc's own lookup); reset when the block is reused */
    void *theaps[MP_MAX_DEVICES];
    int theap_of[MP_MAX_DEVICES]; /* which arena heap the cached theap belongs to, + 1 */
    struct mp_site_entry cache[MP_SITE_CACHE];
    struct mp_walk_entry walks[MP_WALK_SETS][MP_WALK_WAYS]; /* newest first */
    struct mp_crowd_hint crowd_hints[MP_CROWD_HINTS];
    struct mp_rel_walk rel_walks[MP_REL_SETS][MP_REL_WAYS]; /* newest first */
    struct mp_rel_offset rel_firsts[MP_REL_OFFSET_SETS][MP_WALK_WAYS]; /* newest first */
    struct mp_rel_offset rel_seconds[MP_REL_OFFSET_SETS][MP_WALK_WAYS];
    uint8_t busy;  /* the thread is inside placement: its site caches, block cache, live
                      bytes or mimalloc heaps (or the loader's lock, in a walk). A
                      malloc-family call that finds it set is a signal handler's: it
                      touches none of these (modes/place.c: nested) */
    uint8_t stale; /* the rules' addresses changed (mp_sites_generation) since the thread's
                      site and walk caches were checked: set by the thread that changed
                      them, cleared by this one as it forgets them (mp_sites_forget_stale),
                      so the fast path, which tests this flag, tests no entry's generation.
                      Not read with busy as one word: a wider load after the byte store
                      that left placement stalls (store forwarding) */
    void *deferred; /* blocks of ours a signal handler freed while the thread was busy:
                       freed by the thread when next inside placement (device_heap.c) */
    struct mp_unwind_cache unwind;
    uint64_t unwinds; /* allocations whose site took a whole walk (sites/sites.c) */
    uint64_t relative_finds; /* ... whose site a walk made at another depth gave: the walk
                                cache missed, no unwinding (sites/relative_walks.c) */
    struct mp_tcache_bin tcache[MP_TCACHE_DEVICES][MP_TCACHE_BINS];
    struct mp_profile_entry profile_cache[MP_PROFILE_CACHE];
};

/* ---- site matching (sites/sites.c) ---- */

/* What the fast path's lookups find: the site's entry (where its hit is counted) and the
 * device and kind (MP_FIXED_*) it holds. */
struct mp_site_hit { struct mp_site_count *count; int device, fixed; };

struct mp_rule_stats { uint64_t hits, bytes; };

/* ---- device heaps (heaps/) ----
 * One heap per memory device, on mimalloc exclusive arenas over memory memplace maps and
 * binds itself. The devices that place live in one reserved address range, cut into units
 * of 2^mp_unit_shift bytes; each device has a run of units sized in proportion to its
 * capacity (its arenas) and one more unit (its special part: MP_MAX_GROWTH growth areas of
 * MP_GROWTH_AREA bytes, then direct blocks aligned above 64 KiB). A byte per unit names
 * the device (and whether the unit is special), so "is this block ours, and whose" is a
 * subtraction, a compare and one load. A device whose arenas fill their units grows into
 * extents: further reservations, up to MP_MAX_EXTENTS for the process, looked up only for
 * pointers outside the range. */

#define MP_UNIT_SPECIAL 0x80         /* in the unit table: the device's special part */
#define MP_UNIT_DEVICE 0x7f
#define MP_MAX_EXTENTS 32
#define MP_MAX_UNITS 65536           /* the unit table: 64 KiB */

struct mp_extent { uintptr_t base, size; int dev; uint64_t arranged; };

#define MP_MAX_ARENAS 64
#define MP_BACKED_ARENA (256ull << 20) /* arena size for files and huge pages (arena.c) */
#define MP_MAX_DIRECT 256            /* live blocks aligned above 64 KiB, per device */
#define MP_MAX_GROWTH 16             /* growth areas per device */
#define MP_GROWTH_AREA (1u << 20)    /* room a growing block gets, and grows in place within */
#define MP_LIVE_BATCH (1ll << 20)    /* a thread publishes its live-bytes change in steps this big */
#define MP_EXACT_BYTES (256u << 10)  /* blocks this big are counted against capacity at once */

enum mp_fallback_reason { MP_FULL, MP_BIND_FAILED, MP_BACKING_FAILED, MP_ALIGNMENT, MP_REASONS };

struct mp_device_stats {
    uint64_t allocations, bytes, live, peak;
    uint64_t fallbacks[MP_REASONS]; /* allocations this device passed on, by reason */
};

enum { MP_GROWTH_UNMAPPED, MP_GROWTH_SPARE, MP_GROWTH_GROWING };

struct mi_heap_s; /* mimalloc's mi_heap_t, without mimalloc.h for the files that need none */

/* Live bytes of the devices whose capacity is the node's (policy scope "node"), shared
 * by every process of the job on this node through a mapped file (os/shared_page.c).
 * A process adds what it publishes, and takes its live bytes back when it ends. */
struct mp_node_counters {
    uint64_t users; /* processes that have it mapped */
    uint64_t reserved[7];
    struct { uint64_t live, peak, reserved[6]; } device[MP_MAX_DEVICES];
};

struct mp_device_heap {
    const struct mp_device_spec *spec;
    unsigned char *slot;         /* its units in the range: arenas, then the special part */
    uint64_t capacity;           /* limit on live bytes; 0 = none */
    uint64_t limit;              /* the same, UINT64_MAX for none: one compare, no branch */
    uint64_t *limit_live;        /* the live bytes the capacity limits: &stats.live, or the
                                    node's (struct mp_node_counters) */
    uint64_t span, arranged;     /* bytes of the units usable as arenas; made into arenas */
    uint64_t backed;             /* a file device: bytes of the files made for it */
    int cannot_punch;            /* a file device whose filesystem cannot punch holes */
    int punch_lock;              /* held by a purge that may punch, and across a fork */
    int roomy;                   /* its filesystem had twice its files free, */
    int64_t room_checked;        /* ... at this time (ms, CLOCK_MONOTONIC_COARSE; 0: never) */
    uint64_t special, special_size; /* the special part: offset from slot, length */
    int extent, grown, out_of_room; /* extent arenas grow in (-1: none yet); extents made */
    int narenas, dead, lock;
    struct mi_heap_s *heaps[MP_MAX_ARENAS];
    struct mp_direct { uint64_t offset, length; } direct[MP_MAX_DIRECT]; /* in use, by offset */
    int ndirect, nspare;
    struct mp_growth { uint64_t used; int state; } growth[MP_MAX_GROWTH];
    struct mp_device_stats stats;
} __attribute__((aligned(64)));

/* ---- signal-safe output (util/writer.c) ---- */

struct mp_writer { char buf[16384]; size_t n; int fd; };

/* ---- programs the runtime steps aside for (os/exec_target.c) ---- */

/* Why a program about to be executed cannot host the runtime (0: it can). The stats file
 * spells them as words (modes/place.c), Python as sentences (launch/program.py). */
enum { MP_ASIDE_MUSL = 1, MP_ASIDE_STATIC, MP_ASIDE_MACHINE, MP_ASIDE_SETID, MP_ASIDE_LOADER };

struct mp_exec_verdict {
    int reason;             /* MP_ASIDE_*, or 0 */
    unsigned machine, bits; /* MP_ASIDE_MACHINE: e_machine and 32/64 */
    char loader[256];       /* PT_INTERP of the program judged */
    char interpreter[256];  /* a script's `#!` interpreter, when the verdict is its */
};


/* ---- one instruction's memory operand (util/x86_decode.c) ---- */

enum { MP_ACCESS_NONE = 0, MP_ACCESS_READ = 1, MP_ACCESS_WRITE = 2 };
enum { MP_REG_RIP = 16, MP_REG_NONE = 255 };
/* how an instruction ends a run of straight-line code: not, a conditional direct branch,
 * a direct jump, or anything else that leaves (call, ret, indirect jump, syscall, trap) */
enum { MP_BRANCH_NONE = 0, MP_BRANCH_COND = 1, MP_BRANCH_JUMP = 2, MP_BRANCH_END = 3 };

/* address = base + index * scale + disp (base MP_REG_RIP: the next instruction's address);
 * registers numbered as in the encoding (0 rax .. 15 r15). */
struct mp_x86_access {
    unsigned char length;  /* bytes of the instruction; 0: not decoded */
    unsigned char memory;  /* it has an explicit memory operand */
    unsigned char access;  /* MP_ACCESS_* bits */
    unsigned char size;    /* bytes accessed (255: 255 or more) */
    unsigned char base, index, scale;
    unsigned char segment; /* 1 fs, 2 gs: a thread-local address */
    unsigned char string;  /* the opcode of movs/cmps/stos/lods/scas: rsi and rdi */
    unsigned char addr32;  /* 67 prefix: 32-bit address */
    unsigned char vsib;    /* gather/scatter: the index is a vector register */
    unsigned char branch;  /* MP_BRANCH_* */
    uint16_t clobbers;     /* general registers it writes (bit n: register n) */
    int32_t target;        /* a direct branch's displacement from the next instruction */
    int64_t disp;
};

/* ---- one aarch64 instruction: its memory operand and its effect on the general
 * registers (util/aarch64_decode.c) ---- */

enum { MP_A64_SP = 31, MP_A64_PC = 32, MP_A64_NONE = 255 };
/* index extension: the register as is (LSL, UXTX, SXTX), its low 32 bits zero- or
 * sign-extended (UXTW, SXTW) */
enum { MP_A64_EXT_X = 0, MP_A64_EXT_UXTW = 1, MP_A64_EXT_SXTW = 2 };
enum { MP_A64_OFFSET = 0, MP_A64_PRE = 1, MP_A64_POST = 2 };

/* address = base (+ extend(index) << shift) (+ disp unless post-indexed); with writeback
 * the base becomes base + disp (pre, post) or base + index (post, SIMD register post-index)
 * after the access. Registers: 0-30 x0-x30, 31 sp (as a base), 32 pc (literal loads). */
struct mp_a64_insn {
    unsigned char memory;    /* it accesses memory at an address it computes */
    unsigned char access;    /* MP_ACCESS_* bits */
    unsigned char branch;    /* MP_BRANCH_* (svc, eret, ...: MP_BRANCH_END) */
    unsigned char base, index, extend, shift, writeback;
    uint16_t size;           /* bytes accessed (the pair's or the structure's total) */
    uint32_t written;        /* general registers it writes (bit n: xn, bit 31: sp), writeback included */
    int64_t disp;
};

/* General registers being followed through straight-line code: x0-x30, sp at [31]. */
struct mp_a64_regs {
    uint64_t x[32];
    uint64_t pc;
    uint32_t known;          /* bit n: x[n] holds the register's value */
};

/* ---- access sampling (os/sampler.c) ---- */

enum { MP_SAMPLER_OFF = 0, MP_SAMPLER_ON = 1, MP_SAMPLER_FAILED = 2, MP_SAMPLER_STOPPED = 3,
       MP_SAMPLER_FINISHED = 4 };

/* Called in the signal handler for each access a sample credits: no lock, no allocation.
 * `weight`: the share of the sample's timer expirations, in 1/MP_SAMPLE_UNIT; `sample`:
 * the sample's number (one sample may credit several accesses to one site). */
#define MP_SAMPLE_UNIT 1024u
typedef void (*mp_sampler_hook)(uintptr_t address, int access, unsigned size, uint32_t weight,
                                uint64_t sample);

/* What the samples were (each counted once; weights in expirations). */
struct mp_sampler_counts {
    uint64_t samples;      /* signals handled */
    uint64_t expirations;  /* timer expirations they stand for (1 + overrun each) */
    uint64_t in_kernel;    /* the thread was in a system call: kernel time */
    uint64_t not_decoded;  /* the code around the IP not known (no unwind table, not decoded) */
    uint64_t no_memory;    /* code around the IP without a heap candidate access */
    uint64_t credited;     /* samples that credited accesses */
    uint64_t memory;       /* accesses credited (handed to the hook) */
    uint64_t not_heap;     /* accesses left out: stack, globals, thread-local data, gathers */
    uint64_t clobbered;    /* accesses left out: address registers rewritten since */
    uint64_t handler_ns;   /* time spent in the handler (monotonic clock): the sampler's own cost */
};

#endif
