"""Fewer, shorter rules at no modelled cost.

A plan often leaves a site on one device and its siblings (sites whose innermost frames
are the same) on another only because the move makes no difference to the model: a site
with no sampled accesses costs nothing anywhere, so the solver has no reason to put it
beside its siblings, nor on the default device rather than a limited one. The policy then
needs rules as deep as the frame where the siblings part, one per placed sibling, and the
runtime must tell them apart on every allocation (for a dispatch through many callers of
one helper, a walk to the caller's caller and a second lookup).

Two steps, neither of which raises any site's modelled cost or fills a device past its
capacity in any window:
1. a site that gains nothing where the plan put it goes to the default device, which
   needs no rule and has no capacity (room on the limited devices is left for step 2);
2. groups of sites sharing their first k frames (k = 1, 2, ...: the widest groups first;
   at one k the group with the fewest bytes to move first, so that cheap unifications
   are not crowded out by one big one) go to one device when every moved site costs no
   more there and it fits: the default device first, then the others by how many of the
   group's sites they hold. One shorter rule then covers the group.
Sites a spill serves (solver.spills: part of the site on another device's leftover
room) are not moved, nor are their groups: their rule names the spill's device; and the
spills' room is kept.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> pb = SimpleNamespace(cost=np.array([[1., 5.], [0., 0.], [0., 0.]]), default=1, m=2,
    ...                      demand=np.array([[8.], [8.], [8.]]), capacity=np.array([32., np.inf]),
    ...                      loads=lambda a: np.array([[8. * (a == d).sum()] for d in (0, 1)]))
    >>> keys = [(("a", 1), ("b", 1)), (("a", 1), ("b", 2)), (("a", 1), ("b", 3))]
    >>> unify(keys, pb, to_default(pb, np.array([0, 1, 1])))
    array([0, 0, 0])
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

RELATIVE = 1e-9  # cost differences below this share of a site's cost are rounding


def to_default(pb, assign: np.ndarray) -> np.ndarray:
    """Step 1: every site that gains nothing where the plan put it, on the default device."""
    assign = np.array(assign, copy=True)
    idle = np.flatnonzero(assign != pb.default)
    gains_nothing = pb.cost[idle, pb.default] <= pb.cost[idle, assign[idle]] * (1 + RELATIVE)
    assign[idle[gains_nothing]] = pb.default
    return assign


def unify(identities: Sequence[tuple], pb, assign: np.ndarray,
          reserved: Mapping[int, float] | None = None,
          fixed: frozenset[int] = frozenset()) -> np.ndarray:
    """Step 2: groups of sites sharing their first frames on one device, as above.
    `identities`: each site's frames as keys, innermost first; `pb`: the solver's Problem;
    `reserved`: bytes of a device's room taken in every window (spills), by device index;
    `fixed`: sites not to move (spilled), whose groups are left as they are."""
    assign = np.array(assign, copy=True)
    cost, demand, default = pb.cost, pb.demand, pb.default
    load = pb.loads(assign)
    for d, b in (reserved or {}).items():
        load[d] += b
    room = pb.capacity[:, None] + 1e-6
    size = demand.max(axis=1, initial=0)
    for k in range(1, max((len(key) for key in identities), default=0) + 1):
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(identities):
            if len(key) >= k:
                groups.setdefault(key[:k], []).append(i)
        mixed = [(float(size[members].sum()), key, np.array(members)) for key, members in groups.items()
                 if len(set(assign[members].tolist())) > 1 and not fixed.intersection(members)]
        for _, _, idx in sorted(mixed, key=lambda g: (g[0], g[1])):
            counts = np.bincount(assign[idx], minlength=pb.m)
            if np.count_nonzero(counts) < 2:
                continue  # unified by an earlier group's move
            for d in [default] + [int(d) for d in np.argsort(-counts, kind="stable") if d != default and counts[d]]:
                movers = idx[assign[idx] != d]
                now = cost[movers, assign[movers]]
                if np.any(cost[movers, d] > now + RELATIVE * np.abs(now)):
                    continue
                add = demand[movers].sum(axis=0)
                if np.any(load[d] + add > room[d]):
                    continue
                np.subtract.at(load, assign[movers], demand[movers])
                load[d] += add
                assign[movers] = d
                break
    return assign
