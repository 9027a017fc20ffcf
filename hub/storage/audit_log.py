"""The audit log: the ``audit_event`` table, an append-only hash chain.

The chain's rules (what is hashed, under which key) are the audit module's
(:mod:`hub.audit`); this store holds the rows and serialises appends: on
PostgreSQL a transaction-scoped advisory lock, on SQLite the single writer
(callers append inside a write transaction, ``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import delete
from sqlalchemy import exc as sa_exc
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub.storage import schema as s

# pg_advisory_xact_lock key of the audit chain (an arbitrary constant: "AUDIT" in ASCII).
CHAIN_LOCK = 0x4155444954

t = s.audit_event
# Built once: an audit append runs on every request.
_HEAD = select(t.c.seq, t.c.hash).order_by(t.c.seq.desc()).limit(1)
_INSERT = insert(t)
# The driver's statements of PostgreSQL's pipelined appends (locked_head, append_batch).
_PG_LOCK = "SELECT pg_advisory_xact_lock(%s)"
_PG_HEAD = "SELECT seq, hash FROM audit_event ORDER BY seq DESC LIMIT 1"
_PG_COLUMNS = tuple(c.name for c in t.columns)
_RECORDED = _PG_COLUMNS.index("recorded")
# ``recorded`` as the column type stores it (naive UTC), for the driver-level insert.
_STORE_RECORDED = s.UTCDateTime().process_bind_param
_PG_INSERT = (
    f"INSERT INTO audit_event ({', '.join(_PG_COLUMNS)})"
    f" VALUES ({', '.join('%s' for _ in _PG_COLUMNS)})"
)


@contextmanager
def _driver_errors(raw: Any, statement: str) -> Iterator[None]:
    """The driver's errors as SQLAlchemy reports them (``OperationalError``, ...)."""
    try:
        yield
    except raw.Error as err:
        raise sa_exc.DBAPIError.instance(statement, None, err, raw.Error) from err


@dataclasses.dataclass(frozen=True)
class ChainLink:
    """A row's place in the chain: its ``seq`` and ``hash``."""

    seq: int
    hash: str


@dataclasses.dataclass
class AuditFilter:
    """An AuditEvent search: every condition must hold (lists: each entry is a condition)."""

    recorded: list[tuple[str, dt.datetime]] = dataclasses.field(default_factory=list)  # (op, at)
    agents: list[str] = dataclasses.field(default_factory=list)  # who, or the client id
    sites: list[str] = dataclasses.field(default_factory=list)
    entities: list[str] = dataclasses.field(default_factory=list)  # Type/id, any version
    outcomes: list[str] = dataclasses.field(default_factory=list)
    interactions: list[str] = dataclasses.field(default_factory=list)
    before: list[int] = dataclasses.field(default_factory=list)  # seq, for paging


@dataclasses.dataclass(frozen=True)
class AuditRow:
    seq: int
    id: str
    content: str  # the AuditEvent's JSON


_OPS = {
    "eq": lambda c, at: c == at,
    "ge": lambda c, at: c >= at,
    "gt": lambda c, at: c > at,
    "le": lambda c, at: c <= at,
    "lt": lambda c, at: c < at,
}


class AuditLogStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A write transaction of its own (events of reads, failures, logins; checkpoints)."""
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            yield conn

    @staticmethod
    def locked_head(conn: Connection) -> ChainLink | None:
        """The chain's last row, with the chain locked until ``conn``'s transaction ends.

        On PostgreSQL the lock and the read are two statements (the read's snapshot
        must be taken once the lock is held, so that it sees the rows of the
        transaction that held it before), sent together in one round trip (with the
        ``BEGIN`` when they open the transaction).
        """
        if conn.dialect.name == "postgresql":
            raw = conn.connection.driver_connection
            with _driver_errors(raw, _PG_HEAD):
                with raw.pipeline():
                    raw.execute(_PG_LOCK, (CHAIN_LOCK,))
                    cur = raw.execute(_PG_HEAD)
                row = cur.fetchone()
            return ChainLink(row[0], row[1]) if row else None
        row = conn.execute(_HEAD).first()
        return ChainLink(row.seq, row.hash) if row else None

    @staticmethod
    def append(conn: Connection, row: dict[str, Any]) -> None:
        """Insert one chained row (every column, ``hash`` included)."""
        conn.execute(_INSERT, row)

    def append_batch(
        self, chain: Callable[[Connection, ChainLink | None], list[dict[str, Any]]]
    ) -> None:
        """Append rows in a transaction of their own, committed on return.

        Locks the chain, reads its head, inserts the rows ``chain(conn, head)``
        builds (each chained to the one before it; ``chain`` runs under the lock)
        and commits. On PostgreSQL that is two round trips: ``BEGIN``, the lock and
        the head go together, and so do the rows and the ``COMMIT`` (pipeline mode).
        """
        with self.writing() as conn:
            rows = chain(conn, self.locked_head(conn))
            if not rows:
                return
            if conn.dialect.name != "postgresql":
                conn.execute(_INSERT, rows)
                return
            raw = conn.connection.driver_connection
            data = []
            for row in rows:
                values = [row[c] for c in _PG_COLUMNS]
                values[_RECORDED] = _STORE_RECORDED(values[_RECORDED], None)
                data.append(values)
            with _driver_errors(raw, _PG_INSERT):
                with raw.pipeline(), raw.cursor() as cur:
                    cur.executemany(_PG_INSERT, data)
                    # In the same round trip; the transaction's own commit then finds
                    # nothing left to commit.
                    raw.commit()

    @staticmethod
    def last_before(conn: Connection, recorded: dt.datetime) -> ChainLink | None:
        """The last row recorded before ``recorded``."""
        row = conn.execute(
            select(t.c.seq, t.c.hash)
            .where(t.c.recorded < recorded)
            .order_by(t.c.seq.desc())
            .limit(1)
        ).first()
        return ChainLink(row.seq, row.hash) if row else None

    @staticmethod
    def delete_through(conn: Connection, seq: int) -> int:
        """Delete the rows up to ``seq`` (a prune); returns how many there were."""
        count = conn.execute(select(func.count()).select_from(t).where(t.c.seq <= seq)).scalar_one()
        conn.execute(delete(t).where(t.c.seq <= seq))
        return count

    def find(self, where: AuditFilter, limit: int) -> list[AuditRow]:
        """Up to ``limit`` events matching ``where``, newest first."""
        stmt = select(t.c.seq, t.c.id, t.c.content)
        for op, at in where.recorded:
            stmt = stmt.where(_OPS[op](t.c.recorded, at))
        for agent in where.agents:
            stmt = stmt.where(or_(t.c.who == agent, t.c.client == agent))
        for site in where.sites:
            stmt = stmt.where(t.c.site == site)
        for ref in where.entities:
            escaped = ref.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(
                or_(
                    t.c.entity.like(f"% {escaped} %", escape="\\"),
                    t.c.entity.like(f"% {escaped}/\\_history/%", escape="\\"),
                )
            )
        for outcome in where.outcomes:
            stmt = stmt.where(t.c.outcome == outcome)
        for interaction in where.interactions:
            stmt = stmt.where(t.c.interaction == interaction)
        for seq in where.before:
            stmt = stmt.where(t.c.seq < seq)
        stmt = stmt.order_by(t.c.seq.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [AuditRow(r.seq, r.id, r.content) for r in conn.execute(stmt)]

    @staticmethod
    def recorded_at(conn: Connection, seq: int) -> dt.datetime:
        """Row ``seq``'s ``recorded``."""
        return conn.execute(select(t.c.recorded).where(t.c.seq == seq)).scalar_one()

    def content(self, event_id: str) -> str | None:
        """The JSON of event ``event_id``; None if unknown."""
        with self.engine.connect() as conn:
            return conn.execute(select(t.c.content).where(t.c.id == event_id)).scalar()

    @staticmethod
    def batch_after(conn: Connection, after: int, batch: int) -> list:
        """Up to ``batch`` whole rows after ``seq`` ``after``, in chain order (verification)."""
        return conn.execute(select(t).where(t.c.seq > after).order_by(t.c.seq).limit(batch)).all()
