"""Which TLS variables a module has: name, offset in its TLS block, size and C type.

DWARF location expressions (`<const> DW_OP_form_tls_address`) give offsets and
types; aarch64's location-less variables take the offset of their `STT_TLS`
symbol; modules without debug info (also under /usr/lib/debug/.build-id) give
their `STT_TLS` symbols, untyped. The DWARF is read by dwarf_reader.py, only in the
units whose bytes hold a TLS location; a big one (libc with its -dbg package) is then
matched to the module's STT_TLS symbols. DWARF that reader does not handle goes to
pyelftools (small) or drgn's index (big).

>>> vars_ = tls_variables(target.exe)                           # doctest: +SKIP
>>> [(v.name, v.offset, v.type.display()) for v in vars_][:1]   # doctest: +SKIP
[('tv', 0, 'long')]
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from memplace.postmortem.arch import EM_386, EM_AARCH64, EM_X86_64
from memplace.postmortem.dwarf_types import CType, TypeBuilder, attr, from_drgn_type
from memplace.postmortem.elfcore import ElfFile, Symbol
from memplace.postmortem.modules import debug_file
from memplace.postmortem.tls_index import lookup, record

DW_OP_addr, DW_OP_const4u, DW_OP_const8u, DW_OP_constu = 0x03, 0x0C, 0x0E, 0x10
DW_OP_form_tls_address, DW_OP_GNU_push_tls_address = 0x9B, 0xE0


@dataclass
class TlsVar:
    """A thread-local variable: its module-relative offset, size and type (None: no debug info)."""

    name: str
    offset: int
    size: int
    type: CType | None


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
# .debug_info bytes (often compressed) above which a module's variables are its STT_TLS
# symbols typed from DWARF (libc6-dbg), below which the DWARF's own (qualified) names.
SMALL_DWARF = 256 << 10


def dwarf_tls_variables(elf: ElfFile, names: set[str] | None = None) -> list[TlsVar] | None:
    """TLS variables described by DWARF for a module (None if it has no debug info).

    Read with dwarf_reader.py in the units holding a TLS location; large DWARF (a libc
    with its -dbg package) is then matched to the STT_TLS symbols. DWARF that reader
    does not handle goes to pyelftools (small) or drgn (large)."""
    dbg = debug_file(elf)
    if dbg is None:
        return None
    if dbg.path in _DWARF_CACHE:
        return _DWARF_CACHE[dbg.path]
    syms = {s.name: s for s in elf.tls_symbols}
    syms.update({s.name: s for s in dbg.tls_symbols if s.name not in syms})
    big = dbg.section(".debug_info")[4] > SMALL_DWARF
    try:
        out = _big_tls_variables(dbg, elf.word, syms) if big else _small_tls_variables(dbg, elf.word, syms)
    except Exception:  # noqa: BLE001 - Unsupported or corrupt for the small reader: the full ones
        out = False
    if out is False:
        out = _drgn_tls_variables(elf, dbg, names) if big else _pyelftools_tls_variables(dbg.path, elf.word, syms)
    if not big:
        _DWARF_CACHE[dbg.path] = out
    return out


def _small_tls_variables(dbg: ElfFile, word: int, symbols: dict[str, Symbol]) -> list[TlsVar]:
    """Every TLS variable the DWARF describes, by its DWARF name. The units holding a TLS
    location are read first; only if a TLS symbol is left without a located variable at
    its offset (aarch64, where GCC gives none) is every DIE read for location-less ones."""
    from memplace.postmortem.dwarf_reader import Dwarf

    dwarf = Dwarf.open(dbg)
    builder = TypeBuilder(word)
    out: list[TlsVar] = []
    for unit, hits in sorted(dwarf.tls_units().items(), key=lambda u: u[0].offset):
        _collect(unit.iter_DIEs(within=hits), builder, None, out, {})
    if {s.value for s in symbols.values()} <= {v.offset for v in out}:
        return out
    out, unlocated = [], {}
    for unit in dwarf.units():
        _collect(unit.iter_DIEs(), builder, symbols, out, unlocated)
    return _add_unlocated(out, unlocated, symbols)


def _big_tls_variables(dbg: ElfFile, word: int, symbols: dict[str, Symbol]) -> list[TlsVar] | bool:
    """A big module's TLS symbols, typed from the DWARF variables located at their offsets
    (the same name first, else an alias of the same size: `__libc_errno` is `errno`).
    Only the units whose bytes hold a TLS location are read. False when no variable has a
    location (GCC on aarch64 gives none): drgn then looks the symbols up by name."""
    from memplace.postmortem.dwarf_reader import Dwarf

    dwarf = Dwarf.open(dbg)
    builder = TypeBuilder(word, shallow_pointers=True)
    found: list[TlsVar] = []
    for unit, hits in sorted(dwarf.tls_units().items(), key=lambda u: u[0].offset):
        _collect(unit.iter_DIEs(within=hits), builder, None, found, {})
    if not symbols:
        return found
    if not found:
        return False
    by_offset: dict[int, list[TlsVar]] = {}
    for v in found:
        by_offset.setdefault(v.offset, []).append(v)
    out = []
    for s in sorted(symbols.values(), key=lambda s: s.value):
        here = [v for v in by_offset.get(s.value, ()) if v.type is not None]
        same = [v for v in here if v.name.rsplit("::", 1)[-1] == s.name]
        alias = [v for v in here if not s.size or v.size == s.size]
        pick = (same or alias or [None])[0]
        out.append(TlsVar(s.name, s.value, s.size, pick.type if pick is not None else None))
    return out


def _pyelftools_tls_variables(path: str, word: int, symbols: dict[str, Symbol]) -> list[TlsVar] | None:
    """TLS variables from DWARF read by pyelftools (what dwarf_reader.py does not handle)."""
    from elftools.elf.elffile import ELFFile  # deferred: only unusual DWARF pays for it

    out: list[TlsVar] = []
    unlocated: dict[str, list] = {}  # symbol name -> [(qualified name, type)] of location-less definitions
    try:
        with open(path, "rb") as f:
            ef = ELFFile(f)
            if not ef.has_dwarf_info():
                return None
            # Only relocatable objects have relocations against their DWARF; looking for them
            # walks every section once per debug section (a third of a cold run's DWARF time).
            dwarf = ef.get_dwarf_info(relocate_dwarf_sections=ef["e_type"] == "ET_REL")
            builder = TypeBuilder(word)
            for cu in dwarf.iter_CUs():
                _collect(cu.iter_DIEs(), builder, symbols, out, unlocated)
    except Exception:  # noqa: BLE001 - corrupt DWARF: fall back to symbols, never crash
        return None
    return _add_unlocated(out, unlocated, symbols)


def _collect(dies, builder: TypeBuilder, symbols: dict[str, Symbol] | None, out: list, unlocated: dict) -> None:
    """Append the TLS variables among `dies` to `out`. Those with a TLS location expression
    carry their offset; GCC on aarch64 gives TLS variables no DW_AT_location at all, so a
    located-nowhere variable definition is noted in `unlocated`, to take its offset from
    the module's STT_TLS symbol of that name."""
    for die in dies:
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


