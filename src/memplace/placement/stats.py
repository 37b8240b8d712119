"""Run statistics: the per-process files the runtime writes, turned into one JSON document
(`memplace run --stats OUT.json`).

Runtime file format, one per process image (`stats.<pid>.txt`; `stats.<pid>.<n>.txt` for
the n-th later image of the same pid, after an exec):
    memplace-stats 2
    pid <pid>
    parent <ppid>
    began start|fork                 # a new image (the run's command, an exec, a spawn) or a fork
    exe <path>
    inherited device <idx> <allocations> <bytes> <full> <bind> <backing> <alignment>   # fork only:
    inherited rule <idx> <hits> <bytes>          # the parent's counts the child started with
    inherited unwinds <n> [<relative>]
    aside <pid> <reason> <path>[TAB<script interpreter>]   # any number, as they happen
    device <idx> <allocations> <bytes> <live> <peak> <full> <bind> <backing> <alignment> <name>
    reserve <idx> <bytes> <grown>      (address space the device holds; extents it grew into)
    rule <idx> <hits> <bytes> <name>
    unwinds <n> [<relative>]           (allocations whose site took a whole walk: the caches missed;
                                        and whose site a walk made at another depth gave)
    ended exit|_exit|quick_exit [<status>] | ended exec <path>
    end
The header is written when the image starts, the counts and `ended` when it ends (exit,
_exit, exec): a file without `end` is a process that ended without running any of that,
killed by a signal as far as the runtime can tell. A source line with several address
ranges is several compiled rules with one name: they are summed here under that name.
`aside` names a program the runtime stepped aside for (launch/program.py's reasons).
A process whose placement could not start writes the header and `unplaced <ran> <why>`
(ran 1: it ran without placement; 0: memplace run stopped it before its main), then `end`.
"""

from __future__ import annotations

import json
import os
import re
from contextlib import contextmanager
from pathlib import Path

from memplace.errors import UserError
from memplace.inputs import STATS_LIMIT, parse_json, read_bytes
from memplace.units import U64_MAX

FALLBACK_REASONS = ("full", "bind_failed", "backing_failed", "alignment")
FORMAT_VERSION = 2
NO_FINAL_COUNTS = "ended without final counts (killed by a signal?)"


def aside_reason(token: str) -> str:
    """The runtime's word for why it stepped aside, as the launcher says it."""
    from memplace.launch import program

    if token.startswith("machine="):
        machine, _, bits = token[len("machine="):].partition(":")
        return program.why_machine(int(machine) if machine.isdigit() else -1,
                                   int(bits) if bits.isdigit() else None)
    if token.startswith("loader"):
        return program.why_loader(token.partition("=")[2] or "?")
    return program.WHY.get(token, f"cannot host the runtime ({token})")


def _count(field: str) -> int:
    """A count of the runtime's: a decimal in 0..2^64-1 (ValueError otherwise)."""
    if not (field.isascii() and field.isdigit() and len(field) <= 20) or int(field) > U64_MAX:
        raise ValueError(field)
    return int(field)


def _walks(fields: str) -> list[int]:
    """`unwinds`' counts: whole walks, and walks found made at another depth (absent from
    the files of runtimes before it: 0)."""
    counts = [_count(f) for f in fields.split(" ")]
    if not 1 <= len(counts) <= 2:
        raise ValueError(fields)
    return counts + [0] * (2 - len(counts))


