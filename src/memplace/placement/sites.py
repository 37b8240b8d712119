"""Call-site frames of a policy rule -> module-relative return-address ranges.

A frame is written one of four ways (see docs/policy.md):

    libfoo.so+0x1234       a module (path or basename) and a return-address offset
    build-id:ab12..+0x1234 a module named by its GNU build-id
    solve+0x40             a function symbol of the program or a library, plus offset
    main.c:52              a source line, from the DWARF line tables

The modules searched are the program, the libraries its dynamic loader loads
(`ld.so --list`), and any module a policy names by absolute path.

>>> r = SiteResolver("/usr/bin/true")                  # doctest: +SKIP
>>> r.resolve("main.c:52").frames                      # doctest: +SKIP
[ResolvedFrame(module=Module(path='/usr/bin/true', ...), lo=0x1139, hi=0x1145)]
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from memplace.elf import STT_FUNC, dwarf, inlined_calls, loader_list, open_elf, separate_debug_file
from memplace.errors import UserError
from memplace.units import U64_MAX

_OFFSET = r"(0[xX][0-9a-fA-F]+|\d+)"
_BUILD_ID = re.compile(rf"^build-id:([0-9a-fA-F]+)\+{_OFFSET}$")
_NAME_OFF = re.compile(rf"^(.+)\+{_OFFSET}$")
_FILE_LINE = re.compile(r"^(.+):(\d+)$")
MAX_LINE = (1 << 32) - 1  # DWARF line numbers are 32-bit
_SO_NAME = re.compile(r"\.so(\.\d+)*$")
# Functions only. (Written before as ("STT_FUNC", "STT_GNU_IFUNC") for pyelftools, which
# names type 10 "STT_LOOS": IFUNC resolvers were never matched. Kept so; see issue 9 notes.)
_SYMBOL_TYPES = (STT_FUNC,)
# Libraries whose frames the runtime skips (allocator, libc, C++ runtime): their source
# lines are never a site, and their separate debug files are large and slow to scan.
_RUNTIME_LIBS = re.compile(r"^(libc|libm|libpthread|libdl|librt|libstdc\+\+|libgcc_s|ld-linux[\w.-]*|ld-musl[\w.-]*)\.so")


@dataclass(frozen=True)
class FrameSpec:
    """A parsed site frame. kind: "module" (name+off, may still turn out a symbol), "build-id", "line"."""

    text: str
    kind: str
    name: str = ""
    offset: int = 0
    line: int = 0


@dataclass(frozen=True)
class Module:
    """A loadable object as the compiled policy names it."""

    path: str  # absolute path, a basename, or "" for a build-id-only module
    build_id: str | None = None  # lowercase hex
    main: bool = False  # the program itself (compiled with path "")


@dataclass(frozen=True)
class ResolvedFrame:
    """Return addresses ra with lo <= ra - load_bias <= hi match this frame."""

    module: Module
    lo: int
    hi: int


@dataclass
class Resolution:
    """Alternatives for one frame (a line can have several address ranges), and a warning if any.

    No frames means the frame cannot be placed in the compiled policy at all.
    """

    frames: list[ResolvedFrame]
    warning: str | None = None


def parse_frame(text: str) -> FrameSpec:
    """Parse one site frame; ValueError with a readable reason when it has none of the forms.

    >>> parse_frame("solve+0x40")
    FrameSpec(text='solve+0x40', kind='module', name='solve', offset=64, line=0)
    >>> parse_frame("src/main.c:52").kind
    'line'
    """
    if not isinstance(text, str) or not text.strip() or "\0" in text:
        raise ValueError(f"site frame {text!r} is empty, not a string, or holds a NUL character")
    t = text.strip()
    if t.startswith("build-id:"):
        m = _BUILD_ID.match(t)
        if not m:
            raise ValueError(f"site frame {text!r}: expected build-id:HEX+0xOFFSET")
        return FrameSpec(text, "build-id", m.group(1).lower(), _offset(m.group(2), text))
    m = _NAME_OFF.match(t)
    if m:
        return FrameSpec(text, "module", m.group(1).strip(), _offset(m.group(2), text))
    m = _FILE_LINE.match(t)
    if m and len(m.group(2)) <= 10 and 0 < int(m.group(2)) <= MAX_LINE:
        return FrameSpec(text, "line", m.group(1).strip(), line=int(m.group(2)))
    if m:
        raise ValueError(f"site frame {text!r}: line {m.group(2)[:20]} is not in 1..{MAX_LINE}")
    raise ValueError(
        f"site frame {text!r} is not MODULE+0xOFFSET, SYMBOL+0xOFFSET, build-id:HEX+0xOFFSET or FILE:LINE"
    )


def _offset(digits: str, text: str) -> int:
    """A frame's offset, 0xHEX or decimal, within the 64 bits the compiled policy holds."""
    value = int(digits, 16 if digits[:2].lower() == "0x" else 10) if len(digits) <= 24 else U64_MAX + 1
    if value > U64_MAX:
        raise ValueError(f"site frame {text!r:.60}: offset is above 2^64-1")
    return value


