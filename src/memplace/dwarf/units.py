"""DWARF 2-5 units over one ELF file's sections: unit headers (32- and 64-bit, DW_UT_*
kinds), abbreviations, attribute forms, and the string, string-offset and address tables.

Values as pyelftools gives them: strings as bytes (string, strp, line_strp, and strx
through .debug_str_offsets), blocks and expressions as bytes, flag as bool, flag_present
True, implicit_const its constant, every other form an int (addrx and the *listx forms:
the index; references: the offset as encoded).

Each abbreviation is compiled once per unit encoding (`Abbrev`): a run of fixed-size
attributes is one struct unpack, any other attribute one small function; attribute
decoding in both readers is that loop and nothing else.

    >>> from memplace.elf import ElfFile
    >>> dwarf = DwarfFile(ElfFile("/bin/sh"))
    >>> all(dwarf.unit(o).version in (2, 3, 4, 5) for o in dwarf.unit_starts())
    True
"""

from __future__ import annotations

import bisect
import struct
from collections import namedtuple

from memplace.errors import UserError

AT_STR_OFFSETS_BASE, AT_ADDR_BASE = 0x72, 0x73
UT_COMPILE = 1
FORM_ADDR, FORM_STRING, FORM_STRP, FORM_REF_ADDR, FORM_INDIRECT = 0x01, 0x08, 0x0E, 0x10, 0x16
FORM_FLAG_PRESENT, FORM_LINE_STRP, FORM_IMPLICIT_CONST, FORM_SDATA = 0x19, 0x1F, 0x21, 0x0D
REF_FORMS = frozenset({0x11, 0x12, 0x13, 0x14, 0x15})  # ref1 ref2 ref4 ref8 ref_udata: unit-relative
BLOCK_FORMS = frozenset({0x03, 0x04, 0x09, 0x0A, 0x18})  # block2 block4 block block1 exprloc

# The forms, as data: a struct code where the form fixes the size; the ones sized by the
# unit's offset size; the ULEB128 ones; the 3-byte ones; the string index ones.
_FIXED = {0x0B: "B", 0x11: "B", 0x0C: "?", 0x25: "B", 0x29: "B",  # data1 ref1 flag strx1 addrx1
          0x05: "H", 0x12: "H", 0x26: "H", 0x2A: "H",  # data2 ref2 strx2 addrx2
          0x06: "I", 0x13: "I", 0x1C: "I", 0x28: "I", 0x2C: "I",  # data4 ref4 ref_sup4 strx4 addrx4
          0x07: "Q", 0x14: "Q", 0x20: "Q", 0x24: "Q", 0x1E: "16s"}  # data8 ref8 sig8 sup8 data16
_OFFSET_SIZED = frozenset({0x0E, 0x1F, 0x17, 0x1D, 0x1F20, 0x1F21})  # strp line_strp sec_offset *sup *alt
_ULEB = frozenset({0x0F, 0x15, 0x1A, 0x1B, 0x22, 0x23, 0x1F01, 0x1F02})  # udata ref_udata strx addrx *listx GNU_*_index
_THREE = frozenset({0x27, 0x2B})  # strx3 addrx3
_STRX = frozenset({0x1A, 0x25, 0x26, 0x27, 0x28})
_SIZE_CODE = {1: "B", 2: "H", 4: "I", 8: "Q"}


class DwarfError(Exception):
    """DWARF these readers cannot follow: damaged, or a form or kind of unit they do not read."""


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


def initial_length(d: bytes, p: int, endian: str) -> tuple[int, int, int]:
    """(end, offset size, where the rest starts) of a unit or table that starts at p with
    a DWARF initial length (0xffffffff then 8 bytes: 64-bit DWARF)."""
    length, = struct.unpack_from(endian + "I", d, p)
    if length == 0xFFFFFFFF:
        length, = struct.unpack_from(endian + "Q", d, p + 4)
        return p + 12 + length, 8, p + 12
    return p + 4 + length, 4, p + 4


# -- attribute values -------------------------------------------------------------

def _code(form: int, unit: "Encoding") -> str | None:
    """The struct code of a form whose size the unit's encoding fixes, else None."""
    code = _FIXED.get(form)
    if code is not None:
        return code
    if form in _OFFSET_SIZED:
        return "I" if unit.offset_size == 4 else "Q"
    if form == FORM_ADDR:
        return _SIZE_CODE.get(unit.addr_size)
    if form == FORM_REF_ADDR:
        return _SIZE_CODE.get(unit.addr_size if unit.version <= 2 else unit.offset_size)
    return None


