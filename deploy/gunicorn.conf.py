"""gunicorn settings: `gunicorn -c deploy/gunicorn.conf.py 'service.app:create_app()'`.

Every value can be overridden from the environment (GUNICORN_*), so one file serves a
laptop, a systemd unit and a container.
"""

import os
import shutil
import sys
import tempfile

from service.ops.head import SERVER_HEADER_LINE_BYTES, SERVER_HEADERS, SERVER_REQUEST_LINE_BYTES


def _whole(name, default, least):
    """The variable ``name`` as a whole number of at least ``least``; else one line, exit 2.

    int() of a typo was a traceback, and 0 workers a server that never answers.
    """
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        value = int(text.strip())
    except ValueError:
        value = None
    if value is None or value < least:
        print(f"Error: {name} must be a whole number of at least {least}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    return value


bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
# The CPUs this process may run on (a container's or a unit's CPU set), not the host's.
_cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
# One worker per CPU, 4 threads each: measured by bench/servers.py (README "The HTTP
# server"), it served the risk check at less CPU per request and more req/s than
# 2 x CPUs + 1 workers (gthread or sync) on the same machine. A request spends part of its
# time waiting on PostgreSQL and Redis: the threads fill that wait.
workers = _whole("GUNICORN_WORKERS", _cpus, 1)
# gunicorn's gthread worker whose own refusals are problem+json, like every API error,
# and which hands the app the head it parsed (service/ops/server.py).
worker_class = "service.ops.server.ProblemWorker"
threads = _whole("GUNICORN_THREADS", 4, 1)
# The login service waits on us during sign-in: fail fast rather than queue forever.
timeout = _whole("GUNICORN_TIMEOUT", 30, 0)  # 0: no timeout, as gunicorn reads it
graceful_timeout = 20
keepalive = 5
# Build the app (and its engine) in each worker: database connections must not be
# shared across fork.
preload_app = False
# GUNICORN_ACCESSLOG="" turns the access log off (benchmarks); "-" is stderr's neighbour,
# stdout. Its lines are built by service.logs.AccessFormatter: path without query string,
# no Referer, addresses masked, the request id.
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
# Every line gunicorn writes passes the address mask, like the app's own logs.
logger_class = "service.logs.GunicornLogger"
# What gunicorn reads of a request head before refusing it itself: more than the app's
# documented limits (service/ops/head.py: a request line of 8,000 bytes, header lines of
# 8,190, 100 headers), so that the app refuses such a head with its own answer
# (problem+json, or the staff site's page). 8,190 is the longest request line gunicorn
# reads at all; the header limits bound what one connection's head may hold in memory
# (200 x 16 KiB). Past them the worker still answers problem+json.
limit_request_line = SERVER_REQUEST_LINE_BYTES
limit_request_field_size = SERVER_HEADER_LINE_BYTES
limit_request_fields = SERVER_HEADERS
# gunicorn 25.1+ opens a control socket at $XDG_RUNTIME_DIR/gunicorn.ctl or
# ~/.gunicorn/gunicorn.ctl: one path per user, so a second instance on the host (a
# blue-green deploy, the benchmark beside the service) would take the first one's socket.
# Nothing here uses it; systemd or Kubernetes manage the processes.
control_socket_disable = True

# prometheus-client's multiprocess mode: each worker writes its metrics to files here and
# a scrape of any worker adds them up. One fresh folder per server, made before any worker
# starts (the value class is chosen when prometheus-client is first imported) and removed
# when the server stops; PROMETHEUS_MULTIPROC_DIR set by the unit wins (then empty it
# before each start, as systemd's RuntimeDirectory= does).
_OWN_METRICS_DIR = None
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    _OWN_METRICS_DIR = tempfile.mkdtemp(prefix="leakguard-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = _OWN_METRICS_DIR


def on_starting(server):
    """Refuse to start on settings production refuses: one line each, before any worker."""
    from service.config import ConfigError, Environment, load_settings
    from service.config_check import production_problems

    try:
        settings = load_settings()
    except ConfigError as exc:
        problems = [str(exc)]
    else:
        problems = production_problems(settings) if settings.env is Environment.PRODUCTION else []
    if not problems:
        problems = _key_problems(settings)
    if problems:
        for line in problems:
            server.log.error("Error: %s", line)
        sys.exit(2)
    if settings.redis_url is None and server.num_workers > 1:
        # Without Redis the rate limits (API, step-up, staff logins) count in each
        # process's memory: two workers would each allow the full budget.
        if "GUNICORN_WORKERS" in os.environ:
            server.log.warning(
                "%d workers without LEAKGUARD_REDIS_URL: each counts the rate limits on its "
                "own, so every limit is %d times the documented one",
                server.num_workers,
                server.num_workers,
            )
        else:
            server.log.info(
                "one worker: without LEAKGUARD_REDIS_URL the rate limits count in the "
                "process's memory (set LEAKGUARD_REDIS_URL to run more)"
            )
            server.num_workers = 1


def _key_problems(settings):
    """The hash key refused (another than the database's), as one line; none if it is the
    database's, or if the database cannot be asked now (readiness reports that)."""
    from sqlalchemy.exc import SQLAlchemyError

    from service.db import utcnow
    from service.errors import JobError
    from service.keying import HashKeyMismatch, verify_runtime_key
    from service.runtime import build_runtime

    try:
        runtime = build_runtime(settings, create_instance=False)
        try:
            # The API writes keys (account upserts): the server may be the first to record.
            verify_runtime_key(runtime, record=True, now=utcnow())
        finally:
            runtime.db.engine.dispose()
    except HashKeyMismatch as exc:
        return [str(exc)]
    except (SQLAlchemyError, JobError):
        return []
    return []


def child_exit(server, worker):
    """A worker is gone: its live gauges go with it (its counters stay counted)."""
    from service.metrics import forget_worker

    forget_worker(worker.pid)


def on_exit(server):
    if _OWN_METRICS_DIR is not None:
        shutil.rmtree(_OWN_METRICS_DIR, ignore_errors=True)
