"""/v1 email change: the login service's protected flow (issue 14, part 2).

The order an integrator follows: step up (``POST /v1/step-up/verify``), then ``POST
/v1/accounts/{id}/email-change`` with the assurance token; the person confirms from the new
mailbox (Leakguard's link page, or the login service's own page posting the token to
``POST /v1/email-change/confirm``); the old mailbox may revert for 7 days
(``POST /v1/email-change/revert``). The domain lives in ``service.email_change``.
"""

from __future__ import annotations

import hashlib

from flask import Response, request
from flask_openapi3 import Tag

from jobs.deliver import send_now
from jobs.queues import QueueName
from service.api import api
from service.api.auth import current_principal, requires_scope, runtime
from service.api.email_change_schemas import (
    AssistedChangeBody,
    EmailChangeBody,
    EmailChangeOut,
    LinkTokenBody,
    PendingEmailChangeOut,
)
from service.api.limits import admit, rate_limit
from service.api.problems import problem_responses
from service.api.schemas import AccountPath, answer
from service.clients import Scope
from service.db import run_in_transaction, utcnow
from service.email_change.assisted import request_assisted
from service.email_change.context import ChangeTools
from service.email_change.errors import NoPendingChange
from service.email_change.links import follow_link
from service.email_change.request import (
    cancel_change,
    pending_change,
    request_change,
    resend_confirmation,
)
from service.email_change.tokens import LinkPurpose
from service.email_change.views import ChangeStep, ChangeView
from service.runtime import Runtime

FLOW = """The protected email change, for the login service. The sequence:

1. Step up (`POST /v1/step-up/challenges`, `POST /v1/step-up/verify`): keep the
   `assurance_token`.
2. `POST /v1/accounts/{external_id}/email-change` with `new_email` and the token: 202
   `awaiting_confirmation`. The new address gets a confirmation link (24 h), the old one an
   alert with a revert link (7 days); `priority` `high` (an open exposure) sends both ahead
   of any campaign.
3. The person confirms: Leakguard's page `GET /email-change/confirm?token=...` (one button;
   only its CSRF-protected POST acts, so mail scanners opening the link change nothing), or
   the login service's own page posting the token to `POST /v1/email-change/confirm`. The
   change applies; `GET /v1/accounts/{external_id}` shows the new `email` and
   `email_changed_at`.
4. Within 7 days, before or after confirmation, the old mailbox may revert
   (`GET /email-change/revert?token=...` or `POST /v1/email-change/revert`): the old
   address is back, no new change during the cooling-off (409 `cooling_off`), trusted
   devices end, and the risk check answers `step_up` with reason `email_change_reverted`
   until support clears it.
5. The settings page reads (`GET`), cancels (`DELETE`) or resends
   (`POST .../email-change/resend`) the pending change.
"""
TAG = Tag(name="email-change", description=FLOW)
BODY_ERRORS = (400, 413, 415, 422, 429, 503)


def _actor() -> str:
    return f"api:{current_principal().name}"


def account_key() -> str:
    """Rate-limit key: the account of the path (hashed: ids may be long)."""
    external_id = str((request.view_args or {}).get("external_id", ""))
    return "email-change-account:" + hashlib.sha256(external_id.encode()).hexdigest()[:32]


def new_address_key() -> str:
    """Rate-limit key: the proposed address, as the keyed hash of its canonical form, so
    every spelling shares one budget and Redis never holds the address."""
    body = request.get_json(silent=True)
    email = body.get("new_email") if isinstance(body, dict) else None
    key = runtime().keys.key(email) if isinstance(email, str) else None
    return "email-change-address:" + (key.hex() if key else "none")


def send_after_answer(rt: Runtime, response: Response, step: ChangeStep) -> None:
    """Hand the step's messages to the queue once the answer is sent: the high queue for
    an account with an open exposure, ahead of any campaign. The rows are committed, so a
    failure here only leaves them to the relay."""
    notice_ids = list(step.notice_ids)
    if not notice_ids:
        return
    queue = QueueName.HIGH if step.view.priority == "high" else QueueName.DEFAULT
    response.call_on_close(lambda: send_now(rt, notice_ids, queue))


