"""Where the installed preload runtime is."""

from __future__ import annotations

import os
from importlib import resources

from memplace.errors import UserError


def runtime_path() -> str:
    """Absolute path of libmemplace.so ($MEMPLACE_RUNTIME overrides, for development)."""
    override = os.environ.get("MEMPLACE_RUNTIME")
    if override:
        if not os.path.isfile(override):
            raise UserError(f"MEMPLACE_RUNTIME={override}: no such file")
        return os.path.abspath(override)
    path = resources.files("memplace").joinpath("_runtime/libmemplace.so")
    if not path.is_file():
        raise UserError("the memplace runtime (libmemplace.so) is not installed; "
                        "reinstall memplace with `pip install .`")
    return os.path.abspath(str(path))
