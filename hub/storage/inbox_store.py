"""The inbox store: every inbound payload, raw and durable, before anyone answers the sender.

A payload is stored under the unique key (site, source key, payload hash): the
same message delivered twice (a sender that lost our acknowledgement) finds
its first copy and is answered from it, never processed twice. Statuses:

* ``pending``: stored, not processed yet;
* ``processing``: claimed by a process (``processed_at`` is the claim time); a
  claim older than the lease (a process that died mid-message) is taken again;
* ``done``: mapped and stored; ``partial``: stored, but some parts (e.g.
  registry rows) were refused, see the outcome;
* ``failed``: mapping or storage refused it (the outcome says why); it can be
  replayed after a fix. A payload refused as too large (413) is kept as its
  digest and the reason only, without its body: the sender must send it again;
* ``quarantined``: mapped, but validation found errors and the site's policy
  is ``quarantine``: kept aside for review, replayable.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
from typing import Any

import orjson
from sqlalchemy import and_
from sqlalchemy import bindparam
from sqlalchemy import exc as sa_exc
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import or_
from sqlalchemy import select
from sqlalchemy import update
from sqlalchemy.engine import Engine

from hub.storage import schema as s
from hub.storage.listing import StatusListing

STATUSES = ("pending", "processing", "done", "partial", "failed", "quarantined")
REPLAYABLE = ("pending", "failed", "quarantined")


@dataclasses.dataclass
class InboxItem:
    id: int
    site: str
    source_key: str
    payload_hash: str
    format: str | None
    content_type: str | None
    received_at: dt.datetime
    status: str
    attempts: int
    processed_at: dt.datetime | None
    outcome: dict | None
    result: dict | None
    body: bytes | None = None
    # The adapter's parse of ``body`` while it is processed from memory (never stored).
    parsed: Any = dataclasses.field(default=None, repr=False, compare=False)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready view without the body (the API and ``hub inbox list``)."""
        return {
            "id": self.id,
            "site": self.site,
            "source_key": self.source_key,
            "format": self.format,
            "content_type": self.content_type,
            "received_at": self.received_at.isoformat(),
            "status": self.status,
            "attempts": self.attempts,
            "processed_at": self.processed_at.isoformat() if self.processed_at else None,
            "outcome": self.outcome,
            "result": self.result,
        }


_COLS = [c for c in s.inbox.c if c.name != "body"]


def _item(row, with_body: bool = False) -> InboxItem:
    return InboxItem(
        id=row.id,
        site=row.site,
        source_key=row.source_key,
        payload_hash=row.payload_hash,
        format=row.format,
        content_type=row.content_type,
        received_at=row.received_at,
        status=row.status,
        attempts=row.attempts,
        processed_at=row.processed_at,
        outcome=orjson.loads(row.outcome) if row.outcome else None,
        result=orjson.loads(row.result) if row.result else None,
        body=bytes(row.body) if with_body else None,
    )


def _same_instant(a: dt.datetime | None, b: dt.datetime | None) -> bool:
    if a is None or b is None:
        return a is b
    if a.tzinfo is None:
        a = a.replace(tzinfo=dt.UTC)
    if b.tzinfo is None:
        b = b.replace(tzinfo=dt.UTC)
    return a == b


def payload_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _row(site, body, source_key, fmt, content_type, claim, now, refused=None) -> dict[str, Any]:
    """The inbox row of a payload received ``now`` (keyed by its hash when it has no key).

    ``refused`` (an outcome) records a payload refused on arrival: status
    ``failed``, its digest and that outcome, not its body.
    """
    digest = payload_hash(body)
    row = {
        "site": site,
        "source_key": (source_key or digest)[:255],
        "payload_hash": digest,
        "format": fmt,
        "content_type": content_type,
        "received_at": now,
        "body": body,
        "status": "processing" if claim else "pending",
        "processed_at": now if claim else None,
        "attempts": 0,
    }
    if refused is not None:
        row.update(
            body=b"", status="failed", processed_at=now, outcome=orjson.dumps(refused).decode()
        )
    return row


