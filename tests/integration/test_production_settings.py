"""Production refuses what cannot be right, and ``leakguard config check`` says so (issue 16,
items 1 and 7): as the installed console script, the way an operator meets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.app_base import package_version
from service.config import Environment
from service.config_check import production_problems, unreachable_domain
from tests.support.cli import base_env, one_error_line, run_leakguard
from tests.support.settings import TEST_HASH_KEY, TEST_SECRET_KEY, make_settings

PG_URL = "postgresql+psycopg://leakguard:pw-s3cret@db.internal.corp:5432/leakguard"
GOOD = {
    "LEAKGUARD_ENV": "production",
    "LEAKGUARD_HASH_KEY": TEST_HASH_KEY,
    "LEAKGUARD_SECRET_KEY": TEST_SECRET_KEY,
    "LEAKGUARD_DATABASE_URL": PG_URL,
    "LEAKGUARD_REDIS_URL": "redis://:redis-s3cret@cache.corp:6379/0",
    "LEAKGUARD_SMTP_URL": "smtp://mailer:smtp-s3cret@relay.corp:587",
    "LEAKGUARD_MAIL_FROM": "Shop Security <security@shop.example.de>",
    "LEAKGUARD_SERVICE_NAME": "Shop",
    "LEAKGUARD_ACCOUNT_URL": "https://shop.example.de/account",
    "LEAKGUARD_PUBLIC_URL": "https://leakguard.shop.example.de",
}
SECRETS = (TEST_HASH_KEY, TEST_SECRET_KEY, "pw-s3cret", "redis-s3cret", "smtp-s3cret")


def check(tmp_path: Path, *args: str, **env: str) -> tuple[int, str, str]:
    result = run_leakguard(base_env(tmp_path / "instance", **env), "config", "check", *args)
    assert "Traceback" not in result.stderr
    for secret in SECRETS:
        assert secret not in result.stdout + result.stderr
    return result.returncode, result.stdout, result.stderr


@pytest.fixture(autouse=True)
def _instance(tmp_path: Path) -> None:
    (tmp_path / "instance").mkdir()


def test_config_check_passes_a_sound_production_setup_showing_no_secret(tmp_path: Path) -> None:
    status, stdout, stderr = check(tmp_path, **GOOD)
    assert status == 0, stderr
    shown = dict(line.split(None, 1) for line in stdout.splitlines())
    assert shown["LEAKGUARD_HASH_KEY"] == "********"
    assert shown["LEAKGUARD_DATABASE_URL"] == PG_URL.replace("pw-s3cret", "***")
    assert shown["LEAKGUARD_SMTP_URL"] == "smtp://mailer:***@relay.corp:587"
    assert shown["LEAKGUARD_SERVICE_NAME"] == "Shop"
    assert "no problems found for production" in stderr
    # Nothing was created: the check connects to nothing and writes nothing.
    assert list((tmp_path / "instance").iterdir()) == []


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEAKGUARD_DATABASE_URL", "sqlite:////var/lib/leakguard/db.sqlite3"),
        ("LEAKGUARD_REDIS_URL", None),
        ("LEAKGUARD_SMTP_URL", None),  # notices to a folder nobody reads
        ("LEAKGUARD_MAIL_FROM", None),  # the default: security@localhost
        ("LEAKGUARD_MAIL_FROM", "security@mail.localhost"),
        ("LEAKGUARD_MAIL_FROM", "Security <security@[192.0.2.1]>"),
        ("LEAKGUARD_MAIL_FROM", "security@leakguard.test"),
        ("LEAKGUARD_ACCOUNT_URL", "https://localhost:8443/account"),
        ("LEAKGUARD_SERVICE_NAME", None),
        ("LEAKGUARD_PUBLIC_URL", None),  # the default: http://localhost:5000
        ("LEAKGUARD_PUBLIC_URL", "http://leakguard.shop.example.de"),
        ("LEAKGUARD_SECRET_KEY", TEST_HASH_KEY),  # the same key for both uses
    ],
)
def test_production_refuses_each_wrong_setting_in_one_line_naming_it(
    tmp_path: Path, variable: str, value: str | None
) -> None:
    env = dict(GOOD)
    if value is None:
        del env[variable]
    else:
        env[variable] = value
    status, _, stderr = check(tmp_path, **env)
    assert status == 1
    errors = [line for line in stderr.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, stderr
    assert errors[0].startswith(f"Error: {variable}: ")
    # Every process refuses to start the same way, before touching anything.
    env.setdefault("LEAKGUARD_DATABASE_URL", PG_URL)
    started = run_leakguard(base_env(tmp_path / "instance", **env), "db", "current")
    assert started.returncode == 2
    assert one_error_line(started) == errors[0]


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    env = {
        "LEAKGUARD_ENV": "production",
        "LEAKGUARD_HASH_KEY": TEST_HASH_KEY,
        "LEAKGUARD_SECRET_KEY": TEST_SECRET_KEY,
        "LEAKGUARD_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    status, _, stderr = check(tmp_path, **env)
    named = [line.split(":")[1].strip() for line in stderr.splitlines()]
    assert status == 1
    assert named == [
        "LEAKGUARD_DATABASE_URL",
        "LEAKGUARD_REDIS_URL",
        "LEAKGUARD_SMTP_URL",
        "LEAKGUARD_MAIL_FROM",
        "LEAKGUARD_PUBLIC_URL",
        "LEAKGUARD_SERVICE_NAME",
    ]
    started = run_leakguard(base_env(tmp_path / "instance", **env), "db", "upgrade")
    assert started.returncode == 2
    assert started.stderr.splitlines() == stderr.splitlines()
    assert not (tmp_path / "db.sqlite3").exists()


def test_development_check_passes_and_tells_what_production_would_refuse(tmp_path: Path) -> None:
    status, stdout, stderr = check(tmp_path, "--json")
    assert status == 0
    payload = json.loads(stdout)
    assert payload["problems"] == []
    assert payload["settings"]["LEAKGUARD_ENV"] == "development"
    refused = payload["production_would_refuse"]
    assert any(line.startswith("LEAKGUARD_MAIL_FROM") for line in refused)
    status, _, stderr = check(tmp_path, "--production")
    assert status == 1
    assert "Error: LEAKGUARD_SERVICE_NAME" in stderr


def test_invalid_value_is_a_problem_with_the_given_variables_masked(tmp_path: Path) -> None:
    status, stdout, stderr = check(
        tmp_path,
        LEAKGUARD_DATABASE_URL=PG_URL,
        LEAKGUARD_HASH_KEY=TEST_HASH_KEY,
        LEAKGUARD_MAIL_RATE="-1",
    )
    assert status == 1
    assert dict(line.split(None, 1) for line in stdout.splitlines())["LEAKGUARD_HASH_KEY"] == (
        "********"
    )
    assert stderr.strip().splitlines() == [
        "Error: LEAKGUARD_MAIL_RATE: Input should be greater than or equal to 0"
    ]


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+foo://u:pw-s3cret@h/d",  # no such driver
        "postgresql+psycopg2://u:pw-s3cret@h/d",  # a driver Leakguard does not install
        "mysql+pymysql://u:pw-s3cret@h/d",
        "postgresql+psycopg://u:pw-s3cret@h:54x2/d",  # a port that is no number
        "not a url",
    ],
)
def test_invalid_database_url_is_one_line_not_a_traceback(tmp_path: Path, url: str) -> None:
    env = base_env(tmp_path / "instance", LEAKGUARD_DATABASE_URL=url)
    result = run_leakguard(env, "db", "current")
    assert result.returncode == 2
    line = one_error_line(result)
    assert "LEAKGUARD_DATABASE_URL" in line
    assert "pw-s3cret" not in line


def test_version_and_help_need_no_valid_setting(tmp_path: Path) -> None:
    env = base_env(tmp_path / "instance", LEAKGUARD_DATABASE_URL="postgresql+foo://x/y")
    version = run_leakguard(env, "--version")
    assert (version.returncode, version.stdout) == (0, f"leakguard {package_version()}\n")
    shown = run_leakguard(env, "--help")
    assert shown.returncode == 0, shown.stderr
    # Flask's developer options are hidden: an operator never needs them.
    for hidden in ("--env-file", "--app", "--debug", "Flask version"):
        assert hidden not in shown.stdout


def test_idn_sender_goes_out_as_a_labels(tmp_path: Path) -> None:
    settings = make_settings(
        "sqlite://", tmp_path, mail_from="Sicherheit <sicherheit@Bücher-Shop.de>"
    )
    assert settings.mail_from == "Sicherheit <sicherheit@xn--bcher-shop-9db.de>"


def test_unreachable_domains() -> None:
    for name in (
        "localhost",
        "a.localhost",
        "x.test",
        "example.com",
        "mail.example.org",
        "intranet",
        "10.0.0.1",
        "[127.0.0.1]",
        "box.local",
        "svc.internal",
        "",
    ):
        assert unreachable_domain(name), name
    for name in ("shop.de", "xn--bcher-kva.de", "mail.example.de", "examples.com"):
        assert not unreachable_domain(name), name


def test_production_problems_is_empty_for_the_sound_setup(tmp_path: Path) -> None:
    settings = make_settings(
        PG_URL,
        tmp_path,
        env=Environment.PRODUCTION,
        redis_url="redis://cache.corp:6379/0",
        smtp_url="smtp://relay.corp:587",
        mail_from="security@shop.example.de",
        service_name="Shop",
        public_url="https://leakguard.shop.example.de",
    )
    assert production_problems(settings) == []
