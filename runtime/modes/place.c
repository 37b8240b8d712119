/* Placement mode (see internal.h): pick the device from the call site and size, allocate
 * there or along the device's fallback chain, and end at the next allocator, so the
 * program never sees NULL while any device or the next allocator can serve. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"

static struct mp_policy *policy;
static mp_place_malloc_fn place_malloc_one_frame, place_malloc_walked;

/* A thread ends, before its block is recycled: the hits its walks counted go to the
 * rules, its cached blocks and pending live bytes to the devices. It stays inside
 * placement from here: what it still allocates (other keys' destructors, a signal
 * handler) goes to the next allocator (nested), which needs nothing of the block. */
static void thread_ends(struct mp_thread *self)
{
    mp_set_busy(self, 1);
    mp_sites_forget_walks(self);
    mp_device_heaps_thread_exit(self);
}

int mp_place_start(const char *path, const char **why)
{
    policy = mp_policy_load(path, why);
    if (!policy || mp_device_heaps_init(policy, why) || mp_sites_init(policy, why))
        return -1;
    /* the policy's malloc: no test of the rules' depth on every call */
    mp_place_malloc = mp_sites_depth > 1 ? place_malloc_walked : place_malloc_one_frame;
    mp_accounting_init(getenv("MEMPLACE_SHARED"));
    mp_threads_init();
    mp_threads_on_exit(thread_ends);
    return 0;
}

/* The device for an allocation of `n` bytes returning to `ra`: a fixed site's cached
 * device (found as the fast path finds it, walks included: realloc and aligned
 * allocations are as frequent as malloc in some programs), else the rules'; counts the
 * rule's hit. The thread is inside placement (mp_set_busy), or has no block yet. */
static inline int device_for(struct mp_thread *self, size_t n, uintptr_t ra, uintptr_t sp,
                             uintptr_t fp)
{
    int rule;
    if (!self) {
        rule = mp_sites_match_uncached(self, ra, sp, fp, n);
    } else {
        struct mp_site_hit hit;
        if (mp_sites_find(self, ra, sp, fp, &hit)) {
            mp_sites_count(hit.count, n);
            return hit.device;
        }
        rule = mp_sites_match(self, ra, sp, fp, n);
    }
    return rule < 0 ? (int)policy->default_device : (int)policy->rules[rule].device;
}

enum how { PLAIN, ZEROED, ALIGNED };

static void *next_allocator(size_t n, size_t align, enum how how)
{
    switch (how) {
    case ZEROED: return mp_next.calloc(1, n);
    case ALIGNED: return mp_next.memalign(align, n);
    default: return mp_next.malloc(n);
    }
}

/* `n` bytes on device `dev` or along its fallback chain, else from the next allocator. */
static void *serve(struct mp_thread *self, int dev, size_t n, size_t align, enum how how)
{
    int served;
    void *p = mp_device_heap_alloc(self, dev, n, align, how == ZEROED, &served);
    if (p)
        return p;
    mp_device_heap_count_next(self, served, n);
    return next_allocator(n, align, how);
}

/* An allocation by a signal handler that interrupted its thread inside placement: from
 * the next allocator, as without memplace, touching nothing of the thread's (its caches,
 * block cache, counters or mimalloc heaps may be half changed under it); the rule's hit
 * counted from the rules themselves. */
MP_COLD static void *nested(struct mp_thread *self, size_t n, size_t align, enum how how,
                            uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    mp_sites_match_uncached(self, ra, sp, fp, n);
    void *p = next_allocator(n, align, how);
    if (p)
        mp_device_heap_count_nested(n);
    return p;
}

/* The general path: any site, size, alignment or device state. */
__attribute__((noinline)) static void *place(size_t n, size_t align, enum how how, uintptr_t ra,
                                             uintptr_t sp, uintptr_t fp)
{
    struct mp_thread *self = mp_thread();
    if (!self)
        return serve(self, device_for(self, n, ra, sp, fp), n, align, how);
    if (self->busy)
        return nested(self, n, align, how, ra, sp, fp);
    mp_set_busy(self, 1);
    void *p = serve(self, device_for(self, n, ra, sp, fp), n, align, how);
    mp_device_heap_free_deferred(self);
    mp_set_busy(self, 0);
    return p;
}

/* A block for a site found fixed whose thread cache had none: from the next allocator
 * (counted on the site's device once served: no live bytes, the next allocator's are not
 * ours), the device's theap, or its fallback chain when it is full; the site is not
 * looked up again. Inline in its two callers: the next allocator's sites, frequent in
 * advised policies, then take one call to it. */
