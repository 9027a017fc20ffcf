"""Access audit: one FHIR ``AuditEvent`` per read, search, write, export and login.

Events are kept in their own table (``audit_event``), not as ordinary
resources, so that auditing a read does not itself create versions, change-feed
rows or audit events.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import orjson
from sqlalchemy import insert

from hub.storage import schema as s
from hub.storage.repository import format_instant

# AuditEvent.type / subtype codes (http://terminology.hl7.org/CodeSystem/audit-event-type,
# http://hl7.org/fhir/restful-interaction) and actions (C R U D E).
ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "search": "E",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "export": "R",
    "login": "E",
    "operation": "E",
}


def build_event(
    *,
    interaction: str,
    outcome: str = "0",  # 0 success, 4 minor failure, 8 serious failure
    who: str | None = None,
    client: str | None = None,
    site: str | None = None,
    purpose: str | None = None,
    entity: list[str] | None = None,
    description: str | None = None,
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    at = at or dt.datetime.now(dt.UTC)
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
        },
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": interaction}],
        "action": ACTIONS.get(interaction, "E"),
        "recorded": format_instant(at),
        "outcome": outcome,
        "agent": [
            {
                "requestor": True,
                "who": {"display": who or client or "anonymous"},
                **({"altId": client} if client else {}),
                **({"purposeOfUse": [{"coding": [{"code": purpose}]}]} if purpose else {}),
            }
        ],
        "source": {"observer": {"display": site or "fhirhub"}},
    }
    if description:
        event["outcomeDesc"] = description
    if entity:
        event["entity"] = [{"what": {"reference": ref}} for ref in entity]
    return event


def record(conn: Any, event: dict[str, Any]) -> None:
    """Append ``event`` in the caller's transaction (a write's audit commits with it)."""
    conn.execute(
        insert(s.audit_event).values(
            id=event["id"],
            recorded=dt.datetime.fromisoformat(event["recorded"].replace("Z", "+00:00")),
            content=orjson.dumps(event).decode(),
        )
    )
