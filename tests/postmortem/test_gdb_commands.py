"""gdb's mp-tls / mp-keys (the file `memplace gdb-script` names): gdb's own answers where
gdb can read TLS, the programs' own printouts where gdb's `print` fails."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from postmortem_support import build, crash, i386_compiler, memplace_run, need, printed, wait_for_line

TLS_VARS = ["t_long", "t_arr", "t_pt", "t_name", "t_static"]


@pytest.fixture(scope="module")
def script():
    need("gdb", "gdb")
    path = memplace_run("gdb-script").stdout.strip()
    assert Path(path).is_file() and path.endswith("gdb_commands.py")
    return path


def gdb(script: str, *commands: str, target: list[str], pre: tuple = ()) -> str:
    """gdb -batch on `target` (EXE CORE, or -p PID) running `commands` after sourcing the script."""
    cmd = ["gdb", "-batch", "-nx", *[a for c in pre for a in ("-iex", c)], "-ex", f"source {script}"]
    for c in commands:
        cmd += ["-ex", c]
    r = subprocess.run(cmd + target, capture_output=True, text=True, timeout=180)
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out
    return out


def mp_tls_values(out: str) -> dict[tuple[int, str], str]:
    """mp-tls text -> {(tid, variable): value text}."""
    vals, tid = {}, None
    for line in out.splitlines():
        m = re.match(r"thread (\d+) \(tp ", line)
        if m:
            tid = int(m.group(1))
            continue
        m = re.match(r"  \S+?:(\w+) \(.*?\) = (.*)$", line)
        if m and tid is not None:
            vals[(tid, m.group(1))] = m.group(2)
    return vals


def gdb_prints(script: str, target: list[str], names: list[str], pre: tuple = ()) -> dict[tuple[int, str], str]:
    """gdb's own `print NAME` in every thread, one gdb run per name."""
    vals = {}
    for name in names:
        out = gdb(script, f"thread apply all print {name}", target=target, pre=pre)
        tid = None
        for line in out.splitlines():
            m = re.match(r"Thread \d+ \(.*LWP (\d+)\)", line)
            if m:
                tid = int(m.group(1))
            m = re.match(r"\$\d+ = (.*)", line)
            if m and tid is not None:
                vals[(tid, name)] = m.group(1)
    return vals


@pytest.fixture(scope="module")
def pie_core(tmp_path_factory):
    need("gcc", "gcc")
    tmp = tmp_path_factory.mktemp("gdbpie")
    build(tmp, "libt.c", "libt.so", "-shared", "-fPIC")
    exe = build(tmp, "tlsprog.c", "prog", "-DWITH_LIB", "-pthread", f"-L{tmp}", "-lt", f"-Wl,-rpath,{tmp}")
    core, out = crash(tmp, exe)
    return exe, core, out


def test_mp_tls_equals_gdb_print_on_a_dynamic_glibc_core(script, pie_core):
    exe, core, out = pie_core
    names = TLS_VARS + ["lib_counter"]
    theirs = gdb_prints(script, [str(exe), str(core)], names)
    assert len(theirs) == 5 * len(names), theirs
    ours = mp_tls_values(gdb(script, "mp-tls " + " ".join(names), target=[str(exe), str(core)]))
    assert ours == theirs
    # and the same text as `memplace tls` prints, piped
    text = gdb(script, "mp-tls t_long lib_counter", target=[str(exe), str(core)])
    plain = memplace_run("tls", str(core), "t_long", "lib_counter").stdout
    assert plain.strip() in text


def test_mp_tls_t_follows_gdbs_selected_thread(script, pie_core):
    exe, core, out = pie_core
    text = gdb(script, "thread 3", "mp-tls -t t_long", target=[str(exe), str(core)])
    lwp = int(re.search(r"Switching to thread 3 \(.*LWP (\d+)\)", text).group(1))
    vals = mp_tls_values(text)
    assert vals == {(lwp, "t_long"): printed(out)[(lwp, "t_long")]}
    assert "1 thread\n" in text


def test_mp_keys_equals_memplace_keys(script, tmp_path):
    need("gcc", "gcc")
    build(tmp_path, "libbad.c", "libbad.so", "-shared", "-fPIC", "-pthread")
    exe = build(tmp_path, "keysprog.c", "prog", "-pthread", f"-L{tmp_path}", "-lbad", f"-Wl,-rpath,{tmp_path}")
    core, out = crash(tmp_path, exe)
    text = gdb(script, "mp-keys", target=[str(exe), str(core)])
    plain = memplace_run("keys", str(core)).stdout
    assert "misuse: thread" in plain and plain.strip() in text


