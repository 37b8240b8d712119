/* Reads the compiled policy Python wrote (docs/policy.md). Every count, offset and
 * string is checked before use: a malformed, truncated or version-mismatched file is
 * refused with a one-line reason and the runtime stays transparent. */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "internal.h"

#define HEADER_SIZE sizeof(struct mp_policy_header)
#define DEVICE_SIZE sizeof(struct mp_policy_device)
#define MODULE_SIZE sizeof(struct mp_policy_module)
#define RULE_SIZE sizeof(struct mp_policy_rule)

static const char MAGIC[8] = MP_POLICY_MAGIC;

struct reader {
    const unsigned char *data;
    uint64_t size;
    uint32_t strtab_off, strtab_size;
};

/* Names and paths are UTF-8, as Python wrote them. */
/* Well-formed UTF-8 as Python's decoder (and so decode()) sees it: no overlong forms, no
 * surrogates (U+D800-DFFF), nothing above U+10FFFF. The second byte's range depends on
 * the first; later bytes are plain continuation bytes. */
static int utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        unsigned c = *p++, n, lo = 0x80, hi = 0xBF;
        if (c < 0x80)
            continue;
        if (c >= 0xC2 && c <= 0xDF)
            n = 1;
        else if (c >= 0xE0 && c <= 0xEF)
            n = 2, lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        else if (c >= 0xF0 && c <= 0xF4)
            n = 3, lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        else
            return 0;
        if (*p < lo || *p > hi)
            return 0;
        for (p++, n--; n > 0; n--, p++)
            if ((*p & 0xC0) != 0x80)
                return 0;
    }
    return 1;
}

/* A NUL-terminated string inside the string table, or NULL when `off` is bad. */
static const char *string_at(const struct reader *r, uint32_t off)
{
    if (off >= r->strtab_size)
        return NULL;
    const char *s = (const char *)r->data + r->strtab_off + off;
    if (!memchr(s, 0, r->strtab_size - off) || !utf8(s))
        return NULL;
    return s;
}

/* Tables come in order (devices, modules, rules, strings), 8-byte aligned, inside the
 * file and without overlap: each starts at or after the end of the one before. */
static int table_fits(uint64_t size, uint64_t *end, uint32_t off, uint64_t count, uint64_t entry)
{
    if (off % 8 || off < *end || off > size || count * entry > size - off)
        return 0;
    *end = off + count * entry;
    return 1;
}

#define FAIL(msg) do { *why = msg; return NULL; } while (0)

struct mp_policy *mp_policy_parse(const unsigned char *d, uint64_t size, const char **why)
{
    if (size < HEADER_SIZE)
        FAIL("truncated (shorter than its header)");
    struct mp_policy_header h;
    memcpy(&h, d, sizeof h); /* a copy: the mapping's records need not be aligned */
    if (memcmp(h.magic, MAGIC, 8) != 0)
        FAIL("not a compiled memplace policy (bad magic)");
    if (h.version != MP_POLICY_VERSION)
        FAIL("compiled by another memplace version (format version mismatch)");
    if (h.header_size != HEADER_SIZE)
        FAIL("bad header size");
    if (h.file_size != size)
        FAIL("truncated or padded (size differs from the header)");
    if (mp_crc32(d + HEADER_SIZE, size - HEADER_SIZE) != h.crc32)
        FAIL("corrupt (checksum mismatch)");

    struct reader r = {d, size, h.strtab_off, h.strtab_size};
    uint32_t ndev = h.ndevices, nmod = h.nmodules, nrule = h.nrules, def = h.default_device;
    uint32_t dev_off = h.devices_off, mod_off = h.modules_off, rule_off = h.rules_off;
    if (ndev < 1 || ndev > MP_MAX_DEVICES || nmod > MP_MAX_MODULES || nrule > MP_MAX_RULES)
        FAIL("bad table counts");
    if (def >= ndev)
        FAIL("default device out of range");
    uint64_t end = HEADER_SIZE;
    if (dev_off != HEADER_SIZE)
        FAIL("device table not right after the header");
    if (!table_fits(size, &end, dev_off, ndev, DEVICE_SIZE) ||
        !table_fits(size, &end, mod_off, nmod, MODULE_SIZE) ||
        !table_fits(size, &end, rule_off, nrule, RULE_SIZE) ||
        !table_fits(size, &end, r.strtab_off, r.strtab_size, 1) || r.strtab_size == 0 ||
        d[r.strtab_off + r.strtab_size - 1] != 0)
        FAIL("tables out of order, overlapping or outside the file");

