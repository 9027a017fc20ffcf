"""The search parameters the hub knows: the official R4 set plus custom ones.

``SearchRegistry.load()`` is cheap (the official Bundle is parsed once per
process); FHIRPath extractors are compiled lazily, once per (type, parameter),
the first time a resource of that type is indexed.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field

from hub.search.data import official_search_parameters
from hub.search.data import resource_types
from hub.search.fhirpath import Extractor
from hub.search.fhirpath import compile_extractor
from hub.search.fhirpath import terms_for

# Modifiers the engine supports, per parameter type (also advertised in the
# CapabilityStatement). ``:[type]`` on references is implied by ``target``.
MODIFIERS: dict[str, tuple[str, ...]] = {
    "string": ("missing", "exact", "contains"),
    "token": ("missing", "not", "text", "in", "not-in", "of-type", "above", "below"),
    "reference": ("missing", "identifier", "type"),
    "date": ("missing",),
    "number": ("missing",),
    "quantity": ("missing",),
    "uri": ("missing", "above", "below"),
    "composite": ("missing",),
    "special": (),
}

# Parameters answered from the resource table itself, not from index rows.
RESOURCE_COLUMNS = {"_id", "_lastUpdated"}

# Types that are not DomainResources (no text/contained/extension).
_NOT_DOMAIN = {"Bundle", "Binary", "Parameters"}


@dataclass(frozen=True)
class Component:
    definition: str
    expression: str


@dataclass
class SearchParam:
    """One search parameter as it applies to the types in ``base``."""

    code: str
    type: str
    url: str
    expression: str | None
    base: tuple[str, ...]
    target: tuple[str, ...] = ()
    components: tuple[Component, ...] = ()
    description: str = ""
    name: str = ""
    _extractors: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def modifiers(self) -> tuple[str, ...]:
        return MODIFIERS.get(self.type, ())

    @property
    def documentation(self) -> str:
        return self.description

    def extractor(self, res_type: str) -> Extractor:
        """The compiled extractor of this parameter for ``res_type`` (cached)."""
        ex = self._extractors.get(res_type)
        if ex is None:
            ex = self._extractors[res_type] = compile_extractor(self.expression, res_type)
        return ex

    def applies_to(self, res_type: str) -> bool:
        return bool(self.expression) and bool(terms_for(self.expression, res_type))

    @classmethod
    def from_resource(cls, sp: dict) -> SearchParam:
        return cls(
            code=sp["code"],
            type=sp.get("type", "special"),
            url=sp.get("url", ""),
            expression=sp.get("expression"),
            base=tuple(sp.get("base", ())),
            target=tuple(sp.get("target", ())),
            components=tuple(
                Component(c.get("definition", ""), c.get("expression", ""))
                for c in sp.get("component", ())
            ),
            description=sp.get("description", ""),
            name=sp.get("name", sp["code"]),
        )


@functools.cache
def _official() -> tuple[SearchParam, ...]:
    return tuple(SearchParam.from_resource(sp) for sp in official_search_parameters())


class SearchRegistry:
    """Parameters by resource type and by canonical URL."""

    def __init__(self, params: Iterable[SearchParam]):
        self._by_type: dict[str, dict[str, SearchParam]] = {}
        self._common: dict[str, SearchParam] = {}
        self._domain: dict[str, SearchParam] = {}
        self.by_url: dict[str, SearchParam] = {}
        for p in params:
            self.by_url[p.url] = p
            for base in p.base:
                if base == "Resource":
                    self._common[p.code] = p
                elif base == "DomainResource":
                    self._domain[p.code] = p
                else:
                    self._by_type.setdefault(base, {})[p.code] = p
        self._cache: dict[str, dict[str, SearchParam]] = {}

    @classmethod
    def load(cls, extra_params: Iterable[dict] = ()) -> SearchRegistry:
        """The official R4 parameters plus custom ``SearchParameter`` resources.

        A custom parameter with the code of an official one for the same base
        replaces it (how a site redefines, say, ``identifier``).
        """
        params = list(_official())
        for sp in extra_params:
            if sp.get("status") == "retired" or not sp.get("code"):
                continue
            params.append(SearchParam.from_resource(sp))
        return cls(params)

    def params_for(self, res_type: str | None) -> dict[str, SearchParam]:
        """Every parameter that applies to ``res_type`` (``None``: system level)."""
        key = res_type or ""
        got = self._cache.get(key)
        if got is not None:
            return got
        got = dict(self._common)
        if res_type:
            if res_type not in _NOT_DOMAIN:
                got.update(self._domain)
            got.update(self._by_type.get(res_type, {}))
        self._cache[key] = got
        return got

    def get(self, res_type: str | None, code: str) -> SearchParam | None:
        return self.params_for(res_type).get(code)

    def all_types(self) -> list[str]:
        """Every resource type the hub can search (R4 types plus custom bases)."""
        types = set(resource_types()) | set(self._by_type)
        return sorted(types)

    def is_type(self, name: str) -> bool:
        return name in self._types_set

    @functools.cached_property
    def _types_set(self) -> frozenset[str]:
        return frozenset(self.all_types())

    def indexed_params(self, res_type: str) -> list[SearchParam]:
        """Parameters to index for ``res_type`` (those with an expression for it)."""
        key = "#" + res_type
        got = self._cache.get(key)
        if got is None:
            got = [
                p
                for code, p in self.params_for(res_type).items()
                if code not in RESOURCE_COLUMNS and p.type != "special" and p.applies_to(res_type)
            ]
            self._cache[key] = got  # type: ignore[assignment]
        return got  # type: ignore[return-value]


def stored_search_parameters(conn) -> list[dict]:
    """The SearchParameter resources stored in the hub (custom parameters).

    Pass them to :meth:`SearchRegistry.load`; they take effect for searches at
    once and for existing resources after :func:`hub.search.reindex.reindex`.
    """
    import orjson
    import sqlalchemy as sa

    from hub.storage.schema import resource

    rows = conn.execute(
        sa.select(resource.c.content).where(
            resource.c.res_type == "SearchParameter", resource.c.deleted == sa.false()
        )
    )
    out = []
    for (content,) in rows:
        sp = orjson.loads(content)
        if sp.get("status") != "retired" and sp.get("code") and sp.get("base"):
            out.append(sp)
    return out
