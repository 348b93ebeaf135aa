"""API clients of /v1: bearer keys with scopes.

Keys are 256-bit random secrets, so a plain SHA-256 of the key is enough to store them
(nothing to brute-force) and keeps authentication to one fast indexed read: a password
hash such as argon2 would cost ~90 ms on every sign-in the login service checks.

Each web process remembers the keys it authenticated for ``AUTH_CACHE_TTL`` (a
``PrincipalCache``), so that the risk check, asked on every sign-in, does not pay that read
(a pool checkout, a ping, the query, a rollback) on every request. The price: a key revoked
in another process (``leakguard api-clients revoke``, another gunicorn worker) keeps working
for at most ``AUTH_CACHE_TTL`` in this one. A revocation in this process empties its caches
at once (only a request racing the revoking transaction can still keep the key, again for at
most ``AUTH_CACHE_TTL``). Unknown and revoked keys are never remembered, so a key works as
soon as it is created and a refused one is read again on every request.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from service.audit import record_event
from service.db import Database
from service.errors import AlreadyExists, NotFound, ValidationFailed
from service.models import ApiClient

KEY_PREFIX = "lgk_"
KEY_RANDOM_BYTES = 32
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# How long another process may still accept a revoked key (see the module docstring).
AUTH_CACHE_TTL = timedelta(seconds=5)
AUTH_CACHE_MAX_KEYS = 1000  # a deployment has a handful of clients; past this, start over

# Bumped by every revocation in this process: each PrincipalCache then forgets everything.
_revocations = itertools.count(1)
_revocation_seen = 0


class Scope(StrEnum):
    ACCOUNTS_READ = "accounts:read"
    ACCOUNTS_WRITE = "accounts:write"
    RISK_CHECK = "risk:check"
    STEP_UP_VERIFY = "step_up:verify"  # emailed-code challenges and verification
    STEP_UP_ENROLL = "step_up:enroll"  # TOTP enrolment, recovery codes
    NOTICES_BOUNCES = "notices:bounces"
    EVENTS_READ = "events:read"  # poll the security events (RFC 8936)
    METRICS_READ = "metrics:read"  # GET /metrics (Prometheus)
    EMAIL_CHANGE_WRITE = "email_change:write"  # the login service's email-change flow
    EMAIL_CHANGE_ASSIST = "email_change:assist"  # support files a change for review


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
    _forget_principals()
    record_event(session, actor=actor, action="api_client.revoked", target=name, now=now)
    return True


def authenticate(session: Session, key: str) -> Principal | None:
    """Return the caller holding ``key``, or None for an unknown or revoked key."""
    return _authenticate_digest(session, hash_api_key(key))


def _authenticate_digest(session: Session, digest: bytes) -> Principal | None:
    row = session.execute(
        select(ApiClient.id, ApiClient.name, ApiClient.scopes).where(
            ApiClient.key_hash == digest, ApiClient.revoked_at.is_(None)
        )
    ).first()
    if row is None:
        return None
    return Principal(client_id=row.id, name=row.name, scopes=frozenset(row.scopes.split()))


def _forget_principals() -> None:
    global _revocation_seen  # one process-wide generation, read without a lock
    _revocation_seen = next(_revocations)


class PrincipalCache:
    """The principals of keys authenticated in the last ``ttl``, for one app.

    Thread-safe. Remembers only keys that were valid when read, by their SHA-256; forgets
    all of them when this process revokes any key, and each one ``ttl`` after its read.
    """

    def __init__(
        self,
        *,
        ttl: timedelta = AUTH_CACHE_TTL,
        max_keys: int = AUTH_CACHE_MAX_KEYS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl.total_seconds()
        self._max_keys = max_keys
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[bytes, tuple[float, Principal]] = {}
        self._generation = _revocation_seen

    def authenticate(self, db: Database, key: str) -> Principal | None:
        """Return the caller holding ``key``, or None; read the database only on a miss."""
        digest = hash_api_key(key)
        generation = _revocation_seen  # before the read: a revocation during it wins
        now = self._clock()
        with self._lock:
            if self._generation != generation:
                self._entries.clear()
                self._generation = generation
            entry = self._entries.get(digest)
            if entry is not None and entry[0] > now:
                return entry[1]
        with db.read_session() as session:
            principal = _authenticate_digest(session, digest)
        if principal is None:
            return None
        with self._lock:
            if self._generation == generation == _revocation_seen:
                if len(self._entries) >= self._max_keys:
                    self._entries.clear()
                self._entries[digest] = (now + self._ttl, principal)
        return principal
