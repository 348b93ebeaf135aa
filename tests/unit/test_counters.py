"""An ingest's six totals: one list in memory (``Counters``) and one set of columns
(``IngestCounters``), kept alike on a leak, its files and its parts."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import BigInteger
from sqlalchemy.orm import MappedColumn

from service.leaks.counters import COUNTERS, Counters
from service.models import IngestCounters, Leak, LeakFile, LeakPart

ROWS_WITH_COUNTERS = [Leak, LeakFile, LeakPart]


def mixin_columns() -> list[str]:
    """The mapped columns ``IngestCounters`` declares, in the order it declares them."""
    return [name for name, value in vars(IngestCounters).items() if isinstance(value, MappedColumn)]


def test_counters_are_the_columns_of_the_ingest_counters_mixin() -> None:
    assert mixin_columns()  # the reading above finds columns at all
    assert list(COUNTERS) == mixin_columns()
    assert len(set(COUNTERS)) == len(COUNTERS) == 6


@pytest.mark.parametrize("model", ROWS_WITH_COUNTERS, ids=lambda model: model.__name__)
def test_every_row_with_counters_stores_each_as_a_big_integer(model: Any) -> None:
    assert issubclass(model, IngestCounters)
    columns = model.__table__.columns
    for name in COUNTERS:
        assert isinstance(columns[name].type, BigInteger), (model.__name__, name)
        assert not columns[name].nullable, (model.__name__, name)


@pytest.mark.parametrize("model", ROWS_WITH_COUNTERS, ids=lambda model: model.__name__)
def test_counters_of_a_row_read_each_of_its_totals(model: Any) -> None:
    values = {name: 10 ** (index + 1) + index for index, name in enumerate(COUNTERS)}
    row = model(**values)
    counters = Counters.of(row)
    assert counters.as_dict() == values
    assert counters == Counters(**values)


def test_add_and_minus_work_counter_by_counter() -> None:
    total = Counters(lines=10, valid=8, invalid=2, duplicates=3, matched=4, notices=4)
    run = Counters(lines=5, valid=5, invalid=0, duplicates=1, matched=2, notices=1)
    before = Counters(**total.as_dict())
    total.add(run)
    assert total.as_dict() == {
        "lines": 15,
        "valid": 13,
        "invalid": 2,
        "duplicates": 4,
        "matched": 6,
        "notices": 5,
    }
    assert total.minus(before) == run
