"""module + offset -> function, file:line, from the module's own symbols and DWARF.

Offsets are return addresses (what a site records), so the line looked up is the one
of the call instruction just before: offset - 1. Debug info is taken from the module or
from its separate debug file (/usr/lib/debug/.build-id/xx/yyyy.debug), read by
memplace.dwarf_reader only for the compilation units holding the addresses. Each module is
read once per process; a profile's answers are kept per build-id in the cache directory.

    >>> from memplace.profiling.profile import Frame
    >>> symbolize(Frame("/nonexistent", None, 0x10)) is None
    True
"""

from __future__ import annotations

import bisect
import functools
import marshal
import os
import shutil
import stat
import struct
import subprocess

from memplace.dwarf_reader import DwarfError, DwarfReader
from memplace.elf import STB_GLOBAL, STT_FUNC, ElfFile, elf_info
from memplace.errors import UserError
from memplace.profiling.profile import Frame, Profile, Symbol

DEBUG_ROOTS = ("/usr/lib/debug",)
_DAMAGED = (UserError, OSError, DwarfError, ValueError, KeyError, IndexError, struct.error, RecursionError,
            TypeError, OverflowError)


class ModuleSymbols:
    """Sorted function symbols of one ELF module and, read on demand per compilation unit,
    its line rows and inlined calls (link-time addresses).

    Only the units whose address ranges hold an address asked for are read, each once:
    its line program decoded in one pass and every address in it answered by bisection,
    its inlined calls listed once and matched to the addresses by bisection
    (memplace.dwarf_reader; 50,000 addresses over libc take a second, not a minute)."""

    def __init__(self, path: str):
        self.path = path
        self._fn_starts: list[int] = []
        self._fns: list[tuple[int, int, str]] = []  # (start, end, name)
        self._reader: DwarfReader | None = None  # the file whose DWARF has line rows
        self._unit_lo: list[int] = []  # unit address ranges, sorted: (lo, hi, unit index)
        self._unit_ranges: list[tuple[int, int, int]] = []
        self._reach: list[int] = []  # the highest end of the ranges up to each one
        self._unit_lines: dict[int, tuple] = {}  # unit index -> (row addresses, rows)
        self._lines: dict[int, tuple[str, int] | None] = {}  # address -> file, line
        self._chains: dict[int, tuple] = {}  # address -> inlined calls (see Symbol.inlined)
        info = elf_info(path)
        self._load(path)
        if self._reader is None and info is not None and info.build_id:
            bid = info.build_id
            for root in DEBUG_ROOTS:
                dbg = os.path.join(root, ".build-id", bid[:2], bid[2:] + ".debug")
                if os.path.exists(dbg):
                    self._load(dbg)
                    break

    def _load(self, path: str) -> None:
        try:
            elf = ElfFile(path)
            self._load_symbols(elf)
            reader = DwarfReader(elf)
            if self._index_units(reader):
                self._reader = reader
        except _DAMAGED:
            # Damaged or unusual debug info: keep whatever was read before.
            self._unit_lo, self._unit_ranges, self._reach = [], [], []

    def _load_symbols(self, elf: ElfFile) -> None:
        fns = {f[0]: f for f in self._fns}  # a debug file adds to the module's own
        for table in (".symtab", ".dynsym"):
            for name, sym in elf.iter_symbols(table):
                # STT_FUNC only: pyelftools, used before, named IFUNC (10) "STT_LOOS", so
                # IFUNC resolvers were never read; kept so (no behaviour change).
                if sym.type != STT_FUNC or not sym.value:
                    continue
                start = sym.value
                end = start + max(sym.size, 1)
                # Prefer the global name and the larger size when aliases share a start.
                old = fns.get(start)
                if old is None or (sym.bind == STB_GLOBAL and not old[2].startswith("_")):
                    fns[start] = (start, max(end, old[1]) if old else end, name)
        self._fns = sorted(fns.values())
        self._fn_starts = [f[0] for f in self._fns]

    def _index_units(self, reader: DwarfReader) -> bool:
        """The address ranges of every unit (from each unit's own entry, as addr2line
        finds them), sorted for bisection. True when the file has line rows at all."""
        ranges = []
        has_rows = False
        for i, unit in enumerate(reader.units):
            for lo, hi in reader.die_ranges(unit, unit.top):
                ranges.append((lo, hi, i))
            if not has_rows:
                lp = reader.line_program(unit)
                has_rows = bool(lp and lp[2])
        if not has_rows:
            return False
        ranges.sort()
        self._unit_ranges = ranges
        self._unit_lo = [r[0] for r in ranges]
        reach = 0
        for _, hi, _ in ranges:
            reach = max(reach, hi)
            self._reach.append(reach)
        return True

    def _units_of(self, addr: int) -> list[int]:
        """The units whose ranges hold an address (one, unless units overlap)."""
        out = []
        i = bisect.bisect_right(self._unit_lo, addr) - 1
        while i >= 0 and self._reach[i] > addr:  # some range at or before i reaches addr
            lo, hi, unit = self._unit_ranges[i]
            if addr < hi and unit not in out:
                out.append(unit)
            i -= 1
        return sorted(out)

    def function(self, addr: int) -> str | None:
        i = bisect.bisect_right(self._fn_starts, addr) - 1
        if i >= 0 and self._fns[i][0] <= addr < self._fns[i][1]:
            return self._fns[i][2]
        return None

    def line(self, addr: int) -> tuple[str, int] | None:
        if addr not in self._lines:
            self._read_units([addr])
        return self._lines.get(addr)

    def inlined(self, addrs: list[int]) -> dict[int, tuple]:
        """The inlined calls around each address (Symbol.inlined), innermost first, and
        their lines. Only the units that hold one of the addresses are read, once each."""
        self._read_units([a for a in addrs if a not in self._chains])
        return {a: tuple((demangle(fn) if fn else None, f, n) for fn, f, n in self._chains.get(a, ()))
                for a in addrs}

    def raw_names(self, addrs: list[int]) -> set[str]:
        """The functions' names, as linked, that symbols of these addresses show (to be
        demangled in one go)."""
        self._read_units([a for a in addrs if a not in self._chains])
        out = {fn for a in addrs for fn, _, _ in self._chains.get(a, ()) if fn}
        out.update(fn for fn in map(self.function, addrs) if fn)
        return out

    def _read_units(self, addrs: list[int]) -> None:
        by_unit: dict[int, list[int]] = {}
        for a in set(addrs):
            self._lines.setdefault(a, None)
            self._chains.setdefault(a, ())
            if self._reader is not None:
                for u in self._units_of(a):
                    by_unit.setdefault(u, []).append(a)
        for u in sorted(by_unit):
            try:
                self._read_unit(u, sorted(by_unit[u]))
            except _DAMAGED:
                pass  # damaged or unusual debug info in this unit: no lines or chains from it

    def _read_unit(self, index: int, want: list[int]) -> None:
        """Lines and inlined calls of the addresses `want` (sorted) in one unit: the line
        program decoded once, then bisection; the inlined calls listed once, then the
        addresses inside each call's ranges found by bisection (n log n, not n x m)."""
        reader = self._reader
        unit = reader.units[index]
        if index not in self._unit_lines:
            lp = reader.line_program(unit)
            names, base, program = lp if lp is not None else ([], 1, [])
            rows = []
            for address, file, line, end in program:
                if end:
                    rows.append((address, None, 0))
                    continue
                i = file - base
                rows.append((address, names[i] if 0 <= i < len(names) else None, line))
            rows.sort(key=lambda r: (r[0], r[1] is not None))
            self._unit_lines[index] = ([r[0] for r in rows], rows, names, base)
        addrs, rows, files, base = self._unit_lines[index]
        for a in want:
            i = bisect.bisect_right(addrs, a) - 1
            _, name, line = rows[i] if i >= 0 else (0, None, 0)
            self._lines[a] = None if name is None or line == 0 else (name, line)

        def inside_ranges(ranges) -> list[int]:
            found = set()
            for lo, hi in ranges:
                found.update(want[bisect.bisect_left(want, lo):bisect.bisect_left(want, hi)])
            return sorted(found)

        around: dict[int, list] = {}  # address -> the inlined calls whose ranges hold it
        for c in reader.inlined_calls(unit):
            for a in inside_ranges(c[0]):
                around.setdefault(a, []).append(c)
        for a in want:
            inside = sorted(around.get(a, ()), key=lambda c: -c[1])
            chain = []
            for k, c in enumerate(inside):
                # the call is in the next outer inlined body, else in the real function
                fn = reader.inlined_name(inside[k + 1][4]) if k + 1 < len(inside) else self.function(a)
                i = c[2] - base
                name = files[i] if 0 <= i < len(files) else None
                chain.append((fn, name, c[3] or None))  # demangled when asked (in bulk)
            self._chains[a] = tuple(chain)

    def lookup(self, offset: int, inlined: tuple | None = None) -> Symbol | None:
        addr = offset - 1 if offset > 0 else offset  # the call instruction, not the one after
        fn = self.function(addr)
        fl = self.line(addr)
        if fn is None and fl is None:
            return None
        if inlined is None:
            if addr not in self._chains:
                self._read_units([addr])
            inlined = tuple((demangle(f) if f else None, file, n) for f, file, n in self._chains[addr])
        return Symbol(demangle(fn) if fn else None, fl[0] if fl else None, fl[1] if fl else None,
                      inlined)


