"""``batch`` and ``transaction`` Bundles.

A transaction is all-or-nothing: every entry is checked first, then the
entries are processed in the specification's order (DELETE, POST, PUT/PATCH,
GET) inside one database transaction, and the response lists the results in
the request's order. ``urn:uuid:`` (and any other) ``fullUrl`` of a created
resource is replaced by its new ``Type/id`` wherever it is referenced, and
conditional references (``Patient?identifier=...``) are resolved by search.

A batch processes each entry on its own; one entry's failure is reported in
its response entry and does not affect the others.
"""

from __future__ import annotations

import dataclasses
import urllib.parse
from typing import Any

import orjson

from hub import outcomes
from hub.fhir.service import FhirService
from hub.fhir.service import Match
from hub.fhir.service import Result
from hub.fhir.service import WriteOptions
from hub.fhir.service import check_id
from hub.fhir.service import check_update_id
from hub.fhir.service import location
from hub.fhir.service import parse_etag
from hub.fhir.service import parse_query
from hub.security import guard
from hub.storage.repository import Stored
from hub.storage.repository import Writer
from hub.storage.repository import format_instant
from hub.storage.repository import new_id

# Request extension: a conditional PATCH that may match nothing (e.g. a CDA
# replacement arriving before the document it replaces).
OPTIONAL_ENTRY = "urn:fhirhub:extension:optional-entry"
ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}
STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclasses.dataclass
class _Entry:
    index: int
    method: str
    url: str
    res_type: str
    res_id: str | None
    query: str | None
    resource: dict | None
    full_url: str | None
    if_none_exist: str | None
    if_match: str | None
    planned_id: str | None = None  # the id a POST gets unless its ifNoneExist matches
    # A conditional PATCH marked optional (extension OPTIONAL_ENTRY on request)
    # that matches nothing is skipped instead of failing the transaction.
    optional: bool = False
    # Codes outside required bindings found by the structure check (FhirService.check_resource)
    bindings: list = dataclasses.field(default_factory=list)
    # Issues the site's policy let through (accept-with-warnings), as the check found them
    checked: list = dataclasses.field(default_factory=list)
    # The same, or the write's own (a patch's), once processed: the response's outcome
    warnings: list = dataclasses.field(default_factory=list)
    result: Any = None  # Stored, Result or bytes once processed
    match: Match | None = None  # what a conditional entry's criteria found (step 1)
    text: str = ""  # what a deletion answers (its response's outcome)
    status: int = 200
    noop: bool = False


def process(
    service: FhirService,
    bundle: dict[str, Any],
    base: str,
    opts: WriteOptions,
    spliced: bool = False,
) -> dict[str, Any]:
    """Process a batch or transaction Bundle; returns the response Bundle.

    ``spliced=True`` (a caller that serialises the response with orjson and nothing else)
    puts stored JSON into it as ``orjson.Fragment`` instead of parsing it.

    A transaction's parts are also used apart: :func:`prepare_transaction`
    and :func:`run_transaction` (the ingestion pipeline runs each message's
    transaction with the writer its group of messages shares).
    """
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise outcomes.bad_request("POST to the base URL takes a Bundle", "resourceType")
    kind = bundle.get("type")
    if kind not in ("batch", "transaction"):
        raise outcomes.bad_request(
            f"Bundle.type must be batch or transaction, not {kind!r}", "Bundle.type"
        )
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise outcomes.bad_request("Bundle.entry must be an array", "Bundle.entry")
    if kind == "transaction":
        return _transaction(service, raw_entries, base, opts, spliced)
    return _batch(service, raw_entries, base, opts, spliced)


