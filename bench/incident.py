"""Benchmark a whole incident, end to end: a BitMEX-size mass mail to the last warning
accepted by a real SMTP server. Prints figures only.

The leak: one mbox of 30 mass mails, each with 1,000 recipients in a folded ``To:`` header
(30,000 addresses: bare, in angle brackets, with display names, quoted "Last, First"
names and MIME encoded-words, upper/title case, gmail dots dropped or added, googlemail
for gmail, ``+tags``, an IDN domain as U-label or A-label), written to a temp dir. 100,000
accounts, 10,000 of them in the leak (each once, in one of those forms), imported with
``leakguard accounts import`` (untimed) into a throw-away PostgreSQL database
``leakguard_bench_incident_PID``. Redis: a database of its own, ``LEAKGUARD_BENCH_REDIS`` if
set, else a free one of 1-15 claimed as the test runs claim theirs (``bench/owned.py``);
used only if empty, emptied at the end. Ctrl-C stops the worker, the ingest and the sink and
removes the databases and files.

One ``leakguard worker`` (all queues, long-running, as deployed) is started and registered
before the clock starts. A discarding aiosmtpd sink runs in a process of its own on
127.0.0.1; it counts accepted messages per envelope sender, their recipients, recipients
seen twice, and the time of the first and last one. It offers PIPELINING (RFC 2920), as
real relays do, so the worker pipelines; ``--no-pipelining`` measures without.

Timed, in one run:

- **end to end**: from starting ``leakguard ingest FILE --leak ...`` (one process, as the
  README's operator runs it: an mbox is one part, so ``--enqueue`` would only add a queue
  hop) to the last warning accepted by the sink;
- **protected**: from the same start until every account of a random sample of 100 leaked
  accounts answers ``step_up`` to ``POST /v1/risk/check`` (the real app in this process,
  a real API key; polled every 0.1 s). After the run, every one of the 10,000 is checked
  the same way (untimed);
- the ingest's own wall time, peak RSS and CPU, and the worker's peak RSS and CPU
  (``RUSAGE_WRAPPER``: each process's own, the worker's rq work horses included);
- delivery: from the ingest's exit to the last accepted warning, and the send window
  (first to last accepted warning); the relay wait, from the warnings' creation in the
  ingest's chunk transaction to their hand-off to the queue (``created_at``, ``queued_at``).

The baseline, in the same run, against the same sink: a bare smtplib loop sending the
same 10,000 messages, rendered beforehand as the worker renders them (one per recipient),
over one connection; run before and after the incident, the faster counts.

Where the CPU went over each timed stretch (``/proc``): the sink's own, the whole
machine's busy time, and what the incident's processes did not use of it (PostgreSQL,
Redis, other jobs): a loaded machine shows in the figures, not only in the load average.

Correctness: exactly 10,000 warnings accepted, each with one recipient, no recipient
twice, and the recipients are exactly the 10,000 leaked accounts' addresses.

``--profile N`` then resets N sent warnings and runs the worker's delivery job
(``send_notices``) on them in this process under cProfile, against the same database and
sink, and prints where the time went.

    .venv/bin/python bench/incident.py [--accounts 100000] [--leaked 10000] [--mails 30]
                                       [--per-mail 1000] [--seed 18] [--profile 2000]
                                       [--no-pipelining]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import csv
import io
import itertools
import json
import os
import pstats
import random
import select
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from common import (
    DOMAINS,
    RUSAGE_WRAPPER,
    OffersPipelining,
    bench_database_name,
    child_env,
    create_pg_database,
    drop_pg_database,
)
from options import at_least, make_parser
from owned import RedisUnavailable, redis_database, run_bench, start
from redis import Redis
from rq import Worker
from sqlalchemy import select as sql_select
from sqlalchemy import update

from jobs.deliver import send_notices
from jobs.sample import FIRST_NAMES, LAST_NAMES
from service.app import create_app
from service.clients import Scope, create_api_client
from service.config import Settings
from service.db import utcnow
from service.models import Notice, NoticeKind, NoticeState
from service.notices.render import (
    NoticeContext,
    address_message,
    new_message_id,
    pick_language,
    prepare_notice,
)
from service.notices.transport import wire_address
from service.runtime import Runtime, build_runtime

LEAKGUARD = Path(sys.executable).with_name("leakguard")
HOST = "127.0.0.1"
HASH_KEY = "bench-hash-key-0123456789abcdef!"  # 32 characters
# This one if set, else a free database claimed as the test runs claim theirs (bench/owned.py).
REDIS_URL = os.environ.get("LEAKGUARD_BENCH_REDIS")
# Its own database per run: other helpers' benches may run on the same server at once.
PG_DATABASE = bench_database_name("incident")
TARGET_END_TO_END = 1.3  # issue 18, target 5: the whole incident over the bare loop
TARGET_WORKER = 0.80  # issue 18, target 6: the worker's msgs/s of the bare loop's
SLUG = "bitmex-2019"
LEAK_NAME = "BitMEX"
OBSERVED = date(2019, 11, 1)
BASELINE_FROM = "baseline@bench.example"  # the bare loop's envelope sender
LOCALES = ("en", "en", "en", "en-GB", "de", "de-AT", "fr", "")
GMAIL = ("gmail.com", "googlemail.com")
TAGS = ("news", "shop", "2019", "btc")
IDN = "bücher.de"
SAMPLE = 100  # leaked accounts polled with the risk check while the clock runs
POLL_SECONDS = 0.1
GAP_SECONDS = 0.1  # a pause of the sending longer than this is counted (a job's start, ...)


# --- the sink process -------------------------------------------------------------------


@dataclass(slots=True)
class Sender:
    """What the sink saw from one envelope sender."""

    messages: int = 0
    rcpts: int = 0
    multi: int = 0  # messages with more than one recipient
    first: float = 0.0
    last: float = 0.0
    seen: set[str] = field(default_factory=set)
    twice: int = 0
    times: list[float] = field(default_factory=list)  # each acceptance, for the gaps


class Counting(OffersPipelining):
    """aiosmtpd handler: accept everything, keep counts and recipients per sender."""

    def __init__(self, done: Path, expected: int, *, pipelining: bool) -> None:
        self.by_sender: dict[str, Sender] = {}
        self.done = done
        self.expected = expected
        self.pipelining = pipelining
        self.batches = 0  # senders' runs of ``expected`` messages completed so far

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        now = time.time()
        sender = self.by_sender.setdefault(envelope.mail_from, Sender(first=now))
        sender.messages += 1
        sender.last = now
        sender.times.append(now)
        sender.rcpts += len(envelope.rcpt_tos)
        sender.multi += len(envelope.rcpt_tos) > 1
        for rcpt in envelope.rcpt_tos:
            key = rcpt.lower()
            if key in sender.seen:
                sender.twice += 1
            sender.seen.add(key)
        if sender.messages % self.expected == 0:
            # The bench waits for this file (a stat every 50 ms), not for a count it polls.
            self.batches += 1
            self.done.with_name(f"{self.done.name}.{self.batches}").touch()
        return "250 2.0.0 OK discarded"

    def dump(self) -> dict[str, Any]:
        return {
            name: {
                "messages": s.messages,
                "rcpts": s.rcpts,
                "multi": s.multi,
                "first": s.first,
                "last": s.last,
                "times": s.times,
                "twice": s.twice,
                "seen": sorted(s.seen),
            }
            for name, s in self.by_sender.items()
        }


def serve_sink(directory: Path, expected: int, *, pipelining: bool) -> None:
    from aiosmtpd.smtp import SMTP  # the sink process only

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = Counting(directory / "done", expected, pipelining=pipelining)
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
    loop.add_signal_handler(signal.SIGUSR1, lambda: _write(directory, handler))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    loop.run_forever()
    server.close()
    _write(directory, handler)


def _write(directory: Path, handler: Counting) -> None:
    path = directory / "counts.json"
    path.with_suffix(".tmp").write_text(json.dumps(handler.dump()))
    path.with_suffix(".tmp").replace(path)


class Sink:
    """The sink process, seen from the bench."""

    def __init__(self, directory: Path, expected: int, *, pipelining: bool = True) -> None:
        self.directory = directory
        self.process = start(
            [
                sys.executable,
                __file__,
                *("--sink", str(directory), "--expected", str(expected)),
                *(() if pipelining else ("--no-pipelining",)),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        out = self.process.stdout
        ready, _, _ = select.select([out], [], [], 15) if out else ([], 0, 0)
        line = out.readline() if ready and out else ""
        if not line.startswith("READY "):
            self.process.kill()
            sys.exit(f"the sink did not start: {line!r}")
        self.port = int(line.split()[1])

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}?starttls=off"

    def finished(self, nth: int) -> bool:
        """True once the nth run of the expected count (by any one sender) is complete."""
        return (self.directory / f"done.{nth}").exists()

    def counts(self) -> dict[str, dict[str, Any]]:
        marker = self.directory / "counts.json"
        marker.unlink(missing_ok=True)
        self.process.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + 30
        while not marker.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        result: dict[str, dict[str, Any]] = json.loads(marker.read_text())
        return result

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        if self.process.stdout is not None:
            self.process.stdout.close()


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (every process, other jobs too)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = (
        int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]
    )
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


@dataclass(slots=True)
class CpuWindow:
    """Where the CPU went over a stretch of wall time: the sink, and the whole machine."""

    wall: float = 0.0
    sink: float = 0.0
    machine: float = 0.0

    @classmethod
    def start(cls, sink: Sink) -> tuple[float, float, float]:
        return time.time(), process_cpu(sink.process.pid), machine_busy()

    @classmethod
    def since(cls, mark: tuple[float, float, float], sink: Sink) -> CpuWindow:
        wall, sink_cpu, machine = mark
        return cls(
            time.time() - wall, process_cpu(sink.process.pid) - sink_cpu, machine_busy() - machine
        )

    def cores(self) -> str:
        cores = os.cpu_count() or 1
        return (
            f"sink {self.sink:.1f} s ({self.sink / self.wall:.0%} of a core); machine busy "
            f"{self.machine:.1f} of {cores * self.wall:.1f} CPU s ({self.machine / self.wall:.2f}"
            f" of {cores} cores)"
        )


# --- the files ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Population:
    accounts: list[tuple[str, str, str]]  # (external_id, address, locale)
    leaked: list[int]  # indexes into accounts
    forms: dict[str, int]  # surface form -> how many leak addresses use it


def make_population(count: int, leaked: int, rng: random.Random) -> Population:
    names, weights = zip(*DOMAINS, strict=True)
    accounts = []
    for n in range(1, count + 1):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        local = rng.choice((f"{first}.{last}", f"{first}{last}", f"{first[0]}.{last}"))
        local += str(n)  # unique per account, so no two share a canonical address
        if rng.random() < 0.05:
            local += "+" + rng.choice(TAGS)
        address = f"{local}@{rng.choices(names, weights=weights)[0]}"
        if rng.random() < 0.05:
            address = address.title()
        accounts.append((f"usr_{n:08d}", address, rng.choice(LOCALES)))
    return Population(accounts, rng.sample(range(count), leaked), {})


def write_accounts(path: Path, population: Population) -> None:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["external_id", "email", "locale"])
        writer.writerows(population.accounts)


def surface(address: str, rng: random.Random, forms: dict[str, int]) -> str:
    """``address`` as a mass mail's To header may carry it; counts the forms used."""
    local, _, domain = address.rpartition("@")
    if domain.lower() in GMAIL and rng.random() < 0.5:
        if rng.random() < 0.4:
            domain = "googlemail.com" if domain.lower() == "gmail.com" else "gmail.com"
            forms["googlemail/gmail swapped"] = forms.get("googlemail/gmail swapped", 0) + 1
        else:
            cut = rng.randrange(1, len(local)) if len(local) > 1 else 1
            local = local.replace(".", "") if "." in local else f"{local[:cut]}.{local[cut:]}"
            forms["gmail dots changed"] = forms.get("gmail dots changed", 0) + 1
    if domain == IDN and rng.random() < 0.5:
        domain = "xn--bcher-kva.de"
        forms["IDN as A-label"] = forms.get("IDN as A-label", 0) + 1
    if "+" not in local and rng.random() < 0.08:
        local += "+" + rng.choice(TAGS)
        forms["+tag added"] = forms.get("+tag added", 0) + 1
    text = f"{local}@{domain}"
    draw = rng.random()
    if draw < 0.10:
        text = text.upper()
        forms["upper case"] = forms.get("upper case", 0) + 1
    elif draw < 0.18:
        text = text.title()
        forms["title case"] = forms.get("title case", 0) + 1
    draw = rng.random()
    first, last = rng.choice(FIRST_NAMES).title(), rng.choice(LAST_NAMES).title()
    if draw < 0.30:
        text, form = f"{first} {last} <{text}>", "display name"
    elif draw < 0.40:
        text, form = f'"{last}, {first}" <{text}>', "quoted name with comma"
    elif draw < 0.45:
        text, form = f"=?utf-8?q?J=C3=BCrgen_{last}?= <{text}>", "encoded-word name"
    elif draw < 0.60:
        text, form = f"<{text}>", "angle brackets only"
    else:
        form = "bare"
    forms[form] = forms.get(form, 0) + 1
    return text


