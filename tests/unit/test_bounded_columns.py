"""Every bounded text column (String(n)) is either filled by our own code within its
width, or fed from input (a CLI option, an API field, a staff form, a CSV column) through
a domain check that refuses n+1 characters with a ValidationFailed (one line in the CLI,
a 400 problem in the API): SQLite would store the text whole, PostgreSQL refuse it with a
trace. A new String(n) column fails this test until it says which."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Column, Enum, String
from sqlalchemy.types import TypeDecorator, TypeEngine

import service.models  # noqa: F401  # every model on Base.metadata
from jobs.ingest import parts
from jobs.reader.stream import LeakFileError
from service import accounts, clients, readable_text
from service.db.base import Base
from service.email_change import assisted, holds
from service.errors import ValidationFailed
from service.leaks import catalogue, retract
from service.stepup import hold


@dataclass(frozen=True)
class Checked:
    """Input, through ``check``: n+1 characters raise, n pass (text of ``make``)."""

    check: Callable[[str], object]
    make: Callable[[int], str] = lambda n: "x" * n
    errors: tuple[type[Exception], ...] = (ValidationFailed,)


@dataclass(frozen=True)
class Bounded:
    """Input, checked by a domain function against ``limit`` (it needs a session)."""

    limit: int


@dataclass(frozen=True)
class Internal:
    """Written by our own code only: ``why`` it fits."""

    why: str


ACTOR = Internal("an actor we build: cli:<login>, staff:<id>, api:<client name>, cause:<enum>")
REASON = Checked(retract.check_reason)


def _clear_hold_actor(text: str) -> object:
    return readable_text.check_readable_text(
        text, what="who clears the hold", limit=holds.MAX_ACTOR_CHARS
    )


def _stored_path(text: str) -> object:
    # An absolute path of exactly the length given: "/" and the rest.
    return parts.stored_path(Path("/" + text[1:]))


def _locale(n: int) -> str:
    """A well-formed tag of ``n`` characters: en-a-a-... (one more letter for odd n)."""
    return ("en" if n % 2 == 0 else "enx") + "-a" * ((n - 2) // 2)


def _client_name(text: str) -> None:
    if not clients.NAME_PATTERN.fullmatch(text):
        raise ValidationFailed("create_api_client refuses it")


def _ticket(text: str) -> object:
    return assisted._ticket(text)


COLUMNS: dict[str, Checked | Bounded | Internal] = {
    "account.external_id": Checked(accounts.check_external_id),
    "account.email": Bounded(accounts.MAX_EMAIL_CHARS),  # bare_email, keyed per deployment
    "account.locale": Checked(accounts.normalize_locale, make=_locale),
    "api_client.name": Checked(_client_name),
    "api_client.scopes": Internal("the Scope enum's values, space-separated"),
    "audit_event.actor": ACTOR,
    "audit_event.action": Internal("a constant slug"),
    "audit_event.target": Internal("a slug, an external_id, a request id: each checked"),
    "email_change_hold.cleared_by": Checked(_clear_hold_actor),
    "email_change_hold.clear_reason": Bounded(holds.MAX_REASON_CHARS),
    "email_change_hold.request_id": Internal("a UUID"),
    "email_change_request.id": Internal("a UUID"),
    "email_change_request.old_email": Bounded(accounts.MAX_EMAIL_CHARS),
    "email_change_request.new_email": Bounded(accounts.MAX_EMAIL_CHARS),
    "email_change_request.assurance_jti": Internal("the jti of a token we signed"),
    "email_change_request.ticket": Checked(_ticket),
    "email_change_request.requested_by": ACTOR,
    "email_change_request.reviewed_by": Checked(
        lambda text: assisted._text(text, "--by", assisted.MAX_NAME_CHARS)
    ),
    "email_change_request.review_reason": Checked(
        lambda text: assisted._text(text, "--reason", assisted.MAX_REASON_CHARS)
    ),
    "exposure.password_hash": Internal("an argon2 hash"),
    "exposure.resolved_by": ACTOR,
    "exposure.resolution": REASON,
    "key_fingerprint.name": Internal("a constant key name (hash_key)"),
    "leak.slug": Checked(catalogue.check_slug),
    "leak.name": Checked(catalogue.check_leak_name),
    "leak.source": Checked(catalogue.check_leak_source),
    "leak.retracted_by": ACTOR,
    "leak.retraction_reason": REASON,
    "leak_file.read_as": Internal("a format and the CSV column's number"),
    "leak_file.name": Internal("the file's basename, cut to 255 by the pipeline"),
    "leak_file.ran_by": Checked(catalogue.check_operator),
    "leak_file.format": Internal("a LeakFormat value"),
    "leak_file.compression": Internal("a compression's name"),
    "leak_file.path": Checked(_stored_path, errors=(LeakFileError,)),
    "notice.last_error": Internal("our error text, cut to the width"),
    "notice.message_id": Internal("a Message-ID we make"),
    "campaign.changed_by": ACTOR,
    "notice.challenge_id": Internal("a UUID"),
    "notice.email_change_id": Internal("a UUID"),
    "security_event.jti": Internal("a random id"),
    "security_event.event_type": Internal("an event type URI constant"),
    "security_event.last_error": Internal("our error text, cut to the width"),
    "staff_session.token_hash": Internal("a SHA-256 hex digest"),
    "staff_user.email": Internal("normalize_staff_email: email_validator caps it at 254"),
    "staff_user.password_hash": Internal("an argon2 hash"),
    "staff_user.enrol_token_hash": Internal("a SHA-256 hex digest"),
    "recovery_code.lookup": Internal("a random code's lookup"),
    "recovery_code.code_hash": Internal("an argon2 hash"),
    "step_up_challenge.id": Internal("a UUID"),
    "step_up_challenge.method": Internal("a StepUpMethod value"),
    "step_up_throttle.scope": Internal("a throttle scope constant"),
    "support_hold.reason": Bounded(hold.MAX_REASON_CHARS),
    "support_hold.placed_by": ACTOR,
    "support_hold.cleared_by": ACTOR,
    "support_hold.clear_reason": Bounded(hold.MAX_REASON_CHARS),
}


def _stored_type(column: Column[Any]) -> TypeEngine[Any]:
    """The type the database stores: a ``MaskedText(n)`` is a ``String(n)`` there."""
    kind = column.type
    return kind.impl_instance if isinstance(kind, TypeDecorator) else kind


def bounded_columns() -> dict[str, int]:
    return {
        f"{table.name}.{column.name}": kind.length
        for table in Base.metadata.sorted_tables
        for column in table.columns
        if isinstance(kind := _stored_type(column), String)
        and not isinstance(kind, Enum)  # a StrEnum's values
        and kind.length is not None
    }


def test_every_bounded_column_says_how_its_text_fits() -> None:
    assert sorted(bounded_columns()) == sorted(COLUMNS)


@pytest.mark.parametrize(
    "column", sorted(c for c, how in COLUMNS.items() if isinstance(how, Checked))
)
def test_input_one_past_the_width_is_refused_before_the_database(column: str) -> None:
    width = bounded_columns()[column]
    how = COLUMNS[column]
    assert isinstance(how, Checked)

    fits, past = how.make(width), how.make(width + 1)
    assert (len(fits), len(past)) == (width, width + 1)

    how.check(fits)
    with pytest.raises(how.errors):
        how.check(past)


@pytest.mark.parametrize(
    "column", sorted(c for c, how in COLUMNS.items() if isinstance(how, Bounded))
)
def test_a_domain_bound_is_within_the_width(column: str) -> None:
    how = COLUMNS[column]
    assert isinstance(how, Bounded)
    assert how.limit <= bounded_columns()[column]
