"""The page cache model (`memplace advise --shared-memory`): a fast device's pinned memory
and a file device's page cache share one budget, so the advice pins only what gains."""

from __future__ import annotations

import json
import random

import pytest

from advisor_support import assert_one_line_error, memplace
from memplace.advisor.device_specs import DeviceSpec
from memplace.advisor.page_cache import ROOM_FLOOR, SharedMemory, room_for
from memplace.commands import advise as advise_command
from memplace.advisor.solver import Device, advise
from memplace.profiling import profile as prof
from memplace.profiling.profile import Frame, Site

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

MIB = 1 << 20


def devices(fast_capacity: int):
    """node 0 and a file device with the figures `devices --measure` gave on this machine."""
    resident = Device("slow (resident)", read_latency=159, write_latency=159, read_bandwidth=33e9, write_bandwidth=28e9)
    return [Device("fast", read_latency=182, write_latency=182, read_bandwidth=34e9, write_bandwidth=27e9,
                   capacity=fast_capacity),
            Device("slow", read_latency=3580, write_latency=3580, read_bandwidth=2.1e9, write_bandwidth=1.24e9,
                   page_cache=True, resident=resident)]


def spmv_sites():
    """bench/capacity/spmv's sites as its profile saw them: x (12 MiB, read at random, 36
    accessed bytes per byte), y (12 MiB, 6 per byte), the column indices (96 MiB) and the
    values (192 MiB) streamed at 2.2 per byte, the row pointers (12 MiB) hardly read."""
    def site(off, size, reads, writes):
        return Site((Frame("/bench/spmv", None, off),), allocations=1, bytes=size, peak_live_bytes=size,
                    reads=reads, writes=writes)
    return {"x": site(0x10, 12 * MIB, 372 * MIB, 84 * MIB), "y": site(0x20, 12 * MIB, 0, 74 * MIB),
            "col": site(0x30, 96 * MIB, 174 * MIB, 50 * MIB), "val": site(0x40, 192 * MIB, 347 * MIB, 101 * MIB),
            "row": site(0x50, 12 * MIB, 0, 3 * MIB)}


def test_streams_stay_with_the_page_cache_when_pinning_them_would_starve_it():
    """157 MiB for a 324 MiB heap: the plain capacity model pins x and the column indices
    (108 MiB), leaving 49 MiB of page cache for three streams (measured 0.56x the file
    device alone); the page cache model pins only the densely used vectors and leaves the
    streams to the kernel's read-around."""
    sites = spmv_sites()
    name = {id(s): k for k, s in sites.items()}
    plain = advise(list(sites.values()), devices(157 * MIB))
    assert {name[id(p.site)] for p in plain.on("fast")} >= {"x", "col"}
    shared = advise(list(sites.values()), devices(157 * MIB), shared=SharedMemory(157 * MIB))
    pinned = {name[id(p.site)] for p in shared.on("fast")}
    assert "x" in pinned and "col" not in pinned and "val" not in pinned
    assert shared.shared["pinned"] <= 157 * MIB - 64 * MIB  # the cache keeps at least its room
    fast = next(d for d in shared.devices if d.name == "fast")
    assert fast.capacity < 157 * MIB  # the capacity the policy gets is the chosen one
    assert any(n.startswith("page cache model") and "nothing pinned" in n for n in shared.notes)


def test_with_room_to_spare_the_hot_data_is_pinned_whole():
    sites = spmv_sites()
    name = {id(s): k for k, s in sites.items()}
    a = advise(list(sites.values()), devices(600 * MIB), shared=SharedMemory(600 * MIB))
    assert {"x", "y", "col"} <= {name[id(p.site)] for p in a.on("fast")}
    assert a.shared["hit_ratio"] == 1.0


def test_nothing_pinned_when_every_byte_is_as_hot_as_every_other_and_the_cache_is_small():
    """Sites of equal density under a budget below the cache's room: pinning any of them
    only makes the page cache smaller, so the advice pins nothing (the plan of the file
    device alone)."""
    sites = [Site((Frame("/app", None, i),), allocations=1, bytes=16 * MIB, peak_live_bytes=16 * MIB,
                  reads=64 * MIB, writes=0) for i in range(8)]
    a = advise(sites, devices(48 * MIB), shared=SharedMemory(48 * MIB))
    assert a.on("fast") == [] and a.cost == pytest.approx(a.default_cost)
    assert any("nothing pinned" in n and "keeps no site" in n for n in a.notes)


