"""Exposures that end (issue 14, part 1), on SQLite and PostgreSQL.

An exposure belongs to the address it was matched on: an address change by any path (the
API, the batch endpoint, the import, ``change_address``) ends it and cancels its unsent
warning, and checks the new address against the watch list at once. Support resolves or
dismisses, housekeeping expires, a retraction retracts; only ``open`` counts in the risk
check. A passed step-up on a named device trusts it until the address leaks again, leaks
with a password, or changes.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient, FlaskCliRunner
from sqlalchemy import select, update

from jobs.ingest.pipeline import ingest_leak
from service.accounts import AddressChangeCause, bare_email, change_address
from service.db import utcnow
from service.housekeeping import run_housekeeping
from service.leaks.retract import retract_leak
from service.models import (
    Account,
    AuditEvent,
    Exposure,
    ExposureState,
    Leak,
    Notice,
    StepUpChallenge,
    StepUpThrottle,
    TrustedDevice,
)
from service.runtime import Runtime
from tests.support.cli import cli_env, invoke, output, run_leakguard
from tests.support.factories import enroll_totp, expose, make_account
from tests.support.leakfiles import write_accounts_csv, write_lines
from tests.support.smtp import SmtpServer

LEAKED = "victim@example.com"
OTHER_LEAKED = "second.victim@example.com"
SAFE = "other@example.com"


def leak(runtime: Runtime, tmp_path: Path, slug: str, *addresses: str) -> None:
    """Ingest a leak naming ``addresses`` (and one stranger) through the real pipeline."""
    path = write_lines(tmp_path / f"{slug}.txt", [*addresses, f"stranger@{slug}.example"])
    ingest_leak(runtime, path, slug=slug)


def exposures(runtime: Runtime, external_id: str) -> dict[str, tuple[str, str | None]]:
    """leak slug -> (state, end cause) of the account's exposures."""
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(Leak.slug, Exposure.state, Exposure.end_cause)
            .join(Exposure, Exposure.leak_id == Leak.id)
            .join(Account, Account.id == Exposure.account_id)
            .where(Account.external_id == external_id)
        ).all()
    return {slug: (state.value, cause.value if cause else None) for slug, state, cause in rows}


def warnings(runtime: Runtime, external_id: str) -> dict[str, str]:
    """leak slug -> state of the account's warnings."""
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(Leak.slug, Notice.state)
            .join(Notice, Notice.leak_id == Leak.id)
            .join(Account, Account.id == Notice.account_id)
            .where(Account.external_id == external_id)
        ).all()
    return {slug: state.value for slug, state in rows}


def risk(client: FlaskClient, auth: dict[str, str], account: str, **extra: Any) -> dict[str, Any]:
    answer = client.post("/v1/risk/check", json={"account_id": account, **extra}, headers=auth)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return dict(answer.get_json())


def put(client: FlaskClient, auth: dict[str, str], account: str, email: str) -> None:
    answer = client.put(f"/v1/accounts/{account}", json={"email": email}, headers=auth)
    assert answer.status_code in (200, 201), answer.get_data(as_text=True)


# --- item 1: an address change by any path --------------------------------------------------


def test_create_and_move_in_one_batch_mails_nothing_to_the_new_address(
    runtime: Runtime,
    client: FlaskClient,
    auth: dict[str, str],
    tmp_path: Path,
    db_url: str,
    smtp_server: SmtpServer,
) -> None:
    """The issue's report, as a new user tried it: b1 created at a leaked address and moved
    to another in the same batch; the warning went to the new address, the risk check
    still asked for a step-up."""
    leak(runtime, tmp_path, "model-leak", LEAKED)
    answer = client.post(
        "/v1/accounts:batch",
        json={
            "accounts": [
                {"external_id": "b1", "email": LEAKED},
                {"external_id": "b1", "email": SAFE},
            ]
        },
        headers=auth,
    )
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert exposures(runtime, "b1") == {"model-leak": ("resolved", "address_changed")}
    assert warnings(runtime, "b1") == {"model-leak": "cancelled"}

    env = cli_env(db_url, runtime.settings.instance_dir, LEAKGUARD_SMTP_URL=smtp_server.url)
    result = run_leakguard(env, "worker", "--burst")
    assert result.returncode == 0, result.stderr
    assert smtp_server.messages() == []
    assert risk(client, auth, "b1") == {
        "decision": "allow",
        "reasons": [],
        "methods": [],
        "retry_after": None,
        "exposures": [],
    }


