"""`leakguard serve`: the HTTP API under gunicorn with Leakguard's server settings."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from service.cli.base import cli

APP = "service.app:create_app()"
# Where the server settings are: inside the installed package (the wheel carries
# deploy/gunicorn.conf.py there), or in the repository's deploy/ for a source checkout.
_CONFIGS = (
    Path(__file__).resolve().parents[1] / "ops" / "gunicorn.conf.py",
    Path(__file__).resolve().parents[2] / "deploy" / "gunicorn.conf.py",
)


@cli.command("serve", with_appcontext=False)
@click.option(
    "--config",
    "config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="gunicorn settings file (default: Leakguard's deploy/gunicorn.conf.py).",
)
def serve_command(config: Path | None) -> None:
    """Serve the API with gunicorn (GUNICORN_BIND, GUNICORN_WORKERS, ... adjust it).

    Replaces this process with gunicorn, which checks the settings before any worker
    starts: in production, a setting production refuses stops it with one line each.
    """
    chosen = config or next((path for path in _CONFIGS if path.is_file()), None)
    if chosen is None:
        raise click.ClickException("no gunicorn settings found: pass --config PATH")
    arguments = [sys.executable, "-m", "gunicorn", "-c", str(chosen), APP]
    os.execv(sys.executable, arguments)  # noqa: S606  (our own interpreter, fixed arguments)
