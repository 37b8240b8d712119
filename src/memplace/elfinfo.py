"""Small facts about ELF files that several modules need: load extents and build-id.

    >>> info = elf_info("/bin/sh")
    >>> info.size > 0
    True
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass

from elftools.common.exceptions import ELFError
from elftools.elf.elffile import ELFFile


@dataclass(frozen=True)
class ElfInfo:
    """Link-time view of a module: [lo, hi) covers its PT_LOAD segments."""

    path: str
    build_id: str | None
    lo: int  # lowest PT_LOAD p_vaddr
    hi: int  # end of the highest PT_LOAD (p_vaddr + p_memsz)
    exec_vaddr: int  # p_vaddr of the first executable PT_LOAD, page-aligned down
    pie_or_shared: bool  # ET_DYN: loaded at a bias; ET_EXEC: bias 0
    first_load_executable: bool

    @property
    def size(self) -> int:
        return self.hi - self.lo


def _build_id(elf: ELFFile) -> str | None:
    for seg in elf.iter_segments():
        if seg["p_type"] != "PT_NOTE":
            continue
        for note in seg.iter_notes():
            if note["n_type"] == "NT_GNU_BUILD_ID":
                return note["n_desc"]
    return None


@functools.lru_cache(maxsize=256)
def _elf_info(path: str, _mtime: float, _size: int) -> ElfInfo | None:
    try:
        with open(path, "rb") as f:
            elf = ELFFile(f)
            loads = [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]
            if not loads:
                return None
            execs = [s for s in loads if s["p_flags"] & 1]
            page = 0x1000
            return ElfInfo(
                path=path,
                build_id=_build_id(elf),
                lo=min(s["p_vaddr"] for s in loads),
                hi=max(s["p_vaddr"] + s["p_memsz"] for s in loads),
                exec_vaddr=(execs[0]["p_vaddr"] & ~(page - 1)) if execs else 0,
                pie_or_shared=elf["e_type"] == "ET_DYN",
                first_load_executable=bool(loads[0]["p_flags"] & 1),
            )
    except (OSError, ELFError, ValueError):
        return None


def elf_info(path: str) -> ElfInfo | None:
    """ElfInfo of the file at `path`, or None when it cannot be read as ELF (cached)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _elf_info(path, st.st_mtime, st.st_size)
