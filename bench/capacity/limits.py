"""Memory limits for the capacity benchmark: a memory cgroup per run, a swap file, and the
read-around of the file device's disk.

All are machine-wide state, so all are context managers that undo what they did in a
`finally`: the cgroup is removed after its processes ended, the swap file is turned off
and deleted, the disk's read-around is put back.

cgroup v1 (a `memory` hierarchy, `memory.limit_in_bytes`, `memory.swappiness`) and
cgroup v2 (`memory.max`, `memory.swap.max` on a cgroup2 mount whose root offers the
memory controller) are both supported; v1 is used when the machine mounts it, since the
memory controller is then not available to v2.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

V1_ROOT = Path("/sys/fs/cgroup/memory")


def _cgroup2_roots() -> list[Path]:
    roots = []
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                roots.append(Path(parts[1]))
    return roots


def memory_cgroup_root() -> tuple[Path, int] | None:
    """(root directory, version) of the memory cgroup hierarchy, or None."""
    if (V1_ROOT / "memory.limit_in_bytes").exists():
        return V1_ROOT, 1
    for root in _cgroup2_roots():
        try:
            if "memory" in (root / "cgroup.controllers").read_text().split():
                return root, 2
        except OSError:
            continue
    return None


def why_no_cgroup() -> str | None:
    """None when this process can make memory cgroups, else why not."""
    if os.geteuid() != 0:
        return "needs root (memory cgroups)"
    if memory_cgroup_root() is None:
        return "no memory cgroup controller mounted (v1 memory or v2 with memory)"
    return None


@dataclass
class Outcome:
    status: str          # "ok", "OOM" (killed by the cgroup's OOM killer), "timeout", "failed"
    seconds: float       # wall time
    output: str          # stdout
    error: str           # stderr, last lines
    peak: int            # the cgroup's peak memory use (bytes)
    returncode: int
    pid: int
    major_faults: int    # the program's page faults that waited for the disk (wait4's rusage)
    user: float = 0.0    # the program's CPU seconds, user and system (the same rusage)
    system: float = 0.0


class MemoryCgroup:
    """A memory cgroup of its own, `limit` bytes (None: unlimited), swap allowed or not.

    with MemoryCgroup("name", 256 << 20) as cg:
        outcome = cg.run(argv, env, timeout=60)
    """

    def __init__(self, name: str, limit: int | None, swap: bool = False):
        found = memory_cgroup_root()
        if found is None:
            raise RuntimeError(why_no_cgroup() or "no memory cgroup")
        self.root, self.version = found
        self.path = self.root / f"{name}-{os.getpid()}"
        self.limit, self.swap = limit, swap

    def _write(self, name: str, value: str) -> None:
        (self.path / name).write_text(value)

    def _read(self, name: str) -> str:
        return (self.path / name).read_text()

    def __enter__(self) -> "MemoryCgroup":
        if self.version == 2:
            control = self.root / "cgroup.subtree_control"
            if "memory" not in control.read_text().split():
                control.write_text("+memory")
        self.path.mkdir()
        try:
            if self.version == 1:
                # swappiness 0 in a v1 cgroup: its reclaim never swaps (file pages only)
                self._write("memory.swappiness", "60" if self.swap else "0")
                if self.limit is not None:
                    self._write("memory.limit_in_bytes", str(self.limit))
            else:
                if self.limit is not None:
                    self._write("memory.max", str(self.limit))
                if (self.path / "memory.swap.max").exists():   # absent without swap accounting
                    self._write("memory.swap.max", "max" if self.swap else "0")
        except BaseException:
            self.path.rmdir()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def procs(self) -> list[int]:
        return [int(p) for p in self._read("cgroup.procs").split()]

    def remove(self) -> None:
        """Kill what is left in the cgroup, then remove it (retried: the kernel needs a
        moment to let go of processes that just died)."""
        if not self.path.exists():
            return
        for _ in range(100):
            try:
                for pid in self.procs():
                    os.kill(pid, signal.SIGKILL)
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)
        self.path.rmdir()

    def peak(self) -> int:
        if self.version == 1:
            return int(self._read("memory.max_usage_in_bytes"))
        try:
            return int(self._read("memory.peak"))       # Linux 5.19+
        except OSError:
            return int(self._read("memory.current"))

    def oom_kills(self) -> int:
        name = "memory.oom_control" if self.version == 1 else "memory.events"
        for line in self._read(name).splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
        return 0

    def join(self) -> None:
        """Put the calling process into the cgroup (a child's preexec_fn calls it)."""
        with open(self.path / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def run(self, argv: list[str], env: dict[str, str], timeout: float, log_dir: Path) -> Outcome:
        """Run argv in the cgroup; output to files (never a pipe a big output could fill)."""
        run = run_logged(argv, env, timeout, log_dir, preexec_fn=self.join)
        oom = self.oom_kills() > 0
        status = ("timeout" if run.timed_out else "OOM" if oom and run.code != 0
                  else "ok" if run.code == 0 else "failed")
        return run.outcome(status, self.peak())


@dataclass
class LoggedRun:
    """A finished run of run_logged: exit code, wall seconds, the child's own rusage."""

    code: int
    seconds: float
    timed_out: bool
    pid: int
    usage: object
    log_dir: Path

    def outcome(self, status: str, peak: int) -> "Outcome":
        return Outcome(status, self.seconds, (self.log_dir / "stdout").read_text(errors="replace"),
                       (self.log_dir / "stderr").read_text(errors="replace")[-2000:], peak, self.code,
                       self.pid, self.usage.ru_majflt, self.usage.ru_utime, self.usage.ru_stime)


def run_logged(argv: list[str], env: dict[str, str], timeout: float, log_dir: Path,
               preexec_fn=None) -> LoggedRun:
    """Run argv with its output in log_dir/stdout and stderr (never a pipe a big output
    could fill), killed after `timeout` seconds; polled with wait4 for the child's own
    rusage (its major faults)."""
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "stdout", "w") as out, open(log_dir / "stderr", "w") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out, stderr=err, preexec_fn=preexec_fn)
        timed_out = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() - start > timeout and not timed_out:
                proc.kill()
                timed_out = True
            time.sleep(0.005)
        seconds = time.perf_counter() - start
        code = proc.returncode = os.waitstatus_to_exitcode(status)
    return LoggedRun(code, seconds, timed_out, proc.pid, usage, log_dir)


