"""Placement advisor: which device each allocation site should live on.

The model (what "best" means here):

* cost of site s on device d = reads(s) x read cost(d) + writes(s) x write cost(d), where
  the cost of a 64-byte line is the device's latency (model "latency", ns) or its
  transfer time at the device's bandwidth (model "bandwidth");
* a device with a capacity must hold the bytes of the sites put on it: with timelines,
  for every window w, the sum over them of the bytes each had live when the whole heap
  peaked in w <= capacity, so sites that are never live together can share the space
  (a runtime profile's `live_at_peak`; the sites' own window peaks, which overstate it
  when they peak at different moments, where the engine gives no more); without
  timelines, the sum of their peaks;
* minimise the total cost. Exactly, as a 0/1 program solved by HiGHS through
  `scipy.optimize.milp`, or — for very large inputs, or as the baseline — greedily by
  value density (ecoHMEM's method: sites in order of cost saved per byte, each onto the
  fastest device where it still fits).

    >>> from memplace.profiling.profile import Frame, Site
    >>> hot = Site((Frame("app", None, 1),), bytes=100, peak_live_bytes=100, reads=10_000, writes=0)
    >>> cold = Site((Frame("app", None, 2),), bytes=100, peak_live_bytes=100, reads=10, writes=0)
    >>> fast = Device("hbm", read_latency=80, write_latency=80, capacity=150)
    >>> slow = Device("ddr", read_latency=200, write_latency=200)
    >>> a = advise([hot, cold], [fast, slow])
    >>> [(p.site is hot, p.device) for p in a.placements]
    [(True, 'hbm'), (False, 'ddr')]
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np

from memplace.advisor import coalesce, page_cache
from memplace.advisor.page_cache import SharedMemory
from memplace.errors import UserError
from memplace.profiling.access_estimate import sampled_access_notes
from memplace.profiling.profile import Site
from memplace.units import format_ns, format_size

LINE = 64  # bytes per modelled access (one cache line)
EXACT_MAX_VARIABLES = 4_000  # sites x devices up to which the whole MILP is solved
LP_GUIDED_MAX_VARIABLES = 400_000  # above this, the greedy path alone
MIP_GAP = 1e-4  # relative optimality gap at which HiGHS may stop (0 for small inputs)
SMALL_VARIABLES = 200  # up to this many, solved to proven optimality (gap 0)
NEIGHBOURHOOD = 300  # sites the LP-guided MILP may move


@dataclass(frozen=True)
class Device:
    """What the advisor needs to know about one device. Latencies in ns, bandwidths in
    bytes/s, capacity in bytes (None: unlimited)."""

    name: str
    read_latency: float | None = None
    write_latency: float | None = None
    read_bandwidth: float | None = None
    write_bandwidth: float | None = None
    capacity: int | None = None
    page_cache: bool = False  # its pages pass through the page cache (a file device)
    resident: "Device | None" = None  # what its pages cost while resident (page_cache only)

    def line_costs(self, model: str) -> tuple[float, float]:
        """(read, write) cost of one 64-byte line in ns under `model`."""
        if model == "latency":
            r = self.read_latency if self.read_latency is not None else self.write_latency
            w = self.write_latency if self.write_latency is not None else r
            if r is None:
                raise UserError(f"device {self.name}: no latency known (give latency=NS)")
            return float(r), float(w)
        if model == "bandwidth":
            rb = self.read_bandwidth if self.read_bandwidth is not None else self.write_bandwidth
            wb = self.write_bandwidth if self.write_bandwidth is not None else rb
            if not rb or not wb:
                raise UserError(f"device {self.name}: no bandwidth known (give bandwidth=GB/s)")
            return LINE / rb * 1e9, LINE / wb * 1e9
        raise UserError(f"unknown cost model {model!r} (latency or bandwidth)")


@dataclass(frozen=True)
class Spill:
    """Room a limited device has left after the plan, given to a site too big to fit there
    whole: its blocks go there until the room is used up, the rest to the site's own
    device. The policy writes the room as a device of its own (same memory, this
    capacity, falling back to the site's device), so the sites planned on the limited
    device keep all of theirs, whatever order the program allocates in."""

    device: str  # the limited device whose room it takes
    capacity: int  # bytes
    saving: float  # modelled ns saved: the site's saving on `device` x the share that fits


@dataclass
class Placement:
    site: Site
    device: str
    cost: float  # modelled ns on the chosen device
    default_cost: float  # modelled ns had it stayed on the default device
    density: float  # accessed bytes per byte of peak footprint
    reason: str = ""
    spill: Spill | None = None  # part of the site on a limited device's leftover room


@dataclass
class Advice:
    placements: list[Placement]
    devices: list[Device]
    default: str
    model: str
    method: str  # "milp" or "greedy"
    optimal: bool
    cost: float
    default_cost: float  # everything on the default device
    peak: dict[str, int] = field(default_factory=dict)  # modelled peak live bytes per device
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    bound: float | None = None  # proven lower bound on the optimal cost (LP / MILP dual)
    shared: dict | None = None  # the page cache model's budget and the chosen plan's figures

    @property
    def gap(self) -> float | None:
        """Relative distance to the proven bound (0 = optimal); None when unknown."""
        if self.optimal:
            return 0.0
        if self.bound is None or self.cost <= 0:
            return None
        return max(0.0, (self.cost - self.bound) / self.cost)

    def on(self, device: str) -> list[Placement]:
        return [p for p in self.placements if p.device == device]


# ---- the problem as arrays --------------------------------------------------------------


@dataclass
class Problem:
    """Arrays of one instance: cost[s, d] (ns), demand[s, w] (bytes live in window w),
    capacity[d] (inf when unlimited)."""

    cost: np.ndarray
    demand: np.ndarray
    capacity: np.ndarray
    default: int
    base_load: np.ndarray | None = None  # bytes[d, w] already taken (fixed sites)

    @property
    def n(self) -> int:
        return self.cost.shape[0]

    @property
    def m(self) -> int:
        return self.cost.shape[1]

    def loads(self, assign: np.ndarray) -> np.ndarray:
        """bytes[d, w] live on each device in each window under `assign`."""
        out = np.zeros((self.m, self.demand.shape[1])) if self.base_load is None else self.base_load.copy()
        np.add.at(out, assign, self.demand)
        return out

    def room(self) -> np.ndarray:
        """Capacity left in each window: bytes[d, w] (inf when unlimited)."""
        room = np.repeat(self.capacity[:, None], self.demand.shape[1], axis=1)
        return room if self.base_load is None else room - self.base_load

    def subproblem(self, free: np.ndarray, assign: np.ndarray) -> "Problem":
        """The problem over the sites in `free`, all others fixed as in `assign`."""
        fixed = np.ones(self.n, bool)
        fixed[free] = False
        base = np.zeros((self.m, self.demand.shape[1])) if self.base_load is None else self.base_load.copy()
        np.add.at(base, assign[fixed], self.demand[fixed])
        return Problem(self.cost[free], self.demand[free], self.capacity, self.default, base)

    def feasible(self, assign: np.ndarray) -> bool:
        return bool(np.all(self.loads(assign).max(axis=1, initial=0) <= self.capacity + 1e-6))

    def total(self, assign: np.ndarray) -> float:
        return float(self.cost[np.arange(self.n), assign].sum())


def build_problem(sites: Sequence[Site], devices: Sequence[Device], model: str, default: int) -> Problem:
    rw = np.array([_reads_writes(s) for s in sites], dtype=float).reshape(len(sites), 2) / LINE
    unit = np.array([d.line_costs(model) for d in devices], dtype=float).reshape(len(devices), 2)
    cost = rw @ unit.T
    windows = max((len(s.live) for s in sites if s.live is not None), default=0)
    if windows == 0:
        demand = np.array([[s.peak_live_bytes] for s in sites], dtype=float).reshape(len(sites), 1)
    else:
        demand = np.empty((len(sites), windows))
        for i, s in enumerate(sites):
            live = s.heap_peak_live
            if live is None:
                demand[i] = s.peak_live_bytes  # no timeline: may be live at any time
            else:
                demand[i, : len(live)] = live
                demand[i, len(live) :] = 0
        demand = _dominant_windows(demand)
    # in the units a placed run counts capacity in: its heaps' size classes round up
    demand *= np.array([s.heap_factor for s in sites], dtype=float).reshape(len(sites), 1)
    capacity = np.array([math.inf if d.capacity is None else float(d.capacity) for d in devices])
    return Problem(cost, demand, capacity, default)


def _reads_writes(s: Site) -> tuple[int, int]:
    if s.reads is None and s.writes is None:
        return 0, s.bytes  # no access counts: each allocated byte is written once
    return s.reads or 0, s.writes or 0


def _dominant_windows(demand: np.ndarray) -> np.ndarray:
    """Drop windows whose demand is elementwise <= another's: their constraints are
    implied, and fewer rows make the solver faster."""
    seen: dict[bytes, int] = {}
    for j in range(demand.shape[1]):
        seen.setdefault(np.ascontiguousarray(demand[:, j]).tobytes(), j)
    cols = demand[:, sorted(seen.values())]
    if cols.shape[1] <= 1:
        return cols
    order = np.argsort(-cols.sum(axis=0))
    keep: list[int] = []
    for j in order:
        c = cols[:, j]
        if not any(np.all(c <= cols[:, k]) for k in keep):
            keep.append(j)
    return cols[:, sorted(keep)]


# ---- solvers ----------------------------------------------------------------------------


def solve_greedy(pb: Problem) -> np.ndarray:
    """ecoHMEM's method: sites by value density (cost saved per byte, best device vs the
    default), each onto the cheapest device for it where it still fits in every window."""
    assign = np.full(pb.n, pb.default)
    saving = pb.cost[:, pb.default] - pb.cost.min(axis=1)
    density = saving / np.maximum(pb.demand.max(axis=1), 1.0)
    room = pb.room()
    single = room.shape[1] == 1  # no timeline: plain floats are much faster than arrays
    free = [float(r[0]) for r in room] if single else list(room)
    prefs = np.argsort(pb.cost, axis=1, kind="stable")
    cost, demand = pb.cost, pb.demand
    for s in np.argsort(-density, kind="stable"):
        if saving[s] <= 0:
            break
        need = float(demand[s, 0]) if single else demand[s]
        for d in prefs[s]:
            if d == pb.default or cost[s, d] >= cost[s, pb.default]:
                break
            if (need <= free[d] + 1e-6) if single else bool(np.all(need <= free[d] + 1e-6)):
                free[d] = free[d] - need
                assign[s] = d
                break
    return assign


def solve_milp(pb: Problem, time_limit: float = 30.0, relax: bool = False):
    """Exact assignment with HiGHS: (assignment, proven optimal, objective bound) or None
    if no feasible solution was found in time. With relax=True, the LP relaxation:
    (x[s, d] fractional matrix, True, its objective)."""
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_matrix, csr_matrix

    n, m = pb.n, pb.m
    # Variable x[s, d] at index s*m + d.
    rows_one = np.repeat(np.arange(n), m)
    one = csr_matrix((np.ones(n * m), (rows_one, np.arange(n * m))), shape=(n, n * m))
    constraints = [LinearConstraint(one, 1, 1)]
    capped = [d for d in range(m) if math.isfinite(pb.capacity[d])]
    room = pb.room()
    if capped:
        W = pb.demand.shape[1]
        r, c, v = [], [], []
        for k, d in enumerate(capped):
            for w in range(W):
                col = pb.demand[:, w]
                nz = np.nonzero(col)[0]
                r.append(np.full(nz.size, k * W + w))
                c.append(nz * m + d)
                v.append(col[nz])
        A = coo_matrix((np.concatenate(v), (np.concatenate(r), np.concatenate(c))), shape=(len(capped) * W, n * m))
        ub = room[capped].ravel()
        constraints.append(LinearConstraint(A.tocsr(), -np.inf, ub))
    # Costs are scaled to keep HiGHS's tolerances meaningful on ns-sized numbers.
    scale = max(float(np.abs(pb.cost).max()), 1.0)
    res = milp(
        c=(pb.cost / scale).ravel(),
        constraints=constraints,
        integrality=np.zeros(n * m) if relax else np.ones(n * m),
        bounds=Bounds(0, 1),
        options={
            "time_limit": max(time_limit, 0.1),
            "mip_rel_gap": 0.0 if n * m <= SMALL_VARIABLES else MIP_GAP,
            "presolve": True,
        },
    )
    if res.x is None:
        return None
    x = res.x.reshape(n, m)
    if relax:
        return x, res.status == 0, float(res.fun) * scale
    bound = getattr(res, "mip_dual_bound", None)
    bound = float(bound) * scale if bound is not None and np.isfinite(bound) else None
    return x.argmax(axis=1), res.status == 0, bound


def solve_lp_guided(pb: Problem, time_limit: float = 30.0, size: int = NEIGHBOURHOOD):
    """Large instances: solve the LP relaxation, keep the sites it places whole, and let
    the MILP decide only about `size` sites: the fractional ones and their nearest in
    value density on each side. Returns (assignment, lower bound on the optimum) or None."""
    t0 = time.perf_counter()
    lp = solve_milp(pb, time_limit, relax=True)
    if lp is None:
        return None
    x, _, bound = lp
    assign = x.argmax(axis=1)
    fractional = np.nonzero(x.max(axis=1) < 1 - 1e-6)[0]
    saving = pb.cost[:, pb.default] - pb.cost.min(axis=1)
    order = np.argsort(-saving / np.maximum(pb.demand.max(axis=1), 1.0), kind="stable")
    rank = np.empty(pb.n, int)
    rank[order] = np.arange(pb.n)
    free = np.zeros(pb.n, bool)
    neighbours = max(3, size // (2 * max(len(fractional), 1) + 1))
    for r in rank[fractional]:
        free[order[max(0, r - neighbours) : r + neighbours + 1]] = True
    # Rounded fractional sites may overflow: start them on the default (always room).
    assign[fractional] = pb.default
    idx = np.nonzero(free)[0]
    if idx.size:
        sub = pb.subproblem(idx, assign)
        got = solve_milp(sub, time_limit - (time.perf_counter() - t0))
        if got is None:
            return None
        assign[idx] = got[0]
    return assign, bound


def brute_force(pb: Problem) -> tuple[np.ndarray, float] | None:
    """Every assignment tried (tests only: m**n of them)."""
    import itertools

    best = None
    for combo in itertools.product(range(pb.m), repeat=pb.n):
        a = np.array(combo, dtype=int)
        if pb.feasible(a):
            t = pb.total(a)
            if best is None or t < best[1] - 1e-9:
                best = (a, t)
    return best


# ---- the advisor ------------------------------------------------------------------------


def choose_default(devices: Sequence[Device], model: str) -> int:
    """The device that takes whatever no rule places: the cheapest one without a capacity."""
    free = [i for i, d in enumerate(devices) if d.capacity is None]
    if not free:
        raise UserError(
            "every device has a capacity: name one without (e.g. --device system=system,latency=NS) "
            "to take what does not fit"
        )
    return min(free, key=lambda i: sum(devices[i].line_costs(model)))


def advise(
    sites: Sequence[Site],
    devices: Sequence[Device],
    model: str = "latency",
    method: str = "auto",
    default: str | None = None,
    time_limit: float = 3.0,
    shared: SharedMemory | None = None,
) -> Advice:
    """Assign every site to one device; see the module docstring for the model.

    method: "milp" (exact), "greedy" (value density) or "auto" (milp unless the input
    is very large, greedy if the solver finds nothing in `time_limit` seconds).
    shared: the memory the limited devices share with the page cache of the page-cache
    devices (advisor/page_cache.py); the plan then pins only what gains given that budget.
    """
    t0 = time.perf_counter()
    if not devices:
        raise UserError("no devices to place on")
    names = [d.name for d in devices]
    if len(set(names)) != len(names):
        raise UserError(f"device names repeat: {', '.join(names)}")
    if default is None:
        di = choose_default(devices, model)
    elif default in names:
        di = names.index(default)
        if devices[di].capacity is not None:
            raise UserError(f"default device {default} has a capacity: the default must take whatever is left")
    else:
        raise UserError(f"default device {default!r} is not one of: {', '.join(names)}")
    pb = build_problem(sites, devices, model, di)
    notes: list[str] = []
    if pb.demand.shape[1] > 1:
        notes.append(f"lifetimes: {pb.demand.shape[1]} distinct windows of concurrently live bytes")
    if any(s.reads is None and s.writes is None for s in sites):
        notes.append("some sites have no access counts: each of their bytes counted as written once")
    notes += sampled_access_notes(sites)
    if method not in ("auto", "milp", "greedy"):
        raise UserError(f"unknown method {method!r} (auto, milp or greedy)")
    if shared is not None and _shares_memory(devices, di):
        return _advise_shared(sites, devices, pb, model, method, time_limit, notes, shared, t0)
    solved, used, optimal, bound = _solve(pb, method, time_limit, notes, t0)
    assign, spilled = _coalesced(sites, devices, pb, solved, model)
    notes += _coalesce_notes(devices, pb, solved, assign)
    beside = frozenset(np.flatnonzero((assign != solved) & (assign != di)).tolist())
    advice = _explain(sites, devices, pb, assign, model, used, optimal, notes, time.perf_counter() - t0,
                      spilled, beside)
    advice.bound = bound
    return advice


def _coalesced(sites, devices: Sequence[Device], pb: Problem, solved: np.ndarray, model: str):
    """Fewer, shorter rules at no modelled cost (advisor/coalesce.py): the assignment and
    its spills, worked out between the two steps and their room kept."""
    assign = coalesce.to_default(pb, solved)
    spilled = spills(sites, devices, pb, assign, model)
    reserved: dict[int, float] = {}
    names = [d.name for d in devices]
    for sp in spilled.values():
        d = names.index(sp.device)
        reserved[d] = reserved.get(d, 0.0) + sp.capacity
    return coalesce.unify([s.identity for s in sites], pb, assign, reserved, frozenset(spilled)), spilled


def _coalesce_notes(devices: Sequence[Device], pb: Problem, solved: np.ndarray, assign: np.ndarray) -> list[str]:
    """What advisor/coalesce.py moved, by device."""
    out = []
    size = pb.demand.max(axis=1, initial=0)
    for d in range(pb.m):
        moved = np.flatnonzero((solved != assign) & (assign == d))
        if not len(moved):
            continue
        if d == pb.default:
            out.append(f"{len(moved)} site(s) that gain nothing where the solver put them moved to {devices[d].name}, "
                       "the default device (no rule, and their room left to others)")
        else:
            out.append(f"{len(moved)} site(s), {format_size(int(size[moved].sum()))} at peak, put on "
                       f"{devices[d].name} beside sites that share their innermost frames, at no modelled "
                       "cost: one shorter rule covers each group")
    return out


def _solve(pb: Problem, method: str, time_limit: float, notes: list[str], t0: float):
    """(assignment, method used, proven optimal, bound) for one problem."""
    assign, used, optimal, bound = None, "greedy", False, None
    nvars = pb.n * pb.m
    if method in ("auto", "milp") and pb.n:
        if method == "milp" or nvars <= EXACT_MAX_VARIABLES:
            got = solve_milp(pb, time_limit)
            if got is None and method == "milp":
                raise UserError(f"the MILP solver found no placement within {time_limit:g} s")
            if got is not None:
                (assign, optimal, bound), used = got, "milp"
        elif nvars <= LP_GUIDED_MAX_VARIABLES:
            got = solve_lp_guided(pb, time_limit)
            if got is not None:
                (assign, bound), used = got, "milp-lp-guided"
                note = f"{pb.n} sites x {pb.m} devices: MILP over the sites the LP relaxation leaves open"
                if note not in notes:
                    notes.append(note)
        else:
            note = f"{pb.n} sites x {pb.m} devices: greedy value-density path"
            if note not in notes:
                notes.append(note)
    if used != "greedy" and time.perf_counter() - t0 >= time_limit:
        # HiGHS is deterministic unless a time limit stops it: say so rather than surprise
        notes.append(f"the solver used its whole time limit ({time_limit:g} s): its best placement so far "
                     "is kept, and a rerun may place differently (raise --time-limit to avoid it)")
    if assign is not None and not pb.feasible(assign):  # numerical slack: never trust blindly
        assign, used, optimal = None, "greedy", False
    greedy = solve_greedy(pb)
    if assign is None or pb.total(greedy) < pb.total(assign) - 1e-9:
        # The greedy answer is always valid; keep it when the solver stopped early on worse.
        assign, optimal = greedy, optimal and assign is None
        used = "greedy" if used == "greedy" else used + "+greedy"
    return assign, used, optimal, bound


def _shares_memory(devices: Sequence[Device], default: int) -> bool:
    """The shared-memory model applies: the default device is a page-cache device and some
    other device is limited memory (what is pinned there is taken from the page cache)."""
    return devices[default].page_cache and any(
        d.capacity is not None and not d.page_cache for d in devices)


def _advise_shared(sites, devices, pb: Problem, model, method, time_limit, notes, shared: SharedMemory,
                   t0) -> Advice:
    """Plans for a few capacities of the fastest limited device and the plan with nothing
    pinned, each costed by the page cache model; the cheapest allowed one is the advice."""
    m = len(devices)
    cached = np.array([d.page_cache for d in devices])
    pinned = np.array([d.capacity is not None and not d.page_cache for d in devices])
    fast = min(np.nonzero(pinned)[0], key=lambda d: sum(devices[d].line_costs(model)))
    cheapest = min(range(m), key=lambda d: sum(devices[d].line_costs(model)))
    rw = np.array([_reads_writes(s) for s in sites], dtype=float).reshape(len(sites), 2) / LINE
    allocated = np.array([float(s.bytes) for s in sites])
    cost = pb.cost.copy()
    hit_cost = pb.cost.copy()
    touches = np.zeros_like(cost)  # the write-back part of each cost: no sample drives it
    for d in np.nonzero(cached)[0]:
        # a resident page is memory like the pinned device's, never cheaper (a measured
        # difference between the two is noise)
        resident = devices[d].resident or devices[cheapest]
        line = np.maximum(resident.line_costs(model), devices[fast].line_costs(model))
        hit_cost[:, d] = rw @ line
        # every page a site allocates there is a new file page: faulted in, dirtied and
        # written back at the device's (cold) write bandwidth, hit or miss
        touch = allocated / devices[d].write_bandwidth * 1e9 if devices[d].write_bandwidth else 0.0
        cost[:, d] += touch
        hit_cost[:, d] += touch
        touches[:, d] = touch
    # written and never read: new file pages, no misses (their cost on the file device is
    # its resident one plus the write-back), for the solver too
    no_miss = np.array([page_cache.written_once(s) for s in sites], dtype=bool)
    for d in np.nonzero(cached)[0]:
        cost[no_miss, d] = hit_cost[no_miss, d]
    pb = Problem(cost, pb.demand, pb.capacity, pb.default)
    # nothing pinned: every site on the default (page-cache) device
    nothing = np.full(pb.n, pb.default)
    base = page_cache.plan_cost(pb, nothing, {}, pinned, cached, hit_cost, shared, no_miss)
    tried = [(base, None, nothing, {}, "milp", True, None)]
    for cap in page_cache.capacity_candidates(pb, fast, hit_cost, shared, no_miss):
        capacity = pb.capacity.copy()
        capacity[fast] = cap
        sub = Problem(pb.cost, pb.demand, capacity, pb.default)
        devs = [replace(d, capacity=cap) if i == fast else d for i, d in enumerate(devices)]
        assign, used, optimal, bound = _solve(sub, method, time_limit, notes, t0)
        spilled = spills(sites, devs, sub, assign, model)
        index = {d.name: i for i, d in enumerate(devs)}
        by_site = {s: (sp.capacity, index[sp.device]) for s, sp in spilled.items()}
        cost = page_cache.plan_cost(sub, assign, by_site, pinned, cached, hit_cost, shared, no_miss)
        tried.append((cost, cap, assign, spilled, used, optimal, bound))
    allowed = [t for t in tried if t[0].allowed] or tried[:1]
    cheapest = min(allowed, key=lambda t: t[0].cost)
    # never modelled worse than nothing pinned (the plan the file device alone makes)
    best = _robust(sites, pb, [t for t in allowed if t[0].cost <= max(base.cost, cheapest[0].cost)], touches)
    cost, cap, assign, spilled, used, optimal, bound = best
    name = devices[fast].name
    dname = devices[pb.default].name
    shown = lambda c: (f"{format_size(c.pinned)} pinned, {format_size(max(shared.total - c.pinned, 0))} page cache "
                       f"for {format_size(c.cached)} on {dname} (hit ratio {c.hit_ratio:.2f}): {format_ns(c.cost)}"
                       + ("" if c.allowed else " (not allowed: no page cache left)"))
    measured = "" if shared.footprint is None else \
        f", the heap's measured peak {format_size(shared.footprint)} capping {dname}'s footprint"
    notes.append(f"page cache model: {name} and {dname}'s page cache share {format_size(shared.total)}, "
                 f"misses slower below {format_size(shared.room)} of cache"
                 f"{f' ({shared.room_from})' if shared.room_from else ''}{measured}; plans compared: nothing pinned: "
                 f"{shown(base)}; " + "; ".join(f"{name} up to {format_size(t[1])}: {shown(t[0])}"
                                               for t in tried[1:]))
    if best is not cheapest:
        notes.append(f"page cache model: the advice pins {format_size(cost.pinned)} ({format_ns(cost.cost)} modelled), "
                     f"not the plan modelled cheapest ({shown(cheapest[0])}): it costs least with every site's "
                     f"accesses at the upper end of their 95% intervals (sites with few access samples)")
    if no_miss.any():
        once = [sites[i] for i in np.nonzero(no_miss)[0]]
        peaks = format_size(sum(x.peak_live_bytes for x in once))
        named = ", ".join(x.label for x in once[:3]) + (", ..." if len(once) > 3 else "")
        notes.append(f"page cache model: {len(once)} site(s) written and never read ({peaks} of site peaks: "
                     f"{named}) never miss on {dname}: new file pages, only written back")
    if cap is None:
        notes.append(f"nothing pinned: under this budget the kernel's page cache serves every site better "
                     f"than memory taken from it ({name} keeps no site)")
        cap = max(page_cache.capacity_candidates(pb, fast, hit_cost, shared, no_miss) or [1 << 20])
        bound = None
    capacity = pb.capacity.copy()
    capacity[fast] = max(cap, 1 << 20)
    chosen = Problem(pb.cost, pb.demand, capacity, pb.default)
    devs = [replace(d, capacity=int(capacity[fast])) if i == fast else d for i, d in enumerate(devices)]
    advice = _explain(sites, devs, chosen, assign, model, used, optimal, notes, time.perf_counter() - t0,
                      spilled=spilled)
    advice.optimal, advice.method = False, f"{used}, page cache model over {len(tried)} plans"
    advice.cost, advice.default_cost = cost.cost, base.cost
    advice.shared = {"total": shared.total, "room": shared.room, "pinned": cost.pinned, "cached": cost.cached,
                     "hit_ratio": cost.hit_ratio, "capacity": int(capacity[fast]), "device": name}
    return advice


def _robust(sites, pb: Problem, allowed: list, touches: np.ndarray):
    """The plan whose cost is lowest when every site's access figures are at the upper
    end of their 95% intervals (page_cache.upper_cost): a site whose figures rest on a
    handful of samples, left on the file device, may miss far more than its point
    estimate says, and pinned it costs little whatever they are. Sampled figures of a
    small site that runs in the shadow of a hot loop's misses rest on few samples (spmv's
    y: 5-18 per profile), and by the point estimates alone whether pinning it beat leaving
    it to the page cache flipped from profile to profile (x and y pinned ran 1.14x the
    file device alone at 50%, x alone 1.02x; docs/benchmarks.md). Exact figures (DHAT)
    and well-sampled ones leave the point estimates' choice as it was."""
    n = pb.n
    samples = np.array([float("inf") if s.sampled is None else
                        float(s.sampled.get("read_samples", 0) + s.sampled.get("write_samples", 0))
                        for s in sites])

    def upper(t) -> float:
        cost, assign, spilled = t[0], t[2], t[3]
        fixed = touches[np.arange(n), assign].copy()  # its pages' write-back: no sample drives it
        for s, sp in spilled.items():
            fixed[s] *= 1 - page_cache.spill_share(pb, s, sp.capacity)
        return page_cache.upper_cost(cost.per_site, fixed, samples)

    return min(allowed, key=lambda t: (upper(t), t[0].cost))


