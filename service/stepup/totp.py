"""TOTP (RFC 6238) through pyotp: secrets, enrolment material, and the step a code is for."""

from __future__ import annotations

import base64
import io
import secrets
from dataclasses import dataclass
from datetime import datetime

import pyotp
import segno

from service.stepup.typed import typed_code

DIGITS = 6
SECRET_BYTES = 20  # 160 bits, as RFC 4226 recommends for HMAC-SHA1
DRIFT_STEPS = 1  # RFC 6238 s5.2: one step either way for clocks and typing


@dataclass(frozen=True, slots=True)
class TotpEnrollment:
    secret: str  # base32, shown once to the person for manual entry
    provisioning_uri: str
    qr_svg: str
    qr_png: bytes


def new_secret() -> str:
    return base64.b32encode(secrets.token_bytes(SECRET_BYTES)).decode()


def enrollment(secret: str, *, name: str, issuer: str) -> TotpEnrollment:
    """The otpauth:// URI and its QR code (SVG, and PNG without Pillow) for ``secret``."""
    uri = pyotp.TOTP(secret, digits=DIGITS).provisioning_uri(name=name, issuer_name=issuer)
    qr = segno.make(uri, error="m")
    png = io.BytesIO()
    qr.save(png, kind="png", scale=4)
    return TotpEnrollment(
        secret=secret,
        provisioning_uri=uri,
        qr_svg=qr.svg_inline(scale=4, title="TOTP enrolment"),
        qr_png=png.getvalue(),
    )


def step_of(secret: str, code: str, now: datetime) -> int | None:
    """The time step ``code`` belongs to, within one step of drift, or None.

    Spaces are no part of the code: apps show it as "123 456", and people type it so; nor
    are what other keyboards and clipboards add (``typed_code``: full-width or other
    scripts' digits, dashes, invisible characters).
    The caller refuses a step at or below the last one it accepted: a code works once.
    """
    code = typed_code(code)
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    try:
        return pyotp.TOTP(secret, digits=DIGITS).verify_and_get_timecode(
            code, for_time=now, valid_window=DRIFT_STEPS
        )
    except pyotp.exceptions.OTPVerificationError:
        return None
