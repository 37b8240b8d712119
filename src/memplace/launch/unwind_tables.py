"""Compact unwind tables for the runtime, computed from a module's `.eh_frame`.

The runtime finds a call site by walking real frames: at each return address it needs
three answers — where the caller's frame starts (the CFA), where the return address is
kept, and where the frame pointer was saved. The DWARF call-frame programs in
`.eh_frame` hold those answers but must be interpreted; this module interprets them once,
before the program starts, and writes the result as a sorted table (the idea of the
Linux ORC unwinder and of SFrame), so that the runtime's walk is one binary search per
frame, with no allocation and no lock.

    >>> table = build_table("/bin/sh")
    >>> table.rows > 0
    True

File layout (little-endian; `runtime/include/types.h` declares the same):

    header   magic "MPUW", u16 version, u16 e_machine, u32 nrows, u32 nrules,
             u32 pcs_off, u32 index_off, u32 rules_off, u32 size       (32 bytes)
    pcs      u32[nrows]  module-relative address (vaddr) where each row starts, sorted
    index    u32[nrows]  the row's rule
    rules    struct rule[nrules] (12 bytes): i32 cfa_off, i16 fp_off, i16 ra_off,
             u8 cfa_base, u8 fp_rule, u8 ra_rule, u8 reserved

A row covers [pcs[i], pcs[i+1]). Rows outside any FDE have cfa_base UNKNOWN, so an
address in a gap ends the walk (the site ends there; it is never completed by guessing).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from memplace.cache import unwind_tables_dir
from memplace.errors import UserError

MAGIC = b"MPUW"
VERSION = 1
HEADER = struct.Struct("<4sHHIIIIII")
RULE = struct.Struct("<ihhBBBB")
assert HEADER.size == 32 and RULE.size == 12

# cfa_base: how the caller's stack pointer (the CFA) is found
UNKNOWN = 0  # no rule (gap, expression, unsupported register): the walk stops
SP = 1  # CFA = sp + cfa_off
FP = 2  # CFA = fp + cfa_off
OUTERMOST = 3  # the return address is undefined: the first frame of a thread
SIGNAL = 4  # a signal trampoline: the interrupted registers are in the ucontext at sp
# fp_rule
FP_SAME = 0  # the frame pointer is unchanged in the caller
FP_SAVED = 1  # the caller's frame pointer is at CFA + fp_off
FP_LOST = 2  # the caller's frame pointer cannot be recovered
# ra_rule
RA_SAVED = 1  # the return address is at CFA + ra_off
RA_IN_REGISTER = 2  # still in the link register (aarch64 before it is saved)

EM_X86_64, EM_AARCH64 = 62, 183
# DWARF register numbers: stack pointer, frame pointer, return address column
REGISTERS = {EM_X86_64: (7, 6, 16), EM_AARCH64: (31, 29, 30)}


@dataclass(frozen=True)
class Table:
    """A module's unwind table: `data` is the file the runtime maps."""

    machine: int
    rows: int
    rules: int
    data: bytes


# DW_EH_PE value formats of a fixed size: absptr, udata2/4/8, sdata2/4/8
_FIXED_POINTERS = {0x00: "<Q", 0x02: "<H", 0x03: "<I", 0x04: "<Q", 0x0A: "<h", 0x0B: "<i",
                   0x0C: "<q"}


