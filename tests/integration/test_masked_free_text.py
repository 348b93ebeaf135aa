"""Free text that operators and callers type is stored with its addresses masked (DESIGN.md
invariant: the audit trail holds masked addresses only). The new-user trial found a risk
check's user agent, support reasons typed into the CLI and a hold's reason stored in the
clear: every audit-writing path here gets an address in each free-text input, then every
column of every table is searched for it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import secrets
from typing import Any

from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select

from service.clients import Scope
from service.db import Base, utcnow
from service.models import Leak
from service.runtime import Runtime
from tests.support.cli import output
from tests.support.factories import enroll_totp, expose, make_account, make_api_key
from tests.support.http import bearer


def stored_text(runtime: Runtime) -> list[tuple[str, str]]:
    """Every stored value of every table, as (table.column, text)."""
    found: list[tuple[str, str]] = []
    with runtime.db.read_session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                for column, value in row.items():
                    if isinstance(value, str):
                        found.append((f"{table.name}.{column}", value))
                    elif isinstance(value, dict | list):
                        found.append((f"{table.name}.{column}", json.dumps(value)))
    return found


def clear_addresses(runtime: Runtime, *secrets_: str) -> list[tuple[str, str]]:
    return [
        (where, text) for where, text in stored_text(runtime) if any(s in text for s in secrets_)
    ]


def test_invariant_no_clear_address_in_any_free_text_an_operator_or_caller_types(
    runtime: Runtime, runner: FlaskCliRunner, client: FlaskClient
) -> None:
    tag = secrets.token_hex(3)
    plain, quoted = f"caller.{tag}", f"caller {tag}"
    # Every form the trial used: a dot-atom, a quoted local part, percent-encoded, in <...>.
    said = (
        f"caller {plain}@example.org, "
        f'"{quoted}"@example.org, '
        f"{plain}%40example.org and <{plain}@example.org>"
    )
    account_id = make_account(runtime, "u-000006", "jane@example.org")
    enroll_totp(runtime, "u-000006", now=utcnow())  # before the leak: no step-up needed
    expose(runtime, account_id)

    key = make_api_key(runtime, Scope.RISK_CHECK)
    checked = client.post(
        "/v1/risk/check",
        json={"account_id": "u-000006", "context": {"user_agent": f"ua {said}"}},
        headers=bearer(key),
    )
    assert checked.status_code == 200, checked.get_data(as_text=True)
    assert checked.get_json()["decision"] == "step_up"

    for command in ("lock", "reset-totp", "revoke-devices", "force-step-up", "clear-hold"):
        output(runner, "accounts", command, "u-000006", "--reason", said)
    output(runner, "accounts", "force-step-up", "u-000006", "--reason", said)
    output(runner, "exposures", "resolve", "u-000006", "--leak", "exchange-2019", "--reason", said)
    output(runner, "leaks", "edit", "exchange-2019", "--name", said, "--source", said)
    filed = output(
        runner,
        "email-change",
        "request-assisted",
        "u-000006",
        "--new-email",
        f"new.{tag}@example.net",
        "--ticket",
        "T-1",  # a ticket's name takes no "@"
    )
    request_id = filed.split()[0]
    output(runner, "email-change", "deny", request_id, "--by", "ops", "--reason", said)
    output(runner, "leaks", "retract", "exchange-2019", "--reason", said)

    rows = stored_text(runtime)
    assert any(where == "audit_event.detail" and "***@example.org" in t for where, t in rows)
    assert clear_addresses(runtime, plain, quoted) == []


def test_a_lookup_by_masked_free_text_still_finds_its_row(runtime: Runtime) -> None:
    """A comparison with a masked column masks its value too (the column type binds both)."""
    with runtime.db.transaction() as session:
        session.add(Leak(slug="find-me", name="sent by bob.smith@example.org", created_at=utcnow()))
    with runtime.db.read_session() as session:
        name: Any = session.scalar(
            select(Leak.name).where(Leak.name == "sent by bob.smith@example.org")
        )
    assert name == "sent by b***@example.org"
