"""What adapters receive and return: messages, the mapping context and code maps.

Code maps are data (``mappings/**.yaml``), shaped like a FHIR ConceptMap group::

    id: hl7v2-administrative-sex
    source: http://terminology.hl7.org/CodeSystem/v2-0001
    target: http://hl7.org/fhir/administrative-gender
    unmapped: warn            # error | warn | pass-through
    map:
      F: female
      M: {code: male, display: Male}

A site may override a map with ``mappings/sites/<site>/<same file name>`` (or a
``code_maps`` folder named in its manifest); an override replaces ``map``
entries and/or ``unmapped`` only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING
from typing import Any

import yaml

from hub.codesystems import INGEST_ISSUE
from hub.codesystems import UNMAPPED_CODE
from hub.outcomes import OperationOutcomeError
from hub.outcomes import issue
from hub.outcomes import outcome

if TYPE_CHECKING:
    from hub.sites import Site
    from hub.terminology.service import TerminologyService

UNMAPPED_POLICIES = ("error", "warn", "pass-through")


@dataclasses.dataclass
class InboundMessage:
    """One raw payload on its way in."""

    format: str
    body: bytes
    site: Site | None = None
    content_type: str | None = None
    source_key: str | None = None  # e.g. MSH-10, the CDA document id, a file name
    received_at: str | None = None
    # The adapter's own parse of ``body`` when the receiver already made one (the MLLP
    # listener parses to route and check a message): the adapter maps it instead of
    # parsing again. Adapters must check its type and parse ``body`` when it is not theirs.
    parsed: Any = None


@dataclasses.dataclass
class OutboundMessage:
    """One payload for a site, produced by ``map_outbound``."""

    body: bytes
    content_type: str
    key: str  # stable key (e.g. the message control id) for de-duplication at the receiver
    description: str = ""


@dataclasses.dataclass
class Translation:
    code: str
    display: str | None = None
    system: str | None = None
    mapped: bool = True


class CodeMap:
    """One code map: ``translate(code)`` gives the target code or applies ``unmapped``."""

    def __init__(self, data: dict[str, Any], path: str | None = None):
        self.path = path
        self.id: str = data["id"]
        self.source: str | None = data.get("source")
        self.target: str | None = data.get("target")
        self.unmapped: str = data.get("unmapped", "warn")
        if self.unmapped not in UNMAPPED_POLICIES:
            raise ValueError(f"{path}: unmapped must be one of {UNMAPPED_POLICIES}")
        self.entries: dict[str, Translation] = {}
        for key, value in (data.get("map") or {}).items():
            self.entries[str(key)] = _translation(value, self.target, f"{path}: map.{key}")

    def with_override(self, data: dict[str, Any], path: str) -> CodeMap:
        """A copy with a site override's ``map`` entries and ``unmapped`` applied."""
        extra = set(data) - {"id", "map", "unmapped"}
        if extra:
            raise ValueError(
                f"{path}: a site override may only set map and unmapped, not {sorted(extra)}"
            )
        clone = CodeMap.__new__(CodeMap)
        clone.__dict__ = dict(self.__dict__)
        clone.path = path
        clone.entries = dict(self.entries)
        for key, value in (data.get("map") or {}).items():
            clone.entries[str(key)] = _translation(value, self.target, f"{path}: map.{key}")
        clone.unmapped = data.get("unmapped", self.unmapped)
        if clone.unmapped not in UNMAPPED_POLICIES:
            raise ValueError(f"{path}: unmapped must be one of {UNMAPPED_POLICIES}")
        return clone

    def lookup(self, code: str | None) -> Translation | None:
        if code is None:
            return None
        return self.entries.get(str(code))

    def to_concept_map(self) -> dict[str, Any]:
        """This map as a FHIR R4 ``ConceptMap`` (served by ``$translate``)."""
        mode = {"error": None, "warn": None, "pass-through": "provided"}[self.unmapped]
        group: dict[str, Any] = {
            "source": self.source,
            "target": self.target,
            "element": [
                {
                    "code": src,
                    "target": [
                        {k: v for k, v in (("code", t.code), ("display", t.display)) if v}
                        | {"equivalence": "equivalent"}
                    ],
                }
                for src, t in self.entries.items()
            ],
        }
        if mode:
            group["unmapped"] = {"mode": mode}
        return {
            "resourceType": "ConceptMap",
            "id": self.id,
            "url": f"urn:fhirhub:conceptmap:{self.id}",
            "status": "active",
            "group": [{k: v for k, v in group.items() if v is not None}],
        }


def _translation(value: Any, system: str | None, where: str) -> Translation:
    if isinstance(value, dict):
        if "code" not in value:
            raise ValueError(f"{where}: needs a code")
        return Translation(str(value["code"]), value.get("display"), value.get("system", system))
    if value is None:
        raise ValueError(f"{where}: has no target")
    return Translation(str(value), None, system)


def load_code_maps(folders: list[Path]) -> dict[str, CodeMap]:
    """Read every ``*.yaml`` code map below ``folders`` (not ``sites/``), keyed by id."""
    maps: dict[str, CodeMap] = {}
    for folder in folders:
        for path in sorted(Path(folder).rglob("*.yaml")):
            rel = path.relative_to(folder)
            if rel.parts[0] == "sites":
                continue
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict) or "id" not in data or "map" not in data:
                continue  # not a code map (e.g. another kind of mapping table)
            cmap = CodeMap(data, str(path))
            if cmap.id in maps:
                raise ValueError(
                    f"code map {cmap.id!r} defined twice: {maps[cmap.id].path} and {path}"
                )
            maps[cmap.id] = cmap
    return maps


