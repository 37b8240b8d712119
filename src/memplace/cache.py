"""Where memplace keeps what it computes once per machine: unwind tables, compiled policies,
indexes of TLS variables, symbols of profiled modules (per build-id).

$MEMPLACE_CACHE, else $XDG_CACHE_HOME/memplace, else ~/.cache/memplace. Deleting the
directory is always safe: everything in it is made again when needed. Entries are written
whole (`write_atomic`), so processes starting together never read half a file.
"""

from __future__ import annotations

import os


def cache_root() -> str:
    return os.environ.get("MEMPLACE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "memplace")


def unwind_tables_dir() -> str:
    """Where unwind tables are kept, one file per build-id (launch/unwind_tables.py)."""
    return os.path.join(cache_root(), "unwind")


def file_stamp(path: str) -> list[int] | None:
    """What tells a changed file: size and mtime (not the inode: a cache shared by nodes of
    a cluster sees the same library under different inode numbers)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns]


def make_dir(directory: str) -> bool:
    """Create a cache directory; False when it cannot be written."""
    try:
        os.makedirs(directory, exist_ok=True)
        return os.access(directory, os.W_OK | os.X_OK)
    except OSError:
        return False


def write_atomic(path: str, data: bytes) -> bool:
    """Whole or not at all (a temporary name unique to this process and thread, then
    os.replace); False when the cache cannot be written, which only loses the entry.
    (No tempfile: importing it costs 20 ms of a cold `memplace tls`.)"""
    import threading

    tmp = os.path.join(os.path.dirname(path),
                       f".{os.path.basename(path)}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except OSError:
        return False
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # whatever the umask: a shared cache must be readable
            f.write(data)
        os.replace(tmp, path)
        return True
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
