"""Access audit: one FHIR ``AuditEvent`` per read, search, write, export and login.

Events are kept in their own table (``audit_event``), not as ordinary
resources, so that auditing a read does not itself create versions, change-feed
rows or audit events.

The table is a hash chain: each row stores the previous row's hash and
``sha256(prev_hash | id | recorded | content)``, so an edited, inserted or
deleted row breaks every later link (:func:`verify`). Appends are serialised
(an advisory lock on PostgreSQL; SQLite's single writer) so the chain follows
``seq`` order. A write's event is appended in the write's own transaction.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import re
import uuid
from typing import Any

import orjson
from sqlalchemy import delete
from sqlalchemy import func
from sqlalchemy import insert
from sqlalchemy import select
from sqlalchemy import text

from hub.storage import schema as s
from hub.storage.repository import format_instant

GENESIS = "0" * 64
# pg_advisory_xact_lock key of the audit chain (an arbitrary constant: "AUDIT" in ASCII).
_CHAIN_LOCK = 0x4155444954
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


def _columns(event: dict[str, Any]) -> dict[str, Any]:
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
    h = hashlib.sha256()
    for part in (prev_hash, event_id, recorded, content):
        h.update(part.encode())
        h.update(b"\x1f")
    return h.hexdigest()


def record(conn: Any, event: dict[str, Any]) -> None:
    """Append ``event`` in the caller's transaction (a write's audit commits with it).

    On SQLite the caller's transaction must be a write transaction
    (``BEGIN IMMEDIATE``, as :meth:`Repository.writing` and :func:`record_now`
    open) so that two appends cannot read the same chain head.
    """
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _CHAIN_LOCK})
    prev = conn.execute(_HEAD).scalar() or GENESIS
    content = orjson.dumps(event).decode()
    recorded = event["recorded"]
    conn.execute(
        _INSERT,
        {
            "id": event["id"],
            "recorded": dt.datetime.fromisoformat(recorded.replace("Z", "+00:00")),
            "content": content,
            "prev_hash": prev,
            "hash": chain_hash(prev, event["id"], recorded, content),
            **_columns(event),
        },
    )


# Built once: an audit append runs on every request.
_HEAD = select(s.audit_event.c.hash).order_by(s.audit_event.c.seq.desc()).limit(1)
_INSERT = insert(s.audit_event)


def record_now(engine: Any, event: dict[str, Any]) -> None:
    """Append ``event`` in a transaction of its own (reads, searches, failures, logins)."""
    with engine.connect().execution_options(hub_write=True) as conn:
        with conn.begin():
            record(conn, event)


# -- verification and retention ---------------------------------------------------


@dataclasses.dataclass
class Verification:
    checked: int
    broken_at: int | None = None  # seq of the first row whose link or hash is wrong
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


def verify(engine: Any, batch: int = 5000) -> Verification:
    """Recompute the chain in ``seq`` order; report the first broken link.

    The oldest remaining row's ``prev_hash`` is the anchor (rows before it may
    have been pruned; ``hub audit prune`` records the anchor it leaves).
    """
    t = s.audit_event
    checked = 0
    prev: str | None = None
    after = -1
    with engine.connect() as conn:
        while True:
            rows = conn.execute(
                select(t).where(t.c.seq > after).order_by(t.c.seq).limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                after = row.seq
                if prev is not None and row.prev_hash != prev:
                    return Verification(
                        checked, row.seq, "prev_hash does not match the previous row's hash"
                    )
                try:
                    event = orjson.loads(row.content)
                    recorded = event["recorded"]
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    return Verification(checked, row.seq, "content is not an AuditEvent")
                if event.get("id") != row.id:
                    return Verification(checked, row.seq, "id differs from the content's id")
                if chain_hash(row.prev_hash, row.id, recorded, row.content) != row.hash:
                    return Verification(checked, row.seq, "hash does not match the content")
                cols = _columns(event)
                if any(getattr(row, k) != v for k, v in cols.items()):
                    return Verification(checked, row.seq, "search columns differ from the content")
                prev = row.hash
                checked += 1
    return Verification(checked)


class RetentionError(ValueError):
    """A prune that would delete events younger than the retention period."""


def prune(engine: Any, older_than: dt.datetime, retention_days: int, now=None) -> int:
    """Delete events recorded before ``older_than``; refuses inside the retention period.

    The deletion itself is audited, with the hash of the last deleted row, so a
    verifier can tell a pruned chain start from a tampered one.
    """
    now = now or dt.datetime.now(dt.UTC)
    limit = now - dt.timedelta(days=retention_days)
    if older_than > limit:
        raise RetentionError(
            f"events younger than the retention period ({retention_days} days, i.e. recorded"
            f" after {format_instant(limit)}) may not be pruned"
        )
    t = s.audit_event
    with engine.connect().execution_options(hub_write=True) as conn:
        with conn.begin():
            last = conn.execute(
                select(t.c.seq, t.c.hash)
                .where(t.c.recorded < older_than)
                .order_by(t.c.seq.desc())
                .limit(1)
            ).first()
            if last is None:
                return 0
            count = conn.execute(
                select(func.count()).select_from(t).where(t.c.seq <= last.seq)
            ).scalar_one()
            conn.execute(delete(t).where(t.c.seq <= last.seq))
            record(
                conn,
                build_event(
                    interaction="delete",
                    who="hub audit prune",
                    entity=["AuditEvent"],
                    description=(
                        f"pruned {count} audit events recorded before {format_instant(older_than)};"
                        f" last pruned hash {last.hash}"
                    ),
                ),
            )
    return count
