"""Column types that mask every address on write: free text and the audit trail's detail.

The invariant (DESIGN.md) is that no leaked address is stored in the clear outside the
accounts it belongs to. Free text comes from many faces (a support reason typed into the
CLI or a staff form, a user agent in a risk check, a bounce's reason), and each face masking
its own inputs missed some; the column type is the one place every write passes, ORM or Core
(``insert(AuditEvent)``), on both backends. A comparison with such a column masks its bound
value too, so a lookup by the text as typed still finds the row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, String
from sqlalchemy.types import TypeDecorator

from service.addresses.masking import mask_addresses


class MaskedText(TypeDecorator[str]):
    """A ``String(length)`` whose every address is masked (``j***@example.org``) on write.

    Masking may lengthen the text by a few characters an address ("a@b.example" ->
    "***@b.example"); the result is cut to ``length``, after masking, so nothing is unmasked.
    """

    impl = String
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Any) -> str | None:
        if value is None:
            return None
        masked = mask_addresses(value)
        impl = self.impl_instance
        length = impl.length if isinstance(impl, String) else None
        return masked[:length] if length else masked


class MaskedJSON(TypeDecorator[Any]):
    """JSON whose every string, keys included and however deeply nested, has its addresses
    masked on write."""

    impl = JSON
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> Any:
        return masked_json(value)


def masked_json(value: Any) -> Any:
    """``value`` (dicts, lists, strings, numbers) with every string's addresses masked."""
    if isinstance(value, str):
        return mask_addresses(value)
    if isinstance(value, dict):
        return {masked_json(key): masked_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [masked_json(item) for item in value]
    return value
