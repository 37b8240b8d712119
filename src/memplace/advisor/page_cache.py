"""Pinned memory against the page cache: what a plan costs when a fast device and a file
device's page cache share one budget of memory (a memory cgroup's limit, a job's memory).

A file device's pages are read and written through the page cache, and the kernel keeps
in memory as many of them as the budget leaves: every byte pinned on a fast device is a
byte the kernel can no longer use as cache for the file device. Pinning a site therefore
pays only when that site is accessed more densely than what the kernel would otherwise
keep in the same room. The model:

* room R = budget - the pinned devices' planned peak (spill rooms included); the file
  devices' footprint W = their planned peak, at most the process's measured peak of live
  bytes minus what is pinned (the profile's `peak_live_total`);
* a file device access hits a resident page with probability h = min(1, R / W) (every
  page alike: the kernel's LRU is not told which are hot) and costs the device's
  resident figures, else its cold ones (the solver's own cost for the device);
* every byte a site allocates on a file device is a new file page, faulted in, dirtied
  and written back: its bytes at the device's write bandwidth, hit or miss;
* misses cost more when the page cache is small: sequential streams need room for
  read-around and for reclaim to work in batches. bench/capacity measured a 192 MiB stream
  under a memory cgroup at 0.21 GB/s with 16 MiB of page cache, 0.45 GB/s with 48 MiB,
  0.75 GB/s with 64 MiB and 1.2 GB/s with 96 MiB or more (docs/benchmarks.md): about in
  proportion to the room. So below `room` a miss costs room / R times the device's cold
  cost; a plan that leaves no page cache at all for file data is not allowed. The room
  follows the disk's read-around (`room_for`: 8 times it, at least 8 MiB), fitted at two
  settings of this machine's disk. At 8 MiB of read-around, 64 MiB was the one of 32, 64
  and 96 MiB whose plans ran best across the benchmark's programs in interleaved runs (96
  leaves hot/cold data on the file device that pinned memory serves better; 32 pins a
  stream and starves the others). At the kernel's default of 128 KiB, 8 MiB ran best or
  as well as any of 2, 4, 8, 16, 32 and 64 MiB on all three programs at 50% of their peak,
  one run after another; interleaved A/B runs then showed no difference this machine can
  measure between 8 and 64 MiB (OpenFOAM 16.31 s against 16.39 s, medians of 5; spmv 2.46
  against 2.54 s, of 8; docs/benchmarks.md, session 15): at that read-around the room
  matters little, and the smaller one leaves more to pin.

* a site written and never read (`written_once`: no read among enough access samples,
  or exact reads under a tenth of its writes; its writes at most REWRITTEN times its bytes)
  never misses: its pages are new file pages (the file device's blocks are preallocated
  and unwritten, so a first touch reads nothing from the disk), written once and then
  only written back. It still takes page cache while it is written (the kernel's LRU
  cannot know it will not be read: bench/capacity's 192 MiB log, written after its input
  arrays, pushed them out to the disk), so it counts in the footprint; pinning it saves
  only its write-back. Counting its writes as misses made a plan that pinned only
  hotcold's table look better (at 50% of its peak, from a profile that sampled the log
  heavily) than one that also kept four input blocks in memory, which ran as fast or
  faster in three interleaved batches (2.11-2.82 s against 2.25-3.57 s; docs/benchmarks.md).

Under this model pinning a site lowers the misses exactly when its accesses per byte are
above the average of the data left on the file device; the plan with nothing pinned (every
site on the file device) is always a candidate, so the advice is never modelled worse than
leaving everything to the kernel. Of the plans modelled no worse, the advice is the one
that costs least with every site's access figures at the upper end of their 95% interval
(`upper_cost`): figures from a handful of samples (a small site in the shadow of a hot
loop's misses) may hide misses that pinning the site would save.

    >>> import numpy as np
    >>> m = SharedMemory(total=100, room=80)
    >>> m.hit_ratio(pinned=40, cached=120), m.miss_factor(pinned=40)
    (0.5, 1.3333333333333333)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from memplace.profiling.access_estimate import poisson_interval

ROOM = 64 << 20  # page cache below which misses slow down at 8 MiB of read-around (module docstring)
ROOM_FLOOR = 8 << 20  # ... at the kernel's default read-around, 128 KiB, and below 1 MiB of it
ROOM_PER_READ_AROUND = 8
EXTRA = 3  # sites after the best prefix of the scan tried with it (capacity_candidates)
UNREAD = 10  # written_once: reads under 1/UNREAD of the writes (by the samples' 95% bound)
REWRITTEN = 4.0  # written_once: writes at most this many times the bytes allocated (the
#                  sampled estimates can be 2x high: hotcold's log, written once, at 2.05x)


def written_once(site) -> bool:
    """Written, never read (as far as the profile can tell), and not written over and over:
    see the module docstring. Sampled figures (runtime engine) are judged by their sample
    counts: no read among w write samples bounds the reads' share at 3/w (95%), so at least
    30 write samples are needed for the bound to be under 1/UNREAD."""
    writes = site.writes or 0
    if writes <= 0 or writes > REWRITTEN * max(site.bytes, 1):
        return False
    samples = site.sampled or {}
    if "read_samples" in samples and "write_samples" in samples:
        r, w = samples["read_samples"], samples["write_samples"]
        return r + 2 * math.sqrt(r) + 3 <= w / UNREAD
    return (site.reads or 0) * UNREAD <= writes


def room_for(read_around: int | None) -> int:
    """The page cache below which misses slow down, for file devices whose disk reads
    `read_around` bytes around a fault (None: nothing read around, DAX or memory)."""
    return max(ROOM_FLOOR, ROOM_PER_READ_AROUND * (read_around or 0))


@dataclass(frozen=True)
class SharedMemory:
    """`total` bytes shared by the pinned devices and the file devices' page cache; below
    `room` bytes of page cache, misses cost room / cache times more."""

    total: int
    room: int = ROOM
    # the process's own peak of live bytes, when the profile measured it: the file
    # devices' footprint is at most that minus what is pinned (the sites' peaks, summed
    # per window, add up peaks reached at different moments: twice OpenFOAM's heap)
    footprint: int | None = None
    room_from: str = ""  # where `room` came from, for the advice's note

    def file_footprint(self, pinned: float, planned: float) -> float:
        """The page-cache devices' footprint: their planned peak, capped by the measured one."""
        if self.footprint is None:
            return planned
        return max(0.0, min(planned, self.footprint - pinned))

    def hit_ratio(self, pinned: float, cached: float) -> float:
        left = self.total - pinned
        if cached <= 0:
            return 1.0
        return max(0.0, min(1.0, left / cached))

    def miss_factor(self, pinned: float) -> float:
        left = self.total - pinned
        return math.inf if left <= 0 else max(1.0, self.room / left)

    def allowed(self, pinned: float, cached: float) -> bool:
        return cached <= 0 or self.total - pinned > 0


