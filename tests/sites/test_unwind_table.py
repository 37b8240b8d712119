"""The unwind tables Python computes from .eh_frame give, at every row binutils' readelf
prints, the same CFA rule and the same saved frame pointer (readelf is an independent
interpreter of the same call-frame programs)."""

from __future__ import annotations

import bisect
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from memplace.launch import unwind_tables as ut

PROGRAMS = Path(__file__).parent / "programs"


def rows(table: ut.Table):
    _, _, _, n, m, pcs_off, index_off, rules_off, _ = ut.HEADER.unpack_from(table.data, 0)
    pcs = struct.unpack_from(f"<{n}I", table.data, pcs_off)
    index = struct.unpack_from(f"<{n}I", table.data, index_off)
    rules = [ut.RULE.unpack_from(table.data, rules_off + ut.RULE.size * i) for i in range(m)]
    return pcs, [rules[i] for i in index]


def readelf_rows(path: str):
    """(address, {column: rule}) of every FDE row, as readelf interprets them."""
    # readelf exits 1 over unrelated warnings (a missing debug link): its rows still count
    out = subprocess.run(["readelf", "--debug-dump=frames-interp", path], capture_output=True,
                         text=True).stdout
    cols, in_fde = None, False
    for line in out.splitlines():
        if " CIE" in line or " FDE " in line:
            in_fde = " FDE " in line  # a CIE's rows are templates, not addresses
            cols = None
        elif line.strip().startswith("LOC"):
            cols = line.split()[1:]
        elif in_fde and cols and (m := re.match(r"^([0-9a-f]+) (.*)$", line)):
            yield int(m.group(1), 16), dict(zip(cols, m.group(2).split()))


def disagreements(path: str) -> tuple[int, list]:
    pcs, table_rules = rows(ut.build_table(path))
    checked, bad = 0, []
    for pc, row in readelf_rows(path):
        if row.get("ra", "c-8") != "c-8":
            continue  # return address in a register or undefined: the table stops there
        cfa_off, fp_off, _, base, fp_rule, _, _ = table_rules[bisect.bisect_right(pcs, pc) - 1]
        want = {"rsp": ut.SP, "rbp": ut.FP}.get(row["CFA"].split("+")[0], ut.UNKNOWN)
        want_off = int(row["CFA"].split("+")[1]) if want != ut.UNKNOWN else 0
        got = (base, cfa_off if base in (ut.SP, ut.FP) else 0)
        rbp = row.get("rbp", "u")
        want_fp = ((ut.FP_SAVED, int(rbp[1:])) if rbp.startswith("c-") else
                   (ut.FP_SAME, 0) if rbp == "u" else None)
        checked += 1
        if base == ut.SIGNAL:
            continue
        if got != (want, want_off) or (want != ut.UNKNOWN and want_fp is not None
                                       and (fp_rule, fp_off) != want_fp):
            bad.append((hex(pc), row, (cfa_off, fp_off, base, fp_rule)))
    return checked, bad


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    if shutil.which("readelf") is None:
        pytest.skip("binutils (readelf) not installed")
    prog = tmp_path_factory.mktemp("unwind") / "libc_sites"
    subprocess.run(["gcc", "-O2", "-g", "-o", str(prog), str(PROGRAMS / "libc_sites.c")], check=True)
    libc = subprocess.run(["gcc", "-print-file-name=libc.so.6"], capture_output=True,
                          text=True).stdout.strip()
    return [str(prog), str(Path(libc).resolve())]


def test_tables_agree_with_readelf_row_by_row(modules):
    for path in modules:
        checked, bad = disagreements(path)
        assert checked > 10, path
        assert not bad, f"{path}: {len(bad)} of {checked} rows differ, e.g. {bad[:3]}"


def test_addresses_outside_every_fde_stop_the_walk(modules):
    pcs, table_rules = rows(ut.build_table(modules[0]))
    assert table_rules[-1][3] == ut.UNKNOWN  # past the last function
    assert list(pcs) == sorted(set(pcs))


def test_a_file_that_is_not_elf_is_refused_in_one_line(tmp_path):
    bad = tmp_path / "not-elf"
    bad.write_bytes(b"\x7fELF" + b"\0" * 12)
    with pytest.raises(ut.UserError, match="not-elf"):
        ut.build_table(str(bad))
