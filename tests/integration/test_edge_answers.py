"""Edge answers (security review, item 9): a chunked body over the size limit was 400 "not
valid JSON" while a declared one was 413; both are 413 problem+json now."""

from __future__ import annotations

import io

import pytest
from flask import Flask

from service.config import Settings


@pytest.fixture
def small_body_app(app: Flask) -> Flask:
    app.config["MAX_CONTENT_LENGTH"] = 1000
    return app


def body_of(size: int) -> bytes:
    return b'{"account_id": "' + b"a" * (size - 18) + b'"}'


@pytest.mark.parametrize("chunked", [False, True], ids=["declared", "chunked"])
def test_a_body_over_the_limit_is_413_problem_json(
    small_body_app: Flask, auth: dict[str, str], chunked: bool
) -> None:
    body = body_of(5000)
    headers = auth | {"Content-Type": "application/json"}
    if chunked:
        answer = small_body_app.test_client().post(
            "/v1/risk/check",
            data=io.BytesIO(body),
            headers=headers | {"Transfer-Encoding": "chunked"},
            environ_overrides={"wsgi.input_terminated": True},  # what gunicorn sets
        )
    else:
        answer = small_body_app.test_client().post("/v1/risk/check", data=body, headers=headers)
    assert answer.status_code == 413
    assert answer.mimetype == "application/problem+json"
    assert answer.get_json()["status"] == 413


def test_a_chunked_body_under_the_limit_is_read_whole(
    small_body_app: Flask, auth: dict[str, str]
) -> None:
    answer = small_body_app.test_client().post(
        "/v1/risk/check",
        data=io.BytesIO(body_of(999)),
        headers=auth | {"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert answer.status_code == 422  # a 981-character account id: too long, but parsed
    assert answer.get_json()["code"] == "validation_failed"


def test_the_default_limit_is_the_setting(app: Flask) -> None:
    assert app.config["MAX_CONTENT_LENGTH"] == Settings.model_fields["max_request_bytes"].default