def form_size(form: int, unit: "Encoding") -> int | None:
    """The size of a form's value in a unit, if the form and the unit fix it."""
    if form == FORM_FLAG_PRESENT or form == FORM_IMPLICIT_CONST:
        return 0
    if form in _THREE:
        return 3
    code = _code(form, unit)
    return None if code is None else struct.calcsize("<" + code)


_BLOCK_LEN = {0x0A: 1, 0x03: 2, 0x04: 4}  # block1 block2 block4: a length of this size, then the bytes


def _reader(form: int, const, endian: str):
    """fn(d, p, unit) -> (value, next p) for a form not of a fixed struct size."""
    order = "little" if endian == "<" else "big"
    if form in _ULEB:
        return lambda d, p, u: uleb(d, p)
    if form in _THREE:
        return lambda d, p, u: (int.from_bytes(d[p:p + 3], order), p + 3)
    if form in _BLOCK_LEN or form in (0x09, 0x18):  # and block, exprloc: a ULEB128 length
        size = _BLOCK_LEN.get(form)

        def block(d, p, u):
            if size is None:
                n, p = uleb(d, p)
            else:
                n, p = int.from_bytes(d[p:p + size], order), p + size
            return d[p:p + n], p + n
        return block
    if form == FORM_INDIRECT:
        def indirect(d, p, u):
            real, p = uleb(d, p)
            if real == FORM_INDIRECT:
                raise DwarfError("DW_FORM_indirect to DW_FORM_indirect")
            return read_value(real, d, p, u)
        return indirect
    return {FORM_SDATA: lambda d, p, u: sleb(d, p), FORM_STRING: lambda d, p, u: cstring(d, p),
            FORM_FLAG_PRESENT: lambda d, p, u: (True, p),
            FORM_IMPLICIT_CONST: lambda d, p, u: (const, p)}.get(form)


# After decoding: string offsets and indexes to the strings.
_POST = {FORM_STRP: lambda v, u: u.dwarf.strp(v), FORM_LINE_STRP: lambda v, u: u.dwarf.line_strp(v),
         **{f: lambda v, u: u.strx(v) for f in _STRX}}


class Abbrev:
    """One abbreviation compiled for one unit encoding: `decode(d, p, unit)` gives the
    attributes' values in order and where the entry ends; `size` is the attributes' size
    when fixed (a DIE to step over without reading)."""

    __slots__ = ("tag", "children", "attrs", "forms", "size", "_steps", "_posts")

    def __init__(self, tag: int, children: bool, specs: list, unit: "Encoding", endian: str):
        self.tag, self.children = tag, children
        self.attrs = tuple(a for a, _, _ in specs)
        self.forms = tuple(f for _, f, _ in specs)
        steps: list = []
        posts: list = []
        run = ""
        size: int | None = 0
        for k, (_, form, const) in enumerate(specs):
            n = form_size(form, unit)
            size = None if size is None or n is None else size + n
            code = _code(form, unit) if n else None
            if code is not None:
                run += code
            else:
                if run:
                    steps.append((struct.Struct(endian + run), None))
                    run = ""
                fn = _reader(form, const, endian)
                if fn is None:
                    raise DwarfError(f"unknown DWARF form {form:#x}")
                steps.append((None, fn))
            if form in _POST:
                posts.append((k, _POST[form]))
        if run:
            steps.append((struct.Struct(endian + run), None))
        self.size, self._steps, self._posts = size, tuple(steps), tuple(posts)

    def decode(self, d: bytes, p: int, unit: "Unit") -> tuple[list, int]:
        values: list = []
        for st, fn in self._steps:
            if st is not None:
                values += st.unpack_from(d, p)
                p += st.size
            else:
                v, p = fn(d, p, unit)
                values.append(v)
        for k, post in self._posts:
            values[k] = post(values[k], unit)
        return values, p

    def skip(self, d: bytes, p: int, unit: "Unit") -> int:
        """Where the entry's attributes end (strings and tables not looked up)."""
        if self.size is not None:
            return p + self.size
        for st, fn in self._steps:
            p = p + st.size if st is not None else fn(d, p, unit)[1]
        return p


