"""Push security events to the login service (RFC 8935): relay due rows to rq, then POST
each SET, in order per account, and record what the receiver answered.

The state machine is service/events/outbox.py. One job carries the rows of whole accounts
(ids only); it signs each SET when it sends it, with the key in force then, so a rotation
needs no re-signing of what waits. The receiver is told by its answer what became of a SET:
2xx delivered, 400 with an SSF error code dropped (RFC 8935 section 2.3, the code kept),
anything else (no connection, a timeout, 5xx, another 4xx) tried again after a backoff.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis import Redis
from redis.exceptions import RedisError

from jobs.context import job_runtime
from jobs.queues import QueueName, get_queue
from service.addresses import mask_addresses
from service.db import utcnow
from service.errors import JobError
from service.events.keys import EventKeys, issue, load_event_keys
from service.events.outbox import (
    SEND_LEASE,
    ClaimedEvent,
    claim_events,
    due_events,
    extend_lease,
    mark_queued,
    record_delivered,
    record_dropped,
    record_retry,
    release,
    release_stale,
    serialize,
)
from service.runtime import Runtime

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)

SET_CONTENT_TYPE = "application/secevent+jwt"
BATCH_ROWS = 500
RELAY_LIMIT = 5_000
PUSH_TIMEOUT_SECONDS = 10.0
PUSH_CONNECT_TIMEOUT_SECONDS = 5.0
JOB_TIMEOUT = 3600
QUEUE = QueueName.HIGH  # a revoked session must not wait behind a leak's warnings


class EventRelayUnavailable(JobError):
    """The queue cannot be reached; the events stay pending for the next relay."""


def relay_events(
    runtime: Runtime,
    connection: Redis,
    *,
    limit: int = RELAY_LIMIT,
    enqueued: list[str] | None = None,
) -> int:
    """Hand due push rows to the queue, whole accounts per job; return how many rows.

    Rows are marked queued in the transaction that selected them, after their jobs were
    enqueued: with Redis down they stay pending. Nothing to do without a push URL.
    """
    if runtime.settings.events_push_url is None:
        return 0
    relayed = 0
    while True:
        with runtime.db.transaction() as session:
            now = utcnow()
            serialize(session)
            release_stale(session, now=now)
            due = due_events(session, limit=limit, now=now)
            if not due:
                return relayed
            batches = _by_account(due)
            queue = get_queue(QUEUE, connection)
            try:
                with connection.pipeline() as pipe:
                    jobs = queue.enqueue_many(
                        [
                            queue.prepare_data(
                                deliver_events,
                                args=(batch,),
                                timeout=JOB_TIMEOUT,
                                description=f"push {len(batch)} security events from {batch[0]}",
                            )
                            for batch in batches
                        ],
                        pipeline=pipe,
                    )
                    pipe.execute()
            except RedisError as exc:
                raise EventRelayUnavailable(f"the queue is unreachable: {exc}") from None
            if enqueued is not None:
                enqueued += [job.id for job in jobs]
            mark_queued(session, [event_id for event_id, _ in due], now=now)
        relayed += len(due)
        if len(due) < limit:
            return relayed


def _by_account(due: list[tuple[int, int]]) -> list[list[int]]:
    """Batches of at most about ``BATCH_ROWS`` ids; an account's rows never split."""
    accounts: dict[int, list[int]] = {}
    for event_id, account_id in due:
        accounts.setdefault(account_id, []).append(event_id)
    batches: list[list[int]] = [[]]
    for ids in accounts.values():
        if batches[-1] and len(batches[-1]) + len(ids) > BATCH_ROWS:
            batches.append([])
        batches[-1].extend(ids)
    return [sorted(batch) for batch in batches if batch]


@dataclass(slots=True)
class PushReport:
    claimed: int = 0
    delivered: int = 0
    dropped: int = 0
    retrying: int = 0
    released: int = 0  # claimed, not tried: behind a retry of their account, or the receiver down

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def deliver_events(event_ids: list[int]) -> dict[str, int]:
    """The rq job: push the batch's events still waiting."""
    return push_events(job_runtime(), event_ids).as_dict()


@dataclass(frozen=True, slots=True)
class _Answer:
    outcome: str  # delivered | dropped | retry | down
    status: int | None
    error: str


