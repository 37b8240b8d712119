/* Access sampling without hardware counters, root or perf: a POSIX timer on the
 * process's CPU time (timer_create(CLOCK_PROCESS_CPUTIME_ID)) raises a real-time signal
 * the program does not use; since Linux 6.3 the kernel delivers it to the thread whose
 * CPU time made it expire, so every running thread is sampled, also threads that never
 * allocate, without arming anything per thread. The handler decodes the instruction
 * that retired last before the interrupted user IP (util/x86_decode.c, cached per IP;
 * found by decoding forward from a boundary the unwind table knows), computes the data address
 * from the interrupted registers and hands (address, read/write, bytes, weight) to the
 * mode's hook, which finds the block. The kernel checks CPU timers at its tick, so at most
 * CONFIG_HZ samples per CPU-second arrive; expirations the tick coalesced come as the
 * signal's overrun count and weigh the sample (weight = 1 + overrun).
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

#define IP_CACHE 8192
#define MAX_SCAN 65536 /* bytes decoded forward from a row start to find an instruction */

/* A sampled IP's instruction and the one before it (length 0: not known). */
struct ip_entry { uintptr_t ip, check; struct mp_x86_access at, before; };

static struct ip_entry ip_cache[IP_CACHE];
static mp_sampler_hook hook;
static timer_t timer;
static int signo, installed, state = MP_SAMPLER_OFF, rate;
static const char *reason = "";
static char reason_buf[96];
static struct mp_sampler_counts counts;

