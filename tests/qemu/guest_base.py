"""What every test guest shares, whatever the machine: the initramfs, the /init that runs
steps, and the serial console cut back into step results.

A guest's root file system is an initramfs built here: a static busybox, the programs
and files you add (with every shared library they need and the dynamic loader), and an
/init that runs your steps one after another, prints each one's output and exit status
between marker lines on the serial console, and powers off. A machine (tests/qemu/guest.py:
two-node x86_64; tests/qemu/guest_aarch64.py: arm64 `virt`) subclasses `GuestBase` with
its QEMU command line, kernel, console device and how it finds a program's libraries.

>>> g = SomeGuest.find(workdir)                               # doctest: +SKIP
>>> g.add_program("/tmp/prog", "/bin/prog")                   # doctest: +SKIP
>>> boot = g.boot([Step("run", "/bin/prog"), send_file_step("core", "/tmp/core")])  # doctest: +SKIP
>>> boot.steps["run"].status, received_file(boot.steps["core"].output)[:4]          # doctest: +SKIP
(0, b'\\x7fELF')
"""

from __future__ import annotations

import base64
import gzip
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from cpio import Cpio

BOOT_TIMEOUT_S = 120.0
BUSYBOX_GUEST = "/bin/busybox"
MARK = "@@memplace-guest"


@dataclass
class Step:
    """One command the guest's /init runs with /bin/sh -c; output is stdout and stderr."""

    name: str
    shell: str


@dataclass
class StepResult:
    name: str
    status: int | None  # None: the step did not finish (the guest died or timed out)
    output: str


@dataclass
class Boot:
    steps: dict[str, StepResult]
    console: str  # the whole serial console, \r\n turned into \n
    seconds: float  # wall time from starting QEMU until it exited
    returncode: int | None  # QEMU's; None on timeout

    def require(self, *names: str) -> None:
        """Fail (AssertionError, with the console's tail) unless each step ran to its end."""
        for name in names:
            step = self.steps.get(name)
            if step is None or step.status is None:
                raise AssertionError(f"guest step {name!r} did not finish (qemu exit {self.returncode}, "
                                     f"{self.seconds:.1f} s); console tail:\n{self.console[-3000:]}")


class GuestUnavailable(RuntimeError):
    """QEMU, busybox or a kernel image is missing; the message names the Debian package."""


# -- files out of the guest: gzip'ed, base64 on the console ------------------------------------

def send_file_step(name: str, guest_path: str) -> Step:
    """A step that prints the guest file gzip'ed and base64-encoded (cores are sparse: gzip
    keeps their holes from costing console time). `received_file` turns the output back."""
    return Step(name, f"gzip -1 -c {shlex.quote(guest_path)} | base64")


def received_file(output: str) -> bytes:
    """The bytes of a file a `send_file_step` printed."""
    return gzip.decompress(base64.b64decode("".join(output.split())))


# -- shared libraries ------------------------------------------------------------------------

def host_libraries(path: str | Path) -> list[str]:
    """Absolute paths of the shared libraries and dynamic loader a host program needs ([] if static).

    >>> any("libc.so" in p for p in host_libraries("/bin/ls"))   # doctest: +SKIP
    True
    """
    r = subprocess.run(["ldd", str(path)], capture_output=True, text=True)
    if r.returncode != 0:  # "not a dynamic executable"
        return []
    libs = []
    for line in r.stdout.splitlines():
        # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        m = re.search(r"(?:=>\s*)?(/\S+)\s+\(0x", line)
        if m:
            libs.append(m.group(1))
        elif "not found" in line:
            raise RuntimeError(f"{path}: {line.strip()}")
    return libs


