"""Models and migrations agree, on an empty SQLite and PostgreSQL database alike."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect

from service.db import Base
from service.db.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    is_at_head,
    upgrade_database,
)


def test_upgrade_head_on_empty_database_matches_models(db_url: str) -> None:
    # db_url was migrated from empty by the fixture; compare what alembic built with models.
    engine = create_engine(db_url)
    try:
        assert is_at_head(engine)
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        engine.dispose()


def test_exposure_and_notice_name_their_leak_without_a_foreign_key(db_url: str) -> None:
    # A foreign key is checked by a trigger and a query per inserted row on PostgreSQL: on
    # the leak, a fifth of the server's cost of an ingested match (README "The matched
    # accounts' rows"). The account's stay: an account is deleted while writers run.
    engine = create_engine(db_url)
    try:
        schema = inspect(engine)
        for table in ("exposure", "notice"):
            targets = {fk["referred_table"] for fk in schema.get_foreign_keys(table)}
            assert "leak" not in targets
            assert "account" in targets
            assert any(index["column_names"] == ["leak_id"] for index in schema.get_indexes(table))
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(db_url: str) -> None:
    engine = create_engine(db_url)
    try:
        upgrade_database(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_downgrade_to_base_and_up_again_recreates_every_table(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/roundtrip.sqlite3")
    try:
        upgrade_database(engine)
        tables = set(inspect(engine).get_table_names())
        config = alembic_config(str(engine.url))
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.downgrade(config, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade_database(engine)
        assert set(inspect(engine).get_table_names()) == tables
        assert set(Base.metadata.tables) <= tables
    finally:
        engine.dispose()
