"""Record security events in the transaction of the change that causes them.

Every function here takes the caller's session and does not commit: the events are
written with the change (an exposure opened or ended, a lock, an address change) or not
at all, one row per event and receiver (``security_event``). Which receivers there are,
and whether sessions are revoked, is the session's ``EventPolicy`` (``policy_of``), set on
every session of a runtime from its settings; with no receiver nothing is recorded.

Risk levels are compared with what the login service was last told (the latest
``risk-level-change`` recorded for the account; ``LOW`` if none), so an event goes out
only when the level it knows is no longer true, however many exposures opened or ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import Table, func, insert, select, text, update
from sqlalchemy.orm import Session

from service.config import Settings
from service.db import bulk
from service.db.address_locks import LOCK_SLOTS
from service.events.types import (
    EventType,
    LoweredBecause,
    RiskLevel,
    account_disabled,
    account_enabled,
    credential_compromise,
    identifier_changed,
    leak_reason,
    risk_level_change,
    session_revoked,
    set_claims,
)
from service.models import (
    Account,
    EventReceiver,
    EventState,
    Exposure,
    ExposureKind,
    ExposureState,
    Leak,
    SecurityEvent,
)

EVENT_POLICY = "leakguard.events"  # the key of the EventPolicy in ``Session.info``
EVENT_TABLE = cast(Table, SecurityEvent.__table__)
RANK = {RiskLevel.LOW: 0, RiskLevel.MEDIUM: 1, RiskLevel.HIGH: 2}


@dataclass(frozen=True, slots=True)
class EventPolicy:
    """Who takes the events (one row each) and whether flags revoke sessions."""

    receivers: tuple[EventReceiver, ...] = ()
    revoke_sessions: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> EventPolicy:
        receivers = []
        if settings.events_push_url is not None:
            receivers.append(EventReceiver.PUSH)
        if settings.events_poll:
            receivers.append(EventReceiver.POLL)
        return cls(tuple(receivers), settings.events_revoke_sessions)

    def session_info(self) -> dict[str, object]:
        """What a session factory puts in ``Session.info`` for ``policy_of`` to find."""
        return {EVENT_POLICY: self}


def policy_of(session: Session) -> EventPolicy:
    """The policy of the runtime that made ``session`` (none: no receiver, nothing recorded)."""
    policy = session.info.get(EVENT_POLICY)
    return policy if isinstance(policy, EventPolicy) else EventPolicy()


@dataclass(slots=True)
class _Event:
    account_id: int
    type: EventType
    payload: dict[str, Any]
    not_before: datetime | None = None  # a scheduled event: due then, issued then


def _record(session: Session, events: Sequence[_Event], *, now: datetime) -> int:
    """Insert one row per event and receiver, in the order given; return how many events."""
    receivers = policy_of(session).receivers
    if not receivers or not events:
        return 0
    external = _external_ids(session, {event.account_id for event in events})
    rows = []
    for event in events:
        if event.account_id not in external:
            continue  # deleted in this transaction: nobody left to tell
        claims = set_claims(
            external[event.account_id], event.type, event.payload, issued=event.not_before or now
        )
        rows += [
            {
                "jti": claims["jti"],
                "receiver": receiver.value,
                "account_id": event.account_id,
                "event_type": event.type.value,
                "claims": claims,
                "state": EventState.PENDING.value,
                "attempts": 0,
                "created_at": now,
                "not_before": event.not_before,
            }
            for receiver in receivers
        ]
    if rows:
        session.execute(insert(EVENT_TABLE), rows)
    return len(rows) // len(receivers)


def _external_ids(session: Session, account_ids: Iterable[int]) -> dict[int, str]:
    ids = sorted(account_ids)
    found: dict[int, str] = {}
    for condition in bulk.in_batches(session, Account.id, ids):
        rows = session.execute(select(Account.id, Account.external_id).where(condition))
        found.update((row.id, row.external_id) for row in rows)
    return found


# --- risk levels -------------------------------------------------------------------------

ACCOUNT_LOCKS = 0x4C52  # "LR": the advisory-lock namespace of risk-level decisions


def lock_accounts(session: Session, account_ids: Sequence[int]) -> None:
    """Serialize risk-level decisions per account until this transaction ends.

    Two transactions flagging one account at once (two leaks ingested in parallel) would
    each compare with what the other has not committed, and the last event sent could say
    MEDIUM of an account now HIGH. On PostgreSQL each account's transaction advisory lock
    (its id folded into ``LOCK_SLOTS`` slots, so an ingest chunk flagging 10,000 accounts
    fits PostgreSQL's shared lock table: service/db/address_locks.py) is taken, in slot
    order, so the second waits and then reads what the first committed;
    SQLite has one writer at a time already. Taken after the transaction's exposures are
    written, for all its accounts at once (an address change takes the same accounts again,
    which it holds already, then new accounts no other transaction can see): a transaction
    never waits for one of these while holding one another waits for, so two of them cannot
    deadlock. (A retraction running while its own leak is ingested can meet an ingest chunk
    the other way round, over the leak's row; PostgreSQL then cancels one of them, and each
    can be run again.)
    """
    if not account_ids or session.get_bind().dialect.name != "postgresql":
        return
    keys = sorted({account_id % LOCK_SLOTS for account_id in account_ids})
    session.execute(
        text(
            "SELECT count(pg_advisory_xact_lock(:namespace, key)) "
            "FROM (SELECT unnest(CAST(:keys AS integer[])) AS key ORDER BY 1) AS ordered"
        ),
        {"namespace": ACCOUNT_LOCKS, "keys": keys},
    )


def risk_levels(session: Session, account_ids: Sequence[int]) -> dict[int, RiskLevel]:
    """Each account's level from its open exposures: HIGH with a leaked password, MEDIUM
    with a leaked address alone, LOW with none."""
    levels = dict.fromkeys(account_ids, RiskLevel.LOW)
    for condition in bulk.in_batches(session, Exposure.account_id, sorted(levels)):
        for account_id, kind in session.execute(
            select(Exposure.account_id, Exposure.kind)
            .where(condition, Exposure.state == ExposureState.OPEN)
            .distinct()
        ):
            level = RiskLevel.HIGH if kind == ExposureKind.CREDENTIAL else RiskLevel.MEDIUM
            if RANK[level] > RANK[levels[account_id]]:
                levels[account_id] = level
    return levels


def announced_levels(session: Session, account_ids: Sequence[int]) -> dict[int, RiskLevel]:
    """The level each account's latest recorded risk-level-change said (absent: none)."""
    said: dict[int, RiskLevel] = {}
    uri = EventType.RISK_LEVEL_CHANGE.value
    for condition in bulk.in_batches(session, SecurityEvent.account_id, sorted(set(account_ids))):
        latest = (
            select(func.max(SecurityEvent.id))
            .where(condition, SecurityEvent.event_type == uri)
            .group_by(SecurityEvent.account_id)
        )
        for account_id, claims in session.execute(
            select(SecurityEvent.account_id, SecurityEvent.claims).where(
                SecurityEvent.id.in_(latest)
            )
        ):
            said[account_id] = RiskLevel(claims["events"][uri]["current_level"])
    return said


def _level_events(
    session: Session, account_ids: Sequence[int], *, reason: str, now: datetime
) -> dict[int, list[_Event]]:
    """Per account whose level changed since last said: its risk-level-change, then (on a
    rise, when sessions are revoked) its session-revoked."""
    ids = sorted(set(account_ids))
    lock_accounts(session, ids)
    current = risk_levels(session, ids)
    said = announced_levels(session, ids)
    revoke = policy_of(session).revoke_sessions
    events: dict[int, list[_Event]] = {}
    for account_id in ids:
        before, now_level = said.get(account_id, RiskLevel.LOW), current[account_id]
        if now_level == before:
            continue
        change = _Event(
            account_id,
            EventType.RISK_LEVEL_CHANGE,
            risk_level_change(now_level, before, reason, at=now),
        )
        events[account_id] = [change]
        if revoke and RANK[now_level] > RANK[before]:
            events[account_id].append(
                _Event(
                    account_id,
                    EventType.SESSION_REVOKED,
                    session_revoked(f"the account's risk rose to {now_level}", at=now),
                )
            )
    return events


def record_risk_level(
    session: Session, account_ids: Sequence[int], *, reason: str, now: datetime
) -> int:
    """Tell the login service the risk level of each of ``account_ids`` whose level changed
    since it was last told; return how many events were recorded. Does not commit.

    Call it after the change (exposures opened or ended) in the same transaction.
    ``reason``: a ``LoweredBecause`` value, or ``leak_reason(slug)`` for a rise.
    """
    if not policy_of(session).receivers:
        return 0
    changes = _level_events(session, account_ids, reason=reason, now=now)
    return _record(session, [event for events in changes.values() for event in events], now=now)


def record_risk_lowered(
    session: Session, account_id: int, *, reason: LoweredBecause | str, now: datetime
) -> int:
    """After exposures of one account ended (``reason``: address_changed, support_resolved,
    dismissed, expired, retracted): its risk-level-change if its level fell. Does not commit."""
    return record_risk_level(session, [account_id], reason=str(reason), now=now)


@dataclass(frozen=True, slots=True)
class Flags:
    """Accounts whose exposure to ``leak_id`` opened or gained the leaked password
    (``account_ids``), those whose password so leaked (``credential_ids``)."""

    leak_id: int
    account_ids: Sequence[int]
    credential_ids: Sequence[int]


def record_flagged(
    session: Session,
    leak_id: int,
    account_ids: Sequence[int],
    *,
    credential_ids: Iterable[int] = (),
    now: datetime,
) -> int:
    """``record_flags`` for one leak."""
    return record_flags(session, [Flags(leak_id, account_ids, list(credential_ids))], now=now)


def record_flags(session: Session, flags: Sequence[Flags], *, now: datetime) -> int:
    """After exposures opened (or gained the leaked password), per account: its
    risk-level-change if its level rose (``risk_reason`` the leak that raised it), then a
    credential-compromise per leak that gave out its password, then session-revoked if
    sessions are revoked. Does not commit; returns how many events were recorded.

    Call it once per transaction, after every exposure of it: the accounts' locks are
    taken together, in one order (``lock_accounts``).
    """
    flags = [f for f in flags if f.account_ids or f.credential_ids]
    if not policy_of(session).receivers or not flags:
        return 0
    leak_ids = sorted({f.leak_id for f in flags})
    slugs = {
        row.id: row.slug
        for row in session.execute(select(Leak.id, Leak.slug).where(Leak.id.in_(leak_ids)))
    }
    raised_by: dict[int, int] = {}  # account -> the leak named as the cause of its rise
    compromised: dict[int, list[int]] = {}
    for f in flags:
        for account_id in f.account_ids:
            raised_by.setdefault(account_id, f.leak_id)
        for account_id in f.credential_ids:
            compromised.setdefault(account_id, []).append(f.leak_id)
            raised_by[account_id] = compromised[account_id][0]  # a HIGH names a password leak
    ids = sorted(set(raised_by) | set(compromised))
    lock_accounts(session, ids)
    current = risk_levels(session, ids)
    said = announced_levels(session, ids)
    revoke = policy_of(session).revoke_sessions
    events: list[_Event] = []
    for account_id in ids:
        before, level = said.get(account_id, RiskLevel.LOW), current[account_id]
        rose = RANK[level] > RANK[before]
        if level != before:
            reason = leak_reason(slugs.get(raised_by[account_id], str(raised_by[account_id])))
            payload = risk_level_change(level, before, reason, at=now)
            events.append(_Event(account_id, EventType.RISK_LEVEL_CHANGE, payload))
        for leak_id in compromised.get(account_id, []):
            payload = credential_compromise(slugs.get(leak_id, str(leak_id)), at=now)
            events.append(_Event(account_id, EventType.CREDENTIAL_COMPROMISE, payload))
        if rose and revoke:
            payload = session_revoked(f"the account's risk rose to {level}", at=now)
            events.append(_Event(account_id, EventType.SESSION_REVOKED, payload))
    return _record(session, events, now=now)


# --- the address ---------------------------------------------------------------------------


def record_identifier_changed(
    session: Session, account_id: int, new_email: str, *, now: datetime
) -> int:
    """An email change was confirmed or reverted: RISC identifier-changed carrying the
    address the account has from now on, then session-revoked when sessions are revoked.
    Does not commit."""
    return record_identifiers_changed(session, [(account_id, new_email)], now=now)


def record_identifiers_changed(
    session: Session, changes: Sequence[tuple[int, str]], *, now: datetime
) -> int:
    """``record_identifier_changed`` for many (account id, new address) pairs at once."""
    revoke = policy_of(session).revoke_sessions
    events: list[_Event] = []
    for account_id, new_email in changes:
        payload = identifier_changed(new_email, at=now)
        events.append(_Event(account_id, EventType.IDENTIFIER_CHANGED, payload))
        if revoke:
            payload = session_revoked("the account's address changed", at=now)
            events.append(_Event(account_id, EventType.SESSION_REVOKED, payload))
    return _record(session, events, now=now)


# --- step-up locks -------------------------------------------------------------------------


def _scheduled_enables(session: Session, account_id: int, *, now: datetime) -> list[int]:
    """Rows of an account-enabled still to come: the end of a lock in force."""
    return list(
        session.scalars(
            select(SecurityEvent.id).where(
                SecurityEvent.account_id == account_id,
                SecurityEvent.event_type == EventType.ACCOUNT_ENABLED.value,
                SecurityEvent.state == EventState.PENDING,
                SecurityEvent.not_before > now,
            )
        )
    )


def _disabled(session: Session, account_id: int, *, now: datetime) -> bool:
    """Whether the login service was last told the account is disabled, and still is."""
    if _scheduled_enables(session, account_id, now=now):
        return True
    latest: dict[str, int | None] = {}
    for event_type in (EventType.ACCOUNT_DISABLED, EventType.ACCOUNT_ENABLED):
        latest[event_type.value] = session.scalar(
            select(func.max(SecurityEvent.id)).where(
                SecurityEvent.account_id == account_id,
                SecurityEvent.event_type == event_type.value,
                SecurityEvent.state != EventState.CANCELLED,
            )
        )
    disabled = latest[EventType.ACCOUNT_DISABLED.value]
    enabled = latest[EventType.ACCOUNT_ENABLED.value]
    return disabled is not None and (enabled is None or enabled < disabled)


def _cancel(session: Session, row_ids: Sequence[int]) -> None:
    if row_ids:
        session.execute(
            update(SecurityEvent)
            .where(SecurityEvent.id.in_(row_ids), SecurityEvent.state == EventState.PENDING)
            .values(state=EventState.CANCELLED)
            .execution_options(synchronize_session=False)
        )


def record_step_up_locked(
    session: Session, account_id: int, *, until: datetime | None, now: datetime
) -> int:
    """A step-up lock began (``until``: when it ends; None: blocked until support unlocks).

    The account is disabled while any lock stands: account-disabled now, unless it already
    is, and one account-enabled scheduled for the end of the latest lock (a later lock
    moves it; a block cancels it). Does not commit; returns how many events were recorded.
    """
    if not policy_of(session).receivers:
        return 0
    scheduled = _scheduled_enables(session, account_id, now=now)
    events: list[_Event] = []
    if not _disabled(session, account_id, now=now):
        events.append(_Event(account_id, EventType.ACCOUNT_DISABLED, account_disabled(at=now)))
    elif not scheduled:
        return 0  # blocked already: only support ends it
    if until is None:
        _cancel(session, scheduled)
    else:
        later = session.scalars(
            select(SecurityEvent.not_before).where(SecurityEvent.id.in_(scheduled))
        )
        end = max([until, *(moment for moment in later if moment is not None)])
        _cancel(session, scheduled)
        events.append(
            _Event(account_id, EventType.ACCOUNT_ENABLED, account_enabled(at=end), not_before=end)
        )
    return _record(session, events, now=now)


def record_step_up_unlocked(session: Session, account_id: int, *, now: datetime) -> int:
    """Support ended every lock: account-enabled now if the account was disabled (its
    scheduled end is cancelled). Does not commit."""
    if not policy_of(session).receivers or not _disabled(session, account_id, now=now):
        return 0
    _cancel(session, _scheduled_enables(session, account_id, now=now))
    return _record(
        session, [_Event(account_id, EventType.ACCOUNT_ENABLED, account_enabled(at=now))], now=now
    )
