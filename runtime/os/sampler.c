/* Access sampling without hardware counters, root or perf: a POSIX timer on the
 * process's CPU time (timer_create(CLOCK_PROCESS_CPUTIME_ID)) raises a real-time signal
 * the program does not use; since Linux 6.3 the kernel delivers it to the thread whose
 * CPU time made it expire, so every running thread is sampled, also threads that never
 * allocate, without arming anything per thread. The handler credits the memory operands
 * of the straight-line code around the interrupted user IP whose address the interrupted
 * registers give (x86_64: util/x86_decode.c, found by decoding forward from a boundary the
 * unwind table knows, cached per IP; aarch64: util/aarch64_decode.c, from the pc to the
 * next branch with the registers followed through it), and hands each (address,
 * read/write, bytes, share of the sample) to the mode's hook, which finds the block. The kernel checks CPU timers
 * at its tick, so at most CONFIG_HZ samples per CPU-second arrive; expirations the tick
 * coalesced come as the signal's overrun count and weigh the sample (1 + overrun).
 *
 * Never changes the program: SA_RESTART (no EINTR), errno kept, the signal chosen among
 * those still at their default action, and when the program installs a handler for it
 * (entry/signals.c calls mp_sampler_yield) sampling stops and the profile says so. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/uio.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>
#include "internal.h"

extern int __sigaction(int, const struct sigaction *, struct sigaction *); /* glibc's own, not ours */

#define MAX_BLOCK 64   /* instructions of straight-line code credited per sample */
#define MAX_OPS 12     /* memory operands among them */

#if defined(__x86_64__)
#define IP_CACHE 4096
#define MAX_SCAN 65536 /* bytes decoded forward from a row start to reach a sampled IP */

/* What a sample at `ip` credits: the memory operands of the straight-line code around
 * it whose address the interrupted registers still give, and how many instructions that
 * code has (n_instr 0: not known). */
struct ip_entry {
    uintptr_t ip, check;
    uint16_t n_instr, n_ops, not_heap, clobbered;
    struct mp_x86_access ops[MAX_OPS];
};

static struct ip_entry ip_cache[IP_CACHE];
#endif
static mp_sampler_hook hook;
static timer_t timer;
static int signo, installed, state = MP_SAMPLER_OFF, rate;
static const char *reason = "";
static char reason_buf[96];
static struct mp_sampler_counts counts;

#if defined(__x86_64__) || defined(__aarch64__)
/* A sample of the timer, counted with the expirations it stands for (its weight); 0: not
 * ours, or sampling is off. Shared by each architecture's handler body below. */
static uint32_t sample_weight(const siginfo_t *si)
{
    if (si->si_code != SI_TIMER || __atomic_load_n(&state, __ATOMIC_RELAXED) != MP_SAMPLER_ON)
        return 0;
    uint32_t weight = 1 + (uint32_t)(si->si_overrun > 0 ? si->si_overrun : 0);
    __atomic_fetch_add(&counts.samples, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&counts.expirations, weight, __ATOMIC_RELAXED);
    return weight;
}

/* Count what the straight-line code at a sample held: `n_instr` instructions decoded,
 * `n_ops` memory operands to credit, others left out. Returns the sample's number and
 * each operand's share of it, or 0 when it credits nothing. */
static uint64_t tally(uint32_t weight, int n_instr, uint64_t not_heap, uint64_t clobbered, int n_ops,
                      uint32_t *share)
{
    if (!n_instr) {
        __atomic_fetch_add(&counts.not_decoded, 1, __ATOMIC_RELAXED);
        return 0;
    }
    if (not_heap)
        __atomic_fetch_add(&counts.not_heap, not_heap, __ATOMIC_RELAXED);
    if (clobbered)
        __atomic_fetch_add(&counts.clobbered, clobbered, __ATOMIC_RELAXED);
    if (!n_ops) {
        __atomic_fetch_add(&counts.no_memory, 1, __ATOMIC_RELAXED);
        return 0;
    }
    __atomic_fetch_add(&counts.memory, (uint64_t)n_ops, __ATOMIC_RELAXED);
    /* each of the n instructions ran once per pass: a pass is 1/n of the sample */
    *share = weight * MP_SAMPLE_UNIT / (uint32_t)n_instr;
    if (*share == 0)
        *share = 1;
    return __atomic_add_fetch(&counts.credited, 1, __ATOMIC_RELAXED);
}
#endif

