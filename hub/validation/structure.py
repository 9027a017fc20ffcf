"""The structural check run on every write: fhir.resources' R4B models.

:func:`check_structure` parses the resource with the pydantic model of its type and turns every
error into an ``OperationOutcome`` issue whose ``expression`` is the FHIRPath location computed
from pydantic's ``loc`` (``('name', 0, 'given')`` -> ``Patient.name[0].given``). All issues are
collected before raising. It catches unknown elements, wrong shapes (array vs single value),
missing mandatory elements, malformed primitives and two values of one choice element; it does
not catch bindings, invariants, profiles or JSON strings given for booleans and numbers (the
models coerce them): those are :class:`hub.validation.validator.Validator`'s job.
"""

from __future__ import annotations

import functools
from typing import Any

import pydantic
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource

from hub.outcomes import OperationOutcomeError
from hub.outcomes import issue
from hub.outcomes import outcome

# Abstract types: never stored as such.
_NOT_CONCRETE = frozenset({"Resource", "DomainResource"})


@functools.lru_cache(maxsize=256)
def _model(resource_type: str):
    if resource_type in _NOT_CONCRETE or not resource_type.isidentifier():
        return None
    try:
        cls = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError, ImportError):
        return None
    return cls if isinstance(cls, type) and issubclass(cls, Resource) else None


def model_class(res_type: str):
    """The R4B model class of a resource type; ``KeyError`` for anything else."""
    cls = _model(res_type) if isinstance(res_type, str) else None
    if cls is None:
        raise KeyError(res_type)
    return cls


def known_type(res_type: str) -> bool:
    """Whether ``res_type`` is a concrete resource type the hub can store."""
    return isinstance(res_type, str) and _model(res_type) is not None


def expression_from_loc(resource_type: str, loc: tuple) -> str:
    """FHIRPath location of a pydantic error: ``Patient.name[0].given``."""
    out = resource_type
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str):
            if not part or " " in part or "[" in part or part.startswith("function-"):
                continue  # validator names pydantic inserts (unions, wrappers)
            out += "." + part
    return out


def _nested_unknown_types(value: Any, expr: str, found: list) -> None:
    """Where nested resources (contained, Bundle entries) have a type the models lack."""
    if isinstance(value, dict):
        rt = value.get("resourceType")
        if isinstance(rt, str) and expr and _model(rt) is None:
            found.append((rt, expr))
        for k, v in value.items():
            _nested_unknown_types(v, f"{expr}.{k}" if expr else k, found)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _nested_unknown_types(v, f"{expr}[{i}]", found)


def structure_issues(resource: Any) -> list[dict]:
    """The structural issues of ``resource`` (empty when it parses)."""
    if not isinstance(resource, dict):
        return [issue("error", "structure", "a resource must be a JSON object", "$this")]
    rt = resource.get("resourceType")
    if not isinstance(rt, str) or not rt:
        return [issue("error", "structure", "resourceType is missing", "$this")]
    model = _model(rt)
    if model is None:
        return [issue("error", "not-supported", f"unknown resource type '{rt}'", rt)]
    try:
        model.model_validate(resource)
    except pydantic.ValidationError as exc:
        return [
            issue(
                "error",
                "required" if err["type"].endswith("missing") else "structure",
                err["msg"],
                expression_from_loc(rt, err["loc"]),
            )
            for err in exc.errors(include_url=False)
        ]
    except (KeyError, LookupError, TypeError, ValueError):
        # fhir.resources raises KeyError for a nested resource of unknown type
        found: list = []
        for k, v in resource.items():
            _nested_unknown_types(v, f"{rt}.{k}", found)
        if found:
            return [
                issue("error", "not-supported", f"unknown resource type '{t}'", e) for t, e in found
            ]
        return [issue("error", "structure", f"{rt} cannot be parsed", rt)]
    return []


def check_structure(resource: dict) -> None:
    """Raise ``OperationOutcomeError`` (400) with every structural issue of ``resource``."""
    issues = structure_issues(resource)
    if issues:
        raise OperationOutcomeError(outcome(*issues), 400)
