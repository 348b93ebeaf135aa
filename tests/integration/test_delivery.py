"""Delivering the warnings: one message per person, on the wire of a real SMTP server.

The path is the production one: the outbox relayed to the real Redis, an rq worker running
the delivery job, ``SmtpMailer`` talking to the test server in its own process. What the
tests assert is what the server received, not what the code says it sent.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections import Counter
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import getaddresses
from html import unescape
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import SimpleWorker
from rq.registry import FailedJobRegistry
from sqlalchemy import select, update

from jobs.account_import import import_accounts
from jobs.context import use_runtime
from jobs.deliver import (
    RECORD_EVERY_MESSAGES,
    RECORD_EVERY_SECONDS,
    SentRecorder,
    deliver_notices,
    relay_notices,
    send_notices,
)
from jobs.ingest.pipeline import ingest_leak
from jobs.queues import QueueName, get_queue
from service.app import create_app
from service.cli import cli
from service.clients import Scope
from service.db import utcnow
from service.models import Account, Leak, Notice
from service.notices.outbox import SEND_LEASE, claim_notices
from service.notices.transport import (
    FolderMailer,
    MultipleRecipients,
    OutgoingMessage,
    SendResult,
    SmtpMailer,
    check_one_recipient,
    check_outgoing,
)
from service.notices.transport import parse_smtp_url as smtp_settings
from service.runtime import Runtime
from tests.conftest import make_api_key
from tests.leakfiles import cli_env, run_leakguard, write_lines
from tests.smtp_server import (
    SmtpServer,
    refuse,
    smtp_server_fixture,  # noqa: F401  (the fixture)
)

ACCOUNT_URL = "https://accounts.example.com/settings/email"
SERVICE_NAME = "Example Exchange"
LEAK = "exchange-2019"
# Every link-shaped thing in a message part: schemes, bare www. hosts, href/src targets.
_LINKISH = re.compile(r"(?:[a-z][a-z0-9+.-]*://|www\.)[^\s<>\"']+", re.IGNORECASE)
_ATTRIBUTE_TARGET = re.compile(r"\b(?:href|src|action)\s*=\s*\"([^\"]*)\"", re.IGNORECASE)
RECIPIENT_HEADERS = ("Cc", "Bcc", "Resent-To", "Resent-Cc", "Resent-Bcc")


# --- flagging accounts and delivering, as the service does it -------------------------------


def flag_accounts(
    runtime: Runtime,
    directory: Path,
    count: int,
    *,
    slug: str = LEAK,
    prefix: str = "member",
    locales: tuple[str, ...] = ("",),
) -> dict[str, str]:
    """Import ``count`` accounts (and as many not leaked), ingest a leak naming them.

    Returns external_id -> address of the flagged accounts. Locales cycle through ``locales``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    leaked = {
        f"{prefix}-{i:04d}": f"{prefix.title()}.{i}@Example.com"
        if i % 7 == 0
        else f"{prefix}{i}@example.com"
        for i in range(count)
    }
    safe = {f"{prefix}-safe-{i:04d}": f"{prefix}.safe{i}@example.net" for i in range(count)}
    rows = ["external_id,email,locale"]
    for index, (external_id, email) in enumerate({**leaked, **safe}.items()):
        rows.append(f"{external_id},{email},{locales[index % len(locales)]}")
    imported = import_accounts(runtime, write_lines(directory / f"{slug}-accounts.csv", rows))
    assert imported.invalid == 0, imported.invalid_lines
    leak_lines = [email.lower() for email in leaked.values()]
    leak_lines += [f"stranger{i}@leak-victims.example" for i in range(count)]
    report = ingest_leak(
        runtime,
        write_lines(directory / f"{slug}.txt", leak_lines),
        slug=slug,
        name="Exchange newsletter with every recipient visible",
    )
    assert report.run.matched == count
    return leaked


def mail_settings_runtime(runtime: Runtime, **changes: Any) -> Runtime:
    """The test runtime with other settings, on the same database; jobs here use it."""
    value = dataclasses.replace(runtime, settings=runtime.settings.model_copy(update=changes))
    use_runtime(value)
    return value


@pytest.fixture(name="mail_runtime")
def mail_runtime_fixture(runtime: Runtime, smtp_server: SmtpServer) -> Runtime:
    """The test runtime sending to the test SMTP server, with an account link set."""
    return mail_settings_runtime(
        runtime, smtp_url=smtp_server.url, account_url=ACCOUNT_URL, service_name=SERVICE_NAME
    )


