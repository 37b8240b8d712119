"""From the runtime's access samples to estimated bytes read and written per site.

The runtime (runtime/os/sampler.c) samples the running threads on a timer of the process's
CPU time, `rate` expirations per CPU-second. A sample credits the memory operands of the
straight-line code around the interrupted IP (n instructions) whose addresses it can
still compute; a credit to a live block of site S adds, for S, (1 + overrun)/n of the
sample (in 1/SAMPLE_UNIT) times the operand's bytes. Each expiration stands for 1/rate
CPU-seconds, which at a nominal NOMINAL_ACCESSES_PER_NS instructions per nanosecond ran
the n-instruction stretch (1e9/rate)/n times, each access once per pass:

    reads(S)  = sum over S's read credits of  (1 + overrun)/n x bytes x 1e9/rate x NOMINAL
    writes(S) = the same over its write credits

in bytes, as DHAT counts them. The samples are time-weighted: they say where the CPU
time went, and the nominal rate turns time into passes. So the ratios between sites are
measured as far as their code runs at the same instructions per ns; the absolute scale
is not measured at all (no instruction counter without a PMU; single-stepping a window
after each sample would count instructions but costs ~35 us a step in a VM and distorts
the time it would measure: docs/profiles.md). The profile, `advise` and `report` call the
figures time-weighted estimates and name the assumption (SCALE_NOTE); the ranking is the
product. The advisor's choice does not depend on a common scale when every site is
measured. Confidence: the number of samples that credited the site, n_S, is Poisson; the
95% interval on n_S (Wilson-Hilferty approximation of the exact Garwood interval) scales
to bytes by the figure's bytes per sample. A figure with
fewer than FEW_SAMPLES samples is flagged as too uncertain to act on.

    >>> round(poisson_interval(0)[1], 2), [round(x, 1) for x in poisson_interval(100)]
    (3.69, [81.4, 121.6])
"""

from __future__ import annotations

import math
from typing import Any

DEFAULT_RATE = 1000            # samples per CPU-second asked of the timer (the tick caps it)
SAMPLE_UNIT = 1024             # runtime/include/types.h MP_SAMPLE_UNIT
NOMINAL_ACCESSES_PER_NS = 1.0  # the estimator's scale (see above)
FEW_SAMPLES = 10               # fewer samples than this: the figure is too uncertain
SCALE_NOTE = ("time-weighted estimates: the ranking of sites is measured; the absolute bytes assume "
              f"{NOMINAL_ACCESSES_PER_NS:g} instruction per ns, which no counter measures here (code runs "
              "at ~0.5-10 per ns: a figure can be 10x low or 2x high)")
_Z = 1.959963984540054         # 95%


def poisson_interval(n: int) -> tuple[float, float]:
    """95% interval of a Poisson mean given n observed events."""
    if n <= 0:
        return 0.0, -math.log(0.025)
    lo = n * (1 - 1 / (9 * n) - _Z / (3 * math.sqrt(n))) ** 3
    m = n + 1
    hi = m * (1 - 1 / (9 * m) + _Z / (3 * math.sqrt(m))) ** 3
    return max(lo, 0.0), hi


def sampling_summary(raw: dict | None, why: str | None) -> dict[str, Any]:
    """The profile's meta["access_sampling"]: state, why not, and what the samples were."""
    if raw is None:  # a runtime from before access sampling
        return {"state": "absent", "why": "this runtime does not sample accesses"}
    out: dict[str, Any] = {"state": raw["state"]}
    if why:
        out["why"] = why
    for k, v in raw.items():
        if k != "state":
            out[k] = v
    cpu = raw.get("cpu_ns", 0) / 1e9
    out["cpu_seconds"] = cpu
    if raw["state"] == "on" and raw.get("samples", 0) == 0:
        # started, but nothing arrived: a short run, or every thread blocks the signal
        out["state"] = "empty"
        out["why"] = (f"no sample arrived in {cpu:.3f} CPU-seconds (a shorter run than one "
                      "timer tick, or threads blocking the sampling signal)")
    out["samples_per_cpu_second"] = round(raw.get("samples", 0) / cpu, 1) if cpu > 0 else 0.0
    out["estimator"] = {"accesses_per_ns": NOMINAL_ACCESSES_PER_NS, "scale": "assumed", "note": SCALE_NOTE,
                        "ns_per_expiration": 1e9 / raw["rate"] if raw.get("rate") else None,
                        "few_samples": FEW_SAMPLES, "interval": "95% Poisson on the sample count"}
    return out


