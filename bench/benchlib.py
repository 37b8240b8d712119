"""Shared by the benchmarks: build a C workload, time commands side by side, print ratios.

Machines here are noisy (a virtual machine whose CPU time itself jitters by 10-20% from
run to run), so variants are run interleaved (ABBA order, round after round) and a ratio
is the median over rounds of variant/baseline measured side by side in that round: slow
phases of the machine then hit both sides of a pair. A lone absolute time is never the
result.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path


def build(source: Path, out: Path, *flags: str) -> Path:
    subprocess.run(["gcc", "-O2", "-g", "-fno-omit-frame-pointer", "-o", str(out), str(source),
                    *flags], check=True)
    return out


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall seconds, user+sys CPU seconds, stdout) of one run; fails loudly on error.
    Output goes to files, not pipes: a chatty program must not block on a full pipe."""
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=env, stdout=out_f, stderr=err_f)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode(errors="replace")
        err = err_f.read().decode(errors="replace")
    code = proc.returncode
    if code != 0:
        raise SystemExit(f"{' '.join(argv)} failed with status {code}: {err.strip()}")
    return wall, usage.ru_utime + usage.ru_stime, out


@dataclass
class Comparison:
    workload: str
    variants: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def median(self, variant: str, metric: int) -> float:
        return statistics.median(s[metric] for s in self.variants[variant])

    def difference(self, variant: str, baseline: str, metric: int) -> float:
        """Median of the per-round differences variant - baseline (seconds)."""
        pairs = zip(self.variants[variant], self.variants[baseline])
        return statistics.median(v[metric] - b[metric] for v, b in pairs)

    def ratio(self, variant: str, baseline: str, metric: int) -> float:
        """Median of the per-round ratios (rounds pair runs made one after the other)."""
        pairs = zip(self.variants[variant], self.variants[baseline])
        return statistics.median(v[metric] / b[metric] for v, b in pairs)


def compare(workload: str, argv: list[str], envs: dict[str, dict[str, str]], runs: int,
            check_same_output: bool = True) -> Comparison:
    """Run each variant `runs` times, interleaved; all variants must print the same output."""
    result = Comparison(workload, {name: [] for name in envs})
    names = list(envs)
    outputs = {}
    for r in range(runs):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            wall, cpu, out = timed(argv, envs[name])
            result.variants[name].append((wall, cpu))
            outputs.setdefault(name, out)
        print(".", end="", file=sys.stderr, flush=True)
    if check_same_output and len(set(outputs.values())) != 1:
        raise SystemExit(f"{workload}: variants printed different results: {outputs}")
    return result


def report(comparisons: list[Comparison], baseline: str, target: float | None,
           as_json: bool, targeted: tuple[str, ...] | None = None) -> bool:
    """Print the table (or JSON); True when every ratio meets `target`. `targeted`: the
    variants the target applies to (default: all); the others are shown for reference."""
    WALL, CPU = 0, 1
    rows = []
    ok = True
    for c in comparisons:
        for name in c.variants:
            if name == baseline:
                continue
            wall_ratio = c.ratio(name, baseline, WALL)
            cpu_ratio = c.ratio(name, baseline, CPU)
            applies = target is not None and (targeted is None or name in targeted)
            met = not applies or cpu_ratio <= target
            ok &= met
            rows.append({
                "workload": c.workload, "variant": name, "baseline": baseline,
                "runs": len(c.variants[name]),
                "median_wall_s": {k: round(c.median(k, WALL), 4) for k in (baseline, name)},
                "median_cpu_s": {k: round(c.median(k, CPU), 4) for k in (baseline, name)},
                "wall_ratio": round(wall_ratio, 4), "cpu_ratio": round(cpu_ratio, 4),
                "target": target if applies else None, "met": met,
            })
    if as_json:
        print(json.dumps(rows, indent=2))
        return ok
    print(file=sys.stderr)
    print(f"{'workload':<18} {'variant':<19} {'runs':>4} {'cpu ratio':>10} {'wall ratio':>11}"
          f"  {'median cpu (base -> variant)':<30} target")
    for row in rows:
        cpu = row["median_cpu_s"]
        print(f"{row['workload']:<18} {row['variant']:<19} {row['runs']:>4} "
              f"{row['cpu_ratio']:>9.3f}x {row['wall_ratio']:>10.3f}x  "
              f"{cpu[baseline]:.3f}s -> {cpu[row['variant']]:.3f}s{'':<10} "
              + ("" if row["target"] is None else f"<= {target}x {'met' if row['met'] else 'MISSED'}"))
    return ok


