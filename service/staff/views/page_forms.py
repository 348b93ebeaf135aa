"""The forms of the incident, account and queue pages (Flask-WTF: each carries its CSRF
token). Validation here is only shape; the rules are the domain functions'."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from flask import abort
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import (
    BooleanField,
    DateField,
    Field,
    HiddenField,
    IntegerField,
    SelectField,
    StringField,
)
from wtforms.validators import DataRequired, Length, NumberRange, Optional, StopValidation

from jobs.reader.stream import LeakFormat
from service.db.base import BIGINT_MAX, WHOLE_NUMBER, read_whole_number
from service.leaks.catalogue import MAX_NAME_CHARS, MAX_SOURCE_CHARS
from service.leaks.wording import OptionWords
from service.notices.preview import SeedWords, WarningVariant
from service.notices.render import LANGUAGES
from service.readable_text import TextFault, text_fault


def whole_number(text: str, *, what: str) -> int:
    """``text`` as a whole number the database holds, else the 400 page naming ``what``:
    a number beyond what the code or the database can hold would otherwise be a 500."""
    number = read_whole_number(text)
    if number is None:
        abort(400, f"{what}: give a whole number from 0 to {BIGINT_MAX}, in digits 0-9")
    return number


class WholeNumberField(IntegerField):
    """An IntegerField that takes ASCII digits only (see ``WHOLE_NUMBER``); bound it with
    NumberRange, so no huge value reaches ``timedelta`` or the database."""

    def process_formdata(self, valuelist: list[Any]) -> None:
        if valuelist and valuelist[0] and WHOLE_NUMBER.fullmatch(str(valuelist[0])) is None:
            self.data = None
            raise ValueError(self.gettext("Not a valid integer value."))
        super().process_formdata(valuelist)


def reason_field(label: str = "Reason") -> StringField:
    """A reason for the audit trail: required, as the domain functions ask (1-500)."""
    return StringField(label, validators=[DataRequired(), Length(max=500)])


class ReasonForm(FlaskForm):  # type: ignore[misc]
    """An account action with a reason for the audit trail (resolve, dismiss, lock...)."""

    reason = reason_field()


class OptionalReasonForm(FlaskForm):  # type: ignore[misc]
    reason = StringField("Reason (optional)", validators=[Optional(), Length(max=500)])


# The most hours a timedelta holds: beyond it the form refuses (400) what the code cannot
# even represent; within it the domain's own bounds (1 h to 365 d) judge, with its 422.
MAX_TIMEDELTA_HOURS = timedelta.max // timedelta(hours=1)


class ForceStepUpForm(OptionalReasonForm):
    """Force a step-up: the hold lasts until a step-up is passed or support clears it, or
    at most ``hours`` (blank: no end of its own; bounds are the domain's, 1 h to 365 d)."""

    hours = WholeNumberField(
        "Hold at most (hours)",
        validators=[Optional(), NumberRange(min=1, max=MAX_TIMEDELTA_HOURS)],
    )


class ButtonForm(FlaskForm):  # type: ignore[misc]
    """A button that posts nothing but its CSRF token (pause, resume, resend)."""


class ReviewForm(FlaskForm):  # type: ignore[misc]
    reason = reason_field()


SEED_LABEL = "Seed address (one of your own)"
# A test send's refusal names this form's field where the CLI names --to.
SEED_WORDS = SeedWords(recipient=f'"{SEED_LABEL}"')


class TestSendForm(FlaskForm):  # type: ignore[misc]
    recipient = StringField(
        SEED_LABEL,
        validators=[DataRequired(), Length(max=320)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    kind = SelectField("Kind", choices=[(v.value, v.value) for v in WarningVariant])
    language = SelectField("Language", choices=[(lang, lang) for lang in LANGUAGES])


class RetractForm(FlaskForm):  # type: ignore[misc]
    typed = StringField(
        "Type the leak's slug to confirm",
        validators=[DataRequired(), Length(max=100)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    reason = reason_field()


FORMAT_LABEL = "Format"
ACCEPT_INVALID_LABEL = "Ingest even if most of the first records are no address"
ALSO_AS_NEW_LEAK_LABEL = "Ingest a file another leak has recorded, as this leak too"


def readable_text(limit: int) -> Callable[[object, Field], None]:
    """A validator of an optional one-line text people read (a leak's name, its source),
    by the domain's rule (``service.readable_text``): absent when empty; else refused,
    worded for the form, when it is blank, holds a control character (a newline would
    break the notice's line) or is over ``limit`` characters once trimmed."""

    def check(_form: object, field: Field) -> None:
        if not field.data:
            raise StopValidation()
        match text_fault(field.data, limit=limit):
            case (TextFault.CONTROL, char):
                raise StopValidation(
                    f"must be one line of text, without control or formatting characters ({char})"
                )
            case (TextFault.BLANK, _):
                raise StopValidation(
                    "must be readable text, not blank or invisible characters only"
                )
            case (TextFault.TOO_LONG, _):
                raise StopValidation(f"at most {limit} characters")

    return check


class UploadForm(FlaskForm):  # type: ignore[misc]
    file = FileField("Leak file", validators=[FileRequired("choose the file to upload")])
    slug = StringField(
        "Leak slug (lowercase letters, digits, . _ -)",
        validators=[DataRequired("name the leak: give its slug"), Length(max=100)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    name = StringField(
        "Name in notices (optional)",
        validators=[readable_text(MAX_NAME_CHARS)],
    )
    # One more name per language past the first, as the CLI's --name-<language>.
    name_de = StringField(
        "Name in German notices (optional; default: the name above)",
        validators=[readable_text(MAX_NAME_CHARS)],
    )
    observed_at = DateField(
        "First seen on (optional; the leak's own date, not in the future)",
        validators=[Optional()],
    )
    source = StringField(
        "Source (optional: a URL, a ticket)",
        validators=[readable_text(MAX_SOURCE_CHARS)],
    )

    def error_message(self) -> str:
        """Each refused field by its label (without the parenthesis) and why, one sentence
        each: "First seen on: not a valid date (YYYY-MM-DD)." The CSRF field's failure has
        its own page (CSRFError) and is not listed."""
        parts = []
        for field in self:
            if not field.errors or field.name == "csrf_token":
                continue
            label = str(field.label.text).split(" (", 1)[0]
            why = "not a valid date (YYYY-MM-DD)" if field is self.observed_at else field.errors[0]
            parts.append(f"{label}: {str(why).rstrip('.')}.")
        return " ".join(parts) or "Choose a file and name the leak."

    fmt = SelectField(
        FORMAT_LABEL,
        choices=[(f.value, f.value) for f in LeakFormat],
        default=LeakFormat.AUTO.value,
    )
    accept_invalid = BooleanField(ACCEPT_INVALID_LABEL)
    also_as_new_leak = BooleanField(ALSO_AS_NEW_LEAK_LABEL)


# A refusal of the upload names this form's fields where the CLI's names its flags (the
# same refusal rule, jobs/ingest/checks.py; only the words differ).
UPLOAD_WORDS = OptionWords(
    format_given=f'chosen in "{FORMAT_LABEL}"',
    format_choice=f'"{FORMAT_LABEL}: {{}}"',
    accept_invalid=f'tick "{ACCEPT_INVALID_LABEL}" to ingest it anyway',
    also_as_new_leak=f'tick "{ALSO_AS_NEW_LEAK_LABEL}"',
    another_slug="upload it under another leak slug",
    resume_single="an operator resumes it with `leakguard ingest` (without --enqueue)",
    resume_parts="an operator resumes it with `leakguard ingest ... --enqueue`",
)


class BulkForm(FlaskForm):  # type: ignore[misc]
    leak = StringField("Leak slug", validators=[DataRequired(), Length(max=100)])
    kind = SelectField(
        "Kind", choices=[("", "any"), ("email", "email"), ("credential", "credential")]
    )
    reason = reason_field()
    confirmed_count = HiddenField()


class RetryForm(FlaskForm):  # type: ignore[misc]
    ids = StringField(
        "Notice ids (empty: all of the leak)", validators=[Optional(), Length(max=2000)]
    )
