"""A process image ready for questions: memory, threads, modules and its libc's layout.

`open_core` (and `memplace.postmortem.live.open_pid`) assemble one `Target`;
everything else (TLS, keys) is a plain function of a Target.

>>> t = open_core("core")                                   # doctest: +SKIP
>>> t.libc, [th.tid for th in t.threads]                    # doctest: +SKIP
('glibc', [5635, 5636])
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memplace.postmortem.arch import AT_PHDR, Arch
from memplace.postmortem.elfcore import Core, Memory
from memplace.postmortem.layouts import (
    GlibcLayout, MuslLayout, glibc_layout, musl_layout, musl_version,
)
from memplace.postmortem.heap import heap_test
from memplace.postmortem.modules import Module, describe_address, find_executable, load_modules, resolve_path
from memplace.postmortem.threads import Thread, glibc_threads_in_memory, thread_pointer_from_notes
from memplace.postmortem.tls_location import assign_tls_modules, pthread_offset


@dataclass
class Target:
    """Everything memplace knows about one process image (a core or a live process)."""

    mem: Memory
    arch: Arch
    machine: int
    where: str  # "core PATH" or "process PID", for messages
    modules: list[Module]
    threads: list[Thread] = field(default_factory=list)
    libc: str = "unknown"  # "glibc", "musl" or "unknown"
    glibc: GlibcLayout | None = None
    musl: MuslLayout | None = None
    musl_version: str | None = None
    libc_module: Module | None = None
    rtld_global: int | None = None
    notes: list[str] = field(default_factory=list)  # caveats worth telling the user
    source: str = ""  # the core's path or the pid, as given

    @property
    def exe(self) -> Module:
        return self.modules[0]

    def describe(self, addr: int) -> str | None:
        """What an address points at: 'module:symbol+off', 'module+off', 'heap' or None.

        >>> target.describe(0x7f88c8b91560)                       # doctest: +SKIP
        'libc.so.6:_nl_global_locale'
        """
        memo = self.__dict__.setdefault("_described", {})  # threads share most pointers (locale, arenas)
        if addr in memo:
            return memo[addr]
        d = describe_address(self.modules, addr)
        if d is None:
            is_heap = self.__dict__.get("_is_heap")
            if is_heap is None:
                is_heap = self.__dict__["_is_heap"] = heap_test(self)
            d = "heap" if is_heap(addr) else None
        memo[addr] = d
        return d

    def module(self, name: str) -> Module | None:
        """A module by path or basename."""
        return next((m for m in self.modules if m.name == name or m.short == name), None)

    @property
    def pthread_offset(self) -> int:
        """struct pthread address minus thread pointer (tls_location.pthread_offset)."""
        return pthread_offset(self)

    def glibc_global(self, name: str) -> int | None:
        """Address of one of ld.so's globals (`_dl_stack_used`, `_dl_tls_dtv_slotinfo_list`):
        a field of `_rtld_global` in a dynamic program, a variable of its own in a static one.

        >>> hex(target.glibc_global("_dl_stack_used"))           # doctest: +SKIP
        '0x7f5e1c02d0a8'
        """
        lay = self.glibc
        if lay is None:
            return None
        if self.rtld_global is not None:
            f = "rtld_global_" + name
            return self.rtld_global + lay.off(f) if lay.has(f) else None
        return _symbol_address(self.modules, name) if lay.has(name) else None


def open_core(path: str, exe: str | None = None, sysroot: str | None = None) -> Target:
    """Open a core file (with its executable and libraries) as a Target."""
    core = Core(path)
    core.machine = core.elf.machine
    where = f"core {path}"
    exe_path = find_executable(exe, sysroot, core.files, core.auxv.get(AT_PHDR), core.fname, path)
    mapped = [m.path for m in core.files]
    mods = load_modules(core, exe_path, sysroot, core.auxv.get(AT_PHDR), mapped, path)
    # Pages of other mapped files (not modules) that the kernel skipped.
    for m in core.files:
        p = resolve_path(m.path, sysroot)
        if p:
            core.add_file_mapping(m.start, m.end, m.offset, p)
    target = Target(core, core.arch, core.elf.machine, where, mods)
    identify_libc(target)
    threads = []
    for i, ct in enumerate(core.threads):
        tp = thread_pointer_from_notes(core.arch, core.elf.machine, ct)
        pc = ct.regs[core.arch.pc_reg] if len(ct.regs) > core.arch.pc_reg else None
        threads.append(Thread(ct.tid, tp, crashed=(i == 0), pc=pc))
    if any(t.tp is None for t in threads):
        fill_thread_pointers_from_memory(target, threads)
    target.threads = sorted(threads, key=lambda t: t.tid)  # by LWP, as gdb numbers them; crashed stays marked
    target.source = path
    assign_tls_modules(target)
    return target


def fill_thread_pointers_from_memory(target: Target, threads: list[Thread]) -> None:
    """Thread pointers from glibc's thread lists, for cores without TLS-register notes."""
    if target.glibc is None:
        target.notes.append("no thread-pointer notes in the core and no glibc thread list: TLS unavailable")
        return
    pds = glibc_threads_in_memory(target)
    for t in threads:
        if t.tp is None and t.tid in pds:
            t.tp = pds[t.tid] - target.pthread_offset


def identify_libc(target: Target) -> None:
    """Decide glibc vs musl and load the layout from the process's own libc."""
    mods = target.modules
    # glibc: the module carrying _thread_db_* descriptors (libc.so.6, libpthread.so.0, static exe).
    order = sorted(mods, key=lambda m: (0 if "libc.so" in m.short else 1 if "libpthread" in m.short else 2))
    for m in order:
        lay = glibc_layout(m.elf)
        if lay is not None:
            target.libc, target.glibc, target.libc_module = "glibc", lay, m
            break
    if target.glibc is not None:
        target.rtld_global = _symbol_address(mods, "_rtld_global")
        return
    exe = mods[0].elf
    musl_mod = None
    if exe.interp and "ld-musl" in exe.interp:
        musl_mod = next((m for m in mods if m.name == exe.interp or m.short.startswith("ld-musl")), None)
    elif exe.symtab.get("builtin_tls") is not None or exe.symtab.get("__libc") is not None:
        musl_mod = mods[0]  # static musl
    if musl_mod is not None:
        target.libc, target.libc_module = "musl", musl_mod
        ver = musl_version(musl_mod.elf)
        target.musl_version = ver
        target.musl, series = musl_layout(target.arch.name, ver)
        if target.musl is None:
            target.notes.append(f"musl {series} on {target.arch.name} has no known layout: no pthread keys")
        elif ver is None:
            target.notes.append("musl version not recorded in this executable: assuming the 1.2 layout")
        return
    target.notes.append("libc not recognised (stripped static executable?): TLS offsets from the ELF ABI only")


def _symbol_address(mods: list[Module], name: str) -> int | None:
    for m in mods:
        s = m.elf.symbol(name)
        if s is not None:
            return m.bias + s.value
    return None
