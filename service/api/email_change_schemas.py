"""Bodies of the /v1 email-change endpoints (issue 14, part 2)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field

from service.api.schemas import AccountStateOut, EmailText, Storable, Strict, Timestamp
from service.email_change.assisted import TICKET_PATTERN
from service.email_change.tokens import MAX_TOKEN_CHARS as MAX_LINK_TOKEN_CHARS
from service.stepup.assurance import MAX_TOKEN_CHARS

LinkToken = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_LINK_TOKEN_CHARS,
        description="The `token` parameter of the link in the message",
    ),
    Storable,
]


class EmailChangeBody(Strict):
    new_email: EmailText
    assurance_token: (
        Annotated[
            str,
            Field(
                max_length=MAX_TOKEN_CHARS,
                description="From a step-up passed just now (POST /v1/step-up/verify); "
                "spent by the first request it is accepted for",
            ),
            Storable,
        ]
        | None
    ) = None
    accept_leaked_address: bool = Field(
        default=False,
        description="Accept a new address that is in a known leak (the person insists)",
    )


class AssistedChangeBody(Strict):
    new_email: EmailText
    ticket: Annotated[
        str,
        Field(pattern=TICKET_PATTERN.pattern, description="Support's ticket reference"),
    ]
    accept_leaked_address: bool = False
    cancel_open_request: bool = Field(
        default=False,
        description="Cancel the account's open support-assisted request (closed as "
        "`replaced`) and file this one; without it such a request is refused with 409 "
        "`assisted_request_open`, naming its `ticket` and `request_id`",
    )


class LinkTokenBody(Strict):
    token: LinkToken


class EmailChangeOut(BaseModel):
    request_id: str
    state: str = Field(
        description="awaiting_review, awaiting_confirmation, confirmed, reverted, "
        "cancelled, replaced, superseded, denied or expired"
    )
    priority: str = Field(description="high (the account has an open exposure) or normal")
    expires_at: Timestamp | None = Field(
        description="When the confirmation link runs out (awaiting_confirmation only)"
    )
    address_leaked: bool = Field(
        default=False,
        description="True when the new address is in a known leak (not retracted) now: "
        "the same in the request's answer, the confirmation's, the revert's and the GET",
    )
    address_restored: bool | None = Field(
        default=None,
        description="A revert only: whether the old address is the account's again (false "
        "when the change had not taken effect, or another account holds the old address "
        "now: support is told)",
    )


class PendingEmailChangeOut(BaseModel):
    request_id: str
    state: str
    priority: str
    expires_at: Timestamp | None
    new_email: str = Field(description="The proposed address, masked")
    created_at: Timestamp
    assisted: bool
    address_leaked: bool = Field(
        default=False, description="True when the new address is in a known leak now"
    )


class AccountWithChangeOut(AccountStateOut):
    pending_email_change: PendingEmailChangeOut | None = Field(
        default=None, description="The change waiting for review or confirmation, if any"
    )
