"""Input files as every command reads them: a regular file, of bounded size, nested boundedly.

A policy, profile, stats or locations file named on the command line may be anything the
user typed: a directory, /dev/zero, a FIFO, a 40 GiB log, TOML nested 100,000 deep. Each
is refused here with one UserError line naming the file and the problem, before a parser
can read forever, exhaust memory or overflow the stack.

>>> read_bytes("/dev/zero", "policy", POLICY_LIMIT)
Traceback (most recent call last):
...
memplace.errors.UserError: /dev/zero: the policy must be a regular file, not a character device
>>> parse_json(b"[" * 100 + b"]" * 100, "deep.json", "profile")
Traceback (most recent call last):
...
memplace.errors.UserError: deep.json: the profile is nested more than 64 levels deep
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat

from memplace.errors import UserError

TYPE_CHECKING = False  # typing is not imported at run time: this is every command's start-up
if TYPE_CHECKING:
    from typing import Any

# Largest file each kind of input may be. Generous for real files (a policy of 65,536 rules
# is about 8 MiB of TOML; a profile of a million sites with timelines a few hundred MiB),
# small enough that reading one cannot exhaust a machine.
POLICY_LIMIT = 64 << 20
PROFILE_LIMIT = 1 << 30
STATS_LIMIT = 256 << 20
LOCATIONS_LIMIT = 64 << 20
MAX_DEPTH = 64  # nesting of arrays and tables, and parts of a dotted TOML key; memplace's own files use < 10


def _size(n: int) -> str:
    from memplace.units import format_size  # only for messages: units imports dataclasses

    return format_size(n)


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"))


def read_bytes(path: str | os.PathLike, what: str, limit: int) -> bytes:
    """The whole of a regular file of at most `limit` bytes; UserError naming `path` otherwise.

    Opened without blocking (a FIFO with no writer would block the open itself); the type is
    checked on the open descriptor, so a file swapped for a FIFO after a check is caught too.
    """
    path = os.fspath(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        if e.errno == errno.EISDIR:
            raise UserError(f"{path}: the {what} must be a regular file, not a directory") from None
        raise UserError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = next((name for test, name in _KINDS if test(st.st_mode)), "a special file")
            raise UserError(f"{path}: the {what} must be a regular file, not {kind}")
        if st.st_size > limit:
            raise UserError(f"{path}: the {what} is {_size(st.st_size)}, more than the "
                            f"{_size(limit)} memplace reads")
        os.set_blocking(fd, True)
        chunks, total = [], 0
        while True:  # up to one byte past the limit: a file that grew while read is caught too
            chunk = os.read(fd, min(1 << 20, limit + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                raise UserError(f"{path}: the {what} is more than the {_size(limit)} memplace reads")
        return b"".join(chunks)
    except OSError as e:
        raise UserError(f"{path}: cannot read the {what}: {e.strerror or e}") from None
    except MemoryError:
        raise _out_of_memory(path, what) from None
    finally:
        os.close(fd)


def _out_of_memory(path: str, what: str) -> UserError:
    return UserError(f"{path}: the {what} does not fit in this process's memory (ulimit -v?)")


def read_text(path: str | os.PathLike, what: str, limit: int) -> str:
    """`read_bytes` decoded as UTF-8 (strictly)."""
    data = read_bytes(path, what, limit)
    try:
        return data.decode("utf-8")
    except MemoryError:
        raise _out_of_memory(os.fspath(path), what) from None
    except UnicodeDecodeError as e:
        raise UserError(f"{os.fspath(path)}: the {what} is not a text file (not UTF-8 at byte {e.start})") from None


# Strings and comments, whose brackets and dots are not structure. An unterminated string
# runs to the end (of the line, for TOML's one-line strings), so that no text is scanned
# twice: the scans are linear whatever the input.
# (The loop unrolled, runs of plain characters at once: 2.5x faster on a 24 MB profile.)
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.DOTALL)
_TOML_SKIPPED = re.compile(r'#[^\n]*|"""(?:[^\\]|\\.)*?(?:"""|\\?\Z)|\'\'\'.*?(?:\'\'\'|\Z)'
                           r'|"(?:[^"\\\n]|\\[^\n])*(?:"|\\?(?=\n)|\\?\Z)|\'[^\'\n]*\'?', re.DOTALL)
_TOML_LONG_KEY = re.compile(r"(?<![\w-])(?:[\w-]+[ \t]*\.[ \t]*){%d}" % MAX_DEPTH)
_PAIR = re.compile(rb"\[\]|\{\}")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def _too_deep(brackets: bytes) -> bool:
    """Whether matched brackets nest more than MAX_DEPTH deep (`brackets` holds only [ ] { }).

    Each round removes every innermost pair, one level of all nests at once, in C; a file
    nested at most N deep is empty of pairs after N rounds. Unmatched brackets stay for
    the parser to report."""
    for _ in range(MAX_DEPTH):
        shorter = _PAIR.sub(b"", brackets)  # one pass: [{}] loses one level, not two
        if shorter == brackets:
            return False
        brackets = shorter
    return b"[]" in brackets or b"{}" in brackets


def _brackets(data: bytes) -> bytes:
    return data.translate(None, _NOT_BRACKETS)


def parse_json(data: bytes, path: str, what: str) -> Any:
    """`data` as JSON, at most MAX_DEPTH deep; UserError naming `path` for too deep or too big
    for this process's memory (json's own ValueError for what is not JSON)."""
    try:
        return _parse_json(data, path, what)
    except MemoryError:
        raise _out_of_memory(path, what) from None


def parse_toml(text: str, path: str, what: str) -> dict:
    """`text` as TOML, at most MAX_DEPTH deep; UserError naming `path` for anything wrong."""
    try:
        return _parse_toml(text, path, what)
    except MemoryError:
        raise _out_of_memory(path, what) from None


def _parse_json(data: bytes, path: str, what: str) -> Any:
    """JSON nested at most MAX_DEPTH deep; UserError for deeper (or otherwise bad) JSON.

    The check of depth is made before parsing (json's decoder recurses)."""
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and \
            _too_deep(_brackets(_JSON_STRING.sub(b"", data))):
        raise UserError(f"{path}: the {what} is nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(data)
    except RecursionError:  # not reached past the check above; kept as the last guard
        raise UserError(f"{path}: the {what} is nested too deeply") from None


def _parse_toml(text: str, path: str, what: str) -> dict:
    """TOML nested at most MAX_DEPTH deep (arrays, inline tables, dotted keys); UserError otherwise.

    tomllib recurses on nesting and takes time quadratic in the parts of a dotted key
    (100,000 parts take minutes and gigabytes): both are bounded before parsing."""
    try:
        import tomllib  # here: `memplace run` reading its policy from the cache imports no TOML
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    bare = _TOML_SKIPPED.sub("_", text)
    if _TOML_LONG_KEY.search(bare):
        raise UserError(f"{path}: the {what} has a dotted key of more than {MAX_DEPTH} parts")
    if _too_deep(_brackets(bare.encode("utf-8", "surrogatepass"))):
        raise UserError(f"{path}: the {what} is nested more than {MAX_DEPTH} levels deep")
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UserError(f"{path}: not valid TOML: {e}") from None
    except RecursionError:  # not reached past the checks above; kept as the last guard
        raise UserError(f"{path}: the {what} is nested too deeply") from None


def check_output(path: str | os.PathLike, what: str) -> None:
    """A file memplace is about to write, checked before any work: its directory exists, and
    it is not a directory. A device or FIFO is fine: it is written into, never replaced
    (output_files.write_whole)."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        parent = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(parent):
            raise UserError(f"{path}: cannot write the {what}: directory {parent} does not exist") from None
        return
    except OSError as e:
        raise UserError(f"{path}: cannot write the {what}: {e.strerror or e}") from None
    except ValueError:
        raise UserError(f"{path!r}: not a file name") from None
    if stat.S_ISDIR(st.st_mode):
        raise UserError(f"{path}: the {what} must be a file, not a directory")
