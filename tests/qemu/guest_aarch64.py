"""Boot a small aarch64 guest (QEMU `virt`, software emulation) on Debian's arm64 kernel.

The programs run under a real arm64 Linux kernel, so the cores it writes are the
kernel's (NT_PRSTATUS, NT_ARM_TLS, NT_FILE, ...), not qemu-user's. The initramfs,
/init and console parsing are guest_base.py's; this file is the machine and its parts.

The parts are Debian arm64 packages that this x86_64 machine does not install:
`apt-get download` with a private apt state (nothing of the host's apt configuration
changes) fetches them once into a cache directory and `dpkg-deb -x` unpacks them:

- linux-image-cloud-arm64: the kernel (PL011 serial console, initramfs, ELF core
  dumps built in; its modules are not needed);
- busybox-static: the guest's shell and tools;
- python3.11-minimal, libpython3.11-minimal, libpython3.11-stdlib, libffi8, zlib1g,
  libexpat1 (optional): a Python for running memplace itself in the guest (`--pid`),
  with memplace's source and the pure-Python click and rich copied from this machine.

Programs are linked against the cross glibc of libc6-dev-arm64-cross
(/usr/aarch64-linux-gnu/lib goes to the guest's /lib).

>>> g = Aarch64Guest.find(workdir)                            # doctest: +SKIP
>>> g.add_program("/tmp/prog", "/tmp/prog")                   # doctest: +SKIP
>>> g.boot([Step("run", "/tmp/prog")]).steps["run"].output    # doctest: +SKIP

Run it by hand: `python tests/qemu/guest_aarch64.py --program ./prog -- /bin/prog`,
`--fetch` only fetches the parts (see docs/testing-guests.md).
"""

from __future__ import annotations

import argparse
import glob
import os
import py_compile
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from guest_base import GuestBase, GuestUnavailable, foreign_libraries

SYSROOT = "/usr/aarch64-linux-gnu"
MEMORY_MIB = 1024
CPUS = 2

KERNEL_PACKAGE = "linux-image-cloud-arm64"
BUSYBOX_PACKAGE = "busybox-static"
PYTHON_PACKAGES = ("python3.11-minimal", "libpython3.11-minimal", "libpython3.11-stdlib",
                   "libffi8", "zlib1g", "libexpat1")
PYTHON_GUEST = "/usr/bin/python3.11"

# Parts of the stdlib memplace never imports: left out of the initramfs (smaller, faster boot).
STDLIB_SKIP = ("test", "idlelib", "tkinter", "lib2to3", "ensurepip", "pydoc_data", "turtledemo",
               "distutils", "unittest", "asyncio", "email", "http", "xmlrpc", "sqlite3", "curses",
               "dbm", "multiprocessing", "concurrent", "wsgiref", "venv", "xml", "html", "urllib")


def parts_dir() -> Path:
    """Where the unpacked arm64 packages are kept: $MEMPLACE_ARM64_PARTS, else ~/.cache."""
    env = os.environ.get("MEMPLACE_ARM64_PARTS")
    return Path(env) if env else Path.home() / ".cache" / "memplace-test-guests" / "arm64"


# -- fetching Debian's arm64 packages without touching the host's apt state -------------------

def _apt_options(cache: Path) -> list[str]:
    state = cache / "apt"
    for d in ("lists/partial", "cache/archives/partial"):
        (state / d).mkdir(parents=True, exist_ok=True)
    return ["-q", "-o", "APT::Architecture=arm64", "-o", "APT::Architectures=arm64",
            "-o", f"Dir::State::Lists={state / 'lists'}", "-o", f"Dir::Cache={state / 'cache'}",
            "-o", "Dir::State::Status=/dev/null", "-o", "APT::Sandbox::User=root",
            "-o", "Debug::NoLocking=1"]


def _run_apt(args: list[str], cwd: Path) -> str:
    r = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if r.returncode != 0:
        tail = (r.stderr.strip().splitlines() or ["?"])[-1]
        raise GuestUnavailable(f"{' '.join(args[:1] + args[-2:])}: {tail}")
    return r.stdout


