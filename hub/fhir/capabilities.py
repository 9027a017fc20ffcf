"""What the hub serves, found once, rendered as the CapabilityStatement and the OpenAPI document.

:func:`served` reads it from what is really registered: the resource types the
hub can store (R4 types the R4B models also define; the 18 R4 types R4B
dropped answer 404 and are not listed), the search parameters the search
engine answers (not ``_text``, ``_content``, ``_query`` or ``special`` ones),
the audit trail's own parameters for AuditEvent (read and search only), and
every operation of the operation registry, each with an OperationDefinition
the hub serves (``hub.fhir.operation_definitions``). ``/fhir/metadata``
(:func:`capability_statement`) and ``/fhir/openapi.json``
(``hub.api.openapi``) both render this, so they cannot disagree.
``tests/test_capability_walk.py`` walks the statement against a live hub.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
from typing import TYPE_CHECKING
from typing import Any

from hub.config import setting
from hub.fhir.operation_definitions import definition_ids
from hub.operations import Operation
from hub.subscriptions import rules as subscription_rules
from hub.version import __version__

if TYPE_CHECKING:
    from hub.kernel import Hub

TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "search-system", "history-system")
# JSON Patch, and FHIRPath Patch (a Parameters resource in either FHIR format).
PATCH_FORMATS = ("application/json-patch+json", "application/fhir+json", "application/fhir+xml")
FORMATS = ("application/fhir+json", "application/fhir+xml")
# The audit trail is written by the hub alone (hub.api.fhir refuses writes).
AUDIT_INTERACTIONS = ("read", "search-type")
SUBSCRIPTION_DOCUMENTATION = (
    "R4 criteria-based Subscriptions (channels rest-hook and websocket), matched on the change"
    " feed by `hub worker` as the Subscription's owner; rest-hook endpoints only under the"
    " operator's SUBSCRIPTION_ENDPOINTS prefixes"
)


@dataclasses.dataclass
class Param:
    """One search parameter as served: ``definition`` is its SearchParameter's canonical."""

    name: str
    type: str
    definition: str = ""
    documentation: str = ""


@dataclasses.dataclass
class ServedOperation:
    operation: Operation
    definition_id: str

    @property
    def name(self) -> str:
        return self.operation.name


@dataclasses.dataclass
class ServedType:
    type: str
    interactions: tuple[str, ...]
    params: list[Param]
    includes: list[str]
    operations: list[ServedOperation]  # type and instance level


@dataclasses.dataclass
class Served:
    types: list[ServedType]
    system_interactions: tuple[str, ...]
    system_operations: list[ServedOperation]

    def type(self, name: str) -> ServedType | None:
        return next((t for t in self.types if t.type == name), None)


def searchable(name: str, param: Any) -> bool:
    """Whether the search engine answers ``param`` (the conditions of its ``_clause``)."""
    from hub.search.engine import _UNSUPPORTED

    if name in _UNSUPPORTED or param.type == "special":
        return False
    return bool(param.expression) or param.type == "composite"


def resource_types(hub_obj: Hub) -> list[str]:
    """The resource types the hub stores and serves."""
    from hub.search.data import resource_types as r4_types
    from hub.validation.structure import known_type

    registry = hub_obj.search_registry
    names = registry.all_types() if registry is not None else r4_types()
    return sorted(t for t in names if known_type(t))


def served(hub_obj: Hub) -> Served:
    registry = hub_obj.search_registry
    can_search = registry is not None and hub_obj.service.search_engine is not None
    ops = hub_obj.operations.all()
    ids = definition_ids(ops)
    types = []
    for res_type in resource_types(hub_obj):
        type_ops = [
            ServedOperation(op, ids[id(op)])
            for op in ops
            if ("type" in op.levels or "instance" in op.levels)
            and (not op.types or res_type in op.types)
        ]
        if res_type == "AuditEvent":
            # Served from the audit table, not the resource store the operations work on.
            types.append(ServedType(res_type, AUDIT_INTERACTIONS, _audit_params(registry), [], []))
            continue
        interactions = tuple(
            i for i in TYPE_INTERACTIONS if can_search or i not in ("search-type",)
        )
        params: list[Param] = []
        includes: list[str] = []
        if can_search:
            found = registry.params_for(res_type)
            params = [
                Param(name, p.type, p.url or "", p.description or "")
                for name, p in sorted(found.items())
                if searchable(name, p)
            ]
            includes = sorted(f"{res_type}:{p.name}" for p in params if p.type == "reference")
        types.append(ServedType(res_type, interactions, params, includes, type_ops))
    system = tuple(i for i in SYSTEM_INTERACTIONS if can_search or i != "search-system")
    system_ops = [ServedOperation(op, ids[id(op)]) for op in ops if "system" in op.levels]
    return Served(types, system, system_ops)