def test_bad_input_is_one_gdb_error_line(script, pie_core):
    exe, core, _ = pie_core
    text = gdb(script, "mp-tls -x", "mp-tls no_such_var", "mp-keys extra", target=[str(exe), str(core)])
    assert "-x: unknown option; usage: mp-tls" in text
    assert "no thread-local variable named no_such_var" in text
    assert "extra: unexpected argument" in text
    none = gdb(script, "mp-tls t_long", target=[str(exe)])  # no core, not running
    assert "no core file and no live process" in none


# gdb as on a system without a libthread_db for the program (no i386 one, or another glibc)
NO_THREAD_DB = ("set libthread-db-search-path /nonexistent",)


def _cases(tmp: Path, case: str):
    """(exe, gdb pre-commands) of a program whose TLS gdb's `print` cannot read."""
    if case == "musl-static":
        need("musl-gcc", "musl-tools")
        return build(tmp, "tlsprog.c", "prog", "-static", cc="musl-gcc"), ()
    if case == "musl-dynamic":
        need("musl-gcc", "musl-tools")
        return build(tmp, "tlsprog.c", "prog", cc="musl-gcc"), ()
    if case == "glibc-static-no-thread-db":
        need("gcc", "gcc")
        return build(tmp, "tlsprog.c", "prog", "-pthread", "-static"), NO_THREAD_DB
    cc, m32 = i386_compiler(tmp)
    return build(tmp, "tlsprog.c", "prog", *m32, "-pthread", cc=cc), NO_THREAD_DB


@pytest.mark.parametrize("case", ["musl-static", "musl-dynamic", "glibc-static-no-thread-db", "i386-no-thread-db"])
def test_mp_tls_where_gdb_print_fails(script, tmp_path, case):
    exe, pre = _cases(tmp_path, case)
    core, out = crash(tmp_path, exe)
    target = [str(exe), str(core)]
    theirs = gdb(script, "thread apply all print t_long", target=target, pre=pre)
    assert "Cannot find thread-local" in theirs and not re.search(r"^\$\d+ = ", theirs, re.M), theirs
    ours = mp_tls_values(gdb(script, "mp-tls t_long t_arr", target=target, pre=pre))
    want = {k: v for k, v in printed(out).items() if k[1] in ("t_long", "t_arr")}
    assert len(want) == 10 and ours == want


@pytest.mark.parametrize("cc", ["gcc", "musl-gcc"])
def test_mp_tls_on_a_live_process_gdb_attached_to(script, tmp_path, cc):
    """gdb has every thread ptrace-stopped: memplace reads /proc/PID/mem, and takes thread
    pointers it cannot get by ptrace itself (musl) from gdb's $fs_base."""
    need(cc, "musl-tools" if cc == "musl-gcc" else "gcc")
    exe = build(tmp_path, "tlsprog.c", "prog", *(["-pthread"] if cc == "gcc" else []), cc=cc)
    p = subprocess.Popen([str(exe), "wait"], stdout=subprocess.PIPE, text=True)
    try:
        lines = wait_for_line(p, "ready")
        text = gdb(script, "mp-tls t_long t_arr t_pt", target=["-p", str(p.pid)])
        want = {k: v for k, v in printed("\n".join(lines)).items() if k[1] in ("t_long", "t_arr")}
        ours = mp_tls_values(text)
        assert len(want) == 10 and {k: ours.get(k) for k in want} == want, text
        assert f"process {p.pid}:" in text
        assert p.poll() is None  # gdb detached at the end of -batch; the program still runs
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("cc", ["gcc", "musl-gcc"])
def test_mp_tls_on_a_program_gdb_runs_stopped_at_its_crash(script, tmp_path, cc):
    """`run` until a worker's SIGSEGV: `mp-tls -t` answers for the thread gdb stopped in."""
    need(cc, "musl-tools" if cc == "musl-gcc" else "gcc")
    exe = build(tmp_path, "tlsprog.c", "prog", *(["-pthread"] if cc == "gcc" else []), cc=cc)
    out = tmp_path / "out.txt"
    text = gdb(script, f"run segv > {out}", "mp-tls -t t_long t_arr", "kill", target=[str(exe)])
    assert "SIGSEGV" in text, text
    segv = {k: v for k, v in printed(out.read_text()).items() if k[1] in ("t_long", "t_arr")}
    tid = next(t for (t, n), v in segv.items() if n == "t_long" and v == "1002")  # worker 2 crashes
    assert mp_tls_values(text) == {(tid, "t_long"): "1002", (tid, "t_arr"): segv[(tid, "t_arr")]}, text
