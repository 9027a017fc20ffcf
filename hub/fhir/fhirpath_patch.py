"""FHIRPath Patch (FHIR R4 §3.1.0.6.2): a ``Parameters`` resource of operations.

Each ``operation`` has a ``type`` (add, insert, delete, replace, move), a
``path`` (a FHIRPath expression), and depending on the type a ``name``, a
``value`` (any ``value[x]``, or ``part``s for a backbone element), an
``index``, a ``source`` and a ``destination``.

fhirpathpy evaluates on copies, so to find the elements a path selects the
patcher tags every object of the resource with a hidden serial number first,
evaluates, maps the results back to the real objects, and removes the tags.
"""

from __future__ import annotations

import re
from typing import Any

from hub import outcomes
from hub.fhir.parameters import check_parameters

_MARK = "__fhirpath_patch_node"
_LAST_NAME = re.compile(r"^(?P<parent>.+)\.(?P<name>[A-Za-z][A-Za-z0-9_]*)$")


class _Nodes:
    """Every object in the resource, by serial number, with its parent container."""

    def __init__(self, resource: dict[str, Any]):
        self.objects: list[dict] = []
        self.parents: list[tuple[Any, Any]] = []  # (container, key or index)
        self._mark(resource, None, None)

    def _mark(self, node: Any, container: Any, key: Any) -> None:
        if isinstance(node, dict):
            node[_MARK] = len(self.objects)
            self.objects.append(node)
            self.parents.append((container, key))
            for k, v in list(node.items()):
                if k != _MARK:
                    self._mark(v, node, k)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                self._mark(item, node, i)

    def clear(self) -> None:
        for obj in self.objects:
            obj.pop(_MARK, None)


def _evaluate(resource: dict[str, Any], path: str) -> list[Any]:
    from fhirpathpy import evaluate
    from fhirpathpy.models import models

    try:
        return evaluate(resource, path, {}, models["r4"])
    except Exception as err:  # noqa: BLE001 - fhirpathpy raises many kinds for a bad expression
        raise outcomes.bad_request(
            f"FHIRPath Patch path {path!r} cannot be evaluated: {err}"
        ) from None


def _locate(resource: dict[str, Any], nodes: _Nodes, path: str) -> list[dict]:
    found = []
    for item in _evaluate(resource, path):
        if isinstance(item, dict) and _MARK in item:
            found.append(nodes.objects[item[_MARK]])
        else:
            raise outcomes.bad_request(
                f"FHIRPath Patch path {path!r} selects a primitive; select its parent"
            )
    return found


def _one(resource, nodes, path: str) -> dict:
    found = _locate(resource, nodes, path)
    if len(found) != 1:
        raise outcomes.unprocessable(
            f"FHIRPath Patch path {path!r} selects {len(found)} elements, not 1"
        )
    return found[0]


def _value(part: dict[str, Any]) -> Any:
    """The value of a ``value`` parameter: a ``value[x]`` or a backbone built from ``part``s."""
    for key, value in part.items():
        if key.startswith("value"):
            return value
    if "part" in part:
        out: dict[str, Any] = {}
        for child in part["part"]:
            child_value = _value(child)
            type_key = next((k for k in child if k.startswith("value")), None)
            name = child["name"]
            # A choice element keeps its type suffix in JSON (value -> valueDateTime).
            if (
                name in ("value", "effective", "onset", "abatement", "deceased", "multipleBirth")
                and type_key
            ):
                name = name + type_key[len("value") :]
            out[name] = child_value
        return out
    if "resource" in part:
        return part["resource"]
    raise outcomes.bad_request(f"FHIRPath Patch parameter {part.get('name')!r} has no value")


def _choice_key(container: dict, name: str, value_param: dict[str, Any]) -> str:
    """The JSON key for ``name``: itself, or ``name`` + type for a choice element."""
    if name in container:
        return name
    existing = next(
        (k for k in container if k.startswith(name) and k[len(name) : len(name) + 1].isupper()),
        None,
    )
    type_key = next((k for k in value_param if k.startswith("value")), None)
    if existing is not None or (type_key and name == "value"):
        if existing is not None:
            del container[existing]
        return name + type_key[len("value") :] if type_key else name
    return name


def _is_list_element(container: dict, name: str, is_root: bool, res_type: str) -> bool:
    if isinstance(container.get(name), list):
        return True
    if is_root:
        from hub.validation.structure import model_class

        field = model_class(res_type).model_fields.get(name)
        if field is not None:
            return "List" in str(field.annotation) or "list" in str(field.annotation)
    return name not in container


def apply(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """Apply a FHIRPath Patch ``Parameters`` to ``resource`` (a copy is patched and returned)."""
    import copy

    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise outcomes.bad_request("A FHIRPath Patch body must be a Parameters resource")
    check_parameters(parameters)
    target = copy.deepcopy(resource)
    res_type = target.get("resourceType", "")
    for n, op in enumerate(
        p for p in parameters.get("parameter", []) if p.get("name") == "operation"
    ):
        parts = {p.get("name"): p for p in op.get("part", [])}
        kind = _value(parts["type"]) if "type" in parts else None
        path = _value(parts["path"]) if "path" in parts else None
        if not kind or not path:
            raise outcomes.bad_request(
                f"FHIRPath Patch operation {n} needs a type and a path",
                f"Parameters.parameter[{n}]",
            )
        nodes = _Nodes(target)
        try:
            _apply_one(target, nodes, kind, path, parts, res_type)
        finally:
            nodes.clear()
    return target


def _apply_one(target, nodes, kind, path, parts, res_type) -> None:
    if kind == "add":
        container = _one(target, nodes, path)
        name = _value(parts["name"])
        value = _value(parts["value"])
        is_root = container is target
        if _is_list_element(container, name, is_root, res_type):
            container.setdefault(name, []).append(value)
        else:
            if name in container:
                raise outcomes.unprocessable(f"add: {path}.{name} already has a value")
            container[name] = value
    elif kind == "replace":
        match = _LAST_NAME.match(path)
        if not match:
            raise outcomes.bad_request(
                f"replace needs a path ending in an element name, not {path!r}"
            )
        container = _one(target, nodes, match["parent"])
        key = _choice_key(container, match["name"], parts["value"])
        container[key] = _value(parts["value"])
    elif kind == "delete":
        match = _LAST_NAME.match(path)
        if match and not path.endswith(")"):
            containers = _locate(target, nodes, match["parent"])
            for container in containers:
                key = next(
                    (
                        k
                        for k in container
                        if k == match["name"]
                        or (
                            k.startswith(match["name"])
                            and k[len(match["name"]) : len(match["name"]) + 1].isupper()
                        )
                    ),
                    None,
                )
                if key is not None:
                    del container[key]
            return
        for obj in _locate(target, nodes, path):
            parent, key = nodes.parents[obj[_MARK]]
            if isinstance(parent, list):
                parent.remove(obj)
    elif kind in ("insert", "move"):
        match = _LAST_NAME.match(path)
        container = _one(target, nodes, match["parent"]) if match else None
        items = container.get(match["name"]) if container is not None else None
        if not isinstance(items, list):
            raise outcomes.unprocessable(f"{kind}: {path} is not a list")
        if kind == "insert":
            items.insert(int(_value(parts["index"])), _value(parts["value"]))
        else:
            item = items.pop(int(_value(parts["source"])))
            items.insert(int(_value(parts["destination"])), item)
    else:
        raise outcomes.bad_request(f"Unknown FHIRPath Patch operation type {kind!r}")
