"""The outbox: one row per message to one person, and its state machine.

Rows are created in the same transaction as what causes them (``create_leak_warnings``
beside the exposure), so a crash can never leave an exposure without its warning or a
warning without its exposure; the queue only carries rows that exist. Then:
pending -> queued -> sending -> sent | failed. A failed warning can be tried again
(``retry_failed_warnings``: back to pending); a warning not sent yet can be cancelled
(``cancel_leak_warnings``: the operator's ``notices cancel``, or its leak retracted).

The notice row, not the queue, is the truth until the SMTP server accepts the message
(rq/rq #1461, #2015: a killed worker's job can vanish). So:

- the relay marks rows ``queued`` only in the transaction that follows a successful
  enqueue; with Redis down, rows stay ``pending`` and the next relay takes them;
- a worker claims a row (``sending``, with a lease) in its own transaction before sending,
  so a second delivery of the same job finds nothing to do;
- a row left ``sending`` past its lease (the worker died) or ``queued`` too long (its job
  was lost with Redis) goes back to ``pending``.

The one window left: a worker killed after the SMTP server accepted a message and before
its row is marked ``sent``. The row goes back to ``pending`` when its lease ends and the
person gets the message twice. A worker writes its ``sent`` rows in groups, by a thread
beside the sending, a group every 25 messages or 0.5 s (``jobs.deliver.SentRecorder``), and
the sending waits whenever 49 accepted rows are not yet committed, so the window is at most
50 messages per killed worker (``RECORD_EVERY_MESSAGES``), the one in flight at the kill
included; below 100 messages a second, about what was accepted in the last half second.
A worker pipelining SMTP (RFC 2920) has at most one message past its 354 at a time.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import cast

from sqlalchemy import (
    Table,
    and_,
    bindparam,
    case,
    exists,
    func,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from service.addresses import mask_addresses, mask_email
from service.db import among, bulk, rowcount
from service.models import (
    Account,
    Campaign,
    ChallengeState,
    ChangePriority,
    ChangeState,
    EmailChangeRequest,
    Exposure,
    ExposureKind,
    Leak,
    Notice,
    NoticeKind,
    NoticeState,
    StepUpChallenge,
)

# Warnings not sent and not in a worker's hands: what a cancellation stops.
UNSENT = (NoticeState.PENDING, NoticeState.QUEUED, NoticeState.FAILED)

SEND_LEASE = timedelta(minutes=5)
QUEUED_TIMEOUT = timedelta(hours=1)
MAX_TRANSIENT_ATTEMPTS = 8
BACKOFF_BASE = timedelta(seconds=30)
BACKOFF_MAX = timedelta(hours=2)


NOTICE_TABLE = cast(Table, Notice.__table__)


def create_leak_warnings(
    session: Session, account_ids: Iterable[int], *, leak_id: int, now: datetime
) -> int:
    """Add one pending leak warning per account; return how many are new. Does not commit.

    Idempotent: an account already warned about this leak gets no second row.
    """
    return bulk.insert_notices(
        session,
        NOTICE_TABLE,
        list(account_ids),
        leak_id=leak_id,
        kind=NoticeKind.LEAK_WARNING.value,
        state=NoticeState.PENDING.value,
        now=now,
    )


@dataclass(frozen=True, slots=True)
class ClaimedNotice:
    id: int
    kind: NoticeKind
    recipient: str
    locale: str | None
    leak_id: int | None
    leak_name: str | None  # in every language without its own in leak_names
    leak_names: dict[str, str] | None
    leak_date: date | None  # the leak's own date, as the operator gave it
    challenge_id: str | None
    password_leaked: bool
    # The email-change kinds: their request, its link generation and addresses.
    email_change_id: str | None = None
    link_generation: int = 0
    new_email: str | None = None
    requested_at: datetime | None = None


# The email-change messages, and the states of their request in which each still says
# something true: a confirmation link only while the request waits for it, the alert while
# the change can still be reverted, the "now your address" once it is confirmed.
EMAIL_CHANGE_KINDS = (
    NoticeKind.EMAIL_CHANGE_CONFIRM,
    NoticeKind.EMAIL_CHANGE_ALERT,
    NoticeKind.EMAIL_CHANGED,
)
_SENDABLE_IN = {
    NoticeKind.EMAIL_CHANGE_CONFIRM: (ChangeState.AWAITING_CONFIRMATION,),
    NoticeKind.EMAIL_CHANGE_ALERT: (ChangeState.AWAITING_CONFIRMATION, ChangeState.CONFIRMED),
    NoticeKind.EMAIL_CHANGED: (ChangeState.CONFIRMED,),
}


def _is_high_priority() -> ColumnElement[bool]:
    """A notice that goes on the high queue: an emailed code, or the mail of an email change
    of an account with an open exposure (its request's priority)."""
    high_change = exists().where(
        EmailChangeRequest.id == Notice.email_change_id,
        EmailChangeRequest.priority == ChangePriority.HIGH,
    )
    return or_(Notice.kind == NoticeKind.STEP_UP_CODE, high_change)


def due_notices(
    session: Session, *, limit: int, now: datetime
) -> list[tuple[int, NoticeKind, bool]]:
    """Pending notices that may go now, as (id, kind, high priority), high priority first,
    then oldest first; locked for this relay.

    On PostgreSQL, ``SKIP LOCKED`` lets several relays run at once without taking the
    same rows; a paused campaign's notices wait.
    """
    paused = exists().where(Campaign.leak_id == Notice.leak_id, Campaign.paused.is_(True))
    high = _is_high_priority()
    query = (
        select(Notice.id, Notice.kind, high.label("high"))
        .where(
            Notice.state == NoticeState.PENDING,
            or_(Notice.not_before.is_(None), Notice.not_before <= now),
            ~paused,
        )
        .order_by(case((high, 0), else_=1), Notice.id)
        .limit(limit)
    )
    # SQLite, with one writer, has no row locks: SQLAlchemy leaves the clause out there.
    query = query.with_for_update(skip_locked=True, of=Notice)
    return [(row.id, row.kind, bool(row.high)) for row in session.execute(query)]


def mark_queued(session: Session, notice_ids: Sequence[int], *, now: datetime) -> None:
    session.execute(
        update(Notice)
        .where(among(Notice.id, notice_ids), Notice.state == NoticeState.PENDING)
        .values(state=NoticeState.QUEUED, queued_at=now)
    )


def claim_notices(
    session: Session, notice_ids: Sequence[int], *, now: datetime
) -> list[ClaimedNotice]:
    """Take the rows still waiting (pending or queued) for this worker; skip the rest;
    return them with what their messages need (``claim_notice_ids``, then
    ``claimed_notices``). Idempotent; does not commit."""
    return claimed_notices(session, claim_notice_ids(session, notice_ids, now=now))


def claim_notice_ids(session: Session, notice_ids: Sequence[int], *, now: datetime) -> list[int]:
    """Take the rows still waiting (pending or queued) for this worker; skip the rest;
    return the ids taken.

    Idempotent: a row another worker claimed, or one already sent, is not returned.
    Does not commit: the caller commits the claim before sending anything. The updates
    skip the ORM's session synchronisation: no Notice object is loaded here, and finding
    out cost a third of the claim (an identity lookup per row).
    """
    claimable = and_(
        among(Notice.id, notice_ids),
        Notice.state.in_((NoticeState.PENDING, NoticeState.QUEUED)),
    )
    # A code whose challenge expired or was replaced would only mislead: it is not sent.
    live_challenge = exists().where(
        StepUpChallenge.id == Notice.challenge_id,
        StepUpChallenge.state == ChallengeState.PENDING,
        StepUpChallenge.expires_at > now,
    )
    session.execute(
        update(Notice)
        .where(claimable, Notice.kind == NoticeKind.STEP_UP_CODE, ~live_challenge)
        .execution_options(synchronize_session=False)
        .values(
            state=NoticeState.FAILED,
            last_error="the code expired before it could be sent",
            failed_at=now,
        )
    )
    # A warning of a retracted leak is never sent, even one that was in a job already.
    retracted = exists().where(Leak.id == Notice.leak_id, Leak.retracted_at.is_not(None))
    session.execute(
        update(Notice)
        .where(claimable, retracted)
        .values(state=NoticeState.CANCELLED)
        .execution_options(synchronize_session=False)
    )
    for kind, states in _SENDABLE_IN.items():
        still_true = exists().where(
            EmailChangeRequest.id == Notice.email_change_id, EmailChangeRequest.state.in_(states)
        )
        session.execute(
            update(Notice)
            .where(claimable, Notice.kind == kind, ~still_true)
            .values(state=NoticeState.CANCELLED)
            .execution_options(synchronize_session=False)
        )
    paused = exists().where(Campaign.leak_id == Notice.leak_id, Campaign.paused.is_(True))
    claimed = list(
        session.scalars(
            update(Notice)
            .where(claimable, ~paused)
            .values(
                state=NoticeState.SENDING,
                lease_until=now + SEND_LEASE,
                attempts=Notice.attempts + 1,
            )
            .returning(Notice.id)
            .execution_options(synchronize_session=False)
        )
    )
    # A paused campaign's rows handed to this job go back to wait in the outbox.
    session.execute(
        update(Notice)
        .where(among(Notice.id, notice_ids), Notice.state == NoticeState.QUEUED, paused)
        .values(state=NoticeState.PENDING)
        .execution_options(synchronize_session=False)
    )
    return claimed


def claimed_notices(session: Session, notice_ids: Sequence[int]) -> list[ClaimedNotice]:
    """What the messages of these claimed notices need: recipient, language, leak, code or
    link source; ordered by leak, then id. Reads only: a sender may read them after the
    claim's commit, a part at a time, while it sends the first ones."""
    if not notice_ids:
        return []
    # An email change's message goes to the address its request names, not the account's.
    recipient = case(
        (Notice.kind == NoticeKind.EMAIL_CHANGE_ALERT, EmailChangeRequest.old_email),
        (Notice.kind.in_(EMAIL_CHANGE_KINDS), EmailChangeRequest.new_email),
        else_=Account.email,
    )
    rows = session.execute(
        select(
            Notice.id,
            Notice.kind,
            recipient,
            Account.locale,
            Notice.leak_id,
            Leak.name,
            Leak.names,
            Leak.observed_at,
            Notice.challenge_id,
            Exposure.kind == ExposureKind.CREDENTIAL,
            Notice.email_change_id,
            EmailChangeRequest.link_generation,
            EmailChangeRequest.new_email,
            EmailChangeRequest.created_at,
        )
        .join(Account, Account.id == Notice.account_id)
        .outerjoin(Leak, Leak.id == Notice.leak_id)
        .outerjoin(EmailChangeRequest, EmailChangeRequest.id == Notice.email_change_id)
        .outerjoin(
            Exposure,
            and_(Exposure.account_id == Notice.account_id, Exposure.leak_id == Notice.leak_id),
        )
        .where(among(Notice.id, notice_ids))
        .order_by(Notice.leak_id, Notice.id)
    ).all()
    return [
        ClaimedNotice(
            id=row[0],
            kind=row[1],
            recipient=row[2],
            locale=row[3],
            leak_id=row[4],
            leak_name=row[5],
            leak_names=row[6],
            leak_date=row[7],
            challenge_id=row[8],
            password_leaked=bool(row[9]),
            email_change_id=row[10],
            link_generation=row[11] or 0,
            new_email=row[12],
            requested_at=row[13],
        )
        for row in rows
    ]


def extend_lease(session: Session, notice_ids: Sequence[int], *, now: datetime) -> None:
    """Renew this worker's hold on rows it is still sending: a long batch, a slow relay.

    Only rows still ``sending`` are touched; does not commit.
    """
    session.execute(
        update(Notice)
        .where(among(Notice.id, notice_ids), Notice.state == NoticeState.SENDING)
        .values(lease_until=now + SEND_LEASE)
    )


@dataclass(frozen=True, slots=True)
class SentNotice:
    """A notice the SMTP server accepted (or the mail folder took)."""

    id: int
    message_id: str
    sent_at: datetime


def record_sent(session: Session, sent: Sequence[SentNotice]) -> None:
    """Mark accepted notices ``sent``, all in one executemany statement. Does not commit."""
    if not sent:
        return
    table = NOTICE_TABLE
    session.execute(
        update(table)
        .where(table.c.id == bindparam("notice_id"))
        .values(
            state=NoticeState.SENT,
            sent_at=bindparam("accepted_at"),
            message_id=bindparam("accepted_id"),
            reply_code=250,
            last_error=None,
            lease_until=None,
        ),
        [
            {"notice_id": row.id, "accepted_at": row.sent_at, "accepted_id": row.message_id}
            for row in sent
        ],
    )


def record_failure(
    session: Session,
    notice_id: int,
    *,
    permanent: bool,
    code: int | None,
    error: str | None,
    attempts: int,
    now: datetime,
) -> NoticeState:
    """Record a refusal: permanent (or too many tries) fails the notice, else it waits.

    A permanent refusal also marks the account's address undeliverable, for support.
    Servers quote the address in their refusals: it is stored masked.
    """
    error = mask_addresses(error or "")[:500]
    if permanent or attempts >= MAX_TRANSIENT_ATTEMPTS:
        session.execute(
            update(Notice)
            .where(Notice.id == notice_id)
            .values(
                state=NoticeState.FAILED,
                reply_code=code,
                last_error=error,
                lease_until=None,
                failed_at=now,
            )
        )
        if permanent:
            # Only a message to the account's own address says that address bounces: an
            # email change's mail goes to the old or the proposed address.
            account_id = (
                select(Notice.account_id)
                .where(Notice.id == notice_id, Notice.kind.not_in(EMAIL_CHANGE_KINDS))
                .scalar_subquery()
            )
            session.execute(
                update(Account).where(Account.id == account_id).values(undeliverable_at=now)
            )
        return NoticeState.FAILED
    session.execute(
        update(Notice)
        .where(Notice.id == notice_id)
        .values(
            state=NoticeState.PENDING,
            reply_code=code,
            last_error=error,
            lease_until=None,
            not_before=now + backoff(attempts),
        )
    )
    return NoticeState.PENDING


def backoff(attempts: int) -> timedelta:
    """Exponential: 30 s, 1 min, 2 min ... at most 2 h."""
    delay: timedelta = BACKOFF_BASE * (2 ** max(attempts - 1, 0))
    return min(delay, BACKOFF_MAX)


def release_stale(session: Session, *, now: datetime) -> int:
    """Put back rows whose worker died (lease over) or whose job was lost (queued too long)."""
    expired = session.execute(
        update(Notice)
        .where(
            or_(
                and_(Notice.state == NoticeState.SENDING, Notice.lease_until < now),
                and_(Notice.state == NoticeState.QUEUED, Notice.queued_at < now - QUEUED_TIMEOUT),
            )
        )
        .values(state=NoticeState.PENDING, lease_until=None)
    )
    return rowcount(expired)


def notice_counts(session: Session, *, leak_id: int) -> dict[str, int]:
    rows = session.execute(
        select(Notice.state, func.count()).where(Notice.leak_id == leak_id).group_by(Notice.state)
    ).all()
    return {str(state): count for state, count in rows}


@dataclass(frozen=True, slots=True)
class BounceOutcome:
    matched: int
    unknown: int


def record_bounces(
    session: Session, bounces: Sequence[tuple[str, int | None, str | None]], *, now: datetime
) -> BounceOutcome:
    """Mark the notices named by Message-ID failed and their addresses undeliverable.

    ``bounces`` holds (message_id, reply code, reason) as the mail provider reported them.
    Idempotent: a bounce reported twice changes nothing the second time.
    """
    matched = 0
    for message_id, code, reason in bounces:
        notice = session.scalars(
            select(Notice).where(Notice.message_id == _bracketed(message_id))
        ).one_or_none()
        if notice is None:
            continue
        matched += 1
        notice.state = NoticeState.FAILED
        notice.failed_at = now
        notice.reply_code = code
        # Providers quote the address in their reasons ("5.1.1 user a@x unknown").
        notice.last_error = f"bounced: {mask_addresses(reason or 'no reason given')}"[:500]
        session.execute(
            update(Account)
            .where(Account.id == notice.account_id, Account.undeliverable_at.is_(None))
            .values(undeliverable_at=now)
        )
    return BounceOutcome(matched=matched, unknown=len(bounces) - matched)


def _bracketed(message_id: str) -> str:
    text = message_id.strip()
    return text if text.startswith("<") else f"<{text}>"


def cancel_leak_warnings(session: Session, *, leak_id: int, now: datetime) -> int:
    """Cancel the leak's warnings not sent yet (pending, queued, failed); count them.

    A warning a worker holds (``sending``) is left alone: it may be on the wire already.
    Idempotent. Does not commit.
    """
    result = session.execute(
        update(Notice)
        .where(
            Notice.leak_id == leak_id,
            Notice.kind == NoticeKind.LEAK_WARNING,
            Notice.state.in_(UNSENT),
        )
        .values(state=NoticeState.CANCELLED, lease_until=None, not_before=None)
    )
    return rowcount(result)


def count_unsent_warnings(session: Session, *, leak_id: int) -> int:
    return int(
        session.scalar(
            select(func.count()).where(
                Notice.leak_id == leak_id,
                Notice.kind == NoticeKind.LEAK_WARNING,
                Notice.state.in_(UNSENT),
            )
        )
        or 0
    )


@dataclass(frozen=True, slots=True)
class FailedNotice:
    """A warning that failed for good, as an operator sees it: the address masked."""

    id: int
    address: str  # masked
    reason: str
    reply_code: int | None
    attempts: int
    failed_at: datetime | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "address": self.address,
            "reason": self.reason,
            "reply_code": self.reply_code,
            "attempts": self.attempts,
            "failed_at": self.failed_at.isoformat() if self.failed_at else None,
        }


