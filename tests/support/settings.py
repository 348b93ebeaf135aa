"""The settings every test process and every ``leakguard`` process of a test runs with."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from service.config import Settings

TEST_HASH_KEY = "test-hash-key-0123456789abcdef"
TEST_SECRET_KEY = "test-secret-key-0123456789abcdef"


def make_settings(database_url: str, instance_dir: Path, **changes: Any) -> Settings:
    """Settings on ``database_url`` with the test keys; ``changes`` set any other field."""
    return Settings(
        database_url=database_url,
        instance_dir=instance_dir,
        hash_key=TEST_HASH_KEY,
        secret_key=TEST_SECRET_KEY,
        **changes,
    )
