"""Every log record leaves with its addresses masked, whoever wrote it."""

from __future__ import annotations

import io
import json
import logging
from datetime import timedelta

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


def test_a_link_token_never_reaches_a_log(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.link-token")
    logger.addFilter(MaskAddresses())
    with caplog.at_level(logging.INFO):
        logger.info(
            '127.0.0.1 "GET /email-change/confirm?token=%s&x=1 HTTP/1.1" 200',
            "Zq3-_abcDEF0123456789abcdefABCDEF0123456789",
        )
        logger.info("%(q)s", {"q": "token=Zq3-_abcDEF0123456789"})
    assert "Zq3-_abc" not in caplog.text
    assert "/email-change/confirm?token=***&x=1" in caplog.text


# --- the access line is printable and unambiguous (new-user trial) --------------------------


class _Response:
    status = "404 NOT FOUND"
    sent = 156
    headers = (("X-Request-ID", "r-1"),)


def _access_line(raw_path: bytes, log_format: str, user_agent: bytes = b"curl/8") -> str:
    """The access line gunicorn writes for a GET of ``raw_path`` (its bytes, as sent)."""
    from gunicorn.config import Config

    from service.logs import GunicornLogger

    config = Config()
    config.set("accesslog", "-")
    logger = GunicornLogger(config)
    stream = io.StringIO()
    # gunicorn's loggers are global: an earlier test's handlers are still there.
    *earlier, handler = logger.access_log.handlers
    for old in earlier:
        logger.access_log.removeHandler(old)
    handler.setStream(stream)  # type: ignore[attr-defined]
    environ = {
        "REQUEST_METHOD": "GET",
        "RAW_URI": raw_path.decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        # PEP 3333: the raw bytes as latin-1 text, as gunicorn hands them to the app
        "PATH_INFO": raw_path.decode("latin-1"),
        "QUERY_STRING": "",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_USER_AGENT": user_agent.decode("latin-1"),
    }
    logger.access(_Response(), [], environ, timedelta(milliseconds=3))
    return stream.getvalue()


@pytest.mark.parametrize("log_format", ["json", "console"])
@pytest.mark.parametrize(
    ("raw_path", "shown"),
    [
        (b"/v1/accounts/a\x00b", r"/v1/accounts/a\x00b"),
        (b"/v1/accounts/\xe2\x80\xaeevil", r"/v1/accounts/\u202eevil"),
        (b"/v1/accounts/bad\xffbyte", r"/v1/accounts/bad\xffbyte"),
        (b"/v1/accounts/a\\x00b", r"/v1/accounts/a\\x00b"),
        (b"/v1/accounts/j\xc3\xbcrgen@b\xc3\xbccher.de", "/v1/accounts/j***@bücher.de"),
        (b'/v1/accounts/"jane doe"@example.org', "/v1/accounts/j***@example.org"),
        (b"/v1/accounts/a\x1b[31mred\r\nforged", r"/v1/accounts/a\x1b[31mred\x0d\x0aforged"),
    ],
)
def test_the_access_line_shows_the_path_decoded_and_escaped(
    monkeypatch: pytest.MonkeyPatch, log_format: str, raw_path: bytes, shown: str
) -> None:
    monkeypatch.setenv("LEAKGUARD_LOG_FORMAT", log_format)
    line = _access_line(raw_path, log_format, user_agent=b"ua \xe2\x80\xae\x00")
    assert line.count("\n") == 1
    assert line.endswith("\n")
    assert line[:-1].isprintable(), repr(line)
    assert "Ã" not in line  # no latin-1 mojibake
    path = json.loads(line)["path"] if log_format == "json" else line
    assert shown in path, line
    for clear in ("jane", "rgen@"):
        assert clear not in line


def test_escape_unshown_keeps_newlines_and_is_valid_inside_json() -> None:
    from service.logs import escape_unshown

    text = "a\u202eb\x7fc\u200bd\U0001f600e\U000e0001f\ng"
    escaped = escape_unshown(json.dumps(text, ensure_ascii=False))
    assert escaped.isprintable()
    assert "\U0001f600" in escaped  # printable: shown as it is
    assert json.loads(escaped) == text
    assert escape_unshown("line one\n\tline two\r") == "line one\n\tline two\\u000d"


@pytest.mark.parametrize(
    "path",
    [
        "/staff/enrol/{token}",
        "//staff//enrol/{token}",
        "/staff/enrol/{token}?x=1",
        "%2Fstaff%2Fenrol%2F{token}",
    ],
)
@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_staff_enrolment_links_token_never_reaches_the_access_log(
    path: str, log_format: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one-time link of a new staff user holds its token in the path, which the access
    line shows: whoever read the log could enrol as them (as the new admin) first."""
    monkeypatch.setenv("LEAKGUARD_LOG_FORMAT", log_format)
    token = "iOruwR5IbdEetLIJww1PU4RjKLoNoaTgoDY1o0eGtOY"
    line = _access_line(path.format(token=token).encode(), log_format)
    assert "enrol" in line
    assert token not in line
    assert token[:8] not in line
    assert "enrol/***" in line or "enrol%2F***" in line


def test_the_enrolment_token_mask_leaves_other_staff_paths_alone() -> None:
    from service.logs import mask_secrets

    assert mask_secrets("GET /staff/leaks/enrol-2019 200") == "GET /staff/leaks/enrol-2019 200"
    assert mask_secrets("GET /staff/enrol/abc_-9 404") == "GET /staff/enrol/*** 404"
