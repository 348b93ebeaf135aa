"""The pages the email-change links open, under ``LEAKGUARD_PUBLIC_URL``.

Mail security gateways open every link in a message, so opening a link does nothing:
``GET /email-change/confirm?token=...`` (or ``/revert``) only shows a small page with one
button. Pressing it sends a ``POST`` with the token and a CSRF token (Flask-WTF, bound to
the page's session cookie), which calls the same domain step as
``POST /v1/email-change/confirm``. A POST without a valid CSRF token changes nothing.

The pages are served with ``Referrer-Policy: no-referrer`` (the token is in the URL),
``Cache-Control: no-store`` and ``frame-ancestors 'none'``: a one-button page in someone
else's frame is a clickjacking target.
"""

from __future__ import annotations

from http import HTTPStatus

from flask import Blueprint, Response, current_app, render_template, request
from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms.validators import DataRequired, Length

from jobs.deliver import send_now
from jobs.queues import QueueName
from service.db import utcnow
from service.email_change.context import ChangeTools
from service.email_change.errors import LinkExpired, LinkInvalid, RequestClosed
from service.email_change.links import LinkState, check_link, follow_link
from service.email_change.tokens import MAX_TOKEN_CHARS, LinkPurpose
from service.errors import LeakguardError
from service.runtime import runtime_of

pages = Blueprint("pages", __name__, template_folder="templates")

SECURITY_HEADERS = {
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
# The person who holds the mailbox acts: the audit trail names which one.
ACTORS = {LinkPurpose.CONFIRM: "link:new_mailbox", LinkPurpose.REVERT: "link:old_mailbox"}


# FlaskForm is untyped (Any to mypy): a wtforms Form bound to the request and session.
class LinkForm(FlaskForm):  # type: ignore[misc]
    token = HiddenField(validators=[DataRequired(), Length(max=MAX_TOKEN_CHARS)])


LANGUAGES = ("en", "de")  # as the messages; the browser's preference picks one


def _language() -> str:
    return request.accept_languages.best_match(LANGUAGES) or LANGUAGES[0]


def _page(template: str, status: int = 200, **values: object) -> Response:
    lang = _language()

    def t(german: str, english: str) -> str:
        return german if lang == "de" else english

    response = Response(render_template(template, lang=lang, t=t, **values), status=status)
    response.headers.update(SECURITY_HEADERS)
    response.headers["Content-Language"] = lang
    response.vary.add("Accept-Language")
    return response


def _message(purpose: LinkPurpose, status: HTTPStatus, text: tuple[str, str]) -> Response:
    german, english = text
    message = german if _language() == "de" else english
    return _page("email_change_message.html", int(status), purpose=purpose.value, message=message)


# Each text in German, then English.
INVALID = (
    "Dieser Link gilt nicht: Er wurde durch einen neueren ersetzt oder falsch abgeschrieben.",
    "This link is not valid: it was replaced by a newer one, or mistyped.",
)
EXPIRED = ("Dieser Link ist abgelaufen.", "This link has expired.")
UNCHECKED = (
    "Dieses Formular ließ sich nicht prüfen (es ist abgelaufen oder kam nicht von unserer "
    "Seite). Öffnen Sie den Link in der Nachricht noch einmal.",
    "This form could not be checked (it expired, or did not come from our page). "
    "Open the link in the message again.",
)
CLOSED = (
    "Diese Anfrage ist abgeschlossen: Sie wurde schon bestätigt, abgebrochen, ersetzt oder "
    "rückgängig gemacht, oder die Adresse des Kontos wurde inzwischen anders geändert. "
    "Dieser Link bewirkt nichts mehr.",
    "This request was closed: it was confirmed, cancelled, replaced or undone already, or "
    "the account's address was changed another way meanwhile. This link does nothing more.",
)
REFUSED = (
    "Diese Änderung ist so nicht mehr möglich. Beginnen Sie sie bei Bedarf neu.",
    "This change cannot be made as it stands any more. Start it again if you need to.",
)


def _show(purpose: LinkPurpose) -> Response:
    """GET: the page and its one button; reads, never writes."""
    token = request.args.get("token", "")
    rt = runtime_of(current_app)
    with rt.db.read_session() as session:
        check = check_link(session, purpose, token, now=utcnow())
    if check.state is LinkState.INVALID:
        return _message(purpose, HTTPStatus.BAD_REQUEST, INVALID)
    if check.state is LinkState.EXPIRED:
        return _message(purpose, HTTPStatus.GONE, EXPIRED)
    if check.state is LinkState.CLOSED:
        return _message(purpose, HTTPStatus.CONFLICT, CLOSED)
    form = LinkForm(formdata=None, data={"token": token})
    return _page(
        "email_change_link.html", purpose=purpose.value, form=form, new_email=check.new_email
    )


def _act(purpose: LinkPurpose) -> Response:
    """POST: the button. Only with the page's CSRF token; then the one domain step."""
    form = LinkForm()
    if not form.validate_on_submit():
        return _message(purpose, HTTPStatus.BAD_REQUEST, UNCHECKED)
    rt = runtime_of(current_app)
    try:
        with rt.db.transaction() as session:
            step = follow_link(
                session,
                ChangeTools.of(rt),
                purpose,
                str(form.token.data),
                actor=ACTORS[purpose],
                now=utcnow(),
            )
    except LinkInvalid:
        return _message(purpose, HTTPStatus.BAD_REQUEST, INVALID)
    except LinkExpired:
        return _message(purpose, HTTPStatus.GONE, EXPIRED)
    except RequestClosed:
        return _message(purpose, HTTPStatus.CONFLICT, CLOSED)
    except LeakguardError as exc:  # the address was taken meanwhile, or the account moved
        return _message(purpose, HTTPStatus(exc.status), REFUSED)
    response = _page(
        "email_change_done.html",
        purpose=purpose.value,
        unrestored=step.restore_refused,
    )
    notice_ids = list(step.notice_ids)
    if notice_ids:
        # After the page is sent, as the API does: the rows are committed already.
        queue = QueueName.HIGH if step.view.priority == "high" else QueueName.DEFAULT
        response.call_on_close(lambda: send_now(rt, notice_ids, queue))
    return response


@pages.get("/email-change/confirm")
def confirm_page() -> Response:
    return _show(LinkPurpose.CONFIRM)


@pages.post("/email-change/confirm")
def confirm_action() -> Response:
    return _act(LinkPurpose.CONFIRM)


@pages.get("/email-change/revert")
def revert_page() -> Response:
    return _show(LinkPurpose.REVERT)


@pages.post("/email-change/revert")
def revert_action() -> Response:
    return _act(LinkPurpose.REVERT)
