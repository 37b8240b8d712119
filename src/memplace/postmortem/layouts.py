"""Where a libc keeps thread state, as data: per-arch TLS ABI, glibc and musl layouts.

Per architecture (`TLS_ABIS`): the TLS variant, where the DTV pointer and the first
static block sit relative to the thread pointer, and where glibc's struct pthread is.

glibc (any version that has them: libc.so.6 >= 2.34, libpthread.so.0 before, or
a static executable's .symtab) describes its internals for libthread_db as
`uint32_t[3] = {bits, count, offset}` per field and `uint32_t` per sizeof. We read
those from the core's own libc file, so a core from another glibc is read with
that glibc's layout. musl has no such symbols: its few internal offsets are data
below, per musl version and architecture, plus per-build addresses of static
variables for the stripped shared libc that distributions ship.

>>> lay = glibc_layout(libc_elf)                     # doctest: +SKIP
>>> lay.field("pthread_specific")                    # doctest: +SKIP
Field(bits=2048, count=1, offset=1296)
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from memplace.postmortem.elfcore import ElfFile

DB_PREFIX = "_thread_db_"


# -- TLS ABI per architecture -------------------------------------------------

@dataclass(frozen=True)
class TlsAbi:
    """Where thread-local storage sits around the thread pointer on one machine."""

    tls_above_tp: bool  # TLS variant I (aarch64) vs variant II (x86)
    # glibc's struct pthread relative to the TP: at it (x86), or just below it (variant I),
    # `_thread_db_const_thread_area` bytes down: aarch64's DB_THREAD_SELF is
    # CONST_THREAD_AREA(64, sizeof(struct pthread)); on x86_64 that symbol is a register index.
    glibc_pthread_below_tp: bool
    glibc_tcb_dtv: int  # tcbhead_t.dtv relative to the thread pointer
    musl_dtv: int  # where musl keeps the dtv pointer, relative to the thread pointer
    musl_tls_gap: int  # musl: bytes between TP and the first TLS block (TLS_ABOVE_TP)
    glibc_tls_gap: int  # glibc variant I: TLS_TCB_SIZE before the first block


# Keyed by Arch.name (arch.py), like MUSL_LAYOUTS below.
TLS_ABIS: dict[str, TlsAbi] = {
    "x86_64": TlsAbi(tls_above_tp=False, glibc_pthread_below_tp=False, glibc_tcb_dtv=8, musl_dtv=8,
                     musl_tls_gap=0, glibc_tls_gap=0),
    "i386": TlsAbi(tls_above_tp=False, glibc_pthread_below_tp=False, glibc_tcb_dtv=4, musl_dtv=4,
                   musl_tls_gap=0, glibc_tls_gap=0),
    "aarch64": TlsAbi(tls_above_tp=True, glibc_pthread_below_tp=True, glibc_tcb_dtv=0, musl_dtv=-8,
                      musl_tls_gap=16, glibc_tls_gap=16),
}


def tls_abi(arch) -> TlsAbi:
    """The TLS ABI row for an `arch.Arch`.

    >>> from memplace.postmortem.arch import ARCHES, EM_AARCH64
    >>> tls_abi(ARCHES[EM_AARCH64]).tls_above_tp
    True
    """
    return TLS_ABIS[arch.name]


# -- glibc -------------------------------------------------------------------

# link_map.l_tls_offset values that mean "no static block" (NO_TLS_OFFSET,
# FORCED_DYNAMIC_TLS_OFFSET), and the DTV pointer of a block not yet allocated
# (TLS_DTV_UNALLOCATED); -1 is read back as an all-ones word.
GLIBC_NO_TLS_OFFSET = 0
GLIBC_FORCED_DYNAMIC_TLS_OFFSET = -1
GLIBC_TLS_DTV_UNALLOCATED = -1


@dataclass(frozen=True)
class Field:
    """One `_thread_db_` descriptor: element size in bits, element count, byte offset."""

    bits: int
    count: int
    offset: int

    @property
    def size(self) -> int:
        return self.bits // 8


@dataclass
class GlibcLayout:
    """glibc's struct layouts as that very glibc described them."""

    fields: dict[str, Field]
    sizes: dict[str, int]
    source: str  # file the descriptors came from
    version: str | None = None

    def field(self, name: str) -> Field:
        return self.fields[name]

    def off(self, name: str) -> int:
        return self.fields[name].offset

    def has(self, *names: str) -> bool:
        return all(n in self.fields or n in self.sizes for n in names)

    def sizeof(self, name: str) -> int:
        return self.sizes[name]

    @property
    def pthread_below_tp(self) -> int:
        """Variant I (aarch64): bytes from struct pthread up to the thread pointer, as this
        glibc's `const_thread_area` states it (else its sizeof(struct pthread)).

        >>> lay.pthread_below_tp                       # doctest: +SKIP
        1856
        """
        return self.sizes.get("const_thread_area") or self.sizes["pthread"]

    def dtv_entry_size(self, word: int) -> int:
        """Bytes per dtv_t entry (a union of a counter and {pointer, is_static}: two words
        when this glibc does not describe it)."""
        return self.field("dtv_dtv").size if self.has("dtv_dtv") else 2 * word

    @property
    def dtv_pointer_offset(self) -> int:
        """Offset of the block pointer inside a dtv_t entry."""
        return self.off("dtv_t_pointer_val") if self.has("dtv_t_pointer_val") else 0


