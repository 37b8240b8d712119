"""Per-call-site allocation profiles: the data model and its versioned JSON file.

A profile says, for each allocation *site* of one process (or of several merged ones),
how much it allocated, how much of it was live at once and when, and how much the
program read and wrote through those objects. Both engines produce it: the runtime
(LD_PRELOAD, `memplace profile -- CMD`) and valgrind's DHAT (`--engine dhat`).

A site is identified by 1..4 frames, innermost first. Frame 0 is the return address
into the first code outside the allocator, libc, libstdc++ and libgcc (the code that
called malloc / operator new); each frame is (module path, build-id or None, offset of
the return address from the module's load bias). Offsets, unlike addresses, do not
change between runs under ASLR, so the same site gets the same identity every run.

Example:

    >>> from memplace.profiling.profile import Frame, Site, Profile, load, save
    >>> exe = Frame("/usr/bin/app", None, 0x11a7)
    >>> s = Site(frames=(exe,), allocations=2, bytes=4096, peak_live_bytes=4096)
    >>> p = Profile(engine="runtime", command=["app"], sites=[s])
    >>> s.identity
    (('/usr/bin/app', 4519),)

On disk (`save`/`load`), a profile is one JSON object::

    {"format": "memplace-profile", "version": 1, "engine": "runtime",
     "command": ["./app"], "pid": 4242, "rank": 0, "processes": 1,
     "clock": {"unit": "ns", "duration": 1.5e9, "window": 2.5e7},
     "sites": [{"frames": [{"module": "/usr/bin/app", "build_id": "ab12...",
                            "offset": "0x11a7", "function": "main",
                            "file": "app.c", "line": 7}],
                "allocations": 2, "frees": 2, "bytes": 4096,
                "peak_live_bytes": 4096,
                "lifetime": {"min": 10.0, "mean": 15.0, "max": 20.0},
                "size_histogram": [[13, 2]],
                "reads": 81920, "writes": 4096,
                "live": [0, 4096, 4096, 0],
                "access_samples": {"read_samples": 40, "write_samples": 2,
                                   "reads_ci95": [58500, 111500], "writes_ci95": [500, 14800],
                                   "few_samples": false, "reads_timeline": [...], ...}}],
     "meta": {}}

`reads`/`writes` are bytes: counted by DHAT, or estimated from CPU-time samples by the
runtime engine (then `access_samples` says how many samples are behind them, with 95%
intervals and per-window figures, and meta["access_sampling"] whether sampling ran;
profiling/access_estimate.py). Absent: not measured.

`live` is the timeline: the clock's run time is cut into windows of `clock.window`
units, and `live[i]` is the *peak* number of bytes from the site that were live at
some moment of window i. Summing the windows of several sites gives an upper bound on
their concurrently live bytes: twice the heap's real peak on a solver whose temporaries
come and go within a window. `live_at_peak[i]` (runtime engine; absent where it equals
`live`) is what the site had live at the moment the whole heap peaked in window i: the
sites' sum is the heap's peak, and what the advisor packs a capacity with
(`Site.heap_peak_live`).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, NamedTuple

from memplace.errors import UserError
from memplace.inputs import PROFILE_LIMIT, parse_json, read_bytes

FORMAT = "memplace-profile"
VERSION = 1
MAX_FRAMES = 4
DEPTH = 3  # frames per site both engines record, so their sites are the same sites
MAX_COUNT = (1 << 64) - 1  # counts, bytes and offsets are 64-bit in the runtime and the compiled policy
CLOCK_UNITS = ("ns", "instr")  # the runtime's clock; DHAT's (instructions executed)

# Modules whose frames are never part of a site: the allocator and the language runtimes
# that call it on the program's behalf (the runtime walks through the same ones and
# leaves them out, at every depth).
_SKIPPED_MODULES = re.compile(
    r"^(?:libc\.so(?:\.\d+)*|libc\.musl-.*|ld-musl-.*|libstdc\+\+\.so(?:\.\d+)*"
    r"|libgcc_s\.so(?:\.\d+)*|libmemplace[^/]*\.so.*|vgpreload_.*"
    # the rest of runtime/os/modules.c's is_skipped: the two engines leave out the same frames
    r"|ld-linux.*|libc\+\+(?:abi)?\.so(?:\.\d+)*)$"
)


def is_allocator_module(path: str) -> bool:
    """True for modules whose frames no site includes (at any depth).

    >>> is_allocator_module("/lib/x86_64-linux-gnu/libc.so.6"), is_allocator_module("/bin/app")
    (True, False)
    """
    return bool(_SKIPPED_MODULES.match(os.path.basename(path)))


def size_bucket(size: int) -> int:
    """Power-of-two histogram bucket of an allocation size: bucket k holds sizes
    [2**(k-1), 2**k - 1]; bucket 0 holds size 0. In C: size ? 64 - __builtin_clzll(size) : 0.

    >>> [size_bucket(n) for n in (0, 1, 2, 3, 4, 4096)]
    [0, 1, 2, 2, 3, 13]
    """
    return int(size).bit_length()


def bucket_range(k: int) -> tuple[int, int]:
    """Inclusive size range of histogram bucket k."""
    return (0, 0) if k == 0 else (1 << (k - 1), (1 << k) - 1)


class Frame(NamedTuple):
    """One return address, as a module-relative offset (stable under ASLR)."""

    module: str
    build_id: str | None
    offset: int

    @property
    def key(self) -> tuple[str, int]:
        """What identity compares: the build-id when known (survives moving the file),
        else the path."""
        return (self.build_id or self.module, self.offset)

    def __str__(self) -> str:
        return f"{os.path.basename(self.module) or '?'}+0x{self.offset:x}"


class Symbol(NamedTuple):
    """What a frame is in the source: function and file:line (any may be unknown).

    file:line is the innermost line of the return address's call; when that call is in
    code the compiler inlined, `inlined` holds the calls it was inlined at, innermost
    first, each (function it is in, file, line): for operator new called from an inlined
    std::vector::push_back, file:line is in new_allocator.h and the program's own
    push_back line is in `inlined`."""

    function: str | None
    file: str | None
    line: int | None
    inlined: tuple[tuple[str | None, str | None, int | None], ...] = ()

    @property
    def location(self) -> str | None:
        if self.file and self.line:
            return f"{self.file}:{self.line}"
        return self.file


@dataclass
class Lifetime:
    """Lifetimes of a site's blocks in clock units; min/max unknown for DHAT."""

    mean: float
    min: float | None = None
    max: float | None = None


