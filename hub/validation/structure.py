"""The structural check run on every write (fhir.resources R4B models)."""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import ValidationError

from hub import outcomes


@cache
def model_class(res_type: str):
    """The R4B model class of a resource type; ``KeyError`` for anything else."""
    from fhir.resources.R4B import get_fhir_model_class
    from fhir.resources.R4B.resource import Resource

    try:
        cls = get_fhir_model_class(res_type)
    except (KeyError, ValueError):
        raise KeyError(res_type) from None
    if not (isinstance(cls, type) and issubclass(cls, Resource)) or res_type in (
        "Resource",
        "DomainResource",
    ):
        raise KeyError(res_type)
    return cls


def known_type(res_type: str) -> bool:
    try:
        model_class(res_type)
    except KeyError:
        return False
    return True


def _expression(res_type: str, loc: tuple) -> str:
    out = res_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part not in ("__root__",):
            out += f".{part}"
    return out


def check_structure(resource: dict[str, Any]) -> None:
    """Raise a 400 ``OperationOutcomeError`` listing every structural problem."""
    res_type = resource.get("resourceType") if isinstance(resource, dict) else None
    if not isinstance(res_type, str):
        raise outcomes.error(400, "structure", "The resource has no resourceType", "resourceType")
    try:
        model = model_class(res_type)
    except KeyError:
        raise outcomes.error(
            400, "not-supported", f"Unknown resource type {res_type!r}", "resourceType"
        ) from None
    try:
        model.model_validate(resource)
    except ValidationError as err:
        issues = [
            outcomes.issue("error", "structure", f"{e['msg']}", _expression(res_type, e["loc"]))
            for e in err.errors(include_url=False)
        ]
        raise outcomes.OperationOutcomeError(outcomes.outcome(*issues), 400) from None
    except (KeyError, TypeError, ValueError) as err:
        raise outcomes.error(400, "structure", f"Invalid {res_type}: {err}", res_type) from None
