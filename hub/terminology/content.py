"""What the terminology service serves, loaded once: one source of truth for codes.

In the order a later resource with the same canonical URL replaces an earlier one:

1. the R4 core CodeSystems, ValueSets and ConceptMaps (``hub/data/fhir-r4-terminology.json.gz``, built
   from the official package by :mod:`hub.terminology.build_core`);
2. ``CodeSystem-*.json`` / ``ValueSet-*.json`` / ``ConceptMap-*.json`` under ``mappings/``
   (the national tables: GB/T 2261.1, GB/T 2261.2, GB 3304, GB/T 4761, the WS 364 value
   domains, five-colour) and under ``profiles/`` (the hub's own code systems), with the
   English designations of ``mappings/terminology/designations.yaml``;
3. the code maps (``mappings/**.yaml``, :mod:`hub.mapping`) as ConceptMaps, built by the
   service for each hub, and the site overrides;
4. the CodeSystems, ValueSets and ConceptMaps stored through the REST API.

Parts 1 and 2 never change while the hub runs and are shared between hubs.
"""

from __future__ import annotations

import dataclasses
import functools
import gc
import gzip
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import yaml

from hub.paths import DATA_DIR
from hub.paths import MAPPINGS_DIR
from hub.paths import PROFILES_DIR
from hub.terminology.model import CodeSystemIndex

CORE_FILE = DATA_DIR / "fhir-r4-terminology.json.gz"
DESIGNATIONS_FILE = "designations.yaml"
TYPES = ("CodeSystem", "ValueSet", "ConceptMap")


@dataclasses.dataclass
class Content:
    """CodeSystems (as indexes), ValueSets and ConceptMaps by canonical URL and by id."""

    code_systems: dict[str, CodeSystemIndex] = dataclasses.field(default_factory=dict)
    value_sets: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    concept_maps: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    by_id: dict[tuple[str, str], dict[str, Any]] = dataclasses.field(default_factory=dict)

    def add(self, res: dict[str, Any]) -> None:
        rt, url = res.get("resourceType"), res.get("url")
        if rt not in TYPES or not isinstance(url, str) or not url:
            return
        if rt == "CodeSystem":
            if res.get("content") == "supplement":
                return  # supplements add designations to another system; not served alone
            self.code_systems[url] = CodeSystemIndex(res)
        elif rt == "ValueSet":
            self.value_sets[url] = res
        else:
            self.concept_maps[url] = res
        if isinstance(res.get("id"), str):
            self.by_id[(rt, res["id"])] = res

    def resource(self, res_type: str, res_id: str) -> dict[str, Any] | None:
        return self.by_id.get((res_type, res_id))

    def implicit_value_sets(self) -> None:
        """A ValueSet of all codes for each CodeSystem, so ``$expand`` serves every system
        held: the one it names (``CodeSystem.valueSet``) when no file defines it, else
        ``<system url>?fhir_vs`` (the implicit value set convention of FHIR servers)."""
        for url, cs in self.code_systems.items():
            vs_url = cs.resource.get("valueSet")
            if not isinstance(vs_url, str):
                vs_url = f"{url}?fhir_vs"
            if vs_url.split("|")[0] not in self.value_sets:
                self.value_sets[vs_url.split("|")[0]] = {
                    "resourceType": "ValueSet",
                    "url": vs_url.split("|")[0],
                    "name": cs.name,
                    "title": cs.title,
                    "status": cs.resource.get("status", "active"),
                    "compose": {"include": [{"system": url}]},
                }


@functools.cache
def core_resources() -> tuple[dict[str, Any], ...]:
    """The R4 core CodeSystems, ValueSets and ConceptMaps (read once per process)."""
    with gzip.open(CORE_FILE, "rb") as fh:
        data = orjson.loads(fh.read())
    return tuple(data["codeSystems"]) + tuple(data["valueSets"]) + tuple(data["conceptMaps"])


def file_resources(folders: Iterable[Path]) -> list[dict[str, Any]]:
    """The terminology resources of the JSON files below ``folders`` (not ``sites/``)."""
    out = []
    folders = [f for f in folders if f.is_dir()]
    designations: dict[str, dict[str, str]] = {}
    for folder in folders:
        for system, names in _designations(folder / "terminology" / DESIGNATIONS_FILE).items():
            designations.setdefault(system, {}).update(names)
    for folder in folders:
        for pattern in ("CodeSystem-*.json", "ValueSet-*.json", "ConceptMap-*.json"):
            for path in sorted(folder.rglob(pattern)):
                if "sites" in path.relative_to(folder).parts:
                    continue
                res = orjson.loads(path.read_bytes())
                if isinstance(res, dict) and res.get("resourceType") in TYPES:
                    out.append(_with_designations(res, designations))
    return out


def _designations(path: Path) -> dict[str, dict[str, str]]:
    """``{system: {code: English}}``: English names of the national tables' codes."""
    if not path.is_file():
        return {}
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return {str(s): {str(c): str(v) for c, v in (codes or {}).items()} for s, codes in data.items()}


def _with_designations(res: dict[str, Any], english: dict[str, dict[str, str]]) -> dict[str, Any]:
    names = english.get(res.get("url") or "")
    if res.get("resourceType") != "CodeSystem" or not names:
        return res

    def walk(concepts):
        out = []
        for c in concepts:
            c = dict(c)
            name = names.get(c.get("code"))
            if name and not any(d.get("language") == "en" for d in c.get("designation", ())):
                c["designation"] = [*c.get("designation", ()), {"language": "en", "value": name}]
            if "concept" in c:
                c["concept"] = walk(c["concept"])
            out.append(c)
        return out

    return {**res, "concept": walk(res.get("concept") or ())}


@functools.cache
def _shared(folders: tuple[Path, ...]) -> Content:
    content = Content()
    for res in core_resources():
        content.add(res)
    for res in file_resources(folders):
        content.add(res)
    content.implicit_value_sets()
    # About a million long-lived objects: keep them out of the collector's generations, or
    # every full collection walks them (a 10,000-code expansion once took 300 ms, not 20).
    gc.collect()
    gc.freeze()
    return content


def shared_content(extra_folders: Iterable[Path] = ()) -> Content:
    """Core plus ``mappings/`` and ``profiles/`` (and ``extra_folders``), built once per set
    of folders and never changed after: every hub with the same folders shares it."""
    return _shared((MAPPINGS_DIR, PROFILES_DIR, *(Path(f) for f in extra_folders)))
