"""A small direct reader of the DWARF (versions 2-5) that symbolizing needs: compilation
units and their address ranges, line programs, inlined calls and their functions' names.

pyelftools reads every entry through generic parsers: on libc's debug file that is 20 s
for the line tables and 25 s for the inlined calls around 50,000 addresses. This reads
the same facts in plain loops over the section bytes (units, abbreviations, forms and
line programs: memplace.dwarf), and only for the units that hold the addresses asked for
(memplace.profiling.symbolize): the answers are pyelftools' own
(tests/profiling/test_symbolize_reader.py compares them, and addr2line's).

Not read: split DWARF (.dwo), supplementary files (dwz's .gnu_debugaltlink).

    >>> from memplace.elf import ElfFile
    >>> DwarfReader(ElfFile("/bin/sh")).units is not None
    True
"""

from __future__ import annotations

import struct

from memplace.dwarf.lines import line_program
from memplace.dwarf.units import DwarfError, DwarfFile, Unit, uleb

__all__ = ["DwarfError", "DwarfReader", "Unit"]

# DW_TAG_*, DW_AT_*, DW_FORM_* codes used here (DWARF 5, section 7.5)
TAG_INLINED_SUBROUTINE = 0x1D
AT_NAME, AT_LOW_PC, AT_HIGH_PC = 0x03, 0x11, 0x12
AT_ABSTRACT_ORIGIN, AT_SPECIFICATION, AT_RANGES = 0x31, 0x47, 0x55
AT_CALL_FILE, AT_CALL_LINE, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME = 0x58, 0x59, 0x6E, 0x2007
FORM_ADDR, FORM_REF_ADDR, FORM_RNGLISTX = 0x01, 0x10, 0x23
_NAME_ATTRS = (AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME, AT_NAME)