@dataclass
class Site:
    """Everything known about one allocation site."""

    frames: tuple[Frame, ...]
    allocations: int = 0
    frees: int = 0
    bytes: int = 0
    peak_live_bytes: int = 0
    lifetime: Lifetime | None = None
    size_histogram: dict[int, int] = field(default_factory=dict)
    reads: int | None = None
    writes: int | None = None
    live: list[int] | None = None
    live_at_peak: list[int] | None = None  # None: the same as `live`
    symbols: tuple[Symbol | None, ...] = ()
    # reads/writes estimated from access samples (runtime engine): the samples behind them,
    # 95% intervals, per-window figures; see profiling/access_estimate.py
    sampled: dict[str, Any] | None = None
    # peak_live_bytes as a placed run's device heaps count live bytes (their size classes
    # round sizes up; a block realloc shrinks in place keeps its size); None when the
    # engine did not say
    peak_usable_bytes: int | None = None

    @property
    def heap_factor(self) -> float:
        """Bytes a device heap counts at the site's peak per byte the program asked for (1
        when unknown)."""
        if not self.peak_usable_bytes or not self.peak_live_bytes:
            return 1.0
        return max(1.0, self.peak_usable_bytes / self.peak_live_bytes)

    @property
    def heap_peak_live(self) -> list[int] | None:
        """Bytes live in each window at the moment the whole heap peaked in it (the
        site's own peaks where the engine did not say)."""
        return self.live if self.live_at_peak is None else self.live_at_peak

    @property
    def identity(self) -> tuple[tuple[str, int], ...]:
        return tuple(f.key for f in self.frames)

    @property
    def accesses(self) -> int | None:
        """Bytes read plus written, if an engine measured them."""
        if self.reads is None and self.writes is None:
            return None
        return (self.reads or 0) + (self.writes or 0)

    def symbol(self, i: int = 0) -> Symbol | None:
        return self.symbols[i] if i < len(self.symbols) else None

    @property
    def function(self) -> str | None:
        s = self.symbol(0)
        return s.function if s else None

    @property
    def location(self) -> str | None:
        s = self.symbol(0)
        return s.location if s else None

    @property
    def label(self) -> str:
        """Short human name: 'function (file:line)' or the first frame."""
        parts = [p for p in (self.function, self.location) if p]
        if len(parts) == 2:
            return f"{parts[0]} ({parts[1]})"
        return parts[0] if parts else str(self.frames[0])

    def callers(self, depth: int = 2) -> str:
        """The calls that lead to the site, innermost first, `function (file:line) < ...`:
        what tells apart sites that share their first frame (an allocation wrapper called
        from several places)."""
        out = []
        for i in range(1, min(len(self.frames), depth + 1)):
            sym = self.symbol(i)
            out.append(f"{sym.function or '?'} ({sym.location})" if sym and sym.location else
                       sym.function if sym and sym.function else str(self.frames[i]))
        return " < ".join(out)

    @property
    def site_spec(self) -> list[str]:
        """The site as policy frames, `MODULE+0xOFF`, innermost first."""
        return [f"{f.module}+0x{f.offset:x}" for f in self.frames]