def push_events(
    runtime: Runtime,
    event_ids: list[int],
    *,
    client: httpx.Client | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> PushReport:
    """Claim, sign, POST and record each event of ``event_ids``, in id order.

    Each outcome is committed at once (the at-most-once window is one SET). After a retry
    of one account its later rows are given back untried; after a network error or a 5xx
    (the receiver is down) the whole rest of the batch is.
    """
    settings = runtime.settings
    report = PushReport()
    url = settings.events_push_url
    if url is None:
        return report
    with runtime.db.transaction() as session:
        claimed = claim_events(session, event_ids, now=utcnow())
    report.claimed = len(claimed)
    if not claimed:
        return report
    keys = load_event_keys(settings)
    headers = {"Content-Type": SET_CONTENT_TYPE, "Accept": "application/json"}
    if settings.events_push_token is not None:
        headers["Authorization"] = f"Bearer {settings.events_push_token.get_secret_value()}"
    own_client = client is None
    # httpx (with the CLI extras it loads where they are installed) only where events are
    # pushed: every command and the ingest import this module for the relay alone.
    import httpx

    http = client or httpx.Client(
        timeout=httpx.Timeout(PUSH_TIMEOUT_SECONDS, connect=PUSH_CONNECT_TIMEOUT_SECONDS),
        follow_redirects=False,
    )
    waiting: set[int] = set()  # accounts with a row to retry: the rest of theirs waits
    renew_every = SEND_LEASE.total_seconds() / 2
    renew_at = clock() + renew_every
    try:
        for index, event in enumerate(claimed):
            if event.account_id in waiting:
                _release(runtime, [event], report)
                continue
            if clock() >= renew_at:
                with runtime.db.transaction() as session:
                    extend_lease(session, [e.id for e in claimed[index:]], now=utcnow())
                renew_at = clock() + renew_every
            answer = _post(http, url, headers, _sign(keys, runtime, event))
            if answer.outcome == "delivered":
                with runtime.db.transaction() as session:
                    record_delivered(session, event.id, status=answer.status or 0, now=utcnow())
                report.delivered += 1
                continue
            if answer.outcome == "dropped":
                with runtime.db.transaction() as session:
                    record_dropped(session, event.id, status=400, error=answer.error, now=utcnow())
                report.dropped += 1
                log.warning(
                    "security event %s dropped by the receiver: %s", event.jti, answer.error
                )
                continue
            with runtime.db.transaction() as session:
                record_retry(
                    session,
                    event.id,
                    attempts=event.attempts,
                    status=answer.status,
                    error=answer.error,
                    now=utcnow(),
                )
            report.retrying += 1
            waiting.add(event.account_id)
            log.warning("security event %s to be retried: %s", event.jti, answer.error)
            if answer.outcome == "down":
                _release(runtime, claimed[index + 1 :], report)
                break
    except BaseException:
        # Whatever was not recorded goes back now rather than at the end of its lease.
        with runtime.db.transaction() as session:
            release(session, [e.id for e in claimed])
        raise
    finally:
        if own_client:
            http.close()
    return report


def _sign(keys: EventKeys, runtime: Runtime, event: ClaimedEvent) -> str:
    return issue(keys, runtime.settings, event.claims)


def _release(runtime: Runtime, events: list[ClaimedEvent], report: PushReport) -> None:
    if events:
        with runtime.db.transaction() as session:
            release(session, [event.id for event in events])
        report.released += len(events)


def _post(http: httpx.Client, url: str, headers: dict[str, str], token: str) -> _Answer:
    """POST one SET and read the receiver's answer (RFC 8935 sections 2.2, 2.3)."""
    import httpx

    try:
        response = http.post(url, content=token.encode("ascii"), headers=headers)
    except httpx.HTTPError as exc:
        return _Answer("down", None, f"no answer from the receiver: {type(exc).__name__}: {exc}")
    status = response.status_code
    if 200 <= status < 300:
        return _Answer("delivered", status, "")
    if status == 400:
        code, description = _ssf_error(response)
        if code is not None:
            return _Answer("dropped", status, f"{code}: {description}" if description else code)
        return _Answer("retry", status, "400 without an SSF error code")
    if status >= 500:
        return _Answer("down", status, f"the receiver answered {status}")
    return _Answer("retry", status, f"the receiver answered {status}")


def _ssf_error(response: httpx.Response) -> tuple[str | None, str]:
    """The ``err`` and ``description`` of an RFC 8935 section 2.3 error body, if any."""
    try:
        body = response.json()
    except ValueError:
        return None, ""
    if not isinstance(body, dict) or not isinstance(body.get("err"), str) or not body["err"]:
        return None, ""
    description = body.get("description")
    # A receiver may quote what it received: no address goes into a log or a row in clear.
    text = mask_addresses(description[:300]) if isinstance(description, str) else ""
    return mask_addresses(body["err"][:100]), text