@dataclass
class _Elf:
    """What memplace needs from one ELF file. Symbols and lines are read only when a
    frame needs them: `memplace run` with module+offset frames never pays for them."""

    path: str
    build_id: str | None
    elfclass: int
    has_symtab: bool
    has_lines: bool
    _symbols: dict[str, set[tuple[int, int]]] | None = None  # name -> {(st_value, st_size)}
    lines: dict[str, dict] = field(default_factory=dict)  # wanted file -> _read_lines()

    @property
    def symbols(self) -> dict[str, set[tuple[int, int]]]:
        if self._symbols is None:
            self._symbols = _read_symbols(self.path)
            separate = separate_debug_file(self.build_id)
            if separate and not self.has_symtab:  # stripped: the debug file has the full table
                for name, defs in _read_symbols(separate).items():
                    self._symbols.setdefault(name, set()).update(defs)
        return self._symbols

    @property
    def debug_path(self) -> str | None:
        """Where the DWARF lines are: the file itself or its separate debug file."""
        if self.has_lines:
            return self.path
        separate = separate_debug_file(self.build_id)
        return separate if separate and _has_section(separate, ".debug_line") else None


class SiteResolver:
    """Resolves frames against a program and its libraries; caches ELF reads.

    `exe` may be None: then only module-offset frames resolve (their module is
    matched at run time). Problems found with the program itself are in `problems`
    as (level, message) pairs.
    """

    def __init__(self, exe: str | os.PathLike | None, extra_modules: list[str] = ()):
        self.problems: list[tuple[str, str]] = []
        self.exe: str | None = None
        self._extra = [p for p in extra_modules if os.path.isabs(p)]
        self._libraries: list[str] | None = None
        self._elf: dict[str, _Elf | None] = {}
        self._cache: dict[str, Resolution] = {}
        if exe is not None:
            self._open_program(str(exe))

    @property
    def libraries(self) -> list[str]:
        """The program's libraries in load order, then modules named by absolute path."""
        if self._libraries is None:
            found = loader_list(self.exe) if self.exe else []
            self._libraries = []
            for path in found + self._extra:
                if path not in self._libraries and path != self.exe and self._load(path):
                    self._libraries.append(path)
        return self._libraries

    # -- modules -------------------------------------------------------------

    def _open_program(self, exe: str) -> None:
        path = exe if "/" in exe else (_which(exe) or exe)
        path = os.path.abspath(path)  # one key for the program in every table
        if not os.path.isfile(path):
            raise UserError(f"{exe}: no such program")
        if not os.access(path, os.R_OK):
            raise UserError(f"{exe}: cannot read the program")
        elf = self._load(path)
        if elf is None:
            self.problems.append(
                ("warning", f"{exe}: not an ELF file; SYMBOL+0xOFF and FILE:LINE sites cannot be resolved")
            )
            return
        if elf.elfclass != 64:
            self.problems.append(("error", f"{exe}: a 32-bit program; placement supports 64-bit programs only"))
            return
        self.exe = os.path.abspath(path)

    def modules(self) -> list[Module]:
        """The program (first) and its libraries in load order."""
        out = [Module(self.exe, self._elf[self.exe].build_id, main=True)] if self.exe else []
        return out + [Module(p, self._elf[p].build_id) for p in self.libraries]

    def _load(self, path: str) -> _Elf | None:
        if path not in self._elf:
            self._elf[path] = _read_elf(path)
        return self._elf[path]

    def _module(self, path: str) -> Module:
        elf = self._load(path)
        return Module(path, elf.build_id if elf else None, main=path == self.exe)

    def _find_module(self, name: str) -> str | None:
        """A known module by path (same file) or by basename."""
        paths = ([self.exe] if self.exe else []) + self.libraries
        if "/" in name:
            return next((p for p in paths if _same_file(p, name)), None)
        return next((p for p in paths if os.path.basename(p) == name), None)

    # -- frames --------------------------------------------------------------

    def resolve(self, text: str) -> Resolution:
        """Resolve one frame; ValueError if its syntax is wrong (see parse_frame)."""
        if text not in self._cache:
            self._cache[text] = self._resolve(parse_frame(text))
        return self._cache[text]

    def _resolve(self, spec: FrameSpec) -> Resolution:
        if spec.kind == "build-id":
            path = next((p for p in self._known() if self._elf[p].build_id == spec.name), None)
            module = self._module(path) if path else Module("", spec.name)
            warning = None if path else f"no loaded module has build-id {spec.name} yet (it may be dlopen'ed later)"
            return Resolution([ResolvedFrame(module, spec.offset, spec.offset)], warning)
        if spec.kind == "line":
            return self._resolve_line(spec)
        path = self._find_module(spec.name)
        if path:
            return Resolution([ResolvedFrame(self._module(path), spec.offset, spec.offset)])
        if "/" in spec.name or _SO_NAME.search(spec.name):
            module = self._module(spec.name) if os.path.isabs(spec.name) else Module(spec.name)
            return Resolution(
                [ResolvedFrame(module, spec.offset, spec.offset)],
                f"module {spec.name!r} is not {self._scope()} (it may be dlopen'ed later)",
            )
        return self._resolve_symbol(spec)

    def _known(self) -> list[str]:
        return ([self.exe] if self.exe else []) + self.libraries

    def _scope(self) -> str:
        if not self.exe:
            return "known without a program (give --exe PROGRAM)"
        return f"among {os.path.basename(self.exe)} and its libraries"

    def _resolve_symbol(self, spec: FrameSpec) -> Resolution:
        # First module in load order that defines it wins, as with the dynamic linker;
        # a static function defined in several files of that module gives several frames.
        for path in self._known():
            defs = self._elf[path].symbols.get(spec.name)
            if defs:
                module = self._module(path)
                frames = sorted({ResolvedFrame(module, v + spec.offset, v + spec.offset) for v, _ in defs},
                                key=lambda f: f.lo)
                warning = None
                size = max(s for _, s in defs)
                if size and spec.offset > size:
                    warning = f"offset {spec.offset:#x} is past the end of {spec.name} (size {size:#x})"
                return Resolution(frames, warning)
        return Resolution([], f"symbol {spec.name!r} is not {self._scope()}; the rule is left out")

    def _resolve_line(self, spec: FrameSpec) -> Resolution:
        frames: list[ResolvedFrame] = []
        nearest: set[int] = set()
        files_seen = False
        for path in self._known():
            if _RUNTIME_LIBS.match(os.path.basename(path)):
                continue
            for source, rows in self._lines(path, spec.name).items():
                files_seen = True
                for line, start, end in rows:
                    if line == spec.line:
                        # A call in [start, end) returns to an address in (start, end].
                        frames.append(ResolvedFrame(self._module(path), start + 1, end))
                    else:
                        nearest.add(line)
        frames = _merge(frames)
        if frames:
            return Resolution(frames)
        if not files_seen:
            return Resolution([], f"no debug line information for {spec.name!r} {self._scope()}; the rule is left out")
        below = max((n for n in nearest if n < spec.line), default=None)
        above = min((n for n in nearest if n > spec.line), default=None)
        near = ", ".join(str(n) for n in (below, above) if n is not None)
        return Resolution([], f"no code at {spec.name}:{spec.line} (nearest lines with code: {near}); the rule is left out")

    def _lines(self, path: str, wanted: str) -> dict[str, list[tuple[int, int, int]]]:
        elf = self._elf[path]
        if wanted not in elf.lines:
            elf.lines[wanted] = _read_lines(elf.debug_path, wanted) if elf.debug_path else {}
        return elf.lines[wanted]


