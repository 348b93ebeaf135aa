"""The staff site's queues: assisted email changes waiting for review, warnings that
failed for good, and bulk actions on a filtered set of exposures.

The review queue is ``email-change queue``'s own (``review_queue``: accounts with an open
exposure first, then oldest; at most one open request per account, a unique index); the
failed warnings are ``notices failed``'s, for every leak at once. A bulk action always
counts first (a dry run that changes nothing), and acts only when told the count it was
shown: a set that grew or shrank since is refused, not acted on. The exposures end through
``end_exposures``, the one rule for a support verdict (``end_exposure`` is it for one
account), each with its own audit row, in a handful of statements for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, Select, func, select
from sqlalchemy.orm import Session

from service.email_change.assisted import QueuedRequest, review_queue
from service.errors import LeakguardError
from service.leaks.catalogue import find_leak
from service.leaks.lifecycle import Ending, NoOpenExposure, end_exposures
from service.leaks.retract import check_reason
from service.models import (
    Account,
    Exposure,
    ExposureKind,
    ExposureState,
    Leak,
    Notice,
    NoticeKind,
    NoticeState,
)
from service.notices.outbox import FailedNotice, failed_warnings

MAX_BULK = 5000  # exposures one bulk action ends; a larger set takes several


def email_change_queue(session: Session) -> list[QueuedRequest]:
    """Assisted requests waiting for review, exposed accounts first, then oldest."""
    return review_queue(session)


# Failed warnings a page lists per leak: a relay that refused a campaign fails every one of
# its warnings, and a page of 100,000 rows (14 MB) helps nobody; retry takes them all.
MAX_FAILED_SHOWN = 500


@dataclass(frozen=True, slots=True)
class FailedByLeak:
    leak: str
    retracted: bool  # its warnings stay cancelled: nothing to retry
    notices: tuple[FailedNotice, ...]  # the oldest MAX_FAILED_SHOWN
    total: int  # every failed warning of the leak

    @property
    def more(self) -> int:
        """Failed warnings of the leak not listed."""
        return self.total - len(self.notices)


def _failed(*conditions: ColumnElement[bool]) -> Select[int]:
    return select(func.count()).where(
        Notice.kind == NoticeKind.LEAK_WARNING, Notice.state == NoticeState.FAILED, *conditions
    )


def count_failed_notices(session: Session) -> int:
    """Every warning that failed for good, all leaks together (the queues page's figure)."""
    return int(session.scalar(_failed()) or 0)


def failed_notices(session: Session, *, slug: str | None = None) -> list[FailedByLeak]:
    """The warnings that failed for good, by leak (newest leak first), addresses masked:
    the oldest MAX_FAILED_SHOWN of each leak and how many it has in all.

    ``slug`` narrows to one leak (NotFound if there is none).
    """
    query = (
        select(
            Leak.id,
            Leak.slug,
            Leak.retracted_at,
            _failed(Notice.leak_id == Leak.id).scalar_subquery(),
        )
        .where(
            select(Notice.id)
            .where(
                Notice.leak_id == Leak.id,
                Notice.kind == NoticeKind.LEAK_WARNING,
                Notice.state == NoticeState.FAILED,
            )
            .exists()
        )
        .order_by(Leak.created_at.desc(), Leak.id.desc())
    )
    if slug is not None:
        query = query.where(Leak.id == find_leak(session, slug).id)
    return [
        FailedByLeak(
            leak_slug,
            retracted is not None,
            tuple(failed_warnings(session, leak_id=i, limit=MAX_FAILED_SHOWN)),
            int(total),
        )
        for i, leak_slug, retracted, total in session.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class ExposureFilter:
    """The exposures a bulk action is for: the open ones of leak ``leak``, of ``kind`` if
    given."""

    leak: str
    kind: ExposureKind | None = None


class CountChanged(LeakguardError):
    """The set is not the one counted: the page shows the new count to confirm."""

    status = 409
    code = "count_changed"
    title = "The set changed since it was counted"


@dataclass(frozen=True, slots=True)
class BulkOutcome:
    filter: ExposureFilter
    dry_run: bool
    matched: int  # exposures the filter names now
    ended: int  # exposures this call ended (0 for a dry run)
    left: int  # still open after it (over MAX_BULK)


def _selection(session: Session, wanted: ExposureFilter) -> list[tuple[int, str]]:
    """(account id, external id) of each open exposure the filter names, oldest first."""
    leak = find_leak(session, wanted.leak)
    query = (
        select(Account.id, Account.external_id)
        .join(Exposure, Exposure.account_id == Account.id)
        .where(Exposure.leak_id == leak.id, Exposure.state == ExposureState.OPEN)
        .order_by(Exposure.id)
    )
    if wanted.kind is not None:
        query = query.where(Exposure.kind == wanted.kind)
    return [(account_id, external_id) for account_id, external_id in session.execute(query)]


def count_exposures(session: Session, wanted: ExposureFilter) -> int:
    """How many open exposures the filter names now; raise NotFound for no such leak."""
    leak = find_leak(session, wanted.leak)
    query = select(func.count()).where(
        Exposure.leak_id == leak.id, Exposure.state == ExposureState.OPEN
    )
    if wanted.kind is not None:
        query = query.where(Exposure.kind == wanted.kind)
    return int(session.scalar(query) or 0)


def bulk_end_exposures(
    session: Session,
    wanted: ExposureFilter,
    *,
    action: str,
    reason: str,
    actor: str,
    now: datetime,
    dry_run: bool = True,
    confirmed_count: int | None = None,
) -> BulkOutcome:
    """Dismiss (``action`` "dismiss") or resolve ("resolve") every open exposure the filter
    names, up to MAX_BULK (the oldest first), as ``end_exposure`` would end each in turn
    (its own audit row, its warning cancelled on a dismissal, the risk level told), in a
    handful of statements (``end_exposures``): the whole batch fits in one request.

    A dry run (the default) counts and changes nothing. Acting needs ``confirmed_count``,
    the count the dry run showed: raises CountChanged if the set is another size now, or
    changes while it is being ended.
    Raises ValidationFailed (reason), NotFound. Does not commit.
    """
    check_reason(reason)  # refused even on a dry run; end_exposures stores it masked
    accounts = _selection(session, wanted)
    if dry_run:
        return BulkOutcome(wanted, True, len(accounts), 0, len(accounts))
    if confirmed_count != len(accounts):
        raise CountChanged(
            f"{len(accounts)} open exposures match now, not {confirmed_count}: count again"
        )
    batch = accounts[:MAX_BULK]
    leak = find_leak(session, wanted.leak)
    try:
        end_exposures(
            session,
            Ending(leak.id, wanted.leak, action),
            batch,
            reason=reason,
            actor=actor,
            now=now,
        )
    except NoOpenExposure:
        # Another act ended one of them after the count (the same confirmation sent twice,
        # a colleague's): the set is not the one confirmed. The caller rolls back.
        raise CountChanged("the set changed while it was being ended: count again") from None
    return BulkOutcome(wanted, False, len(accounts), len(batch), len(accounts) - len(batch))
