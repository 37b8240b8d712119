"""Capacities of scope "node": one file of counters per job and node that every process of
the job maps (the runtime's `os/shared_page.c` and `heaps/accounting.c`).

Every rank of an MPI job runs its own `memplace run`; they find the same file because its
name is made of what they have in common: the user, the job (the launcher's job id in the
environment, or for a job that is not MPI, this `memplace run`), and the compiled policy.
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile

from memplace.launch.mpi import job_key


def counters_path(compiled_policy: str, environ=os.environ) -> str:
    """The counters file for this job and this compiled policy (one with a capacity of
    scope "node": compile_cache.Prepared.node_scoped)."""
    with open(compiled_policy, "rb") as f:
        data = f.read()
    digest = hashlib.sha256(f"{job_key(environ)}\0".encode() + data).hexdigest()[:20]
    directory = "/dev/shm" if os.access("/dev/shm", os.W_OK) else tempfile.gettempdir()
    return os.path.join(directory, f"memplace-{os.getuid()}-{digest}")


def release(path: str | None) -> None:
    """After the program: remove the file when no process of the job has it mapped."""
    if not path:
        return
    try:
        with open(path, "rb") as f:
            head = f.read(8)
        if len(head) == 8 and struct.unpack("<Q", head)[0] == 0:
            os.unlink(path)
    except OSError:
        pass  # gone already (another rank's memplace removed it), or never made
