/* Unwind tables and one-frame steps (see internal.h). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <ucontext.h>
#include <unistd.h>
#include "internal.h"

#define HEADER_SIZE 32
#define VERSION 1
#if defined(__x86_64__)
#define MACHINE 62
#elif defined(__aarch64__)
#define MACHINE 183
#else
#define MACHINE 0
#endif

static char dir[512];
static size_t dir_len;

void mp_unwind_init(const char *d)
{
    size_t n = d ? strlen(d) : 0;
    if (n == 0 || n + 64 > sizeof dir)
        return;
    memcpy(dir, d, n);
    dir[n] = '/';
    dir_len = n + 1;
}

static uint32_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }

const struct mp_unwind_table *mp_unwind_load(const char *build_id)
{
    size_t n = build_id ? strlen(build_id) : 0;
    if (!dir_len || n == 0 || n > 40 || !MP_UNWIND_SUPPORTED)
        return NULL;
    char path[sizeof dir];
    memcpy(path, dir, dir_len);
    memcpy(path + dir_len, build_id, n + 1);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    struct stat st;
    void *map = MAP_FAILED;
    if (fstat(fd, &st) == 0 && st.st_size >= HEADER_SIZE && st.st_size < (1ll << 31))
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return NULL;
    const unsigned char *d = map;
    uint64_t size = (uint64_t)st.st_size;
    uint32_t nrows = rd32(d + 8), nrules = rd32(d + 12);
    uint32_t pcs = rd32(d + 16), index = rd32(d + 20), rules = rd32(d + 24);
    /* every array inside the file and aligned; every row's rule inside the rules */
    int ok = memcmp(d, "MPUW", 4) == 0 && (d[4] | d[5] << 8) == VERSION &&
             (d[6] | d[7] << 8) == MACHINE && rd32(d + 28) == size && pcs % 4 == 0 &&
             index % 4 == 0 && rules % 4 == 0 && pcs + 4ull * nrows <= size &&
             index + 4ull * nrows <= size && rules + 12ull * nrules <= size;
    struct mp_unwind_table *t = ok ? mp_internal_alloc(sizeof *t) : NULL;
    if (t) {
        t->nrows = nrows, t->nrules = nrules;
        t->pcs = (const uint32_t *)(d + pcs);
        t->index = (const uint32_t *)(d + index);
        t->rules = (const struct mp_unwind_rule *)(d + rules);
        for (uint32_t i = 0; i < nrows && ok; i++)
            ok = t->index[i] < nrules && (i == 0 || t->pcs[i - 1] < t->pcs[i]);
    }
    if (!ok) {
        munmap(map, size);
        return NULL; /* t, if any, stays in the internal area: never reused, harmless */
    }
    return t;
}

/* The index of the last row whose start is <= rel, or -1 outside the table. */
static int64_t row_of(const struct mp_unwind_table *t, uintptr_t rel)
{
    if (rel > UINT32_MAX || t->nrows == 0 || rel < t->pcs[0])
        return -1;
    uint32_t lo = 0, hi = t->nrows;
    while (hi - lo > 1) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->pcs[mid] <= rel)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

const struct mp_unwind_rule *mp_unwind_find(const struct mp_unwind_table *t, uintptr_t rel)
{
    int64_t row = row_of(t, rel);
    return row < 0 ? NULL : &t->rules[t->index[row]];
}

uintptr_t mp_unwind_row_start(const struct mp_unwind_table *t, uintptr_t rel)
{
    int64_t row = row_of(t, rel);
    return row < 0 ? UINTPTR_MAX : t->pcs[row];
}

static int read_traced(uintptr_t a, uintptr_t lo, uintptr_t hi, uintptr_t *out,
                       struct mp_unwind_trace *t)
{
    if (a < lo || a > hi - sizeof(uintptr_t) || a % sizeof(uintptr_t))
        return 0;
    *out = *(const uintptr_t *)a;
    if (t && t->n >= 0) {
        if (t->n == MP_UNWIND_TRACE) {
            t->n = -1;
        } else {
            t->addr[t->n] = (const uintptr_t *)a;
            t->value[t->n++] = *out;
        }
    }
    return 1;
}
#define read_word(a, lo, hi, out) read_traced(a, lo, hi, out, trace)

/* The word just read is a saved frame pointer. */
static void trace_fp_word(struct mp_unwind_trace *t)
{
    if (t && t->n > 0)
        t->fp_words |= 1u << (t->n - 1);
}

int mp_unwind_step(const struct mp_unwind_rule *rule, struct mp_unwind_regs *r,
                   uintptr_t lo, uintptr_t hi, struct mp_unwind_trace *trace)
{
    uintptr_t cfa, ra, fp = r->fp;
    switch (rule->cfa_base) {
    case MP_CFA_OUTERMOST:
        return MP_STEP_END;
    case MP_CFA_SP:
        cfa = r->sp + (intptr_t)rule->cfa_off;
        break;
    case MP_CFA_FP:
        if (!r->fp)
            return MP_STEP_UNKNOWN; /* a frame pointer lost further in */
        cfa = r->fp + (intptr_t)rule->cfa_off;
        break;
#if defined(__x86_64__)
    case MP_CFA_SIGNAL: { /* __restore_rt: the kernel's ucontext is at sp */
        const uintptr_t g = r->sp + offsetof(ucontext_t, uc_mcontext.gregs);
        uintptr_t pc, sp;
        if (!read_word(g + REG_RIP * 8, lo, hi, &pc) || !read_word(g + REG_RSP * 8, lo, hi, &sp) ||
            !read_word(g + REG_RBP * 8, lo, hi, &fp))
            return MP_STEP_UNKNOWN;
        trace_fp_word(trace);
        if (sp <= r->sp || sp >= hi) /* another stack (sigaltstack): not ours to read */
            return MP_STEP_UNKNOWN;
        r->pc = pc, r->sp = sp, r->fp = fp, r->exact = 1;
        return MP_STEP_OK;
    }
#endif
    default:
        return MP_STEP_UNKNOWN;
    }
    if (cfa <= r->sp || rule->ra_rule != MP_RA_SAVED ||
        !read_word(cfa + (intptr_t)rule->ra_off, lo, hi, &ra))
        return MP_STEP_UNKNOWN; /* frames only move up the stack; anything else is wrong */
    if (rule->fp_rule == MP_FP_SAVED) {
        if (!read_word(cfa + (intptr_t)rule->fp_off, lo, hi, &fp))
            return MP_STEP_UNKNOWN;
        trace_fp_word(trace);
    }
    if (rule->fp_rule == MP_FP_LOST)
        fp = 0;
    if (ra == 0)
        return MP_STEP_END;
    r->pc = ra, r->sp = cfa, r->fp = fp, r->exact = 0;
    return MP_STEP_OK;
}