def _parse_entry(i: int, raw: Any) -> _Entry:
    where = f"Bundle.entry[{i}]"
    if not isinstance(raw, dict):
        raise outcomes.bad_request("A Bundle entry must be an object", where)
    request = raw.get("request")
    if not isinstance(request, dict):
        raise outcomes.bad_request("Every entry needs a request", f"{where}.request")
    method = str(request.get("method", "")).upper()
    if method not in ORDER:
        raise outcomes.bad_request(
            f"Unsupported request.method {method!r}", f"{where}.request.method"
        )
    url = str(request.get("url") or "")
    if not url:
        raise outcomes.bad_request("request.url is required", f"{where}.request.url")
    path, _, query = url.partition("?")
    parts = [p for p in path.strip("/").split("/") if p]
    res_type = parts[0] if parts else ""
    res_id = parts[1] if len(parts) > 1 else None
    resource = raw.get("resource")
    if method in ("POST", "PUT") and not isinstance(resource, dict):
        raise outcomes.bad_request(f"A {method} entry needs a resource", f"{where}.resource")
    if method == "PATCH" and resource is None:
        raise outcomes.bad_request(
            "A PATCH entry needs a Binary or Parameters resource", f"{where}.resource"
        )
    if method in ("POST", "PUT") and resource.get("resourceType") != res_type:
        raise outcomes.bad_request(
            f"resource type {resource.get('resourceType')!r} does not match request.url {url!r}",
            f"{where}.resource.resourceType",
        )
    if method == "PUT" and res_id is None and not query:
        raise outcomes.bad_request("PUT needs Type/id or Type?criteria", f"{where}.request.url")
    if method == "DELETE" and res_id is None and not query:
        raise outcomes.bad_request("DELETE needs Type/id or Type?criteria", f"{where}.request.url")
    if res_id is not None and method != "GET":
        check_id(res_id)
    return _Entry(
        i,
        method,
        url,
        res_type,
        res_id,
        query or None,
        resource,
        raw.get("fullUrl"),
        request.get("ifNoneExist"),
        request.get("ifMatch"),
        optional=any(
            x.get("url") == OPTIONAL_ENTRY and x.get("valueBoolean")
            for x in request.get("extension") or ()
        ),
    )


def _prefix(err: outcomes.OperationOutcomeError, where: str) -> outcomes.OperationOutcomeError:
    """Re-anchor an entry's issues at ``Bundle.entry[i].resource``."""
    _anchor_issues(err.issues, where)
    return err


def _anchor_issues(issues: list[dict], where: str) -> list[dict]:
    for iss in issues:
        exprs = iss.get("expression") or []
        iss["expression"] = [_anchor(e, where) for e in exprs] or [where]
    return issues


def _anchor(expression: str, where: str) -> str:
    """``Patient.name[0]`` inside entry 3 -> ``Bundle.entry[3].resource.name[0]``."""
    if expression.startswith("Bundle.entry"):
        return expression
    head, dot, rest = expression.partition(".")
    if head[:1].isupper() and "[" not in head:
        return f"{where}.{rest}" if dot else where
    return f"{where}.{expression}"


def _transaction(
    service: FhirService, raw_entries: list, base: str, opts: WriteOptions, spliced: bool
) -> dict[str, Any]:
    entries = prepare_transaction(raw_entries)
    # When every id and reference is known without the store, they are settled before the
    # write transaction begins (on SQLite it holds the database's one write lock), and a
    # retried attempt needs no fresh copy of the resources: nothing it does changes them.
    settled = _settle(service, entries, opts)
    snapshot = None if settled else orjson.dumps([e.resource for e in entries])
    attempts = 0

    def attempt(writer: Writer) -> list[_Entry]:
        nonlocal attempts
        attempts += 1
        todo = entries if attempts == 1 else _restored(entries, snapshot)
        if settled:
            _apply_all(service, writer, todo, base, opts)
        else:
            _run_transaction(service, writer, todo, base, opts)
        return todo

    site_name = getattr(opts.site, "name", None)
    done = service.repo.write(attempt, site=site_name)
    # Answered after the commit, outside the write transaction.
    instants: dict = {}
    return {
        "resourceType": "Bundle",
        "type": "transaction-response",
        "entry": [_response_entry(e, base, opts, instants, spliced) for e in done],
    }


def _restored(entries: list[_Entry], snapshot: bytes | None) -> list[_Entry]:
    """The entries with their resources as they were before the first attempt changed them."""
    if snapshot is None:
        return entries
    return [
        dataclasses.replace(e, resource=r)
        for e, r in zip(entries, orjson.loads(snapshot), strict=True)
    ]


