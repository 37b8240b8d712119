"""`memplace advise`: the policy it writes, its table/JSON, and bad input."""

from __future__ import annotations

import json

import pytest

from advisor_support import assert_one_line_error, memplace
from memplace.profiling import profile as prof

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

DEVICES = ["--device", "hbm=numa:0,latency=80ns,capacity=1KiB", "--device", "ddr=system,latency=200ns"]


@pytest.fixture
def profile_path(tmp_path):
    exe = "/opt/app/bin/app"
    sites = [
        # hot and small: hbm; a shared inner frame (a wrapper) told apart by the caller.
        prof.Site((prof.Frame(exe, None, 0x1100), prof.Frame(exe, None, 0x2000)), allocations=4, bytes=2048,
                  peak_live_bytes=512, reads=900_000, writes=10_000, symbols=(prof.Symbol("xmalloc", "util.c", 12), None)),
        prof.Site((prof.Frame(exe, None, 0x1100), prof.Frame(exe, None, 0x3000)), allocations=1, bytes=4096,
                  peak_live_bytes=4096, reads=5_000, writes=4096, symbols=(prof.Symbol("xmalloc", "util.c", 12), None)),
        prof.Site((prof.Frame(exe, None, 0x1200),), allocations=1, bytes=256, peak_live_bytes=256,
                  reads=100_000, writes=0, symbols=(prof.Symbol("main", "app.c", 40),)),
    ]
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["app"], sites, pid=1, clock_unit="instr"), path)
    return path


def test_policy_follows_the_schema_and_validates(tmp_path, profile_path):
    out = tmp_path / "policy.toml"
    r = memplace("advise", str(profile_path), "--policy-out", str(out), *DEVICES, check=True)
    assert "xmalloc" in r.stdout and "hbm" in r.stdout and "util.c:12" in r.stdout
    doc = tomllib.loads(out.read_text())
    assert doc["version"] == 1 and doc["default"] == "ddr"
    assert doc["devices"]["hbm"] == {"kind": "numa", "nodes": [0], "mode": "bind", "capacity": "1KiB", "fallback": "ddr"}
    assert doc["devices"]["ddr"] == {"kind": "system"}
    rules = doc["rules"]
    assert all(set(r) == {"name", "site", "device"} and r["device"] == "hbm" for r in rules)
    # The wrapper's frame 0 is shared with a site that stays on ddr: the rule needs the caller.
    assert sorted(r["site"] for r in rules) == [
        ["/opt/app/bin/app+0x1100", "/opt/app/bin/app+0x2000"],
        ["/opt/app/bin/app+0x1200"],
    ]
    # Each rule carries its reason as a comment right above it.
    text = out.read_text()
    assert text.count("saves") == 2 and "[[rules]]" in text
    # The policy loader and checker of `memplace policy` accept it.
    chk = memplace("policy", "check", str(out))
    assert chk.returncode == 0, chk.stdout + chk.stderr


def test_json_output(profile_path):
    r = memplace("advise", str(profile_path), *DEVICES, "--json", check=True)
    d = json.loads(r.stdout)
    assert d["method"].startswith("milp") and d["optimal"] is True
    assert d["devices"]["hbm"]["peak"] <= 1024
    assert [p["device"] for p in d["placements"]].count("hbm") == 2
    assert all(p["reason"] for p in d["placements"])


def test_capacity_override_moves_sites(profile_path):
    r = memplace("advise", str(profile_path), *DEVICES, "--capacity", "hbm=8KiB", "--json", check=True)
    assert all(p["device"] == "hbm" for p in json.loads(r.stdout)["placements"])


def test_every_rule_has_its_own_short_name(tmp_path):
    """Two sites in one C++ function without line numbers (a stripped Debian library):
    names without return type, templates and parameters, and still one per rule."""
    exe = "/opt/app/bin/app"
    fn = "Foam::tmp<Foam::Field<double> > Foam::operator*<double>(Foam::UList<double> const&) const"
    sites = [prof.Site((prof.Frame(exe, None, off),), allocations=1, bytes=64, peak_live_bytes=64,
                       reads=1000, writes=0, symbols=(prof.Symbol(fn, None, None),)) for off in (0x1100, 0x1180)]
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["app"], sites, pid=1, clock_unit="instr"), path)
    out = tmp_path / "policy.toml"
    memplace("advise", str(path), "--policy-out", str(out), *DEVICES, check=True)
    names = [r["name"] for r in tomllib.loads(out.read_text())["rules"]]
    assert sorted(names) == ["Foam::operator*", "Foam::operator*#2"]


