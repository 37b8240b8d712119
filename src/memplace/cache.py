"""Where memplace keeps what it computes once per machine: unwind tables, compiled policies.

$MEMPLACE_CACHE, else $XDG_CACHE_HOME/memplace, else ~/.cache/memplace. Deleting the
directory is always safe: everything in it is made again when needed.
"""

from __future__ import annotations

import os


def cache_root() -> str:
    return os.environ.get("MEMPLACE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "memplace")
