"""The operations the hub itself serves (plugins add theirs via ``register_operations``)."""

from __future__ import annotations

from hub.fhir.service import Result
from hub.operations import Operation
from hub.operations import OperationCall


def meta(call: OperationCall) -> Result:
    """``$meta``: the ``meta`` of a resource (instance level)."""
    current = call.hub.service.read(call.res_type, call.res_id).stored
    res = current.resource()
    return Result(
        200,
        {
            "resourceType": "Parameters",
            "parameter": [{"name": "return", "valueMeta": res.get("meta", {})}],
        },
    )


def operations() -> list[Operation]:
    return [
        Operation(
            "meta",
            meta,
            levels=("instance",),
            definition="http://hl7.org/fhir/OperationDefinition/Resource-meta",
            documentation="The meta of a resource version",
        ),
    ]