def _add_unlocated(out: list[TlsVar], unlocated: dict, symbols: dict[str, Symbol]) -> list[TlsVar]:
    located = {v.name for v in out}
    for sym_name, defs in unlocated.items():
        # One definition per symbol, else we cannot tell which CU's static it is: raw bytes then.
        if len(defs) == 1 and defs[0][0] not in located:
            name, ctype = defs[0]
            s = symbols[sym_name]
            size = (ctype.size if ctype.kind == "array" else ctype.strip().size) if ctype else s.size
            out.append(TlsVar(name, s.value, size or s.size, ctype))
    return out


def _note_unlocated(die, symbols: dict[str, Symbol], builder: "TypeBuilder", unlocated: dict) -> None:
    """Remember a location-less variable definition whose (linkage) name is an STT_TLS symbol."""
    link = attr(die, "DW_AT_linkage_name") or attr(die, "DW_AT_MIPS_linkage_name")
    link = link.decode("utf-8", "replace") if isinstance(link, bytes) else link
    name = attr(die, "DW_AT_name", b"")
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
        arch = {EM_X86_64: drgn.Architecture.X86_64, EM_386: drgn.Architecture.I386,
                EM_AARCH64: drgn.Architecture.AARCH64}.get(elf.machine)
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
                ctype = from_drgn_type(obj.type_, {}, elf.word)
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