def prepare_transaction(raw_entries: list) -> list[_Entry]:
    """Parse and structure-check a transaction's entries (nothing touches the database).

    Every entry is checked, so that the client sees every problem at once.
    """
    from hub.validation.structure import check_structure

    entries = [_parse_entry(i, raw) for i, raw in enumerate(raw_entries)]
    problems: list[dict] = []
    for e in entries:
        if e.resource is not None and e.method in ("POST", "PUT"):
            where = f"Bundle.entry[{e.index}].resource"
            try:
                # codes outside required bindings wait for the site's policy (step 3)
                e.bindings = _anchor_issues(check_structure(e.resource), where)
            except outcomes.OperationOutcomeError as err:
                problems.extend(_prefix(err, where).issues)
    if problems:
        for e in entries:
            problems.extend(e.bindings)
        raise outcomes.OperationOutcomeError(outcomes.outcome(*problems), 400)
    full_urls = [e.full_url for e in entries if e.full_url]
    if len(full_urls) != len(set(full_urls)):
        raise outcomes.bad_request("Two entries share one fullUrl", "Bundle.entry.fullUrl")
    for e in entries:
        e.planned_id = new_id() if e.method == "POST" else None
    return entries


def run_transaction(
    service: FhirService,
    writer: Writer,
    entries: list[_Entry],
    base: str,
    opts: WriteOptions,
    copy: bool = True,
) -> list[dict[str, Any]]:
    """Apply prepared entries with ``writer``; returns the response entries.

    Safe to run again from scratch (a retried attempt after a lost race): it
    works on copies of the entries' resources, unless ``copy=False`` says the
    caller made the entries for this attempt alone.
    """
    if copy:
        entries = _restored(entries, orjson.dumps([e.resource for e in entries]))
    _run_transaction(service, writer, entries, base, opts)
    instants: dict = {}
    return [_response_entry(e, base, opts, instants) for e in entries]


def _conditional(e: _Entry) -> bool:
    """Whether the entry's target id is found by a search (step 1 of a transaction)."""
    return bool(e.if_none_exist and e.method == "POST") or bool(
        e.query and e.method in ("PUT", "PATCH")
    )


def _settle(service: FhirService, entries: list[_Entry], opts: WriteOptions) -> bool:
    """Steps 1 to 3 of :func:`_run_transaction` before the write transaction, when no entry
    and no reference is conditional (their ids then come from the request alone).

    Returns whether it settled them; when not, it may have rewritten the references to
    fullUrls (the same rewriting the transaction does), but nothing else.
    """
    if any(_conditional(e) for e in entries):
        return False
    id_map = _plan_ids(None, None, entries)
    needs_store = False

    def unresolved(ref: str) -> str:
        nonlocal needs_store
        needs_store = True
        return ref

    undefined = _rewrite_entries(entries, id_map, lambda e: unresolved)
    if needs_store:
        return False  # the transaction rewrites again and reports in its order
    for e, left in undefined:
        _refuse_placeholders(e, left)
    _check_entries(service, entries, opts)
    return True


def _plan_ids(service: FhirService | None, writer: Writer | None, entries: list[_Entry]):
    """Step 1: every entry's target id (conditional ones by search); fullUrl -> Type/id."""
    id_map: dict[str, str] = {}
    for e in entries:
        e.noop = False
        e.text = ""
        e.result = None
        e.match = None
        try:
            if e.method == "POST":
                e.res_id = e.planned_id
                if e.if_none_exist:
                    e.match = service.match_one(
                        writer, e.res_type, e.if_none_exist, "If-None-Exist"
                    )
                    if e.match.res_id is not None:
                        e.res_id, e.noop = e.match.res_id, True
            elif e.method in ("PUT", "PATCH") and e.query:
                label = "The conditional update" if e.method == "PUT" else "The conditional patch"
                e.match = service.match_one(writer, e.res_type, e.query, label)
                if e.match.res_id is not None:
                    e.res_id = e.match.res_id
                elif e.method == "PUT":
                    e.res_id = (e.resource or {}).get("id") or new_id()
                else:
                    e.noop = True
        except outcomes.OperationOutcomeError as err:
            raise _entry_error(e, err) from None
        if e.full_url and e.res_id and e.method in ("POST", "PUT"):
            id_map[e.full_url] = f"{e.res_type}/{e.res_id}"
    return id_map


def _rewrite_entries(entries: list[_Entry], id_map: dict[str, str], resolver):
    """Step 2: rewrite references in place (``resolver(e)`` resolves a conditional one);
    returns ``(entry, placeholders)`` for the ``urn:uuid:`` no entry's fullUrl defines."""
    defined = {e.full_url for e in entries if e.full_url}
    undefined = []
    for e in entries:
        if e.resource is not None and e.method in ("POST", "PUT"):
            left = _rewrite_refs(e.resource, id_map, resolver(e))
            if left and not left <= defined:
                undefined.append((e, left - defined))
    return undefined