@pytest.mark.parametrize("seed", range(6))
def test_never_modelled_worse_than_nothing_pinned(seed):
    rng = random.Random(seed)
    sites = [Site((Frame("/app", None, i),), allocations=rng.randint(1, 4), bytes=(n := rng.randint(1, 64) * MIB),
                  peak_live_bytes=n, reads=rng.randint(0, 40) * n, writes=rng.randint(0, 4) * n) for i in range(12)]
    budget = rng.randint(16, 400) * MIB
    a = advise(sites, devices(budget), shared=SharedMemory(budget))
    assert a.cost <= a.default_cost * (1 + 1e-9)
    assert a.shared["pinned"] <= budget


def test_without_a_file_device_the_model_does_not_apply():
    sites = list(spmv_sites().values())
    devs = [Device("fast", read_latency=100, capacity=100 * MIB), Device("slow", read_latency=300)]
    assert advise(sites, devs, shared=SharedMemory(100 * MIB)).shared is None


def test_cli_writes_the_chosen_capacity(tmp_path):
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["spmv"], list(spmv_sites().values()), pid=1, clock_unit="instr"), path)
    out = tmp_path / "policy.toml"
    r = memplace("advise", str(path), "--policy-out", str(out), "--device",
                 "fast=numa:0,latency=182ns,capacity=157MiB", "--device",
                 f"slow=file:{tmp_path},latency=3.58us,bandwidth=2.1GB/s", "--shared-memory", "157MiB", check=True)
    assert "page cache model" in r.stdout
    doc = tomllib.loads(out.read_text())
    capacity = doc["devices"]["fast"]["capacity"]
    assert capacity != "157MiB"
    assert memplace("policy", "check", str(out)).returncode == 0


def test_the_room_follows_the_disks_read_around():
    """64 MiB ran best at 8 MiB of read-around, 8 MiB at the kernel's 128 KiB
    (docs/benchmarks.md); no read-around (DAX, memory) keeps the floor."""
    assert room_for(8 * MIB) == 64 * MIB
    assert room_for(128 << 10) == ROOM_FLOOR == 8 * MIB
    assert room_for(None) == ROOM_FLOOR
    assert room_for(2 * MIB) == 16 * MIB


def test_without_cache_room_the_file_devices_disk_decides(monkeypatch):
    """The largest read-around among the file devices, shared among a node's ranks, named
    in the note with the sysfs file that sets it."""
    arounds = {"/a": (128 << 10, "/sys/class/bdi/8:0/read_ahead_kb"),
               "/b": (4 * MIB, "/sys/class/bdi/8:16/read_ahead_kb"), "/dax": None}
    monkeypatch.setattr(advise_command, "read_around", arounds.get)
    specs = [DeviceSpec("fast", "numa", {"nodes": [0]}), DeviceSpec("ssd", "file", {"path": "/a"}),
             DeviceSpec("nvme", "file", {"path": "/b"})]
    shared = advise_command._shared_memory((2 << 30, None), 2, specs)
    assert shared.room == 16 * MIB and shared.total == 1 << 30
    assert "nvme" in shared.room_from and "/sys/class/bdi/8:16/read_ahead_kb" in shared.room_from
    dax = advise_command._shared_memory((1 << 30, None), 1, [DeviceSpec("pmem", "file", {"path": "/dax"})])
    assert dax.room == ROOM_FLOOR and "no disk read-around known for pmem" in dax.room_from


def test_the_note_says_where_the_room_came_from(tmp_path):
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["spmv"], list(spmv_sites().values()), pid=1, clock_unit="instr"), path)
    args = ["advise", str(path), "--device", "fast=numa:0,latency=182ns,capacity=157MiB", "--device",
            f"slow=file:{tmp_path},latency=3.58us,bandwidth=2.1GB/s", "--shared-memory", "157MiB", "--json"]
    notes = lambda r: [n for n in json.loads(r.stdout)["notes"] if n.startswith("page cache model: fast")]
    given = notes(memplace(*args, "--cache-room", "24MiB", check=True))
    assert len(given) == 1 and "misses slower below 24MiB of cache (--cache-room)" in given[0]
    derived = notes(memplace(*args, check=True))
    assert len(derived) == 1 and ("disk read-around of" in derived[0] or "no disk read-around known" in derived[0])