static inline void *place_found(struct mp_thread *self, int device, int fixed, size_t n, int zero)
{
    if (fixed == MP_FIXED_NEXT) {
        void *p = zero ? mp_next.calloc(1, n) : mp_next.malloc(n);
        if (mp_likely(p != NULL))
            mp_count_in(&self->devices[device], n);
        return p;
    }
    void *p = mp_device_heap_alloc_fast(self, device, n, zero);
    return p ? p : serve(self, device, n, 0, zero ? ZEROED : PLAIN);
}

/* place_found() for the fast path, the thread inside placement: the hit counted once
 * served; then leaves placement. A tail call, so the fast path keeps no frame. */
__attribute__((noinline)) static void *place_found_counted(struct mp_thread *self,
                                                           struct mp_site_count *count,
                                                           int device, int fixed, size_t n)
{
    void *p = place_found(self, device, fixed, n, 0);
    if (mp_likely(p != NULL))
        mp_sites_count(count, n);
    mp_device_heap_free_deferred(self);
    mp_set_busy(self, 0);
    return p;
}

/* The fast path's second part, out of line: the lookup for a site whose device does not
 * depend on the size, when the inline one (below) did not find it: the walk for a site
 * whose frames the return address does not give, when not met from this place on the
 * stack before. No rule scan. Anything else goes to place(). */
__attribute__((noinline)) static void *place_site(size_t n, int zero, uintptr_t ra, uintptr_t sp,
                                                  uintptr_t fp)
{
    struct mp_thread *self = mp_self;
    struct mp_site_hit hit;
    if (self && !self->busy) {
        mp_set_busy(self, 1);
        if (mp_unlikely(__atomic_load_n(&self->stale, __ATOMIC_RELAXED)))
            mp_sites_forget_stale(self); /* so that the fast path may take this thread again */
        if (mp_sites_fixed_slow(self, ra, sp, fp, &hit)) {
            void *p = place_found(self, hit.device, hit.fixed, n, zero);
            if (mp_likely(p != NULL))
                mp_sites_count(hit.count, n);
            mp_set_busy(self, 0);
            return p;
        }
        mp_set_busy(self, 0);
    }
    return place(n, 0, zero ? ZEROED : PLAIN, ra, sp, fp);
}

/* The fast path's first part, inline and without a call on its common case: the site
 * found in the thread's caches (the return address for one-frame policies, the walk from
 * the program's frame for deeper ones), the block from the thread's cache of freed
 * blocks of the site's device. A site found is served by one tail call to
 * place_found_counted() otherwise (the next allocator's sites, an empty cache, a full
 * device); a site not found by one tail call to place_site(). `walks`: the policy has
 * rules of several frames (a constant in each of the two versions below). */
static inline __attribute__((always_inline)) void *place_malloc(size_t n, uintptr_t ra,
                                                                uintptr_t sp, uintptr_t fp,
                                                                int walks)
{
    struct mp_thread *self = mp_self;
    struct mp_site_hit hit;
    if (mp_likely(self != NULL) && mp_likely(!self->busy) &&
        mp_likely(!self->stale)) { /* a byte another thread may set, read once (a relaxed
                                      atomic load takes a register and a test more) */
        mp_set_busy(self, 1);
        if (mp_likely((walks && mp_sites_fixed_walked(self, ra, sp, fp, &hit, 1)) ||
                      mp_sites_fixed(self, ra, &hit, 1))) {
            if (hit.fixed == MP_FIXED_CACHED) {
                void *p = mp_device_heap_pop(self, hit.device, n);
                if (mp_likely(p != NULL)) {
                    mp_sites_count(hit.count, n);
                    mp_set_busy(self, 0);
                    return p;
                }
            } else if (hit.fixed == MP_FIXED_NEXT) {
                /* counted before it is served, so that the next allocator is a jump: its
                 * failure (out of memory) is counted as an allocation too */
                mp_sites_count(hit.count, n);
                mp_count_in(&self->devices[hit.device], n);
                mp_set_busy(self, 0);
                return mp_next.malloc(n);
            }
            return place_found_counted(self, hit.count, hit.device, hit.fixed, n);
        }
        mp_set_busy(self, 0);
    }
    return place_site(n, 0, ra, sp, fp);
}

static void *place_malloc_one_frame(size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    return place_malloc(n, ra, sp, fp, 0);
}

static void *place_malloc_walked(size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    return place_malloc(n, ra, sp, fp, 1);
}

