"""`memplace run [--policy P] [--stats OUT] -- CMD ...`: run CMD with the runtime preloaded."""

from __future__ import annotations

import click

from memplace.placement.run import run


@click.command("run", context_settings={"allow_interspersed_args": False})
@click.option("-v", "--verbose", is_flag=True,
              help="Say which runtime was loaded and which allocator it forwards to.")
@click.option("--policy", type=click.Path(dir_okay=False),
              help="Placement policy (TOML): checked and compiled before COMMAND starts.")
@click.option("--stats", type=click.Path(dir_okay=False),
              help="Write per-device and per-rule statistics (JSON) here when COMMAND exits.")
@click.option("--best-effort", is_flag=True,
              help="When placement cannot start (e.g. ulimit -v too small), run COMMAND "
                   "without it instead of exiting with status 2.")
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
def run_command(verbose: bool, policy: str | None, stats: str | None, best_effort: bool,
                command: tuple[str, ...]) -> None:
    """Run COMMAND with the memplace runtime preloaded.

    \b
    Examples:
      memplace run -- ./solver input.dat
      memplace run --policy hbm.toml --stats stats.json -- ./solver input.dat

    With --policy, COMMAND is not run when placement cannot start in it: one line
    says why and the status is 2 (--best-effort runs it without placement). Its child
    processes always run, placing when they can.
    """
    run(list(command), verbose=verbose, policy=policy, stats=stats, best_effort=best_effort)
