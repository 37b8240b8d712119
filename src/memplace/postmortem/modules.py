"""Which ELF modules a process had loaded, where, and whether our files match them.

Sources, most trusted first: the executable's `r_debug`/`link_map` chain in
memory (found through `DT_DEBUG`), the auxiliary vector (`AT_PHDR` gives the
executable's load bias) and the core's `NT_FILE` list (to find files by name).
`--sysroot` prefixes every path; a build-id that differs from the one in the
core's memory is an error, not a silent wrong answer.

>>> mods = load_modules(core, exe=None, sysroot=None)    # doctest: +SKIP
>>> [m.name for m in mods][:2]                            # doctest: +SKIP
['/tmp/prog', '/lib/x86_64-linux-gnu/libc.so.6']
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from functools import cached_property

from memplace.elf import separate_debug_file
from memplace.errors import UserError
from memplace.postmortem.elfcore import (
    PT_DYNAMIC, PT_LOAD, PT_NOTE, PT_PHDR, PT_TLS, ElfFile, Memory, MemoryFault, Phdr, parse_notes,
)

DT_NULL, DT_DEBUG = 0, 21
VDSO_NAMES = ("linux-vdso.so.1", "linux-gate.so.1", "linux-vdso.so", "[vdso]")


@dataclass
class Module:
    """A loaded ELF module: the executable or a shared library.

    `tls_modid` / `tls_offset` are filled in by the libc layer (glibc reads them from
    the link_map, musl numbers modules itself)."""

    name: str  # the path the process used (l_name, or the executable's path)
    elf: ElfFile
    bias: int  # l_addr: run-time address minus link-time address
    link_map: int | None = None  # address of its struct link_map, if known
    is_exe: bool = False
    tls_modid: int | None = None
    tls_offset: int | None = None  # static-TLS offset as the libc stores it; None = dynamic

    @cached_property
    def tls(self) -> Phdr | None:
        return self.elf.phdr(PT_TLS)

    @property
    def short(self) -> str:
        return os.path.basename(self.name) or self.name

    def contains(self, addr: int) -> bool:
        v = addr - self.bias
        return any(p.type == PT_LOAD and p.vaddr <= v < p.vaddr + p.memsz for p in self.elf.phdrs)

    @cached_property
    def debug(self) -> ElfFile | None:
        """The file holding this module's DWARF and full symbols (debug_file)."""
        return debug_file(self.elf)

    def symbolize(self, vaddr: int) -> str | None:
        """'name+off' for a link-time address: the module's own symbols, else its debug file's
        (.symtab of libc6-dbg names `_nl_global_locale`, `main_arena`, which .dynsym lacks)."""
        sym = self.elf.symbolize(vaddr)
        if sym is None and self.debug is not None and self.debug is not self.elf:
            sym = self.debug.symbolize(vaddr)
        return sym


def debug_file(elf: ElfFile) -> ElfFile | None:
    """The file holding `elf`'s DWARF: itself, or <debug root>/.build-id/xx/rest.debug
    ($MEMPLACE_DEBUG_ROOT, else /usr/lib/debug); None without debug info."""
    if elf.section(".debug_info") is not None:
        return elf
    b = elf.build_id
    root = os.path.join(os.environ.get("MEMPLACE_DEBUG_ROOT", "/usr/lib/debug"), ".build-id")
    p = separate_debug_file(b.hex() if b else None, root)
    if p is None:
        return None
    try:
        dbg = ElfFile(p)
    except Exception:  # noqa: BLE001 - unusable debug file: as if absent
        return None
    return dbg if dbg.section(".debug_info") is not None else None


def printable(name: str) -> str:
    r"""A name read from a core, fit for a one-line message: control characters escaped.

    >>> print(printable("lib\nx.so"))
    lib\nx.so
    """
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in name)


