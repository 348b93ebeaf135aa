"""Canonical form, fast/slow path agreement, hashing and masking of email addresses."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import string
import unicodedata
from collections.abc import Callable

import idna
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains as provisional_domains

from service.addresses import (
    DEFAULT_RULES,
    MAX_INPUT_CHARS,
    AddressKeys,
    CanonicalAddress,
    CanonicalRules,
    EmailHasher,
    InvalidAddress,
    canonical_texts,
    canonicalize_email,
    clean_address,
    mask_email,
)
from service.addresses import canonical as canonical_module
from service.addresses.canonical import (
    _canonicalize_fast,
    _canonicalize_slow,
    _canonicalize_validated,
    _domain_verdict,
    _local_verdict,
    _validate,
    _validate_split,
)


def _canonicalize_reference(
    candidate: str, rules: CanonicalRules
) -> CanonicalAddress | InvalidAddress:
    """The slow path with full validator calls only: the oracle of the cached one."""
    return _canonicalize_validated(candidate, rules, _validate)


ALL_RULES = [CanonicalRules(*flags) for flags in itertools.product([True, False], repeat=3)]
RULES = st.builds(CanonicalRules, st.booleans(), st.booleans(), st.booleans())
PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# The slow path against its reference; run once with max_examples=20_000 when touching it.
EQUIVALENCE = settings(PROPERTY, max_examples=250)


def canonical(text: str, rules: CanonicalRules = DEFAULT_RULES) -> str | None:
    result = canonicalize_email(text, rules)
    return result.address if isinstance(result, CanonicalAddress) else None


def same_verdict(
    left: CanonicalAddress | InvalidAddress, right: CanonicalAddress | InvalidAddress
) -> bool:
    if isinstance(left, InvalidAddress) or isinstance(right, InvalidAddress):
        return isinstance(left, InvalidAddress) and isinstance(right, InvalidAddress)
    return left == right


# --- strategies --------------------------------------------------------------------------

ATEXT = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
# Letters whose case mapping is irregular: Turkish dotted/dotless i, Greek final sigma,
# titlecase DZ, the ff ligature, the Kelvin sign, plus a combining acute accent.
UNICODE_LETTERS = (
    "\u00e4\u00f6\u00fc\u00df\u00e9\u00c9\u0130\u0131\u0416\u0436"
    "\u03a3\u03c3\u03c2\u01c5\ufb00\u212a\u4e2d\u00f1\u00d1\u0301"
)
ASCII_DOMAINS = [
    "example.com",
    "Example.COM",
    "gmail.com",
    "GoogleMail.com",
    "googlemail.com",
    "sub.mail.example.org",
    "x.c",
    "x.1com",
    "x.com1",
    "123.456",
    "ab--c.com",
    "xn--bcher-kva.de",
    "XN--BCHER-KVA.DE",
    "xn--abc.com",
    "mail.test",
    "localhost",
    "x.localhost",
    "x.onion",
    "x.example",
    "a-b.co",
    "-ab.com",
    "ab-.com",
    "x.xn--p1ai",
    "b",
    "a" * 63 + ".com",
    "a" * 64 + ".com",
    ".".join(["a" * 60] * 4) + ".com",
]
UNICODE_DOMAINS = [
    "bücher.de",
    "BÜCHER.DE",
    "münchen.de",
    "例え.jp",
    "\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
    "x。com",
    "1.אב.com",
    "straße.de",
]
ASCII_WRAPPERS = [
    "{}",
    "<{}>",
    "John <{}>",
    '"Smith, John" <{}>',
    '"a <b" <{}>',
    "'{}'",
    '"{}"',
    "mailto:{}",
    "MAILTO:{}?subject=hi",
    "<mailto:{}>",
    "  {} ,",
    "<<{}>>;",
    "{}.",
    "\t{}\n",
    "=?utf-8?q?J=C3=BCrgen?= <{}>",
    "=?UTF-8?B?SsO8cmdlbg==?= <{}>",
]
WRAPPERS = [*ASCII_WRAPPERS, "\u00a0{}\u3000", "Jürgen <{}>", "«{}»"]
RECASE: list[Callable[[str], str]] = [str, str.lower, str.upper, str.swapcase, str.title]


@st.composite
def local_parts(draw: st.DrawFn, *, ascii_only: bool) -> str:
    alphabet = ATEXT if ascii_only else ATEXT + UNICODE_LETTERS
    atom = st.text(alphabet=alphabet, min_size=1, max_size=8)
    local = ".".join(draw(st.lists(atom, min_size=1, max_size=4)))
    if draw(st.booleans()):
        local += "+" + draw(st.text(alphabet=alphabet + ".", max_size=6))
    edit = draw(st.sampled_from(["", "", "", "+lead", ".lead", "trail.", "double", "long"]))
    if edit == "+lead":
        local = "+" + local
    elif edit == ".lead":
        local = "." + local
    elif edit == "trail.":
        local += "."
    elif edit == "double":
        local = local.replace(".", "..", 1)
    elif edit == "long":
        local = (local * 70)[:70]
    return draw(st.sampled_from(RECASE))(local)


@st.composite
def address_texts(draw: st.DrawFn, *, ascii_only: bool) -> str:
    local = draw(local_parts(ascii_only=ascii_only))
    domain_pool = ASCII_DOMAINS if ascii_only else ASCII_DOMAINS + UNICODE_DOMAINS
    domain = draw(st.sampled_from(domain_pool) | provisional_domains(max_length=40))
    address = f"{local}@{draw(st.sampled_from(RECASE))(domain)}"
    return draw(st.sampled_from(ASCII_WRAPPERS if ascii_only else WRAPPERS)).format(address)


ADDRESS_TEXTS = address_texts(ascii_only=False)
ASCII_ADDRESS_TEXTS = address_texts(ascii_only=True) | st.emails()
NASTY_TEXT = st.text(
    alphabet=st.sampled_from(list("<>\"'@.,;:+ =?_-aAzZ09mailto\x00\ud800ü\u0301\u00a0\n")),
    max_size=40,
)
ANY_TEXT = st.text() | NASTY_TEXT | st.text(st.characters(exclude_categories=()))


# --- cleaning ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  "John Smith" <John.Smith+news@GoogleMail.com>, ', "John.Smith+news@GoogleMail.com"),
        ("mailto:a@b.org?subject=x", "a@b.org"),
        ("MailTo:a@b.org", "a@b.org"),
        ("<mailto:a@b.org?x=1>", "a@b.org"),
        ("<<a@b.org>>;", "a@b.org"),
        ("'a@b.org'", "a@b.org"),
        ('"a@b.org"', "a@b.org"),
        ("a@b.org.,;", "a@b.org"),
        ("\u00a0a@b.org\u3000", "a@b.org"),
        ('"a <b" <x@y.com>', "x@y.com"),
        ("=?utf-8?q?J=C3=BCrgen?= <juergen@example.de>", "juergen@example.de"),
        ("=?UTF-8?B?SsO8cmdlbg==?= <j@x.de>", "j@x.de"),
        ("=?utf-8?b?Sm9obiA8am9obkB4LmNvbT4=?=", "john@x.com"),
        ("=?no-such-charset?q?x?= <a@b.com>", "a@b.com"),
        ("Jürgen <jürgen@bücher.de>", "jürgen@bücher.de"),
        ("'tis@x.com", "'tis@x.com"),
        ("=?utf-8?q?a?=@x.com", "=?utf-8?q?a?=@x.com"),
        ("a?b@x.com", "a?b@x.com"),
    ],
)
def test_clean_address_strips_surface_forms(text: str, expected: str) -> None:
    assert clean_address(text) == expected


def test_clean_address_of_non_str_is_empty() -> None:
    assert clean_address(None) == ""  # type: ignore[arg-type]


def test_clean_address_stays_fast_on_hostile_nesting() -> None:
    hostile = "'\"" * 50_000 + "a@b.com" + "\"'" * 50_000
    assert isinstance(clean_address(hostile), str)


# --- canonical form ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('  "John Smith" <John.Smith+news@GoogleMail.com>, ', "johnsmith@gmail.com"),
        ("mailto:a@b.org?subject=x", "a@b.org"),
        ("<<a@b.org>>;", "a@b.org"),
        ("'a@b.org'", "a@b.org"),
        ("=?utf-8?q?J=C3=BCrgen?= <juergen@example.de>", "juergen@example.de"),
        ("user@bücher.de", "user@xn--bcher-kva.de"),
        ("user@xn--bcher-kva.de", "user@xn--bcher-kva.de"),
        ("USER@BÜCHER.DE", "user@xn--bcher-kva.de"),
        ("+tag@example.com", "+tag@example.com"),
        ("a+b+c@x.com", "a@x.com"),
        ("J.S@GMAIL.COM", "js@gmail.com"),
        ("Jürgen@Example.com", "jürgen@example.com"),
        ("ÄNDI@x.de", "ändi@x.de"),
        ("a@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com", "a@example.com"),
        ("a@x。com", "a@x.com"),
        ("a.+b@gmail.com", "a@gmail.com"),
        ("x" * 70 + "@x.com", "x" * 70 + "@x.com"),
        ("=?utf-8?q?a?=@x.com", "=?utf-8?q?a?=@x.com"),
        ("e.\u0301x@gmail.com", "\u00e9x@gmail.com"),
        ("ΑΣ+x@x.com", "ας@x.com"),
    ],
)
def test_canonical_form_with_default_rules(text: str, expected: str) -> None:
    assert canonical(text) == expected


@pytest.mark.parametrize(
    ("rules", "text", "expected"),
    [
        (CanonicalRules(drop_subaddress=False), "a+b@x.com", "a+b@x.com"),
        (CanonicalRules(drop_subaddress=False), "J.S+x@googlemail.com", "js+x@gmail.com"),
        (CanonicalRules(lowercase_local=False), "John@Example.COM", "John@example.com"),
        (CanonicalRules(lowercase_local=False), "J.S+x@GoogleMail.com", "JS@gmail.com"),
        (CanonicalRules(gmail_dots=False), "j.s@googlemail.com", "j.s@googlemail.com"),
        (CanonicalRules(gmail_dots=False), "J.S+x@gmail.com", "j.s@gmail.com"),
        (CanonicalRules(False, False, False), "J.S+x@GoogleMail.COM", "J.S+x@googlemail.com"),
    ],
)
def test_each_rule_switched_off_keeps_exactly_its_part(
    rules: CanonicalRules, text: str, expected: str
) -> None:
    assert canonical(text, rules) == expected


def test_unicode_and_punycode_domains_are_one_domain() -> None:
    forms = {canonical(t) for t in ["user@bücher.de", "user@xn--bcher-kva.de", "USER@BÜCHER.DE"]}
    assert forms == {"user@xn--bcher-kva.de"}


@pytest.mark.parametrize("text", ["INFO+x@example.com", "Abuse@example.com", "IN.FO@gmail.com"])
def test_role_mailbox_names_come_out_lowercase_even_without_lowercasing(text: str) -> None:
    # email-validator lowercases RFC 2142 names, so the canonical form must already be lower.
    result = canonical(text, CanonicalRules(lowercase_local=False))
    assert result is not None
    assert result.split("@")[0].islower()


def test_rules_that_break_the_address_give_unstable() -> None:
    assert canonicalize_email("a.+tag@x.com") == InvalidAddress("unstable")
    # Lowercasing U+0130 doubles its length and pushes the address past 254 bytes.
    grows = "\u0130" * 120 + "@x.com"
    assert canonicalize_email(grows) == InvalidAddress("unstable")
    assert canonical(grows, CanonicalRules(lowercase_local=False)) == grows
    assert canonical("a.+tag@x.com", CanonicalRules(drop_subaddress=False)) == "a.+tag@x.com"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("<>", "empty"),
        ("no-at-sign", "no_at_sign"),
        ("a@b", "syntax"),
        ("a@localhost", "syntax"),
        ("a@@b.com", "syntax"),
        ("a..b@x.com", "syntax"),
        ("a@x.test", "syntax"),
        ('"a b"c@x.com', "syntax"),  # a quoted string, then more local part
        ("a@[192.0.2.1]", "syntax"),
        ("a\x00b@x.com", "syntax"),
        ("\ud800@x.com", "syntax"),
        ("a@x.com\ud800", "syntax"),
        ("a" * (MAX_INPUT_CHARS + 1), "too_long"),
        ("a@" + "b" * 995 + ".com", "too_long"),
        ("a" * 250 + "@x.com", "syntax"),
    ],
)
def test_invalid_inputs_give_invalid_address(text: str, reason: str) -> None:
    assert canonicalize_email(text) == InvalidAddress(reason)


@pytest.mark.parametrize("value", [None, b"a@b.com", 5])
def test_non_str_gives_invalid_address(value: object) -> None:
    assert canonicalize_email(value) == InvalidAddress("not_a_string")  # type: ignore[arg-type]


@given(text=ANY_TEXT, rules=RULES)
@PROPERTY
def test_canonicalize_never_raises(text: str, rules: CanonicalRules) -> None:
    assert isinstance(canonicalize_email(text, rules), CanonicalAddress | InvalidAddress)


@given(text=ADDRESS_TEXTS, rules=RULES)
@PROPERTY
def test_canonical_form_maps_to_itself(text: str, rules: CanonicalRules) -> None:
    result = canonicalize_email(text, rules)
    if isinstance(result, CanonicalAddress):
        assert canonicalize_email(result.address, rules) == result
        assert result.domain.isascii()
        assert result.domain == result.domain.lower()


@pytest.mark.parametrize("rules", ALL_RULES)
def test_address_like_texts_are_mostly_valid(rules: CanonicalRules) -> None:
    # Guards the idempotence property against a strategy that only ever yields junk.
    texts = [w.format("John.Smith+x@Example.com") for w in WRAPPERS if w != "«{}»"]
    assert all(canonical(t, rules) is not None for t in texts)


# --- fast path ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "candidate",
    ["john@example.com", "John.Smith+news@GoogleMail.com", "a_b-c@sub.Example.ORG", "x@x.1com"],
)
def test_fast_path_takes_ordinary_addresses(candidate: str) -> None:
    assert _canonicalize_fast(candidate, DEFAULT_RULES) is not None


@pytest.mark.parametrize(
    "domain",
    [
        "x.com1",
        "123.456",
        "ab--c.com",
        "xn--bcher-kva.de",
        "x.test",
        "a.localhost",
        "b",
        "a" * 64 + ".com",
        "x.example",
        "x.c",
        "bücher.de",
    ],
)
@pytest.mark.parametrize("rules", ALL_RULES)
def test_fast_path_agrees_with_validator_on_edge_domains(
    domain: str, rules: CanonicalRules
) -> None:
    candidate = f"Info.x+y@{domain}"
    fast = _canonicalize_fast(candidate, rules)
    slow = _canonicalize_slow(candidate, rules)
    assert fast is None or fast == slow
    assert same_verdict(canonicalize_email(candidate, rules), slow)


@pytest.mark.parametrize(
    "candidate",
    [
        "a" * 64 + "@x.com",
        "a" * 65 + "@x.com",
        "a@" + ".".join(["b" * 61] * 4) + ".co",
        "a@" + ".".join(["b" * 61] * 4) + ".com",
        "a" * 60 + "@" + ".".join(["b" * 61] * 3) + ".com",
        "a" * 64 + "@" + ".".join(["b" * 61] * 3) + ".com",
    ],
)
@pytest.mark.parametrize("rules", ALL_RULES)
def test_fast_path_agrees_with_validator_on_length_limits(
    candidate: str, rules: CanonicalRules
) -> None:
    fast = _canonicalize_fast(candidate, rules)
    assert fast is None or fast == _canonicalize_slow(candidate, rules)
    assert same_verdict(canonicalize_email(candidate, rules), _canonicalize_slow(candidate, rules))


@given(text=ASCII_ADDRESS_TEXTS, rules=RULES)
@PROPERTY
def test_fast_path_equals_slow_path(text: str, rules: CanonicalRules) -> None:
    candidate = clean_address(text)
    slow = _canonicalize_slow(candidate, rules)
    fast = _canonicalize_fast(candidate, rules)
    if fast is not None:
        assert fast == slow
    assert same_verdict(canonicalize_email(text, rules), slow)


# --- the fast lane: a raw line taken before any cleaning --------------------------------

# Shapes the lane has to leave to the slow path, or match it exactly on: quoted local parts,
# comments, IP literals, trailing dots, empty atoms, "mailto:", encoded words, spaces.
RAW_LINE_SHAPES = [
    "{local}@{domain}",
    '"{local}"@{domain}',
    '"{local} x"@{domain}',
    "{local}(comment)@{domain}",
    "{local}@{domain} (Name)",
    "{local}@[192.0.2.1]",
    "{local}@[IPv6:2001:db8::1]",
    "{local}@{domain}.",
    "{local}.@{domain}",
    ".{local}@{domain}",
    "{local}..x@{domain}",
    "{local}@{domain}..",
    "mailto:{local}@{domain}",
    "=?utf-8?q?x?=@{domain}",
    " {local}@{domain}",
    "{local}@-{domain}",
    "{local}@{domain}-",
]


@st.composite
def raw_lines(draw: st.DrawFn) -> str:
    local = draw(local_parts(ascii_only=True))
    domain = draw(st.sampled_from(ASCII_DOMAINS) | provisional_domains(max_length=40))
    domain = draw(st.sampled_from(RECASE))(domain)
    return draw(st.sampled_from(RAW_LINE_SHAPES)).format(local=local, domain=domain)


def slow_lane(text: str, rules: CanonicalRules) -> CanonicalAddress | InvalidAddress:
    """canonicalize_email with no fast lane at all: clean, then the validator itself."""
    candidate = clean_address(text)
    if not candidate:
        return InvalidAddress("empty")
    if "@" not in candidate:
        return InvalidAddress("no_at_sign")
    return _canonicalize_reference(candidate, rules)


@given(text=raw_lines() | ASCII_ADDRESS_TEXTS, rules=RULES)
@PROPERTY
def test_fast_lane_on_raw_lines_equals_slow_path(text: str, rules: CanonicalRules) -> None:
    result = canonicalize_email(text, rules)
    if _canonicalize_fast(text, rules) is not None:
        # What the lane takes, cleaning would have given back unchanged.
        assert clean_address(text) == text
        assert result == slow_lane(text, rules)
    assert same_verdict(result, slow_lane(text, rules))


@pytest.mark.parametrize(
    "text",
    ["John.Smith+news@GoogleMail.com", "INFO@example.org", "a_b-c@sub.Example.ORG", "x@x.1com"],
)
def test_plain_ascii_line_skips_cleaning_and_validator(
    text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    expected = canonicalize_email(text)

    def refuse(*args: object) -> None:
        raise AssertionError("the fast lane should not need this")

    monkeypatch.setattr(canonical_module, "clean_address", refuse)
    monkeypatch.setattr(canonical_module, "_canonicalize_slow", refuse)
    assert canonicalize_email(text) == expected


# --- the batched fast lane: canonical_texts over a whole batch ---------------------------

# Lines the batch-wide checks must each refuse or settle exactly: dot-atom breaks at every
# place, tags, Gmail forms, special-use and "--" domains, length limits, role names,
# characters that lowercase into ASCII (the Kelvin sign), empty atoms around a tag.
BATCH_EDGES = [
    "a.+tag@x.com",
    "+tag@x.com",
    ".a@x.com",
    "a.@x.com",
    "a..b@x.com",
    "a+b.@x.com",
    "a+.b@x.com",
    "a+@x.com",
    "a++b@x.com",
    "A.B+C.D@GMAIL.COM",
    "a.b@googlemail.com",
    "a.b@GoogleMail.Com",
    "x@gmail.com.evil.org",
    "x@evilgmail.com",
    "x@y.test",
    "x@a.local",
    "x@localhost",
    "x@a--b.com",
    "x@xn--bcher-kva.de",
    "x@-a.com",
    "x@a-.com",
    "x@a..com",
    "x@.a.com",
    "x@a.com.",
    "x@x.1com",
    "x@x.com1",
    "INFO@x.org",
    "Info+x@x.org",
    "\u212a@x.com",
    "k\u212a@x.com",
    "a" * 64 + "@x.com",
    "a" * 65 + "@x.com",
    "a@" + "b" * 63 + ".com",
    "a@" + "b" * 64 + ".com",
    "a" * 60 + "@" + "d" * 60 + "." * 1 + "e" * 60 + "." + "f" * 60 + ".com",
    "x@" + ".".join(["d" * 40] * 5) + ".com",
    "a@b@c.com",
    "a b@x.com",
    " a@x.com",
    "a@x.com ",
    "mailto:a@x.com",
    "<a@x.com>",
    "a@x.com\x00",
    "\x00",
    "@",
    "a@",
    "@x.com",
    "%40",
    "=?utf-8?q?a=40b.com?=",
]


@given(
    texts=st.lists(
        st.sampled_from(BATCH_EDGES) | raw_lines() | ASCII_ADDRESS_TEXTS | ANY_TEXT,
        min_size=1,
        max_size=30,
    ),
    rules=RULES,
)
@PROPERTY
def test_batched_lane_equals_canonical_text_line_for_line(
    texts: list[str], rules: CanonicalRules
) -> None:
    assert canonical_texts(texts, rules) == [canonical(text, rules) for text in texts]


@pytest.mark.parametrize("rules", ALL_RULES)
def test_batched_lane_on_every_edge_at_every_place(rules: CanonicalRules) -> None:
    # First, last and middle of a batch: the checks look at line starts and ends.
    for shift in range(len(BATCH_EDGES)):
        texts = BATCH_EDGES[shift:] + BATCH_EDGES[:shift]
        assert canonical_texts(texts, rules) == [canonical(text, rules) for text in texts]
        assert canonical_texts(texts[:1], rules) == [canonical(texts[0], rules)]


# --- slow path against its reference ----------------------------------------------------


def reference_canonicalize(
    text: str, rules: CanonicalRules = DEFAULT_RULES
) -> CanonicalAddress | InvalidAddress:
    """Return what canonicalize_email returned before the cached slow path."""
    if not isinstance(text, str):
        return InvalidAddress("not_a_string")
    if len(text) > MAX_INPUT_CHARS:
        return InvalidAddress("too_long")
    candidate = clean_address(text)
    if not candidate:
        return InvalidAddress("empty")
    if "@" not in candidate:
        return InvalidAddress("no_at_sign")
    fast = _canonicalize_fast(candidate, rules)
    return fast if fast is not None else _canonicalize_reference(candidate, rules)


def assert_same_as_reference(text: str, rules: CanonicalRules) -> None:
    # The raw text, exercising quotes, brackets and spaces, and what cleaning leaves of it.
    for candidate in {text, clean_address(text)}:
        assert _validate_split(candidate) == _validate(candidate)
        assert _canonicalize_slow(candidate, rules) == _canonicalize_reference(candidate, rules)
    assert canonicalize_email(text, rules) == reference_canonicalize(text, rules)


# Letters from several scripts, with the characters whose case mapping or normalization is
# irregular, combining marks, joiners, 4-byte characters and full-width forms.
SCRIPT_RANGES = [
    (0x00C0, 0x017F),  # Latin-1 Supplement, Latin Extended-A
    (0x0370, 0x03FF),  # Greek
    (0x0400, 0x04FF),  # Cyrillic
    (0x05D0, 0x05EA),  # Hebrew (right to left)
    (0x0620, 0x0669),  # Arabic letters and Arabic-Indic digits
    (0x0900, 0x097F),  # Devanagari, with nukta letters that NFC decomposes
    (0x0E01, 0x0E3A),  # Thai
    (0x1100, 0x1175),  # Hangul jamo, which NFC composes
    (0xAC00, 0xAC40),  # Hangul syllables
    (0x4E00, 0x4E40),  # CJK
    (0x0300, 0x036F),  # combining marks
    (0xFF01, 0xFF5E),  # full-width forms
    (0x1F600, 0x1F64F),  # emoji
]
IRREGULAR = [
    *UNICODE_LETTERS,
    *"\u212b\u2126\u00c5\u0345\u1e9e\u0149\u01f0\u0390\u1fd3\ufb01\u2163\u24b6\u017f",
    *"\u200c\u200d\u00ad\u3002\uff0e\uff61\u00a0\u2028\u0000\u007f\u0085",
    "\U0001d400",
    "\U00010400",
]
SCRIPT_CHARS = st.one_of(
    *(st.characters(min_codepoint=low, max_codepoint=high) for low, high in SCRIPT_RANGES),
    st.sampled_from(IRREGULAR),
)
UNICODE_ATOM = st.text(st.sampled_from(ATEXT) | SCRIPT_CHARS, min_size=1, max_size=10)


@st.composite
def unicode_local_parts(draw: st.DrawFn) -> str:
    local = ".".join(draw(st.lists(UNICODE_ATOM, min_size=1, max_size=4)))
    if draw(st.booleans()):
        local += "+" + draw(st.text(st.sampled_from(ATEXT + ".") | SCRIPT_CHARS, max_size=6))
    local = draw(st.sampled_from(RECASE))(local)
    edit = draw(st.sampled_from(["", "", "", "nfd", "nfc-grows", "role", "dots"]))
    if edit == "nfd":
        local = unicodedata.normalize("NFD", local)
    elif edit == "nfc-grows":
        # U+0958 is excluded from composition: NFC turns its 3 bytes into 6.
        local += "\u0958"
    elif edit == "role":
        local = draw(st.sampled_from(["INFO", "Abuse", "in.fo", "Info+x", "\u017fupport"]))
    elif edit == "dots":
        local = draw(st.sampled_from([".", ""])) + local + draw(st.sampled_from([".", "..", ""]))
    return local


LABEL_SEPARATORS = [".", ".", ".", "\u3002", "\uff0e", "\uff61"]
TLDS = ["com", "de", "c", "1com", "com1", "рф", "中国", "xn--p1ai", "test", "local", "example"]


@st.composite
def idn_domains(draw: st.DrawFn) -> str:
    label = st.text(
        st.sampled_from(string.ascii_letters + string.digits + "-") | SCRIPT_CHARS,
        min_size=1,
        max_size=20,
    )
    labels = draw(st.lists(label, min_size=1, max_size=3))
    labels.append(draw(st.sampled_from(TLDS) | label))
    domain = draw(st.sampled_from(LABEL_SEPARATORS)).join(labels)
    form = draw(st.sampled_from(["unicode", "unicode", "punycode", "upper", "nfd"]))
    if form == "punycode":
        with contextlib.suppress(idna.IDNAError, UnicodeError):
            domain = idna.encode(domain, uts46=True).decode("ascii")
    elif form == "upper":
        domain = domain.upper()
    elif form == "nfd":
        domain = unicodedata.normalize("NFD", domain)
    return domain


ANY_DOMAIN = (
    st.sampled_from(ASCII_DOMAINS + UNICODE_DOMAINS)
    | provisional_domains(max_length=60)
    | idn_domains()
)


@st.composite
def unicode_addresses(draw: st.DrawFn) -> str:
    local = draw(unicode_local_parts() | local_parts(ascii_only=False))
    return f"{local}@{draw(ANY_DOMAIN)}"


# Characters the validator splits on, or rejects, or that change a length in UTF-8 bytes.
JUNK_PIECES = st.sampled_from(
    [
        *["a", "Z", "ü", "中", "\U0001f600", ".", "..", "@", "@@", '"', "<", ">", "-", "+", " "],
        *["\\", "xn--", "[192.0.2.1]", "[IPv6:::1]", "\u0301", "\u0338", "\u3002", "=?"],
        *["\x00", "\ud800", "example.com", "gmail.com", "bücher.de", "localhost", "x.test", "a.b"],
    ]
)
JUNK = st.lists(JUNK_PIECES, max_size=12).map("".join)


def long_domain(size: int) -> str:
    """Return a valid ASCII domain of exactly ``size`` characters (200 to 253)."""
    head = ("b" * 63 + ".") * ((size - 6) // 64)
    return head + "c" * (size - len(head))


# Byte widths 1 to 4, a pair NFC shortens, a letter NFC lengthens, one lowercasing lengthens.
FILLERS = ["a", "x.", "ü", "中", "\U0001f600", "e\u0301", "\u0958", "\u0130", "INFO"]


@st.composite
def near_limit_addresses(draw: st.DrawFn) -> str:
    """An address whose UTF-8 length, in some form, is within a few bytes of 254."""
    domain = draw(
        st.sampled_from(
            [
                "x.com",
                "bücher.de",
                "xn--bcher-kva.de",
                "中" * 20 + ".com",
                "xn--fiqaaaaaaaaaaaaaaaaaaa.com",
                ".".join(["b" * 61] * 3) + ".com",
                ".".join(["b" * 63] * 3) + ".co",
                ".".join(["ü" * 20] * 5) + ".de",
                long_domain(251),
                long_domain(252),
                long_domain(253),
            ]
        )
        | ANY_DOMAIN
    )
    filler = draw(st.sampled_from(FILLERS))
    target = 254 - 1 - len(domain.encode("utf-8", "surrogatepass")) + draw(st.integers(-6, 6))
    local = ""
    while len(local.encode("utf-8")) + len(filler.encode("utf-8")) <= max(target, 1):
        local += filler
    local += draw(st.sampled_from(["", "a", "ü", "+tag", "+ü"]))
    local = local.strip(".") or "a"
    return f"{local}@{draw(st.sampled_from(RECASE))(domain)}"


EQUIVALENCE_TEXTS = (
    unicode_addresses()
    | unicode_addresses().flatmap(lambda a: st.sampled_from(WRAPPERS).map(lambda w: w.format(a)))
    | near_limit_addresses()
    | JUNK
    | ADDRESS_TEXTS
    | ASCII_ADDRESS_TEXTS
    | ANY_TEXT
)


@given(text=unicode_addresses(), rules=RULES)
@EQUIVALENCE
def test_slow_path_equals_reference_on_unicode_addresses(text: str, rules: CanonicalRules) -> None:
    assert_same_as_reference(text, rules)


@given(text=near_limit_addresses(), rules=RULES)
@EQUIVALENCE
def test_slow_path_equals_reference_near_length_limits(text: str, rules: CanonicalRules) -> None:
    assert_same_as_reference(text, rules)


@given(text=JUNK | ANY_TEXT, rules=RULES)
@EQUIVALENCE
def test_slow_path_equals_reference_on_junk(text: str, rules: CanonicalRules) -> None:
    assert_same_as_reference(text, rules)


@given(text=EQUIVALENCE_TEXTS, rules=RULES)
@EQUIVALENCE
def test_slow_path_equals_reference_on_everything(text: str, rules: CanonicalRules) -> None:
    assert_same_as_reference(text, rules)


@pytest.mark.parametrize(
    "text",
    [
        "jürgen.neumann@icloud.com",
        "Jürgen.Neumann@iCloud.com",
        "user@bücher.de",
        "USER@BÜCHER.DE",
        "user@xn--bcher-kva.de",
        "user@XN--BCHER-KVA.DE",
        "ivan..schulz@x.com",
        "a@@b.com",
        "a@b@c.com",
        "@x.com",
        "a@",
        '"a"@x.com',
        'a"b@x.com',
        '"a@b"@x.com',
        "a<b@x.com",
        "a@b<c.com",
        "John <a@x.com>",
        "a@[192.0.2.1]",
        "a@\u0301x.com",
        "INFO@bücher.de",
        "İnfo@bücher.de",
        "e.\u0301x@gmail.com",
        "\u0130" * 120 + "@bücher.de",
        "ü" * 123 + "@x.com",
        "ü" * 124 + "@x.com",
        "\u0958" * 41 + "@x.com",
        "\u0958" * 42 + "@x.com",
        "e\u0301" * 83 + "@x.com",
        "x" * 223 + "@xn--fiqaaaaaaaaaaaaaaaaaaa.com",
        "x" * 189 + "@xn--fiqaaaaaaaaaaaaaaaaaaa.com",
        "x" * 190 + "@xn--fiqaaaaaaaaaaaaaaaaaaa.com",
        "x" * 189 + "@" + "中" * 20 + ".com",
        "x" * 190 + "@" + "中" * 20 + ".com",
        "a@" + ".".join(["ü" * 20] * 5) + ".de",
        # Only the address as given is too long: its domain shrinks under normalization.
        "x" * 246 + "@\u212a.com",
        "x" * 247 + "@\u212a.com",
        "x" * 228 + "@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
        "x" * 229 + "@\uff45\uff58\uff41\uff4d\uff50\uff4c\uff45.com",
        "a@" + long_domain(252),
        "ab@" + long_domain(252),
        "ü@" + long_domain(252),
        "a@" + long_domain(253),
        "A@" + long_domain(251).upper(),
    ],
)
@pytest.mark.parametrize("rules", ALL_RULES)
def test_slow_path_equals_reference_on_edge_cases(text: str, rules: CanonicalRules) -> None:
    assert_same_as_reference(text, rules)


@pytest.mark.parametrize(
    "domain", ["x.com", "bücher.de", "xn--fiqaaaaaaaaaaaaaaaaaaa.com", "中" * 20 + ".com"]
)
def test_cached_verdicts_do_not_depend_on_call_order(domain: str) -> None:
    # A domain verdict is cached from a short address and must not let a long one through,
    # nor the other way round; the same for local parts.
    local = "ü" * 100
    texts = [f"a@{domain}", f"{local}@{domain}", f"{local}@x.com", f"a{local}@{domain}"]
    for order in (texts, texts[::-1]):
        _domain_verdict.cache_clear()
        _local_verdict.cache_clear()
        for text in order:
            assert _validate_split(text) == _validate(text)
            assert canonicalize_email(text) == reference_canonicalize(text)


# --- hashing -----------------------------------------------------------------------------

KEY = bytes(range(32))


def test_hash_is_keyed_blake2b_of_utf8() -> None:
    expected = hashlib.blake2b(
        "jürgen@x.de".encode(), key=KEY, digest_size=16, person=b"leakguard-email"
    ).digest()
    assert EmailHasher(KEY).hash("jürgen@x.de") == expected


def test_hash_is_deterministic_and_16_bytes() -> None:
    first, second = EmailHasher(KEY), EmailHasher(KEY)
    assert first.hash("a@b.com") == second.hash("a@b.com")
    assert len(first.hash("a@b.com")) == 16


def test_different_keys_give_different_hashes() -> None:
    assert EmailHasher(KEY).hash("a@b.com") != EmailHasher(KEY[::-1]).hash("a@b.com")


@pytest.mark.parametrize("size", [0, 1, 15])
def test_short_key_is_rejected(size: int) -> None:
    with pytest.raises(ValueError, match="at least 16"):
        EmailHasher(b"k" * size)


def test_non_bytes_key_is_rejected() -> None:
    with pytest.raises(TypeError):
        EmailHasher("k" * 32)  # type: ignore[arg-type]


def test_long_key_is_reduced_with_blake2b() -> None:
    long_key = bytes(range(200))
    reduced = hashlib.blake2b(long_key, digest_size=64).digest()
    assert EmailHasher(long_key).hash("a@b.com") == EmailHasher(reduced).hash("a@b.com")
    assert EmailHasher(b"k" * 64).hash("a@b.com") != EmailHasher(b"k" * 65).hash("a@b.com")


def test_address_key_is_equal_for_surface_forms_of_one_address() -> None:
    hasher = EmailHasher(KEY)
    keys = AddressKeys(hasher=hasher, rules=DEFAULT_RULES)
    digest = keys.key('"J. Smith" <J.Smith+leak@GoogleMail.com>;')
    assert digest is not None
    assert digest == keys.key("jsmith@gmail.com") == hasher.hash("jsmith@gmail.com")


def test_address_key_of_invalid_text_is_none() -> None:
    assert AddressKeys(hasher=EmailHasher(KEY), rules=DEFAULT_RULES).key("not an address") is None


def test_hasher_repr_hides_the_key() -> None:
    assert KEY.hex() not in repr(EmailHasher(KEY))


# --- masking -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("john@example.com", "j***@example.com"),
        ('"John" <john@example.com>', "j***@example.com"),
        ("j@example.com", "***@example.com"),
        ("a*@example.com", "***@example.com"),
        ("jürgen@bücher.de", "j***@bücher.de"),
        ("not an address", "***"),
        ("a@b", "***"),
        ("@example.com", "***"),
        ("john@", "***"),
        ("a@b@c.com", "***"),
        ("john@exa\nmple.com", "***"),
        ("", "***"),
        ("x" * 2000 + "@example.com", "***"),
    ],
)
def test_mask_email(text: str, expected: str) -> None:
    assert mask_email(text) == expected


@pytest.mark.parametrize("value", [None, b"john@example.com", 5])
def test_mask_email_of_non_str_is_stars(value: object) -> None:
    assert mask_email(value) == "***"  # type: ignore[arg-type]


@given(address=st.emails() | address_texts(ascii_only=False).map(clean_address))
@PROPERTY
def test_mask_never_shows_the_local_part(address: str) -> None:
    assume(clean_address(address) == address and "@" in address)
    local, _, domain = address.rpartition("@")
    assume(len(local) >= 2)
    masked = mask_email(address)
    if local not in f"***@{domain}":
        assert local not in masked


@given(text=ANY_TEXT)
@PROPERTY
def test_mask_and_clean_never_raise(text: str) -> None:
    assert isinstance(mask_email(text), str)
    assert isinstance(clean_address(text), str)
    digest = AddressKeys(hasher=EmailHasher(KEY), rules=DEFAULT_RULES).key(text)
    assert digest is None or len(digest) == 16


# --- issue 12: the surface forms leaks really use -------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        # RFC 5322 section 3.2.2: a comment is no part of an address, wherever CFWS may stand
        ("erin@example.com (Erin Example)", "erin@example.com"),
        ("(work) erin@example.com", "erin@example.com"),
        ("erin(x)@example.com", "erin@example.com"),
        ("erin@(y)example.com", "erin@example.com"),
        ("erin@example.com (nested (comment) here)", "erin@example.com"),
        ("Erin (home) <erin@example.com>", "erin@example.com"),
        # RFC 5322 section 3.4.1: a quoted local part that needs no quotes is the same mailbox
        ('"grace"@example.com', "grace@example.com"),
        ('"Grace.Hopper"@example.com', "grace.hopper@example.com"),
        ('<"grace"@example.com>', "grace@example.com"),
        ('Grace <"grace+tag"@example.com>', "grace@example.com"),
        # invisible characters around an address are not part of it
        ("\ufeffsybil@example.com", "sybil@example.com"),
        ("sybil@example.com\u200b", "sybil@example.com"),
        ("\u2060sybil@example.com\u00ad", "sybil@example.com"),
        ("\u00a0sybil@example.com\u00a0", "sybil@example.com"),
        # control characters too: the NUL padding of fixed-width fields and dumped C strings
        ("sybil@example.com\x00\x00\x00", "sybil@example.com"),
        ("\x00sybil@example.com", "sybil@example.com"),
        ("Sybil <sybil@example.com>\x00", "sybil@example.com"),
        ("sybil@example.com\x7f\x85", "sybil@example.com"),
        ("sybil@b\u00fccher.de\x00", "sybil@xn--bcher-kva.de"),
        # inside a domain, as IDNA maps them (UTS #46: ignored code points go)
        ("sybil@exa\u200bmple.com", "sybil@example.com"),
        ("sybil@b\u00fc\u00adcher.de", "sybil@xn--bcher-kva.de"),
        # RFC 6068 section 2: mailto URIs are percent-encoded
        ("mailto:victor%40example.com", "victor@example.com"),
        ("mailto:walter%2Bnews@example.com", "walter@example.com"),
        ("MAILTO:x%2Ey@example.com", "x.y@example.com"),
    ],
)
def test_surface_forms_of_real_leaks_fold_to_the_account_address(text: str, canonical: str) -> None:
    result = canonicalize_email(text)
    assert isinstance(result, CanonicalAddress), result
    assert result.address == canonical


def test_a_control_character_inside_an_address_still_makes_it_invalid() -> None:
    assert isinstance(canonicalize_email("sybil@exa\x00mple.com"), InvalidAddress)
    assert isinstance(canonicalize_email("syb\x00il@example.com"), InvalidAddress)
    assert isinstance(canonicalize_email("\x00"), InvalidAddress)  # LONG_LINE, the reader's


def test_a_local_part_that_needs_its_quotes_stays_quoted_and_valid() -> None:
    result = canonicalize_email('"John Doe"@example.com')
    assert result == CanonicalAddress('"john doe"', "example.com")
    assert canonicalize_email(result.address) == result
    # "+" and "." inside quotes are text: no rule folds them
    assert canonicalize_email('"a b+tag"@gmail.com') == CanonicalAddress('"a b+tag"', "gmail.com")


def test_percent_encoding_no_longer_makes_a_valid_but_wrong_address() -> None:
    """Before: mailto:walter%2Bnews@example.com was the valid walter%2bnews@example.com."""
    assert canonicalize_email("mailto:walter%2Bnews@example.com") == canonicalize_email(
        "walter@example.com"
    )
