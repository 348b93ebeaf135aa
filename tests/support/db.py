"""The database as the tests see it: plain SELECTs, so that a test states the outcome
without trusting the code under test to describe it; and the emptying between tests."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Engine, func, inspect, select, text

from service.db import Base, bulk
from service.leaks.counters import COUNTERS
from service.models import Account, Exposure, Leak, LeakEntry, LeakFile, Notice
from service.runtime import Runtime


def empty_tables(engine: Engine) -> None:
    """Delete every row of every table and restart the ids, and drop the ingests' stages
    (``leak_stage_<file id>``) a test left: the next test's files reuse the ids.

    PostgreSQL: a table of more than a few pages is truncated, the others (most, after
    most tests) emptied by DELETE: a TRUNCATE of every table gives each table and index a
    new file, half a second a test, a third of the suite's PostgreSQL time.
    """
    tables = list(reversed(Base.metadata.sorted_tables))
    with engine.begin() as connection:
        if engine.dialect.name != "postgresql":
            stages = [
                name
                for name in inspect(connection).get_table_names()
                if name.startswith(bulk.STAGE_PREFIX)
            ]
            for name in stages:
                connection.execute(text(f"DROP TABLE IF EXISTS {name}"))
            for table in tables:
                connection.execute(table.delete())
            return
        rows = connection.execute(
            text(
                "SELECT c.relname, pg_relation_size(c.oid) > :big FROM pg_class c "
                "WHERE c.relnamespace = current_schema()::regnamespace AND c.relkind = 'r' "
                "AND (c.relname = ANY(:tables) OR c.relname LIKE :stages)"
            ),
            {
                "big": _TRUNCATE_ABOVE_BYTES,
                "tables": [table.name for table in tables],
                "stages": bulk.STAGE_PREFIX.replace("_", r"\_") + "%",
            },
        ).all()
        big = {name for name, is_big in rows if is_big}
        for name, _ in rows:
            if name.startswith(bulk.STAGE_PREFIX):
                connection.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
        if big:
            names = ", ".join(f'"{table.name}"' for table in tables if table.name in big)
            connection.execute(text(f"TRUNCATE {names} CASCADE"))
        for table in tables:
            if table.name not in big:
                connection.execute(table.delete())
        connection.execute(
            text(
                "SELECT setval(format('%I.%I', schemaname, sequencename), 1, false) "
                "FROM pg_sequences WHERE schemaname = current_schema()"
            )
        )


_TRUNCATE_ABOVE_BYTES = 64 * 1024  # eight pages: DELETE is cheaper below


def count_rows(runtime: Runtime, model: Any) -> int:
    with runtime.db.read_session() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def row_counts(runtime: Runtime) -> dict[str, int]:
    """Rows of each ingest table."""
    return {
        model.__tablename__: count_rows(runtime, model)
        for model in (Leak, LeakFile, LeakEntry, Exposure, Notice)
    }


def leak_counters(runtime: Runtime, slug: str) -> dict[str, int]:
    """The stored totals of the leak ``slug``, by counter name."""
    with runtime.db.read_session() as session:
        leak = session.scalars(select(Leak).where(Leak.slug == slug)).one()
        return {name: getattr(leak, name) for name in COUNTERS}


def exposures(runtime: Runtime) -> dict[tuple[str, str], tuple[str, str | None]]:
    """(external_id, leak slug) -> (kind, password_hash) of every exposure."""
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(Account.external_id, Leak.slug, Exposure.kind, Exposure.password_hash)
            .join(Account, Account.id == Exposure.account_id)
            .join(Leak, Leak.id == Exposure.leak_id)
        ).all()
    pairs = {(ext, slug): (str(kind), password_hash) for ext, slug, kind, password_hash in rows}
    assert len(pairs) == len(rows), "two exposures of one account to one leak"
    return pairs


def flagged(runtime: Runtime, slug: str) -> set[str]:
    """External ids of the accounts exposed to the leak ``slug``."""
    return {ext for ext, leak in exposures(runtime) if leak == slug}


def notices(runtime: Runtime) -> list[tuple[str, str | None, str, str]]:
    """(external_id, leak slug, kind, state) of every notice, sorted, duplicates kept."""
    with runtime.db.read_session() as session:
        rows = session.execute(
            select(Account.external_id, Leak.slug, Notice.kind, Notice.state)
            .join(Account, Account.id == Notice.account_id)
            .outerjoin(Leak, Leak.id == Notice.leak_id)
        ).all()
    return sorted((ext, slug, str(kind), str(state)) for ext, slug, kind, state in rows)


def all_rows(runtime: Runtime) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, sorted: two equal results are two equal databases."""
    with runtime.db.read_session() as session:
        return {
            table.name: sorted((tuple(row) for row in session.execute(select(table))), key=repr)
            for table in Base.metadata.sorted_tables
        }


def stored_values(runtime: Runtime) -> list[tuple[str, str, str | bytes]]:
    """(table, column, value) of every non-empty text, binary or JSON value in the database."""
    found: list[tuple[str, str, str | bytes]] = []
    with runtime.db.read_session() as session:
        for table in Base.metadata.sorted_tables:
            for row in session.execute(select(table)).mappings():
                for column in table.columns:
                    value = row[column.name]
                    if isinstance(value, list | dict):
                        value = json.dumps(value)
                    if isinstance(value, str | bytes) and value:
                        found.append((table.name, column.name, value))
    return found