def resolve_path(name: str, sysroot: str | None, mapped: list[str] = (), as_is: bool = False) -> str | None:
    """The file to open for a module the process knew as `name`.

    Under `sysroot` first; with `as_is`, then at `name` itself, the way qemu-user's
    `-L` prefix works (its cores list no mapped files to search by basename).

    >>> resolve_path("/lib/libc.so.6", "/usr/aarch64-linux-gnu")      # doctest: +SKIP
    '/usr/aarch64-linux-gnu/lib/libc.so.6'
    """
    candidates = []
    if sysroot:
        candidates.append(os.path.join(sysroot, name.lstrip("/")))
        base = os.path.basename(name)
        candidates += [os.path.join(sysroot, p.lstrip("/")) for p in mapped if os.path.basename(p) == base]
        if as_is:
            candidates.append(name)
    else:
        candidates.append(name)
        base = os.path.basename(name)
        candidates += [p for p in mapped if os.path.basename(p) == base]
    return next((c for c in candidates if c and os.path.isfile(c)), None)


def _memory_build_id(mem: Memory, elf: ElfFile, bias: int) -> bytes | None:
    """The build-id as the process had it mapped (None if the core did not keep that page)."""
    for p in elf.phdrs:
        if p.type == PT_NOTE and 0 < p.filesz < 1 << 16:
            try:
                data = mem.read(bias + p.vaddr, p.filesz)
            except MemoryFault:
                return None
            for owner, ntype, desc in parse_notes(bytes(data), elf.endian):
                if owner == b"GNU" and ntype == 3:
                    return desc
    return None


def check_build_id(mem: Memory, elf: ElfFile, bias: int, what: str) -> None:
    """UserError if the file's build-id differs from the one in the process image."""
    want = _memory_build_id(mem, elf, bias)
    have = elf.build_id
    if want is not None and have is not None and want != have:
        raise UserError(f"{elf.path}: build-id {have.hex()} does not match the {what}'s {want.hex()}"
                        " (wrong file or --sysroot)")


def exe_bias(elf: ElfFile, at_phdr: int | None) -> int:
    """Load bias of the executable from AT_PHDR (0 for non-PIE or when unknown)."""
    if at_phdr is None:
        return 0
    ph = elf.phdr(PT_PHDR)
    if ph is not None:
        return at_phdr - ph.vaddr
    for p in elf.phdrs:  # no PT_PHDR (static): the load segment that holds e_phoff
        if p.type == PT_LOAD and p.offset <= elf.phoff < p.offset + p.filesz:
            return at_phdr - (p.vaddr + elf.phoff - p.offset)
    return 0


def find_executable(exe: str | None, sysroot: str | None, files: list, at_phdr: int | None,
                    fname: str, where: str) -> str:
    """Path of the executable: --exe, else the NT_FILE mapping holding AT_PHDR, else pr_fname."""
    if exe:
        if not os.path.isfile(exe):
            raise UserError(f"{exe}: no such executable")
        return exe
    names = []
    if at_phdr is not None:
        names += [m.path for m in files if m.start <= at_phdr < m.end]
    if files:
        names.append(files[0].path)
    for n in names:
        p = resolve_path(n, sysroot)
        if p:
            return p
    hint = printable(names[0] if names else fname or "?")
    raise UserError(f"{where}: executable {hint} not found; pass --exe PATH (and --sysroot DIR for another machine's core)")


