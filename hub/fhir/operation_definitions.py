"""The OperationDefinitions of the operations the hub serves (``/fhir/OperationDefinition/{id}``).

One definition per registered :class:`hub.operations.Operation`, built on
demand from the registry, so the CapabilityStatement's ``definition`` links
always resolve and say what the hub really does:

* an operation that names a standard R4 definition (``Resource-validate``,
  ``Patient-everything``...) gets a copy of it (from ``hub/data``, see
  ``tools/build_search_data.py``) with this hub's url, levels and resource
  types, and ``base`` pointing at the standard one;
* any other operation gets one built from its own fields (``documentation``,
  ``parameters``, ``affects_state``); ``base`` is the canonical it declares, if any.
"""

from __future__ import annotations

import copy
import functools
import html
import json
from typing import TYPE_CHECKING
from typing import Any

from hub.operations import Operation
from hub.paths import DATA_DIR
from hub.version import __version__

if TYPE_CHECKING:
    from hub.kernel import Hub


@functools.cache
def standard_definitions() -> dict[str, dict[str, Any]]:
    """The R4 OperationDefinitions by canonical URL."""
    path = DATA_DIR / "operation-definitions.r4.json"
    return json.loads(path.read_text(encoding="utf-8"))


def definition_ids(operations: list[Operation]) -> dict[int, str]:
    """``id(op) -> OperationDefinition id``: the R4 id of a standard operation, else the
    operation's name, prefixed by its first type when two operations share a name."""
    names: dict[str, int] = {}
    for op in operations:
        names[op.name] = names.get(op.name, 0) + 1
    out: dict[int, str] = {}
    for op in operations:
        standard = standard_definitions().get(op.definition or "")
        if standard is not None:
            out[id(op)] = standard["id"]
        elif names[op.name] > 1 and op.types:
            out[id(op)] = f"{op.types[0]}-{op.name}"
        else:
            out[id(op)] = op.name
    return out


def operation_definition(op: Operation, def_id: str, base: str) -> dict[str, Any]:
    standard = standard_definitions().get(op.definition or "")
    if standard is not None:
        out = copy.deepcopy(standard)
        for key in ("meta", "extension", "date", "publisher", "contact"):
            out.pop(key, None)
        out["base"] = standard["url"]
    else:
        out = {
            "resourceType": "OperationDefinition",
            "name": _computable_name(op.name),
            "title": f"${op.name}",
            "kind": "operation",
            "code": op.name,
        }
        if op.definition:
            out["base"] = op.definition
        if op.documentation:
            out["description"] = op.documentation
    if op.parameters or standard is None:
        out["parameter"] = [dict(p) for p in op.parameters]
        if not out["parameter"]:
            del out["parameter"]
    out.update(
        {
            "id": def_id,
            "url": f"{base}/OperationDefinition/{def_id}",
            "version": __version__,
            "status": "active",
            "affectsState": op.affects_state,
            "system": "system" in op.levels,
            "type": "type" in op.levels,
            "instance": "instance" in op.levels,
        }
    )
    if "type" in op.levels or "instance" in op.levels:
        out["resource"] = list(op.types) or ["Resource"]
    else:
        out.pop("resource", None)
    summary = html.escape(f"${op.name}: {op.documentation or out.get('name', '')}")
    out["text"] = {
        "status": "generated",
        "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{summary}</p></div>',
    }
    return dict(sorted(out.items(), key=lambda kv: _ORDER.get(kv[0], len(_ORDER))))


# The R4 element order, for readable output.
_ORDER = {
    k: i
    for i, k in enumerate(
        (
            "resourceType id text url version name title status kind description affectsState"
            " code comment base resource system type instance parameter"
        ).split()
    )
}


def served(hub_obj: Hub, base: str) -> dict[str, dict[str, Any]]:
    """Every OperationDefinition the hub serves, by id."""
    ops = hub_obj.operations.all()
    ids = definition_ids(ops)
    return {ids[id(op)]: operation_definition(op, ids[id(op)], base) for op in ops}


def _computable_name(code: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in code.replace("_", "-").split("-"))
