"""Engine, sessions and the retry of a transaction that lost a unique race.

Nothing connects at import: ``Database`` is built by the app factory or a CLI command
from settings and handed to whoever needs it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Engine, Result, create_engine, event, make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.private_files import narrow_if_present

T = TypeVar("T")


class Database:
    """One engine and its session factory."""

    def __init__(
        self,
        url: str,
        *,
        echo: bool = False,
        statement_timeout: float | None = None,
        session_info: dict[str, object] | None = None,
    ) -> None:
        """``session_info``: put in every session's ``info`` (the runtime's event policy,
        which code given only a session reads: service/events/emit.py)."""
        self.url = url
        self.engine = make_engine(url, echo=echo, statement_timeout=statement_timeout)
        self.sessions = sessionmaker(
            self.engine, expire_on_commit=False, info=dict(session_info or {})
        )

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session; commit when the block ends, roll back if it raises."""
        with self.sessions.begin() as session:
            yield session

    @contextmanager
    def read_session(self) -> Iterator[Session]:
        """Yield a session for reads; whatever it did is rolled back.

        Objects read stay usable after the block: they are detached, not expired.
        """
        with self.sessions() as session:
            try:
                yield session
            finally:
                session.expunge_all()
                session.rollback()

    def dispose(self) -> None:
        self.engine.dispose()


def make_engine(url: str, *, echo: bool = False, statement_timeout: float | None = None) -> Engine:
    """Create an engine with the per-backend settings Leakguard relies on.

    ``statement_timeout`` (seconds; None or 0: unbounded) bounds every statement on
    PostgreSQL, waits for locks included; a statement cut short raises OperationalError
    (SQLSTATE 57014, query_canceled). SQLite has no such bound: its writers wait up to 30 s
    for the one write lock.
    """
    if url.startswith("sqlite"):
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        database = make_url(url).database
        files = (
            [Path(database + suffix) for suffix in ("", "-wal", "-shm", "-journal")]
            if database and database != ":memory:" and not database.startswith("file:")
            else []
        )

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            # SQLite has just created the file (0644 under a usual umask): make it 0600
            # before WAL mode creates the -wal and -shm files, which take its mode.
            for path in files:
                narrow_if_present(path)
            _sqlite_pragmas(dbapi_connection)

        event.listen(engine, "connect", on_connect)
        return engine
    engine = create_engine(
        url,
        echo=echo,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=10,
        # A request waits at most this long for a connection: the login service is waiting
        # too, and an unreachable server must become a quick 503, not a hung sign-in.
        pool_timeout=POOL_TIMEOUT_SECONDS,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )
    if statement_timeout:
        milliseconds = max(1, round(statement_timeout * 1000))

        def bound_statements(dbapi_connection: Any, _record: Any) -> None:
            # A SET on each new connection rather than libpq's startup "options": PgBouncer
            # refuses startup options it does not know.
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            with dbapi_connection.cursor() as cursor:
                cursor.execute(f"SET statement_timeout = {milliseconds}")
            dbapi_connection.autocommit = autocommit

        event.listen(engine, "connect", bound_statements)
    return engine


CONNECT_TIMEOUT_SECONDS = 2  # libpq's smallest
POOL_TIMEOUT_SECONDS = 5


def _sqlite_pragmas(dbapi_connection: Any) -> None:
    # WAL lets the API read while an import writes; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def run_in_transaction(database: Database, work: Callable[[Session], T], *, attempts: int = 3) -> T:
    """Run ``work`` in a transaction, retrying when a concurrent writer won a unique race.

    ``work`` must be safe to repeat: it runs again from the start in a fresh transaction.
    """
    for attempt in range(1, attempts + 1):
        try:
            with database.transaction() as session:
                return work(session)
        except IntegrityError:
            if attempt == attempts:
                raise
    raise AssertionError("unreachable")


def rowcount(result: Result[Any]) -> int:
    """Rows an INSERT, UPDATE or DELETE touched (0 where the driver cannot tell)."""
    return int(getattr(result, "rowcount", 0) or 0)
