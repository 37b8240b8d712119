"""What kind of program a command is, decided before it runs.

The runtime can only interpose a dynamically linked glibc program of its own
architecture whose loader honours LD_PRELOAD; anything else is refused up front
with one line rather than run silently unplaced.

>>> describe_target("ls").path
'/usr/bin/ls'
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
from dataclasses import dataclass

from memplace.errors import UserError

PT_INTERP = 3
PT_DYNAMIC = 2
ELF_MACHINES = {3: "i386", 62: "x86_64", 183: "aarch64", 40: "arm", 243: "riscv"}


@dataclass(frozen=True)
class Target:
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


def _read_elf(path: str, head: bytes) -> Target:
    if len(head) < 64 or head[4] not in (1, 2) or head[5] != 1:
        raise UserError(f"{path}: unsupported or truncated ELF file")
    is64 = head[4] == 2
    if is64:
        (e_machine,) = struct.unpack_from("<H", head, 18)
        e_phoff, = struct.unpack_from("<Q", head, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", head, 54)
    else:
        (e_machine,) = struct.unpack_from("<H", head, 18)
        e_phoff, = struct.unpack_from("<I", head, 28)
        e_phentsize, e_phnum = struct.unpack_from("<HH", head, 42)
    machine = ELF_MACHINES.get(e_machine, f"machine {e_machine}")
    interp = None
    dynamic = False
    with open(path, "rb") as f:
        f.seek(e_phoff)
        table = f.read(e_phentsize * e_phnum)
        for i in range(e_phnum):
            ph = table[i * e_phentsize:(i + 1) * e_phentsize]
            if len(ph) < (56 if is64 else 32):
                raise UserError(f"{path}: truncated ELF program headers")
            p_type = struct.unpack_from("<I", ph, 0)[0]
            if p_type == PT_DYNAMIC:
                dynamic = True
            elif p_type == PT_INTERP:
                off, size = (struct.unpack_from("<QQ", ph, 8)[0], struct.unpack_from("<Q", ph, 32)[0]) \
                    if is64 else (struct.unpack_from("<I", ph, 4)[0], struct.unpack_from("<I", ph, 16)[0])
                f.seek(off)
                interp = f.read(size).rstrip(b"\0").decode(errors="replace")
    if interp is None or not dynamic:
        raise UserError(f"{path}: statically linked; memplace can only place the allocations "
                        "of dynamically linked programs")
    return Target(path=path, kind="elf", machine=machine, interpreter=interp)


def describe_target(cmd: str) -> Target:
    """Resolve `cmd` and refuse what LD_PRELOAD cannot reach (one-line UserError)."""
    path = resolve_command(cmd)
    st = os.stat(path)
    if st.st_mode & (stat.S_ISUID | stat.S_ISGID):
        raise UserError(f"{path}: set-user-ID or set-group-ID program; the dynamic loader "
                        "ignores LD_PRELOAD for it, so memplace cannot run it placed")
    try:
        with open(path, "rb") as f:
            head = f.read(256)
    except OSError as e:
        raise UserError(f"{path}: cannot read: {e.strerror}") from None
    if head.startswith(b"\x7fELF"):
        target = _read_elf(path, head)
        if "ld-musl" in (target.interpreter or ""):
            raise UserError(f"{path}: linked against musl; the memplace runtime is built for glibc")
        native = os.uname().machine
        if target.machine != native:
            raise UserError(f"{path}: a {target.machine} program; the memplace runtime is built "
                            f"for {native}")
        return target
    if head.startswith(b"#!"):
        line = head[2:].split(b"\n", 1)[0].decode(errors="replace").strip()
        return Target(path=path, kind="script", interpreter=line.split()[0] if line else None)
    raise UserError(f"{path}: not an ELF executable or a script")
