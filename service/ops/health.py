"""``/healthz`` (the process is up) and ``/readyz`` (it can serve: the database answers and
is migrated, Redis answers when one is configured). Both answer problem+json on failure,
so that a probe's log says what is wrong."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta

from flask import Response, jsonify
from flask_openapi3 import OpenAPI
from redis import Redis
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from service.api.problems import problem_response
from service.db.migrate import head_revision, is_at_head
from service.runtime import Runtime

READINESS_TIMEOUT = timedelta(seconds=1)  # all checks together; a probe waits no longer
RETRY_AFTER_SECONDS = 5


def register_health(app: OpenAPI, runtime: Runtime) -> None:
    """Add ``GET /healthz`` and ``GET /readyz`` to ``app``; neither needs an API key."""
    # One probe at a time per process, on a thread of its own, so that a database or a
    # Redis that hangs makes the probe answer 503 within READINESS_TIMEOUT instead of
    # hanging too.
    probes = ThreadPoolExecutor(max_workers=1, thread_name_prefix="readyz")
    redis = (
        Redis.from_url(
            runtime.settings.redis_url,
            socket_timeout=READINESS_TIMEOUT.total_seconds(),
            socket_connect_timeout=READINESS_TIMEOUT.total_seconds(),
        )
        if runtime.settings.redis_url is not None
        else None
    )

    head_revision()  # read the migrations now, not inside the first probe's second

    def unready() -> str | None:
        """What keeps this process from serving, in one sentence; None: ready."""
        try:
            with runtime.db.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
            if not is_at_head(runtime.db.engine):
                return "The database is not migrated: run `leakguard db upgrade`"
        except SQLAlchemyError:
            return "The database is unreachable"
        if redis is not None:
            try:
                redis.ping()
            except (RedisError, OSError):
                return "Redis (LEAKGUARD_REDIS_URL) is unreachable"
        return None

    @app.get("/healthz", doc_ui=False)
    def healthz() -> Response:
        """The process is up: it answers without touching the database or Redis."""
        return jsonify({"status": "ok"})

    @app.get("/readyz", doc_ui=False)
    def readyz() -> Response:
        """The database answers and is at the migrations' head; Redis answers, if set."""
        try:
            problem = probes.submit(unready).result(READINESS_TIMEOUT.total_seconds())
        except FutureTimeout:
            problem = "The database or Redis did not answer in time"
        except Exception:  # noqa: BLE001  (any failure means: not ready)
            problem = "The readiness check failed"
        if problem is not None:
            return problem_response(
                503, "not_ready", problem, headers={"Retry-After": str(RETRY_AFTER_SECONDS)}
            )
        return jsonify({"status": "ready"})
