"""Deliver the outbox: relay due notices to rq in batches; send each batch's messages.

One rq job carries a batch of notice ids (never an address): a job costs a few tenths of
a second before its first message on a busy machine (rq's fork of a work horse, a
database and an SMTP connection, the claim, rendering the templates: 0.25-0.35 s measured
in bench/incident.py, against 1.1 s to send 1,000), so a batch of 5,000 keeps that to a
few per cent of what one reused SMTP connection carries. Every message is still its own,
to one person. A batch can outlast the claim's lease (a slow relay, a rate limit), so the
job renews the lease of the rows it still holds every half lease.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError
from rq import Queue
from rq.job import Job
from rq.results import Result
from sqlalchemy import select

from jobs.context import job_runtime
from jobs.events import EventRelayUnavailable, relay_events
from jobs.queues import QueueName, get_queue, redis_connection, uses_fake_redis
from service.addresses import mask_email
from service.db import utcnow
from service.email_change.policy import CONFIRM_TTL, REVERT_TTL
from service.email_change.tokens import LinkPurpose, LinkTokens, link_url
from service.errors import JobError
from service.leaks.catalogue import leak_name
from service.metrics import count_deliveries
from service.models import Notice, NoticeKind, NoticeState
from service.notices.outbox import (
    EMAIL_CHANGE_KINDS,
    SEND_LEASE,
    ClaimedNotice,
    SentNotice,
    claim_notice_ids,
    claimed_notices,
    due_notices,
    extend_lease,
    mark_queued,
    record_failure,
    record_sent,
    release_stale,
)
from service.notices.render import (
    NoticeContext,
    PreparedNotice,
    address_message,
    new_message_id,
    pick_language,
    prepare_notice,
)
from service.notices.transport import Mailer, OutgoingMessage, make_mailer, send_each
from service.runtime import Runtime

log = logging.getLogger(__name__)

BATCH_SIZE = 5000
RECORD_EVERY_MESSAGES = 50  # the at-most-once window: see SentRecorder
RECORD_EVERY_SECONDS = 0.5
FIRST_READ = 100  # claimed notices read before the first message; the rest while sending
READ_PART = 300
RELAY_LIMIT = 10_000
DELIVERY_JOB_TIMEOUT = 3600  # seconds; more for a batch that a rate limit stretches


class RelayUnavailable(JobError):
    """The queue cannot be reached; the notices stay pending for the next relay."""


@dataclass(slots=True)
class DeliveryReport:
    claimed: int = 0
    sent: int = 0
    retrying: int = 0
    failed: int = 0

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


@dataclass(slots=True)
class DrainReport:
    """What an in-process drain of the outbox did: relayed, then each notice's outcome.

    ``sent`` counts only what a server (or the mail folder) accepted: a notice that failed
    for good, or waits to be tried again, is not "delivered" and must not read as such.
    """

    relayed: int = 0
    sent: int = 0
    failed: int = 0
    retrying: int = 0
    unfinished: int = 0  # in jobs that raised: their rows go out again after the lease

    def add(self, delivery: dict[str, int]) -> None:
        self.sent += delivery.get("sent", 0)
        self.failed += delivery.get("failed", 0)
        self.retrying += delivery.get("retrying", 0)

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}

    def summary(self) -> str:
        """One line for the operator, e.g. "relayed 2 notices: 1 delivered, 1 failed"."""
        parts = [f"{self.sent} delivered"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.retrying:
            parts.append(f"{self.retrying} to be retried")
        if self.unfinished:
            parts.append(f"{self.unfinished} in failed jobs, retried after their lease")
        line = f"relayed {self.relayed} notices: {', '.join(parts)}"
        if self.failed or self.retrying or self.unfinished:
            line += " (see leakguard notices status)"
        return line


def relay_notices(
    runtime: Runtime,
    connection: Redis,
    *,
    limit: int = RELAY_LIMIT,
    enqueued: list[str] | None = None,
) -> int:
    """Hand due pending notices to the queue in batches; return how many were relayed.

    Emailed codes and the mail of a high-priority email change go to ``high``, ahead of
    any campaign; everything else to ``default``. Safe from several processes at
    once, and against a failing Redis: rows are marked queued only after their jobs are
    enqueued, in the same transaction that selected them. The ids of the jobs enqueued are
    appended to ``enqueued``, for a caller that reads their outcomes (``drain_outbox``).
    """
    relayed = 0
    while True:
        with runtime.db.transaction() as session:
            now = utcnow()
            release_stale(session, now=now)
            due = due_notices(session, limit=limit, now=now)
            if not due:
                return relayed
            by_queue: dict[QueueName, list[int]] = {}
            for notice_id, _, high in due:
                name = QueueName.HIGH if high else QueueName.DEFAULT
                by_queue.setdefault(name, []).append(notice_id)
            jobs: list[Job] = []
            try:
                with connection.pipeline() as pipe:
                    for name, ids in by_queue.items():
                        queue = get_queue(name, connection)
                        jobs += queue.enqueue_many(
                            [
                                queue.prepare_data(
                                    deliver_notices,
                                    args=(batch,),
                                    timeout=job_timeout(runtime.settings.mail_rate, len(batch)),
                                    description=f"deliver {len(batch)} notices from {batch[0]}",
                                )
                                for batch in _batches(ids)
                            ],
                            pipeline=pipe,
                        )
                    pipe.execute()
            except RedisError as exc:
                raise RelayUnavailable(f"the queue is unreachable: {exc}") from None
            if enqueued is not None:
                enqueued += [job.id for job in jobs]
            mark_queued(session, [notice_id for notice_id, _, _ in due], now=now)
        relayed += len(due)
        if len(due) < limit:
            return relayed


def send_now(runtime: Runtime, notice_ids: list[int], name: QueueName = QueueName.HIGH) -> bool:
    """Send these notices at once, ahead of the relay: emailed codes must not wait for it.

    Enqueue first, then mark the rows queued in a transaction of their own, so a row is
    never marked for a job that does not exist. On the fake Redis of the embedded default
    no worker could see the job, so it runs here, before this returns. With Redis down the
    notices stay pending and the relay of a running worker sends them as soon as it can:
    returns False then (the person may ask for a new code meanwhile).
    """
    settings = runtime.settings
    queue = Queue(
        name.value,
        connection=redis_connection(settings),
        is_async=not uses_fake_redis(settings),
    )
    try:
        queue.enqueue(
            deliver_notices,
            notice_ids,
            job_timeout=job_timeout(settings.mail_rate, len(notice_ids)),
            description=f"deliver {len(notice_ids)} notices now",
        )
    except RedisError as exc:
        log.warning("notices %s left to the relay: %s", notice_ids, exc)
        return False
    with runtime.db.transaction() as session:
        mark_queued(session, notice_ids, now=utcnow())
    return True


def job_timeout(mail_rate: float, messages: int) -> int:
    """Seconds a delivery job of ``messages`` may run: an hour, or twice what the rate
    limit (messages a second, 0: none) alone makes it take, if that is longer."""
    if mail_rate <= 0:
        return DELIVERY_JOB_TIMEOUT
    return max(DELIVERY_JOB_TIMEOUT, math.ceil(2 * messages / mail_rate))


def _batches(ids: list[int]) -> list[list[int]]:
    return [ids[i : i + BATCH_SIZE] for i in range(0, len(ids), BATCH_SIZE)]


def deliver_notices(notice_ids: list[int]) -> dict[str, int]:
    """The rq job: send the batch's notices that are still waiting, one message each."""
    return send_notices(job_runtime(), notice_ids).as_dict()


