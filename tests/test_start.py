"""`memplace run` without the CLI framework (memplace.start) reads a command line as the
CLI does, and leaves every other command line to it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from memplace.commands.run import run_command
from memplace.start import parse_run

COMMON = [
    ["run", "--", "./prog"],
    ["run", "./prog", "-x", "--policy", "p"],
    ["run", "--policy", "p.toml", "--", "./prog", "a"],
    ["run", "--policy=p.toml", "--stats", "s.json", "./prog"],
    ["run", "-v", "--best-effort", "--stats=s.json", "--policy", "p.toml", "--", "--odd", "-h"],
    ["run", "--verbose", "--policy", "a.toml", "--policy", "b.toml", "prog"],
    ["run", "--policy", "--stats", "prog"],  # a value that looks like an option is a value
]
LEFT_TO_THE_CLI = [
    [], ["--version"], ["tls", "core"], ["run"], ["run", "--"], ["run", "-h", "prog"],
    ["run", "--help"], ["run", "--policy"], ["run", "--nope", "prog"], ["run", "-vv", "prog"],
    ["run", "--policy", "/", "prog"], ["run", "--stats=", "prog"], ["run", "--verbose=1", "prog"],
]


def click_reading(args: list[str]) -> dict:
    ctx = run_command.make_context("run", list(args[1:]))
    params = dict(ctx.params)
    params["argv"] = list(params.pop("command"))
    return params


@pytest.mark.parametrize("args", COMMON, ids=" ".join)
def test_the_common_forms_are_read_as_the_cli_reads_them(args):
    assert parse_run(args) == click_reading(args)


@pytest.mark.parametrize("args", LEFT_TO_THE_CLI, ids=lambda a: " ".join(a) or "(none)")
def test_anything_else_is_left_to_the_cli(args):
    assert parse_run(args) is None


def test_a_bad_policy_is_still_one_line_and_status_2(tmp_path):
    bad = tmp_path / "p.toml"
    bad.write_text("version = [\n")
    r = subprocess.run([sys.executable, "-m", "memplace", "run", "--policy", str(bad), "--", "true"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1 and str(bad) in r.stderr, r.stderr


def test_run_does_not_import_the_cli_framework(tmp_path):
    code = ("import sys\nfrom memplace.start import main\n"
            "try:\n    main(['run', '--', 'true'])\nexcept SystemExit:\n    pass\n"
            "print('click' in sys.modules)\n")
    # the command is exec'ed, so ask in a process that runs it under --verbose (waited for)
    code = code.replace("'run', '--'", "'run', '-v', '--'")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip().splitlines()[-1:] == ["False"], (r.stdout, r.stderr)
