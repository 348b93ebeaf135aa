"""What the login service needs to render an account's security state.

Read by ``GET /v1/accounts/{external_id}``: its open exposures, whether its mailbox is
undeliverable (since when, and the bounce that said so), whether TOTP is enrolled and how
many recovery codes are left. A handful of indexed reads, one account.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.errors import NotFound
from service.models import (
    Account,
    Exposure,
    ExposureKind,
    ExposureState,
    Leak,
    Notice,
    NoticeState,
    RecoveryCode,
)
from service.stepup.services import totp_enrolled


@dataclass(frozen=True, slots=True)
class OpenExposureView:
    leak: str  # the leak's slug
    kind: ExposureKind
    since: datetime


@dataclass(frozen=True, slots=True)
class Undeliverable:
    """The mailbox refused mail permanently, or a bounce was reported for it."""

    since: datetime
    reply_code: int | None  # the SMTP reply code of the last refusal, if known
    reason: str | None  # the refusal or bounce text, addresses masked


@dataclass(frozen=True, slots=True)
class SecurityState:
    exposures: tuple[OpenExposureView, ...]  # open ones, oldest first
    undeliverable: Undeliverable | None
    totp_enrolled: bool
    recovery_codes_left: int


def security_state(session: Session, external_id: str) -> SecurityState:
    """The account's security state now; raise NotFound."""
    account = session.scalars(
        select(Account).where(Account.external_id == external_id)
    ).one_or_none()
    if account is None:
        raise NotFound("no account with this external_id")
    exposures = tuple(
        OpenExposureView(slug, kind, since)
        for slug, kind, since in session.execute(
            select(Leak.slug, Exposure.kind, Exposure.created_at)
            .join(Leak, Leak.id == Exposure.leak_id)
            .where(Exposure.account_id == account.id, Exposure.state == ExposureState.OPEN)
            .order_by(Exposure.created_at, Exposure.id)
        )
    )
    undeliverable = None
    # The mailbox, not only this account: another account on the same canonical address
    # may have met the bounce (the risk check reads it alike, mailbox_undeliverable).
    since = session.scalar(
        select(func.min(Account.undeliverable_at)).where(Account.email_key == account.email_key)
    )
    if since is not None:
        bounce = session.execute(
            select(Notice.reply_code, Notice.last_error)
            .where(
                Notice.account_id == account.id,
                Notice.state == NoticeState.FAILED,
                Notice.failed_at.is_not(None),
            )
            .order_by(Notice.failed_at.desc())
            .limit(1)
        ).first()
        undeliverable = Undeliverable(
            since,
            bounce.reply_code if bounce is not None else None,
            bounce.last_error if bounce is not None else None,
        )
    totp = session.scalar(select(totp_enrolled(account.id)))
    codes = session.scalar(
        select(func.count()).where(
            RecoveryCode.account_id == account.id, RecoveryCode.used_at.is_(None)
        )
    )
    return SecurityState(exposures, undeliverable, bool(totp), int(codes or 0))
