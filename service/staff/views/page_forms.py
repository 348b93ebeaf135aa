"""The forms of the incident, account and queue pages (Flask-WTF: each carries its CSRF
token). Validation here is only shape; the rules are the domain functions'."""

from __future__ import annotations

from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, DateField, HiddenField, IntegerField, SelectField, StringField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from jobs.reader.stream import LeakFormat
from service.leaks.wording import OptionWords
from service.notices.preview import WarningVariant
from service.notices.render import LANGUAGES


def reason_field(label: str = "Reason") -> StringField:
    """A reason for the audit trail: required, as the domain functions ask (1-500)."""
    return StringField(label, validators=[DataRequired(), Length(max=500)])


class ReasonForm(FlaskForm):  # type: ignore[misc]
    """An account action with a reason for the audit trail (resolve, dismiss, lock...)."""

    reason = reason_field()


class OptionalReasonForm(FlaskForm):  # type: ignore[misc]
    reason = StringField("Reason (optional)", validators=[Optional(), Length(max=500)])


class ForceStepUpForm(OptionalReasonForm):
    """Force a step-up: the hold lasts until a step-up is passed or support clears it, or
    at most ``hours`` (blank: no end of its own; bounds are the domain's, 1 h to 365 d)."""

    hours = IntegerField("Hold at most (hours)", validators=[Optional(), NumberRange(min=1)])


class ButtonForm(FlaskForm):  # type: ignore[misc]
    """A button that posts nothing but its CSRF token (pause, resume, resend)."""


class ReviewForm(FlaskForm):  # type: ignore[misc]
    reason = reason_field()


class TestSendForm(FlaskForm):  # type: ignore[misc]
    recipient = StringField(
        "Seed address (one of your own)",
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


class UploadForm(FlaskForm):  # type: ignore[misc]
    file = FileField("Leak file", validators=[FileRequired()])
    slug = StringField(
        "Leak slug (lowercase letters, digits, . _ -)",
        validators=[DataRequired(), Length(max=100)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
    name = StringField("Name in notices (optional)", validators=[Optional(), Length(max=200)])
    # One more name per language past the first, as the CLI's --name-<language>.
    name_de = StringField(
        "Name in German notices (optional; default: the name above)",
        validators=[Optional(), Length(max=200)],
    )
    observed_at = DateField(
        "First seen on (optional; the leak's own date, not in the future)",
        validators=[Optional()],
    )
    source = StringField(
        "Source (optional: a URL, a ticket)", validators=[Optional(), Length(max=500)]
    )
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
