"""Subscriptions: their owners, the feed cursor that matches changes, and notifications.

Matching (:meth:`SubscriptionStore.matching`) reads the next changes after the
``subscriptions`` cursor and queues their notifications in one transaction that
also moves the cursor, so a worker killed at any point neither loses nor doubles
a notification (the unique ``(subscription_id, change_seq)`` makes a doubled
insert fail rather than send twice); on PostgreSQL the cursor row is locked
(``FOR UPDATE``) so that one matcher runs at a time.

Delivery (:meth:`SubscriptionStore.queue`) takes one subscription's notifications:
on PostgreSQL with a transaction-scoped advisory lock, so several workers deliver
at once while each subscription's notifications go out one at a time, in order;
on SQLite (one writer) each status is committed at once rather than holding the
database lock while a notification is on the wire.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import orjson
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import tuple_
from sqlalchemy import update
from sqlalchemy.engine import Connection
from sqlalchemy.engine import Engine

from hub.storage import feed
from hub.storage import schema as s

n = s.subscription_notification
st = s.subscription_state


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclasses.dataclass
class SubscriptionRow:
    """An active Subscription as the matcher sees it."""

    res_id: str
    resource: dict[str, Any]
    owner: dict[str, Any] | None  # the owner's principal, as :func:`set_owner` keeps it
    from_seq: int | None  # changes after this seq are notified; None: not seen yet


@dataclasses.dataclass
class PendingNotification:
    id: int
    change_seq: int
    res_type: str
    res_id: str
    version: int
    attempts: int
    next_attempt_at: dt.datetime
    content: str | None  # the version's JSON (None: a deletion, or no longer kept)


def set_owner(conn: Connection, res_id: str, owner: dict[str, Any] | None) -> None:
    """Record who wrote Subscription ``res_id`` (in the writer's transaction).

    ``owner`` None (the hub's own write, such as setting ``status`` to ``error``)
    keeps the owner already recorded.
    """
    values: dict[str, Any] = {"updated_at": _now()}
    if owner is not None:
        values["owner"] = orjson.dumps(owner).decode()
    done = conn.execute(update(st).where(st.c.res_id == res_id).values(**values))
    if done.rowcount == 0:
        conn.execute(insert(st).values(res_id=res_id, **values))


class Matching:
    """The changes after the cursor, inside the transaction that queues their notifications."""

    def __init__(self, conn: Connection, changes: list):
        self.conn = conn  # the searches that match run in the same snapshot
        self.changes = changes

    def active(self) -> list[SubscriptionRow]:
        """The current, non-deleted Subscriptions whose status is ``active``."""
        r = s.resource
        rows = self.conn.execute(
            select(r.c.res_id, r.c.content, st.c.owner, st.c.from_seq)
            .select_from(r.outerjoin(st, st.c.res_id == r.c.res_id))
            .where(r.c.res_type == "Subscription", r.c.deleted.is_(False))
        ).all()
        out = []
        for row in rows:
            resource = orjson.loads(row.content) if row.content else {}
            if resource.get("status") != "active":
                continue
            owner = orjson.loads(row.owner) if row.owner else None
            out.append(SubscriptionRow(row.res_id, resource, owner, row.from_seq))
        return out

    def started(self, res_id: str, seq: int) -> None:
        """Subscription ``res_id`` was written at change ``seq``: it hears later changes."""
        done = self.conn.execute(
            update(st).where(st.c.res_id == res_id).values(from_seq=seq, updated_at=_now())
        )
        if done.rowcount == 0:
            self.conn.execute(insert(st).values(res_id=res_id, from_seq=seq, updated_at=_now()))

    def current_versions(self, keys: set[tuple[str, str]]) -> dict[tuple[str, str], int]:
        """The current version of each ``(type, id)``."""
        r = s.resource
        found: dict[tuple[str, str], int] = {}
        ordered = sorted(keys)
        for i in range(0, len(ordered), 300):
            rows = self.conn.execute(
                select(r.c.res_type, r.c.res_id, r.c.version).where(
                    tuple_(r.c.res_type, r.c.res_id).in_(ordered[i : i + 300])
                )
            )
            found.update({(t, rid): v for t, rid, v in rows})
        return found

    def queue(self, subscription_id: str, change) -> None:
        """Queue the notification of ``change`` for ``subscription_id``, due now."""
        now = _now()
        self.conn.execute(
            insert(n).values(
                subscription_id=subscription_id,
                change_seq=change.seq,
                res_type=change.res_type,
                res_id=change.res_id,
                version=change.version,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        )


class NotificationQueue:
    """One subscription's pending notifications, taken by one worker."""

    def __init__(self, store: SubscriptionStore, conn: Connection, subscription_id: str):
        self.store, self.conn, self.subscription_id = store, conn, subscription_id

    def pending(self, limit: int) -> list[PendingNotification]:
        """The subscription's pending notifications, oldest first, with their versions' JSON."""
        h = s.resource_history
        rows = self.conn.execute(
            select(
                n.c.id,
                n.c.change_seq,
                n.c.res_type,
                n.c.res_id,
                n.c.version,
                n.c.attempts,
                n.c.next_attempt_at,
                h.c.content,
            )
            .select_from(
                n.outerjoin(
                    h,
                    (h.c.res_type == n.c.res_type)
                    & (h.c.res_id == n.c.res_id)
                    & (h.c.version == n.c.version),
                )
            )
            .where(n.c.status == "pending", n.c.subscription_id == self.subscription_id)
            .order_by(n.c.id)
            .limit(limit)
        ).all()
        return [PendingNotification(*row) for row in rows]

    def update(self, notification_id: int, **values: Any) -> None:
        """Record an attempt's result (status, attempts, error, next attempt...)."""
        stmt = update(n).where(n.c.id == notification_id).values(**values)
        if self.conn.dialect.name == "postgresql":
            self.conn.execute(stmt)
            return
        with self.store.engine.connect().execution_options(hub_write=True) as w, w.begin():
            w.execute(stmt)


class SubscriptionStore:
    def __init__(self, engine: Engine):
        self.engine = engine

    @contextmanager
    def matching(self, cursor: str, batch: int) -> Iterator[Matching]:
        """The next ``batch`` changes after ``cursor``; the cursor moves past them on success."""
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            with feed.next_changes(conn, cursor, batch) as changes:
                yield Matching(conn, changes)

    def waiting(self) -> list[str]:
        """The subscriptions with pending notifications."""
        with self.engine.connect() as conn:
            stmt = select(n.c.subscription_id).where(n.c.status == "pending").distinct()
            return [r[0] for r in conn.execute(stmt)]

    @contextmanager
    def queue(self, subscription_id: str) -> Iterator[NotificationQueue | None]:
        """The subscription's queue, or None when another worker is delivering it."""
        with self.engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                got = conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"),
                    {"k": f"subscription:{subscription_id}"},
                ).scalar()
                if not got:
                    yield None
                    return
            yield NotificationQueue(self, conn, subscription_id)

    def owner(self, res_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            raw = conn.execute(select(st.c.owner).where(st.c.res_id == res_id)).scalar()
        return orjson.loads(raw) if raw else None

    def list(self, subscription_id: str | None = None, status: str | None = None) -> list[dict]:
        """Notifications as JSON-ready dicts, oldest first (operators, tests)."""
        stmt = select(n).order_by(n.c.id)
        if subscription_id:
            stmt = stmt.where(n.c.subscription_id == subscription_id)
        if status:
            stmt = stmt.where(n.c.status == status)
        with self.engine.connect() as conn:
            return [
                {
                    k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                    for k, v in row._mapping.items()
                }
                for row in conn.execute(stmt)
            ]

    def counts(self) -> dict[str, int]:
        """Notifications by status."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(n.c.status, func.count()).group_by(n.c.status))
            return {status: count for status, count in rows}