MP_HIDDEN mp_place_malloc_fn *mp_place_malloc = place_malloc_walked;

void *mp_place_calloc(size_t n, size_t size, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    size_t total;
    if (__builtin_mul_overflow(n, size, &total)) {
        errno = ENOMEM;
        return NULL;
    }
    return place_site(total, 1, ra, sp, fp);
}

void *mp_place_aligned(size_t align, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    return place(n, align, ALIGNED, ra, sp, fp);
}

static void place_free(struct mp_thread *self, void *p)
{
    if (mp_device_heap_owns(p))
        mp_device_heap_free_inside(self, p);
    else
        mp_next.free(p);
}

/* realloc's call site decides where the block goes; across devices it is moved by copy.
 * A block that grows moves to a growth area (heaps/growth_area.c), where it can keep
 * growing in place. The thread is inside placement (or has no block). */
static void *realloc_inside(struct mp_thread *self, void *p, size_t n, uintptr_t ra, uintptr_t sp,
                            uintptr_t fp)
{
    if (n == 0) { /* as glibc: free and return NULL */
        place_free(self, p);
        return NULL;
    }
    int dev = device_for(self, n, ra, sp, fp), served;
    int mine = mp_device_heap_owns(p);
    if (mine && mp_device_of(p) == dev && mp_device_heap_resize(self, p, n))
        return p; /* fits where it is */
    size_t old = mine ? mp_device_heap_usable_size(p) : mp_next.usable_size(p);
    void *q = n > old ? mp_growth_area_alloc(self, dev, n) : NULL;
    if (!q)
        q = mp_device_heap_alloc(self, dev, n, 0, 0, &served);
    if (!q) {
        mp_device_heap_count_next(self, served, n);
        if (!mine)
            return mp_next.realloc(p, n); /* stays with the next allocator */
        q = mp_next.malloc(n);
        if (!q)
            return NULL; /* p is left untouched, as realloc must */
    }
    memcpy(q, p, old < n ? old : n);
    place_free(self, p);
    return q;
}

/* realloc by a signal handler that interrupted its thread inside placement (nested()): a
 * block of ours moves to the next allocator, the old one deferred. */
MP_COLD static void *realloc_nested(struct mp_thread *self, void *p, size_t n, uintptr_t ra,
                                    uintptr_t sp, uintptr_t fp)
{
    if (!mp_device_heap_owns(p))
        return mp_next.realloc(p, n);
    void *q = n ? nested(self, n, 0, PLAIN, ra, sp, fp) : NULL;
    if (n && !q)
        return NULL; /* p is left untouched, as realloc must */
    if (q) {
        size_t old = mp_device_heap_usable_size(p);
        memcpy(q, p, old < n ? old : n);
    }
    mp_device_heap_defer_free(self, p);
    return q;
}

void *mp_place_realloc(void *p, size_t n, uintptr_t ra, uintptr_t sp, uintptr_t fp)
{
    if (p == NULL)
        return place(n, 0, PLAIN, ra, sp, fp);
    struct mp_thread *self = mp_thread();
    if (!self)
        return realloc_inside(self, p, n, ra, sp, fp);
    if (self->busy)
        return realloc_nested(self, p, n, ra, sp, fp);
    mp_set_busy(self, 1);
    void *q = realloc_inside(self, p, n, ra, sp, fp);
    mp_device_heap_free_deferred(self);
    mp_set_busy(self, 0);
    return q;
}

/* ---- stats: one text file per process image, turned into JSON by `memplace run --stats` ----
 * Created when the image starts (or the process is forked) with a header and no "end", so
 * a process killed by a signal is still listed, marked as ended without final counts; the
 * counts and how it ended are appended when it ends (exit, _exit, exec). Lines naming
 * programs the runtime stepped aside for are appended as that happens. */

static char stats_dir[3072];
static char stats_path[4096];
static int stats_pid;     /* the process the file is about (a vfork child is not it) */
static int stats_ended;   /* the final counts are written */
static struct mp_writer o; /* 16 KiB: not on the stack of an exiting program */

/* A path on one line of its own: a newline or tab in it becomes '?'. */
static size_t put_path(char *out, size_t cap, const char *p)
{
    size_t n = 0;
    for (; p && *p && n + 1 < cap; p++)
        out[n++] = *p == '\n' || *p == '\t' ? '?' : *p;
    out[n] = 0;
    return n;
}

/* A forked child starts with its parent's counters: say what they were, so that the
 * reader counts only what the child did (live bytes and peaks stay: the inherited blocks
 * are live in the child too).
 * inherited device IDX allocations bytes full bind backing alignment / inherited rule IDX hits
 * bytes / inherited unwinds N R */
