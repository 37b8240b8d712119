"""A live process as a Target: /proc/PID/mem, maps and auxv, without stopping it for long.

glibc processes are not stopped at all: every thread's `struct pthread` (= its
thread pointer on x86) comes from glibc's own thread lists in memory. Otherwise
(musl) each thread is seized, interrupted, its registers read and released
(PTRACE_SEIZE/INTERRUPT/GETREGS/DETACH: microseconds per thread, no signal
delivered to the program). Nothing is written to the process.

>>> t = open_pid(1234)                                 # doctest: +SKIP
>>> [th.tid for th in t.threads]                       # doctest: +SKIP
"""

from __future__ import annotations

import ctypes
import os
import struct

from memplace.errors import UserError
from memplace.postmortem.arch import ARCHES, AT_PHDR, EM_X86_64, arch_for
from memplace.postmortem.elfcore import ElfFile, Mapping, Memory, MemoryFault
from memplace.postmortem.modules import load_modules
from memplace.postmortem.target import Target, identify_libc
from memplace.postmortem.threads import Thread, glibc_threads_in_memory
from memplace.postmortem.tls_location import assign_tls_modules

PTRACE_GETREGS, PTRACE_DETACH, PTRACE_SEIZE, PTRACE_INTERRUPT = 12, 17, 0x4206, 0x4207
__WALL = 0x40000000


class LiveMemory(Memory):
    """pread on /proc/PID/mem; a read-only view of a running process."""

    def __init__(self, pid: int, word: int, endian: str = "<"):
        self.pid, self.word, self.endian = pid, word, endian
        try:
            self.fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
        except OSError as e:
            raise UserError(f"process {pid}: cannot read its memory: {e.strerror}"
                            " (same user or root needed; see /proc/sys/kernel/yama/ptrace_scope)") from None

    def read(self, addr: int, size: int) -> bytes:
        if size <= 0:
            return b""
        try:
            data = os.pread(self.fd, size, addr)
        except (OSError, OverflowError, ValueError):
            raise MemoryFault(addr, size) from None
        if len(data) != size:
            raise MemoryFault(addr, size)
        return data


def _maps(pid: int) -> list[Mapping]:
    out = []
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            parts = line.split(None, 5)
            if len(parts) == 6 and parts[5].startswith("/"):
                lo, hi = (int(x, 16) for x in parts[0].split("-"))
                out.append(Mapping(lo, hi, int(parts[2], 16), parts[5].rstrip("\n")))
    return out


def open_pid(pid: int, thread_pointers=None) -> Target:
    """Open a running process (same user or root) as a Target.

    `thread_pointers(tids) -> {tid: tp}` is asked for the threads glibc's lists do not
    give, before ptrace is tried: a debugger that has the process stopped (gdb's `mp-tls`)
    knows them, and memplace cannot seize a thread that is already traced."""
    where = f"process {pid}"
    if not os.path.isdir(f"/proc/{pid}"):
        raise UserError(f"{where}: no such process")
    try:
        exe_path = os.readlink(f"/proc/{pid}/exe")
        auxv_raw = open(f"/proc/{pid}/auxv", "rb").read()
        maps = _maps(pid)
    except OSError as e:
        raise UserError(f"{where}: cannot inspect: {e.strerror}") from None
    exe = ElfFile(f"/proc/{pid}/exe")
    arch = arch_for(exe.machine)
    if arch is None or arch.word != exe.word:
        raise UserError(f"{where}: unsupported machine (e_machine {exe.machine})")
    mem = LiveMemory(pid, arch.word, exe.endian)
    mem.machine = exe.machine
    fmt = exe.endian + ("I" if arch.word == 4 else "Q") * (len(auxv_raw) // arch.word)
    vals = struct.unpack(fmt, auxv_raw[: struct.calcsize(fmt)])
    auxv = {vals[i]: vals[i + 1] for i in range(0, len(vals) - 1, 2) if vals[i]}
    mapped = [m.path for m in maps]
    # /proc/PID/exe works even if the file was replaced; the maps name is what the process ran.
    mods = load_modules(mem, f"/proc/{pid}/exe", None, auxv.get(AT_PHDR), mapped, where)
    mods[0].name = exe_path
    target = Target(mem, arch, exe.machine, where, mods)
    identify_libc(target)
    tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
    tps: dict[int, int] = {}
    if target.glibc is not None:
        tps = {tid: pd - target.pthread_offset for tid, pd in glibc_threads_in_memory(target).items()}
    missing = [t for t in tids if t not in tps]
    if missing and thread_pointers is not None:
        tps.update(thread_pointers(missing))
        missing = [t for t in tids if t not in tps]
    if missing and arch.name == "x86_64":
        tps.update(_ptrace_fs_base(missing))
    target.threads = [Thread(t, tps.get(t)) for t in tids]
    target.source = str(pid)
    assign_tls_modules(target)
    return target


def _ptrace_fs_base(tids: list[int]) -> dict[int, int]:
    """fs_base of each thread, each stopped only while its registers are copied."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.ptrace.restype = ctypes.c_long
    libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p]
    x86_64 = ARCHES[EM_X86_64]  # struct user_regs_struct is NT_PRSTATUS's pr_reg
    regs = (ctypes.c_ulonglong * x86_64.nregs)()
    out = {}
    for tid in tids:
        if libc.ptrace(PTRACE_SEIZE, tid, None, None) != 0:
            continue
        try:
            if libc.ptrace(PTRACE_INTERRUPT, tid, None, None) != 0:
                continue
            os.waitpid(tid, __WALL)
            if libc.ptrace(PTRACE_GETREGS, tid, None, ctypes.addressof(regs)) == 0:
                out[tid] = regs[x86_64.tp_reg]
        except ChildProcessError:
            pass
        finally:
            libc.ptrace(PTRACE_DETACH, tid, None, None)
    return out
