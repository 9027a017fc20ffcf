"""An OpenAPI 3.0 description of the FHIR REST API (``/fhir/openapi.json``).

It is rendered from :func:`hub.fhir.capabilities.served`, the model the
CapabilityStatement is rendered from, so both list the same resource types,
interactions, search parameters and operations. It describes the
interactions, not every resource's structure (the StructureDefinitions do
that): bodies are FHIR resources with a ``resourceType``, and every error is an
OperationOutcome. It serves API explorers and the fuzz test
(``tests/security/test_fuzz.py``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import request

from hub.fhir.capabilities import PATCH_FORMATS
from hub.fhir.capabilities import Served
from hub.fhir.capabilities import ServedOperation
from hub.fhir.capabilities import served
from hub.version import __version__

bp = Blueprint("openapi", __name__)

# Parameters that shape a search's answer, on every type (hub.search.engine).
RESULT_PARAMS = ("_count", "_sort", "_include", "_revinclude", "_summary", "_elements", "_total")

_STRING = {"type": "string"}
_OUTCOME = {
    "description": "An OperationOutcome",
    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
}
_OK = {
    "description": "A resource, a Bundle or Parameters",
    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
}
_PARAMS = {
    "id": {
        "name": "id",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
    },
    "vid": {"name": "vid", "in": "path", "required": True, "schema": _STRING},
    **{p: {"name": p, "in": "query", "schema": _STRING} for p in RESULT_PARAMS},
}
_BODIES = {
    "resource": {
        "required": True,
        "content": {
            "application/fhir+json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "resourceType": {"type": "string"},
                        "id": {"type": "string"},
                    },
                    "required": ["resourceType"],
                }
            }
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
            PATCH_FORMATS[1]: {
                "schema": {
                    "type": "object",
                    "properties": {
                        "resourceType": {"type": "string", "enum": ["Parameters"]},
                        "parameter": {"type": "array", "items": {"type": "object"}},
                    },
                    "required": ["resourceType"],
                }
            },
        },
    },
    "parameters": {
        "required": False,
        "content": {
            "application/fhir+json": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "resourceType": {"type": "string"},
                        "parameter": {"type": "array", "items": {"type": "object"}},
                    },
                    "required": ["resourceType"],
                }
            }
        },
    },
}


def _ref(kind: str, name: str) -> dict[str, str]:
    return {"$ref": f"#/components/{kind}/{name}"}


def _op(summary: str, params=(), body: str | None = None, ok: str = "200") -> dict[str, Any]:
    out: dict[str, Any] = {
        "summary": summary,
        "parameters": list(params),
        "responses": {ok: _ref("responses", "ok"), "default": _ref("responses", "outcome")},
    }
    if body:
        out["requestBody"] = _ref("requestBodies", body)
    return out


def _query(names) -> list[dict[str, Any]]:
    return [{"name": n, "in": "query", "schema": _STRING} for n in names]


def _operation_paths(prefix: str, ops: list[ServedOperation], level: str, params=()) -> dict:
    paths: dict[str, Any] = {}
    for served_op in ops:
        op = served_op.operation
        if level not in op.levels:
            continue
        query = _query(p["name"] for p in op.parameters if p.get("use", "in") == "in")
        entry = {}
        summary = f"${op.name}: {op.documentation}" if op.documentation else f"${op.name}"
        if "GET" in op.methods and not op.affects_state:
            entry["get"] = _op(summary, [*params, *query])
        if "POST" in op.methods:
            entry["post"] = _op(summary, [*params, *query], body="parameters")
        if entry:
            paths[f"{prefix}/${op.name}"] = entry
    return paths


def document(base: str, model: Served) -> dict[str, Any]:
    """The OpenAPI document of what ``model`` says the hub serves at ``base``."""
    paths: dict[str, Any] = {
        "/metadata": {"get": {**_op("The CapabilityStatement"), "security": []}},
    }
    system = model.system_interactions
    if {"batch", "transaction"} & set(system):
        paths["/"] = {"post": _op("A batch or transaction Bundle", body="resource")}
    if "search-system" in system:
        paths["/_search"] = {"get": _op("Search every type (_type to choose)", _query(["_type"]))}
    if "history-system" in system:
        paths["/_history"] = {"get": _op("System history", [_ref("parameters", "_count")])}
    paths.update(_operation_paths("", model.system_operations, "system"))
    id_, vid = _ref("parameters", "id"), _ref("parameters", "vid")
    for t in model.types:
        name, does = t.type, set(t.interactions)
        collection: dict[str, Any] = {}
        if "search-type" in does:
            controls = [_ref("parameters", p) for p in RESULT_PARAMS]
            if name == "AuditEvent":
                controls = [_ref("parameters", "_count")]
            params = [*_query(p.name for p in t.params), *controls]
            collection["get"] = _op(f"Search {name}", params)
        if "create" in does:
            collection["post"] = _op(f"Create a {name}", body="resource", ok="201")
        if collection:
            paths[f"/{name}"] = collection
        if "history-type" in does:
            paths[f"/{name}/_history"] = {
                "get": _op(f"History of every {name}", [_ref("parameters", "_count")])
            }
        instance: dict[str, Any] = {}
        if "read" in does:
            instance["get"] = _op(f"Read a {name}", [id_])
        if "update" in does:
            instance["put"] = _op(f"Update (or create) a {name}", [id_], body="resource")
        if "patch" in does:
            instance["patch"] = _op(f"Patch a {name}", [id_], body="patch")
        if "delete" in does:
            instance["delete"] = _op(f"Delete a {name}", [id_])
        if instance:
            paths[f"/{name}/{{id}}"] = instance
        if "history-instance" in does:
            paths[f"/{name}/{{id}}/_history"] = {
                "get": _op(f"History of a {name}", [id_, _ref("parameters", "_count")])
            }
        if "vread" in does:
            paths[f"/{name}/{{id}}/_history/{{vid}}"] = {
                "get": _op(f"Read a version of a {name}", [id_, vid])
            }
        paths.update(_operation_paths(f"/{name}", t.operations, "type"))
        paths.update(_operation_paths(f"/{name}/{{id}}", t.operations, "instance", [id_]))
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "fhirhub FHIR R4 API",
            "version": __version__,
            "description": "FHIR R4 REST API. Every route but /metadata needs a bearer token"
            " (POST /auth/token, client credentials); see docs/security.md.",
        },
        "servers": [{"url": base}],
        "components": {
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
            "parameters": _PARAMS,
            "requestBodies": _BODIES,
            "responses": {"ok": _OK, "outcome": _OUTCOME},
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


@bp.get("/fhir/openapi.json")
def openapi_json():
    from hub.api.context import get_hub

    configured = get_hub().config.get("BASE_URL")
    base = configured.rstrip("/") if configured else request.host_url.rstrip("/") + "/fhir"
    return jsonify(document(base, served(get_hub())))
