"""The DHAT engine: run a program under valgrind's DHAT and turn its output into a Profile.

DHAT counts, per allocation stack, the bytes allocated, the peak live bytes and the
bytes read and written through those blocks — access counts that need no hardware
counters. Its JSON names frames by absolute address ("0x1091A6: main (prog.c:7)"), so
we also need each module's load bias in that run: valgrind prints it at `-v -v`
("Reading syms from PATH" followed by "svma 0x..., avma 0x...": bias = avma - svma),
into a log file of its own so that the program's stderr is left alone.

    >>> prof = convert("dhat.123.json", "valgrind.123.log")   # doctest: +SKIP
    >>> prof.sites[0].reads                                     # doctest: +SKIP
    16000000
"""

from __future__ import annotations

import bisect
import glob
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass

from memplace.elf import elf_info
from memplace.errors import UserError
from memplace.launch.mpi import mpi_rank
from memplace.profiling.profile import (DEPTH, Frame, Lifetime, Profile, Site, Symbol, is_allocator_module,
                                        profile_filename, save)

# Valgrind's unwinder stores caller frames as (return address - 1) so that they point
# into the call instruction; sites use the return address itself.
_CALLER_ADJUST = 1

_FRAME_RE = re.compile(r"^0x([0-9A-Fa-f]+): (.*?)(?: \((?:in (.+)|(.+):(\d+))\))?$")
_READING_RE = re.compile(r"^--\d+-- Reading syms from (.+?)\s*$")
_SVMA_RE = re.compile(r"^--\d+--\s+svma 0x([0-9a-fA-F]+), avma 0x([0-9a-fA-F]+)")


@dataclass(frozen=True)
class _Module:
    path: str
    build_id: str | None
    start: int  # absolute [start, end) in the profiled process
    end: int
    bias: int


class ModuleMap:
    """Absolute address -> (module, offset) for one valgrind run.

    >>> m = ModuleMap([])
    >>> m.lookup(0x1000) is None
    True
    """

    def __init__(self, modules: list[_Module]):
        self._mods = sorted(modules, key=lambda m: m.start)
        self._starts = [m.start for m in self._mods]

    @classmethod
    def from_valgrind_log(cls, text: str) -> "ModuleMap":
        mods: list[_Module] = []
        pending: str | None = None
        for line in text.splitlines():
            m = _READING_RE.match(line)
            if m:
                pending = m.group(1)
                continue
            m = _SVMA_RE.match(line)
            if m and pending is not None:
                bias = int(m.group(2), 16) - int(m.group(1), 16)
                path = os.path.realpath(pending)
                info = elf_info(path)
                if info is not None:
                    mods.append(_Module(path, info.build_id, bias + info.lo, bias + info.hi, bias))
                pending = None
        return cls(mods)

    def lookup(self, addr: int) -> _Module | None:
        i = bisect.bisect_right(self._starts, addr) - 1
        # Modules do not overlap, except one reloaded elsewhere after dlclose: look at
        # the few nearest starts below addr.
        for j in range(i, max(i - 8, -1), -1):
            m = self._mods[j]
            if m.start <= addr < m.end:
                return m
        return None


def _parse_frame(s: str) -> tuple[int, Symbol | None, str | None] | None:
    """'0x1091A6: main (prog.c:7)' -> (address, Symbol, module path named by valgrind)."""
    m = _FRAME_RE.match(s)
    if not m:
        return None
    addr = int(m.group(1), 16)
    fn = m.group(2)
    fn = None if fn in ("???", "") else fn
    if m.group(3):
        return addr, (Symbol(fn, None, None) if fn else None), m.group(3)
    if m.group(4):
        return addr, Symbol(fn, m.group(4), int(m.group(5))), None
    return addr, (Symbol(fn, None, None) if fn else None), None


