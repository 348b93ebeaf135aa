"""A real SMTP server for the tests, in a process of its own.

The server is aiosmtpd on 127.0.0.1, started as a subprocess running this very module, so
a test can stop it (SMTP down), start it again on the same port (SMTP up), and kill the
process that talks to it without taking the server along. It records every envelope it accepts
(and every refusal it answers) as one JSON line, written before it answers ``250``: a
message the client saw accepted is always on record.

Its behaviour is set at run time through a control file (``set_mode``): refuse RCPT or
DATA with a reply code, for N messages or for one recipient; drop the connection
mid-session; answer slowly. Counters live in the record, so "the first N messages" still
holds across a stop and start.

The ``smtp_server`` fixture (tests/conftest.py) gives a test a running one.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import json
import os
import select
import signal
import subprocess
import sys
from dataclasses import asdict, dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, cast

HOST = "127.0.0.1"
CONTROL_FILE = "control.json"
RECORD_FILE = "envelopes.jsonl"
START_TIMEOUT_SECONDS = 15
MODULE = "tests.support.smtp"


# --- what the tests see ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Rule:
    """One misbehaviour: at ``stage``, answer ``code`` (None: drop the connection).

    Applies to every message, or to the first ``count`` messages that reach the stage, or
    only to messages for ``recipient``.
    """

    stage: str  # "mail" | "rcpt" | "data"
    code: int | None
    count: int | None = None
    recipient: str | None = None


def refuse(
    code: int, *, at: str = "rcpt", count: int | None = None, recipient: str | None = None
) -> Rule:
    """Answer ``code`` at MAIL, RCPT or DATA (421 also closes the connection, as servers do).

    At DATA the answer is the one to the content's end; at MAIL a rule by recipient never
    matches (the recipient comes later)."""
    return Rule(stage=at, code=code, count=count, recipient=recipient)


def drop(*, at: str = "data", count: int | None = None) -> Rule:
    """Close the connection without an answer (at DATA: after the content, before 250)."""
    return Rule(stage=at, code=None, count=count)


@dataclass(frozen=True, slots=True)
class Envelope:
    """An accepted message as the server got it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    mail_options: tuple[str, ...] = ()  # MAIL FROM parameters, e.g. SMTPUTF8, BODY=8BITMIME

    @property
    def message(self) -> EmailMessage:
        return cast(EmailMessage, message_from_bytes(self.data, policy=policy.default))


class SmtpServer:
    """A handle on the server process: start, stop, steer, read what it got."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.control = directory / CONTROL_FILE
        self.record = directory / RECORD_FILE
        self.port = 0
        self.version = 0
        self._process: subprocess.Popen[str] | None = None
        self.set_mode()

    @property
    def url(self) -> str:
        return f"smtp://{HOST}:{self.port}?starttls=off"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server (on the port it had before, if any); return once it listens."""
        if self.running:
            return
        log = (self.directory / "server.log").open("a")
        self._process = subprocess.Popen(
            # As a module: run as a file, its directory would come first on sys.path and
            # this package's http.py would stand in for the standard library's.
            [sys.executable, "-m", MODULE, "--port", str(self.port), "--dir", str(self.directory)],
            cwd=self.directory,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            start_new_session=True,
        )
        log.close()
        assert self._process.stdout is not None
        ready, _, _ = select.select([self._process.stdout], [], [], START_TIMEOUT_SECONDS)
        line = self._process.stdout.readline() if ready else ""
        if not line.startswith("READY "):
            self.stop()
            log_text = (self.directory / "server.log").read_text()
            raise RuntimeError(f"the test SMTP server did not start: {line!r}\n{log_text}")
        self.port = int(line.split()[1])

    def stop(self) -> None:
        """Stop the server: connections are refused until ``start``."""
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
        *rules: Rule,
        delay: float = 0.0,
        smtputf8: bool = True,
        pipelining: bool = True,
        login: tuple[str, str] | None = None,
    ) -> None:
        """Behave by ``rules`` (none: accept everything), ``delay`` seconds per message.

        ``smtputf8``: offer SMTPUTF8 (RFC 6531) to connections made from now on.
        ``pipelining``: offer PIPELINING (RFC 2920) in the answers to EHLO from now on.
        ``login``: (user, password) that connections made from now on must log in with
        (AUTH, RFC 4954; offered without TLS on this loopback test server): MAIL before it
        is refused 530, other credentials 535.
        """
        self.version += 1
        payload = {
            "version": self.version,
            "delay": delay,
            "smtputf8": smtputf8,
            "pipelining": pipelining,
            "login": list(login) if login is not None else None,
            "rules": [asdict(r) for r in rules],
        }
        partial = self.control.with_suffix(".part")
        partial.write_text(json.dumps(payload))
        partial.replace(self.control)  # the server never reads half a mode

    def events(self) -> list[dict[str, Any]]:
        """Everything the server answered, in order: accepted, refused, dropped."""
        if not self.record.exists():
            return []
        # A line still being written (the server answers while a test polls) is not one yet.
        *lines, _unfinished = self.record.read_bytes().split(b"\n")
        return [json.loads(line) for line in lines if line.strip()]

    def messages(self) -> list[Envelope]:
        """The accepted messages, in order."""
        return [
            Envelope(
                e["mail_from"],
                tuple(e["rcpt_tos"]),
                base64.b64decode(e["data"]),
                tuple(e.get("mail_options", ())),
            )
            for e in self.events()
            if e["event"] == "accepted"
        ]

    def rcpt_counts(self) -> collections.Counter[str]:
        """Accepted messages per envelope recipient (lowercased)."""
        return collections.Counter(
            rcpt.lower() for envelope in self.messages() for rcpt in envelope.rcpt_tos
        )