@pytest.mark.parametrize("args, needles", [
    (["--shared-memory", "lots"], ["--shared-memory", "lots"]),
    (["--shared-memory", "0"], ["--shared-memory", "above 0"]),
    (["--shared-memory", "1GiB", "--cache-room", "x"], ["--cache-room", "x"]),
])
def test_bad_budget_is_one_line_exit_2(tmp_path, args, needles):
    path = tmp_path / "profile.json"
    prof.save(prof.Profile("dhat", ["spmv"], list(spmv_sites().values()), pid=1, clock_unit="instr"), path)
    assert_one_line_error(memplace("advise", str(path), "--device", "fast=numa:0,latency=100ns,capacity=1GiB",
                                   "--device", f"slow=file:{tmp_path},latency=3us", *args), *needles)


def phase_sites():
    """Two 100 MiB arrays live one after the other (a solver's phases) within one profile
    window, each streamed twice: per window the sites' peaks add up to 200 MiB, while the
    heap never holds more than 100 MiB."""
    def site(off):
        return Site((Frame("/bench/phases", None, off),), allocations=1, bytes=100 * MIB,
                    peak_live_bytes=100 * MIB, reads=200 * MIB, writes=100 * MIB, live=[100 * MIB])
    return site(0x10), site(0x20)


def test_the_measured_heap_peak_caps_the_file_devices_footprint():
    """With 150 MiB shared, a heap whose peak is 100 MiB fits in the page cache whole:
    nothing needs pinning (hit ratio 1). Summed site peaks, as the model had them without
    the profile's peak_live_total, never let the cache hold everything."""
    sites = list(phase_sites())
    capped = advise(sites, devices(150 * MIB), shared=SharedMemory(150 * MIB, footprint=100 * MIB))
    assert capped.shared["cached"] <= 100 * MIB and capped.shared["hit_ratio"] == 1.0
    assert any("measured peak 100MiB" in n for n in capped.notes), capped.notes
    plain = advise(sites, devices(150 * MIB), shared=SharedMemory(150 * MIB))
    assert plain.shared["hit_ratio"] < 1.0
    assert SharedMemory(1, footprint=100).file_footprint(pinned=30, planned=200) == 70
    assert SharedMemory(1).file_footprint(pinned=30, planned=200) == 200


def hotcold_sites():
    """bench/capacity/hotcold's sites as a runtime profile saw them (2026-12-01): the table
    (48 MiB, updated at random), the input arrays (eight 24 MiB blocks written, then each
    read once, estimated low: a stream's time per byte is short) and the log (192 MiB
    written once, never read: no read among 148 access samples, its writes estimated at
    2x its bytes)."""
    def site(off, allocations, size, reads, writes, samples):
        return Site((Frame("/bench/hotcold", None, off),), allocations=allocations, bytes=size,
                    peak_live_bytes=size, reads=reads, writes=writes,
                    sampled={"read_samples": samples[0], "write_samples": samples[1]})
    return {"table": site(0x10, 1, 48 * MIB, 452 * MIB, 505 * MIB, (266, 272)),
            "input": site(0x20, 8, 192 * MIB, 11 * MIB, 105 * MIB, (6, 36)),
            "log": site(0x30, 1, 192 * MIB, 0, 394 * MIB, (0, 148))}


def test_a_site_written_and_never_read_is_left_to_the_file_device_not_the_data_read_back():
    """hotcold at 50% (214 MiB shared): counting the log's writes as misses made the plan
    that pins only the table the cheapest (measured 1.25-1.48x the file device alone);
    with the log's pages new and only written back, the table is pinned and the room left
    holds four input blocks (measured 1.57-1.58x), the log stays on the file device."""
    sites = hotcold_sites()
    a = advise(list(sites.values()), devices(214 * MIB), shared=SharedMemory(214 * MIB, footprint=432 * MIB))
    placed = {p.site.frames[0].offset: p for p in a.placements}
    assert placed[0x10].device == "fast"
    assert placed[0x30].device == "slow" and placed[0x30].spill is None
    assert placed[0x20].spill is not None and placed[0x20].spill.capacity >= 4 * 24 * MIB
    assert any("written and never read" in n and "never miss" in n for n in a.notes)


