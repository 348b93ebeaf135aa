"""What a receiver learns of this transmitter before its first event (SSF 1.0 section 7)."""

from __future__ import annotations

from typing import Any

from service.config import Settings
from service.events.types import EventType

PUSH_METHOD = "urn:ietf:rfc:8935"
POLL_METHOD = "urn:ietf:rfc:8936"
JWKS_PATH = "/.well-known/jwks.json"
CONFIGURATION_PATH = "/.well-known/ssf-configuration"
POLL_PATH = "/v1/events/poll"


def ssf_configuration(settings: Settings) -> dict[str, Any]:
    """Transmitter metadata: ``issuer``, ``jwks_uri``, the delivery methods this deployment
    offers, and (an addition of ours) ``events_supported`` and ``poll_endpoint``."""
    methods = []
    if settings.events_push_url is not None:
        methods.append(PUSH_METHOD)
    if settings.events_poll:
        methods.append(POLL_METHOD)
    document: dict[str, Any] = {
        "spec_version": "1_0",
        "issuer": settings.events_issuer,
        "jwks_uri": settings.events_issuer + JWKS_PATH,
        "delivery_methods_supported": methods,
        "events_supported": [event.value for event in EventType],
        "default_subjects": "ALL",
    }
    if settings.events_poll:
        document["poll_endpoint"] = settings.events_issuer + POLL_PATH
    return document
