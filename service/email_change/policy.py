"""How long the email change's links and holds last (issue 14, part 2)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

# The confirmation link to the new address: a day (item 2).
CONFIRM_TTL = timedelta(hours=24)
# The revert link to the old address: a week, also after the change took effect (item 5).
REVERT_TTL = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class ChangePolicy:
    """``cooldown``: after a revert, no new change for this long
    (``LEAKGUARD_EMAIL_CHANGE_COOLDOWN_HOURS``, default 72)."""

    cooldown: timedelta = timedelta(hours=72)
    confirm_ttl: timedelta = CONFIRM_TTL
    revert_ttl: timedelta = REVERT_TTL
