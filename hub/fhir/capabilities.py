"""The CapabilityStatement, generated from what this app really serves.

Resource types and search parameters come from the search registry (the
official R4 set plus custom and plugin parameters); operations from the
operation registry (built-in and plugin ones). Nothing is listed that the
code does not do.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from hub.version import __version__

TYPE_INTERACTIONS = [
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
]
SYSTEM_INTERACTIONS = ["transaction", "batch", "search-system", "history-system"]


def resource_types(hub_obj: Any) -> list[str]:
    registry = hub_obj.search_registry
    if registry is not None:
        return sorted(t for t in registry.all_types() if t not in ("Resource", "DomainResource"))
    from hub.validation.structure import known_type

    return [t for t in ("Patient", "Observation", "Encounter", "Condition") if known_type(t)]


def capability_statement(hub_obj: Any, base: str) -> dict[str, Any]:
    registry = hub_obj.search_registry
    ops = hub_obj.operations.all()
    resources = []
    for res_type in resource_types(hub_obj):
        entry: dict[str, Any] = {
            "type": res_type,
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": True,
            "conditionalCreate": True,
            "conditionalRead": "not-supported",
            "conditionalUpdate": True,
            "conditionalDelete": "multiple",
            "referencePolicy": ["literal", "logical"],
        }
        if registry is not None:
            params = registry.params_for(res_type)
            entry["searchInclude"] = ["*"] + sorted(
                f"{res_type}:{n}" for n, p in params.items() if p.type == "reference"
            )
            entry["searchRevInclude"] = ["*"]
            entry["searchParam"] = [_search_param(name, p) for name, p in sorted(params.items())]
        type_ops = [
            {
                "name": op.name,
                "definition": op.definition or f"{base}/OperationDefinition/{op.name}",
            }
            for op in ops
            if ("type" in op.levels or "instance" in op.levels)
            and (not op.types or res_type in op.types)
        ]
        if type_ops:
            entry["operation"] = type_ops
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "security": _security(base),
        "resource": resources,
        "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
    }
    system_ops = [
        {"name": op.name, "definition": op.definition or f"{base}/OperationDefinition/{op.name}"}
        for op in ops
        if "system" in op.levels
    ]
    if system_ops:
        rest["operation"] = system_ops
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": dt.date.today().isoformat(),
        "kind": "instance",
        "software": {"name": "fhirhub", "version": __version__},
        "implementation": {"description": "fhirhub lifetime health-record hub", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/fhir+xml"],
        "patchFormat": ["application/json-patch+json"],
        "rest": [rest],
    }


def _security(base: str) -> dict[str, Any]:
    """SMART on FHIR (backend services): where to get a token (docs/security.md)."""
    root = base.removesuffix("/fhir")
    return {
        "cors": False,
        "service": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
                        "code": "SMART-on-FHIR",
                    }
                ]
            }
        ],
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [{"url": "token", "valueUri": f"{root}/auth/token"}],
            }
        ],
        "description": "OAuth2 client-credentials bearer tokens with SMART v2 scopes;"
        " security labels need explicit grants; every access is audited.",
    }


def _search_param(name: str, param: Any) -> dict[str, Any]:
    out = {"name": name, "type": param.type}
    url = getattr(param, "url", None)
    if url:
        out["definition"] = url
    doc = getattr(param, "description", None)
    if doc:
        out["documentation"] = doc
    return out
