"""Where a TLS variable is in a thread: the one place its address is computed.

    address = block(thread, module) + offset          # tls_address()

Inputs, in the order they are found:

1. each module's TLS module id and static offset, as its libc assigned them
   (`assign_tls_modules`: glibc's `link_map.l_tls_modid/l_tls_offset`; musl and
   unknown libcs number modules with PT_TLS in load order);
2. the thread pointer (threads.py) and, for glibc, the thread's struct pthread
   (`pthread_address`: at the TP on x86, below it on aarch64);
3. the module's block in that thread (`tls_block`): glibc, a module with a static
   offset (loaded at start-up) has its block at `tp - l_tls_offset` (x86) or
   `tp + l_tls_offset` (aarch64). Otherwise the thread's DTV is read, after the
   generation check of `td_thr_tlsbase`: a DTV older than the module's slotinfo
   generation (the slot was reused by a later dlopen) has no block for it yet.
   musl: `dtv[modid]`.

Every per-arch and per-libc number comes from `layouts.py` (`TLS_ABIS`, the glibc
layout read from the core's own libc, musl's tables).

>>> th = target.threads[1]                                        # doctest: +SKIP
>>> blk = tls_block(target, th, target.exe)                       # doctest: +SKIP
>>> hex(blk.address), blk.state                                   # doctest: +SKIP
('0x7f49780126a8', 'ok')
>>> hex(tls_address(target, th, target.exe, 0x10))                # doctest: +SKIP
'0x7f49780126b8'
"""

from __future__ import annotations

from dataclasses import dataclass

from memplace.errors import UserError
from memplace.postmortem.elfcore import MemoryFault
from memplace.postmortem.layouts import (
    GLIBC_FORCED_DYNAMIC_TLS_OFFSET, GLIBC_NO_TLS_OFFSET, GLIBC_TLS_DTV_UNALLOCATED,
    MUSL_DTV_ENTRY_WORDS, tls_abi,
)
from memplace.postmortem.modules import Module
from memplace.postmortem.threads import Thread

OK = "ok"
NOT_ALLOCATED = "not allocated in this thread"
NO_STATIC_BLOCK = "no static block"
NO_TP = "no thread pointer"
UNREADABLE = "not in the core"


@dataclass(frozen=True)
class TlsBlock:
    """A module's TLS block in one thread: its address, or why there is none."""

    address: int | None
    state: str
    how: str = ""  # "static" or "dtv"


class NoTlsBlock(LookupError):
    """The module has no TLS block in that thread; `state` says why (e.g. NOT_ALLOCATED)."""

    def __init__(self, state: str):
        super().__init__(state)
        self.state = state


def tls_address(target, thread: Thread, module: Module, offset: int, block: TlsBlock | None = None) -> int:
    """Run-time address of the TLS variable at `offset` in `module`'s block, in `thread`.

    `block` is this thread's `tls_block(target, thread, module)` when the caller
    already has it (tls_values reads many variables per block). Raises NoTlsBlock.

    >>> from memplace.postmortem.tls import select_variables          # doctest: +SKIP
    >>> module, var = select_variables(target, ["errno"])[0]          # doctest: +SKIP
    >>> hex(tls_address(target, target.threads[0], module, var.offset))   # doctest: +SKIP
    '0x7f4978013698'
    """
    blk = block if block is not None else tls_block(target, thread, module)
    if blk.address is None:
        raise NoTlsBlock(blk.state)
    return blk.address + offset


def tls_block(target, thread: Thread, module: Module) -> TlsBlock:
    """The run-time address of `module`'s TLS block in `thread` (static block or DTV).

    >>> tls_block(target, target.threads[1], target.module("libt.so"))    # doctest: +SKIP
    TlsBlock(address=140227787531944, state='ok', how='static')
    """
    if module.tls is None or module.tls_modid is None:
        return TlsBlock(None, NO_STATIC_BLOCK)
    tp = thread.tp
    if tp is None:
        return TlsBlock(None, NO_TP)
    if module.tls_offset is not None and target.libc != "musl":
        return TlsBlock(_static(target, tp, module.tls_offset), OK, "static")
    try:
        if target.libc == "musl":
            return _musl_dtv(target, tp, module)
        if target.glibc is not None:
            return _glibc_dtv(target, tp, module)
    except MemoryFault:
        return TlsBlock(None, UNREADABLE)
    if module.tls_offset is not None:
        return TlsBlock(_static(target, tp, module.tls_offset), OK, "static")
    return TlsBlock(None, NO_STATIC_BLOCK)


def _mask(target) -> int:
    return (1 << (8 * target.arch.word)) - 1


def _static(target, tp: int, off: int) -> int:
    mask = _mask(target)
    return (tp + off) & mask if tls_abi(target.arch).tls_above_tp else (tp - off) & mask


def _musl_dtv(target, tp: int, m: Module) -> TlsBlock:
    mem = target.mem
    dtv = mem.read_word(tp + tls_abi(target.arch).musl_dtv)
    count = mem.read_word(dtv)
    if m.tls_modid > count:
        return TlsBlock(None, NOT_ALLOCATED, "dtv")
    val = mem.read_word(dtv + m.tls_modid * MUSL_DTV_ENTRY_WORDS * target.arch.word)
    if not val:
        return TlsBlock(None, NOT_ALLOCATED, "dtv")
    return TlsBlock(val, OK, "dtv")