static uint64_t check_of(uintptr_t ip, const struct ip_entry *e)
{
    uint64_t x = ip, w[(2 * sizeof(struct mp_x86_access)) / 8];
    memcpy(w, &e->at, sizeof w);
    for (size_t i = 0; i < sizeof w / 8; i++)
        x = (x ^ w[i]) * 0x9e3779b97f4a7c15ull;
    return x ^ (x >> 29);
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

/* The instruction that ends at ip. x86 cannot be decoded backwards, so decode forwards from
 * the start of ip's unwind-table row (a known instruction boundary: where a function or a
 * frame change starts) and keep the one that ends exactly at ip. */
static void decode_before(uintptr_t ip, struct mp_x86_access *a)
{
    memset(a, 0, sizeof *a);
    const struct mp_modules *mods = mp_modules(); /* taken at start-up: a load */
    const struct mp_module *m = mods ? mp_module_of(mods, ip - 1) : NULL;
    if (!m || !m->unwind)
        return;
    uintptr_t start = mp_unwind_row_start(m->unwind, ip - 1 - m->base);
    if (start == UINTPTR_MAX || ip - (start + m->base) > MAX_SCAN)
        return;
    for (uintptr_t pc = start + m->base; pc < ip;) {
        struct mp_x86_access x;
        int n = mp_x86_decode((const unsigned char *)pc, ip - pc < 15 ? (int)(ip - pc) : 15, &x);
        if (n == 0)
            return;
        pc += (uintptr_t)n;
        if (pc == ip)
            *a = x;
    }
}

/* Both, decoded once per IP: entries are written without a lock by any thread's handler;
 * one torn by a concurrent writer fails its check and is decoded again. */
static const struct ip_entry *decoded(uintptr_t ip, struct ip_entry *copy)
{
    struct ip_entry *e = &ip_cache[(ip ^ (ip >> 13)) & (IP_CACHE - 1)];
    if (e->ip == ip) {
        *copy = *e;
        if (copy->ip == ip && copy->check == check_of(ip, copy))
            return copy;
    }
    decode_at(ip, &copy->at);
    decode_before(ip, &copy->before);
    copy->ip = ip;
    copy->check = check_of(ip, copy);
    e->ip = 0;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    e->at = copy->at;
    e->before = copy->before;
    e->check = copy->check;
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    e->ip = ip;
    return copy;
}

#if defined(__x86_64__)
static const int gregs_of[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
                                 REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};

static void on_sample(int sig, siginfo_t *si, void *ucv)
{
    int saved = errno;
    if (si->si_code != SI_TIMER || __atomic_load_n(&state, __ATOMIC_RELAXED) != MP_SAMPLER_ON) {
        errno = saved;
        return;
    }
    uint32_t weight = 1 + (uint32_t)(si->si_overrun > 0 ? si->si_overrun : 0);
    __atomic_fetch_add(&counts.samples, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&counts.expirations, weight, __ATOMIC_RELAXED);
    const greg_t *g = ((ucontext_t *)ucv)->uc_mcontext.gregs;
    uintptr_t ip = (uintptr_t)g[REG_RIP];
    size_t page = mp_page_size();
    /* delivered on the way out of a system call: time the kernel spent for the thread */
    if ((ip & (page - 1)) >= 2 && ((const unsigned char *)ip)[-2] == 0x0F &&
        ((const unsigned char *)ip)[-1] == 0x05) {
        __atomic_fetch_add(&counts.in_kernel, 1, __ATOMIC_RELAXED);
        errno = saved;
        return;
    }
    /* The interrupt is taken once the instruction holding up retirement (a load waiting
     * for memory) has retired, so the IP is mostly the one after it: the sample belongs to
     * the instruction before the IP, with the registers as it left them. A string
     * instruction at the IP is the exception: interrupted between two of its steps. */
    struct ip_entry copy;
    const struct ip_entry *e = decoded(ip, &copy);
    struct mp_x86_access a = e->at.string && e->at.length ? e->at : e->before;
    uintptr_t end = a.string ? ip + a.length : ip;
    if (!a.length) {
        __atomic_fetch_add(&counts.not_decoded, 1, __ATOMIC_RELAXED);
    } else if (a.string) {
        uintptr_t si_ = (uintptr_t)g[REG_RSI], di = (uintptr_t)g[REG_RDI];
        if (a.addr32)
            si_ = (uint32_t)si_, di = (uint32_t)di;
        int op = a.string & ~1;
        __atomic_fetch_add(&counts.memory, 1, __ATOMIC_RELAXED);
        if (op == 0xA4 || op == 0xA6 || op == 0xAC) /* movs, cmps, lods read [rsi] */
            hook(si_, MP_ACCESS_READ, a.size, weight);
        if (op == 0xA4 || op == 0xAA) /* movs, stos write [rdi] */
            hook(di, MP_ACCESS_WRITE, a.size, weight);
        if (op == 0xA6 || op == 0xAE) /* cmps, scas read [rdi] */
            hook(di, MP_ACCESS_READ, a.size, weight);
    } else if (!a.memory || !a.access) {
        __atomic_fetch_add(&counts.no_memory, 1, __ATOMIC_RELAXED);
    } else if (a.segment || a.vsib) { /* thread-local data; gathers and scatters */
        __atomic_fetch_add(&counts.memory, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&counts.not_heap, 1, __ATOMIC_RELAXED);
    } else if ((a.base != MP_REG_NONE && a.base < 16 && (a.clobbers >> a.base) & 1) ||
               (a.index != MP_REG_NONE && (a.clobbers >> a.index) & 1)) {
        /* it overwrote a register of its own address (p = p->next): address lost */
        __atomic_fetch_add(&counts.memory, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&counts.clobbered, 1, __ATOMIC_RELAXED);
    } else if (a.base == 4 && a.index == MP_REG_NONE) { /* the stack */
        __atomic_fetch_add(&counts.memory, 1, __ATOMIC_RELAXED);
        __atomic_fetch_add(&counts.not_heap, 1, __ATOMIC_RELAXED);
    } else {
        uintptr_t addr = (uintptr_t)a.disp;
        if (a.base == MP_REG_RIP)
            addr += end;
        else if (a.base != MP_REG_NONE)
            addr += (uintptr_t)g[gregs_of[a.base]];
        if (a.index != MP_REG_NONE)
            addr += (uintptr_t)g[gregs_of[a.index]] * a.scale;
        if (a.addr32)
            addr = (uint32_t)addr;
        __atomic_fetch_add(&counts.memory, 1, __ATOMIC_RELAXED);
        hook(addr, a.access, a.size, weight);
    }
    errno = saved;
}
#define MP_SAMPLER_SUPPORTED 1
#else
#define MP_SAMPLER_SUPPORTED 0
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
        why = "no instruction decoder for this architecture (x86_64 only)";
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

/* Stop for good: the timer is deleted (its pending signal with it). */
static void stop(int new_state, const char *why)
{
    int was = MP_SAMPLER_ON;
    if (!__atomic_compare_exchange_n(&state, &was, new_state, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return;
    timer_delete(timer);
    reason = why;
}

void mp_sampler_finish(void) { stop(MP_SAMPLER_FINISHED, ""); }

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
