"""A real SET receiver for the tests (RFC 8935), in a process of its own, on loopback.

It is what a login service would run: it takes ``POST`` bodies of type
``application/secevent+jwt``, verifies each SET against the transmitter's published JWKS
(fetched over HTTP from ``--jwks-url``, again when a ``kid`` is unknown), checks ``typ``,
``iss``, ``aud``, that ``jti`` is there and that exactly one event is carried, and answers
202 (RFC 8935 section 2.2) or 400 with an SSF error code (section 2.3). Every answer is
recorded as one JSON line, written before the answer: a SET the transmitter saw accepted
is always on record. A ``jti`` seen before is accepted again (the transmitter must stop
resending it) and recorded as ``double``: the tests count doubles.

A test stops it (the receiver is down: connections are refused), starts it again on the
same port, or steers it through a control file: answer a status for the next N SETs, or
refuse one event type with an SSF error.

``verify_set`` is the same check, for SETs fetched by polling (RFC 8936).
"""

from __future__ import annotations

import argparse
import json
import select
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

HOST = "127.0.0.1"
CONTROL_FILE = "control.json"
RECORD_FILE = "received.jsonl"
START_TIMEOUT_SECONDS = 15
MODULE = "tests.support.receiver"
SET_TYPE = "secevent+jwt"
ALGORITHMS = ["ES256", "ES384", "ES512", "RS256", "EdDSA"]


class SetRefused(Exception):
    """The SET does not verify; ``err`` is the SSF error code to answer with."""

    def __init__(self, err: str, description: str) -> None:
        super().__init__(f"{err}: {description}")
        self.err = err
        self.description = description


def verify_set(token: str, keys: KeySet, *, issuer: str, audience: str) -> dict[str, Any]:
    """The claims of a SET that verifies with ``keys`` and names this issuer and audience;
    raise SetRefused with the RFC 8935 section 2.3 error code otherwise."""
    try:
        decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
    except (JoseError, ValueError) as exc:
        raise SetRefused("invalid_key", f"{type(exc).__name__}: {exc}") from None
    if decoded.header.get("typ") != SET_TYPE:
        raise SetRefused("invalid_request", f"typ is {decoded.header.get('typ')!r}")
    claims = decoded.claims
    if claims.get("iss") != issuer:
        raise SetRefused("invalid_issuer", f"iss is {claims.get('iss')!r}")
    audiences = claims.get("aud")
    if audience not in (audiences if isinstance(audiences, list) else [audiences]):
        raise SetRefused("invalid_audience", f"aud is {audiences!r}")
    if not isinstance(claims.get("jti"), str) or not isinstance(claims.get("iat"), int):
        raise SetRefused("invalid_request", "jti or iat missing")
    events = claims.get("events")
    if not isinstance(events, dict) or len(events) != 1:
        raise SetRefused("invalid_request", "not exactly one event")
    subject = claims.get("sub_id")
    if not isinstance(subject, dict) or "format" not in subject:
        raise SetRefused("invalid_request", "no sub_id in SSF subject format")
    return dict(claims)


def fetch_keys(jwks_url: str) -> KeySet:
    response = httpx.get(jwks_url, timeout=10)
    response.raise_for_status()
    return KeySet.import_key_set(response.json())


# --- what the tests see ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Received:
    """One SET as the receiver recorded it."""

    # accepted | double | refused | unauthorized | answered (a status the test asked for)
    outcome: str
    status: int
    jti: str | None
    claims: dict[str, Any] | None
    error: str | None

    @property
    def event_type(self) -> str:
        assert self.claims is not None
        return next(iter(self.claims["events"]))

    @property
    def subject(self) -> str:
        assert self.claims is not None
        return str(self.claims["sub_id"]["id"])


