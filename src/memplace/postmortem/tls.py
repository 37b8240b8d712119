"""Thread-local variables of every thread: select them by name, read and render their values.

Where each variable is (static block or DTV, per arch and libc) is decided in
tls_location.py (`tls_address`); this module picks the variables, reads their
bytes and renders them.

>>> for th, vals in tls_values(target, ["tv"]):            # doctest: +SKIP
...     print(th.tid, vals[0].text)
"""

from __future__ import annotations

from dataclasses import dataclass

from memplace.errors import UserError
from memplace.postmortem.elfcore import MemoryFault
from memplace.postmortem.tls_location import OK, UNREADABLE, tls_address, tls_block


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
                addr = tls_address(target, th, m, v.offset, blk)
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
