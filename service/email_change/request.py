"""Asking for an email change, and what the login service's settings page does with a
pending one: read it, cancel it, send its confirmation again (issue 14, part 2, items 1,
2 and 6).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select, update
from sqlalchemy.orm import Session

from service.accounts import bare_email
from service.addresses.mailbox import Mailbox
from service.db import bulk
from service.email_change.audit import audit_step
from service.email_change.context import ChangeTools
from service.email_change.errors import (
    AddressInUse,
    AddressLeaked,
    AddressUnchanged,
    NoPendingChange,
    StepUpRequired,
)
from service.email_change.holds import check_cooling_off
from service.email_change.leaked import address_in_leak
from service.email_change.mail import cancel_unsent, queue_mail
from service.email_change.tokens import LinkPurpose, token_digest
from service.email_change.views import ChangeStep, ChangeView
from service.errors import NotFound
from service.models import (
    OPEN_STATES,
    Account,
    ChangePriority,
    ChangeState,
    EmailChangeRequest,
    NoticeKind,
)
from service.stepup.assurance import AssuranceTokenExpired, AssuranceTokenInvalid
from service.stepup.services import open_exposure

CONFIRM_AND_ALERT = (NoticeKind.EMAIL_CHANGE_CONFIRM, NoticeKind.EMAIL_CHANGE_ALERT)


@dataclass(frozen=True, slots=True)
class NewAddress:
    """A proposed address, checked: its bare form, its key, whether a leak names it."""

    mailbox: Mailbox
    key: bytes
    leaked: bool


def lock_account(session: Session, external_id: str) -> Account:
    """The account, locked against concurrent changes; NotFound if unknown.

    PostgreSQL: a row lock (FOR UPDATE). SQLite has no row locks, so the transaction takes
    the database's one write lock first, with a write that changes nothing: a concurrent
    step on the account then waits for this one to commit and reads what it wrote, rather
    than both reading the same state and one failing at the end. Call it first.
    """
    if not bulk.is_postgres(session):
        session.execute(
            update(Account)
            .where(Account.external_id == external_id)
            .values(external_id=Account.external_id, updated_at=Account.updated_at)
            .execution_options(synchronize_session=False)
        )
    account = session.scalars(
        select(Account).where(Account.external_id == external_id).with_for_update()
    ).first()
    if account is None:
        raise NotFound(f"no account with the id {external_id!r}")
    return account


def check_new_address(
    session: Session, tools: ChangeTools, account: Account, new_email: str, *, accept_leaked: bool
) -> NewAddress:
    """Validate and canonicalize ``new_email`` for the account; raise on every refusal.

    InvalidEmail (422 ``invalid_email``), AddressUnchanged (422: the same canonical
    address), AddressInUse (409: another account holds it), AddressLeaked (422: in a
    leak not retracted, unless ``accept_leaked``).
    """
    mailbox = bare_email(tools.keys, new_email)
    key = tools.keys.hasher.hash(mailbox.canonical.address)
    if key == account.email_key:
        raise AddressUnchanged("the new address is the account's address, however spelled")
    check_still_free(session, account, key)
    leaked = address_in_leak(session, key)
    if leaked and not accept_leaked:
        raise AddressLeaked(
            "the new address is in a known leak: choose another, or send "
            "accept_leaked_address true if the person insists"
        )
    return NewAddress(mailbox, key, leaked)


def check_still_free(session: Session, account: Account, key: bytes) -> None:
    """Raise AddressInUse (409) if another account holds the canonical address ``key``."""
    taken = session.scalar(
        select(exists().where(Account.email_key == key, Account.id != account.id))
    )
    if taken:
        raise AddressInUse("another account uses this address")


def spend_assurance(
    session: Session, tools: ChangeTools, account: Account, token: str | None, *, now: datetime
) -> str:
    """The jti of a token that vouches for the account as it is now and was never spent on
    an email change; raise StepUpRequired otherwise. Spending it is the caller's insert."""
    if not token:
        raise StepUpRequired("send the assurance_token of a step-up passed just now")
    try:
        assurance = tools.signer.verify(token, external_id=account.external_id, now=now)
    except AssuranceTokenExpired:
        raise StepUpRequired("the assurance token has expired: step up again") from None
    except AssuranceTokenInvalid:
        raise StepUpRequired("the assurance token is not valid for this account") from None
    if not assurance.holds_for(account_id=account.id, epoch=account.security_epoch):
        raise StepUpRequired("the assurance token is not valid for this account")
    spent = session.scalar(
        select(exists().where(EmailChangeRequest.assurance_jti == assurance.token_id))
    )
    if spent:
        raise StepUpRequired("this step-up was used for an email change already: step up again")
    return assurance.token_id


