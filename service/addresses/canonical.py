"""The canonical form of an email address.

Account addresses and leaked addresses both pass through ``canonicalize_email`` with the
same ``CanonicalRules``, so the surface forms a leak uses ("Name <Addr>", ``mailto:``,
quotes, case, ``+tags``, Gmail dots) still meet the account they belong to. Only the keyed
hash of the canonical form is stored (``service.addresses.keys``).
"""

from __future__ import annotations

import email.errors
import functools
import re
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.header import decode_header, make_header
from typing import Final, cast
from urllib.parse import unquote

import idna
from email_validator import (
    SPECIAL_USE_DOMAIN_NAMES,
    EmailNotValidError,
    ValidatedEmail,
    validate_email,
)
from email_validator.rfc_constants import CASE_INSENSITIVE_MAILBOX_NAMES, EMAIL_MAX_LENGTH
from email_validator.syntax import validate_email_local_part

__all__ = [
    "DEFAULT_RULES",
    "MAX_INPUT_CHARS",
    "CanonicalAddress",
    "CanonicalRules",
    "InvalidAddress",
    "canonical_text",
    "canonical_texts",
    "canonicalize_email",
    "clean_address",
    "strip_comments",
]


@dataclass(frozen=True, slots=True)
class CanonicalRules:
    """Choose which provider conventions the canonical form folds together.

    Every rule only ever merges addresses; switching one off never splits two addresses that
    the validator alone would treat as one.
    """

    lowercase_local: bool = True
    drop_subaddress: bool = True
    gmail_dots: bool = True


DEFAULT_RULES: Final = CanonicalRules()


@dataclass(frozen=True, slots=True)
class CanonicalAddress:
    """Hold one address in canonical form.

    ``domain`` is lowercase ASCII (IDNA A-labels); ``canonicalize_email(self.address)``
    returns an equal object under the rules that produced it.
    """

    local: str
    domain: str

    @property
    def address(self) -> str:
        """Return ``local@domain``."""
        return f"{self.local}@{self.domain}"


@dataclass(frozen=True, slots=True)
class InvalidAddress:
    """Say why a text is not an address, as a short stable slug.

    Slugs: ``not_a_string``, ``empty``, ``too_long``, ``no_at_sign``, ``syntax`` (rejected by
    email-validator) and ``unstable`` (valid, but the rules turn it into something invalid or
    into a form that would not map to itself, e.g. ``a.+tag@x.com`` -> ``a.@x.com``).
    """

    reason: str


MAX_INPUT_CHARS: Final = 1000

_NOT_A_STRING: Final = InvalidAddress("not_a_string")
_EMPTY: Final = InvalidAddress("empty")
_TOO_LONG: Final = InvalidAddress("too_long")
_NO_AT_SIGN: Final = InvalidAddress("no_at_sign")
_SYNTAX: Final = InvalidAddress("syntax")
_UNSTABLE: Final = InvalidAddress("unstable")

_GMAIL_DOMAINS: Final = frozenset({"gmail.com", "googlemail.com"})
# Snapshots of email-validator's module-level lists; the library reads them live, so a
# caller that mutates them at runtime would make the fast path disagree with the slow one
# (and the slow path's cached verdicts disagree with the library).
_SPECIAL_USE_NAMES: Final = frozenset(SPECIAL_USE_DOMAIN_NAMES)
_SPECIAL_USE_SUFFIXES: Final = tuple("." + name for name in SPECIAL_USE_DOMAIN_NAMES)
_CASE_INSENSITIVE_NAMES: Final = frozenset(CASE_INSENSITIVE_MAILBOX_NAMES)