def test_put_moves_the_exposure_to_the_new_address_only_if_it_leaked(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp_path: Path
) -> None:
    leak(runtime, tmp_path, "first-leak", LEAKED)
    leak(runtime, tmp_path, "second-leak", OTHER_LEAKED)
    put(client, auth, "p1", LEAKED)
    assert exposures(runtime, "p1") == {"first-leak": ("open", None)}
    assert risk(client, auth, "p1")["decision"] == "step_up"

    put(client, auth, "p1", OTHER_LEAKED)  # moved to an address in another leak
    assert exposures(runtime, "p1") == {
        "first-leak": ("resolved", "address_changed"),
        "second-leak": ("open", None),
    }
    assert warnings(runtime, "p1") == {"first-leak": "cancelled", "second-leak": "pending"}
    verdict = risk(client, auth, "p1")
    assert (verdict["decision"], [e["leak"] for e in verdict["exposures"]]) == (
        "step_up",
        ["second-leak"],
    )

    put(client, auth, "p1", SAFE)
    assert exposures(runtime, "p1") == {
        "first-leak": ("resolved", "address_changed"),
        "second-leak": ("resolved", "address_changed"),
    }
    assert risk(client, auth, "p1")["decision"] == "allow"

    put(client, auth, "p1", LEAKED)  # back to the first leaked address: flagged afresh
    assert exposures(runtime, "p1") == {
        "first-leak": ("open", None),
        "second-leak": ("resolved", "address_changed"),
    }
    assert warnings(runtime, "p1") == {"first-leak": "pending", "second-leak": "cancelled"}


def test_a_move_within_one_leak_or_a_respelling_keeps_the_exposure(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp_path: Path
) -> None:
    leak(runtime, tmp_path, "both-leak", LEAKED, OTHER_LEAKED)
    put(client, auth, "s1", LEAKED)
    put(client, auth, "s1", "Victim@Example.com")  # the same mailbox, respelled
    assert exposures(runtime, "s1") == {"both-leak": ("open", None)}
    put(client, auth, "s1", OTHER_LEAKED)  # another address in the same leak
    assert exposures(runtime, "s1") == {"both-leak": ("open", None)}
    assert warnings(runtime, "s1") == {"both-leak": "pending"}


def test_the_import_ends_the_old_address_exposures(
    runtime: Runtime,
    client: FlaskClient,
    auth: dict[str, str],
    runner: FlaskCliRunner,
    tmp_path: Path,
) -> None:
    leak(runtime, tmp_path, "import-leak", LEAKED)
    csv = write_accounts_csv(tmp_path / "first.csv", {"i1": LEAKED, "i2": LEAKED})
    output(runner, "accounts", "import", str(csv))
    assert exposures(runtime, "i1") == {"import-leak": ("open", None)}
    csv = write_accounts_csv(tmp_path / "second.csv", {"i1": SAFE, "i2": LEAKED})
    output(runner, "accounts", "import", str(csv))
    assert exposures(runtime, "i1") == {"import-leak": ("resolved", "address_changed")}
    assert warnings(runtime, "i1") == {"import-leak": "cancelled"}
    assert exposures(runtime, "i2") == {"import-leak": ("open", None)}  # untouched
    assert risk(client, auth, "i1")["decision"] == "allow"


def test_change_address_does_every_step_and_audits_masked(runtime: Runtime, tmp_path: Path) -> None:
    leak(runtime, tmp_path, "flow-leak", LEAKED)
    leak(runtime, tmp_path, "flow-leak-2", OTHER_LEAKED)
    account_id = make_account(runtime, "c1", LEAKED)
    now = utcnow()
    with runtime.db.transaction() as session:
        session.add(
            TrustedDevice(
                account_id=account_id,
                device_key=b"k" * 32,
                trusted_at=now,
                expires_at=now + timedelta(days=1),
            )
        )
    with runtime.db.transaction() as session:
        account = session.get(Account, account_id)
        assert account is not None
        epoch = account.security_epoch
        changed = change_address(
            session,
            runtime.keys,
            account,
            bare_email(runtime.keys, f"Second <{OTHER_LEAKED}>"),
            cause=AddressChangeCause.EMAIL_CHANGE_CONFIRMED,
            actor="test",
            now=now,
        )
    assert (changed.accounts, changed.exposures_ended, changed.warnings_cancelled) == (1, 1, 1)
    assert (changed.flagged, changed.devices_untrusted) == (1, 1)
    assert exposures(runtime, "c1") == {
        "flow-leak": ("resolved", "address_changed"),
        "flow-leak-2": ("open", None),
    }
    with runtime.db.read_session() as session:
        account = session.get(Account, account_id)
        assert account is not None
        assert (account.email, account.security_epoch) == (OTHER_LEAKED, epoch + 1)
        assert session.scalars(select(TrustedDevice)).all() == []
        event = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "account.address_changed")
        ).one()
    assert event.detail["cause"] == "email_change_confirmed"
    assert LEAKED not in json.dumps(event.detail)
    assert OTHER_LEAKED not in json.dumps(event.detail)
    with runtime.db.transaction() as session:  # the same mailbox again: nothing happens
        account = session.get(Account, account_id)
        assert account is not None
        again = change_address(
            session,
            runtime.keys,
            account,
            bare_email(runtime.keys, OTHER_LEAKED),
            cause=AddressChangeCause.EMAIL_CHANGE_CONFIRMED,
            actor="test",
            now=now,
        )
    assert again.accounts == 0