class BurstWorker(SimpleWorker):
    """rq's in-process worker without its command channel, whose thread takes 1 s to stop."""

    def subscribe(self) -> None:
        return None


def deliver(runtime: Runtime, redis_url: str) -> int:
    """Relay due notices to the real Redis and run an rq worker until the queue is empty.

    Returns how many notices were relayed. A delivery job that raised fails the test.
    """
    connection = Redis.from_url(redis_url)
    try:
        relayed = relay_notices(runtime, connection)
        queue = get_queue(QueueName.DEFAULT, connection)
        BurstWorker([queue], connection=connection).work(burst=True, logging_level="WARNING")
        assert queue.count == 0
        failed = FailedJobRegistry(queue=queue)
        assert failed.count == 0, failed.get_job_ids()
    finally:
        connection.close()
    return relayed


@dataclasses.dataclass(frozen=True, slots=True)
class NoticeRow:
    id: int
    state: str
    attempts: int
    reply_code: int | None
    message_id: str | None
    not_before: datetime | None
    queued_at: datetime | None
    undeliverable_at: datetime | None


def notice_rows(runtime: Runtime) -> dict[str, NoticeRow]:
    """external_id -> its one notice, read with a plain SELECT."""
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(
                Account.external_id,
                Notice.id,
                Notice.state,
                Notice.attempts,
                Notice.reply_code,
                Notice.message_id,
                Notice.not_before,
                Notice.queued_at,
                Account.undeliverable_at,
            ).join(Account, Account.id == Notice.account_id)
        ).all()
    by_account = {row[0]: NoticeRow(row[1], str(row[2]), *row[3:]) for row in rows}
    assert len(by_account) == len(rows), "two notices for one account"
    return by_account


def states(runtime: Runtime) -> Counter[str]:
    return Counter(row.state for row in notice_rows(runtime).values())


def assert_each_once_or_failed(
    runtime: Runtime, server: SmtpServer, flagged: dict[str, str]
) -> Counter[str]:
    """Every flagged account has exactly one accepted message, or a failed notice with its
    reply code and no message; nobody else got anything. Returns the final states."""
    received = server.rcpt_counts()
    rows = notice_rows(runtime)
    assert set(rows) == set(flagged)
    for external_id, email in flagged.items():
        row = rows[external_id]
        if row.state == "sent":
            assert received[email.lower()] == 1, (external_id, received[email.lower()])
        else:
            assert row.state == "failed", (external_id, row)
            assert row.reply_code is not None, (external_id, row)
            assert received[email.lower()] == 0, external_id
    assert sum(received.values()) == sum(1 for row in rows.values() if row.state == "sent")
    return Counter(row.state for row in rows.values())


def parts(message: EmailMessage) -> tuple[str, str]:
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert isinstance(text, EmailMessage)
    assert isinstance(html, EmailMessage)
    return text.get_content(), html.get_content()


def links(text: str) -> set[str]:
    found = {match.rstrip(".,;:)") for match in _LINKISH.findall(unescape(text))}
    return found | {unescape(target) for target in _ATTRIBUTE_TARGET.findall(text)}


# --- the invariant -------------------------------------------------------------------------


