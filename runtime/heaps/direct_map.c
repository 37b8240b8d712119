/* Direct blocks: mappings of their own for blocks aligned above what mimalloc's arenas
 * serve (64 KiB), backed and bound like an arena, in the device's special part after
 * the growth areas. First fit by offset, under the device's lock. */
#include <string.h>
#include "internal.h"

void *mp_direct_map(struct mp_device_heap *h, size_t size, size_t align)
{
    uint64_t page = mp_page_size(), end = h->special + h->special_size;
    uint64_t length = (size + page - 1) & ~(page - 1);
    uint64_t first = h->special + (uint64_t)MP_MAX_GROWTH * MP_GROWTH_AREA;
    if (length == 0 || first >= end || length > end - first)
        return NULL;
    void *p = NULL;
    mp_lock(&h->lock);
    if (h->ndirect < MP_MAX_DIRECT) {
        uint64_t at = first; /* offsets within the slot */
        int i = 0;
        for (;; i++) {
            uint64_t start = (((uint64_t)(uintptr_t)h->slot + at + align - 1) & ~(uint64_t)(align - 1)) -
                             (uint64_t)(uintptr_t)h->slot;
            uint64_t limit = i < h->ndirect ? h->direct[i].offset : end;
            if (start + length <= limit) {
                at = start;
                break;
            }
            if (i == h->ndirect) {
                at = 0;
                break;
            }
            at = h->direct[i].offset + h->direct[i].length;
        }
        if (at && mp_os_back_device(h->spec, h->slot + at, length) == 0) {
            memmove(&h->direct[i + 1], &h->direct[i], (size_t)(h->ndirect - i) * sizeof h->direct[0]);
            h->direct[i] = (struct mp_direct){at, length};
            h->ndirect++;
            p = h->slot + at;
        }
    }
    mp_unlock(&h->lock);
    return p;
}

uint64_t mp_direct_length(struct mp_device_heap *h, const void *p, int forget)
{
    uint64_t offset = mp_offset_in_slot(h, p), length = 0;
    mp_lock(&h->lock);
    for (int i = 0; i < h->ndirect; i++)
        if (h->direct[i].offset == offset) {
            length = h->direct[i].length;
            if (forget) {
                memmove(&h->direct[i], &h->direct[i + 1], (size_t)(h->ndirect - i - 1) * sizeof h->direct[0]);
                h->ndirect--;
            }
            break;
        }
    mp_unlock(&h->lock);
    return length;
}
