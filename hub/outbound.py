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

A change to a resource with a protected security label (``meta.security``,
:mod:`hub.security.labels`) goes only to sites whose client holds the grant
that opens it (``hub clients add NAME --site <site> --grant-label ...``): a site is
a reader like any other. Its delivery is audited when it is sent, as a
disclosure (AuditEvent ``export``, the entity and the receiving site), in the
transaction that marks it sent.
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.error
import urllib.request
from typing import TYPE_CHECKING
from typing import Any

from hub import audit
from hub.config import setting
from hub.mapping import MappingContext
from hub.security import labels
from hub.security.clients import list_clients
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
        grants = site_grants(batch_.conn) if sites else {}
        for change in batch_.changes:
            if not sites:
                break
            resource = (
                batch_.version(change)
                if change.op != "delete"
                else {"resourceType": change.res_type, "id": change.res_id}
            )
            load_previous = _previous_loader(batch_, change)
            # A deletion is judged by what was deleted: it must not tell a site without
            # the grant of something it could never read.
            needed = labels.required_grants(
                resource if change.op != "delete" else (load_previous() or {})
            )
            for site in sites:
                if change.site == site.name:
                    continue  # never echo a change back to its source
                if not labels.granted(needed, grants.get(site.name, frozenset())):
                    continue  # the site may not see it, so it hears nothing of it
                context = MappingContext(site, hub.code_maps, hub.terminology)
                context.read = reader
                context.previous_from(load_previous)
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


def _previous_loader(batch_, change):
    """``change``'s resource before it, read once and only if someone asks (most adapters don't)."""
    memo: list[dict[str, Any] | None] = []

    def load() -> dict[str, Any] | None:
        if not memo:
            memo.append(batch_.previous(change) if change.op != "create" else None)
        return memo[0]

    return load


def site_grants(conn) -> dict[str, frozenset[str]]:
    """The label grants of each site: those of its active clients (``hub clients add --site``)."""
    grants: dict[str, frozenset[str]] = {}
    for client in list_clients(conn):
        if client.site and client.active:
            grants[client.site] = grants.get(client.site, frozenset()) | client.grants
    return grants


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
    grants: frozenset[str] | None = None  # the site's grants now, read at the first need
    for row in pending.pending(limit):
        if row.next_attempt_at > now:
            return  # the oldest message is backing off: later ones wait (order matters)
        changed = pending.changed(row.change_seq)
        needed = labels.required_grants((changed[1] if changed else None) or {})
        if needed:
            # The grant was checked when the message was queued; a client revoked (or a
            # grant taken away) since then must stop the disclosure, not only later ones.
            if grants is None:
                grants = site_grants(pending.conn).get(name, frozenset())
            if not labels.granted(needed, grants):
                reason = (
                    f"withheld: the clients of site {name!r} no longer hold the grant(s) "
                    f"{', '.join(sorted(needed))}; retry once it is given again"
                )
                log.warning("delivery %s to %s %s", row.id, name, reason)
                pending.update(row.id, status="dead", last_error=reason)
                counts["dead"] += 1
                continue
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
            after=_disclosure(row, name, changed, needed),
            status="sent",
            sent_at=_now(),
            attempts=row.attempts + 1,
            response=response[:4000],
            last_error=None,
        )
        counts["sent"] += 1


def _disclosure(row: Any, site: str, changed, needed: frozenset[str]):
    """The audit of a sent message whose change was labelled (``None`` if it was not)."""
    if changed is None or not needed:
        return None
    reference, content = changed
    entity = [reference]
    subject = _patient_reference(content or {})
    if subject:
        entity.append(subject)
    event = audit.build_event(
        interaction="export",
        who="fhirhub",
        site=site,
        entity=entity,
        description=(
            f"disclosure to site {site}: delivery {row.id} sent; "
            f"labels needing {', '.join(sorted(needed))}"
        ),
    )
    return lambda conn: audit.record(conn, event)


def _patient_reference(resource: dict[str, Any]) -> str | None:
    for key in ("subject", "patient"):
        ref = (resource.get(key) or {}).get("reference") if isinstance(resource, dict) else None
        if isinstance(ref, str) and ref.startswith("Patient/"):
            return ref
    return None


def retry(hub: Hub, delivery_id: int) -> bool:
    """Put a dead (or waiting) delivery back in the queue, due now."""
    return DeliveryStore(hub.engine).retry(delivery_id)


def list_deliveries(
    hub: Hub, status: str | None = None, site: str | None = None, limit: int = 100
) -> list[dict[str, Any]]:
    return DeliveryStore(hub.engine).list(status, site, limit)


def replay(hub: Hub, site: Site, res_type: str) -> int:
    """Queue for ``site`` what the current version of every ``res_type`` means to it, as if
    each had just been created; returns how many messages were queued (a message the site
    has had already, queued, sent or dead, is not queued twice).

    The first load of a site that connects (or opts into more) after the data arrived: the
    change feed only tells it of later changes. The same rules as :func:`dispatch`: a
    labelled resource only with the site's grant, its message audited when sent.
    """
    store = DeliveryStore(hub.engine)
    queued = 0
    with store.replaying(res_type) as replay:
        grants = site_grants(replay.conn).get(site.name, frozenset())
        reader = _reader(hub, replay.conn)
        for seq, resource in replay.rows:
            if not labels.granted(labels.required_grants(resource), grants):
                continue
            context = MappingContext(site, hub.code_maps, hub.terminology)
            context.read = reader
            context.previous = None
            messages = hub.pm.hook.map_outbound(
                resource=resource, event="create", site=site, context=context
            )
            for msg in messages or ():
                queued += replay.queue_new(site.name, seq, msg.key[:255] or str(seq), msg)
    return queued


def queue(hub: Hub, site: Site, message: Any, change_seq: int = 0) -> int:
    """Queue one adapter-made message (an operation's document) for ``site``; returns its id.

    The delivery then goes like those :func:`dispatch` queues: in order, with
    retries, dead-lettered after the last attempt. ``change_seq`` 0: no change made it.
    """
    return DeliveryStore(hub.engine).add(site.name, change_seq, message.key[:255], message)
