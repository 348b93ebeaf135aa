"""The account page's dossier and actions through the test client, CSRF on: what each role
sees and may do, re-authentication where it is asked, one staff audit row per act, and the
very next risk check; on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

from flask.testing import FlaskClient
from sqlalchemy import select, update

from service.db import utcnow
from service.models import Account, AuditEvent, Notice, NoticeState, StaffRole
from service.risk import Decision, Reason
from service.runtime import Runtime
from tests.support.factories import LEAK, enroll_totp, expose, make_account
from tests.support.factories import risk_verdict as risk
from tests.support.staff import Clock, StaffLogin, csrf_token, log_in, make_staff, reauthenticate

# The staff site's own rows around an act: who signed in, enrolled, confirmed a code.
STAFF_SIGN_IN = ("staff.user_created", "staff.enrolled", "staff.login", "staff.reauthenticated")


def staff_actions(runtime: Runtime) -> list[str]:
    with runtime.db.read_session() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.startswith("staff."))
                .where(AuditEvent.action.not_in(STAFF_SIGN_IN))
                .order_by(AuditEvent.id)
            )
        )


def jane(runtime: Runtime) -> int:
    account_id = make_account(runtime, "jane", "jane@example.org")
    expose(runtime, account_id)
    return account_id


def act(client: FlaskClient, account_id: int, path: str, **data: str) -> object:
    page = f"/staff/accounts/{account_id}"
    token = csrf_token(client, page)
    return client.post(f"{page}/{path}", data={"csrf_token": token, **data})


def test_the_dossier_shows_exposures_notices_and_history_masked(
    runtime: Runtime, staff_client: FlaskClient, viewer: StaffLogin, clock: Clock
) -> None:
    account_id = jane(runtime)
    log_in(staff_client, viewer, clock)
    page = staff_client.get(f"/staff/accounts/{account_id}").get_data(as_text=True)
    assert "jane@example.org" not in page
    assert "j***@example.org" in page
    assert "leak_warning" in page
    assert "Step-up history" in page
    assert "Trusted devices" in page
    assert "Email-change requests" in page
    for button in ("Force step-up", "Resolve", "Lock", "Reset TOTP"):
        assert f">{button}<" not in page, button  # a viewer sees no action


def test_resolving_on_the_page_changes_the_next_risk_check_and_is_audited_once(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    account_id = jane(runtime)
    assert risk(runtime, "jane").decision is Decision.STEP_UP
    log_in(staff_client, agent, clock)
    response = act(staff_client, account_id, f"exposures/{LEAK}/resolve", reason="on the phone")
    assert response.status_code == 303
    assert risk(runtime, "jane").decision is Decision.ALLOW
    assert staff_actions(runtime) == ["staff.exposure.resolved"]
    page = staff_client.get(f"/staff/accounts/{account_id}").get_data(as_text=True)
    assert f"exposure to {LEAK} resolved" in page
    again = act(staff_client, account_id, f"exposures/{LEAK}/dismiss", reason="x")
    assert again.status_code == 409
    # Nothing more happened; the refusal is in the trail (a security decision).
    assert staff_actions(runtime) == ["staff.exposure.resolved", "staff.action_refused"]
    empty = act(staff_client, account_id, f"exposures/{LEAK}/dismiss", reason="")
    assert empty.status_code == 400


def test_lock_then_unlock_after_a_fresh_code(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    account_id = jane(runtime)
    log_in(staff_client, agent, clock)
    assert act(staff_client, account_id, "lock", reason="takeover").status_code == 303
    assert risk(runtime, "jane").reasons == (Reason.LOCKED,)
    clock.advance(timedelta(minutes=10))
    stale = act(staff_client, account_id, "unlock")
    assert stale.headers["Location"].startswith("/staff/reauth")
    assert risk(runtime, "jane").reasons == (Reason.LOCKED,)
    reauthenticate(staff_client, agent, clock)
    assert act(staff_client, account_id, "unlock").status_code == 303
    assert risk(runtime, "jane").decision is Decision.STEP_UP
    assert staff_actions(runtime) == ["staff.step_up.locked_by_support", "staff.step_up.unlocked"]


def test_force_step_up_revoke_and_resend(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    account_id = jane(runtime)
    log_in(staff_client, agent, clock)
    assert act(staff_client, account_id, "force-step-up", reason="").status_code == 303
    assert act(staff_client, account_id, "revoke-devices").status_code == 303
    assert act(staff_client, account_id, f"warnings/{LEAK}/resend").status_code == 409
    with runtime.db.transaction() as session:
        session.execute(update(Notice).values(state=NoticeState.FAILED, failed_at=utcnow()))
    assert act(staff_client, account_id, f"warnings/{LEAK}/resend").status_code == 303
    with runtime.db.read_session() as session:
        # The embedded default sends it in the request (into the mail folder).
        assert session.scalar(select(Notice.state)) is NoticeState.SENT
    assert staff_actions(runtime) == [
        "staff.step_up.forced_by_support",
        "staff.step_up.devices_revoked",
        "staff.action_refused",  # the first resend: nothing failed to resend
        "staff.campaign.retried",
    ]


def test_force_step_up_on_the_page_holds_an_account_no_leak_names_until_cleared(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    account_id = make_account(runtime, "jane", "jane@example.org")
    assert risk(runtime, "jane").decision is Decision.ALLOW
    log_in(staff_client, agent, clock)
    page = staff_client.get(f"/staff/accounts/{account_id}").get_data(as_text=True)
    assert ">Clear hold<" not in page
    forced = act(staff_client, account_id, "force-step-up", reason="SUP-4", hours="24")
    assert forced.status_code == 303
    assert risk(runtime, "jane").reasons == (Reason.SUPPORT_HOLD,)
    page = staff_client.get(f"/staff/accounts/{account_id}").get_data(as_text=True)
    assert "every sign-in steps up</span>" in page
    assert "(SUP-4)" in page
    assert "UTC at the latest" in page
    assert ">Clear hold<" in page
    assert act(staff_client, account_id, "clear-hold", reason="").status_code == 400
    assert act(staff_client, account_id, "force-step-up", hours="0").status_code == 400
    too_long = act(staff_client, account_id, "force-step-up", hours="9000")
    assert too_long.status_code == 422
    assert "a hold lasts from 1 hour to 365 days" in too_long.get_data(as_text=True)
    assert act(staff_client, account_id, "clear-hold", reason="verified").status_code == 303
    assert risk(runtime, "jane").decision is Decision.ALLOW
    page = staff_client.get(f"/staff/accounts/{account_id}").get_data(as_text=True)
    assert "(verified)" in page
    assert ">Clear hold<" not in page
    assert staff_actions(runtime) == [
        "staff.step_up.forced_by_support",
        "staff.action_refused",  # the hold of 9000 hours, refused by the domain (422)
        "staff.step_up.hold_cleared",
    ]


def test_a_viewer_can_neither_force_nor_clear_a_hold(
    runtime: Runtime, staff_client: FlaskClient, viewer: StaffLogin, clock: Clock
) -> None:
    account_id = make_account(runtime, "jane", "jane@example.org")
    log_in(staff_client, viewer, clock)
    assert act(staff_client, account_id, "force-step-up").status_code == 403
    assert act(staff_client, account_id, "clear-hold", reason="x").status_code == 403
    assert risk(runtime, "jane").decision is Decision.ALLOW
    # Nothing happened; both refusals are in the trail (security decisions).
    assert staff_actions(runtime) == ["staff.access_refused"] * 2


def test_reset_totp_is_for_admins_after_a_fresh_code(
    runtime: Runtime, staff_client: FlaskClient, agent: StaffLogin, clock: Clock
) -> None:
    account_id = make_account(runtime, "jane", "jane@example.org")
    enroll_totp(runtime, "jane", now=utcnow())
    expose(runtime, account_id)
    log_in(staff_client, agent, clock)
    assert act(staff_client, account_id, "reset-totp", reason="lost").status_code == 403
    admin = make_staff(runtime, "admin@staff.example", StaffRole.ADMIN, now=clock.now())
    log_in(staff_client, admin, clock)
    reauthenticate(staff_client, admin, clock)
    assert act(staff_client, account_id, "reset-totp", reason="lost phone").status_code == 303
    assert "totp" not in [m.value for m in risk(runtime, "jane").methods]
    with runtime.db.read_session() as session:
        epoch = session.scalar(select(Account.security_epoch))
    assert epoch is not None
    assert epoch >= 2  # enrolment, then the reset