def _site_frames(
    stack: list[str], modules: ModuleMap
) -> tuple[tuple[Frame, ...], tuple[Symbol | None, ...]] | None:
    """The site of one DHAT stack: physical frames outside the allocator and the language
    runtimes (the modules the runtime engine leaves out), up to 4."""
    physical: list[tuple[int, Symbol | None, str | None]] = []
    for s in stack:
        pf = _parse_frame(s)
        if pf is None:
            continue
        # Inlined frames repeat the address; the first entry is the innermost (most
        # specific) source line, which is the one to show.
        if physical and physical[-1][0] == pf[0]:
            continue
        physical.append(pf)
    frames: list[Frame] = []
    symbols: list[Symbol | None] = []
    for depth, (addr, sym, named_module) in enumerate(physical):
        if depth == 0:
            continue  # the allocation function itself (valgrind's replacement malloc)
        ra = addr + _CALLER_ADJUST
        mod = modules.lookup(addr)
        if mod is not None:
            path, build_id, offset = mod.path, mod.build_id, ra - mod.bias
        elif named_module is not None:
            path, build_id, offset = os.path.realpath(named_module), None, ra
        elif modules._mods:
            # Outside every module the log names: a word valgrind took for a return
            # address past the outermost frame (_start, a thread's start). The runtime
            # ends a site at such a frame; so does this.
            break
        else:
            path, build_id, offset = "[unknown]", None, ra
        # Left out at every depth, as the runtime's capture (os/modules.c) walks through
        # libc, libstdc++, ld.so... frames without recording them: otherwise a site behind a
        # signal trampoline, raise() or __libc_start_call_main gets libc frames the runtime
        # never reports, and a rule written from this profile never matches when placed.
        if is_allocator_module(path):
            continue
        frames.append(Frame(path, build_id, offset))
        symbols.append(sym)
        if len(frames) == DEPTH:  # as many as the runtime engine records
            break
    if not frames:
        return None
    return tuple(frames), tuple(symbols)


