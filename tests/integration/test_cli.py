"""The ``leakguard`` commands: in this process through the command group, and as the
installed console script where only the real process shows it (configuration and
connection failures, the exit status ``main`` gives them, the environment)."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import click
import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from service.api.auth import PRINCIPALS
from service.app import create_app
from service.cli import COMMANDS, cli
from service.clients import Scope
from service.db import utcnow
from service.models import ApiClient, AuditEvent, StepUpThrottle
from service.runtime import Runtime, runtime_of
from service.stepup import throttle
from service.stepup.services import Method
from tests.support.cli import base_env, cli_env, invoke, one_error_line, output, run_leakguard
from tests.support.factories import make_account
from tests.support.http import bearer
from tests.support.settings import TEST_SECRET_KEY, make_settings

ACCOUNT = {"email": "jane@example.org"}


@pytest.fixture
def fresh_app(tmp_path: Path) -> Iterator[Flask]:
    """An app on a new SQLite file that no migration has touched."""
    value = create_app(make_settings(f"sqlite:///{tmp_path / 'fresh.sqlite3'}", tmp_path / "i"))
    yield value
    runtime_of(value).db.dispose()


def test_help_lists_the_commands_without_touching_a_database(
    fresh_app: Flask, tmp_path: Path
) -> None:
    help_text = output(fresh_app.test_cli_runner(), "--help")
    listed = {
        line.split()[0] for line in help_text.split("Commands:", 1)[1].splitlines() if line.strip()
    }
    assert {"db", "accounts", "api-clients", "config", "demo", "worker"} <= listed
    # Flask's development commands and extensions' maintenance groups are hidden, not gone.
    assert not {"run", "shell", "routes", "limiter"} & listed
    assert "registered routes" in output(fresh_app.test_cli_runner(), "routes", "--help")
    assert not (tmp_path / "fresh.sqlite3").exists()


def test_every_command_is_listed_by_its_module_and_summary() -> None:
    """The lazy list (service.cli.COMMANDS) names each command's module and says what its
    help says, at any terminal width."""
    for entry in COMMANDS.values():
        importlib.import_module(entry.module)
    ours = {
        name
        for name, command in cli.commands.items()
        if getattr(command.callback, "__module__", "").startswith("service.")
    }
    assert ours == set(COMMANDS)
    for name, entry in COMMANDS.items():
        command = cli.commands[name]
        listed = click.Command(name, help=entry.summary)
        for limit in (30, 45, 70, 200):
            assert listed.get_short_help_str(limit) == command.get_short_help_str(limit), name


# What a command's start must not import: the HTTP side (service.app, the API, the staff
# site) is for `leakguard serve` and Flask's own commands; --help imports no command at all.
IMPORTS = """
import sys
from service.cli import main
sys.argv = ["leakguard", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
watched = {"service", "jobs", "sqlalchemy", "redis", "rq", "fakeredis", "cryptography"}
names = (name for name in sys.modules if name.split(".")[0] in watched)
print(*sorted(names), file=sys.stderr)
"""


def _imported(env: dict[str, str], cwd: Path, *args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", IMPORTS, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return set(result.stderr.split("\n")[-2].split())


def test_help_and_a_command_import_only_what_they_use(runtime: Runtime, db_url: str) -> None:
    instance = runtime.settings.instance_dir
    env = cli_env(db_url, instance)
    help_imports = _imported(env, instance, "--help")
    assert "service.cli.base" in help_imports
    assert not {name for name in help_imports if name.startswith(("jobs", "sqlalchemy"))}
    assert not {entry.module for entry in COMMANDS.values()} & help_imports
    command_imports = _imported(env, instance, "leaks", "list")
    assert {"service.cli.leaks", "service.runtime"} <= command_imports
    assert not {"service.app", "service.api", "service.staff", "service.cli.staff"} & (
        command_imports
    )


def test_an_ingest_in_one_process_imports_neither_the_queue_nor_cryptography(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    """Without LEAKGUARD_REDIS_URL or --enqueue the ingest relays nothing and splits
    nothing: redis, rq, fakeredis and the mail and events modules (with cryptography)
    would be about 20 MiB of its peak RSS (README, issue 18)."""
    instance = runtime.settings.instance_dir
    leak = tmp_path / "leak.txt"
    leak.write_text("jane@example.org\nbob@example.net\n")
    imported = _imported(
        cli_env(db_url, instance), instance, "ingest", str(leak), "--leak", "x", "--dry-run"
    )
    assert {"jobs.ingest.pipeline", "service.stepup.secret_box"} <= imported
    unwanted = {"redis", "rq", "fakeredis", "cryptography", "jobs.deliver", "jobs.queues"}
    unwanted |= {"jobs.ingest.parts", "jobs.ingest.split"}
    assert not {name for name in imported if name.split(".")[0] in unwanted or name in unwanted}


# --- commands on the test database ----------------------------------------------------


def test_db_upgrade_on_migrated_database_says_already_at_head(runner: FlaskCliRunner) -> None:
    assert "already at" in output(runner, "db", "upgrade")


def test_api_client_lifecycle_create_use_list_revoke(
    runner: FlaskCliRunner, runtime: Runtime, make_app: Callable[..., Flask]
) -> None:
    api_app = make_app()  # the API: another app than the commands' (another process)
    created = invoke(
        runner,
        "api-clients",
        "create",
        "login-service",
        "--scope",
        "accounts:write",
        "--scope",
        "risk:check",
        "--json",
    )
    assert created.exit_code == 0, created.stderr
    assert len(created.stdout.strip().splitlines()) == 1
    payload = json.loads(created.stdout)
    assert payload["name"] == "login-service"
    assert payload["scopes"] == ["accounts:write", "risk:check"]
    key = payload["key"]
    assert key.startswith("lgk_")
    assert len(key) >= 40

    api = api_app.test_client()
    headers = bearer(key)
    assert api.put("/v1/accounts/u-1", json=ACCOUNT, headers=headers).status_code == 201
    assert api.get("/v1/accounts/u-1", headers=headers).status_code == 403

    again = invoke(runner, "api-clients", "create", "login-service", "--scope", "risk:check")
    assert again.exit_code == 1
    assert "login-service" in one_error_line(again)
    assert again.stdout == ""

    listed = output(runner, "api-clients", "list", "--json")
    assert key not in listed
    assert key.removeprefix("lgk_") not in listed
    clients = json.loads(listed)
    assert [client["name"] for client in clients] == ["login-service"]
    assert clients[0]["revoked_at"] is None
    assert all("key" not in client and "key_hash" not in client for client in clients)

    output(runner, "api-clients", "revoke", "login-service")
    # Revoked in another process: this app stops accepting the key once its cache of
    # authenticated keys (AUTH_CACHE_TTL) has let go of it; here, at once.
    api_app.extensions.pop(PRINCIPALS, None)
    response = api.put("/v1/accounts/u-2", json=ACCOUNT, headers=headers)
    assert response.status_code == 401

    with runtime.db.read_session() as session:
        events = session.execute(
            select(AuditEvent.action, AuditEvent.target, AuditEvent.actor).order_by(AuditEvent.id)
        ).all()
        stored = session.execute(select(ApiClient.name, ApiClient.revoked_at)).all()
    assert [(action, target) for action, target, _ in events] == [
        ("api_client.created", "login-service"),
        ("api_client.revoked", "login-service"),
    ]
    assert all(actor.startswith("cli") for _, _, actor in events)
    assert key not in repr(events)
    assert len(stored) == 1
    assert stored[0].revoked_at is not None


def test_api_client_with_unknown_scope_is_refused_naming_known_scopes(
    runner: FlaskCliRunner, runtime: Runtime
) -> None:
    result = invoke(runner, "api-clients", "create", "x", "--scope", "admin:all")
    line = one_error_line(result)
    assert "admin:all" in line
    for scope in Scope:
        assert scope.value in line
    assert result.stdout == ""
    with runtime.db.read_session() as session:
        assert session.scalars(select(ApiClient)).all() == []


# --- databases that are not ready -----------------------------------------------------


def test_db_upgrade_twice_on_a_fresh_database(fresh_app: Flask) -> None:
    runner = fresh_app.test_cli_runner()
    assert "migrated from empty" in output(runner, "db", "upgrade")
    assert "already at" in output(runner, "db", "upgrade")


def test_command_on_unmigrated_sqlite_says_to_run_db_upgrade(tmp_path: Path) -> None:
    # The real process, on an environment that names a database no migration has touched.
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    result = run_leakguard(env, "api-clients", "list", cwd=tmp_path)
    assert result.returncode == 1
    assert "leakguard db upgrade" in one_error_line(result)
    assert result.stdout == ""


def test_unreachable_database_fails_with_one_line(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_DATABASE_URL"] = "postgresql+psycopg://postgres:pw-s3cret@127.0.0.1:1/x"
    result = run_leakguard(env, "db", "upgrade", cwd=tmp_path)
    assert result.returncode != 0
    line = one_error_line(result)
    assert "LEAKGUARD_DATABASE_URL" in line
    assert "pw-s3cret" not in line


# --- configuration errors -------------------------------------------------------------


def test_bad_redis_url_exits_2_naming_the_variable_but_help_still_works(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_REDIS_URL"] = "http://x"
    for args in (("db", "current"), ("worker", "--burst")):
        result = run_leakguard(env, *args, cwd=tmp_path)
        assert result.returncode == 2, args
        assert "LEAKGUARD_REDIS_URL" in one_error_line(result)
        assert result.stdout == ""
    for args in (("--help",), ("db", "--help"), ("--version",)):
        result = run_leakguard(env, *args, cwd=tmp_path)
        assert result.returncode == 0, (args, result.stderr)
        assert result.stderr == ""


@pytest.mark.parametrize("args", [("worker", "--burst"), ("worker",)], ids=["burst", "long"])
def test_a_worker_whose_redis_is_unreachable_says_so_in_one_line(
    runtime: Runtime, db_url: str, tmp_path: Path, args: tuple[str, ...]
) -> None:
    """With nothing due, the first word to Redis was rq's, and an unreachable Redis was
    a 60-line traceback instead of the one line every command gives."""
    env = cli_env(db_url, tmp_path / "instance", LEAKGUARD_REDIS_URL="redis://127.0.0.1:1/0")
    result = run_leakguard(env, *args, cwd=tmp_path)
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith("Error: the queue is unreachable: ")
    assert "Traceback" not in result.stderr


def test_an_enqueued_ingest_whose_redis_is_unreachable_says_so_and_records_nothing(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    """It was a redis ConnectionError traceback, and the leak stayed recorded as an
    interrupted file of 0 records, though a refusal records nothing."""
    env = cli_env(db_url, tmp_path / "instance", LEAKGUARD_REDIS_URL="redis://127.0.0.1:1/0")
    leak = tmp_path / "leak.txt"
    leak.write_text("".join(f"user{n}@example.org\n" for n in range(20)))
    result = run_leakguard(env, "ingest", str(leak), "--leak", "zz", "--enqueue", cwd=tmp_path)
    assert result.returncode == 1
    line = one_error_line(result)
    assert line.startswith("Error: the queue is unreachable (")
    assert line.endswith(
        "nothing recorded; start Redis or check LEAKGUARD_REDIS_URL, then run the same "
        "command again"
    )
    shown = run_leakguard(env, "leaks", "show", "zz", cwd=tmp_path)
    assert shown.returncode == 1
    assert "zz" in one_error_line(shown)


@pytest.mark.redis
def test_a_burst_worker_logs_at_leakguard_log_level(
    runtime: Runtime, db_url: str, redis_url: str, tmp_path: Path
) -> None:
    """rq sets its loggers to INFO: a burst with nothing to do printed about ten lines
    ("started with PID", "Listening on", "cleaning registries") under the documented
    default WARNING."""
    env = cli_env(db_url, tmp_path / "instance", LEAKGUARD_REDIS_URL=redis_url)
    quiet = run_leakguard(env, "worker", "--burst", cwd=tmp_path)
    assert quiet.returncode == 0, quiet.stderr
    assert "rq.worker" not in quiet.stdout + quiet.stderr
    assert "Listening on" not in quiet.stdout + quiet.stderr
    env["LEAKGUARD_LOG_LEVEL"] = "INFO"
    told = run_leakguard(env, "worker", "--burst", cwd=tmp_path)
    assert told.returncode == 0, told.stderr
    assert "Listening on" in told.stdout + told.stderr


def test_production_without_hash_key_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_ENV"] = "production"
    env["LEAKGUARD_SECRET_KEY"] = TEST_SECRET_KEY
    env["LEAKGUARD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'prod.sqlite3'}"
    result = run_leakguard(env, "db", "upgrade", cwd=tmp_path)
    assert result.returncode == 2
    assert "LEAKGUARD_HASH_KEY" in one_error_line(result)
    assert not (tmp_path / "prod.sqlite3").exists()
    assert not (tmp_path / "instance" / "hash_key").exists()


def test_short_hash_key_exits_2_without_echoing_it(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_HASH_KEY"] = "short-k3y"
    result = run_leakguard(env, "db", "current", cwd=tmp_path)
    assert result.returncode == 2
    line = one_error_line(result)
    assert "LEAKGUARD_HASH_KEY" in line
    assert "short-k3y" not in line


# --- demo -----------------------------------------------------------------------------


def test_demo_runs_on_the_embedded_default_and_a_second_run_changes_nothing(
    tmp_path: Path,
) -> None:
    instance = tmp_path / "instance"
    env = base_env(instance)
    first = run_leakguard(env, "demo", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "3000 created" in first.stdout
    assert (instance / "demo" / "accounts.csv").is_file()
    assert (instance / "demo" / "leaked-mass-mail.eml").is_file()
    assert (instance / "leakguard.sqlite3").is_file()
    assert (instance / "hash_key").stat().st_mode & 0o777 == 0o600
    second = run_leakguard(env, "demo", cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "3000 unchanged" in second.stdout
    assert "0 created" in second.stdout
    assert "Traceback" not in first.stderr + second.stderr


def test_accounts_unlock_ends_a_step_up_lock(runner: FlaskCliRunner, runtime: Runtime) -> None:
    make_account(runtime, "locked-out")
    for _ in range(10):
        with runtime.db.transaction() as session:
            runtime.step_up.verify(
                session, "locked-out", Method.TOTP, "000000", actor="test", now=utcnow()
            )
    subject = runtime.step_up.subject("locked-out")
    with runtime.db.read_session() as session:
        assert throttle.state(session, subject, now=utcnow()).locked == {
            "totp": session.scalar(
                select(StepUpThrottle.locked_until).where(
                    StepUpThrottle.subject == subject, StepUpThrottle.scope == "totp"
                )
            )
        }
    assert output(runner, "accounts", "unlock", "locked-out").strip() == "unlocked"
    with runtime.db.read_session() as session:
        state = throttle.state(session, subject, now=utcnow())
        events = session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "step_up.unlocked")
        ).all()
    assert (state.locked, state.blocked) == ({}, False)
    assert [actor.startswith("cli") for actor in events] == [True]
    missing = invoke(runner, "accounts", "unlock", "nobody")
    assert missing.exit_code == 1
    assert "no account" in one_error_line(missing)
