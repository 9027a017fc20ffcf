"""The shape of a ``Parameters`` body, checked before an operation or a FHIRPath Patch reads it.

Operation handlers and the patcher walk ``parameter`` (and ``part``) as lists of
objects with a ``name``; a body that is not (``"parameter": [true]``) is refused
here with the location of the first bad element, instead of failing inside them.
The resources a parameter carries are not checked: ``$validate`` reports on them.
"""

from __future__ import annotations

from typing import Any

from hub import outcomes


def check_parameters(body: Any) -> None:
    """Raise a 400 when ``body`` is a ``Parameters`` resource of the wrong shape."""
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        _check_list(body, "parameter", "Parameters")


def _check_list(node: dict[str, Any], key: str, where: str) -> None:
    items = node.get(key, [])
    if not isinstance(items, list):
        raise outcomes.bad_request(f"{where}.{key} must be a list", f"{where}.{key}")
    for i, item in enumerate(items):
        here = f"{where}.{key}[{i}]"
        if not isinstance(item, dict):
            raise outcomes.bad_request(f"{here} must be an object", here)
        if not isinstance(item.get("name"), str) or not item["name"]:
            raise outcomes.bad_request(f"{here} needs a name (a string)", f"{here}.name")
        _check_list(item, "part", here)
