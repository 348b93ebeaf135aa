"""Assurance tokens: proof, for a few minutes, that an account passed step-up.

Signed (itsdangerous, HMAC-SHA256 with ``LEAKGUARD_SECRET_KEY``), typed, and bound to the
account (its external id and our row id, so a deleted and re-created account does not
inherit it), to the method that was passed (an emailed code is a weaker factor than TOTP,
and whoever accepts the token may ask which one it was), and to the account's security
epoch when it was issued: a factor added or removed, a lock or an address change raises
the epoch, and every earlier token is void (ASVS 7.4.1). Each token has an id (``jti``)
for the uses that may spend it once. Expiry is checked against the caller's clock.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from itsdangerous import BadSignature, URLSafeSerializer

from service.errors import InvalidRequest

TOKEN_TYPE = "assurance"  # noqa: S105  (a type tag, not a secret)
SALT = "leakguard/assurance/v1"
MAX_TOKEN_CHARS = 1000


class AssuranceTokenInvalid(InvalidRequest):
    code = "assurance_token_invalid"
    title = "The assurance token is not valid for this account"


class AssuranceTokenExpired(InvalidRequest):
    code = "assurance_token_expired"
    title = "The assurance token has expired: step up again"


@dataclass(frozen=True, slots=True)
class Assurance:
    external_id: str
    account_id: int
    method: str
    epoch: int  # the account's security epoch at issue
    token_id: str
    issued_at: datetime
    expires_at: datetime

    def holds_for(self, *, account_id: int, epoch: int) -> bool:
        """Whether the token still speaks for this account as it is now."""
        return self.account_id == account_id and self.epoch == epoch


class AssuranceSigner:
    def __init__(self, secret_key: str, ttl: timedelta) -> None:
        self._serializer = URLSafeSerializer(secret_key, salt=SALT)
        self.ttl = ttl

    def issue(
        self, *, external_id: str, account_id: int, method: str, epoch: int, now: datetime
    ) -> str:
        payload = {
            "typ": TOKEN_TYPE,
            "sub": external_id,
            "aid": account_id,
            "m": method,
            "se": epoch,
            "jti": secrets.token_urlsafe(16),
            "iat": int(now.timestamp()),
            "exp": int((now + self.ttl).timestamp()),
        }
        return str(self._serializer.dumps(payload))

    def expires_at(self, now: datetime) -> datetime:
        return datetime.fromtimestamp(int((now + self.ttl).timestamp()), UTC)

    def verify(self, token: str, *, external_id: str, now: datetime) -> Assurance:
        """Return the token's claims if it is ours, for ``external_id`` and not expired.

        A token for another account answers the same as a forged one.
        """
        if len(token) > MAX_TOKEN_CHARS:
            raise AssuranceTokenInvalid()
        try:
            payload: Any = self._serializer.loads(token)
        except BadSignature:
            raise AssuranceTokenInvalid() from None
        if (
            not isinstance(payload, dict)
            or payload.get("typ") != TOKEN_TYPE
            or payload.get("sub") != external_id
            or not isinstance(payload.get("aid"), int)
            or not isinstance(payload.get("m"), str)
            or not isinstance(payload.get("se"), int)
            or not isinstance(payload.get("jti"), str)
            or not isinstance(payload.get("iat"), int)
            or not isinstance(payload.get("exp"), int)
        ):
            raise AssuranceTokenInvalid()
        if now.timestamp() >= payload["exp"]:
            raise AssuranceTokenExpired()
        return Assurance(
            external_id=external_id,
            account_id=payload["aid"],
            method=payload["m"],
            epoch=payload["se"],
            token_id=payload["jti"],
            issued_at=datetime.fromtimestamp(payload["iat"], UTC),
            expires_at=datetime.fromtimestamp(payload["exp"], UTC),
        )