def parse_process(text: str, origin: str) -> dict:
    """One runtime stats file; UserError naming it for anything but what the runtime writes."""
    lines = text.splitlines()
    head = lines[0] if lines else ""
    if not head.startswith("memplace-stats "):
        raise UserError(f"{origin}: not a memplace runtime stats file")
    version = head.partition(" ")[2]
    if version != str(FORMAT_VERSION):
        raise UserError(f"{origin}: runtime stats format version {version}; this memplace reads "
                        f"version {FORMAT_VERSION} (the runtime and memplace come from different installs)")
    complete = lines[-1] == "end"
    proc = {"pid": None, "parent": None, "began": None, "exe": None, "ended": None, "status": None,
            "exec": None, "complete": complete, "placing": True, "devices": [], "rules": {},
            "stepped_aside": []}
    inherited_devices: dict[int, list[int]] = {}
    inherited_rules: dict[int, list[int]] = {}
    inherited_unwinds = [0, 0]
    try:
        for line in lines[1:-1 if complete else None]:
            kind, _, rest = line.partition(" ")
            if kind == "inherited" and rest.startswith("unwinds "):
                inherited_unwinds = _walks(rest.partition(" ")[2])
            elif kind == "inherited":
                what, idx, *nums = rest.split(" ")
                (inherited_devices if what == "device" else inherited_rules)[_count(idx)] = [_count(x) for x in nums]
            elif kind in ("pid", "parent"):
                proc[kind] = int(rest)
            elif kind in ("began", "exe"):
                proc[kind] = rest
            elif kind == "aside":
                pid, reason, where = rest.split(" ", 2)
                path, _, interp = where.partition("\t")
                proc["stepped_aside"].append({"pid": int(pid), "path": path, "interpreter": interp or None,
                                              "reason": aside_reason(reason)})
            elif kind == "unplaced":
                ran, _, why = rest.partition(" ")
                proc.update(placing=False, ran=ran == "1", reason=why)
            elif not complete:
                continue  # counts cut short: not trusted
            elif kind == "device":
                fields = rest.split(" ", 9)
                nums = [_count(x) for x in fields[:9]]
                base = inherited_devices.get(nums[0])
                if base:  # a forked child: only what it did itself
                    nums[1] -= base[0]
                    nums[2] -= base[1]
                    nums[5:9] = [n - b for n, b in zip(nums[5:9], base[2:6])]
                proc["devices"].append({
                    "name": fields[9], "allocations": nums[1], "bytes": nums[2],
                    "live_at_exit": nums[3], "peak": nums[4],
                    "fallbacks": dict(zip(FALLBACK_REASONS, nums[5:9])),
                })
            elif kind == "reserve":
                idx, nbytes, grown = (int(x) for x in rest.split(" ", 2))
                if 0 <= idx < len(proc["devices"]):
                    proc["devices"][idx].update(reserved=nbytes, grown=grown)
            elif kind == "rule":
                idx, hits, nbytes, *name = rest.split(" ", 3)
                label = name[0] if name and name[0] else f"rule {idx}"
                r = proc["rules"].setdefault(label, {"name": label, "hits": 0, "bytes": 0})
                base = inherited_rules.get(int(idx), [0, 0])
                r["hits"] += _count(hits) - base[0]
                r["bytes"] += _count(nbytes) - base[1]
            elif kind == "unwinds":
                walks = _walks(rest)
                proc["unwinds"] = walks[0] - inherited_unwinds[0]
                proc["relative_walks"] = walks[1] - inherited_unwinds[1]
            elif kind == "ended":
                how, _, more = rest.partition(" ")
                proc["ended"] = how
                if how == "exec":
                    proc["exec"] = more
                elif more:
                    proc["status"] = int(more)
    except (ValueError, IndexError):
        raise UserError(f"{origin}: a malformed line in a memplace runtime stats file") from None
    if not complete:
        proc["ended"] = "unknown"
        proc["note"] = NO_FINAL_COUNTS
    proc["rules"] = list(proc["rules"].values())
    return proc


def _image(path: Path) -> tuple[int, int]:
    """stats.<pid>.txt is a pid's first image, stats.<pid>.<n>.txt its n-th later one."""
    m = re.fullmatch(r"stats\.(\d+)(?:\.(\d+))?\.txt", path.name)
    return (int(m.group(1)), int(m.group(2) or 0)) if m else (-1, 0)


def collect(stats_dir: str | os.PathLike, command_pid: int | None = None,
            returncode: int | None = None) -> list[dict]:
    """Every process image's stats in `stats_dir`, in pid order, then exec order. The
    command's own pid (`command_pid`) and how it ended (`returncode`, negative: killed by
    that signal) complete what its last image could not say."""
    files = sorted((p for p in Path(stats_dir).glob("stats.*.txt") if _image(p)[0] >= 0), key=_image)
    procs = []
    for path in files:
        proc = parse_process(read_bytes(path, "runtime stats file", STATS_LIMIT).decode("utf-8", "replace"), str(path))
        proc["image"] = _image(path)[1]
        prev = procs[-1] if procs else None
        if proc["began"] == "start" and prev and prev["pid"] == proc["pid"] and prev["ended"] == "exec":
            proc["began"] = "exec"
        procs.append(proc)
    if command_pid is not None and returncode is not None:
        mine = [p for p in procs if p["pid"] == command_pid]
        last = mine[-1] if mine else None
        if last is not None and last["ended"] == "unknown":
            # the runtime could not write; the command's wait status says what happened
            if returncode < 0:
                last["ended"], last["signal"] = "signal", -returncode
                last["note"] = f"killed by signal {-returncode}; ended without final counts"
            else:
                last["status"] = returncode
                last["note"] = (f"exited with status {returncode} without final counts (a way out "
                                "the runtime does not see, such as a raw exit_group system call)")
        elif last is not None and last["complete"] and last["status"] is None and returncode >= 0 \
                and last["ended"] != "exec":
            last["status"] = returncode
    return procs


