"""The runtime profiling engine: run a program with the runtime recording every
allocation site, and turn the runtime's per-process files into profiles
(memplace.profile), with module-relative frames that are stable across runs.

Runtime file format (runtime/modes/profile.c), one per process, `profile.<pid>.txt`:
    memplace-profile 1
    pid <pid> / rank <rank|-> / clock_ns <n> / window_ns <n> / windows <n> / untracked <n>
    peak_live_total <n>                                  (the process's peak live bytes)
    exe <path of the main program>
    modules <era>                                        (a snapshot: the loader's unloads)
    module <base> <lo> <hi> <build-id|-> <path>        ("" path: the main program)
    sampling <on|off|failed|stopped> rate <n> signal <n> cpu_ns <n> samples <n> ...
    sampling_why <text>                                  (when not on)
    site <id> <nframes> <addr>... counts <allocs> <frees> <bytes> <live> <peak> usable <peak usable>
         life <sum> <min> <max> hist [<bucket> <count>]... timeline [<peak live>]...
         [at_peak [<live when the heap peaked>]...]   (where it differs from timeline)
         [access <samples r w> <weights r w> <sampled bytes r w>
          read_bytes [..] read_samples [..] write_bytes [..] write_samples [..]]
         [era <n>]                        (first seen after n unloads: that era's modules)
    end

The access figures become estimates in profiling/access_estimate.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

from memplace.profiling import access_estimate
from memplace.profiling import profile as prof
from memplace.errors import UserError


def _parse(text: str, origin: str) -> dict:
    lines = text.splitlines()
    if not lines or lines[0] != "memplace-profile 1" or lines[-1] != "end":
        raise UserError(f"{origin}: not a complete memplace runtime profile "
                        "(the process may have been killed by SIGKILL)")
    out = {"modules": [], "sites": [], "exe": ""}
    era = 0  # of the snapshot whose modules follow ("modules ERA"; older files: none)
    for line in lines[1:-1]:
        key, _, rest = line.partition(" ")
        if key in ("pid", "clock_ns", "window_ns", "windows", "untracked", "peak_live_total"):
            out[key] = int(rest)
        elif key == "rank":
            out["rank"] = None if rest == "-" else int(rest) if rest.isdigit() else None
        elif key == "exe":
            out["exe"] = rest
        elif key == "modules":
            era = int(rest)
        elif key == "module":
            base, lo, hi, build_id, *path = rest.split(" ", 4)
            out["modules"].append((int(base, 16), int(lo, 16), int(hi, 16),
                                   None if build_id == "-" else build_id, path[0] if path else "",
                                   era))
        elif key == "site":
            out["sites"].append(_parse_site(rest))
        elif key == "sampling":
            words = rest.split()
            out["sampling"] = {"state": words[0], **{k: int(v) for k, v in zip(words[1::2], words[2::2])}}
        elif key == "sampling_why":
            out["sampling_why"] = rest
    return out


_SECTIONS = ("counts", "usable", "life", "hist", "timeline", "at_peak", "access", "read_bytes", "read_samples",
             "write_bytes", "write_samples", "era")
# "site ID NFRAMES FRAME... counts N... usable N... timeline N... ...": split at the section
# names, each section's numbers then converted at once (a 20,000-site profile has millions)
_SECTION_SPLIT = re.compile(r" (%s)(?= |$)" % "|".join(_SECTIONS))


def _parse_site(rest: str) -> dict:
    head, *parts = _SECTION_SPLIT.split(rest)
    words = head.split()
    nframes = int(words[1])
    site: dict = {"frames": [int(a, 16) for a in words[2:2 + nframes]]}
    site.update((k, []) for k in _SECTIONS)
    for name, numbers in zip(parts[0::2], parts[1::2]):
        site[name].extend(map(int, numbers.split()))
    return site


def _frame(address: int, era: int, modules: list[tuple]) -> prof.Frame:
    """The module of `address` among those of the site's era (a dlclose begins a new one:
    an unloaded module's addresses may be another's after it), else among any."""
    for pass_ in (0, 1):
        for base, lo, hi, build_id, path, module_era in modules:
            if lo <= address < hi and (pass_ or module_era == era):
                return prof.Frame(path, build_id, address - base)
    return prof.Frame("[unknown]", None, address)


def _padded(series: list[int], windows: int) -> list[int]:
    """`series` on `windows` windows: its last value held to the end (cut if longer)."""
    return (series + [series[-1] if series else 0] * windows)[:windows]


def convert(text: str, origin: str, command: list[str]) -> prof.Profile:
    """One process's runtime file as a Profile (sites with the same identity merged)."""
    raw = _parse(text, origin)
    # each library by its real path, as the DHAT engine names it (/lib -> /usr/lib, ...)
    modules = [(base, lo, hi, build_id, os.path.realpath(path or raw["exe"]), era)
               for base, lo, hi, build_id, path, era in raw["modules"]]
    sites: dict[tuple, prof.Site] = {}
    sampled: dict[tuple, dict] = {}
    known: dict[tuple, prof.Frame] = {}  # return addresses repeat from site to site
    for s in raw["sites"]:
        allocs, frees, nbytes, _live, peak = s["counts"]
        life_sum, life_min, life_max = s["life"]
        era = s["era"][0] if s["era"] else 0
        frames = tuple(known[era, a] if (era, a) in known
                       else known.setdefault((era, a), _frame(a, era, modules))
                       for a in s["frames"])
        hist = dict(zip(s["hist"][0::2], s["hist"][1::2]))
        site = prof.Site(
            frames=frames, allocations=allocs, frees=frees, bytes=nbytes, peak_live_bytes=peak,
            lifetime=prof.Lifetime(life_sum / frees, life_min, life_max) if frees else None,
            size_histogram=hist, live=list(s["timeline"]), live_at_peak=s["at_peak"] or None,
            peak_usable_bytes=s["usable"][0] if s["usable"] else None)
        key = site.identity
        if key in sites:  # the same code seen at two load addresses (dlclose + dlopen)
            a = sites[key]
            a.allocations += site.allocations
            a.frees += site.frees
            a.bytes += site.bytes
            a.peak_usable_bytes = prof.max_known(a.peak_usable_bytes, site.peak_usable_bytes)
            a.peak_live_bytes = max(a.peak_live_bytes, site.peak_live_bytes)
            for b, c in site.size_histogram.items():
                a.size_histogram[b] = a.size_histogram.get(b, 0) + c
            if a.live_at_peak is not None or site.live_at_peak is not None:  # one moment: both live
                a.live_at_peak = [x + y for x, y in zip(a.heap_peak_live, site.heap_peak_live)]
            a.live = [max(x, y) for x, y in zip(a.live, site.live)]
            sampled[key] = access_estimate.add_raw(sampled[key], s)
        else:
            sites[key] = site
            sampled[key] = s
    windows = raw.get("windows", 0)
    for site in sites.values():  # every site the same number of windows
        site.live = _padded(site.live, windows)
        if site.live_at_peak is not None:
            site.live_at_peak = _padded(site.live_at_peak, windows)
    meta = {"untracked_blocks": raw.get("untracked", 0)}
    if "peak_live_total" in raw:
        meta["peak_live_total"] = raw["peak_live_total"]
    sampling = access_estimate.sampling_summary(raw.get("sampling"), raw.get("sampling_why"))
    meta["access_sampling"] = sampling
    for key, site in sites.items():
        access_estimate.apply(site, sampled[key], sampling, windows)
    return prof.Profile(
        engine="runtime", command=command, sites=sorted(sites.values(), key=lambda s: -s.bytes),
        pid=raw.get("pid"), rank=raw.get("rank"), clock_unit="ns",
        duration=raw.get("clock_ns"), window=raw.get("window_ns"), meta=meta)


