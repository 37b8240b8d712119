"""A newc cpio archive written in memory: what the kernel unpacks as an initramfs.

>>> c = Cpio()
>>> c.file("bin/hello", b"#!/bin/sh\\necho hi\\n")
>>> c.symlink("bin/sh", "busybox")
>>> len(c.finish()) % 4
0

The format is the kernel's Documentation/driver-api/early-userspace/buffer-format.rst:
a header of the magic and 13 fields of 8 hex digits, the name, the data, each padded to 4.
"""

from __future__ import annotations

import stat

NEWC_MAGIC = b"070701"
NEWC_FIELDS = ("ino", "mode", "uid", "gid", "nlink", "mtime", "filesize",
               "devmajor", "devminor", "rdevmajor", "rdevminor", "namesize", "check")


def _pad4(n: int) -> bytes:
    return bytes(-n % 4)


class Cpio:
    """Directories, files, symlinks and device nodes; a name added twice keeps the first."""

    def __init__(self):
        self.out = bytearray()
        self.ino = 0
        self.names: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        self.ino += 1
        fields = dict.fromkeys(NEWC_FIELDS, 0)
        fields.update(ino=self.ino, mode=mode, nlink=2 if stat.S_ISDIR(mode) else 1, filesize=len(data),
                      rdevmajor=rdev[0], rdevminor=rdev[1], namesize=len(name) + 1)
        header = NEWC_MAGIC + b"".join(b"%08x" % fields[f] for f in NEWC_FIELDS)
        self.out += header + name.encode() + b"\0"
        self.out += _pad4(len(header) + len(name) + 1)
        self.out += data + _pad4(len(data))

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            self.dir("/".join(parts[:i]))

    def dir(self, path: str) -> None:
        name = path.strip("/")
        if name and name not in self.names:
            self._parents(name)
            self.names.add(name)
            self._entry(name, stat.S_IFDIR | 0o755)

    def file(self, path: str, data: bytes, mode: int = 0o755) -> None:
        name = path.strip("/")
        if name in self.names:
            return
        self._parents(name)
        self.names.add(name)
        self._entry(name, stat.S_IFREG | mode, data)

    def symlink(self, path: str, target: str) -> None:
        name = path.strip("/")
        if name not in self.names:
            self._parents(name)
            self.names.add(name)
            self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def chardev(self, path: str, major: int, minor: int) -> None:
        name = path.strip("/")
        self._parents(name)
        self.names.add(name)
        self._entry(name, stat.S_IFCHR | 0o600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return bytes(self.out)