@pytest.mark.redis
def test_invariant_one_recipient_per_message_on_the_wire(
    mail_runtime: Runtime, smtp_server: SmtpServer, redis_url: str, tmp_path: Path
) -> None:
    flagged = flag_accounts(
        mail_runtime, tmp_path, 50, locales=("de-AT", "xx", "en", "", "DE", "fr-CA")
    )
    with mail_runtime.db.read_session() as session:
        locale_of = dict(session.execute(select(Account.email, Account.locale)).all())

    assert deliver(mail_runtime, redis_url) == 50

    envelopes = smtp_server.messages()
    assert len(envelopes) == len(flagged)
    rows = notice_rows(mail_runtime)
    message_ids = {row.message_id for row in rows.values()}
    assert {row.state for row in rows.values()} == {"sent"}
    assert None not in message_ids
    assert len(message_ids) == len(flagged)
    everyone = {email.lower() for email in flagged.values()}
    for envelope in envelopes:
        message = envelope.message
        assert len(envelope.rcpt_tos) == 1
        (rcpt,) = envelope.rcpt_tos
        to_headers = message.get_all("To") or []
        assert len(to_headers) == 1
        assert [address for _, address in getaddresses([str(h) for h in to_headers])] == [rcpt]
        for header in RECIPIENT_HEADERS:
            assert message.get_all(header) is None, header
        # Nobody else's address anywhere in the message, not even in the body.
        raw = envelope.data.decode("utf-8", "replace").lower()
        assert [other for other in everyone - {rcpt.lower()} if other in raw] == []
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["List-Unsubscribe"] is None
        assert message["List-Unsubscribe-Post"] is None
        assert str(message["Message-ID"]) in message_ids
        text, html = parts(message)
        # The body is the same for everyone: the To header alone shows the address.
        assert "@" not in text + html
        assert "<script" not in html.lower()
        assert links(text) == {ACCOUNT_URL}, links(text)
        assert links(html) == {ACCOUNT_URL}, links(html)
        subject = str(message["Subject"]).strip()  # folded after "Subject:"
        if locale_of[rcpt] in ("de-AT", "DE"):
            assert subject.startswith("Sicherheitshinweis"), subject
            assert text.startswith("Guten Tag")
        else:  # en, xx, fr-CA, none: English
            assert subject.startswith("Security notice"), (locale_of[rcpt], subject)
            assert text.startswith("Hello")
        assert SERVICE_NAME in text
    assert smtp_server.rcpt_counts() == Counter(everyone)
    headers_ids = Counter(str(envelope.message["Message-ID"]) for envelope in envelopes)
    assert set(headers_ids.values()) == {1}
    assert set(headers_ids) == message_ids

    # The outbox is done: delivering again sends nothing more, even when rq runs a job a
    # second time (a retry, a job recovered from a lost worker): the claim is the guard.
    connection = Redis.from_url(redis_url)
    get_queue(QueueName.DEFAULT, connection).enqueue(
        deliver_notices, sorted(row.id for row in rows.values())
    )
    connection.close()
    assert deliver(mail_runtime, redis_url) == 0
    assert len(smtp_server.messages()) == len(flagged)


def two_people_message(**headers: str) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Leakguard <security@localhost>"
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message["Subject"] = "Security notice"
    message.set_content("one message, several people")
    return message


def on_the_wire(message: EmailMessage, recipient: str = "a@example.com") -> OutgoingMessage:
    """``message`` as a mailer gets it: its bytes and one envelope recipient."""
    return OutgoingMessage(
        recipient=recipient, message_id="<test@localhost>", data=message.as_bytes(policy=SMTP)
    )


SEVERAL_PEOPLE = [
    pytest.param({"To": "a@example.com, b@example.com"}, id="two-to-addresses"),
    pytest.param({"To": "a@example.com", "Cc": "b@example.com"}, id="cc"),
    pytest.param({"To": "a@example.com", "Bcc": "b@example.com"}, id="bcc"),
    pytest.param({"To": "friends: a@example.com, b@example.com;"}, id="group"),
    pytest.param({"To": "a@example.com", "Resent_To": "b@example.com"}, id="resent-to"),
    pytest.param({}, id="no-to"),
]


@pytest.mark.parametrize("headers", SEVERAL_PEOPLE)
def test_a_message_for_several_people_is_refused_before_it_leaves(
    headers: dict[str, str], smtp_server: SmtpServer, tmp_path: Path
) -> None:
    message = two_people_message(**headers)
    with pytest.raises(MultipleRecipients):
        check_one_recipient(message)
    mailer = SmtpMailer(smtp_settings(smtp_server.url), envelope_from="security@localhost")
    try:
        with pytest.raises(MultipleRecipients):
            mailer.send(on_the_wire(message))
        # The same mailer still sends a proper message: the refusal was this message's.
        assert mailer.send(on_the_wire(two_people_message(To="a@example.com"))).accepted
    finally:
        mailer.close()
    assert [e.rcpt_tos for e in smtp_server.messages()] == [("a@example.com",)]
    assert [e for e in smtp_server.events() if e["event"] != "accepted"] == []
    folder = tmp_path / "mail"
    with pytest.raises(MultipleRecipients):
        FolderMailer(folder).send(on_the_wire(message))
    assert not folder.exists() or list(folder.iterdir()) == []


# --- the embedded default: no SMTP, no Redis ---------------------------------------------