class _Reader:
    """Cursor over a section's bytes; `base` is the section's vaddr (for pc-relative)."""

    __slots__ = ("b", "p", "base")

    def __init__(self, b: bytes, base: int):
        self.b, self.p, self.base = b, 0, base

    def u8(self) -> int:
        v = self.b[self.p]
        self.p += 1
        return v

    def fixed(self, fmt: str) -> int:
        v = struct.unpack_from(fmt, self.b, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def _leb128(self) -> tuple[int, int, int]:
        """(value, bits, last byte) of one LEB128 number."""
        v = shift = 0
        b = self.b
        while True:
            byte = b[self.p]
            self.p += 1
            v |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return v, shift, byte

    def uleb(self) -> int:
        return self._leb128()[0]

    def sleb(self) -> int:
        v, bits, last = self._leb128()
        return v - (1 << bits) if last & 0x40 else v

    def cstr(self) -> bytes:
        end = self.b.index(b"\0", self.p)
        s = self.b[self.p:end]
        self.p = end + 1
        return s

    def pointer(self, enc: int) -> int:
        """A pointer in DW_EH_PE encoding `enc` (pc-relative and absolute only)."""
        where = self.base + self.p
        fmt = enc & 0x0F
        if fmt == 0x01:
            v = self.uleb()
        elif fmt == 0x09:
            v = self.sleb()
        elif fmt in _FIXED_POINTERS:
            v = self.fixed(_FIXED_POINTERS[fmt])
        else:
            raise ValueError(f"pointer encoding {enc:#x}")
        app = enc & 0x70
        if app == 0x10:
            v += where
        elif app not in (0x00,):
            raise ValueError(f"pointer application {enc:#x}")
        return v & 0xFFFFFFFFFFFFFFFF


@dataclass
class _Cie:
    code_align: int
    data_align: int
    ra_reg: int
    fde_enc: int
    has_aug_data: bool
    signal: bool
    initial: bytes


class _State:
    """The registers' rules at one address: only the three the runtime needs."""

    __slots__ = ("cfa_reg", "cfa_off", "cfa_expr", "fp", "ra")

    def __init__(self):
        self.cfa_reg, self.cfa_off, self.cfa_expr = -1, 0, False
        self.fp = ("same",)  # ("same",) | ("saved", off) | ("lost",)
        self.ra = ("same",)  # ("same",) | ("saved", off) | ("undefined",) | ("lost",)

    def copy(self) -> "_State":
        s = _State()
        s.cfa_reg, s.cfa_off, s.cfa_expr, s.fp, s.ra = (
            self.cfa_reg, self.cfa_off, self.cfa_expr, self.fp, self.ra)
        return s

    def rule(self, regs: tuple[int, int, int], signal: bool) -> tuple:
        sp, fp, _ = regs
        if signal:
            return (0, 0, 0, SIGNAL, FP_SAME, RA_SAVED)
        if self.ra == ("undefined",):
            return (0, 0, 0, OUTERMOST, FP_SAME, RA_SAVED)
        if self.cfa_expr or self.cfa_reg not in (sp, fp) or self.ra[0] == "lost":
            return (0, 0, 0, UNKNOWN, FP_SAME, RA_SAVED)
        base = SP if self.cfa_reg == sp else FP
        if self.ra[0] == "saved":
            ra_rule, ra_off = RA_SAVED, self.ra[1]
        else:
            ra_rule, ra_off = RA_IN_REGISTER, 0
        if self.fp[0] == "saved":
            fp_rule, fp_off = FP_SAVED, self.fp[1]
        elif self.fp[0] == "same":
            fp_rule, fp_off = FP_SAME, 0
        else:
            fp_rule, fp_off = FP_LOST, 0
        if not (-2**31 <= self.cfa_off < 2**31 and -2**15 <= fp_off < 2**15
                and -2**15 <= ra_off < 2**15):
            return (0, 0, 0, UNKNOWN, FP_SAME, RA_SAVED)
        return (self.cfa_off, fp_off, ra_off, base, fp_rule, ra_rule)


def _run(program: bytes, cie: _Cie, state: _State, initial: _State | None, pc: int,
         end: int | None, regs: tuple[int, int, int], rows: list, base: int) -> None:
    """Interpret a call-frame program from `pc`, appending (pc, rule) rows (if end)."""
    r = _Reader(program, base)
    sp_reg, fp_reg, _ = regs
    ra_reg = cie.ra_reg
    stack: list[_State] = []
    ca, da = cie.code_align, cie.data_align

    def set_reg(reg: int, value: tuple) -> None:
        if reg == fp_reg:
            state.fp = value
        elif reg == ra_reg:
            state.ra = value

    def restore(reg: int) -> None:
        if initial is None:
            return
        if reg == fp_reg:
            state.fp = initial.fp
        elif reg == ra_reg:
            state.ra = initial.ra

    def emit_row() -> None:
        if end is not None:
            rows.append((pc, state.rule(regs, cie.signal)))

    while r.p < len(program):
        op = r.u8()
        hi, lo = op & 0xC0, op & 0x3F
        if hi == 0x40:  # advance_loc
            emit_row()
            pc += lo * ca
            continue
        if hi == 0x80:  # offset
            set_reg(lo, ("saved", r.uleb() * da))
            continue
        if hi == 0xC0:  # restore
            restore(lo)
            continue
        if op == 0x00:  # nop
            continue
        if op in (0x02, 0x03, 0x04):  # advance_loc1/2/4
            delta = r.u8() if op == 0x02 else r.fixed("<H") if op == 0x03 else r.fixed("<I")
            emit_row()
            pc += delta * ca
        elif op == 0x01:  # set_loc
            emit_row()
            pc = r.pointer(cie.fde_enc)
        elif op == 0x05:  # offset_extended
            reg = r.uleb()
            set_reg(reg, ("saved", r.uleb() * da))
        elif op == 0x06:  # restore_extended
            restore(r.uleb())
        elif op == 0x07:  # undefined
            reg = r.uleb()
            set_reg(reg, ("undefined",) if reg == ra_reg else ("lost",))
        elif op == 0x08:  # same_value
            set_reg(r.uleb(), ("same",))
        elif op == 0x09:  # register: the value lives in another register
            reg = r.uleb()
            r.uleb()
            set_reg(reg, ("lost",))
        elif op == 0x0A:  # remember_state
            stack.append(state.copy())
        elif op == 0x0B:  # restore_state
            if stack:
                s = stack.pop()
                state.cfa_reg, state.cfa_off, state.cfa_expr, state.fp, state.ra = (
                    s.cfa_reg, s.cfa_off, s.cfa_expr, s.fp, s.ra)
        elif op == 0x0C:  # def_cfa
            state.cfa_reg, state.cfa_off, state.cfa_expr = r.uleb(), r.uleb(), False
        elif op == 0x0D:  # def_cfa_register
            state.cfa_reg, state.cfa_expr = r.uleb(), False
        elif op == 0x0E:  # def_cfa_offset
            state.cfa_off = r.uleb()
        elif op == 0x0F:  # def_cfa_expression
            n = r.uleb()
            r.p += n
            state.cfa_expr = True
        elif op in (0x10, 0x16):  # expression, val_expression
            reg = r.uleb()
            n = r.uleb()
            r.p += n
            set_reg(reg, ("lost",))
        elif op == 0x11:  # offset_extended_sf
            reg = r.uleb()
            set_reg(reg, ("saved", r.sleb() * da))
        elif op == 0x12:  # def_cfa_sf
            state.cfa_reg, state.cfa_off, state.cfa_expr = r.uleb(), r.sleb() * da, False
        elif op == 0x13:  # def_cfa_offset_sf
            state.cfa_off = r.sleb() * da
        elif op in (0x14, 0x15):  # val_offset(_sf): the value, not a slot
            reg = r.uleb()
            r.uleb() if op == 0x14 else r.sleb()
            set_reg(reg, ("lost",))
        elif op == 0x2E:  # GNU_args_size
            r.uleb()
        elif op == 0x2F:  # GNU_negative_offset_extended
            reg = r.uleb()
            set_reg(reg, ("saved", -r.uleb() * da))
        elif op == 0x2D:  # aarch64 negate_ra_state: a signed return address
            state.ra = ("lost",) if state.ra[0] == "saved" else state.ra
        else:
            raise ValueError(f"call-frame instruction {op:#x}")
    if end is not None:
        rows.append((pc, state.rule(regs, cie.signal)))


def _parse_cie(r: _Reader, end: int) -> _Cie:
    version = r.u8()
    aug = r.cstr()
    if b"eh" in aug:
        r.p += 8
    code_align, data_align = r.uleb(), r.sleb()
    ra_reg = r.u8() if version == 1 else r.uleb()
    fde_enc, has_aug, signal = 0x00, False, False
    if aug.startswith(b"z"):
        has_aug = True
        n = r.uleb()
        stop = r.p + n
        for c in aug[1:]:
            if c == ord("R"):
                fde_enc = r.u8()
            elif c == ord("P"):
                r.pointer(r.u8() & 0x7F)  # personality (indirect bit dropped: not read)
            elif c == ord("L"):
                r.u8()
            elif c == ord("S"):
                signal = True
        r.p = stop
    return _Cie(code_align, data_align, ra_reg, fde_enc, has_aug, signal, r.b[r.p:end])


def _fde_rows(data: bytes, base: int, regs: tuple[int, int, int]) -> list[tuple[int, int, list]]:
    """(start, end, rows) of every FDE in an .eh_frame section."""
    r = _Reader(data, base)
    cies: dict[int, _Cie] = {}
    fdes = []
    while r.p + 4 <= len(data):
        start = r.p
        length = r.fixed("<I")
        if length == 0:
            break  # terminator
        if length == 0xFFFFFFFF:
            length = r.fixed("<Q")
        body = r.p
        end = body + length
        if end > len(data):
            raise ValueError("record runs past the section")
        cie_ptr = r.fixed("<I")
        if cie_ptr == 0:
            cies[start] = _parse_cie(r, end)
        else:
            cie_at = body - cie_ptr
            cie = cies.get(cie_at)
            if cie is None:
                save = r.p
                r.p = cie_at
                length2 = r.fixed("<I")
                r.p += 8 if length2 == 0xFFFFFFFF else 0
                r.fixed("<I")
                cie = cies[cie_at] = _parse_cie(r, r.p - 8 + length2 + 4)
                r.p = save
            pc_begin = r.pointer(cie.fde_enc)
            pc_range = r.pointer(cie.fde_enc & 0x0F)
            if cie.has_aug_data:
                r.p += r.uleb()
            if pc_range:
                initial = _State()
                _run(cie.initial, cie, initial, None, pc_begin, None, regs, [], base)
                state = initial.copy()
                rows: list = []
                _run(data[r.p:end], cie, state, initial, pc_begin, pc_begin + pc_range, regs,
                     rows, base + r.p)
                fdes.append((pc_begin, pc_begin + pc_range, rows))
        r.p = end
    return fdes


def _merge(fdes: list[tuple[int, int, list]]) -> tuple[list[int], list[tuple]]:
    """One sorted row list; gaps between FDEs are UNKNOWN rows."""
    unknown = (0, 0, 0, UNKNOWN, FP_SAME, RA_SAVED)
    pcs: list[int] = []
    rules: list[tuple] = []
    covered = 0
    for start, end, rows in sorted(fdes, key=lambda f: f[0]):
        if start < covered:
            continue  # overlapping FDE (duplicate): the first one wins
        if pcs and start > covered and rules[-1] != unknown:
            pcs.append(covered)
            rules.append(unknown)
        for pc, rule in rows:
            if pc >= end:
                break
            if pcs and pcs[-1] == pc:
                rules[-1] = rule
            elif not rules or rules[-1] != rule:
                pcs.append(pc)
                rules.append(rule)
        covered = end
    if pcs:
        pcs.append(covered)
        rules.append(unknown)
    return pcs, rules


def build_table(path: str) -> Table:
    """The unwind table of the ELF module at `path` (from its .eh_frame)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile

    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            machine = {"EM_X86_64": EM_X86_64, "EM_AARCH64": EM_AARCH64}.get(elf["e_machine"])
            if machine is None:
                raise UserError(f"{path}: unwind tables are made for x86_64 and aarch64 only")
            sec = elf.get_section_by_name(".eh_frame")
            fdes = []
            if sec is not None and sec["sh_type"] != "SHT_NOBITS":
                fdes = _fde_rows(sec.data(), sec["sh_addr"], REGISTERS[machine])
    except (OSError, ELFError) as e:
        raise UserError(f"{path}: cannot read unwind information ({e})") from None
    except (ValueError, IndexError, struct.error) as e:
        raise UserError(f"{path}: malformed .eh_frame ({e})") from None
    pcs, rules = _merge(fdes)
    if pcs and pcs[-1] >= 2**32:
        raise UserError(f"{path}: code above 4 GiB is not supported by unwind tables")
    distinct: dict[tuple, int] = {}
    index = [distinct.setdefault(rule, len(distinct)) for rule in rules]
    n, m = len(pcs), len(distinct)
    pcs_off = HEADER.size
    index_off = pcs_off + 4 * n
    rules_off = index_off + 4 * n
    size = rules_off + RULE.size * m
    out = bytearray(size)
    HEADER.pack_into(out, 0, MAGIC, VERSION, machine, n, m, pcs_off, index_off, rules_off, size)
    struct.pack_into(f"<{n}I", out, pcs_off, *pcs)
    struct.pack_into(f"<{n}I", out, index_off, *index)
    for rule, i in distinct.items():
        cfa_off, fp_off, ra_off, base, fp_rule, ra_rule = rule
        RULE.pack_into(out, rules_off + RULE.size * i, cfa_off, fp_off, ra_off, base, fp_rule,
                       ra_rule, 0)
    return Table(machine, n, m, bytes(out))


def prepare_tables(modules: list[str], directory: str | None = None) -> str:
    """Write the table of each module that has none yet; returns the directory.

    Tables are kept by build-id, so each module is read once per machine. Modules
    without a build-id, or that cannot be read, get none (the runtime then ends a
    site at their frames)."""
    from memplace.elf import elf_info

    directory = directory or unwind_tables_dir()
    os.makedirs(directory, exist_ok=True)
    for path in dict.fromkeys(modules):
        info = elf_info(path)
        if info is None or not info.build_id:
            continue
        dest = os.path.join(directory, info.build_id)
        if os.path.exists(dest):
            continue
        try:
            table = build_table(path)
        except UserError:
            continue
        tmp = f"{dest}.{os.getpid()}.tmp"
        with open(tmp, "wb") as f:
            f.write(table.data)
        os.replace(tmp, dest)  # atomic: a concurrent rank sees the whole file or none
    return directory


@dataclass(frozen=True)
class PreparedTables:
    """The directory the runtime reads tables from, and the build-ids it had at start."""

    directory: str
    build_ids: frozenset[str]


def table_modules(program, runtime: str, extra_modules: list[str] = (),
                  libraries: list[str] | None = None) -> list[str]:
    """The modules a run of `program` (launch.program's description of the command) needs
    tables of: the runtime, `extra_modules` (those a policy names, say), the program and
    the libraries it links (`libraries` if the caller has them, else `ld.so --list`)."""
    from memplace.elf import loader_list

    modules = [runtime, *extra_modules]
    if program.kind == "elf":
        modules += [program.path, *(loader_list(program.path) if libraries is None else libraries)]
    return list(dict.fromkeys(modules))


def program_tables(program, runtime: str, extra_modules: list[str] = (),
                   directory: str | None = None) -> PreparedTables:
    """Tables for a run of `program` (see `table_modules`), in `directory` (the cache)."""
    directory = prepare_tables(table_modules(program, runtime, extra_modules), directory)
    return PreparedTables(directory, frozenset(os.listdir(directory)))


def tables_for_late_modules(profile, tables: PreparedTables) -> list[str]:
    """Modules of `profile`'s sites that had no table when the program started (loaded
    with dlopen): their sites end at their first frame there. Their tables are made now,
    so that the next run follows those frames; returns their paths."""
    late = sorted({f.module for s in profile.sites for f in s.frames
                   if f.build_id and f.build_id not in tables.build_ids
                   and os.path.isabs(f.module)})
    if late:
        prepare_tables(late, tables.directory)
    return late
