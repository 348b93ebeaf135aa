"""The external ids an accounts import has applied so far, to refuse a file's repeats.

An import streams its file in chunks; a row naming an account that an earlier row named
(in its chunk or an earlier one) must be known as such whatever the chunk size. Keeping
the ids themselves costs about 90 MiB a million (the strings and a set); this keeps a
16-byte BLAKE2b digest of each (the size of an email key: a collision among billions of
ids is out of reach), packed and sorted per chunk, 16 bytes an id, behind a Bloom filter
that answers "never seen" for almost every new id without a search. Exact: a digest the
filter lets through is looked for in the packed runs.
"""

from __future__ import annotations

import hashlib
from typing import Final

from rbloom import Bloom

DIGEST_BYTES: Final = 16
# One new id in ten thousand is looked for in the runs (a binary search in each).
FALSE_POSITIVE_RATE: Final = 0.0001
_MIN_CAPACITY: Final = 1024


def _digest(external_id: str) -> bytes:
    return hashlib.blake2b(external_id.encode(), digest_size=DIGEST_BYTES).digest()


def _in_run(run: bytes, digest: bytes) -> bool:
    """Whether ``digest`` is in ``run``, sorted digests of DIGEST_BYTES packed end to end."""
    low, high = 0, len(run) // DIGEST_BYTES
    while low < high:
        middle = (low + high) // 2
        start = middle * DIGEST_BYTES
        if run[start : start + DIGEST_BYTES] < digest:
            low = middle + 1
        else:
            high = middle
    start = low * DIGEST_BYTES
    return run[start : start + DIGEST_BYTES] == digest


class SeenIds:
    """The ids added so far, in about 16 bytes each plus the filter's 2.4."""

    __slots__ = ("_bloom", "_runs")

    def __init__(self, *, expected: int) -> None:
        # More ids than expected still answer exactly: the filter lets more through.
        self._bloom = Bloom(max(_MIN_CAPACITY, expected), FALSE_POSITIVE_RATE)
        self._runs: list[bytes] = []

    def add_new(self, external_ids: list[str]) -> list[int]:
        """Add ``external_ids`` (one chunk, in file order); return the positions of those
        added before, by an earlier call or earlier in this list, ascending."""
        bloom = self._bloom
        digests = list(map(_digest, external_ids))
        # The filter's "maybe" is rare for a new id (FALSE_POSITIVE_RATE): only those are
        # looked for in the runs; a chunk without a repeat takes no Python loop per id.
        earlier = {n for n, d in enumerate(digests) if d in bloom and self._seen_before(d)}
        fresh = set(digests)
        if earlier or len(fresh) != len(digests):
            fresh, repeated = set(), []
            for position, digest in enumerate(digests):
                if position in earlier or digest in fresh:
                    repeated.append(position)
                else:
                    fresh.add(digest)
        else:
            repeated = []
        if fresh:
            bloom.update(fresh)
            self._runs.append(b"".join(sorted(fresh)))
        return repeated

    def _seen_before(self, digest: bytes) -> bool:
        return any(_in_run(run, digest) for run in self._runs)
