"""Which leaked keys can be an account's: an in-process filter of the account keys.

A leak holds millions of addresses and about one in twenty is an account's. Looking every
key up among the accounts costs the database a join per chunk over all of them; a Bloom
filter of the account keys, built once per ingest run, lets through only the keys that
may be an account's (every one that is, and a few others by chance), so the database
looks up a twentieth of the keys and the leaked passwords of the rest are never kept.

The filter uses Python's own salted hash of the keys: it lives in one process and is
never saved, so nothing outside the process can aim keys at its false positives. A
million accounts take about 1.8 MiB (a set of their 16-byte keys took about 90 MiB).
"""

from __future__ import annotations

from typing import Final

from rbloom import Bloom
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from service.addresses.keys import EMAIL_KEY_BYTES
from service.db import bulk
from service.models import Account

# One stranger's key in a thousand still reaches the database's look-up.
FALSE_POSITIVE_RATE: Final = 0.001
# Room for accounts counted a moment before the keys are read, and a floor for tiny tables.
_HEADROOM: Final = 1.05
_MIN_CAPACITY: Final = 1024


class AccountFilter:
    """The account keys of one moment, for membership tests with no false negatives."""

    __slots__ = ("_bloom", "accounts")

    def __init__(self, bloom: Bloom, accounts: int) -> None:
        self._bloom = bloom
        self.accounts = accounts  # keys added

    def __contains__(self, key: bytes) -> bool:
        return key in self._bloom

    def among(self, keys: list[bytes]) -> list[int]:
        """Return the indexes of the ``keys`` that may be an account's, ascending."""
        bloom = self._bloom
        return [index for index, key in enumerate(keys) if key in bloom]


def account_filter(session: Session) -> AccountFilter:
    """Build the filter of every account key as ``session`` sees them; a few seconds at
    ten million accounts. Accounts that get their address later are not in it
    (``service.leaks.exposures.late_accounts`` finds those)."""
    count = session.scalar(select(func.count()).select_from(Account)) or 0
    bloom = Bloom(max(_MIN_CAPACITY, int(count * _HEADROOM)), FALSE_POSITIVE_RATE)
    added = 0
    for key in bulk.account_keys(session, EMAIL_KEY_BYTES):
        bloom.add(key)
        added += 1
    return AccountFilter(bloom, added)
