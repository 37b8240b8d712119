"""A small DWARF reader for what the TLS index needs: variable DIEs and the types they name.

pyelftools costs 0.06 s to import and builds every DIE of a unit it touches; drgn indexes
all of libc6-dbg's DWARF (0.15 s) to answer twenty names. This reader parses DIEs on
demand, with the same face as pyelftools' DIEs where `dwarf_types.TypeBuilder` and
tls_variables.py look at them (`tag`, `attributes[name].form/.value`, `offset`,
`get_DIE_from_attribute`, `iter_children`, `get_parent`), and values as pyelftools gives
them (names as bytes, data forms unsigned, expressions as lists of ints).

`tls_units` finds the units that can hold a TLS variable without parsing any DIE: a
location `<const> DW_OP_form_tls_address` is a fixed byte pattern, searched in the raw
section; only the units it hits are walked, and inside them only the subtrees
(DW_AT_sibling ranges) that hold a hit.

Anything this reader does not handle (supplementary files of dwz, type units, zstd
compression, relocatable objects) raises `Unsupported`; the caller then uses pyelftools
or drgn as before.

>>> d = Dwarf.open(ElfFile("/usr/lib/debug/.build-id/xx/rest.debug"))      # doctest: +SKIP
>>> [die.tag for die in d.units()[0].iter_DIEs()][:1]                        # doctest: +SKIP
['DW_TAG_compile_unit']
"""

from __future__ import annotations

import bisect
import re
import struct

from memplace.dwarf_reader import sleb as _sleb, uleb as _uleb  # the one LEB128 decoder

SHF_COMPRESSED, ELFCOMPRESS_ZLIB = 0x800, 1


class Unsupported(Exception):
    """DWARF this reader does not handle: fall back to pyelftools or drgn."""


_TAGS = {
    0x01: "array_type", 0x02: "class_type", 0x04: "enumeration_type", 0x0B: "lexical_block",
    0x0D: "member", 0x0F: "pointer_type", 0x10: "reference_type", 0x11: "compile_unit",
    0x13: "structure_type", 0x15: "subroutine_type", 0x16: "typedef", 0x17: "union_type",
    0x1C: "inheritance", 0x1D: "inlined_subroutine", 0x1F: "ptr_to_member_type",
    0x21: "subrange_type", 0x24: "base_type", 0x26: "const_type", 0x28: "enumerator",
    0x2E: "subprogram", 0x34: "variable", 0x35: "volatile_type", 0x37: "restrict_type",
    0x39: "namespace", 0x3B: "unspecified_type", 0x41: "type_unit", 0x42: "rvalue_reference_type",
    0x47: "atomic_type", 0x4A: "skeleton_unit",
}
_ATTRS = {
    0x01: "sibling", 0x02: "location", 0x03: "name", 0x0B: "byte_size", 0x0C: "bit_offset",
    0x0D: "bit_size", 0x1C: "const_value", 0x22: "lower_bound", 0x2F: "upper_bound",
    0x31: "abstract_origin", 0x37: "count", 0x38: "data_member_location", 0x3C: "declaration",
    0x3E: "encoding", 0x3F: "external", 0x47: "specification", 0x49: "type",
    0x6B: "data_bit_offset", 0x6E: "linkage_name", 0x72: "str_offsets_base",
    0x2007: "MIPS_linkage_name",
}
TAG = {k: "DW_TAG_" + v for k, v in _TAGS.items()}
AT = {k: "DW_AT_" + v for k, v in _ATTRS.items()}
FORM_NAMES = {0x03: "DW_FORM_block2", 0x04: "DW_FORM_block4", 0x09: "DW_FORM_block",
              0x0A: "DW_FORM_block1", 0x18: "DW_FORM_exprloc", 0x17: "DW_FORM_sec_offset"}

