"""The batched hot loop (``LeakReader.batches`` and ``read_chunks``) against the per-record
path it replaced: the same keys, invalid line numbers, candidates and passwords, chunk by
chunk, on messy generated files."""

from __future__ import annotations

import itertools
import json
import random
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rbloom import Bloom

from jobs.ingest.pipeline import read_chunks
from jobs.reader.encoding import detect_encoding
from jobs.reader.formats import (
    _URL_PREFIX,
    COMBO_SEPARATORS,
    LeakRecord,
    RecordBatch,
    jsonl_batches,
    mailbox_list,
    name_role,
    split_mailboxes,
)
from jobs.reader.stream import LeakFormat, _line_batches, open_leak
from service.addresses import AddressKeys, CanonicalRules, EmailHasher, canonical_text
from service.leaks.candidates import AccountFilter
from service.leaks.progress import MAX_REPORTED_LINES

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HASHER = EmailHasher(b"batched-ingest-test-key-0123456789")
# The default rules half the time: the batched lane applies to them (and to any rules that
# lowercase the local part).
RULES = st.just(CanonicalRules()) | st.builds(
    CanonicalRules, st.booleans(), st.booleans(), st.booleans()
)

# --- the per-record path, as the reader and read_chunks were before batches ----------------

FIELD_ADDRESS = r"[\w!#$%&'*+/=?^`{|}~.-]+@[\w-]+(?:\.[\w-]+)+"


def reference_lines(lines: Iterable[str]) -> Iterator[LeakRecord]:
    for number, text in enumerate(lines, 1):
        text = text.strip()
        if text:
            yield LeakRecord(number, text if "@" in text or "%40" in text else None)


def reference_combo(lines: Iterable[str]) -> Iterator[LeakRecord]:
    """One combo line at a time: its record, or one per mailbox where the password is
    nothing but more mailboxes (recipients, ``a@x.org;b@y.org``) or the candidate names
    several."""
    for record in _reference_combo_records(lines):
        password, candidate = record.password, record.candidate
        more = mailbox_list(password) if password is not None and "@" in password else None
        if more is not None and candidate is not None:
            for mailbox in [*split_mailboxes(candidate), *more]:
                yield LeakRecord(record.line, mailbox)
        elif candidate is not None and candidate.count("@") > 1:
            for mailbox in split_mailboxes(candidate):
                yield LeakRecord(record.line, mailbox, password)
        else:
            yield record


def _reference_combo_records(lines: Iterable[str]) -> Iterator[LeakRecord]:
    fullmatch = re.compile(FIELD_ADDRESS).fullmatch
    for number, text in enumerate(lines, 1):
        at = text.find("@")
        if at < 0:
            if text.strip():
                yield LeakRecord(number, None)
            continue
        # The first separator after the '@' (',' too: a combo list written as CSV).
        cuts = [found for sep in ":;|," if (found := text.find(sep, at)) >= 0]
        cut = min(cuts) if cuts else -1
        head = text[:cut].strip() if cut >= 0 else text.strip()
        password = text[cut + 1 :] or None if cut >= 0 else None
        if fullmatch(head) is not None:
            yield LeakRecord(number, head, password)
            continue
        url = _URL_PREFIX.match(text)
        rest = text[url.end() :] if url is not None else text
        record: LeakRecord | None = None
        for separator in (*COMBO_SEPARATORS, ","):
            if separator not in rest or record is not None:
                continue
            fields = rest.split(separator)
            if url is not None:
                if fields[0].strip():
                    continue
                fields = fields[1:]
            for index, value in enumerate(fields):
                if "@" in value and fullmatch(value.strip()) is not None:
                    found = separator.join(fields[index + 1 :]) or None
                    record = LeakRecord(number, value.strip(), found)
                    break
        if record is None and url is not None:
            record = LeakRecord(number, None)
        yield record or LeakRecord(number, head, password)


def reference_jsonl(lines: Iterable[str]) -> Iterator[LeakRecord]:
    decode = json.JSONDecoder().raw_decode
    for number, text in enumerate(lines, 1):
        text = text.strip()
        if not text or text in {"[", "]", "],", "[]", "[],"}:
            continue
        if text[0] != "{":
            if text[0] != "[":
                yield LeakRecord(number, None)
                continue
            text = text[1:].lstrip()
        try:
            document, end = decode(text)
        except (ValueError, RecursionError):
            yield LeakRecord(number, None)
            continue
        if type(document) is dict and (end == len(text) or text[end:].strip() in {",", "]", "],"}):
            yield reference_json_record(number, document)
        else:
            yield LeakRecord(number, None)


def reference_json_record(number: int, document: dict[str, Any]) -> LeakRecord:
    def keys(value: dict[str, Any]) -> tuple[str | None, str | None]:
        address = password = None
        for key in value:
            role = name_role(key)
            if role == "address" and address is None:
                address = key
            elif role == "credential" and password is None:
                password = key
        return address, password

    address_key, password_key = keys(document)
    address = document.get(address_key) if address_key is not None else None
    password = document.get(password_key) if password_key is not None else None
    if address_key is None:
        for value in document.values():
            if type(value) is dict:
                nested_address, nested_password = keys(value)
                if nested_address is not None:
                    address = value[nested_address]
                    if password_key is None and nested_password is not None:
                        password = value[nested_password]
                    break
    if type(password) is int:
        password = str(password)
    return LeakRecord(
        number,
        address.strip() if isinstance(address, str) and "@" in address else None,
        password if isinstance(password, str) and password else None,
    )


