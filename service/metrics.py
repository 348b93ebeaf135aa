"""Prometheus metrics: what the processes count, and what a scrape reads from the stores.

Counted where it happens (in the process that serves or works): risk decisions, request
durations, step-up outcomes, notice delivery outcomes. Under gunicorn each worker writes
its own files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus-client's multiprocess mode, set
by deploy/gunicorn.conf.py before any worker starts) and a scrape of any worker adds them
up. Read at scrape time from the database and Redis, so that they are the same whichever
process or host did the work: ingest lines, matches and invalid lines by format (the
committed counters of every leak file), notices by state, jobs waiting per queue.

Names follow Prometheus conventions: ``leakguard_`` prefix, base units (seconds),
counters end in ``_total``. Free of Flask.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client import multiprocess as prometheus_multiprocess
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from redis.exceptions import RedisError
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError

from service.events.outbox import event_counts
from service.models import EmailChangeRequest, EventState, LeakFile, Notice, SecurityEvent
from service.runtime import Runtime

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger(__name__)
# The number of jobs waiting per queue name; raises when the queue cannot be reached.
QueueDepths = Callable[[], dict[str, int]]

RISK_DECISIONS = Counter(
    "leakguard_risk_decisions_total",
    "Sign-in decisions answered, by decision and primary reason.",
    ["decision", "reason"],
)
REQUEST_DURATION = Histogram(
    "leakguard_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint (its route, never the path) and status.",
    ["endpoint", "method", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
STEP_UP_OUTCOMES = Counter(
    "leakguard_step_up_verifications_total",
    "Step-up verifications, by method and outcome (passed, failed, locked).",
    ["method", "outcome"],
)
NOTICE_DELIVERIES = Counter(
    "leakguard_notice_deliveries_total",
    "Delivery attempts of notices made by this server's processes, by outcome (sent, "
    "retrying, failed); leakguard_notices and leakguard_notices_retrying hold every host's.",
    ["outcome"],
)


def count_risk_decision(decision: str, reasons: tuple[str, ...]) -> None:
    RISK_DECISIONS.labels(decision, reasons[0] if reasons else "none").inc()


def count_step_up(method: str, outcome: str) -> None:
    STEP_UP_OUTCOMES.labels(method, outcome).inc()


def count_deliveries(*, sent: int, retrying: int, failed: int) -> None:
    for outcome, amount in (("sent", sent), ("retrying", retrying), ("failed", failed)):
        if amount:
            NOTICE_DELIVERIES.labels(outcome).inc(amount)


def observe_request(endpoint: str, method: str, status: int, seconds: float) -> None:
    REQUEST_DURATION.labels(endpoint, method, str(status)).observe(seconds)


class StoreCollector(Collector):
    """What the database and Redis say at scrape time (every process's work, any host)."""

    def __init__(self, runtime: Runtime, queue_depths: QueueDepths | None) -> None:
        self._runtime = runtime
        self._queue_depths = queue_depths

    def collect(self) -> Iterator[Metric]:
        """The stores' metrics, and ``leakguard_store_up{store}``: 0 for a store that could
        not be read, whose metrics are then left out of this scrape (the process's own
        metrics are still answered)."""
        up = GaugeMetricFamily(
            "leakguard_store_up",
            "1 when this scrape could read the store, 0 when not.",
            labels=["store"],
        )
        try:
            families = self._database_metrics()
        except SQLAlchemyError:
            log.warning("metrics: the database could not be read for this scrape")
            up.add_metric(["database"], 0.0)
        else:
            up.add_metric(["database"], 1.0)
            yield from families
        if self._queue_depths is not None:
            depths = GaugeMetricFamily(
                "leakguard_queue_jobs", "Jobs waiting in each rq queue.", labels=["queue"]
            )
            try:
                for name, depth in self._queue_depths().items():
                    depths.add_metric([name], float(depth))
            except (RedisError, OSError):
                log.warning("metrics: Redis could not be read for this scrape")
                up.add_metric(["redis"], 0.0)
            else:
                up.add_metric(["redis"], 1.0)
                yield depths
        yield up

    def _database_metrics(self) -> list[Metric]:
        lines = CounterMetricFamily(
            "leakguard_ingest_lines", "Leak file records read, by format.", labels=["format"]
        )
        matches = CounterMetricFamily(
            "leakguard_ingest_matches",
            "Leaked addresses that matched an account, by format.",
            labels=["format"],
        )
        invalid = CounterMetricFamily(
            "leakguard_ingest_invalid_lines",
            "Leak file records with no valid address, by format.",
            labels=["format"],
        )
        notices = GaugeMetricFamily(
            "leakguard_notices", "Notices in the outbox, by state.", labels=["state"]
        )
        changes = GaugeMetricFamily(
            "leakguard_email_changes",
            "Email-change requests, by state (awaiting_confirmation, confirmed, reverted...).",
            labels=["state"],
        )
        with self._runtime.db.read_session() as session:
            change_states = session.execute(
                select(EmailChangeRequest.state, func.count()).group_by(EmailChangeRequest.state)
            ).all()
            totals = session.execute(
                select(
                    LeakFile.format,
                    func.sum(LeakFile.lines),
                    func.sum(LeakFile.matched),
                    func.sum(LeakFile.invalid),
                ).group_by(LeakFile.format)
            ).all()
            states = session.execute(
                select(Notice.state, func.count()).group_by(Notice.state)
            ).all()
            # Waiting again after a failed attempt: a delivery outcome any worker, on any
            # host, leaves in the outbox (sent and failed for good are states of their own).
            retrying = session.scalar(
                select(func.count()).where(
                    Notice.state.in_(("pending", "queued")), Notice.attempts > 0
                )
            )
            event_states = event_counts(session)
            events_retrying = session.scalar(
                select(func.count()).where(
                    SecurityEvent.state == EventState.PENDING, SecurityEvent.attempts > 0
                )
            )
        for file_format, read, matched, bad in totals:
            lines.add_metric([file_format], float(read or 0))
            matches.add_metric([file_format], float(matched or 0))
            invalid.add_metric([file_format], float(bad or 0))
        for state, count in states:
            notices.add_metric([str(state)], float(count))
        for change_state, count in change_states:
            changes.add_metric([str(change_state)], float(count))
        waiting = GaugeMetricFamily(
            "leakguard_notices_retrying",
            "Notices waiting for another attempt after a temporary failure.",
            value=float(retrying or 0),
        )
        events = GaugeMetricFamily(
            "leakguard_security_events",
            "Security events in the outbox, by receiver (push, poll) and state.",
            labels=["receiver", "state"],
        )
        for receiver, by_state in event_states.items():
            for event_state, event_count in by_state.items():
                events.add_metric([receiver, event_state], float(event_count))
        events_waiting = GaugeMetricFamily(
            "leakguard_security_events_retrying",
            "Security events waiting to be pushed again: the receiver failed or was down.",
            value=float(events_retrying or 0),
        )
        return [lines, matches, invalid, notices, waiting, events, events_waiting, changes]


def scrape(store: Collector) -> bytes:
    """The text exposition of every metric: this process's (or, in multiprocess mode, every
    live and dead worker's of this server) and the stores'."""
    registry = CollectorRegistry()
    if os.environ.get(MULTIPROC_ENV):
        prometheus_multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    else:
        for collector in (RISK_DECISIONS, REQUEST_DURATION, STEP_UP_OUTCOMES, NOTICE_DELIVERIES):
            registry.register(collector)
    registry.register(store)
    return generate_latest(registry)


def forget_worker(pid: int) -> None:
    """Drop a dead gunicorn worker's live gauges (its counters stay, as multiprocess mode
    wants). For gunicorn's ``child_exit`` hook."""
    if os.environ.get(MULTIPROC_ENV):
        prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
