"""The structural check run on every write.

:func:`check_structure` walks the resource against the element trees of the official R4
definitions (:meth:`hub.validation.validator.Validator.structure`): every property defined,
arrays where elements repeat and single values where they do not, cardinality, one value per
choice element, primitive JSON types (a string is not a boolean, ``"185"`` is not a number),
primitive formats (ids, dates that exist, codes without spaces...), contained resources of known
types. All issues are collected before raising, each with its FHIRPath location
(``Patient.name[0].given``). Required bindings are checked too, against frozensets of codes
worked out once per element (:meth:`~hub.validation.validator.Validator.codes`); extensible
bindings, invariants and profiles are left to the full validator.

This replaced the fhir.resources R4B model check as the write-path check: it is stricter (the
models coerce ``"true"`` to ``true`` and ``"185"`` to ``185`` while the hub stores the JSON as
received) and faster (docs/validation.md). The model check stays available as
:func:`model_issues`, and :func:`model_class` gives the R4B model of a type.
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

# The issue code of a code outside its required binding: not structural, so the writing
# site's validation policy decides (hub.fhir.service.FhirService.check_resource).
BINDING = "code-invalid"
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
    """Whether ``res_type`` is a concrete resource type the hub can store (R4 and R4B both
    define it: the 18 R4 types R4B dropped are not supported)."""
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


def _precheck(resource: Any) -> tuple[str | None, list[dict]]:
    if not isinstance(resource, dict):
        return None, [issue("error", "structure", "a resource must be a JSON object", "$this")]
    rt = resource.get("resourceType")
    if not isinstance(rt, str) or not rt:
        return None, [issue("error", "structure", "resourceType is missing", "resourceType")]
    if not known_type(rt):
        return None, [issue("error", "not-supported", f"unknown resource type '{rt}'", rt)]
    return rt, []


def structure_issues(resource: Any) -> list[dict]:
    """The structural issues of ``resource`` (empty when it is well formed)."""
    rt, issues = _precheck(resource)
    if rt is None:
        return issues
    from hub.validation.validator import default_validator

    out = []
    for i in default_validator().structure(resource):
        if i["severity"] != "error":
            continue
        if i["code"] not in ("required", "not-supported", BINDING):
            i["code"] = "structure"  # one code for every structural problem (HTTP 400)
        out.append(i)
    return out


def model_issues(resource: Any) -> list[dict]:
    """The issues fhir.resources' R4B model finds (the previous write-path check)."""
    rt, issues = _precheck(resource)
    if rt is None:
        return issues
    try:
        _model(rt).model_validate(resource)
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
        return [i for i in structure_issues(resource)] or [
            issue("error", "structure", f"{rt} cannot be parsed", rt)
        ]
    return []


def check_structure(resource: dict) -> list[dict]:
    """Raise ``OperationOutcomeError`` (400) with every issue of ``resource`` when one is
    structural; returns the codes outside a required binding (issue code :data:`BINDING`),
    which the writing site's validation policy decides."""
    issues = structure_issues(resource)
    if any(i["code"] != BINDING for i in issues):
        raise OperationOutcomeError(outcome(*issues), 400)
    return issues
