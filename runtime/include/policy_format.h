/* The compiled policy file, record by record (docs/policy.md). Python writes it from the
 * `Layout` tables in src/memplace/policy_compile.py; os/policy.c reads it. The offsets
 * below are the Python tables' numbers, checked at compile time here and against the
 * Python tables by tests/placement_py/test_policy_layout_matches_c.py.
 *
 * Records are little-endian, as are the hosts the runtime builds for. They sit at
 * 8-byte-aligned offsets inside the file, but the reader copies each one into a struct
 * (memcpy) rather than pointing into the mapping, so no alignment is assumed.
 * Standalone: only <stdint.h> and <stddef.h>, so a test program can include it alone. */
#ifndef MEMPLACE_POLICY_FORMAT_H
#define MEMPLACE_POLICY_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define MP_POLICY_MAGIC "MPLCPOL" /* 8 bytes with its NUL */
#define MP_POLICY_VERSION 1
#define MP_NO_STRING 0xFFFFFFFFu  /* a string offset meaning "none" */
#define MP_MAX_DEVICES 64
#define MP_MAX_MODULES 4096
#define MP_MAX_RULES 65536
#define MP_MAX_FRAMES 4
#define MP_NODEMASK_WORDS 16

/* Kind codes; kind 0 is the next allocator, which the policy file spells `system`. */
enum mp_kind { MP_NEXT_ALLOCATOR = 0, MP_NUMA = 1, MP_FILE = 2, MP_HUGEPAGES = 3 };
/* Flag bits; bits 8..15 hold log2 of the huge page size (0: the default size). */
enum { MP_FLAG_HUGETLB = 1, MP_FLAG_THP = 2,
       MP_FLAG_NODE_SCOPE = 4, /* the capacity is for every process of the job on the node */
       MP_FLAG_LOCK = 8 /* pages stay resident once touched (mlock on fault): never swapped */ };

struct mp_policy_header {
    char magic[8];
    uint32_t version, header_size;
    uint32_t ndevices, nmodules, nrules, default_device;
    uint32_t devices_off, modules_off, rules_off; /* tables, in this order, 8-byte aligned */
    uint32_t strtab_off, strtab_size;
    uint32_t crc32;                               /* of everything after the header */
    uint64_t file_size;
};

struct mp_policy_device {
    uint32_t kind, mode;
    uint64_t capacity;        /* bytes; 0 = no limit */
    int32_t fallback;         /* device index, -1 = the next allocator */
    uint32_t name_off, path_off, flags;
    uint64_t nodemask[MP_NODEMASK_WORDS];
};

struct mp_policy_module {
    uint32_t path_off, build_id_off;
    uint64_t reserved;
};

struct mp_policy_frame {
    uint32_t module, reserved;
    uint64_t lo, hi;          /* module-relative return-address range, inclusive */
};

struct mp_policy_rule {
    uint32_t device, nframes;
    uint64_t size_min, size_max;
    struct mp_policy_frame frames[MP_MAX_FRAMES];
    uint32_t name_off, reserved;
};

#define MP_AT(type, field, offset) \
    _Static_assert(offsetof(type, field) == (offset), #type "." #field " at " #offset)
MP_AT(struct mp_policy_header, magic, 0);
MP_AT(struct mp_policy_header, version, 8);
MP_AT(struct mp_policy_header, header_size, 12);
MP_AT(struct mp_policy_header, ndevices, 16);
MP_AT(struct mp_policy_header, nmodules, 20);
MP_AT(struct mp_policy_header, nrules, 24);
MP_AT(struct mp_policy_header, default_device, 28);
MP_AT(struct mp_policy_header, devices_off, 32);
MP_AT(struct mp_policy_header, modules_off, 36);
MP_AT(struct mp_policy_header, rules_off, 40);
MP_AT(struct mp_policy_header, strtab_off, 44);
MP_AT(struct mp_policy_header, strtab_size, 48);
MP_AT(struct mp_policy_header, crc32, 52);
MP_AT(struct mp_policy_header, file_size, 56);
_Static_assert(sizeof(struct mp_policy_header) == 64, "header: 64 bytes");

MP_AT(struct mp_policy_device, kind, 0);
MP_AT(struct mp_policy_device, mode, 4);
MP_AT(struct mp_policy_device, capacity, 8);
MP_AT(struct mp_policy_device, fallback, 16);
MP_AT(struct mp_policy_device, name_off, 20);
MP_AT(struct mp_policy_device, path_off, 24);
MP_AT(struct mp_policy_device, flags, 28);
MP_AT(struct mp_policy_device, nodemask, 32);
_Static_assert(sizeof(struct mp_policy_device) == 160, "device: 160 bytes");

MP_AT(struct mp_policy_module, path_off, 0);
MP_AT(struct mp_policy_module, build_id_off, 4);
MP_AT(struct mp_policy_module, reserved, 8);
_Static_assert(sizeof(struct mp_policy_module) == 16, "module: 16 bytes");

MP_AT(struct mp_policy_frame, module, 0);
MP_AT(struct mp_policy_frame, reserved, 4);
MP_AT(struct mp_policy_frame, lo, 8);
MP_AT(struct mp_policy_frame, hi, 16);
_Static_assert(sizeof(struct mp_policy_frame) == 24, "frame: 24 bytes");

MP_AT(struct mp_policy_rule, device, 0);
MP_AT(struct mp_policy_rule, nframes, 4);
MP_AT(struct mp_policy_rule, size_min, 8);
MP_AT(struct mp_policy_rule, size_max, 16);
MP_AT(struct mp_policy_rule, frames, 24);
MP_AT(struct mp_policy_rule, name_off, 120);
MP_AT(struct mp_policy_rule, reserved, 124);
_Static_assert(sizeof(struct mp_policy_rule) == 128, "rule: 128 bytes");
#undef MP_AT

#endif
