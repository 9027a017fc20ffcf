"""A compact OpenAPI 3.0 description of the FHIR REST routes (``/fhir/openapi.json``).

It describes the interactions, not every resource's structure (the
CapabilityStatement and the FHIR specification do that): bodies are FHIR
resources with a ``resourceType``, and every error is an OperationOutcome. It
serves API explorers and the fuzz run (``bench/fuzz.py``).
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint
from flask import jsonify
from flask import request

from hub.version import __version__

bp = Blueprint("openapi", __name__)

# The types offered to explorers and the fuzzer; every R4 type is served.
TYPES = ["Patient", "Observation", "Encounter", "Condition", "Organization", "Practitioner"]

_RESOURCE = {
    "type": "object",
    "properties": {"resourceType": {"type": "string"}, "id": {"type": "string"}},
    "required": ["resourceType"],
}
_OUTCOME = {
    "description": "An OperationOutcome",
    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
}
_OK = {
    "description": "A resource or Bundle",
    "content": {"application/fhir+json": {"schema": {"type": "object"}}},
}
_TYPE = {
    "name": "type",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "enum": TYPES},
}
_ID = {
    "name": "id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9\\-.]{1,64}$"},
}
_VID = {"name": "vid", "in": "path", "required": True, "schema": {"type": "string"}}
_COUNT = {"name": "_count", "in": "query", "schema": {"type": "string"}}


def _op(summary: str, params=(), body: bool = False, ok: str = "200") -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": list(params),
        "responses": {ok: _OK, "default": _OUTCOME},
    }
    if body:
        op["requestBody"] = {
            "required": True,
            "content": {"application/fhir+json": {"schema": _RESOURCE}},
        }
    return op


def document(base: str, search: bool = True) -> dict[str, Any]:
    """The OpenAPI document; ``search=False`` leaves out searches (no search engine installed)."""
    search_params = [
        _TYPE,
        _COUNT,
        {"name": "_id", "in": "query", "schema": {"type": "string"}},
        {"name": "_lastUpdated", "in": "query", "schema": {"type": "string"}},
        {"name": "_include", "in": "query", "schema": {"type": "string"}},
        {"name": "_revinclude", "in": "query", "schema": {"type": "string"}},
    ]
    patch_body = {
        "required": True,
        "content": {
            "application/json-patch+json": {
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
            }
        },
    }
    patch = _op("Patch a resource (JSON Patch)", [_TYPE, _ID])
    patch["requestBody"] = patch_body
    audit_params = [
        {"name": n, "in": "query", "schema": {"type": "string"}}
        for n in ("date", "agent", "entity", "outcome", "subtype", "site", "_count")
    ]
    doc = {
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
            }
        },
        "security": [{"bearer": []}],
        "paths": {
            "/metadata": {
                "get": {**_op("The CapabilityStatement"), "security": []},
            },
            "/": {"post": _op("A batch or transaction Bundle", body=True)},
            "/_history": {"get": _op("System history", [_COUNT])},
            "/{type}": {
                "get": _op("Search", search_params),
                "post": _op("Create", [_TYPE], body=True, ok="201"),
            },
            "/{type}/_history": {"get": _op("Type history", [_TYPE, _COUNT])},
            "/{type}/{id}": {
                "get": _op("Read", [_TYPE, _ID]),
                "put": _op("Update (or create with this id)", [_TYPE, _ID], body=True),
                "patch": patch,
                "delete": _op("Delete", [_TYPE, _ID]),
            },
            "/{type}/{id}/_history": {"get": _op("Instance history", [_TYPE, _ID, _COUNT])},
            "/{type}/{id}/_history/{vid}": {"get": _op("Read a version", [_TYPE, _ID, _VID])},
            "/AuditEvent": {"get": _op("Search the audit trail (auditors)", audit_params)},
        },
    }
    if not search:
        # The audit trail is served from its own table and stays.
        del doc["paths"]["/{type}"]["get"]
    return doc


@bp.get("/fhir/openapi.json")
def openapi_json():
    from hub.api.context import get_hub

    configured = get_hub().config.get("BASE_URL")
    base = configured.rstrip("/") if configured else request.host_url.rstrip("/") + "/fhir"
    return jsonify(document(base, get_hub().service.search_engine is not None))
