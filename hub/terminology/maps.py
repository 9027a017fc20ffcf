"""ConceptMaps: the code maps as resources, and the dicts ``$translate`` answers from.

A code map (``mappings/**.yaml``, :class:`hub.mapping.CodeMap`) becomes the
ConceptMap ``urn:fhirhub:conceptmap:<id>``; a site's override of it (files in the
site's ``code_maps`` folder, or a table loaded by ``hub terminology load``) the
ConceptMap ``urn:fhirhub:conceptmap:<id>:<site>``. :class:`MapIndex` holds one
ConceptMap both ways as dicts, so a translation is a dict lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Any

if TYPE_CHECKING:
    from hub.mapping import CodeMap

PREFIX = "urn:fhirhub:conceptmap:"


def map_url(map_id: str, site: str | None = None) -> str:
    return f"{PREFIX}{map_id}:{site}" if site else f"{PREFIX}{map_id}"


def site_of(url: str, map_ids) -> tuple[str, str] | None:
    """``(map id, site)`` of a site override's ConceptMap url, else ``None``."""
    if not url.startswith(PREFIX):
        return None
    map_id, _, site = url[len(PREFIX) :].rpartition(":")
    return (map_id, site) if map_id in map_ids and site else None


def concept_map(cmap: CodeMap, site: str | None = None) -> dict[str, Any]:
    """The ConceptMap of a code map (a site's override when ``site`` is given)."""
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for code, t in cmap.entries.items():
        target = {"code": t.code, "equivalence": "equivalent"}
        if t.display:
            target["display"] = t.display
        groups.setdefault(t.system or cmap.target, []).append({"code": code, "target": [target]})
    if not groups:
        groups[cmap.target] = []
    out_groups = []
    for system, elements in groups.items():
        group: dict[str, Any] = {"source": cmap.source, "target": system, "element": elements}
        if cmap.unmapped == "pass-through":
            group["unmapped"] = {"mode": "provided"}
        out_groups.append({k: v for k, v in group.items() if v is not None})
    res_id = f"{cmap.id}.{site}" if site else cmap.id
    return {
        "resourceType": "ConceptMap",
        "id": res_id[:64],
        "url": map_url(cmap.id, site),
        "name": cmap.id.replace("-", "_"),
        "status": "active",
        **({"sourceUri": cmap.source} if cmap.source else {}),
        **({"targetUri": cmap.target} if cmap.target else {}),
        "group": out_groups,
    }


class MapIndex:
    """One ConceptMap as dicts: ``(system, code)`` -> matches, forwards and in reverse."""

    def __init__(self, cm: dict[str, Any]):
        self.url: str = cm.get("url") or ""
        self.resource = cm
        self.forward: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
        self.reverse: dict[tuple[str | None, str], list[dict[str, Any]]] = {}
        self.sources: set[str | None] = set()
        self.targets: set[str | None] = set()
        self.provided: set[str | None] = set()  # groups whose unmapped codes map to themselves
        for group in cm.get("group") or ():
            if not isinstance(group, dict):
                continue
            src, tgt = group.get("source"), group.get("target")
            self.sources.add(src)
            self.targets.add(tgt)
            if (group.get("unmapped") or {}).get("mode") == "provided":
                self.provided.add(src)
            for element in group.get("element") or ():
                code = element.get("code")
                if not isinstance(code, str):
                    continue
                for target in element.get("target") or ():
                    eq = target.get("equivalence", "equivalent")
                    if isinstance(target.get("code"), str):
                        match = _match(eq, tgt, target["code"], target.get("display"), self.url)
                        for key in ((src, code), (None, code)):
                            self.forward.setdefault(key, []).append(match)
                        back = _match(eq, src, code, element.get("display"), self.url)
                        for key in ((tgt, target["code"]), (None, target["code"])):
                            self.reverse.setdefault(key, []).append(back)

    def translate(self, system: str | None, code: str, reverse: bool = False) -> list[dict]:
        table = self.reverse if reverse else self.forward
        found = table.get((system, code))
        if found is None and not reverse and (system in self.provided or None in self.provided):
            return [_match("equal", system, code, None, self.url)]
        return found or []


def _match(eq: str, system: str | None, code: str, display: str | None, url: str) -> dict:
    concept = {"system": system, "code": code, "display": display}
    return {
        "equivalence": eq,
        "concept": {k: v for k, v in concept.items() if v},
        "source": url,
    }
