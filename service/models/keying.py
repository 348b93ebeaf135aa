"""What the database was keyed with: a keyed fingerprint of the address hash key."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from service.db import Base, utcnow


class KeyFingerprint(Base):
    """One row per key that stored data depends on (``hash_key``): an HMAC of a fixed label
    under the key, never the key. A process with another key would match nothing stored."""

    __tablename__ = "key_fingerprint"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    fingerprint: Mapped[bytes] = mapped_column(LargeBinary(32))
    recorded_at: Mapped[datetime] = mapped_column(default=utcnow)
