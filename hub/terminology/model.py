"""Code systems as indexes: one dict lookup per code, the hierarchy both ways.

A :class:`CodeSystemIndex` is built once from a CodeSystem resource and never
changes; ``$lookup``, ``$validate-code``, ``$subsumes``, expansion filters and the
search modifiers read it. The hierarchy is the nesting of ``concept`` plus the
``parent``/``child``/``subsumedBy`` concept properties some R4 systems use instead.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_PARENT_PROPERTIES = ("parent", "subsumedBy")


@dataclasses.dataclass(slots=True)
class Concept:
    code: str
    display: str | None
    designations: list[dict[str, Any]]
    properties: list[dict[str, Any]]
    parents: list[str]
    children: list[str]
    # What a text filter matches: code, display and designations, lower-cased once.
    text: str = ""


class CodeSystemIndex:
    """One CodeSystem: ``concepts`` by code, in the order the resource lists them."""

    def __init__(self, resource: dict[str, Any]):
        self.resource = resource
        self.url: str = resource.get("url") or ""
        self.version: str | None = resource.get("version")
        self.name: str | None = resource.get("name")
        self.title: str | None = resource.get("title")
        self.content: str = resource.get("content") or "complete"
        self.case_sensitive: bool = resource.get("caseSensitive", True) is not False
        self.concepts: dict[str, Concept] = {}
        self._folded: dict[str, str] = {}
        self._below: dict[str, frozenset[str]] = {}
        self._walk(resource.get("concept") or (), None)
        for concept in self.concepts.values():
            for prop in concept.properties:
                if prop.get("code") in _PARENT_PROPERTIES and "valueCode" in prop:
                    self._link(prop["valueCode"], concept.code)
                elif prop.get("code") == "child" and "valueCode" in prop:
                    self._link(concept.code, prop["valueCode"])
        if not self.case_sensitive:
            self._folded = {code.lower(): code for code in self.concepts}

    def _walk(self, concepts, parent: str | None) -> None:
        for c in concepts:
            if not isinstance(c, dict) or not isinstance(c.get("code"), str):
                continue
            code = c["code"]
            concept = self.concepts.get(code)
            if concept is None:
                display = c.get("display")
                designations = [d for d in c.get("designation") or () if isinstance(d, dict)]
                words = [code, display or ""] + [d.get("value") or "" for d in designations]
                concept = Concept(
                    code,
                    display,
                    designations,
                    [p for p in c.get("property") or () if isinstance(p, dict)],
                    [],
                    [],
                    " ".join(words).lower(),
                )
                self.concepts[code] = concept
            if parent is not None:
                self._link(parent, code)
            self._walk(c.get("concept") or (), code)

    def _link(self, parent: str, child: str) -> None:
        if parent not in self.concepts or child not in self.concepts or parent == child:
            return
        if child not in self.concepts[parent].children:
            self.concepts[parent].children.append(child)
        if parent not in self.concepts[child].parents:
            self.concepts[child].parents.append(parent)

    @property
    def complete(self) -> bool:
        """True when the resource lists every code (a code it lacks is not a code)."""
        return self.content == "complete"

    @property
    def hierarchical(self) -> bool:
        return any(c.children for c in self.concepts.values())

    def get(self, code: str) -> Concept | None:
        found = self.concepts.get(code)
        if found is None and self._folded:
            canonical = self._folded.get(code.lower())
            found = self.concepts.get(canonical) if canonical else None
        return found

    def descendants(self, code: str) -> frozenset[str]:
        """The codes below ``code`` (not itself); kept once computed."""
        got = self._below.get(code)
        if got is not None:
            return got
        out: set[str] = set()
        stack = list(self.concepts[code].children) if code in self.concepts else []
        while stack:
            c = stack.pop()
            if c not in out:
                out.add(c)
                stack.extend(self.concepts[c].children)
        got = frozenset(out)
        self._below[code] = got
        return got

    def ancestors(self, code: str) -> frozenset[str]:
        out: set[str] = set()
        stack = list(self.concepts[code].parents) if code in self.concepts else []
        while stack:
            c = stack.pop()
            if c not in out:
                out.add(c)
                stack.extend(self.concepts[c].parents)
        return frozenset(out)

    def subsumes(self, a: str, b: str) -> str:
        """The R4 ``$subsumes`` outcome of code ``a`` against code ``b``."""
        if a == b:
            return "equivalent"
        if b in self.descendants(a):
            return "subsumes"
        if a in self.descendants(b):
            return "subsumed-by"
        return "not-subsumed"

    def property_value(self, concept: Concept, name: str) -> list[str]:
        """The values of property ``name`` of ``concept`` as strings (for ``=`` filters)."""
        out = []
        for prop in concept.properties:
            if prop.get("code") == name:
                for key, value in prop.items():
                    if key.startswith("value"):
                        out.append(str(value).lower() if isinstance(value, bool) else str(value))
        return out
