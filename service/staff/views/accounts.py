"""Account look-up (audited), the minimal account page, and revealing an address."""

from __future__ import annotations

from flask import current_app, render_template, request
from flask.typing import ResponseReturnValue

from service.models import StaffRole
from service.runtime import runtime_of
from service.staff import clock
from service.staff.access import current_staff, requires, requires_reauth
from service.staff.audit import record_staff_action
from service.staff.dossier import account_dossier
from service.staff.lookup import LookupResult, account_summary, find_accounts, reveal_address
from service.staff.views.blueprint import staff
from service.staff.views.forms import ActionForm, LookupForm
from service.staff.views.page_forms import ButtonForm, OptionalReasonForm, ReasonForm


@staff.route("/accounts", methods=["GET", "POST"])
@requires(StaffRole.VIEWER)
def accounts() -> ResponseReturnValue:
    """The look-up form; a look-up (the form posts, so a typed address stays out of URLs,
    logs and history; ``?q=`` works too, for links by external id) is audited."""
    form = LookupForm()
    query = None
    if request.method == "POST":
        if form.validate_on_submit():
            query = str(form.q.data)
    elif request.args.get("q"):
        query = request.args["q"][:320]
        form.q.data = query
    result: LookupResult | None = None
    if query is not None and query.strip():
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
        form.q.data = "" if result.by.value == "address" else query
    return render_template("staff/accounts.html", form=form, result=result)


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
