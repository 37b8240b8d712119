"""C types as memplace keeps them (`CType`), built from DWARF type DIEs or drgn types.

Type DIEs (dwarf_reader.py's, or pyelftools' where that reader cannot) become small
`CType` trees that render bytes quickly (thousands of threads x many variables). A
module whose DWARF only drgn reads has its types converted the same way.

>>> t = TypeBuilder(word=8).build(var_die.get_DIE_from_attribute("DW_AT_type"))   # doctest: +SKIP
>>> t.display(), t.size                                                            # doctest: +SKIP
('struct point', 12)
"""

from __future__ import annotations

from dataclasses import dataclass, field

ATE_boolean, ATE_float, ATE_signed, ATE_signed_char, ATE_unsigned, ATE_unsigned_char = 2, 4, 5, 6, 7, 8


@dataclass(eq=False)
class CType:
    """A C/C++ type reduced to what rendering needs."""

    kind: str  # base pointer struct union class array enum typedef void func unknown
    name: str = ""
    size: int = 0
    encoding: int = 0
    target: "CType | None" = None  # pointee, typedef target, array element
    members: list = field(default_factory=list)  # (name, byte offset, CType, bit_size, bit_offset)
    dims: list = field(default_factory=list)  # array dimensions (None = unknown)
    enumerators: dict = field(default_factory=dict)
    signed: bool = False

    def strip(self) -> "CType":
        t = self
        while t.kind == "typedef" and t.target is not None:
            t = t.target
        return t

    def display(self) -> str:
        """The type as C spells it: 'long', 'struct point', 'int [3]', 'char *'."""
        if self.kind == "pointer":
            inner = self.target.display() if self.target else "void"
            return inner + (" *" if not inner.endswith("*") else "*")
        if self.kind == "array":
            inner = self.target.display() if self.target else "?"
            return inner + " " + "".join(f"[{d if d is not None else ''}]" for d in self.dims)
        if self.kind in ("struct", "union", "enum") and self.name:
            return f"{self.kind} {self.name}"
        return self.name or self.kind


# -- DWARF -> CType -----------------------------------------------------------

def attr(die, name, default=None):
    a = die.attributes.get(name)
    return a.value if a is not None else default


class TypeBuilder:
    """CTypes from type DIEs (pyelftools' or dwarf_reader's). With `shallow_pointers`, a
    struct behind a pointer keeps its name and size but not its members, as
    `from_drgn_type` does: rendering a pointer never reads them, and libc's
    `struct link_map *` would drag in thousands of DIEs."""

    def __init__(self, word: int, shallow_pointers: bool = False):
        self.word = word
        self.shallow_pointers = shallow_pointers
        self.cache: dict[tuple[int, bool], CType] = {}

    def ref(self, die, shallow: bool = False) -> CType | None:
        if "DW_AT_type" not in die.attributes:
            return None
        try:
            return self.build(die.get_DIE_from_attribute("DW_AT_type"), shallow)
        except Exception:  # noqa: BLE001 - a broken reference is "unknown", not a crash
            return CType("unknown", "?")

    def build(self, die, shallow: bool = False) -> CType:
        key = (die.offset, shallow)
        if key in self.cache:
            return self.cache[key]
        tag = die.tag
        name = attr(die, "DW_AT_name", b"")
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        size = attr(die, "DW_AT_byte_size", 0) or 0
        t = CType("unknown", name, size)
        self.cache[key] = t  # before recursion: structs may point to themselves
        if tag == "DW_TAG_base_type":
            t.kind, t.encoding = "base", attr(die, "DW_AT_encoding", 0)
            t.signed = t.encoding in (ATE_signed, ATE_signed_char)
        elif tag in ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type",
                     "DW_TAG_ptr_to_member_type"):
            t.kind, t.size = "pointer", size or self.word
            t.target = self.ref(die, self.shallow_pointers) or CType("void", "void")
        elif tag in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                     "DW_TAG_restrict_type", "DW_TAG_atomic_type"):
            t.kind = "typedef"
            t.target = self.ref(die, shallow) or CType("void", "void")
            if tag != "DW_TAG_typedef":
                q = tag[len("DW_TAG_"):-len("_type")]
                t.name = f"{q} {t.target.display()}"
            t.size = t.target.strip().size if t.target.kind != "array" else array_size(t.target)
        elif tag in ("DW_TAG_structure_type", "DW_TAG_class_type", "DW_TAG_union_type"):
            t.kind = {"DW_TAG_structure_type": "struct", "DW_TAG_class_type": "class",
                      "DW_TAG_union_type": "union"}[tag]
            for c in die.iter_children() if not shallow else ():
                if c.tag not in ("DW_TAG_member", "DW_TAG_inheritance"):
                    continue
                if c.tag == "DW_TAG_member" and ("DW_AT_external" in c.attributes or "DW_AT_declaration" in c.attributes):
                    continue  # static data member: not stored in the object
                mname = attr(c, "DW_AT_name", b"")
                mname = mname.decode("utf-8", "replace") if isinstance(mname, bytes) else str(mname)
                mtype = self.ref(c) or CType("unknown", "?")
                if c.tag == "DW_TAG_inheritance":
                    mname = "<" + mtype.display() + ">"
                loc = attr(c, "DW_AT_data_member_location", 0)
                off = loc if isinstance(loc, int) else _const_expr(loc)
                bit_size = attr(c, "DW_AT_bit_size")
                bit_off = attr(c, "DW_AT_data_bit_offset")
                if bit_size is not None and bit_off is None and "DW_AT_bit_offset" in c.attributes:
                    # DWARF 2/3 big-endian-style bit offset within the storage unit.
                    unit = attr(c, "DW_AT_byte_size", mtype.strip().size or 4)
                    bit_off = off * 8 + unit * 8 - attr(c, "DW_AT_bit_offset") - bit_size
                t.members.append((mname, off, mtype, bit_size, bit_off))
        elif tag == "DW_TAG_array_type":
            t.kind = "array"
            t.target = self.ref(die, shallow) or CType("unknown", "?")
            for c in die.iter_children():
                if c.tag == "DW_TAG_subrange_type":
                    if "DW_AT_count" in c.attributes:
                        n = attr(c, "DW_AT_count")
                    elif "DW_AT_upper_bound" in c.attributes:
                        ub = attr(c, "DW_AT_upper_bound")
                        n = ub + 1 - (attr(c, "DW_AT_lower_bound", 0) or 0) if isinstance(ub, int) else None
                    else:
                        n = None
                    t.dims.append(n if isinstance(n, int) else None)
            t.size = array_size(t)
        elif tag == "DW_TAG_enumeration_type":
            t.kind = "enum"
            under = self.ref(die)
            t.signed = bool(under and under.strip().signed)
            for c in die.iter_children():
                if c.tag == "DW_TAG_enumerator":
                    n = attr(c, "DW_AT_name", b"")
                    t.enumerators[attr(c, "DW_AT_const_value", 0)] = n.decode() if isinstance(n, bytes) else n
            if not t.size and under:
                t.size = under.strip().size
        elif tag == "DW_TAG_subroutine_type":
            t.kind, t.name = "func", "function"
        elif tag == "DW_TAG_unspecified_type":
            t.kind = "void"
        return t