#if defined(__x86_64__)
static uint64_t check_of(const struct ip_entry *e)
{
    const unsigned char *p = (const unsigned char *)&e->n_instr;
    size_t n = (size_t)((const unsigned char *)&e->ops[e->n_ops < MAX_OPS ? e->n_ops : MAX_OPS] - p);
    uint64_t x = e->ip ^ 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++)
        x = (x ^ p[i]) * 0x100000001b3ull;
    return x;
}

static void decode_at(uintptr_t ip, struct mp_x86_access *a)
{
    unsigned char code[16];
    size_t page = mp_page_size(), room = page - (ip & (page - 1));
    if (room >= 15) {
        memcpy(code, (const void *)ip, 15); /* the page being executed is mapped */
    } else { /* the instruction may cross into a page that is not mapped */
        struct iovec local = {code, 15}, remote = {(void *)ip, 15};
        ssize_t got = process_vm_readv(getpid(), &local, 1, &remote, 1, 0);
        if (got < (ssize_t)room) {
            memcpy(code, (const void *)ip, room);
            got = (ssize_t)room;
        }
        if (got < 15)
            memset(code + got, 0, (size_t)(15 - got));
    }
    mp_x86_decode(code, 15, a);
}

static uint16_t address_registers(const struct mp_x86_access *a)
{
    return (uint16_t)((a->base < 16 ? 1u << a->base : 0) | (a->index < 16 ? 1u << a->index : 0));
}

/* Take operand `a` into the entry if its address is a heap candidate and `written` (the
 * registers changed between it and the IP) leaves its address registers intact. */
static void credit(struct ip_entry *e, const struct mp_x86_access *a, uint16_t written)
{
    if (!a->memory || !a->access || a->string)
        return;
    if (a->segment || a->vsib || a->base == MP_REG_RIP || (a->base == 4 && a->index == MP_REG_NONE) ||
        (a->base == MP_REG_NONE && a->index == MP_REG_NONE)) {
        e->not_heap++; /* thread-local, gathers, globals, the stack, absolute addresses */
        return;
    }
    if (address_registers(a) & written) {
        e->clobbered++; /* p = p->next: the address is gone */
        return;
    }
    if (e->n_ops < MAX_OPS)
        e->ops[e->n_ops++] = *a;
}

/* A decoded instruction and where the next one starts. */
struct insn {
    uintptr_t pc, end;
    struct mp_x86_access a;
};

static uintptr_t target_of(const struct insn *x) { return x->end + (intptr_t)x->a.target; }

/* Does the branch `x` end a region inside the loop [head, latch_end)? Every branch does,
 * except a conditional one leaving the loop (an exit, or a jump to cold code such as
 * sqrt's errno path): it is taken at most once per loop, so the code on both sides of it
 * runs as often. Without a loop (head 0) every branch does. */
static int cuts(const struct insn *x, uintptr_t head, uintptr_t latch_end)
{
    if (!x->a.branch)
        return 0;
    if (!head || x->a.branch != MP_BRANCH_COND)
        return 1;
    uintptr_t t = target_of(x);
    return t >= head && t < latch_end;
}

/* The code around `ip` that ran as often as it: a timer interrupt is taken once the
 * instruction holding up retirement has retired, so `ip` is mostly just after the one
 * that took the time, and each instruction of that code ran once per pass. x86 cannot be
 * decoded backwards: decode forwards from the start of ip's unwind-table row (a function
 * start or frame change: an instruction boundary), then on from ip. When the code from ip
 * reaches a backward branch to at or before ip (a loop's back edge, before any jump, call
 * or return), the region is the loop body around ip: its conditional branches out of the
 * loop do not cut it (a loop whose body a never-taken check splits in two credited the
 * half that took less time far too little: the vector spmv's normalisation reads, docs/
 * benchmarks.md); otherwise it is the straight-line code between branches, as before.
 * Branch targets seen cut it too (another path enters there). Operands before ip count if
 * no instruction from them to ip rewrote their address registers; after ip, if none
 * before them did. */
