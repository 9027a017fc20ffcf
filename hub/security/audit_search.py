"""``GET /fhir/AuditEvent``: the audit trail, searched from the audit table, for auditors.

Only principals whose scopes name ``AuditEvent`` explicitly (``user/AuditEvent.rs``,
the ``auditor`` role) may read it; ``*`` scopes do not cover it. Parameters:

* ``date`` (``recorded``; prefixes ``eq ge gt le lt``, repeatable),
* ``agent`` (who: a username or ``client ID``; or the client id), ``site``,
* ``entity`` (``Type/id``, matches every version ``Type/id/_history/n`` too),
* ``outcome`` (``0`` success, ``4``, ``8``), ``subtype`` (interaction code),
* ``_count`` and ``_before`` (paging: events older than that ``seq``).

Newest first. The events themselves are never written through the API.
"""

from __future__ import annotations

import datetime as dt
import urllib.parse

import orjson

from hub import outcomes
from hub.fhir.limits import count_param
from hub.fhir.limits import row_key_param
from hub.security import audit_writer
from hub.storage.audit_log import AuditFilter
from hub.storage.audit_log import AuditLogStore

# The search parameters answered here, as the CapabilityStatement lists them: (type, what).
# ``entity`` is R4's; ``agent`` matches the who.display the hub writes (a username or
# client id), not a reference, so it is declared a token without R4's definition.
DOCUMENTATION = {
    "date": ("date", "When the event was recorded (prefixes eq ge gt le lt)"),
    "agent": ("token", "Who: a username or a client id"),
    "site": ("token", "The site the event was recorded for"),
    "entity": ("reference", "Type/id of a resource the event concerns (any version)"),
    "outcome": ("token", "0 success, 4 minor failure, 8 serious failure"),
    "subtype": ("token", "The interaction (read, search-type, create...)"),
}
PARAMS = frozenset((*DOCUMENTATION, "_count", "_before"))


def require_auditor(principal) -> None:
    if principal is None:
        return
    perms = principal.scopes.perms.get("AuditEvent", frozenset())
    if not perms & {"r", "s"}:
        raise outcomes.error(
            403,
            "forbidden",
            "The audit trail needs a scope naming AuditEvent (e.g. user/AuditEvent.rs);"
            " wildcard scopes do not cover it",
        )


def _instant(value: str) -> dt.datetime:
    text = value.replace("Z", "+00:00")
    try:
        parsed = dt.datetime.fromisoformat(text if len(text) > 10 else text + "T00:00:00")
    except ValueError:
        raise outcomes.bad_request(f"Invalid date {value!r}", "date") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def search(engine, params: list[tuple[str, str]], base: str, max_count: int = 1000) -> bytes:
    where = AuditFilter()
    count = 50
    for name, value in params:
        if name not in PARAMS:
            raise outcomes.bad_request(
                f"Unknown AuditEvent search parameter {name!r}; known: {', '.join(sorted(PARAMS))}",
                name,
            )
        if name == "date":
            prefix, rest = (value[:2], value[2:]) if value[:2].isalpha() else ("eq", value)
            at = _instant(rest)
            if prefix not in ("eq", "ge", "gt", "le", "lt"):
                raise outcomes.bad_request(f"Unsupported date prefix {prefix!r}", "date")
            if prefix == "eq" and len(rest) <= 10:  # a whole day
                where.recorded += [("ge", at), ("lt", at + dt.timedelta(days=1))]
            else:
                where.recorded.append((prefix, at))
        elif name == "agent":
            where.agents.append(value)
        elif name == "site":
            where.sites.append(value)
        elif name == "entity":
            where.entities.append(value)
        elif name == "outcome":
            where.outcomes.append(value)
        elif name == "subtype":
            where.interactions.append(value.rpartition("|")[2])
        elif name == "_count":
            count = count_param(value, "_count", count, max_count)
        elif name == "_before":
            where.before.append(row_key_param(value, "_before"))
    audit_writer.flush(engine)  # the events of reads answered before this search
    rows = AuditLogStore(engine).find(where, count + 1)
    more = len(rows) > count
    rows = rows[:count]
    keep = [(k, v) for k, v in params if k != "_before"]
    links = [{"relation": "self", "url": _url(base, params)}]
    if more and rows:
        links.append(
            {"relation": "next", "url": _url(base, [*keep, ("_before", str(rows[-1].seq))])}
        )
    head = {"resourceType": "Bundle", "type": "searchset", "link": links}
    entries = [
        b'{"fullUrl":'
        + orjson.dumps(f"{base}/AuditEvent/{r.id}")
        + b',"resource":'
        + r.content.encode()
        + b',"search":{"mode":"match"}}'
        for r in rows
    ]
    return orjson.dumps(head)[:-1] + b',"entry":[' + b",".join(entries) + b"]}"


def read(engine, event_id: str) -> str:
    audit_writer.flush(engine)
    content = AuditLogStore(engine).content(event_id)
    if content is None:
        raise outcomes.not_found(f"AuditEvent/{event_id} is not known")
    return content


def _url(base: str, params: list[tuple[str, str]]) -> str:
    url = f"{base}/AuditEvent"
    return url + ("?" + urllib.parse.urlencode(params) if params else "")