# -- ELF reading ------------------------------------------------------------


def _read_elf(path: str) -> _Elf | None:
    elf = open_elf(path)
    if elf is None:
        return None
    bid = elf.build_id
    return _Elf(path, bid.hex() if bid is not None else None, elf.bits,
                has_symtab=elf.has_section(".symtab"), has_lines=elf.has_section(".debug_line"))


def _has_section(path: str, name: str) -> bool:
    elf = open_elf(path)
    return elf is not None and elf.has_section(name)


def _read_symbols(path: str) -> dict[str, set[tuple[int, int]]]:
    elf = open_elf(path)
    if elf is None:
        return {}
    out: dict[str, set[tuple[int, int]]] = {}
    for table in (".symtab", ".dynsym"):
        for full, sym in elf.iter_symbols(table):
            if sym.type in _SYMBOL_TYPES and sym.shndx != 0 and sym.value:
                # Versioned names ("memcpy@@GLIBC_2.14") are matched without the version.
                out.setdefault(sym.name, set()).add((sym.value, sym.size))
    return out


def _read_lines(path: str, wanted: str) -> dict[str, list[tuple[int, int, int]]]:
    """The DWARF line rows of the source files matching `wanted`: full path -> [(line, start, end)],
    and the address ranges of calls inlined at a line of them.

    Only compilation units whose line programs name such a file are decoded: big
    libraries stay cheap.
    """
    from elftools.common.exceptions import ELFError

    out: dict[str, list[tuple[int, int, int]]] = {}
    try:
        with dwarf(path) as info:
            for cu in (info.iter_CUs() if info is not None else ()):
                program = info.line_program_for_CU(cu)
                if program is None:
                    continue
                comp_dir = _decode(cu.get_top_DIE().attributes.get("DW_AT_comp_dir"))
                names = {i: n for i, n in _file_names(program, comp_dir).items() if _path_matches(n, wanted)}
                if not names:
                    continue
                previous = None
                for entry in program.get_entries():
                    state = entry.state
                    if state is None:
                        continue
                    if previous is not None and state.address > previous.address:
                        source = names.get(previous.file)
                        if source is not None:
                            out.setdefault(source, []).append((previous.line, previous.address, state.address))
                    previous = None if state.end_sequence else state
                # A call the compiler inlined at a line of the file (push_back, make_shared):
                # the line rows of its body name the header it came from, so the body's
                # ranges stand for the line too; a call in it returns into (lo, hi].
                for call in inlined_calls(info, cu):
                    source = names.get(call.call_file)
                    if source is not None:
                        for lo, hi in call.ranges:
                            out.setdefault(source, []).append((call.call_line, lo, hi))
    except (OSError, ELFError, ValueError, KeyError, AttributeError):
        pass  # bad or unsupported DWARF: the line is then simply not found
    return out


