"""Advice from profiles: load (and merge) them, symbolize, solve, and the advice as JSON."""

from __future__ import annotations

from typing import Any

from memplace.advisor import solver as adv
from memplace.advisor.page_cache import SharedMemory
from memplace.advisor.device_specs import DeviceSpec, apply_capacities, devices_from_machine, fill_measured, parse_device
from memplace.errors import UserError
from memplace.profiling import profile as prof


def device_specs(devices: tuple[str, ...], capacities: tuple[str, ...], default: str | None) -> list[DeviceSpec]:
    """`--device` texts (or the machine's nodes), `--capacity` overrides, and a check of `--default`."""
    specs = [parse_device(t) for t in devices] if devices else devices_from_machine()
    if devices:
        for d in specs:  # a figure the user left out: measured here, if it was
            fill_measured(d)
    names = [d.name for d in specs]
    if len(set(names)) != len(names):
        raise UserError(f"--device: a name is given twice ({', '.join(names)})")
    apply_capacities(specs, capacities)
    if default is not None and default not in names:
        raise UserError(f"--default {default!r}: no such device (devices: {', '.join(names)})")
    return specs


def load_profiles(paths: tuple[str, ...]) -> prof.Profile:
    from memplace.console import phase

    with phase(f"reading {len(paths)} profile(s)"):
        profiles = [prof.load(p) for p in paths]
    if len(profiles) == 1:
        return profiles[0]
    from memplace.profiling.merge import merge

    return merge(profiles)


def run_advice(
    profile: prof.Profile, specs: list[DeviceSpec], model: str, method: str, default: str | None, time_limit: float,
    shared: SharedMemory | None = None,
) -> adv.Advice:
    if not profile.sites:
        raise UserError("the profile has no allocation sites: nothing to advise")
    from memplace.console import phase
    from memplace.profiling.symbolize import symbolize_profile

    with phase(f"symbolizing {len(profile.sites):,} sites"):
        symbolize_profile(profile)
    footprint = profile.meta.get("peak_live_total")
    if shared is not None and isinstance(footprint, int) and footprint > 0:
        from dataclasses import replace

        shared = replace(shared, footprint=footprint)
    with phase(f"placing {len(profile.sites):,} sites on {len(specs)} devices (at most {time_limit:g} s)"):
        advice = adv.advise(profile.sites, [d.model for d in specs], model=model, method=method,
                            default=default, time_limit=time_limit, shared=shared)
    advice.notes[:0] = [n for d in specs for n in d.notes]
    return advice


def advice_json(advice: adv.Advice, policy_path: str | None) -> dict[str, Any]:
    return {
        "policy": policy_path,
        "model": advice.model,
        "method": advice.method,
        "optimal": advice.optimal,
        "gap": advice.gap,
        "seconds": advice.seconds,
        "cost_ns": advice.cost,
        "default_cost_ns": advice.default_cost,
        "default": advice.default,
        "devices": {
            d.name: {"capacity": d.capacity, "peak": advice.peak.get(d.name, 0),
                     "sites": len(advice.on(d.name))} for d in advice.devices
        },
        "notes": advice.notes,
        "page_cache": advice.shared,
        "placements": [
            {
                "site": p.site.site_spec,
                "function": p.site.function,
                "location": p.site.location,
                "allocations": p.site.allocations,
                "bytes": p.site.bytes,
                "peak_live_bytes": p.site.peak_live_bytes,
                "accessed_bytes": p.site.accesses,
                "density": p.density,
                "device": p.device,
                "spill": None if p.spill is None else {"device": p.spill.device, "capacity": p.spill.capacity,
                                                       "saving_ns": p.spill.saving},
                "cost_ns": p.cost,
                "default_cost_ns": p.default_cost,
                "reason": p.reason,
            }
            for p in advice.placements
        ],
    }
