"""The installed ``leakguard`` console script, run in a subprocess as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from service.api.auth import PRINCIPALS
from service.app import create_app
from service.clients import Scope
from service.config import Settings
from service.db import utcnow
from service.models import Account, ApiClient, AuditEvent
from service.runtime import Runtime
from service.stepup.services import Method
from tests.conftest import TEST_HASH_KEY, TEST_SECRET_KEY
from tests.stepup_fixtures import add_account

LEAKGUARD = Path(sys.executable).with_name("leakguard")
ACCOUNT = {"email": "jane@example.org"}


def base_env(instance_dir: Path) -> dict[str, str]:
    """The caller's environment without any LEAKGUARD_/FLASK_ setting, plus an instance dir."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("LEAKGUARD_", "FLASK_"))
    }
    env["LEAKGUARD_INSTANCE_DIR"] = str(instance_dir)
    return env


def run_leakguard(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LEAKGUARD), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """stderr is exactly one line, with no stack trace; return it."""
    assert "Traceback" not in result.stderr
    assert "Traceback" not in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def env(settings: Settings, tmp_path: Path) -> dict[str, str]:
    """The environment of a CLI on the test database with the test keys."""
    value = base_env(settings.instance_dir)
    value["LEAKGUARD_DATABASE_URL"] = settings.resolved_database_url
    value["LEAKGUARD_HASH_KEY"] = TEST_HASH_KEY
    value["LEAKGUARD_SECRET_KEY"] = TEST_SECRET_KEY
    return value


@pytest.fixture
def cli_app(runtime: Runtime) -> Iterator[Flask]:
    """An app on the CLI's database; ``runtime`` empties the tables after the test."""
    value = create_app(runtime.settings)
    yield value
    value.extensions["leakguard"].db.dispose()


