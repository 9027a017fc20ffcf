"""What a Subscription must be to be stored, and who owns it.

The FHIR service calls :func:`prepare` on every create, update and patch of a
Subscription, before it is staged: a Subscription that asks for notifications
(``requested`` or ``active``) needs criteria the hub's search understands, a
channel the hub serves and, for ``rest-hook``, an endpoint under one of the
prefixes of ``SUBSCRIPTION_ENDPOINTS`` (none by default: the hub posts only to
addresses its operator named, never wherever a client points it). It is then
stored ``active``; ``off`` and ``error`` are stored as given and deliver nothing.

:func:`owner_of_write` is the writer's principal as the hub keeps it beside the
Subscription; its scopes and label grants decide what the notifications may carry
(:func:`hub.security.principal.from_record` rebuilds it in the worker).
"""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING
from typing import Any

from hub import outcomes
from hub.config import setting
from hub.security.principal import current
from hub.security.principal import to_record

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

    from hub.search.engine import SearchEngine

CHANNELS = ("rest-hook", "websocket")
WEBSOCKET_EXTENSION = "http://hl7.org/fhir/StructureDefinition/capabilitystatement-websocket"
# channel.payload mime types -> the format the notification carries.
PAYLOADS = {
    "application/fhir+json": "json",
    "application/json": "json",
    "application/fhir+xml": "xml",
    "application/xml": "xml",
}
# Parameters that shape a result page: meaningless for "does this resource match".
_RESULT_PARAMS = frozenset(
    (
        "_count",
        "_sort",
        "_include",
        "_revinclude",
        "_summary",
        "_elements",
        "_total",
        "_contained",
        "_containedType",
        "_format",
        "_pretty",
        "_cursor",
    )
)


def parse_criteria(criteria: Any) -> tuple[str, list[tuple[str, str]]]:
    """``Type?name=value&...`` -> (type, parameters); 400 naming ``Subscription.criteria``."""
    where = "Subscription.criteria"
    if not isinstance(criteria, str) or not criteria.strip():
        raise outcomes.bad_request("A Subscription needs criteria (Type?parameters)", where)
    res_type, _, query = criteria.strip().partition("?")
    res_type = res_type.strip("/").rsplit("/", 1)[-1]
    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    shaping = sorted({name for name, _ in params if name.split(":")[0] in _RESULT_PARAMS})
    if shaping:
        raise outcomes.bad_request(
            f"Subscription criteria filter resources; {', '.join(shaping)} shape a result page",
            where,
        )
    return res_type, params


def check_criteria(criteria: Any, search: SearchEngine | None, conn: Connection) -> None:
    """The criteria are a search of a known type that the hub's search engine accepts."""
    where = "Subscription.criteria"
    res_type, params = parse_criteria(criteria)
    if search is None:
        raise outcomes.error(501, "not-supported", "Search is not available", where)
    if not search.registry.is_type(res_type):
        raise outcomes.bad_request(f"Unknown resource type {res_type!r} in criteria", where)
    try:
        search.search(conn, res_type, [*params, ("_count", "1"), ("_total", "none")], strict=True)
    except outcomes.OperationOutcomeError as err:
        reasons = "; ".join(i.get("diagnostics", "") for i in err.issues) or "invalid search"
        raise outcomes.bad_request(f"Invalid criteria {criteria!r}: {reasons}", where) from None


def allowed_endpoint(endpoint: Any, config: dict) -> bool:
    """Whether ``endpoint`` starts with one of the prefixes in ``SUBSCRIPTION_ENDPOINTS``."""
    if not isinstance(endpoint, str) or not endpoint:
        return False
    if urllib.parse.urlsplit(endpoint).scheme not in ("http", "https"):
        return False
    prefixes = [p.strip() for p in str(setting(config, "SUBSCRIPTION_ENDPOINTS")).split(",")]
    return any(p and endpoint.startswith(p) for p in prefixes)


def headers(channel: dict[str, Any]) -> dict[str, str]:
    """``channel.header`` (``Name: value`` strings) as a dict; 400 on a malformed one."""
    out: dict[str, str] = {}
    for i, line in enumerate(channel.get("header") or ()):
        name, sep, value = str(line).partition(":")
        name, value = name.strip(), value.strip()
        if (
            not sep
            or not name
            or any(c in str(line) for c in "\r\n\0")
            or not all(c.isalnum() or c in "-_" for c in name)
        ):
            raise outcomes.bad_request(
                f"A channel header is 'Name: value', not {line!r}",
                f"Subscription.channel.header[{i}]",
            )
        out[name] = value
    return out


def payload_format(channel: dict[str, Any]) -> str | None:
    """``json``, ``xml`` or None (an empty notification); 400 for another mime type."""
    payload = channel.get("payload")
    if payload is None:
        return None
    mime = str(payload).split(";")[0].strip().lower()
    if mime not in PAYLOADS:
        raise outcomes.bad_request(
            f"channel.payload {payload!r} is not one of {', '.join(PAYLOADS)}",
            "Subscription.channel.payload",
        )
    return PAYLOADS[mime]


def check_channel(channel: Any, config: dict) -> None:
    if not isinstance(channel, dict):
        raise outcomes.bad_request("A Subscription needs a channel", "Subscription.channel")
    kind = channel.get("type")
    if kind not in CHANNELS:
        raise outcomes.bad_request(
            f"The hub serves channel types {', '.join(CHANNELS)}, not {kind!r}",
            "Subscription.channel.type",
        )
    payload_format(channel)
    headers(channel)
    if kind == "websocket":
        if not int(setting(config, "SUBSCRIPTION_WEBSOCKET_PORT")):
            raise outcomes.bad_request(
                "This hub serves no websocket endpoint (SUBSCRIPTION_WEBSOCKET_PORT)",
                "Subscription.channel.type",
            )
        return
    if not allowed_endpoint(channel.get("endpoint"), config):
        raise outcomes.error(
            422,
            "business-rule",
            f"channel.endpoint {channel.get('endpoint')!r} is not under an address this hub"
            " may post to (SUBSCRIPTION_ENDPOINTS)",
            "Subscription.channel.endpoint",
        )


def prepare(
    resource: dict[str, Any], config: dict, search: SearchEngine | None, conn: Connection
) -> dict[str, Any]:
    """The Subscription to store: checked and ``active`` when it asks for notifications."""
    status = resource.get("status")
    if status not in ("requested", "active"):
        return resource  # off, error (or a code the structure check refuses): nothing to send
    check_criteria(resource.get("criteria"), search, conn)
    check_channel(resource.get("channel"), config)
    out = {k: v for k, v in resource.items() if k != "error"}
    out["status"] = "active"
    return out


def owner_of_write() -> dict[str, Any] | None:
    """The writing principal as kept beside the Subscription (None: the hub's own write)."""
    return to_record(current())


def websocket_url(config: dict) -> str | None:
    """The websocket endpoint's public URL (CapabilityStatement), or None without one."""
    port = int(setting(config, "SUBSCRIPTION_WEBSOCKET_PORT"))
    if not port:
        return None
    url = str(setting(config, "SUBSCRIPTION_WEBSOCKET_URL"))
    return url or f"ws://{setting(config, 'SUBSCRIPTION_WEBSOCKET_HOST')}:{port}/"
