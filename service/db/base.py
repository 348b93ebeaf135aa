"""The declarative base and the column types every model shares.

Timestamps are timezone-aware UTC on every backend; ids are 64-bit on PostgreSQL; enums are
stored as their string values (``native_enum=False``), so adding a state needs no ALTER TYPE.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import BigInteger, ColumnElement, DateTime, Enum, Integer, MetaData, bindparam
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit identity.
BigId = BigInteger().with_variant(Integer(), "sqlite")
# The largest id (or count) a BigId column holds: a larger number from a request names
# nothing, and PostgreSQL refuses to compare with it (NumericValueOutOfRange).
BIGINT_MAX = 2**63 - 1
# A whole number as a person types it: ASCII digits only. Python's int() also takes other
# scripts' digits ("١٢"), signs, spaces and underscores; none of those is meant by one.
WHOLE_NUMBER = re.compile(r"[0-9]{1,19}")


def read_whole_number(text: str) -> int | None:
    """``text`` as a whole number a BigId column holds (0 to ``BIGINT_MAX``, digits 0-9),
    else None: every face's reading of a typed id or count (the staff site, the CLI)."""
    if WHOLE_NUMBER.fullmatch(text) is None or int(text) > BIGINT_MAX:
        return None
    return int(text)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    SQLite has no time zone type and hands back naive values; reading them back as UTC
    keeps comparisons with ``utcnow()`` correct everywhere.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime()}


def str_enum(enum: type[StrEnum], length: int = 20) -> Enum:
    """A column type storing ``enum``'s values as strings, checked by SQLAlchemy only."""
    return Enum(
        enum, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e]
    )


def among(column: Any, ids: Iterable[int]) -> ColumnElement[bool]:
    """``column IN (ids)`` for integer ids, written into the statement rather than bound.

    A batch of a thousand ids as bound parameters costs the driver more (psycopg parses
    every placeholder of every execution, and the delivery job's claim runs seven such
    statements) than the statement costs the database. Only integers: each is ``int()``-ed,
    so nothing else can reach the SQL text.
    """
    values = [int(value) for value in ids]
    return column.in_(bindparam(None, values, expanding=True, literal_execute=True))  # type: ignore[no-any-return]