def failed_warnings(
    session: Session, *, leak_id: int, limit: int | None = None
) -> list[FailedNotice]:
    """The leak's failed warnings, oldest first, addresses masked (in reasons too); the
    first ``limit`` only if given (a page shows a bounded list)."""
    rows = session.execute(
        select(
            Notice.id,
            Account.email,
            Notice.last_error,
            Notice.reply_code,
            Notice.attempts,
            Notice.failed_at,
        )
        .join(Account, Account.id == Notice.account_id)
        .where(Notice.leak_id == leak_id, Notice.state == NoticeState.FAILED)
        .order_by(Notice.id)
        .limit(limit)
    ).all()
    return [
        FailedNotice(
            id=row.id,
            address=mask_email(row.email),
            # Rows failed before reasons were masked on the way in may still quote one.
            reason=mask_addresses(row.last_error or "no reason recorded"),
            reply_code=row.reply_code,
            attempts=row.attempts,
            failed_at=row.failed_at,
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class RetryOutcome:
    retried: tuple[int, ...]
    not_failed: tuple[int, ...]  # ids asked for that are no failed warning of this leak


def retry_failed_warnings(
    session: Session, *, leak_id: int, ids: Sequence[int] | None = None
) -> RetryOutcome:
    """Put the leak's failed warnings (or those of ``ids``) back to pending, as new.

    Attempts and backoff start over. Retrying says the failure was not the address's
    fault (a relay refusing everyone, a quota): the accounts' undeliverable mark is lifted,
    and a new bounce sets it again. The caller relays after commit. Does not commit.
    """
    condition = and_(
        Notice.leak_id == leak_id,
        Notice.kind == NoticeKind.LEAK_WARNING,
        Notice.state == NoticeState.FAILED,
    )
    if ids is not None:
        condition = and_(condition, Notice.id.in_(list(ids)))
    retried = sorted(
        session.scalars(
            update(Notice)
            .where(condition)
            .values(
                state=NoticeState.PENDING,
                attempts=0,
                not_before=None,
                lease_until=None,
                failed_at=None,
                reply_code=None,
            )
            .returning(Notice.id)
        )
    )
    if retried:
        accounts = select(Notice.account_id).where(Notice.id.in_(retried))
        session.execute(
            update(Account).where(Account.id.in_(accounts)).values(undeliverable_at=None)
        )
    missing = tuple(sorted(set(ids or ()) - set(retried)))
    return RetryOutcome(tuple(retried), missing)
