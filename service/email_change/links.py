"""Following the links: confirm from the new mailbox, revert from the old (issue 14,
part 2, items 3 to 5). The link pages (``POST /email-change/confirm``) and the login
service's own pages (``POST /v1/email-change/confirm``) both call these.

Each step is one conditional UPDATE on the request's token hash and state, so two
confirmations at once apply once, and a confirmation after a revert (or a revert after
another) finds nothing to do: whichever commits second sees the first's state.

A link's hash stays with its request whatever becomes of it (only a resend replaces the
confirmation link's, with a new generation): the request's state says what the link may
still do. So a link of a request that is closed (confirmed, reverted, cancelled, replaced,
superseded by another change of the address, expired or denied) answers 409
``request_closed`` (410 ``link_expired`` once its time ran out), and 400 ``link_invalid``
is left for a token that never was one (mistyped, forged, of a replaced generation, or
of a request housekeeping has purged).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import and_, exists, or_, select, update
from sqlalchemy.orm import Session

from service.accounts import AddressChangeCause, bare_email, change_address
from service.db.address_locks import lock_addresses
from service.email_change.audit import audit_step
from service.email_change.context import ChangeTools
from service.email_change.errors import LinkExpired, LinkInvalid, RequestClosed
from service.email_change.holds import hold_account
from service.email_change.mail import cancel_unsent, queue_mail
from service.email_change.request import check_still_free, close
from service.email_change.tokens import LinkPurpose, token_digest
from service.email_change.views import ChangeStep, ChangeView
from service.models import OPEN_STATES, Account, ChangeState, EmailChangeRequest, NoticeKind
from service.stepup.devices import end_trust

# What a revert link can still undo: a change not yet confirmed, expired or replaced by a
# newer one (it is voided, with whatever request is open now), or one that took effect (the
# old address comes back). A cancelled or denied request lost its link when it closed.
REVERTIBLE = (
    ChangeState.AWAITING_CONFIRMATION,
    ChangeState.CONFIRMED,
    ChangeState.EXPIRED,
    ChangeState.REPLACED,
)


class Restore(StrEnum):
    """What a revert did with the old address of a change that had taken effect."""

    RESTORED = "restored"
    MOVED_SINCE = "moved_since"  # the login service set another address since: it stays
    TAKEN = "taken"  # another account holds the old address now: support sorts it out


class LinkState(StrEnum):
    USABLE = "usable"
    EXPIRED = "expired"
    CLOSED = "closed"  # the request's state allows this link nothing more
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class LinkCheck:
    """What a link page may show before anything is done: never an address in clear."""

    state: LinkState
    purpose: LinkPurpose
    new_email: str | None = None  # masked


def _find(session: Session, purpose: LinkPurpose, token: str) -> EmailChangeRequest | None:
    digest = token_digest(token)
    if digest is None:
        return None
    column = (
        EmailChangeRequest.confirm_token_hash
        if purpose is LinkPurpose.CONFIRM
        else EmailChangeRequest.revert_token_hash
    )
    return session.scalars(select(EmailChangeRequest).where(column == digest)).first()


def _expires(request: EmailChangeRequest, purpose: LinkPurpose) -> datetime | None:
    if purpose is LinkPurpose.CONFIRM:
        return request.confirm_expires_at
    return request.revert_expires_at


def check_link(session: Session, purpose: LinkPurpose, token: str, *, now: datetime) -> LinkCheck:
    """Look at a link without acting on it (the page a plain GET shows). Writes nothing."""
    request = _find(session, purpose, token)
    if request is None:
        return LinkCheck(LinkState.INVALID, purpose)
    view = ChangeView.of(session, request)
    expires = _expires(request, purpose)
    if expires is None or expires <= now:
        return LinkCheck(LinkState.EXPIRED, purpose, view.new_email)
    allowed = (ChangeState.AWAITING_CONFIRMATION,) if purpose is LinkPurpose.CONFIRM else REVERTIBLE
    if request.state not in allowed:
        return LinkCheck(LinkState.CLOSED, purpose)
    return LinkCheck(LinkState.USABLE, purpose, view.new_email)


def follow_link(
    session: Session,
    tools: ChangeTools,
    purpose: LinkPurpose,
    token: str,
    *,
    actor: str,
    now: datetime,
) -> ChangeStep:
    """Confirm or revert by a link's token: the one domain step of both link paths."""
    if purpose is LinkPurpose.CONFIRM:
        return confirm_change(session, tools, token, actor=actor, now=now)
    return revert_change(session, tools, token, actor=actor, now=now)


