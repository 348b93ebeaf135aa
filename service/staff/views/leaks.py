"""Incident pages: the leak list with live progress, a leak's page (funnel, counts,
campaign controls, retraction), the upload. Each view parses, calls one domain function
(service/staff/incidents.py, campaigns.py, upload.py and the functions they name) and
renders; each state-changing one writes its staff audit row in the same transaction."""

from __future__ import annotations

from functools import partial

from flask import Response, abort, current_app, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from jobs.ingest.lock import file_is_held
from jobs.reader.stream import LeakFormat
from service.addresses import mask_addresses
from service.errors import LeakguardError
from service.leaks.catalogue import LeakFacts, check_observed_at, find_leak
from service.leaks.wording import words_of
from service.models import StaffRole
from service.notices.campaigns import set_paused
from service.notices.preview import SeedRefused, WarningVariant
from service.runtime import Runtime, runtime_of
from service.staff import clock
from service.staff.access import (
    audit_refusal,
    current_staff,
    fragment_of,
    requires,
    requires_reauth,
)
from service.staff.audit import record_staff_action
from service.staff.campaigns import preview_all, retract_confirmed, send_seed
from service.staff.charts import funnel_svg
from service.staff.incidents import leak_funnel, list_incidents, show_incident
from service.staff.upload import safe_name, start_upload_ingest
from service.staff.users import staff_actor
from service.staff.views.blueprint import staff
from service.staff.views.page_forms import (
    SEED_WORDS,
    UPLOAD_WORDS,
    ButtonForm,
    RetractForm,
    TestSendForm,
    UploadForm,
)

POLL_SECONDS = 2  # how often a page with a running ingest asks for its progress


def _runtime() -> Runtime:
    return runtime_of(current_app)


def _held(rt: Runtime) -> partial[bool]:
    return partial(file_is_held, rt)


@staff.get("/leaks")
@requires(StaffRole.VIEWER)
def leaks() -> ResponseReturnValue:
    rt = _runtime()
    with rt.db.read_session() as session:
        incidents = list_incidents(session, held=_held(rt))
    return render_template("staff/leaks.html", incidents=incidents, poll=POLL_SECONDS)


@staff.get("/leaks/rows")
@requires(StaffRole.VIEWER)
@fragment_of("staff.leaks")
def leak_rows() -> ResponseReturnValue:
    """The list's rows alone, for htmx to poll while an ingest runs."""
    rt = _runtime()
    with rt.db.read_session() as session:
        incidents = list_incidents(session, held=_held(rt))
    return render_template("staff/_leak_rows.html", incidents=incidents, poll=POLL_SECONDS)


@staff.get("/leaks/<slug>")
@requires(StaffRole.VIEWER)
def leak(slug: str) -> ResponseReturnValue:
    return _leak_page(slug, test_send=TestSendForm())


def _leak_page(slug: str, *, test_send: TestSendForm, test_send_error: str | None = None) -> str:
    """The leak's page; ``test_send_error``: why the test send was refused, shown by its
    form (which keeps what was typed)."""
    rt = _runtime()
    with rt.db.read_session() as session:
        incident = show_incident(session, slug, held=_held(rt))
        funnel = leak_funnel(session, slug)
    return render_template(
        "staff/leak.html",
        incident=incident,
        funnel=funnel,
        poll=POLL_SECONDS,
        test_send=test_send,
        test_send_error=test_send_error,
        button=ButtonForm(),
        retract=RetractForm(),
    )


@staff.get("/leaks/<slug>/progress")
@requires(StaffRole.VIEWER)
@fragment_of("staff.leak")
def leak_progress(slug: str) -> ResponseReturnValue:
    """The leak's state and counts alone, for htmx to poll while its ingest runs."""
    rt = _runtime()
    with rt.db.read_session() as session:
        incident = show_incident(session, slug, held=_held(rt))
    return render_template("staff/_leak_progress.html", incident=incident, poll=POLL_SECONDS)


@staff.get("/leaks/<slug>/funnel.svg")
@requires(StaffRole.VIEWER)
@fragment_of("staff.leak")
def leak_funnel_svg(slug: str) -> ResponseReturnValue:
    with _runtime().db.read_session() as session:
        svg = funnel_svg(leak_funnel(session, slug))
    return Response(svg, mimetype="image/svg+xml")


@staff.get("/leaks/<slug>/preview")
@requires(StaffRole.VIEWER)
def leak_preview(slug: str) -> ResponseReturnValue:
    rt = _runtime()
    with rt.db.read_session() as session:
        previews = preview_all(session, rt.settings, slug, now=clock.now())
    return render_template("staff/leak_preview.html", slug=slug, previews=previews)


