"""Addresses in log text are masked however a URL spells them (security review, item 4)."""

from __future__ import annotations

import pytest

from service.addresses import mask_addresses


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "GET /v1/accounts/alice@example.org HTTP/1.1",
            "GET /v1/accounts/a***@example.org HTTP/1.1",
        ),
        (
            "GET /v1/accounts/bob%40example.org HTTP/1.1",
            "GET /v1/accounts/b***@example.org HTTP/1.1",
        ),
        ("nothing to mask here: 100%40 done", "nothing to mask here: 100%40 done"),
    ],
)
def test_mask_addresses_covers_percent_encoded_at_signs(text: str, masked: str) -> None:
    assert mask_addresses(text) == masked


def test_an_address_in_a_query_string_is_masked() -> None:
    # "?" and "=" are legal in a local part (RFC 5322 atext): the mask may take more.
    masked = mask_addresses("GET /v1/x?who=carol%40Example.NET&y=1")
    assert "carol" not in masked
    assert masked.endswith("***@Example.NET&y=1")


def test_masking_is_idempotent() -> None:
    once = mask_addresses("to dave%40example.com and erin@example.com")
    assert mask_addresses(once) == once