def test_written_once_needs_enough_samples_and_no_rewriting():
    from memplace.advisor.page_cache import written_once
    sites = hotcold_sites()
    assert written_once(sites["log"])
    assert not written_once(sites["table"]) and not written_once(sites["input"])
    # the log as most profiles saw it: 33 write samples, none of them reads
    log = Site((Frame("/bench/hotcold", None, 0x30),), allocations=1, bytes=192 * MIB, peak_live_bytes=192 * MIB,
               reads=0, writes=85 * MIB, sampled={"read_samples": 0, "write_samples": 33})
    assert written_once(log)
    # spmv's y: no read among 10 write samples is no evidence it is never read
    y = Site((Frame("/bench/spmv", None, 1),), allocations=1, bytes=12 * MIB, peak_live_bytes=12 * MIB,
             reads=0, writes=50 * MIB, sampled={"read_samples": 0, "write_samples": 10})
    assert not written_once(y)
    # a buffer written over and over is re-read from the disk when its pages were evicted
    ring = Site((Frame("/app", None, 2),), allocations=1, bytes=MIB, peak_live_bytes=MIB, reads=0, writes=64 * MIB)
    assert not written_once(ring)
    # exact counts (DHAT): reads under a tenth of the writes
    exact = Site((Frame("/app", None, 3),), allocations=1, bytes=MIB, peak_live_bytes=MIB, reads=1000, writes=MIB)
    assert written_once(exact)
    assert not written_once(Site((Frame("/app", None, 4),), allocations=1, bytes=MIB, peak_live_bytes=MIB,
                                 reads=MIB // 4, writes=MIB))


def spmv_sampled(scale: float = 1.0):
    """spmv's sites as a runtime profile saw them after the sampler credited loop bodies
    whole (2026-12-01, profile B1 of docs/benchmarks.md): y (12 MiB, 42 MiB read and
    written of 96) from 11 samples, just under the streams' 4.85 accessed bytes per byte;
    `scale` multiplies every sample count (the same figures, better founded)."""
    def site(off, size, reads, writes, samples):
        return Site((Frame("/bench/spmv", None, off),), allocations=1, bytes=size, peak_live_bytes=size,
                    reads=reads, writes=writes,
                    sampled={"read_samples": round(samples[0] * scale), "write_samples": round(samples[1] * scale)})
    return {"x": site(0x10, 12 * MIB, 890 * MIB, 24 * MIB, (200, 7)),
            "y": site(0x20, 12 * MIB, 17 * MIB, 25 * MIB, (6, 5)),
            "col": site(0x30, 96 * MIB, 406 * MIB, 67 * MIB, (157, 57)),
            "val": site(0x40, 192 * MIB, 812 * MIB, 134 * MIB, (157, 57)),
            "row": site(0x50, 12 * MIB, 0, 11 * MIB, (0, 2))}


def test_a_small_site_whose_few_samples_may_hide_its_misses_is_pinned():
    """spmv at 50% (160 MiB shared): pinning y is modelled a little worse than x alone at
    the point estimates, but y's figures rest on 11 samples and at the upper end of the
    sites' intervals pinning it is cheaper; x and y pinned ran 1.14x the file device
    alone, x alone 1.02x (side by side, 5 rounds). With 100 times the samples the same
    figures are trusted and the cheapest plan, x alone, is the advice; with exact figures
    too. Fewer samples everywhere never pin a stream (x and the column indices pinned ran
    0.56x the file device alone)."""
    def pinned(sites, budget=160 * MIB):
        a = advise(list(sites.values()), devices(budget), shared=SharedMemory(budget, footprint=324 * MIB))
        name = {id(s): k for k, s in sites.items()}
        return a, {name[id(p.site)] for p in a.on("fast")}

    a, fast = pinned(spmv_sampled())
    assert fast == {"x", "y"}, (fast, a.notes)
    assert any("upper end of their 95% intervals" in n for n in a.notes), a.notes
    a, fast = pinned(spmv_sampled(100.0))
    assert fast == {"x"}, (fast, a.notes)
    assert not any("upper end of their 95% intervals" in n for n in a.notes)
    exact = spmv_sampled()
    for s in exact.values():
        s.sampled = None
    assert pinned(exact)[1] == {"x"}
    for scale in (0.1, 0.3, 3.0):
        assert not {"col", "val"} & pinned(spmv_sampled(scale))[1], scale
