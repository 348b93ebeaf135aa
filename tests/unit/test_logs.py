"""Every log record leaves with its addresses masked, whoever wrote it."""

from __future__ import annotations

import logging

import pytest

from service.logs import MaskAddresses, mask_addresses


def test_addresses_in_text_are_masked_and_the_rest_kept() -> None:
    text = "GET /v1/accounts/John.Smith@gmail.com 200; cc bob+x@bücher.de."
    masked = mask_addresses(text)
    assert "John.Smith@" not in masked
    assert "bob+x@" not in masked
    assert masked.startswith("GET /v1/accounts/J***@gmail.com 200")


def test_the_filter_masks_arguments_and_exception_text(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.logs")
    handler = caplog.handler
    handler.addFilter(MaskAddresses())
    try:
        with caplog.at_level(logging.INFO, logger="test.logs"):
            log.info("sent to %s", "alice@example.org")
            try:
                raise ValueError("refused carol@example.net")
            except ValueError:
                log.exception("delivery to %s failed", "dave@example.com")
    finally:
        handler.removeFilter(handler.filters[-1])
    text = caplog.text
    for address in ("alice@example.org", "carol@example.net", "dave@example.com"):
        assert address not in text
    assert "a***@example.org" in text
    assert "c***@example.net" in text


def test_a_link_token_never_reaches_a_log(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.link-token")
    logger.addFilter(MaskAddresses())
    with caplog.at_level(logging.INFO):
        logger.info(
            '127.0.0.1 "GET /email-change/confirm?token=%s&x=1 HTTP/1.1" 200',
            "Zq3-_abcDEF0123456789abcdefABCDEF0123456789",
        )
    assert "Zq3-_abc" not in caplog.text
    assert "/email-change/confirm?token=***&x=1" in caplog.text
