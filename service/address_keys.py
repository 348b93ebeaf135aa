"""The one way an address becomes a key: canonical form, then keyed hash."""

from __future__ import annotations

from dataclasses import dataclass

from service.config import Settings
from service.emails import (
    CanonicalAddress,
    CanonicalRules,
    EmailHasher,
    InvalidAddress,
    canonicalize_email,
)


@dataclass(frozen=True, slots=True)
class AddressKeys:
    """Canonical rules and hash key of one deployment; accounts and leaks share them."""

    hasher: EmailHasher
    rules: CanonicalRules

    def canonical(self, text: str) -> CanonicalAddress | InvalidAddress:
        return canonicalize_email(text, self.rules)

    def key(self, text: str) -> bytes | None:
        """Return the keyed hash of ``text``'s canonical form, or None if it is no address."""
        canonical = canonicalize_email(text, self.rules)
        if isinstance(canonical, InvalidAddress):
            return None
        return self.hasher.hash(canonical.address)


def address_keys_from(settings: Settings) -> AddressKeys:
    rules = CanonicalRules(
        lowercase_local=settings.canon_lowercase_local,
        drop_subaddress=settings.canon_drop_subaddress,
        gmail_dots=settings.canon_gmail_dots,
    )
    return AddressKeys(hasher=EmailHasher(settings.hash_key_bytes()), rules=rules)
