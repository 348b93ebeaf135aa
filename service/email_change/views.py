"""What the API and the CLI show of a request: never an address in clear."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from service.addresses import mask_email
from service.email_change.leaked import address_in_leak
from service.models import ChangeState, EmailChangeRequest


@dataclass(frozen=True, slots=True)
class ChangeView:
    request_id: str
    state: str
    priority: str
    expires_at: datetime | None  # when the confirmation link (or the review) runs out
    new_email: str  # masked
    old_email: str  # masked
    created_at: datetime
    accepted_leaked: bool  # the address was in a leak when asked, and accepted so
    address_leaked: bool  # the address is in a known leak now (``address_in_leak``)
    assisted: bool
    ticket: str | None

    @classmethod
    def of(cls, session: Session, request: EmailChangeRequest) -> ChangeView:
        """The request as every answer shows it; ``address_leaked`` read now, the same way
        for the request, its confirmation, its revert and the pending change."""
        return cls(
            request_id=request.id,
            state=request.state.value,
            priority=request.priority.value,
            expires_at=request.confirm_expires_at
            if request.state is ChangeState.AWAITING_CONFIRMATION
            else None,
            new_email=mask_email(request.new_email),
            old_email=mask_email(request.old_email),
            created_at=request.created_at,
            accepted_leaked=request.accepted_leaked,
            address_leaked=address_in_leak(session, request.new_email_key),
            assisted=request.assisted,
            ticket=request.ticket,
        )


@dataclass(frozen=True, slots=True)
class ChangeStep:
    """A step's outcome: the request as it is now, and the notices to send after commit."""

    view: ChangeView
    notice_ids: tuple[int, ...] = ()
    # A revert of a change that took effect: whether the old address is the account's
    # again (None for other steps, and for a change that had not taken effect).
    address_restored: bool | None = None
    # A revert: the old address stayed away because another account holds it now.
    restore_refused: bool = False
