"""Every argument of every command against bad input: one line on stderr that names the input,
exit status 2, no traceback, no hang, and the input files as they were.

The cases are what an adversarial user tried (issue 11): missing files, directories,
/dev/zero, /dev/urandom, FIFOs, empty files, binary garbage, nesting 100,000 deep, files
past the size limit, numbers past 2^64, negative / nan / wrong-typed options, and values
that name what this machine does not have. Each runs `memplace` in a subprocess with a
timeout; they run a few at a time (each is mostly the interpreter starting).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from memplace.inputs import LOCATIONS_LIMIT, POLICY_LIMIT, PROFILE_LIMIT, STATS_LIMIT
from support import assert_one_line_error, memplace_to_closed_pipe

DEEP = 100_000
GOOD_POLICY = 'default = "system"\n[[rules]]\nsite = "libx.so+0x10"\ndevice = "system"\n'
GOOD_PROFILE = {"format": "memplace-profile", "version": 1, "engine": "runtime", "command": ["true"],
                "clock": {"unit": "ns", "duration": 1000, "window": 10},
                "sites": [{"frames": [{"module": "/bin/true", "offset": "0x10"}],
                           "allocations": 1, "bytes": 8, "peak_live_bytes": 8}]}
GOOD_STATS = {"version": 1, "command": ["true"], "policy": None, "returncode": 0, "processes": [],
              "totals": {"devices": [{"name": "hbm", "allocations": 1, "bytes": 8, "peak": 8,
                                      "fallbacks": {"full": 0}}], "rules": []}}
GOOD_LOCATIONS = "a.c:1 > b.c:2 @ posix\n"


def _profile(**site) -> str:
    return json.dumps({**GOOD_PROFILE, "sites": [{**GOOD_PROFILE["sites"][0], **site}]})


def _frame(**frame) -> str:
    return _profile(frames=[{**GOOD_PROFILE["sites"][0]["frames"][0], **frame}])


def _stats_device(**fields) -> str:
    device = {**GOOD_STATS["totals"]["devices"][0], **fields}
    return json.dumps({**GOOD_STATS, "totals": {"devices": [device], "rules": []}})


# Bad contents by the kind of file: name -> (file contents, words the error line must hold).
COMMON = {
    "empty": ("", None),
    "garbage": (bytes(range(256)) * 8, None),
}
TOML = {
    "deep-array": ("a = " + "[" * DEEP + "]" * DEEP + "\n", "nested more than"),
    "deep-inline-table": ("a = " + "{b=" * DEEP + "1" + "}" * DEEP + "\n", "nested more than"),
    "long-dotted-key": (".".join(["k"] * DEEP) + " = 1\n", "dotted key"),
    "not-toml": ("[devices\nkind = \n", "not valid TOML"),
    "capacity-1e30": ('[devices.d]\nkind = "numa"\nnodes = [0]\ncapacity = ' + "1" + "0" * 30 + "\n", "capacity"),
    "offset-2^80": (f'[[rules]]\nsite = "libx.so+{1 << 80:#x}"\ndevice = "system"\n', "above 2^64-1"),
    "node-99": ('[devices.d]\nkind = "numa"\nnodes = [99]\n', "node 99"),
    "wrong-type": ('default = 5\n', "default"),
}
JSON_PROFILE = {
    "deep": ("[" * DEEP + "]" * DEEP, "nested more than"),
    "deep-object": ('{"a":' * DEEP + "1" + "}" * DEEP, "nested more than"),
    "not-json": ('{"format": "memplace-profile", "version": 1, ', "profile"),
    "module-null": (_frame(module=None), "'module' is null"),
    "offset-2^80": (_frame(offset=hex(1 << 80)), "offset"),
    "bytes-1e30": (_profile(bytes=10 ** 30), "'bytes'"),
    "allocations-negative": (_profile(allocations=-1), "'allocations'"),
    "clock-parsecs": (json.dumps({**GOOD_PROFILE, "clock": {"unit": "parsecs"}}), "parsecs"),
    "duration-nan": ('{"format": "memplace-profile", "version": 1, "engine": "runtime", "sites": [], '
                     '"clock": {"duration": NaN}}', "duration"),
    "wrong-type": ('["memplace-profile"]', "not a memplace profile"),
}
JSON_STATS = {
    "deep": ("[" * DEEP + "]" * DEEP, "nested more than"),
    "not-json": ('{"version": 1, ', "not memplace run statistics"),
    "bytes-1e30": (_stats_device(bytes=10 ** 30), "bytes"),
    "peak-negative": (_stats_device(peak=-5), "peak"),
    "unknown-fallback": (_stats_device(fallbacks={"full": 0, "sunspots": 3}), "sunspots"),
    "name-number": (_stats_device(name=7), "name"),
    "returncode-huge": (json.dumps({**GOOD_STATS, "returncode": 10 ** 30}), "returncode"),
    "unwinds-text": (json.dumps({**GOOD_STATS, "totals": {**GOOD_STATS["totals"], "unwinds": "many"}}),
                     "unwinds"),
    "wrong-type": ("[1, 2]", "not memplace run statistics"),
}
LOCATIONS = {
    "no-allocator": ("a.c:1 > b.c:2\n", "not a location line"),
    "offset-2^80": (f"/bin/true!{1 << 80:#x} @ posix\n", "out of range"),
    "line-huge": ("a.c:" + "9" * 30 + " @ posix\n", "out of range"),
    "size-1e30": ("# Memory configuration for hbm with size " + "1" * 31 + " bytes\na.c:1 @ posix\n", "out of range"),
}
DEFINITIONS = {
    "setting-first": ("Size 4 MBytes\n", "before any"),
    "size-1e30": ("# Memory configuration for allocator posix\nSize " + "1" * 31 + " GBytes\n", "out of range"),
    "size-dots": ("# Memory configuration for allocator posix\nSize 1.2.3 MBytes\n", "not a number"),
}
LIMITS = {"toml": POLICY_LIMIT, "profile": PROFILE_LIMIT, "stats": STATS_LIMIT, "locations": LOCATIONS_LIMIT,
          "definitions": LOCATIONS_LIMIT}
SPECIAL = ("missing", "directory", "/dev/zero", "/dev/urandom", "fifo", "too-large")


class Files:
    """The inputs of the table, made once: good ones, and each bad kind of each format."""

    def __init__(self, root: Path):
        self.root = root
        (root / "dir").mkdir()
        os.mkfifo(root / "fifo")
        self.good = {"toml": self.write("good.toml", GOOD_POLICY), "profile": self.write("good.json", json.dumps(GOOD_PROFILE)),
                     "stats": self.write("good-stats.json", json.dumps(GOOD_STATS)),
                     "locations": self.write("good.loc", GOOD_LOCATIONS), "definitions": self.write("good.def", "")}
        self.out = str(root / "out" / "o")
        (root / "out").mkdir()

    def write(self, name: str, content: str | bytes) -> str:
        path = self.root / name
        path.write_bytes(content) if isinstance(content, bytes) else path.write_text(content)
        return str(path)

    def special(self, kind: str, fmt: str) -> str:
        if kind == "missing":
            return str(self.root / "missing")
        if kind == "directory":
            return str(self.root / "dir")
        if kind == "fifo":
            return str(self.root / "fifo")
        if kind == "too-large":  # sparse: refused by its size before a byte is read
            path = self.root / f"large.{fmt}"
            if not path.exists():
                with open(path, "wb") as f:
                    f.truncate(LIMITS[fmt] + 1)
            return str(path)
        return kind  # /dev/zero, /dev/urandom

    def state(self) -> dict:
        """What must not change: each file's type and contents (by hash; large ones by size)."""
        out = {}
        for p in sorted(self.root.iterdir()):
            if p.name in ("out", "cache"):  # what the commands may write
                continue
            st = p.lstat()
            if stat.S_ISREG(st.st_mode) and st.st_size < (1 << 20):
                out[p.name] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[p.name] = (stat.S_IFMT(st.st_mode), st.st_size, st.st_mtime_ns)
        return out


