"""Cross-build the preload runtime (libmemplace.so) for another architecture, so that
tests can run it under qemu-user:

    python tools/cross_runtime.py aarch64 OUT_DIR      # prints OUT_DIR/libmemplace.so

The wheel's own build takes mimalloc's object from the cmeel-mimalloc wheel, which is
x86_64 only. Here mimalloc is compiled for the target from the cmeel-mimalloc source
distribution of the same version (fetched from the package index pip uses, its sha256
checked; or MEMPLACE_MIMALLOC_SDIST=path/to/cmeel_mimalloc-X.tar.gz), and the object is
kept in $MEMPLACE_CROSS_CACHE (default ~/.cache/memplace/cross: not $MEMPLACE_CACHE, which
the test suite points at a new directory each run). CMakeLists.txt
then builds the runtime with the target's cross compiler (Debian's gcc-aarch64-linux-gnu,
gcc-i686-linux-gnu), named by -DMEMPLACE_MIMALLOC_OBJECT/-DMEMPLACE_MIMALLOC_INCLUDE.

Only the runtime is built; nothing is installed. Bad input: one line, status 2.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

MIMALLOC_VERSION = "3.4.3"  # the cmeel-mimalloc release the wheel's build requirement resolves to

# target -> (cross compiler, CMAKE_SYSTEM_PROCESSOR, the target's libc root for qemu -L)
TARGETS = {
    "aarch64": ("aarch64-linux-gnu-gcc", "aarch64", "/usr/aarch64-linux-gnu"),
    "i386": ("i686-linux-gnu-gcc", "i686", "/"),
}


class CrossBuildError(Exception):
    """A cross build that cannot be made here: the one line to show."""


def cache_root() -> Path:
    given = os.environ.get("MEMPLACE_CROSS_CACHE")
    if given:
        return Path(given)
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "memplace" / "cross"


def _index_url() -> str:
    """The index pip is set up to use (PIP_INDEX_URL, its configuration), else pip's own
    default."""
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].rstrip("/")
    try:
        out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                             text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        out = ""
    m = re.search(r"^(?:global|install|download)\.index-url='([^']+)'", out, re.M)
    if m:
        return m.group(1).rstrip("/")
    from pip._internal.models.index import PyPI  # pip's default index; no public API names it

    return PyPI.simple_url.rstrip("/")


def mimalloc_sdist(cache: Path) -> Path:
    """The cmeel-mimalloc source distribution, fetched once (sha256 from the index checked)."""
    given = os.environ.get("MEMPLACE_MIMALLOC_SDIST")
    if given:
        if not os.path.isfile(given):
            raise CrossBuildError(f"MEMPLACE_MIMALLOC_SDIST={given}: no such file")
        return Path(given)
    name = f"cmeel_mimalloc-{MIMALLOC_VERSION}.tar.gz"
    dest = cache / name
    if dest.exists():
        return dest
    page_url = f"{_index_url()}/cmeel-mimalloc/"
    try:
        page = urllib.request.urlopen(page_url, timeout=60).read().decode()
        link = next((h for h in re.findall(r'href="([^"]+)"', page) if h.split("#")[0].endswith(name)), None)
        if link is None:
            raise CrossBuildError(f"{page_url}: no {name}")
        url, _, fragment = link.partition("#")
        data = urllib.request.urlopen(urllib.request.urljoin(page_url, url), timeout=120).read()
    except OSError as e:
        raise CrossBuildError(f"cannot fetch {name} from {page_url}: {e}") from None
    want = dict(p.split("=", 1) for p in fragment.split("&") if "=" in p).get("sha256")
    if want and hashlib.sha256(data).hexdigest() != want:
        raise CrossBuildError(f"{name}: sha256 differs from the index's")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def _cmake(*args: str, log: Path) -> None:
    generator = ["-G", "Ninja"] if shutil.which("ninja") and args[0] == "-S" else []
    with open(log, "a") as f:
        r = subprocess.run(["cmake", *args, *generator], stdout=f, stderr=subprocess.STDOUT)
    if r.returncode:
        raise CrossBuildError(f"cmake {' '.join(args[:2])} failed (see {log})")


def _toolchain(target: str) -> list[str]:
    compiler, processor, _ = TARGETS[target]
    if shutil.which(compiler) is None:
        raise CrossBuildError(f"{compiler} not installed (Debian: gcc-{compiler[:-4]})")
    if shutil.which("cmake") is None:
        raise CrossBuildError("cmake not installed")
    return ["-DCMAKE_SYSTEM_NAME=Linux", f"-DCMAKE_SYSTEM_PROCESSOR={processor}",
            f"-DCMAKE_C_COMPILER={compiler}", "-DCMAKE_BUILD_TYPE=Release"]


def mimalloc_object(target: str) -> tuple[Path, Path]:
    """(mimalloc's object for `target`, its include directory), built once and cached."""
    cache = cache_root()
    where = cache / f"mimalloc-{MIMALLOC_VERSION}-{target}"
    obj, include = where / "mimalloc.o", where / "include"
    if obj.exists() and include.is_dir():
        return obj, include
    sdist = mimalloc_sdist(cache)
    work = cache / f"work-{target}-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        with tarfile.open(sdist) as t:
            t.extractall(work, filter="data")
        src = next(work.glob("cmeel_mimalloc-*/mimalloc"))
        log = work / "build.log"
        _cmake("-S", str(src), "-B", str(work / "build"), *_toolchain(target), "-DMI_BUILD_SHARED=OFF",
               "-DMI_BUILD_STATIC=OFF", "-DMI_BUILD_TESTS=OFF", "-DMI_BUILD_OBJECT=ON", log=log)
        _cmake("--build", str(work / "build"), "--target", "mimalloc-obj", log=log)
        built = next((work / "build").rglob("static.c.o"))
        where.mkdir(parents=True, exist_ok=True)
        shutil.copytree(src / "include", include, dirs_exist_ok=True)
        shutil.copyfile(built, obj.with_suffix(".part"))
        obj.with_suffix(".part").replace(obj)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return obj, include


def build_runtime(target: str, out_dir: Path) -> Path:
    """libmemplace.so built for `target` from this tree into `out_dir`."""
    if target not in TARGETS:
        raise CrossBuildError(f"{target}: not a target (one of {', '.join(TARGETS)})")
    obj, include = mimalloc_object(target)
    out_dir = Path(out_dir)
    build = out_dir / "build"
    log = out_dir / "build.log"
    out_dir.mkdir(parents=True, exist_ok=True)
    _cmake("-S", str(ROOT), "-B", str(build), *_toolchain(target), f"-DMEMPLACE_MIMALLOC_OBJECT={obj}",
           f"-DMEMPLACE_MIMALLOC_INCLUDE={include}", "-DSKBUILD_PROJECT_VERSION=cross", log=log)
    _cmake("--build", str(build), "--target", "memplace", log=log)
    lib = out_dir / "libmemplace.so"
    shutil.copyfile(build / "libmemplace.so", lib)
    return lib


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: cross_runtime.py TARGET OUT_DIR (TARGET: " + ", ".join(TARGETS) + ")", file=sys.stderr)
        return 2
    try:
        print(build_runtime(argv[0], Path(argv[1])))
    except CrossBuildError as e:
        print(f"cross_runtime: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