SPILL_MIN = 1 << 20  # leftover room below this is not worth a device of its own


def spills(sites: Sequence[Site], devices: Sequence[Device], pb: Problem, assign: np.ndarray,
           model: str) -> dict[int, Spill]:
    """Leftover room of each limited device (capacity minus its planned peak), fastest
    device first, given to the one site not placed there that gains most from it: the
    site saves on that device, is bigger than the room (else the plan would hold it
    whole), and its average block fits in the room. The model places whole sites; this
    uses what it leaves (a 192 MiB site of eight 24 MiB blocks beside 133 MiB of room:
    five blocks fit)."""
    load = pb.loads(assign)
    limited = [d for d in range(pb.m) if math.isfinite(pb.capacity[d])]
    out: dict[int, Spill] = {}
    names = {dev.name for dev in devices}
    for d in sorted(limited, key=lambda d: sum(devices[d].line_costs(model))):
        if f"{devices[d].name}-spill" in names:  # the policy's name for it is taken
            continue
        room = (pb.capacity[d] - load[d].max(initial=0)) // (1 << 20) * (1 << 20)  # whole MiB
        if room < SPILL_MIN:
            continue
        best, best_saving = None, 0.0
        for i, site in enumerate(sites):
            size = pb.demand[i].max(initial=0)
            gain = pb.cost[i, assign[i]] - pb.cost[i, d]
            block = site.bytes / max(site.allocations, 1)
            if i in out or assign[i] == d or gain <= 0 or size <= room or block > room:
                continue
            if gain * room / size > best_saving:
                best, best_saving = i, gain * room / size
        if best is not None:
            out[best] = Spill(devices[d].name, int(room), best_saving)
    return out