# RFC 5322 dot-atom with ASCII atext, then RFC 1123 host labels. The final label has to end
# in a letter because that is email-validator's TLD test (it accepts "x.1com", not "x.com1").
_ATEXT: Final = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]"
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_TLD: Final = r"(?:[A-Za-z0-9][A-Za-z0-9-]{0,61})?[A-Za-z]"
_FAST_ADDRESS: Final = re.compile(
    rf"({_ATEXT}+(?:\.{_ATEXT}+)*)@((?:{_LABEL}\.)+{_TLD})",
    re.ASCII,
)
_FAST_MAX_LOCAL: Final = 64
_FAST_MAX_ADDRESS: Final = 254
# The batched fast lane (``canonical_texts``) settles the lines of a whole batch that
# ``_fast_parts`` takes, with a few whole-batch passes instead of one call per line: one
# regular expression for the shape (exactly one "@", atext and dots before it, at most 64 of
# them, host characters after it), searches for what the shape lets through but a dot-atom
# forbids (a leading "." or "+", "..", a "." before the "@" or before the tag's "+", so that
# cutting the tag never leaves a trailing dot), and a cached verdict per distinct domain for
# the rest of _fast_parts's conditions.
_PLAIN_SHAPE: Final = re.compile(
    rf"^[A-Za-z0-9!#$%&'*+/=?^_`{{|}}~.-]{{1,{_FAST_MAX_LOCAL}}}@([A-Za-z0-9.-]+)$",
    re.ASCII | re.MULTILINE,
)
_BAD_DOT: Final = re.compile(r"\.[.@+]")
_BAD_START: Final = re.compile(r"\n[.+]")
# A domain this long leaves room for a local part of at most 64 within 254 characters.
_PLAIN_MAX_DOMAIN: Final = _FAST_MAX_ADDRESS - _FAST_MAX_LOCAL - 1
# From the first "+" of a line to its "@": the subaddress the rules drop. Bounded: a settled
# line is at most 254 characters, and an unbounded run from every "+" of a long line without
# an "@" would be quadratic.
_TAG: Final = re.compile(rf"\+[^@\n]{{0,{_FAST_MAX_ADDRESS}}}@")
_GMAIL_ENDS: Final = ("@gmail.com", "@googlemail.com")
_OTHER_LINE: Final = re.compile(r"[^\n]+")

# Distinct domains and local parts the slow path remembers; about 220 and 150 bytes an entry,
# so at most about 16 MiB together.
_DOMAIN_CACHE_SIZE: Final = 65536
_LOCAL_CACHE_SIZE: Final = 16384
_PROBE_LOCAL: Final = "a"

_MAX_CLEAN_ROUNDS: Final = 32
_MAX_NESTING: Final = 16
_QUOTED_STRING: Final = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)
_QUOTED_LOCAL: Final = re.compile(r'"(?:[^"\\]|\\.)*"@[^"@]+\Z', re.S)
_COMMENT: Final = re.compile(r"\((?:[^()\\]|\\.)*\)", re.S)
_SPACE_AROUND_AT: Final = re.compile(r"\s*@\s*")
_TRAILING_PUNCTUATION: Final = ".,;"
_MAILTO: Final = "mailto:"


def decode_encoded_words(text: str) -> str:
    """Return ``text`` with RFC 2047 encoded words decoded, or unchanged if that fails."""
    # decode_header re-encodes plain text with raw-unicode-escape, which turns any non-Latin-1
    # character outside an encoded word into a literal "\uXXXX"; only pure-ASCII input
    # round-trips exactly, and an encoded word is ASCII by definition.
    if not text.isascii():
        return text
    try:
        return str(make_header(decode_header(text)))
    except (ValueError, LookupError, email.errors.MessageError):
        # Bad base64, unknown charsets and undecodable bytes all mean "not really MIME".
        return text


def _invisible(char: str) -> bool:
    """Whitespace of any kind, a format character (Unicode category Cf: a byte-order mark
    left mid-file by concatenated exports, zero-width spaces and joiners, soft hyphens from
    copy and paste) or a control character (Cc: the NUL padding of fixed-width fields and
    C strings dumped whole). None is part of an address."""
    return char.isspace() or unicodedata.category(char) in _INVISIBLE_CATEGORIES


_INVISIBLE_CATEGORIES: Final = frozenset({"Cf", "Cc"})


def _strip_trailing_junk(text: str) -> str:
    """Return ``text`` without trailing invisible characters and ``.,;``."""
    end = len(text)
    while end and (text[end - 1] in _TRAILING_PUNCTUATION or _invisible(text[end - 1])):
        end -= 1
    return text[:end]


def _strip_invisible(text: str) -> str:
    """Return ``text`` without invisible characters at either end."""
    start, end = 0, len(text)
    while start < end and _invisible(text[start]):
        start += 1
    while end > start and _invisible(text[end - 1]):
        end -= 1
    return text[start:end]


