"""What every /v1 answer owes its caller, and the headers a caller sends."""

from __future__ import annotations

from typing import Any

from werkzeug.test import TestResponse

PROBLEM = "application/problem+json"


def assert_problem(response: TestResponse, status: int, code: str | None = None) -> dict[str, Any]:
    """The response is an RFC 9457 problem with ``status`` (and ``code``), and no trace."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == PROBLEM
    body = response.get_json(force=True)
    assert body["status"] == status
    assert body["type"]
    assert body["code"]
    if code is not None:
        assert body["code"] == code
    assert "Traceback" not in response.get_data(as_text=True)
    return dict(body)


def bearer(key: str) -> dict[str, str]:
    """The Authorization header of a request made with the API key ``key``."""
    return {"Authorization": f"Bearer {key}"}
