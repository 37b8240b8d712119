"""TLS variables of a module and their values, rendered by DWARF type.

pyelftools reads the DWARF once per module; its type DIEs become small `CType`
trees that render bytes quickly (thousands of threads x many variables). The
text follows gdb's `print` format (`{x = 1, y = 2}`, `{0, 7, 0}`, `0x... <sym>`)
so the two can be compared; `--json` gets plain Python values.

>>> vars_ = tls_variables(target.exe)                          # doctest: +SKIP
>>> v = vars_[0]; render(v.type, data, target)                  # doctest: +SKIP
(42, '42')
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from memplace.postmortem.elfcore import ElfFile, Symbol

DW_OP_addr, DW_OP_const4u, DW_OP_const8u, DW_OP_constu = 0x03, 0x0C, 0x0E, 0x10
DW_OP_form_tls_address, DW_OP_GNU_push_tls_address = 0x9B, 0xE0
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


@dataclass
class TlsVar:
    """A thread-local variable: its module-relative offset, size and type (None: no debug info)."""

    name: str
    offset: int
    size: int
    type: CType | None


# -- DWARF -> CType -----------------------------------------------------------

def _attr(die, name, default=None):
    a = die.attributes.get(name)
    return a.value if a is not None else default


class _TypeBuilder:
    def __init__(self, word: int):
        self.word = word
        self.cache: dict[int, CType] = {}

    def ref(self, die) -> CType | None:
        if "DW_AT_type" not in die.attributes:
            return None
        try:
            return self.build(die.get_DIE_from_attribute("DW_AT_type"))
        except Exception:  # noqa: BLE001 - a broken reference is "unknown", not a crash
            return CType("unknown", "?")

    def build(self, die) -> CType:
        key = die.offset
        if key in self.cache:
            return self.cache[key]
        tag = die.tag
        name = _attr(die, "DW_AT_name", b"")
        name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
        size = _attr(die, "DW_AT_byte_size", 0) or 0
        t = CType("unknown", name, size)
        self.cache[key] = t  # before recursion: structs may point to themselves
        if tag == "DW_TAG_base_type":
            t.kind, t.encoding = "base", _attr(die, "DW_AT_encoding", 0)
            t.signed = t.encoding in (ATE_signed, ATE_signed_char)
        elif tag in ("DW_TAG_pointer_type", "DW_TAG_reference_type", "DW_TAG_rvalue_reference_type",
                     "DW_TAG_ptr_to_member_type"):
            t.kind, t.size = "pointer", size or self.word
            t.target = self.ref(die) or CType("void", "void")
        elif tag in ("DW_TAG_typedef", "DW_TAG_const_type", "DW_TAG_volatile_type",
                     "DW_TAG_restrict_type", "DW_TAG_atomic_type"):
            t.kind = "typedef"
            t.target = self.ref(die) or CType("void", "void")
            if tag != "DW_TAG_typedef":
                q = tag[len("DW_TAG_"):-len("_type")]
                t.name = f"{q} {t.target.display()}"
            t.size = t.target.strip().size if t.target.kind != "array" else _array_size(t.target)
        elif tag in ("DW_TAG_structure_type", "DW_TAG_class_type", "DW_TAG_union_type"):
            t.kind = {"DW_TAG_structure_type": "struct", "DW_TAG_class_type": "class",
                      "DW_TAG_union_type": "union"}[tag]
            for c in die.iter_children():
                if c.tag not in ("DW_TAG_member", "DW_TAG_inheritance"):
                    continue
                if c.tag == "DW_TAG_member" and ("DW_AT_external" in c.attributes or "DW_AT_declaration" in c.attributes):
                    continue  # static data member: not stored in the object
                mname = _attr(c, "DW_AT_name", b"")
                mname = mname.decode("utf-8", "replace") if isinstance(mname, bytes) else str(mname)
                mtype = self.ref(c) or CType("unknown", "?")
                if c.tag == "DW_TAG_inheritance":
                    mname = "<" + mtype.display() + ">"
                loc = _attr(c, "DW_AT_data_member_location", 0)
                off = loc if isinstance(loc, int) else _const_expr(loc)
                bit_size = _attr(c, "DW_AT_bit_size")
                bit_off = _attr(c, "DW_AT_data_bit_offset")
                if bit_size is not None and bit_off is None and "DW_AT_bit_offset" in c.attributes:
                    # DWARF 2/3 big-endian-style bit offset within the storage unit.
                    unit = _attr(c, "DW_AT_byte_size", mtype.strip().size or 4)
                    bit_off = off * 8 + unit * 8 - _attr(c, "DW_AT_bit_offset") - bit_size
                t.members.append((mname, off, mtype, bit_size, bit_off))
        elif tag == "DW_TAG_array_type":
            t.kind = "array"
            t.target = self.ref(die) or CType("unknown", "?")
            for c in die.iter_children():
                if c.tag == "DW_TAG_subrange_type":
                    if "DW_AT_count" in c.attributes:
                        n = _attr(c, "DW_AT_count")
                    elif "DW_AT_upper_bound" in c.attributes:
                        ub = _attr(c, "DW_AT_upper_bound")
                        n = ub + 1 - (_attr(c, "DW_AT_lower_bound", 0) or 0) if isinstance(ub, int) else None
                    else:
                        n = None
                    t.dims.append(n if isinstance(n, int) else None)
            t.size = _array_size(t)
        elif tag == "DW_TAG_enumeration_type":
            t.kind = "enum"
            under = self.ref(die)
            t.signed = bool(under and under.strip().signed)
            for c in die.iter_children():
                if c.tag == "DW_TAG_enumerator":
                    n = _attr(c, "DW_AT_name", b"")
                    t.enumerators[_attr(c, "DW_AT_const_value", 0)] = n.decode() if isinstance(n, bytes) else n
            if not t.size and under:
                t.size = under.strip().size
        elif tag == "DW_TAG_subroutine_type":
            t.kind, t.name = "func", "function"
        elif tag == "DW_TAG_unspecified_type":
            t.kind = "void"
        return t


def _array_size(t: CType) -> int:
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


def _tls_offset(expr) -> int | None:
    """The TLS block offset from a location expression `<const> DW_OP_(GNU_push|form)_tls_address`."""
    if not isinstance(expr, list) or len(expr) < 2 or expr[-1] not in (DW_OP_form_tls_address,
                                                                        DW_OP_GNU_push_tls_address):
        return None
    op, body = expr[0], bytes(expr[1:-1])
    if op == DW_OP_const8u and len(body) == 8:
        return int.from_bytes(body, "little")
    if op == DW_OP_const4u and len(body) == 4:
        return int.from_bytes(body, "little")
    if op in (DW_OP_addr,) and len(body) in (4, 8):
        return int.from_bytes(body, "little")
    if op == DW_OP_constu:
        v, shift = 0, 0
        for b in body:
            v |= (b & 0x7F) << shift
            shift += 7
        return v
    return None


_DWARF_CACHE: dict[str, list[TlsVar] | None] = {}
SMALL_DWARF = 256 << 10  # .debug_info bytes (often compressed) below which a pyelftools scan is quick


def _debug_file(elf: ElfFile) -> ElfFile | None:
    """The file holding `elf`'s DWARF: itself, or /usr/lib/debug/.build-id/xx/rest.debug."""
    if elf.section(".debug_info") is not None:
        return elf
    b = elf.build_id
    if b is not None and len(b) > 1:
        h = b.hex()
        root = os.environ.get("MEMPLACE_DEBUG_ROOT", "/usr/lib/debug")
        p = os.path.join(root, ".build-id", h[:2], h[2:] + ".debug")
        if os.path.isfile(p):
            try:
                dbg = ElfFile(p)
            except Exception:  # noqa: BLE001 - unusable debug file: as if absent
                return None
            if dbg.section(".debug_info") is not None:
                return dbg
    return None


