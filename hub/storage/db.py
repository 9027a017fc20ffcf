"""Engines and migrations for the two backends.

SQLite (the embedded default) runs in WAL mode so that readers never wait for
the writer; write transactions start with ``BEGIN IMMEDIATE`` so that two
writers queue on the lock instead of failing half-way. PostgreSQL runs at
READ COMMITTED with row locks where a write depends on what it read.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine
from sqlalchemy.engine import make_url

from hub.storage import deadlines
from hub.storage.schema import metadata

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def resolve_url(url: str, instance_path: str | None = None) -> str:
    """Make a relative SQLite path absolute against the Flask instance folder.

    ``sqlite:///instance/hub.db`` means ``<instance folder>/hub.db``; any other
    relative SQLite path is taken from the current directory.
    """
    parsed = make_url(url)
    if (
        parsed.get_backend_name() != "sqlite"
        or not parsed.database
        or parsed.database == ":memory:"
    ):
        return url
    path = Path(parsed.database)
    if not path.is_absolute():
        if instance_path and path.parts[0] == "instance":
            path = Path(instance_path, *path.parts[1:])
        path = path.resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return parsed.set(database=str(path)).render_as_string(hide_password=False)


def make_engine(url: str, instance_path: str | None = None, echo: bool = False) -> Engine:
    url = resolve_url(url, instance_path)
    backend = make_url(url).get_backend_name()
    if backend == "sqlite":
        engine = create_engine(
            url,
            echo=echo,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=int(os.environ.get("HUB_POOL_SIZE", "8")),
            max_overflow=8,
        )
        _configure_sqlite(engine)
    elif backend == "postgresql":
        # No liveness ping on every checkout (a round trip per request): connections are
        # replaced after POOL_RECYCLE seconds, one idle for longer than IDLE_PING_SECONDS is
        # pinged when checked out, and a read whose first statement finds its connection
        # dropped runs again on a fresh one (is_disconnect, hub.app).
        engine = create_engine(
            url,
            echo=echo,
            pool_size=int(os.environ.get("HUB_POOL_SIZE", "8")),
            max_overflow=8,
            pool_recycle=int(os.environ.get("HUB_POOL_RECYCLE", "1800")),
        )
        _configure_checkout(engine)
        _plan_with_values(engine)
    else:
        raise ValueError(f"unsupported database {backend!r}: use sqlite or postgresql")
    return engine


def _plan_with_values(engine: Engine) -> None:
    """Plan every statement with its values (``plan_cache_mode = force_custom_plan``),
    and without JIT compilation (``jit = off``).

    The driver prepares a statement run five times; after five more runs PostgreSQL may
    switch it to a generic plan, made without the values. A search's plan hinges on
    them (a code on 40,000 Observations or on 40: walk the Patients in page order, or
    start from the code's rows), and the generic plan of ``_has`` took two seconds where
    the planned one takes milliseconds. Prepared statements still save the parsing.

    JIT compiles a statement whose estimated cost passes ``jit_above_cost``; the hub's
    statements are short index walks that never repay the compilation (tens of
    milliseconds), which a misestimated cost would add to a millisecond's search.
    Both settings go in one round trip when the connection is made.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        with dbapi_conn.cursor() as cur:
            cur.execute("SET plan_cache_mode = force_custom_plan; SET jit = off")
        dbapi_conn.commit()


# A pooled connection idle longer than this is pinged at checkout (a server restart or a
# firewall's idle timeout drops such connections; one in steady use is not pinged).
IDLE_PING_SECONDS = 30.0


def _configure_checkout(engine: Engine) -> None:
    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record):
        if record is not None:
            record.info["hub_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_conn, record, _proxy):
        since = record.info.get("hub_idle_since")
        if since is None or time.monotonic() - since < IDLE_PING_SECONDS:
            return
        try:
            with dbapi_conn.cursor() as cur:
                cur.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as err:  # noqa: BLE001 - any failure: the connection is gone
            # The pool discards this connection and checks out another (up to 3 tries).
            raise sa_exc.DisconnectionError(str(err)) from err


def is_disconnect(err: BaseException) -> bool:
    """Whether ``err`` is a statement that found its connection dropped (the server
    restarted, a proxy closed it); SQLAlchemy has then discarded the pool's connections."""
    return isinstance(err, sa_exc.DBAPIError) and bool(err.connection_invalidated)


def _mib(name: str, default: int) -> int:
    return max(0, int(os.environ.get(name, default)))


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Let SQLAlchemy's "begin" event issue BEGIN itself (pysqlite's own
        # transaction handling would defer it past our first SELECT).
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA wal_autocheckpoint=10000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        # Per connection. The page cache is emptied whenever another connection has
        # written (each audit batch does, every few milliseconds), so reads are served
        # mostly through the memory map; mapped pages count in the process's resident
        # memory, hence the bound (docs/scaling.md).
        cur.execute(f"PRAGMA cache_size=-{1024 * _mib('HUB_SQLITE_CACHE_MIB', 16)}")
        cur.execute("PRAGMA temp_store=MEMORY")
        cur.execute(f"PRAGMA mmap_size={1024 * 1024 * _mib('HUB_SQLITE_MMAP_MIB', 64)}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        # Straight to the driver: BEGIN itself costs a microsecond, but a statement sent
        # through SQLAlchemy (execution context, events, result) costs a hundred times
        # that, and every request begins at least one transaction.
        raw = conn.connection.driver_connection
        if conn.get_execution_options().get("hub_write"):
            raw.execute("BEGIN IMMEDIATE")
        else:
            raw.execute("BEGIN")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A read transaction (one snapshot on SQLite) for work that reads in several steps."""
    with engine.connect() as conn:
        yield conn


@contextmanager
def standalone_reads(engine: Engine) -> Iterator[Connection]:
    """A connection for reads that need no transaction around them (a request's reads).

    On PostgreSQL its statements run in autocommit: one round trip each, instead of
    a ``BEGIN`` before the first and a ``ROLLBACK`` when the connection goes back to
    the pool (the engine is at READ COMMITTED, where a transaction gives its reads
    no common snapshot anyway: each statement sees what was committed when it
    began). Not for server-side cursors (``yield_per``, ``stream_results``), settings
    or locks scoped to a transaction (``SET LOCAL``, ``pg_advisory_xact_lock``),
    which need :func:`reading`. On SQLite the same read transaction as
    :func:`reading` (one snapshot; ``BEGIN`` costs no round trip there).
    """
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


@contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A write transaction, committed when the block ends without error.

    On SQLite it starts with ``BEGIN IMMEDIATE`` (the ``hub_write`` option), so
    a transaction that reads before it writes queues for the lock up front
    instead of failing when it first writes.
    """
    with engine.connect().execution_options(hub_write=True) as conn, conn.begin():
        yield conn


@contextmanager
def committing(engine: Engine) -> Iterator[Connection]:
    """A transaction committed even when the block raises (a refused login's count must stay)."""
    with engine.connect() as conn:
        try:
            yield conn
        finally:
            conn.commit()


@contextmanager
def statement_timeout(conn, seconds: float | None):
    """Cancel the block's work on ``conn`` once it has run ``seconds`` (0/None: no limit).

    The limit is on the block as a whole, however many statements it runs.
    PostgreSQL: this process's watchdog thread (:mod:`hub.storage.deadlines`)
    sends a cancel request if the block is still running at its deadline, so
    setting the limit costs no round trip to the server; the connection's
    ``statement_timeout`` is left alone. SQLite: a progress handler interrupts the
    statement. The cancelled statement raises an ``OperationalError`` that
    :func:`is_timeout` recognises (on PostgreSQL a cancelled transaction is
    aborted, as with ``statement_timeout``).
    """
    if not seconds or seconds <= 0:
        yield
        return
    if conn.dialect.name == "postgresql":
        with deadlines.guard(conn.connection.driver_connection, seconds):
            yield
        return
    raw = conn.connection.driver_connection
    deadline = time.monotonic() + seconds
    # Called every 10 000 virtual-machine steps; a true value interrupts the statement.
    raw.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
    try:
        yield
    finally:
        raw.set_progress_handler(None, 10_000)


def is_timeout(err: Exception) -> bool:
    """Whether ``err`` is a statement cancelled by :func:`statement_timeout`."""
    if not isinstance(err, sa_exc.OperationalError):
        return False
    orig = getattr(err, "orig", None)
    if getattr(orig, "sqlstate", None) == "57014":  # query_canceled
        return True
    return "interrupted" in str(orig or err).lower()


def analyze(engine: Engine) -> list[str]:
    """Refresh the planner statistics of the hub's tables (``hub db analyze``).

    PostgreSQL plans searches from these statistics; a server with autovacuum off
    (or a bulk load just done) has none or stale ones, and picks plans that scan
    whole index tables. Run after migrations and bulk loads. SQLite plans from its
    indexes alone here (no ``sqlite_stat1``), so there is nothing to refresh.
    """
    if engine.dialect.name != "postgresql":
        return []
    present = set(table_names(engine))
    done = []
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in metadata.sorted_tables:
            if table.name in present:
                conn.exec_driver_sql(f'ANALYZE "{table.name}"')
                done.append(table.name)
    return done


def is_sqlite(engine_or_conn) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def create_all(engine: Engine) -> None:
    """Create every table directly (tests and the embedded default's first start)."""
    metadata.create_all(engine)


def alembic_config(engine: Engine):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` with Alembic (``hub db upgrade``)."""
    from alembic import command

    before = current_revision(engine)
    command.upgrade(alembic_config(engine), revision)
    if current_revision(engine) != before:
        analyze(engine)  # new or changed tables start with no statistics


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def table_names(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        if is_sqlite(engine):
            rows = conn.execute(text("SELECT name FROM sqlite_master WHERE type='table'"))
        else:
            rows = conn.execute(
                text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()")
            )
        return sorted(r[0] for r in rows)
