"""The runtime on another architecture, under qemu-user: the runtime cross-built from this
tree (tools/cross_runtime.py), programs cross-compiled in the test run, run with the
runtime preloaded in the guest, and their profiles read as `memplace profile` reads them.

The launcher (`memplace run`/`profile`) refuses a program of another machine, so these
helpers do its part by hand: the unwind tables of the program, the target's libc and the
runtime (launch/unwind_tables.py), the environment, and the profile files
(profiling/runtime_engine.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import cross_runtime  # noqa: E402

_built: dict[str, Path] = {}


def target_tools(target: str) -> tuple[str, str, str]:
    """(cross compiler, qemu-user binary or "" for a native run, the target's libc root), or skip."""
    compiler, _, sysroot = cross_runtime.TARGETS[target]
    qemu = f"qemu-{target}" if target == "aarch64" else ""
    for tool in (compiler, "cmake", *([qemu] if qemu else [])):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed")
    return compiler, qemu, sysroot


def cross_runtime_for(target: str) -> Path:
    """libmemplace.so for `target`, built once per test session (skip if it cannot be)."""
    target_tools(target)
    if target not in _built:
        out = Path(tempfile.mkdtemp(prefix=f"memplace-cross-{target}-"))
        try:
            _built[target] = cross_runtime.build_runtime(target, out)
        except cross_runtime.CrossBuildError as e:
            pytest.skip(f"cannot cross-build the runtime for {target}: {e}")
    return _built[target]


def cross_compile(target: str, tmp_path: Path, name: str, source: str, *flags: str) -> Path:
    compiler, _, _ = target_tools(target)
    src = tmp_path / f"{name}.c"
    src.write_text(source)
    exe = tmp_path / name
    subprocess.run([compiler, "-g", *(flags or ("-O1",)), "-pthread", "-o", str(exe), str(src)],
                   check=True, capture_output=True, text=True)
    return exe


def guest_libc(target: str) -> str:
    _, _, sysroot = cross_runtime.TARGETS[target]
    return os.path.join(sysroot, "lib", "libc.so.6")


def run_in_guest(target: str, exe: Path, args: list[str], env: dict[str, str], preload: Path | None,
                 timeout: int = 600) -> subprocess.CompletedProcess:
    """`exe args` under qemu-user with `env` added (LD_PRELOAD set in the guest only)."""
    _, qemu, sysroot = target_tools(target)
    full = dict(os.environ, **env)
    full.pop("LD_PRELOAD", None)
    if not qemu:  # i386: the kernel runs it (libc6-i386)
        if preload:
            full["LD_PRELOAD"] = str(preload)
        return subprocess.run([str(exe), *args], env=full, capture_output=True, text=True, timeout=timeout)
    cmd = [qemu, "-L", sysroot, *(["-E", f"LD_PRELOAD={preload}"] if preload else []), str(exe), *args]
    return subprocess.run(cmd, env=full, capture_output=True, text=True, timeout=timeout)


def bare_and_transparent(target: str, tmp_path: Path, exe: Path):
    """The program run without and with the target's runtime preloaded (no policy); the
    runtime's status line must say it ran, transparent. (bare, under) CompletedProcesses."""
    bare = run_in_guest(target, exe, [], {}, None)
    status = tmp_path / "runtime-status"
    status.write_text("")
    under = run_in_guest(target, exe, [], {"MEMPLACE_STATUS": str(status)}, cross_runtime_for(target))
    assert " mode=transparent " in status.read_text(), status.read_text()  # the runtime was there
    return bare, under


def unwind_tables(target: str, exe: Path, runtime: Path, where: Path) -> str:
    from memplace.launch.unwind_tables import prepare_tables

    return prepare_tables([str(exe), guest_libc(target), str(runtime)], str(where))


def profile_in_guest(target: str, tmp_path: Path, exe: Path, *args: str, rate: int = 1000):
    """(the run, its profiles symbolized) of `exe args` with the profiling runtime."""
    from memplace.profiling import runtime_engine
    from memplace.profiling.symbolize import symbolize_profile

    runtime = cross_runtime_for(target)
    work = tmp_path / f"profile-{exe.name}"
    work.mkdir()
    tables = unwind_tables(target, exe, runtime, tmp_path / "unwind")
    r = run_in_guest(target, exe, list(args), {"MEMPLACE_PROFILE": str(work), "MEMPLACE_PROFILE_DEPTH": "4",
                                               "MEMPLACE_SAMPLE_RATE": str(rate), "MEMPLACE_UNWIND": tables},
                     runtime)
    profiles = []
    _, _, sysroot = cross_runtime.TARGETS[target]
    for path in sorted(work.glob("profile.*.txt")):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):  # the guest's /lib/... is the target's libc root's
            words = line.split(" ", 5)
            if words[0] == "module" and len(words) == 6 and words[5].startswith("/") \
                    and os.path.exists(sysroot + words[5]) and sysroot != "/":
                lines[i] = " ".join(words[:5] + [sysroot + words[5]])
        p = runtime_engine.convert("\n".join(lines) + "\n", str(path), [str(exe), *args])
        symbolize_profile(p)
        profiles.append(p)
    return r, profiles
