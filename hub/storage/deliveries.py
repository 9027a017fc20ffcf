"""Deliveries: outbound messages queued from the change feed, and the feed's cursor.

Dispatch (:meth:`DeliveryStore.dispatching`) reads the next changes after the
cursor and queues their messages in one transaction that also moves the
cursor, so a crash never loses or doubles a message; on PostgreSQL the cursor
row is locked (``FOR UPDATE``) so that one dispatcher runs at a time.

Delivery (:meth:`DeliveryStore.site_queue`) takes one site's queue: on
PostgreSQL with a transaction-scoped advisory lock, so several workers deliver
at once while each site's messages go out one at a time; on SQLite (one
writer) each status is committed at once rather than holding the database
lock while a message is on the wire.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub.storage import feed
from hub.storage import schema as s
from hub.storage.listing import StatusListing

d = s.delivery


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _pending(site: str, change_seq: int, message_key: str, msg: Any) -> dict[str, Any]:
    """The row of a new delivery, due now."""
    now = _now()
    return {
        "site": site,
        "change_seq": change_seq,
        "message_key": message_key,
        "content_type": msg.content_type,
        "body": msg.body,
        "description": msg.description,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


@dataclasses.dataclass
class PendingDelivery:
    id: int
    body: bytes
    content_type: str | None
    attempts: int
    next_attempt_at: dt.datetime
    change_seq: int = 0


def _content(conn: Connection, res_type: str, res_id: str, version: int) -> dict[str, Any] | None:
    """The resource as version ``version`` left it, or the version before it when that
    one is a deletion (which keeps no content); ``None`` when there is none."""
    h = s.resource_history
    content = conn.execute(
        select(h.c.content)
        .where(
            h.c.res_type == res_type,
            h.c.res_id == res_id,
            h.c.version <= version,
            h.c.deleted.is_(False),
        )
        .order_by(h.c.version.desc())
        .limit(1)
    ).scalar()
    return orjson.loads(content) if content is not None else None


class Dispatch:
    """The changes after a cursor, inside the transaction that queues their messages."""

    def __init__(self, conn: Connection, changes: list):
        self.conn = conn  # for adapters' reads in the same snapshot
        self.changes = changes

    def version(self, change) -> dict[str, Any]:
        """The resource as ``change`` left it."""
        h = s.resource_history
        content = self.conn.execute(
            select(h.c.content).where(
                h.c.res_type == change.res_type,
                h.c.res_id == change.res_id,
                h.c.version == change.version,
            )
        ).scalar_one()
        return orjson.loads(content)

    def previous(self, change) -> dict[str, Any] | None:
        """The resource as it was before ``change`` (``None`` for a creation): what an
        adapter compares with to tell a move (a merge) or an end (a deletion)."""
        if change.version <= 1:
            return None
        return _content(self.conn, change.res_type, change.res_id, change.version - 1)

    def queue(self, site: str, change_seq: int, message_key: str, msg: Any) -> None:
        """Queue one outbound message (``content_type``, ``body``, ``description``)."""
        self.conn.execute(insert(d).values(_pending(site, change_seq, message_key, msg)))


class Replay:
    """Current versions to queue again for one site (:meth:`DeliveryStore.replaying`)."""

    def __init__(self, conn: Connection, rows: list[tuple[int, dict[str, Any]]]):
        self.conn = conn  # for adapters' reads in the same snapshot
        self.rows = rows

    def queue_new(self, site: str, change_seq: int, message_key: str, msg: Any) -> bool:
        """Queue the message unless the site has it already (queued, sent or dead)."""
        exists = self.conn.execute(
            select(d.c.id).where(
                d.c.site == site, d.c.change_seq == change_seq, d.c.message_key == message_key
            )
        ).first()
        if exists is not None:
            return False
        self.conn.execute(insert(d).values(_pending(site, change_seq, message_key, msg)))
        return True


class SiteQueue:
    """One site's pending deliveries, taken by one worker."""

    def __init__(self, store: DeliveryStore, conn: Connection, site: str):
        self.store, self.conn, self.site = store, conn, site

    def pending(self, limit: int) -> list[PendingDelivery]:
        """The site's pending messages, oldest first."""
        rows = self.conn.execute(
            select(
                d.c.id, d.c.body, d.c.content_type, d.c.attempts, d.c.next_attempt_at,
                d.c.change_seq,
            )
            .where(d.c.status == "pending", d.c.site == self.site)
            .order_by(d.c.id)
            .limit(limit)
        ).all()  # fmt: skip
        return [
            PendingDelivery(
                r.id, bytes(r.body), r.content_type, r.attempts, r.next_attempt_at, r.change_seq
            )
            for r in rows
        ]

    def changed(self, change_seq: int) -> tuple[str, dict[str, Any] | None] | None:
        """What change ``change_seq`` wrote: ``("Type/id/_history/n", content)``, the
        content being the last one kept (a deletion's is the version before it)."""
        if not change_seq:
            return None
        c = s.change
        row = self.conn.execute(
            select(c.c.res_type, c.c.res_id, c.c.version).where(c.c.seq == change_seq)
        ).first()
        if row is None:
            return None
        ref = f"{row.res_type}/{row.res_id}/_history/{row.version}"
        return ref, _content(self.conn, row.res_type, row.res_id, row.version)

    def update(
        self, delivery_id: int, after: Callable[[Connection], None] | None = None, **values: Any
    ) -> None:
        """Record an attempt's result (status, attempts, errors, response...).

        ``after(conn)`` runs in the same transaction (the audit of a disclosure commits
        with the delivery's ``sent`` status, or neither does).
        """
        stmt = update(d).where(d.c.id == delivery_id).values(**values)
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(stmt)
            if after is not None:
                after(self.conn)
            return
        with self.store.engine.connect().execution_options(hub_write=True) as w, w.begin():
            w.execute(stmt)
            if after is not None:
                after(w)


class DeliveryStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def dispatching(self, cursor: str, batch: int) -> Iterator[Dispatch]:
        """The next ``batch`` changes after ``cursor``; the cursor moves past them on success."""
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            with feed.next_changes(conn, cursor, batch) as changes:
                yield Dispatch(conn, changes)

    def waiting_sites(self) -> list[str]:
        """The sites with pending deliveries."""
        with self.engine.connect() as conn:
            stmt = select(d.c.site).where(d.c.status == "pending").distinct()
            return [r[0] for r in conn.execute(stmt)]

    @contextmanager
    def site_queue(self, site: str) -> Iterator[SiteQueue | None]:
        """``site``'s queue, or None when another worker is delivering to it."""
        with self.engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                got = conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"),
                    {"k": f"delivery:{site}"},
                ).scalar()
                if not got:
                    yield None
                    return
            yield SiteQueue(self, conn, site)

    # The columns of the operators' deliveries screen and its exports.
    SCREEN_COLUMNS = (
        "id",
        "site",
        "message_key",
        "description",
        "status",
        "attempts",
        "created_at",
        "sent_at",
        "last_error",
    )

    def screen(self) -> StatusListing:
        """Pages, exports and whole rows for the operators' screens."""
        return StatusListing(self.engine, d, self.SCREEN_COLUMNS)

    @contextmanager
    def replaying(self, res_type: str) -> Iterator[Replay]:
        """Every stored (not deleted) ``res_type`` with the seq of the change that made its
        current version, oldest change first, in a transaction that queues what they mean."""
        r, c = s.resource, s.change
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            rows = conn.execute(
                select(c.c.seq, r.c.content)
                .join(
                    c,
                    (c.c.res_type == r.c.res_type)
                    & (c.c.res_id == r.c.res_id)
                    & (c.c.version == r.c.version),
                )
                .where(r.c.res_type == res_type, r.c.deleted.is_(False))
                .order_by(c.c.seq)
            ).all()
            yield Replay(conn, [(row.seq, orjson.loads(row.content)) for row in rows])

    def add(self, site: str, change_seq: int, message_key: str, msg: Any) -> int:
        """Queue one message outside the change feed (an operation's document); its id."""
        row = _pending(site, change_seq, message_key, msg)
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            return conn.execute(insert(d).returning(d.c.id).values(row)).scalar_one()

    def retry(self, delivery_id: int) -> bool:
        """Put a dead (or waiting) delivery back in the queue, due now; True if it was."""
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            done = conn.execute(
                update(d)
                .where(d.c.id == delivery_id, d.c.status.in_(("dead", "pending")))
                .values(status="pending", next_attempt_at=_now())
            )
            return done.rowcount == 1

    def list(
        self, status: str | None = None, site: str | None = None, limit: int = 100
    ) -> list[dict[str, Any]]:
        """Deliveries without their bodies, newest first, as JSON-ready dicts."""
        stmt = select(
            d.c.id,
            d.c.site,
            d.c.change_seq,
            d.c.message_key,
            d.c.description,
            d.c.status,
            d.c.attempts,
            d.c.next_attempt_at,
            d.c.last_error,
            d.c.created_at,
            d.c.sent_at,
        )
        if status:
            stmt = stmt.where(d.c.status == status)
        if site:
            stmt = stmt.where(d.c.site == site)
        with self.engine.connect() as conn:
            rows = conn.execute(stmt.order_by(d.c.id.desc()).limit(limit))
            return [
                {
                    k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                    for k, v in row._mapping.items()
                }
                for row in rows
            ]
