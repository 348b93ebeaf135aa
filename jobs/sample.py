"""A realistic, synthetic sample for the demo: accounts and a leaked mass mail.

The leak imitates the model case: one newsletter sent with every recipient in its To:
header, folded over many lines, with display names (some MIME encoded-words), mixed case,
``googlemail.com`` spellings and ``+tags``, so that the canonical form has work to do.
Deterministic for a given seed, so the demo can be run twice with the same result.
"""

from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass
from email.header import Header
from pathlib import Path

from service.addresses import CanonicalAddress, canonicalize_email
from service.private_files import private_dir, write_private

FIRST_NAMES = [
    "anna",
    "ben",
    "carla",
    "david",
    "emma",
    "felix",
    "greta",
    "hannah",
    "ivan",
    "julia",
    "karl",
    "lena",
    "max",
    "nina",
    "oskar",
    "paula",
    "quentin",
    "rosa",
    "stefan",
    "tina",
    "ulrich",
    "vera",
    "walter",
    "xenia",
    "yusuf",
    "zoe",
    "jürgen",
    "sophie",
    "noah",
    "mia",
    "liam",
    "olivia",
    "lucas",
    "amelia",
    "leon",
    "chloe",
    "mateo",
    "sara",
    "elias",
    "ida",
    "jonas",
    "maria",
    "tom",
    "eva",
]
LAST_NAMES = [
    "smith",
    "mueller",
    "schmidt",
    "schneider",
    "fischer",
    "weber",
    "meyer",
    "wagner",
    "becker",
    "schulz",
    "hoffmann",
    "koch",
    "richter",
    "klein",
    "wolf",
    "schroeder",
    "neumann",
    "schwarz",
    "zimmermann",
    "braun",
    "krueger",
    "hofmann",
    "hartmann",
    "lange",
    "schmitt",
    "werner",
    "krause",
    "meier",
    "lehmann",
    "garcia",
    "martin",
    "bernard",
    "dubois",
    "rossi",
    "ferrari",
]
DOMAINS = (
    ("gmail.com", 30),
    ("yahoo.com", 8),
    ("outlook.com", 10),
    ("web.de", 8),
    ("gmx.de", 8),
    ("proton.me", 5),
    ("posteo.de", 3),
    ("icloud.com", 6),
    ("fastmail.com", 2),
    ("bücher.de", 1),
    ("example-corp.com", 4),
)
LOCALES = ("en", "en", "en", "de", "de", "fr", "es", None)


@dataclass(frozen=True, slots=True)
class SampleFiles:
    accounts_csv: Path
    leak_eml: Path
    accounts: int
    exposed_accounts: int


def generate_sample(
    directory: Path, *, accounts: int = 3000, exposed: int = 300, seed: int = 2019
) -> SampleFiles:
    """Write ``accounts.csv`` and ``leaked-mass-mail.eml`` into ``directory``.

    ``exposed`` of the accounts appear in the mail, among about three times as many
    addresses of people who are not our users.
    """
    rng = random.Random(seed)  # noqa: S311  (synthetic demo data, not a secret)
    private_dir(directory)  # the sample's addresses are made up, but look real
    people = _people(rng, accounts)
    accounts_csv = directory / "accounts.csv"
    handle = io.StringIO(newline="")
    writer = csv.writer(handle)
    writer.writerow(["external_id", "email", "locale", "plan"])
    for index, (address, locale) in enumerate(people, start=1):
        writer.writerow([f"u-{index:06d}", address, locale or "", rng.choice(["free", "pro"])])
    # What a real export carries too: rows that are not accounts.
    writer.writerow(["u-broken-1", "not-an-address", "en", "free"])
    writer.writerow(["", "someone@example-corp.com", "en", "free"])
    write_private(accounts_csv, handle.getvalue().encode("utf-8"))
    leaked = [address for address, _ in rng.sample(people, min(exposed, len(people)))]
    ours = {_canonical(address) for address, _ in people}
    strangers: list[str] = []
    while len(strangers) < exposed * 3:
        # Strangers must not be our users in disguise: the demo's count stays exact.
        stranger = _address(rng, f"x{len(strangers)}")
        if _canonical(stranger) not in ours:
            strangers.append(stranger)
    recipients = [_surface_form(rng, a) for a in leaked] + strangers
    rng.shuffle(recipients)
    leak_eml = directory / "leaked-mass-mail.eml"
    write_private(leak_eml, _mass_mail(recipients))
    return SampleFiles(accounts_csv, leak_eml, len(people), len(leaked))