def _refusal(session: Session, purpose: LinkPurpose, token: str, now: datetime) -> Exception:
    """Why a token found nothing to do: unknown or used (LinkInvalid), out of time
    (LinkExpired), or its request moved on (RequestClosed)."""
    request = _find(session, purpose, token)
    if request is None:
        return LinkInvalid()
    expires = _expires(request, purpose)
    if expires is None or expires <= now:
        return LinkExpired()
    return RequestClosed(f"the request is {request.state.value}")


def confirm_change(
    session: Session, tools: ChangeTools, token: str, *, actor: str, now: datetime
) -> ChangeStep:
    """The new mailbox proves itself: apply the change (``change_address``: the old
    address's exposures end, the new one is checked against the watch list, trusted devices
    end, earlier assurance tokens stop working), set ``email_changed_at``, tell the new
    address. Single use. Raises LinkInvalid, LinkExpired, RequestClosed (a confirmation
    after a revert, or of a replaced request), AddressInUse (another account took the
    address meanwhile). Does not commit.
    """
    digest = token_digest(token)
    if digest is None:
        raise LinkInvalid()
    request_id = session.scalar(
        update(EmailChangeRequest)
        .where(
            EmailChangeRequest.confirm_token_hash == digest,
            EmailChangeRequest.state == ChangeState.AWAITING_CONFIRMATION,
            EmailChangeRequest.confirm_expires_at > now,
        )
        .values(state=ChangeState.CONFIRMED, confirmed_at=now)
        .returning(EmailChangeRequest.id)
    )
    if request_id is None:
        raise _refusal(session, LinkPurpose.CONFIRM, token, now)
    request = session.get_one(EmailChangeRequest, request_id, populate_existing=True)
    account = session.get_one(Account, request.account_id, with_for_update=True)
    if account.email_key != request.old_email_key:
        # The login service moved the account elsewhere since (PUT /v1/accounts): the alert
        # and its revert link speak of an address it no longer has. Ask again.
        raise RequestClosed("the account's address changed since the request: ask again")
    # Two confirmations of one address for two accounts: the second waits here, then sees
    # the first's account holding it (409 address_in_use, and nothing of it is applied).
    lock_addresses(session, [request.new_email_key])
    check_still_free(session, account, request.new_email_key)
    change_address(
        session,
        tools.keys,
        account,
        bare_email(tools.keys, request.new_email),
        cause=AddressChangeCause.EMAIL_CHANGE_CONFIRMED,
        actor=actor,
        now=now,
    )
    session.flush()
    notices = queue_mail(session, request.id, account.id, (NoticeKind.EMAIL_CHANGED,), now=now)
    audit_step(session, request, account.external_id, "confirmed", actor=actor, now=now)
    return ChangeStep(ChangeView.of(session, request), notices)


def _restore(
    session: Session,
    tools: ChangeTools,
    account: Account,
    request: EmailChangeRequest,
    *,
    actor: str,
    now: datetime,
) -> Restore:
    """Put back the address ``request`` replaced, if the account still has the one it set;
    say what became of it. An address the login service has set since (PUT /v1/accounts) is
    its own later decision and stays. Nor is the old address put back while another account
    holds it (the login service gave it to someone else meanwhile): two accounts would
    hold one address. That is for support to sort out: ``email_change.revert_unrestored``
    is audited, and the revert's hold (step-up on every sign-in until support clears it)
    applies all the same."""
    if account.email_key != request.new_email_key:
        return Restore.MOVED_SINCE
    lock_addresses(session, [request.old_email_key])
    taken = session.scalar(
        select(exists().where(Account.email_key == request.old_email_key, Account.id != account.id))
    )
    if taken:
        audit_step(
            session,
            request,
            account.external_id,
            "revert_unrestored",
            actor=actor,
            now=now,
            reason="another account holds the old address now: support must sort it out",
        )
        return Restore.TAKEN
    change_address(
        session,
        tools.keys,
        account,
        bare_email(tools.keys, request.old_email),
        cause=AddressChangeCause.EMAIL_CHANGE_REVERTED,
        actor=actor,
        now=now,
    )
    return Restore.RESTORED


