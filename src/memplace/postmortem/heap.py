"""Which addresses of a core are malloc heap, to label pointers `<heap>`.

A core does not name its anonymous mappings, so glibc's heaps are recognised by shape:

- the brk heap: the first anonymous segment starting after the executable's end,
  within the kernel's brk randomisation (1 GiB on 64-bit, 32 MiB on 32-bit);
- a thread arena's heap: an anonymous segment whose start is aligned to glibc's
  HEAP_MAX_SIZE (64 MiB on 64-bit, 1 MiB on 32-bit) and begins with a `heap_info`
  whose `ar_ptr` is set and whose `size` fits in HEAP_MAX_SIZE.

Anything else (thread stacks, other mmaps) is not labelled.

>>> is_heap = heap_test(target)                    # doctest: +SKIP
>>> is_heap(0x55d0c0a012a0)                        # doctest: +SKIP
True
"""

from __future__ import annotations

import bisect

from memplace.postmortem.elfcore import PT_LOAD, MemoryFault



def heap_test(target):
    """A function addr -> bool: is the address in one of the core's malloc heaps."""
    mem = target.mem
    loads = getattr(mem, "loads", None)
    files = getattr(mem, "files", None)
    if loads is None or files is None or target.libc != "glibc":
        return lambda addr: False
    word = target.arch.word
    heap_max = (64 << 20) if word == 8 else (1 << 20)
    brk_range = (1 << 30) if word == 8 else (32 << 20)
    filed = sorted((m.start, m.end) for m in files)
    starts = [s for s, _ in filed]

    def file_backed(lo: int) -> bool:
        i = bisect.bisect_right(starts, lo) - 1
        return i >= 0 and filed[i][0] <= lo < filed[i][1]

    anon = [p for p in loads if not file_backed(p.vaddr)]
    exe = target.exe
    exe_end = max((exe.bias + p.vaddr + p.memsz for p in exe.elf.phdrs if p.type == PT_LOAD), default=None)
    ranges = []
    if exe_end is not None:
        brk = next((p for p in anon if exe_end <= p.vaddr < exe_end + brk_range), None)
        if brk is not None:
            ranges.append((brk.vaddr, brk.vaddr + brk.memsz))
    for p in anon:
        if p.vaddr % heap_max:
            continue
        try:
            ar_ptr = mem.read_word(p.vaddr)
            size = mem.read_word(p.vaddr + 2 * word)
        except MemoryFault:
            continue
        if ar_ptr and 0 < size <= heap_max:
            ranges.append((p.vaddr, p.vaddr + p.memsz))
    ranges.sort()
    lows = [lo for lo, _ in ranges]

    def is_heap(addr: int) -> bool:
        i = bisect.bisect_right(lows, addr) - 1
        return i >= 0 and addr < ranges[i][1]

    return is_heap
