/* A thread's cache of freed small blocks, per device (the first MP_TCACHE_DEVICES) and
 * size class; push and pop are inline (internal.h): they are on the allocation path. */
#include <mimalloc.h>
#include "internal.h"

/* A thread ends: its cached blocks go back to mimalloc. */
void mp_block_cache_drain(struct mp_thread *self)
{
    for (int d = 0; d < MP_TCACHE_DEVICES; d++)
        for (int b = 0; b < MP_TCACHE_BINS; b++) {
            struct mp_tcache_bin *bin = &self->tcache[d][b];
            while (bin->head) {
                void *p = bin->head;
                bin->head = *(void **)p;
                mi_free(p);
            }
            bin->count = 0;
        }
}
