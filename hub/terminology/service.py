"""The terminology service: lookup, validate-code, expand, translate and subsumes in process.

One :class:`TerminologyService` per hub (``hub.terminology``). The REST operations
(:mod:`hub.terminology.operations`), the adapters' code look-ups
(:class:`hub.mapping.MappingContext`), the validator's binding checks (through
:mod:`hub.terminology.expansion`) and the search modifiers (``:in``, ``:not-in``,
``:below``, ``:above``) all read the same content through it.

Answers are dict lookups on indexes built once: a code system's concepts by code, a
value set's members as a set of ``(system, code)``, a ConceptMap's targets by
``(system, code)``. The stored resources are reloaded when :meth:`refresh` sees the
stored terminology change (any process's write), or at once after a write through
this process (:meth:`invalidate`, called by the write path); the caches go with them.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC
from datetime import datetime
from typing import TYPE_CHECKING
from typing import Any

from hub import outcomes
from hub.storage import terminology_store
from hub.terminology.content import Content
from hub.terminology.content import shared_content
from hub.terminology.expansion import Expander
from hub.terminology.expansion import ExpansionError
from hub.terminology.expansion import Member
from hub.terminology.maps import MapIndex
from hub.terminology.maps import concept_map
from hub.terminology.maps import site_of
from hub.terminology.model import CodeSystemIndex

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from hub.mapping import CodeMap
    from hub.sites import Site


class TerminologyService:
    """Code systems, value sets and maps of one hub, with their operations."""

    def __init__(
        self,
        engine: Engine | None = None,
        code_maps: dict[str, CodeMap] | None = None,
        sites: dict[str, Site] | None = None,
        content: Content | None = None,
        expansion_limit: int = 10_000,
    ):
        self.engine = engine
        self._base = content
        self.code_maps = code_maps or {}
        self.sites = sites or {}
        self.expansion_limit = expansion_limit
        self.maps = Content()
        for cmap in self.code_maps.values():
            self.maps.add(concept_map(cmap))
        for site in self.sites.values():
            for cmap in (getattr(site, "code_map_overrides", None) or {}).values():
                self.maps.add(concept_map(cmap, site.name))
        self._lock = threading.RLock()
        self._stamp: Any = None
        self.generation = 0  # bumped when the stored content is reloaded (caches key on it)
        self._reset(Content(), {})

    @property
    def base(self) -> Content:
        """Core, ``mappings/`` and ``profiles/`` content, loaded on first use (shared)."""
        if self._base is None:
            self._base = shared_content()
        return self._base

    # -- the stored layer ------------------------------------------------------------------

    def _reset(self, stored: Content, site_maps: dict[tuple[str, str], CodeMap]) -> None:
        self.stored = stored
        self._site_maps = site_maps
        self._expander = Expander(self.code_system, self.value_set)
        self._members: dict[str, list[Member]] = {}
        self._keys: dict[str, tuple[frozenset, frozenset]] = {}
        self._map_indexes: dict[str, MapIndex] = {}
        self._maps_by_system: dict[tuple[str | None, bool], list[str]] | None = None
        self.generation += 1

    def refresh(self) -> None:
        """Reload the stored resources if any process wrote one since the last load."""
        if self.engine is None:
            return
        stamp = terminology_store.stamp(self.engine)
        if stamp == self._stamp:
            return
        with self._lock:
            if stamp == self._stamp:
                return
            stored = Content()
            for res in terminology_store.resources(self.engine):
                stored.add(res)
            self._reset(stored, self._stored_site_maps(stored))
            self._stamp = stamp

    def invalidate(self) -> None:
        """Drop the stored layer's stamp: the next :meth:`refresh` reloads (the write path)."""
        self._stamp = None

    def _stored_site_maps(self, stored: Content) -> dict[tuple[str, str], CodeMap]:
        """Stored ConceptMaps ``urn:fhirhub:conceptmap:<map>:<site>``: site overrides.

        Each is served (``$translate``) as the site's adapter uses it: the stored entries,
        then the entries of the site's override files or the shared map the table does not
        replace, all read as codes of the table's local system."""
        out: dict[tuple[str, str], CodeMap] = {}
        for url, cm in stored.concept_maps.items():
            key = site_of(url, self.code_maps)
            if key is None:
                continue
            entries = {}
            for group in cm.get("group") or ():
                for element in group.get("element") or ():
                    for target in (element.get("target") or ())[:1]:
                        if element.get("code") and target.get("code"):
                            entries[str(element["code"])] = {
                                "code": target["code"],
                                "display": target.get("display"),
                                "system": group.get("target"),
                            }
            map_id, site_name = key
            site = self.sites.get(site_name)
            base = (getattr(site, "code_map_overrides", None) or {}).get(map_id)
            base = base or self.code_maps[map_id]
            out[key] = base.with_override({"map": entries}, f"ConceptMap/{cm.get('id')}")
            stored.concept_maps[url] = _with_rest(cm, base, entries)
        return out

    # -- resolvers -------------------------------------------------------------------------

    def code_system(self, url: str) -> CodeSystemIndex | None:
        url = url.split("|")[0]
        return self.stored.code_systems.get(url) or self.base.code_systems.get(url)

    def value_set(self, url: str) -> dict[str, Any] | None:
        url = url.split("|")[0]
        return self.stored.value_sets.get(url) or self.base.value_sets.get(url)

    def concept_map(self, url: str) -> dict[str, Any] | None:
        url = url.split("|")[0]
        return (
            self.stored.concept_maps.get(url)
            or self.maps.concept_maps.get(url)
            or self.base.concept_maps.get(url)
        )

    def resource(self, res_type: str, res_id: str) -> dict[str, Any] | None:
        """A CodeSystem, ValueSet or ConceptMap by id: stored, then code maps, then files."""
        for layer in (self.stored, self.maps, self.base):
            found = layer.resource(res_type, res_id)
            if found is not None:
                return found
        return None

    def code_systems(self) -> list[CodeSystemIndex]:
        merged = dict(self.base.code_systems)
        merged.update(self.stored.code_systems)
        return list(merged.values())

    # -- the adapters' code maps -----------------------------------------------------------

    def code_map(self, name: str, site: Site | None = None) -> CodeMap:
        """Map ``name`` as ``site`` uses it: a stored override, the site's files, the shared."""
        site_name = getattr(site, "name", None)
        if site_name is not None:
            stored = self._site_maps.get((name, site_name))
            if stored is not None:
                return stored
            overrides = getattr(site, "code_map_overrides", None) or {}
            if name in overrides:
                return overrides[name]
        try:
            return self.code_maps[name]
        except KeyError:
            raise KeyError(f"no code map {name!r}; known: {sorted(self.code_maps)}") from None

    # -- $lookup ---------------------------------------------------------------------------

    def lookup(self, system: str, code: str, properties: list[str] | None = None) -> dict:
        """``CodeSystem/$lookup``: the Parameters answer; 404 for an unknown system or code."""
        cs = self._system_or_404(system)
        concept = cs.get(code)
        if concept is None:
            raise outcomes.error(404, "not-found", f"{code!r} is not a code of {cs.url}", "code")
        params: list[dict] = [{"name": "name", "valueString": cs.name or cs.title or cs.url}]
        if cs.version:
            params.append({"name": "version", "valueString": cs.version})
        if concept.display:
            params.append({"name": "display", "valueString": concept.display})
        for d in concept.designations:
            parts = [{"name": "value", "valueString": d.get("value", "")}]
            if d.get("language"):
                parts.insert(0, {"name": "language", "valueCode": d["language"]})
            if d.get("use"):
                parts.insert(-1, {"name": "use", "valueCoding": d["use"]})
            params.append({"name": "designation", "part": parts})
        wanted = set(properties or ())
        props: list[tuple[str, dict]] = [("parent", {"valueCode": p}) for p in concept.parents]
        props += [("child", {"valueCode": c}) for c in concept.children]
        for prop in concept.properties:
            value = {k: v for k, v in prop.items() if k.startswith("value")}
            if prop.get("code") and value:
                props.append((prop["code"], value))
        for name, value in props:
            if not wanted or name in wanted:
                params.append(
                    {
                        "name": "property",
                        "part": [{"name": "code", "valueCode": name}]
                        + [{"name": "value", **value}],
                    }
                )
        return {"resourceType": "Parameters", "parameter": params}

    def _system_or_404(self, system: str) -> CodeSystemIndex:
        cs = self.code_system(system)
        if cs is None:
            raise outcomes.error(
                404, "not-found", f"the code system {system} is not known to this server", "system"
            )
        return cs

    # -- $validate-code --------------------------------------------------------------------

    def validate_in_system(self, system: str, code: str, display: str | None = None) -> dict:
        """``CodeSystem/$validate-code``: ``{result, message?, display?}``."""
        cs = self._system_or_404(system)
        concept = cs.get(code)
        if concept is None:
            why = "" if cs.complete else f" (this server holds a {cs.content} of it)"
            return {"result": False, "message": f"{code!r} is not a code of {cs.url}{why}"}
        return _display_verdict(concept.display, concept.designations, display, code)

    def validate_in_value_set(
        self, url: str, system: str | None, code: str, display: str | None = None
    ) -> dict:
        """``ValueSet/$validate-code`` against the value set at ``url`` (or stored id)."""
        pairs, codes = self.value_set_keys(url)
        found = (system, code) in pairs if system else code in codes
        if not found:
            shown = f"{system}#{code}" if system else code
            return {"result": False, "message": f"the code {shown} is not in the value set {url}"}
        concept = None
        if system:
            cs = self.code_system(system)
            concept = cs.get(code) if cs else None
        if concept is None:
            return {"result": True}
        return _display_verdict(concept.display, concept.designations, display, code)

    def value_set_keys(self, url: str) -> tuple[frozenset, frozenset]:
        """``({(system, code)}, {code})`` of a value set's expansion, kept once computed."""
        url = url.split("|")[0]
        got = self._keys.get(url)
        if got is None:
            members = self.members(url)
            got = (
                frozenset((m.system, m.code) for m in members),
                frozenset(m.code for m in members),
            )
            self._keys[url] = got
        return got

    # -- $expand ---------------------------------------------------------------------------

    def members(self, url: str) -> list[Member]:
        """The whole expansion of the value set at ``url`` (kept; 4xx when it cannot be)."""
        url = url.split("|")[0]
        got = self._members.get(url)
        if got is None:
            if self.value_set(url) is None:
                raise outcomes.error(
                    404, "not-found", f"the value set {url} is not known to this server", "url"
                )
            got = self._expand_or_4xx(lambda: self._expander.members_of(url))
            self._members[url] = got
        return got

    def _expand_or_4xx(self, run) -> list[Member]:
        try:
            return run()
        except ExpansionError as exc:
            status = {"not-found": 404, "invalid": 400}.get(exc.code, 422)
            raise outcomes.error(status, exc.code, str(exc)) from None

    def expand(
        self,
        url: str | None = None,
        value_set: dict[str, Any] | None = None,
        text: str | None = None,
        count: int | None = None,
        offset: int = 0,
        include_designations: bool = False,
        display_language: str | None = None,
    ) -> dict[str, Any]:
        """``ValueSet/$expand``: the value set with its ``expansion`` (paged by ``count`` and
        ``offset``; ``text`` keeps the codes whose code, display or a designation holds it)."""
        if value_set is None:
            if not url:
                raise outcomes.bad_request("$expand needs url or a valueSet", "url")
            members = self.members(url)
            value_set = self.value_set(url) or {}
        else:
            members = self._expand_or_4xx(lambda: self._expander.members(value_set))
        if text:
            needle = text.lower()
            members = [m for m in members if needle in m.text]
        total = len(members)
        if count is None and total > self.expansion_limit:
            raise outcomes.error(
                422,
                "too-costly",
                f"the expansion has {total} codes, more than {self.expansion_limit}:"
                " page it with count and offset, or narrow it with filter",
            )
        page = members[offset : offset + count] if count is not None else members[offset:]
        parameters: list[dict] = []
        if text:
            parameters.append({"name": "filter", "valueString": text})
        if count is not None:
            parameters.append({"name": "count", "valueInteger": count})
        if offset:
            parameters.append({"name": "offset", "valueInteger": offset})
        expansion: dict[str, Any] = {
            "identifier": f"urn:uuid:{uuid.uuid4()}",
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "total": total,
            "offset": offset,
        }
        if parameters:
            expansion["parameter"] = parameters
        expansion["contains"] = [_contains(m, include_designations, display_language) for m in page]
        out = {k: v for k, v in value_set.items() if k not in ("compose", "expansion", "text")}
        out["resourceType"] = "ValueSet"
        out["expansion"] = expansion
        return out

    # -- $subsumes -------------------------------------------------------------------------

    def subsumes(self, system: str, code_a: str, code_b: str) -> str:
        cs = self._system_or_404(system)
        for name, code in (("codeA", code_a), ("codeB", code_b)):
            if cs.get(code) is None:
                raise outcomes.error(404, "not-found", f"{code!r} is not a code of {cs.url}", name)
        return cs.subsumes(cs.get(code_a).code, cs.get(code_b).code)

    # -- $translate ------------------------------------------------------------------------

    def map_index(self, url: str) -> MapIndex:
        url = url.split("|")[0]
        got = self._map_indexes.get(url)
        if got is None:
            cm = self.concept_map(url)
            if cm is None:
                raise outcomes.error(
                    404, "not-found", f"the concept map {url} is not known to this server", "url"
                )
            got = self._map_indexes[url] = MapIndex(cm)
        return got

    def translate(
        self,
        code: str,
        system: str | None = None,
        url: str | None = None,
        target_system: str | None = None,
        reverse: bool = False,
    ) -> list[dict[str, Any]]:
        """The matches of ``system#code`` in the map at ``url`` or, without one, in every
        map from ``system`` (to ``target_system``); ``reverse`` reads the maps backwards."""
        if url:
            indexes = [self.map_index(url)]
        else:
            if not system:
                raise outcomes.bad_request("$translate needs url or system", "system")
            indexes = [self.map_index(u) for u in self._maps_from(system, reverse)]
        out: list[dict[str, Any]] = []
        for index in indexes:
            for match in index.translate(system, code, reverse):
                if target_system and match["concept"].get("system") != target_system:
                    continue
                out.append(self._with_display(match))
        return out

    def _with_display(self, match: dict[str, Any]) -> dict[str, Any]:
        """The match with its concept's display from the code system when the map has none."""
        concept = match["concept"]
        if "display" in concept or not concept.get("system"):
            return match
        cs = self.code_system(concept["system"])
        found = cs.get(concept["code"]) if cs is not None else None
        if found is None or not found.display:
            return match
        return {**match, "concept": {**concept, "display": found.display}}

    def _maps_from(self, system: str, reverse: bool) -> list[str]:
        if self._maps_by_system is None:
            by: dict[tuple[str | None, bool], list[str]] = {}
            urls = {**self.base.concept_maps, **self.maps.concept_maps, **self.stored.concept_maps}
            for url in urls:
                index = self.map_index(url)
                for s in index.sources:
                    by.setdefault((s, False), []).append(url)
                for t in index.targets:
                    by.setdefault((t, True), []).append(url)
            self._maps_by_system = by
        return self._maps_by_system.get((system, reverse), [])


