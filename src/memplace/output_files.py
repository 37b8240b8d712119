"""Files memplace writes for the user, whole or not at all.

A reader (the runtime, another rank, the user's next command) never sees half a file:
it is written under a temporary name in the same directory and renamed over the target.
A target that exists and is not a regular file (/dev/null, a FIFO, a terminal) is written
into instead: renaming over it would replace the device with a file.
"""

from __future__ import annotations

import os
import stat
import tempfile

from memplace.errors import UserError


def write_whole(path: str | os.PathLike, data: bytes | str) -> None:
    """Write `data` to `path` (UserError naming the path when it cannot be written)."""
    path = os.fspath(path)
    raw = data.encode() if isinstance(data, str) else data
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            with open(path, "wb") as f:
                f.write(raw)
            return
    except FileNotFoundError:
        pass
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UserError(f"{path}: directory {directory} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=directory)
    except OSError as e:
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        os.unlink(tmp)
        raise UserError(f"{path}: cannot write: {e.strerror or e}") from None
    except BaseException:
        os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