@dataclass
class Profile:
    """A profile of one process (or several merged: `processes` > 1)."""

    engine: str
    command: list[str] = field(default_factory=list)
    sites: list[Site] = field(default_factory=list)
    pid: int | None = None
    rank: int | None = None
    processes: int = 1
    clock_unit: str = "ns"
    duration: float | None = None
    window: float | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def windows(self) -> int:
        """Number of timeline windows (0 when the engine records no timeline)."""
        return max((len(s.live) for s in self.sites if s.live is not None), default=0)

    def by_identity(self) -> dict[tuple, Site]:
        return {s.identity: s for s in self.sites}


def concurrent_peak(sites: Iterable[Site]) -> int:
    """The bytes the given sites have live together at the heap's peak moments.

    With timelines it is the largest window sum of their bytes at the heap's peak in each
    window; a site without a timeline counts its peak in every window (it may be live at
    any time).

    >>> a = Site((Frame("m", None, 1),), peak_live_bytes=10, live=[10, 0])
    >>> b = Site((Frame("m", None, 2),), peak_live_bytes=10, live=[0, 10])
    >>> concurrent_peak([a, b])
    10
    """
    always = 0
    series: list[int] = []
    for s in sites:
        live = s.heap_peak_live
        if live is None:
            always += s.peak_live_bytes
            continue
        if len(live) > len(series):
            series.extend([0] * (len(live) - len(series)))
        for i, v in enumerate(live):
            series[i] += v
    return always + max(series, default=0)


def profile_filename(pid: int, rank: int | None = None) -> str:
    """File name of one process's profile inside `memplace profile --out DIR`.

    >>> profile_filename(4242, 3), profile_filename(4242)
    ('profile.rank3.4242.json', 'profile.4242.json')
    """
    return f"profile.rank{rank}.{pid}.json" if rank is not None else f"profile.{pid}.json"


# ---- JSON ------------------------------------------------------------------------------


def max_known(a: int | None, b: int | None) -> int | None:
    """The larger of two counts an engine may not have given (None: unknown)."""
    return None if a is None or b is None else max(a, b)


def to_json(p: Profile) -> dict[str, Any]:
    """The profile as a JSON-ready dict (the on-disk format)."""
    sites = []
    for s in p.sites:
        frames = []
        for i, f in enumerate(s.frames):
            d: dict[str, Any] = {"module": f.module, "build_id": f.build_id, "offset": f"0x{f.offset:x}"}
            sym = s.symbol(i)
            if sym is not None:
                d.update({k: v for k, v in sym._asdict().items() if v is not None and k != "inlined"})
                if sym.inlined:
                    d["inlined"] = [{k: v for k, v in zip(("function", "file", "line"), call) if v is not None}
                                    for call in sym.inlined]
            frames.append(d)
        d = {
            "frames": frames,
            "allocations": s.allocations,
            "frees": s.frees,
            "bytes": s.bytes,
            "peak_live_bytes": s.peak_live_bytes,
            "size_histogram": sorted([k, v] for k, v in s.size_histogram.items()),
        }
        if s.peak_usable_bytes is not None:
            d["peak_usable_bytes"] = s.peak_usable_bytes
        if s.lifetime is not None:
            d["lifetime"] = {"min": s.lifetime.min, "mean": s.lifetime.mean, "max": s.lifetime.max}
        if s.reads is not None:
            d["reads"] = s.reads
        if s.writes is not None:
            d["writes"] = s.writes
        if s.live is not None:
            d["live"] = list(s.live)
        if s.live_at_peak is not None:
            d["live_at_peak"] = list(s.live_at_peak)
        if s.sampled is not None:
            d["access_samples"] = s.sampled
        sites.append(d)
    return {
        "format": FORMAT,
        "version": VERSION,
        "engine": p.engine,
        "command": list(p.command),
        "pid": p.pid,
        "rank": p.rank,
        "processes": p.processes,
        "clock": {"unit": p.clock_unit, "duration": p.duration, "window": p.window},
        "sites": sites,
        "meta": p.meta,
    }


def save(p: Profile, path: str | os.PathLike) -> None:
    """Write a profile whole (a reader never sees half a file)."""
    from memplace.output_files import write_whole

    write_whole(path, json.dumps(to_json(p), separators=(",", ":")) + "\n")


