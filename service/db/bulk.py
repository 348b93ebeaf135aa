"""Every statement that differs between PostgreSQL and SQLite, behind one door.

Domain modules call these and read the same on both backends. Per-row or small-batch round
trips are what make an ingest or an import slow, so on PostgreSQL each helper sends one
statement with array parameters (``unnest``) or one COPY, and on SQLite (one writer, no
network) one executemany. None of them commits: the caller owns the transaction.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from itertools import repeat
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    Connection,
    Table,
    any_,
    bindparam,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute, Session
from sqlalchemy.sql.elements import ColumnElement

from service.addresses.keys import EMAIL_KEY_BYTES, PackedKeys
from service.db.engine import rowcount

T = TypeVar("T")

# Ids per IN list on SQLite: stays under its bound-parameter limit.
IN_LIST_BATCH = 5000


def is_postgres(executor: Session | Connection) -> bool:
    bind = executor.get_bind() if isinstance(executor, Session) else executor
    return bind.dialect.name == "postgresql"


def in_batches(
    session: Session, column: InstrumentedAttribute[T] | Column[T], values: Sequence[T]
) -> Iterator[ColumnElement[bool]]:
    """Yield conditions that together select ``column IN values``, each one statement's worth.

    PostgreSQL gets one ``= ANY(array)`` condition: rendering and parsing an IN list of
    thousands of placeholders costs more than the query itself. SQLite gets an IN list per
    ``IN_LIST_BATCH`` values.
    """
    if not values:
        return
    if is_postgres(session):
        element_type = column.type
        yield column == any_(bindparam("values", list(values), type_=ARRAY(element_type)))
        return
    for start in range(0, len(values), IN_LIST_BATCH):
        yield column.in_(values[start : start + IN_LIST_BATCH])


def relax_commit(executor: Session | Connection) -> None:
    """Let this transaction's commit return before the WAL flush (PostgreSQL; else nothing).

    Only for writes that are redone or harmless to lose in a database crash: a crash may
    lose the last fraction of a second of them, never corrupt anything.
    """
    if is_postgres(executor):
        executor.execute(_NO_FLUSH)


_NO_FLUSH = text("SET LOCAL synchronous_commit TO OFF")


def insert_ignore(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert the rows that do not exist yet (by any unique key); leave the others alone."""
    if not rows:
        return
    statement = (
        postgresql.insert(table) if is_postgres(session) else sqlite.insert(table)
    ).on_conflict_do_nothing()
    session.execute(statement, list(rows))


# The arrays go in PostgreSQL's binary format (%b): as text, psycopg quotes every element
# and writes every bytea key as escaped hex, which made this one statement's parameters a
# third of an accounts import (250 ms per 20,000 keys; 25 ms binary).
_PG_INSERT_ACCOUNTS = """
    INSERT INTO account (external_id, email, email_key, locale, created_at, updated_at)
    SELECT t.external_id, t.email, t.email_key, t.locale, %b, %b
    FROM unnest(%b::varchar[], %b::varchar[], %b::bytea[], %b::varchar[])
         AS t(external_id, email, email_key, locale)
    RETURNING id
"""
# Even binary, psycopg builds an array element by element in Python (1.2 CPU s per 200,000
# accounts, most of the import's own time beside reading). So each text column goes as one
# text joined by a control character no valid id, address or locale holds
# (service.accounts), and the keys, all of one size, as one bytea back to back; the server
# splits them. A locale of None goes as "", which no stored locale is.
_SEPARATOR = "\x1f"
_PG_INSERT_JOINED_ACCOUNTS = """
    WITH inserted AS (
        INSERT INTO account (external_id, email, email_key, locale, created_at, updated_at)
        SELECT t.external_id, t.email,
               substring(%(keys)b FROM ((t.n - 1) * %(size)s + 1)::integer FOR %(size)s::integer),
               NULLIF(t.locale, ''), %(now)b, %(now)b
        FROM unnest(string_to_array(%(ids)s, %(sep)s), string_to_array(%(emails)s, %(sep)s),
                    string_to_array(%(locales)s, %(sep)s)) WITH ORDINALITY
             AS t(external_id, email, locale, n)
        RETURNING id
    )
    -- The new ids in one text: a result row each cost more than the insert's parameters.
    SELECT string_agg(id::text, ',') FROM inserted
"""


