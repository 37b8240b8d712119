"""Hard capacities, the ordered fallback chain, and devices that cannot be used."""

import os
import subprocess
import sys

import pytest

from placement_support import build, line_of, run_placed, stats_of, where


def fill_policy(tmp_path, pmem, small="fast", extra=""):
    p = tmp_path / "policy.toml"
    p.write_text(f"""
version = 1
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "64MiB"
fallback = "pmem"
[devices.pmem]
kind = "file"
path = "{pmem}"
capacity = "128MiB"
{extra}
[[rules]]
name = "fill"
site = ["fill.c:{line_of('fill.c', 'fill')}"]
device = "{small}"
""")
    return p


def capped_policy(tmp_path, pmem, capacity: str, source: str, marker: str):
    """One rule, the line of `source` marked `marker`, to "fast" (node 0, `capacity`),
    which falls back to the file device "pmem"."""
    p = tmp_path / "policy.toml"
    p.write_text(f"""
version = 1
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "{capacity}"
fallback = "pmem"
[devices.pmem]
kind = "file"
path = "{pmem}"
[[rules]]
site = ["{source}:{line_of(source, marker)}"]
device = "fast"
""")
    return p


def test_full_device_falls_back_in_order_and_is_counted(tmp_path, pmem):
    prog = build(tmp_path, "fill.c")
    stats = tmp_path / "stats.json"
    # 300 x 1 MiB: 64 MiB on fast, 128 MiB on pmem, the rest on the next allocator
    r = run_placed(prog, fill_policy(tmp_path, pmem), "300", str(1 << 20), stats=stats)
    assert r.returncode == 0, r.stderr
    assert "ok 300" in r.stdout
    w = where(r.stdout)
    assert w["first"]["policy"] == "bind:0"
    assert w["last"]["policy"] == "default:" and w["last"]["file"] == "-"
    s = stats_of(stats)
    fast, pm, system = s["devices"]["fast"], s["devices"]["pmem"], s["devices"]["system"]
    assert 0 < fast["allocations"] <= 64 and fast["peak"] <= 64 << 20
    assert 0 < pm["allocations"] <= 128 and pm["peak"] <= 128 << 20
    assert fast["allocations"] + pm["allocations"] + system["allocations"] >= 300
    assert fast["fallbacks"]["full"] == 300 - fast["allocations"]
    assert pm["fallbacks"]["full"] == 300 - fast["allocations"] - pm["allocations"]
    assert s["rules"]["fill"]["hits"] == 300


def test_absent_node_is_an_error_before_the_program_starts(tmp_path, pmem):
    prog = build(tmp_path, "fill.c")
    p = tmp_path / "policy.toml"
    p.write_text(f"""
version = 1
[devices.far]
kind = "numa"
nodes = [7]
[[rules]]
site = ["fill.c:{line_of('fill.c', 'fill')}"]
device = "far"
""")
    r = run_placed(prog, p, "1", "100")
    assert r.returncode == 2
    assert r.stdout == ""  # the program never ran
    assert len(r.stderr.strip().splitlines()) == 1 and "node" in r.stderr and "7" in r.stderr


def test_absent_node_with_fallback_runs_and_says_so_once(tmp_path, pmem):
    prog = build(tmp_path, "fill.c")
    p = tmp_path / "policy.toml"
    p.write_text(f"""
version = 1
[devices.far]
kind = "numa"
nodes = [7]
fallback = "pmem"
[devices.pmem]
kind = "file"
path = "{pmem}"
capacity = "64MiB"
[[rules]]
site = ["fill.c:{line_of('fill.c', 'fill')}"]
device = "far"
""")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, p, "10", str(1 << 20), stats=stats)
    assert r.returncode == 0, r.stderr
    assert where(r.stdout)["first"]["file"].startswith(str(pmem))
    assert r.stderr.count("device 'far': mbind failed") == 1
    far = stats_of(stats)["devices"]["far"]
    assert far["fallbacks"]["bind_failed"] == 10 and far["allocations"] == 0


def test_bad_compiled_policy_keeps_the_program_transparent(tmp_path, runtime):
    prog = build(tmp_path, "fill.c")
    bad = tmp_path / "bad.mpc"
    bad.write_bytes(b"MPLCPOL\0" + b"\x07" * 100)
    env = dict(os.environ, LD_PRELOAD=runtime, MEMPLACE_POLICY=str(bad))
    r = subprocess.run([prog, "5", "4096"], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and "ok 5" in r.stdout
    assert r.stderr.count("memplace: policy") == 1 and "running transparent" in r.stderr
    assert where(r.stdout)["first"]["policy"] == "default:"


@pytest.mark.parametrize("call", ["malloc", "aligned_alloc", "realloc", "calloc"])
def test_every_allocation_call_respects_the_capacity_and_its_peak_is_measured(tmp_path, pmem, call):
    """1000 live blocks of 1 KiB for a device of 256 KiB: 256 fit, the rest fall back, and
    the device's peak is its capacity, whichever call allocates (aligned_alloc, realloc
    and a first calloc take the general path, which published live bytes only every MiB:
    the device took all 1000 and its peak read 0)."""
    prog = build(tmp_path, "calls.c")
    how = ["malloc", "aligned_alloc", "realloc", "calloc"].index(call)
    p = capped_policy(tmp_path, pmem, "256KiB", "calls.c", "block")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, p, str(how), "1000", "1024", stats=stats)
    assert r.returncode == 0, r.stderr
    fast = stats_of(stats)["devices"]["fast"]
    assert fast["allocations"] == 256 and fast["fallbacks"]["full"] == 744, fast
    assert fast["peak"] == 256 << 10, fast


def test_a_device_the_thread_freed_is_not_taken_for_full(tmp_path, pmem):
    # The thread publishes its live bytes in batches (1 MiB); a device of 1 MiB filled
    # (300 x 4 KiB: the last ~45 fall back) and then mostly freed (250) must take the
    # next 100 blocks: 150 live at most. Before: its unpublished frees left it "full".
    prog = build(tmp_path, "refill.c")
    p = capped_policy(tmp_path, pmem, "1MiB", "refill.c", "refill")
    stats = tmp_path / "stats.json"
    r = run_placed(prog, p, "300", "250", "100", "4096", stats=stats)
    assert r.returncode == 0, r.stderr
    fast = stats_of(stats)["devices"]["fast"]
    first_round = (1 << 20) // 4096  # at most this many of the first 300 fit
    assert fast["fallbacks"]["full"] <= 300 - first_round + 5, fast  # none in the second round
    assert fast["allocations"] >= first_round - 5 + 100, fast
