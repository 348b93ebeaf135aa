"""Delivering the warnings: one message per person, on the wire of a real SMTP server.

The path is the production one: the outbox relayed to the real Redis, an rq worker running
the delivery job, ``SmtpMailer`` talking to the test server in its own process. What the
tests assert is what the server received, not what the code says it sent.
"""

from __future__ import annotations

import dataclasses
import json
import smtplib
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient, FlaskCliRunner
from redis import Redis
from sqlalchemy import select, update

from jobs.deliver import (
    FIRST_READ,
    READ_PART,
    RECORD_EVERY_MESSAGES,
    RECORD_EVERY_SECONDS,
    SentRecorder,
    deliver_notices,
    relay_notices,
    send_notices,
)
from jobs.queues import QueueName, get_queue
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
    check_outgoing,
)
from service.notices.transport import parse_smtp_url as smtp_settings
from service.runtime import Runtime
from tests.support.cli import cli_env, output, run_leakguard
from tests.support.delivery import (
    ACCOUNT_URL,
    SERVICE_NAME,
    assert_each_once_or_failed,
    deliver,
    notice_rows,
    states,
)
from tests.support.factories import flag_accounts, make_api_key
from tests.support.http import bearer
from tests.support.mail import (
    NotOneRecipient,
    links,
    one_recipient,
    parse_message,
    text_and_html,
)
from tests.support.smtp import SmtpServer, drop, refuse

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
        assert one_recipient(message) == rcpt  # one To address, no Cc, Bcc or Resent-*
        # Nobody else's address anywhere in the message, not even in the body.
        raw = envelope.data.decode("utf-8", "replace").lower()
        assert [other for other in everyone - {rcpt.lower()} if other in raw] == []
        assert message["Auto-Submitted"] == "auto-generated"
        assert message["List-Unsubscribe"] is None
        assert message["List-Unsubscribe-Post"] is None
        assert str(message["Message-ID"]) in message_ids
        text, html = text_and_html(message)
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
    with pytest.raises(NotOneRecipient):
        one_recipient(message)
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


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-by-one"])
def test_pipelined_or_not_each_message_reads_its_own_replies(
    pipelining: bool, smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    send = smtplib.SMTP.send

    def counted(connection: smtplib.SMTP, data: str | bytes) -> None:
        writes.append(data.encode() if isinstance(data, str) else data)
        send(connection, data)

    monkeypatch.setattr(smtplib.SMTP, "send", counted)
    smtp_server.set_mode(
        refuse(451, at="rcpt", recipient="later@example.com"),
        refuse(550, at="data", recipient="gone@example.com"),
        refuse(421, at="rcpt", recipient="closing@example.com"),
        pipelining=pipelining,
    )
    mailer = SmtpMailer(smtp_settings(smtp_server.url), envelope_from="security@localhost")
    outcomes = {}
    try:
        for name in ("a", "later", "b", "gone", "c", "closing", "d"):
            recipient = f"{name}@example.com"
            message = on_the_wire(two_people_message(To=recipient), recipient)
            before = len(writes)
            result = mailer.send(message)
            outcomes[name] = (result.accepted, result.permanent, result.code)
            if name == "a":  # the connection's EHLO, then two writes pipelined, else four
                assert len(writes) - before - 1 == (2 if pipelining else 4)
    finally:
        mailer.close()

    assert outcomes == {
        "a": (True, False, 250),
        "later": (False, False, 451),
        "b": (True, False, 250),
        "gone": (False, True, 550),
        "c": (True, False, 250),
        "closing": (False, False, 421),  # the server hung up: the next message reconnects
        "d": (True, False, 250),
    }
    assert [e.rcpt_tos for e in smtp_server.messages()] == [
        (f"{name}@example.com",) for name in "abcd"
    ]
    together = any(w.startswith(b"mail FROM:") and b"\r\nrcpt TO:" in w for w in writes)
    assert together is pipelining


def numbered(name: str) -> OutgoingMessage:
    recipient = f"{name}@example.com"
    message = on_the_wire(two_people_message(To=recipient), recipient)
    return dataclasses.replace(message, message_id=f"<{name}@localhost>")


def test_a_stream_of_messages_takes_one_round_trip_each(
    smtp_server: SmtpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes: list[bytes] = []
    send = smtplib.SMTP.send

    def counted(connection: smtplib.SMTP, data: str | bytes) -> None:
        writes.append(data.encode() if isinstance(data, str) else data)
        send(connection, data)

    monkeypatch.setattr(smtplib.SMTP, "send", counted)
    names = [f"m{n}" for n in range(20)]
    mailer = SmtpMailer(smtp_settings(smtp_server.url), envelope_from="security@localhost")
    try:
        outcomes = [
            (message.recipient, result.accepted)
            for message, result in mailer.send_all(numbered(name) for name in names)
        ]
        # EHLO, the first message's envelope, then one write a message: its content and
        # the next one's MAIL, RCPT and DATA.
        assert len(writes) == 2 + len(names)
    finally:
        mailer.close()
    assert outcomes == [(f"{name}@example.com", True) for name in names]
    assert [e.rcpt_tos for e in smtp_server.messages()] == [
        (f"{name}@example.com",) for name in names
    ]


def test_a_stream_maps_each_refusal_to_its_own_message(smtp_server: SmtpServer) -> None:
    smtp_server.set_mode(
        refuse(451, at="rcpt", recipient="later@example.com"),
        refuse(550, at="rcpt", recipient="unknown@example.com"),
        refuse(452, at="data", recipient="full@example.com"),
        refuse(554, at="data", recipient="gone@example.com"),
        refuse(421, at="rcpt", recipient="closing@example.com"),
        refuse(421, at="data", recipient="closing-after@example.com"),
        drop(at="data", count=1),  # the first content's end: after it, before the 250
    )
    names = [
        "dropped-once",
        "later",
        "a",
        "unknown",
        "b",
        "full",
        "c",
        "gone",
        "d",
        "closing",
        "e",
        "closing-after",
        "f",
    ]
    mailer = SmtpMailer(smtp_settings(smtp_server.url), envelope_from="security@localhost")
    try:
        outcomes = {
            message.recipient.split("@")[0]: (result.accepted, result.permanent, result.code)
            for message, result in mailer.send_all(numbered(name) for name in names)
        }
    finally:
        mailer.close()
    assert outcomes == {
        "dropped-once": (True, False, 250),  # sent again on a new connection, then accepted
        "later": (False, False, 451),
        "a": (True, False, 250),
        "unknown": (False, True, 550),
        "b": (True, False, 250),
        "full": (False, False, 452),
        "c": (True, False, 250),
        "gone": (False, True, 554),
        "d": (True, False, 250),
        "closing": (False, False, 421),  # the server hung up: the next one reconnects
        "e": (True, False, 250),
        "closing-after": (False, False, 421),  # hung up with e's commands in flight
        "f": (True, False, 250),
    }
    assert [e.rcpt_tos for e in smtp_server.messages()] == [
        (f"{name}@example.com",) for name in ("dropped-once", "a", "b", "c", "d", "e", "f")
    ]


def test_a_refused_mail_from_fails_that_message_only(smtp_server: SmtpServer) -> None:
    smtp_server.set_mode(refuse(451, at="mail", count=1), refuse(553, at="mail", count=1))
    mailer = SmtpMailer(smtp_settings(smtp_server.url), envelope_from="security@localhost")
    try:
        outcomes = [
            (result.accepted, result.code)
            for _, result in mailer.send_all(numbered(name) for name in ("x", "y", "z"))
        ]
    finally:
        mailer.close()
    assert outcomes == [(False, 451), (False, 553), (True, 250)]
    assert [e.rcpt_tos for e in smtp_server.messages()] == [("z@example.com",)]


def test_a_message_for_several_people_in_a_stream_fails_alone(smtp_server: SmtpServer) -> None:
    several = on_the_wire(two_people_message(To="a@example.com, b@example.com"))
    mailer = SmtpMailer(smtp_settings(smtp_server.url), envelope_from="security@localhost")
    try:
        outcomes = [
            (message.message_id, result.accepted, result.permanent)
            for message, result in mailer.send_all(
                [
                    numbered("x"),
                    dataclasses.replace(several, message_id="<two@localhost>"),
                    numbered("y"),
                ]
            )
        ]
    finally:
        mailer.close()
    assert outcomes == [
        ("<x@localhost>", True, False),
        ("<two@localhost>", False, True),
        ("<y@localhost>", True, False),
    ]
    assert [e.rcpt_tos for e in smtp_server.messages()] == [("x@example.com",), ("y@example.com",)]


def test_stopping_a_stream_early_sends_nothing_more(smtp_server: SmtpServer) -> None:
    mailer = SmtpMailer(smtp_settings(smtp_server.url), envelope_from="security@localhost")
    stream = mailer.send_all(numbered(name) for name in ("x", "y", "z"))
    try:
        message, result = next(stream)  # y's envelope is on the wire behind x's content
        assert (message.recipient, result.accepted) == ("x@example.com", True)
        stream.close()
    finally:
        mailer.close()
    # y had its 354 at most: dropping the connection there leaves it undelivered, and no
    # QUIT was taken for its content.
    assert [e.rcpt_tos for e in smtp_server.messages()] == [("x@example.com",)]


# --- the embedded default: no SMTP, no Redis ---------------------------------------------


def test_worker_burst_without_smtp_writes_one_eml_per_flagged_account(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    flagged = flag_accounts(runtime, tmp_path / "data", 12)
    mail_dir = tmp_path / "mail-folder"
    env = cli_env(db_url, runtime.settings.instance_dir, LEAKGUARD_MAIL_DIR=str(mail_dir))
    result = run_leakguard(env, "worker", "--burst")
    assert result.returncode == 0, result.stderr
    assert "relayed 12 notices: 12 delivered" in result.stderr

    files = sorted(mail_dir.glob("*.eml"))
    assert len(files) == len(flagged)
    assert list(mail_dir.glob("*.part")) == []
    recipients = []
    for path in files:
        message = parse_message(path.read_bytes())
        recipients.append(one_recipient(message))  # one To address, no Cc, Bcc or Resent-*
        assert message.defects == []
        assert str(message["Subject"]).startswith("Security notice")
        assert message.get_content_type() == "multipart/alternative"
        assert [part.get_content_type() for part in message.iter_parts()] == [
            "text/plain",
            "text/html",
        ]
        text, html = text_and_html(message)
        assert text.startswith("Hello")
        assert "<p>Hello,</p>" in html
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


def wait_until(condition: Callable[[], bool], *, seconds: float = 30.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_sent_rows_are_committed_in_groups_never_more_than_49_unrecorded(
    runtime: Runtime, tmp_path: Path
) -> None:
    flag_accounts(runtime, tmp_path, 3 * RECORD_EVERY_MESSAGES + 10)
    ids = claimed_ids(runtime)
    recorder = SentRecorder(runtime)
    try:
        for added, notice_id in enumerate(ids[:-10], start=1):
            recorder.add(notice_id, f"<m{notice_id}@example.com>")
            # The at-most-once window: with the one message in flight at a kill, at most
            # RECORD_EVERY_MESSAGES accepted rows are not on record.
            assert states(runtime)["sent"] >= added - (RECORD_EVERY_MESSAGES - 1)
        recorder.flush()
        assert states(runtime) == {"sent": len(ids) - 10, "sending": 10}
    finally:
        recorder.close()
    message_ids = {row.message_id for row in notice_rows(runtime).values()}
    assert {f"<m{notice_id}@example.com>" for notice_id in ids[:-10]} <= message_ids


def test_a_lone_sent_row_is_committed_after_half_a_second(runtime: Runtime, tmp_path: Path) -> None:
    flag_accounts(runtime, tmp_path, 3)
    ids = claimed_ids(runtime)
    now = [0.0]
    recorder = SentRecorder(runtime, clock=lambda: now[0])
    try:
        recorder.add(ids[0], "<a@example.com>")
        now[0] += RECORD_EVERY_SECONDS - 0.1
        recorder.add(ids[1], "<b@example.com>")
        assert recorder.waiting  # not due: both wait for more company
        now[0] += 0.1  # the first waiting row has waited its half second
        recorder.add(ids[2], "<c@example.com>")
        assert not recorder.waiting  # handed to the committer thread
        assert wait_until(lambda: states(runtime) == {"sent": 3})
    finally:
        recorder.close()


def test_a_stalled_commit_holds_the_sending_at_the_window(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL")
    flag_accounts(runtime, tmp_path, RECORD_EVERY_MESSAGES + 10)
    ids = claimed_ids(runtime)
    recorder = SentRecorder(runtime)
    returned: list[int] = []
    with runtime.db.engine.connect() as blocker:
        # Another transaction holds the rows: the committer's update waits for it.
        blocker.execute(select(Notice.id).where(Notice.id.in_(ids)).with_for_update())

        def add_all() -> None:
            for notice_id in ids:
                recorder.add(notice_id, f"<m{notice_id}@example.com>")
                returned.append(notice_id)

        adder = threading.Thread(target=add_all, daemon=True)
        adder.start()
        assert wait_until(lambda: len(returned) >= RECORD_EVERY_MESSAGES - 1)
        adder.join(timeout=0.5)
        # Half the window is stuck in the commit, half waits: the 50th add cannot return.
        assert len(returned) == RECORD_EVERY_MESSAGES - 1
        assert states(runtime) == {"sending": len(ids)}
        blocker.rollback()
    adder.join(timeout=30)
    assert len(returned) == len(ids)
    recorder.close()
    assert states(runtime) == {"sent": len(ids)}


def test_a_batch_read_in_parts_sends_each_claimed_notice_once(
    runtime: Runtime, tmp_path: Path
) -> None:
    count = FIRST_READ + 2 * READ_PART + 7  # the first part, two later ones, a short last
    flagged = flag_accounts(runtime, tmp_path / "data", count)
    with runtime.db.read_session() as session:
        ids = sorted(session.scalars(select(Notice.id)))
    mail_dir = tmp_path / "mail"
    report = send_notices(runtime, ids, mailer=FolderMailer(mail_dir))
    assert (report.claimed, report.sent) == (count, count)
    assert states(runtime) == {"sent": count}
    recipients = [one_recipient(parse_message(path.read_bytes())) for path in mail_dir.iterdir()]
    assert Counter(recipients) == Counter(flagged.values())
    # A second run of the same batch finds nothing left to claim.
    assert send_notices(runtime, ids, mailer=FolderMailer(mail_dir)).claimed == 0


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

    headers = bearer(make_api_key(runtime, Scope.NOTICES_BOUNCES))
    body = {
        "bounces": [
            {"message_id": bare, "code": 550, "reason": "5.1.1 user jane.doe@example.org unknown"},
            # a quoted local part (new-user trial: it was kept, and shown, in the clear)
            {"message_id": bracketed, "code": 552, "reason": '5.2.2 "jane doe"@example.org full'},
            {"message_id": "<not-ours-1@elsewhere.example>", "code": 550},
        ]
    }
    answer = client.post("/v1/notices/bounces", json=body, headers=headers)
    assert answer.status_code == 200, answer.get_json()
    assert answer.get_json() == {"matched": 2, "unknown": 1}

    rows = notice_rows(runtime)
    assert (rows[first].state, rows[first].reply_code) == ("failed", 550)
    with runtime.db.read_session() as session:  # the provider's quote of the address is masked
        reasons = list(session.scalars(select(Notice.last_error).where(Notice.state == "failed")))
    assert "bounced: 5.1.1 user j***@example.org unknown" in reasons
    assert "bounced: 5.2.2 j***@example.org full" in reasons
    reader = bearer(make_api_key(runtime, Scope.ACCOUNTS_READ))
    shown = client.get(f"/v1/accounts/{second}", headers=reader).get_data(as_text=True)
    assert "j***@example.org full" in shown
    assert "jane doe" not in shown
    assert (rows[second].state, rows[second].reply_code) == ("failed", 552)
    assert rows[first].undeliverable_at is not None
    assert rows[second].undeliverable_at is not None
    assert (rows[third].state, rows[third].undeliverable_at) == ("sent", None)

    before = account_rows(runtime)
    again = client.post("/v1/notices/bounces", json=body, headers=headers)
    assert again.status_code == 200
    assert account_rows(runtime) == before

    # A new address deserves a new chance.
    writer = bearer(make_api_key(runtime, Scope.ACCOUNTS_WRITE))
    changed = client.put(f"/v1/accounts/{first}", json={"email": "new@example.org"}, headers=writer)
    assert changed.status_code == 200, changed.get_json()
    rows = notice_rows(runtime)
    assert rows[first].undeliverable_at is None
    assert rows[second].undeliverable_at is not None


def test_bounces_need_their_scope_and_a_valid_body(runtime: Runtime, client: FlaskClient) -> None:
    other = bearer(make_api_key(runtime, Scope.ACCOUNTS_WRITE))
    body = {"bounces": [{"message_id": "<x@example.org>", "code": 550}]}
    denied = client.post("/v1/notices/bounces", json=body, headers=other)
    assert denied.status_code == 403
    assert denied.mimetype == "application/problem+json"

    headers = bearer(make_api_key(runtime, Scope.NOTICES_BOUNCES))
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


def status(runner: FlaskCliRunner, slug: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(
        output(runner, "notices", "status", "--leak", slug, "--json")
    )
    return payload


@pytest.mark.redis
def test_paused_campaign_waits_in_the_outbox_and_goes_out_on_resume(
    mail_runtime: Runtime,
    make_app: Callable[..., Flask],
    smtp_server: SmtpServer,
    redis_url: str,
    tmp_path: Path,
) -> None:
    paused = flag_accounts(mail_runtime, tmp_path, 6, slug="paused-leak", prefix="p")
    going = flag_accounts(mail_runtime, tmp_path, 3, slug="going-leak", prefix="g")
    app = make_app(mail_runtime.settings)
    runner = app.test_cli_runner()
    connection = Redis.from_url(redis_url)
    try:
        assert relay_notices(mail_runtime, connection) == 9  # both leaks' jobs are queued
        assert status(runner, "paused-leak") == {
            "leak": "paused-leak",
            "paused": False,
            "pending": 0,
            "queued": 6,
            "sending": 0,
            "sent": 0,
            "failed": 0,
            "cancelled": 0,
        }
        assert "paused" in output(runner, "notices", "pause", "--leak", "paused-leak")
        assert "already paused" in output(runner, "notices", "pause", "--leak", "paused-leak")

        # The worker holding the paused leak's rows puts them back; the other leak goes.
        assert deliver(mail_runtime, redis_url) == 0
        assert smtp_server.rcpt_counts() == Counter(e.lower() for e in going.values())
        stopped = status(runner, "paused-leak")
        assert (stopped["paused"], stopped["pending"], stopped["queued"]) == (True, 6, 0)
        assert stopped["sent"] == 0
        # ... and the relay leaves them alone while the campaign is paused.
        assert relay_notices(mail_runtime, connection) == 0
        assert status(runner, "paused-leak")["pending"] == 6

        victim = sorted(paused.values())[0]
        smtp_server.set_mode(refuse(550, recipient=victim))
        assert "resumed" in output(runner, "notices", "resume", "--leak", "paused-leak")
        assert deliver(mail_runtime, redis_url) == 6
        assert status(runner, "paused-leak") == {
            "leak": "paused-leak",
            "paused": False,
            "pending": 0,
            "queued": 0,
            "sending": 0,
            "sent": 5,
            "failed": 1,
            "cancelled": 0,
        }
        assert_each_once_or_failed(mail_runtime, smtp_server, {**paused, **going})

        # A row a worker holds counts as sending.
        with mail_runtime.db.transaction() as session:
            leak_id = session.scalar(select(Leak.id).where(Leak.slug == "going-leak"))
            first = session.scalar(select(Notice.id).where(Notice.leak_id == leak_id).limit(1))
            session.execute(update(Notice).where(Notice.id == first).values(state="sending"))
        going_status = status(runner, "going-leak")
        assert (going_status["sending"], going_status["sent"]) == (1, 2)
    finally:
        connection.close()
