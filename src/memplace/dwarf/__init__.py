"""The one low-level DWARF (versions 2-5) layer of memplace, under its two readers.

- units.py: section bytes, unit headers, abbreviations, attribute forms (each
  abbreviation compiled once into a decoder), string/address/string-offset tables.
- lines.py: line programs (.debug_line) as address rows.

On top of it: memplace.dwarf_reader (the symbolizer's: unit ranges, lines, inlined calls)
and memplace.postmortem.dwarf_reader (DIEs on demand for TLS variables and their types).
This package imports neither.
"""
