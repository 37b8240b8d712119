"""Capacities of scope "node": one file of counters per job and node that every process of
the job maps (the runtime's `os/shared_page.c` and `heaps/accounting.c`).

Every rank of an MPI job runs its own `memplace run`; they find the same file because its
name is made of what they have in common: the user, the job (the launcher's job id in the
environment, or for a job that is not MPI, this `memplace run`), and the compiled policy.

    >>> job_key({"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"}, launcher_pid=5)
    'slurm-77.0'
    >>> job_key({}, launcher_pid=5)
    'run-5'
"""

from __future__ import annotations

import hashlib
import os
import struct
import tempfile

from memplace.placement.policy_compile import FLAG_NODE_SCOPE, decode

# Job ids MPI launchers and batch systems put in each rank's environment, most specific first.
JOB_VARIABLES = (
    ("pmix", ("PMIX_NAMESPACE",)),               # Open MPI 5, PMIx launchers
    ("ompi", ("OMPI_MCA_ess_base_jobid",)),      # Open MPI 4
    ("slurm", ("SLURM_JOB_ID", "SLURM_STEP_ID")),
    ("mpich", ("PMI_KVSNAME",)),
)


def job_key(environ=os.environ, launcher_pid: int | None = None) -> str:
    for name, variables in JOB_VARIABLES:
        if environ.get(variables[0]):
            return f"{name}-" + ".".join(environ.get(v, "") for v in variables)
    return f"run-{launcher_pid if launcher_pid is not None else os.getpid()}"


def counters_path(compiled_policy: str, environ=os.environ) -> str | None:
    """The counters file for this job and policy, or None when no capacity is of node scope."""
    data = open(compiled_policy, "rb").read()
    if not any(d.capacity and d.flags & FLAG_NODE_SCOPE for d in decode(data).devices):
        return None
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