def strip_comments(text: str) -> str:
    """Return ``text`` without RFC 5322 comments (section 3.2.2), nested ones included.

    A comment may stand wherever the grammar allows folding white space, also around the
    "@" of an addr-spec (``erin@example.com (Erin)``, ``a(work)@b.example``): it becomes a
    space, and a space left beside the "@" goes too. Quoted strings are kept as they are
    (a "(" inside quotes opens no comment); an unbalanced parenthesis stays, and the
    address is then invalid.
    """
    if "(" not in text:
        return text
    parts: list[str] = []
    last = 0
    for quoted in _QUOTED_STRING.finditer(text):
        parts += [_drop_comments(text[last : quoted.start()]), quoted.group(0)]
        last = quoted.end()
    parts.append(_drop_comments(text[last:]))
    return _SPACE_AROUND_AT.sub("@", "".join(parts))


def _drop_comments(text: str) -> str:
    for _ in range(_MAX_NESTING):  # innermost first; a bound keeps hostile nesting linear
        stripped = _COMMENT.sub(" ", text)
        if stripped == text:
            break
        text = stripped
    return text


def _map_domain(candidate: str) -> str:
    """Map a non-ASCII domain as IDNA does (UTS #46 section 4: lowercase, NFC, and the
    characters it ignores, such as soft hyphens and zero-width spaces, removed)."""
    local, at, domain = candidate.rpartition("@")
    if not at or domain.isascii():
        return candidate
    try:
        return f"{local}@{idna.uts46_remap(domain, std3_rules=False, transitional=False)}"
    except (idna.IDNAError, UnicodeError):
        return candidate  # the validator says why it is no domain


def clean_address(text: str) -> str:
    """Strip the surface forms leaks use around an address and return the bare candidate.

    Handles surrounding whitespace and invisible format characters, RFC 5322 comments,
    MIME encoded-word display names, ``Name <addr>`` (the last ``<...>`` pair wins),
    ``mailto:`` with any ``?query`` and percent-encoding (RFC 6068 section 2), quotes
    around the whole address (a quoted local part, ``"john doe"@x``, is kept), angle
    brackets, trailing ``.,;``, and maps a non-ASCII domain as IDNA does. Never raises; a
    non-str gives "". The result is not validated, and the work is linear in the input
    length.
    """
    if not isinstance(text, str):
        return ""
    # Plain ASCII lines without control characters, nearly all of a leak, keep to the
    # built-in strip; the others' invisible ends go character by character.
    plain = text.isascii() and text.isprintable()
    candidate = text.strip() if plain else _strip_invisible(text)
    if "(" in candidate:
        candidate = strip_comments(candidate).strip()
    # Encoded words are decoded only where they can hide the address: in a display name
    # before "<addr>", or around the whole address. "=?a?q?b?=@x.com" is itself a valid
    # address, and decoding it would both break it and make canonical forms unstable.
    if "=?" in candidate and ("<" in candidate or "@" not in candidate):
        candidate = decode_encoded_words(candidate).strip()
        plain = candidate.isascii() and candidate.isprintable()
    # A fixed number of rounds keeps hostile nesting ('"'"'"...) from going quadratic; real
    # lines need a handful.
    for _ in range(_MAX_CLEAN_ROUNDS):
        before = candidate
        candidate = _strip_trailing_junk(candidate)
        candidate = candidate.lstrip() if plain else _strip_invisible(candidate)
        if candidate[:1] == '"' and _QUOTED_LOCAL.match(candidate):
            break  # a quoted local part: the quotes belong to the address
        if len(candidate) >= 2 and candidate[0] == candidate[-1] and candidate[0] in "\"'":
            candidate = candidate[1:-1]
        elif candidate.endswith(">"):
            # rfind: a quoted display name may itself contain "<".
            open_at = candidate.rfind("<")
            candidate = candidate.rstrip(">") if open_at < 0 else candidate[open_at + 1 : -1]
        elif candidate[:7].lower() == _MAILTO:
            # RFC 6068: the addr-spec is percent-encoded ("%40" an "@", "%2B" a "+").
            candidate = unquote(candidate[7:].partition("?")[0])
            plain = candidate.isascii() and candidate.isprintable()
        else:
            # A lone leading "'" is legal atext ('tis@x.com), so only '"' and '<' go on the
            # left; nothing quoted or bracketed can legally end an address.
            candidate = candidate.lstrip('"<').rstrip("\"'")
        if candidate == before:
            break
    return candidate if plain else _map_domain(candidate)


