"""The request head's limits in the app itself (``service.ops.head``), as any WSGI server
serves it: a head past them is the app's own refusal, problem+json under /v1 and the staff
site's page under /staff. (Under gunicorn: tests/integration/test_gunicorn_deploy.py.)"""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from service.ops.head import MAX_HEADER_LINE_BYTES, MAX_HEADERS, MAX_REQUEST_LINE_BYTES, RequestHead
from tests.support.http import assert_problem


def _target(prefix: str, line_bytes: int) -> str:
    """A target making ``GET <target> HTTP/1.1`` exactly ``line_bytes`` long."""
    return prefix + "x" * (line_bytes - len(f"GET {prefix} HTTP/1.1"))


def test_the_limits_are_counted_as_sent() -> None:
    at = RequestHead.of("GET", _target("/v1/", MAX_REQUEST_LINE_BYTES), "HTTP/1.1", [])
    assert (at.line_bytes, at.refusal()) == (MAX_REQUEST_LINE_BYTES, None)
    over = RequestHead.of("GET", _target("/v1/", MAX_REQUEST_LINE_BYTES + 1), "HTTP/1.1", [])
    assert over.refusal() == (
        414,
        "the request line is 8,001 bytes, over the 8,000 this service reads: shorten the URL",
    )
    # "Name: value": the name, a colon and a space, the value.
    field = [("X-A", "a" * (MAX_HEADER_LINE_BYTES - 5))]
    assert RequestHead.of("GET", "/", "HTTP/1.1", field).refusal() is None
    longer = [("X-A", "a" * (MAX_HEADER_LINE_BYTES - 4))]
    assert RequestHead.of("GET", "/", "HTTP/1.1", longer).refusal() == (
        431,
        "a header line is 8,191 bytes, over the 8,190 this service reads",
    )
    fields = [("X-A", "1")] * MAX_HEADERS
    assert RequestHead.of("GET", "/", "HTTP/1.1", fields).refusal() is None
    assert RequestHead.of("GET", "/", "HTTP/1.1", [*fields, ("X-B", "1")]).refusal() == (
        431,
        "the request has 101 headers, over the 100 this service reads",
    )


@pytest.mark.parametrize(
    ("target", "headers", "status"),
    [
        (_target("/v1/accounts/", MAX_REQUEST_LINE_BYTES + 1), {}, 414),
        ("/v1/accounts/u-1", {"X-Long": "a" * MAX_HEADER_LINE_BYTES}, 431),
        ("/v1/accounts/u-1", {f"X-Extra-{n}": "1" for n in range(MAX_HEADERS)}, 431),
        ("/healthz", {"X-Long": "a" * MAX_HEADER_LINE_BYTES}, 431),
    ],
    ids=["line", "header-line", "headers", "healthz"],
)
def test_a_head_past_the_limits_is_problem_json(
    client: FlaskClient,
    auth: dict[str, str],
    target: str,
    headers: dict[str, str],
    status: int,
) -> None:
    response = client.get(target, headers={**auth, **headers})
    code = "request_uri_too_long" if status == 414 else "request_header_fields_too_large"
    problem = assert_problem(response, status, code)
    assert "this service reads" in problem["detail"]
    assert response.headers["X-Request-ID"]  # refused after the request id, like any answer


@pytest.mark.parametrize(
    ("target", "headers", "status"),
    [
        (_target("/staff/accounts/", MAX_REQUEST_LINE_BYTES + 1), {}, 414),
        ("/staff/login", {"X-Long": "a" * MAX_HEADER_LINE_BYTES}, 431),
        ("/staff/login", {f"X-Extra-{n}": "1" for n in range(MAX_HEADERS)}, 431),
    ],
    ids=["line", "header-line", "headers"],
)
def test_a_head_past_the_limits_under_staff_is_the_staff_sites_page(
    client: FlaskClient, target: str, headers: dict[str, str], status: int
) -> None:
    response = client.get(target, headers=headers)
    assert response.status_code == status
    assert response.mimetype == "text/html"
    page = response.get_data(as_text=True)
    assert "· Leakguard staff</title>" in page
    assert "this service reads" in page
    assert response.headers["X-Frame-Options"] == "DENY"  # the staff site's headers too


def test_a_head_within_the_limits_is_served(client: FlaskClient, auth: dict[str, str]) -> None:
    many = {f"X-Extra-{n}": "1" for n in range(MAX_HEADERS - 10)}
    assert_problem(client.get("/v1/accounts/u-1", headers={**auth, **many}), 404)
    assert client.get("/staff/login", headers=many).status_code == 200
