/* Relative walks (types.h): walks kept by their words' offsets from sp, so that a call
 * chain met again at another depth of the stack takes a set lookup instead of a walk.
 * Only the thread's own calls, inside placement (busy), read or write them. They hold no
 * address of the thread's stack (offsets, return addresses, the rules' generation), so a
 * thread that reuses the block may use them as they are. */
#include "internal.h"

static uintptr_t mix(uintptr_t a, uintptr_t b)
{
    return (a ^ (b * 0xff51afd7ed558ccdull)) * 0x9e3779b97f4a7c15ull;
}

static struct mp_rel_offset *offset_set(struct mp_rel_offset (*table)[MP_WALK_WAYS],
                                        uintptr_t ra, uintptr_t first)
{
    return table[mix(ra, first) >> 56 & (MP_REL_OFFSET_SETS - 1)];
}

/* The offset from sp kept for (ra, first), if any. */
static int offset_of(struct mp_rel_offset (*table)[MP_WALK_WAYS], uintptr_t ra,
                     uintptr_t first, uint32_t *off)
{
    const struct mp_rel_offset *set = offset_set(table, ra, first);
    for (int i = 0; i < MP_WALK_WAYS; i++)
        if (set[i].ra == ra && set[i].first == first) {
            *off = set[i].off;
            return 1;
        }
    return 0;
}

/* Keep (ra, first) -> off: in place if known, else first in its set, the oldest out. */
static void keep_offset(struct mp_rel_offset (*table)[MP_WALK_WAYS], uintptr_t ra,
                        uintptr_t first, uint32_t off)
{
    struct mp_rel_offset *set = offset_set(table, ra, first);
    int i = 0;
    while (i < MP_WALK_WAYS - 1 && !(set[i].ra == ra && set[i].first == first))
        i++;
    for (; i > 0; i--)
        set[i] = set[i - 1];
    set[0] = (struct mp_rel_offset){ra, first, off};
}

static struct mp_rel_walk *rel_set(struct mp_thread *self, uintptr_t ra, uintptr_t first,
                                   uintptr_t second)
{
    return self->rel_walks[mix(mix(ra, first), second) >> (64 - MP_REL_SET_BITS)];
}

/* The word at sp + off, when it lies below the stack's top. */
static int read_at(uintptr_t sp, uintptr_t top, uint32_t off, uintptr_t *value)
{
    if ((uintptr_t)off + sizeof(uintptr_t) > top - sp)
        return 0;
    *value = *(const uintptr_t *)(sp + off);
    return 1;
}

void mp_rel_walks_remember(struct mp_thread *self, const struct mp_walk_entry *w,
                           uint32_t fp_values)
{
    if (w->n < 1 || w->n > MP_WALK_WORDS)
        return;
    uintptr_t sp = w->sp;
    struct mp_rel_walk r = {.fp_off = (intptr_t)(w->fp - sp), .generation = w->generation,
                            .device = w->device, .rule = w->rule, .fixed = w->fixed,
                            .n = w->n, .fp_used = w->fp_mask != 0,
                            .fp_values = (uint8_t)fp_values};
    int key[2] = {-1, -1}; /* the first two return addresses: saved frame pointers are
                              alike from many callers */
    for (int i = 0, k = 0; i < w->n; i++) {
        uintptr_t off = (uintptr_t)w->word[i].addr - sp;
        if (off >= MP_REL_NONE - sizeof(uintptr_t))
            return;
        int fp_value = fp_values >> i & 1;
        r.off[i] = (uint32_t)off;
        if (off + sizeof(uintptr_t) > r.end)
            r.end = (uint32_t)(off + sizeof(uintptr_t));
        r.value[i] = w->word[i].value - (fp_value ? sp : 0);
        if (!fp_value && k < 2)
            key[k++] = i;
    }
    if (key[0] < 0)
        return;
    uintptr_t first = r.value[key[0]], second = key[1] < 0 ? 0 : r.value[key[1]];
    keep_offset(self->rel_firsts, w->ra, 0, r.off[key[0]]);
    keep_offset(self->rel_seconds, w->ra, first, key[1] < 0 ? MP_REL_NONE : r.off[key[1]]);
    struct mp_rel_walk *set = rel_set(self, w->ra, first, second);
    for (int i = MP_REL_WAYS - 1; i > 0; i--)
        set[i] = set[i - 1];
    r.ra = w->ra;
    set[0] = r;
}

/* Do r's words hold at sp (and fp), every one below the stack's top? */
static int holds(const struct mp_rel_walk *r, uintptr_t sp, uintptr_t fp, uintptr_t top)
{
    if (r->end > top - sp)
        return 0;
    if (r->fp_used && (intptr_t)(fp - sp) != r->fp_off)
        return 0;
    for (int i = 0; i < r->n; i++)
        if (*(const uintptr_t *)(sp + r->off[i]) - (r->fp_values >> i & 1 ? sp : 0) !=
            r->value[i])
            return 0;
    return 1;
}

int mp_rel_walks_find(struct mp_thread *self, uintptr_t ra, uintptr_t sp, uintptr_t fp,
                      uint32_t generation, struct mp_walk_entry *out)
{
    uintptr_t top = mp_walk_top(self, sp), first, second = 0;
    uint32_t off;
    if (!top || !offset_of(self->rel_firsts, ra, 0, &off) || !read_at(sp, top, off, &first) ||
        !offset_of(self->rel_seconds, ra, first, &off) ||
        (off != MP_REL_NONE && !read_at(sp, top, off, &second)))
        return 0;
    const struct mp_rel_walk *set = rel_set(self, ra, first, second);
    for (int i = 0; i < MP_REL_WAYS; i++) {
        const struct mp_rel_walk *r = &set[i];
        if (r->ra != ra || r->generation != generation || !holds(r, sp, fp, top))
            continue;
        uintptr_t fp_mask = r->fp_used ? ~(uintptr_t)0 : 0;
        *out = (struct mp_walk_entry){.ra = ra, .sp = sp, .fp = fp & fp_mask,
                                      .fp_mask = fp_mask, .generation = generation,
                                      .device = r->device, .rule = r->rule, .fixed = r->fixed,
                                      .n = r->n};
        for (int k = 0; k < r->n; k++)
            out->word[k] = (struct mp_walk_word){
                (const uintptr_t *)(sp + r->off[k]),
                r->value[k] + (r->fp_values >> k & 1 ? sp : 0)};
        return 1;
    }
    return 0;
}