def _image_order(path: Path) -> tuple[int, int]:
    """profile.<pid>.txt, then profile.<pid>.<n>.txt: the images of one pid in exec order."""
    parts = path.name.split(".")[1:-1]
    return (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0) if all(x.isdigit() for x in parts) else (0, 0)


def run(command: list[str], out_dir: str, depth: int = prof.DEPTH,
        rate: int = access_estimate.DEFAULT_RATE) -> tuple[int, list[prof.Profile], list[str]]:
    """Run `command` under the profiling runtime; write one profile per process into
    `out_dir`. `rate`: access samples per CPU-second (0: none). Returns (exit status,
    negative for a signal; profiles; their paths)."""
    from memplace.launch.process import child_environment, wait_forwarding_signals
    from memplace.launch.program import describe_program
    from memplace.launch.runtime_path import runtime_path
    from memplace.launch.unwind_tables import program_tables, tables_for_late_modules
    from memplace.console import phase
    from memplace.profiling.symbolize import symbolize_profile

    program = describe_program(command[0])
    runtime = runtime_path()
    tables = program_tables(program, runtime)
    with tempfile.TemporaryDirectory(prefix="memplace-profile-") as work:
        env = child_environment(runtime, {"MEMPLACE_PROFILE": work,
                                          "MEMPLACE_PROFILE_DEPTH": str(depth),
                                          "MEMPLACE_SAMPLE_RATE": str(rate),
                                          "MEMPLACE_UNWIND": tables.directory})
        try:
            # every descriptor memplace was given, as in `memplace run` (MPICH's PMI_FD)
            proc = subprocess.Popen(command, env=env, close_fds=False)
        except OSError as e:
            raise UserError(f"{command[0]}: cannot execute: {e.strerror}") from None
        status = wait_forwarding_signals(proc)
        profiles, written = [], []
        found = sorted(Path(work).glob("profile.*.txt"), key=_image_order)
        for i, path in enumerate(found, 1):
            of = f" {i} of {len(found)}" if len(found) > 1 else ""
            with phase(f"reading profile{of}"):
                p = convert(path.read_text(errors="replace"), str(path), command)
            with phase(f"symbolizing {len(p.sites):,} sites of profile{of}"):
                symbolize_profile(p)
                late = tables_for_late_modules(p, tables)
            if late:  # sites there end at their first frame; the next profile follows them
                p.meta["modules_without_unwind_table"] = late
            dest = os.path.join(out_dir, prof.profile_filename(p.pid or 0, p.rank))
            image = 1
            while dest in written:  # a later image of the same pid (it exec'd a program)
                dest = os.path.join(out_dir, prof.profile_filename(p.pid or 0, p.rank)[:-5] + f".{image}.json")
                image += 1
            with phase(f"writing {dest}"):
                prof.save(p, dest)
            profiles.append(p)
            written.append(dest)
    return status, profiles, written