def write_mbox(
    path: Path, population: Population, mails: int, per_mail: int, rng: random.Random
) -> int:
    """Write the mbox; return the number of recipients written."""
    names, weights = zip(*DOMAINS, strict=True)
    recipients = [
        surface(population.accounts[i][1], rng, population.forms) for i in population.leaked
    ]
    strangers = mails * per_mail - len(recipients)
    for k in range(strangers):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        # Numbers above every account's, so a stranger stays a stranger.
        address = f"{first}.{last}{1_000_000 + k}@{rng.choices(names, weights=weights)[0]}"
        recipients.append(surface(address, rng, {}))
    rng.shuffle(recipients)
    with path.open("wb") as out:
        for m in range(mails):
            to = recipients[m * per_mail : (m + 1) * per_mail]
            folded = "To: " + to[0]
            for index, address in enumerate(to[1:]):
                folded += ",\r\n" + ("\t" if index % 2 else " ") + address
            head = [
                f"From bounce@mailer.exchange.example Fri Nov  1 10:{m:02d}:00 2019",
                "Return-Path: <bounce@mailer.exchange.example>",
                "From: BitMEX Support <support@bitmex.example>",
                folded,
                "Subject: Important: changes to your account",
                f"Date: Fri, 1 Nov 2019 10:{m:02d}:00 +0000",
                f"Message-ID: <mass-mail-{m}@bitmex.example>",
                "MIME-Version: 1.0",
                "Content-Type: text/plain; charset=utf-8",
            ]
            body = "Dear customers,\r\nour service moves to a new address.\r\n"
            out.write(("\r\n".join(head) + "\r\n\r\n" + body + "\r\n").encode("utf-8"))
    return len(recipients)


