"""The conformance resources the validator works from.

Three sources, loaded in this order (a later definition with the same canonical URL replaces an
earlier one):

1. the official R4 core extract shipped in ``hub/data/fhir-r4-core.json.gz`` (built by
   :mod:`hub.validation.build_data`; CC0 HL7 content): StructureDefinitions with snapshots,
   ValueSet expansions, the code lists of CodeSystems held in full;
2. every FHIR package folder under ``profiles/`` (a folder with ``package.json`` and
   ``StructureDefinition-*.json``, ``ValueSet-*.json``, ``CodeSystem-*.json`` files);
3. resources that plugins register (:meth:`Definitions.add`).

StructureDefinitions without a snapshot get one from :mod:`hub.validation.snapshot` the first
time they are asked for.
"""

from __future__ import annotations

import functools
import gzip
import logging
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from hub.paths import DATA_DIR
from hub.paths import MAPPINGS_DIR
from hub.paths import PROFILES_DIR
from hub.terminology.content import shared_content
from hub.validation.terminology import Terminology
from hub.validation.terminology import all_codes

log = logging.getLogger("hub.validation")

CORE_FILE = DATA_DIR / "fhir-r4-core.json.gz"
FHIR_SD_BASE = "http://hl7.org/fhir/StructureDefinition/"


@functools.lru_cache(maxsize=1)
def _core() -> dict:
    with gzip.open(CORE_FILE, "rb") as fh:
        return orjson.loads(fh.read())


class Definitions:
    """StructureDefinitions, ValueSets and CodeSystems by canonical URL.

    Create one with :meth:`default` (core + ``profiles/``); it is safe to share between threads
    once loaded (snapshots are generated under a lock).
    """

    def __init__(self, core: bool = True):
        self._sds: dict[str, dict] = {}
        self._snapshots: dict[str, dict] = {}
        self._value_sets: dict[str, dict] = {}  # resources added after the core
        self._code_systems: dict[str, dict] = {}
        self._expansions: dict[str, dict | None] = {}
        self._held_codes: dict[str, frozenset] = {}
        self._lock = threading.RLock()
        self.version = 0  # bumped by add(): validators drop the trees they built before
        if core:
            data = _core()
            for sd in data["structureDefinitions"]:
                self._sds[sd["url"]] = sd
                self._snapshots[sd["url"]] = sd
            self._expansions.update(data["valueSets"])
            self._core_codes = data["codeSystems"]
        else:
            self._core_codes = {}

    # -- loading -----------------------------------------------------------------------------

    @classmethod
    def default(
        cls,
        profile_dirs: Iterable[Path] | None = None,
        extra: Iterable[dict] = (),
        terminology_dirs: Iterable[Path] | None = None,
    ):
        """Core definitions, every package under ``profile_dirs`` (``profiles/``), the
        ``CodeSystem-*.json``/``ValueSet-*.json`` files under ``terminology_dirs``
        (``mappings/``, e.g. the five-colour CodeSystem) and ``extra``."""
        defs = cls()
        for folder in [MAPPINGS_DIR] if terminology_dirs is None else terminology_dirs:
            defs.load_folder(Path(folder), patterns=("CodeSystem-*.json", "ValueSet-*.json"))
        for folder in [PROFILES_DIR] if profile_dirs is None else profile_dirs:
            defs.load_folder(Path(folder))
        for res in extra:
            defs.add(res)
        return defs

    def load_folder(self, folder: Path, patterns: tuple[str, ...] = ("*.json",)) -> int:
        """Load every conformance resource of the FHIR packages in ``folder`` (recursively)."""
        count = 0
        if not folder.is_dir():
            return 0
        paths = sorted({p for pattern in patterns for p in folder.rglob(pattern)})
        for path in paths:
            if path.name == "package.json" or path.name.startswith("."):
                continue
            try:
                res = orjson.loads(path.read_bytes())
            except orjson.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON ({exc})") from exc
            if isinstance(res, dict) and res.get("resourceType") in (
                "StructureDefinition",
                "ValueSet",
                "CodeSystem",
            ):
                self.add(res)
                count += 1
        return count

    def add(self, res: dict) -> None:
        """Add (or replace) a StructureDefinition, ValueSet or CodeSystem."""
        rt, url = res.get("resourceType"), res.get("url")
        if not url:
            raise ValueError(f"{rt} {res.get('id')} has no canonical url")
        with self._lock:
            self.version += 1
            if rt == "StructureDefinition":
                self._sds[url] = res
                self._snapshots.pop(url, None)
                if res.get("snapshot"):
                    self._snapshots[url] = res
            elif rt == "ValueSet":
                self._value_sets[url] = res
                self._expansions.pop(url, None)
            elif rt == "CodeSystem":
                self._code_systems[url] = res
                self._held_codes.pop(url, None)
                # expansions computed earlier may include this system
                for vs_url in self._value_sets:
                    self._expansions.pop(vs_url, None)
            else:
                raise ValueError(f"cannot add a {rt} to the definitions")

    # -- StructureDefinitions ----------------------------------------------------------------

    def has_structure(self, url: str) -> bool:
        return url.split("|")[0] in self._sds

    def raw_structure(self, url: str) -> dict | None:
        return self._sds.get(url.split("|")[0])

    def structure(self, url: str) -> dict | None:
        """The StructureDefinition at ``url`` with its snapshot, or ``None`` if unknown."""
        url = url.split("|")[0]
        sd = self._snapshots.get(url)
        if sd is not None:
            return sd
        raw = self._sds.get(url)
        if raw is None:
            return None
        from hub.validation.snapshot import generate_snapshot

        with self._lock:
            sd = self._snapshots.get(url)
            if sd is None:
                sd = dict(raw)
                sd["snapshot"] = {"element": generate_snapshot(raw, self)}
                self._snapshots[url] = sd
        return sd

    def type_structure(self, type_name: str) -> dict | None:
        """The base StructureDefinition of a resource or data type by name."""
        return self.structure(FHIR_SD_BASE + type_name)

    def structures(self) -> list[dict]:
        """Every StructureDefinition held (raw, without generating snapshots)."""
        return list(self._sds.values())

    def is_resource_type(self, name: str) -> bool:
        sd = self._sds.get(FHIR_SD_BASE + name)
        return bool(sd) and sd.get("kind") == "resource" and sd.get("derivation") != "constraint"

    # -- terminology -------------------------------------------------------------------------

    def expansion(self, url: str) -> dict | None:
        """``{system: [codes] | None}`` for a ValueSet, or ``None`` when it cannot be expanded."""
        url = url.split("|")[0]
        if url in self._expansions:
            return self._expansions[url]
        if url not in self._value_sets:
            return None
        with self._lock:
            term = _HubTerminology(self)
            exp = term.expand(url)
            self._expansions[url] = exp
        return exp

    def code_system_codes(self, system: str) -> frozenset | None:
        """The codes of a CodeSystem the hub holds in full, else ``None``."""
        got = self._held_codes.get(system)
        if got is not None:
            return got
        cs = self._code_systems.get(system)
        if cs is not None and cs.get("content", "complete") == "complete":
            got = frozenset(all_codes(cs))
        elif system in self._core_codes:
            got = frozenset(self._core_codes[system])
        else:
            return None
        self._held_codes[system] = got
        return got


