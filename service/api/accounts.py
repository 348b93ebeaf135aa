"""/v1/accounts: the login service keeps Leakguard's mirror of its accounts in step."""

from __future__ import annotations

from dataclasses import asdict

from flask import Response
from flask_openapi3 import Tag

from service.accounts import (
    AccountInput,
    UpsertOutcome,
    delete_account,
    get_account,
    upsert_account,
    upsert_accounts,
)
from service.api import api
from service.api.auth import requires_scope, runtime
from service.api.email_change import pending_out
from service.api.email_change_schemas import AccountWithChangeOut
from service.api.limits import no_rate_limit
from service.api.problems import problem_responses
from service.api.schemas import (
    AccountBatchBody,
    AccountBatchOut,
    AccountBatchResult,
    AccountBody,
    AccountPath,
    AccountUpsertOut,
    OpenExposureOut,
    UndeliverableOut,
    answer,
)
from service.clients import Scope
from service.db import run_in_transaction, utcnow
from service.email_change.request import pending_change
from service.errors import ValidationFailed
from service.security_state import security_state

TAG = Tag(name="accounts", description="The mirror of the login service's accounts")
BODY_ERRORS = (400, 413, 415, 422)
# The login service keeps its own accounts in step: its calls follow its sign-ups and
# changes, and a batch is bounded by LEAKGUARD_MAX_BATCH_ACCOUNTS.
ACCOUNT_SYNC = "account sync by the login service, bounded by its own traffic"


@api.put(
    "/accounts/<external_id:external_id>",
    tags=[TAG],
    responses={200: AccountUpsertOut, 201: AccountUpsertOut, **problem_responses(*BODY_ERRORS)},
)
@requires_scope(Scope.ACCOUNTS_WRITE)
@no_rate_limit(ACCOUNT_SYNC)
def put_account(path: AccountPath, body: AccountBody) -> Response:
    """Create the account or change its address or locale.

    201 when created, 200 otherwise (with status updated or unchanged).
    """
    item = AccountInput(external_id=path.external_id, email=body.email, locale=body.locale)
    keys = runtime().keys
    result = run_in_transaction(
        runtime().db, lambda session: upsert_account(session, item, keys=keys, now=utcnow())
    )
    status = 201 if result.outcome is UpsertOutcome.CREATED else 200
    return answer(AccountUpsertOut(**asdict(result.account), status=result.outcome), status)


@api.get(
    "/accounts/<external_id:external_id>",
    tags=[TAG],
    responses={200: AccountWithChangeOut, **problem_responses(404, 422)},
)
@requires_scope(Scope.ACCOUNTS_READ)
@no_rate_limit(ACCOUNT_SYNC)
def read_account(path: AccountPath) -> Response:
    """Return the account as Leakguard knows it, with its security state.

    What a settings or security page needs: the open exposures (leak, kind, since),
    whether the address is undeliverable (since when, and the bounce), whether TOTP is
    enrolled and how many recovery codes are left; a pending email change.
    """
    with runtime().db.read_session() as session:
        view = get_account(session, path.external_id)
        state = security_state(session, path.external_id)
        pending = pending_change(session, path.external_id, now=utcnow())
    undeliverable = state.undeliverable
    return answer(
        AccountWithChangeOut(
            **asdict(view),
            exposures=[
                OpenExposureOut(leak=e.leak, kind=e.kind, since=e.since) for e in state.exposures
            ],
            undeliverable=(
                UndeliverableOut(
                    since=undeliverable.since,
                    reply_code=undeliverable.reply_code,
                    reason=undeliverable.reason,
                )
                if undeliverable is not None
                else None
            ),
            totp_enrolled=state.totp_enrolled,
            recovery_codes_left=state.recovery_codes_left,
            pending_email_change=pending_out(pending) if pending is not None else None,
        )
    )


@api.delete(
    "/accounts/<external_id:external_id>",
    tags=[TAG],
    responses={204: None, **problem_responses(404, 422)},
)
@requires_scope(Scope.ACCOUNTS_WRITE)
@no_rate_limit(ACCOUNT_SYNC)
def remove_account(path: AccountPath) -> tuple[str, int]:
    """Forget the account (it was deleted in the login service)."""
    with runtime().db.transaction() as session:
        delete_account(session, path.external_id)
    return "", 204


@api.post(
    "/accounts:batch",
    tags=[TAG],
    responses={200: AccountBatchOut, **problem_responses(*BODY_ERRORS)},
)
@requires_scope(Scope.ACCOUNTS_WRITE)
@no_rate_limit(ACCOUNT_SYNC)
def batch_upsert_accounts(body: AccountBatchBody) -> Response:
    """Create or update up to 1,000 accounts; invalid items are reported, the rest applied."""
    limit = runtime().settings.max_batch_accounts
    if len(body.accounts) > limit:
        raise ValidationFailed(
            f"at most {limit} accounts per request",
            errors=[
                {
                    "loc": ["accounts"],
                    "msg": f"List should have at most {limit} items, not {len(body.accounts)}",
                    "type": "too_long",
                }
            ],
        )
    items = [
        AccountInput(external_id=item.external_id, email=item.email, locale=item.locale)
        for item in body.accounts
    ]
    keys = runtime().keys
    report = run_in_transaction(
        runtime().db, lambda session: upsert_accounts(session, items, keys=keys, now=utcnow())
    )
    return answer(
        AccountBatchOut(
            created=report.count(UpsertOutcome.CREATED),
            updated=report.count(UpsertOutcome.UPDATED),
            unchanged=report.count(UpsertOutcome.UNCHANGED),
            invalid=report.count(UpsertOutcome.INVALID),
            results=[
                AccountBatchResult(external_id=r.external_id, status=r.outcome, error=r.error)
                for r in report.results
            ],
        )
    )
