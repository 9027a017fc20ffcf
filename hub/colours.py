"""Five-colour classification (五色分类管理, DOMAIN 6.4): evidence in, Flags out.

Pure: :func:`classify` takes a patient id and that person's resources (dicts)
and returns every colour that applies, the displayed colour (precedence red >
yellow > blue > orange > green; ``None`` when nothing applies), one ``Flag``
per colour that is or was active, and the evidence behind each colour (for a
``Provenance``, see :func:`provenance`). The rules are data:
``mappings/five-colour/rules.yaml``; the colour codes are the CodeSystem
``mappings/five-colour/CodeSystem-five-colour.json``. See docs/five-colour.md.

Evidence the classification reads:

- active ``Condition`` with an ICD-10 code (any of :data:`hub.codesystems.ICD10_SYSTEMS`);
- ``EpisodeOfCare`` (status active, onhold or waitlist) whose type is a
  programme or register of ``urn:fhirhub:codesystem:care-programme``;
- ``Observation`` items of the registration form (``health-record-item``);
- the veterans registry's ``veteran-entitlement`` ``Observation`` with a
  disability grade, while the benefit status is not ``ended``;
- earlier five-colour ``Flag`` resources: a colour whose evidence went away
  is returned ``inactive`` with ``period.end``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from hub import codesystems as cs
from hub.completeness.periods import age_on
from hub.completeness.periods import parse_date
from hub.identity.ids import stable_id
from hub.identity.ids import with_content_hash
from hub.paths import MAPPINGS_DIR

RULES_FILE = MAPPINGS_DIR / "five-colour" / "rules.yaml"
COLOURS = ("red", "yellow", "blue", "orange", "green")
DISPLAY = {
    "red": "红色：重大疾病 (major disease)",
    "yellow": "黄色：重性精神疾病 (severe mental illness)",
    "blue": "蓝色：职业病/传染病/地方病 (occupational, infectious or endemic disease)",
    "orange": "橙色：慢性病 (chronic disease)",
    "green": "绿色：残疾及其他疾病 (disability and other diseases)",
}
SENSITIVITY = {"mental-health": cs.MENTAL_HEALTH_SENSITIVITY, "hiv": cs.HIV_SENSITIVITY}
_ACTIVE_CLINICAL = {"active", "recurrence", "relapse"}
_EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}
_ACTIVE_EPISODE = {"active", "onhold", "waitlist"}


@dataclasses.dataclass(frozen=True)
class Evidence:
    """Why a colour applies: the resource, the rule and a readable reason."""

    colour: str
    reference: str  # "Condition/123"
    rule: str  # "icd10 C00-C97", "programme hypertension", ...
    text: str
    since: str | None = None  # onset or start date, when known
    sensitivity: str | None = None


@dataclasses.dataclass
class Classification:
    colours: list[str]  # every colour that applies, in precedence order
    displayed: str | None
    flags: list[dict[str, Any]]  # active ones for ``colours``, inactive ones for lapsed colours
    evidence: list[Evidence]


# ---------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Pattern:
    low: str  # category, e.g. "C00"
    high: str
    sub_low: str | None = None  # subcategory bounds, "5"
    sub_high: str | None = None

    def matches(self, category: str, sub: str | None) -> bool:
        if not (self.low <= category <= self.high):
            return False
        if self.sub_low is None:
            return True
        return sub is not None and self.sub_low <= sub <= (self.sub_high or self.sub_low)


@dataclasses.dataclass(frozen=True)
class _IcdRule:
    colour: str
    patterns: tuple[_Pattern, ...]
    text: str
    label: str
    subs: frozenset[str] | None = None
    with_any: tuple[_Pattern, ...] = ()
    max_age: int | None = None
    within_months: int | None = None
    then: str | None = None
    fallback: bool = False
    sensitivity: str | None = None

    def matches(self, category: str, sub: str | None) -> bool:
        if self.subs is not None and sub not in self.subs:
            return False
        return any(p.matches(category, sub) for p in self.patterns)


@dataclasses.dataclass(frozen=True)
class Rules:
    version: str
    precedence: tuple[str, ...]
    icd10: tuple[_IcdRule, ...]
    programmes: dict[str, dict[str, Any]]
    health_record_items: dict[str, dict[str, Any]]
    veteran_disability: dict[str, Any]


def _pattern(text: str) -> _Pattern:
    low, _, high = str(text).partition("-")
    high = high or low
    lc, _, ls = low.partition(".")
    hc, _, hs = high.partition(".")
    return _Pattern(lc.upper(), hc.upper(), ls or None, (hs or ls) or None)


@functools.cache
def load_rules(path: Path = RULES_FILE) -> Rules:
    """The rules file, compiled once."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    rules = []
    for raw in data["icd10"]:
        months = raw.get("within_months")
        if raw.get("within_years"):
            months = 12 * int(raw["within_years"])
        rules.append(
            _IcdRule(
                colour=raw["colour"],
                patterns=tuple(_pattern(c) for c in raw["codes"]),
                text=", ".join(raw["codes"]),
                label=raw.get("label", ""),
                subs=frozenset(str(s) for s in raw["subs"]) if "subs" in raw else None,
                with_any=tuple(_pattern(c) for c in raw.get("with_any", ())),
                max_age=raw.get("max_age"),
                within_months=months,
                then=raw.get("then"),
                fallback=bool(raw.get("fallback")),
                sensitivity=raw.get("sensitivity"),
            )
        )
    return Rules(
        version=str(data.get("version", "")),
        precedence=tuple(data.get("precedence", COLOURS)),
        icd10=tuple(rules),
        programmes=data.get("programmes", {}),
        health_record_items=data.get("health_record_items", {}),
        veteran_disability=data.get("veteran_disability", {}),
    )


