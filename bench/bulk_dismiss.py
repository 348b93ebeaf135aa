"""Benchmark support's bulk dismissal: one press of ``/staff/queues/bulk-dismiss`` ending
MAX_BULK open exposures on PostgreSQL, through the real staff site. Prints figures only.

A throw-away database ``leakguard_bench_bulk_PID``: ``--accounts`` accounts, ``--exposed``
of them exposed to one leak (each with its pending warning and, events on, the
risk-level-change that flagged it), as an ingest leaves them. Security events go to one
receiver (push), as deployed. The app is built as gunicorn's workers build it (serving:
statements bounded by ``LEAKGUARD_DB_REQUEST_TIMEOUT_SECONDS``); a staff agent signs in
through the form (untimed); then the confirming POST is timed, from sending it to its
answer (the transaction committed). The deployed worker timeout is 30 s
(deploy/gunicorn.conf.py).

    .venv/bin/python bench/bulk_dismiss.py [--accounts 20000] [--exposed 5000]
"""

from __future__ import annotations

import re
import secrets
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyotp
from common import bench_database_name, create_pg_database, drop_pg_database
from options import at_least, make_parser
from owned import run_bench
from sqlalchemy import create_engine, func, select

from service.accounts import AccountInput, upsert_accounts
from service.app import create_app
from service.config import Settings
from service.db.migrate import upgrade_database
from service.leaks.catalogue import get_or_create_leak
from service.leaks.exposures import NewExposure, record_exposures
from service.models import (
    Account,
    AuditEvent,
    Exposure,
    ExposureState,
    SecurityEvent,
    StaffRole,
)
from service.runtime import Runtime, runtime_of
from service.staff.users import (
    StaffSecrets,
    complete_enrolment,
    create_staff_user,
    open_enrolment,
)

CSRF = re.compile(r'name="csrf_token"[^>]*? value="([^"]+)"')
PASSWORD = "correct horse battery staple"  # noqa: S105  (a throw-away staff user)
LEAK = "bench-bulk"


def main() -> None:
    parser = make_parser(__doc__)
    parser.add_argument("--accounts", type=at_least(1), default=20_000)
    parser.add_argument("--exposed", type=at_least(1), default=5_000)
    args = parser.parse_args()
    if args.exposed > args.accounts:
        parser.error("--exposed must not exceed --accounts")
    name = bench_database_name("bulk")
    try:  # created inside: a Ctrl-C while it is created still drops it
        url = create_pg_database(name)
        with tempfile.TemporaryDirectory(prefix="leakguard-bench-bulk-") as tmp:
            run(url, Path(tmp), args.accounts, args.exposed)
    finally:
        drop_pg_database(name)


def run(url: str, instance: Path, accounts: int, exposed: int) -> None:
    engine = create_engine(url)
    upgrade_database(engine)
    engine.dispose()
    settings = Settings(
        database_url=url,
        instance_dir=instance,
        hash_key=secrets.token_hex(32),
        secret_key=secrets.token_hex(32),
        events_push_url="https://login.example/events",
        events_issuer="https://leakguard.example",
    )
    app = create_app(settings)
    rt = runtime_of(app)
    now = datetime.now(UTC)
    started = time.perf_counter()
    for start in range(0, accounts, 5_000):
        with rt.db.transaction() as session:
            upsert_accounts(
                session,
                [
                    AccountInput(f"acct-{n}", f"user{n}@example.org")
                    for n in range(start, min(accounts, start + 5_000))
                ],
                keys=rt.keys,
                now=now,
            )
    with rt.db.transaction() as session:
        leak_id = get_or_create_leak(session, slug=LEAK, name=None, source=None, now=now).id
        chosen = list(session.scalars(select(Account.id).order_by(Account.id).limit(accounts)))[
            :: max(1, accounts // exposed)
        ][:exposed]
        record_exposures(session, leak_id, [NewExposure(a) for a in chosen], now=now)
    print(
        f"setup: {accounts} accounts, {len(chosen)} exposed ({time.perf_counter() - started:.1f} s)"
    )
    staff = enrolled_agent(rt, now)
    client = app.test_client()
    log_in(client, staff)
    page = "/staff/queues/bulk-dismiss"
    form = {"leak": LEAK, "kind": "", "reason": "wrong file: not our users"}
    token = csrf(client, page)
    dry = client.post(page, data={**form, "csrf_token": token})
    if dry.status_code != 200:
        raise SystemExit(f"the dry run answered {dry.status_code}")
    started = time.perf_counter()
    done = client.post(
        page, data={**form, "csrf_token": token, "confirmed_count": str(len(chosen))}
    )
    seconds = time.perf_counter() - started
    with rt.db.read_session() as session:
        still_open = session.scalar(
            select(func.count()).where(Exposure.state == ExposureState.OPEN)
        )
        audited = session.scalar(
            select(func.count()).where(AuditEvent.action == "exposure.dismissed")
        )
        events = session.scalar(select(func.count()).select_from(SecurityEvent))
    print(
        f"confirming POST: {seconds:.2f} s, status {done.status_code}; open after: "
        f"{still_open}; exposure.dismissed audit rows: {audited}; security event rows: {events}"
    )
    rt.db.dispose()


def enrolled_agent(rt: Runtime, now: datetime) -> pyotp.TOTP:
    secrets_ = StaffSecrets(rt.settings.hash_key_bytes())
    db = rt.db
    with db.transaction() as session:
        enrolment = create_staff_user(
            session, email="agent@staff.example", role=StaffRole.AGENT, actor="bench", now=now
        )
    with db.transaction() as session:
        page = open_enrolment(session, secrets_, enrolment.token, issuer="Bench", now=now)
    totp = pyotp.TOTP(page.enrollment.secret)
    with db.transaction() as session:
        complete_enrolment(
            session, secrets_, enrolment.token, password=PASSWORD, code=totp.at(now), now=now
        )
    return totp


def csrf(client: Any, path: str) -> str:
    found = CSRF.search(client.get(path).get_data(as_text=True))
    if found is None:
        raise SystemExit(f"no CSRF token in {path}")
    return found.group(1)


def log_in(client: Any, totp: pyotp.TOTP) -> None:
    time.sleep(31 - time.time() % 30)  # a TOTP step the enrolment did not spend
    response = client.post(
        "/staff/login",
        data={
            "csrf_token": csrf(client, "/staff/login"),
            "email": "agent@staff.example",
            "password": PASSWORD,
            "code": totp.now(),
        },
    )
    if response.status_code != 303:
        raise SystemExit(f"the staff login answered {response.status_code}")


if __name__ == "__main__":
    run_bench(main)
