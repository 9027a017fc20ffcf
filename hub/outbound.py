"""Outbound delivery: from the change feed to the sites that want to hear.

:func:`dispatch` reads the change feed from its cursor and asks each site's
adapter (``map_outbound``) what the change means for that site; the messages
become ``delivery`` rows in the same transaction that advances the cursor, so
a crash never loses or doubles a message. A change is never echoed to the
site it came from.

:func:`deliver` sends due deliveries over the site's transport (MLLP or HTTP
POST), oldest first per site: a failure holds that site's later messages back
(order matters to HIS systems) and is retried with exponential back-off; after
``OUTBOUND_MAX_ATTEMPTS`` the message is ``dead`` and waits, visible, for an
operator (``/api/deliveries?status=dead``, ``POST /api/deliveries/<id>/retry``).
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.error
import urllib.request
from typing import TYPE_CHECKING
from typing import Any

from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text
from sqlalchemy import update

from hub.config import setting
from hub.mapping import MappingContext
from hub.storage import schema as s

if TYPE_CHECKING:
    from hub.kernel import Hub
    from hub.sites import Site

log = logging.getLogger("hub.outbound")

CURSOR = "outbound"
MAX_BACKOFF_SECONDS = 3600


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _cursor(conn) -> int:
    row = conn.execute(select(s.feed_cursor.c.seq).where(s.feed_cursor.c.name == CURSOR)).first()
    if row is None:
        conn.execute(insert(s.feed_cursor).values(name=CURSOR, seq=0, updated_at=_now()))
        return 0
    return row.seq


def outbound_sites(hub: Hub) -> list[Any]:
    return [
        site
        for site in (getattr(hub, "sites", {}) or {}).values()
        if getattr(site, "outbound", None)
    ]


def dispatch(hub: Hub, batch: int = 500) -> int:
    """Turn the next changes into deliveries; returns how many deliveries were queued."""
    sites = outbound_sites(hub)
    queued = 0
    with hub.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
        query = select(s.feed_cursor.c.seq).where(s.feed_cursor.c.name == CURSOR)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()  # one dispatcher at a time
        after = conn.execute(query).scalar()
        if after is None:
            after = _cursor(conn)
        changes = list(
            conn.execute(
                select(s.change).where(s.change.c.seq > after).order_by(s.change.c.seq).limit(batch)
            )
        )
        if not changes:
            return 0
        reader = _reader(hub, conn)
        for change in changes:
            if not sites:
                break
            resource = (
                _version(conn, change)
                if change.op != "delete"
                else {"resourceType": change.res_type, "id": change.res_id}
            )
            for site in sites:
                if change.site == site.name:
                    continue  # never echo a change back to its source
                context = MappingContext(site, hub.code_maps)
                context.read = reader
                try:
                    messages = hub.pm.hook.map_outbound(
                        resource=resource, event=change.op, site=site, context=context
                    )
                except Exception:  # noqa: BLE001 - one bad mapping must not stop the feed for every site
                    log.exception("map_outbound failed for %s change %s", site.name, change.seq)
                    messages = []
                for msg in messages or ():
                    conn.execute(
                        insert(s.delivery).values(
                            site=site.name,
                            change_seq=change.seq,
                            message_key=msg.key[:255] or str(change.seq),
                            content_type=msg.content_type,
                            body=msg.body,
                            description=msg.description,
                            status="pending",
                            attempts=0,
                            next_attempt_at=_now(),
                            created_at=_now(),
                        )
                    )
                    queued += 1
        conn.execute(
            update(s.feed_cursor)
            .where(s.feed_cursor.c.name == CURSOR)
            .values(seq=changes[-1].seq, updated_at=_now())
        )
    return queued


def _reader(hub: Hub, conn):
    """``read("Type/id")`` over the dispatcher's connection, for adapters' context."""

    def read(reference: str) -> dict[str, Any] | None:
        res_type, _, res_id = reference.partition("/")
        if not res_id or "/" in res_id:
            return None
        stored = hub.repo.read(res_type, res_id, conn)
        return stored.resource() if stored is not None and not stored.deleted else None

    return read


def _version(conn, change) -> dict[str, Any]:
    import orjson

    h = s.resource_history
    content = conn.execute(
        select(h.c.content).where(
            h.c.res_type == change.res_type,
            h.c.res_id == change.res_id,
            h.c.version == change.version,
        )
    ).scalar_one()
    return orjson.loads(content)


def send(
    site: Site, body: bytes, content_type: str | None, timeout: float = 10.0, pm: Any = None
) -> bytes:
    """Send one message over the site's transport; raises ``OSError``/``ValueError`` on failure.

    ``kind: http`` is the hub's own; other kinds (``mllp``) belong to the adapters,
    asked through the ``send_outbound`` hook of the plugin manager ``pm``.
    """
    out = site.outbound
    kind = out.get("kind")
    if kind == "http":
        req = urllib.request.Request(
            out["url"],
            data=body,
            method="POST",
            headers={"Content-Type": content_type or "application/octet-stream"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.read()
        except urllib.error.HTTPError as err:
            raise ValueError(f"HTTP {err.code} from {out['url']}") from None
    answer = None
    if pm is not None:
        answer = pm.hook.send_outbound(
            site=site, body=body, content_type=content_type, timeout=timeout
        )
    if answer is None:
        raise ValueError(f"unknown outbound kind {kind!r} (no installed plugin sends it)")
    return answer


def deliver(hub: Hub, limit: int = 200, now: dt.datetime | None = None) -> dict[str, int]:
    """Send due deliveries, site by site; returns counts of sent, retried and dead messages.

    On PostgreSQL each site is taken with a transaction-scoped advisory lock,
    so several workers can deliver at once while each site's messages still go
    out one at a time, in order.
    """
    now = now or _now()
    d = s.delivery
    counts = {"sent": 0, "retry": 0, "dead": 0}
    sites = {site.name: site for site in outbound_sites(hub)}
    with hub.engine.connect() as conn:
        waiting = [
            r[0] for r in conn.execute(select(d.c.site).where(d.c.status == "pending").distinct())
        ]
    for name in waiting:
        with hub.engine.connect() as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                got = conn.execute(
                    text("SELECT pg_try_advisory_xact_lock(hashtext(:k))"),
                    {"k": f"delivery:{name}"},
                ).scalar()
                if not got:
                    continue  # another worker is delivering to this site
                write = conn.execute
            else:
                # SQLite has one writer: commit each status at once rather than
                # hold the database lock while messages are on the wire.
                def write(stmt):
                    with hub.engine.connect().execution_options(hub_write=True) as w, w.begin():
                        w.execute(stmt)

            _deliver_site(hub, conn, write, name, sites.get(name), limit, now, counts)
    return counts


def _deliver_site(
    hub, conn, write, name: str, site: Site, limit: int, now: dt.datetime, counts: dict
) -> None:
    d = s.delivery
    max_attempts = int(setting(hub.config, "OUTBOUND_MAX_ATTEMPTS"))
    rows = conn.execute(
        select(d.c.id, d.c.body, d.c.content_type, d.c.attempts, d.c.next_attempt_at)
        .where(d.c.status == "pending", d.c.site == name)
        .order_by(d.c.id)
        .limit(limit)
    ).all()
    for row in rows:
        if row.next_attempt_at > now:
            return  # the oldest message is backing off: later ones wait (order matters)
        try:
            if site is None:
                raise ValueError(f"site {name!r} has no outbound endpoint any more")
            response = send(site, bytes(row.body), row.content_type, pm=hub.pm)
        except (OSError, ValueError) as err:
            attempts = row.attempts + 1
            log.warning("delivery %s to %s failed (attempt %s): %s", row.id, name, attempts, err)
            values: dict[str, Any] = {"attempts": attempts, "last_error": str(err)[:2000]}
            if attempts >= max_attempts:
                values["status"] = "dead"
                counts["dead"] += 1
            else:
                values["next_attempt_at"] = now + dt.timedelta(
                    seconds=min(2**attempts, MAX_BACKOFF_SECONDS)
                )
                counts["retry"] += 1
            write(update(d).where(d.c.id == row.id).values(**values))
            if values.get("status") != "dead":
                return
            continue
        write(
            update(d)
            .where(d.c.id == row.id)
            .values(
                status="sent",
                sent_at=_now(),
                attempts=row.attempts + 1,
                response=response[:4000],
                last_error=None,
            )
        )
        counts["sent"] += 1


def retry(hub: Hub, delivery_id: int) -> bool:
    """Put a dead (or waiting) delivery back in the queue, due now."""
    d = s.delivery
    with hub.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
        done = conn.execute(
            update(d)
            .where(d.c.id == delivery_id, d.c.status.in_(("dead", "pending")))
            .values(status="pending", next_attempt_at=_now())
        )
        return done.rowcount == 1


def list_deliveries(
    hub: Hub, status: str | None = None, site: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    d = s.delivery
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
    with hub.engine.connect() as conn:
        rows = conn.execute(stmt.order_by(d.c.id.desc()).limit(limit))
        return [
            {
                k: (v.isoformat() if isinstance(v, dt.datetime) else v)
                for k, v in row._mapping.items()
            }
            for row in rows
        ]


def queue(hub: Any, site: Any, message: Any, change_seq: int = 0) -> int:
    """Queue one adapter-made message (an operation's document) for ``site``; returns its id.

    The delivery then goes like those :func:`dispatch` queues: in order, with
    retries, dead-lettered after the last attempt. ``change_seq`` 0: no change made it.
    """
    now = _now()
    with hub.engine.connect().execution_options(hub_write=True) as conn, conn.begin():
        return conn.execute(
            insert(s.delivery)
            .returning(s.delivery.c.id)
            .values(
                site=site.name,
                change_seq=change_seq,
                message_key=message.key[:255],
                content_type=message.content_type,
                body=message.body,
                description=message.description,
                status="pending",
                attempts=0,
                next_attempt_at=now,
                created_at=now,
            )
        ).scalar_one()