@staff.post("/leaks/<slug>/test-send")
@requires(StaffRole.AGENT)
def leak_test_send(slug: str) -> ResponseReturnValue:
    form = TestSendForm()
    if not form.validate_on_submit():
        error = f"Name one seed address in {SEED_WORDS.recipient}, a kind and a language."
        return _leak_page(slug, test_send=form, test_send_error=error), 400
    rt = _runtime()
    try:
        with rt.db.transaction() as session:
            sent = send_seed(
                session,
                rt.settings,
                slug,
                recipient=str(form.recipient.data),
                kind=WarningVariant(form.kind.data),
                language=str(form.language.data),
                now=clock.now(),
            )
            record_staff_action(
                session,
                current_staff(),
                "campaign.test_sent",
                leak_id=find_leak(session, slug).id,
                detail={
                    "to": sent.masked_recipient,
                    "kind": form.kind.data,
                    "language": form.language.data,
                },
            )
    except SeedRefused as exc:
        # The domain's rule, in this form's words, beside the form on the leak's page.
        audit_refusal("action_refused", exc.code, staff=current_staff())
        return _leak_page(slug, test_send=form, test_send_error=words_of(exc, SEED_WORDS)), 422
    flash(f"Test warning sent to {sent.masked_recipient} via {sent.via}.")
    return redirect(url_for("staff.leak", slug=slug), code=303)


def _pause(slug: str, paused: bool) -> ResponseReturnValue:
    if not ButtonForm().validate_on_submit():
        abort(400)
    with _runtime().db.transaction() as session:
        changed = set_paused(
            session, slug, paused=paused, actor=staff_actor(current_staff()), now=clock.now()
        )
        record_staff_action(
            session,
            current_staff(),
            "campaign.paused" if paused else "campaign.resumed",
            leak_id=find_leak(session, slug).id,
            detail={"changed": changed},
        )
    word = "paused" if paused else "resumed"
    flash(f"Warnings of {slug} {word}." if changed else f"Warnings of {slug} were already {word}.")
    return redirect(url_for("staff.leak", slug=slug), code=303)


@staff.post("/leaks/<slug>/pause")
@requires(StaffRole.AGENT)
def leak_pause(slug: str) -> ResponseReturnValue:
    return _pause(slug, True)


@staff.post("/leaks/<slug>/resume")
@requires(StaffRole.AGENT)
def leak_resume(slug: str) -> ResponseReturnValue:
    return _pause(slug, False)


@staff.post("/leaks/<slug>/retract")
@requires(StaffRole.ADMIN)
@requires_reauth
def leak_retract(slug: str) -> ResponseReturnValue:
    form = RetractForm()
    if not form.validate_on_submit():
        abort(400, "type the slug and give a reason")
    rt = _runtime()
    report = retract_confirmed(
        rt.db,
        slug,
        typed=str(form.typed.data),
        reason=str(form.reason.data),
        actor=staff_actor(current_staff()),
        now=clock.now(),
    )
    with rt.db.transaction() as session:
        record_staff_action(
            session,
            current_staff(),
            "leak.retracted",
            leak_id=find_leak(session, slug).id,
            detail=report.to_json(),
        )
    flash(report.summary())
    return redirect(url_for("staff.leak", slug=slug), code=303)


def _facts(form: UploadForm) -> LeakFacts:
    """The leak's facts as the form gives them (``leak_facts`` of the CLI); the domain
    refuses a date in the future."""
    day = form.observed_at.data
    if day is not None:
        check_observed_at(day, now=clock.now())
    names = {"de": " ".join(str(form.name_de.data).split())} if form.name_de.data else {}
    return LeakFacts(names=names, observed_at=day)


@staff.route("/leaks/upload", methods=["GET", "POST"])
@requires(StaffRole.AGENT)
def leak_upload() -> ResponseReturnValue:
    form = UploadForm()
    if request.method == "GET":
        return render_template("staff/leak_upload.html", form=form, error=None)
    if not form.validate_on_submit():
        _audit_upload_refused(form, "form_invalid")
        return render_template("staff/leak_upload.html", form=form, error=form.error_message()), 400
    rt = _runtime()
    upload = form.file.data
    try:
        started = start_upload_ingest(
            rt,
            upload.stream,
            upload.filename or "leak-file",
            slug=str(form.slug.data).strip(),
            name=form.name.data or None,
            source=form.source.data or None,
            facts=_facts(form),
            fmt=LeakFormat(form.fmt.data),
            accept_invalid=bool(form.accept_invalid.data),
            also_as_new_leak=bool(form.also_as_new_leak.data),
            operator=staff_actor(current_staff()),
        )
    except LeakguardError as exc:
        _audit_upload_refused(form, exc.code)
        return render_template(
            "staff/leak_upload.html", form=form, error=words_of(exc, UPLOAD_WORDS)
        ), exc.status
    with rt.db.transaction() as session:
        record_staff_action(
            session,
            current_staff(),
            "leak.uploaded",
            leak_id=find_leak(session, started.leak).id,
            detail={
                "file": started.file_name,
                "sha256": started.sha256,
                "queued": started.queued,
                "parts": started.parts,
            },
        )
    flash(
        f"{started.file_name}: {started.parts} parts queued for the workers; progress shows below."
        if started.queued
        else started.summary
    )
    return redirect(url_for("staff.leak", slug=started.leak), code=303)


def _audit_upload_refused(form: UploadForm, reason: str) -> None:
    """A refused upload is a security decision too: audited with the slug asked for (the
    audit page's leak filter finds it) and the file's name, addresses masked."""
    upload = form.file.data
    audit_refusal(
        "leak.upload_refused",
        reason,
        staff=current_staff(),
        leak=str(form.slug.data or "").strip()[:100],
        file=mask_addresses(safe_name(getattr(upload, "filename", None) or "leak-file")),
    )