def _apply_rules(local: str, domain: str, rules: CanonicalRules) -> tuple[str, str]:
    """Apply ``rules`` to a validated local part and ASCII domain.

    A local part that needs its quotes (email-validator has already unquoted the ones that
    do not, RFC 5322 section 3.4.1) is only lowercased: "+" and "." inside quotes are text.
    """
    if rules.lowercase_local:
        local = unicodedata.normalize("NFC", local.lower())
    if local.startswith('"'):
        return local, domain
    if rules.drop_subaddress:
        plus = local.find("+")
        # At position 0 the "+" is the whole mailbox name, not a tag.
        if plus > 0:
            local = local[:plus]
    if rules.gmail_dots and domain in _GMAIL_DOMAINS:
        undotted = local.replace(".", "")
        if undotted:
            local = undotted
        domain = "gmail.com"
    return local, domain


def _utf8_len(text: str) -> int:
    """Return the length of ``text`` in UTF-8 bytes (a lone surrogate counts as three)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _validate_email(candidate: str) -> ValidatedEmail | None:
    """Return email-validator's verdict on ``candidate``, or None if it rejects it."""
    try:
        # Every option is pinned so another module changing email_validator's module-level
        # defaults cannot change which leaks match which accounts.
        return validate_email(
            candidate,
            allow_smtputf8=True,
            allow_empty_local=False,
            # A quoted local part that needs no quotes is unquoted ("grace"@x is grace@x,
            # RFC 5322 section 3.4.1); one that needs them stays valid and quoted.
            allow_quoted_local=True,
            allow_domain_literal=False,
            allow_display_name=False,
            strict=False,
            check_deliverability=False,
            test_environment=False,
            globally_deliverable=True,
        )
    except (EmailNotValidError, UnicodeError):
        # idna's errors are UnicodeErrors; the validator wraps the ones it expects, and this
        # keeps the never-raises promise for any it does not.
        return None


def _validate(candidate: str) -> tuple[str, str] | None:
    """Return email-validator's (local part, ASCII domain) for ``candidate``, or None.

    One full validator call (about 20 µs, 60-100 µs with IDNA); the reference that
    ``_validate_split`` has to equal.
    """
    result = _validate_email(candidate)
    if result is None:
        return None
    return result.local_part, result.ascii_domain.lower()


# With no quote and no "<" before it, validate_email splits an address at its first "@" and
# checks the local part and the domain independently; only its final length test looks at
# both, in three forms (as given, with the normalized local part and Unicode domain, and with
# the ASCII domain), each at most 254 UTF-8 bytes. So its verdict can be assembled from a
# verdict on each half. Leaks repeat domains massively and the domain half holds the costly
# IDNA work (60-100 µs a call), so both verdicts are cached.


@functools.lru_cache(maxsize=_LOCAL_CACHE_SIZE)
def _local_verdict(local: str) -> tuple[str, int, int] | None:
    """Return what validate_email makes of ``local`` as an unquoted local part, or None.

    The result is (local part, UTF-8 length of ``local``, UTF-8 length of the local part).
    The steps are validate_email's own: validate, validate the NFC form again if it differs,
    lowercase RFC 2142 role names of ASCII local parts.
    """
    try:
        info = validate_email_local_part(
            local,
            allow_smtputf8=True,
            allow_empty_local=False,
            quoted_local_part=False,
            strict=False,
        )
        normalized = unicodedata.normalize("NFC", local)
        if normalized != local:
            info = validate_email_local_part(
                normalized,
                allow_smtputf8=True,
                allow_empty_local=False,
                quoted_local_part=False,
                strict=False,
            )
    except (EmailNotValidError, UnicodeError):
        return None
    local_part = info["local_part"]
    ascii_local_part = info["ascii_local_part"]
    if ascii_local_part is not None and ascii_local_part.lower() in _CASE_INSENSITIVE_NAMES:
        local_part = local_part.lower()
    return local_part, _utf8_len(local), _utf8_len(local_part)


