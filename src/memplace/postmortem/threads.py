"""Threads and their thread pointers, per architecture, without libthread_db.

x86_64: `fs_base` from NT_PRSTATUS. i386: `%gs` is a GDT selector; the thread
pointer is the base of the NT_386_TLS entry whose number is `gs >> 3`. aarch64:
`tpidr_el0` from NT_ARM_TLS. When a core lacks those notes (QEMU's guest cores),
glibc's own thread lists in memory give every `struct pthread` and its tid.

>>> [hex(thread_pointer(core, t)) for t in core.threads]     # doctest: +SKIP
['0x7f4978013740', '0x7f49780126c0']
"""

from __future__ import annotations

from dataclasses import dataclass

from memplace.postmortem.arch import (
    ARM_TLS_TPIDR, EM_386, EM_AARCH64, EM_X86_64, SELECTOR_INDEX_SHIFT, USER_DESC, Arch,
)
from memplace.postmortem.elfcore import CoreThread, MemoryFault


@dataclass
class Thread:
    """A thread as memplace reports it."""

    tid: int
    tp: int | None  # thread pointer (None: unknown)
    crashed: bool = False
    pc: int | None = None


def thread_pointer_from_notes(arch: Arch, machine: int, t: CoreThread) -> int | None:
    """The thread pointer recorded in a core thread's notes, or None if they lack it.

    >>> thread_pointer_from_notes(core.arch, 62, core.threads[0])    # doctest: +SKIP
    140227787536192
    """
    if machine == EM_X86_64:
        return t.regs[arch.tp_reg] if len(t.regs) > arch.tp_reg else None
    if machine == EM_386:
        if t.tls_note is None or len(t.regs) <= arch.gs_reg:
            return None
        index = t.regs[arch.gs_reg] >> SELECTOR_INDEX_SHIFT
        for off in range(0, len(t.tls_note) - USER_DESC.size + 1, USER_DESC.size):
            number, base, _limit, _flags = USER_DESC.unpack_from(t.tls_note, off)
            if number == index:
                return base
        return None
    if machine == EM_AARCH64:
        if t.tls_note is not None and len(t.tls_note) >= ARM_TLS_TPIDR.size:
            return ARM_TLS_TPIDR.unpack_from(t.tls_note, 0)[0]
        return None
    return None


def thread_pointer(target, thread: Thread | int) -> int | None:
    """The thread pointer of a thread (a Thread or a tid) of a target.

    >>> hex(thread_pointer(target, target.threads[0].tid))             # doctest: +SKIP
    '0x7f4978013740'
    >>> thread_pointer(target, 99999) is None                           # doctest: +SKIP
    True
    """
    tid = thread if isinstance(thread, int) else thread.tid
    for t in target.threads:
        if t.tid == tid:
            return t.tp
    return None


def glibc_threads_in_memory(target) -> dict[int, int]:
    """tid -> struct pthread address from glibc's `_dl_stack_used`/`_dl_stack_user` lists.

    Exited-but-unjoined threads stay on those lists; their tid field is then 0 or
    stale, so a caller matching live tids gets only real threads.

    >>> {tid: hex(pd) for tid, pd in glibc_threads_in_memory(target).items()}   # doctest: +SKIP
    {14563: '0x5502873cc0', 14565: '0x55032741a0'}
    """
    layout, mem = target.glibc, target.mem
    if layout is None or not layout.has("pthread_list", "pthread_tid"):
        return {}
    out: dict[int, int] = {}
    list_off = layout.off("pthread_list")
    tid_off = layout.off("pthread_tid")
    for head in (target.glibc_global("_dl_stack_used"), target.glibc_global("_dl_stack_user")):
        if head is None:
            continue
        try:
            node = mem.read_word(head)
            seen = 0
            while node and node != head and seen < 1_000_000:
                pd = node - list_off
                tid = int.from_bytes(mem.read(pd + tid_off, 4), "little", signed=True)
                if tid > 0:
                    out.setdefault(tid, pd)
                node = mem.read_word(node)
                seen += 1
        except MemoryFault:
            continue
    return out