# --- the server process -------------------------------------------------------------------


class Recorder:
    """aiosmtpd handler: applies the control file's rules and records every answer."""

    def __init__(self, directory: Path) -> None:
        self.control = directory / CONTROL_FILE
        self.record = directory / RECORD_FILE
        self.used: collections.Counter[tuple[int, int]] = collections.Counter()
        if self.record.exists():  # a restarted server keeps counting where it stopped
            for line in self.record.read_text().splitlines():
                event = json.loads(line)
                if "rule" in event:
                    self.used[(event["version"], event["rule"])] += 1

    def mode(self) -> dict[str, Any]:
        try:
            value: dict[str, Any] = json.loads(self.control.read_text())
        except FileNotFoundError:
            return {"version": 0, "delay": 0.0, "rules": []}
        return value

    def write(self, event: dict[str, Any]) -> None:
        # One write on an O_APPEND descriptor: a line is whole even if the server dies.
        fd = os.open(self.record, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, (json.dumps(event) + "\n").encode())
        finally:
            os.close(fd)

    def matching(self, mode: dict[str, Any], stage: str, recipients: list[str]) -> dict[str, Any]:
        wanted = {r.lower() for r in recipients}
        for index, rule in enumerate(mode["rules"]):
            if rule["stage"] != stage:
                continue
            if rule["recipient"] is not None and rule["recipient"].lower() not in wanted:
                continue
            key = (mode["version"], index)
            if rule["count"] is not None and self.used[key] >= rule["count"]:
                continue
            self.used[key] += 1
            return {**rule, "version": mode["version"], "rule": index}
        return {}

    async def misbehave(self, server: Any, rule: dict[str, Any], **what: Any) -> str:
        event = "dropped" if rule["code"] is None else "refused"
        self.write({"event": event, **what, **rule})
        if rule["code"] is None:
            server.transport.abort()
            return "421 4.4.2 connection dropped"  # written to a closed transport: lost
        code = int(rule["code"])
        klass = code // 100
        reply = f"{code} {klass}.0.0 test server says {code}"
        if code == 421:
            await server.push(reply)
            server.transport.close()
        return reply

    async def handle_EHLO(  # noqa: N802  (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname  # the hook's duty (aiosmtpd)
        if self.mode().get("pipelining", True):
            # aiosmtpd reads commands one by one from its stream, so it answers pipelined
            # commands in order (RFC 2920); it only does not say so itself.
            responses.insert(-1, "250-PIPELINING")
        return responses

    async def handle_MAIL(  # noqa: N802  (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, mail_options: list[str]
    ) -> str:
        rule = self.matching(self.mode(), "mail", [])
        if rule:
            return await self.misbehave(server, rule, stage="mail", mail_from=address, rcpt_tos=[])
        envelope.mail_from = address  # the hook's duty (aiosmtpd)
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(  # noqa: N802  (aiosmtpd's hook name)
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        rule = self.matching(self.mode(), "rcpt", [address])
        if rule:
            return await self.misbehave(
                server, rule, stage="rcpt", mail_from=envelope.mail_from, rcpt_tos=[address]
            )
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        mode = self.mode()
        if mode["delay"]:
            await asyncio.sleep(mode["delay"])
        rule = self.matching(mode, "data", list(envelope.rcpt_tos))
        if rule:
            return await self.misbehave(
                server, rule, stage="data", mail_from=envelope.mail_from, rcpt_tos=envelope.rcpt_tos
            )
        self.write(
            {
                "event": "accepted",
                "mail_from": envelope.mail_from,
                "rcpt_tos": list(envelope.rcpt_tos),
                "mail_options": list(envelope.mail_options),
                "data": base64.b64encode(envelope.original_content).decode(),
            }
        )
        return "250 2.0.0 OK queued"


def serve(port: int, directory: Path) -> None:
    from aiosmtpd.smtp import SMTP, AuthResult  # the server process only

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    handler = Recorder(directory)

    def session() -> Any:
        mode = handler.mode()
        login = mode.get("login")
        auth: dict[str, Any] = {}
        if login is not None:
            wanted = (login[0].encode(), login[1].encode())

            def authenticator(*args: Any) -> Any:
                data = args[-1]
                given = (getattr(data, "login", None), getattr(data, "password", None))
                # handled=False: aiosmtpd answers 535 itself on a refusal.
                return AuthResult(success=given == wanted, handled=False)

            auth = {
                "authenticator": authenticator,
                "auth_required": True,
                "auth_require_tls": False,
            }
        return SMTP(
            handler,
            hostname="smtp.test",
            ident="leakguard test SMTP",
            enable_SMTPUTF8=mode.get("smtputf8", True),
            decode_data=False,
            loop=loop,
            **auth,
        )

    server = loop.run_until_complete(
        loop.create_server(
            session,
            HOST,
            port,
            reuse_address=True,
        )
    )
    print(f"READY {server.sockets[0].getsockname()[1]}", flush=True)  # noqa: T201
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    parent = os.getppid()

    def watch_parent() -> None:
        # The test run died without stopping us: do not outlive it.
        if os.getppid() != parent:
            loop.stop()
        else:
            loop.call_later(1.0, watch_parent)

    loop.call_later(1.0, watch_parent)
    loop.run_forever()
    server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--dir", type=Path, required=True)
    arguments = parser.parse_args()
    serve(arguments.port, arguments.dir)
