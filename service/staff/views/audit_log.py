"""The audit log page and its CSV export."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

from flask import Response, current_app, render_template, request, stream_with_context
from flask.typing import ResponseReturnValue
from werkzeug.datastructures import MultiDict

from service.models import StaffRole
from service.runtime import runtime_of
from service.staff.access import current_staff, requires
from service.staff.audit import record_staff_action
from service.staff.audit_log import (
    MAX_FILTER_CHARS,
    AuditFilter,
    iter_audit_csv,
    read_audit_page,
    staff_names,
)
from service.staff.views.blueprint import staff
from service.staff.views.page_forms import whole_number

FILTER_FIELDS = ("actor", "account", "leak", "action", "since", "until")


@staff.get("/audit")
@requires(StaffRole.VIEWER)
def audit_log() -> ResponseReturnValue:
    where, problems = _filter_from(request.args)
    # The id of the row the next page starts below (the "Older" link's; None: the newest).
    text = request.args.get("before")
    before = whole_number(text, what="before (a row id)") if text is not None else None
    rt = runtime_of(current_app)
    with rt.db.read_session() as session:
        page = read_audit_page(session, where, before=before)
        names = staff_names(session, page.rows)
    kept = {name: request.args[name] for name in FILTER_FIELDS if request.args.get(name)}
    return render_template(
        "staff/audit.html",
        page=page,
        names=names,
        values=kept,
        problems=problems,
        first_page=before is None,
        can_export=current_staff().role is not StaffRole.VIEWER,
    )


@staff.post("/audit/export.csv")
@requires(StaffRole.AGENT)
def audit_export() -> ResponseReturnValue:
    """Every row the posted filters match as CSV, streamed (addresses masked); the export
    itself is audited with its filters, so it is a POST (a GET must be safe)."""
    where, problems = _filter_from(request.form)
    if problems:
        return Response("; ".join(problems) + "\n", status=400, mimetype="text/plain")
    rt = runtime_of(current_app)
    kept = {name: request.form[name] for name in FILTER_FIELDS if request.form.get(name)}
    with rt.db.transaction() as session:
        record_staff_action(session, current_staff(), "audit_exported", detail={"filters": kept})

    def chunks() -> Iterator[str]:
        with rt.db.read_session() as session:
            yield from iter_audit_csv(session, where)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return Response(
        stream_with_context(chunks()),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="leakguard-audit-{stamp}.csv"'},
    )


def _filter_from(fields: MultiDict[str, str]) -> tuple[AuditFilter, list[str]]:
    """The filters in the query string (the page) or the posted form (the export);
    unreadable times are named in ``problems``."""
    problems: list[str] = []

    def text(name: str) -> str | None:
        value = fields.get(name, "").strip()
        return value[:MAX_FILTER_CHARS] or None

    def when(name: str) -> datetime | None:
        value = text(name)
        if value is None:
            return None
        try:
            parsed = datetime.fromisoformat(value)
            # An offset can carry a time at either end of the calendar past it
            # (0001-01-01T00:00+14:00 is in year 0 in UTC): OverflowError, a 500 page.
            return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            problems.append(
                f"{name}: not a date and time from year 1 to 9999 (YYYY-MM-DDTHH:MM, UTC)"
            )
            return None

    where = AuditFilter(
        actor=text("actor"),
        account=text("account"),
        leak=text("leak"),
        action=text("action"),
        since=when("since"),
        until=when("until"),
    )
    return where, problems