# --- the measured processes ---------------------------------------------------------------


@dataclass(slots=True)
class Measured:
    """A command started through RUSAGE_WRAPPER."""

    process: subprocess.Popen[bytes]
    usage: Path
    log: Path
    started: float  # time.time()

    @classmethod
    def start(
        cls, command: list[str], env: dict[str, str], directory: Path, label: str
    ) -> Measured:
        usage, log = directory / f"{label}.rusage", directory / f"{label}.log"
        started = time.time()
        with log.open("wb") as out:
            process = start(
                [sys.executable, "-c", RUSAGE_WRAPPER, str(usage), *command],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return cls(process, usage, log, started)

    def figures(self) -> tuple[float, float]:
        """(peak RSS MiB, CPU s) once it has exited."""
        parts = self.usage.read_text().split() if self.usage.exists() else []
        if len(parts) != 2:
            return float("nan"), float("nan")
        return float(parts[0]) / 1024, float(parts[1])

    def terminate_command(self) -> None:
        """SIGTERM to the command itself (the wrapper's child), so the wrapper still reports."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        for pid in children.read_text().split() if children.exists() else []:
            os.kill(int(pid), signal.SIGTERM)


def leakguard(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(LEAKGUARD), *args], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        sys.exit(f"leakguard {args[0]} failed: {done.stderr.strip()[-2000:]}")
    found = [line for line in done.stdout.splitlines() if line.startswith("{")]
    result: dict[str, Any] = json.loads(found[-1]) if found else {}
    return result


# --- the risk check -------------------------------------------------------------------------


class RiskPoller(threading.Thread):
    """Ask the risk check for ``ids`` every POLL_SECONDS until each answers step_up."""

    def __init__(self, client: Any, key: str, ids: list[str]) -> None:
        super().__init__(name="risk-poller", daemon=True)
        self.client = client
        self.headers = {"Authorization": f"Bearer {key}"}
        self.waiting = set(ids)
        self.protected_at: float | None = None
        self.rounds = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        while self.waiting and not self.stopping.is_set():
            self.rounds += 1
            for external_id in sorted(self.waiting):
                decision = check(self.client, self.headers, external_id, self.errors)
                if decision == "step_up":
                    self.waiting.discard(external_id)
            if not self.waiting:
                self.protected_at = time.time()
                return
            self.stopping.wait(POLL_SECONDS)


def check(client: Any, headers: dict[str, str], external_id: str, errors: list[str]) -> str:
    response = client.post("/v1/risk/check", json={"account_id": external_id}, headers=headers)
    if response.status_code != 200:
        errors.append(f"{response.status_code} {response.get_data(as_text=True)[:200]}")
        return ""
    return str(response.get_json()["decision"])


# --- the baseline ---------------------------------------------------------------------------


def render_warnings(
    settings: Settings, recipients: list[tuple[str, str]]
) -> list[tuple[str, bytes, list[str]]]:
    """The warnings as the worker renders them, one per account: (wire recipient, bytes,
    MAIL FROM options)."""
    templates = {}
    messages = []
    for i, (address, locale) in enumerate(recipients):
        language = pick_language(locale or None)
        if language not in templates:
            templates[language] = prepare_notice(
                NoticeKind.LEAK_WARNING.value,
                language,
                NoticeContext(
                    service_name=settings.service_name,
                    leak_name=LEAK_NAME,
                    leak_date=OBSERVED,
                    account_url=settings.account_url,
                    password_leaked=False,
                ),
                sender=settings.mail_from,
            )
        message = address_message(
            templates[language],
            recipient=address,
            message_id=new_message_id(i + 1, settings.mail_from),
            now=utcnow(),
        )
        # A non-ASCII local part (some first names) needs SMTPUTF8, as the worker sends it.
        options = ["SMTPUTF8", "BODY=8BITMIME"] if message.smtputf8 else []
        messages.append((message.recipient, message.data, options))
    return messages


def bare_loop(
    sink: Sink, nth: int, messages: list[tuple[str, bytes, list[str]]]
) -> tuple[float, float, CpuWindow]:
    """sendmail of pre-rendered bytes over one connection; (wall s to the last 250, cpu s,
    the sink's and the machine's CPU meanwhile)."""
    cpu = time.process_time()
    mark = CpuWindow.start(sink)
    started = time.perf_counter()
    connection = smtplib.SMTP(HOST, sink.port, timeout=30)
    connection.ehlo()
    for recipient, data, options in messages:
        connection.sendmail(BASELINE_FROM, [recipient], data, options)
    wall = time.perf_counter() - started
    window = CpuWindow.since(mark, sink)
    connection.quit()
    if not sink.finished(nth):
        sys.exit("the sink did not count the baseline's messages")
    return wall, time.process_time() - cpu, window


# --- the benchmark ------------------------------------------------------------------------


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--accounts", type=at_least(1), default=100_000)
    parser.add_argument("--leaked", type=at_least(1), default=10_000)
    parser.add_argument("--mails", type=at_least(1), default=30)
    parser.add_argument("--per-mail", type=at_least(1), default=1_000)
    parser.add_argument("--seed", type=int, default=18)
    parser.add_argument(
        "--profile", type=at_least(0), default=0, metavar="N", help="then profile N warnings"
    )
    parser.add_argument(
        "--no-pipelining",
        action="store_true",
        help="the sink does not offer PIPELINING (RFC 2920): the worker talks as smtplib does",
    )
    parser.add_argument("--sink", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--expected", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sink is not None:
        serve_sink(args.sink, args.expected, pipelining=not args.no_pipelining)
        return
    if args.leaked > min(args.accounts, args.mails * args.per_mail):
        parser.error("--leaked must fit in the accounts and in the leak")
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; {args.accounts:,} accounts, {args.leaked:,} of them in a "
        f"leak of {args.mails} mails x {args.per_mail:,} recipients; PostgreSQL, Redis"
    )
    with tempfile.TemporaryDirectory(prefix="leakguard-bench-incident-") as tmp:
        directory = Path(tmp)
        try:  # created inside: a Ctrl-C while it is created still drops it
            url = create_pg_database(PG_DATABASE)
            with redis_database(REDIS_URL) as redis_url:
                print(f"Redis: {redis_url}")
                run(url, redis_url, directory, args)
        except RedisUnavailable as exc:
            sys.exit(f"no Redis database for the worker: {exc}")
        finally:
            drop_pg_database(PG_DATABASE)


def run(url: str, redis_url: str, directory: Path, args: argparse.Namespace) -> None:
    rng = random.Random(args.seed)
    population = make_population(args.accounts, args.leaked, rng)
    accounts_csv, mbox = directory / "accounts.csv", directory / "bitmex.mbox"
    write_accounts(accounts_csv, population)
    written = write_mbox(mbox, population, args.mails, args.per_mail, rng)
    forms = ", ".join(f"{name} {count:,}" for name, count in sorted(population.forms.items()))
    print(
        f"leak: {mbox.stat().st_size / 2**20:.1f} MiB mbox, {written:,} recipients; the "
        f"{args.leaked:,} leaked accounts' forms: {forms}"
    )

    env = child_env(url, directory / "instance", HASH_KEY)
    env.update(LEAKGUARD_REDIS_URL=redis_url, LEAKGUARD_LOG_LEVEL="WARNING")
    leakguard(["db", "upgrade"], env)
    started = time.perf_counter()
    imported = leakguard(["accounts", "import", str(accounts_csv), "--json"], env)
    print(
        f"accounts import (untimed): {imported['rows']:,} rows, {imported['created']:,} "
        f"created, {imported['invalid']:,} invalid, {time.perf_counter() - started:.1f} s"
    )

    sink = Sink(directory, args.leaked, pipelining=not args.no_pipelining)
    env["LEAKGUARD_SMTP_URL"] = sink.url
    settings = Settings(
        database_url=url,
        redis_url=redis_url,
        hash_key=HASH_KEY,
        instance_dir=directory / "instance",
        smtp_url=sink.url,
    )
    runtime = build_runtime(settings)
    leaked = [population.accounts[i] for i in population.leaked]
    messages = render_warnings(settings, [(address, locale) for _, address, locale in leaked])
    expected = {wire_address(address).lower() for _, address, _ in leaked}
    try:
        base_before = bare_loop(sink, 1, messages)
        incident = run_incident(runtime, settings, env, directory, sink, mbox, leaked, args)
        base_after = bare_loop(sink, 3, messages)
        counts = sink.counts()
    finally:
        sink.stop()
    report(incident, counts, expected, base_before, base_after, args.leaked)
    if args.profile:
        profile_dir = directory / "profile"
        profile_dir.mkdir()
        profile_sink = Sink(profile_dir, args.profile, pipelining=not args.no_pipelining)
        try:
            profile(settings.model_copy(update={"smtp_url": profile_sink.url}), args.profile)
        finally:
            profile_sink.stop()


@dataclass(slots=True)
class Incident:
    started: float
    ingest_wall: float
    ingest: dict[str, Any]
    ingest_usage: tuple[float, float]
    worker_usage: tuple[float, float]
    protected_at: float | None
    poll_rounds: int
    poll_errors: list[str]
    all_step_up: int
    not_step_up: dict[str, int]
    relay_wait: float  # the longest of a warning's creation (its chunk) -> queued
    window: CpuWindow  # ingest start -> the last warning accepted (to within 50 ms)
    bench_cpu: float  # this process meanwhile: the risk-check poller
    first_committed: float  # time.time() of the first warnings' chunk transaction


def run_incident(
    runtime: Runtime,
    settings: Settings,
    env: dict[str, str],
    directory: Path,
    sink: Sink,
    mbox: Path,
    leaked: list[tuple[str, str, str]],
    args: argparse.Namespace,
) -> Incident:
    with runtime.db.transaction() as session:
        key = create_api_client(
            session, name="bench", scopes=(Scope.RISK_CHECK,), actor="bench", now=utcnow()
        ).key
    client = create_app(settings).test_client()
    headers = {"Authorization": f"Bearer {key}"}
    drawn = random.Random(args.seed).sample(leaked, min(SAMPLE, len(leaked)))
    sample = [external_id for external_id, _, _ in drawn]
    errors: list[str] = []
    if any(check(client, headers, external_id, errors) != "allow" for external_id in sample):
        sys.exit(f"a sampled account did not answer allow before the leak: {errors[:3]}")

    worker = Measured.start([str(LEAKGUARD), "worker"], env, directory, "worker")
    connection = Redis.from_url(settings.redis_url or "")
    deadline = time.monotonic() + 60
    while not Worker.all(connection=connection):
        if worker.process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the worker did not start: {worker.log.read_text()[-2000:]}")
        time.sleep(0.1)

    poller = RiskPoller(client, key, sample)
    bench_cpu = time.process_time()
    mark = CpuWindow.start(sink)
    ingest = Measured.start(
        [
            str(LEAKGUARD),
            "ingest",
            str(mbox),
            "--leak",
            SLUG,
            "--name",
            LEAK_NAME,
            "--observed-at",
            OBSERVED.isoformat(),
            "--json",
            "--quiet",
        ],
        env,
        directory,
        "ingest",
    )
    poller.start()
    ingest.process.wait()
    ingest_wall = time.time() - ingest.started
    if ingest.process.returncode:
        worker.terminate_command()
        sys.exit(f"the ingest failed: {ingest.log.read_text()[-2000:]}")
    found = [line for line in ingest.log.read_text().splitlines() if line.startswith("{")]
    summary: dict[str, Any] = json.loads(found[-1]) if found else {}
    deadline = time.monotonic() + 600
    while not sink.finished(2):
        if worker.process.poll() is not None or time.monotonic() > deadline:
            print(f"the warnings did not all arrive: {worker.log.read_text()[-2000:]}")
            break
        time.sleep(0.05)
    window = CpuWindow.since(mark, sink)
    bench_cpu = time.process_time() - bench_cpu
    poller.join(timeout=60)
    poller.stopping.set()
    worker.terminate_command()
    worker.process.wait(timeout=120)

    with runtime.db.read_session() as session:
        pairs = session.execute(sql_select(Notice.created_at, Notice.queued_at)).all()
    waits = [(queued - created).total_seconds() for created, queued in pairs if queued]
    relay_wait = max(waits) if waits else float("nan")
    first_committed = min((created for created, _ in pairs), default=None)

    # Untimed: every leaked account through the same risk check.
    decisions: dict[str, int] = {}
    for external_id, _, _ in leaked:
        decision = check(client, headers, external_id, errors)
        decisions[decision] = decisions.get(decision, 0) + 1
    step_up = decisions.pop("step_up", 0)
    return Incident(
        started=ingest.started,
        ingest_wall=ingest_wall,
        ingest=summary,
        ingest_usage=ingest.figures(),
        worker_usage=worker.figures(),
        protected_at=poller.protected_at,
        poll_rounds=poller.rounds,
        poll_errors=poller.errors + errors,
        all_step_up=step_up,
        relay_wait=relay_wait,
        not_step_up=decisions,
        window=window,
        bench_cpu=bench_cpu,
        first_committed=first_committed.timestamp() if first_committed else float("nan"),
    )


def report(
    incident: Incident,
    counts: dict[str, dict[str, Any]],
    expected: set[str],
    base_before: tuple[float, float, CpuWindow],
    base_after: tuple[float, float, CpuWindow],
    n: int,
) -> None:
    others = [name for name in counts if name != BASELINE_FROM]
    warnings = counts[others[0]] if len(others) == 1 else {}
    if len(others) > 1:
        print(f"warnings came from several senders: {others}")
    baseline = counts.get(BASELINE_FROM, {})
    summary = incident.ingest
    print(
        f"\ningest (one process, `leakguard ingest FILE --leak {SLUG} ...`): format "
        f"{summary.get('format')}, {summary.get('lines', 0):,} records, "
        f"{summary.get('valid', 0):,} valid, {summary.get('duplicates', 0):,} duplicates, "
        f"{summary.get('matched', 0):,} matched, {summary.get('notices', 0):,} notices"
    )
    base_wall = min(base_before[0], base_after[0])
    print(
        f"baseline: bare smtplib sendmail loop of the {n:,} pre-rendered warnings over one "
        f"connection: {base_before[0]:.2f} s before, {base_after[0]:.2f} s after "
        f"({n / base_before[0]:,.0f} / {n / base_after[0]:,.0f} msgs/s; client cpu "
        f"{base_before[1]:.1f} / {base_after[1]:.1f} s); the faster counts: {base_wall:.2f} s"
    )
    for label, base in (("before", base_before), ("after", base_after)):
        print(f"  bare loop {label}: client {base[1]:.1f} s CPU, {base[2].cores()}")
    if not warnings:
        print("\nno warning reached the sink")
        return
    end_to_end = warnings["last"] - incident.started
    delivery = warnings["last"] - (incident.started + incident.ingest_wall)
    window = warnings["last"] - warnings["first"]
    rate = (warnings["messages"] - 1) / window if window > 0 else float("nan")
    base_rate = n / base_wall
    times = warnings["times"]
    gaps = [b - a for a, b in itertools.pairwise(times) if b - a > GAP_SECONDS]
    ingest_exit = incident.started + incident.ingest_wall
    before_exit = sum(1 for t in times if t <= ingest_exit)
    after_rate = (len(times) - before_exit) / (warnings["last"] - ingest_exit)
    ingest_rss, ingest_cpu = incident.ingest_usage
    worker_rss, worker_cpu = incident.worker_usage
    protected = (
        f"{incident.protected_at - incident.started:.2f} s"
        if incident.protected_at
        else "never (within the run)"
    )
    ratio = end_to_end / base_wall
    rows = [
        ("end to end: ingest start -> last warning accepted", f"{end_to_end:.2f} s"),
        (
            f"  / bare loop (target 5, issue 18: <= {TARGET_END_TO_END}x)",
            f"{ratio:.2f}x ({_verdict(ratio <= TARGET_END_TO_END)})",
        ),
        (
            f"protected: ingest start -> {min(SAMPLE, n)} sampled accounts answer step_up",
            protected,
        ),
        ("ingest wall (interpreter start to exit)", f"{incident.ingest_wall:.2f} s"),
        ("  of it the ingest's own seconds (--json)", f"{summary.get('seconds', 0.0):.2f} s"),
        (
            "ingest start -> first warnings committed (first chunk)",
            f"{incident.first_committed - incident.started:.2f} s",
        ),
        ("a warning created (its chunk) -> relayed, the longest", f"{incident.relay_wait:.2f} s"),
        ("ingest exit -> last warning accepted", f"{delivery:.2f} s"),
        ("ingest start -> first warning accepted", f"{warnings['first'] - incident.started:.2f} s"),
        ("send window: first -> last warning accepted", f"{window:.2f} s"),
        ("worker msgs/s over the send window", f"{rate:,.0f}"),
        (
            f"  / bare loop msgs/s (target 6, issue 18: >= {TARGET_WORKER:.0%})",
            f"{rate / base_rate:.0%} ({_verdict(rate / base_rate >= TARGET_WORKER)})",
        ),
        (
            f"  the window's pauses over {GAP_SECONDS} s (no warning accepted): count, total",
            f"{len(gaps)}, {sum(gaps):.2f} s",
        ),
        ("warnings accepted before the ingest's exit", f"{before_exit:,}"),
        ("worker msgs/s from the ingest's exit to the last", f"{after_rate:,.0f}"),
        ("  / bare loop msgs/s", f"{after_rate / base_rate:.0%}"),
        ("ingest peak RSS / CPU", f"{ingest_rss:.0f} MiB / {ingest_cpu:.2f} s"),
        (
            "worker peak RSS / CPU (its work horses included)",
            f"{worker_rss:.0f} MiB / {worker_cpu:.2f} s",
        ),
    ]
    print()
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label:<{width}}  {value:>22}")
    window = incident.window
    others = window.machine - ingest_cpu - worker_cpu - window.sink - incident.bench_cpu
    print(
        f"CPU from ingest start to the last warning ({window.wall:.1f} s): {window.cores()}; "
        f"of it ingest {ingest_cpu:.1f} s, worker {worker_cpu:.1f} s, sink {window.sink:.1f} s, "
        f"this bench's risk-check poller {incident.bench_cpu:.1f} s, the rest (PostgreSQL, "
        f"Redis, other jobs on the machine) {others:.1f} s"
    )

    seen = set(warnings["seen"])
    problems = []
    if warnings["messages"] != n:
        problems.append(f"{warnings['messages']:,} warnings accepted, not {n:,}")
    if warnings["multi"]:
        problems.append(f"{warnings['multi']:,} messages with more than one recipient")
    if warnings["twice"]:
        problems.append(f"{warnings['twice']:,} recipients got more than one warning")
    if seen != expected:
        problems.append(
            f"{len(expected - seen):,} leaked accounts got no warning, "
            f"{len(seen - expected):,} recipients are not leaked accounts"
        )
    if baseline.get("messages") != 2 * n:
        problems.append(f"the sink counted {baseline.get('messages')} baseline messages")
    if incident.all_step_up != n:
        problems.append(
            f"only {incident.all_step_up:,} of {n:,} answer step_up: {incident.not_step_up}"
        )
    if incident.poll_errors:
        problems.append(f"risk check errors: {incident.poll_errors[:3]}")
    print(
        f"\ncorrectness: {warnings['messages']:,} warnings accepted, {warnings['rcpts']:,} "
        f"recipients, {len(seen):,} distinct; after the run {incident.all_step_up:,} of the "
        f"{n:,} leaked accounts answer step_up ({incident.poll_rounds} poll rounds while "
        f"timed): {'OK' if not problems else 'FAILED: ' + '; '.join(problems)}"
    )


def _verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def profile(settings: Settings, n: int) -> None:
    """Re-send n warnings with ``send_notices`` under cProfile, in this process."""
    runtime = build_runtime(settings)
    with runtime.db.transaction() as session:
        ids = list(
            session.scalars(
                sql_select(Notice.id)
                .where(Notice.state == NoticeState.SENT)
                .order_by(Notice.id)
                .limit(n)
            )
        )
        session.execute(
            update(Notice)
            .where(Notice.id.in_(ids))
            .values(state=NoticeState.QUEUED, sent_at=None, message_id=None, attempts=0)
        )
    profiler = cProfile.Profile()
    started = time.perf_counter()
    profiler.enable()
    result = send_notices(runtime, ids)
    profiler.disable()
    wall = time.perf_counter() - started
    print(
        f"\nprofile: send_notices of {len(ids):,} warnings in this process: {result.sent:,} sent "
        f"in {wall:.2f} s = {result.sent / wall:,.0f} msgs/s (under cProfile); top 25 by "
        "cumulative time:"
    )
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(25)
    print(out.getvalue())
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(20)
    print("top 20 by own time:")
    print(out.getvalue())


if __name__ == "__main__":
    run_bench(main)
