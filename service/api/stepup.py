"""/v1 step-up: emailed-code challenges, verification, TOTP enrolment, recovery codes.

Every verification commits its outcome before answering, so that a failure counts even
though the answer is an error.
"""

from __future__ import annotations

import base64

from flask import Response
from flask_openapi3 import Tag

from jobs.deliver import send_now
from service.api import api
from service.api.auth import current_principal, requires_scope, runtime
from service.api.limits import rate_limit
from service.api.problems import problem_responses
from service.api.schemas import (
    AccountPath,
    AssuranceHeader,
    AssuranceOut,
    ChallengeBody,
    ChallengeOut,
    RecoveryCodesOut,
    TotpConfirmBody,
    TotpConfirmedOut,
    TotpEnrollBody,
    TotpEnrollmentOut,
    VerifyBody,
    answer,
)
from service.clients import Scope
from service.db import utcnow
from service.metrics import count_step_up
from service.stepup.services import Method, Outcome, Passed, Refused

TAG = Tag(name="step-up", description="Extra verification for accounts whose address leaked")
BODY_ERRORS = (400, 413, 415, 422, 429, 503)


def _actor() -> str:
    return f"api:{current_principal().name}"


def _outcome_name(outcome: Outcome) -> str:
    if isinstance(outcome, Passed):
        return "passed"
    if outcome.locked is not None:
        return "locked"
    return "replayed" if outcome.replayed else "failed"


def _assurance(outcome: Outcome) -> Response:
    if not isinstance(outcome, Passed):
        raise outcome.error(utcnow())
    return answer(
        AssuranceOut(
            assurance_token=outcome.token,
            method=outcome.method,
            expires_at=outcome.expires_at,
            device_trusted_until=outcome.device_trusted_until,
        )
    )


@api.post(
    "/step-up/challenges",
    tags=[TAG],
    responses={202: ChallengeOut, **problem_responses(*BODY_ERRORS)},
)
@requires_scope(Scope.STEP_UP_VERIFY)
@rate_limit("rate_limit_step_up")
def start_challenge(body: ChallengeBody) -> Response:
    """Email a 6-digit code to the account's address; it expires in 10 minutes.

    A new challenge voids the account's earlier ones. The answer is the same, and takes
    the same time, for an unknown account, one whose emailed code is locked, and one whose
    mailbox cannot be trusted (undeliverable, or its password leaked): nothing is sent to
    those, and the answer tells nobody which accounts exist. The mail leaves after the
    answer.
    """
    rt = runtime()
    with rt.db.transaction() as session:
        challenge = rt.step_up.start_email_challenge(
            session, body.account_id, actor=_actor(), now=utcnow()
        )
    response = answer(
        ChallengeOut(
            challenge_id=challenge.id, method=challenge.method, expires_at=challenge.expires_at
        ),
        202,
    )
    notice_id = challenge.notice_id
    if notice_id is not None:
        # After the answer has gone: its time must not tell a known account from an unknown
        # one (ASVS 6.3.8). The notice is committed, so a failure here only delays the mail.
        response.call_on_close(lambda: send_now(rt, [notice_id]))
    return response


@api.post(
    "/step-up/verify",
    tags=[TAG],
    responses={200: AssuranceOut, **problem_responses(403, *BODY_ERRORS)},
)
@requires_scope(Scope.STEP_UP_VERIFY)
@rate_limit("rate_limit_step_up")
def verify_step_up(body: VerifyBody) -> Response:
    """Check a TOTP, emailed or recovery code; answer an assurance token if it is right.

    With `context.device_id` (the login service's opaque id of the device), a pass also
    trusts that device for LEAKGUARD_TRUSTED_DEVICE_DAYS (`device_trusted_until`): the risk
    check then allows it with reason `trusted_device` until the address leaks again, leaks
    with a password, or changes. Only a keyed hash of the id is stored.

    403 `verification_failed` for a wrong, used or expired code (and for an unknown
    account); 403 `locked` with Retry-After once 10 verifications in a row have failed. A
    code accepted already (the same challenge's code again, a TOTP code of the time step
    accepted last or earlier, a used recovery code) is refused the same way but not
    counted as a failure, so a double submit neither locks the account nor voids the
    token the first one earned.
    """
    rt = runtime()
    with rt.db.transaction() as session:
        outcome = rt.step_up.verify(
            session,
            body.account_id,
            Method(body.method),
            body.code,
            challenge_id=body.challenge_id,
            device_id=body.context.device_id if body.context else None,
            actor=_actor(),
            now=utcnow(),
        )
    count_step_up(Method(body.method).value, _outcome_name(outcome))
    return _assurance(outcome)


