"""The metadata-database contract, run unchanged on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa

from driftloop.errors import ConflictError, MetadataError
from driftloop.storage.metadata import Base, Database, SimulationRow, open_metadata

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture
def db(db_url: str) -> Iterator[Database]:
    database = open_metadata(db_url)
    yield database
    database.dispose()


def _row(**overrides: object) -> SimulationRow:
    values: dict[str, object] = {
        "id": uuid.uuid4().hex,
        "created_at": dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC),
        "dataset": "plant",
        "output_uri": "s3://bucket/root",
        "start_date": dt.date(2026, 1, 1),
        "days": 3,
        "rows_per_day": 100,
        "machines": 4,
        "seed": 2**40,
        "label_delay_s": 86400.0,
        "drifts": [{"name": "concept", "severity": 0.5, "params": [["sensor", "torque_nm"]]}],
        "rows": 300,
        "failures": {"machine_failure": 9, "twf": 1},
        "files": 6,
        "driftloop_version": "0.1.0",
    }
    values.update(overrides)
    return SimulationRow(**values)


def test_migrations_reach_head_and_are_idempotent(db: Database) -> None:
    assert db.current_revision() == Database.head_revision()
    db.upgrade()
    db.upgrade()
    assert db.current_revision() == Database.head_revision()


def test_migrations_match_the_table_definitions(db: Database) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == [], f"tables.py and the migrations disagree; add a migration: {diff}"


def test_rows_round_trip_with_json_and_aware_utc_datetimes(db: Database) -> None:
    row = _row()
    with db.session() as session:
        session.add(row)
    with db.session() as session:
        loaded = session.get(SimulationRow, row.id)
        assert loaded is not None
        assert loaded.created_at == row.created_at
        assert loaded.created_at.tzinfo is not None
        assert loaded.drifts == row.drifts
        assert loaded.failures == {"machine_failure": 9, "twf": 1}
        assert loaded.seed == 2**40


def test_non_utc_datetimes_are_normalised_and_naive_ones_refused(db: Database) -> None:
    plus_two = dt.timezone(dt.timedelta(hours=2))
    row = _row(created_at=dt.datetime(2026, 1, 1, 12, 0, tzinfo=plus_two))
    with db.session() as session:
        session.add(row)
    with db.session() as session:
        loaded = session.get(SimulationRow, row.id)
        assert loaded is not None
        assert loaded.created_at == dt.datetime(2026, 1, 1, 10, 0, tzinfo=dt.UTC)
    with pytest.raises(sa.exc.StatementError, match="naive datetime"), db.session() as session:
        session.add(_row(created_at=dt.datetime(2026, 1, 1)))


def test_failed_unit_of_work_rolls_back(db: Database) -> None:
    row = _row()
    with pytest.raises(RuntimeError), db.session() as session:
        session.add(row)
        session.flush()
        raise RuntimeError("abort")
    with db.session() as session:
        assert session.get(SimulationRow, row.id) is None


def test_duplicate_key_is_a_conflict(db: Database) -> None:
    row = _row()
    with db.session() as session:
        session.add(row)
    with pytest.raises(ConflictError, match="metadata conflict"), db.session() as session:
        session.add(_row(id=row.id))


def test_queries_filter_and_order(db: Database) -> None:
    with db.session() as session:
        for day in (3, 1, 2):
            session.add(_row(created_at=dt.datetime(2026, 1, day, tzinfo=dt.UTC), dataset=f"d{day % 2}"))
    with db.session() as session:
        rows = session.scalars(
            sa.select(SimulationRow).where(SimulationRow.dataset == "d1").order_by(SimulationRow.created_at)
        ).all()
    assert [r.created_at.day for r in rows] == [1, 3]


def test_two_handles_see_each_others_commits(db_url: str, db: Database) -> None:
    other = Database(db_url)
    try:
        row = _row()
        with db.session() as session:
            session.add(row)
        with other.session() as session:
            assert session.get(SimulationRow, row.id) is not None
    finally:
        other.dispose()


def test_unreachable_database_is_a_metadata_error(tmp_path: Path) -> None:
    bad = Database("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=1")
    with pytest.raises(MetadataError, match="metadata database"):
        bad.current_revision()
    # An unwritable SQLite location is just as clear.
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(MetadataError):
        Database(f"sqlite:///{blocker}/meta.db").upgrade()


def test_invalid_url_is_a_metadata_error() -> None:
    with pytest.raises(MetadataError, match="invalid database URL"):
        Database("not a url")


def test_threads_opening_one_database_together_all_succeed(db_url: str) -> None:
    # A scheduler's jobs open the database in their own threads, often at the same moment; Alembic's
    # context is process-global, so migrating from two threads at once used to fail one of them.
    import threading

    errors: list[BaseException] = []

    def open_and_close() -> None:
        try:
            open_metadata(db_url).dispose()
        except BaseException as exc:  # every failure is the finding
            errors.append(exc)

    for _ in range(3):
        threads = [threading.Thread(target=open_and_close) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
