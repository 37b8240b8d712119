"""The compiled policy of `memplace run --policy`, made once and reused while its inputs hold.

Compiling resolves call sites through the symbols and DWARF of the program and its
libraries, runs `ld.so --list` and reads /sys: 0.1-0.5 s that every rank of an MPI job
would pay at each start. The result depends only on inputs that are cheap to check, so it
is kept under the cache root (`memplace.cache`, next to the unwind tables), in
`policies/`:

  <key>.json    a record, named by the sha256 of what is known before compiling: the
                policy (bytes; path as given and absolute; cwd and home, which relative
                paths in it depend on), the program (path, size, mtime, build-id), the
                topology as the checks see it (nodes, online, MemTotal, huge page pools,
                THP, weighted interleave), the loader's inputs (LD_* variables,
                /etc/ld.so.cache), memplace's version and its compiler's sources.
                It lists every file the compile read (libraries, modules the policy
                names, separate debug files, the runtime) with size and mtime, checked
                with os.stat at each start; file devices' directories; the check's
                warnings (printed again on a hit); the modules that need unwind tables;
                and the compiled file with its sha256:
  <key2>.mpc    key2 adds the build-ids of the modules the sites were resolved in.

Anything that does not match or cannot be read is a miss: the policy is compiled as
before and the record rewritten. A check error raises before anything is written, so it
is never cached. Files are written whole (a temporary file, then os.replace), so ranks
starting together never read half a record. A cache that cannot be written only loses
the speed-up: the policy and tables then go to the run's temporary directory.

The hit path imports little on purpose (no TOML, DWARF or policy modules): it is the
start-up of every placed run.
"""

from __future__ import annotations

import hashlib
import json
import os

from memplace import __version__
from memplace.cache import file_stamp as _stat
from memplace.cache import make_dir as _make_dir
from memplace.cache import unwind_tables_dir
from memplace.cache import write_atomic as _write_atomic
from memplace.errors import UserError
from memplace.inputs import POLICY_LIMIT, read_bytes
from memplace.placement.sysfs import read_around, topology_stamp

CACHE_FORMAT = 4  # of the record below; a change makes every old record a miss
# Sources whose change changes what a compile produces (a development install keeps its
# version number while they change).
_COMPILER_SOURCES = ("placement/policy.py", "placement/policy_compile.py", "placement/sites.py",
                     "placement/devices.py", "units.py", "elf.py", "inputs.py")
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LD_SO_CACHE = "/etc/ld.so.cache"


class Prepared:
    """A run's compiled policy, where its unwind tables are, and the check's warnings."""

    def __init__(self, policy_file: str, unwind_dir: str, warnings: list[str], hit: bool,
                 node_scoped: bool = False, places_nothing: bool = False):
        self.policy_file = policy_file
        self.unwind_dir = unwind_dir
        self.warnings = warnings  # "warning: ..." lines
        self.hit = hit
        self.node_scoped = node_scoped  # a capacity is shared by the job's processes on the node
        self.places_nothing = places_nothing  # every allocation on system: run without the runtime


def policies_dir() -> str:
    from memplace.cache import cache_root

    return os.path.join(cache_root(), "policies")


def prepare_run(policy: str, program, runtime: str, tmp: str) -> Prepared:
    """The compiled policy and unwind tables for running `program` (launch.program's
    description) under `policy`: from the cache when its record still holds, else
    compiled (UserError for a bad policy) and recorded. `tmp` is the run's temporary
    directory, used when the cache cannot be written."""
    directory = policies_dir()
    key = _key(policy, program, runtime)
    if key is not None:
        hit = _lookup(directory, key)
        if hit is not None:
            return hit
    return _compile(policy, program, runtime, tmp, directory, key)


def cached(policy: str, program, runtime: str) -> Prepared | None:
    """prepare_run's result when the cache holds it, else None (nothing is compiled)."""
    key = _key(policy, program, runtime)
    return _lookup(policies_dir(), key) if key is not None else None


# -- the key --------------------------------------------------------------------------


def _key(policy: str, program, runtime: str) -> str | None:
    try:
        policy_bytes = read_bytes(policy, "policy", POLICY_LIMIT)
        return _first_key(policy, policy_bytes, program, runtime)
    except (OSError, UserError):
        return None  # unreadable policy or program: the compile says why, in one line


def _first_key(policy: str, policy_bytes: bytes, program, runtime: str) -> str:
    from memplace.elf import build_id

    exe = os.path.abspath(program.path) if program.kind == "elf" else None
    facts = {
        "format": CACHE_FORMAT,
        "version": __version__,
        "sources": [_stat(os.path.join(_PACKAGE, s)) for s in _COMPILER_SOURCES],
        "policy": [policy, os.path.abspath(policy), hashlib.sha256(policy_bytes).hexdigest()],
        "cwd": os.getcwd(),
        "home": os.path.expanduser("~"),
        "program": [exe, _stat(exe), build_id(exe)] if exe else [program.path, None, None],
        "runtime": runtime,
        "loader": [sorted((k, v) for k, v in os.environ.items()
                          if k.startswith("LD_") and k not in ("LD_PRELOAD", "LD_AUDIT")),
                   _stat(LD_SO_CACHE)],
        "topology": topology_stamp(),
    }
    return _sha256(facts)


def _sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


# -- a hit ----------------------------------------------------------------------------


