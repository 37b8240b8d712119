"""Bytes of a typed value -> (JSON value, gdb-style text).

The text follows gdb's `print` format (`{x = 1, y = 2}`, `{0, 7, 0}`, `0x... <sym>`,
`<repeats N times>`) so the two can be compared; `--json` gets the plain Python values.

>>> from memplace.postmortem.dwarf_types import ATE_signed, CType
>>> r = Renderer("<", describe=None, read_cstr=None)
>>> r.render(CType("base", "int", 4, ATE_signed, signed=True), (-2).to_bytes(4, "little", signed=True))
(-2, '-2')
"""

from __future__ import annotations

import struct

from memplace.postmortem.dwarf_types import (
    ATE_boolean, ATE_float, ATE_signed_char, ATE_unsigned_char, CType, array_size,
)


class Renderer:
    """Turns bytes into (json value, gdb-style text) for CTypes; names pointer targets."""

    def __init__(self, endian: str = "<", describe=None, read_cstr=None):
        self.order = "little" if endian == "<" else "big"
        self.endian = endian
        self.describe = describe  # addr -> "module:symbol" or None
        self.read_cstr = read_cstr

    def raw(self, data: bytes):
        return data.hex(), "0x" + data[::-1].hex() if self.order == "little" and len(data) in (1, 2, 4, 8) else data.hex()

    def render(self, t: CType | None, data: bytes, depth: int = 0):
        if t is None:
            return self.raw(data)
        t = t.strip()
        k = t.kind
        if k == "base":
            return self._base(t, data)
        if k == "pointer":
            v = int.from_bytes(data[:t.size], self.order)
            return v, self._pointer_text(t, v)
        if k == "enum":
            v = int.from_bytes(data[:t.size], self.order, signed=t.signed)
            name = t.enumerators.get(v)
            return (name if name is not None else v), (name if name is not None else str(v))
        if k in ("struct", "class", "union"):
            return self._struct(t, data, depth)
        if k == "array":
            return self._array(t, data, depth)
        return self.raw(data)

    def _base(self, t: CType, data: bytes):
        size, enc = t.size, t.encoding
        b = data[:size]
        if enc == ATE_float:
            fmt = {4: "f", 8: "d"}.get(size)
            if fmt is None:
                return b.hex(), "0x" + b[::-1].hex()
            v = struct.unpack(self.endian + fmt, b)[0]
            return v, repr(v) if v != int(v) or abs(v) > 1e16 else str(int(v)) if v == v else "nan"
        if enc == ATE_boolean:
            v = int.from_bytes(b, self.order)
            return bool(v), "true" if v == 1 else "false" if v == 0 else str(v)
        v = int.from_bytes(b, self.order, signed=t.signed)
        if size == 1 and enc in (ATE_signed_char, ATE_unsigned_char) and "char" in t.name:
            return v, f"{v} {_char_lit(v & 0xFF)}"
        return v, str(v)

    def _pointer_text(self, t: CType, v: int) -> str:
        if v == 0:
            return "0x0"
        s = hex(v)
        target = t.target.strip() if t.target else None
        if target is not None and target.kind == "base" and target.size == 1 and "char" in target.name \
                and self.read_cstr is not None:
            try:
                return f'{s} "{_escape(self.read_cstr(v, 200))}"'
            except Exception:  # noqa: BLE001 - unreadable string: show the address only
                return f"{s} <error: cannot read>"
        if self.describe is not None:
            d = self.describe(v)
            if d:
                return f"{s} <{d}>"
        return s

    def _struct(self, t: CType, data: bytes, depth: int):
        val, parts = {}, []
        for name, off, mt, bit_size, bit_off in t.members:
            if bit_size is not None:
                start = bit_off if bit_off is not None else off * 8
                word = int.from_bytes(data, self.order)
                v = (word >> start) & ((1 << bit_size) - 1)
                if mt.strip().signed and v >> (bit_size - 1):
                    v -= 1 << bit_size
                mv, mtext = v, str(v)
            else:
                size = mt.strip().size if mt.strip().kind != "array" else mt.strip().size
                mv, mtext = self.render(mt, data[off:off + size], depth + 1)
            val[name] = mv
            parts.append(f"{name} = {mtext}")
        return val, "{" + ", ".join(parts) + "}"

    def _array(self, t: CType, data: bytes, depth: int):
        elem = t.target.strip() if t.target else None
        if elem is None or not t.dims or t.dims[0] is None:
            return self.raw(data)
        if len(t.dims) > 1:
            sub = CType("array", target=t.target, dims=t.dims[1:])
            sub.size = array_size(sub)
            step = sub.size
            items = [self.render(sub, data[i * step:(i + 1) * step], depth + 1) for i in range(t.dims[0])]
        else:
            step = elem.size
            if elem.kind == "base" and step == 1 and "char" in elem.name:
                s = bytes(data[:t.dims[0]])
                return s.split(b"\0")[0].decode("latin-1"), _char_array_text(s)
            items = [self.render(elem, data[i * step:(i + 1) * step], depth + 1) for i in range(t.dims[0])]
        return [v for v, _ in items], "{" + ", ".join(_repeats([x for _, x in items])) + "}"


def _repeats(texts: list[str]) -> list[str]:
    """gdb's `<repeats N times>` for runs of 10 or more equal elements."""
    out, i = [], 0
    while i < len(texts):
        j = i
        while j < len(texts) and texts[j] == texts[i]:
            j += 1
        if j - i >= 10:
            out.append(f"{texts[i]} <repeats {j - i} times>")
        else:
            out.extend(texts[i:j])
        i = j
    return out


def _char_array_text(s: bytes) -> str:
    """A char array as gdb prints it: one trailing NUL dropped, the rest escaped."""
    if s.endswith(b"\0"):
        s = s[:-1]
    if not s:
        return '""'
    if len(s) >= 10 and s.count(s[:1]) == len(s):
        return f"{_char_lit(s[0])} <repeats {len(s)} times>"
    return '"' + "".join(_char_in_string(c) for c in s) + '"'


def _char_in_string(c: int) -> str:
    if c == 0x22:
        return '\\"'
    if c == 0x5C:
        return "\\\\"
    if 32 <= c < 127:
        return chr(c)
    return {10: "\\n", 9: "\\t", 13: "\\r", 27: "\\033"}.get(c, f"\\{c:03o}")


def _char_lit(c: int) -> str:
    if c == 0:
        return "'\\000'"
    if 32 <= c < 127:
        return "'\\''" if c == 39 else "'\\\\'" if c == 92 else f"'{chr(c)}'"
    return f"'\\{c:03o}'"


def _escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
