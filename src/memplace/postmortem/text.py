"""The plain text of `memplace tls` and `memplace keys` (what they print when piped, and
what the gdb commands print): no click, no rich, so that gdb's own Python can import it.

>>> print(tls_text(target, tls_values(target, ["t_long"])))            # doctest: +SKIP
core core: x86_64, glibc, 2 threads
thread 5635 (tp 0x7f...)  <- crashed
  prog:t_long (long int) = 1099
"""

from __future__ import annotations

from memplace.console import plain_table


def count(n: int, what: str) -> str:
    """'1 thread', '8 threads'."""
    return f"{n:,} {what}" + ("" if n == 1 else "s")


def thread_title(th) -> str:
    tp = f"tp {th.tp:#x}" if th.tp is not None else "tp unknown"
    return f"thread {th.tid} ({tp}){'  <- crashed' if th.crashed else ''}"


def tls_text(target, rows) -> str:
    """Every thread's title and its variables, one per line."""
    out = [f"{target.where}: {target.arch.name}, {target.libc}, {count(len(rows), 'thread')}"]
    for th, vals in rows:
        out.append(thread_title(th))
        for v in vals:
            shown = v.text if v.state == "ok" else f"<{v.state}>"
            out.append(f"  {v.module}:{v.name} ({v.type}) = {shown}")
    return "\n".join(out)


def key_text(k) -> str:
    """The destructor (or, without one, the statics holding the key's number), and whether in use."""
    if k.destructor_name or k.destructor:
        text = k.destructor_name or f"{k.destructor:#x}"
    elif len(k.holders) == 1:
        text = f"- (held by {k.holders[0]}, a guess)"
    elif k.holders:
        text = f"- (held by one of {', '.join(k.holders)}: a guess)"
    else:
        text = "-"
    return text + ("" if k.in_use else "  (not in use)")


def keys_parts(target, rep, tids: list[int] | None = None):
    """(title, key rows, value rows, finding lines) of a KeysReport; `tids` keeps those threads' values."""
    crashed = {th.tid for th in target.threads if th.crashed}
    values = [v for v in rep.values if tids is None or v.tid in tids]
    in_use = sum(k.in_use for k in rep.keys)
    title = f"{target.where}: {target.libc}, {count(in_use, 'key')} in use, {count(len(values), 'value')}"
    keys = [[str(k.key), "" if k.seq is None else str(k.seq), key_text(k)] for k in rep.keys]
    rows = [[str(v.tid) + ("  <- crashed" if v.tid in crashed else ""), str(v.key), f"{v.value:#x}",
             v.points_to or "", v.status] for v in values]
    findings = [f"misuse: thread {f.tid} key {f.key}: {f.message}" for f in rep.findings
                if tids is None or f.tid in tids]
    return title, keys, rows, findings


def keys_text(title: str, keys: list, values: list, findings: list[str]) -> str:
    out = [title, plain_table(["key", "seq", "destructor"], keys)]
    if values:
        out.append(plain_table(["thread", "key", "value", "points to", "status"], values))
    return "\n".join(out + findings)