def change_out(view: ChangeView, *, address_restored: bool | None = None) -> EmailChangeOut:
    return EmailChangeOut(
        request_id=view.request_id,
        state=view.state,
        priority=view.priority,
        expires_at=view.expires_at,
        address_leaked=view.address_leaked,
        address_restored=address_restored,
    )


@api.post(
    "/accounts/<external_id:external_id>/email-change",
    tags=[TAG],
    responses={202: EmailChangeOut, **problem_responses(403, 404, 409, *BODY_ERRORS)},
)
@requires_scope(Scope.EMAIL_CHANGE_WRITE)
@rate_limit(
    "rate_limit_step_up",
    ("rate_limit_email_change_account", account_key),
    ("rate_limit_email_change_address", new_address_key),
)
def start_email_change(path: AccountPath, body: EmailChangeBody) -> Response:
    """Ask to move the account to `new_email`; the new mailbox must confirm.

    Needs the `assurance_token` of a step-up passed just now (403 `step_up_required` when
    it is missing, expired, forged, another account's or spent on an earlier change). The
    address is validated and canonicalized: 422 `invalid_email`, 422 `address_unchanged`
    (the current address, however spelled), 409 `address_in_use` (another account's),
    422 `address_leaked` (in a known leak, unless `accept_leaked_address`; the answer then
    says `address_leaked: true`), 409 `cooling_off` with Retry-After after a revert. A
    newer request replaces the pending one. 202: a confirmation link (24 h) goes to the
    new address and an alert with a revert link (7 days) to the old; `priority` `high`
    (an open exposure) puts both ahead of any campaign. A refused request changes nothing
    and leaves the assurance token unspent.
    """
    rt = runtime()
    tools, actor, now = ChangeTools.of(rt, admit=admit), _actor(), utcnow()
    # Two requests at once: the loser of the one-open-request race runs again, and then
    # replaces the winner's request (or finds the token spent).
    step = run_in_transaction(
        rt.db,
        lambda session: request_change(
            session,
            tools,
            path.external_id,
            body.new_email,
            assurance_token=body.assurance_token,
            accept_leaked=body.accept_leaked_address,
            actor=actor,
            now=now,
        ),
    )
    response = answer(change_out(step.view), 202)
    send_after_answer(rt, response, step)
    return response


@api.get(
    "/accounts/<external_id:external_id>/email-change",
    tags=[TAG],
    responses={200: PendingEmailChangeOut, **problem_responses(404, 422)},
)
@requires_scope(Scope.EMAIL_CHANGE_WRITE)
@rate_limit("rate_limit_step_up")
def read_email_change(path: AccountPath) -> Response:
    """The account's pending change (state, new address masked, expiry), for the settings
    page; 404 `no_pending_change` when there is none."""
    with runtime().db.read_session() as session:
        view = pending_change(session, path.external_id, now=utcnow())
    if view is None:
        raise NoPendingChange()
    return answer(pending_out(view))


def pending_out(view: ChangeView) -> PendingEmailChangeOut:
    return PendingEmailChangeOut(
        request_id=view.request_id,
        state=view.state,
        priority=view.priority,
        expires_at=view.expires_at,
        new_email=view.new_email,
        created_at=view.created_at,
        assisted=view.assisted,
        address_leaked=view.address_leaked,
    )


@api.delete(
    "/accounts/<external_id:external_id>/email-change",
    tags=[TAG],
    responses={204: None, **problem_responses(404, 422)},
)
@requires_scope(Scope.EMAIL_CHANGE_WRITE)
@rate_limit("rate_limit_step_up")
def cancel_email_change(path: AccountPath) -> tuple[str, int]:
    """Cancel the pending change: its links stop working, its unsent mail is not sent."""
    with runtime().db.transaction() as session:
        cancel_change(session, path.external_id, actor=_actor(), now=utcnow())
    return "", 204


@api.post(
    "/accounts/<external_id:external_id>/email-change/resend",
    tags=[TAG],
    responses={202: EmailChangeOut, **problem_responses(404, 422, 429, 503)},
)
@requires_scope(Scope.EMAIL_CHANGE_WRITE)
@rate_limit(
    "rate_limit_step_up",
    ("rate_limit_email_change_resend", account_key),
)
def resend_email_change(path: AccountPath) -> Response:
    """Send the confirmation again, as a new link valid for 24 hours (the earlier link stops
    working); rate-limited per account (`LEAKGUARD_RATE_LIMIT_EMAIL_CHANGE_RESEND`)."""
    rt = runtime()
    with rt.db.transaction() as session:
        step = resend_confirmation(
            session, ChangeTools.of(rt, admit=admit), path.external_id, actor=_actor(), now=utcnow()
        )
    response = answer(change_out(step.view), 202)
    send_after_answer(rt, response, step)
    return response


