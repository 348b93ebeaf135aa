"""Benchmark notice delivery through the real worker path; prints figures only.

A discarding aiosmtpd sink runs in a process of its own on 127.0.0.1 (it answers 250 and
counts messages and RCPTs). It is ``bench/incident.py``'s: it offers PIPELINING (RFC 2920)
and SMTPUTF8, as real relays do, so the figures of the two benches compare;
``--no-pipelining`` measures a relay without it. Per run, a fresh database (SQLite in a temp
dir, or a PostgreSQL database ``leakguard_bench_deliver_PID``, created and dropped) is
migrated and filled with N accounts, one leak, N exposures and N pending warning notices.

Baselines, in the same run: the same messages (``prepare_notice`` + ``address_message``,
untimed) sent by a bare smtplib loop over one reused connection: as bytes with ``sendmail``
(the reference of the ratio: the SMTP exchange alone), and, for information, parsed back into
EmailMessage objects and sent with ``send_message`` (which flattens each one again).
Then the real path: ``relay_notices`` in this process (untimed), K ``leakguard worker
--burst`` processes on a real Redis, timed from their start until the last notice's ``sent_at``
(this process waits for the workers without querying the database meanwhile). The
sendmail baseline runs again after the workers; the ratio is over the faster of the two.
Peak RSS and CPU seconds are each worker's own: ``os.wait4`` in a small fork wrapper, so
this process's memory is not inherited; they cover the work horses rq forks per job.
Redis: a database of its own, ``LEAKGUARD_BENCH_REDIS`` if set, else a free one of 1-15
claimed as the test runs claim theirs (``bench/owned.py``); used only if empty, emptied at
the end. Ctrl-C stops the sinks and workers and removes the databases and files.

    .venv/bin/python bench/deliver.py [--notices 20000] [--backend sqlite|postgres]
                                      [--workers 1,2] [--no-pipelining]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import select
import signal
import smtplib
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

from common import (
    RUSAGE_WRAPPER,
    OffersPipelining,
    bench_database_name,
    create_pg_database,
    drop_pg_database,
)
from options import at_least, counts_of, make_parser
from owned import RedisUnavailable, redis_database, run_bench, start
from sqlalchemy import func, insert, update
from sqlalchemy import select as sql_select

from jobs.deliver import relay_notices
from jobs.queues import redis_connection
from service.addresses import EmailHasher
from service.config import Settings
from service.db import utcnow
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
from service.notices.outbox import create_leak_warnings
from service.notices.render import (
    NoticeContext,
    address_message,
    new_message_id,
    pick_language,
    prepare_notice,
)
from service.runtime import Runtime, build_runtime

LEAKGUARD = Path(sys.executable).with_name("leakguard")
HOST = "127.0.0.1"
HASH_KEY = "bench-hash-key-0123456789abcdef!"  # 32 characters
# This one if set, else a free database claimed as the test runs claim theirs (bench/owned.py).
REDIS_URL = os.environ.get("LEAKGUARD_BENCH_REDIS")
# Its own database per run: other benches may run on the same server at once.
PG_DATABASE = bench_database_name("deliver")
TARGET_ONE_WORKER = 0.80  # issue 18, target 6: one worker of the bare loop's msgs/s
LOCALES = ("en", "en", "de-AT", "en-GB", "de", None)
POLL_SECONDS = 0.05


@dataclass(frozen=True, slots=True)
class Sink:
    process: subprocess.Popen[str]
    port: int
    counts: Path

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}?starttls=off"


# --- the sink process -------------------------------------------------------------------


class Discard(OffersPipelining):
    """aiosmtpd handler: accept everything, keep nothing but counts."""

    def __init__(self, *, pipelining: bool) -> None:
        self.messages = 0
        self.rcpts = 0
        self.pipelining = pipelining

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        self.rcpts += len(envelope.rcpt_tos)
        return "250 2.0.0 OK discarded"


def serve_sink(counts: Path, *, pipelining: bool) -> None:
    from aiosmtpd.smtp import SMTP  # the sink process only

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = Discard(pipelining=pipelining)
    server = loop.run_until_complete(
        loop.create_server(
            lambda: SMTP(
                handler, hostname="sink.bench", decode_data=False, enable_SMTPUTF8=True, loop=loop
            ),
            HOST,
            0,
        )
    )
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.run_forever()
    server.close()
    counts.write_text(json.dumps({"messages": handler.messages, "rcpts": handler.rcpts}))


PIPELINING = True  # the sinks offer PIPELINING; main() sets it from --no-pipelining


def start_sink(directory: Path, label: str) -> Sink:
    counts = directory / f"sink-{label}.json"
    process = start(
        [
            sys.executable,
            __file__,
            *("--sink", str(counts)),
            *(() if PIPELINING else ("--no-pipelining",)),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    ready, _, _ = select.select([process.stdout], [], [], 15) if process.stdout else ([], 0, 0)
    line = process.stdout.readline() if ready and process.stdout else ""
    if not line.startswith("READY "):
        process.kill()
        sys.exit(f"the sink did not start: {line!r}")
    return Sink(process, int(line.split()[1]), counts)


def stop_sink(sink: Sink) -> dict[str, int]:
    sink.process.terminate()
    sink.process.wait(timeout=30)
    if sink.process.stdout is not None:
        sink.process.stdout.close()
    counts: dict[str, int] = json.loads(sink.counts.read_text())
    return counts


# --- the benchmark ------------------------------------------------------------------------


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--notices", type=at_least(1), default=20_000)
    parser.add_argument("--backend", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--workers", type=counts_of(1), default="1,2", help="worker counts")
    parser.add_argument(
        "--no-pipelining",
        action="store_true",
        help="the sink does not offer PIPELINING (RFC 2920): the workers talk as smtplib does",
    )
    parser.add_argument("--sink", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink is not None:
        serve_sink(args.sink, pipelining=not args.no_pipelining)
        return
    global PIPELINING
    PIPELINING = not args.no_pipelining
    worker_counts: list[int] = args.workers

    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; {args.notices:,} notices; "
        f"backend {args.backend}; sink: aiosmtpd (discarding) on {HOST}, "
        f"{'with' if PIPELINING else 'without'} PIPELINING"
    )
    with tempfile.TemporaryDirectory(prefix="leakguard-bench-deliver-") as tmp:
        directory = Path(tmp)
        try:  # created inside: a Ctrl-C while it is created still drops it
            if args.backend == "sqlite":
                url = f"sqlite:///{directory / 'bench.sqlite3'}"
            else:
                url = create_pg_database(PG_DATABASE)
            with redis_database(REDIS_URL) as redis_url:
                run(url, redis_url, directory, args.notices, worker_counts)
        except RedisUnavailable as exc:
            sys.exit(f"no Redis database for the workers: {exc}")
        finally:
            if args.backend == "postgres":
                drop_pg_database(PG_DATABASE)


def run(url: str, redis_url: str, directory: Path, n: int, worker_counts: list[int]) -> None:
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKGUARD_")}
    env.update(
        LEAKGUARD_DATABASE_URL=url,
        LEAKGUARD_REDIS_URL=redis_url,
        LEAKGUARD_HASH_KEY=HASH_KEY,
        LEAKGUARD_INSTANCE_DIR=str(directory / "instance"),
        LEAKGUARD_LOG_LEVEL="WARNING",
    )
    subprocess.run([str(LEAKGUARD), "db", "upgrade"], env=env, check=True, capture_output=True)
    settings = Settings(
        database_url=url,
        redis_url=redis_url,
        hash_key=HASH_KEY,
        instance_dir=directory / "instance",
    )
    runtime = build_runtime(settings)
    started = time.perf_counter()
    recipients = fill(runtime, n)
    print(f"filled {n:,} accounts, exposures and notices in {time.perf_counter() - started:.1f} s")

    # Baselines: the same messages, rendered beforehand (untimed), over one reused
    # connection: as bytes with sendmail (the ratio's reference: the SMTP exchange alone),
    # and as EmailMessage objects with send_message (which flattens each one on the way).
    started = time.perf_counter()
    rendered = baseline_messages(settings, recipients)
    print(f"rendered {n:,} messages for the baselines in {time.perf_counter() - started:.1f} s")
    base_rates = [sendmail_baseline(directory, settings, rendered, "before")]
    parsed = [(rcpt, message_from_bytes(data, policy=policy.SMTP)) for rcpt, data in rendered]
    sink = start_sink(directory, "baseline-objects")
    wall_objects, cpu_objects = smtplib_loop(sink.port, settings.mail_from, parsed, flat=False)
    counts = stop_sink(sink)
    print(
        f"          (info) send_message of pre-built EmailMessage objects: "
        f"{n / wall_objects:,.0f} msgs/s, client cpu {cpu_objects:.1f} s "
        f"(sink got {counts['messages']:,} msgs)"
    )
    del parsed

    connection = redis_connection(settings)
    rows = []
    for k in worker_counts:
        reset(runtime)
        connection.flushdb()
        relay_started = time.perf_counter()
        relayed = relay_notices(runtime, connection)
        relay_wall = time.perf_counter() - relay_started
        sink = start_sink(directory, f"workers-{k}")
        env["LEAKGUARD_SMTP_URL"] = sink.url
        workers = run_workers(runtime, env, k, directory)
        counts = stop_sink(sink)
        rows.append((k, workers, counts, relayed, relay_wall))
    connection.flushdb()
    # Again after the workers: other load on the machine moves both figures.
    base_rates.append(sendmail_baseline(directory, settings, rendered, "after"))
    base_rate = max(base_rates)

    header = (
        f"\n{'workers':>7} {'sent':>7} {'other':>6} {'wall s':>7} {'msgs/s':>8} "
        f"{'vs base':>8} {'sink msgs':>10} {'sink rcpt':>10} {'peak RSS per worker':>20} "
        f"{'cpu s per worker':>17}"
    )
    print(header)
    print("-" * (len(header) - 1))
    one_worker = None
    for k, workers, counts, relayed, relay_wall in rows:
        states = workers.states
        sent = states.pop(NoticeState.SENT.value, 0)
        rate = sent / workers.wall
        if k == 1:
            one_worker = rate
        rss_text = ", ".join(f"{mb:.0f}" for mb in workers.peak_rss_mb) + " MiB"
        cpu_text = ", ".join(f"{seconds:.1f}" for seconds in workers.cpu)
        print(
            f"{k:>7} {sent:>7,} {sum(states.values()):>6,} {workers.wall:>7.2f} {rate:>8,.0f} "
            f"{rate / base_rate:>7.0%} {counts['messages']:>10,} {counts['rcpts']:>10,} "
            f"{rss_text:>20} {cpu_text:>17}"
        )
        if states:
            print(f"        not sent: {states}")
        print(f"        (relayed {relayed:,} notices in-process first, {relay_wall:.2f} s untimed)")
    print(
        "\nwall: from starting the workers until the last notice's sent_at (this process "
        "waits for the workers without touching the database); it includes each worker's "
        "interpreter start and imports. 'vs base' is msgs/s over the faster of the two "
        "sendmail (pre-rendered bytes) baselines, before and after. Peak RSS and CPU: "
        "os.wait4 of each worker in a fork wrapper, so the figure is the worker's own (max "
        "over the worker and its forked work horses), not this process's inherited peak."
    )
    if one_worker is not None:
        ratio = one_worker / base_rate
        verdict = "met" if ratio >= TARGET_ONE_WORKER else "NOT met"
        print(
            f"\ntarget 6 (issue 18): one delivery worker >= {TARGET_ONE_WORKER:.0%} of the bare "
            f"loop: {one_worker:,.0f} / {base_rate:,.0f} msgs/s = {ratio:.0%} ({verdict}); the "
            "wall includes the worker's start (bench/incident.py reads its send window)"
        )


def sendmail_baseline(
    directory: Path, settings: Settings, rendered: list[tuple[str, bytes]], label: str
) -> float:
    """The bare loop: sendmail of pre-rendered bytes over one connection; msgs/s."""
    sink = start_sink(directory, f"baseline-{label}")
    wall, cpu = smtplib_loop(sink.port, settings.mail_from, rendered, flat=True)
    counts = stop_sink(sink)
    n = len(rendered)
    print(
        f"\nbaseline ({label}): bare smtplib sendmail loop of pre-rendered bytes, one "
        f"connection: {n:,} msgs in {wall:.2f} s = {n / wall:,.0f} msgs/s, client cpu "
        f"{cpu:.1f} s (sink got {counts['messages']:,} msgs, {counts['rcpts']:,} RCPTs)"
    )
    return n / wall


def fill(runtime: Runtime, n: int) -> list[tuple[str, str | None]]:
    """N accounts, one leak, N exposures, N pending notices; return (address, locale)."""
    hasher = EmailHasher(HASH_KEY.encode())
    now = utcnow()
    recipients = [(f"person.{i:06d}@example.com", LOCALES[i % len(LOCALES)]) for i in range(n)]
    with runtime.db.transaction() as session:
        leak_id = session.scalar(
            insert(Leak)
            .values(slug="bench-leak", name="Bench Leak 2024", lines=n, valid=n, matched=n)
            .returning(Leak.id)
        )
        session.execute(
            insert(Account),
            [
                {
                    "external_id": f"usr_{i:08d}",
                    "email": address,
                    "email_key": hasher.hash(address),
                    "locale": locale,
                    "created_at": now,
                    "updated_at": now,
                }
                for i, (address, locale) in enumerate(recipients)
            ],
        )
        ids = list(session.scalars(sql_select(Account.id).order_by(Account.id)))
        session.execute(
            insert(Exposure),
            [
                {
                    "account_id": account_id,
                    "leak_id": leak_id,
                    # One in four leaked with a password: two templates per language.
                    "kind": ExposureKind.CREDENTIAL if i % 4 == 0 else ExposureKind.EMAIL,
                    "state": ExposureState.OPEN,
                    "created_at": now,
                }
                for i, account_id in enumerate(ids)
            ],
        )
        create_leak_warnings(session, ids, leak_id=leak_id, now=now)
    return recipients


def baseline_messages(
    settings: Settings, recipients: list[tuple[str, str | None]]
) -> list[tuple[str, bytes]]:
    """The messages the worker sends, as ``send_notices`` renders them: (recipient, bytes)."""
    leak_date = None  # the bench leak has no date of its own: the worker names none
    templates = {}
    messages = []
    for i, (address, locale) in enumerate(recipients):
        key = (pick_language(locale), i % 4 == 0)
        if key not in templates:
            templates[key] = prepare_notice(
                NoticeKind.LEAK_WARNING.value,
                key[0],
                NoticeContext(
                    service_name=settings.service_name,
                    leak_name="Bench Leak 2024",
                    leak_date=leak_date,
                    account_url=settings.account_url,
                    password_leaked=key[1],
                ),
                sender=settings.mail_from,
            )
        message = address_message(
            templates[key],
            recipient=address,
            message_id=new_message_id(i + 1, settings.mail_from),
            now=utcnow(),
        )
        messages.append((address, message.data))
    return messages


def smtplib_loop(
    port: int, envelope_from: str, messages: list[Any], *, flat: bool
) -> tuple[float, float]:
    """Send ``messages`` over one connection; return the wall and this process's CPU s."""
    cpu = time.process_time()
    started = time.perf_counter()
    connection = smtplib.SMTP(HOST, port, timeout=30)
    connection.ehlo()
    for recipient, message in messages:
        if flat:
            connection.sendmail(envelope_from, [recipient], message)
        else:
            connection.send_message(message, from_addr=envelope_from, to_addrs=[recipient])
    connection.quit()
    return time.perf_counter() - started, time.process_time() - cpu


