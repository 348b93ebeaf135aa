"""Settings from LEAKGUARD_* variables: defaults, generated keys, refusals naming the variable."""

from __future__ import annotations

import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from service.config import (
    HASH_KEY_FILE,
    SECRET_KEY_FILE,
    ConfigError,
    Environment,
    Settings,
    load_settings,
)

GOOD_KEY = "k" * 32


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No LEAKGUARD_ variable of the caller leaks in; the working directory is empty."""
    for name in list(os.environ):
        if name.startswith("LEAKGUARD_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def config_error(**env: str) -> str:
    """The ConfigError message load_settings raises for ``env``; it is one line."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        with pytest.raises(ConfigError) as raised:
            load_settings()
    message = str(raised.value)
    assert "\n" not in message
    assert "Traceback" not in message
    return message


# --- defaults -------------------------------------------------------------------------


def test_defaults_keep_everything_in_the_instance_folder(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.env is Environment.DEVELOPMENT
    assert settings.instance_dir == tmp_path / "instance"
    assert (
        settings.resolved_database_url == f"sqlite:///{tmp_path / 'instance' / 'leakguard.sqlite3'}"
    )
    assert settings.resolved_mail_dir == tmp_path / "instance" / "mail"
    assert settings.redis_url is None
    assert settings.smtp_url is None
    assert settings.max_request_bytes == 4 * 1024 * 1024
    assert settings.max_batch_accounts == 1000


def test_instance_dir_from_the_environment_moves_the_sqlite_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("LEAKGUARD_INSTANCE_DIR", str(tmp_path / "elsewhere"))
    settings = load_settings()
    assert (
        settings.resolved_database_url
        == f"sqlite:///{tmp_path / 'elsewhere' / 'leakguard.sqlite3'}"
    )


@pytest.mark.parametrize(
    ("file_name", "read"),
    [
        (HASH_KEY_FILE, lambda settings: settings.hash_key_bytes().decode()),
        (SECRET_KEY_FILE, Settings.secret_key_text),
    ],
    ids=["hash_key", "secret_key"],
)
def test_development_key_is_generated_once_into_a_private_file(
    tmp_path: Path, file_name: str, read: Callable[[Settings], str]
) -> None:
    instance = tmp_path / "instance"
    first = read(Settings(instance_dir=instance))
    path = instance / file_name
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.encode()) >= 16
    assert path.read_text().strip() == first
    second = read(Settings(instance_dir=instance))
    assert second == first
    assert read(Settings(instance_dir=tmp_path / "other")) != first


def test_hash_key_and_secret_key_differ(tmp_path: Path) -> None:
    settings = Settings(instance_dir=tmp_path / "instance")
    assert settings.hash_key_bytes().decode() != settings.secret_key_text()


def start_at_once(instance: Path, starters: int) -> tuple[list[bytes], list[BaseException]]:
    """``starters`` threads read the hash key of a fresh ``instance`` at the same moment."""
    barrier = threading.Barrier(starters)
    keys: list[bytes] = []
    failures: list[BaseException] = []

    def start() -> None:
        barrier.wait(timeout=10)
        try:
            keys.append(Settings(instance_dir=instance).hash_key_bytes())
        except BaseException as exc:  # noqa: BLE001  (returned to the test)
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return keys, failures


def test_processes_starting_at_once_agree_on_one_generated_key(tmp_path: Path) -> None:
    # A reader must never see the key file created but not yet written.
    for trial in range(20):
        instance = tmp_path / f"race-{trial}"
        keys, failures = start_at_once(instance, 8)
        assert failures == []
        assert len(keys) == 8
        assert len(set(keys)) == 1
        assert len(keys[0]) >= 16
        assert sorted(p.name for p in instance.iterdir()) == [HASH_KEY_FILE]


def test_truncated_key_file_is_refused(tmp_path: Path) -> None:
    instance = tmp_path / "instance"
    instance.mkdir()
    (instance / HASH_KEY_FILE).write_text("")
    with pytest.raises(ConfigError, match=HASH_KEY_FILE):
        Settings(instance_dir=instance).hash_key_bytes()