def _with_rest(cm: dict[str, Any], base: CodeMap, entries: dict[str, Any]) -> dict[str, Any]:
    """A site table's ConceptMap with the entries of ``base`` it does not replace."""
    source = next(
        (g.get("source") for g in cm.get("group") or () if g.get("source")), cm.get("sourceUri")
    )
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for code, t in base.entries.items():
        if code in entries:
            continue
        target = {"code": t.code, "equivalence": "equivalent"}
        if t.display:
            target["display"] = t.display
        groups.setdefault(t.system or base.target, []).append({"code": code, "target": [target]})
    if not groups:
        return cm
    extra = [
        {k: v for k, v in (("source", source), ("target", t), ("element", els)) if v}
        for t, els in groups.items()
    ]
    return {**cm, "group": [*(cm.get("group") or ()), *extra]}


def _display_verdict(
    shown: str | None, designations: list[dict], display: str | None, code: str
) -> dict:
    out: dict[str, Any] = {"result": True}
    if shown:
        out["display"] = shown
    if display is not None and shown is not None:
        known = {shown, *(d.get("value") for d in designations)}
        if display not in known:
            out["result"] = False
            out["message"] = f"{display!r} is not a display of {code!r} (it is {shown!r})"
    return out


def _contains(m: Member, designations: bool, language: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if m.system:
        out["system"] = m.system
    if m.version:
        out["version"] = m.version
    out["code"] = m.code
    display = m.display
    if language:
        # displayLanguage=en: the English designation of a Chinese code, when it has one
        display = next(
            (
                d["value"]
                for d in m.designations or ()
                if str(d.get("language", "")).split("-")[0] == language.split("-")[0]
                and d.get("value")
            ),
            display,
        )
    if display:
        out["display"] = display
    if designations and m.designations:
        out["designation"] = m.designations
    return out