def _glibc_dtv(target, tp: int, m: Module) -> TlsBlock:
    """Port of nptl_db's td_thr_tlsbase: DTV entry with the slotinfo generation check."""
    lay, mem = target.glibc, target.mem
    dtv = mem.read_word(tp + pthread_offset(target) + lay.off("pthread_dtvp"))
    esize = lay.dtv_entry_size(target.arch.word)
    length = mem.read_word(dtv - esize)
    dtv_gen = mem.read_word(dtv)
    modid = m.tls_modid
    mod_gen = slotinfo_generation(target, modid)
    if modid > length or (mod_gen is not None and dtv_gen < mod_gen):
        return _static_or(target, tp, m, NOT_ALLOCATED)
    val = mem.read_word(dtv + modid * esize + lay.dtv_pointer_offset)
    if val in (0, GLIBC_TLS_DTV_UNALLOCATED & _mask(target)):
        return _static_or(target, tp, m, NOT_ALLOCATED)
    return TlsBlock(val, OK, "dtv")


def _static_or(target, tp: int, m: Module, state: str) -> TlsBlock:
    if m.tls_offset is not None:
        return TlsBlock(_static(target, tp, m.tls_offset), OK, "static")
    return TlsBlock(None, state, "dtv")


def slotinfo_generation(target, modid: int) -> int | None:
    """The generation at which `modid`'s slot was last (re)filled by dlopen (None: unknown)."""
    cache = target.__dict__.setdefault("_slotinfo_gen", {})
    if modid in cache:
        return cache[modid]
    lay = target.glibc
    gen = None
    head = target.glibc_global("_dl_tls_dtv_slotinfo_list")
    if head is not None and lay.has(
            "dtv_slotinfo_list_len", "dtv_slotinfo_list_next",
            "dtv_slotinfo_list_slotinfo", "dtv_slotinfo_gen", "dtv_slotinfo"):
        mem = target.mem
        try:
            lst = mem.read_word(head)
            idx, hops = modid, 0
            while lst and hops < 1 << 16:
                length = mem.read_word(lst + lay.off("dtv_slotinfo_list_len"))
                if idx < length:
                    entry = lst + lay.off("dtv_slotinfo_list_slotinfo") + idx * lay.sizeof("dtv_slotinfo")
                    gen = mem.read_word(entry + lay.off("dtv_slotinfo_gen"))
                    break
                idx -= length
                lst = mem.read_word(lst + lay.off("dtv_slotinfo_list_next"))
                hops += 1
        except MemoryFault:
            gen = None
    cache[modid] = gen
    return gen


# -- the thread descriptor ---------------------------------------------------

def pthread_offset(target) -> int:
    """struct pthread address minus thread pointer (glibc variant I puts it below the TP).

    musl's layouts (layouts.MUSL_LAYOUTS) are for x86 only, where `self` is the TP.
    """
    if target.libc == "glibc" and target.glibc is not None and tls_abi(target.arch).glibc_pthread_below_tp:
        return -target.glibc.pthread_below_tp
    return 0


def pthread_address(target, thread: Thread) -> int:
    """Address of a thread's struct pthread (glibc) / `self` (musl); the thread must have a TP.

    >>> hex(pthread_address(target, target.threads[0]))                 # doctest: +SKIP
    '0x5502873cc0'
    """
    return thread.tp + pthread_offset(target)


# -- module ids and static offsets ---------------------------------------------

def static_offset_variant2(memsz: int, vaddr: int, align: int, prev: int = 0) -> int:
    """glibc/musl rule for a TLS block below the thread pointer (x86): offset from TP.

    >>> static_offset_variant2(0x1c, 0x3dd8, 8)
    32
    """
    align = max(align, 1)
    firstbyte = (-vaddr) & (align - 1)
    return ((prev + memsz - firstbyte + align - 1) // align) * align + firstbyte


def assign_tls_modules(target) -> None:
    """Give every module with PT_TLS its module id and static offset, as its libc did."""
    mods = target.modules
    if target.libc == "glibc" and target.glibc is not None and target.glibc.has(
            "link_map_l_tls_modid", "link_map_l_tls_offset"):
        lay = target.glibc
        no_static = (GLIBC_NO_TLS_OFFSET & _mask(target), GLIBC_FORCED_DYNAMIC_TLS_OFFSET & _mask(target))
        for m in mods:
            if m.tls is None:
                continue
            if m.link_map is not None:
                try:
                    m.tls_modid = target.mem.read_word(m.link_map + lay.off("link_map_l_tls_modid"))
                    off = target.mem.read_word(m.link_map + lay.off("link_map_l_tls_offset"))
                except MemoryFault:
                    raise UserError(f"{target.where}: link_map of {m.name} is not in the core") from None
                m.tls_offset = None if off in no_static else off
            elif m.is_exe:  # static executable: module 1, the first static block
                m.tls_modid = 1
                m.tls_offset = _abi_exe_offset(target, m)
        return
    # musl numbers modules with PT_TLS in load order, the executable first; glibc without
    # layout (unknown libc) falls back to the same numbering and the ABI offset rule.
    n = 0
    for m in mods:
        if m.tls is not None:
            n += 1
            m.tls_modid = n
            if m.is_exe:
                m.tls_offset = _abi_exe_offset(target, m)


def _abi_exe_offset(target, m: Module) -> int:
    t = m.tls
    abi = tls_abi(target.arch)
    if abi.tls_above_tp:
        gap = abi.musl_tls_gap if target.libc == "musl" else abi.glibc_tls_gap
        a = max(t.align, 1)
        return ((gap + a - 1) // a) * a
    return static_offset_variant2(t.memsz, t.vaddr, t.align)
