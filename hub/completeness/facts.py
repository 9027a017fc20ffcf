"""What one person's resources say, reduced to the facts the rules count (pure).

:func:`collect` reads a person's resources once and returns :class:`Facts`:
birth date, active diagnoses (ICD-10), programme enrolments, dated evidence
per evidence id (``evidence.yaml``), control readings, family-doctor contracts
and the dates of every clinical entry (for the record-use indicator).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from hub import codesystems as cs
from hub.completeness.jurisdiction import Place
from hub.completeness.jurisdiction import place_of
from hub.completeness.periods import parse_date
from hub.completeness.rulebook import RuleBook

_SKIP_STATUS = {"cancelled", "entered-in-error", "planned", "not-done", "unknown"}
_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
_ACTIVE_EPISODE = {"active", "onhold", "waitlist", "finished"}
_ICD10 = frozenset(cs.ICD10_SYSTEMS)
# Resource types whose dates show a record is in use (dynamic entries: medical and
# service records; a contract or a care plan alone is not a service delivered).
_CLINICAL = {
    "Encounter",
    "Observation",
    "Condition",
    "Procedure",
    "DiagnosticReport",
    "MedicationRequest",
    "MedicationStatement",
    "Immunization",
    "DocumentReference",
    "Composition",
}


@dataclasses.dataclass
class Hit:
    """One dated item of evidence."""

    day: dt.date
    ref: str  # "Encounter/123"


@dataclasses.dataclass
class Reading:
    day: dt.date
    encounter: str | None
    kind: str  # "blood-pressure" or "fasting-glucose"
    values: dict[str, float]


@dataclasses.dataclass
class ContractFact:
    ref: str
    start: dt.date | None
    end: dt.date | None
    packages: tuple[str, ...]


@dataclasses.dataclass
class Facts:
    patient_id: str
    patient: dict[str, Any]
    place: Place
    birth: dt.date | None
    gender: str
    name: str
    active: bool  # Patient.active is not false and not deceased
    deceased: dt.date | bool | None
    diagnoses: list[tuple[str, dt.date | None]]  # (normalised ICD-10 code, since)
    programmes: list[tuple[str, dt.date | None, dt.date | None]]
    evidence: dict[str, list[Hit]]
    readings: list[Reading]
    contracts: list[ContractFact]
    entry_days: list[dt.date]
    resources: list[dict[str, Any]]  # kept for the five-colour classification


def _codings(concept: Any) -> set[tuple[str, str]]:
    if not isinstance(concept, dict):
        return set()
    return {
        (c.get("system", ""), c.get("code", ""))
        for c in concept.get("coding") or ()
        if isinstance(c, dict)
    }


def _codes(concept: Any) -> set[str]:
    return {code for _system, code in _codings(concept)}


def clinical_date(res: dict) -> dt.date | None:
    """The clinical date of a resource (period start, effective, performed, onset...)."""
    for key in ("effectiveDateTime", "performedDateTime", "onsetDateTime", "occurrenceDateTime"):
        if res.get(key):
            return parse_date(res[key])
    for key in ("period", "effectivePeriod", "performedPeriod"):
        value = res.get(key)
        if isinstance(value, dict) and (value.get("start") or value.get("end")):
            return parse_date(value.get("start") or value.get("end"))
    for key in ("issued", "recordedDate", "authoredOn", "date", "created"):
        if res.get(key):
            return parse_date(res[key])
    return None


def collect(patient_id: str, resources: Iterable[dict[str, Any]], book: RuleBook) -> Facts:
    """Reduce one person's resources to :class:`Facts` (resources of others are ignored)."""
    subject = f"Patient/{patient_id}"
    patient: dict[str, Any] = {}
    diagnoses: list[tuple[str, dt.date | None]] = []
    programmes: list[tuple[str, dt.date | None, dt.date | None]] = []
    evidence: dict[str, list[Hit]] = defaultdict(list)
    readings: list[Reading] = []
    contracts: list[ContractFact] = []
    entry_days: list[dt.date] = []
    kept: list[dict[str, Any]] = []
    by_type = _evidence_by_type(book)
    contract = book.contract

    for res in resources:
        kind = res.get("resourceType")
        if kind == "Patient":
            if res.get("id") == patient_id:
                patient = res
                kept.append(res)
            continue
        ref = (res.get("subject") or res.get("patient") or {}).get("reference")
        if ref != subject or res.get("status") in _SKIP_STATUS:
            continue
        kept.append(res)
        day = clinical_date(res)
        if day is not None and kind in _CLINICAL:
            entry_days.append(day)
        if kind == "Condition":
            if not _condition_active(res):
                continue
            since = parse_date(res.get("onsetDateTime")) or parse_date(res.get("recordedDate"))
            for system, code in _codings(res.get("code")):
                if system in _ICD10 and code:
                    diagnoses.append((code.strip().upper(), since))
            continue
        if kind == contract.resource and _codings_in(res.get("type"), contract.types):
            if res.get("status") in contract.statuses:
                period = res.get("period") or {}
                contracts.append(
                    ContractFact(
                        f"{kind}/{res.get('id')}",
                        parse_date(period.get("start")),
                        parse_date(period.get("end")),
                        _packages(res, contract),
                    )
                )
            continue
        if kind == "EpisodeOfCare":
            if res.get("status") in _ACTIVE_EPISODE:
                period = res.get("period") or {}
                for concept in res.get("type") or ():
                    for system, code in _codings(concept):
                        if system in book.programme_systems:
                            programmes.append(
                                (
                                    code,
                                    parse_date(period.get("start")),
                                    parse_date(period.get("end")),
                                )
                            )
            continue
        if day is None:
            continue
        for ev in by_type.get(kind, ()):
            if _matches(res, ev):
                evidence[ev.id].append(Hit(day, f"{kind}/{res.get('id')}"))
        if kind == "Observation":
            reading = _reading(res, day, book)
            if reading is not None:
                readings.append(reading)

    name = ""
    for n in patient.get("name") or ():
        name = n.get("text") or (n.get("family", "") + "".join(n.get("given") or ()))
        if name:
            break
    deceased = patient.get("deceasedBoolean") or parse_date(patient.get("deceasedDateTime"))
    return Facts(
        patient_id=patient_id,
        patient=patient,
        place=place_of(patient),
        birth=parse_date(patient.get("birthDate")),
        gender=patient.get("gender") or "",
        name=name,
        active=patient.get("active") is not False and not deceased,
        deceased=deceased,
        diagnoses=diagnoses,
        programmes=programmes,
        evidence=dict(evidence),
        readings=readings,
        contracts=contracts,
        entry_days=entry_days,
        resources=kept,
    )