# A TLS location: DW_OP_const8u/const4u/addr <n> or DW_OP_constu <uleb>, then
# DW_OP_form_tls_address (0x9b) or DW_OP_GNU_push_tls_address (0xe0), as an exprloc or
# block1 whose length byte comes first.
# One pattern per operand kind: each starts with a literal byte, which keeps the search
# a fast scan (one alternation with a class in front is 30 times slower on libc's 6 MB).
# Keyed by the word size: a 64-bit module's offsets are 8-byte constants, a 32-bit one's 4.
_CONSTU = re.compile(rb"\x10[\x80-\xff]{0,8}[\x00-\x7f][\x9b\xe0]")
TLS_LOCATIONS = {8: [re.compile(rb"\x0a[\x0e\x03][\s\S]{8}[\x9b\xe0]"), _CONSTU],
                 4: [re.compile(rb"\x06[\x0c\x03][\s\S]{4}[\x9b\xe0]"), _CONSTU]}


def section_bytes(elf, name: str) -> bytes | None:
    """A section's contents, decompressed if SHF_COMPRESSED (zlib); None if absent."""
    for i, s in enumerate(elf.sections):
        if s[0] != name:
            continue
        raw = elf.data[s[3]:s[3] + s[4]]  # a copy already (mmap slices are bytes)
        if len(raw) != s[4]:
            raise Unsupported(f"{name} past the end of the file")
        if not _section_flags(elf, i) & SHF_COMPRESSED:
            return raw
        hdr = "<IIQQ" if elf.elfclass == 2 else "<III"
        hdr = elf.endian + hdr[1:]
        ch_type = struct.unpack_from(hdr, raw, 0)[0]
        if ch_type != ELFCOMPRESS_ZLIB:
            raise Unsupported(f"{name} compressed with type {ch_type}")
        import zlib

        return zlib.decompress(raw[struct.calcsize(hdr):])
    return None


def _section_flags(elf, index: int) -> int:
    fmt = elf.endian + ("IIQ" if elf.elfclass == 2 else "III")
    return struct.unpack_from(fmt, elf.data, elf._shoff + index * elf._shentsize)[2]


class AttributeValue:
    __slots__ = ("form", "value", "raw_form")

    def __init__(self, form: int, value):
        self.raw_form, self.value = form, value
        self.form = FORM_NAMES.get(form, form)


class Die:
    """One DIE, its attributes parsed; children and parent found on demand."""

    __slots__ = ("cu", "offset", "tag", "attributes", "has_children", "end_of_attrs", "_parent")

    def __init__(self, cu: "Unit", offset: int, tag: str, attributes: dict, has_children: bool, end: int):
        self.cu, self.offset, self.tag, self.attributes = cu, offset, tag, attributes
        self.has_children, self.end_of_attrs, self._parent = has_children, end, None

    def get_DIE_from_attribute(self, name: str) -> "Die":
        a = self.attributes[name]
        f = a.raw_form
        if f in (0x11, 0x12, 0x13, 0x14, 0x15):
            return self.cu.die_at(self.cu.offset + a.value)
        if f == 0x10:
            return self.cu.dwarf.die_at(a.value)
        raise Unsupported(f"reference form {f:#x}")

    def iter_children(self):
        if not self.has_children:
            return
        i = self.end_of_attrs
        while True:
            die = self.cu.die_at(i)
            if die is None:
                return
            die._parent = self
            yield die
            i = self.cu.end_of(die)

    def get_parent(self) -> "Die | None":
        if self._parent is None and self.tag != "DW_TAG_compile_unit":
            self._parent = self.cu.parent_of(self.offset)
        return self._parent