def _explain(sites, devices, pb: Problem, assign, model, method, optimal, notes, seconds,
             spilled: dict[int, Spill] | None = None, beside: frozenset[int] = frozenset()) -> Advice:
    load = pb.loads(assign)
    if spilled is None:
        spilled = spills(sites, devices, pb, assign, model)
    peak = {d.name: int(load[i].max(initial=0)) for i, d in enumerate(devices)}
    size = pb.demand.max(axis=1) if pb.n else np.zeros(0)
    accessed = np.array([sum(_reads_writes(s)) for s in sites], dtype=float)
    density = accessed / np.maximum(size, 1.0)
    dname = devices[pb.default].name
    placements = []
    for s_i, site in enumerate(sites):
        d = int(assign[s_i])
        cost, base = float(pb.cost[s_i, d]), float(pb.cost[s_i, pb.default])
        reason = _reason(pb, s_i, d, devices, load, density[s_i], base, cost, dname)
        if site.sampled is not None and site.sampled.get("few_samples") and (site.accesses or 0) > 0:
            k = site.sampled.get("read_samples", 0) + site.sampled.get("write_samples", 0)
            reason += f"; accesses estimated from {k} sample(s): too uncertain to act on"
        if s_i in beside:
            reason += "; put beside sites that share its innermost frames (no dearer here): one shorter rule"
        spill = spilled.get(s_i)
        if spill is not None:
            reason += (f"; {format_size(spill.capacity)} of its {format_size(pb.demand[s_i].max())} peak on "
                       f"{spill.device} (the room left there; saves about {format_ns(spill.saving)}), "
                       f"the rest on {devices[d].name}")
        placements.append(Placement(site, devices[d].name, cost, base, float(density[s_i]), reason, spill))
    placements.sort(key=lambda p: (-p.density, -p.site.bytes))
    return Advice(
        placements=placements,
        devices=list(devices),
        default=dname,
        model=model,
        method=method,
        optimal=optimal,
        cost=pb.total(assign),
        default_cost=float(pb.cost[:, pb.default].sum()),
        peak=peak,
        seconds=seconds,
        notes=notes,
    )


