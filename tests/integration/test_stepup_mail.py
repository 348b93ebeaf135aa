"""Emailed step-up codes: one message to the account's one address, on the high queue,
never sent once the challenge expired; on the embedded default and on the real Redis."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from flask import Flask
from redis import Redis
from sqlalchemy import select

from jobs.deliver import relay_notices, send_notices
from jobs.queues import QueueName, get_queue
from service.db import utcnow
from service.models import Notice, NoticeKind, NoticeState
from service.runtime import Runtime
from tests.support.delivery import BurstWorker, runtime_with
from tests.support.factories import ACTOR, make_account
from tests.support.mail import one_recipient, parse_message

CHALLENGE = {"method": "email_code"}


@pytest.fixture
def folder_runtime(runtime: Runtime, tmp_path: Path) -> Runtime:
    """The test runtime with its own mail folder; jobs in this process use it."""
    return runtime_with(runtime, mail_dir=tmp_path / "mail")


def mails(runtime: Runtime) -> list[EmailMessage]:
    folder = runtime.settings.resolved_mail_dir
    return [parse_message(path.read_bytes()) for path in sorted(folder.glob("*.eml"))]


def code_notices(runtime: Runtime) -> list[Notice]:
    with runtime.db.read_session() as session:
        return list(session.scalars(select(Notice).where(Notice.kind == NoticeKind.STEP_UP_CODE)))


def test_embedded_default_mails_the_code_right_after_answering(
    folder_runtime: Runtime, make_app: Callable[..., Flask], auth: dict[str, str]
) -> None:
    make_account(folder_runtime, "mailme", "Mail.Me@example.org")
    response = (
        make_app(folder_runtime.settings)
        .test_client()
        .post("/v1/step-up/challenges", json={"account_id": "mailme", **CHALLENGE}, headers=auth)
    )
    assert response.status_code == 202
    challenge_id = response.get_json()["challenge_id"]
    assert mails(folder_runtime) == []  # the answer goes first: its time tells nothing
    response.close()  # the server has sent the answer
    [message] = mails(folder_runtime)
    assert str(message["To"]) == "Mail.Me@example.org"
    assert one_recipient(message) == "Mail.Me@example.org"
    assert str(message["Subject"]) == "Your one-time security code"
    text = message.get_body(("plain",))
    assert text is not None
    code = folder_runtime.step_up.email_code(challenge_id)
    assert f"    {code}" in text.get_content().splitlines()
    assert "10 minutes" in text.get_content()
    [notice] = code_notices(folder_runtime)
    assert (notice.state, notice.challenge_id) == (NoticeState.SENT, challenge_id)


def test_code_in_the_persons_language(folder_runtime: Runtime) -> None:
    make_account(folder_runtime, "sprache", locale="de-AT")
    with folder_runtime.db.transaction() as session:
        challenge = folder_runtime.step_up.start_email_challenge(
            session, "sprache", actor=ACTOR, now=utcnow()
        )
    assert challenge.notice_id is not None
    send_notices(folder_runtime, [challenge.notice_id])
    [message] = mails(folder_runtime)
    assert str(message["Subject"]) == "Ihr einmaliger Sicherheitscode"


def test_a_code_that_expired_before_delivery_is_not_sent(folder_runtime: Runtime) -> None:
    make_account(folder_runtime, "slow")
    long_ago = utcnow() - timedelta(minutes=11)
    with folder_runtime.db.transaction() as session:
        challenge = folder_runtime.step_up.start_email_challenge(
            session, "slow", actor=ACTOR, now=long_ago
        )
    assert challenge.notice_id is not None
    report = send_notices(folder_runtime, [challenge.notice_id])
    assert report.claimed == 0
    assert mails(folder_runtime) == []
    [notice] = code_notices(folder_runtime)
    assert notice.state == NoticeState.FAILED
    assert notice.last_error == "the code expired before it could be sent"


def test_a_replaced_code_is_not_sent(folder_runtime: Runtime) -> None:
    make_account(folder_runtime, "twice")
    with folder_runtime.db.transaction() as session:
        first = folder_runtime.step_up.start_email_challenge(
            session, "twice", actor=ACTOR, now=utcnow()
        )
        second = folder_runtime.step_up.start_email_challenge(
            session, "twice", actor=ACTOR, now=utcnow()
        )
    assert first.notice_id is not None
    assert second.notice_id is not None
    send_notices(folder_runtime, [first.notice_id, second.notice_id])
    [message] = mails(folder_runtime)
    text = message.get_body(("plain",))
    assert text is not None
    assert folder_runtime.step_up.email_code(second.id) in text.get_content()


@pytest.mark.redis
def test_on_real_redis_the_code_goes_to_the_high_queue_at_once(
    folder_runtime: Runtime, make_app: Callable[..., Flask], redis_url: str, auth: dict[str, str]
) -> None:
    make_account(folder_runtime, "queued")
    response = (
        make_app(folder_runtime.settings, redis_url=redis_url)
        .test_client()
        .post("/v1/step-up/challenges", json={"account_id": "queued", **CHALLENGE}, headers=auth)
    )
    assert response.status_code == 202
    response.close()  # the server has sent the answer: the job is enqueued now
    [notice] = code_notices(folder_runtime)
    assert notice.state == NoticeState.QUEUED
    connection = Redis.from_url(redis_url)
    try:
        high = get_queue(QueueName.HIGH, connection)
        assert high.count == 1
        assert get_queue(QueueName.DEFAULT, connection).count == 0
        # The job's arguments are notice ids: no address, no code.
        [job] = high.get_jobs()
        assert job.args == ([notice.id],)
        BurstWorker([high], connection=connection).work(burst=True, logging_level="WARNING")
    finally:
        connection.close()
    assert len(mails(folder_runtime)) == 1
    assert code_notices(folder_runtime)[0].state == NoticeState.SENT


@pytest.mark.redis
def test_the_relay_puts_codes_on_high_and_warnings_on_default(
    folder_runtime: Runtime, redis_url: str
) -> None:
    make_account(folder_runtime, "relayed")
    with folder_runtime.db.transaction() as session:
        folder_runtime.step_up.start_email_challenge(session, "relayed", actor=ACTOR, now=utcnow())
    connection = Redis.from_url(redis_url)
    try:
        assert relay_notices(folder_runtime, connection) == 1
        assert get_queue(QueueName.HIGH, connection).count == 1
        assert get_queue(QueueName.DEFAULT, connection).count == 0
    finally:
        connection.close()
