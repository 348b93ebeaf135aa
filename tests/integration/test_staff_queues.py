"""The staff site's queues: assisted email changes by priority, failed warnings by leak,
bulk verdicts that count before they act; on SQLite and PostgreSQL."""

from __future__ import annotations

from contextlib import nullcontext
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from service.db import utcnow
from service.email_change import assisted
from service.email_change.context import ChangeTools
from service.email_change.errors import AssistedRequestOpen
from service.errors import NotFound, ValidationFailed
from service.models import (
    Account,
    AuditEvent,
    EmailChangeRequest,
    Exposure,
    ExposureState,
    Notice,
    NoticeState,
)
from service.risk import Decision, assess
from service.runtime import Runtime
from service.staff.queues import (
    CountChanged,
    ExposureFilter,
    bulk_end_exposures,
    count_exposures,
    email_change_queue,
    failed_notices,
)
from tests.support.factories import LEAK, expose, make_account

STAFF = "staff:agent@example.com"


def test_the_email_change_queue_puts_exposed_accounts_first_then_oldest(
    runtime: Runtime,
) -> None:
    tools = ChangeTools.of(runtime)
    start = utcnow() - timedelta(hours=3)
    for hours, name in enumerate(("oldest", "middle", "exposed")):
        account_id = make_account(runtime, name, f"{name}@example.org")
        if name == "exposed":
            expose(runtime, account_id)
        with runtime.db.transaction() as session:
            assisted.request_assisted(
                session,
                tools,
                name,
                f"{name}@new.example",
                ticket=f"SUP-{hours}",
                actor=STAFF,
                now=start + timedelta(hours=hours),
            )
    # One open request per account: a second one is refused, or replaces the first when
    # the operator cancels it explicitly.
    for cancel_open in (False, True):
        with (
            runtime.db.transaction() as session,
            pytest.raises(AssistedRequestOpen) if not cancel_open else nullcontext(),
        ):
            assisted.request_assisted(
                session,
                tools,
                "middle",
                "middle2@new.example",
                ticket="SUP-9",
                cancel_open=cancel_open,
                actor=STAFF,
                now=start + timedelta(hours=2, minutes=30),
            )
    with runtime.db.read_session() as session:
        queue = email_change_queue(session)
        open_per_account = session.execute(
            select(EmailChangeRequest.account_id, func.count())
            .where(EmailChangeRequest.state == "awaiting_review")
            .group_by(EmailChangeRequest.account_id)
        ).all()
    assert [(q.external_id, q.view.ticket, q.open_exposure) for q in queue] == [
        ("exposed", "SUP-2", True),
        ("oldest", "SUP-0", False),
        ("middle", "SUP-9", False),
    ]
    assert all(count == 1 for _, count in open_per_account)
    assert queue[0].view.new_email == "e***@new.example"


def test_failed_warnings_are_listed_by_leak_with_masked_addresses(runtime: Runtime) -> None:
    for name, slug in (("ann", LEAK), ("bob", LEAK), ("cid", "other-leak")):
        expose(runtime, make_account(runtime, name, f"{name}@example.org"), slug=slug)
    with runtime.db.transaction() as session:
        ann = session.scalar(select(Account.id).where(Account.external_id == "ann"))
        session.execute(
            update(Notice)
            .where(Notice.account_id == ann)
            .values(
                state=NoticeState.FAILED,
                failed_at=utcnow(),
                last_error="550 ann@example.org unknown",
            )
        )
    with runtime.db.read_session() as session:
        every = failed_notices(session)
        one = failed_notices(session, slug="other-leak")
        with pytest.raises(NotFound):
            failed_notices(session, slug="no-such-leak")
    [group] = every
    assert group.leak == LEAK
    assert group.retracted is False
    [notice] = group.notices
    assert notice.address == "a***@example.org"
    assert "ann@example.org" not in notice.reason
    assert one == []


def open_exposures(runtime: Runtime) -> int:
    with runtime.db.read_session() as session:
        return int(
            session.scalar(select(func.count()).where(Exposure.state == ExposureState.OPEN)) or 0
        )


def test_a_bulk_dismissal_counts_first_then_acts_on_exactly_that_set(
    runtime: Runtime,
) -> None:
    for n in range(3):
        expose(runtime, make_account(runtime, f"a{n}", f"a{n}@example.org"))
    expose(runtime, make_account(runtime, "elsewhere", "e@example.org"), slug="other-leak")
    wanted = ExposureFilter(LEAK)
    with runtime.db.transaction() as session:
        dry = bulk_end_exposures(
            session, wanted, action="dismiss", reason="wrong file", actor=STAFF, now=utcnow()
        )
    assert (dry.dry_run, dry.matched, dry.ended) == (True, 3, 0)
    assert open_exposures(runtime) == 4
    with runtime.db.read_session() as session:
        assert count_exposures(session, wanted) == 3
    with runtime.db.transaction() as session, pytest.raises(CountChanged, match="3 open"):
        bulk_end_exposures(
            session,
            wanted,
            action="dismiss",
            reason="wrong file",
            actor=STAFF,
            now=utcnow(),
            dry_run=False,
            confirmed_count=2,
        )
    with runtime.db.transaction() as session:
        done = bulk_end_exposures(
            session,
            wanted,
            action="dismiss",
            reason="wrong file",
            actor=STAFF,
            now=utcnow(),
            dry_run=False,
            confirmed_count=3,
        )
    assert (done.ended, done.left) == (3, 0)
    assert open_exposures(runtime) == 1
    verdict = assess(
        runtime.db,
        runtime.step_up,
        "a0",
        password=None,
        assurance_token=None,
        actor="login",
        context=None,
        now=utcnow(),
    )
    assert verdict.decision is Decision.ALLOW
    with runtime.db.read_session() as session:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "exposure.dismissed")
        ).all()
        cancelled = session.scalar(
            select(func.count()).where(Notice.state == NoticeState.CANCELLED)
        )
    assert len(rows) == 3
    assert {row.actor for row in rows} == {STAFF}
    assert cancelled == 3
    with runtime.db.transaction() as session, pytest.raises(ValidationFailed):
        bulk_end_exposures(session, wanted, action="dismiss", reason="", actor=STAFF, now=utcnow())
