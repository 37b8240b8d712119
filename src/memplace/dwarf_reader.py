"""A small direct reader of the DWARF (versions 2-5) that symbolizing needs: compilation
units and their address ranges, line programs, inlined calls and their functions' names.

pyelftools reads every entry through generic parsers: on libc's debug file that is 20 s
for the line tables and 25 s for the inlined calls around 50,000 addresses. This reads
the same facts in plain loops over the section bytes, and only for the units that hold
the addresses asked for (memplace.profiling.symbolize): the answers are pyelftools' own
(tests/profiling/test_symbolize_reader.py compares them, and addr2line's).

Not read: split DWARF (.dwo), supplementary files (dwz's .gnu_debugaltlink), string
offsets tables (DW_FORM_strx): none occurs in what Debian's gcc builds.

    >>> from memplace.elf import ElfFile
    >>> DwarfReader(ElfFile("/bin/sh")).units is not None
    True
"""

from __future__ import annotations

import bisect
import struct

from memplace.elf import ElfFile

# DW_TAG_*, DW_AT_*, DW_FORM_* codes used here (DWARF 5, section 7.5)
TAG_INLINED_SUBROUTINE = 0x1D
AT_NAME, AT_STMT_LIST, AT_LOW_PC, AT_HIGH_PC = 0x03, 0x10, 0x11, 0x12
AT_ABSTRACT_ORIGIN, AT_SPECIFICATION, AT_RANGES = 0x31, 0x47, 0x55
AT_CALL_FILE, AT_CALL_LINE, AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME = 0x58, 0x59, 0x6E, 0x2007
AT_ADDR_BASE = 0x73
FORM_ADDR, FORM_STRING, FORM_STRP, FORM_LINE_STRP = 0x01, 0x08, 0x0E, 0x1F
FORM_REF_ADDR, FORM_INDIRECT, FORM_IMPLICIT_CONST, FORM_RNGLISTX = 0x10, 0x16, 0x21, 0x23
FORM_REF1, FORM_REF2, FORM_REF4, FORM_REF8, FORM_REF_UDATA = 0x11, 0x12, 0x13, 0x14, 0x15
FORM_SDATA = 0x0D
_FIXED = {0x0B: 1, 0x11: 1, 0x0C: 1, 0x25: 1, 0x29: 1, 0x05: 2, 0x12: 2, 0x26: 2, 0x2A: 2,
          0x27: 3, 0x2B: 3, 0x06: 4, 0x13: 4, 0x28: 4, 0x2C: 4, 0x1C: 4, 0x07: 8, 0x14: 8,
          0x20: 8, 0x24: 8, 0x1E: 16, 0x19: 0, 0x21: 0}
_OFFSET_SIZED = {0x0E, 0x1F, 0x17, 0x1D, 0x1F20, 0x1F21}  # strp line_strp sec_offset ...
_ULEB = {0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02}  # udata ref_udata strx addrx ...
_BLOCK_LEN = {0x0A: 1, 0x03: 2, 0x04: 4}  # block1 block2 block4: a length, then the bytes
_NAME_ATTRS = (AT_LINKAGE_NAME, AT_MIPS_LINKAGE_NAME, AT_NAME)


class DwarfError(Exception):
    """Debug info this reader cannot follow (truncated, or a form it does not know)."""


def uleb(d: bytes, p: int) -> tuple[int, int]:
    b = d[p]
    if b < 0x80:
        return b, p + 1
    result, shift = b & 0x7F, 7
    while True:
        p += 1
        b = d[p]
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, p + 1
        shift += 7


def sleb(d: bytes, p: int) -> tuple[int, int]:
    result, shift = 0, 0
    while True:
        b = d[p]
        p += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            if b & 0x40:
                result -= 1 << shift
            return result, p


def cstring(d: bytes, p: int) -> tuple[bytes, int]:
    end = d.index(b"\0", p)
    return d[p:end], end + 1


