"""`memplace advise --swap`: on a machine that swaps, the fast device is locked and the
sites a file device serves badly (allocated or rewritten again and again) stay in the next
allocator's swappable memory; long-lived data keeps the file device."""

from __future__ import annotations

import pytest

from advisor_support import memplace
from memplace.profiling import profile as prof

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

MIB = 1 << 20
EXE = "/opt/solver/bin/solver"


@pytest.fixture
def profile_path(tmp_path):
    """A solver's sites: a small hot table, a big matrix written once and streamed, and
    temporaries allocated 40 times at the same peak (one live at a time)."""
    def site(off, allocations, size, peak, reads, writes, name):
        return prof.Site((prof.Frame(EXE, None, off),), allocations=allocations, bytes=size, peak_live_bytes=peak,
                         reads=reads, writes=writes, symbols=(prof.Symbol(name, "solver.c", off),))
    sites = [site(0x100, 1, 8 * MIB, 8 * MIB, 4000 * MIB, 2000 * MIB, "hot_table"),
             site(0x200, 1, 96 * MIB, 96 * MIB, 192 * MIB, 96 * MIB, "matrix"),
             site(0x300, 40, 40 * 24 * MIB, 24 * MIB, 40 * 24 * MIB, 40 * 24 * MIB, "temporary")]
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["solver"], sites, pid=1, clock_unit="instr"), path)
    return path


def advise(profile_path, tmp_path, *extra):
    out = tmp_path / f"policy{len(extra)}.toml"
    memplace("advise", str(profile_path), "--policy-out", str(out),
             "--device", "fast=numa:0,latency=100ns,bandwidth=20GB/s,capacity=16MiB",
             "--device", f"slow=file:{tmp_path},latency=4us,bandwidth=1GB/s", *extra, check=True)
    doc = tomllib.loads(out.read_text())
    chk = memplace("policy", "check", str(out))
    assert chk.returncode == 0, chk.stdout + chk.stderr
    by_site = {r["site"][0]: r["device"] for r in doc.get("rules", [])}
    return doc, by_site, out.read_text()


def test_with_swap_temporaries_go_to_swappable_memory_and_the_fast_device_is_locked(profile_path, tmp_path):
    doc, rules, text = advise(profile_path, tmp_path, "--swap")
    assert doc["default"] == "slow"
    assert doc["devices"]["fast"]["lock"] is True
    assert "lock" not in doc["devices"]["slow"]
    assert rules[f"{EXE}+0x100"] == "fast"                 # the hot table: locked
    assert rules[f"{EXE}+0x300"] == "system"               # the temporaries: swapped, not written back
    assert f"{EXE}+0x200" not in rules                     # the matrix: the file device (the default)
    assert "allocated 40x its peak" in text


def test_without_swap_the_plan_has_no_lock_and_no_swapped_sites(profile_path, tmp_path):
    doc, rules, _ = advise(profile_path, tmp_path)
    assert "lock" not in doc["devices"]["fast"]
    assert "system" not in rules.values()
    assert rules[f"{EXE}+0x100"] == "fast"


def test_a_site_rewritten_in_place_counts_as_churning():
    from memplace.advisor.swap import churns
    once = prof.Site((prof.Frame(EXE, None, 1),), allocations=1, bytes=MIB, peak_live_bytes=MIB, writes=MIB)
    rewritten = prof.Site((prof.Frame(EXE, None, 2),), allocations=1, bytes=MIB, peak_live_bytes=MIB, writes=10 * MIB)
    unmeasured = prof.Site((prof.Frame(EXE, None, 3),), allocations=1, bytes=MIB, peak_live_bytes=MIB)
    assert (churns(once), churns(rewritten), churns(unmeasured)) == (False, True, False)


def test_when_the_file_device_would_stay_in_memory_everything_leaves_it(profile_path, tmp_path):
    """A budget that holds the whole heap (page cache model hit ratio 1): the matrix too
    goes to swappable memory, where resident data costs nothing a file device adds."""
    doc, rules, text = advise(profile_path, tmp_path, "--swap", "--shared-memory", "512MiB")
    assert rules[f"{EXE}+0x200"] == "system" and rules[f"{EXE}+0x300"] == "system"
    assert "keeps 100% of the file device in memory" in text
    assert "lock" not in doc["devices"]["fast"]           # nothing to protect from the kernel
    doc, rules, _ = advise(profile_path, tmp_path, "--swap", "--shared-memory", "64MiB")
    assert f"{EXE}+0x200" not in rules                     # under pressure the stream keeps the file device


def test_long_lived_data_in_small_blocks_leaves_the_file_device(tmp_path):
    """Read-around pays only for data streamed through blocks of at least two windows: a
    site of 2,048 blocks of 32 KiB, all live to the end, goes to swappable memory; the
    matrix (one 96 MiB block) keeps the file device."""
    from memplace.advisor.swap import read_around
    assert read_around(str(tmp_path)) >= 4096
    assert read_around(str(tmp_path / "absent")) == 128 << 10
    def site(off, allocations, size, reads, name):
        return prof.Site((prof.Frame(EXE, None, off),), allocations=allocations, bytes=size, peak_live_bytes=size,
                         reads=reads, writes=size, symbols=(prof.Symbol(name, "solver.c", off),))
    path = tmp_path / "mesh.json"
    prof.save(prof.Profile("dhat", ["solver"], [site(0x100, 1, 8 * MIB, 4000 * MIB, "hot_table"),
                                                site(0x200, 1, 96 * MIB, 192 * MIB, "matrix"),
                                                site(0x400, 2048, 64 * MIB, 128 * MIB, "mesh")],
                           pid=1, clock_unit="instr"), path)
    doc, rules, text = advise(path, tmp_path, "--swap")
    # the fast device's spare room takes what fits of it, the rest goes to system
    spill = rules[f"{EXE}+0x400"]
    assert spill == "system" or doc["devices"][spill]["fallback"] == "system"
    assert "blocks of 32KiB, under two read-around windows" in text
    assert f"{EXE}+0x200" not in rules
