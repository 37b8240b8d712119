/* Memory for the runtime's own bookkeeping (policy tables, module tables, per-thread
 * caches). It never comes from malloc: that would recurse into ourselves or disturb the
 * program's heap. Bump allocation over mmap'd chunks; nothing is returned to the OS. */
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include "internal.h"

#define CHUNK (1u << 20)

static unsigned char *chunk;
static size_t chunk_left;
static int lock;

void *mp_internal_alloc(size_t size)
{
    size = (size + 63) & ~(size_t)63;
    if (size > CHUNK / 4) {
        void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        return p == MAP_FAILED ? NULL : p;
    }
    mp_lock(&lock);
    if (size > chunk_left) {
        void *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED) {
            mp_unlock(&lock);
            return NULL;
        }
        chunk = p;
        chunk_left = CHUNK;
    }
    void *out = chunk;
    chunk += size;
    chunk_left -= size;
    mp_unlock(&lock);
    return out; /* fresh anonymous memory: zeroed */
}

void mp_internal_fork_prepare(void) { mp_lock(&lock); }
void mp_internal_fork_release(void) { mp_unlock(&lock); }
