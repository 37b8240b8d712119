"""Core dumps: threads, notes, mappings, and memory reads (ELF files themselves: memplace.elf).

A small, strict reader written for speed and for hostile input: every offset is
checked against the file, and anything malformed becomes one `UserError` naming
the file. Memory reads fall back to the mapped files for pages the kernel did
not dump (read-only file mappings).

>>> core = Core.open("core")                       # doctest: +SKIP
>>> core.arch.name, len(core.threads)              # doctest: +SKIP
('x86_64', 2)
>>> core.read_word(core.threads[0].regs[21])       # doctest: +SKIP
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct
from dataclasses import dataclass, field
from functools import cached_property

from memplace.elf import (  # noqa: F401  (ELF files are read by memplace.elf; postmortem modules import them from here too)
    ET_CORE, ET_DYN, ET_EXEC, PT_DYNAMIC, PT_INTERP, PT_LOAD, PT_NOTE, PT_PHDR, PT_TLS, SHT_DYNSYM, SHT_SYMTAB,
    STT_FUNC, STT_OBJECT, STT_TLS, ElfFile, Phdr, Symbol, parse_notes,
)
from memplace.errors import UserError
from memplace.postmortem.arch import (
    AT_PHDR, NT_386_TLS, NT_ARM_TLS, NT_AUXV, NT_FILE, NT_PRPSINFO, NT_PRSTATUS, Arch, arch_for,
)

class MemoryFault(Exception):
    """An address the core (and the files it maps) cannot supply."""

    def __init__(self, addr: int, size: int = 1):
        super().__init__(f"cannot read {size} bytes at {addr:#x}")
        self.addr = addr


@dataclass
class CoreThread:
    """One thread's notes: its tid, registers and, where the machine has them, TLS notes."""

    tid: int
    signal: int
    regs: tuple[int, ...]
    tls_note: bytes | None = None  # NT_386_TLS or NT_ARM_TLS descriptor


@dataclass
class Mapping:
    start: int
    end: int
    offset: int  # in the file
    path: str


