"""The symbolizer memplace had before memplace.dwarf_reader, kept as the reference the new
one is compared with (tests/profiling/test_symbolize_reader.py): every line row of the
module read through pyelftools into one sorted list, inlined calls walked DIE by DIE.
Slow (a minute on 50,000 addresses over libc), simple, and what earlier results came from.
"""

from __future__ import annotations

import bisect
import os

from memplace.elf import STB_GLOBAL, STT_FUNC, ElfFile, die_ranges, dwarf, elf_info, inlined_calls, inlined_name
from memplace.errors import UserError
from memplace.profiling.profile import Symbol
from memplace.profiling.symbolize import DEBUG_ROOTS, demangle


class ReferenceSymbols:
    """Sorted function symbols and line rows of one ELF module (link-time addresses)."""

    def __init__(self, path: str):
        self.path = path
        self._fn_starts: list[int] = []
        self._fns: list[tuple[int, int, str]] = []  # (start, end, name)
        self._row_addrs: list[int] = []
        self._rows: list[tuple[int, str | None, int]] = []  # (address, file, line); file None = gap
        self._dwarf_path: str | None = None  # the file whose DWARF gave the rows
        self._chains: dict[int, tuple] = {}  # address -> inlined calls (see Symbol.inlined)
        info = elf_info(path)
        self._load(path)
        if not self._rows and info is not None and info.build_id:
            bid = info.build_id
            for root in DEBUG_ROOTS:
                dbg = os.path.join(root, ".build-id", bid[:2], bid[2:] + ".debug")
                if os.path.exists(dbg):
                    self._load(dbg)
                    break

    def _load(self, path: str) -> None:
        from elftools.common.exceptions import DWARFError, ELFError

        try:
            self._load_symbols(ElfFile(path))
            with dwarf(path) as info:
                if info is not None:
                    self._load_lines(info)
                    if self._rows:
                        self._dwarf_path = path
        except (UserError, OSError, ELFError, DWARFError, ValueError, KeyError, IndexError, AssertionError):
            # Damaged or unusual debug info: keep whatever was read before.
            pass

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

    def _load_lines(self, info) -> None:
        rows: list[tuple[int, str | None, int]] = []
        for cu in info.iter_CUs():
            lp = info.line_program_for_CU(cu)
            if lp is None:
                continue
            files = lp.header["file_entry"]
            base = 0 if lp.header["version"] >= 5 else 1
            for entry in lp.get_entries():
                st = entry.state
                if st is None:
                    continue
                if st.end_sequence:
                    rows.append((st.address, None, 0))
                    continue
                i = st.file - base
                name = files[i].name.decode(errors="replace") if 0 <= i < len(files) else None
                rows.append((st.address, name, st.line))
        rows.sort(key=lambda r: (r[0], r[1] is not None))
        self._rows = rows
        self._row_addrs = [r[0] for r in rows]

    def function(self, addr: int) -> str | None:
        i = bisect.bisect_right(self._fn_starts, addr) - 1
        if i >= 0 and self._fns[i][0] <= addr < self._fns[i][1]:
            return self._fns[i][2]
        return None

    def line(self, addr: int) -> tuple[str, int] | None:
        i = bisect.bisect_right(self._row_addrs, addr) - 1
        if i < 0:
            return None
        _, name, line = self._rows[i]
        if name is None or line == 0:
            return None
        return name, line

    def inlined(self, addrs: list[int]) -> dict[int, tuple]:
        """The inlined calls around each address (Symbol.inlined), innermost first. Only
        the compilation units that hold one of the addresses are read, once each."""
        want = sorted({a for a in addrs if a not in self._chains})
        if want and self._dwarf_path is not None:
            from elftools.common.exceptions import DWARFError, ELFError

            try:
                with dwarf(self._dwarf_path) as info:
                    if info is not None:
                        self._read_chains(info, want)
            except (UserError, OSError, ELFError, DWARFError, ValueError, KeyError, IndexError, AssertionError):
                pass  # damaged or unusual debug info: no inline chains
        for a in want:
            self._chains.setdefault(a, ())
        return {a: self._chains.get(a, ()) for a in addrs}

    def _read_chains(self, info, want: list[int]) -> None:
        """`want` sorted: the addresses inside a range are found by bisection, so 50,000
        addresses over thousands of units and inlined calls cost n log n, not n x m."""
        def inside_ranges(ranges) -> list[int]:
            found = set()
            for lo, hi in ranges:
                found.update(want[bisect.bisect_left(want, lo):bisect.bisect_left(want, hi)])
            return sorted(found)

        for cu in info.iter_CUs():
            hits = inside_ranges(die_ranges(info, cu, cu.get_top_DIE()))
            if not hits:
                continue
            lp = info.line_program_for_CU(cu)
            files = lp.header["file_entry"] if lp is not None else []
            base = 0 if lp is not None and lp.header["version"] >= 5 else 1
            around: dict[int, list] = {}  # address -> the inlined calls whose ranges hold it
            for c in inlined_calls(info, cu):
                for a in inside_ranges(c.ranges):
                    around.setdefault(a, []).append(c)
            for a in hits:
                inside = sorted(around.get(a, ()), key=lambda c: -c.depth)
                chain = []
                for k, c in enumerate(inside):
                    # the call is in the next outer inlined body, else in the real function
                    fn = inlined_name(inside[k + 1].die) if k + 1 < len(inside) else self.function(a)
                    i = c.call_file - base
                    name = files[i].name.decode(errors="replace") if 0 <= i < len(files) else None
                    chain.append((demangle(fn) if fn else None, name, c.call_line or None))
                self._chains[a] = tuple(chain)

    def lookup(self, offset: int, inlined: tuple | None = None) -> Symbol | None:
        addr = offset - 1 if offset > 0 else offset  # the call instruction, not the one after
        fn = self.function(addr)
        fl = self.line(addr)
        if fn is None and fl is None:
            return None
        if inlined is None:
            inlined = self.inlined([addr])[addr]
        return Symbol(demangle(fn) if fn else None, fl[0] if fl else None, fl[1] if fl else None,
                      inlined)




def reference_symbolize_profile(profile) -> int:
    """memplace's symbolize_profile as it was with this reader (for bench/advisor)."""
    from memplace.profiling.symbolize import _symbols_for

    modules: dict = {}
    wanted: dict[str, list[int]] = {}
    for site in profile.sites:
        for i, frame in enumerate(site.frames):
            if site.symbol(i) is None and frame.offset > 0:
                wanted.setdefault(frame.module, []).append(frame.offset - 1)
    for path, addrs in wanted.items():
        if _symbols_for(path, None) is not None:
            modules[path] = ReferenceSymbols(path)
            modules[path].inlined(addrs)
    filled = 0
    for site in profile.sites:
        syms = list(site.symbols) + [None] * (len(site.frames) - len(site.symbols))
        for i, frame in enumerate(site.frames):
            if syms[i] is None:
                ok = _symbols_for(frame.module, frame.build_id) is not None
                ms = modules.get(frame.module) if ok else None
                syms[i] = ms.lookup(frame.offset) if ms else None
                filled += syms[i] is not None
        site.symbols = tuple(syms) if any(syms) else ()
    return filled
