"""The sign-in decision as a pure function (service/risk.py ``decide``), on facts made by hand.

No database: ``AccountFacts`` and ``OpenExposure`` are what ``load_facts`` reads; the
precedence is locked, then the leaked password, then a passed step-up, then exposure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.leaks.passwords import hash_leaked_password
from service.models import ExposureKind
from service.risk import AccountFacts, Decision, OpenExposure, Reason, Verdict, decide
from service.stepup.assurance import Assurance, AssuranceTokenInvalid

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ACCOUNT_ID = 41
LEAKED = "hunter2-from-the-leak"
LEAKED_HASH = hash_leaked_password(LEAKED)

EMAIL_LEAK = OpenExposure("newsletter-2019", ExposureKind.EMAIL, NOW - timedelta(days=30), None)
COMBO_LEAK = OpenExposure(
    "combo-2020", ExposureKind.CREDENTIAL, NOW - timedelta(days=3), LEAKED_HASH
)


def facts(
    *exposures: OpenExposure, locked_until: datetime | None = None, account_id: int = ACCOUNT_ID
) -> AccountFacts:
    return AccountFacts(
        account_id=account_id,
        email="jane@example.org",
        locked_until=locked_until,
        exposures=exposures,
    )


def assurance(account_id: int = ACCOUNT_ID) -> Assurance:
    """Claims of a verified token: a step-up passed a minute ago, good for 14 more."""
    return Assurance(
        external_id="jane",
        account_id=account_id,
        method="totp",
        issued_at=NOW - timedelta(minutes=1),
        expires_at=NOW + timedelta(minutes=14),
    )


def decided(
    value: AccountFacts | None, *, password: str | None = None, passed: bool = False
) -> Verdict:
    return decide(value, password=password, assurance=assurance() if passed else None, now=NOW)


# --- one fact at a time ----------------------------------------------------------------------


@pytest.mark.parametrize("password", [None, LEAKED])
@pytest.mark.parametrize("passed", [False, True], ids=["no-token", "token"])
def test_unknown_account_is_allowed_whatever_comes_along(
    password: str | None, passed: bool
) -> None:
    assert decided(None, password=password, passed=passed) == Verdict(
        Decision.ALLOW, (Reason.UNKNOWN_ACCOUNT,), ()
    )


@pytest.mark.parametrize("password", [None, LEAKED])
@pytest.mark.parametrize("passed", [False, True], ids=["no-token", "token"])
def test_account_in_no_open_leak_is_allowed_without_a_reason(
    password: str | None, passed: bool
) -> None:
    assert decided(facts(), password=password, passed=passed) == Verdict(Decision.ALLOW, (), ())


def test_open_email_exposure_asks_for_step_up() -> None:
    verdict = decided(facts(EMAIL_LEAK), password="any-other-password")
    assert verdict == Verdict(Decision.STEP_UP, (Reason.EMAIL_EXPOSED,), (EMAIL_LEAK,))


@pytest.mark.parametrize("password", [None, "a-new-password"], ids=["no-password", "another"])
def test_credential_exposure_asks_for_step_up_naming_the_credential(password: str | None) -> None:
    verdict = decided(facts(COMBO_LEAK), password=password)
    assert verdict == Verdict(
        Decision.STEP_UP, (Reason.EMAIL_EXPOSED, Reason.CREDENTIAL_EXPOSED), (COMBO_LEAK,)
    )


def test_email_and_credential_exposures_name_both_and_list_every_leak() -> None:
    verdict = decided(facts(EMAIL_LEAK, COMBO_LEAK))
    assert verdict.decision is Decision.STEP_UP
    assert verdict.reasons == (Reason.EMAIL_EXPOSED, Reason.CREDENTIAL_EXPOSED)
    assert verdict.exposures == (EMAIL_LEAK, COMBO_LEAK)


@pytest.mark.parametrize(
    "exposures",
    [pytest.param((COMBO_LEAK,), id="one-leak"), pytest.param((EMAIL_LEAK, COMBO_LEAK), id="two")],
)
def test_the_leaked_password_itself_is_denied(exposures: tuple[OpenExposure, ...]) -> None:
    verdict = decided(facts(*exposures), password=LEAKED)
    assert verdict == Verdict(Decision.DENY, (Reason.LEAKED_PASSWORD,), exposures)


def test_a_password_is_compared_with_the_leaked_one_exactly() -> None:
    for near in (LEAKED + " ", LEAKED.upper(), LEAKED[:-1], ""):
        assert decided(facts(COMBO_LEAK), password=near).decision is Decision.STEP_UP, near


def test_a_lock_in_the_future_denies() -> None:
    locked = facts(EMAIL_LEAK, locked_until=NOW + timedelta(seconds=1))
    assert decided(locked) == Verdict(Decision.DENY, (Reason.LOCKED,), (EMAIL_LEAK,))
    assert decided(facts(locked_until=NOW + timedelta(minutes=15))) == Verdict(
        Decision.DENY, (Reason.LOCKED,), ()
    )


@pytest.mark.parametrize("locked_until", [NOW, NOW - timedelta(seconds=1), NOW - timedelta(days=1)])
def test_a_lock_that_ended_is_no_lock(locked_until: datetime) -> None:
    assert decided(facts(EMAIL_LEAK, locked_until=locked_until)) == decided(facts(EMAIL_LEAK))
    assert decided(facts(locked_until=locked_until)) == Verdict(Decision.ALLOW, (), ())


def test_a_passed_step_up_allows_an_exposed_account() -> None:
    verdict = decided(facts(EMAIL_LEAK, COMBO_LEAK), passed=True)
    assert verdict == Verdict(Decision.ALLOW, (Reason.STEP_UP_PASSED,), (EMAIL_LEAK, COMBO_LEAK))


def test_a_token_of_another_incarnation_of_the_account_is_invalid() -> None:
    """Deleted and created again under the same external id: a new row id, a new account."""
    with pytest.raises(AssuranceTokenInvalid):
        decide(facts(EMAIL_LEAK), password=None, assurance=assurance(ACCOUNT_ID + 1), now=NOW)
    with pytest.raises(AssuranceTokenInvalid):
        decide(facts(), password=None, assurance=assurance(ACCOUNT_ID + 1), now=NOW)


# --- precedence: locked, leaked password, passed step-up, exposure ----------------------------


def test_locked_beats_the_leaked_password_the_token_and_the_exposure() -> None:
    locked = facts(EMAIL_LEAK, COMBO_LEAK, locked_until=NOW + timedelta(minutes=5))
    verdict = decided(locked, password=LEAKED, passed=True)
    assert (verdict.decision, verdict.reasons) == (Decision.DENY, (Reason.LOCKED,))


def test_the_leaked_password_beats_a_passed_step_up() -> None:
    verdict = decided(facts(COMBO_LEAK), password=LEAKED, passed=True)
    assert (verdict.decision, verdict.reasons) == (Decision.DENY, (Reason.LEAKED_PASSWORD,))


def test_a_passed_step_up_beats_the_exposure() -> None:
    verdict = decided(facts(COMBO_LEAK), password="a-new-password", passed=True)
    assert (verdict.decision, verdict.reasons) == (Decision.ALLOW, (Reason.STEP_UP_PASSED,))


def test_an_ended_lock_lets_the_next_rule_decide() -> None:
    ended = NOW - timedelta(minutes=1)
    assert decided(facts(COMBO_LEAK, locked_until=ended), password=LEAKED).reasons == (
        Reason.LEAKED_PASSWORD,
    )
    assert decided(facts(COMBO_LEAK, locked_until=ended), passed=True).reasons == (
        Reason.STEP_UP_PASSED,
    )
