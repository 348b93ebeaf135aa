"""PackedKeys: a chunk's keys back to back in one buffer, read back exactly as added."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.addresses import PackedKeys

KEYS = st.lists(st.binary(min_size=16, max_size=16), max_size=50)


@given(st.lists(KEYS, max_size=6))
def test_the_keys_read_back_in_order_as_added_batch_by_batch(batches: list[list[bytes]]) -> None:
    packed = PackedKeys()
    for batch in batches:
        packed.extend(batch)
    added = [key for batch in batches for key in batch]
    assert list(packed) == added
    assert len(packed) == len(added)
    assert [packed[index] for index in range(len(added))] == added
    assert [packed[-index] for index in range(1, len(added) + 1)] == added[::-1]
    assert packed[1:4] == added[1:4]
    assert all(type(key) is bytes for key in packed)


@pytest.mark.parametrize(
    "batch",
    [[b"x" * 15], [b"x" * 17], [b"x" * 15, b"y" * 17], [b"x" * 16, b""]],
    ids=["short", "long", "short-and-long", "empty"],
)
def test_a_key_of_another_size_is_refused_and_adds_nothing(batch: list[bytes]) -> None:
    packed = PackedKeys([b"k" * 16])
    with pytest.raises(ValueError, match="not 16 bytes"):
        packed.extend(batch)
    assert list(packed) == [b"k" * 16]


def test_an_index_past_either_end_is_refused() -> None:
    packed = PackedKeys([b"a" * 16, b"b" * 16])
    for index in (2, -3):
        with pytest.raises(IndexError):
            packed[index]
    assert not PackedKeys()
