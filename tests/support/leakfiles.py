"""Leak files and account files, byte for byte as they reach an operator.

A folded mass mail, a combo list, a gzip of lines, an accounts CSV: the writers produce
what the readers must cope with; ``ADDRESS`` finds a clear address in whatever a run wrote.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# An address as output might carry it; a masked one (j***@example.com) does not match.
ADDRESS = re.compile(r"[\w.+'-]+@[\w-]+(?:\.[\w-]+)+")


def write_lines(path: Path, lines: Iterable[str], *, compress: bool = False) -> Path:
    """Write one record per line (LF, trailing newline); gzip it when ``compress``."""
    data = ("\n".join(lines) + "\n").encode("utf-8")
    path.write_bytes(gzip.compress(data, mtime=0) if compress else data)
    return path


def write_accounts_csv(path: Path, accounts: Mapping[str, str]) -> Path:
    """Write an ``accounts import`` CSV of external_id -> address as given."""
    rows = ["external_id,email", *(f"{ext},{email}" for ext, email in accounts.items())]
    return write_lines(path, rows)


def write_jsonl(path: Path, lines: Iterable[dict[str, Any] | str]) -> Path:
    """Write JSON lines; a str is written as is (a broken line)."""
    return write_lines(path, (x if isinstance(x, str) else json.dumps(x) for x in lines))


def write_mass_mail(
    path: Path,
    *,
    sender: str,
    to: Sequence[str],
    cc: Sequence[str],
    body: str = "Dear customers,\r\nour service moves to a new address.\r\n",
) -> Path:
    """Write a mass mail with every recipient visible, folded as a mail client folds it.

    Each header holds one address per physical line after the first (RFC 5322 folding,
    alternating space and tab), CRLF line ends, like the BitMEX mail of 2019.
    """

    def folded(name: str, addresses: Sequence[str]) -> str:
        parts = [f"{name}: {addresses[0]}"]
        for index, address in enumerate(addresses[1:]):
            parts[-1] += ","
            parts.append(("\t" if index % 2 else " ") + address)
        return "\r\n".join(parts)

    headers = [
        "Return-Path: <bounce@mailer.exchange.example>",
        "Received: from mailer.exchange.example by mx.example.net; Fri, 1 Nov 2019 10:00:00 +0000",
        f"From: Exchange Support <{sender}>",
        folded("To", to),
        folded("Cc", cc),
        "Subject: Important: changes to your account",
        "Date: Fri, 1 Nov 2019 10:00:00 +0000",
        "Message-ID: <mass-mail-1@exchange.example>",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
    ]
    path.write_bytes(("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8"))
    return path


@dataclass(frozen=True, slots=True)
class BigLeak:
    path: Path
    accounts: dict[str, str]
    lines: int


def write_big_leak(
    directory: Path, *, accounts: int, lines: int, leaked_accounts: int, seed: int
) -> BigLeak:
    """Write ``accounts`` accounts and a plain-lines leak of ``lines`` lines.

    ``leaked_accounts`` of the accounts appear in it (each several times, in surface
    variants); the rest are strangers, most of them more than once, and about one line in
    a hundred is not an address.
    """
    rng = random.Random(seed)
    account_set = {f"acct-{i:05d}": f"member{i}@example.com" for i in range(accounts)}
    leaked = rng.sample(range(accounts), leaked_accounts)
    strangers = lines // 2
    text: list[str] = []
    for _ in range(lines):
        roll = rng.random()
        if roll < 0.005:
            i = rng.choice(leaked)
            text.append(
                rng.choice(
                    (
                        f"member{i}@example.com",
                        f"MEMBER{i}+promo@Example.com",
                        f'"Member" <member{i}@example.com>',
                    )
                )
            )
        elif roll < 0.015:
            text.append(rng.choice(("#N/A", "member@", f"broken-{rng.randrange(10**6)}")))
        else:
            text.append(f"user{rng.randrange(strangers)}@leak-victims.net")
    for i in leaked:  # every chosen account really is in the file
        text.insert(rng.randrange(len(text)), f"member{i}@example.com")
    path = write_lines(directory / "big-leak.txt", text)
    return BigLeak(path, account_set, len(text))
