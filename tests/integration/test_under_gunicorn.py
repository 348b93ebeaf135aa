"""Under the real server: every line the product or gunicorn writes passes the address mask
(security review, item 4: ``GET /v1/accounts/alice@example.org`` was in the access log), and
a long URI is the app's problem+json, not gunicorn's HTML 414 (item 9)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from service.runtime import Runtime
from tests.support.cli import cli_env
from tests.support.factories import make_api_key

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
APP = "service.app:create_app()"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def get(url: str, key: str) -> tuple[int, str]:
    """The status and media type of a GET."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310
    try:
        # Generous: a loaded CI machine once took over 10 s for the first answer of a new worker.
        with urllib.request.urlopen(request, timeout=60) as answer:  # noqa: S310  (loopback)
            return int(answer.status), answer.headers.get_content_type()
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get_content_type()


def test_gunicorn_access_and_error_logs_mask_addresses(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    key = make_api_key(runtime)
    port = free_port()
    env = cli_env(
        db_url,
        tmp_path,
        GUNICORN_BIND=f"127.0.0.1:{port}",
        GUNICORN_WORKERS="1",
        LEAKGUARD_LOG_LEVEL="DEBUG",
    )
    log_path = tmp_path / "server.log"
    with log_path.open("w") as log:
        server = subprocess.Popen(
            [
                str(GUNICORN),
                "-c",
                str(ROOT / "deploy/gunicorn.conf.py"),
                "service.app:create_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 30
            while True:
                try:
                    urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310
                    break
                except OSError:
                    assert time.monotonic() < deadline, log_path.read_text()
                    time.sleep(0.2)
            answers = [
                get(f"{base}/v1/accounts/alice@example.org", key),
                get(f"{base}/v1/accounts/bob%40example.org", key),
                get(f"{base}/v1/accounts/x?who=carol@example.net", key),
                # longer than gunicorn's default request line (4094): the app answers it
                get(f"{base}/v1/accounts/{'x' * 6000}", key),
            ]
            # the new-user trial's: a quoted local part, a NUL, a bidi override, UTF-8
            for path in (
                "%22jane%20doe%22%40example.org",
                "a%00b",
                "%E2%80%AEevil",
                "j%C3%BCrgen%40b%C3%BCcher.de",
                "bad%FFbyte",
            ):
                get(f"{base}/v1/accounts/{path}", key)
        finally:
            server.terminate()
            server.wait(timeout=30)
    raw = log_path.read_bytes()
    text = raw.decode("utf-8")  # strict: a stray byte would raise
    problem = "application/problem+json"
    assert answers == [(404, problem), (404, problem), (404, problem), (422, problem)]
    assert "path=/v1/accounts/" in text  # the access log was written
    for clear in ("alice@example.org", "bob%40example.org", "bob@example.org", "carol@example.net"):
        assert clear not in text, text
    assert "a***@example.org" in text
    # printable and unambiguous: the path decoded as UTF-8, controls and bidi escaped
    assert all(line.isprintable() for line in text.splitlines()), text
    assert "jane doe" not in text
    for shown in (
        r"path=/v1/accounts/a\x00b",
        r"path=/v1/accounts/\u202eevil",
        r"path=/v1/accounts/bad\xffbyte",
        "path=/v1/accounts/j***@bücher.de",
        "path=/v1/accounts/j***@example.org",
    ):
        assert shown in text, text
    assert "Ã" not in text
