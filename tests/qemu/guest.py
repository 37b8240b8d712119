"""Boot a small two-node x86_64 guest under QEMU software emulation and run commands in it.

The guest has NUMA node 0 (both CPUs, 1 GiB) and node 1 (CPU-less, 1 GiB) with ACPI
HMAT latency and bandwidth for both, like HBM in flat mode or a CXL expander. Its
root file system is an initramfs built here: busybox-static, the programs and files
you add (with every shared library they need and the dynamic loader), and an /init
that runs your steps one after another, prints each one's output and exit status
between marker lines on the serial console, and powers off.

>>> g = Guest.find(workdir)                                   # doctest: +SKIP
>>> g.add_program("/tmp/prog", "/bin/prog")                   # doctest: +SKIP
>>> boot = g.boot([Step("nodes", "ls /sys/devices/system/node"), Step("run", "/bin/prog")])  # doctest: +SKIP
>>> boot.steps["run"].status, boot.steps["nodes"].output      # doctest: +SKIP
(0, 'has_cpu\\n...node0\\nnode1\\n...')

Needs Debian packages qemu-system-x86, busybox-static and a kernel image that
provides /boot/vmlinuz-* (linux-image-cloud-amd64 has everything built in: the
8250 serial console, ACPI NUMA, HMAT reporting, page migration).

Run it by hand: `python tests/qemu/guest.py --program ./prog -- /bin/prog` (see
docs/testing-numa.md).
"""

from __future__ import annotations

import argparse
import glob
import gzip
import os
import re
import secrets
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

# -- the guest machine, in one place ------------------------------------------------------

NODE_MEMORY_MIB = 1024  # per node; -m is the sum
CPUS = 2  # all on node 0; node 1 is CPU-less
DISTANCE_0_1 = 28


@dataclass(frozen=True)
class Hmat:
    """HMAT performance that QEMU puts in the guest's ACPI tables for initiator node 0.

    The guest kernel shows them in nodeN/access0/initiators/ as read_/write_latency
    (nanoseconds) and read_/write_bandwidth (MB/s); QEMU takes bandwidth in bytes/s
    with a binary suffix, so `bandwidth_mbps` M is passed as "<n>M".
    """

    target: int
    latency_ns: int
    bandwidth_mbps: int


HMAT = (Hmat(target=0, latency_ns=100, bandwidth_mbps=20480),
        Hmat(target=1, latency_ns=250, bandwidth_mbps=5120))

BOOT_TIMEOUT_S = 120.0
KERNEL_ARGS = "console=ttyS0 panic=-1 quiet loglevel=1 rdinit=/init"

# Guest paths under which the harness writes its own files.
BUSYBOX_GUEST = "/bin/busybox"
MARK = "@@memplace-guest"


def qemu_args(qemu: str, kernel: str, initrd: str) -> list[str]:
    """The QEMU command line for the two-node guest (software emulation, no KVM)."""
    args = [
        qemu, "-accel", "tcg", "-cpu", "max",
        "-m", f"{2 * NODE_MEMORY_MIB}M", "-smp", str(CPUS),
        "-machine", "q35,hmat=on",
        "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
        "-object", f"memory-backend-ram,size={NODE_MEMORY_MIB}M,id=m0",
        "-object", f"memory-backend-ram,size={NODE_MEMORY_MIB}M,id=m1",
        "-numa", f"node,nodeid=0,memdev=m0,cpus=0-{CPUS - 1}",
        "-numa", "node,nodeid=1,memdev=m1,initiator=0",
        "-numa", f"dist,src=0,dst=1,val={DISTANCE_0_1}",
    ]
    for h in HMAT:
        common = f"hmat-lb,initiator=0,target={h.target},hierarchy=memory"
        args += ["-numa", f"{common},data-type=access-latency,latency={h.latency_ns}",
                 "-numa", f"{common},data-type=access-bandwidth,bandwidth={h.bandwidth_mbps}M"]
    return args + ["-kernel", kernel, "-initrd", initrd, "-append", KERNEL_ARGS]


