"""Extended operations (``$name``): what a plugin registers and the hub serves.

An :class:`Operation` names its levels (``system``, ``type``, ``instance``),
the resource types it applies to (empty: all) and a handler. The handler
receives an :class:`OperationCall` and returns a :class:`hub.fhir.service.Result`.
Plugins return operations from the ``register_operations`` hook; the
CapabilityStatement lists every one and the hub serves an OperationDefinition
for each at ``/fhir/OperationDefinition/{id}`` (``hub.fhir.operation_definitions``):
built from the R4 definition named by ``definition`` when there is one, otherwise
from the operation's own fields (``parameters``, ``documentation``...).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from hub.kernel import Hub


@dataclasses.dataclass
class OperationCall:
    """One invocation: where it was called, its parameters and the hub's services."""

    name: str
    res_type: str | None
    res_id: str | None
    params: list[tuple[str, str]]  # query-string parameters
    body: dict[str, Any] | None  # a Parameters resource or another resource, for POST
    method: str
    base: str
    hub: Hub  # service, repo, pm, sites...
    request: Any = None  # the Flask request, for handlers that need raw bodies or headers

    def param(self, name: str, default: str | None = None) -> str | None:
        """A parameter from the query string or a ``Parameters`` body (first value)."""
        for key, value in self.params:
            if key == name:
                return value
        if self.body and self.body.get("resourceType") == "Parameters":
            for p in self.body.get("parameter", []):
                if p.get("name") == name:
                    for k, v in p.items():
                        if k.startswith("value"):
                            return v
        return default

    def resource_param(self, name: str = "resource") -> dict[str, Any] | None:
        if not self.body:
            return None
        if self.body.get("resourceType") != "Parameters":
            return self.body
        for p in self.body.get("parameter", []):
            if p.get("name") == name and "resource" in p:
                return p["resource"]
        return None


@dataclasses.dataclass
class Operation:
    name: str  # without the $
    handler: Callable[[OperationCall], Any]
    levels: tuple[str, ...] = ("type", "instance")
    types: tuple[str, ...] = ()  # empty: every type
    methods: tuple[str, ...] = ("GET", "POST")
    affects_state: bool = False
    # The canonical URL of the OperationDefinition it implements (an R4 one such as
    # http://hl7.org/fhir/OperationDefinition/Resource-validate, or another guide's).
    definition: str | None = None
    documentation: str = ""
    # Its parameters, as ``OperationDefinition.parameter`` entries (see :func:`parameter`);
    # empty for a standard operation: the R4 definition's are used.
    parameters: tuple[dict[str, Any], ...] = ()
    # The canonical of a CapabilityStatement the hub instantiates by serving it (the Bulk
    # Data Access IG's for ``$export``); listed in the CapabilityStatement's ``instantiates``.
    instantiates: str | None = None

    def applies(self, level: str, res_type: str | None) -> bool:
        if level not in self.levels:
            return False
        return not self.types or res_type in self.types or level == "system"


def parameter(
    name: str,
    type_: str | None = "string",
    *,
    use: str = "in",
    min_: int = 0,
    max_: str = "1",
    documentation: str = "",
) -> dict[str, Any]:
    """One ``OperationDefinition.parameter``: ``parameter("site", "string", min_=1)``."""
    out: dict[str, Any] = {"name": name, "use": use, "min": min_, "max": max_}
    if documentation:
        out["documentation"] = documentation
    if type_:
        out["type"] = type_
    return out


class OperationRegistry:
    def __init__(self, operations: list[Operation]):
        self.by_name: dict[str, list[Operation]] = {}
        for op in operations:
            self.by_name.setdefault(op.name, []).append(op)

    def find(self, name: str, level: str, res_type: str | None) -> Operation | None:
        for op in self.by_name.get(name, []):
            if op.applies(level, res_type):
                return op
        return None

    def all(self) -> list[Operation]:
        return [op for ops in self.by_name.values() for op in ops]
