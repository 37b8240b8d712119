"""Per-architecture facts for reading threads out of cores, declared as data.

How a core (and the kernel) records a machine: note types, NT_PRSTATUS offsets,
which register is the thread pointer. Where the *libc* keeps thread state on that
machine (TLS variant, DTV position, gaps) is in `layouts.TLS_ABIS`. Adding an
architecture is adding a row to each table, not editing logic.

>>> ARCHES[EM_X86_64].prstatus_tid, ARCHES[EM_X86_64].word
(32, 8)
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

EM_386 = 3
EM_X86_64 = 62
EM_AARCH64 = 183

# Note types (owner "CORE" unless said otherwise).
NT_PRSTATUS = 1
NT_PRPSINFO = 3
NT_AUXV = 6
NT_FILE = 0x46494C45
NT_SIGINFO = 0x53494749
NT_386_TLS = 0x200  # owner "LINUX": 3 x struct user_desc, one per thread
NT_ARM_TLS = 0x401  # owner "LINUX": tpidr_el0 [, tpidr2_el0]
NT_GNU_BUILD_ID = 3  # owner "GNU", in ELF files

# Layouts inside the per-thread TLS notes.
USER_DESC = struct.Struct("<IIII")  # NT_386_TLS entry: entry_number, base_addr, limit, flags
ARM_TLS_TPIDR = struct.Struct("<Q")  # NT_ARM_TLS starts with tpidr_el0
SELECTOR_INDEX_SHIFT = 3  # an x86 segment selector is index << 3 | TI << 2 | RPL

AT_PHDR = 3
AT_ENTRY = 9
AT_EXECFN = 31


@dataclass(frozen=True)
class Arch:
    """How one machine lays out what the post-mortem reader needs."""

    name: str
    word: int  # pointer size in bytes
    prstatus_size: int
    prstatus_sig: int  # offset of pr_cursig (short)
    prstatus_tid: int  # offset of pr_pid
    prstatus_regs: int  # offset of pr_reg
    reg_size: int  # size of one pr_reg slot
    nregs: int  # pr_reg slots (= struct user_regs_struct words, what PTRACE_GETREGS fills)
    pc_reg: int  # index of the program counter in pr_reg
    tp_reg: int | None  # index of the register that *is* the thread pointer (fs_base)
    gs_reg: int | None  # i386: index of %gs, a selector into the NT_386_TLS entries


ARCHES: dict[int, Arch] = {
    EM_X86_64: Arch(
        "x86_64", word=8, prstatus_size=336, prstatus_sig=12, prstatus_tid=32,
        prstatus_regs=112, reg_size=8, nregs=27, pc_reg=16, tp_reg=21, gs_reg=None,
    ),
    EM_386: Arch(
        "i386", word=4, prstatus_size=144, prstatus_sig=12, prstatus_tid=24,
        prstatus_regs=72, reg_size=4, nregs=17, pc_reg=12, tp_reg=None, gs_reg=10,
    ),
    EM_AARCH64: Arch(
        "aarch64", word=8, prstatus_size=392, prstatus_sig=12, prstatus_tid=32,
        prstatus_regs=112, reg_size=8, nregs=34, pc_reg=32, tp_reg=None, gs_reg=None,
    ),
}


def arch_for(machine: int) -> Arch | None:
    """The Arch row for an ELF e_machine, or None if memplace does not know it."""
    return ARCHES.get(machine)
