"""The metadata database: engine, migrations and sessions over SQLite (embedded) or PostgreSQL.

Opening a :class:`Database` does not touch the schema; :meth:`Database.upgrade` applies Alembic
migrations up to head and is idempotent and safe to call from several processes at once (PostgreSQL
serialises it with an advisory lock; SQLite with its own write lock).
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from driftloop.errors import ConflictError, MetadataError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from alembic.config import Config

__all__ = ["MIGRATIONS_DIR", "Database", "open_metadata"]

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
# Arbitrary constant shared by every driftloop process: "someone is migrating this database".
_PG_MIGRATION_LOCK = 0x6472_6966  # "drif"
_MIGRATING = threading.Lock()  # Alembic's context is process-global: see Database.upgrade


class Database:
    """A handle on the metadata database at ``url`` (any SQLAlchemy URL; SQLite or PostgreSQL)."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self._engine = _make_engine(url, echo=echo)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)

    @property
    def engine(self) -> sa.Engine:
        return self._engine

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    def upgrade(self) -> None:
        """Apply every pending migration (no-op when already at head).

        One thread at a time per process: Alembic's ``EnvironmentContext`` installs itself as a
        module-level proxy (``alembic.context``), so two threads migrating at once (two scheduler jobs
        opening the database together) remove each other's proxy (``KeyError: 'script'``)."""
        from alembic import command

        with _MIGRATING, self._translate(), self._engine.begin() as conn:
            if self.dialect == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            cfg = _alembic_config(conn)
            command.upgrade(cfg, "head")

    def current_revision(self) -> str | None:
        """The schema revision the database is at (None: never migrated)."""
        from alembic.runtime.migration import MigrationContext

        with self._translate(), self._engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    @staticmethod
    def head_revision() -> str:
        """The newest revision this version of driftloop knows."""
        from alembic.script import ScriptDirectory

        head = ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()
        assert head is not None, "driftloop ships at least one migration"
        return head

    @contextlib.contextmanager
    def session(self) -> Iterator[Session]:
        """A unit of work: committed when the block exits cleanly, rolled back otherwise.

        Raises :class:`ConflictError` for constraint violations and :class:`MetadataError` when the
        database is unreachable.
        """
        with self._translate(), self._sessions.begin() as session:
            yield session

    def dispose(self) -> None:
        self._engine.dispose()

    @contextlib.contextmanager
    def _translate(self) -> Iterator[None]:
        try:
            yield
        except IntegrityError as exc:
            raise ConflictError(f"metadata conflict: {_first_line(exc.orig)}") from exc
        except OperationalError as exc:
            raise MetadataError(
                f"metadata database {_safe_url(self._engine)}: {_first_line(exc.orig)}"
            ) from exc

    def __repr__(self) -> str:
        return f"Database({_safe_url(self._engine)!r})"


def _make_engine(url: str, *, echo: bool) -> sa.Engine:
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        raise MetadataError(f"invalid database URL: {exc}") from None
    kwargs: dict[str, Any] = {"echo": echo}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            directory = Path(parsed.database).expanduser().parent
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise MetadataError(
                    f"cannot create the SQLite directory {directory}: {exc.strerror}"
                ) from None
        kwargs["connect_args"] = {"timeout": 30}
    else:
        kwargs["pool_pre_ping"] = True
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except (ImportError, sa.exc.ArgumentError) as exc:
        raise MetadataError(
            f"cannot use database URL {parsed.render_as_string(hide_password=True)}: {exc}"
        ) from None
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers work while one process writes; foreign keys are off by default in SQLite.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.close()


def _alembic_config(conn: sa.Connection) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def _safe_url(engine: sa.Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _first_line(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else "unknown error"
    return text.strip().splitlines()[0] if text.strip() else type(exc).__name__


def open_metadata(url: str, *, echo: bool = False) -> Database:
    """Open the metadata database at ``url`` and bring its schema to head (idempotent)."""
    db = Database(url, echo=echo)
    db.upgrade()
    return db
