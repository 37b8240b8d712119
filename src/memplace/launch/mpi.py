"""What an MPI launcher or batch system told this process: its rank and its job.

Every rank of a job runs its own memplace; these let them name shared things alike (the
node's capacity counters, one statistics file for the job) and tell themselves apart.

    >>> job_key({"SLURM_JOB_ID": "77", "SLURM_STEP_ID": "0"}, launcher_pid=5)
    'slurm-77.0'
    >>> job_key({}, launcher_pid=5), mpi_rank({"PMIX_RANK": "3"})
    ('run-5', 3)
    >>> job_key({"PMI_RANK": "1"}, launcher_pid=5, ancestors=[(40, "sh"), (31, "hydra_pmi_proxy")])
    'hydra-31'
"""

from __future__ import annotations

import os

# Job ids in each rank's environment, most specific first.
JOB_VARIABLES = (
    ("pmix", ("PMIX_NAMESPACE",)),               # Open MPI 5, PMIx launchers
    ("ompi", ("OMPI_MCA_ess_base_jobid",)),      # Open MPI 4
    ("slurm", ("SLURM_JOB_ID", "SLURM_STEP_ID")),
    ("mpich", ("PMI_KVSNAME",)),
)
RANK_VARIABLES = ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "SLURM_PROCID")
# MPICH's launcher (Hydra: mpirun.mpich, mpiexec.hydra) gives its ranks PMI_RANK, PMI_SIZE,
# PMI_FD, MPI_LOCALRANKID and no job id: the ranks of one node share their parent, Hydra's
# proxy, whose pid then names the job on that node.
HYDRA_PROXY = "hydra_pmi_proxy"


def job_key(environ=os.environ, launcher_pid: int | None = None, ancestors=None) -> str:
    """The job this process belongs to; outside MPI and batch jobs, this memplace alone.
    `ancestors`: (pid, name) of this process's parents, nearest first (read from /proc)."""
    for name, variables in JOB_VARIABLES:
        if environ.get(variables[0]):
            return f"{name}-" + ".".join(environ.get(v, "") for v in variables)
    if environ.get("PMI_RANK") is not None:
        for pid, comm in (ancestors if ancestors is not None else _ancestors()):
            if comm == HYDRA_PROXY:
                return f"hydra-{pid}"
    return f"run-{launcher_pid if launcher_pid is not None else os.getpid()}"


def _ancestors(limit: int = 16):
    """(pid, command name) of the parent, its parent, ... (a few: a rank's memplace may be
    started through a shell or two)."""
    pid = os.getppid()
    for _ in range(limit):
        if pid <= 1:
            return
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            return
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        comm = stat[stat.find("(") + 1:stat.rfind(")")]
        yield pid, comm
        fields = stat[stat.rfind(")") + 2:].split()
        pid = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else 0


def in_job(environ=os.environ) -> bool:
    """Whether other processes of a launcher's job may share this one's job key."""
    return not job_key(environ).startswith("run-")


def mpi_rank(environ=os.environ) -> int | None:
    """The MPI rank the launcher gave this process (Open MPI, MPICH/PMI, PMIx, Slurm)."""
    for var in RANK_VARIABLES:
        v = environ.get(var)
        if v is not None and v.isdigit():
            return int(v)
    return None
