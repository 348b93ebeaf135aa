"""The single-use tokens of the confirmation and revert links.

A token is never stored and never handed to a job: it is an HMAC-SHA256, under a key
derived from ``LEAKGUARD_HASH_KEY``, of the request id, the link's purpose and the
request's link generation, so the delivering worker derives it again from the notice's
request. The database keeps only its SHA-256 (``confirm_token_hash``/``revert_token_hash``),
to find the request by an incoming token with one indexed read. The hash stays with the
request whatever becomes of it, and the request's state says what the link may still do (a
used link, or one of a closed request: 409 ``request_closed``); a resend raises the
generation, so a replaced confirmation link finds nothing (400 ``link_invalid``).
256 bits, base64url (RFC 4648 section 5): 43 characters.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from enum import StrEnum

MAX_TOKEN_CHARS = 100


class LinkPurpose(StrEnum):
    CONFIRM = "confirm"
    REVERT = "revert"


class LinkTokens:
    def __init__(self, master_key: bytes) -> None:
        # A key of its own, so that no other keyed hash of the service can be replayed here.
        self._key = hmac.new(master_key, b"leakguard/email-change-link/v1", "sha256").digest()

    def token(self, request_id: str, purpose: LinkPurpose, generation: int) -> str:
        message = f"{purpose.value}\0{request_id}\0{generation}".encode()
        digest = hmac.new(self._key, message, "sha256").digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def token_digest(token: str) -> bytes | None:
    """The stored form of ``token`` (SHA-256, 32 bytes); None for what cannot be one."""
    if not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        return None
    return hashlib.sha256(token.encode("ascii")).digest()


def link_url(public_url: str, purpose: LinkPurpose, token: str) -> str:
    """The page a link opens: ``{LEAKGUARD_PUBLIC_URL}/email-change/confirm?token=...``."""
    return f"{public_url.rstrip('/')}/email-change/{purpose.value}?token={token}"