# --- item 2: states; only open counts ---------------------------------------------------------


def test_support_resolves_and_dismisses_with_a_reason_audited_and_masked(
    runtime: Runtime,
    client: FlaskClient,
    auth: dict[str, str],
    runner: FlaskCliRunner,
    tmp_path: Path,
) -> None:
    leak(runtime, tmp_path, "leak-a", LEAKED)
    leak(runtime, tmp_path, "leak-b", LEAKED)
    make_account(runtime, "r1", LEAKED)
    listed = json.loads(output(runner, "exposures", "list", "r1", "--json"))
    assert [(e["leak"], e["state"], e["end_cause"]) for e in listed] == [
        ("leak-a", "open", None),
        ("leak-b", "open", None),
    ]
    said = output(
        runner, "exposures", "resolve", "r1", "--leak", "leak-a", "--reason", f"ticket 7, {LEAKED}"
    )
    assert said.strip() == "exposure of account r1 to leak leak-a resolved"
    assert risk(client, auth, "r1")["decision"] == "step_up"  # leak-b is still open
    output(runner, "exposures", "dismiss", "r1", "--leak", "leak-b", "--reason", "not theirs")
    assert exposures(runtime, "r1") == {
        "leak-a": ("resolved", "support_resolved"),
        "leak-b": ("dismissed", "dismissed"),
    }
    assert warnings(runtime, "r1") == {"leak-a": "pending", "leak-b": "cancelled"}
    assert risk(client, auth, "r1")["decision"] == "allow"
    listed = json.loads(output(runner, "exposures", "list", "r1", "--json"))
    assert listed[0]["reason"] == "ticket 7, v***@example.com"
    text = output(runner, "exposures", "list", "r1")
    assert LEAKED not in text
    assert "support_resolved" in text
    with runtime.db.read_session() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action.like("exposure.%")).order_by(AuditEvent.id)
        ).all()
    assert [(e.action, e.detail["leak"]) for e in events] == [
        ("exposure.resolved", "leak-a"),
        ("exposure.dismissed", "leak-b"),
    ]
    assert all(LEAKED not in json.dumps(e.detail) for e in events)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resolve", "nobody", "--leak", "leak-e", "--reason", "x"], "no account"),
        (["dismiss", "e1", "--leak", "no-such-leak", "--reason", "x"], "no leak named"),
        (["resolve", "e2", "--leak", "leak-e", "--reason", "x"], "no open exposure"),
        (["resolve", "e1", "--leak", "leak-e", "--reason", "  "], "the reason must say why"),
        (["list", "nobody"], "no account"),
    ],
)
def test_support_commands_refuse_in_one_line_and_change_nothing(
    runtime: Runtime, runner: FlaskCliRunner, tmp_path: Path, args: list[str], message: str
) -> None:
    leak(runtime, tmp_path, "leak-e", LEAKED)
    make_account(runtime, "e1", LEAKED)
    make_account(runtime, "e2", SAFE)
    result = invoke(runner, "exposures", *args)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert exposures(runtime, "e1") == {"leak-e": ("open", None)}
    with runtime.db.read_session() as session:
        assert (
            session.scalars(select(AuditEvent).where(AuditEvent.action.like("exposure.%"))).all()
            == []
        )