def filesystem_type(path: Path) -> str:
    """The type of the filesystem holding `path` (longest mount point prefix)."""
    real = os.path.realpath(path)
    best, kind = "", "?"
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            mount = parts[1].replace("\\040", " ")
            if (real == mount or real.startswith(mount.rstrip("/") + "/")) and len(mount) > len(best):
                best, kind = mount, parts[2]
    return kind


class SwapFile:
    """A swap file of `size` bytes at `path`, on only inside the `with` block."""

    def __init__(self, path: Path, size: int):
        self.path, self.size, self.on = path, size, False

    def __enter__(self) -> "SwapFile":
        try:
            subprocess.run(["fallocate", "-l", str(self.size), str(self.path)], check=True)
            os.chmod(self.path, 0o600)
            subprocess.run(["mkswap", str(self.path)], check=True, capture_output=True)
            subprocess.run(["swapon", str(self.path)], check=True)
            self.on = True
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        try:
            if self.on:
                subprocess.run(["swapoff", str(self.path)], check=True)
                self.on = False
        finally:
            if self.path.exists():
                self.path.unlink()


class ReadAround:
    """The read-around of the disk holding `directory` set to `kib` KiB inside the `with`
    block (None: left as it is); `.kib` is the value the runs see, None where /sys does
    not say."""

    def __init__(self, directory: Path, kib: int | None):
        from memplace.placement.sysfs import read_around
        found = read_around(str(directory))
        self.path = Path(found[1]) if found else None
        self.before = found[0] // 1024 if found else None
        self.want, self.kib = kib, self.before

    def __enter__(self) -> "ReadAround":
        if self.want is not None and self.want != self.before:
            if self.path is None:
                raise SystemExit("--read-ahead: /sys gives no read-around for the device directory's disk")
            self.path.write_text(str(self.want))
            self.kib = int(self.path.read_text())
        return self

    def __exit__(self, *exc) -> None:
        if self.path is not None and self.kib != self.before:
            self.path.write_text(str(self.before))