def _joined(values: Sequence[str], count: int) -> str | None:
    """``values`` joined by _SEPARATOR, or None if one of them holds it."""
    joined = _SEPARATOR.join(values)
    return joined if joined.count(_SEPARATOR) == count - 1 else None


def insert_accounts(
    session: Session,
    table: Table,
    external_ids: Sequence[str],
    emails: Sequence[str],
    email_keys: Sequence[bytes],
    locales: Sequence[str | None],
    *,
    now: datetime,
) -> list[int]:
    """Insert accounts given as parallel columns (same length); return their new ids.

    One statement on PostgreSQL: multi-row VALUES batches with RETURNING tripled an
    import's time there (the driver splits every huge statement it is given).
    """
    if not external_ids:
        return []
    if is_postgres(session):
        # Through SQLAlchemy's connection, so a refusal is its IntegrityError as everywhere.
        connection = session.connection()
        count = len(external_ids)
        joined_ids, addresses = _joined(external_ids, count), _joined(emails, count)
        tags = _joined([locale or "" for locale in locales], count)
        sizes = set(map(len, email_keys))
        if joined_ids is None or addresses is None or tags is None or len(sizes) != 1:
            result = connection.exec_driver_sql(
                _PG_INSERT_ACCOUNTS,
                (now, now, list(external_ids), list(emails), list(email_keys), list(locales)),
            )
        else:
            joined_new = connection.exec_driver_sql(
                _PG_INSERT_JOINED_ACCOUNTS,
                {
                    "keys": b"".join(email_keys),
                    "size": sizes.pop(),
                    "now": now,
                    "ids": joined_ids,
                    "emails": addresses,
                    "locales": tags,
                    "sep": _SEPARATOR,
                },
            ).scalar_one()
            return list(map(int, joined_new.split(",")))
        # all(): one fetch of every row; iterating fetched them one by one.
        return list(result.scalars().all())
    # SQLite: one executemany on the driver's own loop, with the timestamp converted once.
    # SQLAlchemy's insert ran its bind processors on every value of every row (a third of
    # an import's time on SQLite), and sqlite3's executemany cannot return the ids.
    connection = session.connection()
    dialect = connection.dialect
    convert = table.c.created_at.type.dialect_impl(dialect).bind_processor(dialect)
    stamp = convert(now) if convert else now
    connection.exec_driver_sql(
        _SQLITE_INSERT_ACCOUNTS,
        list(zip(external_ids, emails, email_keys, locales, repeat(stamp), repeat(stamp))),
    )
    # Without an explicit id SQLite gives each new row the largest rowid plus one, and this
    # transaction holds the one write lock: the rows got consecutive ids, ending at the last.
    last = connection.exec_driver_sql("SELECT last_insert_rowid()").scalar_one()
    ids = list(range(last - len(external_ids) + 1, last + 1))
    ends = connection.exec_driver_sql(
        "SELECT external_id FROM account WHERE id IN (?, ?) ORDER BY id", (ids[0], ids[-1])
    ).scalars()
    if list(ends) != list(dict.fromkeys([external_ids[0], external_ids[-1]])):
        raise RuntimeError("SQLite did not number the inserted accounts consecutively")
    return ids


