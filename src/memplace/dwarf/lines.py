"""Line programs of .debug_line (DWARF 2-5), decoded the way pyelftools decodes them.

    >>> dwarf = DwarfFile(ElfFile("/usr/lib/debug/.build-id/xx/rest.debug"))   # doctest: +SKIP
    >>> names, base, rows = line_program(dwarf, dwarf.unit(0))                 # doctest: +SKIP
    >>> rows[0]                                                                 # doctest: +SKIP
    (0x2a140, 1, 27, False)
"""

from __future__ import annotations

import struct

from memplace.dwarf.units import DwarfError, Encoding, cstring, initial_length, read_value, sleb, uleb

AT_STMT_LIST = 0x10
LNCT_PATH = 1


def line_program(dwarf, unit, rows: bool = True):
    """(file names, base, rows) of a unit's line program: file names as the program's
    file indexes count them (DWARF 5 from 0, earlier from 1: `base`), rows (address, file
    index, line, end of sequence) in program order. None: the unit has none."""
    if AT_STMT_LIST not in unit.top:
        return None
    d = dwarf.section(".debug_line")
    if d is None:
        return None
    e = dwarf.endian
    end, offset_size, p = initial_length(d, unit.top[AT_STMT_LIST][1], e)
    version, = struct.unpack_from(e + "H", d, p)
    p += 2
    addr_size = unit.addr_size
    if version >= 5:
        addr_size = d[p]
        p += 2  # address_size, segment_selector_size
    header_length = int.from_bytes(d[p:p + offset_size], dwarf.byteorder)
    p += offset_size
    program = p + header_length
    min_inst = d[p]
    p += 1
    max_ops = 1
    if version >= 4:
        max_ops = d[p]
        p += 1
    default_is_stmt, line_base, line_range, opcode_base = d[p], d[p + 1], d[p + 2], d[p + 3]
    if line_base >= 0x80:
        line_base -= 0x100
    p += 4 + opcode_base - 1  # standard_opcode_lengths
    files: list[bytes | None] = []
    if version >= 5:
        enc = Encoding(unit.version, offset_size, unit.addr_size)
        p = _entries_v5(d, p, unit, enc, None)  # directories
        p = _entries_v5(d, p, unit, enc, files)
    else:
        while d[p]:  # include_directories
            p = d.index(b"\0", p) + 1
        p += 1
        while d[p]:
            name, p = cstring(d, p)
            for _ in range(3):
                _, p = uleb(d, p)
            files.append(name)
    names = [f.decode(errors="replace") if f is not None else None for f in files]
    base = 0 if version >= 5 else 1
    if not rows:
        return names, base, []
    if not max_ops or not line_range:
        raise DwarfError("damaged line program header")
    return names, base, _rows(d, program, end, e, addr_size, min_inst, max_ops, line_base,
                              line_range, opcode_base, names)


def _rows(d, p, end, e, addr_size, min_inst, max_ops, line_base, line_range, opcode_base, names):
    """The line program's state machine: its rows, in one loop."""
    rows = []
    append = rows.append
    fmt = e + ("I" if addr_size == 4 else "Q")
    order = "little" if e == "<" else "big"
    address, op_index, file, line = 0, 0, 1, 1
    while p < end:
        op = d[p]
        p += 1
        if op >= opcode_base:  # special opcode
            adj = op - opcode_base
            advance = adj // line_range
            if max_ops == 1:
                address += min_inst * advance
            else:
                address += min_inst * ((op_index + advance) // max_ops)
                op_index = (op_index + advance) % max_ops
            line += line_base + adj % line_range
            append((address, file, line, False))
        elif op == 0:  # extended opcode
            size, p = uleb(d, p)
            ex = d[p]
            if ex == 1:  # end_sequence
                append((address, file, line, True))
                address, op_index, file, line = 0, 0, 1, 1
                p += 1
            elif ex == 2:  # set_address
                address, = struct.unpack_from(fmt, d, p + 1)
                p += 1 + addr_size
            elif ex == 3:  # define_file (DWARF 2-4)
                name, q = cstring(d, p + 1)
                for _ in range(3):
                    _, q = uleb(d, q)
                names.append(name.decode(errors="replace"))
                p = q
            elif ex == 4:  # set_discriminator
                _, p = uleb(d, p + 1)
            else:  # unknown: skipped by its length (at least its opcode byte)
                p += max(size, 1)
        elif op == 1:  # copy
            append((address, file, line, False))
        elif op == 2:  # advance_pc
            v, p = uleb(d, p)
            address += v * min_inst
        elif op == 3:  # advance_line
            v, p = sleb(d, p)
            line += v
        elif op == 4:  # set_file
            file, p = uleb(d, p)
        elif op in (5, 12):  # set_column, set_isa
            _, p = uleb(d, p)
        elif op in (6, 7, 10, 11):  # negate_stmt, basic_block, prologue_end, epilogue_begin
            pass
        elif op == 8:  # const_add_pc
            address += ((255 - opcode_base) // line_range) * min_inst
        elif op == 9:  # fixed_advance_pc
            address += int.from_bytes(d[p:p + 2], order)
            p += 2
        else:
            raise DwarfError(f"unknown standard line opcode {op}")
    return rows


def _entries_v5(d: bytes, p: int, unit, enc: Encoding, out: list | None) -> int:
    """A DWARF 5 directory or file name table; the paths (DW_LNCT_path) into `out`."""
    count = d[p]
    p += 1
    formats = []
    for _ in range(count):
        ct, p = uleb(d, p)
        form, p = uleb(d, p)
        formats.append((ct, form))
    n, p = uleb(d, p)
    for _ in range(n):
        path = None
        for ct, form in formats:
            v, p = read_value(form, d, p, unit, enc)
            if ct == LNCT_PATH:
                path = v if isinstance(v, bytes) else None
        if out is not None:
            out.append(path)
    return p
