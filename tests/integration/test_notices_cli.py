"""`leakguard notices preview | test-send`: what an operator checks before mailing everyone.

Run through the command group in this process, on an app with the settings under test.
The commands read one leak and send at most one message, so SQLite is enough here; the
campaign commands (pause, resume, status) are exercised on both backends in
test_delivery.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner

from jobs.ingest.pipeline import ingest_leak
from service.runtime import Runtime
from tests.support.cli import invoke, one_error_line
from tests.support.leakfiles import write_lines
from tests.support.mail import parse_message, to_addresses
from tests.support.smtp import SmtpServer

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

LEAK = "exchange-2019"
SEED = "seed@example.org"
ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
SENDER = "security@localhost"


@pytest.fixture(autouse=True)
def leak(runtime: Runtime, tmp_path: Path) -> str:
    """The database holds the leak ``LEAK`` (no account needed)."""
    leak_file = write_lines(tmp_path / "leak.txt", ["stranger@leak-victims.example"])
    ingest_leak(runtime, leak_file, slug=LEAK, name="Exchange newsletter")
    return LEAK


@pytest.fixture
def smtp_runner(make_app: Callable[..., Flask], smtp_server: SmtpServer) -> FlaskCliRunner:
    """``leakguard`` on an app that sends to the test SMTP server."""
    return make_app(smtp_url=smtp_server.url).test_cli_runner()


def clear_addresses(text: str) -> list[str]:
    """Addresses in ``text`` other than masked ones (``j***@...``) and our own sender.

    The text is what the command printed and what it logged (``caplog``: in this process
    the log handler writes to the test run's stderr, not to the runner's).
    """
    return [a for a in ADDRESS.findall(text) if "***@" not in a and not a.endswith("@localhost")]


@pytest.mark.parametrize(
    ("language", "kind", "subject"),
    [
        ("en", "email", "Security notice: your email address appeared in a data leak"),
        (
            "en",
            "credential",
            "Security notice: your email address and a password appeared in a data leak",
        ),
        ("de", "email", "Sicherheitshinweis: Ihre E-Mail-Adresse ist in einem Datenleck"),
        ("de", "credential", "Sicherheitshinweis: Ihre E-Mail-Adresse und ein Passwort sind"),
    ],
)
def test_preview_prints_a_message_with_the_address_masked(
    runner: FlaskCliRunner,
    caplog: pytest.LogCaptureFixture,
    language: str,
    kind: str,
    subject: str,
) -> None:
    result = invoke(
        runner, "notices", "preview", "--leak", LEAK, "--language", language, "--kind", kind
    )
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    assert out.startswith(f"=== {kind} warning, {language} ===\n")
    assert re.search(r"^To: j\*\*\*@example\.com$", out, re.MULTILINE), out
    assert re.search(rf"^Subject: {subject}", out, re.MULTILINE), out  # no leading space
    assert "Exchange newsletter" in out
    assert "@" not in out.split("\n\n", 1)[1]  # the body is everyone's: no address in it
    assert clear_addresses(out + result.stderr + caplog.text) == []


def test_preview_without_kind_or_language_shows_every_variant_with_its_own_subject(
    runner: FlaskCliRunner,
) -> None:
    result = invoke(runner, "notices", "preview", "--leak", LEAK)
    assert result.exit_code == 0, result.stderr
    heads = re.findall(r"^=== (\w+) warning, (\w+) ===$", result.stdout, re.MULTILINE)
    assert heads == [("email", "en"), ("email", "de"), ("credential", "en"), ("credential", "de")]
    subjects = re.findall(r"^Subject: (.+)$", result.stdout, re.MULTILINE)
    assert len(set(subjects)) == 4
    assert "password" in subjects[2]
    assert "Passwort" in subjects[3]


def test_test_send_sends_one_message_to_the_seed_and_prints_it_masked(
    smtp_runner: FlaskCliRunner, smtp_server: SmtpServer, caplog: pytest.LogCaptureFixture
) -> None:
    result = invoke(smtp_runner, "notices", "test-send", "--leak", LEAK, "--to", SEED)
    assert result.exit_code == 0, result.stderr
    assert "s***@example.org" in result.stdout
    assert clear_addresses(result.stdout + result.stderr + caplog.text) == []

    (envelope,) = smtp_server.messages()
    assert envelope.rcpt_tos == (SEED,)
    assert to_addresses(envelope.message) == [SEED]
    assert envelope.message["Cc"] is None
    assert envelope.message["Bcc"] is None
    assert str(envelope.message["Message-ID"]) in result.stdout


def test_test_send_to_a_relay_refusing_our_login_says_so_once(
    make_app: Callable[..., Flask], smtp_server: SmtpServer
) -> None:
    """The seed send is how an operator tries the relay settings: a wrong password is
    named as the relay's refusal of the session, its code once ("535 the relay refused
    ...: 535 ..." before)."""
    smtp_server.set_mode(login=("leakguard", "right"))
    url = smtp_server.url.replace("smtp://", "smtp://leakguard:wrong@")
    runner = make_app(smtp_url=url).test_cli_runner()
    result = invoke(runner, "notices", "test-send", "--leak", LEAK, "--to", SEED)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith(
        "Error: not sent to s***@example.org: the relay refused the session: 535 "
    )
    assert line.count("535") == 1
    assert "wrong" not in line
    assert smtp_server.messages() == []


def test_test_send_without_smtp_writes_one_eml(
    make_app: Callable[..., Flask], tmp_path: Path
) -> None:
    mail_dir = tmp_path / "mail-folder"
    runner = make_app(mail_dir=mail_dir).test_cli_runner()
    result = invoke(runner, "notices", "test-send", "--leak", LEAK, "--to", SEED)
    assert result.exit_code == 0, result.stderr
    assert "s***@example.org" in result.stdout
    assert SEED not in result.stdout
    (path,) = mail_dir.glob("*.eml")
    assert to_addresses(parse_message(path.read_bytes())) == [SEED]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("preview", "--leak", "no-such-leak"), id="preview"),
        pytest.param(("test-send", "--leak", "no-such-leak", "--to", SEED), id="test-send"),
    ],
)
def test_unknown_leak_fails_in_one_line(
    smtp_runner: FlaskCliRunner, smtp_server: SmtpServer, args: tuple[str, ...]
) -> None:
    result = invoke(smtp_runner, "notices", *args)
    assert result.exit_code == 1
    assert one_error_line(result) == "Error: no leak named 'no-such-leak'"
    assert smtp_server.events() == []


@pytest.mark.parametrize(
    "recipient",
    [
        pytest.param("not-an-address", id="no-at"),
        pytest.param("seed@", id="no-domain"),
        pytest.param(f"{SEED}, other@example.org", id="two-people"),
        pytest.param(f"{SEED}\nBcc: other@example.org", id="header-injection"),
    ],
)
def test_invalid_recipient_fails_in_one_line_and_sends_nothing(
    smtp_runner: FlaskCliRunner, smtp_server: SmtpServer, recipient: str
) -> None:
    result = invoke(smtp_runner, "notices", "test-send", "--leak", LEAK, "--to", recipient)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "--to" in line
    assert "other@example.org" not in line
    assert smtp_server.events() == []
