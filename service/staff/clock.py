"""The staff site's one reading of the time: tests move it (monkeypatch ``now``) to walk
idle, absolute and re-authentication timeouts without sleeping."""

from __future__ import annotations

from datetime import datetime

from service.db import utcnow


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return utcnow()
