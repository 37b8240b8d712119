"""Many process images at once (the cores of a crashed MPI job, or several pids): read in
parallel, threads grouped by identical values, as LLNL's STAT groups stacks.

    v_state = 3 in 3,998 threads; = 7 in 2: core.17 tid 4242, core.503 tid 9911

Each image is opened and read in a worker process of its own (`workers` at a time, one
per CPU by default); a bad image stops the whole read with its one-line error.

>>> results = read_many(["core.1", "core.2"], ["t_state"])            # doctest: +SKIP
>>> [(g.text, g.count) for g in group_values(results)[0].groups]     # doctest: +SKIP
[('3', 3998), ('7', 2)]
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from memplace.errors import UserError


@dataclass
class ImageValues:
    """One image's threads and their TLS values (what tls_values returns), by source."""

    source: str  # core path or pid
    where: str
    rows: list  # [(Thread, [VarValue, ...]), ...]
    notes: list[str] = field(default_factory=list)


@dataclass
class ValueGroup:
    """Threads in which a variable has the same value (or the same reason for none)."""

    state: str
    value: object
    text: str
    threads: list[tuple[str, int]] = field(default_factory=list)  # (source, tid)

    @property
    def count(self) -> int:
        return len(self.threads)


@dataclass
class VariableGroups:
    module: str
    name: str
    type: str
    groups: list[ValueGroup] = field(default_factory=list)  # largest first


def read_one(source: str, names: list[str] | None, exe: str | None, sysroot: str | None,
             is_pid: bool) -> ImageValues:
    """Open one core (or pid) and read its TLS values; importable by worker processes."""
    from memplace.postmortem.tls import tls_values

    if is_pid:
        from memplace.postmortem.live import open_pid

        target = open_pid(int(source))
    else:
        from memplace.postmortem.target import open_core

        target = open_core(source, exe=exe, sysroot=sysroot)
    return ImageValues(source, target.where, tls_values(target, names), target.notes)


def _read_one_safe(args) -> ImageValues | str:
    try:
        return read_one(*args)
    except UserError as e:  # crosses the process boundary as text
        return str(e)


def read_many(sources: list[str], names: list[str] | None = None, exe: str | None = None,
              sysroot: str | None = None, is_pid: bool = False, workers: int | None = None,
              progress=None) -> list[ImageValues]:
    """Every image's TLS values, in the order given; `progress(done, total)` after each."""
    jobs = [(s, names, exe, sysroot, is_pid) for s in sources]
    workers = min(workers or os.cpu_count() or 1, len(jobs))
    if workers <= 1:
        out = []
        for i, j in enumerate(jobs):
            out.append(read_one(*j))
            if progress:
                progress(i + 1, len(jobs))
        return out
    from concurrent.futures import ProcessPoolExecutor

    results: list = [None] * len(jobs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        futures = {pool.submit(_read_one_safe, j): i for i, j in enumerate(jobs)}
        from concurrent.futures import as_completed

        for done, f in enumerate(as_completed(futures), 1):
            r = f.result()
            if isinstance(r, str):
                for other in futures:
                    other.cancel()
                raise UserError(r)
            results[futures[f]] = r
            if progress:
                progress(done, len(jobs))
    return results


def group_values(images: list[ImageValues]) -> list[VariableGroups]:
    """Per variable (module, name), the threads of all images grouped by identical value."""
    by_var: dict[tuple[str, str], VariableGroups] = {}
    groups: dict[tuple, ValueGroup] = {}
    for img in images:
        for th, vals in img.rows:
            for v in vals:
                vg = by_var.get((v.module, v.name))
                if vg is None:
                    vg = by_var[(v.module, v.name)] = VariableGroups(v.module, v.name, v.type)
                key = (v.module, v.name, v.state, v.text)
                g = groups.get(key)
                if g is None:
                    g = groups[key] = ValueGroup(v.state, v.value, v.text)
                    vg.groups.append(g)
                g.threads.append((img.source, th.tid))
    for vg in by_var.values():
        vg.groups.sort(key=lambda g: -g.count)
    return list(by_var.values())
