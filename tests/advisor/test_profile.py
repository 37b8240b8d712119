"""Profile files: round trip, strict loading of bad files, merging."""

from __future__ import annotations

import json

import pytest

from advisor_support import assert_one_line_error, memplace
from memplace.profiling import profile as prof
from memplace.errors import UserError
from memplace.profiling.merge import merge


def sample(pid=1, rank=0, live=(0, 100, 50, 0)) -> prof.Profile:
    f0 = prof.Frame("/usr/bin/app", "ab12", 0x11A7)
    f1 = prof.Frame("/usr/lib/libc.so.6", None, 0x2724A)
    s = prof.Site((f0, f1), allocations=3, frees=2, bytes=300, peak_live_bytes=100,
                  lifetime=prof.Lifetime(mean=5.0, min=1.0, max=9.0), size_histogram={7: 3},
                  reads=1000, writes=500, live=list(live), symbols=(prof.Symbol("main", "app.c", 7), None))
    return prof.Profile("runtime", ["./app", "-x"], [s], pid=pid, rank=rank, clock_unit="ns", duration=400.0, window=100.0)


def test_round_trip(tmp_path):
    p = sample()
    path = tmp_path / "p.json"
    prof.save(p, path)
    q = prof.load(path)
    assert q.sites[0] == p.sites[0]
    assert (q.engine, q.command, q.pid, q.rank, q.window, q.windows) == ("runtime", ["./app", "-x"], 1, 0, 100.0, 4)
    assert q.sites[0].identity == (("ab12", 0x11A7), ("/usr/lib/libc.so.6", 0x2724A))
    assert q.sites[0].site_spec == ["/usr/bin/app+0x11a7", "/usr/lib/libc.so.6+0x2724a"]


