"""A module's TLS variables and their types, kept on disk once per build.

Reading them costs the DWARF: dwarf_reader.py decompresses libc6-dbg's .debug_info
(6 MB) and reads the units holding TLS variables (0.04 s; pyelftools or drgn, where
that reader cannot, 0.1-1 s). The answer depends only on the module file and
its debug file, so it is kept under the cache root (`memplace.cache`) in `tls/`:

  <build-id or path hash>.json   {"format", "files": [[path, [size, mtime_ns]], ...] (the
                                  module, its debug file, memplace's DWARF readers),
                                  "vars": [[name, offset, size, type index | null], ...],
                                  "types": [[kind, name, size, encoding, target, members,
                                             dims, enumerators, signed], ...]}

A record whose files' sizes and mtimes differ (a rebuilt program without a build-id, a
debug package installed since) is a miss and is rewritten. A cache that cannot be
written only loses the speed-up. The hit path reads no DWARF.

>>> lookup(module.elf, None, TlsVar) or record(module.elf, None, build())      # doctest: +SKIP
"""

from __future__ import annotations

import json
import os

from memplace.cache import cache_root, file_stamp, make_dir, write_atomic
from memplace.postmortem.dwarf_types import CType

INDEX_FORMAT = 1  # of the record below; a change makes every old record a miss
# Sources whose change changes what an index holds (a development install keeps its version
# number while they change); their stamps are part of every record's files.
_READER_SOURCES = ("tls_variables.py", "dwarf_reader.py", "dwarf_types.py", "tls_index.py",
                   "../dwarf/units.py")
_HERE = os.path.dirname(os.path.abspath(__file__))


def index_dir() -> str:
    return os.path.join(cache_root(), "tls")


def _files_and_path(elf, debug_path: str | None) -> tuple[list, str]:
    files = [[os.path.realpath(elf.path), file_stamp(elf.path)]]
    if debug_path is not None and debug_path != elf.path:
        files.append([os.path.realpath(debug_path), file_stamp(debug_path)])
    files += [[s, file_stamp(os.path.join(_HERE, s))] for s in _READER_SOURCES]
    bid = elf.build_id
    if bid:
        name = bid.hex()
    else:
        import hashlib  # only for modules without a build-id

        name = hashlib.sha256(files[0][0].encode()).hexdigest()[:40]
    return files, os.path.join(index_dir(), name + ".json")


def lookup(elf, debug_path: str | None, make) -> list | None:
    """The module's TLS variables from the index (each made by `make(name, offset, size,
    ctype)`), or None when there is no record or it no longer holds."""
    files, path = _files_and_path(elf, debug_path)
    record = _read(path)
    if record is None or record.get("format") != INDEX_FORMAT or record.get("files") != files:
        return None
    try:
        types = decode_types(record["types"])
        return [make(n, off, size, None if t is None else types[t]) for n, off, size, t in record["vars"]]
    except (KeyError, IndexError, TypeError, ValueError):
        return None  # a damaged record: rebuilt


def record(elf, debug_path: str | None, variables: list) -> None:
    """Keep `variables` (objects with name, offset, size and type) as the module's record."""
    files, path = _files_and_path(elf, debug_path)
    if all(st is not None for _, st in files) and make_dir(index_dir()):
        table: dict[int, int] = {}
        types: list = []
        rows = [[v.name, v.offset, v.size, None if v.type is None else encode_type(v.type, table, types)]
                for v in variables]
        write_atomic(path, json.dumps({"format": INDEX_FORMAT, "files": files, "vars": rows,
                                       "types": types}, separators=(",", ":")).encode())


def _read(path: str) -> dict | None:
    try:
        with open(path, "rb") as f:
            return json.loads(f.read())
    except (OSError, ValueError):
        return None


def encode_type(t: CType, table: dict[int, int], out: list) -> int:
    """Append `t` (and every type it refers to) to `out` as plain lists; its index there.

    >>> from memplace.postmortem.dwarf_types import ATE_signed
    >>> out = []
    >>> p = CType("pointer", size=8, target=CType("base", "int", 4, ATE_signed, signed=True))
    >>> encode_type(p, {}, out), decode_types(out)[0].display()
    (0, 'int *')
    """
    i = table.get(id(t))
    if i is not None:
        return i
    i = table[id(t)] = len(out)
    row: list = [t.kind, t.name, t.size, t.encoding, None, [], t.dims, [], t.signed]
    out.append(row)  # before recursing: a struct may point to itself
    if t.target is not None:
        row[4] = encode_type(t.target, table, out)
    row[5] = [[n, off, encode_type(mt, table, out), bs, bo] for n, off, mt, bs, bo in t.members]
    row[7] = [[v, n] for v, n in t.enumerators.items()]
    return i


def decode_types(rows: list) -> list[CType]:
    """The CTypes `encode_type` wrote, references restored."""
    types = [CType(kind, name, size, enc, None, [], list(dims), {v: n for v, n in enums}, signed)
             for kind, name, size, enc, _t, _m, dims, enums, signed in rows]
    for t, row in zip(types, rows):
        if row[4] is not None:
            t.target = types[row[4]]
        t.members = [(n, off, types[mt], bs, bo) for n, off, mt, bs, bo in row[5]]
    return types