@functools.lru_cache(maxsize=_DOMAIN_CACHE_SIZE)
def _domain_verdict(domain: str) -> tuple[str, int, int] | None:
    """Return what validate_email makes of ``domain`` after an "@", or None.

    The result is (lowercase ASCII domain, UTF-8 length of ``domain``, UTF-8 length of the
    longer normalized form). It comes from validating "a@" + ``domain``, so every domain
    check is the validator's own; the length test that adds fails only where it fails for
    every local part, as none is shorter than one byte.
    """
    result = _validate_email(_PROBE_LOCAL + "@" + domain)
    if result is None:
        return None
    normalized_len = max(_utf8_len(result.domain), _utf8_len(result.ascii_domain))
    return result.ascii_domain.lower(), _utf8_len(domain), normalized_len


def _validate_split(candidate: str) -> tuple[str, str] | None:
    """Return ``_validate(candidate)``, assembled from cached verdicts on its two halves."""
    at = candidate.find("@")
    local = candidate[:at]
    if (
        at < 0
        or '"' in local
        or "<" in local
        # The validator does not split at an "@" that NFC composes with what follows (no
        # character does today); this is its own test, on the same 32-character window.
        or unicodedata.normalize("NFC", candidate[at : at + 32])[0] != "@"
    ):
        # Quotes and angle brackets change where and how the validator splits; they are rare
        # and always invalid here, so the whole validator decides.
        return _validate(candidate)
    local_verdict = _local_verdict(local)
    if local_verdict is None:
        return None
    domain_verdict = _domain_verdict(candidate[at + 1 :])
    if domain_verdict is None:
        return None
    local_part, local_len, local_part_len = local_verdict
    ascii_domain, domain_len, normalized_domain_len = domain_verdict
    # "@" is one byte; the ASCII-domain form is covered by normalized_domain_len.
    if (
        local_len + 1 + domain_len > EMAIL_MAX_LENGTH
        or local_part_len + 1 + normalized_domain_len > EMAIL_MAX_LENGTH
    ):
        return None
    return local_part, ascii_domain


def _canonicalize_validated(
    candidate: str,
    rules: CanonicalRules,
    validate: Callable[[str], tuple[str, str] | None],
) -> CanonicalAddress | InvalidAddress:
    """Canonicalize a cleaned candidate with ``validate`` (``_validate`` or its equal).

    The result is a fixed point: cleaning, validating and applying ``rules`` to its address
    gives it back, otherwise the candidate is InvalidAddress("unstable").
    """
    validated = validate(candidate)
    if validated is None:
        return _SYNTAX
    local, domain = _apply_rules(*validated, rules)
    # Rules can produce something the validator rewrites (a role name like "INFO" it
    # lowercases, a non-NFC join after dot removal, an over-long lowercasing); iterating to a
    # fixed point is what makes the public function idempotent.
    for _ in range(4):
        address = f"{local}@{domain}"
        if "=?" in address and clean_address(address) != address:
            # clean_address leaves bare addresses alone today; this keeps idempotence if its
            # MIME handling ever grows.
            return _UNSTABLE
        if address == candidate:
            # Validating the same string again would give the same answer.
            return CanonicalAddress(local, domain)
        again = validate(address)
        if again is None:
            return _UNSTABLE
        next_local, next_domain = _apply_rules(*again, rules)
        if (next_local, next_domain) == (local, domain):
            return CanonicalAddress(local, domain)
        local, domain = next_local, next_domain
    return _UNSTABLE


def _canonicalize_slow(candidate: str, rules: CanonicalRules) -> CanonicalAddress | InvalidAddress:
    """Canonicalize a cleaned candidate with the validator.

    Each validation is assembled from cached verdicts on the local part and the domain;
    the result equals ``_canonicalize_validated(candidate, rules, _validate)``, with a full
    validator call each time (the tests hold the two to each other).
    """
    return _canonicalize_validated(candidate, rules, _validate_split)