static void block_at(uintptr_t ip, struct ip_entry *e)
{
    struct mp_x86_access at;
    decode_at(ip, &at);
    if (at.length && at.string) { /* rep movs ... interrupted between two steps */
        e->n_instr = 1;
        e->ops[e->n_ops++] = at;
        return;
    }
    const struct mp_modules *mods = mp_modules(); /* taken at start-up: a load */
    const struct mp_module *m = mods ? mp_module_of(mods, ip - 1) : NULL;
    if (!m || !m->unwind)
        return;
    uintptr_t start = mp_unwind_row_start(m->unwind, ip - 1 - m->base);
    if (start == UINTPTR_MAX || ip - (start + m->base) > MAX_SCAN)
        return;
    start += m->base;
    struct insn ring[MAX_BLOCK]; /* the last n instructions before ip, oldest at ring[head] */
    int head = 0, n = 0;
    uintptr_t entry = start; /* the latest branch target at or before ip seen */
    uintptr_t join = UINTPTR_MAX; /* the first branch target after ip seen */
    uintptr_t pc = start;
    while (pc < ip) {
        struct insn x;
        int len = mp_x86_decode((const unsigned char *)pc, ip - pc < 15 ? (int)(ip - pc) : 15, &x.a);
        if (len == 0)
            return;
        x.pc = pc, x.end = pc + (uintptr_t)len;
        if (n == MAX_BLOCK)
            head = (head + 1) % MAX_BLOCK, n--;
        ring[(head + n++) % MAX_BLOCK] = x;
        pc = x.end;
        if (x.a.branch && x.a.branch != MP_BRANCH_END) {
            uintptr_t t = target_of(&x);
            if (t <= ip && t > entry)
                entry = t;
            else if (t > ip && t < join)
                join = t;
        }
    }
    if (pc != ip)
        return; /* ip is not where the decoding lands: not an instruction boundary we know */
    /* after ip: on through conditional forward branches to a jump, call, return or
     * backward branch, within the module's code */
    struct insn after[MAX_BLOCK];
    int k = 0;
    uintptr_t loop = 0, latch_end = 0; /* the loop around ip: [loop, latch_end) */
    while (k < MAX_BLOCK && pc < m->hi) {
        struct insn *x = &after[k];
        int len = mp_x86_decode((const unsigned char *)pc, m->hi - pc < 15 ? (int)(m->hi - pc) : 15, &x->a);
        if (len == 0)
            break;
        x->pc = pc, x->end = pc + (uintptr_t)len;
        pc = x->end;
        k++;
        if (!x->a.branch)
            continue;
        if (x->a.branch == MP_BRANCH_END)
            break;
        uintptr_t t = target_of(x);
        if (t <= ip) {
            if (t > entry)
                entry = t; /* the loop's back edge */
            if (t <= x->pc)
                loop = t, latch_end = x->end;
            break;
        }
        if (t < join)
            join = t;
        if (x->a.branch == MP_BRANCH_JUMP || t <= x->pc)
            break;
    }
    /* the region: back from ip to an entry point or a branch that cuts it, on from ip to
     * a branch that cuts it (included) or a join point (not) */
    int first = n;
    while (first > 0) {
        const struct insn *x = &ring[(head + first - 1) % MAX_BLOCK];
        if (x->pc < entry || cuts(x, loop, latch_end))
            break;
        first--;
    }
    int last = 0;
    while (last < k && after[last].pc < join) {
        if (cuts(&after[last++], loop, latch_end))
            break;
    }
    uint16_t written = 0;
    for (int i = n - 1; i >= first; i--) {
        const struct mp_x86_access *a = &ring[(head + i) % MAX_BLOCK].a;
        written |= a->clobbers;
        credit(e, a, written);
    }
    written = 0;
    for (int i = 0; i < last; i++) {
        credit(e, &after[i].a, written);
        written |= after[i].a.clobbers;
    }
    e->n_instr = (uint16_t)(n - first + last);
}

/* Decoded once per IP: entries are written without a lock by any thread's handler; one
 * torn by a concurrent writer fails its check and is decoded again. */
static const struct ip_entry *decoded(uintptr_t ip, struct ip_entry *copy)
{
    struct ip_entry *e = &ip_cache[(ip ^ (ip >> 12)) & (IP_CACHE - 1)];
    if (e->ip == ip) {
        *copy = *e;
        if (copy->ip == ip && copy->n_ops <= MAX_OPS && copy->check == check_of(copy))
            return copy;
    }
    memset(copy, 0, sizeof *copy);
    copy->ip = ip;
    block_at(ip, copy);
    copy->check = check_of(copy);
    e->ip = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    memcpy((char *)e + sizeof e->ip, (char *)copy + sizeof copy->ip, sizeof *e - sizeof e->ip);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    e->ip = ip;
    return copy;
}

