"""Leaks: created by an ingest, listed and shown to operators."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.audit import record_event
from service.errors import LeakguardError, NotFound, ValidationFailed
from service.leaks.counters import Counters
from service.leaks.wording import Worded
from service.models import Exposure, Leak, LeakFile, LeakPart, Notice
from service.readable_text import check_readable_text

SLUG_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,99}")
# The widths of the leak's columns (service/models/leaks.py): what people read of a leak.
MAX_NAME_CHARS = 200  # the name, in any language
MAX_SOURCE_CHARS = 500
MAX_OPERATOR_CHARS = 200  # who ran a file's ingest (--by)


def check_slug(slug: str) -> str:
    if not SLUG_PATTERN.fullmatch(slug):
        raise ValidationFailed(
            "a leak slug is 1-100 characters: lowercase letters, digits, '.', '_' or '-'"
        )
    return slug


def check_leak_name(name: str, *, what: str = "the leak's name") -> str:
    """The name as stored (trimmed, spaces made one); raise ValidationFailed for a blank or
    invisible one, a control character, or more than MAX_NAME_CHARS characters."""
    return check_readable_text(name, what=what, limit=MAX_NAME_CHARS)


def check_leak_source(source: str, *, what: str = "the leak's source") -> str:
    """The source as stored; raise ValidationFailed as check_leak_name, at MAX_SOURCE_CHARS."""
    return check_readable_text(source, what=what, limit=MAX_SOURCE_CHARS)


def check_operator(operator: str, *, what: str = "the operator") -> str:
    """Who runs an ingest, as stored; raise ValidationFailed as check_leak_name."""
    return check_readable_text(operator, what=what, limit=MAX_OPERATOR_CHARS)


class LeakRetracted(LeakguardError, Worded):
    """The leak was retracted: nothing is added to it any more."""

    status = 409
    code = "leak_retracted"
    title = "The leak was retracted"


@dataclass(frozen=True, slots=True)
class LeakFacts:
    """What the notices say about a leak, beyond its name in the fallback language.

    ``names`` holds the leak's name per language where it differs ({"de": ...});
    ``observed_at`` the leak's own date (when it appeared), never in the future.
    """

    names: Mapping[str, str] = field(default_factory=dict)
    observed_at: date | None = None

    def checked(self) -> LeakFacts:
        """These facts with each name as stored; raise ValidationFailed (check_leak_name)."""
        names = {
            language: check_leak_name(text, what=f"the leak's name in {language!r}")
            for language, text in self.names.items()
        }
        return LeakFacts(names=names, observed_at=self.observed_at)


def check_observed_at(day: date, *, now: datetime) -> date:
    """Refuse a leak date in the future (UTC): a typo would tell people a wrong story."""
    if day > now.date():
        raise ValidationFailed(
            f"the leak's date {day.isoformat()} is in the future (today is "
            f"{now.date().isoformat()} UTC)"
        )
    return day


def find_leak(session: Session, slug: str) -> Leak:
    """The leak named ``slug``; raise NotFound."""
    leak = session.scalars(select(Leak).where(Leak.slug == slug)).one_or_none()
    if leak is None:
        raise NotFound(f"no leak named {slug!r}")
    return leak


def get_or_create_leak(
    session: Session,
    *,
    slug: str,
    name: str | None,
    source: str | None,
    now: datetime,
    facts: LeakFacts | None = None,
) -> Leak:
    """Return the leak named ``slug``, creating it with the given name, source and facts.

    An existing leak keeps its facts whatever is given: a rerun of an ingest (or a new file
    of the leak) with another --name would otherwise rewrite what unsent warnings say with
    no trace in the audit log. ``edit_leak`` changes them, audited; ``facts_not_applied``
    tells which given facts were left. Raises ValidationFailed for a bad slug, name or
    source (check_leak_name) or a leak date in the future, LeakRetracted for a retracted
    leak (its slug is taken for good: a new run goes under another one).
    """
    check_slug(slug)
    name, source, facts = check_leak_facts(name, source, facts or LeakFacts(), now=now)
    leak = session.scalars(select(Leak).where(Leak.slug == slug)).one_or_none()
    if leak is None:
        leak = Leak(
            slug=slug,
            name=name,
            names=dict(facts.names),
            source=source,
            observed_at=facts.observed_at,
            created_at=now,
            updated_at=now,
            **Counters().as_dict(),
        )
        session.add(leak)
        session.flush()
        return leak
    if leak.retracted_at is not None:
        retracted_at = leak.retracted_at
        raise LeakRetracted.saying(
            lambda w: f"leak {slug} was retracted on {retracted_at:%Y-%m-%d}; {w.another_slug}"
        )
    return leak


def check_leak_facts(
    name: str | None, source: str | None, facts: LeakFacts, *, now: datetime
) -> tuple[str | None, str | None, LeakFacts]:
    """The given name, source and facts as stored (None: not given); raise ValidationFailed
    (check_leak_name, check_leak_source, check_observed_at)."""
    if facts.observed_at is not None:
        check_observed_at(facts.observed_at, now=now)
    return (
        None if name is None else check_leak_name(name),
        None if source is None else check_leak_source(source),
        facts.checked(),
    )


def facts_not_applied(
    leak: Leak, *, name: str | None, source: str | None, facts: LeakFacts
) -> tuple[str, ...]:
    """Which given facts differ from the leak's: "name", "name in 'de'", "source", "date".

    Pure; the values are compared as stored (check_leak_facts first).
    """
    kept = []
    if name is not None and name != leak.name:
        kept.append("name")
    kept.extend(
        f"name in {language!r}"
        for language, text in sorted(facts.names.items())
        if (leak.names or {}).get(language) != text
    )
    if source is not None and source != leak.source:
        kept.append("source")
    if facts.observed_at is not None and facts.observed_at != leak.observed_at:
        kept.append("date")
    return tuple(kept)


def facts_kept_note(slug: str, kept: Sequence[str]) -> str:
    """One line for the operator: the leak kept these facts, and how to change them."""
    return (
        f"leak {slug} keeps its {', '.join(kept)}: an ingest sets them only for a new leak; "
        f"`leakguard leaks edit {slug}` changes them (audited, unsent warnings follow)"
    )


def update_leak_facts(
    leak: Leak, *, name: str | None, source: str | None, facts: LeakFacts
) -> bool:
    """Set the given facts on ``leak`` (None: keep); return whether anything changed.

    Warnings not yet sent use the new facts: each delivery job reads them afresh. The
    values are stored as given: check_leak_facts first.
    """
    changed = False
    if name and leak.name != name:
        leak.name, changed = name, True
    if source and leak.source != source:
        leak.source, changed = source, True
    names = {**(leak.names or {}), **facts.names}
    if names != (leak.names or {}):
        leak.names, changed = names, True
    if facts.observed_at is not None and leak.observed_at != facts.observed_at:
        leak.observed_at, changed = facts.observed_at, True
    return changed


def edit_leak(
    session: Session,
    slug: str,
    *,
    name: str | None,
    source: str | None,
    facts: LeakFacts,
    actor: str,
    now: datetime,
    clear_names: bool = False,
) -> bool:
    """Change the leak's name, names, source or date; audited. Return whether it changed.

    ``clear_names`` first drops the name in every language (notices then use the neutral
    wording), before any name given with it. Raises NotFound, ValidationFailed (a blank,
    invisible or over-long name or source: check_leak_name; a date in the future). Does
    not commit.
    """
    name, source, facts = check_leak_facts(name, source, facts, now=now)
    leak = find_leak(session, slug)
    cleared = clear_names and (leak.name is not None or bool(leak.names))
    if cleared:
        leak.name, leak.names = None, {}
    if not update_leak_facts(leak, name=name, source=source, facts=facts) and not cleared:
        return False
    leak.updated_at = now
    record_event(
        session,
        actor=actor,
        action="leak.edited",
        target=slug,
        detail={
            "name": leak.name,
            "names": leak.names,
            "observed_at": leak.observed_at.isoformat() if leak.observed_at else None,
        },
        now=now,
    )
    return True


def leak_name(leak_names: Mapping[str, str] | None, name: str | None, language: str) -> str | None:
    """The leak's name in ``language``: its own, else the default one, else None (neutral)."""
    return (leak_names or {}).get(language) or name or None