def dwarf_tls_variables(elf: ElfFile, names: set[str] | None = None) -> list[TlsVar] | None:
    """TLS variables described by DWARF for a module (None if it has no debug info).

    Small DWARF is scanned whole with pyelftools; large DWARF (a libc with its
    -dbg package) is asked through drgn's index, one STT_TLS symbol at a time."""
    dbg = _debug_file(elf)
    if dbg is None:
        return None
    info = dbg.section(".debug_info")
    if info[4] > SMALL_DWARF:
        return _drgn_tls_variables(elf, dbg, names)
    if dbg.path in _DWARF_CACHE:
        return _DWARF_CACHE[dbg.path]
    syms = {s.name: s for s in elf.tls_symbols}
    syms.update({s.name: s for s in dbg.tls_symbols if s.name not in syms})
    out = _pyelftools_tls_variables(dbg.path, elf.word, syms)
    _DWARF_CACHE[dbg.path] = out
    return out


def _pyelftools_tls_variables(path: str, word: int, symbols: dict[str, Symbol]) -> list[TlsVar] | None:
    """TLS variables from DWARF. Those with a TLS location expression carry their offset;
    GCC on aarch64 gives TLS variables no DW_AT_location at all, so a located-nowhere
    variable definition takes its offset from the module's STT_TLS symbol of that name."""
    from elftools.elf.elffile import ELFFile  # deferred: only modules with DWARF pay for it

    out: list[TlsVar] = []
    unlocated: dict[str, list] = {}  # symbol name -> [(qualified name, type)] of location-less definitions
    try:
        with open(path, "rb") as f:
            ef = ELFFile(f)
            if not ef.has_dwarf_info():
                return None
            dwarf = ef.get_dwarf_info()
            builder = _TypeBuilder(word)
            for cu in dwarf.iter_CUs():
                for die in cu.iter_DIEs():
                    if die.tag != "DW_TAG_variable":
                        continue
                    if "DW_AT_location" not in die.attributes:
                        if symbols and "DW_AT_declaration" not in die.attributes and "DW_AT_name" in die.attributes:
                            _note_unlocated(die, symbols, builder, unlocated)
                        continue
                    loc = die.attributes["DW_AT_location"]
                    if loc.form not in ("DW_FORM_exprloc", "DW_FORM_block1", "DW_FORM_block"):
                        continue
                    off = _tls_offset(loc.value)
                    if off is None:
                        continue
                    decl = die
                    if "DW_AT_specification" in die.attributes:
                        decl = die.get_DIE_from_attribute("DW_AT_specification")
                    elif "DW_AT_abstract_origin" in die.attributes:
                        decl = die.get_DIE_from_attribute("DW_AT_abstract_origin")
                    name = _qualified_name(decl)
                    ctype = builder.ref(decl) or builder.ref(die)
                    size = ctype.strip().size if ctype else 0
                    if ctype is not None and ctype.kind == "array":
                        size = ctype.size
                    out.append(TlsVar(name, off, size, ctype))
    except Exception:  # noqa: BLE001 - corrupt DWARF: fall back to symbols, never crash
        return None
    located = {v.name for v in out}
    for sym_name, defs in unlocated.items():
        # One definition per symbol, else we cannot tell which CU's static it is: raw bytes then.
        if len(defs) == 1 and defs[0][0] not in located:
            name, ctype = defs[0]
            s = symbols[sym_name]
            size = (ctype.size if ctype.kind == "array" else ctype.strip().size) if ctype else s.size
            out.append(TlsVar(name, s.value, size or s.size, ctype))
    return out


