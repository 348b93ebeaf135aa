"""The one bare mailbox of a value: comments, display names, mailto: and address lists."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from service.addresses import DEFAULT_RULES, InvalidAddress, canonicalize_email
from service.addresses.mailbox import (
    SEVERAL_ADDRESSES,
    Mailbox,
    _bare_mailbox_dressed,
    bare_mailbox,
    mailboxes_named,
    strip_comments,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a@b.example (comment)", "a@b.example  "),
        ("(c1)a(c2)@b.example", " a@b.example"),
        ("a@b.example (outer (inner) more)", "a@b.example  "),
        ('"(not a comment)"@b.example', '"(not a comment)"@b.example'),
        (r"a@b.example (escaped \) paren)", "a@b.example  "),
        ("a@b.example (unbalanced", "a@b.example (unbalanced"),
        ("no comment@b.example", "no comment@b.example"),
    ],
)
def test_strip_comments_removes_rfc5322_comments_only(text: str, expected: str) -> None:
    assert strip_comments(text) == expected


@pytest.mark.parametrize(
    ("text", "count"),
    [
        ("a@example.org", 1),
        ("Alice <a@example.org>", 1),
        ('"a@example.net" <a@example.org>', 1),
        ("a@example.org (b@example.net)", 1),
        ('"quoted local"@example.org', 1),
        ("mailto:a@example.org?subject=hello", 1),
        ("mailto:a@example.org?cc=b@example.net", 2),
        ("mailto:a@example.org?bcc=b%40example.net", 2),
        ("mailto:a@example.org,b@example.net", 2),
        ("<a@example.org>, <b@example.net>", 2),
        ("a@example.org b@example.net c@example.com", 3),
        ("no address", 0),
    ],
)
def test_mailboxes_named_counts_addresses_outside_names_and_comments(text: str, count: int) -> None:
    assert mailboxes_named(text) == count


def test_a_value_naming_two_mailboxes_is_refused() -> None:
    assert bare_mailbox("a@example.org; b@example.net", DEFAULT_RULES) == SEVERAL_ADDRESSES


def test_the_bare_mailbox_keeps_the_spelling_and_carries_the_canonical_form() -> None:
    mailbox = bare_mailbox("John <John.Smith+news@GoogleMail.com>", DEFAULT_RULES)
    assert mailbox == Mailbox(
        "John.Smith+news@GoogleMail.com", canonicalize_email("johnsmith@gmail.com")
    )


PIECES = [
    "a@example.org",
    "B.c+d@Example.NET",
    "<",
    ">",
    '"',
    "'",
    "(",
    ")",
    ",",
    ";",
    " ",
    "mailto:",
    "?cc=",
    "%40",
    "Bob",
    "=?utf-8?q?B=C3=B6b?=",
    "@",
    ".",
    "\\",
]
DRESSINGS = st.lists(st.sampled_from(PIECES), max_size=12).map("".join) | st.text(max_size=300)


@given(DRESSINGS)
@example('"(")a@example.org')  # quotes off, then a comment: bare was '(")a@example.org'
@settings(max_examples=500, deadline=None)
def test_bare_mailbox_never_raises_and_its_result_is_its_own_bare_mailbox(text: str) -> None:
    mailbox = bare_mailbox(text, DEFAULT_RULES)
    if isinstance(mailbox, InvalidAddress):
        return
    again = bare_mailbox(mailbox.bare, DEFAULT_RULES)
    assert again == mailbox
    assert canonicalize_email(text) == mailbox.canonical or "(" in text


# Values the plain-addr-spec lane takes, and their near misses: trailing dots, "=?" words,
# dashes and dots at the ends, every atext character, case.
PLAIN_PIECES = [*"aZ09.-_+=?'`{|}~!#$%&*/^@", "=?utf-8?q?x?=", "xn--bcher-kva", ".."]


@given(st.lists(st.sampled_from(PLAIN_PIECES), max_size=14).map("".join) | DRESSINGS)
@settings(max_examples=1000, deadline=None)
def test_the_plain_addr_spec_lane_answers_exactly_what_the_dressed_path_answers(
    text: str,
) -> None:
    assert bare_mailbox(text, DEFAULT_RULES) == _bare_mailbox_dressed(text, DEFAULT_RULES)