def test_housekeeping_expires_old_exposures_and_purges_what_is_past_use(
    runtime: Runtime,
    client: FlaskClient,
    auth: dict[str, str],
    runner: FlaskCliRunner,
    tmp_path: Path,
) -> None:
    leak(runtime, tmp_path, "old-leak", LEAKED)
    old = make_account(runtime, "h1", LEAKED)
    young = make_account(runtime, "h2", "Victim+news@example.com")  # same mailbox, young
    now = utcnow()
    days = runtime.settings.exposure_ttl_days
    with runtime.db.transaction() as session:
        session.execute(
            update(Exposure)
            .where(Exposure.account_id == old)
            .values(created_at=now - timedelta(days=days, minutes=1))
        )
        session.add_all(
            [
                StepUpChallenge(
                    id="expired-challenge",
                    account_id=old,
                    method="email_code",
                    state="pending",
                    expires_at=now - timedelta(seconds=1),
                ),
                StepUpChallenge(
                    id="live-challenge",
                    account_id=old,
                    method="email_code",
                    state="pending",
                    expires_at=now + timedelta(minutes=5),
                ),
                TrustedDevice(
                    account_id=young,
                    device_key=b"a" * 32,
                    trusted_at=now - timedelta(days=31),
                    expires_at=now - timedelta(days=1),
                ),
                TrustedDevice(
                    account_id=young,
                    device_key=b"b" * 32,
                    trusted_at=now,
                    expires_at=now + timedelta(days=30),
                ),
                StepUpThrottle(  # failures long forgotten: decides nothing
                    subject=b"s" * 16,
                    scope="all",
                    failures=3,
                    last_failed_at=now - timedelta(days=40),
                ),
                StepUpThrottle(  # blocked until support unlocks: kept
                    subject=b"t" * 16,
                    scope="all",
                    failures=100,
                    last_failed_at=now - timedelta(days=40),
                    blocked_at=now - timedelta(days=40),
                ),
                StepUpThrottle(  # recent: kept
                    subject=b"u" * 16, scope="totp", failures=2, last_failed_at=now
                ),
            ]
        )
    assert risk(client, auth, "h1")["decision"] == "step_up"
    counts = json.loads(output(runner, "housekeeping", "--json"))
    assert counts == {
        "exposures_expired": 1,
        "challenges_purged": 1,
        "devices_purged": 1,
        "throttles_purged": 1,
        "email_changes_expired": 0,
        "events_purged": 0,
        "staff_sessions_purged": 0,
    }
    assert exposures(runtime, "h1") == {"old-leak": ("expired", "expired")}
    assert exposures(runtime, "h2") == {"old-leak": ("open", None)}
    assert warnings(runtime, "h1") == {"old-leak": "cancelled"}
    assert risk(client, auth, "h1")["decision"] == "allow"
    with runtime.db.read_session() as session:
        assert session.scalars(select(StepUpChallenge.id)).all() == ["live-challenge"]
        assert session.scalars(select(TrustedDevice.device_key)).all() == [b"b" * 32]
        assert sorted(session.scalars(select(StepUpThrottle.subject))) == [b"t" * 16, b"u" * 16]
    # Again at once (cron at any frequency): nothing left to do.
    assert json.loads(output(runner, "housekeeping", "--json")) == dict.fromkeys(counts, 0)
    assert "0 exposures expired" in output(runner, "housekeeping")


def test_a_retraction_records_its_cause(runtime: Runtime, tmp_path: Path) -> None:
    leak(runtime, tmp_path, "typo-leak", LEAKED)
    make_account(runtime, "t1", LEAKED)
    retract_leak(runtime.db, "typo-leak", reason="wrong file", actor="test", now=utcnow())
    assert exposures(runtime, "t1") == {"typo-leak": ("retracted", "retracted")}


# --- item 3: trusted devices ------------------------------------------------------------------


def pass_step_up(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], account: str, device: str
) -> dict[str, Any]:
    challenge = client.post(
        "/v1/step-up/challenges", json={"account_id": account, "method": "email_code"}, headers=auth
    ).get_json()["challenge_id"]
    body = {
        "account_id": account,
        "method": "email_code",
        "code": runtime.step_up.email_code(challenge),
        "challenge_id": challenge,
        "context": {"device_id": device},
    }
    answer = client.post("/v1/step-up/verify", json=body, headers=auth)
    assert answer.status_code == 200, answer.get_data(as_text=True)
    return dict(answer.get_json())


def on(device: str) -> dict[str, Any]:
    return {"context": {"device_id": device, "ip": "203.0.113.7"}}


DEVICE = "device-7f3a9c-of-the-owner"


