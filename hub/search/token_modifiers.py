"""The token modifiers the terminology service answers: ``:in``, ``:not-in``, ``:below``,
``:above``.

The search engine asks here first and keeps its own reading of the stored resources
(``_valueset_members``, ``_codesystem_parents``) only for what the service cannot
answer (a value set it cannot expand, such as one including all of LOINC). The
service's expansions are cached and dropped when a CodeSystem or ValueSet is written
(through this process's write path, or any process's: its stamp check), so a search
costs one dict lookup per value set after the first.
"""

from __future__ import annotations

from typing import Any

from hub.outcomes import OperationOutcomeError


def _service(engine: Any):
    service = getattr(engine, "terminology", None)
    if service is not None:
        service.refresh()
    return service


def value_set_members(engine: Any, url: str) -> tuple[list, list] | None:
    """``([(system, code)], [])`` of the value set ``url`` (or ``ValueSet/<id>``), or
    ``None`` when the terminology service cannot expand it."""
    service = _service(engine)
    if service is None:
        return None
    if url.startswith("ValueSet/"):
        res = service.resource("ValueSet", url.split("/", 1)[1])
        if res is None or not res.get("url"):
            return None
        url = res["url"]
    try:
        pairs, _ = service.value_set_keys(url)
    except OperationOutcomeError:
        return None
    return sorted(pairs, key=lambda p: (p[0] or "", p[1])), []


def related_codes(engine: Any, system: str, code: str, modifier: str) -> set[str] | None:
    """``:below``: ``code`` and its descendants; ``:above``: it and its ancestors, in the
    code system ``system`` as the terminology service holds it (``None``: not held)."""
    service = _service(engine)
    cs = service.code_system(system) if service is not None else None
    if cs is None or not cs.concepts:
        return None
    if cs.get(code) is None:
        return set()
    code = cs.get(code).code
    related = cs.ancestors(code) if modifier == "above" else cs.descendants(code)
    return {code, *related}
