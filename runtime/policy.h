/* The compiled policy (docs/policy.md): written by Python, validated and read here. */
#ifndef MEMPLACE_POLICY_H
#define MEMPLACE_POLICY_H

#include <stdint.h>

#define MP_MAX_DEVICES 64
#define MP_MAX_FRAMES 4
#define MP_NODEMASK_WORDS 16

enum mp_kind { MP_SYSTEM = 0, MP_NUMA = 1, MP_FILE = 2, MP_HUGEPAGES = 3 };
enum { MP_FLAG_HUGETLB = 1, MP_FLAG_THP = 2 };

struct mp_device_spec {
    uint32_t kind, mode;
    uint64_t capacity;           /* bytes; 0 = no limit */
    int32_t fallback;            /* device index, -1 = the next allocator */
    uint32_t flags;
    const char *name, *path;     /* path: directory of a file device, else NULL */
    uint64_t nodemask[MP_NODEMASK_WORDS];
};

struct mp_module_spec {
    const char *path;            /* "" = the main executable */
    const char *build_id;        /* lowercase hex, or NULL */
};

struct mp_frame_spec {
    uint32_t module;
    uint64_t lo, hi;             /* module-relative return-address range, inclusive */
};

struct mp_rule_spec {
    uint32_t device, nframes;
    uint64_t size_min, size_max;
    struct mp_frame_spec frame[MP_MAX_FRAMES];
    const char *name;
};

struct mp_policy {
    uint32_t ndevices, nmodules, nrules, default_device;
    struct mp_device_spec *devices;
    struct mp_module_spec *modules;
    struct mp_rule_spec *rules;
};

/* Read and validate the compiled policy at `path`. On any problem, returns NULL and sets
 * *why to a static one-line reason; the runtime then stays transparent. */
struct mp_policy *mp_policy_load(const char *path, const char **why);
/* The same validation over a buffer (for the fuzz harness). */
struct mp_policy *mp_policy_parse(const unsigned char *data, uint64_t size, const char **why);

#endif