def test_a_passed_step_up_trusts_the_device_it_was_passed_on(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp_path: Path
) -> None:
    leak(runtime, tmp_path, "trust-leak", LEAKED)
    make_account(runtime, "d1", LEAKED)
    assert risk(client, auth, "d1", **on(DEVICE))["decision"] == "step_up"
    passed = pass_step_up(runtime, client, auth, "d1", DEVICE)
    assert passed["device_trusted_until"] is not None
    verdict = risk(client, auth, "d1", **on(DEVICE))
    assert (verdict["decision"], verdict["reasons"]) == ("allow", ["trusted_device"])
    assert risk(client, auth, "d1", **on("another-device"))["decision"] == "step_up"
    assert risk(client, auth, "d1")["decision"] == "step_up"  # no device named
    # Stored only as a keyed hash: not in the device table, nor in any audit row.
    with runtime.db.read_session() as session:
        keys = session.scalars(select(TrustedDevice.device_key)).all()
        details = [json.dumps(e.detail) for e in session.scalars(select(AuditEvent))]
    assert len(keys) == 1
    assert len(keys[0]) == 32
    assert DEVICE.encode() not in keys[0]
    assert not any(DEVICE in detail for detail in details)
    # Past LEAKGUARD_TRUSTED_DEVICE_DAYS the device steps up again.
    with runtime.db.transaction() as session:
        session.execute(update(TrustedDevice).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert risk(client, auth, "d1", **on(DEVICE))["decision"] == "step_up"


@pytest.mark.parametrize("event", ["new_leak", "credential", "address_change"])
def test_trust_ends_on_a_new_leak_a_credential_exposure_or_an_address_change(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp_path: Path, event: str
) -> None:
    leak(runtime, tmp_path, "trust-leak", LEAKED, OTHER_LEAKED)
    account_id = make_account(runtime, "d2", LEAKED)
    pass_step_up(runtime, client, auth, "d2", DEVICE)
    assert risk(client, auth, "d2", **on(DEVICE))["reasons"] == ["trusted_device"]
    if event == "new_leak":
        leak(runtime, tmp_path, "later-leak", LEAKED)
    elif event == "credential":
        expose(runtime, account_id, slug="trust-leak", password="hunter2-leaked")
    else:
        put(client, auth, "d2", OTHER_LEAKED)  # still in trust-leak: still steps up
    with runtime.db.read_session() as session:
        assert session.scalars(select(TrustedDevice)).all() == []
    verdict = risk(client, auth, "d2", **on(DEVICE))
    # A step-up again (deny for the credential: its emailed code is closed, nothing else).
    expected = "deny" if event == "credential" else "step_up"
    assert (verdict["decision"], "trusted_device" in verdict["reasons"]) == (expected, False)


# --- item 4: the security state ---------------------------------------------------------------


def test_get_account_shows_the_security_state(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp_path: Path
) -> None:
    leak(runtime, tmp_path, "state-leak", LEAKED)
    account_id = make_account(runtime, "g1", LEAKED)
    body = client.get("/v1/accounts/g1", headers=auth).get_json()
    assert [(e["leak"], e["kind"]) for e in body["exposures"]] == [("state-leak", "email")]
    assert body["exposures"][0]["since"]
    assert (body["undeliverable"], body["totp_enrolled"], body["recovery_codes_left"]) == (
        None,
        False,
        0,
    )
    assert body["pending_email_change"] is None  # none asked for (part 2)
    with runtime.db.read_session() as session:
        message_id = session.scalars(
            select(Notice.message_id).where(Notice.account_id == account_id)
        ).one()
    if message_id is None:  # give the warning the Message-ID a delivery would
        message_id = "<bounced-1@leakguard.test>"
        with runtime.db.transaction() as session:
            session.execute(
                update(Notice).where(Notice.account_id == account_id).values(message_id=message_id)
            )
    bounced = client.post(
        "/v1/notices/bounces",
        json={"bounces": [{"message_id": message_id, "code": 550, "reason": f"no {LEAKED}"}]},
        headers=auth,
    )
    assert bounced.status_code == 200, bounced.get_data(as_text=True)
    body = client.get("/v1/accounts/g1", headers=auth).get_json()
    assert body["undeliverable"]["reply_code"] == 550
    assert body["undeliverable"]["since"]
    assert LEAKED not in body["undeliverable"]["reason"]
    put(client, auth, "g1", SAFE)
    body = client.get("/v1/accounts/g1", headers=auth).get_json()
    assert (body["exposures"], body["undeliverable"]) == ([], None)


def test_the_openapi_document_describes_the_lifecycle(client: FlaskClient) -> None:
    document = client.get("/openapi/openapi.json").get_json()
    schemas = document["components"]["schemas"]
    assert "trusted_device" in schemas["Reason"]["enum"]
    assert "device_id" in schemas["RiskContext"]["properties"]
    assert "device_id" in schemas["DeviceContext"]["properties"]
    assert "device_trusted_until" in schemas["AssuranceOut"]["properties"]
    account = document["paths"]["/v1/accounts/{external_id}"]["get"]
    answer = account["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    state = schemas[answer.rsplit("/", 1)[-1]]["properties"]
    assert {"exposures", "undeliverable", "totp_enrolled", "recovery_codes_left"} <= set(state)


def test_two_housekeeping_runs_at_once_do_the_work_once(runtime: Runtime, tmp_path: Path) -> None:
    leak(runtime, tmp_path, "busy-leak", *(f"person{i}@example.com" for i in range(40)))
    for i in range(40):
        make_account(runtime, f"k{i}", f"person{i}@example.com")
    now = utcnow()
    with runtime.db.transaction() as session:
        session.execute(update(Exposure).values(created_at=now - timedelta(days=365)))
    policy = runtime.step_up.policy.throttle
    ttl = timedelta(days=runtime.settings.exposure_ttl_days)
    with ThreadPoolExecutor(2) as pool:
        reports = list(
            pool.map(
                lambda _: run_housekeeping(
                    runtime.db, exposure_ttl=ttl, throttle=policy, now=now, batch=7
                ),
                range(2),
            )
        )
    assert sum(report.exposures_expired for report in reports) == 40
    with runtime.db.read_session() as session:
        assert set(session.scalars(select(Exposure.state))) == {ExposureState.EXPIRED}


def test_a_verification_after_its_throttle_rows_were_purged_counts_afresh(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], runner: FlaskCliRunner
) -> None:
    make_account(runtime, "v1", SAFE)
    body = {"account_id": "v1", "method": "recovery_code", "code": "wrong-code"}
    assert client.post("/v1/step-up/verify", json=body, headers=auth).status_code == 403
    with runtime.db.transaction() as session:
        session.execute(update(StepUpThrottle).values(last_failed_at=utcnow() - timedelta(days=31)))
    assert json.loads(output(runner, "housekeeping", "--json"))["throttles_purged"] == 2
    assert client.post("/v1/step-up/verify", json=body, headers=auth).status_code == 403
    with runtime.db.read_session() as session:
        assert sorted(session.scalars(select(StepUpThrottle.failures))) == [1, 1]


def test_a_batch_moving_many_accounts_ends_each_ones_exposures(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str], tmp_path: Path
) -> None:
    addresses = [f"many{i}@example.com" for i in range(5)]
    leak(runtime, tmp_path, "many-leak", *addresses)
    accounts = [{"external_id": f"m{i}", "email": a} for i, a in enumerate(addresses)]
    assert (
        client.post("/v1/accounts:batch", json={"accounts": accounts}, headers=auth).status_code
        == 200
    )
    moved = [{"external_id": f"m{i}", "email": f"moved{i}@example.net"} for i in range(4)]
    assert (
        client.post("/v1/accounts:batch", json={"accounts": moved}, headers=auth).status_code == 200
    )
    for i in range(4):
        assert exposures(runtime, f"m{i}") == {"many-leak": ("resolved", "address_changed")}
        assert warnings(runtime, f"m{i}") == {"many-leak": "cancelled"}
    assert exposures(runtime, "m4") == {"many-leak": ("open", None)}
    assert warnings(runtime, "m4") == {"many-leak": "pending"}


def test_get_account_counts_factors(
    runtime: Runtime, client: FlaskClient, auth: dict[str, str]
) -> None:
    make_account(runtime, "f1", SAFE)
    codes = client.post("/v1/accounts/f1/recovery-codes", headers=auth)
    assert codes.status_code == 201, codes.get_data(as_text=True)
    body = {"account_id": "f1", "method": "recovery_code", "code": codes.get_json()["codes"][0]}
    assert client.post("/v1/step-up/verify", json=body, headers=auth).status_code == 200
    state = client.get("/v1/accounts/f1", headers=auth).get_json()
    assert (state["totp_enrolled"], state["recovery_codes_left"]) == (False, 9)
    make_account(runtime, "f2", "totp.owner@example.org")
    enroll_totp(runtime, "f2", now=utcnow())
    state = client.get("/v1/accounts/f2", headers=auth).get_json()
    assert (state["totp_enrolled"], state["recovery_codes_left"]) == (True, 0)