class Unit:
    """One unit of .debug_info: where its entries are and how they are encoded."""

    __slots__ = ("offset", "end", "version", "offset_size", "addr_size", "abbrev_offset",
                 "first_die", "top", "abbrevs")

    def __init__(self, offset, end, version, offset_size, addr_size, abbrev_offset, first_die):
        self.offset, self.end, self.version = offset, end, version
        self.offset_size, self.addr_size = offset_size, addr_size
        self.abbrev_offset, self.first_die = abbrev_offset, first_die
        self.top: dict[int, tuple[int, object]] = {}  # the unit's DIE: attribute -> (form, value)
        self.abbrevs: dict = {}


class DwarfReader:
    """The DWARF sections of one ELF file, read on demand."""

    def __init__(self, elf: ElfFile):
        self.elf = elf
        self._sections: dict[str, bytes | None] = {}
        self._abbrev_tables: dict[tuple, dict] = {}
        self._unit_starts: list[int] | None = None
        self._units: list[Unit] | None = None

    def section(self, name: str) -> bytes | None:
        if name not in self._sections:
            self._sections[name] = self.elf.section_data(name)
        return self._sections[name]

    # -- units ----------------------------------------------------------------
    @property
    def units(self) -> list[Unit]:
        """Every unit of .debug_info, its own DIE's attributes read."""
        if self._units is None:
            units = []
            d = self.section(".debug_info") or b""
            p = 0
            try:
                while p + 11 <= len(d):
                    unit = self._unit_header(d, p)
                    units.append(unit)
                    p = unit.end
            except (IndexError, ValueError, struct.error, KeyError) as e:
                raise DwarfError(f"{self.elf.path}: damaged .debug_info ({e})") from None
            self._units = units
            self._unit_starts = [u.offset for u in units]
        return self._units

    def _unit_header(self, d: bytes, p: int) -> Unit:
        e = self.elf.endian
        length, = struct.unpack_from(e + "I", d, p)
        offset_size, q = 4, p + 4
        if length == 0xFFFFFFFF:
            length, = struct.unpack_from(e + "Q", d, q)
            offset_size, q = 8, q + 8
        end = q + length
        version, = struct.unpack_from(e + "H", d, q)
        q += 2
        off_fmt = e + ("I" if offset_size == 4 else "Q")
        if version >= 5:
            unit_type, addr_size = d[q], d[q + 1]
            abbrev_offset, = struct.unpack_from(off_fmt, d, q + 2)
            q += 2 + offset_size
            if unit_type in (4, 5):  # skeleton, split_compile: a dwo id
                q += 8
            elif unit_type in (2, 6):  # type, split_type: a signature and the type's offset
                q += 8 + offset_size
        else:
            abbrev_offset, = struct.unpack_from(off_fmt, d, q)
            addr_size = d[q + offset_size]
            q += offset_size + 1
        unit = Unit(p, end, version, offset_size, addr_size, abbrev_offset, q)
        unit.abbrevs = self._abbrevs(unit)
        if q < end:
            code, q = uleb(d, q)
            if code:
                unit.top, _ = self._read_die(unit, d, q, unit.abbrevs[code][2])
        return unit

    def unit_at(self, offset: int) -> Unit | None:
        """The unit holding a .debug_info offset."""
        units = self.units
        i = bisect.bisect_right(self._unit_starts, offset) - 1
        return units[i] if i >= 0 and offset < units[i].end else None

    # -- abbreviations ----------------------------------------------------------
    def _abbrevs(self, unit: Unit) -> "_Abbrevs":
        key = (unit.abbrev_offset, unit.version, unit.offset_size, unit.addr_size)
        table = self._abbrev_tables.get(key)
        if table is None:
            table = self._abbrev_tables[key] = _Abbrevs(self, unit)
        return table

    @staticmethod
    def _form_size(unit: Unit, form: int) -> int | None:
        if form in _FIXED:
            return _FIXED[form]
        if form in _OFFSET_SIZED:
            return unit.offset_size
        if form == FORM_ADDR:
            return unit.addr_size
        if form == FORM_REF_ADDR:
            return unit.addr_size if unit.version <= 2 else unit.offset_size
        return None

    # -- attribute values -------------------------------------------------------
    def _value(self, unit: Unit, d: bytes, p: int, form: int, const) -> tuple[object, int]:
        """An attribute's value as pyelftools gives it (strings as bytes), and where the
        next one starts."""
        e = self.elf.endian
        n = _FIXED.get(form)
        if n is not None:
            if form == FORM_IMPLICIT_CONST:
                return const, p
            if n == 0:  # flag_present
                return True, p
            if n == 3:
                return int.from_bytes(d[p:p + 3], "little" if e == "<" else "big"), p + 3
            if n == 16:
                return d[p:p + 16], p + 16
            return int.from_bytes(d[p:p + n], "little" if e == "<" else "big"), p + n
        if form in _OFFSET_SIZED or form == FORM_ADDR or form == FORM_REF_ADDR:
            n = self._form_size(unit, form)
            v = int.from_bytes(d[p:p + n], "little" if e == "<" else "big")
            if form == FORM_STRP:
                s = self.section(".debug_str") or b""
                return cstring(s, v)[0], p + n
            if form == FORM_LINE_STRP:
                s = self.section(".debug_line_str") or b""
                return cstring(s, v)[0], p + n
            return v, p + n
        if form in _ULEB:
            return uleb(d, p)
        if form == FORM_SDATA:
            return sleb(d, p)
        if form == FORM_STRING:
            return cstring(d, p)
        if form in _BLOCK_LEN:
            n = _BLOCK_LEN[form]
            size = int.from_bytes(d[p:p + n], "little" if e == "<" else "big")
            return d[p + n:p + n + size], p + n + size
        if form in (0x09, 0x18):  # block, exprloc
            size, p = uleb(d, p)
            return d[p:p + size], p + size
        if form == FORM_INDIRECT:
            form, p = uleb(d, p)
            return self._value(unit, d, p, form, None)
        raise DwarfError(f"{self.elf.path}: unknown DWARF form {form:#x}")

    def _read_die(self, unit: Unit, d: bytes, p: int, specs) -> tuple[dict, int]:
        attrs = {}
        for attr, form, const in specs:
            v, p = self._value(unit, d, p, form, const)
            attrs.setdefault(attr, (form, v))  # a repeated attribute: pyelftools keeps the first
        return attrs, p

    def die_at(self, offset: int) -> tuple[Unit, dict] | None:
        """The unit and attributes of the DIE at a .debug_info offset."""
        unit = self.unit_at(offset)
        if unit is None:
            return None
        d = self.section(".debug_info")
        code, p = uleb(d, offset)
        if not code:
            return None
        return unit, self._read_die(unit, d, p, unit.abbrevs[code][2])[0]

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
                base = self._addr(unit, i)
            elif kind == 2:  # startx_endx
                i, p = uleb(d, p)
                j, p = uleb(d, p)
                out.append((self._addr(unit, i), self._addr(unit, j)))
            elif kind == 3:  # startx_length
                i, p = uleb(d, p)
                length, p = uleb(d, p)
                start = self._addr(unit, i)
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

    def _addr(self, unit: Unit, index: int) -> int:
        d = self.section(".debug_addr")
        if d is None or AT_ADDR_BASE not in unit.top:
            raise DwarfError(f"{self.elf.path}: an indexed address without .debug_addr")
        n = unit.addr_size
        return int.from_bytes(d[unit.top[AT_ADDR_BASE][1] + index * n:][:n],
                              "little" if self.elf.endian == "<" else "big")

    # -- line programs ----------------------------------------------------------
    def line_program(self, unit: Unit, rows: bool = True):
        """(file names, rows) of the unit's line program: file names as the program's file
        indexes count them (DWARF 5 from 0, earlier from 1: `base`), rows (address, file
        index, line, end of sequence) in program order. None: the unit has none."""
        if AT_STMT_LIST not in unit.top:
            return None
        d = self.section(".debug_line")
        if d is None:
            return None
        return _LineProgram(self, unit, d, unit.top[AT_STMT_LIST][1]).read(rows)

    # -- inlined calls ----------------------------------------------------------
    def inlined_calls(self, unit: Unit) -> list[tuple]:
        """Every inlined body of one unit as memplace.elf.inlined_calls lists them, in the
        same order: (ranges, depth, call file, call line, DIE offset)."""
        d = self.section(".debug_info")
        abbrevs = unit.abbrevs
        p = unit.first_die
        code, p = uleb(d, p)
        if not code:
            return []
        tag, children, specs, fixed = abbrevs[code]
        p = self._skip(unit, d, p, specs, fixed)
        if not children:
            return []
        # The tree of DIEs that matter to the walk (inlined bodies, and DIEs with children),
        # each (call or None for other tags, its children or None).
        root: list = []
        open_kids = [root]
        end = unit.end
        skip = self._skip
        while open_kids and p < end:
            start = p
            code, p = uleb(d, p)
            if code == 0:
                open_kids.pop()
                continue
            tag, children, specs, fixed = abbrevs[code]
            if tag == TAG_INLINED_SUBROUTINE:
                attrs, p = self._read_die(unit, d, p, specs)
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
                p = skip(unit, d, p, specs, fixed)
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

    def _skip(self, unit: Unit, d: bytes, p: int, specs, fixed) -> int:
        if fixed is not None:
            return p + fixed
        for attr, form, const in specs:
            n = _FIXED.get(form)
            if n is not None:
                p += n
            elif form in _ULEB or form == FORM_SDATA:
                while d[p] & 0x80:
                    p += 1
                p += 1
            elif form in _OFFSET_SIZED:
                p += unit.offset_size
            elif form == FORM_ADDR:
                p += unit.addr_size
            elif form == FORM_STRING:
                p = d.index(b"\0", p) + 1
            elif form in (0x09, 0x18):
                size, p = uleb(d, p)
                p += size
            else:
                p = self._value(unit, d, p, form, const)[1]
        return p

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


