"""The sign-in decision as a pure function (service/risk.py ``decide``), on facts made by hand.

No database: ``AccountFacts``, ``OpenExposure`` and ``ThrottleState`` are what the risk
check reads. The precedence is the leaked password, then a passed step-up, then exposure
with what the account can still step up with; a lock never denies while a method is open.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.leaks.passwords import hash_leaked_password
from service.models import ExposureKind
from service.risk import AccountFacts, Decision, OpenExposure, Reason, Verdict, decide
from service.stepup.assurance import Assurance, AssuranceTokenInvalid
from service.stepup.services import Method
from service.stepup.throttle import ThrottleState

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
ACCOUNT_ID = 41
EPOCH = 3
LEAKED = "hunter2-from-the-leak"
LEAKED_HASH = hash_leaked_password(LEAKED)

EMAIL_LEAK = OpenExposure("newsletter-2019", ExposureKind.EMAIL, NOW - timedelta(days=30), None)
COMBO_LEAK = OpenExposure(
    "combo-2020", ExposureKind.CREDENTIAL, NOW - timedelta(days=3), LEAKED_HASH
)
OPEN = ThrottleState({}, blocked=False)


def facts(
    *exposures: OpenExposure,
    totp: bool = False,
    codes: bool = False,
    undeliverable: bool = False,
    account_id: int = ACCOUNT_ID,
) -> AccountFacts:
    return AccountFacts(
        account_id=account_id,
        email="jane@example.org",
        security_epoch=EPOCH,
        exposures=exposures,
        has_totp=totp,
        has_recovery_codes=codes,
        undeliverable=undeliverable,
    )


def assurance(account_id: int = ACCOUNT_ID, epoch: int = EPOCH) -> Assurance:
    """Claims of a verified token: a step-up passed a minute ago, good for 14 more."""
    return Assurance(
        external_id="jane",
        account_id=account_id,
        method="totp",
        epoch=epoch,
        token_id="t1",
        issued_at=NOW - timedelta(minutes=1),
        expires_at=NOW + timedelta(minutes=14),
    )


def locked(*methods: Method, minutes: int = 15, blocked: bool = False) -> ThrottleState:
    return ThrottleState(
        {method.value: NOW + timedelta(minutes=minutes) for method in methods}, blocked=blocked
    )


def decided(
    value: AccountFacts | None,
    *,
    password: str | None = None,
    passed: bool = False,
    throttle: ThrottleState = OPEN,
) -> Verdict:
    token = assurance() if passed else None
    return decide(value, password=password, assurance=token, throttle=throttle, now=NOW)


# --- one fact at a time ----------------------------------------------------------------------


@pytest.mark.parametrize("password", [None, LEAKED])
@pytest.mark.parametrize("passed", [False, True], ids=["no-token", "token"])
def test_unknown_account_is_allowed_whatever_comes_along(
    password: str | None, passed: bool
) -> None:
    assert decided(None, password=password, passed=passed) == Verdict(
        Decision.ALLOW, (Reason.UNKNOWN_ACCOUNT,)
    )


@pytest.mark.parametrize("password", [None, LEAKED])
@pytest.mark.parametrize("passed", [False, True], ids=["no-token", "token"])
def test_account_in_no_open_leak_is_allowed_without_a_reason(
    password: str | None, passed: bool
) -> None:
    assert decided(facts(), password=password, passed=passed) == Verdict(Decision.ALLOW, ())


def test_locks_never_deny_an_account_that_needs_no_step_up() -> None:
    everything = locked(*Method, blocked=True)
    assert decided(facts(totp=True), throttle=everything) == Verdict(Decision.ALLOW, ())


def test_open_email_exposure_asks_for_step_up_with_the_emailed_code() -> None:
    verdict = decided(facts(EMAIL_LEAK), password="any-other-password")
    assert verdict == Verdict(
        Decision.STEP_UP, (Reason.EMAIL_EXPOSED,), (EMAIL_LEAK,), (Method.EMAIL_CODE,)
    )


def test_the_methods_follow_what_the_account_has_in_the_order_offered() -> None:
    verdict = decided(facts(EMAIL_LEAK, totp=True, codes=True))
    assert verdict.methods == (Method.TOTP, Method.EMAIL_CODE, Method.RECOVERY_CODE)


def test_a_credential_exposure_closes_the_emailed_code() -> None:
    """The mailbox's password may be the one that leaked: a code sent there proves nothing."""
    verdict = decided(facts(COMBO_LEAK, totp=True), password="a-new-password")
    assert verdict == Verdict(
        Decision.STEP_UP,
        (Reason.EMAIL_EXPOSED, Reason.CREDENTIAL_EXPOSED),
        (COMBO_LEAK,),
        (Method.TOTP,),
    )


