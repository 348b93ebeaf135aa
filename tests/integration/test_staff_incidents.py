"""The staff site's incident read models: the leak list with its progress, and a leak's
funnel counted exactly from the tables and drawn by pygal; on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import select, update

from jobs.ingest.pipeline import ingest_leak
from service.db import utcnow
from service.email_change import assisted
from service.email_change.context import ChangeTools
from service.email_change.links import confirm_change
from service.email_change.tokens import LinkPurpose
from service.leaks.lifecycle import end_exposure
from service.models import Account, LeakFile, LeakFileState, Notice, NoticeState
from service.notices.campaigns import set_paused
from service.notices.outbox import record_bounces
from service.runtime import Runtime
from service.staff.charts import funnel_svg
from service.staff.incidents import leak_funnel, list_incidents, show_incident
from service.stepup.services import Method, Passed
from tests.support.email_change import link_token
from tests.support.factories import make_account
from tests.support.leakfiles import write_lines

SLUG = "exchange-2019"
PEOPLE = ("ann", "bob", "cid", "dan", "eve")


def ingest_people(runtime: Runtime, tmp_path: Path) -> None:
    for name in PEOPLE:
        make_account(runtime, name, f"{name}@example.org")
    make_account(runtime, "safe", "safe@example.org")
    lines = [f"{name}@example.org" for name in PEOPLE] + ["stranger@example.net"]
    ingest_leak(runtime, write_lines(tmp_path / "leak.txt", lines), slug=SLUG)


def mark_sent(runtime: Runtime, *names: str) -> None:
    """The warnings of ``names`` handed to the mail server, each with its Message-ID."""
    with runtime.db.transaction() as session:
        for name in names:
            account_id = session.scalars(select(Account.id).where(Account.external_id == name))
            session.execute(
                update(Notice)
                .where(Notice.account_id == account_id.one())
                .values(state=NoticeState.SENT, sent_at=utcnow(), message_id=f"<{name}@mail>")
            )


def step_up_by_email(runtime: Runtime, external_id: str) -> None:
    now = utcnow()
    with runtime.db.transaction() as session:
        challenge = runtime.step_up.start_email_challenge(
            session, external_id, actor="test", now=now
        )
    code = runtime.step_up.email_code(challenge.id)
    with runtime.db.transaction() as session:
        outcome = runtime.step_up.verify(
            session,
            external_id,
            Method.EMAIL_CODE,
            code,
            challenge_id=challenge.id,
            actor="test",
            now=now,
        )
    assert isinstance(outcome, Passed)


def change_email(runtime: Runtime, external_id: str, new_email: str) -> None:
    tools = ChangeTools.of(runtime)
    with runtime.db.transaction() as session:
        view = assisted.request_assisted(
            session, tools, external_id, new_email, ticket="SUP-1", actor="staff:a", now=utcnow()
        )
    with runtime.db.transaction() as session:
        assisted.approve(session, tools, view.request_id, by="b", reason="id checked", now=utcnow())
    token = link_token(runtime, view.request_id, LinkPurpose.CONFIRM)
    with runtime.db.transaction() as session:
        confirm_change(session, tools, token, actor="test", now=utcnow())


def test_the_funnel_counts_each_stage_exactly(runtime: Runtime, tmp_path: Path) -> None:
    ingest_people(runtime, tmp_path)
    mark_sent(runtime, "ann", "bob", "cid", "dan")
    with runtime.db.transaction() as session:
        bounced = record_bounces(session, [("<dan@mail>", 550, "user unknown")], now=utcnow())
    assert bounced.matched == 1
    step_up_by_email(runtime, "ann")
    step_up_by_email(runtime, "bob")
    change_email(runtime, "bob", "bob.new@example.net")  # ends bob's exposure: resolved
    with runtime.db.transaction() as session:
        end_exposure(
            session, "cid", SLUG, action="dismiss", reason="false match", actor="t", now=utcnow()
        )
    with runtime.db.read_session() as session:
        funnel = leak_funnel(session, SLUG)
    assert {key: count for key, _, count in funnel.stages()} == {
        "matched": 5,
        "warned": 4,  # dan's bounced after it was sent: it was sent
        "delivered": 3,
        "failed": 1,
        "stepped_up": 2,
        "email_changed": 1,
        "resolved": 1,
    }
    assert funnel.exposures == {"open": 3, "resolved": 1, "dismissed": 1}


def test_a_step_up_before_the_leak_is_not_counted(runtime: Runtime, tmp_path: Path) -> None:
    make_account(runtime, "early", "early@example.org")
    step_up_by_email(runtime, "early")
    ingest_leak(runtime, write_lines(tmp_path / "l.txt", ["early@example.org"]), slug=SLUG)
    with runtime.db.read_session() as session:
        funnel = leak_funnel(session, SLUG)
    assert (funnel.matched, funnel.stepped_up) == (1, 0)


def test_the_funnel_chart_is_an_svg_of_every_stage_with_nothing_fetched(
    runtime: Runtime, tmp_path: Path
) -> None:
    ingest_people(runtime, tmp_path)
    with runtime.db.read_session() as session:
        svg = funnel_svg(leak_funnel(session, SLUG))
    assert svg.startswith("<svg")
    for label in ("Matched", "Warned (sent)", "Delivered", "Bounced or failed", "Stepped up"):
        assert label in svg
    assert re.search(r"""(src|href)=["']https?:""", svg) is None
    assert ">5<" in svg  # the matched count, printed on its bar


def test_the_incident_list_shows_state_counts_progress_and_pause(
    runtime: Runtime, tmp_path: Path
) -> None:
    ingest_people(runtime, tmp_path)
    with runtime.db.transaction() as session:
        set_paused(session, SLUG, paused=True, actor="test", now=utcnow())
    with runtime.db.read_session() as session:
        [incident] = list_incidents(session, held=lambda file_id: False)
        shown = show_incident(session, SLUG)
    assert incident.state == "complete"
    assert incident.paused is True
    assert incident.leak.counters["matched"] == 5
    assert incident.records_done == 6
    [file] = incident.files
    assert (file.state, file.parts, file.records_done) == ("complete", 0, 6)
    assert shown.leak.slug == SLUG


def test_a_file_that_finishes_while_it_is_looked_at_is_not_called_interrupted(
    runtime: Runtime, tmp_path: Path
) -> None:
    ingest_people(runtime, tmp_path)
    with runtime.db.transaction() as session:
        session.execute(update(LeakFile).values(state=LeakFileState.RUNNING))

    def finishes_meanwhile(file_id: int) -> bool:
        # The last part commits between the page's read of the file and this look.
        with runtime.db.transaction() as other:
            other.execute(
                update(LeakFile).where(LeakFile.id == file_id).values(state=LeakFileState.COMPLETE)
            )
        return False

    with runtime.db.read_session() as session:
        assert show_incident(session, SLUG, held=lambda _: False).state == "interrupted"
    with runtime.db.transaction() as session:
        session.execute(update(LeakFile).values(state=LeakFileState.RUNNING))
    with runtime.db.read_session() as session:
        assert show_incident(session, SLUG, held=finishes_meanwhile).state == "running"
    with runtime.db.read_session() as session:
        assert show_incident(session, SLUG, held=lambda _: False).state == "complete"