def _note_unlocated(die, symbols: dict[str, Symbol], builder: "_TypeBuilder", unlocated: dict) -> None:
    """Remember a location-less variable definition whose (linkage) name is an STT_TLS symbol."""
    link = _attr(die, "DW_AT_linkage_name") or _attr(die, "DW_AT_MIPS_linkage_name")
    link = link.decode("utf-8", "replace") if isinstance(link, bytes) else link
    name = _attr(die, "DW_AT_name", b"")
    name = name.decode("utf-8", "replace") if isinstance(name, bytes) else str(name)
    sym = link if link in symbols else name if name in symbols else None
    if sym is None:
        return
    ctype = builder.ref(die)
    if ctype is not None and symbols[sym].size and ctype.strip().size not in (0, symbols[sym].size) \
            and ctype.kind != "array":
        return  # a same-named variable of another size: not this TLS symbol
    unlocated.setdefault(sym, []).append((_qualified_name(die), ctype))


_DRGN_PROGS: dict[str, object] = {}


def _drgn_tls_variables(elf: ElfFile, dbg: ElfFile, names: set[str] | None) -> list[TlsVar] | None:
    """Types of a big module's TLS symbols through drgn (None if drgn is not installed)."""
    try:
        import logging

        import drgn
    except ImportError:
        return None
    logging.getLogger("drgn").setLevel(logging.CRITICAL)  # drgn warns about TLS opcodes it lacks
    prog = _DRGN_PROGS.get(dbg.path)
    if prog is None:
        arch = {62: drgn.Architecture.X86_64, 3: drgn.Architecture.I386, 183: drgn.Architecture.AARCH64}.get(elf.machine)
        if arch is None:
            return None
        flags = drgn.PlatformFlags.IS_LITTLE_ENDIAN | (drgn.PlatformFlags.IS_64_BIT if elf.word == 8 else 0)
        prog = drgn.Program(drgn.Platform(arch, flags))
        mod = prog.extra_module(os.path.basename(elf.path), 0, create=True)
        mod.address_range = (1 << 20, 1 << 40)
        try:
            mod.try_file(dbg.path, force=True)
        except Exception:  # noqa: BLE001
            return None
        _DRGN_PROGS[dbg.path] = prog
    syms = {s.name: s for s in elf.tls_symbols}
    syms.update({s.name: s for s in dbg.tls_symbols if s.name not in syms})
    out = []
    for s in sorted(syms.values(), key=lambda s: s.value):
        if names and s.name not in names:
            continue
        ctype = None
        try:
            obj = prog.object(s.name)
            # Only an absent object whose location drgn could not evaluate is a TLS variable;
            # a present one is a same-named static elsewhere.
            if obj.absent_ and _drgn_size(obj.type_) in (s.size, None):
                ctype = _from_drgn(obj.type_, {}, elf.word)
        except Exception:  # noqa: BLE001 - lookup failures leave raw bytes
            ctype = None
        out.append(TlsVar(s.name, s.value, s.size, ctype))
    return out


