"""Every usage error of every command is one line on stderr and exit 2, from the real
console script: an operator's script or log reads failures line by line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import base_env, run_leakguard

BAD_USES = [
    # (arguments, what the line names, the command whose help it points to)
    (["ingest", "x.txt", "--leak", "t", "--format", "xml"], "'--format'", "leakguard ingest"),
    (["ingest", "x.txt"], "'--leak'", "leakguard ingest"),
    (
        ["accounts", "force-step-up", "a-1", "--hours", "0"],
        "'--hours'",
        "leakguard accounts force-step-up",
    ),
    (["api-clients", "create", "login"], "'--scope'", "leakguard api-clients create"),
    (["leaks", "show"], "'SLUG'", "leakguard leaks show"),
    (["leaks", "nosuch"], "nosuch", "leakguard leaks"),
    (["nosuch"], "nosuch", "leakguard"),
    (["--bogus"], "--bogus", "leakguard"),
    (["ingest", "x.txt", "--leak", "t", "--chunk-records", "many"], "many", "leakguard ingest"),
    (["leaks", "list", "--jsn"], "--jsn", "leakguard leaks list"),
    # A pipe cannot be read twice: said as such, not "-: no such file" with exit 1.
    (["ingest", "-", "--leak", "t"], "standard input ('-')", "leakguard ingest"),
]


@pytest.mark.parametrize(("args", "names", "command"), BAD_USES)
def test_usage_error_is_one_line_and_exit_2(
    tmp_path: Path, args: list[str], names: str, command: str
) -> None:
    result = run_leakguard(base_env(tmp_path), *args)

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("Error: ")
    assert names in lines[0]
    assert lines[0].endswith(f"(see {command} --help)")


def test_group_run_bare_still_prints_its_help(tmp_path: Path) -> None:
    result = run_leakguard(base_env(tmp_path), "leaks")

    assert "Commands:" in result.stdout + result.stderr