# Every argument that names an input file: (id, format, argv given the file and the good files).
FILE_ARGUMENTS = [
    ("policy-check", "toml", lambda f, g: ["policy", "check", f]),
    ("policy-compile", "toml", lambda f, g: ["policy", "compile", f, "-o", g.out]),
    ("policy-show", "toml", lambda f, g: ["policy", "show", f]),
    ("run--policy", "toml", lambda f, g: ["run", "--policy", f, "--", "true"]),
    ("report--policy", "toml", lambda f, g: ["report", "--profile", g.good["profile"], "--policy", f]),
    ("interop-export", "toml", lambda f, g: ["interop", "export", f, "-o", g.out]),
    ("advise", "profile", lambda f, g: ["advise", f, "--device", "a=system,latency=1"]),
    ("advise-second", "profile", lambda f, g: ["advise", g.good["profile"], f, "--device", "a=system,latency=1"]),
    ("report--profile", "profile", lambda f, g: ["report", "--profile", f]),
    ("profile-merge", "profile", lambda f, g: ["profile", "merge", g.good["profile"], f, "-o", g.out]),
    ("report--stats", "stats", lambda f, g: ["report", "--stats", f]),
    ("interop-import", "locations", lambda f, g: ["interop", "import", f, "-o", g.out]),
    ("interop-import--definitions", "definitions",
     lambda f, g: ["interop", "import", g.good["locations"], "--definitions", f, "-o", g.out]),
]
CONTENTS = {"toml": TOML, "profile": JSON_PROFILE, "stats": JSON_STATS, "locations": LOCATIONS,
            "definitions": DEFINITIONS}
