"""The one way an address becomes a key: canonical form, then keyed hash."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Final, overload

from service.addresses.canonical import (
    CanonicalAddress,
    CanonicalRules,
    InvalidAddress,
    canonicalize_email,
)
from service.config import Settings

_HASH_PERSON: Final = b"leakguard-email"
# The stored key's size (account.email_key, leak_entry.email_key): 128 bits.
EMAIL_KEY_BYTES: Final = 16
_KEY_MIN_BYTES: Final = 16
_KEY_MAX_BYTES: Final = 64


class EmailHasher:
    """Hash canonical addresses with a secret key, so stored keys reveal no addresses.

    Equal canonical strings give equal 16-byte digests under one key; without the key the
    digests cannot be recomputed from a list of guessed addresses.
    """

    __slots__ = ("_keyed",)

    def __init__(self, key: bytes) -> None:
        """Keep ``key``; 16..64 bytes are used as is, longer keys are first reduced.

        Raises TypeError for a non-bytes key and ValueError for one shorter than 16 bytes.
        """
        if not isinstance(key, bytes):
            raise TypeError("key must be bytes")
        if len(key) < _KEY_MIN_BYTES:
            raise ValueError(f"key must be at least {_KEY_MIN_BYTES} bytes")
        if len(key) > _KEY_MAX_BYTES:
            # BLAKE2b takes at most 64 key bytes; hashing keeps all the entropy of longer keys.
            key = hashlib.blake2b(key, digest_size=_KEY_MAX_BYTES).digest()
        # Keying BLAKE2b compresses a whole block of key; copying a keyed state does not.
        self._keyed = hashlib.blake2b(key=key, digest_size=EMAIL_KEY_BYTES, person=_HASH_PERSON)

    def __repr__(self) -> str:
        return "EmailHasher(key=<redacted>)"

    def hash(self, canonical: str) -> bytes:
        """Return the 16-byte keyed BLAKE2b digest of ``canonical`` encoded as UTF-8.

        Raises UnicodeEncodeError for lone surrogates, which no canonical address contains.
        """
        state = self._keyed.copy()
        state.update(canonical.encode("utf-8"))
        return state.digest()

    def hash_all(self, canonicals: Iterable[str]) -> list[bytes]:
        """Return ``[self.hash(canonical) for canonical in canonicals]``, in one loop."""
        copy = self._keyed.copy
        digests: list[bytes] = []
        add = digests.append
        for canonical in canonicals:
            state = copy()
            state.update(canonical.encode("utf-8"))
            add(state.digest())
        return digests


class PackedKeys(Sequence[bytes]):
    """Keys of one size back to back in one buffer, in the order they were added.

    16 bytes a key where a list of ``bytes`` costs about 64 (the object and its pointer):
    an ingest keeps up to two chunks of keys alive at once (one read, one being committed),
    13 MiB as lists at 100,000 records a chunk; the COPY that stages them reads the buffer
    itself (``packed``). Reading a key gives a new ``bytes``. Raises ValueError when added
    keys are not ``size`` bytes each.
    """

    __slots__ = ("_data", "size")

    def __init__(self, keys: Iterable[bytes] = (), *, size: int = EMAIL_KEY_BYTES) -> None:
        self.size = size
        self._data = bytearray()
        self.extend(keys)

    def extend(self, keys: Iterable[bytes]) -> None:
        keys = keys if isinstance(keys, list) else list(keys)
        if keys and set(map(len, keys)) != {self.size}:
            raise ValueError(f"a key is not {self.size} bytes")
        self._data += b"".join(keys)

    def __len__(self) -> int:
        return len(self._data) // self.size

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[position] for position in range(*index.indices(len(self)))]
        count = len(self)
        if index < 0:
            index += count
        if not 0 <= index < count:
            raise IndexError("key index out of range")
        start = index * self.size
        return bytes(self._data[start : start + self.size])

    def packed(self) -> memoryview:
        """The keys back to back, read-only, without a copy: the buffer cannot grow while
        the view is held (``extend`` raises BufferError), so release it before adding."""
        return memoryview(self._data).toreadonly()

    def __iter__(self) -> Iterator[bytes]:
        data, size = bytes(self._data), self.size
        return (data[start : start + size] for start in range(0, len(data), size))


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
