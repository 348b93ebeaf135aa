"""Request and response bodies of /v1: the source of the OpenAPI document.

Answers are serialized through the same ``*Out`` models (``answer``), so what the document
shows is what is sent.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from datetime import datetime
from typing import Annotated, Literal

from flask import Response
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    model_validator,
)

from service.accounts import (
    MAX_EMAIL_CHARS,
    MAX_EXTERNAL_ID_CHARS,
    MAX_LOCALE_INPUT_CHARS,
    normalize_locale,
)
from service.config import MAX_BATCH_ACCOUNTS_LIMIT
from service.errors import ValidationFailed
from service.leaks.passwords import MAX_PASSWORD_CHARS
from service.models import ExposureKind
from service.risk import REASON_DESCRIPTIONS, Decision, Reason
from service.stepup.assurance import MAX_TOKEN_CHARS
from service.stepup.devices import MAX_DEVICE_ID_CHARS
from service.stepup.services import MAX_CODE_CHARS, MAX_LABEL_CHARS, Method

REASONS_DOC = "Stable reason codes: " + "; ".join(
    f"`{reason.value}` ({text})" for reason, text in REASON_DESCRIPTIONS.items()
)


def _storable(value: str) -> str:
    # Lone surrogates and NUL survive JSON parsing but no database accepts them.
    if "\x00" in value:
        raise ValueError("must not contain NUL")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode text") from None
    return value


# Constraints before the validator: pydantic leaves those after it out of the JSON schema.
Storable = AfterValidator(_storable)
ExternalId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_EXTERNAL_ID_CHARS,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="The login service's own id of the account.",
    ),
    Storable,
]
EmailText = Annotated[
    str,
    Field(
        min_length=3,
        max_length=MAX_EMAIL_CHARS,
        examples=["jane.doe@example.com"],
    ),
    Storable,
]


def _locale_tag(locale: str) -> str | None:
    """The tag a locale is stored as (``service.accounts.normalize_locale``)."""
    try:
        return normalize_locale(locale)
    except ValidationFailed as exc:
        raise ValueError(str(exc)) from None


Locale = Annotated[
    str,
    Field(
        max_length=MAX_LOCALE_INPUT_CHARS,
        description=(
            "BCP 47 tag (stored as given, at most 35 characters) or POSIX locale name "
            "(de_DE.UTF-8 is stored as de-DE; C and POSIX as no locale); picks the "
            "language of the person's notices."
        ),
        examples=["de-AT"],
    ),
    Storable,
    AfterValidator(_locale_tag),
]
# A batch item's locale: checked by the upsert (``normalize_locale``, the rule Locale
# spells out), so an item with a bad one is reported invalid and the rest applied, as for
# a bad address, and as the accounts import refuses that row alone.
ItemLocale = Annotated[
    str,
    Field(
        description="BCP 47 tag (at most 35 characters) such as en or de-AT, or POSIX locale "
        "name such as de_DE.UTF-8 (stored as de-DE); an item with another value is reported "
        "invalid.",
        examples=["de-AT"],
    ),
    Storable,
]


# RFC 3339 with a numeric offset ("+00:00"), as Python writes it: the wire format the
# login service has always had.
Timestamp = Annotated[datetime, PlainSerializer(datetime.isoformat, when_used="json")]


def answer(body: BaseModel, status: int = 200) -> Response:
    """The JSON answer of a view, serialized through its documented model."""
    return Response(body.model_dump_json(), status=status, mimetype="application/json")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class AccountPath(BaseModel):
    external_id: ExternalId


class AccountBody(Strict):
    email: EmailText
    locale: Locale | None = None


class AccountItem(Strict):
    external_id: ExternalId
    email: EmailText
    locale: ItemLocale | None = None


class AccountBatchBody(Strict):
    # The deployment's limit (LEAKGUARD_MAX_BATCH_ACCOUNTS) is checked by the view.
    accounts: list[AccountItem] = Field(
        min_length=1,
        max_length=MAX_BATCH_ACCOUNTS_LIMIT,
        description="At most LEAKGUARD_MAX_BATCH_ACCOUNTS items (default 1,000).",
    )


class AccountOut(BaseModel):
    external_id: str
    email: str
    locale: str | None
    created_at: Timestamp
    updated_at: Timestamp
    email_changed_at: Timestamp | None = Field(
        default=None,
        description="When the account last moved to another mailbox, by any path: PUT, "
        "batch, import, a confirmed or reverted email change (not a respelling)",
    )


class OpenExposureOut(BaseModel):
    leak: str = Field(description="The leak's slug")
    kind: ExposureKind
    since: Timestamp = Field(description="When the account was found in the leak")


class UndeliverableOut(BaseModel):
    since: Timestamp = Field(description="When mail to the address was first refused")
    reply_code: int | None = Field(description="SMTP reply code of the last refusal or bounce")
    reason: str | None = Field(description="The refusal or bounce text, addresses masked")


class AccountStateOut(AccountOut):
    exposures: list[OpenExposureOut] = Field(
        description="Open exposures only, oldest first (resolved, dismissed, expired and "
        "retracted ones are not shown: they no longer count in the risk check)"
    )
    undeliverable: UndeliverableOut | None = Field(
        description="Set while the address refuses mail: no code or warning can reach it"
    )
    totp_enrolled: bool = Field(description="A confirmed authenticator app")
    recovery_codes_left: int = Field(description="Unused recovery codes")


class AccountUpsertOut(AccountOut):
    status: str = Field(description="created, updated or unchanged")


class AccountBatchResult(BaseModel):
    external_id: str
    status: str = Field(description="created, updated, unchanged or invalid")
    error: str | None = None


class AccountBatchOut(BaseModel):
    created: int
    updated: int
    unchanged: int
    invalid: int
    results: list[AccountBatchResult]


MessageId = Annotated[
    str,
    Field(
        min_length=3,
        max_length=255,
        pattern=r"^<?[^<>\s@]+@[^<>\s@]+>?$",
        description="The Message-ID of the notice, with or without angle brackets.",
    ),
    Storable,
]


class BounceItem(Strict):
    message_id: MessageId
    code: int | None = Field(default=None, ge=200, le=599, description="SMTP reply code")
    reason: Annotated[str, Field(max_length=500), Storable] | None = None


class BounceBatchBody(Strict):
    bounces: list[BounceItem] = Field(min_length=1, max_length=1000)


class BounceBatchOut(BaseModel):
    matched: int = Field(description="bounces that named one of our notices")
    unknown: int = Field(description="bounces whose Message-ID is not ours")


# RFC 7239 section 6: a proxy that does not know or will not tell the client's address
# writes "unknown" or an obfuscated identifier ("_hidden"). The client then has no address.
_NO_ADDRESS = re.compile(r"unknown|_[A-Za-z0-9._-]+", re.IGNORECASE)
# "[2001:db8::1]:443" or "[2001:db8::1]"; "203.0.113.7:51234".
_BRACKETED = re.compile(r"\[([^\]]*)\](?::\d{1,5})?")
_IPV4_PORT = re.compile(r"(\d{1,3}(?:\.\d{1,3}){3}):\d{1,5}")


def _client_ip(value: str) -> str | None:
    """The client's address as a login service's proxy chain hands it over, or None.

    Takes what arrives in practice: an X-Forwarded-For list (its first entry is the client,
    the ones after it proxies), RFC 7239's ``for=`` with its quotes, an address with a port
    or in brackets. None for a proxy's "unknown" or obfuscated identifier (RFC 7239 section
    6). Anything else that is no IPv4 or IPv6 address is refused.
    """
    text = value.split(",", 1)[0].strip()
    if text[:4].lower() == "for=":
        text = text[4:].split(";", 1)[0].strip()
    text = text.strip('"').strip()
    if _NO_ADDRESS.fullmatch(text):
        return None
    for form in (_BRACKETED, _IPV4_PORT):
        match = form.fullmatch(text)
        if match is not None:
            text = match.group(1)
            break
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise ValueError("must be an IPv4 or IPv6 address") from None


MAX_USER_AGENT_CHARS = 8192
MAX_FORWARDED_CHARS = 8192  # a header's worth of a proxy chain
# Whatever the sign-in form let through: a refusal would leave the sign-in undecided. Only
# the first MAX_PASSWORD_CHARS count, for the typed password as for the leaked ones.
MAX_TYPED_PASSWORD_CHARS = 64 * 1024
USER_AGENT_KEPT_CHARS = 500

DeviceId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_DEVICE_ID_CHARS,
        description=(
            "The login service's opaque id of the device (its own choosing, e.g. a random "
            "value in a long-lived cookie). A passed step-up on it trusts the device for "
            "LEAKGUARD_TRUSTED_DEVICE_DAYS; Leakguard stores only a keyed hash of it."
        ),
    ),
    Storable,
]


class DeviceContext(Strict):
    device_id: DeviceId | None = None


class RiskContext(Strict):
    ip: (
        Annotated[
            str | None,
            Field(
                max_length=MAX_FORWARDED_CHARS,
                examples=["203.0.113.7"],
                description=(
                    "The client's address: an IPv4 or IPv6 address, or an X-Forwarded-For "
                    "or RFC 7239 for= value (its first entry; a port or brackets are "
                    'dropped; "unknown" is no address)'
                ),
            ),
            AfterValidator(lambda value: None if value is None else _client_ip(value)),
        ]
        | None
    ) = None
    # Taken as the browser sent it, up to the 8 KiB of a header servers accept (in-app
    # browsers' run past 500 characters: a refusal would leave the sign-in undecided), and
    # kept for the audit row to its first USER_AGENT_KEPT_CHARS.
    user_agent: (
        Annotated[
            str,
            Field(max_length=MAX_USER_AGENT_CHARS),
            Storable,
            AfterValidator(lambda text: text[:USER_AGENT_KEPT_CHARS]),
        ]
        | None
    ) = None
    device_id: DeviceId | None = None


AssuranceToken = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_TOKEN_CHARS,
        description="From a passed step-up (POST /v1/step-up/verify); valid for 15 minutes.",
    ),
    Storable,
]


class RiskCheckBody(Strict):
    account_id: ExternalId
    password: (
        Annotated[
            str,
            Field(
                max_length=MAX_TYPED_PASSWORD_CHARS,
                description=(
                    "The password being tried, to recognise one that leaked (compared by its "
                    f"first {MAX_PASSWORD_CHARS} characters, as a leaked one is kept). Never "
                    "stored."
                ),
            ),
            Storable,
        ]
        | None
    ) = None
    context: RiskContext | None = None
    assurance_token: AssuranceToken | None = None


class ExposureOut(BaseModel):
    leak: str = Field(description="The leak's slug")
    kind: ExposureKind
    since: Timestamp


class RiskCheckOut(BaseModel):
    decision: Decision
    reasons: list[Reason] = Field(description=REASONS_DOC)
    methods: list[Method] = Field(description="Step-up methods this account can use now")
    retry_after: int | None = Field(
        default=None,
        description="Seconds until a locked method opens again (step_up or deny locked)",
    )
    exposures: list[ExposureOut]


Code = Annotated[str, Field(min_length=1, max_length=MAX_CODE_CHARS), Storable]
# A UUID as clients write one (RFC 9562 section 4: case-insensitive on input): upper case
# from a SQL Server uniqueidentifier, braces or no hyphens from .NET, the URN form. The
# code of a challenge is derived from its canonical spelling, so it is read as that.
_UUID_SPELLING = re.compile(
    r"(?:urn:uuid:)?(\{)?[0-9a-f]{8}(-?)[0-9a-f]{4}\2[0-9a-f]{4}\2[0-9a-f]{4}\2[0-9a-f]{12}(?(1)\})",
    re.IGNORECASE,
)


def _canonical_uuid(value: str) -> str:
    if not _UUID_SPELLING.fullmatch(value):
        raise ValueError("must be a UUID (the challenge_id of POST /v1/step-up/challenges)")
    return str(uuid.UUID(value))


ChallengeId = Annotated[
    str,
    Field(
        min_length=32,
        max_length=47,
        json_schema_extra={"format": "uuid"},
        description="As answered by POST /v1/step-up/challenges; any case, with or without "
        "hyphens, braces or urn:uuid:",
    ),
    AfterValidator(_canonical_uuid),
]


class ChallengeBody(Strict):
    account_id: ExternalId
    method: Literal["email_code"] = Field(description="Only emailed codes need a challenge")


class ChallengeOut(BaseModel):
    challenge_id: str
    method: Method
    expires_at: Timestamp


class VerifyBody(Strict):
    account_id: ExternalId
    # A Literal, not the enum: strict validation would refuse the JSON string for an enum.
    method: Literal["totp", "email_code", "recovery_code"]
    code: Code
    challenge_id: ChallengeId | None = Field(
        default=None, description="Required with method email_code"
    )
    context: DeviceContext | None = None


class AssuranceOut(BaseModel):
    assurance_token: str
    method: Method
    expires_at: Timestamp
    device_trusted_until: Timestamp | None = Field(
        default=None,
        description="With context.device_id: until when that device signs in without step-up",
    )


class TotpEnrollmentOut(BaseModel):
    secret: str = Field(description="Base32, for manual entry; shown once")
    provisioning_uri: str = Field(description="otpauth:// URI, what the QR code holds")
    qr_svg: str = Field(description="The QR code as an inline SVG document")
    qr_png: str = Field(description="The QR code as a data: URI of a PNG image")


class TotpConfirmBody(Strict):
    code: Code


class TotpEnrollBody(Strict):
    """Optional: a request without a body enrols with the default label."""

    @model_validator(mode="before")
    @classmethod
    def _no_body(cls, data: object) -> object:
        return {} if data is None else data

    label: (
        Annotated[
            str,
            Field(
                min_length=1,
                max_length=MAX_LABEL_CHARS,
                description="What the authenticator app shows for this account (default: "
                "the masked address); never an id",
            ),
            Storable,
        ]
        | None
    ) = None


class AssuranceHeader(BaseModel):
    assurance_token: AssuranceToken | None = Field(
        default=None,
        alias="Assurance-Token",
        description="From a passed step-up: needed to replace or remove a factor",
    )


class TotpConfirmedOut(BaseModel):
    enrolled: bool
    method: Method


class RecoveryCodesOut(BaseModel):
    codes: list[str] = Field(description="Ten single-use codes, shown once; the old set is void")