# Valid where they appear: an empty policy (all defaults) and empty definitions; `policy
# show` and `interop export` do not check against the machine (node 99 may be elsewhere).
CHECKED_POLICY_PROBLEMS = {"capacity-1e30", "offset-2^80", "node-99", "wrong-type"}
ACCEPTED = {("toml", "empty"), ("definitions", "empty")}
NOT_CHECKED_HERE = {("policy-show", "node-99"), ("interop-export", "node-99"), ("report--policy", "node-99")}


def _file_cases():
    for arg, fmt, argv in FILE_ARGUMENTS:
        for kind in SPECIAL:
            yield pytest.param(arg, fmt, kind, argv, "", id=f"{arg}-{kind}")
        for kind in {**COMMON, **CONTENTS[fmt]}:
            if (fmt, kind) in ACCEPTED or (arg, kind) in NOT_CHECKED_HERE:
                continue
            yield pytest.param(arg, fmt, kind, argv, "", id=f"{arg}-{kind}")


# Options, and arguments that are not input files: (id, argv given the good files, words of the error).
OPTION_CASES = [
    ("advise--time-limit-negative", lambda g: ["advise", g.good["profile"], "--time-limit", "-1"], "--time-limit"),
    ("advise--time-limit-nan", lambda g: ["advise", g.good["profile"], "--time-limit", "nan"], "--time-limit"),
    ("advise--time-limit-inf", lambda g: ["advise", g.good["profile"], "--time-limit", "inf"], "--time-limit"),
    ("advise--top-negative", lambda g: ["advise", g.good["profile"], "--top", "-5"], "--top"),
    ("advise--top-word", lambda g: ["advise", g.good["profile"], "--top", "many"], "--top"),
    ("advise--shared-memory-junk", lambda g: ["advise", g.good["profile"], "--shared-memory", "lots"],
     "--shared-memory"),
    ("advise--shared-memory-zero", lambda g: ["advise", g.good["profile"], "--shared-memory", "0"], "--shared-memory"),
    ("advise--cache-room-junk", lambda g: ["advise", g.good["profile"], "--shared-memory", "1GiB",
                                           "--cache-room", "2 parsecs"], "--cache-room"),
    ("advise--ranks-per-node-zero", lambda g: ["advise", g.good["profile"], "--ranks-per-node", "0"], "--ranks-per-node"),
    ("advise--ranks-per-node-huge", lambda g: ["advise", g.good["profile"], "--ranks-per-node", "1" * 30],
     "--ranks-per-node"),
    ("advise--model", lambda g: ["advise", g.good["profile"], "--model", "vibes"], "--model"),
    ("advise--method", lambda g: ["advise", g.good["profile"], "--method", "guess"], "--method"),
    ("advise--device-node-99", lambda g: ["advise", g.good["profile"], "--device", "a=numa:99,latency=1",
                                          "--policy-out", g.out], "node 99"),
    ("advise--device-node-range", lambda g: ["advise", g.good["profile"], "--device", "a=numa:0-99999999999"], "node"),
    ("advise--device-latency-huge", lambda g: ["advise", g.good["profile"], "--device", "a=system,latency=" + "9" * 400],
     "latency"),
    ("advise--device-bandwidth-zero", lambda g: ["advise", g.good["profile"], "--device", "a=system,bandwidth=0"],
     "bandwidth"),
    ("advise--device-junk", lambda g: ["advise", g.good["profile"], "--device", "junk"], "--device"),
    ("advise--capacity-1e30", lambda g: ["advise", g.good["profile"], "--device", "a=system,latency=1",
                                         "--device", "b=numa:0,latency=1", "--capacity", "b=" + "1" * 31], "--capacity"),
    ("advise--default-missing", lambda g: ["advise", g.good["profile"], "--device", "a=system,latency=1",
                                           "--default", "nope"], "--default"),
    ("advise--policy-out-dir", lambda g: ["advise", g.good["profile"], "--policy-out", str(g.root / "dir")], "directory"),
    ("report--top-negative", lambda g: ["report", "--profile", g.good["profile"], "--top", "-5"], "--top"),
    ("report--html-dir", lambda g: ["report", "--profile", g.good["profile"], "--html", str(g.root / "dir")], "directory"),
    ("report--html-missing-dir", lambda g: ["report", "--profile", g.good["profile"], "--html",
                                            str(g.root / "no" / "r.html")], "does not exist"),
    ("report-nothing", lambda g: ["report"], "nothing to report"),
    ("policy-compile-o-dir", lambda g: ["policy", "compile", g.good["toml"], "-o", str(g.root / "dir")], "directory"),
    ("policy-check--sysfs-missing", lambda g: ["policy", "check", g.good["toml"], "--sysfs", str(g.root / "missing")],
     "sysfs"),
    ("policy-check--sysfs-devzero", lambda g: ["policy", "check", g.good["toml"], "--sysfs", "/dev/zero"], "/dev/zero"),
    ("policy-check--exe-missing", lambda g: ["policy", "check", g.good["toml"], "--exe", str(g.root / "missing")],
     "missing"),
    ("policy-check--exe-fifo", lambda g: ["policy", "check", g.good["toml"], "--exe", str(g.root / "fifo")], "fifo"),
    ("policy-check--exe-devzero", lambda g: ["policy", "check", g.good["toml"], "--exe", "/dev/zero"], "/dev/zero"),
    ("policy-compile--exe-dir", lambda g: ["policy", "compile", g.good["toml"], "-o", g.out, "--exe",
                                           str(g.root / "dir")], "dir"),
    ("devices--sysfs-missing", lambda g: ["devices", "--sysfs", str(g.root / "missing")], "missing"),
    ("devices--sysfs-fifo", lambda g: ["devices", "--sysfs", str(g.root / "fifo")], "fifo"),
    ("profile--engine", lambda g: ["profile", "--engine", "magic", "--", "true"], "--engine"),
    ("profile--rate-negative", lambda g: ["profile", "--out", g.out + "-dir", "--rate", "-1", "--", "true"], "--rate"),
    ("profile--rate-huge", lambda g: ["profile", "--out", g.out + "-dir", "--rate", str(10**30), "--", "true"], "--rate"),
    ("profile--rate-dhat", lambda g: ["profile", "--engine", "dhat", "--rate", "100", "--", "true"], "--rate"),
    ("profile-run-missing", lambda g: ["profile", "--out", g.out + "-dir", "--", str(g.root / "missing")], "missing"),
    ("profile-run-fifo", lambda g: ["profile", "--out", g.out + "-dir", "--", str(g.root / "fifo")], "fifo"),
    ("profile-run-devzero", lambda g: ["profile", "--out", g.out + "-dir", "--", "/dev/zero"], "/dev/zero"),
    ("profile-run--out-devnull", lambda g: ["profile", "--out", "/dev/null", "--", "true"], "/dev/null"),
    ("run-missing", lambda g: ["run", "--", str(g.root / "missing")], "missing"),
    ("run-directory", lambda g: ["run", "--", str(g.root / "dir")], "dir"),
    ("run-fifo", lambda g: ["run", "--", str(g.root / "fifo")], "fifo"),
    ("run-garbage", lambda g: ["run", "--policy", g.good["toml"], "--", g.write("garbage.exe", b"\x7fELF" + bytes(300))],
     "garbage.exe"),
    ("profile-merge-o-dir", lambda g: ["profile", "merge", g.good["profile"], "-o", str(g.root / "dir")], "directory"),
    ("run--stats-dir", lambda g: ["run", "--policy", g.good["toml"], "--stats", str(g.root / "dir"), "--", "true"],
     "dir"),
    ("run--stats-no-policy", lambda g: ["run", "--stats", g.out, "--", "true"], "--policy"),
    ("interop-import--allocator", lambda g: ["interop", "import", g.good["locations"], "-o", g.out,
                                             "--allocator", "junk"], "--allocator"),
    ("interop-import--device", lambda g: ["interop", "import", g.good["locations"], "-o", g.out,
                                          "--device", "x=numa:99"], "node 99"),
    ("interop-import-o-dir", lambda g: ["interop", "import", g.good["locations"], "-o", str(g.root / "dir")],
     "directory"),
    ("interop-export--form", lambda g: ["interop", "export", g.good["toml"], "-o", g.out, "--form", "poetry"], "--form"),
    ("interop-export--definitions-out-dir", lambda g: ["interop", "export", g.good["toml"], "-o", g.out,
                                                       "--definitions-out", str(g.root / "dir")], "directory"),
    ("interop-export--allocator", lambda g: ["interop", "export", g.good["toml"], "-o", g.out, "--allocator", "="],
     "--allocator"),
    ("tls-missing", lambda g: ["tls", str(g.root / "missing")], "missing"),
    ("tls-fifo", lambda g: ["tls", str(g.root / "fifo")], "fifo"),
    ("tls-devzero", lambda g: ["tls", "/dev/zero"], "/dev/zero"),
    ("tls-directory", lambda g: ["tls", str(g.root / "dir")], "dir"),
    ("tls-garbage", lambda g: ["tls", g.write("garbage.core", bytes(range(256)) * 4)], "garbage.core"),
    ("tls--pid-negative", lambda g: ["tls", "--pid", "-1"], "--pid"),
    ("tls--pid-huge", lambda g: ["tls", "--pid", "1" * 30], "--pid"),
    ("tls--pid-word", lambda g: ["tls", "--pid", "self"], "--pid"),
    ("tls--thread-negative", lambda g: ["tls", "--pid", "1", "--thread", "-3"], "--thread"),
    ("tls-no-core", lambda g: ["tls"], "CORE"),
    ("tls--exe-fifo", lambda g: ["tls", "--exe", str(g.root / "fifo"), str(g.root / "missing")], "missing"),
    ("keys--sysroot-fifo", lambda g: ["keys", "--sysroot", str(g.root / "fifo"), str(g.root / "missing")], "--sysroot"),
    ("keys-missing", lambda g: ["keys", str(g.root / "missing")], "missing"),
    ("keys-fifo", lambda g: ["keys", str(g.root / "fifo")], "fifo"),
    ("keys-urandom", lambda g: ["keys", "/dev/urandom"], "/dev/urandom"),
    ("keys--pid-zero", lambda g: ["keys", "--pid", "0"], "--pid"),
    ("keys-core-and-pid", lambda g: ["keys", "--pid", "1", g.good["toml"]], "not both"),
    ("demo--dir-missing-parent", lambda g: ["demo", "--dir", str(g.root / "missing" / "demo")], "missing"),
    ("demo--dir-file", lambda g: ["demo", "--dir", g.good["toml"]], "good.toml"),
    ("demo--dir-under-file", lambda g: ["demo", "--dir", g.good["toml"] + "/demo"], "good.toml"),
    ("gdb-script-extra-argument", lambda g: ["gdb-script", "extra"], "extra"),
    ("unknown-command", lambda g: ["frobnicate"], "frobnicate"),
]


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    """All cases run once, four at a time; each test below checks its own result."""
    g = Files(tmp_path_factory.mktemp("bad-input"))
    cases = {}
    for p in _file_cases():
        arg, fmt, kind, argv, _ = p.values
        if kind in SPECIAL:
            f = g.special(kind, fmt)
        else:
            content = {**COMMON, **CONTENTS[fmt]}[kind][0]
            f = g.write(f"{arg}.{kind}", content)
        cases[p.id] = (argv(f, g), f)
    for name, argv, _ in OPTION_CASES:
        cases[name] = (argv(g), None)
    env = dict(os.environ, MEMPLACE_CACHE=str(g.root / "cache"), COLUMNS="200")
    before = g.state()

    def run(item):
        name, (argv, _) = item
        try:
            return name, subprocess.run([sys.executable, "-m", "memplace", *argv], capture_output=True, text=True,
                                        errors="replace", env=env, cwd=g.root, timeout=120, stdin=subprocess.DEVNULL)
        except (subprocess.TimeoutExpired, OSError) as e:  # reported by the case's own test
            return name, e

    with ThreadPoolExecutor(4) as pool:
        results = dict(pool.map(run, cases.items()))
    return g, cases, results, before


