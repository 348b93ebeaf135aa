"""An email change of an account with an open exposure goes on the high queue, ahead of
any campaign; a normal one waits its turn on the default queue (real Redis, both
backends)."""

from __future__ import annotations

from pathlib import Path

from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from sqlalchemy import update

from jobs.deliver import relay_notices
from service.db import utcnow
from service.models import Notice, NoticeState
from service.notices.outbox import due_notices
from service.runtime import Runtime
from tests.support.delivery import runtime_with
from tests.support.email_change import assurance_token, change_notices
from tests.support.factories import expose, flag_accounts, make_account

CAMPAIGN = 30


def ask(runtime: Runtime, client: FlaskClient, auth: dict[str, str], external_id: str) -> None:
    response = client.post(
        f"/v1/accounts/{external_id}/email-change",
        json={
            "new_email": f"{external_id}.new@example.net",
            "assurance_token": assurance_token(runtime, external_id),
        },
        headers=auth,
    )
    assert response.status_code == 202


def jobs_notices(queue: Queue) -> list[int]:
    return [notice_id for job in queue.get_jobs() for notice_id in job.args[0]]


def test_a_high_priority_change_goes_ahead_of_the_campaign(
    runtime: Runtime,
    make_app,
    auth: dict[str, str],
    redis_url: str,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    runtime = runtime_with(runtime, redis_url=redis_url)
    client = make_app(runtime.settings).test_client()
    flag_accounts(runtime, tmp_path, CAMPAIGN)  # a leak's warnings wait in the outbox
    exposed = make_account(runtime, "exposed", "exposed@example.org")
    expose(runtime, exposed)
    make_account(runtime, "calm", "calm@example.org")
    connection = Redis.from_url(redis_url)
    try:
        ask(runtime, client, auth, "exposed")
        ask(runtime, client, auth, "calm")
        high_ids = {n.id for n in change_notices(runtime) if n.account_id == exposed}
        calm_ids = {n.id for n in change_notices(runtime)} - high_ids
        # The answer queued them at once (send_now); put them back to test the relay too.
        for queue_name in ("high", "default"):
            Queue(queue_name, connection=connection).empty()
        with runtime.db.transaction() as session:
            session.execute(
                update(Notice)
                .where(Notice.id.in_(high_ids | calm_ids))
                .values(state=NoticeState.PENDING, queued_at=None)
            )
            due = due_notices(session, limit=5, now=utcnow())
        # Newest rows, still first: the relay takes them before any warning.
        assert {notice_id for notice_id, _, _ in due[:2]} == high_ids
        assert all(high for _, _, high in due[:2])
        # The campaign, the exposed account's own warning, the four email-change messages.
        assert relay_notices(runtime, connection) == CAMPAIGN + 1 + 4
        high = jobs_notices(Queue("high", connection=connection))
        default = jobs_notices(Queue("default", connection=connection))
        assert set(high) == high_ids
        assert calm_ids <= set(default)
        assert len(default) == CAMPAIGN + 1 + 2
    finally:
        connection.close()