# What an upsert must know of a chunk, decided by the server: the rows whose account does
# not exist (their positions, one text), and the stored fields of those whose address or
# locale differs. An unchanged chunk sends back one row, instead of every account for
# Python to compare (1.2 CPU s per 200,000 accounts of an unchanged import).
_PG_STORED_DIFFERENCES = """
    WITH t AS MATERIALIZED (
        SELECT t.n, t.email, NULLIF(t.locale, '') AS locale, a.id, a.email AS old_email,
               a.email_key AS old_key, a.locale AS old_locale
        FROM unnest(string_to_array(%(ids)s, %(sep)s), string_to_array(%(emails)s, %(sep)s),
                    string_to_array(%(locales)s, %(sep)s)) WITH ORDINALITY
             AS t(external_id, email, locale, n)
        -- One index probe per row, whatever the statistics say: right after a bulk insert
        -- they still count the table empty, and a hash join read every account per chunk
        -- (LIMIT keeps the planner from turning the probe back into such a join).
        LEFT JOIN LATERAL (
            SELECT a.id, a.email, a.email_key, a.locale FROM account a
            WHERE a.external_id = t.external_id LIMIT 1
        ) a ON TRUE
    )
    SELECT n, id, old_email, old_key, old_locale FROM t
    WHERE id IS NOT NULL AND (old_email <> email OR old_locale IS DISTINCT FROM locale)
    UNION ALL
    SELECT NULL, NULL, string_agg(n::text, ',' ORDER BY n), NULL, NULL FROM t WHERE id IS NULL
"""

Stored = tuple[int, str, bytes, str | None]  # an account's id, email, email key, locale


def stored_differences(
    session: Session,
    external_ids: Sequence[str],
    emails: Sequence[str],
    locales: Sequence[str | None],
) -> tuple[list[int], dict[int, Stored]] | None:
    """Compare rows with the stored accounts of the same external ids, on the server.

    Returns the positions of the rows without an account, ascending, and by position the
    stored (id, email, email_key, locale) of those whose email or locale differs; rows
    left out are unchanged. None where the server cannot compare (SQLite, or a value that
    holds the separator): the caller compares ``accounts_by_external_id`` itself.
    """
    if not external_ids or not is_postgres(session):
        return None
    count = len(external_ids)
    joined_ids, addresses = _joined(external_ids, count), _joined(emails, count)
    tags = _joined([locale or "" for locale in locales], count)
    if joined_ids is None or addresses is None or tags is None:
        return None
    connection = session.connection()
    # The per-row probes' summed estimate passes jit_above_cost, and compiling the plan
    # took longer than running it (30 ms a chunk); off until the transaction ends.
    connection.exec_driver_sql("SET LOCAL jit = off")
    rows = connection.exec_driver_sql(
        _PG_STORED_DIFFERENCES,
        {"ids": joined_ids, "emails": addresses, "locales": tags, "sep": _SEPARATOR},
    ).all()
    missing_text = rows[-1][2]
    missing = [int(n) - 1 for n in missing_text.split(",")] if missing_text else []
    changed = {
        n - 1: (account_id, email, key, locale) for n, account_id, email, key, locale in rows[:-1]
    }
    return missing, changed


# The ids go as one text joined by a control character, which no valid external id holds
# (service.accounts.check_external_id), split by the server: as an array, psycopg quoted
# every element in Python, a sixth of an import's own time.
_PG_ACCOUNTS_BY_EXTERNAL_ID = """
    SELECT id, external_id, email, email_key, locale FROM account
    WHERE external_id = ANY(string_to_array(%s, %s))
"""


def accounts_by_external_id(
    session: Session, table: Table, external_ids: Sequence[str], *, lock: bool = False
) -> Iterator[tuple[int, str, str, bytes, str | None]]:
    """Yield (id, external_id, email, email_key, locale) of the accounts with these ids.

    ``lock`` takes their row locks (PostgreSQL) until the transaction ends.
    """
    if not external_ids:
        return
    joined = _joined(external_ids, len(external_ids))
    if is_postgres(session) and joined is not None:
        statement = _PG_ACCOUNTS_BY_EXTERNAL_ID + (" FOR UPDATE" if lock else "")
        rows: Any = session.connection().exec_driver_sql(statement, (joined, _SEPARATOR))
        # all(): one fetch of every row; iterating fetched them one by one (1.2 CPU s per
        # 200,000 accounts of an unchanged import).
        yield from rows.all()
        return
    columns = select(
        table.c.id, table.c.external_id, table.c.email, table.c.email_key, table.c.locale
    )
    for condition in in_batches(session, table.c.external_id, external_ids):
        query = columns.where(condition)
        yield from session.execute(query.with_for_update() if lock else query).all()


