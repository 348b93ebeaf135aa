"""deploy/gunicorn.conf.py as operators run it (issue 16, items 3 and 5): metrics added up
over the workers (multiprocess mode), two servers on one host that do not collide, and
a production server that refuses wrong settings before any worker starts."""

from __future__ import annotations

import json
import os
import runpy
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from service.clients import Scope
from service.keying import HASH_KEY, key_fingerprint
from service.models import KeyFingerprint
from service.runtime import Runtime
from tests.support.cli import cli_env
from tests.support.factories import make_api_key

ROOT = Path(__file__).resolve().parents[2]
GUNICORN = Path(sys.executable).with_name("gunicorn")
CONFIG = ROOT / "deploy" / "gunicorn.conf.py"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def call(
    url: str, key: str | None = None, body: dict[str, object] | None = None
) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310  (loopback)
            return int(answer.status), answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def gunicorn(
    env: dict[str, str], log: Path, *, workers: int = 1, serve: bool = False
) -> Iterator[str]:
    """A running server on a free loopback port; its base URL. Stopped at the end.

    ``serve``: started as ``leakguard serve`` (which becomes gunicorn), not by its path.
    """
    port = free_port()
    env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_WORKERS": str(workers)}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with log.open("w") as handle:
        command = (
            [str(GUNICORN.with_name("leakguard")), "serve"]
            if serve
            else [str(GUNICORN), "-c", str(CONFIG), "service.app:create_app()"]
        )
        server = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
        try:
            base = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while not _up(base):
                assert server.poll() is None, log.read_text()
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.2)
            yield base
        finally:
            server.terminate()
            server.wait(timeout=30)


