"""From the change feed to the subscribers: matching, then delivery.

:func:`match` reads the change feed after its cursor (``feed_cursor`` row
``subscriptions``) and, for each changed resource, asks which active Subscriptions'
criteria match it: the criteria's search restricted to the changed resources
(``criteria&_id=<id>,<id>...``, one search per Subscription and batch), run by the hub's
search engine as the Subscription's owner (its scopes, label grants, jurisdiction and
patient context), so a resource the owner cannot read is never notified. Each match becomes a notification row in the same
transaction that advances the cursor: a worker killed before the commit matches the
batch again, one killed after it never does.

A Subscription hears the changes after its own latest write (the matcher notes its
seq when the Subscription's change goes by). Deletions match nothing. A change already
superseded when the matcher reads it is left to the later change (the search sees only
current versions), so quick successive writes notify the version they ended with.

:func:`deliver` sends due notifications, one Subscription at a time and in order: a
``rest-hook`` POSTs the changed resource (``channel.payload`` JSON or XML, the version
the change made) or an empty body, with ``channel.header``; a ``websocket`` sends
``ping <id>`` to the connections bound to it in this worker. A failure is retried with
exponential back-off (``SUBSCRIPTION_RETRY_SECONDS`` doubled each time); after
``SUBSCRIPTION_MAX_ATTEMPTS`` the notification is ``dead`` and the Subscription
``error``, the reason in ``Subscription.error``. A worker killed mid-delivery leaves
the notification pending: it is sent again, with the same ``X-Hub-Notification-Id``
(at least once; receivers drop an id they have seen).
"""

from __future__ import annotations

import datetime as dt
import logging
import urllib.error
import urllib.request
from typing import TYPE_CHECKING
from typing import Any

import orjson

from hub import outcomes
from hub.config import setting
from hub.fhir.formats import resource_to_xml
from hub.fhir.service import ID_RE
from hub.security import guard
from hub.security import principal as principal_record
from hub.storage.accounts import ClientStore
from hub.storage.subscriptions import NotificationQueue
from hub.storage.subscriptions import SubscriptionStore
from hub.subscriptions import rules
from hub.subscriptions.websocket import WebsocketEndpoint

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from hub.kernel import Hub
    from hub.security.principal import Principal
    from hub.storage.subscriptions import SubscriptionRow

log = logging.getLogger("hub.subscriptions")

CURSOR = "subscriptions"
MAX_BACKOFF_SECONDS = 3600
ID_CHUNK = 100  # resource ids per matching search
NOTIFICATION_HEADER = "X-Hub-Notification-Id"
CONTENT_TYPES = {"json": "application/fhir+json", "xml": "application/fhir+xml"}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def notification_id(subscription_id: str, change_seq: int) -> str:
    """The notification's id, the same on every attempt: ``<subscription>-<change seq>``."""
    return f"{subscription_id}-{change_seq}"


def run(hub: Hub) -> dict[str, int]:
    """One round of the worker: match the next changes, then deliver what is due."""
    counts = {"queued": match(hub)}
    counts.update(deliver(hub))
    return counts


def match(hub: Hub, batch: int = 500) -> int:
    """Queue the notifications of the next ``batch`` changes; returns how many were queued."""
    with SubscriptionStore(hub.engine).matching(CURSOR, batch) as matching:
        if not matching.changes:
            return 0
        subscriptions = matching.active()
        criteria: dict[str, tuple[str, list]] = {}
        by_type: dict[str, list[SubscriptionRow]] = {}
        for sub in subscriptions:
            try:
                res_type, params = rules.parse_criteria(sub.resource.get("criteria"))
            except outcomes.OperationOutcomeError:
                continue  # stored before the rules applied; nothing it could match
            criteria[sub.res_id] = (res_type, params)
            by_type.setdefault(res_type, []).append(sub)
        # Which changes each Subscription hears, in feed order: those after its latest write.
        heard: dict[str, list] = {}
        for change in matching.changes:
            if change.res_type == "Subscription":
                matching.started(change.res_id, change.seq)
                for sub in subscriptions:
                    if sub.res_id == change.res_id:
                        sub.from_seq = change.seq
            if change.op == "delete":
                continue
            for sub in by_type.get(change.res_type, ()):
                if sub.from_seq is not None and sub.from_seq < change.seq:
                    heard.setdefault(sub.res_id, []).append(change)
        if not heard:
            return 0
        # A change superseded by a later one is left to it (searches see current versions).
        current = matching.current_versions(
            {(c.res_type, c.res_id) for changes in heard.values() for c in changes}
        )
        queued = 0
        for sub in subscriptions:
            changes = [
                c
                for c in heard.get(sub.res_id, ())
                if current.get((c.res_type, c.res_id)) == c.version
            ]
            if not changes:
                continue
            res_type, params = criteria[sub.res_id]
            found = _matching_ids(
                hub, matching.conn, sub, res_type, params, {c.res_id for c in changes}
            )
            for change in changes:
                if change.res_id in found:
                    matching.queue(sub.res_id, change)
                    queued += 1
    return queued


