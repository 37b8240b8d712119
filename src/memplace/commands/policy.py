"""`memplace policy check|compile|show`: validate, compile and read placement policies.

    $ memplace policy check policy.toml --exe ./solver
    $ memplace policy compile policy.toml -o policy.mpc --exe ./solver
    $ memplace policy show policy.mpc --json
"""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.table import Table

from memplace.placement.devices import read_topology
from memplace.commands.options import OutputFile
from memplace.console import table_console as console
from memplace.errors import UserError
from memplace.inputs import POLICY_LIMIT, read_bytes
from memplace.placement.policy import Policy, load, site_modules
from memplace.placement.policy_compile import MAGIC, CompiledPolicy, CompiledPolicyError, decode, prepare_inputs, validate
from memplace.placement.sites import SiteResolver
from memplace.units import U64_MAX, format_range, format_size

_exe = click.option("--exe", "exe", metavar="PROGRAM",
                    help="The program the policy is for: resolves SYMBOL+0xOFF and FILE:LINE sites.")
_json = click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
_sysfs = click.option("--sysfs", default="/sys", show_default=True, metavar="ROOT",
                      help="Check against this sysfs tree instead of the machine's.")


@click.group("policy")
def policy_group() -> None:
    """Check, compile and show placement policies (TOML; see docs/policy.md)."""


@policy_group.command("check")
@click.argument("file")
@_exe
@_json
@_sysfs
def check_command(file: str, exe: str | None, as_json: bool, sysfs: str) -> int:
    """Validate FILE against this machine (and PROGRAM): exit 2 if it has errors."""
    policy = load(file)
    problems, _ = validate(policy, read_topology(sysfs), SiteResolver(exe, extra_modules=site_modules(policy)))
    errors = sum(p.level == "error" for p in problems)
    warnings = len(problems) - errors
    if as_json:
        click.echo(json.dumps({"file": file, "ok": errors == 0, "errors": errors, "warnings": warnings,
                               "problems": [{"level": p.level, "message": p.message} for p in problems]}, indent=2))
    else:
        for p in problems:
            click.echo(str(p))
        if problems:
            click.echo(f"{file}: {errors} error{'s' * (errors != 1)}, {warnings} warning{'s' * (warnings != 1)}")
        else:
            click.echo(f"{file}: OK ({len(policy.devices)} devices, {len(policy.rules)} rules)")
    return 2 if errors else 0


@policy_group.command("compile")
@click.argument("file")
@click.option("-o", "--output", "out", required=True, metavar="OUT", type=OutputFile("compiled policy"), help="Where to write the compiled policy.")
@_exe
@_json
@_sysfs
def compile_command(file: str, out: str, exe: str | None, as_json: bool, sysfs: str) -> None:
    """Compile FILE into the binary table the runtime reads (memplace run does this itself)."""
    prepared = prepare_inputs(file, exe, out, read_topology(sysfs))
    warnings = prepared.warnings
    compiled = decode(prepared.data)  # not read back: OUT may be a FIFO or /dev/null
    summary = {"output": out, "size": len(prepared.data), "devices": len(compiled.devices),
               "modules": len(compiled.modules), "rules": len(compiled.rules),
               "warnings": [p.message for p in warnings]}
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    for p in warnings:
        click.echo(f"memplace: {p}", err=True)
    click.echo(f"wrote {out}: {summary['size']} bytes, {summary['devices']} devices, "
               f"{summary['modules']} modules, {summary['rules']} rules")


@policy_group.command("show")
@click.argument("file")
@_json
def show_command(file: str, as_json: bool) -> None:
    """Show a policy, TOML or compiled, as tables."""
    data = read_bytes(file, "policy", POLICY_LIMIT)
    if data[: len(MAGIC)] == MAGIC:
        try:
            compiled = decode(data)
        except CompiledPolicyError as e:
            raise UserError(f"{file}: {e}") from None
        if as_json:
            click.echo(json.dumps(compiled.to_json(), indent=2))
        else:
            _show_compiled(compiled, file)
        return
    policy = load(file)
    errors = [p for p in policy.problems if p.level == "error"]
    if errors:
        raise UserError(errors[0].message)
    if as_json:
        click.echo(json.dumps(_policy_json(policy), indent=2))
    else:
        _show_policy(policy)


