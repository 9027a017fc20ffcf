"""Access audit: one FHIR ``AuditEvent`` per read, search, write, export and login.

Events are kept in their own table (``audit_event``), not as ordinary
resources, so that auditing a read does not itself create versions, change-feed
rows or audit events.

The table is a keyed hash chain: row ``seq`` (numbered 1, 2, 3 ... without
gaps) stores the previous row's hash and an HMAC-SHA256, under a key kept
outside the database (:mod:`hub.security.audit_trail`), of every column:
``seq``, ``prev_hash``, ``id``, ``recorded``, ``content`` and the search
columns. Checkpoints of the head go to an append-only file (and optionally an
endpoint). :mod:`hub.security.audit_verify` reports which events are missing,
altered or re-chained. Appends are serialised (an advisory lock on
PostgreSQL; SQLite's single writer) so the chain follows ``seq`` order. A
write's event is appended in the write's own transaction.

Rows written before the key existed carry an unkeyed SHA-256 (:func:`chain_hash`)
and are verified with that rule; the first keyed row is the switch-over point.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from typing import Any

import orjson

from hub.security.audit_trail import configure  # noqa: F401 - part of this module's API
from hub.security.audit_trail import trail_of
from hub.storage.audit_log import AuditLogStore
from hub.storage.audit_log import ChainLink
from hub.storage.repository import format_instant

GENESIS = "0" * 64
DEFAULT_RETENTION_DAYS = 183  # at least six months (classified protection level 3)

# AuditEvent.type / subtype codes (http://terminology.hl7.org/CodeSystem/audit-event-type,
# http://hl7.org/fhir/restful-interaction) and actions (C R U D E).
ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history": "R",
    "search": "E",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "transaction": "E",
    "batch": "E",
    "export": "R",
    "login": "E",
    "operation": "E",
    "write": "U",
}
OUTCOMES = {"0": "success", "4": "minor failure", "8": "serious failure", "12": "major failure"}


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
    address: str | None = None,
) -> dict[str, Any]:
    at = at or dt.datetime.now(dt.UTC)
    agent: dict[str, Any] = {
        "requestor": True,
        "who": {"display": who or client or "anonymous"},
    }
    if client:
        agent["altId"] = client
    if purpose:
        agent["purposeOfUse"] = [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                        "code": purpose,
                    }
                ]
            }
        ]
    if address:
        agent["network"] = {"address": address, "type": "2"}
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
        "agent": [agent],
        "source": {"observer": {"display": site or "fhirhub"}},
    }
    if description:
        event["outcomeDesc"] = description
    if entity:
        event["entity"] = [{"what": {"reference": _printable(ref)}} for ref in entity]
    return event


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(text: str) -> str:
    """Control characters percent-encoded, as the client sent them in the URL: a refused
    ``Patient/a%00b`` is still audited (PostgreSQL cannot store NUL)."""
    return _CONTROL.sub(lambda m: f"%{ord(m.group()):02X}", text) if isinstance(text, str) else text


def search_columns(event: dict[str, Any]) -> dict[str, Any]:
    """The search columns of ``event`` (derived, so ``verify`` can check them)."""
    agent = (event.get("agent") or [{}])[0]
    refs = [
        (e.get("what") or {}).get("reference", "")
        for e in event.get("entity") or ()
        if isinstance(e, dict)
    ]
    observer = ((event.get("source") or {}).get("observer") or {}).get("display")
    return {
        "interaction": ((event.get("subtype") or [{}])[0].get("code") or "")[:32],
        "who": str((agent.get("who") or {}).get("display") or "")[:200],
        "client": agent.get("altId"),
        "site": observer if observer != "fhirhub" else None,
        "outcome": str(event.get("outcome", "0")),
        "entity": (" " + " ".join(refs) + " ") if refs else None,
    }


def chain_hash(prev_hash: str, event_id: str, recorded: str, content: str) -> str:
    """The unkeyed rule of rows written before the keyed chain (verified, never written)."""
    h = hashlib.sha256()
    for part in (prev_hash, event_id, recorded, content):
        h.update(part.encode())
        h.update(b"\x1f")
    return h.hexdigest()


# A keyed row hash is "h1$" and the first 61 hex digits (244 bits) of the HMAC, so it fits
# the 64-character column and cannot be mistaken for an unkeyed SHA-256 (64 hex digits).
KEYED = "h1$"
PURPOSE = "fhirhub audit event v1"  # domain separation from the checkpoints' MACs


def row_hash(trail: Any, row: Any) -> str:
    """The keyed hash of ``row`` (a dict or a Row): every column but ``hash`` itself."""
    m = row if isinstance(row, dict) else row._mapping
    recorded = str((m["recorded"] - _EPOCH) // _MICROSECOND)  # exact, and cheap
    parts = [PURPOSE, str(m["seq"]), m["prev_hash"], m["id"], recorded]
    parts += [m[name] for name in ROW_COLUMNS]
    return KEYED + trail.digest(parts)[: 64 - len(KEYED)]


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
ROW_COLUMNS = ("content", "interaction", "who", "client", "site", "outcome", "entity")


def record(conn: Any, event: dict[str, Any], *, head: Any = None) -> ChainLink:
    """Append ``event`` in the caller's transaction (a write's audit commits with it).

    On SQLite the caller's transaction must be a write transaction
    (``BEGIN IMMEDIATE``, as :meth:`Repository.writing` and :func:`record_now`
    open) so that two appends cannot read the same chain head. ``head``
    (``seq``, ``hash``) is for :func:`prune`, which deletes rows in the same
    transaction before it appends: the link returned is the new row.
    """
    trail = trail_of(conn.engine)
    if head is None:
        head = AuditLogStore.locked_head(conn)
    row = _chained_row(trail, event, head)
    AuditLogStore.append(conn, row)
    trail.appended(conn, head, row["seq"])
    return ChainLink(row["seq"], row["hash"])


def _chained_row(trail: Any, event: dict[str, Any], head: Any) -> dict[str, Any]:
    """The row of ``event`` chained to ``head`` (the row before it, ``None`` at the start)."""
    row = {
        # Numbered by the appender (not the database's sequence, which skips numbers when a
        # transaction rolls back) so that a gap always means deleted events.
        "seq": head.seq + 1 if head else 1,
        "id": event["id"],
        "recorded": dt.datetime.fromisoformat(event["recorded"].replace("Z", "+00:00")),
        "content": orjson.dumps(event).decode(),
        "prev_hash": head.hash if head else GENESIS,
        **search_columns(event),
    }
    row["hash"] = row_hash(trail, row)
    return row


def record_batch(engine: Any, events: list[dict[str, Any]]) -> ChainLink | None:
    """Append ``events`` in order in a transaction of their own (the batching writer's append).

    Each row chains to the one before it exactly as :func:`record` chains them one by
    one; the rows go to the database together and, on PostgreSQL, the whole append is
    two round trips (:meth:`AuditLogStore.append_batch`). Returns the last row's link.
    """
    if not events:
        return None
    trail = trail_of(engine)
    last: list[ChainLink] = []

    def chain(conn: Any, head: ChainLink | None) -> list[dict[str, Any]]:
        rows = []
        for event in events:
            row = _chained_row(trail, event, head)
            # Under the chain's lock and before the rows go in: a checkpoint this append
            # makes due names the committed row before the batch; the batch's own rows
            # are not named until a later append (Trail.appended).
            trail.appended(conn, head, row["seq"])
            rows.append(row)
            head = ChainLink(row["seq"], row["hash"])
        last[:] = [head]
        return rows

    AuditLogStore(engine).append_batch(chain)
    return last[0] if last else None


def record_now(engine: Any, event: dict[str, Any]) -> None:
    """Append ``event`` in a transaction of its own (reads, searches, failures, logins)."""
    record_batch(engine, [event])


# -- verification, checkpoints and retention ----------------------------------------


def checkpoint(engine: Any) -> dict[str, Any] | None:
    """Write a checkpoint of the chain's head now (``hub audit checkpoint``); ``None`` if empty.

    Raises ``OSError`` when the file cannot be written or the endpoint refuses it.
    """
    trail = trail_of(engine)
    with AuditLogStore(engine).writing() as conn:
        head = AuditLogStore.locked_head(conn)  # so checkpoint lines stay in seq order
        if head is None:
            return None
        return trail.write(head.seq, head.hash, trail.recorded(conn, head.seq), 0)


class RetentionError(ValueError):
    """A prune that would delete events younger than the retention period."""


PRUNER = "hub audit prune"
# entity.detail types of a prune's event: the signed anchor the remaining chain starts from.
PRUNED_THROUGH = "pruned-through-seq"
PRUNED_HASH = "pruned-last-hash"


def prune(engine: Any, older_than: dt.datetime, retention_days: int, now=None) -> int:
    """Delete events recorded before ``older_than``; refuses inside the retention period.

    The deletion is itself an event of the keyed chain, naming the last pruned
    row's ``seq`` and hash (:data:`PRUNED_THROUGH`, :data:`PRUNED_HASH`), so a
    verifier can tell a pruned chain start from deleted rows.
    """
    now = now or dt.datetime.now(dt.UTC)
    limit = now - dt.timedelta(days=retention_days)
    if older_than > limit:
        raise RetentionError(
            f"events younger than the retention period ({retention_days} days, i.e. recorded"
            f" after {format_instant(limit)}) may not be pruned"
        )
    with AuditLogStore(engine).writing() as conn:
        head = AuditLogStore.locked_head(conn)
        last = AuditLogStore.last_before(conn, older_than)
        if last is None:
            return 0
        count = AuditLogStore.delete_through(conn, last.seq)
        event = build_event(
            interaction="delete",
            who=PRUNER,
            entity=["AuditEvent"],
            description=(
                f"pruned {count} audit events recorded before {format_instant(older_than)};"
                f" last pruned hash {last.hash}"
            ),
        )
        event["entity"][0]["detail"] = [
            {"type": PRUNED_THROUGH, "valueString": str(last.seq)},
            {"type": PRUNED_HASH, "valueString": last.hash},
        ]
        # The head read before the deletion: the chain goes on even if every row was pruned.
        record(conn, event, head=head)
    return count
