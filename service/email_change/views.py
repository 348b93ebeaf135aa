"""What the API and the CLI show of a request: never an address in clear."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from service.addresses import mask_email
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
    accepted_leaked: bool
    assisted: bool
    ticket: str | None

    @classmethod
    def of(cls, request: EmailChangeRequest) -> ChangeView:
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
            assisted=request.assisted,
            ticket=request.ticket,
        )


@dataclass(frozen=True, slots=True)
class ChangeStep:
    """A step's outcome: the request as it is now, and the notices to send after commit."""

    view: ChangeView
    notice_ids: tuple[int, ...] = ()