def reset(runtime: Runtime) -> None:
    with runtime.db.transaction() as session:
        session.execute(
            update(Notice).values(
                state=NoticeState.PENDING,
                attempts=0,
                message_id=None,
                sent_at=None,
                queued_at=None,
                lease_until=None,
                last_error=None,
                reply_code=None,
                not_before=None,
            )
        )


def last_sent_at(runtime: Runtime) -> datetime | None:
    with runtime.db.read_session() as session:
        last = session.scalar(sql_select(func.max(Notice.sent_at)))
    if last is not None and last.tzinfo is None:  # SQLite gives it back naive, in UTC
        last = last.replace(tzinfo=UTC)
    return last


def state_counts(runtime: Runtime) -> dict[str, int]:
    with runtime.db.read_session() as session:
        rows = session.execute(sql_select(Notice.state, func.count()).group_by(Notice.state)).all()
    return {str(getattr(state, "value", state)): int(count) for state, count in rows}


@dataclass(frozen=True, slots=True)
class WorkerRun:
    wall: float  # from the start until the last notice was accepted
    peak_rss_mb: list[float]  # per worker
    cpu: list[float]  # per worker, user + system seconds, its work horses included
    states: dict[str, int]  # notices by state at the end


def run_workers(runtime: Runtime, env: dict[str, str], k: int, directory: Path) -> WorkerRun:
    """Start K burst workers and wait for them; return the wall, each one's RSS and CPU."""
    logs = [(directory / f"worker-{k}-{i}.log").open("w") for i in range(k)]
    usages = [directory / f"worker-{k}-{i}.rusage" for i in range(k)]
    command = [str(LEAKGUARD), "worker", "--burst"]
    started_at = utcnow()
    started = time.perf_counter()
    workers = [
        start(
            [sys.executable, "-c", RUSAGE_WRAPPER, str(usage), *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        for log, usage in zip(logs, usages, strict=True)
    ]
    # No polling of the database meanwhile: on a small machine it would take CPU from the
    # workers. The end is the last sent_at, written by the workers as each 250 came back.
    while any(worker.poll() is None for worker in workers):
        time.sleep(POLL_SECONDS)
    exited = time.perf_counter() - started
    for log in logs:
        log.close()
    rss, cpu = [], []
    for i, (worker, usage) in enumerate(zip(workers, usages, strict=True)):
        figures = usage.read_text().split() if usage.exists() else []
        rss.append(float(figures[0]) / 1024 if figures else float("nan"))
        cpu.append(float(figures[1]) if figures else float("nan"))
        if worker.returncode:
            tail = (directory / f"worker-{k}-{i}.log").read_text()[-2000:]
            print(f"worker {i} exited {worker.returncode}:\n{tail}")
    states = state_counts(runtime)
    last = last_sent_at(runtime)
    everything_sent = set(states) == {NoticeState.SENT.value} and last is not None
    wall = (last - started_at).total_seconds() if everything_sent and last else exited
    return WorkerRun(wall, rss, cpu, states)


if __name__ == "__main__":
    run_bench(main)
