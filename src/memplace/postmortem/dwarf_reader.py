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

from memplace.dwarf import units
from memplace.dwarf.units import DwarfError, DwarfFile, form_size
from memplace.dwarf.units import uleb as _uleb

# DWARF this reader does not handle: the caller falls back to pyelftools or drgn.
Unsupported = DwarfError

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
AT_SIBLING, TAG_VARIABLE = 0x01, 0x34
TAG = {k: "DW_TAG_" + v for k, v in _TAGS.items()}
AT = {k: "DW_AT_" + v for k, v in _ATTRS.items()}
# ref_sig8 (type units), ref_sup4/8 and strp_sup, GNU_ref_alt/strp_alt (dwz), GNU_str_index (.dwo)
REFUSED_FORMS = frozenset({0x20, 0x1C, 0x24, 0x1D, 0x1F20, 0x1F21, 0x1F02})
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
        if f in units.REF_FORMS:
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


class Unit(units.Unit):
    """A compilation unit (memplace.dwarf.units.Unit), its DIEs parsed when asked for."""

    def __init__(self, dwarf: "Dwarf", offset: int):
        super().__init__(dwarf, offset)
        if self.unit_type != units.UT_COMPILE:  # partial, type and split units fall back
            raise Unsupported(f"unit type {self.unit_type}")
        self._dies: dict[int, Die | None] = {}
        self._ends: dict[int, int] = {}
        self._layouts: dict[int, tuple] = {}

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
        ab = self.abbrevs[code]
        tag, named = self.dwarf.shape(ab)
        values, i = ab.decode(d, i, self)
        attrs = {}
        for k, name, form, block in named:
            attrs[name] = AttributeValue(form, list(values[k]) if block else values[k])
        return Die(self, offset, tag, attrs, ab.children, i)

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
            ab = self.abbrevs[code]
            size, sib_at = 0, None
            for attr, form in zip(ab.attrs, ab.forms):
                n = form_size(form, self)
                if attr == AT_SIBLING and size is not None and n in (1, 2, 4, 8) and form != 0x10:
                    sib_at = (size, n)
                size = None if size is None or n is None else size + n
            lay = self._layouts[code] = (size, sib_at, ab.tag == TAG_VARIABLE, ab.children)
        return lay

    def _offset_or_ref(self, d, i: int, n: int) -> int:
        return int.from_bytes(d[i:i + n], self.dwarf.byteorder)

    def _sibling_end(self, die: Die) -> int | None:
        a = die.attributes.get("DW_AT_sibling")
        if a is None or a.raw_form == 0x10:
            return None
        end = self.offset + a.value
        if not die.end_of_attrs <= end <= self.end:
            raise Unsupported(f"DW_AT_sibling of the DIE at {die.offset:#x} points outside it")
        return end


class Dwarf(DwarfFile):
    """The DWARF sections of one ELF file (memplace.dwarf.units.DwarfFile), with DIEs."""

    unit_class = Unit

    def __init__(self, elf):
        super().__init__(elf)
        self.word = elf.word
        self._shapes: dict[units.Abbrev, tuple] = {}

    @classmethod
    def open(cls, elf) -> "Dwarf":
        if elf.type == 1:  # ET_REL: DWARF needs relocating first
            raise Unsupported("relocatable object")
        if any(s[0] in (".gnu_debugaltlink", ".debug_types", ".debug_sup") for s in elf.sections):
            raise Unsupported("supplementary DWARF or type units")
        dwarf = cls(elf)
        if not dwarf.info or dwarf.section(".debug_abbrev") is None:
            raise Unsupported("no .debug_info/.debug_abbrev")
        return dwarf

    def units(self) -> list[Unit]:
        return [self.unit(o) for o in self.unit_starts()]

    def shape(self, ab: units.Abbrev) -> tuple:
        """(tag name, [(value index, attribute name, form, is a block)] of the attributes
        with a name here) of an abbreviation."""
        s = self._shapes.get(ab)
        if s is None:
            refused = REFUSED_FORMS.intersection(ab.forms)
            if refused:
                raise Unsupported(f"form {min(refused):#x}")
            named = tuple((k, AT[a], f, f in units.BLOCK_FORMS)
                          for k, (a, f) in enumerate(zip(ab.attrs, ab.forms)) if a in AT)
            s = self._shapes[ab] = (TAG.get(ab.tag, f"DW_TAG_{ab.tag:#x}"), named)
        return s

    def die_at(self, offset: int) -> Die:
        unit = self.unit_at(offset)
        die = unit.die_at(offset) if unit is not None else None
        if die is None:
            raise Unsupported(f"reference {offset:#x} to no DIE")
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
