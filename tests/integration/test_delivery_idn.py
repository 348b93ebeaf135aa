"""Internationalized addresses on the wire of a real SMTP server (issue 12, item 9).

A non-ASCII domain goes as its A-label, in RCPT TO and in the To header alike, and needs no
SMTPUTF8; only a non-ASCII local part does (RFC 6531). Through a relay that does not offer
it, such a notice fails for good with a stated reason, and the worker's summary says so.
What is asserted is what the server process received.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, update

from jobs.account_import import import_accounts
from jobs.ingest.pipeline import ingest_leak
from service.models import Account, Notice
from service.notices.transport import NEEDS_SMTPUTF8
from service.runtime import Runtime
from tests.support.cli import cli_env, run_leakguard
from tests.support.delivery import deliver, move_time_forward, notice_rows
from tests.support.factories import LEAK
from tests.support.leakfiles import write_lines
from tests.support.mail import one_recipient
from tests.support.smtp import SmtpServer


def flag(runtime: Runtime, directory: Path, accounts: dict[str, str]) -> None:
    """Import ``accounts`` (external_id -> email) and ingest a leak naming all of them."""
    rows = ["external_id,email", *(f"{k},{v}" for k, v in accounts.items())]
    assert import_accounts(runtime, write_lines(directory / "accounts.csv", rows)).invalid == 0
    leak = write_lines(directory / "leak.txt", accounts.values())
    assert ingest_leak(runtime, leak, slug=LEAK).run.matched == len(accounts)


def last_errors(runtime: Runtime) -> dict[str, str | None]:
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(Account.external_id, Notice.last_error).join(
                Account, Account.id == Notice.account_id
            )
        ).all()
    return {row.external_id: row.last_error for row in rows}


@pytest.mark.parametrize("smtputf8", [False, True], ids=["ascii-only-relay", "smtputf8-relay"])
def test_worker_sends_an_idn_as_a_label_and_fails_a_utf8_local_part_without_smtputf8(
    smtputf8: bool, runtime: Runtime, db_url: str, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    flag(runtime, tmp_path, {"carol": "carol@bücher.de", "juergen": "jürgen@example.de"})
    smtp_server.set_mode(smtputf8=smtputf8)
    env = cli_env(db_url, runtime.settings.instance_dir, LEAKGUARD_SMTP_URL=smtp_server.url)

    result = run_leakguard(env, "worker", "--burst")
    assert result.returncode == 0, result.stderr
    if smtputf8:
        assert "relayed 2 notices: 2 delivered\n" in result.stderr
    else:
        assert (
            "relayed 2 notices: 1 delivered, 1 failed (see leakguard notices status)\n"
            in result.stderr
        )

    by_rcpt = {envelope.rcpt_tos: envelope for envelope in smtp_server.messages()}
    # The IDN: exactly one recipient, the A-label in the envelope and the header, no SMTPUTF8
    # even where the relay offers it (the next hop may not).
    carol = by_rcpt.pop(("carol@xn--bcher-kva.de",))
    assert b"\r\nTo: carol@xn--bcher-kva.de\r\n" in b"\r\n" + carol.data
    assert one_recipient(carol.message) == "carol@xn--bcher-kva.de"
    assert "SMTPUTF8" not in carol.mail_options
    assert carol.data.split(b"\r\n\r\n")[0].isascii()

    rows = notice_rows(runtime)
    errors = last_errors(runtime)
    assert rows["carol"].state == "sent"
    if smtputf8:  # the non-ASCII local part goes as today, in UTF-8 with SMTPUTF8
        juergen = by_rcpt.pop(("jürgen@example.de",))
        assert "SMTPUTF8" in juergen.mail_options
        assert one_recipient(juergen.message) == "jürgen@example.de"
        assert rows["juergen"].state == "sent"
    else:  # nothing reached the server for him: no MAIL, no RCPT, no refusal on record
        assert (rows["juergen"].state, rows["juergen"].attempts) == ("failed", 1)
        assert rows["juergen"].reply_code is None
        assert (
            errors["juergen"]
            == NEEDS_SMTPUTF8
            == (
                "the address's local part is not ASCII: it needs SMTPUTF8 (RFC 6531), "
                "which the relay does not offer; not sent"
            )
        )
        assert all("jürgen" not in str(event) for event in smtp_server.events())
    assert by_rcpt == {}  # nobody else got anything

    # Failed for good: a later worker, even once any backoff has passed, sends nothing more.
    move_time_forward(runtime)
    again = run_leakguard(env, "worker", "--burst")
    assert again.returncode == 0, again.stderr
    assert "relayed 0 notices: 0 delivered\n" in again.stderr
    assert len(smtp_server.messages()) == (2 if smtputf8 else 1)
    assert notice_rows(runtime)["juergen"].state == ("sent" if smtputf8 else "failed")


@pytest.mark.redis
def test_every_form_of_an_idn_goes_as_one_a_label_and_an_invalid_one_fails_alone(
    mail_runtime: Runtime, smtp_server: SmtpServer, redis_url: str, tmp_path: Path
) -> None:
    accounts = {
        "mixed-case": "Carol@Bücher.DE",
        "upper": "dora@BÜCHER.de",
        "a-label": "erik@xn--bcher-kva.de",
        "subdomain": "fritz@mail.bücher.de",
        "cyrillic": "ivan@пример.рф",
        "broken": "greta@bücher.de",  # made invalid below, as a stored address may be
    }
    flag(mail_runtime, tmp_path, accounts)
    with mail_runtime.db.transaction() as session:
        # email-validator refuses such an address on import; one stored before still must
        # not take the worker down.
        session.execute(
            update(Account).where(Account.external_id == "broken").values(email="greta@☃.com")
        )
    smtp_server.set_mode(smtputf8=False)

    assert deliver(mail_runtime, redis_url) == len(accounts)  # no job failed
    envelopes = smtp_server.messages()
    assert sorted(rcpt for envelope in envelopes for rcpt in envelope.rcpt_tos) == sorted(
        [
            "Carol@xn--bcher-kva.de",  # the local part keeps its case; the domain is mapped
            "dora@xn--bcher-kva.de",
            "erik@xn--bcher-kva.de",
            "fritz@mail.xn--bcher-kva.de",
            "ivan@xn--e1afmkfd.xn--p1ai",
        ]
    )
    for envelope in envelopes:
        assert len(envelope.rcpt_tos) == 1
        assert one_recipient(envelope.message) == envelope.rcpt_tos[0]
        assert "SMTPUTF8" not in envelope.mail_options

    rows = notice_rows(mail_runtime)
    assert {k: row.state for k, row in rows.items()} == {
        **dict.fromkeys(accounts, "sent"),
        "broken": "failed",
    }
    assert (rows["broken"].attempts, rows["broken"].reply_code) == (1, None)
    error = last_errors(mail_runtime)["broken"] or ""
    assert "not a valid internationalized domain name" in error
    assert "U+2603" in error