def test_hash_key_from_the_environment_wins(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    instance = tmp_path / "instance"
    generated = Settings(instance_dir=instance).hash_key_bytes()
    monkeypatch.setenv("LEAKGUARD_HASH_KEY", GOOD_KEY)
    monkeypatch.setenv("LEAKGUARD_SECRET_KEY", "s" * 16)
    settings = load_settings(instance_dir=instance)
    assert settings.hash_key_bytes() == GOOD_KEY.encode()
    assert settings.hash_key_bytes() != generated
    assert settings.secret_key_text() == "s" * 16
    assert not (instance / SECRET_KEY_FILE).exists()
    assert GOOD_KEY not in repr(settings)


@pytest.mark.parametrize("variable", ["LEAKGUARD_HASH_KEY", "LEAKGUARD_SECRET_KEY"])
def test_key_shorter_than_16_bytes_is_refused_naming_the_variable(variable: str) -> None:
    message = config_error(**{variable: "fifteen-bytes!!"})
    assert variable in message
    assert "fifteen-bytes!!" not in message
    # 16 bytes, counted in UTF-8 (eight two-byte characters), is enough.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(variable, "ä" * 8)
        load_settings()


def test_production_refuses_to_start_without_its_secrets(tmp_path: Path) -> None:
    assert "LEAKGUARD_HASH_KEY" in config_error(LEAKGUARD_ENV="production")
    assert "LEAKGUARD_SECRET_KEY" in config_error(
        LEAKGUARD_ENV="production", LEAKGUARD_HASH_KEY=GOOD_KEY
    )
    assert "LEAKGUARD_DATABASE_URL" in config_error(
        LEAKGUARD_ENV="production", LEAKGUARD_HASH_KEY=GOOD_KEY, LEAKGUARD_SECRET_KEY=GOOD_KEY
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEAKGUARD_ENV", "production")
        patch.setenv("LEAKGUARD_HASH_KEY", GOOD_KEY)
        patch.setenv("LEAKGUARD_SECRET_KEY", GOOD_KEY)
        patch.setenv("LEAKGUARD_DATABASE_URL", "postgresql+psycopg://lg@db.internal/lg")
        settings = load_settings()
    assert settings.env is Environment.PRODUCTION
    assert not (tmp_path / "instance" / HASH_KEY_FILE).exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("LEAKGUARD_DATABASE_URL", "mysql://root:hunter2-pw@db/lg"),
        ("LEAKGUARD_SMTP_URL", "http://user:hunter2-pw@mail.example"),
        ("LEAKGUARD_REDIS_URL", "http://hunter2-pw@cache"),
        ("LEAKGUARD_ENV", "staging-hunter2-pw"),
        ("LEAKGUARD_MAX_REQUEST_BYTES", "0"),
        ("LEAKGUARD_MAX_BATCH_ACCOUNTS", "100000"),
        ("LEAKGUARD_CANON_GMAIL_DOTS", "maybe-hunter2-pw"),
    ],
)
def test_bad_value_is_one_line_naming_the_variable(variable: str, value: str) -> None:
    message = config_error(**{variable: value})
    assert variable in message
    assert "hunter2-pw" not in message


def test_good_urls_are_accepted() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEAKGUARD_DATABASE_URL", "postgresql+psycopg://u:p@h/db")
        patch.setenv("LEAKGUARD_SMTP_URL", "smtps://u:p@mail.example:465")
        patch.setenv("LEAKGUARD_REDIS_URL", "redis://127.0.0.1:6379/0")
        settings = load_settings()
    assert settings.resolved_database_url == "postgresql+psycopg://u:p@h/db"
    assert settings.smtp_url == "smtps://u:p@mail.example:465"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"


@pytest.mark.parametrize(
    "url",
    [
        "smtp://relay:hunter2-pw@mail.example:notaport",
        "smtp://relay:hunter2-pw@mail.example:70000",
        "smtp://relay:hunter2-pw@mail.example:0",
        "smtp://",
        "smtp://relay:hunter2-pw@:587",
        "smtp://mail.example?starttls=maybe",
        "smtp://mail.example?startls=off",  # a typo that was silently ignored
        "smtp://mail.example?starttls=off&starttls=required",
        "smtp://mail.example?starttls",
        "smtps://mail.example?starttls=off",
        "smtp://mail.example/relay",
    ],
)
def test_an_smtp_url_no_connection_can_use_is_refused_at_start(url: str) -> None:
    """Each was accepted at start, then every delivery job died on it (notices stuck in
    `sending` until their lease ran out) or it was silently read otherwise."""
    message = config_error(LEAKGUARD_SMTP_URL=url)
    assert message.startswith("invalid configuration: LEAKGUARD_SMTP_URL: ")
    assert "hunter2-pw" not in message