def _matching_ids(
    hub: Hub, conn: Connection, sub: SubscriptionRow, res_type: str, params: list, ids: set[str]
) -> set[str]:
    """Which of ``ids`` the criteria find, searched as the Subscription's owner.

    One search per 100 ids (``criteria&_id=a,b,...``) rather than one per change: the
    cost of a batch grows with the Subscriptions, not with Subscriptions times changes.
    """
    owner = principal_record.from_record(sub.owner)
    if owner is not None and not (owner.can(res_type, "r") and _still_there(hub, owner)):
        return set()
    found: set[str] = set()
    ordered = sorted(ids)
    for i in range(0, len(ordered), ID_CHUNK):
        chunk = ordered[i : i + ID_CHUNK]
        try:
            result = hub.service.search_engine.search(
                conn,
                res_type,
                [
                    *params,
                    ("_id", ",".join(chunk)),
                    ("_count", str(len(chunk))),
                    ("_total", "none"),
                ],
                access=guard.search_access(owner),
            )
        except outcomes.OperationOutcomeError as err:
            log.warning("Subscription/%s criteria no longer searchable: %s", sub.res_id, err)
            return set()
        entries = [e for e in result.entries if e.mode == "match"]
        if owner is not None:
            entries = guard.visible_entries(entries, owner)
        found.update(e.res_id for e in entries)
    return found


def _still_there(hub: Hub, owner: Principal) -> bool:
    """Whether the owner may still act: a revoked client's Subscriptions hear nothing."""
    if owner.kind != "client":
        return True
    return ClientStore(hub.engine).active(owner.subject)


def deliver(hub: Hub, limit: int = 200, now: dt.datetime | None = None) -> dict[str, int]:
    """Send due notifications, Subscription by Subscription; counts of sent, retried, dead."""
    now = now or _now()
    counts = {"sent": 0, "retry": 0, "dead": 0, "dropped": 0}
    store = SubscriptionStore(hub.engine)
    sockets = getattr(hub, "subscription_websocket", None)
    for subscription_id in store.waiting():
        with store.queue(subscription_id) as pending:
            if pending is None:
                continue  # another worker is delivering this Subscription
            failed = _deliver_one(hub, pending, sockets, limit, now, counts)
        if failed:
            _set_error(hub, subscription_id, failed)
    return counts


