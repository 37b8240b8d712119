"""Sizes as people write them: "8GiB", "1.5T", "50%", "1MiB..64MiB"; durations in ns.

Every unit is a power of 1024 (memory is sized in binary units; "8GB" of DRAM
means 8 GiB), so K, KB and KiB all mean 1024 bytes.

>>> parse_size("1.5GiB", what="capacity")
1610612736
>>> parse_size_range("1MiB..", what="size")
(1048576, 18446744073709551615)
>>> format_size(3 << 30)
'3GiB'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction

from memplace.errors import UserError

U64_MAX = (1 << 64) - 1

# Exponent of 1024 for each unit letter; the suffix may be "", "B", "iB".
_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([KMGTPE]?)(I?B)?\s*$", re.IGNORECASE)
_PERCENT = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*$")
_EXAMPLES = "examples: 4096, 512MiB, 8GiB, 1.5T"


@dataclass(frozen=True)
class Percent:
    """A share of something whose size is known later (a node's MemTotal).

    >>> Percent(Fraction(50)).of(1000)
    500
    """

    value: Fraction

    def of(self, total: int) -> int:
        """The share of `total` bytes, rounded down."""
        return int(total * self.value / 100)

    def __str__(self) -> str:
        return f"{float(self.value):g}%"


def parse_size(value: object, *, what: str) -> int:
    """Bytes from an int or a string with an optional binary unit; UserError on junk.

    `what` names the input in the error message ("policy.toml: devices.dram.capacity").

    >>> parse_size("4k", what="x"), parse_size(17, what="x")
    (4096, 17)
    """
    if isinstance(value, bool):  # bool is an int to Python, never a size to a person
        raise UserError(f"{what}: {value!r} is not a size ({_EXAMPLES})")
    if isinstance(value, int):
        if not 0 <= value <= U64_MAX:
            raise UserError(f"{what}: {value} is out of range (0 .. 2^64-1 bytes)")
        return value
    if not isinstance(value, str):
        raise UserError(f"{what}: {value!r} is not a size ({_EXAMPLES})")
    m = _SIZE.match(value)
    if not m:
        raise UserError(f"{what}: {value!r} is not a size ({_EXAMPLES})")
    number, unit, suffix = m.groups()
    if suffix and suffix.upper() == "IB" and not unit:
        raise UserError(f"{what}: {value!r} is not a size ({_EXAMPLES})")
    size = int(Fraction(number) * 1024 ** _POWERS[unit.upper()])
    if size > U64_MAX:
        raise UserError(f"{what}: {value!r} is out of range (at most 16EiB)")
    return size


def parse_capacity(value: object, *, what: str) -> int | Percent:
    """A size in bytes, or a percentage ("50%") of a total known later.

    >>> parse_capacity("25%", what="x")
    Percent(value=Fraction(25, 1))
    """
    if isinstance(value, str):
        m = _PERCENT.match(value)
        if m:
            pct = Fraction(m.group(1))
            if not 0 < pct <= 100:
                raise UserError(f"{what}: {value!r} must be a percentage above 0% and at most 100%")
            return Percent(pct)
        if value.strip().endswith("%"):
            raise UserError(f"{what}: {value!r} is not a percentage (example: 50%)")
    return parse_size(value, what=what)


def parse_size_range(value: object, *, what: str) -> tuple[int, int]:
    """An inclusive byte range "LO..HI"; either end may be left out; one size means exactly it.

    >>> parse_size_range("..4KiB", what="x")
    (0, 4096)
    >>> parse_size_range("64", what="x")
    (64, 64)
    """
    if isinstance(value, str) and ".." in value:
        lo_text, _, hi_text = value.partition("..")
        if ".." in hi_text:
            raise UserError(f"{what}: {value!r} is not a size range (examples: 1MiB..64MiB, ..4KiB, 1MiB..)")
        lo = parse_size(lo_text, what=what) if lo_text.strip() else 0
        hi = parse_size(hi_text, what=what) if hi_text.strip() else U64_MAX
        if not lo_text.strip() and not hi_text.strip():
            raise UserError(f"{what}: {value!r} is an empty size range (examples: 1MiB..64MiB, ..4KiB, 1MiB..)")
    else:
        lo = hi = parse_size(value, what=what)
    if lo > hi:
        raise UserError(f"{what}: {value!r} is an empty range (its start is above its end)")
    return lo, hi


def format_size(size: int) -> str:
    """A short human form, exact when the size is a whole number of units.

    The one size formatter of memplace: tables, reports, messages and policy files.
    Fractions of a byte (a modelled or averaged size) are dropped.

    >>> format_size(1536), format_size(1000), format_size(0)
    ('1.5KiB', '1000B', '0B')
    """
    if not isinstance(size, int):
        size = int(size)
    for unit in "EPTGMK":
        scale = 1024 ** _POWERS[unit]
        if size >= scale:
            if size % scale == 0:
                return f"{size // scale}{unit}iB"
            # Truncated, not rounded: never shows more than there is (nor "1024KiB").
            hundredths = size * 100 // scale
            return f"{hundredths // 100}.{hundredths % 100:02d}".rstrip("0").rstrip(".") + f"{unit}iB"
    return f"{size}B"


def format_ns(ns: float) -> str:
    """A duration given in nanoseconds, in the largest unit that fits.

    >>> format_ns(2.5e6), format_ns(80)
    ('2.5 ms', '80 ns')
    """
    for unit, f in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= f:
            return f"{ns / f:.3g} {unit}"
    return f"{ns:.3g} ns"


def format_range(lo: int, hi: int) -> str:
    """The inverse of parse_size_range, for display.

    >>> format_range(0, 4096), format_range(1 << 20, U64_MAX)
    ('..4KiB', '1MiB..')
    """
    if lo == hi:
        return format_size(lo)
    left = "" if lo == 0 else format_size(lo)
    right = "" if hi == U64_MAX else format_size(hi)
    return f"{left}..{right}"