class _Abbrevs(dict):
    """A unit's abbreviations, code -> (tag, has children, [(attribute, form, implicit
    const)], fixed size or None), read only as far as the codes asked for (a unit's own
    entry needs the first one, and most units are never walked)."""

    def __init__(self, reader: DwarfReader, unit: Unit):
        super().__init__()
        self.reader, self.unit = reader, unit
        self.d = reader.section(".debug_abbrev") or b""
        self.p: int | None = unit.abbrev_offset

    def __missing__(self, code: int):
        d, p = self.d, self.p
        while p is not None:
            c, p = uleb(d, p)
            if c == 0:
                p = None
                break
            tag, p = uleb(d, p)
            children = d[p]
            p += 1
            specs = []
            size = 0
            while True:
                attr, p = uleb(d, p)
                form, p = uleb(d, p)
                if attr == 0 and form == 0:
                    break
                const = None
                if form == FORM_IMPLICIT_CONST:
                    const, p = sleb(d, p)
                specs.append((attr, form, const))
                n = DwarfReader._form_size(self.unit, form)
                size = None if size is None or n is None else size + n
            self[c] = (tag, bool(children), specs, size)
            if c == code:
                break
        self.p = p
        if code not in self:
            raise DwarfError(f"{self.reader.elf.path}: abbreviation {code} not found")
        return dict.__getitem__(self, code)


