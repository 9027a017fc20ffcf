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

from hub.config import setting
from hub.mapping import MappingContext
from hub.storage.deliveries import DeliveryStore
from hub.storage.deliveries import SiteQueue

if TYPE_CHECKING:
    from hub.kernel import Hub
    from hub.sites import Site

log = logging.getLogger("hub.outbound")

CURSOR = "outbound"
MAX_BACKOFF_SECONDS = 3600


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


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
    with DeliveryStore(hub.engine).dispatching(CURSOR, batch) as batch_:
        if not batch_.changes:
            return 0
        reader = _reader(hub, batch_.conn)
        for change in batch_.changes:
            if not sites:
                break
            resource = (
                batch_.version(change)
                if change.op != "delete"
                else {"resourceType": change.res_type, "id": change.res_id}
            )
            for site in sites:
                if change.site == site.name:
                    continue  # never echo a change back to its source
                context = MappingContext(site, hub.code_maps, hub.terminology)
                context.read = reader
                try:
                    messages = hub.pm.hook.map_outbound(
                        resource=resource, event=change.op, site=site, context=context
                    )
                except Exception:  # noqa: BLE001 - one bad mapping must not stop the feed for every site
                    log.exception("map_outbound failed for %s change %s", site.name, change.seq)
                    messages = []
                for msg in messages or ():
                    batch_.queue(site.name, change.seq, msg.key[:255] or str(change.seq), msg)
                    queued += 1
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
    counts = {"sent": 0, "retry": 0, "dead": 0}
    sites = {site.name: site for site in outbound_sites(hub)}
    store = DeliveryStore(hub.engine)
    for name in store.waiting_sites():
        with store.site_queue(name) as pending:
            if pending is None:
                continue  # another worker is delivering to this site
            _deliver_site(hub, pending, sites.get(name), limit, now, counts)
    return counts


def _deliver_site(
    hub: Hub, pending: SiteQueue, site: Site | None, limit: int, now: dt.datetime, counts: dict
) -> None:
    name = pending.site
    max_attempts = int(setting(hub.config, "OUTBOUND_MAX_ATTEMPTS"))
    for row in pending.pending(limit):
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
            pending.update(row.id, **values)
            if values.get("status") != "dead":
                return
            continue
        pending.update(
            row.id,
            status="sent",
            sent_at=_now(),
            attempts=row.attempts + 1,
            response=response[:4000],
            last_error=None,
        )
        counts["sent"] += 1


def retry(hub: Hub, delivery_id: int) -> bool:
    """Put a dead (or waiting) delivery back in the queue, due now."""
    return DeliveryStore(hub.engine).retry(delivery_id)


def list_deliveries(
    hub: Hub, status: str | None = None, site: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    return DeliveryStore(hub.engine).list(status, site, limit)


def queue(hub: Hub, site: Site, message: Any, change_seq: int = 0) -> int:
    """Queue one adapter-made message (an operation's document) for ``site``; returns its id.

    The delivery then goes like those :func:`dispatch` queues: in order, with
    retries, dead-lettered after the last attempt. ``change_seq`` 0: no change made it.
    """
    return DeliveryStore(hub.engine).add(site.name, change_seq, message.key[:255], message)
