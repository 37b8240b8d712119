"""What kind of program a command is, decided before it runs.

The runtime can only interpose a dynamically linked glibc program of its own
architecture whose loader honours LD_PRELOAD; anything else is refused up front
with one line rather than run silently unplaced.

>>> describe_program("ls").path
'/usr/bin/ls'
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass

from memplace.elf import PT_DYNAMIC, ElfFile
from memplace.errors import UserError

ELF_MACHINES = {3: "i386", 62: "x86_64", 183: "aarch64", 40: "arm", 243: "riscv"}


@dataclass(frozen=True)
class Program:
    path: str
    kind: str  # "elf" or "script"
    machine: str | None = None
    interpreter: str | None = None  # PT_INTERP, or the #! interpreter of a script


def resolve_command(cmd: str) -> str:
    """The executable file `cmd` names, as execvp would find it."""
    if "/" in cmd:
        path = cmd
        if not os.path.exists(path):
            raise UserError(f"{cmd}: no such file")
    else:
        found = shutil.which(cmd)
        if found is None:
            raise UserError(f"{cmd}: command not found")
        path = found
    if os.path.isdir(path):
        raise UserError(f"{cmd}: is a directory")
    if not os.access(path, os.X_OK):
        raise UserError(f"{cmd}: permission denied (not executable)")
    return path


def _read_elf(path: str, head: bytes) -> Program:
    if len(head) < 64 or head[4] not in (1, 2) or head[5] != 1:
        raise UserError(f"{path}: unsupported or truncated ELF file")
    try:
        elf = ElfFile(path)
        phdrs = elf.phdrs
    except UserError:
        raise UserError(f"{path}: truncated ELF program headers") from None
    machine = ELF_MACHINES.get(elf.machine, f"machine {elf.machine}")
    dynamic = any(p.type == PT_DYNAMIC for p in phdrs)
    interp = elf.interp
    if interp is None or not dynamic:
        raise UserError(f"{path}: statically linked; memplace can only place the allocations "
                        "of dynamically linked programs")
    return Program(path=path, kind="elf", machine=machine, interpreter=interp)


def describe_program(cmd: str) -> Program:
    """Resolve `cmd` and refuse what LD_PRELOAD cannot reach (one-line UserError)."""
    path = resolve_command(cmd)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):  # an executable FIFO would block the read below
        raise UserError(f"{cmd}: not a program (not a regular file)")
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        raise UserError(f"{path}: set-user-ID or set-group-ID program; the dynamic loader "
                        "ignores LD_PRELOAD for it, so memplace cannot run it placed")
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if head.startswith(b"\x7fELF"):
        program = _read_elf(path, head)
        if "ld-musl" in (program.interpreter or ""):
            raise UserError(f"{path}: linked against musl; the memplace runtime is built for glibc")
        native = os.uname().machine
        if program.machine != native:
            raise UserError(f"{path}: a {program.machine} program; the memplace runtime is built "
                            f"for {native}")
        return program
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
        return Program(path=path, kind="script", interpreter=line.split()[0] if line else None)
    raise UserError(f"{path}: not an ELF executable or a script")
