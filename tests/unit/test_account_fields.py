"""The checks on an account's fields that run once per imported row."""

from __future__ import annotations

from service.accounts import _has_invisible, _has_invisible_character


def test_the_ascii_lane_of_the_invisible_check_agrees_with_the_unicode_categories() -> None:
    for code in range(128):
        for text in (chr(code), f"usr_{chr(code)}_1", f"a@b.example{chr(code)}"):
            assert _has_invisible(text) == _has_invisible_character(text), repr(text)


def test_every_lane_of_the_invisible_check_agrees_with_the_unicode_categories() -> None:
    for code in range(0x110000):
        text = f"a{chr(code)}b"
        assert _has_invisible(text) == _has_invisible_character(text), hex(code)
    for text in ("Jürgen", "ü\u200bx", "ü\u00a0x", "ü\ue000x", "ü\u3164x", "ü\ufffdx", "ü\u2029"):
        assert _has_invisible(text) == _has_invisible_character(text), repr(text)


def test_controls_and_invisible_characters_are_found_on_both_lanes() -> None:
    for text in ("usr\t1", "usr\x001", "usr\x7f", "usr\u202e1", "usr\u200b1", "a\u2028b"):
        assert _has_invisible(text), repr(text)
    for text in ("usr_1", "user 1", "Jürgen", "a@bücher.de"):
        assert not _has_invisible(text), repr(text)