def _check(table, case: str, *needles: str) -> None:
    g, cases, results, before = table
    r = results[case]
    assert not isinstance(r, subprocess.TimeoutExpired), f"memplace {' '.join(cases[case][0])}: did not end"
    assert not isinstance(r, OSError), r
    assert_one_line_error(r, *needles)


@pytest.mark.parametrize("arg,fmt,kind,argv,_", list(_file_cases()))
def test_a_bad_input_file_is_one_line_naming_it(table, arg, fmt, kind, argv, _):
    g, cases, results, before = table
    case = f"{arg}-{kind}"
    f = cases[case][1]
    words = {**COMMON, **CONTENTS[fmt]}.get(kind, (None, None))[1]
    if arg == "policy-check" and kind in CHECKED_POLICY_PROBLEMS:
        # `policy check` reports what is wrong inside a policy on stdout, one line each
        r = results[case]
        assert r.returncode == 2 and not r.stderr and "Traceback" not in r.stdout, (r.returncode, r.stderr)
        assert any(line.startswith(f"error: {f}: ") and words in line for line in r.stdout.splitlines()), r.stdout
        return
    _check(table, case, f, *([words] if words else []))


@pytest.mark.parametrize("case,argv,words", OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_a_bad_option_or_argument_is_one_line_naming_it(table, case, argv, words):
    _check(table, case, words)


def test_no_input_was_modified(table):
    g, cases, results, before = table
    after = g.state()
    changed = {k for k in before if before[k] != after.get(k)}
    assert not changed, changed
    assert stat.S_ISFIFO(os.stat(g.root / "fifo").st_mode)
    assert stat.S_ISCHR(os.stat("/dev/zero").st_mode) and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_the_table_covers_every_command_and_option(table):
    """Each option of each command (as --help lists them, bar flags) appears in some case."""
    from click import Group, Option

    from memplace.cli import SUBCOMMANDS, cli

    g, cases, results, before = table
    used = {a for argv, _ in cases.values() for a in argv}
    used_commands = {argv[0] for argv, _ in cases.values()}
    missing = []
    for name in SUBCOMMANDS:
        cmd = cli.get_command(None, name)
        assert name in used_commands, name
        subs = cmd.commands.values() if isinstance(cmd, Group) else [cmd]
        for sub in subs:
            for p in sub.params:
                if isinstance(p, Option) and not p.is_flag and not any(o in used for o in p.opts):
                    missing.append(f"{name} {sub.name} {p.opts}")
    assert not missing, missing


def test_an_input_too_big_for_a_memory_limit_is_one_line_naming_it(tmp_path):
    """`ulimit -v` and a policy just under the size limit: MemoryError was a traceback."""
    import resource

    policy = tmp_path / "big.toml"
    with open(policy, "w") as f:
        f.write('[[rules]]\nsite = "libx.so+0x10"\ndevice = "system"\nname = "' + "x" * (60 << 20) + '"\n')

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (400 << 20, 400 << 20))

    r = subprocess.run([sys.executable, "-m", "memplace", "policy", "check", str(policy)], capture_output=True,
                       text=True, timeout=120, preexec_fn=limit)
    assert_one_line_error(r, str(policy), "memory")


