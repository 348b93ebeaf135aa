"""Request and response bodies of /v1: the source of the OpenAPI document."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from service.accounts import MAX_EMAIL_CHARS, MAX_EXTERNAL_ID_CHARS, MAX_LOCALE_CHARS
from service.config import MAX_BATCH_ACCOUNTS_LIMIT


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
Locale = Annotated[
    str,
    Field(
        max_length=MAX_LOCALE_CHARS,
        pattern=r"^[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*$",
        description="BCP 47 tag; picks the language of the person's notices.",
        examples=["de-AT"],
    ),
    Storable,
]


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
    locale: Locale | None = None


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
    created_at: datetime
    updated_at: datetime


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