def test_ranks_per_node_share_the_capacity(tmp_path, profile_path):
    """Two ranks on a node: each is planned with half of hbm's 8KiB, so the 4KiB site (which
    fits in 8KiB, see above) no longer does; the policy keeps the node's 8KiB, scope "node"."""
    out = tmp_path / "policy.toml"
    r = memplace("advise", str(profile_path), *DEVICES, "--capacity", "hbm=8KiB", "--ranks-per-node", "2",
                 "--policy-out", str(out), "--json", check=True)
    placed = json.loads(r.stdout)["placements"]
    assert sorted(p["device"] for p in placed) == ["ddr", "hbm", "hbm"]
    assert json.loads(r.stdout)["devices"]["hbm"]["peak"] <= 4096
    doc = tomllib.loads(out.read_text())
    assert doc["devices"]["hbm"]["capacity"] == "8KiB" and doc["devices"]["hbm"]["scope"] == "node"
    assert memplace("policy", "check", str(out)).returncode == 0


@pytest.mark.parametrize(
    "args, needles",
    [
        (["--device", "hbm=numa:0,latency=80,capacity=lots", "--device", "ddr=system,latency=200"], ["capacity", "lots"]),
        ([*DEVICES, "--capacity", "hbm=12 parsecs"], ["hbm", "12 parsecs"]),
        ([*DEVICES, "--capacity", "gpu=1GiB"], ["gpu", "no device named"]),
        ([*DEVICES, "--default", "pmem"], ["pmem", "no such device"]),
        (["--device", "hbm=numa:0,latency=fast"], ["latency", "fast"]),
        (["--device", "hbm=quantum:0,latency=80"], ["unknown kind"]),
        (["--device", "hbm=numa:0,latency=80,capacity=1KiB"], ["every device has a capacity"]),
    ],
)
def test_bad_input_is_one_line_exit_2(profile_path, args, needles):
    assert_one_line_error(memplace("advise", str(profile_path), *args), *needles)


def test_missing_and_foreign_profiles(tmp_path):
    assert_one_line_error(memplace("advise", str(tmp_path / "none.json"), *DEVICES), "none.json", "cannot read")
    foreign = tmp_path / "policy.toml"
    foreign.write_text("version = 1\n")
    assert_one_line_error(memplace("advise", str(foreign), *DEVICES), "policy.toml", "not a memplace profile")


def test_progress_on_a_terminal_only(profile_path):
    """Long steps say what they do on a terminal's stderr (erased after); piped, nothing."""
    import os
    import pty
    import subprocess
    import sys

    primary, secondary = pty.openpty()
    r = subprocess.run([sys.executable, "-m", "memplace", "advise", str(profile_path), *DEVICES],
                       stdout=subprocess.DEVNULL, stderr=secondary, timeout=120)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # EIO: the terminal's other side is closed
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert r.returncode == 0
    assert b"memplace: placing 3 sites on 2 devices" in seen and b"\x1b[K" in seen
    piped = memplace("advise", str(profile_path), *DEVICES, check=True)
    assert "placing" not in piped.stderr