static const int gregs_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                 REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

/* Credit the sample of `weight` the kernel took at the state `uc` (errno is the caller's). */
static void credit_sample(uint32_t weight, const ucontext_t *uc)
{
    const greg_t *g = uc->uc_mcontext.gregs;
    uintptr_t ip = (uintptr_t)g[REG_RIP];
    size_t page = mp_page_size();
    /* delivered on the way out of a system call: time the kernel spent for the thread */
    if ((ip & (page - 1)) >= 2 && ((const unsigned char *)ip)[-2] == 0x0F &&
        ((const unsigned char *)ip)[-1] == 0x05) {
        __atomic_fetch_add(&counts.in_kernel, 1, __ATOMIC_RELAXED);
        return;
    }
    struct ip_entry copy;
    const struct ip_entry *e = decoded(ip, &copy);
    uint32_t share;
    uint64_t sample = tally(weight, e->n_instr, e->not_heap, e->clobbered, e->n_ops, &share);
    if (!sample)
        return;
    for (int i = 0; i < e->n_ops; i++) {
        const struct mp_x86_access *a = &e->ops[i];
        if (a->string) {
            uintptr_t rs = (uintptr_t)g[REG_RSI], rd = (uintptr_t)g[REG_RDI];
            if (a->addr32)
                rs = (uint32_t)rs, rd = (uint32_t)rd;
            int op = a->string & ~1;
            if (op == 0xA4 || op == 0xA6 || op == 0xAC) /* movs, cmps, lods read [rsi] */
                hook(rs, MP_ACCESS_READ, a->size, share, sample);
            if (op == 0xA4 || op == 0xAA) /* movs, stos write [rdi] */
                hook(rd, MP_ACCESS_WRITE, a->size, share, sample);
            if (op == 0xA6 || op == 0xAE) /* cmps, scas read [rdi] */
                hook(rd, MP_ACCESS_READ, a->size, share, sample);
            continue;
        }
        uintptr_t addr = (uintptr_t)a->disp;
        if (a->base != MP_REG_NONE)
            addr += (uintptr_t)g[gregs_of[a->base]];
        if (a->index != MP_REG_NONE)
            addr += (uintptr_t)g[gregs_of[a->index]] * a->scale;
        if (a->addr32)
            addr = (uint32_t)addr;
        hook(addr, a->access, a->size, share, sample);
    }
}
#elif defined(__aarch64__)
/* The code from the interrupted pc to the next branch, its registers followed forward
 * (util/aarch64_decode.c computes the integer instructions: the index a loop computes
 * before its load is known at the load), each load and store whose address the followed
 * registers give credited. Forward only: fixed-width code could be read backwards too,
 * but whether the instructions before pc ran on the way to it (pc may be a branch
 * target) is not known without the whole function; and under qemu-user every sample's
 * pc is the start of a translation block, so the code before it is another path's. */
static void credit_sample(uint32_t weight, const ucontext_t *uc)
{
    const mcontext_t *mc = &uc->uc_mcontext;
    uintptr_t pc = (uintptr_t)mc->pc;
    size_t page = mp_page_size();
    /* delivered on the way out of a system call (svc #imm just before pc): kernel time */
    if ((pc & 3) == 0 && (pc & (page - 1)) >= 4 && (*(const uint32_t *)(pc - 4) & 0xFFE0001Fu) == 0xD4000001u) {
        __atomic_fetch_add(&counts.in_kernel, 1, __ATOMIC_RELAXED);
        return;
    }
    struct mp_a64_regs r;
    for (int i = 0; i < 31; i++)
        r.x[i] = mc->regs[i];
    r.x[31] = mc->sp;
    r.pc = pc;
    r.known = 0xFFFFFFFFu;
    uintptr_t end = (pc | (page - 1)) + 1; /* the page being executed is mapped */
    const struct mp_modules *mods = mp_modules();
    const struct mp_module *m = mods ? mp_module_of(mods, pc) : NULL;
    if (m && m->hi > end)
        end = m->hi;
    struct { uint64_t addr; unsigned size; unsigned char access; } ops[MAX_OPS];
    int n_ops = 0, n_instr = 0;
    uint64_t not_heap = 0, clobbered = 0;
    while ((pc & 3) == 0 && n_instr < MAX_BLOCK && pc + 4 <= end) {
        uint32_t insn = *(const uint32_t *)pc;
        struct mp_a64_insn d;
        if (!mp_a64_decode(insn, &d))
            break;
        n_instr++;
        if (d.memory && d.access) {
            uint64_t a;
            if (d.base == MP_A64_PC || (d.base == MP_A64_SP && d.index == MP_A64_NONE))
                not_heap++; /* literal pools, the stack */
            else if (!mp_a64_address(&d, &r, &a))
                clobbered++; /* an address from a load before it: p = p->next */
            else if (n_ops < MAX_OPS)
                ops[n_ops].addr = a, ops[n_ops].size = d.size, ops[n_ops++].access = d.access;
        }
        if (d.branch)
            break;
        mp_a64_step(insn, &d, &r);
        pc += 4;
    }
    uint32_t share;
    uint64_t sample = tally(weight, n_instr, not_heap, clobbered, n_ops, &share);
    for (int i = 0; sample && i < n_ops; i++)
        hook((uintptr_t)ops[i].addr, ops[i].access, ops[i].size, share, sample);
}
#endif