def _check_entries(service: FhirService, entries: list[_Entry], opts: WriteOptions) -> None:
    """Step 3: check every resource as it will be stored (plugins see final references)."""
    for e in entries:
        if e.resource is not None and e.method in ("POST", "PUT") and not e.noop:
            try:
                if e.method == "PUT":
                    # the body's id against the URL's or the match's, as a REST update
                    check_update_id(e.res_type, e.res_id, e.resource, conditional=bool(e.query))
                    e.resource["id"] = e.res_id
                e.checked = service.check_resource(
                    e.resource, e.res_type, opts.site, structure=False, bindings=e.bindings
                )
            except outcomes.OperationOutcomeError as err:
                raise _prefix(err, f"Bundle.entry[{e.index}].resource") from None


def _run_transaction(
    service: FhirService, writer: Writer, entries: list[_Entry], base: str, opts: WriteOptions
) -> None:
    # 1. Decide every entry's target id (conditional ones by search) and map fullUrls.
    id_map = _plan_ids(service, writer, entries)
    # 2. Rewrite references (placeholders and conditional references).
    cache: dict[str, str] = {}

    def resolver(e: _Entry):
        return lambda ref: _resolve_conditional(service, writer, ref, cache, e, entries)

    for e, left in _rewrite_entries(entries, id_map, resolver):
        _refuse_placeholders(e, left)
    # 3. Check every resource as it will be stored (plugins see final references).
    _check_entries(service, entries, opts)
    _apply_all(service, writer, entries, base, opts)


def _apply_all(
    service: FhirService, writer: Writer, entries: list[_Entry], base: str, opts: WriteOptions
) -> None:
    """Step 4: the writes in the specification's order, then the reads."""
    writer.prefetch(
        (e.res_type, e.res_id)
        for e in entries
        if e.method in ("PUT", "DELETE", "PATCH") and e.res_id
    )
    for e in sorted(entries, key=lambda x: ORDER[x.method]):
        e.result, e.status, e.text, e.warnings = None, 200, "", e.checked
        try:
            _apply(service, writer, e, opts)
        except outcomes.OperationOutcomeError as err:
            raise _entry_error(e, err) from None
    # The writes stay staged (the writer flushes them in bulk at commit, or
    # before any query that must see them): GET entries are such queries.
    reads = [e for e in entries if e.method in ("GET", "HEAD")]
    if reads:
        writer.flush()
    for e in reads:
        try:
            e.result = dispatch_get(service, e.url, base, conn=writer.conn)
        except outcomes.OperationOutcomeError as err:
            raise _entry_error(e, err) from None


def _entry_error(e: _Entry, err: outcomes.OperationOutcomeError) -> outcomes.OperationOutcomeError:
    for iss in err.issues:
        iss["diagnostics"] = (
            f"Bundle.entry[{e.index}] ({e.method} {e.url}): {iss.get('diagnostics', '')}"
        )
        iss.setdefault("expression", [f"Bundle.entry[{e.index}]"])
    return err


def _apply(service: FhirService, writer: Writer, e: _Entry, opts: WriteOptions) -> None:
    """One entry through the service's write method, in the transaction's unit of work."""
    if_match = parse_etag(e.if_match)
    if e.method == "DELETE":
        if e.query:
            done = service.delete_with(writer, e.res_type, None, condition=e.query)
        else:
            done = service.delete_with(writer, e.res_type, e.res_id, if_match=if_match)
    elif e.method == "POST":
        done = service.create_with(
            writer,
            e.res_type,
            e.resource,
            site=opts.site,
            if_none_exist=e.match,
            res_id=e.res_id,
            checked=e.checked,
        )
    elif e.method == "PUT":
        done = service.update_with(
            writer,
            e.res_type,
            e.res_id,
            e.resource,
            site=opts.site,
            if_match=if_match,
            condition=e.match,
            checked=e.checked,
        )
    elif e.method == "PATCH":
        if e.noop and e.optional:
            e.status, e.result = 204, None  # an optional conditional patch that matched nothing
            return
        if e.res_id is None:
            raise outcomes.not_found(f"{e.url} matches no {e.res_type}")
        done = service.patch_with(writer, e.res_type, e.res_id, e.resource, opts.site, if_match)
    else:
        return  # GET and HEAD entries are answered after the writes
    e.result, e.status, e.warnings, e.text = done.stored, done.status, done.warnings, done.text


