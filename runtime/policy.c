/* Reads the compiled policy Python wrote (docs/policy.md). Every count, offset and
 * string is checked before use: a malformed, truncated or version-mismatched file is
 * refused with a one-line reason and the runtime stays transparent. */
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include "memplace.h"
#include "policy.h"

#define HEADER_SIZE 64
#define DEVICE_SIZE 160
#define MODULE_SIZE 16
#define RULE_SIZE 128
#define NO_STRING 0xFFFFFFFFu
#define MAX_MODULES 4096
#define MAX_RULES 65536

static const char MAGIC[8] = "MPLCPOL";

static uint32_t rd32(const unsigned char *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t rd64(const unsigned char *p) { uint64_t v; memcpy(&v, p, 8); return v; }

/* zlib's CRC-32 (the one Python's zlib.crc32 computes), bitwise: runs once at start-up. */
static uint32_t crc32(const unsigned char *p, uint64_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--) {
        c ^= *p++;
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

struct reader {
    const unsigned char *data;
    uint64_t size;
    uint32_t strtab_off, strtab_size;
};

/* Names and paths are UTF-8, as Python wrote them. */
static int utf8(const char *s)
{
    const unsigned char *p = (const unsigned char *)s;
    while (*p) {
        int n = *p < 0x80 ? 0 : (*p & 0xE0) == 0xC0 ? 1 : (*p & 0xF0) == 0xE0 ? 2 :
                (*p & 0xF8) == 0xF0 ? 3 : -1;
        if (n < 0 || (n == 1 && *p < 0xC2))
            return 0;
        for (p++; n > 0; n--, p++)
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
    if (memcmp(d, MAGIC, 8) != 0)
        FAIL("not a compiled memplace policy (bad magic)");
    if (rd32(d + 8) != 1)
        FAIL("compiled by another memplace version (format version mismatch)");
    if (rd32(d + 12) != HEADER_SIZE)
        FAIL("bad header size");
    if (rd64(d + 56) != size)
        FAIL("truncated or padded (size differs from the header)");
    if (crc32(d + HEADER_SIZE, size - HEADER_SIZE) != rd32(d + 52))
        FAIL("corrupt (checksum mismatch)");

    struct reader r = {d, size, rd32(d + 44), rd32(d + 48)};
    uint32_t ndev = rd32(d + 16), nmod = rd32(d + 20), nrule = rd32(d + 24), def = rd32(d + 28);
    uint32_t dev_off = rd32(d + 32), mod_off = rd32(d + 36), rule_off = rd32(d + 40);
    if (ndev < 1 || ndev > MP_MAX_DEVICES || nmod > MAX_MODULES || nrule > MAX_RULES)
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
        const unsigned char *e = d + dev_off + (uint64_t)i * DEVICE_SIZE;
        struct mp_device_spec *s = &devs[i];
        s->kind = rd32(e);
        s->mode = rd32(e + 4);
        s->capacity = rd64(e + 8);
        s->fallback = (int32_t)rd32(e + 16);
        s->name = string_at(&r, rd32(e + 20));
        uint32_t path = rd32(e + 24);
        s->path = path == NO_STRING ? NULL : string_at(&r, path);
        s->flags = rd32(e + 28);
        memcpy(s->nodemask, e + 32, sizeof s->nodemask);
        if (s->kind > MP_HUGEPAGES || s->mode > 4 || !s->name)
            FAIL("bad device record");
        if (s->fallback < -1 || s->fallback >= (int32_t)ndev)
            FAIL("device fallback out of range");
        if (s->kind == MP_FILE && (path == NO_STRING || !s->path || s->path[0] != '/'))
            FAIL("file device without an absolute directory");
        if (path != NO_STRING && !s->path)
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
        const unsigned char *e = d + mod_off + (uint64_t)i * MODULE_SIZE;
        uint32_t bid = rd32(e + 4);
        mods[i].path = string_at(&r, rd32(e));
        mods[i].build_id = bid == NO_STRING ? NULL : string_at(&r, bid);
        if (!mods[i].path || (bid != NO_STRING && !mods[i].build_id))
            FAIL("bad module record");
    }
    for (uint32_t i = 0; i < nrule; i++) {
        const unsigned char *e = d + rule_off + (uint64_t)i * RULE_SIZE;
        struct mp_rule_spec *s = &rules[i];
        s->device = rd32(e);
        s->nframes = rd32(e + 4);
        s->size_min = rd64(e + 8);
        s->size_max = rd64(e + 16);
        s->name = string_at(&r, rd32(e + 120));
        if (s->device >= ndev || s->nframes > MP_MAX_FRAMES || s->size_min > s->size_max || !s->name)
            FAIL("bad rule record");
        for (uint32_t f = 0; f < s->nframes; f++) {
            const unsigned char *fe = e + 24 + f * 24;
            s->frame[f].module = rd32(fe);
            s->frame[f].lo = rd64(fe + 8);
            s->frame[f].hi = rd64(fe + 16);
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