class _Reader:
    """Typed field access that turns every defect into one UserError naming the place."""

    def __init__(self, path: str):
        self.path = path

    def fail(self, where: str, problem: str) -> UserError:
        return UserError(f"{self.path}: {where}: {problem}")

    def get(self, d: dict, key: str, kinds: tuple, where: str, required: bool = True, default=None):
        if key not in d or d[key] is None:
            if required:
                raise self.fail(where, f"missing field '{key}'" if key not in d else f"field '{key}' is null")
            return default
        v = d[key]
        if isinstance(v, bool) or not isinstance(v, kinds):
            names = "/".join(k.__name__ for k in kinds)
            raise self.fail(where, f"field '{key}' must be {names}, not {type(v).__name__}")
        return v

    def count(self, d: dict, key: str, where: str, required: bool = True) -> int | None:
        v = self.get(d, key, (int,), where, required)
        if v is not None and not 0 <= v <= MAX_COUNT:
            raise self.fail(where, f"field '{key}' is {'negative' if v < 0 else 'above 2^64-1'}")
        return v

    def choice(self, d: dict, key: str, choices: tuple[str, ...], where: str, default: str) -> str:
        v = self.get(d, key, (str,), where, required=False, default=default)
        if v not in choices:
            raise self.fail(where, f"field '{key}' is {v!r:.40}, not one of {', '.join(choices)}")
        return v

    def number(self, d: dict, key: str, where: str) -> float | None:
        v = self.get(d, key, (int, float), where, required=False)
        if v is not None and (not math.isfinite(v) or v < 0):
            raise self.fail(where, f"field '{key}' must be a finite number >= 0")
        return v

    def offset(self, v: Any, where: str) -> int:
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_COUNT:
            return v
        if isinstance(v, str) and len(v) <= 40:
            try:
                n = int(v, 0)
            except ValueError:
                n = -1
            if 0 <= n <= MAX_COUNT:
                return n
        raise self.fail(where, f"offset {v!r:.40} is not an integer or 0x-hex string in 0..2^64-1")