_ICD_SHAPE = re.compile(r"^([A-Z]\d{2})(?:\.?([0-9X]))?")


def icd10_parts(code: str) -> tuple[str, str | None] | None:
    """``("I10", None)`` for ``I10.x00x032``, ``("E11", "9")`` for ``E11.900``; ``None`` if not ICD-10."""
    match = _ICD_SHAPE.match((code or "").strip().upper())
    if not match:
        return None
    sub = match.group(2)
    return match.group(1), (None if sub in (None, "X") else sub)


# ---------------------------------------------------------------------------
# Classification
# ---------------------------------------------------------------------------


def classify(
    patient_id: str,
    resources: Iterable[dict[str, Any]],
    *,
    as_of: dt.date | None = None,
    rules: Rules | None = None,
) -> Classification:
    """Classify one person from their resources (others' resources are ignored)."""
    rules = rules or load_rules()
    today = as_of or dt.date.today()
    subject = f"Patient/{patient_id}"
    conditions: list[tuple[dict, str, str | None, str]] = []  # (resource, category, sub, code)
    evidence: list[Evidence] = []
    previous_flags: dict[str, dict[str, Any]] = {}
    birth: dt.date | None = None

    for res in resources:
        kind = res.get("resourceType")
        if kind == "Patient" and res.get("id") == patient_id:
            birth = parse_date(res.get("birthDate"))
        elif kind == "Condition" and _ref(res.get("subject")) == subject:
            if not _condition_active(res):
                continue
            for coding in (res.get("code") or {}).get("coding", []):
                if coding.get("system") in cs.ICD10_SYSTEMS:
                    parts = icd10_parts(coding.get("code", ""))
                    if parts:
                        conditions.append((res, parts[0], parts[1], coding["code"]))
        elif kind == "EpisodeOfCare" and _ref(res.get("patient")) == subject:
            evidence.extend(_programme_evidence(res, rules))
        elif kind == "Observation" and _ref(res.get("subject")) == subject:
            evidence.extend(_observation_evidence(res, rules))
        elif kind == "Flag" and _ref(res.get("subject")) == subject:
            colour = _flag_colour(res)
            if colour:
                previous_flags[colour] = res

    all_codes = [(c[1], c[2]) for c in conditions]
    for res, category, sub, code in conditions:
        evidence.extend(
            _condition_evidence(res, category, sub, code, all_codes, birth, today, rules)
        )

    colours = [c for c in rules.precedence if any(e.colour == c for e in evidence)]
    displayed = colours[0] if colours else None
    flags = _flags(patient_id, colours, displayed, evidence, previous_flags, today)
    return Classification(colours, displayed, flags, evidence)


def _condition_evidence(res, category, sub, code, all_codes, birth, today, rules) -> list[Evidence]:
    out: list[Evidence] = []
    onset = parse_date(res.get("onsetDateTime") or (res.get("onsetPeriod") or {}).get("start"))
    onset = onset or parse_date(res.get("recordedDate"))
    reference = f"Condition/{res.get('id')}"
    matched = False
    for rule in rules.icd10:
        if rule.fallback and matched:
            continue
        if not rule.matches(category, sub):
            continue
        if rule.with_any and not any(
            p.matches(c, s)
            for c, s in all_codes
            for p in rule.with_any
            if (c, s) != (category, sub)
        ):
            continue
        if rule.max_age is not None:
            if birth is None or age_on(birth, today) > rule.max_age:
                continue
        matched = True
        colour = rule.colour
        why = f"{code}: {rule.label}"
        if rule.within_months is not None and onset is not None:
            # Unknown onset counts as recent: better to look at a person once too often.
            if _months_between(onset, today) > rule.within_months:
                if not rule.then:
                    continue
                colour = rule.then
                why += f" (onset {onset.isoformat()}, more than {rule.within_months} months ago)"
        out.append(
            Evidence(
                colour,
                reference,
                f"icd10 {rule.text}",
                why,
                onset.isoformat() if onset else None,
                rule.sensitivity,
            )
        )
    return out