def load_modules(mem: Memory, exe_path: str, sysroot: str | None, at_phdr: int | None,
                 mapped: list[str], where: str, check: bool = True) -> list[Module]:
    """The executable and every library on its link_map chain, with files opened and checked."""
    exe = ElfFile(exe_path)
    if exe.type not in (2, 3):
        raise UserError(f"{exe_path}: not an executable")
    if exe.machine != getattr(mem, "machine", exe.machine) or exe.word != mem.word:
        raise UserError(f"{exe_path}: executable is for another machine than {where}")
    bias = exe_bias(exe, at_phdr)
    if check:
        _check_exe(mem, exe, bias, at_phdr, where)
    register = getattr(mem, "register_elf", None)
    if register:
        register(exe, bias)
    mods = [Module(exe_path, exe, bias, is_exe=True)]
    rmap = _r_map(mem, exe, bias)
    if rmap is None:
        return mods
    w = mem.word
    seen = set()
    lm, first = rmap, True
    while lm and lm not in seen and len(seen) < 4096:
        seen.add(lm)
        try:
            l_addr, l_name, _l_ld, l_next = (mem.read_word(lm + i * w) for i in range(4))
            name = mem.read_cstr(l_name) if l_name else ""
        except MemoryFault:
            raise UserError(f"{where}: link_map at {lm:#x} is not in the core; the core is incomplete") from None
        if first:
            mods[0].link_map = lm
            first = False
        elif name and name not in VDSO_NAMES and not name.startswith("linux-"):
            # No mapped-file list (a qemu-user core): a library not under the sysroot is
            # looked for at its own path, as qemu's -L did when the process ran.
            path = resolve_path(name, sysroot, mapped, as_is=not mapped)
            if path is None:
                hint = " under --sysroot " + sysroot if sysroot else "; pass --sysroot DIR"
                raise UserError(f"{where}: library {printable(name)} not found{hint}")
            elf = ElfFile(path)
            if elf.machine != exe.machine or elf.word != exe.word:
                raise UserError(f"{path}: library for another machine than {where} (wrong file or --sysroot)")
            if check:
                check_build_id(mem, elf, l_addr, "core" if hasattr(mem, "threads") else "process")
            if register:
                register(elf, l_addr)
            mods.append(Module(name, elf, l_addr, link_map=lm))
        lm = l_next
    return mods


def _check_exe(mem: Memory, exe: ElfFile, bias: int, at_phdr: int | None, where: str) -> None:
    """The executable's program headers (and build-id) must be the ones the process ran."""
    if at_phdr is not None:
        size = len(exe.phdrs) * (56 if exe.word == 8 else 32)
        try:
            live = bytes(mem.read(at_phdr, size))
        except MemoryFault:
            live = None
        # Only trust the comparison when the page really came from the core, not from the file itself.
        if live is not None and live != bytes(exe.data[exe.phoff:exe.phoff + size]):
            raise UserError(f"{where} and executable {exe.path} do not belong together (program headers differ)")
    want = _memory_build_id(mem, exe, bias)
    if want is not None and exe.build_id is not None and want != exe.build_id:
        raise UserError(f"{where} and executable {exe.path} do not belong together"
                        f" (build-id {exe.build_id.hex()} vs {want.hex()} in the core)")


def _r_map(mem: Memory, exe: ElfFile, bias: int) -> int | None:
    """Head of the link_map chain via DT_DEBUG -> r_debug.r_map, or None (static executable)."""
    dyn = exe.phdr(PT_DYNAMIC)
    if dyn is None:
        return None
    w = mem.word
    fmt = mem.endian + ("iI" if w == 4 else "qQ")
    try:
        data = mem.read(bias + dyn.vaddr, dyn.memsz)
    except MemoryFault:
        return None
    for i in range(0, len(data) - 2 * w + 1, 2 * w):
        tag, val = struct.unpack_from(fmt, data, i)
        if tag == DT_NULL:
            break
        if tag == DT_DEBUG and val:
            try:
                return mem.read_word(val + w) or None
            except MemoryFault:
                return None
    return None


def module_at(mods: list[Module], addr: int) -> Module | None:
    """The module whose loaded segments contain a run-time address."""
    return next((m for m in mods if m.contains(addr)), None)


def describe_address(mods: list[Module], addr: int) -> str | None:
    """'module:symbol+off' or 'module+off' for an address inside a module, else None."""
    m = module_at(mods, addr)
    if m is None:
        return None
    sym = m.symbolize(addr - m.bias)
    return f"{m.short}:{sym}" if sym else f"{m.short}+{addr - m.bias:#x}"
