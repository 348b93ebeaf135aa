"""The refusals of the email change, each with its stable code (the API renders them as
``application/problem+json``; the CLI prints the detail on one line)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from service.errors import LeakguardError, NotFound, ValidationFailed


class StepUpRequired(LeakguardError):
    """No assurance token, or one that is expired, forged, another account's, of an
    earlier security epoch, or spent on an earlier email change."""

    status = 403
    code = "step_up_required"
    title = "A fresh step-up is required to change the address"


class AddressLeaked(ValidationFailed):
    code = "address_leaked"
    title = "The new address is in a known leak"


class AddressUnchanged(ValidationFailed):
    code = "address_unchanged"
    title = "The new address is the account's current address"


class AddressInUse(LeakguardError):
    status = 409
    code = "address_in_use"
    title = "Another account holds the new address"


class CoolingOff(LeakguardError):
    """A change was reverted lately: no new one until the cooling-off ends (Retry-After)."""

    status = 409
    code = "cooling_off"
    title = "A recent email change was reverted: no new change yet"

    def __init__(self, until: datetime, now: datetime) -> None:
        super().__init__(f"no email change before {until.isoformat(timespec='seconds')}")
        self.retry_after = max(1, math.ceil((until - now).total_seconds()))

    def response_headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class LinkInvalid(LeakguardError):
    """A link token that is unknown, tampered or mistyped, or of a confirmation link that
    a resend replaced. (A link of a request that exists but is closed, used ones included,
    is RequestClosed: only the holder of the 256-bit token learns that much.)"""

    status = 400
    code = "link_invalid"
    title = "This link is not valid (replaced by a newer one, or mistyped)"


class LinkExpired(LeakguardError):
    status = 410
    code = "link_expired"
    title = "This link has expired"


class RequestClosed(LeakguardError):
    """The request is no longer in a state that allows the step: a link used already, a
    confirmation after a revert, a link of a cancelled, replaced, superseded or denied
    request, an approval of a denied one."""

    status = 409
    code = "request_closed"
    title = "The email-change request is no longer open for this"


class NoPendingChange(NotFound):
    code = "no_pending_change"
    title = "The account has no pending email change"


class RequestNotFound(NotFound):
    code = "request_not_found"
    title = "No email-change request with this id"


class AssistedRequestOpen(LeakguardError):
    """The account has an open support-assisted request: a second one would silently throw
    away another agent's work (issue 17: at most one open request per account)."""

    status = 409
    code = "assisted_request_open"
    title = "The account has an open support-assisted email-change request"

    def __init__(self, request_id: str, ticket: str, state: str) -> None:
        # The ticket and id go into the problem document too: the filer's client can name
        # the other agent's ticket without parsing the detail.
        super().__init__(
            f"the account has an open support-assisted request {request_id} (ticket "
            f"{ticket}, {state}): cancel it explicitly to file another"
        )
        self.request_id = request_id
        self.ticket = ticket

    def problem_members(self) -> dict[str, Any]:
        return {"request_id": self.request_id, "ticket": self.ticket}