def _audit_params(registry: Any) -> list[Param]:
    """The parameters ``hub.security.audit_search`` answers, described by their R4 definition
    where R4 has one."""
    from hub.security.audit_search import DOCUMENTATION

    out = []
    for name, (ptype, doc) in sorted(DOCUMENTATION.items()):
        official = registry.get("AuditEvent", name) if registry is not None else None
        url = official.url if official is not None and official.type == ptype else ""
        out.append(Param(name, ptype, url or "", doc))
    return out


def capability_statement(hub_obj: Hub, base: str) -> dict[str, Any]:
    model = served(hub_obj)
    resources = []
    for t in model.types:
        entry: dict[str, Any] = {
            "type": t.type,
            "interaction": [{"code": c} for c in t.interactions],
            "versioning": "versioned-update",
            "readHistory": "vread" in t.interactions,
            "updateCreate": "update" in t.interactions,
            "conditionalCreate": "create" in t.interactions,
            "conditionalRead": "not-supported",
            "conditionalUpdate": "update" in t.interactions,
            "conditionalDelete": "multiple" if "delete" in t.interactions else "not-supported",
            "referencePolicy": ["literal", "logical"],
        }
        if t.type == "AuditEvent":
            entry["versioning"] = "no-version"
        if t.type == "Subscription":
            entry["documentation"] = SUBSCRIPTION_DOCUMENTATION
        if "search-type" in t.interactions:
            if t.type != "AuditEvent":
                entry["searchInclude"] = ["*", *t.includes]
                entry["searchRevInclude"] = ["*"]
            entry["searchParam"] = [_search_param(p) for p in t.params]
        if t.operations:
            entry["operation"] = [_operation(o, base) for o in t.operations]
        resources.append(entry)
    rest: dict[str, Any] = {
        "mode": "server",
        "security": _security(base, bool(str(setting(hub_obj.config, "CORS_ORIGINS")).strip())),
        "resource": resources,
        "interaction": [{"code": c} for c in model.system_interactions],
    }
    if model.system_operations:
        rest["operation"] = [_operation(o, base) for o in model.system_operations]
    instantiates = sorted(
        {o.operation.instantiates for o in model.system_operations if o.operation.instantiates}
    )
    websocket = subscription_rules.websocket_url(hub_obj.config)
    if websocket:
        rest["extension"] = [{"url": subscription_rules.WEBSOCKET_EXTENSION, "valueUri": websocket}]
    summary = html.escape(
        f"fhirhub {__version__}: FHIR R4 server of {len(model.types)} resource types"
    )
    return {
        "resourceType": "CapabilityStatement",
        "text": {
            "status": "generated",
            "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{summary}</p></div>',
        },
        "status": "active",
        "date": dt.date.today().isoformat(),
        "kind": "instance",
        **({"instantiates": instantiates} if instantiates else {}),
        "software": {"name": "fhirhub", "version": __version__},
        "implementation": {"description": "fhirhub lifetime health-record hub", "url": base},
        "fhirVersion": "4.0.1",
        "format": list(FORMATS),
        "patchFormat": list(PATCH_FORMATS),
        "rest": [rest],
    }


def _operation(served_op: ServedOperation, base: str) -> dict[str, Any]:
    out = {
        "name": served_op.name,
        "definition": f"{base}/OperationDefinition/{served_op.definition_id}",
    }
    if served_op.operation.documentation:
        out["documentation"] = served_op.operation.documentation
    return out


def _security(base: str, cors: bool) -> dict[str, Any]:
    """SMART on FHIR (docs/security.md, docs/smart.md): the ``oauth-uris`` extension names the
    authorization and token endpoints, as ``/.well-known/smart-configuration`` does."""
    root = base.removesuffix("/fhir")
    return {
        "extension": [
            {
                "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
                "extension": [
                    {"url": "authorize", "valueUri": f"{root}/auth/authorize"},
                    {"url": "token", "valueUri": f"{root}/auth/token"},
                ],
            }
        ],
        "cors": cors,  # CORS_ORIGINS names browser origins (hub.api.cors)
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
        "description": "OAuth2 bearer tokens with SMART v2 scopes: client credentials"
        " (secrets or private_key_jwt) and, for patient-facing apps, the authorization-code"
        " grant with PKCE"
        f" (token endpoint {root}/auth/token, announced at"
        f" {root}/.well-known/smart-configuration); security labels need explicit grants;"
        " every access is audited.",
    }


def _search_param(param: Param) -> dict[str, Any]:
    out = {"name": param.name, "type": param.type}
    if param.definition:
        out["definition"] = param.definition
    if param.documentation:
        out["documentation"] = param.documentation
    return out