def _capacity(value) -> str:
    return "no limit" if value is None else (format_size(value) if isinstance(value, int) else str(value))


def _policy_json(policy: Policy) -> dict:
    return {
        "file": policy.path,
        "version": policy.version,
        "default": policy.default,
        "devices": [{"name": d.name, "kind": d.kind, "nodes": d.nodes, "mode": d.mode,
                     "capacity": d.capacity if isinstance(d.capacity, (int, type(None))) else str(d.capacity),
                     "scope": d.scope, "fallback": d.fallback, "path": d.path,
                     "pagesize": "transparent" if d.transparent else d.pagesize}
                    for d in policy.devices.values()],
        "rules": [{"index": r.index, "name": r.name, "site": r.site,
                   "size": list(r.size) if r.size else None, "device": r.device} for r in policy.rules],
    }


def _show_policy(policy: Policy) -> None:
    out = console()
    devices = Table(title=f"Devices ({policy.path}; default: {policy.default})")
    for col in ("Name", "Kind", "Where", "Mode", "Capacity", "Fallback"):
        devices.add_column(col)
    for d in policy.devices.values():
        if d.kind == "file":
            where = d.path or ""
        elif d.kind == "hugepages":
            size = "transparent" if d.transparent else format_size(d.pagesize) if d.pagesize else "default size"
            where = size + (f" on nodes {','.join(map(str, d.nodes))}" if d.nodes else "")
        else:
            where = f"nodes {','.join(map(str, d.nodes))}" if d.nodes else ""
        capacity = _capacity(d.capacity) + (" per node" if d.scope == "node" else "")
        devices.add_row(d.name, d.kind, where, d.mode if d.nodes else "", capacity, d.fallback)
    out.print(devices)
    rules = Table(title="Rules (first match wins)")
    for col in ("#", "Name", "Site (innermost first)", "Size", "Device"):
        rules.add_column(col)
    for r in policy.rules:
        rules.add_row(str(r.index), r.name, " < ".join(r.site) or "any",
                      format_range(*r.size) if r.size else "any", r.device)
    out.print(rules)


def _show_compiled(c: CompiledPolicy, file: str) -> None:
    out = console()
    devices = Table(title=f"Devices ({file}; default: {c.devices[c.default_device].name})")
    for col in ("#", "Name", "Kind", "Mode", "Nodes", "Path", "Capacity", "Fallback", "Flags"):
        devices.add_column(col)
    for i, d in enumerate(c.devices):
        devices.add_row(str(i), d.name, d.kind, d.mode, ",".join(map(str, d.nodes)), d.path or "",
                        format_size(d.capacity) if d.capacity else "no limit",
                        "next allocator" if d.fallback < 0 else c.devices[d.fallback].name, f"{d.flags:#x}")
    out.print(devices)
    modules = Table(title="Modules")
    for col in ("#", "Path", "Build-id"):
        modules.add_column(col)
    for i, m in enumerate(c.modules):
        modules.add_row(str(i), m.path or "(main program)", m.build_id or "")
    out.print(modules)
    rules = Table(title="Rules (first match wins)")
    for col in ("#", "Name", "Frames (module:lo..hi)", "Size", "Device"):
        rules.add_column(col)
    for i, r in enumerate(c.rules):
        frames = " < ".join(f"{f.module}:{f.lo:#x}" + (f"..{f.hi:#x}" if f.hi != f.lo else "") for f in r.frames)
        size = "any" if (r.size_min, r.size_max) == (0, U64_MAX) else format_range(r.size_min, r.size_max)
        rules.add_row(str(i), r.name, frames or "any", size, c.devices[r.device].name)
    out.print(rules)
