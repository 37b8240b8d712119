"""Sizes, percentages and size ranges as people write them in policies."""

from fractions import Fraction

import pytest
from hypothesis import given, strategies as st

from memplace.errors import UserError
from memplace.units import U64_MAX, Percent, format_range, format_size, parse_capacity, parse_size, parse_size_range


@pytest.mark.parametrize("text, expected", [
    ("4096", 4096), (4096, 4096), ("0", 0), ("4k", 4096), ("4K", 4096), ("4KB", 4096), ("4KiB", 4096),
    ("512MiB", 512 << 20), ("8GiB", 8 << 30), ("8 GiB", 8 << 30), ("8g", 8 << 30), ("1.5T", 3 << 39),
    ("1.5GiB", 3 << 29), (".5K", 512), ("2E", 2 << 60), ("  7M ", 7 << 20), ("10B", 10),
])
def test_sizes_parse_to_bytes_in_binary_units(text, expected):
    assert parse_size(text, what="x") == expected


@pytest.mark.parametrize("junk", [
    "", "GiB", "8 GiBs", "eight", "-1", "1..2", "0x10", "8iB", "1e3", "8%", True, None, 1.5, [1], "16E", -5, 1 << 64,
])
def test_junk_is_a_user_error_naming_the_input(junk):
    with pytest.raises(UserError) as e:
        parse_size(junk, what="policy.toml: devices.dram.capacity")
    msg = str(e.value)
    assert msg.startswith("policy.toml: devices.dram.capacity: ") and "\n" not in msg


def test_capacity_accepts_percentages_of_a_later_total():
    cap = parse_capacity("50%", what="x")
    assert cap == Percent(Fraction(50)) and cap.of(1000) == 500
    assert parse_capacity("12.5%", what="x").of(800) == 100
    assert parse_capacity("1GiB", what="x") == 1 << 30
    for bad in ("0%", "150%", "%", "x%", "-3%"):
        with pytest.raises(UserError, match="capacity"):
            parse_capacity(bad, what="capacity")


@pytest.mark.parametrize("text, expected", [
    ("1MiB..64MiB", (1 << 20, 64 << 20)), ("..4KiB", (0, 4096)), ("1MiB..", (1 << 20, U64_MAX)),
    ("64", (64, 64)), (64, (64, 64)), ("4K..4K", (4096, 4096)),
])
def test_size_ranges_are_inclusive_and_open_ended(text, expected):
    assert parse_size_range(text, what="size") == expected


@pytest.mark.parametrize("bad", ["..", "64MiB..1MiB", "1..2..3", "a..b", "1MiB...2MiB"])
def test_bad_ranges_are_user_errors(bad):
    with pytest.raises(UserError, match="^rule 1: size: "):
        parse_size_range(bad, what="rule 1: size")


def test_format_size_is_short_and_exact_for_whole_units():
    assert [format_size(n) for n in (0, 1023, 1024, 1536, 8 << 30, (1 << 30) + 1)] == \
        ["0B", "1023B", "1KiB", "1.5KiB", "8GiB", "1GiB"]
    assert format_range(1 << 20, U64_MAX) == "1MiB.." and format_range(0, 4096) == "..4KiB"


@given(st.integers(min_value=0, max_value=U64_MAX))
def test_formatted_sizes_parse_back_close_to_the_original(n):
    back = parse_size(format_size(n), what="x")
    assert n - n * 0.01 <= back <= n


@given(st.text(max_size=20))
def test_any_text_is_a_size_or_a_user_error(text):
    try:
        assert 0 <= parse_size(text, what="x") <= U64_MAX
    except UserError:
        pass