@functools.lru_cache(maxsize=_DOMAIN_CACHE_SIZE)
def _fast_domain(domain: str) -> str | None:
    """Return ``domain`` (already of the fast shape) lowercased if the fast lane may take
    it, or None. Cached: a leak names a few thousand domains millions of times."""
    domain = domain.lower()
    # "--" covers both R-LDH labels ("ab--c", rejected) and Punycode ("xn--", IDNA-checked).
    if "--" in domain or domain in _SPECIAL_USE_NAMES or domain.endswith(_SPECIAL_USE_SUFFIXES):
        return None
    return domain


def _fast_parts(candidate: str, rules: CanonicalRules) -> tuple[str, str] | None:
    """Canonicalize an ordinary ASCII address without email-validator, or return None.

    A non-None (local, domain) equals ``_canonicalize_slow(candidate, rules)``'s; None only
    means "ask the slow path", never "invalid".
    """
    if len(candidate) > _FAST_MAX_ADDRESS:
        return None
    match = _FAST_ADDRESS.fullmatch(candidate)
    if match is None:
        return None
    local, domain = match.groups()
    # The validator accepts longer local parts (it only checks 64 in strict mode); they are
    # rare enough to leave to it.
    if len(local) > _FAST_MAX_LOCAL:
        return None
    fast_domain = _fast_domain(domain)
    if fast_domain is None:
        return None
    # _apply_rules for an unquoted ASCII local part, where NFC changes nothing.
    if rules.lowercase_local:
        local = local.lower()
    if rules.drop_subaddress:
        plus = local.find("+")
        if plus > 0:
            local = local[:plus]
    if rules.gmail_dots and fast_domain in _GMAIL_DOMAINS:
        local = local.replace(".", "") or local
        fast_domain = "gmail.com"
    # The validator lowercases RFC 2142 role names (INFO, Abuse, ...) on the next pass.
    folded = local if rules.lowercase_local else local.lower()
    if folded in _CASE_INSENSITIVE_NAMES:
        local = folded
    # Cutting at "+" can leave "a." from "a.+tag"; the slow path reports that.
    if local.endswith("."):
        return None
    return local, fast_domain


def _canonicalize_fast(candidate: str, rules: CanonicalRules) -> CanonicalAddress | None:
    """``_fast_parts`` as a CanonicalAddress."""
    parts = _fast_parts(candidate, rules)
    return None if parts is None else CanonicalAddress(*parts)


def canonical_text(text: str, rules: CanonicalRules = DEFAULT_RULES) -> str | None:
    """Return ``canonicalize_email(text, rules).address``, or None for an InvalidAddress.

    A plain line costs one regular expression and no objects; the ingest calls it for the
    lines the batched lane of ``canonical_texts`` leaves.
    """
    parts = _fast_parts(text, rules)
    if parts is not None:
        return f"{parts[0]}@{parts[1]}"
    if len(text) > MAX_INPUT_CHARS:
        return None
    result = _canonicalize_uncommon(text, rules)
    return None if isinstance(result, InvalidAddress) else result.address


def canonical_texts(
    texts: Sequence[str], rules: CanonicalRules = DEFAULT_RULES
) -> list[str | None]:
    """Return ``[canonical_text(text, rules) for text in texts]``, computed batch-wise.

    The lines of the batched fast lane (nearly all of a leak) cost a share of a few passes
    over the joined batch (regular expressions, a lowercasing, a split); every other line
    takes ``canonical_text``. Equal, line for line, to the per-line function.
    """
    if not rules.lowercase_local or not texts or "" in texts:
        # The lane lowercases whole lines; an empty text would look like a settled line.
        return [canonical_text(text, rules) for text in texts]
    joined = "\n".join(texts)
    if joined.count("\n") != len(texts) - 1:  # a text holds a line break
        return [canonical_text(text, rules) for text in texts]
    # Lowercasing never adds or removes a line break, so line i stays line i throughout; the
    # rules below are _fast_parts's, and change only the lines the lane settles as they
    # should (the others are replaced at the end).
    lowered = joined.lower()
    if rules.drop_subaddress and "+" in lowered:
        lowered = _TAG.sub("@", lowered)
    canonical = cast("list[str | None]", lowered.split("\n"))
    if rules.gmail_dots:
        for end in _GMAIL_ENDS:
            for index in _line_indexes(lowered, _lines_ending(lowered, end)):
                local = cast("str", canonical[index])[: -len(end)]
                canonical[index] = local.replace(".", "") + "@gmail.com"
    for index in _unsettled(joined):
        canonical[index] = canonical_text(texts[index], rules)
    return canonical