FACTOR_CHANGE_ERRORS = (400, 403, 404, 422, 429, 503)


@api.post(
    "/accounts/<external_id:external_id>/totp",
    tags=[TAG],
    responses={201: TotpEnrollmentOut, **problem_responses(*FACTOR_CHANGE_ERRORS, 413, 415)},
)
@requires_scope(Scope.STEP_UP_ENROLL)
@rate_limit("rate_limit_step_up")
def enroll_totp(path: AccountPath, header: AssuranceHeader, body: TotpEnrollBody) -> Response:
    """Start TOTP enrolment: a new secret, its otpauth:// URI and QR code.

    The enrolment takes effect when confirmed with a first code; until then an earlier
    confirmed authenticator keeps working. Replacing a confirmed authenticator needs the
    `Assurance-Token` of a step-up with TOTP or a recovery code (403 `assurance_required`
    or `assurance_too_weak` otherwise); a first one on an account whose address leaked
    needs the token of any passed step-up. The authenticator app shows `label`, or the
    masked address.
    """
    rt = runtime()
    with rt.db.transaction() as session:
        enrollment = rt.step_up.enroll_totp(
            session,
            path.external_id,
            assurance_token=header.assurance_token,
            label=body.label,
            actor=_actor(),
            now=utcnow(),
        )
    png = base64.b64encode(enrollment.qr_png).decode()
    return answer(
        TotpEnrollmentOut(
            secret=enrollment.secret,
            provisioning_uri=enrollment.provisioning_uri,
            qr_svg=enrollment.qr_svg,
            qr_png=f"data:image/png;base64,{png}",
        ),
        201,
    )


@api.post(
    "/accounts/<external_id:external_id>/totp/confirm",
    tags=[TAG],
    responses={200: TotpConfirmedOut, **problem_responses(403, 404, *BODY_ERRORS)},
)
@requires_scope(Scope.STEP_UP_ENROLL)
@rate_limit("rate_limit_step_up")
def confirm_totp(path: AccountPath, body: TotpConfirmBody) -> Response:
    """Confirm enrolment with the authenticator's first code.

    Not a step-up: a factor just added proves nothing about who added it, so no assurance
    token comes back. A wrong code counts against the TOTP guess budget (403); the
    confirming code sent again once confirmed is refused the same way, not counted.
    """
    rt = runtime()
    with rt.db.transaction() as session:
        outcome = rt.step_up.confirm_totp(
            session, path.external_id, body.code, actor=_actor(), now=utcnow()
        )
    if isinstance(outcome, Refused):
        raise outcome.error(utcnow())
    return answer(TotpConfirmedOut(enrolled=True, method=outcome.method))


@api.delete(
    "/accounts/<external_id:external_id>/totp",
    tags=[TAG],
    responses={204: None, **problem_responses(*FACTOR_CHANGE_ERRORS)},
)
@requires_scope(Scope.STEP_UP_ENROLL)
@rate_limit("rate_limit_step_up")
def remove_totp(path: AccountPath, header: AssuranceHeader) -> tuple[str, int]:
    """Remove the account's authenticator; a confirmed one only with the `Assurance-Token`
    of a step-up with TOTP or a recovery code."""
    rt = runtime()
    with rt.db.transaction() as session:
        rt.step_up.remove_totp(
            session,
            path.external_id,
            assurance_token=header.assurance_token,
            actor=_actor(),
            now=utcnow(),
        )
    return "", 204


@api.post(
    "/accounts/<external_id:external_id>/recovery-codes",
    tags=[TAG],
    responses={201: RecoveryCodesOut, **problem_responses(*FACTOR_CHANGE_ERRORS)},
)
@requires_scope(Scope.STEP_UP_ENROLL)
@rate_limit("rate_limit_step_up")
def new_recovery_codes(path: AccountPath, header: AssuranceHeader) -> Response:
    """Issue ten new single-use recovery codes; every earlier code stops working.

    While the account has an authenticator or unused codes, only with the `Assurance-Token`
    of a step-up with TOTP or a recovery code; a first set on an account whose address
    leaked needs the token of any passed step-up.
    """
    rt = runtime()
    with rt.db.transaction() as session:
        codes = rt.step_up.new_recovery_codes(
            session,
            path.external_id,
            assurance_token=header.assurance_token,
            actor=_actor(),
            now=utcnow(),
        )
    return answer(RecoveryCodesOut(codes=codes), 201)
