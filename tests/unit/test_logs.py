"""Every log record leaves with its addresses masked, whoever wrote it."""

from __future__ import annotations

import io
import json
import logging

import pytest

from service.logs import (
    MaskAddresses,
    bind_request_id,
    make_formatter,
    mask_addresses,
    unbind_request_id,
)


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


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_rendered_lines_mask_addresses_in_exceptions_and_non_ascii_domains(
    log_format: str,
) -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(make_formatter(log_format))
    handler.addFilter(MaskAddresses())
    log = logging.getLogger(f"test.logs.rendered.{log_format}")
    log.addHandler(handler)
    log.propagate = False
    try:
        raise ValueError("refused carol@bücher.de and dave@example.com")
    except ValueError:
        log.exception("failed for %s", "erin@bücher.de")
    bind_request_id("edge-7f3a")
    try:
        log.warning("with a request")
    finally:
        unbind_request_id()
    text = stream.getvalue()
    for clear in ("carol@", "dave@", "erin@", "\\u00fc"):
        assert clear not in text
    assert "c***@bücher.de" in text
    assert "edge-7f3a" in text
    if log_format == "json":
        lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
        assert [line["level"] for line in lines] == ["error", "warning"]
        assert "Traceback" in lines[0]["exception"]
        assert lines[1]["request_id"] == "edge-7f3a"


def test_a_request_id_that_is_not_plain_is_replaced() -> None:
    try:
        assert bind_request_id("x\n{injected}") != "x\n{injected}"
        assert len(bind_request_id(None)) == 32
        assert bind_request_id("lb-123.abc") == "lb-123.abc"
    finally:
        unbind_request_id()
