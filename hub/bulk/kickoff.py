"""Kick-off requests: ``$export`` at system, Patient and Group level, and ``Prefer:
respond-async`` on searches and ``$everything``.

A kick-off checks everything it can at once (so a mistake is a 400 now, not a failed job
later): the output format, ``_since``, the types against the caller's scopes, each
``_typeFilter`` query against the search engine, the Group. It then stores a queued job
with the caller's principal and answers 202 with the job's status URL in
``Content-Location``; ``hub worker`` runs the job (:mod:`hub.bulk.export`).
"""

from __future__ import annotations

import datetime as dt
import re
import urllib.parse
import uuid
from typing import TYPE_CHECKING
from typing import Any

from hub import outcomes
from hub.bulk import principals
from hub.fhir.service import Result
from hub.search.data import compartments
from hub.search.engine import SearchEngine
from hub.security import guard
from hub.security import principal as principal_record
from hub.security.principal import current
from hub.storage.jobs import JobStore
from hub.storage.repository import format_instant

if TYPE_CHECKING:
    from hub.kernel import Hub
    from hub.operations import OperationCall

OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
EXPORT_PARAMS = ("_outputFormat", "_since", "_type", "_typeFilter", "patient")
# Parameters of the IG this hub does not implement: ignored unless the client asks for
# strict handling (``Prefer: handling=strict``), as the IG allows.
OPTIONAL_PARAMS = (
    "_elements",
    "includeAssociatedData",
    "organizeOutputBy",
    "allowPartialManifests",
)
STATUS_PATH = "$bulk-status"
FILE_PATH = "$bulk-file"


def prefers(headers: Any, token: str) -> bool:
    """Whether the ``Prefer`` header holds ``token`` (``respond-async``, ``handling=strict``)."""
    raw = headers.get("Prefer", "") if headers is not None else ""
    return token in [p.strip() for part in raw.split(",") for p in part.split(";")]


def status_url(base: str, job_id: str) -> str:
    return f"{base}/{STATUS_PATH}/{job_id}"


def accepted(base: str, job_id: str, what: str) -> Result:
    """202 with the status URL: the answer to every kick-off."""
    return Result(
        202,
        outcomes.ok(f"{what} accepted; poll {status_url(base, job_id)} for its progress"),
        {"Content-Location": status_url(base, job_id)},
    )


def _request_url(call: OperationCall) -> str:
    req = call.request
    path = "/".join(p for p in (call.res_type, call.res_id, f"${call.name}") if p)
    query = urllib.parse.urlencode(call.params)
    if req is not None and req.query_string:
        query = req.query_string.decode("utf-8", "replace")
    return f"{call.base}/{path}" + (f"?{query}" if query else "")


def _values(call: OperationCall) -> list[tuple[str, str]]:
    """Every parameter, from the query string and a ``Parameters`` body, in order."""
    out = list(call.params)
    body = call.body
    if body and body.get("resourceType") == "Parameters":
        for p in body.get("parameter") or []:
            if not isinstance(p, dict):
                continue
            name = p.get("name")
            ref = p.get("valueReference")
            if isinstance(ref, dict):
                out.append((name, str(ref.get("reference") or "")))
                continue
            for key, value in p.items():
                if key.startswith("value") and isinstance(value, (str, int, bool)):
                    out.append((name, str(value)))
    elif body:
        raise outcomes.bad_request("$export takes a Parameters resource as its body")
    return out


