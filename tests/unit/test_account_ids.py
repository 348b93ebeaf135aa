"""SeenIds answers as a set of every id added would, whatever the chunks and the filter."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from jobs.account_ids import SeenIds

IDS = st.lists(st.text(alphabet="abc\u00e9", max_size=3), max_size=60)


@given(
    ids=IDS,
    cut=st.lists(st.integers(min_value=1, max_value=7), min_size=1),
    expected=st.sampled_from([0, 5, 10_000]),
)
def test_repeats_are_the_ids_added_before_whatever_the_chunks(
    ids: list[str], cut: list[int], expected: int
) -> None:
    seen, reference, start, step = SeenIds(expected=expected), set(), 0, 0
    while start < len(ids):
        chunk = ids[start : start + cut[step % len(cut)]]
        want = []
        for position, external_id in enumerate(chunk):
            if external_id in reference:
                want.append(position)
            reference.add(external_id)
        assert seen.add_new(chunk) == want
        start, step = start + len(chunk), step + 1