def cli(env: dict[str, str], tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_leakguard(*args, env=env, cwd=tmp_path)


# --- commands on the test database ----------------------------------------------------


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run_leakguard("--help", env=base_env(tmp_path / "instance"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listed = {
        line.split()[0]
        for line in result.stdout.split("Commands:", 1)[1].splitlines()
        if line.strip()
    }
    assert {"db", "accounts", "api-clients", "run", "shell", "demo"} <= listed
    assert "Traceback" not in result.stderr


def test_db_upgrade_on_migrated_database_says_already_at_head(
    env: dict[str, str], tmp_path: Path, runtime: Runtime
) -> None:
    result = cli(env, tmp_path, "db", "upgrade")
    assert result.returncode == 0, result.stderr
    assert "already at" in result.stdout


def test_api_client_lifecycle_create_use_list_revoke(
    env: dict[str, str], tmp_path: Path, runtime: Runtime, cli_app: Flask
) -> None:
    created = cli(
        env,
        tmp_path,
        "api-clients",
        "create",
        "login-service",
        "--scope",
        "accounts:write",
        "--scope",
        "risk:check",
        "--json",
    )
    assert created.returncode == 0, created.stderr
    assert len(created.stdout.strip().splitlines()) == 1
    payload = json.loads(created.stdout)
    assert payload["name"] == "login-service"
    assert payload["scopes"] == ["accounts:write", "risk:check"]
    key = payload["key"]
    assert key.startswith("lgk_")
    assert len(key) >= 40

    api = cli_app.test_client()
    headers = {"Authorization": f"Bearer {key}"}
    assert api.put("/v1/accounts/u-1", json=ACCOUNT, headers=headers).status_code == 201
    assert api.get("/v1/accounts/u-1", headers=headers).status_code == 403

    again = cli(env, tmp_path, "api-clients", "create", "login-service", "--scope", "risk:check")
    assert again.returncode == 1
    assert "login-service" in one_error_line(again)
    assert again.stdout == ""

    listed = cli(env, tmp_path, "api-clients", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout
    assert key.removeprefix("lgk_") not in listed.stdout
    clients = json.loads(listed.stdout)
    assert [client["name"] for client in clients] == ["login-service"]
    assert clients[0]["revoked_at"] is None
    assert all("key" not in client and "key_hash" not in client for client in clients)

    revoked = cli(env, tmp_path, "api-clients", "revoke", "login-service")
    assert revoked.returncode == 0, revoked.stderr
    # Revoked in another process: this app stops accepting the key once its cache of
    # authenticated keys (AUTH_CACHE_TTL) has let go of it; here, at once.
    cli_app.extensions.pop(PRINCIPALS, None)
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
    env: dict[str, str], tmp_path: Path, runtime: Runtime
) -> None:
    result = cli(env, tmp_path, "api-clients", "create", "x", "--scope", "admin:all")
    assert result.returncode != 0
    line = one_error_line(result)
    assert "admin:all" in line
    for scope in Scope:
        assert scope.value in line
    assert result.stdout == ""
    with runtime.db.read_session() as session:
        assert session.scalars(select(ApiClient)).all() == []


# --- databases that are not ready -----------------------------------------------------


def test_db_upgrade_twice_on_a_fresh_database(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'fresh.sqlite3'}"
    first = run_leakguard("db", "upgrade", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "migrated from empty" in first.stdout
    second = run_leakguard("db", "upgrade", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already at" in second.stdout


def test_command_on_unmigrated_sqlite_says_to_run_db_upgrade(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    result = run_leakguard("api-clients", "list", env=env, cwd=tmp_path)
    assert result.returncode != 0
    assert "leakguard db upgrade" in one_error_line(result)


def test_unreachable_database_fails_with_one_line(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_DATABASE_URL"] = "postgresql+psycopg://postgres:pw-s3cret@127.0.0.1:1/x"
    result = run_leakguard("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode != 0
    line = one_error_line(result)
    assert "LEAKGUARD_DATABASE_URL" in line
    assert "pw-s3cret" not in line


# --- configuration errors -------------------------------------------------------------


def test_bad_redis_url_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_REDIS_URL"] = "http://x"
    for args in (("db", "current"), ("--help",)):
        result = run_leakguard(*args, env=env, cwd=tmp_path)
        assert result.returncode == 2, args
        assert "LEAKGUARD_REDIS_URL" in one_error_line(result)
        assert result.stdout == ""


def test_production_without_hash_key_exits_2_naming_the_variable(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_ENV"] = "production"
    env["LEAKGUARD_SECRET_KEY"] = TEST_SECRET_KEY
    env["LEAKGUARD_DATABASE_URL"] = f"sqlite:///{tmp_path / 'prod.sqlite3'}"
    result = run_leakguard("db", "upgrade", env=env, cwd=tmp_path)
    assert result.returncode == 2
    assert "LEAKGUARD_HASH_KEY" in one_error_line(result)
    assert not (tmp_path / "prod.sqlite3").exists()
    assert not (tmp_path / "instance" / "hash_key").exists()


def test_short_hash_key_exits_2_without_echoing_it(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance")
    env["LEAKGUARD_HASH_KEY"] = "short-k3y"
    result = run_leakguard("db", "current", env=env, cwd=tmp_path)
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
    first = run_leakguard("demo", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "3000 created" in first.stdout
    assert (instance / "demo" / "accounts.csv").is_file()
    assert (instance / "demo" / "leaked-mass-mail.eml").is_file()
    assert (instance / "leakguard.sqlite3").is_file()
    assert (instance / "hash_key").stat().st_mode & 0o777 == 0o600
    second = run_leakguard("demo", env=env, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "3000 unchanged" in second.stdout
    assert "0 created" in second.stdout
    assert "Traceback" not in first.stderr + second.stderr


def test_accounts_unlock_ends_a_step_up_lock(
    env: dict[str, str], tmp_path: Path, runtime: Runtime
) -> None:
    add_account(runtime, "locked-out")
    for _ in range(10):
        with runtime.db.transaction() as session:
            runtime.step_up.verify(
                session, "locked-out", Method.TOTP, "000000", actor="test", now=utcnow()
            )
    with runtime.db.read_session() as session:
        assert session.scalars(
            select(Account.locked_until).where(Account.external_id == "locked-out")
        ).one()
    result = cli(env, tmp_path, "accounts", "unlock", "locked-out")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unlocked"
    with runtime.db.read_session() as session:
        account = session.scalars(select(Account).where(Account.external_id == "locked-out")).one()
        events = session.scalars(
            select(AuditEvent.actor).where(AuditEvent.action == "step_up.unlocked")
        ).all()
    assert (account.locked_until, account.failed_verifications, account.lock_count) == (None, 0, 0)
    assert [actor.startswith("cli") for actor in events] == [True]
    missing = cli(env, tmp_path, "accounts", "unlock", "nobody")
    assert missing.returncode == 1
    assert "no account" in one_error_line(missing)