def _dynamic_info(path: str) -> tuple[str | None, list[str], list[str]]:
    """(PT_INTERP, DT_NEEDED names, DT_RUNPATH/DT_RPATH directories with $ORIGIN expanded)."""
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        interp = next((s.get_interp_name() for s in elf.iter_segments() if s["p_type"] == "PT_INTERP"), None)
        needed, dirs = [], []
        for sec in elf.iter_sections():
            if isinstance(sec, DynamicSection):
                for tag in sec.iter_tags():
                    if tag.entry.d_tag == "DT_NEEDED":
                        needed.append(tag.needed)
                    elif tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                        path_list = tag.runpath if tag.entry.d_tag == "DT_RUNPATH" else tag.rpath
                        origin = os.path.dirname(os.path.abspath(path))
                        dirs += [d.replace("$ORIGIN", origin) for d in path_list.split(":") if d]
    return interp, needed, dirs


def foreign_libraries(path: str | Path, roots: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """(host path, guest path) of every library and the loader a program of another machine
    needs, found without running it: DT_NEEDED, recursively, in its DT_RUNPATH (same path in
    the guest) and in `roots`, pairs of (host directory, guest directory) such as
    ("/usr/aarch64-linux-gnu/lib", "/lib"). RuntimeError names a library found nowhere."""
    out: dict[str, str] = {}
    todo = [str(path)]
    while todo:
        cur = todo.pop()
        interp, needed, dirs = _dynamic_info(cur)
        if interp and interp not in out.values():
            name = os.path.basename(interp)
            host = next((os.path.join(h, name) for h, _ in roots if os.path.isfile(os.path.join(h, name))), None)
            if host is None:
                raise RuntimeError(f"{path}: loader {interp} not found under {[h for h, _ in roots]}")
            out[host] = interp
        for name in needed:
            places = [(d, d) for d in dirs] + roots
            hit = next(((os.path.join(h, name), os.path.join(g, name)) for h, g in places
                        if os.path.isfile(os.path.join(h, name))), None)
            if hit is None:
                raise RuntimeError(f"{cur}: {name} not found under {[h for h, _ in places]}")
            if hit[0] not in out:
                out[hit[0]] = hit[1]
                todo.append(hit[0])
    return sorted(out.items())


# -- the guest ---------------------------------------------------------------------------------

@dataclass
class GuestBase:
    """A guest machine booted from an initramfs; subclasses give the machine."""

    qemu: str
    kernel: str
    busybox: str
    workdir: Path
    files: dict[str, bytes | Path] = field(default_factory=dict)  # guest path -> contents
    library_dirs: set[str] = field(default_factory=set)

    console_device = "ttyS0"

    def qemu_args(self, initrd: str) -> list[str]:
        """The QEMU command line that boots self.kernel with this initrd."""
        raise NotImplementedError

    def libraries(self, host_path: str | Path) -> list[tuple[str, str]]:
        """(host path, guest path) of the shared libraries and loader a program needs."""
        return [(lib, lib) for lib in host_libraries(host_path)]

    def kernel_args(self) -> str:
        return f"console={self.console_device} panic=-1 quiet loglevel=1 rdinit=/init"

    def add_file(self, guest_path: str, contents: bytes | str | Path) -> None:
        """Put a host file (Path) or bytes/text at guest_path."""
        self.files[guest_path] = contents.encode() if isinstance(contents, str) else contents

    def add_program(self, host_path: str | Path, guest_path: str) -> None:
        """Put an executable or library at guest_path, with its shared libraries."""
        self.files[guest_path] = Path(host_path)
        for host, guest in self.libraries(host_path):
            self.files.setdefault(guest, Path(os.path.realpath(host)))
            self.library_dirs.add(os.path.dirname(guest))

    def init_script(self, steps: list[Step], token: str) -> str:
        lines = [
            "#!/bin/sh",
            "/bin/busybox --install -s /bin",
            "mount -t proc proc /proc",
            "mount -t sysfs sysfs /sys",
            "mount -t devtmpfs devtmpfs /dev 2>/dev/null",
            # rootfs is writable already; a tmpfs would hide files the archive put under /tmp
            '[ -z "$(ls -A /tmp)" ] && mount -t tmpfs tmpfs /tmp',
            f"export PATH=/bin:/usr/bin LD_LIBRARY_PATH={':'.join(sorted(self.library_dirs))}",
            "cd /",
        ]
        for s in steps:
            lines += [f"echo '{MARK} {token} begin {s.name}'",
                      f"/bin/sh -c {shlex.quote(s.shell)} 2>&1",
                      f"echo \"\n{MARK} {token} end {s.name} $?\""]
        lines += [f"echo '{MARK} {token} done'", "poweroff -f"]
        return "\n".join(lines) + "\n"

    def initramfs(self, steps: list[Step], token: str) -> Path:
        """Write the gzip'ed cpio archive for these steps; returns its path."""
        cpio = Cpio()
        for d in ("bin", "dev", "proc", "sys", "tmp", "usr/bin"):
            cpio.dir(d)
        cpio.chardev("dev/console", 5, 1)  # the kernel opens it for /init before devtmpfs is mounted
        cpio.chardev("dev/null", 1, 3)
        cpio.file(BUSYBOX_GUEST, Path(self.busybox).read_bytes())
        cpio.symlink("bin/sh", "busybox")
        cpio.file("init", self.init_script(steps, token).encode())
        for guest_path, contents in sorted(self.files.items()):
            data = contents.read_bytes() if isinstance(contents, Path) else contents
            mode = os.stat(contents).st_mode & 0o777 if isinstance(contents, Path) else 0o644
            cpio.file(guest_path, data, mode)
        out = self.workdir / "initramfs.cpio.gz"
        self.workdir.mkdir(parents=True, exist_ok=True)
        # Level 1: the archive is small, and the guest's decompression is emulated.
        out.write_bytes(gzip.compress(cpio.finish(), compresslevel=1))
        return out

    def boot(self, steps: list[Step], timeout: float = BOOT_TIMEOUT_S) -> Boot:
        """Boot once, run the steps in order, power off; the results per step."""
        token = secrets.token_hex(4)
        initrd = self.initramfs(steps, token)
        args = self.qemu_args(str(initrd))
        start = time.monotonic()
        try:
            r = subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
            raw, returncode = r.stdout + r.stderr, r.returncode
        except subprocess.TimeoutExpired as e:
            raw, returncode = (e.stdout or b"") + (e.stderr or b""), None
        seconds = time.monotonic() - start
        console = raw.decode("utf-8", "replace").replace("\r\n", "\n").replace("\r", "")
        (self.workdir / "console.log").write_text(console)
        return Boot(parse_steps(console, token), console, seconds, returncode)

    def run_command(self, command: str) -> int:
        """Boot, run one shell command, print its output (the console if it never ran)
        and a line about the boot on stderr; its exit status (1 if none)."""
        boot = self.boot([Step("command", command)])
        step = boot.steps.get("command")
        sys.stdout.write(step.output if step else boot.console)
        print(f"[guest: {boot.seconds:.1f} s, exit status {step.status if step else 'none'}, "
              f"console log {self.workdir / 'console.log'}]", file=sys.stderr)
        return step.status if step and step.status is not None else 1


def parse_steps(console: str, token: str) -> dict[str, StepResult]:
    """Cut the console into step results by the marker lines of one boot."""
    results: dict[str, StepResult] = {}
    begin = re.compile(rf"^{re.escape(MARK)} {token} begin (\S+)\n", re.M)
    for m in begin.finditer(console):
        name = m.group(1)
        end = re.compile(rf"\n{re.escape(MARK)} {token} end {re.escape(name)} (\d+)$", re.M)
        e = end.search(console, m.end())
        if e is None:
            results[name] = StepResult(name, None, console[m.end():])
        else:
            # The end marker starts with a newline of its own: the output is exactly what the step printed.
            results[name] = StepResult(name, int(e.group(1)), console[m.end():e.start()])
    return results
