"""The staff site's actions on an account: each is the CLI's domain function, says what
it changed, and the very next risk check (the real ``assess``) reflects it; on SQLite and
PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update

from service.db import utcnow
from service.email_change import assisted
from service.email_change.context import ChangeTools
from service.errors import NotFound, ValidationFailed
from service.leaks.lifecycle import NoOpenExposure
from service.models import (
    Account,
    AuditEvent,
    ChangeState,
    EmailChangeRequest,
    Notice,
    NoticeState,
    TrustedDevice,
)
from service.risk import Decision, Reason, Verdict
from service.runtime import Runtime
from service.staff import actions
from service.staff.actions import NotResendable
from service.staff.dossier import account_dossier
from service.stepup.hold import on_hold
from service.stepup.services import Method, Passed
from tests.support.factories import LEAK, enroll_totp, expose, make_account
from tests.support.factories import risk_verdict as risk

STAFF = "staff:agent@example.com"


def exposed(runtime: Runtime, external_id: str = "jane") -> str:
    account_id = make_account(runtime, external_id, f"{external_id}@example.org")
    expose(runtime, account_id)
    return external_id


def pass_step_up_on(runtime: Runtime, external_id: str, device_id: str) -> None:
    now = utcnow()
    with runtime.db.transaction() as session:
        challenge = runtime.step_up.start_email_challenge(
            session, external_id, actor="login", now=now
        )
    with runtime.db.transaction() as session:
        outcome = runtime.step_up.verify(
            session,
            external_id,
            Method.EMAIL_CODE,
            runtime.step_up.email_code(challenge.id),
            challenge_id=challenge.id,
            device_id=device_id,
            actor="login",
            now=now,
        )
    assert isinstance(outcome, Passed)


def audited(runtime: Runtime, action: str) -> list[AuditEvent]:
    with runtime.db.read_session() as session:
        return list(session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


def test_resolving_an_exposure_lets_the_next_sign_in_through(runtime: Runtime) -> None:
    jane = exposed(runtime)
    assert risk(runtime, jane).decision is Decision.STEP_UP
    with runtime.db.transaction() as session:
        outcome = actions.resolve_exposure(
            session, jane, LEAK, reason="helped on the phone", actor=STAFF, now=utcnow()
        )
    assert outcome.changed
    assert outcome.message == f"exposure to {LEAK} resolved"
    assert risk(runtime, jane).decision is Decision.ALLOW
    [event] = audited(runtime, "exposure.resolved")
    assert event.actor == STAFF
    with runtime.db.transaction() as session, pytest.raises(NoOpenExposure):
        actions.resolve_exposure(session, jane, LEAK, reason="again", actor=STAFF, now=utcnow())


def test_dismissing_an_exposure_cancels_its_warning_and_ends_the_step_up(
    runtime: Runtime,
) -> None:
    jane = exposed(runtime)
    with runtime.db.transaction() as session:
        actions.dismiss_exposure(
            session, jane, LEAK, reason="not our customer", actor=STAFF, now=utcnow()
        )
    assert risk(runtime, jane).decision is Decision.ALLOW
    with runtime.db.read_session() as session:
        assert session.scalars(select(Notice.state)).all() == [NoticeState.CANCELLED]
    with runtime.db.transaction() as session, pytest.raises(ValidationFailed):
        actions.dismiss_exposure(session, jane, LEAK, reason="  ", actor=STAFF, now=utcnow())


def test_forcing_a_step_up_ends_the_trust_of_a_device(runtime: Runtime) -> None:
    jane = exposed(runtime)
    pass_step_up_on(runtime, jane, "laptop")
    assert risk(runtime, jane, device_id="laptop").reasons == (Reason.TRUSTED_DEVICE,)
    with runtime.db.transaction() as session:
        outcome = actions.force_step_up(
            session, jane, reason="phishing report", actor=STAFF, now=utcnow()
        )
    assert outcome.detail == {"devices_revoked": 1, "hold_until": None}
    verdict = risk(runtime, jane, device_id="laptop")
    assert verdict.decision is Decision.STEP_UP
    assert verdict.reasons == (Reason.EMAIL_EXPOSED, Reason.SUPPORT_HOLD)
    [event] = audited(runtime, "step_up.forced_by_support")
    assert event.detail == {
        "email": "j***@example.org",
        "devices": 1,
        "hold_until": None,
        "reason": "phishing report",
    }


def test_forcing_a_step_up_holds_an_account_no_leak_names_until_it_passes_one(
    runtime: Runtime,
) -> None:
    """Issue 17 item 3: the staff action changes the very next risk check, also for an
    account that no leak names (voiding devices and tokens alone left it ``allow``)."""
    make_account(runtime, "jane", "jane@example.org")
    pass_step_up_on(runtime, "jane", "laptop")
    assert risk(runtime, "jane", device_id="laptop") == Verdict(Decision.ALLOW, ())
    with runtime.db.transaction() as session:
        outcome = actions.force_step_up(
            session, "jane", reason="SUP-7 takeover report", actor=STAFF, now=utcnow()
        )
        # The same transaction's next read already sees the hold.
        assert session.scalar(select(on_hold(Account.id, utcnow()))) is True
    assert outcome.message.startswith("held: every sign-in steps up")
    for device in ("laptop", None):
        assert risk(runtime, "jane", device_id=device) == Verdict(
            Decision.STEP_UP, (Reason.SUPPORT_HOLD,), (), (Method.EMAIL_CODE,)
        )
    with runtime.db.read_session() as session:
        dossier = account_dossier(session, runtime.step_up, "jane", now=utcnow())
    assert dossier.support_hold_standing
    assert dossier.support_hold is not None
    assert dossier.support_hold.placed_by == STAFF
    assert dossier.support_hold.reason == "SUP-7 takeover report"
    # The person proves it is them: the hold ends with the pass, in its transaction.
    pass_step_up_on(runtime, "jane", "phone")
    assert risk(runtime, "jane") == Verdict(Decision.ALLOW, ())
    [ended] = audited(runtime, "step_up.hold_ended")
    assert ended.actor == "login"
    with runtime.db.read_session() as session:
        dossier = account_dossier(session, runtime.step_up, "jane", now=utcnow())
    assert not dossier.support_hold_standing
    assert dossier.support_hold is not None
    assert dossier.support_hold.clear_reason == "passed a step-up (email_code)"
    history = [line.action for line in dossier.history]
    assert history[:2] == ["step_up.hold_ended", "step_up.passed"]
    assert "step_up.forced_by_support" in history


def test_a_hold_with_an_end_runs_out_by_itself(runtime: Runtime) -> None:
    make_account(runtime, "jane", "jane@example.org")
    now = utcnow()
    with runtime.db.transaction() as session:
        outcome = actions.force_step_up(
            session, "jane", reason=None, actor=STAFF, now=now, expires_in=timedelta(hours=2)
        )
    assert outcome.detail["hold_until"] == (now + timedelta(hours=2)).isoformat()
    before = risk(runtime, "jane", now=now + timedelta(hours=2) - timedelta(seconds=1))
    assert before.reasons == (Reason.SUPPORT_HOLD,)
    assert risk(runtime, "jane", now=now + timedelta(hours=2)) == Verdict(Decision.ALLOW, ())
    for wrong in (timedelta(minutes=59), timedelta(days=366)):
        with runtime.db.transaction() as session, pytest.raises(ValidationFailed):
            actions.force_step_up(
                session, "jane", reason=None, actor=STAFF, now=now, expires_in=wrong
            )


def test_support_clears_a_hold_and_a_second_clear_changes_nothing(runtime: Runtime) -> None:
    jane = exposed(runtime)
    with runtime.db.transaction() as session:
        actions.force_step_up(session, jane, reason=None, actor=STAFF, now=utcnow())
    with runtime.db.transaction() as session:
        cleared = actions.clear_support_hold(
            session, jane, reason="called back, verified", actor=STAFF, now=utcnow()
        )
    assert (cleared.changed, cleared.message) == (True, "hold cleared")
    # The leak still asks for its step-up; the hold no longer does.
    assert risk(runtime, jane).reasons == (Reason.EMAIL_EXPOSED,)
    with runtime.db.transaction() as session:
        again = actions.clear_support_hold(session, jane, reason="again", actor=STAFF, now=utcnow())
    assert (again.changed, again.message) == (False, "no hold to clear")
    assert [e.detail for e in audited(runtime, "step_up.hold_cleared")] == [
        {"email": "j***@example.org", "reason": "called back, verified"}
    ]
    assert len(audited(runtime, "step_up.hold_clear_noop")) == 1
    with runtime.db.transaction() as session, pytest.raises(ValidationFailed):
        actions.clear_support_hold(session, jane, reason="  ", actor=STAFF, now=utcnow())
    with runtime.db.transaction() as session, pytest.raises(NotFound):
        actions.clear_support_hold(session, "nobody", reason="x", actor=STAFF, now=utcnow())


def test_revoking_devices_ends_their_trust(runtime: Runtime) -> None:
    jane = exposed(runtime)
    pass_step_up_on(runtime, jane, "laptop")
    pass_step_up_on(runtime, jane, "phone")
    with runtime.db.transaction() as session:
        outcome = actions.revoke_devices(session, jane, reason=None, actor=STAFF, now=utcnow())
    assert (outcome.changed, outcome.message) == (True, "2 trusted devices revoked")
    assert risk(runtime, jane, device_id="phone").decision is Decision.STEP_UP
    with runtime.db.read_session() as session:
        assert session.scalars(select(TrustedDevice)).all() == []
    with runtime.db.transaction() as session:
        again = actions.revoke_devices(session, jane, reason=None, actor=STAFF, now=utcnow())
    assert again.changed is False


def test_lock_denies_the_next_sign_in_and_unlock_restores_the_step_up(runtime: Runtime) -> None:
    jane = exposed(runtime)
    with runtime.db.transaction() as session:
        locked = actions.lock_account(
            session, runtime.step_up, jane, reason="takeover", actor=STAFF, now=utcnow()
        )
    assert locked.changed
    assert risk(runtime, jane) == Verdict(
        Decision.DENY, (Reason.LOCKED,), risk(runtime, jane).exposures
    )
    with runtime.db.read_session() as session:
        assert account_dossier(session, runtime.step_up, jane, now=utcnow()).lock.blocked
    with runtime.db.transaction() as session:
        again = actions.lock_account(
            session, runtime.step_up, jane, reason=None, actor=STAFF, now=utcnow()
        )
    assert again.changed is False
    with runtime.db.transaction() as session:
        unlocked = actions.unlock_account(session, runtime.step_up, jane, actor=STAFF, now=utcnow())
    assert (unlocked.changed, unlocked.message) == (True, "unlocked")
    assert risk(runtime, jane).decision is Decision.STEP_UP


def test_a_lock_voids_earlier_assurance_tokens(runtime: Runtime) -> None:
    jane = exposed(runtime)
    with runtime.db.read_session() as session:
        before = session.scalar(select(Account.security_epoch).where(Account.external_id == jane))
    with runtime.db.transaction() as session:
        actions.lock_account(session, runtime.step_up, jane, reason=None, actor=STAFF, now=utcnow())
    with runtime.db.read_session() as session:
        after = session.scalar(select(Account.security_epoch).where(Account.external_id == jane))
    assert after == (before or 0) + 1


def test_resetting_totp_takes_it_off_the_methods_the_risk_check_offers(
    runtime: Runtime,
) -> None:
    make_account(runtime, "jane", "jane@example.org")
    enroll_totp(runtime, "jane", now=utcnow())
    with runtime.db.read_session() as session:
        account_id = session.scalar(select(Account.id).where(Account.external_id == "jane"))
    assert account_id is not None
    expose(runtime, account_id)
    assert Method.TOTP in risk(runtime, "jane").methods
    with runtime.db.transaction() as session:
        outcome = actions.reset_totp(
            session, "jane", reason="lost phone, ticket 7", actor=STAFF, now=utcnow()
        )
    assert (outcome.changed, outcome.message) == (True, "authenticator removed")
    assert risk(runtime, "jane").methods == (Method.EMAIL_CODE,)
    with runtime.db.transaction() as session:
        again = actions.reset_totp(session, "jane", reason=None, actor=STAFF, now=utcnow())
    assert again.changed is False
    with runtime.db.transaction() as session, pytest.raises(NotFound):
        actions.reset_totp(session, "nobody", reason=None, actor=STAFF, now=utcnow())


def test_resending_puts_a_failed_warning_back_and_refuses_any_other(runtime: Runtime) -> None:
    jane = exposed(runtime)
    with runtime.db.transaction() as session, pytest.raises(NotResendable, match="pending"):
        actions.resend_warning(session, jane, LEAK, actor=STAFF, now=utcnow())
    with runtime.db.transaction() as session:
        session.execute(
            update(Notice).values(
                state=NoticeState.FAILED, failed_at=utcnow(), last_error="550 no such user"
            )
        )
    with runtime.db.transaction() as session:
        outcome = actions.resend_warning(session, jane, LEAK, actor=STAFF, now=utcnow())
    assert outcome.changed
    assert len(outcome.notice_ids) == 1
    with runtime.db.read_session() as session:
        assert session.scalars(select(Notice.state)).all() == [NoticeState.PENDING]
    [event] = audited(runtime, "campaign.retried")
    assert event.actor == STAFF
    assert risk(runtime, jane).decision is Decision.STEP_UP  # a resend changes no risk


def test_approve_and_deny_an_assisted_email_change(runtime: Runtime) -> None:
    jane = exposed(runtime)
    make_account(runtime, "joe", "joe@example.org")
    tools = ChangeTools.of(runtime)
    with runtime.db.transaction() as session:
        first = assisted.request_assisted(
            session, tools, jane, "jane@new.example", ticket="SUP-1", actor=STAFF, now=utcnow()
        )
        second = assisted.request_assisted(
            session, tools, "joe", "joe@new.example", ticket="SUP-2", actor=STAFF, now=utcnow()
        )
    for filer in ("agent@example.com", STAFF):  # bare, or as the face names its actors
        with runtime.db.transaction() as session, pytest.raises(ValidationFailed):
            actions.approve_email_change(
                session, tools, first.request_id, by=filer, reason="x", now=utcnow()
            )
    with runtime.db.transaction() as session:
        approved = actions.approve_email_change(
            session, tools, first.request_id, by="admin@example.com", reason="ok", now=utcnow()
        )
        denied = actions.deny_email_change(
            session, second.request_id, by="admin@example.com", reason="no id", now=utcnow()
        )
    assert approved.external_id == jane
    assert len(approved.notice_ids) == 2
    assert approved.detail == {"request": first.request_id, "priority": "high"}
    assert denied.external_id == "joe"
    with runtime.db.read_session() as session:
        rows = session.execute(select(EmailChangeRequest.id, EmailChangeRequest.state))
        states = {row.id: row.state for row in rows}
    assert states == {
        first.request_id: ChangeState.AWAITING_CONFIRMATION,
        second.request_id: ChangeState.DENIED,
    }