class RateLimiter:
    """At most ``rate`` messages a second from this process (0: no limit)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.clock = clock
        self.next_at = 0.0

    def wait(self) -> None:
        if not self.interval:
            return
        now = self.clock()
        if now < self.next_at:
            time.sleep(self.next_at - now)
            now = self.next_at
        self.next_at = now + self.interval


class SentRecorder:
    """Accepted notices not yet marked ``sent``: committed in groups, by a thread of their
    own, while the sending goes on.

    One commit per message would cost more than sending it, and even a commit per group
    held the next message back while the database answered; so the rows are handed to a
    committer thread (``record_sent``, one transaction a group). The price is the
    at-most-once window (service/notices/outbox.py), the same as with commits in line: a
    worker killed between the server's 250 and the commit of its row leaves that row in
    ``sending``, and it goes out again once its lease ends. ``add`` never lets more than
    ``RECORD_EVERY_MESSAGES`` - 1 accepted rows be unrecorded when it returns (it waits for
    the committer), so with the one message in flight at a kill at most
    ``RECORD_EVERY_MESSAGES`` go out twice. A group goes to the committer when half that
    many are waiting, or when the first of them has waited ``RECORD_EVERY_SECONDS``
    (checked at the next outcome); ``flush`` returns once every row added is committed,
    and the caller flushes before the job returns. A commit that fails is raised by the
    next ``add`` or ``flush``; its rows stay ``sending`` (the lease then sends them again,
    as after a kill). ``close`` flushes and stops the thread.
    """

    def __init__(self, runtime: Runtime, clock: Callable[[], float] = time.monotonic) -> None:
        self.runtime = runtime
        self.clock = clock
        self.waiting: list[SentNotice] = []
        self.committing: list[SentNotice] = []
        self.since = 0.0
        self.error: BaseException | None = None
        self.closed = False
        self.changed = threading.Condition()
        self.thread: threading.Thread | None = None

    def add(self, notice_id: int, message_id: str) -> None:
        with self.changed:
            self._raise_error()
            if not self.waiting:
                self.since = self.clock()
            self.waiting.append(SentNotice(notice_id, message_id, utcnow()))
            if (
                len(self.waiting) >= RECORD_EVERY_MESSAGES // 2
                or self.clock() - self.since >= RECORD_EVERY_SECONDS
            ):
                self._hand_over()
            while len(self.waiting) + len(self.committing) >= RECORD_EVERY_MESSAGES:
                self.changed.wait()
                self._raise_error()
                self._hand_over()

    def flush(self) -> None:
        """Return once every row added so far is committed."""
        with self.changed:
            while self.waiting or self.committing:
                self._raise_error()
                self._hand_over()
                self.changed.wait()
            self._raise_error()

    def close(self) -> None:
        """Flush, then stop the committer thread (also when the flush raises)."""
        try:
            self.flush()
        finally:
            with self.changed:
                self.closed = True
                self.changed.notify_all()
            if self.thread is not None:
                self.thread.join()

    def _hand_over(self) -> None:
        # Called holding the lock: one group at a time, so the rows commit in order.
        if self.committing or not self.waiting:
            return
        self.committing, self.waiting = self.waiting, []
        if self.thread is None:
            self.thread = threading.Thread(target=self._commit, name="sent-recorder", daemon=True)
            self.thread.start()
        self.changed.notify_all()

    def _raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def _commit(self) -> None:
        while True:
            with self.changed:
                while not self.committing and not self.closed:
                    self.changed.wait()
                if not self.committing:
                    return
                group = self.committing
            try:
                with self.runtime.db.transaction() as session:
                    record_sent(session, group)
            except BaseException as exc:  # noqa: BLE001  (handed to the sending thread)
                with self.changed:
                    self.error = exc
                    self.committing = []
                    self.changed.notify_all()
                continue
            with self.changed:
                self.committing = []
                self.changed.notify_all()


def send_notices(
    runtime: Runtime,
    notice_ids: list[int],
    *,
    mailer: Mailer | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DeliveryReport:
    """Claim, send and record each notice in ``notice_ids``. Idempotent per notice.

    Commits the claim before anything is sent; outcomes are committed in groups
    (``SentRecorder``), all of them before this returns. Messages are rendered as the
    mailer asks for the next one, which an ``SmtpMailer`` does while the previous one's
    end-of-data is still unanswered (``send_each``). The lease of the rows still held is
    renewed every half ``SEND_LEASE``.
    """
    settings = runtime.settings
    report = DeliveryReport()
    with runtime.db.transaction() as session:
        claimed = claim_notice_ids(session, notice_ids, now=utcnow())
    report.claimed = len(claimed)
    if not claimed:
        return report
    own_mailer = mailer is None
    mailer = mailer or make_mailer(
        settings.smtp_url, mail_dir=settings.resolved_mail_dir, envelope_from=settings.mail_from
    )
    limiter = RateLimiter(settings.mail_rate)
    prepared: dict[tuple[NoticeKind, str, int | None, bool], PreparedNotice] = {}
    recorder = SentRecorder(runtime, clock)
    reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="claimed-reader")
    renew_every = SEND_LEASE.total_seconds() / 2
    renew_at = clock() + renew_every
    notices: dict[str, ClaimedNotice] = {}  # by Message-ID: handed to the mailer, no outcome yet
    done: set[int] = set()  # notices with an outcome

    def outgoing() -> Iterator[OutgoingMessage]:
        nonlocal renew_at
        for notice in _read_claimed(runtime, reader, claimed):
            limiter.wait()
            if clock() >= renew_at:
                recorder.flush()  # an accepted row must not outlive its lease unrecorded
                with runtime.db.transaction() as session:
                    # Every row held, the one on the wire included; sent ones are skipped.
                    extend_lease(session, claimed, now=utcnow())
                renew_at = clock() + renew_every
            template = _template(runtime, prepared, notice)
            message_id = new_message_id(notice.id, settings.mail_from)
            try:
                message = address_message(
                    template, recipient=notice.recipient, message_id=message_id, now=utcnow()
                )
            except ValueError as exc:
                # An address the mail library cannot put in a header: no retry will help.
                _fail(runtime, notice.id, permanent=True, code=None, error=str(exc), report=report)
                done.add(notice.id)
                continue
            notices[message.message_id] = notice
            yield message

    try:
        for message, result in send_each(mailer, outgoing()):
            notice = notices.pop(message.message_id)
            done.add(notice.id)
            if result.accepted:
                recorder.add(notice.id, message.message_id)
                report.sent += 1
                continue
            _fail(
                runtime,
                notice.id,
                permanent=result.permanent and not result.relay,
                code=result.code,
                error=result.error,
                report=report,
            )
            if result.relay or (result.code is None and not result.permanent):
                # No server to talk to, or one refusing us (our login, our sender), not
                # this person: the rest of the batch would fail the same way.
                for rest in claimed:
                    if rest not in done:
                        _fail(
                            runtime,
                            rest,
                            permanent=False,
                            code=result.code if result.relay else None,
                            error=result.error,
                            report=report,
                        )
                break
    finally:
        reader.shutdown(cancel_futures=True)
        try:
            recorder.close()
        finally:
            if own_mailer:
                mailer.close()
    count_deliveries(sent=report.sent, retrying=report.retrying, failed=report.failed)
    log.info(
        "delivered notices: %s sent, %s retrying, %s failed",
        report.sent,
        report.retrying,
        report.failed,
    )
    return report


def _read_claimed(
    runtime: Runtime, reader: ThreadPoolExecutor, claimed: list[int]
) -> Iterator[ClaimedNotice]:
    """The claimed notices with what their messages need, read in parts: the first part
    now, the others by ``reader`` while the first ones are sent. A batch's read took a
    tenth of a second per thousand on a busy database, every job, before its first message.
    """

    def read(ids: list[int]) -> list[ClaimedNotice]:
        with runtime.db.read_session() as session:
            return claimed_notices(session, ids)

    first, rest = claimed[:FIRST_READ], claimed[FIRST_READ:]
    parts = [rest[i : i + READ_PART] for i in range(0, len(rest), READ_PART)]
    later = [reader.submit(read, part) for part in parts]
    yield from read(first)
    for part in later:
        yield from part.result()


def _template(
    runtime: Runtime,
    cache: dict[tuple[NoticeKind, str, int | None, bool], PreparedNotice],
    notice: ClaimedNotice,
) -> PreparedNotice:
    """The prepared message of ``notice``: shared by a leak's warnings, own for a code."""
    language = pick_language(notice.locale)
    settings = runtime.settings
    if notice.kind is NoticeKind.STEP_UP_CODE:
        # The code is derived from the challenge here and lives only in this one message.
        return prepare_notice(
            notice.kind.value,
            language,
            NoticeContext(
                service_name=settings.service_name,
                leak_name="",
                leak_date=None,
                account_url=None,
                code=runtime.step_up.email_code(notice.challenge_id or ""),
                code_minutes=settings.email_code_ttl_seconds // 60,
            ),
            sender=settings.mail_from,
        )
    if notice.kind in EMAIL_CHANGE_KINDS:
        return email_change_message(runtime, notice, language)
    key = (notice.kind, language, notice.leak_id, notice.password_leaked)
    if key not in cache:
        cache[key] = prepare_notice(
            notice.kind.value,
            language,
            NoticeContext(
                service_name=settings.service_name,
                leak_name=leak_name(notice.leak_names, notice.leak_name, language),
                leak_date=notice.leak_date,
                account_url=settings.account_url,
                password_leaked=notice.password_leaked,
            ),
            sender=settings.mail_from,
        )
    return cache[key]