static void put_inherited(void)
{
    mp_sites_flush();
    for (uint32_t i = 0; i < policy->ndevices; i++) {
        struct mp_device_stats st;
        mp_device_heap_stats((int)i, &st);
        mp_put(&o, "inherited device"), mp_put_u64(&o, i);
        mp_put_u64(&o, st.allocations), mp_put_u64(&o, st.bytes);
        for (int r = 0; r < MP_REASONS; r++)
            mp_put_u64(&o, st.fallbacks[r]);
        mp_put(&o, "\n");
    }
    for (uint32_t i = 0; i < policy->nrules; i++) {
        const struct mp_rule_stats *r = mp_sites_rule_stats(i);
        if (r->hits == 0)
            continue;
        mp_put(&o, "inherited rule"), mp_put_u64(&o, i), mp_put_u64(&o, r->hits), mp_put_u64(&o, r->bytes);
        mp_put(&o, "\n");
    }
    mp_put(&o, "inherited unwinds"), mp_put_u64(&o, mp_sites_unwinds()), mp_put_u64(&o, mp_sites_relative_finds());
    mp_put(&o, "\n");
}

void mp_place_stats_begin(const char *dir, const char *began)
{
    if (!policy)
        return;
    if (dir) {
        size_t d = strlen(dir);
        if (d >= sizeof stats_dir)
            return;
        memcpy(stats_dir, dir, d + 1);
    }
    stats_path[0] = 0;
    stats_ended = 0;
    if (!stats_dir[0])
        return;
    int saved = errno;
    o.n = 0;
    o.fd = mp_create_numbered(stats_path, sizeof stats_path, stats_dir, "stats");
    if (o.fd < 0) {
        stats_path[0] = 0;
        errno = saved;
        return;
    }
    stats_pid = getpid();
    char exe[4096], line[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = 0;
    put_path(line, sizeof line, exe);
    mp_put(&o, "memplace-stats 2\npid"), mp_put_u64(&o, (uint64_t)stats_pid);
    mp_put(&o, "\nparent"), mp_put_u64(&o, (uint64_t)getppid());
    mp_put(&o, "\nbegan "), mp_put(&o, began);
    mp_put(&o, "\nexe "), mp_put(&o, line), mp_put(&o, "\n");
    if (began[0] == 'f')
        put_inherited();
    mp_flush(&o);
    close(o.fd);
    errno = saved;
}

void mp_place_stats_aside(int pid, const struct mp_exec_verdict *v, const char *path)
{
    if (!stats_path[0])
        return;
    static const char *const words[] = {"?", "musl", "static", "machine", "setid", "loader"};
    char line[1280]; /* room for the reason, two 400-byte paths */
    size_t n = 0;
    memcpy(line, "aside ", 6), n = 6;
    n += mp_fmt_u64(line + n, (uint64_t)pid);
    line[n++] = ' ';
    const char *w = v->reason > 0 && v->reason <= MP_ASIDE_LOADER ? words[v->reason] : "?";
    memcpy(line + n, w, strlen(w)), n += strlen(w);
    if (v->reason == MP_ASIDE_MACHINE) { /* machine=E_MACHINE:BITS */
        line[n++] = '=';
        n += mp_fmt_u64(line + n, v->machine);
        line[n++] = ':';
        n += mp_fmt_u64(line + n, v->bits);
    } else if (v->reason == MP_ASIDE_LOADER) { /* loader=PATH, a space in it as '?' */
        line[n++] = '=';
        for (const char *p = v->loader; *p && n < 300; p++)
            line[n++] = *p == ' ' || *p == '\n' || *p == '\t' ? '?' : *p;
    }
    line[n++] = ' ';
    n += put_path(line + n, 400, path); /* then, if a script: a tab and its interpreter */
    if (v->interpreter[0]) {
        line[n++] = '\t';
        n += put_path(line + n, 400, v->interpreter);
    }
    line[n++] = '\n';
    int saved = errno;
    int fd = open(stats_path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (fd >= 0) {
        mp_write_all(fd, line, n); /* one write with O_APPEND: whole lines */
        close(fd);
    }
    errno = saved;
}

/* The mark lives in the exec'ing thread's frame: two threads' failed execs (or a vfork
 * child's) each cut back only what their own exec appended. */
off_t mp_place_stats_checkpoint(void)
{
    struct stat st;
    return stats_path[0] && stat(stats_path, &st) == 0 ? st.st_size : -1;
}

void mp_place_stats_rollback(off_t mark)
{
    int saved = errno;
    if (mark >= 0)
        truncate(stats_path, mark);
    if (stats_pid == getpid())
        __atomic_store_n(&stats_ended, 0, __ATOMIC_RELEASE); /* its end is still to come */
    errno = saved;
}

void mp_place_write_stats(const char *how, int status, const char *target)
{
    if (!policy || !stats_path[0] || stats_pid != getpid() ||
        __atomic_exchange_n(&stats_ended, 1, __ATOMIC_ACQ_REL)) /* two threads' _exit: one writes */
        return;
    int saved = errno;
    o.n = 0;
    o.fd = open(stats_path, O_WRONLY | O_APPEND | O_CLOEXEC);
    if (o.fd < 0) {
        errno = saved;
        return;
    }
    /* device IDX allocations bytes live peak full bind backing alignment NAME */
    mp_sites_flush();
    for (uint32_t i = 0; i < policy->ndevices; i++) {
        struct mp_device_stats st;
        const struct mp_device_stats *s = &st;
        mp_device_heap_stats((int)i, &st);
        mp_put(&o, "device");
        mp_put_u64(&o, i);
        mp_put_u64(&o, s->allocations), mp_put_u64(&o, s->bytes), mp_put_u64(&o, s->live), mp_put_u64(&o, s->peak);
        for (int r = 0; r < MP_REASONS; r++)
            mp_put_u64(&o, s->fallbacks[r]);
        mp_put(&o, " "), mp_put(&o, policy->devices[i].name), mp_put(&o, "\n");
    }
    /* reserve IDX BYTES GROWN: address space the device holds, extents it grew into */
    for (uint32_t i = 0; i < policy->ndevices; i++) {
        int grown;
        uint64_t bytes = mp_arena_reserved((int)i, &grown);
        mp_put(&o, "reserve");
        mp_put_u64(&o, i), mp_put_u64(&o, bytes), mp_put_u64(&o, (uint64_t)grown);
        mp_put(&o, "\n");
    }
    /* rule IDX hits bytes NAME */
    for (uint32_t i = 0; i < policy->nrules; i++) {
        const struct mp_rule_stats *s = mp_sites_rule_stats(i);
        mp_put(&o, "rule");
        mp_put_u64(&o, i), mp_put_u64(&o, s->hits), mp_put_u64(&o, s->bytes);
        mp_put(&o, " "), mp_put(&o, policy->rules[i].name), mp_put(&o, "\n");
    }
    /* unwinds N R: sites found by a whole walk (the site caches missed), and by a walk
     * made at another depth (the walk cache missed) */
    mp_put(&o, "unwinds"), mp_put_u64(&o, mp_sites_unwinds()), mp_put_u64(&o, mp_sites_relative_finds());
    mp_put(&o, "\n");
    /* ended exit|_exit|quick_exit [STATUS] | ended exec PATH */
    mp_put(&o, "ended "), mp_put(&o, how);
    if (status >= 0)
        mp_put_u64(&o, (uint64_t)status);
    if (target) {
        char line[4096];
        put_path(line, sizeof line, target);
        mp_put(&o, " "), mp_put(&o, line);
    }
    mp_put(&o, "\nend\n");
    mp_flush(&o);
    close(o.fd);
    errno = saved;
}

/* A process whose placement could not start: its own stats file, the header and
 * "unplaced RAN WHY" (RAN 1: it runs transparent; 0: it is stopped before main), so the
 * run's stats list it and say why. */
void mp_place_write_unplaced(const char *dir, const char *why, int ran)
{
    char path[4096], exe[4096], line[4096];
    int saved = errno;
    o.n = 0;
    o.fd = mp_create_numbered(path, sizeof path, dir, "stats");
    if (o.fd < 0) {
        errno = saved;
        return;
    }
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[len > 0 ? len : 0] = 0;
    put_path(line, sizeof line, exe);
    mp_put(&o, "memplace-stats 2\npid"), mp_put_u64(&o, (uint64_t)getpid());
    mp_put(&o, "\nparent"), mp_put_u64(&o, (uint64_t)getppid());
    mp_put(&o, "\nbegan start\nexe "), mp_put(&o, line);
    mp_put(&o, "\nunplaced"), mp_put_u64(&o, (uint64_t)ran);
    mp_put(&o, " "), mp_put(&o, why), mp_put(&o, "\nend\n");
    mp_flush(&o);
    close(o.fd);
    errno = saved;
}