@dataclass
class CachedCost:
    """A plan's cost under the shared-memory model."""

    cost: float  # modelled ns
    pinned: int  # bytes pinned at peak (spills included)
    cached: int  # the file devices' planned peak
    hit_ratio: float
    allowed: bool
    per_site: np.ndarray | None = None  # modelled ns of each site


def plan_cost(pb, assign: np.ndarray, spills: dict, pinned: np.ndarray, cached: np.ndarray,
              hit_cost: np.ndarray, shared: SharedMemory, no_miss: np.ndarray | None = None) -> CachedCost:
    """The cost of `assign` (plus `spills`: site -> (bytes, device index) of its part on a
    pinned device's leftover room) when the pinned devices (`pinned[d]`) and the page cache of the cached
    devices (`cached[d]`) share `shared.total` bytes. `hit_cost[s, d]` is site s's cost on
    device d when its pages are resident; `pb.cost` the cold one. Sites in `no_miss`
    (written_once) cost their resident figures on a cached device, hit or miss."""
    load = pb.loads(assign)
    spilled = sum(c for c, _ in spills.values())
    pin = float(load[pinned].sum(axis=0).max(initial=0)) + spilled if pinned.any() else float(spilled)
    cache = float(load[cached].sum(axis=0).max(initial=0)) - spilled if cached.any() else 0.0
    cache = shared.file_footprint(pin, max(cache, 0.0))
    h = shared.hit_ratio(pin, cache)
    n = pb.n
    rows = np.arange(n)
    cold = pb.cost[rows, assign]
    hot = hit_cost[rows, assign]
    on_cache = cached[assign]
    factor = shared.miss_factor(pin) if h < 1 else 1.0
    per_site = np.where(on_cache, h * hot + (1 - h) * cold * min(factor, 1e6), cold)
    if no_miss is not None:
        per_site = np.where(on_cache & no_miss, hot, per_site)
    for s, (capacity, d) in spills.items():
        share = spill_share(pb, s, capacity)
        per_site[s] = share * pb.cost[s, d] + (1 - share) * per_site[s]
    return CachedCost(float(per_site.sum()), int(pin), int(cache), h, shared.allowed(pin, cache), per_site)