def without_runtime(pid: int, exe: str, returncode: int, reason: str) -> dict:
    """The record of a command `memplace run` ran without the runtime (its policy places
    nothing): what collect() gives for a process whose placement did not start but ran."""
    killed = returncode < 0
    return {"pid": pid, "parent": os.getpid(), "began": "start", "exe": exe, "image": 0,
            "ended": "signal" if killed else "exit", "status": None if killed else returncode,
            "exec": None, "complete": True, "placing": False,
            "ran": True, "reason": reason, "devices": [], "rules": [], "stepped_aside": [],
            **({"signal": -returncode, "note": f"killed by signal {-returncode}"} if killed else {})}


def how_ended(proc: dict) -> str:
    """'exit 0', '_exit 3', 'exec /bin/ls', 'killed by signal 9; ...', or the no-counts note."""
    ended = proc.get("ended")
    if ended == "exec":
        return f"exec {proc.get('exec') or '?'}"
    if ended in (None, "unknown") or ended == "signal":
        return proc.get("note") or NO_FINAL_COUNTS
    status = proc.get("status")
    return f"{ended} {status}" if status is not None else f"{ended} (status not seen)"


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
    return {"devices": list(devices.values()), "rules": list(rules.values()),
            "unwinds": sum(p.get("unwinds", 0) for p in procs),
            "relative_walks": sum(p.get("relative_walks", 0) for p in procs)}


def write_report(out: str | os.PathLike, command: list[str], policy: str, returncode: int,
                 procs: list[dict]) -> None:
    """The run's statistics document. The ranks of an MPI job, each run by its own memplace
    with the same --stats file, write one document together: each adds its processes
    (marked with its rank) to what the others of the same job wrote before it."""
    from memplace.launch.mpi import in_job, job_key, mpi_rank
    from memplace.output_files import write_whole

    rank = mpi_rank()
    if rank is not None:
        procs = [{**p, "rank": rank} for p in procs]
    ranks = {str(rank): returncode} if rank is not None else {}
    job = job_key() if in_job() else None
    with _directory_locked(os.path.dirname(os.path.abspath(out))):
        before = _same_job(out, job)
        if before:
            procs = before["processes"] + procs
            ranks = {**before.get("ranks", {}), **ranks}
            returncode = returncode or before.get("returncode", 0)
        aside = [{**a, "by": p["pid"]} for p in procs for a in p.get("stepped_aside", [])]
        doc = {"version": 2, "command": command, "policy": policy, "returncode": returncode,
               "job": job, "ranks": ranks, "processes": procs, "stepped_aside": aside,
               "totals": totals(procs)}
        write_whole(out, json.dumps(doc, indent=2) + "\n")


def _same_job(path: str | os.PathLike, job: str | None) -> dict | None:
    """The document at `path` if an earlier rank of the same job wrote it."""
    if not job:
        return None
    try:  # a FIFO, a device or a deeply nested file here is not an earlier rank's document
        doc = parse_json(read_bytes(path, "stats file", STATS_LIMIT), os.fspath(path), "stats file")
    except (UserError, ValueError):
        return None
    ok = isinstance(doc, dict) and doc.get("job") == job and isinstance(doc.get("processes"), list)
    return doc if ok else None


@contextmanager
def _directory_locked(directory: str):
    """flock on the directory: ranks finishing together add their processes one at a time
    (where the filesystem cannot lock, they go on unlocked)."""
    import fcntl

    fd = None
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, fcntl.LOCK_EX)
    except OSError:
        pass
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)  # closing releases the lock