def _lines_ending(text: str, end: str) -> list[int]:
    """Return the positions in ``text`` of the line ends that are ``end``, ascending."""
    positions: list[int] = []
    at = text.find(end)
    while at >= 0:
        after = at + len(end)
        if after == len(text) or text[after] == "\n":
            positions.append(at)
        at = text.find(end, after)
    return positions


def _line_indexes(text: str, positions: list[int]) -> list[int]:
    """Return the indexes of the lines of ``text`` at ascending ``positions``."""
    indexes: list[int] = []
    line = last = 0
    for position in positions:
        line += text.count("\n", last, position)
        last = position
        indexes.append(line)
    return indexes


def _unsettled(joined: str) -> list[int]:
    """Return the indexes of the lines of ``joined`` (none of them empty) the batched fast
    lane does not settle, ascending."""
    parts = _PLAIN_SHAPE.split(joined)
    # With the lines of the shape taken out, only their line breaks and the other lines stay.
    left = "".join(parts[0::2])
    indexes = _line_indexes(left, [match.start() for match in _OTHER_LINE.finditer(left)])
    positions = [match.start() for match in _BAD_DOT.finditer(joined)]
    positions += [match.end() - 1 for match in _BAD_START.finditer(joined)]
    if joined[0] in ".+":
        positions.append(0)
    domains = parts[1::2]
    bad = {domain for domain in set(domains) if not _plain_domain(domain)}
    unsettled = set(indexes)
    if bad:
        # The lines of the shape, in order, are those not left over; domains[k] is the k-th's.
        shaped = (index for index in range(len(domains) + len(indexes)) if index not in unsettled)
        unsettled.update(
            index for index, domain in zip(shaped, domains, strict=True) if domain in bad
        )
    if positions:
        unsettled.update(_line_indexes(joined, sorted(positions)))
    return sorted(unsettled) if len(unsettled) != len(indexes) else indexes


@functools.lru_cache(maxsize=_DOMAIN_CACHE_SIZE)
def _plain_domain(domain: str) -> bool:
    """Say whether the batched fast lane may take ``domain`` (of host characters): what
    ``_fast_parts`` asks of a domain, and short enough for any local part of the lane."""
    return (
        len(domain) <= _PLAIN_MAX_DOMAIN
        and _FAST_ADDRESS.fullmatch(_PROBE_LOCAL + "@" + domain) is not None
        and _fast_domain(domain) is not None
    )


def canonicalize_email(
    text: str, rules: CanonicalRules = DEFAULT_RULES
) -> CanonicalAddress | InvalidAddress:
    """Return the canonical form of the address in ``text`` under ``rules``.

    Never raises on any str; a non-str gives InvalidAddress("not_a_string") and text longer
    than 1,000 characters gives InvalidAddress("too_long") without further work. A valid
    result maps to itself: ``canonicalize_email(result.address, rules) == result``.
    """
    if not isinstance(text, str):
        return _NOT_A_STRING
    if len(text) > MAX_INPUT_CHARS:
        return _TOO_LONG
    # The fast lane, for nearly every line of a leak: a bare ASCII dot-atom@domain. Its shape
    # has nothing clean_address removes (no space, quote, bracket, comment, "mailto:",
    # trailing punctuation, and the last character is a letter), so the cleaning, which
    # would give the text back unchanged, is skipped too.
    fast = _canonicalize_fast(text, rules)
    if fast is not None:
        return fast
    return _canonicalize_uncommon(text, rules)


def _canonicalize_uncommon(text: str, rules: CanonicalRules) -> CanonicalAddress | InvalidAddress:
    """``canonicalize_email`` of a str of at most MAX_INPUT_CHARS the fast lane left."""
    candidate = clean_address(text)
    if not candidate:
        return _EMPTY
    if "@" not in candidate:
        return _NO_AT_SIGN
    if candidate != text:
        fast = _canonicalize_fast(candidate, rules)
        if fast is not None:
            return fast
    return _canonicalize_slow(candidate, rules)
