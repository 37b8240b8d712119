"""The compiled policy's records as the runtime declares them (runtime/include/policy_format.h)
and as the Python writer lays them out (the `Layout` tables): the same offset and size for
every field, and the same record sizes and limits. A C program that includes the header
prints offsetof/sizeof of each field the Python tables name."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from memplace.placement.policy_compile import (DEVICE, FRAME, HEADER, MAGIC, MAX_DEVICES, MAX_FRAMES, MAX_MODULES,
                                     MAX_RULES, MODULE, NO_STRING, NODEMASK_WORDS, RULE, VERSION, KIND_CODES,
                                     FLAG_HUGETLB, FLAG_THP, FLAG_NODE_SCOPE, FLAG_LOCK)

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed (Debian package gcc)")

INCLUDE = Path(__file__).resolve().parents[2] / "runtime" / "include"
C_STRUCT = {"header": "mp_policy_header", "device": "mp_policy_device", "module": "mp_policy_module",
            "frame": "mp_policy_frame", "rule": "mp_policy_rule"}
LAYOUTS = [HEADER, DEVICE, MODULE, FRAME, RULE]


def python_fields(layout) -> list[tuple[str, int, int]]:
    """(field, offset, size) as the Python writer packs them."""
    out, at = [], 0
    for name, code in layout.fields:
        size = struct.calcsize("<" + code)
        out.append((name, at, size))
        at += size
    assert at == layout.size
    return out


@pytest.fixture(scope="module")
def c_layout(tmp_path_factory) -> dict:
    """What the C compiler makes of policy_format.h: {(record, field): (offset, size)},
    {record: sizeof} and the format's constants."""
    lines = ["#include <stdio.h>", '#include "policy_format.h"', "int main(void) {"]
    for layout in LAYOUTS:
        s = f"struct {C_STRUCT[layout.name]}"
        lines.append(f'printf("sizeof {layout.name} %zu\\n", sizeof({s}));')
        for name, _ in layout.fields:
            lines.append(f'printf("field {layout.name} {name} %zu %zu\\n", offsetof({s}, {name}), '
                         f"sizeof((({s} *)0)->{name}));")
    for const in ("MP_POLICY_VERSION", "MP_NO_STRING", "MP_MAX_DEVICES", "MP_MAX_MODULES", "MP_MAX_RULES",
                  "MP_MAX_FRAMES", "MP_NODEMASK_WORDS", "MP_NEXT_ALLOCATOR", "MP_NUMA", "MP_FILE",
                  "MP_HUGEPAGES", "MP_FLAG_HUGETLB", "MP_FLAG_THP", "MP_FLAG_NODE_SCOPE", "MP_FLAG_LOCK"):
        lines.append(f'printf("const {const} %llu\\n", (unsigned long long)({const}));')
    lines.append('printf("magic %zu ", sizeof MP_POLICY_MAGIC);')
    lines.append('for (size_t i = 0; i < sizeof MP_POLICY_MAGIC; i++) printf("%02x", (unsigned char)MP_POLICY_MAGIC[i]);')
    lines.append('printf("\\n"); return 0; }')
    d = tmp_path_factory.mktemp("layout")
    (d / "layout.c").write_text("\n".join(lines) + "\n")
    # plain C11: the header (and its _Static_asserts) needs no GNU extension
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Werror", "-I", str(INCLUDE), "-o", str(d / "layout"),
                    str(d / "layout.c")], check=True, capture_output=True, text=True)
    out = subprocess.run([str(d / "layout")], check=True, capture_output=True, text=True).stdout
    fields, sizes, consts, magic = {}, {}, {}, None
    for line in out.splitlines():
        parts = line.split()
        if parts[0] == "field":
            fields[(parts[1], parts[2])] = (int(parts[3]), int(parts[4]))
        elif parts[0] == "sizeof":
            sizes[parts[1]] = int(parts[2])
        elif parts[0] == "const":
            consts[parts[1]] = int(parts[2])
        else:
            magic = bytes.fromhex(parts[2])
    return {"fields": fields, "sizes": sizes, "consts": consts, "magic": magic}


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_every_field_has_the_same_offset_and_size(c_layout, layout):
    for name, offset, size in python_fields(layout):
        assert c_layout["fields"][(layout.name, name)] == (offset, size), (layout.name, name)


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda layout: layout.name)
def test_records_have_the_same_size_and_no_field_of_their_own(c_layout, layout):
    assert c_layout["sizes"][layout.name] == layout.size
    # the Python fields cover the C struct with no gap: C has no field Python does not write
    assert sum(size for _, _, size in python_fields(layout)) == c_layout["sizes"][layout.name]


def test_rule_frames_are_frame_records(c_layout):
    assert c_layout["fields"][("rule", "frames")][1] == MAX_FRAMES * FRAME.size


def test_format_constants_agree(c_layout):
    c = c_layout["consts"]
    assert c["MP_POLICY_VERSION"] == VERSION
    assert c["MP_NO_STRING"] == NO_STRING
    assert (c["MP_MAX_DEVICES"], c["MP_MAX_MODULES"], c["MP_MAX_RULES"], c["MP_MAX_FRAMES"]) == (
        MAX_DEVICES, MAX_MODULES, MAX_RULES, MAX_FRAMES)
    assert c["MP_NODEMASK_WORDS"] == NODEMASK_WORDS
    # kind 0 is the next allocator, which the policy file calls "system"
    assert (c["MP_NEXT_ALLOCATOR"], c["MP_NUMA"], c["MP_FILE"], c["MP_HUGEPAGES"]) == (
        KIND_CODES["system"], KIND_CODES["numa"], KIND_CODES["file"], KIND_CODES["hugepages"])
    assert (c["MP_FLAG_HUGETLB"], c["MP_FLAG_THP"], c["MP_FLAG_NODE_SCOPE"], c["MP_FLAG_LOCK"]) == \
        (FLAG_HUGETLB, FLAG_THP, FLAG_NODE_SCOPE, FLAG_LOCK)
    assert c_layout["magic"] == MAGIC
