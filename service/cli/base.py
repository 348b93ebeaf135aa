"""The ``leakguard`` command group and what its commands share.

Commands parse their input, call one function, and print a summary (or ``--json`` alone on
stdout for machines). Failures are one line on stderr and a non-zero exit, never a trace.
"""

from __future__ import annotations

import copy
import getpass
import importlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click
from flask import Flask, current_app
from flask.cli import FlaskGroup

from service.errors import JobError, LeakguardError

if TYPE_CHECKING:
    from service.runtime import Runtime

# Imports here stay light (click, Flask's CLI): `leakguard --help` and every command pay
# for them. A command's module, the app and the domain are imported when a command needs
# them (LazyCommand, _create_app).

# The only commands that may create an instance (folder, keys, SQLite database): every
# other one stops with one line where none is found, rather than work on a new, empty one
# under a new hash key (a command run from another directory, LEAKGUARD_INSTANCE_DIR unset).
CREATING_COMMANDS = frozenset({("demo",), ("db", "upgrade")})


def _create_app() -> Flask:
    """The app a command runs in: Leakguard's own commands need only its runtime (a quick
    start); Flask's (routes, shell, run) and extensions' the whole HTTP app."""
    context = click.get_current_context(silent=True)
    command = tuple(context.command_path.split()[1:]) if context is not None else ()
    create_instance = command in CREATING_COMMANDS
    if context is not None and _is_ours(context.command):
        from service.app_base import create_command_app

        return create_command_app(create_instance=create_instance)
    from service.app import create_app

    return create_app(serving=False, create_instance=create_instance)


# Flask's options for a developer's `flask` command: they stay usable, but an operator's
# --help does not offer them.
_DEVELOPMENT_OPTIONS = frozenset({"env_file", "app", "debug"})
# Packages whose commands an operator uses; any other (Flask's run, shell and routes, an
# extension's maintenance group) is hidden from --help, still there for a developer.
_OPERATOR_PACKAGES = ("service.", "jobs.")


@dataclass(frozen=True, slots=True)
class LazyCommand:
    """A top-level command whose module is imported only when the command is used."""

    module: str  # importing it registers the command on ``cli``
    summary: str  # the first paragraph of its help: what `leakguard --help` lists


class LeakguardGroup(FlaskGroup):
    """Flask's CLI group, where a domain or job error ends any command with one line.

    Every subcommand, nested groups included, runs inside ``invoke``: a command added later
    gets the same treatment without a decorator to forget. Commands live on this group
    only, so listing or finding one never builds the app (which ``--help`` would do
    otherwise, in a folder with no instance), and ``--help`` works whatever the settings.
    """

    def __init__(self, *, lazy: Mapping[str, LazyCommand] | None = None, **extra: Any) -> None:
        super().__init__(add_version_option=False, **extra)
        self.lazy = dict(lazy or {})
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
        if name not in self.commands:
            if name in self.lazy:
                importlib.import_module(self.lazy[name].module)
            else:  # Flask's own and extensions' commands
                self._load_plugin_commands()
        return _for_operators(click.Group.get_command(self, ctx, name))

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load_plugin_commands()
        return sorted({*click.Group.list_commands(self, ctx), *self.lazy})

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Click's list of commands, from the summaries of the commands not yet imported:
        `leakguard --help` imports none of them."""
        shown: list[tuple[str, click.Command]] = []
        for name in self.list_commands(ctx):
            entry = self.lazy.get(name)
            if entry is not None and name not in self.commands:
                shown.append((name, click.Command(name, help=entry.summary)))
                continue
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                shown.append((name, command))
        if shown:
            limit = formatter.width - 6 - max(len(name) for name, _ in shown)
            with formatter.section("Commands"):
                formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in shown])

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise OneLineUsageError.of(exc) from None

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (LeakguardError, JobError) as exc:
            raise click.ClickException(str(exc)) from None
        except click.UsageError as exc:  # a subcommand's bad option, argument or name
            raise OneLineUsageError.of(exc) from None


class OneLineUsageError(click.UsageError):
    """A usage error as one line on stderr (exit 2): scripts and logs read failures line by
    line, and Click's own four (usage, hint, blank, error) bury the error at the end."""

    @classmethod
    def of(cls, exc: click.UsageError) -> click.UsageError:
        """``exc`` told in one line; a request for help (a group run bare) stays as it is."""
        if isinstance(exc, click.exceptions.NoArgsIsHelpError | cls):
            return exc
        return cls(exc.format_message(), ctx=exc.ctx)

    def show(self, file: Any = None) -> None:
        message = " ".join(self.format_message().split())
        ctx = self.ctx
        if ctx is not None and ctx.command.get_help_option(ctx) is not None:
            option = max(ctx.command.get_help_option_names(ctx), key=len)
            message += f" (see {ctx.command_path} {option})"
        click.echo(f"Error: {message}", err=True, file=file)


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        from service.app_base import package_version

        click.echo(f"leakguard {package_version()}")
        ctx.exit()


def _is_ours(command: click.Command | None) -> bool:
    """Whether ``command`` is one of Leakguard's own (not Flask's, not an extension's)."""
    callback = getattr(command, "callback", None)
    return (getattr(callback, "__module__", "") or "").startswith(_OPERATOR_PACKAGES)


def _for_operators(command: click.Command | None) -> click.Command | None:
    """``command``, hidden from --help unless it is one of Leakguard's own."""
    if command is not None and not command.hidden and not _is_ours(command):
        command.hidden = True
    return command


cli = LeakguardGroup(
    create_app=_create_app,
    add_default_commands=True,
    help="Leakguard: protect accounts after a third-party leak of email addresses.",
)


def runtime() -> Runtime:
    from service.runtime import runtime_of

    return runtime_of(current_app)


def migrated_runtime(*, record_key: bool = False) -> Runtime:
    """The runtime, after making sure the schema is current and the address hash key is
    the one the database was keyed with (``record_key``: a command that writes keys
    records the key's fingerprint if none is stored yet)."""
    from service.db import utcnow
    from service.db.migrate import is_at_head
    from service.keying import verify_runtime_key

    value = runtime()
    if not is_at_head(value.db.engine):
        raise click.ClickException(
            "the database schema is not current: run `leakguard db upgrade` first"
        )
    verify_runtime_key(value, record=record_key, now=utcnow())
    return value


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def emit_json(payload: dict[str, Any] | list[Any]) -> None:
    """Print ``payload`` as the command's one line of JSON on stdout."""
    click.echo(json.dumps(payload, default=str))