@pytest.mark.parametrize("argv", [
    ["--help"], ["--version"], ["policy", "--help"], ["devices"], ["devices", "--json"],
    ["policy", "check", "{toml}"], ["policy", "check", "--json", "{toml}"], ["policy", "show", "{toml}"],
    ["policy", "show", "--json", "{toml}"], ["policy", "compile", "{toml}", "-o", "{out}.mpc"],
    ["report", "--profile", "{profile}"], ["report", "--stats", "{stats}", "--json"],
    ["advise", "{profile}", "--device", "a=system,latency=1"],
    ["advise", "{profile}", "--device", "a=system,latency=1", "--json"],
    ["profile", "merge", "{profile}", "-o", "{out}.json"],
    ["interop", "import", "{locations}", "-o", "{out}.toml", "--json"],
    ["interop", "export", "{toml}", "-o", "{out}.loc"],
], ids=lambda a: "-".join(x for x in a if not x.startswith("{")))
def test_a_reader_that_stops_early_ends_memplace_quietly(table, argv):
    """`memplace ... | head -1`: status 0 and no error on stderr, like the reader's other writers
    (a policy's warnings, on stderr, still show)."""
    g = table[0]
    args = [a.format(out=g.out, **g.good) for a in argv]
    r = memplace_to_closed_pipe(*args, env=dict(os.environ, MEMPLACE_CACHE=str(g.root / "cache")))
    assert r.returncode == 0, (args, r.returncode, r.stderr)
    assert not any(w in r.stderr for w in ("Traceback", "Broken pipe", "BrokenPipe", "Exception ignored")), r.stderr


