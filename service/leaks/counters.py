"""The six totals of an ingest, in memory: what a chunk, a run or a file added."""

from __future__ import annotations

from dataclasses import dataclass, fields

from service.models import IngestCounters


@dataclass(slots=True)
class Counters:
    """The six totals of an ingest (``service.models.IngestCounters``), in memory."""

    lines: int = 0
    valid: int = 0
    invalid: int = 0
    duplicates: int = 0
    matched: int = 0
    notices: int = 0

    @classmethod
    def of(cls, row: IngestCounters) -> Counters:
        """The totals stored on a leak, leak file or leak part."""
        return cls(**{name: getattr(row, name) for name in COUNTERS})

    def add(self, other: Counters) -> None:
        for name in COUNTERS:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def minus(self, before: Counters) -> Counters:
        return Counters(**{name: getattr(self, name) - getattr(before, name) for name in COUNTERS})

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}


COUNTERS: tuple[str, ...] = tuple(field.name for field in fields(Counters))