REFERENCES = {
    LeakFormat.LINES: reference_lines,
    LeakFormat.COMBO: reference_combo,
    LeakFormat.JSONL: reference_jsonl,
}


def chunk_sizes(first: int, size: int) -> Iterator[int]:
    limit = min(first, size)
    while True:
        yield limit
        limit = min(2 * limit, size)


def per_record_chunks(
    records: list[LeakRecord], keys: AddressKeys, accounts: AccountFilter, first: int, size: int
) -> list[tuple[int, list[bytes], list[int], set[bytes], dict[bytes, str]]]:
    """What the per-record read_chunks made of ``records``: per chunk its records, keys,
    invalid lines, candidate keys and first password per candidate."""
    chunks = []
    sizes = chunk_sizes(first, size)
    start = 0
    while start < len(records):
        part = records[start : start + next(sizes)]
        start += len(part)
        digests: list[bytes] = []
        invalid: list[int] = []
        candidates: set[bytes] = set()
        passwords: dict[bytes, str] = {}
        for record in part:
            address = (
                canonical_text(record.candidate, keys.rules)
                if record.candidate is not None
                else None
            )
            if address is None:
                invalid.append(record.line)
                continue
            key = keys.hasher.hash(address)
            digests.append(key)
            if key in accounts:
                candidates.add(key)
                if record.password and key not in passwords:
                    passwords[key] = record.password
        chunks.append((len(part), digests, invalid, candidates, passwords))
    return chunks


# --- messy input ----------------------------------------------------------------------------

EDGE_LOCALS = [
    *["john.smith", "INFO", "a+b", "a.+b", ".a", "a.", "a..b", "+x", "x" * 70, "jürgen"],
    *["\u212a", "A.B+C.D", "a+.b"],
]
EDGE_DOMAINS = [
    *["gmail.com", "GoogleMail.com", "example.org", "x.test", "b--c.com", "a.b", "x.1com"],
    *["xn--bcher-kva.de", "bücher.de", "localhost", "-a.com", "sub.example.co.uk"],
    *["d" * 200 + ".com", "y.local", "Example.ORG", "a..com"],
]
EDGE_WRAPPERS = [
    *["{}", " {} ", "\t{}", "<{}>", "Name <{}>", "mailto:{}", "{}.", '"{}"', "{}\x00"],
]
LOCALS = st.text(alphabet="abcXYZ09._+-'", min_size=1, max_size=10) | st.sampled_from(EDGE_LOCALS)
DOMAINS = st.sampled_from(EDGE_DOMAINS)
WRAPPERS = st.sampled_from(["{}", "{}", *EDGE_WRAPPERS])
ADDRESSES = st.builds(
    lambda wrap, local, domain: wrap.format(f"{local}@{domain}"), WRAPPERS, LOCALS, DOMAINS
)
JUNK = st.sampled_from(
    ["", "   ", "no-at", "%40", "a%40b.com", "@", "a@@b.com", "=?utf-8?q?a=40b.com?=", "\x00"]
) | st.text(max_size=12)
PASSWORDS = st.text(alphabet="ab1 :;|@,", max_size=6)


@st.composite
def combo_lines(draw: st.DrawFn) -> str:
    text = draw(ADDRESSES | JUNK)
    if draw(st.booleans()):
        text += draw(st.sampled_from([":", ";", "|", ","])) + draw(PASSWORDS)
    if draw(st.integers(0, 9)) == 0:
        text = draw(st.sampled_from(["https://site.example/login:", "user:", "a@b.com;"])) + text
    return text


@st.composite
def jsonl_lines(draw: st.DrawFn) -> str:
    address = draw(ADDRESSES | JUNK)
    password = draw(PASSWORDS | st.integers(0, 99) | st.none())
    shape = draw(st.integers(0, 6))
    if shape == 0:
        return json.dumps({"user": {"Email": address}, "pass": password})
    if shape == 1:
        return "[" + json.dumps({"email": address}) + ","
    if shape == 2:
        return '{"email": "' + address  # broken
    if shape == 3:
        return draw(JUNK)
    return json.dumps({"id": 1, "email": address, "password": password})


LINES = {
    LeakFormat.LINES: ADDRESSES | JUNK,
    LeakFormat.COMBO: combo_lines(),
    LeakFormat.JSONL: jsonl_lines(),
}
ENDINGS = st.sampled_from(["\n", "\n", "\r\n", "\r"])


@st.composite
def leak_files(draw: st.DrawFn, fmt: LeakFormat) -> bytes:
    lines = draw(st.lists(LINES[fmt], min_size=1, max_size=80))
    out = bytearray()
    for text in lines:
        # Mostly UTF-8; sometimes a legacy 8-bit line; now and then an over-long one.
        if draw(st.integers(0, 14)) == 0:
            out += text.encode("cp1252", "replace") + b"\xe9"
        else:
            out += text.encode("utf-8", "surrogatepass")
        if draw(st.integers(0, 59)) == 0:
            out += b"x" * 70_000
        out += draw(ENDINGS).encode()
    return bytes(out)


