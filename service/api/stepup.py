"""/v1 step-up: emailed-code challenges, verification, TOTP enrolment, recovery codes.

Every verification commits its outcome before answering, so that a failure counts even
though the answer is an error.
"""

from __future__ import annotations

import base64
import logging

from flask import Response, jsonify
from flask_openapi3 import Tag
from redis.exceptions import RedisError

from jobs.queues import QueueName, enqueue_delivery
from service.api import api
from service.api.auth import current_principal, requires_scope, runtime
from service.api.problems import problem_responses
from service.api.schemas import (
    AccountPath,
    AssuranceOut,
    ChallengeBody,
    ChallengeOut,
    RecoveryCodesOut,
    TotpConfirmBody,
    TotpEnrollmentOut,
    VerifyBody,
)
from service.api_clients import Scope
from service.db import utcnow
from service.outbox import mark_queued
from service.stepup import Method, Outcome, Passed

log = logging.getLogger(__name__)

TAG = Tag(name="step-up", description="Extra verification for accounts whose address leaked")
BODY_ERRORS = (400, 413, 415, 422, 429, 503)


def _send_now(notice_id: int) -> None:
    """Put the code's message on the high-priority queue at once.

    With Redis down the notice stays pending in the outbox and the relay of a running
    worker sends it as soon as it can; the person may ask for a new code meanwhile.
    """
    rt = runtime()
    try:
        enqueue_delivery(rt.settings, [notice_id], QueueName.HIGH)
    except RedisError as exc:
        log.warning("emailed code %s left to the relay: %s", notice_id, exc)
        return
    with rt.db.transaction() as session:
        mark_queued(session, [notice_id], now=utcnow())


def _actor() -> str:
    return f"api:{current_principal().name}"


def _assurance(outcome: Outcome) -> Response:
    if not isinstance(outcome, Passed):
        raise outcome.error(utcnow())
    return jsonify(
        {
            "assurance_token": outcome.token,
            "method": outcome.method.value,
            "expires_at": outcome.expires_at.isoformat(),
        }
    )


@api.post(
    "/step-up/challenges",
    tags=[TAG],
    responses={202: ChallengeOut, **problem_responses(*BODY_ERRORS)},
)
@requires_scope(Scope.STEP_UP_VERIFY)
def start_challenge(body: ChallengeBody) -> tuple[Response, int]:
    """Email a 6-digit code to the account's address; it expires in 10 minutes.

    A new challenge voids the account's earlier ones. The answer is the same for an
    unknown account (nothing is sent), so it tells nobody which accounts exist.
    """
    rt = runtime()
    with rt.db.transaction() as session:
        challenge = rt.step_up.start_email_challenge(
            session, body.account_id, actor=_actor(), now=utcnow()
        )
    if challenge.notice_id is not None:
        _send_now(challenge.notice_id)
    body_json = {
        "challenge_id": challenge.id,
        "method": challenge.method.value,
        "expires_at": challenge.expires_at.isoformat(),
    }
    return jsonify(body_json), 202


@api.post(
    "/step-up/verify",
    tags=[TAG],
    responses={200: AssuranceOut, **problem_responses(403, *BODY_ERRORS)},
)
@requires_scope(Scope.STEP_UP_VERIFY)
def verify_step_up(body: VerifyBody) -> Response:
    """Check a TOTP, emailed or recovery code; answer an assurance token if it is right.

    403 `verification_failed` for a wrong, used or expired code (and for an unknown
    account); 403 `locked` with Retry-After once 10 verifications in a row have failed.
    """
    rt = runtime()
    with rt.db.transaction() as session:
        outcome = rt.step_up.verify(
            session,
            body.account_id,
            Method(body.method),
            body.code,
            challenge_id=body.challenge_id,
            actor=_actor(),
            now=utcnow(),
        )
    return _assurance(outcome)


@api.post(
    "/accounts/<external_id>/totp",
    tags=[TAG],
    responses={201: TotpEnrollmentOut, **problem_responses(404, 422, 429, 503)},
)
@requires_scope(Scope.STEP_UP_ENROLL)
def enroll_totp(path: AccountPath) -> tuple[Response, int]:
    """Start TOTP enrolment: a new secret, its otpauth:// URI and QR code.

    The enrolment takes effect when confirmed with a first code; until then an earlier
    confirmed authenticator keeps working.
    """
    rt = runtime()
    with rt.db.transaction() as session:
        enrollment = rt.step_up.enroll_totp(session, path.external_id, actor=_actor(), now=utcnow())
    png = base64.b64encode(enrollment.qr_png).decode()
    return jsonify(
        {
            "secret": enrollment.secret,
            "provisioning_uri": enrollment.provisioning_uri,
            "qr_svg": enrollment.qr_svg,
            "qr_png": f"data:image/png;base64,{png}",
        }
    ), 201


@api.post(
    "/accounts/<external_id>/totp/confirm",
    tags=[TAG],
    responses={200: AssuranceOut, **problem_responses(403, 404, *BODY_ERRORS)},
)
@requires_scope(Scope.STEP_UP_ENROLL)
def confirm_totp(path: AccountPath, body: TotpConfirmBody) -> Response:
    """Confirm enrolment with the authenticator's first code; it counts as a TOTP step-up."""
    rt = runtime()
    with rt.db.transaction() as session:
        outcome = rt.step_up.confirm_totp(
            session, path.external_id, body.code, actor=_actor(), now=utcnow()
        )
    return _assurance(outcome)


@api.delete(
    "/accounts/<external_id>/totp",
    tags=[TAG],
    responses={204: None, **problem_responses(404, 422, 429, 503)},
)
@requires_scope(Scope.STEP_UP_ENROLL)
def remove_totp(path: AccountPath) -> tuple[str, int]:
    """Remove the account's authenticator (confirmed or pending)."""
    rt = runtime()
    with rt.db.transaction() as session:
        rt.step_up.remove_totp(session, path.external_id, actor=_actor(), now=utcnow())
    return "", 204


@api.post(
    "/accounts/<external_id>/recovery-codes",
    tags=[TAG],
    responses={201: RecoveryCodesOut, **problem_responses(404, 422, 429, 503)},
)
@requires_scope(Scope.STEP_UP_ENROLL)
def new_recovery_codes(path: AccountPath) -> tuple[Response, int]:
    """Issue ten new single-use recovery codes; every earlier code stops working."""
    rt = runtime()
    with rt.db.transaction() as session:
        codes = rt.step_up.new_recovery_codes(
            session, path.external_id, actor=_actor(), now=utcnow()
        )
    return jsonify({"codes": codes}), 201
