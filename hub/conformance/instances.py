"""A minimal instance of any R4 resource type, from its StructureDefinition.

``hub conformance check-endpoint`` makes hand-written, realistic resources of
a few types (``hub.conformance.endpoint.GENERATORS``); for every other type it
uses :func:`minimal_instance`: the type's required elements (``min > 0``),
recursively, each given a plain value of its first type (the first code of a
required binding's ValueSet for codes), and ``language`` as the element the
update and patch checks change. Invariants beyond cardinality are not
considered, so a server may refuse some of these; the kit then only probes
the type.
"""

from __future__ import annotations

from typing import Any

CHECK_SYSTEM = "urn:fhirhub:conformance-check"
MIME_TYPES = "http://hl7.org/fhir/ValueSet/mimetypes"
# Values of the primitive types.
PRIMITIVES: dict[str, Any] = {
    "boolean": True,
    "integer": 1,
    "positiveInt": 1,
    "unsignedInt": 1,
    "decimal": 1,
    "date": "2024-03-01",
    "dateTime": "2024-03-01T08:00:00+08:00",
    "instant": "2024-03-01T08:00:00+08:00",
    "time": "08:00:00",
    "uri": "urn:fhirhub:check",
    "url": "http://example.org/check",
    "canonical": "http://example.org/check",
    "oid": "urn:oid:1.2.3",
    "uuid": "urn:uuid:2c1d8a3e-8a8f-4d5e-9a3b-1f2e3d4c5b6a",
    "id": "check",
    "base64Binary": "Y2hlY2s=",
    "string": "check",
    "markdown": "check",
    "xhtml": '<div xmlns="http://www.w3.org/1999/xhtml">check</div>',
}
# Complex types whose required elements alone would be empty: a fixed small value.
COMPLEX: dict[str, Any] = {
    "Reference": {"display": "check"},
    "CodeableConcept": {"text": "check"},
    "Coding": {"system": "urn:fhirhub:check", "code": "check"},
    "Identifier": {"system": CHECK_SYSTEM, "value": "check"},
    "Period": {"start": "2024-03-01T08:00:00+08:00"},
    "Quantity": {"value": 1},
    "SimpleQuantity": {"value": 1},
    "Duration": {"value": 1, "unit": "min", "system": "http://unitsofmeasure.org", "code": "min"},
    "Age": {"value": 1, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"},
    "Count": {"value": 1, "system": "http://unitsofmeasure.org", "code": "1"},
    "Distance": {"value": 1, "unit": "m", "system": "http://unitsofmeasure.org", "code": "m"},
    "Money": {"value": 1, "currency": "CNY"},
    "Range": {"low": {"value": 1}},
    "Ratio": {"numerator": {"value": 1}, "denominator": {"value": 1}},
    "Attachment": {"title": "check"},
    "Annotation": {"text": "check"},
    "HumanName": {"text": "check"},
    "Address": {"text": "check"},
    "ContactPoint": {"system": "phone", "value": "0"},
    "Timing": {"event": ["2024-03-01T08:00:00+08:00"]},
    "Signature": None,  # needs a who, a when and a type: left to the type's own rules
    "Meta": None,
    "Narrative": None,
    "Extension": None,
    "Resource": None,
}


def minimal_instance(res_type: str, run: str) -> dict[str, Any] | None:
    """``{"resourceType": res_type, ...}`` with every required element, or None when the type
    is unknown or an element cannot be made."""
    from hub.validation.definitions import default_definitions

    defs = default_definitions()
    sd = defs.type_structure(res_type)
    if sd is None or sd.get("kind") != "resource":
        return None
    elements = sd["snapshot"]["element"]
    try:
        body = _children(elements, res_type, defs, depth=0)
    except _CannotMake:
        return None
    out = {"resourceType": res_type, **body, "language": "en"}
    identifier = next((e for e in elements if e["path"] == f"{res_type}.identifier"), None)
    if identifier is not None and "identifier" not in out:
        value = {"system": CHECK_SYSTEM, "value": f"{run}-{res_type}"}
        out["identifier"] = value if identifier.get("max") == "1" else [value]
    return out


class _CannotMake(Exception):
    pass


def _children(elements: list[dict], parent: str, defs: Any, depth: int) -> dict[str, Any]:
    if depth > 6:
        raise _CannotMake(parent)
    out: dict[str, Any] = {}
    for el in elements:
        path = el["path"]
        if not path.startswith(parent + ".") or "." in path[len(parent) + 1 :]:
            continue
        if el.get("min", 0) < 1 or el.get("max") == "0":
            continue
        name = path.rsplit(".", 1)[1]
        value, type_code = _value(el, elements, defs, depth)
        if name.endswith("[x]"):
            name = name[:-3] + type_code[:1].upper() + type_code[1:]
        out[name] = [value] if el.get("max") != "1" else value
    return out


def _value(el: dict, elements: list[dict], defs: Any, depth: int) -> tuple[Any, str]:
    if "contentReference" in el or not el.get("type"):
        raise _CannotMake(el["path"])
    type_code = el["type"][0]["code"]
    if type_code in ("BackboneElement", "Element"):
        inner = _children(elements, el["path"], defs, depth + 1)
        if not inner:
            raise _CannotMake(el["path"])
        return inner, type_code
    if type_code == "code" or (type_code in ("Coding", "CodeableConcept") and _bound(el)):
        system, code = _first_code(el, defs)
        if type_code == "code":
            return code, type_code
        coding = {"system": system, "code": code} if system else {"code": code}
        return (coding if type_code == "Coding" else {"coding": [coding]}), type_code
    if type_code in PRIMITIVES:
        return PRIMITIVES[type_code], type_code
    if type_code in COMPLEX:
        if COMPLEX[type_code] is None:
            raise _CannotMake(el["path"])
        return dict(COMPLEX[type_code]), type_code
    sd = defs.type_structure(type_code)
    if sd is None:
        raise _CannotMake(el["path"])
    inner = _children(sd["snapshot"]["element"], type_code, defs, depth + 1)
    if not inner:
        raise _CannotMake(el["path"])
    return inner, type_code


def _bound(el: dict) -> bool:
    return (el.get("binding") or {}).get("strength") == "required"


def _first_code(el: dict, defs: Any) -> tuple[str | None, str]:
    binding = el.get("binding") or {}
    url = binding.get("valueSet")
    if url and url.split("|")[0] == MIME_TYPES:  # a grammar, not a list of codes
        return None, "application/fhir+json"
    expansion = defs.expansion(url) if url and binding.get("strength") == "required" else None
    for system, codes in sorted((expansion or {}).items()):
        if codes:
            return system, sorted(codes)[0]
    if binding.get("strength") == "required":
        raise _CannotMake(el["path"])
    return None, "check"
