"""Email addresses: the canonical form, the keyed hash that joins a leak to an account,
and the masked form that logs and pages show.
"""

from service.addresses.canonical import (
    DEFAULT_RULES,
    MAX_INPUT_CHARS,
    CanonicalAddress,
    CanonicalRules,
    InvalidAddress,
    canonical_text,
    canonical_texts,
    canonicalize_email,
    clean_address,
)
from service.addresses.keys import AddressKeys, EmailHasher, PackedKeys, address_keys_from
from service.addresses.masking import mask_addresses, mask_email

__all__ = [
    "DEFAULT_RULES",
    "MAX_INPUT_CHARS",
    "AddressKeys",
    "CanonicalAddress",
    "CanonicalRules",
    "EmailHasher",
    "InvalidAddress",
    "PackedKeys",
    "address_keys_from",
    "canonical_text",
    "canonical_texts",
    "canonicalize_email",
    "clean_address",
    "mask_addresses",
    "mask_email",
]