def _deliver_one(
    hub: Hub,
    pending: NotificationQueue,
    sockets: Any,
    limit: int,
    now: dt.datetime,
    counts: dict[str, int],
) -> str | None:
    """Deliver one Subscription's due notifications; the reason when it must become ``error``."""
    sid = pending.subscription_id
    stored = hub.repo.read("Subscription", sid, pending.conn)
    sub = stored.resource() if stored is not None and not stored.deleted else None
    channel = (sub or {}).get("channel") or {}
    max_attempts = int(setting(hub.config, "SUBSCRIPTION_MAX_ATTEMPTS"))
    owner = principal_record.from_record(SubscriptionStore(hub.engine).owner(sid)) if sub else None
    if owner is not None and not _still_there(hub, owner):
        sub = None  # its client was revoked: nothing more goes out on its behalf
    for row in pending.pending(limit):
        if sub is None or sub.get("status") != "active":
            # off, error, deleted or owned by a revoked client: what was queued is not delivered
            pending.update(row.id, status="dropped", last_error="the Subscription is not active")
            counts["dropped"] += 1
            continue
        if row.next_attempt_at > now:
            return None  # the oldest is backing off: later ones wait (order matters)
        if channel.get("type") == "websocket":
            if sockets is None:
                return None  # the worker that serves the websocket endpoint sends these
            bound = sockets.ping(sid)
            pending.update(
                row.id, status="sent", sent_at=_now(), attempts=row.attempts + 1, last_error=None
            )
            log.debug("ping %s to %s bound connection(s)", sid, bound)
            counts["sent"] += 1
            continue
        try:
            _post(hub, sid, channel, row, owner)
        except Hidden as err:
            pending.update(row.id, status="dropped", last_error=str(err))
            counts["dropped"] += 1
            continue
        except (OSError, ValueError) as err:
            attempts = row.attempts + 1
            reason = str(err)[:2000]
            log.warning("notification %s failed (attempt %s): %s", row.id, attempts, reason)
            if attempts >= max_attempts:
                pending.update(row.id, status="dead", attempts=attempts, last_error=reason)
                counts["dead"] += 1
                return f"delivery failed {attempts} times: {reason}"
            base = float(setting(hub.config, "SUBSCRIPTION_RETRY_SECONDS"))
            wait = min(base * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
            pending.update(
                row.id,
                attempts=attempts,
                last_error=reason,
                next_attempt_at=now + dt.timedelta(seconds=wait),
            )
            counts["retry"] += 1
            return None
        pending.update(
            row.id, status="sent", sent_at=_now(), attempts=row.attempts + 1, last_error=None
        )
        counts["sent"] += 1
    return None


def _post(hub: Hub, sid: str, channel: dict, row, owner: Principal | None) -> None:
    """One rest-hook POST; raises ``OSError``/``ValueError`` when it did not succeed."""
    endpoint = channel.get("endpoint")
    # Checked again here: the allowed prefixes may have changed since the Subscription was stored.
    if not rules.allowed_endpoint(endpoint, hub.config):
        raise ValueError(f"endpoint {endpoint!r} is not allowed (SUBSCRIPTION_ENDPOINTS)")
    fmt = rules.payload_format(channel)
    body = b""
    headers = rules.headers(channel)
    # An empty notification has no body; urllib would call it a form without a type.
    headers["Content-Type"] = CONTENT_TYPES[fmt or "json"]
    if fmt is not None:
        body = _payload(row, fmt, owner)
    headers[NOTIFICATION_HEADER] = notification_id(sid, row.change_seq)
    request = urllib.request.Request(endpoint, data=body, method="POST", headers=headers)
    timeout = float(setting(hub.config, "SUBSCRIPTION_TIMEOUT"))
    try:
        with _opener.open(request, timeout=timeout) as response:
            response.read(4096)
    except urllib.error.HTTPError as err:
        raise ValueError(f"HTTP {err.code} from {endpoint}") from None


class Hidden(Exception):
    """The notified version is hidden from the owner now (a label added since): not sent."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could lead outside the allowed prefixes: it counts as a failure."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect)


def _payload(row, fmt: str, owner: Principal | None) -> bytes:
    """The version the change made, as the owner may see it, in ``fmt``."""
    if row.content is None:
        raise ValueError(f"{row.res_type}/{row.res_id} version {row.version} is not there")
    if owner is not None and not guard.visible_content(row.res_type, row.content, owner):
        raise Hidden(f"{row.res_type}/{row.res_id} is hidden from the owner now")
    if fmt == "xml":
        return resource_to_xml(orjson.loads(row.content))
    return row.content.encode()


def _set_error(hub: Hub, subscription_id: str, reason: str) -> None:
    """Set the Subscription's status to ``error`` with ``reason``, as the hub's own write."""

    def step(writer):
        current = writer.current("Subscription", subscription_id)
        if current is None or current.deleted:
            return None
        resource = current.resource()
        if resource.get("status") != "active":
            return None
        resource.update(status="error", error=reason)
        return hub.service.update_with(writer, "Subscription", subscription_id, resource)

    hub.repo.write(step)


def start_websocket(hub: Hub) -> WebsocketEndpoint | None:
    """Serve the websocket endpoint in this process when ``SUBSCRIPTION_WEBSOCKET_PORT`` is set;
    :func:`deliver` then pings its bound connections."""
    port = int(setting(hub.config, "SUBSCRIPTION_WEBSOCKET_PORT"))
    if not port:
        return None

    def authenticate(authorization: str | None):
        try:
            return hub.security.authenticate(authorization, None)
        except outcomes.OperationOutcomeError as err:
            raise ValueError(str(err)) from None

    def can_bind(subscription_id: str, who) -> str | None:
        if not ID_RE.match(subscription_id):
            return "not a Subscription id"
        try:
            # Read as the connecting principal: its scopes, labels and jurisdiction decide,
            # and a Subscription it may not read is as unknown as a missing one.
            with principal_record.acting_as(who, {"interaction": "read"}):
                sub = hub.service.read("Subscription", subscription_id).stored.resource()
        except outcomes.OperationOutcomeError:
            sub = None
        if sub is None:
            return f"Subscription/{subscription_id} is not known"
        if (sub.get("channel") or {}).get("type") != "websocket":
            return f"Subscription/{subscription_id} has no websocket channel"
        if sub.get("status") != "active":
            return f"Subscription/{subscription_id} is {sub.get('status')}"
        return None

    endpoint = WebsocketEndpoint(can_bind, authenticate)
    host = str(setting(hub.config, "SUBSCRIPTION_WEBSOCKET_HOST"))
    try:
        endpoint.start(host, port)
    except OSError as err:
        # Another worker serves it (the port is taken): this one leaves websocket pings to it.
        log.warning("websocket endpoint %s:%s not served here: %s", host, port, err)
        return None
    hub.subscription_websocket = endpoint
    return endpoint
