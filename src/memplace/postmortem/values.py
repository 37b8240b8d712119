"""Typed values of TLS variables read out of a target's memory.

A thread's whole TLS block is read once (`read_block`) and each variable sliced
out of it (`variable_bytes`, reading memory itself only past the block's end);
`value_decoder` turns those bytes into (JSON value, text): plain integers
directly (the common case, thousands of threads x many variables), everything
else through render.Renderer.

>>> r = target_renderer(target)                                   # doctest: +SKIP
>>> decode = value_decoder(var, r, target.mem.endian)             # doctest: +SKIP
>>> decode(variable_bytes(target.mem, read_block(target.mem, blk.address, 64), var.offset, var.size, addr))   # doctest: +SKIP
(42, '42')
"""

from __future__ import annotations

from functools import partial

from memplace.postmortem.dwarf_types import ATE_signed, ATE_unsigned
from memplace.postmortem.elfcore import Memory, MemoryFault
from memplace.postmortem.render import Renderer
from memplace.postmortem.tls_variables import TlsVar


def target_renderer(target) -> Renderer:
    """A Renderer that names pointer targets by module:symbol and reads C strings from the target."""
    return Renderer(target.mem.endian, target.describe, target.mem.read_cstr)


def read_block(mem: Memory, address: int, size: int) -> bytes | None:
    """A whole TLS block, or None if the core does not hold all of it."""
    try:
        return bytes(mem.read(address, size))
    except MemoryFault:
        return None


def variable_bytes(mem: Memory, block: bytes | None, offset: int, size: int, address: int) -> bytes | None:
    """A variable's bytes: from its block when read, else from memory at `address` (None: not in the core)."""
    end = offset + size
    if block is not None and end <= len(block):
        return block[offset:end]
    try:
        return bytes(mem.read(address, size))
    except MemoryFault:
        return None


def value_decoder(var: TlsVar, renderer: Renderer, endian: str):
    """bytes -> (value, text) for one variable: a direct int decoder for plain integers, else the renderer."""
    t = var.type.strip() if var.type is not None else None
    if t is None or t.kind != "base" or t.size not in (2, 4, 8) or t.encoding not in (ATE_signed, ATE_unsigned):
        return partial(renderer.render, var.type)
    order, signed = ("little" if endian == "<" else "big"), t.signed

    def decode(b: bytes):
        v = int.from_bytes(b, order, signed=signed)
        return v, str(v)

    return decode