@pytest.mark.parametrize(
    "sender",
    [
        "Sécurité <sécurité@example.com>",  # the envelope sender needs plain ASCII
        "Security <security@exa mple.com>",  # parsed as another address than written
        "Security <secu rity@example.com>",
        'Security <"secu rity"@example.com>',
        "Security <security..team@example.com>",
        "Security <security@example..com>",
        "Security <security@-example.com>",
    ],
)
def test_a_sender_no_relay_takes_as_written_is_refused_at_start(sender: str) -> None:
    """Such a sender was accepted, and every notice then failed for good (the envelope
    could not carry it) with every account's address marked undeliverable."""
    assert config_error(LEAKGUARD_MAIL_FROM=sender).startswith(
        "invalid configuration: LEAKGUARD_MAIL_FROM: "
    )


@pytest.mark.parametrize(
    "sender",
    [
        "Leakguard <security@localhost>",
        "Sécurité <security@example.com>",  # a display name may be anything
        "security@example.com (Security)",
        "Security <security@[192.0.2.1]>",
        "Security <sec.team+notices@mail.example.com>",
    ],
)
def test_a_usable_sender_is_accepted(sender: str) -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEAKGUARD_MAIL_FROM", sender)
        assert load_settings().mail_from == sender


@pytest.mark.parametrize("variable", ["LEAKGUARD_SERVICE_NAME", "LEAKGUARD_TOTP_ISSUER"])
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("", "blank"),
        ("   ", "blank"),
        ("\u200b", "blank"),
        ("Shop\nBcc: x@example.net", "U+000A"),
        ("Shop\u202eevil", "U+202E"),
        ("x" * 101, "101 characters"),
    ],
)
def test_a_name_shown_in_notices_and_apps_must_be_readable(
    variable: str, value: str, why: str
) -> None:
    """A blank service name had the warning read "your account with , the address ..."
    and sign "The security team of"; a control character broke the sentence."""
    message = config_error(**{variable: value})
    assert message.startswith(f"invalid configuration: {variable}: ")
    assert why in message


def test_a_totp_issuer_with_a_colon_is_refused() -> None:
    # otpauth://totp/Issuer:account: apps split the label at its first colon.
    assert "colon" in config_error(LEAKGUARD_TOTP_ISSUER="Shop: Security")


def test_names_are_trimmed_to_one_line_of_single_spaces() -> None:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LEAKGUARD_SERVICE_NAME", "  Example   Exchange ")
        patch.setenv("LEAKGUARD_TOTP_ISSUER", " Example  Exchange")
        settings = load_settings()
    assert (settings.service_name, settings.totp_issuer) == ("Example Exchange",) * 2


@pytest.mark.parametrize(
    ("variable", "value", "error"),
    [
        # Each parsed, and then refused every request (or, for the mail rate, sent nothing):
        # a typo the operator learns of from the first sign-in or campaign.
        ("LEAKGUARD_RATE_LIMIT_RISK", "0/second", "must allow at least 1 request"),
        ("LEAKGUARD_RATE_LIMIT_STEP_UP", "10/minute;0/hour", "must allow at least 1 request"),
        ("LEAKGUARD_RATE_LIMIT_RISK", "fast", "must be a rate limit such as 50/second"),
        ("LEAKGUARD_MAIL_RATE", "inf", "finite number"),
        ("LEAKGUARD_MAIL_RATE", "nan", "finite number"),
    ],
)
def test_a_rate_that_no_request_or_message_can_pass_is_refused_at_start(
    variable: str, value: str, error: str
) -> None:
    message = config_error(**{variable: value})
    assert message.startswith(f"invalid configuration: {variable}: "), message
    assert error in message, message