def _drgn_size(t) -> int | None:
    import drgn

    try:
        return drgn.sizeof(t)
    except (TypeError, ValueError):
        return None


def _from_drgn(t, cache: dict, word: int) -> CType:
    """A drgn Type as a CType."""
    import drgn

    key = id(t)
    if key in cache:
        return cache[key]
    k = t.kind
    name = getattr(t, "name", None) or getattr(t, "tag", None) or ""
    c = CType("unknown", name or "", 0)
    cache[key] = c
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
        c.target = _from_drgn(t.type, cache, word)
    elif k == drgn.TypeKind.TYPEDEF:
        c.kind, c.target = "typedef", _from_drgn(t.type, cache, word)
    elif k in (drgn.TypeKind.STRUCT, drgn.TypeKind.UNION, drgn.TypeKind.CLASS):
        c.kind = {drgn.TypeKind.STRUCT: "struct", drgn.TypeKind.UNION: "union", drgn.TypeKind.CLASS: "class"}[k]
        for m in (t.members or ()) if t.is_complete() else ():
            mt = _from_drgn(m.type, cache, word)
            if m.bit_field_size:
                c.members.append((m.name or "", m.bit_offset // 8, mt, m.bit_field_size, m.bit_offset))
            else:
                c.members.append((m.name or "", m.bit_offset // 8, mt, None, None))
    elif k == drgn.TypeKind.ARRAY:
        c.kind, c.target = "array", _from_drgn(t.type, cache, word)
        c.dims = [t.length]
        inner = c.target.strip()
        while inner.kind == "array" and inner.dims:  # drgn nests arrays; CType keeps dims flat
            c.dims += inner.dims
            c.target = inner.target
            inner = c.target.strip()
        c.size = _array_size(c)
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


def _qualified_name(die) -> str:
    n = _attr(die, "DW_AT_name", b"?")
    parts = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)]
    p = die.get_parent()
    while p is not None and p.tag in ("DW_TAG_namespace", "DW_TAG_structure_type", "DW_TAG_class_type",
                                      "DW_TAG_subprogram"):
        pn = _attr(p, "DW_AT_name", b"")
        pn = pn.decode("utf-8", "replace") if isinstance(pn, bytes) else str(pn)
        parts.append(pn or "(anonymous)")
        p = p.get_parent()
    return "::".join(reversed(parts))


def tls_variables(module, names: set[str] | None = None) -> list[TlsVar]:
    """Every TLS variable of a module: DWARF-typed where debug info exists, else STT_TLS symbols."""
    if module.tls is None:
        return []
    syms = module.elf.tls_symbols
    if names:
        dbg = _debug_file(module.elf)
        known = {s.name for s in syms} | ({s.name for s in dbg.tls_symbols} if dbg is not None else set())
        small = dbg is not None and dbg.section(".debug_info")[4] <= SMALL_DWARF
        if not small and not (known & names):
            return []  # the symbols say the names are not here: skip the DWARF
    dw = dwarf_tls_variables(module.elf, names)
    if dw is None:
        return [TlsVar(s.name, s.value, s.size, None) for s in syms]
    # DWARF may omit variables from objects built without -g: add their symbols raw.
    have = {v.name for v in dw} | {v.name.rsplit("::", 1)[-1] for v in dw}
    return dw + [TlsVar(s.name, s.value, s.size, None) for s in syms if s.name not in have]


# -- rendering ---------------------------------------------------------------

class Renderer:
    """Turns bytes into (json value, gdb-style text) for CTypes; names pointer targets."""

    def __init__(self, endian: str = "<", describe=None, read_cstr=None):
        self.order = "little" if endian == "<" else "big"
        self.endian = endian
        self.describe = describe  # addr -> "module:symbol" or None
        self.read_cstr = read_cstr

    def raw(self, data: bytes):
        return data.hex(), "0x" + data[::-1].hex() if self.order == "little" and len(data) in (1, 2, 4, 8) else data.hex()

    def render(self, t: CType | None, data: bytes, depth: int = 0):
        if t is None:
            return self.raw(data)
        t = t.strip()
        k = t.kind
        if k == "base":
            return self._base(t, data)
        if k == "pointer":
            v = int.from_bytes(data[:t.size], self.order)
            return v, self._pointer_text(t, v)
        if k == "enum":
            v = int.from_bytes(data[:t.size], self.order, signed=t.signed)
            name = t.enumerators.get(v)
            return (name if name is not None else v), (name if name is not None else str(v))
        if k in ("struct", "class", "union"):
            return self._struct(t, data, depth)
        if k == "array":
            return self._array(t, data, depth)
        return self.raw(data)

    def _base(self, t: CType, data: bytes):
        size, enc = t.size, t.encoding
        b = data[:size]
        if enc == ATE_float:
            fmt = {4: "f", 8: "d"}.get(size)
            if fmt is None:
                return b.hex(), "0x" + b[::-1].hex()
            v = struct.unpack(self.endian + fmt, b)[0]
            return v, repr(v) if v != int(v) or abs(v) > 1e16 else str(int(v)) if v == v else "nan"
        if enc == ATE_boolean:
            v = int.from_bytes(b, self.order)
            return bool(v), "true" if v == 1 else "false" if v == 0 else str(v)
        v = int.from_bytes(b, self.order, signed=t.signed)
        if size == 1 and enc in (ATE_signed_char, ATE_unsigned_char) and "char" in t.name:
            return v, f"{v} {_char_lit(v & 0xFF)}"
        return v, str(v)

    def _pointer_text(self, t: CType, v: int) -> str:
        if v == 0:
            return "0x0"
        s = hex(v)
        target = t.target.strip() if t.target else None
        if target is not None and target.kind == "base" and target.size == 1 and "char" in target.name \
                and self.read_cstr is not None:
            try:
                return f'{s} "{_escape(self.read_cstr(v, 200))}"'
            except Exception:  # noqa: BLE001 - unreadable string: show the address only
                return f"{s} <error: cannot read>"
        if self.describe is not None:
            d = self.describe(v)
            if d:
                return f"{s} <{d}>"
        return s

    def _struct(self, t: CType, data: bytes, depth: int):
        val, parts = {}, []
        for name, off, mt, bit_size, bit_off in t.members:
            if bit_size is not None:
                start = bit_off if bit_off is not None else off * 8
                word = int.from_bytes(data, self.order)
                v = (word >> start) & ((1 << bit_size) - 1)
                if mt.strip().signed and v >> (bit_size - 1):
                    v -= 1 << bit_size
                mv, mtext = v, str(v)
            else:
                size = mt.strip().size if mt.strip().kind != "array" else mt.strip().size
                mv, mtext = self.render(mt, data[off:off + size], depth + 1)
            val[name] = mv
            parts.append(f"{name} = {mtext}")
        return val, "{" + ", ".join(parts) + "}"

    def _array(self, t: CType, data: bytes, depth: int):
        elem = t.target.strip() if t.target else None
        if elem is None or not t.dims or t.dims[0] is None:
            return self.raw(data)
        if len(t.dims) > 1:
            sub = CType("array", target=t.target, dims=t.dims[1:])
            sub.size = _array_size(sub)
            step = sub.size
            items = [self.render(sub, data[i * step:(i + 1) * step], depth + 1) for i in range(t.dims[0])]
        else:
            step = elem.size
            if elem.kind == "base" and step == 1 and "char" in elem.name:
                s = bytes(data[:t.dims[0]])
                return s.split(b"\0")[0].decode("latin-1"), _char_array_text(s)
            items = [self.render(elem, data[i * step:(i + 1) * step], depth + 1) for i in range(t.dims[0])]
        return [v for v, _ in items], "{" + ", ".join(_repeats([x for _, x in items])) + "}"


def _repeats(texts: list[str]) -> list[str]:
    """gdb's `<repeats N times>` for runs of 10 or more equal elements."""
    out, i = [], 0
    while i < len(texts):
        j = i
        while j < len(texts) and texts[j] == texts[i]:
            j += 1
        if j - i >= 10:
            out.append(f"{texts[i]} <repeats {j - i} times>")
        else:
            out.extend(texts[i:j])
        i = j
    return out


def _char_array_text(s: bytes) -> str:
    """A char array as gdb prints it: one trailing NUL dropped, the rest escaped."""
    if s.endswith(b"\0"):
        s = s[:-1]
    if not s:
        return '""'
    if len(s) >= 10 and s.count(s[:1]) == len(s):
        return f"{_char_lit(s[0])} <repeats {len(s)} times>"
    return '"' + "".join(_char_in_string(c) for c in s) + '"'


def _char_in_string(c: int) -> str:
    if c == 0x22:
        return '\\"'
    if c == 0x5C:
        return "\\\\"
    if 32 <= c < 127:
        return chr(c)
    return {10: "\\n", 9: "\\t", 13: "\\r", 27: "\\033"}.get(c, f"\\{c:03o}")


def _char_lit(c: int) -> str:
    if c == 0:
        return "'\\000'"
    if 32 <= c < 127:
        return "'\\''" if c == 39 else "'\\\\'" if c == 92 else f"'{chr(c)}'"
    return f"'\\{c:03o}'"


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
