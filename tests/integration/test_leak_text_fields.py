"""What people read of a leak (its names, its source, who ran a file) is checked before the
database, the same on SQLite and PostgreSQL: over-long, blank or invisible text, or a
control character, is one line on stderr, exit 1, and nothing recorded or changed."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from service.db import utcnow
from service.errors import ValidationFailed
from service.leaks.catalogue import LeakFacts, get_or_create_leak
from service.models import Leak
from service.runtime import Runtime
from tests.support.cli import invoke, one_error_line, output
from tests.support.db import row_counts
from tests.support.factories import make_account
from tests.support.leakfiles import write_lines

SLUG = "shop-1"

REFUSED_OPTIONS = [
    (["--source", "s" * 600], "Error: --source is 600 characters long; at most 500"),
    (["--name", "n" * 201], "Error: --name is 201 characters long; at most 200"),
    (["--name-de", "n" * 201], "Error: --name-de is 201 characters long; at most 200"),
    (["--by", "b" * 201], "Error: --by is 201 characters long; at most 200"),
    (["--name", "   "], "Error: --name is blank: give visible text, or leave the option out"),
    (["--name", ""], "Error: --name is blank: give visible text, or leave the option out"),
    (
        ["--name-de", "\u200b"],
        "Error: --name-de is blank: give visible text, or leave the option out",
    ),
    (
        ["--source", "\u00a0\u200d"],
        "Error: --source is blank: give visible text, or leave the option out",
    ),
    (
        ["--name", "Shop\nlist"],
        "Error: --name may not hold a control or invisible formatting character (U+000A): "
        "write it on one line, in plain characters",
    ),
    (
        ["--name", "Shop\u202elist"],
        "Error: --name may not hold a control or invisible formatting character (U+202E): "
        "write it on one line, in plain characters",
    ),
    (
        ["--source", "ticket\x00"],
        "Error: --source may not hold a control or invisible formatting character (U+0000): "
        "write it on one line, in plain characters",
    ),
]


def leak_file(runtime: Runtime, tmp_path: Path) -> Path:
    make_account(runtime, "anna", "anna@example.org")
    return write_lines(tmp_path / "leak.txt", ["anna@example.org", "bob@example.org"])


@pytest.mark.parametrize(("options", "line"), REFUSED_OPTIONS)
def test_ingest_refuses_unreadable_or_overlong_text_and_records_nothing(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, options: list[str], line: str
) -> None:
    path = leak_file(runtime, tmp_path)
    before = row_counts(runtime)

    result = invoke(runner, "ingest", str(path), "--leak", SLUG, *options)

    assert one_error_line(result) == line
    assert result.exit_code == 1
    assert row_counts(runtime) == before


@pytest.mark.parametrize(("options", "line"), [o for o in REFUSED_OPTIONS if o[0][0] != "--by"])
def test_edit_refuses_the_same_and_changes_nothing(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, options: list[str], line: str
) -> None:
    path = leak_file(runtime, tmp_path)
    output(runner, "ingest", str(path), "--leak", SLUG, "--name", "Shop", "--source", "T-1")

    result = invoke(runner, "leaks", "edit", SLUG, *options)

    assert one_error_line(result) == line
    with runtime.db.read_session() as session:
        leak = session.scalars(select(Leak)).one()
        assert (leak.name, leak.names, leak.source) == ("Shop", {}, "T-1")


def test_text_at_the_columns_width_is_stored_whole_on_either_database(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    name, source = "N" * 199 + "é", "S" * 500
    path = leak_file(runtime, tmp_path)

    output(runner, "ingest", str(path), "--leak", SLUG, "--name", f"  {name} ", "--source", source)

    with runtime.db.read_session() as session:
        leak = session.scalars(select(Leak)).one()
        assert (leak.name, leak.source) == (name, source)


@pytest.mark.parametrize(
    ("name", "source", "facts"),
    [
        ("n" * 201, None, LeakFacts()),
        (None, "s" * 501, LeakFacts()),
        (" \u200b ", None, LeakFacts()),
        (None, None, LeakFacts(names={"de": "a\tb"})),
    ],
)
def test_the_domain_refuses_them_for_every_face(
    runtime: Runtime, name: str | None, source: str | None, facts: LeakFacts
) -> None:
    # The staff upload form and any other face create leaks through this one function.
    with runtime.db.transaction() as session, pytest.raises(ValidationFailed):
        get_or_create_leak(session, slug=SLUG, name=name, source=source, facts=facts, now=utcnow())
    with runtime.db.read_session() as session:
        assert session.scalar(select(Leak.id)) is None
