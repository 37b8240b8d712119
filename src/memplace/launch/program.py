"""What kind of program a command is, decided before it runs.

The runtime can only interpose a dynamically linked glibc program of its own
architecture whose loader honours LD_PRELOAD; anything else is refused up front
with one line rather than run silently unplaced.

>>> describe_program("ls").path
'/usr/bin/ls'
"""

from __future__ import annotations

import os
import stat
from collections import namedtuple

from memplace.elf import PT_DYNAMIC, ElfFile
from memplace.errors import UserError

ELF_MACHINES = {3: "i386", 62: "x86_64", 183: "aarch64", 40: "arm", 243: "riscv"}


# Why a program cannot run under the runtime: the launcher's refusals, and the reasons the
# runtime gives for stepping aside for a program the command starts (placement/stats.py).
WHY = {
    "setid": "set-user-ID or set-group-ID program; the dynamic loader ignores LD_PRELOAD for it, "
             "so memplace cannot run it placed",
    "static": "statically linked; memplace can only place the allocations of dynamically linked programs",
    "musl": "linked against musl; the memplace runtime is built for glibc",
}


def why_machine(machine: int | str, bits: int | None = None) -> str:
    """'a i386 program; the memplace runtime is built for x86_64' (e_machine or its name)."""
    name = machine if isinstance(machine, str) else ELF_MACHINES.get(machine, f"machine {machine}")
    native = os.uname().machine
    if bits and name == native:  # same machine, other word size (x32)
        name = f"{bits}-bit {name}"
    return f"a {name} program; the memplace runtime is built for {native}"


def why_loader(loader: str) -> str:
    return f"its dynamic loader {loader} is not glibc's; the memplace runtime is built for glibc"


# kind: "elf" or "script"; interpreter: PT_INTERP, or the #! interpreter of a script.
# A named tuple: this is the start-up path of every `memplace run` (see memplace.elf).
Program = namedtuple("Program", "path kind machine interpreter", defaults=(None, None))


def resolve_command(cmd: str) -> str:
    """The executable file `cmd` names, as execvp would find it."""
    if "/" in cmd:
        path = cmd
        if not os.path.exists(path):
            raise UserError(f"{cmd}: no such file")
    else:
        import shutil

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
        raise UserError(f"{path}: {WHY['static']}")
    return Program(path=path, kind="elf", machine=machine, interpreter=interp)


def describe_program(cmd: str, _depth: int = 0) -> Program:
    """Resolve `cmd` and refuse what LD_PRELOAD cannot reach (one-line UserError); for a
    script, its interpreter too (nested up to 4, as the kernel)."""
    path = resolve_command(cmd)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):  # an executable FIFO would block the read below
        raise UserError(f"{cmd}: not a program (not a regular file)")
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        raise UserError(f"{path}: {WHY['setid']}")
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if head.startswith(b"\x7fELF"):
        program = _read_elf(path, head)
        if "ld-musl" in (program.interpreter or ""):
            raise UserError(f"{path}: {WHY['musl']}")
        if program.machine != os.uname().machine:
            raise UserError(f"{path}: {why_machine(program.machine)}")
        return program
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
        interpreter = line.split()[0] if line else None
        if interpreter and os.path.isabs(interpreter) and _depth < 4:
            try:
                describe_program(interpreter, _depth + 1)
            except UserError as e:
                raise UserError(f"{path}: a script whose interpreter {e}") from None
        return Program(path=path, kind="script", interpreter=interpreter)
    raise UserError(f"{path}: not an ELF executable or a script")
