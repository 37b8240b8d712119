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


def test_when_everything_stays_in_memory_on_mallocs_memory_the_plan_is_the_program_as_it_is(profile_path, tmp_path):
    """A budget that holds the whole heap (page cache model hit ratio 1), and the fast device
    is node 0, this machine's only node with memory (what malloc uses anyway): nothing to
    place, so no devices and no rules, and `memplace run` runs it without the runtime."""
    from memplace.advisor.swap import memory_nodes
    if memory_nodes() != {0}:
        pytest.skip("the machine has more than node 0 with memory")
    doc, rules, text = advise(profile_path, tmp_path, "--swap", "--shared-memory", "512MiB")
    assert doc["default"] == "system" and "devices" not in doc and rules == {}
    assert "nothing to place" in text and "without the runtime" in text
    doc, rules, _ = advise(profile_path, tmp_path, "--swap", "--shared-memory", "64MiB")
    assert f"{EXE}+0x200" not in rules                     # under pressure the stream keeps the file device
    assert doc["devices"]["fast"]["lock"] is True


def swap_plan(profile_path, tmp_path, nodes, fast="numa:0"):
    """plan_for_swap's advice and devices, for a machine whose nodes with memory are `nodes`."""
    from memplace.advisor.advice import device_specs, run_advice
    from memplace.advisor.page_cache import SharedMemory
    from memplace.advisor.swap import plan_for_swap
    specs = device_specs((f"fast={fast},latency=100ns,bandwidth=20GB/s,capacity=16MiB",
                          f"slow=file:{tmp_path},latency=4us,bandwidth=1GB/s"), (), None)
    advice = run_advice(prof.load(profile_path), specs, "latency", "auto", None, 10.0,
                        SharedMemory(total=512 * MIB, room=64 * MIB))
    plan_for_swap(advice, specs, nodes)
    return advice, {d.name: d for d in specs}


def test_when_the_file_device_would_stay_in_memory_everything_leaves_it(profile_path, tmp_path):
    """The same budget on a machine with two nodes: node 0 is not all the memory malloc may
    use, so the fast device keeps its site; the matrix and the temporaries go to swappable
    memory, where resident data costs nothing a file device adds, and nothing is locked."""
    advice, specs = swap_plan(profile_path, tmp_path, {0, 1})
    device = {p.site.frames[0].offset: p.device for p in advice.placements}
    assert device == {0x100: "fast", 0x200: "system", 0x300: "system"}
    assert advice.default == "system"                      # what no rule matches: not the file device either
    assert "lock" not in specs["fast"].table               # nothing to protect from the kernel
    assert "fast" in specs and not any("nothing to place" in n for n in advice.notes)


def test_the_identity_needs_every_site_on_memory_malloc_uses_anyway(profile_path, tmp_path):
    from memplace.advisor.device_specs import DeviceSpec, parse_device
    from memplace.advisor.swap import system_memory
    advice, specs = swap_plan(profile_path, tmp_path, {0})
    assert set(specs) == set() and {p.device for p in advice.placements} == {"system"}
    assert all(p.spill is None for p in advice.placements) and advice.default == "system"
    def numa(nodes, **table):
        return DeviceSpec("f", "numa", {"nodes": nodes, **table})
    assert system_memory(numa([0]), {0}) and system_memory(numa([0, 1]), {0, 1})
    assert system_memory(numa([0, 1], mode="preferred-many"), {0, 1})
    assert not system_memory(numa([0]), {0, 1})                        # node 1 is malloc's too
    assert not system_memory(numa([0, 1], mode="interleave"), {0, 1})
    assert not system_memory(numa([0]), None)                          # /sys unreadable: not known
    assert not system_memory(numa([0], lock=True), {0})                # locked: kept from the kernel's swap
    assert not system_memory(parse_device(f"f=file:{tmp_path}"), {0})


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
