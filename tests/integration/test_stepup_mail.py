"""Emailed step-up codes: one message to the account's one address, on the high queue,
never sent once the challenge expired; on the embedded default and on the real Redis."""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import getaddresses
from pathlib import Path
from typing import cast

import pytest
from flask import Flask
from redis import Redis
from rq import SimpleWorker
from sqlalchemy import select

from jobs.context import use_runtime
from jobs.deliver import relay_notices, send_notices
from jobs.queues import QueueName, get_queue
from service.accounts import AccountInput, upsert_account
from service.app import create_app
from service.db import utcnow
from service.models import Notice, NoticeKind, NoticeState
from service.runtime import Runtime
from tests.stepup_fixtures import ACTOR, add_account

CHALLENGE = {"method": "email_code"}


class BurstWorker(SimpleWorker):
    def subscribe(self) -> None:  # no command channel: its thread takes a second to stop
        return None


@pytest.fixture(name="mail_runtime")
def mail_runtime_fixture(runtime: Runtime, tmp_path: Path) -> Runtime:
    """The test runtime with its own mail folder; jobs in this process use it."""
    settings = runtime.settings.model_copy(update={"mail_dir": tmp_path / "mail"})
    value = dataclasses.replace(runtime, settings=settings)
    use_runtime(value)
    return value


def mails(runtime: Runtime) -> list[EmailMessage]:
    folder = runtime.settings.resolved_mail_dir
    return [
        cast(EmailMessage, message_from_bytes(path.read_bytes(), policy=policy.default))
        for path in sorted(folder.glob("*.eml"))
    ]


def code_notices(runtime: Runtime) -> list[Notice]:
    with runtime.db.read_session() as session:
        return list(session.scalars(select(Notice).where(Notice.kind == NoticeKind.STEP_UP_CODE)))


def test_embedded_default_mails_the_code_before_answering(
    mail_runtime: Runtime, auth: dict[str, str]
) -> None:
    add_account(mail_runtime, "mailme", "Mail.Me@example.org")
    app = create_app(mail_runtime.settings)
    try:
        response = app.test_client().post(
            "/v1/step-up/challenges", json={"account_id": "mailme", **CHALLENGE}, headers=auth
        )
    finally:
        app.extensions["leakguard"].db.dispose()
    assert response.status_code == 202
    challenge_id = response.get_json()["challenge_id"]
    [message] = mails(mail_runtime)
    assert getaddresses(message.get_all("To") or []) == [("", "Mail.Me@example.org")]
    assert all(message.get_all(h) is None for h in ("Cc", "Bcc"))
    assert str(message["Subject"]) == "Your verification code"
    text = message.get_body(("plain",))
    assert text is not None
    code = mail_runtime.step_up.email_code(challenge_id)
    assert f"    {code}" in text.get_content().splitlines()
    assert "10 minutes" in text.get_content()
    [notice] = code_notices(mail_runtime)
    assert (notice.state, notice.challenge_id) == (NoticeState.SENT, challenge_id)


def test_code_in_the_persons_language(mail_runtime: Runtime) -> None:
    with mail_runtime.db.transaction() as session:
        upsert_account(
            session,
            AccountInput("sprache", "sprache@example.org", locale="de-AT"),
            keys=mail_runtime.keys,
            now=utcnow(),
        )
        challenge = mail_runtime.step_up.start_email_challenge(
            session, "sprache", actor=ACTOR, now=utcnow()
        )
    assert challenge.notice_id is not None
    send_notices(mail_runtime, [challenge.notice_id])
    [message] = mails(mail_runtime)
    assert str(message["Subject"]) == "Ihr Bestätigungscode"


def test_a_code_that_expired_before_delivery_is_not_sent(mail_runtime: Runtime) -> None:
    add_account(mail_runtime, "slow")
    long_ago = utcnow() - timedelta(minutes=11)
    with mail_runtime.db.transaction() as session:
        challenge = mail_runtime.step_up.start_email_challenge(
            session, "slow", actor=ACTOR, now=long_ago
        )
    assert challenge.notice_id is not None
    report = send_notices(mail_runtime, [challenge.notice_id])
    assert report.claimed == 0
    assert mails(mail_runtime) == []
    [notice] = code_notices(mail_runtime)
    assert notice.state == NoticeState.FAILED
    assert notice.last_error == "the code expired before it could be sent"


def test_a_replaced_code_is_not_sent(mail_runtime: Runtime) -> None:
    add_account(mail_runtime, "twice")
    with mail_runtime.db.transaction() as session:
        first = mail_runtime.step_up.start_email_challenge(
            session, "twice", actor=ACTOR, now=utcnow()
        )
        second = mail_runtime.step_up.start_email_challenge(
            session, "twice", actor=ACTOR, now=utcnow()
        )
    assert first.notice_id is not None
    assert second.notice_id is not None
    send_notices(mail_runtime, [first.notice_id, second.notice_id])
    [message] = mails(mail_runtime)
    text = message.get_body(("plain",))
    assert text is not None
    assert mail_runtime.step_up.email_code(second.id) in text.get_content()


@pytest.mark.redis
def test_on_real_redis_the_code_goes_to_the_high_queue_at_once(
    mail_runtime: Runtime, redis_url: str, auth: dict[str, str]
) -> None:
    add_account(mail_runtime, "queued")
    settings = mail_runtime.settings.model_copy(update={"redis_url": redis_url})
    app: Flask = create_app(settings)
    try:
        response = app.test_client().post(
            "/v1/step-up/challenges", json={"account_id": "queued", **CHALLENGE}, headers=auth
        )
    finally:
        app.extensions["leakguard"].db.dispose()
    assert response.status_code == 202
    [notice] = code_notices(mail_runtime)
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
    assert len(mails(mail_runtime)) == 1
    assert code_notices(mail_runtime)[0].state == NoticeState.SENT


@pytest.mark.redis
def test_the_relay_puts_codes_on_high_and_warnings_on_default(
    mail_runtime: Runtime, redis_url: str
) -> None:
    add_account(mail_runtime, "relayed")
    with mail_runtime.db.transaction() as session:
        mail_runtime.step_up.start_email_challenge(session, "relayed", actor=ACTOR, now=utcnow())
    connection = Redis.from_url(redis_url)
    try:
        assert relay_notices(mail_runtime, connection) == 1
        assert get_queue(QueueName.HIGH, connection).count == 1
        assert get_queue(QueueName.DEFAULT, connection).count == 0
    finally:
        connection.close()