def glibc_layout(elf: ElfFile) -> GlibcLayout | None:
    """The layout described by `_thread_db_*` symbols in `elf`, or None if it has none."""
    syms = elf.symbols_with_prefix(DB_PREFIX)
    if "_thread_db_sizeof_pthread" not in syms:
        return None
    fields, sizes = {}, {}
    for name, s in syms.items():
        short = name[len(DB_PREFIX):]
        if short.startswith("sizeof_") and s.size == 4:
            data = elf.file_bytes(s.value, 4)
            if data is not None:
                sizes[short[len("sizeof_"):]] = struct.unpack(elf.endian + "I", data)[0]
        elif short == "const_thread_area" and s.size == 4:
            data = elf.file_bytes(s.value, 4)
            if data is not None:
                sizes[short] = struct.unpack(elf.endian + "I", data)[0]
        elif s.size == 12:
            data = elf.file_bytes(s.value, 12)
            if data is not None:
                fields[short] = Field(*struct.unpack(elf.endian + "III", data))
    return GlibcLayout(fields, sizes, elf.path, _glibc_version(elf))


def _glibc_version(elf: ElfFile) -> str | None:
    s = elf.symbol("__nptl_version")
    if s is not None and 0 < s.size < 32:
        data = elf.file_bytes(s.value, s.size)
        if data:
            return data.split(b"\0")[0].decode("ascii", "replace")
    return None


# -- musl ------------------------------------------------------------------

# musl's dtv is an array of words: dtv[0] = number of entries, dtv[modid] = block
# (DTP_OFFSET is 0 on x86 and aarch64).
MUSL_DTV_ENTRY_WORDS = 1


@dataclass(frozen=True)
class MuslLayout:
    """Offsets inside musl's `struct pthread` (non-ABI, stable across a release series)."""

    self_: int
    prev: int
    next: int
    tid: int
    tsd: int
    keys_max: int = 128


# (architecture, "major.minor") -> layout. Checked: x86_64 1.2.3 (Debian 12) tsd at +128.
# i386 follows from the same struct with 4-byte pointers (self, dtv, prev, next, sysinfo,
# canary, tid, errno_val, detach_state, cancel, 3 chars + bitfield, map_base, map_size,
# stack, stack_size, guard_size, result, cancelbuf, tsd).
MUSL_LAYOUTS: dict[tuple[str, str], MuslLayout] = {
    ("x86_64", "1.2"): MuslLayout(self_=0, prev=16, next=24, tid=48, tsd=128),
    ("i386", "1.2"): MuslLayout(self_=0, prev=8, next=12, tid=24, tsd=72),
}


@dataclass(frozen=True)
class MuslBuild:
    """Link-time addresses of musl's static variables in one stripped libc.so build."""

    version: str
    arch: str
    keys: int  # static void (*keys[128])(void *)
    tsd_main: int  # __pthread_tsd_main: the main thread's key values
    nodtor: int  # the sentinel destructor pthread_key_create stores for NULL


# build-id -> addresses, read from `pthread_key_create`'s code in that build
# (lea of `keys`, `__pthread_tsd_main` and `nodtor`); see docs/postmortem.md.
MUSL_BUILDS: dict[str, MuslBuild] = {
    "54d00df44fce62f541ca62b56bdef5bf31ff077c": MuslBuild(
        "1.2.3", "x86_64", keys=0xADAA0, tsd_main=0xADEA0, nodtor=0x6A7F0),
}


def musl_version(elf: ElfFile) -> str | None:
    """musl's version string as embedded in its libc.so (e.g. '1.2.3'), if recognisable."""
    b = elf.build_id
    if b is not None and b.hex() in MUSL_BUILDS:
        return MUSL_BUILDS[b.hex()].version
    sec = elf.section(".rodata")
    if sec is None:
        return None
    m = re.search(rb"\x00(1\.\d+\.\d+)\x00", elf.data[sec[3]:sec[3] + sec[4]])
    return m.group(1).decode() if m else None


def musl_layout(arch: str, version: str | None) -> tuple[MuslLayout | None, str]:
    """The struct pthread layout for a musl version, and the version it was chosen for."""
    series = ".".join(version.split(".")[:2]) if version else "1.2"
    lay = MUSL_LAYOUTS.get((arch, series))
    return lay, series if lay else (version or "?")


@dataclass(frozen=True)
class MuslStatics:
    keys: int | None
    tsd_main: int | None
    nodtor: int | None


def musl_statics(elf: ElfFile, bias: int) -> MuslStatics:
    """Run-time addresses of `keys`, `__pthread_tsd_main` and `nodtor` in a musl module."""
    b = elf.build_id
    build = MUSL_BUILDS.get(b.hex()) if b is not None else None
    if build is not None:
        return MuslStatics(bias + build.keys, bias + build.tsd_main, bias + build.nodtor)

    def addr(name: str) -> int | None:
        s = elf.symtab.get(name) or elf.dynsym.get(name)
        return bias + s.value if s is not None and s.shndx else None

    return MuslStatics(addr("keys"), addr("__pthread_tsd_main"), addr("nodtor"))
