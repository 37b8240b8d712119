/* The loaded modules (executable and shared objects) and their code ranges, and the
 * capture of a call site's return addresses against them. */
#ifndef MEMPLACE_MODULES_H
#define MEMPLACE_MODULES_H

#include <stdint.h>
#include "memplace.h"

struct mp_module {
    uintptr_t base, lo, hi; /* load bias; executable range [lo, hi) */
    int skip;               /* libc, libstdc++, libgcc, ld.so, ourselves: not a call site */
    const char *path;       /* "" for the main program */
    char build_id[41];
};

/* A snapshot of the loaded modules. Snapshots are never freed (readers need no lock);
 * each keeps a link to the one it replaced, so every module ever seen stays known. */
struct mp_modules {
    unsigned long long adds, subs; /* the loader's counters when it was taken */
    uint32_t generation;
    int n;
    uintptr_t lo, hi; /* union of the executable ranges: quick rejection of data words */
    struct mp_module *modules;
    struct mp_modules *previous;
};

/* The current snapshot (taken on first use). */
struct mp_modules *mp_modules(void);
/* The current snapshot, retaken first if modules were loaded or unloaded since. */
struct mp_modules *mp_modules_fresh(void);
const struct mp_module *mp_module_of(const struct mp_modules *t, uintptr_t address);
/* Up to `depth` return addresses of the call that returns to `ra`, skipping allocator
 * and runtime-library frames: `ra` itself unless it is in one, then a bounded scan of the
 * stack from `sp` up to `stack_top` (0: no scan). Returns how many were found; `slots`
 * (if not NULL) gets the stack word each came from (NULL for `ra` itself). */
int mp_capture(const struct mp_modules *t, uintptr_t ra, const void *sp, uintptr_t stack_top,
               int depth, uintptr_t *out, const uintptr_t **slots);

#endif
