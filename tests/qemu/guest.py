"""Boot a small two-node x86_64 guest under QEMU software emulation and run commands in it.

The guest has NUMA node 0 (both CPUs, 1 GiB) and node 1 (CPU-less, 1 GiB) with ACPI
HMAT latency and bandwidth for both, like HBM in flat mode or a CXL expander. The
initramfs, the /init that runs steps and the console parsing are guest_base.py's,
shared with the aarch64 guest (guest_aarch64.py); this file is the machine.

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
import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from guest_base import (  # noqa: F401  (re-exported: the tests import them from here)
    Boot, GuestBase, GuestUnavailable, Step, StepResult, parse_steps, received_file, send_file_step,
)

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

KERNEL_ARGS = "console=ttyS0 panic=-1 quiet loglevel=1 rdinit=/init"


def qemu_args(qemu: str, kernel: str, initrd: str, append: str = KERNEL_ARGS) -> list[str]:
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
    return args + ["-kernel", kernel, "-initrd", initrd, "-append", append]


@dataclass
class Guest(GuestBase):
    """The two-node x86_64 guest: this machine's kernel image, busybox and libraries."""

    console_device = "ttyS0"

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

    def qemu_args(self, initrd: str) -> list[str]:
        return qemu_args(self.qemu, self.kernel, initrd, self.kernel_args())


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
    return g.run_command(" ".join(a.command))


if __name__ == "__main__":
    sys.exit(main())
