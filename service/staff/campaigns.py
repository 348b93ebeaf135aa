"""Campaign controls of the staff site: preview a leak's warnings in every language and
kind, send one to a seed address, pause and resume, retract the leak once its slug is
typed back.

Each is what ``leakguard notices preview|test-send|pause|resume`` and ``leakguard leaks
retract`` do, through the same domain functions; the only rule added here is the typed
confirmation a page needs where the CLI has the operator type the slug anyway.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from service.config import Settings
from service.db import Database
from service.errors import LeakguardError
from service.leaks.retract import RetractionReport, retract_leak
from service.notices.preview import (
    SentSeed,
    WarningVariant,
    prepare_warning,
    preview_warning,
    send_test_warning,
)
from service.notices.render import LANGUAGES


@dataclass(frozen=True, slots=True)
class Preview:
    kind: str  # email | credential
    language: str
    text: str  # headers and text part, the sample address masked


def preview_all(session: Session, settings: Settings, slug: str, *, now: datetime) -> list[Preview]:
    """The leak's warning in each kind and language, as ``notices preview`` prints them.
    Raises NotFound."""
    return [
        Preview(
            kind.value,
            language,
            preview_warning(
                prepare_warning(session, settings, slug=slug, language=language, variant=kind),
                settings,
                now=now,
            ),
        )
        for kind in WarningVariant
        for language in LANGUAGES
    ]


def send_seed(
    session: Session,
    settings: Settings,
    slug: str,
    *,
    recipient: str,
    kind: WarningVariant,
    language: str,
    now: datetime,
) -> SentSeed:
    """``notices test-send``: one warning to one seed address, outside the campaign.
    Raises NotFound, SeedRefused."""
    prepared = prepare_warning(session, settings, slug=slug, language=language, variant=kind)
    return send_test_warning(prepared, settings, recipient=recipient, now=now)


class ConfirmationMismatch(LeakguardError):
    """The slug typed back is not the leak's: nothing was retracted."""

    status = 422
    code = "confirmation_mismatch"
    title = "Type the leak's slug to confirm"


def retract_confirmed(
    db: Database,
    slug: str,
    *,
    typed: str,
    reason: str,
    actor: str,
    now: datetime,
    dry_run: bool = False,
) -> RetractionReport:
    """``leaks retract`` once the slug is typed back exactly; commits as it does. Raises
    ConfirmationMismatch (before anything is read or changed), NotFound, ValidationFailed.
    A dry run needs no confirmation: it changes nothing."""
    # Exactly what was typed: a slug with a space typed after it is not the slug, and a
    # confirmation that forgives one slip trains people to type carelessly.
    if not dry_run and typed != slug:
        raise ConfirmationMismatch(f"type {slug!r} exactly to retract it")
    return retract_leak(db, slug, reason=reason, actor=actor, now=now, dry_run=dry_run)