def _programme_evidence(res, rules) -> list[Evidence]:
    if res.get("status") not in _ACTIVE_EPISODE:
        return []
    out = []
    for concept in res.get("type", []):
        for coding in concept.get("coding", []):
            spec = rules.programmes.get(coding.get("code"))
            if coding.get("system") == cs.CARE_PROGRAMME and spec:
                out.append(
                    Evidence(
                        spec["colour"],
                        f"EpisodeOfCare/{res.get('id')}",
                        f"programme {coding['code']}",
                        spec.get("label", coding["code"]),
                        (res.get("period") or {}).get("start"),
                        spec.get("sensitivity"),
                    )
                )
    return out


def _observation_evidence(res, rules) -> list[Evidence]:
    if res.get("status") in ("cancelled", "entered-in-error"):
        return []
    reference = f"Observation/{res.get('id')}"
    since = res.get("effectiveDateTime") or (res.get("effectivePeriod") or {}).get("start")
    out = []
    for coding in (res.get("code") or {}).get("coding", []):
        system, code = coding.get("system"), coding.get("code")
        if system == cs.VETERAN_STATUS and code == "veteran-entitlement":
            spec = rules.veteran_disability
            grade = _component(res, "disability-grade")
            status = _component(res, "benefit-status")
            ended = status and _codes(status.get("valueCodeableConcept")) & {"ended"}
            if spec and grade and 1 <= int(grade.get("valueInteger", 0)) <= 10 and not ended:
                text = f"{spec.get('label')}: grade {grade['valueInteger']}"
                out.append(Evidence(spec["colour"], reference, "veteran-disability", text, since))
        elif system == cs.HEALTH_RECORD_ITEM and code in rules.health_record_items:
            spec = rules.health_record_items[code]
            for value in _codes(res.get("valueCodeableConcept")):
                hit = None
                if "values" in spec:
                    hit = spec["values"].get(value)
                elif value not in spec.get("except_values", ()):
                    hit = spec
                if hit:
                    out.append(
                        Evidence(
                            hit["colour"],
                            reference,
                            f"health-record-item {code}={value}",
                            hit.get("label", code),
                            since,
                            hit.get("sensitivity"),
                        )
                    )
    return out


def _flags(patient_id, colours, displayed, evidence, previous, today) -> list[dict[str, Any]]:
    flags = []
    for colour in COLOURS:
        flag_id = flag_id_for(patient_id, colour)
        old = previous.get(colour)
        if colour in colours:
            mine = [e for e in evidence if e.colour == colour]
            start = (old or {}).get("period", {}).get("start") if _flag_active(old) else None
            start = start or min((e.since for e in mine if e.since), default=today.isoformat())
            flag = _flag(flag_id, patient_id, colour, "active", {"start": start[:10]})
            sensitivities = sorted({e.sensitivity for e in mine if e.sensitivity})
            if sensitivities:
                flag["meta"] = {
                    "security": [dict(cs.RESTRICTED)]
                    + [dict(SENSITIVITY[s]) for s in sensitivities]
                }
            if colour == displayed:
                flag["extension"] = [{"url": cs.FIVE_COLOUR_DISPLAYED, "valueBoolean": True}]
            flags.append(with_content_hash(flag))
        elif old is not None:
            # Evidence went away: the flag stays, inactive, so the history shows the period.
            period = dict(old.get("period") or {})
            if _flag_active(old) or "end" not in period:
                period["end"] = today.isoformat()
            flag = _flag(flag_id, patient_id, colour, "inactive", period)
            if old.get("meta", {}).get("security"):
                flag["meta"] = {"security": old["meta"]["security"]}
            flags.append(with_content_hash(flag))
    return flags


def flag_id_for(patient_id: str, colour: str) -> str:
    """The deterministic id of a person's Flag for one colour."""
    return stable_id("five-colour", patient_id, colour)


def _flag(flag_id, patient_id, colour, status, period) -> dict[str, Any]:
    return {
        "resourceType": "Flag",
        "id": flag_id,
        "status": status,
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/flag-category",
                        "code": "clinical",
                        "display": "Clinical",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": cs.FIVE_COLOUR, "code": colour, "display": DISPLAY[colour]}]
        },
        "subject": {"reference": f"Patient/{patient_id}"},
        "period": period,
    }


