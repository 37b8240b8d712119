"""One profile from several processes or ranks (`memplace profile merge`).

Sites are matched by identity (their frames). Counts add up (allocations, bytes,
reads, writes): they say how much the program as a whole does. Peaks do not add up: a
policy's capacities are per process, so a merged site's peak is the largest any one
process had, and its timeline is the per-window maximum over processes after putting
every run on the same normalised clock (SPMD ranks run in step).

    >>> from memplace.profiling.profile import Frame, Profile, Site
    >>> f = (Frame("/app", None, 0x10),)
    >>> a = Profile("runtime", sites=[Site(f, allocations=1, bytes=8, peak_live_bytes=8)], pid=1, rank=0)
    >>> b = Profile("runtime", sites=[Site(f, allocations=2, bytes=16, peak_live_bytes=16)], pid=2, rank=1)
    >>> m = merge([a, b])
    >>> m.processes, m.sites[0].allocations, m.sites[0].peak_live_bytes
    (2, 3, 16)
"""

from __future__ import annotations

import bisect
from typing import Sequence

from memplace.profiling import access_estimate
from memplace.profiling import profile as prof
from memplace.errors import UserError


def _spans(n: int, windows: int) -> list[tuple[int, int]]:
    """For each of `windows` windows, the windows [a, b) of a timeline of n windows over the
    same span that it overlaps: source window i covers targets floor(i*W/n) to
    ceil((i+1)*W/n) - 1 (at least one), and both ends grow with i."""
    lo = [i * windows // n for i in range(n)]
    hi = [min(max(lo[i], -(-(i + 1) * windows // n) - 1), windows - 1) for i in range(n)]
    return [(bisect.bisect_left(hi, j), bisect.bisect_right(lo, j)) for j in range(windows)]


def _resample(rows, windows: int):
    """Timelines (a sites x n array) on `windows` windows of the same total span: each
    target window takes the max of the source windows it overlaps."""
    import numpy as np

    n = rows.shape[1]
    if n == windows:
        return rows
    out = np.zeros((rows.shape[0], windows), dtype=rows.dtype)
    for j, (a, b) in enumerate(_spans(n, windows)):
        if a < b:
            out[:, j] = rows[:, a:b].max(axis=1)
    return out


def _merged_timelines(profiles: Sequence[prof.Profile], windows: int, row: dict[tuple, int],
                      at_heap_peak: bool = False):
    """Each merged site's timeline (rows in the order of `row`), or with `at_heap_peak` its
    bytes at the heap's peaks: the per-window max over the profiles, each resampled to
    `windows` (a 20,000-site profile per rank: numpy, not a Python loop per window). A
    site without a timeline may be live at any time: its peak everywhere."""
    import numpy as np

    merged = np.zeros((len(row), windows), dtype=np.int64)
    for p in profiles:
        by_length: dict[int, tuple[list[int], list[list[int]]]] = {}
        for s in p.sites:
            live = s.heap_peak_live if at_heap_peak else s.live
            live = live if live is not None else [s.peak_live_bytes] * windows
            idx, lives = by_length.setdefault(len(live), ([], []))
            idx.append(row[s.identity])
            lives.append(live)
        for n, (idx, lives) in by_length.items():
            if n:
                try:
                    rows = np.array(lives, dtype=np.int64)
                except OverflowError:  # counts are 64-bit unsigned: past 2**63, Python ints
                    rows, merged = np.array(lives, dtype=object), merged.astype(object)
                if merged.dtype == object:
                    rows = rows.astype(object)
                np.maximum.at(merged, np.array(idx), _resample(rows, windows))
    return merged


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def merge(profiles: Sequence[prof.Profile], names: Sequence[str] | None = None) -> prof.Profile:
    """Combine profiles (of ranks or processes of one program) into one."""
    if not profiles:
        raise UserError("nothing to merge")
    names = list(names or [f"profile {i}" for i in range(len(profiles))])
    units = {p.clock_unit for p in profiles}
    if len(units) > 1:
        raise UserError(f"cannot merge profiles on different clocks ({', '.join(sorted(units))}): "
                        "merge runtime profiles with runtime profiles and DHAT ones with DHAT ones")
    windows = max(p.windows for p in profiles)
    sites: dict[tuple, prof.Site] = {}
    lifetime_sum: dict[tuple, float] = {}
    lifetime_n: dict[tuple, int] = {}
    sources = []
    for p, name in zip(profiles, names):
        sources += p.meta.get("sources") or [
            {"file": name, "pid": p.pid, "rank": p.rank, "engine": p.engine, "command": p.command}
        ]
        for s in p.sites:
            key = s.identity
            m = sites.get(key)
            if m is None:
                m = sites[key] = prof.Site(frames=s.frames, symbols=s.symbols, peak_usable_bytes=0)
            m.allocations += s.allocations
            m.frees += s.frees
            m.bytes += s.bytes
            m.peak_usable_bytes = prof.max_known(m.peak_usable_bytes, s.peak_usable_bytes)
            m.peak_live_bytes = max(m.peak_live_bytes, s.peak_live_bytes)
            m.reads = _add(m.reads, s.reads)
            m.writes = _add(m.writes, s.writes)
            if s.sampled is not None:
                m.sampled = access_estimate.merge_sampled(m.sampled, s.sampled)
            for k, v in s.size_histogram.items():
                m.size_histogram[k] = m.size_histogram.get(k, 0) + v
            if not m.symbols and s.symbols:
                m.symbols = s.symbols
            if s.lifetime is not None:
                lt = m.lifetime
                m.lifetime = prof.Lifetime(
                    mean=0.0,
                    min=s.lifetime.min if lt is None else _opt(min, lt.min, s.lifetime.min),
                    max=s.lifetime.max if lt is None else _opt(max, lt.max, s.lifetime.max),
                )
                n = max(s.allocations, 1)
                lifetime_sum[key] = lifetime_sum.get(key, 0.0) + s.lifetime.mean * n
                lifetime_n[key] = lifetime_n.get(key, 0) + n
    for key, m in sites.items():
        if m.lifetime is not None:
            m.lifetime.mean = lifetime_sum[key] / lifetime_n[key]
    if windows:
        rows = {key: i for i, key in enumerate(sites)}
        timelines = _merged_timelines(profiles, windows, rows)
        for m, live in zip(sites.values(), timelines.tolist()):
            m.live = live
        if any(s.live_at_peak is not None for p in profiles for s in p.sites):
            at_peak = _merged_timelines(profiles, windows, rows, at_heap_peak=True)
            for m, live in zip(sites.values(), at_peak.tolist()):
                m.live_at_peak = None if live == m.live else live
    engines = {p.engine for p in profiles}
    durations = [p.duration for p in profiles if p.duration is not None]
    duration = max(durations) if durations else None
    return prof.Profile(
        engine=engines.pop() if len(engines) == 1 else "mixed",
        command=profiles[0].command,
        sites=sorted(sites.values(), key=lambda s: (-(s.accesses or 0), -s.bytes)),
        pid=None,
        rank=None,
        processes=sum(p.processes for p in profiles),
        clock_unit=units.pop(),
        duration=duration,
        window=(duration / windows) if (windows and duration) else None,
        meta=_merged_meta(profiles, sources),
    )


def _merged_meta(profiles: Sequence[prof.Profile], sources: list) -> dict:
    meta = {"sources": sources, "peaks": "per process (max over the merged processes)"}
    totals = [p.meta.get("peak_live_total") for p in profiles]
    if totals and all(isinstance(t, int) for t in totals):
        meta["peak_live_total"] = max(totals)  # per process, as the sites' peaks
    return meta


def _opt(f, a, b):
    if a is None:
        return b
    if b is None:
        return a
    return f(a, b)


def merge_files(paths: Sequence[str], output: str) -> prof.Profile:
    """Load, merge and save; the merged profile is returned."""
    loaded = [prof.load(p) for p in paths]
    merged = merge(loaded, paths)
    try:
        prof.save(merged, output)
    except OSError as e:
        raise UserError(f"{output}: cannot write: {e.strerror or e}") from None
    return merged
