"""aarch64 under a real arm64 Linux kernel: cores it writes, and live processes.

qemu-user's cores (test_aarch64.py) have neither NT_ARM_TLS nor NT_FILE. Here the
programs run in a QEMU `virt` guest booting Debian's arm64 kernel (tests/qemu/
guest_aarch64.py), which writes its own cores: every thread's tpidr_el0 is in an
NT_ARM_TLS note and every mapped file in NT_FILE. One boot runs every program; the
cores come back over the serial console; memplace reads them here, on the host, with
a sysroot that mirrors the guest (its /lib is the cross glibc the guest ran). For live
processes memplace runs in the guest, under Debian's arm64 Python.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

from postmortem_support import AARCH64_SYSROOT, build, memplace_json, memplace_run, need, printed
from test_keys import _check, _getspecific
from test_tls_glibc import VARS, _expect

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "qemu"))  # the guests live with the other QEMU tests
from guest_aarch64 import Aarch64Guest  # noqa: E402
from guest_base import GuestUnavailable, Step, received_file, send_file_step  # noqa: E402

pytestmark = pytest.mark.slow

CC = "aarch64-linux-gnu-gcc"
CORES = "/tmp/cores"
BOOT_TIMEOUT_S = 400.0  # one boot for everything: emulated, on a shared machine


def _crash_step(name: str, exe: Path, *args: str) -> list[Step]:
    """Run exe in its directory until the kernel dumps its core, then send the core."""
    run = (f"rm -f {CORES}/*; cd {exe.parent} && ulimit -c unlimited && ./{exe.name} {' '.join(args)}; "
           f"mv {CORES}/* {CORES}/{name}.saved")
    return [Step(name, run), send_file_step(f"{name}_core", f"{CORES}/{name}.saved")]


def _live_steps(name: str, exe: Path, memplace: str, command: str, text_command: str | None = None) -> list[Step]:
    """Start exe in `wait` mode, run `memplace COMMAND --pid PID --json` (and TEXT_COMMAND
    without --json) on it in the guest, then list its threads with their tracer and state,
    and kill it."""
    out, pid = f"/tmp/{name}.out", f"/tmp/{name}.pid"
    start = (f"cd {exe.parent} && ./{exe.name} wait > {out} & echo $! > {pid}; "
             f"for i in $(seq 300); do grep -q ready {out} && break; sleep 0.2; done; cat {out}; "
             f"grep -q ready {out}")  # not ready within a minute: the step fails
    read = (f"{memplace} {command} --pid $(cat {pid}) --json 2>/tmp/{name}.err "
            f"|| {{ cat /tmp/{name}.err; exit 1; }}")
    after = (f"p=$(cat {pid}); ls /proc/$p/task | sort -n | tr '\\n' ' '; echo; "
             "grep -h '^TracerPid\\|^State' /proc/$p/task/*/status; kill $p")
    # to a file, not the console (a terminal): the plain text a pipe gets
    text = [Step(f"{name}_text", f"{memplace} {text_command} --pid $(cat {pid}) > /tmp/{name}.txt; s=$?; "
                                 f"cat /tmp/{name}.txt; exit $s")] if text_command else []
    return [Step(f"{name}_start", start), Step(f"{name}_read", read), *text, Step(f"{name}_after", after)]


@pytest.fixture(scope="module")
def guest_run(tmp_path_factory):
    need(CC, "gcc-aarch64-linux-gnu")
    tmp = tmp_path_factory.mktemp("a64kernel")
    try:
        g = Aarch64Guest.find(tmp / "guest")
    except GuestUnavailable as e:
        pytest.skip(str(e))
    tls = tmp / "tls"
    tls.mkdir()
    build(tls, "libt.c", "libt.so", "-shared", "-fPIC", cc=CC)
    tls_exe = build(tls, "tlsprog.c", "prog", "-DWITH_LIB", "-pthread", f"-L{tls}", "-lt", f"-Wl,-rpath,{tls}", cc=CC)
    keys = tmp / "keys"
    keys.mkdir()
    build(keys, "libbad.c", "libbad.so", "-shared", "-fPIC", "-pthread", cc=CC)
    keys_exe = build(keys, "keysprog.c", "prog", "-pthread", f"-L{keys}", "-lbad", f"-Wl,-rpath,{keys}", cc=CC)
    for exe in (tls_exe, keys_exe):
        g.add_program(exe, str(exe))  # the same path as here: NT_FILE names files memplace can open
    g.add_program(tls / "libt.so", str(tls / "libt.so"))
    g.add_program(keys / "libbad.so", str(keys / "libbad.so"))
    try:
        memplace = g.add_memplace()
        no_python = None
    except GuestUnavailable as e:
        memplace, no_python = None, str(e)
    steps = [Step("setup", f"mkdir -p {CORES} && echo '{CORES}/core.%p' > /proc/sys/kernel/core_pattern "
                           "&& cat /proc/sys/kernel/core_pattern && uname -m")]
    steps += _crash_step("tls", tls_exe)
    steps += _crash_step("segv", tls_exe, "segv")
    steps += _crash_step("keys", keys_exe)
    if memplace:
        steps += _live_steps("live_tls", tls_exe, memplace, "tls " + " ".join(VARS), "tls t_arr")
        steps += _live_steps("live_keys", keys_exe, memplace, "keys")
    boot = g.boot(steps, timeout=BOOT_TIMEOUT_S)
    print(f"aarch64 guest boot: {boot.seconds:.1f} s, initramfs "
          f"{(g.workdir / 'initramfs.cpio.gz').stat().st_size >> 20} MiB")
    for name in ("setup", "tls", "tls_core", "segv", "segv_core", "keys", "keys_core"):
        step = boot.steps.get(name)
        if step is None or step.status is None:
            pytest.fail(f"guest step {name!r} did not finish (qemu exit {boot.returncode}, {boot.seconds:.1f} s); "
                        f"console tail:\n{boot.console[-3000:]}")
    assert boot.steps["setup"].output.split() == [f"{CORES}/core.%p", "aarch64"]
    cores = {}
    for name in ("tls", "segv", "keys"):
        cores[name] = tmp / f"{name}.core"
        cores[name].write_bytes(received_file(boot.steps[f"{name}_core"].output))
    return {"tls_exe": tls_exe, "keys_exe": keys_exe, "cores": cores, "boot": boot, "no_python": no_python,
            "sysroot": _guest_sysroot(tmp / "sysroot", tls, keys)}


def _guest_sysroot(root: Path, *program_dirs: Path) -> Path:
    """The guest's files as a sysroot for memplace: its /lib is the cross glibc, and the
    programs' directories (the same paths in the guest) are links to them."""
    root.mkdir(parents=True)
    (root / "lib").symlink_to(f"{AARCH64_SYSROOT}/lib")
    for d in program_dirs:
        (root / d.relative_to("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / d.relative_to("/")).symlink_to(d)
    return root


def _out(run, name: str) -> str:
    return run["boot"].steps[name].output


def _tps(out: str) -> dict[int, int]:
    return {tid: int(v, 16) for (tid, name), v in printed(out).items() if name == "tp"}


def _tls(core: Path, exe: Path | None, sysroot: Path, *args: str) -> dict:
    return memplace_json("tls", str(core), *(["--exe", str(exe)] if exe else []), "--sysroot", str(sysroot), *args)


def test_kernel_core_has_arm_tls_and_file_notes(guest_run):
    from memplace.postmortem.elfcore import Core
    from memplace.postmortem.threads import thread_pointer_from_notes

    c = Core(str(guest_run["cores"]["tls"]))
    assert c.elf.machine == 183  # EM_AARCH64
    want = _tps(_out(guest_run, "tls"))
    assert len(want) == 5
    assert all(t.tls_note is not None for t in c.threads)
    assert {t.tid: thread_pointer_from_notes(c.arch, c.elf.machine, t) for t in c.threads} == want
    files = {m.path for m in c.files}
    assert str(guest_run["tls_exe"]) in files and "/lib/libc.so.6" in files


def test_thread_pointers_come_from_nt_arm_tls(guest_run, monkeypatch):
    # With the notes, glibc's thread lists are not needed: forbid them and open the core.
    import memplace.postmortem.target as target_mod

    def forbidden(*_):
        raise AssertionError("thread pointers read from glibc's lists although the core has NT_ARM_TLS")

    monkeypatch.setattr(target_mod, "fill_thread_pointers_from_memory", forbidden)
    t = target_mod.open_core(str(guest_run["cores"]["tls"]), exe=str(guest_run["tls_exe"]),
                             sysroot=str(guest_run["sysroot"]))
    assert {th.tid: th.tp for th in t.threads} == _tps(_out(guest_run, "tls"))


def test_values_equal_printed(guest_run):
    out = _out(guest_run, "tls")
    doc = _tls(guest_run["cores"]["tls"], guest_run["tls_exe"], guest_run["sysroot"], *VARS)
    assert doc["arch"] == "aarch64" and doc["libc"] == "glibc"
    assert _expect(doc, out) == 5 * len(VARS)  # main + 4 workers; lib_counter is libt.so's
    crashing = int(re.search(r"^(\d+) crashing$", out, re.M).group(1))
    assert [t["tid"] for t in doc["threads"] if t["crashed"]] == [crashing]


def test_executable_found_from_nt_file(guest_run):
    # No --exe: the kernel's NT_FILE names the executable (and libt.so) by its guest path.
    doc = _tls(guest_run["cores"]["tls"], None, guest_run["sysroot"], *VARS)
    assert _expect(doc, _out(guest_run, "tls")) == 5 * len(VARS)


def test_segv_in_worker_is_the_crashed_thread(guest_run):
    doc = _tls(guest_run["cores"]["segv"], guest_run["tls_exe"], guest_run["sysroot"], "t_long", "t_pt")
    assert _expect(doc, _out(guest_run, "segv"), ["t_long", "t_pt"]) == 10
    crashed = [t for t in doc["threads"] if t["crashed"]]
    assert len(crashed) == 1 and crashed[0]["variables"][0]["text"] == "1002"


def test_keys_equal_getspecific_and_misuse_flagged(guest_run):
    doc = memplace_json("keys", str(guest_run["cores"]["keys"]), "--exe", str(guest_run["keys_exe"]),
                        "--sysroot", str(guest_run["sysroot"]))
    assert doc["arch"] == "aarch64" and doc["libc"] == "glibc"
    _check(doc, _out(guest_run, "keys"))


def test_human_output(guest_run):
    r = memplace_run("tls", str(guest_run["cores"]["tls"]), "t_arr", "--exe", str(guest_run["tls_exe"]),
                     "--sysroot", str(guest_run["sysroot"]))
    tid, text = next((t, v) for (t, n), v in printed(_out(guest_run, "tls")).items() if n == "t_arr")
    assert f"thread {tid}" in r.stdout and f"prog:t_arr (int [3]) = {text}" in r.stdout


def _live(guest_run, name: str) -> tuple[str, dict, list[str], list[str]]:
    """(what the program printed, memplace's JSON, its tids afterwards, their status lines)."""
    if guest_run["no_python"]:
        pytest.skip(guest_run["no_python"])
    steps = guest_run["boot"].steps
    for step in (f"{name}_start", f"{name}_read", f"{name}_after"):
        assert steps.get(step) and steps[step].status == 0, (step, steps.get(step))
    tids, *status = steps[f"{name}_after"].output.strip().split("\n")
    return steps[f"{name}_start"].output, json.loads(steps[f"{name}_read"].output), tids.split(), status


def _kept_running(tids: list[str], status: list[str]) -> None:
    """After memplace read it: no thread traced, all running or sleeping."""
    assert [s for s in status if s.startswith("TracerPid")] == ["TracerPid:\t0"] * len(tids)
    assert all(s.split()[1] in "SR" for s in status if s.startswith("State"))


def test_live_tls_in_the_guest(guest_run):
    # memplace tls --pid, run inside the guest by Debian's arm64 Python, on a running process.
    lines, doc, tids, status = _live(guest_run, "live_tls")
    assert doc["arch"] == "aarch64" and doc["libc"] == "glibc"
    assert _expect(doc, lines) == 5 * len(VARS)
    assert {t["tid"]: t["thread_pointer"] for t in doc["threads"]} == _tps(lines)
    assert not any(t["crashed"] for t in doc["threads"])
    assert sorted(int(x) for x in tids) == sorted(_tps(lines))
    _kept_running(tids, status)


def test_live_human_output_in_the_guest(guest_run):
    lines, _, _, _ = _live(guest_run, "live_tls")
    text = guest_run["boot"].steps["live_tls_text"]
    assert text.status == 0, text.output
    for (tid, name), value in printed(lines).items():
        if name == "t_arr":
            block = text.output.split(f"thread {tid}", 1)[1].split("thread ", 1)[0]
            assert f"prog:t_arr (int [3]) = {value}" in block, text.output


def test_live_keys_in_the_guest(guest_run):
    lines, doc, tids, status = _live(guest_run, "live_keys")
    assert doc["arch"] == "aarch64" and doc["libc"] == "glibc"
    _check(doc, lines)
    assert sorted(int(x) for x in tids) == sorted({tid for tid, _ in _getspecific(lines)})  # main and 3 workers
    _kept_running(tids, status)
