"""What the notices say of a leak: its names per language and its own date, set by ingest
or `leaks edit`; neutral wording without a name. On SQLite and PostgreSQL, each case read
in the real delivered message (the mail folder's .eml, parsed as a mail program does)."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

from flask.testing import FlaskCliRunner
from sqlalchemy import select

from jobs.deliver import send_notices
from service.models import Leak, Notice
from service.runtime import Runtime
from tests.support.cli import invoke, json_output, one_error_line, output
from tests.support.db import row_counts
from tests.support.email_change import audit_actions
from tests.support.factories import make_account
from tests.support.leakfiles import write_lines
from tests.support.mail import parse_message, text_and_html

SLUG = "combo-1"


def leak_file(runtime: Runtime, tmp_path: Path) -> Path:
    make_account(runtime, "anna", "anna@example.org", locale="en-GB")
    make_account(runtime, "jorg", "jorg@example.org", locale="de-AT")
    return write_lines(tmp_path / "leak.txt", ["anna@example.org", "jorg@example.org"])


def delivered(runtime: Runtime) -> dict[str, EmailMessage]:
    """Send every waiting notice into the mail folder; the messages by recipient."""
    with runtime.db.read_session() as session:
        ids = list(session.scalars(select(Notice.id).order_by(Notice.id)))
    send_notices(runtime, ids)
    messages = [
        parse_message(path.read_bytes())
        for path in sorted(runtime.settings.resolved_mail_dir.glob("*.eml"))
    ]
    return {str(message["To"]): message for message in messages}


def text_of(message: EmailMessage) -> str:
    text, html = text_and_html(message)
    assert SLUG not in text + html  # never the slug
    return text


def test_ingest_names_the_leak_per_language_with_its_own_date(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = leak_file(runtime, tmp_path)
    output(
        runner,
        "ingest",
        str(path),
        "--leak",
        SLUG,
        "--name",
        "Crypto exchange newsletter",
        "--name-de",
        "Rundschreiben einer Kryptobörse",
        "--observed-at",
        "2019-11-01",
    )
    shown = output(runner, "leaks", "show", SLUG)
    assert f"{SLUG}: Crypto exchange newsletter, de: Rundschreiben einer Kryptobörse" in shown
    assert "first seen: 2019-11-01" in shown

    mail = delivered(runtime)
    english, german = text_of(mail["anna@example.org"]), text_of(mail["jorg@example.org"])
    assert (
        "another company: Crypto exchange newsletter. The list was first seen on 1 November 2019."
        in english
    )
    assert "öffentlich geworden ist: Rundschreiben einer Kryptobörse." in german
    assert "Die Liste ist zuerst am 1. November 2019 aufgetaucht." in german
    assert "Crypto exchange" not in german


def test_without_a_name_the_notice_uses_neutral_wording_and_no_date(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    output(runner, "ingest", str(leak_file(runtime, tmp_path)), "--leak", SLUG)
    listed = json_output(invoke(runner, "leaks", "list", "--json"))
    assert (listed[0]["name"], listed[0]["observed_at"]) == (None, None)

    mail = delivered(runtime)
    english, german = text_of(mail["anna@example.org"]), text_of(mail["jorg@example.org"])
    assert "through a data leak at another company. Our own systems" in english
    assert "first seen" not in english
    assert "bei einem anderen Unternehmen öffentlich geworden ist. Unsere eigenen" in german


def test_edit_changes_what_unsent_warnings_say(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    output(runner, "ingest", str(leak_file(runtime, tmp_path)), "--leak", SLUG, "--name", "Old")
    out = output(
        runner, "leaks", "edit", SLUG, "--name", "Shop mailing list", "--observed-at", "2024-02-29"
    )
    assert out == f"leak {SLUG} updated\n"
    assert output(runner, "leaks", "edit", SLUG, "--name", "Shop mailing list") == (
        f"leak {SLUG}: nothing to change\n"
    )
    english = text_of(delivered(runtime)["anna@example.org"])
    assert ": Shop mailing list. The list was first seen on 29 February 2024." in english
    assert "Old" not in english
    german = text_of(delivered(runtime)["jorg@example.org"])
    assert ": Shop mailing list. Die Liste ist zuerst am 29. Februar 2024 aufgetaucht." in german


def test_clear_name_goes_back_to_the_neutral_wording_in_every_language(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = str(leak_file(runtime, tmp_path))
    output(runner, "ingest", path, "--leak", SLUG, "--name", "Wrong shop", "--name-de", "Falsch")
    assert output(runner, "leaks", "edit", SLUG, "--clear-name") == f"leak {SLUG} updated\n"
    assert output(runner, "leaks", "edit", SLUG, "--clear-name") == (
        f"leak {SLUG}: nothing to change\n"
    )
    mail = delivered(runtime)
    english, german = text_of(mail["anna@example.org"]), text_of(mail["jorg@example.org"])
    assert "through a data leak at another company. Our own systems" in english
    assert "Wrong shop" not in english
    assert "bei einem anderen Unternehmen öffentlich geworden ist. Unsere eigenen" in german
    assert "Falsch" not in german


def test_a_bad_leak_date_is_refused_in_one_line_and_records_nothing(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = leak_file(runtime, tmp_path)
    before = row_counts(runtime)
    unparseable = invoke(runner, "ingest", str(path), "--leak", SLUG, "--observed-at", "1.11.2019")
    assert unparseable.exit_code == 2  # a malformed option value: a usage error
    assert one_error_line(unparseable).startswith(
        "Error: --observed-at takes a date like 2019-11-01, not '1.11.2019' (see "
    )
    future = invoke(runner, "ingest", str(path), "--leak", SLUG, "--observed-at", "2999-01-01")
    line = one_error_line(future)
    assert line.startswith("Error: the leak's date 2999-01-01 is in the future (today is ")
    assert line.endswith(" UTC)")
    assert row_counts(runtime) == before
    with runtime.db.read_session() as session:
        assert session.scalar(select(Leak.id)) is None
    edit = invoke(runner, "leaks", "edit", "no-such-leak", "--observed-at", "2019-11-01")
    assert one_error_line(edit) == "Error: no leak named 'no-such-leak'"


def leak_facts_of(runtime: Runtime) -> tuple[object, ...]:
    with runtime.db.read_session() as session:
        leak = session.scalars(select(Leak).where(Leak.slug == SLUG)).one()
        return (leak.name, leak.names, leak.source, leak.observed_at, leak.updated_at)


OTHER_FACTS = (
    "--name",
    "New shop",
    "--name-de",
    "Neuer Laden",
    "--source",
    "T-2",
    "--observed-at",
    "2020-01-01",
)


def test_a_rerun_with_other_facts_changes_none_and_says_how_to(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = str(leak_file(runtime, tmp_path))
    first = ("--name", "Old shop", "--source", "T-1", "--observed-at", "2019-11-01")
    output(runner, "ingest", path, "--leak", SLUG, *first)
    before = leak_facts_of(runtime)

    again = invoke(runner, "ingest", path, "--leak", SLUG, *OTHER_FACTS)

    assert again.exit_code == 0
    assert leak_facts_of(runtime) == before
    assert "was ingested before; nothing changed" in again.stdout
    assert again.stderr == (
        f"leak {SLUG} keeps its name, name in 'de', source, date: an ingest sets them only "
        f"for a new leak; `leakguard leaks edit {SLUG}` changes them (audited, unsent "
        "warnings follow)\n"
    )
    assert "leak.edited" not in [row["action"] for row in audit_actions(runtime, "leak.")]
    text = text_of(delivered(runtime)["anna@example.org"])
    assert ": Old shop. The list was first seen on 1 November 2019." in text


def test_a_new_file_of_a_leak_keeps_its_facts_too(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    output(runner, "ingest", str(leak_file(runtime, tmp_path)), "--leak", SLUG, "--name", "Shop")
    other = write_lines(tmp_path / "more.txt", ["carl@example.org"])
    before = leak_facts_of(runtime)

    result = invoke(runner, "ingest", str(other), "--leak", SLUG, *OTHER_FACTS, "--json")

    assert json_output(result)["facts_not_applied"] == ["name", "name in 'de'", "source", "date"]
    assert leak_facts_of(runtime)[:4] == before[:4]  # its totals, and updated_at, grew
    # The same facts again, or none, are nothing to tell.
    third = write_lines(tmp_path / "third.txt", ["dora@example.org"])
    quiet = invoke(runner, "ingest", str(third), "--leak", SLUG, "--name", " Shop ")
    assert (quiet.exit_code, quiet.stderr) == (0, "")


def test_a_split_rerun_keeps_the_facts_too(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path
) -> None:
    path = str(leak_file(runtime, tmp_path))
    output(runner, "ingest", path, "--leak", SLUG, "--enqueue", "--name", "Shop", "--quiet")
    before = leak_facts_of(runtime)

    again = invoke(runner, "ingest", path, "--leak", SLUG, "--enqueue", "--name", "Other", "--json")

    assert json_output(again)["facts_not_applied"] == ["name"]
    assert again.stderr.startswith(f"leak {SLUG} keeps its name: an ingest sets them only")
    assert leak_facts_of(runtime) == before
