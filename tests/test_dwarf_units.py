"""memplace.dwarf.units, the DWARF layer under both readers, against pyelftools on real
compiler output: every DIE of every unit, attribute by attribute (form and value), for
DWARF 4 and 5, 32- and 64-bit DWARF, zlib-compressed sections, and clang's DWARF 5
(DW_FORM_strx*/addrx*, str_offsets_base/addr_base); gcc's DWARF 5 has implicit_const."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from elftools.dwarf.enums import ENUM_DW_AT, ENUM_DW_FORM
from elftools.elf.elffile import ELFFile

from memplace.dwarf.units import BLOCK_FORMS, DwarfFile
from memplace.elf import ElfFile

PROGRAM = r"""
#include <stdio.h>
enum color { RED, GREEN = 5, BLUE = -3 };
struct point { int x, y; unsigned flags : 3; unsigned more : 5; char name[12]; };
union u { long l; double d; };
__thread long counter = 7;
static __thread struct point where;
static inline int twice(int v) { return v * 2; }
__attribute__((noinline)) static int use(struct point *p, union u *q, enum color c) {
    return twice(p->x) + (int)q->l + c + twice(p->flags);
}
int main(int argc, char **argv) {
    struct point p = {argc, 2, 1, 3, "p"};
    union u q = {.l = 4};
    where.x = argc;
    counter += use(&p, &q, argc > 1 ? GREEN : BLUE);
    printf("%ld %s\n", counter, argv[0]);
    return 0;
}
"""
FORM_NAMES = {v: k for k, v in ENUM_DW_FORM.items()}
AT_NAMES = {v: k for k, v in ENUM_DW_AT.items()}
ADDRX = {"DW_FORM_addrx", "DW_FORM_addrx1", "DW_FORM_addrx2", "DW_FORM_addrx3", "DW_FORM_addrx4"}


def _build(tmp_path, cc: str, *flags: str):
    if shutil.which(cc) is None:
        pytest.skip(f"{cc} not installed")
    src = tmp_path / "p.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "p"
    subprocess.run([cc, "-O1", *flags, "-o", str(exe), str(src)], check=True)
    return exe


def _mine(exe) -> tuple[list, dict]:
    """Every DIE as (offset, attributes as (name, form name, value)), in section order,
    read with memplace.dwarf.units; and the units' encodings."""
    dwarf = DwarfFile(ElfFile(str(exe)))
    d = dwarf.info
    out, encodings = [], {}
    for start in dwarf.unit_starts():
        unit = dwarf.unit(start)
        encodings[start] = (unit.version, unit.offset_size, unit.addr_size, unit.unit_type)
        p = unit.first_die
        while p < unit.end:
            offset = p
            code = d[p]
            p += 1
            if code == 0:
                continue
            assert code < 0x80  # one byte in programs this small
            ab = unit.abbrevs[code]
            values, end = ab.decode(d, p, unit)
            assert ab.skip(d, p, unit) == end
            attrs = []
            for attr, form, v in zip(ab.attrs, ab.forms, values):
                name = FORM_NAMES[form]
                if form in BLOCK_FORMS:
                    v = list(v)
                elif name in ADDRX:
                    v = unit.addr(v)
                attrs.append((AT_NAMES.get(attr, attr), name, v))
            out.append((offset, attrs))
            p = end
    return out, encodings


def _theirs(exe) -> list:
    with open(exe, "rb") as f:
        dwarf = ELFFile(f).get_dwarf_info()
        out = []
        for cu in dwarf.iter_CUs():
            for die in cu.iter_DIEs():
                if die.is_null():
                    continue
                attrs = []
                for a in die.attributes.values():
                    v = a.value
                    if a.form in ADDRX:  # pyelftools keeps the index; the layer resolves it
                        v = dwarf.get_addr(cu, a.raw_value)
                    elif a.form in ("DW_FORM_loclistx", "DW_FORM_rnglistx"):
                        v = a.raw_value  # pyelftools gives the list's offset; the layer, the index
                    attrs.append((a.name, a.form, v))
                out.append((die.offset, attrs))
        return out


def _forms(dies) -> set[str]:
    return {form for _, attrs in dies for _, form, _ in attrs}


@pytest.mark.parametrize("flags,version,offset_size", [
    (("-gdwarf-4",), 4, 4),
    (("-gdwarf-5",), 5, 4),
    (("-gdwarf-4", "-gdwarf64"), 4, 8),
    (("-gdwarf-5", "-gdwarf64"), 5, 8),
    (("-gdwarf-5", "-gz=zlib"), 5, 4),
])
def test_gcc_units_read_as_pyelftools_reads_them(tmp_path, flags, version, offset_size):
    exe = _build(tmp_path, "gcc", *flags)
    mine, encodings = _mine(exe)
    assert {e[:2] for e in encodings.values()} == {(version, offset_size)}
    assert mine == _theirs(exe)
    if version == 5:
        assert {"DW_FORM_implicit_const", "DW_FORM_line_strp"} <= _forms(mine)
    if "-gz=zlib" in flags:
        with open(exe, "rb") as f:
            assert ELFFile(f).get_section_by_name(".debug_info")["sh_flags"] & 0x800  # SHF_COMPRESSED


def test_clang_dwarf5_indexed_strings_and_addresses(tmp_path):
    exe = _build(tmp_path, "clang", "-gdwarf-5")
    mine, encodings = _mine(exe)
    assert mine == _theirs(exe)
    forms = _forms(mine)
    assert forms & {"DW_FORM_strx1", "DW_FORM_strx2", "DW_FORM_strx"} and forms & ADDRX
    names = {v for _, attrs in mine for a, _, v in attrs if a == "DW_AT_name"}
    assert {b"main", b"point", b"counter", b"twice"} <= names


def test_32_bit_addresses(tmp_path):
    exe = _build(tmp_path, "i686-linux-gnu-gcc", "-gdwarf-5")
    mine, encodings = _mine(exe)
    assert {e[2] for e in encodings.values()} == {4}
    assert mine == _theirs(exe)