def test_an_undeliverable_address_gets_no_emailed_code() -> None:
    assert decided(facts(EMAIL_LEAK, codes=True, undeliverable=True)).methods == (
        Method.RECOVERY_CODE,
    )


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(facts(COMBO_LEAK), id="credential-leak"),
        pytest.param(facts(EMAIL_LEAK, undeliverable=True), id="bounced"),
    ],
)
def test_no_method_left_sends_the_person_to_support(value: AccountFacts) -> None:
    verdict = decided(value)
    assert (verdict.decision, verdict.reasons) == (Decision.DENY, (Reason.NO_USABLE_METHOD,))


@pytest.mark.parametrize(
    "exposures",
    [pytest.param((COMBO_LEAK,), id="one-leak"), pytest.param((EMAIL_LEAK, COMBO_LEAK), id="two")],
)
def test_the_leaked_password_itself_is_denied(exposures: tuple[OpenExposure, ...]) -> None:
    verdict = decided(facts(*exposures), password=LEAKED)
    assert verdict == Verdict(Decision.DENY, (Reason.LEAKED_PASSWORD,), exposures)


def test_a_password_is_compared_with_the_leaked_one_exactly() -> None:
    for near in (LEAKED + " ", LEAKED.upper(), LEAKED[:-1], ""):
        verdict = decided(facts(COMBO_LEAK, totp=True), password=near)
        assert verdict.decision is Decision.STEP_UP, near


# --- locks: one method locked leaves the others open ----------------------------------------


def test_a_locked_method_is_left_out_and_retry_after_says_when_it_opens() -> None:
    verdict = decided(facts(EMAIL_LEAK, totp=True), throttle=locked(Method.TOTP, minutes=15))
    assert verdict.decision is Decision.STEP_UP
    assert verdict.methods == (Method.EMAIL_CODE,)
    assert verdict.retry_after == 15 * 60


def test_every_usable_method_locked_denies_until_the_first_opens() -> None:
    throttle = ThrottleState(
        {
            Method.TOTP.value: NOW + timedelta(minutes=30),
            Method.EMAIL_CODE.value: NOW + timedelta(minutes=15),
        },
        blocked=False,
    )
    verdict = decided(facts(EMAIL_LEAK, totp=True), throttle=throttle)
    assert (verdict.decision, verdict.reasons) == (Decision.DENY, (Reason.LOCKED,))
    assert verdict.retry_after == 15 * 60


def test_a_lock_on_a_method_the_account_lacks_changes_nothing() -> None:
    verdict = decided(facts(EMAIL_LEAK), throttle=locked(Method.TOTP, Method.RECOVERY_CODE))
    assert (verdict.methods, verdict.retry_after) == ((Method.EMAIL_CODE,), None)


def test_the_support_block_denies_without_an_end() -> None:
    verdict = decided(facts(EMAIL_LEAK, totp=True), throttle=locked(blocked=True))
    assert (verdict.decision, verdict.reasons, verdict.retry_after) == (
        Decision.DENY,
        (Reason.LOCKED,),
        None,
    )


# --- assurance ---------------------------------------------------------------------------


def test_a_passed_step_up_allows_an_exposed_account() -> None:
    verdict = decided(facts(EMAIL_LEAK, COMBO_LEAK), passed=True)
    assert verdict == Verdict(Decision.ALLOW, (Reason.STEP_UP_PASSED,), (EMAIL_LEAK, COMBO_LEAK))


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(assurance(account_id=ACCOUNT_ID + 1), id="another-incarnation"),
        pytest.param(assurance(epoch=EPOCH - 1), id="an-earlier-security-state"),
    ],
)
def test_a_token_that_no_longer_speaks_for_the_account_is_invalid(token: Assurance) -> None:
    for value in (facts(EMAIL_LEAK), facts()):
        with pytest.raises(AssuranceTokenInvalid):
            decide(value, password=None, assurance=token, throttle=OPEN, now=NOW)