def revert_change(
    session: Session, tools: ChangeTools, token: str, *, actor: str, now: datetime
) -> ChangeStep:
    """The old mailbox undoes the change, confirmed or not: the old address comes back if
    the change took effect, the request is void, no new change for the cooling-off, every
    trusted device ends and sign-ins step up until support clears the hold. Single use.
    Raises LinkInvalid, LinkExpired, RequestClosed. Does not commit.
    """
    digest = token_digest(token)
    if digest is None:
        raise LinkInvalid()
    row = session.execute(
        update(EmailChangeRequest)
        .where(
            EmailChangeRequest.revert_token_hash == digest,
            EmailChangeRequest.state.in_(REVERTIBLE),
            EmailChangeRequest.revert_expires_at > now,
        )
        .values(
            # Both links' hashes stay, so a confirmation after the revert (or the revert
            # link used again) is told why it is refused (409 request_closed).
            state=ChangeState.REVERTED,
            reverted_at=now,
            closed_at=now,
        )
        .returning(EmailChangeRequest.id, EmailChangeRequest.state)
    ).first()
    if row is None:
        raise _refusal(session, LinkPurpose.REVERT, token, now)
    request = session.get_one(EmailChangeRequest, row.id, populate_existing=True)
    was_confirmed = request.confirmed_at is not None
    account = session.get_one(Account, request.account_id, with_for_update=True)
    cancel_unsent(
        session,
        request.id,
        (NoticeKind.EMAIL_CHANGE_CONFIRM, NoticeKind.EMAIL_CHANGE_ALERT, NoticeKind.EMAIL_CHANGED),
    )
    # "Not me" stops every change of the account made since, not only this one: the ones in
    # flight are voided, and the ones that took effect are undone, newest first, so that a
    # second change made to outrun this link cannot keep the account.
    later = session.scalars(
        select(EmailChangeRequest)
        .where(
            EmailChangeRequest.account_id == account.id,
            EmailChangeRequest.id != request.id,
            EmailChangeRequest.created_at >= request.created_at,
            or_(
                EmailChangeRequest.state.in_(OPEN_STATES),
                and_(
                    EmailChangeRequest.state == ChangeState.CONFIRMED,
                    EmailChangeRequest.revert_expires_at > now,
                ),
            ),
        )
        .order_by(EmailChangeRequest.created_at.desc())
    ).all()
    for other in later:
        other_confirmed = other.state is ChangeState.CONFIRMED
        close(session, other, ChangeState.REVERTED, now=now)
        other.reverted_at = now
        if other_confirmed:
            _restore(session, tools, account, other, actor=actor, now=now)
        audit_step(
            session,
            other,
            account.external_id,
            "voided_by_revert",
            actor=actor,
            now=now,
            reverted_request=request.id,
        )
    outcome = (
        _restore(session, tools, account, request, actor=actor, now=now) if was_confirmed else None
    )
    restored = outcome is Restore.RESTORED
    if not restored:
        # Whatever a step-up vouched for before the revert (the attacker's, perhaps) ends
        # here too; change_address does the same when it puts the address back.
        account.security_epoch += 1
    end_trust(session, [account.id])
    hold_account(
        session, account.id, request.id, cooling_until=now + tools.policy.cooldown, now=now
    )
    audit_step(
        session,
        request,
        account.external_id,
        "reverted",
        actor=actor,
        now=now,
        restored=restored,
        was_confirmed=was_confirmed,
    )
    return ChangeStep(
        ChangeView.of(session, request),
        address_restored=restored if was_confirmed else None,
        restore_refused=outcome is Restore.TAKEN,
    )
