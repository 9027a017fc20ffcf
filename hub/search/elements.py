"""``_summary`` and ``_elements``: subsets of a resource (also used on read).

Summary flags come from the official R4 StructureDefinitions (top-level
elements with ``isSummary``), extracted into ``hub/data/structure.r4.json``.
Subsetted resources are tagged ``SUBSETTED`` as the specification requires.
"""

from __future__ import annotations

from hub.search.data import structure

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "Resource encoded in summary mode",
}
_ALWAYS = ("resourceType", "id", "meta")


def _keep(resource: dict, names: set[str], choices: list[str]) -> dict:
    out = {}
    for key, value in resource.items():
        base = key[1:] if key.startswith("_") else key  # primitive extensions
        if base in names or key in _ALWAYS:
            out[key] = value
            continue
        for c in choices:
            if base.startswith(c) and base[len(c) : len(c) + 1].isupper() and c in names:
                out[key] = value
                break
    return out


def _tag(resource: dict) -> dict:
    meta = dict(resource.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" for t in tags):
        tags.append(SUBSETTED)
    meta["tag"] = tags
    resource["meta"] = meta
    return resource


def apply_summary(resource: dict, mode: str) -> dict:
    """The resource in ``_summary`` mode ``true``, ``text``, ``data`` or ``false``."""
    if mode in ("false", None):
        return resource
    info = structure(resource.get("resourceType", "")) or {
        "summary": [],
        "mandatory": [],
        "choice": [],
    }
    if mode == "data":
        out = {k: v for k, v in resource.items() if k != "text"}
    elif mode == "text":
        out = _keep(resource, {"text", *info["mandatory"]}, info["choice"])
    elif mode == "true":
        out = _keep(resource, set(info["summary"]), info["choice"])
    else:
        return resource
    return _tag(out)


def apply_elements(resource: dict, elements) -> dict:
    """Only the requested top-level ``elements`` (plus id, meta and mandatory ones)."""
    info = structure(resource.get("resourceType", "")) or {"mandatory": [], "choice": []}
    names = set()
    for e in elements:
        e = e.strip()
        if "." in e:  # Patient.name -> name
            e = e.split(".", 1)[1].split(".", 1)[0]
        names.add(e)
    names.update(info["mandatory"])
    return _tag(_keep(resource, names, info["choice"]))
