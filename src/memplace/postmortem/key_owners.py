"""Who created a pthread key that has no destructor: the static variable holding its number.

A key without a destructor says nothing about its creator. The library that made it
keeps the number in a static `pthread_key_t` (or a CPython-style `Py_tss_t`
{int initialised; pthread_key_t key}), so the data symbols of every module (its own
tables and its debug file's `.symtab`) whose names speak of keys (`key`, `tss`, `tsd`)
are read, and those holding the key's number are its likely owners. It is a guess:
an unrelated variable may hold the same small number, so every match is listed.

>>> key_holders(target, [2])                      # doctest: +SKIP
{2: ['prog:my_lib_key']}
"""

from __future__ import annotations

import re

from memplace.postmortem.elfcore import STT_OBJECT, MemoryFault

KEYISH = re.compile(r"key|tss|tsd", re.IGNORECASE)


def key_holders(target, keys: list[int]) -> dict[int, list[str]]:
    """key number -> ['module:variable', ...] of the key-named statics holding that number."""
    want = set(keys)
    out: dict[int, list[str]] = {}
    if not want:
        return out
    mem = target.mem
    order = "little" if mem.endian == "<" else "big"
    for m in target.modules:
        tables = [m.elf.dynsym, m.elf.symtab]
        if m.debug is not None and m.debug is not m.elf:
            tables.append(m.debug.symtab)
        seen: set[str] = set()
        for table in tables:
            for name, s in table.items():
                if s.type != STT_OBJECT or not s.shndx or s.size not in (4, 8) or name in seen \
                        or not KEYISH.search(name):
                    continue
                seen.add(name)
                try:
                    raw = bytes(mem.read(m.bias + s.value, s.size))
                except MemoryFault:
                    continue
                first = int.from_bytes(raw[:4], order)
                # pthread_key_t, or Py_tss_t {int _is_initialized = 1; pthread_key_t _key}.
                k = first if s.size == 4 else int.from_bytes(raw[4:], order) if first == 1 else None
                if k in want:
                    out.setdefault(k, []).append(f"{m.short}:{name}")
    return out