@api.post(
    # The converter named: flask-openapi3 would read "external_id>/email-change:" as one.
    "/accounts/<external_id:external_id>/email-change:assisted",
    tags=[TAG],
    responses={202: EmailChangeOut, **problem_responses(404, 409, *BODY_ERRORS)},
)
@requires_scope(Scope.EMAIL_CHANGE_ASSIST)
@rate_limit(
    "rate_limit_step_up",
    ("rate_limit_email_change_account", account_key),
    ("rate_limit_email_change_address", new_address_key),
)
def assisted_email_change(path: AccountPath, body: AssistedChangeBody) -> Response:
    """Support files a change for someone who lost the old mailbox: it waits for review
    (`awaiting_review`; `leakguard email-change queue`, then `approve` or `deny` by another
    person). Approval sends the confirmation to the new address and the alert to the old.
    An account with an open support-assisted request: 409 `assisted_request_open` (its
    `ticket`), unless `cancel_open_request` is true."""
    rt = runtime()
    tools, actor, now = ChangeTools.of(rt, admit=admit), _actor(), utcnow()
    view = run_in_transaction(
        rt.db,
        lambda session: request_assisted(
            session,
            tools,
            path.external_id,
            body.new_email,
            ticket=body.ticket,
            accept_leaked=body.accept_leaked_address,
            cancel_open=body.cancel_open_request,
            actor=actor,
            now=now,
        ),
    )
    return answer(change_out(view), 202)


def _follow(purpose: LinkPurpose, token: str) -> Response:
    rt = runtime()
    with rt.db.transaction() as session:
        tools = ChangeTools.of(rt)
        step = follow_link(session, tools, purpose, token, actor=_actor(), now=utcnow())
    response = answer(change_out(step.view, address_restored=step.address_restored))
    send_after_answer(rt, response, step)
    return response


LINK_ERRORS = problem_responses(400, 409, 410, 413, 415, 422, 429, 503)


@api.post(
    "/email-change/confirm",
    tags=[TAG],
    responses={200: EmailChangeOut, **LINK_ERRORS},
)
@requires_scope(Scope.EMAIL_CHANGE_WRITE)
@rate_limit("rate_limit_step_up")
def confirm_email_change(body: LinkTokenBody) -> Response:
    """Confirm with the token of the confirmation link (for a login service hosting its own
    page; Leakguard's `GET /email-change/confirm` page does the same). Applies the change:
    `GET /v1/accounts/{id}` then shows the new address and `email_changed_at`. Single use:
    409 `request_closed` for a link of a closed request (used already, reverted,
    cancelled, replaced, superseded by another change of the address, denied), 410
    `link_expired`, 400 `link_invalid` only for a token that never was one (or of a
    replaced confirmation link). Two confirmations at once apply once."""
    return _follow(LinkPurpose.CONFIRM, body.token)


@api.post(
    "/email-change/revert",
    tags=[TAG],
    responses={200: EmailChangeOut, **LINK_ERRORS},
)
@requires_scope(Scope.EMAIL_CHANGE_WRITE)
@rate_limit("rate_limit_step_up")
def revert_email_change(body: LinkTokenBody) -> Response:
    """Revert with the token of the alert's link, within 7 days, before or after
    confirmation: the old address comes back, the request is void, no new change for
    `LEAKGUARD_EMAIL_CHANGE_COOLDOWN_HOURS` (409 `cooling_off`), trusted devices end and
    the risk check answers `step_up` (`email_change_reverted`) until support clears it.
    `address_restored` says whether the old address is the account's again: false when
    the change had not taken effect, when the login service has set another address since,
    or when another account holds the old address now (never two accounts on one address:
    the revert still voids the change and holds the account, and support is told by the
    audit event `email_change.revert_unrestored`)."""
    return _follow(LinkPurpose.REVERT, body.token)
