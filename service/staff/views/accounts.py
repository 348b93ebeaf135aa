"""Account look-up (audited), the minimal account page, and revealing an address."""

from __future__ import annotations

from flask import current_app, flash, redirect, render_template, url_for
from flask import session as flask_session
from flask.typing import ResponseReturnValue

from service.models import StaffRole
from service.runtime import runtime_of
from service.staff import clock
from service.staff.access import LOOKUP_KEY, current_staff, requires, requires_reauth
from service.staff.audit import record_staff_action
from service.staff.dossier import account_dossier
from service.staff.lookup import (
    LookupBy,
    LookupResult,
    account_summary,
    find_accounts,
    reveal_address,
    shown_hits,
)
from service.staff.views.blueprint import staff
from service.staff.views.forms import ActionForm, LookupForm
from service.staff.views.page_forms import ButtonForm, OptionalReasonForm, ReasonForm


@staff.get("/accounts")
@requires(StaffRole.VIEWER)
def accounts() -> ResponseReturnValue:
    """The look-up form and the last look-up's result. Safe (RFC 9110 section 9.2.1): it
    writes nothing, and no address is in its URL."""
    form = LookupForm()
    result: LookupResult | None = None
    shown = flask_session.get(LOOKUP_KEY)
    if isinstance(shown, dict):
        rt = runtime_of(current_app)
        with rt.db.read_session() as session:
            result = shown_hits(session, LookupBy(shown["by"]), list(shown["ids"]))
        form.q.data = shown.get("external_id") or ""
    return render_template("staff/accounts.html", form=form, result=result)


@staff.post("/accounts")
@requires(StaffRole.VIEWER)
def accounts_lookup() -> ResponseReturnValue:
    """Look up (the form posts, so a typed address stays out of URLs, logs and history),
    audit the look-up, and redirect to the result (post/redirect/get: a reload repeats
    nothing)."""
    form = LookupForm()
    if not form.validate_on_submit() or not str(form.q.data).strip():
        flash("Type an external id or an exact email address.")
        return redirect(url_for("staff.accounts"), code=303)
    query = str(form.q.data)
    rt = runtime_of(current_app)
    with rt.db.transaction() as session:
        result = find_accounts(session, rt.keys, query)
        record_staff_action(
            session,
            current_staff(),
            "account_lookup",
            account_id=result.hits[0].id if len(result.hits) == 1 else None,
            detail={"by": result.by.value, "found": len(result.hits)},
        )
    flask_session[LOOKUP_KEY] = {
        "by": result.by.value,
        "ids": [hit.id for hit in result.hits],
        # An external id is shown back in the box; an address never is.
        "external_id": query.strip() if result.by is LookupBy.EXTERNAL_ID else None,
    }
    return redirect(url_for("staff.accounts"), code=303)


@staff.get("/accounts/<int:account_id>")
@requires(StaffRole.VIEWER)
def account(account_id: int) -> ResponseReturnValue:
    return _account_page(account_id, revealed=None)


@staff.post("/accounts/<int:account_id>/reveal")
@requires(StaffRole.AGENT)
@requires_reauth
def reveal(account_id: int) -> ResponseReturnValue:
    """Show the address in clear, once, in this answer only (never cached); audited."""
    rt = runtime_of(current_app)
    with rt.db.transaction() as session:
        email = reveal_address(session, account_id)
        record_staff_action(session, current_staff(), "address_revealed", account_id=account_id)
    return _account_page(account_id, revealed=email)


def _account_page(account_id: int, *, revealed: str | None) -> ResponseReturnValue:
    rt = runtime_of(current_app)
    with rt.db.read_session() as session:
        summary = account_summary(session, rt.step_up, account_id, now=clock.now())
        # The dossier and its role-gated actions (service/staff/dossier.py, actions.py).
        dossier = account_dossier(session, rt.step_up, summary.external_id, now=clock.now())
    return render_template(
        "staff/account_dossier.html",
        account=summary,
        dossier=dossier,
        revealed=revealed,
        reveal_form=ActionForm(),
        can_reveal=current_staff().role is not StaffRole.VIEWER,
        reason=ReasonForm(),
        optional=OptionalReasonForm(),
        button=ButtonForm(),
    )