# What a form's size depends on (a unit, or a line program header with its own offset size).
Encoding = namedtuple("Encoding", "version offset_size addr_size")

_ONE_FORM: dict = {}


def read_value(form: int, d: bytes, p: int, unit, encoding: Encoding | None = None) -> tuple[object, int]:
    """One attribute value (of a form met outside an abbreviation: DW_FORM_indirect, line
    program headers); `encoding` when it is not the unit's own."""
    enc = encoding or unit
    key = (form, enc.version, enc.offset_size, enc.addr_size, unit.dwarf.endian)
    ab = _ONE_FORM.get(key)
    if ab is None:
        ab = _ONE_FORM[key] = Abbrev(0, False, [(0, form, None)], enc, unit.dwarf.endian)
    values, p = ab.decode(d, p, unit)
    return values[0], p


class Abbrevs(dict):
    """A unit's abbreviation table, code -> Abbrev, read only as far as the codes asked
    for (a unit's own entry needs the first one, and most units are never walked)."""

    def __init__(self, d: bytes, offset: int, unit: Encoding, endian: str):
        super().__init__()
        self.d, self.p, self.enc, self.endian = d, offset, unit, endian

    def __missing__(self, code: int) -> Abbrev:
        d, p = self.d, self.p
        while p is not None:
            c, p = uleb(d, p)
            if c == 0:
                p = None
                break
            tag, p = uleb(d, p)
            children = d[p] != 0
            p += 1
            specs = []
            while True:
                attr = d[p]  # most attribute and form codes fit one byte
                if attr < 0x80:
                    p += 1
                else:
                    attr, p = uleb(d, p)
                form = d[p]
                if form < 0x80:
                    p += 1
                else:
                    form, p = uleb(d, p)
                if attr == 0 and form == 0:
                    break
                const = None
                if form == FORM_IMPLICIT_CONST:
                    const, p = sleb(d, p)
                specs.append((attr, form, const))
            self[c] = Abbrev(tag, children, specs, self.enc, self.endian)
            if c == code:
                break
        self.p = p
        if code not in self:
            raise DwarfError(f"abbreviation {code} not found")
        return dict.__getitem__(self, code)


# -- units -------------------------------------------------------------------------

class Unit:
    """One unit of .debug_info: its header, abbreviations, and its own DIE's attributes
    (`top`: attribute -> (form, value), the first of a repeated attribute)."""

    def __init__(self, dwarf: "DwarfFile", offset: int):
        d, e = dwarf.info, dwarf.endian
        self.dwarf, self.offset = dwarf, offset
        self.end, self.offset_size, p = initial_length(d, offset, e)
        self.version, = struct.unpack_from(e + "H", d, p)
        p += 2
        off_fmt = e + ("I" if self.offset_size == 4 else "Q")
        if self.version == 5:
            self.unit_type, self.addr_size = d[p], d[p + 1]
            self.abbrev_offset, = struct.unpack_from(off_fmt, d, p + 2)
            p += 2 + self.offset_size
            if self.unit_type in (4, 5):  # skeleton, split_compile: a dwo id
                p += 8
            elif self.unit_type in (2, 6):  # type, split_type: a signature and the type's offset
                p += 8 + self.offset_size
        elif self.version in (2, 3, 4):
            self.unit_type = UT_COMPILE
            self.abbrev_offset, = struct.unpack_from(off_fmt, d, p)
            self.addr_size = d[p + self.offset_size]
            p += self.offset_size + 1
        else:
            raise DwarfError(f"DWARF version {self.version} in the unit at {offset:#x}")
        self.first_die = p
        self.abbrevs = dwarf.abbrevs(self)
        self.top: dict[int, tuple[int, object]] = {}
        # The unit's own DIE says where its strx strings are, and may name itself with one
        # (clang's DWARF 5): read once with strx unresolved, then again if it had any.
        self.str_offsets_base = self.addr_base = None
        self._probing = True
        if p < self.end:
            code, q = uleb(d, p)
            if code:
                ab = self.abbrevs[code]
                self.top = self._top(ab, d, q)
                self._probing = False
                self.str_offsets_base = self.top.get(AT_STR_OFFSETS_BASE, (0, None))[1]
                self.addr_base = self.top.get(AT_ADDR_BASE, (0, None))[1]
                if any(f in _STRX or f == FORM_INDIRECT for f in ab.forms):
                    self.top = self._top(ab, d, q)
        self._probing = False

    def _top(self, ab: Abbrev, d: bytes, p: int) -> dict:
        top: dict = {}
        for attr, form, v in zip(ab.attrs, ab.forms, ab.decode(d, p, self)[0]):
            top.setdefault(attr, (form, v))
        return top

    def strx(self, index: int) -> bytes | None:
        """The string of a DW_FORM_strx* index (None while the unit's own DIE is read)."""
        if self._probing:
            return None
        table = self.dwarf.section(".debug_str_offsets")
        if table is None or self.str_offsets_base is None:
            raise DwarfError("DW_FORM_strx without .debug_str_offsets")
        at = self.str_offsets_base + index * self.offset_size
        off = int.from_bytes(table[at:at + self.offset_size], self.dwarf.byteorder)
        return self.dwarf.strp(off)

    def addr(self, index: int) -> int:
        """The address of a DW_FORM_addrx* / DW_RLE_*x index."""
        d = self.dwarf.section(".debug_addr")
        if d is None or self.addr_base is None:
            raise DwarfError("an indexed address without .debug_addr")
        at = self.addr_base + index * self.addr_size
        return int.from_bytes(d[at:at + self.addr_size], self.dwarf.byteorder)


