"""memplace's TLS and pthread-key resolution inside a drgn session.

drgn reads a core's types and memory but returns `<not implemented>` for every
thread-local variable. These helpers take the drgn `Program`, resolve the
variable's address in a thread with memplace (tls_location.tls_address, the same
function `memplace tls` uses), and hand back a real drgn `Object` of drgn's own
type, so everything drgn does with objects works.

    $ drgn -c core -e prog
    >>> from memplace.postmortem.drgn_helpers import tls_object, pthread_key_values   # doctest: +SKIP
    >>> tls_object(prog, "errno")                        # crashed thread   # doctest: +SKIP
    (int)0
    >>> tls_object(prog, "t_pt", thread=5636).x                             # doctest: +SKIP
    (int)1
    >>> pthread_key_values(prog).findings                                   # doctest: +SKIP
    []

A core without NT_FILE (qemu-user's guest cores) tells drgn nothing about its
modules; `memplace_target(prog, exe=..., sysroot=...)` first opens it with the
executable and sysroot memplace needs, and gives drgn those modules and files.
"""

from __future__ import annotations

from memplace.errors import UserError


def memplace_target(prog, exe: str | None = None, sysroot: str | None = None):
    """The memplace Target for the core (or live process) a drgn Program is attached to, cached.

    >>> memplace_target(prog, exe="./prog", sysroot="/usr/aarch64-linux-gnu")   # doctest: +SKIP
    """
    cached = _cached(prog)
    if cached is not None:
        return cached
    import drgn

    if prog.flags & drgn.ProgramFlags.IS_LIVE:
        from memplace.postmortem.live import open_pid

        target = open_pid(prog.pid)
    else:
        from memplace.postmortem.target import open_core

        path = prog.core_dump_path
        if not path:
            raise UserError("this drgn Program has no core dump or process attached")
        target = open_core(path, exe=exe, sysroot=sysroot)
        _give_drgn_modules(prog, target)
    _CACHE[id(prog)] = (prog, target)
    while len(_CACHE) > _CACHE_SIZE:
        del _CACHE[next(iter(_CACHE))]
    return target


# drgn.Program takes neither attributes nor weak references: cache by id, holding the Program
# itself so that its id cannot be reused by a new Program while the entry lives.
_CACHE: dict[int, tuple] = {}
_CACHE_SIZE = 8


def _cached(prog):
    entry = _CACHE.get(id(prog))
    return entry[1] if entry is not None and entry[0] is prog else None


def _give_drgn_modules(prog, target) -> None:
    """Tell drgn memplace's modules (address range and file) when drgn found none itself."""
    import drgn

    try:
        if prog.main_module().loaded_file_status == drgn.ModuleFileStatus.HAVE:
            return
    except LookupError:
        pass
    from memplace.postmortem.elfcore import PT_LOAD

    for m in target.modules:
        loads = [p for p in m.elf.phdrs if p.type == PT_LOAD]
        if not loads:
            continue
        # An extra module's bias is its start minus the file's first segment: memplace's l_addr.
        dm = prog.extra_module(m.name, 0, create=True)
        dm.address_range = (m.bias + min(p.vaddr for p in loads), m.bias + max(p.vaddr + p.memsz for p in loads))
        try:
            dm.try_file(m.elf.path, force=True)
        except Exception:  # noqa: BLE001 - a file drgn cannot use leaves that module without types
            continue


def _target(prog):
    return _cached(prog) or memplace_target(prog)


def _tid(prog, thread) -> int:
    if thread is None:
        try:
            return prog.crashed_thread().tid
        except Exception:  # noqa: BLE001 - live processes have no crashed thread
            return prog.main_thread().tid
    return thread if isinstance(thread, int) else thread.tid


def thread_pointer(prog, thread=None) -> int | None:
    """The thread pointer of a thread (drgn Thread, tid, or None for the crashed thread).

    >>> hex(thread_pointer(prog, 5636))                                  # doctest: +SKIP
    '0x7f49780126c0'
    >>> thread_pointer(prog) == thread_pointer(prog, prog.crashed_thread())   # doctest: +SKIP
    True
    """
    from memplace.postmortem.threads import thread_pointer as tp

    return tp(_target(prog), _tid(prog, thread))


def tls_address(prog, name: str, thread=None) -> int:
    """Address of thread-local variable `name` in a thread; LookupError with the reason if none.

    >>> hex(tls_address(prog, "errno", thread=5636))                     # doctest: +SKIP
    '0x7f49780126b8'
    """
    from memplace.postmortem.tls import select_variables
    from memplace.postmortem.tls_location import NoTlsBlock, tls_address as address_in_thread

    target = _target(prog)
    tid = _tid(prog, thread)
    th = next((t for t in target.threads if t.tid == tid), None)
    if th is None:
        raise LookupError(f"no thread {tid}")
    module, var = select_variables(target, [name])[0]
    try:
        return address_in_thread(target, th, module, var.offset)
    except NoTlsBlock as e:
        raise LookupError(f"{name} in thread {tid}: {e.state}") from None


def tls_object(prog, name: str, thread=None):
    """A drgn Object for thread-local variable `name` in a thread (default: the crashed one).

    >>> tls_object(prog, "tv", thread=5636)                              # doctest: +SKIP
    (long)42
    """
    import drgn

    addr = tls_address(prog, name, thread)
    try:
        typ = prog[name].type_  # drgn knows the type, only not the address
    except (KeyError, LookupError):
        from memplace.postmortem.tls import select_variables

        _, var = select_variables(_target(prog), [name])[0]
        typ = prog.array_type(prog.int_type("unsigned char", 1, False), var.size)
    return drgn.Object(prog, typ, address=addr)


def pthread_key_values(prog):
    """memplace's KeysReport (keys, per-thread values, misuse findings) for this Program.

    >>> [(k.key, k.destructor_name) for k in pthread_key_values(prog).keys]   # doctest: +SKIP
    [(0, 'prog:destroy')]
    """
    from memplace.postmortem.keys import pthread_keys

    return pthread_keys(_target(prog))