_BY_TYPE_CACHE: dict[int, dict[str, list]] = {}


def _evidence_by_type(book: RuleBook) -> dict[str, list]:
    key = id(book)
    cached = _BY_TYPE_CACHE.get(key)
    if cached is None:
        cached = defaultdict(list)
        for ev in book.evidence.values():
            for kind in ev.resources:
                cached[kind].append(ev)
        _BY_TYPE_CACHE[key] = cached = dict(cached)
    return cached


def _codings_in(concepts: Any, wanted: frozenset) -> bool:
    if isinstance(concepts, dict):
        concepts = [concepts]
    return any(_codings(c) & wanted for c in concepts or ())


def _matches(res: dict, ev) -> bool:
    # Encounter.type (list of CodeableConcept); Encounter.class (Coding)
    if ev.types and not _codings_in(res.get("type"), ev.types):
        return False
    if ev.classes and (res.get("class") or {}).get("code") not in ev.classes:
        return False
    # Observation/Procedure/DiagnosticReport.code
    if ev.codes and not (_codings(res.get("code")) & ev.codes):
        return False
    return True


def _packages(res: dict, contract) -> tuple[str, ...]:
    out = []
    for ext in res.get("extension") or ():
        # EpisodeOfCare.extension[service-package].valueCoding
        if ext.get("url") == contract.package_extension:
            coding = ext.get("valueCoding") or {}
            if not contract.package_systems or coding.get("system") in contract.package_systems:
                if coding.get("code"):
                    out.append(coding["code"])
    return tuple(out)


def _condition_active(res: dict) -> bool:
    if _codes(res.get("verificationStatus")) & _EXCLUDED_VERIFICATION:
        return False
    clinical = _codes(res.get("clinicalStatus"))
    return not clinical or bool(clinical & _ACTIVE_CLINICAL)


def _reading(res: dict, day: dt.date, book: RuleBook) -> Reading | None:
    codings = _codings(res.get("code"))
    encounter = (res.get("encounter") or {}).get("reference")
    bp = book.readings.get("blood-pressure")
    if bp and codings & bp["panel"]:
        values = {}
        for comp in res.get("component") or ():
            comp_codes = _codings(comp.get("code"))
            value = (comp.get("valueQuantity") or {}).get("value")
            if value is None:
                continue
            if comp_codes & bp["systolic"]:
                values["systolic"] = float(value)
            elif comp_codes & bp["diastolic"]:
                values["diastolic"] = float(value)
        if values:
            return Reading(day, encounter, "blood-pressure", values)
    glucose = book.readings.get("fasting-glucose")
    if glucose and codings & glucose["code"]:
        quantity = res.get("valueQuantity") or {}
        if quantity.get("value") is None:
            return None
        value = float(quantity["value"])
        if (quantity.get("code") or quantity.get("unit") or "").lower() == "mg/dl":
            value = value / 18.016
        return Reading(day, encounter, "fasting-glucose", {"value": value})
    return None
