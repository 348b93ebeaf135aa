"""Bulk writes hold a bounded number of advisory locks (service/db/address_locks.py).

PostgreSQL's shared lock table holds ``max_locks_per_transaction`` x ``max_connections``
locks (64 x 100 by default) for all sessions together. An accounts import took one
address lock per row, 20,000 in a chunk of the default size, and an ingest with a security-event
receiver one account lock per flagged account: both failed with "out of shared memory" on a
default server.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from jobs.account_import import import_accounts
from jobs.ingest.pipeline import ingest_leak
from service.config import Settings
from service.runtime import Runtime, build_runtime
from tests.support.leakfiles import write_accounts_csv, write_lines

ROWS = Settings.model_fields["import_chunk_rows"].default  # one chunk of the default size


@pytest.mark.parametrize("events", [False, True], ids=["no-events", "events-poll"])
def test_an_import_chunk_and_an_ingest_flagging_all_of_it_fit_the_lock_table(
    runtime: Runtime, tmp_path: Path, events: bool
) -> None:
    # With a security-event receiver, flagging takes each account's risk-level lock too.
    runtime = build_runtime(runtime.settings.model_copy(update={"events_poll": events}))
    addresses = {f"acct-{i:05d}": f"bulk.member{i}@example.com" for i in range(ROWS)}
    report = import_accounts(runtime, write_accounts_csv(tmp_path / "accounts.csv", addresses))
    assert (report.created, report.invalid) == (ROWS, 0)

    leak = write_lines(tmp_path / "leak.txt", [a.upper() for a in addresses.values()])
    ingested = ingest_leak(runtime, leak, slug="bulk-2026")
    assert (ingested.run.matched, ingested.run.notices) == (ROWS, ROWS)