class Memory:
    """Reads of a process image; subclasses supply `read`. Word-sized helpers on top.

    >>> mem.read_word(addr)   # doctest: +SKIP
    """

    word: int = 8
    endian: str = "<"

    def read(self, addr: int, size: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def read_word(self, addr: int) -> int:
        return int.from_bytes(self.read(addr, self.word), "little" if self.endian == "<" else "big")

    def read_uint(self, addr: int, size: int) -> int:
        return int.from_bytes(self.read(addr, size), "little" if self.endian == "<" else "big")

    def read_cstr(self, addr: int, limit: int = 4096) -> str:
        out = b""
        while len(out) < limit:
            try:
                chunk = self.read(addr + len(out), 64)
            except MemoryFault:
                chunk = b"".join(self._bytewise(addr + len(out), 64))
                if not chunk:
                    break
            nul = chunk.find(b"\0")
            if nul >= 0:
                return (out + chunk[:nul]).decode("utf-8", "replace")
            out += chunk
        return out.decode("utf-8", "replace")

    def _bytewise(self, addr: int, n: int):
        for i in range(n):
            try:
                yield self.read(addr + i, 1)
            except MemoryFault:
                return


class Core(Memory):
    """A core dump: its threads, auxv, mapped files and memory.

    >>> core = Core.open("core")                  # doctest: +SKIP
    >>> [t.tid for t in core.threads]             # doctest: +SKIP
    [5635, 5636]
    """

    def __init__(self, path: str):
        self.path = path
        self.elf = elf = ElfFile(path)
        if elf.type != ET_CORE:
            kind = {ET_EXEC: "an executable", ET_DYN: "a shared object or PIE executable"}.get(elf.type, f"ELF type {elf.type}")
            raise UserError(f"{path}: not a core file (it is {kind})")
        arch = arch_for(elf.machine)
        if arch is None or arch.word != elf.word:
            raise UserError(f"{path}: core of an unsupported machine (e_machine {elf.machine}, {elf.bits}-bit)")
        self.arch: Arch = arch
        self.word = arch.word
        self.endian = elf.endian
        size = len(elf.data)
        self.loads: list[Phdr] = sorted((p for p in elf.phdrs if p.type == PT_LOAD), key=lambda p: p.vaddr)
        self._starts = [p.vaddr for p in self.loads]
        need = max([p.offset + p.filesz for p in elf.phdrs if p.type in (PT_LOAD, PT_NOTE)] or [0])
        if need > size:
            raise UserError(f"{path}: truncated core ({size} bytes, its headers need {need})")
        self.threads: list[CoreThread] = []
        self.auxv: dict[int, int] = {}
        self.files: list[Mapping] = []
        self.fname = ""
        self._fallback: list[Mapping] = []
        self._fallback_starts: list[int] = []
        self._open_files: dict[str, ElfFile | None] = {}
        self._parse_notes()
        if not self.threads:
            raise UserError(f"{path}: core has no thread (no NT_PRSTATUS note)")

    open = classmethod(lambda cls, path: cls(path))

    def _parse_notes(self) -> None:
        a, e = self.arch, self.endian
        wfmt = "I" if a.word == 4 else "Q"
        for p in self.elf.phdrs:
            if p.type != PT_NOTE:
                continue
            for owner, ntype, desc in parse_notes(bytes(self.elf.data[p.offset:p.offset + p.filesz]), e):
                if owner == b"CORE" and ntype == NT_PRSTATUS:
                    if len(desc) < a.prstatus_regs + 17 * a.reg_size:
                        raise UserError(f"{self.path}: corrupt NT_PRSTATUS note ({len(desc)} bytes)")
                    nregs = (len(desc) - a.prstatus_regs) // a.reg_size
                    nregs = min(nregs, 34 if a.word == 8 else 17)
                    regs = struct.unpack_from(e + wfmt * nregs, desc, a.prstatus_regs)
                    (sig,) = struct.unpack_from(e + "h", desc, a.prstatus_sig)
                    (tid,) = struct.unpack_from(e + "i", desc, a.prstatus_tid)
                    self.threads.append(CoreThread(tid, sig, regs))
                elif owner == b"LINUX" and ntype in (NT_386_TLS, NT_ARM_TLS) and self.threads:
                    self.threads[-1].tls_note = desc
                elif owner == b"CORE" and ntype == NT_AUXV:
                    n = len(desc) // (2 * a.word)
                    vals = struct.unpack_from(e + wfmt * (2 * n), desc, 0)
                    for i in range(0, len(vals), 2):
                        if vals[i] == 0:
                            break
                        self.auxv.setdefault(vals[i], vals[i + 1])
                elif owner == b"CORE" and ntype == NT_FILE:
                    self.files = _parse_nt_file(desc, a.word, e)
                elif owner == b"CORE" and ntype == NT_PRPSINFO:
                    # pr_fname[16] sits 16 + 80 bytes before the end (pr_psargs is 80 bytes).
                    if len(desc) >= 96:
                        self.fname = desc[-96:-80].split(b"\0")[0].decode("utf-8", "replace")

    def add_file_mapping(self, start: int, end: int, offset: int, path: str) -> None:
        """Serve [start, end) from `path` at `offset` where the core has no bytes."""
        i = bisect.bisect_left(self._fallback_starts, start)
        self._fallback_starts.insert(i, start)
        self._fallback.insert(i, Mapping(start, end, offset, path))

    def read(self, addr: int, size: int) -> bytes:
        """Bytes of the process image; MemoryFault if neither the core nor a mapped file has them."""
        if size <= 0:
            return b""
        i = bisect.bisect_right(self._starts, addr) - 1
        if i >= 0:
            p = self.loads[i]
            rel = addr - p.vaddr
            if rel + size <= p.filesz:
                off = p.offset + rel
                return self.elf.data[off:off + size]
            if rel < p.memsz and rel < p.filesz:  # straddles: read piecewise
                head = self.elf.data[p.offset + rel:p.offset + p.filesz]
                return head + self.read(addr + len(head), size - len(head))
        return self._read_fallback(addr, size)

    def _read_fallback(self, addr: int, size: int) -> bytes:
        i = bisect.bisect_right(self._fallback_starts, addr) - 1
        for m in self._fallback[max(0, i - 8):i + 1][::-1]:  # mappings may be registered twice
            if m.start <= addr < m.end:
                f = self._file(m.path)
                if f is None:
                    continue
                off = m.offset + (addr - m.start)
                n = min(size, m.end - addr)
                data = f.data[off:off + n]
                if len(data) < n:  # past the file's end: the mapping reads as zeros
                    data = data + bytes(n - len(data))
                if n < size:
                    data = data + self.read(addr + n, size - n)
                return data
        raise MemoryFault(addr, size)

    def _file(self, path: str) -> ElfFile | None:
        if path not in self._open_files:
            try:
                self._open_files[path] = ElfFile(path)
            except UserError:
                self._open_files[path] = None
        return self._open_files[path]

    def register_elf(self, elf: ElfFile, bias: int) -> None:
        """Let reads of a module's file-backed pages that the core did not dump come from `elf`."""
        self._open_files[elf.path] = elf
        for p in elf.phdrs:
            if p.type == PT_LOAD and p.filesz:
                self.add_file_mapping(bias + p.vaddr, bias + p.vaddr + p.filesz, p.offset, elf.path)

    @property
    def crashed_tid(self) -> int:
        """The thread that took the fatal signal: the first NT_PRSTATUS, as the kernel writes it."""
        return self.threads[0].tid

    @property
    def phdr_address(self) -> int | None:
        return self.auxv.get(AT_PHDR)


def _parse_nt_file(desc: bytes, word: int, e: str) -> list[Mapping]:
    fmt = e + ("I" if word == 4 else "Q")
    try:
        (count,) = struct.unpack_from(fmt, desc, 0)
        (page,) = struct.unpack_from(fmt, desc, word)
        if count > len(desc) // (3 * word):
            return []
        ents = [struct.unpack_from(e + ("III" if word == 4 else "QQQ"), desc, 2 * word + i * 3 * word) for i in range(count)]
    except struct.error:
        return []
    names = desc[2 * word + count * 3 * word:].split(b"\0")
    return [Mapping(s, end, off * page, names[i].decode("utf-8", "replace") if i < len(names) else "")
            for i, (s, end, off) in enumerate(ents)]