@pytest.mark.parametrize("fmt", list(REFERENCES))
@given(data=st.data(), rules=RULES, first=st.integers(1, 9), size=st.integers(1, 40))
@PROPERTY
def test_batched_path_equals_per_record_path(
    fmt: LeakFormat, data: st.DataObject, rules: CanonicalRules, first: int, size: int
) -> None:
    content = data.draw(leak_files(fmt))
    # The reference splits UTF-8 lines; a short file of NULs may read as UTF-16 (the same
    # decoding for both paths, so out of this test's scope).
    assume(detect_encoding(content)[0] == "utf-8")
    skip = data.draw(st.integers(0, 5))
    keys = AddressKeys(hasher=HASHER, rules=rules)
    blocks = [content[start : start + 65536] for start in range(0, len(content), 65536)]
    lines = [text for batch in _line_batches(iter(blocks)) for text in batch]
    expected_records = list(REFERENCES[fmt](lines))[skip:]
    # Accounts: about half the valid keys, so candidates and passwords are exercised.
    bloom = Bloom(1024, 0.001)
    for record in expected_records:
        address = canonical_text(record.candidate, rules) if record.candidate else None
        if address is not None and keys.hasher.hash(address)[0] % 2 == 0:
            bloom.add(keys.hasher.hash(address))
    accounts = AccountFilter(bloom, 0)
    expected = per_record_chunks(expected_records, keys, accounts, first, size)

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "leak.txt"
        path.write_bytes(content)
        with open_leak(path, fmt) as reader:
            assert list(reader.records(skip=skip)) == expected_records
            chunks = list(
                read_chunks(
                    keys, reader.batches(skip=skip), size, [], accounts=accounts, first=first
                )
            )
    got = [
        (chunk.records, list(chunk.keys), chunk.invalid_lines, chunk.candidates, chunk.passwords)
        for chunk in chunks
    ]
    assert got == expected
    for chunk in chunks:
        counters = chunk.counters
        assert (counters.lines, counters.valid) == (chunk.records, len(chunk.keys))
        assert counters.invalid == chunk.records - len(chunk.keys)


def test_batches_of_a_jsonl_line_array_keep_line_numbers() -> None:
    lines = ["[", '{"email": "a@x.com"},', "", '{"email": "b@x.com"}', "]"]
    (batch,) = jsonl_batches([lines], skip=0)
    assert isinstance(batch, RecordBatch)
    # The brackets are no records: a file of valid objects has no invalid line.
    assert list(batch.records()) == [LeakRecord(2, "a@x.com"), LeakRecord(4, "b@x.com")]


@pytest.mark.parametrize("fmt", list(REFERENCES))
@pytest.mark.parametrize(
    "rules", [CanonicalRules(*flags) for flags in itertools.product([True, False], repeat=3)]
)
def test_batched_path_equals_per_record_path_on_every_edge_at_every_place(
    fmt: LeakFormat, rules: CanonicalRules, tmp_path: Path
) -> None:
    # Every edge local part at every edge domain in every wrapper, shuffled so that each
    # stands first, last and inside batches; a password behind every other one.
    texts = [
        wrapper.format(f"{local}@{domain}")
        for local, domain, wrapper in itertools.product(EDGE_LOCALS, EDGE_DOMAINS, EDGE_WRAPPERS)
    ]
    random.Random(18).shuffle(texts)
    if fmt is LeakFormat.COMBO:
        texts = [f"{text}:pw{i}" if i % 2 else text for i, text in enumerate(texts)]
    elif fmt is LeakFormat.JSONL:
        texts = [json.dumps({"email": text, "password": f"pw{i}"}) for i, text in enumerate(texts)]
    path = tmp_path / "leak.txt"
    path.write_text("\n".join(["x@y.org", *texts]) + "\n", encoding="utf-8")
    keys = AddressKeys(hasher=HASHER, rules=rules)
    bloom = Bloom(100_000, 0.001)
    expected_records = list(REFERENCES[fmt](["x@y.org", *texts]))
    for record in expected_records:
        address = canonical_text(record.candidate, rules) if record.candidate else None
        if address is not None:
            bloom.add(keys.hasher.hash(address))
    accounts = AccountFilter(bloom, 0)
    expected = per_record_chunks(expected_records, keys, accounts, 7, 500)
    with open_leak(path, fmt) as reader:
        chunks = list(read_chunks(keys, reader.batches(), 500, [], accounts=accounts, first=7))
    got = [
        (chunk.records, list(chunk.keys), chunk.invalid_lines, chunk.candidates, chunk.passwords)
        for chunk in chunks
    ]
    # A chunk keeps at most MAX_REPORTED_LINES invalid line numbers (fewer once the run's
    # report holds some: none here).
    assert got == [(n, k, lines[:MAX_REPORTED_LINES], c, p) for n, k, lines, c, p in expected]
