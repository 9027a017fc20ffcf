"""Turning requests and writes into audit events (:mod:`hub.audit` keeps the chain).

* :func:`write_hook` is the repository's ``audit_hook``: called inside every
  write transaction with what it wrote, it appends one event in that
  transaction, so a change and its audit commit or roll back together.
* :func:`request_event` builds the event for a request that wrote nothing
  (reads, searches, failures, denials), appended after the response is made.
"""

from __future__ import annotations

from typing import Any

from hub import audit
from hub.security.logmask import mask_text
from hub.security.principal import current
from hub.security.principal import request_info

MAX_ENTITIES = 1000


def write_hook(conn: Any, written: list, site: str | None) -> None:
    """Audit a committed-with-it write of the ``written`` versions (``Stored``)."""
    p = current()
    info = request_info()
    interaction = (info or {}).get("interaction") or _write_interaction(written)
    refs = [f"{w.res_type}/{w.res_id}/_history/{w.version}" for w in written[:MAX_ENTITIES]]
    description = None
    if len(written) > MAX_ENTITIES:
        description = f"{len(written)} versions written; the first {MAX_ENTITIES} listed"
    event = audit.build_event(
        interaction=interaction,
        who=p.subject if p else (f"site {site}" if site else "fhirhub"),
        client=(p.client_id or (p.subject if p.kind == "client" else None)) if p else None,
        site=(p.site if p else None) or site,
        purpose=p.purpose if p else None,
        entity=refs,
        description=description,
        address=(info or {}).get("address"),
    )
    audit.record(conn, event)
    if info is not None:
        info["audited"] = True


def _write_interaction(written: list) -> str:
    if len(written) == 1:
        w = written[0]
        return "delete" if w.deleted else "create" if w.version == 1 else "update"
    return "write"


def request_event(status: int, info: dict, description: str | None = None) -> dict[str, Any]:
    """The event for a request (``info``: interaction, entities, query, address)."""
    p = current()
    outcome = "0" if status < 400 else "4" if status < 500 else "8"
    text = description
    if info.get("query"):
        text = f"{text + '; ' if text else ''}query: {mask_text(info['query'])}"[:2000]
    return audit.build_event(
        interaction=info.get("interaction") or "operation",
        outcome=outcome,
        who=p.subject if p else info.get("who", "anonymous"),
        client=(p.client_id or (p.subject if p.kind == "client" else None)) if p else None,
        site=p.site if p else None,
        purpose=p.purpose if p else None,
        entity=info.get("entities") or None,
        description=text,
        address=info.get("address"),
    )
