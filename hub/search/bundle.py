"""The searchset Bundle, spliced from stored JSON texts.

Each resource is already JSON text in the database; the Bundle is built
around those texts with orjson for the envelope, never parsing and
re-serialising the resources themselves.
"""

from __future__ import annotations

import datetime as dt
import uuid

import orjson

from hub.outcomes import issue
from hub.outcomes import outcome


def absolute(base_url: str, link: str) -> str:
    """``base_url`` joined with a link relative to it (``Patient?name=x``)."""
    base = base_url.rstrip("/")
    if link.startswith("?"):
        return base + link
    return f"{base}/{link}" if link else base


def searchset_bytes(result, base_url: str) -> bytes:
    """The ``searchset`` Bundle for a :class:`~hub.search.engine.SearchResult`."""
    base = base_url.rstrip("/")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    head = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": now},
        "type": "searchset",
    }
    if result.total is not None:
        head["total"] = result.total
    links = [{"relation": "self", "url": absolute(base, result.self_link)}]
    if result.next_link:
        links.append({"relation": "next", "url": absolute(base, result.next_link)})
    if result.prev_link:
        links.append({"relation": "previous", "url": absolute(base, result.prev_link)})
    head["link"] = links
    parts = [orjson.dumps(head)[:-1]]
    entries = []
    for e in result.entries:
        content = e.content
        entries.append(
            b'{"fullUrl":'
            + orjson.dumps(f"{base}/{e.res_type}/{e.res_id}")
            + b',"resource":'
            + (content.encode() if isinstance(content, str) else bytes(content))
            + b',"search":{"mode":"'
            + e.mode.encode()
            + b'"}}'
        )
    issues = list(result.issues)
    explain = getattr(result, "explain", None)
    if explain:
        plan = "\n".join(str(p) for p in explain.get("plan", ()))
        issues.append(
            issue("information", "informational", f"SQL:\n{explain['sql']}\n\nPlan:\n{plan}")
        )
    if issues:
        entries.append(orjson.dumps({"resource": outcome(*issues), "search": {"mode": "outcome"}}))
    if entries:
        parts.append(b',"entry":[' + b",".join(entries) + b"]")
    parts.append(b"}")
    return b"".join(parts)
