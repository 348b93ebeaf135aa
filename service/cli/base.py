"""The ``leakguard`` command group and what its commands share.

Commands parse their input, call one function, and print a summary (or ``--json`` alone on
stdout for machines). Failures are one line on stderr and a non-zero exit, never a trace.
"""

from __future__ import annotations

import copy
import getpass
import json
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup

from service.app import create_app, package_version
from service.db.migrate import is_at_head
from service.errors import JobError, LeakguardError
from service.runtime import Runtime, runtime_of

# The only commands that may create an instance (folder, keys, SQLite database): every
# other one stops with one line where none is found, rather than work on a new, empty one
# under a new hash key (a command run from another directory, LEAKGUARD_INSTANCE_DIR unset).
CREATING_COMMANDS = frozenset({("demo",), ("db", "upgrade")})


def _create_app() -> Flask:
    context = click.get_current_context(silent=True)
    command = tuple(context.command_path.split()[1:]) if context is not None else ()
    return create_app(serving=False, create_instance=command in CREATING_COMMANDS)


# Flask's options for a developer's `flask` command: they stay usable, but an operator's
# --help does not offer them.
_DEVELOPMENT_OPTIONS = frozenset({"env_file", "app", "debug"})
# Packages whose commands an operator uses; any other (Flask's run, shell and routes, an
# extension's maintenance group) is hidden from --help, still there for a developer.
_OPERATOR_PACKAGES = ("service.", "jobs.")


class LeakguardGroup(FlaskGroup):
    """Flask's CLI group, where a domain or job error ends any command with one line.

    Every subcommand, nested groups included, runs inside ``invoke``: a command added later
    gets the same treatment without a decorator to forget. Commands live on this group
    only, so listing or finding one never builds the app (which ``--help`` would do
    otherwise, in a folder with no instance), and ``--help`` works whatever the settings.
    """

    def __init__(self, **extra: Any) -> None:
        super().__init__(add_version_option=False, **extra)
        params = []
        for param in self.params:
            if param.name in _DEVELOPMENT_OPTIONS:
                param = copy.copy(param)  # Flask's options are shared module objects
                param.hidden = True  # type: ignore[attr-defined]  # an Option's attribute
            params.append(param)
        self.params = [
            *params,
            click.Option(
                ["--version"],
                is_flag=True,
                expose_value=False,
                is_eager=True,
                callback=_print_version,
                help="Print Leakguard's version and exit.",
            ),
        ]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._load_plugin_commands()
        return _for_operators(click.Group.get_command(self, ctx, name))

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted(click.Group.list_commands(self, ctx))

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (LeakguardError, JobError) as exc:
            raise click.ClickException(str(exc)) from None


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        click.echo(f"leakguard {package_version()}")
        ctx.exit()


def _for_operators(command: click.Command | None) -> click.Command | None:
    """``command``, hidden from --help unless it is one of Leakguard's own."""
    if command is not None and not command.hidden:
        module = getattr(command.callback, "__module__", "") or ""
        if not module.startswith(_OPERATOR_PACKAGES):
            command.hidden = True
    return command


cli = LeakguardGroup(
    create_app=_create_app,
    add_default_commands=True,
    help="Leakguard: protect accounts after a third-party leak of email addresses.",
)


def runtime() -> Runtime:
    return runtime_of(current_app)


def migrated_runtime() -> Runtime:
    """The runtime, after making sure the schema is current."""
    value = runtime()
    if not is_at_head(value.db.engine):
        raise click.ClickException(
            "the database schema is not current: run `leakguard db upgrade` first"
        )
    return value


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def emit_json(payload: dict[str, Any] | list[Any]) -> None:
    """Print ``payload`` as the command's one line of JSON on stdout."""
    click.echo(json.dumps(payload, default=str))
