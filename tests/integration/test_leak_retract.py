"""`leakguard leaks retract`: a leak ingested by mistake is undone, on SQLite and PostgreSQL.

Its open exposures end, its unsent warnings are cancelled, its watch list goes, its
counters and an audit event stay, and the warnings already sent are counted (they cannot
be unsent). Run through the command group on the test's app (``runner``).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import func, select, update

from jobs.ingest.pipeline import IngestProgress, ingest_leak
from service.db import utcnow
from service.leaks.catalogue import LeakRetracted
from service.leaks.retract import retract_leak
from service.models import (
    EMAIL_KEY_BYTES,
    AuditEvent,
    Exposure,
    Leak,
    LeakEntry,
    Notice,
    NoticeState,
)
from service.runtime import Runtime
from tests.support.cli import invoke, json_output, one_error_line, output
from tests.support.db import leak_counters, notices
from tests.support.factories import flag_accounts, make_account
from tests.support.leakfiles import write_lines

TYPO = "shp-2026"
OTHER = "exchange-2019"


def exposure_states(runtime: Runtime, slug: str) -> dict[str, int]:
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(Exposure.state, func.count())
            .join(Leak, Leak.id == Exposure.leak_id)
            .where(Leak.slug == slug)
            .group_by(Exposure.state)
        ).all()
    return {str(state): count for state, count in rows}


def entries(runtime: Runtime, slug: str) -> int:
    with runtime.db.read_session() as session:
        leak_id = session.scalar(select(Leak.id).where(Leak.slug == slug))
        return session.scalar(select(func.count()).where(LeakEntry.leak_id == leak_id)) or 0


def mark_sent(runtime: Runtime, slug: str, count: int) -> None:
    """As if a worker had sent ``count`` of the leak's warnings already."""
    with runtime.db.transaction() as session:
        leak_id = session.scalar(select(Leak.id).where(Leak.slug == slug))
        ids = session.scalars(
            select(Notice.id).where(Notice.leak_id == leak_id).order_by(Notice.id).limit(count)
        ).all()
        session.execute(
            update(Notice)
            .where(Notice.id.in_(ids))
            .values(state=NoticeState.SENT, sent_at=utcnow())
        )


def decision(client: FlaskClient, auth: dict[str, str], external_id: str) -> str:
    answer = client.post("/v1/risk/check", json={"account_id": external_id}, headers=auth)
    assert answer.status_code == 200, answer.get_json()
    return str(answer.get_json()["decision"])


def test_retract_undoes_the_leak_and_reports_what_went_out(
    runtime: Runtime,
    runner: FlaskCliRunner,
    client: FlaskClient,
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    flagged = flag_accounts(runtime, tmp_path, 6, slug=TYPO, prefix="m")
    mark_sent(runtime, TYPO, 2)
    counters = leak_counters(runtime, TYPO)
    first = sorted(flagged)[0]
    assert decision(client, auth, first) == "step_up"

    dry = invoke(runner, "leaks", "retract", TYPO, "--reason", "typo in slug", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout == (
        f"dry run, nothing changed: retracting leak {TYPO} would end 6 open exposures; "
        "4 unsent warnings would be cancelled; 12 watch-list entries to remove\n"
        "2 warnings had already been sent: they cannot be unsent\n"
    )
    assert exposure_states(runtime, TYPO) == {"open": 6}
    assert entries(runtime, TYPO) == 12
    dry_json = json_output(
        invoke(runner, "leaks", "retract", TYPO, "--reason", "typo", "--dry-run", "--json")
    )
    assert dry_json == {
        "leak": TYPO,
        "retracted_at": None,
        "already_retracted": False,
        "dry_run": True,
        "exposures_ended": 6,
        "warnings_cancelled": 4,
        "warnings_sent": 2,
        "warnings_sending": 0,
        "entries_removed": 12,
        "staged_keys_dropped": 0,
    }

    out = output(runner, "leaks", "retract", TYPO, "--reason", "typo in slug")
    assert out == (
        f"leak {TYPO} retracted: ended 6 open exposures; 4 unsent warnings cancelled; "
        "12 watch-list entries removed\n"
        "2 warnings had already been sent: they cannot be unsent\n"
    )
    assert exposure_states(runtime, TYPO) == {"retracted": 6}
    assert sorted(state for *_, state in notices(runtime)) == ["cancelled"] * 4 + ["sent"] * 2
    assert entries(runtime, TYPO) == 0
    assert leak_counters(runtime, TYPO) == counters  # kept
    assert decision(client, auth, first) == "allow"  # the next risk check no longer steps up
    with runtime.db.read_session() as session:
        exposure = session.scalars(select(Exposure).limit(1)).one()
        assert exposure.resolved_by is not None
        assert exposure.resolved_by.startswith("cli")
        assert exposure.resolution == "leak retracted: typo in slug"
        (event,) = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "leak.retracted")
        ).all()
    assert event.target == TYPO
    assert event.detail == {
        "reason": "typo in slug",
        "exposures_ended": 6,
        "warnings_cancelled": 4,
        "warnings_sent": 2,
    }

    again = invoke(runner, "leaks", "retract", TYPO, "--reason", "again")
    assert again.exit_code == 0
    assert again.stdout.startswith(f"leak {TYPO} was already retracted on ")
    assert again.stdout.endswith("; nothing changed\n")

    listed = output(runner, "leaks", "list")
    assert f"{TYPO:<24} retracted" in listed
    shown = output(runner, "leaks", "show", TYPO)
    assert f"{TYPO}: Exchange newsletter with every recipient visible (retracted)" in shown
    assert "typo in slug" in shown
    as_json = json_output(invoke(runner, "leaks", "show", TYPO, "--json"))
    assert as_json["state"] == "retracted"
    assert as_json["retraction_reason"] == "typo in slug"
    assert as_json["exposures"] == {"retracted": 6}
    assert as_json["notices_by_state"] == {"cancelled": 4, "sent": 2}