def _reason(pb: Problem, s: int, d: int, devices, load, density, base, cost, dname) -> str:
    size = int(pb.demand[s].max(initial=0))
    if pb.cost[s].max() - pb.cost[s].min() <= 0:
        return "no accesses recorded: no device is faster for it"
    if d != pb.default:
        saved = base - cost
        pct = 100 * saved / base if base else 0
        where = f"{format_size(size)} peak fits in {devices[d].name}"
        if math.isfinite(pb.capacity[d]):
            where += f" ({format_size(load[d].max())} of {format_size(pb.capacity[d])} used at peak)"
        return f"{density:.3g} accessed B per byte; saves {format_ns(saved)} ({pct:.0f}%) vs {dname}; {where}"
    # On the default device: say why not on each cheaper one.
    why = []
    for e in np.argsort(pb.cost[s]):
        if pb.cost[s, e] >= pb.cost[s, d]:
            break
        over = (load[e] + pb.demand[s]) - pb.capacity[e]
        if np.any(over > 1e-6):
            w = int(np.argmax(over))
            why.append(
                f"{devices[e].name} full ({format_size(load[e][w])} of {format_size(pb.capacity[e])} taken by "
                f"sites worth more; {format_size(pb.demand[s][w])} more would not fit)"
            )
        else:
            why.append(f"{devices[e].name} would save {format_ns(pb.cost[s, d] - pb.cost[s, e])} but was not chosen")
    return f"{density:.3g} accessed B per byte; stays on {dname}: " + "; ".join(why or ["cheapest here"])