def test_room_left_on_a_limited_device_takes_part_of_a_site_too_big_for_it(tmp_path):
    """180 MiB fast: a 48 MiB hot table fits whole; neither 192 MiB cold site does. The
    room left (132 MiB) goes to the cold site whose blocks fit in it (8 x 24 MiB) and that
    is accessed more, as a device of its own falling back to slow; the one-block site
    (192 MiB in one allocation) gets none. The policy validates and the runtime's
    capacities add up to the fast device's."""
    exe, mib = "/opt/app/bin/app", 1 << 20
    sites = [
        prof.Site((prof.Frame(exe, None, 0x1100),), allocations=1, bytes=48 * mib, peak_live_bytes=48 * mib,
                  reads=800 * mib, writes=800 * mib),
        prof.Site((prof.Frame(exe, None, 0x1200),), allocations=8, bytes=192 * mib, peak_live_bytes=192 * mib,
                  reads=192 * mib, writes=192 * mib),
        prof.Site((prof.Frame(exe, None, 0x1300),), allocations=1, bytes=192 * mib, peak_live_bytes=192 * mib,
                  reads=0, writes=400 * mib),
    ]
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["app"], sites, pid=1, clock_unit="instr"), path)
    out = tmp_path / "policy.toml"
    r = memplace("advise", str(path), "--policy-out", str(out), "--json", "--device",
                 "fast=numa:0,latency=100ns,capacity=180MiB", "--device", "slow=system,latency=50us", check=True)
    doc = tomllib.loads(out.read_text())
    assert doc["devices"]["fast-spill"] == {"kind": "numa", "nodes": [0], "mode": "bind", "capacity": "132MiB",
                                            "fallback": "slow"}
    assert {r["site"][0]: r["device"] for r in doc["rules"]} == {
        "/opt/app/bin/app+0x1100": "fast", "/opt/app/bin/app+0x1200": "fast-spill"}
    spills = {p["site"][0]: p["spill"] for p in json.loads(r.stdout)["placements"]}
    assert spills["/opt/app/bin/app+0x1200"]["capacity"] == 132 * mib
    assert spills["/opt/app/bin/app+0x1200"]["device"] == "fast"
    assert spills["/opt/app/bin/app+0x1300"] is None and spills["/opt/app/bin/app+0x1100"] is None
    chk = memplace("policy", "check", str(out))
    assert chk.returncode == 0, chk.stdout + chk.stderr


def test_a_site_whose_walk_ended_early_does_not_take_deeper_sites_of_another_device(tmp_path):
    """A site whose walk stopped after its first frame (its caller could not be unwound)
    is hot and goes to fast; deeper sites starting with the same frame are cold and stay
    on the default. A rule is a prefix, so the one-frame rule would take them too (in
    CPython, 240 sites and a fast device overflowing by 60%): they get rules of their own,
    written before it."""
    exe, kib = "/opt/app/bin/app", 1 << 10
    hot = prof.Site((prof.Frame(exe, None, 0x1100),), allocations=1000, bytes=64 * kib,
                    peak_live_bytes=64 * kib, reads=100 << 20, writes=0)
    cold = [prof.Site((prof.Frame(exe, None, 0x1100), prof.Frame(exe, None, off), prof.Frame(exe, None, 0x3000)),
                      allocations=1, bytes=512 * kib, peak_live_bytes=512 * kib, reads=0, writes=512 * kib)
            for off in (0x2100, 0x2200)]
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["app"], [hot, *cold], pid=1, clock_unit="instr"), path)
    out = tmp_path / "policy.toml"
    memplace("advise", str(path), "--policy-out", str(out), "--device", "fast=numa:0,latency=80ns,capacity=128KiB",
             "--device", "slow=system,latency=300ns", check=True)
    rules = [(r["site"], r["device"]) for r in tomllib.loads(out.read_text())["rules"]]
    assert rules == [([f"{exe}+0x1100", f"{exe}+0x2100"], "slow"), ([f"{exe}+0x1100", f"{exe}+0x2200"], "slow"),
                     ([f"{exe}+0x1100"], "fast")], rules


def test_capacities_are_planned_in_the_units_the_device_heaps_count(tmp_path):
    """Two hot sites of 96 KiB each asked for and a fast device of 200 KiB: both fit as
    asked, but the heaps count 125 KiB for the first (its size class rounds up, as the
    runtime profile's peak_usable_bytes says), so only one is planned there."""
    exe, kib = "/opt/app/bin/app", 1 << 10
    sites = [prof.Site((prof.Frame(exe, None, off),), allocations=1000, bytes=96 * kib * 10,
                       peak_live_bytes=96 * kib, peak_usable_bytes=usable, reads=100 << 20, writes=0)
             for off, usable in ((0x1100, 125 * kib), (0x1200, 96 * kib))]
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("runtime", ["app"], sites, pid=1, clock_unit="ns"), path)
    assert prof.load(path).sites[0].peak_usable_bytes == 125 * kib  # written and read back
    out = tmp_path / "policy.toml"
    memplace("advise", str(path), "--policy-out", str(out), "--device", "fast=numa:0,latency=80ns,capacity=200KiB",
             "--device", "slow=system,latency=300ns", check=True)
    rules = tomllib.loads(out.read_text())["rules"]
    assert len(rules) == 1, rules