def test_worker_burst_without_smtp_writes_one_eml_per_flagged_account(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    flagged = flag_accounts(runtime, tmp_path / "data", 12)
    mail_dir = tmp_path / "mail-folder"
    env = cli_env(db_url, runtime.settings.instance_dir, LEAKGUARD_MAIL_DIR=str(mail_dir))
    result = run_leakguard(env, "worker", "--burst")
    assert result.returncode == 0, result.stderr
    assert "delivered 12 notices" in result.stderr

    files = sorted(mail_dir.glob("*.eml"))
    assert len(files) == len(flagged)
    assert list(mail_dir.glob("*.part")) == []
    recipients = []
    for path in files:
        message = cast(EmailMessage, message_from_bytes(path.read_bytes(), policy=policy.default))
        to_headers = message.get_all("To") or []
        assert len(to_headers) == 1
        addresses = getaddresses([str(h) for h in to_headers])
        assert len(addresses) == 1
        assert all(message.get_all(header) is None for header in RECIPIENT_HEADERS)
        assert message.defects == []
        assert str(message["Subject"]).startswith("Security notice")
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == [
            "text/plain",
            "text/html",
        ]
        text, html = parts(message)
        assert text.startswith("Hello")
        assert "<p>Hello,</p>" in html
        recipients.append(addresses[0][1])
    assert Counter(recipients) == Counter(flagged.values())
    rows = notice_rows(runtime)
    assert {row.state for row in rows.values()} == {"sent"}
    assert {f"{row.message_id}".strip("<>") + ".eml" for row in rows.values()} == {
        path.name for path in files
    }


# --- outcomes written in groups -------------------------------------------------------------


def claimed_ids(runtime: Runtime) -> list[int]:
    with runtime.db.transaction() as session:
        ids = sorted(session.scalars(select(Notice.id)))
        claim_notices(session, ids, now=utcnow())
    return ids


def test_sent_rows_are_written_every_50_messages_or_half_second(
    runtime: Runtime, tmp_path: Path
) -> None:
    flag_accounts(runtime, tmp_path, RECORD_EVERY_MESSAGES + 10)
    ids = claimed_ids(runtime)
    now = [0.0]
    recorder = SentRecorder(runtime, clock=lambda: now[0])
    for notice_id in ids[: RECORD_EVERY_MESSAGES - 1]:
        recorder.add(notice_id, f"<m{notice_id}@example.com>")
    assert states(runtime) == {"sending": len(ids)}  # the window: all of them, so far
    recorder.add(ids[RECORD_EVERY_MESSAGES - 1], "<last@example.com>")
    assert states(runtime) == {"sent": RECORD_EVERY_MESSAGES, "sending": 10}

    rest = iter(ids[RECORD_EVERY_MESSAGES:])
    recorder.add(next(rest), "<a@example.com>")
    now[0] += RECORD_EVERY_SECONDS - 0.1
    recorder.add(next(rest), "<b@example.com>")
    assert states(runtime)["sent"] == RECORD_EVERY_MESSAGES
    now[0] += 0.1  # the first waiting row has waited its half second
    recorder.add(next(rest), "<c@example.com>")
    assert states(runtime)["sent"] == RECORD_EVERY_MESSAGES + 3
    recorder.add(next(rest), "<d@example.com>")
    recorder.flush()
    assert states(runtime) == {"sent": RECORD_EVERY_MESSAGES + 4, "sending": 6}
    message_ids = {row.message_id for row in notice_rows(runtime).values()}
    assert {"<last@example.com>", "<d@example.com>"} <= message_ids


class FailingAfter:
    """A mailer that accepts ``count`` messages, then breaks as no SMTP error does."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.sent: list[str] = []

    def send(self, message: OutgoingMessage) -> SendResult:
        check_outgoing(message)
        if len(self.sent) == self.count:
            raise RuntimeError("the mailer broke")
        self.sent.append(message.recipient)
        return SendResult(accepted=True)

    def close(self) -> None:
        return None


def test_an_error_mid_batch_still_records_what_was_accepted(
    runtime: Runtime, tmp_path: Path
) -> None:
    flag_accounts(runtime, tmp_path, 8)
    with runtime.db.read_session() as session:
        ids = sorted(session.scalars(select(Notice.id)))
    mailer = FailingAfter(3)
    with pytest.raises(RuntimeError, match="broke"):
        send_notices(runtime, ids, mailer=mailer)
    # The three accepted are sent; the rest wait in ``sending`` for their lease to end.
    assert states(runtime) == {"sent": 3, "sending": 5}


class SlowMailer:
    """Accepts every message, ``seconds`` of the job's clock each; notes each row's lease."""

    def __init__(self, runtime: Runtime, now: list[float], seconds: float) -> None:
        self.runtime = runtime
        self.now = now
        self.seconds = seconds
        self.leases: list[datetime | None] = []

    def send(self, message: OutgoingMessage) -> SendResult:
        check_outgoing(message)
        notice_id = int(message.message_id.split(".")[0].removeprefix("<notice-"))
        with self.runtime.db.read_session() as session:
            self.leases.append(
                session.scalar(select(Notice.lease_until).where(Notice.id == notice_id))
            )
        self.now[0] += self.seconds
        return SendResult(accepted=True)

    def close(self) -> None:
        return None


def test_a_long_batch_renews_the_lease_of_the_rows_it_still_holds(
    runtime: Runtime, tmp_path: Path
) -> None:
    flag_accounts(runtime, tmp_path, 4)
    with runtime.db.read_session() as session:
        ids = sorted(session.scalars(select(Notice.id)))
    now = [0.0]
    mailer = SlowMailer(runtime, now, SEND_LEASE.total_seconds() / 2)
    report = send_notices(runtime, ids, mailer=mailer, clock=lambda: now[0])
    assert report.sent == 4
    # Each message took half a lease: every row still held was renewed before it went.
    leases = [lease for lease in mailer.leases if lease is not None]
    assert len(leases) == 4
    assert leases == sorted(leases)
    assert leases[0] < leases[1] < leases[2] < leases[3]
    assert states(runtime) == {"sent": 4}


# --- bounces -------------------------------------------------------------------------------


def account_rows(runtime: Runtime) -> list[tuple[Any, ...]]:
    with runtime.db.read_session() as session:
        return sorted(
            tuple(row)
            for row in session.execute(
                select(
                    Account.external_id,
                    Account.email,
                    Account.undeliverable_at,
                    Notice.state,
                    Notice.reply_code,
                    Notice.last_error,
                    Notice.message_id,
                ).join(Notice, Notice.account_id == Account.id)
            )
        )


def test_bounces_fail_the_notice_and_mark_the_address_until_it_changes(
    runtime: Runtime, client: FlaskClient, tmp_path: Path
) -> None:
    flagged = flag_accounts(runtime, tmp_path, 3)
    with runtime.db.read_session() as session:
        ids = list(session.scalars(select(Notice.id)))
    assert send_notices(runtime, ids).sent == 3  # into the mail folder: no SMTP set
    rows = notice_rows(runtime)
    first, second, third = sorted(flagged)
    bare = str(rows[first].message_id).strip("<>")
    bracketed = str(rows[second].message_id)
    assert bracketed.startswith("<")
    assert not bare.startswith("<")

    headers = {"Authorization": f"Bearer {make_api_key(runtime, Scope.NOTICES_BOUNCES)}"}
    body = {
        "bounces": [
            {"message_id": bare, "code": 550, "reason": "5.1.1 mailbox unknown"},
            {"message_id": bracketed, "code": 552},
            {"message_id": "<not-ours-1@elsewhere.example>", "code": 550},
        ]
    }
    answer = client.post("/v1/notices/bounces", json=body, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"matched": 2, "unknown": 1}

    rows = notice_rows(runtime)
    assert (rows[first].state, rows[first].reply_code) == ("failed", 550)
    assert (rows[second].state, rows[second].reply_code) == ("failed", 552)
    assert rows[first].undeliverable_at is not None
    assert rows[second].undeliverable_at is not None
    assert (rows[third].state, rows[third].undeliverable_at) == ("sent", None)

    before = account_rows(runtime)
    again = client.post("/v1/notices/bounces", json=body, headers=headers)
    assert again.status_code == 200
    assert account_rows(runtime) == before

    # A new address deserves a new chance.
    writer = {"Authorization": f"Bearer {make_api_key(runtime, Scope.ACCOUNTS_WRITE)}"}
    changed = client.put(f"/v1/accounts/{first}", json={"email": "new@example.org"}, headers=writer)
    assert changed.status_code == 200, changed.get_json()
    rows = notice_rows(runtime)
    assert rows[first].undeliverable_at is None
    assert rows[second].undeliverable_at is not None


def test_bounces_need_their_scope_and_a_valid_body(runtime: Runtime, client: FlaskClient) -> None:
    other = {"Authorization": f"Bearer {make_api_key(runtime, Scope.ACCOUNTS_WRITE)}"}
    body = {"bounces": [{"message_id": "<x@example.org>", "code": 550}]}
    denied = client.post("/v1/notices/bounces", json=body, headers=other)
    assert denied.status_code == 403
    assert denied.mimetype == "application/problem+json"

    headers = {"Authorization": f"Bearer {make_api_key(runtime, Scope.NOTICES_BOUNCES)}"}
    for bad in (
        {},
        {"bounces": []},
        {"bounces": [{"message_id": "no-at-sign"}]},
        {"bounces": [{"message_id": "<a@b> <c@d>"}]},
        {"bounces": [{"message_id": "<x@example.org>", "code": 99}]},
        {"bounces": [{"message_id": "<x@example.org>", "extra": 1}]},
        {"bounces": [{"message_id": "<x@example.org>"}] * 1001},
    ):
        answer = client.post("/v1/notices/bounces", json=bad, headers=headers)
        assert answer.status_code == 422, (bad, answer.status_code)
        assert answer.mimetype == "application/problem+json"
        problem = answer.get_json()
        assert problem["status"] == 422
        assert problem["code"]


# --- pause and resume ----------------------------------------------------------------------


def run_cli(app: Flask, *args: str) -> str:
    """Run a ``leakguard`` command in this process, on ``app``'s runtime."""
    result = app.test_cli_runner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def status(app: Flask, slug: str) -> dict[str, Any]:
    output = run_cli(app, "notices", "status", "--leak", slug, "--json")
    payload: dict[str, Any] = json.loads(output)
    return payload


@pytest.mark.redis
def test_paused_campaign_waits_in_the_outbox_and_goes_out_on_resume(
    mail_runtime: Runtime, smtp_server: SmtpServer, redis_url: str, tmp_path: Path
) -> None:
    paused = flag_accounts(mail_runtime, tmp_path, 6, slug="paused-leak", prefix="p")
    going = flag_accounts(mail_runtime, tmp_path, 3, slug="going-leak", prefix="g")
    app = create_app(mail_runtime.settings)
    try:
        connection = Redis.from_url(redis_url)
        assert relay_notices(mail_runtime, connection) == 9  # both leaks' jobs are queued
        assert status(app, "paused-leak") == {
            "leak": "paused-leak",
            "paused": False,
            "pending": 0,
            "queued": 6,
            "sending": 0,
            "sent": 0,
            "failed": 0,
        }
        assert "paused" in run_cli(app, "notices", "pause", "--leak", "paused-leak")
        assert "already paused" in run_cli(app, "notices", "pause", "--leak", "paused-leak")

        # The worker holding the paused leak's rows puts them back; the other leak goes.
        assert deliver(mail_runtime, redis_url) == 0
        assert smtp_server.rcpt_counts() == Counter(e.lower() for e in going.values())
        stopped = status(app, "paused-leak")
        assert (stopped["paused"], stopped["pending"], stopped["queued"]) == (True, 6, 0)
        assert stopped["sent"] == 0
        # ... and the relay leaves them alone while the campaign is paused.
        assert relay_notices(mail_runtime, connection) == 0
        assert status(app, "paused-leak")["pending"] == 6

        victim = sorted(paused.values())[0]
        smtp_server.set_mode(refuse(550, recipient=victim))
        assert "resumed" in run_cli(app, "notices", "resume", "--leak", "paused-leak")
        assert deliver(mail_runtime, redis_url) == 6
        assert status(app, "paused-leak") == {
            "leak": "paused-leak",
            "paused": False,
            "pending": 0,
            "queued": 0,
            "sending": 0,
            "sent": 5,
            "failed": 1,
        }
        assert_each_once_or_failed(mail_runtime, smtp_server, {**paused, **going})

        # A row a worker holds counts as sending.
        with mail_runtime.db.transaction() as session:
            leak_id = session.scalar(select(Leak.id).where(Leak.slug == "going-leak"))
            first = session.scalar(select(Notice.id).where(Notice.leak_id == leak_id).limit(1))
            session.execute(update(Notice).where(Notice.id == first).values(state="sending"))
        assert (status(app, "going-leak")["sending"], status(app, "going-leak")["sent"]) == (1, 2)
        connection.close()
    finally:
        app.extensions["leakguard"].db.dispose()
