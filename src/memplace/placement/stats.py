"""Run statistics: the per-process files the runtime writes at exit, turned into one JSON
document (`memplace run --stats OUT.json`).

Runtime file format (one per process, `stats.<pid>.txt`):
    memplace-stats 1
    pid <pid>
    device <idx> <allocations> <bytes> <live> <peak> <full> <bind> <backing> <alignment> <name>
    rule <idx> <hits> <bytes> <name>
    end
A source line with several address ranges is several compiled rules with one name: they
are summed here under that name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from memplace.errors import UserError
from memplace.inputs import STATS_LIMIT, read_bytes
from memplace.units import U64_MAX

FALLBACK_REASONS = ("full", "bind_failed", "backing_failed", "alignment")


def _counts(fields: list[str], origin: str, line: str) -> list[int]:
    if not all(f.isascii() and f.isdigit() and len(f) <= 20 for f in fields) or \
            any(int(f) > U64_MAX for f in fields):
        raise UserError(f"{origin}: corrupt line {line[:60]!r}: counts must be integers in 0..2^64-1")
    return [int(f) for f in fields]


def parse_process(text: str, origin: str) -> dict:
    """One runtime stats file; UserError naming it for anything but what the runtime writes."""
    lines = text.splitlines()
    if not lines or lines[0] != "memplace-stats 1" or lines[-1] != "end":
        raise UserError(f"{origin}: not a complete memplace runtime stats file")
    proc = {"pid": None, "devices": [], "rules": {}}
    for line in lines[1:-1]:
        kind, _, rest = line.partition(" ")
        if kind == "pid":
            proc["pid"] = _counts([rest], origin, line)[0]
        elif kind == "device":
            fields = rest.split(" ", 9)
            if len(fields) != 10:
                raise UserError(f"{origin}: corrupt line {line[:60]!r}: a device has 9 counts and a name")
            nums = _counts(fields[:9], origin, line)
            proc["devices"].append({
                "name": fields[9], "allocations": nums[1], "bytes": nums[2],
                "live_at_exit": nums[3], "peak": nums[4],
                "fallbacks": dict(zip(FALLBACK_REASONS, nums[5:9])),
            })
        elif kind == "rule":
            fields = rest.split(" ", 3)
            if len(fields) < 3:
                raise UserError(f"{origin}: corrupt line {line[:60]!r}: a rule has 3 counts and a name")
            idx, hits, nbytes = _counts(fields[:3], origin, line)
            label = fields[3] if len(fields) > 3 and fields[3] else f"rule {idx}"
            r = proc["rules"].setdefault(label, {"name": label, "hits": 0, "bytes": 0})
            r["hits"] += hits
            r["bytes"] += nbytes
        # other kinds of line: left for the readers of a newer runtime's additions
    proc["rules"] = list(proc["rules"].values())
    return proc


def collect(stats_dir: str | os.PathLike) -> list[dict]:
    """Every process's stats in `stats_dir`, in pid order."""
    procs = [parse_process(read_bytes(p, "runtime stats file", STATS_LIMIT).decode("utf-8", "replace"), str(p))
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
