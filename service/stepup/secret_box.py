"""Keys derived from ``LEAKGUARD_HASH_KEY``, and encryption of secrets kept at rest.

A TOTP secret must be readable by us (to compute the expected code) but a database dump
alone must not yield it, so it is stored encrypted with AES-256-GCM under a key that lives
only in the environment. Each purpose gets its own key, derived with HKDF from the one
deployment secret that already must never change (it keys the watch list): one secret to
keep, no key reused across purposes. The account id is authenticated with the ciphertext,
so a row copied onto another account does not decrypt.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

# cryptography is imported when a secret is first sealed or opened, not with this module:
# every process builds the step-up services (service.runtime), and its bindings are about
# 8 MiB of resident memory that a leak ingest or an accounts import never uses.

NONCE_BYTES = 12
VERSION = b"\x01"  # the first byte of every ciphertext: room for a later key rotation


class SecretUnreadable(Exception):
    """A stored secret does not decrypt: another key, or another row's ciphertext."""


def derive_key(master: bytes, purpose: str) -> bytes:
    """A 256-bit key for one ``purpose``, independent of every other purpose's key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"leakguard/" + purpose.encode()
    ).derive(master)


class SecretBox:
    """Encrypt small secrets bound to a context (such as the account they belong to)."""

    def __init__(self, master: bytes, purpose: str) -> None:
        self._master, self._purpose = master, purpose
        self._aead: AESGCM | None = None  # on first use: two threads may both build it

    def _cipher(self) -> AESGCM:
        if self._aead is None:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            self._aead = AESGCM(derive_key(self._master, self._purpose))
        return self._aead

    def seal(self, plaintext: bytes, context: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._cipher().encrypt(nonce, plaintext, context)

    def open(self, sealed: bytes, context: bytes) -> bytes:
        from cryptography.exceptions import InvalidTag

        if sealed[:1] != VERSION:
            raise SecretUnreadable("unknown secret format")
        nonce = sealed[1 : 1 + NONCE_BYTES]
        try:
            return self._cipher().decrypt(nonce, sealed[1 + NONCE_BYTES :], context)
        except InvalidTag:
            raise SecretUnreadable("the secret does not decrypt with this key") from None


def keyed_digest(key: bytes, *parts: bytes) -> bytes:
    """HMAC-SHA256 over ``parts``, each length-prefixed so that no two inputs collide."""
    mac = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        mac.update(len(part).to_bytes(4, "big"))
        mac.update(part)
    return mac.digest()
