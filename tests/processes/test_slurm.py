"""MPI under Slurm: the MPICH program of test_mpich.py started by `srun -n 2 --mpi=pmi2`, each
rank under its own memplace, on a one-node Slurm cluster the fixture starts for the module
(munged on a socket of its own, slurmctld and slurmd on free ports, all in a temporary
directory; stopped after). The ranks' rank is SLURM_PROCID (and PMI_RANK), their job
SLURM_JOB_ID.SLURM_STEP_ID: one statistics file for both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
from mpi_program import MEMPLACE, SOURCE, line

from memplace.launch.mpi import job_key, mpi_rank
from memplace.profiling import profile as prof

DAEMONS = ("munged", "slurmctld", "slurmd", "srun", "sinfo", "mpicc.mpich")


def tool(name: str) -> str | None:
    """The program's path (daemons are in /usr/sbin, which a user's PATH may lack)."""
    return shutil.which(name) or (f"/usr/sbin/{name}" if Path("/usr/sbin", name).exists() else None)


def test_slurm_variables_name_the_rank_and_the_job():
    env = {"SLURM_PROCID": "3", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "41", "SLURM_STEP_ID": "0"}
    assert (mpi_rank(env), job_key(env)) == (3, "slurm-41.0")
    # MPICH under srun --mpi=pmi2 sets PMI_RANK too: the same rank, Slurm's job
    assert (mpi_rank({**env, "PMI_RANK": "3"}), job_key({**env, "PMI_RANK": "3"})) == (3, "slurm-41.0")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, IndexError):
        return
    for _ in range(100):  # up to 10 s
        try:
            os.kill(pid, 0)
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def slurm(tmp_path_factory):
    missing = [d for d in DAEMONS if tool(d) is None]
    if missing:
        pytest.skip(f"needs Debian packages slurm-wlm, munge, mpich, libmpich-dev ({', '.join(missing)} missing)")
    if os.geteuid() != 0:
        pytest.skip("starts slurmd, which runs jobs as their users: needs root")
    d = tmp_path_factory.mktemp("slurm")
    d.chmod(0o700)  # munged checks its socket's directory
    for sub in ("state", "spool"):
        (d / sub).mkdir()
    key = d / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o600)
    sock = d / "munge.sock"
    host = socket.gethostname().split(".")[0]
    conf = d / "slurm.conf"
    conf.write_text(f"""ClusterName=memplacetest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={sock}
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation={d / 'state'}
SlurmdSpoolDir={d / 'spool'}
SlurmctldPidFile={d / 'slurmctld.pid'}
SlurmdPidFile={d / 'slurmd.pid'}
SlurmctldLogFile={d / 'slurmctld.log'}
SlurmdLogFile={d / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={os.cpu_count() or 1} State=UNKNOWN
PartitionName=memplace Nodes={host} Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES
""")
    env = dict(os.environ, SLURM_CONF=str(conf))
    for var in [v for v in env if v.startswith(("SLURM_", "PMI_", "OMPI_", "PMIX_")) and v != "SLURM_CONF"]:
        del env[var]  # a test run inside a Slurm or MPI job must not lend it its ids
    started = []
    try:
        subprocess.run([tool("munged"), f"--socket={sock}", f"--key-file={key}", f"--pid-file={d / 'munged.pid'}",
                        f"--log-file={d / 'munged.log'}", f"--seed-file={d / 'munged.seed'}", "--force"],
                       check=True, timeout=30)
        started.append(d / "munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            subprocess.run([tool(daemon), "-f", str(conf)], check=True, timeout=60, env=env)
            started.append(d / f"{daemon}.pid")
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline:
            state = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True,
                                   env=env).stdout.strip()
            if state in ("idle", "mix", "alloc"):
                break
            time.sleep(0.5)
        else:
            logs = "".join(p.read_text()[-2000:] for p in d.glob("slurm*.log"))
            pytest.fail(f"the one-node Slurm cluster did not come up (sinfo: {state!r}):\n{logs}")
        yield env
    finally:
        for pidfile in reversed(started):
            stop(pidfile)


@pytest.fixture(scope="module")
def program(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("slurm-mpi")
    (tmp / "ranks.c").write_text(SOURCE)
    exe = tmp / "ranks"
    subprocess.run(["mpicc.mpich", "-O1", "-g", "-o", str(exe), str(tmp / "ranks.c")], check=True)
    return exe


def srun(env: dict, *argv: str, cwd: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(["srun", "-n", "2", "--mpi=pmi2", *argv], capture_output=True, text=True,
                       env=env, timeout=300, cwd=cwd)
    assert r.returncode == 0, r.stderr
    return r


@pytest.mark.slow
def test_srun_ranks_profiled_and_placed(slurm, program, tmp_path):
    bare = sorted(srun(slurm, str(program), cwd=tmp_path).stdout.splitlines())
    assert bare[0].startswith("rank 0 of 2")
    out = tmp_path / "profiles"
    r = srun(slurm, *MEMPLACE, "profile", "--out", str(out), "--", str(program), cwd=tmp_path)
    assert sorted(r.stdout.splitlines()) == bare
    files = sorted(out.glob("*.json"))
    profiles = {p.rank: p for p in map(prof.load, files)}
    assert sorted(profiles) == [0, 1] and len(files) == 2, [f.name for f in files]
    for rank, p in profiles.items():
        field, = [s for s in p.sites if s.symbol(0) and s.symbol(0).line == line("FIELD")]
        assert field.allocations == 4 + 2 * rank
    frame = field.frames[0]
    (tmp_path / "slow").mkdir()
    policy = tmp_path / "policy.toml"
    policy.write_text(f"""version = 1
default = "slow"
[devices.fast]
kind = "numa"
nodes = [0]
capacity = "64MiB"
scope = "node"
fallback = "slow"
[devices.slow]
kind = "file"
path = "{tmp_path / 'slow'}"
[[rules]]
name = "field"
site = ["{frame.module}+{frame.offset:#x}"]
device = "fast"
""")
    stats = tmp_path / "stats.json"
    r = srun(slurm, *MEMPLACE, "run", "--policy", str(policy), "--stats", str(stats), "--",
             str(program), cwd=tmp_path)
    assert sorted(r.stdout.splitlines()) == bare
    assert "cannot share" not in r.stderr, r.stderr
    doc = json.loads(stats.read_text())
    assert doc["ranks"] == {"0": 0, "1": 0}
    assert doc["job"].startswith("slurm-")
    by_rank = {p["rank"]: p for p in doc["processes"]}
    assert sorted(by_rank) == [0, 1]
    for rank, p in by_rank.items():
        fast = next(x for x in p["devices"] if x["name"] == "fast")
        assert fast["allocations"] == 4 + 2 * rank, p