def spill_share(pb, s: int, capacity: float) -> float:
    """The part of site s's peak a spill of `capacity` bytes holds."""
    return min(1.0, capacity / max(float(pb.demand[s].max(initial=0)), 1.0))


def upper_cost(per_site: np.ndarray, fixed: np.ndarray, samples: np.ndarray) -> float:
    """A plan's cost with every site's access figures at the upper end of their 95%
    interval. `per_site`: each site's modelled cost in the plan; `fixed`: the part of it
    its allocated bytes fix (its pages' write-back), not its access figures; `samples`:
    the access samples behind each site's figures (inf: exact figures). The figures are a
    site's sample count times a constant and the count is Poisson: its upper bound over
    the count (access_estimate.poisson_interval) scales the access-driven part."""
    driven = per_site - fixed
    factor = np.ones_like(driven)
    for i in np.nonzero(np.isfinite(samples) & (driven > 0))[0]:
        k = int(samples[i])
        factor[i] = poisson_interval(k)[1] / k if k > 0 else 1.0  # no sample: no figure to scale
    return float(fixed.sum() + (driven * factor).sum())


def capacity_candidates(pb, fast: int, hit_cost: np.ndarray, shared: SharedMemory,
                        no_miss: np.ndarray | None = None) -> list[int]:
    """Capacities worth solving for on the pinned device `fast`: the budget minus `room`,
    half of it and a quarter of it (as much pinned as leaves the page cache that much),
    and the capacity that minimises the model when sites are taken whole or in part in
    order of accesses per byte (the order that lowers misses most per byte pinned).
    Nothing pinned is always compared by the caller."""
    limit = pb.capacity[fast] if math.isfinite(pb.capacity[fast]) else math.inf
    tops = sorted({int(min(shared.total - r, limit)) for r in (shared.room, shared.room // 2, shared.room // 4)
                   if shared.total - r > 0})
    if not tops:
        return []
    top = tops[-1]
    size = pb.demand.max(axis=1)
    cold, hot = pb.cost[:, pb.default].copy(), hit_cost[:, pb.default].copy()
    if no_miss is None:
        no_miss = np.zeros(pb.n, dtype=bool)
    fixed = np.where(no_miss, hot, 0.0)  # costs its resident figures wherever the cache stands
    cold[no_miss] = hot[no_miss] = 0.0
    saving = cold + fixed - pb.cost[:, fast]
    order = [s for s in np.argsort(-((cold + fixed) / np.maximum(size, 1.0)), kind="stable") if saving[s] > 0]
    total = float(size.sum())
    best_c, best, best_at = 0.0, math.inf, 0
    pinned_bytes, pinned_cost, left_cold, left_hot = 0.0, 0.0, float(cold.sum()), float(hot.sum())
    left_fixed = float(fixed.sum())
    for i, s in enumerate(order):
        take = min(float(size[s]), top - pinned_bytes)
        if take <= 0:
            break
        share = take / max(float(size[s]), 1.0)
        pinned_bytes += take
        pinned_cost += share * pb.cost[s, fast]
        left_cold -= share * cold[s]
        left_hot -= share * hot[s]
        left_fixed -= share * fixed[s]
        h = shared.hit_ratio(pinned_bytes, shared.file_footprint(pinned_bytes, total - pinned_bytes))
        factor = shared.miss_factor(pinned_bytes) if h < 1 else 1.0
        model = pinned_cost + left_fixed + h * left_hot + (1 - h) * left_cold * factor
        if model < best:
            best, best_c, best_at = model, pinned_bytes, i + 1
        if take < size[s]:
            break
    out = list(tops)
    # the best prefix, and it with each of the next sites that fit whole: one the prefix
    # leaves out may be within the sampling noise of gaining (the caller compares them)
    more = [best_c + float(size[s]) for s in order[best_at:best_at + EXTRA] if best_c + size[s] <= top]
    for c in [best_c] + (more if best_c > 0 else []):
        if c > 0 and all(abs(c - o) >= 1 << 20 for o in out):
            out.append(int(c))
    return out
