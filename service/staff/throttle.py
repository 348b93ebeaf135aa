"""Login attempts to /staff, limited per staff account and per client IP.

Counters live where the API's limits live (Redis at ``LEAKGUARD_REDIS_URL``, else this
process's memory), through the ``limits`` library Flask-Limiter is built on. Only refused
logins are counted, so a colleague's own successful logins never lock them out. When the
store cannot be reached the attempt is refused (fail closed): an attacker must not be able
to switch the limit off by overloading Redis. No Flask.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Final

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import FixedWindowRateLimiter
from redis.exceptions import RedisError

from service.errors import ValidationFailed
from service.staff.users import normalize_staff_email

logger = logging.getLogger(__name__)

NAMESPACE = "leakguard-staff-login"


UNAVAILABLE_RETRY_SECONDS: Final = 60  # the store failed: ask again in a minute


@dataclass(frozen=True, slots=True)
class LoginGate:
    """Whether an attempt may be made; ``unavailable``: the counter store failed;
    ``retry_after``: whole seconds until a closed gate opens (RFC 9110 section 10.2.3)."""

    open: bool
    unavailable: bool = False
    retry_after: int | None = None


class LoginThrottle:
    """Budgets of refused logins per account (the email as the login reads it, hashed) and
    per IP."""

    def __init__(self, storage_uri: str, *, per_account: str, per_ip: str) -> None:
        storage = (
            storage_from_string(storage_uri, socket_timeout=2, socket_connect_timeout=2)
            if storage_uri.startswith("redis")
            else storage_from_string(storage_uri)
        )
        if not isinstance(storage, Storage):
            raise TypeError("an asynchronous limits storage cannot count staff logins")
        self._limiter = FixedWindowRateLimiter(storage)
        self._per_account: RateLimitItem = parse(per_account)
        self._per_ip: RateLimitItem = parse(per_ip)

    def check(self, *, email: str, ip: str) -> LoginGate:
        """Whether both budgets have room for one more attempt."""
        budgets = ((self._per_account, "account", _account_key(email)), (self._per_ip, "ip", ip))
        try:
            spent = [b for b in budgets if not self._limiter.test(b[0], NAMESPACE, *b[1:])]
            if not spent:
                return LoginGate(open=True)
            # The gate opens when every spent budget's window has reset: the latest reset.
            resets = [self._limiter.get_window_stats(b[0], NAMESPACE, *b[1:]) for b in spent]
        except (RedisError, StorageError, OSError) as exc:
            logger.error("staff login limits unavailable, refusing: %s", type(exc).__name__)
            return LoginGate(open=False, unavailable=True, retry_after=UNAVAILABLE_RETRY_SECONDS)
        return LoginGate(
            open=False,
            retry_after=max(1, math.ceil(max(r.reset_time for r in resets) - time.time())),
        )

    def count_refusal(self, *, email: str, ip: str) -> None:
        """Spend one attempt of each budget (a refused login)."""
        try:
            self._limiter.hit(self._per_account, NAMESPACE, "account", _account_key(email))
            self._limiter.hit(self._per_ip, NAMESPACE, "ip", ip)
        except (RedisError, StorageError, OSError) as exc:
            logger.error("staff login limits unavailable: %s", type(exc).__name__)


def _account_key(email: str) -> str:
    """The key of the staff account the typed email names: a digest, so that Redis holds
    no address. The email is read as the login reads it (``normalize_staff_email``): every
    spelling that signs in to one account spends one budget. Keyed on the text as typed,
    ``admin@\uff53taff.example`` (a full-width letter the domain's IDNA mapping folds) had
    budgets of its own, one per spelling: thousands of guesses at one account."""
    try:
        typed = normalize_staff_email(email)
    except ValidationFailed:  # no address: no account, a budget of its own all the same
        typed = email.strip().lower()
    return hashlib.sha256(typed.encode("utf-8", "surrogatepass")).hexdigest()[:32]