def _canonical(address: str) -> str:
    canonical = canonicalize_email(address)
    return canonical.address if isinstance(canonical, CanonicalAddress) else address


def _people(rng: random.Random, count: int) -> list[tuple[str, str | None]]:
    seen: set[str] = set()
    people: list[tuple[str, str | None]] = []
    while len(people) < count:
        address = _address(rng, str(len(people)))
        if address.lower() in seen:
            continue
        seen.add(address.lower())
        people.append((address, rng.choice(LOCALES)))
    # Two accounts with one canonical address: the login service sees two people.
    dotted = next((p for p in people if p[0].endswith("@gmail.com") and "." in p[0][:-10]), None)
    if dotted is not None and count >= 2:
        twin = dotted[0].split("@")[0].replace(".", "") + "@gmail.com"
        index = 1 if people[0] is dotted else 0
        people[index] = (twin, people[index][1])
    return people


def _address(rng: random.Random, salt: str) -> str:
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    domain = rng.choices([d for d, _ in DOMAINS], weights=[w for _, w in DOMAINS])[0]
    style = rng.randrange(5)
    local = (
        f"{first}.{last}",
        f"{first}{last}{rng.randrange(100)}",
        f"{first[0]}{last}",
        f"{first}_{last}{salt[-2:]}",
        f"{last}.{first}{rng.randrange(1000)}",
    )[style]
    return f"{local}@{domain}"


def _surface_form(rng: random.Random, address: str) -> str:
    """How a leak spells an address: case, googlemail, +tags, display names."""
    local, domain = address.rsplit("@", 1)
    if domain == "gmail.com" and rng.random() < 0.3:
        domain = "googlemail.com"
    if rng.random() < 0.2:
        local = f"{local}+newsletter"
    if rng.random() < 0.3:
        local, domain = local.upper(), domain.upper()
    bare = f"{local}@{domain}"
    name = " ".join(part.capitalize() for part in address.split("@")[0].split(".")[:2])
    choice = rng.random()
    if choice < 0.4:
        return bare
    if choice < 0.8:
        return f'"{name}" <{bare}>'
    encoded = Header(name + " \u2713", "utf-8").encode()
    return f"{encoded} <{bare}>"


def _mass_mail(recipients: list[str]) -> bytes:
    # Folded by hand, one address per line, as the leaked original was: a mail library's
    # header folding would be fine too, but this is what arrives from the paste sites.
    per_header = 1000
    to_lines = []
    for start in range(0, len(recipients), per_header):
        batch = recipients[start : start + per_header]
        to_lines.append("To: " + ",\r\n ".join(batch))
    cc = recipients[:3]
    headers = [
        "Return-Path: <bounce@mailer.exchange.example>",
        "From: Exchange Newsletter <news@exchange.example>",
        *to_lines,
        "Cc: " + ",\r\n ".join(cc),
        "Subject: Important update on your account",
        "Date: Fri, 01 Nov 2019 09:12:44 +0000",
        "Message-ID: <20191101091244.1@mailer.exchange.example>",
        "MIME-Version: 1.0",
        'Content-Type: text/plain; charset="utf-8"',
        "Content-Transfer-Encoding: 8bit",
    ]
    body = "Dear customer,\r\n\r\nwe are upgrading our platform this weekend.\r\n"
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8")
