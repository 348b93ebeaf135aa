"""What a running Leakguard process holds: settings, database, address keys.

Built once per process (by the app factory or a CLI command) and handed down; nothing
connects at import time.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.address_keys import AddressKeys, address_keys_from
from service.config import Settings
from service.db import Database


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    db: Database
    keys: AddressKeys


def build_runtime(settings: Settings) -> Runtime:
    settings.instance_dir.mkdir(parents=True, exist_ok=True)
    return Runtime(
        settings=settings,
        db=Database(settings.resolved_database_url),
        keys=address_keys_from(settings),
    )