@pytest.mark.parametrize("what", ["70000-rules", "symbol-plus-offset-past-2^64"])
def test_policy_check_rejects_exactly_what_compile_and_run_reject(tmp_path, cc, what):
    """`check` said OK to both; `compile` and `run` refused them (a struct.error traceback, for
    the second). Now all three give the compiler's words."""
    exe = cc("int main(void) { return 0; }\n", "prog")
    if what == "70000-rules":
        text = "".join(f'[[rules]]\nsite = "libx.so+{i:#x}"\ndevice = "system"\n' for i in range(70_000))
        words = "too large to compile"
    else:
        text = f'[[rules]]\nsite = "main+{(1 << 64) - 1:#x}"\ndevice = "system"\n'
        words = "above 2^64-1"
    policy = tmp_path / "p.toml"
    policy.write_text(text)
    env = dict(os.environ, MEMPLACE_CACHE=str(tmp_path / "cache"))

    def mp(*args):
        return subprocess.run([sys.executable, "-m", "memplace", *args], capture_output=True, text=True,
                              env=env, timeout=300)

    check = mp("policy", "check", str(policy), "--exe", str(exe))
    assert check.returncode == 2 and "Traceback" not in check.stdout + check.stderr, check.stderr
    errors = [line for line in check.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and words in errors[0], errors
    compiled = mp("policy", "compile", str(policy), "-o", str(tmp_path / "p.mpc"), "--exe", str(exe))
    assert_one_line_error(compiled, str(policy), words)
    assert compiled.stderr.strip() == "memplace: " + errors[0][len("error: "):]
    assert not (tmp_path / "p.mpc").exists()
    run = mp("run", "--policy", str(policy), "--", str(exe))
    assert_one_line_error(run, str(policy), words)