@pytest.mark.parametrize(
    "content, needle",
    [
        ("", "empty file"),
        ("hello", "not a memplace profile"),
        ('{"some": "other json"}', "not a memplace profile"),
        ("\x00\x01\x02binary", "not a memplace profile"),
        ('{"format": "memplace-profile", "version": 99, "engine": "x", "sites": []}', "newer"),
        ('{"format": "memplace-profile", "version": 1, "engine": "x", "sites": [{"frames": []}]}', "0 frames"),
        ('{"format": "memplace-profile", "version": 1, "engine": "x", "sites": [{"frames": [{"module": "m", "offset": "zz"}],'
         ' "allocations": 1, "bytes": 1, "peak_live_bytes": 1}]}', "offset"),
        ('{"format": "memplace-profile", "version": 1, "engine": "x", "sites": [{"frames": [{"module": "m", "offset": 1}],'
         ' "allocations": "3", "bytes": 1, "peak_live_bytes": 1}]}', "allocations"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, needle):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(UserError, match=needle):
        prof.load(path)


def test_truncated_profile_via_cli(tmp_path):
    path = tmp_path / "p.json"
    prof.save(sample(), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    p = memplace("advise", str(path), "--device", "fast=numa:0,latency=80,capacity=1MiB", "--device", "slow=system,latency=200")
    assert_one_line_error(p, str(path), "truncated")
    foreign = tmp_path / "f.json"
    foreign.write_text(json.dumps({"dhatFileVersion": 2}))
    p = memplace("profile", "merge", str(foreign), "-o", str(tmp_path / "o.json"))
    assert_one_line_error(p, str(foreign), "not a memplace profile")


def test_concurrent_peak_uses_timelines():
    a = prof.Site((prof.Frame("m", None, 1),), peak_live_bytes=100, live=[100, 0, 0])
    b = prof.Site((prof.Frame("m", None, 2),), peak_live_bytes=80, live=[0, 80, 0])
    c = prof.Site((prof.Frame("m", None, 3),), peak_live_bytes=30, live=[0, 30, 30])
    assert prof.concurrent_peak([a, b, c]) == 110
    d = prof.Site((prof.Frame("m", None, 4),), peak_live_bytes=5)  # no timeline: always counted
    assert prof.concurrent_peak([a, d]) == 105


def test_bytes_at_the_heaps_peaks_round_trip_and_count_where_given(tmp_path):
    """Two temporaries, each 100 bytes at its own peak in both windows but live one after
    the other: at the heap's peaks one holds 100 and the other 0."""
    a = prof.Site((prof.Frame("m", None, 1),), peak_live_bytes=100, live=[100, 100], live_at_peak=[100, 0])
    b = prof.Site((prof.Frame("m", None, 2),), peak_live_bytes=100, live=[100, 100], live_at_peak=[0, 100])
    assert prof.concurrent_peak([a, b]) == 100
    assert prof.concurrent_peak([a, prof.Site((prof.Frame("m", None, 3),), live=[100, 100])]) == 200
    path = tmp_path / "p.json"
    prof.save(prof.Profile("runtime", sites=[a, b]), path)
    assert [s.live_at_peak for s in prof.load(path).sites] == [[100, 0], [0, 100]]
    data = json.loads(path.read_text())
    data["sites"][0]["live_at_peak"] = [100]
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="'live_at_peak' must have as many windows as 'live'"):
        prof.load(path)


def test_advisor_packs_a_capacity_by_the_bytes_at_the_heaps_peaks():
    from memplace.advisor.solver import Device, advise

    a = prof.Site((prof.Frame("m", None, 1),), bytes=100, peak_live_bytes=100, reads=1000, writes=0,
                  live=[100, 100], live_at_peak=[100, 0])
    b = prof.Site((prof.Frame("m", None, 2),), bytes=100, peak_live_bytes=100, reads=1000, writes=0,
                  live=[100, 100], live_at_peak=[0, 100])
    fast = Device("fast", read_latency=80, write_latency=80, capacity=150)
    slow = Device("slow", read_latency=300, write_latency=300)
    assert [p.device for p in advise([a, b], [fast, slow]).placements] == ["fast", "fast"]
    a.live_at_peak = b.live_at_peak = None  # only their own peaks known: one fits
    assert sorted(p.device for p in advise([a, b], [fast, slow]).placements) == ["fast", "slow"]


def test_merge_ranks(tmp_path):
    a, b = sample(pid=10, rank=0, live=(0, 100, 50, 0)), sample(pid=11, rank=1, live=(100, 0))
    b.sites[0].peak_live_bytes = 120
    b.window = 200.0
    other = prof.Site((prof.Frame("/usr/bin/app", "ab12", 0x2000),), allocations=1, bytes=8, peak_live_bytes=8, live=[8, 8])
    b.sites.append(other)
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    prof.save(a, pa)
    prof.save(b, pb)
    out = tmp_path / "m.json"
    r = memplace("profile", "merge", str(pa), str(pb), "-o", str(out), "--json", check=True)
    assert json.loads(r.stdout)["processes"] == 2
    m = prof.load(out)
    assert m.processes == 2 and len(m.sites) == 2
    s = m.by_identity()[a.sites[0].identity]
    assert (s.allocations, s.bytes, s.reads, s.writes) == (6, 600, 2000, 1000)
    assert s.peak_live_bytes == 120  # per process: the larger, not the sum
    assert s.size_histogram == {7: 6}
    # b's 2-window timeline spreads over 4 windows; elementwise max with a's.
    assert s.live == [100, 100, 50, 0]
    assert s.lifetime.min == 1.0 and s.lifetime.max == 9.0
    assert {src["rank"] for src in m.meta["sources"]} == {0, 1}


def test_merge_keeps_byte_counts_past_two_to_the_63(tmp_path):
    """Counts are 64-bit unsigned (up to 2**64 - 1, what the loader accepts): timelines,
    and a peak standing for a site without one, merge exactly, not overflow numpy's int64."""
    big = (1 << 64) - 1
    a, b = sample(pid=10, live=(0, big, 5, 0)), sample(pid=11, live=(1 << 63, 0))
    c = sample(pid=12)
    c.sites[0].live, c.sites[0].peak_live_bytes = None, big - 1
    for profiles, want in (([a, b], [1 << 63, big, 5, 0]), ([b, c], [big - 1] * 2),
                           ([a, sample(pid=13)], [0, big, 50, 0])):
        paths = []
        for p in profiles:
            paths.append(tmp_path / f"p{p.pid}.json")
            prof.save(p, paths[-1])
        out = tmp_path / "m.json"
        memplace("profile", "merge", *map(str, paths), "-o", str(out), check=True)
        assert prof.load(out).sites[0].live == want
        assert merge(profiles).sites[0].live == want


def test_merge_refuses_different_clocks():
    a, b = sample(), sample()
    b.clock_unit = "instr"
    with pytest.raises(UserError, match="different clocks"):
        merge([a, b])
