"""The completeness rule sets (``mappings/completeness/*.yaml``), compiled once.

Files by ``kind``:

- no kind, id ``completeness-cohorts``: who belongs to which population;
- no kind, id ``completeness-evidence``: how the FHIR data expresses each fact;
- ``required-fields``, ``services``, ``contract``, ``screening``: one rule set each.

Everything code-like (ICD ranges, codings, encounter classes) is read from
these files; nothing is hard-coded in Python. See docs/completeness.md.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from pathlib import Path
from typing import Any

import yaml

from hub.paths import MAPPINGS_DIR

RULES_DIR = MAPPINGS_DIR / "completeness"
KINDS = ("required-fields", "services", "contract", "screening")

Coding = tuple[str, str]  # (system, code)


@dataclasses.dataclass(frozen=True)
class IcdRange:
    low: str  # "I10" or "F06.0"
    high: str

    def matches(self, code: str) -> bool:
        # Compare on the category (and subcategory digit where the bound has one).
        return self.low <= code[: len(self.low)] and code[: len(self.high)] <= self.high


@dataclasses.dataclass(frozen=True)
class Cohort:
    id: str
    label: dict[str, str]
    min_age: int | None = None
    max_age: int | None = None
    icd10: tuple[IcdRange, ...] = ()
    programmes: frozenset[str] = frozenset()
    any_of: tuple[str, ...] = ()


@dataclasses.dataclass(frozen=True)
class Evidence:
    id: str
    label: dict[str, str]
    resources: frozenset[str]
    types: frozenset[Coding] = frozenset()
    classes: frozenset[str] = frozenset()
    codes: frozenset[Coding] = frozenset()


@dataclasses.dataclass(frozen=True)
class Service:
    id: str
    label: dict[str, str]
    evidence: str
    per_year: int = 1
    only_for: str | None = None  # cohort id
    min_age: int | None = None
    due_days_after_birth: int | None = None  # screening


@dataclasses.dataclass(frozen=True)
class Field:
    id: str
    label: dict[str, str]
    paths: tuple[tuple[tuple[str, str | None, str | None], ...], ...]  # alternatives of steps


@dataclasses.dataclass(frozen=True)
class Rule:
    id: str
    kind: str
    label: dict[str, str]
    applies_to: str  # cohort id or "everyone"
    version: str
    services: tuple[Service, ...] = ()
    fields: tuple[Field, ...] = ()
    prorate_from_diagnosis: bool = False
    control: dict[str, Any] | None = None
    contract_required_for: str | None = None
    packages: dict[str, tuple[Service, ...]] = dataclasses.field(default_factory=dict)
    package_labels: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)

    def item_label(self, item: str) -> dict[str, str]:
        for s in self.services:
            if s.id == item:
                return s.label
        for f in self.fields:
            if f.id == item:
                return f.label
        for services in self.packages.values():
            for s in services:
                if s.id == item:
                    return s.label
        if item == "contract":
            return {"zh": "家庭医生签约", "en": "family-doctor contract"}
        return {"zh": item, "en": item}


@dataclasses.dataclass(frozen=True)
class Contract:
    resource: str
    types: frozenset[Coding]
    package_extension: str
    package_systems: frozenset[str]
    statuses: frozenset[str]


@dataclasses.dataclass(frozen=True)
class RuleBook:
    cohorts: dict[str, Cohort]
    programme_systems: frozenset[str]
    evidence: dict[str, Evidence]
    readings: dict[str, dict[str, frozenset[Coding]]]
    contract: Contract
    rules: dict[str, Rule]  # in file order

    @property
    def version(self) -> str:
        return ",".join(f"{r.id}@{r.version}" for r in self.rules.values())


def _codings(items) -> frozenset[Coding]:
    return frozenset((str(c["system"]), str(c["code"])) for c in items or ())


def _label(raw: Any, fallback: str) -> dict[str, str]:
    if isinstance(raw, dict):
        return {"zh": str(raw.get("zh", fallback)), "en": str(raw.get("en", fallback))}
    return {"zh": str(raw or fallback), "en": str(raw or fallback)}


def _icd(text: str) -> IcdRange:
    low, _, high = str(text).upper().partition("-")
    return IcdRange(low, high or low)


_SPLIT = re.compile(r"[^.\[]+(?:\[[^\]]*\])?")  # steps split on dots outside [...]
_STEP = re.compile(r"^([A-Za-z]+)(?:\[([A-Za-z]+)=([^\]]+)\])?$")


def _path(text: str, where: str) -> tuple[tuple[tuple[str, str | None, str | None], ...], ...]:
    alternatives = []
    for alt in text.split("|"):
        steps = []
        for step in _SPLIT.findall(alt.strip()):
            match = _STEP.match(step)
            if not match:
                raise ValueError(f"{where}: bad path step {step!r}")
            steps.append((match.group(1), match.group(2), match.group(3)))
        alternatives.append(tuple(steps))
    return tuple(alternatives)


def _service(raw: dict, where: str) -> Service:
    return Service(
        id=str(raw["id"]),
        label=_label(raw.get("label"), str(raw["id"])),
        evidence=str(raw["evidence"]),
        per_year=int(raw.get("per_year", 1)),
        only_for=raw.get("only_for"),
        min_age=raw.get("min_age"),
        due_days_after_birth=raw.get("due_days_after_birth"),
    )


@functools.cache
def load(folder: Path = RULES_DIR) -> RuleBook:
    """Read and check every rule file in ``folder``; raises ``ValueError`` naming the file."""
    cohorts: dict[str, Cohort] = {}
    evidence: dict[str, Evidence] = {}
    readings: dict[str, dict[str, frozenset[Coding]]] = {}
    programme_systems: frozenset[str] = frozenset()
    contract: Contract | None = None
    rules: dict[str, Rule] = {}
    for path in sorted(Path(folder).glob("*.yaml")):
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        where = path.name
        if data.get("id") == "completeness-cohorts":
            programme_systems = frozenset(data.get("programme_systems", ()))
            for cid, raw in data["cohorts"].items():
                cohorts[cid] = Cohort(
                    id=cid,
                    label=_label(raw.get("label"), cid),
                    min_age=raw.get("min_age"),
                    max_age=raw.get("max_age"),
                    icd10=tuple(_icd(c) for c in raw.get("icd10", ())),
                    programmes=frozenset(raw.get("programmes", ())),
                    any_of=tuple(raw.get("any_of", ())),
                )
        elif data.get("id") == "completeness-evidence":
            for eid, raw in data["evidence"].items():
                evidence[eid] = Evidence(
                    id=eid,
                    label=_label(raw.get("label"), eid),
                    resources=frozenset(raw["resource"]),
                    types=_codings(raw.get("type")),
                    classes=frozenset(raw.get("class", ())),
                    codes=_codings(raw.get("code")),
                )
            for rid, raw in (data.get("readings") or {}).items():
                readings[rid] = {k: _codings(v) for k, v in raw.items()}
            raw = data["contract"]
            contract = Contract(
                resource=raw["resource"],
                types=_codings(raw["type"]),
                package_extension=raw["package_extension"],
                package_systems=frozenset(raw.get("package_systems", ())),
                statuses=frozenset(raw.get("statuses", ())),
            )
        elif data.get("kind") in KINDS:
            rule = _rule(data, where)
            if rule.id in rules:
                raise ValueError(f"{where}: rule {rule.id!r} defined twice")
            rules[rule.id] = rule
        else:
            raise ValueError(f"{where}: unknown completeness file (kind {data.get('kind')!r})")
    if contract is None:
        raise ValueError(f"{folder}: no evidence file (id completeness-evidence)")
    book = RuleBook(cohorts, programme_systems, evidence, readings, contract, rules)
    _check(book)
    return book


def _rule(data: dict, where: str) -> Rule:
    packages = {}
    package_labels = {}
    for code, raw in (data.get("packages") or {}).items():
        packages[str(code)] = tuple(_service(s, where) for s in raw.get("services") or ())
        package_labels[str(code)] = _label(raw.get("label"), str(code))
    return Rule(
        id=str(data["id"]),
        kind=data["kind"],
        label=_label(data.get("label"), str(data["id"])),
        applies_to=str(data.get("applies_to", "everyone")),
        version=str(data.get("version", "")),
        services=tuple(
            _service(s, where) for s in data.get("services") or data.get("screens") or ()
        ),
        fields=tuple(
            Field(str(f["id"]), _label(f.get("label"), f["id"]), _path(f["path"], where))
            for f in data.get("fields") or ()
        ),
        prorate_from_diagnosis=bool(data.get("prorate_from_diagnosis")),
        control=data.get("control"),
        contract_required_for=data.get("contract_required_for"),
        packages=packages,
        package_labels=package_labels,
    )


def _check(book: RuleBook) -> None:
    """Every cohort and evidence a rule names exists (fail at start-up, not mid-audit)."""
    known = set(book.cohorts) | {"everyone"}
    for cohort in book.cohorts.values():
        for other in cohort.any_of:
            if other not in book.cohorts:
                raise ValueError(f"cohort {cohort.id}: unknown cohort {other!r} in any_of")
    for rule in book.rules.values():
        if rule.applies_to not in known:
            raise ValueError(f"rule {rule.id}: unknown cohort {rule.applies_to!r}")
        if rule.contract_required_for and rule.contract_required_for not in known:
            raise ValueError(f"rule {rule.id}: unknown cohort {rule.contract_required_for!r}")
        services = list(rule.services) + [s for p in rule.packages.values() for s in p]
        for s in services:
            if s.evidence not in book.evidence:
                raise ValueError(f"rule {rule.id}: unknown evidence {s.evidence!r}")
            if s.only_for and s.only_for not in known:
                raise ValueError(f"rule {rule.id}: unknown cohort {s.only_for!r}")
        if rule.control and rule.control.get("kind") not in book.readings:
            raise ValueError(f"rule {rule.id}: unknown reading {rule.control.get('kind')!r}")