class Unit:
    """A compilation unit: its header, abbreviations, and DIEs parsed when asked for."""

    def __init__(self, dwarf: "Dwarf", offset: int):
        self.dwarf, self.offset = dwarf, offset
        d = dwarf.info
        e = dwarf.endian
        length = struct.unpack_from(e + "I", d, offset)[0]
        pos, self.offsize = offset + 4, 4
        if length == 0xFFFFFFFF:
            length = struct.unpack_from(e + "Q", d, pos)[0]
            pos, self.offsize = pos + 8, 8
        self.end = pos + length
        self.version = struct.unpack_from(e + "H", d, pos)[0]
        pos += 2
        ofmt = e + ("I" if self.offsize == 4 else "Q")
        if self.version >= 5:
            unit_type, self.addr_size = d[pos], d[pos + 1]
            abbrev_off = struct.unpack_from(ofmt, d, pos + 2)[0]
            pos += 2 + self.offsize
            if unit_type != 1:  # DW_UT_compile only: partial, type and split units fall back
                raise Unsupported(f"unit type {unit_type}")
        elif self.version in (2, 3, 4):
            abbrev_off = struct.unpack_from(ofmt, d, pos)[0]
            self.addr_size = d[pos + self.offsize]
            pos += self.offsize + 1
        else:
            raise Unsupported(f"DWARF version {self.version}")
        self.first_die = pos
        self.abbrevs = dwarf.abbrev_table(abbrev_off)
        self._dies: dict[int, Die | None] = {}
        self._ends: dict[int, int] = {}
        self._layouts: dict[int, tuple] = {}
        # The unit's DIE says where its strx strings are, and may name itself with one
        # (clang's DWARF 5): read it once with strx left unresolved, then again.
        self.str_offsets_base, self._probing = None, True
        top = self._parse(pos)
        self._probing = False
        if top is not None and "DW_AT_str_offsets_base" in top.attributes:
            self.str_offsets_base = top.attributes["DW_AT_str_offsets_base"].value

    def die_at(self, offset: int) -> Die | None:
        """The DIE at a section offset (None for the null entry that ends a sibling list)."""
        if offset in self._dies:
            return self._dies[offset]
        die = self._parse(offset)
        self._dies[offset] = die
        return die

    def _parse(self, offset: int) -> Die | None:
        d = self.dwarf.info
        if offset >= self.end:
            raise Unsupported("DIE past its unit")
        code, i = _uleb(d, offset)
        if code == 0:
            self._ends[offset] = i
            return None
        try:
            tag, children, specs = self.abbrevs[code]
        except KeyError:
            raise Unsupported(f"abbreviation {code} missing") from None
        attrs = {}
        form_value = self._form_value
        for name, form, implicit in specs:
            if form == 0x21:
                value = implicit
            else:
                value, i = form_value(form, d, i)
            if name is not None:
                attrs[name] = AttributeValue(form, value)
        return Die(self, offset, tag, attrs, children, i)

    def end_of(self, die: Die) -> int:
        """The offset just past a DIE and all its descendants."""
        end = self._ends.get(die.offset)
        if end is not None:
            return end
        if die.offset == self.first_die:
            end = self.end  # the unit's DIE: everything
        elif not die.has_children:
            end = die.end_of_attrs
        elif self._sibling_end(die) is not None:
            end = self._sibling_end(die)
        else:
            i = die.end_of_attrs
            while True:
                child = self.die_at(i)
                if child is None:
                    end = self._ends[i]
                    break
                child._parent = die
                i = self.end_of(child)
        self._ends[die.offset] = end
        return end

    def parent_of(self, offset: int) -> Die | None:
        """The parent of the DIE at `offset`, found by walking down from the unit's top DIE."""
        parent, i = None, self.first_die
        while i < self.end:
            die = self.die_at(i)
            if die is None:
                return None
            if die.offset == offset:
                return parent
            end = self.end_of(die)
            if die.offset < offset < end:
                parent, i = die, die.end_of_attrs  # the DIE is under this one
            else:
                i = end
        return None

    def iter_DIEs(self, within: list[int] | None = None):
        """Every DIE in order (parents set). With `within` (sorted section offsets), only
        variables and the DIEs on the way to those offsets: subtrees holding none of them
        are skipped, and DIEs of fixed size are stepped over without being parsed."""
        stack: list[Die | None] = [None]
        i, d = self.first_die, self.dwarf.info
        while i < self.end and stack:
            if within is not None:
                code, j = _uleb(d, i)
                if code:
                    size, sib_at, is_var, children = self.layout(code)
                    if not is_var:
                        if size is not None and not children:
                            i = j + size
                            continue
                        if sib_at is not None:
                            end = self.offset + self._offset_or_ref(d, j + sib_at[0], sib_at[1])
                            if not i < end <= self.end:
                                raise Unsupported(f"DW_AT_sibling of the DIE at {i:#x} points outside it")
                            k = bisect.bisect_left(within, i)
                            if k == len(within) or within[k] >= end:
                                i = end
                                continue
            die = self.die_at(i)
            if die is None:
                stack.pop()
                i = self._ends[i]
                continue
            die._parent = stack[-1]
            yield die
            if not die.has_children:
                i = die.end_of_attrs
                continue
            if within is not None:
                end = self._sibling_end(die)
                if end is not None:
                    k = bisect.bisect_left(within, die.offset)
                    if k == len(within) or within[k] >= end:
                        i = end  # no wanted offset below this DIE
                        continue
            stack.append(die)
            i = die.end_of_attrs

    def layout(self, code: int) -> tuple:
        """(size of the attributes if fixed else None, (offset, size) of a DW_AT_sibling
        after fixed-size attributes else None, is a variable, has children) of an abbreviation."""
        lay = self._layouts.get(code)
        if lay is None:
            try:
                tag, children, specs = self.abbrevs[code]
            except KeyError:
                raise Unsupported(f"abbreviation {code} missing") from None
            size, sib_at = 0, None
            for name, form, _ in specs:
                n = self._fixed_size(form)
                if name == "DW_AT_sibling" and size is not None and n in (1, 2, 4, 8) and form != 0x10:
                    sib_at = (size, n)
                size = None if size is None or n is None else size + n
            lay = self._layouts[code] = (size, sib_at, tag == "DW_TAG_variable", children)
        return lay

    def _fixed_size(self, form: int) -> int | None:
        if form in (0x0B, 0x11, 0x0C, 0x25, 0x29):
            return 1
        if form in (0x05, 0x12, 0x26, 0x2A):
            return 2
        if form in (0x27, 0x2B):
            return 3
        if form in (0x06, 0x13, 0x28, 0x2C, 0x1C):
            return 4
        if form in (0x07, 0x14, 0x20):
            return 8
        if form in (0x0E, 0x1F, 0x17, 0x1D, 0x1F20, 0x1F21):
            return self.offsize
        if form in (0x19, 0x21):
            return 0
        if form == 0x01:
            return self.addr_size
        if form == 0x10:
            return self.addr_size if self.version == 2 else self.offsize
        if form == 0x1E:
            return 16
        return None

    def _offset_or_ref(self, d, i: int, n: int) -> int:
        return int.from_bytes(d[i:i + n], "little" if self.dwarf.endian == "<" else "big")

    def _sibling_end(self, die: Die) -> int | None:
        a = die.attributes.get("DW_AT_sibling")
        if a is None or a.raw_form == 0x10:
            return None
        end = self.offset + a.value
        if not die.end_of_attrs <= end <= self.end:
            raise Unsupported(f"DW_AT_sibling of the DIE at {die.offset:#x} points outside it")
        return end

    def _form_value(self, form: int, d, i: int):
        e = self.dwarf.endian
        if form in (0x0B, 0x11):  # data1, ref1
            return d[i], i + 1
        if form in (0x05, 0x12):  # data2, ref2
            return struct.unpack_from(e + "H", d, i)[0], i + 2
        if form in (0x06, 0x13):  # data4, ref4
            return struct.unpack_from(e + "I", d, i)[0], i + 4
        if form in (0x07, 0x14):  # data8, ref8
            return struct.unpack_from(e + "Q", d, i)[0], i + 8
        if form in (0x0E, 0x1F):  # strp, line_strp
            off = self._offset(d, i)
            table = self.dwarf.str if form == 0x0E else self.dwarf.line_str
            return _cstr(table, off), i + self.offsize
        if form == 0x08:  # string
            end = d.index(b"\0", i)
            return bytes(d[i:end]), end + 1
        if form == 0x19:  # flag_present
            return True, i
        if form == 0x0C:  # flag
            return d[i] != 0, i + 1
        if form in (0x18, 0x09):  # exprloc, block
            n, i = _uleb(d, i)
            return list(d[i:i + n]), i + n
        if form == 0x0A:  # block1
            n = d[i]
            return list(d[i + 1:i + 1 + n]), i + 1 + n
        if form == 0x03:
            n = struct.unpack_from(e + "H", d, i)[0]
            return list(d[i + 2:i + 2 + n]), i + 2 + n
        if form == 0x04:
            n = struct.unpack_from(e + "I", d, i)[0]
            return list(d[i + 4:i + 4 + n]), i + 4 + n
        if form in (0x0F, 0x15, 0x1B, 0x22, 0x23, 0x1F01):  # udata, ref_udata, addrx, *listx
            return _uleb(d, i)
        if form == 0x0D:  # sdata
            return _sleb(d, i)
        if form == 0x01:  # addr
            return int.from_bytes(d[i:i + self.addr_size], "little" if e == "<" else "big"), i + self.addr_size
        if form == 0x17:  # sec_offset
            return self._offset(d, i), i + self.offsize
        if form == 0x10:  # ref_addr
            size = self.addr_size if self.version == 2 else self.offsize
            return int.from_bytes(d[i:i + size], "little" if e == "<" else "big"), i + size
        if form in (0x25, 0x26, 0x27, 0x28, 0x1A):  # strx1-4, strx
            if form == 0x1A:
                idx, i = _uleb(d, i)
            else:
                n = form - 0x24 if form != 0x28 else 4
                idx, i = int.from_bytes(d[i:i + n], "little" if e == "<" else "big"), i + n
            return self._strx(idx), i
        if form in (0x29, 0x2A, 0x2B, 0x2C):  # addrx1-4
            n = form - 0x28
            return int.from_bytes(d[i:i + n], "little" if e == "<" else "big"), i + n
        if form == 0x1E:  # data16
            return bytes(d[i:i + 16]), i + 16
        if form == 0x16:  # indirect
            real, i = _uleb(d, i)
            return self._form_value(real, d, i)
        # ref_sig8 (type units), ref_sup4/strp_sup and GNU_ref_alt/strp_alt (dwz), GNU_str_index
        raise Unsupported(f"form {form:#x}")

    def _offset(self, d, i: int) -> int:
        return struct.unpack_from(self.dwarf.endian + ("I" if self.offsize == 4 else "Q"), d, i)[0]

    def _strx(self, idx: int) -> bytes | None:
        if self._probing:
            return None
        table = self.dwarf.str_offsets
        if table is None or self.str_offsets_base is None:
            raise Unsupported("strx without .debug_str_offsets")
        return _cstr(self.dwarf.str, self._offset(table, self.str_offsets_base + idx * self.offsize))


