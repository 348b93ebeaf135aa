"""``GET /metrics`` for Prometheus, behind an API key with the scope ``metrics:read``, and
the request-duration histogram of every request.

A key rather than "loopback only": behind a reverse proxy or in a pod every scrape comes
from a local address, and the figures (notice counts, queue depths) tell an outsider how
an incident goes. Prometheus sends the key with ``authorization: {credentials_file: ...}``.
"""

from __future__ import annotations

import time

from flask import Flask, Response, g, request
from prometheus_client import CONTENT_TYPE_LATEST
from redis import Redis
from rq import Queue

from jobs.queues import ALL_QUEUES
from service.api.auth import authenticate_request, requires_scope
from service.clients import Scope
from service.metrics import QueueDepths, StoreCollector, observe_request, scrape
from service.runtime import Runtime

_STARTED = "leakguard_request_started"


def register_metrics(app: Flask, runtime: Runtime) -> None:
    """Add ``GET /metrics`` and time every request of ``app``."""
    depths: QueueDepths | None = None
    if runtime.settings.redis_url is not None:
        connection = Redis.from_url(
            runtime.settings.redis_url, socket_timeout=2, socket_connect_timeout=2
        )

        def queue_depths() -> dict[str, int]:
            return {
                name.value: Queue(name.value, connection=connection).count for name in ALL_QUEUES
            }

        depths = queue_depths
    store = StoreCollector(runtime, depths)

    @app.before_request
    def _start_clock() -> None:
        setattr(g, _STARTED, time.perf_counter())

    @app.after_request
    def _observe(response: Response) -> Response:
        started = g.get(_STARTED)
        if started is not None:
            # The route's rule (/v1/accounts/<account_id>), never the path: a path may hold
            # an address, and every distinct path would be a new time series.
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            observe_request(
                rule, request.method, response.status_code, time.perf_counter() - started
            )
        return response

    @requires_scope(Scope.METRICS_READ)
    def metrics() -> Response:
        """Every Leakguard metric in Prometheus's text format (needs ``metrics:read``)."""
        authenticate_request()
        return Response(
            scrape(store),
            mimetype=CONTENT_TYPE_LATEST.split(";")[0],
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    app.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
