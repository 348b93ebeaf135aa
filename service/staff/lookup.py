"""Finding an account from the staff site, and the minimal account page's facts.

Look-ups are by external id or by exact address: the address is canonicalized and hashed
with the deployment's key (``AddressKeys.key``), the one way an address is ever matched
here, so no column is searched in clear. Pages show masked addresses; ``reveal_address``
is the one function that returns one in clear (its view audits the reveal). No Flask.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from service.addresses import AddressKeys, mask_email
from service.errors import NotFound
from service.models import Account, Exposure, ExposureKind, ExposureState, Leak
from service.stepup import throttle
from service.stepup.services import StepUp, totp_enrolled

MAX_HITS = 50  # two accounts may share an address; a page of them is plenty


class LookupBy(StrEnum):
    EXTERNAL_ID = "external_id"
    ADDRESS = "address"


@dataclass(frozen=True, slots=True)
class AccountHit:
    id: int
    external_id: str
    masked_email: str


@dataclass(frozen=True, slots=True)
class LookupResult:
    by: LookupBy
    hits: tuple[AccountHit, ...]


@dataclass(frozen=True, slots=True)
class ExposureLine:
    leak: str  # slug
    kind: ExposureKind
    state: ExposureState
    since: datetime
    ended_at: datetime | None
    resolution: str | None


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """What the minimal account page shows; the address only masked."""

    id: int
    external_id: str
    masked_email: str
    created_at: datetime
    undeliverable_at: datetime | None
    totp_enrolled: bool
    locked: dict[str, datetime]  # step-up method -> locked until
    blocked: bool  # every step-up method blocked until support clears it
    exposures: tuple[ExposureLine, ...]  # newest first

    @property
    def open_exposures(self) -> int:
        return sum(1 for line in self.exposures if line.state is ExposureState.OPEN)


def find_accounts(session: Session, keys: AddressKeys, query: str) -> LookupResult:
    """Accounts whose external id is ``query``, or, when it is an address in any spelling
    the canonical form reads, whose address is that canonical address (by its keyed hash).

    The canonical form decides what an address is, not an ``@`` in the text: a
    ``mailto:jane%40example.org`` link copied from a ticket has none, was looked up as an
    external id only (no hit), and, read as one, was shown back in the box. Text with an
    ``@`` that is no address is still never shown back (``LookupBy.ADDRESS``)."""
    text = query.strip()
    conditions = [Account.external_id == text]
    by = LookupBy.ADDRESS if "@" in text else LookupBy.EXTERNAL_ID
    key = keys.key(text)
    if key is not None:
        by = LookupBy.ADDRESS
        conditions.append(Account.email_key == key)
    rows = session.execute(
        select(Account.id, Account.external_id, Account.email)
        .where(or_(*conditions))
        .order_by(Account.external_id)
        .limit(MAX_HITS)
    )
    hits = tuple(AccountHit(row.id, row.external_id, mask_email(row.email)) for row in rows)
    if len(hits) == 1 and hits[0].external_id == text:
        by = LookupBy.EXTERNAL_ID
    return LookupResult(by, hits)


def shown_hits(session: Session, by: LookupBy, account_ids: list[int]) -> LookupResult:
    """A look-up's result shown again from its account ids (the page a look-up redirects
    to reads it: no address in the URL, nothing written), in ``find_accounts``' order;
    accounts gone since are left out."""
    rows = session.execute(
        select(Account.id, Account.external_id, Account.email)
        .where(Account.id.in_(account_ids[:MAX_HITS]))
        .order_by(Account.external_id)
    )
    return LookupResult(
        by, tuple(AccountHit(row.id, row.external_id, mask_email(row.email)) for row in rows)
    )


def account_summary(
    session: Session, step_up: StepUp, account_id: int, *, now: datetime
) -> AccountSummary:
    """The account's facts for the staff page; raise NotFound."""
    account = session.get(Account, account_id)
    if account is None:
        raise NotFound("no such account")
    enrolled = bool(session.scalar(select(totp_enrolled(account.id))))
    locks = throttle.state(
        session, step_up.subject(account.external_id), now=now, since=account.created_at
    )
    exposures = tuple(
        ExposureLine(
            leak=slug,
            kind=exposure.kind,
            state=exposure.state,
            since=exposure.created_at,
            ended_at=exposure.resolved_at,
            resolution=exposure.resolution,
        )
        for exposure, slug in session.execute(
            select(Exposure, Leak.slug)
            .join(Leak, Leak.id == Exposure.leak_id)
            .where(Exposure.account_id == account.id)
            .order_by(Exposure.created_at.desc(), Exposure.id.desc())
        )
    )
    return AccountSummary(
        id=account.id,
        external_id=account.external_id,
        masked_email=mask_email(account.email),
        created_at=account.created_at,
        undeliverable_at=account.undeliverable_at,
        totp_enrolled=enrolled,
        locked=dict(locks.locked),
        blocked=locks.blocked,
        exposures=exposures,
    )


def reveal_address(session: Session, account_id: int) -> str:
    """The account's address in clear; raise NotFound. The caller audits the reveal."""
    email = session.scalar(select(Account.email).where(Account.id == account_id))
    if email is None:
        raise NotFound("no such account")
    return email