@functools.lru_cache(maxsize=64)
def _module(path: str, _mtime: float) -> ModuleSymbols:
    return ModuleSymbols(path)


def module_symbols(path: str) -> ModuleSymbols | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in a profile's module name
        return None
    if not stat.S_ISREG(st.st_mode):  # a profile may name /dev/zero or a FIFO as its module
        return None
    return _module(path, st.st_mtime)


def _symbols_for(module: str, build_id: str | None) -> ModuleSymbols | None:
    """The module's symbols, or None when it is unreadable or is not the file that ran: a
    build-id that differs from the file's means no answer rather than a wrong one."""
    info = elf_info(module)
    if info is None or (build_id and info.build_id and build_id != info.build_id):
        return None
    return module_symbols(module)


def symbolize(frame: Frame) -> Symbol | None:
    """Function and file:line of one frame, or None when the module is unreadable, is not
    the one that ran, or the offset is in no symbol."""
    ms = _symbols_for(frame.module, frame.build_id)
    return ms.lookup(frame.offset) if ms else None


def symbolize_profile(profile: Profile) -> int:
    """Fill in the symbols a profile lacks (in place); returns how many frames got one.

    Per module, the answers come from the symbol cache (`answers`); the addresses it lacks
    are read from the module in one pass over its debug info; every name is then
    demangled in one go."""
    wanted: dict[str, set[int]] = {}
    for site in profile.sites:
        for i, frame in enumerate(site.frames):
            if site.symbol(i) is None and frame.offset > 0:
                wanted.setdefault(frame.module, set()).add(frame.offset - 1)
    known = {path: answers(path, addrs) for path, addrs in wanted.items()}
    demangle_all({fn for table in known.values() for fn, _, _, chain in table.values()
                  for fn in (fn, *(c[0] for c in chain)) if fn})
    usable: dict[tuple, bool] = {}
    filled = 0
    for site in profile.sites:
        syms = list(site.symbols) + [None] * (len(site.frames) - len(site.symbols))
        for i, frame in enumerate(site.frames):
            if syms[i] is None and frame.offset > 0 and frame.module in known:
                key = (frame.module, frame.build_id)
                if key not in usable:  # the file on disk is the one that ran
                    info = elf_info(frame.module)
                    usable[key] = info is not None and not (
                        frame.build_id and info.build_id and frame.build_id != info.build_id)
                if usable[key]:
                    syms[i] = _symbol(known[frame.module].get(frame.offset - 1))
                    filled += syms[i] is not None
        site.symbols = tuple(syms) if any(syms) else ()
    return filled