class Receiver:
    """A handle on the receiver process: start, stop, steer, read what it got."""

    def __init__(
        self, directory: Path, *, jwks_url: str, issuer: str, audience: str, token: str | None
    ) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.control = directory / CONTROL_FILE
        self.record = directory / RECORD_FILE
        self.jwks_url, self.issuer, self.audience, self.token = jwks_url, issuer, audience, token
        self.port = 0
        self.version = 0
        self._process: subprocess.Popen[str] | None = None
        self.set_mode()

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/events"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def reserve_port(self) -> str:
        """Start once to learn a free port, then stop: the URL stays valid for ``start``."""
        self.start()
        self.stop()
        return self.url

    def start(self) -> None:
        """Start the receiver (on the port it had before, if any); return once it listens."""
        if self.running:
            return
        command = [
            sys.executable, "-m", MODULE, "--port", str(self.port), "--dir", str(self.directory),
            "--jwks-url", self.jwks_url, "--issuer", self.issuer, "--audience", self.audience,
        ]  # fmt: skip
        if self.token:
            command += ["--token", self.token]
        log = (self.directory / "receiver.log").open("a")
        self._process = subprocess.Popen(
            command, cwd=self.directory, stdout=subprocess.PIPE, stderr=log, text=True,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT_SECONDS)
        line = self._process.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            log_text = (self.directory / "receiver.log").read_text()
            raise RuntimeError(f"the test receiver did not start: {line!r}\n{log_text}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        """Stop the receiver: connections are refused until ``start``."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def set_mode(
        self,
        *,
        status: int | None = None,
        count: int | None = None,
        refuse: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer ``status`` to the next ``count`` SETs (all, without count); refuse SETs of
        the event type ``refuse`` with 400 ``invalid_request``; take ``delay`` seconds over
        each SET; no argument: accept all at once."""
        self.version += 1
        payload = {
            "version": self.version,
            "status": status,
            "count": count,
            "refuse": refuse,
            "delay": delay,
        }
        partial = self.control.with_suffix(".part")
        partial.write_text(json.dumps(payload))
        partial.replace(self.control)

    def received(self) -> list[Received]:
        """Every answer, in order."""
        if not self.record.exists():
            return []
        *lines, _unfinished = self.record.read_bytes().split(b"\n")
        return [Received(**json.loads(line)) for line in lines if line.strip()]

    def accepted(self) -> list[Received]:
        """The SETs accepted the first time their jti came."""
        return [r for r in self.received() if r.outcome == "accepted"]

    def doubles(self) -> list[Received]:
        return [r for r in self.received() if r.outcome == "double"]


# --- the server process --------------------------------------------------------------------


class _State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.keys: KeySet | None = None
        self.directory = Path(args.dir)
        self.record = (self.directory / RECORD_FILE).open("a")
        self.seen = {
            r["jti"]
            for r in _read(self.directory / RECORD_FILE)
            if r["outcome"] in ("accepted", "double")
        }
        self.counted: dict[int, int] = {}  # mode version -> SETs answered under it

    def mode(self) -> dict[str, Any]:
        try:
            return dict(json.loads((self.directory / CONTROL_FILE).read_text()))
        except (OSError, ValueError):
            return {"version": 0}

    def verify(self, token: str) -> dict[str, Any]:
        if self.keys is None:
            self.keys = fetch_keys(self.args.jwks_url)
        try:
            return verify_set(
                token, self.keys, issuer=self.args.issuer, audience=self.args.audience
            )
        except SetRefused as exc:
            if exc.err != "invalid_key":
                raise
            self.keys = fetch_keys(self.args.jwks_url)  # a rotation: the kid may be new
            return verify_set(
                token, self.keys, issuer=self.args.issuer, audience=self.args.audience
            )

    def write(self, entry: dict[str, Any]) -> None:
        self.record.write(json.dumps(entry) + "\n")
        self.record.flush()


def _read(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


class _Handler(BaseHTTPRequestHandler):
    state: _State

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        state = self.state
        with state.lock:  # one at a time: the record's order is the order of answers
            if state.args.token and self.headers.get("Authorization") != (
                f"Bearer {state.args.token}"
            ):
                state.write(_entry("unauthorized", 401, None, "no or a wrong bearer token"))
                self._answer(401, None)
                return
            if self.headers.get("Content-Type") != "application/secevent+jwt":
                self._refuse(None, "invalid_request", "not application/secevent+jwt")
                return
            try:
                claims = state.verify(body.decode("ascii"))
            except SetRefused as exc:
                self._refuse(None, exc.err, exc.description)
                return
            jti = claims["jti"]
            mode = state.mode()
            event_type = next(iter(claims["events"]))
            if mode.get("refuse") == event_type:
                self._refuse(claims, "invalid_request", "this receiver takes no such event")
                return
            status = mode.get("status")
            answered = state.counted.get(mode["version"], 0)
            if status is not None and (mode.get("count") is None or answered < mode["count"]):
                state.counted[mode["version"]] = answered + 1
                state.write(_entry("answered", status, claims, None))
                self._answer(status, None)
                return
            time.sleep(mode.get("delay") or 0.0)
            outcome = "double" if jti in state.seen else "accepted"
            state.seen.add(jti)
            state.write(_entry(outcome, 202, claims, None))
            self._answer(202, None)

    def _refuse(self, claims: dict[str, Any] | None, err: str, description: str) -> None:
        self.state.write(_entry("refused", 400, claims, f"{err}: {description}"))
        self._answer(400, {"err": err, "description": description})

    def _answer(self, status: int, body: dict[str, Any] | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        if body is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _entry(
    outcome: str, status: int, claims: dict[str, Any] | None, error: str | None
) -> dict[str, Any]:
    jti = claims.get("jti") if claims else None
    return {"outcome": outcome, "status": status, "jti": jti, "claims": claims, "error": error}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--jwks-url", required=True)
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--audience", required=True)
    parser.add_argument("--token")
    args = parser.parse_args()
    _Handler.state = _State(args)
    ThreadingHTTPServer.allow_reuse_address = True
    server = ThreadingHTTPServer((HOST, args.port), _Handler)
    print(f"READY {server.server_address[1]}", flush=True)  # noqa: T201
    server.serve_forever()


if __name__ == "__main__":
    main()