def provenance(classification: Classification, patient_id: str, when: str) -> dict[str, Any]:
    """A ``Provenance`` whose targets are the Flags and whose entities are the evidence."""
    refs = sorted({e.reference for e in classification.evidence})
    return {
        "resourceType": "Provenance",
        "id": stable_id("five-colour-provenance", patient_id, when),
        "target": [{"reference": f"Flag/{f['id']}"} for f in classification.flags],
        "recorded": when,
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": "DERIVE",
                }
            ],
            "text": "five-colour classification",
        },
        "agent": [{"who": {"display": "fhirhub five-colour classification"}}],
        "entity": [{"role": "source", "what": {"reference": r}} for r in refs],
        "policy": [f"urn:fhirhub:five-colour-rules:{load_rules().version}"],
    }


def concept_map(rules: Rules | None = None) -> dict[str, Any]:
    """The ICD-10 rules as a FHIR ``ConceptMap`` (for ``$translate`` and review).

    Ranges are expanded to their categories (``C00``...``C97``) or listed
    subcategories (``N18.5``); conditions a ConceptMap cannot express (onset
    window, age, co-coding, fallback) are stated in the target's ``comment``
    and the equivalence is then ``inexact``.
    """
    rules = rules or load_rules()
    elements: list[dict[str, Any]] = []
    for rule in rules.icd10:
        comment = _rule_comment(rule)
        for pattern in rule.patterns:
            for code in _expand(pattern, rule.subs):
                target: dict[str, Any] = {
                    "code": rule.colour,
                    "display": DISPLAY[rule.colour],
                    "equivalence": "inexact" if comment else "wider",
                }
                if comment:
                    target["comment"] = comment
                elements.append({"code": code, "display": rule.label, "target": [target]})
    return {
        "resourceType": "ConceptMap",
        "id": "five-colour-icd10",
        "url": "urn:fhirhub:conceptmap:five-colour-icd10",
        "version": rules.version,
        "name": "FiveColourIcd10",
        "title": "ICD-10 to five-colour classification (proposal, DOMAIN 6.4)",
        "status": "draft",
        "group": [
            {
                "source": "http://hl7.org/fhir/sid/icd-10",
                "target": cs.FIVE_COLOUR,
                "element": elements,
            }
        ],
    }


def _expand(pattern: _Pattern, subs: frozenset[str] | None) -> list[str]:
    letter = pattern.low[0]
    low, high = int(pattern.low[1:]), int(pattern.high[1:])
    categories = [f"{letter}{n:02d}" for n in range(low, high + 1)]
    if pattern.sub_low is not None:
        lo, hi = int(pattern.sub_low), int(pattern.sub_high or pattern.sub_low)
        return [f"{c}.{d}" for c in categories for d in range(lo, hi + 1)]
    if subs is not None:
        return [f"{c}.{d}" for c in categories for d in sorted(subs)]
    return categories


def _rule_comment(rule: _IcdRule) -> str | None:
    parts = []
    if rule.within_months is not None:
        after = f", then {rule.then}" if rule.then else ""
        parts.append(f"within {rule.within_months} months of onset{after}")
    if rule.max_age is not None:
        parts.append(f"only below age {rule.max_age + 1}")
    if rule.with_any:
        codes = ", ".join(p.low if p.low == p.high else f"{p.low}-{p.high}" for p in rule.with_any)
        parts.append(f"only with {codes}")
    if rule.fallback:
        parts.append("only when no other rule matches")
    return "; ".join(parts) or None


# ---------------------------------------------------------------------------
# Small readers
# ---------------------------------------------------------------------------


def _ref(value: dict | None) -> str | None:
    return (value or {}).get("reference")


def _codes(concept: dict | None) -> set[str]:
    return {c.get("code") for c in (concept or {}).get("coding", []) if c.get("code")}


def _component(res: dict, code: str) -> dict | None:
    for comp in res.get("component", []):
        if code in _codes(comp.get("code")):
            return comp
    return None


def _condition_active(res: dict) -> bool:
    if _codes(res.get("verificationStatus")) & _EXCLUDED_VERIFICATION:
        return False
    clinical = _codes(res.get("clinicalStatus"))
    if res.get("abatementDateTime") or res.get("abatementPeriod"):
        return bool(clinical & _ACTIVE_CLINICAL)
    return not clinical or bool(clinical & _ACTIVE_CLINICAL)


def _flag_colour(res: dict) -> str | None:
    for coding in (res.get("code") or {}).get("coding", []):
        if coding.get("system") == cs.FIVE_COLOUR and coding.get("code") in COLOURS:
            return coding["code"]
    return None


def _flag_active(flag: dict | None) -> bool:
    return bool(flag) and flag.get("status") == "active"


def _months_between(start: dt.date, end: dt.date) -> int:
    months = (end.year - start.year) * 12 + end.month - start.month
    return months - (1 if end.day < start.day else 0)