# -- the initramfs: a newc cpio archive, gzip'ed --------------------------------------------

# newc header: magic then 13 fields of 8 hex digits each (see the kernel's
# Documentation/driver-api/early-userspace/buffer-format.rst).
NEWC_MAGIC = b"070701"
NEWC_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
               "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check")


def _pad4(n: int) -> bytes:
    return bytes(-n % 4)


class Cpio:
    """Writes a newc archive in memory: directories, files, symlinks, device nodes."""

    def __init__(self):
        self.out = bytearray()
        self.ino = 0
        self.names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self.ino += 1
        fields = dict.fromkeys(NEWC_FIELDS, 0)
        fields.update(ino=self.ino, mode=mode, nlink=2 if stat.S_ISDIR(mode) else 1, filesize=len(data),
                      rdevmajor=rdev[0], rdevminor=rdev[1], namesize=len(name) + 1)
        header = NEWC_MAGIC + b"".join(b"%08x" % fields[f] for f in NEWC_FIELDS)
        self.out += header + name.encode() + b"\0"
        self.out += _pad4(len(header) + len(name) + 1)
        self.out += data + _pad4(len(data))

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))

    def dir(self, path: str) -> None:
        name = path.strip("/")
        if name and name not in self.names:
            self._parents(name)
            self.names.add(name)
            self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o755) -> None:
        name = path.strip("/")
        if name in self.names:
            return
        self._parents(name)
        self.names.add(name)
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        name = path.strip("/")
        if name not in self.names:
            self._parents(name)
            self.names.add(name)
            self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int) -> None:
        name = path.strip("/")
        self._parents(name)
        self.names.add(name)
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self.out)