def _table_string(table: bytes | None, off: int, name: str) -> bytes:
    if table is None:
        raise DwarfError(f"no {name} section")
    end = table.find(b"\0", off)
    if end < 0:
        raise DwarfError(f"a string past the end of {name}")
    return table[off:end]


class DwarfFile:
    """The DWARF sections of one ELF file (decompressed when compressed), its units made
    when asked for. The readers subclass it, and may make their own `unit_class`."""

    unit_class = Unit

    def __init__(self, elf):
        self.elf, self.endian = elf, elf.endian
        self.byteorder = "little" if elf.endian == "<" else "big"
        self._sections: dict[str, bytes | None] = {}
        self._abbrev_tables: dict[tuple, Abbrevs] = {}
        self._units: dict[int, Unit] = {}
        self._starts: list[int] | None = None
        self.info = self.section(".debug_info") or b""

    def section(self, name: str) -> bytes | None:
        """A section's bytes, decompressed (SHF_COMPRESSED or .zdebug_*); None if absent
        or compressed in a way not read (a damaged one: DwarfError)."""
        if name not in self._sections:
            try:
                self._sections[name] = self.elf.section_data(name)
            except UserError as e:
                raise DwarfError(str(e)) from None
        return self._sections[name]

    def strp(self, offset: int) -> bytes:
        return _table_string(self.section(".debug_str"), offset, ".debug_str")

    def line_strp(self, offset: int) -> bytes:
        return _table_string(self.section(".debug_line_str"), offset, ".debug_line_str")

    def unit_starts(self) -> list[int]:
        """The offsets of the units of .debug_info, from their lengths alone."""
        if self._starts is None:
            out, p, d = [], 0, self.info
            while p + 11 <= len(d):  # the smallest unit header
                out.append(p)
                p = initial_length(d, p, self.endian)[0]
            self._starts = out
        return self._starts

    def unit(self, offset: int) -> Unit:
        """The unit that starts at a .debug_info offset."""
        u = self._units.get(offset)
        if u is None:
            u = self._units[offset] = self.unit_class(self, offset)
        return u

    def unit_at(self, offset: int) -> Unit | None:
        """The unit holding a .debug_info offset."""
        starts = self.unit_starts()
        k = bisect.bisect_right(starts, offset) - 1
        if k < 0:
            return None
        u = self.unit(starts[k])
        return u if offset < u.end else None

    def abbrevs(self, unit: Unit) -> Abbrevs:
        key = (unit.abbrev_offset, unit.version, unit.offset_size, unit.addr_size)
        table = self._abbrev_tables.get(key)
        if table is None:
            d = self.section(".debug_abbrev")
            if d is None:
                raise DwarfError("no .debug_abbrev section")
            enc = Encoding(unit.version, unit.offset_size, unit.addr_size)
            table = self._abbrev_tables[key] = Abbrevs(d, unit.abbrev_offset, enc, self.endian)
        return table