class _LineProgram:
    """One line program of .debug_line, decoded the way pyelftools decodes it."""

    def __init__(self, reader: DwarfReader, unit: Unit, d: bytes, offset: int):
        self.reader, self.unit, self.d, self.offset = reader, unit, d, offset

    def read(self, want_rows: bool):
        d, p, e = self.d, self.offset, self.reader.elf.endian
        length, = struct.unpack_from(e + "I", d, p)
        offset_size, p = 4, p + 4
        if length == 0xFFFFFFFF:
            length, = struct.unpack_from(e + "Q", d, p)
            offset_size, p = 8, p + 8
        end = p + length
        version, = struct.unpack_from(e + "H", d, p)
        p += 2
        addr_size = self.unit.addr_size
        if version >= 5:
            addr_size = d[p]
            p += 2  # address_size, segment_selector_size
        header_length = int.from_bytes(d[p:p + offset_size], "little" if e == "<" else "big")
        p += offset_size
        program = p + header_length
        min_inst = d[p]
        p += 1
        max_ops = 1
        if version >= 4:
            max_ops = d[p]
            p += 1
        default_is_stmt, line_base, line_range, opcode_base = d[p], d[p + 1], d[p + 2], d[p + 3]
        if line_base >= 0x80:
            line_base -= 0x100
        p += 4 + opcode_base - 1  # standard_opcode_lengths
        files: list[bytes | None] = []
        if version >= 5:
            p = self._entries_v5(d, p, offset_size, None)  # directories
            p = self._entries_v5(d, p, offset_size, files)
        else:
            while d[p]:  # include_directories
                p = d.index(b"\0", p) + 1
            p += 1
            while d[p]:
                name, p = cstring(d, p)
                for _ in range(3):
                    _, p = uleb(d, p)
                files.append(name)
        names = [f.decode(errors="replace") if f is not None else None for f in files]
        base = 0 if version >= 5 else 1
        if not want_rows:
            return names, base, []
        if not max_ops or not line_range:
            raise DwarfError("damaged line program header")
        rows = []
        append = rows.append
        fmt = e + ("I" if addr_size == 4 else "Q")
        p = program
        address, op_index, file, line = 0, 0, 1, 1
        while p < end:
            op = d[p]
            p += 1
            if op >= opcode_base:  # special opcode
                adj = op - opcode_base
                advance = adj // line_range
                if max_ops == 1:
                    address += min_inst * advance
                else:
                    address += min_inst * ((op_index + advance) // max_ops)
                    op_index = (op_index + advance) % max_ops
                line += line_base + adj % line_range
                append((address, file, line, False))
            elif op == 0:  # extended opcode
                size, p = uleb(d, p)
                ex = d[p]
                if ex == 1:  # end_sequence
                    append((address, file, line, True))
                    address, op_index, file, line = 0, 0, 1, 1
                    p += 1
                elif ex == 2:  # set_address
                    address, = struct.unpack_from(fmt, d, p + 1)
                    p += 1 + addr_size
                elif ex == 3:  # define_file (DWARF 2-4)
                    name, q = cstring(d, p + 1)
                    for _ in range(3):
                        _, q = uleb(d, q)
                    names.append(name.decode(errors="replace"))
                    p = q
                elif ex == 4:  # set_discriminator
                    _, p = uleb(d, p + 1)
                else:  # unknown: skipped by its length (at least its opcode byte)
                    p += max(size, 1)
            elif op == 1:  # copy
                append((address, file, line, False))
            elif op == 2:  # advance_pc
                v, p = uleb(d, p)
                address += v * min_inst
            elif op == 3:  # advance_line
                v, p = sleb(d, p)
                line += v
            elif op == 4:  # set_file
                file, p = uleb(d, p)
            elif op in (5, 12):  # set_column, set_isa
                _, p = uleb(d, p)
            elif op in (6, 7, 10, 11):  # negate_stmt, basic_block, prologue_end, epilogue_begin
                pass
            elif op == 8:  # const_add_pc
                address += ((255 - opcode_base) // line_range) * min_inst
            elif op == 9:  # fixed_advance_pc
                address += int.from_bytes(d[p:p + 2], "little" if e == "<" else "big")
                p += 2
            else:
                raise DwarfError(f"unknown standard line opcode {op}")
        return names, base, rows

    def _entries_v5(self, d: bytes, p: int, offset_size: int, out: list | None) -> int:
        """A DWARF 5 directory or file name table; the paths (DW_LNCT_path) into `out`."""
        count = d[p]
        p += 1
        formats = []
        for _ in range(count):
            ct, p = uleb(d, p)
            form, p = uleb(d, p)
            formats.append((ct, form))
        n, p = uleb(d, p)
        reader, unit = self.reader, _LineUnit(self.unit, offset_size)
        for _ in range(n):
            path = None
            for ct, form in formats:
                v, p = reader._value(unit, d, p, form, None)
                if ct == 1:  # DW_LNCT_path
                    path = v if isinstance(v, bytes) else None
            if out is not None:
                out.append(path)
        return p


class _LineUnit:
    """A unit's encoding as a line program header sees it (its own offset size)."""

    def __init__(self, unit: Unit, offset_size: int):
        self.version, self.addr_size, self.offset_size = unit.version, unit.addr_size, offset_size