def supersede_open(
    session: Session, account_id: int, *, actor: str, external_id: str, now: datetime
) -> None:
    """Replace the account's open request, if any: its links stop working and its unsent
    messages are cancelled. Does not commit."""
    for request in session.scalars(
        select(EmailChangeRequest).where(
            EmailChangeRequest.account_id == account_id,
            EmailChangeRequest.state.in_(OPEN_STATES),
        )
    ):
        close(session, request, ChangeState.REPLACED, now=now)
        audit_step(session, request, external_id, "replaced", actor=actor, now=now)


def close(
    session: Session, request: EmailChangeRequest, state: ChangeState, *, now: datetime
) -> None:
    """End an open request without applying it; its unsent mail is cancelled.

    The links' hashes stay: the state alone says what a link may still do, so a link of a
    closed request answers 409 ``request_closed`` (not 400 ``link_invalid``, which is kept
    for a token that never was one, or of a replaced generation). A replaced request's
    revert link still works: the old mailbox was told of it, and saying "not me" must stop
    the newer request too (``links.revert_change``)."""
    request.state = state
    request.closed_at = now
    session.flush()
    cancel_unsent(session, request.id, (*CONFIRM_AND_ALERT, NoticeKind.EMAIL_CHANGED))


def new_request(
    session: Session,
    tools: ChangeTools,
    account: Account,
    address: NewAddress,
    *,
    state: ChangeState,
    assurance_jti: str | None,
    requested_by: str,
    ticket: str | None = None,
    now: datetime,
) -> EmailChangeRequest:
    """Insert the request (its links armed if it awaits confirmation). Does not commit."""
    high = session.scalar(select(open_exposure(account.id)))
    request = EmailChangeRequest(
        id=str(uuid.uuid4()),
        account_id=account.id,
        state=state,
        priority=ChangePriority.HIGH if high else ChangePriority.NORMAL,
        old_email=account.email,
        old_email_key=account.email_key,
        new_email=address.mailbox.bare,
        new_email_key=address.key,
        accepted_leaked=address.leaked,
        assurance_jti=assurance_jti,
        assisted=ticket is not None,
        ticket=ticket,
        requested_by=requested_by,
        link_generation=0,
        created_at=now,
    )
    if state is ChangeState.AWAITING_CONFIRMATION:
        arm_links(tools, request, now=now)
    session.add(request)
    session.flush()
    return request


def arm_links(tools: ChangeTools, request: EmailChangeRequest, *, now: datetime) -> None:
    """Store the hashes of the request's confirmation link (current generation) and of its
    revert link, and when each runs out."""
    confirm = tools.tokens.token(request.id, LinkPurpose.CONFIRM, request.link_generation)
    revert = tools.tokens.token(request.id, LinkPurpose.REVERT, 0)
    request.confirm_token_hash = token_digest(confirm)
    request.confirm_expires_at = now + tools.policy.confirm_ttl
    request.revert_token_hash = token_digest(revert)
    request.revert_expires_at = now + tools.policy.revert_ttl


def request_change(
    session: Session,
    tools: ChangeTools,
    external_id: str,
    new_email: str,
    *,
    assurance_token: str | None,
    accept_leaked: bool = False,
    actor: str,
    now: datetime,
) -> ChangeStep:
    """Ask to move the account to ``new_email`` (``POST /v1/accounts/{id}/email-change``).

    Needs the assurance token of a step-up passed for the account as it is now, never spent
    on an email change before (StepUpRequired, 403); then ``tools.admit`` (the caller's
    budget: what follows counts, refusals too); then the address checks of
    ``check_new_address`` and the cooling-off of a recent revert (CoolingOff, 409). A
    newer request replaces the pending one. On success the token is spent (its jti is
    stored with the request) and two messages wait in the outbox: the confirmation link to
    the new address, the alert with the revert link to the old. A refusal writes nothing.
    Raises NotFound for an unknown account. Does not commit.
    """
    account = lock_account(session, external_id)
    jti = spend_assurance(session, tools, account, assurance_token, now=now)
    # From here on every refusal counts: one step-up must not probe addresses unbounded.
    tools.admit()
    check_cooling_off(session, account.id, now=now)
    address = check_new_address(session, tools, account, new_email, accept_leaked=accept_leaked)
    supersede_open(session, account.id, actor=actor, external_id=external_id, now=now)
    request = new_request(
        session,
        tools,
        account,
        address,
        state=ChangeState.AWAITING_CONFIRMATION,
        assurance_jti=jti,
        requested_by=actor,
        now=now,
    )
    notices = queue_mail(session, request.id, account.id, CONFIRM_AND_ALERT, now=now)
    audit_step(
        session,
        request,
        external_id,
        "requested",
        actor=actor,
        now=now,
        accepted_leaked=address.leaked,
    )
    return ChangeStep(ChangeView.of(session, request), notices)


