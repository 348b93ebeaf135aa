"""What a running Leakguard process holds: settings, database, address keys.

Built once per process (by the app factory or a CLI command) and handed down; nothing
connects at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from limits import parse

from service.addresses import AddressKeys, address_keys_from
from service.config import Settings
from service.db import Database
from service.private_files import private_dir
from service.stepup.assurance import AssuranceSigner
from service.stepup.services import StepUp, StepUpPolicy
from service.stepup.throttle import ThrottlePolicy


@dataclass(frozen=True, slots=True)
class Runtime:
    settings: Settings
    db: Database
    keys: AddressKeys
    step_up: StepUp


def build_runtime(settings: Settings, *, serving: bool = False) -> Runtime:
    """Build the runtime from ``settings``; ``serving``: for an HTTP server, whose database
    statements are bounded by ``db_request_timeout_seconds`` (jobs and commands are not)."""
    private_dir(settings.instance_dir)
    signer = AssuranceSigner(
        settings.secret_key_text(), timedelta(seconds=settings.assurance_ttl_seconds)
    )
    email_sends = parse(settings.rate_limit_email_code)
    policy = StepUpPolicy(
        code_ttl=timedelta(seconds=settings.email_code_ttl_seconds),
        totp_issuer=settings.totp_issuer,
        throttle=ThrottlePolicy(
            email_sends=email_sends.amount,
            email_send_window=timedelta(seconds=email_sends.get_expiry()),
        ),
    )
    return Runtime(
        settings=settings,
        db=Database(
            settings.resolved_database_url,
            statement_timeout=settings.db_request_timeout_seconds if serving else None,
        ),
        keys=address_keys_from(settings),
        step_up=StepUp(master_key=settings.hash_key_bytes(), signer=signer, policy=policy),
    )


EXTENSION = "leakguard"  # the key of the Runtime in a Flask app's ``extensions``


def runtime_of(app: Any) -> Runtime:
    """The runtime the app factory built for ``app`` (a Flask app; typed loosely so that
    this module stays free of Flask)."""
    value: Runtime = app.extensions[EXTENSION]
    return value