def shared_libraries(path: str | Path) -> list[str]:
    """Absolute paths of the shared libraries and dynamic loader `path` needs ([] if static).

    >>> any("libc.so" in p for p in shared_libraries("/bin/ls"))   # doctest: +SKIP
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


# -- running ----------------------------------------------------------------------------------


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


class GuestUnavailable(RuntimeError):
    """QEMU, busybox or a kernel image is missing; the message names the Debian package."""


@dataclass
class Guest:
    qemu: str
    kernel: str
    busybox: str
    workdir: Path
    files: dict[str, bytes | Path] = field(default_factory=dict)  # guest path -> contents
    library_dirs: set[str] = field(default_factory=set)

    @classmethod
    def find(cls, workdir: str | Path) -> Guest:
        """A guest from this machine's qemu, busybox and newest /boot/vmlinuz-*.

        $MEMPLACE_GUEST_KERNEL names another kernel image. GuestUnavailable if a part is missing.
        """
        qemu = shutil.which("qemu-system-x86_64")
        if qemu is None:
            raise GuestUnavailable("qemu-system-x86_64 not installed (Debian package qemu-system-x86)")
        busybox = next((p for p in ("/bin/busybox", "/usr/bin/busybox") if os.path.isfile(p)), None)
        if busybox is None:
            raise GuestUnavailable("busybox not installed (Debian package busybox-static)")
        kernel = os.environ.get("MEMPLACE_GUEST_KERNEL") or _newest_kernel()
        if kernel is None:
            raise GuestUnavailable("no kernel image /boot/vmlinuz-* (Debian package linux-image-cloud-amd64)")
        if not os.path.isfile(kernel):
            raise GuestUnavailable(f"{kernel}: no such kernel image")
        if not os.access(kernel, os.R_OK):
            raise GuestUnavailable(f"{kernel}: not readable by this user (kernel images are root-only on Debian)")
        return cls(qemu, kernel, busybox, Path(workdir))

    def add_file(self, guest_path: str, contents: bytes | str | Path) -> None:
        """Put a host file (Path) or bytes/text at guest_path."""
        self.files[guest_path] = contents.encode() if isinstance(contents, str) else contents

    def add_program(self, host_path: str | Path, guest_path: str) -> None:
        """Put an executable or library at guest_path, with its shared libraries at their host paths."""
        self.files[guest_path] = Path(host_path)
        for lib in shared_libraries(host_path):
            self.files.setdefault(lib, Path(os.path.realpath(lib)))
            self.library_dirs.add(os.path.dirname(lib))

    def init_script(self, steps: list[Step], token: str) -> str:
        lines = [
            "#!/bin/sh",
            "/bin/busybox --install -s /bin",
            "mount -t proc proc /proc",
            "mount -t sysfs sysfs /sys",
            "mount -t devtmpfs devtmpfs /dev 2>/dev/null",
            "mount -t tmpfs tmpfs /tmp",
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
        args = qemu_args(self.qemu, self.kernel, str(initrd))
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


def _newest_kernel() -> str | None:
    def version_key(p: str) -> list:
        return [int(x) if x.isdigit() else x for x in re.split(r"(\d+)", p)]
    images = sorted(glob.glob("/boot/vmlinuz-*"), key=version_key)
    return images[-1] if images else None


# -- sysfs out of the guest -------------------------------------------------------------------

SYSFS_ROOTS = ("/sys/devices/system/node", "/sys/devices/virtual/memory_tiering",
               "/sys/kernel/mm/hugepages", "/sys/kernel/mm/transparent_hugepage",
               "/sys/kernel/mm/mempolicy")


def sysfs_dump_step(name: str = "sysfs", roots: tuple[str, ...] = SYSFS_ROOTS) -> Step:
    """A step that prints every readable file below `roots` between markers.

    Symlinks are listed (not followed): HMAT initiators and targets are links named nodeN.
    """
    r = " ".join(roots)
    script = (
        f"for d in $(find {r} -type d 2>/dev/null); do echo \"@@dir $d\"; done; "
        f"for l in $(find {r} -type l 2>/dev/null); do echo \"@@link $l\"; done; "
        f"for f in $(find {r} -type f -perm -0444 2>/dev/null); do "
        "if c=$(cat \"$f\" 2>/dev/null); then printf '@@file %s\\n%s\\n@@eof\\n' \"$f\" \"$c\"; fi; done"
    )
    return Step(name, script)


def write_sysfs_dump(output: str, root: str | Path) -> Path:
    """Recreate the files a `sysfs_dump_step` printed, /sys/X as root/X (links become directories).

    The result reads like the guest's /sys: `read_topology(sysfs=root)`.
    """
    root = Path(root)

    def local(line: str) -> Path:
        return root / os.path.relpath(line.split(" ", 1)[1], "/sys")

    lines = output.split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith(("@@dir ", "@@link ")):
            local(line).mkdir(parents=True, exist_ok=True)
        elif line.startswith("@@file "):
            path = local(line)
            j = lines.index("@@eof", i + 1)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lines[i + 1:j]) + "\n")
            i = j
        i += 1
    return root


# -- by hand ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Boot the two-node QEMU guest and run a shell command in it.")
    ap.add_argument("--program", action="append", default=[], metavar="HOST[:GUEST]",
                    help="an executable or library to copy in with its shared libraries (default guest path /bin/NAME)")
    ap.add_argument("--file", action="append", default=[], metavar="HOST:GUEST", help="a plain file to copy in")
    ap.add_argument("--workdir", default=None, help="where the initramfs and console.log go (default: a temp dir)")
    ap.add_argument("command", nargs="+", help="shell command run in the guest")
    a = ap.parse_args(argv)
    g = Guest.find(a.workdir or tempfile.mkdtemp(prefix="memplace-guest-"))
    for spec in a.program:
        host, _, guest = spec.partition(":")
        g.add_program(host, guest or f"/bin/{os.path.basename(host)}")
    for spec in a.file:
        host, _, guest = spec.partition(":")
        g.add_file(guest, Path(host))
    boot = g.boot([Step("command", " ".join(a.command))])
    step = boot.steps.get("command")
    sys.stdout.write(step.output if step else boot.console)
    print(f"[guest: {boot.seconds:.1f} s, exit status {step.status if step else 'none'}, "
          f"console log {g.workdir / 'console.log'}]", file=sys.stderr)
    return step.status if step and step.status is not None else 1


if __name__ == "__main__":
    sys.exit(main())