def call_sites(binary: str | Path, callees: tuple[str, ...], plt: bool = True) -> list[int]:
    """Return-address offsets of every call to one of `callees` in `binary`, from
    `objdump -d`: real call sites for rules. plt: the callees are imported functions (PLT
    names, e.g. "malloc"); else functions of the binary itself."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(binary)],
                         capture_output=True, text=True, check=True).stdout
    sites, pending = [], False
    for line in out.splitlines():
        insn = re.match(r"\s+([0-9a-f]+):", line)
        if not insn:
            continue
        if pending:
            sites.append(int(insn.group(1), 16))
        pending = "call" in line and any(f"<{c}@plt>" in line if plt else
                                         re.search(rf"<{re.escape(c)}(\.\w+)*>", line)
                                         for c in callees)
    return sites


def _valgrind_tool(tool: str) -> tuple[str, dict[str, str]]:
    """valgrind's tool binary and the variables its launcher would set. The tool is run
    directly: a runtime in LD_PRELOAD would otherwise sit in the (dynamic) launcher, which
    then executes the static tool, and the runtime leaves LD_PRELOAD out of the environment
    of a program that cannot host it - so the program would run without it."""
    launcher = shutil.which("valgrind.bin") or shutil.which("valgrind") or "valgrind"
    for lib in (os.environ.get("VALGRIND_LIB"), "/usr/libexec/valgrind", "/usr/lib/x86_64-linux-gnu/valgrind",
                "/usr/lib/valgrind", "/usr/local/libexec/valgrind"):
        if lib and os.path.exists(f"{lib}/{tool}-amd64-linux"):
            return f"{lib}/{tool}-amd64-linux", {"VALGRIND_LIB": lib, "VALGRIND_LAUNCHER": launcher}
    raise SystemExit(f"valgrind's {tool} tool not found (VALGRIND_LIB)")


def instructions(argv: list[str], env: dict[str, str]) -> int:
    """Instructions executed by one run, counted by valgrind's callgrind: exact and
    repeatable whatever else the machine does (but instructions, not time)."""
    tool, extra = _valgrind_tool("callgrind")
    r = subprocess.run([tool, "--tool=callgrind", "--callgrind-out-file=/dev/null", *argv],
                       env={**env, **extra}, capture_output=True, text=True)
    m = re.search(r"refs:\s+([\d,]+)", r.stderr)
    if r.returncode != 0 or not m:
        raise SystemExit(f"callgrind failed on {' '.join(argv)}: {r.stderr[-500:]}")
    return int(m.group(1).replace(",", ""))


def report_instructions(workloads: list[str], argv_of, envs: dict[str, dict[str, str]],
                        baseline: str, as_json: bool) -> None:
    """Instruction counts of every variant of every workload, as ratios to the baseline."""
    rows = []
    for w in workloads:
        counts = {name: instructions(argv_of(w), env) for name, env in envs.items()}
        for name, n in counts.items():
            if name != baseline:
                rows.append({"workload": w, "variant": name, "instructions": n,
                             "baseline_instructions": counts[baseline],
                             "instruction_ratio": round(n / counts[baseline], 4)})
        print(".", end="", file=sys.stderr, flush=True)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    print(file=sys.stderr)
    print(f"{'workload':<18} {'variant':<19} {'instructions (callgrind)':>26} {'ratio':>8}")
    for r in rows:
        print(f"{r['workload']:<18} {r['variant']:<19} {r['instructions']:>26,} "
              f"{r['instruction_ratio']:>7.3f}x")