def array_size(t: CType) -> int:
    n = 1
    for d in t.dims:
        if d is None:
            return 0
        n *= d
    return n * (t.target.strip().size if t.target else 0)


def _const_expr(expr) -> int:
    """DW_AT_data_member_location as an expression (DW_OP_plus_uconst N)."""
    if isinstance(expr, list) and expr and expr[0] == 0x23:  # DW_OP_plus_uconst
        v, shift = 0, 0
        for b in expr[1:]:
            v |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        return v
    return 0


# -- drgn Type -> CType --------------------------------------------------------

def from_drgn_type(t, cache: dict, word: int, shallow: bool = False) -> CType:
    """A drgn Type as a CType.

    A pointer's target is converted `shallow`: a struct behind a pointer keeps its name
    and size but not its members (rendering a pointer never reads them), so libc's
    `struct link_map *` does not drag in thousands of types. `cache` keeps each drgn
    Type alive next to its CType: drgn makes new Type objects on access, and an id()
    of a freed one may be reused by another."""
    import drgn

    key = (id(t), shallow)
    hit = cache.get(key)
    if hit is not None:
        return hit[1]
    k = t.kind
    name = getattr(t, "name", None) or getattr(t, "tag", None) or ""
    c = CType("unknown", name or "", 0)
    cache[key] = (t, c)
    try:
        c.size = drgn.sizeof(t)
    except (TypeError, ValueError):
        c.size = 0
    if k == drgn.TypeKind.INT:
        c.kind, c.signed = "base", t.is_signed
        is_char = c.size == 1 and "char" in c.name
        c.encoding = (ATE_signed_char if t.is_signed else ATE_unsigned_char) if is_char else (
            ATE_signed if t.is_signed else ATE_unsigned)
    elif k == drgn.TypeKind.BOOL:
        c.kind, c.encoding = "base", ATE_boolean
    elif k == drgn.TypeKind.FLOAT:
        c.kind, c.encoding = "base", ATE_float
    elif k == drgn.TypeKind.POINTER:
        c.kind, c.size = "pointer", c.size or word
        c.target = from_drgn_type(t.type, cache, word, shallow=True)
    elif k == drgn.TypeKind.TYPEDEF:
        c.kind, c.target = "typedef", from_drgn_type(t.type, cache, word, shallow)
    elif k in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION, drgn.TypeKind.CLASS):
        c.kind = {drgn.TypeKind.STRUCT: "struct", drgn.TypeKind.UNION: "union", drgn.TypeKind.CLASS: "class"}[k]
        for m in (t.members or ()) if t.is_complete() and not shallow else ():
            mt = from_drgn_type(m.type, cache, word)
            if m.bit_field_size:
                c.members.append((m.name or "", m.bit_offset // 8, mt, m.bit_field_size, m.bit_offset))
            else:
                c.members.append((m.name or "", m.bit_offset // 8, mt, None, None))
    elif k == drgn.TypeKind.ARRAY:
        c.kind, c.target = "array", from_drgn_type(t.type, cache, word, shallow)
        c.dims = [t.length]
        inner = c.target.strip()
        while inner.kind == "array" and inner.dims:  # drgn nests arrays; CType keeps dims flat
            c.dims += inner.dims
            c.target = inner.target
            inner = c.target.strip()
        c.size = array_size(c)
    elif k == drgn.TypeKind.ENUM:
        c.kind, c.signed = "enum", bool(t.type is not None and t.type.is_signed)
        c.enumerators = {e.value: e.name for e in (t.enumerators or ())}
    elif k == drgn.TypeKind.VOID:
        c.kind, c.name = "void", "void"
    elif k == drgn.TypeKind.FUNCTION:
        c.kind, c.name = "func", "function"
    if k in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION, drgn.TypeKind.CLASS, drgn.TypeKind.ENUM):
        c.name = t.tag or ""
    return c