def _qualified_name(die) -> str:
    n = attr(die, "DW_AT_name", b"?")
    parts = [n.decode("utf-8", "replace") if isinstance(n, bytes) else str(n)]
    p = die.get_parent()
    while p is not None and p.tag in ("DW_TAG_namespace", "DW_TAG_structure_type", "DW_TAG_class_type",
                                      "DW_TAG_subprogram"):
        pn = attr(p, "DW_AT_name", b"")
        pn = pn.decode("utf-8", "replace") if isinstance(pn, bytes) else str(pn)
        parts.append(pn or "(anonymous)")
        p = p.get_parent()
    return "::".join(reversed(parts))


def tls_variables(module, names: set[str] | None = None) -> list[TlsVar]:
    """Every TLS variable of a module: DWARF-typed where debug info exists, else STT_TLS symbols.

    Kept on disk per build (tls_index.py). `names` only lets a module whose symbols show
    that none of them is there skip reading big DWARF at all."""
    return tls_variables_of([module], names)[0]


def tls_variables_of(modules: list, names: set[str] | None = None) -> list[list[TlsVar]]:
    """tls_variables of each module. Modules missing from the index are read from DWARF in
    threads of their own: zlib releases the GIL while it decompresses libc6-dbg's
    .debug_info, so the program's own DWARF is read meanwhile."""
    out: list = [None] * len(modules)
    todo = []
    for i, m in enumerate(modules):
        if m.tls is None:
            out[i] = []
            continue
        dbg = m.debug
        if names:
            known = {s.name for s in m.elf.tls_symbols} | ({s.name for s in dbg.tls_symbols} if dbg else set())
            if not (dbg is not None and dbg.section(".debug_info")[4] <= SMALL_DWARF) and not (known & names):
                out[i] = []  # the symbols say the names are not here: skip the DWARF
                continue
        out[i] = lookup(m.elf, dbg.path if dbg is not None else None, TlsVar)
        if out[i] is None:
            todo.append(i)

    def build(i: int) -> list[TlsVar]:
        m = modules[i]
        found = _all_tls_variables(m.elf)
        record(m.elf, m.debug.path if m.debug is not None else None, found)
        return found

    if len(todo) > 1:
        import threading

        errors: list[BaseException] = []

        def run(i: int) -> None:
            try:
                out[i] = build(i)
            except BaseException as e:  # noqa: BLE001 - re-raised in the calling thread
                errors.append(e)

        threads = [threading.Thread(target=run, args=(i,)) for i in todo]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    else:
        for i in todo:
            out[i] = build(i)
    return out


def _all_tls_variables(elf: ElfFile) -> list[TlsVar]:
    syms = elf.tls_symbols
    dw = dwarf_tls_variables(elf)
    if dw is None:
        return [TlsVar(s.name, s.value, s.size, None) for s in syms]
    # DWARF may omit variables from objects built without -g: add their symbols raw. A symbol
    # at a DWARF variable's offset is that variable (a C++ static member's mangled name).
    have = {v.name for v in dw} | {v.name.rsplit("::", 1)[-1] for v in dw}
    at = {v.offset for v in dw if v.type is not None}
    return dw + [TlsVar(s.name, s.value, s.size, None) for s in syms if s.name not in have and s.value not in at]
