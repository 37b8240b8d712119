"""pthread keys: the key table, every thread's values, and an audit for misuse.

glibc: `__pthread_keys[1024]` of `{seq, destr}` (a key is in use iff seq is odd)
and per thread `specific[32]` -> blocks of 32 `{seq, data}`; a value is what
`pthread_getspecific` would return iff data != NULL and its seq equals the key's.
musl: a static `keys[128]` of destructors (non-NULL = in use) and `self->tsd[k]`.

The audit flags the pattern behind interposer crashes in `dlsym`: a value under
a key whose creator (its destructor's module) is a different module from the
one the value points into, i.e. a library that called pthread_setspecific on a
zero-initialised pthread_key_t it never created.

>>> report = pthread_keys(target)                                  # doctest: +SKIP
>>> [(k.key, k.destructor) for k in report.keys]                   # doctest: +SKIP
[(0, 'prog:destroy')]
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memplace.errors import UserError
from memplace.postmortem.elfcore import MemoryFault
from memplace.postmortem.key_owners import key_holders
from memplace.postmortem.layouts import musl_statics
from memplace.postmortem.modules import module_at
from memplace.postmortem.tls_location import pthread_address


@dataclass
class Key:
    key: int
    seq: int | None
    in_use: bool
    destructor: int | None
    destructor_name: str | None
    creator: str | None  # module holding the destructor
    holders: list[str] = field(default_factory=list)  # key without destructor: statics holding its number (a guess)


@dataclass
class KeyValue:
    tid: int
    key: int
    seq: int | None
    value: int
    points_to: str | None
    status: str  # "ok", "stale" (seq mismatch), "key not in use"


@dataclass
class Finding:
    tid: int
    key: int
    message: str


@dataclass
class KeysReport:
    keys: list[Key] = field(default_factory=list)
    values: list[KeyValue] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)


def pthread_keys(target) -> KeysReport:
    """Keys in use, every thread's non-NULL values, and misuse findings.

    >>> rep = pthread_keys(open_core("core"))                          # doctest: +SKIP
    >>> [(v.tid, v.key, v.status) for v in rep.values][:1]              # doctest: +SKIP
    [(5636, 0, 'ok')]
    >>> [f.message for f in rep.findings][:1]                           # doctest: +SKIP
    ['key 0 was created by prog (destructor prog:destroy), but ...']
    """
    if target.libc == "glibc":
        rep = _glibc(target)
    elif target.libc == "musl":
        rep = _musl(target)
    else:
        raise UserError(f"{target.where}: cannot read pthread keys: libc not recognised")
    rep.findings = audit(target, rep)
    holders = key_holders(target, [k.key for k in rep.keys if k.in_use and k.destructor is None])
    for k in rep.keys:
        k.holders = holders.get(k.key, [])
    return rep


def _name(target, addr: int | None) -> tuple[str | None, str | None]:
    if not addr:
        return None, None
    m = module_at(target.modules, addr)
    return target.describe(addr), (m.short if m else None)


def _glibc(target) -> KeysReport:
    lay, mem = target.glibc, target.mem
    need = ("__pthread_keys", "pthread_key_struct_seq", "pthread_key_struct_destr", "pthread_specific",
            "pthread_key_data_seq", "pthread_key_data_data", "pthread_key_data_level2_data")
    if not lay.has(*need) or not lay.has("pthread_key_struct", "pthread_key_data"):
        raise UserError(f"{target.where}: this glibc does not describe its pthread key layout")
    keys_addr = None
    for m in [target.libc_module] + target.modules:
        s = m.elf.symbol("__pthread_keys")
        if s is not None:
            keys_addr = m.bias + s.value
            break
    if keys_addr is None:
        raise UserError(f"{target.where}: __pthread_keys not found in {target.libc_module.name}")
    n = lay.field("__pthread_keys").count
    ksize = lay.sizeof("pthread_key_struct")
    w = target.arch.word
    try:
        table = bytes(mem.read(keys_addr, n * ksize))
    except MemoryFault:
        raise UserError(f"{target.where}: the pthread key table is not in the core") from None
    order = "little" if mem.endian == "<" else "big"
    seq_off, destr_off = lay.off("pthread_key_struct_seq"), lay.off("pthread_key_struct_destr")
    seqs = []
    rep = KeysReport()
    for k in range(n):
        base = k * ksize
        seq = int.from_bytes(table[base + seq_off:base + seq_off + w], order)
        destr = int.from_bytes(table[base + destr_off:base + destr_off + w], order)
        seqs.append(seq)
        if seq & 1 or destr:
            dn, creator = _name(target, destr)
            rep.keys.append(Key(k, seq, bool(seq & 1), destr or None, dn, creator))
    l2 = lay.field("pthread_key_data_level2_data").count  # keys per second-level block (32)
    dsize = lay.sizeof("pthread_key_data")
    dseq, ddata = lay.off("pthread_key_data_seq"), lay.off("pthread_key_data_data")
    spec = lay.field("pthread_specific")
    nblocks = spec.count if spec.count > 1 else (n + l2 - 1) // l2
    for th in target.threads:
        if th.tp is None:
            continue
        pd = pthread_address(target, th)
        try:
            blocks = bytes(mem.read(pd + spec.offset, nblocks * w))
        except MemoryFault:
            continue
        for i in range(nblocks):
            blk = int.from_bytes(blocks[i * w:(i + 1) * w], order)
            if not blk:
                continue
            try:
                data = bytes(mem.read(blk, l2 * dsize))
            except MemoryFault:
                continue
            for j in range(l2):
                k = i * l2 + j
                if k >= n:
                    break
                seq = int.from_bytes(data[j * dsize + dseq:j * dsize + dseq + w], order)
                val = int.from_bytes(data[j * dsize + ddata:j * dsize + ddata + w], order)
                if not val:
                    continue
                status = "ok" if seq == seqs[k] and seqs[k] & 1 else (
                    "key not in use" if not seqs[k] & 1 else "stale")
                rep.values.append(KeyValue(th.tid, k, seq, val, _name(target, val)[0], status))
    return rep


def _musl(target) -> KeysReport:
    lay, mem, w = target.musl, target.mem, target.arch.word
    if lay is None:
        raise UserError(f"{target.where}: no known struct pthread layout for musl {target.musl_version or '?'}")
    st = musl_statics(target.libc_module.elf, target.libc_module.bias)
    if st.keys is None:
        raise UserError(f"{target.where}: musl's key table is not known for this build"
                        " (stripped libc with an unknown build-id)")
    n = lay.keys_max
    try:
        destrs = [mem.read_word(st.keys + k * w) for k in range(n)]
    except MemoryFault:
        raise UserError(f"{target.where}: musl's key table is not in the core") from None
    rep = KeysReport()
    for k, d in enumerate(destrs):
        if d:
            real = None if d == st.nodtor else d  # nodtor: created with a NULL destructor
            dn, creator = _name(target, real)
            rep.keys.append(Key(k, None, True, real, dn, creator))
    for th in target.threads:
        if th.tp is None:
            continue
        try:
            tsd = mem.read_word(pthread_address(target, th) + lay.tsd)
            if not tsd:
                continue
            vals = [mem.read_word(tsd + k * w) for k in range(n)]
        except MemoryFault:
            continue
        for k, v in enumerate(vals):
            if v:
                status = "ok" if destrs[k] else "key not in use"
                rep.values.append(KeyValue(th.tid, k, None, v, _name(target, v)[0], status))
    return rep


def audit(target, rep: KeysReport) -> list[Finding]:
    """Findings: values under keys not in use, stale values, and values in a foreign key's slot."""
    by_key = {k.key: k for k in rep.keys}
    out = []
    for v in rep.values:
        k = by_key.get(v.key)
        if v.status == "key not in use":
            out.append(Finding(v.tid, v.key, f"value {v.value:#x} stored under key {v.key}, which is not in use"
                               " (never created, or deleted)"))
            continue
        if v.status == "stale":
            out.append(Finding(v.tid, v.key, f"stale value {v.value:#x} under key {v.key} (sequence {v.seq} !="
                               f" key's {k.seq if k else '?'}: the key was deleted and re-created)"))
            continue
        vm = module_at(target.modules, v.value)
        if k is not None and k.creator and vm is not None and vm.short != k.creator:
            out.append(Finding(v.tid, v.key, (
                f"key {v.key} was created by {k.creator} (destructor {k.destructor_name}), but this thread's"
                f" value {v.value:#x} points into {vm.short} ({v.points_to}): {vm.short} likely called"
                f" pthread_setspecific on a pthread_key_t it never created (zero-initialised = key 0)"
                if v.key == 0 else
                f"key {v.key} was created by {k.creator} (destructor {k.destructor_name}), but this thread's"
                f" value {v.value:#x} points into {vm.short} ({v.points_to}): a key slot shared by two modules")))
    return out
