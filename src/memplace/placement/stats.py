"""Run statistics: the per-process files the runtime writes at exit, turned into one JSON
document (`memplace run --stats OUT.json`).

Runtime file format (one per process, `stats.<pid>.txt`):
    memplace-stats 1
    pid <pid>
    device <idx> <allocations> <bytes> <live> <peak> <full> <bind> <backing> <alignment> <name>
    reserve <idx> <bytes> <grown>      (address space the device holds; extents it grew into)
    rule <idx> <hits> <bytes> <name>
    end
or, for a process whose placement could not start:
    memplace-stats 1
    pid <pid>
    unplaced <ran> <why>                (ran 1: it ran without placement; 0: memplace run stopped it)
    end
A source line with several address ranges is several compiled rules with one name: they
are summed here under that name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from memplace.errors import UserError

FALLBACK_REASONS = ("full", "bind_failed", "backing_failed", "alignment")


def parse_process(text: str, origin: str) -> dict:
    lines = text.splitlines()
    if not lines or lines[0] != "memplace-stats 1" or lines[-1] != "end":
        raise UserError(f"{origin}: not a complete memplace runtime stats file")
    proc = {"pid": None, "placing": True, "devices": [], "rules": {}}
    for line in lines[1:-1]:
        kind, _, rest = line.partition(" ")
        if kind == "pid":
            proc["pid"] = int(rest)
        elif kind == "device":
            fields = rest.split(" ", 9)
            nums = [int(x) for x in fields[:9]]
            proc["devices"].append({
                "name": fields[9], "allocations": nums[1], "bytes": nums[2],
                "live_at_exit": nums[3], "peak": nums[4],
                "fallbacks": dict(zip(FALLBACK_REASONS, nums[5:9])),
            })
        elif kind == "reserve":
            idx, nbytes, grown = (int(x) for x in rest.split(" ", 2))
            if 0 <= idx < len(proc["devices"]):
                proc["devices"][idx].update(reserved=nbytes, grown=grown)
        elif kind == "unplaced":
            ran, _, why = rest.partition(" ")
            proc.update(placing=False, ran=ran == "1", reason=why)
        elif kind == "rule":
            idx, hits, nbytes, *name = rest.split(" ", 3)
            label = name[0] if name and name[0] else f"rule {idx}"
            r = proc["rules"].setdefault(label, {"name": label, "hits": 0, "bytes": 0})
            r["hits"] += int(hits)
            r["bytes"] += int(nbytes)
    proc["rules"] = list(proc["rules"].values())
    return proc


def collect(stats_dir: str | os.PathLike) -> list[dict]:
    """Every process's stats in `stats_dir`, in pid order."""
    procs = [parse_process(p.read_text(errors="replace"), str(p))
             for p in sorted(Path(stats_dir).glob("stats.*.txt"))]
    return sorted(procs, key=lambda p: p["pid"] or 0)


def totals(procs: list[dict]) -> dict:
    """Devices and rules summed over processes (peaks: the largest single-process peak)."""
    devices: dict[str, dict] = {}
    rules: dict[str, dict] = {}
    for proc in procs:
        for d in proc["devices"]:
            t = devices.setdefault(d["name"], {"name": d["name"], "allocations": 0, "bytes": 0,
                                               "peak": 0,
                                               "fallbacks": dict.fromkeys(FALLBACK_REASONS, 0)})
            t["allocations"] += d["allocations"]
            t["bytes"] += d["bytes"]
            t["peak"] = max(t["peak"], d["peak"])
            for k, v in d["fallbacks"].items():
                t["fallbacks"][k] += v
        for r in proc["rules"]:
            t = rules.setdefault(r["name"], {"name": r["name"], "hits": 0, "bytes": 0})
            t["hits"] += r["hits"]
            t["bytes"] += r["bytes"]
    return {"devices": list(devices.values()), "rules": list(rules.values())}


def write_report(out: str | os.PathLike, command: list[str], policy: str, returncode: int,
                 procs: list[dict]) -> None:
    doc = {"version": 1, "command": command, "policy": policy, "returncode": returncode,
           "processes": procs, "totals": totals(procs)}
    tmp = f"{out}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, out)