def load_site_overrides(folder: Path, maps: dict[str, CodeMap]) -> dict[str, CodeMap]:
    """Apply every override file in ``folder`` to ``maps``; returns the changed maps by id."""
    out: dict[str, CodeMap] = {}
    if not folder.is_dir():
        return out
    for path in sorted(folder.rglob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        map_id = data.get("id")
        if map_id is None:
            base = next(
                (m for m in maps.values() if m.path and Path(m.path).name == path.name), None
            )
            map_id = base.id if base else None
        if map_id not in maps:
            raise ValueError(f"{path}: overrides unknown code map {map_id!r}")
        out[map_id] = maps[map_id].with_override(data, str(path))
    return out


class MappingContext:
    """What an adapter may use while mapping one message.

    Collects issues as it goes; the pipeline puts them in the ingest outcome.
    """

    def __init__(
        self,
        site: Site | None = None,
        code_maps: dict[str, CodeMap] | None = None,
        terminology: TerminologyService | None = None,
    ):
        self.site = site
        self._maps = code_maps or {}
        # The hub's terminology service: the maps as the site uses them (its overrides,
        # files or tables loaded with ``hub terminology load``), the same ones $translate serves.
        self.terminology = terminology
        self.issues: list[dict[str, Any]] = []
        # Per-site state kept between messages (JSON-ready values); the
        # pipeline loads it before mapping and saves it with the message's data.
        self.state: dict[str, Any] = {}
        # Outbound only: ``read("Type/id")`` gives a stored resource (or None),
        # for messages that need more than the changed resource (the patient
        # behind an Observation, the results a DiagnosticReport refers to).
        self.read: Callable[[str], dict[str, Any] | None] | None = None
        # Outbound only: the resource as it was before the change (``previous``), read
        # when an adapter first asks for it (most never do).
        self._previous: dict[str, Any] | None = None
        self._load_previous: Callable[[], dict[str, Any] | None] | None = None
        # The hub's settings (hub/config.py), e.g. the inbound limits an adapter enforces.
        self.settings: Mapping[str, Any] = {}

    @property
    def previous(self) -> dict[str, Any] | None:
        """Outbound only: the resource before the change (``None`` for a creation; for a
        deletion, its last version), to tell what ended or moved."""
        if self._load_previous is not None:
            self._previous, self._load_previous = self._load_previous(), None
        return self._previous

    @previous.setter
    def previous(self, value: dict[str, Any] | None) -> None:
        self._previous, self._load_previous = value, None

    def previous_from(self, load: Callable[[], dict[str, Any] | None]) -> None:
        """Read ``previous`` with ``load()`` when it is first asked for."""
        self._load_previous = load

    def code_map(self, name: str) -> CodeMap:
        if self.terminology is not None:
            return self.terminology.code_map(name, self.site)
        overrides = getattr(self.site, "code_map_overrides", None) or {}
        if name in overrides:
            return overrides[name]
        try:
            return self._maps[name]
        except KeyError:
            raise KeyError(f"no code map {name!r}; known: {sorted(self._maps)}") from None

    def translate(
        self,
        name: str,
        code: str | None,
        expression: str | None = None,
        system: str | None = None,
    ) -> Translation | None:
        """Translate ``code`` through map ``name``, applying its ``unmapped`` policy.

        ``None`` in, ``None`` out. An unknown code raises (``error``), records a
        warning and returns ``None`` (``warn``) or returns the code unchanged
        with ``mapped=False`` (``pass-through``). ``system`` is the system the code
        is written with when it is not the map's ``source`` (a site's local codes):
        the warning names it, for ``hub terminology unmapped``.
        """
        if code is None or code == "":
            return None
        cmap = self.code_map(name)
        found = cmap.lookup(code)
        if found is not None:
            return found
        text = f"code {code!r} is not in code map {cmap.id}"
        if cmap.unmapped == "error":
            raise OperationOutcomeError(
                outcome(issue("error", "code-invalid", text, expression)), 422
            )
        if cmap.unmapped == "warn":
            self.issues.append(unmapped_issue(cmap, str(code), text, expression, system))
            return None
        return Translation(str(code), None, cmap.source, mapped=False)

    def lookup(self, name: str, code: str | None) -> Translation | None:
        """The entry of ``code`` in map ``name`` (as the site uses it), without the
        ``unmapped`` policy: ``None`` when the map has none."""
        return self.code_map(name).lookup(code)

    def warn(self, text: str, expression: str | None = None, code: str = "processing") -> None:
        self.issues.append(issue("warning", code, text, expression))

    def info(self, text: str, expression: str | None = None) -> None:
        self.issues.append(issue("information", "informational", text, expression))

    def unused(self, location: str, text: str | None = None) -> None:
        """Record source content the adapter did not map (never dropped silently)."""
        self.issues.append(
            issue("information", "informational", text or f"{location} was not mapped", location)
        )


def unmapped_issue(
    cmap: CodeMap, code: str, text: str, expression: str | None, system: str | None = None
) -> dict[str, Any]:
    """The warning for a code a ``warn`` map lacks: ``details.coding`` names it (the
    ``unmapped-code`` marker, then the local code in the map's source system), so
    ``hub terminology unmapped`` can count the codes a site sends and no map holds."""
    out = issue("warning", "code-invalid", text, expression)
    system = system or cmap.source
    local = {"system": system, "code": code} if system else {"code": code}
    out["details"] = {
        "coding": [{"system": INGEST_ISSUE, "code": UNMAPPED_CODE}, local],
        "text": f"unmapped in {cmap.id}",
    }
    return out