def open_request(session: Session, account_id: int) -> EmailChangeRequest | None:
    return session.scalars(
        select(EmailChangeRequest).where(
            EmailChangeRequest.account_id == account_id,
            EmailChangeRequest.state.in_(OPEN_STATES),
        )
    ).first()


def pending_change(session: Session, external_id: str, *, now: datetime) -> ChangeView | None:
    """The account's open request, or None (a confirmation link that ran out counts as
    none). Raises NotFound for an unknown account."""
    account_id = session.scalar(select(Account.id).where(Account.external_id == external_id))
    if account_id is None:
        raise NotFound(f"no account with the id {external_id!r}")
    request = open_request(session, account_id)
    if request is None or _ran_out(request, now):
        return None
    return ChangeView.of(session, request)


def _ran_out(request: EmailChangeRequest, now: datetime) -> bool:
    return (
        request.state is ChangeState.AWAITING_CONFIRMATION
        and request.confirm_expires_at is not None
        and request.confirm_expires_at <= now
    )


def cancel_change(session: Session, external_id: str, *, actor: str, now: datetime) -> ChangeView:
    """Withdraw the account's open request (``DELETE``); NoPendingChange if there is none.
    Does not commit."""
    account = lock_account(session, external_id)
    request = open_request(session, account.id)
    if request is None:
        raise NoPendingChange()
    close(session, request, ChangeState.CANCELLED, now=now)
    audit_step(session, request, external_id, "cancelled", actor=actor, now=now)
    return ChangeView.of(session, request)


def resend_confirmation(
    session: Session, tools: ChangeTools, external_id: str, *, actor: str, now: datetime
) -> ChangeStep:
    """Send the confirmation link again, as a new link valid for another 24 hours: the
    earlier link stops working (its generation is past). NoPendingChange when nothing
    awaits confirmation, before ``tools.admit`` (the caller's budget, which only a resend
    that goes out uses). Does not commit."""
    account = lock_account(session, external_id)
    request = open_request(session, account.id)
    if request is None or request.state is not ChangeState.AWAITING_CONFIRMATION:
        raise NoPendingChange("no change of this account awaits confirmation")
    tools.admit()
    cancel_unsent(session, request.id, (NoticeKind.EMAIL_CHANGE_CONFIRM,))
    request.link_generation += 1
    confirm = tools.tokens.token(request.id, LinkPurpose.CONFIRM, request.link_generation)
    request.confirm_token_hash = token_digest(confirm)
    request.confirm_expires_at = now + tools.policy.confirm_ttl
    request.resent_at = now
    session.flush()
    notices = queue_mail(
        session, request.id, account.id, (NoticeKind.EMAIL_CHANGE_CONFIRM,), now=now
    )
    audit_step(session, request, external_id, "confirmation_resent", actor=actor, now=now)
    return ChangeStep(ChangeView.of(session, request), notices)


def expire_requests(session: Session, *, now: datetime, limit: int) -> int:
    """Mark up to ``limit`` requests whose confirmation link ran out ``expired``; return how
    many (``leakguard housekeeping``). Their revert link keeps its 7 days: the old mailbox
    may still say the attempt was not theirs. Does not commit."""
    ids = list(
        session.scalars(
            select(EmailChangeRequest.id)
            .where(
                EmailChangeRequest.state == ChangeState.AWAITING_CONFIRMATION,
                EmailChangeRequest.confirm_expires_at <= now,
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return 0
    session.execute(
        update(EmailChangeRequest)
        .where(
            EmailChangeRequest.id.in_(ids),
            EmailChangeRequest.state == ChangeState.AWAITING_CONFIRMATION,
        )
        .values(state=ChangeState.EXPIRED, closed_at=now)
        .execution_options(synchronize_session=False)
    )
    cancel_pending = [NoticeKind.EMAIL_CHANGE_CONFIRM]
    for request_id in ids:
        cancel_unsent(session, request_id, cancel_pending)
    return len(ids)