def fetch_packages(packages: list[str], cache: Path) -> None:
    """apt-get download these arm64 packages and unpack them under cache/root.

    A package that is already unpacked (its name in cache/unpacked) is not fetched again.
    GuestUnavailable names the package that could not be had."""
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        raise GuestUnavailable(f"apt-get and dpkg-deb are needed to fetch {', '.join(packages)} (arm64)")
    done_file = cache / "unpacked"
    done = set(done_file.read_text().split()) if done_file.is_file() else set()
    todo = [p for p in packages if p not in done]
    if not todo:
        return
    opts = _apt_options(cache)
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    updated = False
    if not any((cache / "apt" / "lists").glob("*Packages*")):
        try:
            _run_apt(["apt-get", *opts, "update"], cache)
        except GuestUnavailable as e:
            raise GuestUnavailable(f"Debian packages {', '.join(todo)} (arm64) could not be had: {e}") from None
        updated = True
    for pkg in todo:
        while True:
            before = set(debs.glob("*.deb"))
            try:
                _download(pkg, opts, cache, debs)
                break
            except GuestUnavailable as e:
                if updated:  # the lists are fresh: the package cannot be had
                    raise GuestUnavailable(f"Debian package {pkg} (arm64) could not be downloaded: {e}") from None
                _run_apt(["apt-get", *opts, "update"], cache)  # an old list names versions the mirror dropped
                updated = True
        for deb in set(debs.glob("*.deb")) - before:
            subprocess.run(["dpkg-deb", "-x", str(deb), str(cache / "root")], check=True)
            deb.unlink()  # unpacked: the .deb is not needed again
        if pkg == KERNEL_PACKAGE:  # the guest boots without modules: do not keep 100 MiB of them
            shutil.rmtree(cache / "root" / "lib" / "modules", ignore_errors=True)
        done.add(pkg)
        done_file.write_text("\n".join(sorted(done)) + "\n")


def _download(pkg: str, opts: list[str], cache: Path, debs: Path) -> None:
    name = pkg
    if pkg == KERNEL_PACKAGE:  # a metapackage: the image is the package it depends on
        out = _run_apt(["apt-cache", *opts, "depends", "--important", pkg], cache)
        m = re.search(r"Depends: (linux-image-\S+)", out)
        if m is None:
            raise GuestUnavailable(f"{pkg} (arm64): no kernel image package among its dependencies")
        name = m.group(1)
    _run_apt(["apt-get", *opts, "download", f"{name}:arm64"], debs)


def _kernel_in(root: Path) -> str | None:
    images = sorted(glob.glob(str(root / "boot" / "vmlinuz-*-arm64")))
    return images[-1] if images else None


# -- the machine ----------------------------------------------------------------------------