# Whether a process holds a leak file's ingest lock (by file id): a running file nobody
# holds was interrupted. Passed in by the face, which may look at locks.
IsHeld = Callable[[int], bool]


@dataclass(frozen=True, slots=True)
class LeakFileView:
    id: int
    name: str | None  # the file's basename
    sha256: str
    format: str
    read_as: str
    compression: str | None
    state: str  # complete, running, interrupted (running and no process holds it), or
    # abandoned (not finished when its leak was retracted: it can never resume)
    size: int
    records_done: int
    counters: dict[str, int]
    invalid_lines: list[int]
    long_lines: int  # of the invalid records, lines over the reader's cap (64 KiB)
    truncated_after_bytes: int | None  # a compressed file cut short there
    ran_by: str | None
    runs: int
    run_seconds: list[float]
    seconds: float
    started_at: datetime
    finished_at: datetime | None
    path: str | None = None  # a split file's (--enqueue): where its workers open it
    # SHA-256 of the decompressed content (a plain file's is ``sha256``); None: a compressed
    # file recorded before revision 0018.
    content_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class Retraction:
    at: datetime
    by: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class LeakView:
    slug: str
    name: str | None
    names: dict[str, str]
    source: str | None
    observed_at: date | None
    created_at: datetime
    updated_at: datetime
    counters: dict[str, int]
    exposures: dict[str, int]
    notices: dict[str, int]
    files: tuple[LeakFileView, ...]
    retracted: Retraction | None = None

    @property
    def state(self) -> str:
        if self.retracted is not None:
            return "retracted"
        for state in ("running", "interrupted"):
            if any(f.state == state for f in self.files):
                return state
        return "complete" if self.files else "empty"

    def to_json(self) -> dict[str, Any]:
        retracted = self.retracted
        return {
            "slug": self.slug,
            "name": self.name,
            "names": self.names,
            "source": self.source,
            "observed_at": self.observed_at.isoformat() if self.observed_at else None,
            "state": self.state,
            "created_at": self.created_at.isoformat(),
            "updated_at": self.updated_at.isoformat(),
            "retracted_at": retracted.at.isoformat() if retracted else None,
            "retracted_by": retracted.by if retracted else None,
            "retraction_reason": retracted.reason if retracted else None,
            **self.counters,
            "exposures": self.exposures,
            "notices_by_state": self.notices,
            "files": [
                {
                    "name": f.name,
                    "sha256": f.sha256,
                    "content_sha256": f.content_sha256,
                    "format": f.format,
                    "read_as": f.read_as,
                    "compression": f.compression,
                    "state": f.state,
                    "size": f.size,
                    "records_done": f.records_done,
                    **f.counters,
                    "invalid_lines": f.invalid_lines,
                    "long_lines": f.long_lines,
                    "truncated_after_bytes": f.truncated_after_bytes,
                    "ran_by": f.ran_by,
                    "runs": f.runs,
                    "run_seconds": f.run_seconds,
                    "seconds": round(f.seconds, 3),
                    "started_at": f.started_at.isoformat(),
                    "finished_at": f.finished_at.isoformat() if f.finished_at else None,
                }
                for f in self.files
            ],
        }


