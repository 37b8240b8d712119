"""Fewer, shorter rules at no modelled cost.

A plan often leaves a site on one device and its siblings (sites whose innermost frames
are the same) on another only because the move makes no difference to the model: a site
with no sampled accesses costs nothing anywhere, so the solver has no reason to put it
beside its siblings. The policy then needs rules as deep as the frame where the siblings
part, one per placed sibling, and the runtime must tell them apart on every allocation
(for a dispatch through many callers of one helper, a walk to the caller's caller and a
second lookup). Moving the odd ones out to their siblings' device, where that costs
nothing and fits, lets one shorter rule cover the whole group.

Groups are taken by the length of their shared frames, shortest first, so the widest group
that can be unified is. A move is taken only when no moved site costs more on its new
device than where the plan put it, and the device still holds every window's live bytes:
the plan's modelled cost never rises and it stays feasible.

    >>> import numpy as np
    >>> from types import SimpleNamespace
    >>> pb = SimpleNamespace(cost=np.array([[1., 5.], [0., 0.], [0., 0.]]),
    ...                      demand=np.array([[8.], [8.], [8.]]), capacity=np.array([32., np.inf]),
    ...                      loads=lambda a: np.array([[8. * (a == d).sum()] for d in (0, 1)]))
    >>> keys = [(("a", 1), ("b", 1)), (("a", 1), ("b", 2)), (("a", 1), ("b", 3))]
    >>> coalesce(keys, pb, np.array([0, 1, 1]))
    (array([0, 0, 0]), 2)
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

RELATIVE = 1e-9  # cost differences below this share of a site's cost are rounding


def coalesce(identities: Sequence[tuple], pb, assign: np.ndarray) -> tuple[np.ndarray, int]:
    """(the assignment with groups of sites sharing their innermost frames put on one
    device where no moved site costs more and every window fits, how many sites moved).
    `identities`: each site's frames as keys, innermost first; `pb`: the solver's Problem."""
    assign = np.array(assign, copy=True)
    if len(assign) < 2:
        return assign, 0
    load = pb.loads(assign)
    room = pb.capacity[:, None] + 1e-6
    cost, demand = pb.cost, pb.demand
    moved = 0
    for k in range(1, max(len(key) for key in identities) + 1):
        groups: dict[tuple, list[int]] = {}
        for i, key in enumerate(identities):
            if len(key) >= k:
                groups.setdefault(key[:k], []).append(i)
        for members in groups.values():
            idx = np.array(members)
            counts = np.bincount(assign[idx], minlength=cost.shape[1])
            if np.count_nonzero(counts) < 2:
                continue
            for d in np.argsort(-counts, kind="stable"):  # the majority's device first
                if counts[d] == 0:
                    break
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
                moved += len(movers)
                break
    return assign, moved
