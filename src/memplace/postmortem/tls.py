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
from memplace.postmortem.tls_location import OK, UNREADABLE, tls_address, tls_block
from memplace.postmortem.tls_variables import tls_variables_of
from memplace.postmortem.values import read_block, target_renderer, value_decoder, variable_bytes


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
    short = {n.rpartition(":")[2] if "::" not in n else n.rsplit("::", 1)[-1] for n in names or ()}
    mods = [m for m in target.modules if m.tls is not None]
    pairs = [(m, v) for m, vs in zip(mods, tls_variables_of(mods, short or None)) for v in vs]
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
    pairs = select_variables(target, names)
    threads = target.threads
    if tids:
        known = {t.tid for t in threads}
        for tid in tids:
            if tid not in known:
                raise UserError(f"{target.where}: no thread {tid}")
        threads = [t for t in threads if t.tid in tids]
    r = target_renderer(target)
    mem = target.mem
    by_module: dict[int, list] = {}
    for m, v in pairs:
        tname = v.type.display() if v.type is not None else f"<no debug info, {v.size} bytes>"
        by_module.setdefault(id(m), [m, m.short, []])[2].append((v, tname, value_decoder(v, r, mem.endian)))
    out = []
    for th in threads:
        vals = []
        for m, short, vs in by_module.values():
            blk = tls_block(target, th, m)
            data = read_block(mem, blk.address, m.tls.memsz) if blk.address is not None else None
            for v, tname, decode in vs:
                if blk.address is None:
                    vals.append(VarValue(short, v.name, tname, None, blk.state))
                    continue
                addr = tls_address(target, th, m, v.offset, blk)
                chunk = variable_bytes(mem, data, v.offset, v.size, addr)
                if chunk is None:
                    vals.append(VarValue(short, v.name, tname, addr, UNREADABLE))
                    continue
                val, text = decode(chunk)
                vals.append(VarValue(short, v.name, tname, addr, OK, val, text))
        out.append((th, vals))
    return out