def _symbol(answer) -> Symbol | None:
    """A cached answer (function, file, line, inlined calls; names as linked) as a Symbol,
    the same as ModuleSymbols.lookup gives."""
    if answer is None:
        return None
    fn, file, line, chain = answer
    if fn is None and file is None:
        return None
    return Symbol(demangle(fn) if fn else None, file, line,
                  tuple((demangle(f) if f else None, cf, cl) for f, cf, cl in chain))


SYMBOLS_FORMAT = 1  # the cache's; raised when answers would differ


def answers(path: str, addrs: set[int]) -> dict[int, tuple]:
    """address -> (function, file, line, inlined calls) for addresses (call instruction's,
    link-time) of one module, names as linked. Kept per build-id in the cache directory
    (symbols/<build-id>), with what tells a changed debug file: a warm run reads no DWARF."""
    from memplace.cache import cache_root, file_stamp, make_dir, write_atomic
    from memplace.elf import separate_debug_file

    info = elf_info(path)
    bid = info.build_id if info is not None else None
    cache_file = os.path.join(cache_root(), "symbols", f"{bid}.v{SYMBOLS_FORMAT}") if bid else None
    debug = separate_debug_file(bid)
    stamp = [file_stamp(path), file_stamp(debug) if debug else None]
    table: dict[int, tuple] = {}
    if cache_file is not None:
        try:
            with open(cache_file, "rb") as f:
                saved = marshal.load(f)
            if isinstance(saved, tuple) and len(saved) == 2 and saved[0] == stamp and isinstance(saved[1], dict):
                table = saved[1]
        except (OSError, EOFError, ValueError, TypeError):
            pass  # no entry, or a damaged one: made again
    missing = [a for a in addrs if a not in table]
    if missing:
        ms = module_symbols(path)
        if ms is None:
            return table
        ms.raw_names(missing)  # reads the units of all of them at once
        for a in missing:
            fl = ms.line(a)
            table[a] = (ms.function(a), fl[0] if fl else None, fl[1] if fl else None, ms._chains.get(a, ()))
        if cache_file is not None and make_dir(os.path.dirname(cache_file)):
            write_atomic(cache_file, marshal.dumps((stamp, table)))
    return table