@dataclass
class Aarch64Guest(GuestBase):
    """QEMU `virt` with a Cortex-A57, PL011 console, Debian's arm64 kernel."""

    parts: Path = Path()

    console_device = "ttyAMA0"

    @classmethod
    def find(cls, workdir: str | Path, fetch: bool = True) -> Aarch64Guest:
        """The guest from qemu-system-aarch64 and the arm64 parts, fetched if missing and `fetch`.

        $MEMPLACE_GUEST_KERNEL_ARM64 names another kernel image. GuestUnavailable names what is missing."""
        qemu = shutil.which("qemu-system-aarch64")
        if qemu is None:
            raise GuestUnavailable("qemu-system-aarch64 not installed (Debian package qemu-system-arm)")
        if not Path(SYSROOT, "lib", "libc.so.6").is_file():
            raise GuestUnavailable(f"no aarch64 glibc under {SYSROOT} (Debian package libc6-dev-arm64-cross)")
        parts = parts_dir()
        if fetch:
            fetch_packages([KERNEL_PACKAGE, BUSYBOX_PACKAGE], parts)
        kernel = os.environ.get("MEMPLACE_GUEST_KERNEL_ARM64") or _kernel_in(parts / "root")
        if kernel is None or not os.path.isfile(kernel):
            raise GuestUnavailable(f"no arm64 kernel image (Debian package {KERNEL_PACKAGE} under {parts})")
        busybox = parts / "root" / "bin" / "busybox"
        if not busybox.is_file():
            raise GuestUnavailable(f"no arm64 busybox (Debian package {BUSYBOX_PACKAGE} under {parts})")
        return cls(qemu, kernel, str(busybox), Path(workdir), parts=parts)

    def qemu_args(self, initrd: str) -> list[str]:
        return [self.qemu, "-accel", "tcg", "-machine", "virt", "-cpu", "cortex-a57",
                "-m", f"{MEMORY_MIB}M", "-smp", str(CPUS),
                "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot",
                "-kernel", self.kernel, "-initrd", initrd, "-append", self.kernel_args()]

    def library_roots(self) -> list[tuple[str, str]]:
        root = self.parts / "root"
        return [(f"{SYSROOT}/lib", "/lib"),
                (str(root / "lib/aarch64-linux-gnu"), "/lib/aarch64-linux-gnu"),
                (str(root / "usr/lib/aarch64-linux-gnu"), "/usr/lib/aarch64-linux-gnu")]

    def libraries(self, host_path: str | Path) -> list[tuple[str, str]]:
        try:
            return foreign_libraries(host_path, self.library_roots())
        except RuntimeError as e:
            raise GuestUnavailable(str(e)) from None

    # -- memplace itself in the guest -------------------------------------------------------

    def add_memplace(self, fetch: bool = True) -> str:
        """Put an arm64 Python, the memplace source and click in the guest; returns the shell
        command that runs memplace there (`CMD tls --pid N`). GuestUnavailable names the
        Debian package when the Python cannot be had."""
        if fetch:
            fetch_packages(list(PYTHON_PACKAGES), self.parts)
        root = self.parts / "root"
        python = root / PYTHON_GUEST.lstrip("/")
        if not python.is_file():
            raise GuestUnavailable(f"no arm64 {PYTHON_GUEST} (Debian package {PYTHON_PACKAGES[0]} under {self.parts})")
        self.add_program(python, PYTHON_GUEST)
        stdlib = root / "usr/lib/python3.11"
        for path in sorted(stdlib.rglob("*")):
            rel = path.relative_to(stdlib)
            if rel.parts[0] in STDLIB_SKIP or "__pycache__" in rel.parts or path.is_dir() or path.is_symlink():
                continue
            if path.suffix == ".so":
                if "_test" in path.name or "xx" in path.name:
                    continue
                try:
                    self.add_program(path, f"/usr/lib/python3.11/{rel}")
                except GuestUnavailable:
                    continue  # an extension whose library is not here (readline, ssl): memplace does not use it
            elif path.suffix == ".py":
                self._add_python_source(path, f"/usr/lib/python3.11/{rel}")
        import click
        import rich

        src = Path(__file__).resolve().parents[2] / "src" / "memplace"
        trees = [(src, "/opt/memplace/memplace")]
        trees += [(Path(m.__file__).parent, f"/opt/memplace/{m.__name__}") for m in (click, rich)]  # pure Python
        for base, guest in trees:
            for path in sorted(base.rglob("*.py")):
                if "__pycache__" not in path.parts:
                    self._add_python_source(path, f"{guest}/{path.relative_to(base)}")
        return f"env PYTHONPATH=/opt/memplace PYTHONDONTWRITEBYTECODE=1 {PYTHON_GUEST} -m memplace"

    def _add_python_source(self, path: Path, guest_path: str) -> None:
        """A .py file, and its bytecode when this Python is the guest's 3.11: compiling
        memplace's imports under emulation costs the guest seconds on every run. The .pyc
        is unchecked-hash: the archive's files carry no modification time to compare."""
        self.add_file(guest_path, path)
        if sys.version_info[:2] != (3, 11):
            return
        rel = guest_path.lstrip("/")
        pyc = self.workdir / "pyc" / rel
        pyc.parent.mkdir(parents=True, exist_ok=True)
        try:
            py_compile.compile(str(path), cfile=str(pyc), dfile=guest_path, doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
        except py_compile.PyCompileError:
            return  # the guest compiles it (or fails the same way) itself
        guest_dir, name = os.path.split(guest_path)
        self.add_file(f"{guest_dir}/__pycache__/{name[:-3]}.cpython-311.pyc", pyc)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Boot the aarch64 QEMU guest and run a shell command in it.")
    ap.add_argument("--fetch", action="store_true", help="only fetch the arm64 parts (kernel, busybox, Python)")
    ap.add_argument("--program", action="append", default=[], metavar="HOST[:GUEST]",
                    help="an aarch64 executable or library to copy in with its libraries (default guest path: the same)")
    ap.add_argument("--file", action="append", default=[], metavar="HOST:GUEST", help="a plain file to copy in")
    ap.add_argument("--memplace", action="store_true", help="put Python and memplace in the guest (command: $MEMPLACE)")
    ap.add_argument("--workdir", default=None, help="where the initramfs and console.log go (default: a temp dir)")
    ap.add_argument("command", nargs="*", help="shell command run in the guest")
    a = ap.parse_args(argv)
    try:
        g = Aarch64Guest.find(a.workdir or tempfile.mkdtemp(prefix="memplace-guest-a64-"))
        if a.fetch:
            fetch_packages(list(PYTHON_PACKAGES), g.parts)
            print(f"arm64 parts in {g.parts}: kernel {g.kernel}")
            return 0
        for spec in a.program:
            host, _, guest = spec.partition(":")
            g.add_program(host, guest or os.path.abspath(host))
        for spec in a.file:
            host, _, guest = spec.partition(":")
            g.add_file(guest, Path(host))
        prefix = f"MEMPLACE='{g.add_memplace()}'; " if a.memplace else ""
    except GuestUnavailable as e:
        print(f"guest_aarch64: {e}", file=sys.stderr)
        return 2
    if not a.command:
        ap.error("a command to run in the guest is needed (or --fetch)")
    return g.run_command(prefix + " ".join(a.command))


if __name__ == "__main__":
    sys.exit(main())
