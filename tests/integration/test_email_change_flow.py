"""The whole flow as the login service and the person see it, end to end: the API, the
outbox, a real SMTP server process, links taken from the captured messages, the link
pages with their CSRF-protected button; on SQLite and PostgreSQL.

Also the link pages on their own (through Flask's test client; the real browser is in
tests/browser/): a GET shows one button and changes nothing, only the POST with the page's
CSRF token acts.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from flask import Flask
from flask.testing import FlaskClient

from service.email_change.tokens import LinkPurpose
from service.models import ChangeState
from service.runtime import Runtime
from tests.support.delivery import runtime_with
from tests.support.email_change import (
    account_row,
    assurance_token,
    link_token,
    requests_of,
)
from tests.support.factories import expose, make_account
from tests.support.mail import links, one_recipient, text_and_html
from tests.support.smtp import Envelope, SmtpServer

PUBLIC_URL = "https://leakguard.example.com"
OLD = "Jane.Doe@example.org"
NEW = "jane.new@example.net"
CSRF = re.compile(r'name="csrf_token" type="hidden" value="([^"]+)"')


def messages_to(smtp: SmtpServer, address: str) -> list[Envelope]:
    return [e for e in smtp.messages() if address.lower() in (r.lower() for r in e.rcpt_tos)]


def the_link(envelope: Envelope, path: str) -> str:
    text, html = text_and_html(envelope.message)
    found = {link for link in links(text) | links(html) if path in link}
    assert len(found) == 1, found
    return found.pop()


def path_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def press_the_button(client: FlaskClient, page_url: str) -> tuple[int, str]:
    """GET the page, then POST its form as a browser would (token and CSRF token)."""
    page = client.get(path_of(page_url))
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count("<button") == 1
    csrf = CSRF.search(html)
    assert csrf is not None, html
    token = parse_qs(urlsplit(page_url).query)["token"][0]
    answer = client.post(
        urlsplit(page_url).path, data={"csrf_token": csrf.group(1), "token": token}
    )
    answer.close()  # as the server does once the page is sent: the mail leaves then
    return answer.status_code, answer.get_data(as_text=True)


def test_the_whole_flow_through_the_api_and_a_real_smtp_server(
    mail_runtime: Runtime,
    smtp_server: SmtpServer,
    make_app: Callable[..., Flask],
    auth: dict[str, str],
) -> None:
    # The worker (in this process on the embedded default) writes the links: same settings.
    mail_runtime = runtime_with(mail_runtime, public_url=PUBLIC_URL)
    client = make_app(mail_runtime.settings).test_client()
    account_id = make_account(mail_runtime, "jane", OLD)
    expose(mail_runtime, account_id)
    # 1. The login service steps the person up (an emailed code, read from the mail).
    challenge = client.post(
        "/v1/step-up/challenges", json={"account_id": "jane", "method": "email_code"}, headers=auth
    )
    challenge.close()
    [code_mail] = messages_to(smtp_server, OLD)
    code = re.search(r"^\s+(\d{6})\s*$", text_and_html(code_mail.message)[0], re.M)
    assert code is not None
    verified = client.post(
        "/v1/step-up/verify",
        json={
            "account_id": "jane",
            "method": "email_code",
            "code": code.group(1),
            "challenge_id": challenge.get_json()["challenge_id"],
        },
        headers=auth,
    )
    assert verified.status_code == 200
    # 2. It asks for the change with the assurance token.
    asked = client.post(
        "/v1/accounts/jane/email-change",
        json={"new_email": NEW, "assurance_token": verified.get_json()["assurance_token"]},
        headers=auth,
    )
    assert asked.status_code == 202
    assert asked.get_json()["priority"] == "high"
    asked.close()  # the messages leave once the answer is sent
    [confirm_mail] = messages_to(smtp_server, NEW)
    alert_mails = messages_to(smtp_server, OLD)[1:]
    assert len(alert_mails) == 1
    [alert_mail] = alert_mails
    for envelope, address in ((confirm_mail, NEW), (alert_mail, OLD)):
        assert envelope.rcpt_tos == (address,)
        assert one_recipient(envelope.message) == address
    assert str(confirm_mail.message["Subject"]).startswith("Confirm your new email address")
    assert "is being changed" in str(alert_mail.message["Subject"])
    alert_text = text_and_html(alert_mail.message)[0]
    assert "j***@example.net" in alert_text
    assert NEW not in alert_text
    confirm_url = the_link(confirm_mail, "/email-change/confirm")
    revert_url = the_link(alert_mail, "/email-change/revert")
    assert confirm_url.startswith(PUBLIC_URL + "/email-change/confirm?token=")
    # No token in clear anywhere in the database.
    token = parse_qs(urlsplit(confirm_url).query)["token"][0]
    with mail_runtime.db.engine.connect() as connection:
        dump = "\n".join(str(row) for row in connection.exec_driver_sql("SELECT * FROM notice"))
        dump += "\n".join(
            str(row) for row in connection.exec_driver_sql("SELECT * FROM email_change_request")
        )
    assert token not in dump
    # 3. A scanner opening the link changes nothing.
    assert client.get(path_of(confirm_url)).status_code == 200
    assert account_row(mail_runtime, "jane").email == OLD
    # 4. The person presses the button: the change applies, the new address is told.
    status, html = press_the_button(client, confirm_url)
    assert status == 200, html
    assert "confirmed" in html
    account = client.get("/v1/accounts/jane", headers=auth).get_json()
    assert account["email"] == NEW
    assert account["email_changed_at"] is not None
    assert account["exposures"] == []  # the exposure belonged to the old address
    changed_mails = messages_to(smtp_server, NEW)[1:]
    assert len(changed_mails) == 1
    assert "now the email address" in str(changed_mails[0].message["Subject"])
    # 5. The old mailbox undoes it through the login service's own page.
    revert_token = parse_qs(urlsplit(revert_url).query)["token"][0]
    reverted = client.post("/v1/email-change/revert", json={"token": revert_token}, headers=auth)
    assert reverted.status_code == 200
    assert account_row(mail_runtime, "jane").email == OLD
    verdict = client.post("/v1/risk/check", json={"account_id": "jane"}, headers=auth).get_json()
    assert "email_change_reverted" in verdict["reasons"]
    # Each message went to one person, and the confirmation link is spent.
    assert all(len(envelope.rcpt_tos) == 1 for envelope in smtp_server.messages())
    page = client.get(path_of(confirm_url))
    assert page.status_code in (400, 409, 410)
    assert "<button" not in page.get_data(as_text=True)


def test_a_get_changes_nothing_and_a_post_needs_the_csrf_token(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    client = app.test_client()
    response = client.post(
        "/v1/accounts/jane/email-change",
        json={"new_email": NEW, "assurance_token": assurance_token(runtime, "jane")},
        headers=auth,
    )
    request_id = response.get_json()["request_id"]
    token = link_token(runtime, request_id, LinkPurpose.CONFIRM)
    for _ in range(3):
        page = client.get(f"/email-change/confirm?token={token}")
        assert page.status_code == 200
        assert page.headers["Referrer-Policy"] == "no-referrer"
        assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
        assert page.headers["Cache-Control"] == "no-store"
    assert requests_of(runtime)[0].state is ChangeState.AWAITING_CONFIRMATION
    # Without the CSRF token, with a wrong one, or from another session: refused.
    other = app.test_client()
    html = client.get(f"/email-change/confirm?token={token}").get_data(as_text=True)
    csrf = CSRF.search(html)
    assert csrf is not None
    for poster, data in (
        (client, {"token": token}),
        (client, {"token": token, "csrf_token": "forged"}),
        (other, {"token": token, "csrf_token": csrf.group(1)}),
    ):
        refused = poster.post("/email-change/confirm", data=data)
        assert refused.status_code == 400
        assert "Nothing was changed" in refused.get_data(as_text=True)
    assert account_row(runtime, "jane").email == OLD
    # With it: confirmed.
    done = client.post("/email-change/confirm", data={"token": token, "csrf_token": csrf.group(1)})
    assert done.status_code == 200
    assert account_row(runtime, "jane").email == NEW


def test_a_bad_link_shows_no_button(runtime: Runtime, app: Flask) -> None:
    client = app.test_client()
    for path in ("/email-change/confirm", "/email-change/revert"):
        for query in ("", "?token=", "?token=made-up-token"):
            page = client.get(path + query)
            assert page.status_code == 400
            assert "<button" not in page.get_data(as_text=True)


def test_the_openapi_document_describes_the_flow(app: Flask) -> None:
    document = app.test_client().get("/openapi/openapi.json").get_json()
    paths = document["paths"]
    account = "/v1/accounts/{external_id}"
    assert set(paths[f"{account}/email-change"]) == {"get", "post", "delete"}
    assert "post" in paths[f"{account}/email-change/resend"]
    assert "post" in paths[f"{account}/email-change:assisted"]
    for link in ("confirm", "revert"):
        answers = paths[f"/v1/email-change/{link}"]["post"]["responses"]
        assert {"200", "400", "409", "410"} <= set(answers)
    asked = paths[f"{account}/email-change"]["post"]
    assert {"202", "403", "409", "422", "429"} <= set(asked["responses"])
    for code in (
        "step_up_required",
        "address_leaked",
        "address_unchanged",
        "address_in_use",
        "cooling_off",
    ):
        assert code in asked["description"]
    [tag] = [t for t in document["tags"] if t["name"] == "email-change"]
    # The sequence an integrator follows, in order.
    steps = [
        "/v1/step-up/verify",
        "/email-change/confirm?token=",
        "POST /v1/email-change/revert",
        "resend",
    ]
    positions = [tag["description"].index(step) for step in steps]
    assert positions == sorted(positions)
    schemas = document["components"]["schemas"]
    assert {"request_id", "state", "priority", "expires_at"} <= set(
        schemas["EmailChangeOut"]["properties"]
    )
    assert "email_change_reverted" in str(schemas["RiskCheckOut"])


def test_the_page_speaks_the_browsers_language(
    runtime: Runtime, app: Flask, auth: dict[str, str]
) -> None:
    make_account(runtime, "jane", OLD)
    client = app.test_client()
    response = client.post(
        "/v1/accounts/jane/email-change",
        json={"new_email": NEW, "assurance_token": assurance_token(runtime, "jane")},
        headers=auth,
    )
    token = link_token(runtime, response.get_json()["request_id"], LinkPurpose.REVERT)
    german = client.get(
        f"/email-change/revert?token={token}", headers={"Accept-Language": "de-AT,de;q=0.9"}
    )
    assert german.headers["Content-Language"] == "de"
    html = german.get_data(as_text=True)
    assert '<html lang="de">' in html
    assert "Änderung rückgängig machen</button>" in html
    assert "j***@example.net" in html
    english = client.get(f"/email-change/revert?token={token}", headers={"Accept-Language": "fr"})
    assert "Undo the change</button>" in english.get_data(as_text=True)
    bad = client.get("/email-change/revert?token=nope", headers={"Accept-Language": "de"})
    assert "Dieser Link gilt nicht:" in bad.get_data(as_text=True)