def _response_entry(
    e: _Entry, base: str, opts: WriteOptions, instants: dict, spliced: bool = False
) -> dict[str, Any]:
    """The response entry of ``e``. ``instants`` caches formatted ``lastModified`` values
    (a transaction's versions share one); ``spliced`` puts stored JSON in as it is
    (``orjson.Fragment``: the response is serialised with orjson, never read back)."""
    out: dict[str, Any] = {}
    if isinstance(e.result, Stored):
        stored = e.result
        if e.method != "DELETE":
            out["fullUrl"] = f"{base}/{stored.res_type}/{stored.res_id}"
            if (
                opts.prefer_return == "representation"
                and stored.content
                and guard.visible_content(stored.res_type, stored.content)
            ):
                out["resource"] = (
                    orjson.Fragment(stored.content) if spliced else orjson.loads(stored.content)
                )
        modified = instants.get(stored.last_updated)
        if modified is None:
            modified = instants[stored.last_updated] = format_instant(stored.last_updated)
        response = {
            "status": STATUS_TEXT.get(e.status, str(e.status)),
            "etag": stored.etag,
            "lastModified": modified,
        }
        if e.method != "DELETE":
            response["location"] = location(stored, base)
        out["response"] = response
    elif isinstance(e.result, Result):
        body = e.result.body
        if isinstance(body, (bytes, str)):
            body = orjson.Fragment(body) if spliced else orjson.loads(body)
        if body is not None:
            out["resource"] = body
        out["response"] = {"status": STATUS_TEXT.get(e.result.status, str(e.result.status))}
        if "ETag" in e.result.headers:
            out["response"]["etag"] = e.result.headers["ETag"]
    else:
        out["response"] = {"status": STATUS_TEXT.get(e.status, str(e.status))}
    if e.text:
        out["response"]["outcome"] = outcomes.ok(e.text)
    elif e.warnings:
        out["response"]["outcome"] = outcomes.outcome(
            *_anchor_issues(e.warnings, f"Bundle.entry[{e.index}].resource")
        )
    return out


def _batch(
    service: FhirService, raw_entries: list, base: str, opts: WriteOptions, spliced: bool
) -> dict[str, Any]:
    out = []
    for i, raw in enumerate(raw_entries):
        try:
            e = _parse_entry(i, raw)
            res = _batch_one(service, e, base, opts)
            entry: dict[str, Any] = {}
            body = res.body
            if isinstance(body, (bytes, str)):
                body = orjson.Fragment(body) if spliced else orjson.loads(body)
            if body is not None and (e.method == "GET" or opts.prefer_return == "representation"):
                entry["resource"] = body
            response = {"status": STATUS_TEXT.get(res.status, str(res.status))}
            for header, key in (("Location", "location"), ("ETag", "etag")):
                if header in res.headers:
                    response[key] = res.headers[header]
            if res.stored is not None:
                response["lastModified"] = format_instant(res.stored.last_updated)
            entry["response"] = response
        except outcomes.OperationOutcomeError as err:
            for iss in err.issues:
                iss.setdefault("expression", [f"Bundle.entry[{i}]"])
            entry = {"response": {"status": str(err.status), "outcome": err.outcome}}
        out.append(entry)
    return {"resourceType": "Bundle", "type": "batch-response", "entry": out}


def _batch_one(service: FhirService, e: _Entry, base: str, opts: WriteOptions) -> Result:
    entry_opts = dataclasses.replace(opts, if_match=e.if_match)
    if e.method == "GET" or e.method == "HEAD":
        return dispatch_get(service, e.url, base)
    if e.method == "POST":
        return service.create(
            e.res_type, e.resource, entry_opts, base, if_none_exist=e.if_none_exist
        )
    if e.method == "PUT":
        if e.query:
            return service.conditional_update(e.res_type, e.query, e.resource, entry_opts, base)
        return service.update(e.res_type, e.res_id, e.resource, entry_opts, base)
    if e.method == "PATCH":
        return service.patch(e.res_type, e.res_id, e.resource, entry_opts, base)
    if e.query:
        return service.conditional_delete(e.res_type, e.query, entry_opts)
    return service.delete(e.res_type, e.res_id, entry_opts)