def add_raw(a: dict, b: dict) -> dict:
    """Two raw site records of the same site (a module loaded twice): accesses summed."""
    out = dict(a)
    if a.get("access") and b.get("access"):
        out["access"] = [x + y for x, y in zip(a["access"], b["access"])]
        for k in ("read_bytes", "read_samples", "write_bytes", "write_samples"):
            out[k] = [x + y for x, y in zip(a[k], b[k])]
    return out


def apply(site, raw: dict, sampling: dict, windows: int) -> None:
    """Set site.reads/writes (estimates) and site.sampled from a raw runtime record; leave
    them None when sampling did not run to the end or found nothing (the profile's meta
    says why)."""
    access = raw.get("access")
    rate = sampling.get("rate") or 0
    if sampling.get("state") != "on" or not access or rate <= 0:
        return
    # sampled bytes are weighted in 1/SAMPLE_UNIT of a timer expiration
    per_byte = 1e9 / rate * NOMINAL_ACCESSES_PER_NS / SAMPLE_UNIT
    n_r, n_w, _w_r, _w_w, b_r, b_w = access
    reads, writes = round(b_r * per_byte), round(b_w * per_byte)
    site.reads, site.writes = reads, writes

    def interval(n: int, est: int, fallback_bytes: float) -> list[int]:
        lo, hi = poisson_interval(n)
        per_sample = est / n if n else fallback_bytes
        return [round(lo * per_sample), round(hi * per_sample)]

    # with no sample, the upper bound is for one sample of 8 bytes at the mean weight
    mean_weight = sampling.get("expirations", 0) / max(sampling.get("samples", 0), 1)
    empty = 8 * mean_weight * SAMPLE_UNIT * per_byte

    def timeline(values: list[int], scale: float) -> list[int]:
        v = [round(x * scale) if x else 0 for x in values] if scale != 1 else list(values)
        return v if len(v) == windows else (v + [0] * windows)[:windows]

    site.sampled = {
        "read_samples": n_r, "write_samples": n_w,
        "reads_ci95": interval(n_r, reads, empty), "writes_ci95": interval(n_w, writes, empty),
        "few_samples": n_r + n_w < FEW_SAMPLES,
        "reads_timeline": timeline(raw["read_bytes"], per_byte),
        "writes_timeline": timeline(raw["write_bytes"], per_byte),
        "read_samples_timeline": timeline(raw["read_samples"], 1),
        "write_samples_timeline": timeline(raw["write_samples"], 1),
    }


def merge_sampled(a: dict | None, b: dict) -> dict:
    """The sample figures of one site in two processes: counts and intervals added
    (intervals add conservatively), timelines dropped (their clocks differ)."""
    if a is None:
        return {k: v for k, v in b.items() if not k.endswith("timeline")}
    out = dict(a)
    for k in ("read_samples", "write_samples"):
        out[k] = a.get(k, 0) + b.get(k, 0)
    for k in ("reads_ci95", "writes_ci95"):
        if k in a and k in b:
            out[k] = [a[k][0] + b[k][0], a[k][1] + b[k][1]]
    out["few_samples"] = out["read_samples"] + out["write_samples"] < FEW_SAMPLES
    return out


def sampled_access_notes(sites) -> list[str]:
    """What the advice rests on when the runtime engine estimated the accesses from
    samples: how many, and which sites have too few samples to act on."""
    sampled = [s for s in sites if s.sampled is not None]
    if not sampled:
        return []
    n = sum(s.sampled.get("read_samples", 0) + s.sampled.get("write_samples", 0) for s in sampled)
    notes = [f"reads/writes of {len(sampled)} site(s) are {SCALE_NOTE}; from {n} CPU-time samples "
             "(runtime engine; 95% intervals in the profile)"]
    few = [s for s in sampled if s.sampled.get("few_samples") and (s.accesses or 0) > 0]
    if few:
        names = ", ".join(s.label for s in few[:5]) + (f" and {len(few) - 5} more" if len(few) > 5 else "")
        notes.append(f"{len(few)} site(s) have accesses from fewer than {FEW_SAMPLES} samples, too uncertain to act "
                     f"on: {names} (profile longer or with a higher --rate)")
    return notes