# --- precedence: leaked password, passed step-up, exposure and locks -------------------------


def test_the_leaked_password_beats_a_passed_step_up_and_the_block() -> None:
    verdict = decided(
        facts(COMBO_LEAK), password=LEAKED, passed=True, throttle=locked(blocked=True)
    )
    assert (verdict.decision, verdict.reasons) == (Decision.DENY, (Reason.LEAKED_PASSWORD,))


def test_a_passed_step_up_beats_the_exposure() -> None:
    verdict = decided(facts(COMBO_LEAK), password="a-new-password", passed=True)
    assert (verdict.decision, verdict.reasons) == (Decision.ALLOW, (Reason.STEP_UP_PASSED,))


def held(*exposures: OpenExposure) -> AccountFacts:
    """An account held after a reverted email change (service/email_change/holds.py)."""
    base = facts(*exposures)
    return AccountFacts(
        account_id=base.account_id,
        email=base.email,
        security_epoch=base.security_epoch,
        exposures=base.exposures,
        held=True,
    )


@pytest.mark.parametrize("exposures", [(), (EMAIL_LEAK,)], ids=["no_exposure", "exposed"])
def test_a_reverted_email_change_steps_up_even_on_a_trusted_device(
    exposures: tuple[OpenExposure, ...],
) -> None:
    for trusted in (False, True):
        verdict = decide(
            held(*exposures),
            password=None,
            assurance=None,
            throttle=OPEN,
            now=NOW,
            trusted_device=trusted,
        )
        assert verdict.decision is Decision.STEP_UP
        assert verdict.reasons[-1] is Reason.EMAIL_CHANGE_REVERTED
        assert (Reason.EMAIL_EXPOSED in verdict.reasons) is bool(exposures)
        assert verdict.methods == (Method.EMAIL_CODE,)
    # A step-up passed just now lets the person in.
    passed = decide(held(), password=None, assurance=assurance(), throttle=OPEN, now=NOW)
    assert (passed.decision, passed.reasons) == (Decision.ALLOW, (Reason.STEP_UP_PASSED,))


def support_held(*exposures: OpenExposure, email_change_held: bool = False) -> AccountFacts:
    """An account support forced a step-up on (service/stepup/hold.py)."""
    return AccountFacts(
        account_id=ACCOUNT_ID,
        email="jane@example.org",
        security_epoch=EPOCH,
        exposures=exposures,
        held=email_change_held,
        support_hold=True,
    )


@pytest.mark.parametrize("exposures", [(), (EMAIL_LEAK,)], ids=["no_exposure", "exposed"])
@pytest.mark.parametrize("trusted", [False, True], ids=["new_device", "trusted_device"])
def test_a_support_hold_steps_up_an_account_no_leak_names_even_on_a_trusted_device(
    exposures: tuple[OpenExposure, ...], trusted: bool
) -> None:
    verdict = decide(
        support_held(*exposures),
        password=None,
        assurance=None,
        throttle=OPEN,
        now=NOW,
        trusted_device=trusted,
    )
    expected = (Reason.EMAIL_EXPOSED, Reason.SUPPORT_HOLD) if exposures else (Reason.SUPPORT_HOLD,)
    assert verdict == Verdict(Decision.STEP_UP, expected, exposures, (Method.EMAIL_CODE,))


def test_a_support_hold_yields_to_a_passed_step_up_and_to_locks() -> None:
    passed = decide(support_held(), password=None, assurance=assurance(), throttle=OPEN, now=NOW)
    assert (passed.decision, passed.reasons) == (Decision.ALLOW, (Reason.STEP_UP_PASSED,))
    blocked = decided(support_held(), throttle=locked(blocked=True))
    assert (blocked.decision, blocked.reasons) == (Decision.DENY, (Reason.LOCKED,))
    both = decided(support_held(email_change_held=True))
    assert both.reasons == (Reason.EMAIL_CHANGE_REVERTED, Reason.SUPPORT_HOLD)