def _instant(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None or "T" not in value:
        raise outcomes.bad_request(
            f"_since must be a FHIR instant with a time zone (2024-01-31T08:00:00Z), not {value!r}",
            "_since",
        )
    return parsed.astimezone(dt.UTC)


def export_kickoff(call: OperationCall, level: str) -> Result:
    """``$export`` at ``level`` (system, patient, group): a queued job, 202."""
    hub = call.hub
    req = call.request
    headers = req.headers if req is not None else None
    if not prefers(headers, "respond-async"):
        raise outcomes.bad_request(
            "$export runs asynchronously: send the header 'Prefer: respond-async'", "Prefer"
        )
    strict = prefers(headers, "handling=strict")
    values = _values(call)
    fmt = "application/fhir+ndjson"
    since: dt.datetime | None = None
    types: list[str] = []
    filters: list[str] = []
    patients: list[str] = []
    for name, value in values:
        if name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise outcomes.bad_request(
                    f"_outputFormat {value!r} is not supported; use one of "
                    + ", ".join(OUTPUT_FORMATS),
                    "_outputFormat",
                )
            fmt = value
        elif name == "_since":
            since = _instant(value)
        elif name == "_type":
            types += [t.strip() for t in value.split(",") if t.strip()]
        elif name == "_typeFilter":
            filters += _split_filters(value)
        elif name == "patient":
            if level == "system":
                raise outcomes.bad_request("patient is a parameter of Patient and Group $export")
            if not value.startswith("Patient/") or value.count("/") != 1:
                raise outcomes.bad_request(
                    f"patient takes references to Patients (Patient/123), not {value!r}", "patient"
                )
            patients.append(value.split("/", 1)[1])
        elif name in OPTIONAL_PARAMS or name in ("_format", "_pretty"):
            if strict:
                raise outcomes.error(400, "not-supported", f"$export does not support {name}", name)
        elif strict:
            raise outcomes.bad_request(f"$export has no parameter {name!r}", name)
    principal = current()
    allowed = compartment_types() if level != "system" else None
    for t in dict.fromkeys(types):
        if not hub.search_registry.is_type(t) or t == "AuditEvent":
            raise outcomes.bad_request(f"_type names an unknown resource type {t!r}", "_type")
        if allowed is not None and t not in allowed:
            raise outcomes.bad_request(
                f"{t} is in no patient compartment: not part of a {level} export", "_type"
            )
        if principal is not None and not (principal.can(t, "r") or principal.can(t, "s")):
            raise outcomes.error(
                403,
                "forbidden",
                f"The token's scopes do not allow reading {t} (needs {t}.rs or *.rs)",
                "_type",
            )
    type_filters = _type_filters(hub, filters, types)
    group = None
    if level == "group":
        group = call.res_id
        hub.service.read("Group", group)  # 404 (or 403) now rather than a failed job
    params = {
        "level": level,
        "group": group,
        "types": list(dict.fromkeys(types)),
        "since": format_instant(since) if since else None,
        "type_filters": type_filters,
        "patients": patients,
        "output_format": fmt,
    }
    job_id = uuid.uuid4().hex
    JobStore(hub.engine).create(
        job_id,
        "export",
        principals.owner(principal),
        principal_record.to_record(principal),
        _request_url(call),
        params,
    )
    return accepted(call.base, job_id, "Export")


def _split_filters(value: str) -> list[str]:
    """Comma-separated queries; a comma not followed by ``Type?`` belongs to a query's
    value (``code=a,b``: an OR), so it does not split."""
    out: list[str] = []
    for part in value.split(","):
        if out and not _QUERY_START.match(part):
            out[-1] += "," + part
        elif part:
            out.append(part)
    return out


_QUERY_START = re.compile(r"^[A-Z][A-Za-z]+\?")


def _type_filters(hub: Hub, filters: list[str], types: list[str]) -> dict[str, list[list]]:
    """``{type: [query params, ...]}`` of the ``_typeFilter`` values, each query tried on the
    search engine now (strict: an unknown parameter is a 400, as on a search)."""
    out: dict[str, list[list]] = {}
    engine: SearchEngine = hub.service.search_engine
    for raw in filters:
        res_type, sep, query = raw.partition("?")
        if not sep or not hub.search_registry.is_type(res_type):
            raise outcomes.bad_request(
                f"_typeFilter {raw!r} is not a search (Type?name=value)", "_typeFilter"
            )
        if types and res_type not in types:
            raise outcomes.bad_request(
                f"_typeFilter {raw!r} names {res_type}, which _type leaves out", "_typeFilter"
            )
        params = urllib.parse.parse_qsl(query, keep_blank_values=True)
        for key, _ in params:
            if key in ("_count", "_cursor", "_sort", "_include", "_revinclude", "_total"):
                raise outcomes.bad_request(
                    f"_typeFilter {raw!r}: {key} does not select resources", "_typeFilter"
                )
        guard.require(res_type, "s")
        with hub.repo.reading() as conn:
            engine.search(
                conn,
                res_type,
                [*params, ("_count", "1"), ("_total", "none")],
                strict=True,
                access=guard.search_access(),
            )
        out.setdefault(res_type, []).append([list(p) for p in params])
    return out


def compartment_types() -> list[str]:
    """The types of the Patient compartment (a Patient and Group export's types)."""
    return ["Patient", *sorted(t for t in compartments()["Patient"] if t != "Patient")]


def async_kickoff(hub: Hub, kind: str, request_url: str, base: str, spec: dict[str, Any]) -> Result:
    """``Prefer: respond-async`` on a search (``kind`` search) or ``$everything``: the same
    job machinery, its result one Bundle file."""
    principal = current()
    job_id = uuid.uuid4().hex
    JobStore(hub.engine).create(
        job_id,
        kind,
        principals.owner(principal),
        principal_record.to_record(principal),
        request_url,
        {**spec, "base": base},
    )
    return accepted(base, job_id, "Request")
