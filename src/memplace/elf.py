"""The one ELF reader: headers, program headers, sections, symbols, notes, build-id.

A small, strict reader written for speed and for hostile input: every offset is checked
against the file, and anything malformed becomes one `UserError` naming the file. It
serves the run side (what a program is, its build-id, its symbols for policy sites), the
profile side (load extents, symbols for symbolizing) and the post-mortem side (cores are
ELF files too: memplace.postmortem.elfcore reads their notes and memory on top of it).
DWARF (line tables, types) is read with pyelftools, opened here by `dwarf()`.

    >>> info = elf_info("/bin/sh")
    >>> info.size > 0
    True
    >>> len(build_id("/bin/sh") or "") in (0, 40)
    True
"""

from __future__ import annotations

import bisect
import contextlib
import functools
import mmap
import os
import re
import stat
import struct
from collections import namedtuple
from functools import cached_property

from memplace.errors import UserError

ET_EXEC, ET_DYN, ET_CORE = 2, 3, 4
PT_LOAD, PT_DYNAMIC, PT_INTERP, PT_NOTE, PT_PHDR, PT_TLS = 1, 2, 3, 4, 6, 7
PF_X = 1
SHT_SYMTAB, SHT_NOTE, SHT_DYNSYM = 2, 7, 11
SHT_NOBITS = 8
SHF_COMPRESSED, ELFCOMPRESS_ZLIB = 0x800, 1
STT_OBJECT, STT_FUNC, STT_TLS, STT_GNU_IFUNC = 1, 2, 6, 10
STB_GLOBAL = 1
NT_GNU_BUILD_ID = 3
DEBUG_ROOT = "/usr/lib/debug/.build-id"

# (header, program header, section header, symbol) layouts per ELF class, and
# the order their fields come in, so one parser serves 32- and 64-bit files.
_EHDR = {1: "16sHHIIIIIHHHHHH", 2: "16sHHIQQQIHHHHHH"}
_PHDR = {1: "IIIIIIII", 2: "IIQQQQQQ"}  # 32-bit order differs: see _phdr()
_SHDR = {1: "IIIIIIIIII", 2: "IIQQQQIIQQ"}
_SYM = {1: "IIIBBH", 2: "IBBHQQ"}
_TLS_INFO = bytes(1 if i & 0xF == STT_TLS else 0 for i in range(256))  # st_info values of TLS symbols


# Records are named tuples, not dataclasses: this module is on the start-up path of every
# `memplace run` (a program's kind and build-id), and dataclasses cost it 20 ms to import.
Phdr = namedtuple("Phdr", "type flags offset vaddr filesz memsz align")

# type: STT_*; bind: STB_* (filled in by iter_symbols)
Symbol = namedtuple("Symbol", "name value size type shndx bind", defaults=(0,))


