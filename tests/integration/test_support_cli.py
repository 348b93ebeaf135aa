"""`leakguard accounts lock|reset-totp|revoke-devices|force-step-up|clear-hold`: support's step-up
overrides from the command line, the same domain functions as the staff site's buttons;
each audited as the operator and seen by the very next risk check; on SQLite and
PostgreSQL."""

from __future__ import annotations

from flask.testing import FlaskCliRunner
from sqlalchemy import select

from service.db import utcnow
from service.models import AuditEvent
from service.risk import Decision, Reason
from service.runtime import Runtime
from tests.support.cli import invoke, one_error_line, output
from tests.support.factories import enroll_totp, expose, make_account
from tests.support.factories import risk_verdict as risk


def actions(runtime: Runtime) -> list[str]:
    with runtime.db.read_session() as session:
        return list(
            session.scalars(
                select(AuditEvent.action)
                .where(AuditEvent.action.like("step_up.%"))
                .order_by(AuditEvent.id)
            )
        )


def test_lock_and_unlock_from_the_command_line(runtime: Runtime, runner: FlaskCliRunner) -> None:
    expose(runtime, make_account(runtime, "jane", "jane@example.org"))
    assert output(runner, "accounts", "lock", "jane", "--reason", "SUP-1").strip() == (
        "step-up blocked until `accounts unlock`"
    )
    assert risk(runtime, "jane").reasons == (Reason.LOCKED,)
    assert output(runner, "accounts", "lock", "jane", "--reason", "SUP-1").strip() == (
        "already blocked"
    )
    assert output(runner, "accounts", "unlock", "jane").strip() == "unlocked"
    assert risk(runtime, "jane").decision is Decision.STEP_UP
    assert actions(runtime) == [
        "step_up.locked_by_support",
        "step_up.locked_by_support",
        "step_up.unlocked",
    ]


def test_reset_totp_revoke_and_force_from_the_command_line(
    runtime: Runtime, runner: FlaskCliRunner
) -> None:
    account_id = make_account(runtime, "jane", "jane@example.org")
    enroll_totp(runtime, "jane", now=utcnow())
    expose(runtime, account_id)
    assert output(runner, "accounts", "reset-totp", "jane", "--reason", "lost phone").strip() == (
        "authenticator removed"
    )
    assert risk(runtime, "jane").methods == ("email_code",)
    assert output(runner, "accounts", "revoke-devices", "jane").strip() == (
        "0 trusted devices revoked"
    )
    assert "earlier assurance tokens void" in output(runner, "accounts", "force-step-up", "jane")
    assert risk(runtime, "jane").reasons == (Reason.EMAIL_EXPOSED, Reason.SUPPORT_HOLD)
    assert actions(runtime)[-3:] == [
        "step_up.totp_reset_by_support",
        "step_up.devices_revoked",
        "step_up.forced_by_support",
    ]


def test_an_unknown_account_is_one_line_and_exit_1(runner: FlaskCliRunner) -> None:
    for command in ("lock", "reset-totp"):
        result = invoke(runner, "accounts", command, "nobody", "--reason", "x")
        assert result.exit_code == 1
        assert one_error_line(result) == "Error: no account with the id 'nobody'"
    assert invoke(runner, "accounts", "lock", "jane").exit_code == 2  # --reason is required


def test_force_step_up_holds_an_account_no_leak_names_until_clear_hold(
    runtime: Runtime, runner: FlaskCliRunner
) -> None:
    make_account(runtime, "jane", "jane@example.org")
    assert risk(runtime, "jane").decision is Decision.ALLOW
    forced = output(
        runner, "accounts", "force-step-up", "jane", "--reason", "SUP-9", "--hours", "48"
    )
    assert forced.startswith("held: every sign-in steps up until a step-up is passed (until ")
    assert risk(runtime, "jane").reasons == (Reason.SUPPORT_HOLD,)
    assert output(runner, "accounts", "clear-hold", "jane", "--reason", "verified").strip() == (
        "hold cleared"
    )
    assert risk(runtime, "jane").decision is Decision.ALLOW
    assert output(runner, "accounts", "clear-hold", "jane", "--reason", "again").strip() == (
        "no hold to clear"
    )
    assert actions(runtime)[-3:] == [
        "step_up.forced_by_support",
        "step_up.hold_cleared",
        "step_up.hold_clear_noop",
    ]


def test_bad_hold_options_are_one_line_and_change_nothing(
    runtime: Runtime, runner: FlaskCliRunner
) -> None:
    make_account(runtime, "jane", "jane@example.org")
    for hours in ("0", "9000", "soon"):
        result = invoke(runner, "accounts", "force-step-up", "jane", "--hours", hours)
        assert result.exit_code == 2, hours
    assert invoke(runner, "accounts", "clear-hold", "jane").exit_code == 2  # --reason required
    blank = invoke(runner, "accounts", "clear-hold", "jane", "--reason", " ")
    assert blank.exit_code == 1
    assert one_error_line(blank).startswith("Error: say why the hold can end")
    unknown = invoke(runner, "accounts", "clear-hold", "nobody", "--reason", "x")
    assert one_error_line(unknown) == "Error: no account with the id 'nobody'"
    assert risk(runtime, "jane").decision is Decision.ALLOW
    assert actions(runtime) == []


def test_a_support_reason_is_one_line_of_plain_characters(
    runtime: Runtime, runner: FlaskCliRunner
) -> None:
    # Before: a reason with a BEL or a bidi override was stored and shown in the audit log
    # as written; one pasted with tabs or line breaks kept them.
    make_account(runtime, "jane", "jane@example.org")
    for command in ("lock", "force-step-up", "revoke-devices", "reset-totp"):
        for reason in ("x\x07", "ticket \u202e42"):
            refused = invoke(runner, "accounts", command, "jane", "--reason", reason)
            assert refused.exit_code == 1, (command, reason)
            assert one_error_line(refused).startswith(
                "Error: the reason may not hold a control or invisible formatting character"
            ), command
    assert actions(runtime) == []
    taken = invoke(runner, "accounts", "lock", "jane", "--reason", "ticket\t42\nlost phone")
    assert taken.exit_code == 0, taken.output
    with runtime.db.read_session() as session:
        detail = session.scalars(select(AuditEvent.detail)).one()
    assert detail is not None
    assert detail["reason"] == "ticket 42 lost phone"