def dispatch_get(service: FhirService, url: str, base: str, conn=None) -> Result:
    """Answer a GET entry: read, vread, history or search."""
    path, _, query = url.partition("?")
    parts = [p for p in path.strip("/").split("/") if p]
    params = urllib.parse.parse_qsl(query, keep_blank_values=True)
    if len(parts) == 2 and not parts[1].startswith("$") and not parts[1].startswith("_"):
        return service.read(parts[0], parts[1], conn=conn)
    if len(parts) == 4 and parts[2] == "_history":
        return service.vread(parts[0], parts[1], parts[3])
    if parts and parts[-1] == "_history":
        res_type = parts[0] if len(parts) >= 2 else None
        res_id = parts[1] if len(parts) == 3 else None
        return Result(200, service.history(base, res_type, res_id, params))
    if len(parts) <= 1:
        from hub.fhir.searching import search_bytes

        return Result(
            200, search_bytes(service, parts[0] if parts else None, params, base, conn=conn)
        )
    raise outcomes.bad_request(f"Unsupported GET in a Bundle: {url}")


def _rewrite_refs(
    node: Any, id_map: dict[str, str], resolve_conditional, left: set[str] | None = None
) -> set[str] | None:
    """Replace fullUrl placeholders and conditional references, in place; returns the
    ``urn:uuid:`` references left as they were (``None`` when there are none)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                if value in id_map:
                    node[key] = id_map[value]
                elif value.startswith("urn:uuid:"):
                    left = left or set()
                    left.add(value)
                elif "?" in value and not value.startswith(("urn:", "http:", "https:")):
                    node[key] = resolve_conditional(value)
            elif isinstance(value, (dict, list)):
                left = _rewrite_refs(value, id_map, resolve_conditional, left)
    elif isinstance(node, list):
        for item in node:
            if isinstance(item, (dict, list)):
                left = _rewrite_refs(item, id_map, resolve_conditional, left)
    return left


def _refuse_placeholders(e: _Entry, undefined: set[str]) -> None:
    """A ``urn:uuid:`` reference no entry's fullUrl defines would be stored dangling: refused."""
    for expr, ref in _references(e.resource, f"Bundle.entry[{e.index}].resource"):
        if ref in undefined:
            raise outcomes.bad_request(
                f"Bundle.entry[{e.index}]: the reference {ref!r} names no entry's fullUrl", expr
            )


def _references(node: Any, expr: str):
    """``(FHIRPath location, value)`` of every ``reference`` string under ``node``."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                yield f"{expr}.reference", value
            elif isinstance(value, (dict, list)):
                yield from _references(value, f"{expr}.{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _references(item, f"{expr}[{i}]")


def _resolve_conditional(
    service: FhirService, writer: Writer, ref: str, cache: dict, e: _Entry, entries: list[_Entry]
) -> str:
    """The one resource ``ref`` (``Type?criteria``) names, in the store or created or updated
    by the transaction's own entries (as HAPI resolves them); none or several: 412."""
    if ref in cache:
        return cache[ref]
    res_type, _, query = ref.partition("?")
    params = parse_query(query)
    writer.flush()  # earlier staged writes must be found by the search
    matches = service.match_ids(writer.conn, res_type, params)
    for other in entries:
        if (
            other.method in ("POST", "PUT")
            and other.res_type == res_type
            and not other.noop
            and other.res_id not in matches
            and _entry_matches(service, other, params, e, ref)
        ):
            matches.append(other.res_id)
    if len(matches) != 1:
        raise _entry_error(
            e,
            outcomes.precondition_failed(
                f"Conditional reference {ref!r} matches {len(matches)} resources (exactly one needed)"
            ),
        )
    cache[ref] = f"{res_type}/{matches[0]}"
    return cache[ref]


def _entry_matches(service: FhirService, other: _Entry, params, e: _Entry, ref: str) -> bool:
    from hub.fhir import matching

    try:
        return matching.matches(
            service.search_engine.registry, other.resource, other.res_id, params
        )
    except matching.Unsupported as err:
        raise _entry_error(
            e,
            outcomes.bad_request(
                f"Conditional reference {ref!r}: {err} cannot be evaluated on the Bundle's own "
                "entries (use identifier, a token, string, uri or reference parameter, or _id)"
            ),
        ) from None
