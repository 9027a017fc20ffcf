"""An OpenAPI 3.0 description of the FHIR REST API (``/fhir/openapi.json``).

It is generated from the CapabilityStatement the hub serves at ``/fhir/metadata``
(:func:`hub.fhir.capabilities.capability_statement`) and from the OperationDefinitions the
statement names (:mod:`hub.fhir.operation_definitions`), so the two cannot drift: every
resource type, interaction (conditional update and delete included), search parameter and
operation the statement lists is a path here, and nothing else is. Only the HTTP methods of
an operation come from the operation registry (an operation that changes nothing may still
take POST only, e.g. one with a raw body).

It describes the interactions, not every resource's structure (the StructureDefinitions do
that): bodies are FHIR resources with a ``resourceType`` (a Binary also takes and returns
raw content of any media type), and every error is an OperationOutcome. It serves API
explorers and the fuzz test (``tests/security/test_fuzz.py``); ``tests/test_openapi.py``
walks it against the statement and validates it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import request

from hub.fhir.capabilities import PATCH_FORMATS
from hub.fhir.capabilities import capability_statement
from hub.fhir.operation_definitions import definition_ids
from hub.fhir.operation_definitions import served as served_definitions
from hub.version import __version__

if TYPE_CHECKING:
    from hub.kernel import Hub

bp = Blueprint("openapi", __name__)

# Parameters that shape a search's answer, on every type (hub.search.engine).
RESULT_PARAMS = ("_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total")
# Parameters that shape any answer (hub.api.fhir).
FORMAT_PARAMS = ("_format", "_pretty")
FHIR_JSON = "application/fhir+json"
FHIR_XML = "application/fhir+xml"

_STRING = {"type": "string"}
# FHIR search parameter types -> the query value's schema (all are strings with prefixes).
_SEARCH_SCHEMA = {"number": _STRING, "date": _STRING, "quantity": _STRING}
_RESOURCE = {
    "type": "object",
    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
    "required": ["resourceType"],
}
_HEADERS = {
    "If-Match": 'Update only the version with this ETag (W/"3")',
    "If-None-Exist": "Create only when no resource matches these search criteria",
    "If-None-Match": "304 when the current version has this ETag",
    "If-Modified-Since": "304 when not changed since this HTTP date",
    "Prefer": "return=minimal|representation|OperationOutcome; handling=strict|lenient",
    "X-Security-Context": "A raw Binary upload's securityContext (Type/id)",
}


def _schema_ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _fhir_content(schema: dict) -> dict[str, Any]:
    return {FHIR_JSON: {"schema": schema}, FHIR_XML: {"schema": schema}}


def _components() -> dict[str, Any]:
    params: dict[str, Any] = {
        "id": {
            "name": "id",
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
        },
        "vid": {"name": "vid", "in": "path", "required": True, "schema": _STRING},
    }
    for p in (*RESULT_PARAMS, *FORMAT_PARAMS, "_since", "_at", "_cursor"):
        params[p] = {"name": p, "in": "query", "schema": _STRING}
    for name, text in _HEADERS.items():
        params[name] = {"name": name, "in": "header", "description": text, "schema": _STRING}
    return {
        "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}},
        "schemas": {
            "Resource": _RESOURCE,
            "Bundle": {**_RESOURCE, "properties": {**_RESOURCE["properties"], "entry": {}}},
            "OperationOutcome": {
                **_RESOURCE,
                "properties": {**_RESOURCE["properties"], "issue": {"type": "array", "items": {}}},
            },
            "Parameters": {
                **_RESOURCE,
                "properties": {
                    **_RESOURCE["properties"],
                    "parameter": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
        "parameters": params,
        "requestBodies": {
            "resource": {"required": True, "content": _fhir_content(_schema_ref("Resource"))},
            "binary": {
                "required": True,
                "description": "A Binary resource (FHIR media types) or the raw content"
                " (any other media type: its Content-Type becomes Binary.contentType)",
                "content": {
                    **_fhir_content(_schema_ref("Resource")),
                    "*/*": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "patch": {
                "required": True,
                "content": {
                    PATCH_FORMATS[0]: {
                        "schema": {
                            "type": "array",
                            "items": {
                                "type": "object",
                                "properties": {
                                    "op": {"type": "string"},
                                    "path": {"type": "string"},
                                    "value": {},
                                },
                                "required": ["op", "path"],
                            },
                        }
                    },
                    # FHIRPath Patch: a Parameters resource.
                    **_fhir_content(_schema_ref("Parameters")),
                },
            },
            "parameters": {"required": False, "content": _fhir_content(_schema_ref("Parameters"))},
        },
        "responses": {
            "ok": {"description": "A resource", "content": _fhir_content(_schema_ref("Resource"))},
            "created": {
                "description": "Created",
                "headers": {"Location": {"schema": _STRING}, "ETag": {"schema": _STRING}},
                "content": _fhir_content(_schema_ref("Resource")),
            },
            "bundle": {"description": "A Bundle", "content": _fhir_content(_schema_ref("Bundle"))},
            "binary": {
                "description": "The raw content (Accept of its media type or */*), or the"
                " Binary resource (Accept or _format of a FHIR media type)",
                "content": {
                    **_fhir_content(_schema_ref("Resource")),
                    "*/*": {"schema": {"type": "string", "format": "binary"}},
                },
            },
            "notModified": {"description": "Not modified (If-None-Match, If-Modified-Since)"},
            "outcome": {
                "description": "An OperationOutcome",
                "content": _fhir_content(_schema_ref("OperationOutcome")),
            },
        },
    }


class _Builder:
    """Paths and operations, each with a unique ``operationId``."""

    def __init__(self):
        self.paths: dict[str, dict[str, Any]] = {}

    def add(
        self,
        path: str,
        verb: str,
        op_id: str,
        summary: str,
        params=(),
        body: str | None = None,
        ok: str = "ok",
        status: str = "200",
        tag: str = "system",
        extra: dict | None = None,
    ) -> None:
        responses = {status: _ref("responses", ok), "default": _ref("responses", "outcome")}
        if extra:
            responses.update(extra)
        entry: dict[str, Any] = {
            "operationId": op_id,
            "summary": summary,
            "tags": [tag],
            "parameters": [*params, *(_ref("parameters", p) for p in FORMAT_PARAMS)],
            "responses": responses,
        }
        if body:
            entry["requestBody"] = _ref("requestBodies", body)
        self.paths.setdefault(path, {})[verb] = entry


def _query(names, schemas: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    schemas = schemas or {}
    return [{"name": n, "in": "query", "schema": schemas.get(n, _STRING)} for n in names]


def _search_params(entry: dict[str, Any]) -> list[dict[str, Any]]:
    params = entry.get("searchParam") or ()
    schemas = {p["name"]: _SEARCH_SCHEMA.get(p["type"], _STRING) for p in params}
    query = _query([p["name"] for p in params], schemas)
    for q, p in zip(query, params, strict=True):
        if p.get("documentation"):
            q["description"] = p["documentation"]
    return query


def _search_form(entry: dict[str, Any]) -> dict[str, Any]:
    names = [p["name"] for p in entry.get("searchParam") or ()]
    if entry["type"] != "AuditEvent":
        names += list(RESULT_PARAMS)
    props = {n: _STRING for n in names}
    return {
        "required": False,
        "content": {
            "application/x-www-form-urlencoded": {"schema": {"type": "object", "properties": props}}
        },
    }


def _operations(b: _Builder, prefix: str, ops: list, level: str, tag: str, params=()) -> None:
    for name, definition, methods in ops:
        if not definition.get(level):
            continue
        query = _query(
            p["name"]
            for p in definition.get("parameter") or ()
            if p.get("use", "in") == "in" and not p.get("part")
        )
        summary = f"${name}: {definition.get('description') or definition.get('title') or ''}"
        op_id = f"{level}-{tag}-{name}".replace("$", "")
        if "GET" in methods and not definition.get("affectsState"):
            b.add(f"{prefix}/${name}", "get", op_id + "-get", summary, [*params, *query], tag=tag)
        if "POST" in methods:
            b.add(
                f"{prefix}/${name}",
                "post",
                op_id,
                summary,
                [*params, *query],
                "parameters",
                tag=tag,
            )


def document(base: str, statement: dict[str, Any], definitions: dict, methods: dict) -> dict:
    """The OpenAPI document of the CapabilityStatement ``statement`` served at ``base``.

    ``definitions`` are the OperationDefinitions by id; ``methods`` the HTTP methods of
    each operation, by the same id.
    """
    rest = statement["rest"][0]
    b = _Builder()
    b.add("/metadata", "get", "capabilities", "The CapabilityStatement")
    b.paths["/metadata"]["get"]["security"] = []

    def ops_of(entries) -> list:
        out = []
        for op in entries or ():
            def_id = op["definition"].rsplit("/", 1)[-1]
            out.append((op["name"], definitions[def_id], methods.get(def_id, ("GET", "POST"))))
        return out

    system = {i["code"] for i in rest.get("interaction") or ()}
    if {"batch", "transaction"} & system:
        b.add("/", "post", "transaction", "A batch or transaction Bundle", body="resource")
    if "search-system" in system:
        every = [*_query(["_type"]), *(_ref("parameters", p) for p in RESULT_PARAMS)]
        b.add(
            "/", "get", "search-system", "Search every type (_type to choose)", every, ok="bundle"
        )
        b.add("/_search", "get", "search-system-get", "Search every type", every, ok="bundle")
        b.add("/_search", "post", "search-system-post", "Search every type", every, ok="bundle")
        b.paths["/_search"]["post"]["requestBody"] = {
            "required": False,
            "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
        }
    if "history-system" in system:
        hist = [_ref("parameters", p) for p in ("_count", "_since", "_at", "_cursor")]
        b.add("/_history", "get", "history-system", "System history", hist, ok="bundle")
    _operations(b, "", ops_of(rest.get("operation")), "system", "system")

    id_, vid = _ref("parameters", "id"), _ref("parameters", "vid")
    hist = [_ref("parameters", p) for p in ("_count", "_since", "_at", "_cursor")]
    not_modified = {"304": _ref("responses", "notModified")}
    for entry in rest["resource"]:
        t = entry["type"]
        does = {i["code"] for i in entry.get("interaction") or ()}
        binary = t == "Binary"
        body = "binary" if binary else "resource"
        criteria = _search_params(entry)
        if "search-type" in does:
            controls = [_ref("parameters", p) for p in RESULT_PARAMS]
            if t == "AuditEvent":
                controls = [_ref("parameters", "_count")]
            b.add(
                f"/{t}",
                "get",
                f"search-{t}",
                f"Search {t}",
                [*criteria, *controls],
                ok="bundle",
                tag=t,
            )
            b.add(
                f"/{t}/_search",
                "post",
                f"search-{t}-post",
                f"Search {t} (form)",
                ok="bundle",
                tag=t,
            )
            b.paths[f"/{t}/_search"]["post"]["requestBody"] = _search_form(entry)
        if "create" in does:
            headers = [_ref("parameters", "Prefer")]
            if entry.get("conditionalCreate"):
                headers.append(_ref("parameters", "If-None-Exist"))
            if binary:
                headers.append(_ref("parameters", "X-Security-Context"))
            b.add(
                f"/{t}", "post", f"create-{t}", f"Create a {t}", headers, body, "created", "201", t
            )
        if "update" in does and entry.get("conditionalUpdate"):
            b.add(
                f"/{t}",
                "put",
                f"conditional-update-{t}",
                f"Update the {t} matching the criteria (or create one)",
                [*criteria, _ref("parameters", "If-Match"), _ref("parameters", "Prefer")],
                "resource",
                tag=t,
                extra={"201": _ref("responses", "created")},
            )
        if "delete" in does and entry.get("conditionalDelete", "not-supported") != "not-supported":
            b.add(
                f"/{t}",
                "delete",
                f"conditional-delete-{t}",
                f"Delete every {t} matching",
                criteria,
                tag=t,
            )
        if "history-type" in does:
            b.add(
                f"/{t}/_history",
                "get",
                f"history-{t}",
                f"History of every {t}",
                hist,
                ok="bundle",
                tag=t,
            )
        if "read" in does:
            cache = [_ref("parameters", "If-None-Match"), _ref("parameters", "If-Modified-Since")]
            b.add(
                f"/{t}/{{id}}",
                "get",
                f"read-{t}",
                f"Read a {t}",
                [
                    id_,
                    *cache,
                    *([] if binary else [_ref("parameters", p) for p in ("_summary", "_elements")]),
                ],
                ok="binary" if binary else "ok",
                tag=t,
                extra=not_modified,
            )
        if "update" in does:
            headers = [_ref("parameters", "If-Match"), _ref("parameters", "Prefer")]
            if binary:
                headers.append(_ref("parameters", "X-Security-Context"))
            b.add(
                f"/{t}/{{id}}",
                "put",
                f"update-{t}",
                f"Update (or create) a {t}",
                [id_, *headers],
                body,
                tag=t,
                extra={"201": _ref("responses", "created")},
            )
        if "patch" in does:
            b.add(
                f"/{t}/{{id}}",
                "patch",
                f"patch-{t}",
                f"Patch a {t}",
                [id_, _ref("parameters", "If-Match")],
                "patch",
                tag=t,
            )
        if "delete" in does:
            b.add(
                f"/{t}/{{id}}",
                "delete",
                f"delete-{t}",
                f"Delete a {t}",
                [id_, _ref("parameters", "If-Match")],
                tag=t,
            )
        if "history-instance" in does:
            b.add(
                f"/{t}/{{id}}/_history",
                "get",
                f"history-{t}-instance",
                f"History of a {t}",
                [id_, *hist],
                ok="bundle",
                tag=t,
            )
        if "vread" in does:
            b.add(
                f"/{t}/{{id}}/_history/{{vid}}",
                "get",
                f"vread-{t}",
                f"Read a version of a {t}",
                [id_, vid],
                ok="binary" if binary else "ok",
                tag=t,
                extra=not_modified,
            )
        ops = ops_of(entry.get("operation"))
        _operations(b, f"/{t}", ops, "type", t)
        _operations(b, f"/{t}/{{id}}", ops, "instance", t, [id_])
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "fhirhub FHIR R4 API",
            "version": __version__,
            "description": "FHIR R4 REST API, generated from the CapabilityStatement"
            " (/metadata). Every route but /metadata needs a bearer token"
            " (POST /auth/token, client credentials); see docs/security.md.",
        },
        "servers": [{"url": base}],
        "components": _components(),
        "security": [{"bearer": []}],
        "tags": [{"name": "system"}] + [{"name": e["type"]} for e in rest["resource"]],
        "paths": b.paths,
    }


def hub_document(hub: Hub, base: str) -> dict[str, Any]:
    """The OpenAPI document of ``hub`` at ``base``: its CapabilityStatement, rendered."""
    ops = hub.operations.all()
    ids = definition_ids(ops)
    methods = {ids[id(op)]: tuple(op.methods) for op in ops}
    statement = capability_statement(hub, base)
    return document(base, statement, served_definitions(hub, base), methods)


@bp.get("/fhir/openapi.json")
def openapi_json():
    from hub.api.context import get_hub

    configured = get_hub().config.get("BASE_URL")
    base = configured.rstrip("/") if configured else request.url_root.rstrip("/") + "/fhir"
    return jsonify(hub_document(get_hub(), base))