_DEMANGLED: dict[str, str] = {}


def demangle(name: str) -> str:
    """C++ names as people read them (via c++filt when binutils is installed)."""
    if not name.startswith("_Z"):
        return name
    if name not in _DEMANGLED:
        demangle_all([name])
    return _DEMANGLED.get(name, name)


def demangle_all(names) -> None:
    """Demangle many names with one c++filt (a thousand runs of it took 4 s): it reads one
    name a line and writes one a line."""
    todo = sorted({n for n in names if n.startswith("_Z") and n not in _DEMANGLED and "\n" not in n})
    if not todo:
        return
    out = None
    if shutil.which("c++filt") is not None:
        try:
            run = subprocess.run(["c++filt"], input="\n".join(todo) + "\n", capture_output=True,
                                 text=True, timeout=60)
            out = run.stdout.split("\n")
        except (OSError, subprocess.SubprocessError):
            pass
    for k, name in enumerate(todo):
        plain = out[k].strip() if out is not None and len(out) > len(todo) else ""
        _DEMANGLED[name] = plain or name


def short_function(name: str) -> str:
    """A C++ function's name without its return type, template arguments and parameters,
    for labels: 'Foam::tmp<Foam::Field<double> > Foam::operator*<double>(A const&, B) const'
    -> 'Foam::operator*'. C names are returned as they are.

    >>> short_function("Foam::tmp<Foam::Field<double> > Foam::operator*<double>(A const&, B) const")
    'Foam::operator*'
    >>> short_function("std::vector<int, std::allocator<int> >::push_back(int const&)")
    'std::vector::push_back'
    >>> short_function("operator<<(std::ostream&, int)"), short_function("main")
    ('operator<<', 'main')
    """
    text = name.strip()
    if text.endswith(")") or ") " in text:  # drop the parameter list and what follows it
        depth, cut = 0, None
        for i in range(len(text) - 1, -1, -1):
            c = text[i]
            if c == ")":
                depth += 1
            elif c == "(":
                depth -= 1
                if depth == 0:
                    cut = i
                    break
        if cut:
            text = text[:cut]
    out, depth, i = [], 0, 0
    while i < len(text):  # template arguments out, except in operator< and operator<<
        c = text[i]
        if text.startswith("operator<", i) and depth == 0:
            op = "operator<<" if text.startswith("operator<<", i) else "operator<"
            out.append(op)
            i += len(op)
            continue
        if c == "<":
            depth += 1
        elif c == ">" and depth:
            depth -= 1
        elif depth == 0:
            out.append(c)
        i += 1
    text = "".join(out)
    return text.rsplit(" ", 1)[-1] if " " in text else text
