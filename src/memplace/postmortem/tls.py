"""Where a module's TLS block is in a given thread: static blocks and the DTV.

glibc: a module with a static offset (loaded at start-up) has its block at
`tp - l_tls_offset` (x86) or `tp + l_tls_offset` (aarch64). Otherwise the
thread's DTV is read, after the generation check of `td_thr_tlsbase`: a DTV
older than the module's slotinfo generation (the slot was reused by a later
dlopen) has no block for it yet. musl: `dtv[modid]`, minus DTP_OFFSET.

>>> blk = tls_block(target, target.threads[1], target.exe)    # doctest: +SKIP
>>> hex(blk.address), blk.state                               # doctest: +SKIP
('0x7f49780126a8', 'ok')
"""

from __future__ import annotations

from dataclasses import dataclass

from memplace.errors import UserError
from memplace.postmortem.elfcore import MemoryFault
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


def tls_block(target, thread: Thread, module: Module) -> TlsBlock:
    """The run-time address of `module`'s TLS block in `thread`."""
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


def _static(target, tp: int, off: int) -> int:
    mask = (1 << (8 * target.arch.word)) - 1
    return (tp + off) & mask if target.arch.tls_above_tp else (tp - off) & mask


def _musl_dtv(target, tp: int, m: Module) -> TlsBlock:
    mem = target.mem
    dtv = mem.read_word(tp + target.arch.musl_dtv)
    count = mem.read_word(dtv)
    if m.tls_modid > count:
        return TlsBlock(None, NOT_ALLOCATED, "dtv")
    val = mem.read_word(dtv + m.tls_modid * target.arch.word)
    if not val:
        return TlsBlock(None, NOT_ALLOCATED, "dtv")
    return TlsBlock(val, OK, "dtv")  # DTP_OFFSET is 0 on x86 and aarch64


def _glibc_dtv(target, tp: int, m: Module) -> TlsBlock:
    """Port of nptl_db's td_thr_tlsbase: DTV entry with the slotinfo generation check."""
    lay, mem, w = target.glibc, target.mem, target.arch.word
    pd = tp + target.pthread_offset
    dtv = mem.read_word(pd + lay.off("pthread_dtvp"))
    esize = lay.field("dtv_dtv").size if lay.has("dtv_dtv") else 2 * w
    length = mem.read_word(dtv - esize)
    dtv_gen = mem.read_word(dtv)
    modid = m.tls_modid
    mod_gen = slotinfo_generation(target, modid)
    if modid > length or (mod_gen is not None and dtv_gen < mod_gen):
        return _static_or(target, tp, m, NOT_ALLOCATED)
    val = mem.read_word(dtv + modid * esize + (lay.off("dtv_t_pointer_val") if lay.has("dtv_t_pointer_val") else 0))
    if val in (0, (1 << (8 * w)) - 1):  # TLS_DTV_UNALLOCATED
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


@dataclass
class VarValue:
    """One variable in one thread."""

    module: str
    name: str
    type: str
    address: int | None
    state: str
    value: object = None
    text: str = ""


def select_variables(target, names: list[str] | None):
    """(module, TlsVar) pairs for the requested names (all TLS variables when none)."""
    from memplace.postmortem.values import tls_variables

    short = {n.rpartition(":")[2] if "::" not in n else n.rsplit("::", 1)[-1] for n in names or ()}
    pairs = [(m, v) for m in target.modules if m.tls is not None for v in tls_variables(m, short or None)]
    if not names:
        return pairs
    out = []
    for want in names:
        mod_name, _, var = want.rpartition(":") if ":" in want and "::" not in want else ("", "", want)
        hits = [(m, v) for m, v in pairs
                if (v.name == var or v.name.rsplit("::", 1)[-1] == var) and (not mod_name or m.short == mod_name or m.name == mod_name)]
        if not hits:
            raise UserError(f"{target.where}: no thread-local variable named {want} in any module")
        out += [h for h in hits if h not in out]
    return out


def tls_values(target, names: list[str] | None = None, tids: list[int] | None = None):
    """For each selected thread, the value of each selected TLS variable.

    >>> for th, vals in tls_values(target, ["tv"]):            # doctest: +SKIP
    ...     print(th.tid, vals[0].text)
    """
    from memplace.postmortem.modules import describe_address
    from memplace.postmortem.values import Renderer

    pairs = select_variables(target, names)
    threads = target.threads
    if tids:
        known = {t.tid for t in threads}
        for tid in tids:
            if tid not in known:
                raise UserError(f"{target.where}: no thread {tid}")
        threads = [t for t in threads if t.tid in tids]
    r = Renderer(target.mem.endian, lambda a: describe_address(target.modules, a), target.mem.read_cstr)
    by_module: dict[int, list] = {}
    for m, v in pairs:
        tname = v.type.display() if v.type is not None else f"<no debug info, {v.size} bytes>"
        by_module.setdefault(id(m), [m, m.short, []])[2].append((v, tname, _fast_decoder(v, target.mem.endian)))
    out = []
    mem = target.mem
    for th in threads:
        vals = []
        for m, short, vs in by_module.values():
            blk = tls_block(target, th, m)
            data = None
            if blk.address is not None:
                try:
                    data = bytes(mem.read(blk.address, m.tls.memsz))
                except MemoryFault:
                    data = None
            for v, tname, fast in vs:
                if blk.address is None:
                    vals.append(VarValue(short, v.name, tname, None, blk.state))
                    continue
                addr = blk.address + v.offset
                end = v.offset + v.size
                chunk = data[v.offset:end] if data is not None and end <= len(data) else None
                if chunk is None:
                    try:
                        chunk = bytes(mem.read(addr, v.size))
                    except MemoryFault:
                        vals.append(VarValue(short, v.name, tname, addr, UNREADABLE))
                        continue
                if fast is not None:
                    val = fast(chunk)
                    vals.append(VarValue(short, v.name, tname, addr, OK, val, str(val)))
                else:
                    val, text = r.render(v.type, chunk)
                    vals.append(VarValue(short, v.name, tname, addr, OK, val, text))
        out.append((th, vals))
    return out


def _fast_decoder(v, endian: str):
    """A direct int decoder for plain integer variables (the common case), else None."""
    t = v.type.strip() if v.type is not None else None
    if t is None or t.kind != "base" or t.size not in (2, 4, 8) or t.encoding not in (5, 7):
        return None
    order, signed = ("little" if endian == "<" else "big"), t.signed
    return lambda b: int.from_bytes(b, order, signed=signed)
