"""Forks per second with data on a file device, against the bare program holding the
same data in malloc memory.

forkloop.c allocates LIVE MiB (64 KiB blocks), writes it, then forks in a loop; each child
_exits at once ("exit") or first writes one byte in every page of the data ("touch"), and
the parent waits for it. The program times the loop itself, so start-up is left out. Each
size and mode runs bare and under `memplace run --policy` (every allocation on a file
device in each --device-dir), interleaved round after round; the result is the median
forks/s of each and the median per-round slowdown (bare forks/s / placed forks/s).
Target (issue 11): at most 2x.

    python bench/fork/run.py [--runs 5] [--live 0,64,1024] [--device-dir DIR ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchlib import build, timed  # noqa: E402

TARGET = 2.0
FORKS = {0: 300, 64: 20, 1024: 3}  # per run: a loop of at least ~0.1 s bare


def fs_type(path: Path) -> str:
    return subprocess.run(["stat", "-f", "-c", "%T", str(path)], capture_output=True, text=True,
                          check=True).stdout.strip()


def policy(tmp: Path, device_dir: Path, live_mib: int) -> Path:
    p = tmp / f"policy-{abs(hash(str(device_dir)))}.toml"
    p.write_text(f"""
version = 1
default = "pmem"
[devices.pmem]
kind = "file"
path = "{device_dir}"
capacity = "{max(2 * live_mib, 256)}MiB"
""")
    return p


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--live", default="0,64,1024", help="MiB of live data, comma-separated")
    ap.add_argument("--mode", action="append", choices=["exit", "touch"])
    ap.add_argument("--device-dir", action="append", type=Path,
                    help="directory of the file device (repeat for variants; default: a "
                         "temporary directory under $TMPDIR)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.runs < 3:
        ap.error("--runs must be at least 3")
    sizes = [int(x) for x in args.live.split(",")]
    base = {k: v for k, v in os.environ.items() if not k.startswith(("LD_PRELOAD", "MEMPLACE_"))}
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        prog = build(Path(__file__).with_name("forkloop.c"), tmp / "forkloop")
        dirs = args.device_dir or [tmp / "device"]
        for d in dirs:
            d.mkdir(parents=True, exist_ok=True)
        variants = {f"file device on {fs_type(d)} ({d})": d for d in dirs}
        for live in sizes:
            forks = FORKS.get(live, max(3, 20 * 64 // max(live, 1)))
            for mode in args.mode or ["exit", "touch"]:
                argv = [str(prog), str(live), str(forks), mode]
                argvs = {"bare (malloc memory)": argv}
                for name, d in variants.items():
                    argvs[name] = [sys.executable, "-m", "memplace", "run", "--policy",
                                   str(policy(tmp, d, live)), "--", *argv]
                rates: dict[str, list[float]] = {n: [] for n in argvs}
                names = list(argvs)
                for r in range(args.runs):
                    for name in names if r % 2 == 0 else names[::-1]:
                        rates[name].append(float(timed(argvs[name], base)[2]))
                    print(".", end="", file=sys.stderr, flush=True)
                bare = rates["bare (malloc memory)"]
                for name in names:
                    slowdown = statistics.median(b / v for b, v in zip(bare, rates[name]))
                    rows.append({"live_mib": live, "mode": mode, "variant": name,
                                 "forks_per_s": statistics.median(rates[name]),
                                 "slowdown": slowdown})
    print(file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    ok = True
    print(f"{'live':>6} {'mode':<6} {'forks/s':>10} {'slowdown':>9}  variant")
    for row in rows:
        bare = row["variant"].startswith("bare")
        meets = bare or row["slowdown"] <= TARGET
        ok &= meets
        print(f"{row['live_mib']:>4}Mi {row['mode']:<6} {row['forks_per_s']:>10.1f} "
              f"{row['slowdown']:>8.2f}x  {row['variant']}{'' if meets else '   (over target)'}")
    print(f"target: at most {TARGET:.0f}x the bare program's time per fork; "
          f"{'met' if ok else 'NOT met'} for every row")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