_SQLITE_INSERT_ACCOUNTS = (
    "INSERT INTO account (external_id, email, email_key, locale, created_at, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)


# One statement for any number of rows: a multi-row VALUES list per batch (SQLAlchemy's
# insertmanyvalues) was a third of an ingest's time in the profile, mostly spent by the
# driver splitting the huge statements it builds.
_PG_INSERT_EXPOSURES = text(
    """
    INSERT INTO exposure (account_id, leak_id, kind, password_hash, state, created_at)
    SELECT t.account_id, :leak_id, t.kind, t.password_hash, :state, :now
    FROM unnest(CAST(:account_ids AS bigint[]), CAST(:kinds AS varchar[]),
                CAST(:hashes AS varchar[])) AS t(account_id, kind, password_hash)
    ORDER BY t.account_id
    ON CONFLICT DO NOTHING
    RETURNING account_id
    """
)


def insert_exposures(
    session: Session,
    table: Table,
    rows: Sequence[tuple[int, str, str | None]],
    *,
    leak_id: int,
    state: str,
    now: datetime,
) -> list[int]:
    """Insert (account id, kind, password hash) exposures to a leak where none exists yet.

    Returns the account ids actually inserted. Safe against a concurrent writer: a row
    another transaction inserted first is skipped, not doubled.
    """
    if not rows:
        return []
    if is_postgres(session):
        return list(
            session.scalars(
                _PG_INSERT_EXPOSURES,
                {
                    "leak_id": leak_id,
                    "state": state,
                    "now": now,
                    "account_ids": [row[0] for row in rows],
                    "kinds": [row[1] for row in rows],
                    "hashes": [row[2] for row in rows],
                },
            )
        )
    # SQLite has one writer at a time: what this transaction reads stays true until commit,
    # so a plain executemany of the rows not there yet is exact.
    existing: set[int] = set()
    for condition in in_batches(session, table.c.account_id, [row[0] for row in rows]):
        existing.update(
            session.scalars(select(table.c.account_id).where(table.c.leak_id == leak_id, condition))
        )
    new = [row for row in rows if row[0] not in existing]
    if new:
        session.execute(
            table.insert(),
            [
                {
                    "account_id": account_id,
                    "leak_id": leak_id,
                    "kind": kind,
                    "password_hash": password_hash,
                    "state": state,
                    "created_at": now,
                }
                for account_id, kind, password_hash in new
            ],
        )
    return [row[0] for row in new]


_PG_INSERT_NOTICES = text(
    """
    INSERT INTO notice (account_id, leak_id, kind, state, attempts, created_at)
    SELECT t.account_id, :leak_id, :kind, :state, 0, :now
    FROM unnest(CAST(:account_ids AS bigint[])) AS t(account_id)
    ORDER BY t.account_id
    ON CONFLICT DO NOTHING
    """
)


def insert_notices(
    session: Session,
    table: Table,
    account_ids: Sequence[int],
    *,
    leak_id: int,
    kind: str,
    state: str,
    now: datetime,
) -> int:
    """Insert one notice per account unless its (account, kind, leak) row exists; count new."""
    if not account_ids:
        return 0
    if is_postgres(session):
        return rowcount(
            session.execute(
                _PG_INSERT_NOTICES,
                {
                    "account_ids": list(account_ids),
                    "leak_id": leak_id,
                    "kind": kind,
                    "state": state,
                    "now": now,
                },
            )
        )
    return rowcount(
        session.execute(
            table.insert().prefix_with("OR IGNORE"),
            [
                {
                    "account_id": account_id,
                    "leak_id": leak_id,
                    "kind": kind,
                    "state": state,
                    "attempts": 0,
                    "created_at": now,
                }
                for account_id in account_ids
            ],
        )
    )


def snapshot_xmin(session: Session) -> int | None:
    """The oldest transaction the current snapshot cannot see, as PostgreSQL's 64-bit
    transaction id: every row version written by an older one was committed (or rolled
    back) before it. None on SQLite, which keeps no such history."""
    if not is_postgres(session):
        return None
    return int(session.connection().exec_driver_sql(_PG_SNAPSHOT_XMIN).scalar_one())


_PG_SNAPSHOT_XMIN = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
# Older than this many transactions, a 32-bit xid's age() may have wrapped around: the
# late-account look then reads every recent account instead of trusting it.
_XID_HORIZON = 1 << 30
# The accounts written since ``since`` by a transaction the file's opening could not see
# (the account filter of every run of the file holds every older row's key), whose key is
# in the leak's watch list and that have no exposure to it. The recent accounts first,
# materialized, then one index probe each (LATERAL ... LIMIT 1): with the watch list's
# statistics stale after a merge, the planner drove the join from the leak's entries, a
# probe of the accounts per entry (938,673 for a 1,000,000-line file) even when no
# account was recent. age() compares 32-bit xids as the server does (wraparound-safe
# below _XID_HORIZON); a row frozen since counts as old, which it is.
_PG_LATE_ACCOUNTS = """
    WITH recent AS MATERIALIZED (
        SELECT a.id, a.email_key FROM account a
        WHERE a.updated_at >= %(since)s
          AND (%(xmin)s::xid IS NULL OR age(a.xmin) <= age(%(xmin)s::xid))
    )
    SELECT r.id FROM recent r
    JOIN LATERAL (
        SELECT 1 FROM leak_entry e
        WHERE e.email_key = r.email_key AND e.leak_id = %(leak_id)s LIMIT 1
    ) e ON TRUE
    WHERE NOT EXISTS (
        SELECT 1 FROM exposure x WHERE x.account_id = r.id AND x.leak_id = %(leak_id)s)
    ORDER BY r.id
"""


def late_accounts(
    session: Session, leak_id: int, *, since: datetime, accounts_xmin: int | None
) -> list[int] | None:
    """The accounts a file's chunks could not have matched (PostgreSQL), in id order.

    Those written at or after ``since`` and, unless ``accounts_xmin`` is None (or too old
    to compare), by a transaction at or after it (``snapshot_xmin`` of the file's
    opening), whose key is in the leak's watch list, without an exposure to the leak.
    None on SQLite: the caller asks with its portable query.
    """
    if not is_postgres(session):
        return None
    current = snapshot_xmin(session)
    if (
        accounts_xmin is not None
        and current is not None
        and current - accounts_xmin >= _XID_HORIZON
    ):
        accounts_xmin = None
    connection = session.connection()
    # The recent accounts' estimate passes jit_above_cost when the statistics are old:
    # compiling took longer than the look (0.4 s). Off until the transaction ends.
    connection.exec_driver_sql("SET LOCAL jit = off")
    low = None if accounts_xmin is None else str(accounts_xmin % (1 << 32))
    rows = connection.exec_driver_sql(
        _PG_LATE_ACCOUNTS, {"since": since, "xmin": low, "leak_id": leak_id}
    )
    return [int(account_id) for (account_id,) in rows.all()]


Match = tuple[int, bytes]  # (account id, email key)

# A file's keys wait in a table of their own until the file ends, then go into the watch
# list in one sorted pass (``merge_stage``). The watch list's primary key holds every leak's
# keys in random order: adding each chunk's keys to it as they came (ON CONFLICT DO NOTHING,
# three WAL records a key) cost the backend 3.4 us a line and the server's WAL writer and
# checkpointer as much again; the COPY into a heap without an index costs 0.2 us a key and
# the sorted merge 2.3 (bench/watch_list.py, README "The watch list once per file").
# The table is an ordinary one, logged, so that a file staged when PostgreSQL stops is
# still staged when it starts again: its chunks' resume points are committed with their keys.
# One table per file, dropped once merged: a DROP is free, a DELETE of millions of rows is not.
STAGE_PREFIX = "leak_stage_"
# Held while a missing stage is created: two parts of one file may commit their first chunk
# at once, and two concurrent CREATE TABLE IF NOT EXISTS of one name can fail.
STAGE_LOCKS = 0x4C53  # "LS": the advisory-lock namespace of creating a file's stage
# Held while a leak's file is merged: "LM", the namespace of the watch list's merges.
MERGE_LOCKS = 0x4C4D
# Sorted, so that the watch list's leaves are each visited once, in order. The keys the leak
# already has are skipped by an anti-join rather than ON CONFLICT DO NOTHING: a speculative
# insertion is an index probe and a WAL record more per key, a third of the merge's CPU
# (3.4 against 2.3 us a key for 2 million keys beside 2 million others; bench/watch_list.py).
_PG_MERGE = """
    INSERT INTO leak_entry (email_key, leak_id)
    SELECT DISTINCT s.email_key, %(leak_id)s::bigint FROM {stage} s
    WHERE NOT EXISTS (
        SELECT 1 FROM leak_entry e WHERE e.email_key = s.email_key AND e.leak_id = %(leak_id)s)
    ORDER BY 1
"""
_PG_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + bytes(8)  # flags, header extension length
_PG_COPY_TRAILER = b"\xff\xff"


_PG_LOCK = "SELECT pg_advisory_xact_lock(%s::integer, %s::integer)"


def _lock_key(row_id: int) -> int:
    """A bigint id as an advisory lock's integer key: two ids may share one (a wait, no harm)."""
    return row_id % (1 << 31)


def stage_name(file_id: int) -> str:
    """The name of the table that stages the keys of leak file ``file_id``."""
    return f"{STAGE_PREFIX}{int(file_id)}"


def _pg_copy_keys(packed: bytes | bytearray | memoryview, key_size: int) -> bytearray:
    """The keys packed back to back in ``packed`` as one COPY ... (FORMAT BINARY) stream of
    one bytea column.

    Filled in place with one strided copy per byte of a row (22 for a 16-byte key), so
    that a chunk's keys never exist as one ``bytes`` object each: unpacking 100,000 keys
    for a join took 6 MiB beside the 2 MiB stream, and ``write_row`` per key 0.36 us of our
    CPU a key, in the writer thread that competes for the GIL with the reader. Raises
    ValueError if ``packed`` is not a whole number of ``key_size``-byte keys (the stream
    would be malformed).
    """
    count, rest = divmod(len(packed), key_size)
    if rest or not count:
        raise ValueError(f"the email keys are not {key_size} bytes each")
    field = b"\x00\x01" + key_size.to_bytes(4, "big")  # one field, of key_size bytes
    row = len(field) + key_size
    start = len(_PG_COPY_SIGNATURE)
    end = start + count * row
    stream = bytearray(end + len(_PG_COPY_TRAILER))  # zeros: the field's zero bytes are set
    stream[:start] = _PG_COPY_SIGNATURE
    for offset, byte in enumerate(field):
        if byte:
            stream[start + offset : end : row] = bytes((byte,)) * count
    keys_at = start + len(field)
    for offset in range(key_size):
        stream[keys_at + offset : end : row] = packed[offset::key_size]
    stream[end:] = _PG_COPY_TRAILER
    return stream


def stage_and_match(
    session: Session,
    target: tuple[int, int],
    keys: Sequence[bytes],
    candidates: Sequence[bytes],
) -> list[Match]:
    """Stage ``keys`` for the leak file and find the accounts not yet exposed to the leak.

    ``target`` is (leak id, file id). The keys wait in the file's stage until
    ``merge_stage`` adds them to the watch list. Only ``candidates`` (the keys that may be
    an account's; a superset of those that are) are looked up among the accounts.
    Accounts exposed without a leaked password match again. Returns the (account, key)
    matches. Runs in the session's transaction; does not commit.
    """
    if not keys:
        return []
    leak_id, file_id = target
    driver: Any = session.connection().connection.driver_connection
    if is_postgres(session):
        return _postgres(driver, leak_id, file_id, keys, candidates)
    return _sqlite(driver, leak_id, file_id, keys, candidates)


def merge_stage(session: Session, leak_id: int, file_id: int) -> tuple[int, int] | None:
    """Add the file's staged keys to the leak's watch list, sorted, and drop the stage.

    Returns (keys staged, keys new to the leak's watch list), or None if the file has no
    stage (merged already, or never staged). Runs in the session's transaction: a merge
    interrupted anywhere leaves the stage whole. Does not commit.
    """
    driver: Any = session.connection().connection.driver_connection
    name = stage_name(file_id)
    if is_postgres(session):
        with driver.cursor() as cursor:
            cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
            if not cursor.fetchone()[0]:
                return None
            cursor.execute("SET LOCAL synchronous_commit = off")
            # The sort of a file of a few million keys in memory rather than in temporary
            # files (2 million keys took 190 MB); a bigger file's sort spills to disk.
            cursor.execute("SET LOCAL work_mem = '256MB'")
            # The merges of one leak's files one at a time: the insert below skips the keys
            # the leak has without ON CONFLICT, which is then exact.
            cursor.execute(_PG_LOCK, (MERGE_LOCKS, _lock_key(leak_id)))
            cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608  (a name of ours)
            staged = int(cursor.fetchone()[0])
            cursor.execute(_PG_MERGE.format(stage=name), {"leak_id": leak_id})
            new_entries = cursor.rowcount
            cursor.execute(f"DROP TABLE {name}")
        return staged, new_entries
    exists = driver.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    if exists is None:
        return None
    staged = int(driver.execute(f"SELECT count(*) FROM {name}").fetchone()[0])  # noqa: S608
    cursor = driver.execute(
        "INSERT OR IGNORE INTO leak_entry (email_key, leak_id) "  # noqa: S608
        f"SELECT email_key, ? FROM {name} ORDER BY email_key",
        (leak_id,),
    )
    new_entries = cursor.rowcount
    driver.execute(f"DROP TABLE {name}")
    return staged, new_entries


def count_staged(session: Session, file_ids: Sequence[int]) -> int:
    """The keys the stages of these leak files hold (absent stages: 0).

    One scan of each stage (a table without an index): for a retraction, which reports the
    keys it drops, not for the ingest's hot path. Does not commit.
    """
    driver: Any = session.connection().connection.driver_connection
    total = 0
    for file_id in file_ids:
        name = stage_name(file_id)
        if is_postgres(session):
            with driver.cursor() as cursor:
                cursor.execute("SELECT to_regclass(%s) IS NOT NULL", (name,))
                if cursor.fetchone()[0]:
                    cursor.execute(f"SELECT count(*) FROM {name}")  # noqa: S608  (ours)
                    total += int(cursor.fetchone()[0])
            continue
        exists = driver.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        if exists is not None:
            total += int(driver.execute(f"SELECT count(*) FROM {name}").fetchone()[0])  # noqa: S608
    return total


def drop_stages(session: Session, file_ids: Sequence[int]) -> None:
    """Drop the stages of these leak files, with the keys they hold; absent ones are fine.

    For a file forgotten, or a leak retracted: its staged keys must never reach the watch
    list. Waits for a chunk being committed to the stage. Does not commit.
    """
    driver: Any = session.connection().connection.driver_connection
    for file_id in file_ids:
        driver.execute(f"DROP TABLE IF EXISTS {stage_name(file_id)}")


# Accounts exposed without a leaked password match again: a later record of the same leak
# may carry their password, which must not be lost because the address came first. The
# candidates are few (the account filter let through only keys that may be an account's):
# one index probe each, never a scan of all the accounts. The keys go in binary (%b), not
# as escaped hex text.
_PG_MATCH = """
    SELECT a.id, a.email_key FROM account a
    WHERE a.email_key = ANY(%b)
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


# The keys of up to this many accounts per statement, as one bytea of fixed-size keys
# back to back: one value per batch instead of a row per account (a row each cost 2.4
# CPU seconds per million accounts in the driver). In binary form, so that a batch costs
# its 800 KiB once rather than as hex text too (250,000 a batch raised the peak by 32 MiB).
_KEY_BATCH = 50_000
_PG_KEY_BATCH = """
    SELECT max(id), string_agg(email_key, ''::bytea), bool_and(length(email_key) = %(size)s)
    FROM (SELECT id, email_key FROM account WHERE id > %(after)s ORDER BY id LIMIT %(limit)s) t
"""


def account_keys(session: Session, key_size: int) -> Iterator[bytes]:
    """Yield every account's email key (each ``key_size`` bytes), streamed in batches."""
    driver: Any = session.connection().connection.driver_connection
    if not is_postgres(session):
        for (key,) in driver.execute("SELECT email_key FROM account"):
            yield bytes(key)
        return
    after = 0
    with driver.cursor(binary=True) as cursor:
        while True:
            cursor.execute(_PG_KEY_BATCH, {"size": key_size, "after": after, "limit": _KEY_BATCH})
            last, joined, all_sized = cursor.fetchone()
            if last is None:
                return
            if not all_sized:
                raise ValueError(f"an account's email key is not {key_size} bytes")
            data = bytes(joined)
            for start in range(0, len(data), key_size):
                yield data[start : start + key_size]
            after = last


def _postgres(
    connection: Any, leak_id: int, file_id: int, keys: Sequence[bytes], candidates: Sequence[bytes]
) -> list[Match]:
    name = stage_name(file_id)
    # A chunk's keys come packed (service.addresses.PackedKeys): the stream is built from
    # its buffer. Keys of another sequence are packed first, each checked for its size.
    if isinstance(keys, PackedKeys):
        data = _pg_copy_keys(keys.packed(), keys.size)
    else:
        data = _pg_copy_keys(PackedKeys(keys).packed(), EMAIL_KEY_BYTES)
    with connection.cursor() as cursor:
        # The chunk's resume point commits with its effects, so a commit lost to a server
        # crash is simply redone by the next run: no need to wait for the WAL flush.
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SELECT to_regclass(%s) IS NULL", (name,))
        if cursor.fetchone()[0]:
            cursor.execute(_PG_LOCK, (STAGE_LOCKS, _lock_key(file_id)))
            # No index and no vacuum: appended to, read once by the merge, then dropped.
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {name} (email_key bytea NOT NULL) "
                "WITH (autovacuum_enabled = off)"
            )
        with cursor.copy(f"COPY {name} (email_key) FROM STDIN (FORMAT BINARY)") as copy:
            copy.write(data)
        matches: list[Match] = []
        if candidates:
            cursor.execute(_PG_MATCH, (list(candidates), leak_id))
            matches = [(account_id, bytes(key)) for account_id, key in cursor.fetchall()]
    return matches


def _sqlite(
    connection: Any, leak_id: int, file_id: int, keys: Sequence[bytes], candidates: Sequence[bytes]
) -> list[Match]:
    name = stage_name(file_id)
    connection.execute(f"CREATE TABLE IF NOT EXISTS {name} (email_key BLOB NOT NULL)")
    connection.executemany(
        f"INSERT INTO {name} (email_key) VALUES (?)",  # noqa: S608  (a name of ours)
        [(key,) for key in keys],
    )
    if not candidates:
        return []
    connection.execute(
        "CREATE TEMP TABLE IF NOT EXISTS ingest_stage (email_key BLOB PRIMARY KEY) WITHOUT ROWID"
    )
    connection.execute("DELETE FROM ingest_stage")
    connection.executemany(
        "INSERT OR IGNORE INTO ingest_stage (email_key) VALUES (?)",
        [(key,) for key in candidates],
    )
    matches = [
        (account_id, bytes(key))
        for account_id, key in connection.execute(_SQLITE_MATCH, (leak_id,))
    ]
    connection.execute("DELETE FROM ingest_stage")
    return matches
