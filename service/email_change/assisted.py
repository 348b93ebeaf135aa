"""Support-assisted email change (issue 14, part 2, item 7): for people who lost the old
mailbox, the common support case after a leak.

Support files the request with its ticket (no step-up: the person cannot pass one); it
waits for review in a queue, accounts with an open exposure first, then oldest. A second
person approves or denies it, with a reason. Approval sends the same two messages as a
self-service change (the confirmation link to the new address, the alert with the revert
link to the old), so the new mailbox still proves itself and the old one can still undo
it. Every step is audited, addresses masked. The staff page builds on these functions.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, select
from sqlalchemy.orm import Session

from service.email_change.audit import audit_step
from service.email_change.context import ChangeTools
from service.email_change.errors import (
    AddressUnchanged,
    AssistedRequestOpen,
    RequestClosed,
    RequestNotFound,
)
from service.email_change.holds import check_cooling_off
from service.email_change.mail import queue_mail
from service.email_change.request import (
    CONFIRM_AND_ALERT,
    arm_links,
    check_new_address,
    check_still_free,
    close,
    lock_account,
    new_request,
    open_request,
    supersede_open,
)
from service.email_change.views import ChangeStep, ChangeView
from service.errors import ValidationFailed
from service.models import Account, ChangePriority, ChangeState, EmailChangeRequest
from service.stepup.services import open_exposure

TICKET_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:#/-]{0,99}")
MAX_NAME_CHARS = 200  # the width of requested_by / reviewed_by: a staff member's email fits
MAX_REASON_CHARS = 500


def _ticket(ticket: str) -> str:
    if not TICKET_PATTERN.fullmatch(ticket):
        raise ValidationFailed("the ticket must be 1-100 letters, digits or . _ : # / -")
    return ticket


def _text(value: str, name: str, limit: int) -> str:
    value = value.strip()
    if not value or len(value) > limit or not value.isprintable():
        raise ValidationFailed(f"{name} must be 1-{limit} printable characters")
    return value


def _reason(reason: str) -> str:
    """A reviewer's reason as stored: each run of whitespace one space, as every other
    reason of support (``check_reason``): one pasted from a ticket holds tabs and line
    breaks, and was refused as "--reason must be 1-500 printable characters", a CLI flag
    named on the staff page. Named in words for every face."""
    return _text(" ".join(reason.split()), "the reason", MAX_REASON_CHARS)


def request_assisted(
    session: Session,
    tools: ChangeTools,
    external_id: str,
    new_email: str,
    *,
    ticket: str,
    accept_leaked: bool = False,
    cancel_open: bool = False,
    actor: str,
    now: datetime,
) -> ChangeView:
    """File a change for review (state ``awaiting_review``); nothing is mailed yet.

    The same address checks and cooling-off as a self-service request. At most one open
    request per account (issue 17, item 4): an open support-assisted request (awaiting
    review, or approved and awaiting confirmation) is another agent's work under its own
    ticket, so a second one is refused (AssistedRequestOpen, naming that ticket) unless
    ``cancel_open`` says the operator means to cancel it; it is then closed as
    ``replaced``, audited. An open self-service request is replaced, as a newer
    self-service one would replace it (audited ``email_change.replaced``). Raises NotFound,
    ValidationFailed, InvalidEmail, AddressUnchanged, AddressInUse, AddressLeaked,
    CoolingOff, AssistedRequestOpen, and then whatever ``tools.admit`` raises (the caller's
    budget, which only an accepted request uses). Does not commit.
    """
    ticket = _ticket(ticket)
    account = lock_account(session, external_id)
    check_cooling_off(session, account.id, now=now)
    address = check_new_address(session, tools, account, new_email, accept_leaked=accept_leaked)
    current = open_request(session, account.id)
    if current is not None and current.assisted and not cancel_open:
        raise AssistedRequestOpen(current.id, current.ticket or "-", current.state)
    tools.admit()  # only an accepted request counts against the budgets
    supersede_open(session, account.id, actor=actor, external_id=external_id, now=now)
    request = new_request(
        session,
        tools,
        account,
        address,
        state=ChangeState.AWAITING_REVIEW,
        assurance_jti=None,
        requested_by=actor,
        ticket=ticket,
        now=now,
    )
    audit_step(
        session,
        request,
        external_id,
        "assisted_requested",
        actor=actor,
        now=now,
        ticket=ticket,
        accepted_leaked=address.leaked,
    )
    return ChangeView.of(session, request)


@dataclass(frozen=True, slots=True)
class QueuedRequest:
    view: ChangeView
    external_id: str
    open_exposure: bool
    requested_by: str
    account_id: int  # the row id, for a page to link to the account

    def to_json(self) -> dict[str, object]:
        return {
            "request_id": self.view.request_id,
            "account_id": self.external_id,
            "state": self.view.state,
            "priority": self.view.priority,
            "open_exposure": self.open_exposure,
            "new_email": self.view.new_email,
            "old_email": self.view.old_email,
            "ticket": self.view.ticket,
            "address_leaked": self.view.address_leaked,
            "requested_by": self.requested_by,
            "created_at": self.view.created_at.isoformat(),
        }


def review_queue(session: Session) -> list[QueuedRequest]:
    """Requests waiting for review: accounts with an open exposure now first, then oldest."""
    exposed = open_exposure(EmailChangeRequest.__table__.c.account_id)
    rows = session.execute(
        select(EmailChangeRequest, Account.external_id, exposed.label("exposed"))
        .join(Account, Account.id == EmailChangeRequest.account_id)
        .where(EmailChangeRequest.state == ChangeState.AWAITING_REVIEW)
        .order_by(case((exposed, 0), else_=1), EmailChangeRequest.created_at)
    ).all()
    return [
        QueuedRequest(
            ChangeView.of(session, request),
            external_id,
            bool(flag),
            request.requested_by,
            request.account_id,
        )
        for request, external_id, flag in rows
    ]


def _waiting(session: Session, request_id: str) -> EmailChangeRequest:
    request = session.scalars(
        select(EmailChangeRequest).where(EmailChangeRequest.id == request_id).with_for_update()
    ).first()
    if request is None:
        raise RequestNotFound(f"no email-change request {request_id!r}")
    if request.state is not ChangeState.AWAITING_REVIEW:
        raise RequestClosed(f"the request is {request.state.value}, not awaiting review")
    return request


# The channel prefixes an actor may carry: ``cli:NAME`` (the operating-system user of a
# command), ``api:NAME`` (the API client), ``staff:NAME`` (the staff page).
ACTOR_CHANNELS = ("cli", "api", "staff")


def person(actor: str) -> str:
    """Who an actor name stands for, whichever way it came in: the channel prefix off,
    Unicode compatibility forms folded (NFKC), case folded, spaces trimmed, so that
    ``cli:Alice``, ``api:alice`` and ``--by " ALICE "`` are one person (four eyes).

    The staff site names its members by their email (``staff:alice@example.com``, see
    ``service.staff.users.staff_person``), never by their row id: an id is no person, and
    ``staff:7`` would be the same "person" as a CLI user named ``7``. So a staff member
    and an operator who files with ``--by alice@example.com`` (or whose login name is the
    address) are one person too."""
    name = unicodedata.normalize("NFKC", actor).strip()
    channel, sep, rest = name.partition(":")
    if sep and channel.strip().casefold() in ACTOR_CHANNELS:
        name = rest
    return name.strip().casefold()


def approve(
    session: Session,
    tools: ChangeTools,
    request_id: str,
    *,
    by: str,
    reason: str,
    now: datetime,
) -> ChangeStep:
    """Approve a waiting request: it awaits confirmation from the new address, and both
    messages go out. Whoever filed it cannot approve it (four eyes: ``person`` of both
    names, so a channel prefix or another spelling of the name does not pass). Raises
    RequestNotFound, RequestClosed, ValidationFailed, AddressInUse. Does not commit."""
    by = _text(by, "--by", MAX_NAME_CHARS)
    reason = _reason(reason)
    request = _waiting(session, request_id)
    if person(request.requested_by) == person(by):
        raise ValidationFailed("a request is approved by someone other than who filed it")
    account = session.get_one(Account, request.account_id, with_for_update=True)
    check_cooling_off(session, account.id, now=now)
    if account.email_key == request.new_email_key:
        raise AddressUnchanged("the account has the new address already")
    check_still_free(session, account, request.new_email_key)
    # The alert goes to the address the account has now, which may have changed since the
    # request was filed; the revert link restores that one.
    request.old_email = account.email
    request.old_email_key = account.email_key
    # The mail goes out now: ahead of campaigns if a leak names the account now.
    exposed = session.scalar(select(open_exposure(account.id)))
    request.priority = ChangePriority.HIGH if exposed else ChangePriority.NORMAL
    request.state = ChangeState.AWAITING_CONFIRMATION
    request.reviewed_by = by
    request.review_reason = reason
    arm_links(tools, request, now=now)
    session.flush()
    notices = queue_mail(session, request.id, request.account_id, CONFIRM_AND_ALERT, now=now)
    audit_step(session, request, account.external_id, "approved", actor=by, now=now, reason=reason)
    return ChangeStep(ChangeView.of(session, request), notices)


def deny(session: Session, request_id: str, *, by: str, reason: str, now: datetime) -> ChangeView:
    """Deny a waiting request; nothing is mailed. Raises RequestNotFound, RequestClosed,
    ValidationFailed. Does not commit."""
    by = _text(by, "--by", MAX_NAME_CHARS)
    reason = _reason(reason)
    request = _waiting(session, request_id)
    request.reviewed_by = by
    request.review_reason = reason
    close(session, request, ChangeState.DENIED, now=now)
    external_id = session.get_one(Account, request.account_id).external_id
    audit_step(session, request, external_id, "denied", actor=by, now=now, reason=reason)
    return ChangeView.of(session, request)
