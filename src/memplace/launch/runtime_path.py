"""Where the installed preload runtime is."""

from __future__ import annotations

import os

from memplace.errors import UserError


def runtime_path() -> str:
    """Absolute path of libmemplace.so ($MEMPLACE_RUNTIME overrides, for development)."""
    override = os.environ.get("MEMPLACE_RUNTIME")
    if override:
        if not os.path.isfile(override):
            raise UserError(f"MEMPLACE_RUNTIME={override}: no such file")
        return os.path.abspath(override)
    # Next to the package in an installed wheel: found without importlib.resources (it is
    # the start-up of every run); an editable install keeps it elsewhere.
    beside = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                          "_runtime", "libmemplace.so")
    if os.path.isfile(beside):
        return beside
    from importlib import resources

    path = resources.files("memplace").joinpath("_runtime/libmemplace.so")
    if not path.is_file():
        raise UserError("the memplace runtime (libmemplace.so) is not installed; "
                        "reinstall memplace with `pip install .`")
    return os.path.abspath(str(path))
