"""Campaign controls of the staff site: previews in every kind and language, a seed sent
to one address over real SMTP, a retraction only once the slug is typed back; on SQLite
and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from service.db import utcnow
from service.models import AuditEvent, Leak
from service.notices.preview import SeedRefused, WarningVariant
from service.notices.render import LANGUAGES
from service.risk import Decision, assess
from service.runtime import Runtime
from service.staff.campaigns import (
    ConfirmationMismatch,
    preview_all,
    retract_confirmed,
    send_seed,
)
from tests.support.factories import LEAK, expose, make_account
from tests.support.smtp import SmtpServer


def test_previews_cover_every_kind_and_language_with_the_address_masked(
    runtime: Runtime,
) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    with runtime.db.read_session() as session:
        previews = preview_all(session, runtime.settings, LEAK, now=utcnow())
    assert [(p.kind, p.language) for p in previews] == [
        (kind.value, language) for kind in WarningVariant for language in LANGUAGES
    ]
    for preview in previews:
        assert "j***@example.com" in preview.text
        assert "jane.doe@example.com" not in preview.text
    assert previews[0].text != previews[len(LANGUAGES)].text  # credential says more


def test_a_seed_goes_to_exactly_one_address(mail_runtime: Runtime, smtp_server: SmtpServer) -> None:
    expose(mail_runtime, make_account(mail_runtime, "ann", "ann@example.org"))
    with mail_runtime.db.read_session() as session:
        sent = send_seed(
            session,
            mail_runtime.settings,
            LEAK,
            recipient="seed@ops.example",
            kind=WarningVariant.CREDENTIAL,
            language="de",
            now=utcnow(),
        )
        with pytest.raises(SeedRefused):
            send_seed(
                session,
                mail_runtime.settings,
                LEAK,
                recipient="not an address",
                kind=WarningVariant.EMAIL,
                language="en",
                now=utcnow(),
            )
    assert sent.masked_recipient == "s***@ops.example"
    (envelope,) = smtp_server.messages()
    assert envelope.rcpt_tos == ("seed@ops.example",)


def test_a_retraction_needs_the_slug_typed_back(runtime: Runtime) -> None:
    expose(runtime, make_account(runtime, "ann", "ann@example.org"))
    for typed in ("exchange-2018", f" {LEAK}", f"{LEAK} ", f"{LEAK}\n", LEAK.upper()):
        with pytest.raises(ConfirmationMismatch):
            retract_confirmed(
                runtime.db, LEAK, typed=typed, reason="typo", actor="staff:a", now=utcnow()
            )
    with runtime.db.read_session() as session:
        assert session.scalar(select(Leak.retracted_at)) is None
    dry = retract_confirmed(
        runtime.db, LEAK, typed="", reason="typo", actor="staff:a", now=utcnow(), dry_run=True
    )
    assert (dry.dry_run, dry.exposures_ended) == (True, 1)
    report = retract_confirmed(
        runtime.db, LEAK, typed=LEAK, reason="typo", actor="staff:a", now=utcnow()
    )
    assert report.exposures_ended == 1
    verdict = assess(
        runtime.db,
        runtime.step_up,
        "ann",
        password=None,
        assurance_token=None,
        actor="login",
        context=None,
        now=utcnow(),
    )
    assert verdict.decision is Decision.ALLOW
    with runtime.db.read_session() as session:
        [event] = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "leak.retracted")
        ).all()
    assert event.actor == "staff:a"
