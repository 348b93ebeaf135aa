"""The staff site's forms (Flask-WTF: each carries its CSRF token)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import EmailField, HiddenField, PasswordField, StringField
from wtforms.validators import DataRequired, Length

from service.staff.passwords import MAX_PASSWORD_CHARS

CODE_INPUT = {"inputmode": "numeric", "autocomplete": "one-time-code", "pattern": r"[0-9 ]*"}


def code_field(label: str) -> StringField:
    return StringField(
        label, validators=[DataRequired(), Length(max=20)], render_kw=dict(CODE_INPUT)
    )


# FlaskForm is untyped (Any to mypy): a wtforms Form bound to the request and session.
class LoginForm(FlaskForm):  # type: ignore[misc]
    email = EmailField(
        "Email",
        validators=[DataRequired(), Length(max=320)],
        render_kw={"autocomplete": "username"},
    )
    password = PasswordField(
        "Password",
        validators=[DataRequired(), Length(max=MAX_PASSWORD_CHARS)],
        render_kw={"autocomplete": "current-password"},
    )
    code = code_field("Code from your authenticator app")
    next = HiddenField()


class EnrolForm(FlaskForm):  # type: ignore[misc]
    password = PasswordField(
        "New password (at least 15 characters; a few words make a good one)",
        validators=[DataRequired(), Length(max=MAX_PASSWORD_CHARS)],
        render_kw={"autocomplete": "new-password"},
    )
    password_again = PasswordField(
        "The same password again",
        validators=[DataRequired(), Length(max=MAX_PASSWORD_CHARS)],
        render_kw={"autocomplete": "new-password"},
    )
    code = code_field("Code your authenticator app shows now")


class ReauthForm(FlaskForm):  # type: ignore[misc]
    code = code_field("Code from your authenticator app")
    next = HiddenField()


class ActionForm(FlaskForm):  # type: ignore[misc]
    """A button that posts nothing but its CSRF token (logout, reveal)."""


class LookupForm(FlaskForm):  # type: ignore[misc]
    q = StringField(
        "External id or exact email address",
        validators=[DataRequired(), Length(max=320)],
        render_kw={"autocomplete": "off", "spellcheck": "false"},
    )