def _up(base: str) -> bool:
    try:
        urllib.request.urlopen(f"{base}/healthz", timeout=1).close()  # noqa: S310
    except OSError:
        return False
    return True


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_metrics_add_up_over_the_workers_and_need_their_scope(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    checker = make_api_key(runtime, Scope.RISK_CHECK)
    scraper = make_api_key(runtime, Scope.METRICS_READ)
    env = cli_env(db_url, tmp_path / "instance", HOME=str(tmp_path))
    with gunicorn(env, tmp_path / "server.log", workers=2) as base:
        checks = 8
        for number in range(checks):
            status, _ = call(f"{base}/v1/risk/check", checker, {"account_id": f"nobody-{number}"})
            assert status == 200
        assert call(f"{base}/metrics")[0] == 401
        assert call(f"{base}/metrics", checker)[0] == 403
        status, text = call(f"{base}/metrics", scraper)
    assert status == 200
    decisions = samples(text, "leakguard_risk_decisions_total")
    assert decisions == {(("decision", "allow"), ("reason", "unknown_account")): checks}
    durations = samples(text, "leakguard_http_request_duration_seconds_count")
    risk = {
        labels: n for labels, n in durations.items() if ("endpoint", "/v1/risk/check") in labels
    }
    assert sum(risk.values()) == checks
    # Gauges and counters the stores hold are there too, with their labels.
    assert "leakguard_notices" in text
    assert "leakguard_ingest_lines_total" in text or "leakguard_ingest_lines" in text


def test_two_servers_on_one_host_do_not_collide(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    env = cli_env(db_url, tmp_path / "instance", HOME=str(tmp_path))
    env.pop("XDG_RUNTIME_DIR", None)
    with (
        gunicorn(env, tmp_path / "first.log") as first,
        gunicorn(env, tmp_path / "second.log", serve=True) as second,
    ):
        assert call(f"{first}/healthz")[0] == 200
        assert call(f"{second}/healthz")[0] == 200
    # No control socket in the shared home, no second server's complaint about it.
    assert not (tmp_path / ".gunicorn").exists()
    for log in ("first.log", "second.log"):
        text = (tmp_path / log).read_text()
        assert "Control socket" not in text, text
        assert "Traceback" not in text, text


def run_gunicorn(
    env: dict[str, str], *args: str, check: bool = False, cpus: set[int] | None = None
) -> subprocess.CompletedProcess[str]:
    """gunicorn with deploy/gunicorn.conf.py and ``args``, run to its end (60 s at most)."""
    return subprocess.run(
        [str(GUNICORN), "-c", str(CONFIG), *args, "service.app:create_app()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=check,
        preexec_fn=None if cpus is None else lambda: os.sched_setaffinity(0, cpus),
    )


def test_production_server_refuses_wrong_settings_before_any_worker(
    db_url: str, tmp_path: Path
) -> None:
    env = cli_env(db_url, tmp_path / "instance", HOME=str(tmp_path), LEAKGUARD_ENV="production")
    env["GUNICORN_BIND"] = f"127.0.0.1:{free_port()}"
    finished = run_gunicorn({k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"})
    assert finished.returncode != 0
    output = finished.stdout + finished.stderr
    assert "Booting worker" not in output
    assert "Traceback" not in output
    assert "LEAKGUARD_SERVICE_NAME" in output
    assert "LEAKGUARD_REDIS_URL" in output
    assert os.environ.get("PROMETHEUS_MULTIPROC_DIR") is None


def test_server_refuses_another_hash_key_than_the_database_before_any_worker(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    with runtime.db.transaction() as session:
        other = key_fingerprint(b"another-hash-key-fedcba9876543210")
        session.add(KeyFingerprint(name=HASH_KEY, fingerprint=other))
    env = cli_env(db_url, tmp_path / "instance", HOME=str(tmp_path))
    env["GUNICORN_BIND"] = f"127.0.0.1:{free_port()}"
    finished = run_gunicorn({k: v for k, v in env.items() if k != "PROMETHEUS_MULTIPROC_DIR"})
    assert finished.returncode == 2
    output = finished.stdout + finished.stderr
    assert "Booting worker" not in output
    assert "Traceback" not in output
    assert "the address hash key from LEAKGUARD_HASH_KEY is not the one" in output


def printed_config(tmp_path: Path, cpus: set[int], **extra: str) -> dict[str, str]:
    """gunicorn's own reading of deploy/gunicorn.conf.py (``--print-config``), run on the CPUs
    ``cpus`` with ``extra`` in an environment free of GUNICORN_* settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "LEAKGUARD_"))}
    env.update(PROMETHEUS_MULTIPROC_DIR=str(tmp_path), **extra)
    finished = run_gunicorn(env, "--print-config", check=True, cpus=cpus)
    values = {}
    for line in finished.stdout.splitlines():
        name, _, value = line.partition("=")
        values[name.strip()] = value.strip()
    return values


def test_workers_default_to_one_gthread_worker_of_four_threads_per_cpu(tmp_path: Path) -> None:
    """The sizes bench/servers.py measured best (README "The HTTP server"), from the CPUs
    the process may run on; GUNICORN_WORKERS and GUNICORN_THREADS still win."""
    available = sorted(os.sched_getaffinity(0))
    one = printed_config(tmp_path, {available[0]})
    worker = "service.ops.server.ProblemWorker"  # gunicorn's gthread, problem+json refusals
    assert (one["worker_class"], one["workers"], one["threads"]) == (worker, "1", "4")
    every = printed_config(tmp_path, set(available))
    assert (every["workers"], every["threads"]) == (str(len(available)), "4")
    chosen = printed_config(tmp_path, set(available), GUNICORN_WORKERS="3", GUNICORN_THREADS="8")
    assert (chosen["workers"], chosen["threads"]) == ("3", "8")


@pytest.mark.parametrize(
    ("variable", "value", "least"),
    [
        ("GUNICORN_WORKERS", "abc", 1),
        ("GUNICORN_WORKERS", "0", 1),  # a server with no worker never answers
        ("GUNICORN_THREADS", "-1", 1),
        ("GUNICORN_THREADS", "2.5", 1),
        ("GUNICORN_TIMEOUT", "30s", 0),
        ("GUNICORN_TIMEOUT", "-5", 0),
    ],
)
def test_a_bad_server_size_is_one_line_and_exit_2(
    tmp_path: Path, variable: str, value: str, least: int
) -> None:
    """A typo in GUNICORN_WORKERS or GUNICORN_TIMEOUT was a traceback of the config file
    (exit 1), and GUNICORN_WORKERS=0 a server that started and never answered."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN_", "LEAKGUARD_"))}
    env.update(PROMETHEUS_MULTIPROC_DIR=str(tmp_path), **{variable: value})
    finished = run_gunicorn(env, "--print-config")
    assert finished.returncode == 2
    assert finished.stderr.splitlines() == [
        f"Error: {variable} must be a whole number of at least {least}"
    ]
    assert finished.stdout == ""


def test_a_timeout_of_0_is_gunicorns_no_timeout(tmp_path: Path) -> None:
    available = set(os.sched_getaffinity(0))
    assert printed_config(tmp_path, available, GUNICORN_TIMEOUT="0")["timeout"] == "0"


class _Arbiter:
    """What deploy/gunicorn.conf.py's on_starting reads of gunicorn's arbiter."""

    def __init__(self, workers: int) -> None:
        self.num_workers = workers
        self.lines: list[str] = []
        self.log = self

    def info(self, message: str, *args: object) -> None:
        self.lines.append(message % args)

    warning = error = info


def test_without_redis_the_server_runs_one_worker_so_the_limits_hold(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Trial: `leakguard serve` on the embedded default started one worker per CPU, each
    counting the rate limits in its own memory: 12 wrong staff passwords in a row passed
    where 10 are allowed. Without Redis the server keeps to one worker; a worker count set
    on purpose is kept, with a warning."""
    env = cli_env(db_url, tmp_path / "instance", PROMETHEUS_MULTIPROC_DIR=str(tmp_path))
    for name in [name for name in os.environ if name.startswith(("LEAKGUARD_", "GUNICORN_"))]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = runpy.run_path(str(CONFIG))

    alone = _Arbiter(workers=2)
    config["on_starting"](alone)
    assert alone.num_workers == 1
    assert "LEAKGUARD_REDIS_URL" in alone.lines[0]

    monkeypatch.setenv("GUNICORN_WORKERS", "3")
    chosen = _Arbiter(workers=3)
    config["on_starting"](chosen)
    assert chosen.num_workers == 3
    assert "3 times the documented one" in chosen.lines[0]

    monkeypatch.delenv("GUNICORN_WORKERS")
    monkeypatch.setenv("LEAKGUARD_REDIS_URL", "redis://127.0.0.1:6379/0")
    shared = _Arbiter(workers=2)
    config["on_starting"](shared)
    assert (shared.num_workers, shared.lines) == (2, [])


def raw_request(base: str, head: bytes) -> tuple[int, str, bytes]:
    """Send ``head`` (a whole request head, as bytes on the wire) and read the answer to
    its end: its status, media type and body."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as connection:
        connection.sendall(head)
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
    lines, _, body = answer.partition(b"\r\n\r\n")
    status_line, *fields = lines.decode("latin-1").split("\r\n")
    media = ""
    for field in fields:
        name, _, value = field.partition(":")
        if name.strip().lower() == "content-type":
            media = value.split(";")[0].strip()
    return int(status_line.split()[1]), media, body


def request_head(
    target: str, headers: list[tuple[str, str]] | None = None, method: str = "GET"
) -> bytes:
    fields = [("Host", "localhost"), *(headers or []), ("Connection", "close")]
    lines = [f"{method} {target} HTTP/1.1", *(f"{name}: {value}" for name, value in fields)]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _padded(prefix: str, line_bytes: int) -> str:
    """A request target making ``GET <target> HTTP/1.1`` exactly ``line_bytes`` long."""
    return prefix + "x" * (line_bytes - len(f"GET {prefix} HTTP/1.1"))


def test_every_refusal_of_a_request_head_is_problem_json_or_the_staff_page(
    runtime: Runtime, db_url: str, tmp_path: Path
) -> None:
    """gunicorn answered an over-long request line (over its 4,094 default) with its own
    HTML 414, and header lines or headers past its limits with HTML 400/431, before the
    app saw them. The app now refuses a head past the documented limits itself: problem+json
    under /v1, the staff site's page under /staff; past the server's own maximums (a
    request line over 8,190 bytes) the worker still answers problem+json, as it does
    malformed HTTP."""
    key = make_api_key(runtime, Scope.ACCOUNTS_READ, Scope.RISK_CHECK)
    auth = [("Authorization", f"Bearer {key}")]
    chunked = [("Transfer-Encoding", "chunked")]
    json_type = [("Content-Type", "application/json")]
    form_type = [("Content-Type", "application/x-www-form-urlencoded")]
    env = cli_env(db_url, tmp_path / "instance", HOME=str(tmp_path))
    many = [(f"X-Extra-{n}", "1") for n in range(150)]
    long_field = [("X-Long", "a" * 9000)]
    cases = {
        # within the limits: the app's ordinary answers (an id too long, an unknown one)
        "line 8000": (request_head(_padded("/v1/accounts/", 8000), auth), 422),
        "97 headers": (request_head("/v1/accounts/u-1", auth + many[:95]), 404),
        # past the documented limits: the app refuses
        "line 8001": (request_head(_padded("/v1/accounts/", 8001), auth), 414),
        "header line 9000": (request_head("/v1/accounts/u-1", auth + long_field), 431),
        "150 headers": (request_head("/v1/accounts/u-1", auth + many), 431),
        "staff line 8001": (request_head(_padded("/staff/accounts/", 8001)), 414),
        "staff header line": (request_head("/staff/login", long_field), 431),
        "staff 150 headers": (request_head("/staff/login", many), 431),
        # past the server's own maximums: the worker refuses
        "line 9000": (request_head(_padded("/v1/accounts/", 9000), auth), 414),
        "staff line 9000": (request_head(_padded("/staff/", 9000)), 414),
        "header line 20000": (request_head("/v1/accounts/u-1", [("X-Long", "a" * 20000)]), 431),
        "300 headers": (
            request_head("/v1/accounts/u-1", [(f"X-{n}", "1") for n in range(300)]),
            431,
        ),
        "not HTTP": (b"HELLO\r\n\r\n", 400),
        # a body whose chunked framing is malformed: was gunicorn's parse error in the
        # app, an unhandled 500 with a traceback in the log
        "bad chunk": (
            request_head("/v1/risk/check", auth + json_type + chunked, "POST") + b"ZZ\r\n{}\r\n",
            400,
        ),
        "staff bad chunk": (
            request_head("/staff/login", form_type + chunked, "POST") + b"3\r\na=bXX0\r\n\r\n",
            400,
        ),
    }
    with gunicorn(env, tmp_path / "server.log") as base:
        answers = {name: raw_request(base, head) for name, (head, _) in cases.items()}
        login_page = raw_request(base, request_head("/staff/login"))
    for name, (_, status) in cases.items():
        got, media, body = answers[name]
        assert got == status, (name, body[:300])
        if name.startswith("staff") and "9000" not in name:
            assert media == "text/html", (name, media)
            assert b"\xc2\xb7 Leakguard staff</title>" in body  # the staff layout
            assert b"Back to the staff home page" in body  # its error page
            continue
        assert media == "application/problem+json", (name, media, body[:300])
        problem = json.loads(body)
        assert problem["status"] == status
        assert problem["type"].endswith(problem["code"].replace("_", "-"))
    codes = {name: json.loads(answers[name][2])["code"] for name in ("line 8001", "line 9000")}
    assert codes == {"line 8001": "request_uri_too_long", "line 9000": "request_uri_too_long"}
    assert "8,000" in json.loads(answers["line 8001"][2])["detail"]
    # Host, Authorization, the 150 and Connection: counted one by one as sent
    assert "153 headers, over the 100" in json.loads(answers["150 headers"][2])["detail"]
    assert json.loads(answers["header line 20000"][2])["code"] == (
        "request_header_fields_too_large"
    )
    assert login_page[0] == 200
    assert "chunked transfer coding" in json.loads(answers["bad chunk"][2])["detail"]
    log = (tmp_path / "server.log").read_text()
    assert "Traceback" not in log
    assert "unhandled error" not in log
