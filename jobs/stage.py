"""Bulk staging of a chunk's keyed hashes, and the one set-based match per chunk.

Per-row or small-batch round trips are what make an ingest slow, so a chunk's keys go
to the database in one bulk load (COPY on PostgreSQL, one executemany on SQLite) into a
session-local staging table, and everything after is set-based SQL over that table.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

Match = tuple[int, bytes]  # (account id, email key)

_PG_INSERT_ENTRIES = """
    INSERT INTO leak_entry (email_key, leak_id)
    SELECT DISTINCT email_key, %s FROM ingest_stage ORDER BY 1
    ON CONFLICT DO NOTHING
"""
_PG_MATCH = """
    SELECT a.id, a.email_key FROM account a
    WHERE a.email_key IN (SELECT email_key FROM ingest_stage)
      AND NOT EXISTS (
          SELECT 1 FROM exposure e
          WHERE e.account_id = a.id AND e.leak_id = %s AND e.password_hash IS NOT NULL)
"""
_SQLITE_MATCH = """
    SELECT a.id, a.email_key FROM ingest_stage s JOIN account a ON a.email_key = s.email_key
    WHERE NOT EXISTS (
        SELECT 1 FROM exposure e
        WHERE e.account_id = a.id AND e.leak_id = ? AND e.password_hash IS NOT NULL)
"""


def stage_and_match(session: Session, leak_id: int, keys: list[bytes]) -> tuple[int, list[Match]]:
    """Add ``keys`` to the leak's watch list and find the accounts not yet exposed to it.

    Accounts exposed without a leaked password match again: a later record of the same
    leak may carry their password, which must not be lost because the address came first.
    Returns the number of keys new to this leak and the (account, key) matches. Runs in
    the session's transaction; does not commit.
    """
    if not keys:
        return 0, []
    driver = session.connection().connection.driver_connection
    if session.get_bind().dialect.name == "postgresql":
        return _postgres(driver, leak_id, keys)
    return _sqlite(driver, leak_id, keys)


def _postgres(connection: Any, leak_id: int, keys: list[bytes]) -> tuple[int, list[Match]]:
    with connection.cursor() as cursor:
        # The chunk's resume point commits with its effects, so a commit lost to a server
        # crash is simply redone by the next run: no need to wait for the WAL flush.
        cursor.execute("SET LOCAL synchronous_commit = off")
        # A temporary table lives with the pooled connection: created once, emptied per chunk.
        cursor.execute("CREATE TEMP TABLE IF NOT EXISTS ingest_stage (email_key bytea NOT NULL)")
        cursor.execute("TRUNCATE ingest_stage")
        with cursor.copy("COPY ingest_stage (email_key) FROM STDIN (FORMAT BINARY)") as copy:
            copy.set_types(["bytea"])
            for key in keys:
                copy.write_row((key,))
        # Without statistics the planner guesses the staged table's size badly.
        cursor.execute("ANALYZE ingest_stage")
        cursor.execute(_PG_INSERT_ENTRIES, (leak_id,))
        new_entries = cursor.rowcount
        cursor.execute(_PG_MATCH, (leak_id,))
        matches = [(account_id, bytes(key)) for account_id, key in cursor.fetchall()]
    return new_entries, matches


def _sqlite(connection: Any, leak_id: int, keys: list[bytes]) -> tuple[int, list[Match]]:
    connection.execute(
        "CREATE TEMP TABLE IF NOT EXISTS ingest_stage (email_key BLOB PRIMARY KEY) WITHOUT ROWID"
    )
    connection.execute("DELETE FROM ingest_stage")
    connection.executemany(
        "INSERT OR IGNORE INTO ingest_stage (email_key) VALUES (?)", [(key,) for key in keys]
    )
    cursor = connection.execute(
        "INSERT OR IGNORE INTO leak_entry (email_key, leak_id) "
        "SELECT email_key, ? FROM ingest_stage ORDER BY email_key",
        (leak_id,),
    )
    new_entries = cursor.rowcount
    matches = [
        (account_id, bytes(key))
        for account_id, key in connection.execute(_SQLITE_MATCH, (leak_id,))
    ]
    connection.execute("DELETE FROM ingest_stage")
    return new_entries, matches
