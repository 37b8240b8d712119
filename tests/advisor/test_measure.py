"""`memplace devices --measure`: real measurements of this machine's devices (sanity bounds
only, no timing asserts), the per-machine cache, bad input, and `memplace advise` using the
measured figures where the machine has no HMAT."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from advisor_support import assert_one_line_error, memplace
from memplace.placement.devices import read_topology
from memplace.profiling import profile as prof

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib


@pytest.fixture
def env(tmp_path, monkeypatch):
    """A cache of its own: nothing measured before the test (memplace inherits it)."""
    monkeypatch.setenv("MEMPLACE_CACHE", str(tmp_path / "cache"))


def measure(env, *args):
    r = memplace("devices", "--measure", "--quick", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout), r.stderr


def sane(m: dict) -> None:
    """DRAM or page cache: between 1 ns and 10 us per dependent load, above 0.05 GB/s."""
    assert 1 <= m["latency_ns"] <= 10_000, m
    assert all(m["bandwidth_gbps"][k] > 0.05 for k in ("read", "write", "copy")), m
    assert m["threads"] == 1 and m["buffer_bytes"] >= 8 << 20


def test_node_and_file_directory_measured_then_cached(env, tmp_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    doc, err = measure(env, "--device", "n0=numa:0", "--device", f"disk=file:{scratch}")
    n0, disk = doc["measured"]
    assert n0["name"] == "n0" and n0["device"] == "numa:0" and not n0["cached"]
    sane(n0)
    assert disk["name"] == "disk" and disk["kind"] == "file" and not disk["cached"]
    sane(disk)  # page-cache resident
    assert "measuring n0 (numa:0)" in err and "measuring disk" in err  # progress
    cold = disk["cold"]
    if cold is None:  # a memory filesystem: nothing to evict, and it says so
        assert "tmpfs" in disk["cold_unavailable"]
    else:
        # Evicted pages come back from the disk: each first load of a page is a major
        # fault. Robust here (a few hundred ns against tens of us): the only ordering checked.
        assert cold["resident_after_eviction"] < 0.5, cold
        assert cold["latency_ns"] > disk["latency_ns"], (cold, disk)
        assert 0 < cold["latency_ns"] < 1e9 and all(cold["bandwidth_gbps"][k] > 0 for k in ("read", "write"))
    assert not list(scratch.iterdir())  # the file was unlinked
    from memplace.placement.sysfs import read_around
    found = read_around(str(scratch))
    assert disk["read_around"] == (found[0] if found else None)  # what the cold figures had

    # The second time: from the cache, the same figures, no measuring.
    again, err = measure(env, "--device", "n0=numa:0", "--device", f"disk=file:{scratch}")
    assert [m["cached"] for m in again["measured"]] == [True, True]
    assert again["measured"][0]["latency_ns"] == n0["latency_ns"]
    assert again["measured"][1]["measured_at"] == disk["measured_at"]
    assert "measuring" not in err and "cached" in err
    # --remeasure ignores it.
    fresh, _ = measure(env, "--device", "n0=numa:0", "--remeasure")
    assert fresh["measured"][0]["cached"] is False


def test_machine_devices_table(env):
    r = memplace("devices", "--measure", "--quick")
    assert r.returncode == 0, r.stderr
    assert "Measured here" in r.stdout and "node0" in r.stdout and "HMAT read lat" in r.stdout
    doc, _ = measure(env)
    names = [m["name"] for m in doc["measured"]]
    assert names[0] == "node0" and all(m["cached"] for m in doc["measured"])
    for m in doc["measured"]:
        sane(m)


@pytest.mark.parametrize("device, needle", [
    ("x=file:/no/such/dir", "/no/such/dir: no such directory"),
    ("x=numa:1000", "node 1000 does not exist on this machine"),
    ("x=numa:4093", "node ids go from 0 to 1023"),
    ("x=file:relative", "absolute directory"),
])
def test_bad_device_one_line(env, device, needle):
    assert_one_line_error(memplace("devices", "--measure", "--device", device), needle)


def test_file_not_a_directory(env, tmp_path):
    f = tmp_path / "plain"
    f.write_text("x")
    assert_one_line_error(memplace("devices", "--measure", "--device", f"x=file:{f}"), "not a directory")


def test_empty_huge_page_pool_refused(env):
    if any(p.free for p in read_topology().hugepages):
        pytest.skip("this machine has free huge pages")
    r = memplace("devices", "--measure", "--quick", "--device", "h=hugepages")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("memplace: h: hugepages: no 64 MiB of free huge pages")


@pytest.fixture
def profile_path(tmp_path):
    exe = "/opt/app/bin/app"
    sites = [
        prof.Site((prof.Frame(exe, None, 0x1100),), allocations=4, bytes=2048, peak_live_bytes=512,
                  reads=900_000, writes=10_000, symbols=(prof.Symbol("hot", "app.c", 12),)),
        prof.Site((prof.Frame(exe, None, 0x1200),), allocations=1, bytes=4096, peak_live_bytes=4096,
                  reads=10, writes=0, symbols=(prof.Symbol("cold", "app.c", 40),)),
    ]
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["app"], sites, pid=1, clock_unit="instr"), path)
    return path


def test_advise_without_hmat_uses_measured_figures(env, tmp_path, profile_path):
    topo = read_topology()
    if any(a.read_latency_ns for n in topo.nodes for a in n.access):
        pytest.skip("this machine's firmware gives HMAT figures")
    # Not measured yet: refused, pointing at --measure.
    assert_one_line_error(memplace("advise", str(profile_path)), "memplace devices --measure")
    measure(env)
    policy = tmp_path / "p.toml"
    r = memplace("advise", str(profile_path), "--json", "--policy-out", str(policy))
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    note = next(n for n in doc["notes"] if n.startswith("node0:"))
    assert "measured on this machine" in note and "latency" in note and "devices --measure" in note
    assert "measured on this machine" in policy.read_text()  # the policy says where its figures came from
    assert tomllib.loads(policy.read_text())["default"] == "node0"
    # the table output says it too
    r = memplace("advise", str(profile_path))
    assert r.returncode == 0 and "node0: latency" in r.stdout and "measured" in r.stdout


def test_given_latency_wins_over_measured(env, tmp_path, profile_path):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    measure(env, "--device", "n0=numa:0", "--device", f"disk=file:{scratch}")
    r = memplace("advise", str(profile_path), "--json", "--device", "fast=numa:0,latency=80ns,capacity=1KiB",
                 "--device", f"slow=file:{scratch}")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    fast = [n for n in doc["notes"] if n.startswith("fast:")]
    slow = next(n for n in doc["notes"] if n.startswith("slow:"))
    # fast: its latency was given; only its bandwidth may come from the measurement
    assert all("latency" not in n for n in fast)
    assert "latency" in slow and "measured on this machine" in slow
    cold = "cold" in slow  # a file device is costed by its evicted (capacity-tier) figures
    from memplace.placement.sysfs import read_around
    from memplace.units import format_size
    found = read_around(str(scratch))  # which its cold figures depend on
    assert (f"read-around {format_size(found[0])}" in slow) == bool(found), slow
    assert cold or "resident" in slow
    # the hot site goes to the fast device, the measured slow file device keeps the rest
    placed = {p["function"]: p["device"] for p in doc["placements"]}
    assert placed == {"hot": "fast", "cold": "slow"}
