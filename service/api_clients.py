"""API clients of /v1: bearer keys with scopes.

Keys are 256-bit random secrets, so a plain SHA-256 of the key is enough to store them
(nothing to brute-force) and keeps authentication to one fast indexed read: a password
hash such as argon2 would cost ~90 ms on every sign-in the login service checks.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import record_event
from service.errors import AlreadyExists, NotFound, ValidationFailed
from service.models import ApiClient

KEY_PREFIX = "lgk_"
KEY_RANDOM_BYTES = 32
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


class Scope(StrEnum):
    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_WRITE = "accounts:write"
    RISK_CHECK = "risk:check"
    STEP_UP_VERIFY = "step_up:verify"  # emailed-code challenges and verification
    STEP_UP_ENROLL = "step_up:enroll"  # TOTP enrolment, recovery codes
    NOTICES_BOUNCES = "notices:bounces"


@dataclass(frozen=True, slots=True)
class NewApiClient:
    name: str
    key: str  # shown once, never stored
    scopes: tuple[Scope, ...]


@dataclass(frozen=True, slots=True)
class ApiClientView:
    name: str
    scopes: tuple[str, ...]
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller of a request."""

    client_id: int
    name: str
    scopes: frozenset[str]

    def may(self, scope: Scope) -> bool:
        return scope.value in self.scopes


def hash_api_key(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def parse_scopes(values: Iterable[str]) -> tuple[Scope, ...]:
    """Return the scopes named in ``values`` (comma or space separated); raise on unknown."""
    names = [part for value in values for part in re.split(r"[,\s]+", value) if part]
    known = {scope.value: scope for scope in Scope}
    unknown = sorted(set(names) - known.keys())
    if unknown:
        raise ValidationFailed(
            f"unknown scope {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    if not names:
        raise ValidationFailed("at least one scope is required")
    return tuple(dict.fromkeys(known[name] for name in names))


def create_api_client(
    session: Session, *, name: str, scopes: tuple[Scope, ...], actor: str, now: datetime
) -> NewApiClient:
    """Create a client and return its key, the only time the key exists in the clear.

    Raises ValidationFailed for a bad name, AlreadyExists for a taken one. Does not commit.
    """
    if not NAME_PATTERN.fullmatch(name):
        raise ValidationFailed("name must be 1-100 letters, digits, '.', '_' or '-'")
    if session.scalar(select(ApiClient.id).where(ApiClient.name == name)) is not None:
        raise AlreadyExists(f"an API client named {name!r} exists already")
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_RANDOM_BYTES)
    session.add(
        ApiClient(
            name=name,
            key_hash=hash_api_key(key),
            scopes=" ".join(scope.value for scope in scopes),
            created_at=now,
        )
    )
    record_event(
        session,
        actor=actor,
        action="api_client.created",
        target=name,
        detail={"scopes": [scope.value for scope in scopes]},
        now=now,
    )
    return NewApiClient(name=name, key=key, scopes=scopes)


def list_api_clients(session: Session) -> list[ApiClientView]:
    clients = session.scalars(select(ApiClient).order_by(ApiClient.name))
    return [
        ApiClientView(
            name=client.name,
            scopes=tuple(client.scopes.split()),
            created_at=client.created_at,
            revoked_at=client.revoked_at,
        )
        for client in clients
    ]


def revoke_api_client(session: Session, *, name: str, actor: str, now: datetime) -> bool:
    """Revoke the client's key; return False if it was revoked already. Raises NotFound."""
    client = session.scalars(select(ApiClient).where(ApiClient.name == name)).one_or_none()
    if client is None:
        raise NotFound(f"no API client named {name!r}")
    if client.revoked_at is not None:
        return False
    client.revoked_at = now
    record_event(session, actor=actor, action="api_client.revoked", target=name, now=now)
    return True


def authenticate(session: Session, key: str) -> Principal | None:
    """Return the caller holding ``key``, or None for an unknown or revoked key."""
    row = session.execute(
        select(ApiClient.id, ApiClient.name, ApiClient.scopes).where(
            ApiClient.key_hash == hash_api_key(key), ApiClient.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    return Principal(client_id=row.id, name=row.name, scopes=frozenset(row.scopes.split()))