#if defined(__x86_64__) || defined(__aarch64__)
/* The handler, timed: what sampling costs the thread besides the kernel's signal delivery. */
static void on_sample(int sig, siginfo_t *si, void *ucv)
{
    int saved = errno;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a); /* vDSO: no system call */
    uint32_t weight = sample_weight(si);
    if (weight)
        credit_sample(weight, ucv);
    clock_gettime(CLOCK_MONOTONIC, &b);
    errno = saved;
    __atomic_fetch_add(&counts.handler_ns, (uint64_t)((b.tv_sec - a.tv_sec) * 1000000000L + (b.tv_nsec - a.tv_nsec)),
                       __ATOMIC_RELAXED);
}
#define MP_SAMPLER_SUPPORTED 1
static void (*on_sample_handler(void))(int, siginfo_t *, void *) { return on_sample; }
#else
#define MP_SAMPLER_SUPPORTED 0
static void (*on_sample_handler(void))(int, siginfo_t *, void *) { return NULL; }
#endif

static int arm(const char **why)
{
    struct sigevent ev;
    memset(&ev, 0, sizeof ev);
    ev.sigev_notify = SIGEV_SIGNAL;
    ev.sigev_signo = signo;
    if (timer_create(CLOCK_PROCESS_CPUTIME_ID, &ev, &timer) != 0) {
        *why = "timer_create(CLOCK_PROCESS_CPUTIME_ID) failed";
        return -1;
    }
    long ns = 1000000000L / rate;
    struct itimerspec it = {{ns / 1000000000L, ns % 1000000000L}, {ns / 1000000000L, ns % 1000000000L}};
    if (timer_settime(timer, 0, &it, NULL) != 0) {
        timer_delete(timer);
        *why = "timer_settime failed";
        return -1;
    }
    return 0;
}

/* A forked child has no timers: arm its own (it counts on from the parent's figures). */
static void child_after_fork(void)
{
    const char *why;
    if (__atomic_load_n(&state, __ATOMIC_RELAXED) == MP_SAMPLER_ON && arm(&why) != 0) {
        reason = why;
        state = MP_SAMPLER_FAILED;
    }
}

/* Linux delivers a process CPU timer's signal to the running thread since 6.3; before,
 * to any thread (mostly the main one, often asleep), which would sample the wrong one. */