def _cstr(table: bytes | None, off: int) -> bytes:
    if table is None:
        raise Unsupported("string table missing")
    end = table.find(b"\0", off)
    if end < 0:
        raise Unsupported("string past its table")
    return table[off:end]


class Dwarf:
    """The DWARF sections of one ELF file, units made when asked for."""

    def __init__(self, info: bytes, abbrev: bytes, strs: bytes | None, line_str: bytes | None,
                 str_offsets: bytes | None, endian: str, word: int = 8):
        self.info, self.abbrev, self.str, self.line_str = info, abbrev, strs, line_str
        self.str_offsets, self.endian, self.word = str_offsets, endian, word
        self._abbrevs: dict[int, dict] = {}
        self._units: dict[int, Unit] = {}
        self._starts: list[int] | None = None

    @classmethod
    def open(cls, elf) -> "Dwarf":
        if elf.type == 1:  # ET_REL: DWARF needs relocating first
            raise Unsupported("relocatable object")
        if any(s[0] in (".gnu_debugaltlink", ".debug_types", ".debug_sup") for s in elf.sections):
            raise Unsupported("supplementary DWARF or type units")
        info, abbrev = section_bytes(elf, ".debug_info"), section_bytes(elf, ".debug_abbrev")
        if info is None or abbrev is None:
            raise Unsupported("no .debug_info/.debug_abbrev")
        return cls(info, abbrev, section_bytes(elf, ".debug_str"), section_bytes(elf, ".debug_line_str"),
                   section_bytes(elf, ".debug_str_offsets"), elf.endian, elf.word)

    def unit_starts(self) -> list[int]:
        if self._starts is None:
            out, i, d, e = [], 0, self.info, self.endian
            while i + 4 <= len(d):
                out.append(i)
                n = struct.unpack_from(e + "I", d, i)[0]
                i += 4 + n if n != 0xFFFFFFFF else 12 + struct.unpack_from(e + "Q", d, i + 4)[0]
            self._starts = out
        return self._starts

    def unit(self, offset: int) -> Unit:
        u = self._units.get(offset)
        if u is None:
            u = self._units[offset] = Unit(self, offset)
        return u

    def units(self) -> list[Unit]:
        return [self.unit(o) for o in self.unit_starts()]

    def die_at(self, offset: int) -> Die:
        starts = self.unit_starts()
        k = bisect.bisect_right(starts, offset) - 1
        if k < 0:
            raise Unsupported(f"reference {offset:#x} before the first unit")
        die = self.unit(starts[k]).die_at(offset)
        if die is None:
            raise Unsupported(f"reference {offset:#x} to a null entry")
        return die

    def tls_units(self) -> dict[Unit, list[int]]:
        """The units whose raw bytes hold a TLS location pattern, with the hits' offsets."""
        starts = self.unit_starts()
        out: dict[Unit, list[int]] = {}
        d = self.info
        for pattern in TLS_LOCATIONS[self.word]:
            for m in pattern.finditer(d):
                if d[m.start()] == 0x10 and (m.start() == 0 or d[m.start() - 1] != m.end() - m.start() + 1):
                    continue  # DW_OP_constu without the expression's length byte in front
                k = bisect.bisect_right(starts, m.start()) - 1
                if k >= 0:
                    out.setdefault(self.unit(starts[k]), []).append(m.start())
        for hits in out.values():
            hits.sort()
        return out

    def abbrev_table(self, offset: int) -> dict:
        t = self._abbrevs.get(offset)
        if t is not None:
            return t
        t, d, i = {}, self.abbrev, offset
        while True:
            code, i = _uleb(d, i)
            if code == 0:
                break
            tag, i = _uleb(d, i)
            children = d[i] != 0
            i += 1
            specs = []
            while True:
                name = d[i]  # most names and forms fit one byte: decoded inline
                if name < 0x80:
                    i += 1
                else:
                    name, i = _uleb(d, i)
                form = d[i]
                if form < 0x80:
                    i += 1
                else:
                    form, i = _uleb(d, i)
                if name == 0 and form == 0:
                    break
                implicit = None
                if form == 0x21:
                    implicit, i = _sleb(d, i)
                specs.append((AT.get(name) if name in AT else None, form, implicit))
            t[code] = (TAG.get(tag, f"DW_TAG_{tag:#x}"), children, specs)
        self._abbrevs[offset] = t
        return t
