"""Helpers to build real C programs, let them crash, and run memplace on the cores."""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import memplace

SRC = str(Path(memplace.__file__).resolve().parent.parent)
HERE = Path(__file__).parent
PROGS = HERE / "progs"


def core_pattern_reason() -> str | None:
    """Why cores cannot be produced here (None if they can)."""
    try:
        pat = Path("/proc/sys/kernel/core_pattern").read_text().strip()
    except OSError:
        return "cannot read /proc/sys/kernel/core_pattern"
    if pat.startswith("|"):
        return f"core_pattern pipes cores to a program ({pat.split()[0]}); tests need a core file in the cwd"
    if "/" in pat:
        return f"core_pattern writes cores elsewhere ({pat})"
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
        if hard == 0:
            return "RLIMIT_CORE hard limit is 0"
    return None


def need(tool: str, package: str) -> None:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (Debian package {package})")


def i386_compiler(tmp: Path) -> tuple[str, list[str]]:
    """(compiler, flags) that build i386 programs here: the i686 cross gcc (which coexists
    with the aarch64 cross gcc on Debian), else `gcc -m32`; skip if neither links."""
    probe = tmp / "probe32.c"
    # the headers the test programs use, not only a link: `gcc -m32` without i386 kernel
    # headers (gcc-multilib alone) links an empty program but cannot build them
    probe.write_text("#include <pthread.h>\n#include <sys/syscall.h>\nint main(void){return 0;}\n")
    for cc, flags in (("i686-linux-gnu-gcc", []), ("gcc", ["-m32"])):
        if shutil.which(cc) and subprocess.run([cc, *flags, "-o", str(tmp / "probe32"), str(probe)],
                                               capture_output=True).returncode == 0:
            return cc, flags
    pytest.skip("no i386 compiler that links (Debian packages gcc-i686-linux-gnu, libc6-dev-i386-cross"
                " and libc6-i386)")


def build(tmp: Path, src: str, out: str, *flags: str, cc: str = "gcc") -> Path:
    """Compile PROGS/src (or several, space separated) into tmp/out."""
    exe = tmp / out
    srcs = [str(PROGS / s) for s in src.split()]
    cmd = [cc, "-g", "-O0", "-o", str(exe), *srcs, *flags]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"build failed: {' '.join(cmd)}\n{r.stderr}")
    return exe


def _unlimited_core():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def crash(tmp: Path, exe: Path, *args: str, env: dict | None = None, timeout: float = 60) -> tuple[Path, str]:
    """Run exe in tmp until it dumps core; return (core path, its stdout)."""
    reason = core_pattern_reason()
    if reason:
        pytest.skip(reason)
    for old in tmp.glob("core*"):
        old.unlink()
    e = dict(os.environ, **(env or {}))
    r = subprocess.run([str(exe), *args], cwd=tmp, capture_output=True, text=True, timeout=timeout,
                       preexec_fn=_unlimited_core, env=e)
    assert r.returncode < 0, f"{exe.name} did not crash: {r.returncode}\n{r.stderr}"
    cores = [p for p in tmp.glob("core*") if p.is_file()]
    if not cores:
        pytest.skip("the program crashed but no core file appeared (core_pattern or limits)")
    return cores[0], r.stdout


AARCH64_SYSROOT = "/usr/aarch64-linux-gnu"


def need_aarch64() -> None:
    """Skip unless the aarch64 cross gcc, its libc and qemu-user are installed."""
    need("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu")
    need("qemu-aarch64", "qemu-user")
    if not Path(AARCH64_SYSROOT, "lib", "libc.so.6").is_file():
        pytest.skip(f"no aarch64 glibc under {AARCH64_SYSROOT} (Debian package libc6-dev-arm64-cross)")


def qemu_crash(tmp: Path, exe: Path, *args: str, stack_kib: int | None = None,
               timeout: float = 120) -> tuple[Path, str]:
    """Run an aarch64 exe under qemu-user in tmp until it crashes; return (guest core, stdout).

    qemu writes the guest's core itself as qemu_PROG_DATE_PID.core in the cwd, whatever
    the kernel's core_pattern; the kernel may then dump qemu's own (host) core as `core`:
    a directory of that name makes the kernel skip it. `stack_kib` shrinks the main and
    thread stacks (qemu -s, RLIMIT_STACK), and so the core."""
    for old in tmp.glob("qemu_*.core"):
        old.unlink()
    host_core = tmp / "core"
    if not host_core.exists():
        host_core.mkdir()
    def limits():
        _unlimited_core()
        if stack_kib:
            resource.setrlimit(resource.RLIMIT_STACK, (stack_kib << 10, resource.RLIM_INFINITY))

    stack = ["-s", str(stack_kib << 10)] if stack_kib else []
    r = subprocess.run(["qemu-aarch64", *stack, "-L", AARCH64_SYSROOT, str(exe), *args], cwd=tmp,
                       capture_output=True, text=True, timeout=timeout, preexec_fn=limits)
    if host_core.is_file():
        host_core.unlink()
    assert r.returncode != 0, f"{exe.name} did not crash under qemu\n{r.stderr}"
    cores = sorted(tmp.glob("qemu_*.core"))
    assert len(cores) == 1, f"qemu wrote no guest core for {exe.name}: {r.stderr}"
    return cores[0], r.stdout


def memplace_run(*args: str, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "memplace", *args], capture_output=True, text=True,
                       env=env, timeout=timeout)
    if check and r.returncode != 0:
        pytest.fail(f"memplace {' '.join(args)} failed ({r.returncode}):\n{r.stderr}")
    return r


def memplace_json(*args: str) -> dict:
    return json.loads(memplace_run(*args, "--json").stdout)


def printed(stdout: str) -> dict[tuple[int, str], str]:
    """'TID NAME VALUE' lines the test programs print -> {(tid, name): value}."""
    out = {}
    for line in stdout.splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0].isdigit():
            out[(int(parts[0]), parts[1])] = parts[2]
    return out


def found(doc: dict) -> dict[tuple[int, str], dict]:
    """memplace tls --json -> {(tid, variable name): variable entry}."""
    return {(t["tid"], v["name"]): v for t in doc["threads"] for v in t["variables"]}


def wait_for_line(proc, marker: str, timeout: float = 20) -> list[str]:
    lines = []
    end = time.time() + timeout
    while time.time() < end:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith(marker):
            return lines
    raise AssertionError(f"no {marker!r} from the program: {lines}")