class ElfFile:
    """An ELF file opened read-only with mmap.

    >>> libc = ElfFile("/lib/x86_64-linux-gnu/libc.so.6")    # doctest: +SKIP
    >>> libc.symbol("__pthread_keys").size                   # doctest: +SKIP
    16384
    """

    def __init__(self, path: str):
        self.path = path
        try:
            # Without blocking: a FIFO given as a program or a core must not hang the open.
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as e:
            raise UserError(f"{path}: cannot open: {e.strerror}") from None
        except ValueError:  # a NUL in the name
            raise UserError(f"{path!r}: not a file name") from None
        try:
            st = os.fstat(fd)
            size = st.st_size
            if not stat.S_ISREG(st.st_mode):
                raise UserError(f"{path}: not an ELF file (not a regular file)")
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
        except (struct.error, OverflowError):  # an offset past the data, or past any index
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

    def section_data(self, name: str) -> bytes | None:
        """A section's contents, decompressed when compressed (SHF_COMPRESSED with zlib, or
        GNU's .zdebug_* form); None when it is absent, has no contents in the file
        (SHT_NOBITS) or is compressed some other way."""
        import zlib

        secs = self.sections
        gnu = name.startswith(".debug_") and "." + "z" + name[1:]
        i = next((k for k, s in enumerate(secs) if s[0] == name), None)
        if i is None and gnu:
            i = next((k for k, s in enumerate(secs) if s[0] == gnu), None)
        if i is None or secs[i][1] == SHT_NOBITS:
            return None
        _, _, _, off, size, _, _ = secs[i]
        if off + size > len(self.data):
            raise UserError(f"{self.path}: section {name} runs past the end of the file")
        raw = self.data[off:off + size]
        try:
            if secs[i][0] != name:  # .zdebug_*: "ZLIB", the size (big-endian), zlib data
                return zlib.decompress(raw[12:]) if raw[:4] == b"ZLIB" else raw
            flags = self._unpack(_SHDR[self.elfclass], self._shoff + i * self._shentsize)[2]
            if not flags & SHF_COMPRESSED:
                return raw
            chdr = "IIQQ" if self.elfclass == 2 else "III"
            if self._unpack(chdr, off)[0] != ELFCOMPRESS_ZLIB:
                return None
            return zlib.decompress(raw[struct.calcsize(chdr):])
        except zlib.error:
            raise UserError(f"{self.path}: section {name} does not decompress") from None

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

    def iter_symbols(self, table: str):
        """Every named entry of ".symtab" or ".dynsym", in table order: (full name, Symbol)
        with the name as written ("memcpy@@GLIBC_2.14"), undefined ones included."""
        want = {".symtab": SHT_SYMTAB, ".dynsym": SHT_DYNSYM}[table]
        secs = self.sections
        fmt = self.endian + _SYM[self.elfclass]
        n = struct.calcsize(fmt)
        for name, typ, _, off, size, link, _ in secs:
            if typ != want or name != table or link >= len(secs) or off + size > len(self.data):
                continue
            stroff = secs[link][3]
            for i in range(off + n, off + size - n + 1, n):  # entry 0 is the null symbol
                if self.elfclass == 1:
                    st_name, value, sz, info, _, shndx = struct.unpack_from(fmt, self.data, i)
                else:
                    st_name, info, _, shndx, value, sz = struct.unpack_from(fmt, self.data, i)
                if not st_name:
                    continue
                full = self._str(stroff, st_name)
                yield full, Symbol(full.split("@", 1)[0], value, sz, info & 0xF, shndx, info >> 4)

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

    def _raw_symbols(self, kinds: bytes | None = None):
        """(st_name, value, size, info, shndx, string table offset) of every entry of .dynsym,
        then .symtab, unpacked in bulk with no name decoded (a libc debug file has tens of
        thousands of symbols; callers decode the few they keep). With `kinds` (a 256-byte
        table, nonzero for the st_info values wanted), only those entries: the st_info bytes
        are picked out of the table with one slice, so the others are never unpacked."""
        fmt = self.endian + _SYM[self.elfclass]
        n = struct.calcsize(fmt)
        info_at = 4 if self.elfclass == 2 else 12
        secs = self.sections
        for want in (SHT_DYNSYM, SHT_SYMTAB):
            for _, typ, _, off, size, link, _ in secs:
                if typ != want or link >= len(secs) or off + size > len(self.data) or size < n:
                    continue
                stroff = secs[link][3]
                table = self.data[off:off + (size // n) * n]
                if kinds is None:
                    ents = struct.iter_unpack(fmt, table)
                else:
                    hits = table[info_at::n].translate(kinds)
                    ents = (struct.unpack_from(fmt, table, m.start() * n) for m in re.finditer(b"[^\0]", hits))
                for ent in ents:
                    if self.elfclass == 1:
                        st_name, value, sz, info, _, shndx = ent
                    else:
                        st_name, info, _, shndx, value, sz = ent
                    yield st_name, value, sz, info, shndx, stroff

    @cached_property
    def tls_symbols(self) -> list[Symbol]:
        """Defined STT_TLS symbols (st_value = offset in the module's TLS block).

        Scans the raw tables and decodes only TLS entries' names: a libc debug file
        has tens of thousands of symbols and a handful of TLS ones."""
        seen: dict[str, Symbol] = {}
        for st_name, value, sz, info, shndx, stroff in self._raw_symbols(_TLS_INFO):
            if info & 0xF != STT_TLS or not shndx or not st_name:
                continue
            name = self._str(stroff, st_name).split("@", 1)[0]
            if name.startswith("$") or name == "_TLS_MODULE_BASE_":
                continue  # ARM mapping symbols ($d) and the TLS-descriptor anchor: not variables
            seen.setdefault(name, Symbol(name, value, sz, STT_TLS, shndx))
        return sorted(seen.values(), key=lambda s: (s.value, s.name))

    @cached_property
    def address_symbols(self) -> tuple[list[int], list[tuple[int, int]]]:
        """Functions and objects sorted by address, for naming what a pointer points at:
        (addresses, [(size, string-table offset of the name)]). Scanned raw, names decoded
        only when asked (a libc debug file has ten thousand symbols; a run names a few)."""
        syms: dict[int, tuple[int, int]] = {}
        for st_name, value, sz, info, shndx, stroff in self._raw_symbols():
            if info & 0xF in (STT_FUNC, STT_OBJECT) and shndx and value and st_name and value not in syms:
                syms[value] = (sz, stroff + st_name)
        keys = sorted(syms)
        return keys, [syms[k] for k in keys]

    def symbolize(self, vaddr: int) -> str | None:
        """'name+off' for a link-time address inside a function or object, else None."""
        keys, syms = self.address_symbols
        i = bisect.bisect_right(keys, vaddr) - 1
        if i < 0:
            return None
        size, name_at = syms[i]
        off = vaddr - keys[i]
        if off < max(size, 1):
            name = self._str(name_at, 0).split("@", 1)[0]
            return name if off == 0 else f"{name}+{off:#x}"
        return None

    @cached_property
    def build_id(self) -> bytes | None:
        """The GNU build-id note: from the PT_NOTE segments, else (a file without them)
        from the SHT_NOTE sections. The one build-id reader of memplace."""
        for p in self.phdrs:
            if p.type == PT_NOTE and p.offset + p.filesz <= len(self.data):
                for owner, ntype, desc in parse_notes(bytes(self.data[p.offset:p.offset + p.filesz]), self.endian):
                    if owner == b"GNU" and ntype == NT_GNU_BUILD_ID:
                        return desc
        try:
            sections = self.sections
        except UserError:  # corrupt section headers: no build-id rather than an error
            return None
        for _, typ, _, off, size, _, _ in sections:
            if typ == SHT_NOTE and off + size <= len(self.data):
                for owner, ntype, desc in parse_notes(bytes(self.data[off:off + size]), self.endian):
                    if owner == b"GNU" and ntype == NT_GNU_BUILD_ID:
                        return desc
        return None

    def has_section(self, name: str) -> bool:
        return self.section(name) is not None

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


class ElfInfo(namedtuple("ElfInfo", "path build_id lo hi exec_vaddr pie_or_shared first_load_executable")):
    """Link-time view of a module: [lo, hi) covers its PT_LOAD segments.

    lo: lowest PT_LOAD p_vaddr; hi: end of the highest PT_LOAD (p_vaddr + p_memsz);
    exec_vaddr: p_vaddr of the first executable PT_LOAD, page-aligned down;
    pie_or_shared: ET_DYN (loaded at a bias), not ET_EXEC (bias 0); build_id: hex or None.
    """

    __slots__ = ()

    @property
    def size(self) -> int:
        return self.hi - self.lo


@functools.lru_cache(maxsize=256)
def _elf_info(path: str, _mtime: float, _size: int) -> ElfInfo | None:
    try:
        elf = ElfFile(path)
    except UserError:
        return None
    loads = [p for p in elf.phdrs if p.type == PT_LOAD]
    if not loads:
        return None
    execs = [p for p in loads if p.flags & PF_X]
    page = 0x1000
    bid = elf.build_id
    return ElfInfo(
        path=path,
        build_id=bid.hex() if bid is not None else None,
        lo=min(p.vaddr for p in loads),
        hi=max(p.vaddr + p.memsz for p in loads),
        exec_vaddr=(execs[0].vaddr & ~(page - 1)) if execs else 0,
        pie_or_shared=elf.type == ET_DYN,
        first_load_executable=bool(loads[0].flags & PF_X),
    )


def elf_info(path: str) -> ElfInfo | None:
    """ElfInfo of the file at `path`, or None when it cannot be read as ELF (cached)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):  # ValueError: a NUL in the name
        return None
    if not stat.S_ISREG(st.st_mode):
        return None
    return _elf_info(path, st.st_mtime, st.st_size)


def open_elf(path: str) -> ElfFile | None:
    """The file as ElfFile, or None when it cannot be read as ELF."""
    try:
        return ElfFile(path)
    except UserError:
        return None


def build_id(path: str) -> str | None:
    """The GNU build-id of the file at `path` as lowercase hex (None: none, or not ELF)."""
    info = elf_info(path)
    return info.build_id if info is not None else None


def separate_debug_file(build_id_hex: str | None, root: str = DEBUG_ROOT) -> str | None:
    """<root>/xx/yyyy.debug (root: /usr/lib/debug/.build-id) for a build-id, if that file exists."""
    if not build_id_hex or len(build_id_hex) < 3:
        return None
    path = os.path.join(root, build_id_hex[:2], build_id_hex[2:] + ".debug")
    return path if os.path.isfile(path) else None


@contextlib.contextmanager
def dwarf(path: str):
    """pyelftools' DWARFInfo of the file (None when it has none), valid inside the block.

    Errors opening or parsing propagate (OSError, ELFError, ...): callers that read
    debug info decide what a damaged file means to them."""
    from elftools.elf.elffile import ELFFile  # deferred: only DWARF readers pay for pyelftools

    with open(path, "rb") as f:
        elf = ELFFile(f)
        yield elf.get_dwarf_info() if elf.has_dwarf_info() else None


_LIST_ARROW = re.compile(r"^\s*(\S+)\s+=>\s+(/\S+)\s+\(0x[0-9a-fA-F]+\)")
_LIST_PLAIN = re.compile(r"^\s*(/\S+)\s+\(0x[0-9a-fA-F]+\)")


def loader_list(exe: str) -> list[str]:
    """The libraries the program's own dynamic loader maps at start (`ld.so --list`), in
    load order. A static program, or one whose loader cannot run here, has none.

        >>> "libc.so.6" in " ".join(loader_list("/bin/sh"))
        True
    """
    elf = open_elf(exe)
    interp = elf.interp if elf is not None else None
    if not interp or not os.path.exists(interp):
        return []
    import subprocess

    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "LD_AUDIT")}
    try:
        run = subprocess.run([interp, "--list", exe], capture_output=True, text=True,
                             timeout=30, env=env)
    except (OSError, subprocess.SubprocessError):
        return []
    libs = []
    for line in run.stdout.splitlines():
        m = _LIST_ARROW.match(line) or _LIST_PLAIN.match(line)
        if m:
            path = m.group(m.lastindex)
            if path not in libs and not _same_file(path, exe):
                libs.append(path)
    return libs


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


# -- inlined calls (DWARF DW_TAG_inlined_subroutine) -------------------------
#
# An optimised C++ program calls operator new from code inlined into its own function:
# the return address's line row names the innermost inlined line (new_allocator.h), and
# the program's own line, where it called push_back or make_shared, exists only as the
# call_file:call_line of the DW_TAG_inlined_subroutine entries around that address.


# One inlined body: its address ranges ((lo, hi), ...), how many inlined bodies enclose it,
# where it was called from (line-program file index, line), and its DIE (for a name).
InlinedCall = namedtuple("InlinedCall", "ranges depth call_file call_line die")


def die_ranges(info, cu, die) -> list[tuple[int, int]]:
    """A DIE's address ranges [lo, hi): DW_AT_low_pc/high_pc, or DW_AT_ranges (DWARF 2-5)."""
    at = die.attributes
    if "DW_AT_low_pc" in at and "DW_AT_high_pc" in at:
        lo = at["DW_AT_low_pc"].value
        high = at["DW_AT_high_pc"]
        return [(lo, high.value if high.form == "DW_FORM_addr" else lo + high.value)]
    if "DW_AT_ranges" not in at or at["DW_AT_ranges"].form == "DW_FORM_rnglistx":
        return []  # rnglistx is only in split DWARF, which is not read
    lists = info.range_lists()
    if lists is None:
        return []
    from elftools.dwarf.ranges import BaseAddressEntry

    top = cu.get_top_DIE().attributes
    base = top["DW_AT_low_pc"].value if "DW_AT_low_pc" in top else 0
    out = []
    for e in lists.get_range_list_at_offset(at["DW_AT_ranges"].value, cu=cu):
        if isinstance(e, BaseAddressEntry):
            base = e.base_address
        elif getattr(e, "is_absolute", False):
            out.append((e.begin_offset, e.end_offset))
        else:
            out.append((base + e.begin_offset, base + e.end_offset))
    return [(lo, hi) for lo, hi in out if hi > lo]


def inlined_calls(info, cu) -> list[InlinedCall]:
    """Every inlined body of one compilation unit (outer ones have smaller depth)."""
    out: list[InlinedCall] = []
    stack = [(cu.get_top_DIE(), 0)]
    while stack:
        die, depth = stack.pop()
        for child in die.iter_children():
            inner = depth
            if child.tag == "DW_TAG_inlined_subroutine":
                at = child.attributes
                ranges = die_ranges(info, cu, child)
                if ranges and "DW_AT_call_line" in at:
                    out.append(InlinedCall(tuple(ranges), depth, at["DW_AT_call_file"].value
                                           if "DW_AT_call_file" in at else 0,
                                           at["DW_AT_call_line"].value, child))
                inner = depth + 1
            if child.has_children:
                stack.append((child, inner))
    return out


def inlined_name(die) -> str | None:
    """The linkage or plain name of an inlined body's function (through its abstract origin
    and specification)."""
    for _ in range(4):
        at = die.attributes
        for key in ("DW_AT_linkage_name", "DW_AT_MIPS_linkage_name", "DW_AT_name"):
            if key in at:
                v = at[key].value
                return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
        for ref in ("DW_AT_abstract_origin", "DW_AT_specification"):
            if ref in at:
                die = die.get_DIE_from_attribute(ref)
                break
        else:
            return None
    return None