def email_change_message(runtime: Runtime, notice: ClaimedNotice, language: str) -> PreparedNotice:
    """One email-change message: its link derived here from the request, never stored or
    passed along (service/email_change/tokens.py), so it lives only in this one message."""
    settings = runtime.settings
    tokens = LinkTokens(settings.hash_key_bytes())
    request_id = notice.email_change_id or ""
    link = None
    new_address = notice.new_email
    if notice.kind is NoticeKind.EMAIL_CHANGE_CONFIRM:
        token = tokens.token(request_id, LinkPurpose.CONFIRM, notice.link_generation)
        link = link_url(settings.public_url, LinkPurpose.CONFIRM, token)
    elif notice.kind is NoticeKind.EMAIL_CHANGE_ALERT:
        token = tokens.token(request_id, LinkPurpose.REVERT, 0)
        link = link_url(settings.public_url, LinkPurpose.REVERT, token)
        # The old mailbox learns where the account is going, not the whole new address.
        new_address = mask_email(notice.new_email or "")
    return prepare_notice(
        notice.kind.value,
        language,
        NoticeContext(
            service_name=settings.service_name,
            leak_name="",
            leak_date=None,
            account_url=None,
            link=link,
            link_hours=int(CONFIRM_TTL.total_seconds() // 3600),
            link_days=REVERT_TTL.days,
            new_address=new_address,
            requested_at=notice.requested_at,
            own_links=(settings.public_url + "/",),
        ),
        sender=settings.mail_from,
    )


def _fail(
    runtime: Runtime,
    notice_id: int,
    *,
    permanent: bool,
    code: int | None,
    error: str | None,
    report: DeliveryReport,
) -> None:
    with runtime.db.transaction() as session:
        attempts = session.scalar(select(Notice.attempts).where(Notice.id == notice_id)) or 0
        state = record_failure(
            session,
            notice_id,
            permanent=permanent,
            code=code,
            error=error,
            attempts=attempts,
            now=utcnow(),
        )
    if state is NoticeState.FAILED:
        report.failed += 1
    else:
        report.retrying += 1


def drain_outbox(
    runtime: Runtime, connection: Redis, worker_factory: Callable[[], object]
) -> DrainReport:
    """Relay and deliver in this process until nothing is due (the embedded default).

    Each delivery job's own report (its result) says what became of its notices, so the
    totals count delivered, failed and retrying notices apart.
    """
    report = DrainReport()
    while True:
        job_ids: list[str] = []
        relayed = relay_notices(runtime, connection, enqueued=job_ids)
        # Security events go out in the same pass; their jobs report in their own rows.
        events = relay_events(runtime, connection)
        if not relayed and not events:
            return report
        report.relayed += relayed
        worker = worker_factory()
        worker.work(burst=True, logging_level="WARNING")  # type: ignore[attr-defined]
        for job_id, job in zip(job_ids, Job.fetch_many(job_ids, connection), strict=True):
            result = job.latest_result() if job is not None else None
            if result is not None and result.type is Result.Type.SUCCESSFUL:
                report.add(result.return_value or {})
            else:
                # The job raised (or its record is gone): its rows stay claimed until their
                # lease ends, then go out again; they are neither delivered nor failed.
                report.unfinished += len(job.args[0]) if job is not None else 0
                log.warning("delivery job %s did not finish", job_id)


class RelayThread(threading.Thread):
    """Relay due notices and security events every few seconds, beside a long-running
    worker."""

    def __init__(self, runtime: Runtime, connection: Redis, *, every: float = 5.0) -> None:
        super().__init__(name="notice-relay", daemon=True)
        self.runtime = runtime
        self.connection = connection
        self.every = every
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.wait(self.every):
            try:
                relay_notices(self.runtime, self.connection)
            except RelayUnavailable as exc:
                log.warning("notice relay: %s; the notices stay pending", exc)
            except Exception:
                log.exception("notice relay failed; retrying in %s s", self.every)
            try:
                relay_events(self.runtime, self.connection)
            except EventRelayUnavailable as exc:
                log.warning("security event relay: %s; the events stay pending", exc)
            except Exception:
                log.exception("security event relay failed; retrying in %s s", self.every)