    struct mp_policy *p = mp_internal_alloc(sizeof *p);
    struct mp_device_spec *devs = mp_internal_alloc(ndev * sizeof *devs);
    struct mp_module_spec *mods = mp_internal_alloc((nmod + 1) * sizeof *mods);
    struct mp_rule_spec *rules = mp_internal_alloc((nrule + 1) * sizeof *rules);
    if (!p || !devs || !mods || !rules)
        FAIL("out of memory reading the policy");

    for (uint32_t i = 0; i < ndev; i++) {
        struct mp_policy_device e;
        memcpy(&e, d + dev_off + (uint64_t)i * DEVICE_SIZE, sizeof e);
        struct mp_device_spec *s = &devs[i];
        s->kind = e.kind;
        s->mode = e.mode;
        s->capacity = e.capacity;
        s->fallback = e.fallback;
        s->name = string_at(&r, e.name_off);
        uint32_t path = e.path_off;
        s->path = path == MP_NO_STRING ? NULL : string_at(&r, path);
        s->flags = e.flags;
        memcpy(s->nodemask, e.nodemask, sizeof s->nodemask);
        if (s->kind > MP_HUGEPAGES || s->mode > 4 || !s->name)
            FAIL("bad device record");
        if (s->fallback < -1 || s->fallback >= (int32_t)ndev)
            FAIL("device fallback out of range");
        if (s->kind == MP_FILE && (path == MP_NO_STRING || !s->path || s->path[0] != '/'))
            FAIL("file device without an absolute directory");
        if (path != MP_NO_STRING && !s->path)
            FAIL("bad device path string");
    }
    /* The fallback graph must be acyclic: every chain ends within ndev steps. */
    for (uint32_t i = 0; i < ndev; i++) {
        int32_t at = (int32_t)i;
        for (uint32_t steps = 0; at != -1; steps++) {
            if (steps > ndev)
                FAIL("fallback chain has a cycle");
            at = devs[at].fallback;
        }
    }
    for (uint32_t i = 0; i < nmod; i++) {
        struct mp_policy_module e;
        memcpy(&e, d + mod_off + (uint64_t)i * MODULE_SIZE, sizeof e);
        uint32_t bid = e.build_id_off;
        mods[i].path = string_at(&r, e.path_off);
        mods[i].build_id = bid == MP_NO_STRING ? NULL : string_at(&r, bid);
        if (!mods[i].path || (bid != MP_NO_STRING && !mods[i].build_id))
            FAIL("bad module record");
    }
    for (uint32_t i = 0; i < nrule; i++) {
        struct mp_policy_rule e;
        memcpy(&e, d + rule_off + (uint64_t)i * RULE_SIZE, sizeof e);
        struct mp_rule_spec *s = &rules[i];
        s->device = e.device;
        s->nframes = e.nframes;
        s->size_min = e.size_min;
        s->size_max = e.size_max;
        s->name = string_at(&r, e.name_off);
        if (s->device >= ndev || s->nframes > MP_MAX_FRAMES || s->size_min > s->size_max || !s->name)
            FAIL("bad rule record");
        for (uint32_t f = 0; f < s->nframes; f++) {
            s->frame[f].module = e.frames[f].module;
            s->frame[f].lo = e.frames[f].lo;
            s->frame[f].hi = e.frames[f].hi;
            if (s->frame[f].module >= nmod || s->frame[f].lo > s->frame[f].hi)
                FAIL("bad rule frame");
        }
    }
    p->ndevices = ndev;
    p->nmodules = nmod;
    p->nrules = nrule;
    p->default_device = def;
    p->devices = devs;
    p->modules = mods;
    p->rules = rules;
    return p;
}

struct mp_policy *mp_policy_load(const char *path, const char **why)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        FAIL("cannot open the compiled policy");
    struct stat st;
    if (fstat(fd, &st) != 0 || st.st_size <= 0) {
        close(fd);
        FAIL("empty or unreadable compiled policy");
    }
    void *m = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (m == MAP_FAILED)
        FAIL("cannot map the compiled policy");
    /* Strings stay in the mapping: it lives as long as the process. */
    return mp_policy_parse(m, (uint64_t)st.st_size, why);
}
