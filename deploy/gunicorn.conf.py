"""gunicorn settings: `gunicorn -c deploy/gunicorn.conf.py 'service.app:create_app()'`.

Every value can be overridden from the environment (GUNICORN_*), so one file serves a
laptop and a container.
"""

import multiprocessing
import os

bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("GUNICORN_WORKERS", str(multiprocessing.cpu_count() * 2 + 1)))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))
# The login service waits on us during sign-in: fail fast rather than queue forever.
timeout = 30
graceful_timeout = 20
keepalive = 5
# Build the app (and its engine) in each worker: database connections must not be
# shared across fork.
preload_app = False
# GUNICORN_ACCESSLOG="" turns the access log off (benchmarks); "-" is stdout.
accesslog = os.environ.get("GUNICORN_ACCESSLOG", "-") or None
errorlog = "-"
# Every line gunicorn writes passes the address mask, like the app's own logs.
logger_class = "service.logs.GunicornLogger"
# The longest request line gunicorn reads (its own maximum): a longer /v1 URI then reaches
# the app, which answers it as problem+json; past this gunicorn answers its own plain 414.
limit_request_line = 8190