def from_json(d: Any, path: str = "<profile>") -> Profile:
    """Build a Profile from its JSON dict, checking every field (strict)."""
    r = _Reader(path)
    if not isinstance(d, dict) or d.get("format") != FORMAT:
        raise UserError(f"{path}: not a memplace profile (no \"format\": \"{FORMAT}\")")
    version = d.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise r.fail("header", "missing or non-integer 'version'")
    if version > VERSION:
        raise r.fail("header", f"profile version {version} is newer than this memplace reads ({VERSION})")
    if version < 1:
        raise r.fail("header", f"unknown profile version {version}")
    engine = r.get(d, "engine", (str,), "header")
    command = r.get(d, "command", (list,), "header", required=False, default=[])
    if not all(isinstance(a, str) for a in command):
        raise r.fail("header", "'command' must be a list of strings")
    clock = r.get(d, "clock", (dict,), "header", required=False, default={})
    sites_json = r.get(d, "sites", (list,), "header")
    meta = r.get(d, "meta", (dict,), "header", required=False, default={})
    p = Profile(
        engine=engine,
        command=command,
        pid=r.count(d, "pid", "header", required=False),
        rank=r.count(d, "rank", "header", required=False),
        processes=r.count(d, "processes", "header", required=False) or 1,
        clock_unit=r.choice(clock, "unit", CLOCK_UNITS, "clock", default="ns"),
        duration=r.number(clock, "duration", "clock"),
        window=r.number(clock, "window", "clock"),
        meta=meta,
    )
    nwin = None
    good_ids: set[str] = set()  # build-ids checked already (a profile names a few modules)
    for i, sd in enumerate(sites_json):
        where = f"site {i}"
        if not isinstance(sd, dict):
            raise r.fail(where, "is not an object")
        frames_json = r.get(sd, "frames", (list,), where)
        if not 1 <= len(frames_json) <= MAX_FRAMES:
            raise r.fail(where, f"has {len(frames_json)} frames (1..{MAX_FRAMES} allowed)")
        frames, symbols = [], []
        for j, fd in enumerate(frames_json):
            fw = f"{where} frame {j}"
            if not isinstance(fd, dict):
                raise r.fail(fw, "is not an object")
            module = r.get(fd, "module", (str,), fw)
            build_id = r.get(fd, "build_id", (str,), fw, required=False)
            if build_id is not None and build_id not in good_ids:
                if not re.fullmatch(r"[0-9a-f]+", build_id):
                    raise r.fail(fw, f"build_id {build_id!r} is not lowercase hex")
                good_ids.add(build_id)
            if "offset" not in fd:
                raise r.fail(fw, "missing field 'offset'")
            frames.append(Frame(module, build_id, r.offset(fd["offset"], fw)))
            fn = r.get(fd, "function", (str,), fw, required=False)
            fl = r.get(fd, "file", (str,), fw, required=False)
            ln = r.count(fd, "line", fw, required=False)
            inlined = []
            for call in r.get(fd, "inlined", (list,), fw, required=False, default=[]):
                if not isinstance(call, dict):
                    raise r.fail(fw, "inlined entry is not an object")
                inlined.append((r.get(call, "function", (str,), fw, required=False),
                                r.get(call, "file", (str,), fw, required=False),
                                r.count(call, "line", fw, required=False)))
            symbols.append(Symbol(fn, fl, ln, tuple(inlined)) if (fn or fl) else None)
        hist: dict[int, int] = {}
        for pair in r.get(sd, "size_histogram", (list,), where, required=False, default=[]):
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in pair)
                or pair[0] > 64
            ):
                raise r.fail(where, f"size_histogram entry {pair!r} is not [bucket 0..64, count]")
            hist[pair[0]] = hist.get(pair[0], 0) + pair[1]
        lt = r.get(sd, "lifetime", (dict,), where, required=False)
        lifetime = None
        if lt is not None:
            mean = r.number(lt, "mean", where + " lifetime")
            if mean is None:
                raise r.fail(where, "lifetime has no 'mean'")
            lifetime = Lifetime(mean, r.number(lt, "min", where + " lifetime"), r.number(lt, "max", where + " lifetime"))
        live = r.get(sd, "live", (list,), where, required=False)
        if live is not None:
            # every entry exactly an int (not a bool) and none negative, checked in bulk
            # (64 windows x 50,000 sites one by one were 40% of reading a profile)
            if set(map(type, live)) - {int} or (live and min(live) < 0):
                raise r.fail(where, "'live' must be a list of byte counts")
            if nwin is None:
                nwin = len(live)
            elif len(live) != nwin:
                raise r.fail(where, f"'live' has {len(live)} windows, other sites have {nwin}")
        at_peak = r.get(sd, "live_at_peak", (list,), where, required=False)
        if at_peak is not None:
            if set(map(type, at_peak)) - {int} or (at_peak and min(at_peak) < 0):
                raise r.fail(where, "'live_at_peak' must be a list of byte counts")
            if live is None or len(at_peak) != len(live):
                raise r.fail(where, "'live_at_peak' must have as many windows as 'live'")
        sampled = r.get(sd, "access_samples", (dict,), where, required=False)
        if sampled is not None:
            for k in ("read_samples", "write_samples"):
                r.count(sampled, k, where + " access_samples")
        p.sites.append(
            Site(
                frames=tuple(frames),
                allocations=r.count(sd, "allocations", where),
                frees=r.count(sd, "frees", where, required=False) or 0,
                bytes=r.count(sd, "bytes", where),
                peak_usable_bytes=r.count(sd, "peak_usable_bytes", where, required=False),
                peak_live_bytes=r.count(sd, "peak_live_bytes", where),
                lifetime=lifetime,
                size_histogram=hist,
                reads=r.count(sd, "reads", where, required=False),
                writes=r.count(sd, "writes", where, required=False),
                live=live,
                live_at_peak=at_peak,
                symbols=tuple(symbols) if any(symbols) else (),
                sampled=sampled,
            )
        )
    seen: set = set()
    for i, s in enumerate(p.sites):
        if s.identity in seen:
            raise r.fail(f"site {i}", "has the same frames as an earlier site")
        seen.add(s.identity)
    return p


def load(path: str | os.PathLike) -> Profile:
    """Read a profile file; any defect (missing, truncated, foreign, malformed) is one
    UserError line that names the file.

    >>> load("/nonexistent.json")
    Traceback (most recent call last):
    ...
    memplace.errors.UserError: /nonexistent.json: cannot read the profile: No such file or directory
    """
    path = os.fspath(path)
    raw = read_bytes(path, "profile", PROFILE_LIMIT)
    if not raw.strip():
        raise UserError(f"{path}: empty file, not a memplace profile")
    try:
        d = parse_json(raw, path, "profile")
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        if raw.lstrip()[:1] == b"{" and b'"' + FORMAT.encode() + b'"' in raw[:200]:
            raise UserError(f"{path}: truncated or corrupt profile ({e.__class__.__name__}: {e})".split("\n")[0]) from None
        raise UserError(f"{path}: not a memplace profile (not JSON)") from None
    return from_json(d, path)