def convert(dhat_json: str, valgrind_log: str | None = None, rank: int | None = None) -> Profile:
    """Turn one DHAT output file (and valgrind's `-v -v` log of the same run) into a Profile.

    Stacks that reduce to the same site (they differ only below frame 4, or only inside
    the allocator) are added up; their peak is the sum of their peaks, an upper bound.
    """
    try:
        with open(dhat_json, "rb") as f:
            d = json.load(f)
    except OSError as e:
        raise UserError(f"{dhat_json}: cannot read: {e.strerror or e}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UserError(f"{dhat_json}: not DHAT output (not JSON, or truncated)") from None
    if not isinstance(d, dict) or "dhatFileVersion" not in d or not isinstance(d.get("pps"), list):
        raise UserError(f"{dhat_json}: not DHAT output (no dhatFileVersion/pps)")
    if d["dhatFileVersion"] != 2:
        raise UserError(f"{dhat_json}: DHAT file version {d['dhatFileVersion']} (only 2 is understood)")
    if d.get("mode", "heap") != "heap":
        raise UserError(f"{dhat_json}: DHAT ran in {d.get('mode')!r} mode, a heap profile is needed")
    log_text = ""
    if valgrind_log is not None:
        try:
            with open(valgrind_log, errors="replace") as f:
                log_text = f.read()
        except OSError as e:
            raise UserError(f"{valgrind_log}: cannot read: {e.strerror or e}") from None
    modules = ModuleMap.from_valgrind_log(log_text)
    ftbl = d.get("ftbl", [])

    sites: dict[tuple, Site] = {}
    lifetime_total: dict[tuple, float] = {}
    unattributed = 0
    for pp in d["pps"]:
        stack = [ftbl[i] for i in pp.get("fs", []) if 0 <= i < len(ftbl)]
        got = _site_frames(stack, modules)
        if got is None:
            unattributed += pp.get("tb", 0)
            continue
        frames, symbols = got
        key = tuple(f.key for f in frames)
        s = sites.get(key)
        if s is None:
            s = sites[key] = Site(frames=frames, symbols=symbols, reads=0, writes=0)
            lifetime_total[key] = 0.0
        s.allocations += pp.get("tbk", 0)
        s.bytes += pp.get("tb", 0)
        s.frees += pp.get("tbk", 0) - pp.get("ebk", 0)
        s.peak_live_bytes += pp.get("mb", 0)
        s.reads += pp.get("rb", 0)
        s.writes += pp.get("wb", 0)
        lifetime_total[key] += pp.get("tl", 0)
    for key, s in sites.items():
        if s.allocations:
            s.lifetime = Lifetime(mean=lifetime_total[key] / s.allocations)
    cmd = d.get("cmd", "")
    return Profile(
        engine="dhat",
        command=cmd.split() if isinstance(cmd, str) else list(cmd),
        pid=d.get("pid"),
        rank=rank,
        clock_unit="instr" if d.get("tu", "instrs") == "instrs" else str(d.get("tu")),
        duration=d.get("te"),
        sites=sorted(sites.values(), key=lambda s: -(s.accesses or 0)),
        meta={"unattributed_bytes": unattributed, "modules_resolved": bool(modules._mods)},
    )


def valgrind_command(cmd: list[str], workdir: str) -> list[str]:
    """The valgrind invocation that profiles `cmd`, every exec'd child included."""
    return [
        "valgrind",
        "--tool=dhat",
        "-v",
        "-v",  # prints each module's load bias ("svma ..., avma ...")
        f"--log-file={workdir}/valgrind.%p.log",
        f"--dhat-out-file={workdir}/dhat.%p.json",
        "--num-callers=32",  # enough to get 4 frames past deep libc/libstdc++ stacks
        "--show-below-main=yes",  # the runtime sees the frames below main too
        "--trace-children=yes",
        *cmd,
    ]


def run(cmd: list[str], workdir: str) -> int:
    """Run `cmd` under DHAT writing into `workdir`; returns its exit status (negative:
    killed by that signal). The program's stdin, stdout and stderr are its own."""
    if shutil.which("valgrind") is None:
        raise UserError("valgrind not found: install it (Debian package: valgrind)")
    if not cmd:
        raise UserError("no command given: memplace profile --engine dhat -- CMD [ARGS...]")
    exe = cmd[0]
    if ("/" in exe and not os.access(exe, os.X_OK)) or ("/" not in exe and shutil.which(exe) is None):
        raise UserError(f"{exe}: command not found or not executable")
    from memplace.launch.process import given_environment

    # every descriptor memplace was given, as in `memplace run` (MPICH's PMI_FD); the
    # environment as given (not Python's coerced locale)
    return subprocess.call(valgrind_command(cmd, workdir), close_fds=False, env=given_environment())


def collect(workdir: str, rank: int | None = None) -> list[Profile]:
    """Profiles of every process DHAT wrote into `workdir` (one per pid)."""
    out = []
    for path in sorted(glob.glob(os.path.join(workdir, "dhat.*.json"))):
        pid = path.rsplit(".", 2)[-2]
        log = os.path.join(workdir, f"valgrind.{pid}.log")
        out.append(convert(path, log if os.path.exists(log) else None, rank=rank))
    return out


def profile(command: list[str], out_dir: str) -> tuple[int, list[Profile], list[str]]:
    """Run `command` under DHAT; write one profile per process into `out_dir`. Returns
    (exit status, negative for a signal; profiles; their paths), like runtime_engine.run."""
    rank = mpi_rank()
    work = tempfile.mkdtemp(prefix=".dhat-", dir=out_dir)
    try:
        status = run(command, work)
        profiles = collect(work, rank=rank)
        written = []
        for p in profiles:
            path = os.path.join(out_dir, profile_filename(p.pid or 0, rank))
            save(p, path)
            written.append(path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return status, profiles, written
