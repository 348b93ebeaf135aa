"""The ``leakguard`` command, in this process or as the installed console script.

In process (``invoke``, through the ``runner`` fixture): the command group runs against
the test's app, the way every command body and every domain error's one line is tested.
As a real process (``run_leakguard``): for what only the process shows, its exit status
from ``main``, its stderr with the logs, its environment, a kill.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from click.testing import Result
from flask.testing import FlaskCliRunner

from service.cli import cli
from tests.support.settings import TEST_HASH_KEY, TEST_SECRET_KEY

LEAKGUARD = Path(sys.executable).with_name("leakguard")

# --- in this process -----------------------------------------------------------------------


def invoke(runner: FlaskCliRunner, *args: str) -> Result:
    """Run ``leakguard ARGS`` through the command group, on the runner's app.

    An exception that is not a click exit is raised in the test, with its trace: in the
    console script it would be a stack trace on stderr, which no command may print.
    """
    return runner.invoke(cli, list(args), catch_exceptions=False)


def output(runner: FlaskCliRunner, *args: str) -> str:
    """What a successful ``leakguard ARGS`` prints on stdout."""
    result = invoke(runner, *args)
    assert result.exit_code == 0, result.output
    return result.stdout


# --- as the installed console script ---------------------------------------------------------


def base_env(instance_dir: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without any LEAKGUARD_/FLASK_ setting, plus an instance dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEAKGUARD_", "FLASK_"))}
    env.update(LEAKGUARD_INSTANCE_DIR=str(instance_dir), **extra)
    return env


def cli_env(db_url: str, instance_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``leakguard`` run on the test database with the test keys."""
    return base_env(
        instance_dir,
        LEAKGUARD_DATABASE_URL=db_url,
        LEAKGUARD_HASH_KEY=TEST_HASH_KEY,
        LEAKGUARD_SECRET_KEY=TEST_SECRET_KEY,
        **extra,
    )


def run_leakguard(
    env: dict[str, str], *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the console script (in the instance dir, unless ``cwd``) and wait for it."""
    return subprocess.run(
        [str(LEAKGUARD), *args],
        env=env,
        cwd=cwd or env["LEAKGUARD_INSTANCE_DIR"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def start_leakguard(
    env: dict[str, str], *args: str, log: Path, cwd: Path | None = None
) -> subprocess.Popen[bytes]:
    """Start a long-running ``leakguard ARGS`` (a worker), its stdout and stderr into ``log``.

    It gets a session of its own, as on a machine of its own: ``kill_session`` then takes
    rq's work horse along, which leaves the worker's process group.
    """
    with log.open("wb") as output:
        return subprocess.Popen(
            [str(LEAKGUARD), *args],
            env=env,
            cwd=cwd,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


# --- what a run printed, either way ----------------------------------------------------------


def exit_status(result: subprocess.CompletedProcess[str] | Result) -> int:
    if isinstance(result, subprocess.CompletedProcess):
        return result.returncode
    return result.exit_code


def json_output(result: subprocess.CompletedProcess[str] | Result) -> Any:
    """The one JSON document a successful ``--json`` run prints on stdout."""
    assert exit_status(result) == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.count("\n") == 1, result.stdout
    return json.loads(result.stdout)


def one_error_line(result: subprocess.CompletedProcess[str] | Result) -> str:
    """The run failed with exactly one line on stderr and no stack trace; return it."""
    assert exit_status(result) != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