class _HubTerminology(Terminology):
    """Expansion of added ValueSets: added CodeSystems first, then the code systems of the
    terminology service's content (the R4 core with its hierarchies, the national tables),
    then the core code lists of the extract."""

    def __init__(self, defs: Definitions):
        code_systems: dict[str, Any] = {}
        for system, codes in defs._core_codes.items():
            code_systems[system] = {
                "content": "complete",
                "concept": [{"code": c} for c in codes],
            }
        code_systems.update(defs._code_systems)
        super().__init__(defs._value_sets, code_systems)
        self._defs = defs

    def _index(self, system: str):
        if system not in self._defs._code_systems:
            served = shared_content().code_systems.get(system)
            if served is not None and served.complete:
                return served
        return super()._index(system)

    def codes(self, url: str):
        url = url.split("|")[0]
        if url not in self.value_sets and url in self._defs._expansions:
            return self._defs._expansions[url]
        return super().codes(url)


def register_plugin_definitions(pm, definitions: Definitions) -> int:
    """Add what the plugins' ``register_profiles`` hooks return (resources or package
    folders) to ``definitions``; returns how many."""
    count = 0
    for items in pm.hook.register_profiles():
        for item in items or ():
            if isinstance(item, dict):
                definitions.add(item)
                count += 1
            else:
                count += definitions.load_folder(Path(item))
    return count


def hub_definitions(pm, profile_dirs: Iterable[Path] = ()) -> Definitions:
    """One hub's definitions: the shared ones, or, when its plugins or ``PROFILES_DIR``
    folders add any, a set of its own (so no hub changes what another validates against)."""
    extra = [item for items in pm.hook.register_profiles() for item in items or ()]
    folders = [Path(f) for f in profile_dirs]
    if not extra and not folders:
        return default_definitions()
    defs = Definitions.default()
    for item in extra:
        if isinstance(item, dict):
            defs.add(item)
        else:
            defs.load_folder(Path(item))
    for folder in folders:
        defs.load_folder(folder)
    return defs


@functools.lru_cache(maxsize=1)
def default_definitions() -> Definitions:
    """The shared definitions: core plus ``profiles/``, loaded once and never changed after
    (a hub whose plugins add definitions gets its own set, :func:`hub_definitions`)."""
    defs = Definitions.default()
    log.info("validation definitions loaded: %d StructureDefinitions", len(defs._sds))
    return defs