def list_leaks(session: Session, *, held: IsHeld | None = None) -> list[LeakView]:
    """Every leak, newest first, with its files and the state of its exposures and notices.

    ``held``: tells a running file from an interrupted one (without it: all "running").
    """
    leaks = session.scalars(select(Leak).order_by(Leak.created_at.desc(), Leak.id.desc())).all()
    return [_view(session, leak, held) for leak in leaks]


def show_leak(session: Session, slug: str, *, held: IsHeld | None = None) -> LeakView:
    """One leak in detail; raise NotFound."""
    return _view(session, find_leak(session, slug), held)


def _file_state(leak_file: LeakFile, held: IsHeld | None, *, retracted: bool) -> str:
    state = str(leak_file.state)
    if state != "running":
        return state
    # ``held`` answers for a split file too: its parts are held by the runs ingesting
    # them, or wait in a queue that workers share (the face knows which).
    is_held = held is None or held(leak_file.id)
    if retracted:
        # Its leak refuses every further chunk (LeakRetracted): a run still holding it stops
        # at its next one, and nothing resumes it. "interrupted" would invite a resume.
        return "running" if held is not None and is_held else "abandoned"
    return "running" if is_held else "interrupted"


def _view(session: Session, leak: Leak, held: IsHeld | None) -> LeakView:
    files = session.scalars(
        select(LeakFile).where(LeakFile.leak_id == leak.id).order_by(LeakFile.id)
    ).all()
    exposures = dict(
        session.execute(
            select(Exposure.state, func.count())
            .where(Exposure.leak_id == leak.id)
            .group_by(Exposure.state)
        ).all()
    )
    notices = dict(
        session.execute(
            select(Notice.state, func.count())
            .where(Notice.leak_id == leak.id)
            .group_by(Notice.state)
        ).all()
    )
    # A split file's progress is in its parts until the last one finishes.
    parts_done = dict(
        session.execute(
            select(LeakPart.leak_file_id, func.sum(LeakPart.records_done))
            .where(LeakPart.leak_file_id.in_([f.id for f in files if f.parts]))
            .group_by(LeakPart.leak_file_id)
        ).all()
    )
    return LeakView(
        slug=leak.slug,
        name=leak.name,
        names=dict(leak.names or {}),
        source=leak.source,
        observed_at=leak.observed_at,
        created_at=leak.created_at,
        updated_at=leak.updated_at,
        retracted=(
            Retraction(leak.retracted_at, leak.retracted_by, leak.retraction_reason)
            if leak.retracted_at is not None
            else None
        ),
        counters=Counters.of(leak).as_dict(),
        exposures={str(k): v for k, v in exposures.items()},
        notices={str(k): v for k, v in notices.items()},
        files=tuple(
            LeakFileView(
                id=f.id,
                name=f.name,
                sha256=f.sha256.hex(),
                format=f.format,
                read_as=f.read_as,
                compression=f.compression,
                state=_file_state(f, held, retracted=leak.retracted_at is not None),
                size=f.size,
                records_done=max(f.records_done, int(parts_done.get(f.id) or 0)),
                counters=Counters.of(f).as_dict(),
                invalid_lines=list(f.invalid_lines or []),
                long_lines=f.long_lines,
                truncated_after_bytes=f.truncated_after_bytes,
                ran_by=f.ran_by,
                runs=f.runs,
                run_seconds=[float(x) for x in f.run_seconds or []],
                seconds=f.seconds,
                started_at=f.started_at,
                finished_at=f.finished_at,
                path=f.path,
                content_sha256=f.content_sha256.hex() if f.content_sha256 is not None else None,
            )
            for f in files
        ),
    )
