"""`leakguard notices preview | test-send`: what an operator checks before mailing everyone.

Run through the installed console script, as an operator would. The commands read one leak
and send at most one message, so SQLite is enough here; the campaign commands (pause,
resume, status) are exercised on both backends in test_delivery.py.
"""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import cast

import pytest

from jobs.ingest.pipeline import ingest_leak
from service.runtime import Runtime
from tests.leakfiles import cli_env, one_error_line, run_leakguard, write_lines
from tests.smtp_server import (
    SmtpServer,
    smtp_server_fixture,  # noqa: F401  (the fixture)
)

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

LEAK = "exchange-2019"
SEED = "seed@example.org"
ADDRESS = re.compile(r"[\w.!#$%&'*+/=?^`{|}~-]+@[\w-]+(?:\.[\w-]+)+")
SENDER = "security@localhost"


@pytest.fixture
def env(runtime: Runtime, db_url: str, tmp_path: Path) -> dict[str, str]:
    """A CLI environment on a database holding the leak ``LEAK`` (no account needed)."""
    leak_file = write_lines(tmp_path / "leak.txt", ["stranger@leak-victims.example"])
    ingest_leak(runtime, leak_file, slug=LEAK, name="Exchange newsletter")
    return cli_env(db_url, runtime.settings.instance_dir)


def clear_addresses(text: str) -> list[str]:
    """Addresses in ``text`` other than masked ones (``j***@...``) and our own sender."""
    return [a for a in ADDRESS.findall(text) if "***@" not in a and not a.endswith("@localhost")]


@pytest.mark.parametrize(
    ("language", "subject"), [("en", "Security notice"), ("de", "Sicherheitshinweis")]
)
def test_preview_prints_a_message_with_the_address_masked(
    env: dict[str, str], language: str, subject: str
) -> None:
    result = run_leakguard(env, "notices", "preview", "--leak", LEAK, "--language", language)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert re.search(r"^To: j\*\*\*@example\.com$", out, re.MULTILINE), out
    assert re.search(rf"^Subject: ?\s*{subject}", out, re.MULTILINE), out
    assert "Exchange newsletter" in out
    assert "@" not in out.split("\n\n", 1)[1]  # the body is everyone's: no address in it
    assert clear_addresses(out + result.stderr) == []


def test_test_send_sends_one_message_to_the_seed_and_prints_it_masked(
    env: dict[str, str], smtp_server: SmtpServer
) -> None:
    env["LEAKGUARD_SMTP_URL"] = smtp_server.url
    result = run_leakguard(env, "notices", "test-send", "--leak", LEAK, "--to", SEED)
    assert result.returncode == 0, result.stderr
    assert "s***@example.org" in result.stdout
    assert clear_addresses(result.stdout + result.stderr) == []

    (envelope,) = smtp_server.messages()
    assert envelope.rcpt_tos == (SEED,)
    to_headers = envelope.message.get_all("To") or []
    assert [a for _, a in getaddresses([str(h) for h in to_headers])] == [SEED]
    assert envelope.message["Cc"] is None
    assert envelope.message["Bcc"] is None
    assert str(envelope.message["Message-ID"]) in result.stdout


def test_test_send_without_smtp_writes_one_eml(env: dict[str, str], tmp_path: Path) -> None:
    mail_dir = tmp_path / "mail-folder"
    env["LEAKGUARD_MAIL_DIR"] = str(mail_dir)
    result = run_leakguard(env, "notices", "test-send", "--leak", LEAK, "--to", SEED)
    assert result.returncode == 0, result.stderr
    assert "s***@example.org" in result.stdout
    assert SEED not in result.stdout
    (path,) = mail_dir.glob("*.eml")
    message = cast(EmailMessage, message_from_bytes(path.read_bytes(), policy=policy.default))
    assert [a for _, a in getaddresses([str(h) for h in message.get_all("To") or []])] == [SEED]


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(("preview", "--leak", "no-such-leak"), id="preview"),
        pytest.param(("test-send", "--leak", "no-such-leak", "--to", SEED), id="test-send"),
    ],
)
def test_unknown_leak_fails_in_one_line(
    env: dict[str, str], smtp_server: SmtpServer, args: tuple[str, ...]
) -> None:
    env["LEAKGUARD_SMTP_URL"] = smtp_server.url
    result = run_leakguard(env, "notices", *args)
    assert result.returncode == 1
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
    env: dict[str, str], smtp_server: SmtpServer, recipient: str
) -> None:
    env["LEAKGUARD_SMTP_URL"] = smtp_server.url
    result = run_leakguard(env, "notices", "test-send", "--leak", LEAK, "--to", recipient)
    assert result.returncode == 1
    line = one_error_line(result)
    assert "--to" in line
    assert "other@example.org" not in line
    assert smtp_server.events() == []