class DwarfReader(DwarfFile):
    """The DWARF sections of one ELF file, read on demand."""

    @property
    def units(self) -> list[Unit]:
        """Every unit of .debug_info, its own DIE's attributes read."""
        try:
            return [self.unit(o) for o in self.unit_starts()]
        except (IndexError, ValueError, struct.error, KeyError) as e:
            raise DwarfError(f"{self.elf.path}: damaged .debug_info ({e})") from None

    def _read_die(self, unit: Unit, d: bytes, p: int, ab) -> tuple[dict, int]:
        values, p = ab.decode(d, p, unit)
        attrs = {}
        for attr, form, v in zip(ab.attrs, ab.forms, values):
            attrs.setdefault(attr, (form, v))  # a repeated attribute: pyelftools keeps the first
        return attrs, p

    def die_at(self, offset: int) -> tuple[Unit, dict] | None:
        """The unit and attributes of the DIE at a .debug_info offset."""
        unit = self.unit_at(offset)
        if unit is None:
            return None
        d = self.info
        code, p = uleb(d, offset)
        if not code:
            return None
        return unit, self._read_die(unit, d, p, unit.abbrevs[code])[0]

    # -- address ranges ---------------------------------------------------------
    def die_ranges(self, unit: Unit, attrs: dict) -> list[tuple[int, int]]:
        """A DIE's address ranges [lo, hi) as memplace.elf.die_ranges gives them."""
        if AT_LOW_PC in attrs and AT_HIGH_PC in attrs:
            lo = attrs[AT_LOW_PC][1]
            form, high = attrs[AT_HIGH_PC]
            return [(lo, high if form == FORM_ADDR else lo + high)]
        if AT_RANGES not in attrs or attrs[AT_RANGES][0] == FORM_RNGLISTX:
            return []
        offset = attrs[AT_RANGES][1]
        rnglists, ranges = self.section(".debug_rnglists"), self.section(".debug_ranges")
        if rnglists is None and ranges is None:
            return []
        base = unit.top[AT_LOW_PC][1] if AT_LOW_PC in unit.top else 0
        if rnglists is not None and (ranges is None or unit.version >= 5):
            out = self._rnglist(unit, rnglists, offset, base)
        else:
            out = self._ranges_v4(unit, ranges, offset, base)
        return [(lo, hi) for lo, hi in out if hi > lo]

    def _ranges_v4(self, unit: Unit, d: bytes, p: int, base: int) -> list[tuple[int, int]]:
        n = unit.addr_size
        fmt = self.elf.endian + ("I" if n == 4 else "Q") * 2
        top = (1 << (8 * n)) - 1
        out = []
        while True:
            begin, end = struct.unpack_from(fmt, d, p)
            p += 2 * n
            if begin == 0 and end == 0:
                return out
            if begin == top:
                base = end
            else:
                out.append((base + begin, base + end))

    def _rnglist(self, unit: Unit, d: bytes, p: int, base: int) -> list[tuple[int, int]]:
        n = unit.addr_size
        fmt = self.elf.endian + ("I" if n == 4 else "Q")
        out = []
        while True:
            kind = d[p]
            p += 1
            if kind == 0:  # end_of_list
                return out
            if kind == 1:  # base_addressx
                i, p = uleb(d, p)
                base = unit.addr(i)
            elif kind == 2:  # startx_endx
                i, p = uleb(d, p)
                j, p = uleb(d, p)
                out.append((unit.addr(i), unit.addr(j)))
            elif kind == 3:  # startx_length
                i, p = uleb(d, p)
                length, p = uleb(d, p)
                start = unit.addr(i)
                out.append((start, start + length))
            elif kind == 4:  # offset_pair
                lo, p = uleb(d, p)
                hi, p = uleb(d, p)
                out.append((base + lo, base + hi))
            elif kind == 5:  # base_address
                base, = struct.unpack_from(fmt, d, p)
                p += n
            elif kind == 6:  # start_end
                lo, hi = struct.unpack_from(fmt + fmt[-1], d, p)
                p += 2 * n
                out.append((lo, hi))
            elif kind == 7:  # start_length
                lo, = struct.unpack_from(fmt, d, p)
                length, p = uleb(d, p + n)
                out.append((lo, lo + length))
            else:
                raise DwarfError(f"{self.elf.path}: unknown range list entry {kind}")

    # -- line programs ----------------------------------------------------------
    def line_program(self, unit: Unit, rows: bool = True):
        """memplace.dwarf.lines.line_program of the unit."""
        return line_program(self, unit, rows)

    # -- inlined calls ----------------------------------------------------------
    def inlined_calls(self, unit: Unit) -> list[tuple]:
        """Every inlined body of one unit as memplace.elf.inlined_calls lists them, in the
        same order: (ranges, depth, call file, call line, DIE offset)."""
        d = self.info
        abbrevs = unit.abbrevs
        p = unit.first_die
        code, p = uleb(d, p)
        if not code:
            return []
        ab = abbrevs[code]
        p = ab.skip(d, p, unit)
        if not ab.children:
            return []
        # The tree of DIEs that matter to the walk (inlined bodies, and DIEs with children),
        # each (call or None for other tags, its children or None).
        root: list = []
        open_kids = [root]
        end = unit.end
        while open_kids and p < end:
            start = p
            code, p = uleb(d, p)
            if code == 0:
                open_kids.pop()
                continue
            ab = abbrevs[code]
            children = ab.children
            if ab.tag == TAG_INLINED_SUBROUTINE:
                attrs, p = self._read_die(unit, d, p, ab)
                ranges = self.die_ranges(unit, attrs)
                call = False
                if ranges and AT_CALL_LINE in attrs:
                    call = (tuple(ranges), attrs[AT_CALL_FILE][1] if AT_CALL_FILE in attrs else 0,
                            attrs[AT_CALL_LINE][1], start)
                kids = [] if children else None
                open_kids[-1].append((call, kids))
                if children:
                    open_kids.append(kids)
            else:
                size = ab.size
                p = p + size if size is not None else ab.skip(d, p, unit)
                if children:
                    kids = []
                    open_kids[-1].append((None, kids))
                    open_kids.append(kids)
        out = []
        stack = [(root, 0)]
        while stack:  # the walk of memplace.elf.inlined_calls, for the same order
            kids, depth = stack.pop()
            for call, sub in kids:
                inner = depth
                if call is not None:
                    if call:
                        out.append((call[0], depth, call[1], call[2], call[3]))
                    inner = depth + 1
                if sub is not None:
                    stack.append((sub, inner))
        return out

    def inlined_name(self, offset: int) -> str | None:
        """memplace.elf.inlined_name of the DIE at a .debug_info offset."""
        for _ in range(4):
            found = self.die_at(offset)
            if found is None:
                return None
            unit, attrs = found
            for key in _NAME_ATTRS:
                if key in attrs:
                    v = attrs[key][1]
                    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
            for ref in (AT_ABSTRACT_ORIGIN, AT_SPECIFICATION):
                if ref in attrs:
                    form, v = attrs[ref]
                    offset = v if form == FORM_REF_ADDR else unit.offset + v
                    break
            else:
                return None
        return None