def _lookup(directory: str, key: str) -> Prepared | None:
    """The record's result if every input it lists is unchanged, else None (a miss)."""
    try:
        with open(os.path.join(directory, key + ".json"), "rb") as f:
            record = json.loads(f.read())
        if record["format"] != CACHE_FORMAT or record["key"] != key:
            return None
        if any(_stat(path) != st for path, st in record["files"]):
            return None
        if not all(_directory_holds(d) for d in record["directories"]):
            return None
        mpc = os.path.join(directory, record["mpc"])
        with open(mpc, "rb") as f:
            if hashlib.sha256(f.read()).hexdigest() != record["mpc_sha256"]:
                return None
        unwind = unwind_tables_dir()
        missing = [path for path, bid in record["unwind"]
                   if bid and not os.path.exists(os.path.join(unwind, bid))]
        if missing:  # tables deleted since (the cache cleared in part): make just those
            from memplace.launch.unwind_tables import prepare_tables

            prepare_tables([path for path, _ in record["unwind"]], unwind)
        return Prepared(mpc, unwind, [str(w) for w in record["warnings"]], hit=True,
                        node_scoped=bool(record["node_scoped"]),
                        places_nothing=bool(record["places_nothing"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # no record, a corrupt one, or a cache we cannot use: compile


def _directory_facts(path: str, capacity: int | None) -> list:
    """What `policy._check_directory` decided from: the directory is there and writable,
    the filesystem's size, whether the capacity is more than the free space, and the
    disk's read-around."""
    st = os.statvfs(path)
    size, free = st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
    around = read_around(path)
    return [os.path.isdir(path) and os.access(path, os.W_OK | os.X_OK), size,
            bool(capacity and capacity > free), around[0] if around else None]


def _directory_holds(entry: list) -> bool:
    path, capacity, facts = entry
    try:
        return _directory_facts(path, capacity) == facts
    except OSError:
        return False


# -- a miss ---------------------------------------------------------------------------


def _compile(policy: str, program, runtime: str, tmp: str, directory: str, key: str | None) -> Prepared:
    from memplace.launch.unwind_tables import prepare_tables, table_modules
    from memplace.placement.policy import places_nothing, site_modules
    from memplace.placement.policy_compile import prepare_inputs

    out = os.path.join(tmp, "policy.mpc")
    prepared = prepare_inputs(policy, program.path if program.kind == "elf" else None, out)
    named = site_modules(prepared.policy)  # modules the rules name: dlopen'ed ones too
    # `ld.so --list` once, for the sites and the tables
    libraries = prepared.resolver.libraries if prepared.resolver.exe else None
    modules = table_modules(program, runtime, named, libraries)
    try:
        unwind = prepare_tables(modules, unwind_tables_dir())
    except OSError:  # a cache we cannot write: this run's own tables, as the policy
        unwind = prepare_tables(modules, os.path.join(tmp, "unwind"))
        key = None
    warnings = [str(w) for w in prepared.warnings]
    node_scoped = any(d.scope == "node" and d.capacity for d in prepared.policy.devices.values())
    bare = places_nothing(prepared.policy)
    if key is not None:
        out = _record(key, directory, policy, program, runtime, prepared, named, modules,
                      warnings, out, node_scoped, bare)
    return Prepared(out, unwind, warnings, hit=False, node_scoped=node_scoped, places_nothing=bare)


def _record(key: str, directory: str, policy: str, program, runtime: str, prepared,
            named: list[str], modules: list[str], warnings: list[str], out: str, node_scoped: bool,
            bare: bool) -> str:
    """Keep the compiled file and its record in the cache; returns the file to use."""
    from memplace.elf import DEBUG_ROOT, build_id
    from memplace.units import Percent

    # The policy may have been edited while it compiled: cache only what the key names.
    try:
        policy_bytes = read_bytes(policy, "policy", POLICY_LIMIT)
    except UserError:
        return out
    if _first_key(policy, policy_bytes, program, runtime) != key or not _make_dir(directory):
        return out
    with open(out, "rb") as f:
        data = f.read()
    resolved = prepared.resolver.modules()  # the program and the libraries the sites saw
    files = {path: _stat(path) for path in [*(m.path for m in resolved), *named, runtime, LD_SO_CACHE]}
    for m in resolved:
        if m.build_id and len(m.build_id) > 2:  # a separate debug file may appear later
            debug = os.path.join(DEBUG_ROOT, m.build_id[:2], m.build_id[2:] + ".debug")
            files[debug] = _stat(debug)
    directories = []
    for dev in prepared.policy.devices.values():
        if dev.kind == "file" and dev.path:
            cap = dev.capacity
            if isinstance(cap, Percent):
                st = os.statvfs(dev.path)
                cap = cap.of(st.f_blocks * st.f_frsize)
            directories.append([dev.path, cap, _directory_facts(dev.path, cap)])
    mpc_name = _sha256([key, sorted([m.path, m.build_id] for m in resolved)]) + ".mpc"
    mpc = os.path.join(directory, mpc_name)
    if not _write_atomic(mpc, data):
        return out
    record = {"format": CACHE_FORMAT, "key": key, "files": sorted([p, st] for p, st in files.items()),
              "directories": directories, "warnings": warnings, "node_scoped": node_scoped,
              "places_nothing": bare,
              "unwind": [[path, build_id(path)] for path in modules],
              "mpc": mpc_name, "mpc_sha256": hashlib.sha256(data).hexdigest()}
    _write_atomic(os.path.join(directory, key + ".json"), json.dumps(record).encode())
    return mpc
