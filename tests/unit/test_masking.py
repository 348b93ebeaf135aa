"""Addresses in log text are masked however a URL spells them (security review, item 4)."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from service.addresses import mask_addresses, mask_email


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        (
            "GET /v1/accounts/alice@example.org HTTP/1.1",
            "GET /v1/accounts/a***@example.org HTTP/1.1",
        ),
        (
            "GET /v1/accounts/bob%40example.org HTTP/1.1",
            "GET /v1/accounts/b***@example.org HTTP/1.1",
        ),
        ("nothing to mask here: 100%40 done", "nothing to mask here: 100%40 done"),
        # every character may be percent-encoded (found under gunicorn by a reviewer)
        ("GET /v1/accounts/juergen%40b%C3%BCcher.de", "GET /v1/accounts/j***@bücher.de"),
        ("GET /v1/accounts/j%c3%bcrgen@b%c3%bccher.de", "GET /v1/accounts/j***@bücher.de"),
        ("alice%40EXAMPLE%2ECOM", "a***@EXAMPLE.COM"),
        ("al%69ce%40ex%61mple.org", "a***@example.org"),
        ("%61%6c%69%63%65%40%65%78%61%6d%70%6c%65%2e%6f%72%67", "a***@example.org"),
        ("alice%2540example.org", "a***@example.org"),
    ],
)
def test_mask_addresses_covers_percent_encoded_at_signs(text: str, masked: str) -> None:
    assert mask_addresses(text) == masked


def test_an_address_in_a_query_string_is_masked() -> None:
    # "?" and "=" are legal in a local part (RFC 5322 atext): the mask may take more.
    masked = mask_addresses("GET /v1/x?who=carol%40Example.NET&y=1")
    assert "carol" not in masked
    assert masked.endswith("***@Example.NET&y=1")


def test_masking_is_idempotent() -> None:
    once = mask_addresses("to dave%40example.com and erin@example.com")
    assert mask_addresses(once) == once


# --- every addr-spec form (new-user trial: quoted local parts were left in clear) ----------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        # the trial's access line, bounce reason, audit detail and mail
        ("/v1/accounts/%22jane%20doe%22%40example.org", "/v1/accounts/j***@example.org"),
        ('/v1/accounts/"jane doe"@example.org', "/v1/accounts/j***@example.org"),
        ('5.1.1 user "jane doe"@example.org unknown', "5.1.1 user j***@example.org unknown"),
        (
            json.dumps({"reason": 'user "jane doe"@example.org'}),
            json.dumps({"reason": "user j***@example.org"}),
        ),
        ('"seed box"@bücher.de', "s***@bücher.de"),
        ('"a\\"b c"@example.org', "a***@example.org"),
        ('"\\\\x y"@example.org', "***@example.org"),
        ("!#$%&'*+/=?^_`{|}~-@example.org", "***@example.org"),
        ("o'reilly+tag@example.org", "o***@example.org"),
        ("ab/cd@example.org", "a***@example.org"),
        ("jürgen@bücher.de", "j***@bücher.de"),
        ("用户@例子.广告", "用***@例子.广告"),
        ("jane@xn--bcher-kva.de", "j***@xn--bcher-kva.de"),
        ("jane@[192.0.2.1]", "j***@[192.0.2.1]"),
        ("jane@[IPv6:2001:db8::1]", "j***@[IPv6:2001:db8::1]"),
        ("<jane@example.org>", "<j***@example.org>"),
        ("mailto:jane%40example.org", "mailto:j***@example.org"),
        ("mailto:%22jane%20doe%22@example.org", "mailto:j***@example.org"),
        ("JANE.DOE@EXAMPLE.ORG", "J***@EXAMPLE.ORG"),
        # a rendered log field: the key and the path stay
        ("path=/v1/accounts/jane@example.org", "path=/v1/accounts/j***@example.org"),
        ("path=/v1/accounts/j***@example.org", "path=/v1/accounts/j***@example.org"),
        ('a."b c".d@example.org', "a***@example.org"),
        ("jane@localhost", "***"),
        # masked already: unchanged
        ("j***@example.org", "j***@example.org"),
        ("***@example.org", "***@example.org"),
        ("0@0@0", "***@0"),
        ("***@0", "***@0"),
        # JSON keys and values that are not addresses stay as they are
        ('{"a": "b", "c": "d"}', '{"a": "b", "c": "d"}'),
    ],
)
def test_mask_addresses_covers_every_addr_spec_form(text: str, masked: str) -> None:
    assert mask_addresses(text) == masked


@pytest.mark.parametrize(
    "address", ['"jane doe"@example.org', '"seed box"@bücher.de', '"\\"x y"@example.org']
)
def test_a_masked_quoted_local_part_leaves_no_quote(address: str) -> None:
    assert '"' not in mask_email(address)
    assert '"' not in mask_addresses(f"to {address}.")


_ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-"
_ATOMS = st.text(st.sampled_from(_ATEXT) | st.sampled_from("äöüßéçñøå用户你好"), min_size=1)
_QUOTED = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1
).map(lambda s: '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"')
_LOCALS = st.lists(_ATOMS, min_size=1, max_size=3).map(".".join) | _QUOTED
_LABELS = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,10}[a-z0-9])?", fullmatch=True)
_HOSTS = (
    st.lists(_LABELS | st.sampled_from(["bücher", "例子", "xn--bcher-kva"]), min_size=1, max_size=3)
    .map(".".join)
    .map(lambda host: host + ".org")
)
_LITERALS = st.sampled_from(["[192.0.2.1]", "[IPv6:2001:db8::1]", "[IPv6:::1]"])
# How text spells an address: as it is, bracketed, a mailto: link, percent-encoded in a URL
# path (what an access line shows), uppercase, inside a JSON string.
_FORMS = {
    "plain": lambda a: a,
    "angle": lambda a: f"<{a}>",
    "mailto": lambda a: "mailto:" + quote(a, safe="@"),
    "path": lambda a: "/v1/accounts/" + quote(a, safe=""),
    "upper": str.upper,
    "json": lambda a: json.dumps(a, ensure_ascii=False)[1:-1],
}


def _bare(local: str) -> str:
    if local.startswith('"'):
        return re.sub(r"\\(.)", r"\1", local[1:-1])
    return local


@given(
    local=_LOCALS,
    domain=_HOSTS | _LITERALS,
    form=st.sampled_from(sorted(_FORMS)),
    before=st.text(),
    after=st.text(),
    gap=st.sampled_from([" ", "\n", ", ", ": ", "\t("]),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_property_masked_text_never_holds_the_local_part(
    local: str, domain: str, form: str, before: str, after: str, gap: str
) -> None:
    address = f"{local}@{domain}"
    shown = _FORMS[form](address)
    text = before + gap + shown + gap + after
    masked = mask_addresses(text)
    bare = _FORMS[form](_bare(local)) if form == "upper" else _bare(local)
    for secret in {local, bare, shown.rpartition("@")[0].rpartition("/")[2]}:
        if len(secret) > 2:
            # not in the text around it, nor in the form's own words ("mailto:")
            assume(secret not in before + after + _FORMS[form]("@" + domain) + "***@")
            assert secret not in masked
    assert mask_addresses(masked) == masked


@given(
    local=_LOCALS,
    domain=_HOSTS | _LITERALS,
    form=st.sampled_from(sorted(_FORMS)),
    before=st.text(st.characters(exclude_characters='@%"\\')),
    after=st.text(st.characters(exclude_characters='@%"\\')),
)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_property_masked_address_is_well_formed(
    local: str, domain: str, form: str, before: str, after: str
) -> None:
    # A local part that starts as a URL path does reads as one (see _PATH).
    assume(re.match(r"(?:[A-Za-z_]+=)?/", local) is None)
    address = f"{local}@{domain}"
    shown = _FORMS[form](address)
    masked = mask_addresses(f"{before} {shown} {after}")
    head = {"angle": "<", "mailto": "mailto:", "path": "/v1/accounts/"}.get(form, "")
    tail = ">" if form == "angle" else ""
    first = (_bare(local).upper() if form == "upper" else _bare(local))[:1]  # "ß" -> "SS"
    # An uppercase non-ASCII domain comes back lowercased (IDNA's mapping, UTS #46).
    masked_domain = rf"(?i:{re.escape(domain)})" if form == "upper" else re.escape(domain)
    form_of_mask = rf"(?:{re.escape(first)})?\*\*\*@{masked_domain}"
    assert re.fullmatch(
        rf"{re.escape(before)} {re.escape(head)}{form_of_mask}{re.escape(tail)} "
        rf"{re.escape(after)}",
        masked,
    ), masked
