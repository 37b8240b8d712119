"""ELF files and core dumps: headers, notes, symbols, and memory reads.

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

from memplace.errors import UserError
from memplace.postmortem.arch import (
    AT_PHDR, NT_386_TLS, NT_ARM_TLS, NT_AUXV, NT_FILE, NT_GNU_BUILD_ID, NT_PRPSINFO,
    NT_PRSTATUS, Arch, arch_for,
)

ET_EXEC, ET_DYN, ET_CORE = 2, 3, 4
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_PHDR, PT_TLS = 1, 2, 3, 4, 6, 7
SHT_SYMTAB, SHT_DYNSYM = 2, 11
STT_OBJECT, STT_FUNC, STT_TLS = 1, 2, 6

# (header, program header, section header, symbol) layouts per ELF class, and
# the order their fields come in, so one parser serves 32- and 64-bit files.
_EHDR = {1: "16sHHIIIIIHHHHHH", 2: "16sHHIQQQIHHHHHH"}
_PHDR = {1: "IIIIIIII", 2: "IIQQQQQQ"}  # 32-bit order differs: see _phdr()
_SHDR = {1: "IIIIIIIIII", 2: "IIQQQQIIQQ"}
_SYM = {1: "IIIBBH", 2: "IBBHQQ"}


class MemoryFault(Exception):
    """An address the core (and the files it maps) cannot supply."""

    def __init__(self, addr: int, size: int = 1):
        super().__init__(f"cannot read {size} bytes at {addr:#x}")
        self.addr = addr


@dataclass(frozen=True)
class Phdr:
    type: int
    flags: int
    offset: int
    vaddr: int
    filesz: int
    memsz: int
    align: int


@dataclass(frozen=True)
class Symbol:
    name: str
    value: int
    size: int
    type: int  # STT_*
    shndx: int


class ElfFile:
    """An ELF file opened read-only with mmap.

    >>> libc = ElfFile("/lib/x86_64-linux-gnu/libc.so.6")    # doctest: +SKIP
    >>> libc.symbol("__pthread_keys").size                   # doctest: +SKIP
    16384
    """

    def __init__(self, path: str):
        self.path = path
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            raise UserError(f"{path}: cannot open: {e.strerror}") from None
        try:
            size = os.fstat(fd).st_size
            if size < 52:
                raise UserError(f"{path}: not an ELF file (only {size} bytes)")
            self.data = mmap.mmap(fd, 0, prot=mmap.PROT_READ)
        except (OSError, ValueError) as e:
            raise UserError(f"{path}: cannot map: {e}") from None
        finally:
            os.close(fd)
        d = self.data
        if d[:4] != b"\x7fELF" or d[4] not in (1, 2) or d[5] not in (1, 2):
            raise UserError(f"{path}: not an ELF file")
        self.elfclass = d[4]
        self.bits = 32 * self.elfclass
        self.endian = "<" if d[5] == 1 else ">"
        self.word = 4 * self.elfclass
        (_, self.type, self.machine, _, self.entry, phoff, shoff, _, _, phentsize, phnum,
         shentsize, shnum, shstrndx) = self._unpack(_EHDR[self.elfclass], 0)
        self.phoff = phoff
        self.phdrs = self._phdrs(phoff, phentsize, phnum)
        self._shoff, self._shentsize, self._shnum, self._shstrndx = shoff, shentsize, shnum, shstrndx

    # -- raw access -------------------------------------------------------
    def _unpack(self, fmt: str, off: int) -> tuple:
        try:
            return struct.unpack_from(self.endian + fmt, self.data, off)
        except struct.error:
            raise UserError(f"{self.path}: truncated or corrupt ELF (offset {off:#x})") from None

    def _phdrs(self, off: int, entsize: int, num: int) -> list[Phdr]:
        fmt = _PHDR[self.elfclass]
        if num and entsize < struct.calcsize(fmt):
            raise UserError(f"{self.path}: corrupt ELF program headers")
        out = []
        for i in range(num):
            t = self._unpack(fmt, off + i * entsize)
            if self.elfclass == 1:  # p_type p_offset p_vaddr p_paddr p_filesz p_memsz p_flags p_align
                out.append(Phdr(t[0], t[6], t[1], t[2], t[4], t[5], t[7]))
            else:  # p_type p_flags p_offset p_vaddr p_paddr p_filesz p_memsz p_align
                out.append(Phdr(t[0], t[1], t[2], t[3], t[5], t[6], t[7]))
        return out

    def phdr(self, ptype: int) -> Phdr | None:
        """The first program header of a type (PT_TLS, PT_DYNAMIC, ...), or None."""
        return next((p for p in self.phdrs if p.type == ptype), None)

    @cached_property
    def load_base(self) -> int:
        """Lowest PT_LOAD address rounded down to a page: what the bias is relative to."""
        loads = [p.vaddr - p.offset for p in self.phdrs if p.type == PT_LOAD]
        return min(loads) if loads else 0

    @cached_property
    def sections(self) -> list[tuple[str, int, int, int, int, int, int]]:
        """(name, type, addr, offset, size, link, entsize) for every section."""
        fmt = _SHDR[self.elfclass]
        if not self._shoff or not self._shnum or self._shentsize < struct.calcsize(fmt):
            return []
        raw = [self._unpack(fmt, self._shoff + i * self._shentsize) for i in range(self._shnum)]
        names = raw[self._shstrndx] if self._shstrndx < len(raw) else None
        out = []
        for s in raw:
            if self.elfclass == 1:
                name, typ, _, addr, off, size, link, _, _, entsize = s
            else:
                name, typ, _, addr, off, size, link, _, _, entsize = s
            out.append((self._str(names[4], name) if names else "", typ, addr, off, size, link, entsize))
        return out

    def _str(self, table_off: int, idx: int) -> str:
        start = table_off + idx
        end = self.data.find(b"\0", start, start + 4096)
        if start >= len(self.data) or end < 0:
            return ""
        return self.data[start:end].decode("utf-8", "replace")

    def section(self, name: str):
        return next((s for s in self.sections if s[0] == name), None)

    def _symtab(self, want: int) -> dict[str, Symbol]:
        out: dict[str, Symbol] = {}
        secs = self.sections
        fmt = self.endian + _SYM[self.elfclass]
        n = struct.calcsize(fmt)
        for name, typ, _, off, size, link, _ in secs:
            if typ != want or link >= len(secs) or off + size > len(self.data):
                continue
            stroff = secs[link][3]
            data = self.data
            for i in range(off + n, off + size - n + 1, n):  # entry 0 is the null symbol
                if self.elfclass == 1:
                    st_name, value, sz, info, _, shndx = struct.unpack_from(fmt, data, i)
                else:
                    st_name, info, _, shndx, value, sz = struct.unpack_from(fmt, data, i)
                if not st_name:
                    continue
                s = self._str(stroff, st_name)
                if "@" in s:
                    s = s.split("@", 1)[0]
                if s not in out or (out[s].shndx == 0 and shndx):
                    out[s] = Symbol(s, value, sz, info & 0xF, shndx)
        return out

    @cached_property
    def dynsym(self) -> dict[str, Symbol]:
        return self._symtab(SHT_DYNSYM)

    @cached_property
    def symtab(self) -> dict[str, Symbol]:
        return self._symtab(SHT_SYMTAB)

    def symbol(self, name: str) -> Symbol | None:
        """A defined symbol by name from .dynsym, then .symtab (None if absent or undefined)."""
        for table in (self.dynsym, self.symtab):
            s = table.get(name)
            if s is not None and s.shndx != 0:
                return s
        return None

    def symbols_with_prefix(self, prefix: str) -> dict[str, Symbol]:
        out = {}
        for table in (self.symtab, self.dynsym):
            for k, s in table.items():
                if k.startswith(prefix) and s.shndx != 0:
                    out[k] = s
        return out

    @cached_property
    def tls_symbols(self) -> list[Symbol]:
        """Defined STT_TLS symbols (st_value = offset in the module's TLS block).

        Scans the raw tables and decodes only TLS entries' names: a libc debug file
        has tens of thousands of symbols and a handful of TLS ones."""
        seen: dict[str, Symbol] = {}
        fmt = self.endian + _SYM[self.elfclass]
        n = struct.calcsize(fmt)
        secs = self.sections
        for want in (SHT_DYNSYM, SHT_SYMTAB):
            for _, typ, _, off, size, link, _ in secs:
                if typ != want or link >= len(secs) or off + size > len(self.data) or size < n:
                    continue
                stroff = secs[link][3]
                count = size // n
                for ent in struct.iter_unpack(fmt, self.data[off:off + count * n]):
                    if self.elfclass == 1:
                        st_name, value, sz, info, _, shndx = ent
                    else:
                        st_name, info, _, shndx, value, sz = ent
                    if info & 0xF != STT_TLS or not shndx or not st_name:
                        continue
                    name = self._str(stroff, st_name).split("@", 1)[0]
                    if name.startswith("$") or name == "_TLS_MODULE_BASE_":
                        continue  # ARM mapping symbols ($d) and the TLS-descriptor anchor: not variables
                    seen.setdefault(name, Symbol(name, value, sz, STT_TLS, shndx))
        return sorted(seen.values(), key=lambda s: (s.value, s.name))

    @cached_property
    def address_symbols(self) -> tuple[list[int], list[Symbol]]:
        """Functions and objects sorted by address, for naming what a pointer points at."""
        syms = {}
        for table in (self.dynsym, self.symtab):
            for s in table.values():
                if s.type in (STT_FUNC, STT_OBJECT) and s.shndx != 0 and s.value:
                    syms.setdefault(s.value, s)
        keys = sorted(syms)
        return keys, [syms[k] for k in keys]

    def symbolize(self, vaddr: int) -> str | None:
        """'name+off' for a link-time address inside a function or object, else None."""
        keys, syms = self.address_symbols
        i = bisect.bisect_right(keys, vaddr) - 1
        if i < 0:
            return None
        s = syms[i]
        off = vaddr - s.value
        if off < max(s.size, 1):
            return s.name if off == 0 else f"{s.name}+{off:#x}"
        return None

    @cached_property
    def build_id(self) -> bytes | None:
        for p in self.phdrs:
            if p.type == PT_NOTE and p.offset + p.filesz <= len(self.data):
                for owner, ntype, desc in parse_notes(bytes(self.data[p.offset:p.offset + p.filesz]), self.endian):
                    if owner == b"GNU" and ntype == NT_GNU_BUILD_ID:
                        return desc
        return None

    @cached_property
    def interp(self) -> str | None:
        p = self.phdr(PT_INTERP)
        if p is None:
            return None
        return bytes(self.data[p.offset:p.offset + p.filesz]).split(b"\0")[0].decode("utf-8", "replace")

    def file_bytes(self, vaddr: int, size: int) -> bytes | None:
        """Bytes at a link-time address from the file's PT_LOAD contents (zeros in .bss)."""
        for p in self.phdrs:
            if p.type == PT_LOAD and p.vaddr <= vaddr and vaddr + size <= p.vaddr + p.memsz:
                rel = vaddr - p.vaddr
                have = max(0, min(size, p.filesz - rel))
                out = bytes(self.data[p.offset + rel:p.offset + rel + have]) if have else b""
                return out + bytes(size - len(out))
        return None


def parse_notes(data: bytes, endian: str = "<") -> list[tuple[bytes, int, bytes]]:
    """(owner, type, descriptor) for each note in a PT_NOTE segment; stops at corruption."""
    out = []
    off, n = 0, len(data)
    while off + 12 <= n:
        namesz, descsz, ntype = struct.unpack_from(endian + "III", data, off)
        off += 12
        name_end = off + namesz
        desc_off = off + ((namesz + 3) & ~3)
        desc_end = desc_off + descsz
        if desc_end > n:
            break
        out.append((data[off:name_end].rstrip(b"\0"), ntype, data[desc_off:desc_end]))
        off = desc_off + ((descsz + 3) & ~3)
    return out


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