def _inserted(new_id: int, values: dict[str, Any]) -> InboxItem:
    """The item of a row just inserted with ``values`` (no need to read it back)."""
    outcome = values.get("outcome")
    return InboxItem(
        id=new_id,
        processed_at=values["processed_at"],
        outcome=orjson.loads(outcome) if outcome else None,
        result=None,
        **{k: v for k, v in values.items() if k not in ("body", "processed_at", "outcome")},
    )


class InboxStore:
    """The ``inbox`` table: payloads received, their claims and processing results."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def receive(
        self,
        site: str,
        body: bytes,
        *,
        source_key: str | None = None,
        fmt: str | None = None,
        content_type: str | None = None,
        claim: bool = False,
        refused: dict | None = None,
    ) -> tuple[InboxItem, bool]:
        """Store a payload durably; returns (item, duplicate).

        ``claim=True`` stores it already claimed (``processing``) by the caller,
        who processes it at once; a worker takes it over only if the claim
        expires. ``refused`` (an outcome) stores only the payload's digest and
        that outcome, as ``failed`` (a payload too large to keep).

        ``duplicate`` is true when this exact payload under this key was
        received before; the earlier item is returned untouched.
        """
        now = dt.datetime.now(dt.UTC)
        values = _row(site, body, source_key, fmt, content_type, claim, now, refused)
        try:
            with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
                new_id = conn.execute(insert(s.inbox).returning(s.inbox.c.id), values).scalar_one()
        except sa_exc.IntegrityError:
            existing = self.find(site, values["source_key"], values["payload_hash"])
            if existing is None:  # pragma: no cover - the row we collided with vanished
                raise
            return existing, True
        return _inserted(new_id, values), False

    def receive_many(
        self,
        site: str,
        payloads: list[tuple[bytes, str | None]],
        *,
        fmt: str | None = None,
        content_type: str | None = None,
        claim: bool = False,
    ) -> list[tuple[InboxItem, bool]]:
        """Store many ``(body, source_key)`` payloads in one commit; (item, duplicate) each.

        The same as :meth:`receive` for each, in order, at the cost of one
        commit: a payload seen before (or earlier in ``payloads``) comes back
        as the earlier item with ``duplicate=True``.
        """
        now = dt.datetime.now(dt.UTC)
        rows = [
            _row(site, body, source_key, fmt, content_type, claim, now)
            for body, source_key in payloads
        ]
        keys = list(dict.fromkeys((r["source_key"], r["payload_hash"]) for r in rows))
        try:
            with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
                known = self._find_many(conn, site, keys)
                fresh = {}
                for row in rows:
                    key = (row["source_key"], row["payload_hash"])
                    if key not in known and key not in fresh:
                        fresh[key] = row
                if fresh:
                    ids = conn.execute(
                        insert(s.inbox).returning(s.inbox.c.id, sort_by_parameter_order=True),
                        list(fresh.values()),
                    ).scalars()
                    for key, new_id in zip(fresh, ids, strict=True):
                        fresh[key] = _inserted(new_id, fresh[key])
        except sa_exc.IntegrityError:
            # A concurrent receiver stored one of them first: one at a time, then.
            return [
                self.receive(
                    site, body, source_key=key, fmt=fmt, content_type=content_type, claim=claim
                )
                for body, key in payloads
            ]
        out, seen = [], set()
        for row in rows:
            key = (row["source_key"], row["payload_hash"])
            if key in known:
                out.append((known[key], True))
            else:
                out.append((fresh[key], key in seen))
            seen.add(key)
        return out

    def _find_many(
        self, conn, site: str, keys: list[tuple[str, str]]
    ) -> dict[tuple[str, str], InboxItem]:
        found = {}
        c = s.inbox.c
        for i in range(0, len(keys), 200):
            chunk = keys[i : i + 200]
            stmt = select(*_COLS).where(c.site == site, c.source_key.in_({k for k, _ in chunk}))
            wanted = set(chunk)
            for row in conn.execute(stmt):
                if (row.source_key, row.payload_hash) in wanted:
                    found[(row.source_key, row.payload_hash)] = _item(row)
        return found

    def find(self, site: str, source_key: str, digest: str) -> InboxItem | None:
        stmt = select(*_COLS).where(
            s.inbox.c.site == site,
            s.inbox.c.source_key == source_key,
            s.inbox.c.payload_hash == digest,
        )
        with self.engine.connect() as conn:
            row = conn.execute(stmt).first()
        return _item(row) if row else None

    def get(self, item_id: int, with_body: bool = False) -> InboxItem | None:
        cols = list(s.inbox.c) if with_body else _COLS
        with self.engine.connect() as conn:
            row = conn.execute(select(*cols).where(s.inbox.c.id == item_id)).first()
        return _item(row, with_body) if row else None

    def get_many(self, item_ids: list[int], with_body: bool = False) -> dict[int, InboxItem]:
        """The items of ``item_ids`` that exist, by id (one query per 500)."""
        cols = list(s.inbox.c) if with_body else _COLS
        out: dict[int, InboxItem] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(item_ids), 500):
                chunk = item_ids[i : i + 500]
                for row in conn.execute(select(*cols).where(s.inbox.c.id.in_(chunk))):
                    out[row.id] = _item(row, with_body)
        return out

    def list(
        self,
        status: str | list[str] | None = None,
        site: str | None = None,
        limit: int = 100,
        before_id: int | None = None,
    ) -> list[InboxItem]:
        stmt = select(*_COLS)
        if status:
            statuses = [status] if isinstance(status, str) else list(status)
            stmt = stmt.where(s.inbox.c.status.in_(statuses))
        if site:
            stmt = stmt.where(s.inbox.c.site == site)
        if before_id:
            stmt = stmt.where(s.inbox.c.id < before_id)
        stmt = stmt.order_by(s.inbox.c.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [_item(r) for r in conn.execute(stmt)]

    def claim(self, limit: int = 100, lease_seconds: int = 300) -> list[int]:
        """Claim pending items (and expired claims), oldest first; returns their ids.

        On PostgreSQL ``FOR UPDATE SKIP LOCKED`` lets several workers claim at
        once without waiting for or doubling each other.
        """
        now = dt.datetime.now(dt.UTC)
        c = s.inbox.c
        due = or_(
            c.status == "pending",
            and_(
                c.status == "processing", c.processed_at < now - dt.timedelta(seconds=lease_seconds)
            ),
        )
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            query = select(c.id).where(due).order_by(c.id).limit(limit)
            if conn.dialect.name == "postgresql":
                query = query.with_for_update(skip_locked=True)
            ids = list(conn.execute(query).scalars())
            if ids:
                conn.execute(
                    update(s.inbox)
                    .where(c.id.in_(ids))
                    .values(status="processing", processed_at=now)
                )
        return ids

    def hold(self, conn, claims: dict[int, dt.datetime | None]) -> set[int]:
        """Lock the claimed rows in the data's transaction; returns the ids still ours.

        ``claims`` maps each item to the time of our claim (its ``processed_at``
        when we took it). A row whose claim changed was taken over by another
        process after our lease expired (or already finished by it): that
        process owns it now and ours must not be written, or the message would
        be stored twice. The row lock (PostgreSQL) keeps it ours until commit:
        claims skip locked rows and take-overs wait for it.
        """
        if not claims:
            return set()
        c = s.inbox.c
        query = select(c.id, c.status, c.processed_at).where(c.id.in_(list(claims)))
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        ours = set()
        for row in conn.execute(query):
            claimed = claims[row.id]
            if row.status == "processing" and _same_instant(row.processed_at, claimed):
                ours.add(row.id)
        return ours

    def take_over(self, item_id: int, body: bytes, lease_seconds: int) -> dt.datetime | None:
        """Claim an item whose processing died, for a sender sending it again.

        Returns the time of the new claim when the item is ours, else None.

        That is an item ``processing`` under a claim older than the lease (the
        process that claimed it was killed), or one ``failed`` without its body
        (refused as too large; ``body``, the same bytes sent again, is kept
        now). One statement, so two re-sends cannot both take it.
        """
        now = dt.datetime.now(dt.UTC)
        c = s.inbox.c
        stale = and_(
            c.status == "processing", c.processed_at < now - dt.timedelta(seconds=lease_seconds)
        )
        bodiless = and_(c.status == "failed", func.length(c.body) == 0)
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            taken = conn.execute(
                update(s.inbox)
                .where(c.id == item_id, or_(stale, bodiless))
                .values(status="processing", processed_at=now, body=body)
            ).rowcount
        return now if taken == 1 else None

    # The columns of the operators' inbox screen and its exports.
    SCREEN_COLUMNS = (
        "id",
        "site",
        "source_key",
        "format",
        "status",
        "attempts",
        "received_at",
        "processed_at",
    )

    def screen(self) -> StatusListing:
        """Pages, exports and whole rows for the operators' screens."""
        return StatusListing(self.engine, s.inbox, self.SCREEN_COLUMNS)

    def counts(self) -> dict[str, int]:
        stmt = select(s.inbox.c.status, func.count()).group_by(s.inbox.c.status)
        with self.engine.connect() as conn:
            return {status: n for status, n in conn.execute(stmt)}

    def mark(
        self,
        conn,
        item_id: int,
        status: str,
        outcome: dict | None = None,
        result: dict | None = None,
    ) -> dict[str, Any]:
        """Record a processing result (call inside the transaction that stored the data).

        Returns the values written (``status``, ``processed_at``, ``outcome``,
        ``result``, the documents as they will read back), so that the caller
        need not read the row again.
        """
        return self.mark_many(conn, [(item_id, status, outcome, result)])[0]

    def mark_many(self, conn, marks: list[tuple[int, str, dict | None, dict | None]]) -> list[dict]:
        """:meth:`mark` for many ``(item_id, status, outcome, result)`` in one statement."""
        now = dt.datetime.now(dt.UTC)
        out, params = [], []
        for item_id, status, outcome, result in marks:
            outcome_text = orjson.dumps(outcome).decode() if outcome is not None else None
            result_text = orjson.dumps(result).decode() if result is not None else None
            params.append(
                {
                    "b_id": item_id,
                    "b_status": status,
                    "b_outcome": outcome_text,
                    "b_result": result_text,
                }
            )
            out.append(
                {
                    "status": status,
                    "processed_at": now,
                    "outcome": orjson.loads(outcome_text) if outcome_text else None,
                    "result": orjson.loads(result_text) if result_text else None,
                }
            )
        if params:
            conn.execute(
                update(s.inbox)
                .where(s.inbox.c.id == bindparam("b_id"))
                .values(
                    status=bindparam("b_status"),
                    attempts=s.inbox.c.attempts + 1,
                    processed_at=now,
                    outcome=bindparam("b_outcome"),
                    result=bindparam("b_result"),
                ),
                params,
            )
        return out

    def mark_alone(
        self, item_id: int, status: str, outcome: dict | None = None, keep_body: bool = True
    ) -> dict[str, Any]:
        """Record a failure in a transaction of its own (the data transaction rolled back).

        ``keep_body=False`` empties the stored body (a payload refused as too
        large is kept as its digest and the outcome, see :meth:`take_over`).
        """
        with self.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
            if not keep_body:
                conn.execute(update(s.inbox).where(s.inbox.c.id == item_id).values(body=b""))
            return self.mark(conn, item_id, status, outcome)