def test_an_account_in_another_leak_stays_flagged_for_that_one(
    runtime: Runtime,
    runner: FlaskCliRunner,
    client: FlaskClient,
    auth: dict[str, str],
    tmp_path: Path,
) -> None:
    make_account(runtime, "both", "both@example.org")
    make_account(runtime, "typo-only", "typo.only@example.org")
    ingest_leak(runtime, write_lines(tmp_path / "real.txt", ["both@example.org"]), slug=OTHER)
    typo_file = write_lines(tmp_path / "typo.txt", ["both@example.org", "typo.only@example.org"])
    ingest_leak(runtime, typo_file, slug=TYPO)

    output(runner, "leaks", "retract", TYPO, "--reason", "wrong slug")

    assert exposure_states(runtime, OTHER) == {"open": 1}
    assert decision(client, auth, "both") == "step_up"
    assert decision(client, auth, "typo-only") == "allow"
    assert ("both", OTHER, "leak_warning", "pending") in notices(runtime)
    assert entries(runtime, OTHER) == 1


def test_a_retracted_leak_flags_nobody_later_and_takes_no_more_files(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    leak_file = write_lines(tmp_path / "typo.txt", ["later@example.org"])
    ingest_leak(runtime, leak_file, slug=TYPO)
    output(runner, "leaks", "retract", TYPO, "--reason", "wrong file")

    make_account(runtime, "later", "later@example.org")  # the watch list is gone
    assert exposure_states(runtime, TYPO) == {}

    again = invoke(runner, "ingest", str(leak_file), "--leak", TYPO)
    assert one_error_line(again) == (
        f"Error: leak {TYPO} was retracted on {utcnow():%Y-%m-%d}; ingest under another --leak slug"
    )


def test_watch_list_goes_in_batches_and_a_late_exposure_is_ended_too(
    runtime: Runtime, tmp_path: Path
) -> None:
    make_account(runtime, "late", "late@example.org")
    lines = [f"person{i}@leak-victims.example" for i in range(25)] + ["late@example.org"]
    ingest_leak(runtime, write_lines(tmp_path / "typo.txt", lines), slug=TYPO)

    report = retract_leak(
        runtime.db, TYPO, reason="typo", actor="test", now=utcnow(), batch=4
    )  # 26 entries: 7 batches
    assert (report.entries_removed, report.exposures_ended) == (26, 1)
    assert entries(runtime, TYPO) == 0
    assert json.loads(json.dumps(report.to_json()))["already_retracted"] is False

    # A run killed after the mark, before the watch list was gone, finishes when run again.
    with runtime.db.transaction() as session:
        leak_id = session.scalar(select(Leak.id).where(Leak.slug == TYPO))
        session.add(LeakEntry(email_key=b"\x01" * EMAIL_KEY_BYTES, leak_id=leak_id))
    rerun = retract_leak(runtime.db, TYPO, reason="typo", actor="test", now=utcnow())
    assert (rerun.already_retracted, rerun.entries_removed) == (True, 1)
    assert entries(runtime, TYPO) == 0


def test_retract_refuses_an_unknown_leak_and_an_empty_reason(runner: FlaskCliRunner) -> None:
    unknown = invoke(runner, "leaks", "retract", "no-such-leak", "--reason", "x")
    assert one_error_line(unknown) == "Error: no leak named 'no-such-leak'"
    empty = invoke(runner, "leaks", "retract", "no-such-leak", "--reason", "  ")
    assert one_error_line(empty) == "Error: the reason must say why, in 1-500 characters"


def test_an_ingest_running_when_its_leak_is_retracted_stops_at_its_next_chunk(
    runtime: Runtime, tmp_path: Path
) -> None:
    for i in range(6):
        make_account(runtime, f"r{i}", f"r{i}@example.org")
    leak_file = write_lines(tmp_path / "typo.txt", [f"r{i}@example.org" for i in range(6)])
    retracted: list[bool] = []

    def retract_after_first_chunk(_progress: IngestProgress) -> None:
        if not retracted:
            retract_leak(runtime.db, TYPO, reason="typo", actor="test", now=utcnow())
            retracted.append(True)

    with pytest.raises(LeakRetracted, match="retracted while this file was being ingested"):
        ingest_leak(
            runtime, leak_file, slug=TYPO, chunk_records=2, on_progress=retract_after_first_chunk
        )
    assert exposure_states(runtime, TYPO) == {"retracted": 2}  # the first chunk's, ended
    assert {state for *_, state in notices(runtime)} == {"cancelled"}
    assert entries(runtime, TYPO) == 0