static int kernel_delivers_to_running_thread(void)
{
    char buf[128];
    int fd = open("/proc/sys/kernel/osrelease", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    int major = 0, minor = 0, i = 0;
    while (buf[i] >= '0' && buf[i] <= '9') major = major * 10 + (buf[i++] - '0');
    if (buf[i++] != '.')
        return 0;
    while (buf[i] >= '0' && buf[i] <= '9') minor = minor * 10 + (buf[i++] - '0');
    return major > 6 || (major == 6 && minor >= 3);
}

int mp_sampler_start(int samples_per_cpu_second, mp_sampler_hook h)
{
    const char *why = NULL;
    rate = samples_per_cpu_second;
    hook = h;
    if (rate <= 0) {
        state = MP_SAMPLER_OFF;
        reason = "sampling not asked for (rate 0)";
        return -1;
    }
    if (rate > 100000)
        rate = 100000;
    if (!MP_SAMPLER_SUPPORTED) {
        why = "no instruction decoder for this architecture (x86_64 and aarch64 only)";
    } else if (!kernel_delivers_to_running_thread()) {
        why = "Linux before 6.3 does not deliver CPU-timer signals to the running thread";
    } else {
        /* a real-time signal still at its default action, from the top down */
        for (int s = SIGRTMAX - 2; s >= SIGRTMIN + 4 && !signo; s--) {
            struct sigaction old;
            if (__sigaction(s, NULL, &old) == 0 && old.sa_handler == SIG_DFL && !(old.sa_flags & SA_SIGINFO))
                signo = s;
        }
        if (!signo)
            why = "no real-time signal left at its default action";
    }
#if MP_SAMPLER_SUPPORTED
    if (!why) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = on_sample;
        sa.sa_flags = SA_SIGINFO | SA_RESTART;
        sigfillset(&sa.sa_mask); /* one sample at a time per thread; never inside another handler's work */
        if (__sigaction(signo, &sa, NULL) != 0)
            why = "sigaction failed";
        else
            installed = 1;
    }
#endif
    if (!why) {
        state = MP_SAMPLER_ON; /* before arming: the first expiry may come at once */
        if (arm(&why) != 0) {
            struct sigaction dfl;
            memset(&dfl, 0, sizeof dfl);
            dfl.sa_handler = SIG_DFL;
            __sigaction(signo, &dfl, NULL);
            installed = 0;
        }
    }
    if (why) {
        state = MP_SAMPLER_FAILED;
        reason = why;
        return -1;
    }
    pthread_atfork(NULL, NULL, child_after_fork);
    return 0;
}

/* Sampling cannot start for a reason of the mode's (its tables): the profile says why. */
void mp_sampler_refuse(const char *why)
{
    state = MP_SAMPLER_FAILED;
    reason = why;
}

/* Stop for good: the timer is deleted (its pending signal with it). */
static void stop(int new_state, const char *why)
{
    int was = MP_SAMPLER_ON;
    if (!__atomic_compare_exchange_n(&state, &was, new_state, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    timer_delete(timer);
    reason = why;
}

/* At exit: stop; and if our handler is no longer the signal's (replaced by a raw system
 * call, which entry/signals.c does not see), say so: the samples stopped back then. */
void mp_sampler_finish(void)
{
    struct sigaction now;
    if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == MP_SAMPLER_ON && installed &&
        __sigaction(signo, NULL, &now) == 0 && now.sa_sigaction != on_sample_handler()) {
        char *p = reason_buf;
        const char *t = "the action for signal ";
        size_t n = strlen(t);
        memcpy(p, t, n);
        n += mp_fmt_u64(p + n, (uint64_t)signo);
        const char *u = " was replaced without sigaction or signal (a raw system call)";
        memcpy(p + n, u, strlen(u) + 1);
        installed = 0;
        stop(MP_SAMPLER_STOPPED, reason_buf);
        return;
    }
    stop(MP_SAMPLER_FINISHED, "");
}

void mp_sampler_resume(void)
{
    int was = MP_SAMPLER_FINISHED;
    const char *why;
    if (installed && __atomic_compare_exchange_n(&state, &was, MP_SAMPLER_ON, 0, __ATOMIC_ACQ_REL,
                                                 __ATOMIC_ACQUIRE) && arm(&why) != 0) {
        reason = why;
        state = MP_SAMPLER_FAILED;
    }
}

int mp_sampler_signal(void) { return installed ? signo : 0; }

int mp_sampler_yield(int sig)
{
    if (!installed || sig != signo)
        return 0;
    installed = 0; /* the program's handler replaces ours */
    if (__atomic_load_n(&state, __ATOMIC_ACQUIRE) == MP_SAMPLER_ON) {
        char *p = reason_buf;
        const char *t = "the program set its own action for signal ";
        size_t n = strlen(t);
        memcpy(p, t, n);
        n += mp_fmt_u64(p + n, (uint64_t)sig);
        p[n] = 0;
        stop(MP_SAMPLER_STOPPED, reason_buf);
    }
    return 1;
}

int mp_sampler_state(const char **why, int *sig, int *samples_per_cpu_second)
{
    *why = reason;
    *sig = signo;
    *samples_per_cpu_second = rate;
    return state;
}

const struct mp_sampler_counts *mp_sampler_counts(void) { return &counts; }

int mp_sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    return __sigaction(sig, act, old);
}