def _file_names(program, comp_dir: str) -> dict[int, str]:
    """File index -> full path, with DWARF 5's 0-based and DWARF 2-4's 1-based numbering."""
    header = program.header
    v5 = header["version"] >= 5
    dirs = [_decode(d) for d in header["include_directory"]]
    names = {}
    for i, entry in enumerate(header["file_entry"]):
        name = _decode(entry.name)
        d = entry.dir_index
        if v5:
            directory = dirs[d] if d < len(dirs) else comp_dir
        else:
            directory = comp_dir if d == 0 else (dirs[d - 1] if d - 1 < len(dirs) else "")
        if directory and not os.path.isabs(directory) and comp_dir:
            directory = os.path.join(comp_dir, directory)
        names[i if v5 else i + 1] = os.path.normpath(os.path.join(directory, name))
    return names


def _decode(value) -> str:
    if value is None:
        return ""
    if hasattr(value, "value"):
        value = value.value
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _path_matches(source: str, wanted: str) -> bool:
    """`wanted` is the source file itself, or the last components of its path."""
    if os.path.isabs(wanted):
        return os.path.normpath(wanted) == source
    want = Path(os.path.normpath(wanted)).parts
    return Path(source).parts[-len(want):] == want


def _merge(frames: list[ResolvedFrame]) -> list[ResolvedFrame]:
    """Join adjacent or overlapping ranges of the same module (consecutive rows of one line)."""
    out: list[ResolvedFrame] = []
    for f in sorted(set(frames), key=lambda f: (f.module.path, f.lo)):
        last = out[-1] if out else None
        if last and last.module == f.module and f.lo <= last.hi + 1:
            out[-1] = ResolvedFrame(f.module, last.lo, max(last.hi, f.hi))
        else:
            out.append(f)
    return out


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _which(name: str) -> str | None:
    return shutil.which(name)
